/*
 * pg_sandbox.c - a throwaway PostgreSQL cluster for drills and tests.
 *
 * initdb + pg_ctl start under RUN_DIR/sandbox-STEPID on 127.0.0.1 (a free
 * port unless one is given), TCP only (no Unix socket: run directories can
 * be longer than a socket path may be), fsync off. The superuser
 * `postgres` gets a random password (scram-sha-256 over TCP), so drills
 * exercise the same password handling as real servers. When the engine
 * runs as root the server programs run as the `postgres` user (or
 * `nobody`): PostgreSQL refuses to run as root.
 *
 * The directory's name is chosen first (nothing is created), then the
 * cluster is recorded in the journal (kind "sandbox", id the directory)
 * with {"undo": {"action": "postgres.sandbox_stop", ...}}; only then are
 * the directory (mkdir, which fails rather than reuse one that appeared
 * meanwhile) and the cluster made. When the intent cannot be written (the
 * disk of the run directory is full) nothing is made and the step fails
 * with ENG_ERR_IO. host->at_run_end stops the server (pg_ctl stop -m fast)
 * and removes the directory when the run ends (keep: true keeps the
 * stopped data directory for inspection); a directory this step did not
 * make is never touched. A SIGKILLed engine leaves the server running:
 * `engine cleanup RUN_ID` runs sandbox_stop from the journal.
 * sandbox_stop removes only a directory that carries the marker file
 * SANDBOX_MARK and that this run's journal (or the cleaned-up run's)
 * records as its sandbox.
 */
#include "pg_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define SANDBOX_MARK ".engine-sandbox"

/* What the end-of-run callback needs; outlives the step. */
typedef struct pg_sbx_rec {
  char *dir;  /* the sandbox directory (owned by run_as) */
  char *data; /* DIR/data */
  char *run_as;
  char *pg_ctl;
  int keep;
  int made; /* this step made dir (set by a worker the step waits for) */
} pg_sbx_rec;

static void pg_sbx_rec_free(pg_sbx_rec *rec) {
  if (!rec) return;
  free(rec->dir);
  free(rec->data);
  free(rec->run_as);
  free(rec->pg_ctl);
  free(rec);
}

typedef struct pg_sandbox_op {
  pg_op op;
  pg_sbx_rec *rec;
  int rec_owned_by_end; /* at_run_end took rec */
  int port;
  int auto_port; /* port 0: chosen here, may be retried */
  int port_tries;
  int demo;
  char *database;
  char *run_dir;
  char *step;
  pg_bin bin;
  pg_child child;
  char password[40];
  char *admin_url;
  char *url;
  pg_ident id;
  pg_sess *s;
  int64_t token;
  char *pwfile;
  uid_t uid;
  gid_t gid;
  /* worker results */
  int werr;
  char werrmsg[1024];
} pg_sandbox_op;

static void pg_sandbox_destroy(pg_op *op) {
  pg_sandbox_op *b = (pg_sandbox_op *)op;
  if (!b->rec_owned_by_end) pg_sbx_rec_free(b->rec);
  free(b->database);
  free(b->run_dir);
  free(b->step);
  free(b->admin_url);
  free(b->url);
  free(b->pwfile);
  free(b);
}

/* ---- end of run: stop and remove ---------------------------------------- */

typedef struct pg_sbx_end {
  pg_op op;
  pg_sbx_rec *rec;
  pg_child child;
  int action; /* postgres.sandbox_stop (outputs), not the run-end hook */
  int stopped, removed;
  char pidfile[4096];
} pg_sbx_end;

static void pg_sbx_end_destroy(pg_op *op) {
  pg_sbx_end *e = (pg_sbx_end *)op;
  pg_sbx_rec_free(e->rec);
  free(e);
}

static void pg_sbx_end_rm(void *ud) {
  pg_sbx_end *e = ud;
  e->removed = pg_rmtree(e->rec->dir) == 0;
}

static void pg_sbx_end_outputs(pg_sbx_end *e) {
  if (!e->action) return;
  pg_host->output(e->op.e.call, "stopped", json_boolean(e->stopped));
  pg_host->output(e->op.e.call, "removed", json_boolean(e->removed));
}

static void pg_sbx_end_removed(void *ud) {
  pg_sbx_end *e = ud;
  pg_host->journal_removed(e->op.e.call, "sandbox", e->rec->dir);
  if (e->action)
    pg_host->log(e->op.e.call, ENG_LOG_INFO, "sandbox %s %sremoved",
                 e->rec->dir, e->stopped ? "stopped and " : "");
  pg_sbx_end_outputs(e);
  pg_op_finish(&e->op, ENG_OK);
}

