/* sched.c - the DAG of one run on the loop: the ready set under --jobs,
 * conditions, per-attempt timeouts, retries with backoff, checks, `finally`,
 * run-end hooks and signals. Nothing here blocks: every action completes
 * through its call's callback. What a run is and records (run.c), how
 * values and guards are decided (params.c, guards.c) and what happens once
 * the DAG is done (runner.c) live elsewhere. */
#include "exec/exec.h"

#include <assert.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The scheduler's own state of a run. */
struct eng__sched {
  size_t running;      /* attempts under way (and retry delays) */
  size_t items;        /* for_each items so far (ENG__MAX_ITEMS) */
  size_t next_finally; /* index into rb->steps */
  bool in_finally, in_schedule, schedule_again, hook_running;
  size_t end_hook_next;
  int signals;         /* handled */
  int signals_before;  /* signals_seen when the run started */
  uv_signal_t sigint, sigterm;
  bool closing_signals;
  uv_timer_t *grace;   /* --grace after the first signal */
  bool held;           /* signals were blocked before the run: again after */
  bool grace_over;     /* it ran out: nothing more starts */
  void (*on_end)(eng__run *r);
};

static void schedule(eng__run *r);
static void start_step(eng__run *r, size_t i, long k);
static void poll_signals(eng__run *r);
static void item_ended(eng__run *r, size_t i, size_t k);
/* Signals received, counted in signal context (chain_signal); the
 * scheduler handles each once. */
static volatile sig_atomic_t signals_seen, last_signal;

/* ---- step execution -------------------------------------------------------- */

/* Step i itself (k < 0), or item k of a for_each step i. */
typedef struct attempt {
  eng__run *r;
  size_t i;
  long k;
} attempt;

static eng__step_state *state(eng__run *r, size_t i, long k) {
  return k < 0 ? &r->st[i] : &r->st[i].fan->items[k].st;
}

/* How logs, the journal and the guards name it: "ID" or "ID[LABEL]". */
static const char *name_of(eng__run *r, size_t i, long k) {
  return k < 0 ? r->rb->steps[i].id : r->st[i].fan->items[k].id;
}

static attempt *new_attempt(eng__run *r, size_t i, long k) {
  attempt *a = eng__xmalloc(sizeof *a);
  a->r = r;
  a->i = i;
  a->k = k;
  return a;
}

/* An item's expressions see it as `each` (and nothing else does). */
static void set_each(eng__run *r, size_t i, long k) {
  eng__lua_set_global(r->L, "each", k < 0 ? NULL : r->st[i].fan->items[k].each);
}

static void timer_close_cb(uv_handle_t *h) {
  free(h->data); /* the attempt, unless a callback took it */
  free(h);
}

static void stop_timer(eng__step_state *st) {
  if (!st->timer) return;
  uv_timer_stop(st->timer);
  uv_close((uv_handle_t *)st->timer, timer_close_cb);
  st->timer = NULL;
}

/* An attempt ended (or the retry delay after one): one fewer under way.
 * Every path out of an attempt passes here exactly once. */
static void attempt_ended(eng__run *r) {
  assert(r->sched->running > 0);
  r->sched->running--;
}

static void set_error(eng__run *r, eng__step_state *st, const char *msg) {
  free(st->error);
  st->error = msg ? eng__redact(r->redact, msg) : NULL;
}

static void finish(eng__run *r, size_t i, long k, eng__status status) {
  eng__step_state *st = state(r, i, k);
  eng__step *s = &r->rb->steps[i];
  const char *id = name_of(r, i, k);
  /* a step ends once, with a final status */
  assert(!eng__status_terminal(st->status));
  assert(eng__status_terminal(status));
  stop_timer(st);
  st->status = status;
  st->ended_ms = eng__now_ms();
  if (!st->outputs) st->outputs = json_object();
  if (k < 0) eng__lua_set_step(r->L, s->id, eng__status_name(status), st->outputs);
  free(st->summary);
  st->summary = NULL;
  if (eng__status_succeeded(status)) {
    /* from masked values: a summary cuts long ones, and a cut secret
     * would no longer be recognised */
    json_t *shown = json_deep_copy(st->outputs);
    eng__redact_json(r->redact, shown);
    char sum[160];
    eng__outputs_summary(shown, s->action && !(k < 0 && st->fan)
                                    ? s->action->action->outputs : NULL,
                         sum, sizeof sum);
    json_decref(shown);
    if (sum[0]) st->summary = eng__xstrdup(sum);
  }
  if (st->started_ms && k < 0) eng__con_step_end(r, i);
  else if (st->started_ms) eng__con_item_end(r, i, (size_t)k);
  if (!st->resumed && (st->started_ms || k < 0)) {
    eng__journal_step(&r->journal, "step.end", id, st->inputs[0] ? st->inputs : NULL,
                      eng__status_name(status), st->outputs);
    eng__run_check_journal(r);
    json_t *a = json_pack("{s:s, s:s, s:i, s:I}", "step", id, "status",
                          eng__status_name(status), "attempts", st->attempts,
                          "duration_ms",
                          (json_int_t)(st->started_ms ? st->ended_ms - st->started_ms : 0));
    if (st->error) json_object_set_new(a, "error", json_string(st->error));
    if (status == ENG__S_WARN && st->warning)
      json_object_set_new(a, "warning", json_string(st->warning));
    if (st->summary) json_object_set_new(a, "summary", json_string(st->summary));
    if (k >= 0) json_object_set_new(a, "item", json_string(r->st[i].fan->items[k].label));
    eng__run_audit(r, "step.end", a);
    eng__run_boundary(r);
  }
  if (status == ENG__S_REFUSED) {
    r->refused = true;
    r->stopping = true;
  }
  if (k >= 0) item_ended(r, i, (size_t)k);
  else schedule(r);
}

static void finish_step(eng__run *r, size_t i, eng__status status) {
  finish(r, i, -1, status);
}

static void after_attempt(eng__run *r, size_t i, long k, int rc,
                          const char *error);

static void retry_timer_cb(uv_timer_t *t) {
  attempt *a = t->data;
  eng__run *r = a->r;
  size_t i = a->i;
  long k = a->k;
  free(a);
  t->data = NULL;
  state(r, i, k)->timer = NULL;
  uv_close((uv_handle_t *)t, timer_close_cb);
  if ((r->stopping && !r->rb->steps[i].is_finally) || r->sched->grace_over) {
    attempt_ended(r);
    finish(r, i, k, r->interrupted ? ENG__S_CANCELLED : ENG__S_FAILED);
    return;
  }
  attempt_ended(r);
  start_step(r, i, k);
}

