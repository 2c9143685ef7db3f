/* history.c - a run's records in the run index (state/index.c): one when
 * it starts, one when it ends (from its report.json, checked against the
 * previous successful run: the regression SLOs), one when a cleanup
 * changes what it left; and the index read back, with the runs recorded
 * before it indexed once. */
#include "cli/cli.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void set_host(json_t *rec) {
  char host[256] = "";
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  if (host[0]) json_object_set_new(rec, "host", json_string(host));
}

/* Append one record; a failure is said, and the run's outcome stands. */
static void append(eng__state *st, json_t *rec) {
  char err[1024] = "";
  json_t *one = json_pack("[o]", rec);
  if (eng__index_append(st, one, err, sizeof err) != 0)
    fprintf(stderr, "engine: the run index could not be written (%s); "
                    "'engine history' will not show run %s\n",
            err, json_string_value(json_object_get(rec, "run_id")));
  json_decref(one);
}

void cli_index_start(cli *c, eng__state *st, const eng__runbook *rb,
                     const char *id, const char *lock) {
  if (c->o.plan_only || c->o.cleanup_run) return;
  char t[40];
  json_t *rec = json_pack("{s:s, s:s, s:s, s:s, s:s}", "run_id", id, "runbook",
                          rb->name ? rb->name : "", "file", rb->file,
                          "started_at", eng__fmt_time(eng__now_ms(), t, sizeof t),
                          "outcome", "running");
  if (lock) json_object_set_new(rec, "lock", json_string(lock));
  set_host(rec);
  append(st, rec);
}

/* Kept resources and leftovers of run id, from its journal. */
static void set_counts(json_t *rec, const char *state_dir, const char *id) {
  char *dir = eng__asprintf("%s/runs/%s", state_dir, id);
  json_t *all = eng__journal_read(dir);
  free(dir);
  json_t *res = all ? eng__journal_resources(all) : NULL;
  json_decref(all);
  json_int_t kept = 0, left = 0;
  size_t i;
  json_t *e;
  json_array_foreach(res, i, e) {
    if (json_is_true(json_object_get(e, "leftover"))) left++;
    else if (json_is_true(json_object_get(e, "present"))) kept++;
  }
  json_decref(res);
  json_object_set_new(rec, "kept", json_integer(kept));
  json_object_set_new(rec, "leftovers", json_integer(left));
}

static bool has_limits(const eng__runbook *rb) {
  return rb->slo_rows_drop_pct >= 0 || rb->slo_backup_drop_pct >= 0 ||
         rb->slo_rto_growth >= 0;
}

json_t *cli_index_previous_ok(cli *c, eng__state *st, const eng__runbook *rb,
                              const char *id, const char *lock) {
  if (!has_limits(rb) || c->o.plan_only || c->o.cleanup_run) return NULL;
  json_t *runs = cli_index_records(c, st);
  if (!runs) return NULL;
  json_t *sorted = eng__index_sorted(runs);
  char t[40];
  json_t *rec = json_pack("{s:s, s:s, s:s}", "run_id", id, "runbook", rb->name ? rb->name : "",
                          "started_at", eng__fmt_time(eng__now_ms(), t, sizeof t));
  if (lock) json_object_set_new(rec, "lock", json_string(lock));
  json_t *prev = json_incref((json_t *)eng__index_previous_ok(sorted, rec));
  json_decref(rec);
  json_decref(sorted);
  json_decref(runs);
  return prev;
}

int cli_index_end(cli *c, eng__state *st, const char *id, const char *lock,
                  int code) {
  if (c->o.plan_only) return code;
  if (c->o.cleanup_run) {
    json_t *rec = json_pack("{s:s}", "run_id", id);
    set_counts(rec, c->o.state_dir, id);
    append(st, rec);
    return code;
  }
  char *path = eng__asprintf("%s/runs/%s/report.json", c->o.state_dir, id);
  json_t *report = json_load_file(path, 0, NULL);
  json_t *rec = report ? eng__index_record(report) : NULL;
  if (rec) {
    if (lock) json_object_set_new(rec, "lock", json_string(lock));
    set_host(rec);
    set_counts(rec, c->o.state_dir, id);
    append(st, rec);
  }
  json_decref(report);
  free(path);
  return code;
}

int cli_history_since(cli *c, const char *text) {
  int64_t ms;
  char why[160];
  if (eng__parse_duration(text, &ms) == 0) {
    c->since_ms = eng__now_ms() - ms;
    return 0;
  }
  if (eng__parse_timestamp(text, &ms, why, sizeof why) == 0) {
    c->since_ms = ms;
    return 0;
  }
  return cli_usage_error("--since needs a duration back from now (30d, 12h) "
                         "or a timestamp (2026-11-01), got '%s'", text);
}

/* The record of a run directory from before the index (dir/runs/ID). */
static json_t *old_record(const char *dir, const char *id) {
  char *path = eng__asprintf("%s/runs/%s/report.json", dir, id);
  json_t *report = json_load_file(path, 0, NULL);
  free(path);
  json_t *rec = report ? eng__index_record(report) : NULL;
  json_decref(report);
  if (!rec && eng__index_id_ok(id))
    rec = json_pack("{s:s, s:s}", "run_id", id, "outcome", "running");
  if (rec) set_counts(rec, dir, id);
  return rec;
}

/* Index the runs in dir/runs/ that the index does not have. */
static int backfill_from(eng__state *st, const char *dir, json_t *runs) {
  char *rd = eng__asprintf("%s/runs", dir);
  DIR *d = opendir(rd);
  free(rd);
  if (!d) return 0; /* no run recorded yet: nothing to index, nothing written */
  json_t *add = json_array();
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.' || json_object_get(runs, e->d_name)) continue;
    json_t *rec = old_record(dir, e->d_name);
    if (!rec) continue;
    json_object_set(runs, e->d_name, rec);
    json_array_append_new(add, rec);
  }
  closedir(d);
  char err[1024] = "";
  int rc = eng__index_append(st, add, err, sizeof err);
  if (rc == 0) rc = eng__index_mark_backfilled(st, err, sizeof err);
  if (rc != 0)
    fprintf(stderr, "engine: the runs from before the run index could not be "
                    "indexed: %s\n", err);
  json_decref(add);
  return rc;
}

json_t *cli_index_records(cli *c, eng__state *st) {
  char err[1024] = "";
  bool done = false;
  json_t *runs = eng__index_read(st, &done, stderr, err, sizeof err);
  if (!runs) {
    fprintf(stderr, "engine: cannot read the run index of %s: %s\n",
            c->state_spec, err);
    return NULL;
  }
  if (done) return runs;
  if (!eng__state_url(st)) {
    backfill_from(st, eng__state_dir(st), runs);
    return runs;
  }
  char *dir = eng__state_pull_journals(st, err, sizeof err);
  if (!dir) {
    fprintf(stderr, "engine: cannot read the runs of %s: %s\n", c->state_spec, err);
    json_decref(runs);
    return NULL;
  }
  backfill_from(st, dir, runs);
  eng__rm_tree(dir);
  free(dir);
  return runs;
}
