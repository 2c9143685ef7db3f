/*
 * run/run.h - one run as data and the run context every layer above
 * writes into (docs/architecture.md):
 *
 *   run.c      identity, directory, and the sinks of events: log,
 *              progress, audit record, journal record, run-end hooks
 *   console.c  what a person sees (or JSON lines)
 *   report.c   report.json, JUnit XML, the drill evidence, the run state
 *              notifications read
 *   policy.c   the guard policy applied to one target: protected lists,
 *              forbidden commands (through shell/), SQL (through sql/),
 *              ownership, a step's allow_disruptive
 *
 * Nothing declared here calls up into calls, expressions, planning or
 * scheduling.
 */
#ifndef ENGINE_RUN_H
#define ENGINE_RUN_H

#include <stdio.h>
#include "record/record.h"
#include "model/model.h"

typedef struct eng__run eng__run;
typedef struct eng__lua eng__lua;         /* expr/ */
typedef struct eng__dispose eng__dispose; /* exec/dispose.c */
struct eng__sched;                        /* exec/sched.c */
struct eng__lock;                         /* state/lock.c */

/* Step statuses, in the order of their names below. `warn`: the step
 * worked, and its check (or its Lua, engine.warn) said a threshold was
 * crossed; it counts as ok everywhere (conditions, exit code, resume,
 * resources) and is shown and reported as a warning. */
typedef enum eng__status {
  ENG__S_PENDING = 0,
  ENG__S_RUNNING,
  ENG__S_OK,
  ENG__S_WARN,
  ENG__S_FAILED,
  ENG__S_SKIPPED,
  ENG__S_REFUSED,
  ENG__S_TIMED_OUT,
  ENG__S_CANCELLED
} eng__status;

static inline const char *eng__status_name(eng__status s) {
  static const char *const names[] = {"pending", "running", "ok", "warn",
                                      "failed",  "skipped", "refused",
                                      "timed_out", "cancelled"};
  return (unsigned)s < sizeof names / sizeof *names ? names[s] : "failed";
}

static inline bool eng__status_terminal(eng__status s) { return s >= ENG__S_OK; }

/* The step did what it was for: ok, or ok with a warning. */
static inline bool eng__status_succeeded(eng__status s) {
  return s == ENG__S_OK || s == ENG__S_WARN;
}

/* Side-effect classes by name, indexed by eng_side_effect. */
extern const char *const eng__side_names[ENG_SIDE_LAST + 1];

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
  /* the index record of the previous successful run of this runbook and
   * lock, for the regression SLOs (slo.rows_drop, ...), or NULL */
  const json_t *previous_ok;
} eng__run_opts;

/* The result of one step so far. The scheduler (sched.c) writes it; the
 * console, guards, SLO and reports read it. */
struct eng__fan;

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
  bool check_warned; /* the check returned "warn" */
  bool resumed;     /* reused from the run being resumed */
  char inputs[ENG__SHA256_HEX];  /* SHA-256 of the resolved params */
  char *check_error;
  char *summary; /* one line on what an ok step produced (redacted) */
  char *warning; /* why the step ends `warn` (this attempt's; redacted) */
  /* the scheduler's handles for the attempt under way */
  eng_call *call;
  eng_call *check_call; /* context of a running check hook */
  uv_timer_t *timer;    /* timeout or retry delay */
  uint64_t deadline_ns; /* uv_hrtime() when the attempt's timeout ends */
  bool timer_is_retry;
  bool shut_down;       /* cancelled because nothing could complete it */
  struct eng__fan *fan; /* a for_each step's items once its list is known */
} eng__step_state;

/* One item of a for_each step: run like a step of its own (attempts,
 * timeout, retry, check, guards, journal) under the id "ID[LABEL]". */
typedef struct eng__item {
  char *id;     /* "ID[LABEL]": how logs, journal and reports name it */
  char *label;  /* the map key, the string value, or the index */
  json_t *each; /* {value, index[, key]} as the item's expressions see it */
  char *title;  /* the step's `name:` rendered for the item, or NULL */
  eng__step_state st;
} eng__item;

