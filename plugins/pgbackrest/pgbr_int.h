/*
 * pgbr_int.h - declarations shared between the files of the pgbackrest
 * plugin.
 *
 * Layout:
 *   pgbr_plugin.c   descriptor: actions, parameters, outputs, init
 *   pgbr_parse.c    pgBackRest's answers read (pure: `version`, `info
 *                   --output=json`, `repo-ls --output=json`); the fuzz
 *                   harness tests/fuzz/fuzz_pgbr.c links it alone
 *   pgbr_run.c      one pgBackRest command as a child of the call: argv
 *                   and environment from the parameters (secrets through
 *                   the environment only), standard output collected
 *   pgbr_actions.c  info, check, backup, expire
 *   pgbr_restore.c  restore into a new directory, and its removal
 *
 * Allocation goes through <engine/mem.h> (aborts when memory runs out).
 * Everything runs on the loop thread except worker functions, which say so.
 */
#ifndef PGBR_INT_H
#define PGBR_INT_H

#include <engine/mem.h>
#include <engine/op.h>
#include <engine/plugin.h>
#include <stddef.h>
#include <stdint.h>

/* The host table, set once by init() before any action runs. */
extern const eng_host *pgbr_host;

/* ---- answers (pgbr_parse.c, pure) ------------------------------------------ */

/* The oldest pgBackRest release the plugin drives: older ones lack options
 * it passes (restore --archive-mode, repo-ls --output=json). */
#define PGBR_MIN_MAJOR 2
#define PGBR_MIN_MINOR 28

/* "pgBackRest 2.45" (with or without a newline): 0 with the version in
 * buf ("2.45") and its numbers, or -1 with what was wrong in err. */
int pgbr_parse_version(const char *text, char *buf, size_t n, int *major,
                       int *minor, char *err, size_t errlen);

/* `info --output=json` of one stanza. Returns a new object, or NULL with
 * the reason in err:
 *   stanza, status, status_code, system_id (string), pg_version,
 *   backups [{label, type, started_at, finished_at (RFC 3339 UTC),
 *             start_epoch, stop_epoch, size, repo_size, error, lsn_start,
 *             lsn_stop, wal_start, wal_stop, prior}], oldest first,
 *   latest (the newest backup or null), latest_full (or null),
 *   archive_id, wal_min, wal_max (names, or null). */
json_t *pgbr_parse_info(const char *text, const char *stanza, char *err,
                        size_t errlen);

/* `repo-ls --recurse --output=json` of an archive directory: the times
 * (epoch seconds) at which the segments wal_min and wal_max were archived,
 * -1 when absent. 0, or -1 with the reason in err when the text is not
 * such a listing. */
int pgbr_parse_wal_times(const char *text, const char *wal_min,
                         const char *wal_max, int64_t *tmin, int64_t *tmax,
                         char *err, size_t errlen);

/* The labels `expire` would remove with repo1-retention-full=keep: every
 * backup older than the keep-th newest full one (differentials and
 * incrementals depend on their full). A new array; empty when none. */
json_t *pgbr_expire_plan(const json_t *info, long long keep);

/* "2025-11-21T19:42:00Z" of epoch seconds. */
void pgbr_rfc3339(int64_t epoch, char buf[32]);

/* ---- one command (pgbr_run.c) ---------------------------------------------- */

/* Most bytes of a command's standard output kept (info of a repository
 * with thousands of backups stays far below). */
#define PGBR_OUT_MAX (64u << 20)

typedef struct pgbr_cmd pgbr_cmd;
/* rc ENG_OK when the command exited 0; out is its standard output
 * (NUL-terminated, owned by the command, valid during the callback);
 * otherwise the host has the failure message. */
typedef void (*pgbr_cmd_cb)(eng_op *op, int rc, const char *out);

/* Common parameters: stanza, config, options, pgbackrest, run_as. Checks
 * them, registers secret option values with the host; NULL and *rc after
 * host->fail() when they are not valid. */
typedef struct pgbr_conf pgbr_conf;
pgbr_conf *pgbr_conf_new(eng_call *call, const json_t *params, int *rc);
void pgbr_conf_free(pgbr_conf *c);
const char *pgbr_conf_stanza(const pgbr_conf *c);
const char *pgbr_conf_run_as(const pgbr_conf *c);
/* The version found by pgbr_check_version ("2.45"). */
const char *pgbr_conf_version(const pgbr_conf *c);

/* Run `pgbackrest [config, options] --stanza=S COMMAND ARGS...` (args
 * NULL-terminated, may be NULL) in op's call; `what` names it in messages.
 * cb once. At most one command per op runs at a time. */
void pgbr_run(eng_op *op, pgbr_conf *c, const char *command,
              const char *const *args, pgbr_cmd_cb cb);
/* `pgbackrest version`, checked against PGBR_MIN_*; cb as pgbr_run. */
void pgbr_check_version(eng_op *op, pgbr_conf *c, pgbr_cmd_cb cb);
/* The running command's state, for the action's own struct. */
pgbr_cmd *pgbr_cmd_of(eng_op *op);

/* The action state every action embeds first. */
typedef struct pgbr_job {
  eng_op op;
  pgbr_conf *conf;
  pgbr_cmd *cmd;
  int64_t started_ms; /* monotonic */
  json_t *info;       /* parsed info, when the action read it */
  pgbr_cmd_cb after_version; /* what pgbr_check_version goes on with */
  void (*after_info)(eng_op *op, int rc); /* what pgbr_read_info goes on with */
  int with_wal;
} pgbr_job;
/* Allocate size bytes (>= sizeof(pgbr_job)) and start: conf read, op
 * initialised. NULL and *rc after host->fail(). */
pgbr_job *pgbr_job_new(eng_call *call, const json_t *params, size_t size,
                       void (*destroy)(eng_op *op), int *rc);
void pgbr_job_free(pgbr_job *j); /* the common part; frees j */
int64_t pgbr_now_ms(void);       /* monotonic */
/* Read the stanza's info into j->info (and the archive's segment times
 * when with_wal), then next(op, rc). */
void pgbr_read_info(pgbr_job *j, int with_wal, void (*next)(eng_op *op, int rc));
/* The parameter access of the plugin. */
const char *pgbr_pstr(const json_t *p, const char *name);

/* ---- actions ---------------------------------------------------------------- */
int pgbr_act_info(eng_call *call, const json_t *params);
int pgbr_act_check(eng_call *call, const json_t *params);
int pgbr_act_backup(eng_call *call, const json_t *params);
int pgbr_act_expire(eng_call *call, const json_t *params);
int pgbr_act_restore(eng_call *call, const json_t *params);
int pgbr_act_remove_restore(eng_call *call, const json_t *params);
eng_side_effect pgbr_expire_classify(const json_t *params);
void pgbr_describe_restore(const json_t *params, char *buf, size_t n);
int pgbr_check_target(const json_t *v, char *err, size_t errlen);

#endif /* PGBR_INT_H */
