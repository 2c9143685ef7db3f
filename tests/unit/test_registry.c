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
  /* 1.4: params read with the 1.4 size; its list declares no items, so
   * the elements pass as written */
  const eng__action_ref *t14 = eng__registry_find("testfourteen.two");
  assert_non_null(t14);
  assert_int_equal(t14->action->n_params, 3);
  assert_int_equal(t14->action->params[0].items, ENG_ITEMS_UNDECLARED);
  assert_string_equal(t14->action->params[1].def, "5432");
  assert_true(t14->action->params[1].min == 1);
  assert_string_equal(t14->action->params[2].name, "mode");
  assert_string_equal(t14->action->params[2].def, "\"fast\"");
  assert_int_equal(eng__registry_find("testfourteen.one")->action->creates,
                   ENG_TEMPORARY);
  char err[256];
  json_t *given = json_pack("[i, b, s]", 1, 1, "x");
  json_t *as_is = eng__convert_param(given, &t14->action->params[0], err,
                                     sizeof err);
  assert_true(json_equal(as_is, given));
  json_decref(as_is);
  json_decref(given);
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

/* items declared on a parameter that is not a list, or out of range:
 * the plugin is refused naming the field. */
static void test_items_declarations(void **state) {
  (void)state;
  const eng_param not_list[] = {
      {.name = "port", .type = ENG_T_INT, .items = ENG_ITEMS_INT}};
  expect_refused(not_list, 1, "parameter 'port': 'items' declares the "
                              "elements of a list, but the parameter is a int");
  const eng_param unknown[] = {
      {.name = "xs", .type = ENG_T_LIST, .items = (eng_items)42}};
  expect_refused(unknown, 1, "field 'items' is 42, not a known element type");
  const eng_param bad_default[] = {{.name = "ports", .type = ENG_T_LIST,
                                    .items = ENG_ITEMS_INT,
                                    .def = "[80, \"http\"]"}};
  expect_refused(bad_default, 1, "item 2 of 2: expected an integer, got a "
                                 "string 'http'");
}

/* What a list of `items` becomes from [5432, true, 1.5] and friends: the
 * elements converted, or an error naming the element. */
static void check_items(const char *where, const eng_param *p) {
  char err[512] = "";
  json_t *in = NULL, *want = NULL;
  switch (p->items) {
  case ENG_ITEMS_STRING:
    in = json_pack("[i, b, f, s]", 5432, 1, 1.5, "x");
    want = json_pack("[s, s, s, s]", "5432", "true", "1.5", "x");
    break;
  case ENG_ITEMS_INT:
    in = json_pack("[i, f, s]", 5432, 2.0, "8");
    want = json_pack("[i, i, i]", 5432, 2, 8);
    break;
  case ENG_ITEMS_NUMBER:
    in = json_pack("[i, f, s]", 5432, 1.5, "0.5");
    want = json_pack("[i, f, f]", 5432, 1.5, 0.5);
    break;
  case ENG_ITEMS_BOOL:
    in = json_pack("[b, s]", 1, "false");
    want = json_pack("[b, b]", 1, 0);
    break;
  case ENG_ITEMS_ANY:
    in = json_pack("[i, b, f, n]", 5432, 1, 1.5);
    want = json_incref(in);
    break;
  case ENG_ITEMS_MAP: /* scalars are no maps: the element is named */
    in = json_pack("[{s:s}, i]", "type", "divider", 5432);
    break;
  default:
    print_error("%s: items %d not covered by this test\n", where, (int)p->items);
    fail();
  }
  json_t *got = eng__convert_param(in, p, err, sizeof err);
  if (want ? !json_equal(got, want) : got != NULL ||
                 !strstr(err, "item 2 of 2: expected a map, got an integer")) {
    char *g = got ? json_dumps(got, JSON_ENCODE_ANY) : NULL;
    print_error("%s (items %s): got %s %s\n", where, eng__items_name(p->items),
                g ? g : "nothing", err);
    free(g);
    fail();
  }
  json_decref(got);
  json_decref(in);
  json_decref(want);
}

/* Every list parameter of every shipped plugin (plugins/, as built here)
 * declares its items, and the host converts int, bool and float elements
 * to them. */
static void test_shipped_list_params(void **state) {
  (void)state;
  eng__diags d = {0};
  d.quiet = true;
  const char *dirs[] = {TEST_BUILD_ROOT "/plugins"};
  eng__registry_load(dirs, 1, &d);
  const eng__action_ref **acts;
  size_t na = eng__registry_actions(&acts), walked = 0;
  bool docker_exec = false;
  for (size_t i = 0; i < na; i++) {
    for (const eng_param *p = acts[i]->action->params; p && p->name; p++) {
      char where[160];
      snprintf(where, sizeof where, "%s.%s", acts[i]->full, p->name);
      if (p->type == ENG_T_LIST && p->items == ENG_ITEMS_UNDECLARED) {
        print_error("%s: a list parameter without items\n", where);
        fail();
      }
      if (!p->items) continue;
      check_items(where, p);
      walked++;
      docker_exec |= !strcmp(where, "docker.exec.command");
    }
  }
  const eng__plugin_failure *f;
  size_t nf = eng__registry_failures(&f);
  for (size_t i = 0; i < nf; i++) print_error("%s: %s\n", f[i].path, f[i].message);
  assert_int_equal(nf, 0);
  assert_true(walked > 2); /* the built-ins have two, the plugins more */
  if (eng__registry_find("docker.run")) assert_true(docker_exec);
  eng__registry_unload();
  eng__diags_free(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_descriptor_checks),
      cmocka_unit_test(test_typed_declarations),
      cmocka_unit_test(test_load_test_plugins),
      cmocka_unit_test(test_items_declarations),
      cmocka_unit_test(test_shipped_list_params),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
