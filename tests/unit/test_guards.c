/* Unit tests for core/plan/guards.c on runbooks given as YAML text: the
 * protected lists compiled with ${params...} entries (an entry that cannot
 * be resolved makes its list refuse), `require` (a step refused until
 * another ended ok, and statically when the DAG cannot guarantee it), Lua
 * `checks`, what a step's `if:` lets the guards decide before the run,
 * eng__guards_decide (each target's decision, the one `engine plan` shows
 * and the run's start makes), the run-start check (every selected step
 * refused by what is known then is marked refused before anything ran),
 * and `engine validate`'s static violations with their positions. */
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

/* A run prepared as runner.c does before its first step. */
typedef struct fx {
  eng__runbook *rb;
  eng__lua *L;
  eng__run_opts o;
  eng__run r;
  json_t *sets;
} fx;

static fx *prepare(const char *text, const char *sets, const char *only) {
  fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  eng__diags d = {0};
  d.quiet = true;
  f->rb = eng__runbook_parse("guards.yaml", text, strlen(text), &d);
  assert_non_null(f->rb);
  eng__lua_opts lo = {0};
  char err[256];
  assert_int_equal(eng__lua_create(&lo, &f->L, err, sizeof err), ENG_OK);
  eng__plan_validate(f->rb, f->L, &d);
  if (d.errors) print_error("%s\n", d.text.data ? d.text.data : "");
  assert_int_equal(d.errors, 0);
  f->sets = sets ? json_loads(sets, 0, NULL) : json_object();
  assert_non_null(f->sets);
  f->o.sets = f->sets;
  f->o.only = only;
  f->o.state_dir = "/nonexistent-never-created";
  eng__run_init(&f->r, f->rb, f->L, &f->o, "guards-test");
  eng__run_set_globals(&f->r);
  eng__run_set_status(&f->r, "running");
  for (size_t i = 0; i < f->rb->n_steps; i++)
    eng__lua_set_step(f->L, f->rb->steps[i].id, "pending", NULL);
  assert_int_equal(eng__run_params(&f->r, &d), ENG_EXIT_OK);
  assert_int_equal(eng__plan_select(&f->r, &d), 0);
  eng__diags_free(&d);
  eng__guards_compile(&f->r);
  return f;
}

static void finish(fx *f) {
  eng__run_free(&f->r);
  eng__lua_destroy(f->L);
  eng__runbook_free(f->rb);
  json_decref(f->sets);
  free(f);
}

static size_t idx(fx *f, const char *id) {
  eng__step *s = eng__runbook_step(f->rb, id);
  assert_non_null(s);
  return s->idx;
}

static void set_status(fx *f, const char *id, eng__status st) {
  f->r.st[idx(f, id)].status = st;
  eng__lua_set_step(f->L, id, eng__status_name(st), NULL);
}

static const char *list_entry(fx *f, const char *list, size_t i) {
  return json_string_value(json_array_get(json_object_get(f->r.policy.lists, list), i));
}

static const char *last_rule(fx *f) {
  json_t *d = json_array_get(f->r.guard_log, json_array_size(f->r.guard_log) - 1);
  return json_string_value(json_object_get(d, "rule"));
}

/* A refusal of step `step` by rule `rule` is in the guard log. */
static bool refused_by(fx *f, const char *step, const char *rule) {
  size_t i;
  json_t *d;
  json_array_foreach(f->r.guard_log, i, d) {
    if (!strcmp(json_string_value(json_object_get(d, "decision")), "refuse") &&
        !strcmp(json_string_value(json_object_get(d, "step")), step) &&
        !strcmp(json_string_value(json_object_get(d, "rule")), rule))
      return true;
  }
  return false;
}

static void contains(const char *s, const char *part) {
  if (!s || !strstr(s, part)) {
    print_error("'%s' does not contain '%s'\n", s ? s : "(null)", part);
    fail();
  }
}

#define HDR "version: 1\nname: t\n"
#define SHELL(id, cmd) "  - {id: " id ", uses: shell, with: {command: '" cmd "'}}\n"

/* ---- the lists ---------------------------------------------------------- */

