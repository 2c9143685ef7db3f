/* call.c - eng_call objects and the services they carry (host.c hands
 * them to plugins as the eng_host table).
 *
 * A call is one attempt of an action (or a Lua function a plugin offers, or
 * a run-end hook). It owns the processes, HTTP transfers, timers and socket
 * watches started for it; cancelling the call kills and aborts them.
 * Completion (host->done) is delivered to the owner on a later loop turn, so
 * an action may call done() from inside start(). */
#include "call/call.h"

#include <assert.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Process-wide: the loop and the HTTP multi handle, owned here. */
static uv_loop_t *host_loop;
static eng__http_multi *host_multi;
static eng__redactor *host_redact;

struct eng_timer {
  uv_timer_t h;
  eng_call *call;
  void (*cb)(void *);
  void *ud;
  struct eng_timer *next;
  bool closing;
};

struct eng_watch {
  uv_poll_t h;
  eng_call *call;
  void (*cb)(void *, int, int);
  void *ud;
  struct eng_watch *next;
  bool closing;
};

struct eng_call {
  eng__run *run;
  char *step;
  const eng_action *action;
  eng_call *parent;
  int refs;
  bool started, done, cancelled, delivered;
  int rc;
  json_t *args;
  json_t *outputs;
  eng__buf error;
  eng__proc_group *procs; /* heap: outlives the call if a process does */
  eng__http_group http;
  struct eng_timer *timers;
  struct eng_watch *watches;
  void (*cancel_cb)(void *);
  void *cancel_ud;
  void *data;
  eng__call_done_cb cb;
  void *cb_ud;
  uv_timer_t deliver;
  bool deliver_init;
  bool is_sub;
  eng_call **subs; /* live sub-calls (Lua functions), cancelled with us */
  size_t n_subs;
  struct owned *owned; /* streams and other objects released at done() */
  int cancel_reason;   /* ENG_CANCEL_* */
  uv_timer_t *grace;   /* a cancelled call that must call done() by then */
  bool abandoned;      /* the grace ran out: ended by the host */
  bool plugin_started; /* a plugin's start() ran: it owes a done() */
  struct eng_call *next_abandoned;
  uint64_t deadline_ns; /* uv_hrtime() when the step's timeout ends; 0 none */
};

/* Something a call started that the host releases if the plugin did not
 * before done(): release() must not call back into the plugin. */
typedef struct owned {
  void *obj;
  void (*release)(void *obj);
  struct owned *next;
} owned;

/* How long a cancelled call may take to call done(). */
static uint64_t cancel_grace_ms = 10000;
/* Calls ended by the host after the grace: kept (the plugin may still hold
 * them) until the host shuts down. */
static eng_call *abandoned_calls;

static void call_ref(eng_call *c) { c->refs++; }

static void deliver_close_cb(uv_handle_t *h) {
  eng_call *c = h->data;
  json_decref(c->args);
  json_decref(c->outputs);
  eng__buf_free(&c->error);
  free(c->step);
  free(c);
}

static void unlink_sub(eng_call *c) {
  eng_call *p = c->parent;
  if (!p) return;
  for (size_t i = 0; i < p->n_subs; i++)
    if (p->subs[i] == c) {
      p->subs[i] = p->subs[--p->n_subs];
      break;
    }
  c->parent = NULL;
}

static void stop_grace(eng_call *c);
static void close_owned(eng_call *c);

static void call_unref(eng_call *c) {
  assert(c->refs > 0);
  if (--c->refs > 0) return;
  stop_grace(c);
  unlink_sub(c);
  for (size_t i = 0; i < c->n_subs; i++) c->subs[i]->parent = NULL;
  free(c->subs);
  eng__http_group_cancel(&c->http);
  if (eng__proc_group_empty(c->procs)) {
    free(c->procs);
  } else { /* dying processes: the group outlives the call */
    eng__proc_group_kill(c->procs, ENG_KILL_GRACE_MS);
    eng__proc_group_detach(c->procs);
  }
  for (struct eng_timer *t = c->timers; t; t = t->next) t->call = NULL;
  for (struct eng_watch *w = c->watches; w; w = w->next) w->call = NULL;
  if (c->deliver_init) uv_close((uv_handle_t *)&c->deliver, deliver_close_cb);
  else deliver_close_cb((uv_handle_t *)&(uv_timer_t){.data = c});
}

