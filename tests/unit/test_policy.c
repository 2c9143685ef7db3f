/* Unit tests for core/run/policy.c: the decision the guard policy takes on
 * one target, as a table. Each row gives the target (kind, value,
 * evidence), its side effect, the run's protected lists (or a broken
 * list), whether the run's journal says it created the target,
 * --allow-destructive and plan-time (static) checking, and expects a pass
 * or a refusal naming its rule and saying why. Then the command lines the
 * guards read (eng__command_line, eng__command_env), refusals decided
 * elsewhere (eng__policy_refuse) and what a decision leaves in the report
 * and the audit log. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "state/state.h"
#include "unit.h"

static char dir[4096];   /* the run directory: its journal says what it owns */
static eng__runbook *rb;

/* The lists of a runbook's guards, as guards.c compiles them. */
#define LISTS                                                               \
  "{\"protected_databases\": [\"prod*\", \"10.0.0.5:5432/ledger\","         \
  "                           \"sysid:7291047362113839104\"],"              \
  " \"protected_volumes\": [\"pgdata_prod\"],"                              \
  " \"protected_buckets\": [\"s3://prod-backups/*\"],"                      \
  " \"protected_instances\": [\"ledger-prod\"],"                            \
  " \"protected_paths\": [\"/var/lib/postgresql/*\", \"/srv/keep\"],"       \
  " \"forbidden_commands\": [\"terraform destroy\", \"/etc/passwd\"]}"

typedef struct row {
  const char *name;
  eng_target kind;
  const char *value, *evidence; /* for a command: the line and its env */
  eng_side_effect side;
  const char *lists;  /* JSON; NULL: LISTS */
  const char *broken; /* JSON {list: why} or NULL */
  bool refuse_unverified, allow_destructive, static_check;
  bool refused;
  const char *rule;   /* of the refusal, or of the last decision recorded */
  const char *says;   /* a part of the refusal message or the pass's note */
} row;

#define DB ENG_TARGET_DATABASE
#define CMD ENG_TARGET_COMMAND
#define RO ENG_SIDE_READ_ONLY
#define CREATES ENG_SIDE_CREATES
#define DESTROYS ENG_SIDE_DESTRUCTIVE
#define DISRUPTS ENG_SIDE_DISRUPTIVE
#define BROKEN_DB "{\"protected_databases\": \"guards.protected_databases[1] (line 5) could not be resolved: no params.prod\"}"

