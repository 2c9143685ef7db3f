/*
 * pg_plugin.c - the postgres plugin's descriptor: actions, their
 * parameters (declared as data: the host validates and converts them
 * before an action starts), outputs and side-effect classes.
 */
#include "pg_int.h"

#include <string.h>


static int pg_init(const eng_host *host) {
  /* guard_sql and sql_classify (1.5) are checked where they are used */
  if (host->abi_major != ENG_ABI_MAJOR ||
      host->size <
          offsetof(eng_host, stream_is_remote) + sizeof host->stream_is_remote)
    return -1;
  pg_host = host;
  return 0;
}

/* ---- shared parameter texts --------------------------------------------- */

#define P_URL                                                                  \
  {                                                                            \
    .name = "url", .type = ENG_T_STRING, .target = ENG_TARGET_DATABASE,        \
    .doc =                                                                     \
        "connection URL (postgresql://USER:PASSWORD@HOST:PORT/DBNAME) or "     \
        "key=value string; default $DATABASE_URL, then libpq's PG* variables"  \
  }
#define P_BIN_DIR                                                              \
  {                                                                            \
    .name = "bin_dir", .type = ENG_T_STRING, .target = ENG_TARGET_NONE,        \
    .doc = "directory of the PostgreSQL programs to use; default: the newest " \
           "installed version that fits the server (pg_config --bindir, "      \
           "/usr/lib/postgresql/*/bin, PATH)"                                  \
  }
#define P_STREAM_OPTS                                                          \
  {                                                                            \
    .name = "stream_opts", .type = ENG_T_MAP, .target = ENG_TARGET_NONE,       \
    .doc =                                                                     \
        "options for a stream URL file (s3://: endpoint, region, part_size, "  \
        "concurrency, storage_class; sse AES256 or aws:kms and "               \
        "sse_kms_key_id, stored with on a dump and required on a restore; "    \
        "lock_mode GOVERNANCE or COMPLIANCE with lock_days for Object Lock); " \
        "credentials come from AWS_* or the profile, never from here"          \
  }
/* encryption_key, encryption_key_file, encryption_key_env (at most one) */
#define P_AGE_KEYS(key_doc)                                                    \
  {.name = "encryption_key",                                                   \
   .type = ENG_T_STRING,                                                       \
   .flags = ENG_P_SECRET,                                                      \
   .target = ENG_TARGET_NONE,                                                  \
   .doc = key_doc},                                                            \
      {.name = "encryption_key_file",                                          \
       .type = ENG_T_STRING,                                                   \
       .target = ENG_TARGET_NONE,                                              \
       .doc = "file holding the age key instead (age-keygen's output: '#' "    \
              "lines skipped)"},                                               \
  {                                                                            \
    .name = "encryption_key_env", .type = ENG_T_STRING,                        \
    .target = ENG_TARGET_NONE,                                                 \
    .doc = "name of the environment variable holding the age key instead"     \
  }
#define P_DATABASE                                                             \
  {                                                                            \
    .name = "database", .type = ENG_T_STRING, .target = ENG_TARGET_DATABASE,   \
    .doc = "database to connect to instead of the URL's, on the same server "  \
           "with the same user and options"                                    \
  }
#define P_END {0}
#define O_END                                                                  \
  { NULL, 0, NULL }

/* ---- sandbox ------------------------------------------------------------ */

static const eng_param sandbox_params[] = {
    {.name = "port",
     .type = ENG_T_INT,
     .flags = ENG_P_MIN | ENG_P_MAX,
     .min = 0,
     .max = 65535,
     .def = "0",
     .target = ENG_TARGET_NONE,
     .doc = "TCP port on 127.0.0.1; 0 picks a free one"},
    {.name = "sample_data",
     .type = ENG_T_STRING,
     .def = "\"none\"",
     .target = ENG_TARGET_NONE,
     .choices = "none|demo",
     .doc = "demo loads a small shop schema (enum, JSONB, foreign keys, a "
            "\"User\" "
            "table, thousands of rows)"},
    {.name = "database",
     .type = ENG_T_STRING,
     .def = "\"postgres\"",
     .target = ENG_TARGET_NONE,
     .doc = "database to create (and load the sample data into)"},
    {.name = "keep",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc = "keep the (stopped) data directory when the run ends"},
    P_BIN_DIR,
    P_END};
static const eng_output sandbox_outputs[] = {
    {"url", ENG_T_STRING, "URL of the sandbox database (with its password)"},
    {"admin_url", ENG_T_STRING, "URL of the postgres database"},
    {"data_dir", ENG_T_STRING, "the cluster's data directory"},
    {"port", ENG_T_INT, "TCP port"},
    {"version", ENG_T_STRING, "server version, e.g. 15.20"},
    {"database", ENG_T_STRING, "the database of url"},
    O_END};

/* ---- ping --------------------------------------------------------------- */

static const eng_param ping_params[] = {
    P_URL,
    P_DATABASE,
    {.name = "wait",
     .type = ENG_T_DURATION,
     .def = "0",
     .target = ENG_TARGET_NONE,
     .doc =
         "keep retrying while the server is down or starting, up to this long"},
    P_END};
