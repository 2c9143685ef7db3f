/*
 * pg_int.h - declarations shared between the files of the postgres plugin.
 *
 * Layout:
 *   pg_plugin.c          descriptor: actions, parameters, outputs, init
 *   pg_util.c            the host table, clocks, strings, parameter access,
 *                        the dump's format choice (the bottom: calls
 *                        nothing here)
 *   pg_op.c              one running action: cancellation, child processes,
 *                        worker jobs, failure messages
 *   pg_conn.c            asynchronous libpq session: connect + a queue of
 *                        queries, driven by the host's socket watches
 *   pg_url.c             connection strings: parse, display, derive URLs,
 *                        argv/env for client programs
 *   pg_proc.c            finding client/server binaries by version
 *   pg_stream.c          pg_out (a source -> a host stream: local file or
 *                        s3://) and file hashing/format detection on
 *                        worker threads
 *   pg_actions_sql.c     ping, query, row_counts, compare, verify,
 *                        connections, create_database, drop_database, pg.query
 *   pg_actions_dump.c    dump, dump_globals
 *   pg_actions_health.c  health (checks on the statistics views)
 *   pg_health_thr.c      health's thresholds: parsing, levels (pure)
 *   pg_actions_maint.c   maintenance (VACUUM, ANALYZE, REINDEX)
 *   pg_actions_restore.c restore
 *   pg_sandbox.c         sandbox (throwaway cluster)
 *   pg_recover.c         recover (a throwaway server on a restored data
 *                        directory, its recovery point) and recover_stop
 *   pg_recovery_log.c    a server log's lines about the end of a recovery
 *                        (pure)
 *
 * Allocation goes through <engine/mem.h> (eng_xmalloc, eng_xstrdup,
 * eng_asprintf, eng_strbuf ...: they abort when memory is exhausted, so no
 * call site checks for NULL).
 *
 * Everything runs on the loop thread except the functions documented as
 * worker functions (pg_stream.c, pg_proc.c lookups).
 */
#ifndef PG_INT_H
#define PG_INT_H

#include <engine/mem.h>
#include <engine/plugin.h>
#include <engine/op.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The host table, set once by init() before any action runs. */
extern const eng_host *pg_host;

/* ---- small utilities (pg_util.c) ------------------------------------------ */

/* Parameter access. pg_pstr returns NULL when absent or JSON null. */
const char *pg_pstr(const json_t *p, const char *name);
long long pg_pint(const json_t *p, const char *name, long long def);
double pg_pnum(const json_t *p, const char *name, double def);
int pg_pbool(const json_t *p, const char *name, int def);

/* The compress parameter: *level 0-9 for pg_dump (-1: not given) or the
 * engine's codec in engine[] ("zstd:3", "gzip:6"). ENG_OK or an error
 * after fail(). */
int pg_parse_compress(eng_call *call, const json_t *v, int *level,
                      char *engine, size_t elen);
int pg_compress_parse(const json_t *v, int *level, char *engine, size_t elen,
                      char *err, size_t errlen);
/* What a dump will write: the format (c, d, p, t), pg_dump's level (-1:
 * none given to it) and the engine's codec, from the parameters and the
 * file's name, with why (the defaults' reasons). Pure: the action and
 * `engine plan` share it. 0, or -1 with the message in err. */
typedef struct pg_dump_choice {
  char fmt;
  int level;
  char ecomp[16];
  int from_name;    /* the format came from the file's name */
  int default_comp; /* the compression is the default */
} pg_dump_choice;
int pg_dump_choose(const json_t *params, const char *file, int globals,
                   int remote, pg_dump_choice *ch, char *err, size_t n);
/* SHA-256 of a string, as hex. */
void pg_sha256_text(const char *s, char hex[65]);

