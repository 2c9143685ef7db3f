/* report.c - the machine-readable run report (JSON), written into the run
 * directory and to --report. */
#include "run/run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The drill's phases (see eng__run): preparation + restore = RTO. */
static bool slo_phases(const eng__run *r, json_t *slo) {
  if (!r->slo_measured || r->restore_ms < 0) return false;
  json_object_set_new(slo, "preparation_ms", json_integer(r->prep_ms));
  json_object_set_new(slo, "restore_ms", json_integer(r->restore_ms));
  json_object_set_new(slo, "verification_ms", json_integer(r->verify_ms));
  return true;
}

/* What the run created, from its journal: kind, id, step, disposition
 * and state (kept: delivered and present; removed; leftover: partial or
 * temporary and still present). */
static json_t *resources(eng__run *r) {
  json_t *out = json_array();
  json_t *all = r->dir ? eng__journal_read(r->dir) : NULL;
  json_t *res = all ? eng__journal_resources(all) : json_array();
  size_t i;
  json_t *e;
  json_array_foreach(res, i, e) {
    const char *state = json_is_true(json_object_get(e, "leftover")) ? "leftover"
                        : json_is_true(json_object_get(e, "present")) ? "kept"
                                                                      : "removed";
    json_t *o = json_pack("{s:O, s:O, s:O?, s:O, s:s}", "kind",
                          json_object_get(e, "kind"), "id",
                          json_object_get(e, "id"), "step",
                          json_object_get(e, "step"), "disposition",
                          json_object_get(e, "disposition"), "state", state);
    json_array_append_new(out, o);
  }
  json_decref(res);
  json_decref(all);
  eng__redact_json(r->redact, out);
  return out;
}

json_t *eng__report_json(eng__run *r) {
  eng__runbook *rb = r->rb;
  char t1[40], t2[40];
  json_t *steps = json_object();
  json_t *order = json_array();
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step *s = &rb->steps[i];
    eng__step_state *st = &r->st[i];
    json_t *o = json_pack(
        "{s:s, s:s, s:i, s:b, s:o, s:O?}", "status",
        eng__status_name(st->status), "uses",
        s->action ? s->action->full : (s->uses ? s->uses : ""), "attempts",
        st->attempts, "finally", s->is_finally, "outputs",
        st->outputs ? json_incref(st->outputs) : json_object(), "params", st->params);
    if (st->started_ms) {
      json_object_set_new(o, "started_at", json_string(eng__fmt_time(st->started_ms, t1, sizeof t1)));
      json_object_set_new(o, "ended_at", json_string(eng__fmt_time(st->ended_ms, t2, sizeof t2)));
      json_object_set_new(o, "duration_ms", json_integer(st->ended_ms - st->started_ms));
    }
    if (st->error) json_object_set_new(o, "error", json_string(st->error));
    if (st->summary) json_object_set_new(o, "summary", json_string(st->summary));
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
    if (r->rpo_why) json_object_set_new(slo, "rpo_error", json_string(r->rpo_why));
  }
  if (slo_phases(r, slo)) /* a drill without targets still has its RTO */
    json_object_set_new(slo, "rto_ms", json_integer(r->rto_ms));
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
  if (r->audit)
    json_object_set_new(rep, "audit_head", json_string(eng__audit_head(r->audit)));
  json_t *params = json_object_get(rep, "params");
  json_t *pcopy = json_deep_copy(params);
  eng__redact_json(r->redact, pcopy);
  json_object_set_new(rep, "params", pcopy);
  eng__redact_json(r->redact, json_object_get(rep, "steps"));
  json_t *guards = json_deep_copy(r->guard_log);
  eng__redact_json(r->redact, guards);
  json_object_set_new(rep, "guards", guards);
  json_object_set_new(rep, "resources", resources(r));
  if (r->refused_before_start) /* by what was known then: no main step ran */
    json_object_set_new(rep, "refused_before_start", json_deep_copy(r->refused_before_start));
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

/* ---- JUnit XML ------------------------------------------------------------ */

