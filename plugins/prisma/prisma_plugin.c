/*
 * prisma_plugin.c - the prisma plugin's descriptor: Prisma Migrate's
 * status, deploy and resolve, native (libpq, no Node) or (deploy) through
 * the Prisma CLI.
 */
#include "prisma_int.h"

/* The postgres sources compiled into this module use this host table. */

static int prisma_init(const eng_host *host) {
  if (host->abi_major != ENG_ABI_MAJOR ||
      host->size < offsetof(eng_host, at_run_end) + sizeof host->at_run_end)
    return -1;
  pg_host = host;
  return 0;
}

#define P_URL                                                                  \
  {                                                                            \
    .name = "url", .type = ENG_T_STRING, .target = ENG_TARGET_DATABASE,        \
    .doc =                                                                     \
        "the target database: postgresql://USER:PASSWORD@HOST:PORT/DBNAME, "   \
        "as in Prisma's DATABASE_URL (?schema=NAME selects the schema of "     \
        "_prisma_migrations, default public); default $DATABASE_URL"           \
  }
#define P_MIGRATIONS                                                           \
  {                                                                            \
    .name = "migrations", .type = ENG_T_STRING,                                \
    .def = "\"prisma/migrations\"", .target = ENG_TARGET_NONE,                 \
    .choices = NULL,                                                           \
    .doc = "the migrations folder (one folder per migration holding "          \
           "migration.sql, and migration_lock.toml), relative to the working " \
           "directory"                                                         \
  }
#define P_END {0}
#define O_END {NULL, 0, NULL}

static const eng_param status_params[] = {
    P_URL,
    P_MIGRATIONS,
    {.name = "require_up_to_date",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc =
         "fail the step unless every migration is applied, none failed and no "
         "applied migration.sql was edited"},
    P_END};

static const eng_output status_outputs[] = {
    {"applied", ENG_T_LIST, "migrations applied (finished, not rolled back)"},
    {"pending", ENG_T_LIST, "migrations of the folder not applied yet"},
    {"failed", ENG_T_LIST,
     "migrations started but neither finished nor rolled back: they block "
     "deploy (Prisma's P3009)"},
    {"modified", ENG_T_LIST,
     "applied migrations whose migration.sql changed since (checksum "
     "differs; Prisma itself does not report this)"},
    {"missing_locally", ENG_T_LIST,
     "applied migrations that have no folder in `migrations`"},
    {"up_to_date", ENG_T_BOOL, "nothing pending, failed or modified"},
    O_END};

static const eng_param deploy_params[] = {
    P_URL,
    P_MIGRATIONS,
    {.name = "mode",
     .type = ENG_T_STRING,
     .def = "\"native\"",
     .target = ENG_TARGET_NONE,
     .choices = "native|cli",
     .doc =
         "native: apply the pending migrations here, exactly as Prisma does; "
         "cli: run `npx prisma migrate deploy` (needs Node and the project)"},
    {.name = "lock_timeout",
     .type = ENG_T_DURATION,
     .def = "\"10s\"",
     .target = ENG_TARGET_NONE,
     .doc = "(native) how long to wait for the migration advisory lock "
            "(pg_advisory_lock(72707369)) that another deploy holds"},
    {.name = "cwd",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc =
         "(cli) directory to run Prisma in (the project's root); default the "
         "working directory"},
    {.name = "cli",
     .type = ENG_T_LIST,
     .items = ENG_ITEMS_STRING,
     .def = "[\"npx\", \"--no\", \"prisma\"]",
     .target = ENG_TARGET_COMMAND,
     .doc = "(cli) the Prisma command; `migrate deploy` is appended. npx --no "
            "never downloads a Prisma that the project does not have"},
    P_END};

static const eng_output deploy_outputs[] = {
    {"applied_now", ENG_T_LIST, "migrations this step applied, in order"},
    {"up_to_date", ENG_T_BOOL,
     "every migration of the folder is applied (none failed or modified)"},
    {"modified", ENG_T_LIST,
     "(native) applied migrations whose migration.sql changed since"},
    O_END};