/* eng_action.describe of dump and restore: what `engine plan` shows. */
void pg_describe_dump(const json_t *params, char *buf, size_t n);
void pg_describe_restore(const json_t *params, char *buf, size_t n);
/* Parallel jobs by default: the number of cores, 1 to 4. */
int pg_default_jobs(void);
/* pg_dump's compression of custom and directory archives when `compress`
 * is not given (pg_dump's own default is 6; docs/performance.md). */
#define PG_DEFAULT_ARCHIVE_LEVEL 1
/* The format a file name asks for: "NAME/" directory, .sql plain,
 * .sql.gz plain + gzip, .sql.zst plain + zstd, .tar (.tar.gz, .tar.zst)
 * tar, anything else (.dump) custom; the engine's codec into comp. */
char pg_format_by_name(const char *file, char *comp, size_t n);
/* `compress`'s check (eng_param_check_fn) */
int pg_check_compress(const json_t *v, char *err, size_t errlen);
/* The text forms pg_check_compress accepts (eng_param.forms): none, 0-9,
 * gzip[:1-9], zstd[:1-19], or empty (none given). */
#define PG_COMPRESS_FORMS \
  "none|0*[0-9]|gzip(?::0*[1-9])?|zstd(?::0*(?:[1-9]|1[0-9]))?|"

/* RFC 3339 UTC with milliseconds: "2025-11-21T19:42:00.123Z". */
void pg_now_rfc3339(char buf[32]);
int64_t pg_now_ms(void); /* monotonic clock, ms */
/* Strip trailing newlines/spaces in place; returns s. */
char *pg_chomp(char *s);

/* ---- one running action ------------------------------------------------- */

typedef struct pg_sess pg_sess;
typedef struct pg_op pg_op;
typedef struct pg_child pg_child;

#define PG_OP_MAX_SESS 4
#define PG_OP_MAX_KIDS 4

struct pg_op {
  eng_op e; /* the life cycle (<engine/op.h>): call, finished, cancelled */
  pg_sess *sess[PG_OP_MAX_SESS];
  /* set by pg_conn.c when it registers a session */
  void (*sess_cancel)(pg_sess *s);
  void (*sess_close)(pg_sess *s);
  pg_child *kids[PG_OP_MAX_KIDS]; /* running children */
  void (*timer_cb)(pg_op *op);
  /* Optional: called on cancellation instead of pg_op_finish(CANCELLED)
   * (restore uses it to drop the database it created first). */
  void (*cancel)(pg_op *op);
  /* Frees the action's state (the struct that embeds this op). */
  void (*destroy)(pg_op *op);
};

/* Set up the op at the start of an action; registers on_cancel. */
void pg_op_init(pg_op *op, eng_call *call, void (*destroy)(pg_op *op));
/* Finish: closes sessions, stops the timer, kills children still running
 * and calls host->done(rc) once nothing is outstanding. Idempotent. */
void pg_op_finish(pg_op *op, int rc);
/* host->fail(msg) then pg_op_finish(rc). */
void pg_op_fail(pg_op *op, int rc, const char *fmt, ...) ENG_PRINTF(3, 4);
/* Run fn on a worker thread, then after() on the loop unless the op
 * finished meanwhile. Returns ENG_OK or an error (after nothing ran). */
int pg_op_work(pg_op *op, void (*fn)(void *ud), void (*after)(void *ud),
               void *ud);
/* Keep the op from completing until pg_op_release (the call stays valid
 * for the work that holds it). */
void pg_op_hold(pg_op *op);
void pg_op_release(pg_op *op);
/* One-shot timer owned by the op (replaces a running one). */
void pg_op_timer(pg_op *op, uint64_t ms, void (*cb)(pg_op *op));

/* A child process of an op. Embed it in the action's state: it must stay
 * valid until the process exited. */
struct pg_child {
  pg_op *op;
  eng_proc *proc;
  const char *name; /* "pg_dump", for messages */
  int running;
  int64_t status;
  int sig;
  char tail[2048]; /* last stderr lines, copied at exit */
  void (*on_exit)(pg_child *c);
  void (*on_stdout)(pg_child *c, const char *buf, size_t len);
  void *ud;
};