static void xml_esc(eng__buf *b, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
    case '<': eng__buf_adds(b, "&lt;"); break;
    case '>': eng__buf_adds(b, "&gt;"); break;
    case '&': eng__buf_adds(b, "&amp;"); break;
    case '"': eng__buf_adds(b, "&quot;"); break;
    default:
      if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t') eng__buf_adds(b, "?");
      else eng__buf_add(b, s, 1);
    }
  }
}

static char *junit_xml(eng__run *r) {
  eng__runbook *rb = r->rb;
  eng__buf cases = {0};
  int tests = 0, failures = 0, skipped = 0;
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step *s = &rb->steps[i];
    eng__step_state *st = &r->st[i];
    double secs = st->started_ms ? (double)(st->ended_ms - st->started_ms) / 1000.0 : 0;
    tests++;
    eng__buf_adds(&cases, "    <testcase classname=\"");
    xml_esc(&cases, rb->name);
    eng__buf_adds(&cases, s->is_finally ? ".finally\" name=\"" : ".steps\" name=\"");
    xml_esc(&cases, s->id);
    eng__buf_addf(&cases, "\" time=\"%.3f\">", secs);
    if (st->status == ENG__S_SKIPPED || st->status == ENG__S_PENDING) {
      skipped++;
      eng__buf_adds(&cases, "<skipped/>");
    } else if (st->status != ENG__S_OK &&
               !(st->status == ENG__S_FAILED && s->continue_on_error) &&
               /* a failed check is counted once, in its testcase below */
               !(st->status == ENG__S_FAILED && st->check_ran && !st->check_ok)) {
      failures++;
      eng__buf_addf(&cases, "<failure type=\"%s\" message=\"", eng__status_name(st->status));
      xml_esc(&cases, st->error ? st->error : eng__status_name(st->status));
      eng__buf_adds(&cases, "\">");
      xml_esc(&cases, st->error ? st->error : "");
      eng__buf_adds(&cases, "</failure>");
    }
    eng__buf_adds(&cases, "</testcase>\n");
    if (s->check_ref >= 0) {
      tests++;
      eng__buf_adds(&cases, "    <testcase classname=\"");
      xml_esc(&cases, rb->name);
      eng__buf_adds(&cases, ".checks\" name=\"");
      xml_esc(&cases, s->id);
      eng__buf_adds(&cases, " check\" time=\"0\">");
      if (!st->check_ran) {
        skipped++;
        eng__buf_adds(&cases, "<skipped/>");
      } else if (!st->check_ok) {
        failures++;
        eng__buf_adds(&cases, "<failure type=\"check\" message=\"");
        xml_esc(&cases, st->check_error ? st->check_error : "check failed");
        eng__buf_adds(&cases, "\"/>");
      }
      eng__buf_adds(&cases, "</testcase>\n");
    }
  }
  char t[40];
  eng__buf b = {0};
  eng__buf_adds(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"");
  xml_esc(&b, rb->name);
  eng__buf_addf(&b, "\" id=\"%s\" tests=\"%d\" failures=\"%d\" errors=\"0\" skipped=\"%d\" "
                    "time=\"%.3f\" timestamp=\"%s\">\n",
                r->id, tests, failures, skipped,
                (double)(r->ended_ms - r->started_ms) / 1000.0,
                eng__fmt_time(r->started_ms, t, sizeof t));
  eng__buf_add(&b, cases.data ? cases.data : "", cases.len);
  eng__buf_adds(&b, "  </testsuite>\n</testsuites>\n");
  eng__buf_free(&cases);
  char *xml = eng__buf_steal(&b);
  char *red = eng__redact(r->redact, xml);
  free(xml);
  return red;
}

/* ---- evidence (Markdown) ----------------------------------------------------- */

/* The backup that was restored: what the first restore step (marked
 * `recovered`, or a restore action) that ran read, named by the step
 * that produced it when one did; without a restore, the first step whose
 * outputs describe a backup (sha256, file or url, bytes). */
