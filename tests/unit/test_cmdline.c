/* Unit tests for core/shell/analyser.c and core/shell/lexer.c: command
 * lines as the guards read them, table-driven. Each row: a line, the step's
 * environment, and every target the analyser must find ("TOOL KIND TARGET
 * SIDE", ";"-separated), with " | unverified" when part of the line cannot
 * be seen through. Then the lexer's guard reading (forbidden_commands) and
 * words quoted for the shell, read back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shell/shell.h"

typedef struct row {
  const char *line;
  const char *env; /* "NAME=VALUE;..." or NULL */
  const char *want;
} row;

static const row rows[] = {
    /* PostgreSQL clients: the target, read or write */
    {"pg_restore --clean --if-exists -d skymoney x.dump", NULL,
     "pg_restore database skymoney destructive"},
    {"pg_restore -c -d skymoney x.dump", NULL, "pg_restore database skymoney destructive"},
    {"pg_restore --create -d postgres x.dump", NULL, "pg_restore database postgres destructive"},
    {"pg_restore -d drill_1 -j 4 x.dump", NULL, "pg_restore database drill_1 creates"},
    {"pg_restore --dbname=drill_2 x.dump", NULL, "pg_restore database drill_2 creates"},
    {"pg_restore -l x.dump", NULL, ""},
    {"pg_restore -f out.sql x.dump", NULL, ""},
    {"psql -d skymoney -c 'TRUNCATE \"User\" CASCADE'", NULL, "psql database skymoney destructive"},
    {"psql \"postgresql://app@db:5432/skymoney\" -c 'DELETE FROM \"User\"'", NULL,
     "psql database skymoney destructive"},
    {"psql 'host=db dbname=skymoney user=app' -c 'UPDATE t SET x=1'", NULL,
     "psql database skymoney destructive"},
    {"psql -d skymoney -c 'SELECT count(*) FROM \"User\"'", NULL, "psql database skymoney read_only"},
    {"psql -d skymoney -c 'select 1' -c 'show server_version'", NULL, "psql database skymoney read_only"},
    {"psql -d skymoney -c 'EXPLAIN SELECT 1'", NULL, "psql database skymoney read_only"},
    {"psql -d skymoney -c 'EXPLAIN ANALYZE DELETE FROM t'", NULL, "psql database skymoney destructive"},
    {"psql -d skymoney -c '\\dt'", NULL, "psql database skymoney read_only"},
    {"psql -d skymoney -c 'WITH x AS (SELECT 1) SELECT * FROM x'", NULL, "psql database skymoney read_only"},
    {"psql -d skymoney -c 'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d'", NULL,
     "psql database skymoney destructive"},
    {"psql -d skymoney -f migrate.sql", NULL, "psql database skymoney destructive"},
    {"psql -d skymoney < dump.sql", NULL, "psql database skymoney destructive"},
    {"psql -l", NULL, "psql database - read_only"},
    {"psql -X -A -t -d shop -c 'select 1'", NULL, "psql database shop read_only"},
    {"psql --dbname=shop --command='drop table t'", NULL, "psql database shop destructive"},
    {"psql -dshop -c 'insert into t values (1)'", NULL, "psql database shop destructive"},
    {"psql -d postgres -c 'DROP DATABASE skymoney'", NULL,
     "psql database skymoney destructive; psql database postgres read_only"},
    {"psql -d postgres -c 'drop database if exists \"Skymoney\"'", NULL,
     "psql database Skymoney destructive; psql database postgres read_only"},
    {"psql -d postgres -c 'CREATE DATABASE drill_9'", NULL,
     "psql database drill_9 creates; psql database postgres read_only"},
    /* the SQL classifier (sql/): a statement naming its database is about
     * it; functions with side effects; maintenance */
    {"psql -d postgres -c 'ALTER DATABASE skymoney RENAME TO gone'", NULL,
     "psql database skymoney destructive; psql database postgres read_only"},
    {"psql -d postgres -c 'ALTER DATABASE skymoney SET work_mem = 1'", NULL,
     "psql database skymoney destructive; psql database postgres read_only"},
    {"psql -d portal -c 'VACUUM ANALYZE'", NULL, "psql database portal maintenance"},
    {"vacuumdb -d portal --analyze", NULL, "vacuumdb database portal maintenance"},
    {"vacuumdb --full portal", NULL, "vacuumdb database portal disruptive"},
    {"reindexdb --concurrently portal", NULL, "reindexdb database portal maintenance"},
    {"reindexdb portal", NULL, "reindexdb database portal disruptive"},
    {"clusterdb -d portal", NULL, "clusterdb database portal disruptive"},
    {"psql -d portal -c 'VACUUM FULL'", NULL, "psql database portal disruptive"},
    {"psql -d portal -c 'SELECT pg_terminate_backend(pid) FROM pg_stat_activity'", NULL,
     "psql database portal disruptive"},
    {"psql -d portal -c 'SELECT lo_unlink(42)'", NULL, "psql database portal destructive"},
    {"psql -d portal -c 'SELECT my_cleanup()'", NULL, "psql database portal destructive | unverified"},
    {"psql -d portal -c 'SELECT now(), count(*) FROM t'", NULL, "psql database portal read_only"},
    {"psql -d portal -c 'SELEC 1'", NULL, "psql database portal destructive | unverified"},
    {"psql -d a -c 'VACUUM' -c '\\c b' -c 'DELETE FROM t'", NULL,
     "psql database a maintenance; psql database b destructive"},
    {"psql -c 'TRUNCATE t'", "PGDATABASE=skymoney", "psql database skymoney destructive"},
    {"PGDATABASE=skymoney psql -c 'TRUNCATE t'", NULL, "psql database skymoney destructive"},
    {"psql \"$DATABASE_URL\" -c 'DELETE FROM t'", "DATABASE_URL=postgresql://u:p@h/ledger",
     "psql database ledger destructive"},
    {"psql ${DATABASE_URL} -c 'select 1'", "DATABASE_URL=postgresql://h/ledger",
     "psql database ledger read_only"},
    {"psql \"$NOPE_UNSET_DB\" -c 'DELETE FROM t'", NULL,
     "psql database - destructive | unverified"},
    {"psql -d skymoney <<'EOF'\nDELETE FROM t;\nEOF", NULL, "psql database skymoney destructive"},
    {"pg_dump -Fc -d skymoney -f /tmp/x.dump", NULL, "pg_dump database skymoney read_only"},
    {"pg_dump skymoney > /tmp/x.sql", NULL, "pg_dump database skymoney read_only"},
    {"pg_dumpall -g -f roles.sql", NULL, "pg_dumpall database - read_only"},
    {"dropdb skymoney", NULL, "dropdb database skymoney destructive"},
    {"dropdb --if-exists -h db -U app skymoney", NULL, "dropdb database skymoney destructive"},
    {"/usr/lib/postgresql/15/bin/dropdb -p 5433 drill_3", NULL, "dropdb database drill_3 destructive"},
    {"dropdb --help", NULL, ""},
    {"createdb -O app -T template0 drill_4", NULL, "createdb database drill_4 creates"},
    {"vacuumdb -z -d skymoney", NULL, "vacuumdb database skymoney maintenance"},
    {"vacuumdb --all", NULL, "vacuumdb database * maintenance"},
    {"vacuumdb --all --full", NULL, "vacuumdb database * disruptive"},
    {"reindexdb skymoney", NULL, "reindexdb database skymoney disruptive"},
    /* wrappers */
    {"sudo -u postgres psql -d skymoney -c 'TRUNCATE t'", NULL, "psql database skymoney destructive"},
    {"sudo -E -u postgres dropdb skymoney", NULL, "dropdb database skymoney destructive"},
    {"env PGPASSWORD=x psql -d skymoney -c 'delete from t'", NULL, "psql database skymoney destructive"},
    {"sh -c \"psql -d skymoney -c 'TRUNCATE t'\"", NULL, "psql database skymoney destructive"},
    {"bash -lc 'dropdb skymoney'", NULL, "dropdb database skymoney destructive"},
    {"bash -ec 'set -x; pg_restore --clean -d skymoney a.dump'", NULL,
     "pg_restore database skymoney destructive"},
    {"docker compose exec -T db psql -U app -d skymoney -c 'TRUNCATE t'", NULL,
     "psql database skymoney destructive"},
    {"docker-compose exec db dropdb skymoney", NULL, "dropdb database skymoney destructive"},
    {"docker exec -i skymoney-postgres-1 psql -d skymoney -c 'delete from t'", NULL,
     "psql database skymoney destructive"},
    {"kubectl exec -it pg-0 -- psql -d skymoney -c 'drop table t'", NULL,
     "psql database skymoney destructive"},
    {"timeout 60 nice -n 10 pg_dump -d skymoney -f x", NULL, "pg_dump database skymoney read_only"},
    {"echo start && psql -d a -c 'select 1' ; dropdb b || true", NULL,
     "psql database a read_only; dropdb database b destructive"},
    {"cat x.sql | psql -d skymoney", NULL, "psql database skymoney destructive"},
    {"pg_dump -d a | psql -d b", NULL, "pg_dump database a read_only; psql database b destructive"},
    {"psql -d skymoney \\\n  -c 'TRUNCATE t'", NULL, "psql database skymoney destructive"},
    {"  psql   -d   skymoney   -c   'TRUNCATE t'  ", NULL, "psql database skymoney destructive"},
    {"'dropdb' 'sky''money'", NULL, "dropdb database skymoney destructive"},
    {"d\\ropdb skymoney", NULL, "dropdb database skymoney destructive"},
    {"# dropdb skymoney\necho ok", NULL, ""},
    /* docker and podman */
    {"docker volume rm skymoney_pgdata", NULL, "docker volume rm volume skymoney_pgdata destructive"},
    {"podman volume rm -f a b", NULL,
     "podman volume rm volume a destructive; podman volume rm volume b destructive"},
    {"docker volume prune -f", NULL, "docker volume prune volume * destructive"},
    {"docker system prune -a --volumes", NULL, "docker system prune --volumes volume * destructive"},
    {"docker system prune -f", NULL, ""},
    {"docker rm -f -v skymoney-postgres-1", NULL,
     "docker rm -v container skymoney-postgres-1 disruptive; docker rm -v volume - destructive"},
    {"docker rm -f web-1", NULL, "docker rm container web-1 disruptive"},
    {"docker run --rm -v skymoney_pgdata:/data busybox rm -rf /data", NULL,
     "docker run volume skymoney_pgdata destructive"},
    {"docker run --rm -v skymoney_pgdata:/data:ro busybox ls /data", NULL,
     "docker run volume skymoney_pgdata read_only"},
    {"docker run --mount type=volume,source=pgdata,target=/d,readonly alpine true", NULL,
     "docker run volume pgdata read_only"},
    {"docker run --mount src=pgdata,dst=/d alpine true", NULL, "docker run volume pgdata destructive"},
    {"docker run -v /srv/backups:/b alpine ls /b", NULL, ""},
    {"podman create --name x -v vol1:/v img", NULL, "podman create volume vol1 destructive"},
    {"docker ps -a", NULL, ""},
    /* files */
    {"rm -rf /var/lib/postgresql/15/main", NULL, "rm path /var/lib/postgresql/15/main destructive"},
    {"sudo rm -rf /var/lib/postgresql", NULL, "rm path /var/lib/postgresql destructive"},
    {"mv /srv/pg/data /tmp/old", NULL, "mv path /srv/pg/data destructive"},
    {"chown -R nobody /srv/pg/data", NULL, "chown path /srv/pg/data destructive"},
    {"cd /srv/pg && rm -rf data", NULL, "rm path /srv/pg/data destructive"},
    {"rm -rf data", "ENGINE_CWD=/srv/pg", "rm path /srv/pg/data destructive"},
    {"rm -rf \"$PGDATA\"", "PGDATA=/var/lib/pg", "rm path /var/lib/pg destructive"},
    {"rm -rf $UNSET_DIR_X/x", NULL, "rm path /x destructive | unverified"},
    /* what the analyser cannot see through */
    {"echo $(date) && psql -c 'select 1'", NULL, "psql database - read_only | unverified"},
    {"psql -d `cat dbname` -c 'TRUNCATE t'", NULL, "psql database - destructive | unverified"},
    {"eval \"$CMD\"", NULL, " | unverified"},
    {"source ./env.sh && echo ok", NULL, " | unverified"},
    {"bash ./cleanup.sh", NULL, " | unverified"},
    {"$TOOL -d skymoney", NULL, " | unverified"},
    {"echo 'unterminated", NULL, " | unverified"},
    /* harmless */
    {"echo prisma migrate status", NULL, ""},
    {"curl -fsS http://localhost/health", NULL, ""},
    {"sha256sum -c backups/x.dump.sha256", NULL, ""},
    {"ls -la /var/lib/postgresql", NULL, ""},
};

