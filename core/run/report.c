/* report.c - the machine-readable run report (JSON), written into the run
 * directory and to --report. */
#include "run/run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A figure in JSON: null when it was not measured (-1). */
static json_t *ms_or_null(int64_t ms) { return ms >= 0 ? json_integer(ms) : json_null(); }

/* Whether the run met its SLO: null without targets; false when a target
 * was missed or its figure could not be measured. */
static json_t *slo_verdict(const eng__run *r) {
  const eng__runbook *rb = r->rb;
  if (rb->slo_rto_ms < 0 && rb->slo_rpo_ms < 0) return json_null();
  return json_boolean(r->rto_met && r->rpo_met);
}

/* The SLO figures into slo: RTO and RPO (null and the reason when not
 * measured), whether each target was met (null: not measured) and the
 * verdict. */
static void slo_figures(const eng__run *r, json_t *slo) {
  json_object_set_new(slo, "rto_ms", ms_or_null(r->rto_ms));
  json_object_set_new(slo, "rto_met", r->rto_ms >= 0 ? json_boolean(r->rto_met) : json_null());
  if (r->rto_ms < 0 && r->rto_why) json_object_set_new(slo, "rto_error", json_string(r->rto_why));
  json_object_set_new(slo, "rpo_ms", ms_or_null(r->rpo_ms));
  json_object_set_new(slo, "rpo_met", r->rpo_ms >= 0 ? json_boolean(r->rpo_met) : json_null());
  if (r->rpo_ms < 0 && r->rpo_why) json_object_set_new(slo, "rpo_error", json_string(r->rpo_why));
  json_object_set_new(slo, "met", slo_verdict(r));
}

/* A failure that the runbook let the run go on after. */
static bool continued(const eng__run *r, size_t i) {
  eng__status s = r->st[i].status;
  return (s == ENG__S_FAILED || s == ENG__S_TIMED_OUT) && r->rb->steps[i].continue_on_error;
}

/* How a step ended, as people read it: its status, or "failed
 * (continued)" for a failure continue_on_error let pass. */
static const char *status_text(const eng__run *r, size_t i) {
  if (!continued(r, i)) return eng__status_name(r->st[i].status);
  return r->st[i].status == ENG__S_TIMED_OUT ? "timed_out (continued)" : "failed (continued)";
}

static const char *check_text(const eng__step_state *st) {
  return !st->check_ran ? "not run" : !st->check_ok ? "failed"
         : st->check_warned ? "warn" : "passed";
}

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

/* One step's (or item's) result as report.json shows it. */
static json_t *state_json(const eng__run *r, const eng__step *s,
                          const eng__step_state *st, bool cont) {
  char t1[40], t2[40];
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
  if (st->status == ENG__S_WARN && st->warning)
    json_object_set_new(o, "warning", json_string(st->warning));
  if (cont) json_object_set_new(o, "continued", json_true());
  if (st->summary) json_object_set_new(o, "summary", json_string(st->summary));
  if (s->check_ref >= 0 && st->check_ran)
    json_object_set_new(o, "check", json_string(check_text(st)));
  (void)r;
  return o;
}

/* A for_each step's items, in order: id, label, each, and their results. */
static json_t *items_json(const eng__run *r, const eng__step *s,
                          const eng__fan *f) {
  json_t *items = json_array();
  for (size_t k = 0; k < f->n; k++) {
    json_t *o = state_json(r, s, &f->items[k].st, false);
    json_object_del(o, "finally");
    json_object_set_new(o, "id", json_string(f->items[k].id));
    json_object_set_new(o, "item", json_string(f->items[k].label));
    json_object_set(o, "each", f->items[k].each);
    json_array_append_new(items, o);
  }
  return items;
}

static json_t *figures(eng__run *r);