static void test_compile_lists(void **state) {
  (void)state;
  fx *f = prepare(HDR "params:\n  db: {default: ledger}\n  bucket: {default: backups}\n"
                      "guards:\n"
                      "  protected_databases: [prod, '${params.db}', '${params.db}_*']\n"
                      "  protected_buckets: ['s3://${params.bucket}/prod/*']\n"
                      "  forbidden_commands: ['rm -rf ${params.db}']\n"
                      "  unverified_commands: refuse\n"
                      "steps:\n" SHELL("a", "true"),
                  "{\"db\": \"payments\"}", NULL);
  eng__policy *p = &f->r.policy;
  assert_int_equal(json_array_size(json_object_get(p->lists, "protected_databases")), 3);
  assert_string_equal(list_entry(f, "protected_databases", 0), "prod");
  assert_string_equal(list_entry(f, "protected_databases", 1), "payments"); /* --set wins */
  assert_string_equal(list_entry(f, "protected_databases", 2), "payments_*");
  assert_string_equal(list_entry(f, "protected_buckets", 0), "s3://backups/prod/*");
  assert_string_equal(list_entry(f, "forbidden_commands", 0), "rm -rf payments");
  /* every list exists, empty when not given; nothing is broken */
  assert_true(json_is_array(json_object_get(p->lists, "protected_volumes")));
  assert_int_equal(json_array_size(json_object_get(p->lists, "protected_paths")), 0);
  assert_int_equal(json_object_size(p->broken), 0);
  assert_true(p->refuse_unverified);
  /* the compiled lists are what the policy holds targets to */
  assert_int_equal(eng__policy_check(&f->r, "a", ENG_TARGET_DATABASE, "payments_eu", NULL,
                                     ENG_SIDE_CREATES), ENG_ERR_REFUSED);
  contains(f->r.last_refusal, "pattern 'payments_*'");
  assert_int_equal(eng__policy_check(&f->r, "a", ENG_TARGET_DATABASE, "ledger", NULL,
                                     ENG_SIDE_CREATES), ENG_OK);
  assert_int_equal(eng__policy_check(&f->r, "a", ENG_TARGET_COMMAND, "rm -rf payments", NULL,
                                     ENG_SIDE_EXTERNAL), ENG_ERR_REFUSED);
  assert_string_equal(last_rule(f), "forbidden_commands");
  /* compiling again (a resumed run) starts over, it does not append */
  eng__guards_compile(&f->r);
  assert_int_equal(json_array_size(json_object_get(p->lists, "protected_databases")), 3);
  finish(f);

  /* a list written as one word would protect nothing: the loader refuses it */
  static const char scalar[] = HDR "guards:\n  protected_databases: prod\nsteps:\n" SHELL("a", "true");
  eng__diags d = {0};
  d.quiet = true;
  eng__runbook *rb = eng__runbook_parse("guards.yaml", scalar, sizeof scalar - 1, &d);
  assert_true(d.errors > 0);
  contains(d.text.data, "guards.yaml:4:");
  eng__runbook_free(rb);
  eng__diags_free(&d);

  /* no guards: empty lists, unverified commands allowed */
  f = prepare(HDR "guards:\n  unverified_commands: allow\nsteps:\n" SHELL("a", "true"), NULL, NULL);
  assert_false(f->r.policy.refuse_unverified);
  assert_int_equal(json_array_size(json_object_get(f->r.policy.lists, "protected_databases")), 0);
  finish(f);
}

/* An entry that cannot be resolved (empty, or its expression raises)
 * makes its list refuse every check against it; other lists still work. */
static void test_broken_entry(void **state) {
  (void)state;
  fx *f = prepare(HDR "params:\n  extra: {default: ''}\n  n: {type: int, default: 3}\n"
                      "guards:\n"
                      "  protected_databases:\n    - prod\n    - '${params.extra}'\n"
                      "  protected_volumes: ['${params.n .. nil}']\n"
                      "  protected_paths: [/srv/keep]\n"
                      "steps:\n" SHELL("a", "true"),
                  NULL, NULL);
  eng__policy *p = &f->r.policy;
  const char *why = json_string_value(json_object_get(p->broken, "protected_databases"));
  contains(why, "guards.protected_databases[1] (line 9) could not be resolved");
  contains(why, "non-empty string");
  why = json_string_value(json_object_get(p->broken, "protected_volumes"));
  contains(why, "guards.protected_volumes[0] (line 10) could not be resolved: ");
  assert_null(json_object_get(p->broken, "protected_paths"));
  /* a drop of any database is refused, even with the flag, naming the entry */
  f->o.allow_destructive = true;
  assert_int_equal(eng__policy_check(&f->r, "a", ENG_TARGET_DATABASE, "drill_x", NULL,
                                     ENG_SIDE_DESTRUCTIVE), ENG_ERR_REFUSED);
  contains(f->r.last_refusal, "guards.protected_databases[1] (line 9) could not be resolved");
  contains(f->r.last_refusal, "fix the guard");
  assert_string_equal(last_rule(f), "protected_databases");
  assert_int_equal(eng__policy_check(&f->r, "a", ENG_TARGET_COMMAND, "docker volume rm v1",
                                     NULL, ENG_SIDE_EXTERNAL), ENG_ERR_REFUSED);
  assert_string_equal(last_rule(f), "protected_volumes");
  /* the intact list: /tmp is not protected, /srv/keep is */
  assert_int_equal(eng__policy_check(&f->r, "a", ENG_TARGET_COMMAND, "rm -rf /tmp/x", NULL,
                                     ENG_SIDE_EXTERNAL), ENG_OK);
  assert_int_equal(eng__policy_check(&f->r, "a", ENG_TARGET_COMMAND, "rm -rf /srv/keep/x",
                                     NULL, ENG_SIDE_EXTERNAL), ENG_ERR_REFUSED);
  assert_string_equal(last_rule(f), "protected_paths");
  finish(f);
}