static const eng_param resolve_params[] = {
    P_URL,
    P_MIGRATIONS,
    {.name = "applied",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "record this migration (its folder name) as applied without "
            "running it: its changes are already in the database (`prisma "
            "migrate resolve --applied`); a failed attempt of it is marked "
            "rolled back"},
    {.name = "rolled_back",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "record this failed migration as rolled back (`prisma migrate "
            "resolve --rolled-back`): you undid what it did, and the next "
            "deploy runs it again"},
    {.name = "baseline",
     .type = ENG_T_BOOL,
     .def = "false",
     .target = ENG_TARGET_NONE,
     .doc = "record every migration of the folder (up to `up_to`) as applied, "
            "on a database that has no migration history yet: an existing "
            "database adopting Prisma (Prisma's P3005); refused when "
            "_prisma_migrations has rows"},
    {.name = "up_to",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "(baseline) the last migration the database already has; the "
            "later ones stay pending for prisma.deploy"},
    {.name = "lock_timeout",
     .type = ENG_T_DURATION,
     .def = "\"10s\"",
     .target = ENG_TARGET_NONE,
     .doc = "how long to wait for the migration advisory lock that a deploy "
            "holds"},
    P_END};

static const eng_output resolve_outputs[] = {
    {"applied_now", ENG_T_LIST, "migrations recorded as applied, in order"},
    {"rolled_back_now", ENG_T_LIST,
     "migrations whose failed attempt was recorded as rolled back"},
    O_END};

#define P_LINT_COMMON                                                          \
  {.name = "pg_major",                                                         \
   .type = ENG_T_INT,                                                          \
   .flags = ENG_P_MIN | ENG_P_MAX,                                             \
   .min = 10,                                                                  \
   .max = 17,                                                                  \
   .target = ENG_TARGET_NONE,                                                  \
   .doc = "the production server's major version: what rewrites differs "     \
          "(before 11 any default added with a column rewrites the table); "   \
          "default 15"},                                                       \
  {                                                                            \
    .name = "transaction", .type = ENG_T_STRING, .def = "\"auto\"",            \
    .target = ENG_TARGET_NONE, .choices = "auto|always|never",                 \
    .doc = "how a migration runs: auto as Prisma (a migration of several "     \
           "statements is one transaction, a single statement runs alone), "   \
           "always, never"                                                     \
  }

static const eng_param lint_params[] = {
    P_MIGRATIONS,
    P_LINT_COMMON,
    {.name = "fail_on",
     .type = ENG_T_STRING,
     .def = "\"error\"",
     .target = ENG_TARGET_NONE,
     .choices = "error|warning|never",
     .doc = "fail the step on findings of this level or above; findings "
            "below it end the step `warn`"},
    {.name = "only",
     .type = ENG_T_LIST,
     .items = ENG_ITEMS_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "report only these migrations (e.g. prisma.status's `pending`); "
            "the others are still read, in order"},
    P_END};

static const eng_output lint_outputs[] = {
    {"findings", ENG_T_LIST,
     "[{file, migration, line, col, level, rule, message, lock, blocks, fix, "
     "suppressed, text}]"},
    {"errors", ENG_T_INT, "findings of level error (not allowed by a comment)"},
    {"warnings", ENG_T_INT, "findings of level warning (not allowed)"},
    {"suppressed", ENG_T_INT, "findings allowed by `-- lint: allow RULE REASON`"},
    {"digest", ENG_T_STRING,
     "SHA-256 over every migration's name and bytes: the same set, the same "
     "digest"},
    {"migrations", ENG_T_LIST, "[{name, file, sha256}] in order"},
    O_END};

static const eng_param rehearse_params[] = {
    {.name = "url",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_DATABASE,
     .flags = ENG_P_REQUIRED,
     .doc = "the temporary copy to rehearse on: a database this run created "
            "(postgres.restore of a backup, postgres.create_database from a "
            "template); any other is refused before anything is changed"},
    P_MIGRATIONS,
    {.name = "max_write_block",
     .type = ENG_T_DURATION,
     .target = ENG_TARGET_NONE,
     .doc = "longest a statement may hold a lock that blocks writes (SHARE "
            "and stronger), until its transaction commits; unset: no limit"},
    {.name = "max_read_block",
     .type = ENG_T_DURATION,
     .target = ENG_TARGET_NONE,
     .doc = "longest a statement may hold ACCESS EXCLUSIVE (blocks reads and "
            "writes), until its transaction commits; unset: no limit"},
    {.name = "max_statement",
     .type = ENG_T_DURATION,
     .target = ENG_TARGET_NONE,
     .doc = "longest a statement may run; unset: no limit"},
    {.name = "on_exceed",
     .type = ENG_T_STRING,
     .def = "\"fail\"",
     .target = ENG_TARGET_NONE,
     .choices = "fail|warn",
     .doc = "a threshold crossed fails the step, or ends it `warn`"},
    {.name = "record",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "write the verdict and the migrations' digest to this JSON file, "
            "for prisma.check_rehearsal before a deploy"},
    {.name = "production_rows",
     .type = ENG_T_INT,
     .flags = ENG_P_MIN,
     .min = 0,
     .target = ENG_TARGET_NONE,
     .doc = "rows of the largest table in production, when the copy holds "
            "fewer: the scale of the figures is stated with it"},
    {.name = "lock_timeout",
     .type = ENG_T_DURATION,
     .def = "\"10s\"",
     .target = ENG_TARGET_NONE,
     .doc = "how long to wait for the migration advisory lock"},
    P_END};