static const eng_output ping_outputs[] = {
    {"server_version", ENG_T_STRING, "server_version, e.g. 15.20 (Debian ...)"},
    {"server_version_num", ENG_T_INT, "server_version_num, e.g. 150020"},
    {"system_identifier", ENG_T_STRING,
     "the cluster's system_identifier (string: 64-bit), empty if not "
     "readable"},
    {"database", ENG_T_STRING, "current_database()"},
    {"user", ENG_T_STRING, "current_user"},
    {"in_recovery", ENG_T_BOOL, "pg_is_in_recovery(): a standby"},
    {"database_size", ENG_T_INT, "pg_database_size() of the database, bytes"},
    {"summary", ENG_T_STRING, "\"PostgreSQL 15.18, ledger 7.9 MB\""},
    {"attempts", ENG_T_INT, "connection attempts made"},
    O_END};

/* ---- dump --------------------------------------------------------------- */

static const eng_param dump_params[] = {
    P_URL,
    P_DATABASE,
    {.name = "file",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_FILE,
     .doc = "where to write: a local path (parent directories are created; a "
            "directory for format: directory) or a stream URL such as "
            "s3://bucket/key (uploaded while pg_dump runs, no temporary file); "
            "format: directory to a URL prefix ending with '/' uploads one "
            "object per file and a manifest.json last"},
    {.name = "format",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .choices = "custom|directory|plain|tar",
     .doc = "pg_dump --format; default from the file name: NAME/ directory, "
            ".sql plain, .sql.gz and .sql.zst plain compressed by the engine, "
            ".tar tar, anything else custom"},
    {.name = "jobs",
     .type = ENG_T_INT,
     .flags = ENG_P_MIN | ENG_P_MAX,
     .min = 1,
     .max = 64,
     .def = "1",
     .target = ENG_TARGET_NONE,
     .doc = "parallel jobs (format: directory only)"},
    {.name = "compress",
     .type = ENG_T_ANY,
     .flags = ENG_P_MIN | ENG_P_MAX,
     .min = 0,
     .max = 9,
     .target = ENG_TARGET_NONE,
     .check = pg_check_compress,
     .forms = PG_COMPRESS_FORMS,
     .doc =
         "0-9: pg_dump --compress (default 1 for custom and directory, "
         "none for plain and tar unless the name ends .gz or .zst); none; "
         "gzip or gzip:1-9 (plain, tar) and zstd or zstd:1-19: the engine "
         "compresses the stream (pg_dump's own compression is then off)"},
    {.name = "schema_only",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc = "dump only the schema, no data"},
    {.name = "tables",
     .type = ENG_T_LIST,
     .items = ENG_ITEMS_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "only these tables (pg_dump --table patterns; quote mixed case: "
            "'\"User\"')"},
    {.name = "exclude_tables",
     .type = ENG_T_LIST,
     .items = ENG_ITEMS_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "skip these tables (pg_dump --exclude-table patterns)"},
    {.name = "no_owner",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc = "omit ownership commands (pg_dump --no-owner)"},
    {.name = "no_acl",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc = "omit GRANT/REVOKE (pg_dump --no-acl)"},
    {.name = "checksum_file",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc = "also write FILE.sha256 (sha256sum -c format, the bare file "
            "name inside) beside the file, or a KEY.sha256 object beside a "
            "streamed one; encrypted, a second line has the decrypted "
            "bytes' SHA-256"},
    P_AGE_KEYS("encrypt the dump with age (`age -d -i KEYFILE` decrypts it; "
               "docs/retention.md): an age recipient age1... or an identity "
               "AGE-SECRET-KEY-1... (its recipient is used), usually from a "
               "secret parameter; \"\" for none. Not with format: directory"),
    P_STREAM_OPTS,
    P_BIN_DIR,
    P_END};
static const eng_output dump_outputs[] = {
    {"file", ENG_T_STRING, "the path written"},
    {"bytes", ENG_T_INT, "bytes written"},
    {"sha256", ENG_T_STRING,
     "SHA-256 of the bytes written; for format: directory, of the "
     "directory's files concatenated in byte-wise name order"},
    {"started_at", ENG_T_STRING, "RFC 3339 UTC time pg_dump started"},
    {"finished_at", ENG_T_STRING, "RFC 3339 UTC time pg_dump finished"},
    {"database", ENG_T_STRING, "the database dumped"},
    {"server_version", ENG_T_STRING, "server_version"},
    {"system_identifier", ENG_T_STRING, "the cluster's system_identifier"},
    {"format", ENG_T_STRING, "custom, directory, plain or tar"},
    {"tool_version", ENG_T_STRING, "version of the pg_dump used"},
    {"compression", ENG_T_STRING,
     "what compressed it: pg_dump:LEVEL, gzip:LEVEL, zstd:LEVEL or none"},
    {"plain_bytes", ENG_T_INT, "bytes before the engine's compression"},
    {"encryption", ENG_T_STRING, "age when the dump was encrypted"},
    {"plaintext_sha256", ENG_T_STRING,
     "encrypted: SHA-256 of the bytes `age -d` gives (sha256 is of the "
     "stored ciphertext)"},
    {"plaintext_bytes", ENG_T_INT, "encrypted: bytes `age -d` gives"},
    {"etag", ENG_T_STRING, "the stored object's ETag (s3://)"},
    {"checksum_file", ENG_T_STRING,
     "FILE.sha256 (or s3://.../KEY.sha256) when checksum_file: true"},
    {"manifest", ENG_T_STRING,
     "PREFIX/manifest.json of a directory dump to a URL"},
    {"files", ENG_T_INT, "files of a directory dump to a URL"},
    O_END};

