/*
 * pg_actions_maint.c - postgres.maintenance: VACUUM, ANALYZE or REINDEX
 * of a database, a schema, tables or indexes, one statement at a time
 * outside any transaction block, held to the guards as the SQL it runs
 * (maintenance; VACUUM FULL and REINDEX without CONCURRENTLY disruptive),
 * with the dead tuples and sizes of the tables before and after, and the
 * server's progress views polled from a second session.
 */
#include "pg_int.h"

#include <stdlib.h>
#include <string.h>

typedef struct pg_maint {
  pg_op op;
  char *url;
  pg_sess *s, *poll;
  pg_ident id;
  char op_name[16];
  int analyze, full, concurrently;
  long long lock_ms, stmt_ms;
  json_t *tables_in, *indexes_in; /* as given, or NULL */
  char *schema;
  json_t *targets;    /* quoted names the statements act on */
  json_t *statements; /* the SQL, one statement each */
  json_t *before, *after; /* "table" -> {live, dead, bytes} */
  int64_t t0;
  int backend_pid;
  size_t ran; /* statements done */
  char phase[128];
} pg_maint;

static void pg_maint_destroy(pg_op *op) {
  pg_maint *m = (pg_maint *)op;
  free(m->url);
  free(m->schema);
  json_decref(m->tables_in);
  json_decref(m->indexes_in);
  json_decref(m->targets);
  json_decref(m->statements);
  json_decref(m->before);
  json_decref(m->after);
  free(m);
}

static int pg_maint_full(const json_t *p) {
  const char *op = pg_pstr(p, "operation");
  return op && !strcmp(op, "vacuum") && pg_pbool(p, "full", 0);
}

eng_side_effect pg_maint_classify(const json_t *p) {
  const char *op = pg_pstr(p, "operation");
  if (pg_maint_full(p) ||
      (op && !strcmp(op, "reindex") && !pg_pbool(p, "concurrently", 1)))
    return ENG_SIDE_DISRUPTIVE;
  return ENG_SIDE_MAINTENANCE;
}

void pg_describe_maint(const json_t *p, char *buf, size_t n) {
  const char *op = pg_pstr(p, "operation");
  const char *schema = pg_pstr(p, "schema");
  size_t nt = json_array_size(json_object_get(p, "tables"));
  size_t ni = json_array_size(json_object_get(p, "indexes"));
  char what[80];
  if (ni)
    snprintf(what, sizeof what, "%zu index(es)", ni);
  else if (json_object_get(p, "tables"))
    snprintf(what, sizeof what, "%zu table(s)", nt);
  else if (schema && *schema)
    snprintf(what, sizeof what, "schema %.40s", schema);
  else /* or tables known only at run time: plan cannot tell */
    snprintf(what, sizeof what, "the whole database, or the tables given");
  if (!op) op = "vacuum";
  snprintf(buf, n, "%s%s%s %s%s", op,
           !strcmp(op, "vacuum") && pg_pbool(p, "full", 0) ? " full" : "",
           !strcmp(op, "vacuum") && pg_pbool(p, "analyze", 1) ? " analyze" : "",
           what,
           !strcmp(op, "reindex")
               ? (pg_pbool(p, "concurrently", 1) ? " concurrently"
                                                 : " (locks the tables)")
               : "");
}

/* ---- figures ------------------------------------------------------------ */

#define PG_M_STATS_SQL                                                         \
  "SELECT format('%I.%I', schemaname, relname), n_live_tup, n_dead_tup, "      \
  "pg_total_relation_size(relid) FROM pg_catalog.pg_stat_user_tables "         \
  "WHERE $1::json IS NULL OR format('%I.%I', schemaname, relname) IN "         \
  "(SELECT json_array_elements_text($1::json))"

static int pg_m_stats(pg_sess *s, void *ud, PGresult *res, json_t **into) {
  (void)s;
  (void)ud;
  json_decref(*into);
  *into = json_object();
  for (int r = 0; r < PQntuples(res); r++)
    json_object_set_new(*into, PQgetvalue(res, r, 0),
                        json_pack("{s:o, s:o, s:o}", "live",
                                  pg_value_json(res, r, 1), "dead",
                                  pg_value_json(res, r, 2), "bytes",
                                  pg_value_json(res, r, 3)));
  return ENG_OK;
}
static int pg_m_before(pg_sess *s, void *ud, PGresult *res) {
  return pg_m_stats(s, ud, res, &((pg_maint *)ud)->before);
}
static int pg_m_after(pg_sess *s, void *ud, PGresult *res) {
  return pg_m_stats(s, ud, res, &((pg_maint *)ud)->after);
}

