/* lint.c - the migration rules, applied to the parse tree PostgreSQL's own
 * grammar (libpg_query, PostgreSQL 15) gives for a migration's text.
 *
 * Each rule names the lock its statement takes, what that lock blocks and
 * the safe recipe (the locks were measured on PostgreSQL 15 against a
 * table of a million rows: docs/migrations.md). A table the same migration
 * creates is exempt: nobody uses it yet. A comment on the lines before a
 * statement, `-- lint: allow RULE[,RULE] REASON`, allows those rules for
 * that statement; the reason is required and reported with the finding.
 * Pure: no I/O. */
#include "sql/lint.h"

#include <ctype.h>
#include <pg_query.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The major version the lint assumes when none is given: the parser's. */
#define LINT_PG_DEFAULT 15
/* Since PostgreSQL 11 a column added with a constant (or stable) default
 * needs no rewrite; since 12 SET NOT NULL skips its scan when a validated
 * CHECK (col IS NOT NULL) exists. */
#define PG_FAST_DEFAULT 11
#define PG_NOTNULL_BY_CHECK 12

#define AX "ACCESS EXCLUSIVE"
#define RW "reads and writes"

enum {
  R_INDEX, R_VOLATILE_DEFAULT, R_SERIAL, R_TYPE, R_NOT_NULL, R_NOT_VALID,
  R_UNIQUE, R_REQUIRED, R_DROP_COLUMN, R_RENAME_COLUMN, R_DROP_TABLE,
  R_RENAME_TABLE, R_DROP_INDEX, R_CONC_TXN, R_TRUNCATE, R_LOCK_TIMEOUT,
  R_STMT_TIMEOUT, R_VACUUM_FULL, R_CLUSTER, R_PARSE, R_SUPPRESS, R_COUNT
};