static void pg_sbx_end_stopped(pg_child *c) {
  pg_sbx_end *e = c->ud;
  if (c->status != 0 || c->sig)
    pg_host->log(e->op.e.call, ENG_LOG_DEBUG,
                 "pg_ctl stop for the sandbox in %s: %s", e->rec->data,
                 c->tail[0] ? c->tail : "not running");
  else
    e->stopped = c->op != NULL;
  if ((c->status != 0 || c->sig) && c->op &&
      access(e->pidfile, F_OK) == 0) {
    /* pg_ctl failed and the server still looks alive: never remove the
     * data directory under a running server */
    pg_op_fail(&e->op, ENG_ERR_FAILED,
               "could not stop the sandbox server in %s: %s; stop it with "
               "pg_ctl stop -D %s -m immediate, then remove %s",
               e->rec->data, c->tail[0] ? c->tail : "pg_ctl failed",
               e->rec->data, e->rec->dir);
    return;
  }
  if (e->rec->keep) {
    pg_sbx_end_outputs(e);
    pg_host->log(e->op.e.call, ENG_LOG_INFO,
                 "sandbox kept (stopped) in %s; start it again with: %s%s%s "
                 "-D %s -l %s/server.log start",
                 e->rec->data, e->rec->run_as ? "runuser -u " : "",
                 e->rec->run_as ? e->rec->run_as : "",
                 e->rec->run_as ? " -- " : "", e->rec->pg_ctl, e->rec->dir);
    pg_op_finish(&e->op, ENG_OK);
    return;
  }
  if (pg_op_work(&e->op, pg_sbx_end_rm, pg_sbx_end_removed, e) != ENG_OK)
    pg_op_finish(&e->op, ENG_ERR_NOMEM);
}

/* Stop (pg_ctl stop -m fast) and remove; completes e->op. */
static void pg_sbx_stop(pg_sbx_end *e) {
  snprintf(e->pidfile, sizeof e->pidfile, "%s/postmaster.pid", e->rec->data);
  const char *argv[] = {e->rec->pg_ctl, "stop", "-D", e->rec->data, "-m",
                        "fast",         "-w",   "-t", "30",         NULL};
  eng_spawn_opts o = {0};
  o.size = sizeof o;
  o.argv = argv;
  o.stdin_fd = ENG_STDIO_NULL;
  o.stdout_fd = ENG_STDIO_NULL;
  o.run_as = e->rec->run_as;
  e->child.ud = e;
  e->child.on_exit = pg_sbx_end_stopped;
  char err[512];
  if (access(e->pidfile, F_OK) != 0 || !e->rec->pg_ctl ||
      pg_child_spawn(&e->child, &e->op, "pg_ctl", &o, err, sizeof err) !=
          ENG_OK) {
    /* nothing to stop (or no pg_ctl): just remove */
    e->child.op = NULL;
    e->child.status = 1;
    pg_sbx_end_stopped(&e->child);
  }
}

static int pg_sbx_at_end(eng_call *end_call, void *ud) {
  pg_sbx_end *e = eng_xcalloc(1, sizeof *e);
  e->rec = ud;
  pg_op_init(&e->op, end_call, pg_sbx_end_destroy);
  if (!e->rec->made) {
    /* journaled, never made (or the name was taken meanwhile: not ours) */
    pg_host->journal_removed(end_call, "sandbox", e->rec->dir);
    pg_op_finish(&e->op, ENG_OK);
    return ENG_OK;
  }
  pg_sbx_stop(e);
  return ENG_OK;
}

/* ---- postgres.sandbox_stop: the journal's undo ---------------------------- */

static void pg_sbx_stop_found(void *ud) {
  pg_sbx_end *e = ud;
  pg_sbx_stop(e);
}

