/*
 * shell/shell.h - the shell folder: the lexer (lexer.c), which splits a
 * command line into simple commands of words, and the shell analyser
 * (analyser.c), which reads those words for what a command line does to
 * guarded targets (databases, volumes, containers, paths): pipelines,
 * wrappers, container exec, the tools whose targets are known, and what it
 * cannot see (unverified). The guard policy (run/policy.c) decides on the
 * analyser's findings and matches forbidden commands on the lexer's words
 * and on the commands the analyser read. The SQL of psql -c is read by the
 * SQL classifier (sql/). Above base/ and sql/.
 */
#ifndef ENGINE_SHELL_H
#define ENGINE_SHELL_H

#include "base/base.h"

/* ---- lexer.c ---------------------------------------------------------- */

/* How a line is read. */
typedef enum eng__cmd_syntax {
  /* As sh reads it: quotes, escapes, line continuations, $NAME and ${NAME}
   * from the variables the line assigned before (below), then from the
   * environment; unquoted expansions split at white space; comments,
   * redirections (their targets are not words), here-documents (their
   * bodies are kept apart, not read as commands); `;` `&&` `||` `|` `&`
   * `(` `)` and newlines end a command.
   * Variables are tracked as sh would: a command made only of assignments
   * (`X=a;`) and export/readonly/declare/local/typeset X=a set X for the
   * commands after it when the value is literal; a prefix (`X=a cmd`)
   * does not. read, for, getopts, mapfile/readarray, let, printf -v,
   * arrays, an assignment in a pipeline, a subshell, a loop or branch, or
   * after && or ||, and a value holding an unknown expansion leave the
   * variable unknown; after eval, source, `.` or a function definition
   * every variable is. unset X makes it empty. An unknown variable, a
   * positional parameter ($1 $@ $*), ${X...} with an operator, $'...',
   * a brace expansion {a,b} and a substitution make an unknown word naming
   * it (eng__cmd_word.var). An IFS the line set splits expansions. */
  ENG_CMD_SHELL,
  /* As forbidden_commands are matched, on purpose stricter than a shell:
   * lower-case, quotes and backslashes dropped (not honoured: a rule
   * matches inside quotes too), no expansion; words end at white space,
   * commands at `;` `|` `&` `(` `)` (not at a newline). A `#` starting a
   * word outside quotes starts a comment, to the end of its line: comment
   * words are not read. */
  ENG_CMD_GUARD,
  /* A forbidden rule: as ENG_CMD_GUARD, but a `#` is a character. */
  ENG_CMD_RULE
} eng__cmd_syntax;

typedef struct eng__cmd_word {
  char *s;      /* malloc'd */
  bool unknown; /* holds an expansion the lexer could not resolve */
  /* the expansion as written ("$X", "$1", "${X:-y}") when it is one whose
   * value the line leaves unknown (malloc'd); NULL when the word is known
   * or only misses a variable that is not set anywhere */
  char *var;
} eng__cmd_word;

/* One simple command. */
typedef struct eng__cmd_words {
  eng__cmd_word *w;
  size_t n;
  bool stdin_heredoc; /* << or <<< feeds it */
  bool stdin_file;    /* < FILE feeds it */
  bool stdin_pipe;    /* the command before it pipes into it */
  /* the body of its last here-document (malloc'd), NULL for none or <<< */
  char *heredoc;
  /* the variables the line set before it, as env entries (NAME=VALUE;
   * NAME alone when its value is not known; "*" when none is known),
   * NULL-terminated, malloc'd; NULL when none */
  char **vars;
} eng__cmd_words;

typedef struct eng__cmd_lexed {
  eng__cmd_words *cmd; /* the simple commands, in order, none empty */
  size_t n;
  /* ENG_CMD_GUARD, ENG_CMD_RULE: the line as one text, as the rules
   * compare it (lower-case, quotes and backslashes dropped, white space runs
   * as one space, operators kept); malloc'd, "" when empty. NULL for
   * ENG_CMD_SHELL. */
  char *text;
  /* why part of the line could not be read (the first reason; static
   * text), or NULL */
  const char *unverified;
} eng__cmd_lexed;

/* Split line (not NULL) into simple commands; env holds NAME=VALUE for
 * expansions (NULL-terminated, may be NULL; NAME alone: set to a value
 * not known; "*": every variable not in env is unknown; the process
 * environment is read after it). Returns false when quotes do not close:
 * out then holds the commands before the one that failed. Free out with
 * the function below, even then. */
bool eng__cmd_lex(const char *line, eng__cmd_syntax syntax,
                  const char *const *env, eng__cmd_lexed *out);
void eng__cmd_lexed_free(eng__cmd_lexed *l);
/* A deep copy of ws into out; free either with eng__cmd_words_free. */
void eng__cmd_words_copy(eng__cmd_words *out, const eng__cmd_words *ws);
void eng__cmd_words_free(eng__cmd_words *ws);
/* What eng__cmd_var and eng__cmd_getenv return for a variable that is set
 * to a value not known (compare the pointer). */
extern const char eng__cmd_unknown[];
/* The value of NAME (its first n characters) in env (entries as
 * eng__cmd_lex takes them); NULL when env does not set it. */
const char *eng__cmd_var(const char *const *env, const char *name, size_t n);
/* The same, else the process environment's; NULL when unset. */
const char *eng__cmd_getenv(const char *const *env, const char *name,
                            size_t n);
/* Is word a NAME=VALUE assignment (a prefix of a command)? */
bool eng__cmd_is_assignment(const char *word);
/* Is word one of the names in list (separated by spaces)? */
bool eng__cmd_in_list(const char *list, const char *word);
/* Append word to b quoted for the shell, so that ENG_CMD_SHELL reads it
 * back as that one word. */
void eng__cmd_quote(eng__buf *b, const char *word);

/* ---- analyser.c ------------------------------------------------------- */

typedef struct eng__cmd_finding {
  char *tool;           /* "psql", "docker volume rm" */
  eng_target kind;      /* DATABASE, VOLUME, CONTAINER, FILE (a path) */
  char *target;         /* the name or path; NULL when it is not known */
  eng_side_effect side; /* READ_ONLY, CREATES, DESTRUCTIVE, DISRUPTIVE */
  char *what;           /* what was understood ("pg_restore --clean") */
} eng__cmd_finding;

typedef struct eng__cmd_analysis {
  eng__cmd_finding *f;
  size_t n;
  char *unverified; /* why part of the line could not be understood */
  /* the simple commands as the analyser read them, expansions done,
   * sh -c, eval and here-document bodies included: the forbidden rules
   * are matched on these too */
  eng__cmd_words *cmd;
  size_t ncmd;
} eng__cmd_analysis;

/* Analyse a shell command line; env holds the step's NAME=VALUE (NULL-
 * terminated, may be NULL; ENGINE_CWD=DIR sets the working directory).
 * Returns 1 when part of it is unverified. Free with the function below. */
int eng__cmd_analyse(const char *line, const char *const *env,
                     eng__cmd_analysis *out);
/* The same with the environment as "NAME=VALUE\n..." text. */
int eng__cmd_analyse_env_text(const char *line, const char *env_text,
                              eng__cmd_analysis *out);
void eng__cmd_analysis_free(eng__cmd_analysis *a);

#endif /* ENGINE_SHELL_H */
