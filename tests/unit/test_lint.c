/* Unit tests for core/sql/lint.c, the migration lint: a table of texts and
 * the findings each must give, as "LINE:COL rule" lines (allowed ones as
 * "LINE:COL rule (allowed: REASON)"), under the options of the row; then
 * the state a text leaves for the next (a validated constraint) and the
 * rules' table itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql/lint.h"
#include "unit.h"

#define TO "SET lock_timeout = '1s'; SET statement_timeout = '1min';\n"

typedef struct lrow {
  const char *sql;
  int pg_major;
  eng__lint_txn txn;
  const char *want; /* findings, one per line */
} lrow;

static const lrow rows[] = {
    /* nothing set: the first locking statement gets both timeouts */
    {"CREATE INDEX i ON t (a);", 0, ENG__LINT_TXN_AUTO,
     "1:1 missing-lock-timeout\n1:1 missing-statement-timeout\n"
     "1:1 require-concurrent-index-creation\n"},
    {TO "CREATE INDEX CONCURRENTLY i ON t (a);", 0, ENG__LINT_TXN_AUTO,
     "2:1 concurrently-in-transaction\n"},
    {"CREATE INDEX CONCURRENTLY i ON t (a);", 0, ENG__LINT_TXN_AUTO, ""},
    {"CREATE INDEX CONCURRENTLY i ON t (a);", 0, ENG__LINT_TXN_ALWAYS,
     "1:1 concurrently-in-transaction\n"},
    {TO "SELECT 1;\nCREATE INDEX CONCURRENTLY i ON t (a);", 0, ENG__LINT_TXN_NEVER, ""},
    /* a constant default: a rewrite only before PostgreSQL 11 */
    {TO "ALTER TABLE t ADD COLUMN c int DEFAULT 0;", 0, ENG__LINT_TXN_AUTO, ""},
    {TO "ALTER TABLE t ADD COLUMN c int DEFAULT 0;", 10, ENG__LINT_TXN_AUTO,
     "2:32 adding-field-with-volatile-default\n"},
    {TO "ALTER TABLE t ADD COLUMN c timestamptz DEFAULT now();", 0, ENG__LINT_TXN_AUTO, ""},
    {TO "ALTER TABLE t ADD COLUMN c float DEFAULT random() * 2;", 0,
     ENG__LINT_TXN_AUTO, "2:34 adding-field-with-volatile-default\n"},
    {TO "ALTER TABLE t ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;", 0,
     ENG__LINT_TXN_AUTO, "2:26 adding-serial-column\n"},
    /* created in the same migration: exempt */
    {TO "CREATE TABLE n (a int);\nCREATE INDEX i ON n (a);\n"
        "ALTER TABLE n ALTER COLUMN a TYPE bigint;\nDROP TABLE n;",
     0, ENG__LINT_TXN_AUTO, ""},
    /* a schema-qualified table, a drop of two tables */
    {TO "DROP TABLE s.a, b;", 0, ENG__LINT_TXN_AUTO,
     "2:1 ban-drop-table\n2:1 ban-drop-table\n"},
    /* suppression: allowed, wrong rule, no reason, a comment after a ; */
    {TO "-- lint: allow ban-drop-table gone since v3\nDROP TABLE a;", 0,
     ENG__LINT_TXN_AUTO, "3:1 ban-drop-table (allowed: gone since v3)\n"},
    {TO "-- lint: allow no-such-rule because\nDROP TABLE a;", 0, ENG__LINT_TXN_AUTO,
     "2:1 bad-suppression\n3:1 ban-drop-table\n"},
    {TO "/* a block */ -- lint: allow ban-drop-table\nDROP TABLE a;", 0,
     ENG__LINT_TXN_AUTO, "2:15 bad-suppression\n3:1 ban-drop-table\n"},
    /* a string holding what looks like a comment is no comment */
    {TO "SELECT '-- lint: allow ban-drop-table x';\nDROP TABLE a;", 0,
     ENG__LINT_TXN_AUTO, "3:1 ban-drop-table\n"},
    /* the parser's position of an error */
    {"SELECT 1;\nSELEC 2;", 0, ENG__LINT_TXN_AUTO, "2:1 parse-error\n"},
    {"", 0, ENG__LINT_TXN_AUTO, ""},
    {TO "TRUNCATE a;\nTRUNCATE b CASCADE;", 0, ENG__LINT_TXN_AUTO, "3:1 truncate-cascade\n"},
};

static char *render(const eng__lint *l) {
  eng__buf b = {0};
  for (size_t i = 0; i < l->n; i++) {
    eng__buf_addf(&b, "%d:%d %s", l->v[i].line, l->v[i].col, l->v[i].rule->id);
    if (l->v[i].suppressed) eng__buf_addf(&b, " (allowed: %s)", l->v[i].suppressed);
    eng__buf_adds(&b, "\n");
  }
  return eng__buf_steal(&b);
}

static void test_lint_table(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    eng__lint l = {0};
    eng__lint_opts o = {.pg_major = rows[i].pg_major, .txn = rows[i].txn};
    eng__lint_text(&l, "m.sql", "m", rows[i].sql, &o);
    char *got = render(&l);
    if (strcmp(got, rows[i].want))
      fail_msg("row %zu: %s\nwant:\n%sgot:\n%s", i, rows[i].sql, rows[i].want, got);
    assert_int_equal(l.errors + l.warnings + l.suppressed, l.n);
    free(got);
    eng__lint_free(&l);
  }
}

/* A constraint validated in one migration lets a later SET NOT NULL pass
 * (PostgreSQL 12+), not on 11. */
static void test_validated_carries_over(void **state) {
  (void)state;
  for (int pg = 11; pg <= 12; pg++) {
    eng__lint l = {0};
    eng__lint_opts o = {.pg_major = pg};
    eng__lint_text(&l, "1.sql", "1", TO "ALTER TABLE t VALIDATE CONSTRAINT c;", &o);
    eng__lint_text(&l, "2.sql", "2", TO "ALTER TABLE t ALTER COLUMN a SET NOT NULL;", &o);
    char *got = render(&l);
    assert_string_equal(got, pg == 11 ? "2:1 setting-not-null\n" : "");
    assert_true(pg == 12 || !strcmp(l.v[0].file, "2.sql"));
    free(got);
    eng__lint_free(&l);
  }
}

/* Every rule names its lock, what it blocks and a recipe; ids are unique
 * and the text form carries them. */
static void test_rules_complete(void **state) {
  (void)state;
  size_t n;
  const eng__lint_rule *r = eng__lint_rules(&n);
  assert_true(n >= 20);
  for (size_t i = 0; i < n; i++) {
    assert_true(r[i].id && r[i].lock && r[i].blocks && r[i].fix && *r[i].fix);
    for (size_t k = 0; k < i; k++) assert_string_not_equal(r[i].id, r[k].id);
  }
  eng__lint l = {0};
  eng__lint_text(&l, "dir/m.sql", "m", "VACUUM FULL t;", NULL);
  char *t = eng__lint_finding_text(&l.v[l.n - 1]);
  assert_non_null(strstr(t, "dir/m.sql:1:1: error: [ban-vacuum-full] VACUUM FULL; "
                            "takes ACCESS EXCLUSIVE and a rewrite of the table, "
                            "blocks reads and writes; safe: "));
  free(t);
  eng__lint_free(&l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lint_table),
      cmocka_unit_test(test_validated_carries_over),
      cmocka_unit_test(test_rules_complete),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
