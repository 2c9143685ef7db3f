/* Unit tests for core/shell/: what the guards make of command lines that
 * try to hide what they run. A table of attempts, each followed by its
 * benign twin: variables set earlier on the line (assignments, export,
 * read, for, set --, arrays, conditionals), programs read from a pipe or
 * stdin, eval, source, xargs, find -exec, env -S, a computed command
 * name, here-documents fed to a shell, comments. Each line goes through
 * the analyser and the guard policy (run/policy.c) twice, with
 * guards.unverified_commands left as it is and set to refuse: an attempt
 * is refused by its rule (a forbidden command, a protected database) or
 * is unverified with its reason, refused only when asked; a twin is
 * verified and allowed both times. Then the lexer's reading of the line's
 * variables, word by word. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shell/shell.h"
#include "state/state.h"
#include "unit.h"

static char dir[4096];
static eng__runbook *rb;

#define LISTS "{\"protected_databases\": [\"prod\"], \"forbidden_commands\": [\"#wipe\"]}"
#define FORBIDDEN "forbidden_commands"
#define UNVERIFIED "unverified_commands"
#define PROTECTED "protected_databases"

typedef struct row {
  const char *line;
  const char *rule; /* the refusal's rule; NULL: verified and allowed */
  const char *says; /* a part of the reason (unverified) or the refusal */
} row;

