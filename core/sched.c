/* sched.c - one run on one libuv loop: parameters, the step DAG with
 * --jobs, conditions, timeouts, retries, checks, `finally`, signals, SLO and
 * the exit code. Nothing here blocks: every action completes through its
 * call's callback. */
#include "scheduler.h"
#include "audit.h"
#include "registry.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#ifndef ENG_VERSION
#define ENG_VERSION "0.0.0"
#endif
#define ENG_VERSION_STR ENG_VERSION

extern char **environ;

static const char *const status_names[] = {
    "pending", "running", "ok", "failed", "skipped", "refused",
    "timed_out", "cancelled"};

const char *eng__status_name(eng__status s) { return status_names[s]; }

static bool terminal(eng__status s) { return s >= ENG__S_OK; }

struct eng__end_hook {
  int (*cb)(eng_call *, void *);
  void *ud;
};

static void schedule(eng__run *r);
static void start_step(eng__run *r, size_t i);

/* ---- params ------------------------------------------------------------ */

static const char *const *param_names(eng__runbook *rb) {
  const char **v = eng__xcalloc(rb->n_params + 1, sizeof *v);
  for (size_t i = 0; i < rb->n_params; i++) v[i] = rb->params[i].name;
  return v;
}

int eng__run_params(eng__run *r, eng__diags *d) {
  eng__runbook *rb = r->rb;
  const eng__run_opts *o = r->opts;
  int bad = 0;
  const char *const *names = param_names(rb);
  const char *key;
  json_t *val;
  json_t *given = json_object();
  if (o->params_file) json_object_update(given, o->params_file);
  if (o->sets) json_object_update(given, o->sets);
  json_object_foreach(given, key, val) {
    bool known = false;
    for (size_t i = 0; i < rb->n_params; i++)
      if (!strcmp(rb->params[i].name, key)) known = true;
    if (known) continue;
    const char *hint = eng__suggest(key, names, rb->n_params);
    eng__diag_error(d, rb->file, 0, 0,
                    "unknown parameter '%s' given with --set/--params-file%s%s%s",
                    key, hint ? " (did you mean '" : "", hint ? hint : "",
                    hint ? "'?)" : "");
    bad++;
  }
  free((void *)names);
  r->params = json_object();
  eng__lua_set_global(r->L, "params", r->params);
  for (size_t i = 0; i < rb->n_params; i++) {
    eng__param_def *p = &rb->params[i];
    json_t *v = json_incref(json_object_get(given, p->name));
    const char *source = "--set";
    if (!v && p->env && getenv(p->env)) {
      v = json_string(getenv(p->env));
      source = p->env;
    }
    if (!v && p->def) {
      char err[1024];
      v = eng__tpl_render(r->L, p->def, err, sizeof err);
      source = "default";
      if (!v) {
        eng__diag_error(d, rb->file, p->def->line, p->def->col,
                        "parameter '%s': default: %s", p->name, err);
        bad++;
        continue;
      }
    }
    if (!v) {
      if (p->required) {
        eng__diag_error(d, rb->file, p->node->line, p->node->col,
                        "missing required parameter '%s': pass --set %s=VALUE%s%s",
                        p->name, p->name, p->env ? " or set " : "",
                        p->env ? p->env : "");
        bad++;
        continue;
      }
      v = p->type == ENG_T_STRING ? json_string("") : json_null();
    }
    char err[512];
    json_t *c = json_is_null(v) ? json_incref(v) : NULL;
    if (!c) {
      char choices[512] = "";
      if (p->choices) {
        size_t idx;
        json_t *e;
        eng__buf b = {0};
        json_array_foreach(p->choices, idx, e) {
          if (idx) eng__buf_adds(&b, "|");
          eng__buf_adds(&b, json_is_string(e) ? json_string_value(e) : "?");
        }
        snprintf(choices, sizeof choices, "%s", b.data ? b.data : "");
        eng__buf_free(&b);
      }
      c = eng__convert(v, p->type, p->choices ? choices : NULL, err,
                       sizeof err);
      /* A duration parameter keeps the text it was given ("90s"), checked:
       * actions convert it themselves, so it never changes unit twice. */
      if (c && p->type == ENG_T_DURATION && json_is_string(v)) {
        json_decref(c);
        c = json_incref(v);
      }
    }
    if (!c) {
      eng__diag_error(d, rb->file, p->node->line, p->node->col,
                      "parameter '%s' (from %s): %s", p->name, source, err);
      bad++;
      json_decref(v);
      continue;
    }
    if (p->secret && json_is_string(c)) {
      eng__redactor_add(r->redact, json_string_value(c));
      char *ref = !strcmp(source, "--set") || !strcmp(source, "default")
                      ? eng__asprintf("${params.%s}", p->name)
                      : eng__asprintf("${env.%s}", source);
      eng__journal_add_ref(r, json_string_value(c), ref);
      free(ref);
    }
    json_object_set_new(r->params, p->name, c);
    json_decref(v);
    eng__lua_set_global(r->L, "params", r->params);
  }
  json_decref(given);
  return bad ? ENG_EXIT_USAGE : ENG_EXIT_OK;
}

/* ---- context for Lua ------------------------------------------------------ */

static void set_run_global(eng__run *r, const char *status) {
  char t[40];
  json_t *run = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", r->id, "name",
                          r->rb->name ? r->rb->name : "", "started_at",
                          eng__fmt_time(r->started_ms, t, sizeof t), "dir",
                          r->dir ? r->dir : "", "status", status);
  eng__lua_set_global(r->L, "run", run);
  json_decref(run);
}

static void set_env_global(eng__run *r) {
  json_t *env = json_object();
  for (char **e = environ; e && *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq) continue;
    char *k = eng__xstrndup(*e, (size_t)(eq - *e));
    json_object_set_new(env, k, json_string(eq + 1));
    free(k);
  }
  eng__lua_set_global(r->L, "env", env);
  json_decref(env);
  static const char *const secret_env[] = {"AWS_SECRET_ACCESS_KEY",
                                           "AWS_SESSION_TOKEN",
                                           "SLACK_WEBHOOK_URL", "SLACK_TOKEN",
                                           "PGPASSWORD", "ENGINE_AUDIT_KEY"};
  for (size_t i = 0; i < sizeof secret_env / sizeof *secret_env; i++)
    if (getenv(secret_env[i])) eng__redactor_add(r->redact, getenv(secret_env[i]));
  if (getenv("DATABASE_URL")) eng__redactor_add(r->redact, getenv("DATABASE_URL"));
  for (size_t i = 0; i < sizeof secret_env / sizeof *secret_env; i++)
    if (getenv(secret_env[i])) {
      char *ref = eng__asprintf("${env.%s}", secret_env[i]);
      eng__journal_add_ref(r, getenv(secret_env[i]), ref);
      free(ref);
    }
  if (getenv("DATABASE_URL"))
    eng__journal_add_ref(r, getenv("DATABASE_URL"), "${env.DATABASE_URL}");
}

