/*
 * sql/lint.h - what a migration will do to a live database, statement by
 * statement, read with PostgreSQL's own parser: the lock each statement
 * takes, what that lock blocks and the safe way to write it.
 *
 *   lint.c      the rules, applied to one migration's text: findings with
 *               line and column, suppression comments, the tables the
 *               migration creates itself exempt
 *   lint_dir.c  a migrations folder (Prisma's NAME/migration.sql, or
 *               plain NNN_name.sql files) read in order and linted; the
 *               content hash of the set; the text and JSON forms
 *
 * Used by `engine lint-migrations` (cli/cmd_lint.c) and, through the host
 * table (host->migrations_lint), by the prisma plugin's lint and rehearse
 * actions. lint.c is pure; lint_dir.c reads the folder.
 */
#ifndef ENGINE_SQL_LINT_H
#define ENGINE_SQL_LINT_H

#include "base/base.h"

typedef enum eng__lint_level {
  ENG__LINT_WARNING = 0, /* takes a lock that blocks others, or breaks the
                            code that still runs: needs a reason */
  ENG__LINT_ERROR = 1    /* fails, or does damage beyond its text */
} eng__lint_level;

/* A rule: its id (as in suppression comments), the lock the statement
 * takes, what that lock blocks, and the safe recipe. */
typedef struct eng__lint_rule {
  const char *id;
  eng__lint_level level;
  const char *lock;
  const char *blocks;
  const char *fix;
} eng__lint_rule;

typedef struct eng__lint_finding {
  const eng__lint_rule *rule;
  char *file;       /* as given to eng__lint_text */
  char *migration;  /* the migration's name */
  int line, col;    /* 1-based; col counts bytes */
  char *message;    /* what this statement does ("CREATE INDEX on \"users\"
                       without CONCURRENTLY") */
  char *suppressed; /* the reason of the comment that allows it, or NULL */
} eng__lint_finding;

/* How the migration runs. */
typedef enum eng__lint_txn {
  ENG__LINT_TXN_AUTO = 0, /* as Prisma: a text of several statements runs
                             as one transaction, a single statement alone */
  ENG__LINT_TXN_ALWAYS,   /* every file inside a transaction */
  ENG__LINT_TXN_NEVER     /* statement by statement (autocommit) */
} eng__lint_txn;

typedef struct eng__lint_opts {
  int pg_major; /* the server's major version (10-17); 0: 15 */
  eng__lint_txn txn;
} eng__lint_opts;

/* Findings of one or more migrations, in order. What a migration leaves
 * for the next (a NOT NULL check validated) is kept across texts. */
typedef struct eng__lint {
  eng__lint_finding *v;
  size_t n, cap;
  size_t errors, warnings, suppressed; /* counts; suppressed not counted
                                          as errors or warnings */
  char **validated; /* tables with a constraint validated so far */
  size_t n_validated;
} eng__lint;

/* The rules, for documentation (n set to their count). */
const eng__lint_rule *eng__lint_rules(size_t *n);
/* Lint one migration's text (NUL-terminated), adding to l. file and
 * migration name the findings. Text PostgreSQL's grammar refuses is a
 * `parse-error` finding at the position the parser names. */
void eng__lint_text(eng__lint *l, const char *file, const char *migration,
                    const char *sql, const eng__lint_opts *o);
void eng__lint_free(eng__lint *l);
/* "FILE:LINE:COL: warning: [rule] message; takes LOCK, blocks WHAT; safe:
 * FIX" (malloc'd). */
char *eng__lint_finding_text(const eng__lint_finding *f);
json_t *eng__lint_finding_json(const eng__lint_finding *f);

/* Read and lint the migrations folder dir (lint_dir.c). opts (may be
 * NULL): "pg_major" (int), "transaction" ("auto", "always", "never"),
 * "only" (migration names whose findings are reported; the others are
 * still read in order). Returns a new object: "dir", "layout" ("prisma" or
 * "sql"), "migrations" [{name, file, sha256}], "findings"
 * [eng__lint_finding_json: file, migration, line, col, level, rule,
 * message, lock, blocks, fix, suppressed (the reason, or absent), text
 * (eng__lint_finding_text)], "errors", "warnings", "suppressed", "digest"
 * (SHA-256 over the names and contents of the migrations read: the same
 * set gives the same digest); or {"error": message} when the folder
 * cannot be read. Blocks (reads files). */
json_t *eng__lint_dir(const char *dir, const json_t *opts);

#endif /* ENGINE_SQL_LINT_H */