json_t *eng__report_json(eng__run *r) {
  eng__runbook *rb = r->rb;
  char t1[40], t2[40];
  json_t *steps = json_object();
  json_t *order = json_array();
  json_t *counts = json_object();
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step *s = &rb->steps[i];
    eng__step_state *st = &r->st[i];
    json_t *o = state_json(r, s, st, continued(r, i));
    if (st->fan) json_object_set_new(o, "items", items_json(r, s, st->fan));
    json_object_set_new(steps, s->id, o);
    json_array_append_new(order, json_string(s->id));
    json_object_set_new(counts, eng__status_name(st->status),
                        json_integer(json_integer_value(json_object_get(
                                         counts, eng__status_name(st->status))) + 1));
  }
  json_t *slo = json_object();
  if (rb->slo_rto_ms >= 0 || rb->slo_rpo_ms >= 0) {
    slo_figures(r, slo);
    json_object_set_new(slo, "rto_target_ms", rb->slo_rto_ms >= 0 ? json_integer(rb->slo_rto_ms) : json_null());
    json_object_set_new(slo, "rpo_target_ms", rb->slo_rpo_ms >= 0 ? json_integer(rb->slo_rpo_ms) : json_null());
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
  json_object_set_new(rep, "counts", counts);
  json_object_set_new(rep, "drill", json_boolean(r->drill));
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
  json_object_set_new(rep, "figures", figures(r));
  if (r->regressions) json_object_set(rep, "regressions", r->regressions);
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

static void junit_open(eng__buf *b, const char *suite, const char *cls,
                       const char *name, double secs) {
  eng__buf_adds(b, "    <testcase classname=\"");
  eng__buf_add_xml(b, suite);
  eng__buf_adds(b, cls);
  eng__buf_adds(b, "\" name=\"");
  eng__buf_add_xml(b, name);
  eng__buf_addf(b, "\" time=\"%.3f\">", secs);
}

static void junit_out(eng__buf *b, const char *prefix, const char *text) {
  eng__buf_adds(b, "<system-out>");
  eng__buf_add_xml(b, prefix);
  eng__buf_add_xml(b, text);
  eng__buf_adds(b, "</system-out>");
}

/* The SLO as testcases when the runbook sets targets: one per target,
 * failed when missed or not measured. */
static void junit_slo(eng__run *r, eng__buf *cases, int *tests, int *failures) {
  eng__runbook *rb = r->rb;
  char d1[32], d2[32];
  for (int k = 0; k < 2; k++) {
    int64_t target = k == 0 ? rb->slo_rto_ms : rb->slo_rpo_ms;
    int64_t v = k == 0 ? r->rto_ms : r->rpo_ms;
    bool met = k == 0 ? r->rto_met : r->rpo_met;
    const char *why = k == 0 ? r->rto_why : r->rpo_why;
    const char *what = k == 0 ? "RTO" : "RPO";
    if (target < 0) continue;
    (*tests)++;
    junit_open(cases, rb->name, ".slo", k == 0 ? "rto" : "rpo", 0);
    char *line = v >= 0 ? eng__asprintf("%s %s (target %s): %s", what,
                                        eng__fmt_duration(v, d1, sizeof d1),
                                        eng__fmt_duration(target, d2, sizeof d2),
                                        met ? "met" : "MISSED")
                        : eng__asprintf("%s %s (target %s): not met, because %s", what,
                                        k == 0 ? "not measured" : "unknown",
                                        eng__fmt_duration(target, d2, sizeof d2),
                                        why ? why : "it could not be measured");
    if (met) {
      junit_out(cases, "", line);
    } else {
      (*failures)++;
      eng__buf_adds(cases, "<failure type=\"slo\" message=\"");
      eng__buf_add_xml(cases, line);
      eng__buf_adds(cases, "\"/>");
    }
    free(line);
    eng__buf_adds(cases, "</testcase>\n");
  }
  size_t i;
  json_t *g;
  json_array_foreach(r->regressions, i, g) {
    (*tests)++;
    (*failures)++;
    const char *figure = json_string_value(json_object_get(g, "figure"));
    junit_open(cases, rb->name, ".slo", figure, 0);
    char *line = eng__index_regression_text(g);
    eng__buf_adds(cases, "<failure type=\"slo\" message=\"");
    eng__buf_add_xml(cases, line);
    eng__buf_adds(cases, "\"/></testcase>\n");
    free(line);
  }
}

typedef struct junit_counts {
  int tests, failures, skipped;
} junit_counts;

/* The testcase of a step, or of one item of a for_each step (id names
 * it), and the testcase of its check. */
static void junit_case(eng__buf *cases, const eng__run *r, const eng__step *s,
                       const eng__step_state *st, const char *id, bool cont,
                       const char *shown, junit_counts *n) {
  double secs = st->started_ms ? (double)(st->ended_ms - st->started_ms) / 1000.0 : 0;
  n->tests++;
  junit_open(cases, r->rb->name, s->is_finally ? ".finally" : ".steps", id, secs);
  if (st->status == ENG__S_SKIPPED || st->status == ENG__S_PENDING) {
    n->skipped++;
    eng__buf_adds(cases, "<skipped/>");
  } else if (st->status == ENG__S_WARN) {
    /* it worked: a passing testcase that says what crossed a threshold */
    junit_out(cases, "warning: ", st->warning ? st->warning : "");
  } else if (cont) {
    /* continue_on_error: not a failure of the run */
    char *m = eng__asprintf("%s: %s", shown, st->error ? st->error : "");
    junit_out(cases, "", m);
    free(m);
  } else if (st->status != ENG__S_OK &&
             /* a failed check is counted once, in its testcase below */
             !(st->status == ENG__S_FAILED && st->check_ran && !st->check_ok)) {
    n->failures++;
    eng__buf_addf(cases, "<failure type=\"%s\" message=\"", eng__status_name(st->status));
    eng__buf_add_xml(cases, st->error ? st->error : eng__status_name(st->status));
    eng__buf_adds(cases, "\">");
    eng__buf_add_xml(cases, st->error ? st->error : "");
    eng__buf_adds(cases, "</failure>");
  }
  eng__buf_adds(cases, "</testcase>\n");
  if (s->check_ref < 0) return;
  n->tests++;
  char *name = eng__asprintf("%s check", id);
  junit_open(cases, r->rb->name, ".checks", name, 0);
  free(name);
  if (!st->check_ran) {
    n->skipped++;
    eng__buf_adds(cases, "<skipped/>");
  } else if (!st->check_ok && !cont) {
    n->failures++;
    eng__buf_adds(cases, "<failure type=\"check\" message=\"");
    eng__buf_add_xml(cases, st->check_error ? st->check_error : "check failed");
    eng__buf_adds(cases, "\"/>");
  } else if (!st->check_ok) {
    junit_out(cases, "failed (continued): ", st->check_error ? st->check_error : "");
  } else if (st->check_warned) {
    junit_out(cases, "warning: ", st->warning ? st->warning : "");
  }
  eng__buf_adds(cases, "</testcase>\n");
}

/* A for_each step that ran is one testcase per item; one that did not
 * (skipped, refused before its list was known) is one testcase. */
static char *junit_xml(eng__run *r) {
  eng__runbook *rb = r->rb;
  eng__buf cases = {0};
  junit_counts n = {0, 0, 0};
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step *s = &rb->steps[i];
    eng__step_state *st = &r->st[i];
    bool cont = continued(r, i);
    if (!st->fan || !st->fan->n) {
      junit_case(&cases, r, s, st, s->id, cont, status_text(r, i), &n);
      continue;
    }
    for (size_t k = 0; k < st->fan->n; k++) {
      const eng__step_state *it = &st->fan->items[k].st;
      bool icont = s->continue_on_error &&
                   (it->status == ENG__S_FAILED || it->status == ENG__S_TIMED_OUT);
      junit_case(&cases, r, s, it, st->fan->items[k].id, icont,
                 icont ? "failed (continued)" : eng__status_name(it->status), &n);
    }
  }
  int tests = n.tests, failures = n.failures, skipped = n.skipped;
  junit_slo(r, &cases, &tests, &failures);
  char t[40];
  eng__buf b = {0};
  eng__buf_adds(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"");
  eng__buf_add_xml(&b, rb->name);
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
 * outputs describe a backup (sha256, file or url, bytes). A local copy
 * (a download: outputs `file` and the `url` it came from) is named by its
 * origin, the copy under it; the step whose `picked` output chose the
 * origin (s3.list) is named too. */
typedef struct backup_info {
  const char *step, *name, *sha256;
  const char *plain_sha256; /* an encrypted backup's decrypted bytes */
  const char *copy, *copy_step; /* the local copy the restore read, or NULL */
  const char *picked_by;        /* the step that chose it, or NULL */
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

/* The main step (other than `skip`) whose outputs made `name`: a backup
 * (or a snapshot); -1 when none did. */
static ssize_t producer(eng__run *r, const char *name, bool snap, size_t skip) {
  for (size_t k = 0; k < r->rb->n_main; k++) {
    const json_t *p = r->st[k].outputs;
    const char *n = snap ? snapshot_name(p) : backup_name(p);
    if (k == skip || (!snap && !backup_like(p)) || !n || strcmp(n, name)) continue;
    return (ssize_t)k;
  }
  return -1;
}

/* The step whose `picked` output chose `name` (s3.list pick: ...). */
static const char *picker(eng__run *r, const char *name) {
  for (size_t k = 0; k < r->rb->n_main; k++) {
    const json_t *p = json_object_get(r->st[k].outputs, "picked");
    const char *u = json_string_value(json_object_get(p, "url"));
    const char *id = json_string_value(json_object_get(p, "snapshot_id"));
    if ((u && !strcmp(u, name)) || (id && !strcmp(id, name))) return r->rb->steps[k].id;
  }
  return NULL;
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
    b->plain_sha256 = json_string_value(json_object_get(o, "plaintext_sha256"));
    b->bytes = json_integer_value(json_object_get(o, "bytes"));
    b->external = true;
    ssize_t k = producer(r, in, snap, i);
    if (k >= 0) {
      const json_t *p = r->st[k].outputs;
      b->step = r->rb->steps[k].id;
      b->external = false;
      if (!b->sha256) b->sha256 = json_string_value(json_object_get(p, "sha256"));
      if (!b->plain_sha256)
        b->plain_sha256 = json_string_value(json_object_get(p, "plaintext_sha256"));
      if (!b->bytes) b->bytes = json_integer_value(json_object_get(p, "bytes"));
      const char *origin = json_string_value(json_object_get(p, "url"));
      if (!snap && origin && strcmp(origin, in)) {
        /* a local copy: the backup is where it came from */
        b->copy = in;
        b->copy_step = b->step;
        b->name = origin;
        ssize_t m = producer(r, origin, false, (size_t)k); /* uploaded here? */
        b->external = m < 0;
        if (m >= 0) b->step = r->rb->steps[m].id;
      }
    }
    b->picked_by = picker(r, b->name);
    return true;
  }
  for (size_t i = 0; i < r->rb->n_main; i++) {
    const json_t *o = r->st[i].outputs;
    if (!backup_like(o) || is_restore(&r->rb->steps[i])) continue;
    b->step = r->rb->steps[i].id;
    b->name = backup_name(o);
    b->sha256 = json_string_value(json_object_get(o, "sha256"));
    b->plain_sha256 = json_string_value(json_object_get(o, "plaintext_sha256"));
    b->bytes = json_integer_value(json_object_get(o, "bytes"));
    return true;
  }
  return false;
}

/* The figures a drill is trended by (the run index): the backup it
 * restored and its size, and the rows and tables it found restored - the
 * first step whose outputs count rows (postgres.counts: total,
 * table_count), else the restore's table count. */
static json_t *figures(eng__run *r) {
  json_t *fig = json_object();
  backup_info bk;
  if (find_backup(r, &bk)) {
    if (bk.name) json_object_set_new(fig, "backup", json_string(bk.name));
    if (bk.bytes > 0) json_object_set_new(fig, "backup_bytes", json_integer(bk.bytes));
  }
  for (size_t i = 0; i < r->rb->n_main; i++) {
    const json_t *o = r->st[i].outputs;
    const json_t *total = json_object_get(o, "total"), *tc = json_object_get(o, "table_count");
    if (!json_is_integer(total) || !json_is_integer(tc)) continue;
    json_object_set_new(fig, "rows", json_integer(json_integer_value(total)));
    json_object_set_new(fig, "tables", json_integer(json_integer_value(tc)));
    break;
  }
  for (size_t i = 0; i < r->rb->n_main && !json_object_get(fig, "tables"); i++) {
    const json_t *t = json_object_get(r->st[i].outputs, "tables");
    if (is_restore(&r->rb->steps[i]) && json_is_integer(t))
      json_object_set_new(fig, "tables", json_integer(json_integer_value(t)));
  }
  eng__redact_json(r->redact, fig);
  return fig;
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
  if (r->slo_measured && (!r->rto_met || !r->rpo_met || r->regressions)) return "slo_missed";
  return "ok";
}

json_t *eng__run_state(eng__run *r, const char *self) {
  eng__runbook *rb = r->rb;
  char t[40];
  int64_t now = r->ended_ms ? r->ended_ms : eng__now_ms();
  json_t *steps = json_array(), *counts = json_object();
  json_t *failed = json_null();
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step_state *st = &r->st[i];
    /* the run as it ends: not the step asking (a notification), nor the
     * `finally` steps still to run after it */
    if ((self && !strcmp(self, rb->steps[i].id)) ||
        (rb->steps[i].is_finally && !eng__status_terminal(st->status)))
      continue;
    const char *status = eng__status_name(st->status);
    json_t *o = json_pack("{s:s, s:s, s:s, s:b}", "id", rb->steps[i].id,
                          "uses", rb->steps[i].uses ? rb->steps[i].uses : "",
                          "status", status, "finally", rb->steps[i].is_finally);
    if (st->started_ms && st->ended_ms)
      json_object_set_new(o, "duration_ms", json_integer(st->ended_ms - st->started_ms));
    if (st->error) json_object_set_new(o, "error", json_string(st->error));
    if (st->status == ENG__S_WARN && st->warning)
      json_object_set_new(o, "warning", json_string(st->warning));
    if (continued(r, i)) json_object_set_new(o, "continued", json_true());
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
    slo_figures(r, slo);
    slo_phases(r, slo);
  }
  json_object_set_new(slo, "rto_target_ms", rb->slo_rto_ms >= 0 ? json_integer(rb->slo_rto_ms) : json_null());
  json_object_set_new(slo, "rpo_target_ms", rb->slo_rpo_ms >= 0 ? json_integer(rb->slo_rpo_ms) : json_null());
  backup_info bk;
  json_t *backup = json_null();
  if (find_backup(r, &bk)) {
    backup = json_pack("{s:s, s:s, s:I, s:s?, s:b, s:s?, s:s?}", "step", bk.step,
                       "name", bk.name ? bk.name : "", "bytes", bk.bytes, "sha256",
                       bk.sha256, "external", bk.external, "local_copy", bk.copy,
                       "picked_by", bk.picked_by);
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
  json_object_set_new(state, "drill", json_boolean(r->drill));
  /* what `engine audit verify --head` checks the log against later */
  if (r->audit)
    json_object_set_new(state, "audit_head", json_string(eng__audit_head(r->audit)));
  eng__redact_json(r->redact, state);
  return state;
}

/* Text in a Markdown table cell: '|' escaped, on one line. */
static void md_cell(eng__buf *b, const char *text) {
  for (const char *c = text; *c; c++) {
    if (*c == '|') eng__buf_adds(b, "\\|");
    else if (*c == '\n') eng__buf_adds(b, " ");
    else eng__buf_add(b, c, 1);
  }
}

/* Evidence: the backup the run restored, and where it came from. */
static void evidence_backup(eng__run *r, eng__buf *b) {
  char d1[32];
  backup_info bk;
  eng__buf_adds(b, "## Backup chosen\n\n");
  if (find_backup(r, &bk)) {
    char picked[160] = "";
    if (bk.picked_by)
      snprintf(picked, sizeof picked, "picked by step `%s`; ", bk.picked_by);
    if (bk.external && bk.copy)
      eng__buf_addf(b, "- name: `%s` (external: not made by this run; %sdownloaded by step `%s`)\n",
                    bk.name ? bk.name : "?", picked, bk.copy_step);
    else if (bk.external)
      eng__buf_addf(b, "- name: `%s` (external: not made by this run; %srestored by step `%s`)\n",
                    bk.name ? bk.name : "?", picked, bk.step);
    else
      eng__buf_addf(b, "- name: `%s` (step `%s`)\n", bk.name ? bk.name : "?", bk.step);
    if (bk.copy)
      eng__buf_addf(b, "  - local copy: `%s` (step `%s`)\n", bk.copy, bk.copy_step);
    if (bk.bytes > 0 || bk.sha256)
      eng__buf_addf(b, "- size: %s\n", eng__fmt_bytes(bk.bytes, d1, sizeof d1));
    eng__buf_addf(b, "- checksum (SHA-256): `%s`\n", bk.sha256 ? bk.sha256 : "not checked");
    if (bk.plain_sha256)
      eng__buf_addf(b, "- encrypted with age; checksum of the decrypted bytes (SHA-256): `%s`\n",
                    bk.plain_sha256);
    if (r->rpo_ms >= 0) eng__buf_addf(b, "- age at restore: %s\n", eng__fmt_duration(r->rpo_ms, d1, sizeof d1));
  } else {
    eng__buf_adds(b, "- no step produced a backup with a checksum\n");
  }
}

/* Evidence: the restored targets. */
static void evidence_restore(eng__run *r, eng__buf *b) {
  eng__runbook *rb = r->rb;
  eng__buf_adds(b, "\n## Restore target\n\n");
  bool any = false;
  for (size_t i = 0; i < rb->n_main; i++)
    if (is_restore(&rb->steps[i])) {
      const json_t *o = r->st[i].outputs;
      const char *db = json_string_value(json_object_get(o, "database"));
      const char *inst = json_string_value(json_object_get(o, "instance"));
      const char *dir = json_string_value(json_object_get(o, "data_dir"));
      eng__buf_addf(b, "- step `%s`: %s `%s` (%s)\n", rb->steps[i].id,
                    db ? "database" : inst ? "instance" : dir ? "data directory" : "target",
                    db ? db : inst ? inst : dir ? dir : "-", eng__status_name(r->st[i].status));
      /* a point-in-time recovery: where the copy's replay stopped */
      const char *point = json_string_value(json_object_get(o, "replay_timestamp"));
      const char *lsn = json_string_value(json_object_get(o, "replay_lsn"));
      const char *stop = json_string_value(json_object_get(o, "recovery_stop"));
      if (point)
        eng__buf_addf(b, "  - recovery point (last replayed commit) `%s`, LSN `%s`%s%s\n",
                      point, lsn ? lsn : "-", stop ? ", recovery stopping " : "",
                      stop ? stop : "");
      any = true;
    }
  if (!any) eng__buf_adds(b, "- none\n");
}

/* Evidence: what retention steps pruned (their outputs: policy, pruned
 * [{url or path, rule}], locked), so a deletion is on the record. */
static void evidence_pruned(eng__run *r, eng__buf *b) {
  eng__runbook *rb = r->rb;
  bool any = false;
  for (size_t i = 0; i < rb->n_steps; i++) {
    const json_t *o = r->st[i].outputs;
    const char *policy = json_string_value(json_object_get(o, "policy"));
    const json_t *pruned = json_object_get(o, "pruned");
    if (!policy || !json_is_array(pruned)) continue;
    if (!any) eng__buf_adds(b, "\n## Backups pruned\n\n");
    any = true;
    bool dry = json_is_true(json_object_get(o, "dry_run"));
    eng__buf_addf(b, "- step `%s` (%s%s): %zu pruned, %zu kept, %zu locked\n",
                  rb->steps[i].id, policy, dry ? ", dry run: nothing deleted" : "",
                  json_array_size(pruned), json_array_size(json_object_get(o, "kept")),
                  json_array_size(json_object_get(o, "locked")));
    size_t k;
    const json_t *d;
    json_array_foreach(pruned, k, d) {
      const char *where = json_string_value(json_object_get(d, "url"));
      if (!where) where = json_string_value(json_object_get(d, "path"));
      eng__buf_addf(b, "  - `%s` (%s)\n", where ? where : "?",
                    json_string_value(json_object_get(d, "time")) ?
                    json_string_value(json_object_get(d, "time")) : "?");
    }
  }
}

/* Evidence: detection to verification, RTO and RPO against the targets. */
static void evidence_metrics(eng__run *r, eng__buf *b) {
  eng__runbook *rb = r->rb;
  char d1[32], d2[32];
  eng__buf_adds(b, "\n## Metrics\n\n| metric | value | target | result |\n|---|---|---|---|\n");
  /* a drill is started on purpose: nothing to detect or decide; an
   * incident's detection and decision happen before the run, unseen */
  eng__buf_addf(b, "| detection time | %s | - | - |\n",
                r->drill ? "0 (scheduled drill)" : "not measured (before the run)");
  eng__buf_addf(b, "| decision time | %s | - | - |\n",
                r->drill ? "0 (runbook)" : "not measured (before the run)");
  bool phases = r->slo_measured && r->restore_ms >= 0;
  eng__buf_addf(b, "| preparation time | %s | - | - |\n",
                phases ? eng__fmt_duration(r->prep_ms, d1, sizeof d1) : "-");
  eng__buf_addf(b, "| restore time | %s | - | - |\n",
                phases ? eng__fmt_duration(r->restore_ms, d1, sizeof d1) : "-");
  eng__buf_addf(b, "| total RTO | %s | %s | %s |\n",
                r->rto_ms >= 0 ? eng__fmt_duration(r->rto_ms, d1, sizeof d1) : "not measured",
                rb->slo_rto_ms >= 0 ? eng__fmt_duration(rb->slo_rto_ms, d2, sizeof d2) : "-",
                rb->slo_rto_ms < 0 ? "-" : r->rto_ms < 0 ? "not met" : r->rto_met ? "met" : "MISSED");
  eng__buf_addf(b, "| verification time | %s | - | - |\n",
                phases ? eng__fmt_duration(r->verify_ms, d1, sizeof d1) : "-");
  eng__buf_addf(b, "| data loss (RPO) | %s | %s | %s |\n",
                r->rpo_ms >= 0 ? eng__fmt_duration(r->rpo_ms, d1, sizeof d1) : "unknown",
                rb->slo_rpo_ms >= 0 ? eng__fmt_duration(rb->slo_rpo_ms, d2, sizeof d2) : "-",
                rb->slo_rpo_ms < 0 ? "-" : r->rpo_ms < 0 ? "not met" : r->rpo_met ? "met" : "MISSED");
  bool marked = false;
  for (size_t i = 0; i < rb->n_main; i++) marked |= rb->steps[i].recovered;
  if (r->rto_ms < 0 && r->rto_why && (rb->slo_rto_ms >= 0 || marked))
    eng__buf_addf(b, "\nRTO not measured because %s\n", r->rto_why);
  if (r->rpo_ms < 0 && r->rpo_why) eng__buf_addf(b, "\nRPO unknown because %s\n", r->rpo_why);
  size_t i;
  json_t *g;
  if (json_array_size(r->regressions))
    eng__buf_adds(b, "\nRegressions since the previous successful run (SLO MISSED):\n\n");
  json_array_foreach(r->regressions, i, g) {
    char *line = eng__index_regression_text(g);
    eng__buf_addf(b, "* %s\n", line);
    free(line);
  }
  eng__buf_adds(b,
                "\nTotal RTO runs from the start of the run to the end of the "
                "step marked `recovered` (preparation + restore time). "
                "Verification runs from the end of that step to the end of "
                "the last step after it, and is not part of the RTO. Without "
                "a recovered step that ended ok nothing was recovered: the "
                "RTO is not measured, and a target set for it is not met.\n");
}

/* Evidence: the steps that warned, and those that failed. */
static void evidence_outcomes(eng__run *r, eng__buf *b) {
  eng__runbook *rb = r->rb;
  bool any = false;
  eng__buf_adds(b, "\n## Warnings\n\n");
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step_state *st = &r->st[i];
    if (st->status != ENG__S_WARN) continue;
    /* a for_each step's warning lists its items' */
    eng__buf_addf(b, "- `%s` warn: %s\n", rb->steps[i].id, st->warning ? st->warning : "");
    any = true;
  }
  if (!any) eng__buf_adds(b, "- none\n");
  eng__buf_adds(b, "\n## Failures\n\n");
  any = false;
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step_state *st = &r->st[i];
    if (eng__status_succeeded(st->status) || st->status == ENG__S_SKIPPED ||
        st->status == ENG__S_PENDING)
      continue;
    eng__buf_addf(b, "- `%s` %s: %s\n", rb->steps[i].id, status_text(r, i), st->error ? st->error : "");
    any = true;
  }
  if (!any) eng__buf_adds(b, "- none\n");
}

