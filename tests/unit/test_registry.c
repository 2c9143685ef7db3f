/* Unit tests for core/registry.c: the ABI checks of the plugin loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "actions/actions.h"

static int nop(eng_call *c, const json_t *p) {
  (void)c;
  (void)p;
  return ENG_OK;
}

static const eng_action acts[] = {{.name = "act",
                                   .doc = "doc",
                                   .side_effect = ENG_SIDE_READ_ONLY,
                                   .start = nop}};

/* Declarations checked at load: defaults against their type, range and
 * check; ranges themselves. */
static int only_even(const json_t *v, char *err, size_t n) {
  if (json_integer_value(v) % 2 == 0) return 0;
  snprintf(err, n, "must be even");
  return 1;
}

static void expect_refused(const eng_param *params, size_t n,
                           const char *needle) {
  char err[512] = "";
  eng_action a = acts[0];
  a.params = params;
  a.n_params = n;
  eng_plugin p = {ENG_PLUGIN_HEADER, .name = "decl", .actions = &a,
                  .n_actions = 1};
  assert_int_equal(eng__plugin_check(&p, err, sizeof err), ENG_ERR_ABI);
  if (!strstr(err, needle)) print_error("expected '%s' in: %s\n", needle, err);
  assert_non_null(strstr(err, needle));
}

static void test_typed_declarations(void **state) {
  (void)state;
  const eng_param wrong_type[] = {
      {.name = "jobs", .type = ENG_T_INT, .def = "\"six\""}};
  expect_refused(wrong_type, 1,
                 "plugin 'decl' action 'act' parameter 'jobs': default \"six\" "
                 "does not fit the declared int");
  const eng_param range[] = {{.name = "port", .type = ENG_T_INT,
                              .flags = ENG_P_MIN | ENG_P_MAX, .def = "70000",
                              .min = 1, .max = 65535}};
  expect_refused(range, 1, "70000 is out of range: it must be from 1 to 65535");
  const eng_param inverted[] = {{.name = "n", .type = ENG_T_INT,
                                 .flags = ENG_P_MIN | ENG_P_MAX, .min = 5,
                                 .max = 1}};
  expect_refused(inverted, 1, "min 5 is above max 1");
  static const char *const modes[] = {"a", "b", NULL};
  const eng_param values[] = {
      {.name = "mode", .type = ENG_T_STRING, .def = "\"c\"", .values = modes}};
  expect_refused(values, 1, "'c' is not one of a|b");
  const eng_param checked[] = {
      {.name = "n", .type = ENG_T_INT, .def = "3", .check = only_even}};
  expect_refused(checked, 1, "must be even");
  const eng_param not_json[] = {
      {.name = "s", .type = ENG_T_STRING, .def = "plain"}};
  expect_refused(not_json, 1, "is not JSON text");
  /* good ones pass */
  const eng_param good[] = {
      {.name = "port", .type = ENG_T_INT, .flags = ENG_P_MIN | ENG_P_MAX,
       .def = "5432", .min = 1, .max = 65535},
      {.name = "mode", .type = ENG_T_STRING, .def = "\"b\"", .values = modes},
      {.name = "n", .type = ENG_T_INT, .def = "4", .check = only_even}};
  char err[512];
  eng_action a = acts[0];
  a.params = good;
  a.n_params = 3;
  eng_plugin p = {ENG_PLUGIN_HEADER, .name = "decl", .actions = &a,
                  .n_actions = 1};
  assert_int_equal(eng__plugin_check(&p, err, sizeof err), ENG_OK);
}

static void test_descriptor_checks(void **state) {
  (void)state;
  char err[512];
  eng_plugin p = {ENG_PLUGIN_HEADER, .name = "ok", .actions = acts, .n_actions = 1};
  assert_int_equal(eng__plugin_check(&p, err, sizeof err), ENG_OK);

  eng_plugin q = p;
  q.abi_major = ENG_ABI_MAJOR + 1;
  assert_int_equal(eng__plugin_check(&q, err, sizeof err), ENG_ERR_ABI);
  assert_non_null(strstr(err, "field 'abi_major'"));

  q = p;
  q.abi_minor = ENG_ABI_MINOR + 1;
  assert_int_equal(eng__plugin_check(&q, err, sizeof err), ENG_ERR_ABI);
  assert_non_null(strstr(err, "field 'abi_minor'"));

  q = p;
  q.size = 4;
  assert_int_equal(eng__plugin_check(&q, err, sizeof err), ENG_ERR_ABI);
  assert_non_null(strstr(err, "field 'size'"));

  q = p;
  q.name = "Bad Name";
  assert_int_equal(eng__plugin_check(&q, err, sizeof err), ENG_ERR_ABI);
  assert_non_null(strstr(err, "field 'name'"));

  assert_int_equal(eng__plugin_check(NULL, err, sizeof err), ENG_ERR_ABI);
}

static void test_load_test_plugins(void **state) {
  (void)state;
  eng__diags d = {0};
  d.quiet = true;
  const char *dirs[] = {TEST_PLUGIN_DIR};
  size_t nf = eng__registry_load(dirs, 1, &d);
  /* abi_major, abi_minor, not_plugin (no entry point) and baddefault are
   * refused */
  assert_int_equal(nf, 4);
  const eng__plugin_failure *f;
  assert_int_equal(eng__registry_failures(&f), 4);
  assert_non_null(strstr(d.text.data,
                         "plugin 'testbaddef' action 'nop' parameter 'jobs': "
                         "default \"six\" does not fit the declared int"));
  /* a plugin built with the 1.0 SDK: its arrays read with 1.0 sizes */
  const eng__action_ref *old = eng__registry_find("testold.first");
  assert_non_null(old);
  assert_string_equal(old->action->params[1].name, "count");
  assert_string_equal(old->action->params[1].def, "3");
  assert_string_equal(old->action->params[0].choices, "fast|slow");
  assert_null(old->action->params[2].name);
  assert_string_equal(old->action->outputs[1].name, "count");
  /* a plugin built with the 1.1 SDK: its actions read with the 1.1 size */
  const eng__action_ref *two = eng__registry_find("testeleven.two");
  assert_non_null(two);
  assert_string_equal(two->action->doc, "the second");
  assert_string_equal(two->action->params[0].def, "7");
  assert_null(two->action->describe);
  /* 1.3: read with the 1.3 size; what it creates is kept */
  const eng__action_ref *t13 = eng__registry_find("testthirteen.two");
  assert_non_null(t13);
  assert_string_equal(t13->action->doc, "the second");
  assert_string_equal(t13->action->params[0].def, "5");
  assert_non_null(t13->action->describe);
  assert_int_equal(t13->action->creates, ENG_KEPT);
  const eng__action_ref *second = eng__registry_find("testold.second");
  assert_non_null(second);
  assert_string_equal(second->action->params[0].name, "name");
  assert_non_null(strstr(d.text.data, "field 'abi_major'"));
  assert_non_null(strstr(d.text.data, "field 'abi_minor'"));
  assert_non_null(strstr(d.text.data, "does not export"));
  assert_non_null(eng__registry_find("testgood.echo"));
  assert_non_null(eng__registry_find("shell"));
  assert_null(eng__registry_find("test_abi_major.nop"));
  eng__registry_unload();
  eng__diags_free(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_descriptor_checks),
      cmocka_unit_test(test_typed_declarations),
      cmocka_unit_test(test_load_test_plugins),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
