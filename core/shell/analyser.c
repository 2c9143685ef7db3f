/* analyser.c - the shell analyser: what a command line does, as far as
 * guards care. The lexer (lexer.c) splits the line as the shell would into
 * simple commands of words; here each command is read past its `VAR=x`
 * prefixes and the wrappers that run another command (a table, one row
 * per wrapper: `sudo`, `env`, `timeout`, `npx`, `pnpm exec`, `docker exec`,
 * `docker compose exec`, `kubectl exec`, ...), `sh -c` bodies are read as
 * lines of their own, then the tools whose targets are known are
 * recognised: the PostgreSQL clients (a table too), docker/podman, and
 * rm/mv/chown on paths. Each finding names the tool, the target and
 * whether the use reads, creates, destroys or disrupts it. `eval`, `trap`
 * and a here-document fed to a shell are read like `sh -c` bodies. Every
 * command read is kept (eng__cmd_analysis.cmd) for the forbidden rules.
 * Anything the analyser cannot see through makes the line "unverified",
 * with a reason: text it has not seen runs (a shell reading a pipe or
 * stdin, a script, source, xargs, find -exec, env -S, command
 * substitution), or a word not known here stands where it could change
 * what runs (the program, a target, any word given to a program other
 * than those that only print or test).
 * Pure: no I/O beyond reading the environment and the working directory. */
#include "shell/shell.h"
#include "sql/sql.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* How deep `sh -c 'sh -c ...'` is followed; deeper bodies are not read. */
#define SH_C_DEPTH_MAX 8

typedef struct ctx {
  eng__cmd_analysis *out;
  const char *const *env; /* NAME=VALUE of the step, NULL-terminated */
  char *const *vars;      /* the line's variables before this command */
  int depth;              /* sh -c bodies being read */
} ctx;

static void unverified(ctx *c, const char *why) {
  if (!c->out->unverified) c->out->unverified = eng__xstrdup(why);
}

/* What (a word of the line) is not known here: the reason names the
 * expansion it holds. */
static void unknown_word(ctx *c, const char *what, const eng__cmd_word *w) {
  if (c->out->unverified) return;
  c->out->unverified =
      w->var ? eng__asprintf("%s is not known here (%s)", what, w->var)
             : eng__asprintf("%s is not known here", what);
}

/* The value of NAME for a command: eng__cmd_unknown when not known. */
static const char *env_lookup(const ctx *c, const eng__cmd_words *overlay,
                              const char *name, size_t n) {
  /* VAR=x prefixes of this command first, then the line's, the step's,
   * ours */
  for (size_t i = 0; overlay && i < overlay->n; i++) {
    const char *eq = strchr(overlay->w[i].s, '=');
    if (eq && (size_t)(eq - overlay->w[i].s) == n &&
        !strncmp(overlay->w[i].s, name, n))
      return overlay->w[i].unknown ? eng__cmd_unknown : eq + 1;
  }
  const char *v = eng__cmd_var((const char *const *)c->vars, name, n);
  return v ? v : eng__cmd_getenv(c->env, name, n);
}

/* Is word one of the names in list (separated by spaces)? */
static bool in_list(const char *list, const char *word) {
  return eng__cmd_in_list(list, word);
}

/* ---- findings -------------------------------------------------------------- */

static void add_finding(ctx *c, const char *tool, eng_target kind,
                        const char *target, eng_side_effect side,
                        const char *what) {
  eng__cmd_analysis *a = c->out;
  a->f = eng__xrealloc(a->f, (a->n + 1) * sizeof *a->f);
  eng__cmd_finding *f = &a->f[a->n++];
  f->tool = eng__xstrdup(tool);
  f->kind = kind;
  f->target = eng__xstrdup(target);
  f->side = side;
  f->what = eng__xstrdup(what);
}

static const char *base(const char *s) {
  const char *b = strrchr(s, '/');
  return b ? b + 1 : s;
}

/* The database a -d value or positional names: a URL's path, a conninfo's
 * dbname, or the name itself (malloc'd; NULL when the text names none). */
static char *dbname_of(const char *v) {
  const char *u = strstr(v, "://");
  if (u) {
    const char *slash = strchr(u + 3, '/');
    if (!slash || !slash[1]) return NULL;
    size_t n = strcspn(slash + 1, "?#");
    eng__buf b = {0};
    for (size_t i = 0; i < n; i++) { /* percent-decoding */
      const char *q = slash + 1 + i;
      if (q[0] == '%' && isxdigit((unsigned char)q[1]) &&
          isxdigit((unsigned char)q[2])) {
        char hx[3] = {q[1], q[2], 0};
        char ch = (char)strtol(hx, NULL, 16);
        eng__buf_add(&b, &ch, 1);
        i += 2;
      } else {
        eng__buf_add(&b, q, 1);
      }
    }
    return b.len ? eng__buf_steal(&b) : (eng__buf_free(&b), NULL);
  }
  if (strchr(v, '=')) {
    const char *d = strstr(v, "dbname=");
    if (!d || (d != v && !isspace((unsigned char)d[-1]))) return NULL;
    d += 7;
    if (*d == '\'') {
      const char *e = strchr(d + 1, '\'');
      return e ? eng__xstrndup(d + 1, (size_t)(e - d - 1)) : NULL;
    }
    return eng__xstrndup(d, strcspn(d, " \t"));
  }
  return *v ? eng__xstrdup(v) : NULL;
}

/* An option of a tool: name(s) and whether it takes a value. */
typedef struct opt {
  const char *shorts; /* "d" */
  const char *longs;  /* "dbname" */
  bool value;
  int id;
} opt;

enum { O_NONE, O_DB, O_CMD, O_FILE, O_CLEAN, O_CREATE, O_LIST, O_ALL,
       O_VOLUMES, O_MOUNT, O_VOLUME, O_FORCE, O_FULL, O_CONCURRENTLY };

