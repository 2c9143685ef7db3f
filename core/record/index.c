/* index.c - the run index's records: one JSON object per run, built from
 * the run's report.json, read back from index segments (files of a shared
 * store: untrusted, every field checked), merged by run id, ordered and
 * compared with the previous successful run of the same runbook and lock.
 * Where the segments live and how they are appended is state/index.c. */
#include "record/record.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The fields a record may carry and their JSON types; anything else in a
 * record (written by a newer engine) is dropped on reading. */
typedef struct field {
  const char *name;
  json_type type;
} field;

static const field fields[] = {
    {"run_id", JSON_STRING},        {"runbook", JSON_STRING},
    {"file", JSON_STRING},          {"lock", JSON_STRING},
    {"host", JSON_STRING},          {"started_at", JSON_STRING},
    {"ended_at", JSON_STRING},      {"outcome", JSON_STRING},
    {"exit_code", JSON_INTEGER},    {"duration_ms", JSON_INTEGER},
    {"rto_ms", JSON_INTEGER},       {"rpo_ms", JSON_INTEGER},
    {"restore_ms", JSON_INTEGER},   {"rto_target_ms", JSON_INTEGER},
    {"rpo_target_ms", JSON_INTEGER}, {"backup", JSON_STRING},
    {"backup_bytes", JSON_INTEGER}, {"rows", JSON_INTEGER},
    {"tables", JSON_INTEGER},       {"checks_failed", JSON_INTEGER},
    {"checks_warned", JSON_INTEGER}, {"kept", JSON_INTEGER},
    {"leftovers", JSON_INTEGER},    {"steps", JSON_OBJECT},
    {"regressions", JSON_ARRAY},    {"evidence", JSON_STRING},
};

static const field *field_of(const char *name) {
  for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
    if (!strcmp(fields[i].name, name)) return &fields[i];
  return NULL;
}

bool eng__index_id_ok(const char *id) {
  size_t n = strlen(id);
  if (!n || n > ENG__INDEX_ID_MAX) return false;
  for (const char *p = id; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
          (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '_'))
      return false;
  return true;
}

/* Where each figure of a record is in report.json: its section (NULL:
 * the top) and name there. */
static const struct {
  const char *field, *section, *key;
} from_report[] = {
    {"run_id", NULL, "run_id"},         {"runbook", NULL, "name"},
    {"file", NULL, "runbook"},          {"started_at", NULL, "started_at"},
    {"ended_at", NULL, "ended_at"},     {"outcome", NULL, "status"},
    {"exit_code", NULL, "exit_code"},   {"duration_ms", NULL, "duration_ms"},
    {"regressions", NULL, "regressions"}, {"rto_ms", "slo", "rto_ms"},
    {"rpo_ms", "slo", "rpo_ms"},        {"restore_ms", "slo", "restore_ms"},
    {"rto_target_ms", "slo", "rto_target_ms"},
    {"rpo_target_ms", "slo", "rpo_target_ms"},
    {"backup", "figures", "backup"},    {"backup_bytes", "figures", "backup_bytes"},
    {"rows", "figures", "rows"},        {"tables", "figures", "tables"},
};

/* Per step: its duration; and the checks that failed or warned. */
static void record_steps(json_t *rec, const json_t *report) {
  json_t *steps = json_object();
  json_int_t failed = 0, warned = 0;
  const char *id;
  json_t *s;
  json_object_foreach((json_t *)json_object_get(report, "steps"), id, s) {
    const json_t *d = json_object_get(s, "duration_ms");
    if (json_is_integer(d)) json_object_set_new(steps, id, json_integer(json_integer_value(d)));
    const char *check = json_string_value(json_object_get(s, "check"));
    const char *status = json_string_value(json_object_get(s, "status"));
    if (check && !strcmp(check, "failed")) failed++;
    else if ((check && !strcmp(check, "warn")) || (status && !strcmp(status, "warn")))
      warned++;
  }
  json_object_set_new(rec, "steps", steps);
  json_object_set_new(rec, "checks_failed", json_integer(failed));
  json_object_set_new(rec, "checks_warned", json_integer(warned));
}

