/*
 * pg_url.c - connection strings.
 *
 * Everything goes through libpq's own parser (PQconninfoParse), which
 * accepts postgresql:// and postgres:// URLs as well as key=value strings,
 * so the plugin understands exactly what libpq and the client programs
 * understand. Derived URLs are rebuilt from the parsed options with
 * percent-encoding; client programs get -h/-p/-U/-d and the password only
 * through PGPASSWORD in their environment, never on argv.
 */
#include "pg_int.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *pg_url_param(const json_t *params, const char *name) {
  const char *u = pg_pstr(params, name);
  if (u && *u) return u;
  u = getenv("DATABASE_URL");
  return u ? u : "";
}

PQconninfoOption *pg_ci_parse(const char *conninfo, char **err) {
  char *e = NULL;
  PQconninfoOption *o = PQconninfoParse(conninfo ? conninfo : "", &e);
  if (!o) {
    if (err) {
      /* libpq's message quotes the offending part only: no password. */
      *err = eng_xstrdup(e ? pg_chomp(e) : "out of memory");
    }
    if (e) PQfreemem(e);
    return NULL;
  }
  if (e) PQfreemem(e);
  if (err) *err = NULL;
  return o;
}

const char *pg_ci_get(const PQconninfoOption *o, const char *kw) {
  for (; o && o->keyword; o++)
    if (!strcmp(o->keyword, kw)) return o->val && *o->val ? o->val : NULL;
  return NULL;
}

int pg_ci_ports_ok(const PQconninfoOption *o) {
  const char *p = pg_ci_get(o, "port");
  for (long v = 0; p && *p; p++) { /* "5432", "5432,5433", ",," */
    if (*p == ',') v = 0;
    else if (!isdigit((unsigned char)*p) || (v = v * 10 + (*p - '0')) > 65535)
      return 0;
  }
  return 1;
}

int pg_ci_check(eng_call *call, const char *conninfo, const char *param) {
  char *err = NULL;
  PQconninfoOption *o = pg_ci_parse(conninfo, &err);
  if (o && !pg_ci_ports_ok(o)) {
    pg_host->fail(call,
                  "parameter '%s': the port is not a number from 0 to 65535 "
                  "(or a comma-separated list of them, one per host)",
                  param);
    PQconninfoFree(o);
    return ENG_ERR_INVALID;
  }
  if (!o) {
    pg_host->fail(call,
                  "parameter '%s' is not a valid PostgreSQL connection string "
                  "(%s); use postgresql://USER:PASSWORD@HOST:PORT/DBNAME or "
                  "'host=... dbname=...'",
                  param, err ? err : "?");
    free(err);
    return ENG_ERR_INVALID;
  }
  const char *pw = pg_ci_get(o, "password");
  if (pw) pg_host->secret(call, pw);
  PQconninfoFree(o);
  return ENG_OK;
}

char *pg_url_conn(eng_call *call, const json_t *params, const char *url_name,
                  const char *db_name, int *rc) {
  const char *url = pg_url_param(params, url_name);
  *rc = pg_ci_check(call, url, url_name);
  if (*rc != ENG_OK) return NULL;
  const char *db = db_name ? pg_pstr(params, db_name) : NULL;
  if (!db || !*db) return eng_xstrdup(url);
  char *u = pg_url_with_db(url, db);
  if (!u) {
    pg_host->fail(call, "parameter '%s': cannot connect to database %s with "
                        "parameter '%s'", url_name, db, db_name);
    *rc = ENG_ERR_INVALID;
  }
  return u;
}

/* ---- URL building ------------------------------------------------------- */

static void pg_pct(eng_strbuf *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
      eng_strbuf_add(b, (const char *)p, 1);
    } else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      eng_strbuf_add(b, e, 3);
    }
  }
}

/* An IPv6 literal, written in brackets as it is: hex digits, ':' and '.'
 * only. Any other host with a ':' (or a ']') would change the URL's shape
 * and goes to the query string instead. */
static int pg_ipv6_literal(const char *h) {
  if (!strchr(h, ':')) return 0;
  for (const char *p = h; *p; p++)
    if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.') return 0;
  return 1;
}

/* The i-th element of a comma-separated list, or NULL. */
static char *pg_list_item(const char *list, int i) {
  if (!list) return NULL;
  const char *p = list;
  for (int k = 0; k < i; k++) {
    p = strchr(p, ',');
    if (!p) return NULL;
    p++;
  }
  const char *e = strchr(p, ',');
  size_t n = e ? (size_t)(e - p) : strlen(p);
  char *r = eng_xmalloc(n + 1);
  memcpy(r, p, n);
  r[n] = '\0';
  return r;
}

