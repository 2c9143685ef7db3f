/*
 * pg_actions_health.c - postgres.health: one session, read-only queries
 * on the statistics views (what pg_monitor may read), each check's figure
 * held to its thresholds; the step ends warn or fails by the worst level.
 *
 * Each check is a row of pg_hdefs (its parameter, its defaults, whether it
 * needs to see other roles' sessions) and a result handler that records
 * {level, value, warn, fail, items, message} under checks.NAME.
 */
#include "pg_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef enum pg_hid {
  H_CONN, H_LONGQ, H_LONGX, H_IDLE, H_BLOCKED, H_SIZE, H_DEAD, H_UNUSED,
  H_INVALID, H_WRAP, H_CACHE, H_ARCH, H_REPL, H_N
} pg_hid;

typedef struct pg_hdef {
  const char *name;
  const char *extra; /* the check's extra key, or NULL */
  int dur;           /* thresholds in seconds */
  int lower;         /* a lower figure is worse */
  int monitor;       /* reads other roles' sessions: needs pg_read_all_stats */
  const char *defaults;
} pg_hdef;

static const pg_hdef pg_hdefs[H_N] = {
    [H_CONN] = {"connections", NULL, 0, 0, 0, PG_H_DEF_CONN},
    [H_LONGQ] = {"long_queries", NULL, 1, 0, 1, PG_H_DEF_LONGQ},
    [H_LONGX] = {"long_transactions", NULL, 1, 0, 1, PG_H_DEF_LONGX},
    [H_IDLE] = {"idle_in_transaction", NULL, 1, 0, 1, PG_H_DEF_IDLE},
    [H_BLOCKED] = {"blocked", NULL, 1, 0, 1, PG_H_DEF_BLOCKED},
    [H_SIZE] = {"database_size", NULL, 0, 0, 0, PG_H_DEF_SIZE},
    [H_DEAD] = {"dead_tuples", "min_rows", 0, 0, 0, PG_H_DEF_DEAD},
    [H_UNUSED] = {"unused_indexes", "min_bytes", 0, 0, 0, PG_H_DEF_UNUSED},
    [H_INVALID] = {"invalid_indexes", NULL, 0, 0, 0, PG_H_DEF_INVALID},
    [H_WRAP] = {"wraparound", NULL, 0, 0, 0, PG_H_DEF_WRAP},
    [H_CACHE] = {"cache_hit", "min_blocks", 0, 1, 0, PG_H_DEF_CACHE},
    [H_ARCH] = {"archiver", NULL, 1, 0, 0, PG_H_DEF_ARCH},
    [H_REPL] = {"replication_lag", NULL, 1, 0, 1, PG_H_DEF_REPL},
};

typedef struct pg_health {
  pg_op op;
  char *url;
  pg_sess *s;
  pg_ident id;
  pg_thr thr[H_N];
  int top, fail_on_issues;
  int monitor, max_conn, in_recovery, archiving;
  char role[128];
  json_t *checks, *findings, *not_run, *largest, *flagged;
  long long db_bytes;
  int counts[3];
} pg_health;

static void pg_health_destroy(pg_op *op) {
  pg_health *h = (pg_health *)op;
  free(h->url);
  json_decref(h->checks);
  json_decref(h->findings);
  json_decref(h->not_run);
  json_decref(h->largest);
  json_decref(h->flagged);
  free(h);
}

static double pg_num(const PGresult *res, int row, int col) {
  if (PQgetisnull(res, row, col)) return NAN;
  return strtod(PQgetvalue(res, row, col), NULL);
}

/* Record check id's result (takes value and items). */
static void pg_h_set(pg_health *h, pg_hid id, pg_level lv, json_t *value,
                     json_t *items, const char *fmt, ...) ENG_PRINTF(6, 7);
static void pg_h_set(pg_health *h, pg_hid id, pg_level lv, json_t *value,
                     json_t *items, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_t *o = pg_thr_json(&h->thr[id]);
  json_object_set_new(o, "level", json_string(pg_level_names[lv]));
  json_object_set_new(o, "value", value ? value : json_null());
  json_object_set_new(o, "items", items ? items : json_array());
  json_object_set_new(o, "message", json_string(msg));
  json_object_set_new(h->checks, pg_hdefs[id].name, o);
  h->counts[lv]++;
  if (lv != PG_L_OK)
    json_array_append_new(h->findings,
                          json_pack("{s:s, s:s, s:s}", "check",
                                    pg_hdefs[id].name, "level",
                                    pg_level_names[lv], "message", msg));
}