/* Spawn with opts (argv/env/cwd/stdio/run_as are used; callbacks are set
 * here). Returns ENG_OK or an error after logging nothing: the caller
 * fails with a message. */
int pg_child_spawn(pg_child *c, pg_op *op, const char *name,
                   const eng_spawn_opts *opts, char *err, size_t errlen);
/* "exited with status 3" / "killed by signal 9" */
const char *pg_child_how(const pg_child *c, char *buf, size_t n);

/* ---- asynchronous libpq session (pg_conn.c) ----------------------------- */

/* Result handler of one queued query: return ENG_OK to go on, or an error
 * code (after pg_sess_seterr for the message) to stop the sequence. The
 * result is freed after the handler returns. */
typedef int (*pg_res_fn)(pg_sess *s, void *ud, PGresult *res);
/* End of the sequence: rc ENG_OK when every queued query succeeded. The
 * session stays connected: the handler may queue more and run again, or
 * close it. */
typedef void (*pg_end_fn)(pg_sess *s, void *ud, int rc);

/* A session on `conninfo` (URL or key=value, "" = libpq's environment);
 * connects at the first pg_sess_run. Owned by op (closed at finish). */
pg_sess *pg_sess_open(pg_op *op, const char *conninfo);
/* Queue a query. `label` names it in messages ("row counts"). params are
 * copied; n may be 0. */
void pg_sess_add(pg_sess *s, const char *label, const char *sql, int n,
                 const char *const *params, pg_res_fn fn, void *ud);
/* Queue a multi-statement script (simple protocol, no parameters). */
void pg_sess_add_script(pg_sess *s, const char *label, const char *sql,
                        pg_res_fn fn, void *ud);
/* Connect if needed and run the queue; `end` runs once: usually later from
 * the loop, but before pg_sess_run returns when libpq fails at once (a
 * malformed option): touch nothing after calling pg_sess_run. */
void pg_sess_run(pg_sess *s, pg_end_fn end, void *ud);
/* Close now (stop watches, PQfinish); no callback runs afterwards. */
void pg_sess_close(pg_sess *s);
/* Error text of the last failure (libpq's, one line, no password). */
const char *pg_sess_errmsg(const pg_sess *s);
/* SQLSTATE of the last failed query, or "". */
const char *pg_sess_sqlstate(const pg_sess *s);
void pg_sess_seterr(pg_sess *s, const char *fmt, ...) ENG_PRINTF(2, 3);
PGconn *pg_sess_conn(const pg_sess *s);
/* "app@127.0.0.1:5432/shop": who/where, never the password. */
const char *pg_sess_display(const pg_sess *s);
/* The session runs a query: ask the server to cancel it from a second
 * connection (pg_cancel_backend), holding op until that is done (at most
 * a few seconds). Closing the connection alone leaves the query running
 * on the server until it next tries to send. No-op when idle. */
void pg_sess_cancel_remote(pg_sess *s);
/* Connect timeout in ms (default 10 s or connect_timeout of the URL). */
void pg_sess_set_connect_timeout(pg_sess *s, int64_t ms);
/* Stay quiet about notices (NOTICE from DROP ... IF EXISTS). */
void pg_sess_quiet(pg_sess *s, int quiet);

/* What a connection reports about its server. */
typedef struct pg_ident {
  int version_num;    /* server_version_num */
  char version[96];   /* server_version: "15.20 (Debian ...)" */
  char sysid[32];     /* system_identifier, or "" when not readable */
  char database[256]; /* current_database() */
  char user[256];
  int in_recovery;
  long long db_bytes; /* pg_database_size(current_database()) */
  char host[512]; /* PQhost */
  char port[16];  /* PQport */
} pg_ident;