void eng__host_init(uv_loop_t *loop, eng__redactor *redact) {
  host_loop = loop;
  host_redact = redact;
  if (!host_multi) host_multi = eng__http_multi_create(loop);
}

void eng__host_shutdown(void) {
  while (abandoned_calls) {
    eng_call *c = abandoned_calls;
    abandoned_calls = c->next_abandoned;
    call_unref(c);
  }
  if (host_multi) eng__http_multi_destroy(host_multi);
  host_multi = NULL;
}

void eng__host_set_cancel_grace(uint64_t ms) { cancel_grace_ms = ms; }

void eng__host_limit_cancel_grace(uint64_t ms) {
  if (cancel_grace_ms > ms) cancel_grace_ms = ms;
}

eng__redactor *eng__host_redactor(void) { return host_redact; }

static eng_call *call_alloc(eng__run *r, const char *step,
                            const eng_action *a, eng__call_done_cb cb,
                            void *ud) {
  eng_call *c = eng__xcalloc(1, sizeof *c);
  c->run = r;
  c->step = eng__xstrdup(step);
  c->action = a;
  c->refs = 1;
  c->procs = eng__xcalloc(1, sizeof *c->procs);
  c->outputs = json_object();
  c->cb = cb;
  c->cb_ud = ud;
  uv_timer_init(host_loop, &c->deliver);
  c->deliver.data = c;
  c->deliver_init = true;
  return c;
}

eng_call *eng__call_new(eng__run *r, const char *step_id,
                        const eng_action *action, eng__call_done_cb cb,
                        void *ud) {
  return call_alloc(r, step_id, action, cb, ud);
}

eng_call *eng__call_sub(eng_call *parent, eng__call_done_cb cb, void *ud) {
  eng_call *c = call_alloc(parent ? parent->run : NULL,
                           parent ? parent->step : NULL, NULL, cb, ud);
  c->parent = parent;
  c->is_sub = true;
  if (parent) {
    parent->subs = eng__xrealloc(parent->subs,
                                 (parent->n_subs + 1) * sizeof *parent->subs);
    parent->subs[parent->n_subs++] = c;
  }
  return c;
}

int eng__call_start(eng_call *c, int (*fn)(eng_call *, const json_t *),
                    const json_t *args) {
  return eng__call_start_err(c, fn, args, NULL);
}

int eng__call_start_err(eng_call *c, int (*fn)(eng_call *, const json_t *),
                        const json_t *args, char **err) {
  c->args = args ? json_incref((json_t *)args) : json_object();
  c->started = true;
  if (!fn) return ENG_OK; /* run-end hook: the hook itself drives it */
  c->plugin_started = true;
  call_ref(c);
  int rc = fn(c, c->args);
  if (rc != ENG_OK) {
    /* start failed: the callback never runs; the message goes to the log */
    c->done = true;
    c->delivered = true;
    close_owned(c);
    if (err) *err = c->error.len ? eng__xstrdup(c->error.data) : NULL;
    else if (c->error.len && c->run)
      eng__run_log(c->run, c->step, ENG_LOG_ERROR, c->error.data);
    call_unref(c);
    call_unref(c); /* the creator's reference: freed */
    return rc;
  }
  call_unref(c);
  return ENG_OK;
}

void eng__call_release(eng_call *c) { call_unref(c); }

uv_loop_t *eng__call_loop(eng_call *c) {
  (void)c;
  return host_loop;
}

void eng__call_set_deadline(eng_call *c, uint64_t at_ns) {
  if (c) c->deadline_ns = at_ns;
}

uint64_t eng__call_deadline(const eng_call *c) {
  uint64_t d = 0;
  for (; c; c = c->parent)
    if (c->deadline_ns && (!d || c->deadline_ns < d)) d = c->deadline_ns;
  return d;
}

eng__run *eng__call_run(eng_call *c) { return c ? c->run : NULL; }

eng__lua *eng__call_lua(eng_call *c) { return c && c->run ? c->run->L : NULL; }

/* ---- what a call owns -----------------------------------------------------
 */

void eng__call_own(eng_call *c, void *obj, void (*release)(void *obj)) {
  owned *o = eng__xcalloc(1, sizeof *o);
  o->obj = obj;
  o->release = release;
  o->next = c->owned;
  c->owned = o;
}

void eng__call_disown(eng_call *c, void *obj) {
  for (owned **pp = &c->owned; *pp; pp = &(*pp)->next)
    if ((*pp)->obj == obj) {
      owned *o = *pp;
      *pp = o->next;
      free(o);
      return;
    }
}