static const eng__lint_rule rules[R_COUNT] = {
    [R_INDEX] = {"require-concurrent-index-creation", ENG__LINT_WARNING,
                 "SHARE on the table for the whole build", "writes",
                 "CREATE INDEX CONCURRENTLY, alone in a migration of its own"},
    [R_VOLATILE_DEFAULT] =
        {"adding-field-with-volatile-default", ENG__LINT_WARNING,
         AX " and a rewrite of the table", RW,
         "add the column without a default (or with a constant one), then "
         "SET DEFAULT, then backfill existing rows in batches"},
    [R_SERIAL] = {"adding-serial-column", ENG__LINT_WARNING,
                  AX " and a rewrite of the table", RW,
                  "add a nullable bigint column, attach a sequence with SET "
                  "DEFAULT nextval(...), backfill in batches"},
    [R_TYPE] = {"changing-column-type", ENG__LINT_WARNING,
                AX " and a rewrite of the table and its indexes", RW,
                "expand and contract: add a column of the new type, write "
                "both, backfill in batches, switch readers, drop the old one"},
    [R_NOT_NULL] = {"setting-not-null", ENG__LINT_WARNING,
                    AX " while every row is scanned", RW,
                    "ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; "
                    "VALIDATE CONSTRAINT c in a later migration; then SET NOT "
                    "NULL (no scan on PostgreSQL 12+) and DROP CONSTRAINT c"},
    [R_NOT_VALID] = {"constraint-missing-not-valid", ENG__LINT_WARNING,
                     "SHARE ROW EXCLUSIVE (foreign key, on both tables) or "
                     AX " (check) while every row is validated",
                     "writes (foreign key), " RW " (check)",
                     "ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT "
                     "in a later migration (SHARE UPDATE EXCLUSIVE: blocks "
                     "neither)"},
    [R_UNIQUE] = {"disallowed-unique-constraint", ENG__LINT_WARNING,
                  AX " while the unique index is built", RW,
                  "CREATE UNIQUE INDEX CONCURRENTLY idx (own migration), then "
                  "ADD CONSTRAINT name UNIQUE USING INDEX idx"},
    [R_REQUIRED] = {"adding-required-field", ENG__LINT_ERROR, AX,
                    "fails on any table that has rows",
                    "give the column a DEFAULT, or add it nullable, backfill, "
                    "then set NOT NULL through a validated check"},
    [R_DROP_COLUMN] = {"ban-drop-column", ENG__LINT_WARNING, AX " (brief)",
                       "the application code that still reads the column",
                       "contract phase only: stop using the column in a "
                       "deployed release first, then drop it"},
    [R_RENAME_COLUMN] = {"renaming-column", ENG__LINT_WARNING, AX " (brief)",
                         "the application code that uses the old name",
                         "expand and contract: add the new column, write "
                         "both, backfill, switch readers, drop the old one"},
    [R_DROP_TABLE] = {"ban-drop-table", ENG__LINT_WARNING, AX " (brief)",
                      "the application code that still uses the table",
                      "contract phase only: stop using the table in a "
                      "deployed release first, then drop it"},
    [R_RENAME_TABLE] = {"renaming-table", ENG__LINT_WARNING, AX " (brief)",
                        "the application code that uses the old name",
                        "expand and contract: a new table (or a view under "
                        "the old name) while the code moves over"},
    [R_DROP_INDEX] = {"require-concurrent-index-deletion", ENG__LINT_WARNING,
                      AX " on the table", RW,
                      "DROP INDEX CONCURRENTLY, alone in a migration of its "
                      "own"},
    [R_CONC_TXN] = {"concurrently-in-transaction", ENG__LINT_ERROR,
                    "none: PostgreSQL refuses it",
                    "the whole migration (it fails: cannot run inside a "
                    "transaction block)",
                    "put the CONCURRENTLY statement alone in a migration of "
                    "its own (Prisma runs a migration of several statements "
                    "as one transaction)"},
    [R_TRUNCATE] = {"truncate-cascade", ENG__LINT_ERROR,
                    AX " on the table and on every table referencing it",
                    RW " of all those tables, and it empties them",
                    "TRUNCATE the tables you mean by name, without CASCADE"},
    [R_LOCK_TIMEOUT] = {"missing-lock-timeout", ENG__LINT_WARNING,
                        "the statement's lock, waited for without limit",
                        "every query queued behind the waiting statement",
                        "SET lock_timeout = '2s' at the top of the migration, "
                        "and retry the deploy when it times out"},
    [R_STMT_TIMEOUT] = {"missing-statement-timeout", ENG__LINT_WARNING,
                        "the statement's lock, held without limit",
                        "whatever the lock blocks, for as long as it runs",
                        "SET statement_timeout = '...' at the top of the "
                        "migration, sized from a rehearsal"},
    [R_VACUUM_FULL] = {"ban-vacuum-full", ENG__LINT_ERROR,
                       AX " and a rewrite of the table", RW,
                       "plain VACUUM, or pg_repack outside the migration"},
    [R_CLUSTER] = {"ban-cluster", ENG__LINT_ERROR,
                   AX " and a rewrite of the table", RW,
                   "pg_repack outside the migration, or leave the order be"},
    [R_PARSE] = {"parse-error", ENG__LINT_ERROR, "unknown", "unknown",
                 "fix the syntax; PostgreSQL 16+ syntax cannot be checked "
                 "by this lint (suppress with a reason)"},
    [R_SUPPRESS] = {"bad-suppression", ENG__LINT_ERROR, "none", "nothing",
                    "write `-- lint: allow RULE REASON` with a known rule and "
                    "a reason"},
};

const eng__lint_rule *eng__lint_rules(size_t *n) {
  *n = R_COUNT;
  return rules;
}

/* ---- one text ----------------------------------------------------------- */

#define SUPPRESS_MAX 8
#define NAMES_MAX 64 /* created tables remembered per migration */

typedef struct allow {
  int rule;
  char *reason;
} allow;

typedef struct cx {
  eng__lint *l;
  const char *file, *mig, *sql;
  size_t len;
  int pg;
  bool in_txn;
  char *created[NAMES_MAX]; /* tables created so far (malloc'd) */
  size_t n_created;
  bool lock_timeout, stmt_timeout; /* SET so far */
  bool lt_warned, st_warned;
  size_t start; /* the statement's first byte */
  size_t *bol;  /* offsets where lines begin */
  size_t n_bol;
  allow allows[SUPPRESS_MAX];
  size_t n_allows;
} cx;

static void pos_of(const char *s, size_t off, int *line, int *col) {
  int ln = 1;
  size_t bol = 0;
  for (size_t i = 0; i < off && s[i]; i++)
    if (s[i] == '\n') ln++, bol = i + 1;
  *line = ln;
  *col = (int)(off - bol) + 1;
}

/* A copy of s that JSON can hold: s itself when it is UTF-8, otherwise
 * with every byte outside ASCII's printable range as '?' (a comment or a
 * file name in another encoding). */