static const row rows[] = {
    /* ---- variables set earlier on the line ---- */
    {"X=reset; npx prisma migrate $X --force", FORBIDDEN, "'prisma migrate reset'"},
    {"X=status; npx prisma migrate $X", NULL, NULL},
    {"export X=reset && npx prisma migrate $X", FORBIDDEN, "'prisma migrate reset'"},
    {"export X=status && npx prisma migrate $X", NULL, NULL},
    {"declare -r X=dev; npx prisma migrate \"$X\"", FORBIDDEN, "'prisma migrate dev'"},
    {"declare -r X=deploy; npx prisma migrate \"$X\"", NULL, NULL},
    {"X=migrate; Y=\"$X reset\"; npx prisma $Y", FORBIDDEN, "'prisma migrate reset'"},
    {"X=migrate; Y=\"$X status\"; npx prisma $Y", NULL, NULL},
    {"X=reset; X=status npx prisma migrate $X", FORBIDDEN, "'prisma migrate reset'"},
    {"X=status; X=reset npx prisma migrate $X", NULL, NULL},
    {"X=status; Y=$X; Y=reset; npx prisma migrate ${Y}", FORBIDDEN, "'prisma migrate reset'"},
    {"X=status; Y=$X; npx prisma migrate ${Y}", NULL, NULL},
    {"read X; npx prisma migrate $X", UNVERIFIED, "a word of the command is not known here ($X)"},
    {"read X; echo \"got $X\"", NULL, NULL},
    {"for X in reset; do npx prisma migrate $X; done", UNVERIFIED, "($X)"},
    {"for f in a b; do echo $f; done", NULL, NULL},
    {"while read -r X; do npx prisma migrate $X; done < steps.txt", UNVERIFIED, "($X)"},
    {"while read -r X; do printf '%s\\n' \"$X\"; done < steps.txt", NULL, NULL},
    {"set -- reset; npx prisma migrate $1", UNVERIFIED, "($1)"},
    {"set -- a b; echo $1 \"$@\"", NULL, NULL},
    {"a=(reset dev); npx prisma migrate ${a[0]}", UNVERIFIED, "(${a[0]})"},
    {"a=(x y); echo ${a[1]}", NULL, NULL},
    {"X=$(cat step.txt); npx prisma migrate $X", UNVERIFIED, "command substitution"},
    {"X=status; true && X=reset; npx prisma migrate $X", UNVERIFIED, "($X)"},
    {"X=status && npx prisma migrate $X", NULL, NULL},
    {"if test -f x; then X=reset; fi; npx prisma migrate $X", UNVERIFIED, "($X)"},
    {"if test -f x; then X=status; fi; echo $X", NULL, NULL},
    {"X=status | true; npx prisma migrate $X", UNVERIFIED, "($X)"},
    {"(X=reset); echo $X", NULL, NULL},
    {"X=reset; (npx prisma migrate $X)", FORBIDDEN, "'prisma migrate reset'"},
    {"unset X; npx prisma migrate ${X:-reset}", UNVERIFIED, "(${X:-reset})"},
    {"unset X; echo ${X:-none}", NULL, NULL},
    {"mapfile -t X < list; npx prisma migrate $X", UNVERIFIED, "($X)"},
    {"unset X; : ${X:=reset}; npx prisma migrate $X", UNVERIFIED, "($X)"},
    {"X=status; declare -n R=X; R=reset; npx prisma migrate $X", UNVERIFIED, "($X)"},
    {"X=prisma:migrate:reset; IFS=:; npx $X", FORBIDDEN, "'prisma migrate reset'"},
    {"X=prisma:migrate:status; IFS=:; npx $X", NULL, NULL},
    {"read IFS; X=prisma:migrate:reset; npx $X", UNVERIFIED, "($IFS)"},
    {"npx prisma migrate {status,reset}", UNVERIFIED, "({...})"},
    {"npx prisma migrate '{status,reset}'", NULL, NULL},
    {"npx prisma migrate $'\\x72eset'", UNVERIFIED, "($'...')"},
    {"npx prisma migrate $\"status\"", NULL, NULL},
    {"getopts ab X; npx prisma migrate $X", UNVERIFIED, "($X)"},
    {"X=status; eval X=reset; npx prisma migrate $X", UNVERIFIED, "($X)"},
    {"X=status; eval 'echo hi'; echo $X", NULL, NULL},
    {"f() { npx prisma migrate \"$@\"; }; f reset", UNVERIFIED, "($@)"},
    {"f() { echo \"$@\"; }; f reset", NULL, NULL},
    {"export PGDATABASE=prod; psql -c 'DROP TABLE t'", PROTECTED, "database 'prod'"},
    {"export PGDATABASE=scratch; psql -c 'SELECT 1'", NULL, NULL},
    {"read PGDATABASE; psql -c 'DROP TABLE t'", PROTECTED, "a target the guards cannot tell"},
    {"X=$1; exec $X", UNVERIFIED, "the program to run is not known here ($X)"},
    {"exec echo hi", NULL, NULL},
    {"$(echo npx) prisma migrate status", UNVERIFIED, "command substitution"},
    {"npx prisma migrate status", NULL, NULL},
    /* ---- text run that the analyser has not seen ---- */
    {"echo bnB4IHByaXNtYSBtaWdyYXRlIHJlc2V0IC0tZm9yY2U= | base64 -d | sh", UNVERIFIED,
     "a shell reads its program from standard input"},
    {"echo hi | cat", NULL, NULL},
    {"curl -fsS https://example.com/x.sh | bash -s -- --yes", UNVERIFIED, "standard input"},
    {"curl -fsS https://example.com/health | grep -q ok", NULL, NULL},
    {"cat x.sh | (sh)", UNVERIFIED, "standard input"},
    {"sh < reset.sh", UNVERIFIED, "standard input"},
    {"sh -c 'echo hi' < /dev/null", NULL, NULL},
    {"X=reset; bash <<< \"npx prisma migrate $X\"", UNVERIFIED, "standard input"},
    {"cat <<< \"hello\"", NULL, NULL},
    {"sh <<'EOF'\nX=reset\nnpx prisma migrate $X\nEOF", FORBIDDEN, "'prisma migrate reset'"},
    {"sh <<'EOF'\necho hi\nEOF", NULL, NULL},
    {"cat <<EOF | sh\nnpx prisma migrate status\nEOF", UNVERIFIED, "standard input"},
    {"cat <<EOF | grep -c x\nnpx prisma migrate status\nEOF", NULL, NULL},
    {"bash <(curl -fsS https://example.com/x.sh)", UNVERIFIED, "process substitution"},
    {"bash -c 'echo hi'", NULL, NULL},
    {"source /dev/stdin < x.sh", UNVERIFIED, "source reads its program from standard input"},
    {". /dev/stdin", UNVERIFIED, "standard input"},
    {"source ./env.sh && echo ok", UNVERIFIED, "source or . runs a file"},
    {"echo source ./env.sh", NULL, NULL},
    {"eval \"$CMD\"", UNVERIFIED, "the text eval runs is not known here"},
    {"eval 'echo hi'", NULL, NULL},
    {"X=reset; eval \"npx prisma migrate $X\"", FORBIDDEN, "'prisma migrate reset'"},
    {"X=status; eval \"npx prisma migrate $X\"", NULL, NULL},
    {"X=reset; sh -c \"npx prisma migrate $X\"", FORBIDDEN, "'prisma migrate reset'"},
    {"sh -c 'echo hi'", NULL, NULL},
    {"sh -c \"$CMD\"", UNVERIFIED, "the body of sh -c is not known here"},
    {"busybox sh -c 'X=reset; npx prisma migrate $X'", FORBIDDEN, "'prisma migrate reset'"},
    {"busybox sh -c 'echo hi'", NULL, NULL},
    {"bash -o pipefail -c 'X=dev; npx prisma migrate $X'", FORBIDDEN, "'prisma migrate dev'"},
    {"X=reset eval 'npx prisma migrate $X'", FORBIDDEN, "'prisma migrate reset'"},
    {"X=status eval 'npx prisma migrate $X'", NULL, NULL},
    {"X=reset sh -c 'npx prisma migrate $X'", FORBIDDEN, "'prisma migrate reset'"},
    {"X=status sh -c 'npx prisma migrate $X'", NULL, NULL},
    {"X=reset; trap \"npx prisma migrate $X\" EXIT", FORBIDDEN, "'prisma migrate reset'"},
    {"trap 'echo done' EXIT", NULL, NULL},
    {"trap \"$CLEANUP\" EXIT", UNVERIFIED, "the text trap runs"},
    {"alias p='npx prisma'; p migrate reset", UNVERIFIED, "alias names a command"},
    {"alias", NULL, NULL},
    {"su app -c 'npx prisma migrate status'", UNVERIFIED, "su or runuser"},
    {"cat cmds.txt | xargs -n1 npx", UNVERIFIED, "xargs or parallel"},
    {"echo a b | wc -w", NULL, NULL},
    {"ls *.sql | parallel psql -f", UNVERIFIED, "xargs or parallel"},
    {"ls *.sql | sort", NULL, NULL},
    {"find . -name '*.sql' -exec psql -f {} \\;", UNVERIFIED, "find -exec"},
    {"find . -name '*.sql' -print", NULL, NULL},
    {"env -S 'npx prisma migrate reset'", FORBIDDEN, "'prisma migrate reset'"},
    {"env -S \"$CMD\"", UNVERIFIED, "env -S"},
    {"env FOO=1 npx prisma migrate status", NULL, NULL},
    {"if true; then dropdb prod; fi", PROTECTED, "database 'prod'"},
    {"if true; then echo dropdb prod; fi", NULL, NULL},
    /* ---- comments ---- */
    {"sh scripts/reset.sh   # runs prisma migrate reset", UNVERIFIED, "a shell script runs"},
    {"echo ok   # runs prisma migrate reset", NULL, NULL},
    {"echo ok;# x\nnpx prisma migrate reset", FORBIDDEN, "'prisma migrate reset'"},
    {"echo ok # x; npx prisma migrate reset", NULL, NULL},
    {"echo '# x'; npx prisma migrate reset", FORBIDDEN, "'prisma migrate reset'"},
    /* a runbook's rule may hold a # (LISTS) */
    {"curl -s https://example.com/#wipe", FORBIDDEN, "'#wipe'"},
    {"curl -s https://example.com/#about", NULL, NULL},
};

