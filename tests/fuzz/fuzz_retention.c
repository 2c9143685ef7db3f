/* libFuzzer: the retention rule (base/retention.c) on names it does not
 * control: every line of the input is a backup's file or key name (the
 * date in a name is its time), the first byte picks the policy. Checks
 * what must hold for any input: one decision per backup in the input's
 * order, the newest always kept, a time read from a name that prints. */
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size == 0) return 0;
  unsigned k = data[0];
  json_t *policy = json_pack("{s:i, s:i, s:i, s:i, s:I}", "keep_last", (int)(k & 3),
                             "keep_daily", (int)((k >> 2) & 7), "keep_weekly",
                             (int)((k >> 5) & 3), "keep_monthly", (int)(k >> 7),
                             "min_age", (json_int_t)((k & 16) ? ENG__DAY_MS : 0));
  json_t *items = json_array();
  char *text = eng__xstrndup((const char *)data + 1, size - 1);
  int64_t newest = -1;
  size_t i = 0;
  for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save), i++) {
    int64_t t = eng__retention_name_time(line);
    if (t < -1) abort();
    json_array_append_new(items, json_pack("{s:s, s:I, s:b}", "name", line, "mtime_ms",
                                           (json_int_t)(i * 1000), "verified", (int)(i & 1)));
    if (t > newest) newest = t;
  }
  json_t *plan = eng__retention_plan(items, policy, (int64_t)1767225600000);
  const json_t *all = json_object_get(plan, "backups");
  if (!plan || json_array_size(all) != json_array_size(items)) abort();
  bool kept_any = json_array_size(all) == 0;
  size_t n;
  json_t *d;
  json_array_foreach(all, n, d) kept_any |= json_is_true(json_object_get(d, "keep"));
  if (!kept_any) abort(); /* the newest is never given up */
  json_decref(plan);
  json_decref(items);
  json_decref(policy);
  free(text);
  return 0;
}