/* The items of a for_each step (sched.c fills them when it starts). */
typedef struct eng__fan {
  eng__item *items;
  size_t n;
  size_t next;   /* the next item to start */
  size_t active; /* started and not ended */
  size_t ended;
  bool halted;   /* fail_fast: an item failed; no other starts */
  bool pumping, pump_again;
} eng__fan;

/* The items of `list` (an array: labels are its values when they are
 * distinct short plain strings, else indexes; an object: its keys) for
 * step s, each with its `each` ({value, index[, key]}) and id. */
eng__fan *eng__fan_new(const eng__step *s, const json_t *list);

/* At most this many items across all the for_each steps of a run. */
#define ENG__MAX_ITEMS 10000

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
  int64_t cond_budget_used_ms; /* conditions evaluated before the run */
  bool cleanup_mode;   /* engine cleanup: destructive undo of own resources */
  /* --resume: the run being resumed */
  json_t *prev_steps;  /* step id -> {status, inputs, outputs} */
  json_t *unfinished;  /* step ids started and never ended */
  /* results */
  json_t *params;
  eng__step_state *st;
  int64_t started_ms, ended_ms;
  bool stopping, refused, interrupted, finished;
  /* the steps refused at run start by what was known then (array of ids),
   * NULL when none was: no main step runs then */
  json_t *refused_before_start;
  int exit_code;
  int64_t rto_ms, rpo_ms; /* -1: not measured */
  char *rto_why; /* why the RTO was not measured (nothing was recovered) */
  char *rpo_why; /* why the RPO is unknown */
  /* the phases of a drill (-1: no recovered step ended ok): preparation
   * (run start to the recovered step's start) + restore (that step) = RTO;
   * verification (its end to the end of the last main step after it) is
   * not part of the RTO */
  int64_t prep_ms, restore_ms, verify_ms;
  bool rto_met, rpo_met; /* false when a target is set and the figure is
                            not measured */
  bool slo_measured; /* rto/rpo hold a measurement (from `finally` on) */
  /* the regression SLOs missed against opts->previous_ok:
   * [{figure, previous_run, previous, current, limit}], or NULL */
  json_t *regressions;
  bool drill;        /* the runbook's `drill:` (measured with the SLO) */
  bool drill_said;   /* `drill:` could not be rendered, and it was said */
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
/* While muted, the run's log lines are not shown (engine validate holds a
 * runbook to the guards without running it). */
void eng__console_mute(bool mute);
void eng__con_run_start(eng__run *r);
void eng__con_step_start(eng__run *r, size_t i);
void eng__con_step_end(eng__run *r, size_t i);
/* The same for item k of for_each step i. */
void eng__con_item_start(eng__run *r, size_t i, size_t k);
void eng__con_item_end(eng__run *r, size_t i, size_t k);
/* Step i (k < 0) or its item k will be tried again. */
void eng__con_step_retry(eng__run *r, size_t i, long k, int64_t delay_ms,
                         const char *why);
void eng__con_log(eng__run *r, const char *step, eng_log_level lvl,
                  const char *msg);
void eng__con_progress(eng__run *r, const char *step, int64_t done,
                       int64_t total);
void eng__con_summary(eng__run *r);
void eng__con_note(eng__run *r, const char *fmt, ...) ENG_PRINTF(2, 3);

/* ---- report.c ---------------------------------------------------------- */

json_t *eng__report_json(eng__run *r);
/* The run so far, for notifications (host->run_state): outcome, steps by
 * status, the failed or refused step, SLO, the backup chosen, where the
 * evidence is. The run as it ends: the step `self` (the one asking, or
 * NULL) and the `finally` steps that did not end yet are left out.
 * Secrets masked; caller owns the result. */
json_t *eng__run_state(eng__run *r, const char *self);
int eng__report_write(eng__run *r);

/* ---- run.c: identity, directory and events ---------------------------- */

/* Fill the fields every run has: loop, redactor, clock, id (given one is
 * reused: --resume, cleanup), the step table. */
