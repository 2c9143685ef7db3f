/*
 * pgbr_restore.c - restore a backup into a new, empty directory, and the
 * removal of that directory (the undo the journal records).
 *
 * Refusals come before pgBackRest runs: a directory that exists and is not
 * empty (pgBackRest's --delta and --force, which overwrite, are refused as
 * options), a relative path, and any archive-mode other than off. The
 * restore always passes --archive-mode=off: a copy promoted with the
 * production server's archive_command would push its WAL into the
 * production repository. The directory is held to the guards
 * (protected_paths) as a created path, recorded in the journal (kind
 * "path", temporary: removed when the run ends, and by `engine cleanup`
 * after a crash) before it is made, and made 0700 for the cluster's user.
 *
 * remove_restore removes only a directory this run (or the run being
 * cleaned up) journaled, never one a server still runs on; a pgBackRest
 * restore still writing into it (its engine was killed) is stopped first.
 */
#include "pgbr_int.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How long remove_restore waits for a stopped pgBackRest to exit. */
#define PGBR_KILL_WAIT_MS 5000

/* ---- targets ------------------------------------------------------------------- */

/* "now - 10m" (s, m, h, d) as seconds; -1 when text is not that form. */
static long long now_minus(const char *text) {
  const char *p = text;
  if (strncmp(p, "now", 3) != 0) return -1;
  p += 3;
  while (*p == ' ') p++;
  if (*p == '\0') return 0;
  if (*p++ != '-') return -1;
  while (*p == ' ') p++;
  char *end;
  long long n = strtoll(p, &end, 10);
  if (end == p || n < 0 || n > 100LL * 365 * 86400) return -1;
  long long unit = !strcmp(end, "s") ? 1 : !strcmp(end, "m") ? 60
                   : !strcmp(end, "h") ? 3600 : !strcmp(end, "d") ? 86400 : 0;
  return unit ? n * unit : -1;
}

int pgbr_check_target(const json_t *v, char *err, size_t errlen) {
  const char *s = json_string_value(v);
  if (!s || !*s) return 0;
  if (!strncmp(s, "now", 3) && now_minus(s) < 0) {
    snprintf(err, errlen, "target '%s': a relative time is 'now - N' with a "
                          "unit s, m, h or d (now - 10m)", s);
    return 1;
  }
  for (const char *p = s; *p; p++)
    if (*p == '\'' || *p == '\n' || *p == '\\') {
      snprintf(err, errlen, "target '%s' holds a quote, backslash or newline; "
                            "give a time, an LSN or a restore point name", s);
      return 1;
    }
  return 0;
}

/* ---- restore ----------------------------------------------------------------- */

typedef struct restore_job {
  pgbr_job j;
  char *dir;
  char *type;
  char *target; /* resolved ("now - 10m" becomes a time), or NULL */
  char *action; /* target-action */
  char *set;
  int64_t token;
  char started_at[32];
} restore_job;

static void restore_destroy(eng_op *op) {
  restore_job *r = (restore_job *)op;
  free(r->dir);
  free(r->type);
  free(r->target);
  free(r->action);
  free(r->set);
  pgbr_job_free(&r->j);
}

void pgbr_describe_restore(const json_t *params, char *buf, size_t n) {
  const char *type = pgbr_pstr(params, "type");
  const char *target = pgbr_pstr(params, "target");
  if (target && !*target) target = NULL;
  snprintf(buf, n, "restore stanza %s into new directory %s, recovery %s%s%s, "
                   "archive-mode off",
           pgbr_pstr(params, "stanza") ? pgbr_pstr(params, "stanza") : "?",
           pgbr_pstr(params, "dir") ? pgbr_pstr(params, "dir") : "?",
           type ? type : "latest", target ? " to " : "", target ? target : "");
}

/* Is dir absent or an empty directory? 0 yes, else an errno-like reason. */
static int dir_state(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return errno == ENOENT ? 0 : errno;
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n ? ENOTEMPTY : 0;
}