static void pg_h_not_run(pg_health *h, pg_hid id, const char *why) {
  json_object_set_new(h->checks, pg_hdefs[id].name,
                      json_pack("{s:s, s:s}", "level", "not_run", "message",
                                why));
  json_array_append_new(h->not_run, json_pack("{s:s, s:s}", "check",
                                              pg_hdefs[id].name, "reason",
                                              why));
}

/* ---- connections and sessions ------------------------------------------- */

static int pg_h_conn(pg_sess *s, void *ud, PGresult *res) {
  pg_health *h = ud;
  (void)s;
  json_t *by_state = json_object(), *by_app = json_object();
  long long total = 0;
  for (int r = 0; r < PQntuples(res); r++) {
    long long n = strtoll(PQgetvalue(res, r, 2), NULL, 10);
    const char *st = PQgetvalue(res, r, 0), *app = PQgetvalue(res, r, 1);
    json_object_set_new(by_state, st,
                        json_integer(json_integer_value(json_object_get(by_state, st)) + n));
    json_object_set_new(by_app, app,
                        json_integer(json_integer_value(json_object_get(by_app, app)) + n));
    total += n;
  }
  double pct = h->max_conn > 0 ? 100.0 * (double)total / h->max_conn : NAN;
  json_t *val = json_pack("{s:I, s:i, s:f, s:o, s:o}", "total",
                          (json_int_t)total, "max_connections", h->max_conn,
                          "percent", isnan(pct) ? 0.0 : pct, "by_state",
                          by_state, "by_application", by_app);
  pg_h_set(h, H_CONN, pg_thr_level(&h->thr[H_CONN], pct, 0), val, NULL,
           "%lld of max_connections %d (%.0f%%)", total, h->max_conn, pct);
  return ENG_OK;
}

/* One session check over the rows of pg_stat_activity: col is the age
 * (seconds) it is about, state_like the states it looks at (NULL: all
 * with that age). */
static void pg_h_sessions(pg_health *h, pg_hid id, const PGresult *res,
                          int col, const char *state_prefix) {
  json_t *items = json_array();
  double worst = NAN;
  pg_level lv = PG_L_OK;
  int worst_pid = 0;
  for (int r = 0; r < PQntuples(res); r++) {
    const char *st = PQgetvalue(res, r, 4);
    if (state_prefix && strncmp(st, state_prefix, strlen(state_prefix)))
      continue;
    double age = pg_num(res, r, col);
    if (isnan(age)) continue;
    if (isnan(worst) || age > worst) {
      worst = age;
      worst_pid = atoi(PQgetvalue(res, r, 0));
    }
    pg_level l = pg_thr_level(&h->thr[id], age, 0);
    if (l == PG_L_OK) continue;
    if (l > lv) lv = l;
    json_array_append_new(
        items, json_pack("{s:i, s:s, s:s, s:s, s:s, s:f, s:s, s:s}", "pid",
                         atoi(PQgetvalue(res, r, 0)), "database",
                         PQgetvalue(res, r, 1), "user", PQgetvalue(res, r, 2),
                         "application_name", PQgetvalue(res, r, 3), "state",
                         st, "seconds", age, "level", pg_level_names[l],
                         "query", PQgetvalue(res, r, 8)));
  }
  if (isnan(worst))
    pg_h_set(h, id, lv, json_real(0), items, "none");
  else
    pg_h_set(h, id, lv, json_real(worst), items,
             "%zu over the threshold, longest %.0fs (pid %d)",
             json_array_size(items), worst, worst_pid);
}

