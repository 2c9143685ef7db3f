/*
 * pg_conn.c - an asynchronous libpq session: connect, then run a queue of
 * queries, without ever blocking the loop.
 *
 * Connecting: PQconnectStartParams, then PQconnectPoll each time the host
 * reports the socket ready in the direction libpq asked for. libpq may
 * close and reopen its socket while it polls (another host of a list, SSL
 * or GSS fallback), so the watch is re-armed on PQsocket after every poll.
 * libpq does not enforce connect_timeout in this mode: a timer does.
 *
 * Queries: PQsendQueryParams (one statement, extended protocol) or
 * PQsendQuery (scripts), PQflush while the socket is writable, and
 * PQconsumeInput / PQisBusy / PQgetResult when it is readable.
 *
 * Re-entrancy: handlers may close the session (or finish the whole op) from
 * inside a callback. `depth` counts the callbacks on the stack; a closed
 * session is freed when the outermost one returns.
 */
#include "pg_int.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define PG_DEFAULT_CONNECT_TIMEOUT_MS 10000

typedef struct pg_query {
  struct pg_query *next;
  char *label;
  char *sql;
  int n;
  char **params;
  int script;
  pg_res_fn fn;
  void *ud;
} pg_query;

enum { PG_S_NEW, PG_S_CONNECTING, PG_S_IDLE, PG_S_BUSY, PG_S_BROKEN };

struct pg_sess {
  pg_op *op;
  char *conninfo;
  char *display;
  PGconn *conn;
  int state;
  int depth;
  int closed;
  int quiet;
  int64_t connect_timeout_ms;
  eng_watch *watch;
  int watch_fd;
  int watch_events;
  eng_timer *timer;
  pg_query *head, *tail;
  pg_query *cur;
  PGresult *cur_res; /* last good result of the current query */
  int cur_failed;
  pg_end_fn end;
  void *end_ud;
  char err[2048];
  char sqlstate[6];
};

/* ---- queue -------------------------------------------------------------- */

static void pg_query_free(pg_query *q) {
  if (!q) return;
  for (int i = 0; i < q->n; i++) free(q->params[i]);
  free(q->params);
  free(q->sql);
  free(q->label);
  free(q);
}

static void pg_sess_push(pg_sess *s, pg_query *q) {
  if (s->tail)
    s->tail->next = q;
  else
    s->head = q;
  s->tail = q;
}

void pg_sess_add(pg_sess *s, const char *label, const char *sql, int n,
                 const char *const *params, pg_res_fn fn, void *ud) {
  pg_query *q = eng_xcalloc(1, sizeof *q);
  q->label = eng_xstrdup(label);
  q->sql = eng_xstrdup(sql);
  q->n = n;
  if (n > 0) {
    q->params = eng_xcalloc((size_t)n, sizeof *q->params);
    for (int i = 0; i < n; i++) q->params[i] = eng_xstrdup(params[i]);
  }
  q->fn = fn;
  q->ud = ud;
  pg_sess_push(s, q);
}

void pg_sess_add_script(pg_sess *s, const char *label, const char *sql,
                        pg_res_fn fn, void *ud) {
  pg_sess_add(s, label, sql, 0, NULL, fn, ud);
  s->tail->script = 1;
}

/* ---- open close --------------------------------------------------------- */

static pg_sess *pg_sess_new(pg_op *op, const char *conninfo);

pg_sess *pg_sess_open(pg_op *op, const char *conninfo) {
  pg_sess *s = pg_sess_new(op, conninfo);
  for (int i = 0; i < PG_OP_MAX_SESS; i++)
    if (!op->sess[i]) {
      /* the op reaches its sessions only through these two */
      op->sess[i] = s;
      op->sess_cancel = pg_sess_cancel_remote;
      op->sess_close = pg_sess_close;
      break;
    }
  return s;
}