static const eng_output rehearse_outputs[] = {
    {"statements", ENG_T_LIST,
     "per statement: {migration, statement, sql, started_at_ms, duration_ms, "
     "transaction, lock, blocks, blocked_ms, locks [{relation, mode, "
     "blocks}], rewrites, full_scans, rows_written, phases}"},
    {"verdict", ENG_T_STRING, "pass, warn or fail"},
    {"exceeded", ENG_T_LIST, "the thresholds crossed, one line each"},
    {"scale", ENG_T_STRING,
     "what the figures are worth: the copy's rows (and production's)"},
    {"digest", ENG_T_STRING, "the migrations folder's digest (prisma.lint)"},
    {"applied_now", ENG_T_LIST, "migrations applied to the copy, in order"},
    O_END};

static const eng_param check_params[] = {
    {.name = "record",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_NONE,
     .doc = "the file prisma.rehearse wrote (its `record`)"},
    P_MIGRATIONS,
    {.name = "max_age",
     .type = ENG_T_DURATION,
     .def = "\"24h\"",
     .target = ENG_TARGET_NONE,
     .doc = "how recent the rehearsal must be"},
    P_END};

static const eng_output check_outputs[] = {
    {"digest", ENG_T_STRING, "the migrations folder's digest now"},
    {"rehearsal", ENG_T_MAP, "the record read"},
    O_END};

static const eng_action prisma_actions[] = {
    {.name = "status",
     .doc =
         "Compare the migrations folder with the database's _prisma_migrations "
         "table: applied, pending, failed and edited migrations",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = status_params,
     .outputs = status_outputs,
     .start = prisma_act_status},
    {.name = "deploy",
     .doc =
         "Apply the pending migrations (prisma migrate deploy) under Prisma's "
         "advisory lock; refuses while a failed migration is recorded",
     .side_effect = ENG_SIDE_CREATES,
     .flags = ENG_A_REPEAT_SAFE,
     .params = deploy_params,
     .outputs = deploy_outputs,
     .start = prisma_act_deploy},
    {.name = "resolve",
     .doc = "Record migrations as applied or rolled back without running them "
            "(prisma migrate resolve), or baseline a database that predates "
            "its migration history; writes only _prisma_migrations",
     .side_effect = ENG_SIDE_CREATES,
     .flags = ENG_A_REPEAT_SAFE,
     .params = resolve_params,
     .outputs = resolve_outputs,
     .start = prisma_act_resolve},
    {.name = "lint",
     .doc = "Lint the migrations with PostgreSQL's parser, no database: each "
            "statement that takes a lock blocking reads or writes, rewrites "
            "a table or breaks running code, with the lock, what it blocks "
            "and the safe recipe (docs/migrations.md)",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = lint_params,
     .outputs = lint_outputs,
     .start = prisma_act_lint},
    {.name = "rehearse",
     .doc = "Apply the pending migrations to a temporary copy this run "
            "created, as deploy does, observing every statement: duration, "
            "the strongest lock per table and what it blocks, rewrites, full "
            "scans; thresholds give a verdict",
     .side_effect = ENG_SIDE_CREATES,
     .params = rehearse_params,
     .outputs = rehearse_outputs,
     .start = prisma_act_rehearse},
    {.name = "check_rehearsal",
     .doc = "Require a passing rehearsal (prisma.rehearse `record`) of exactly "
            "these migrations (same digest), recent enough, before a deploy",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = check_params,
     .outputs = check_outputs,
     .start = prisma_act_check_rehearsal},
};

static const eng_plugin prisma_plugin = {
    ENG_PLUGIN_HEADER,
    .name = "prisma",
    .version = "1.0.0",
    .doc = "Prisma Migrate: status, deploy and resolve of prisma/migrations, "
           "natively over libpq (no Node needed) and compatible with the "
           "Prisma CLI; migration lint and rehearsal on a copy",
    .actions = prisma_actions,
    .n_actions = sizeof prisma_actions / sizeof prisma_actions[0],
    .lua_funcs = NULL,
    .n_lua_funcs = 0,
    .init = prisma_init,
};

ENG_PLUGIN_DEFINE(prisma_plugin)