/* ---- require -------------------------------------------------------------- */

#define REQUIRE_RB                                                            \
  HDR "guards:\n  require:\n    - {step: backup, before: restore}\n"          \
      "steps:\n" SHELL("backup", "true")                                      \
      "  - {id: restore, needs: [backup], uses: shell, with: {command: 'true'}}\n"

static void test_require(void **state) {
  (void)state;
  fx *f = prepare(REQUIRE_RB, NULL, NULL);
  size_t restore = idx(f, "restore");
  /* backup has not run: restore is refused */
  assert_int_equal(eng__guards_before_step(&f->r, restore), ENG_ERR_REFUSED);
  assert_string_equal(f->r.last_refusal,
                      "refused: guards.require says step 'backup' must have ended ok "
                      "before 'restore' starts (it is pending)");
  assert_string_equal(last_rule(f), "require");
  set_status(f, "backup", ENG__S_FAILED);
  assert_int_equal(eng__guards_before_step(&f->r, restore), ENG_ERR_REFUSED);
  contains(f->r.last_refusal, "(it is failed)");
  set_status(f, "backup", ENG__S_SKIPPED);
  assert_int_equal(eng__guards_before_step(&f->r, restore), ENG_ERR_REFUSED);
  contains(f->r.last_refusal, "(it is skipped)");
  /* ended ok: allowed; the rule says nothing about backup itself */
  set_status(f, "backup", ENG__S_OK);
  size_t n = json_array_size(f->r.guard_log);
  assert_int_equal(eng__guards_before_step(&f->r, restore), ENG_OK);
  assert_int_equal(eng__guards_before_step(&f->r, idx(f, "backup")), ENG_OK);
  assert_int_equal(json_array_size(f->r.guard_log), n);
  /* the DAG guarantees the order: nothing to refuse up front */
  assert_int_equal(eng__guards_static(&f->r, restore, NULL), ENG_OK);
  finish(f);
}

/* When `before` does not depend on `step` (directly or not), `require`
 * cannot hold by construction: refused at plan time. */
static void test_require_static(void **state) {
  (void)state;
  fx *f = prepare(HDR "guards:\n  require:\n    - {step: backup, before: restore}\n"
                      "    - {step: backup, before: verify}\n"
                      "    - {step: backup, before: report}\n"
                      "steps:\n" SHELL("backup", "true")
                      "  - {id: prepare, needs: [backup], uses: shell, with: {command: 'true'}}\n"
                      "  - {id: verify, needs: [prepare], uses: shell, with: {command: 'true'}}\n"
                      "  - {id: restore, needs: [], uses: shell, with: {command: 'true'}}\n"
                      "finally:\n  - {id: report, uses: shell, with: {command: 'true'}}\n",
                  NULL, NULL);
  char *text = NULL;
  size_t len = 0;
  FILE *out = open_memstream(&text, &len);
  assert_int_equal(eng__guards_static(&f->r, idx(f, "restore"), out), ENG_ERR_REFUSED);
  assert_int_equal(eng__guards_static(&f->r, idx(f, "verify"), out), ENG_OK); /* through prepare */
  assert_int_equal(eng__guards_static(&f->r, idx(f, "report"), out), ENG_ERR_REFUSED);
  assert_int_equal(eng__guards_static(&f->r, idx(f, "backup"), out), ENG_OK);
  fclose(out);
  contains(text, "guard require: 'backup' must end ok before 'restore', but 'restore' does "
                 "not depend on it  [REFUSED]");
  contains(text, "before 'report'");
  free(text);
  finish(f);
}

/* ---- checks ------------------------------------------------------------------- */