static void set_runbook_global(eng__run *r) {
  json_t *rb = json_pack("{s:s, s:s, s:s}", "name",
                         r->rb->name ? r->rb->name : "", "file", r->rb->file,
                         "dir", r->rb->dir);
  eng__lua_set_global(r->L, "runbook", rb);
  json_decref(rb);
}

/* ---- run identity and directory ------------------------------------------- */

static void make_run_id(eng__run *r) {
  time_t t = (time_t)(r->started_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  unsigned rnd = 0;
  FILE *f = fopen("/dev/urandom", "rb");
  if (!f || fread(&rnd, sizeof rnd, 1, f) != 1) rnd = (unsigned)getpid() ^ (unsigned)r->started_ms;
  if (f) fclose(f);
  snprintf(r->id, sizeof r->id, "%04d%02d%02d-%02d%02d%02d-%04x",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec, rnd & 0xffff);
}

static int make_run_dir(eng__run *r, eng__diags *d) {
  const char *state = r->opts->state_dir;
  char *abs = NULL;
  if (state[0] == '/') abs = eng__xstrdup(state);
  else {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
      eng__diag_error(d, NULL, 0, 0, "cannot read the current directory");
      return -1;
    }
    abs = eng__asprintf("%s/%s", cwd, state);
  }
  r->dir = eng__asprintf("%s/runs/%s", abs, r->id);
  free(abs);
  if (eng__mkdir_p(r->dir, 0700) != 0) {
    eng__diag_error(d, NULL, 0, 0,
                    "cannot create the run directory %s: %s (check "
                    "--state-dir / ENGINE_STATE_DIR)",
                    r->dir, strerror(errno));
    return -1;
  }
  char *jp = eng__asprintf("%s/journal", r->dir);
  r->journal = fopen(jp, "ae");
  if (!r->journal)
    eng__diag_error(d, NULL, 0, 0, "cannot open the journal %s: %s", jp,
                    strerror(errno));
  free(jp);
  return r->journal ? 0 : -1;
}

void eng__run_audit(eng__run *r, const char *type, json_t *fields) {
  if (!r->audit) {
    json_decref(fields);
    return;
  }
  if (eng__audit_event(r->audit, type, fields) != 0 && !r->audit_broken) {
    r->audit_broken = true;
    fprintf(stderr, "engine: cannot write the audit log: %s; the run will "
                    "end as failed\n", strerror(errno));
  }
}

/* ---- services used by call.c --------------------------------------------- */

void eng__run_log(eng__run *r, const char *step, eng_log_level lvl,
                  const char *msg) {
  static const char *const lv[] = {"debug", "info", "warn", "error"};
  if ((unsigned)lvl > ENG_LOG_ERROR) lvl = ENG_LOG_ERROR;
  char *red = eng__redact(r->redact, msg);
  eng__con_log(r, step, lvl, red);
  eng__run_audit(r, "step.log", json_pack("{s:s?, s:s, s:s}", "step", step,
                                          "level", lv[lvl], "message", red));
  free(red);
}

void eng__run_progress(eng__run *r, const char *step, int64_t done,
                       int64_t total) {
  eng__con_progress(r, step, done, total);
}

int eng__run_add_end_hook(eng__run *r, int (*cb)(eng_call *, void *),
                          void *ud) {
  size_t n = 0;
  while (r->end_hooks && r->end_hooks[n].cb) n++;
  r->end_hooks = eng__xrealloc(r->end_hooks, (n + 2) * sizeof *r->end_hooks);
  r->end_hooks[n].cb = cb;
  r->end_hooks[n].ud = ud;
  r->end_hooks[n + 1].cb = NULL;
  return ENG_OK;
}

/* ---- step execution -------------------------------------------------------- */

typedef struct attempt {
  eng__run *r;
  size_t i;
} attempt;

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

static void set_error(eng__run *r, eng__step_state *st, const char *msg) {
  free(st->error);
  st->error = msg ? eng__redact(r->redact, msg) : NULL;
}

static void finish_step(eng__run *r, size_t i, eng__status status) {
  eng__step_state *st = &r->st[i];
  eng__step *s = &r->rb->steps[i];
  stop_timer(st);
  st->status = status;
  st->ended_ms = eng__now_ms();
  if (!st->outputs) st->outputs = json_object();
  eng__lua_set_step(r->L, s->id, eng__status_name(status), st->outputs);
  if (st->started_ms) eng__con_step_end(r, i);
  if (!st->resumed) {
    eng__journal_step(r, "step.end", s->id, st->inputs[0] ? st->inputs : NULL,
                      eng__status_name(status), st->outputs);
    json_t *a = json_pack("{s:s, s:s, s:i, s:I}", "step", s->id, "status",
                          eng__status_name(status), "attempts", st->attempts,
                          "duration_ms",
                          (json_int_t)(st->started_ms ? st->ended_ms - st->started_ms : 0));
    if (st->error) json_object_set_new(a, "error", json_string(st->error));
    eng__run_audit(r, "step.end", a);
    eng__audit_sync(r->audit);
  }
  if (status == ENG__S_REFUSED) {
    r->refused = true;
    r->stopping = true;
  }
  schedule(r);
}

static void after_attempt(eng__run *r, size_t i, int rc, const char *error);

static void retry_timer_cb(uv_timer_t *t) {
  attempt *a = t->data;
  eng__run *r = a->r;
  size_t i = a->i;
  free(a);
  t->data = NULL;
  r->st[i].timer = NULL;
  uv_close((uv_handle_t *)t, timer_close_cb);
  if (r->stopping && !r->rb->steps[i].is_finally) {
    r->running--;
    finish_step(r, i, r->interrupted ? ENG__S_CANCELLED : ENG__S_FAILED);
    return;
  }
  r->running--;
  start_step(r, i);
}

static void timeout_cb(uv_timer_t *t) {
  attempt *a = t->data;
  eng__run *r = a->r;
  size_t i = a->i;
  eng__step_state *st = &r->st[i];
  free(a);
  t->data = NULL;
  st->timer = NULL;
  uv_close((uv_handle_t *)t, timer_close_cb);
  eng_call *c = st->call ? st->call : st->check_call;
  if (!c) return;
  char d[32];
  eng__con_note(r, "step '%s': attempt %d timed out after %s; cancelling",
                r->rb->steps[i].id, st->attempts,
                eng__fmt_duration(r->rb->steps[i].timeout_ms, d, sizeof d));
  st->timer_is_retry = true; /* marks "this attempt timed out" */
  eng__call_cancel(c);
}