/* Match argv[*i] against opts: the option's id (and *val for its value),
 * O_NONE for another option, -1 for a positional word. */
static int match_opt(const opt *opts, const eng__cmd_words *ws, size_t *i,
                     const char **val, bool *val_unknown) {
  const char *a = ws->w[*i].s;
  *val = NULL;
  *val_unknown = false;
  if (a[0] != '-' || !a[1]) return -1;
  if (a[1] == '-') {
    if (!a[2]) return -1; /* "--": positional follow (not handled) */
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t nl = eq ? (size_t)(eq - name) : strlen(name);
    for (const opt *o = opts; o->shorts || o->longs; o++) {
      if (!o->longs || strlen(o->longs) != nl || strncmp(o->longs, name, nl))
        continue;
      if (o->value) {
        if (eq) *val = eq + 1;
        else if (*i + 1 < ws->n) {
          (*i)++;
          *val = ws->w[*i].s;
          *val_unknown = ws->w[*i].unknown;
        }
      }
      return o->id;
    }
    return O_NONE;
  }
  /* short options, possibly bundled: -fc, -dNAME */
  int found = O_NONE;
  for (const char *p = a + 1; *p; p++) {
    for (const opt *o = opts; o->shorts || o->longs; o++) {
      if (!o->shorts || !strchr(o->shorts, *p)) continue;
      if (o->value) {
        if (p[1]) *val = p + 1;
        else if (*i + 1 < ws->n) {
          (*i)++;
          *val = ws->w[*i].s;
          *val_unknown = ws->w[*i].unknown;
        }
        return o->id;
      }
      found = o->id;
      break;
    }
  }
  return found;
}

/* ---- SQL ----------------------------------------------------------------- */

/* What the SQL between psql's meta-commands does, read by the SQL
 * classifier (sql/): the databases its statements name are findings of
 * their own (ALTER DATABASE x RENAME is about x, not about the database
 * psql connects to); what it does to the database it runs on raises
 * *here (and *here_what, static or in whatbuf). psql runs statements
 * without a READ ONLY transaction, so what the guards cannot verify counts
 * as a write, and makes the line unverified. */
static void sql_database(ctx *c, const char *tool, const char *sql,
                         eng__sql_class *here, char *whatbuf, size_t size) {
  eng__sql_info in;
  eng__sql_classify(sql, &in);
  for (size_t i = 0; i < in.n_dbs; i++)
    add_finding(c, tool, ENG_TARGET_DATABASE, in.dbs[i].name,
                eng__sql_side(in.dbs[i].cls), in.dbs[i].what);
  if (in.unverified) unverified(c, in.unverified);
  if (in.here > *here) { /* "DELETE (destructive): delete from t" */
    *here = in.here;
    size_t n = strspn(sql, " \t\n;");
    size_t len = strlen(sql + n);
    while (len && strchr(" \t\n;", sql[n + len - 1])) len--;
    snprintf(whatbuf, size, "%s (%s): %.*s", in.here_what,
             eng__sql_class_name(in.here), (int)(len > 100 ? 100 : len), sql + n);
  }
  eng__sql_info_free(&in);
}

/* What a psql text does (its -c commands, each ending with ";\n"): SQL
 * between meta-commands is classified; \c switches the database the rest
 * runs on (a finding for the one left, and *switch_to); \i, \copy, \!,
 * \gexec, \o and \w run or write what the guards do not see. Returns
 * what it does to the database it ends on. */
static eng__sql_class sql_effect(ctx *c, const char *tool, const char *db,
                                 const char *text, char **switch_to,
                                 char *whatbuf, size_t size) {
  eng__sql_class here = ENG__SQL_READ;
  eng__buf seg = {0};
  whatbuf[0] = '\0';
  const char *p = text;
  while (*p) {
    size_t len = strcspn(p, "\n");
    const char *q = p;
    while (q < p + len && isspace((unsigned char)*q)) q++;
    if (*q != '\\') {
      eng__buf_add(&seg, p, len);
      eng__buf_adds(&seg, "\n");
    } else { /* a meta-command: the SQL before it first */
      if (seg.len) sql_database(c, tool, seg.data, &here, whatbuf, size);
      seg.len = 0;
      char *meta = eng__xstrndup(q, len - (size_t)(q - p));
      while (*meta && isspace((unsigned char)meta[strlen(meta) - 1]))
        meta[strlen(meta) - 1] = '\0';
      if (!strncmp(meta, "\\c ", 3) || !strncmp(meta, "\\connect ", 9)) {
        const char *d = meta + (meta[2] == ' ' ? 3 : 9);
        while (*d == ' ') d++;
        /* what ran before on the database left behind */
        if (here > ENG__SQL_READ && db)
          add_finding(c, tool, ENG_TARGET_DATABASE, db, eng__sql_side(here),
                      whatbuf);
        free(*switch_to);
        *switch_to = eng__xstrndup(d, strcspn(d, " ;\n"));
        db = *switch_to;
        here = ENG__SQL_READ;
        whatbuf[0] = '\0';
      } else if (!strncmp(meta, "\\i", 2) || !strncmp(meta, "\\copy", 5) ||
                 !strncmp(meta, "\\!", 2) || !strncmp(meta, "\\gexec", 6) ||
                 !strncmp(meta, "\\o", 2) || !strncmp(meta, "\\w", 2)) {
        if (here < ENG__SQL_WRITE) {
          here = ENG__SQL_WRITE;
          snprintf(whatbuf, size, "psql %.40s (not known: counted as a write)", meta);
        }
        if (strncmp(meta, "\\copy", 5))
          unverified(c, "a psql meta-command runs what the guards do not see");
      }
      free(meta);
    }
    p += len;
    if (*p) p++;
  }
  if (seg.len) sql_database(c, tool, seg.data, &here, whatbuf, size);
  eng__buf_free(&seg);
  return here;
}

/* ---- PostgreSQL clients -------------------------------------------------- */

