/* libFuzzer: values into declared types (every type, with choices, a
 * range), durations, timestamps, summaries and suggestions, and SHA-256
 * sidecars (the `files` action reads them beside any file). */
#include <stdlib.h>
#include <string.h>

#include "actions/actions.h"
#include "expr/expr.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  char sha[ENG__SHA256_HEX];
  if (eng__sha256_sidecar((const char *)data, size, sha) && strlen(sha) != 64)
    abort();
  char *s = eng__xstrndup((const char *)data, size);
  int64_t ms;
  eng__parse_duration(s, &ms);
  char why[160];
  eng__parse_timestamp(s, &ms, why, sizeof why);
  eng__type_suggest(s);
  json_t *in[2] = {json_string(s), json_loads(s, JSON_DECODE_ANY, NULL)};
  static const char *const cands[] = {"custom", "directory", "plain", "tar"};
  eng__suggest(s, cands, 4);
  for (int k = 0; k < 2; k++) {
    if (!in[k]) continue;
    for (int t = ENG_T_STRING; t <= ENG_T_TIMESTAMP; t++) {
      char err[512];
      eng_param p = {.name = "p", .type = (eng_type)t,
                     .flags = ENG_P_MIN | ENG_P_MAX, .min = 1, .max = 1e6,
                     .choices = t == ENG_T_STRING ? "custom|plain" : NULL};
      json_decref(eng__convert_param(in[k], &p, err, sizeof err));
      json_decref(eng__convert(in[k], (eng_type)t, NULL, err, sizeof err));
      /* a list (or a string or a list) of every item type */
      for (int it = ENG_ITEMS_STRING; it <= ENG_ITEMS_TIMESTAMP; it++) {
        eng_param l = {.name = "l", .type = t % 2 ? ENG_T_LIST : ENG_T_ANY,
                       .items = (eng_items)it, .flags = ENG_P_MIN | ENG_P_MAX,
                       .min = 1, .max = 1e6,
                       .choices = it == ENG_ITEMS_STRING ? "custom|plain" : NULL};
        json_t *c = eng__convert_param(in[k], &l, err, sizeof err);
        size_t i;
        json_t *e;
        if (json_is_array(c) && it != ENG_ITEMS_ANY) /* each item converted */
          json_array_foreach(c, i, e) {
            if (json_typeof(e) == JSON_NULL) abort();
          }
        json_decref(c);
      }
    }
    char sum[160];
    if (json_is_object(in[k])) eng__outputs_summary(in[k], NULL, sum, sizeof sum);
    json_decref(in[k]);
  }
  free(s);
  return 0;
}
