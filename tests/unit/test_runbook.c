/* Unit tests for core/yaml.c, core/runbook.c and core/template.c: every
 * loader error class with its exact file:line:col, and expression typing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actions/actions.h"
#include "unit.h"
#include "exec/exec.h"

static char *write_tmp(const char *text) {
  char *path = strdup("/tmp/engine-test-XXXXXX.yaml");
  int fd = mkstemps(path, 5);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  return path;
}

/* Load + validate (the Lua state capped at mem_limit bytes, 0: the
 * default); returns the diagnostics text (caller frees). */
static char *diagnose_in(const char *text, size_t mem_limit, size_t *errors) {
  char *path = write_tmp(text);
  eng__diags d = {0};
  d.quiet = true;
  eng__runbook *rb = eng__runbook_load(path, &d);
  if (rb) {
    eng__lua_opts o = {0};
    o.mem_limit = mem_limit;
    eng__lua *L = NULL;
    char err[256];
    assert_int_equal(eng__lua_create(&o, &L, err, sizeof err), ENG_OK);
    eng__plan_validate(rb, L, &d);
    eng__runbook_free(rb);
    eng__lua_destroy(L);
  }
  *errors = d.errors;
  eng__diags_end(&d); /* the note on what was not shown */
  /* strip the temp path so expectations read "F:line:col" */
  eng__buf out = {0};
  const char *s = d.text.data ? d.text.data : "";
  size_t pl = strlen(path);
  while (*s) {
    if (!strncmp(s, path, pl)) {
      eng__buf_adds(&out, "F");
      s += pl;
    } else {
      eng__buf_add(&out, s, 1);
      s++;
    }
  }
  eng__diags_free(&d);
  unlink(path);
  free(path);
  return eng__buf_steal(&out);
}

static char *diagnose(const char *text, size_t *errors) {
  return diagnose_in(text, 0, errors);
}

static void expect(const char *text, const char *needle) {
  size_t n;
  char *got = diagnose(text, &n);
  if (!strstr(got, needle) || n == 0) {
    print_error("expected %s\n got: %s\n", needle, got);
    free(got);
    fail();
  }
  free(got);
}

static int setup(void **state) {
  (void)state;
  return unit_load_test_plugins();
}

static int teardown(void **state) {
  (void)state;
  eng__registry_unload();
  return 0;
}

#define HDR "version: 1\nname: t\n"

static void test_valid(void **state) {
  (void)state;
  size_t n;
  char *got = diagnose(HDR "params:\n  x: {default: 1, type: int}\nsteps:\n"
                           "  - id: a\n    uses: sleep\n    with: {for: 1s}\n"
                           "  - id: b\n    uses: shell\n    with:\n"
                           "      command: echo ${params.x + 1}\n"
                           "finally:\n  - id: c\n    uses: sleep\n    with: {for: 1ms}\n",
                       &n);
  assert_int_equal(n, 0);
  free(got);
}

/* Types: only the documented names, strict booleans, timestamps. */
static void test_types(void **state) {
  (void)state;
  expect(HDR "params:\n  n: {type: integer, default: 3}\nsteps:\n"
             "  - id: a\n    uses: sleep\n    with: {for: 1s}\n",
         "F:4:13: error: parameter 'n': unknown type 'integer'; did you mean 'int'?");
  expect(HDR "params:\n  f: {type: bool, default: 1}\nsteps:\n"
             "  - id: a\n    uses: sleep\n    with: {for: 1s}\n",
         "F:4:28: error: parameter 'f': default: expected true or false, got 1 (write true)");
  expect(HDR "params:\n  f: {type: bool, default: \"yes\"}\nsteps:\n"
             "  - id: a\n    uses: sleep\n    with: {for: 1s}\n",
         "got 'yes' (write true)");
  expect(HDR "params:\n  t: {type: timestamp, default: \"29 Nov 2026 22:20\"}\nsteps:\n"
             "  - id: a\n    uses: sleep\n    with: {for: 1s}\n",
         "'29 Nov 2026 22:20' is not a timestamp (it does not start with a date YYYY-MM-DD)");
  expect(HDR "slo:\n  rpo: 15m\n  backup_time: \"29 Nov 2026 22:20\"\nsteps:\n"
             "  - id: a\n    uses: sleep\n    with: {for: 1s}\n",
         "F:5:16: error: slo.backup_time '29 Nov 2026 22:20' is not a timestamp");
  size_t n;
  char *got = diagnose(HDR "params:\n  t: {type: timestamp, default: \"2026-11-29 22:20\"}\n"
                           "  f: {type: bool, default: FALSE}\n"
                           "slo:\n  rpo: 15m\n  backup_time: \"${params.t}\"\nsteps:\n"
                           "  - id: a\n    uses: sleep\n    with: {for: 1s}\n", &n);
  assert_int_equal(n, 0);
  free(got);
  char err[300];
  json_t *v = json_string("2026-11-29 23:20+01:00");
  json_t *c = eng__convert(v, ENG_T_TIMESTAMP, NULL, err, sizeof err);
  assert_non_null(c);
  assert_string_equal(json_string_value(c), "2026-11-29T22:20:00.000Z");
  json_decref(c);
  json_decref(v);
  v = json_integer(1);
  assert_null(eng__convert(v, ENG_T_BOOL, NULL, err, sizeof err));
  json_decref(v);
  v = json_string("True");
  c = eng__convert(v, ENG_T_BOOL, NULL, err, sizeof err);
  assert_true(json_is_true(c));
  json_decref(c);
  json_decref(v);
}