static int pg_h_activity(pg_sess *s, void *ud, PGresult *res) {
  pg_health *h = ud;
  (void)s;
  if (!h->thr[H_LONGQ].off) pg_h_sessions(h, H_LONGQ, res, 5, "active");
  if (!h->thr[H_LONGX].off) pg_h_sessions(h, H_LONGX, res, 6, NULL);
  if (!h->thr[H_IDLE].off)
    pg_h_sessions(h, H_IDLE, res, 7, "idle in transaction");
  return ENG_OK;
}

static int pg_h_blocked(pg_sess *s, void *ud, PGresult *res) {
  pg_health *h = ud;
  (void)s;
  json_t *items = json_array();
  double worst = 0;
  pg_level lv = PG_L_OK;
  for (int r = 0; r < PQntuples(res); r++) {
    double wait = pg_num(res, r, 3);
    pg_level l = pg_thr_level(&h->thr[H_BLOCKED], wait, 0);
    if (!isnan(wait) && wait > worst) worst = wait;
    if (l > lv) lv = l;
    json_t *by = json_loads(PQgetvalue(res, r, 2), 0, NULL);
    json_array_append_new(
        items,
        json_pack("{s:i, s:s, s:o, s:f, s:{s:s, s:s, s:s}, s:s, s:s}", "pid",
                  atoi(PQgetvalue(res, r, 0)), "database",
                  PQgetvalue(res, r, 1), "blocked_by", by ? by : json_array(),
                  "seconds", isnan(wait) ? 0.0 : wait, "lock", "locktype",
                  PQgetvalue(res, r, 4), "mode", PQgetvalue(res, r, 5),
                  "relation", PQgetvalue(res, r, 6), "level",
                  pg_level_names[l], "query", PQgetvalue(res, r, 7)));
  }
  pg_h_set(h, H_BLOCKED, lv, json_real(worst), items,
           "%d blocked session(s), longest wait %.0fs", PQntuples(res), worst);
  return ENG_OK;
}

/* ---- tables and indexes ------------------------------------------------- */

static int pg_h_size(pg_sess *s, void *ud, PGresult *res) {
  pg_health *h = ud;
  (void)s;
  h->db_bytes = PQntuples(res) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
  pg_h_set(h, H_SIZE,
           pg_thr_level(&h->thr[H_SIZE], (double)h->db_bytes, 0),
           json_integer(h->db_bytes), NULL, "%.1f MB",
           (double)h->db_bytes / 1e6);
  return ENG_OK;
}

static int pg_h_largest(pg_sess *s, void *ud, PGresult *res) {
  pg_health *h = ud;
  (void)s;
  json_decref(h->largest);
  h->largest = pg_rows_json(res, (size_t)h->top);
  return ENG_OK;
}

/* Rows: table, live, dead, percent, last vacuum (any). */
static int pg_h_dead(pg_sess *s, void *ud, PGresult *res) {
  pg_health *h = ud;
  (void)s;
  json_t *items = json_array();
  double worst = 0;
  pg_level lv = PG_L_OK;
  const char *worst_t = "";
  for (int r = 0; r < PQntuples(res); r++) {
    double pct = pg_num(res, r, 3);
    if (isnan(pct)) continue; /* no tuples at all (min_rows: 0) */
    if (pct > worst || !*worst_t) {
      worst = pct;
      worst_t = PQgetvalue(res, r, 0);
    }
    pg_level l = pg_thr_level(&h->thr[H_DEAD], pct, 0);
    if (l == PG_L_OK) continue;
    if (l > lv) lv = l;
    json_array_append_new(h->flagged, json_string(PQgetvalue(res, r, 0)));
    json_array_append_new(
        items, json_pack("{s:s, s:o, s:o, s:f, s:o, s:s}", "table",
                         PQgetvalue(res, r, 0), "live", pg_value_json(res, r, 1),
                         "dead", pg_value_json(res, r, 2), "percent", pct,
                         "last_vacuum", pg_value_json(res, r, 4), "level",
                         pg_level_names[l]));
  }
  pg_h_set(h, H_DEAD, lv, json_real(worst), items,
           "%zu table(s) over the threshold, worst %s %.1f%%",
           json_array_size(items), *worst_t ? worst_t : "(none)", worst);
  return ENG_OK;
}