static int setup(void **state) {
  (void)state;
  if (unit_tmp_dir("engine-test-shell", dir, sizeof dir) != 0) return -1;
  rb = unit_one_step_runbook();
  if (!rb) return -1;
  return 0;
}

static int teardown(void **state) {
  (void)state;
  eng__runbook_free(rb);
  eng__rm_tree(dir);
  return 0;
}

/* The guard policy's decision on line: its rule when refused, else NULL
 * (malloc'd; *msg: the refusal). */
static char *decide(const char *line, bool refuse_unverified, char **msg) {
  eng__run_opts o = {0};
  o.allow_destructive = true; /* ownership is not what is tested here */
  eng__run r;
  eng__run_init(&r, rb, NULL, &o, "shell-test");
  r.dir = eng__xstrdup(dir);
  r.policy.lists = json_loads(LISTS, 0, NULL);
  r.policy.broken = json_object();
  r.policy.refuse_unverified = refuse_unverified;
  int rc = eng__policy_check(&r, "step", ENG_TARGET_COMMAND, line, NULL,
                             ENG_SIDE_EXTERNAL);
  char *rule = NULL;
  *msg = NULL;
  if (rc != ENG_OK) {
    size_t i;
    json_t *e;
    json_array_foreach(r.guard_log, i, e)
      if (!strcmp(json_string_value(json_object_get(e, "decision")), "refuse"))
        rule = eng__xstrdup(json_string_value(json_object_get(e, "rule")));
    *msg = eng__xstrdup(r.last_refusal);
  }
  eng__run_free(&r);
  return rule ? rule : rc != ENG_OK ? eng__xstrdup("?") : NULL;
}

