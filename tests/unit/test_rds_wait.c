/* test_rds_wait.c - the provider plugin's rds waiter and answer parser,
 * with an injected clock and answers recorded from moto
 * (tests/unit/data/rds, made by record.py there): the polling delays,
 * failure states, the deadline, pages, errors, truncated answers, and the
 * AWS layer's jittered backoff. */
#include "provider_int.h" /* before cmocka.h, whose fail() is a macro */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static char *slurp(const char *name, size_t *len) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", TEST_DATA_DIR, name);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)n + 1);
  assert_non_null(b);
  assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
  b[n] = '\0';
  fclose(f);
  *len = (size_t)n;
  return b;
}

static aws_xml *load(const char *name) {
  size_t n;
  char *b = slurp(name, &n);
  aws_xml *x = aws_xml_parse(b, n);
  free(b);
  assert_non_null(x);
  return x;
}

/* The status a recorded DescribeDBInstances answer gives src-db. */
static char *status_in(const char *file) {
  aws_xml *x = load(file);
  rds_instance *v;
  size_t n = rds_parse_instances(x, &v, NULL);
  assert_int_equal(n, 1);
  char *s = strdup(v[0].status);
  rds_instances_free(v, n);
  aws_xml_free(x);
  return s;
}

static void test_parse_instance(void **state) {
  (void)state;
  aws_xml *x = load("describe-instance.xml");
  rds_instance *v;
  char *marker = (char *)"unset";
  size_t n = rds_parse_instances(x, &v, &marker);
  assert_int_equal(n, 1);
  assert_null(marker);
  assert_string_equal(v[0].id, "src-db");
  assert_string_equal(v[0].status, "available");
  assert_string_equal(v[0].engine, "postgres");
  assert_int_equal(v[0].port, 5432);
  assert_non_null(strstr(v[0].address, "src-db."));
  assert_true(aws_parse_time(v[0].created_at) > 1600000000);
  rds_instances_free(v, n);
  aws_xml_free(x);
  /* the one instance of a restore answer and of a delete answer */
  x = load("restore-to-point-in-time.xml");
  n = rds_parse_instances(x, &v, NULL);
  assert_int_equal(n, 1);
  assert_string_equal(v[0].id, "drill-two");
  rds_instances_free(v, n);
  aws_xml_free(x);
  x = load("delete-instance.xml");
  n = rds_parse_instances(x, &v, NULL);
  assert_int_equal(n, 1);
  assert_string_equal(v[0].status, "deleting");
  rds_instances_free(v, n);
  aws_xml_free(x);
}

static void test_parse_pages(void **state) {
  (void)state;
  aws_xml *x = load("describe-instances-page1.xml");
  rds_instance *v;
  char *marker = NULL;
  size_t n1 = rds_parse_instances(x, &v, &marker);
  assert_int_equal(n1, 20);
  assert_non_null(marker);
  assert_true(strlen(marker) > 10);
  free(marker);
  rds_instances_free(v, n1);
  aws_xml_free(x);
  x = load("describe-instances-page2.xml");
  size_t n2 = rds_parse_instances(x, &v, &marker);
  assert_true(n2 >= 1);
  assert_null(marker);
  rds_instances_free(v, n2);
  aws_xml_free(x);

  x = load("describe-snapshots.xml");
  rds_snapshot *s;
  size_t n = rds_parse_snapshots(x, &s, &marker);
  assert_null(marker);
  assert_int_equal(n, 26); /* 25 manual + the automated one */
  size_t manual = 0, automated = 0;
  for (size_t i = 0; i < n; i++) {
    assert_string_equal(s[i].instance, "src-db");
    assert_true(s[i].created_t > 1600000000);
    assert_int_equal(s[i].storage_gb, 20);
    manual += !strcmp(s[i].type, "manual");
    automated += !strcmp(s[i].type, "automated");
  }
  assert_int_equal(manual, 25);
  assert_int_equal(automated, 1);
  rds_snapshots_free(s, n);
  aws_xml_free(x);

  x = load("create-snapshot.xml");
  n = rds_parse_snapshots(x, &s, NULL);
  assert_int_equal(n, 1);
  assert_string_equal(s[0].id, "snap-00");
  assert_string_equal(s[0].status, "available");
  rds_snapshots_free(s, n);
  aws_xml_free(x);
}

static void test_errors(void **state) {
  (void)state;
  struct { const char *file, *code; } cases[] = {
      {"error-instance-not-found.xml", "DBInstanceNotFound"},
      {"error-snapshot-exists.xml", "DBSnapshotAlreadyExists"},
      {"error-signature.xml", "SignatureDoesNotMatch"}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    size_t n;
    char *b = slurp(cases[i].file, &n);
    char code[128], msg[512];
    assert_int_equal(aws_error_parse(b, n, code, sizeof code, msg, sizeof msg), 1);
    assert_string_equal(code, cases[i].code);
    assert_true(strlen(msg) > 5);
    free(b);
  }
  /* a good answer is no error */
  size_t n;
  char *b = slurp("describe-instance.xml", &n);
  char code[128], msg[512];
  assert_int_equal(aws_error_parse(b, n, code, sizeof code, msg, sizeof msg), 0);
  assert_string_equal(code, "");
  /* every cut of a recorded answer is refused whole, never half-read */
  for (size_t cut = 0; cut < n; cut += 97) {
    aws_xml *x = aws_xml_parse(b, cut);
    assert_null(x);
  }
  free(b);
}

/* A restore that goes creating -> backing-up -> modifying -> available:
 * the delays start at 3 s, grow by half, stop growing at 30 s. */