/* References in expressions: every form, with positions and suggestions,
 * and the valid forms that must pass. */
static void test_references(void **state) {
  (void)state;
#define RB(body) HDR "params:\n  restore_db: {default: x}\nsteps:\n" \
  "  - id: safety-backup\n    uses: shell\n" \
  "    with: {command: \"echo backup\"}\n" \
  "  - id: restore\n    uses: shell\n" \
  "    with: {command: \"echo restore\"}\n" body
  expect(RB("  - id: c\n    uses: shell\n    with: {command: \"echo ${steps.restore.outputs.stdot}\"}\n"),
         "F:14:21: error: step 'c': parameter 'command': steps.restore.outputs.stdot: "
         "shell has no such output (did you mean 'stdout'?)");
  expect(RB("  - id: c\n    uses: shell\n    with: {command: \"echo ${params.restore_bd}\"}\n"),
         "params.restore_bd: no such parameter (did you mean 'restore_db'?)");
  expect(RB("  - id: c\n    uses: shell\n    with: {command: \"echo ${steps.restroe.status}\"}\n"),
         "steps.restroe: no such step (did you mean 'restore'?)");
  expect(RB("  - id: c\n    uses: shell\n    if: steps.safety-backup.status == \"ok\"\n"
            "    with: {command: echo}\n"),
         "F:14:9: error: step 'c': 'if': steps.safety: no such step (Lua reads a dash as a "
         "minus: use the underscore spelling or steps[\"...\"]) (did you mean 'safety_backup'?)");
  expect(RB("  - id: c\n    uses: shell\n    with: {command: echo}\n"
            "    check: return outputs.exit_cod == 0\n"),
         "outputs.exit_cod: shell has no such output (did you mean 'exit_code'?)");
  expect(RB("  - id: c\n    uses: shell\n    with: {command: \"${steps.restore.stauts}\"}\n"),
         "steps.restore.stauts: a step has 'status' and 'outputs' (did you mean 'status'?)");
  /* valid: brackets, underscore spelling, concatenation, a local named
   * like a root, the step's own outputs, lua outputs (open) */
  size_t n;
  char *got = diagnose(RB("  - id: c\n    uses: lua\n    with:\n      script: |\n"
                          "        local steps = {x = 1}\n        return {v = steps.x}\n"
                          "  - id: d\n    uses: shell\n"
                          "    if: steps[\"safety-backup\"].status == \"ok\" and steps.safety_backup.outputs.stdout ~= nil\n"
                          "    with: {command: \"echo ${'db=' .. steps.restore.outputs.stdout .. params.restore_db} ${steps.c.outputs.anything}\"}\n"
                          "    outputs: {mine: \"${outputs.stdout}\"}\n"),
                       &n);
  assert_int_equal(n, 0);
  assert_null(strstr(got, "warning"));
  free(got);
  /* a step that may not have run: a warning, not an error */
  got = diagnose(RB("  - id: c\n    uses: shell\n    needs: []\n"
                    "    with: {command: \"echo ${steps.restore.outputs.stdout}\"}\n"
                    "finally:\n  - id: f\n    uses: shell\n"
                    "    with: {command: \"echo ${steps.restore.outputs.stdout}\"}\n"
                    "  - id: g\n    uses: shell\n    if: steps.restore.status == \"ok\"\n"
                    "    with: {command: \"echo ${steps.safety_backup.outputs.stdout}\"}\n"),
                 &n);
  assert_int_equal(n, 0);
  assert_non_null(strstr(got, "F:15:21: warning: step 'c': parameter 'command': "
                              "steps.restore.outputs.stdout: step 'restore' is not among "
                              "the steps it needs"));
  assert_non_null(strstr(got, "F:19:21: warning: step 'f'"));
  assert_null(strstr(got, "step 'g'"));
  free(got);
#undef RB
}

