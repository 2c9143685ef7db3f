/* slo.c - RTO and RPO of a run against the runbook's targets: RTO from the
 * run's start (or the start of the step slo.rto_from names) to the end of
 * the step marked `recovered`, measured only when such a step ended ok
 * (nothing recovered, nothing to time); RPO from slo.backup_time to the
 * start of that step (or to the end of a run whose runbook marks no step
 * `recovered`), or, for a point-in-time recovery, from slo.recovery_point
 * (the last replayed commit) to slo.recovery_target (the target time;
 * default the end of the recovered step). Also whether the run is a drill
 * (the runbook's `drill:`), which the evidence describes differently. */
#include "plan/plan.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A timestamp of slo (`key`: backup_time, recovery_point ...) as
 * milliseconds since the epoch, or -1 with the reason in r->rpo_why. */
static int64_t slo_time(eng__run *r, const eng__node *n, const char *key) {
  char err[512] = "";
  json_t *v = eng__tpl_render(r->L, n, err, sizeof err);
  json_t *t = v ? eng__convert(v, ENG_T_TIMESTAMP, NULL, err, sizeof err) : NULL;
  int64_t ms = -1;
  char why[160];
  if (t && eng__parse_timestamp(json_string_value(t), &ms, why, sizeof why)) {
    ms = -1;
    snprintf(err, sizeof err, "%s", why);
  }
  if (ms < 0) {
    free(r->rpo_why);
    r->rpo_why = eng__asprintf("slo.%s: %s", key, err);
  }
  json_decref(t);
  json_decref(v);
  return ms;
}

/* Why nothing counts as recovered: the first step marked `recovered` and
 * how it ended (malloc'd). */
static char *nothing_recovered(eng__run *r) {
  eng__runbook *rb = r->rb;
  for (size_t i = 0; i < rb->n_main; i++) {
    if (!rb->steps[i].recovered) continue;
    eng__status s = r->st[i].status;
    const char *how = s == ENG__S_PENDING || s == ENG__S_RUNNING ? "did not end"
                      : s == ENG__S_SKIPPED ? "was skipped"
                      : s == ENG__S_REFUSED ? "was refused"
                      : s == ENG__S_TIMED_OUT ? "timed out"
                      : s == ENG__S_CANCELLED ? "was cancelled"
                                              : "failed";
    return eng__asprintf("nothing was recovered: step '%s' (recovered: true) %s",
                         rb->steps[i].id, how);
  }
  return eng__xstrdup("no step is marked `recovered: true`");
}

/* `drill:` rendered now (a template may read params); false when it
 * cannot be, said once. */
static void measure_drill(eng__run *r) {
  const eng__node *n = r->rb->drill;
  r->drill = false;
  if (!n) return;
  char err[512] = "";
  json_t *v = eng__tpl_render(r->L, n, err, sizeof err);
  json_t *b = v ? eng__convert(v, ENG_T_BOOL, NULL, err, sizeof err) : NULL;
  if (b) r->drill = json_is_true(b);
  else if (!r->drill_said) {
    r->drill_said = true;
    eng__con_note(r, "%s:%d:%d: drill: %s; the run is described as not a drill",
                  r->rb->file, n->line, n->col, err);
  }
  json_decref(b);
  json_decref(v);
}

/* Where the RTO clock starts: slo.rto_from's step start, else the run's. */
static int64_t rto_start(eng__run *r) {
  const eng__node *from = r->rb->slo_rto_from;
  for (size_t i = 0; from && i < r->rb->n_main; i++)
    if (!strcmp(r->rb->steps[i].id, from->str) && r->st[i].started_ms > 0)
      return r->st[i].started_ms;
  return r->started_ms;
}

/* A point-in-time recovery's data loss: slo.recovery_target (default:
 * `reached`, when the recovered step ended) minus slo.recovery_point. */
static void recovery_rpo(eng__run *r, int64_t reached) {
  int64_t point = slo_time(r, r->rb->slo_recovery_point, "recovery_point");
  if (point < 0) return;
  int64_t target = r->rb->slo_recovery_target
                       ? slo_time(r, r->rb->slo_recovery_target, "recovery_target")
                       : reached;
  if (target < 0) return;
  r->rpo_ms = target > point ? target - point : 0;
}

void eng__slo_measure(eng__run *r, int64_t end_ms) {
  r->slo_measured = true;
  eng__runbook *rb = r->rb;
  int64_t recovered_end = -1, recovered_start = -1;
  bool marked = false;
  for (size_t i = 0; i < rb->n_main; i++) {
    if (!rb->steps[i].recovered) continue;
    marked = true;
    if (eng__status_succeeded(r->st[i].status)) {
      recovered_end = r->st[i].ended_ms;
      recovered_start = r->st[i].started_ms;
    }
  }
  free(r->rto_why);
  free(r->rpo_why);
  r->rto_why = r->rpo_why = NULL;
  r->rto_ms = r->prep_ms = r->restore_ms = r->verify_ms = -1;
  int64_t clock = rto_start(r);
  if (recovered_end > 0) {
    r->rto_ms = recovered_end - clock;
    r->prep_ms = recovered_start - clock;
    r->restore_ms = recovered_end - recovered_start;
    int64_t last = recovered_end;
    for (size_t i = 0; i < rb->n_main; i++)
      if (r->st[i].started_ms >= recovered_end && r->st[i].ended_ms > last)
        last = r->st[i].ended_ms;
    r->verify_ms = last - recovered_end;
  } else {
    r->rto_why = nothing_recovered(r);
  }
  /* a target that could not be measured is not met */
  r->rto_met = rb->slo_rto_ms < 0 || (r->rto_ms >= 0 && r->rto_ms <= rb->slo_rto_ms);
  r->rpo_ms = -1;
  r->rpo_met = true;
  if (rb->slo_backup_time) {
    int64_t bt = -1;
    if (marked && recovered_start < 0) r->rpo_why = eng__xstrdup(r->rto_why);
    else bt = slo_time(r, rb->slo_backup_time, "backup_time");
    if (bt >= 0) {
      int64_t at = recovered_start > 0 ? recovered_start : end_ms;
      r->rpo_ms = at - bt;
      if (r->rpo_ms < 0) r->rpo_ms = 0;
    }
  }
  if (rb->slo_recovery_point) {
    if (marked && recovered_start < 0) r->rpo_why = eng__xstrdup(r->rto_why);
    else recovery_rpo(r, recovered_end > 0 ? recovered_end : end_ms);
  }
  if (rb->slo_rpo_ms >= 0)
    r->rpo_met = r->rpo_ms >= 0 && r->rpo_ms <= rb->slo_rpo_ms;
  if (rb->slo_rpo_ms >= 0 && !rb->slo_backup_time && !rb->slo_recovery_point &&
      !r->rpo_why)
    r->rpo_why = eng__xstrdup("slo.backup_time is not set");
  measure_drill(r);
}
