/* console.c - what a person sees: a line per step start/end, progress,
 * a summary table; or JSON lines with --log-format json. */
#include "run/run.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Process-wide console settings, owned here. */
typedef struct eng__console {
  bool json, color, tty;
  int verbosity;
} eng__console;

static eng__console con = {false, false, false, 0};
static bool muted;
static int64_t last_progress_ms;
static uint64_t rate_t0_ns;  /* for the transfer rate (uv_hrtime()) */
static int64_t rate_bytes0;
/* Refusals logged for a step, held until it ends: the step ends with the
 * same message, printed once under its line (step id -> [messages]). */
static json_t *held;

void eng__console_setup(bool json, int verbosity, bool color) {
  con.json = json;
  con.verbosity = verbosity;
  con.tty = isatty(1);
  con.color = color && con.tty;
}

static const char *c(const char *code) { return con.color ? code : ""; }
#define RESET c("\033[0m")
#define DIM c("\033[2m")
#define BOLD c("\033[1m")
#define GREEN c("\033[32m")
#define RED c("\033[31m")
#define YELLOW c("\033[33m")

static void json_event(const char *event, json_t *fields) {
  char t[40];
  json_object_set_new(fields, "time",
                      json_string(eng__fmt_time(eng__now_ms(), t, sizeof t)));
  json_object_set_new(fields, "event", json_string(event));
  char *s = json_dumps(fields, JSON_COMPACT | JSON_SORT_KEYS);
  printf("%s\n", s);
  fflush(stdout);
  free(s);
  json_decref(fields);
}

static const char *status_color(eng__status s) {
  switch (s) {
  case ENG__S_OK: return GREEN;
  case ENG__S_WARN: return YELLOW;
  case ENG__S_SKIPPED: return DIM;
  default: return RED;
  }
}

/* A failure continue_on_error lets pass: not a failure of the run. */
static bool continued(const eng__run *r, size_t i) {
  eng__status s = r->st[i].status;
  return (s == ENG__S_FAILED || s == ENG__S_TIMED_OUT) && r->rb->steps[i].continue_on_error;
}

static const char *step_color(const eng__run *r, size_t i) {
  return continued(r, i) ? YELLOW : status_color(r->st[i].status);
}

static const char *step_status(const eng__run *r, size_t i) {
  if (!continued(r, i)) return eng__status_name(r->st[i].status);
  return r->st[i].status == ENG__S_TIMED_OUT ? "timed_out (continued)" : "failed (continued)";
}

/* Print the refusals held for a step whose error does not already say
 * them (all of them when error is NULL), and forget them. */
static void flush_held(const char *step, const char *error) {
  json_t *l = json_object_get(held, step);
  size_t k;
  json_t *m;
  json_array_foreach(l, k, m) {
    if (error && strstr(error, json_string_value(m))) continue;
    printf("%s   %s: %s%s\n", RED, step, json_string_value(m), RESET);
  }
  json_object_del(held, step);
}

void eng__con_run_start(eng__run *r) {
  if (con.json) {
    json_event("run.start", json_pack("{s:s, s:s, s:s, s:s}", "run", r->id,
                                      "runbook", r->rb->file, "name",
                                      r->rb->name, "dir", r->dir));
    return;
  }
  if (con.verbosity < 0) return;
  printf("%s%s%s  run %s  (%zu steps)\n", BOLD, r->rb->name, RESET, r->id,
         r->rb->n_steps);
  printf("%s  run directory: %s%s\n", DIM, r->dir, RESET);
  fflush(stdout);
}

/* Step i itself (k < 0) or item k of a for_each step: its state and name. */
static const eng__step_state *state_of(const eng__run *r, size_t i, long k) {
  return k < 0 ? &r->st[i] : &r->st[i].fan->items[k].st;
}

static const char *id_of(const eng__run *r, size_t i, long k) {
  return k < 0 ? r->rb->steps[i].id : r->st[i].fan->items[k].id;
}

