/*
 * pg_actions_sql.c - the actions that only talk SQL: ping, query,
 * row_counts, compare, verify, connections, create_database,
 * drop_database, and the Lua function pg.query.
 *
 * Each action is a short list of queries on a pg_sess and a result
 * handler. Identifiers are always quoted with PQescapeIdentifier and values
 * passed as parameters, so a database named `a"; DROP DATABASE x; --` is
 * just a strange name.
 */
#include "pg_int.h"

#include <errno.h>
#include <stddef.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Type OIDs from pg_type.dat (stable across versions). */
#define PG_OID_BOOL 16
#define PG_OID_INT8 20
#define PG_OID_INT2 21
#define PG_OID_INT4 23
#define PG_OID_OID 26
#define PG_OID_JSON 114
#define PG_OID_FLOAT4 700
#define PG_OID_FLOAT8 701
#define PG_OID_NUMERIC 1700
#define PG_OID_JSONB 3802

/* Schemas that are never user data. */
#define PG_USER_SCHEMAS                                                        \
  "n.nspname NOT IN ('pg_catalog', 'information_schema') AND "                 \
  "n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%' "

/* ---- typed values ------------------------------------------------------- */

static json_t *pg_numeric_json(const char *v) {
  const char *p = v;
  if (*p == '-') p++;
  int digits = 0, dot = 0, ok = *p != '\0';
  for (const char *q = p; *q; q++) {
    if (*q >= '0' && *q <= '9')
      digits++;
    else if (*q == '.' && !dot)
      dot = 1;
    else
      ok = 0;
  }
  if (!ok) return json_string(v); /* NaN, Infinity */
  if (!dot && digits <= 18) return json_integer(strtoll(v, NULL, 10));
  if (digits <= 15) return json_real(strtod(v, NULL));
  return json_string(v); /* more precision than a double holds */
}