int pg_act_sandbox_stop(eng_call *call, const json_t *params) {
  const char *dir = pg_pstr(params, "dir");
  const char *data = pg_pstr(params, "data_dir");
  const char *pg_ctl = pg_pstr(params, "pg_ctl");
  const char *run_as = pg_pstr(params, "run_as");
  if (!dir || !*dir || dir[0] != '/' || !data || !*data) {
    pg_host->fail(call, "dir and data_dir must be the absolute paths the "
                        "sandbox's journal entry records");
    return ENG_ERR_INVALID;
  }
  char *want = eng_asprintf("%s/data", dir);
  int same = !strcmp(want, data);
  free(want);
  if (!same) {
    pg_host->fail(call, "data_dir %s is not DIR/data of dir %s: not a "
                        "sandbox this engine made; nothing was done",
                  data, dir);
    return ENG_ERR_INVALID;
  }
  if (!pg_host->journal_owned(call, "sandbox", dir)) {
    pg_host->fail(call, "refused: %s is not a sandbox this run (or the run "
                        "being cleaned up) created; nothing was done",
                  dir);
    return ENG_ERR_REFUSED;
  }
  char *mark = eng_asprintf("%s/" SANDBOX_MARK, dir);
  int gone = access(dir, F_OK) != 0;
  int marked = access(mark, F_OK) == 0;
  free(mark);
  if (!gone && !marked) {
    pg_host->fail(call, "refused: %s has no %s marker: not a sandbox "
                        "directory this engine made; nothing was done",
                  dir, SANDBOX_MARK);
    return ENG_ERR_REFUSED;
  }
  pg_sbx_end *e = eng_xcalloc(1, sizeof *e);
  e->rec = eng_xcalloc(1, sizeof *e->rec);
  e->rec->dir = eng_xstrdup(dir);
  e->rec->data = eng_xstrdup(data);
  e->rec->pg_ctl = pg_ctl && *pg_ctl ? eng_xstrdup(pg_ctl) : NULL;
  e->rec->run_as = run_as && *run_as ? eng_xstrdup(run_as) : NULL;
  e->rec->keep = pg_pbool(params, "keep", 0);
  e->action = 1;
  pg_op_init(&e->op, call, pg_sbx_end_destroy);
  if (gone) {
    pg_host->journal_removed(call, "sandbox", dir);
    pg_host->log(call, ENG_LOG_INFO, "sandbox %s is already gone", dir);
    pg_sbx_end_outputs(e);
    pg_op_finish(&e->op, ENG_OK);
    return ENG_OK;
  }
  if (!e->rec->pg_ctl) e->rec->pg_ctl = eng_xstrdup("pg_ctl");
  pg_sbx_stop_found(e);
  return ENG_OK;
}

/* ---- helpers (worker) --------------------------------------------------- */

/* Can uid/gid reach `path` (x on every ancestor)? */
static int pg_can_traverse(const char *path, uid_t uid, gid_t gid) {
  char buf[PATH_MAX];
  if (!realpath(path, buf)) return 0;
  size_t n = strlen(buf);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    char c = buf[i];
    buf[i] = '\0';
    struct stat st;
    int ok = stat(buf, &st) == 0;
    if (ok) {
      mode_t bit = st.st_uid == uid   ? S_IXUSR
                   : st.st_gid == gid ? S_IXGRP
                                      : S_IXOTH;
      ok = (st.st_mode & bit) != 0;
    }
    buf[i] = c;
    if (!ok) return 0;
  }
  return 1;
}

static int pg_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  int port = -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

/* Worker: find initdb, choose the directory's name (nothing is created:
 * the journal records it first), a port and the password. */