static const row rows[] = {
    /* ---- protected databases: name, HOST:PORT/DBNAME, sysid ---- */
    {.name = "protected name, destructive", .kind = DB, .value = "prod", .side = DESTROYS,
     .refused = true, .rule = "protected_databases",
     .says = "refused: database 'prod' is protected by guards.protected_databases pattern 'prod*'; nothing was done"},
    {.name = "protected glob, creating", .kind = DB, .value = "prod_eu", .side = CREATES,
     .refused = true, .rule = "protected_databases", .says = "pattern 'prod*'"},
    {.name = "protected name, disruptive", .kind = DB, .value = "prod", .side = DISRUPTS,
     .refused = true, .rule = "protected_databases"},
    {.name = "protected name, even with --allow-destructive", .kind = DB, .value = "prod",
     .side = DESTROYS, .allow_destructive = true, .refused = true, .rule = "protected_databases",
     .says = "protection cannot be overridden by flags"},
    {.name = "protected name, even at plan time", .kind = DB, .value = "prod", .side = DESTROYS,
     .static_check = true, .refused = true, .rule = "protected_databases"},
    {.name = "protected name read", .kind = DB, .value = "prod", .side = RO,
     .rule = "protected_databases", .says = "read-only use"},
    {.name = "HOST:PORT/DBNAME, name protected", .kind = DB, .value = "127.0.0.1:5432/prod",
     .side = DESTROYS, .refused = true, .rule = "protected_databases",
     .says = "database '127.0.0.1:5432/prod' is protected"},
    {.name = "HOST:PORT/DBNAME pattern", .kind = DB, .value = "10.0.0.5:5432/ledger",
     .side = DESTROYS, .allow_destructive = true, .refused = true, .rule = "protected_databases",
     .says = "pattern '10.0.0.5:5432/ledger'"},
    {.name = "same name on another server", .kind = DB, .value = "10.0.0.6:5432/ledger",
     .side = DESTROYS, .allow_destructive = true, .rule = "protected_databases"},
    {.name = "sysid evidence", .kind = DB, .value = "10.0.0.7:5432/drill", .side = DESTROYS,
     .evidence = "sysid:7291047362113839104", .allow_destructive = true, .refused = true,
     .rule = "protected_databases",
     .says = "pattern 'sysid:7291047362113839104' (server identity sysid:7291047362113839104)"},
    {.name = "sysid evidence, read", .kind = DB, .value = "10.0.0.7:5432/drill", .side = RO,
     .evidence = "sysid:7291047362113839104", .rule = "protected_databases", .says = "read-only use"},
    {.name = "another sysid", .kind = DB, .value = "10.0.0.7:5432/drill", .side = DESTROYS,
     .evidence = "sysid:1", .allow_destructive = true, .rule = "protected_databases"},
    {.name = "connection URL", .kind = DB, .value = "postgresql://app@db:5432/prod",
     .side = DESTROYS, .rule = "protected_databases", .says = "connection"},
    {.name = "conninfo", .kind = DB, .value = "host=db dbname=prod", .side = DESTROYS,
     .rule = "protected_databases", .says = "connection"},
    /* ---- ownership of destructive actions ---- */
    {.name = "not created by the run", .kind = DB, .value = "staging", .side = DESTROYS,
     .refused = true, .rule = "ownership",
     .says = "refused: destructive action on database 'staging', which this run did not "
             "create; pass --allow-destructive if that is intended"},
    {.name = "--allow-destructive", .kind = DB, .value = "staging", .side = DESTROYS,
     .allow_destructive = true, .rule = "protected_databases"},
    {.name = "plan time: ownership decided when it runs", .kind = DB, .value = "staging",
     .side = DESTROYS, .static_check = true, .rule = "protected_databases"},
    {.name = "creating needs no ownership", .kind = DB, .value = "staging", .side = CREATES,
     .rule = "protected_databases"},
    {.name = "disrupting needs no ownership", .kind = DB, .value = "staging", .side = DISRUPTS,
     .rule = "protected_databases"},
    {.name = "owned, by bare name", .kind = DB, .value = "drill_own", .side = DESTROYS,
     .rule = "protected_databases"},
    {.name = "owned, by HOST:PORT/DBNAME", .kind = DB, .value = "127.0.0.1:5432/drill_own",
     .side = DESTROYS, .rule = "protected_databases"},
    {.name = "owned, already removed: dropping again", .kind = DB, .value = "drill_gone",
     .side = DESTROYS, .rule = "protected_databases"},
    {.name = "owned, but protected", .kind = DB, .value = "prod_restored", .side = DESTROYS,
     .refused = true, .rule = "protected_databases"},
    {.name = "another kind of the same id is not owned", .kind = ENG_TARGET_VOLUME,
     .value = "drill_own", .side = DESTROYS, .refused = true, .rule = "ownership",
     .says = "volume 'drill_own'"},
    /* ---- volumes, containers, buckets, instances, snapshots, paths ---- */
    {.name = "protected volume", .kind = ENG_TARGET_VOLUME, .value = "pgdata_prod",
     .side = DESTROYS, .allow_destructive = true, .refused = true, .rule = "protected_volumes",
     .says = "volume 'pgdata_prod' is protected by guards.protected_volumes"},
    {.name = "container of a protected volume", .kind = ENG_TARGET_CONTAINER,
     .value = "pgdata_prod", .side = DISRUPTS, .refused = true, .rule = "protected_volumes",
     .says = "container 'pgdata_prod'"},
    {.name = "volume not created", .kind = ENG_TARGET_VOLUME, .value = "scratch",
     .side = DESTROYS, .refused = true, .rule = "ownership"},
    {.name = "volume created", .kind = ENG_TARGET_VOLUME, .value = "ownvol", .side = DESTROYS,
     .rule = "protected_volumes"},
    {.name = "protected bucket key, written", .kind = ENG_TARGET_BUCKET,
     .value = "s3://prod-backups/db/x.dump", .side = CREATES, .refused = true,
     .rule = "protected_buckets", .says = "object 's3://prod-backups/db/x.dump'"},
    {.name = "protected bucket key, read", .kind = ENG_TARGET_BUCKET,
     .value = "s3://prod-backups/db/x.dump", .side = RO, .rule = "protected_buckets",
     .says = "read-only use"},
    {.name = "object created", .kind = ENG_TARGET_BUCKET, .value = "s3://drill/own.dump",
     .side = DESTROYS, .rule = "protected_buckets"},
    {.name = "object not created", .kind = ENG_TARGET_BUCKET, .value = "s3://drill/other.dump",
     .side = DESTROYS, .refused = true, .rule = "ownership", .says = "object 's3://drill/other.dump'"},
    {.name = "protected instance", .kind = ENG_TARGET_INSTANCE, .value = "ledger-prod",
     .side = DESTROYS, .allow_destructive = true, .refused = true, .rule = "protected_instances"},
    {.name = "snapshot of a protected instance, deleted", .kind = ENG_TARGET_SNAPSHOT,
     .value = "snap-1", .evidence = "ledger-prod", .side = DESTROYS, .allow_destructive = true,
     .refused = true, .rule = "protected_instances", .says = "snapshot 'snap-1'"},
    {.name = "snapshot of a protected instance, taken", .kind = ENG_TARGET_SNAPSHOT,
     .value = "snap-1", .evidence = "ledger-prod", .side = RO, .rule = "protected_instances"},
    {.name = "snapshot of another instance", .kind = ENG_TARGET_SNAPSHOT, .value = "snap-2",
     .evidence = "drill-db", .side = CREATES, .rule = "protected_instances"},
    {.name = "protected path", .kind = ENG_TARGET_FILE, .value = "/var/lib/postgresql/15/main",
     .side = CREATES, .refused = true, .rule = "protected_paths"},
    {.name = "a path elsewhere", .kind = ENG_TARGET_FILE, .value = "/backups/x.dump",
     .side = CREATES, .rule = "protected_paths"},
    /* ---- a list that could not be resolved fails safe ---- */
    {.name = "broken list refuses", .kind = DB, .value = "anything", .side = DESTROYS,
     .allow_destructive = true, .broken = BROKEN_DB, .refused = true,
     .rule = "protected_databases",
     .says = "refused: guards.protected_databases[1] (line 5) could not be resolved: no "
             "params.prod; fix the guard"},
    {.name = "broken list, creating", .kind = DB, .value = "drill_new", .side = CREATES,
     .broken = BROKEN_DB, .refused = true, .rule = "protected_databases"},
    {.name = "broken list of another kind", .kind = ENG_TARGET_VOLUME, .value = "v1",
     .side = CREATES, .broken = BROKEN_DB, .rule = "protected_volumes"},
    {.name = "broken forbidden_commands", .kind = CMD, .value = "echo hello",
     .broken = "{\"forbidden_commands\": \"guards.forbidden_commands[0] could not be resolved\"}",
     .refused = true, .rule = "forbidden_commands", .says = "fix the guard"},
    {.name = "broken list, a command using it", .kind = CMD, .value = "dropdb drill",
     .broken = BROKEN_DB, .allow_destructive = true, .refused = true,
     .rule = "protected_databases", .says = "fix the guard"},
    /* ---- forbidden commands ---- */
    {.name = "built-in: prisma migrate reset", .kind = CMD,
     .value = "npx prisma migrate reset --force", .refused = true, .rule = "forbidden_commands",
     .says = "forbidden 'prisma migrate reset' (built-in rule); this rule cannot be switched off"},
    {.name = "built-in: options in between", .kind = CMD,
     .value = "docker compose -f x.yml down -v", .refused = true, .rule = "forbidden_commands",
     .says = "'docker compose down -v'"},
    {.name = "built-in: by path, after &&", .kind = CMD,
     .value = "echo ok && /usr/local/bin/docker-compose down --volumes", .refused = true,
     .rule = "forbidden_commands", .says = "'docker-compose down --volumes'"},
    {.name = "built-in: quotes, case, line continuation", .kind = CMD,
     .value = "PRISMA \"db\" \\\n push --accept-data-loss", .refused = true,
     .rule = "forbidden_commands", .says = "'prisma db push --accept-data-loss'"},
    {.name = "built-in, even with --allow-destructive", .kind = CMD,
     .value = "prisma migrate dev", .allow_destructive = true, .refused = true,
     .rule = "forbidden_commands"},
    {.name = "words split across commands", .kind = CMD,
     .value = "docker compose ps; echo down -v", .rule = "forbidden_commands"},
    {.name = "runbook's rule", .kind = CMD,
     .value = "cd infra; terraform -chdir=x destroy -auto-approve", .refused = true,
     .rule = "forbidden_commands", .says = "forbidden 'terraform destroy' (guards.forbidden_commands)"},
    {.name = "runbook's rule as plain text", .kind = CMD, .value = "cat /etc/passwd | wc -l",
     .refused = true, .rule = "forbidden_commands", .says = "'/etc/passwd'"},
    {.name = "harmless command", .kind = CMD, .value = "echo hello", .rule = "forbidden_commands"},
    /* ---- what a command line does to protected targets ---- */
    {.name = "dropdb of a protected database", .kind = CMD, .value = "dropdb prod",
     .allow_destructive = true, .refused = true, .rule = "protected_databases",
     .says = "refused: database 'prod' is protected by guards.protected_databases pattern "
             "'prod*' (dropdb: dropdb)"},
    {.name = "dropdb through sudo and a path", .kind = CMD,
     .value = "sudo -u postgres /usr/bin/dropdb prod_eu", .refused = true,
     .rule = "protected_databases"},
    {.name = "dropdb inside sh -c", .kind = CMD, .value = "sh -c 'dropdb prod'",
     .refused = true, .rule = "protected_databases"},
    {.name = "dropdb not created by the run", .kind = CMD, .value = "dropdb staging",
     .refused = true, .rule = "ownership", .says = "database 'staging'"},
    {.name = "dropdb with --allow-destructive", .kind = CMD, .value = "dropdb staging",
     .allow_destructive = true, .rule = "protected_databases"},
    {.name = "dropdb of an owned database", .kind = CMD, .value = "dropdb drill_own",
     .rule = "protected_databases"},
    {.name = "pg_dump of production (a read)", .kind = CMD, .value = "pg_dump -d prod -Fc",
     .rule = "commands", .says = "read-only use"},
    {.name = "psql SELECT on production", .kind = CMD,
     .value = "psql -d prod -c 'select count(*) from t'", .rule = "commands",
     .says = "read-only use"},
    {.name = "psql writing to production", .kind = CMD,
     .value = "psql -d prod -c 'delete from t'", .allow_destructive = true, .refused = true,
     .rule = "protected_databases", .says = "(psql: DELETE (destructive): delete from t)"},
    {.name = "psql URL naming production", .kind = CMD,
     .value = "psql postgresql://app@db/prod -c 'truncate t'", .allow_destructive = true,
     .refused = true, .rule = "protected_databases"},
    {.name = "PGDATABASE from the step's env", .kind = CMD, .value = "psql -c 'drop table t'",
     .evidence = "PGDATABASE=prod\n", .allow_destructive = true, .refused = true,
     .rule = "protected_databases"},
    {.name = "psql without a database", .kind = CMD, .value = "psql -f migrate.sql",
     .allow_destructive = true, .refused = true, .rule = "protected_databases",
     .says = "a target the guards cannot tell, and guards.protected_databases protects some"},
    {.name = "psql without a database, nothing protected", .kind = CMD,
     .value = "psql -f migrate.sql", .lists = "{}", .rule = "forbidden_commands"},
    {.name = "docker volume rm of a protected volume", .kind = CMD,
     .value = "docker volume rm pgdata_prod", .allow_destructive = true, .refused = true,
     .rule = "protected_volumes"},
    {.name = "docker volume prune", .kind = CMD, .value = "docker volume prune -f",
     .refused = true, .rule = "protected_volumes", .says = "every one of them"},
    {.name = "rm under a protected path", .kind = CMD, .value = "rm -rf /var/lib/postgresql/15",
     .refused = true, .rule = "protected_paths",
     .says = "refused: rm destroys path '/var/lib/postgresql/15', protected by "
             "guards.protected_paths pattern '/var/lib/postgresql/*'"},
    {.name = "rm of a directory holding a protected path", .kind = CMD, .value = "rm -rf /srv",
     .refused = true, .rule = "protected_paths", .says = "pattern '/srv/keep'"},
    {.name = "rm of a relative path after cd", .kind = CMD,
     .value = "cd /var/lib/postgresql && rm -rf 15/main", .refused = true,
     .rule = "protected_paths", .says = "'/var/lib/postgresql/15/main'"},
    {.name = "rm relative to the step's cwd", .kind = CMD, .value = "rm -rf data",
     .evidence = "ENGINE_CWD=/srv/keep\n", .refused = true, .rule = "protected_paths",
     .says = "'/srv/keep/data'"},
    {.name = "rm elsewhere", .kind = CMD, .value = "rm -rf /tmp/scratch /srv/keeper",
     .rule = "forbidden_commands"},
    /* ---- unverified command lines ---- */
    {.name = "unverified, allowed by default", .kind = CMD, .value = "eval \"$CMD\"",
     .rule = "unverified_commands", .says = "the text eval runs is not known here"},
    {.name = "unverified, refused", .kind = CMD, .value = "eval \"$CMD\"",
     .refuse_unverified = true, .refused = true, .rule = "unverified_commands",
     .says = "refused: the guards cannot see what this command does (the text eval runs "
             "is not known here) and guards.unverified_commands is 'refuse'"},
    {.name = "a script, refused", .kind = CMD, .value = "bash ./restore.sh",
     .refuse_unverified = true, .refused = true, .rule = "unverified_commands",
     .says = "a shell script runs"},
    {.name = "command substitution, refused", .kind = CMD,
     .value = "echo $(cat /tmp/x)", .refuse_unverified = true, .refused = true,
     .rule = "unverified_commands", .says = "command substitution"},
    {.name = "plain command with refuse", .kind = CMD, .value = "echo hello",
     .refuse_unverified = true, .rule = "forbidden_commands"},
    {.name = "protection decided before unverified", .kind = CMD,
     .value = "dropdb prod; eval \"$X\"", .allow_destructive = true, .refused = true,
     .rule = "protected_databases"},
    /* ---- no target ---- */
    {.name = "no value", .kind = DB, .value = NULL, .side = DESTROYS},
    {.name = "a kind without a list", .kind = ENG_TARGET_NONE, .value = "x", .side = DESTROYS},
};