typedef struct check_ctx {
  eng__run *r;
  size_t i;
} check_ctx;

static void check_done(void *ud, int rc, json_t *results, const char *err) {
  check_ctx *c = ud;
  eng__run *r = c->r;
  size_t i = c->i;
  free(c);
  eng__step_state *st = &r->st[i];
  st->check_ran = true;
  if (st->check_call) eng__call_release(st->check_call);
  st->check_call = NULL;
  if (st->timer_is_retry) { /* the attempt's timeout ran out in the check */
    st->timer_is_retry = false;
    st->check_ok = false;
    json_decref(results);
    after_attempt(r, i, ENG_ERR_TIMEOUT, NULL);
    return;
  }
  if (rc != ENG_OK) {
    st->check_ok = false;
    char *m = eng__asprintf("check failed: %s", err ? err : "error");
    free(st->check_error);
    st->check_error = eng__redact(r->redact, m);
    after_attempt(r, i, ENG_ERR_FAILED, m);
    free(m);
    json_decref(results);
    return;
  }
  json_t *ok = json_array_get(results, 0);
  if (!ok || json_is_false(ok) || json_is_null(ok)) {
    json_t *msg = json_array_get(results, 1);
    char *m = eng__asprintf(
        "check failed: %s",
        json_is_string(msg) ? json_string_value(msg) : "the check returned false");
    st->check_ok = false;
    free(st->check_error);
    st->check_error = eng__redact(r->redact, m);
    after_attempt(r, i, ENG_ERR_FAILED, m);
    free(m);
  } else {
    st->check_ok = true;
    after_attempt(r, i, ENG_OK, NULL);
  }
  json_decref(results);
}

/* The action finished OK: extra outputs, then the check hook. */
static void action_ok(eng__run *r, size_t i) {
  eng__step *s = &r->rb->steps[i];
  eng__step_state *st = &r->st[i];
  json_t *locals = json_pack("{s:O}", "outputs", st->outputs);
  for (size_t k = 0; s->outputs && k < s->outputs->n; k++) {
    char err[1024];
    eng__lua_set_global(r->L, "outputs", st->outputs);
    json_t *v = eng__tpl_render(r->L, s->outputs->vals[k], err, sizeof err);
    if (!v) {
      char *m = eng__asprintf("outputs.%s: %s", s->outputs->keys[k]->str, err);
      json_decref(locals);
      after_attempt(r, i, ENG_ERR_FAILED, m);
      free(m);
      return;
    }
    json_object_set_new(st->outputs, s->outputs->keys[k]->str, v);
  }
  json_decref(locals);
  if (s->check_ref < 0) {
    after_attempt(r, i, ENG_OK, NULL);
    return;
  }
  /* The check sees this step's outputs as `outputs` and as steps.ID. */
  eng__lua_set_step(r->L, s->id, "running", st->outputs);
  check_ctx *c = eng__xmalloc(sizeof *c);
  c->r = r;
  c->i = i;
  locals = json_pack("{s:O}", "outputs", st->outputs);
  /* a context for what the hook calls (pg.query...): logs, guards, and
   * cancellation by the step's timeout or an interrupt */
  st->check_call = eng__call_new(r, s->id, NULL, NULL, NULL);
  int rc = eng__lua_run(r->L, s->check_ref, locals, st->check_call, check_done, c);
  json_decref(locals);
  if (rc != ENG_OK) {
    free(c);
    if (st->check_call) eng__call_release(st->check_call);
    st->check_call = NULL;
    after_attempt(r, i, ENG_ERR_FAILED, "check could not start");
  }
}

static void call_done(void *ud, int rc, json_t *outputs, const char *error) {
  attempt *a = ud;
  eng__run *r = a->r;
  size_t i = a->i;
  free(a);
  eng__step_state *st = &r->st[i];
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
    action_ok(r, i);
    return;
  }
  after_attempt(r, i, rc, error);
}

static void after_attempt(eng__run *r, size_t i, int rc, const char *error) {
  eng__step *s = &r->rb->steps[i];
  eng__step_state *st = &r->st[i];
  if (rc == ENG_OK) {
    set_error(r, st, NULL);
    r->running--;
    finish_step(r, i, ENG__S_OK);
    return;
  }
  if (rc == ENG_ERR_TIMEOUT && (!error || !*error)) {
    char d[32];
    char *m = eng__asprintf("timed out after %s (timeout: %s)",
                            eng__fmt_duration(s->timeout_ms, d, sizeof d),
                            "raise the step's 'timeout' if that is expected");
    set_error(r, st, m);
    free(m);
  } else {
    char *m = error && *error ? eng__xstrdup(error)
                              : eng__asprintf("%s", eng_strerror(rc));
    set_error(r, st, m);
    free(m);
  }
  if (rc == ENG_ERR_REFUSED) {
    r->running--;
    finish_step(r, i, ENG__S_REFUSED);
    return;
  }
  bool cancelled = rc == ENG_ERR_CANCELLED || (r->interrupted && !s->is_finally);
  if (!cancelled && st->attempts < s->retry.attempts && !r->stopping) {
    double delay = (double)s->retry.delay_ms;
    for (int k = 1; k < st->attempts && delay < 8.64e7; k++)
      delay *= s->retry.backoff;
    if (s->retry.max_delay_ms > 0 && delay > (double)s->retry.max_delay_ms)
      delay = (double)s->retry.max_delay_ms;
    if (delay > 8.64e7) delay = 8.64e7; /* a day at most */
    eng__con_step_retry(r, i, (int64_t)delay, st->error);
    stop_timer(st); /* the attempt's timeout, if still armed */
    attempt *a = eng__xmalloc(sizeof *a);
    a->r = r;
    a->i = i;
    st->timer = eng__xmalloc(sizeof *st->timer);
    uv_timer_init(r->loop, st->timer);
    st->timer->data = a;
    uv_timer_start(st->timer, retry_timer_cb, (uint64_t)delay, 0);
    return; /* still counted as running */
  }
  r->running--;
  finish_step(r, i,
              cancelled                     ? ENG__S_CANCELLED
              : rc == ENG_ERR_TIMEOUT       ? ENG__S_TIMED_OUT
                                            : ENG__S_FAILED);
}