static void timeout_cb(uv_timer_t *t) {
  attempt *a = t->data;
  eng__run *r = a->r;
  size_t i = a->i;
  long k = a->k;
  eng__step_state *st = state(r, i, k);
  free(a);
  t->data = NULL;
  st->timer = NULL;
  uv_close((uv_handle_t *)t, timer_close_cb);
  eng_call *c = st->call ? st->call : st->check_call;
  if (!c) return;
  char d[32];
  eng__con_note(r, "step '%s': attempt %d timed out after %s; cancelling",
                name_of(r, i, k), st->attempts,
                eng__fmt_duration(r->rb->steps[i].timeout_ms, d, sizeof d));
  st->timer_is_retry = true; /* marks "this attempt timed out" */
  eng__call_cancel(c, ENG_CANCEL_TIMEOUT);
}

static void check_done(void *ud, int rc, json_t *results, const char *err) {
  attempt *c = ud;
  eng__run *r = c->r;
  size_t i = c->i;
  long k = c->k;
  free(c);
  eng__step_state *st = state(r, i, k);
  st->check_ran = true;
  if (st->check_call) eng__call_release(st->check_call);
  st->check_call = NULL;
  if (st->timer_is_retry || rc == ENG_ERR_TIMEOUT) {
    /* the attempt's timeout ran out in the check */
    st->timer_is_retry = false;
    st->check_ok = false;
    stop_timer(st);
    json_decref(results);
    after_attempt(r, i, k, ENG_ERR_TIMEOUT, NULL);
    return;
  }
  if (rc != ENG_OK) {
    st->check_ok = false;
    char *m = eng__asprintf("check failed: %s", err ? err : "error");
    free(st->check_error);
    st->check_error = eng__redact(r->redact, m);
    after_attempt(r, i, k, ENG_ERR_FAILED, m);
    free(m);
    json_decref(results);
    return;
  }
  json_t *ok = json_array_get(results, 0);
  if (json_is_string(ok) && !strcmp(json_string_value(ok), "warn")) {
    /* `return "warn", msg`: it worked, and a threshold was crossed */
    json_t *msg = json_array_get(results, 1);
    eng__step_warn(r, st, json_is_string(msg) ? json_string_value(msg)
                                              : "the check returned \"warn\"");
    st->check_ok = true;
    st->check_warned = true;
    after_attempt(r, i, k, ENG_OK, NULL);
  } else if (!ok || json_is_false(ok) || json_is_null(ok)) {
    json_t *msg = json_array_get(results, 1);
    char *m = eng__asprintf(
        "check failed: %s",
        json_is_string(msg) ? json_string_value(msg) : "the check returned false");
    st->check_ok = false;
    free(st->check_error);
    st->check_error = eng__redact(r->redact, m);
    after_attempt(r, i, k, ENG_ERR_FAILED, m);
    free(m);
  } else {
    st->check_ok = true;
    after_attempt(r, i, k, ENG_OK, NULL);
  }
  json_decref(results);
}

/* The action finished OK: extra outputs, then the check hook. */
static void action_ok(eng__run *r, size_t i, long k) {
  eng__step *s = &r->rb->steps[i];
  eng__step_state *st = state(r, i, k);
  set_each(r, i, k);
  for (size_t o = 0; s->outputs && o < s->outputs->n; o++) {
    char err[1024];
    eng__lua_set_global(r->L, "outputs", st->outputs);
    json_t *v = eng__tpl_render(r->L, s->outputs->vals[o], err, sizeof err);
    if (!v) {
      char *m = eng__asprintf("outputs.%s: %s", s->outputs->keys[o]->str, err);
      after_attempt(r, i, k, ENG_ERR_FAILED, m);
      free(m);
      return;
    }
    json_object_set_new(st->outputs, s->outputs->keys[o]->str, v);
  }
  if (s->check_ref < 0) {
    after_attempt(r, i, k, ENG_OK, NULL);
    return;
  }
  /* The check sees this step's outputs as `outputs` and as steps.ID (an
   * item's: as `outputs`, and itself as `each`). */
  if (k < 0) eng__lua_set_step(r->L, s->id, "running", st->outputs);
  attempt *c = new_attempt(r, i, k);
  json_t *locals = json_pack("{s:O}", "outputs", st->outputs);
  if (k >= 0) json_object_set(locals, "each", r->st[i].fan->items[k].each);
  /* a context for what the hook calls (pg.query...): logs, guards, and
   * cancellation by the step's timeout or an interrupt */
  st->check_call = eng__call_new(r, name_of(r, i, k), NULL, NULL, NULL);
  if (st->timer && !st->timer_is_retry)
    eng__call_set_deadline(st->check_call, st->deadline_ns);
  int rc = eng__lua_run(r->L, s->check_ref, locals, st->check_call, check_done, c);
  json_decref(locals);
  if (rc != ENG_OK) {
    free(c);
    if (st->check_call) eng__call_release(st->check_call);
    st->check_call = NULL;
    after_attempt(r, i, k, ENG_ERR_FAILED, "check could not start");
  }
}

static void call_done(void *ud, int rc, json_t *outputs, const char *error) {
  attempt *a = ud;
  eng__run *r = a->r;
  size_t i = a->i;
  long k = a->k;
  free(a);
  eng__step_state *st = state(r, i, k);
  bool timed_out = st->timer_is_retry;
  st->timer_is_retry = false;
  /* the timeout keeps running through the check hook, if any */
  if (rc != ENG_OK || timed_out || r->rb->steps[i].check_ref < 0) stop_timer(st);
  if (st->call) eng__call_release(st->call);
  st->call = NULL;
  json_decref(st->outputs);
  st->outputs = outputs ? outputs : json_object();
  if (timed_out && rc != ENG_OK) rc = ENG_ERR_TIMEOUT;
  if (rc == ENG_OK) {
    action_ok(r, i, k);
    return;
  }
  after_attempt(r, i, k, rc, error);
}