static void grace_closed(uv_handle_t *h) { free(h); }

static void stop_grace(eng_call *c) {
  if (!c->grace) return;
  uv_timer_stop(c->grace);
  uv_close((uv_handle_t *)c->grace, grace_closed);
  c->grace = NULL;
}

/* The call ended (done(), a failed start, or abandoned): stop and close
 * everything it started that is still open, so that no callback of the
 * call runs any more. Processes still running are killed (TERM, then KILL
 * after 2 s) without telling the plugin. */
static void close_owned(eng_call *c) {
  stop_grace(c);
  while (c->owned) {
    owned *o = c->owned;
    c->owned = o->next;
    o->release(o->obj);
    free(o);
  }
  while (c->timers) eng__call_timer_stop(c->timers);
  while (c->watches) eng__call_watch_stop(c->watches);
  eng__http_group_abort(&c->http);
  if (!eng__proc_group_empty(c->procs)) {
    eng__proc_group_kill(c->procs, ENG_KILL_GRACE_MS);
    eng__proc_group_detach(c->procs);
    c->procs = eng__xcalloc(1, sizeof *c->procs);
  }
}

static void deliver_cb(uv_timer_t *t) {
  eng_call *c = t->data;
  if (c->delivered) return;
  c->delivered = true;
  json_t *out = c->outputs;
  c->outputs = NULL;
  char *err = NULL;
  if (c->rc != ENG_OK) {
    err = c->error.len ? eng__xstrdup(c->error.data)
                       : eng__xstrdup(eng_strerror(c->rc));
  }
  eng__call_done_cb cb = c->cb;
  void *ud = c->cb_ud;
  int rc = c->rc;
  /* Sub-calls and run-end hooks hold no owner reference beyond this. */
  bool auto_release = c->is_sub || c->action == NULL;
  call_ref(c);
  if (cb) cb(ud, rc, out, err);
  else json_decref(out);
  free(err);
  if (auto_release) call_unref(c);
  call_unref(c);
}

/* ---- the host table ----------------------------------------------------- */

void eng__call_logf(eng_call *c, eng_log_level lvl, const char *fmt, ...) {
  if ((unsigned)lvl > ENG_LOG_ERROR) lvl = ENG_LOG_ERROR;
  eng__buf b = {0};
  va_list ap;
  va_start(ap, fmt);
  eng__buf_vaddf(&b, fmt, ap);
  va_end(ap);
  if (c && c->run) eng__run_log(c->run, c->step, lvl, b.data ? b.data : "");
  else {
    char *red = eng__redact(host_redact, b.data ? b.data : "");
    fprintf(stderr, "%s\n", red);
    free(red);
  }
  eng__buf_free(&b);
}

int eng__call_warn(eng_call *c, const char *msg) {
  while (c && !c->step && c->parent) c = c->parent;
  eng__step_state *st = c && c->run && c->step
                            ? eng__run_find_state(c->run, c->step) : NULL;
  if (!st) return ENG_ERR_INVALID;
  eng__step_warn(c->run, st, msg);
  return ENG_OK;
}

void eng__call_output(eng_call *c, const char *name, json_t *value) {
  if (!c->outputs) c->outputs = json_object();
  json_object_set_new(c->outputs, name, value ? value : json_null());
}

void eng__call_progress(eng_call *c, int64_t done, int64_t total) {
  if (c->run) eng__run_progress(c->run, c->step, done, total);
}

void eng__call_secret(eng_call *c, const char *value) {
  (void)c;
  if (host_redact && value) eng__redactor_add(host_redact, value);
}

void eng__call_fail(eng_call *c, const char *fmt, ...) {
  eng__buf b = {0};
  va_list ap;
  va_start(ap, fmt);
  eng__buf_vaddf(&b, fmt, ap);
  va_end(ap);
  char *red = eng__redact(host_redact, b.data ? b.data : "");
  eng__buf_free(&c->error);
  eng__buf_adds(&c->error, red);
  free(red);
  eng__buf_free(&b);
}

void eng__call_done(eng_call *c, int rc) {
  if (c->done) return; /* twice, or after the host abandoned the call */
  c->done = true;
  c->rc = rc;
  close_owned(c);
  uv_timer_start(&c->deliver, deliver_cb, 0, 0);
}