static char *utf8_copy(const char *s) {
  if (!s) return NULL;
  json_t *probe = json_string(s);
  char *out = eng__xstrdup(s);
  if (probe) {
    json_decref(probe);
    return out;
  }
  for (char *x = out; *x; x++)
    if ((unsigned char)*x >= 0x80 || (unsigned char)*x < 0x20) *x = '?';
  return out;
}

static void push(eng__lint *l, int rule, const char *file, const char *mig,
                 int line, int col, char *msg, const char *reason) {
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 16;
    l->v = eng__xrealloc(l->v, l->cap * sizeof *l->v);
  }
  eng__lint_finding *f = &l->v[l->n++];
  memset(f, 0, sizeof *f);
  f->rule = &rules[rule];
  f->file = utf8_copy(file);
  f->migration = utf8_copy(mig);
  f->line = line;
  f->col = col;
  f->message = msg;
  f->suppressed = utf8_copy(reason);
  if (reason) l->suppressed++;
  else if (rules[rule].level == ENG__LINT_ERROR) l->errors++;
  else l->warnings++;
}

/* Line and column of byte off (a binary search of the line starts). */
static void pos(const cx *c, size_t off, int *line, int *col) {
  size_t lo = 0, hi = c->n_bol;
  while (hi - lo > 1) {
    size_t mid = (lo + hi) / 2;
    if (c->bol[mid] <= off) lo = mid;
    else hi = mid;
  }
  *line = (int)lo + 1;
  *col = (int)(off - c->bol[lo]) + 1;
}

static void push_at(cx *c, int rule, size_t off, char *msg, const char *reason) {
  int line, col;
  pos(c, off, &line, &col);
  push(c->l, rule, c->file, c->mig, line, col, msg, reason);
}

static void add(cx *c, int rule, json_int_t loc, const char *fmt, ...)
    ENG_PRINTF(4, 5);
static void add(cx *c, int rule, json_int_t loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  eng__buf b = {0};
  eng__buf_vaddf(&b, fmt, ap);
  va_end(ap);
  const char *reason = NULL;
  for (size_t i = 0; i < c->n_allows; i++)
    if (c->allows[i].rule == rule) reason = c->allows[i].reason;
  size_t off = loc >= 0 && (size_t)loc < c->len ? (size_t)loc : c->start;
  push_at(c, rule, off, eng__buf_steal(&b), reason);
}

/* ---- the tree ----------------------------------------------------------- */

static const json_t *nd(const json_t *n, const char *type) {
  return json_object_get(n, type);
}
static const char *str(const json_t *n, const char *key) {
  const char *s = json_string_value(json_object_get(n, key));
  return s ? s : "";
}
static bool flag(const json_t *n, const char *key) {
  return json_is_true(json_object_get(n, key));
}
static json_int_t loc_of(const json_t *n) {
  const json_t *v = json_object_get(n, "location");
  return json_is_integer(v) ? json_integer_value(v) : -1;
}

static const char *relname(const json_t *rangevar) {
  return str(rangevar, "relname");
}

static bool created_here(const cx *c, const char *rel) {
  for (size_t i = 0; i < c->n_created; i++)
    if (!strcmp(c->created[i], rel)) return true;
  return false;
}

static bool validated(const eng__lint *l, const char *rel) {
  for (size_t i = 0; i < l->n_validated; i++)
    if (!strcmp(l->validated[i], rel)) return true;
  return false;
}

/* The last name of a qualified name list ([{String: {sval}}...]). */
static const char *last_name(const json_t *names) {
  size_t n = json_array_size(names);
  return n ? str(nd(json_array_get(names, n - 1), "String"), "sval") : "";
}

/* Functions a default may call without a rewrite (stable or immutable). */
static bool fn_stable(const char *name) {
  static const char *const ok[] = {
      "now", "transaction_timestamp", "statement_timestamp", "lower",
      "upper", "to_jsonb", "jsonb_build_object", "json_build_object",
      "jsonb_build_array", "json_build_array", "make_date", "make_interval",
      "to_timestamp", "to_date", "array_fill", NULL};
  for (size_t i = 0; ok[i]; i++)
    if (!strcmp(ok[i], name)) return true;
  return false;
}

