/*
 * prisma_rehearse.c - prisma.rehearse: deploy's sequence (advisory lock,
 * _prisma_migrations rows, pending migrations in Prisma's order) on a
 * temporary copy of the database, each statement observed.
 *
 * Only on a database this run created (a restore, a copy from a
 * template): anything else is refused before any side effect.
 *
 * Transaction mode as Prisma's: a migration of several statements runs as
 * one transaction (BEGIN, the statements one at a time, COMMIT); a single
 * statement that cannot run in a transaction (CREATE INDEX CONCURRENTLY)
 * runs alone. Inside a transaction each statement is observed from its own
 * session before the next one: pg_class.relfilenode (a rewrite), the
 * session's granted pg_locks (the strongest new mode per relation) and
 * pg_stat_xact_user_tables (full scans, rows written); a lock is held until
 * COMMIT, so what it blocks lasts from its statement's start to COMMIT's
 * end. A statement outside a transaction is observed from a second
 * session polling pg_locks and pg_stat_progress_create_index every
 * RH_POLL_MS (each poll its own transaction).
 */
#include "prisma_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RH_POLL_MS 50
#define RH_SQL_SHOWN 160 /* bytes of a statement quoted in the evidence */

/* Lock modes by strength, as pg_locks names them, the name SQL uses, and
 * what each blocks of other sessions' plain reads and writes. */
static const struct {
  const char *pg, *sql, *blocks;
} rh_modes[] = {
    {"", "", "nothing"},
    {"AccessShareLock", "ACCESS SHARE", "nothing"},
    {"RowShareLock", "ROW SHARE", "nothing"},
    {"RowExclusiveLock", "ROW EXCLUSIVE", "nothing"},
    {"ShareUpdateExclusiveLock", "SHARE UPDATE EXCLUSIVE", "nothing"},
    {"ShareLock", "SHARE", "writes"},
    {"ShareRowExclusiveLock", "SHARE ROW EXCLUSIVE", "writes"},
    {"ExclusiveLock", "EXCLUSIVE", "writes"},
    {"AccessExclusiveLock", "ACCESS EXCLUSIVE", "reads and writes"},
};
#define RH_BLOCKS_WRITES 5
#define RH_BLOCKS_READS 8

/* One row per relation of the user's schemas: oid, name, relfilenode,
 * kind, estimated rows, this session's granted modes, full scans and rows
 * written in this transaction, and the session's pid. */