static const opt pg_conn_opts[] = {
    {"d", "dbname", true, O_DB},  {"h", "host", true, O_NONE},
    {"p", "port", true, O_NONE},  {"U", "username", true, O_NONE},
    {"c", "command", true, O_CMD}, {"f", "file", true, O_FILE},
    {"v", "set", true, O_NONE},   {NULL, "variable", true, O_NONE},
    {"o", "output", true, O_NONE}, {"L", "log-file", true, O_NONE},
    {"P", "pset", true, O_NONE},  {"F", "field-separator", true, O_NONE},
    {"R", "record-separator", true, O_NONE},
    {"T", "table-attr", true, O_NONE},
    {"l", "list", false, O_LIST}, {NULL, "maintenance-db", true, O_NONE},
    {NULL, NULL, false, 0}};

static const opt pg_restore_opts[] = {
    {"d", "dbname", true, O_DB},   {"h", "host", true, O_NONE},
    {"p", "port", true, O_NONE},   {"U", "username", true, O_NONE},
    {"f", "file", true, O_FILE},   {"F", "format", true, O_NONE},
    {"j", "jobs", true, O_NONE},   {"n", "schema", true, O_NONE},
    {"N", "exclude-schema", true, O_NONE}, {"t", "table", true, O_NONE},
    {"T", "trigger", true, O_NONE}, {"I", "index", true, O_NONE},
    {"P", "function", true, O_NONE}, {"L", "use-list", true, O_NONE},
    {"S", "superuser", true, O_NONE}, {NULL, "role", true, O_NONE},
    {"c", "clean", false, O_CLEAN}, {"C", "create", false, O_CREATE},
    {"l", "list", false, O_LIST},  {NULL, NULL, false, 0}};

static const opt pg_maint_opts[] = {
    {"d", "dbname", true, O_DB},   {"h", "host", true, O_NONE},
    {"p", "port", true, O_NONE},   {"U", "username", true, O_NONE},
    {"t", "table", true, O_NONE},  {"n", "schema", true, O_NONE},
    {"N", "exclude-schema", true, O_NONE}, {"j", "jobs", true, O_NONE},
    {"i", "index", true, O_NONE},  {"S", "system", false, O_NONE},
    {"D", "tablespace", true, O_NONE}, {"E", "encoding", true, O_NONE},
    {NULL, "locale", true, O_NONE}, {"O", "owner", true, O_NONE},
    {"T", "template", true, O_NONE}, {NULL, "strategy", true, O_NONE},
    {NULL, "maintenance-db", true, O_NONE}, {"a", "all", false, O_ALL},
    {NULL, "min-xid-age", true, O_NONE}, {NULL, "min-mxid-age", true, O_NONE},
    {NULL, "buffer-usage-limit", true, O_NONE}, {NULL, "parallel", true, O_NONE},
    {"f", "full", false, O_FULL}, {NULL, "concurrently", false, O_CONCURRENTLY},
    {NULL, NULL, false, 0}};

/* The PostgreSQL clients, one row each: names, options, what they do. */
typedef enum pg_kind {
  PG_PSQL,        /* reads or writes, as its SQL says */
  PG_DUMP,        /* reads */
  PG_RESTORE,     /* creates into -d, or destroys with --clean/--create */
  PG_DROPDB,      /* destroys */
  PG_CREATEDB,    /* creates */
  PG_MAINTENANCE  /* maintains (vacuumdb, reindexdb --concurrently) or
                     disrupts (vacuumdb --full, reindexdb, clusterdb) */
} pg_kind;

typedef struct pg_client {
  const char *names; /* separated by spaces */
  const opt *opts;
  pg_kind kind;
} pg_client;

static const pg_client pg_clients[] = {
    {"psql", pg_conn_opts, PG_PSQL},
    {"pg_dump pg_dumpall", pg_conn_opts, PG_DUMP},
    {"pg_restore", pg_restore_opts, PG_RESTORE},
    {"dropdb", pg_maint_opts, PG_DROPDB},
    {"createdb", pg_maint_opts, PG_CREATEDB},
    {"vacuumdb reindexdb clusterdb", pg_maint_opts, PG_MAINTENANCE},
    {NULL, NULL, PG_PSQL}};

static const pg_client *pg_client_of(const char *prog) {
  for (const pg_client *pc = pg_clients; pc->names; pc++)
    if (in_list(pc->names, prog)) return pc;
  return NULL;
}

/* What a client's words say. */
typedef struct pg_args {
  char *db;        /* the database -d names (malloc'd), then the one used */
  bool db_unknown; /* -d (or the first positional) is not known here */
  bool clean, create, list, all;
  bool full, concurrently; /* vacuumdb --full, reindexdb --concurrently */
  bool file;       /* SQL from a file, or a -c not known here */
  bool any_cmd;    /* a -c */
  eng__buf sql;    /* every -c, each ending with ";\n" */
  char *first_pos; /* the first positional word (malloc'd) */
} pg_args;

static void pg_args_free(pg_args *a) {
  free(a->db);
  free(a->first_pos);
  eng__buf_free(&a->sql);
}

static void pg_read_args(const opt *opts, const eng__cmd_words *ws,
                         pg_args *a) {
  for (size_t i = 1; i < ws->n; i++) {
    const char *v;
    bool vu;
    int id = match_opt(opts, ws, &i, &v, &vu);
    if (id == -1) {
      if (!a->first_pos) {
        a->first_pos = eng__xstrdup(ws->w[i].s);
        if (ws->w[i].unknown) a->db_unknown = true;
      }
      continue;
    }
    switch (id) {
    case O_DB:
      free(a->db);
      a->db = v ? dbname_of(v) : NULL;
      a->db_unknown = vu || !v;
      break;
    case O_CMD:
      a->any_cmd = true;
      if (v) eng__buf_addf(&a->sql, "%s;\n", v);
      if (vu) a->file = true; /* SQL not known here: counted as a write */
      break;
    case O_FILE: a->file = true; break;
    case O_CLEAN: a->clean = true; break;
    case O_CREATE: a->create = true; break;
    case O_LIST: a->list = true; break;
    case O_ALL: a->all = true; break;
    case O_FULL: a->full = true; break;
    case O_CONCURRENTLY: a->concurrently = true; break;
    default: break;
    }
  }
}

