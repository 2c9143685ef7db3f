/* Unit tests for core/util.c: durations, suggestions, buffers, time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "base/base.h"

static void test_durations(void **state) {
  (void)state;
  int64_t ms;
  assert_int_equal(eng__parse_duration("500ms", &ms), 0);
  assert_int_equal(ms, 500);
  assert_int_equal(eng__parse_duration("30s", &ms), 0);
  assert_int_equal(ms, 30000);
  assert_int_equal(eng__parse_duration("1h30m", &ms), 0);
  assert_int_equal(ms, 5400000);
  /* no wrap-around: a huge value or a long sum is refused, not negative */
  assert_int_equal(eng__parse_duration("1e300", &ms), -1);
  assert_int_equal(eng__parse_duration("9e15ms9e15ms9e15ms9e15ms9e15ms", &ms), -1);
  assert_int_equal(eng__parse_duration("36500d", &ms), 0);
  assert_int_equal(eng__parse_duration("36501d", &ms), -1);
  assert_int_equal(eng__parse_duration("2", &ms), 0);
  assert_int_equal(ms, 2000);
  assert_int_equal(eng__parse_duration("1.5s", &ms), 0);
  assert_int_equal(ms, 1500);
  assert_int_equal(eng__parse_duration("", &ms), -1);
  assert_int_equal(eng__parse_duration("5 minutes", &ms), -1);
  assert_int_equal(eng__parse_duration("-1s", &ms), -1);
  assert_int_equal(eng__parse_duration("1x", &ms), -1);
  assert_int_equal(eng__parse_duration("5m3", &ms), -1);
}

static void test_suggest(void **state) {
  (void)state;
  const char *c[] = {"database", "with", "needs", "two", "for"};
  assert_string_equal(eng__suggest("databse", c, 5), "database");
  assert_string_equal(eng__suggest("wiht", c, 5), "with");
  assert_string_equal(eng__suggest("tow", c, 5), "two");
  assert_string_equal(eng__suggest("fro", c, 5), "for");
  assert_null(eng__suggest("completely", c, 5));
  assert_int_equal(eng__edit_distance("abc", "abc"), 0);
  assert_int_equal(eng__edit_distance("abc", "acb"), 1);
}

static void test_buf_and_format(void **state) {
  (void)state;
  eng__buf b = {0};
  for (int i = 0; i < 1000; i++) eng__buf_addf(&b, "%d,", i);
  assert_int_equal(b.len, strlen(b.data));
  char *s = eng__buf_steal(&b);
  assert_true(strncmp(s, "0,1,2,", 6) == 0);
  free(s);
  char t[40];
  assert_string_equal(eng__fmt_time(0, t, sizeof t), "1970-01-01T00:00:00.000Z");
  assert_string_equal(eng__fmt_time(1700000000123, t, sizeof t),
                      "2023-11-14T22:13:20.123Z");
  assert_string_equal(eng__fmt_duration(340, t, sizeof t), "340ms");
  assert_string_equal(eng__fmt_duration(125000, t, sizeof t), "2m05s");
  assert_string_equal(eng__fmt_bytes(1500000, t, sizeof t), "1.5 MB");
  char h[65];
  eng__sha256_hex("abc", 3, h);
  assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  assert_true(eng__glob("template*", "template1"));
  assert_false(eng__glob("template*", "mytemplate"));
}

static int64_t fixed_clock(void) { return 42000; }

static void test_clock_injectable(void **state) {
  (void)state;
  eng__set_clock(fixed_clock);
  assert_int_equal(eng__now_ms(), 42000);
  eng__set_clock(NULL);
  assert_true(eng__now_ms() > 1600000000000);
}

static void test_timestamps(void **state) {
  (void)state;
  int64_t ms;
  char why[160];
  /* RFC 3339 and the space-separated form; no offset is UTC */
  assert_int_equal(eng__parse_timestamp("2026-11-29T22:20:00Z", &ms, why, sizeof why), 0);
  assert_true(ms == INT64_C(1795990800000));
  int64_t z = ms;
  assert_int_equal(eng__parse_timestamp("2026-11-29 22:20", &ms, why, sizeof why), 0);
  assert_true(ms == z);
  assert_int_equal(eng__parse_timestamp("2026-11-29 23:20:00+01:00", &ms, why, sizeof why), 0);
  assert_true(ms == z);
  assert_int_equal(eng__parse_timestamp("2026-11-29T17:20:00.250-05:00", &ms, why, sizeof why), 0);
  assert_true(ms == z + 250);
  assert_int_equal(eng__parse_timestamp("2026-11-29T22:20:00.5Z", &ms, why, sizeof why), 0);
  assert_true(ms == z + 500);
  assert_int_equal(eng__parse_timestamp("1970-01-01", &ms, why, sizeof why), 0);
  assert_true(ms == 0);
  char buf[40];
  assert_string_equal(eng__fmt_time(z, buf, sizeof buf), "2026-11-29T22:20:00.000Z");
  /* refused, with the reason */
  assert_int_equal(eng__parse_timestamp("29 Nov 2026 22:20", &ms, why, sizeof why), -1);
  assert_non_null(strstr(why, "YYYY-MM-DD"));
  assert_int_equal(eng__parse_timestamp("2026-02-29 10:00", &ms, why, sizeof why), -1);
  assert_non_null(strstr(why, "does not exist"));
  assert_int_equal(eng__parse_timestamp("2028-02-29 10:00", &ms, why, sizeof why), 0);
  assert_int_equal(eng__parse_timestamp("2026-13-01", &ms, why, sizeof why), -1);
  assert_int_equal(eng__parse_timestamp("2026-11-29 24:00", &ms, why, sizeof why), -1);
  assert_int_equal(eng__parse_timestamp("2026-11-29 22:20 CET", &ms, why, sizeof why), -1);
  assert_non_null(strstr(why, "CET"));
  assert_int_equal(eng__parse_timestamp("2026-11-29T22:20:00.Z", &ms, why, sizeof why), -1);
  assert_int_equal(eng__parse_timestamp("", &ms, why, sizeof why), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_durations),
      cmocka_unit_test(test_timestamps),
      cmocka_unit_test(test_suggest),
      cmocka_unit_test(test_buf_and_format),
      cmocka_unit_test(test_clock_injectable),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
