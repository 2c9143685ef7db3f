/* plan.h - from a loaded runbook to a run: values of parameters (params.c),
 * guards (guards.c), the validated plan (plan.c), the scheduler (sched.c)
 * and the stages of one run in order (runner.c). */
#ifndef ENGINE_PLAN_H
#define ENGINE_PLAN_H

#include "run.h"
#include "registry.h"

/* ---- params.c: values of a run ----------------------------------------- */

/* Resolve the runbook's parameters (--set, --params-file, env, defaults)
 * into r->params; ENG_EXIT_USAGE with diagnostics on error. */
int eng__run_params(eng__run *r, eng__diags *d);
/* Lua's `env` and `runbook` tables (env secrets registered), and `run`
 * with a status. */
void eng__run_set_globals(eng__run *r);
void eng__run_set_status(eng__run *r, const char *status);
/* Render step i's `with`, convert every declared parameter, apply
 * defaults. NULL with err on failure. */
json_t *eng__step_params(eng__run *r, size_t i, char *err, size_t errlen);
/* Parameters `raw` (rendered) for action `ref`: every declared one
 * converted, defaults applied, secrets registered; NULL with err. */
json_t *eng__action_params(eng__run *r, const eng__action_ref *ref,
                           const json_t *raw, char *err, size_t errlen);
/* The side-effect class of step i with these params (NULL: declared). */
eng_side_effect eng__step_side(const eng__step *s, const json_t *params);

/* ---- dispose.c: temporary resources at the run's end ----------------------- */

/* Remove the temporary resources the run's journal says are still
 * present, one at a time, then call then(r). stopped (the grace ran out):
 * none is removed, each is said to be left. A failure leaves the resource a
 * leftover and counts in r->temporary_left. */
void eng__dispose_start(eng__run *r, bool stopped, void (*then)(eng__run *r));
/* The grace ran out: cancel the removal under way, start no other. */
void eng__dispose_cancel(eng__run *r);

/* ---- guards.c ------------------------------------------------------------ */

void eng__guards_compile(eng__run *r);
/* Before step i starts: `require` and Lua `checks`. */
int eng__guards_before_step(eng__run *r, size_t i);
/* `require` rules the DAG cannot guarantee for step i (printed to out when
 * not NULL). */
int eng__guards_static(eng__run *r, size_t i, FILE *out);
/* At run start: the first selected step refused by a static rule or by a
 * target known now is marked refused, and the run stops before any side
 * effect. */
void eng__guards_run_start(eng__run *r);
/* Whether step i's `if:` is decided before anything runs: it runs (no
 * condition, or one that reads only params, env and the run's fixed
 * fields and is true), it does not (such a condition is false), or it is
 * known only when the step is reached (the condition reads step results). */
typedef enum { ENG__COND_RUNS, ENG__COND_FALSE, ENG__COND_LATER } eng__cond_now;
eng__cond_now eng__guards_cond_now(eng__run *r, size_t i);

/* ---- refs.c: references in expressions ------------------------------------ */

/* Errors for every params/steps/outputs reference that names nothing. */
void eng__refs_check(eng__runbook *rb, eng__diags *d);

/* ---- plan.c -------------------------------------------------------------- */

/* Resolve actions against the registry, check params, compile Lua. */
int eng__plan_validate(eng__runbook *rb, eng__lua *L, eng__diags *d);
/* Mark the steps --only / --from select; -1 with a diagnostic. */
int eng__plan_select(eng__run *r, eng__diags *d);
/* `engine plan`: print what would run; the exit code. */
int eng__plan_print(eng__run *r);

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

/* ---- fleet.c: an inventory of databases into Kubernetes manifests ---------- */

typedef struct eng__fleet eng__fleet;

/* The runbooks the container image ships (file names), NULL-terminated. */
extern const char *const eng__fleet_image_runbooks[];
/* Check an inventory's text (file names it in diagnostics; a runbook named
 * by a relative path is looked up in dir; with dir NULL no file is read and
 * only the image's runbooks are known). NULL with errors in d when it is
 * invalid; otherwise the databases, schedules spread. */
eng__fleet *eng__fleet_parse(const char *file, const char *dir,
                             const char *text, size_t len, eng__diags *d);
void eng__fleet_free(eng__fleet *f);
size_t eng__fleet_count(const eng__fleet *f);
const char *eng__fleet_name(const eng__fleet *f, size_t i);
/* Database i's Kubernetes objects (a ConfigMap when its runbook is a local
 * file, then its CronJob) as a new JSON array. */
json_t *eng__fleet_docs(const eng__fleet *f, size_t i);
/* `engine fleet render`: read the inventory and write every database's
 * objects as multi-document YAML to out, or with out_dir one file per
 * database (OUT_DIR/NAME.yaml). ENG_EXIT_USAGE for an invalid inventory
 * (nothing written), ENG_EXIT_FAILED when a file cannot be written. */
int eng__fleet_render(const char *inventory, const char *out_dir, FILE *out,
                      eng__diags *d);

#endif
