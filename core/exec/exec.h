/*
 * exec/exec.h - a run on the loop:
 *
 *   sched.c    the DAG: the ready set under --jobs, conditions, per-attempt
 *              timeouts, retries with backoff, checks, `finally`, run-end
 *              hooks, signals and the grace after them
 *   dispose.c  the run's temporary resources still present at its end
 *   runner.c   one run stage by stage: parameters, selection, plan or audit
 *              log, guards at start, the scheduler, the outcome, reports
 *
 * Above plan/ and state/ (a run may hold a lock).
 */
#ifndef ENGINE_EXEC_H
#define ENGINE_EXEC_H

#include "plan/plan.h"
#include "state/state.h"

/* ---- dispose.c: temporary resources at the run's end ----------------------- */

/* Remove the temporary resources the run's journal says are still
 * present, one at a time, then call then(r). stopped (the grace ran out):
 * none is removed, each is said to be left. A failure leaves the resource a
 * leftover and counts in r->temporary_left. */
void eng__dispose_start(eng__run *r, bool stopped, void (*then)(eng__run *r));
/* The grace ran out: cancel the removal under way, start no other. */
void eng__dispose_cancel(eng__run *r);

/* ---- sched.c: the DAG on the loop ----------------------------------------- */

/* Schedule every step of the run on r->loop; when the last step, `finally`
 * and the run-end hooks are done, on_end runs once (on the loop thread). */
void eng__sched_start(eng__run *r, void (*on_end)(eng__run *r));
/* The loop ran dry with steps pending: cancel their calls (the run goes
 * on: 1), or, when none can be cancelled, fail them and end the run (0). */
int eng__sched_abandon(eng__run *r);
/* Stop the run as a signal would (cancel, then `finally` within the
 * grace), saying why; it ends as interrupted (exit 5). */
void eng__sched_stop(eng__run *r, const char *why);
void eng__sched_free(eng__run *r);
/* The outcome of the main steps, as `run.status` shows it to `finally`. */
const char *eng__sched_main_status(eng__run *r);

/* ---- runner.c: one run, plan to reports ----------------------------------- */

/* Execute or plan; returns the process exit code. */
int eng__run_main(eng__runbook *rb, eng__lua *L, const eng__run_opts *o);

#endif /* ENGINE_EXEC_H */