static void test_checks(void **state) {
  (void)state;
  static const char rb[] =
      HDR "params:\n  target: {default: drill}\n"
      "guards:\n  checks:\n"
      "    - that: not params.target:match('prod')\n"
      "      message: the restore target must never be a production name\n"
      "    - that: ${ steps.backup.status ~= 'failed' }\n"
      "steps:\n" SHELL("backup", "true") SHELL("restore", "true")
      "finally:\n" SHELL("cleanup", "true");
  fx *f = prepare(rb, NULL, NULL);
  assert_int_equal(eng__guards_before_step(&f->r, idx(f, "restore")), ENG_OK);
  /* the second check reads step results at the time the step starts */
  set_status(f, "backup", ENG__S_FAILED);
  assert_int_equal(eng__guards_before_step(&f->r, idx(f, "restore")), ENG_ERR_REFUSED);
  contains(f->r.last_refusal, "refused: guards.checks[1] (");
  contains(f->r.last_refusal, "is false");
  assert_string_equal(last_rule(f), "checks");
  finish(f);

  f = prepare(rb, "{\"target\": \"prod_eu\"}", NULL);
  /* every step, finally ones too */
  const char *ids[] = {"backup", "restore", "cleanup"};
  for (size_t i = 0; i < 3; i++) {
    free(f->r.last_refusal);
    f->r.last_refusal = NULL;
    assert_int_equal(eng__guards_before_step(&f->r, idx(f, ids[i])), ENG_ERR_REFUSED);
    contains(f->r.last_refusal, "refused: guards.checks[0] (");
    contains(f->r.last_refusal, "is false: the restore target must never be a production name");
    json_t *d = json_array_get(f->r.guard_log, json_array_size(f->r.guard_log) - 1);
    assert_string_equal(json_string_value(json_object_get(d, "step")), ids[i]);
  }
  finish(f);

  /* a check that raises refuses (fails safe); nil counts as false */
  f = prepare(HDR "guards:\n  checks:\n    - that: error('no way to tell')\n"
                  "steps:\n" SHELL("a", "true"),
              NULL, NULL);
  assert_int_equal(eng__guards_before_step(&f->r, 0), ENG_ERR_REFUSED);
  contains(f->r.last_refusal, "raised an error");
  contains(f->r.last_refusal, "no way to tell");
  finish(f);
  f = prepare(HDR "guards:\n  checks:\n    - that: nil\n" "steps:\n" SHELL("a", "true"), NULL, NULL);
  assert_int_equal(eng__guards_before_step(&f->r, 0), ENG_ERR_REFUSED);
  finish(f);
  /* require is decided before checks */
  f = prepare(HDR "guards:\n  require: [{step: a, before: b}]\n"
                  "  checks: [{that: 'false'}]\n"
                  "steps:\n" SHELL("a", "true")
                  "  - {id: b, needs: [a], uses: shell, with: {command: 'true'}}\n",
              NULL, NULL);
  assert_int_equal(eng__guards_before_step(&f->r, 1), ENG_ERR_REFUSED);
  assert_string_equal(last_rule(f), "require");
  finish(f);
}

/* ---- conditions --------------------------------------------------------------- */

static void test_cond_now(void **state) {
  (void)state;
  fx *f = prepare(HDR "params:\n  reset: {type: bool, default: false}\n"
                      "steps:\n" SHELL("plain", "true")
                      "  - {id: off, if: params.reset, uses: shell, with: {command: 'true'}}\n"
                      "  - {id: on, if: '${ not params.reset }', uses: shell, with: {command: 'true'}}\n"
                      "  - {id: by_run, if: run.name == 't', uses: shell, with: {command: 'true'}}\n"
                      "  - {id: later, if: steps.plain.status == 'ok', uses: shell, with: {command: 'true'}}\n"
                      "  - {id: onfail, if: failure(), uses: shell, with: {command: 'true'}}\n"
                      "  - {id: raises, if: params.reset .. 1, uses: shell, with: {command: 'true'}}\n",
                  NULL, NULL);
  assert_int_equal(eng__guards_cond_now(&f->r, idx(f, "plain")), ENG__COND_RUNS);
  assert_int_equal(eng__guards_cond_now(&f->r, idx(f, "off")), ENG__COND_FALSE);
  assert_int_equal(eng__guards_cond_now(&f->r, idx(f, "on")), ENG__COND_RUNS);
  assert_int_equal(eng__guards_cond_now(&f->r, idx(f, "by_run")), ENG__COND_RUNS);
  assert_int_equal(eng__guards_cond_now(&f->r, idx(f, "later")), ENG__COND_LATER);
  assert_int_equal(eng__guards_cond_now(&f->r, idx(f, "onfail")), ENG__COND_LATER);
  /* an error is reported by the step when it is reached */
  assert_int_equal(eng__guards_cond_now(&f->r, idx(f, "raises")), ENG__COND_LATER);
  finish(f);
  f = prepare(HDR "params:\n  reset: {type: bool, default: false}\n"
                  "steps:\n  - {id: off, if: params.reset, uses: shell, with: {command: 'true'}}\n",
              "{\"reset\": \"true\"}", NULL);
  assert_int_equal(eng__guards_cond_now(&f->r, 0), ENG__COND_RUNS);
  finish(f);
}

