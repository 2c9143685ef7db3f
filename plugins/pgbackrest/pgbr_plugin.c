/*
 * pgbr_plugin.c - the pgbackrest plugin's descriptor: physical backups and
 * point-in-time restores with the real `pgbackrest` program (info, check,
 * backup, expire, restore into a new directory, its removal).
 */
#include "pgbr_int.h"

#include <string.h>

static int pgbr_init(const eng_host *host) {
  if (host->abi_major != ENG_ABI_MAJOR ||
      host->size < offsetof(eng_host, cancel_reason) + sizeof host->cancel_reason)
    return -1;
  pgbr_host = host;
  return 0;
}

/* ---- common parameters ------------------------------------------------------ */

#define P_STANZA                                                               \
  {.name = "stanza", .type = ENG_T_STRING, .flags = ENG_P_REQUIRED,            \
   .doc = "the stanza (pgbackrest --stanza): the cluster's name in the "       \
          "repository"}
#define P_CONFIG                                                               \
  {.name = "config", .type = ENG_T_STRING,                                     \
   .doc = "pgbackrest.conf to read (--config); default: pgBackRest's own "     \
          "(/etc/pgbackrest/pgbackrest.conf)"}
#define P_OPTIONS                                                              \
  {.name = "options", .type = ENG_T_MAP,                                       \
   .doc = "pgBackRest options as in pgbackrest.conf (repo1-path: /backups, "   \
          "repo1-type: s3, pg1-port: 5433); those holding secrets "            \
          "(repo1-s3-key-secret, repo1-cipher-pass ...) go through the "       \
          "environment, never the command line, and are redacted"}
#define P_BIN                                                                  \
  {.name = "pgbackrest", .type = ENG_T_STRING, .def = "\"pgbackrest\"",        \
   .doc = "the pgbackrest program (looked up in PATH); 2.28 or later"}
#define P_RUN_AS                                                               \
  {.name = "run_as", .type = ENG_T_STRING, .def = "\"postgres\"",              \
   .doc = "when the engine runs as root: the user pgBackRest runs as (the "    \
          "owner of the cluster and the repository)"}
#define P_COMMON P_STANZA, P_CONFIG, P_OPTIONS, P_BIN, P_RUN_AS
#define O_VERSION {"version", ENG_T_STRING, "pgBackRest's version, e.g. 2.45"}

/* ---- info ------------------------------------------------------------------- */

static const eng_param info_params[] = {P_COMMON};
static const eng_output info_outputs[] = {
    O_VERSION,
    {"stanza", ENG_T_STRING, "the stanza"},
    {"status", ENG_T_STRING, "the stanza's status: ok, no valid backups ..."},
    {"status_code", ENG_T_INT, "pgBackRest's status code (0: ok)"},
    {"backups", ENG_T_LIST,
     "oldest first: {label, type, started_at, finished_at, start_epoch, "
     "stop_epoch, size, repo_size, error, lsn_start, lsn_stop, wal_start, "
     "wal_stop, prior}"},
    {"backup_count", ENG_T_INT, "number of backups"},
    {"latest", ENG_T_MAP, "the newest backup (as in backups), or null"},
    {"latest_full", ENG_T_MAP, "the newest full backup, or null"},
    {"latest_age_s", ENG_T_INT, "seconds since the newest backup finished"},
    {"archive_id", ENG_T_STRING, "the WAL archive of the current database (15-1)"},
    {"wal_min", ENG_T_STRING, "oldest archived WAL segment"},
    {"wal_max", ENG_T_STRING, "newest archived WAL segment"},
    {"wal_min_time", ENG_T_TIMESTAMP, "when wal_min was archived (repo-ls)"},
    {"wal_max_time", ENG_T_TIMESTAMP, "when wal_max was archived (repo-ls)"},
    {"recovery_point", ENG_T_TIMESTAMP,
     "the newest point a restore can reach: when the newest segment was "
     "archived"},
    {"system_id", ENG_T_STRING, "the cluster's system identifier"},
    {"pg_version", ENG_T_STRING, "the cluster's PostgreSQL major version"},
};

/* ---- check ------------------------------------------------------------------ */