/* Render `with`, convert every declared parameter, apply defaults. */
static json_t *build_params(eng__run *r, size_t i, char *err, size_t errlen) {
  eng__step *s = &r->rb->steps[i];
  const eng_action *act = s->action->action;
  json_t *raw = s->with ? eng__tpl_render(r->L, s->with, err, errlen)
                        : json_object();
  if (!raw) return NULL;
  json_t *out = json_object();
  for (const eng_param *p = act->params; p && p->name; p++) {
    json_t *v = json_object_get(raw, p->name);
    json_t *def = NULL;
    if (!v || json_is_null(v)) {
      if (p->def) def = v = json_loads(p->def, JSON_DECODE_ANY, NULL);
      else if (p->flags & ENG_P_REQUIRED) {
        snprintf(err, errlen, "parameter '%s' of %s is required but empty",
                 p->name, s->action->full);
        json_decref(raw);
        json_decref(out);
        return NULL;
      } else continue;
    }
    char cerr[512];
    json_t *c = eng__convert(v, p->type, p->choices, cerr, sizeof cerr);
    json_decref(def);
    if (!c) {
      snprintf(err, errlen, "parameter '%s' of %s: %s", p->name,
               s->action->full, cerr);
      json_decref(raw);
      json_decref(out);
      return NULL;
    }
    if ((p->flags & ENG_P_SECRET) && json_is_string(c))
      eng__redactor_add(r->redact, json_string_value(c));
    json_object_set_new(out, p->name, c);
  }
  json_decref(raw);
  return out;
}

static eng_side_effect side_of(const eng__step *s, const json_t *params) {
  const eng_action *a = s->action->action;
  eng_side_effect e = a->classify ? a->classify(params) : a->side_effect;
  return (unsigned)e > ENG_SIDE_EXTERNAL ? ENG_SIDE_DESTRUCTIVE : e;
}

/* Run-time guard of declared targets, with resolved values. */
static int guard_params(eng__run *r, size_t i, const json_t *params) {
  eng__step *s = &r->rb->steps[i];
  eng_side_effect side = side_of(s, params);
  for (const eng_param *p = s->action->action->params; p && p->name; p++) {
    if (p->target == ENG_TARGET_NONE || p->target == ENG_TARGET_FILE ||
        p->target == ENG_TARGET_COMMAND)
      continue; /* commands: checked by the action with the whole line */
    json_t *v = json_object_get(params, p->name);
    if (!json_is_string(v)) continue;
    /* patterns only: ownership is decided by the action when it is about
     * to act (a drop 'if_exists' of a database that is not there is no
     * destructive act at all) */
    r->static_check = true;
    int g = eng__run_guard_target(r, s->id, p->target, json_string_value(v),
                                  NULL, side);
    r->static_check = false;
    if (g != ENG_OK) return ENG_ERR_REFUSED;
  }
  return ENG_OK;
}

