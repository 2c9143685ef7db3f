/* runner.c - one run from a validated runbook to its reports, stage by
 * stage: the run context, parameters, step selection, then either the
 * printed plan or the audit log, the guards at run start, the scheduler on
 * the loop, and, once the DAG is done, SLO, exit code, the run.end record,
 * reports and the summary. */
#include "exec/exec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef ENG_VERSION
#define ENG_VERSION "0.0.0"
#endif

/* --resume: the previous results of the run, from its journal. */
static int load_resume(eng__run *r, eng__diags *d) {
  if (eng__journal_load_resume(r->dir, &r->prev_steps, &r->unfinished,
                               &r->journal.seq) != 0) {
    eng__diag_error(d, NULL, 0, 0,
                    "--resume %s: no journal in %s (wrong run id or "
                    "--state-dir?)",
                    r->id, r->dir);
    return -1;
  }
  return 0;
}

static int open_audit(eng__run *r, eng__diags *d) {
  const eng__run_opts *o = r->opts;
  eng__runbook *rb = r->rb;
  if (eng__run_open_audit(r) != 0) {
    eng__diag_error(d, NULL, 0, 0,
                    "cannot open the audit log %s/audit.jsonl: %s; nothing ran",
                    r->dir, strerror(errno));
    return -1;
  }
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  const char *user = getenv("USER") ? getenv("USER") : getenv("LOGNAME");
  json_t *params = json_deep_copy(r->params);
  eng__redact_json(r->redact, params);
  eng__run_audit(r, "run.start",
                 json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s?, s:s?}",
                           "engine", ENG_VERSION, "runbook", rb->file,
                           "runbook_sha256", rb->sha256, "name", rb->name,
                           "user", user ? user : "unknown", "host", host,
                           "params", params, "mode",
                           o->resume ? "resume" : o->cleanup_run ? "cleanup" : NULL,
                           "lock", o->lock ? eng__lock_name(o->lock) : NULL));
  json_t *steps = json_array();
  for (size_t i = 0; i < rb->n_steps; i++) {
    const eng_action *a = rb->steps[i].action->action;
    json_array_append_new(steps, json_pack("{s:s, s:s, s:s, s:b}", "step",
                                           rb->steps[i].id, "uses",
                                           rb->steps[i].action->full, "class",
                                           eng__side_names[a->side_effect],
                                           "selected", r->st[i].selected));
  }
  eng__run_audit(r, "plan", json_pack("{s:o}", "steps", steps));
  eng__audit_sync(r->audit);
  eng__audit_use_loop(r->audit, r->loop);
  return 0;
}

/* The regression SLOs: this run's figures (as its index record will hold
 * them) against the previous successful run's; each one missed is said. */
static void check_regressions(eng__run *r) {
  const eng__runbook *rb = r->rb;
  const json_t *prev = r->opts->previous_ok;
  if (!prev || (rb->slo_rows_drop_pct < 0 && rb->slo_backup_drop_pct < 0 &&
                rb->slo_rto_growth < 0))
    return;
  json_t *rep = eng__report_json(r);
  json_t *rec = eng__index_record(rep);
  json_decref(rep);
  if (!rec) return;
  eng__index_limits lim = {rb->slo_rows_drop_pct, rb->slo_backup_drop_pct,
                           rb->slo_rto_growth};
  json_t *regs = eng__index_regressions(rec, prev, &lim);
  json_decref(rec);
  if (!json_array_size(regs)) {
    json_decref(regs);
    return;
  }
  size_t i;
  json_t *g;
  json_array_foreach(regs, i, g) {
    char *line = eng__index_regression_text(g);
    fprintf(stderr, "engine: SLO missed: %s\n", line);
    free(line);
  }
  r->regressions = regs;
}

/* The DAG is done: the outcome, recorded and shown. */
static void on_end(eng__run *r) {
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
  eng__slo_measure(r, r->ended_ms);
  check_regressions(r);
  if (r->interrupted) r->exit_code = ENG_EXIT_INTERRUPTED;
  else if (r->refused) r->exit_code = ENG_EXIT_REFUSED;
  else if (failed || r->audit_broken || r->journal_broken || r->temporary_left)
    r->exit_code = ENG_EXIT_FAILED;
  else if (!r->rto_met || !r->rpo_met || r->regressions) r->exit_code = ENG_EXIT_SLO;
  else r->exit_code = ENG_EXIT_OK;
  eng__run_set_status(r, r->exit_code == 0 ? "ok" : "failed");
  json_t *end = json_pack("{s:i, s:s, s:I}", "exit_code", r->exit_code,
                          "status", r->exit_code == 0 ? "ok" : "failed",
                          "duration_ms", (json_int_t)(r->ended_ms - r->started_ms));
  /* a figure not measured (nothing was recovered) is null, never -1 */
  if (rb->slo_rto_ms >= 0)
    json_object_set_new(end, "rto_ms", r->rto_ms >= 0 ? json_integer(r->rto_ms) : json_null());
  if (r->rpo_ms >= 0) json_object_set_new(end, "rpo_ms", json_integer(r->rpo_ms));
  if (r->regressions) json_object_set(end, "regressions", r->regressions);
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
}