/* The first function of expr that is not known to be stable, or NULL. */
static const char *volatile_fn(const json_t *expr, int depth) {
  if (depth > 64 || !expr) return NULL;
  if (json_is_array(expr)) {
    size_t i;
    const json_t *v;
    json_array_foreach(expr, i, v) {
      const char *f = volatile_fn(v, depth + 1);
      if (f) return f;
    }
    return NULL;
  }
  if (!json_is_object(expr)) return NULL;
  const json_t *fc = nd(expr, "FuncCall");
  if (fc) {
    const char *name = last_name(json_object_get(fc, "funcname"));
    if (!fn_stable(name)) return name;
  }
  const char *k;
  const json_t *v;
  json_object_foreach((json_t *)expr, k, v) {
    const char *f = volatile_fn(v, depth + 1);
    if (f) return f;
  }
  return NULL;
}

/* ---- ALTER TABLE -------------------------------------------------------- */

static bool serial_type(const char *t) {
  return !strcmp(t, "serial") || !strcmp(t, "bigserial") ||
         !strcmp(t, "smallserial") || !strcmp(t, "serial2") ||
         !strcmp(t, "serial4") || !strcmp(t, "serial8");
}

static void add_column(cx *c, const char *rel, const json_t *col) {
  const char *name = str(col, "colname");
  const char *type = last_name(json_object_get(nd(col, "typeName"), "names"));
  bool notnull = false, generated = serial_type(type);
  const json_t *def = NULL;
  size_t i;
  const json_t *v;
  json_array_foreach(json_object_get(col, "constraints"), i, v) {
    const json_t *k = nd(v, "Constraint");
    const char *t = str(k, "contype");
    if (!strcmp(t, "CONSTR_NOTNULL") || !strcmp(t, "CONSTR_PRIMARY"))
      notnull = true;
    else if (!strcmp(t, "CONSTR_DEFAULT")) def = k;
    else if (!strcmp(t, "CONSTR_IDENTITY") || !strcmp(t, "CONSTR_GENERATED"))
      generated = true;
  }
  json_int_t loc = loc_of(col);
  if (generated) {
    add(c, R_SERIAL, loc,
        "column \"%s\" added to \"%s\" as serial, identity or stored "
        "generated: every existing row gets a value",
        name, rel);
    return;
  }
  if (def) {
    const char *fn = volatile_fn(json_object_get(def, "raw_expr"), 0);
    if (fn)
      add(c, R_VOLATILE_DEFAULT, loc_of(def),
          "column \"%s\" added to \"%s\" with the volatile default %s()", name,
          rel, fn);
    else if (c->pg < PG_FAST_DEFAULT)
      add(c, R_VOLATILE_DEFAULT, loc_of(def),
          "column \"%s\" added to \"%s\" with a default: PostgreSQL %d "
          "rewrites the table for any default (11+ does not for constants)",
          name, rel, c->pg);
    return;
  }
  if (notnull)
    add(c, R_REQUIRED, loc,
        "column \"%s\" added to \"%s\" as NOT NULL without a default", name,
        rel);
}

static void add_constraint(cx *c, const char *rel, const json_t *k) {
  const char *t = str(k, "contype");
  const char *name = str(k, "conname");
  bool fk = !strcmp(t, "CONSTR_FOREIGN");
  if ((fk || !strcmp(t, "CONSTR_CHECK")) && !flag(k, "skip_validation")) {
    add(c, R_NOT_VALID, loc_of(k),
        "%s constraint %s%s%son \"%s\" added without NOT VALID: every row is "
        "checked under the lock",
        fk ? "foreign key" : "check", *name ? "\"" : "", name,
        *name ? "\" " : "", rel);
    return;
  }
  if ((!strcmp(t, "CONSTR_UNIQUE") || !strcmp(t, "CONSTR_PRIMARY") ||
       !strcmp(t, "CONSTR_EXCLUSION")) &&
      !*str(k, "indexname"))
    add(c, R_UNIQUE, loc_of(k),
        "%s constraint added to \"%s\" without USING INDEX: its index is "
        "built under the lock",
        !strcmp(t, "CONSTR_PRIMARY") ? "primary key"
        : !strcmp(t, "CONSTR_UNIQUE") ? "unique"
                                       : "exclusion",
        rel);
}