static const eng_param dump_globals_params[] = {
    P_URL,
    P_DATABASE,
    {.name = "file",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_FILE,
     .doc =
         "where to write the SQL of roles and tablespaces: a local path or a "
         "stream URL (s3://bucket/key)"},
    {.name = "compress",
     .type = ENG_T_ANY,
     .flags = ENG_P_MIN | ENG_P_MAX,
     .min = 0,
     .max = 9,
     .target = ENG_TARGET_NONE,
     .check = pg_check_compress,
     .forms = PG_COMPRESS_FORMS,
     .doc = "gzip[:1-9] or zstd[:1-19]: the engine compresses the SQL "
            "(default from the name: .gz, .zst)"},
    {.name = "no_role_passwords",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc = "omit role passwords (needed on managed servers without access to "
            "pg_authid)"},
    {.name = "checksum_file",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc = "also write FILE.sha256"},
    P_STREAM_OPTS,
    P_BIN_DIR,
    P_END};
static const eng_output dump_globals_outputs[] = {
    {"file", ENG_T_STRING, "the path written"},
    {"bytes", ENG_T_INT, "bytes written"},
    {"sha256", ENG_T_STRING, "SHA-256 of the bytes written"},
    {"started_at", ENG_T_STRING, "RFC 3339 UTC"},
    {"finished_at", ENG_T_STRING, "RFC 3339 UTC"},
    {"checksum_file", ENG_T_STRING,
     "FILE.sha256 (or s3://.../KEY.sha256) when checksum_file: true"},
    O_END};

/* ---- restore ------------------------------------------------------------ */

static const eng_param restore_params[] = {
    {.name = "file",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_FILE,
     .doc =
         "the backup: custom, tar or directory archive, plain SQL, or "
         "gzip/zstd "
         "compressed SQL or archive (detected from the content); a local path "
         "or a stream URL (s3://bucket/key: streamed into pg_restore/psql and "
         "its SHA-256 checked before the restore commits; with jobs > 1 "
         "downloaded into the run directory first); a URL prefix ending with "
         "'/' is a directory backup: its manifest.json and every file it "
         "names are downloaded in parallel and checked before anything is "
         "restored"},
    P_URL,
    {.name = "database",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_DATABASE,
     .doc = "database to restore into; default the URL's database (then the "
            "server's postgres database is used to create it)"},
    {.name = "create",
     .type = ENG_T_BOOL,
     .def = "true",
     .target = ENG_TARGET_NONE,
     .doc = "create the database (from template0); an existing one is refused "
            "unless clean: true"},
    {.name = "clean",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc = "drop and recreate an existing database first (destructive)"},
    {.name = "jobs",
     .type = ENG_T_INT,
     .flags = ENG_P_MIN | ENG_P_MAX,
     .min = 1,
     .max = 64,
     .target = ENG_TARGET_NONE,
     .doc = "parallel pg_restore jobs (custom and directory archives); "
            "default: the number of cores, at most 4, for a local archive, "
            "1 for a stream URL (restored while it downloads; more jobs "
            "download it first)"},
    {.name = "no_owner",
     .type = ENG_T_BOOL,
     .def = "true",
     .target = ENG_TARGET_NONE,
     .doc = "pg_restore --no-owner: objects belong to the connecting user"},
    {.name = "no_acl",
     .type = ENG_T_BOOL,
     .def = "true",
     .target = ENG_TARGET_NONE,
     .doc = "pg_restore --no-acl: skip GRANT/REVOKE"},
    {.name = "sha256",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc =
         "expected SHA-256 of the backup (of the stored bytes); checked before "
         "anything is created (local files, jobs > 1) or before the restore "
         "commits (streamed)"},
    P_AGE_KEYS("decrypt an age-encrypted backup with this age identity "
               "AGE-SECRET-KEY-1... (docs/retention.md), usually from a "
               "secret parameter; \"\" for none. The whole backup is "
               "decrypted and authenticated into the run directory before "
               "anything is created"),
    P_STREAM_OPTS,
    P_BIN_DIR,
    P_END};