/* ---- run start ---------------------------------------------------------------- */

static void assert_untouched(fx *f, const char *id) {
  eng__step_state *st = &f->r.st[idx(f, id)];
  if (st->status != ENG__S_PENDING) {
    print_error("step %s is %s\n", id, eng__status_name(st->status));
    fail();
  }
}

/* Targets known before the run that a guard refuses: every such step is
 * refused, the run is stopping, nothing else was touched. */
static void test_run_start_refuses_known_target(void **state) {
  (void)state;
  fx *f = prepare(HDR "params:\n  db: {default: prod}\n"
                      "guards:\n  protected_databases: [prod]\n"
                      "steps:\n" SHELL("first", "echo start")
                      "  - {id: wipe, uses: shell, with: {command: 'dropdb ${params.db}'}}\n"
                      "  - {id: wipe2, uses: shell, with: {command: 'dropdb prod'}}\n"
                      "  - {id: down, uses: shell, with: {command: 'docker compose down -v'}}\n"
                      "finally:\n" SHELL("fin", "true"),
                  NULL, NULL);
  eng__guards_run_start(&f->r);
  assert_true(f->r.refused);
  assert_true(f->r.stopping);
  eng__step_state *st = &f->r.st[idx(f, "wipe")];
  assert_int_equal(st->status, ENG__S_REFUSED);
  contains(st->error, "refused: database 'prod' is protected by guards.protected_databases "
                      "pattern 'prod' (dropdb: dropdb)");
  /* every one refused now, each with its own reason */
  assert_int_equal(f->r.st[idx(f, "wipe2")].status, ENG__S_REFUSED);
  assert_int_equal(f->r.st[idx(f, "down")].status, ENG__S_REFUSED);
  contains(f->r.st[idx(f, "down")].error, "forbidden 'docker compose down -v'");
  json_t *ids = f->r.refused_before_start;
  assert_int_equal(json_array_size(ids), 3);
  assert_string_equal(json_string_value(json_array_get(ids, 0)), "wipe");
  assert_string_equal(json_string_value(json_array_get(ids, 2)), "down");
  /* nothing else was touched */
  assert_untouched(f, "first");
  assert_untouched(f, "fin");
  /* Lua sees it refused */
  json_t *res = NULL;
  int ref;
  char err[256];
  assert_int_equal(eng__lua_compile(f->L, "steps.wipe.status", ENG__LUA_EXPR, "t", 1, &ref,
                                    err, sizeof err), ENG_OK);
  assert_int_equal(eng__lua_eval(f->L, ref, NULL, &res, err, sizeof err), ENG_OK);
  assert_string_equal(json_string_value(json_array_get(res, 0)), "refused");
  json_decref(res);
  finish(f);
}

static void test_run_start_lets_through(void **state) {
  (void)state;
  static const char rb[] =
      HDR "params:\n  reset: {type: bool, default: false}\n"
      "guards:\n  protected_databases: [prod]\n"
      "steps:\n" SHELL("first", "pg_dump -d prod -f /tmp/x")
      /* ownership is decided when the step runs (it may create it first) */
      SHELL("own", "dropdb staging")
      /* a condition false before the run: not held to the guards */
      "  - {id: reset, if: params.reset, uses: shell, with: {command: 'dropdb prod'}}\n"
      /* known only when reached: checked then */
      "  - {id: onfail, if: failure(), uses: shell, with: {command: 'dropdb prod'}}\n"
      /* a value known only at run time */
      "  - {id: later, needs: [first], uses: shell,\n"
      "     with: {command: 'dropdb ${steps.first.status}'}}\n"
      "  - {id: other, uses: shell, with: {command: 'dropdb prod'}}\n";
  fx *f = prepare(rb, NULL, "first");
  /* --only first: the others are not selected, nothing is refused */
  eng__guards_run_start(&f->r);
  assert_false(f->r.refused);
  assert_false(f->r.stopping);
  assert_null(f->r.last_refusal);
  finish(f);
  /* all selected: only `other` is refused */
  f = prepare(rb, NULL, NULL);
  eng__guards_run_start(&f->r);
  assert_true(f->r.refused);
  assert_int_equal(f->r.st[idx(f, "other")].status, ENG__S_REFUSED);
  const char *quiet[] = {"first", "own", "reset", "onfail", "later"};
  for (size_t i = 0; i < 5; i++) assert_untouched(f, quiet[i]);
  /* the same runbook with reset true: `reset` is refused too */
  finish(f);
  f = prepare(rb, "{\"reset\": \"true\"}", NULL);
  eng__guards_run_start(&f->r);
  assert_int_equal(f->r.st[idx(f, "reset")].status, ENG__S_REFUSED);
  assert_int_equal(f->r.st[idx(f, "other")].status, ENG__S_REFUSED);
  assert_untouched(f, "onfail");
  finish(f);
}