/* Queue the identity query; *id is filled when it ran. */
void pg_ident_add(pg_sess *s, pg_ident *id);
/* "HOST:PORT/DBNAME" of a database on id's server (malloc'd). */
char *pg_ident_target(const pg_ident *id, const char *dbname);
/* Check a database target with the host's guards, with the sysid as
 * evidence. Returns ENG_OK or ENG_ERR_REFUSED. */
int pg_guard_db(pg_op *op, const pg_ident *id, const char *dbname);
/* Check SQL about to run on id's database with the host's guards
 * (host->guard_sql: each database it touches, what it does to it, what
 * cannot be verified); flags ENG_SQL_READ_ONLY inside a READ ONLY
 * transaction. Returns ENG_OK or ENG_ERR_REFUSED. */
int pg_guard_sql(pg_op *op, const pg_ident *id, const char *sql,
                 unsigned flags);
/* A hint for a connection error code, to complete a message. */
const char *pg_conn_hint(int rc);
/* Map a SQLSTATE to an engine error code. */
int pg_sqlstate_rc(const char *sqlstate);

/* ---- connection strings (pg_url.c) -------------------------------------- */

/* The url parameter, or $DATABASE_URL, or "" (libpq environment). */
const char *pg_url_param(const json_t *params, const char *name);
/* The connection an action uses: the url_name parameter (or its default,
 * pg_url_param), checked with pg_ci_check, with its database replaced by
 * the db_name parameter when that is given (NULL: no such parameter).
 * malloc'd; NULL with *rc after host->fail() when it is not valid. */
char *pg_url_conn(eng_call *call, const json_t *params, const char *url_name,
                  const char *db_name, int *rc);
/* Parse with PQconninfoParse; NULL and *err (malloc'd, no secrets) on a
 * malformed string. Free with PQconninfoFree. */
PQconninfoOption *pg_ci_parse(const char *conninfo, char **err);
const char *pg_ci_get(const PQconninfoOption *o, const char *kw);
/* Register the password (if any) of conninfo with host->secret. Returns
 * ENG_OK or ENG_ERR_INVALID after host->fail() naming the problem. */
int pg_ci_check(eng_call *call, const char *conninfo, const char *param);
/* Ports are numbers (a comma-separated list, one per host): 1, else 0. */
int pg_ci_ports_ok(const PQconninfoOption *o);
/* postgresql:// URL for the same server with another database (NULL keeps
 * the original), percent-encoded. malloc'd. */
char *pg_ci_url(const PQconninfoOption *o, const char *dbname);
char *pg_url_with_db(const char *conninfo, const char *dbname);
/* "user@host:port/db" for messages: never the password. malloc'd. */
char *pg_ci_display(const PQconninfoOption *o);
char *pg_url_display(const char *conninfo);
/* The database name of a connection string, or NULL (malloc'd). */
char *pg_url_dbname(const char *conninfo);

/* argv/env for a client program (pg_dump, psql ...). */
typedef struct pg_argv {
  char **v;
  size_t n, cap;
} pg_argv;
void pg_argv_add(pg_argv *a, const char *s);
void pg_argv_addf(pg_argv *a, const char *fmt, ...) ENG_PRINTF(2, 3);
void pg_argv_free(pg_argv *a);
/* Adds -h/-p/-U and -d "dbname='...'" (dbname NULL: from conninfo) to
 * argv, and PGPASSWORD / other PG* variables to env. The password is
 * registered as a secret. dbflag is "-d" (or "-l" for pg_dumpall when
 * it needs a database name instead of a conninfo). */
int pg_ci_client_args(eng_call *call, const char *conninfo, const char *dbname,
                      const char *dbflag, pg_argv *argv, pg_argv *env,
                      char **err);
/* Quote a value for a conninfo string: 'a\'b'. malloc'd. */
char *pg_ci_quote(const char *v);

/* ---- binaries (pg_proc.c) ----------------------------------------------- */