/* The stats query for the target tables (all of them for indexes). */
static void pg_m_add_stats(pg_maint *m, pg_res_fn fn) {
  char *list = m->indexes_in ? NULL : json_dumps(m->targets, JSON_COMPACT);
  const char *p[1] = {list};
  pg_sess_add(m->s, "table statistics", PG_M_STATS_SQL, 1, p, fn, m);
  free(list);
}

static double pg_m_pct(const json_t *t) {
  json_int_t live = json_integer_value(json_object_get(t, "live"));
  json_int_t dead = json_integer_value(json_object_get(t, "dead"));
  return live + dead > 0 ? 100.0 * (double)dead / (double)(live + dead) : 0.0;
}

/* tables output and the totals, from before and after. */
static void pg_m_figures(pg_maint *m) {
  eng_call *call = m->op.e.call;
  json_t *rows = json_array();
  json_int_t db = 0, da = 0, bb = 0, ba = 0;
  const char *name;
  json_t *b;
  json_object_foreach(m->before, name, b) {
    json_t *a = json_object_get(m->after, name);
    json_array_append_new(
        rows, json_pack("{s:s, s:O, s:O, s:f, s:O, s:O, s:O, s:f, s:O}",
                        "table", name, "live_before",
                        json_object_get(b, "live"), "dead_before",
                        json_object_get(b, "dead"), "dead_pct_before",
                        pg_m_pct(b), "bytes_before",
                        json_object_get(b, "bytes"), "live_after",
                        a ? json_object_get(a, "live") : json_null(),
                        "dead_after",
                        a ? json_object_get(a, "dead") : json_null(),
                        "dead_pct_after", a ? pg_m_pct(a) : 0.0,
                        "bytes_after",
                        a ? json_object_get(a, "bytes") : json_null()));
    db += json_integer_value(json_object_get(b, "dead"));
    bb += json_integer_value(json_object_get(b, "bytes"));
    da += json_integer_value(json_object_get(a, "dead"));
    ba += json_integer_value(json_object_get(a, "bytes"));
  }
  double secs = (double)(pg_now_ms() - m->t0) / 1000.0;
  pg_host->output(call, "tables", rows);
  pg_host->output(call, "statements", json_incref(m->statements));
  pg_host->output(call, "dead_tuples_before", json_integer(db));
  pg_host->output(call, "dead_tuples_after", json_integer(da));
  pg_host->output(call, "bytes_before", json_integer(bb));
  pg_host->output(call, "bytes_after", json_integer(ba));
  pg_host->output(call, "duration_ms", json_integer(pg_now_ms() - m->t0));
  pg_host->output(call, "summary",
                  json_sprintf("%zu statement(s) in %.1f s on %s: dead tuples "
                               "%lld -> %lld, %.1f MB -> %.1f MB in %zu "
                               "table(s)",
                               json_array_size(m->statements), secs,
                               m->id.database, (long long)db, (long long)da,
                               (double)bb / 1e6, (double)ba / 1e6,
                               json_array_size(rows)));
}

/* ---- progress from a second session ------------------------------------- */

static void pg_m_poll(pg_op *op);

static int pg_m_progress(pg_sess *s, void *ud, PGresult *res) {
  pg_maint *m = ud;
  (void)s;
  if (PQntuples(res) != 1) return ENG_OK;
  long long total = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
  long long done = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
  char phase[128];
  snprintf(phase, sizeof phase, "%s: %s", PQgetvalue(res, 0, 0),
           PQgetvalue(res, 0, 1));
  if (strcmp(phase, m->phase)) {
    snprintf(m->phase, sizeof m->phase, "%s", phase);
    pg_host->log(m->op.e.call, ENG_LOG_INFO, "%s (%lld of %lld blocks)", phase,
                 done, total);
  }
  /* the console shows bytes: the blocks times the block size */
  if (total > 0)
    pg_host->progress(m->op.e.call, strtoll(PQgetvalue(res, 0, 5), NULL, 10),
                      strtoll(PQgetvalue(res, 0, 4), NULL, 10));
  return ENG_OK;
}

static void pg_m_poll_end(pg_sess *s, void *ud, int rc) {
  pg_maint *m = ud;
  (void)s;
  if (rc != ENG_OK) return; /* progress is a courtesy: stop polling */
  pg_op_timer(&m->op, 1000, pg_m_poll);
}

