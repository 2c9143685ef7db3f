/* report.c - the machine-readable run report (JSON), written into the run
 * directory and to --report. */
#include "registry.h"
#include "scheduler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *eng__report_json(eng__run *r) {
  eng__runbook *rb = r->rb;
  char t1[40], t2[40];
  json_t *steps = json_object();
  json_t *order = json_array();
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step *s = &rb->steps[i];
    eng__step_state *st = &r->st[i];
    json_t *o = json_pack(
        "{s:s, s:s, s:i, s:b, s:O, s:O?}", "status",
        eng__status_name(st->status), "uses",
        s->action ? s->action->full : (s->uses ? s->uses : ""), "attempts",
        st->attempts, "finally", s->is_finally, "outputs",
        st->outputs ? st->outputs : json_object(), "params", st->params);
    if (st->started_ms) {
      json_object_set_new(o, "started_at", json_string(eng__fmt_time(st->started_ms, t1, sizeof t1)));
      json_object_set_new(o, "ended_at", json_string(eng__fmt_time(st->ended_ms, t2, sizeof t2)));
      json_object_set_new(o, "duration_ms", json_integer(st->ended_ms - st->started_ms));
    }
    if (st->error) json_object_set_new(o, "error", json_string(st->error));
    if (s->check_ref >= 0 && st->check_ran)
      json_object_set_new(o, "check", json_string(st->check_ok ? "passed" : "failed"));
    json_object_set_new(steps, s->id, o);
    json_array_append_new(order, json_string(s->id));
  }
  json_t *slo = json_object();
  if (rb->slo_rto_ms >= 0 || rb->slo_rpo_ms >= 0) {
    json_object_set_new(slo, "rto_ms", json_integer(r->rto_ms));
    json_object_set_new(slo, "rto_target_ms", rb->slo_rto_ms >= 0 ? json_integer(rb->slo_rto_ms) : json_null());
    json_object_set_new(slo, "rto_met", json_boolean(r->rto_met));
    json_object_set_new(slo, "rpo_ms", r->rpo_ms >= 0 ? json_integer(r->rpo_ms) : json_null());
    json_object_set_new(slo, "rpo_target_ms", rb->slo_rpo_ms >= 0 ? json_integer(rb->slo_rpo_ms) : json_null());
    json_object_set_new(slo, "rpo_met", json_boolean(r->rpo_met));
  }
  json_t *rep = json_pack(
      "{s:s, s:s, s:s, s:s, s:s, s:i, s:s, s:s, s:I, s:o, s:o, s:o, s:O, s:O}",
      "runbook", rb->file, "runbook_sha256", rb->sha256, "name", rb->name,
      "run_id", r->id, "status",
      r->exit_code == 0 ? "ok" : r->exit_code == 3 ? "refused"
      : r->exit_code == 4 ? "slo_missed" : r->exit_code == 5 ? "interrupted"
      : "failed",
      "exit_code", r->exit_code, "started_at",
      eng__fmt_time(r->started_ms, t1, sizeof t1), "ended_at",
      eng__fmt_time(r->ended_ms, t2, sizeof t2), "duration_ms",
      (json_int_t)(r->ended_ms - r->started_ms), "order", order, "steps",
      steps, "slo", slo, "guards", r->guard_log, "params",
      r->params ? r->params : json_object());
  json_t *params = json_object_get(rep, "params");
  json_t *pcopy = json_deep_copy(params);
  eng__redact_json(r->redact, pcopy);
  json_object_set_new(rep, "params", pcopy);
  eng__redact_json(r->redact, json_object_get(rep, "steps"));
  json_t *guards = json_deep_copy(r->guard_log);
  eng__redact_json(r->redact, guards);
  json_object_set_new(rep, "guards", guards);
  return rep;
}

static int write_json(const char *path, json_t *v) {
  if (json_dump_file(v, path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0) {
    fprintf(stderr, "engine: cannot write the report %s: %s\n", path,
            strerror(errno));
    return -1;
  }
  return 0;
}

int eng__report_write(eng__run *r) {
  json_t *rep = eng__report_json(r);
  int rc = 0;
  if (r->dir) {
    char *p = eng__asprintf("%s/report.json", r->dir);
    rc |= write_json(p, rep);
    free(p);
  }
  if (r->opts->report) rc |= write_json(r->opts->report, rep);
  json_decref(rep);
  return rc;
}