static void after_attempt(eng__run *r, size_t i, long k, int rc,
                          const char *error) {
  /* a signal not handled yet (it stopped this step's hook): the step was
   * interrupted; schedule() handles the signal right after */
  bool signalled = r->sched->signals < signals_seen - r->sched->signals_before;
  eng__step *s = &r->rb->steps[i];
  eng__step_state *st = state(r, i, k);
  if (rc == ENG_OK) {
    set_error(r, st, NULL);
    attempt_ended(r);
    finish(r, i, k, st->warning ? ENG__S_WARN : ENG__S_OK);
    return;
  }
  if (rc == ENG_ERR_TIMEOUT && (!error || !*error)) {
    char d[32];
    char *m = eng__asprintf("timed out after %s (the step's timeout); raise "
                            "'timeout' if that is expected",
                            eng__fmt_duration(s->timeout_ms, d, sizeof d));
    set_error(r, st, m);
    free(m);
  } else if (rc == ENG_ERR_TIMEOUT && !strstr(error, "timed out") &&
             !strstr(error, "timeout")) {
    /* the action's own account of being stopped, said to be a timeout */
    char d[32];
    char *m = eng__asprintf("timed out after %s (the step's timeout): %s",
                            eng__fmt_duration(s->timeout_ms, d, sizeof d), error);
    set_error(r, st, m);
    free(m);
  } else {
    char *m = error && *error ? eng__xstrdup(error)
                              : eng__asprintf("%s", eng_strerror(rc));
    set_error(r, st, m);
    free(m);
  }
  if (rc == ENG_ERR_REFUSED) {
    attempt_ended(r);
    finish(r, i, k, ENG__S_REFUSED);
    return;
  }
  bool cancelled = rc == ENG_ERR_CANCELLED ||
                   ((r->interrupted || signalled) && !s->is_finally);
  if (!cancelled && st->attempts < s->retry.attempts && !r->stopping) {
    double delay = (double)s->retry.delay_ms;
    for (int k = 1; k < st->attempts && delay < (double)ENG__DAY_MS; k++)
      delay *= s->retry.backoff;
    if (s->retry.max_delay_ms > 0 && delay > (double)s->retry.max_delay_ms)
      delay = (double)s->retry.max_delay_ms;
    if (delay > (double)ENG__DAY_MS) delay = (double)ENG__DAY_MS;
    eng__con_step_retry(r, i, k, (int64_t)delay, st->error);
    stop_timer(st); /* the attempt's timeout, if still armed */
    st->timer = eng__xmalloc(sizeof *st->timer);
    uv_timer_init(r->loop, st->timer);
    st->timer->data = new_attempt(r, i, k);
    uv_update_time(r->loop);
    uv_timer_start(st->timer, retry_timer_cb, (uint64_t)delay, 0);
    return; /* still counted as running */
  }
  attempt_ended(r);
  finish(r, i, k,
              cancelled                     ? ENG__S_CANCELLED
              : rc == ENG_ERR_TIMEOUT       ? ENG__S_TIMED_OUT
                                            : ENG__S_FAILED);
}

/* Run-time guard of declared targets, with resolved values. */
static int guard_params(eng__run *r, size_t i, long k, const json_t *params) {
  eng__step *s = &r->rb->steps[i];
  eng_side_effect side = eng__step_side(s, params);
  for (const eng_param *p = s->action->action->params; p && p->name; p++) {
    if (p->target == ENG_TARGET_NONE || p->target == ENG_TARGET_FILE)
      continue;
    json_t *v = json_object_get(params, p->name);
    if (p->target == ENG_TARGET_COMMAND) {
      /* built-ins check their whole line themselves; a plugin's command
       * (prisma's cli, maybe from a step's outputs) is held to the
       * forbidden commands here, before the action starts */
      if (s->action->builtin) continue;
      char *line = eng__command_line(v);
      if (!line) continue;
      char *env = eng__command_env(params);
      int g = eng__policy_check(r, name_of(r, i, k), p->target, line, env, side);
      free(env);
      free(line);
      if (g != ENG_OK) return ENG_ERR_REFUSED;
      continue;
    }
    if (!json_is_string(v)) continue;
    /* patterns only: ownership is decided by the action when it is about
     * to act (a drop 'if_exists' of a database that is not there is no
     * destructive act at all) */
    r->static_check = true;
    int g = eng__policy_check(r, name_of(r, i, k), p->target,
                              json_string_value(v), NULL, side);
    r->static_check = false;
    if (g != ENG_OK) return ENG_ERR_REFUSED;
  }
  return ENG_OK;
}

/* The attempt's parameters as the report shows them (secrets masked) and
 * the hash of the action and its resolved parameters (resume compares it). */
static void record_inputs(eng__run *r, size_t i, long k, const json_t *params) {
  eng__step_state *st = state(r, i, k);
  json_decref(st->params);
  st->params = json_deep_copy(params);
  eng__redact_json(r->redact, st->params);
  char *canon = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
  char *hashed = eng__asprintf("%s\n%s", r->rb->steps[i].uses, canon ? canon : "");
  eng__sha256_hex(hashed, strlen(hashed), st->inputs);
  free(hashed);
  free(canon);
}

/* --resume, first attempt: the step ended ok in the resumed run with the
 * same inputs (it ends ok now, with its recorded outputs), or it started
 * there and never finished and may not be repeated (refused). True when
 * the step was ended here. */
static bool resumed(eng__run *r, size_t i, long k) {
  eng__step *s = &r->rb->steps[i];
  eng__step_state *st = state(r, i, k);
  const char *id = name_of(r, i, k);
  json_t *prev = json_object_get(r->prev_steps, id);
  const char *pin = json_string_value(json_object_get(prev, "inputs"));
  const char *pst = json_string_value(json_object_get(prev, "status"));
  bool warned = pst && !strcmp(pst, "warn");
  if (pin && pst && (!strcmp(pst, "ok") || warned) && !strcmp(pin, st->inputs)) {
    json_decref(st->outputs);
    st->outputs = eng__tpl_deref(r->L, json_object_get(prev, "outputs"));
    st->resumed = true;
    eng__run_log(r, id, ENG_LOG_INFO,
                 warned ? "ended warn in the resumed run with the same inputs: "
                          "not run again"
                        : "ended ok in the resumed run with the same inputs: "
                          "not run again");
    if (warned) st->warning = eng__xstrdup("warned in the resumed run");
    attempt_ended(r);
    finish(r, i, k, warned ? ENG__S_WARN : ENG__S_OK);
    return true;
  }
  if (!json_object_get(r->unfinished, id) ||
      (s->action->action->flags & ENG_A_REPEAT_SAFE) || r->opts->allow_destructive)
    return false;
  for (size_t k = 0; k < r->opts->n_approve; k++)
    if (!strcmp(r->opts->approve[k], s->id)) return false;
  after_attempt(r, i, k, ENG_ERR_REFUSED,
                "refused: this step started in the resumed run and did "
                "not finish, and its action is not safe to repeat; "
                "check its target, then pass --allow-destructive or "
                "--approve STEP");
  return true;
}

