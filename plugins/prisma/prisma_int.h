/*
 * prisma_int.h - declarations shared between the files of the prisma
 * plugin.
 *
 * Layout:
 *   prisma_plugin.c  descriptor: actions, parameters, outputs, init
 *   prisma_files.c   the migrations folder (names, bytes, checksums,
 *                    migration_lock.toml), Prisma-style URLs, UUIDs, the
 *                    comparison of folder and _prisma_migrations rows
 *   prisma_status.c  status
 *   prisma_deploy.c  deploy (native and cli), and the session resolve
 *                    shares with it (lock, table, unlock)
 *   prisma_resolve.c resolve: rows written as `prisma migrate resolve`
 *                    writes them (applied, rolled back, baseline)
 *   prisma_lint.c    lint (the host's migration lint) and check_rehearsal
 *                    (a rehearsal's record against the folder)
 *   prisma_rehearse.c rehearse: deploy's sequence on a copy, statement by
 *                    statement, each observed (locks, rewrites, scans)
 *
 * The libpq session, the action life cycle (pg_op) and the connection
 * string helpers come from the postgres plugin's sources (pg_int.h),
 * compiled into this module.
 *
 * Compatibility facts (Prisma 6, schema engine): table _prisma_migrations
 * in the schema of the URL's `schema` parameter (default public); checksum
 * = lowercase hex SHA-256 of migration.sql; advisory lock 72707369; a row
 * with finished_at and rolled_back_at both NULL is a failed migration and
 * blocks deploy (P3009).
 */
#ifndef PRISMA_INT_H
#define PRISMA_INT_H

#include "pg_int.h"

#include <engine/mem.h>

#define PRISMA_LOCK_KEY "72707369"
#define PRISMA_TABLE "_prisma_migrations"

/* ---- the migrations folder (prisma_files.c) ------------------------------ */

typedef struct prisma_mig {
  char *name; /* folder name */
  char *sql;  /* migration.sql bytes, NUL-terminated */
  size_t len;
  /* SHA-256 (hex) of the bytes, of the bytes with CRLF -> LF and with
   * LF -> CRLF: a stored checksum matches any of them. */
  char sha[3][65];
} prisma_mig;

typedef struct prisma_dir {
  /* in */
  char *path;
  /* out */
  int rc;    /* ENG_OK or an error code with err */
  char *err; /* malloc'd message */
  prisma_mig *migs; /* sorted by name (byte order), as Prisma sorts */
  size_t n;
  char *provider; /* of migration_lock.toml, NULL when the file is absent */
  char **skipped; /* folders without migration.sql */
  size_t nskipped;
} prisma_dir;

/* Worker function: read the folder d->path. */
void prisma_dir_read(void *ud);
void prisma_dir_free(prisma_dir *d);
/* Non-zero when the stored checksum matches the file (CRLF/LF tolerant). */
int prisma_mig_matches(const prisma_mig *m, const char *checksum);

/* ---- connection strings -------------------------------------------------- */

/* A Prisma DATABASE_URL may carry parameters libpq refuses (schema,
 * connection_limit, pool_timeout, pgbouncer, ...). Split it into a URL for
 * libpq (those removed) and the schema (default "public"). Both malloc'd.
 * Returns ENG_OK, or an error after host->fail(). Registers the password
 * as a secret. */
int prisma_url_prepare(eng_call *call, const char *url, char **libpq_url,
                       char **schema);
/* "schema"."_prisma_migrations", quoted. malloc'd. */
char *prisma_table_ref(const char *schema);
/* A quoted SQL identifier. malloc'd. */
char *prisma_quote_ident(const char *s);
/* Random UUID v4, lowercase. */
void prisma_uuid4(char out[37]);

/* ---- rows of _prisma_migrations vs. the folder --------------------------- */

typedef struct prisma_row {
  char *name;
  char *checksum;
  char *started_at;
  int finished;
  int rolled_back;
} prisma_row;

typedef struct prisma_rows {
  int table_exists;
  prisma_row *v;
  size_t n;
} prisma_rows;

void prisma_rows_free(prisma_rows *r);
/* Fill from SELECT migration_name, checksum, finished_at IS NOT NULL,
 * rolled_back_at IS NOT NULL, started_at ORDER BY started_at. */
void prisma_rows_load(prisma_rows *r, const PGresult *res);
/* The SELECT above for a table reference. malloc'd. */
char *prisma_rows_sql(const char *table_ref);

typedef struct prisma_state {
  json_t *applied;  /* finished, not rolled back (database order) */
  json_t *pending;  /* in the folder, never finished, not failed */
  json_t *failed;   /* started, not finished, not rolled back */
  json_t *modified; /* applied, but the file's checksum differs */
  json_t *missing;  /* applied, no folder any more */
  char *failed_detail; /* "`NAME` started at TIME" lines, or NULL */
} prisma_state;

void prisma_state_build(prisma_state *st, const prisma_dir *d,
                        const prisma_rows *rows);