static void start_step(eng__run *r, size_t i) {
  eng__step *s = &r->rb->steps[i];
  eng__step_state *st = &r->st[i];
  r->running++;
  st->attempts++;
  if (st->attempts == 1) {
    st->status = ENG__S_RUNNING;
    st->started_ms = eng__now_ms();
    eng__con_step_start(r, i);
  }
  char err[1024];
  json_t *params = build_params(r, i, err, sizeof err);
  if (!params) {
    after_attempt(r, i, ENG_ERR_INVALID, err);
    return;
  }
  json_decref(st->params);
  st->params = json_deep_copy(params);
  eng__redact_json(r->redact, st->params);
  char *canon = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
  char *hashed = eng__asprintf("%s\n%s", s->uses, canon ? canon : "");
  eng__sha256_hex(hashed, strlen(hashed), st->inputs);
  free(hashed);
  free(canon);
  if (st->attempts == 1 && r->prev_steps) {
    json_t *prev = json_object_get(r->prev_steps, s->id);
    const char *pin = json_string_value(json_object_get(prev, "inputs"));
    const char *pst = json_string_value(json_object_get(prev, "status"));
    if (pin && pst && !strcmp(pst, "ok") && !strcmp(pin, st->inputs)) {
      json_decref(st->outputs);
      st->outputs = eng__journal_deref(r, json_object_get(prev, "outputs"));
      st->resumed = true;
      json_decref(params);
      eng__run_log(r, s->id, ENG_LOG_INFO,
                   "ended ok in the resumed run with the same inputs: not run again");
      r->running--;
      finish_step(r, i, ENG__S_OK);
      return;
    }
    json_t *unf = json_object_get(r->unfinished, s->id);
    if (unf && !(s->action->action->flags & ENG_A_REPEAT_SAFE) &&
        !r->opts->allow_destructive) {
      bool approved = false;
      for (size_t k = 0; k < r->opts->n_approve; k++)
        if (!strcmp(r->opts->approve[k], s->id)) approved = true;
      if (!approved) {
        json_decref(params);
        after_attempt(r, i, ENG_ERR_REFUSED,
                      "refused: this step started in the resumed run and did "
                      "not finish, and its action is not safe to repeat; "
                      "check its target, then pass --allow-destructive or "
                      "--approve STEP");
        return;
      }
    }
  }
  if (st->attempts == 1) {
    eng__journal_step(r, "step.start", s->id, st->inputs, NULL, NULL);
    json_t *a = json_pack("{s:s, s:s, s:s, s:O}", "step", s->id, "uses",
                          s->action->full, "inputs", st->inputs, "params",
                          st->params);
    eng__run_audit(r, "step.start", a);
    eng__audit_sync(r->audit);
    if (eng__guards_before_step(r, i) != ENG_OK) {
      json_decref(params);
      after_attempt(r, i, ENG_ERR_REFUSED, r->last_refusal);
      return;
    }
  }
  eng__run_audit(r, "step.attempt", json_pack("{s:s, s:i}", "step", s->id,
                                              "attempt", st->attempts));
  if (guard_params(r, i, params) != ENG_OK) {
    json_decref(params);
    after_attempt(r, i, ENG_ERR_REFUSED, r->last_refusal);
    return;
  }
  attempt *a = eng__xmalloc(sizeof *a);
  a->r = r;
  a->i = i;
  eng_call *c = eng__call_new(r, s->id, s->action->action, call_done, a);
  st->call = c;
  if (s->timeout_ms > 0) {
    attempt *ta = eng__xmalloc(sizeof *ta);
    *ta = *a;
    st->timer = eng__xmalloc(sizeof *st->timer);
    uv_timer_init(r->loop, st->timer);
    st->timer->data = ta;
    st->timer_is_retry = false;
    uv_timer_start(st->timer, timeout_cb, (uint64_t)s->timeout_ms, 0);
  }
  char *start_err = NULL;
  int rc = eng__call_start_err(c, s->action->action->start, params, &start_err);
  json_decref(params);
  if (rc != ENG_OK) {
    /* the call reported the failure through fail(); its callback won't run */
    st->call = NULL;
    free(a);
    stop_timer(st);
    after_attempt(r, i, rc, start_err);
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

/* Decide whether step i runs: true to start, false when it ended here. */
static bool decide(eng__run *r, size_t i) {
  eng__step *s = &r->rb->steps[i];
  eng__step_state *st = &r->st[i];
  bool upstream_bad = false;
  /* A finally step's success()/failure() look at every main step. */
  size_t nd = s->is_finally ? r->rb->n_main : s->n_deps;
  const char **sts = eng__xcalloc(nd + 1, sizeof *sts);
  size_t n = 0;
  for (size_t k = 0; k < nd; k++) {
    sts[n] = dep_status(r, s->is_finally ? k : s->deps[k]);
    if (!strcmp(sts[n], "failed") || !strcmp(sts[n], "timed_out") ||
        !strcmp(sts[n], "refused") || !strcmp(sts[n], "cancelled"))
      upstream_bad = true;
    n++;
  }
  st->upstream_failed = upstream_bad;
  if (!st->selected) {
    free(sts);
    finish_step(r, i, ENG__S_SKIPPED);
    return false;
  }
  eng__lua_set_deps(r->L, sts, n);
  free(sts);
  bool run;
  if (s->if_ref >= 0) {
    json_t *res = NULL;
    char err[1024];
    if (!s->is_finally) set_run_global(r, upstream_bad ? "failed" : "running");
    if (eng__lua_eval(r->L, s->if_ref, NULL, &res, err, sizeof err) != ENG_OK) {
      st->started_ms = eng__now_ms();
      eng__con_step_start(r, i);
      char *m = eng__asprintf("'if' condition failed: %s", err);
      set_error(r, st, m);
      free(m);
      finish_step(r, i, ENG__S_FAILED);
      return false;
    }
    json_t *v = json_array_get(res, 0);
    run = v && !json_is_false(v) && !json_is_null(v);
    json_decref(res);
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

static bool deps_done(eng__run *r, size_t i) {
  eng__step *s = &r->rb->steps[i];
  for (size_t k = 0; k < s->n_deps; k++)
    if (!terminal(r->st[s->deps[k]].status)) return false;
  return true;
}

static void run_end_hooks(eng__run *r);
static void finish_run(eng__run *r);

/* The outcome of the main steps, as `run.status` shows it to finally. */
static const char *main_status(eng__run *r) {
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
  if (r->running || r->hook_running || r->finished) return;
  while (r->next_finally < rb->n_steps) {
    size_t i = r->next_finally++;
    if (r->signals >= 3) {
      finish_step(r, i, ENG__S_CANCELLED);
      return;
    }
    set_run_global(r, main_status(r));
    if (!decide(r, i)) return; /* finish_step re-entered schedule() */
    start_step(r, i);
    return;
  }
  run_end_hooks(r);
}

static void schedule_once(eng__run *r);

/* Not re-entrant: a step that ends while we decide (skipped, refused,
 * failed at once) asks for another pass instead of recursing, so the stack
 * stays flat whatever the number of steps. */
static void schedule(eng__run *r) {
  if (r->in_schedule) {
    r->schedule_again = true;
    return;
  }
  r->in_schedule = true;
  do {
    r->schedule_again = false;
    schedule_once(r);
  } while (r->schedule_again && !r->finished);
  r->in_schedule = false;
}

static void schedule_once(eng__run *r) {
  eng__runbook *rb = r->rb;
  if (r->finished) return;
  if (r->in_finally) {
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
      if ((int)r->running >= r->opts->jobs) break;
      if (!decide(r, i)) return;
      start_step(r, i);
      progress = true;
      if (r->finished) return;
    }
  }
  if (r->running) return;
  for (size_t i = 0; i < rb->n_main; i++)
    if (!terminal(r->st[i].status)) return;
  r->in_finally = true;
  r->next_finally = rb->n_main;
  schedule_finally(r);
}

/* ---- at_run_end hooks (e.g. stop a sandbox cluster) -------------------- */

static void end_hook_done(void *ud, int rc, json_t *outputs,
                          const char *error) {
  eng__run *r = ud;
  r->hook_running = false;
  json_decref(outputs);
  if (rc != ENG_OK) {
    char *m = eng__asprintf("cleanup at run end failed: %s",
                            error ? error : eng_strerror(rc));
    eng__run_log(r, NULL, ENG_LOG_WARN, m);
    free(m);
  }
  run_end_hooks(r);
}

static void run_end_hooks(eng__run *r) {
  while (r->end_hooks && r->end_hooks[r->end_hook_next].cb) {
    struct eng__end_hook *h = &r->end_hooks[r->end_hook_next++];
    eng_call *c = eng__call_new(r, NULL, NULL, end_hook_done, r);
    int rc = eng__call_start(c, NULL, NULL);
    (void)rc;
    r->hook_running = true;
    rc = h->cb(c, h->ud);
    if (rc == ENG_OK) return; /* continues in end_hook_done */
    r->hook_running = false;
    eng__call_release(c);
  }
  finish_run(r);
}

/* ---- signals ---------------------------------------------------------------- */

static void on_signal(uv_signal_t *h, int signum) {
  eng__run *r = h->data;
  r->signals++;
  if (r->signals >= 3) {
    fprintf(stderr, "engine: third signal, exiting now without cleanup\n");
    _exit(ENG_EXIT_INTERRUPTED);
  }
  if (r->signals == 2) {
    eng__con_note(r, "second signal: cleanup is still running; a third one "
                     "exits at once");
    return;
  }
  eng__con_note(r, "%s received: cancelling running steps, then running "
                   "'finally'",
                signum == SIGINT ? "SIGINT" : "SIGTERM");
  r->interrupted = true;
  r->stopping = true;
  for (size_t i = 0; i < r->rb->n_main; i++) {
    eng__step_state *st = &r->st[i];
    if (st->call || st->check_call) {
      eng__call_cancel(st->call ? st->call : st->check_call);
    } else if (st->timer && st->status == ENG__S_RUNNING) {
      /* waiting for a retry: give up now */
      stop_timer(st);
      r->running--;
      finish_step(r, i, ENG__S_CANCELLED);
    }
  }
  if (!r->hook_running) schedule(r);
}

static void close_signals(eng__run *r) {
  if (r->closing_signals) return;
  r->closing_signals = true;
  uv_close((uv_handle_t *)&r->sigint, NULL);
  uv_close((uv_handle_t *)&r->sigterm, NULL);
}

/* ---- end of run ---------------------------------------------------------------- */

static int64_t parse_time_value(const json_t *v) {
  if (json_is_number(v)) {
    double x = json_number_value(v);
    return (int64_t)(x > 1e11 ? x : x * 1000.0);
  }
  if (!json_is_string(v)) return -1;
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  const char *s = json_string_value(v);
  const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!e) return -1;
  int ms = 0;
  if (*e == '.') {
    e++;
    int digits = 0;
    while (*e >= '0' && *e <= '9') {
      if (digits < 3) ms = ms * 10 + (*e - '0');
      digits++;
      e++;
    }
    while (digits < 3) { ms *= 10; digits++; }
  }
  int64_t t = (int64_t)timegm(&tm) * 1000 + ms;
  if ((*e == '+' || *e == '-') && e[1] >= '0' && e[1] <= '9' && e[2] >= '0' &&
      e[2] <= '9') {
    /* +HH, +HH:MM or +HHMM */
    int hh = (e[1] - '0') * 10 + (e[2] - '0'), mm = 0;
    const char *m = e[3] == ':' ? e + 4 : e + 3;
    if (m[0] >= '0' && m[0] <= '9' && m[1] >= '0' && m[1] <= '9')
      mm = (m[0] - '0') * 10 + (m[1] - '0');
    int64_t off = ((int64_t)hh * 60 + mm) * 60000;
    t += *e == '+' ? -off : off;
  }
  return t;
}

static void measure_slo(eng__run *r) {
  eng__runbook *rb = r->rb;
  int64_t recovered_end = -1, recovered_start = -1;
  for (size_t i = 0; i < rb->n_main; i++)
    if (rb->steps[i].recovered && r->st[i].status == ENG__S_OK) {
      recovered_end = r->st[i].ended_ms;
      recovered_start = r->st[i].started_ms;
    }
  r->rto_ms = (recovered_end > 0 ? recovered_end : r->ended_ms) - r->started_ms;
  r->rto_met = rb->slo_rto_ms < 0 || r->rto_ms <= rb->slo_rto_ms;
  r->rpo_ms = -1;
  r->rpo_met = true;
  if (rb->slo_backup_time) {
    char err[512];
    json_t *v = eng__tpl_render(r->L, rb->slo_backup_time, err, sizeof err);
    int64_t bt = v ? parse_time_value(v) : -1;
    json_decref(v);
    if (bt > 0) {
      int64_t at = recovered_start > 0 ? recovered_start : r->ended_ms;
      r->rpo_ms = at - bt;
      if (r->rpo_ms < 0) r->rpo_ms = 0;
    }
    if (rb->slo_rpo_ms >= 0)
      r->rpo_met = r->rpo_ms >= 0 && r->rpo_ms <= rb->slo_rpo_ms;
  }
}

static void finish_run(eng__run *r) {
  if (r->finished) return;
  r->finished = true;
  r->ended_ms = eng__now_ms();
  eng__runbook *rb = r->rb;
  bool failed = false;
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step_state *st = &r->st[i];
    if (st->status == ENG__S_REFUSED) r->refused = true;
    if ((st->status == ENG__S_FAILED || st->status == ENG__S_TIMED_OUT ||
         (st->status == ENG__S_CANCELLED && !r->interrupted)) &&
        !rb->steps[i].continue_on_error)
      failed = true;
  }
  measure_slo(r);
  if (r->interrupted) r->exit_code = ENG_EXIT_INTERRUPTED;
  else if (r->refused) r->exit_code = ENG_EXIT_REFUSED;
  else if (failed || r->audit_broken) r->exit_code = ENG_EXIT_FAILED;
  else if (!r->rto_met || !r->rpo_met) r->exit_code = ENG_EXIT_SLO;
  else r->exit_code = ENG_EXIT_OK;
  set_run_global(r, r->exit_code == 0 ? "ok" : "failed");
  json_t *end = json_pack("{s:i, s:s, s:I}", "exit_code", r->exit_code,
                          "status", r->exit_code == 0 ? "ok" : "failed",
                          "duration_ms", (json_int_t)(r->ended_ms - r->started_ms));
  if (rb->slo_rto_ms >= 0) json_object_set_new(end, "rto_ms", json_integer(r->rto_ms));
  if (r->rpo_ms >= 0) json_object_set_new(end, "rpo_ms", json_integer(r->rpo_ms));
  if (r->audit) {
    /* the head covers every record before run.end */
    json_object_set_new(end, "head", json_string(eng__audit_head(r->audit)));
    eng__run_audit(r, "run.end", end);
    eng__audit_sync(r->audit);
  } else {
    json_decref(end);
  }
  eng__report_write(r);
  eng__con_summary(r);
  close_signals(r);
}

/* ---- selection (--only / --from) ---------------------------------------- */

static void mark_needed(eng__run *r, size_t i) {
  if (r->st[i].selected) return;
  r->st[i].selected = true;
  for (size_t k = 0; k < r->rb->steps[i].n_deps; k++)
    mark_needed(r, r->rb->steps[i].deps[k]);
}

static int select_steps(eng__run *r, eng__diags *d) {
  eng__runbook *rb = r->rb;
  const char *which = r->opts->only ? r->opts->only : r->opts->from;
  for (size_t i = 0; i < rb->n_steps; i++) r->st[i].selected = !which;
  for (size_t i = rb->n_main; i < rb->n_steps; i++) r->st[i].selected = true;
  if (!which) return 0;
  eng__step *s = eng__runbook_step(rb, which);
  if (!s || s->is_finally) {
    const char **ids = eng__xcalloc(rb->n_main + 1, sizeof *ids);
    for (size_t i = 0; i < rb->n_main; i++) ids[i] = rb->steps[i].id;
    const char *hint = eng__suggest(which, ids, rb->n_main);
    eng__diag_error(d, rb->file, 0, 0, "%s: no step '%s'%s%s%s",
                    r->opts->only ? "--only" : "--from", which,
                    hint ? " (did you mean '" : "", hint ? hint : "",
                    hint ? "'?)" : "");
    free(ids);
    return -1;
  }
  if (r->opts->only) {
    mark_needed(r, s->idx);
  } else {
    for (size_t i = s->idx; i < rb->n_main; i++) r->st[i].selected = true;
  }
  return 0;
}

/* ---- plan -------------------------------------------------------------------- */

static const char *const side_names[] = {"read_only", "creates",
                                         "destructive", "disruptive",
                                         "external"};

static int plan(eng__run *r) {
  eng__runbook *rb = r->rb;
  int code = ENG_EXIT_OK;
  printf("plan: %s (%s), %zu steps, %zu in finally\n", rb->name, rb->file,
         rb->n_main, rb->n_steps - rb->n_main);
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step *s = &rb->steps[i];
    if (i == rb->n_main) printf("finally:\n");
    char err[1024];
    json_t *params = NULL;
    bool is_static = !s->with || eng__tpl_static(s->with);
    if (is_static) params = build_params(r, i, err, sizeof err);
    eng_side_effect side = side_of(s, params);
    eng__buf deps = {0};
    for (size_t k = 0; k < s->n_deps; k++)
      eng__buf_addf(&deps, "%s%s", k ? "," : "", rb->steps[s->deps[k]].id);
    printf("  %-24s %-24s %-11s%s%s%s\n", s->id, s->action->full,
           side_names[side], deps.len ? " needs " : "",
           deps.len ? deps.data : "", r->st[i].selected ? "" : " (not selected)");
    eng__buf_free(&deps);
    for (const eng_param *p = s->action->action->params; p && p->name; p++) {
      if (p->target == ENG_TARGET_NONE) continue;
      json_t *v = params ? json_object_get(params, p->name) : NULL;
      eng__node *vn = eng__node_get(s->with, p->name);
      if (!v && !vn) continue;
      json_t *own = NULL; /* this value alone, when it is known now */
      if (!v && vn && eng__tpl_static(vn)) {
        char e2[512];
        json_t *raw = eng__tpl_render(r->L, vn, e2, sizeof e2);
        own = raw ? eng__convert(raw, p->type, p->choices, e2, sizeof e2) : NULL;
        json_decref(raw);
        v = own;
      }
      char *shown;
      if (json_is_string(v)) shown = eng__redact(r->redact, json_string_value(v));
      else shown = eng__xstrdup(vn && vn->kind == ENG__N_SCALAR ? vn->str
                                                                : "(at run time)");
      const char *decision = p->target == ENG_TARGET_FILE && v ? "file" : "resolved at run time";
      if (json_is_string(v) && p->target != ENG_TARGET_FILE &&
          p->target != ENG_TARGET_COMMAND) {
        r->static_check = true;
        int g = eng__run_guard_target(r, s->id, p->target, json_string_value(v),
                                      NULL, side);
        r->static_check = false;
        if (g != ENG_OK) {
          decision = "REFUSED: protected";
          code = ENG_EXIT_REFUSED;
        } else {
          decision = "pass";
        }
      }
      if (json_is_string(v) && p->target == ENG_TARGET_COMMAND) {
        if (eng__run_guard_target(r, s->id, p->target, json_string_value(v),
                                  NULL, side) != ENG_OK) {
          decision = "REFUSED: forbidden command";
          code = ENG_EXIT_REFUSED;
        } else {
          decision = "pass";
        }
      }
      char *sh2 = eng__redact(r->redact, shown);
      json_decref(own);
      printf("      target %-10s %s  [%s]\n", p->name, sh2, decision);
      free(sh2);
      free(shown);
    }
    json_decref(params);
    if (eng__guards_static(r, i, stdout) != ENG_OK) code = ENG_EXIT_REFUSED;
  }
  if (rb->slo_rto_ms >= 0 || rb->slo_rpo_ms >= 0) {
    char a[32], b[32];
    printf("slo: rto %s, rpo %s\n",
           rb->slo_rto_ms >= 0 ? eng__fmt_duration(rb->slo_rto_ms, a, sizeof a)
                               : "-",
           rb->slo_rpo_ms >= 0 ? eng__fmt_duration(rb->slo_rpo_ms, b, sizeof b)
                               : "-");
  }
  printf("plan: nothing was run%s\n",
         code == ENG_EXIT_REFUSED ? "; some steps would be refused" : "");
  return code;
}

