/*
 * pg_recover.c - a throwaway server on a restored data directory
 * (postgres.recover) and its stop (postgres.recover_stop, the undo).
 *
 * recover starts the cluster in DATA_DIR (made by pgbackrest.restore or
 * any restore that leaves recovery settings), waits until recovery
 * reaches its target (pg_get_wal_replay_pause_state() = 'paused', or the
 * server left recovery), and reports the achieved recovery point:
 * pg_last_xact_replay_timestamp(), the replay LSN and the server log's
 * "recovery stopping before ..." / "last completed transaction was at log
 * time ..." lines (the durable record: the timestamp is lost on restart).
 * With promote: true it then promotes the copy.
 *
 * The copy of production data is reachable only through a Unix socket in
 * a private directory (/tmp/engine-recover- and six random characters,
 * 0700, the server user's): no TCP port is opened, and pg_hba.conf of the
 * copy is replaced by `local all all trust`. Settings appended to postgresql.auto.conf
 * (the last setting wins) make the copy safe to start beside production:
 * archive_mode off (it never pushes WAL into the production repository),
 * listen_addresses '', its own socket directory, ssl off, logging to the
 * socket directory's server.log.
 *
 * The server is recorded in the journal (kind "server", id DATA_DIR,
 * temporary) with {"undo": {"action": "postgres.recover_stop"}} before it
 * starts, and host->at_run_end stops it when the run ends, however the
 * step ended, before the restored directory is removed; `engine cleanup`
 * runs the undo after a SIGKILL.
 */
#include "pg_int.h"
#include "pg_recovery_log.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The socket's name only (.s.PGSQL.5432 in a private directory): the copy
 * opens no TCP port, so no port can clash with another server. */
#define PG_RECOVER_PORT 5432
/* How often the replay state is read while recovery runs. */
#define PG_RECOVER_POLL_MS 100
#define PG_RECOVER_SOCK_PREFIX "/tmp/engine-recover-"

typedef enum pg_rec_phase {
  PG_REC_START,    /* pg_ctl start */
  PG_REC_REPLAY,   /* waiting for the target */
  PG_REC_PROMOTE,  /* promoting, waiting until out of recovery */
  PG_REC_DONE
} pg_rec_phase;

typedef struct pg_recover_op {
  pg_op op;
  pg_rec_phase phase;
  char *data;
  char *user; /* role to connect as */
  char *target_time; /* RPO reference, or NULL: the time the target was reached */
  int promote;
  int64_t wait_ms;
  int64_t started_ms;
  int64_t consistent_ms;
  char *run_as;
  uid_t uid;
  gid_t gid;
  char sockdir[64];
  char *url;
  pg_bin bin;
  pg_child child;
  pg_sess *s;
  int64_t token;
  json_t *point; /* the recovery point read at the target */
  char werrmsg[512];
} pg_recover_op;

static void pg_rec_destroy(pg_op *op) {
  pg_recover_op *r = (pg_recover_op *)op;
  free(r->data);
  free(r->user);
  free(r->target_time);
  free(r->run_as);
  free(r->url);
  json_decref(r->point);
  free(r);
}

static void pg_rec_phase_set(pg_recover_op *r, pg_rec_phase to) {
  static const char *const names[] = {"start", "replay", "promote", "done"};
  pg_host->log(r->op.e.call, ENG_LOG_DEBUG, "recover %s: %s -> %s", r->data,
               names[r->phase], names[to]);
  r->phase = to;
}

/* The server log, parsed (pg_recovery_log.c). */
static json_t *pg_rec_log(const char *sockdir) {
  char *path = eng_asprintf("%s/server.log", sockdir);
  FILE *f = fopen(path, "r");
  free(path);
  eng_strbuf b = {0};
  char buf[8192];
  size_t n;
  while (f && (n = fread(buf, 1, sizeof buf, f)) > 0 && b.len < (8u << 20))
    eng_strbuf_add(&b, buf, n);
  if (f) fclose(f);
  json_t *out = pg_recovery_log_parse(b.data ? b.data : "", b.len);
  eng_strbuf_free(&b);
  return out;
}

