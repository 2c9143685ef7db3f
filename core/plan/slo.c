/* slo.c - RTO and RPO of a run against the runbook's targets: RTO from the
 * run's start to the end of the step marked `recovered` (or of the run),
 * RPO from slo.backup_time to the start of that step. */
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

void eng__slo_measure(eng__run *r, int64_t end_ms) {
  r->slo_measured = true;
  eng__runbook *rb = r->rb;
  int64_t recovered_end = -1, recovered_start = -1;
  for (size_t i = 0; i < rb->n_main; i++)
    if (rb->steps[i].recovered && r->st[i].status == ENG__S_OK) {
      recovered_end = r->st[i].ended_ms;
      recovered_start = r->st[i].started_ms;
    }
  r->rto_ms = (recovered_end > 0 ? recovered_end : end_ms) - r->started_ms;
  r->prep_ms = r->restore_ms = r->verify_ms = -1;
  if (recovered_end > 0) {
    r->prep_ms = recovered_start - r->started_ms;
    r->restore_ms = recovered_end - recovered_start;
    int64_t last = recovered_end;
    for (size_t i = 0; i < rb->n_main; i++)
      if (r->st[i].started_ms >= recovered_end && r->st[i].ended_ms > last)
        last = r->st[i].ended_ms;
    r->verify_ms = last - recovered_end;
  }
  r->rto_met = rb->slo_rto_ms < 0 || r->rto_ms <= rb->slo_rto_ms;
  r->rpo_ms = -1;
  r->rpo_met = true;
  if (rb->slo_backup_time) {
    int64_t bt = backup_time(r);
    if (bt >= 0) {
      int64_t at = recovered_start > 0 ? recovered_start : end_ms;
      r->rpo_ms = at - bt;
      if (r->rpo_ms < 0) r->rpo_ms = 0;
    }
    if (rb->slo_rpo_ms >= 0)
      r->rpo_met = r->rpo_ms >= 0 && r->rpo_ms <= rb->slo_rpo_ms;
  }
}