static const char rh_snap_sql[] =
    "SELECT c.oid::text, n.nspname || '.' || c.relname, c.relfilenode::text, "
    "c.relkind::text, c.reltuples::bigint::text, coalesce(l.modes, ''), "
    "coalesce(s.seq_scan, 0)::text, "
    "coalesce(s.n_tup_ins + s.n_tup_upd + s.n_tup_del, 0)::text, "
    "pg_backend_pid()::text "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN (SELECT relation, string_agg(mode, ',') AS modes FROM pg_locks "
    "WHERE pid = pg_backend_pid() AND locktype = 'relation' AND granted "
    "GROUP BY relation) l ON l.relation = c.oid "
    "LEFT JOIN pg_stat_xact_user_tables s ON s.relid = c.oid "
    "WHERE c.relkind IN ('r', 'p', 'm', 'i') "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%' AND c.relname <> '" PRISMA_TABLE "'";

static const char rh_poll_sql[] =
    "SELECT l.relation::text, l.mode, coalesce((SELECT p.phase FROM "
    "pg_stat_progress_create_index p WHERE p.pid = $1::int), '') "
    "FROM pg_locks l WHERE l.pid = $1::int AND l.locktype = 'relation' "
    "AND l.granted";

typedef struct rh {
  prisma_deploy_op *d;
  int64_t max_write_ms, max_read_ms, max_stmt_ms; /* 0: no limit */
  int fail; /* on_exceed: fail (else warn) */
  char *record;
  long long prod_rows;
  char *digest;
  json_t *lint;
  /* the migration being applied */
  json_t *cls;
  const json_t *stmts;
  size_t i, mig_first; /* statement; its migration's first evidence entry */
  int txn;
  json_t *before, *after; /* oid -> [name, relfilenode, kind, rows, modes,
                             scans, written] */
  char pid[16];
  int64_t t0, epoch0;
  /* the observer session */
  pg_sess *obs;
  int observing, polling;
  json_t *seen; /* oid -> strongest rank seen by the observer */
  json_t *phases;
  /* results */
  json_t *evidence, *exceeded;
  long long copy_rows;
  char *copy_rel;
  char *scale;
  const char *verdict;
  char record_err[256]; /* why the record could not be written, or "" */
} rh;

static void rh_free(void *ext) {
  rh *r = ext;
  if (!r) return;
  free(r->record);
  free(r->digest);
  json_decref(r->lint);
  json_decref(r->cls);
  json_decref(r->before);
  json_decref(r->after);
  json_decref(r->seen);
  json_decref(r->phases);
  json_decref(r->evidence);
  json_decref(r->exceeded);
  free(r->copy_rel);
  free(r->scale);
  free(r);
}

static int rh_rank(const char *pg) {
  for (int i = 1; i < (int)(sizeof rh_modes / sizeof *rh_modes); i++)
    if (!strcmp(rh_modes[i].pg, pg)) return i;
  return 0;
}

static int64_t rh_epoch_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int rh_admit(prisma_deploy_op *d) {
  char *target = pg_ident_target(&d->id, d->id.database);
  int owned = pg_host->journal_owned(d->op.e.call, "database", target);
  free(target);
  if (owned) return ENG_OK;
  pg_op_fail(&d->op, ENG_ERR_REFUSED,
             "prisma.rehearse applies migrations only to a temporary copy this "
             "run created (postgres.restore of a backup, or "
             "postgres.create_database from a template): database %s on %s:%s "
             "was not created by this run, so nothing was changed; point url "
             "at the copy",
             d->id.database, d->id.host, d->id.port);
  return ENG_ERR_REFUSED;
}

/* ---- snapshots ------------------------------------------------------------ */

static int rh_snap_res(pg_sess *s, void *ud, PGresult *res) {
  rh *r = ud;
  (void)s;
  json_t *snap = json_object();
  for (int i = 0; i < PQntuples(res); i++) {
    json_t *row = json_array();
    for (int k = 1; k < 8; k++)
      json_array_append_new(row, json_string(PQgetvalue(res, i, k)));
    json_object_set_new(snap, PQgetvalue(res, i, 0), row);
    snprintf(r->pid, sizeof r->pid, "%s", PQgetvalue(res, i, 8));
  }
  json_decref(r->after);
  r->after = snap;
  return ENG_OK;
}

static const char *rh_col(const json_t *row, size_t k) {
  const char *v = json_string_value(json_array_get(row, k));
  return v ? v : "";
}

/* The strongest mode of a "m1,m2" list that the list `old` does not hold. */
static int rh_new_rank(const char *modes, const char *old) {
  int best = 0;
  char *held = eng_asprintf(",%s,", old);
  char *copy = eng_xstrdup(modes), *save = NULL;
  for (char *m = strtok_r(copy, ",", &save); m; m = strtok_r(NULL, ",", &save)) {
    char *tok = eng_asprintf(",%s,", m);
    int k = rh_rank(m);
    if (k > best && !strstr(held, tok)) best = k;
    free(tok);
  }
  free(copy);
  free(held);
  return best;
}

/* ---- one statement's evidence ---------------------------------------------- */

/* The statement's text on one line, cut to RH_SQL_SHOWN bytes. */
static char *rh_shown(const char *sql, size_t len) {
  eng_strbuf b = {0};
  int space = 0;
  for (size_t i = 0; i < len && b.len < RH_SQL_SHOWN; i++) {
    unsigned char ch = (unsigned char)sql[i];
    if (ch <= ' ') {
      space = b.len > 0;
      continue;
    }
    if (space) eng_strbuf_add(&b, " ", 1);
    space = 0;
    eng_strbuf_add(&b, sql + i, 1);
  }
  if (b.len >= RH_SQL_SHOWN) eng_strbuf_adds(&b, "...");
  char *out = eng_xstrdup(b.data ? b.data : "");
  eng_strbuf_free(&b);
  return out;
}

static void rh_note_rows(rh *r, const char *rel, const char *rows) {
  long long n = atoll(rows);
  if (n <= r->copy_rows) return;
  r->copy_rows = n;
  free(r->copy_rel);
  r->copy_rel = eng_xstrdup(rel);
}

/* Locks, rewrites, scans and rows of the statement, from the snapshots
 * before and after it (and the observer's ranks outside a transaction). */
static json_t *rh_diff(rh *r, int *strongest) {
  json_t *locks = json_array(), *rewrites = json_array(), *scans = json_array();
  long long written = 0;
  const char *oid;
  json_t *b;
  *strongest = 0;
  json_object_foreach(r->before, oid, b) {
    const json_t *a = json_object_get(r->after, oid);
    const char *rel = rh_col(b, 0);
    int rank = r->txn ? rh_new_rank(rh_col(a, 4), rh_col(b, 4))
                      : (int)json_integer_value(json_object_get(r->seen, oid));
    if (rank > 0) {
      json_array_append_new(locks, json_pack("{s:s, s:s, s:s}", "relation", rel,
                                             "mode", rh_modes[rank].sql,
                                             "blocks", rh_modes[rank].blocks));
      rh_note_rows(r, rel, rh_col(b, 3));
    }
    if (rank > *strongest) *strongest = rank;
    if (!a) continue; /* dropped */
    int table = strcmp(rh_col(b, 2), "i") != 0;
    if (table && strcmp(rh_col(a, 1), rh_col(b, 1)))
      json_array_append_new(rewrites, json_string(rel));
    if (table && atoll(rh_col(a, 5)) > atoll(rh_col(b, 5)))
      json_array_append_new(scans, json_string(rel));
    written += atoll(rh_col(a, 6)) - atoll(rh_col(b, 6));
  }
  return json_pack("{s:o, s:o, s:o, s:I}", "locks", locks, "rewrites", rewrites,
                   "full_scans", scans, "rows_written", (json_int_t)written);
}

static void rh_record(rh *r, int64_t dur) {
  const json_t *st = json_array_get(r->stmts, r->i);
  size_t off = (size_t)json_integer_value(json_object_get(st, "offset"));
  size_t len = (size_t)json_integer_value(json_object_get(st, "length"));
  int strongest;
  json_t *ev = rh_diff(r, &strongest);
  char *shown = rh_shown(r->d->cur->sql + off, len);
  json_object_set_new(ev, "migration", json_string(r->d->cur->name));
  json_object_set_new(ev, "statement", json_integer((json_int_t)r->i + 1));
  json_object_set_new(ev, "sql", json_string(shown));
  json_object_set_new(ev, "started_at_ms", json_integer(r->epoch0));
  json_object_set_new(ev, "duration_ms", json_integer(dur));
  json_object_set_new(ev, "transaction", json_boolean(r->txn));
  json_object_set_new(ev, "lock", json_string(rh_modes[strongest].sql));
  json_object_set_new(ev, "blocks", json_string(rh_modes[strongest].blocks));
  json_object_set_new(ev, "rank", json_integer(strongest));
  /* outside a transaction the lock ends with the statement; inside, at
   * COMMIT (set then) */
  json_object_set_new(ev, "blocked_ms", json_integer(strongest >= RH_BLOCKS_WRITES ? dur : 0));
  if (!r->txn) json_object_set_new(ev, "phases", json_incref(r->phases));
  pg_host->log(r->d->op.e.call, ENG_LOG_INFO,
               "%s #%zu: %lld ms, %s%s%s, %zu rewrite(s): %s", r->d->cur->name,
               r->i + 1, (long long)dur, strongest ? rh_modes[strongest].sql : "no lock",
               strongest ? " blocking " : "", strongest ? rh_modes[strongest].blocks : "",
               json_array_size(json_object_get(ev, "rewrites")), shown);
  free(shown);
  json_array_append_new(r->evidence, ev);
  pg_host->output(r->d->op.e.call, "statements", json_incref(r->evidence));
}

/* ---- the observer (statements outside a transaction) ------------------------ */

static void rh_poll(rh *r);

static int rh_poll_res(pg_sess *s, void *ud, PGresult *res) {
  rh *r = ud;
  (void)s;
  for (int i = 0; i < PQntuples(res); i++) {
    const char *oid = PQgetvalue(res, i, 0);
    int k = rh_rank(PQgetvalue(res, i, 1));
    if (k > json_integer_value(json_object_get(r->seen, oid)))
      json_object_set_new(r->seen, oid, json_integer(k));
    const char *phase = PQgetvalue(res, i, 2);
    size_t n = json_array_size(r->phases);
    if (*phase && (!n || strcmp(json_string_value(json_array_get(r->phases, n - 1)), phase)))
      json_array_append_new(r->phases, json_string(phase));
  }
  return ENG_OK;
}

static void rh_poll_timer(pg_op *op) {
  rh *r = ((prisma_deploy_op *)op)->ext;
  if (r->observing) rh_poll(r);
}

static void rh_poll_end(pg_sess *s, void *ud, int rc) {
  rh *r = ud;
  r->polling = 0;
  if (rc != ENG_OK) {
    pg_host->log(r->d->op.e.call, ENG_LOG_WARN,
                 "the observer session failed (%s): the locks of this "
                 "statement are not known",
                 pg_sess_errmsg(s));
    return;
  }
  if (r->observing) pg_op_timer(&r->d->op, RH_POLL_MS, rh_poll_timer);
}

static void rh_poll(rh *r) {
  if (r->polling) return;
  r->polling = 1;
  const char *p[1] = {r->pid};
  pg_sess_add(r->obs, "observe the migration's locks", rh_poll_sql, 1, p,
              rh_poll_res, r);
  pg_sess_run(r->obs, rh_poll_end, r);
}

static void rh_observe(rh *r) {
  json_decref(r->seen);
  json_decref(r->phases);
  r->seen = json_object();
  r->phases = json_array();
  r->observing = 1;
  if (!r->obs) r->obs = pg_sess_open(&r->d->op, r->d->url);
  rh_poll(r);
}

/* ---- the sequence of one migration ------------------------------------------ */

static void rh_run_stmt(prisma_deploy_op *d);

/* After COMMIT: a lock a statement took was held until now. */
static void rh_commit_end(pg_sess *s, void *ud, int rc) {
  prisma_deploy_op *d = ud;
  rh *r = d->ext;
  if (rc == ENG_OK) {
    int64_t end = rh_epoch_ms();
    for (size_t k = r->mig_first; k < json_array_size(r->evidence); k++) {
      json_t *ev = json_array_get(r->evidence, k);
      if (json_integer_value(json_object_get(ev, "rank")) >= RH_BLOCKS_WRITES)
        json_object_set_new(ev, "blocked_ms",
                            json_integer(end - json_integer_value(json_object_get(ev, "started_at_ms"))));
    }
    pg_host->output(d->op.e.call, "statements", json_incref(r->evidence));
  }
  prisma_script_end(s, d, rc);
}

static void rh_after_end(pg_sess *s, void *ud, int rc) {
  prisma_deploy_op *d = ud;
  rh *r = d->ext;
  if (rc != ENG_OK) {
    prisma_script_end(s, d, rc);
    return;
  }
  rh_record(r, pg_now_ms() - r->t0);
  json_decref(r->before);
  r->before = json_incref(r->after); /* the next statement's "before" */
  if (++r->i < json_array_size(r->stmts)) {
    rh_run_stmt(d);
    return;
  }
  if (!r->txn) {
    prisma_script_end(s, d, ENG_OK);
    return;
  }
  pg_sess_add(s, "commit the migration", "COMMIT", 0, NULL, NULL, NULL);
  pg_sess_run(s, rh_commit_end, d);
}

static void rh_stmt_end(pg_sess *s, void *ud, int rc) {
  prisma_deploy_op *d = ud;
  rh *r = d->ext;
  r->observing = 0;
  if (rc != ENG_OK) {
    prisma_script_end(s, d, rc);
    return;
  }
  pg_sess_add(s, "observe the statement", rh_snap_sql, 0, NULL, rh_snap_res, r);
  pg_sess_run(s, rh_after_end, d);
}

static void rh_run_stmt(prisma_deploy_op *d) {
  rh *r = d->ext;
  const json_t *st = json_array_get(r->stmts, r->i);
  size_t off = (size_t)json_integer_value(json_object_get(st, "offset"));
  size_t len = (size_t)json_integer_value(json_object_get(st, "length"));
  char *sql = eng_xmalloc(len + 1);
  memcpy(sql, d->cur->sql + off, len);
  sql[len] = '\0';
  char *label = eng_asprintf("migration %s, statement %zu", d->cur->name, r->i + 1);
  pg_sess_add_script(d->s, label, sql, NULL, NULL);
  free(label);
  free(sql);
  if (!r->txn) rh_observe(r);
  r->t0 = pg_now_ms();
  r->epoch0 = rh_epoch_ms();
  pg_sess_run(d->s, rh_stmt_end, d);
}

static void rh_first_end(pg_sess *s, void *ud, int rc) {
  prisma_deploy_op *d = ud;
  rh *r = d->ext;
  if (rc != ENG_OK) {
    prisma_script_end(s, d, rc);
    return;
  }
  json_decref(r->before);
  r->before = json_incref(r->after);
  rh_run_stmt(d);
}

/* run_script: the current migration, statement by statement. */
static void rh_script(prisma_deploy_op *d) {
  rh *r = d->ext;
  json_decref(r->cls);
  r->cls = pg_host->sql_classify(d->cur->sql);
  r->stmts = json_object_get(r->cls, "statements");
  size_t n = json_array_size(r->stmts);
  if (n == 0) { /* text the parser refuses: sent whole, as Prisma does */
    pg_host->log(d->op.e.call, ENG_LOG_WARN,
                 "%s: not observed statement by statement (%s)", d->cur->name,
                 json_string_value(json_object_get(r->cls, "unverified"))
                     ? json_string_value(json_object_get(r->cls, "unverified"))
                     : "no statements");
    pg_sess_add_script(d->s, d->cur->name, d->cur->sql, NULL, NULL);
    pg_sess_run(d->s, prisma_script_end, d);
    return;
  }
  r->i = 0;
  r->mig_first = json_array_size(r->evidence);
  r->txn = !(n == 1 && json_is_true(json_object_get(json_array_get(r->stmts, 0),
                                                    "no_transaction")));
  if (r->txn) pg_sess_add(d->s, "begin the migration", "BEGIN", 0, NULL, NULL, NULL);
  pg_sess_add(d->s, "observe the statement", rh_snap_sql, 0, NULL, rh_snap_res, r);
  pg_sess_run(d->s, rh_first_end, d);
}

/* ---- the verdict ------------------------------------------------------------ */

static void rh_exceed(rh *r, const json_t *ev, const char *what, int64_t got,
                      int64_t max, const char *param) {
  char *m = eng_asprintf("%s #%lld (%s) %s for %lld ms, over %s (%lld ms)",
                         json_string_value(json_object_get(ev, "migration")),
                         (long long)json_integer_value(json_object_get(ev, "statement")),
                         json_string_value(json_object_get(ev, "sql")), what,
                         (long long)got, param, (long long)max);
  json_array_append_new(r->exceeded, json_string(m));
  free(m);
}

static void rh_thresholds(rh *r) {
  size_t i;
  const json_t *ev;
  json_array_foreach(r->evidence, i, ev) {
    int rank = (int)json_integer_value(json_object_get(ev, "rank"));
    int64_t blocked = json_integer_value(json_object_get(ev, "blocked_ms"));
    int64_t dur = json_integer_value(json_object_get(ev, "duration_ms"));
    char what[96];
    snprintf(what, sizeof what, "holds %s, blocking reads and writes",
             rh_modes[rank].sql);
    if (r->max_read_ms && rank >= RH_BLOCKS_READS && blocked > r->max_read_ms)
      rh_exceed(r, ev, what, blocked, r->max_read_ms, "max_read_block");
    snprintf(what, sizeof what, "holds %s, blocking writes", rh_modes[rank].sql);
    if (r->max_write_ms && rank >= RH_BLOCKS_WRITES && blocked > r->max_write_ms)
      rh_exceed(r, ev, what, blocked, r->max_write_ms, "max_write_block");
    if (r->max_stmt_ms && dur > r->max_stmt_ms)
      rh_exceed(r, ev, "runs", dur, r->max_stmt_ms, "max_statement");
  }
}

/* What the figures are worth: the copy's size, and production's. */
static void rh_scale(rh *r) {
  eng_strbuf b = {0};
  if (r->copy_rel && r->copy_rows > 0)
    eng_strbuf_addf(&b, "measured on a copy where %s has %lld rows (estimate)",
                    r->copy_rel, r->copy_rows);
  else
    eng_strbuf_adds(&b, "measured on a copy whose locked tables have no row "
                        "estimate (never analyzed) or no rows");
  if (r->prod_rows > 0 && r->copy_rows > 0)
    eng_strbuf_addf(&b, "; production has %lld: durations of rewrites, scans "
                        "and index builds grow about %.1f times",
                    r->prod_rows, (double)r->prod_rows / (double)r->copy_rows);
  else if (r->prod_rows > 0)
    eng_strbuf_addf(&b, "; production has %lld rows", r->prod_rows);
  r->scale = eng_xstrdup(b.data);
  eng_strbuf_free(&b);
}

static void rh_write_record(void *ud) {
  prisma_deploy_op *d = ud;
  rh *r = d->ext;
  json_t *rec = json_pack("{s:s, s:s, s:s, s:I, s:O, s:O, s:s}", "digest",
                          r->digest ? r->digest : "", "verdict", r->verdict,
                          "summary", r->scale, "finished_at_ms",
                          (json_int_t)rh_epoch_ms(), "applied", d->applied_now,
                          "exceeded", r->exceeded, "migrations", d->dir.path);
  char *tmp = eng_asprintf("%s.tmp", r->record);
  if (json_dump_file(rec, tmp, JSON_INDENT(2)) != 0 || rename(tmp, r->record) != 0)
    snprintf(r->record_err, sizeof r->record_err, "%s", strerror(errno));
  free(tmp);
  json_decref(rec);
}

static void rh_done(void *ud) {
  prisma_deploy_op *d = ud;
  rh *r = d->ext;
  eng_call *call = d->op.e.call;
  if (r->record_err[0]) {
    pg_op_fail(&d->op, ENG_ERR_IO,
               "cannot write the rehearsal record %s: %s; check the folder "
               "exists and is writable",
               r->record, r->record_err);
    return;
  }
  char *msg = prisma_json_join(r->exceeded);
  if (!strcmp(r->verdict, "fail")) {
    pg_op_fail(&d->op, ENG_ERR_FAILED,
               "the rehearsal crossed its thresholds: %s (%s); make these "
               "statements safe (prisma.lint names the safe recipe) or raise "
               "the thresholds",
               msg, r->scale);
  } else {
    if (!strcmp(r->verdict, "warn")) pg_host->warn(call, msg);
    pg_host->log(call, ENG_LOG_INFO, "rehearsal verdict: %s; %s", r->verdict,
                 r->scale);
    pg_op_finish(&d->op, ENG_OK);
  }
  free(msg);
}

/* task_end: every pending migration applied and observed. */
static void rh_end(prisma_deploy_op *d) {
  rh *r = d->ext;
  eng_call *call = d->op.e.call;
  rh_thresholds(r);
  rh_scale(r);
  r->verdict = json_array_size(r->exceeded) ? (r->fail ? "fail" : "warn") : "pass";
  pg_host->output(call, "statements", json_incref(r->evidence));
  pg_host->output(call, "exceeded", json_incref(r->exceeded));
  pg_host->output(call, "verdict", json_string(r->verdict));
  pg_host->output(call, "scale", json_string(r->scale));
  pg_host->output(call, "digest", json_string(r->digest ? r->digest : ""));
  if (!r->record || pg_op_work(&d->op, rh_write_record, rh_done, d) != ENG_OK)
    rh_done(d);
}

/* ---- start ------------------------------------------------------------------ */

static void rh_lint_work(void *ud) {
  prisma_deploy_op *d = ud;
  rh *r = d->ext;
  r->lint = pg_host->migrations_lint(d->dir.path, NULL);
}

static void rh_lint_done(void *ud) {
  prisma_deploy_op *d = ud;
  rh *r = d->ext;
  const char *err = json_string_value(json_object_get(r->lint, "error"));
  if (err) {
    pg_op_fail(&d->op, ENG_ERR_INVALID, "%s", err);
    return;
  }
  r->digest = eng_xstrdup(json_string_value(json_object_get(r->lint, "digest")));
  prisma_deploy_begin(d);
}

int prisma_act_rehearse(eng_call *call, const json_t *params) {
  if (!prisma_has_lint(call)) return ENG_ERR_INVALID;
  int rc;
  prisma_deploy_op *d = prisma_deploy_new(call, params, PRISMA_REHEARSE, &rc);
  if (!d) return rc;
  rh *r = eng_xcalloc(1, sizeof *r);
  r->d = d;
  r->max_write_ms = pg_pint(params, "max_write_block", 0);
  r->max_read_ms = pg_pint(params, "max_read_block", 0);
  r->max_stmt_ms = pg_pint(params, "max_statement", 0);
  const char *on = pg_pstr(params, "on_exceed");
  r->fail = !on || !strcmp(on, "fail");
  const char *record = pg_pstr(params, "record");
  r->record = record && *record ? eng_xstrdup(record) : NULL;
  r->prod_rows = pg_pint(params, "production_rows", 0);
  r->evidence = json_array();
  r->exceeded = json_array();
  d->ext = r;
  d->ext_free = rh_free;
  d->run_script = rh_script;
  d->task_end = rh_end;
  d->admit = rh_admit;
  rc = pg_op_work(&d->op, rh_lint_work, rh_lint_done, d);
  if (rc != ENG_OK) pg_op_fail(&d->op, rc, "cannot start reading %s", d->dir.path);
  return ENG_OK;
}
