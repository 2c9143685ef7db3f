/* test_redact.c - secrets are masked: registered values and generic shapes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/base.h"

/* Redact `in` with r and compare with `want`. */
static void check(const eng__redactor *r, const char *in, const char *want) {
  char *got = eng__redact(r, in);
  assert_non_null(got);
  assert_string_equal(got, want);
  free(got);
}

static void test_registered_values(void **state) {
  (void)state;
  eng__redactor *r = eng__redactor_create();
  eng__redactor_add(r, "hunter2");
  check(r, "pw is hunter2, again hunter2!", "pw is ***, again ***!");
  check(r, "nothing here", "nothing here");
  check(r, "", "");
  check(r, "hunter2", "***");
  eng__redactor_destroy(r);
}

static void test_short_values_ignored(void **state) {
  (void)state;
  eng__redactor *r = eng__redactor_create();
  eng__redactor_add(r, "ab");
  eng__redactor_add(r, "");
  eng__redactor_add(r, NULL);
  check(r, "abc ab a", "abc ab a");
  eng__redactor_add(r, "abc");
  check(r, "abc ab a", "*** ab a");
  eng__redactor_destroy(r);
}

static void test_longest_first_and_dedupe(void **state) {
  (void)state;
  eng__redactor *r = eng__redactor_create();
  eng__redactor_add(r, "secret");
  eng__redactor_add(r, "mysecretvalue");
  eng__redactor_add(r, "secret"); /* dupe */
  /* The longer one wins where both match; no "my***value" leak. */
  check(r, "x mysecretvalue y secret", "x *** y ***");
  /* Overlapping values: "abcdef" and "defghi" in "abcdefghi". */
  eng__redactor_add(r, "abcdef");
  eng__redactor_add(r, "defghi");
  check(r, "<abcdefghi>", "<***>");
  check(r, "abcdef defghi", "*** ***");
  eng__redactor_destroy(r);
}

static void test_url_password_generic(void **state) {
  (void)state;
  check(NULL, "postgres://app:s3cr3t@db:5432/skymoney",
        "postgres://app:***@db:5432/skymoney");
  check(NULL, "connect to 'postgresql://u:p%40ss@h/db' failed",
        "connect to 'postgresql://u:***@h/db' failed");
  /* password containing '@' unencoded: the last '@' ends it */
  check(NULL, "mysql://root:a@b@host/x", "mysql://root:***@host/x");
  /* no password: untouched */
  check(NULL, "postgres://app@db/x https://example.com/a:b@c",
        "postgres://app@db/x https://example.com/a:b@c");
  check(NULL, "redis://:pw123@cache:6379", "redis://:***@cache:6379");
  check(NULL, "a=postgres://u:x@h b=s3://k:y@bucket",
        "a=postgres://u:***@h b=s3://k:***@bucket");
}

static void test_libpq_password(void **state) {
  (void)state;
  check(NULL, "host=db user=app password=secret dbname=x",
        "host=db user=app password=*** dbname=x");
  check(NULL, "host=db password='se cret \\' x' dbname=x",
        "host=db password=*** dbname=x");
  check(NULL, "password = secret", "password = ***");
  check(NULL, "PGPASSWORD=abc123 pg_dump", "PGPASSWORD=*** pg_dump");
  check(NULL, "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG x",
        "AWS_SECRET_ACCESS_KEY=*** x");
  check(NULL, "AWS_SESSION_TOKEN=FQoG/zz+ y", "AWS_SESSION_TOKEN=*** y");
  check(NULL, "https://h/x?user=a&password=b&sslmode=require",
        "https://h/x?user=a&password=***&sslmode=require");
  /* not a key: part of a longer word, or no value */
  check(NULL, "passwords=3 the password is required",
        "passwords=3 the password is required");
}

static void test_slack(void **state) {
  (void)state;
  check(NULL, "post to https://hooks.slack.com/services/T000/B000/XXXX now",
        "post to https://hooks.slack.com/services/*** now");
  check(NULL, "token xoxb-1234567890-abcdef ok", "token *** ok");
}

static void test_add_url_registers_password(void **state) {
  (void)state;
  eng__redactor *r = eng__redactor_create();
  eng__redactor_add(r, "postgres://app:p%40ss%21word@db/x");
  /* The bare password (decoded and encoded) is now masked anywhere. */
  check(r, "error: password p@ss!word rejected",
        "error: password *** rejected");
  check(r, "raw p%40ss%21word here", "raw *** here");
  /* A connection URL keeps what it names: only the password goes. */
  check(r, "url postgres://app:p%40ss%21word@db/x", "url postgres://app:***@db/x");
  eng__redactor_add(r, "postgresql://ops@db.internal:5432/ledger?sslmode=require");
  check(r, "to postgresql://ops@db.internal:5432/ledger?sslmode=require",
        "to postgresql://ops@db.internal:5432/ledger?sslmode=require");
  /* a secret that is not a connection URL stays whole */
  eng__redactor_add(r, "https://hooks.example.com/h/T0K3N");
  check(r, "post https://hooks.example.com/h/T0K3N", "post ***");
  eng__redactor_add(r, "host=h password='a b c' user=u");
  check(r, "saw a b c", "saw ***");
  eng__redactor_destroy(r);
}

static void test_json(void **state) {
  (void)state;
  eng__redactor *r = eng__redactor_create();
  eng__redactor_add(r, "tops3cret");
  json_t *v = json_pack(
      "{s:s, s:[s, i, {s:s}], s:s, s:n, s:b}", "tops3cret", "a tops3cret b",
      "list", "postgres://u:pw@h/d", 7, "inner", "tops3cret", "plain", "ok",
      "nul", "t", 1);
  assert_non_null(v);
  eng__redact_json(r, v);
  char *txt = json_dumps(v, JSON_SORT_KEYS | JSON_COMPACT);
  assert_string_equal(
      txt, "{\"list\":[\"postgres://u:***@h/d\",7,{\"inner\":\"***\"}],"
           "\"nul\":null,\"plain\":\"ok\",\"t\":true,\"tops3cret\":\"a *** b\"}");
  free(txt);
  json_decref(v);
  eng__redact_json(r, NULL);
  eng__redactor_destroy(r);
}

static void test_null_input(void **state) {
  (void)state;
  char *s = eng__redact(NULL, NULL);
  assert_string_equal(s, "");
  free(s);
  eng__redactor_destroy(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registered_values),
      cmocka_unit_test(test_short_values_ignored),
      cmocka_unit_test(test_longest_first_and_dedupe),
      cmocka_unit_test(test_url_password_generic),
      cmocka_unit_test(test_libpq_password),
      cmocka_unit_test(test_slack),
      cmocka_unit_test(test_add_url_registers_password),
      cmocka_unit_test(test_json),
      cmocka_unit_test(test_null_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
