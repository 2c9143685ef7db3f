/* Unit tests for core/lock.c and the small-object side of core/state.c:
 * the run lock taken, refused, renewed, taken over after its TTL and lost,
 * with the clock given to each call (and injected for the renewal on the
 * loop).
 *
 * Locally (flock) they always run. Against a store they need one:
 * ENGINE_TEST_STATE_URL=s3://BUCKET/PREFIX with the AWS variables of a
 * server (tests/functional/test_state.py runs them against moto and checks
 * they ran); without it those tests are skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "state/state.h"

#define T0 ((int64_t)1900000000000) /* a fixed "now" */

static int s3_tests_ran;

static eng__state *open_local(void) {
  char *dir = eng__tmp_path("engine-lock-test", true);
  assert_non_null(mkdtemp(dir));
  char err[512];
  eng__state *st = eng__state_open(dir, err, sizeof err);
  free(dir);
  assert_non_null(st);
  return st;
}

static eng__state *open_store(const char *suffix) {
  const char *url = getenv("ENGINE_TEST_STATE_URL");
  if (!url || !*url) return NULL;
  static bool loaded;
  if (!loaded) {
    const char *dirs[] = {TEST_BUILD_ROOT "/plugins/s3"};
    eng__diags d = {0};
    d.quiet = true;
    eng__registry_load(dirs, 1, &d);
    eng__diags_free(&d);
    loaded = true;
  }
  char *full = eng__asprintf("%s/%s-%d", url, suffix, (int)getpid());
  char err[1024] = "";
  eng__state *st = eng__state_open(full, err, sizeof err);
  if (!st) print_error("cannot open %s: %s\n", full, err);
  free(full);
  assert_non_null(st);
  s3_tests_ran++;
  return st;
}

/* Take, refuse with the holder named, release, take again. */
static void take_refuse_release(eng__state *st) {
  eng__lock *a = NULL, *b = NULL;
  eng__lock_holder h;
  char over[32], err[512];
  assert_int_equal(eng__lock_take(st, "db-1", "run-a", T0, 10000, &a, &h,
                                  over, err, sizeof err), 0);
  assert_non_null(a);
  assert_string_equal(over, "");
  assert_int_equal(eng__lock_take(st, "db-1", "run-b", T0 + 1000, 10000, &b,
                                  &h, over, err, sizeof err), 1);
  assert_null(b);
  assert_string_equal(h.run, "run-a");
  assert_true(h.host[0] != '\0');
  assert_true(h.started[0] != '\0');
  /* another name is another lock */
  assert_int_equal(eng__lock_take(st, "db-2", "run-b", T0 + 1000, 10000, &b,
                                  &h, over, err, sizeof err), 0);
  eng__lock_release(b);
  eng__lock_release(a);
  assert_int_equal(eng__lock_take(st, "db-1", "run-c", T0 + 2000, 10000, &a,
                                  &h, over, err, sizeof err), 0);
  assert_string_equal(over, "");
  eng__lock_release(a);
}

static void test_local_lock(void **state) {
  (void)state;
  eng__state *st = open_local();
  take_refuse_release(st);
  /* flock: a holder's lock does not expire while it lives */
  eng__lock *a = NULL, *b = NULL;
  eng__lock_holder h;
  char over[32], err[512];
  assert_int_equal(eng__lock_take(st, "x", "run-a", T0, 1000, &a, &h, over,
                                  err, sizeof err), 0);
  assert_int_equal(eng__lock_take(st, "x", "run-b", T0 + 3600000, 1000, &b,
                                  &h, over, err, sizeof err), 1);
  assert_string_equal(h.run, "run-a");
  eng__lock_release(a);
  eng__rm_tree(eng__state_dir(st));
  eng__state_close(st);
}