/* A `require` the DAG cannot guarantee refuses the run up front, recorded
 * with its rule in the report's guard log. */
static void test_run_start_static_require(void **state) {
  (void)state;
  fx *f = prepare(HDR "guards:\n  require:\n    - {step: backup, before: restore}\n"
                      "steps:\n" SHELL("backup", "true")
                      "  - {id: restore, needs: [], uses: shell, with: {command: 'true'}}\n",
                  NULL, NULL);
  eng__guards_run_start(&f->r);
  assert_true(f->r.refused);
  assert_int_equal(f->r.st[idx(f, "restore")].status, ENG__S_REFUSED);
  assert_untouched(f, "backup");
  assert_string_equal(f->r.last_refusal,
                      "refused: a guards.require rule names 'restore', but 'restore' does "
                      "not depend on the required step: add it to 'needs'");
  assert_string_equal(f->r.st[idx(f, "restore")].error, f->r.last_refusal);
  assert_true(refused_by(f, "restore", "require"));
  finish(f);
  /* with the dependency the run starts */
  f = prepare(REQUIRE_RB, NULL, NULL);
  eng__guards_run_start(&f->r);
  assert_false(f->r.refused);
  finish(f);
}

/* ---- what is decided before the run ------------------------------------------ */

static const eng__gtarget *target(const eng__gstep *g, const char *param, size_t nth) {
  for (size_t k = 0; k < g->n; k++)
    if (!strcmp(g->t[k].param, param) && nth-- == 0) return &g->t[k];
  print_error("no target %s\n", param);
  fail();
  return NULL;
}

/* A value known now is decided now even when another parameter of the
 * step is known only later (the RDS restore whose snapshot comes from a
 * step: its protected instance is refused before anything ran). */
static void test_decide_partly_known(void **state) {
  (void)state;
  fx *f = prepare(HDR "params:\n  db: {default: prod}\n"
                      "guards:\n  protected_databases: [prod]\n  protected_volumes: [pgdata]\n"
                      "steps:\n" SHELL("first", "echo start")
                      /* a declared class: known whatever the values */
                      "  - {id: wipe, needs: [first], uses: testgood.touch,\n"
                      "     with: {database: '${params.db}',\n"
                      "            note: '${steps.first.outputs.stdout}'}}\n"
                      /* a class from the values: known only with all of them */
                      "  - {id: unsure, needs: [first], uses: testgood.touchif,\n"
                      "     with: {database: prod, destroy: true,\n"
                      "            note: '${steps.first.outputs.stdout}'}}\n"
                      "  - {id: later, needs: [first], uses: testgood.touch,\n"
                      "     with: {database: '${steps.first.outputs.stdout}', destroy: true}}\n"
                      "  - {id: mounts, uses: testgood.touch, with: {destroy: true,\n"
                      "     mounts: ['pgdata:/d', 'pgdata:/d:rw', '/srv/x:/x:ro', 'other:/o:rw']}}\n"
                      "  - {id: conn, uses: testgood.touch,\n"
                      "     with: {database: 'postgresql://h/prod', destroy: true}}\n",
                  NULL, NULL);
  eng__gstep g;
  /* `note` is known only later, `database` and `destroy` now */
  eng__guards_decide(&f->r, idx(f, "wipe"), false, &g);
  assert_true(g.side_known);
  assert_int_equal(g.side, ENG_SIDE_DESTRUCTIVE);
  assert_true(g.refused);
  contains(g.why, "database 'prod' is protected");
  eng__gstep_free(&g);
  /* touchif has a classify: with a value unknown, so is its class */
  eng__guards_decide(&f->r, idx(f, "unsure"), false, &g);
  assert_false(g.side_known);
  assert_false(g.refused);
  assert_int_equal(target(&g, "database", 0)->d, ENG__G_LATER);
  eng__gstep_free(&g);
  eng__guards_decide(&f->r, idx(f, "later"), false, &g);
  assert_false(g.refused);
  assert_null(target(&g, "database", 0)->value);
  assert_int_equal(target(&g, "database", 0)->d, ENG__G_LATER);
  eng__gstep_free(&g);
  /* each mount: read-only ones are reads, a /path source is a path */
  eng__guards_decide(&f->r, idx(f, "mounts"), false, &g);
  assert_int_equal(g.n, 4);
  const eng__gtarget *t = target(&g, "mounts", 0);
  assert_int_equal(t->kind, ENG_TARGET_VOLUME);
  assert_string_equal(t->value, "pgdata");
  assert_int_equal(t->side, ENG_SIDE_READ_ONLY);
  assert_int_equal(t->d, ENG__G_PASS);
  contains(t->detail, "volume, mounted read-only at /d");
  t = target(&g, "mounts", 1);
  assert_int_equal(t->d, ENG__G_REFUSED);
  contains(t->why, "volume 'pgdata' is protected by guards.protected_volumes");
  t = target(&g, "mounts", 2);
  assert_int_equal(t->kind, ENG_TARGET_FILE);
  assert_string_equal(t->value, "/srv/x");
  assert_int_equal(t->d, ENG__G_PASS);
  assert_int_equal(target(&g, "mounts", 3)->d, ENG__G_PASS);
  assert_true(g.refused);
  eng__gstep_free(&g);
  /* a connection: decided with the server's identity when it runs */
  eng__guards_decide(&f->r, idx(f, "conn"), false, &g);
  assert_false(g.refused);
  assert_int_equal(target(&g, "database", 0)->d, ENG__G_CONNECTION);
  eng__gstep_free(&g);
  /* the run's start refuses exactly the steps decided as refused */
  eng__guards_run_start(&f->r);
  assert_int_equal(json_array_size(f->r.refused_before_start), 2);
  assert_int_equal(f->r.st[idx(f, "wipe")].status, ENG__S_REFUSED);
  assert_int_equal(f->r.st[idx(f, "mounts")].status, ENG__S_REFUSED);
  const char *quiet[] = {"first", "unsure", "later", "conn"};
  for (size_t i = 0; i < 4; i++) assert_untouched(f, quiet[i]);
  finish(f);
}