int eng__call_cancel_reason(eng_call *c) { return c->cancel_reason; }

json_t *eng__call_run_state(eng_call *c) {
  while (c && !c->step && c->parent) c = c->parent;
  return c && c->run ? eng__run_state(c->run, c->step) : NULL;
}

int eng__call_cancelled(eng_call *c) { return c->cancelled; }

void eng__call_on_cancel(eng_call *c, void (*cb)(void *), void *ud) {
  c->cancel_cb = cb;
  c->cancel_ud = ud;
}

void eng__call_set_data(eng_call *c, void *d) { c->data = d; }
void *eng__call_get_data(eng_call *c) { return c->data; }
const char *eng__call_run_dir(eng_call *c) {
  return c->run && c->run->dir ? c->run->dir : ".";
}
const char *eng__call_step_id(eng_call *c) { return c->step ? c->step : ""; }

static void proc_log_line(void *ctx, const char *line) {
  eng_call *c = ctx;
  if (c->run) eng__run_log(c->run, c->step, ENG_LOG_INFO, line);
}

int eng__call_spawn(eng_call *c, const eng_spawn_opts *o, eng_proc **out) {
  if (c->done) return ENG_ERR_CANCELLED;
  eng__proc_hooks hooks = {proc_log_line, c, host_redact};
  char err[512];
  int rc = eng__proc_spawn(host_loop, c->procs, o, &hooks, out, err,
                           sizeof err);
  if (rc != ENG_OK) eng__call_fail(c, "%s", err);
  return rc;
}


int eng__call_http_start(eng_call *c, void *easy, eng_http_cb cb, void *ud,
                         eng_http **out) {
  if (c->done) return ENG_ERR_CANCELLED;
  return eng__http_start(host_multi, &c->http, easy, cb, ud, out);
}

typedef struct work_req {
  uv_work_t w;
  eng_call *call;
  void (*fn)(void *);
  void (*after)(void *, int);
  void *ud;
} work_req;

static void work_fn(uv_work_t *w) {
  work_req *r = w->data;
  r->fn(r->ud);
}

static void work_after(uv_work_t *w, int status) {
  work_req *r = w->data;
  /* after done() the plugin hears nothing more of the call */
  if (r->after && !r->call->done) r->after(r->ud, status);
  call_unref(r->call);
  free(r);
}

int eng__call_work(eng_call *c, void (*fn)(void *),
                   void (*after)(void *, int), void *ud) {
  if (c->done) return ENG_ERR_CANCELLED;
  work_req *r = eng__xcalloc(1, sizeof *r);
  r->w.data = r;
  r->call = c;
  r->fn = fn;
  r->after = after;
  r->ud = ud;
  call_ref(c);
  int rc = uv_queue_work(host_loop, &r->w, work_fn, work_after);
  if (rc != 0) {
    call_unref(c);
    free(r);
    return ENG_ERR_IO;
  }
  return ENG_OK;
}

static void unlink_timer(struct eng_timer *t) {
  if (!t->call) return;
  struct eng_timer **pp = &t->call->timers;
  while (*pp && *pp != t) pp = &(*pp)->next;
  if (*pp) *pp = t->next;
  t->call = NULL;
}

static void timer_close(uv_handle_t *h) { free(h->data); }

static void timer_fire(uv_timer_t *h) {
  struct eng_timer *t = h->data;
  unlink_timer(t);
  t->closing = true;
  uv_close((uv_handle_t *)&t->h, timer_close);
  t->cb(t->ud);
}

eng_timer *eng__call_timer_start(eng_call *c, uint64_t ms,
                                 void (*cb)(void *), void *ud) {
  if (c && c->done) return NULL;
  struct eng_timer *t = eng__xcalloc(1, sizeof *t);
  uv_timer_init(host_loop, &t->h);
  t->h.data = t;
  t->call = c;
  t->cb = cb;
  t->ud = ud;
  t->next = c ? c->timers : NULL;
  if (c) c->timers = t;
  uv_update_time(host_loop); /* Lua may have held the loop since it last looked */
  uv_timer_start(&t->h, timer_fire, ms, 0);
  return t;
}

void eng__call_timer_stop(eng_timer *t) {
  if (!t || t->closing) return;
  unlink_timer(t);
  t->closing = true;
  uv_timer_stop(&t->h);
  uv_close((uv_handle_t *)&t->h, timer_close);
}