/* ---- main entry --------------------------------------------------------------- */

/* --resume: the previous results of the run, from its journal. */
static int load_resume(eng__run *r, eng__diags *d) {
  json_t *all = eng__journal_read(r->dir);
  if (!all) {
    eng__diag_error(d, NULL, 0, 0,
                    "--resume %s: no journal in %s (wrong run id or "
                    "--state-dir?)",
                    r->id, r->dir);
    return -1;
  }
  r->prev_steps = json_object();
  r->unfinished = json_object();
  size_t i;
  json_t *j;
  json_array_foreach(all, i, j) {
    const char *ev = json_string_value(json_object_get(j, "event"));
    const char *step = json_string_value(json_object_get(j, "step"));
    if (!ev || !step) continue;
    if (!strcmp(ev, "step.start")) {
      json_object_set(r->unfinished, step, json_true());
      json_object_del(r->prev_steps, step); /* its old result no longer holds */
    }
    if (!strcmp(ev, "step.end")) {
      json_object_del(r->unfinished, step);
      json_object_set(r->prev_steps, step, j);
    }
    if (!strcmp(ev, "intent") || !strcmp(ev, "removed") || !strcmp(ev, "confirm")) {
      int64_t seq = json_integer_value(json_object_get(j, "seq"));
      if (seq > r->journal_seq) r->journal_seq = seq;
    }
    int64_t seq = json_integer_value(json_object_get(j, "seq"));
    if (seq > r->journal_seq) r->journal_seq = seq;
  }
  json_decref(all);
  return 0;
}