static const eng_output restore_outputs[] = {
    {"database", ENG_T_STRING, "the restored database"},
    {"url", ENG_T_STRING, "URL of the restored database (same server)"},
    {"bytes", ENG_T_INT, "size of the backup"},
    {"tables", ENG_T_INT, "user tables in the restored database"},
    {"format", ENG_T_STRING, "detected format"},
    {"sha256", ENG_T_STRING, "SHA-256 of the backup (when checked)"},
    {"verified", ENG_T_BOOL,
     "the backup's bytes were compared with a recorded checksum"},
    {"verified_by", ENG_T_STRING,
     "what they were compared with: sha256 parameter, FILE.sha256 (a "
     "sidecar), x-amz-meta-sha256, x-amz-checksum-sha256 or x-amz-meta-md5"},
    {"jobs", ENG_T_INT, "pg_restore jobs used"},
    {"encryption", ENG_T_STRING, "age when the backup was decrypted"},
    {"plaintext_sha256", ENG_T_STRING,
     "decrypted: SHA-256 of the decrypted bytes"},
    O_END};
/* ---- sandbox_stop ------------------------------------------------------- */
static const eng_param sandbox_stop_params[] = {
    {.name = "dir",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_NONE,
     .doc =
         "the sandbox directory (as the sandbox's journal entry records it)"},
    {.name = "data_dir",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_NONE,
     .doc = "its data directory (DIR/data)"},
    {.name = "pg_ctl",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "pg_ctl to stop it with (default: found like the other programs)"},
    {.name = "run_as",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "user the server runs as (when the engine is root)"},
    {.name = "keep",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc = "only stop it; keep the data directory"},
    P_END};
static const eng_output sandbox_stop_outputs[] = {
    {"stopped", ENG_T_BOOL, "a running server was stopped"},
    {"removed", ENG_T_BOOL, "the directory was removed"},
    O_END};

/* ---- recover, recover_stop ---------------------------------------------- */
static const eng_param recover_params[] = {
    {.name = "data_dir",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_FILE,
     .doc = "a restored data directory with its recovery settings "
            "(pgbackrest.restore's data_dir); no server may run on it"},
    {.name = "promote",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc = "promote the copy once it reached its target (it never archives: "
            "archive_mode is off)"},
    {.name = "target_time",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "the recovery target time, the reference of rpo_ms; default: the "
            "time the target was reached (a restore to the latest WAL)"},
    {.name = "user",
     .type = ENG_T_STRING,
     .def = "\"postgres\"",
     .target = ENG_TARGET_NONE,
     .doc = "a role of the restored cluster to connect as (over the copy's "
            "private socket, trusted)"},
    {.name = "wait",
     .type = ENG_T_DURATION,
     .def = "\"1h\"",
     .target = ENG_TARGET_NONE,
     .doc = "how long replay may take to reach the target"},
    P_BIN_DIR,
    P_END};
static const eng_output recover_outputs[] = {
    {"url", ENG_T_STRING,
     "connection string of the copy (its private Unix socket)"},
    {"data_dir", ENG_T_STRING, "the data directory"},
    {"socket_dir", ENG_T_STRING, "the copy's private socket directory"},
    {"state", ENG_T_STRING,
     "paused (at the target), recovered (left recovery by itself) or "
     "promoted"},
    {"replay_timestamp", ENG_T_TIMESTAMP,
     "pg_last_xact_replay_timestamp(): the last replayed commit (the "
     "achieved recovery point)"},
    {"replay_lsn", ENG_T_STRING, "pg_last_wal_replay_lsn()"},
    {"rpo_ms", ENG_T_INT,
     "data loss: target_time (or the time the target was reached) minus the "
     "last replayed commit"},
    {"reached_at", ENG_T_TIMESTAMP, "when the copy was at its target"},
    {"target_time", ENG_T_TIMESTAMP,
     "the reference of rpo_ms: target_time, or reached_at when none was "
     "given (slo.recovery_target)"},
    {"recovery_stop", ENG_T_STRING,
     "the server log's \"recovery stopping ...\" line, or null"},
    {"last_transaction_log", ENG_T_STRING,
     "the server log's \"last completed transaction was at log time ...\""},
    {"log_lines", ENG_T_LIST, "the server log's lines about recovery"},
    {"promoted", ENG_T_BOOL, "the copy was promoted"},
    {"consistent_ms", ENG_T_INT, "start to the copy being at its target"},
    {"duration_ms", ENG_T_INT, "how long the step took"},
    O_END};
static const eng_param recover_stop_params[] = {
    {.name = "data_dir",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_NONE,
     .doc = "the copy's data directory (as the recover journal entry records "
            "it)"},
    {.name = "socket_dir",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "its private socket directory (removed)"},
    {.name = "pg_ctl",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "pg_ctl to stop it with"},
    {.name = "run_as",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "user the server runs as (when the engine is root)"},
    P_END};
static const eng_output recover_stop_outputs[] = {
    {"stopped", ENG_T_BOOL, "a running copy was stopped"},
    O_END};

/* ---- databases ---------------------------------------------------------- */

static const eng_param create_params[] = {
    P_URL,
    {.name = "database",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_DATABASE,
     .doc = "name of the new database"},
    {.name = "template",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "template database (default template1)"},
    {.name = "owner",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "owner role"},
    P_END};
static const eng_output create_outputs[] = {
    {"database", ENG_T_STRING, "the new database"},
    {"url", ENG_T_STRING, "URL of the new database"},
    O_END};

