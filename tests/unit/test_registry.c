/* Unit tests for core/registry.c: the ABI checks of the plugin loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "registry.h"

static int nop(eng_call *c, const json_t *p) {
  (void)c;
  (void)p;
  return ENG_OK;
}

static const eng_action acts[] = {
    {"act", "doc", ENG_SIDE_READ_ONLY, 0, NULL, NULL, nop, NULL}};

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
  /* abi_major, abi_minor and not_plugin (no entry point) are refused */
  assert_int_equal(nf, 3);
  const eng__plugin_failure *f;
  assert_int_equal(eng__registry_failures(&f), 3);
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
      cmocka_unit_test(test_load_test_plugins),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