static int setup(void **state) {
  (void)state;
  if (unit_tmp_dir("engine-test-policy", dir, sizeof dir) != 0) return -1;
  rb = unit_one_step_runbook();
  if (!rb) return -1;
  /* what "the run" created, through the run's own journal */
  eng__run_opts o = {0};
  eng__run r;
  eng__run_init(&r, rb, NULL, &o, "policy-test");
  r.dir = eng__xstrdup(dir);
  if (eng__journal_open(&r.journal, dir, r.redact) != 0) return -1;
  eng__run_journal(&r, "intent", "mk", "database", "127.0.0.1:5432/drill_own", "temporary", NULL);
  eng__run_journal(&r, "intent", "mk", "database", "127.0.0.1:5432/drill_gone", "temporary", NULL);
  eng__run_journal(&r, "removed", "rm", "database", "127.0.0.1:5432/drill_gone", NULL, NULL);
  eng__run_journal(&r, "intent", "mk", "database", "prod_restored", "kept", NULL);
  eng__run_journal(&r, "intent", "mk", "volume", "ownvol", "temporary", NULL);
  eng__run_journal(&r, "intent", "mk", "object", "s3://drill/own.dump", "kept", NULL);
  eng__run_free(&r);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  eng__runbook_free(rb);
  eng__rm_tree(dir);
  return 0;
}

