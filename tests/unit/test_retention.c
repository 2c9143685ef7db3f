/* Unit tests for core/base/retention.c: times from names, the keep_*
 * rules, and what is never given up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "base/base.h"

#define DAY ENG__DAY_MS
/* 2026-01-30T00:00:00Z */
#define JAN30 ((int64_t)1769731200000)

static void test_name_times(void **state) {
  (void)state;
  assert_int_equal(eng__retention_name_time("/b/app-2026-01-30.dump"), JAN30);
  assert_int_equal(eng__retention_name_time("db_20260130.dump"), JAN30);
  assert_int_equal(eng__retention_name_time("db_20260130T020304Z.dump"),
                   JAN30 + (2 * 3600 + 3 * 60 + 4) * 1000);
  assert_int_equal(eng__retention_name_time("db-2026-01-30_02:03.dump"),
                   JAN30 + (2 * 3600 + 3 * 60) * 1000);
  /* no date: the caller's modification time */
  assert_int_equal(eng__retention_name_time("nightly.dump"), -1);
  assert_int_equal(eng__retention_name_time("x-2026-02-31.dump"), -1);
  assert_int_equal(eng__retention_name_time("run-12026013099.dump"), -1);
  /* the folder's name is not the backup's */
  assert_int_equal(eng__retention_name_time("/2020-01-01/nightly.dump"), -1);
}

/* n daily backups ending on Jan 30, the newest first in `keep` order. */
static json_t *daily(int n, int verified_day) {
  json_t *a = json_array();
  for (int i = 0; i < n; i++) {
    char name[40];
    snprintf(name, sizeof name, "app-2026-01-%02d.dump", 30 - i);
    json_array_append_new(a, json_pack("{s:s, s:I, s:b}", "name", name, "mtime_ms",
                                       (json_int_t)0, "verified", 30 - i == verified_day));
  }
  return a;
}

static int kept(const json_t *plan, int day) {
  char name[40];
  snprintf(name, sizeof name, "app-2026-01-%02d.dump", day);
  size_t i;
  json_t *d;
  json_array_foreach(json_object_get(plan, "backups"), i, d) if (!strcmp(json_string_value(json_object_get(d, "name")), name))
      return json_is_true(json_object_get(d, "keep"));
  return -1;
}

static void test_daily_weekly(void **state) {
  (void)state;
  json_t *b = daily(30, 0);
  json_t *pol = json_pack("{s:i, s:i}", "keep_daily", 3, "keep_weekly", 2);
  json_t *plan = eng__retention_plan(b, pol, JAN30 + 365 * DAY);
  assert_non_null(plan);
  assert_int_equal(json_array_size(json_object_get(plan, "backups")), 30);
  assert_string_equal(json_string_value(json_object_get(plan, "policy")),
                      "keep_last 0, keep_daily 3, keep_weekly 2, keep_monthly 0, min_age 0");
  /* daily: 30, 29, 28; weekly: W05 (30), W04 (Jan 25, a Sunday) */
  int want[] = {30, 29, 28, 25};
  size_t n_kept = 0;
  for (int day = 1; day <= 30; day++) n_kept += kept(plan, day) == 1;
  assert_int_equal(n_kept, 4);
  for (size_t i = 0; i < 4; i++) assert_int_equal(kept(plan, want[i]), 1);
  const json_t *d27 = json_array_get(json_object_get(plan, "backups"), 3);
  assert_string_equal(json_string_value(json_object_get(d27, "time_from")), "name");
  assert_non_null(strstr(json_string_value(json_object_get(d27, "rule")), "keep_daily 3"));
  json_decref(plan);
  json_decref(pol);
  json_decref(b);
}

static void test_floors(void **state) {
  (void)state;
  json_t *b = daily(10, 24);
  /* a locked old one, young ones (min_age 2d, now Jan 30 noon) */
  json_object_set_new(json_array_get(b, 9), "locked_until_ms", json_integer(JAN30 + 9 * DAY));
  json_t *pol = json_pack("{s:i, s:I}", "keep_last", 0, "min_age", (json_int_t)(2 * DAY));
  json_t *plan = eng__retention_plan(b, pol, JAN30 + DAY / 2);
  assert_int_equal(kept(plan, 30), 1); /* newest (and young) */
  assert_int_equal(kept(plan, 29), 1); /* young */
  assert_int_equal(kept(plan, 28), 0);
  assert_int_equal(kept(plan, 24), 1); /* newest verified */
  assert_int_equal(kept(plan, 21), 1); /* locked */
  const json_t *all = json_object_get(plan, "backups");
  assert_true(json_is_true(json_object_get(json_array_get(all, 9), "locked")));
  assert_null(json_object_get(json_array_get(all, 0), "locked"));
  json_decref(plan);
  json_decref(pol);
  json_decref(b);
  assert_null(eng__retention_plan(json_null(), json_null(), 0));
  /* no keep_*: an error, never "keep nothing" */
  json_t *none = json_array(), *empty = json_object();
  plan = eng__retention_plan(none, empty, 0);
  assert_non_null(strstr(json_string_value(json_object_get(plan, "error")), "keep_last: 0"));
  json_decref(plan);
  json_decref(none);
  json_decref(empty);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_name_times),
      cmocka_unit_test(test_daily_weekly),
      cmocka_unit_test(test_floors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