static pg_sess *pg_sess_new(pg_op *op, const char *conninfo) {
  pg_sess *s = eng_xcalloc(1, sizeof *s);
  s->op = op;
  s->conninfo = eng_xstrdup(conninfo ? conninfo : "");
  s->display = pg_url_display(s->conninfo);
  s->watch_fd = -1;
  s->connect_timeout_ms = PG_DEFAULT_CONNECT_TIMEOUT_MS;
  PQconninfoOption *o = pg_ci_parse(s->conninfo, NULL);
  const char *ct = o ? pg_ci_get(o, "connect_timeout") : NULL;
  if (!ct) ct = getenv("PGCONNECT_TIMEOUT");
  if (ct && *ct) {
    long v = strtol(ct, NULL, 10);
    /* libpq: values below 2 s are raised to 2 s; 0 means no limit */
    if (v == 0)
      s->connect_timeout_ms = 0;
    else
      s->connect_timeout_ms = (v < 2 ? 2 : v) * 1000;
  }
  if (o) PQconninfoFree(o);
  return s;
}

void pg_sess_set_connect_timeout(pg_sess *s, int64_t ms) {
  s->connect_timeout_ms = ms;
}

void pg_sess_quiet(pg_sess *s, int quiet) { s->quiet = quiet; }

static void pg_sess_unwatch(pg_sess *s) {
  if (s->watch) pg_host->watch_stop(s->watch);
  s->watch = NULL;
  s->watch_fd = -1;
  s->watch_events = 0;
}

static void pg_sess_destroy(pg_sess *s) {
  pg_query *q = s->head;
  while (q) {
    pg_query *n = q->next;
    pg_query_free(q);
    q = n;
  }
  pg_query_free(s->cur);
  free(s->conninfo);
  free(s->display);
  free(s);
}

void pg_sess_close(pg_sess *s) {
  if (!s || s->closed) return;
  s->closed = 1;
  pg_sess_unwatch(s);
  if (s->timer) pg_host->timer_stop(s->timer);
  s->timer = NULL;
  if (s->cur_res) PQclear(s->cur_res);
  s->cur_res = NULL;
  if (s->conn) PQfinish(s->conn);
  s->conn = NULL;
  for (int i = 0; i < PG_OP_MAX_SESS; i++)
    if (s->op->sess[i] == s) s->op->sess[i] = NULL;
  if (s->depth == 0) pg_sess_destroy(s);
}

/* Leave a callback: free the session if it was closed meanwhile. Returns
 * non-zero when the session is gone or closed (the caller must return). */
static int pg_sess_leave(pg_sess *s) {
  s->depth--;
  if (s->closed) {
    if (s->depth == 0) pg_sess_destroy(s);
    return 1;
  }
  return 0;
}

/* ---- accessors ---------------------------------------------------------- */

const char *pg_sess_errmsg(const pg_sess *s) {
  return s->err[0] ? s->err : "unknown error";
}
const char *pg_sess_sqlstate(const pg_sess *s) { return s->sqlstate; }
PGconn *pg_sess_conn(const pg_sess *s) { return s->conn; }
const char *pg_sess_display(const pg_sess *s) { return s->display; }

void pg_sess_seterr(pg_sess *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(s->err, sizeof s->err, fmt, ap);
  va_end(ap);
}

/* libpq's messages are multi-line ("connection to server at ... failed:
 * FATAL:  password authentication failed for user \"app\"\n"). Make them
 * one line. */
static void pg_sess_setmsg(pg_sess *s, const char *msg) {
  size_t j = 0;
  int space = 0;
  for (size_t i = 0; msg && msg[i] && j + 1 < sizeof s->err; i++) {
    char c = msg[i];
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = 1;
      continue;
    }
    if (space && j > 0) s->err[j++] = ' ';
    space = 0;
    if (j + 1 < sizeof s->err) s->err[j++] = c;
  }
  s->err[j] = '\0';
}

/* ---- error classification ----------------------------------------------- */

int pg_sqlstate_rc(const char *st) {
  if (!st || !*st) return ENG_ERR_FAILED;
  if (!strncmp(st, "28", 2)) return ENG_ERR_AUTH;     /* invalid auth */
  if (!strcmp(st, "3D000")) return ENG_ERR_NOTFOUND;  /* no database */
  if (!strcmp(st, "42P04")) return ENG_ERR_EXISTS;    /* duplicate db */
  if (!strcmp(st, "57014")) return ENG_ERR_CANCELLED; /* query cancelled */
  if (!strncmp(st, "08", 2)) return ENG_ERR_CONNECT;
  if (!strncmp(st, "57P", 3)) return ENG_ERR_CONNECT; /* admin shutdown */
  return ENG_ERR_FAILED;
}