/* A run as the scheduler has it when a step checks its targets. */
static void run_for(eng__run *r, eng__run_opts *o, const row *w) {
  memset(o, 0, sizeof *o);
  o->allow_destructive = w->allow_destructive;
  eng__run_init(r, rb, NULL, o, "policy-test");
  r->dir = eng__xstrdup(dir);
  r->static_check = w->static_check;
  r->policy.lists = json_loads(w->lists ? w->lists : LISTS, 0, NULL);
  assert_non_null(r->policy.lists);
  r->policy.broken = w->broken ? json_loads(w->broken, 0, NULL) : json_object();
  assert_non_null(r->policy.broken);
  r->policy.refuse_unverified = w->refuse_unverified;
}

static const char *field(json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "";
}

/* Check one row; returns a description of what went wrong, or NULL. */
static char *check_row(const row *w) {
  eng__run_opts o;
  eng__run r;
  run_for(&r, &o, w);
  int rc = eng__policy_check(&r, "step", w->kind, w->value, w->evidence, w->side);
  char *bad = NULL;
  json_t *last = json_array_get(r.guard_log, json_array_size(r.guard_log) - 1);
  size_t refusals = 0, i;
  json_t *e;
  json_array_foreach(r.guard_log, i, e)
    if (!strcmp(field(e, "decision"), "refuse")) refusals++;
  if (rc != (w->refused ? ENG_ERR_REFUSED : ENG_OK)) {
    bad = eng__asprintf("returned %s (%s)", eng_err_name(rc),
                        r.last_refusal ? r.last_refusal : "no refusal");
  } else if (w->refused) {
    if (!r.last_refusal || refusals != 1 || !last ||
        strcmp(field(last, "decision"), "refuse"))
      bad = eng__asprintf("refusal not recorded once as the last decision");
    else if (strcmp(field(last, "rule"), w->rule))
      bad = eng__asprintf("rule %s, expected %s (%s)", field(last, "rule"), w->rule,
                          r.last_refusal);
    else if (w->says && !strstr(r.last_refusal, w->says))
      bad = eng__asprintf("message '%s' lacks '%s'", r.last_refusal, w->says);
    else if (strcmp(field(last, "message"), r.last_refusal))
      bad = eng__asprintf("recorded message differs: %s", field(last, "message"));
  } else {
    if (r.last_refusal || refusals)
      bad = eng__asprintf("passed but recorded a refusal: %s", r.last_refusal);
    else if (!w->rule && json_array_size(r.guard_log))
      bad = eng__asprintf("recorded a decision for nothing to check");
    else if (w->rule && (!last || strcmp(field(last, "decision"), "pass") ||
                         strcmp(field(last, "rule"), w->rule)))
      bad = eng__asprintf("last decision %s/%s, expected pass/%s",
                          last ? field(last, "decision") : "none",
                          last ? field(last, "rule") : "none", w->rule);
    else if (w->says && !strstr(field(last, "message"), w->says))
      bad = eng__asprintf("pass noted '%s', expected '%s'", field(last, "message"), w->says);
  }
  eng__run_free(&r);
  return bad;
}