/* psql/pg_dump: the first positional is the database (or a conninfo);
 * pg_restore: the archive; dropdb/createdb/...: the database. Else
 * PGDATABASE. */
static void pg_database(ctx *c, const eng__cmd_words *overlay, bool restore,
                        pg_args *a) {
  if (!a->db && a->first_pos && !restore) a->db = dbname_of(a->first_pos);
  if (!a->db && !a->db_unknown) {
    const char *e = env_lookup(c, overlay, "PGDATABASE", 10);
    if (e == eng__cmd_unknown) a->db_unknown = true;
    else if (e && *e) a->db = eng__xstrdup(e);
  }
  if (!a->db && !restore &&
      (a->db_unknown || strchr(a->first_pos ? a->first_pos : "", '$')))
    unverified(c, "the database of a PostgreSQL client is not known here");
}

/* What psql does, from its -c SQL (a \c in it switches a->db). */
static eng_side_effect psql_effect(ctx *c, const char *tool, pg_args *a,
                                   char *whatbuf, size_t size,
                                   const char **what) {
  char *sw = NULL;
  eng__sql_class here = ENG__SQL_READ;
  if (a->any_cmd)
    here = sql_effect(c, tool, a->db, a->sql.data ? a->sql.data : "", &sw,
                      whatbuf, size);
  if (sw) {
    free(a->db);
    a->db = sw;
  }
  if (a->file) {
    *what = "SQL from a file (content not known: counted as destructive)";
    return ENG_SIDE_DESTRUCTIVE;
  }
  if (!a->any_cmd && !a->list) {
    *what = "SQL from stdin (content not known: counted as destructive)";
    return ENG_SIDE_DESTRUCTIVE;
  }
  if (here == ENG__SQL_READ) {
    *what = "read-only SQL";
    return ENG_SIDE_READ_ONLY;
  }
  for (char *x = whatbuf; *x; x++)
    if (*x == '\n') *x = ' ';
  *what = whatbuf;
  return eng__sql_side(here);
}

/* What a client other than psql does to its database. */
static eng_side_effect pg_effect(const pg_client *pc, const char *tool,
                                 pg_args *a, const char **what) {
  switch (pc->kind) {
  case PG_DUMP:
    *what = "dump (reads)";
    return ENG_SIDE_READ_ONLY;
  case PG_DROPDB:
    *what = "dropdb";
    return ENG_SIDE_DESTRUCTIVE;
  case PG_CREATEDB:
    *what = "createdb";
    return ENG_SIDE_CREATES;
  case PG_RESTORE:
    *what = a->clean && a->create ? "pg_restore --clean --create"
            : a->clean            ? "pg_restore --clean"
            : a->create           ? "pg_restore --create"
                                  : "pg_restore into it";
    return a->clean || a->create ? ENG_SIDE_DESTRUCTIVE : ENG_SIDE_CREATES;
  default: /* vacuumdb, reindexdb, clusterdb: as VACUUM, REINDEX, CLUSTER */
    *what = tool;
    if (a->all) {
      free(a->db);
      a->db = eng__xstrdup("*");
    }
    if ((!strcmp(tool, "vacuumdb") && !a->full) ||
        (!strcmp(tool, "reindexdb") && a->concurrently))
      return ENG_SIDE_MAINTENANCE;
    return ENG_SIDE_DISRUPTIVE;
  }
}

static void pg_tool(ctx *c, const eng__cmd_words *ws,
                    const eng__cmd_words *overlay, const pg_client *pc,
                    const char *tool) {
  pg_args a = {0};
  pg_read_args(pc->opts, ws, &a);
  bool restore = pc->kind == PG_RESTORE;
  pg_database(c, overlay, restore, &a);
  if (restore && !a.db) { /* no -d: it prints SQL, it restores nothing */
    pg_args_free(&a);
    return;
  }
  const char *what;
  char whatbuf[160];
  eng_side_effect side =
      pc->kind == PG_PSQL ? psql_effect(c, tool, &a, whatbuf, sizeof whatbuf, &what)
                          : pg_effect(pc, tool, &a, &what);
  add_finding(c, tool, ENG_TARGET_DATABASE, a.db, side, what);
  pg_args_free(&a);
}

/* ---- docker / podman --------------------------------------------------------- */

static const opt docker_run_opts[] = {
    {"v", "volume", true, O_VOLUME}, {NULL, "mount", true, O_MOUNT},
    {"e", "env", true, O_NONE},      {"p", "publish", true, O_NONE},
    {NULL, "name", true, O_NONE},    {"u", "user", true, O_NONE},
    {"w", "workdir", true, O_NONE},  {NULL, "network", true, O_NONE},
    {NULL, "entrypoint", true, O_NONE}, {"l", "label", true, O_NONE},
    {NULL, "env-file", true, O_NONE}, {"h", "hostname", true, O_NONE},
    {"m", "memory", true, O_NONE},   {NULL, "cpus", true, O_NONE},
    {NULL, "restart", true, O_NONE}, {NULL, "pull", true, O_NONE},
    {NULL, "platform", true, O_NONE}, {NULL, "stop-signal", true, O_NONE},
    {NULL, "tmpfs", true, O_NONE},   {NULL, "add-host", true, O_NONE},
    {NULL, "log-driver", true, O_NONE}, {NULL, "shm-size", true, O_NONE},
    {NULL, "volumes-from", true, O_NONE}, {NULL, "ulimit", true, O_NONE},
    {NULL, "health-cmd", true, O_NONE}, {NULL, "cidfile", true, O_NONE},
    {NULL, NULL, false, 0}};

