/* prune.c - the `prune` built-in: retention for a local folder of backups
 * (docs/retention.md), and `mark_verified`, the marker a drill leaves
 * beside the backup it restored.
 *
 * prune lists the backups a glob matches (files, and directories of
 * directory-format dumps) with their sidecars (BACKUP.sha256,
 * BACKUP.verified, BACKUP.manifest.json), asks the retention rule
 * (base/retention.c) which to keep, holds every one it gives up to the
 * guards (protected_paths; the evidence names the rule, so the audit log
 * says why), then deletes each with its sidecars. dry_run deletes nothing
 * and is read-only for the guards.
 *
 * Listing and deleting run on worker threads (blocking file I/O); the
 * loop thread decides, asks the guards and sets the outputs. Memory: at
 * most PRUNE_MAX backups. A deletion that fails half-way (a file that
 * cannot be removed) ends the step failed, naming what is left. */
#define _XOPEN_SOURCE 700
#include "actions/actions.h"

#include <errno.h>
#include <ftw.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define H eng__host()
/* More matches than this is a glob that names the wrong folder. */
#define PRUNE_MAX 10000
/* nftw's open directories while removing a directory backup. */
#define PRUNE_FTW_FDS 16

/* What lies beside a backup and belongs to it. */
static const char *const sidecar_exts[] = {".sha256", ".verified",
                                           ".manifest.json", NULL};

typedef struct prune_entry {
  char *path;
  int64_t mtime_ms;
  bool dir;
  bool verified;
} prune_entry;

typedef struct prune_job {
  eng_call *call;
  char *glob;
  json_t *policy;
  bool dry_run;
  prune_entry *v;
  size_t n;
  json_t *plan;  /* the decisions, in v's order */
  char **doomed; /* paths of backups to delete (worker) */
  size_t n_doomed;
  json_t *removed; /* [[paths removed of backup i]] */
  char *errmsg;    /* a listing or deletion that failed */
} prune_job;

/* ---- listing (worker thread) ---------------------------------------------- */

static bool ends_with(const char *s, const char *suf) {
  size_t n = strlen(s), m = strlen(suf);
  return n >= m && !strcmp(s + n - m, suf);
}

static int entry_cmp(const void *a, const void *b) {
  return strcmp(((const prune_entry *)a)->path, ((const prune_entry *)b)->path);
}

/* A BACKUP.EXT beside a listed BACKUP belongs to it. */
static bool is_sidecar(const prune_job *j, const char *path) {
  for (const char *const *e = sidecar_exts; *e; e++) {
    if (!ends_with(path, *e)) continue;
    prune_entry probe = {.path = eng__xstrndup(path, strlen(path) - strlen(*e))};
    bool has = bsearch(&probe, j->v, j->n, sizeof *j->v, entry_cmp) != NULL;
    free(probe.path);
    if (has) return true;
  }
  return false;
}

static void prune_list(void *ud) {
  prune_job *j = ud;
  glob_t g = {0};
  int rc = glob(j->glob, 0, NULL, &g);
  if (rc == GLOB_ABORTED || rc == GLOB_NOSPACE || g.gl_pathc > PRUNE_MAX) {
    j->errmsg = g.gl_pathc > PRUNE_MAX
                    ? eng__asprintf("more than %d paths match '%s': name the "
                                    "folder and the pattern more closely",
                                    PRUNE_MAX, j->glob)
                    : eng__asprintf("cannot read the folders of '%s'", j->glob);
    globfree(&g);
    return;
  }
  j->v = eng__xcalloc(g.gl_pathc ? g.gl_pathc : 1, sizeof *j->v);
  for (size_t i = 0; rc == 0 && i < g.gl_pathc; i++) {
    struct stat st;
    if (stat(g.gl_pathv[i], &st) != 0) continue;
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) continue;
    if (ends_with(g.gl_pathv[i], ".partial")) continue; /* being written */
    prune_entry *e = &j->v[j->n++];
    e->path = eng__xstrdup(g.gl_pathv[i]);
    e->dir = S_ISDIR(st.st_mode);
    e->mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 +
                  (int64_t)st.st_mtim.tv_nsec / 1000000;
  }
  globfree(&g);
  qsort(j->v, j->n, sizeof *j->v, entry_cmp);
  bool *side = eng__xcalloc(j->n ? j->n : 1, sizeof *side);
  for (size_t i = 0; i < j->n; i++) side[i] = is_sidecar(j, j->v[i].path);
  size_t k = 0;
  for (size_t i = 0; i < j->n; i++) {
    if (side[i]) free(j->v[i].path);
    else j->v[k++] = j->v[i];
  }
  j->n = k;
  free(side);
  for (size_t i = 0; i < j->n; i++) {
    char *marker = eng__asprintf("%s.verified", j->v[i].path);
    j->v[i].verified = access(marker, F_OK) == 0;
    free(marker);
  }
}