json_t *eng__index_record(const json_t *report) {
  const char *id = json_string_value(json_object_get(report, "run_id"));
  if (!id || !eng__index_id_ok(id)) return NULL;
  json_t *rec = json_object();
  for (size_t i = 0; i < sizeof from_report / sizeof *from_report; i++) {
    const json_t *sec = from_report[i].section
                            ? json_object_get(report, from_report[i].section)
                            : report;
    json_t *v = json_object_get(sec, from_report[i].key);
    /* a figure not measured (null) or of another type is left out */
    if (v && json_typeof(v) == field_of(from_report[i].field)->type)
      json_object_set(rec, from_report[i].field, v);
  }
  record_steps(rec, report);
  return rec;
}

/* One record read from a segment, checked in place: fields unknown to
 * this engine are dropped, a known one of another type refuses the
 * record (the reason in why). Returns in, or NULL. */
static json_t *checked(json_t *in, char *why, size_t n) {
  if (!json_is_object(in)) {
    snprintf(why, n, "not a JSON object");
    return NULL;
  }
  const char *id = json_string_value(json_object_get(in, "run_id"));
  if (!id || !eng__index_id_ok(id)) {
    snprintf(why, n, "'run_id' is missing or not a run id");
    return NULL;
  }
  const char *k;
  json_t *v;
  void *tmp;
  json_object_foreach_safe(in, tmp, k, v) {
    const field *f = field_of(k);
    if (!f) {
      json_object_del(in, k);
      continue;
    }
    if (json_typeof(v) != f->type) {
      snprintf(why, n, "'%s' is not of its type", k);
      return NULL;
    }
  }
  json_object_foreach(json_object_get(in, "steps"), k, v) {
    if (!json_is_integer(v)) {
      snprintf(why, n, "'steps.%s' is not a number of milliseconds", k);
      return NULL;
    }
  }
  return in;
}

/* A later record of a run (its end, a cleanup's counts) updates the
 * fields it has. */
static void merge(json_t *runs, json_t *rec) {
  const char *id = json_string_value(json_object_get(rec, "run_id"));
  json_t *have = json_object_get(runs, id);
  if (have) json_object_update(have, rec);
  else json_object_set(runs, id, rec);
}

size_t eng__index_parse(const char *data, size_t len, const char *name,
                        json_t *runs, FILE *warn) {
  size_t bad = 0, line = 0;
  const char *p = data, *end = data + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    /* a line without its newline was not written whole */
    if (!nl) break;
    line++;
    json_error_t je;
    json_t *in = nl > p ? json_loadb(p, (size_t)(nl - p), 0, &je) : NULL;
    char why[160] = "not JSON";
    json_t *rec = in ? checked(in, why, sizeof why) : NULL;
    if (rec) merge(runs, rec);
    else if (nl > p) {
      bad++;
      if (warn)
        fprintf(warn, "engine: %s line %zu: %s; the record is skipped (remove "
                      "the line, or write the run's record again)\n",
                name, line, why);
    }
    json_decref(in);
    p = nl + 1;
  }
  return bad;
}

static int newest_first(const void *a, const void *b) {
  const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
  const char *sx = json_string_value(json_object_get(x, "started_at"));
  const char *sy = json_string_value(json_object_get(y, "started_at"));
  int c = strcmp(sy ? sy : "", sx ? sx : "");
  if (c) return c;
  return strcmp(json_string_value(json_object_get(y, "run_id")),
                json_string_value(json_object_get(x, "run_id")));
}

json_t *eng__index_sorted(const json_t *runs) {
  size_t n = json_object_size(runs), i = 0;
  json_t **v = eng__xcalloc(n ? n : 1, sizeof *v);
  const char *k;
  json_t *r;
  json_object_foreach((json_t *)runs, k, r) v[i++] = r;
  qsort(v, n, sizeof *v, newest_first);
  json_t *out = json_array();
  for (i = 0; i < n; i++) json_array_append(out, v[i]);
  free(v);
  return out;
}