static const opt docker_rm_opts[] = {
    {"v", "volumes", false, O_VOLUMES}, {"f", "force", false, O_FORCE},
    {NULL, NULL, false, 0}};

static void docker_mount(ctx *c, const char *tool, const char *spec,
                         bool mount) {
  char *name = NULL;
  bool ro = false;
  if (mount) { /* type=volume,source=NAME,target=/x[,readonly] */
    char *cp = eng__xstrdup(spec), *save = NULL;
    bool bind = false;
    for (char *kv = strtok_r(cp, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
      if (!strncmp(kv, "source=", 7) || !strncmp(kv, "src=", 4)) {
        free(name); /* given twice: the last one counts */
        name = eng__xstrdup(strchr(kv, '=') + 1);
      } else if (!strcmp(kv, "readonly") || !strcmp(kv, "ro") ||
                 !strcmp(kv, "readonly=true") || !strcmp(kv, "ro=true")) {
        ro = true;
      } else if (!strcmp(kv, "type=bind") || !strcmp(kv, "type=tmpfs")) {
        bind = true;
      }
    }
    free(cp);
    if (bind) {
      free(name);
      return;
    }
  } else { /* NAME:/path[:opts] */
    const char *colon = strchr(spec, ':');
    if (!colon) return; /* an anonymous volume */
    name = eng__xstrndup(spec, (size_t)(colon - spec));
    const char *opts = strchr(colon + 1, ':');
    if (opts && (strstr(opts, "ro") == opts + 1 || strstr(opts, ",ro")))
      ro = true;
  }
  if (!name || !*name || name[0] == '/' || name[0] == '.' || name[0] == '~') {
    free(name); /* a host path (bind mount), not a volume */
    return;
  }
  add_finding(c, tool, ENG_TARGET_VOLUME, name,
              ro ? ENG_SIDE_READ_ONLY : ENG_SIDE_DESTRUCTIVE,
              ro ? "mounted read-only" : "mounted read-write");
  free(name);
}

static void docker_tool(ctx *c, const eng__cmd_words *ws, size_t at, const char *prog) {
  if (at >= ws->n) return;
  const char *sub = ws->w[at].s;
  char tool[64];
  if (!strcmp(sub, "volume") && at + 1 < ws->n) {
    const char *op = ws->w[at + 1].s;
    snprintf(tool, sizeof tool, "%s volume %s", prog, op);
    if (!strcmp(op, "rm") || !strcmp(op, "remove")) {
      for (size_t i = at + 2; i < ws->n; i++) {
        if (ws->w[i].s[0] == '-') continue;
        if (ws->w[i].unknown) unverified(c, "a volume name is not known here");
        add_finding(c, tool, ENG_TARGET_VOLUME, ws->w[i].s,
                    ENG_SIDE_DESTRUCTIVE, "removes the volume");
      }
    } else if (!strcmp(op, "prune")) {
      add_finding(c, tool, ENG_TARGET_VOLUME, "*", ENG_SIDE_DESTRUCTIVE,
                  "removes every unused volume");
    }
    return;
  }
  if (!strcmp(sub, "system") && at + 1 < ws->n && !strcmp(ws->w[at + 1].s, "prune")) {
    for (size_t i = at + 2; i < ws->n; i++)
      if (!strcmp(ws->w[i].s, "--volumes")) {
        snprintf(tool, sizeof tool, "%s system prune --volumes", prog);
        add_finding(c, tool, ENG_TARGET_VOLUME, "*", ENG_SIDE_DESTRUCTIVE,
                    "removes every unused volume");
      }
    return;
  }
  if (!strcmp(sub, "rm") || (!strcmp(sub, "container") && at + 1 < ws->n &&
                             !strcmp(ws->w[at + 1].s, "rm"))) {
    size_t from = !strcmp(sub, "rm") ? at + 1 : at + 2;
    bool volumes = false;
    eng__cmd_words rest = {.w = ws->w + from - 1, .n = ws->n - from + 1};
    for (size_t i = 1; i < rest.n; i++) {
      const char *v;
      bool vu;
      if (match_opt(docker_rm_opts, &rest, &i, &v, &vu) == O_VOLUMES) volumes = true;
    }
    snprintf(tool, sizeof tool, "%s rm%s", prog, volumes ? " -v" : "");
    for (size_t i = from; i < ws->n; i++) {
      if (ws->w[i].s[0] == '-') continue;
      add_finding(c, tool, ENG_TARGET_CONTAINER, ws->w[i].s,
                  ENG_SIDE_DISRUPTIVE, "removes the container");
      if (volumes) /* its anonymous volumes go too: which ones is not known */
        add_finding(c, tool, ENG_TARGET_VOLUME, NULL, ENG_SIDE_DESTRUCTIVE,
                    "removes the container's volumes");
    }
    return;
  }
  if (!strcmp(sub, "run") || !strcmp(sub, "create") ||
      (!strcmp(sub, "container") && at + 1 < ws->n &&
       (!strcmp(ws->w[at + 1].s, "run") || !strcmp(ws->w[at + 1].s, "create")))) {
    size_t from = !strcmp(sub, "container") ? at + 2 : at + 1;
    snprintf(tool, sizeof tool, "%s %s", prog, !strcmp(sub, "container") ? ws->w[at + 1].s : sub);
    eng__cmd_words rest = {.w = ws->w + from - 1, .n = ws->n - from + 1};
    for (size_t i = 1; i < rest.n; i++) {
      const char *v;
      bool vu;
      int id = match_opt(docker_run_opts, &rest, &i, &v, &vu);
      if (id == -1) break; /* the image: the container's command follows */
      if ((id == O_VOLUME || id == O_MOUNT) && v) {
        if (vu) unverified(c, "a mount is not known here");
        docker_mount(c, tool, v, id == O_MOUNT);
      }
    }
  }
}

/* ---- files --------------------------------------------------------------- */

static void path_tool(ctx *c, const eng__cmd_words *ws, const char *tool,
                      const char *cwd) {
  bool chown_like = !strcmp(tool, "chown") || !strcmp(tool, "chmod") ||
                    !strcmp(tool, "chgrp");
  size_t first = 1;
  if (chown_like) { /* the owner/mode comes first */
    while (first < ws->n && ws->w[first].s[0] == '-') first++;
    first++;
  }
  size_t last = ws->n;
  if (!strcmp(tool, "mv") && ws->n > 2) last = ws->n - 1; /* sources only */
  for (size_t i = first; i < last; i++) {
    const char *a = ws->w[i].s;
    if (a[0] == '-' && a[1]) continue;
    if (ws->w[i].unknown) unverified(c, "a path is not known here");
    char *p = a[0] == '/' ? eng__xstrdup(a) : eng__asprintf("%s/%s", cwd, a);
    add_finding(c, tool, ENG_TARGET_FILE, p, ENG_SIDE_DESTRUCTIVE,
                !strcmp(tool, "rm") ? "removes it" : !strcmp(tool, "mv") ? "moves it"
                                                   : "changes its owner or mode");
    free(p);
  }
}

/* ---- wrappers ------------------------------------------------------------ */

/* A program that runs the command written after it, one row per wrapper
 * (nginx's command tables): how to get from the program's word to the
 * command it runs. */
typedef struct wrapper {
  const char *progs;  /* the program's names, separated by spaces */
  const char *subs;   /* NULL, or the words one of which must follow the
                       * program to make it a wrapper ("exec") */
  const char *valued; /* its options whose value is the next word ("-u");
                       * any other word starting with '-' is an option alone */
  const char *until;  /* NULL, or the word after which the command follows
                       * (the words before it are not read) */
  size_t skip;        /* words between the options and the command: a
                       * duration, a container, a service */
  const struct wrapper *then; /* NULL, or what must follow the options for a
                               * command to run (compose's exec/run) */
} wrapper;

/* docker compose [OPTIONS] exec|run [OPTIONS] SERVICE COMMAND */
static const wrapper compose_exec = {
    .subs = "exec run",
    .valued = "-u -w -e --user --workdir --env --index -v --volume --entrypoint",
    .skip = 1};

#define COMPOSE_OPTS "-f -p --file --project-name --env-file --profile"

static const wrapper wrappers[] = {
    {.progs = "sudo doas", .valued = "-u -g -C -D -h -p -r -t -U"},
    {.progs = "env", .valued = "-u"},
    {.progs = "exec time nohup command builtin stdbuf setsid chronic busybox"},
    {.progs = "nice ionice", .valued = "-n -c"},
    {.progs = "timeout", .valued = "-s -k", .skip = 1 /* the duration */},
    {.progs = "npx bunx", .valued = "-p --package"},
    {.progs = "pnpm yarn npm", .subs = "exec dlx x"},
    {.progs = "docker podman", .subs = "compose", .valued = COMPOSE_OPTS,
     .then = &compose_exec},
    {.progs = "docker-compose podman-compose", .valued = COMPOSE_OPTS,
     .then = &compose_exec},
    {.progs = "docker podman", .subs = "exec",
     .valued = "-u -w -e --user --workdir --env --env-file --detach-keys",
     .skip = 1 /* the container */},
    {.progs = "kubectl", .subs = "exec", .until = "--"},
    {0}};

typedef enum wrapping {
  W_NONE,  /* not a wrapper */
  W_WRAPS, /* a wrapper: the command it runs follows */
  W_STOP   /* a wrapper running nothing known (compose down -v: the
            * built-in forbidden rules see to it) */
} wrapping;

/* The word after a wrapper's options, from ws->w[k] on. */
static size_t skip_options(const char *valued, const eng__cmd_words *ws,
                           size_t k) {
  while (k < ws->n && ws->w[k].s[0] == '-')
    k += valued && in_list(valued, ws->w[k].s) ? 2 : 1;
  return k;
}

/* Where wr's command starts (*at, maybe past the end), its options at
 * ws->w[k]. */
static wrapping wrapped_at(const wrapper *wr, const eng__cmd_words *ws,
                           size_t k, size_t *at) {
  if (wr->until) {
    while (k < ws->n && strcmp(ws->w[k].s, wr->until)) k++;
    *at = k + 1;
    return W_WRAPS;
  }
  k = skip_options(wr->valued, ws, k);
  if (wr->then) {
    if (k >= ws->n || !in_list(wr->then->subs, ws->w[k].s)) return W_STOP;
    return wrapped_at(wr->then, ws, k + 1, at);
  }
  *at = k + wr->skip;
  return W_WRAPS;
}

/* Does prog (ws->w[i]) wrap a command? Where it starts in *at. */
static wrapping unwrap(const eng__cmd_words *ws, size_t i, const char *prog,
                       size_t *at) {
  for (const wrapper *wr = wrappers; wr->progs; wr++) {
    if (!in_list(wr->progs, prog)) continue;
    size_t k = i + 1;
    if (wr->subs) {
      if (k >= ws->n || !in_list(wr->subs, ws->w[k].s)) continue;
      k++;
    }
    return wrapped_at(wr, ws, k, at);
  }
  return W_NONE;
}

/* ---- one simple command -------------------------------------------------- */

static void analyse_line(ctx *c, const char *line);

/* VAR=x words from ws->w[i] on into overlay (borrowed, not copied).
 * Returns the index of the word after them. */
static size_t take_assignments(const eng__cmd_words *ws, size_t i,
                               eng__cmd_words *overlay) {
  while (i < ws->n && eng__cmd_is_assignment(ws->w[i].s)) {
    overlay->w = eng__xrealloc(overlay->w, (overlay->n + 1) * sizeof *overlay->w);
    overlay->w[overlay->n].s = ws->w[i].s;
    overlay->w[overlay->n].var = NULL;
    overlay->w[overlay->n++].unknown = ws->w[i].unknown;
    i++;
  }
  return i;
}

/* A text the command ws runs as a line of its own (sh -c, eval, trap, a
 * here-document a shell reads), seeing the command's VAR=x prefixes
 * (overlay), then the variables the line set before it. */
static void analyse_body(ctx *c, const char *text, const eng__cmd_words *ws,
                         const eng__cmd_words *overlay) {
  if (c->depth >= SH_C_DEPTH_MAX) {
    unverified(c, "shells nested too deep: the innermost is not read");
    return;
  }
  size_t no = overlay ? overlay->n : 0, nv = 0, ne = 0;
  while (ws->vars && ws->vars[nv]) nv++;
  while (c->env && c->env[ne]) ne++;
  char **env = eng__xcalloc(no + nv + ne + 1, sizeof *env);
  for (size_t k = 0; k < no; k++) /* NAME alone: not known */
    env[k] = eng__xstrndup(overlay->w[k].s,
                           overlay->w[k].unknown ? strcspn(overlay->w[k].s, "=")
                                                 : strlen(overlay->w[k].s));
  for (size_t k = 0; k < nv; k++) env[no + k] = ws->vars[k];
  for (size_t k = 0; k < ne; k++) env[no + nv + k] = (char *)c->env[k];
  ctx inner = *c;
  inner.env = (const char *const *)env;
  inner.depth++;
  analyse_line(&inner, text);
  for (size_t k = 0; k < no; k++) free(env[k]);
  free(env);
}

/* A shell (ws->w[i]): sh -c BODY is read as a line of its own, and so is
 * a here-document it reads; a script or a program from stdin is not seen. */
static void shell_body(ctx *c, const eng__cmd_words *ws, size_t i,
                       const eng__cmd_words *overlay) {
  size_t k = i + 1;
  bool dash_c = false, dash_s = false;
  while (k < ws->n && (ws->w[k].s[0] == '-' || ws->w[k].s[0] == '+')) {
    const char *o = ws->w[k++].s;
    if (!strcmp(o, "--")) break;
    if (in_list("-o +o -O +O --rcfile --init-file", o)) k++;
    else if (o[1] != '-' && strchr(o, 'c')) dash_c = true;
    else if (o[1] != '-' && strchr(o, 's')) dash_s = true;
    if (dash_c) break;
  }
  if (dash_c) {
    if (k >= ws->n) return;
    if (ws->w[k].unknown) unknown_word(c, "the body of sh -c", &ws->w[k]);
    analyse_body(c, ws->w[k].s, ws, overlay);
  } else if (k < ws->n && !dash_s) {
    unverified(c, "a shell script runs (its content is not checked)");
  } else if (ws->heredoc && !ws->stdin_pipe && !ws->stdin_file) {
    analyse_body(c, ws->heredoc, ws, overlay);
  } else {
    unverified(c, "a shell reads its program from standard input (a pipe, "
                  "a file or a here-string): what runs is not known here");
  }
}

/* eval, and trap's action (its first word): literal words are read as a
 * line of their own. */
static void eval_text(ctx *c, const eng__cmd_words *ws, size_t i,
                      const eng__cmd_words *overlay) {
  bool trap = !strcmp(base(ws->w[i].s), "trap");
  eng__buf b = {0};
  for (size_t k = i + 1; k < ws->n; k++) {
    if (trap && ws->w[k].s[0] == '-' && ws->w[k].s[1]) continue; /* -p -l */
    if (ws->w[k].unknown) {
      unknown_word(c, trap ? "the text trap runs" : "the text eval runs", &ws->w[k]);
      eng__buf_free(&b);
      return;
    }
    eng__buf_addf(&b, "%s%s", b.data ? " " : "", ws->w[k].s);
    if (trap) break;
  }
  if (b.data) analyse_body(c, b.data, ws, overlay);
  eng__buf_free(&b);
}

/* Programs that run what the analyser cannot see: why, or NULL. */
static const char *runs_unseen(const eng__cmd_words *ws, size_t i,
                               const char *prog) {
  if (in_list("source .", prog)) {
    const char *f = i + 1 < ws->n ? ws->w[i + 1].s : "";
    return !strncmp(f, "/dev/stdin", 10) || !strncmp(f, "/dev/fd/", 8) ||
                   !strncmp(f, "/proc/self/fd/", 14)
               ? "source reads its program from standard input: what runs "
                 "is not known here"
               : "source or . runs a file (its content is not checked)";
  }
  if (!strcmp(prog, "alias"))
    for (size_t k = i + 1; k < ws->n; k++)
      if (strchr(ws->w[k].s, '='))
        return "alias names a command (what it runs is not checked)";
  if (in_list("su runuser", prog))
    return "su or runuser runs a shell (its commands are not checked)";
  if (in_list("xargs parallel", prog))
    return "xargs or parallel runs commands built from its input: what runs "
           "is not known here";
  if (!strcmp(prog, "find"))
    for (size_t k = i + 1; k < ws->n; k++)
      if (in_list("-exec -execdir -ok -okdir", ws->w[k].s))
        return "find -exec runs commands built from what it finds: what "
               "runs is not known here";
  return NULL;
}

/* The program at ws->w[i], past every wrapper. */
static void analyse_program(ctx *c, const eng__cmd_words *ws, size_t i,
                            const eng__cmd_words *overlay, const char *prog,
                            const char *cwd) {
  if (in_list("sh bash dash zsh ash ksh mksh yash", prog)) {
    shell_body(c, ws, i, overlay);
    return;
  }
  if (in_list("eval trap", prog)) {
    eval_text(c, ws, i, overlay);
    return;
  }
  const char *unseen = runs_unseen(ws, i, prog);
  if (unseen) {
    unverified(c, unseen);
    return;
  }
  /* the tool itself (asking it for help or its version does nothing) */
  for (size_t k = i + 1; k < ws->n; k++)
    if (!strcmp(ws->w[k].s, "--help") || !strcmp(ws->w[k].s, "--version") ||
        !strcmp(ws->w[k].s, "-?"))
      return;
  eng__cmd_words sub = *ws;
  sub.w += i;
  sub.n -= i;
  const pg_client *pc = pg_client_of(prog);
  if (pc) pg_tool(c, &sub, overlay, pc, prog);
  else if (in_list("docker podman", prog)) docker_tool(c, ws, i + 1, prog);
  else if (in_list("rm mv chown chmod chgrp shred", prog))
    path_tool(c, &sub, prog, cwd);
}

/* Programs that only print or test their words: a word not known here
 * given to them runs nothing. */
#define PRINTS_ONLY "echo printf true false : test [ [[ sleep"

/* env -S TEXT (ws->w[i] is env): the text is split into a command. */
static bool env_splits(const eng__cmd_words *ws, size_t i) {
  for (size_t k = i + 1; k < ws->n && ws->w[k].s[0] == '-'; k++) {
    const char *o = ws->w[k].s;
    if (!strncmp(o, "--split-string", 14) || (o[1] != '-' && strchr(o, 'S')))
      return true;
    if (in_list("-u -C --unset --chdir", o)) k++;
  }
  return false;
}

static void analyse_words(ctx *c, const eng__cmd_words *ws, const char *cwd) {
  eng__cmd_analysis *a = c->out;
  a->cmd = eng__xrealloc(a->cmd, (a->ncmd + 1) * sizeof *a->cmd);
  eng__cmd_words_copy(&a->cmd[a->ncmd++], ws);
  c->vars = ws->vars;
  eng__cmd_words overlay = {0};
  size_t i = 0;
  /* the reserved words that open or continue a compound command */
  while (i < ws->n && in_list("! { } then else elif do if while until",
                                       ws->w[i].s))
    i++;
  if (i < ws->n && in_list("for select case function", ws->w[i].s))
    return; /* for X in WORDS, case WORD in, function NAME: nothing runs */
  for (;;) {
    i = take_assignments(ws, i, &overlay); /* VAR=x cmd */
    if (i >= ws->n) break;
    const char *prog = base(ws->w[i].s);
    if (ws->w[i].unknown) {
      unknown_word(c, "the program to run", &ws->w[i]);
      break;
    }
    if (!strcmp(prog, "env") && env_splits(ws, i)) {
      unverified(c, "env -S splits a text into a command: what runs is not "
                    "known here");
      break;
    }
    size_t at;
    wrapping how = unwrap(ws, i, prog, &at);
    if (how == W_WRAPS) {
      i = at;
      continue;
    }
    if (how == W_NONE) analyse_program(c, ws, i, &overlay, prog, cwd);
    for (size_t k = i + 1; k < ws->n; k++) /* $X of read, for, $1, ... */
      if (ws->w[k].var && !in_list(PRINTS_ONLY, prog)) {
        unknown_word(c, "a word of the command", &ws->w[k]);
        break;
      }
    break;
  }
  free(overlay.w);
}

/* ---- a line --------------------------------------------------------------- */

static void analyse_line(ctx *c, const char *line) {
  char cwd[4096];
  if (!getcwd(cwd, sizeof cwd)) snprintf(cwd, sizeof cwd, ".");
  const char *step_cwd = NULL;
  for (size_t i = 0; c->env && c->env[i]; i++)
    if (!strncmp(c->env[i], "ENGINE_CWD=", 11)) step_cwd = c->env[i] + 11;
  eng__cmd_lexed lx;
  eng__cmd_lex(line, ENG_CMD_SHELL, c->env, &lx);
  if (lx.unverified) unverified(c, lx.unverified);
  for (size_t i = 0; i < lx.n; i++) {
    const eng__cmd_words *cmd = &lx.cmd[i];
    /* `cd DIR` changes where relative paths point */
    if (cmd->n >= 2 && !strcmp(cmd->w[0].s, "cd")) {
      if (cmd->w[1].unknown) unverified(c, "cd to a directory not known here");
      else if (cmd->w[1].s[0] == '/') snprintf(cwd, sizeof cwd, "%s", cmd->w[1].s);
      else {
        char *t = eng__asprintf("%s/%s", step_cwd ? step_cwd : cwd, cmd->w[1].s);
        size_t tl = strlen(t) < sizeof cwd - 1 ? strlen(t) : sizeof cwd - 1;
        memcpy(cwd, t, tl);
        cwd[tl] = '\0';
        free(t);
      }
      step_cwd = NULL;
    } else {
      analyse_words(c, cmd, step_cwd ? step_cwd : cwd);
    }
  }
  eng__cmd_lexed_free(&lx);
}

int eng__cmd_analyse(const char *line, const char *const *env,
                     eng__cmd_analysis *out) {
  memset(out, 0, sizeof *out);
  ctx c = {out, env, NULL, 0};
  analyse_line(&c, line ? line : "");
  return out->unverified ? 1 : 0;
}

int eng__cmd_analyse_env_text(const char *line, const char *env_text,
                              eng__cmd_analysis *out) {
  char **env = NULL;
  size_t ne = 0;
  char *copy = eng__xstrdup(env_text ? env_text : "");
  for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l;
       l = strtok_r(NULL, "\n", &save)) {
    env = eng__xrealloc(env, (ne + 2) * sizeof *env);
    env[ne++] = l;
    env[ne] = NULL;
  }
  int rc = eng__cmd_analyse(line, (const char *const *)env, out);
  free(env);
  free(copy);
  return rc;
}

void eng__cmd_analysis_free(eng__cmd_analysis *a) {
  for (size_t i = 0; i < a->n; i++) {
    free(a->f[i].tool);
    free(a->f[i].target);
    free(a->f[i].what);
  }
  free(a->f);
  for (size_t i = 0; i < a->ncmd; i++) eng__cmd_words_free(&a->cmd[i]);
  free(a->cmd);
  free(a->unverified);
  memset(a, 0, sizeof *a);
}
