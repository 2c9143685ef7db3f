/* Unit tests for core/sched.c: the scheduler driven through eng__run_main
 * on small runbooks (ordering, --jobs, timeout killing a process group,
 * retry counts, finally after a failure and after SIGINT), and the host's
 * guarantees over a call's life cycle (call.c) with the test plugin
 * tests/plugins/lifecycle.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actions/actions.h"
#include "unit.h"
#include "exec/exec.h"

static char dir[] = "/tmp/engine-sched-XXXXXX";

static int run_text(const char *text, int jobs, json_t **report) {
  char *path = eng__asprintf("%s/rb.yaml", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  eng__diags d = {0};
  d.quiet = true;
  eng__runbook *rb = eng__runbook_load(path, &d);
  assert_non_null(rb);
  eng__lua_opts lo = {0};
  eng__lua *L = NULL;
  char err[256];
  assert_int_equal(eng__lua_create(&lo, &L, err, sizeof err), ENG_OK);
  assert_int_equal(eng__plan_validate(rb, L, &d), ENG_OK);
  assert_int_equal(d.errors, 0);
  eng__run_opts o = {0};
  o.jobs = jobs;
  char *state = eng__asprintf("%s/state", dir);
  char *rep = eng__asprintf("%s/report.json", dir);
  o.state_dir = state;
  o.report = rep;
  o.verbosity = -1;
  eng__console_setup(false, -1, false);
  int code = eng__run_main(rb, L, &o);
  *report = json_load_file(rep, 0, NULL);
  assert_non_null(*report);
  eng__lua_destroy(L);
  eng__runbook_free(rb);
  eng__diags_free(&d);
  free(state);
  free(rep);
  free(path);
  return code;
}

/* The runbook text with @D@ replaced by the test directory and @P@ by our
 * pid (ISO C has no positional printf arguments). */
static char *fill(const char *t) {
  eng__buf b = {0};
  char pid[32];
  snprintf(pid, sizeof pid, "%d", (int)getpid());
  for (const char *p = t; *p;) {
    if (!strncmp(p, "@D@", 3)) { eng__buf_adds(&b, dir); p += 3; }
    else if (!strncmp(p, "@P@", 3)) { eng__buf_adds(&b, pid); p += 3; }
    else eng__buf_add(&b, p++, 1);
  }
  return eng__buf_steal(&b);
}

static const char *status(json_t *rep, const char *step) {
  return json_string_value(json_object_get(json_object_get(json_object_get(rep, "steps"), step), "status"));
}

static int attempts(json_t *rep, const char *step) {
  return (int)json_integer_value(json_object_get(json_object_get(json_object_get(rep, "steps"), step), "attempts"));
}

static char *slurp(const char *name) {
  char *p = eng__asprintf("%s/%s", dir, name);
  char *t = eng__read_file(p, 1 << 20, NULL);
  free(p);
  return t;
}

static void test_order_and_jobs(void **state) {
  (void)state;
  char *text = fill(
      "version: 1\nname: t\nsteps:\n"
      "  - {id: a, uses: shell, with: {command: 'echo a >> @D@/log'}}\n"
      "  - {id: p1, needs: [a], uses: shell, with: {command: 'echo s >> @D@/log; sleep 0.3; echo e >> @D@/log'}}\n"
      "  - {id: p2, needs: [a], uses: shell, with: {command: 'echo s >> @D@/log; sleep 0.3; echo e >> @D@/log'}}\n"
      "  - {id: z, needs: [p1, p2], uses: shell, with: {command: 'echo z >> @D@/log'}}\n");
  json_t *rep;
  assert_int_equal(run_text(text, 1, &rep), ENG_EXIT_OK);
  char *log = slurp("log");
  assert_string_equal(log, "a\ns\ne\ns\ne\nz\n"); /* --jobs 1: one at a time */
  free(log);
  json_decref(rep);
  char *p = eng__asprintf("%s/log", dir);
  unlink(p);
  free(p);
  assert_int_equal(run_text(text, 4, &rep), ENG_EXIT_OK);
  log = slurp("log");
  assert_string_equal(log, "a\ns\ns\ne\ne\nz\n"); /* both at once */
  free(log);
  json_decref(rep);
  free(text);
}

/* Running (a zombie waiting for its reaper counts as gone). */
static bool alive(int pid) {
  if (kill(pid, 0) != 0) return false;
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  char *st = eng__read_file(path, 4096, NULL);
  if (!st) return false;
  char *close = strrchr(st, ')');
  bool zombie = close && close[1] == ' ' && close[2] == 'Z';
  free(st);
  return !zombie;
}