typedef struct backup_info {
  const char *step, *name, *sha256;
  json_int_t bytes;
  bool external; /* restored, and made by no step of this run */
} backup_info;

static bool backup_like(const json_t *o) {
  return json_object_get(o, "sha256") &&
         (json_object_get(o, "file") || json_object_get(o, "url")) &&
         json_object_get(o, "bytes");
}

static const char *backup_name(const json_t *o) {
  const char *n = json_string_value(json_object_get(o, "file"));
  return n ? n : json_string_value(json_object_get(o, "url"));
}

/* A snapshot a step took or picked (provider.snapshot, .snapshots). */
static const char *snapshot_name(const json_t *o) {
  const char *n = json_string_value(json_object_get(o, "snapshot_id"));
  return n ? n : json_string_value(
                     json_object_get(json_object_get(o, "picked"), "snapshot_id"));
}

static bool is_restore(const eng__step *s) {
  return s->recovered || (s->action && strstr(s->action->full, "restore"));
}

static bool find_backup(eng__run *r, backup_info *b) {
  memset(b, 0, sizeof *b);
  for (size_t i = 0; i < r->rb->n_main; i++) {
    const char *in = json_string_value(json_object_get(r->st[i].params, "file"));
    /* a managed database restores a snapshot rather than a file */
    bool snap = !in;
    if (snap) in = json_string_value(json_object_get(r->st[i].params, "snapshot_id"));
    if (!is_restore(&r->rb->steps[i]) || !in || !r->st[i].started_ms) continue;
    const json_t *o = r->st[i].outputs;
    b->step = r->rb->steps[i].id;
    b->name = in;
    b->sha256 = json_string_value(json_object_get(o, "sha256"));
    b->bytes = json_integer_value(json_object_get(o, "bytes"));
    b->external = true;
    for (size_t k = 0; k < r->rb->n_main; k++) {
      const json_t *p = r->st[k].outputs;
      const char *n = snap ? snapshot_name(p) : backup_name(p);
      if (k == i || (!snap && !backup_like(p)) || !n || strcmp(n, in)) continue;
      b->step = r->rb->steps[k].id;
      b->external = false;
      if (!b->sha256) b->sha256 = json_string_value(json_object_get(p, "sha256"));
      if (!b->bytes) b->bytes = json_integer_value(json_object_get(p, "bytes"));
      break;
    }
    return true;
  }
  for (size_t i = 0; i < r->rb->n_main; i++) {
    const json_t *o = r->st[i].outputs;
    if (!backup_like(o) || is_restore(&r->rb->steps[i])) continue;
    b->step = r->rb->steps[i].id;
    b->name = backup_name(o);
    b->sha256 = json_string_value(json_object_get(o, "sha256"));
    b->bytes = json_integer_value(json_object_get(o, "bytes"));
    return true;
  }
  return false;
}

/* ---- the run so far (host->run_state) ------------------------------------- */

static bool counts_as_failed(eng__run *r, size_t i) {
  eng__status s = r->st[i].status;
  return (s == ENG__S_FAILED || s == ENG__S_TIMED_OUT ||
          (s == ENG__S_CANCELLED && !r->interrupted)) &&
         !r->rb->steps[i].continue_on_error;
}

/* ok, failed, refused, interrupted, slo_missed, or running while main
 * steps are still to end. */
static const char *outcome(eng__run *r) {
  if (r->interrupted) return "interrupted";
  bool running = false, failed = false;
  for (size_t i = 0; i < r->rb->n_main; i++) {
    if (r->st[i].status == ENG__S_REFUSED) return "refused";
    if (counts_as_failed(r, i)) failed = true;
    if (!eng__status_terminal(r->st[i].status) && r->st[i].selected)
      running = true;
  }
  if (r->refused) return "refused";
  if (failed || r->audit_broken || r->journal_broken) return "failed";
  if (running) return "running";
  if (r->slo_measured && (!r->rto_met || !r->rpo_met)) return "slo_missed";
  return "ok";
}

