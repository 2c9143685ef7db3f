/* cmd_history.c - `engine history`: the runs of the run index, newest
 * first, with their figures and the change against the previous
 * successful run of the same runbook and lock; --stale: the runbooks
 * and locks whose last success is too old (or that never succeeded). */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

static const char history_help[] =
    "usage: engine history [--state-dir DIR|URL] [--runbook NAME] [--lock NAME]\n"
    "                      [--since 30d|TIMESTAMP] [--format table|json|csv]\n"
    "                      [--stale DURATION]\n"
    "One line per run, newest first: start, run id, runbook, lock, outcome,\n"
    "duration, RTO, RPO, backup size, rows restored, failed checks, and the\n"
    "change of rows, RTO and backup size against the previous successful run\n"
    "of the same runbook and lock. --stale 35d lists each runbook and lock\n"
    "whose last successful run started longer ago than that, or that never\n"
    "succeeded, and exits 4 when there is one (0 when all are fresh).\n";

bool cli_history_wanted(const cli *c, const json_t *rec) {
  const char *rb = json_string_value(json_object_get(rec, "runbook"));
  const char *lock = json_string_value(json_object_get(rec, "lock"));
  if (c->runbook && (!rb || strcmp(rb, c->runbook))) return false;
  if (c->lock && (!lock || strcmp(lock, c->lock))) return false;
  if (c->since_ms) {
    int64_t ms;
    char why[80];
    const char *s = json_string_value(json_object_get(rec, "started_at"));
    if (!s || eng__parse_timestamp(s, &ms, why, sizeof why) != 0 || ms < c->since_ms)
      return false;
  }
  return true;
}

/* The change of one figure against prev, or null. */
static json_t *delta(const json_t *rec, const json_t *prev, const char *key) {
  const json_t *a = json_object_get(rec, key), *b = json_object_get(prev, key);
  if (!prev || !json_is_integer(a) || !json_is_integer(b)) return json_null();
  return json_integer(json_integer_value(a) - json_integer_value(b));
}

static const char *const delta_keys[] = {"rows", "rto_ms", "backup_bytes",
                                         "duration_ms"};

/* The group key of a record: runbook and lock. */
static char *group_of(const json_t *rec) {
  const char *rb = json_string_value(json_object_get(rec, "runbook"));
  const char *lock = json_string_value(json_object_get(rec, "lock"));
  return eng__asprintf("%s\n%s", rb ? rb : "", lock ? lock : "");
}

/* The lines shown: wanted records, newest first, each with previous_ok
 * and delta. One pass from the oldest, keeping each group's latest
 * success (eng__index_previous_ok per record would be quadratic). */
static json_t *history_lines(const cli *c, const json_t *sorted) {
  json_t *oldest_first = json_array(), *last_ok = json_object();
  for (size_t i = json_array_size(sorted); i-- > 0;) {
    json_t *rec = json_array_get(sorted, i);
    char *group = group_of(rec);
    const json_t *prev = json_object_get(last_ok, group);
    if (cli_history_wanted(c, rec)) {
      json_t *line = json_copy(rec);
      json_object_set_new(line, "previous_ok",
                          prev ? json_incref(json_object_get(prev, "run_id")) : json_null());
      json_t *d = json_object();
      for (size_t k = 0; k < sizeof delta_keys / sizeof *delta_keys; k++)
        json_object_set_new(d, delta_keys[k], delta(rec, prev, delta_keys[k]));
      json_object_set_new(line, "delta", d);
      json_array_append_new(oldest_first, line);
    }
    if (eng__index_ok(rec)) json_object_set(last_ok, group, rec);
    free(group);
  }
  json_decref(last_ok);
  json_t *out = json_array();
  for (size_t i = json_array_size(oldest_first); i-- > 0;)
    json_array_append(out, json_array_get(oldest_first, i));
  json_decref(oldest_first);
  return out;
}

/* An integer field as text ("-" when absent), with a sign for changes. */
static const char *num(const json_t *v, bool sign, char *buf, size_t n) {
  if (!json_is_integer(v)) return "-";
  snprintf(buf, n, sign ? "%+lld" : "%lld", (long long)json_integer_value(v));
  return buf;
}

static const char *str(const json_t *rec, const char *key) {
  const char *s = json_string_value(json_object_get(rec, key));
  return s && s[0] ? s : "-";
}

static const char *shown_outcome(const json_t *rec) {
  const char *o = str(rec, "outcome");
  return !strcmp(o, "running") ? "incomplete" : o;
}

/* The columns of table and csv: header, then the cells of each line. */
#define HISTORY_COLUMNS 14
static const char *const history_header[HISTORY_COLUMNS] = {
    "started_at", "run_id", "runbook", "lock", "outcome", "duration_ms",
    "rto_ms", "rpo_ms", "backup_bytes", "rows", "checks_failed",
    "rows_change", "rto_change_ms", "backup_change_bytes"};