/* ---- deleting (worker thread) --------------------------------------------- */

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Remove a backup and its sidecars; the paths removed into `done`. */
static int remove_backup(const char *path, json_t *done, char **err) {
  for (const char *const *e = sidecar_exts; *e; e++) {
    char *side = eng__asprintf("%s%s", path, *e);
    if (unlink(side) == 0) json_array_append_new(done, json_string(side));
    else if (errno != ENOENT) *err = eng__asprintf("cannot remove %s: %s", side, strerror(errno));
    free(side);
    if (*err) return -1;
  }
  struct stat st;
  bool dir = lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
  int rc = dir ? nftw(path, rm_one, PRUNE_FTW_FDS, FTW_DEPTH | FTW_PHYS)
               : (unlink(path) == 0 || errno == ENOENT ? 0 : -1);
  if (rc != 0) {
    *err = eng__asprintf("cannot remove %s: %s", path, strerror(errno));
    return -1;
  }
  json_array_append_new(done, json_string(path));
  return 0;
}

static void prune_delete(void *ud) {
  prune_job *j = ud;
  j->removed = json_array();
  for (size_t i = 0; i < j->n_doomed; i++) {
    json_t *done = json_array();
    json_array_append_new(j->removed, done);
    if (remove_backup(j->doomed[i], done, &j->errmsg) != 0) return;
  }
}

/* ---- deciding (loop thread) ----------------------------------------------- */

static void prune_free(prune_job *j) {
  for (size_t i = 0; i < j->n; i++) free(j->v[i].path);
  free(j->v);
  free(j->doomed); /* borrowed from v */
  json_decref(j->plan);
  json_decref(j->policy);
  json_decref(j->removed);
  free(j->glob);
  free(j->errmsg);
  free(j);
}

static void prune_end(prune_job *j, int rc) {
  eng_call *call = j->call;
  prune_free(j);
  H->done(call, rc);
}

/* The decisions as outputs: kept (with why), pruned (with the rule and
 * the files removed), locked (given up by the policy, kept by the lock). */
static void prune_outputs(prune_job *j) {
  json_t *kept = json_array(), *pruned = json_array(), *locked = json_array();
  size_t k = 0;
  for (size_t i = 0; i < j->n; i++) {
    json_t *d = json_deep_copy(json_array_get(json_object_get(j->plan, "backups"), i));
    json_object_set_new(d, "path", json_string(j->v[i].path));
    if (json_is_true(json_object_get(d, "keep"))) {
      json_array_append(kept, d);
      if (json_is_true(json_object_get(d, "locked"))) json_array_append(locked, d);
    } else {
      json_t *files = j->removed ? json_array_get(j->removed, k++) : NULL;
      json_object_set_new(d, "files", files ? json_incref(files) : json_array());
      json_array_append(pruned, d);
    }
    json_decref(d);
  }
  H->output(j->call, "count_pruned", json_integer((json_int_t)json_array_size(pruned)));
  H->output(j->call, "count_kept", json_integer((json_int_t)json_array_size(kept)));
  H->output(j->call, "kept", kept);
  H->output(j->call, "pruned", pruned);
  H->output(j->call, "locked", locked);
  H->output(j->call, "dry_run", json_boolean(j->dry_run));
  H->output(j->call, "policy", json_incref(json_object_get(j->plan, "policy")));
}

static void prune_deleted(void *ud, int status) {
  prune_job *j = ud;
  for (size_t i = 0; j->removed && i < json_array_size(j->removed); i++) {
    json_t *files = json_array_get(j->removed, i);
    for (size_t f = 0; f < json_array_size(files); f++) {
      const char *path = json_string_value(json_array_get(files, f));
      H->journal_removed(j->call, "file", path);
      H->log(j->call, ENG_LOG_INFO, "removed %s", path);
    }
  }
  prune_outputs(j);
  if (status < 0 || j->errmsg) {
    H->fail(j->call, "pruning '%s': %s; what is listed under pruned.files "
                     "was removed, the rest is still there",
            j->glob, j->errmsg ? j->errmsg : "cancelled");
    prune_end(j, status < 0 ? ENG_ERR_CANCELLED : ENG_ERR_IO);
    return;
  }
  prune_end(j, ENG_OK);
}