json_t *eng__run_state(eng__run *r) {
  eng__runbook *rb = r->rb;
  char t[40];
  int64_t now = r->ended_ms ? r->ended_ms : eng__now_ms();
  json_t *steps = json_array(), *counts = json_object();
  json_t *failed = json_null();
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step_state *st = &r->st[i];
    const char *status = eng__status_name(st->status);
    json_t *o = json_pack("{s:s, s:s, s:s, s:b}", "id", rb->steps[i].id,
                          "uses", rb->steps[i].uses ? rb->steps[i].uses : "",
                          "status", status, "finally", rb->steps[i].is_finally);
    if (st->started_ms && st->ended_ms)
      json_object_set_new(o, "duration_ms", json_integer(st->ended_ms - st->started_ms));
    if (st->error) json_object_set_new(o, "error", json_string(st->error));
    if (st->summary) json_object_set_new(o, "summary", json_string(st->summary));
    json_array_append_new(steps, o);
    json_object_set_new(counts, status,
                        json_integer(json_integer_value(json_object_get(counts, status)) + 1));
    if (json_is_null(failed) && i < rb->n_main &&
        (st->status == ENG__S_REFUSED || counts_as_failed(r, i)))
      failed = json_pack("{s:s, s:s, s:s}", "id", rb->steps[i].id, "status",
                         status, "error", st->error ? st->error : "");
  }
  json_t *slo = json_object();
  if (r->slo_measured) {
    json_object_set_new(slo, "rto_ms", json_integer(r->rto_ms));
    json_object_set_new(slo, "rto_met", json_boolean(r->rto_met));
    json_object_set_new(slo, "rpo_ms", r->rpo_ms >= 0 ? json_integer(r->rpo_ms) : json_null());
    json_object_set_new(slo, "rpo_met", json_boolean(r->rpo_met));
    if (r->rpo_why) json_object_set_new(slo, "rpo_error", json_string(r->rpo_why));
    slo_phases(r, slo);
  }
  json_object_set_new(slo, "rto_target_ms", rb->slo_rto_ms >= 0 ? json_integer(rb->slo_rto_ms) : json_null());
  json_object_set_new(slo, "rpo_target_ms", rb->slo_rpo_ms >= 0 ? json_integer(rb->slo_rpo_ms) : json_null());
  backup_info bk;
  json_t *backup = json_null();
  if (find_backup(r, &bk)) {
    backup = json_pack("{s:s, s:s, s:I, s:s?, s:b}", "step", bk.step, "name",
                       bk.name ? bk.name : "", "bytes", bk.bytes, "sha256",
                       bk.sha256, "external", bk.external);
    if (r->slo_measured && r->rpo_ms >= 0)
      json_object_set_new(backup, "age_ms", json_integer(r->rpo_ms));
  }
  json_t *refusal = json_null();
  for (size_t i = json_array_size(r->guard_log); i-- > 0;) {
    json_t *g = json_array_get(r->guard_log, i);
    const char *d = json_string_value(json_object_get(g, "decision"));
    if (d && !strcmp(d, "refuse")) {
      refusal = json_pack("{s:O?, s:O?, s:O?}", "step", json_object_get(g, "step"),
                          "rule", json_object_get(g, "rule"), "message",
                          json_object_get(g, "message"));
      break;
    }
  }
  if (json_is_null(refusal) && r->last_refusal)
    refusal = json_pack("{s:s}", "message", r->last_refusal);
  char *audit = r->dir ? eng__asprintf("%s/audit.jsonl", r->dir) : NULL;
  json_t *state = json_pack(
      "{s:s, s:s, s:s, s:s, s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:s?, s:s?, s:s?}",
      "run_id", r->id, "runbook", rb->file, "name", rb->name ? rb->name : "",
      "outcome", outcome(r), "started_at", eng__fmt_time(r->started_ms, t, sizeof t),
      "duration_ms", (json_int_t)(now - r->started_ms), "steps", steps, "counts",
      counts, "failed_step", failed, "refusal", refusal, "slo", slo, "backup",
      backup, "run_dir", r->dir, "audit_log", audit, "evidence", r->opts->evidence);
  free(audit);
  /* what `engine audit verify --head` checks the log against later */
  if (r->audit)
    json_object_set_new(state, "audit_head", json_string(eng__audit_head(r->audit)));
  eng__redact_json(r->redact, state);
  return state;
}