static void pg_m_poll(pg_op *op) {
  pg_maint *m = (pg_maint *)op;
  char pid[16];
  const char *p[1] = {pid};
  snprintf(pid, sizeof pid, "%d", m->backend_pid);
  if (!m->poll) m->poll = pg_sess_open(op, m->url);
  pg_sess_add(m->poll, "progress",
              "SELECT w, phase, t, d, t * b, d * b FROM (SELECT "
              "coalesce(relid::regclass::text, '') AS w, phase, "
              "heap_blks_total AS t, heap_blks_scanned AS d FROM "
              "pg_catalog.pg_stat_progress_vacuum WHERE pid = $1 UNION ALL "
              "SELECT coalesce(index_relid::regclass::text, "
              "relid::regclass::text, ''), phase, blocks_total, blocks_done "
              "FROM pg_catalog.pg_stat_progress_create_index WHERE pid = $1 "
              "UNION ALL SELECT coalesce(relid::regclass::text, ''), phase, "
              "sample_blks_total, sample_blks_scanned FROM "
              "pg_catalog.pg_stat_progress_analyze WHERE pid = $1) p, "
              "(SELECT current_setting('block_size')::bigint AS b) k LIMIT 1",
              1, p, pg_m_progress, m);
  pg_sess_run(m->poll, pg_m_poll_end, m);
}

/* ---- the statements ----------------------------------------------------- */

/* One statement for target t (NULL: the whole database or schema). */
static char *pg_m_stmt(pg_maint *m, const char *t, const char *kind) {
  int conc = m->concurrently;
  if (!strcmp(m->op_name, "analyze"))
    return eng_asprintf("ANALYZE%s%s", t ? " " : "", t ? t : "");
  if (!strcmp(m->op_name, "reindex"))
    return eng_asprintf("REINDEX %s%s %s", kind, conc ? " CONCURRENTLY" : "", t);
  const char *opts = m->full && m->analyze ? " (FULL, ANALYZE)"
                     : m->full             ? " (FULL)"
                     : m->analyze          ? " (ANALYZE)"
                                           : "";
  return eng_asprintf("VACUUM%s%s%s", opts, t ? " " : "", t ? t : "");
}

static void pg_m_add(pg_maint *m, const char *t, const char *kind) {
  char *sql = pg_m_stmt(m, t, kind);
  json_array_append_new(m->statements, json_string(sql));
  free(sql);
}

static void pg_m_build(pg_maint *m) {
  PGconn *c = pg_sess_conn(m->s);
  m->statements = json_array();
  int reindex = !strcmp(m->op_name, "reindex");
  size_t i;
  json_t *t;
  if (m->tables_in || m->indexes_in || (m->schema && !reindex)) {
    json_array_foreach(m->targets, i, t)
      pg_m_add(m, json_string_value(t), m->indexes_in ? "INDEX" : "TABLE");
    return;
  }
  if (!reindex) { /* the whole database */
    pg_m_add(m, NULL, NULL);
    return;
  }
  const char *name = m->schema ? m->schema : m->id.database;
  char *q = PQescapeIdentifier(c, name, strlen(name));
  pg_m_add(m, q ? q : name, m->schema ? "SCHEMA" : "DATABASE");
  if (q) PQfreemem(q);
}

/* ---- the flow ----------------------------------------------------------- */

static void pg_m_done(pg_sess *s, void *ud, int rc) {
  pg_maint *m = ud;
  if (rc != ENG_OK) {
    if (rc == ENG_ERR_CANCELLED || rc == ENG_ERR_REFUSED) {
      pg_op_finish(&m->op, rc);
      return;
    }
    int lock = !strcmp(pg_sess_sqlstate(s), "55P03");
    pg_op_fail(&m->op, rc, "%s on %s failed: %s; %s", m->op_name,
               pg_sess_display(s), pg_sess_errmsg(s),
               lock ? "a lock was not granted within lock_timeout: run it "
                      "when the tables are less busy, or raise lock_timeout"
                    : pg_conn_hint(rc));
    return;
  }
  pg_m_figures(m);
  pg_op_finish(&m->op, ENG_OK);
}

static int pg_m_ran(pg_sess *s, void *ud, PGresult *res) {
  pg_maint *m = ud;
  (void)s;
  (void)res;
  pg_host->log(m->op.e.call, ENG_LOG_INFO, "done: %s",
               json_string_value(json_array_get(m->statements, m->ran++)));
  return ENG_OK;
}

/* Targets resolved: guard the SQL, then run it with the figures around. */
static void pg_m_resolved(pg_sess *s, void *ud, int rc) {
  pg_maint *m = ud;
  if (rc != ENG_OK) {
    pg_m_done(s, ud, rc);
    return;
  }
  pg_m_build(m);
  eng_strbuf all = {0};
  size_t i;
  json_t *st;
  json_array_foreach(m->statements, i, st)
    eng_strbuf_addf(&all, "%s%s", i ? "; " : "", json_string_value(st));
  int g = all.data ? pg_guard_sql(&m->op, &m->id, all.data, 0) : ENG_OK;
  eng_strbuf_free(&all);
  if (g != ENG_OK) {
    pg_op_finish(&m->op, ENG_ERR_REFUSED);
    return;
  }
  char set[128];
  snprintf(set, sizeof set,
           "SET lock_timeout = %lld; SET statement_timeout = %lld",
           m->lock_ms, m->stmt_ms);
  pg_sess_add_script(s, "timeouts", set, NULL, NULL);
  pg_m_add_stats(m, pg_m_before);
  json_array_foreach(m->statements, i, st)
    pg_sess_add_script(s, json_string_value(st), json_string_value(st),
                       pg_m_ran, m);
  pg_m_add_stats(m, pg_m_after);
  m->backend_pid = PQbackendPID(pg_sess_conn(s));
  m->t0 = pg_now_ms();
  pg_op_timer(&m->op, 300, pg_m_poll);
  pg_sess_run(s, pg_m_done, m);
}

