/*
 * engine/op.h - one running action with sub-steps, for plugin authors
 * (header only, on top of <engine/plugin.h>).
 *
 * Most actions start several things (worker jobs, children, transfers),
 * may fail in any callback, and must call host->done() exactly once, after
 * nothing they started can call back into their state. An eng_op, embedded
 * in the action's state, keeps that book:
 *
 *   eng_op_init()     at start(); registers the cancel callback
 *   eng_op_hold()     before starting a sub-step that will call back
 *   eng_op_release()  when it called back (may complete the op)
 *   eng_op_work()     host->work() with hold/release around it; `after`
 *                     is skipped once the op finished
 *   eng_op_timer()    one timer (a retry or a deadline), stopped at finish
 *   eng_op_finish()   the result is known: on_finish() releases what is
 *                     still open; once nothing is pending, destroy() frees
 *                     the state, then done() ends the call
 *   eng_op_fail()     host->fail(message) then eng_op_finish(rc)
 *
 * Cancellation: the host's cancel callback calls op->on_cancel when set
 * (it must lead to eng_op_finish()), else finishes with ENG_ERR_CANCELLED;
 * host->cancel_reason() says why. Everything runs on the loop thread.
 * Ownership: the op lives inside the caller's state; destroy() frees that
 * state, and done() is the last thing the op does.
 */
#ifndef ENGINE_OP_H
#define ENGINE_OP_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"

typedef struct eng_op eng_op;

struct eng_op {
  const eng_host *host;
  eng_call *call;
  int finished;  /* eng_op_finish() was called */
  int completed; /* host->done() was called; the state is gone right after */
  int cancelled; /* the host cancelled the call */
  int rc;
  int pending;   /* sub-steps that have not called back */
  eng_timer *timer;
  void (*timer_cb)(eng_op *op);
  /* Optional: called once by eng_op_finish(), to close or stop what is
   * still open (sessions, children); whatever calls back later must have
   * been held. */
  void (*on_finish)(eng_op *op);
  /* Optional: called on cancellation instead of finishing at once. */
  void (*on_cancel)(eng_op *op);
  /* Frees the state that embeds the op (the call is still live: streams
   * and sessions may be closed here); done() follows at once. */
  void (*destroy)(eng_op *op);
};

/* Nothing is pending: free the state (which may still abort a stream or
 * close a session of the call), then end the call. */
static inline void eng_op_complete_if_idle_(eng_op *op) {
  if (!op->finished || op->completed || op->pending > 0) return;
  op->completed = 1;
  eng_call *call = op->call;
  const eng_host *h = op->host;
  int rc = op->rc;
  void (*destroy)(eng_op *) = op->destroy;
  if (destroy) destroy(op);
  h->done(call, rc);
}

static inline void eng_op_finish(eng_op *op, int rc) {
  if (op->finished) return;
  op->finished = 1;
  op->rc = rc;
  if (op->timer) {
    op->host->timer_stop(op->timer);
    op->timer = NULL;
  }
  op->pending++; /* on_finish may release sub-steps synchronously */
  if (op->on_finish) op->on_finish(op);
  op->pending--;
  eng_op_complete_if_idle_(op);
}

static inline void eng_op_hold(eng_op *op) { op->pending++; }

static inline void eng_op_release(eng_op *op) {
  op->pending--;
  eng_op_complete_if_idle_(op);
}

static inline void eng_op_on_cancel_(void *ud) {
  eng_op *op = (eng_op *)ud;
  if (op->completed) return;
  op->cancelled = 1;
  if (op->finished) return;
  if (op->on_cancel) {
    op->on_cancel(op);
    return;
  }
  eng_op_finish(op, ENG_ERR_CANCELLED);
}

/* Fill the op (the hooks may be set afterwards) and register for
 * cancellation. */
static inline void eng_op_init(eng_op *op, const eng_host *host,
                               eng_call *call, void (*destroy)(eng_op *op)) {
  memset(op, 0, sizeof *op);
  op->host = host;
  op->call = call;
  op->destroy = destroy;
  host->on_cancel(call, eng_op_on_cancel_, op);
}

static inline void eng_op_fail(eng_op *op, int rc, const char *fmt, ...)
    ENG_PRINTF(3, 4);
static inline void eng_op_fail(eng_op *op, int rc, const char *fmt, ...) {
  char msg[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (!op->finished) op->host->fail(op->call, "%s", msg);
  eng_op_finish(op, rc);
}

typedef struct eng_op_work_ {
  eng_op *op;
  void (*fn)(void *ud);
  void (*after)(void *ud);
  void *ud;
} eng_op_work_;

static inline void eng_op_work_fn_(void *ud) {
  eng_op_work_ *w = (eng_op_work_ *)ud;
  w->fn(w->ud);
}

static inline void eng_op_work_after_(void *ud, int status) {
  eng_op_work_ *w = (eng_op_work_ *)ud;
  eng_op *op = w->op;
  void (*after)(void *) = w->after;
  void *aud = w->ud;
  free(w);
  (void)status; /* uv's: non-zero only when the job was cancelled unrun */
  /* the job's hold lasts through after(): if after() finishes the op, it
   * completes on the release below, not under after()'s feet */
  if (!op->finished && after) after(aud);
  eng_op_release(op);
}

/* fn on a worker thread, then after() on the loop thread unless the op
 * finished meanwhile. ENG_OK, or an error (nothing was queued). */
static inline int eng_op_work(eng_op *op, void (*fn)(void *ud),
                              void (*after)(void *ud), void *ud) {
  eng_op_work_ *w = (eng_op_work_ *)calloc(1, sizeof *w);
  if (!w) return ENG_ERR_NOMEM;
  w->op = op;
  w->fn = fn;
  w->after = after;
  w->ud = ud;
  op->pending++;
  int rc = op->host->work(op->call, eng_op_work_fn_, eng_op_work_after_, w);
  if (rc != ENG_OK) {
    op->pending--;
    free(w);
  }
  return rc;
}

static inline void eng_op_timer_cb_(void *ud) {
  eng_op *op = (eng_op *)ud;
  op->timer = NULL;
  if (!op->finished && op->timer_cb) op->timer_cb(op);
}

/* The op's one timer (replaces a running one); stopped at finish.
 * ENG_OK, or ENG_ERR_NOMEM when the host could not start it. */
static inline int eng_op_timer(eng_op *op, uint64_t ms,
                               void (*cb)(eng_op *op)) {
  if (op->timer) op->host->timer_stop(op->timer);
  op->timer_cb = cb;
  op->timer = op->host->timer_start(op->call, ms, eng_op_timer_cb_, op);
  return op->timer ? ENG_OK : ENG_ERR_NOMEM;
}

#endif /* ENGINE_OP_H */
