/*
 * plan/plan.h - from a loaded runbook to what will run:
 *
 *   params.c  the values of a run: its parameters, the tables expressions
 *             see, each step's parameters rendered and converted
 *   guards.c  the runbook's guards: the policy compiled from its lists,
 *             `require` and Lua `checks`, what is decided before the run
 *   plan.c    validation against the plugins and Lua, --only/--from,
 *             `engine plan`
 *   slo.c     RTO and RPO measured against the runbook's targets (only
 *             when a `recovered` step ended ok), whether the run is a
 *             drill
 *
 * Above actions/ (steps are resolved against the registry).
 */
#ifndef ENGINE_PLAN_H
#define ENGINE_PLAN_H

#include "actions/actions.h"

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

/* ---- guards.c ------------------------------------------------------------ */

void eng__guards_compile(eng__run *r);
/* Before step i starts: `require` and Lua `checks`. */
int eng__guards_before_step(eng__run *r, size_t i);
/* `require` rules the DAG cannot guarantee for step i (printed to out when
 * not NULL). */
int eng__guards_static(eng__run *r, size_t i, FILE *out);
/* At run start: every selected step refused by what is known now
 * (eng__guards_decide) is marked refused, and the run stops before any
 * main step ran (`finally` runs, as after any refusal). */
void eng__guards_run_start(eng__run *r);
/* Whether step i's `if:` is decided before anything runs: it runs (no
 * condition, or one that reads only params, env and the run's fixed
 * fields and is true), it does not (such a condition is false), or it is
 * known only when the step is reached (the condition reads step results). */
typedef enum { ENG__COND_RUNS, ENG__COND_FALSE, ENG__COND_LATER } eng__cond_now;
/* Every condition decided before the run (engine plan, the guards at run
 * start) together may run this long; what does not finish is decided when
 * its step is reached. */
#define ENG__COND_BUDGET_MS 2000
eng__cond_now eng__guards_cond_now(eng__run *r, size_t i);

/* What the guards decide about one target of a step before the run. */
typedef enum eng__gdecision {
  ENG__G_PASS,         /* held to the whole policy now: allowed */
  ENG__G_REFUSED,      /* refused now: the run refuses before its first step */
  ENG__G_IF_RUNS,      /* refused, if the step runs (its `if:` is known then) */
  ENG__G_LATER,        /* its value or the step's class is known only when
                          the step is reached: decided then */
  ENG__G_CONNECTION,   /* a connection: the action checks the database it
                          acts on with the server's identity when it runs */
  ENG__G_NOT_RUN,      /* the step's `if:` is false now: not held to them */
  ENG__G_NOT_SELECTED, /* --only / --from leave the step out */
  ENG__G_FILE          /* an output path: not held to the protected lists */
} eng__gdecision;

/* One target of a step: a declared parameter's value, each item of a list
 * of them, or a mount of a volume list (NAME:/path[:ro|rw]). */
typedef struct eng__gtarget {
  const char *param;    /* the declared parameter (borrowed) */
  eng_target kind;      /* a mount's source may be a path (FILE) */
  char *value;          /* known now; NULL when not */
  char *raw;            /* as written, when not known now */
  char *detail;         /* how it is used ("read-only mount at /data"), or NULL */
  char *evidence;       /* given to the policy with it (a command: its env) */
  bool mount;           /* an item of a volume list */
  eng_side_effect side; /* of this use: a read-only mount reads */
  bool side_known;
  eng__gdecision d;
  char *why;            /* the refusal, when refused */
  char *item;           /* a for_each item's id ("ID[LABEL]"), or NULL */
} eng__gtarget;

/* What the guards decide about step i before the run. */
typedef struct eng__gstep {
  eng__cond_now cond;
  eng_side_effect side; /* the step's class (declared, when not known now) */
  bool side_known;      /* classified with every parameter known now */
  json_t *known;        /* the parameters known now, converted */
  eng__gtarget *t;
  size_t n;
  bool require_refused; /* a guards.require the DAG cannot guarantee */
  bool refused;         /* refused now */
  bool refused_if_runs; /* refused if it runs (`if:` known only then) */
  char *why;            /* the first refusal's message */
  /* for_each: its list as known now (NULL: known only when the step
   * starts; each item is then held to the guards when it starts) */
  json_t *list;
} eng__gstep;

/* The one decision, made the same way for `engine plan` and at run start:
 * step i's `if:` as decided now, every parameter that renders without
 * step results (literals, params, env, run's fixed fields), and each of
 * its targets held to the whole policy (eng__policy_check, commands
 * included; ownership is decided when the step runs), and the static
 * `require`. A step whose `if:` is known only later is held to it when
 * `conditional` (plan: "REFUSED if it runs"), else left to when it is
 * reached. Decisions are recorded (guard log, audit log). Free g with
 * eng__gstep_free. */
void eng__guards_decide(eng__run *r, size_t i, bool conditional, eng__gstep *g);
void eng__gstep_free(eng__gstep *g);
/* `engine validate`: the guard violations decidable without parameters
 * or environment (forbidden commands in literal command lines, literal
 * protected targets used destructively, `require` the DAG cannot
 * guarantee) as diagnostics at their file:line:col: errors, or warnings
 * for a step behind an `if:`. Returns the number of errors. */
size_t eng__guards_validate(eng__runbook *rb, eng__lua *L, eng__diags *d);

/* ---- plan.c -------------------------------------------------------------- */

/* Resolve actions against the registry, check params, compile Lua. */
int eng__plan_validate(eng__runbook *rb, eng__lua *L, eng__diags *d);
/* Mark the steps --only / --from select; -1 with a diagnostic. */
int eng__plan_select(eng__run *r, eng__diags *d);
/* `engine plan`: print what would run; the exit code. */
int eng__plan_print(eng__run *r);

/* ---- slo.c: RTO and RPO ------------------------------------------------ */

/* Measure the run's RTO and RPO against the runbook's targets: not
 * measured (-1, the reason in r->rto_why / r->rpo_why, a target not met)
 * when nothing was recovered; the RPO at end_ms when no step is marked
 * `recovered`. Also renders `drill:` into r->drill. */
void eng__slo_measure(eng__run *r, int64_t end_ms);

#endif /* ENGINE_PLAN_H */