/* Worker-side lookup of a PostgreSQL program. */
typedef struct pg_bin {
  /* in */
  char tool[32];       /* "pg_dump" */
  int server_num;      /* server_version_num, or 0 for "newest" */
  char override[4096]; /* bin_dir parameter, or "" */
  /* out */
  int rc;
  char path[4096];
  char version[64]; /* "15.20" */
  int version_num;  /* 150020 */
  char found[2048]; /* "15.20 (/usr/lib/postgresql/15/bin), ..." */
  char err[8192];
} pg_bin;

void pg_bin_init(pg_bin *b, const char *tool, int server_num,
                 const char *override);
/* Blocking: run on a worker thread. */
void pg_bin_find(pg_bin *b);
/* What to do about a failed pg_dump/pg_restore/psql, from its stderr. */
const char *pg_tool_hint(const char *stderr_tail, int restoring);
/* "15" or "9.6" of a version number. */
void pg_version_major(int num, char *buf, size_t n);

/* The start of an age-encrypted file, and what to say when no key came. */
#define PG_AGE_HEAD "age-encryption.org/v1\n"
#define PG_AGE_HINT                                                            \
  "is encrypted with age: give its identity (AGE-SECRET-KEY-1...) as "        \
  "encryption_key, encryption_key_file or encryption_key_env"

/* ---- streams and files (pg_stream.c) ------------------------------------ */

typedef struct pg_out pg_out;
/* Open a host stream writer for url (a local path, file://, s3://...);
 * opts (borrowed) as host->stream_open_write takes them. NULL and *rc
 * after the host recorded the failure. */
pg_out *pg_out_open(pg_op *op, const char *url, const json_t *opts, int *rc);
/* Backpressure and failure: pause(ud, 1/0) stops/restarts the source;
 * stop(ud) is called once when a write failed (kill pg_dump). */
void pg_out_source(pg_out *o, void (*pause)(void *ud, int paused),
                   void (*stop)(void *ud), void *ud);
/* Copy len bytes in (the source's buffer may be reused on return). */
void pg_out_data(pg_out *o, const char *buf, size_t len);
/* Flush and commit; cb(ud, rc, info) once (info: url, bytes, sha256 ...,
 * owned by cb; NULL on failure). Holds the op until then. */
void pg_out_end(pg_out *o, void (*cb)(void *ud, int rc, json_t *info),
                void *ud);
/* Discard everything (no partial object/file remains). Idempotent. */
void pg_out_abort(pg_out *o);
void pg_out_free(pg_out *o); /* aborts when not finished */
int pg_out_failed(const pg_out *o); /* error code of a failed write, or 0 */
int64_t pg_out_received(const pg_out *o);

/* Archive formats that restore recognises. */
typedef enum pg_fmt {
  PG_FMT_UNKNOWN = 0,
  PG_FMT_CUSTOM,
  PG_FMT_TAR,
  PG_FMT_DIRECTORY,
  PG_FMT_PLAIN,
  PG_FMT_GZIP, /* gzip'd plain SQL or custom */
  PG_FMT_ZSTD
} pg_fmt;
const char *pg_fmt_name(pg_fmt f);

/* Worker job: inspect a backup (format, size, optional SHA-256). */
typedef struct pg_inspect {
  char *path;
  int want_sha;
  /* out */
  pg_fmt fmt;
  int64_t bytes;
  char sha256[65];
  int plain_truncated; /* pg_dump plain output without its end marker */
  int err;             /* errno, or 0 */
  char errmsg[512];
} pg_inspect;
void pg_inspect_run(void *ud); /* worker */
/* SHA-256 over a directory's regular files, in byte-wise name order,
 * concatenated (what dump reports for the directory format). Worker. */
int pg_sha256_dir(const char *dir, char hex[65], int64_t *bytes, char *err,
                  size_t n);
int pg_sha256_file(const char *path, char hex[65], int64_t *bytes);
/* The 'file' parameter without a leading file://. When it is empty, fails
 * call with "parameter 'file' is empty; HINT" and returns NULL. */