/* The step's first attempt starts: journal, audit log, a state boundary,
 * then `require` and `checks`. False when they refused it (ended here). */
static bool record_start(eng__run *r, size_t i, long k) {
  eng__step *s = &r->rb->steps[i];
  eng__step_state *st = state(r, i, k);
  eng__journal_step(&r->journal, "step.start", name_of(r, i, k), st->inputs,
                    NULL, NULL);
  eng__run_check_journal(r);
  json_t *a = json_pack("{s:s, s:s, s:s, s:O}", "step", name_of(r, i, k),
                        "uses", s->action->full, "inputs", st->inputs,
                        "params", st->params);
  if (k >= 0) {
    json_object_set_new(a, "item", json_string(r->st[i].fan->items[k].label));
    json_object_set(a, "each", r->st[i].fan->items[k].each);
  }
  eng__run_audit(r, "step.start", a);
  eng__run_boundary(r);
  /* require and checks: before the step, not again before each item */
  if (k >= 0 || eng__guards_before_step(r, i) == ENG_OK) return true;
  after_attempt(r, i, k, ENG_ERR_REFUSED, r->last_refusal);
  return false;
}

/* The attempt's timeout, armed on the loop and given to the call (Lua on
 * the loop thread cannot see the timer fire: it checks the deadline). */
static void arm_timeout(eng__run *r, size_t i, long k, eng_call *c) {
  eng__step_state *st = state(r, i, k);
  int64_t ms = r->rb->steps[i].timeout_ms;
  st->timer = eng__xmalloc(sizeof *st->timer);
  uv_timer_init(r->loop, st->timer);
  st->timer->data = new_attempt(r, i, k);
  st->timer_is_retry = false;
  /* the loop's clock stops while Lua holds the thread: read it again, or
   * the timeout would count from before an earlier busy hook */
  uv_update_time(r->loop);
  uv_timer_start(st->timer, timeout_cb, (uint64_t)ms, 0);
  st->deadline_ns = uv_hrtime() + (uint64_t)ms * 1000000u;
  eng__call_set_deadline(c, st->deadline_ns);
}

static void fan_start(eng__run *r, size_t i);

static void start_step(eng__run *r, size_t i, long k) {
  eng__step *s = &r->rb->steps[i];
  eng__step_state *st = state(r, i, k);
  if (k < 0 && s->for_each) {
    fan_start(r, i);
    return;
  }
  r->sched->running++;
  st->attempts++;
  st->check_ran = st->check_ok = st->check_warned = false; /* this attempt's */
  free(st->warning);
  st->warning = NULL;
  if (st->attempts == 1) {
    st->status = ENG__S_RUNNING;
    st->started_ms = eng__now_ms();
    if (k < 0) eng__con_step_start(r, i);
    else eng__con_item_start(r, i, (size_t)k);
  }
  char err[1024];
  set_each(r, i, k);
  json_t *params = eng__step_params(r, i, err, sizeof err);
  if (!params) {
    after_attempt(r, i, k, ENG_ERR_INVALID, err);
    return;
  }
  record_inputs(r, i, k, params);
  if ((st->attempts == 1 && r->prev_steps && resumed(r, i, k)) ||
      (st->attempts == 1 && !record_start(r, i, k))) {
    json_decref(params);
    return;
  }
  eng__run_audit(r, "step.attempt", json_pack("{s:s, s:i}", "step", name_of(r, i, k),
                                              "attempt", st->attempts));
  if (guard_params(r, i, k, params) != ENG_OK) {
    json_decref(params);
    after_attempt(r, i, k, ENG_ERR_REFUSED, r->last_refusal);
    return;
  }
  attempt *a = new_attempt(r, i, k);
  eng_call *c = eng__call_new(r, name_of(r, i, k), s->action->action, call_done, a);
  st->call = c;
  if (s->timeout_ms > 0) arm_timeout(r, i, k, c);
  char *start_err = NULL;
  int rc = eng__call_start_err(c, s->action->action->start, params, &start_err);
  json_decref(params);
  if (rc != ENG_OK) {
    /* the call reported the failure through fail(); its callback won't run */
    st->call = NULL;
    free(a);
    stop_timer(st);
    after_attempt(r, i, k, rc, start_err);
    free(start_err);
  }
}

/* Effective status of a dependency for success()/failure(). */
static const char *dep_status(eng__run *r, size_t d) {
  eng__step_state *st = &r->st[d];
  if ((st->status == ENG__S_FAILED || st->status == ENG__S_TIMED_OUT) &&
      r->rb->steps[d].continue_on_error)
    return "ok";
  if (st->status == ENG__S_SKIPPED && st->upstream_failed) return "failed";
  return eng__status_name(st->status);
}

/* success()/failure() see the statuses of step i's dependencies (a
 * finally step's: every main step); true when one did not succeed. */
static bool set_deps(eng__run *r, size_t i) {
  eng__step *s = &r->rb->steps[i];
  bool upstream_bad = false;
  size_t nd = s->is_finally ? r->rb->n_main : s->n_deps;
  const char **sts = eng__xcalloc(nd + 1, sizeof *sts);
  for (size_t k = 0; k < nd; k++) {
    sts[k] = dep_status(r, s->is_finally ? k : s->deps[k]);
    if (!strcmp(sts[k], "failed") || !strcmp(sts[k], "timed_out") ||
        !strcmp(sts[k], "refused") || !strcmp(sts[k], "cancelled"))
      upstream_bad = true;
  }
  eng__lua_set_deps(r->L, sts, nd);
  free(sts);
  return upstream_bad;
}

/* Step i's (or item k's) `if:`: 1 runs, 0 does not, -1 failed (said in
 * the state's error). */