static void pg_rec_finish(pg_recover_op *r) {
  eng_call *call = r->op.e.call;
  json_t *log = pg_rec_log(r->sockdir);
  const char *k;
  json_t *v;
  json_object_foreach(r->point, k, v) pg_host->output(call, k, json_incref(v));
  pg_host->output(call, "url", json_string(r->url));
  pg_host->output(call, "data_dir", json_string(r->data));
  pg_host->output(call, "socket_dir", json_string(r->sockdir));
  pg_host->output(call, "promoted", json_boolean(r->promote));
  pg_host->output(call, "consistent_ms", json_integer(r->consistent_ms));
  pg_host->output(call, "duration_ms", json_integer(pg_now_ms() - r->started_ms));
  json_t *stop = json_object_get(log, "recovery_stop");
  json_t *last = json_object_get(log, "last_transaction");
  pg_host->output(call, "recovery_stop", stop ? json_incref(stop) : json_null());
  pg_host->output(call, "last_transaction_log", last ? json_incref(last) : json_null());
  pg_host->output(call, "log_lines", json_incref(json_object_get(log, "lines")));
  const json_t *rpo = json_object_get(r->point, "rpo_ms");
  char loss[32] = "unknown";
  if (json_is_integer(rpo))
    snprintf(loss, sizeof loss, "%lld", (long long)json_integer_value(rpo));
  const char *ts = json_string_value(json_object_get(r->point, "replay_timestamp"));
  pg_host->log(call, ENG_LOG_INFO,
               "recovery point %s (LSN %s), data loss %s ms against %s%s%s",
               ts ? ts : "(no transaction replayed)",
               json_string_value(json_object_get(r->point, "replay_lsn")), loss,
               r->target_time ? r->target_time : "the time the target was reached",
               stop ? "; recovery stopping " : "", stop ? json_string_value(stop) : "");
  json_decref(log);
  pg_host->journal_confirm(call, r->token);
  pg_rec_phase_set(r, PG_REC_DONE);
  pg_op_finish(&r->op, ENG_OK);
}

static void pg_rec_poll(pg_op *op);

/* One row: in_recovery, pause state, replay timestamp (RFC 3339 UTC),
 * replay LSN, rpo_ms, now and the reference of rpo_ms (RFC 3339). */
static int pg_rec_state(pg_sess *s, void *ud, PGresult *res) {
  pg_recover_op *r = ud;
  (void)s;
  if (PQntuples(res) != 1 || PQnfields(res) != 7) {
    pg_sess_seterr(s, "unexpected answer to the replay state query");
    return ENG_ERR_PROTOCOL;
  }
  int in_rec = PQgetvalue(res, 0, 0)[0] == 't';
  const char *state = PQgetvalue(res, 0, 1);
  if (r->phase == PG_REC_REPLAY && in_rec && strcmp(state, "paused") != 0)
    return ENG_OK; /* not there yet */
  if (r->phase == PG_REC_PROMOTE && in_rec) return ENG_OK;
  if (r->phase == PG_REC_REPLAY) {
    r->consistent_ms = pg_now_ms() - r->started_ms;
    json_decref(r->point);
    r->point = json_object();
    json_object_set_new(r->point, "state", json_string(in_rec ? "paused" : "recovered"));
    json_object_set_new(r->point, "replay_timestamp",
                        PQgetisnull(res, 0, 2) ? json_null()
                                               : json_string(PQgetvalue(res, 0, 2)));
    json_object_set_new(r->point, "replay_lsn", json_string(PQgetvalue(res, 0, 3)));
    json_object_set_new(r->point, "rpo_ms",
                        PQgetisnull(res, 0, 4)
                            ? json_null()
                            : json_integer(llround(atof(PQgetvalue(res, 0, 4)))));
    json_object_set_new(r->point, "reached_at", json_string(PQgetvalue(res, 0, 5)));
    json_object_set_new(r->point, "target_time", json_string(PQgetvalue(res, 0, 6)));
  }
  r->phase = r->phase == PG_REC_REPLAY && r->promote && in_rec ? PG_REC_PROMOTE
                                                              : PG_REC_DONE;
  return ENG_OK;
}

