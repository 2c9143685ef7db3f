/*
 * pg_op.c - the life of one running action: cancellation, child
 * processes, worker jobs and failure, plus small utilities.
 *
 * An action embeds a pg_op in its state. pg_op_finish() may be called from
 * any callback; host->done() runs only once nothing the op started can
 * call back any more (children exited, worker jobs returned), and the
 * action's state is freed right after it.
 */
#include "pg_int.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- utilities ---------------------------------------------------------- */

void *pg_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) abort();
  return p;
}

void *pg_xcalloc(size_t n, size_t m) {
  void *p = calloc(n ? n : 1, m ? m : 1);
  if (!p) abort();
  return p;
}

char *pg_strdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = pg_xmalloc(n);
  memcpy(d, s, n);
  return d;
}

char *pg_asprintf(const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  char *s = pg_xmalloc((size_t)n + 1);
  vsnprintf(s, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return s;
}

void pg_now_rfc3339(char buf[32]) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, 32 - n, ".%03dZ", (int)((ts.tv_nsec / 1000000) % 1000));
}

int64_t pg_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *pg_chomp(char *s) {
  if (!s) return s;
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
    s[--n] = '\0';
  return s;
}

void pg_buf_add(pg_buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) abort();
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void pg_buf_adds(pg_buf *b, const char *s) { pg_buf_add(b, s, strlen(s)); }

void pg_buf_addf(pg_buf *b, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n > 0) {
    char *tmp = pg_xmalloc((size_t)n + 1);
    vsnprintf(tmp, (size_t)n + 1, fmt, ap2);
    pg_buf_add(b, tmp, (size_t)n);
    free(tmp);
  }
  va_end(ap2);
}