static void test_decisions(void **state) {
  (void)state;
  size_t failed = 0;
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    char *bad = check_row(&rows[i]);
    if (bad) {
      print_error("row %zu (%s: %s): %s\n", i, rows[i].name,
                  rows[i].value ? rows[i].value : "NULL", bad);
      failed++;
    }
    free(bad);
  }
  print_message("%zu policy rows checked\n", sizeof rows / sizeof *rows);
  assert_int_equal(failed, 0);
}

/* The run created 127.0.0.1:5432/drill_own. A destructive action on
 * drill_own on ANOTHER server (10.9.9.9:5432/drill_own, what the postgres
 * plugin's guard_target passes for a drop through a connection to that
 * server) is not on a target this run created: without
 * --allow-destructive it is refused. A bare name ("dropdb drill_own")
 * matching the journaled HOST:PORT/drill_own stays owned: the table's
 * "dropdb of an owned database" row. */
static void test_owned_name_on_another_server_is_not_owned(void **state) {
  (void)state;
  const row w = {.name = "created on another server", .kind = DB,
                 .value = "10.9.9.9:5432/drill_own", .side = DESTROYS,
                 .refused = true, .rule = "ownership",
                 .says = "which this run did not create"};
  char *bad = check_row(&w);
  if (bad) print_error("KNOWN CORE BUG: %s: %s\n", w.value, bad);
  bool refused = !bad;
  free(bad);
  assert_true(refused);
}