static const eng_param drop_params[] = {
    P_URL,
    {.name = "database",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_DATABASE,
     .doc = "database to drop; default the URL's database"},
    {.name = "if_exists",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc = "succeed when it does not exist"},
    {.name = "force",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc = "terminate its connections first (DROP DATABASE ... WITH (FORCE))"},
    P_END};
static const eng_output drop_outputs[] = {
    {"dropped", ENG_T_BOOL, "false when it did not exist"}, O_END};

/* ---- query -------------------------------------------------------------- */

static const eng_param query_params[] = {
    P_URL,
    P_DATABASE,
    {.name = "sql",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_SQL,
     .doc = "one SQL statement (several with write: true and no args); "
            "$1..$n take `args`. The step's class is what it does, read "
            "with PostgreSQL's parser (maintenance for VACUUM, disruptive "
            "for VACUUM FULL or pg_terminate_backend(), ...); statements "
            "that cannot run in a transaction block (VACUUM, CREATE INDEX "
            "CONCURRENTLY) run one at a time outside one when the sql holds "
            "only such statements",
     .check = pg_check_sql},
    {.name = "args",
     .type = ENG_T_LIST,
     .items = ENG_ITEMS_ANY,
     .target = ENG_TARGET_NONE,
     .doc = "parameters $1..$n (null stays NULL)"},
    {.name = "write",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc = "allow writes (default: a READ ONLY transaction); without args the "
            "sql may hold several statements"},
    {.name = "max_rows",
     .type = ENG_T_INT,
     .def = "10000",
     .target = ENG_TARGET_NONE,
     .doc = "rows kept in the `rows` output"},
    P_END};
static const eng_output query_outputs[] = {
    {"rows", ENG_T_LIST,
     "rows as objects, typed by column type (int, float, bool, numeric as "
     "number when exact else string, json/jsonb parsed, NULL as null)"},
    {"row_count", ENG_T_INT, "rows returned or affected"},
    {"columns", ENG_T_LIST, "column names"},
    {"command", ENG_T_STRING, "command tag, e.g. SELECT 3"},
    {"summary", ENG_T_STRING, "the row count and the first rows, on one line"},
    O_END};

/* ---- row counts, compare, verify, connections --------------------------- */

static const eng_param counts_params[] = {
    P_URL,
    P_DATABASE,
    {.name = "exact",
     .type = ENG_T_BOOL,
     .def = "true",
     .target = ENG_TARGET_NONE,
     .doc = "count(*) every table (false: pg_class.reltuples estimates)"},
    {.name = "schemas",
     .type = ENG_T_LIST,
     .items = ENG_ITEMS_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "only these schemas (default: all user schemas)"},
    P_END};
static const eng_output counts_outputs[] = {
    {"tables", ENG_T_MAP, "\"schema.table\" -> rows (names unquoted)"},
    {"total", ENG_T_INT, "sum of all tables"},
    {"table_count", ENG_T_INT, "number of tables"},
    {"estimated", ENG_T_INT, "tables whose count is an estimate"},
    {"summary", ENG_T_STRING, "\"12000 rows in 2 tables\""},
    O_END};

static const eng_param compare_params[] = {
    {.name = "source",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_DATABASE,
     .doc = "URL of the original database (default $DATABASE_URL)"},
    {.name = "target",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_DATABASE,
     .doc = "URL of the restored database"},
    {.name = "source_database",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_DATABASE,
     .doc = "database to read on the source's server instead of its URL's"},
    {.name = "target_database",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_DATABASE,
     .doc = "database to read on the target's server instead of its URL's"},
    {.name = "exact",
     .type = ENG_T_BOOL,
     .def = "true",
     .target = ENG_TARGET_NONE,
     .doc = "exact counts (false: estimates)"},
    {.name = "checksums",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc =
         "also compare each table's content (an order-independent sum of row "
         "hashes, computed by the servers)"},
    {.name = "tolerance",
     .type = ENG_T_NUMBER,
     .def = "0",
     .target = ENG_TARGET_NONE,
     .doc =
         "allowed relative row count difference (0.01 = 1%) for a live source"},
    {.name = "schemas",
     .type = ENG_T_LIST,
     .items = ENG_ITEMS_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "only these schemas"},
    {.name = "fail_on_mismatch",
     .type = ENG_T_BOOL,
     .def = "true",
     .target = ENG_TARGET_NONE,
     .doc = "fail the step when they differ (false: only report)"},
    P_END};
static const eng_output compare_outputs[] = {
    {"match", ENG_T_BOOL, "no differences"},
    {"differences", ENG_T_LIST,
     "{table, kind: missing_in_target|extra_in_target|row_count|checksum, "
     "source, target}"},
    {"tables", ENG_T_INT, "tables present on both sides"},
    {"source_total", ENG_T_INT, "rows in the source"},
    {"target_total", ENG_T_INT, "rows in the target"},
    O_END};

static const eng_param verify_params[] = {
    P_URL,
    P_DATABASE,
    {.name = "fail_on_issues",
     .type = ENG_T_BOOL,
     .def = "true",
     .target = ENG_TARGET_NONE,
     .doc = "fail the step when issues are found (false: only report)"},
    P_END};
