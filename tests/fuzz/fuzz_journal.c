/* libFuzzer: a run's journal as `engine runs`, `engine cleanup` (and the
 * next holder of a lock) read it. A journal may come from a state store:
 * what it says decides what is removed, so reading it must never crash,
 * and only a plugin's action may ever come out as an undo step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "record/record.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static char dir[64], path[96];
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/engine-fuzz-journal-%d", (int)getpid());
    mkdir(dir, 0700);
    snprintf(path, sizeof path, "%s/journal", dir);
  }
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  json_t *all = eng__journal_read(dir);
  if (all) {
    json_decref(eng__journal_resources(all));
    json_decref(eng__journal_guard_lists(all));
    json_decref(all);
  }
  for (int what = ENG__CLEAN_LEFTOVERS; what <= ENG__CLEAN_ALL; what++) {
    size_t n = 0;
    char *text = eng__cleanup_runbook(dir, (eng__clean_what)what, &n);
    json_t *rb = text ? json_loads(text, 0, NULL) : NULL;
    if (text && !rb) abort(); /* the cleanup runbook is always valid JSON */
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(rb, "steps"), i, s) {
      const char *uses = json_string_value(json_object_get(s, "uses"));
      if (!uses || !strchr(uses, '.') || uses[0] == '.') abort();
    }
    json_decref(rb);
    free(text);
  }
  return 0;
}