static void line_start(eng__run *r, size_t i, long k) {
  eng__step *s = &r->rb->steps[i];
  const char *id = id_of(r, i, k);
  if (con.json) {
    json_t *f = json_pack("{s:s, s:s, s:s}", "run", r->id, "step", id, "uses",
                          s->action ? s->action->full : s->uses);
    if (k >= 0) json_object_set_new(f, "item", json_string(r->st[i].fan->items[k].label));
    json_event("step.start", f);
    return;
  }
  if (con.verbosity < 0) return;
  /* a for_each step's name that reads `each` is its items' */
  const char *title = k >= 0 && r->st[i].fan->items[k].title
                          ? r->st[i].fan->items[k].title
                      : s->for_each && s->name_node && s->name_node->tpl ? NULL
                                                                          : s->name;
  printf("%s>%s %-22s %s%s%s%s%s\n", BOLD, RESET, id, DIM,
         s->action ? s->action->full : s->uses, title ? "  " : "",
         title ? title : "", RESET);
  fflush(stdout);
}

void eng__con_step_start(eng__run *r, size_t i) { line_start(r, i, -1); }

void eng__con_item_start(eng__run *r, size_t i, size_t k) {
  line_start(r, i, (long)k);
}

/* A short figure from the outputs: bytes or row counts. */
static void line_end(eng__run *r, size_t i, long k) {
  const char *id = id_of(r, i, k);
  const eng__step_state *st = state_of(r, i, k);
  bool cont = k < 0 && continued(r, i);
  int64_t dur = st->ended_ms - st->started_ms;
  if (con.json) {
    json_t *f = json_pack("{s:s, s:s, s:s, s:I, s:i}", "run", r->id, "step",
                          id, "status", eng__status_name(st->status),
                          "duration_ms", (json_int_t)dur, "attempts",
                          st->attempts);
    if (k >= 0) json_object_set_new(f, "item", json_string(r->st[i].fan->items[k].label));
    if (st->error) json_object_set_new(f, "error", json_string(st->error));
    if (st->status == ENG__S_WARN && st->warning)
      json_object_set_new(f, "warning", json_string(st->warning));
    if (cont) json_object_set_new(f, "continued", json_true());
    if (st->summary) json_object_set_new(f, "summary", json_string(st->summary));
    json_event("step.end", f);
    return;
  }
  if (con.verbosity < 0 && st->status == ENG__S_OK) {
    flush_held(id, st->error);
    return;
  }
  char d[32];
  const char *hint = st->summary ? st->summary : "";
  const char *col = cont ? YELLOW : status_color(st->status);
  const char *mark = eng__status_succeeded(st->status) ? "ok"
                     : st->status == ENG__S_SKIPPED    ? "--"
                     : cont                            ? "~~"
                                                       : "!!";
  printf("%s%s%s %-22s %s%-9s%s %7s%s%s\n", col, mark, RESET, id, col,
         k < 0 ? step_status(r, i) : eng__status_name(st->status), RESET,
         st->status == ENG__S_SKIPPED ? "" : eng__fmt_duration(dur, d, sizeof d),
         hint[0] ? "  " : "", hint);
  flush_held(id, st->error);
  if (st->status == ENG__S_WARN && st->warning)
    printf("   %swarning: %s%s\n", YELLOW, st->warning, RESET);
  if (st->error && !eng__status_succeeded(st->status) && st->status != ENG__S_SKIPPED)
    printf("   %s%s%s\n", col, st->error, RESET);
  fflush(stdout);
}

void eng__con_step_end(eng__run *r, size_t i) { line_end(r, i, -1); }

void eng__con_item_end(eng__run *r, size_t i, size_t k) {
  line_end(r, i, (long)k);
}

