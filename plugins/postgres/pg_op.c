/*
 * pg_op.c - the life of one running action: cancellation, child
 * processes, worker jobs and failure.
 *
 * An action embeds a pg_op in its state. pg_op_finish() may be called from
 * any callback; host->done() runs only once nothing the op started can
 * call back any more (children exited, worker jobs returned), right after
 * the action's state was freed (<engine/op.h>).
 */
#include "pg_int.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the op: <engine/op.h> with sessions and children ----------------- */

static pg_op *pg_op_of(eng_op *e) { return (pg_op *)(void *)e; }

/* Cancelled: stop the server's work too, not only our side of it. */
static void pg_op_on_cancel(eng_op *e) {
  pg_op *op = pg_op_of(e);
  for (int i = 0; i < PG_OP_MAX_SESS; i++)
    if (op->sess[i]) op->sess_cancel(op->sess[i]);
  if (op->cancel) {
    op->cancel(op);
    return;
  }
  eng_op_finish(e, ENG_ERR_CANCELLED);
}

/* Finished: close the sessions; children still running are abandoned
 * work (failure elsewhere): stop them; their exit completes the op. */
static void pg_op_on_finish(eng_op *e) {
  pg_op *op = pg_op_of(e);
  for (int i = 0; i < PG_OP_MAX_SESS; i++)
    if (op->sess[i]) op->sess_close(op->sess[i]); /* clears op->sess[i] */
  for (int i = 0; i < PG_OP_MAX_KIDS; i++)
    if (op->kids[i] && op->kids[i]->proc)
      pg_host->proc_kill(op->kids[i]->proc, SIGTERM);
}

static void pg_op_destroy(eng_op *e) {
  pg_op *op = pg_op_of(e);
  if (op->destroy) op->destroy(op);
}

void pg_op_init(pg_op *op, eng_call *call, void (*destroy)(pg_op *op)) {
  memset(op, 0, sizeof *op);
  eng_op_init(&op->e, pg_host, call, pg_op_destroy);
  op->e.on_cancel = pg_op_on_cancel;
  op->e.on_finish = pg_op_on_finish;
  op->destroy = destroy;
}

void pg_op_finish(pg_op *op, int rc) { eng_op_finish(&op->e, rc); }

void pg_op_fail(pg_op *op, int rc, const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  eng_op_fail(&op->e, rc, "%s", msg);
}

void pg_op_hold(pg_op *op) { eng_op_hold(&op->e); }
void pg_op_release(pg_op *op) { eng_op_release(&op->e); }

int pg_op_work(pg_op *op, void (*fn)(void *ud), void (*after)(void *ud),
               void *ud) {
  return eng_op_work(&op->e, fn, after, ud);
}

static void pg_op_timer_cb(eng_op *e) {
  pg_op *op = pg_op_of(e);
  void (*cb)(pg_op *) = op->timer_cb;
  op->timer_cb = NULL;
  if (cb) cb(op);
}

void pg_op_timer(pg_op *op, uint64_t ms, void (*cb)(pg_op *op)) {
  op->timer_cb = cb;
  if (eng_op_timer(&op->e, ms, pg_op_timer_cb) != ENG_OK)
    pg_op_fail(op, ENG_ERR_NOMEM, "could not start a timer");
}

/* ---- children ----------------------------------------------------------- */

static void pg_child_stdout(void *ud, const char *buf, size_t len) {
  pg_child *c = ud;
  if (c->op->e.finished || !c->on_stdout) return;
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
  /* the child's hold lasts through on_exit() */
  if (!op->e.finished && c->on_exit) c->on_exit(c);
  eng_op_release(&op->e);
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
  int rc = pg_host->spawn(op->e.call, &o, &c->proc);
  if (rc != ENG_OK) {
    snprintf(err, errlen, "could not start %s (%s): %s", name, opts->argv[0],
             eng_strerror(rc));
    c->proc = NULL;
    return rc;
  }
  c->running = 1;
  eng_op_hold(&op->e);
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