/* Static guards at run start: a refusal found now stops everything before
 * any side effect (finally steps still run, each guarded again). */
static void static_guards(eng__run *r) {
  eng__runbook *rb = r->rb;
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step *s = &rb->steps[i];
    if (!r->st[i].selected) continue;
    int refused = eng__guards_static(r, i, NULL);
    if (refused != ENG_OK && !r->last_refusal) {
      eng__node *req = eng__node_get(rb->guards, "require");
      (void)req;
      r->last_refusal = eng__asprintf(
          "refused: a guards.require rule names '%s', but '%s' does not depend "
          "on the required step: add it to 'needs'",
          s->id, s->id);
      json_array_append_new(r->guard_log,
                            json_pack("{s:s, s:s, s:s}", "step", s->id,
                                      "decision", "refuse", "rule", "require"));
      eng__run_audit(r, "guard.refuse",
                     json_pack("{s:s, s:s, s:s}", "step", s->id, "rule",
                               "require", "message", r->last_refusal));
    }
    if (refused == ENG_OK && s->with && eng__tpl_static(s->with)) {
      char err[1024];
      json_t *params = build_params(r, i, err, sizeof err);
      for (const eng_param *p = s->action->action->params;
           params && p && p->name && refused == ENG_OK; p++) {
        if (p->target == ENG_TARGET_NONE || p->target == ENG_TARGET_FILE)
          continue;
        json_t *v = json_object_get(params, p->name);
        if (!json_is_string(v)) continue;
        r->static_check = true;
        refused = eng__run_guard_target(r, s->id, p->target, json_string_value(v),
                                        NULL, side_of(s, params));
        r->static_check = false;
      }
      json_decref(params);
    }
    if (refused == ENG_OK) continue;
    eng__step_state *st = &r->st[i];
    st->started_ms = st->ended_ms = eng__now_ms();
    free(st->error);
    st->error = eng__xstrdup(r->last_refusal ? r->last_refusal : "refused");
    st->status = ENG__S_REFUSED;
    eng__lua_set_step(r->L, s->id, "refused", NULL);
    eng__con_step_start(r, i);
    eng__con_step_end(r, i);
    r->refused = true;
    r->stopping = true;
    return;
  }
}