/* A failed connection has no PGresult; classify by libpq's text. */
static int pg_connect_rc(const char *msg) {
  if (!msg) return ENG_ERR_CONNECT;
  if (strstr(msg, "password authentication failed") ||
      strstr(msg, "no password supplied") ||
      strstr(msg, "authentication failed") ||
      strstr(msg, "no pg_hba.conf entry") ||
      strstr(msg, "password retrieved from file"))
    return ENG_ERR_AUTH;
  if (strstr(msg, "database \"") && strstr(msg, "does not exist"))
    return ENG_ERR_NOTFOUND;
  if (strstr(msg, "role \"") && strstr(msg, "does not exist"))
    return ENG_ERR_AUTH;
  return ENG_ERR_CONNECT;
}

const char *pg_conn_hint(int rc) {
  switch (rc) {
  case ENG_ERR_AUTH:
    return "check the user and password of the URL (or PGPASSWORD / "
           "~/.pgpass) and the server's pg_hba.conf";
  case ENG_ERR_NOTFOUND:
    return "check the database name in the URL";
  case ENG_ERR_TIMEOUT:
    return "check that the server is reachable (host, port, firewall) or "
           "raise connect_timeout in the URL";
  case ENG_ERR_CONNECT:
    return "check that the server is running and that host and port of the "
           "URL are right (ping with `wait:` retries while it starts)";
  default:
    return "see the server log for details";
  }
}

/* ---- end of a sequence -------------------------------------------------- */

static void pg_sess_end(pg_sess *s, int rc) {
  pg_end_fn end = s->end;
  void *ud = s->end_ud;
  s->end = NULL;
  s->end_ud = NULL;
  if (s->timer) pg_host->timer_stop(s->timer);
  s->timer = NULL;
  if (rc != ENG_OK) {
    /* Drop whatever was queued after the failure. */
    pg_query *q = s->head;
    while (q) {
      pg_query *n = q->next;
      pg_query_free(q);
      q = n;
    }
    s->head = s->tail = NULL;
  }
  if (s->state == PG_S_BUSY || s->state == PG_S_CONNECTING) {
    /* A failure mid-query or mid-connect leaves the connection unusable
     * for this plugin's purposes. */
    if (rc != ENG_OK) {
      pg_sess_unwatch(s);
      s->state = PG_S_BROKEN;
    }
  }
  if (s->state == PG_S_IDLE) pg_sess_unwatch(s);
  if (end) end(s, ud, rc);
}

/* ---- watches ------------------------------------------------------------ */

static void pg_sess_io(void *ud, int events, int status);

static int pg_sess_watch(pg_sess *s, int events, int force_new) {
  int fd = PQsocket(s->conn);
  if (fd < 0) {
    pg_sess_setmsg(s, PQerrorMessage(s->conn));
    if (!s->err[0]) pg_sess_seterr(s, "libpq has no socket");
    return ENG_ERR_CONNECT;
  }
  if (s->watch && (force_new || fd != s->watch_fd)) pg_sess_unwatch(s);
  if (!s->watch) {
    s->watch = pg_host->watch_start(s->op->e.call, fd, events, pg_sess_io, s);
    if (!s->watch) {
      pg_sess_seterr(s, "could not watch the connection's socket");
      return ENG_ERR_IO;
    }
    s->watch_fd = fd;
    s->watch_events = events;
  } else if (events != s->watch_events) {
    pg_host->watch_update(s->watch, events);
    s->watch_events = events;
  }
  return ENG_OK;
}

/* ---- queries ------------------------------------------------------------ */

static void pg_sess_notice(void *arg, const char *message) {
  pg_sess *s = arg;
  if (s->quiet || s->closed) return;
  char *m = eng_xstrdup(message);
  pg_host->log(s->op->e.call, ENG_LOG_INFO, "server: %s", pg_chomp(m));
  free(m);
}

static void pg_sess_next(pg_sess *s);

static void pg_sess_flush(pg_sess *s) {
  int f = PQflush(s->conn);
  if (f < 0) {
    pg_sess_setmsg(s, PQerrorMessage(s->conn));
    pg_sess_end(s, ENG_ERR_CONNECT);
    return;
  }
  int rc = pg_sess_watch(s, ENG_READABLE | (f == 1 ? ENG_WRITABLE : 0), 0);
  if (rc != ENG_OK) pg_sess_end(s, rc);
}

