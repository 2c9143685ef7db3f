/* run_data.h - one run as data: exit codes, step statuses, options, step
 * results and the run record, with the files that only record or show a
 * run: the journal (journal.c), the console (console.c), SLO measurement
 * (slo.c) and the reports (report.c). The functions of the run context
 * are in run.h (docs/architecture.md). */
#ifndef ENGINE_RUN_DATA_H
#define ENGINE_RUN_DATA_H

#include <stdio.h>
#include "runbook.h"

/* Exit codes of the engine (docs/cli.md). */
enum {
  ENG_EXIT_OK = 0,
  ENG_EXIT_FAILED = 1,
  ENG_EXIT_USAGE = 2,
  ENG_EXIT_REFUSED = 3,
  ENG_EXIT_SLO = 4,
  ENG_EXIT_INTERRUPTED = 5,
  ENG_EXIT_LOCKED = 6 /* another run holds the lock: nothing ran */
};

/* Step statuses, in the order of their names below. */
typedef enum eng__status {
  ENG__S_PENDING = 0,
  ENG__S_RUNNING,
  ENG__S_OK,
  ENG__S_FAILED,
  ENG__S_SKIPPED,
  ENG__S_REFUSED,
  ENG__S_TIMED_OUT,
  ENG__S_CANCELLED
} eng__status;

static inline const char *eng__status_name(eng__status s) {
  static const char *const names[] = {"pending", "running", "ok",
                                      "failed",  "skipped", "refused",
                                      "timed_out", "cancelled"};
  return (unsigned)s < sizeof names / sizeof *names ? names[s] : "failed";
}

static inline bool eng__status_terminal(eng__status s) { return s >= ENG__S_OK; }

/* Side-effect classes by name, indexed by eng_side_effect. */
extern const char *const eng__side_names[5];

typedef struct eng__run_opts {
  json_t *sets;        /* object: name -> string (--set) */
  json_t *params_file; /* object or NULL */
  bool plan_only, allow_destructive;
  const char **approve;
  size_t n_approve;
  const char *resume;
  const char *only, *from;
  int jobs;
  const char *state_dir;
  const char *report, *junit, *evidence;
  bool log_json;
  int verbosity; /* -1 quiet, 0 normal, 1 verbose */
  bool color;
  const char *lua_lib_dir;
  const char *cleanup_run; /* engine cleanup RUN_ID */
  const char *run_id;      /* a new run's id chosen by the caller, or NULL */
  char **lock_out;         /* only render `lock:` into *lock_out (or NULL
                              when the runbook has none) and return */
  int64_t grace_ms;        /* after SIGTERM/SIGINT, how long `finally` may
                              take before it is stopped (0: no bound) */
  struct eng__lock *lock;  /* held for the run: renewed on its loop */
  /* called at every step boundary, once the audit log was written */
  void (*on_boundary)(void *ud);
  void *boundary_ud;
} eng__run_opts;

/* The result of one step so far. The scheduler (sched.c) writes it; the
 * console, guards, SLO and reports read it. */
typedef struct eng__step_state {
  eng__status status;
  int attempts;
  int64_t started_ms, ended_ms;
  json_t *outputs;
  json_t *params; /* rendered and converted, for the report */
  char *error;
  bool upstream_failed, selected, check_failed;
  bool check_ran;
  bool check_ok;
  bool resumed;     /* reused from the run being resumed */
  char inputs[65];  /* SHA-256 of the resolved params */
  char *check_error;
  char *summary; /* one line on what an ok step produced (redacted) */
  /* the scheduler's handles for the attempt under way */
  eng_call *call;
  eng_call *check_call; /* context of a running check hook */
  uv_timer_t *timer;    /* timeout or retry delay */
  uint64_t deadline_ns; /* uv_hrtime() when the attempt's timeout ends */
  bool timer_is_retry;
  bool shut_down;       /* cancelled because nothing could complete it */
} eng__step_state;

/* ---- journal.c: what a run created and how its steps ended ------------ */

typedef struct eng__journal {
  FILE *f;
  int64_t seq;
  json_t *refs; /* secret value -> "${env.X}" / "${params.x}" */
  const eng__redactor *redact;
  int err;   /* errno of the first record that could not be written */
} eng__journal;

/* Open RUN_DIR/journal for appending; -1 with errno. */
int eng__journal_open(eng__journal *j, const char *dir,
                      const eng__redactor *redact);
void eng__journal_close(eng__journal *j);
/* A secret value is written as `ref` (copied) wherever it appears. */
void eng__journal_add_ref(eng__journal *j, const char *value, const char *ref);
/* A copy of v with secrets replaced by their references (and anything
 * else secret masked). */
json_t *eng__journal_refs(const eng__journal *j, const json_t *v);
/* Append a resource record (intent / confirm / removed), synced; returns
 * its sequence number, or -1 (errno set, j->err recorded) when it could
 * not be written whole: no journal open, or the disk is full. A record
 * is on disk whole or not at all. */
int64_t eng__journal_resource(eng__journal *j, const char *event,
                              const char *step, const char *kind,
                              const char *id, const char *disposition,
                              const json_t *detail);
/* The run's protected lists ({"protected_databases": [...], ...}), so
 * that `engine cleanup` of the run is held to them. */
void eng__journal_guards(eng__journal *j, const json_t *lists);
/* Append a step record (step.start / step.end), not synced. */
void eng__journal_step(eng__journal *j, const char *event, const char *step,
                       const char *inputs, const char *status,
                       const json_t *outputs);
json_t *eng__journal_read(const char *dir);
/* Every resource the journal's records (all) say the run created, oldest
 * first: [{kind, id, step, seq, disposition ("kept" | "temporary"),
 * recorded (a disposition was journaled), present (not removed since),
 * partial (its step did not end ok), leftover, undo}]. A resource journaled
 * without a disposition (by an engine before dispositions) is kept,
 * whatever else: when unsure, never delete. A leftover is present and
 * partial or temporary. */