/* The age key (identity or recipient) of the encryption_key,
 * encryption_key_file or encryption_key_env parameter, at most one given:
 * its text (the caller frees; every key line is registered as a secret);
 * NULL without one, or NULL with *rc set and the call failed when the file
 * or variable cannot be read. */
char *pg_age_key(eng_call *call, const json_t *params, int *rc);
const char *pg_file_param(eng_call *call, const json_t *params,
                          const char *hint);
/* mkdir -p of the parent directory of path. */
int pg_mkdir_parent(const char *path);
int pg_mkdir_p(const char *dir, int mode);
/* rm -rf (worker). */
int pg_rmtree(const char *dir);

/* Plain pg_dump/pg_dumpall output markers. */
#define PG_PLAIN_HEAD "-- PostgreSQL database"
#define PG_PLAIN_END "dump complete"

/* ---- typed rows (pg_actions_sql.c) -------------------------------------- */
json_t *pg_value_json(const PGresult *res, int row, int col);
json_t *pg_rows_json(const PGresult *res, size_t max_rows);

/* ---- shared SQL helpers (pg_actions_sql.c) ------------------------------ */
/* {"undo": {"action": "postgres.drop_database", "with": {...}}, ...} */
json_t *pg_undo_detail(const char *admin_url, const char *db);
char *pg_create_db_sql(PGconn *conn, const char *db, const char *tmpl,
                       const char *owner);
char *pg_drop_db_sql(PGconn *conn, const char *db, int if_exists, int force,
                     int version_num);
void pg_add_terminate(pg_sess *s, const char *db);
/* Queue "does this database exist" into *exists. */
void pg_add_exists(pg_sess *s, const char *db, int *exists);

/* ---- health thresholds (pg_health_thr.c) -------------------------------- */
typedef enum pg_level { PG_L_OK = 0, PG_L_WARN, PG_L_FAIL } pg_level;
extern const char *const pg_level_names[]; /* "ok", "warn", "fail" */
/* One check's thresholds: NAN when a level is not set. */
typedef struct pg_thr {
  int off;   /* the check is turned off (false) */
  int deflt; /* true: the check's defaults */
  double warn, fail;
  double min; /* the check's extra key (min_rows ...), NAN when absent */
} pg_thr;
/* Parse a threshold parameter: false, true or {warn, fail[, EXTRA]};
 * dur: warn and fail may be durations ("30s", "5m"), in seconds. 0, or -1
 * with the accepted forms in err. Pure. */
int pg_thr_parse(const json_t *v, const char *extra, int dur, pg_thr *t,
                 char *err, size_t n);
/* The level of v (NAN: none); lower_is_worse for ratios such as the cache
 * hit ratio. */
pg_level pg_thr_level(const pg_thr *t, double v, int lower_is_worse);
json_t *pg_thr_json(const pg_thr *t);
/* The checks' default thresholds (JSON): the parameters' defaults, and
 * what `true` stands for. */
#define PG_H_DEF_CONN "{\"warn\": 80, \"fail\": 95}"
#define PG_H_DEF_LONGQ "{\"warn\": \"5m\", \"fail\": \"30m\"}"
#define PG_H_DEF_LONGX "{\"warn\": \"15m\", \"fail\": \"1h\"}"
#define PG_H_DEF_IDLE "{\"warn\": \"1m\", \"fail\": \"10m\"}"
#define PG_H_DEF_BLOCKED "{\"warn\": \"30s\", \"fail\": \"5m\"}"
#define PG_H_DEF_SIZE "{}"
#define PG_H_DEF_DEAD "{\"warn\": 10, \"fail\": 30, \"min_rows\": 1000}"
#define PG_H_DEF_UNUSED "{\"warn\": 1, \"min_bytes\": 0}"
#define PG_H_DEF_INVALID "{\"fail\": 1}"
#define PG_H_DEF_WRAP "{\"warn\": 1000000000, \"fail\": 1500000000}"
#define PG_H_DEF_CACHE "{\"warn\": 99, \"fail\": 90, \"min_blocks\": 10000}"
#define PG_H_DEF_ARCH "{\"warn\": \"6h\"}"
#define PG_H_DEF_REPL "{\"warn\": \"1m\", \"fail\": \"10m\"}"
/* The health parameters' checks (eng_param_check_fn), by kind. */
int pg_check_thr_dur(const json_t *v, char *err, size_t n);
int pg_check_thr_num(const json_t *v, char *err, size_t n);
int pg_check_thr_rows(const json_t *v, char *err, size_t n);
int pg_check_thr_blocks(const json_t *v, char *err, size_t n);
int pg_check_thr_bytes(const json_t *v, char *err, size_t n);