static int eval_if(eng__run *r, size_t i, long k) {
  eng__step *s = &r->rb->steps[i];
  json_t *res = NULL;
  char err[1024];
  set_each(r, i, k);
  int rc = eng__lua_eval(r->L, s->if_ref, NULL, &res, err, sizeof err);
  set_each(r, i, -1);
  if (rc != ENG_OK) {
    char *m = eng__asprintf("'if' condition failed: %s", err);
    set_error(r, state(r, i, k), m);
    free(m);
    return -1;
  }
  json_t *v = json_array_get(res, 0);
  int run = v && !json_is_false(v) && !json_is_null(v);
  json_decref(res);
  return run;
}

/* Decide whether step i runs: true to start, false when it ended here. */
static bool decide(eng__run *r, size_t i) {
  eng__step *s = &r->rb->steps[i];
  eng__step_state *st = &r->st[i];
  bool upstream_bad = false;
  if (!st->selected) {
    st->upstream_failed = set_deps(r, i);
    finish_step(r, i, ENG__S_SKIPPED);
    return false;
  }
  upstream_bad = st->upstream_failed = set_deps(r, i);
  bool run;
  if (s->if_ref >= 0 && s->if_each) {
    run = true; /* its `if:` reads `each`: decided for each item */
  } else if (s->if_ref >= 0) {
    if (!s->is_finally) eng__run_set_status(r, upstream_bad ? "failed" : "running");
    int v = eval_if(r, i, -1);
    if (v < 0) {
      st->started_ms = eng__now_ms();
      eng__con_step_start(r, i);
      finish_step(r, i, ENG__S_FAILED);
      return false;
    }
    run = v == 1;
  } else if (s->is_finally) {
    run = true; /* finally steps default to always() */
  } else {
    run = !upstream_bad;
  }
  if (!run) {
    finish_step(r, i, ENG__S_SKIPPED);
    return false;
  }
  return true;
}

/* ---- for_each: the items of a step ----------------------------------------- */

static void fan_pump(eng__run *r, size_t i);

/* The step's list, rendered now; NULL with the step failed (said). */
static json_t *fan_list(eng__run *r, size_t i) {
  eng__step *s = &r->rb->steps[i];
  char err[1024];
  json_t *list = eng__tpl_render(r->L, s->for_each, err, sizeof err);
  char *m = NULL;
  if (!list) {
    m = eng__asprintf("for_each: %s", err);
  } else if (!json_is_array(list) && !json_is_object(list)) {
    m = eng__asprintf("for_each gave %s, not a list or a map (line %d): "
                      "give a list, a map, or a template yielding one",
                      json_is_null(list) ? "nothing (nil)" : "a single value",
                      s->for_each->line);
  } else {
    size_t n = json_is_array(list) ? json_array_size(list) : json_object_size(list);
    if (r->sched->items + n > ENG__MAX_ITEMS)
      m = eng__asprintf("for_each gave %zu items; a run runs at most %d items "
                        "in all (%zu so far): split the list across runs",
                        n, ENG__MAX_ITEMS, r->sched->items);
    else
      r->sched->items += n;
  }
  if (!m) return list;
  json_decref(list);
  set_error(r, &r->st[i], m);
  free(m);
  finish_step(r, i, ENG__S_FAILED);
  return NULL;
}

/* A for_each step starts: its list rendered into items, recorded like a
 * step (journal, audit log, require and checks), then its items start
 * under max_parallel and --jobs. */
static void fan_start(eng__run *r, size_t i) {
  eng__step *s = &r->rb->steps[i];
  eng__step_state *st = &r->st[i];
  st->status = ENG__S_RUNNING;
  st->started_ms = eng__now_ms();
  st->attempts = 1;
  eng__con_step_start(r, i);
  json_t *list = fan_list(r, i);
  if (!list) return;
  st->fan = eng__fan_new(s, list);
  record_inputs(r, i, -1, list);
  json_decref(list);
  r->sched->running++; /* record_start may end the step: counted as one */
  if (!record_start(r, i, -1)) return;
  attempt_ended(r);
  char *m = eng__asprintf("%zu item%s, at most %d at once%s", st->fan->n,
                          st->fan->n == 1 ? "" : "s",
                          s->max_parallel < r->opts->jobs ? s->max_parallel
                                                          : r->opts->jobs,
                          s->fail_fast ? "" : "; fail_fast: false");
  eng__run_log(r, s->id, ENG_LOG_INFO, m);
  free(m);
  fan_pump(r, i);
}

/* Item k: its title, its `if:` (when it reads each), then its first
 * attempt. */
static void item_begin(eng__run *r, size_t i, size_t k) {
  eng__step *s = &r->rb->steps[i];
  eng__step_state *it = state(r, i, (long)k);
  if (s->name_node && s->name_node->tpl) {
    char err[256];
    set_each(r, i, (long)k);
    json_t *t = eng__tpl_render(r->L, s->name_node, err, sizeof err);
    if (json_is_string(t))
      r->st[i].fan->items[k].title = eng__redact(r->redact, json_string_value(t));
    json_decref(t);
  }
  if (s->if_ref >= 0 && s->if_each) {
    set_deps(r, i);
    int v = eval_if(r, i, (long)k);
    if (v < 0) {
      it->started_ms = eng__now_ms();
      eng__con_item_start(r, i, k);
      finish(r, i, (long)k, ENG__S_FAILED);
      return;
    }
    if (v == 0) {
      finish(r, i, (long)k, ENG__S_SKIPPED);
      return;
    }
  }
  start_step(r, i, (long)k);
}

/* Start items while max_parallel, --jobs and fail_fast allow; once every
 * item ended, the step ends. Not re-entrant: an item that ends at once
 * asks for another pass. */
static void fan_finish(eng__run *r, size_t i);

static void fan_pump(eng__run *r, size_t i) {
  eng__step *s = &r->rb->steps[i];
  eng__fan *f = r->st[i].fan;
  if (f->pumping) {
    f->pump_again = true;
    return;
  }
  f->pumping = true;
  do {
    f->pump_again = false;
    while (f->next < f->n && !f->halted && !r->stopping &&
           f->active < (size_t)s->max_parallel &&
           (int)r->sched->running < r->opts->jobs) {
      size_t k = f->next++;
      f->active++;
      item_begin(r, i, k);
    }
  } while (f->pump_again);
  f->pumping = false;
  if (f->active == 0 && (f->next == f->n || f->halted || r->stopping))
    fan_finish(r, i);
}

/* Items that never started: skipped after fail_fast, cancelled when the
 * run stops. */