/* The recorded decision names the target and the evidence. */
static void test_decision_record(void **state) {
  (void)state;
  const row w = {.kind = DB, .value = "10.0.0.7:5432/drill", .evidence = "sysid:7291047362113839104",
                 .side = DESTROYS};
  eng__run_opts o;
  eng__run r;
  run_for(&r, &o, &w);
  assert_int_equal(eng__policy_check(&r, "restore", w.kind, w.value, w.evidence, w.side),
                   ENG_ERR_REFUSED);
  json_t *d = json_array_get(r.guard_log, 0);
  assert_string_equal(field(d, "step"), "restore");
  assert_string_equal(field(d, "target"), "10.0.0.7:5432/drill");
  assert_string_equal(field(d, "evidence"), "sysid:7291047362113839104");
  eng__run_free(&r);
}

/* A command given as an argv list is read word by word, quoted: the
 * guards see the same words the process gets. */
static void test_command_line(void **state) {
  (void)state;
  json_t *v = json_pack("[s, s, s]", "psql", "-c", "it's; rm -rf /");
  char *line = eng__command_line(v);
  assert_string_equal(line, "'psql' '-c' 'it'\\''s; rm -rf /'");
  free(line);
  json_decref(v);
  v = json_pack("[s, i, b]", "sleep", 5, 1);
  line = eng__command_line(v);
  assert_string_equal(line, "'sleep' '5' 'true'");
  free(line);
  json_decref(v);
  v = json_string("echo $HOME");
  line = eng__command_line(v);
  assert_string_equal(line, "echo $HOME");
  free(line);
  json_decref(v);
  v = json_integer(3);
  assert_null(eng__command_line(v));
  json_decref(v);
  assert_null(eng__command_line(NULL));

  /* quoted words still match the rules and the analyser */
  eng__run_opts o;
  eng__run r;
  const row w = {.kind = CMD};
  run_for(&r, &o, &w);
  v = json_pack("[s, s, s, s]", "npx", "prisma", "migrate", "reset");
  line = eng__command_line(v);
  assert_int_equal(eng__policy_check(&r, "s", CMD, line, NULL, ENG_SIDE_EXTERNAL),
                   ENG_ERR_REFUSED);
  assert_non_null(strstr(r.last_refusal, "prisma migrate reset"));
  free(line);
  json_decref(v);
  v = json_pack("[s, s]", "dropdb", "prod");
  line = eng__command_line(v);
  assert_int_equal(eng__policy_check(&r, "s", CMD, line, NULL, ENG_SIDE_EXTERNAL),
                   ENG_ERR_REFUSED);
  assert_non_null(strstr(r.last_refusal, "database 'prod' is protected"));
  free(line);
  json_decref(v);
  /* a word that only looks like a separator stays one word */
  v = json_pack("[s, s, s]", "echo", "a;", "dropdb");
  line = eng__command_line(v);
  free(r.last_refusal);
  r.last_refusal = NULL;
  assert_int_equal(eng__policy_check(&r, "s", CMD, line, NULL, ENG_SIDE_EXTERNAL), ENG_OK);
  free(line);
  json_decref(v);
  eng__run_free(&r);
}