static void watch_cb(uv_poll_t *h, int status, int events) {
  struct eng_watch *w = h->data;
  int ev = 0;
  if (events & UV_READABLE) ev |= ENG_READABLE;
  if (events & UV_WRITABLE) ev |= ENG_WRITABLE;
  w->cb(w->ud, ev, status < 0 ? ENG_ERR_IO : 0);
}

static int uv_events(int events) {
  int e = 0;
  if (events & ENG_READABLE) e |= UV_READABLE;
  if (events & ENG_WRITABLE) e |= UV_WRITABLE;
  return e;
}

eng_watch *eng__call_watch_start(eng_call *c, int fd, int events,
                                 void (*cb)(void *, int, int), void *ud) {
  if (c && c->done) return NULL;
  struct eng_watch *w = eng__xcalloc(1, sizeof *w);
  if (uv_poll_init_socket(host_loop, &w->h, fd) != 0) {
    free(w);
    return NULL;
  }
  w->h.data = w;
  w->call = c;
  w->cb = cb;
  w->ud = ud;
  w->next = c ? c->watches : NULL;
  if (c) c->watches = w;
  if (events) uv_poll_start(&w->h, uv_events(events), watch_cb);
  return w;
}

void eng__call_watch_update(eng_watch *w, int events) {
  if (!w || w->closing) return;
  if (events) uv_poll_start(&w->h, uv_events(events), watch_cb);
  else uv_poll_stop(&w->h);
}

static void watch_close(uv_handle_t *h) { free(h->data); }

void eng__call_watch_stop(eng_watch *w) {
  if (!w || w->closing) return;
  if (w->call) {
    struct eng_watch **pp = &w->call->watches;
    while (*pp && *pp != w) pp = &(*pp)->next;
    if (*pp) *pp = w->next;
  }
  w->closing = true;
  uv_poll_stop(&w->h);
  uv_close((uv_handle_t *)&w->h, watch_close);
}

static eng_side_effect call_side(eng_call *c) {
  if (!c->action) return ENG_SIDE_READ_ONLY;
  eng_side_effect e = c->action->classify ? c->action->classify(c->args)
                                           : c->action->side_effect;
  /* an unknown class from a plugin is treated as the most dangerous one */
  return (unsigned)e > ENG_SIDE_LAST ? ENG_SIDE_DESTRUCTIVE : e;
}

int eng__call_guard_target(eng_call *c, eng_target kind, const char *value,
                          const char *evidence) {
  if (!c->run) { /* no run to decide: fail closed */
    eng__call_fail(c, "refused: no guard context for '%s' (internal)",
                   value ? value : "");
    return ENG_ERR_REFUSED;
  }
  int rc = eng__policy_check(c->run, c->step, kind, value, evidence,
                             call_side(c));
  if (rc != ENG_OK && c->run->last_refusal) /* the rule and what to do */
    eng__call_fail(c, "%s", c->run->last_refusal);
  else if (rc != ENG_OK)
    eng__call_fail(c,
                   "refused by a guard: '%s'%s%s is protected or not owned by "
                   "this run",
                   value, evidence ? " " : "", evidence ? evidence : "");
  return rc;
}

int eng__call_guard_sql(eng_call *c, const char *database,
                        const char *evidence, const char *sql, unsigned flags) {
  if (!c->run) { /* no run to decide: fail closed */
    eng__call_fail(c, "refused: no guard context for '%s' (internal)",
                   database ? database : "");
    return ENG_ERR_REFUSED;
  }
  int rc = eng__policy_sql(c->run, c->step, database, evidence, sql,
                           (flags & ENG_SQL_READ_ONLY) != 0);
  if (rc != ENG_OK)
    eng__call_fail(c, "%s", c->run->last_refusal ? c->run->last_refusal
                                                  : "refused by a guard");
  return rc;
}

/* What a resource the call creates is to the run: the step's keep: or
 * temporary:, else the detail's "disposition", else the call's action's
 * (a hook's call has none: kept). */
static const char *disposition_of(eng_call *c, const json_t *detail) {
  const eng__step *s = c->step ? eng__runbook_step(c->run->rb, c->step) : NULL;
  const char *d = json_string_value(json_object_get(detail, "disposition"));
  eng_disposition disp = ENG_KEPT;
  if (s && s->has_disposition) disp = s->disposition;
  else if (d && !strcmp(d, "temporary")) disp = ENG_TEMPORARY;
  else if (d && !strcmp(d, "kept")) disp = ENG_KEPT;
  else if (c->action) disp = c->action->creates;
  return disp == ENG_TEMPORARY ? "temporary" : "kept";
}

