/* Unit tests for core/journal.c: records written are read back, torn
 * records are dropped, and what a run's resources are to cleanup (kept,
 * temporary, partial, removed, an old journal's all kept), the cleanup
 * runbook built from them, the protected lists it is held to. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "state/state.h"
#include "unit.h"

static char dir[4096];

static int setup(void **state) {
  (void)state;
  return unit_tmp_dir("engine-test-journal", dir, sizeof dir);
}

static int teardown(void **state) {
  (void)state;
  eng__rm_tree(dir);
  return 0;
}

static json_t *undo(const char *what) {
  return json_pack("{s:{s:s, s:{s:s}}}", "undo", "action", "postgres.drop_database",
                   "with", "database", what);
}

/* The resource named id in res. */
static json_t *find(json_t *res, const char *id) {
  size_t i;
  json_t *e;
  json_array_foreach(res, i, e)
    if (!strcmp(json_string_value(json_object_get(e, "id")), id)) return e;
  fail_msg("no resource %s", id);
  return NULL;
}

static bool is(json_t *e, const char *field) {
  return json_is_true(json_object_get(e, field));
}

static void test_dispositions(void **state) {
  (void)state;
  eng__journal j = {0};
  assert_int_equal(eng__journal_open(&j, dir, NULL), 0);
  json_t *d;
  /* a dump that ended ok: kept */
  eng__journal_step(&j, "step.start", "dump", "h1", NULL, NULL);
  d = undo("dumped");
  int64_t t = eng__journal_resource(&j, "intent", "dump", "object", "dumped", "kept", d);
  json_decref(d);
  assert_true(t > 0);
  d = json_pack("{s:I}", "intent", (json_int_t)t);
  eng__journal_resource(&j, "confirm", "dump", NULL, NULL, NULL, d);
  json_decref(d);
  eng__journal_step(&j, "step.end", "dump", "h1", "ok", NULL);
  /* a drill database: temporary, still there; another removed */
  eng__journal_step(&j, "step.start", "restore", "h2", NULL, NULL);
  d = undo("drill");
  eng__journal_resource(&j, "intent", "restore", "database", "drill", "temporary", d);
  eng__journal_resource(&j, "intent", "restore", "database", "gone", "temporary", d);
  json_decref(d);
  eng__journal_resource(&j, "removed", "restore", "database", "gone", NULL, NULL);
  eng__journal_step(&j, "step.end", "restore", "h2", "ok", NULL);
  /* a kept one whose step failed: partial */
  eng__journal_step(&j, "step.start", "upload", "h3", NULL, NULL);
  d = undo("half");
  eng__journal_resource(&j, "intent", "upload", "object", "half", "kept", d);
  json_decref(d);
  eng__journal_step(&j, "step.end", "upload", "h3", "failed", NULL);
  /* killed mid-step: no step.end */
  eng__journal_step(&j, "step.start", "copy", "h4", NULL, NULL);
  d = undo("killed");
  eng__journal_resource(&j, "intent", "copy", "object", "killed", "kept", d);
  /* an engine before dispositions: kept, even unfinished */
  eng__journal_resource(&j, "intent", "copy", "object", "old", NULL, d);
  json_decref(d);
  json_t *lists = json_pack("{s:[s]}", "protected_databases", "prod*");
  eng__journal_guards(&j, lists);
  json_decref(lists);
  eng__journal_close(&j);

  json_t *all = eng__journal_read(dir);
  assert_non_null(all);
  json_t *res = eng__journal_resources(all);
  assert_int_equal(json_array_size(res), 6);
  json_t *e = find(res, "dumped");
  assert_true(is(e, "present") && !is(e, "partial") && !is(e, "leftover"));
  assert_string_equal(json_string_value(json_object_get(e, "disposition")), "kept");
  e = find(res, "drill");
  assert_true(is(e, "present") && is(e, "leftover") && !is(e, "partial"));
  e = find(res, "gone");
  assert_true(!is(e, "present") && !is(e, "leftover"));
  e = find(res, "half");
  assert_true(is(e, "partial") && is(e, "leftover"));
  e = find(res, "killed");
  assert_true(is(e, "partial") && is(e, "leftover"));
  e = find(res, "old");
  assert_true(!is(e, "recorded") && is(e, "partial") && !is(e, "leftover"));
  assert_string_equal(json_string_value(json_object_get(e, "disposition")), "kept");

  /* cleanup removes the leftovers, newest first, held to the lists */
  size_t n = 0;
  char *text = eng__cleanup_runbook(dir, ENG__CLEAN_LEFTOVERS, &n);
  assert_int_equal(n, 3);
  json_t *rb = json_loads(text, 0, NULL);
  free(text);
  json_t *steps = json_object_get(rb, "steps");
  const char *order[] = {"killed", "half", "drill"};
  for (size_t i = 0; i < 3; i++) {
    json_t *w = json_object_get(json_array_get(steps, i), "with");
    assert_string_equal(json_string_value(json_object_get(w, "database")), order[i]);
  }
  json_t *g = json_object_get(json_object_get(rb, "guards"), "protected_databases");
  assert_string_equal(json_string_value(json_array_get(g, 0)), "prod*");
  json_decref(rb);
  /* with kept: every present one */
  text = eng__cleanup_runbook(dir, ENG__CLEAN_ALL, &n);
  assert_int_equal(n, 5);
  free(text);
  json_decref(res);
  json_decref(all);
}