json_t *pg_value_json(const PGresult *res, int row, int col) {
  if (PQgetisnull(res, row, col)) return json_null();
  const char *v = PQgetvalue(res, row, col);
  switch (PQftype(res, col)) {
  case PG_OID_BOOL:
    return json_boolean(v[0] == 't');
  case PG_OID_INT2:
  case PG_OID_INT4:
  case PG_OID_INT8:
  case PG_OID_OID:
    return json_integer(strtoll(v, NULL, 10));
  case PG_OID_FLOAT4:
  case PG_OID_FLOAT8: {
    char *end;
    double d = strtod(v, &end);
    if (*end || !isfinite(d)) return json_string(v);
    return json_real(d);
  }
  case PG_OID_NUMERIC:
    return pg_numeric_json(v);
  case PG_OID_JSON:
  case PG_OID_JSONB: {
    json_t *j = json_loads(v, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    return j ? j : json_string(v);
  }
  default:
    return json_string(v);
  }
}

json_t *pg_rows_json(const PGresult *res, size_t max_rows) {
  json_t *rows = json_array();
  int nt = PQntuples(res), nf = PQnfields(res);
  for (int r = 0; r < nt && (size_t)r < max_rows; r++) {
    json_t *o = json_object();
    for (int c = 0; c < nf; c++)
      json_object_set_new(o, PQfname(res, c), pg_value_json(res, r, c));
    json_array_append_new(rows, o);
  }
  return rows;
}

/* JSON argument -> text parameter (NULL for null). malloc'd. */
static char *pg_arg_text(const json_t *v) {
  if (json_is_null(v)) return NULL;
  if (json_is_string(v)) return eng_xstrdup(json_string_value(v));
  if (json_is_integer(v))
    return eng_asprintf("%lld", (long long)json_integer_value(v));
  if (json_is_real(v)) { /* the shortest text that is the same number */
    char num[40];
    return eng_xstrdup(eng_fmt_real(json_real_value(v), num, sizeof num));
  }
  if (json_is_boolean(v))
    return eng_xstrdup(json_is_true(v) ? "true" : "false");
  char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  char *r = eng_xstrdup(s);
  free(s);
  return r;
}

static char *pg_quote_ident(PGconn *c, const char *name) {
  char *q = PQescapeIdentifier(c, name, strlen(name));
  if (!q) return NULL;
  char *r = eng_xstrdup(q);
  PQfreemem(q);
  return r;
}

/* "could not connect ..."-style message for a failed session step. */
static void pg_fail_sess(pg_op *op, pg_sess *s, int rc, const char *doing) {
  if (rc == ENG_ERR_REFUSED || rc == ENG_ERR_CANCELLED) {
    pg_op_finish(op, rc);
    return;
  }
  pg_op_fail(op, rc, "%s on %s failed: %s; %s", doing, pg_sess_display(s),
             pg_sess_errmsg(s), pg_conn_hint(rc));
}

/* ======== ping =========================================================== */

typedef struct pg_ping {
  pg_op op;
  char *url;
  int64_t wait_ms;
  int64_t t0;
  int attempts;
  pg_sess *s;
  pg_ident id;
} pg_ping;

static void pg_ping_destroy(pg_op *op) {
  pg_ping *p = (pg_ping *)op;
  free(p->url);
  free(p);
}

static void pg_ping_attempt(pg_op *op);

static void pg_ping_end(pg_sess *s, void *ud, int rc) {
  pg_ping *p = ud;
  if (rc == ENG_OK) {
    eng_call *call = p->op.e.call;
    pg_host->output(call, "server_version", json_string(p->id.version));
    pg_host->output(call, "server_version_num",
                    json_integer(p->id.version_num));
    pg_host->output(call, "system_identifier", json_string(p->id.sysid));
    pg_host->output(call, "database", json_string(p->id.database));
    pg_host->output(call, "user", json_string(p->id.user));
    pg_host->output(call, "in_recovery", json_boolean(p->id.in_recovery));
    pg_host->output(call, "database_size", json_integer(p->id.db_bytes));
    pg_host->output(call, "attempts", json_integer(p->attempts));
    /* "PostgreSQL 15.18, ledger 7.9 MB" */
    char ver[32];
    snprintf(ver, sizeof ver, "%.*s", (int)strcspn(p->id.version, " "),
             p->id.version);
    double mb = (double)p->id.db_bytes / 1e6;
    pg_host->output(call, "summary",
                    json_sprintf("PostgreSQL %s%s, %s %.1f %s", ver,
                                 p->id.in_recovery ? " (standby)" : "",
                                 p->id.database, mb >= 1000 ? mb / 1000 : mb,
                                 mb >= 1000 ? "GB" : "MB"));
    pg_op_finish(&p->op, ENG_OK);
    return;
  }
  int64_t elapsed = pg_now_ms() - p->t0;
  int retry = (rc == ENG_ERR_CONNECT || rc == ENG_ERR_TIMEOUT) &&
              p->wait_ms > 0 && elapsed < p->wait_ms;
  if (retry) {
    pg_host->log(p->op.e.call, ENG_LOG_DEBUG, "%s not ready (%s); retrying",
                 pg_sess_display(s), pg_sess_errmsg(s));
    pg_sess_close(s);
    p->s = NULL;
    int64_t left = p->wait_ms - elapsed;
    pg_op_timer(&p->op, (uint64_t)(left < 500 ? left : 500), pg_ping_attempt);
    return;
  }
  if (p->wait_ms > 0 && (rc == ENG_ERR_CONNECT || rc == ENG_ERR_TIMEOUT))
    pg_op_fail(&p->op, rc,
               "server %s not ready after waiting %.1f s (%d attempts): %s; "
               "%s",
               pg_sess_display(s), (double)elapsed / 1000.0, p->attempts,
               pg_sess_errmsg(s), pg_conn_hint(rc));
  else
    pg_fail_sess(&p->op, s, rc, "ping");
}

static void pg_ping_attempt(pg_op *op) {
  pg_ping *p = (pg_ping *)op;
  p->attempts++;
  p->s = pg_sess_open(op, p->url);
  if (p->wait_ms > 0) {
    /* never wait on one attempt longer than what is left */
    int64_t left = p->wait_ms - (pg_now_ms() - p->t0);
    if (left < 2000) left = 2000;
    if (left < 10000) pg_sess_set_connect_timeout(p->s, left);
  }
  pg_ident_add(p->s, &p->id);
  pg_sess_run(p->s, pg_ping_end, p);
}

int pg_act_ping(eng_call *call, const json_t *params) {
  int rc;
  char *url = pg_url_conn(call, params, "url", "database", &rc);
  if (!url) return rc;
  pg_ping *p = eng_xcalloc(1, sizeof *p);
  pg_op_init(&p->op, call, pg_ping_destroy);
  p->url = url;
  p->wait_ms = pg_pint(params, "wait", 0);
  p->t0 = pg_now_ms();
  pg_ping_attempt(&p->op);
  return ENG_OK;
}

/* ======== query ========================================================== */

/* What the SQL does, from the host's classifier (host->sql_classify), or
 * NULL on a host without it. */
static json_t *pg_sql_info(const char *sql) {
  if (!pg_host || pg_host->size < offsetof(eng_host, guard_sql) +
                                      sizeof pg_host->guard_sql)
    return NULL;
  return pg_host->sql_classify(sql ? sql : "");
}

/* How a query's SQL runs. */
typedef enum pg_qmode {
  PG_Q_READ_ONLY, /* one statement in a READ ONLY transaction (write: false) */
  PG_Q_WRITE,     /* as it is, writes allowed (write: true) */
  PG_Q_OUTSIDE    /* every statement is one that cannot run in a
                     transaction block (VACUUM, CREATE INDEX CONCURRENTLY):
                     each alone, outside any */
} pg_qmode;

/* The mode for info's SQL, or non-zero with the reason in err when it
 * cannot run at all. */
static int pg_query_mode(const json_t *info, int write, int lua,
                         pg_qmode *mode, char *err, size_t n) {
  *mode = write ? PG_Q_WRITE : PG_Q_READ_ONLY;
  if (!info) return 0;
  size_t st = json_array_size(json_object_get(info, "statements"));
  json_int_t nt = json_integer_value(json_object_get(info, "no_transaction"));
  const char *first = json_string_value(json_object_get(info, "no_transaction_what"));
  if (nt == 0 || lua) return 0; /* pg.query reads in a transaction, always */
  if ((size_t)nt < st) {
    snprintf(err, n,
             "the sql mixes %s, which cannot run inside a transaction block, "
             "with statements that run in one (several statements are one "
             "implicit transaction): give %s a step of its own",
             first ? first : "a statement", first ? first : "it");
    return -1;
  }
  const char *w = json_string_value(json_object_get(info, "writes_what"));
  if (!write && w) {
    snprintf(err, n,
             "write is false, but %s writes (and cannot run inside the READ "
             "ONLY transaction a read runs in): set write: true", w);
    return -1;
  }
  *mode = PG_Q_OUTSIDE;
  return 0;
}

/* The class that counts in mode: inside a READ ONLY transaction, what
 * PostgreSQL refuses there does nothing. */
static const char *pg_mode_key(pg_qmode mode, const char *key) {
  if (mode != PG_Q_READ_ONLY) return key;
  return !strcmp(key, "side")   ? "side_read_only"
         : !strcmp(key, "what") ? "what_read_only"
                                : "class_read_only";
}

eng_side_effect pg_query_classify(const json_t *p) {
  int write = pg_pbool(p, "write", 0);
  const char *sql = pg_pstr(p, "sql");
  json_t *info = sql ? pg_sql_info(sql) : NULL;
  if (!info) return write ? ENG_SIDE_DESTRUCTIVE : ENG_SIDE_READ_ONLY;
  pg_qmode mode;
  char err[512];
  pg_query_mode(info, write, 0, &mode, err, sizeof err);
  json_int_t side = json_integer_value(json_object_get(info, pg_mode_key(mode, "side")));
  json_decref(info);
  return (eng_side_effect)side;
}

void pg_describe_query(const json_t *p, char *buf, size_t n) {
  const char *sql = pg_pstr(p, "sql");
  json_t *info = sql ? pg_sql_info(sql) : NULL;
  if (!info) return;
  pg_qmode mode;
  char err[512];
  int bad = pg_query_mode(info, pg_pbool(p, "write", 0), 0, &mode, err, sizeof err);
  size_t st = json_array_size(json_object_get(info, "statements"));
  const char *cls = json_string_value(json_object_get(info, pg_mode_key(mode, "class")));
  const char *what = json_string_value(json_object_get(info, pg_mode_key(mode, "what")));
  size_t len = (size_t)snprintf(
      buf, n, "run %zu statement%s %s: %s%s%s%s", st, st == 1 ? "" : "s",
      mode == PG_Q_OUTSIDE ? "outside a transaction block, one at a time"
      : mode == PG_Q_WRITE ? "with writes allowed"
                           : "in a READ ONLY transaction",
      cls ? cls : "?", what && *what && strcmp(cls ? cls : "", "read") ? " (" : "",
      what && *what && strcmp(cls ? cls : "", "read") ? what : "",
      what && *what && strcmp(cls ? cls : "", "read") ? ")" : "");
  size_t i;
  json_t *d;
  json_array_foreach(json_object_get(info, "databases"), i, d) {
    if (len >= n) break;
    len += (size_t)snprintf(
        buf + len, n - len, "; database %s: %s (%s)",
        json_string_value(json_object_get(d, "name")),
        json_string_value(json_object_get(d, pg_mode_key(mode, "class"))),
        json_string_value(json_object_get(d, "what")));
  }
  const char *u = json_string_value(json_object_get(info, "unverified"));
  if (u && len < n) len += (size_t)snprintf(buf + len, n - len, "; unverified: %s", u);
  if (bad && len < n) snprintf(buf + len, n - len, "; cannot run: %s", err);
  json_decref(info);
}

int pg_check_sql(const json_t *value, char *err, size_t errlen) {
  json_t *info = pg_sql_info(json_string_value(value));
  if (!info) return 0; /* before init(): start() checks it */
  pg_qmode mode;
  /* write: true here: the mix is wrong whatever write says; write: false
   * with a statement that writes is start()'s to say */
  int rc = pg_query_mode(info, 1, 0, &mode, err, errlen);
  json_decref(info);
  return rc;
}

typedef struct pg_query_op {
  pg_op op;
  char *url;
  char *sql;
  int nargs;
  char **args;
  int write;
  int lua; /* pg.query from a hook: output "result" */
  pg_qmode mode;
  json_t *info; /* what the SQL does (host->sql_classify), or NULL */
  size_t max_rows;
  pg_sess *s;
  pg_ident id;
  json_t *rows, *columns;
  long long row_count;
  char command[64];
} pg_query_op;

static void pg_query_destroy(pg_op *op) {
  pg_query_op *q = (pg_query_op *)op;
  for (int i = 0; i < q->nargs; i++) free(q->args[i]);
  free(q->args);
  free(q->url);
  free(q->sql);
  json_decref(q->info);
  json_decref(q->rows);
  json_decref(q->columns);
  free(q);
}

static int pg_query_res(pg_sess *s, void *ud, PGresult *res) {
  pg_query_op *q = ud;
  (void)s;
  if (!res) return ENG_OK;
  json_decref(q->rows);
  json_decref(q->columns);
  q->rows = pg_rows_json(res, q->max_rows);
  q->columns = json_array();
  for (int c = 0; c < PQnfields(res); c++)
    json_array_append_new(q->columns, json_string(PQfname(res, c)));
  if (PQresultStatus(res) == PGRES_TUPLES_OK) {
    q->row_count = PQntuples(res);
    if ((size_t)q->row_count > q->max_rows)
      pg_host->log(q->op.e.call, ENG_LOG_WARN,
                   "query returned %lld rows; outputs keep the first %zu "
                   "(raise max_rows to keep more)",
                   q->row_count, q->max_rows);
  } else {
    const char *t = PQcmdTuples(res);
    q->row_count = t && *t ? strtoll(t, NULL, 10) : 0;
  }
  snprintf(q->command, sizeof q->command, "%s", PQcmdStatus(res));
  return ENG_OK;
}

static void pg_query_done(pg_sess *s, void *ud, int rc) {
  pg_query_op *q = ud;
  if (rc != ENG_OK) {
    pg_fail_sess(&q->op, s, rc, "query");
    return;
  }
  eng_call *call = q->op.e.call;
  if (!q->rows) q->rows = json_array();
  if (!q->columns) q->columns = json_array();
  if (q->lua) {
    pg_host->output(call, "result", q->rows);
  } else {
    pg_host->output(call, "rows", q->rows);
    pg_host->output(call, "columns", q->columns);
    q->columns = NULL;
    pg_host->output(call, "row_count", json_integer(q->row_count));
    pg_host->output(call, "command", json_string(q->command));
    /* "3 rows: {"id":1,...}, ..." : the first rows, cut to a line */
    char *first = json_array_size(q->rows)
                      ? json_dumps(q->rows, JSON_COMPACT | JSON_ENCODE_ANY)
                      : NULL;
    if (first) eng_json_short_reals(first); /* 16.8, not 16.800000000000001 */
    if (first && strlen(first) > 100) strcpy(first + 97, "...");
    pg_host->output(call, "summary",
                    first ? json_sprintf("%lld row%s: %s", (long long)q->row_count,
                                         q->row_count == 1 ? "" : "s", first)
                          : json_string(q->command));
    free(first);
  }
  q->rows = NULL;
  pg_op_finish(&q->op, ENG_OK);
}

static void pg_query_queue(pg_query_op *q) {
  if (q->mode == PG_Q_OUTSIDE && q->nargs == 0) {
    /* each statement alone, outside any transaction block (a string of
     * several statements is one implicit transaction) */
    size_t i;
    json_t *st;
    json_array_foreach(json_object_get(q->info, "statements"), i, st) {
      size_t off = (size_t)json_integer_value(json_object_get(st, "offset"));
      size_t len = (size_t)json_integer_value(json_object_get(st, "length"));
      if (off > strlen(q->sql) || len > strlen(q->sql + off)) continue;
      char *one = eng_xstrndup(q->sql + off, len);
      pg_sess_add_script(q->s, "query", one, pg_query_res, q);
      free(one);
    }
  } else if (q->mode != PG_Q_READ_ONLY) {
    if (q->nargs == 0)
      pg_sess_add_script(q->s, "query", q->sql, pg_query_res, q);
    else
      pg_sess_add(q->s, "query", q->sql, q->nargs, (const char *const *)q->args,
                  pg_query_res, q);
  } else {
    /* Extended protocol: exactly one statement, so the text cannot end
     * the read-only transaction and go on writing. */
    pg_sess_add(q->s, "begin read-only transaction", "BEGIN READ ONLY", 0, NULL,
                NULL, NULL);
    pg_sess_add(q->s, "query", q->sql, q->nargs, (const char *const *)q->args,
                pg_query_res, q);
    pg_sess_add(q->s, "commit", "COMMIT", 0, NULL, NULL, NULL);
  }
  pg_sess_run(q->s, pg_query_done, q);
}

static void pg_query_ident_end(pg_sess *s, void *ud, int rc) {
  pg_query_op *q = ud;
  if (rc != ENG_OK) {
    pg_fail_sess(&q->op, s, rc, "connect");
    return;
  }
  /* the guards with the server's identity: what the SQL does to this
   * database and to those its statements name */
  int g = q->info ? pg_guard_sql(&q->op, &q->id, q->sql,
                                 q->mode == PG_Q_READ_ONLY ? ENG_SQL_READ_ONLY : 0)
                  : pg_guard_db(&q->op, &q->id, q->id.database);
  if (g != ENG_OK) {
    pg_op_finish(&q->op, ENG_ERR_REFUSED);
    return;
  }
  pg_query_queue(q);
}

/* Does the SQL need the guards before it runs? Not when it only reads. */
static int pg_query_guarded(const pg_query_op *q) {
  if (!q->info) return q->write;
  const char *cls = json_string_value(json_object_get(q->info, pg_mode_key(q->mode, "class")));
  return !cls || strcmp(cls, "read") || json_object_get(q->info, "unverified") ||
         json_array_size(json_object_get(q->info, "databases"));
}

static int pg_query_start(eng_call *call, const char *url, const char *sql,
                          const json_t *args, size_t first_arg, int write,
                          int lua, size_t max_rows) {
  int rc = pg_ci_check(call, url, "url");
  if (rc != ENG_OK) return rc;
  json_t *info = pg_sql_info(sql);
  pg_qmode mode;
  char err[512];
  if (pg_query_mode(info, write, lua, &mode, err, sizeof err)) {
    pg_host->fail(call, "%s", err);
    json_decref(info);
    return ENG_ERR_INVALID;
  }
  pg_query_op *q = eng_xcalloc(1, sizeof *q);
  pg_op_init(&q->op, call, pg_query_destroy);
  q->url = eng_xstrdup(url);
  q->sql = eng_xstrdup(sql);
  q->write = write;
  q->lua = lua;
  q->mode = mode;
  q->info = info;
  q->max_rows = max_rows;
  size_t n = json_array_size(args);
  if (n > first_arg) {
    q->nargs = (int)(n - first_arg);
    q->args = eng_xcalloc((size_t)q->nargs, sizeof *q->args);
    for (size_t i = first_arg; i < n; i++)
      q->args[i - first_arg] = pg_arg_text(json_array_get(args, i));
  }
  q->s = pg_sess_open(&q->op, q->url);
  if (pg_query_guarded(q)) {
    pg_ident_add(q->s, &q->id);
    pg_sess_run(q->s, pg_query_ident_end, q);
  } else {
    pg_query_queue(q);
  }
  return ENG_OK;
}

int pg_act_query(eng_call *call, const json_t *params) {
  const char *sql = pg_pstr(params, "sql");
  if (!sql || !*sql) {
    pg_host->fail(call, "parameter 'sql' is empty; give the statement to run");
    return ENG_ERR_INVALID;
  }
  long long max_rows = pg_pint(params, "max_rows", 10000);
  if (max_rows < 0) max_rows = 0;
  int rc;
  char *url = pg_url_conn(call, params, "url", "database", &rc);
  if (!url) return rc;
  rc = pg_query_start(call, url, sql, json_object_get(params, "args"), 0,
                      pg_pbool(params, "write", 0), 0, (size_t)max_rows);
  free(url);
  return rc;
}

int pg_lua_query(eng_call *call, const json_t *args) {
  const json_t *url = json_array_get(args, 0);
  const json_t *sql = json_array_get(args, 1);
  if (!json_is_string(url) || !json_is_string(sql)) {
    pg_host->fail(call, "pg.query(url, sql, ...): url and sql must be "
                        "strings, e.g. pg.query(steps.restore.outputs.url, "
                        "'SELECT count(*) AS n FROM \"User\"')");
    return ENG_ERR_INVALID;
  }
  return pg_query_start(call, json_string_value(url), json_string_value(sql),
                        args, 2, 0, 1, 100000);
}

/* ======== row counts ===================================================== */

/* Counts (and optionally content checksums) of the user tables of one
 * database, in one REPEATABLE READ READ ONLY transaction so every number
 * comes from the same snapshot. Used by row_counts and compare. */
typedef struct pg_counter {
  pg_op *op;
  pg_sess *s;
  int exact;
  int checksums;
  char *schemas_json; /* JSON array of schema names, or NULL = all */
  size_t ntables;
  char **names;  /* "schema.table" (unquoted) */
  char **quoted; /* "schema"."table" */
  long long *counts;
  char **sums;
  int estimated;
  void (*done)(struct pg_counter *c, int rc);
  void *ud;
} pg_counter;

static void pg_counter_free(pg_counter *c) {
  for (size_t i = 0; i < c->ntables; i++) {
    free(c->names[i]);
    free(c->quoted[i]);
    if (c->sums) free(c->sums[i]);
  }
  free(c->names);
  free(c->quoted);
  free(c->counts);
  free(c->sums);
  free(c->schemas_json);
  memset(c, 0, sizeof *c);
}

static int pg_counter_counts_res(pg_sess *s, void *ud, PGresult *res) {
  pg_counter *c = ud;
  (void)s;
  for (int r = 0; r < PQntuples(res); r++) {
    long idx = strtol(PQgetvalue(res, r, 0), NULL, 10);
    if (idx >= 0 && (size_t)idx < c->ntables)
      c->counts[idx] = strtoll(PQgetvalue(res, r, 1), NULL, 10);
  }
  return ENG_OK;
}

static int pg_counter_sum_res(pg_sess *s, void *ud, PGresult *res) {
  pg_counter *c = ud;
  (void)s;
  for (int r = 0; r < PQntuples(res); r++) {
    long idx = strtol(PQgetvalue(res, r, 0), NULL, 10);
    if (idx >= 0 && (size_t)idx < c->ntables) {
      free(c->sums[idx]);
      c->sums[idx] = eng_xstrdup(PQgetvalue(res, r, 1));
    }
  }
  return ENG_OK;
}

/* The table list arrived: queue the counting queries, then COMMIT. */
static int pg_counter_list_res(pg_sess *s, void *ud, PGresult *res) {
  pg_counter *c = ud;
  PGconn *conn = pg_sess_conn(s);
  size_t n = (size_t)PQntuples(res);
  c->ntables = n;
  c->names = eng_xcalloc(n, sizeof *c->names);
  c->quoted = eng_xcalloc(n, sizeof *c->quoted);
  c->counts = eng_xcalloc(n, sizeof *c->counts);
  if (c->checksums) c->sums = eng_xcalloc(n, sizeof *c->sums);
  char **exact = eng_xcalloc(n, sizeof *exact);
  for (size_t i = 0; i < n; i++) {
    const char *nsp = PQgetvalue(res, (int)i, 0);
    const char *rel = PQgetvalue(res, (int)i, 1);
    c->names[i] = eng_asprintf("%s.%s", nsp, rel);
    char *qn = pg_quote_ident(conn, nsp);
    char *qr = pg_quote_ident(conn, rel);
    if (!qn || !qr) {
      free(qn);
      free(qr);
      free(exact);
      pg_sess_seterr(s, "cannot quote the name of table %s", c->names[i]);
      return ENG_ERR_INVALID;
    }
    c->quoted[i] = eng_asprintf("%s.%s", qn, qr);
    free(qn);
    free(qr);
    long long est = strtoll(PQgetvalue(res, (int)i, 2), NULL, 10);
    if (c->exact || est < 0) {
      exact[i] = c->quoted[i];
      c->counts[i] = 0;
    } else {
      c->counts[i] = est;
      c->estimated++;
    }
  }
  /* count(*) in batches of UNION ALL, 50 tables per statement */
  eng_strbuf b = {0};
  size_t in_batch = 0;
  for (size_t i = 0; i < n; i++) {
    if (!exact[i]) continue;
    eng_strbuf_addf(&b, "%sSELECT %zu, count(*) FROM %s",
                    in_batch ? " UNION ALL " : "", i, exact[i]);
    if (++in_batch == 50) {
      pg_sess_add(s, "count rows", b.data, 0, NULL, pg_counter_counts_res, c);
      eng_strbuf_free(&b);
      in_batch = 0;
    }
  }
  if (in_batch)
    pg_sess_add(s, "count rows", b.data, 0, NULL, pg_counter_counts_res, c);
  eng_strbuf_free(&b);
  free(exact);
  if (c->checksums) {
    for (size_t i = 0; i < n; i++) {
      /* Order-independent content checksum: the sum of a 120-bit hash of
       * every row's text, plus the count. No sort, constant memory on the
       * server, whatever the table size. The session settings below make
       * the text of a row the same on both sides. */
      char *sql = eng_asprintf(
          "SELECT %zu, md5(count(*)::text || ':' || "
          "coalesce(sum(('x' || substr(h, 1, 15))::bit(60)::bigint), 0)::text "
          "|| ':' || "
          "coalesce(sum(('x' || substr(h, 16, 15))::bit(60)::bigint), 0)::text)"
          " FROM (SELECT md5(t::text) AS h FROM %s t) s",
          i, c->quoted[i]);
      pg_sess_add(s, "table checksum", sql, 0, NULL, pg_counter_sum_res, c);
      free(sql);
    }
  }
  pg_sess_add(s, "commit", "COMMIT", 0, NULL, NULL, NULL);
  return ENG_OK;
}

static void pg_counter_end(pg_sess *s, void *ud, int rc) {
  pg_counter *c = ud;
  (void)s;
  c->done(c, rc);
}

static void pg_counter_start(pg_counter *c, pg_op *op, const char *url,
                             int exact, int checksums, const json_t *schemas,
                             void (*done)(pg_counter *c, int rc), void *ud) {
  memset(c, 0, sizeof *c);
  c->op = op;
  c->exact = exact;
  c->checksums = checksums;
  c->done = done;
  c->ud = ud;
  if (json_array_size(schemas) > 0)
    c->schemas_json = json_dumps(schemas, JSON_COMPACT);
  c->s = pg_sess_open(op, url);
  pg_sess_add(c->s, "begin read-only transaction",
              "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, NULL,
              NULL);
  if (checksums)
    pg_sess_add_script(c->s, "set output formats",
                       "SET LOCAL TimeZone = 'UTC'; "
                       "SET LOCAL DateStyle = 'ISO, YMD'; "
                       "SET LOCAL IntervalStyle = 'postgres'; "
                       "SET LOCAL bytea_output = 'hex'; "
                       "SET LOCAL extra_float_digits = 1",
                       NULL, NULL);
  const char *p[1] = {c->schemas_json};
  pg_sess_add(c->s, "list tables",
              "SELECT n.nspname, c.relname, c.reltuples::bigint "
              "FROM pg_catalog.pg_class c "
              "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
              "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
              "AND " PG_USER_SCHEMAS "AND ($1::json IS NULL OR n.nspname IN "
              "(SELECT json_array_elements_text($1::json))) "
              "ORDER BY 1, 2",
              1, p, pg_counter_list_res, c);
  pg_sess_run(c->s, pg_counter_end, c);
}

static json_t *pg_counter_tables(const pg_counter *c, long long *total) {
  json_t *t = json_object();
  *total = 0;
  for (size_t i = 0; i < c->ntables; i++) {
    json_object_set_new(t, c->names[i], json_integer(c->counts[i]));
    *total += c->counts[i];
  }
  return t;
}

typedef struct pg_rowcount_op {
  pg_op op;
  pg_counter c;
} pg_rowcount_op;

static void pg_rowcount_destroy(pg_op *op) {
  pg_rowcount_op *r = (pg_rowcount_op *)op;
  pg_counter_free(&r->c);
  free(r);
}

static void pg_rowcount_done(pg_counter *c, int rc) {
  pg_rowcount_op *r = c->ud;
  if (rc != ENG_OK) {
    pg_fail_sess(&r->op, c->s, rc, "counting rows");
    return;
  }
  long long total;
  json_t *tables = pg_counter_tables(c, &total);
  pg_host->output(r->op.e.call, "tables", tables);
  pg_host->output(r->op.e.call, "total", json_integer(total));
  pg_host->output(r->op.e.call, "table_count",
                  json_integer((json_int_t)c->ntables));
  pg_host->output(r->op.e.call, "estimated", json_integer(c->estimated));
  pg_host->output(r->op.e.call, "summary",
                  json_sprintf("%lld rows in %zu tables%s", total, c->ntables,
                               c->estimated ? " (some estimated)" : ""));
  pg_host->log(r->op.e.call, ENG_LOG_INFO, "%zu tables, %lld rows%s on %s",
               c->ntables, total, c->estimated ? " (some estimated)" : "",
               pg_sess_display(c->s));
  pg_op_finish(&r->op, ENG_OK);
}

int pg_act_row_counts(eng_call *call, const json_t *params) {
  int rc;
  char *url = pg_url_conn(call, params, "url", "database", &rc);
  if (!url) return rc;
  pg_rowcount_op *r = eng_xcalloc(1, sizeof *r);
  pg_op_init(&r->op, call, pg_rowcount_destroy);
  pg_counter_start(&r->c, &r->op, url, pg_pbool(params, "exact", 1), 0,
                   json_object_get(params, "schemas"), pg_rowcount_done, r);
  free(url);
  return ENG_OK;
}

/* ======== compare ======================================================== */

typedef struct pg_compare_op {
  pg_op op;
  pg_counter src, dst;
  int pending;
  double tolerance;
  int checksums;
  int fail_on_mismatch;
} pg_compare_op;

static void pg_compare_destroy(pg_op *op) {
  pg_compare_op *c = (pg_compare_op *)op;
  pg_counter_free(&c->src);
  pg_counter_free(&c->dst);
  free(c);
}

static long pg_counter_find(const pg_counter *c, const char *name) {
  for (size_t i = 0; i < c->ntables; i++)
    if (!strcmp(c->names[i], name)) return (long)i;
  return -1;
}

static void pg_compare_finish(pg_compare_op *c) {
  json_t *diffs = json_array();
  size_t compared = 0;
  for (size_t i = 0; i < c->src.ntables; i++) {
    const char *name = c->src.names[i];
    long j = pg_counter_find(&c->dst, name);
    long long sn = c->src.counts[i];
    if (j < 0) {
      json_array_append_new(diffs, json_pack("{s:s, s:s, s:I}", "table", name,
                                             "kind", "missing_in_target",
                                             "source", (json_int_t)sn));
      continue;
    }
    compared++;
    long long tn = c->dst.counts[j];
    double base = sn > 0 ? (double)sn : 1.0;
    double rel = (double)(sn > tn ? sn - tn : tn - sn) / base;
    if (sn != tn && rel > c->tolerance) {
      json_array_append_new(diffs, json_pack("{s:s, s:s, s:I, s:I}", "table",
                                             name, "kind", "row_count",
                                             "source", (json_int_t)sn, "target",
                                             (json_int_t)tn));
      continue;
    }
    if (c->checksums && c->src.sums && c->dst.sums && c->src.sums[i] &&
        c->dst.sums[j] && strcmp(c->src.sums[i], c->dst.sums[j]) != 0)
      json_array_append_new(diffs, json_pack("{s:s, s:s, s:s, s:s}", "table",
                                             name, "kind", "checksum", "source",
                                             c->src.sums[i], "target",
                                             c->dst.sums[j]));
  }
  for (size_t j = 0; j < c->dst.ntables; j++)
    if (pg_counter_find(&c->src, c->dst.names[j]) < 0)
      json_array_append_new(diffs, json_pack("{s:s, s:s, s:I}", "table",
                                             c->dst.names[j], "kind",
                                             "extra_in_target", "target",
                                             (json_int_t)c->dst.counts[j]));
  long long st, tt;
  json_decref(pg_counter_tables(&c->src, &st));
  json_decref(pg_counter_tables(&c->dst, &tt));
  eng_call *call = c->op.e.call;
  size_t nd = json_array_size(diffs);
  pg_host->output(call, "match", json_boolean(nd == 0));
  pg_host->output(call, "tables", json_integer((json_int_t)compared));
  pg_host->output(call, "source_total", json_integer(st));
  pg_host->output(call, "target_total", json_integer(tt));
  if (nd && c->fail_on_mismatch) {
    char *first = json_dumps(json_array_get(diffs, 0), JSON_COMPACT);
    pg_host->output(call, "differences", diffs);
    pg_op_fail(&c->op, ENG_ERR_FAILED,
               "%s and %s differ in %zu table(s) (first: %s); inspect the "
               "`differences` output, or set fail_on_mismatch: false / a "
               "tolerance for a live source",
               pg_sess_display(c->src.s), pg_sess_display(c->dst.s), nd,
               first ? first : "?");
    free(first);
    return;
  }
  pg_host->output(call, "differences", diffs);
  pg_host->log(call, ENG_LOG_INFO,
               "compared %zu tables: %s (source %lld rows, target %lld rows)",
               compared, nd ? "differences found" : "match", st, tt);
  pg_op_finish(&c->op, ENG_OK);
}

static void pg_compare_side_done(pg_counter *k, int rc) {
  pg_compare_op *c = k->ud;
  if (rc != ENG_OK) {
    char doing[64];
    snprintf(doing, sizeof doing, "counting rows of the %s",
             k == &c->src ? "source" : "target");
    pg_fail_sess(&c->op, k->s, rc, doing);
    return;
  }
  if (--c->pending == 0) pg_compare_finish(c);
}

int pg_act_compare(eng_call *call, const json_t *params) {
  const char *target = pg_pstr(params, "target");
  if (!target || !*target) {
    pg_host->fail(call, "parameter 'target' is empty; give the URL of the "
                        "restored database");
    return ENG_ERR_INVALID;
  }
  double tol = pg_pnum(params, "tolerance", 0.0);
  if (tol < 0) {
    pg_host->fail(call, "tolerance must be >= 0 (a relative difference, "
                        "0.01 = 1%%)");
    return ENG_ERR_INVALID;
  }
  int rc;
  char *src = pg_url_conn(call, params, "source", "source_database", &rc);
  char *dst = src ? pg_url_conn(call, params, "target", "target_database", &rc)
                  : NULL;
  if (!dst) {
    free(src);
    return rc;
  }
  pg_compare_op *c = eng_xcalloc(1, sizeof *c);
  pg_op_init(&c->op, call, pg_compare_destroy);
  c->tolerance = tol;
  c->checksums = pg_pbool(params, "checksums", 0);
  c->fail_on_mismatch = pg_pbool(params, "fail_on_mismatch", 1);
  c->pending = 2;
  int exact = pg_pbool(params, "exact", 1);
  const json_t *schemas = json_object_get(params, "schemas");
  pg_counter_start(&c->src, &c->op, src, exact, c->checksums, schemas,
                   pg_compare_side_done, c);
  if (!c->op.e.finished)
    pg_counter_start(&c->dst, &c->op, dst, exact, c->checksums, schemas,
                     pg_compare_side_done, c);
  free(src);
  free(dst);
  return ENG_OK;
}

/* ======== verify ========================================================= */

typedef struct pg_fk {
  struct pg_verify_op *v;
  char *name, *table, *ref;
} pg_fk;

typedef struct pg_verify_op {
  pg_op op;
  char *url;
  pg_sess *s;
  pg_ident id;
  json_t *issues;
  pg_fk *fks;
  size_t nfk;
  int fail_on_issues;
} pg_verify_op;

static void pg_verify_destroy(pg_op *op) {
  pg_verify_op *v = (pg_verify_op *)op;
  for (size_t i = 0; i < v->nfk; i++) {
    free(v->fks[i].name);
    free(v->fks[i].table);
    free(v->fks[i].ref);
  }
  free(v->fks);
  json_decref(v->issues);
  free(v->url);
  free(v);
}

static int pg_verify_invalid_idx(pg_sess *s, void *ud, PGresult *res) {
  pg_verify_op *v = ud;
  (void)s;
  for (int r = 0; r < PQntuples(res); r++)
    json_array_append_new(
        v->issues,
        json_pack("{s:s, s:s, s:s, s:s}", "kind", "invalid_index", "table",
                  PQgetvalue(res, r, 0), "name", PQgetvalue(res, r, 1), "fix",
                  "REINDEX INDEX CONCURRENTLY, or drop and recreate it"));
  return ENG_OK;
}

static int pg_verify_not_valid(pg_sess *s, void *ud, PGresult *res) {
  pg_verify_op *v = ud;
  (void)s;
  for (int r = 0; r < PQntuples(res); r++)
    json_array_append_new(v->issues, json_pack("{s:s, s:s, s:s, s:s}", "kind",
                                               "not_validated_constraint",
                                               "table", PQgetvalue(res, r, 0),
                                               "name", PQgetvalue(res, r, 1),
                                               "type", PQgetvalue(res, r, 2)));
  return ENG_OK;
}

static int pg_verify_fk_count(pg_sess *s, void *ud, PGresult *res) {
  pg_fk *fk = ud;
  (void)s;
  long long n = PQntuples(res) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
  if (n > 0)
    json_array_append_new(fk->v->issues,
                          json_pack("{s:s, s:s, s:s, s:s, s:I}", "kind",
                                    "fk_violation", "table", fk->table, "name",
                                    fk->name, "references", fk->ref, "rows",
                                    (json_int_t)n));
  return ENG_OK;
}

/* Append "alias.col1" lists: `sep` between items. */
static int pg_cols_sql(eng_strbuf *b, PGconn *conn, const json_t *cols,
                       const char *fmt_a, const json_t *cols2,
                       const char *sep) {
  size_t i;
  json_t *c;
  json_array_foreach(cols, i, c) {
    const char *name = json_string_value(c);
    if (!name) return -1;
    char *q = pg_quote_ident(conn, name);
    if (!q) return -1;
    if (i) eng_strbuf_adds(b, sep);
    if (cols2) {
      const char *n2 = json_string_value(json_array_get(cols2, i));
      char *q2 = n2 ? pg_quote_ident(conn, n2) : NULL;
      if (!q2) {
        free(q);
        return -1;
      }
      eng_strbuf_addf(b, "p.%s = c.%s", q2, q);
      free(q2);
    } else {
      eng_strbuf_addf(b, fmt_a, q);
    }
    free(q);
  }
  return 0;
}

/* For each foreign key: count child rows whose key has no parent row. */
static int pg_verify_fk_list(pg_sess *s, void *ud, PGresult *res) {
  pg_verify_op *v = ud;
  PGconn *conn = pg_sess_conn(s);
  size_t n = (size_t)PQntuples(res);
  v->fks = eng_xcalloc(n ? n : 1, sizeof *v->fks);
  for (size_t r = 0; r < n; r++) {
    int row = (int)r;
    const char *cn = PQgetvalue(res, row, 1), *ct = PQgetvalue(res, row, 2);
    const char *pn = PQgetvalue(res, row, 3), *pt = PQgetvalue(res, row, 4);
    int full = PQgetvalue(res, row, 5)[0] == 'f';
    json_t *ccols = json_loads(PQgetvalue(res, row, 6), 0, NULL);
    json_t *pcols = json_loads(PQgetvalue(res, row, 7), 0, NULL);
    char *qcn = pg_quote_ident(conn, cn), *qct = pg_quote_ident(conn, ct);
    char *qpn = pg_quote_ident(conn, pn), *qpt = pg_quote_ident(conn, pt);
    eng_strbuf b = {0};
    int bad = !ccols || !pcols || !qcn || !qct || !qpn || !qpt ||
              json_array_size(ccols) != json_array_size(pcols) ||
              !json_array_size(ccols);
    if (!bad) {
      eng_strbuf_addf(&b, "SELECT count(*) FROM %s.%s c WHERE ", qcn, qct);
      if (full) {
        eng_strbuf_adds(&b, "NOT (");
        bad |= pg_cols_sql(&b, conn, ccols, "c.%s IS NULL", NULL, " AND ");
        eng_strbuf_adds(&b, ") AND ((");
        bad |= pg_cols_sql(&b, conn, ccols, "c.%s IS NULL", NULL, " OR ");
        eng_strbuf_adds(&b, ") OR ");
      } else {
        bad |= pg_cols_sql(&b, conn, ccols, "c.%s IS NOT NULL", NULL, " AND ");
        eng_strbuf_adds(&b, " AND ");
      }
      eng_strbuf_addf(&b, "NOT EXISTS (SELECT 1 FROM %s.%s p WHERE ", qpn, qpt);
      bad |= pg_cols_sql(&b, conn, ccols, NULL, pcols, " AND ");
      eng_strbuf_adds(&b, full ? "))" : ")");
    }
    if (!bad) {
      pg_fk *fk = &v->fks[v->nfk++];
      fk->v = v;
      fk->name = eng_xstrdup(PQgetvalue(res, row, 0));
      fk->table = eng_asprintf("%s.%s", cn, ct);
      fk->ref = eng_asprintf("%s.%s", pn, pt);
      pg_sess_add(s, "foreign key check", b.data, 0, NULL, pg_verify_fk_count,
                  fk);
    } else {
      pg_host->log(v->op.e.call, ENG_LOG_WARN,
                   "cannot check foreign key %s on %s.%s (unexpected catalog "
                   "data); skipped",
                   PQgetvalue(res, row, 0), cn, ct);
    }
    eng_strbuf_free(&b);
    json_decref(ccols);
    json_decref(pcols);
    free(qcn);
    free(qct);
    free(qpn);
    free(qpt);
  }
  pg_sess_add(s, "commit", "COMMIT", 0, NULL, NULL, NULL);
  return ENG_OK;
}

static void pg_verify_done(pg_sess *s, void *ud, int rc) {
  pg_verify_op *v = ud;
  if (rc != ENG_OK) {
    pg_fail_sess(&v->op, s, rc, "verify");
    return;
  }
  eng_call *call = v->op.e.call;
  size_t n = json_array_size(v->issues);
  pg_host->output(call, "ok", json_boolean(n == 0));
  pg_host->output(call, "foreign_keys_checked",
                  json_integer((json_int_t)v->nfk));
  if (n && v->fail_on_issues) {
    char *first = json_dumps(json_array_get(v->issues, 0), JSON_COMPACT);
    pg_host->output(call, "issues", json_incref(v->issues));
    pg_op_fail(&v->op, ENG_ERR_FAILED,
               "database %s has %zu integrity issue(s) (first: %s); see the "
               "`issues` output (or set fail_on_issues: false to only report)",
               pg_sess_display(s), n, first ? first : "?");
    free(first);
    return;
  }
  pg_host->output(call, "issues", json_incref(v->issues));
  pg_host->log(call, ENG_LOG_INFO, "%s: %zu foreign keys checked, %zu issue(s)",
               pg_sess_display(s), v->nfk, n);
  pg_op_finish(&v->op, ENG_OK);
}

/* The user schemas' foreign keys with their columns in order; FILTER, a
 * string literal ending in "AND ", narrows the constraints (on 11+,
 * "con.conparentid = 0 AND " leaves out the partitions' copies). */
#define PG_FK_LIST_SQL(FILTER)                                                 \
  "SELECT con.conname, n.nspname, cc.relname, fn.nspname, "                    \
  "fc.relname, con.confmatchtype, "                                            \
  "(SELECT json_agg(a.attname ORDER BY k.ord) FROM "                           \
  "unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord) JOIN "                 \
  "pg_catalog.pg_attribute a ON a.attrelid = con.conrelid AND "                \
  "a.attnum = k.attnum)::text, "                                               \
  "(SELECT json_agg(a.attname ORDER BY k.ord) FROM "                           \
  "unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord) JOIN "                \
  "pg_catalog.pg_attribute a ON a.attrelid = con.confrelid AND "               \
  "a.attnum = k.attnum)::text "                                                \
  "FROM pg_catalog.pg_constraint con "                                         \
  "JOIN pg_catalog.pg_class cc ON cc.oid = con.conrelid "                      \
  "JOIN pg_catalog.pg_namespace n ON n.oid = cc.relnamespace "                 \
  "JOIN pg_catalog.pg_class fc ON fc.oid = con.confrelid "                     \
  "JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace "               \
  "WHERE con.contype = 'f' AND " FILTER PG_USER_SCHEMAS "ORDER BY 2, 3, 1"

static void pg_verify_ident_end(pg_sess *s, void *ud, int rc) {
  pg_verify_op *v = ud;
  if (rc != ENG_OK) {
    pg_fail_sess(&v->op, s, rc, "connect");
    return;
  }
  pg_sess_add(s, "begin read-only transaction",
              "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, NULL,
              NULL);
  pg_sess_add(s, "find invalid indexes",
              "SELECT n.nspname || '.' || t.relname, c.relname "
              "FROM pg_catalog.pg_index i "
              "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
              "JOIN pg_catalog.pg_class t ON t.oid = i.indrelid "
              "JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace "
              "WHERE NOT i.indisvalid AND " PG_USER_SCHEMAS "ORDER BY 1, 2",
              0, NULL, pg_verify_invalid_idx, v);
  pg_sess_add(s, "find constraints not validated",
              "SELECT n.nspname || '.' || t.relname, con.conname, "
              "CASE con.contype WHEN 'f' THEN 'foreign key' "
              "WHEN 'c' THEN 'check' ELSE con.contype::text END "
              "FROM pg_catalog.pg_constraint con "
              "JOIN pg_catalog.pg_class t ON t.oid = con.conrelid "
              "JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace "
              "WHERE NOT con.convalidated AND " PG_USER_SCHEMAS "ORDER BY 1, 2",
              0, NULL, pg_verify_not_valid, v);
  pg_sess_add(s, "list foreign keys",
              v->id.version_num >= 110000
                  ? PG_FK_LIST_SQL("con.conparentid = 0 AND ")
                  : PG_FK_LIST_SQL(""),
              0, NULL, pg_verify_fk_list, v);
  pg_sess_run(s, pg_verify_done, v);
}

int pg_act_verify(eng_call *call, const json_t *params) {
  int rc;
  char *url = pg_url_conn(call, params, "url", "database", &rc);
  if (!url) return rc;
  pg_verify_op *v = eng_xcalloc(1, sizeof *v);
  pg_op_init(&v->op, call, pg_verify_destroy);
  v->url = url;
  v->issues = json_array();
  v->fail_on_issues = pg_pbool(params, "fail_on_issues", 1);
  v->s = pg_sess_open(&v->op, v->url);
  pg_ident_add(v->s, &v->id);
  pg_sess_run(v->s, pg_verify_ident_end, v);
  return ENG_OK;
}

/* ======== connections ==================================================== */

typedef struct pg_conns_op {
  pg_op op;
  char *url;
  char *db;
  int terminate;
  pg_sess *s;
  pg_ident id;
  json_t *list;
} pg_conns_op;

static void pg_conns_destroy(pg_op *op) {
  pg_conns_op *c = (pg_conns_op *)op;
  free(c->url);
  free(c->db);
  json_decref(c->list);
  free(c);
}

static int pg_conns_res(pg_sess *s, void *ud, PGresult *res) {
  pg_conns_op *c = ud;
  (void)s;
  json_decref(c->list);
  c->list = pg_rows_json(res, 100000);
  return ENG_OK;
}

static void pg_conns_done(pg_sess *s, void *ud, int rc) {
  pg_conns_op *c = ud;
  if (rc != ENG_OK) {
    pg_fail_sess(&c->op, s, rc,
                 c->terminate ? "terminating connections"
                              : "listing connections");
    return;
  }
  size_t i, terminated = 0;
  json_t *row;
  json_array_foreach(c->list, i, row) {
    if (json_is_true(json_object_get(row, "terminated"))) terminated++;
  }
  eng_call *call = c->op.e.call;
  if (c->terminate)
    pg_host->log(call, ENG_LOG_INFO,
                 "terminated %zu of %zu connection(s) to database %s on %s:%s",
                 terminated, json_array_size(c->list), c->db, c->id.host,
                 c->id.port);
  pg_host->output(call, "count",
                  json_integer((json_int_t)json_array_size(c->list)));
  pg_host->output(call, "terminated", json_integer((json_int_t)terminated));
  pg_host->output(call, "connections", c->list);
  c->list = NULL;
  pg_op_finish(&c->op, ENG_OK);
}

static void pg_conns_ident_end(pg_sess *s, void *ud, int rc) {
  pg_conns_op *c = ud;
  if (rc != ENG_OK) {
    pg_fail_sess(&c->op, s, rc, "connect");
    return;
  }
  if (!c->db) c->db = eng_xstrdup(c->id.database);
  if (c->terminate && pg_guard_db(&c->op, &c->id, c->db) != ENG_OK) {
    pg_op_finish(&c->op, ENG_ERR_REFUSED);
    return;
  }
  const char *p[1] = {c->db};
  if (c->terminate)
    pg_sess_add(s, "terminate connections",
                "SELECT pid, usename AS user, application_name, "
                "client_addr::text AS client_addr, state, backend_start, "
                "query_start, left(query, 200) AS query, "
                "pg_terminate_backend(pid) AS terminated "
                "FROM pg_catalog.pg_stat_activity WHERE datname = $1 AND "
                "pid <> pg_backend_pid() AND backend_type = 'client backend' "
                "ORDER BY pid",
                1, p, pg_conns_res, c);
  else
    pg_sess_add(s, "list connections",
                "SELECT pid, usename AS user, application_name, "
                "client_addr::text AS client_addr, state, backend_start, "
                "query_start, left(query, 200) AS query "
                "FROM pg_catalog.pg_stat_activity WHERE datname = $1 AND "
                "pid <> pg_backend_pid() ORDER BY pid",
                1, p, pg_conns_res, c);
  pg_sess_run(s, pg_conns_done, c);
}

int pg_act_connections(eng_call *call, const json_t *params) {
  const char *url = pg_url_param(params, "url");
  int rc = pg_ci_check(call, url, "url");
  if (rc != ENG_OK) return rc;
  pg_conns_op *c = eng_xcalloc(1, sizeof *c);
  pg_op_init(&c->op, call, pg_conns_destroy);
  c->url = eng_xstrdup(url);
  const char *db = pg_pstr(params, "database");
  c->db = db && *db ? eng_xstrdup(db) : NULL;
  c->terminate = pg_pbool(params, "terminate", 0);
  c->s = pg_sess_open(&c->op, c->url);
  pg_ident_add(c->s, &c->id);
  pg_sess_run(c->s, pg_conns_ident_end, c);
  return ENG_OK;
}

/* ======== create_database, drop_database ================================= */

json_t *pg_undo_detail(const char *admin_url, const char *db) {
  return json_pack("{s:{s:s, s:{s:s, s:s, s:b, s:b}}, s:s}", "undo", "action",
                   "postgres.drop_database", "with", "url", admin_url,
                   "database", db, "if_exists", 1, "force", 1, "database", db);
}

char *pg_create_db_sql(PGconn *conn, const char *db, const char *tmpl,
                       const char *owner) {
  char *qd = pg_quote_ident(conn, db);
  char *qt = tmpl && *tmpl ? pg_quote_ident(conn, tmpl) : NULL;
  char *qo = owner && *owner ? pg_quote_ident(conn, owner) : NULL;
  char *sql = NULL;
  if (qd && (!tmpl || !*tmpl || qt) && (!owner || !*owner || qo))
    sql = eng_asprintf("CREATE DATABASE %s%s%s%s%s", qd, qt ? " TEMPLATE " : "",
                       qt ? qt : "", qo ? " OWNER " : "", qo ? qo : "");
  free(qd);
  free(qt);
  free(qo);
  return sql;
}

char *pg_drop_db_sql(PGconn *conn, const char *db, int if_exists, int force,
                     int version_num) {
  char *qd = pg_quote_ident(conn, db);
  if (!qd) return NULL;
  char *sql =
      eng_asprintf("DROP DATABASE %s%s%s", if_exists ? "IF EXISTS " : "", qd,
                   force && version_num >= 130000 ? " WITH (FORCE)" : "");
  free(qd);
  return sql;
}

/* Before PostgreSQL 13 there is no WITH (FORCE): terminate first. */
void pg_add_terminate(pg_sess *s, const char *db) {
  const char *p[1] = {db};
  pg_sess_add(s, "terminate connections",
              "SELECT count(pg_terminate_backend(pid)) FROM "
              "pg_catalog.pg_stat_activity WHERE datname = $1 AND "
              "pid <> pg_backend_pid()",
              1, p, NULL, NULL);
}

static int pg_exists_res(pg_sess *s, void *ud, PGresult *res) {
  (void)s;
  *(int *)ud = PQntuples(res) > 0;
  return ENG_OK;
}

void pg_add_exists(pg_sess *s, const char *db, int *exists) {
  const char *p[1] = {db};
  pg_sess_add(s, "look up the database",
              "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", 1, p,
              pg_exists_res, exists);
}

typedef struct pg_dbop {
  pg_op op;
  char *url;   /* as given: recorded in the journal's undo */
  char *admin; /* where we connect */
  char *db;
  char *tmpl, *owner;
  int if_exists, force;
  int exists;
  pg_sess *s;
  pg_ident id;
  char *target;
  int64_t token;
} pg_dbop;

static void pg_dbop_destroy(pg_op *op) {
  pg_dbop *d = (pg_dbop *)op;
  free(d->url);
  free(d->admin);
  free(d->db);
  free(d->tmpl);
  free(d->owner);
  free(d->target);
  free(d);
}

static void pg_create_done(pg_sess *s, void *ud, int rc) {
  pg_dbop *d = ud;
  eng_call *call = d->op.e.call;
  if (rc != ENG_OK) {
    pg_host->journal_removed(call, "database", d->target);
    pg_op_fail(&d->op, rc, "creating database %s on %s:%s failed: %s; %s",
               d->db, d->id.host, d->id.port, pg_sess_errmsg(s),
               rc == ENG_ERR_EXISTS
                   ? "choose another name or drop it first"
                   : "check that the user may create databases (CREATEDB) "
                     "and that the template is not in use");
    return;
  }
  pg_host->journal_confirm(call, d->token);
  pg_host->output(call, "database", json_string(d->db));
  char *url = pg_url_with_db(d->url, d->db);
  pg_host->output(call, "url", json_string(url ? url : ""));
  free(url);
  pg_host->log(call, ENG_LOG_INFO, "created database %s on %s:%s", d->db,
               d->id.host, d->id.port);
  pg_op_finish(&d->op, ENG_OK);
}

static void pg_create_checked(pg_sess *s, void *ud, int rc) {
  pg_dbop *d = ud;
  if (rc != ENG_OK) {
    pg_fail_sess(&d->op, s, rc, "connect");
    return;
  }
  if (pg_guard_db(&d->op, &d->id, d->db) != ENG_OK) {
    pg_op_finish(&d->op, ENG_ERR_REFUSED);
    return;
  }
  if (d->exists) {
    pg_op_fail(&d->op, ENG_ERR_EXISTS,
               "database %s already exists on %s:%s; choose another name or "
               "drop it first (postgres.drop_database)",
               d->db, d->id.host, d->id.port);
    return;
  }
  char *sql = pg_create_db_sql(pg_sess_conn(s), d->db, d->tmpl, d->owner);
  if (!sql) {
    pg_op_fail(&d->op, ENG_ERR_INVALID,
               "cannot quote database name %s (not valid in the "
               "server's encoding); choose another name",
               d->db);
    return;
  }
  d->target = pg_ident_target(&d->id, d->db);
  json_t *detail = pg_undo_detail(d->url, d->db);
  d->token = pg_host->journal_intent(d->op.e.call, "database", d->target, detail);
  json_decref(detail);
  if (d->token < 0) { /* unrecorded: nothing could clean it up (the host said why) */
    free(sql);
    pg_op_finish(&d->op, ENG_ERR_IO);
    return;
  }
  pg_sess_add(s, "create database", sql, 0, NULL, NULL, NULL);
  free(sql);
  pg_sess_run(s, pg_create_done, d);
}

int pg_act_create_database(eng_call *call, const json_t *params) {
  const char *url = pg_url_param(params, "url");
  const char *db = pg_pstr(params, "database");
  int rc = pg_ci_check(call, url, "url");
  if (rc != ENG_OK) return rc;
  if (!db || !*db) {
    pg_host->fail(call, "parameter 'database' is empty; name the database "
                        "to create");
    return ENG_ERR_INVALID;
  }
  pg_dbop *d = eng_xcalloc(1, sizeof *d);
  pg_op_init(&d->op, call, pg_dbop_destroy);
  d->url = eng_xstrdup(url);
  d->db = eng_xstrdup(db);
  d->tmpl = eng_xstrdup(pg_pstr(params, "template"));
  d->owner = eng_xstrdup(pg_pstr(params, "owner"));
  d->s = pg_sess_open(&d->op, d->url);
  pg_ident_add(d->s, &d->id);
  pg_add_exists(d->s, d->db, &d->exists);
  pg_sess_run(d->s, pg_create_checked, d);
  return ENG_OK;
}

static void pg_drop_done(pg_sess *s, void *ud, int rc) {
  pg_dbop *d = ud;
  eng_call *call = d->op.e.call;
  if (rc != ENG_OK) {
    int busy = !strcmp(pg_sess_sqlstate(s), "55006");
    pg_op_fail(&d->op, rc, "dropping database %s on %s:%s failed: %s; %s",
               d->db, d->id.host, d->id.port, pg_sess_errmsg(s),
               busy ? "other sessions use it: set force: true to terminate "
                      "them, or stop the application first"
                    : "check that the user owns the database");
    return;
  }
  pg_host->journal_removed(call, "database", d->target);
  pg_host->output(call, "dropped", json_true());
  pg_host->log(call, ENG_LOG_INFO, "dropped database %s on %s:%s", d->db,
               d->id.host, d->id.port);
  pg_op_finish(&d->op, ENG_OK);
}

static void pg_drop_checked(pg_sess *s, void *ud, int rc) {
  pg_dbop *d = ud;
  if (rc != ENG_OK) {
    pg_fail_sess(&d->op, s, rc, "connect");
    return;
  }
  d->target = pg_ident_target(&d->id, d->db);
  /* Nothing to destroy when it is not there: no guard needed for that. */
  if (d->exists && pg_guard_db(&d->op, &d->id, d->db) != ENG_OK) {
    pg_op_finish(&d->op, ENG_ERR_REFUSED);
    return;
  }
  if (!d->exists) {
    if (d->if_exists) {
      pg_host->log(d->op.e.call, ENG_LOG_INFO,
                   "database %s does not exist on %s:%s; nothing to drop",
                   d->db, d->id.host, d->id.port);
      pg_host->output(d->op.e.call, "dropped", json_false());
      pg_op_finish(&d->op, ENG_OK);
      return;
    }
    pg_op_fail(&d->op, ENG_ERR_NOTFOUND,
               "database %s does not exist on %s:%s; check the name, or set "
               "if_exists: true to accept that it is already gone",
               d->db, d->id.host, d->id.port);
    return;
  }
  char *sql = pg_drop_db_sql(pg_sess_conn(s), d->db, d->if_exists, d->force,
                             d->id.version_num);
  if (!sql) {
    pg_op_fail(&d->op, ENG_ERR_INVALID,
               "cannot quote database name %s (not valid in the "
               "server's encoding); choose another name",
               d->db);
    return;
  }
  pg_sess_quiet(s, 1);
  if (d->force && d->id.version_num < 130000) pg_add_terminate(s, d->db);
  pg_sess_add(s, "drop database", sql, 0, NULL, NULL, NULL);
  free(sql);
  pg_sess_run(s, pg_drop_done, d);
}

int pg_act_drop_database(eng_call *call, const json_t *params) {
  const char *url = pg_url_param(params, "url");
  int rc = pg_ci_check(call, url, "url");
  if (rc != ENG_OK) return rc;
  const char *db = pg_pstr(params, "database");
  char *urldb = pg_url_dbname(url);
  pg_dbop *d = eng_xcalloc(1, sizeof *d);
  pg_op_init(&d->op, call, pg_dbop_destroy);
  d->url = eng_xstrdup(url);
  d->db = eng_xstrdup(db && *db ? db : urldb);
  if (!d->db) {
    free(urldb);
    pg_op_fail(&d->op, ENG_ERR_INVALID,
               "no database to drop: set 'database' or put it in the URL");
    return ENG_OK;
  }
  /* A database cannot be dropped from a session connected to it. */
  if (urldb && !strcmp(urldb, d->db))
    d->admin = pg_url_with_db(url, "postgres");
  else
    d->admin = eng_xstrdup(url);
  free(urldb);
  d->if_exists = pg_pbool(params, "if_exists", 0);
  d->force = pg_pbool(params, "force", 0);
  d->s = pg_sess_open(&d->op, d->admin);
  pg_ident_add(d->s, &d->id);
  pg_add_exists(d->s, d->db, &d->exists);
  pg_sess_run(d->s, pg_drop_checked, d);
  return ENG_OK;
}