static void alter_cmd(cx *c, const char *rel, const json_t *cmd) {
  const char *sub = str(cmd, "subtype");
  const char *col = str(cmd, "name");
  const json_t *def = json_object_get(cmd, "def");
  if (!strcmp(sub, "AT_AddColumn")) add_column(c, rel, nd(def, "ColumnDef"));
  else if (!strcmp(sub, "AT_AddConstraint"))
    add_constraint(c, rel, nd(def, "Constraint"));
  else if (!strcmp(sub, "AT_AlterColumnType"))
    add(c, R_TYPE, loc_of(nd(def, "ColumnDef")),
        "type of column \"%s\" of \"%s\" changed to %s", col, rel,
        last_name(json_object_get(nd(nd(def, "ColumnDef"), "typeName"),
                                  "names")));
  else if (!strcmp(sub, "AT_SetNotNull")) {
    if (!(c->pg >= PG_NOTNULL_BY_CHECK && validated(c->l, rel)))
      add(c, R_NOT_NULL, -1, "SET NOT NULL on column \"%s\" of \"%s\" %s",
          col, rel,
          c->pg < PG_NOTNULL_BY_CHECK
              ? "(PostgreSQL before 12 scans the table whatever checks exist)"
              : "without a CHECK (col IS NOT NULL) validated before it");
  } else if (!strcmp(sub, "AT_DropColumn"))
    add(c, R_DROP_COLUMN, -1, "column \"%s\" of \"%s\" dropped", col, rel);
  else if (!strcmp(sub, "AT_ValidateConstraint") && !validated(c->l, rel)) {
    c->l->validated = eng__xrealloc(c->l->validated, (c->l->n_validated + 1) *
                                                         sizeof(char *));
    c->l->validated[c->l->n_validated++] = eng__xstrdup(rel);
  }
}

/* ---- statements --------------------------------------------------------- */

/* Whether a statement of this kind on rel queues behind (and then blocks)
 * reads or writes: it needs lock_timeout. */
static void needs_lock_timeout(cx *c) {
  if (c->lock_timeout || c->lt_warned) return;
  c->lt_warned = true;
  add(c, R_LOCK_TIMEOUT, -1,
      "this statement waits for its lock with no lock_timeout set before it");
}

static void alter_table(cx *c, const json_t *st) {
  const char *rel = relname(json_object_get(st, "relation"));
  if (created_here(c, rel)) return;
  needs_lock_timeout(c);
  size_t i;
  const json_t *v;
  json_array_foreach(json_object_get(st, "cmds"), i, v)
      alter_cmd(c, rel, nd(v, "AlterTableCmd"));
}

static void index_stmt(cx *c, const json_t *st) {
  const char *rel = relname(json_object_get(st, "relation"));
  bool conc = flag(st, "concurrent");
  if (conc && c->in_txn)
    add(c, R_CONC_TXN, -1, "CREATE INDEX CONCURRENTLY inside a transaction");
  if (conc || created_here(c, rel)) return;
  needs_lock_timeout(c);
  add(c, R_INDEX, -1, "CREATE %sINDEX%s%s on \"%s\" without CONCURRENTLY",
      flag(st, "unique") ? "UNIQUE " : "", *str(st, "idxname") ? " " : "",
      str(st, "idxname"), rel);
}

/* The name DROP names: its last part. */
static const char *drop_name(const json_t *obj) {
  return last_name(json_object_get(nd(obj, "List"), "items"));
}

static void drop_stmt(cx *c, const json_t *st) {
  const char *type = str(st, "removeType");
  bool conc = flag(st, "concurrent");
  bool table = !strcmp(type, "OBJECT_TABLE");
  if (!table && strcmp(type, "OBJECT_INDEX")) return;
  if (conc && c->in_txn)
    add(c, R_CONC_TXN, -1, "DROP INDEX CONCURRENTLY inside a transaction");
  size_t i;
  const json_t *v;
  json_array_foreach(json_object_get(st, "objects"), i, v) {
    const char *name = drop_name(v);
    if (table && created_here(c, name)) continue;
    if (conc) continue;
    needs_lock_timeout(c);
    if (table) add(c, R_DROP_TABLE, -1, "table \"%s\" dropped", name);
    else add(c, R_DROP_INDEX, -1, "DROP INDEX \"%s\" without CONCURRENTLY", name);
  }
}

static void rename_stmt(cx *c, const json_t *st) {
  const char *type = str(st, "renameType");
  const char *rel = relname(json_object_get(st, "relation"));
  bool col = !strcmp(type, "OBJECT_COLUMN");
  if ((!col && strcmp(type, "OBJECT_TABLE")) || created_here(c, rel)) return;
  needs_lock_timeout(c);
  if (col)
    add(c, R_RENAME_COLUMN, -1, "column \"%s\" of \"%s\" renamed to \"%s\"",
        str(st, "subname"), rel, str(st, "newname"));
  else
    add(c, R_RENAME_TABLE, -1, "table \"%s\" renamed to \"%s\"", rel,
        str(st, "newname"));
}