/* The environment the analyser sees: the step's env (values as text) and
 * its cwd. */
static void test_command_env(void **state) {
  (void)state;
  json_t *p = json_pack("{s:{s:s, s:i}, s:s}", "env", "PGDATABASE", "prod", "N", 2,
                        "cwd", "/srv/keep");
  char *env = eng__command_env(p);
  assert_string_equal(env, "PGDATABASE=prod\nN=2\nENGINE_CWD=/srv/keep\n");
  json_decref(p);

  eng__run_opts o;
  eng__run r;
  const row w = {.kind = CMD, .allow_destructive = true};
  run_for(&r, &o, &w);
  assert_int_equal(eng__policy_check(&r, "s", CMD, "psql -c 'drop table t'", env,
                                     ENG_SIDE_EXTERNAL), ENG_ERR_REFUSED);
  assert_non_null(strstr(r.last_refusal, "database 'prod'"));
  free(r.last_refusal);
  r.last_refusal = NULL;
  assert_int_equal(eng__policy_check(&r, "s", CMD, "rm -r old", env, ENG_SIDE_EXTERNAL),
                   ENG_ERR_REFUSED);
  assert_non_null(strstr(r.last_refusal, "'/srv/keep/old'"));
  free(env);
  eng__run_free(&r);

  p = json_pack("{s:s}", "cwd", "");
  env = eng__command_env(p);
  assert_string_equal(env, "");
  free(env);
  json_decref(p);
  env = eng__command_env(NULL);
  assert_string_equal(env, "");
  free(env);
}