/* Refusals that need nothing but the parameters. */
static int restore_refusals(eng_call *call, const json_t *params) {
  const char *dir = pgbr_pstr(params, "dir");
  if (!dir || dir[0] != '/') {
    pgbr_host->fail(call, "dir '%s' must be an absolute path of a new or empty "
                          "directory", dir ? dir : "");
    return ENG_ERR_INVALID;
  }
  const json_t *opts = json_object_get(params, "options");
  const char *am = json_string_value(json_object_get(opts, "archive-mode"));
  const char *mode = pgbr_pstr(params, "archive_mode");
  if ((am && strcmp(am, "off")) || (mode && strcmp(mode, "off"))) {
    pgbr_host->fail(call, "refused: archive-mode '%s': a restored copy runs "
                          "with archive-mode off so that it never pushes WAL "
                          "into the production repository; nothing was restored",
                    am && strcmp(am, "off") ? am : mode);
    return ENG_ERR_REFUSED;
  }
  static const char *const owned[] = {"pg1-path", "delta", "force", "type",
                                      "target", "target-action", "set"};
  for (size_t i = 0; i < sizeof owned / sizeof owned[0]; i++)
    if (json_object_get(opts, owned[i])) {
      pgbr_host->fail(call, "refused: option '%s' is set by the action (dir, "
                            "type, target, target_action, set) or would "
                            "overwrite files (delta, force); nothing was "
                            "restored", owned[i]);
      return ENG_ERR_REFUSED;
    }
  int st = dir_state(dir);
  if (st) {
    pgbr_host->fail(call, "refused: %s %s; restore only into a new or empty "
                          "directory (choose another dir); nothing was restored",
                    dir, st == ENOTEMPTY ? "is not empty" : strerror(st));
    return ENG_ERR_REFUSED;
  }
  const char *type = pgbr_pstr(params, "type");
  const char *target = pgbr_pstr(params, "target");
  int wants = type && (!strcmp(type, "time") || !strcmp(type, "lsn") ||
                       !strcmp(type, "name"));
  if (wants != (target && *target)) {
    pgbr_host->fail(call, wants ? "type %s needs a target" :
                                  "type %s takes no target; use type time, lsn "
                                  "or name with a target",
                    type ? type : "latest");
    return ENG_ERR_INVALID;
  }
  return ENG_OK;
}

static void restore_done(eng_op *op, int rc, const char *out) {
  (void)out;
  restore_job *r = (restore_job *)op;
  if (rc != ENG_OK) {
    eng_op_finish(op, rc);
    return;
  }
  pgbr_host->journal_confirm(op->call, r->token);
  char now[32];
  pgbr_rfc3339((int64_t)time(NULL), now);
  eng_call *c = op->call;
  pgbr_host->output(c, "data_dir", json_string(r->dir));
  pgbr_host->output(c, "type", json_string(r->type));
  pgbr_host->output(c, "target", r->target ? json_string(r->target) : json_null());
  pgbr_host->output(c, "target_action", json_string(r->action));
  pgbr_host->output(c, "set", r->set ? json_string(r->set) : json_null());
  pgbr_host->output(c, "stanza", json_string(pgbr_conf_stanza(r->j.conf)));
  pgbr_host->output(c, "started_at", json_string(r->started_at));
  pgbr_host->output(c, "finished_at", json_string(now));
  pgbr_host->output(c, "duration_ms", json_integer(pgbr_now_ms() - r->j.started_ms));
  pgbr_host->output(c, "archive_mode", json_string("off"));
  pgbr_host->log(c, ENG_LOG_INFO, "restored stanza %s into %s (recovery %s%s%s, "
                 "archive-mode off) in %.1f s",
                 pgbr_conf_stanza(r->j.conf), r->dir, r->type,
                 r->target ? " to " : "", r->target ? r->target : "",
                 (double)(pgbr_now_ms() - r->j.started_ms) / 1000.0);
  eng_op_finish(op, ENG_OK);
}