void eng__run_init(eng__run *r, eng__runbook *rb, eng__lua *L,
                   const eng__run_opts *o, const char *reuse_id);
void eng__run_free(eng__run *r);
void eng__policy_free(eng__policy *p);
/* A new run id for a run starting at now_ms: its UTC date and time
 * (YYYYMMDD-HHMMSS), a dash and four random hex digits. */
void eng__run_new_id(char out[40], int64_t now_ms);
/* A warning of step i's attempt (its check returned "warn", or its Lua
 * called engine.warn): logged, and the step ends `warn` if it succeeds.
 * Several are joined with "; ". */
void eng__step_warn(eng__run *r, eng__step_state *st, const char *msg);
/* The state of step or item `id` ("ID" or "ID[LABEL]"), or NULL. */
eng__step_state *eng__run_find_state(eng__run *r, const char *id);
/* Free what a step's (or an item's) state holds. */
void eng__step_state_free(eng__step_state *st);
/* A step boundary: the audit log synced, then opts->on_boundary. */
void eng__run_boundary(eng__run *r);
/* Create the run directory and open its journal; -1 with a diagnostic. */
int eng__run_open_dir(eng__run *r, eng__diags *d);
/* Open the audit log; -1 with errno. */
int eng__run_open_audit(eng__run *r);
/* An audit record (fields stolen). A failed write marks the run broken:
 * it ends as failed. */
void eng__run_audit(eng__run *r, const char *type, json_t *fields);
/* After a journal write: the first failure is said (stderr) and fails the
 * run. */
void eng__run_check_journal(eng__run *r);
/* A log line of a step (or of the run when step is NULL), redacted, to
 * the console and the audit log. */
void eng__run_log(eng__run *r, const char *step, eng_log_level lvl,
                  const char *msg);
void eng__run_progress(eng__run *r, const char *step, int64_t done,
                       int64_t total);
/* A secret value: masked everywhere, journaled as `ref` (NULL: masked
 * only). */
void eng__run_secret(eng__run *r, const char *value, const char *ref);
/* Journal a resource event, with its audit record; an intent carries the
 * resource's disposition ("kept" or "temporary"). */
int64_t eng__run_journal(eng__run *r, const char *event, const char *step,
                         const char *kind, const char *id,
                         const char *disposition, const json_t *detail);
int eng__run_journal_owned(eng__run *r, const char *kind, const char *id);
/* Register a run-end hook (the scheduler runs them after `finally`). */
int eng__run_add_end_hook(eng__run *r, int (*cb)(eng_call *, void *),
                          void *ud);

/* ---- policy.c ------------------------------------------------------------ */

/* Check a target against the policy; records the decision (report and
 * audit log). ENG_ERR_REFUSED with r->last_refusal set when refused. */
int eng__policy_check(eng__run *r, const char *step, eng_target kind,
                      const char *value, const char *evidence,
                      eng_side_effect side);
/* SQL about to run on `database` ("HOST:PORT/DBNAME" or a bare name;
 * evidence "sysid:N" or NULL), inside a READ ONLY transaction when
 * read_only: each database it touches held to what it does to it (the
 * databases its statements name, on the same server, too), and what the
 * guards cannot verify to guards.unverified_commands on a protected
 * database. Records every decision; ENG_ERR_REFUSED with r->last_refusal
 * set when refused. */
int eng__policy_sql(eng__run *r, const char *step, const char *database,
                    const char *evidence, const char *sql, bool read_only);
/* The shell line of a command parameter (a string, or an argv list quoted
 * word by word), and the environment it runs with for the guards'
 * analysis ("NAME=VALUE\n"..., ENGINE_CWD= for params.cwd); malloc'd. For
 * ENG_TARGET_COMMAND, eng__policy_check takes the latter as `evidence`. */
char *eng__command_line(const json_t *cmd);
char *eng__command_env(const json_t *params);
/* A refusal decided elsewhere (require, checks): logged and recorded. */
int eng__policy_refuse(eng__run *r, const char *step, const char *rule,
                       const char *target, const char *msg);

#endif /* ENGINE_RUN_H */