/* Rows: index, table, bytes[, scans]: the figure is how many. */
static void pg_h_indexes(pg_health *h, pg_hid id, const PGresult *res) {
  int n = PQntuples(res);
  pg_h_set(h, id, pg_thr_level(&h->thr[id], n, 0), json_integer(n),
           pg_rows_json(res, 1000), "%d%s%s", n, n ? ", first " : "",
           n ? PQgetvalue(res, 0, 0) : "");
}

static int pg_h_unused(pg_sess *s, void *ud, PGresult *res) {
  (void)s;
  pg_h_indexes(ud, H_UNUSED, res);
  return ENG_OK;
}

static int pg_h_invalid(pg_sess *s, void *ud, PGresult *res) {
  (void)s;
  pg_h_indexes(ud, H_INVALID, res);
  return ENG_OK;
}

/* ---- server ------------------------------------------------------------- */

static int pg_h_wrap(pg_sess *s, void *ud, PGresult *res) {
  pg_health *h = ud;
  (void)s;
  double age = PQntuples(res) ? pg_num(res, 0, 1) : 0;
  pg_h_set(h, H_WRAP, pg_thr_level(&h->thr[H_WRAP], age, 0),
           json_integer((json_int_t)age), pg_rows_json(res, 1000),
           "oldest %s: %.0f transactions",
           PQntuples(res) ? PQgetvalue(res, 0, 0) : "(none)", age);
  return ENG_OK;
}

static int pg_h_cache(pg_sess *s, void *ud, PGresult *res) {
  pg_health *h = ud;
  (void)s;
  double hit = PQntuples(res) ? pg_num(res, 0, 0) : 0;
  double rd = PQntuples(res) ? pg_num(res, 0, 1) : 0;
  double pct = hit + rd > 0 ? 100.0 * hit / (hit + rd) : NAN;
  double min = isnan(h->thr[H_CACHE].min) ? 0 : h->thr[H_CACHE].min;
  if (hit + rd < min) { /* too few reads to judge */
    pg_h_set(h, H_CACHE, PG_L_OK, isnan(pct) ? NULL : json_real(pct), NULL,
             "%.0f blocks read so far, fewer than min_blocks %.0f: not judged",
             hit + rd, min);
    return ENG_OK;
  }
  if (isnan(pct))
    pg_h_set(h, H_CACHE, PG_L_OK, NULL, NULL, "no blocks read yet");
  else
    pg_h_set(h, H_CACHE, pg_thr_level(&h->thr[H_CACHE], pct, 1),
             json_real(pct), NULL, "%.2f%%", pct);
  return ENG_OK;
}

/* Row: archived_count, failed_count, last_archived_wal, age of the last
 * archived segment (s), last_failed_wal, failing, unarchived_bytes. */
static int pg_h_arch(pg_sess *s, void *ud, PGresult *res) {
  pg_health *h = ud;
  (void)s;
  json_t *rows = pg_rows_json(res, 1);
  json_t *v = json_incref(json_array_get(rows, 0));
  json_decref(rows);
  if (!h->archiving || !v) {
    pg_h_set(h, H_ARCH, PG_L_OK, v, NULL, "WAL archiving is off");
    return ENG_OK;
  }
  int failing = PQgetvalue(res, 0, 5)[0] == 't';
  double age = pg_num(res, 0, 3);
  pg_level lv = failing ? PG_L_FAIL : pg_thr_level(&h->thr[H_ARCH], age, 0);
  const char *unarchived = PQgetisnull(res, 0, 6) ? "?" : PQgetvalue(res, 0, 6);
  pg_h_set(h, H_ARCH, lv, v, NULL,
           "%s failed, last archived %s%s%.0fs ago, %s bytes not yet "
           "archived%s",
           PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
           *PQgetvalue(res, 0, 2) ? " " : "(none) ", isnan(age) ? 0 : age,
           unarchived, failing ? "; archiving is failing now" : "");
  return ENG_OK;
}