static const eng_output verify_outputs[] = {
    {"ok", ENG_T_BOOL, "no issues"},
    {"issues", ENG_T_LIST,
     "{kind: invalid_index|not_validated_constraint|fk_violation, table, "
     "name, ...}"},
    {"foreign_keys_checked", ENG_T_INT, "foreign keys checked for orphans"},
    O_END};

static const eng_param conns_params[] = {
    P_URL,
    {.name = "database",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_DATABASE,
     .doc = "database whose connections to list (default the URL's)"},
    {.name = "terminate",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc =
         "terminate them (pg_terminate_backend), except this one (disruptive)"},
    P_END};
static const eng_output conns_outputs[] = {
    {"connections", ENG_T_LIST,
     "{pid, user, application_name, client_addr, state, backend_start, "
     "query_start, query[, terminated]}"},
    {"count", ENG_T_INT, "connections found"},
    {"terminated", ENG_T_INT, "connections terminated"},
    O_END};

/* ---- health, maintenance ------------------------------------------------ */

#define P_THR(NAME, DEF, CHECK, DOC)                                           \
  {                                                                            \
    .name = NAME, .type = ENG_T_ANY, .def = DEF, .target = ENG_TARGET_NONE,    \
    .check = CHECK,                                                            \
    .doc = DOC "; false turns the check off, true keeps the defaults, a map "  \
               "replaces them (a level left out is not checked)"               \
  }

static const eng_param health_params[] = {
    P_URL,
    P_DATABASE,
    P_THR("connections", PG_H_DEF_CONN, pg_check_thr_num,
          "client connections as a percentage of max_connections"),
    P_THR("long_queries", PG_H_DEF_LONGQ, pg_check_thr_dur,
          "active queries running longer than (a duration: 30s, 5m, 1h)"),
    P_THR("long_transactions", PG_H_DEF_LONGX, pg_check_thr_dur,
          "transactions open longer than"),
    P_THR("idle_in_transaction", PG_H_DEF_IDLE, pg_check_thr_dur,
          "sessions idle in transaction for longer than"),
    P_THR("blocked", PG_H_DEF_BLOCKED, pg_check_thr_dur,
          "sessions waiting for a lock (pg_blocking_pids) for longer than"),
    P_THR("database_size", PG_H_DEF_SIZE, pg_check_thr_num,
          "the database's size in bytes (no levels by default: reported)"),
    P_THR("dead_tuples", PG_H_DEF_DEAD, pg_check_thr_rows,
          "dead tuples as a percentage of a table's tuples, for tables of at "
          "least min_rows tuples"),
    P_THR("unused_indexes", PG_H_DEF_UNUSED, pg_check_thr_bytes,
          "how many indexes were never scanned (not unique, not a "
          "constraint's, at least min_bytes)"),
    P_THR("invalid_indexes", PG_H_DEF_INVALID, pg_check_thr_num,
          "how many indexes are invalid (a failed CREATE INDEX "
          "CONCURRENTLY)"),
    P_THR("wraparound", PG_H_DEF_WRAP, pg_check_thr_num,
          "transaction ID age of the oldest database (age(datfrozenxid))"),
    P_THR("cache_hit", PG_H_DEF_CACHE, pg_check_thr_blocks,
          "buffer cache hit percentage of the database (lower is worse), "
          "judged once min_blocks were read"),
    P_THR("archiver", PG_H_DEF_ARCH, pg_check_thr_dur,
          "age of the last archived WAL segment when archiving is on; "
          "failing archiving (the last attempt failed) is fail"),
    P_THR("replication_lag", PG_H_DEF_REPL, pg_check_thr_dur,
          "replay lag of each replica (pg_stat_replication), or of this "
          "server when it is a standby"),
    {.name = "top",
     .type = ENG_T_INT,
     .flags = ENG_P_MIN | ENG_P_MAX,
     .min = 1,
     .max = 1000,
     .def = "10",
     .target = ENG_TARGET_NONE,
     .doc = "how many of the largest tables to list"},
    {.name = "fail_on_issues",
     .type = ENG_T_BOOL,
     .def = "true",
     .target = ENG_TARGET_NONE,
     .doc = "a fail level fails the step (false: it ends warn, like a warn "
            "level)"},
    P_END};
static const eng_output health_outputs[] = {
    {"level", ENG_T_STRING, "ok, warn or fail: the worst level of any check"},
    {"summary", ENG_T_STRING,
     "one line: the database, its size, each finding, how many checks "
     "passed and could not run"},
    {"checks", ENG_T_MAP,
     "check name -> {level: ok|warn|fail|not_run, value, warn, fail, items, "
     "message}; items are what crossed a threshold (sessions with pid, "
     "seconds, query; blocked sessions with blocked_by and the lock; tables "
     "with live, dead, percent; indexes with table and bytes)"},
    {"findings", ENG_T_LIST, "{check, level, message} of every check not ok"},
    {"not_run", ENG_T_LIST,
     "{check, reason}: checks the role could not run (without pg_monitor)"},
    {"flagged_tables", ENG_T_LIST,
     "tables over the dead_tuples threshold, as SQL names (for "
     "postgres.maintenance's tables)"},
    {"database", ENG_T_STRING, "current_database()"},
    {"database_size", ENG_T_INT, "pg_database_size(), bytes"},
    {"largest_tables", ENG_T_LIST, "{table, bytes, rows} largest first"},
    {"connections", ENG_T_INT, "client connections to the server"},
    {"max_connections", ENG_T_INT, "the server's max_connections"},
    O_END};