void eng__con_step_retry(eng__run *r, size_t i, long k, int64_t delay_ms,
                         const char *why) {
  eng__step *s = &r->rb->steps[i];
  const eng__step_state *st = state_of(r, i, k);
  const char *id = id_of(r, i, k);
  char d[32];
  if (con.json) {
    json_event("step.retry",
               json_pack("{s:s, s:s, s:i, s:I, s:s}", "run", r->id, "step",
                         id, "attempt", st->attempts, "delay_ms",
                         (json_int_t)delay_ms, "error", why ? why : ""));
    return;
  }
  if (con.verbosity < 0) return;
  printf("%s~  %-22s attempt %d/%d failed: %s; retrying in %s%s\n", YELLOW,
         id, st->attempts, s->retry.attempts, why ? why : "",
         eng__fmt_duration(delay_ms, d, sizeof d), RESET);
  fflush(stdout);
}

void eng__console_mute(bool mute) { muted = mute; }

void eng__con_log(eng__run *r, const char *step, eng_log_level lvl,
                  const char *msg) {
  if (muted) return;
  if (con.json) {
    static const char *const lv[] = {"debug", "info", "warn", "error"};
    json_event("step.log", json_pack("{s:s, s:s?, s:s, s:s}", "run", r->id,
                                     "step", step, "level", lv[lvl], "message",
                                     msg));
    return;
  }
  if (lvl == ENG_LOG_DEBUG && con.verbosity < 1) return;
  if (lvl <= ENG_LOG_INFO && con.verbosity < 0) return;
  if (lvl == ENG_LOG_ERROR && step && !strncmp(msg, "refused", 7)) {
    /* the step ends refused (or failed) with this message: said then */
    if (!held) held = json_object();
    json_t *l = json_object_get(held, step);
    if (!l) json_object_set_new(held, step, l = json_array());
    json_array_append_new(l, json_string(msg));
    return;
  }
  const char *col = lvl >= ENG_LOG_ERROR ? RED : lvl == ENG_LOG_WARN ? YELLOW : DIM;
  printf("%s   %s%s%s %s%s\n", col, step ? step : "run", step ? ":" : ":",
         "", msg, RESET);
  fflush(stdout);
}

/* A transfer rate needs this much time to mean something: below it a
 * rate is not printed (a fast copy of a small file says only its size). */
#define ENG__RATE_MIN_NS 50000000u /* 50 ms */

void eng__con_progress(eng__run *r, const char *step, int64_t done,
                       int64_t total) {
  int64_t now = eng__now_ms();
  uint64_t now_ns = uv_hrtime();
  int64_t every = con.tty ? 1000 : 10000;
  if (done < rate_bytes0 || !rate_t0_ns) {
    rate_t0_ns = now_ns;
    rate_bytes0 = done;
  }
  if (now - last_progress_ms < every && (total < 0 || done < total)) return;
  last_progress_ms = now;
  char a[32], b[32], rb[32];
  uint64_t ns = now_ns - rate_t0_ns;
  /* -1: not measurable yet (too little time since the transfer began) */
  int64_t rate = ns >= ENG__RATE_MIN_NS
                     ? (int64_t)((double)(done - rate_bytes0) * 1e9 / (double)ns)
                     : -1;
  if (con.json) {
    json_t *f = json_pack("{s:s, s:s, s:I, s:I}", "run", r->id, "step", step,
                          "bytes", (json_int_t)done, "total", (json_int_t)total);
    json_object_set_new(f, "bytes_per_s", rate >= 0 ? json_integer(rate) : json_null());
    json_event("step.progress", f);
    return;
  }
  if (con.verbosity < 0) return;
  printf("%s   %s: %s%s%s%s%s%s%s\n", DIM, step, eng__fmt_bytes(done, a, sizeof a),
         total >= 0 ? " of " : "", total >= 0 ? eng__fmt_bytes(total, b, sizeof b) : "",
         rate >= 0 ? ", " : "", rate >= 0 ? eng__fmt_bytes(rate, rb, sizeof rb) : "",
         rate >= 0 ? "/s" : "", RESET);
  fflush(stdout);
}