static void fan_close_unstarted(eng__run *r, size_t i) {
  eng__fan *f = r->st[i].fan;
  while (f->next < f->n) {
    size_t k = f->next++;
    eng__step_state *it = &f->items[k].st;
    it->status = r->interrupted ? ENG__S_CANCELLED : ENG__S_SKIPPED;
    it->error = eng__xstrdup(f->halted ? "not started: an item failed and "
                                         "fail_fast is on"
                                       : "not started: the run is stopping");
    it->upstream_failed = true;
    f->ended++;
  }
}

/* The step's outputs: each item (value, index, key, status, outputs, error)
 * in item order, and the counts. */
static json_t *fan_outputs(eng__run *r, size_t i, size_t cnt[]) {
  eng__fan *f = r->st[i].fan;
  json_t *items = json_array();
  for (size_t k = 0; k < f->n; k++) {
    eng__step_state *it = &f->items[k].st;
    json_t *o = json_deep_copy(f->items[k].each);
    json_object_set_new(o, "status", json_string(eng__status_name(it->status)));
    json_object_set_new(o, "outputs", it->outputs ? json_incref(it->outputs)
                                                  : json_object());
    if (it->error) json_object_set_new(o, "error", json_string(it->error));
    json_array_append_new(items, o);
  }
  return json_pack("{s:o, s:I, s:I, s:I, s:I, s:I}", "items", items, "count",
                   (json_int_t)f->n, "ok", (json_int_t)cnt[ENG__S_OK], "warn",
                   (json_int_t)cnt[ENG__S_WARN], "failed",
                   (json_int_t)(f->n - cnt[ENG__S_OK] - cnt[ENG__S_WARN] -
                                cnt[ENG__S_SKIPPED]),
                   "skipped", (json_int_t)cnt[ENG__S_SKIPPED]);
}

/* Every item ended: the step ends with their aggregate (ok when each is ok
 * or skipped; failed, refused or cancelled naming the items that were). */
static void fan_finish(eng__run *r, size_t i) {
  eng__step_state *st = &r->st[i];
  eng__fan *f = st->fan;
  if (eng__status_terminal(st->status)) return;
  fan_close_unstarted(r, i);
  size_t cnt[ENG__S_CANCELLED + 1] = {0};
  eng__buf bad = {0}, warned = {0};
  for (size_t k = 0; k < f->n; k++) {
    eng__step_state *it = &f->items[k].st;
    cnt[it->status]++;
    if (!eng__status_succeeded(it->status) && it->status != ENG__S_SKIPPED &&
        bad.len < 400)
      eng__buf_addf(&bad, "%s%s %s%s%s", bad.len ? "; " : "", f->items[k].id,
                    eng__status_name(it->status), it->error ? ": " : "",
                    it->error ? it->error : "");
    if (it->status == ENG__S_WARN && warned.len < 400)
      eng__buf_addf(&warned, "%s%s: %s", warned.len ? "; " : "",
                    f->items[k].id, it->warning ? it->warning : "warned");
  }
  json_decref(st->outputs);
  st->outputs = fan_outputs(r, i, cnt);
  size_t nbad = f->n - cnt[ENG__S_OK] - cnt[ENG__S_WARN] - cnt[ENG__S_SKIPPED];
  eng__status agg = cnt[ENG__S_REFUSED]                      ? ENG__S_REFUSED
                    : cnt[ENG__S_CANCELLED] && r->interrupted ? ENG__S_CANCELLED
                    : nbad                                    ? ENG__S_FAILED
                    : cnt[ENG__S_WARN]                        ? ENG__S_WARN
                    : f->n && cnt[ENG__S_SKIPPED] == f->n     ? ENG__S_SKIPPED
                                                              : ENG__S_OK;
  if (nbad) {
    char *m = eng__asprintf("%zu of %zu items did not succeed: %s", nbad, f->n,
                            bad.data);
    set_error(r, st, m);
    free(m);
  }
  if (agg == ENG__S_WARN) eng__step_warn(r, st, warned.data);
  eng__buf_free(&bad);
  eng__buf_free(&warned);
  finish_step(r, i, agg);
}

static void item_ended(eng__run *r, size_t i, size_t k) {
  eng__fan *f = r->st[i].fan;
  eng__status st = f->items[k].st.status;
  f->active--;
  f->ended++;
  if (!eng__status_succeeded(st) && st != ENG__S_SKIPPED &&
      r->rb->steps[i].fail_fast)
    f->halted = true;
  fan_pump(r, i);
  if (!f->pumping) schedule(r); /* a slot under --jobs is free */
}
static bool deps_done(eng__run *r, size_t i) {
  eng__step *s = &r->rb->steps[i];
  for (size_t k = 0; k < s->n_deps; k++)
    if (!eng__status_terminal(r->st[s->deps[k]].status)) return false;
  return true;
}

static void run_end_hooks(eng__run *r);
static void finish_run(eng__run *r);

/* The outcome of the main steps, as `run.status` shows it to finally. */
const char *eng__sched_main_status(eng__run *r) {
  if (r->interrupted) return "cancelled";
  if (r->refused) return "refused";
  for (size_t i = 0; i < r->rb->n_main; i++) {
    eng__status s = r->st[i].status;
    if ((s == ENG__S_FAILED || s == ENG__S_TIMED_OUT) &&
        !r->rb->steps[i].continue_on_error)
      return "failed";
  }
  return "ok";
}

static void schedule_finally(eng__run *r) {
  eng__runbook *rb = r->rb;
  if (r->sched->running || r->sched->hook_running || r->finished) return;
  while (r->sched->next_finally < rb->n_steps) {
    size_t i = r->sched->next_finally++;
    if (r->sched->signals >= 3 || r->sched->grace_over) {
      finish_step(r, i, ENG__S_CANCELLED);
      return;
    }
    if (eng__status_terminal(r->st[i].status))
      continue; /* refused before the first step (eng__guards_run_start) */
    eng__run_set_status(r, eng__sched_main_status(r));
    if (!decide(r, i)) return; /* finish_step re-entered schedule() */
    start_step(r, i, -1);
    return;
  }
  run_end_hooks(r);
}

static void schedule_once(eng__run *r);

/* Not re-entrant: a step that ends while we decide (skipped, refused,
 * failed at once) asks for another pass instead of recursing, so the stack
 * stays flat whatever the number of steps. */
