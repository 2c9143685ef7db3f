/*
 * pg_op.c - the life of one running action: cancellation, child
 * processes, worker jobs and failure.
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
    if (op->sess[i]) op->sess_cancel(op->sess[i]);
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
    if (op->sess[i]) op->sess_close(op->sess[i]); /* clears op->sess[i] */
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
