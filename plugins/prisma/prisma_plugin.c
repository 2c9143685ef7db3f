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
};

static const eng_plugin prisma_plugin = {
    ENG_PLUGIN_HEADER,
    .name = "prisma",
    .version = "1.0.0",
    .doc = "Prisma Migrate: status, deploy and resolve of prisma/migrations, "
           "natively over libpq (no Node needed) and compatible with the "
           "Prisma CLI",
    .actions = prisma_actions,
    .n_actions = sizeof prisma_actions / sizeof prisma_actions[0],
    .lua_funcs = NULL,
    .n_lua_funcs = 0,
    .init = prisma_init,
};

ENG_PLUGIN_DEFINE(prisma_plugin)