void eng__con_note(eng__run *r, const char *fmt, ...) {
  eng__buf b = {0};
  va_list ap;
  va_start(ap, fmt);
  eng__buf_vaddf(&b, fmt, ap);
  va_end(ap);
  char *red = eng__redact(r->redact, b.data ? b.data : "");
  if (con.json)
    json_event("note", json_pack("{s:s, s:s}", "run", r->id, "message", red));
  else
    fprintf(stderr, "%s%s%s\n", YELLOW, red, RESET);
  free(red);
  eng__buf_free(&b);
}

/* Steps by how they ended, in status order; a failure continue_on_error
 * let pass as "failed (continued)". Caller owns the result. */
static json_t *counts(const eng__run *r) {
  json_t *n = json_object();
  for (eng__status s = ENG__S_PENDING; s <= ENG__S_CANCELLED; s++) {
    for (int cont = 0; cont < 2; cont++) {
      json_int_t c = 0;
      for (size_t i = 0; i < r->rb->n_steps; i++)
        if (r->st[i].status == s && continued(r, i) == (bool)cont) c++;
      if (!c) continue;
      char *k = eng__asprintf("%s%s", eng__status_name(s), cont ? " (continued)" : "");
      json_object_set_new(n, k, json_integer(c));
      free(k);
    }
  }
  return n;
}

/* The items of a for_each step under its row: all of them up to 50,
 * else those that did not succeed (report.json has every one). */
#define ENG__SUMMARY_ITEMS 50

static void summary_items(const eng__fan *f, int w) {
  size_t hidden = 0;
  char d[32];
  for (size_t k = 0; k < f->n; k++) {
    const eng__step_state *it = &f->items[k].st;
    if (f->n > ENG__SUMMARY_ITEMS && eng__status_succeeded(it->status)) {
      hidden++;
      continue;
    }
    printf("  %-22s %s%-*s%s %8s %8d\n", f->items[k].id,
           status_color(it->status), w, eng__status_name(it->status), RESET,
           it->started_ms ? eng__fmt_duration(it->ended_ms - it->started_ms, d,
                                              sizeof d)
                          : "-",
           it->attempts);
  }
  if (hidden)
    printf("%s  ... and %zu items that succeeded (report.json lists every "
           "item)%s\n", DIM, hidden, RESET);
}