/* Rows: name, client_addr, state, lag (s), lag_bytes. */
static int pg_h_repl(pg_sess *s, void *ud, PGresult *res) {
  pg_health *h = ud;
  (void)s;
  double worst = 0;
  pg_level lv = PG_L_OK;
  for (int r = 0; r < PQntuples(res); r++) {
    double lag = pg_num(res, r, 3);
    if (!isnan(lag) && lag > worst) worst = lag;
    pg_level l = pg_thr_level(&h->thr[H_REPL], lag, 0);
    if (l > lv) lv = l;
  }
  if (!PQntuples(res))
    pg_h_set(h, H_REPL, PG_L_OK, NULL, NULL, "no replicas");
  else
    pg_h_set(h, H_REPL, lv, json_real(worst), pg_rows_json(res, 1000),
             "%d %s, largest lag %.1fs", PQntuples(res),
             h->in_recovery ? "standby (this server)" : "replica(s)", worst);
  return ENG_OK;
}

/* ---- the queries -------------------------------------------------------- */

#define PG_H_USER_SCHEMAS                                                      \
  "n.nspname NOT IN ('pg_catalog', 'information_schema') AND "                 \
  "n.nspname NOT LIKE 'pg\\_toast%' "

static const char pg_h_sql_conn[] =
    "SELECT coalesce(state, 'unknown'), "
    "coalesce(nullif(application_name, ''), '(none)'), count(*) "
    "FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend' "
    "GROUP BY 1, 2";
static const char pg_h_sql_activity[] =
    "SELECT pid, coalesce(datname, ''), coalesce(usename, ''), "
    "coalesce(application_name, ''), coalesce(state, ''), "
    "extract(epoch FROM clock_timestamp() - query_start)::float8, "
    "extract(epoch FROM clock_timestamp() - xact_start)::float8, "
    "extract(epoch FROM clock_timestamp() - state_change)::float8, "
    "left(coalesce(query, ''), 200) "
    "FROM pg_catalog.pg_stat_activity WHERE backend_type = 'client backend' "
    "AND pid <> pg_backend_pid() ORDER BY pid";
static const char pg_h_sql_blocked[] =
    "SELECT a.pid, coalesce(a.datname, ''), "
    "array_to_json(pg_blocking_pids(a.pid))::text, "
    "extract(epoch FROM clock_timestamp() - "
    "coalesce(a.query_start, a.state_change))::float8, "
    "coalesce(l.locktype, ''), coalesce(l.mode, ''), "
    "coalesce(CASE WHEN l.database = (SELECT oid FROM pg_catalog.pg_database "
    "WHERE datname = current_database()) THEN l.relation::regclass::text "
    "ELSE l.relation::text END, ''), left(coalesce(a.query, ''), 200) "
    "FROM pg_catalog.pg_stat_activity a LEFT JOIN LATERAL (SELECT * FROM "
    "pg_catalog.pg_locks k WHERE k.pid = a.pid AND NOT k.granted LIMIT 1) l "
    "ON true WHERE cardinality(pg_blocking_pids(a.pid)) > 0 ORDER BY a.pid";
static const char pg_h_sql_largest[] =
    "SELECT format('%I.%I', n.nspname, c.relname) AS table, "
    "pg_total_relation_size(c.oid) AS bytes, "
    "greatest(c.reltuples, 0)::bigint AS rows "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON "
    "n.oid = c.relnamespace WHERE c.relkind IN ('r', 'm', 'p') AND "
    PG_H_USER_SCHEMAS "ORDER BY 2 DESC, 1 LIMIT $1";
static const char pg_h_sql_dead[] =
    "SELECT format('%I.%I', schemaname, relname), n_live_tup, n_dead_tup, "
    "(100.0 * n_dead_tup / nullif(n_live_tup + n_dead_tup, 0))::float8, "
    "greatest(last_vacuum, last_autovacuum) FROM pg_catalog.pg_stat_user_tables "
    "WHERE n_live_tup + n_dead_tup >= $1 ORDER BY 4 DESC NULLS LAST, 1";
static const char pg_h_sql_unused[] =
    "SELECT format('%I.%I', s.schemaname, s.indexrelname) AS index, "
    "format('%I.%I', s.schemaname, s.relname) AS table, "
    "pg_relation_size(s.indexrelid) AS bytes, s.idx_scan AS scans "
    "FROM pg_catalog.pg_stat_user_indexes s JOIN pg_catalog.pg_index i ON "
    "i.indexrelid = s.indexrelid WHERE s.idx_scan = 0 AND i.indisvalid AND "
    "NOT i.indisunique AND NOT i.indisprimary AND NOT EXISTS (SELECT 1 FROM "
    "pg_catalog.pg_constraint k WHERE k.conindid = s.indexrelid) AND "
    "pg_relation_size(s.indexrelid) >= $1 ORDER BY 3 DESC, 1";