static char *render(const eng__cmd_analysis *a) {
  static const char *const kinds[] = {"none", "database", "volume", "container",
                                      "bucket", "instance", "command", "path"};
  static const char *const sides[] = {"read_only", "creates", "destructive",
                                      "disruptive", "external", "maintenance"};
  eng__buf b = {0};
  for (size_t i = 0; i < a->n; i++)
    eng__buf_addf(&b, "%s%s %s %s %s", i ? "; " : "", a->f[i].tool,
                  kinds[a->f[i].kind], a->f[i].target ? a->f[i].target : "-",
                  sides[a->f[i].side]);
  if (a->unverified) eng__buf_adds(&b, " | unverified");
  return eng__buf_steal(&b);
}

static void test_table(void **state) {
  (void)state;
  assert_int_equal(chdir("/"), 0); /* relative paths are relative to this */
  size_t bad = 0;
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    char *envs[8] = {0};
    char *copy = rows[i].env ? eng__xstrdup(rows[i].env) : NULL;
    size_t ne = 0;
    for (char *save = NULL, *t = copy ? strtok_r(copy, ";", &save) : NULL;
         t && ne < 7; t = strtok_r(NULL, ";", &save))
      envs[ne++] = t;
    eng__cmd_analysis a;
    eng__cmd_analyse(rows[i].line, (const char *const *)envs, &a);
    char *got = render(&a);
    if (strcmp(got, rows[i].want)) {
      print_error("line %zu: %s\n  want: %s\n  got:  %s\n", i, rows[i].line,
                  rows[i].want, got);
      bad++;
    }
    free(got);
    eng__cmd_analysis_free(&a);
    free(copy);
  }
  print_message("%zu command lines checked\n", sizeof rows / sizeof *rows);
  assert_true(sizeof rows / sizeof *rows >= 60);
  assert_int_equal(bad, 0);
}