void eng__con_summary(eng__run *r) {
  eng__runbook *rb = r->rb;
  char d[32], e[32];
  const char *verdict = r->exit_code == ENG_EXIT_OK          ? "succeeded"
                        : r->exit_code == ENG_EXIT_FAILED      ? "FAILED"
                        : r->exit_code == ENG_EXIT_REFUSED && r->refused_before_start
                            ? "REFUSED by a guard before the first step"
                        : r->exit_code == ENG_EXIT_REFUSED     ? "REFUSED by a guard"
                        : r->exit_code == ENG_EXIT_SLO         ? "succeeded, SLO MISSED"
                        : r->exit_code == ENG_EXIT_INTERRUPTED ? "INTERRUPTED"
                                                               : "ended";
  if (con.json) {
    json_t *f = json_pack("{s:s, s:s, s:i, s:I}", "run", r->id, "status",
                          verdict, "exit_code", r->exit_code, "duration_ms",
                          (json_int_t)(r->ended_ms - r->started_ms));
    if (rb->slo_rto_ms >= 0 || rb->slo_rpo_ms >= 0) {
      json_object_set_new(f, "rto_ms", r->rto_ms >= 0 ? json_integer(r->rto_ms)
                                                      : json_null());
      json_object_set_new(f, "rpo_ms", r->rpo_ms >= 0 ? json_integer(r->rpo_ms)
                                                      : json_null());
      json_object_set_new(f, "slo_met", json_boolean(r->rto_met && r->rpo_met));
    }
    json_event("run.end", f);
    return;
  }
  if (con.verbosity >= 0) {
    int w = 10; /* the status column: as wide as "failed (continued)" */
    for (size_t i = 0; i < rb->n_steps; i++)
      if ((int)strlen(step_status(r, i)) > w) w = (int)strlen(step_status(r, i));
    printf("\n%s%-24s %-*s %8s %8s%s\n", BOLD, "step", w, "status", "time",
           "attempts", RESET);
    for (size_t i = 0; i < rb->n_steps; i++) {
      eng__step_state *st = &r->st[i];
      if (i == rb->n_main && rb->n_main < rb->n_steps)
        printf("%s%-24s%s\n", DIM, "finally:", RESET);
      printf("%-24s %s%-*s%s %8s %8d\n", rb->steps[i].id, step_color(r, i), w,
             step_status(r, i), RESET,
             st->started_ms ? eng__fmt_duration(st->ended_ms - st->started_ms,
                                                d, sizeof d)
                            : "-",
             st->attempts);
      if (st->fan) summary_items(st->fan, w);
    }
    /* steps by how they ended: "4 ok, 1 warn, 1 failed (continued)" */
    json_t *n = counts(r);
    eng__buf line = {0};
    const char *k;
    json_t *v;
    json_object_foreach(n, k, v)
      eng__buf_addf(&line, "%s%lld %s", line.len ? ", " : "",
                    (long long)json_integer_value(v), k);
    printf("%s%s%s\n", DIM, line.data ? line.data : "", RESET);
    eng__buf_free(&line);
    json_decref(n);
    if (rb->slo_rto_ms >= 0 && r->rto_ms >= 0)
      printf("RTO %s (target %s): %s%s%s\n",
             eng__fmt_duration(r->rto_ms, d, sizeof d),
             eng__fmt_duration(rb->slo_rto_ms, e, sizeof e),
             r->rto_met ? GREEN : RED, r->rto_met ? "met" : "MISSED", RESET);
    else if (rb->slo_rto_ms >= 0)
      printf("RTO not measured (target %s): %snot met%s, because %s\n",
             eng__fmt_duration(rb->slo_rto_ms, e, sizeof e), RED, RESET,
             r->rto_why ? r->rto_why : "it could not be measured");
    if (rb->slo_rpo_ms >= 0 && r->rpo_ms >= 0)
      printf("RPO %s (target %s): %s%s%s\n",
             eng__fmt_duration(r->rpo_ms, d, sizeof d),
             eng__fmt_duration(rb->slo_rpo_ms, e, sizeof e),
             r->rpo_met ? GREEN : RED, r->rpo_met ? "met" : "MISSED", RESET);
    else if (rb->slo_rpo_ms >= 0)
      printf("RPO unknown (target %s): %snot met%s, because %s\n",
             eng__fmt_duration(rb->slo_rpo_ms, e, sizeof e), RED, RESET,
             r->rpo_why ? r->rpo_why : "it could not be measured");
    else if (r->rpo_why && (rb->slo_backup_time || rb->slo_recovery_point))
      printf("RPO unknown because %s\n", r->rpo_why);
  }
  for (size_t i = 0; i < rb->n_steps; i++) /* refusals of steps that never ended */
    if (json_object_get(held, rb->steps[i].id)) flush_held(rb->steps[i].id, NULL);
  if (r->audit)
    printf("%saudit log %s/audit.jsonl, chain head %s%s\n", DIM, r->dir,
           eng__audit_head(r->audit), RESET);
  printf("%s%s%s in %s (exit %d)  run %s\n",
         r->exit_code == 0 ? GREEN : RED, verdict, RESET,
         eng__fmt_duration(r->ended_ms - r->started_ms, d, sizeof d),
         r->exit_code, r->id);
  fflush(stdout);
}