json_t *eng__journal_resources(const json_t *all);
/* The run's protected lists as its journal recorded them ({} if none). */
json_t *eng__journal_guard_lists(const json_t *all);
/* Add the entries of each list of `add` ({"protected_databases": [...]})
 * to the same list of `into`. */
void eng__guard_lists_add(json_t *into, const json_t *add);
/* Did the run in `dir` create resource kind/id (even if since removed)? */
int eng__journal_owned(const char *dir, const char *kind, const char *id);
/* --resume: step id -> {status, inputs, outputs} of steps that ended, the
 * ids of steps that started and never ended, and the last sequence number.
 * -1 when the journal cannot be read. */
int eng__journal_load_resume(const char *dir, json_t **ended,
                             json_t **unfinished, int64_t *last_seq);
int eng__runs_list(const char *state_dir, FILE *out);
/* What `engine cleanup` removes: the run's leftovers, or with kept too
 * every resource still present. */
typedef enum eng__clean_what {
  ENG__CLEAN_LEFTOVERS = 0,
  ENG__CLEAN_ALL = 1
} eng__clean_what;
/* The runbook `engine cleanup` runs: one undo step per resource `what`
 * selects, newest first, held to the run's own protected lists. NULL when
 * the run has no journal; *count steps. */
char *eng__cleanup_runbook(const char *run_dir, eng__clean_what what,
                           size_t *count);

/* ---- the guard policy (policy.c applies it) -------------------------- */

/* The protected lists and forbidden commands of a runbook, resolved once
 * its parameters are known (guards.c fills it). */
typedef struct eng__policy {
  json_t *lists;  /* "protected_databases" -> ["pattern", ...], ... */
  json_t *broken; /* list name -> why an entry could not be resolved */
  bool refuse_unverified; /* guards.unverified_commands: refuse */
} eng__policy;

/* ---- the run ----------------------------------------------------------- */

struct eng__end_hook {
  int (*cb)(eng_call *, void *);
  void *ud;
};

struct eng__sched; /* sched.c */
typedef struct eng__dispose eng__dispose; /* dispose.c */

struct eng__run {
  /* what runs */
  eng__runbook *rb;
  eng__lua *L;
  const eng__run_opts *opts;
  uv_loop_t *loop;
  /* identity and the sinks of its events (run.c) */
  char id[40];
  char *dir; /* absolute */
  eng__redactor *redact;
  struct eng__audit *audit;
  bool audit_broken;
  bool journal_broken; /* said so; the run ends as failed */
  eng__journal journal;
  /* guards (policy.c, guards.c) */
  eng__policy policy;
  json_t *guard_log;   /* guard decisions (array) */
  char *last_refusal;  /* the message of the latest guard refusal */
  bool static_check;   /* plan-time: ownership is decided at run time */
  bool cleanup_mode;   /* engine cleanup: destructive undo of own resources */
  /* --resume: the run being resumed */
  json_t *prev_steps;  /* step id -> {status, inputs, outputs} */
  json_t *unfinished;  /* step ids started and never ended */
  /* results */
  json_t *params;
  eng__step_state *st;
  int64_t started_ms, ended_ms;
  bool stopping, refused, interrupted, finished;
  int exit_code;
  int64_t rto_ms, rpo_ms;
  char *rpo_why; /* why the RPO is unknown, when slo.backup_time is set */
  /* the phases of a drill (-1: no recovered step ended ok): preparation
   * (run start to the recovered step's start) + restore (that step) = RTO;
   * verification (its end to the end of the last main step after it) is
   * not part of the RTO */
  int64_t prep_ms, restore_ms, verify_ms;
  bool rto_met, rpo_met;
  bool slo_measured; /* rto/rpo hold a measurement (from `finally` on) */
  /* cleanup registered by actions (at_run_end), run after `finally` */
  struct eng__end_hook *end_hooks;
  size_t n_end_hooks;
  /* then the temporary resources still present are removed (dispose.c) */
  eng__dispose *dispose;
  size_t temporary_left; /* that could not be: leftovers, the run failed */
  struct eng__sched *sched; /* the scheduler's own state */
  char *stop_reason; /* why the run was stopped other than by a signal */
};

/* ---- console.c: what a person sees ----------------------------------- */

void eng__console_setup(bool json, int verbosity, bool color);
void eng__con_run_start(eng__run *r);
void eng__con_step_start(eng__run *r, size_t i);
void eng__con_step_end(eng__run *r, size_t i);
void eng__con_step_retry(eng__run *r, size_t i, int64_t delay_ms,
                         const char *why);
void eng__con_log(eng__run *r, const char *step, eng_log_level lvl,
                  const char *msg);
void eng__con_progress(eng__run *r, const char *step, int64_t done,
                       int64_t total);
void eng__con_summary(eng__run *r);
void eng__con_note(eng__run *r, const char *fmt, ...) ENG_PRINTF(2, 3);

/* ---- slo.c: RTO and RPO ------------------------------------------------ */

/* Measure the run's RTO and RPO against the runbook's targets, with
 * end_ms as the end when no step is marked `recovered`. */
void eng__slo_measure(eng__run *r, int64_t end_ms);

/* ---- report.c ---------------------------------------------------------- */

json_t *eng__report_json(eng__run *r);
/* The run so far, for notifications (host->run_state): outcome, steps by
 * status, the failed or refused step, SLO, the backup chosen, where the
 * evidence is. Secrets masked; caller owns the result. */
json_t *eng__run_state(eng__run *r);
int eng__report_write(eng__run *r);

#endif