static void pg_sandbox_prepare(void *ud) {
  pg_sandbox_op *b = ud;
  pg_bin_find(&b->bin);
  if (b->bin.rc != ENG_OK) return;
  char *dir = NULL;
  struct stat st;
  int rc = pg_mkdir_p(b->run_dir, 0755); /* the run's own; normally there */
  if (rc == 0 && b->rec->run_as &&
      !pg_can_traverse(b->run_dir, b->uid, b->gid)) {
    /* the run directory is private (e.g. under /root): the server user
     * cannot reach it; use a private directory under /tmp instead */
    for (int n = 0; !dir && n < 100; n++) {
      unsigned char raw[6];
      if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) break;
      char *cand = eng_asprintf("/tmp/engine-sandbox-%02x%02x%02x%02x%02x%02x",
                                raw[0], raw[1], raw[2], raw[3], raw[4], raw[5]);
      if (lstat(cand, &st) != 0 && errno == ENOENT)
        dir = cand;
      else
        free(cand);
    }
    if (!dir) rc = EEXIST;
  } else if (rc == 0) {
    /* A retried attempt must not reuse (or remove) the directory of an
     * earlier one: its server may still run until the run ends. */
    char *base = eng_asprintf("%s/sandbox-%s", b->run_dir, b->step);
    for (int n = 1; !dir && n <= 100; n++) {
      char *cand = n == 1 ? eng_xstrdup(base) : eng_asprintf("%s-%d", base, n);
      if (lstat(cand, &st) != 0 && errno == ENOENT)
        dir = cand;
      else
        free(cand);
    }
    free(base);
    if (!dir) rc = EEXIST;
  }
  if (rc) {
    b->werr = rc;
    snprintf(b->werrmsg, sizeof b->werrmsg,
             "cannot choose the sandbox directory under %s: %s", b->run_dir,
             strerror(rc));
    free(dir);
    return;
  }
  b->rec->dir = dir;
  b->rec->data = eng_asprintf("%s/data", dir);
  /* the superuser's password, for initdb --pwfile */
  unsigned char raw[16];
  /* getrandom() rather than OpenSSL's RAND: no per-thread DRBG state is
   * left behind on the host's worker threads */
  if (getrandom(raw, sizeof raw, 0) != (ssize_t)sizeof raw) {
    b->werr = EIO;
    snprintf(b->werrmsg, sizeof b->werrmsg, "no random bytes for a password");
    return;
  }
  for (size_t i = 0; i < sizeof raw; i++)
    snprintf(b->password + 2 * i, 3, "%02x", raw[i]);
  if (b->port == 0) b->port = pg_free_port();
  if (b->port <= 0) {
    b->werr = EADDRNOTAVAIL;
    snprintf(b->werrmsg, sizeof b->werrmsg,
             "no free TCP port on 127.0.0.1 for the sandbox");
  }
}

/* Worker, once the journal has the sandbox: make the directory (never one
 * that exists), its marker and the password file. */
static void pg_sandbox_make(void *ud) {
  pg_sandbox_op *b = ud;
  const char *dir = b->rec->dir;
  if (mkdir(dir, 0700) != 0) {
    b->werr = errno;
    snprintf(b->werrmsg, sizeof b->werrmsg,
             "cannot create the sandbox directory %s: %s%s", dir,
             strerror(errno),
             errno == EEXIST ? " (it appeared meanwhile; run again)" : "");
    return;
  }
  b->rec->made = 1;
  char *mark = eng_asprintf("%s/" SANDBOX_MARK, dir);
  int mfd = open(mark, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  free(mark);
  if (mfd < 0) {
    b->werr = errno;
    snprintf(b->werrmsg, sizeof b->werrmsg, "cannot write the marker in %s: %s",
             dir, strerror(errno));
    return;
  }
  close(mfd);
  if (b->rec->run_as && chown(dir, b->uid, b->gid) != 0) {
    b->werr = errno;
    snprintf(b->werrmsg, sizeof b->werrmsg, "cannot give %s to user %s: %s",
             dir, b->rec->run_as, strerror(errno));
    return;
  }
  b->pwfile = eng_asprintf("%s/pwfile", dir);
  int fd = open(b->pwfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, b->password, strlen(b->password)) < 0 ||
      write(fd, "\n", 1) != 1 || close(fd) != 0 ||
      (b->rec->run_as && chown(b->pwfile, b->uid, b->gid) != 0)) {
    b->werr = errno ? errno : EIO;
    snprintf(b->werrmsg, sizeof b->werrmsg, "cannot write %s: %s", b->pwfile,
             strerror(b->werr));
    return;
  }
}

/* ---- steps -------------------------------------------------------------- */

static void pg_sandbox_fail_log(pg_sandbox_op *b, int rc, const char *what,
                                const pg_child *c) {
  char how[96];
  char log[1200] = "";
  char *path = eng_asprintf("%s/server.log", b->rec->dir);
  FILE *f = fopen(path, "r");
  if (f) {
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > 1000 ? size - 1000 : 0, SEEK_SET);
    size_t n = fread(log, 1, sizeof log - 1, f);
    log[n] = '\0';
    fclose(f);
  }
  free(path);
  pg_op_fail(&b->op, rc,
             "sandbox: %s failed (%s): %s%s%s; the sandbox directory is %s",
             what, pg_child_how(c, how, sizeof how),
             c->tail[0] ? c->tail : "(no error output)",
             log[0] ? "; server log: " : "", pg_chomp(log), b->rec->dir);
}