static bool same_str(const json_t *a, const json_t *b, const char *key) {
  const char *x = json_string_value(json_object_get(a, key));
  const char *y = json_string_value(json_object_get(b, key));
  return !strcmp(x ? x : "", y ? y : "");
}

bool eng__index_same_group(const json_t *a, const json_t *b) {
  return same_str(a, b, "runbook") && same_str(a, b, "lock");
}

bool eng__index_ok(const json_t *rec) {
  const char *o = json_string_value(json_object_get(rec, "outcome"));
  return o && !strcmp(o, "ok");
}

const json_t *eng__index_previous_ok(const json_t *sorted, const json_t *rec) {
  const char *start = json_string_value(json_object_get(rec, "started_at"));
  const char *id = json_string_value(json_object_get(rec, "run_id"));
  size_t i;
  json_t *o;
  json_array_foreach(sorted, i, o) {
    const char *s = json_string_value(json_object_get(o, "started_at"));
    if (o == rec || !eng__index_ok(o) || !eng__index_same_group(o, rec) ||
        same_str(o, rec, "run_id"))
      continue;
    if (!s || !start) continue;
    int c = strcmp(s, start);
    if (c < 0 || (c == 0 && strcmp(json_string_value(json_object_get(o, "run_id")), id) < 0))
      return o;
  }
  return NULL;
}

/* A regression found: {figure, previous_run, previous, current, limit}. */
static json_t *regression(const char *figure, const json_t *prev,
                          json_int_t was, json_int_t now, const char *limit) {
  return json_pack("{s:s, s:s, s:I, s:I, s:s}", "figure", figure,
                   "previous_run", json_string_value(json_object_get(prev, "run_id")),
                   "previous", was, "current", now, "limit", limit);
}

/* A figure of both runs, when both measured it (and it was > 0 before). */
static bool both(const json_t *rec, const json_t *prev, const char *key,
                 json_int_t *now, json_int_t *was) {
  const json_t *a = json_object_get(rec, key), *b = json_object_get(prev, key);
  if (!json_is_integer(a) || !json_is_integer(b)) return false;
  *now = json_integer_value(a);
  *was = json_integer_value(b);
  return *was > 0;
}

char *eng__index_regression_text(const json_t *g) {
  const char *f = json_string_value(json_object_get(g, "figure"));
  const char *name = !f ? "?" : !strcmp(f, "rows") ? "restored rows"
                     : !strcmp(f, "backup_bytes") ? "backup size (bytes)"
                                                  : "RTO (ms)";
  return eng__asprintf("%s fell from %lld in run %s to %lld (the SLO allows %s)", name,
                       (long long)json_integer_value(json_object_get(g, "previous")),
                       json_string_value(json_object_get(g, "previous_run")),
                       (long long)json_integer_value(json_object_get(g, "current")),
                       json_string_value(json_object_get(g, "limit")));
}

json_t *eng__index_regressions(const json_t *rec, const json_t *prev,
                               const eng__index_limits *lim) {
  json_t *out = json_array();
  json_int_t now, was;
  char text[64];
  if (lim->rows_drop_pct >= 0 && both(rec, prev, "rows", &now, &was) &&
      (double)(was - now) * 100.0 > lim->rows_drop_pct * (double)was) {
    snprintf(text, sizeof text, "a drop of at most %g%%", lim->rows_drop_pct);
    json_array_append_new(out, regression("rows", prev, was, now, text));
  }
  if (lim->backup_drop_pct >= 0 && both(rec, prev, "backup_bytes", &now, &was) &&
      (double)(was - now) * 100.0 > lim->backup_drop_pct * (double)was) {
    snprintf(text, sizeof text, "a drop of at most %g%%", lim->backup_drop_pct);
    json_array_append_new(out, regression("backup_bytes", prev, was, now, text));
  }
  if (lim->rto_growth >= 0 && both(rec, prev, "rto_ms", &now, &was) &&
      (double)now > lim->rto_growth * (double)was) {
    snprintf(text, sizeof text, "at most %g times the previous", lim->rto_growth);
    json_array_append_new(out, regression("rto_ms", prev, was, now, text));
  }
  return out;
}