static void pg_rec_polled(pg_sess *s, void *ud, int rc) {
  pg_recover_op *r = ud;
  if (rc != ENG_OK) {
    json_t *log = pg_rec_log(r->sockdir);
    const char *fatal = json_string_value(json_object_get(log, "fatal"));
    pg_op_fail(&r->op, rc, "recover %s: %s%s%s", r->data,
               fatal ? "the copy stopped: " : "reading the replay state failed: ",
               fatal ? fatal : pg_sess_errmsg(s),
               fatal && strstr(fatal, "before configured recovery target")
                   ? "; the archive holds no WAL up to the target yet (wait "
                     "until the segment holding it is archived, or choose an "
                     "earlier target)"
                   : "");
    json_decref(log);
    return;
  }
  if (r->phase == PG_REC_DONE) {
    pg_rec_finish(r);
    return;
  }
  if (r->phase == PG_REC_PROMOTE && json_object_get(r->point, "state") &&
      !strcmp(json_string_value(json_object_get(r->point, "state")), "paused")) {
    json_object_set_new(r->point, "state", json_string("promoted"));
    pg_host->log(r->op.e.call, ENG_LOG_INFO, "promoting the copy in %s", r->data);
    pg_sess_add(s, "promote", "SELECT pg_catalog.pg_promote(true, 60)", 0, NULL,
                NULL, NULL);
    pg_sess_run(s, pg_rec_polled, r);
    return;
  }
  if (pg_now_ms() - r->started_ms > r->wait_ms) {
    json_t *log = pg_rec_log(r->sockdir);
    char *lines = json_dumps(json_object_get(log, "lines"), JSON_COMPACT);
    pg_op_fail(&r->op, ENG_ERR_TIMEOUT,
               "recover %s: the target was not reached within %lld s (%s); the "
               "server log says %s; is the WAL up to the target in the archive?",
               r->data, (long long)(r->wait_ms / 1000),
               r->phase == PG_REC_PROMOTE ? "promotion" : "replay", lines);
    free(lines);
    json_decref(log);
    return;
  }
  pg_op_timer(&r->op, PG_RECOVER_POLL_MS, pg_rec_poll);
}

static void pg_rec_poll(pg_op *op) {
  pg_recover_op *r = (pg_recover_op *)op;
  const char *ref = r->target_time ? r->target_time : "";
  const char *params[] = {ref};
  pg_sess_add(r->s, "replay state",
              "SELECT pg_catalog.pg_is_in_recovery(), CASE WHEN "
              "pg_catalog.pg_is_in_recovery() THEN "
              "pg_catalog.pg_get_wal_replay_pause_state() ELSE 'not paused' END, "
              "to_char(pg_catalog.pg_last_xact_replay_timestamp() AT TIME ZONE "
              "'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), "
              "coalesce(pg_catalog.pg_last_wal_replay_lsn()::text, ''), "
              "extract(epoch FROM coalesce(nullif($1, '')::timestamptz, "
              "clock_timestamp()) - pg_catalog.pg_last_xact_replay_timestamp()) "
              "* 1000, to_char(clock_timestamp() AT TIME ZONE 'UTC', "
              "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
              "to_char(coalesce(nullif($1, '')::timestamptz, clock_timestamp()) "
              "AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
              1, params, pg_rec_state, r);
  pg_sess_run(r->s, pg_rec_polled, r);
}

static void pg_rec_started(pg_child *c) {
  pg_recover_op *r = c->ud;
  if (c->status != 0 || c->sig) {
    json_t *log = pg_rec_log(r->sockdir);
    char *lines = json_dumps(json_object_get(log, "lines"), JSON_COMPACT);
    char how[96];
    pg_op_fail(&r->op, ENG_ERR_FAILED,
               "recover: pg_ctl start on %s failed (%s): %s; recovery lines of "
               "the log (%s/server.log): %s",
               r->data, pg_child_how(c, how, sizeof how),
               c->tail[0] ? c->tail : "(no error output)", r->sockdir, lines);
    free(lines);
    json_decref(log);
    return;
  }
  pg_host->log(r->op.e.call, ENG_LOG_INFO,
               "the copy accepts connections (%.1f s); waiting for its "
               "recovery target", (double)(pg_now_ms() - r->started_ms) / 1000.0);
  pg_rec_phase_set(r, PG_REC_REPLAY);
  r->s = pg_sess_open(&r->op, r->url);
  pg_rec_poll(&r->op);
}

/* ---- preparing the copy --------------------------------------------------------- */

/* Worker: the data directory's major version and pg_ctl of that version,
 * the private socket directory, the settings and pg_hba.conf of the copy. */