static const eng_param maint_params[] = {
    P_URL,
    P_DATABASE,
    {.name = "operation",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_NONE,
     .choices = "vacuum|analyze|reindex",
     .doc = "vacuum (VACUUM, with ANALYZE unless analyze: false), analyze or "
            "reindex (REINDEX ... CONCURRENTLY unless concurrently: false)"},
    {.name = "tables",
     .type = ENG_T_LIST,
     .items = ENG_ITEMS_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "only these tables (schema.table; quote mixed case: '\"User\"'); "
            "a health step's flagged_tables fits; an empty list does "
            "nothing; default: every table of the schema or the database"},
    {.name = "schema",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "only the tables of this schema"},
    {.name = "indexes",
     .type = ENG_T_LIST,
     .items = ENG_ITEMS_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "reindex only these indexes (schema.index)"},
    {.name = "analyze",
     .type = ENG_T_BOOL,
     .def = "true",
     .target = ENG_TARGET_NONE,
     .doc = "vacuum: also ANALYZE"},
    {.name = "full",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc = "vacuum: VACUUM FULL, which rewrites each table under an "
            "exclusive lock (disruptive: on a protected database only with "
            "the step's allow_disruptive: true)"},
    {.name = "concurrently",
     .type = ENG_T_BOOL,
     .def = "true",
     .target = ENG_TARGET_NONE,
     .doc = "reindex: REINDEX ... CONCURRENTLY (false locks the tables while "
            "it rebuilds: disruptive)"},
    {.name = "lock_timeout",
     .type = ENG_T_DURATION,
     .def = "\"10s\"",
     .target = ENG_TARGET_NONE,
     .doc = "give up on a statement whose lock is not granted within this "
            "long, instead of queueing the application behind it"},
    {.name = "statement_timeout",
     .type = ENG_T_DURATION,
     .def = "0",
     .target = ENG_TARGET_NONE,
     .doc = "cancel a statement running longer (0: the step's timeout only)"},
    P_END};
static const eng_output maint_outputs[] = {
    {"statements", ENG_T_LIST, "the SQL run, one statement each"},
    {"tables", ENG_T_LIST,
     "{table, live_before, dead_before, dead_pct_before, bytes_before, "
     "live_after, dead_after, dead_pct_after, bytes_after}"},
    {"dead_tuples_before", ENG_T_INT, "dead tuples of the tables before"},
    {"dead_tuples_after", ENG_T_INT, "and after"},
    {"bytes_before", ENG_T_INT, "total size of the tables (with indexes and "
                                "TOAST) before"},
    {"bytes_after", ENG_T_INT, "and after"},
    {"duration_ms", ENG_T_INT, "time the statements took"},
    {"summary", ENG_T_STRING,
     "\"1 statement(s) in 0.4 s on shop: dead tuples 6000 -> 0, 1.2 MB -> "
     "1.1 MB in 1 table(s)\""},
    O_END};

/* ---- classification ----------------------------------------------------- */

static eng_side_effect pg_restore_classify(const json_t *p) {
  return pg_pbool(p, "clean", 0) ? ENG_SIDE_DESTRUCTIVE : ENG_SIDE_CREATES;
}
static eng_side_effect pg_conns_classify(const json_t *p) {
  return pg_pbool(p, "terminate", 0) ? ENG_SIDE_DISRUPTIVE : ENG_SIDE_READ_ONLY;
}

/* ---- the descriptor ----------------------------------------------------- */