/* Make the directory (0700, the cluster user's), then restore. */
static void restore_go(restore_job *r) {
  eng_op *op = &r->j.op;
  if (mkdir(r->dir, 0700) != 0 && errno != EEXIST) {
    eng_op_fail(op, ENG_ERR_IO, "cannot create %s: %s", r->dir, strerror(errno));
    return;
  }
  const char *user = pgbr_conf_run_as(r->j.conf);
  struct passwd *pw = user ? getpwnam(user) : NULL;
  if ((pw && chown(r->dir, pw->pw_uid, pw->pw_gid) != 0) || chmod(r->dir, 0700) != 0) {
    eng_op_fail(op, ENG_ERR_IO, "cannot give %s to %s: %s", r->dir,
                user ? user : "the engine's user", strerror(errno));
    return;
  }
  char *a[6] = {0};
  size_t n = 0;
  a[n++] = eng_asprintf("--pg1-path=%s", r->dir);
  a[n++] = eng_xstrdup("--archive-mode=off");
  a[n++] = eng_asprintf("--type=%s", !strcmp(r->type, "latest") ? "default" : r->type);
  if (r->target) a[n++] = eng_asprintf("--target=%s", r->target);
  if (strcmp(r->type, "latest") != 0)
    a[n++] = eng_asprintf("--target-action=%s", r->action);
  if (r->set) a[n++] = eng_asprintf("--set=%s", r->set);
  pgbr_host->log(op->call, ENG_LOG_INFO, "pgbackrest restore of stanza %s into %s, "
                 "recovery %s%s%s", pgbr_conf_stanza(r->j.conf), r->dir, r->type,
                 r->target ? " to " : "", r->target ? r->target : "");
  pgbr_run(op, r->j.conf, "restore", (const char *const *)a, restore_done);
  for (size_t i = 0; i < n; i++) free(a[i]);
}

static void restore_versioned(eng_op *op, int rc, const char *out) {
  (void)out;
  restore_job *r = (restore_job *)op;
  if (rc != ENG_OK) {
    eng_op_finish(op, rc);
    return;
  }
  json_t *with = json_pack("{s:s}", "dir", r->dir);
  json_t *detail = json_pack("{s:s, s:s, s:s, s:{s:s, s:o}}", "stanza",
                             pgbr_conf_stanza(r->j.conf), "dir", r->dir,
                             "disposition", "temporary", "undo", "action",
                             "pgbackrest.remove_restore", "with", with);
  r->token = pgbr_host->journal_intent(op->call, "path", r->dir, detail);
  json_decref(detail);
  if (r->token < 0) {
    eng_op_finish(op, ENG_ERR_IO);
    return;
  }
  restore_go(r);
}

/* "now - 10m" as a UTC time PostgreSQL reads; other targets as given. */
static char *resolve_target(const char *type, const char *target) {
  if (!target || !*target) return NULL;
  long long back = now_minus(target);
  if (strcmp(type, "time") != 0 || back < 0) return eng_xstrdup(target);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  time_t t = ts.tv_sec - (time_t)back;
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[40];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return eng_asprintf("%s.%03ld+00", buf, ts.tv_nsec / 1000000);
}

int pgbr_act_restore(eng_call *call, const json_t *params) {
  int rc = restore_refusals(call, params);
  if (rc != ENG_OK) return rc;
  const char *dir = pgbr_pstr(params, "dir");
  if (pgbr_host->guard_target(call, ENG_TARGET_FILE, dir, NULL) != ENG_OK)
    return ENG_ERR_REFUSED;
  restore_job *r = (restore_job *)pgbr_job_new(call, params, sizeof *r,
                                               restore_destroy, &rc);
  if (!r) return rc;
  const char *type = pgbr_pstr(params, "type");
  const char *action = pgbr_pstr(params, "target_action");
  const char *set = pgbr_pstr(params, "set");
  r->dir = eng_xstrdup(dir);
  r->type = eng_xstrdup(type ? type : "latest");
  r->target = resolve_target(r->type, pgbr_pstr(params, "target"));
  r->action = eng_xstrdup(action ? action : "pause");
  r->set = set && *set ? eng_xstrdup(set) : NULL;
  pgbr_rfc3339((int64_t)time(NULL), r->started_at);
  pgbr_check_version(&r->j.op, r->j.conf, restore_versioned);
  return ENG_OK;
}

/* ---- remove_restore ----------------------------------------------------------- */

typedef struct remove_job {
  eng_op op;
  char *dir;
  int killed, removed;
  char err[512];
} remove_job;

static void remove_destroy(eng_op *op) {
  remove_job *m = (remove_job *)op;
  free(m->dir);
  free(m);
}