static void cells(const json_t *l, char b[HISTORY_COLUMNS][32],
                  const char *cell[HISTORY_COLUMNS]) {
  const json_t *d = json_object_get(l, "delta");
  cell[0] = str(l, "started_at");
  cell[1] = str(l, "run_id");
  cell[2] = str(l, "runbook");
  cell[3] = str(l, "lock");
  cell[4] = shown_outcome(l);
  static const char *const ints[] = {"duration_ms", "rto_ms", "rpo_ms",
                                     "backup_bytes", "rows", "checks_failed"};
  for (size_t k = 0; k < 6; k++)
    cell[5 + k] = num(json_object_get(l, ints[k]), false, b[5 + k], 32);
  cell[11] = num(json_object_get(d, "rows"), true, b[11], 32);
  cell[12] = num(json_object_get(d, "rto_ms"), true, b[12], 32);
  cell[13] = num(json_object_get(d, "backup_bytes"), true, b[13], 32);
}

/* A CSV field: quoted when it holds a comma, a quote or a newline. */
static void csv_field(FILE *out, const char *s) {
  if (!strpbrk(s, ",\"\n")) {
    fputs(s, out);
    return;
  }
  fputc('"', out);
  for (; *s; s++) {
    if (*s == '"') fputc('"', out);
    fputc(*s, out);
  }
  fputc('"', out);
}

static void print_lines(const json_t *lines, bool csv, FILE *out) {
  static const int width[HISTORY_COLUMNS] = {24, 26, 20, 16, 11, 11, 9, 9, 12, 10, 6, 10, 10, 12};
  for (int k = 0; k < HISTORY_COLUMNS; k++) {
    if (csv) csv_field(out, history_header[k]);
    else fprintf(out, "%-*s", width[k], history_header[k]);
    fputs(k + 1 < HISTORY_COLUMNS ? (csv ? "," : " ") : "\n", out);
  }
  size_t i;
  json_t *l;
  json_array_foreach(lines, i, l) {
    char b[HISTORY_COLUMNS][32];
    const char *cell[HISTORY_COLUMNS];
    cells(l, b, cell);
    for (int k = 0; k < HISTORY_COLUMNS; k++) {
      if (csv) csv_field(out, cell[k]);
      else fprintf(out, "%-*s", width[k], cell[k]);
      fputs(k + 1 < HISTORY_COLUMNS ? (csv ? "," : " ") : "\n", out);
    }
  }
}

/* --stale: each runbook and lock (of the wanted records) whose latest
 * success started before now - stale_ms, or that never succeeded. */
static int print_stale(const cli *c, const json_t *sorted, FILE *out) {
  json_t *seen = json_object();
  int64_t now = eng__now_ms();
  int stale = 0;
  size_t i;
  json_t *rec;
  json_array_foreach(sorted, i, rec) {
    if (!cli_history_wanted(c, rec)) continue;
    char *group = eng__asprintf("%s %s", str(rec, "runbook"), str(rec, "lock"));
    bool ok = eng__index_ok(rec);
    json_t *have = json_object_get(seen, group);
    if (!have || (ok && json_is_false(have)))
      json_object_set_new(seen, group, ok ? json_incref(rec) : json_false());
    free(group);
  }
  const char *group;
  json_t *last;
  json_object_foreach(seen, group, last) {
    int64_t ms = 0;
    char why[80], age[32];
    const char *s = json_string_value(json_object_get(last, "started_at"));
    bool fresh = s && eng__parse_timestamp(s, &ms, why, sizeof why) == 0 &&
                 now - ms <= c->stale_ms;
    if (!json_is_object(last))
      fprintf(out, "STALE %s: never succeeded\n", group);
    else if (!fresh)
      fprintf(out, "STALE %s: last success %s (run %s), %s ago\n", group, s,
              str(last, "run_id"), eng__fmt_duration(now - ms, age, sizeof age));
    else
      fprintf(out, "fresh %s: last success %s (run %s)\n", group, s,
              str(last, "run_id"));
    stale += !fresh;
  }
  size_t groups = json_object_size(seen);
  json_decref(seen);
  if (!groups)
    fprintf(out, "STALE: no run recorded%s%s\n", c->runbook ? " of runbook " : "",
            c->runbook ? c->runbook : "");
  return stale || !groups ? ENG_EXIT_SLO : ENG_EXIT_OK;
}

int cmd_history(cli *c) {
  if (c->help) return cli_print_help(history_help, stdout, 0);
  if (c->n_positional > 0)
    return cli_usage_error("history takes no arguments, got '%s'", c->positional[0]);
  if (strstr(c->state_spec, "://")) cli_load_plugins_quietly(c);
  eng__state *st = cli_open_state(c);
  if (!st) return ENG_EXIT_USAGE;
  json_t *runs = cli_index_records(c, st);
  eng__state_close(st);
  if (!runs) return ENG_EXIT_FAILED;
  json_t *sorted = eng__index_sorted(runs);
  int code = ENG_EXIT_OK;
  if (c->stale_ms) {
    code = print_stale(c, sorted, stdout);
  } else {
    json_t *lines = history_lines(c, sorted);
    const char *f = c->format ? c->format : "table";
    if (!strcmp(f, "json")) {
      json_dumpf(lines, stdout, JSON_INDENT(2));
      fputc('\n', stdout);
    } else {
      print_lines(lines, !strcmp(f, "csv"), stdout);
    }
    json_decref(lines);
  }
  json_decref(sorted);
  json_decref(runs);
  return code;
}