/* ---- actions ------------------------------------------------------------ */
int pg_act_sandbox(eng_call *call, const json_t *params);
int pg_act_sandbox_stop(eng_call *call, const json_t *params);
int pg_act_recover(eng_call *call, const json_t *params);
int pg_act_recover_stop(eng_call *call, const json_t *params);
int pg_act_ping(eng_call *call, const json_t *params);
int pg_act_dump(eng_call *call, const json_t *params);
int pg_act_dump_globals(eng_call *call, const json_t *params);
int pg_act_restore(eng_call *call, const json_t *params);
int pg_act_create_database(eng_call *call, const json_t *params);
int pg_act_drop_database(eng_call *call, const json_t *params);
int pg_act_query(eng_call *call, const json_t *params);
int pg_act_row_counts(eng_call *call, const json_t *params);
int pg_act_compare(eng_call *call, const json_t *params);
int pg_act_verify(eng_call *call, const json_t *params);
int pg_act_connections(eng_call *call, const json_t *params);
int pg_act_health(eng_call *call, const json_t *params);
int pg_act_maintenance(eng_call *call, const json_t *params);
eng_side_effect pg_maint_classify(const json_t *params);
void pg_describe_maint(const json_t *params, char *buf, size_t n);
int pg_lua_query(eng_call *call, const json_t *args);
/* postgres.query's class, what plan shows of it, and the check of its sql
 * (statements that cannot run in a transaction block mixed with others),
 * all from the host's SQL classifier (host->sql_classify). */
eng_side_effect pg_query_classify(const json_t *params);
void pg_describe_query(const json_t *params, char *buf, size_t n);
int pg_check_sql(const json_t *value, char *err, size_t errlen);

/* The embedded demo schema (generated from demo.sql at build time). */
extern const char pg_demo_sql[];

/* ---- pg_xfer.c: copies between paths and stream URLs, a few at a time - */
typedef struct pg_xfer_item {
  char *src, *dst;
  char expect[65]; /* SHA-256 the source must hash to, or "" */
  char sha[65];    /* out: SHA-256 of the bytes copied */
  int64_t bytes;   /* out */
} pg_xfer_item;
typedef struct pg_xfer pg_xfer;
typedef void (*pg_xfer_cb)(void *ud, int rc);
pg_xfer *pg_xfer_new(pg_op *op, size_t parallel);
void pg_xfer_add(pg_xfer *x, const char *src, const char *dst,
                 const char *expect);
/* Options of the write streams (taken: the transfer frees them). */
void pg_xfer_write_opts(pg_xfer *x, json_t *opts);
size_t pg_xfer_count(const pg_xfer *x);
pg_xfer_item *pg_xfer_item_at(pg_xfer *x, size_t i);
/* cb once, when no copy runs any more: ENG_OK or the first failure (the
 * host recorded its message). Files added while it runs start at once. */
void pg_xfer_run(pg_xfer *x, pg_xfer_cb cb, void *ud);
/* Between feed and close, an empty queue does not end the transfer. */
void pg_xfer_feed(pg_xfer *x);
void pg_xfer_close(pg_xfer *x);
/* Stops what runs (no callback afterwards) and frees. */
void pg_xfer_free(pg_xfer *x);

#endif /* PG_INT_H */
