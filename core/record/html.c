/* html.c - `engine report --html`: the run index as one self-contained
 * HTML page (inline CSS and SVG, no script, no external asset): per
 * runbook and lock, charts over time of RTO and RPO against their targets,
 * backup size, rows restored and duration, failed runs and regressions
 * marked, the table of runs and the latest evidence. */
#include "record/record.h"

#include <stdlib.h>
#include <string.h>

/* Chart geometry in SVG user units: wide enough for a year of weekly
 * drills to stay apart, short enough for five charts on a screen. */
#define CHART_W 640
#define CHART_H 150
#define CHART_PAD 36

static const char *text_of(const json_t *rec, const char *key) {
  const char *s = json_string_value(json_object_get(rec, key));
  return s ? s : "";
}

/* Whether rec missed a regression SLO on this figure. */
static bool regressed_on(const json_t *rec, const char *key) {
  size_t i;
  json_t *g;
  json_array_foreach(json_object_get(rec, "regressions"), i, g)
    if (!strcmp(text_of(g, "figure"), key)) return true;
  return false;
}

typedef struct chart {
  const char *key, *title, *unit, *target_key;
  double scale; /* the figure's unit -> shown unit */
} chart;

static const chart charts[] = {
    {"rto_ms", "RTO", "s", "rto_target_ms", 1e-3},
    {"rpo_ms", "RPO (age of the data restored)", "s", "rpo_target_ms", 1e-3},
    {"backup_bytes", "Backup size", "MB", NULL, 1e-6},
    {"rows", "Rows restored", "rows", NULL, 1},
    {"duration_ms", "Run duration", "s", NULL, 1e-3},
};

/* The chart of one figure over the group's runs (oldest first): a line
 * through the points, a dashed target, failed runs and regressions
 * marked. Nothing when no run measured it. */
static void chart_svg(eng__buf *b, const json_t *runs, const chart *c) {
  size_t shown = 0, i;
  double lo = 0, hi = 0, target = -1;
  json_t *r;
  json_array_foreach(runs, i, r) {
    const json_t *v = json_object_get(r, c->key);
    const json_t *t = c->target_key ? json_object_get(r, c->target_key) : NULL;
    if (json_is_integer(t)) target = (double)json_integer_value(t) * c->scale;
    if (!json_is_integer(v)) continue;
    double x = (double)json_integer_value(v) * c->scale;
    if (!shown || x > hi) hi = x;
    shown++;
  }
  if (!shown) return;
  if (target > hi) hi = target;
  if (hi <= lo) hi = lo + 1;
  hi *= 1.1;
  eng__buf_addf(b, "<figure><figcaption>%s (%s)</figcaption>\n<svg class=\"chart\" "
                "data-metric=\"%s\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
                "role=\"img\" xmlns=\"http://www.w3.org/2000/svg\">\n",
                c->title, c->unit, c->key, CHART_W, CHART_H, CHART_W, CHART_H);
  double w = CHART_W - 2 * CHART_PAD, hgt = CHART_H - 2 * CHART_PAD;
  eng__buf_addf(b, "<text x=\"2\" y=\"%d\" class=\"axis\">%.4g</text><text x=\"2\" "
                "y=\"%d\" class=\"axis\">0</text>\n", CHART_PAD, hi, CHART_H - CHART_PAD);
  eng__buf_addf(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"base\"/>\n",
                CHART_PAD, CHART_H - CHART_PAD, CHART_W - CHART_PAD, CHART_H - CHART_PAD);
  if (target >= 0)
    eng__buf_addf(b, "<line class=\"target\" x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\">"
                  "<title>target %.4g %s</title></line>\n", CHART_PAD, CHART_W - CHART_PAD,
                  CHART_H - CHART_PAD - target / hi * hgt, CHART_H - CHART_PAD - target / hi * hgt,
                  target, c->unit);
  eng__buf b_line = {0};
  size_t k = 0;
  json_array_foreach(runs, i, r) {
    const json_t *v = json_object_get(r, c->key);
    if (!json_is_integer(v)) continue;
    double val = (double)json_integer_value(v) * c->scale;
    double x = CHART_PAD + (shown > 1 ? w * (double)k / (double)(shown - 1) : w / 2);
    double y = CHART_H - CHART_PAD - val / hi * hgt;
    k++;
    eng__buf_addf(&b_line, "%s%.1f,%.1f", b_line.len ? " " : "", x, y);
    bool reg = regressed_on(r, c->key), bad = !eng__index_ok(r);
    eng__buf_addf(b, "<circle class=\"point%s%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"%d\"><title>",
                  bad ? " failed" : "", reg ? " regression" : "", x, y, reg ? 6 : 4);
    eng__buf_add_xml(b, text_of(r, "started_at"));
    eng__buf_addf(b, " run %s: %.4g %s (%s)%s</title></circle>\n", text_of(r, "run_id"),
                  val, c->unit, text_of(r, "outcome"), reg ? ", regression" : "");
  }
  eng__buf_addf(b, "<polyline class=\"line\" points=\"%s\"/>\n</svg></figure>\n",
                b_line.data ? b_line.data : "");
  eng__buf_free(&b_line);
}

/* A figure in a table cell ("-" when absent). */
static void cell_int(eng__buf *b, const json_t *rec, const char *key) {
  const json_t *v = json_object_get(rec, key);
  if (json_is_integer(v)) eng__buf_addf(b, "<td>%lld</td>", (long long)json_integer_value(v));
  else eng__buf_adds(b, "<td>-</td>");
}