/* Every backup the policy gives up, held to the guards before any is
 * deleted: one refusal deletes nothing. */
static int prune_guard(prune_job *j) {
  j->doomed = eng__xcalloc(j->n ? j->n : 1, sizeof *j->doomed);
  for (size_t i = 0; i < j->n; i++) {
    const json_t *d = json_array_get(json_object_get(j->plan, "backups"), i);
    if (json_is_true(json_object_get(d, "keep"))) {
      const json_t *r = json_object_get(d, "reasons");
      H->log(j->call, ENG_LOG_INFO, "keep %s: %s", j->v[i].path,
             json_string_value(json_array_get(r, 0)));
      continue;
    }
    const char *rule = json_string_value(json_object_get(d, "rule"));
    H->log(j->call, ENG_LOG_INFO, "%s %s: %s", j->dry_run ? "would prune" : "prune",
           j->v[i].path, rule);
    if (j->dry_run) continue;
    char *why = eng__asprintf("retention: %s", rule);
    int rc = H->guard_target(j->call, ENG_TARGET_FILE, j->v[i].path, why);
    free(why);
    if (rc != ENG_OK) return ENG_ERR_REFUSED;
    j->doomed[j->n_doomed++] = j->v[i].path;
  }
  return ENG_OK;
}

static void prune_listed(void *ud, int status) {
  prune_job *j = ud;
  if (status < 0 || j->errmsg) {
    H->fail(j->call, "%s", j->errmsg ? j->errmsg : "listing cancelled");
    prune_end(j, status < 0 ? ENG_ERR_CANCELLED : ENG_ERR_IO);
    return;
  }
  json_t *items = json_array();
  for (size_t i = 0; i < j->n; i++)
    json_array_append_new(items, json_pack("{s:s, s:I, s:b}", "name", j->v[i].path,
                                           "mtime_ms", (json_int_t)j->v[i].mtime_ms,
                                           "verified", j->v[i].verified));
  j->plan = eng__retention_plan(items, j->policy, eng__now_ms());
  json_decref(items);
  int rc = prune_guard(j);
  if (rc != ENG_OK) {
    prune_end(j, rc);
    return;
  }
  if (j->dry_run || !j->n_doomed) {
    prune_outputs(j);
    prune_end(j, ENG_OK);
    return;
  }
  rc = H->work(j->call, prune_delete, prune_deleted, j);
  if (rc != ENG_OK) {
    H->fail(j->call, "cannot start deleting under '%s'", j->glob);
    prune_end(j, rc);
  }
}

int eng__prune_start(eng_call *call, const json_t *p) {
  const char *pattern = json_string_value(json_object_get(p, "glob"));
  if (eng__prune_refuse_policy(call, p)) return ENG_ERR_INVALID;
  char cwd[4096];
  if (!pattern || !*pattern || (pattern[0] != '/' && !getcwd(cwd, sizeof cwd))) {
    H->fail(call, "'glob' must name the backups, such as /backups/app-*.dump%s",
            pattern && *pattern ? " (the working directory cannot be read)" : "");
    return ENG_ERR_INVALID;
  }
  prune_job *j = eng__xcalloc(1, sizeof *j);
  j->call = call;
  /* absolute in the outputs, so that the guards and the audit read one path */
  j->glob = pattern[0] == '/' ? eng__xstrdup(pattern) : eng__asprintf("%s/%s", cwd, pattern);
  j->policy = json_deep_copy(p);
  j->dry_run = json_is_true(json_object_get(p, "dry_run"));
  int rc = H->work(call, prune_list, prune_listed, j);
  if (rc != ENG_OK) {
    H->fail(call, "cannot start listing '%s'", j->glob);
    prune_free(j);
  }
  return rc;
}

eng_side_effect eng__prune_classify(const json_t *p) {
  return json_is_true(json_object_get(p, "dry_run")) ? ENG_SIDE_READ_ONLY
                                                     : ENG_SIDE_DESTRUCTIVE;
}

void eng__prune_describe(const json_t *p, char *buf, size_t n) {
  json_t *none = json_array();
  json_t *plan = eng__retention_plan(none, p, 0);
  const char *text = json_string_value(json_object_get(plan, "policy"));
  const char *where = json_string_value(json_object_get(p, "glob"));
  const char *url = json_string_value(json_object_get(p, "url"));
  snprintf(buf, n, "%s %s by retention %s; never the newest, the newest "
                   "drill-verified, younger than min_age%s",
           json_is_true(json_object_get(p, "dry_run")) ? "list (dry run) what would be pruned from"
                                                       : "prune",
           where ? where : url ? url : "?", text ? text : "(no policy given)",
           url ? " or locked" : "");
  json_decref(plan);
  json_decref(none);
}