static void test_lock_names(void **state) {
  (void)state;
  assert_true(eng__lock_name_ok("drill-ledger_1.x"));
  assert_false(eng__lock_name_ok(""));
  assert_false(eng__lock_name_ok(".hidden"));
  assert_false(eng__lock_name_ok("a/b"));
  assert_false(eng__lock_name_ok("a..b"));
  assert_false(eng__lock_name_ok("a b"));
  char long_name[200];
  memset(long_name, 'a', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  assert_false(eng__lock_name_ok(long_name));
}

static void test_store_lock(void **state) {
  (void)state;
  eng__state *st = open_store("take");
  if (!st) skip();
  take_refuse_release(st);
  eng__state_close(st);
}

/* Expiry, take-over with the ETag, the old holder's renewal refused. */
static void test_store_takeover(void **state) {
  (void)state;
  eng__state *st = open_store("takeover");
  if (!st) skip();
  eng__lock *a = NULL, *b = NULL, *c = NULL;
  eng__lock_holder h;
  char over[32], err[512];
  assert_int_equal(eng__lock_take(st, "db", "run-a", T0, 10000, &a, &h, over,
                                  err, sizeof err), 0);
  /* renewed at +8 s: valid until +18 s */
  assert_int_equal(eng__lock_renew(a, T0 + 8000, err, sizeof err), 0);
  assert_int_equal(eng__lock_take(st, "db", "run-b", T0 + 15000, 10000, &b,
                                  &h, over, err, sizeof err), 1);
  assert_string_equal(h.run, "run-a");
  /* past its expiry a waits no more: b takes it over */
  assert_int_equal(eng__lock_take(st, "db", "run-b", T0 + 18001, 10000, &b,
                                  &h, over, err, sizeof err), 0);
  assert_string_equal(over, "run-a");
  /* a comes back: its renewal is refused, it has lost the lock */
  assert_int_equal(eng__lock_renew(a, T0 + 18500, err, sizeof err), 1);
  assert_non_null(strstr(err, "took the lock"));
  /* a's release must not remove b's lock */
  eng__lock_release(a);
  assert_int_equal(eng__lock_take(st, "db", "run-c", T0 + 19000, 10000, &c,
                                  &h, over, err, sizeof err), 1);
  assert_string_equal(h.run, "run-b");
  assert_int_equal(eng__lock_renew(b, T0 + 20000, err, sizeof err), 0);
  eng__lock_release(b);
  char *data = NULL;
  size_t len;
  assert_int_equal(eng__state_get(st, "locks/db", &data, &len, NULL, err,
                                  sizeof err), ENG_ERR_NOTFOUND);
  eng__state_close(st);
}

/* Renewal on the loop with an injected clock: the record's expiry moves;
 * once another run took the lock over, the keeper says it was lost. */
static int64_t fake_now = T0;
static int64_t fake_clock(void) { return fake_now; }
static int lost_calls;
static char lost_msg[256];
static void on_lost(void *ud, const char *msg) {
  (void)ud;
  lost_calls++;
  snprintf(lost_msg, sizeof lost_msg, "%s", msg);
}

static int64_t expires_of(eng__state *st, const char *key) {
  char *data = NULL, err[512];
  size_t len;
  assert_int_equal(eng__state_get(st, key, &data, &len, NULL, err, sizeof err),
                   ENG_OK);
  json_t *j = json_loadb(data, len, 0, NULL);
  int64_t e = json_integer_value(json_object_get(j, "expires_ms"));
  json_decref(j);
  free(data);
  return e;
}

static void nothing(uv_timer_t *t) { (void)t; }

/* Run the loop for ms; a timer of its own keeps it alive as a run's
 * steps would (the renewal timer alone does not). */
static void run_for(uv_loop_t *loop, uint64_t ms) {
  uv_timer_t alive;
  uv_timer_init(loop, &alive);
  uv_timer_start(&alive, nothing, 3600000, 0);
  uint64_t end = uv_hrtime() + ms * 1000000;
  while (uv_hrtime() < end) {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(5000);
  }
  uv_close((uv_handle_t *)&alive, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
}

static void test_store_keep(void **state) {
  (void)state;
  eng__state *st = open_store("keep");
  if (!st) skip();
  eng__set_clock(fake_clock);
  fake_now = T0;
  eng__lock *a = NULL, *b = NULL;
  eng__lock_holder h;
  char over[32], err[512];
  assert_int_equal(eng__lock_take(st, "db", "run-a", fake_now, 600, &a, &h,
                                  over, err, sizeof err), 0);
  assert_int_equal(expires_of(st, "locks/db"), T0 + 600);
  uv_loop_t loop;
  uv_loop_init(&loop);
  eng__lock_keep(a, &loop, on_lost, NULL);
  fake_now = T0 + 300;
  run_for(&loop, 450); /* renewed every 200 ms, at "T0 + 300" */
  assert_int_equal(expires_of(st, "locks/db"), T0 + 900);
  assert_int_equal(lost_calls, 0);
  /* stalled past its expiry: another run takes it over, and a's next
   * renewal is refused: the watch says so on the loop */
  assert_int_equal(eng__lock_take(st, "db", "run-b", T0 + 6000, 600, &b, &h,
                                  over, err, sizeof err), 0);
  assert_string_equal(over, "run-a");
  run_for(&loop, 450);
  assert_int_equal(lost_calls, 1);
  assert_non_null(strstr(lost_msg, "took the lock"));
  eng__lock_unkeep(a);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  eng__lock_release(a); /* must not remove b's lock */
  assert_int_equal(expires_of(st, "locks/db"), T0 + 6600);
  eng__lock_release(b);
  /* renewals that never succeed: the lock counts as lost before it
   * expires (a sixth of the TTL ahead), whatever the store is doing */
  assert_int_equal(eng__lock_take(st, "db2", "run-c", T0, 600, &a, &h, over,
                                  err, sizeof err), 0);
  char msg[400];
  assert_false(eng__lock_lost(a, T0 + 400, msg, sizeof msg));
  assert_true(eng__lock_lost(a, T0 + 500, msg, sizeof msg));
  assert_non_null(strstr(msg, "could not be renewed"));
  eng__lock_release(a);
  eng__set_clock(NULL);
  eng__state_close(st);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lock_names),
      cmocka_unit_test(test_local_lock),
      cmocka_unit_test(test_store_lock),
      cmocka_unit_test(test_store_takeover),
      cmocka_unit_test(test_store_keep),
  };
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  printf("store lock tests run: %d\n", s3_tests_ran);
  eng__registry_unload();
  return failed;
}
