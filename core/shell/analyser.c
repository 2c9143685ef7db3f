/* analyser.c - the shell analyser: what a command line does, as far as
 * guards care. It is split as the shell would (quotes, escapes, line
 * continuations, `;` `&&` `||` `|` sequences, `sh -c` bodies, `VAR=x`
 * prefixes, `sudo`, `env`, `npx`, `pnpm exec`, `docker exec` and `docker
 * compose exec` wrappers), then the
 * tools whose targets are known are recognised: the PostgreSQL clients,
 * docker/podman, and rm/mv/chown on paths. Each finding names the tool, the
 * target and whether the use reads, creates, destroys or disrupts it.
 * Anything the analyser cannot see through (command substitution, eval, an
 * unknown variable where a target should be) makes the line "unverified".
 * Pure: no I/O beyond reading the environment. */
#include "shell/shell.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* ---- words ---------------------------------------------------------------- */

typedef struct word {
  char *s;
  bool unknown; /* holds an expansion the analyser could not resolve */
} word;

typedef struct words {
  word *w;
  size_t n;
  bool stdin_heredoc; /* << or <<< feeds it */
  bool stdin_file;    /* < FILE feeds it */
} words;

typedef struct ctx {
  eng__cmd_analysis *out;
  const char *const *env; /* NAME=VALUE of the step, NULL-terminated */
  int depth;
} ctx;

static void unverified(ctx *c, const char *why) {
  if (!c->out->unverified) c->out->unverified = eng__xstrdup(why);
}

static const char *env_lookup(const ctx *c, const words *overlay,
                              const char *name, size_t n) {
  /* VAR=x prefixes of this command first, then the step, then ours */
  for (size_t i = 0; overlay && i < overlay->n; i++) {
    const char *eq = strchr(overlay->w[i].s, '=');
    if (eq && (size_t)(eq - overlay->w[i].s) == n &&
        !strncmp(overlay->w[i].s, name, n))
      return eq + 1;
  }
  for (size_t i = 0; c->env && c->env[i]; i++)
    if (!strncmp(c->env[i], name, n) && c->env[i][n] == '=')
      return c->env[i] + n + 1;
  char buf[128];
  if (n >= sizeof buf) return NULL;
  memcpy(buf, name, n);
  buf[n] = '\0';
  return getenv(buf);
}

static void add_word(words *ws, eng__buf *b, bool unknown) {
  ws->w = eng__xrealloc(ws->w, (ws->n + 1) * sizeof *ws->w);
  ws->w[ws->n].s = eng__buf_steal(b);
  ws->w[ws->n].unknown = unknown;
  ws->n++;
}

static void words_free(words *ws) {
  for (size_t i = 0; i < ws->n; i++) free(ws->w[i].s);
  free(ws->w);
  memset(ws, 0, sizeof *ws);
}

static bool is_name_char(char ch, bool first) {
  return ch == '_' || isalpha((unsigned char)ch) ||
         (!first && isdigit((unsigned char)ch));
}

/* $NAME or ${NAME} at *p: append its value (or mark unknown). Returns the
 * characters consumed. */
static size_t expand(ctx *c, const char *p, eng__buf *b, bool *unknown) {
  const char *name = p + 1;
  size_t n = 0, used;
  if (p[1] == '{') {
    name = p + 2;
    while (name[n] && name[n] != '}') n++;
    if (name[n] != '}') {
      *unknown = true;
      return strlen(p);
    }
    used = n + 3;
    for (size_t i = 0; i < n; i++)
      if (!is_name_char(name[i], i == 0)) { /* ${X:-y} and friends */
        *unknown = true;
        return used;
      }
  } else {
    while (is_name_char(name[n], n == 0)) n++;
    if (n == 0) { /* $1, $?, $$: not known here */
      *unknown = true;
      return p[1] ? 2 : 1;
    }
    used = n + 1;
  }
  const char *v = env_lookup(c, NULL, name, n);
  if (v) eng__buf_adds(b, v);
  else *unknown = true;
  return used;
}