static void pg_rec_prepare(void *ud) {
  pg_recover_op *r = ud;
  char *path = eng_asprintf("%s/PG_VERSION", r->data);
  FILE *f = fopen(path, "r");
  free(path);
  int major = 0;
  if (!f || fscanf(f, "%d", &major) != 1 || major < 10) {
    snprintf(r->werrmsg, sizeof r->werrmsg,
             "%s has no readable PG_VERSION: not a restored data directory",
             r->data);
    if (f) fclose(f);
    return;
  }
  fclose(f);
  if (!r->bin.override[0]) {
    char *debian = eng_asprintf("/usr/lib/postgresql/%d/bin/pg_ctl", major);
    if (access(debian, X_OK) == 0)
      snprintf(r->bin.override, sizeof r->bin.override,
               "/usr/lib/postgresql/%d/bin", major);
    free(debian);
  }
  r->bin.server_num = major * 10000;
  pg_bin_find(&r->bin);
  if (r->bin.rc == ENG_OK && r->bin.version_num / 10000 != major) {
    r->bin.rc = ENG_ERR_NOTFOUND;
    snprintf(r->bin.err, sizeof r->bin.err,
             "the data directory is PostgreSQL %d and pg_ctl %s is %s: give "
             "bin_dir of PostgreSQL %d's programs", major, r->bin.path,
             r->bin.version, major);
  }
  if (r->bin.rc != ENG_OK) return;
  snprintf(r->sockdir, sizeof r->sockdir, PG_RECOVER_SOCK_PREFIX "XXXXXX");
  if (!mkdtemp(r->sockdir) ||
      (r->run_as && chown(r->sockdir, r->uid, r->gid) != 0)) {
    snprintf(r->werrmsg, sizeof r->werrmsg, "cannot make %s: %s", r->sockdir,
             strerror(errno));
    return;
  }
  char *conf = eng_asprintf("%s/postgresql.auto.conf", r->data);
  char *hba = eng_asprintf("%s/pg_hba.conf", r->data);
  f = fopen(conf, "a");
  int ok = f && fprintf(f,
                        "\n# engine recover: a throwaway copy (the last "
                        "setting wins)\n"
                        "archive_mode = 'off'\n"
                        "listen_addresses = ''\n"
                        "port = %d\n"
                        "unix_socket_directories = '%s'\n"
                        "hot_standby = 'on'\n"
                        "ssl = 'off'\n"
                        "logging_collector = 'off'\n"
                        "log_destination = 'stderr'\n",
                        PG_RECOVER_PORT, r->sockdir) > 0;
  if (f && fclose(f) != 0) ok = 0;
  FILE *h = ok ? fopen(hba, "w") : NULL;
  ok = h && fputs("# engine recover: the copy's socket only\n"
                  "local all all trust\n", h) >= 0;
  if (h && fclose(h) != 0) ok = 0;
  if (!ok)
    snprintf(r->werrmsg, sizeof r->werrmsg, "cannot write %s or %s: %s", conf,
             hba, strerror(errno));
  free(conf);
  free(hba);
}

static void pg_rec_stop_at_end(pg_recover_op *r, const char *pg_ctl);

static void pg_rec_prepared(void *ud) {
  pg_recover_op *r = ud;
  if (r->bin.rc != ENG_OK || r->werrmsg[0]) {
    pg_op_fail(&r->op, r->bin.rc != ENG_OK ? r->bin.rc : ENG_ERR_IO,
               "recover: %s", r->bin.rc != ENG_OK ? r->bin.err : r->werrmsg);
    return;
  }
  char *bindir = eng_xstrdup(r->bin.path);
  char *slash = strrchr(bindir, '/');
  if (slash) *slash = '\0';
  char *pg_ctl = eng_asprintf("%s/pg_ctl", bindir);
  free(bindir);
  json_t *with = json_pack("{s:s, s:s, s:s}", "data_dir", r->data, "pg_ctl",
                           pg_ctl, "socket_dir", r->sockdir);
  if (r->run_as) json_object_set_new(with, "run_as", json_string(r->run_as));
  json_t *detail = json_pack("{s:s, s:s, s:s, s:{s:s, s:o}}", "data_dir", r->data,
                             "socket_dir", r->sockdir, "disposition", "temporary",
                             "undo", "action", "postgres.recover_stop", "with",
                             with);
  r->token = pg_host->journal_intent(r->op.e.call, "server", r->data, detail);
  json_decref(detail);
  if (r->token < 0) {
    free(pg_ctl);
    pg_op_finish(&r->op, ENG_ERR_IO);
    return;
  }
  pg_rec_stop_at_end(r, pg_ctl);
  char *q = pg_ci_quote(r->sockdir);
  char *u = pg_ci_quote(r->user);
  r->url = eng_asprintf("host=%s port=%d user=%s dbname=postgres", q,
                        PG_RECOVER_PORT, u);
  free(q);
  free(u);
  char *log = eng_asprintf("%s/server.log", r->sockdir);
  const char *argv[] = {pg_ctl, "start", "-D", r->data, "-l", log, "-w",
                        "-t", "3600", NULL};
  eng_spawn_opts o = {0};
  o.size = sizeof o;
  o.argv = argv;
  o.stdin_fd = ENG_STDIO_NULL;
  o.stdout_fd = ENG_STDIO_NULL;
  o.run_as = r->run_as;
  r->child.ud = r;
  r->child.on_exit = pg_rec_started;
  char err[512];
  pg_host->log(r->op.e.call, ENG_LOG_INFO, "starting PostgreSQL %s on %s "
               "(socket %s, no TCP)", r->bin.version, r->data, r->sockdir);
  int rc = pg_child_spawn(&r->child, &r->op, "pg_ctl", &o, err, sizeof err);
  free(log);
  free(pg_ctl);
  if (rc != ENG_OK) pg_op_fail(&r->op, rc, "recover: %s", err);
}