static void test_timeout_kills_group_and_finally(void **state) {
  (void)state;
  char *text = fill(
      "version: 1\nname: t\nsteps:\n"
      "  - id: slow\n    uses: shell\n    timeout: 300ms\n"
      "    with: {command: 'sleep 30 & echo $! > @D@/pid; wait'}\n"
      "  - {id: next, uses: shell, with: {command: 'touch @D@/next'}}\n"
      "finally:\n  - {id: fin, uses: shell, with: {command: 'touch @D@/fin'}}\n");
  json_t *rep;
  assert_int_equal(run_text(text, 4, &rep), ENG_EXIT_FAILED);
  assert_string_equal(status(rep, "slow"), "timed_out");
  assert_string_equal(status(rep, "next"), "skipped");
  assert_string_equal(status(rep, "fin"), "ok");
  char *pid = slurp("pid");
  assert_non_null(pid);
  usleep(300000);
  assert_false(alive(atoi(pid))); /* the grandchild is gone */
  free(pid);
  json_decref(rep);
  free(text);
}

static void test_retry_counts(void **state) {
  (void)state;
  char *text = fill(
      "version: 1\nname: t\nsteps:\n"
      "  - id: flaky\n    uses: shell\n    retry: {attempts: 5, delay: 10ms, backoff: 2}\n"
      "    with: {command: 'echo x >> @D@/n; [ $(wc -l < @D@/n) -ge 3 ]'}\n"
      "  - id: never\n    uses: shell\n    needs: []\n    retry: {attempts: 3}\n"
      "    with: {command: 'exit 1'}\n");
  json_t *rep;
  assert_int_equal(run_text(text, 4, &rep), ENG_EXIT_FAILED);
  assert_int_equal(attempts(rep, "flaky"), 3);
  assert_string_equal(status(rep, "flaky"), "ok");
  assert_int_equal(attempts(rep, "never"), 3);
  assert_string_equal(status(rep, "never"), "failed");
  json_decref(rep);
  free(text);
}

static void test_sigint_runs_finally(void **state) {
  (void)state;
  char *text = fill(
      "version: 1\nname: t\nsteps:\n"
      "  - {id: interrupt, uses: shell, with: {command: 'kill -INT @P@; sleep 20'}}\n"
      "  - {id: after, uses: shell, with: {command: 'touch @D@/after'}}\n"
      "finally:\n  - {id: fin, uses: shell, with: {command: 'echo ${run.status} > @D@/fin'}}\n");
  json_t *rep;
  assert_int_equal(run_text(text, 4, &rep), ENG_EXIT_INTERRUPTED);
  assert_string_equal(status(rep, "interrupt"), "cancelled");
  assert_string_equal(status(rep, "after"), "cancelled");
  char *fin = slurp("fin");
  assert_string_equal(fin, "cancelled\n");
  free(fin);
  json_decref(rep);
  free(text);
}

/* A hook that computes forever holds the loop thread: SIGINT still stops
 * it at once (not after the 10 s budget), the step is cancelled and
 * `finally` runs. */
static void test_sigint_stops_a_busy_hook(void **state) {
  (void)state;
  char *text = fill("version: 1\nname: t\nsteps:\n"
                    "  - {id: kick, uses: shell, with: {command: 'sleep 0.3; kill -INT @P@'}}\n"
                    "  - {id: spin, needs: [], uses: lua, with: {script: 'while true do end'}}\n"
                    "finally:\n  - {id: fin, uses: lua, with: {script: 'return 1 + 1'}}\n");
  json_t *rep;
  int64_t t0 = eng__now_ms();
  assert_int_equal(run_text(text, 4, &rep), ENG_EXIT_INTERRUPTED);
  assert_true(eng__now_ms() - t0 < 3000);
  assert_string_equal(status(rep, "spin"), "cancelled");
  assert_string_equal(status(rep, "fin"), "ok");
  json_decref(rep);
  free(text);
}

/* A timer and a socket watch left running when the action called done()
 * are closed by the host: their callbacks never run. */
static void test_done_closes_timers_and_watches(void **state) {
  (void)state;
  char *text = fill("version: 1\nname: t\nsteps:\n"
                    "  - {id: leak, uses: testlife.leak, with: {mark: '@D@/fired'}}\n"
                    "  - {id: later, needs: [leak], uses: sleep, with: {for: 200ms}}\n");
  json_t *rep;
  assert_int_equal(run_text(text, 4, &rep), ENG_EXIT_OK);
  assert_string_equal(status(rep, "leak"), "ok");
  char *fired = slurp("fired");
  if (fired) print_error("a callback ran after done(): %s\n", fired);
  assert_null(fired);
  json_decref(rep);
  free(text);
}