/* Whatever the bytes, the analyser ends and frees what it made. */
static void test_hostile_input(void **state) {
  (void)state;
  static const char *const lines[] = {
      "", "'", "\"", "\\", "$", "${", "$(", "`", "<<", "<<EOF", "a <<", "psql -d",
      "psql -c", "docker volume", "docker run -v", "sudo", "env", "sh -c",
      "bash -c 'sh -c \"sh -c \\\"dropdb x\\\"\"'", "))))((((", ";;;&&&|||",
      "2>&1 >&- <&3", "psql -d 'x", "rm", "mv a", "chown", "cd", "cd ..; rm -rf x",
      "docker run --mount src=a,source=b,dst=/d x"}; /* the first name leaked */
  for (size_t i = 0; i < sizeof lines / sizeof *lines; i++) {
    eng__cmd_analysis a;
    eng__cmd_analyse(lines[i], NULL, &a);
    eng__cmd_analysis_free(&a);
  }
  /* deep sh -c nesting stops */
  eng__buf b = {0};
  for (int i = 0; i < 200; i++) eng__buf_adds(&b, "sh -c '");
  eng__cmd_analysis a;
  eng__cmd_analyse(b.data, NULL, &a);
  eng__cmd_analysis_free(&a);
  eng__buf_free(&b);
}