/* Is a server running on data (postmaster.pid names a live process)? */
static int pg_rec_server_runs(const char *data) {
  char *pidfile = eng_asprintf("%s/postmaster.pid", data);
  FILE *f = fopen(pidfile, "r");
  free(pidfile);
  if (!f) return 0;
  long pid = 0;
  int ok = fscanf(f, "%ld", &pid) == 1;
  fclose(f);
  return ok && pid > 0 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

int pg_act_recover(eng_call *call, const json_t *params) {
  const char *data = pg_pstr(params, "data_dir");
  if (!data || data[0] != '/') {
    pg_host->fail(call, "data_dir '%s' must be the absolute path of a restored "
                        "data directory", data ? data : "");
    return ENG_ERR_INVALID;
  }
  if (pg_rec_server_runs(data)) {
    pg_host->fail(call, "refused: a server already runs on %s; nothing was "
                        "started", data);
    return ENG_ERR_REFUSED;
  }
  if (pg_host->guard_target(call, ENG_TARGET_FILE, data, NULL) != ENG_OK)
    return ENG_ERR_REFUSED;
  const char *user = pg_pstr(params, "user");
  const char *target = pg_pstr(params, "target_time");
  pg_recover_op *r = eng_xcalloc(1, sizeof *r);
  pg_op_init(&r->op, call, pg_rec_destroy);
  r->data = eng_xstrdup(data);
  r->user = eng_xstrdup(user && *user ? user : "postgres");
  r->target_time = target && *target ? eng_xstrdup(target) : NULL;
  r->promote = pg_pbool(params, "promote", 0);
  r->wait_ms = pg_pint(params, "wait", 3600000);
  r->started_ms = pg_now_ms();
  if (geteuid() == 0) {
    struct passwd *pw = getpwnam("postgres");
    if (!pw) {
      pg_op_fail(&r->op, ENG_ERR_UNSUPPORTED,
                 "recover: running as root and no 'postgres' user exists; "
                 "PostgreSQL refuses to run as root");
      return ENG_OK;
    }
    r->run_as = eng_xstrdup(pw->pw_name);
    r->uid = pw->pw_uid;
    r->gid = pw->pw_gid;
  }
  pg_bin_init(&r->bin, "pg_ctl", 0, pg_pstr(params, "bin_dir"));
  if (pg_op_work(&r->op, pg_rec_prepare, pg_rec_prepared, r) != ENG_OK)
    pg_op_fail(&r->op, ENG_ERR_NOMEM, "recover: could not queue the setup");
  return ENG_OK;
}

/* ---- postgres.recover_stop ------------------------------------------------------ */

typedef struct pg_rec_stop {
  pg_op op;
  char *data, *sockdir;
  pg_child child;
  int stopped;
} pg_rec_stop;

static void pg_rec_stop_destroy(pg_op *op) {
  pg_rec_stop *t = (pg_rec_stop *)op;
  free(t->data);
  free(t->sockdir);
  free(t);
}

static void pg_rec_stop_rm(void *ud) {
  pg_rec_stop *t = ud;
  if (t->sockdir) pg_rmtree(t->sockdir);
}

static void pg_rec_stop_end(void *ud) {
  pg_rec_stop *t = ud;
  if (pg_rec_server_runs(t->data)) {
    pg_op_fail(&t->op, ENG_ERR_FAILED,
               "the copy on %s still runs: %s; stop it with pg_ctl stop -D %s "
               "-m immediate", t->data, t->child.tail[0] ? t->child.tail : "",
               t->data);
    return;
  }
  pg_host->journal_removed(t->op.e.call, "server", t->data);
  pg_host->output(t->op.e.call, "stopped", json_boolean(t->stopped));
  pg_host->log(t->op.e.call, ENG_LOG_INFO, "the copy on %s is %s", t->data,
               t->stopped ? "stopped" : "not running");
  pg_op_finish(&t->op, ENG_OK);
}

static void pg_rec_stopped(pg_child *c) {
  pg_rec_stop *t = c->ud;
  t->stopped = c->status == 0 && !c->sig;
  if (pg_op_work(&t->op, pg_rec_stop_rm, pg_rec_stop_end, t) != ENG_OK)
    pg_op_finish(&t->op, ENG_ERR_NOMEM);
}

/* Stop the copy on data (when it runs) and remove its socket directory,
 * completing call; pg_ctl and run_as may be NULL. */
static void pg_rec_stop_run(eng_call *call, const char *data, const char *sock,
                            const char *pg_ctl, const char *run_as) {
  pg_rec_stop *t = eng_xcalloc(1, sizeof *t);
  pg_op_init(&t->op, call, pg_rec_stop_destroy);
  t->data = eng_xstrdup(data);
  t->sockdir = sock && *sock ? eng_xstrdup(sock) : NULL;
  const char *argv[] = {pg_ctl && *pg_ctl ? pg_ctl : "pg_ctl", "stop", "-D",
                        data, "-m", "fast", "-w", "-t", "60", NULL};
  eng_spawn_opts o = {0};
  o.size = sizeof o;
  o.argv = argv;
  o.stdin_fd = ENG_STDIO_NULL;
  o.stdout_fd = ENG_STDIO_NULL;
  o.run_as = run_as && *run_as ? run_as : NULL;
  t->child.ud = t;
  t->child.on_exit = pg_rec_stopped;
  char err[512];
  if (!pg_rec_server_runs(data) ||
      pg_child_spawn(&t->child, &t->op, "pg_ctl", &o, err, sizeof err) != ENG_OK) {
    t->child.status = 1;
    pg_rec_stopped(&t->child);
  }
}

int pg_act_recover_stop(eng_call *call, const json_t *params) {
  const char *data = pg_pstr(params, "data_dir");
  const char *sock = pg_pstr(params, "socket_dir");
  if (!data || data[0] != '/' ||
      (sock && strncmp(sock, PG_RECOVER_SOCK_PREFIX, strlen(PG_RECOVER_SOCK_PREFIX)))) {
    pg_host->fail(call, "data_dir and socket_dir must be the paths the "
                        "recover step's journal entry records");
    return ENG_ERR_INVALID;
  }
  if (!pg_host->journal_owned(call, "server", data)) {
    pg_host->fail(call, "refused: no server this run (or the run being cleaned "
                        "up) started runs on %s; nothing was stopped", data);
    return ENG_ERR_REFUSED;
  }
  pg_rec_stop_run(call, data, sock, pg_pstr(params, "pg_ctl"),
                  pg_pstr(params, "run_as"));
  return ENG_OK;
}

/* ---- the run's end: the copy never outlives the run ---------------------------- */

/* What the run-end hook needs; outlives the step (freed by the hook). */
typedef struct pg_rec_end {
  char *data, *sock, *pg_ctl, *run_as;
} pg_rec_end;

static int pg_rec_at_end(eng_call *end_call, void *ud) {
  pg_rec_end *e = ud;
  pg_rec_stop_run(end_call, e->data, e->sock, e->pg_ctl, e->run_as);
  free(e->data);
  free(e->sock);
  free(e->pg_ctl);
  free(e->run_as);
  free(e);
  return ENG_OK;
}

/* Stop the copy when the run ends, also when the step failed after the
 * server started (a temporary resource of a failed step would otherwise
 * wait for `engine cleanup`). */
static void pg_rec_stop_at_end(pg_recover_op *r, const char *pg_ctl) {
  pg_rec_end *e = eng_xcalloc(1, sizeof *e);
  e->data = eng_xstrdup(r->data);
  e->sock = eng_xstrdup(r->sockdir);
  e->pg_ctl = eng_xstrdup(pg_ctl);
  e->run_as = r->run_as ? eng_xstrdup(r->run_as) : NULL;
  if (pg_host->at_run_end(r->op.e.call, pg_rec_at_end, e) != ENG_OK) {
    pg_host->log(r->op.e.call, ENG_LOG_WARN,
                 "cannot register the copy's stop at run end; stop it with "
                 "pg_ctl stop -D %s", r->data);
    free(e->data);
    free(e->sock);
    free(e->pg_ctl);
    free(e->run_as);
    free(e);
  }
}