static const eng_action pg_actions[] = {
    {.name = "sandbox",
     .doc =
         "start a throwaway PostgreSQL cluster (initdb, 127.0.0.1, free port); "
         "stopped and removed when the run ends",
     .side_effect = ENG_SIDE_CREATES,
     .params = sandbox_params,
     .outputs = sandbox_outputs,
     .start = pg_act_sandbox,
     .creates = ENG_TEMPORARY},
    {.name = "sandbox_stop",
     .doc = "stop a sandbox cluster this run (or the run being cleaned up) "
            "created and remove its directory; the undo of sandbox",
     .side_effect = ENG_SIDE_DISRUPTIVE,
     .flags = ENG_A_REPEAT_SAFE,
     .params = sandbox_stop_params,
     .outputs = sandbox_stop_outputs,
     .start = pg_act_sandbox_stop},
    {.name = "recover",
     .doc = "start a throwaway server on a restored data directory (private "
            "socket, archive_mode off), wait until recovery reaches its "
            "target and report the achieved recovery point; optionally "
            "promote; stopped when the run ends",
     .side_effect = ENG_SIDE_CREATES,
     .params = recover_params,
     .outputs = recover_outputs,
     .start = pg_act_recover,
     .creates = ENG_TEMPORARY},
    {.name = "recover_stop",
     .doc = "stop a copy recover started in this run (or the run being "
            "cleaned up); the undo of recover",
     .side_effect = ENG_SIDE_DISRUPTIVE,
     .flags = ENG_A_REPEAT_SAFE,
     .params = recover_stop_params,
     .outputs = recover_stop_outputs,
     .start = pg_act_recover_stop},
    {.name = "ping",
     .doc = "connect and report the server's version and identity",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = ping_params,
     .outputs = ping_outputs,
     .start = pg_act_ping},
    {.name = "dump",
     .doc = "pg_dump a database to a file or a stream URL (s3://), with the "
            "SHA-256 of the stored bytes",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = dump_params,
     .outputs = dump_outputs,
     .start = pg_act_dump,
     .describe = pg_describe_dump},
    {.name = "dump_globals",
     .doc = "pg_dumpall --globals-only (roles, tablespaces)",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = dump_globals_params,
     .outputs = dump_globals_outputs,
     .start = pg_act_dump_globals},
    {.name = "restore",
     .doc =
         "restore a backup into a new database (refuses an existing one unless "
         "clean); a failed restore drops what it created",
     .side_effect = ENG_SIDE_CREATES,
     .params = restore_params,
     .outputs = restore_outputs,
     .start = pg_act_restore,
     .classify = pg_restore_classify,
     .describe = pg_describe_restore},
    {.name = "create_database",
     .doc = "CREATE DATABASE (recorded for cleanup)",
     .side_effect = ENG_SIDE_CREATES,
     .params = create_params,
     .outputs = create_outputs,
     .start = pg_act_create_database},
    {.name = "drop_database",
     .doc = "DROP DATABASE (guarded)",
     .side_effect = ENG_SIDE_DESTRUCTIVE,
     .params = drop_params,
     .outputs = drop_outputs,
     .start = pg_act_drop_database},
    {.name = "query",
     .doc = "run one SQL statement (in a READ ONLY transaction unless write: "
            "true, or outside any transaction block when it cannot run in "
            "one); its class is what the SQL does",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = query_params,
     .outputs = query_outputs,
     .start = pg_act_query,
     .classify = pg_query_classify,
     .describe = pg_describe_query},
    {.name = "row_counts",
     .doc = "count the rows of every user table (one snapshot)",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = counts_params,
     .outputs = counts_outputs,
     .start = pg_act_row_counts},
    {.name = "compare",
     .doc = "compare two databases table by table: row counts and optionally "
            "content checksums",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = compare_params,
     .outputs = compare_outputs,
     .start = pg_act_compare},
    {.name = "verify",
     .doc = "integrity checks: invalid indexes, constraints not validated, "
            "foreign key orphans",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = verify_params,
     .outputs = verify_outputs,
     .start = pg_act_verify},
    {.name = "connections",
     .doc = "list the connections to a database; terminate: true ends them",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = conns_params,
     .outputs = conns_outputs,
     .start = pg_act_connections,
     .classify = pg_conns_classify},
    {.name = "health",
     .doc = "check a server and database against thresholds (connections, "
            "long queries and transactions, idle in transaction, blocked "
            "sessions, sizes, dead tuples, unused and invalid indexes, "
            "wraparound, cache hit ratio, WAL archiving, replication lag); "
            "a warn level ends the step warn, a fail level fails it",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = health_params,
     .outputs = health_outputs,
     .start = pg_act_health},
    {.name = "maintenance",
     .doc = "VACUUM (ANALYZE), ANALYZE or REINDEX CONCURRENTLY a database, a "
            "schema, tables or indexes, with dead tuples and sizes before "
            "and after and the server's progress; VACUUM FULL and plain "
            "REINDEX only when asked (disruptive)",
     .side_effect = ENG_SIDE_MAINTENANCE,
     .flags = ENG_A_REPEAT_SAFE,
     .params = maint_params,
     .outputs = maint_outputs,
     .start = pg_act_maintenance,
     .classify = pg_maint_classify,
     .describe = pg_describe_maint},
};

static const eng_lua_func pg_lua[] = {
    {"pg", "query",
     "pg.query(url, sql, ...): rows of one statement run in a READ ONLY "
     "transaction; extra arguments are $1..$n",
     pg_lua_query},
};

static const eng_plugin pg_plugin = {
    ENG_PLUGIN_HEADER,
    .name = "postgres",
    .version = "1.0.0",
    .doc = "PostgreSQL: sandbox, dump/restore (pg_dump, pg_restore, psql), "
           "row counts, compare, integrity checks, guarded database drops",
    .actions = pg_actions,
    .n_actions = sizeof pg_actions / sizeof pg_actions[0],
    .lua_funcs = pg_lua,
    .n_lua_funcs = sizeof pg_lua / sizeof pg_lua[0],
    .init = pg_init,
};

ENG_PLUGIN_DEFINE(pg_plugin)