static void schedule(eng__run *r) {
  poll_signals(r);
  if (r->sched->in_schedule) {
    r->sched->schedule_again = true;
    return;
  }
  r->sched->in_schedule = true;
  do {
    r->sched->schedule_again = false;
    schedule_once(r);
  } while (r->sched->schedule_again && !r->finished);
  r->sched->in_schedule = false;
}

static void schedule_once(eng__run *r) {
  eng__runbook *rb = r->rb;
  if (r->finished) return;
  if (r->sched->in_finally) {
    schedule_finally(r);
    return;
  }
  bool progress = true;
  while (progress) {
    progress = false;
    for (size_t i = 0; i < rb->n_main; i++) {
      eng__step_state *st = &r->st[i];
      if (st->status != ENG__S_PENDING) continue;
      if (r->stopping) {
        finish_step(r, i, r->interrupted ? ENG__S_CANCELLED : ENG__S_SKIPPED);
        return;
      }
      if (!deps_done(r, i)) continue;
      if ((int)r->sched->running >= r->opts->jobs) break;
      if (!decide(r, i)) return;
      start_step(r, i, -1);
      progress = true;
      if (r->finished) return;
    }
  }
  /* for_each steps under way: more items may start now */
  for (size_t i = 0; i < rb->n_main && !r->finished; i++)
    if (r->st[i].status == ENG__S_RUNNING && r->st[i].fan &&
        (int)r->sched->running < r->opts->jobs)
      fan_pump(r, i);
  if (r->finished) return;
  if (r->sched->running) return;
  for (size_t i = 0; i < rb->n_main; i++)
    if (!eng__status_terminal(r->st[i].status)) return;
  r->sched->in_finally = true;
  /* `finally` (a notification) sees the RTO/RPO measured so far */
  eng__slo_measure(r, eng__now_ms());
  r->sched->next_finally = rb->n_main;
  schedule_finally(r);
}

/* ---- at_run_end hooks (e.g. stop a sandbox cluster) -------------------- */

static void end_hook_done(void *ud, int rc, json_t *outputs,
                          const char *error) {
  eng__run *r = ud;
  r->sched->hook_running = false;
  json_decref(outputs);
  if (rc != ENG_OK) {
    char *m = eng__asprintf("cleanup at run end failed: %s",
                            error ? error : eng_strerror(rc));
    eng__run_log(r, NULL, ENG_LOG_WARN, m);
    free(m);
  }
  run_end_hooks(r);
}

static void disposed(eng__run *r) {
  r->sched->hook_running = false;
  finish_run(r);
}

static void run_end_hooks(eng__run *r) {
  while (r->sched->end_hook_next < r->n_end_hooks) {
    struct eng__end_hook *h = &r->end_hooks[r->sched->end_hook_next++];
    eng_call *c = eng__call_new(r, NULL, NULL, end_hook_done, r);
    int rc = eng__call_start(c, NULL, NULL);
    (void)rc;
    r->sched->hook_running = true;
    rc = h->cb(c, h->ud);
    if (rc == ENG_OK) return; /* continues in end_hook_done */
    r->sched->hook_running = false;
    eng__call_release(c);
  }
  /* then the temporary resources still present (dispose.c); nothing else
   * is scheduled meanwhile */
  r->sched->hook_running = true;
  eng__dispose_start(r, r->sched->grace_over || r->sched->signals >= 3,
                     disposed);
}

/* ---- signals ---------------------------------------------------------------- */

/* libuv's own handlers, chained after ours (process-wide, like them). */
static struct sigaction uv_sigint, uv_sigterm;
static bool chained;

/* Runs in signal context: it only raises the flag Lua's hook checks (an
 * evaluation busy on the loop thread stops), then lets libuv queue the
 * signal for on_signal(). */
static void chain_signal(int signum, siginfo_t *info, void *uctx) {
  signals_seen++;
  last_signal = signum;
  eng__lua_interrupt = 1;
  eng__lua_poke();
  struct sigaction *next = signum == SIGINT ? &uv_sigint : &uv_sigterm;
  if (next->sa_flags & SA_SIGINFO) {
    if (next->sa_sigaction) next->sa_sigaction(signum, info, uctx);
  } else if (next->sa_handler != SIG_DFL && next->sa_handler != SIG_IGN &&
             next->sa_handler) {
    next->sa_handler(signum);
  }
}

static void chain_signals(bool on) {
  if (on && !chained) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = chain_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigfillset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &uv_sigint);
    sigaction(SIGTERM, &sa, &uv_sigterm);
    chained = true;
  } else if (!on && chained) {
    sigaction(SIGINT, &uv_sigint, NULL);
    sigaction(SIGTERM, &uv_sigterm, NULL);
    chained = false;
  }
}

static void handle_signal(eng__run *r, int signum);
static void stop_steps(eng__run *r);

/* Cancel the calls of steps [from, to) and of their items; an attempt
 * waiting to retry ends cancelled (no more attempts). */
static void cancel_steps(eng__run *r, size_t from, size_t to) {
  for (size_t i = from; i < to; i++) {
    eng__fan *f = r->st[i].fan;
    size_t n = f ? f->n : 0;
    for (long k = -1; k < (long)n; k++) {
      eng__step_state *st = state(r, i, k);
      eng_call *c = st->call ? st->call : st->check_call;
      if (c && !eng__status_terminal(st->status)) {
        eng__call_cancel(c, ENG_CANCEL_INTERRUPT);
      } else if (st->timer && st->status == ENG__S_RUNNING) {
        stop_timer(st);
        attempt_ended(r);
        finish(r, i, k, ENG__S_CANCELLED);
      }
    }
  }
}

static void grace_closed(uv_handle_t *h) { free(h); }

static void stop_grace(eng__run *r) {
  if (!r->sched->grace) return;
  uv_timer_stop(r->sched->grace);
  uv_close((uv_handle_t *)r->sched->grace, grace_closed);
  r->sched->grace = NULL;
}

/* The grace ran out: every call still running (a `finally` step, an end
 * hook) is cancelled and given at most 2 s, no further step starts; what
 * was not removed stays in the journal. */
static void grace_fire(uv_timer_t *t) {
  eng__run *r = t->data;
  stop_grace(r);
  if (r->finished) return;
  r->sched->grace_over = true;
  char g[32];
  eng__con_note(r, "the grace of %s ran out: stopping 'finally' now; what "
                   "it did not remove stays in the journal ('engine cleanup "
                   "%s', or the next run holding the same lock, removes it)",
                eng__fmt_duration(r->opts->grace_ms, g, sizeof g), r->id);
  eng__host_limit_cancel_grace(2000);
  eng__dispose_cancel(r);
  cancel_steps(r, 0, r->rb->n_steps);
  if (!r->sched->hook_running) schedule(r);
}