static void test_positions(void **state) {
  (void)state;
  expect(HDR "steps:\n  - id: a\n    uses: shell\n    wiht: {command: x}\n",
         "F:6:5: error: step 'a': unknown key 'wiht' (did you mean 'with'?)");
  expect(HDR "steps:\n  - id: a\n    uses: shell\n    with: [x]\n",
         "F:6:11: error: step 'a': 'with' must be a mapping, not a list");
  expect(HDR "steps:\n  - id: a\n    uses: sleep\n    with: {for: 1s}\n"
             "  - id: a\n    uses: sleep\n    with: {for: 1s}\n",
         "F:7:9: error: duplicate step id 'a' (first at line 4)");
  expect(HDR "steps:\n  - id: a\n    uses: sleep\n    with: {for: 1s}\n"
             "  - id: b\n    needs: [x]\n    uses: sleep\n    with: {for: 1s}\n",
         "F:8:13: error: step 'b': needs unknown step 'x'");
  expect(HDR "steps:\n  - id: a\n    needs: [b]\n    uses: sleep\n    with: {for: 1s}\n"
             "  - id: b\n    needs: [a]\n    uses: sleep\n    with: {for: 1s}\n",
         "dependency cycle: a -> b -> a");
  expect(HDR "steps:\n  - id: a\n    uses: shel\n",
         "F:5:11: error: step 'a': unknown action 'shel' (did you mean 'shell'?)");
  expect(HDR "steps:\n  - id: a\n    uses: sleep\n    with: {fro: 1s}\n",
         "F:6:12: error: step 'a': unknown parameter 'fro' for sleep (did you mean 'for'?)");
  expect(HDR "steps:\n  - id: a\n    uses: sleep\n",
         "F:4:5: error: step 'a': missing required parameter 'for' for sleep");
  expect(HDR "steps:\n  - id: a\n    uses: sleep\n    with: {for: soon}\n",
         "F:6:17: error: step 'a': parameter 'for' of sleep: expected a duration");
  expect(HDR "steps:\n  - id: a\n    uses: sleep\n    with: {for: 1s}\n    timeout: 1 hour\n",
         "F:7:14: error: timeout: bad duration '1 hour'");
  expect(HDR "steps:\n  - id: a\n    uses: sleep\n    with: {for: 1s}\n    if: x ==\n",
         "F:7:9: error: step 'a': 'if': Lua error: ");
  expect(HDR "steps:\n  - id: a\n    uses: sleep\n    with: {for: 1s}\n    check: return +\n",
         "F:7:12: error: step 'a': 'check': Lua error: ");
  expect(HDR "steps:\n  - id: a\n    uses: shell\n    with:\n      command: x ${a +} y\n",
         "F:7:16: error: step 'a': parameter 'command': ");
  expect(HDR "steps:\n  - id: a\n    uses: shell\n    with:\n      command: x ${a y\n",
         "unterminated '${'");
  expect("version: 2\nname: t\nsteps: []\n", "F:1:10: error: unsupported version '2'");
  expect("version: 1\nname: T\nsteps: []\n", "F:2:7: error: name 'T' must match");
  expect("version: 1\nname: t\nsteps: [\n", "F:4:1: error: invalid YAML");
  expect("version: 1\nname: t\nname: u\nsteps: []\n", "F:3:1: error: duplicate key 'name'");
  expect(HDR "steps: []\nparams:\n  p: {typ: int}\n", "F:5:7: error: parameter 'p': unknown key 'typ' (did you mean 'type'?)");
}

/* `drill:` is true, false or a template; an SLO target needs what would
 * measure it (a recovered step, a backup time). */
