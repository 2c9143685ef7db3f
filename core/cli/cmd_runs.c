/* cmd_runs.c - `engine runs`: the recorded runs, with their kept resources
 * and leftovers. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int by_text(const void *a, const void *b) {
  return strcmp(json_string_value(*(json_t *const *)a),
                json_string_value(*(json_t *const *)b));
}

/* The runs of the index as eng__runs_list shows those of a directory. */
static void print_index(const json_t *runs, json_t *ids, FILE *out) {
  size_t n = json_array_size(ids);
  json_t **v = eng__xcalloc(n ? n : 1, sizeof *v);
  for (size_t i = 0; i < n; i++) v[i] = json_array_get(ids, i);
  qsort(v, n, sizeof *v, by_text);
  fprintf(out, "%-26s %-24s %-12s %-5s %s\n", "run", "runbook", "status",
          "kept", "leftovers");
  for (size_t i = 0; i < n; i++) {
    const json_t *rec = json_object_get(runs, json_string_value(v[i]));
    const char *name = json_string_value(json_object_get(rec, "runbook"));
    const char *o = json_string_value(json_object_get(rec, "outcome"));
    fprintf(out, "%-26s %-24s %-12s %-5lld %lld\n", json_string_value(v[i]),
            name && name[0] ? name : "?",
            !o || !strcmp(o, "running") ? "incomplete" : o,
            (long long)json_integer_value(json_object_get(rec, "kept")),
            (long long)json_integer_value(json_object_get(rec, "leftovers")));
  }
  free(v);
}

int cmd_runs(cli *c) {
  if (c->help) {
    return cli_print_help(
        "usage: engine runs [--state-dir DIR|URL]\nLists recorded runs: "
        "their status, the kept resources they delivered and their\n"
        "leftovers. Exit 1 when a journal record cannot be read (named on\n"
        "stderr).\n", stdout, 0);
  }
  if (!strstr(c->state_spec, "://"))
    return eng__runs_list(c->o.state_dir, stdout);
  cli_load_plugins_quietly(c);
  eng__state *st = cli_open_state(c);
  if (!st) return ENG_EXIT_USAGE;
  /* a store: the run index, a few requests whatever the number of runs */
  json_t *runs = cli_index_records(c, st);
  eng__state_close(st);
  if (!runs) return ENG_EXIT_FAILED;
  json_t *ids = json_array();
  const char *id;
  json_t *rec;
  json_object_foreach(runs, id, rec) json_array_append_new(ids, json_string(id));
  print_index(runs, ids, stdout);
  json_decref(ids);
  json_decref(runs);
  return ENG_EXIT_OK;
}