/* The guard reading: "TEXT | WORD WORD ; WORD" (its text, then its
 * commands). */
static void test_guard_reading(void **state) {
  (void)state;
  static const char *const rows[][2] = {
      {"Prisma migrate  RESET", "prisma migrate reset | prisma migrate reset"},
      /* quotes are not honoured: a rule matches inside them too */
      {"echo \"prisma migrate reset\"", "echo prisma migrate reset | echo prisma migrate reset"},
      {"p'ri'sma \\db", "prisma db | prisma db"},
      {"docker compose down -v; ls", "docker compose down -v; ls | docker compose down -v ; ls"},
      {"(a)|b&&c", "(a)|b&&c | a ; b ; c"},
      /* a newline and a backslash-newline are white space */
      {"x\ny \\\n z", "x y z | x y z"},
      /* no expansion; a comment is not read, a # inside a word or quotes is */
      {"rm $HOME/x # done", "rm $home/x | rm $home/x"},
      {"sh x.sh   # prisma migrate reset\nls", "sh x.sh ls | sh x.sh ls"},
      {"echo a#b '# c' \"#d\" \\#e;#f", "echo a#b # c #d #e; | echo a#b # c #d #e"},
      {"echo 'it''#s'", "echo it#s | echo it#s"},
      {" \t ", " |"},
      {"", " |"},
  };
  size_t bad = 0;
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    eng__cmd_lexed lx;
    assert_true(eng__cmd_lex(rows[i][0], ENG_CMD_GUARD, NULL, &lx));
    eng__buf b = {0};
    eng__buf_addf(&b, "%s |", lx.text);
    for (size_t k = 0; k < lx.n; k++)
      for (size_t j = 0; j < lx.cmd[k].n; j++)
        eng__buf_addf(&b, "%s%s", k && !j ? " ; " : " ", lx.cmd[k].w[j].s);
    if (strcmp(b.data, rows[i][1])) {
      print_error("guard reading %zu: want [%s] got [%s]\n", i, rows[i][1], b.data);
      bad++;
    }
    assert_null(lx.unverified);
    eng__buf_free(&b);
    eng__cmd_lexed_free(&lx);
  }
  assert_int_equal(bad, 0);
}

/* A word quoted for the shell reads back as that one word. */
static void test_quote(void **state) {
  (void)state;
  static const char *const words[] = {"", "a b", "it's", "'", "''\\'", "$HOME",
                                      "$(rm -rf /)", "a\nb", "\\", "\"x\" ; y",
                                      "#", "<<EOF"};
  for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
    eng__buf b = {0};
    eng__cmd_quote(&b, words[i]);
    eng__cmd_lexed lx;
    assert_true(eng__cmd_lex(b.data, ENG_CMD_SHELL, NULL, &lx));
    assert_int_equal(lx.n, 1);
    assert_int_equal(lx.cmd[0].n, 1);
    assert_string_equal(lx.cmd[0].w[0].s, words[i]);
    assert_false(lx.cmd[0].w[0].unknown);
    assert_null(lx.unverified);
    eng__cmd_lexed_free(&lx);
    eng__buf_free(&b);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table),
      cmocka_unit_test(test_hostile_input),
      cmocka_unit_test(test_guard_reading),
      cmocka_unit_test(test_quote),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