static void pg_sandbox_ready(pg_sess *s, void *ud, int rc) {
  pg_sandbox_op *b = ud;
  if (rc != ENG_OK) {
    pg_op_fail(&b->op, rc, "sandbox on port %d: %s failed: %s", b->port,
               b->demo ? "loading the demo data" : "connecting",
               pg_sess_errmsg(s));
    return;
  }
  pg_host->journal_confirm(b->op.e.call, b->token);
  eng_call *call = b->op.e.call;
  char version[96];
  snprintf(version, sizeof version, "%s", b->id.version);
  char *sp = strchr(version, ' ');
  if (sp) *sp = '\0';
  pg_host->output(call, "url", json_string(b->url));
  pg_host->output(call, "admin_url", json_string(b->admin_url));
  pg_host->output(call, "data_dir", json_string(b->rec->data));
  pg_host->output(call, "port", json_integer(b->port));
  pg_host->output(call, "version", json_string(version));
  pg_host->output(call, "database", json_string(b->database));
  pg_host->log(call, ENG_LOG_INFO,
               "sandbox PostgreSQL %s on 127.0.0.1:%d, database %s%s (%s)",
               version, b->port, b->database, b->demo ? " with demo data" : "",
               b->rec->data);
  pg_op_finish(&b->op, ENG_OK);
}

static void pg_sandbox_created_db(pg_sess *s, void *ud, int rc) {
  pg_sandbox_op *b = ud;
  if (rc != ENG_OK) {
    pg_op_fail(&b->op, rc, "sandbox: creating database %s failed: %s",
               b->database, pg_sess_errmsg(s));
    return;
  }
  pg_sess_close(s);
  b->s = pg_sess_open(&b->op, b->url);
  if (b->demo)
    pg_sess_add_script(b->s, "load demo data", pg_demo_sql, NULL, NULL);
  pg_sess_run(b->s, pg_sandbox_ready, b);
}

static void pg_sandbox_connected(pg_sess *s, void *ud, int rc) {
  pg_sandbox_op *b = ud;
  if (rc != ENG_OK) {
    pg_op_fail(&b->op, rc,
               "sandbox on port %d started but connecting failed: "
               "%s",
               b->port, pg_sess_errmsg(s));
    return;
  }
  if (strcmp(b->database, "postgres") != 0) {
    char *q =
        PQescapeIdentifier(pg_sess_conn(s), b->database, strlen(b->database));
    if (!q) {
      pg_op_fail(&b->op, ENG_ERR_INVALID,
                 "cannot quote database name %s (not valid in the "
                 "server's encoding); choose another name",
                 b->database);
      return;
    }
    char *sql = eng_asprintf("CREATE DATABASE %s", q);
    PQfreemem(q);
    pg_sess_add(s, "create database", sql, 0, NULL, NULL, NULL);
    free(sql);
    pg_sess_run(s, pg_sandbox_created_db, b);
    return;
  }
  pg_sandbox_created_db(s, b, ENG_OK);
}

static void pg_sandbox_start_server(pg_sandbox_op *b);

/* Runs argv (NAME in messages) as the sandbox's user in b->child, with
 * on_exit when it ends; a failure to start fails b->op. */
static void pg_sandbox_spawn(pg_sandbox_op *b, const char *name,
                             const char *const *argv,
                             void (*on_exit)(pg_child *c)) {
  eng_spawn_opts o = {0};
  o.size = sizeof o;
  o.argv = argv;
  o.stdin_fd = ENG_STDIO_NULL;
  o.stdout_fd = ENG_STDIO_NULL;
  o.run_as = b->rec->run_as;
  b->child.ud = b;
  b->child.on_exit = on_exit;
  char err[512];
  int rc = pg_child_spawn(&b->child, &b->op, name, &o, err, sizeof err);
  if (rc != ENG_OK) pg_op_fail(&b->op, rc, "sandbox: %s", err);
}

/* Did the server fail because its port was taken meanwhile? */
static int pg_sandbox_port_taken(pg_sandbox_op *b) {
  char buf[4096] = "";
  char *path = eng_asprintf("%s/server.log", b->rec->dir);
  FILE *f = fopen(path, "r");
  free(path);
  if (!f) return 0;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, size > 4000 ? size - 4000 : 0, SEEK_SET);
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  buf[n] = '\0';
  fclose(f);
  return strstr(buf, "Address already in use") != NULL;
}