static const char *nz(const char *s) { return s ? s : "(none)"; }

/* One row; a description of what went wrong, or NULL. */
static char *check(const row *w) {
  eng__cmd_analysis a;
  eng__cmd_analyse(w->line, NULL, &a);
  char *msg0, *msg1;
  char *as_is = decide(w->line, false, &msg0);
  char *refusing = decide(w->line, true, &msg1);
  char *bad = NULL;
  bool unverified = w->rule && !strcmp(w->rule, UNVERIFIED);
  if (!w->rule) {
    if (a.unverified) bad = eng__asprintf("unverified: %s", a.unverified);
    else if (as_is || refusing)
      bad = eng__asprintf("refused by %s: %s", nz(refusing), nz(msg1));
  } else if (unverified) {
    if (!a.unverified || !strstr(a.unverified, w->says))
      bad = eng__asprintf("reason '%s', expected '%s'", nz(a.unverified), w->says);
    else if (as_is)
      bad = eng__asprintf("refused by %s without refuse: %s", as_is, nz(msg0));
    else if (!refusing || strcmp(refusing, UNVERIFIED))
      bad = eng__asprintf("with refuse: %s (%s)", nz(refusing), nz(msg1));
  } else if (!as_is || strcmp(as_is, w->rule) || !strstr(msg0, w->says)) {
    bad = eng__asprintf("decided %s: %s", nz(as_is), nz(msg0));
  }
  free(as_is);
  free(refusing);
  free(msg0);
  free(msg1);
  eng__cmd_analysis_free(&a);
  return bad;
}

static void test_attempts_and_twins(void **state) {
  (void)state;
  size_t failed = 0, attempts = 0, twins = 0;
  for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
    char *bad = check(&rows[i]);
    if (bad) {
      print_error("row %zu: %s\n  %s\n", i, rows[i].line, bad);
      failed++;
    }
    free(bad);
    if (rows[i].rule) attempts++;
    else twins++;
  }
  print_message("%zu attempts, %zu twins checked\n", attempts, twins);
  assert_true(attempts >= 25 && twins >= 25);
  assert_int_equal(failed, 0);
}

/* The shell reading, word by word: "WORD WORD ; WORD", an unknown word as
 * <EXPANSION> (or <?> when it names none), a command fed by a pipe
 * starting with "| ". */