static void pg_sess_next(pg_sess *s) {
  if (s->cur) return;
  pg_query *q = s->head;
  if (!q) {
    s->state = PG_S_IDLE;
    pg_sess_end(s, ENG_OK);
    return;
  }
  s->head = q->next;
  if (!s->head) s->tail = NULL;
  q->next = NULL;
  s->cur = q;
  s->cur_failed = 0;
  s->state = PG_S_BUSY;
  int ok;
  if (q->script)
    ok = PQsendQuery(s->conn, q->sql);
  else
    ok = PQsendQueryParams(s->conn, q->sql, q->n, NULL,
                           (const char *const *)q->params, NULL, NULL, 0);
  if (!ok) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", PQerrorMessage(s->conn));
    pg_sess_setmsg(s, msg);
    pg_sess_end(s, ENG_ERR_CONNECT);
    return;
  }
  pg_sess_flush(s);
}

static void pg_sess_result_error(pg_sess *s, const PGresult *res) {
  const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
  const char *prim = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
  const char *det = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
  const char *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
  snprintf(s->sqlstate, sizeof s->sqlstate, "%s", st ? st : "");
  if (!prim) {
    pg_sess_setmsg(s, PQresultErrorMessage(res));
    return;
  }
  char msg[2048];
  snprintf(msg, sizeof msg, "%s (SQLSTATE %s)%s%s%s%s", prim, st ? st : "?",
           det ? "; detail: " : "", det ? det : "", hint ? "; hint: " : "",
           hint ? hint : "");
  pg_sess_setmsg(s, msg);
}

/* The current query produced all its results. */
static void pg_sess_query_done(pg_sess *s) {
  pg_query *q = s->cur;
  PGresult *res = s->cur_res;
  s->cur = NULL;
  s->cur_res = NULL;
  s->state = PG_S_IDLE;
  if (s->cur_failed) {
    char msg[sizeof s->err];
    snprintf(msg, sizeof msg, "%.200s: %.1800s", q->label, s->err);
    memcpy(s->err, msg, sizeof s->err);
    int rc = pg_sqlstate_rc(s->sqlstate);
    pg_query_free(q);
    if (res) PQclear(res);
    pg_sess_end(s, rc);
    return;
  }
  int rc = ENG_OK;
  if (q->fn) rc = q->fn(s, q->ud, res);
  pg_query_free(q);
  if (res) PQclear(res);
  if (s->closed) return;
  if (rc != ENG_OK) {
    pg_sess_end(s, rc);
    return;
  }
  pg_sess_next(s);
}

static void pg_sess_read(pg_sess *s) {
  if (!PQconsumeInput(s->conn)) {
    pg_sess_setmsg(s, PQerrorMessage(s->conn));
    pg_sess_end(s, ENG_ERR_CONNECT);
    return;
  }
  while (!s->closed && s->cur && !PQisBusy(s->conn)) {
    PGresult *r = PQgetResult(s->conn);
    if (!r) {
      pg_sess_query_done(s);
      return;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE ||
        st == PGRES_NONFATAL_ERROR) {
      if (!s->cur_failed) pg_sess_result_error(s, r);
      s->cur_failed = 1;
      PQclear(r);
    } else if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT ||
               st == PGRES_COPY_BOTH) {
      /* Not supported through this helper: end the copy. */
      PQclear(r);
      pg_sess_seterr(s, "COPY is not supported here; use dump/restore");
      s->cur_failed = 1;
      if (st == PGRES_COPY_IN) PQputCopyEnd(s->conn, "not supported");
    } else {
      if (s->cur_res) PQclear(s->cur_res);
      s->cur_res = r;
    }
  }
  if (!s->closed && s->state == PG_S_IDLE && !s->cur) pg_sess_unwatch(s);
}

/* ---- connecting --------------------------------------------------------- */

static void pg_sess_connected(pg_sess *s) {
  if (s->timer) pg_host->timer_stop(s->timer);
  s->timer = NULL;
  PQsetnonblocking(s->conn, 1);
  PQsetNoticeProcessor(s->conn, pg_sess_notice, s);
  s->state = PG_S_IDLE;
  pg_sess_unwatch(s);
  pg_sess_next(s);
}

