/* libFuzzer: a server log as the postgres plugin's recover reads it for
 * the end of a recovery (plugins/postgres/pg_recovery_log.c). Promises
 * checked: every value is a string of printable ASCII, at most
 * PG_RLOG_LINE_MAX bytes, at most PG_RLOG_LINES_MAX lines kept, and the
 * bytes need not be NUL-terminated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pg_recovery_log.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c)) abort();                                                         \
  } while (0)

static void check_text(const json_t *v) {
  CHECK(json_is_string(v));
  const char *s = json_string_value(v);
  CHECK(strlen(s) <= PG_RLOG_LINE_MAX);
  for (const char *p = s; *p; p++)
    CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  /* an exact-size copy: a read past the end is caught */
  char *buf = malloc(size ? size : 1);
  if (!buf) return 0;
  memcpy(buf, data, size);
  json_t *out = pg_recovery_log_parse(buf, size);
  CHECK(json_is_object(out));
  const char *k;
  json_t *v;
  json_object_foreach(out, k, v) {
    if (!strcmp(k, "lines")) {
      CHECK(json_array_size(v) <= PG_RLOG_LINES_MAX);
      size_t i;
      json_t *l;
      json_array_foreach(v, i, l) check_text(l);
    } else {
      check_text(v);
    }
  }
  json_decref(out);
  free(buf);
  return 0;
}
