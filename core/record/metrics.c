/* metrics.c - the run index of one runbook and lock as Prometheus metrics
 * (the text exposition format: node_exporter's textfile collector reads
 * it, a Pushgateway accepts it); names and what they mean are listed in
 * docs/monitoring.md. */
#include "record/record.h"

#include <stdlib.h>
#include <string.h>

/* Metric name prefix: the engine's name, as exporters name theirs. */
#define ENG__METRICS_PREFIX "engine_"

/* A label value: backslash, double quote and newline escaped. */
static void label_value(eng__buf *b, const char *s) {
  for (; *s; s++) {
    if (*s == '\\') eng__buf_adds(b, "\\\\");
    else if (*s == '"') eng__buf_adds(b, "\\\"");
    else if (*s == '\n') eng__buf_adds(b, "\\n");
    else eng__buf_add(b, s, 1);
  }
}

typedef struct metrics {
  eng__buf b;
  const char *runbook, *lock;
  bool group_labels; /* runbook and lock as labels (not for a push) */
} metrics;

static void head(metrics *m, const char *name, const char *type,
                 const char *help) {
  eng__buf_addf(&m->b, "# HELP " ENG__METRICS_PREFIX "%s %s\n", name, help);
  eng__buf_addf(&m->b, "# TYPE " ENG__METRICS_PREFIX "%s %s\n", name, type);
}

/* One sample; extra: a label name and value, or NULL. */
static void sample(metrics *m, const char *name, const char *extra,
                   const char *value, double v) {
  eng__buf_addf(&m->b, ENG__METRICS_PREFIX "%s", name);
  const char *sep = "{";
  if (m->group_labels) {
    eng__buf_adds(&m->b, "{runbook=\"");
    label_value(&m->b, m->runbook);
    eng__buf_adds(&m->b, "\",lock=\"");
    label_value(&m->b, m->lock);
    eng__buf_adds(&m->b, "\"");
    sep = ",";
  }
  if (extra) {
    eng__buf_addf(&m->b, "%s%s=\"", sep, extra);
    label_value(&m->b, value);
    eng__buf_adds(&m->b, "\"");
    sep = ",";
  }
  if (sep[0] == ',') eng__buf_adds(&m->b, "}");
  eng__buf_addf(&m->b, " %.15g\n", v);
}

static double seconds_at(const json_t *rec, const char *key) {
  int64_t ms = 0;
  char why[80];
  const char *s = json_string_value(json_object_get(rec, key));
  if (!s || eng__parse_timestamp(s, &ms, why, sizeof why) != 0) return 0;
  return (double)ms / 1000.0;
}

/* A gauge of the last run's figure key (ms / 1000 with scale), left out
 * when the last run did not measure it. */
static void figure(metrics *m, const json_t *last, const char *key,
                   const char *name, double scale, const char *help) {
  const json_t *v = json_object_get(last, key);
  if (!json_is_integer(v)) return;
  head(m, name, "gauge", help);
  sample(m, name, NULL, NULL, (double)json_integer_value(v) * scale);
}

/* Runs by result, and each step's duration in the last run. */
static void counts_and_steps(metrics *m, const json_t *group,
                             const json_t *last) {
  static const char *const results[] = {"ok", "failed", "refused", "slo_missed",
                                        "interrupted", "running"};
  head(m, "runs_total", "counter", "Runs of the runbook under the lock, by result (running: started and not ended).");
  for (size_t k = 0; k < sizeof results / sizeof *results; k++) {
    size_t n = 0, i;
    json_t *r;
    json_array_foreach(group, i, r) {
      const char *o = json_string_value(json_object_get(r, "outcome"));
      n += o && !strcmp(o, results[k]);
    }
    sample(m, "runs_total", "result", results[k], (double)n);
  }
  const json_t *steps = json_object_get(last, "steps");
  if (!json_object_size(steps)) return;
  head(m, "step_duration_seconds", "gauge", "How long each step of the last run took.");
  const char *id;
  json_t *v;
  json_object_foreach((json_t *)steps, id, v)
    sample(m, "step_duration_seconds", "step", id, (double)json_integer_value(v) / 1000.0);
}

char *eng__metrics_text(const json_t *sorted, const char *runbook,
                        const char *lock, bool group_labels) {
  metrics m = {{0}, runbook, lock ? lock : "", group_labels};
  json_t *group = json_array();
  const json_t *last = NULL, *ok = NULL;
  size_t i;
  json_t *r;
  json_array_foreach(sorted, i, r) {
    const char *rb = json_string_value(json_object_get(r, "runbook"));
    const char *l = json_string_value(json_object_get(r, "lock"));
    if (!rb || strcmp(rb, runbook) || strcmp(l ? l : "", m.lock)) continue;
    json_array_append(group, r);
    const char *o = json_string_value(json_object_get(r, "outcome"));
    if (!last && o && strcmp(o, "running")) last = r;
    if (!ok && eng__index_ok(r)) ok = r;
  }
  head(&m, "last_success_timestamp_seconds", "gauge", "When the last successful run started (Unix time; 0: none succeeded).");
  sample(&m, "last_success_timestamp_seconds", NULL, NULL, ok ? seconds_at(ok, "started_at") : 0);
  if (last) {
    head(&m, "last_run_timestamp_seconds", "gauge", "When the last run that ended started (Unix time).");
    sample(&m, "last_run_timestamp_seconds", NULL, NULL, seconds_at(last, "started_at"));
    head(&m, "last_run_success", "gauge", "1 when the last run that ended succeeded, else 0.");
    sample(&m, "last_run_success", NULL, NULL, eng__index_ok(last) ? 1 : 0);
    figure(&m, last, "duration_ms", "last_run_duration_seconds", 1e-3, "How long the last run took.");
    figure(&m, last, "rto_ms", "rto_seconds", 1e-3, "The last run's total RTO (preparation and restore).");
    figure(&m, last, "rto_target_ms", "rto_target_seconds", 1e-3, "The runbook's RTO target.");
    figure(&m, last, "rpo_ms", "rpo_seconds", 1e-3, "The age of the data the last run restored.");
    figure(&m, last, "rpo_target_ms", "rpo_target_seconds", 1e-3, "The runbook's RPO target.");
    figure(&m, last, "backup_bytes", "backup_size_bytes", 1, "The size of the backup the last run restored.");
    figure(&m, last, "rows", "restored_rows", 1, "Rows the last run found restored.");
  }
  counts_and_steps(&m, group, last);
  json_decref(group);
  return eng__buf_steal(&m.b);
}