static const char pg_h_sql_invalid[] =
    "SELECT format('%I.%I', n.nspname, c.relname) AS index, "
    "format('%I.%I', n.nspname, t.relname) AS table, "
    "pg_relation_size(c.oid) AS bytes FROM pg_catalog.pg_index i "
    "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
    "JOIN pg_catalog.pg_class t ON t.oid = i.indrelid "
    "JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace "
    "WHERE NOT i.indisvalid AND " PG_H_USER_SCHEMAS "ORDER BY 1";
static const char pg_h_sql_wrap[] =
    "SELECT datname AS database, age(datfrozenxid)::bigint AS age "
    "FROM pg_catalog.pg_database ORDER BY 2 DESC, 1";
static const char pg_h_sql_cache[] =
    "SELECT blks_hit, blks_read FROM pg_catalog.pg_stat_database "
    "WHERE datname = current_database()";
static const char pg_h_sql_arch[] =
    "SELECT archived_count, failed_count, coalesce(last_archived_wal, '') AS "
    "last_archived_wal, extract(epoch FROM now() - last_archived_time)::float8 "
    "AS last_archived_age_s, coalesce(last_failed_wal, '') AS last_failed_wal, "
    "(last_failed_time IS NOT NULL AND (last_archived_time IS NULL OR "
    "last_failed_time > last_archived_time)) AS failing, "
    /* WAL written since the end of the last archived segment (its name is
     * timeline, log and segment in hex); none on a standby */
    "CASE WHEN pg_catalog.pg_is_in_recovery() OR last_archived_wal !~ "
    "'^[0-9A-F]{24}$' THEN NULL ELSE greatest(0, "
    "pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), '0/0') - "
    "(('x' || substr(last_archived_wal, 9, 8))::bit(32)::bigint * 4294967296 + "
    "(('x' || substr(last_archived_wal, 17, 8))::bit(32)::bigint + 1) * "
    "(SELECT setting::bigint FROM pg_catalog.pg_settings WHERE name = "
    "'wal_segment_size')))::bigint END AS unarchived_bytes "
    "FROM pg_catalog.pg_stat_archiver";
static const char pg_h_sql_repl_primary[] =
    "SELECT application_name AS name, client_addr::text AS client_addr, state, "
    "extract(epoch FROM replay_lag)::float8 AS lag_s, "
    "pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes "
    "FROM pg_catalog.pg_stat_replication ORDER BY 1";
static const char pg_h_sql_repl_standby[] =
    "SELECT 'this server' AS name, '' AS client_addr, 'standby' AS state, "
    "extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 "
    "AS lag_s, NULL::bigint AS lag_bytes";

static void pg_h_add(pg_health *h, pg_hid id, const char *sql, pg_res_fn fn) {
  if (h->thr[id].off) return;
  if (pg_hdefs[id].monitor && !h->monitor) {
    char why[256];
    snprintf(why, sizeof why,
             "role %s sees only its own sessions: grant it pg_monitor (or "
             "pg_read_all_stats)",
             h->role);
    pg_h_not_run(h, id, why);
    return;
  }
  char num[32];
  const char *p[1] = {num};
  double min = h->thr[id].min;
  snprintf(num, sizeof num, "%.0f", isnan(min) ? 0 : min);
  pg_sess_add(h->s, pg_hdefs[id].name, sql,
              id == H_DEAD || id == H_UNUSED ? 1 : 0, p, fn, h);
}