/* Conditions: false now: not held to the guards; known only later: held
 * to them for the plan ("REFUSED if it runs"), not at the run's start.
 * Steps --only leaves out are not decided at all. */
static void test_decide_conditions_and_selection(void **state) {
  (void)state;
  static const char rb[] =
      HDR "params:\n  reset: {type: bool, default: false}\n"
      "guards:\n  protected_databases: [prod]\n"
      "steps:\n" SHELL("first", "true")
      "  - {id: reset, if: params.reset, uses: shell, with: {command: 'dropdb prod'}}\n"
      "  - {id: onfail, if: failure(), uses: shell, with: {command: 'dropdb prod'}}\n";
  fx *f = prepare(rb, NULL, NULL);
  eng__gstep g;
  eng__guards_decide(&f->r, idx(f, "reset"), true, &g);
  assert_int_equal(g.cond, ENG__COND_FALSE);
  assert_int_equal(target(&g, "command", 0)->d, ENG__G_NOT_RUN);
  assert_false(g.refused);
  eng__gstep_free(&g);
  eng__guards_decide(&f->r, idx(f, "onfail"), true, &g);
  assert_int_equal(target(&g, "command", 0)->d, ENG__G_IF_RUNS);
  assert_false(g.refused);
  assert_true(g.refused_if_runs);
  eng__gstep_free(&g);
  size_t logged = json_array_size(f->r.guard_log);
  eng__guards_decide(&f->r, idx(f, "onfail"), false, &g);
  assert_int_equal(target(&g, "command", 0)->d, ENG__G_LATER);
  assert_false(g.refused_if_runs);
  assert_int_equal(json_array_size(f->r.guard_log), logged); /* nothing recorded */
  eng__gstep_free(&g);
  finish(f);
  f = prepare(rb, "{\"reset\": \"true\"}", "first");
  eng__guards_decide(&f->r, idx(f, "reset"), true, &g);
  assert_int_equal(target(&g, "command", 0)->d, ENG__G_NOT_SELECTED);
  assert_false(g.refused);
  eng__gstep_free(&g);
  finish(f);
}

/* ---- engine validate ------------------------------------------------------------ */

static size_t validate(const char *text, eng__diags *d) {
  eng__runbook *rb = eng__runbook_parse("v.yaml", text, strlen(text), d);
  assert_non_null(rb);
  eng__lua_opts lo = {0};
  eng__lua *L;
  char err[256];
  assert_int_equal(eng__lua_create(&lo, &L, err, sizeof err), ENG_OK);
  assert_int_equal(eng__plan_validate(rb, L, d), ENG_OK);
  size_t n = eng__guards_validate(rb, L, d);
  eng__lua_destroy(L);
  eng__runbook_free(rb);
  return n;
}