static bool has_option(const json_t *opts, const char *name) {
  size_t i;
  const json_t *v;
  json_array_foreach(opts, i, v) if (!strcmp(str(nd(v, "DefElem"), "defname"), name)) return true;
  return false;
}

static void maintenance_stmt(cx *c, const char *type, const json_t *st) {
  if (!strcmp(type, "TruncateStmt")) {
    if (strcmp(str(st, "behavior"), "DROP_CASCADE")) return;
    needs_lock_timeout(c);
    add(c, R_TRUNCATE, -1, "TRUNCATE ... CASCADE");
  } else if (!strcmp(type, "VacuumStmt")) {
    if (!has_option(json_object_get(st, "options"), "full")) return;
    needs_lock_timeout(c);
    add(c, R_VACUUM_FULL, -1, "VACUUM FULL");
  } else if (!strcmp(type, "ClusterStmt")) {
    needs_lock_timeout(c);
    add(c, R_CLUSTER, -1, "CLUSTER");
  } else if (!strcmp(type, "ReindexStmt") && c->in_txn &&
             has_option(json_object_get(st, "params"), "concurrently")) {
    add(c, R_CONC_TXN, -1, "REINDEX CONCURRENTLY inside a transaction");
  }
}

static void set_stmt(cx *c, const json_t *st) {
  const char *name = str(st, "name");
  if (!strcmp(name, "lock_timeout")) c->lock_timeout = true;
  if (!strcmp(name, "statement_timeout")) c->stmt_timeout = true;
}

static void statement(cx *c, const json_t *stmt) {
  const char *type;
  const json_t *st;
  json_object_foreach((json_t *)stmt, type, st) {
    if (!strcmp(type, "AlterTableStmt")) alter_table(c, st);
    else if (!strcmp(type, "IndexStmt")) index_stmt(c, st);
    else if (!strcmp(type, "DropStmt")) drop_stmt(c, st);
    else if (!strcmp(type, "RenameStmt")) rename_stmt(c, st);
    else if (!strcmp(type, "VariableSetStmt")) set_stmt(c, st);
    else maintenance_stmt(c, type, st);
  }
}

/* ---- suppression comments ----------------------------------------------- */

static int rule_index(const char *id, size_t n) {
  for (int i = 0; i < R_COUNT; i++)
    if (strlen(rules[i].id) == n && !strncmp(rules[i].id, id, n)) return i;
  return -1;
}

static void clear_allows(cx *c) {
  for (size_t i = 0; i < c->n_allows; i++) free(c->allows[i].reason);
  c->n_allows = 0;
}

#define ALLOW_MARK "lint: allow"

/* One `-- lint: allow RULE[,RULE] REASON` comment whose text (after "--")
 * is p..e. */
static void allow_comment(cx *c, const char *p, const char *e, size_t off) {
  while (p < e && isspace((unsigned char)*p)) p++;
  if ((size_t)(e - p) < sizeof ALLOW_MARK - 1 ||
      strncmp(p, ALLOW_MARK, sizeof ALLOW_MARK - 1))
    return;
  p += sizeof ALLOW_MARK - 1;
  while (p < e && isspace((unsigned char)*p)) p++;
  int got[SUPPRESS_MAX];
  size_t n = 0;
  for (;;) {
    const char *w = p;
    while (p < e && (isalnum((unsigned char)*p) || *p == '-')) p++;
    int r = rule_index(w, (size_t)(p - w));
    if (r < 0) {
      push_at(c, R_SUPPRESS, off,
           eng__asprintf("unknown rule \"%.*s\" in a suppression comment",
                         (int)(p - w), w), NULL);
      return;
    }
    if (n < SUPPRESS_MAX) got[n++] = r;
    if (p < e && *p == ',') {
      p++;
      while (p < e && isspace((unsigned char)*p)) p++;
      continue;
    }
    break;
  }
  while (p < e && (isspace((unsigned char)*p) || *p == ':')) p++;
  while (e > p && isspace((unsigned char)e[-1])) e--;
  if (p == e) {
    push_at(c, R_SUPPRESS, off,
         eng__asprintf("suppression of %s without a reason", rules[got[0]].id),
         NULL);
    return;
  }
  for (size_t i = 0; i < n && c->n_allows < SUPPRESS_MAX; i++)
    c->allows[c->n_allows++] = (allow){got[i], eng__xstrndup(p, (size_t)(e - p))};
}