static void pg_sandbox_started(pg_child *c) {
  pg_sandbox_op *b = c->ud;
  if ((c->status != 0 || c->sig) && b->auto_port && b->port_tries < 3 &&
      pg_sandbox_port_taken(b)) {
    /* the free port found earlier was taken before the server bound it */
    int port = pg_free_port();
    if (port > 0) {
      pg_host->log(b->op.e.call, ENG_LOG_INFO,
                   "port %d was taken meanwhile; trying port %d", b->port,
                   port);
      b->port = port;
      b->port_tries++;
      free(b->admin_url);
      free(b->url);
      b->admin_url = eng_asprintf(
          "postgresql://postgres:%s@127.0.0.1:%d/postgres", b->password, port);
      b->url = pg_url_with_db(b->admin_url, b->database);
      pg_sandbox_start_server(b);
      return;
    }
  }
  if (c->status != 0 || c->sig) {
    pg_sandbox_fail_log(b, ENG_ERR_FAILED, "pg_ctl start", c);
    return;
  }
  b->s = pg_sess_open(&b->op, b->admin_url);
  pg_ident_add(b->s, &b->id);
  pg_sess_run(b->s, pg_sandbox_connected, b);
}

static void pg_sandbox_start_server(pg_sandbox_op *b) {
  /* settings go into postgresql.conf rather than pg_ctl -o, which passes
   * them through a shell */
  char *conf = eng_asprintf("%s/postgresql.conf", b->rec->data);
  FILE *f = fopen(conf, "a");
  int ok = f && fprintf(f,
                        "\n# engine sandbox (the last setting wins)\n"
                        "listen_addresses = '127.0.0.1'\n"
                        "port = %d\n"
                        "unix_socket_directories = ''\n"
                        "fsync = off\n"
                        "synchronous_commit = off\n"
                        "full_page_writes = off\n"
                        "max_connections = 50\n",
                        b->port) > 0;
  if (f && fclose(f) != 0) ok = 0;
  if (!ok) {
    pg_op_fail(&b->op, ENG_ERR_IO, "sandbox: cannot write %s: %s", conf,
               strerror(errno));
    free(conf);
    return;
  }
  free(conf);
  char *log = eng_asprintf("%s/server.log", b->rec->dir);
  const char *argv[] = {b->rec->pg_ctl, "start", "-D", b->rec->data, "-l", log,
                        "-w",           "-t",    "60", NULL};
  pg_sandbox_spawn(b, "pg_ctl", argv, pg_sandbox_started);
  free(log);
}

static void pg_sandbox_initdb_done(pg_child *c) {
  pg_sandbox_op *b = c->ud;
  if (b->pwfile) unlink(b->pwfile);
  if (c->status != 0 || c->sig) {
    pg_sandbox_fail_log(b, ENG_ERR_FAILED, "initdb", c);
    return;
  }
  pg_sandbox_start_server(b);
}

/* The directory, marker and password file exist: initdb. */
static void pg_sandbox_made(void *ud) {
  pg_sandbox_op *b = ud;
  if (b->werr) {
    pg_op_fail(&b->op, ENG_ERR_IO, "sandbox: %s", b->werrmsg);
    return;
  }
  pg_host->log(b->op.e.call, ENG_LOG_INFO, "initdb %s (%s) in %s%s%s",
               b->bin.version, b->bin.path, b->rec->data,
               b->rec->run_as ? " as user " : "",
               b->rec->run_as ? b->rec->run_as : "");
  char *pwopt = eng_asprintf("--pwfile=%s", b->pwfile);
  const char *argv[] = {
      b->bin.path, "-D",   b->rec->data,         "-U",
      "postgres",  pwopt,  "--auth-local=trust", "--auth-host=scram-sha-256",
      "-E",        "UTF8", "--locale=C",         "--no-sync",
      NULL};
  pg_sandbox_spawn(b, "initdb", argv, pg_sandbox_initdb_done);
  free(pwopt);
}

/* Named, not made: journal the sandbox, register its removal at the run's
 * end, then make it. */