/* The table of the group's runs, newest first. */
static void runs_table(eng__buf *b, const json_t *runs) {
  eng__buf_adds(b, "<table><thead><tr><th>started</th><th>run</th><th>outcome</th>"
                   "<th>duration ms</th><th>RTO ms</th><th>RPO ms</th><th>backup bytes</th>"
                   "<th>rows</th><th>failed checks</th><th>regressions</th></tr></thead><tbody>\n");
  for (size_t i = json_array_size(runs); i-- > 0;) {
    const json_t *r = json_array_get(runs, i);
    bool reg = json_array_size(json_object_get(r, "regressions")) > 0;
    eng__buf_addf(b, "<tr class=\"%s\"><td>", reg ? "regression" : eng__index_ok(r) ? "ok" : "failed");
    eng__buf_add_xml(b, text_of(r, "started_at"));
    eng__buf_adds(b, "</td><td>");
    eng__buf_add_xml(b, text_of(r, "run_id"));
    eng__buf_adds(b, "</td><td>");
    eng__buf_add_xml(b, text_of(r, "outcome"));
    eng__buf_adds(b, "</td>");
    static const char *const ints[] = {"duration_ms", "rto_ms", "rpo_ms", "backup_bytes",
                                       "rows", "checks_failed"};
    for (size_t k = 0; k < sizeof ints / sizeof *ints; k++) cell_int(b, r, ints[k]);
    eng__buf_adds(b, "<td>");
    size_t q;
    json_t *g;
    json_array_foreach(json_object_get(r, "regressions"), q, g) {
      eng__buf_addf(b, "%s%s %lld &rarr; %lld (run ", q ? "; " : "", text_of(g, "figure"),
                    (long long)json_integer_value(json_object_get(g, "previous")),
                    (long long)json_integer_value(json_object_get(g, "current")));
      eng__buf_add_xml(b, text_of(g, "previous_run"));
      eng__buf_adds(b, ")");
    }
    eng__buf_adds(b, "</td></tr>\n");
  }
  eng__buf_adds(b, "</tbody></table>\n");
}

static const char page_style[] =
    "body{font-family:sans-serif;margin:2em;color:#222;max-width:1100px}"
    "h2{border-bottom:1px solid #ccc;padding-bottom:.2em}"
    "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
    "td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}"
    "tr.failed td{background:#fde2e2}tr.regression td{background:#fff1c2}"
    "figure{display:inline-block;margin:.5em 1em .5em 0}"
    "figcaption{font-weight:bold;font-size:14px}"
    ".line{fill:none;stroke:#3465a4;stroke-width:1.5}"
    ".point{fill:#3465a4}.point.failed{fill:#cc0000}"
    ".point.regression{fill:#f5a623;stroke:#000;stroke-width:1.5}"
    ".target{stroke:#cc0000;stroke-dasharray:6 4}.base{stroke:#999}"
    ".axis{font-size:10px;fill:#666}pre{background:#f6f6f6;padding:1em;"
    "white-space:pre-wrap;font-size:12px}.legend span{margin-right:1.5em}";

/* One runbook and lock: its latest run, charts, runs and evidence. */
static void group_html(eng__buf *b, const json_t *runs, const char *evidence) {
  const json_t *last = json_array_get(runs, json_array_size(runs) - 1);
  eng__buf_adds(b, "<section class=\"group\"><h2>");
  eng__buf_add_xml(b, text_of(last, "runbook"));
  const char *lock = text_of(last, "lock");
  if (lock[0]) {
    eng__buf_adds(b, " &middot; lock ");
    eng__buf_add_xml(b, lock);
  }
  eng__buf_addf(b, "</h2>\n<p>%zu runs; the latest started ", json_array_size(runs));
  eng__buf_add_xml(b, text_of(last, "started_at"));
  eng__buf_adds(b, " and ended <strong>");
  eng__buf_add_xml(b, text_of(last, "outcome"));
  eng__buf_adds(b, "</strong>.</p>\n");
  for (size_t k = 0; k < sizeof charts / sizeof *charts; k++) chart_svg(b, runs, &charts[k]);
  runs_table(b, runs);
  if (evidence) {
    eng__buf_adds(b, "<details open><summary>Latest evidence</summary><pre>");
    eng__buf_add_xml(b, evidence);
    eng__buf_adds(b, "</pre></details>\n");
  }
  eng__buf_adds(b, "</section>\n");
}

char *eng__report_html(const json_t *groups, const json_t *evidence,
                       const char *generated_at) {
  eng__buf b = {0};
  eng__buf_addf(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<title>Restore drills</title><style>%s</style></head><body>\n"
                "<h1>Restore drills</h1>\n<p>Generated ", page_style);
  eng__buf_add_xml(&b, generated_at);
  eng__buf_adds(&b, ". Each runbook and lock: its figures over time (oldest left), "
                    "targets dashed, then its runs, newest first.</p>\n<p class=\"legend\">"
                    "<span>&#9679; ok</span><span style=\"color:#cc0000\">&#9679; failed"
                    "</span><span style=\"color:#f5a623\">&#9679; regression</span></p>\n");
  if (!json_object_size(groups)) eng__buf_adds(&b, "<p>No runs recorded.</p>\n");
  const char *key;
  json_t *runs;
  json_object_foreach((json_t *)groups, key, runs)
    group_html(&b, runs, json_string_value(json_object_get(evidence, key)));
  eng__buf_adds(&b, "</body></html>\n");
  return eng__buf_steal(&b);
}