static int pg_list_len(const char *list) {
  if (!list) return 0;
  int n = 1;
  for (const char *p = list; *p; p++)
    if (*p == ',') n++;
  return n;
}

char *pg_ci_url(const PQconninfoOption *o, const char *dbname) {
  eng_strbuf b = {0};
  eng_strbuf q = {0};
  const char *user = pg_ci_get(o, "user");
  const char *pw = pg_ci_get(o, "password");
  const char *host = pg_ci_get(o, "host");
  const char *port = pg_ci_get(o, "port");
  const char *db = dbname ? dbname : pg_ci_get(o, "dbname");
  eng_strbuf_adds(&b, "postgresql://");
  if (user) {
    pg_pct(&b, user);
    if (pw) {
      eng_strbuf_adds(&b, ":");
      pg_pct(&b, pw);
    }
    eng_strbuf_adds(&b, "@");
  }
  /* Hosts that are socket directories, and lists whose ports do not pair
   * up, go to the query string where any value is allowed. */
  int nh = pg_list_len(host), np = pg_list_len(port);
  int in_query = 0;
  for (int i = 0; i < nh && !in_query; i++) {
    char *h = pg_list_item(host, i);
    if (!*h || h[0] == '/' || h[0] == '@' ||
        (strchr(h, ':') && !pg_ipv6_literal(h)))
      in_query = 1;
    free(h);
  }
  if (np > 1 && np != nh) in_query = 1;
  if (!host && port) in_query = 1;
  if (host && !in_query) {
    for (int i = 0; i < nh; i++) {
      char *h = pg_list_item(host, i);
      char *p =
          np > 1 ? pg_list_item(port, i) : (port ? eng_xstrdup(port) : NULL);
      if (i) eng_strbuf_adds(&b, ",");
      if (pg_ipv6_literal(h)) {
        eng_strbuf_adds(&b, "[");
        eng_strbuf_adds(&b, h);
        eng_strbuf_adds(&b, "]");
      } else {
        pg_pct(&b, h);
      }
      if (p && *p) {
        eng_strbuf_adds(&b, ":");
        pg_pct(&b, p);
      }
      free(h);
      free(p);
    }
  } else if (in_query) {
    if (host) {
      eng_strbuf_adds(&q, "host=");
      pg_pct(&q, host);
    }
    if (port) {
      eng_strbuf_adds(&q, q.len ? "&port=" : "port=");
      pg_pct(&q, port);
    }
  }
  eng_strbuf_adds(&b, "/");
  if (db) pg_pct(&b, db);
  static const char *const skip[] = {"user", "password", "host",
                                     "port", "dbname",   NULL};
  for (const PQconninfoOption *p = o; p && p->keyword; p++) {
    int skipped = 0;
    for (int i = 0; skip[i]; i++)
      if (!strcmp(p->keyword, skip[i])) skipped = 1;
    if (skipped || !p->val || !*p->val) continue;
    if (q.len) eng_strbuf_adds(&q, "&");
    pg_pct(&q, p->keyword);
    eng_strbuf_adds(&q, "=");
    pg_pct(&q, p->val);
  }
  if (pw && !user) { /* no user part to carry it: the query string does */
    if (q.len) eng_strbuf_adds(&q, "&");
    eng_strbuf_adds(&q, "password=");
    pg_pct(&q, pw);
  }
  if (q.len) {
    eng_strbuf_adds(&b, "?");
    eng_strbuf_adds(&b, q.data);
  }
  eng_strbuf_free(&q);
  return b.data;
}

char *pg_url_with_db(const char *conninfo, const char *dbname) {
  PQconninfoOption *o = pg_ci_parse(conninfo, NULL);
  if (!o) return NULL;
  char *u = pg_ci_url(o, dbname);
  PQconninfoFree(o);
  return u;
}

char *pg_ci_display(const PQconninfoOption *o) {
  const char *user = pg_ci_get(o, "user");
  const char *host = pg_ci_get(o, "host");
  const char *port = pg_ci_get(o, "port");
  const char *db = pg_ci_get(o, "dbname");
  if (!user) user = getenv("PGUSER");
  if (!host) host = getenv("PGHOST");
  if (!port) port = getenv("PGPORT");
  if (!db) db = getenv("PGDATABASE");
  return eng_asprintf("%s%s%s:%s/%s", user ? user : "", user ? "@" : "",
                      host ? host : "localhost", port ? port : "5432",
                      db ? db : (user ? user : ""));
}

