/* Unit tests for core/record/index.c and metrics.c: segment lines read
 * back checked (a wrong type or a bad run id skips the line, unknown
 * fields are dropped, a torn last line is not read), records of a run
 * merged, the previous successful run of the same runbook and lock, the
 * regression limits, and the metrics text of one group. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record/record.h"

static const char segment[] =
    "{\"run_id\":\"r1\",\"runbook\":\"ledger\",\"lock\":\"l\",\"started_at\":\"2026-11-01T00:00:00.000Z\",\"outcome\":\"running\"}\n"
    "{\"run_id\":\"r1\",\"outcome\":\"ok\",\"rows\":1000,\"rto_ms\":2000,\"backup_bytes\":500,\"later\":1}\n"
    "{\"run_id\":\"r2\",\"runbook\":\"ledger\",\"lock\":\"l\",\"started_at\":\"2026-11-02T00:00:00.000Z\",\"outcome\":\"failed\",\"rows\":10}\n"
    "{\"run_id\":\"r3\",\"runbook\":\"ledger\",\"lock\":\"other\",\"started_at\":\"2026-11-03T00:00:00.000Z\",\"outcome\":\"ok\",\"rows\":5}\n"
    "{\"run_id\":\"r4\",\"runbook\":\"ledger\",\"lock\":\"l\",\"started_at\":\"2026-11-04T00:00:00.000Z\",\"outcome\":\"ok\",\"rows\":590,\"rto_ms\":3500,\"backup_bytes\":480,"
    "\"steps\":{\"restore\":1500}}\n"
    "{\"run_id\":\"r5\",\"rows\":\"many\"}\n"
    "{\"run_id\":\"../x\",\"outcome\":\"ok\"}\n"
    "not json\n"
    "{\"run_id\":\"r6\",\"runbook\":\"ledger\"";

static json_t *read_segment(size_t *bad) {
  json_t *runs = json_object();
  *bad = eng__index_parse(segment, sizeof segment - 1, "index/00000001.jsonl", runs, NULL);
  return runs;
}

static void test_parse_and_merge(void **state) {
  (void)state;
  size_t bad;
  json_t *runs = read_segment(&bad);
  assert_int_equal(bad, 3);
  assert_int_equal(json_object_size(runs), 4); /* r6 is torn */
  json_t *r1 = json_object_get(runs, "r1");
  assert_string_equal(json_string_value(json_object_get(r1, "outcome")), "ok");
  assert_string_equal(json_string_value(json_object_get(r1, "runbook")), "ledger");
  assert_null(json_object_get(r1, "later"));
  assert_null(json_object_get(runs, "r5"));
  json_decref(runs);
}

static void test_previous_ok_and_regressions(void **state) {
  (void)state;
  size_t bad;
  json_t *runs = read_segment(&bad);
  json_t *sorted = eng__index_sorted(runs);
  json_t *r4 = json_object_get(runs, "r4");
  assert_ptr_equal(json_array_get(sorted, 0), r4);
  const json_t *prev = eng__index_previous_ok(sorted, r4);
  /* r2 failed, r3 holds another lock */
  assert_string_equal(json_string_value(json_object_get(prev, "run_id")), "r1");
  assert_null(eng__index_previous_ok(sorted, json_object_get(runs, "r1")));
  eng__index_limits lim = {40, 5, 1.5};
  json_t *regs = eng__index_regressions(r4, prev, &lim);
  /* rows 1000 -> 590 is a 41% drop; backup 500 -> 480 is 4%; RTO x1.75 */
  assert_int_equal(json_array_size(regs), 2);
  assert_string_equal(json_string_value(json_object_get(json_array_get(regs, 0), "figure")), "rows");
  assert_int_equal(json_integer_value(json_object_get(json_array_get(regs, 0), "previous")), 1000);
  assert_string_equal(json_string_value(json_object_get(json_array_get(regs, 0), "previous_run")), "r1");
  assert_string_equal(json_string_value(json_object_get(json_array_get(regs, 1), "figure")), "rto_ms");
  json_decref(regs);
  eng__index_limits none = {-1, -1, -1};
  regs = eng__index_regressions(r4, prev, &none);
  assert_int_equal(json_array_size(regs), 0);
  json_decref(regs);
  json_decref(sorted);
  json_decref(runs);
}

static void test_metrics_of_one_group(void **state) {
  (void)state;
  size_t bad;
  json_t *runs = read_segment(&bad);
  json_t *sorted = eng__index_sorted(runs);
  char *text = eng__metrics_text(sorted, "ledger", "l", true);
  assert_non_null(strstr(text, "engine_restored_rows{runbook=\"ledger\",lock=\"l\"} 590\n"));
  assert_non_null(strstr(text, "engine_runs_total{runbook=\"ledger\",lock=\"l\",result=\"ok\"} 2\n"));
  assert_non_null(strstr(text, "engine_runs_total{runbook=\"ledger\",lock=\"l\",result=\"failed\"} 1\n"));
  assert_non_null(strstr(text, "engine_step_duration_seconds{runbook=\"ledger\",lock=\"l\",step=\"restore\"} 1.5\n"));
  /* 2026-11-04T00:00:00Z */
  assert_non_null(strstr(text, "engine_last_success_timestamp_seconds{runbook=\"ledger\",lock=\"l\"} 1793750400\n"));
  free(text);
  text = eng__metrics_text(sorted, "nothing", NULL, false);
  assert_non_null(strstr(text, "engine_last_success_timestamp_seconds 0\n"));
  assert_null(strstr(text, "runbook="));
  free(text);
  json_decref(sorted);
  json_decref(runs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_and_merge),
      cmocka_unit_test(test_previous_ok_and_regressions),
      cmocka_unit_test(test_metrics_of_one_group),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
