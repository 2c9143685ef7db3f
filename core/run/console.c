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
static int64_t rate_t0_ms, rate_bytes0; /* for the transfer rate */

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
  case ENG__S_SKIPPED: return DIM;
  default: return RED;
  }
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

void eng__con_step_start(eng__run *r, size_t i) {
  eng__step *s = &r->rb->steps[i];
  if (con.json) {
    json_event("step.start", json_pack("{s:s, s:s, s:s}", "run", r->id,
                                       "step", s->id, "uses",
                                       s->action ? s->action->full : s->uses));
    return;
  }
  if (con.verbosity < 0) return;
  printf("%s>%s %-22s %s%s%s%s%s\n", BOLD, RESET, s->id, DIM,
         s->action ? s->action->full : s->uses, s->name ? "  " : "",
         s->name ? s->name : "", RESET);
  fflush(stdout);
}

/* A short figure from the outputs: bytes or row counts. */
void eng__con_step_end(eng__run *r, size_t i) {
  eng__step *s = &r->rb->steps[i];
  eng__step_state *st = &r->st[i];
  int64_t dur = st->ended_ms - st->started_ms;
  if (con.json) {
    json_t *f = json_pack("{s:s, s:s, s:s, s:I, s:i}", "run", r->id, "step",
                          s->id, "status", eng__status_name(st->status),
                          "duration_ms", (json_int_t)dur, "attempts",
                          st->attempts);
    if (st->error) json_object_set_new(f, "error", json_string(st->error));
    if (st->summary) json_object_set_new(f, "summary", json_string(st->summary));
    json_event("step.end", f);
    return;
  }
  if (con.verbosity < 0 && st->status == ENG__S_OK) return;
  char d[32];
  const char *hint = st->summary ? st->summary : "";
  const char *mark = st->status == ENG__S_OK        ? "ok"
                     : st->status == ENG__S_SKIPPED ? "--"
                                                    : "!!";
  printf("%s%s%s %-22s %s%-9s%s %7s%s%s%s\n", status_color(st->status), mark,
         RESET, s->id, status_color(st->status), eng__status_name(st->status),
         RESET, st->status == ENG__S_SKIPPED ? "" : eng__fmt_duration(dur, d, sizeof d),
         hint[0] ? "  " : "", hint,
         st->attempts > 1 ? "" : "");
  if (st->error && st->status != ENG__S_OK && st->status != ENG__S_SKIPPED)
    printf("   %s%s%s\n", RED, st->error, RESET);
  fflush(stdout);
}

void eng__con_step_retry(eng__run *r, size_t i, int64_t delay_ms,
                         const char *why) {
  eng__step *s = &r->rb->steps[i];
  eng__step_state *st = &r->st[i];
  char d[32];
  if (con.json) {
    json_event("step.retry",
               json_pack("{s:s, s:s, s:i, s:I, s:s}", "run", r->id, "step",
                         s->id, "attempt", st->attempts, "delay_ms",
                         (json_int_t)delay_ms, "error", why ? why : ""));
    return;
  }
  if (con.verbosity < 0) return;
  printf("%s~  %-22s attempt %d/%d failed: %s; retrying in %s%s\n", YELLOW,
         s->id, st->attempts, s->retry.attempts, why ? why : "",
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
  const char *col = lvl >= ENG_LOG_ERROR ? RED : lvl == ENG_LOG_WARN ? YELLOW : DIM;
  printf("%s   %s%s%s %s%s\n", col, step ? step : "run", step ? ":" : ":",
         "", msg, RESET);
  fflush(stdout);
}

void eng__con_progress(eng__run *r, const char *step, int64_t done,
                       int64_t total) {
  int64_t now = eng__now_ms();
  int64_t every = con.tty ? 1000 : 10000;
  if (done < rate_bytes0 || !rate_t0_ms) {
    rate_t0_ms = now;
    rate_bytes0 = done;
  }
  if (now - last_progress_ms < every && (total < 0 || done < total)) return;
  last_progress_ms = now;
  char a[32], b[32], rb[32];
  double secs = (double)(now - rate_t0_ms) / 1000.0;
  int64_t rate = secs > 0.05 ? (int64_t)((double)(done - rate_bytes0) / secs) : 0;
  if (con.json) {
    json_event("step.progress", json_pack("{s:s, s:s, s:I, s:I, s:I}", "run",
                                          r->id, "step", step, "bytes",
                                          (json_int_t)done, "total",
                                          (json_int_t)total, "bytes_per_s",
                                          (json_int_t)rate));
    return;
  }
  if (con.verbosity < 0) return;
  printf("%s   %s: %s%s%s, %s/s%s\n", DIM, step, eng__fmt_bytes(done, a, sizeof a),
         total >= 0 ? " of " : "", total >= 0 ? eng__fmt_bytes(total, b, sizeof b) : "",
         eng__fmt_bytes(rate, rb, sizeof rb), RESET);
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
      json_object_set_new(f, "rto_ms", json_integer(r->rto_ms));
      json_object_set_new(f, "rpo_ms", r->rpo_ms >= 0 ? json_integer(r->rpo_ms)
                                                      : json_null());
    }
    json_event("run.end", f);
    return;
  }
  if (con.verbosity >= 0) {
    printf("\n%s%-24s %-10s %8s %8s%s\n", BOLD, "step", "status", "time",
           "attempts", RESET);
    for (size_t i = 0; i < rb->n_steps; i++) {
      eng__step_state *st = &r->st[i];
      if (i == rb->n_main && rb->n_main < rb->n_steps)
        printf("%s%-24s%s\n", DIM, "finally:", RESET);
      printf("%-24s %s%-10s%s %8s %8d\n", rb->steps[i].id,
             status_color(st->status), eng__status_name(st->status), RESET,
             st->started_ms ? eng__fmt_duration(st->ended_ms - st->started_ms,
                                                d, sizeof d)
                            : "-",
             st->attempts);
    }
    if (rb->slo_rto_ms >= 0)
      printf("RTO %s (target %s): %s%s%s\n",
             eng__fmt_duration(r->rto_ms, d, sizeof d),
             eng__fmt_duration(rb->slo_rto_ms, e, sizeof e),
             r->rto_met ? GREEN : RED, r->rto_met ? "met" : "MISSED", RESET);
    if (rb->slo_rpo_ms >= 0)
      printf("RPO %s (target %s): %s%s%s\n",
             r->rpo_ms >= 0 ? eng__fmt_duration(r->rpo_ms, d, sizeof d)
                            : "unknown",
             eng__fmt_duration(rb->slo_rpo_ms, e, sizeof e),
             r->rpo_met ? GREEN : RED, r->rpo_met ? "met" : "MISSED", RESET);
    if (r->rpo_why) printf("RPO unknown because %s\n", r->rpo_why);
  }
  if (r->audit)
    printf("%saudit log %s/audit.jsonl, chain head %s%s\n", DIM, r->dir,
           eng__audit_head(r->audit), RESET);
  printf("%s%s%s in %s (exit %d)  run %s\n",
         r->exit_code == 0 ? GREEN : RED, verdict, RESET,
         eng__fmt_duration(r->ended_ms - r->started_ms, d, sizeof d),
         r->exit_code, r->id);
  fflush(stdout);
}