static char *evidence_md(eng__run *r) {
  eng__runbook *rb = r->rb;
  char t[40], d1[32], d2[32];
  eng__buf b = {0};
  eng__buf_addf(&b, "# Drill evidence: %s\n\n", rb->name);
  eng__buf_addf(&b, "| | |\n|---|---|\n| Date | %s |\n", eng__fmt_time(r->started_ms, t, sizeof t));
  char host[256] = "";
  gethostname(host, sizeof host - 1);
  eng__buf_addf(&b, "| Environment | host `%s` |\n", host);
  eng__buf_addf(&b, "| Runbook | `%s` (sha256 `%s`) |\n", rb->file, rb->sha256);
  eng__buf_addf(&b, "| Run | `%s` |\n", r->id);
  eng__buf_addf(&b, "| Outcome | %s (exit %d) |\n\n",
                r->exit_code == 0 ? "succeeded" : r->exit_code == 4 ? "SLO missed" :
                r->exit_code == 3 ? "refused by a guard" : r->exit_code == 5 ? "interrupted" : "FAILED",
                r->exit_code);
  backup_info bk;
  eng__buf_adds(&b, "## Backup chosen\n\n");
  if (find_backup(r, &bk)) {
    if (bk.external)
      eng__buf_addf(&b, "- name: `%s` (external: not made by this run; restored by step `%s`)\n",
                    bk.name ? bk.name : "?", bk.step);
    else
      eng__buf_addf(&b, "- name: `%s` (step `%s`)\n", bk.name ? bk.name : "?", bk.step);
    if (bk.bytes > 0 || bk.sha256)
      eng__buf_addf(&b, "- size: %s\n", eng__fmt_bytes(bk.bytes, d1, sizeof d1));
    eng__buf_addf(&b, "- checksum (SHA-256): `%s`\n", bk.sha256 ? bk.sha256 : "not checked");
    if (r->rpo_ms >= 0) eng__buf_addf(&b, "- age at restore: %s\n", eng__fmt_duration(r->rpo_ms, d1, sizeof d1));
  } else {
    eng__buf_adds(&b, "- no step produced a backup with a checksum\n");
  }
  eng__buf_adds(&b, "\n## Restore target\n\n");
  bool any = false;
  for (size_t i = 0; i < rb->n_main; i++)
    if (is_restore(&rb->steps[i])) {
      const json_t *o = r->st[i].outputs;
      const char *db = json_string_value(json_object_get(o, "database"));
      const char *inst = json_string_value(json_object_get(o, "instance"));
      eng__buf_addf(&b, "- step `%s`: %s `%s` (%s)\n", rb->steps[i].id,
                    db ? "database" : inst ? "instance" : "target",
                    db ? db : inst ? inst : "-", eng__status_name(r->st[i].status));
      any = true;
    }
  if (!any) eng__buf_adds(&b, "- none\n");
  eng__buf_adds(&b, "\n## Validation results\n\n| step | action | status | check | result |\n|---|---|---|---|---|\n");
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step *s = &rb->steps[i];
    eng__step_state *st = &r->st[i];
    eng__buf_addf(&b, "| %s | %s | %s | %s | ", s->id, s->action ? s->action->full : "",
                  eng__status_name(st->status),
                  s->check_ref < 0 ? "-" : !st->check_ran ? "not run" : st->check_ok ? "passed" : "FAILED");
    for (const char *c = st->summary ? st->summary : "-"; *c; c++) {
      if (*c == '|') eng__buf_adds(&b, "\\|"); /* a table cell */
      else eng__buf_addf(&b, "%c", *c);
    }
    eng__buf_adds(&b, " |\n");
  }
  eng__buf_adds(&b, "\n## Metrics\n\n| metric | value | target | result |\n|---|---|---|---|\n");
  eng__buf_adds(&b, "| detection time | 0 (scheduled drill) | - | - |\n");
  eng__buf_adds(&b, "| decision time | 0 (runbook) | - | - |\n");
  bool phases = r->slo_measured && r->restore_ms >= 0;
  eng__buf_addf(&b, "| preparation time | %s | - | - |\n",
                phases ? eng__fmt_duration(r->prep_ms, d1, sizeof d1) : "-");
  eng__buf_addf(&b, "| restore time | %s | - | - |\n",
                phases ? eng__fmt_duration(r->restore_ms, d1, sizeof d1) : "-");
  eng__buf_addf(&b, "| total RTO | %s | %s | %s |\n", eng__fmt_duration(r->rto_ms, d1, sizeof d1),
                rb->slo_rto_ms >= 0 ? eng__fmt_duration(rb->slo_rto_ms, d2, sizeof d2) : "-",
                rb->slo_rto_ms < 0 ? "-" : r->rto_met ? "met" : "MISSED");
  eng__buf_addf(&b, "| verification time | %s | - | - |\n",
                phases ? eng__fmt_duration(r->verify_ms, d1, sizeof d1) : "-");
  eng__buf_addf(&b, "| data loss (RPO) | %s | %s | %s |\n",
                r->rpo_ms >= 0 ? eng__fmt_duration(r->rpo_ms, d1, sizeof d1) : "unknown",
                rb->slo_rpo_ms >= 0 ? eng__fmt_duration(rb->slo_rpo_ms, d2, sizeof d2) : "-",
                rb->slo_rpo_ms < 0 ? "-" : r->rpo_met ? "met" : "MISSED");
  if (r->rpo_why) eng__buf_addf(&b, "\nRPO unknown because %s\n", r->rpo_why);
  eng__buf_adds(&b,
                "\nTotal RTO runs from the start of the run to the end of the "
                "step marked `recovered` (preparation + restore time). "
                "Verification runs from the end of that step to the end of "
                "the last step after it, and is not part of the RTO. Without "
                "a recovered step that ended ok, the RTO is the whole run.\n");
  eng__buf_adds(&b, "\n## Failures\n\n");
  any = false;
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step_state *st = &r->st[i];
    if (st->status == ENG__S_OK || st->status == ENG__S_SKIPPED || st->status == ENG__S_PENDING) continue;
    eng__buf_addf(&b, "- `%s` %s: %s\n", rb->steps[i].id, eng__status_name(st->status), st->error ? st->error : "");
    any = true;
  }
  if (!any) eng__buf_adds(&b, "- none\n");
  eng__buf_addf(&b, "\n## Audit\n\nAudit log `%s/audit.jsonl`, chain head `%s` (check with `engine audit verify`).\n",
                r->dir, r->audit ? eng__audit_head(r->audit) : "-");
  char *md = eng__buf_steal(&b);
  char *red = eng__redact(r->redact, md);
  free(md);
  return red;
}

static int write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
    fprintf(stderr, "engine: cannot write %s: %s\n", path, strerror(errno));
    return -1;
  }
  return 0;
}

int eng__report_write(eng__run *r) {
  json_t *rep = eng__report_json(r);
  char *xml = junit_xml(r);
  char *md = evidence_md(r);
  int rc = 0;
  if (r->dir) {
    char *p = eng__asprintf("%s/report.json", r->dir);
    rc |= write_json(p, rep);
    free(p);
    p = eng__asprintf("%s/junit.xml", r->dir);
    rc |= write_text(p, xml);
    free(p);
    p = eng__asprintf("%s/evidence.md", r->dir);
    rc |= write_text(p, md);
    free(p);
  }
  if (r->opts->report) rc |= write_json(r->opts->report, rep);
  if (r->opts->junit) rc |= write_text(r->opts->junit, xml);
  if (r->opts->evidence) rc |= write_text(r->opts->evidence, md);
  json_decref(rep);
  free(xml);
  free(md);
  return rc;
}