static void pg_sess_connect_fail(pg_sess *s) {
  pg_sess_setmsg(s, PQerrorMessage(s->conn));
  if (!s->err[0]) pg_sess_seterr(s, "connection failed");
  pg_sess_end(s, pg_connect_rc(s->err));
}

static void pg_sess_poll(pg_sess *s) {
  PostgresPollingStatusType st = PQconnectPoll(s->conn);
  int rc;
  switch (st) {
  case PGRES_POLLING_OK:
    pg_sess_connected(s);
    return;
  case PGRES_POLLING_READING:
    rc = pg_sess_watch(s, ENG_READABLE, 1);
    break;
  case PGRES_POLLING_WRITING:
    rc = pg_sess_watch(s, ENG_WRITABLE, 1);
    break;
  default:
    pg_sess_connect_fail(s);
    return;
  }
  if (rc != ENG_OK) pg_sess_end(s, rc);
}

static void pg_sess_io(void *ud, int events, int status) {
  pg_sess *s = ud;
  if (s->closed) return;
  s->depth++;
  /* On a socket error let libpq look: it reads SO_ERROR / the EOF and
   * reports the real cause ("Connection refused", "server closed the
   * connection unexpectedly"). */
  if (status < 0) events = ENG_READABLE | ENG_WRITABLE;
  if (s->state == PG_S_CONNECTING) {
    pg_sess_poll(s);
  } else if (s->state == PG_S_BUSY) {
    if (events & ENG_WRITABLE) pg_sess_flush(s);
    if (!s->closed && s->state == PG_S_BUSY && (events & ENG_READABLE))
      pg_sess_read(s);
  } else {
    pg_sess_unwatch(s); /* idle: nothing to read */
  }
  pg_sess_leave(s);
}

static void pg_sess_timeout(void *ud) {
  pg_sess *s = ud;
  s->timer = NULL;
  if (s->closed || s->state != PG_S_CONNECTING) return;
  s->depth++;
  pg_sess_seterr(s, "timeout expired after %lld s while connecting",
                 (long long)(s->connect_timeout_ms / 1000));
  pg_sess_unwatch(s);
  PQfinish(s->conn);
  s->conn = NULL;
  s->state = PG_S_BROKEN;
  pg_sess_end(s, ENG_ERR_TIMEOUT);
  pg_sess_leave(s);
}

static void pg_sess_connect(pg_sess *s) {
  const char *kw[] = {"dbname", "fallback_application_name", "client_encoding",
                      NULL};
  const char *val[] = {s->conninfo, "engine", "UTF8", NULL};
  s->state = PG_S_CONNECTING;
  s->conn = PQconnectStartParams(kw, val, 1);
  if (!s->conn) {
    pg_sess_seterr(s, "out of memory");
    pg_sess_end(s, ENG_ERR_NOMEM);
    return;
  }
  if (PQstatus(s->conn) == CONNECTION_BAD) {
    pg_sess_connect_fail(s);
    return;
  }
  if (s->connect_timeout_ms > 0)
    s->timer = pg_host->timer_start(
        s->op->e.call, (uint64_t)s->connect_timeout_ms, pg_sess_timeout, s);
  /* As if PQconnectPoll had returned PGRES_POLLING_WRITING. */
  int rc = pg_sess_watch(s, ENG_WRITABLE, 1);
  if (rc != ENG_OK) pg_sess_end(s, rc);
}

void pg_sess_run(pg_sess *s, pg_end_fn end, void *ud) {
  s->end = end;
  s->end_ud = ud;
  s->depth++;
  switch (s->state) {
  case PG_S_NEW:
    pg_sess_connect(s);
    break;
  case PG_S_IDLE:
    pg_sess_next(s);
    break;
  case PG_S_BROKEN:
    if (!s->err[0]) pg_sess_seterr(s, "the connection is broken");
    pg_sess_end(s, ENG_ERR_CONNECT);
    break;
  default: /* connecting or busy: the queue goes on by itself */
    break;
  }
  pg_sess_leave(s);
}

/* ---- identity and guards ------------------------------------------------ */