static void test_wait_sequence(void **state) {
  (void)state;
  char *creating = status_in("status-creating.xml");
  char *backing = status_in("status-backing-up.xml");
  char *modifying = status_in("status-modifying.xml");
  char *available = status_in("describe-instance.xml");
  rds_waiter w;
  int64_t t = 1000000;
  rds_waiter_init(&w, RDS_WAIT_INSTANCE, t, 0, 0);
  const uint64_t want[] = {3000, 4500, 6750, 10125, 15187, 22780, 30000, 30000, 30000};
  const char *seen[] = {creating, creating, creating, backing, backing, backing,
                        modifying, modifying, modifying};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    uint64_t d = 0;
    assert_int_equal(rds_waiter_see(&w, seen[i], t, &d), RDS_AGAIN);
    assert_int_equal(d, want[i]);
    assert_string_equal(w.last, seen[i]);
    t += (int64_t)d;
  }
  uint64_t d = 0;
  assert_int_equal(rds_waiter_see(&w, available, t, &d), RDS_DONE);
  assert_int_equal(w.polls, 10);
  free(creating);
  free(backing);
  free(modifying);
  free(available);
}

static void test_wait_failure_states(void **state) {
  (void)state;
  const char *files[] = {"status-incompatible-restore.xml",
                         "status-incompatible-parameters.xml",
                         "status-failed.xml", "status-deleting.xml"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    char *st = status_in(files[i]);
    rds_waiter w;
    rds_waiter_init(&w, RDS_WAIT_INSTANCE, 0, 0, 0);
    uint64_t d = 0;
    /* one good poll first: the failure stops it at once when it comes */
    assert_int_equal(rds_waiter_see(&w, "creating", 0, &d), RDS_AGAIN);
    assert_int_equal(rds_waiter_see(&w, st, 3000, &d), RDS_FAILED);
    assert_string_equal(w.last, st);
    free(st);
  }
  /* an instance that vanished while being waited for */
  rds_waiter w;
  rds_waiter_init(&w, RDS_WAIT_INSTANCE, 0, 0, 0);
  uint64_t d;
  assert_int_equal(rds_waiter_see(&w, NULL, 0, &d), RDS_FAILED);
  /* snapshots: failed stops, creating goes on */
  rds_waiter_init(&w, RDS_WAIT_SNAPSHOT, 0, 0, 0);
  assert_int_equal(rds_waiter_see(&w, "creating", 0, &d), RDS_AGAIN);
  assert_int_equal(rds_waiter_see(&w, "failed", 10, &d), RDS_FAILED);
  /* waiting for a deletion: deleting goes on, not found is done */
  char *deleting = status_in("status-deleting.xml");
  rds_waiter_init(&w, RDS_WAIT_GONE, 0, 0, 0);
  assert_int_equal(rds_waiter_see(&w, deleting, 0, &d), RDS_AGAIN);
  assert_int_equal(rds_waiter_see(&w, NULL, 3000, &d), RDS_DONE);
  free(deleting);
}

/* A 20 s budget: the last delay is cut to land on the deadline, and the
 * poll at the deadline gives up. */
static void test_wait_deadline(void **state) {
  (void)state;
  rds_waiter w;
  rds_waiter_init(&w, RDS_WAIT_INSTANCE, 500, 20000, 0);
  int64_t t = 500;
  const uint64_t want[] = {3000, 4500, 6750, 5750};
  for (size_t i = 0; i < 4; i++) {
    uint64_t d = 0;
    assert_int_equal(rds_waiter_see(&w, "creating", t, &d), RDS_AGAIN);
    assert_int_equal(d, want[i]);
    t += (int64_t)d;
  }
  assert_int_equal(t, 20500);
  uint64_t d = 0;
  assert_int_equal(rds_waiter_see(&w, "creating", t, &d), RDS_EXPIRED);
  /* available at the deadline is still success */
  rds_waiter_init(&w, RDS_WAIT_INSTANCE, 0, 1000, 0);
  assert_int_equal(rds_waiter_see(&w, "available", 5000, &d), RDS_DONE);
  /* a first delay given by the caller */
  rds_waiter_init(&w, RDS_WAIT_INSTANCE, 0, 0, 100);
  assert_int_equal(rds_waiter_see(&w, "creating", 0, &d), RDS_AGAIN);
  assert_int_equal(d, 100);
}

/* Throttling retries: capped, jittered, never below half the base. */
static void test_backoff(void **state) {
  (void)state;
  assert_true(aws_is_throttle("Throttling"));
  assert_true(aws_is_throttle("RequestLimitExceeded"));
  assert_false(aws_is_throttle("DBInstanceNotFound"));
  assert_false(aws_is_throttle(NULL));
  uint32_t seed = 12345;
  for (int attempt = 0; attempt < 12; attempt++) {
    uint64_t top = 1000;
    for (int i = 0; i < attempt && top < 20000; i++) top *= 2;
    if (top > 20000) top = 20000;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int k = 0; k < 2000; k++) {
      seed = seed * 1103515245u + 12345u;
      uint64_t d = aws_backoff_ms(attempt, 1000, 20000, seed >> 8);
      assert_true(d >= 500 && d <= top);
      if (d < lo) lo = d;
      if (d > hi) hi = d;
    }
    assert_true(hi > lo); /* jittered */
    assert_true(hi > top * 9 / 10); /* reaches the cap of the attempt */
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_instance),
      cmocka_unit_test(test_parse_pages),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_wait_sequence),
      cmocka_unit_test(test_wait_failure_states),
      cmocka_unit_test(test_wait_deadline),
      cmocka_unit_test(test_backoff),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