static int pg_m_targets(pg_sess *s, void *ud, PGresult *res) {
  pg_maint *m = ud;
  eng_strbuf missing = {0};
  m->targets = json_array();
  for (int r = 0; r < PQntuples(res); r++) {
    if (PQgetisnull(res, r, 1))
      eng_strbuf_addf(&missing, "%s%s", missing.len ? ", " : "",
                      PQgetvalue(res, r, 0));
    else
      json_array_append_new(m->targets, json_string(PQgetvalue(res, r, 1)));
  }
  if (missing.len) {
    pg_sess_seterr(s, "not found in database %s: %s (give schema.name; "
                      "quote mixed case: '\"User\"')",
                   m->id.database, missing.data);
    eng_strbuf_free(&missing);
    return ENG_ERR_NOTFOUND;
  }
  eng_strbuf_free(&missing);
  return ENG_OK;
}

static void pg_m_ident_end(pg_sess *s, void *ud, int rc) {
  pg_maint *m = ud;
  if (rc != ENG_OK) {
    pg_m_done(s, ud, rc);
    return;
  }
  const json_t *names = m->indexes_in ? m->indexes_in : m->tables_in;
  char *list = names ? json_dumps(names, JSON_COMPACT) : NULL;
  const char *p[2] = {list, m->schema};
  if (names)
    pg_sess_add(s, "find the targets",
                "SELECT t.name, CASE WHEN c.oid IS NOT NULL THEN "
                "format('%I.%I', n.nspname, c.relname) END "
                "FROM json_array_elements_text($1::json) WITH ORDINALITY "
                "AS t(name, i) LEFT JOIN pg_catalog.pg_class c ON c.oid = "
                "to_regclass(t.name) LEFT JOIN pg_catalog.pg_namespace n ON "
                "n.oid = c.relnamespace ORDER BY t.i",
                1, p, pg_m_targets, m);
  else
    pg_sess_add(s, "find the tables",
                "SELECT n.nspname, format('%I.%I', n.nspname, c.relname) "
                "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON "
                "n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm') AND "
                "($1::text IS NULL AND n.nspname NOT IN ('pg_catalog', "
                "'information_schema') AND n.nspname NOT LIKE 'pg\\_%' OR "
                "n.nspname = $1) ORDER BY 2",
                1, p + 1, pg_m_targets, m);
  free(list);
  pg_sess_run(s, pg_m_resolved, m);
}

int pg_act_maintenance(eng_call *call, const json_t *params) {
  const char *op = pg_pstr(params, "operation");
  const json_t *idx = json_object_get(params, "indexes");
  if (idx && op && strcmp(op, "reindex")) {
    pg_host->fail(call, "parameter 'indexes' goes with operation: reindex; "
                        "give 'tables' to %s", op);
    return ENG_ERR_INVALID;
  }
  int rc;
  char *url = pg_url_conn(call, params, "url", "database", &rc);
  if (!url) return rc;
  pg_maint *m = eng_xcalloc(1, sizeof *m);
  pg_op_init(&m->op, call, pg_maint_destroy);
  m->url = url;
  snprintf(m->op_name, sizeof m->op_name, "%s", op ? op : "vacuum");
  m->analyze = pg_pbool(params, "analyze", 1);
  m->full = pg_pbool(params, "full", 0);
  m->concurrently = pg_pbool(params, "concurrently", 1);
  m->lock_ms = pg_pint(params, "lock_timeout", 10000);
  m->stmt_ms = pg_pint(params, "statement_timeout", 0);
  m->tables_in = json_incref((json_t *)json_object_get(params, "tables"));
  m->indexes_in = json_incref((json_t *)idx);
  const char *schema = pg_pstr(params, "schema");
  m->schema = schema && *schema ? eng_xstrdup(schema) : NULL;
  m->s = pg_sess_open(&m->op, m->url);
  pg_ident_add(m->s, &m->id);
  pg_sess_run(m->s, pg_m_ident_end, m);
  return ENG_OK;
}