int eng__run_main(eng__runbook *rb, eng__lua *L, const eng__run_opts *o) {
  eng__run r;
  memset(&r, 0, sizeof r);
  r.rb = rb;
  r.L = L;
  r.opts = o;
  r.loop = uv_default_loop();
  r.redact = eng__redactor_create();
  r.started_ms = eng__now_ms();
  r.guard_log = json_array();
  r.st = eng__xcalloc(rb->n_steps + 1, sizeof *r.st);
  eng__host_init(r.loop, r.redact);
  const char *reuse = o->resume ? o->resume : o->cleanup_run;
  if (reuse) snprintf(r.id, sizeof r.id, "%s", reuse);
  else make_run_id(&r);
  r.cleanup_mode = o->cleanup_run != NULL;
  eng__diags d = {0};
  d.color = o->color && isatty(2);
  int code = ENG_EXIT_OK;
  set_env_global(&r);
  set_runbook_global(&r);
  if (!o->plan_only && make_run_dir(&r, &d) != 0) {
    code = ENG_EXIT_USAGE;
    goto out;
  }
  if (o->plan_only) /* shown, never created */
    r.dir = eng__asprintf("%s/runs/%s", o->state_dir, r.id);
  if (o->resume && load_resume(&r, &d) != 0) {
    code = ENG_EXIT_USAGE;
    goto out;
  }
  set_run_global(&r, "running");
  for (size_t i = 0; i < rb->n_steps; i++)
    eng__lua_set_step(L, rb->steps[i].id, "pending", NULL);
  if (eng__run_params(&r, &d) != ENG_EXIT_OK || select_steps(&r, &d) != 0) {
    code = ENG_EXIT_USAGE;
    goto out;
  }
  if (o->plan_only) {
    code = plan(&r);
    goto out;
  }
  {
    char *ap = eng__asprintf("%s/audit.jsonl", r.dir);
    r.audit = eng__audit_open(ap, r.id);
    if (!r.audit) {
      eng__diag_error(&d, NULL, 0, 0,
                      "cannot open the audit log %s: %s; nothing ran", ap,
                      strerror(errno));
      free(ap);
      code = ENG_EXIT_USAGE;
      goto out;
    }
    free(ap);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    const char *user = getenv("USER") ? getenv("USER") : getenv("LOGNAME");
    json_t *params = json_deep_copy(r.params);
    eng__redact_json(r.redact, params);
    eng__run_audit(&r, o->cleanup_run ? "run.start" : "run.start",
                   json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s?}",
                             "engine", ENG_VERSION_STR, "runbook", rb->file,
                             "runbook_sha256", rb->sha256, "name", rb->name,
                             "user", user ? user : "unknown", "host", host,
                             "params", params, "mode",
                             o->resume ? "resume" : o->cleanup_run ? "cleanup" : NULL));
    json_t *steps = json_array();
    for (size_t i = 0; i < rb->n_steps; i++) {
      const eng_action *a = rb->steps[i].action->action;
      static const char *const sides[] = {"read_only", "creates", "destructive",
                                          "disruptive", "external"};
      json_array_append_new(steps, json_pack("{s:s, s:s, s:s, s:b}", "step",
                                             rb->steps[i].id, "uses",
                                             rb->steps[i].action->full, "class",
                                             sides[a->side_effect], "selected",
                                             r.st[i].selected));
    }
    eng__run_audit(&r, "plan", json_pack("{s:o}", "steps", steps));
    eng__audit_sync(r.audit);
    eng__audit_use_loop(r.audit, r.loop);
  }
  {
    const eng__plugin_entry *pl;
    size_t np = eng__registry_plugins(&pl);
    for (size_t i = 0; i < np; i++)
      for (size_t k = 0; k < pl[i].desc->n_lua_funcs; k++)
        eng__lua_add_func(L, &pl[i].desc->lua_funcs[k]);
  }
  uv_signal_init(r.loop, &r.sigint);
  uv_signal_init(r.loop, &r.sigterm);
  r.sigint.data = r.sigterm.data = &r;
  uv_signal_start(&r.sigint, on_signal, SIGINT);
  uv_signal_start(&r.sigterm, on_signal, SIGTERM);
  eng__con_run_start(&r);
  static_guards(&r);
  schedule(&r);
  uv_run(r.loop, UV_RUN_DEFAULT);
  if (!r.finished) { /* the loop ran dry: a call never completed */
    eng__con_note(&r, "internal: the event loop stopped with steps pending");
    for (size_t i = 0; i < rb->n_steps; i++)
      if (!terminal(r.st[i].status)) r.st[i].status = ENG__S_FAILED;
    finish_run(&r);
    uv_run(r.loop, UV_RUN_DEFAULT);
  }
  code = r.exit_code;
out:
  eng__host_shutdown();
  uv_run(r.loop, UV_RUN_DEFAULT);
  for (size_t i = 0; i < rb->n_steps; i++) {
    json_decref(r.st[i].outputs);
    json_decref(r.st[i].params);
    free(r.st[i].error);
    free(r.st[i].check_error);
  }
  free(r.st);
  free(r.end_hooks);
  json_decref(r.params);
  json_decref(r.guard_log);
  json_decref(r.secret_refs);
  json_decref(r.prev_steps);
  json_decref(r.unfinished);
  free(r.last_refusal);
  eng__audit_close(r.audit);
  if (r.journal) fclose(r.journal);
  free(r.dir);
  eng__redactor_destroy(r.redact);
  eng__diags_free(&d);
  return code;
}