/* A plugin that ignores a cancel is abandoned after the grace: the step
 * ends timed out with a message naming the fault, `finally` runs and the
 * run ends. */
static void test_ignored_cancel_abandoned_after_grace(void **state) {
  (void)state;
  eng__host_set_cancel_grace(300);
  char *text = fill("version: 1\nname: t\nsteps:\n"
                    "  - {id: stuck, uses: testlife.deaf, timeout: 100ms}\n"
                    "finally:\n  - {id: fin, uses: shell, with: {command: 'touch @D@/fin2'}}\n");
  json_t *rep;
  int64_t t0 = eng__now_ms();
  assert_int_equal(run_text(text, 4, &rep), ENG_EXIT_FAILED);
  int64_t took = eng__now_ms() - t0;
  assert_string_equal(status(rep, "stuck"), "timed_out");
  assert_string_equal(status(rep, "fin"), "ok");
  const char *err = json_string_value(json_object_get(
      json_object_get(json_object_get(rep, "steps"), "stuck"), "error"));
  assert_non_null(err);
  assert_non_null(strstr(err, "did not honour the cancel"));
  assert_true(took >= 350 && took < 5000); /* timeout + grace, not forever */
  json_decref(rep);
  free(text);
  eng__host_set_cancel_grace(10000);
}

/* on_cancel can tell a timeout from an interrupt. */
static void test_cancel_reason(void **state) {
  (void)state;
  char *text = fill("version: 1\nname: t\nsteps:\n"
                    "  - {id: wait, uses: testlife.polite, timeout: 100ms,"
                    " with: {reason_file: '@D@/reason1'}}\n");
  json_t *rep;
  assert_int_equal(run_text(text, 4, &rep), ENG_EXIT_FAILED);
  assert_string_equal(status(rep, "wait"), "timed_out");
  char *r = slurp("reason1");
  assert_string_equal(r, "timeout");
  free(r);
  json_decref(rep);
  free(text);
  text = fill("version: 1\nname: t\nsteps:\n"
              "  - {id: wait, uses: testlife.polite, with: {reason_file: '@D@/reason2'}}\n"
              "  - {id: kick, needs: [], uses: shell, with: {command: 'sleep 0.2; kill -INT @P@'}}\n");
  assert_int_equal(run_text(text, 4, &rep), ENG_EXIT_INTERRUPTED);
  assert_string_equal(status(rep, "wait"), "cancelled");
  r = slurp("reason2");
  assert_string_equal(r, "interrupt");
  free(r);
  json_decref(rep);
  free(text);
  /* nothing can complete it (no timeout, no handle): the engine shuts it
   * down instead of stopping with the step pending */
  text = fill("version: 1\nname: t\nsteps:\n"
              "  - {id: wait, uses: testlife.polite, with: {reason_file: '@D@/reason3'}}\n");
  assert_int_equal(run_text(text, 4, &rep), ENG_EXIT_FAILED);
  assert_string_equal(status(rep, "wait"), "cancelled");
  r = slurp("reason3");
  assert_string_equal(r, "shutdown");
  free(r);
  json_decref(rep);
  free(text);
  /* and one that ignores it too is abandoned after the grace */
  eng__host_set_cancel_grace(200);
  text = fill("version: 1\nname: t\nsteps:\n  - {id: stuck, uses: testlife.deaf}\n"
              "finally:\n  - {id: fin, uses: shell, with: {command: 'true'}}\n");
  assert_int_equal(run_text(text, 4, &rep), ENG_EXIT_FAILED);
  assert_string_equal(status(rep, "stuck"), "cancelled");
  assert_string_equal(status(rep, "fin"), "ok");
  json_decref(rep);
  free(text);
  eng__host_set_cancel_grace(10000);
}

static json_t *field(json_t *rep, const char *step, const char *name) {
  return json_object_get(json_object_get(json_object_get(rep, "steps"), step), name);
}

/* warn: a check's "warn" or engine.warn ends the step `warn`, which counts
 * as ok (success(), the exit code); a retried step keeps the warnings of
 * its last attempt only; a continue_on_error failure is marked so. */
