/* libFuzzer: a segment of the run index (index/NNNNNNNN.jsonl) as
 * `engine runs`, `engine history` and a run's regression check read it.
 * Segments live in a shared store: reading one must never crash, and
 * every record that comes out has a valid run id and only fields of their
 * own types, so that the history, its deltas and the regressions can
 * trust them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record/record.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  json_t *runs = json_object();
  eng__index_parse((const char *)data, size, "index/00000001.jsonl", runs, NULL);
  const char *id;
  json_t *rec;
  json_object_foreach(runs, id, rec) {
    const char *own = json_string_value(json_object_get(rec, "run_id"));
    if (!own || strcmp(own, id) || !eng__index_id_ok(own)) abort();
    const json_t *rows = json_object_get(rec, "rows");
    if (rows && !json_is_integer(rows)) abort();
  }
  json_t *sorted = eng__index_sorted(runs);
  eng__index_limits lim = {10, 10, 1.5};
  size_t i;
  json_array_foreach(sorted, i, rec) {
    const json_t *prev = eng__index_previous_ok(sorted, rec);
    if (prev == rec) abort();
    if (prev) json_decref(eng__index_regressions(rec, prev, &lim));
  }
  json_decref(sorted);
  json_decref(runs);
  return 0;
}
