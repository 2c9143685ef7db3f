/* sched.h - a run: parameters, the DAG scheduler on the loop, finally,
 * signals, exit codes. */
#ifndef ENGINE_SCHED_H
#define ENGINE_SCHED_H

#include "runbook.h"

/* Exit codes (SPEC section 2). */
enum {
  ENG_EXIT_OK = 0,
  ENG_EXIT_FAILED = 1,
  ENG_EXIT_USAGE = 2,
  ENG_EXIT_REFUSED = 3,
  ENG_EXIT_SLO = 4,
  ENG_EXIT_INTERRUPTED = 5
};

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

const char *eng__status_name(eng__status s);

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
} eng__run_opts;

typedef struct eng__step_state {
  eng__status status;
  int attempts;
  int64_t started_ms, ended_ms;
  json_t *outputs;
  json_t *params; /* rendered and converted, for the report */
  char *error;
  bool upstream_failed, selected, check_failed;
  eng_call *call;
  eng_call *check_call; /* context of a running check hook */
  uv_timer_t *timer; /* timeout or retry delay */
  bool timer_is_retry;
  bool check_ran;
  bool check_ok;
  bool resumed;     /* reused from the run being resumed */
  char inputs[65];  /* SHA-256 of the resolved params */
  char *check_error;
} eng__step_state;

struct eng__run {
  eng__runbook *rb;
  eng__lua *L;
  const eng__run_opts *opts;
  uv_loop_t *loop;
  eng__redactor *redact;
  char id[40];
  char *dir; /* absolute */
  int64_t started_ms, ended_ms;
  json_t *params;
  eng__step_state *st;
  size_t running;
  size_t next_finally; /* index into rb->steps */
  bool in_finally, stopping, refused, interrupted, finished;
  int signals;
  uv_signal_t sigint, sigterm;
  bool closing_signals;
  int exit_code;
  int64_t rto_ms, rpo_ms;
  bool rto_met, rpo_met;
  struct eng__end_hook *end_hooks;
  size_t end_hook_next;
  FILE *journal;
  int64_t journal_seq;
  json_t *guard_log;   /* guard decisions (array) */
  json_t *secret_refs; /* secret value -> "${env.X}" / "${params.x}" */
  struct eng__audit *audit;
  json_t *prev_steps;  /* --resume: step id -> {status, inputs, outputs} */
  json_t *unfinished;  /* --resume: step ids started and never ended */
  bool cleanup_mode;   /* engine cleanup: destructive undo of own resources */
  char *last_refusal;  /* the message of the latest guard refusal */
  bool static_check;   /* plan-time: ownership is decided at run time */
  bool in_schedule, schedule_again, hook_running, audit_broken;
};

/* Resolve params (exit code on error, message printed). */
int eng__run_params(eng__run *r, eng__diags *d);
/* Execute or plan; returns the process exit code. */
int eng__run_main(eng__runbook *rb, eng__lua *L, const eng__run_opts *o);

/* guards.c */
int eng__guards_before_step(eng__run *r, size_t i);
int eng__guards_static(eng__run *r, size_t i, FILE *out);

/* journal.c */
void eng__journal_add_ref(eng__run *r, const char *value, const char *ref);
json_t *eng__journal_refs(eng__run *r, const json_t *v);
json_t *eng__journal_deref(eng__run *r, const json_t *v);
void eng__journal_step(eng__run *r, const char *event, const char *step,
                       const char *inputs, const char *status,
                       const json_t *outputs);
json_t *eng__journal_read(const char *dir);
json_t *eng__journal_leftovers(const json_t *all);
int eng__runs_list(const char *state_dir, FILE *out);
char *eng__cleanup_runbook(const char *run_dir, size_t *count);

/* sched.c: an audit record (fields stolen) */
void eng__run_audit(eng__run *r, const char *type, json_t *fields);

/* Called by call.c */
void eng__run_log(eng__run *r, const char *step, eng_log_level lvl,
                  const char *msg);
void eng__run_progress(eng__run *r, const char *step, int64_t done,
                       int64_t total);
int eng__run_guard_target(eng__run *r, const char *step, eng_target kind,
                          const char *value, const char *evidence,
                          eng_side_effect side);
int64_t eng__run_journal(eng__run *r, const char *event, const char *step,
                         const char *kind, const char *id,
                         const json_t *detail);
int eng__run_journal_owned(eng__run *r, const char *kind, const char *id);
int eng__run_add_end_hook(eng__run *r, int (*cb)(eng_call *, void *),
                          void *ud);

/* call.c: create a call for a step attempt (or NULL step for run-level). */
eng_call *eng__call_new(eng__run *r, const char *step_id,
                        const eng_action *action, eng__call_done_cb cb,
                        void *ud);
void eng__call_cancel(eng_call *c);
void eng__call_release(eng_call *c);
void eng__host_init(uv_loop_t *loop, eng__redactor *redact);
void eng__host_shutdown(void);
eng__lua *eng__call_lua(eng_call *c);
eng__redactor *eng__host_redactor(void);

/* console.c */
typedef struct eng__console {
  bool json, color, tty;
  int verbosity;
} eng__console;
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

/* report.c */
json_t *eng__report_json(eng__run *r);
int eng__report_write(eng__run *r);

#endif