static int pg_h_role(pg_sess *s, void *ud, PGresult *res) {
  pg_health *h = ud;
  if (PQntuples(res) != 1) {
    pg_sess_seterr(s, "the role of this session was not found in pg_roles");
    return ENG_ERR_FAILED;
  }
  snprintf(h->role, sizeof h->role, "%s", PQgetvalue(res, 0, 0));
  h->monitor = PQgetvalue(res, 0, 1)[0] == 't';
  h->max_conn = atoi(PQgetvalue(res, 0, 2));
  h->archiving = strcmp(PQgetvalue(res, 0, 3), "off") != 0;
  h->in_recovery = PQgetvalue(res, 0, 4)[0] == 't';
  pg_h_add(h, H_CONN, pg_h_sql_conn, pg_h_conn);
  int sessions = !h->thr[H_LONGQ].off || !h->thr[H_LONGX].off ||
                 !h->thr[H_IDLE].off;
  if (sessions && !h->monitor) {
    pg_h_add(h, H_LONGQ, pg_h_sql_activity, pg_h_activity);
    pg_h_add(h, H_LONGX, pg_h_sql_activity, pg_h_activity);
    pg_h_add(h, H_IDLE, pg_h_sql_activity, pg_h_activity);
  } else if (sessions) {
    pg_sess_add(s, "sessions", pg_h_sql_activity, 0, NULL, pg_h_activity, h);
  }
  pg_h_add(h, H_BLOCKED, pg_h_sql_blocked, pg_h_blocked);
  if (!h->thr[H_SIZE].off) {
    pg_sess_add(s, "database size",
                "SELECT pg_database_size(current_database())", 0, NULL,
                pg_h_size, h);
    char top[32];
    const char *p[1] = {top};
    snprintf(top, sizeof top, "%d", h->top);
    pg_sess_add(s, "largest tables", pg_h_sql_largest, 1, p, pg_h_largest, h);
  }
  pg_h_add(h, H_DEAD, pg_h_sql_dead, pg_h_dead);
  pg_h_add(h, H_UNUSED, pg_h_sql_unused, pg_h_unused);
  pg_h_add(h, H_INVALID, pg_h_sql_invalid, pg_h_invalid);
  pg_h_add(h, H_WRAP, pg_h_sql_wrap, pg_h_wrap);
  pg_h_add(h, H_CACHE, pg_h_sql_cache, pg_h_cache);
  pg_h_add(h, H_ARCH, pg_h_sql_arch, pg_h_arch);
  pg_h_add(h, H_REPL,
           h->in_recovery ? pg_h_sql_repl_standby : pg_h_sql_repl_primary,
           pg_h_repl);
  return ENG_OK;
}

/* ---- the end ------------------------------------------------------------ */

/* "fail: dead_tuples (...); warn: ...; 9 ok, 1 not run" */
static char *pg_h_summary(const pg_health *h, pg_level worst) {
  eng_strbuf b = {0};
  eng_strbuf_addf(&b, "%s %s %.1f MB", worst == PG_L_OK ? "healthy:" : pg_level_names[worst],
                  h->id.database, (double)h->db_bytes / 1e6);
  for (int lv = PG_L_FAIL; lv > PG_L_OK; lv--) {
    size_t i;
    json_t *f;
    int first = 1;
    json_array_foreach(h->findings, i, f) {
      if (strcmp(json_string_value(json_object_get(f, "level")), pg_level_names[lv]))
        continue;
      eng_strbuf_addf(&b, "%s %s (%s)", first ? (lv == PG_L_FAIL ? "; fail:" : "; warn:") : ",",
                      json_string_value(json_object_get(f, "check")),
                      json_string_value(json_object_get(f, "message")));
      first = 0;
    }
  }
  eng_strbuf_addf(&b, "; %d ok", h->counts[PG_L_OK]);
  if (json_array_size(h->not_run))
    eng_strbuf_addf(&b, ", %zu not run", json_array_size(h->not_run));
  return b.data;
}