static void test_warn_and_continued(void **state) {
  (void)state;
  char *text = fill(
      "version: 1\nname: t\nsteps:\n"
      "  - id: again\n    uses: shell\n"
      "    with: {command: 'if [ -f @D@/w ]; then echo second; else touch @D@/w; echo first; fi'}\n"
      "    retry: {attempts: 2}\n"
      "    check: |\n"
      "      if outputs.stdout == 'first\\n' then engine.warn('w1'); return false, 'again' end\n"
      "      return true\n"
      "  - id: lag\n    uses: shell\n    with: {command: 'echo 20'}\n"
      "    check: return 'warn', 'lag ' .. outputs.stdout:gsub('%s', '') .. ' s'\n"
      "  - id: next\n    uses: shell\n    with: {command: 'true'}\n"
      "  - id: soft\n    uses: shell\n    continue_on_error: true\n"
      "    with: {command: 'exit 3'}\n"
      "  - id: after\n    uses: lua\n"
      "    with: {script: 'engine.warn(steps.lag.status) return {}'}\n");
  json_t *rep;
  assert_int_equal(run_text(text, 1, &rep), ENG_EXIT_OK);
  assert_string_equal(status(rep, "again"), "ok");
  assert_int_equal(attempts(rep, "again"), 2);
  assert_null(field(rep, "again", "warning"));
  assert_string_equal(status(rep, "lag"), "warn");
  assert_string_equal(json_string_value(field(rep, "lag", "warning")), "lag 20 s");
  assert_string_equal(json_string_value(field(rep, "lag", "check")), "warn");
  assert_string_equal(status(rep, "next"), "ok"); /* success() after a warning */
  assert_string_equal(status(rep, "soft"), "failed");
  assert_true(json_is_true(field(rep, "soft", "continued")));
  assert_string_equal(status(rep, "after"), "warn");
  assert_string_equal(json_string_value(field(rep, "after", "warning")), "warn");
  json_t *counts = json_object_get(rep, "counts");
  assert_int_equal(json_integer_value(json_object_get(counts, "warn")), 2);
  assert_int_equal(json_integer_value(json_object_get(counts, "ok")), 2);
  assert_string_equal(json_string_value(json_object_get(rep, "status")), "ok");
  json_decref(rep);
  free(text);
}

/* Nothing recovered: the RTO is not measured, and its target is not met
 * (exit 4 when nothing failed); the reason names the recovered step. */
static void test_rto_only_when_recovered(void **state) {
  (void)state;
  char *text = fill(
      "version: 1\nname: t\nslo: {rto: 1h}\nsteps:\n"
      "  - {id: pick, uses: shell, with: {command: 'true'}}\n"
      "  - {id: restore, if: 'false', uses: shell, with: {command: 'true'}, recovered: true}\n");
  json_t *rep;
  assert_int_equal(run_text(text, 1, &rep), ENG_EXIT_SLO);
  json_t *slo = json_object_get(rep, "slo");
  assert_true(json_is_null(json_object_get(slo, "rto_ms")));
  assert_true(json_is_null(json_object_get(slo, "rto_met")));
  assert_true(json_is_false(json_object_get(slo, "met")));
  assert_string_equal(json_string_value(json_object_get(slo, "rto_error")),
                      "nothing was recovered: step 'restore' (recovered: true) was skipped");
  json_decref(rep);
  free(text);
  /* recovered: measured and met */
  text = fill("version: 1\nname: t\nslo: {rto: 1h}\nsteps:\n"
              "  - {id: restore, uses: shell, with: {command: 'true'}, recovered: true}\n");
  assert_int_equal(run_text(text, 1, &rep), ENG_EXIT_OK);
  slo = json_object_get(rep, "slo");
  assert_true(json_is_integer(json_object_get(slo, "rto_ms")));
  assert_true(json_is_true(json_object_get(slo, "rto_met")));
  assert_true(json_is_true(json_object_get(slo, "met")));
  json_decref(rep);
  free(text);
}

static int setup(void **state) {
  (void)state;
  assert_non_null(mkdtemp(dir));
  return unit_load_test_plugins();
}

static int teardown(void **state) {
  (void)state;
  eng__registry_unload();
  char *cmd = eng__asprintf("rm -rf '%s'", dir);
  int rc = system(cmd);
  (void)rc;
  free(cmd);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_order_and_jobs),
      cmocka_unit_test(test_timeout_kills_group_and_finally),
      cmocka_unit_test(test_retry_counts),
      cmocka_unit_test(test_sigint_runs_finally),
      cmocka_unit_test(test_sigint_stops_a_busy_hook),
      cmocka_unit_test(test_done_closes_timers_and_watches),
      cmocka_unit_test(test_ignored_cancel_abandoned_after_grace),
      cmocka_unit_test(test_cancel_reason),
      cmocka_unit_test(test_warn_and_continued),
      cmocka_unit_test(test_rto_only_when_recovered),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