static const eng_param check_params[] = {P_COMMON};
static const eng_output check_outputs[] = {
    O_VERSION,
    {"ok", ENG_T_BOOL, "the configuration is valid and WAL reaches the repository"},
    {"duration_ms", ENG_T_INT, "how long the check took"},
};

/* ---- backup ----------------------------------------------------------------- */

static const char *const backup_types[] = {"full", "diff", "incr", NULL};
static const eng_param backup_params[] = {
    P_COMMON,
    {.name = "type", .type = ENG_T_STRING, .def = "\"full\"",
     .values = backup_types,
     .doc = "full, diff (changes since the last full) or incr (since the last "
            "backup)"},
    {.name = "start_fast", .type = ENG_T_BOOL, .def = "true",
     .doc = "ask the server for an immediate checkpoint instead of waiting "
            "for the next one"},
};
static const eng_output backup_outputs[] = {
    O_VERSION,
    {"label", ENG_T_STRING, "the new backup's label (20251121-194200F)"},
    {"type", ENG_T_STRING, "full, diff or incr"},
    {"stanza", ENG_T_STRING, "the stanza"},
    {"started_at", ENG_T_TIMESTAMP, "when the backup started"},
    {"finished_at", ENG_T_TIMESTAMP, "when it finished"},
    {"size", ENG_T_INT, "the cluster's size, bytes"},
    {"repo_size", ENG_T_INT, "bytes stored in the repository"},
    {"lsn_start", ENG_T_STRING, "WAL position at the start"},
    {"lsn_stop", ENG_T_STRING, "and at the stop (a restore reaches at least this)"},
    {"wal_start", ENG_T_STRING, "first WAL segment the backup needs"},
    {"wal_stop", ENG_T_STRING, "last WAL segment the backup needs"},
    {"duration_ms", ENG_T_INT, "how long the backup took"},
};

/* ---- expire ----------------------------------------------------------------- */

static const eng_param expire_params[] = {
    P_COMMON,
    {.name = "set", .type = ENG_T_STRING,
     .doc = "the label of a backup to expire (with the backups that depend "
            "on it); never the newest full backup"},
    {.name = "retention_full", .type = ENG_T_INT, .flags = ENG_P_MIN, .min = 1,
     .doc = "keep this many full backups (and what depends on them); expire "
            "the older ones"},
};
static const eng_output expire_outputs[] = {
    O_VERSION,
    {"expired", ENG_T_LIST, "the labels removed"},
};

/* ---- restore ---------------------------------------------------------------- */

static const char *const restore_types[] = {"latest", "time", "lsn", "name",
                                            "immediate", NULL};
static const char *const target_actions[] = {"pause", "promote", "shutdown", NULL};
static const eng_param restore_params[] = {
    P_COMMON,
    {.name = "dir", .type = ENG_T_STRING, .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_FILE,
     .doc = "the new data directory: absent or empty (anything else is "
            "refused); removed when the run ends"},
    {.name = "type", .type = ENG_T_STRING, .def = "\"latest\"",
     .values = restore_types,
     .doc = "where recovery stops: latest (end of the archived WAL), time, "
            "lsn or name (a restore point; each with target), immediate (as "
            "soon as the backup is consistent)"},
    {.name = "target", .type = ENG_T_STRING, .check = pgbr_check_target,
     .doc = "time (2025-11-21 19:42:00+00, RFC 3339, or now - 10m), LSN "
            "(0/3000060) or restore point name, for type time, lsn or name"},
    {.name = "target_action", .type = ENG_T_STRING, .def = "\"pause\"",
     .values = target_actions,
     .doc = "what the copy does at the target: pause (inspect it, then "
            "promote or not), promote, shutdown"},
    {.name = "set", .type = ENG_T_STRING,
     .doc = "the backup to restore (label); default: pgBackRest chooses the "
            "newest one before the target"},
    {.name = "archive_mode", .type = ENG_T_STRING, .def = "\"off\"",
     .doc = "always off: a restored copy never archives into the production "
            "repository; any other value is refused"},
};
static const eng_output restore_outputs[] = {
    O_VERSION,
    {"data_dir", ENG_T_STRING, "the restored data directory"},
    {"stanza", ENG_T_STRING, "the stanza"},
    {"type", ENG_T_STRING, "the recovery type"},
    {"target", ENG_T_STRING, "the target as given to pgBackRest (now - 10m resolved)"},
    {"target_action", ENG_T_STRING, "pause, promote or shutdown"},
    {"set", ENG_T_STRING, "the backup asked for, or null"},
    {"archive_mode", ENG_T_STRING, "off"},
    {"started_at", ENG_T_TIMESTAMP, "when the restore started"},
    {"finished_at", ENG_T_TIMESTAMP, "when the files were restored"},
    {"duration_ms", ENG_T_INT, "how long restoring the files took"},
};