/* Split a line into simple commands (arrays of words). Returns false when
 * quotes do not close. */
static bool lex(ctx *c, const char *s, words **cmds, size_t *n_cmds) {
  words cur = {0};
  eng__buf b = {0};
  bool in_word = false, unknown = false;
  int redirect = 0; /* 1: the next word is a redirection's target */
#define END_WORD()                                                        \
  do {                                                                    \
    if (in_word) {                                                        \
      if (redirect) {                                                     \
        eng__buf_free(&b);                                                \
        redirect = 0;                                                     \
      } else {                                                            \
        add_word(&cur, &b, unknown);                                      \
      }                                                                   \
    }                                                                     \
    in_word = false;                                                      \
    unknown = false;                                                      \
  } while (0)
#define END_CMD()                                                         \
  do {                                                                    \
    END_WORD();                                                           \
    if (cur.n) {                                                          \
      *cmds = eng__xrealloc(*cmds, (*n_cmds + 1) * sizeof **cmds);        \
      (*cmds)[(*n_cmds)++] = cur;                                         \
    } else {                                                              \
      words_free(&cur);                                                   \
    }                                                                     \
    memset(&cur, 0, sizeof cur);                                          \
  } while (0)
  for (const char *p = s; *p;) {
    char ch = *p;
    if (ch == '\\') {
      if (p[1] == '\n') { /* line continuation */
        p += 2;
        continue;
      }
      if (p[1]) eng__buf_add(&b, p + 1, 1);
      in_word = true;
      p += p[1] ? 2 : 1;
      continue;
    }
    if (ch == '\'') {
      const char *e = strchr(p + 1, '\'');
      if (!e) goto bad;
      eng__buf_add(&b, p + 1, (size_t)(e - p - 1));
      if (!b.data) eng__buf_adds(&b, "");
      in_word = true;
      p = e + 1;
      continue;
    }
    if (ch == '"') {
      p++;
      if (!b.data) eng__buf_adds(&b, "");
      while (*p && *p != '"') {
        if (*p == '\\' && p[1] && strchr("$`\"\\\n", p[1])) {
          if (p[1] != '\n') eng__buf_add(&b, p + 1, 1);
          p += 2;
        } else if (*p == '$' && p[1] == '(') {
          unverified(c, "command substitution $(...)");
          unknown = true;
          p += 2;
        } else if (*p == '`') {
          unverified(c, "command substitution `...`");
          unknown = true;
          p++;
        } else if (*p == '$' && p[1] && p[1] != '"') {
          p += expand(c, p, &b, &unknown);
        } else {
          eng__buf_add(&b, p, 1);
          p++;
        }
      }
      if (*p != '"') goto bad;
      in_word = true;
      p++;
      continue;
    }
    if (ch == '$' && p[1] == '(') {
      unverified(c, "command substitution $(...)");
      unknown = in_word = true;
      /* skip to the matching parenthesis */
      int depth = 0;
      for (; *p; p++) {
        if (*p == '(') depth++;
        else if (*p == ')' && --depth == 0) {
          p++;
          break;
        }
      }
      continue;
    }
    if (ch == '`') {
      unverified(c, "command substitution `...`");
      const char *e = strchr(p + 1, '`');
      unknown = in_word = true;
      p = e ? e + 1 : p + strlen(p);
      continue;
    }
    if (ch == '$' && p[1] && !isspace((unsigned char)p[1])) {
      p += expand(c, p, &b, &unknown);
      in_word = true;
      continue;
    }
    if (ch == '#' && !in_word) { /* a comment to the end of the line */
      while (*p && *p != '\n') p++;
      continue;
    }
    if (ch == ' ' || ch == '\t') {
      END_WORD();
      p++;
      continue;
    }
    if (ch == '\n' || ch == ';' || ch == '|' || ch == '&' || ch == '(' ||
        ch == ')') {
      if (ch == '&' && p[1] == '>') { /* &> FILE */
        END_WORD();
        redirect = 1;
        p += p[2] == '>' ? 3 : 2;
        continue;
      }
      END_CMD();
      p++;
      continue;
    }
    if (ch == '<' || ch == '>') {
      /* a redirection: `2>`, `>>`, `<`, `<<EOF`, `<<<` */
      bool fd_digits = in_word && b.data && strspn(b.data, "0123456789") == b.len;
      if (in_word && !fd_digits) END_WORD();
      else if (fd_digits) {
        eng__buf_free(&b);
        in_word = false;
      }
      if (ch == '<' && p[1] == '<') {
        cur.stdin_heredoc = true;
        if (p[2] != '<') { /* here-document: its body is not a command */
          const char *nl = strchr(p, '\n');
          if (nl) {
            /* the terminator is the next word; skip to a line holding it */
            char tag[64] = "";
            const char *t = p + 2;
            while (*t == ' ' || *t == '-' || *t == '\'' || *t == '"') t++;
            size_t tl = strcspn(t, " '\"\n;|&");
            if (tl && tl < sizeof tag) memcpy(tag, t, tl);
            tag[tl < sizeof tag ? tl : 0] = '\0';
            const char *q = nl + 1;
            while (*q) {
              const char *le = strchr(q, '\n');
              size_t ll = le ? (size_t)(le - q) : strlen(q);
              while (ll && (q[0] == '\t')) {
                q++;
                ll--;
              }
              if (*tag && ll == strlen(tag) && !strncmp(q, tag, ll)) {
                q += ll;
                break;
              }
              q = le ? le + 1 : q + ll;
            }
            END_CMD(); /* what follows `<<TAG` on its line is not read */
            p = q;
            continue;
          }
        }
        p += p[2] == '<' ? 3 : 2;
        redirect = 1;
        continue;
      }
      if (ch == '<') cur.stdin_file = true;
      p += (p[1] == '>' || p[1] == '&' || p[1] == '|') ? 2 : 1;
      if (p[-1] == '&') { /* 2>&1: the target is a descriptor */
        while (isdigit((unsigned char)*p) || *p == '-') p++;
        continue;
      }
      redirect = 1;
      continue;
    }
    eng__buf_add(&b, p, 1);
    in_word = true;
    p++;
  }
  END_CMD();
#undef END_WORD
#undef END_CMD
  return true;
bad:
  eng__buf_free(&b);
  words_free(&cur);
  unverified(c, "quotes that do not close");
  return false;
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
       O_VOLUMES, O_MOUNT, O_VOLUME, O_FORCE };

