/* slo.c - RTO and RPO of a run against the runbook's targets: RTO from the
 * run's start to the end of the step marked `recovered`, measured only
 * when such a step ended ok (nothing recovered, nothing to time); RPO from
 * slo.backup_time to the start of that step (or to the end of a run whose
 * runbook marks no step `recovered`). Also whether the run is a drill
 * (the runbook's `drill:`), which the evidence describes differently. */
#include "plan/plan.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* slo.backup_time as milliseconds since the epoch, or -1 with the reason
 * in r->rpo_why. */
static int64_t backup_time(eng__run *r) {
  char err[512];
  json_t *v = eng__tpl_render(r->L, r->rb->slo_backup_time, err, sizeof err);
  json_t *t = v ? eng__convert(v, ENG_T_TIMESTAMP, NULL, err, sizeof err) : NULL;
  int64_t ms = -1;
  char why[160];
  if (t && eng__parse_timestamp(json_string_value(t), &ms, why, sizeof why))
    ms = -1;
  if (ms < 0) {
    free(r->rpo_why);
    r->rpo_why = eng__asprintf("slo.backup_time: %s", err);
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
  if (recovered_end > 0) {
    r->rto_ms = recovered_end - r->started_ms;
    r->prep_ms = recovered_start - r->started_ms;
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
    else bt = backup_time(r);
    if (bt >= 0) {
      int64_t at = recovered_start > 0 ? recovered_start : end_ms;
      r->rpo_ms = at - bt;
      if (r->rpo_ms < 0) r->rpo_ms = 0;
    }
  }
  if (rb->slo_rpo_ms >= 0)
    r->rpo_met = r->rpo_ms >= 0 && r->rpo_ms <= rb->slo_rpo_ms;
  if (rb->slo_rpo_ms >= 0 && !rb->slo_backup_time && !r->rpo_why)
    r->rpo_why = eng__xstrdup("slo.backup_time is not set");
  measure_drill(r);
}
