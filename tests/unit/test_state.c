/* Unit tests for core/state/state.c: a local state directory (objects by
 * key with exclusive create, NOTFOUND and EXISTS; runs found or not;
 * nothing pushed anywhere), eng__rm_tree, and the same contract against
 * a store URL: objects with their ETags and SHA-256, conditional writes
 * refused, listing, a run's state files pushed to the store and pulled
 * back on another machine (another scratch directory), and the
 * background sync that writes a run's files at its step boundaries and
 * stops writing once the run lost its lock.
 *
 * Locally they always run. Against a store they need one:
 * ENGINE_TEST_STATE_URL=s3://BUCKET/PREFIX with the AWS variables of a
 * server, and ENGINE_TEST_TAMPERED_KEY naming an object under PREFIX whose
 * bytes do not match the SHA-256 recorded with it
 * (tests/functional/test_state.py runs them against moto and checks they
 * ran); without it those tests are skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "state/state.h"
#include "unit.h"

static char tmp[4096]; /* everything local goes under it */
static int store_tests_ran;

static bool exists(const char *path) {
  struct stat sb;
  return lstat(path, &sb) == 0;
}

static void put_file(const char *path, const char *text) {
  char *d = eng__xstrdup(path);
  *strrchr(d, '/') = '\0';
  assert_int_equal(eng__mkdir_p(d, 0700), 0);
  free(d);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static char *file_text(const char *path) {
  return eng__read_file(path, 1 << 20, NULL);
}

static void contains(const char *s, const char *part) {
  if (!s || !strstr(s, part)) {
    print_error("'%s' does not contain '%s'\n", s ? s : "(null)", part);
    fail();
  }
}

/* The keys of a listing, joined with spaces. */
static char *listing(eng__state *st, const char *prefix) {
  char err[512] = "";
  json_t *l = eng__state_list(st, prefix, err, sizeof err);
  if (!l) print_error("list %s: %s\n", prefix, err);
  assert_non_null(l);
  eng__buf b = {0};
  size_t i;
  json_t *k;
  json_array_foreach(l, i, k) {
    if (i) eng__buf_adds(&b, " ");
    eng__buf_adds(&b, json_string_value(k));
  }
  json_decref(l);
  return eng__buf_steal(&b);
}

static void expect_listing(eng__state *st, const char *prefix, const char *want) {
  char *got = listing(st, prefix);
  if (strcmp(got, want)) print_error("list %s: '%s', expected '%s'\n", prefix, got, want);
  assert_string_equal(got, want);
  free(got);
}

/* KEY's bytes as a string, or NULL with *rc when it cannot be read. */
static char *get_text(eng__state *st, const char *key, int *rc, char etag[ENG_ETAG_MAX]) {
  char *data = NULL, err[512] = "";
  size_t len = 0;
  *rc = eng__state_get(st, key, &data, &len, etag, err, sizeof err);
  if (*rc != ENG_OK) return NULL;
  assert_non_null(data);
  assert_int_equal(strlen(data), len);
  return data;
}

/* ---- the object contract, local or in a store ---------------------------- */

static void objects_contract(eng__state *st, bool store) {
  char err[512], etag[ENG_ETAG_MAX], etag2[ENG_ETAG_MAX];
  int rc;
  /* binary data round trip, NUL included */
  char bin[3000];
  for (size_t i = 0; i < sizeof bin; i++) bin[i] = (char)(i * 7);
  assert_int_equal(eng__state_put(st, "objs/bin", bin, sizeof bin, NULL, etag, err, sizeof err),
                   ENG_OK);
  assert_int_equal(etag[0] != '\0', store); /* local objects have no ETag */
  char *data = NULL;
  size_t len = 0;
  assert_int_equal(eng__state_get(st, "objs/bin", &data, &len, etag2, err, sizeof err), ENG_OK);
  assert_int_equal(len, sizeof bin);
  assert_memory_equal(data, bin, sizeof bin);
  assert_string_equal(etag2, etag);
  free(data);

  /* an unconditional put replaces the object whole */
  assert_int_equal(eng__state_put(st, "objs/a", "first version", 13, NULL, NULL, err, sizeof err),
                   ENG_OK);
  assert_int_equal(eng__state_put(st, "objs/a", "v2", 2, NULL, etag, err, sizeof err), ENG_OK);
  data = get_text(st, "objs/a", &rc, etag2);
  assert_string_equal(data, "v2");
  free(data);

  /* "*": only when absent */
  assert_int_equal(eng__state_put(st, "objs/a", "v3", 2, "*", NULL, err, sizeof err),
                   ENG_ERR_EXISTS);
  data = get_text(st, "objs/a", &rc, NULL);
  assert_string_equal(data, "v2"); /* untouched */
  free(data);
  assert_int_equal(eng__state_put(st, "objs/b", "b", 1, "*", NULL, err, sizeof err), ENG_OK);
  assert_int_equal(eng__state_put(st, "objs/b", "b2", 2, "*", NULL, err, sizeof err),
                   ENG_ERR_EXISTS);

  /* missing objects */
  assert_null(get_text(st, "objs/none", &rc, NULL));
  assert_int_equal(rc, ENG_ERR_NOTFOUND);
  assert_int_equal(eng__state_del(st, "objs/none", NULL, err, sizeof err), ENG_OK);

  /* compare and swap on the ETag (locally an ETag condition always holds) */
  if (store) {
    char old[ENG_ETAG_MAX];
    snprintf(old, sizeof old, "%s", etag);
    assert_int_equal(eng__state_put(st, "objs/a", "v4", 2, old, etag, err, sizeof err), ENG_OK);
    assert_string_not_equal(etag, old);
    assert_int_equal(eng__state_put(st, "objs/a", "v5", 2, old, NULL, err, sizeof err),
                     ENG_ERR_EXISTS);
    assert_int_equal(eng__state_del(st, "objs/a", old, err, sizeof err), ENG_ERR_EXISTS);
    data = get_text(st, "objs/a", &rc, NULL);
    assert_string_equal(data, "v4");
    free(data);
    assert_int_equal(eng__state_del(st, "objs/a", etag, err, sizeof err), ENG_OK);
  } else {
    assert_int_equal(eng__state_put(st, "objs/a", "v4", 2, "\"any\"", NULL, err, sizeof err),
                     ENG_OK);
    assert_int_equal(eng__state_del(st, "objs/a", NULL, err, sizeof err), ENG_OK);
  }
  assert_null(get_text(st, "objs/a", &rc, NULL));
  assert_int_equal(rc, ENG_ERR_NOTFOUND);

  /* listing: sorted keys under the prefix, relative to the state */
  assert_int_equal(eng__state_put(st, "objs/ab", "x", 1, NULL, NULL, err, sizeof err), ENG_OK);
  assert_int_equal(eng__state_put(st, "objs/aa", "x", 1, NULL, NULL, err, sizeof err), ENG_OK);
  expect_listing(st, "objs/", "objs/aa objs/ab objs/b objs/bin");
  expect_listing(st, "objs/a", "objs/aa objs/ab");
  expect_listing(st, "nothing/", "");

  /* keys that could leave the state are refused before anything is done */
  const char *bad[] = {"", "/etc/passwd", "../outside", "objs/../../x"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    err[0] = '\0';
    assert_int_equal(eng__state_put(st, bad[i], "x", 1, NULL, NULL, err, sizeof err),
                     ENG_ERR_INVALID);
    contains(err, "invalid key");
    assert_int_equal(eng__state_get(st, bad[i], &data, &len, NULL, err, sizeof err),
                     ENG_ERR_INVALID);
    assert_int_equal(eng__state_del(st, bad[i], NULL, err, sizeof err), ENG_ERR_INVALID);
  }
  char *outside = eng__asprintf("%s/outside", tmp);
  assert_false(exists(outside));
  free(outside);

  /* a second handle (another thread's) sees the same objects */
  eng__state *d = eng__state_dup(st, err, sizeof err);
  assert_non_null(d);
  assert_string_equal(eng__state_dir(d), eng__state_dir(st));
  data = get_text(d, "objs/b", &rc, NULL);
  assert_string_equal(data, "b");
  free(data);
  eng__state_close(d);
}

/* ---- local ------------------------------------------------------------------- */

static eng__state *open_local(const char *name) {
  char *p = eng__asprintf("%s/%s", tmp, name);
  char err[512];
  eng__state *st = eng__state_open(p, err, sizeof err);
  assert_non_null(st);
  free(p);
  return st;
}

static void test_local_objects(void **state) {
  (void)state;
  eng__state *st = open_local("local");
  assert_null(eng__state_url(st));
  objects_contract(st, false);
  /* what a local object is: a file under the directory, no temporary
   * file left beside it */
  char *p = eng__asprintf("%s/objs/b", eng__state_dir(st));
  char *t = file_text(p);
  assert_string_equal(t, "b");
  free(t);
  free(p);
  expect_listing(st, "objs/b", "objs/b objs/bin");
  eng__state_close(st);
}

/* A relative directory is made absolute (the run changes directories). */
static void test_local_open(void **state) {
  (void)state;
  char cwd[4096];
  assert_non_null(getcwd(cwd, sizeof cwd));
  assert_int_equal(chdir(tmp), 0);
  char err[512] = "";
  eng__state *st = eng__state_open("rel/state", err, sizeof err);
  assert_int_equal(chdir(cwd), 0);
  assert_non_null(st);
  char *want = eng__asprintf("%s/rel/state", tmp);
  assert_string_equal(eng__state_dir(st), want);
  free(want);
  assert_null(eng__state_url(st));
  eng__state_close(st);
  /* a URL whose scheme no plugin serves as a store */
  err[0] = '\0';
  assert_null(eng__state_open("gopher://host/state", err, sizeof err));
  contains(err, "no plugin serves state stores for 'gopher://'");
  assert_null(eng__state_fetch_url("s3-but-no-key", NULL, err, sizeof err));
  contains(err, "does not name an object");
}

/* Locally a run is its directory: found when it has a journal; pushing
 * and syncing write nothing anywhere. */
static void test_local_runs(void **state) {
  (void)state;
  eng__state *st = open_local("runs-local");
  char err[512] = "";
  assert_int_equal(eng__state_pull_run(st, "20260101-000000-abcd", err, sizeof err), 1);
  char *j = eng__asprintf("%s/runs/20260101-000000-abcd/journal", eng__state_dir(st));
  put_file(j, "{\"event\":\"step.start\"}\n");
  assert_int_equal(eng__state_pull_run(st, "20260101-000000-abcd", err, sizeof err), 0);
  char *t = file_text(j);
  assert_string_equal(t, "{\"event\":\"step.start\"}\n"); /* untouched */
  free(t);
  free(j);
  const char *bad[] = {"", "../runs-local", "a/b", "x y"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    err[0] = '\0';
    assert_int_equal(eng__state_pull_run(st, bad[i], err, sizeof err), 1);
    contains(err, "is not a run id");
  }
  assert_int_equal(eng__state_push_run(st, "20260101-000000-abcd", err, sizeof err), 0);
  assert_null(eng__state_sync_start(st, "20260101-000000-abcd", NULL, NULL));
  eng__state_sync_kick(NULL);
  assert_int_equal(eng__state_sync_stop(NULL, err, sizeof err), 0);
  eng__state_close(st);
}

/* rm_tree removes a tree, and never what a symbolic link inside it points
 * to. */
static void test_rm_tree(void **state) {
  (void)state;
  char *keep = eng__asprintf("%s/keep/precious", tmp);
  put_file(keep, "do not remove\n");
  char *root = eng__asprintf("%s/tree", tmp);
  char *deep = eng__asprintf("%s/a/b/c/file", root);
  put_file(deep, "x");
  char *hidden = eng__asprintf("%s/a/.hidden", root);
  put_file(hidden, "x");
  char *link = eng__asprintf("%s/a/b/link", root);
  char *target = eng__asprintf("%s/keep", tmp);
  assert_int_equal(symlink(target, link), 0);
  char *flink = eng__asprintf("%s/flink", root);
  assert_int_equal(symlink(keep, flink), 0);
  eng__rm_tree(root);
  assert_false(exists(root));
  assert_true(exists(keep));
  char *t = file_text(keep);
  assert_string_equal(t, "do not remove\n");
  free(t);
  eng__rm_tree(root); /* already gone: nothing happens */
  assert_true(exists(keep));
  free(flink);
  free(target);
  free(link);
  free(hidden);
  free(deep);
  free(root);
  free(keep);
}

/* ---- a store ------------------------------------------------------------------- */

static bool registry_loaded;

/* The store at ENGINE_TEST_STATE_URL/SUFFIX-PID (a trailing '/' is
 * dropped), its scratch directory under `scratch`; NULL without one. */
static eng__state *open_store(const char *suffix, const char *scratch) {
  const char *url = getenv("ENGINE_TEST_STATE_URL");
  if (!url || !*url) return NULL;
  if (!registry_loaded) {
    const char *dirs[] = {TEST_BUILD_ROOT "/plugins/s3"};
    eng__diags d = {0};
    d.quiet = true;
    eng__registry_load(dirs, 1, &d);
    eng__diags_free(&d);
    registry_loaded = true;
  }
  char *sd = eng__asprintf("%s/%s", tmp, scratch);
  setenv("ENGINE_SCRATCH_DIR", sd, 1);
  char *full = suffix ? eng__asprintf("%s/%s-%d/", url, suffix, (int)getpid())
                      : eng__asprintf("%s/", url);
  char err[1024] = "";
  eng__state *st = eng__state_open(full, err, sizeof err);
  if (!st) print_error("cannot open %s: %s\n", full, err);
  assert_non_null(st);
  full[strlen(full) - 1] = '\0';
  assert_string_equal(eng__state_url(st), full);
  /* the scratch mirror is a directory of its own under ENGINE_SCRATCH_DIR */
  assert_int_equal(strncmp(eng__state_dir(st), sd, strlen(sd)), 0);
  assert_true(exists(eng__state_dir(st)));
  free(full);
  free(sd);
  store_tests_ran++;
  return st;
}

static void test_store_objects(void **state) {
  (void)state;
  eng__state *st = open_store("objects", "scratch-a");
  if (!st) skip();
  objects_contract(st, true);
  /* objects live in the store, not in the scratch directory */
  char *p = eng__asprintf("%s/objs/b", eng__state_dir(st));
  assert_false(exists(p));
  free(p);
  /* listing in a store is by prefix, at any depth */
  char err[512];
  assert_int_equal(eng__state_put(st, "objs/deep/x", "x", 1, NULL, NULL, err, sizeof err), ENG_OK);
  expect_listing(st, "objs/", "objs/aa objs/ab objs/b objs/bin objs/deep/x");
  /* a file of the store read by its URL */
  char *url = eng__asprintf("%s/objs/b", eng__state_url(st));
  size_t len = 0;
  char *data = eng__state_fetch_url(url, &len, err, sizeof err);
  assert_non_null(data);
  assert_int_equal(len, 1);
  assert_string_equal(data, "b");
  free(data);
  free(url);
  eng__state_close(st);
}

/* Bytes that do not hash to the SHA-256 recorded with the object are an
 * error, never data. */
static void test_store_checksum(void **state) {
  (void)state;
  const char *key = getenv("ENGINE_TEST_TAMPERED_KEY");
  eng__state *st = key && *key ? open_store(NULL, "scratch-t") : NULL;
  if (!st) skip();
  char *data = NULL, err[1024] = "";
  size_t len = 0;
  assert_int_equal(eng__state_get(st, key, &data, &len, NULL, err, sizeof err),
                   ENG_ERR_CHECKSUM);
  assert_null(data);
  contains(err, "SHA-256");
  eng__state_close(st);
}

#define RUN_ID "20260102-030405-beef"

static char *run_file(eng__state *st, const char *id, const char *name) {
  return eng__asprintf("%s/runs/%s/%s", eng__state_dir(st), id, name);
}

/* A run's state files go to the store (a journal line being written
 * stays out until whole; other files of the run stay local), and come
 * back on another machine. */
static void test_store_push_pull(void **state) {
  (void)state;
  eng__state *st = open_store("runs", "scratch-a");
  if (!st) skip();
  char err[1024] = "";
  char *p;
  p = run_file(st, RUN_ID, "journal");
  put_file(p, "{\"event\":\"step.start\",\"step\":\"a\"}\n{\"event\":\"step.e");
  free(p);
  p = run_file(st, RUN_ID, "audit.jsonl");
  put_file(p, "{\"type\":\"run.start\"}\n");
  free(p);
  p = run_file(st, RUN_ID, "report.json");
  put_file(p, "{\"status\": \"ok\"}");
  free(p);
  p = run_file(st, RUN_ID, "backup.dump");
  put_file(p, "not state");
  free(p);
  assert_int_equal(eng__state_push_run(st, RUN_ID, err, sizeof err), 0);
  expect_listing(st, "runs/" RUN_ID "/", "runs/" RUN_ID "/audit.jsonl runs/" RUN_ID
                 "/journal runs/" RUN_ID "/report.json");
  int rc;
  char *t = get_text(st, "runs/" RUN_ID "/journal", &rc, NULL);
  assert_string_equal(t, "{\"event\":\"step.start\",\"step\":\"a\"}\n");
  free(t);

  /* another machine: an empty scratch directory; a stale file there that
   * the store does not have is removed, the run's other files stay */
  eng__state *other = open_store("runs", "scratch-b");
  assert_string_not_equal(eng__state_dir(other), eng__state_dir(st));
  p = run_file(other, RUN_ID, "junit.xml");
  put_file(p, "stale");
  free(p);
  char *dump = run_file(other, RUN_ID, "local.dump");
  put_file(dump, "local");
  assert_int_equal(eng__state_pull_run(other, RUN_ID, err, sizeof err), 0);
  p = run_file(other, RUN_ID, "journal");
  t = file_text(p);
  assert_string_equal(t, "{\"event\":\"step.start\",\"step\":\"a\"}\n");
  free(t);
  free(p);
  p = run_file(other, RUN_ID, "report.json");
  t = file_text(p);
  assert_string_equal(t, "{\"status\": \"ok\"}");
  free(t);
  free(p);
  p = run_file(other, RUN_ID, "junit.xml");
  assert_false(exists(p));
  free(p);
  assert_true(exists(dump));
  free(dump);
  assert_int_equal(eng__state_pull_run(other, "20990101-000000-0000", err, sizeof err), 1);
  assert_int_equal(eng__state_pull_run(other, "../x", err, sizeof err), 1);

  /* the journals of every run, for `engine runs` */
  char *jd = eng__state_pull_journals(other, err, sizeof err);
  assert_non_null(jd);
  p = eng__asprintf("%s/runs/" RUN_ID "/journal", jd);
  assert_true(exists(p));
  free(p);
  p = eng__asprintf("%s/runs/" RUN_ID "/audit.jsonl", jd);
  assert_false(exists(p));
  free(p);
  eng__rm_tree(jd);
  free(jd);

  /* the rest of the journal line, pushed from the first machine */
  p = run_file(st, RUN_ID, "journal");
  FILE *f = fopen(p, "a");
  fputs("nd\",\"step\":\"a\"}\n", f);
  fclose(f);
  free(p);
  assert_int_equal(eng__state_push_run(st, RUN_ID, err, sizeof err), 0);
  assert_int_equal(eng__state_pull_run(other, RUN_ID, err, sizeof err), 0);
  p = run_file(other, RUN_ID, "journal");
  t = file_text(p);
  assert_string_equal(t, "{\"event\":\"step.start\",\"step\":\"a\"}\n"
                         "{\"event\":\"step.end\",\"step\":\"a\"}\n");
  free(t);
  free(p);
  eng__state_close(other);
  eng__state_close(st);
}

static bool frozen_flag;
static bool is_frozen(void *ud) { return *(bool *)ud; }

/* Wait (up to 10 s) for KEY to hold `want` in the store. */
static bool store_has(eng__state *st, const char *key, const char *want) {
  for (int i = 0; i < 200; i++) {
    int rc;
    char *t = get_text(st, key, &rc, NULL);
    bool same = t && !strcmp(t, want);
    free(t);
    if (same) return true;
    usleep(50000);
  }
  return false;
}

/* The background writer: each kick returns at once and the store catches
 * up; stop writes the rest. Once the run lost its lock (frozen), nothing
 * more is written and stop says so. */
static void test_store_sync(void **state) {
  (void)state;
  eng__state *st = open_store("sync", "scratch-a");
  if (!st) skip();
  char err[1024] = "";
  frozen_flag = false;
  eng__state_sync *s = eng__state_sync_start(st, "run-1", is_frozen, &frozen_flag);
  assert_non_null(s);
  char *p = run_file(st, "run-1", "journal");
  put_file(p, "{\"n\":1}\n");
  eng__state_sync_kick(s);
  assert_true(store_has(st, "runs/run-1/journal", "{\"n\":1}\n"));
  FILE *f = fopen(p, "a");
  fputs("{\"n\":2}\n", f);
  fclose(f);
  char *rp = run_file(st, "run-1", "report.json");
  put_file(rp, "{}");
  free(rp);
  eng__state_sync_kick(s);
  eng__state_sync_kick(s);
  assert_int_equal(eng__state_sync_stop(s, err, sizeof err), 0);
  int rc;
  char *t = get_text(st, "runs/run-1/journal", &rc, NULL);
  assert_string_equal(t, "{\"n\":1}\n{\"n\":2}\n");
  free(t);
  t = get_text(st, "runs/run-1/report.json", &rc, NULL);
  assert_string_equal(t, "{}");
  free(t);
  free(p);

  /* lost the lock: the store keeps what another run may be writing */
  s = eng__state_sync_start(st, "run-2", is_frozen, &frozen_flag);
  p = run_file(st, "run-2", "journal");
  put_file(p, "{\"n\":1}\n");
  eng__state_sync_kick(s);
  assert_true(store_has(st, "runs/run-2/journal", "{\"n\":1}\n"));
  frozen_flag = true;
  f = fopen(p, "a");
  fputs("{\"n\":2}\n", f);
  fclose(f);
  eng__state_sync_kick(s);
  usleep(300000);
  err[0] = '\0';
  assert_int_equal(eng__state_sync_stop(s, err, sizeof err), -1);
  contains(err, "the run lost its lock; its last records stay in the local directory");
  contains(err, "runs/run-2");
  t = get_text(st, "runs/run-2/journal", &rc, NULL);
  assert_string_equal(t, "{\"n\":1}\n");
  free(t);
  free(p);
  eng__state_close(st);
}

static int setup(void **state) {
  (void)state;
  return unit_tmp_dir("engine-test-state", tmp, sizeof tmp);
}

static int teardown(void **state) {
  (void)state;
  eng__rm_tree(tmp);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_local_objects),
      cmocka_unit_test(test_local_open),
      cmocka_unit_test(test_local_runs),
      cmocka_unit_test(test_rm_tree),
      cmocka_unit_test(test_store_objects),
      cmocka_unit_test(test_store_checksum),
      cmocka_unit_test(test_store_push_pull),
      cmocka_unit_test(test_store_sync),
  };
  int failed = cmocka_run_group_tests(tests, setup, teardown);
  printf("store state tests run: %d\n", store_tests_ran);
  if (registry_loaded) eng__registry_unload();
  return failed;
}