/* A refusal decided elsewhere (require, checks) is recorded like the
 * others: the report's guard log, the audit log, the run's last refusal,
 * with secrets masked everywhere. */
static void test_refuse_recorded(void **state) {
  (void)state;
  char *rdir = eng__asprintf("%s/audit-run", dir);
  assert_int_equal(eng__mkdir_p(rdir, 0700), 0);
  eng__run_opts o = {0};
  eng__run r;
  eng__run_init(&r, rb, NULL, &o, "policy-audit");
  r.dir = rdir;
  assert_int_equal(eng__run_open_audit(&r), 0);
  eng__redactor_add(r.redact, "hunter2-secret");
  assert_int_equal(eng__policy_refuse(&r, "restore", "require", "backup",
                                      "refused: password hunter2-secret is wrong"),
                   ENG_ERR_REFUSED);
  assert_string_equal(r.last_refusal, "refused: password *** is wrong");
  json_t *d = json_array_get(r.guard_log, 0);
  assert_string_equal(field(d, "decision"), "refuse");
  assert_string_equal(field(d, "rule"), "require");
  assert_string_equal(field(d, "target"), "backup");
  assert_string_equal(field(d, "step"), "restore");
  assert_null(strstr(field(d, "message"), "hunter2"));
  /* a later one replaces the last refusal; a pass is recorded too */
  eng__policy_refuse(&r, "restore", "checks", "x", "refused: second");
  assert_string_equal(r.last_refusal, "refused: second");
  assert_int_equal(eng__policy_check(&r, "dump", DB, "prod", NULL, RO), ENG_OK);
  assert_int_equal(json_array_size(r.guard_log), 3);
  eng__run_audit(&r, "run.end", json_pack("{s:s}", "status", "refused"));
  eng__audit_close(r.audit);
  r.audit = NULL;
  char *ap = eng__asprintf("%s/audit.jsonl", rdir);
  char *text = eng__read_file(ap, 1 << 20, NULL);
  assert_non_null(text);
  assert_non_null(strstr(text, "\"guard.refuse\""));
  assert_non_null(strstr(text, "\"guard.pass\""));
  assert_non_null(strstr(text, "\"require\""));
  assert_null(strstr(text, "hunter2"));
  assert_int_equal(eng__audit_verify(ap, NULL, stderr), 0);
  free(text);
  free(ap);
  eng__run_free(&r); /* frees rdir */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decisions),
      cmocka_unit_test(test_decision_record),
      cmocka_unit_test(test_command_line),
      cmocka_unit_test(test_command_env),
      cmocka_unit_test(test_refuse_recorded),
      cmocka_unit_test(test_owned_name_on_another_server_is_not_owned),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
