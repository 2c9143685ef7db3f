/* slo.c - RTO and RPO of a run against the runbook's targets: RTO from the
 * run's start to the end of the step marked `recovered` (or of the run),
 * RPO from slo.backup_time to the start of that step. */
#include "run_data.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t parse_time_value(const json_t *v) {
  if (json_is_number(v)) {
    double x = json_number_value(v);
    return (int64_t)(x > 1e11 ? x : x * 1000.0);
  }
  if (!json_is_string(v)) return -1;
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  const char *s = json_string_value(v);
  const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!e) return -1;
  int ms = 0;
  if (*e == '.') {
    e++;
    int digits = 0;
    while (*e >= '0' && *e <= '9') {
      if (digits < 3) ms = ms * 10 + (*e - '0');
      digits++;
      e++;
    }
    while (digits < 3) { ms *= 10; digits++; }
  }
  int64_t t = (int64_t)timegm(&tm) * 1000 + ms;
  if ((*e == '+' || *e == '-') && e[1] >= '0' && e[1] <= '9' && e[2] >= '0' &&
      e[2] <= '9') {
    /* +HH, +HH:MM or +HHMM */
    int hh = (e[1] - '0') * 10 + (e[2] - '0'), mm = 0;
    const char *m = e[3] == ':' ? e + 4 : e + 3;
    if (m[0] >= '0' && m[0] <= '9' && m[1] >= '0' && m[1] <= '9')
      mm = (m[0] - '0') * 10 + (m[1] - '0');
    int64_t off = ((int64_t)hh * 60 + mm) * 60000;
    t += *e == '+' ? -off : off;
  }
  return t;
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
  r->rto_met = rb->slo_rto_ms < 0 || r->rto_ms <= rb->slo_rto_ms;
  r->rpo_ms = -1;
  r->rpo_met = true;
  if (rb->slo_backup_time) {
    char err[512];
    json_t *v = eng__tpl_render(r->L, rb->slo_backup_time, err, sizeof err);
    int64_t bt = v ? parse_time_value(v) : -1;
    json_decref(v);
    if (bt > 0) {
      int64_t at = recovered_start > 0 ? recovered_start : end_ms;
      r->rpo_ms = at - bt;
      if (r->rpo_ms < 0) r->rpo_ms = 0;
    }
    if (rb->slo_rpo_ms >= 0)
      r->rpo_met = r->rpo_ms >= 0 && r->rpo_ms <= rb->slo_rpo_ms;
  }
}
