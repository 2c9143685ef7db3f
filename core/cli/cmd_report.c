/* cmd_report.c - `engine report --html OUT.html`: the run index of the
 * state directory as one self-contained HTML page, per runbook and lock
 * (record/html.c), with each group's latest evidence. */
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char report_help[] =
    "usage: engine report --html OUT.html [--state-dir DIR|URL] [--runbook NAME]\n"
    "                     [--lock NAME] [--since 30d|TIMESTAMP]\n"
    "Writes one self-contained HTML page (no script, no external asset): per\n"
    "runbook and lock, charts over time of RTO and RPO against their targets,\n"
    "backup size, rows restored and duration, with failed runs and\n"
    "regressions marked, the table of runs and the latest evidence.\n";

/* The latest run's evidence.md of each group (key -> text). */
static json_t *latest_evidence(eng__state *st, const json_t *groups) {
  json_t *out = json_object();
  const char *key;
  json_t *runs;
  json_object_foreach((json_t *)groups, key, runs) {
    const json_t *last = json_array_get(runs, json_array_size(runs) - 1);
    const char *id = json_string_value(json_object_get(last, "run_id"));
    char *k = eng__asprintf("runs/%s/evidence.md", id), *data = NULL, err[256];
    size_t len = 0;
    if (eng__state_get(st, k, &data, &len, NULL, err, sizeof err) == ENG_OK)
      json_object_set_new(out, key, json_stringn_nocheck(data, len));
    free(data);
    free(k);
  }
  return out;
}

/* The wanted runs by "RUNBOOK\nLOCK", oldest first. */
static json_t *grouped(const cli *c, const json_t *sorted) {
  json_t *groups = json_object();
  for (size_t i = json_array_size(sorted); i-- > 0;) {
    json_t *r = json_array_get(sorted, i);
    const char *rb = json_string_value(json_object_get(r, "runbook"));
    const char *lock = json_string_value(json_object_get(r, "lock"));
    const char *o = json_string_value(json_object_get(r, "outcome"));
    if (!cli_history_wanted(c, r) || !o || !strcmp(o, "running")) continue;
    char *key = eng__asprintf("%s\n%s", rb ? rb : "", lock ? lock : "");
    json_t *g = json_object_get(groups, key);
    if (!g) json_object_set_new(groups, key, g = json_array());
    json_array_append(g, r);
    free(key);
  }
  return groups;
}

int cmd_report(cli *c) {
  if (c->help) return cli_print_help(report_help, stdout, 0);
  if (!c->html) return cli_usage_error("report needs --html OUT.html%s", "");
  if (c->n_positional > 0)
    return cli_usage_error("report takes no arguments, got '%s'", c->positional[0]);
  if (strstr(c->state_spec, "://")) cli_load_plugins_quietly(c);
  eng__state *st = cli_open_state(c);
  if (!st) return ENG_EXIT_USAGE;
  json_t *runs = cli_index_records(c, st);
  if (!runs) {
    eng__state_close(st);
    return ENG_EXIT_FAILED;
  }
  json_t *sorted = eng__index_sorted(runs);
  json_t *groups = grouped(c, sorted);
  json_t *evidence = latest_evidence(st, groups);
  eng__state_close(st);
  char t[40];
  char *html = eng__report_html(groups, evidence, eng__fmt_time(eng__now_ms(), t, sizeof t));
  FILE *f = fopen(c->html, "w");
  int code = ENG_EXIT_OK;
  if (!f || fputs(html, f) < 0 || fclose(f) != 0) {
    fprintf(stderr, "engine: cannot write %s: %s\n", c->html, strerror(errno));
    code = ENG_EXIT_FAILED;
  } else {
    printf("report: %zu runbook%s and lock%s written to %s\n", json_object_size(groups),
           json_object_size(groups) == 1 ? "" : "s", json_object_size(groups) == 1 ? "" : "s",
           c->html);
  }
  free(html);
  json_decref(evidence);
  json_decref(groups);
  json_decref(sorted);
  json_decref(runs);
  return code;
}