static void test_variables(void **state) {
  (void)state;
  static const char *const rows2[][2] = {
      {"X=a; echo $X", "X=a ; echo a"},
      {"X=a; X=b echo $X; echo $X", "X=a ; X=b echo a ; echo a"},
      {"X='a b'; echo $X \"$X\"", "X=a b ; echo a b a b"},
      {"X=; $X dropdb x", "X= ; dropdb x"},
      {"export X=a Y=$Z; echo $X $Y", "export X=a <?> ; echo a <$Y>"},
      {"declare -i N=1+1; echo $N", "declare -i N=1+1 ; echo <$N>"},
      {"read -r A B; echo $A$B", "read -r A B ; echo <$A>"},
      {"for i in 1 2; do echo $i; done; echo $i", "for i in 1 2 ; do echo <$i> ; done ; echo <$i>"},
      {"X=a; for i in X; do :; done; echo $X", "X=a ; for i in X ; do : ; done ; echo a"},
      {"X=a && Y=b || Z=c; echo $X $Y $Z", "X=a ; Y=b ; Z=c ; echo a <$Y> <$Z>"},
      {"X=a | cat; echo $X", "X=a ; | cat ; echo <$X>"},
      {"X=a & echo $X", "X=a ; echo <$X>"},
      {"X=a; unset X; echo ${X}", "X=a ; unset X ; echo"},
      {"X=a; unset X=b; echo $X", "X=a ; unset X=b ; echo a"},
      {"X=a; X+=b; echo $X", "X=a ; X+=b ; echo <$X>"},
      {"arr=(a b) x=1; echo $arr $x", "<$arr> x=1 ; echo <$arr> 1"},
      {"source f; echo $HOME", "source f ; echo <$HOME>"},
      {"echo $1 $@ $* $? $#", "echo <$1> <$@> <$*> <?> <?>"},
      {"echo ${X:-a} ${#X}", "echo <${X:-a}> <${#X}>"},
      {"printf -v V %s x; echo $V", "printf -v V %s x ; echo <$V>"},
      {"a || b", "a ; b"},
      {"a |& b", "a ; | b"},
      {"cat <<A <<B | sh\n1\nA\n2\nB\necho $?", "cat ; | sh ; echo <?>"},
  };
  size_t bad = 0;
  for (size_t i = 0; i < sizeof rows2 / sizeof *rows2; i++) {
    eng__cmd_lexed lx;
    eng__cmd_lex(rows2[i][0], ENG_CMD_SHELL, NULL, &lx);
    eng__buf b = {0};
    for (size_t k = 0; k < lx.n; k++) {
      eng__buf_adds(&b, k ? " ; " : "");
      if (lx.cmd[k].stdin_pipe) eng__buf_adds(&b, "| ");
      for (size_t j = 0; j < lx.cmd[k].n; j++) {
        const eng__cmd_word *w = &lx.cmd[k].w[j];
        if (w->unknown) eng__buf_addf(&b, "%s<%s>", j ? " " : "", w->var ? w->var : "?");
        else eng__buf_addf(&b, "%s%s", j ? " " : "", w->s);
      }
    }
    if (strcmp(b.data ? b.data : "", rows2[i][1])) {
      print_error("lexing %zu: %s\n  want [%s]\n  got  [%s]\n", i, rows2[i][0],
                  rows2[i][1], b.data ? b.data : "");
      bad++;
    }
    eng__buf_free(&b);
    eng__cmd_lexed_free(&lx);
  }
  assert_int_equal(bad, 0);
}

/* A here-document's body stays with its command, and the rest of the
 * line opening it is read. */
static void test_heredoc_body(void **state) {
  (void)state;
  eng__cmd_lexed lx;
  eng__cmd_lex("sh <<-'EOF' && echo after\n\tdropdb x\n\tEOF\necho next",
               ENG_CMD_SHELL, NULL, &lx);
  assert_int_equal(lx.n, 3);
  assert_string_equal(lx.cmd[0].w[0].s, "sh");
  assert_int_equal(lx.cmd[0].n, 1);
  assert_string_equal(lx.cmd[0].heredoc, "\tdropdb x\n");
  assert_string_equal(lx.cmd[1].w[1].s, "after");
  assert_string_equal(lx.cmd[2].w[1].s, "next");
  eng__cmd_lexed_free(&lx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_attempts_and_twins),
      cmocka_unit_test(test_variables),
      cmocka_unit_test(test_heredoc_body),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
