/* libFuzzer: pgBackRest's answers as the pgbackrest plugin reads them
 * (plugins/pgbackrest/pgbr_parse.c): the bytes as `pgbackrest version`
 * output, as `info --output=json` (with and without a stanza name), as a
 * `repo-ls --output=json` listing, and the expire plan of what info gave.
 * Promises checked: out-parameters untouched on failure, a failure says
 * why, every output string is a string where promised, the version fits
 * its buffer, an expire plan names only labels of the info. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pgbr_int.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c)) abort();                                                         \
  } while (0)

static void check_info(const json_t *info) {
  CHECK(json_is_string(json_object_get(info, "stanza")));
  CHECK(json_is_string(json_object_get(info, "status")));
  const json_t *backups = json_object_get(info, "backups");
  CHECK(json_is_array(backups));
  size_t i;
  const json_t *b;
  json_array_foreach(backups, i, b) {
    CHECK(json_is_string(json_object_get(b, "label")));
    CHECK(json_is_string(json_object_get(b, "type")));
    CHECK(strlen(json_string_value(json_object_get(b, "finished_at"))) == 20);
  }
  for (long long keep = 0; keep < 4; keep++) {
    json_t *plan = pgbr_expire_plan(info, keep);
    CHECK(json_array_size(plan) <= json_array_size(backups));
    json_decref(plan);
  }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text) return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  char ver[32] = "untouched", err[256] = "";
  int major = -7, minor = -7;
  if (pgbr_parse_version(text, ver, sizeof ver, &major, &minor, err, sizeof err) == 0) {
    CHECK(major >= 0 && minor >= 0 && strlen(ver) < sizeof ver);
  } else {
    CHECK(!strcmp(ver, "untouched") && major == -7 && err[0]);
  }
  const char *stanzas[] = {NULL, "main"};
  for (size_t k = 0; k < 2; k++) {
    err[0] = '\0';
    json_t *info = pgbr_parse_info(text, stanzas[k], err, sizeof err);
    if (info) check_info(info);
    else CHECK(err[0]);
    json_decref(info);
  }
  int64_t lo = -5, hi = -5;
  err[0] = '\0';
  if (pgbr_parse_wal_times(text, "000000010000000000000001",
                           "000000010000000000000003", &lo, &hi, err, sizeof err) == 0)
    CHECK(lo >= -1 && hi >= -1);
  else
    CHECK(lo == -5 && hi == -5 && err[0]);
  free(text);
  return 0;
}