static void test_torn_and_unknown_records(void **state) {
  (void)state;
  char *path = eng__asprintf("%s/journal", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("{\"event\":\"intent\",\"kind\":\"object\",\"id\":\"a\",\"step\":\"s\","
        "\"disposition\":\"temporary\",\"detail\":{\"undo\":{\"action\":\"s3.delete\"}}}\n"
        "not json at all\n"
        "{\"event\":\"intent\",\"kind\":7,\"id\":\"b\"}\n"
        "{\"event\":\"intent\",\"kind\":\"object\",\"id\":\"c\",\"step\":\"s\","
        "\"disposition\":\"forever\",\"detail\":{\"undo\":{\"action\":\"shell\"}}}\n"
        "{\"event\":\"removed\",\"kind\":\"object\",\"id\":\"zz\"}\n"
        "{\"event\":\"intent\",\"kind\":\"object\",\"id\":\"d\",\"step\":\"s\",\"disp",
        f);
  fclose(f);
  free(path);
  json_t *all = eng__journal_read(dir);
  json_t *res = eng__journal_resources(all);
  /* the torn last record (never finished: its resource was never made) is
   * left out; a line that cannot be read may stand for a resource: it is
   * one, damaged, with what its text shows */
  assert_int_equal(json_array_size(res), 3);
  assert_true(is(find(res, "a"), "leftover"));
  json_t *bad = find(res, "journal line 2");
  assert_true(is(bad, "damaged") && is(bad, "leftover") && is(bad, "present"));
  assert_string_equal(json_string_value(json_object_get(bad, "text")), "not json at all");
  /* an unknown disposition is no disposition: kept */
  assert_false(is(find(res, "c"), "leftover"));
  size_t n = 9;
  char *text = eng__cleanup_runbook(dir, ENG__CLEAN_ALL, &n);
  assert_int_equal(n, 1); /* a built-in undo (shell) is never run */
  free(text);
  json_decref(res);
  json_decref(all);
}

/* One byte changed in a record: it is reported with its line and what can
 * be read of it, never skipped in silence. */
static void test_damaged_record_is_kept_in_view(void **state) {
  (void)state;
  char *path = eng__asprintf("%s/journal", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("{\"event\":\"intent\",\"kind\":\"database\",\"id\":\"h:5432/recovered_x\","
        "\"step\":\"restore\",\"disposition\":\"kept\",\"detail\":{\"undo\":"
        "{\"action\":\"postgres.drop_database\"}}\n" /* a '}' lost */
        "{\"event\":\"step.end\",\"step\":\"restore\",\"status\":\"ok\"}\n",
        f);
  fclose(f);
  free(path);
  json_t *all = eng__journal_read(dir);
  json_t *res = eng__journal_resources(all);
  assert_int_equal(json_array_size(res), 1);
  json_t *e = json_array_get(res, 0);
  assert_true(is(e, "damaged") && is(e, "leftover"));
  assert_int_equal(json_integer_value(json_object_get(e, "line")), 1);
  assert_string_equal(json_string_value(json_object_get(e, "seen_kind")), "database");
  assert_string_equal(json_string_value(json_object_get(e, "seen_id")), "h:5432/recovered_x");
  assert_string_equal(json_string_value(json_object_get(e, "seen_action")),
                      "postgres.drop_database");
  size_t n = 9;
  char *text = eng__cleanup_runbook(dir, ENG__CLEAN_ALL, &n);
  assert_int_equal(n, 0); /* never undone from a guess */
  free(text);
  json_decref(res);
  json_decref(all);
}

static void test_no_journal(void **state) {
  (void)state;
  size_t n = 0;
  assert_null(eng__journal_read("/nonexistent/engine-journal"));
  assert_null(eng__cleanup_runbook("/nonexistent/engine-journal", ENG__CLEAN_ALL, &n));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_dispositions, setup, teardown),
      cmocka_unit_test_setup_teardown(test_torn_and_unknown_records, setup, teardown),
      cmocka_unit_test_setup_teardown(test_damaged_record_is_kept_in_view, setup, teardown),
      cmocka_unit_test(test_no_journal),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