static void test_validate_static_violations(void **state) {
  (void)state;
  eng__diags d = {0};
  d.quiet = true;
  size_t n = validate(HDR "params:\n  db: {default: prod}\n"
                          "guards:\n  protected_databases: [prod, '${params.db}']\n"
                          "  protected_volumes: [pgdata]\n"
                          "  forbidden_commands: ['make wipe']\n"
                          "steps:\n"
                          "  - id: down\n"
                          "    uses: shell\n"
                          "    with:\n"
                          "      command: docker compose down -v\n"
                          "  - id: own\n"
                          "    uses: shell\n"
                          "    with: {command: 'cd app && make wipe'}\n"
                          "  - id: drop\n"
                          "    uses: shell\n"
                          "    with: {command: 'dropdb -h db prod'}\n"
                          "  - id: touch\n"
                          "    uses: testgood.touch\n"
                          "    with: {database: prod, mounts: ['pgdata:/d:rw']}\n"
                          "  - id: maybe\n"
                          "    if: params.db == 'x'\n"
                          "    uses: shell\n"
                          "    with: {command: 'dropdb prod'}\n"
                          /* not decidable without parameters or environment */
                          "  - {id: p, uses: shell, with: {command: 'dropdb ${params.db}'}}\n"
                          "  - {id: e, uses: shell, with: {command: 'dropdb $DB'}}\n"
                          "  - {id: nodb, uses: shell, with: {command: 'psql -c \"DROP TABLE t\"'}}\n"
                          "  - {id: read, uses: shell, with: {command: 'pg_dump -d prod'}}\n"
                          "  - {id: ro, uses: testgood.touchif, with: {database: prod, mounts: ['pgdata:/d']}}\n",
                      &d);
  const char *text = d.text.data ? d.text.data : "";
  /* each reason of each step, at the value that holds it */
  assert_int_equal(n, 5);
  contains(text, "v.yaml:13:16: error: step 'down' is refused by the guards in every run: "
                 "the command contains forbidden 'docker compose down -v' (built-in rule)");
  contains(text, "v.yaml:16:21: error: step 'own'");
  contains(text, "forbidden 'make wipe' (guards.forbidden_commands)");
  contains(text, "v.yaml:19:21: error: step 'drop' is refused by the guards in every run: "
                 "database 'prod' is protected");
  contains(text, "v.yaml:22:22: error: step 'touch' is refused by the guards in every run: "
                 "database 'prod' is protected");
  contains(text, "v.yaml:22:36: error: step 'touch' is refused by the guards in every run: "
                 "volume 'pgdata' is protected");
  contains(text, "v.yaml:26:21: warning: step 'maybe' is refused by the guards whenever its "
                 "condition lets it run");
  assert_null(strstr(text, "step 'p'"));
  assert_null(strstr(text, "step 'e'"));
  assert_null(strstr(text, "step 'nodb'"));
  assert_null(strstr(text, "step 'read'"));
  assert_null(strstr(text, "step 'ro'"));
  eng__diags_free(&d);
  /* a `require` the order of the steps cannot guarantee */
  eng__diags d2 = {0};
  d2.quiet = true;
  n = validate(HDR "guards:\n  require:\n    - {step: backup, before: restore}\n"
                   "steps:\n" SHELL("backup", "true")
                   "  - {id: restore, needs: [], uses: shell, with: {command: 'true'}}\n",
               &d2);
  assert_int_equal(n, 1);
  contains(d2.text.data, "v.yaml:5:30: error: guards.require: step 'backup' must end ok "
                         "before 'restore' starts");
  eng__diags_free(&d2);
  eng__diags d3 = {0};
  d3.quiet = true;
  assert_int_equal(validate(REQUIRE_RB, &d3), 0);
  eng__diags_free(&d3);
}

static int setup(void **state) {
  (void)state;
  eng__console_setup(false, -1, false);
  return unit_load_test_plugins();
}

static int teardown(void **state) {
  (void)state;
  eng__registry_unload();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_compile_lists),
      cmocka_unit_test(test_broken_entry),
      cmocka_unit_test(test_require),
      cmocka_unit_test(test_require_static),
      cmocka_unit_test(test_checks),
      cmocka_unit_test(test_cond_now),
      cmocka_unit_test(test_run_start_refuses_known_target),
      cmocka_unit_test(test_run_start_lets_through),
      cmocka_unit_test(test_run_start_static_require),
      cmocka_unit_test(test_decide_partly_known),
      cmocka_unit_test(test_decide_conditions_and_selection),
      cmocka_unit_test(test_validate_static_violations),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