static void pg_h_done(pg_sess *s, void *ud, int rc) {
  pg_health *h = ud;
  if (rc != ENG_OK) {
    if (rc == ENG_ERR_CANCELLED) {
      pg_op_finish(&h->op, rc);
      return;
    }
    pg_op_fail(&h->op, rc, "health check of %s failed: %s; %s",
               pg_sess_display(s), pg_sess_errmsg(s), pg_conn_hint(rc));
    return;
  }
  eng_call *call = h->op.e.call;
  pg_level worst = h->counts[PG_L_FAIL] ? PG_L_FAIL
                   : h->counts[PG_L_WARN] ? PG_L_WARN
                                          : PG_L_OK;
  char *sum = pg_h_summary(h, worst);
  json_t *conn = json_object_get(json_object_get(h->checks, "connections"), "value");
  pg_host->output(call, "level", json_string(pg_level_names[worst]));
  pg_host->output(call, "summary", json_string(sum));
  pg_host->output(call, "database", json_string(h->id.database));
  pg_host->output(call, "database_size", json_integer(h->db_bytes));
  pg_host->output(call, "connections", json_incref(json_object_get(conn, "total")));
  pg_host->output(call, "max_connections", json_integer(h->max_conn));
  pg_host->output(call, "largest_tables", json_incref(h->largest));
  pg_host->output(call, "flagged_tables", json_incref(h->flagged));
  pg_host->output(call, "findings", json_incref(h->findings));
  pg_host->output(call, "not_run", json_incref(h->not_run));
  pg_host->output(call, "checks", json_incref(h->checks));
  if (worst == PG_L_FAIL && h->fail_on_issues) {
    pg_op_fail(&h->op, ENG_ERR_FAILED,
               "%s; see the `checks` output (or set fail_on_issues: false "
               "to end warn)", sum);
    free(sum);
    return;
  }
  if (worst != PG_L_OK &&
      pg_host->size >= offsetof(eng_host, warn) + sizeof pg_host->warn)
    pg_host->warn(call, sum);
  free(sum);
  pg_op_finish(&h->op, ENG_OK);
}

static void pg_h_ident_end(pg_sess *s, void *ud, int rc) {
  pg_health *h = ud;
  if (rc != ENG_OK) {
    pg_h_done(s, ud, rc);
    return;
  }
  /* never wait on a lock for long: this is a health check */
  pg_sess_add(s, "timeouts",
              "SELECT set_config('lock_timeout', '5s', false), "
              "set_config('statement_timeout', '60s', false)",
              0, NULL, NULL, NULL);
  pg_sess_add(s, "role",
              "SELECT current_user, r.rolsuper OR pg_has_role(current_user, "
              "'pg_read_all_stats', 'MEMBER'), "
              "current_setting('max_connections'), "
              "current_setting('archive_mode'), pg_is_in_recovery() "
              "FROM pg_catalog.pg_roles r WHERE r.rolname = current_user",
              0, NULL, pg_h_role, h);
  pg_sess_run(s, pg_h_done, h);
}

int pg_act_health(eng_call *call, const json_t *params) {
  int rc;
  char *url = pg_url_conn(call, params, "url", "database", &rc);
  if (!url) return rc;
  pg_health *h = eng_xcalloc(1, sizeof *h);
  for (int i = 0; i < H_N; i++) {
    char err[256];
    const json_t *v = json_object_get(params, pg_hdefs[i].name);
    json_t *def = json_loads(pg_hdefs[i].defaults, 0, NULL);
    int bad = pg_thr_parse(v ? v : def, pg_hdefs[i].extra, pg_hdefs[i].dur,
                           &h->thr[i], err, sizeof err);
    if (!bad && h->thr[i].deflt)
      bad = pg_thr_parse(def, pg_hdefs[i].extra, pg_hdefs[i].dur, &h->thr[i],
                         err, sizeof err);
    json_decref(def);
    if (bad) {
      pg_host->fail(call, "parameter '%s': %s", pg_hdefs[i].name, err);
      free(url);
      free(h);
      return ENG_ERR_INVALID;
    }
  }
  pg_op_init(&h->op, call, pg_health_destroy);
  h->url = url;
  h->top = (int)pg_pint(params, "top", 10);
  h->fail_on_issues = pg_pbool(params, "fail_on_issues", 1);
  h->checks = json_object();
  h->findings = json_array();
  h->not_run = json_array();
  h->largest = json_array();
  h->flagged = json_array();
  h->s = pg_sess_open(&h->op, h->url);
  pg_ident_add(h->s, &h->id);
  pg_sess_run(h->s, pg_h_ident_end, h);
  return ENG_OK;
}