/* Skip the blanks and comments before a statement's first word, reading
 * the suppression comments among them; returns that word's offset. */
static size_t lead(cx *c, size_t i, size_t end) {
  const char *s = c->sql;
  while (i < end) {
    if (isspace((unsigned char)s[i])) { i++; continue; }
    if (s[i] == '-' && i + 1 < end && s[i + 1] == '-') {
      size_t j = i + 2;
      while (j < end && s[j] != '\n') j++;
      allow_comment(c, s + i + 2, s + j, i);
      i = j;
      continue;
    }
    if (s[i] == '/' && i + 1 < end && s[i + 1] == '*') {
      const char *e = strstr(s + i + 2, "*/");
      if (!e || (size_t)(e - s) >= end) return end;
      i = (size_t)(e - s) + 2;
      continue;
    }
    break;
  }
  return i;
}

/* ---- the whole text ------------------------------------------------------ */

/* Rules whose statement holds its lock while it reads or rewrites the
 * whole table: they need statement_timeout. */
static bool long_rule(const eng__lint_rule *r) {
  static const int long_rules[] = {R_INDEX, R_VOLATILE_DEFAULT, R_SERIAL,
                                   R_TYPE, R_NOT_NULL, R_NOT_VALID, R_UNIQUE,
                                   R_VACUUM_FULL, R_CLUSTER};
  for (size_t i = 0; i < sizeof long_rules / sizeof *long_rules; i++)
    if (r == &rules[long_rules[i]]) return true;
  return false;
}

/* After a statement that added findings from index `from`: the missing
 * statement_timeout, once per text, placed before them. */
static void needs_stmt_timeout(cx *c, size_t from) {
  if (c->stmt_timeout || c->st_warned) return;
  eng__lint *l = c->l;
  size_t i = from;
  while (i < l->n && !long_rule(l->v[i].rule)) i++;
  if (i == l->n) return;
  c->st_warned = true;
  add(c, R_STMT_TIMEOUT, -1,
      "this statement holds its lock while it reads or rewrites the whole "
      "table, with no statement_timeout set before it");
  if (from < l->n - 1 && l->v[from].rule == &rules[R_LOCK_TIMEOUT]) from++;
  eng__lint_finding f = l->v[l->n - 1];
  memmove(&l->v[from + 1], &l->v[from], (l->n - 1 - from) * sizeof f);
  l->v[from] = f;
}

/* A table the statement creates (CREATE TABLE, CREATE TABLE AS): exempt
 * from here on. */
static void note_created(cx *c, const json_t *stmt) {
  const json_t *rv = json_object_get(nd(stmt, "CreateStmt"), "relation");
  if (!rv)
    rv = json_object_get(json_object_get(nd(stmt, "CreateTableAsStmt"), "into"),
                         "rel");
  if (rv && c->n_created < NAMES_MAX)
    c->created[c->n_created++] = eng__xstrdup(relname(rv));
}

static void parse_error(eng__lint *l, const char *file, const char *mig,
                        const char *sql, const char *msg, int cursor) {
  size_t len = strlen(sql);
  size_t off = cursor > 0 && (size_t)cursor <= len ? (size_t)cursor - 1 : 0;
  char *m = eng__asprintf("PostgreSQL %d's grammar refuses this text: %s; "
                          "nothing of this migration was checked",
                          LINT_PG_DEFAULT, msg);
  for (char *x = m; *x; x++) /* it may quote the text: one ASCII line */
    if ((unsigned char)*x >= 0x80 || (unsigned char)*x < 0x20) *x = '?';
  int line, col;
  pos_of(sql, off, &line, &col);
  push(l, R_PARSE, file, mig, line, col, m, NULL);
}

/* Offsets of line starts of c->sql. */
static void index_lines(cx *c) {
  c->bol = eng__xmalloc(sizeof *c->bol);
  c->bol[c->n_bol++] = 0;
  for (size_t k = 0; k < c->len; k++)
    if (c->sql[k] == '\n') {
      if ((c->n_bol & (c->n_bol - 1)) == 0) /* a power of two: full */
        c->bol = eng__xrealloc(c->bol, 2 * c->n_bol * sizeof *c->bol);
      c->bol[c->n_bol++] = k + 1;
    }
}