/* Match argv[*i] against opts: the option's id (and *val for its value),
 * O_NONE for another option, -1 for a positional word. */
static int match_opt(const opt *opts, const words *ws, size_t *i,
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

static bool word_at(const char *s, const char *w) {
  size_t n = strlen(w);
  return !strncasecmp(s, w, n) && !isalnum((unsigned char)s[n]) && s[n] != '_';
}

/* Does every statement only read? Also collects databases a statement
 * drops or creates by name, and a \c that switches database. */
static bool sql_reads_only(ctx *c, const char *tool, const char *sql,
                           char **switch_to) {
  static const char *const reads[] = {"select", "show", "explain", "values",
                                      "table", "begin", "commit", "rollback",
                                      "set", "reset", "listen", "fetch",
                                      "declare", "close", "end", NULL};
  static const char *const writes[] = {"insert", "update", "delete", "merge",
                                       "truncate", "drop", "alter", "create",
                                       "copy", "grant", "revoke", "vacuum",
                                       "reindex", "cluster", "lock", "call",
                                       "do", "refresh", "import", NULL};
  bool ro = true;
  const char *p = sql;
  while (*p) {
    while (*p && (isspace((unsigned char)*p) || *p == ';')) p++;
    if (!*p) break;
    if (p[0] == '-' && p[1] == '-') { /* comment */
      while (*p && *p != '\n') p++;
      continue;
    }
    const char *end = p;
    bool q = false;
    while (*end && (q || *end != ';')) { /* to the statement's end */
      if (*end == '\'') q = !q;
      if (!q && *end == '\n' && *p == '\\') break;
      end++;
    }
    char *stmt = eng__xstrndup(p, (size_t)(end - p));
    if (stmt[0] == '\\') { /* a psql meta-command */
      if (!strncmp(stmt, "\\c ", 3) || !strncmp(stmt, "\\connect ", 9)) {
        const char *d = stmt + (stmt[2] == ' ' ? 3 : 9);
        while (*d == ' ') d++;
        free(*switch_to);
        *switch_to = eng__xstrndup(d, strcspn(d, " \n"));
      } else if (!strncmp(stmt, "\\i", 2) || !strncmp(stmt, "\\copy", 5) ||
                 !strncmp(stmt, "\\!", 2)) {
        ro = false;
      }
    } else if (word_at(stmt, "drop") || word_at(stmt, "create")) {
      /* DROP DATABASE [IF EXISTS] name: a target of its own */
      const char *t = stmt + 4 + (word_at(stmt, "create") ? 2 : 0);
      while (isspace((unsigned char)*t)) t++;
      bool drop = word_at(stmt, "drop");
      if (word_at(t, "database")) {
        t += 8;
        while (isspace((unsigned char)*t)) t++;
        if (word_at(t, "if")) {
          t += 2;
          while (isspace((unsigned char)*t)) t++;
          if (word_at(t, drop ? "exists" : "not")) t += drop ? 6 : 3;
          while (isspace((unsigned char)*t)) t++;
          if (!drop && word_at(t, "exists")) t += 6;
          while (isspace((unsigned char)*t)) t++;
        }
        size_t n = 0;
        char *name;
        if (*t == '"') {
          const char *e = strchr(t + 1, '"');
          name = e ? eng__xstrndup(t + 1, (size_t)(e - t - 1)) : NULL;
        } else {
          while (t[n] && !isspace((unsigned char)t[n]) && t[n] != ';' &&
                 t[n] != '(')
            n++;
          name = n ? eng__xstrndup(t, n) : NULL;
          for (char *x = name; x && *x; x++) *x = (char)tolower((unsigned char)*x);
        }
        if (name)
          add_finding(c, tool, ENG_TARGET_DATABASE, name,
                      drop ? ENG_SIDE_DESTRUCTIVE : ENG_SIDE_CREATES,
                      drop ? "DROP DATABASE" : "CREATE DATABASE");
        free(name);
      }
      ro = false;
    } else if (word_at(stmt, "with")) {
      for (size_t k = 0; writes[k]; k++)
        for (const char *x = stmt; (x = strcasestr(x, writes[k])) != NULL; x++)
          if ((x == stmt || !isalnum((unsigned char)x[-1])) &&
              word_at(x, writes[k]))
            ro = false;
    } else {
      bool known = false;
      for (size_t k = 0; reads[k]; k++)
        if (word_at(stmt, reads[k])) known = true;
      if (word_at(stmt, "explain") && strcasestr(stmt, "analyze"))
        for (size_t k = 0; writes[k]; k++)
          if (strcasestr(stmt, writes[k])) known = false;
      if (!known) ro = false;
    }
    free(stmt);
    p = *end ? end + 1 : end;
  }
  return ro;
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
    {NULL, NULL, false, 0}};

static void pg_tool(ctx *c, const words *ws, const words *overlay,
                    const char *tool) {
  const opt *opts = !strcmp(tool, "pg_restore") ? pg_restore_opts
                    : !strcmp(tool, "psql") || !strcmp(tool, "pg_dump") ||
                            !strcmp(tool, "pg_dumpall")
                        ? pg_conn_opts
                        : pg_maint_opts;
  char *db = NULL;
  bool db_unknown = false, clean = false, create = false, list = false,
       all = false, file = false, any_cmd = false;
  eng__buf sql = {0};
  size_t positional = 0;
  char *first_pos = NULL;
  for (size_t i = 1; i < ws->n; i++) {
    const char *v;
    bool vu;
    int id = match_opt(opts, ws, &i, &v, &vu);
    if (id == -1) {
      if (positional++ == 0) {
        first_pos = eng__xstrdup(ws->w[i].s);
        if (ws->w[i].unknown) db_unknown = true;
      }
      continue;
    }
    switch (id) {
    case O_DB:
      free(db);
      db = v ? dbname_of(v) : NULL;
      db_unknown = vu || !v;
      break;
    case O_CMD:
      any_cmd = true;
      if (v) eng__buf_addf(&sql, "%s;\n", v);
      if (vu) file = true; /* SQL not known here: counted as a write */
      break;
    case O_FILE: file = true; break;
    case O_CLEAN: clean = true; break;
    case O_CREATE: create = true; break;
    case O_LIST: list = true; break;
    case O_ALL: all = true; break;
    default: break;
    }
  }
  /* psql/pg_dump: the first positional is the database (or a conninfo);
   * pg_restore: the archive; dropdb/createdb/...: the database */
  bool restore = !strcmp(tool, "pg_restore");
  if (!db && first_pos && !restore) db = dbname_of(first_pos);
  if (!db && !db_unknown) {
    const char *e = env_lookup(c, overlay, "PGDATABASE", 10);
    if (e && *e) db = eng__xstrdup(e);
  }
  if (!db && !restore && (db_unknown || strchr(first_pos ? first_pos : "", '$')))
    unverified(c, "the database of a PostgreSQL client is not known here");
  eng_side_effect side;
  const char *what;
  char whatbuf[160];
  if (!strcmp(tool, "pg_dump") || !strcmp(tool, "pg_dumpall")) {
    side = ENG_SIDE_READ_ONLY;
    what = "dump (reads)";
  } else if (!strcmp(tool, "dropdb")) {
    side = ENG_SIDE_DESTRUCTIVE;
    what = "dropdb";
  } else if (!strcmp(tool, "createdb")) {
    side = ENG_SIDE_CREATES;
    what = "createdb";
  } else if (restore) {
    if (!db) { /* no -d: it prints SQL, it restores nothing */
      free(first_pos);
      eng__buf_free(&sql);
      return;
    }
    side = clean || create ? ENG_SIDE_DESTRUCTIVE : ENG_SIDE_CREATES;
    what = clean && create ? "pg_restore --clean --create"
           : clean ? "pg_restore --clean"
           : create ? "pg_restore --create" : "pg_restore into it";
  } else if (!strcmp(tool, "psql")) {
    char *sw = NULL;
    bool ro = !file && any_cmd &&
              sql_reads_only(c, tool, sql.data ? sql.data : "", &sw);
    if (list && !any_cmd && !file) ro = true;
    if (sw) {
      free(db);
      db = sw;
    }
    side = ro ? ENG_SIDE_READ_ONLY : ENG_SIDE_DESTRUCTIVE;
    if (ro) what = "read-only SQL";
    else if (file) what = "SQL from a file (content not known: counted as destructive)";
    else if (!any_cmd) what = "SQL from stdin (content not known: counted as destructive)";
    else {
      snprintf(whatbuf, sizeof whatbuf, "SQL that writes: %.100s", sql.data ? sql.data : "");
      for (char *x = whatbuf; *x; x++)
        if (*x == '\n') *x = ' ';
      size_t wl = strlen(whatbuf); /* the separators added above */
      while (wl && (whatbuf[wl - 1] == ' ' || whatbuf[wl - 1] == ';')) whatbuf[--wl] = '\0';
      what = whatbuf;
    }
  } else { /* vacuumdb, reindexdb, clusterdb */
    side = ENG_SIDE_DISRUPTIVE;
    what = tool;
    if (all) {
      free(db);
      db = eng__xstrdup("*");
    }
  }
  add_finding(c, tool, ENG_TARGET_DATABASE, db, side, what);
  free(db);
  free(first_pos);
  eng__buf_free(&sql);
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
      if (!strncmp(kv, "source=", 7) || !strncmp(kv, "src=", 4))
        name = eng__xstrdup(strchr(kv, '=') + 1);
      else if (!strcmp(kv, "readonly") || !strcmp(kv, "ro") ||
               !strcmp(kv, "readonly=true") || !strcmp(kv, "ro=true"))
        ro = true;
      else if (!strcmp(kv, "type=bind") || !strcmp(kv, "type=tmpfs"))
        bind = true;
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

static void docker_tool(ctx *c, const words *ws, size_t at, const char *prog) {
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
    words rest = {ws->w + from - 1, ws->n - from + 1, false, false};
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
    words rest = {ws->w + from - 1, ws->n - from + 1, false, false};
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

static void path_tool(ctx *c, const words *ws, const char *tool,
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

/* ---- one simple command ----------------------------------------------------------- */

static void analyse_line(ctx *c, const char *line);

static bool is_assignment(const char *s) {
  if (!is_name_char(*s, true)) return false;
  const char *p = s;
  while (is_name_char(*p, p == s)) p++;
  return *p == '=';
}

static void analyse_words(ctx *c, words *ws, const char *cwd) {
  words overlay = {0};
  size_t i = 0;
  for (;;) {
    while (i < ws->n && is_assignment(ws->w[i].s)) { /* VAR=x cmd */
      overlay.w = eng__xrealloc(overlay.w, (overlay.n + 1) * sizeof *overlay.w);
      overlay.w[overlay.n].s = ws->w[i].s;
      overlay.w[overlay.n++].unknown = ws->w[i].unknown;
      i++;
    }
    if (i >= ws->n) break;
    const char *prog = base(ws->w[i].s);
    if (ws->w[i].unknown) {
      unverified(c, "the program to run is not known here");
      break;
    }
    if (!strcmp(prog, "sudo") || !strcmp(prog, "doas")) {
      i++;
      while (i < ws->n && ws->w[i].s[0] == '-') {
        const char *o = ws->w[i].s;
        bool val = !strcmp(o, "-u") || !strcmp(o, "-g") || !strcmp(o, "-C") ||
                   !strcmp(o, "-D") || !strcmp(o, "-h") || !strcmp(o, "-p") ||
                   !strcmp(o, "-r") || !strcmp(o, "-t") || !strcmp(o, "-U");
        i += val ? 2 : 1;
      }
      continue;
    }
    if (!strcmp(prog, "env")) {
      i++;
      while (i < ws->n && ws->w[i].s[0] == '-') i += !strcmp(ws->w[i].s, "-u") ? 2 : 1;
      continue;
    }
    if (!strcmp(prog, "exec") || !strcmp(prog, "time") || !strcmp(prog, "nohup") ||
        !strcmp(prog, "command") || !strcmp(prog, "builtin") || !strcmp(prog, "stdbuf") ||
        !strcmp(prog, "setsid") || !strcmp(prog, "chronic")) {
      i++;
      while (i < ws->n && ws->w[i].s[0] == '-') i++;
      continue;
    }
    if (!strcmp(prog, "nice") || !strcmp(prog, "ionice")) {
      i++;
      while (i < ws->n && ws->w[i].s[0] == '-')
        i += (!strcmp(ws->w[i].s, "-n") || !strcmp(ws->w[i].s, "-c")) ? 2 : 1;
      continue;
    }
    if (!strcmp(prog, "timeout")) {
      i++;
      while (i < ws->n && ws->w[i].s[0] == '-')
        i += (!strcmp(ws->w[i].s, "-s") || !strcmp(ws->w[i].s, "-k")) ? 2 : 1;
      i++; /* the duration */
      continue;
    }
    if (!strcmp(prog, "npx") || !strcmp(prog, "bunx")) {
      i++;
      while (i < ws->n && ws->w[i].s[0] == '-')
        i += (!strcmp(ws->w[i].s, "-p") || !strcmp(ws->w[i].s, "--package")) ? 2 : 1;
      continue;
    }
    if ((!strcmp(prog, "pnpm") || !strcmp(prog, "yarn") || !strcmp(prog, "npm")) &&
        i + 1 < ws->n &&
        (!strcmp(ws->w[i + 1].s, "exec") || !strcmp(ws->w[i + 1].s, "dlx") ||
         !strcmp(ws->w[i + 1].s, "x"))) {
      i += 2;
      while (i < ws->n && ws->w[i].s[0] == '-') i++;
      continue;
    }
    bool dk = !strcmp(prog, "docker") || !strcmp(prog, "podman");
    bool compose = (dk && i + 1 < ws->n && !strcmp(ws->w[i + 1].s, "compose")) ||
                   !strcmp(prog, "docker-compose") || !strcmp(prog, "podman-compose");
    if (compose) {
      size_t k = i + (!strcmp(prog, "docker-compose") || !strcmp(prog, "podman-compose") ? 1 : 2);
      while (k < ws->n && ws->w[k].s[0] == '-') /* -f FILE, -p NAME */
        k += (!strcmp(ws->w[k].s, "-f") || !strcmp(ws->w[k].s, "-p") ||
              !strcmp(ws->w[k].s, "--file") || !strcmp(ws->w[k].s, "--project-name") ||
              !strcmp(ws->w[k].s, "--env-file") || !strcmp(ws->w[k].s, "--profile")) ? 2 : 1;
      if (k < ws->n && (!strcmp(ws->w[k].s, "exec") || !strcmp(ws->w[k].s, "run"))) {
        k++;
        while (k < ws->n && ws->w[k].s[0] == '-')
          k += (!strcmp(ws->w[k].s, "-u") || !strcmp(ws->w[k].s, "-w") ||
                !strcmp(ws->w[k].s, "-e") || !strcmp(ws->w[k].s, "--user") ||
                !strcmp(ws->w[k].s, "--workdir") || !strcmp(ws->w[k].s, "--env") ||
                !strcmp(ws->w[k].s, "--index") || !strcmp(ws->w[k].s, "-v") ||
                !strcmp(ws->w[k].s, "--volume") || !strcmp(ws->w[k].s, "--entrypoint")) ? 2 : 1;
        i = k + 1; /* after SERVICE: the command inside it */
        continue;
      }
      break; /* compose down -v: the built-in forbidden rules */
    }
    if (dk && i + 1 < ws->n && !strcmp(ws->w[i + 1].s, "exec")) {
      size_t k = i + 2;
      while (k < ws->n && ws->w[k].s[0] == '-')
        k += (!strcmp(ws->w[k].s, "-u") || !strcmp(ws->w[k].s, "-w") ||
              !strcmp(ws->w[k].s, "-e") || !strcmp(ws->w[k].s, "--user") ||
              !strcmp(ws->w[k].s, "--workdir") || !strcmp(ws->w[k].s, "--env") ||
              !strcmp(ws->w[k].s, "--env-file") || !strcmp(ws->w[k].s, "--detach-keys")) ? 2 : 1;
      i = k + 1; /* after CONTAINER */
      continue;
    }
    if (!strcmp(prog, "kubectl") && i + 1 < ws->n && !strcmp(ws->w[i + 1].s, "exec")) {
      size_t k = i + 2;
      while (k < ws->n && strcmp(ws->w[k].s, "--")) k++;
      i = k + 1;
      continue;
    }
    if (!strcmp(prog, "sh") || !strcmp(prog, "bash") || !strcmp(prog, "dash") ||
        !strcmp(prog, "zsh") || !strcmp(prog, "ash") || !strcmp(prog, "ksh")) {
      size_t k = i + 1;
      bool dash_c = false;
      while (k < ws->n && ws->w[k].s[0] == '-') {
        if (ws->w[k].s[1] != '-' && strchr(ws->w[k].s, 'c')) dash_c = true;
        k++;
        if (dash_c) break;
      }
      if (dash_c && k < ws->n) {
        if (ws->w[k].unknown) unverified(c, "the body of sh -c is not known here");
        if (c->depth < 8) {
          c->depth++;
          analyse_line(c, ws->w[k].s);
          c->depth--;
        }
      } else if (k < ws->n) {
        unverified(c, "a shell script runs (its content is not checked)");
      }
      break;
    }
    if (!strcmp(prog, "eval") || !strcmp(prog, "source") || !strcmp(prog, ".") ||
        !strcmp(prog, "xargs")) {
      unverified(c, "eval, source or xargs: what runs is not known here");
      break;
    }
    /* the tool itself (asking it for help or its version does nothing) */
    for (size_t k = i + 1; k < ws->n; k++)
      if (!strcmp(ws->w[k].s, "--help") || !strcmp(ws->w[k].s, "--version") ||
          !strcmp(ws->w[k].s, "-?"))
        goto done;
    if (!strcmp(prog, "psql") || !strcmp(prog, "pg_restore") ||
        !strcmp(prog, "pg_dump") || !strcmp(prog, "pg_dumpall") ||
        !strcmp(prog, "dropdb") || !strcmp(prog, "createdb") ||
        !strcmp(prog, "vacuumdb") || !strcmp(prog, "reindexdb") ||
        !strcmp(prog, "clusterdb")) {
      words sub = {ws->w + i, ws->n - i, ws->stdin_heredoc, ws->stdin_file};
      pg_tool(c, &sub, &overlay, prog);
    } else if (dk) {
      docker_tool(c, ws, i + 1, prog);
    } else if (!strcmp(prog, "rm") || !strcmp(prog, "mv") ||
               !strcmp(prog, "chown") || !strcmp(prog, "chmod") ||
               !strcmp(prog, "chgrp") || !strcmp(prog, "shred")) {
      words sub = {ws->w + i, ws->n - i, false, false};
      path_tool(c, &sub, prog, cwd);
    }
    break;
  }
done:
  free(overlay.w);
}

static void analyse_line(ctx *c, const char *line) {
  words *cmds = NULL;
  size_t n = 0;
  char cwd[4096];
  if (!getcwd(cwd, sizeof cwd)) snprintf(cwd, sizeof cwd, ".");
  const char *step_cwd = NULL;
  for (size_t i = 0; c->env && c->env[i]; i++)
    if (!strncmp(c->env[i], "ENGINE_CWD=", 11)) step_cwd = c->env[i] + 11;
  lex(c, line, &cmds, &n);
  for (size_t i = 0; i < n; i++) {
    /* `cd DIR` changes where relative paths point */
    if (cmds[i].n >= 2 && !strcmp(cmds[i].w[0].s, "cd")) {
      if (cmds[i].w[1].unknown) unverified(c, "cd to a directory not known here");
      else if (cmds[i].w[1].s[0] == '/') snprintf(cwd, sizeof cwd, "%s", cmds[i].w[1].s);
      else {
        char *t = eng__asprintf("%s/%s", step_cwd ? step_cwd : cwd, cmds[i].w[1].s);
        size_t tl = strlen(t) < sizeof cwd - 1 ? strlen(t) : sizeof cwd - 1;
        memcpy(cwd, t, tl);
        cwd[tl] = '\0';
        free(t);
      }
      step_cwd = NULL;
    } else {
      analyse_words(c, &cmds[i], step_cwd ? step_cwd : cwd);
    }
    words_free(&cmds[i]);
  }
  free(cmds);
}

int eng__cmd_analyse(const char *line, const char *const *env,
                     eng__cmd_analysis *out) {
  memset(out, 0, sizeof *out);
  ctx c = {out, env, 0};
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
  free(a->unverified);
  memset(a, 0, sizeof *a);
}
