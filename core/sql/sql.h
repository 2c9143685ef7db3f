/*
 * sql/sql.h - the sql folder: what a text of SQL does, as far as guards
 * care, read with PostgreSQL's own parser (libpg_query, PostgreSQL 15's
 * grammar) rather than by its first word.
 *
 *   classify.c  each statement and the whole text: its class (read,
 *               maintenance, disruptive, creates, write, destructive), what
 *               it could not verify and why, the databases a statement
 *               names itself (ALTER/DROP/CREATE DATABASE x, REINDEX
 *               DATABASE x), and which statements cannot run inside a
 *               transaction block; the functions called anywhere in the
 *               tree are held to tables of known side effects
 *
 *   lint.c, lint_dir.c  the migration lint (sql/lint.h)
 *
 * Used by the shell analyser (psql -c), the guard policy (run/policy.c)
 * and, through the host table, by plugins (postgres.query). Pure: no I/O
 * (but lint_dir.c, which reads a migrations folder).
 * Above base/, below shell/ (docs/architecture.md).
 */
#ifndef ENGINE_SQL_H
#define ENGINE_SQL_H

#include "base/base.h"

/* What SQL does, in the order the guards weigh it: a combination of
 * statements takes the highest. */
typedef enum eng__sql_class {
  ENG__SQL_READ = 0,        /* changes nothing */
  ENG__SQL_MAINTENANCE = 1, /* VACUUM (not FULL), ANALYZE, ... CONCURRENTLY:
                               changes no data, takes no blocking lock */
  ENG__SQL_DISRUPTIVE = 2,  /* blocks or ends others' work, or reaches past
                               the database (VACUUM FULL, CLUSTER, REINDEX,
                               LOCK, pg_terminate_backend, server files) */
  ENG__SQL_CREATES = 3,     /* CREATE DATABASE x (for x) */
  ENG__SQL_WRITE = 4,       /* changes data, objects or settings */
  ENG__SQL_DESTRUCTIVE = 5  /* removes data or objects (DELETE, DROP,
                               TRUNCATE, lo_unlink, a replication slot) */
} eng__sql_class;

/* A database a statement names itself. */
typedef struct eng__sql_db {
  char *name;
  eng__sql_class cls;    /* what the text does to it */
  eng__sql_class cls_ro; /* ... run inside a READ ONLY transaction */
  char *what;            /* "ALTER DATABASE ... RENAME" */
} eng__sql_db;

/* One statement: where its text is in the SQL, and what it does. */
typedef struct eng__sql_stmt {
  size_t off, len;    /* bytes of the SQL text (without the ';') */
  eng__sql_class cls; /* everything it does (databases it names too) */
  bool no_txn;        /* cannot run inside a transaction block */
  char *what;         /* "VACUUM", "SELECT", "pg_terminate_backend()" */
} eng__sql_stmt;

typedef struct eng__sql_info {
  /* The whole text, every database included: the step's class. */
  eng__sql_class cls;
  /* The same, run inside a READ ONLY transaction: what PostgreSQL refuses
   * there (INSERT, CREATE TABLE, ...) does nothing, so only what runs
   * anyway counts (functions such as pg_terminate_backend, VACUUM, LOCK). */
  eng__sql_class cls_ro;
  /* What it does to the database it runs on (not to those it names). */
  eng__sql_class here, here_ro;
  char *what;       /* the statement or function behind cls ("VACUUM FULL",
                       "pg_terminate_backend()"); "" when it only reads */
  char *what_ro;    /* the same behind cls_ro */
  char *here_what, *here_ro_what; /* the same behind here and here_ro */
  char *unverified; /* why part of it cannot be verified, or NULL: text
                       that does not parse, DO, CALL, EXECUTE, a function
                       the guards do not know, SQL run elsewhere (dblink) */
  eng__sql_db *dbs; /* the databases statements name, each once */
  size_t n_dbs;
  eng__sql_stmt *stmts; /* in order; none when the text does not parse */
  size_t n_stmts;
  /* statements that cannot run inside a transaction block (VACUUM, CREATE
   * INDEX CONCURRENTLY, CREATE/DROP DATABASE, ALTER SYSTEM, ...) */
  size_t n_no_txn;
  char *no_txn_what; /* the first of them, or NULL */
  /* statements PostgreSQL refuses inside a READ ONLY transaction that
   * write data, objects or settings (INSERT, DROP DATABASE, ALTER SYSTEM);
   * the first of them, or NULL */
  char *writes_what;
} eng__sql_info;

/* Classify sql (NULL is empty). Text that does not parse is unverified
 * and counted as a write (a read inside a READ ONLY transaction); never a
 * read. Returns 0, or 1 when part of it is unverified. Free out with the
 * function below. */
int eng__sql_classify(const char *sql, eng__sql_info *out);
void eng__sql_info_free(eng__sql_info *info);

/* "read", "maintenance", "disruptive", "creates", "write", "destructive" */
const char *eng__sql_class_name(eng__sql_class c);
/* The side-effect class the guards hold a target to: a write counts as
 * destructive (a write to a database the run did not create needs
 * --allow-destructive, as every write always did). */
eng_side_effect eng__sql_side(eng__sql_class c);
/* The classification as JSON (host->sql_classify, plugin.h documents its
 * fields). */
json_t *eng__sql_info_json(const eng__sql_info *info);
/* eng__sql_classify and eng__sql_info_json in one (host->sql_classify). */
json_t *eng__sql_classify_json(const char *sql);

#endif /* ENGINE_SQL_H */