static int pg_ident_res(pg_sess *s, void *ud, PGresult *res) {
  pg_ident *id = ud;
  if (PQntuples(res) != 1) {
    pg_sess_seterr(s, "identity query returned no row");
    return ENG_ERR_PROTOCOL;
  }
  id->version_num = atoi(PQgetvalue(res, 0, 0));
  snprintf(id->version, sizeof id->version, "%s", PQgetvalue(res, 0, 1));
  snprintf(id->database, sizeof id->database, "%s", PQgetvalue(res, 0, 2));
  snprintf(id->user, sizeof id->user, "%s", PQgetvalue(res, 0, 3));
  id->in_recovery = PQgetvalue(res, 0, 4)[0] == 't';
  snprintf(id->sysid, sizeof id->sysid, "%s", PQgetvalue(res, 0, 5));
  id->db_bytes = atoll(PQgetvalue(res, 0, 6));
  const char *h = PQhost(s->conn);
  const char *p = PQport(s->conn);
  snprintf(id->host, sizeof id->host, "%s", h && *h ? h : "localhost");
  snprintf(id->port, sizeof id->port, "%s", p && *p ? p : "5432");
  if (!id->sysid[0])
    pg_host->log(s->op->e.call, ENG_LOG_WARN,
                 "cannot read system_identifier on %s (pg_control_system() "
                 "not permitted): guards can match this server only by "
                 "host:port and database name",
                 s->display);
  return ENG_OK;
}

void pg_ident_add(pg_sess *s, pg_ident *id) {
  memset(id, 0, sizeof *id);
  /* pg_control_system() exists since 9.6 and may be revoked: guard it
   * with has_function_privilege so the query itself never fails. */
  pg_sess_add(
      s, "read server identity",
      "SELECT current_setting('server_version_num'), "
      "current_setting('server_version'), current_database(), current_user, "
      "pg_is_in_recovery(), "
      "CASE WHEN current_setting('server_version_num')::int >= 90600 AND "
      "has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE') "
      "THEN (SELECT system_identifier::text FROM pg_control_system()) "
      "ELSE '' END, pg_database_size(current_database())",
      0, NULL, pg_ident_res, id);
}

char *pg_ident_target(const pg_ident *id, const char *dbname) {
  return eng_asprintf("%s:%s/%s", id->host, id->port, dbname);
}

int pg_guard_db(pg_op *op, const pg_ident *id, const char *dbname) {
  char *target = pg_ident_target(id, dbname);
  char evidence[48];
  snprintf(evidence, sizeof evidence, "sysid:%s", id->sysid);
  int rc = pg_host->guard_target(op->e.call, ENG_TARGET_DATABASE, target,
                                 id->sysid[0] ? evidence : NULL);
  free(target);
  return rc == ENG_OK ? ENG_OK : ENG_ERR_REFUSED;
}

int pg_guard_sql(pg_op *op, const pg_ident *id, const char *sql,
                 unsigned flags) {
  char *target = pg_ident_target(id, id->database);
  char evidence[48];
  snprintf(evidence, sizeof evidence, "sysid:%s", id->sysid);
  int rc = pg_host->guard_sql(op->e.call, target, id->sysid[0] ? evidence : NULL,
                              sql, flags);
  free(target);
  return rc == ENG_OK ? ENG_OK : ENG_ERR_REFUSED;
}

/* ---- server-side cancel ------------------------------------------------ */

static void pg_sess_cancelled(pg_sess *c, void *ud, int rc) {
  pg_op *op = ud;
  if (rc != ENG_OK)
    pg_host->log(op->e.call, ENG_LOG_DEBUG,
                 "could not cancel the running query on %s: %s", c->display,
                 pg_sess_errmsg(c));
  pg_sess_close(c);
  pg_op_release(op);
}

void pg_sess_cancel_remote(pg_sess *s) {
  if (s->closed || s->state != PG_S_BUSY || !s->conn) return;
  int pid = PQbackendPID(s->conn);
  if (pid <= 0) return;
  char spid[16];
  snprintf(spid, sizeof spid, "%d", pid);
  const char *p[1] = {spid};
  /* not registered in op->sess: finishing the op must not close it */
  pg_sess *c = pg_sess_new(s->op, s->conninfo);
  pg_sess_quiet(c, 1);
  pg_sess_set_connect_timeout(c, 3000);
  pg_sess_add(c, "cancel the running query",
              "SELECT pg_catalog.pg_cancel_backend($1::int)", 1, p, NULL, NULL);
  pg_op_hold(s->op);
  pg_sess_run(c, pg_sess_cancelled, s->op);
}