static void start_grace(eng__run *r) {
  if (r->opts->grace_ms <= 0 || r->sched->grace) return;
  /* an action cancelled now may not outlast the grace either */
  eng__host_limit_cancel_grace((uint64_t)r->opts->grace_ms);
  r->sched->grace = eng__xmalloc(sizeof *r->sched->grace);
  uv_timer_init(r->loop, r->sched->grace);
  r->sched->grace->data = r;
  uv_timer_start(r->sched->grace, grace_fire, (uint64_t)r->opts->grace_ms, 0);
  uv_unref((uv_handle_t *)r->sched->grace);
}

void eng__sched_stop(eng__run *r, const char *why) {
  if (r->finished || r->interrupted) return;
  free(r->stop_reason);
  r->stop_reason = eng__xstrdup(why);
  eng__con_note(r, "%s: cancelling running steps, then running 'finally'",
                why);
  start_grace(r);
  stop_steps(r);
}

/* Handle the signals received and not handled yet. */
static void poll_signals(eng__run *r) {
  while (r->sched && r->sched->signals < signals_seen - r->sched->signals_before)
    handle_signal(r, last_signal);
  eng__lua_interrupt = 0; /* handled: `finally` evaluates normally */
}

static void on_signal(uv_signal_t *h, int signum) {
  eng__run *r = h->data;
  if (!chained) { /* not through our handler: count it here */
    signals_seen++;
    last_signal = signum;
  }
  poll_signals(r);
}

static void handle_signal(eng__run *r, int signum) {
  r->sched->signals++;
  if (r->sched->signals >= 3) {
    fprintf(stderr, "engine: third signal, exiting now without cleanup\n");
    _exit(ENG_EXIT_INTERRUPTED);
  }
  if (r->sched->signals == 2) {
    eng__con_note(r, "second signal: cleanup is still running; a third one "
                     "exits at once");
    return;
  }
  char g[32] = "";
  if (r->opts->grace_ms > 0)
    eng__fmt_duration(r->opts->grace_ms, g, sizeof g);
  eng__con_note(r, "%s received: cancelling running steps, then running "
                   "'finally'%s%s",
                signum == SIGINT ? "SIGINT" : "SIGTERM",
                g[0] ? " within " : "", g);
  start_grace(r);
  stop_steps(r);
}

/* Cancel what runs and start nothing more of the main steps; `finally`
 * follows. */
static void stop_steps(eng__run *r) {
  r->interrupted = true;
  r->stopping = true;
  cancel_steps(r, 0, r->rb->n_main);
  if (!r->sched->hook_running) schedule(r);
}

/* SIGINT and SIGTERM reach the engine only while a run's loop handles
 * them: blocked before (taking a lock, removing leftovers) and after
 * (the last state write), unblocked here. One that arrived meanwhile is
 * delivered as soon as the run starts, which then stops at once. */
static void hold_signals(bool hold) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  pthread_sigmask(hold ? SIG_BLOCK : SIG_UNBLOCK, &s, NULL);
}

static void close_signals(eng__run *r) {
  if (r->sched->closing_signals) return;
  r->sched->closing_signals = true;
  if (r->sched->held) hold_signals(true);
  chain_signals(false);
  uv_close((uv_handle_t *)&r->sched->sigint, NULL);
  uv_close((uv_handle_t *)&r->sched->sigterm, NULL);
}

/* ---- end of run ---------------------------------------------------------------- */

static void finish_run(eng__run *r) {
  if (r->finished) return;
  r->finished = true;
  r->ended_ms = eng__now_ms();
  stop_grace(r);
  close_signals(r);
  r->sched->on_end(r);
}

void eng__sched_start(eng__run *r, void (*on_end)(eng__run *r)) {
  r->sched = eng__xcalloc(1, sizeof *r->sched);
  r->sched->on_end = on_end;
  r->sched->signals_before = signals_seen;
  eng__lua_interrupt = 0;
  uv_signal_init(r->loop, &r->sched->sigint);
  uv_signal_init(r->loop, &r->sched->sigterm);
  r->sched->sigint.data = r->sched->sigterm.data = r;
  uv_signal_start(&r->sched->sigint, on_signal, SIGINT);
  uv_signal_start(&r->sched->sigterm, on_signal, SIGTERM);
  /* Signals alone do not keep the loop running: when nothing else can
   * call back, uv_run returns and eng__sched_abandon() ends what waits. */
  uv_unref((uv_handle_t *)&r->sched->sigint);
  uv_unref((uv_handle_t *)&r->sched->sigterm);
  chain_signals(true);
  sigset_t now;
  pthread_sigmask(SIG_SETMASK, NULL, &now);
  r->sched->held = sigismember(&now, SIGTERM) == 1;
  if (r->sched->held) hold_signals(false);
  schedule(r);
}

int eng__sched_abandon(eng__run *r) {
  /* Calls still waiting, with nothing left that could call them back: the
   * engine ends them (ENG_CANCEL_SHUTDOWN); the grace bounds how long
   * their plugin may take, and the run then ends as usual. */
  bool cancelled = false;
  for (size_t i = 0; i < r->rb->n_steps; i++) {
    eng__fan *f = r->st[i].fan;
    for (long k = -1; k < (f ? (long)f->n : 0); k++) {
      eng__step_state *st = state(r, i, k);
      eng_call *c = st->call ? st->call : st->check_call;
      if (!c || eng__status_terminal(st->status) || st->shut_down) continue;
      st->shut_down = true;
      if (!cancelled)
        eng__con_note(r, "steps are waiting on actions that can no longer "
                         "complete: cancelling them");
      cancelled = true;
      eng__call_cancel(c, ENG_CANCEL_SHUTDOWN);
    }
  }
  if (cancelled) return 1;
  eng__con_note(r, "internal: the event loop stopped with steps pending");
  for (size_t i = 0; i < r->rb->n_steps; i++)
    if (!eng__status_terminal(r->st[i].status)) r->st[i].status = ENG__S_FAILED;
  finish_run(r);
  return 0;
}

void eng__sched_free(eng__run *r) {
  free(r->sched);
  r->sched = NULL;
}