bool eng__prune_refuse_policy(eng_call *call, const json_t *p) {
  json_t *none = json_array();
  json_t *plan = eng__retention_plan(none, p, 0);
  const char *err = json_string_value(json_object_get(plan, "error"));
  if (err) H->fail(call, "%s", err);
  bool refused = err != NULL;
  json_decref(plan);
  json_decref(none);
  return refused;
}

/* ---- mark_verified -------------------------------------------------------- */

typedef struct mark_job {
  eng_call *call;
  char *url;
  char *text;
  eng_stream *s;
} mark_job;

static void mark_end(mark_job *j, int rc) {
  eng_call *call = j->call;
  free(j->url);
  free(j->text);
  free(j);
  H->done(call, rc);
}

static void mark_finished(void *ud, int rc, json_t *info) {
  mark_job *j = ud;
  json_decref(info);
  if (rc != ENG_OK) H->fail(j->call, "writing the marker %s: %s", j->url, eng_strerror(rc));
  else {
    H->output(j->call, "marker", json_string(j->url));
    H->log(j->call, ENG_LOG_INFO, "marked verified: %s", j->url);
  }
  mark_end(j, rc);
}

static void mark_written(void *ud, int rc) {
  mark_job *j = ud;
  if (rc == ENG_OK) rc = H->stream_finish(j->s, mark_finished, j);
  if (rc != ENG_OK) {
    if (j->s) H->stream_abort(j->s);
    H->fail(j->call, "writing the marker %s: %s", j->url, eng_strerror(rc));
    mark_end(j, rc);
  }
}

int eng__mark_verified_start(eng_call *call, const json_t *p) {
  const char *backup = json_string_value(json_object_get(p, "backup"));
  const char *sha = json_string_value(json_object_get(p, "sha256"));
  if (!backup || !*backup) {
    H->fail(call, "'backup' must name the backup the drill restored");
    return ENG_ERR_INVALID;
  }
  json_t *st = H->run_state(call);
  char now[40];
  json_t *m = json_pack("{s:s, s:s, s:s, s:s, s:s}", "backup", backup,
                        "verified_at", eng__fmt_time(eng__now_ms(), now, sizeof now),
                        "run_id", json_string_value(json_object_get(st, "run_id")) ?
                        json_string_value(json_object_get(st, "run_id")) : "",
                        "step", H->step_id(call), "sha256", sha ? sha : "");
  json_decref(st);
  mark_job *j = eng__xcalloc(1, sizeof *j);
  j->call = call;
  j->url = eng__asprintf("%s.verified", backup);
  char *body = json_dumps(m, JSON_SORT_KEYS);
  j->text = eng__asprintf("%s\n", body);
  free(body);
  json_decref(m);
  int rc = H->stream_open_write(call, j->url, NULL, &j->s);
  if (rc == ENG_OK) rc = H->stream_write(j->s, j->text, strlen(j->text), mark_written, j);
  if (rc != ENG_OK) {
    if (j->s) H->stream_abort(j->s);
    H->fail(call, "cannot write the marker %s: %s", j->url, eng_strerror(rc));
    free(j->url);
    free(j->text);
    free(j);
  }
  return rc;
}

/* ---- declarations --------------------------------------------------------- */

const eng_param eng__prune_params[] = {
    {.name = "glob",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_FILE,
     .doc = "the backups: a path with *, ? and [...] such as "
            "/backups/app-*.dump, relative to the working directory (files, "
            "or directories of directory-format "
            "dumps); BACKUP.sha256, BACKUP.verified and BACKUP.manifest.json "
            "go with their backup"},
    ENG_RETENTION_PARAMS,
    {0}};

const eng_output eng__prune_outputs[] = {ENG_RETENTION_OUTPUTS, {NULL, 0, NULL}};

const eng_param eng__mark_verified_params[] = {
    {.name = "backup",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_FILE,
     .doc = "the backup the drill restored (a local path or a stream URL "
            "such as s3://bucket/key); the marker is BACKUP.verified"},
    {.name = "sha256",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "the SHA-256 the restore verified, recorded in the marker"},
    {0}};

const eng_output eng__mark_verified_outputs[] = {
    {"marker", ENG_T_STRING, "where the marker was written (BACKUP.verified)"},
    {NULL, 0, NULL}};