static void test_drill_and_slo(void **state) {
  (void)state;
  size_t n;
  const char *step = "steps:\n  - id: a\n    uses: sleep\n    with: {for: 1ms}\n"
                     "    recovered: true\n";
  char text[512];
  const char *good[] = {"drill: true\n", "drill: false\n",
                        "params:\n  d: {type: bool, default: true}\ndrill: ${params.d}\n"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
    snprintf(text, sizeof text, HDR "%s%s", good[i], step);
    char *got = diagnose(text, &n);
    if (n) fail_msg("%s: %s", good[i], got);
    free(got);
  }
  snprintf(text, sizeof text, HDR "drill: yes please\n%s", step);
  expect(text, "F:3:8: error: drill must be true");
  snprintf(text, sizeof text, HDR "drill: [true]\n%s", step);
  expect(text, "F:3:8: error: 'drill' must be a scalar, not a list");
  snprintf(text, sizeof text, HDR "drill: ${params.nope}\n%s", step);
  expect(text, "F:3:8: error: drill: params.nope: no such parameter");
  /* an RTO target with nothing marked recovered could never be measured */
  expect(HDR "slo: {rto: 1h}\nsteps:\n  - id: a\n    uses: sleep\n    with: {for: 1ms}\n",
         "F:3:12: error: slo.rto: no step is marked `recovered: true`");
  expect(HDR "slo: {rpo: 1h}\nsteps:\n  - id: a\n    uses: sleep\n    with: {for: 1ms}\n"
             "    recovered: true\n",
         "F:3:12: error: slo.rpo: neither slo.backup_time nor slo.recovery_point is set");
  snprintf(text, sizeof text, HDR "slo: {rto: 1h, rpo: 1h, backup_time: 2026-01-01T00:00:00Z}\n%s",
           step);
  char *got = diagnose(text, &n);
  if (n) fail_msg("%s", got);
  free(got);
  /* a point-in-time recovery: the recovery point instead of a backup time,
   * the RTO clock from a step of the runbook */
  snprintf(text, sizeof text,
           HDR "slo: {rto: 1h, rpo: 1h, rto_from: a, recovery_point: "
               "2026-01-01T00:00:00Z, recovery_target: 2026-01-01T00:00:05Z}\n%s",
           step);
  got = diagnose(text, &n);
  if (n) fail_msg("%s", got);
  free(got);
  snprintf(text, sizeof text, HDR "slo: {rto: 1h, rto_from: nope}\n%s", step);
  expect(text, "F:3:26: error: slo.rto_from: 'nope' is not a step of this runbook");
  snprintf(text, sizeof text, HDR "slo: {recovery_target: 2026-01-01T00:00:05Z}\n%s", step);
  expect(text, "F:3:24: error: slo.recovery_target needs slo.recovery_point");
  snprintf(text, sizeof text,
           HDR "slo: {backup_time: 2026-01-01T00:00:00Z, recovery_point: "
               "2026-01-01T00:00:00Z}\n%s", step);
  expect(text, "F:3:58: error: slo.recovery_point and slo.backup_time both measure the RPO");
}