/* One statement of the tree ({"stmt": ..., "stmt_location", "stmt_len"}). */
static void lint_stmt(cx *c, const json_t *raw) {
  json_int_t loc = json_integer_value(json_object_get(raw, "stmt_location"));
  json_int_t n = json_integer_value(json_object_get(raw, "stmt_len"));
  if (loc < 0 || (size_t)loc > c->len) loc = 0;
  size_t end = n > 0 && (size_t)(loc + n) <= c->len ? (size_t)(loc + n) : c->len;
  c->start = lead(c, (size_t)loc, end);
  size_t from = c->l->n;
  const json_t *stmt = json_object_get(raw, "stmt");
  statement(c, stmt);
  needs_stmt_timeout(c, from);
  clear_allows(c);
  note_created(c, stmt);
}

/* The statements of libpg_query's JSON output, {"version":N,"stmts":[...]},
 * loaded one at a time (jansson delimits each): the tree of a large text
 * is never whole in memory. Returns NULL, or jansson's message. */
static const char *walk_tree(cx *c, const char *tree, eng__lint_txn txn,
                             json_error_t *jerr) {
  const char *p = strstr(tree, "\"stmts\":[");
  if (!p) return NULL; /* no statements */
  p += strlen("\"stmts\":[");
  const char *end = p + strlen(p);
  c->in_txn = txn == ENG__LINT_TXN_ALWAYS;
  for (size_t i = 0; p < end && *p != ']'; i++) {
    json_t *raw = json_loadb(p, (size_t)(end - p), JSON_DISABLE_EOF_CHECK, jerr);
    if (!raw) return jerr->text;
    p += jerr->position;
    /* as Prisma: a text of several statements is one transaction */
    if (i == 0 && txn == ENG__LINT_TXN_AUTO) c->in_txn = *p == ',';
    lint_stmt(c, raw);
    json_decref(raw);
    if (p < end && *p == ',') p++;
  }
  return NULL;
}

void eng__lint_text(eng__lint *l, const char *file, const char *mig,
                    const char *sql, const eng__lint_opts *o) {
  PgQueryParseResult pr = pg_query_parse(sql);
  if (pr.error) {
    parse_error(l, file, mig, sql,
                pr.error->message ? pr.error->message : "error",
                pr.error->cursorpos);
    pg_query_free_parse_result(pr);
    return;
  }
  cx c = {.l = l, .file = file, .mig = mig, .sql = sql, .len = strlen(sql)};
  c.pg = o && o->pg_major ? o->pg_major : LINT_PG_DEFAULT;
  index_lines(&c);
  json_error_t jerr;
  /* jansson refuses a tree nested too deeply or names that are not UTF-8 */
  const char *bad = walk_tree(&c, pr.parse_tree, o ? o->txn : ENG__LINT_TXN_AUTO, &jerr);
  if (bad) parse_error(l, file, mig, sql, bad, 0);
  pg_query_free_parse_result(pr);
  for (size_t i = 0; i < c.n_created; i++) free(c.created[i]);
  free(c.bol);
}

void eng__lint_free(eng__lint *l) {
  for (size_t i = 0; i < l->n; i++) {
    free(l->v[i].file);
    free(l->v[i].migration);
    free(l->v[i].message);
    free(l->v[i].suppressed);
  }
  for (size_t i = 0; i < l->n_validated; i++) free(l->validated[i]);
  free(l->validated);
  free(l->v);
  memset(l, 0, sizeof *l);
}

static const char *level_name(eng__lint_level lv) {
  return lv == ENG__LINT_ERROR ? "error" : "warning";
}

char *eng__lint_finding_text(const eng__lint_finding *f) {
  const eng__lint_rule *r = f->rule;
  return eng__asprintf("%s:%d:%d: %s: [%s] %s; takes %s, blocks %s; safe: "
                       "%s%s%s%s",
                       f->file, f->line, f->col,
                       f->suppressed ? "note" : level_name(r->level), r->id,
                       f->message, r->lock, r->blocks, r->fix,
                       f->suppressed ? " (allowed: " : "",
                       f->suppressed ? f->suppressed : "",
                       f->suppressed ? ")" : "");
}

json_t *eng__lint_finding_json(const eng__lint_finding *f) {
  const eng__lint_rule *r = f->rule;
  char *text = eng__lint_finding_text(f);
  json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s?, s:s}",
                   "file", f->file, "migration", f->migration, "line", f->line,
                   "col", f->col, "level", level_name(r->level), "rule", r->id,
                   "message", f->message, "lock", r->lock, "blocks", r->blocks,
                   "fix", r->fix, "suppressed", f->suppressed, "text", text);
  free(text);
  return j;
}