/* Worker: SIGKILL every pgbackrest still restoring into dir (its engine
 * was killed); returns how many. */
static int kill_restorers(const char *dir) {
  char *want = eng_asprintf("--pg1-path=%s", dir);
  int n = 0;
  DIR *proc = opendir("/proc");
  struct dirent *e;
  while (proc && (e = readdir(proc)) != NULL) {
    if (!isdigit((unsigned char)e->d_name[0])) continue;
    char path[300], buf[8192];
    snprintf(path, sizeof path, "/proc/%s/cmdline", e->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t len = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (len <= 0) continue;
    buf[len] = '\0';
    int is_pgbr = strstr(buf, "pgbackrest") != NULL, match = 0;
    for (ssize_t i = 0; i < len; i += (ssize_t)strlen(buf + i) + 1)
      match |= !strcmp(buf + i, want);
    if (is_pgbr && match && kill((pid_t)atoi(e->d_name), SIGKILL) == 0) n++;
  }
  if (proc) closedir(proc);
  free(want);
  return n;
}

static int rm_one(const char *path, const struct stat *st, int flag,
                  struct FTW *ftw) {
  (void)st;
  (void)ftw;
  return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void remove_work(void *ud) {
  remove_job *m = ud;
  m->killed = kill_restorers(m->dir);
  for (int waited = 0; m->killed && waited < PGBR_KILL_WAIT_MS; waited += 50) {
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL);
    if (!kill_restorers(m->dir)) break;
  }
  if (nftw(m->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
    snprintf(m->err, sizeof m->err, "cannot remove %s: %s", m->dir, strerror(errno));
  else
    m->removed = 1;
}

static void remove_after(void *ud) {
  remove_job *m = ud;
  if (!m->removed) {
    eng_op_fail(&m->op, ENG_ERR_IO, "%s; remove it by hand once no server runs "
                "on it", m->err);
    return;
  }
  pgbr_host->journal_removed(m->op.call, "path", m->dir);
  pgbr_host->output(m->op.call, "removed", json_true());
  pgbr_host->log(m->op.call, ENG_LOG_INFO, "removed the restored directory %s%s",
                 m->dir, m->killed ? " (a pgBackRest restore still writing "
                                     "into it was stopped)" : "");
  eng_op_finish(&m->op, ENG_OK);
}

/* Is a server running on dir (postmaster.pid names a live process)? */
static int server_runs(const char *dir) {
  char *pidfile = eng_asprintf("%s/postmaster.pid", dir);
  FILE *f = fopen(pidfile, "r");
  free(pidfile);
  if (!f) return 0;
  long pid = 0;
  int ok = fscanf(f, "%ld", &pid) == 1;
  fclose(f);
  return ok && pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

int pgbr_act_remove_restore(eng_call *call, const json_t *params) {
  const char *dir = pgbr_pstr(params, "dir");
  if (!dir || dir[0] != '/' || !strcmp(dir, "/")) {
    pgbr_host->fail(call, "dir must be the absolute path the restore's journal "
                          "entry records");
    return ENG_ERR_INVALID;
  }
  if (!pgbr_host->journal_owned(call, "path", dir)) {
    pgbr_host->fail(call, "refused: %s is not a directory this run (or the run "
                          "being cleaned up) restored into; nothing was removed", dir);
    return ENG_ERR_REFUSED;
  }
  if (pgbr_host->guard_target(call, ENG_TARGET_FILE, dir, NULL) != ENG_OK)
    return ENG_ERR_REFUSED;
  if (server_runs(dir)) {
    pgbr_host->fail(call, "refused: a server runs on %s; stop it first "
                          "(postgres.recover_stop); nothing was removed", dir);
    return ENG_ERR_REFUSED;
  }
  remove_job *m = eng_xcalloc(1, sizeof *m);
  m->dir = eng_xstrdup(dir);
  eng_op_init(&m->op, pgbr_host, call, remove_destroy);
  if (eng_op_work(&m->op, remove_work, remove_after, m) != ENG_OK)
    eng_op_fail(&m->op, ENG_ERR_NOMEM, "cannot queue the removal of %s", dir);
  return ENG_OK;
}