void pg_buf_free(pg_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ---- parameters --------------------------------------------------------- */

const char *pg_pstr(const json_t *p, const char *name) {
  json_t *v = json_object_get(p, name);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

long long pg_pint(const json_t *p, const char *name, long long def) {
  json_t *v = json_object_get(p, name);
  if (json_is_integer(v)) return json_integer_value(v);
  if (json_is_real(v)) return (long long)json_real_value(v);
  return def;
}

double pg_pnum(const json_t *p, const char *name, double def) {
  json_t *v = json_object_get(p, name);
  return json_is_number(v) ? json_number_value(v) : def;
}

int pg_pbool(const json_t *p, const char *name, int def) {
  json_t *v = json_object_get(p, name);
  return json_is_boolean(v) ? json_is_true(v) : def;
}

/* compress: an integer 0-9 (pg_dump --compress), "0".."9", "none", or
 * "zstd" / "zstd:LEVEL" (1-19: the engine compresses the stream). */
int pg_parse_compress(eng_call *call, const json_t *v, int *level, int *zstd) {
  *level = -1;
  *zstd = 0;
  if (!v || json_is_null(v)) return ENG_OK;
  long long n = -1;
  if (json_is_integer(v)) {
    n = json_integer_value(v);
  } else if (json_is_string(v)) {
    const char *s = json_string_value(v);
    char *end = NULL;
    if (!*s) return ENG_OK;
    if (!strcmp(s, "none")) {
      n = 0;
    } else if (!strncmp(s, "zstd", 4) && (s[4] == '\0' || s[4] == ':')) {
      long lv = 3;
      if (s[4] == ':') {
        lv = strtol(s + 5, &end, 10);
        if (end == s + 5 || *end || lv < 1 || lv > 19) lv = -1;
      }
      if (lv < 1) {
        pg_host->fail(call, "compress '%s': the zstd level must be 1-19 "
                            "(e.g. zstd:3)", s);
        return ENG_ERR_INVALID;
      }
      *zstd = (int)lv;
      return ENG_OK;
    } else {
      n = strtoll(s, &end, 10);
      if (end == s || *end) n = -2;
    }
  } else {
    n = -2;
  }
  if (n < 0 || n > 9) {
    pg_host->fail(call, "compress must be 0-9 (pg_dump's own compression) or "
                        "zstd[:LEVEL] (the engine compresses the stream)");
    return ENG_ERR_INVALID;
  }
  *level = (int)n;
  return ENG_OK;
}

/* ---- the op ------------------------------------------------------------- */

static void pg_op_complete_if_idle(pg_op *op) {
  if (!op->finished || op->completed || op->nprocs > 0 || op->nwork > 0 ||
      op->nhold > 0)
    return;
  op->completed = 1;
  eng_call *call = op->call;
  int rc = op->rc;
  void (*destroy)(pg_op *) = op->destroy;
  pg_host->done(call, rc);
  if (destroy) destroy(op);
}

void pg_op_hold(pg_op *op) { op->nhold++; }

void pg_op_release(pg_op *op) {
  op->nhold--;
  pg_op_complete_if_idle(op);
}

static void pg_op_on_cancel(void *ud) {
  pg_op *op = ud;
  if (op->completed) return;
  op->cancelled = 1;
  if (op->finished) return;
  /* stop the server's work too, not only our side of it */
  for (int i = 0; i < PG_OP_MAX_SESS; i++)
    if (op->sess[i]) pg_sess_cancel_remote(op->sess[i]);
  if (op->cancel) {
    op->cancel(op);
    return;
  }
  pg_op_finish(op, ENG_ERR_CANCELLED);
}

void pg_op_init(pg_op *op, eng_call *call, void (*destroy)(pg_op *op)) {
  memset(op, 0, sizeof *op);
  op->call = call;
  op->destroy = destroy;
  pg_host->on_cancel(call, pg_op_on_cancel, op);
}

void pg_op_finish(pg_op *op, int rc) {
  if (op->finished) return;
  op->finished = 1;
  op->rc = rc;
  for (int i = 0; i < PG_OP_MAX_SESS; i++)
    if (op->sess[i]) pg_sess_close(op->sess[i]); /* clears op->sess[i] */
  if (op->timer) {
    pg_host->timer_stop(op->timer);
    op->timer = NULL;
  }
  /* Children still running here are abandoned work (failure elsewhere):
   * stop them; their exit completes the op. */
  for (int i = 0; i < PG_OP_MAX_KIDS; i++)
    if (op->kids[i] && op->kids[i]->proc)
      pg_host->proc_kill(op->kids[i]->proc, SIGTERM);
  pg_op_complete_if_idle(op);
}

void pg_op_fail(pg_op *op, int rc, const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (!op->finished) pg_host->fail(op->call, "%s", msg);
  pg_op_finish(op, rc);
}

/* ---- worker jobs -------------------------------------------------------- */

typedef struct pg_work {
  pg_op *op;
  void (*fn)(void *ud);
  void (*after)(void *ud);
  void *ud;
} pg_work;

static void pg_work_fn(void *ud) {
  pg_work *w = ud;
  w->fn(w->ud);
}

static void pg_work_after(void *ud, int status) {
  pg_work *w = ud;
  pg_op *op = w->op;
  void (*after)(void *) = w->after;
  void *aud = w->ud;
  free(w);
  (void)status;
  op->nwork--;
  if (op->finished) {
    pg_op_complete_if_idle(op);
    return;
  }
  if (after) after(aud);
}

int pg_op_work(pg_op *op, void (*fn)(void *ud), void (*after)(void *ud),
               void *ud) {
  pg_work *w = pg_xcalloc(1, sizeof *w);
  w->op = op;
  w->fn = fn;
  w->after = after;
  w->ud = ud;
  int rc = pg_host->work(op->call, pg_work_fn, pg_work_after, w);
  if (rc != ENG_OK) {
    free(w);
    return rc;
  }
  op->nwork++;
  return ENG_OK;
}

/* ---- timer -------------------------------------------------------------- */

static void pg_op_timer_cb(void *ud) {
  pg_op *op = ud;
  void (*cb)(pg_op *) = op->timer_cb;
  op->timer = NULL;
  op->timer_cb = NULL;
  if (!op->finished && cb) cb(op);
}

void pg_op_timer(pg_op *op, uint64_t ms, void (*cb)(pg_op *op)) {
  if (op->timer) pg_host->timer_stop(op->timer);
  op->timer_cb = cb;
  op->timer = pg_host->timer_start(op->call, ms, pg_op_timer_cb, op);
  if (!op->timer) pg_op_fail(op, ENG_ERR_NOMEM, "could not start a timer");
}

/* ---- children ----------------------------------------------------------- */

static void pg_child_stdout(void *ud, const char *buf, size_t len) {
  pg_child *c = ud;
  if (c->op->finished || !c->on_stdout) return;
  c->on_stdout(c, buf, len);
}

/* Keep at most the last ~20 lines (and 2 KiB) of the stderr tail. */
static void pg_child_copy_tail(pg_child *c, const char *tail) {
  c->tail[0] = '\0';
  if (!tail) return;
  size_t n = strlen(tail);
  while (n && (tail[n - 1] == '\n' || tail[n - 1] == ' ')) n--;
  size_t start = 0, lines = 0;
  for (size_t i = n; i > 0; i--) {
    if (tail[i - 1] == '\n' && ++lines == 20) {
      start = i;
      break;
    }
  }
  if (n - start >= sizeof c->tail) start = n - (sizeof c->tail - 1);
  memcpy(c->tail, tail + start, n - start);
  c->tail[n - start] = '\0';
}

static void pg_child_exit(void *ud, int64_t status, int sig) {
  pg_child *c = ud;
  pg_op *op = c->op;
  c->status = status;
  c->sig = sig;
  c->running = 0;
  pg_child_copy_tail(c, pg_host->proc_stderr_tail(c->proc));
  c->proc = NULL;
  for (int i = 0; i < PG_OP_MAX_KIDS; i++)
    if (op->kids[i] == c) op->kids[i] = NULL;
  op->nprocs--;
  if (op->finished) {
    pg_op_complete_if_idle(op);
    return;
  }
  if (c->on_exit) c->on_exit(c);
}

int pg_child_spawn(pg_child *c, pg_op *op, const char *name,
                   const eng_spawn_opts *opts, char *err, size_t errlen) {
  eng_spawn_opts o = *opts;
  o.size = sizeof o;
  o.ud = c;
  o.on_exit = pg_child_exit;
  o.on_stdout = o.stdout_fd == ENG_STDIO_PIPE ? pg_child_stdout : NULL;
  c->op = op;
  c->name = name;
  c->tail[0] = '\0';
  c->status = 0;
  c->sig = 0;
  int rc = pg_host->spawn(op->call, &o, &c->proc);
  if (rc != ENG_OK) {
    snprintf(err, errlen, "could not start %s (%s): %s", name, opts->argv[0],
             eng_strerror(rc));
    c->proc = NULL;
    return rc;
  }
  c->running = 1;
  op->nprocs++;
  for (int i = 0; i < PG_OP_MAX_KIDS; i++)
    if (!op->kids[i]) {
      op->kids[i] = c;
      break;
    }
  return ENG_OK;
}

const char *pg_child_how(const pg_child *c, char *buf, size_t n) {
  if (c->sig)
    snprintf(buf, n, "%s was killed by signal %d", c->name, c->sig);
  else
    snprintf(buf, n, "%s exited with status %lld", c->name,
             (long long)c->status);
  return buf;
}