static char *evidence_md(eng__run *r) {
  eng__runbook *rb = r->rb;
  char t[40];
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
  evidence_backup(r, &b);
  evidence_restore(r, &b);
  evidence_pruned(r, &b);
  eng__buf_adds(&b, "\n## Validation results\n\n| step | action | status | check | result |\n|---|---|---|---|---|\n");
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step *s = &rb->steps[i];
    eng__step_state *st = &r->st[i];
    const char *check = s->check_ref < 0 ? "-" : check_text(st);
    eng__buf_addf(&b, "| %s | %s | %s | %s | ", s->id, s->action ? s->action->full : "",
                  status_text(r, i), !strcmp(check, "failed") ? "FAILED" : check);
    md_cell(&b, st->summary ? st->summary : "-");
    eng__buf_adds(&b, " |\n");
    for (size_t k = 0; st->fan && k < st->fan->n; k++) {
      const eng__step_state *it = &st->fan->items[k].st;
      const char *ic = s->check_ref < 0 ? "-" : check_text(it);
      eng__buf_addf(&b, "| %s | %s | %s | %s | ", st->fan->items[k].id,
                    s->action ? s->action->full : "", eng__status_name(it->status),
                    !strcmp(ic, "failed") ? "FAILED" : ic);
      md_cell(&b, it->summary ? it->summary : it->error ? it->error : "-");
      eng__buf_adds(&b, " |\n");
    }
  }
  evidence_metrics(r, &b);
  evidence_outcomes(r, &b);
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