static void pg_sandbox_prepared(void *ud) {
  pg_sandbox_op *b = ud;
  if (b->bin.rc != ENG_OK) {
    pg_op_fail(&b->op, b->bin.rc, "sandbox: %s", b->bin.err);
    return;
  }
  if (b->werr) {
    pg_op_fail(&b->op, ENG_ERR_IO, "sandbox: %s", b->werrmsg);
    return;
  }
  pg_host->secret(b->op.e.call, b->password);
  char *bindir = eng_xstrdup(b->bin.path);
  char *slash = strrchr(bindir, '/');
  if (slash) *slash = '\0';
  b->rec->pg_ctl = eng_asprintf("%s/pg_ctl", bindir);
  free(bindir);
  b->admin_url = eng_asprintf("postgresql://postgres:%s@127.0.0.1:%d/postgres",
                              b->password, b->port);
  b->url = pg_url_with_db(b->admin_url, b->database);
  /* journal first, then register the cleanup: whatever happens next, the
   * run end (or `engine cleanup`) finds the cluster */
  json_t *with = json_pack("{s:s, s:s, s:s}", "dir", b->rec->dir, "data_dir",
                           b->rec->data, "pg_ctl", b->rec->pg_ctl);
  if (b->rec->run_as)
    json_object_set_new(with, "run_as", json_string(b->rec->run_as));
  json_t *detail =
      json_pack("{s:s, s:s, s:i, s:s?, s:s, s:{s:s, s:o}}", "data_dir",
                b->rec->data, "dir", b->rec->dir, "port", b->port, "run_as",
                b->rec->run_as, "pg_ctl", b->rec->pg_ctl, "undo", "action",
                "postgres.sandbox_stop", "with", with);
  b->token =
      pg_host->journal_intent(b->op.e.call, "sandbox", b->rec->dir, detail);
  json_decref(detail);
  if (b->token < 0) { /* unrecorded: nothing could clean it up (the host said why) */
    pg_op_finish(&b->op, ENG_ERR_IO);
    return;
  }
  if (pg_host->at_run_end(b->op.e.call, pg_sbx_at_end, b->rec) == ENG_OK)
    b->rec_owned_by_end = 1;
  else
    pg_host->log(b->op.e.call, ENG_LOG_WARN,
                 "cannot register the sandbox's cleanup at run end; stop it "
                 "with pg_ctl stop -D %s",
                 b->rec->data);
  if (pg_op_work(&b->op, pg_sandbox_make, pg_sandbox_made, b) != ENG_OK)
    pg_op_fail(&b->op, ENG_ERR_NOMEM, "sandbox: could not queue the setup");
}

int pg_act_sandbox(eng_call *call, const json_t *params) {
  long long port = pg_pint(params, "port", 0);
  if (port < 0 || port > 65535) {
    pg_host->fail(call,
                  "port %lld is out of range; use 0 (a free port) or "
                  "1024-65535",
                  port);
    return ENG_ERR_INVALID;
  }
  const char *sample = pg_pstr(params, "sample_data");
  if (sample && strcmp(sample, "none") && strcmp(sample, "demo")) {
    pg_host->fail(call, "sample_data '%s' is unknown; use none or demo",
                  sample);
    return ENG_ERR_INVALID;
  }
  const char *db = pg_pstr(params, "database");
  pg_sandbox_op *b = eng_xcalloc(1, sizeof *b);
  pg_op_init(&b->op, call, pg_sandbox_destroy);
  b->rec = eng_xcalloc(1, sizeof *b->rec);
  b->rec->keep = pg_pbool(params, "keep", 0);
  b->port = (int)port;
  b->auto_port = port == 0;
  b->demo = sample && !strcmp(sample, "demo");
  b->database = eng_xstrdup(db && *db ? db : "postgres");
  b->run_dir = eng_xstrdup(pg_host->run_dir(call));
  b->step = eng_xstrdup(pg_host->step_id(call));
  if (geteuid() == 0) {
    struct passwd *pw = getpwnam("postgres");
    if (!pw) pw = getpwnam("nobody");
    if (!pw) {
      pg_op_fail(&b->op, ENG_ERR_UNSUPPORTED,
                 "sandbox: running as root and neither a 'postgres' nor a "
                 "'nobody' user exists; PostgreSQL refuses to run as root: "
                 "create a postgres user (useradd -r postgres)");
      return ENG_OK;
    }
    b->rec->run_as = eng_xstrdup(pw->pw_name);
    b->uid = pw->pw_uid;
    b->gid = pw->pw_gid;
  }
  pg_bin_init(&b->bin, "initdb", 0, pg_pstr(params, "bin_dir"));
  if (pg_op_work(&b->op, pg_sandbox_prepare, pg_sandbox_prepared, b) != ENG_OK)
    pg_op_fail(&b->op, ENG_ERR_NOMEM, "sandbox: could not queue the setup");
  return ENG_OK;
}