int64_t eng__call_journal_intent(eng_call *c, const char *kind, const char *id,
                                const json_t *detail) {
  if (!c->run) return -1;
  int64_t t = eng__run_journal(c->run, "intent", c->step, kind, id,
                               disposition_of(c, detail), detail);
  if (t < 0)
    eng__call_fail(c, "cannot record the %s %s in the run's journal (%s): it "
                      "was not created, since nothing could clean it up; "
                      "free space in %s and run again",
                   kind, id, strerror(c->run->journal.err ? c->run->journal.err : EIO),
                   c->run->dir);
  return t;
}

void eng__call_journal_confirm(eng_call *c, int64_t token) {
  if (!c->run) return;
  json_t *d = json_pack("{s:I}", "intent", (json_int_t)token);
  eng__run_journal(c->run, "confirm", c->step, NULL, NULL, NULL, d);
  json_decref(d);
}

void eng__call_journal_removed(eng_call *c, const char *kind, const char *id) {
  if (c->run) eng__run_journal(c->run, "removed", c->step, kind, id, NULL, NULL);
}

int eng__call_journal_owned(eng_call *c, const char *kind, const char *id) {
  return c->run ? eng__run_journal_owned(c->run, kind, id) : 0;
}

int eng__call_at_run_end(eng_call *c, int (*cb)(eng_call *, void *),
                         void *ud) {
  if (!c->run) return ENG_ERR_INVALID;
  return eng__run_add_end_hook(c->run, cb, ud);
}



/* Why a call was cancelled, in words. */
static const char *reason_name(int reason) {
  return reason == ENG_CANCEL_TIMEOUT     ? "its step timed out"
         : reason == ENG_CANCEL_INTERRUPT ? "the run was interrupted"
                                          : "the engine is shutting down";
}

/* The grace ran out and the plugin has not called done(): end the call
 * here so the run goes on. Its memory stays (the plugin may still hold
 * it); nothing it started calls back any more. */
static void grace_fire(uv_timer_t *t) {
  eng_call *c = t->data;
  stop_grace(c);
  if (c->done) return;
  char d[32];
  const char *who =
      c->action && c->action->name ? c->action->name : "a plugin function";
  eng__buf_free(&c->error);
  eng__buf_addf(&c->error,
                "%s did not honour the cancel (%s) within %s: the engine "
                "ended the step; whatever it started may still be running "
                "(a plugin bug: report it to the plugin's authors)",
                who, reason_name(c->cancel_reason),
                eng__fmt_duration((int64_t)cancel_grace_ms, d, sizeof d));
  eng__call_logf(c, ENG_LOG_WARN, "%s", c->error.data);
  c->abandoned = true;
  call_ref(c);
  c->next_abandoned = abandoned_calls;
  abandoned_calls = c;
  c->done = true;
  c->rc = c->cancel_reason == ENG_CANCEL_TIMEOUT ? ENG_ERR_TIMEOUT
                                                 : ENG_ERR_CANCELLED;
  close_owned(c);
  uv_timer_start(&c->deliver, deliver_cb, 0, 0);
}

/* Cancel: kill processes, abort transfers, tell the plugin (with the
 * reason); it still calls done(), within the grace. */
void eng__call_cancel(eng_call *c, int reason) {
  if (c->cancelled || c->done) return;
  c->cancelled = true;
  c->cancel_reason = reason;
  call_ref(c);
  eng__proc_group_kill(c->procs, ENG_KILL_GRACE_MS);
  eng__http_group_cancel(&c->http);
  /* the action may have finished from a cancelled transfer's callback */
  if (c->cancel_cb && !c->done) c->cancel_cb(c->cancel_ud);
  /* Lua functions a hook of this step is waiting for */
  for (size_t i = c->n_subs; i-- > 0;)
    if (i < c->n_subs) eng__call_cancel(c->subs[i], reason);
  if (!c->done && c->plugin_started && cancel_grace_ms > 0) {
    c->grace = eng__xmalloc(sizeof *c->grace);
    uv_timer_init(host_loop, c->grace);
    c->grace->data = c;
    uv_update_time(host_loop);
    uv_timer_start(c->grace, grace_fire, cancel_grace_ms, 0);
  }
  call_unref(c);
}
