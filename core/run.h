/* run.h - the run context (run.c): identity, directory, and the sinks of
 * events (console, JSON log, audit log, journal) every layer below the
 * scheduler writes into; and the guard policy applied to one target
 * (policy.c). Nothing declared here calls up into planning or scheduling
 * (docs/architecture.md). */
#ifndef ENGINE_RUN_H
#define ENGINE_RUN_H

#include "run_data.h"

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
/* The shell line of a command parameter (a string, or an argv list quoted
 * word by word), and the environment it runs with for the guards'
 * analysis ("NAME=VALUE\n"..., ENGINE_CWD= for params.cwd); malloc'd. For
 * ENG_TARGET_COMMAND, eng__policy_check takes the latter as `evidence`. */
char *eng__command_line(const json_t *cmd);
char *eng__command_env(const json_t *params);
/* A refusal decided elsewhere (require, checks): logged and recorded. */
int eng__policy_refuse(eng__run *r, const char *step, const char *rule,
                       const char *target, const char *msg);

#endif