static void test_template_typing(void **state) {
  (void)state;
  eng__lua_opts o = {0};
  eng__lua *L = NULL;
  char err[512];
  assert_int_equal(eng__lua_create(&o, &L, err, sizeof err), ENG_OK);
  json_t *params = json_pack("{s:i, s:s}", "n", 41, "s", "x");
  eng__lua_set_global(L, "params", params);
  json_decref(params);
  struct {
    const char *text;
    const char *json;
  } cases[] = {
      {"${params.n + 1}", "42"},
      {"${params.n > 1}", "true"},
      {"${ {1, 2} }", "[1, 2]"},
      {"n=${params.n}!", "\"n=41!\""},
      {"$${literal}", "\"${literal}\""},
      {"${params.s .. '}'}", "\"x}\""},
      {"${1.5}", "1.5"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    eng__node n = {0};
    n.kind = ENG__N_SCALAR;
    n.str = (char *)cases[i].text;
    n.plain = true;
    assert_int_equal(eng__tpl_compile(L, n.str, "t.yaml", 1, &n.tpl, err, sizeof err), ENG_OK);
    json_t *v = eng__tpl_render(L, &n, err, sizeof err);
    assert_non_null(v);
    json_t *want = json_loads(cases[i].json, JSON_DECODE_ANY, NULL);
    if (!json_equal(v, want)) {
      char *g = json_dumps(v, JSON_ENCODE_ANY);
      print_error("%s -> %s, expected %s\n", cases[i].text, g, cases[i].json);
      free(g);
      fail();
    }
    json_decref(v);
    json_decref(want);
    eng__tpl_free(n.tpl);
  }
  /* a missing reference is an error naming the path */
  eng__node n = {0};
  n.kind = ENG__N_SCALAR;
  n.str = (char *)"${params.nope}";
  assert_int_equal(eng__tpl_compile(L, n.str, "t.yaml", 1, &n.tpl, err, sizeof err), ENG_OK);
  assert_null(eng__tpl_render(L, &n, err, sizeof err));
  assert_non_null(strstr(err, "params.nope"));
  eng__tpl_free(n.tpl);
  eng__lua_destroy(L);
}

static void test_yaml_scalars(void **state) {
  (void)state;
  eng__diags d = {0};
  d.quiet = true;
  const char *t = "a: 1\nb: '1'\nc: true\nd: 1.5\ne: ~\nf: x\n";
  eng__node *n = eng__yaml_parse("t", t, strlen(t), &d);
  assert_non_null(n);
  json_t *j = eng__node_to_json(n);
  json_t *want = json_loads("{\"a\":1,\"b\":\"1\",\"c\":true,\"d\":1.5,\"e\":null,\"f\":\"x\"}", 0, NULL);
  assert_true(json_equal(j, want));
  json_decref(j);
  json_decref(want);
  assert_int_equal(n->vals[1]->line, 2);
  assert_int_equal(n->vals[1]->col, 4);
  eng__node_free(n);
  eng__diags_free(&d);
}

/* A condition made only of blanks used to make the condition's length
 * negative (a heap overflow in validate and plan). */
/* A "\0" escape used to cut a value short (an id "a\0../../x" read as
 * "a"); a duration of 1e300 seconds wrapped to a negative number. */
static void test_nul_and_huge_values(void **state) {
  (void)state;
  expect("version: 1\nname: t\nsteps:\n  - id: \"a\\0../../x\"\n"
         "    uses: sleep\n    with: {for: 1ms}\n",
         "F:4:9: error: a NUL character");
  expect("version: 1\nname: t\nsteps:\n  - id: a\n    uses: sleep\n"
         "    with: {for: 1e300}\n",
         "F:6:17: error: step 'a': parameter 'for' of sleep: expected a duration");
  expect("version: 1\nname: t\nsteps:\n  - id: a\n    uses: sleep\n"
         "    timeout: 9e15ms9e15ms9e15ms\n    with: {for: 1s}\n",
         "F:6:14: error: timeout: bad duration");
}

/* Limits that refuse before the quadratic work, naming the limit. */
static void test_input_limits(void **state) {
  (void)state;
  eng__buf b = {0};
  eng__buf_adds(&b, "version: 1\nname: t\nsteps: ");
  for (int i = 0; i < 100; i++) eng__buf_adds(&b, "[");
  for (int i = 0; i < 100; i++) eng__buf_adds(&b, "]");
  eng__buf_adds(&b, "\n");
  expect(b.data, "F:3:1: error: more than 64 nested [ or {");
  eng__buf_free(&b);
  /* expressions deep in a large file: compiled without padding, their
   * messages still name the right line */
  eng__buf_adds(&b, "version: 1\nname: t\n");
  for (int i = 0; i < 200000; i++) eng__buf_adds(&b, "\n");
  eng__buf_adds(&b, "steps:\n  - id: a\n    uses: sleep\n    if: \"1 +\"\n"
                    "    with: {for: 1ms}\n");
  expect(b.data, "F:200006:9: error: step 'a': 'if': Lua error: F:200006: "
                 "unexpected symbol");
  eng__buf_free(&b);
  eng__buf_adds(&b, "version: 1\nname: t\nsteps:\n");
  for (int i = 0; i < 10001; i++) eng__buf_addf(&b, "  - {id: s%d, uses: shell}\n", i);
  expect(b.data, "10001 steps: a runbook may have at most 10000");
  eng__buf_free(&b);
}

static void test_blank_conditions(void **state) {
  (void)state;
  expect("version: 1\nname: t\nsteps:\n  - id: a\n    uses: sleep\n"
         "    if: \" \"\n    with: {for: 1ms}\n",
         "F:6:9: error: step 'a': 'if'");
  expect("version: 1\nname: t\nguards:\n  checks:\n    - that: \"   \"\n"
         "steps:\n  - id: a\n    uses: sleep\n    with: {for: 1ms}\n",
         "F:5:");
}

/* A plugin's declared values, range and check reject literal values at
 * validate time, with file:line:col and a suggestion; templated values
 * wait for the run. */
static void test_declared_checks(void **state) {
  (void)state;
  expect(HDR "steps:\n  - id: a\n    uses: testgood.checked\n"
             "    with: {level: 3}\n",
         "F:6:19: error: step 'a': parameter 'level' of testgood.checked: "
         "level must be even (2, 4, ...), got 3");
  expect(HDR "steps:\n  - id: a\n    uses: testgood.checked\n"
             "    with:\n      mode: fsat\n",
         "F:7:13: error: step 'a': parameter 'mode' of testgood.checked: "
         "'fsat' is not one of fast|safe (did you mean 'fast'?)");
  expect(HDR "steps:\n  - id: a\n    uses: testgood.checked\n"
             "    with: {port: 70000}\n",
         "F:6:18: error: step 'a': parameter 'port' of testgood.checked: "
         "70000 is out of range: it must be from 1 to 65535");
  expect(HDR "steps:\n  - id: a\n    uses: testgood.checked\n"
             "    with: {wait: 2m}\n",
         "parameter 'wait' of testgood.checked: 2m00s is too large: it must be "
         "at most 1m00s");
  size_t n;
  char *got = diagnose(HDR "params:\n  l: {default: 3, type: int}\nsteps:\n"
                           "  - id: a\n    uses: testgood.checked\n"
                           "    with: {level: '${params.l}', mode: fast, port: 5432}\n",
                       &n);
  assert_int_equal(n, 0);
  free(got);
}

/* Valid YAML that means something else than what was written: said at
 * validate time with file:line:col (docs/runbook-format.md, "YAML
 * traps"). */
static void test_yaml_traps(void **state) {
  (void)state;
  /* " #" after one-line Lua is a YAML comment: the check is `return` */
  expect(HDR "steps:\n  - id: a\n    uses: lua\n    with: {script: \"return {items = {1}}\"}\n"
             "    check: return #outputs.items == 3, \"three\"\n",
         "F:7:12: error: step 'a': 'check': the ' #' after 'return' on this line "
         "starts a YAML comment, so the code ends there ('#' is also Lua's "
         "length operator): put the whole value in quotes, or write it as a "
         "block ('check: |'");
  expect(HDR "steps:\n  - id: a\n    uses: sleep\n    with: {for: 1ms}\n"
             "    if: run.status == \"ok\" # and then\n",
         "F:7:9: error: step 'a': 'if': the ' #' after 'run.status == \"ok\"'");
  expect(HDR "guards:\n  checks:\n    - that: params ~= nil #ok\n"
             "steps:\n  - id: a\n    uses: sleep\n    with: {for: 1ms}\n",
         "F:5:13: error: guards.checks: 'that': the ' #' after 'params ~= nil'");
  expect(HDR "steps:\n  - id: a\n    uses: assert\n    with:\n"
             "      that: #{1, 2} == 2\n",
         "F:7:12: error: step 'a': parameter 'that': the value is empty: YAML "
         "reads the ' #...' after the key as a comment ('#' is also Lua's length "
         "operator)");
  /* a plain value inside quotes that YAML does not see as quotes; text of
   * several bytes per character before it on the line */
  expect(HDR "description: \"caf\xc3\xa9 \xe2\x82\xac\"\nsteps:\n  - id: a\n"
             "    uses: lua\n    with: {script: \"return {}\"}\n"
             "    check: return \"\xc3\xa9\xe2\x82\xac\" ~= \"a #b\"\n",
         "F:8:12: error: step 'a': 'check': the ' #' after 'return \"\xc3\xa9\xe2\x82\xac\" ~= \"a'");
  expect("\xef\xbb\xbf" HDR "steps:\n  - id: a\n    uses: sleep\n    with: {for: 1ms}\n"
                        "    if: true #x\n",
         "F:7:9: error: step 'a': 'if': the ' #' after 'true'");
  /* a ${...} cut by such a comment: the message says why */
  expect(HDR "steps:\n  - id: a\n    uses: shell\n    with:\n      command: echo ${1 + #x}\n",
         "F:7:16: error: step 'a': parameter 'command': unterminated '${' in "
         "\"echo ${1 +\": close it with '}' (the ' #' after it on this line "
         "starts a YAML comment");
  /* a check that cannot pass */
  expect(HDR "steps:\n  - id: a\n    uses: sleep\n    with: {for: 1ms}\n    check:\n",
         "F:7:11: error: step 'a': 'check' is empty");
  expect(HDR "steps:\n  - id: a\n    uses: sleep\n    with: {for: 1ms}\n    check: return\n",
         "F:7:12: error: step 'a': 'check' is a bare 'return': it returns nothing");
  expect(HDR "steps:\n  - id: a\n    uses: sleep\n    with: {for: 1ms}\n"
             "    check: |\n      return;\n",
         "'check' is a bare 'return'");
  /* what is right stays right: quoted, a block, '#' without a blank before
   * it, and a comment after a quoted value or a ${...} */
  size_t n;
  char *got = diagnose(
      HDR "steps:\n  - id: a\n    uses: lua\n    with: {script: \"return {items = {1, 2}}\"}\n"
          "    check: 'return #outputs.items == 2, \"two\"'\n"
          "  - id: b\n    uses: lua\n    with: {script: \"return {items = {1}}\"}\n"
          "    check: |\n      return #outputs.items == 1 -- a Lua comment\n"
          "  - id: c\n    uses: sleep\n    with: {for: 1ms}\n"
          "    if: \"#{1} == 1\" # a comment after a quoted value\n"
          "    check: return \"a#b\" ~= \"\"\n"
          "  - id: d\n    uses: shell\n    with:\n      command: echo ${1} # said: one\n",
      &n);
  if (n) print_error("%s\n", got);
  assert_int_equal(n, 0);
  free(got);
}

/* A list given one string that is a list written as text, or that ends in
 * the newline of a '|' block; list elements converted to their declared
 * type, each checked (testgood.checked: ports, list of int 1-65535; modes,
 * list of fast|safe; argv, a string or a list of strings). */
static void test_list_values(void **state) {
  (void)state;
  const char *h = HDR "steps:\n  - id: a\n    uses: testgood.checked\n    with:\n";
  char text[1024];
  snprintf(text, sizeof text, "%s      ports: |\n        [80, 443]\n", h);
  expect(text, "F:7:14: error: step 'a': parameter 'ports' of testgood.checked: "
               "expected a list, got the text '[80, 443]\\n', which looks like a "
               "list but is one string (ending in the newline a '|' block adds)");
  snprintf(text, sizeof text, "%s      ports: |\n        8080\n", h);
  expect(text, "expected a list, got the text '8080\\n', which ends in the newline "
               "a '|' block adds");
  snprintf(text, sizeof text, "%s      modes: |-\n        - fast\n        - safe\n", h);
  expect(text, "got the text '- fast\\n- safe', which looks like a list");
  snprintf(text, sizeof text, "%s      argv: '[\"echo\", \"x\"]'\n", h);
  expect(text, "parameter 'argv' of testgood.checked: expected a list, got the text "
               "'[\"echo\", \"x\"]', which looks like a list but is one string");
  /* a ${...} with the newline of a '|' block: text, never the list */
  snprintf(text, sizeof text, "%s      ports: |\n        ${ {80, 443} }\n", h);
  expect(text, "F:7:14: error: step 'a': parameter 'ports' of testgood.checked takes "
               "a list, but its value is a ${...} with the newline a '|' block "
               "adds after it");
  snprintf(text, sizeof text, "%s      ports: [80, \"x\"]\n", h);
  expect(text, "parameter 'ports' of testgood.checked: item 2 of 2: expected an "
               "integer, got a string 'x'");
  snprintf(text, sizeof text, "%s      ports: [80, 70000]\n", h);
  expect(text, "item 2 of 2: 70000 is out of range: it must be from 1 to 65535");
  snprintf(text, sizeof text, "%s      modes: [fast, sage]\n", h);
  expect(text, "item 2 of 2: 'sage' is not one of fast|safe (did you mean 'safe'?)");
  size_t n;
  snprintf(text, sizeof text,
           "%s      ports: [\"80\", 443.0]\n      modes: fast\n"
           "      argv: [echo, 5432, true, 1.5]\n"
           "  - id: b\n    uses: testgood.checked\n    with:\n"
           "      ports: |-\n        ${ {80, 443} }\n      argv: |\n        [ -f /x ] && echo\n",
           h);
  char *got = diagnose(text, &n);
  if (n) print_error("%s\n", got);
  assert_int_equal(n, 0);
  free(got);
  /* the conversion itself: elements typed, single values a list of one */
  const eng__action_ref *a = eng__registry_find("testgood.checked");
  assert_non_null(a);
  const eng_param *ports = NULL, *argv = NULL;
  for (const eng_param *p = a->action->params; p->name; p++) {
    if (!strcmp(p->name, "ports")) ports = p;
    if (!strcmp(p->name, "argv")) argv = p;
  }
  char err[512];
  json_t *in = json_pack("[s, f, i]", "80", 443.0, 8080);
  json_t *out = eng__convert_param(in, ports, err, sizeof err);
  json_t *want = json_pack("[i, i, i]", 80, 443, 8080);
  assert_true(json_equal(out, want));
  json_decref(in), json_decref(out), json_decref(want);
  in = json_pack("[s, i, b, f, f]", "echo", 5432, 1, 1.5, 0.1);
  out = eng__convert_param(in, argv, err, sizeof err);
  want = json_pack("[s, s, s, s, s]", "echo", "5432", "true", "1.5", "0.1");
  assert_true(json_equal(out, want));
  json_decref(in), json_decref(out), json_decref(want);
  in = json_string("pg_dump -Fc\n");
  out = eng__convert_param(in, argv, err, sizeof err); /* a script: as is */
  assert_true(json_equal(out, in));
  json_decref(in), json_decref(out);
}

/* ${NAME:-default} in a command is shell syntax: the error says how to
 * write a literal ${ and how the engine reads a variable. */
static void test_shell_expansion(void **state) {
  (void)state;
  expect(HDR "steps:\n  - id: a\n    uses: shell\n    with:\n"
             "      command: \"tar -C ${BACKUP_DIR:-/tmp} -cf x.tar .\"\n",
         "F:7:16: error: step 'a': parameter 'command': '${BACKUP_DIR:-/tmp}' is "
         "shell syntax, not an engine expression (<name> expected near '-'): a literal '${' is written '$${' "
         "($${BACKUP_DIR:-/tmp} reaches the shell as ${BACKUP_DIR:-/tmp}); the "
         "engine's own reading of a variable is ${env.BACKUP_DIR}");
  expect(HDR "steps:\n  - id: a\n    uses: shell\n    with:\n"
             "      command: echo ${FILE%%.*}\n",
         "'${FILE%%.*}' is shell syntax");
  expect(HDR "steps:\n  - id: a\n    uses: shell\n    with:\n"
             "      command: echo ${!REF}\n",
         "'${!REF}' is shell syntax");
  size_t n;
  char *got = diagnose(HDR "steps:\n  - id: a\n    uses: shell\n    with:\n"
                           "      command: \"tar -C $${BACKUP_DIR:-/tmp} -cf x.tar .\"\n",
                       &n);
  assert_int_equal(n, 0);
  free(got);
}

/* Like a compiler: the first 20 errors shown, the rest counted in one
 * note; running out of Lua memory said once. */
static void test_errors_stop(void **state) {
  (void)state;
  eng__buf b = {0};
  eng__buf_adds(&b, HDR "steps:\n  - id: a\n    uses: sleep\n    with: {for: 1ms}\n");
  for (int i = 0; i < 35; i++) eng__buf_addf(&b, "    nokey%d: 1\n", i);
  size_t n;
  char *got = diagnose(b.data, &n);
  assert_int_equal(n, 35);
  size_t shown = 0;
  for (const char *p = got; (p = strstr(p, ": error: ")); p++) shown++;
  assert_int_equal(shown, 20);
  assert_non_null(strstr(got, "nokey19"));
  assert_null(strstr(got, "nokey20"));
  assert_non_null(strstr(got, "F: note: 15 more errors not shown (only the first "
                              "20 of each are): fix those and check again"));
  free(got);
  eng__buf_free(&b);
  /* 20,000 expressions in a 4 MiB sandbox: one error, not thousands */
  eng__buf_adds(&b, HDR "guards:\n  protected_databases:\n");
  for (int i = 0; i < 20000; i++) eng__buf_addf(&b, "    - ${%d}\n", i);
  eng__buf_adds(&b, "steps:\n  - id: a\n    uses: sleep\n    with: {for: 1ms}\n");
  got = diagnose_in(b.data, 4u << 20, &n);
  if (n != 1) print_error("%s\n", got);
  assert_int_equal(n, 1);
  assert_non_null(strstr(got, "error: guards: the runbook's expressions need "
                              "more memory than the Lua sandbox allows (4 MiB; "
                              "ENGINE_LUA_MEMORY_MB sets it)"));
  free(got);
  eng__buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid),
      cmocka_unit_test(test_positions),
      cmocka_unit_test(test_types),
      cmocka_unit_test(test_references),
      cmocka_unit_test(test_template_typing),
      cmocka_unit_test(test_drill_and_slo),
      cmocka_unit_test(test_yaml_scalars),
      cmocka_unit_test(test_blank_conditions),
      cmocka_unit_test(test_nul_and_huge_values),
      cmocka_unit_test(test_input_limits),
      cmocka_unit_test(test_declared_checks),
      cmocka_unit_test(test_yaml_traps),
      cmocka_unit_test(test_list_values),
      cmocka_unit_test(test_shell_expansion),
      cmocka_unit_test(test_errors_stop),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