char *pg_url_display(const char *conninfo) {
  PQconninfoOption *o = pg_ci_parse(conninfo, NULL);
  if (!o) return eng_xstrdup("(invalid connection string)");
  char *d = pg_ci_display(o);
  PQconninfoFree(o);
  return d;
}

char *pg_url_dbname(const char *conninfo) {
  PQconninfoOption *o = pg_ci_parse(conninfo, NULL);
  if (!o) return NULL;
  const char *db = pg_ci_get(o, "dbname");
  char *r = eng_xstrdup(db ? db : getenv("PGDATABASE"));
  if (!r) {
    const char *u = pg_ci_get(o, "user");
    r = eng_xstrdup(u ? u : getenv("PGUSER"));
  }
  PQconninfoFree(o);
  return r;
}

/* ---- argv env for client programs --------------------------------------- */

void pg_argv_add(pg_argv *a, const char *s) {
  if (a->n + 2 > a->cap) {
    a->cap = a->cap ? a->cap * 2 : 16;
    a->v = eng_xrealloc(a->v, a->cap * sizeof *a->v);
  }
  a->v[a->n++] = eng_xstrdup(s);
  a->v[a->n] = NULL;
}

void pg_argv_addf(pg_argv *a, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = eng_xmalloc(n > 0 ? (size_t)n + 1 : 1);
  vsnprintf(s, n > 0 ? (size_t)n + 1 : 1, fmt, ap2);
  va_end(ap2);
  pg_argv_add(a, s);
  free(s);
}

void pg_argv_free(pg_argv *a) {
  for (size_t i = 0; i < a->n; i++) free(a->v[i]);
  free(a->v);
  a->v = NULL;
  a->n = a->cap = 0;
}

char *pg_ci_quote(const char *v) {
  eng_strbuf b = {0};
  eng_strbuf_adds(&b, "'");
  for (const char *p = v; *p; p++) {
    if (*p == '\'' || *p == '\\') eng_strbuf_adds(&b, "\\");
    eng_strbuf_add(&b, p, 1);
  }
  eng_strbuf_adds(&b, "'");
  return b.data;
}

int pg_ci_client_args(eng_call *call, const char *conninfo, const char *dbname,
                      const char *dbflag, pg_argv *argv, pg_argv *env,
                      char **err) {
  PQconninfoOption *o = pg_ci_parse(conninfo, err);
  if (!o) return ENG_ERR_INVALID;
  /* Defaults for the envvar column: the parsed array has it too. */
  const char *host = pg_ci_get(o, "host");
  const char *port = pg_ci_get(o, "port");
  const char *user = pg_ci_get(o, "user");
  const char *pw = pg_ci_get(o, "password");
  const char *db = dbname ? dbname : pg_ci_get(o, "dbname");
  if (host) {
    pg_argv_add(argv, "-h");
    pg_argv_add(argv, host);
  }
  if (port) {
    pg_argv_add(argv, "-p");
    pg_argv_add(argv, port);
  }
  if (user) {
    pg_argv_add(argv, "-U");
    pg_argv_add(argv, user);
  }
  if (db) {
    pg_argv_add(argv, dbflag ? dbflag : "-d");
    if (dbflag && !strcmp(dbflag, "-l")) {
      pg_argv_add(argv, db);
    } else {
      /* As a conninfo string, so a name with '=' or a URI prefix stays a
       * name. */
      char *q = pg_ci_quote(db);
      pg_argv_addf(argv, "dbname=%s", q);
      free(q);
    }
  }
  if (pw) {
    pg_host->secret(call, pw);
    pg_argv_addf(env, "PGPASSWORD=%s", pw);
  }
  static const char *const done[] = {"host",     "port",   "user",
                                     "password", "dbname", NULL};
  for (PQconninfoOption *p = o; p->keyword; p++) {
    int skip = 0;
    for (int i = 0; done[i]; i++)
      if (!strcmp(p->keyword, done[i])) skip = 1;
    if (skip || !p->val || !*p->val || !p->envvar) continue;
    pg_argv_addf(env, "%s=%s", p->envvar, p->val);
  }
  PQconninfoFree(o);
  return ENG_OK;
}