/* `lock:` rendered with the run's params into *o->lock_out. */
static int render_lock(eng__run *r, eng__diags *d) {
  eng__node *n = r->rb->lock;
  *r->opts->lock_out = NULL;
  if (!n) return ENG_EXIT_OK;
  char err[512] = "";
  json_t *v = eng__tpl_render(r->L, n, err, sizeof err);
  const char *name = json_string_value(v);
  int code = ENG_EXIT_OK;
  if (!name || !eng__lock_name_ok(name)) {
    char *shown = name ? eng__redact(r->redact, name) : NULL;
    eng__diag_error(d, r->rb->file, n->line, n->col,
                    "lock: %s%s%s", shown ? "'" : "", shown ? shown : err,
                    shown ? "' is not a lock name (letters, digits, '.', '_' "
                            "and '-', 1-128 characters)" : "");
    free(shown);
    code = ENG_EXIT_USAGE;
  } else {
    *r->opts->lock_out = eng__xstrdup(name);
  }
  json_decref(v);
  return code;
}

static void lock_lost(void *ud, const char *msg) {
  eng__run *r = ud;
  char *m = eng__asprintf("the run lost its lock (%s)", msg);
  eng__sched_stop(r, m);
  free(m);
}

static void offer_lua_funcs(eng__lua *L) {
  const eng__plugin_entry *pl;
  size_t np = eng__registry_plugins(&pl);
  for (size_t i = 0; i < np; i++)
    for (size_t k = 0; k < pl[i].desc->n_lua_funcs; k++)
      eng__lua_add_func(L, &pl[i].desc->lua_funcs[k]);
}

int eng__run_main(eng__runbook *rb, eng__lua *L, const eng__run_opts *o) {
  eng__run r;
  eng__run_init(&r, rb, L, o, o->resume ? o->resume : o->cleanup_run);
  eng__host_init(r.loop, r.redact);
  r.cleanup_mode = o->cleanup_run != NULL;
  eng__diags d = {0};
  d.color = o->color && isatty(2);
  int code = ENG_EXIT_OK;
  eng__run_set_globals(&r);
  bool dry = o->plan_only || o->lock_out;
  if (!dry && eng__run_open_dir(&r, &d) != 0) {
    code = ENG_EXIT_USAGE;
    goto out;
  }
  if (dry) /* shown, never created */
    r.dir = eng__asprintf("%s/runs/%s", o->state_dir, r.id);
  if (o->resume && !dry && load_resume(&r, &d) != 0) {
    code = ENG_EXIT_USAGE;
    goto out;
  }
  eng__run_set_status(&r, "running");
  for (size_t i = 0; i < rb->n_steps; i++)
    eng__lua_set_step(L, rb->steps[i].id, "pending", NULL);
  if (eng__run_params(&r, &d) != ENG_EXIT_OK || eng__plan_select(&r, &d) != 0) {
    code = ENG_EXIT_USAGE;
    goto out;
  }
  if (o->lock_out) {
    code = render_lock(&r, &d);
    goto out;
  }
  eng__guards_compile(&r);
  if (o->plan_only) {
    code = eng__plan_print(&r);
    goto out;
  }
  if (open_audit(&r, &d) != 0) {
    code = ENG_EXIT_USAGE;
    goto out;
  }
  offer_lua_funcs(L);
  /* a later `engine cleanup` of this run is held to its protected lists */
  if (!r.cleanup_mode) {
    eng__journal_guards(&r.journal, r.policy.lists);
    eng__run_check_journal(&r);
  }
  eng__con_run_start(&r);
  eng__guards_run_start(&r);
  eng__lock_keep(o->lock, r.loop, lock_lost, &r);
  eng__sched_start(&r, on_end);
  uv_run(r.loop, UV_RUN_DEFAULT);
  while (!r.finished) { /* the loop ran dry: a call never completed */
    eng__sched_abandon(&r);
    uv_run(r.loop, UV_RUN_DEFAULT);
  }
  eng__lock_unkeep(o->lock);
  code = r.exit_code;
out:
  eng__host_shutdown();
  uv_run(r.loop, UV_RUN_DEFAULT);
  eng__sched_free(&r);
  eng__run_free(&r);
  eng__diags_free(&d);
  return code;
}