void prisma_state_free(prisma_state *st);
int prisma_json_has(const json_t *list, const char *name);
/* "a, b, c" of a string list (malloc'd). */
char *prisma_json_join(const json_t *list);
/* The P3009 message for st (st->failed not empty). malloc'd. */
char *prisma_failed_message(const prisma_state *st);
/* Log the folders without migration.sql and the lock file's absence. */
void prisma_dir_warn(eng_call *call, const prisma_dir *d);

/* ---- loading the table's state (prisma_status.c) ------------------------- */

typedef struct prisma_load {
  const char *schema; /* borrowed */
  char *table;        /* quoted reference */
  int schema_exists;
  long long objects; /* tables, views, sequences, enums in the schema */
  prisma_rows rows;  /* rows.table_exists tells whether the table exists */
} prisma_load;

/* Queue the queries that fill ld (the rows only when the table exists). */
void prisma_load_add(pg_sess *s, prisma_load *ld, const char *schema);
void prisma_load_free(prisma_load *ld);
/* Fail the op after a session error, naming what was being done. */
void prisma_fail_sess(pg_op *op, pg_sess *s, int rc, const char *what);

/* ---- one session on the table: deploy and resolve (prisma_deploy.c) ------ */

/* What a deploy op does once it holds the lock and the table is read. */
typedef enum prisma_task {
  PRISMA_DEPLOY = 0,       /* apply the pending migrations */
  PRISMA_MARK_APPLIED,     /* resolve: one migration applied */
  PRISMA_MARK_ROLLED_BACK, /* resolve: one failed migration rolled back */
  PRISMA_BASELINE,         /* resolve: the folder applied, on no history */
  PRISMA_REHEARSE          /* rehearse: apply the pending migrations
                              statement by statement, observed */
} prisma_task;

typedef struct prisma_deploy_op {
  pg_op op;
  prisma_task task;
  /* the work of a task other than PRISMA_DEPLOY, once the lock is held
   * and the table exists (its rows in ld.rows); set by its file */
  void (*task_run)(struct prisma_deploy_op *d);
  char *url;      /* for libpq */
  char *orig_url; /* as given: the CLI gets it in DATABASE_URL */
  char *schema;
  int cli;
  int64_t lock_timeout_ms;
  int64_t t0;
  int locked;
  int lock_logged;
  prisma_dir dir;
  prisma_load ld;
  prisma_state st;
  int have_st;
  pg_sess *s;
  pg_ident id;
  size_t next;           /* index into st.pending */
  const prisma_mig *cur; /* migration being applied */
  char cur_id[37];
  char *script_err;
  json_t *applied_now; /* deploy: applied; resolve: marked applied */
  /* resolve */
  char *name;              /* the migration (applied, rolled_back) */
  char *up_to;             /* baseline: last one to mark, or NULL */
  json_t *rolled_back_now; /* marked rolled back */
  /* rehearse: runs the current migration's script instead of sending it
   * whole, then calls prisma_script_end(d->s, d, rc); ends the op after
   * the lock is released; its state, freed by ext_free */
  void (*run_script)(struct prisma_deploy_op *d);
  void (*task_end)(struct prisma_deploy_op *d);
  /* after the guard, before anything else: ENG_OK, or the op is finished
   * (rehearse refuses a database this run did not create) */
  int (*admit)(struct prisma_deploy_op *d);
  void *ext;
  void (*ext_free)(void *ext);
  /* cli */
  char *cwd;
  pg_argv argv;
  pg_argv env;
  pg_child child;
  eng_strbuf out;
  size_t out_logged; /* bytes of out already logged as lines */
} prisma_deploy_op;

/* A native op for task on the URL of params (NULL after host->fail()). */
prisma_deploy_op *prisma_deploy_new(eng_call *call, const json_t *params,
                                    prisma_task task, int *rc);
/* Read the folder (unless the task does not need it), connect, check the
 * guard, take the lock, read the table, then run the task. */
void prisma_deploy_begin(prisma_deploy_op *d);
/* Release the lock and finish with the task's outputs. */
void prisma_deploy_unlock(prisma_deploy_op *d);
const prisma_mig *prisma_find(const prisma_dir *dir, const char *name);
/* The end of a migration's script (pg_end_fn): record it finished and go
 * on, or record the failure and fail the op. */
void prisma_script_end(pg_sess *s, void *ud, int rc);


/* ---- actions ------------------------------------------------------------- */
int prisma_act_status(eng_call *call, const json_t *params);
int prisma_act_deploy(eng_call *call, const json_t *params);
int prisma_act_resolve(eng_call *call, const json_t *params);
/* Non-zero when the host lints migrations (ABI 1.7); otherwise fails the
 * call with why. */
int prisma_has_lint(eng_call *call);
int prisma_act_lint(eng_call *call, const json_t *params);
int prisma_act_rehearse(eng_call *call, const json_t *params);
int prisma_act_check_rehearsal(eng_call *call, const json_t *params);

#endif /* PRISMA_INT_H */