static const eng_param remove_params[] = {
    {.name = "dir", .type = ENG_T_STRING, .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_FILE,
     .doc = "the restored directory, as the restore's journal entry records it"},
};
static const eng_output remove_outputs[] = {
    {"removed", ENG_T_BOOL, "the directory was removed"},
};

/* ---- the descriptor ------------------------------------------------------------ */

static const eng_action pgbr_actions[] = {
    {.name = "info",
     .doc = "the stanza's backups, its WAL archive (oldest and newest segment "
            "with the times they were archived) and its newest recovery point",
     .side_effect = ENG_SIDE_READ_ONLY, .flags = ENG_A_REPEAT_SAFE,
     .params = info_params, .outputs = info_outputs, .start = pgbr_act_info,
     .n_params = ENG_COUNT(info_params), .n_outputs = ENG_COUNT(info_outputs)},
    {.name = "check",
     .doc = "pgbackrest check: the configuration is valid and a WAL segment "
            "reaches the repository (forces a WAL switch); fails naming the "
            "cause",
     .side_effect = ENG_SIDE_READ_ONLY, .flags = ENG_A_REPEAT_SAFE,
     .params = check_params, .outputs = check_outputs, .start = pgbr_act_check,
     .n_params = ENG_COUNT(check_params), .n_outputs = ENG_COUNT(check_outputs)},
    {.name = "backup",
     .doc = "take a full, differential or incremental backup (kept: what the "
            "run delivers)",
     .side_effect = ENG_SIDE_CREATES,
     .params = backup_params, .outputs = backup_outputs, .start = pgbr_act_backup,
     .n_params = ENG_COUNT(backup_params), .n_outputs = ENG_COUNT(backup_outputs),
     .creates = ENG_KEPT},
    {.name = "expire",
     .doc = "remove a backup (set) or keep retention_full full backups; the "
            "newest full backup is never expired (guarded: destructive)",
     .side_effect = ENG_SIDE_DESTRUCTIVE,
     .params = expire_params, .outputs = expire_outputs, .start = pgbr_act_expire,
     .classify = pgbr_expire_classify,
     .n_params = ENG_COUNT(expire_params), .n_outputs = ENG_COUNT(expire_outputs)},
    {.name = "restore",
     .doc = "restore a backup into a new, empty directory with recovery to a "
            "time, LSN, restore point or the end of the archive, always with "
            "archive-mode off; the directory is temporary",
     .side_effect = ENG_SIDE_CREATES,
     .params = restore_params, .outputs = restore_outputs,
     .start = pgbr_act_restore, .describe = pgbr_describe_restore,
     .n_params = ENG_COUNT(restore_params), .n_outputs = ENG_COUNT(restore_outputs),
     .creates = ENG_TEMPORARY},
    {.name = "remove_restore",
     .doc = "remove a directory restore made in this run (or the run being "
            "cleaned up); never one a server runs on; the undo of restore",
     .side_effect = ENG_SIDE_DESTRUCTIVE, .flags = ENG_A_REPEAT_SAFE,
     .params = remove_params, .outputs = remove_outputs,
     .start = pgbr_act_remove_restore,
     .n_params = ENG_COUNT(remove_params), .n_outputs = ENG_COUNT(remove_outputs)},
};

static const eng_plugin pgbr_plugin = {
    ENG_PLUGIN_HEADER,
    .name = "pgbackrest",
    .version = "1.0.0",
    .doc = "pgBackRest: physical backups, WAL archive figures and "
           "point-in-time restores into throwaway directories",
    .actions = pgbr_actions,
    .n_actions = ENG_COUNT(pgbr_actions),
    .init = pgbr_init,
};

ENG_PLUGIN_DEFINE(pgbr_plugin)
