/*
 * prisma_files.c - the migrations folder, Prisma-style URLs, and the
 * comparison of the folder with the rows of _prisma_migrations.
 *
 * Folder rules (Prisma's schema engine): every sub-folder holding a
 * migration.sql is a migration, named by the folder; migrations apply in
 * byte order of the names; migration_lock.toml names the provider the
 * migrations were written for.
 */
#include "prisma_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define PRISMA_MAX_SQL (256u * 1024u * 1024u)

/* ---- files (worker side: no host calls) ---------------------------------- */

static void prisma_hex(const unsigned char *md, char out[65]) {
  static const char hx[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = hx[md[i] >> 4];
    out[2 * i + 1] = hx[md[i] & 15];
  }
  out[64] = '\0';
}

static void prisma_sha256(const char *buf, size_t len, char out[65]) {
  unsigned char md[32];
  unsigned int mdlen = 0;
  if (!EVP_Digest(buf, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
    out[0] = '\0';
    return;
  }
  prisma_hex(md, out);
}

/* CRLF -> LF (to_crlf 0) or lone LF -> CRLF (to_crlf 1). malloc'd. */
static char *prisma_eol(const char *s, size_t len, int to_crlf, size_t *out) {
  char *d = eng_xmalloc(len * 2 + 1);
  size_t j = 0;
  for (size_t i = 0; i < len; i++) {
    if (!to_crlf && s[i] == '\r' && i + 1 < len && s[i + 1] == '\n')
      continue;
    if (to_crlf && s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
      d[j++] = '\r';
    d[j++] = s[i];
  }
  d[j] = '\0';
  *out = j;
  return d;
}

static int prisma_read_file(const char *path, char **data, size_t *len,
                            int *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    *err = errno;
    return -1;
  }
  eng_strbuf b = {0};
  char chunk[65536];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
    eng_strbuf_add(&b, chunk, n);
    if (b.len > PRISMA_MAX_SQL) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad || b.len > PRISMA_MAX_SQL) {
    *err = bad ? EIO : EFBIG;
    eng_strbuf_free(&b);
    return -1;
  }
  if (!b.data) eng_strbuf_add(&b, "", 0);
  *data = b.data;
  *len = b.len;
  return 0;
}

static int prisma_name_cmp(const void *a, const void *b) {
  const prisma_mig *x = a, *y = b;
  return strcmp(x->name, y->name); /* byte order, like Rust's str Ord */
}

/* provider = "postgresql" in migration_lock.toml; NULL when not found. */
static char *prisma_lock_provider(const char *text) {
  const char *p = text;
  while (p && *p) {
    const char *eol = strchr(p, '\n');
    size_t n = eol ? (size_t)(eol - p) : strlen(p);
    const char *q = p;
    while (q < p + n && (*q == ' ' || *q == '\t')) q++;
    if ((size_t)(p + n - q) > 8 && !strncmp(q, "provider", 8)) {
      q += 8;
      while (q < p + n && (*q == ' ' || *q == '\t')) q++;
      if (q < p + n && *q == '=') {
        q++;
        while (q < p + n && (*q == ' ' || *q == '\t')) q++;
        if (q < p + n && (*q == '"' || *q == '\'')) {
          char quote = *q++;
          const char *e = q;
          while (e < p + n && *e != quote) e++;
          char *v = eng_xmalloc((size_t)(e - q) + 1);
          memcpy(v, q, (size_t)(e - q));
          v[e - q] = '\0';
          return v;
        }
      }
    }
    p = eol ? eol + 1 : NULL;
  }
  return NULL;
}

static void prisma_dir_fail(prisma_dir *d, int rc, char *msg) {
  d->rc = rc;
  free(d->err);
  d->err = msg;
}

void prisma_dir_read(void *ud) {
  prisma_dir *d = ud;
  d->rc = ENG_OK;
  DIR *dir = opendir(d->path);
  if (!dir) {
    int e = errno;
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) snprintf(cwd, sizeof cwd, "?");
    prisma_dir_fail(
        d, e == ENOENT ? ENG_ERR_NOTFOUND : ENG_ERR_IO,
        eng_asprintf("cannot open the migrations folder '%s' (relative to "
                     "%s): %s; set `migrations:` to the project's "
                     "prisma/migrations",
                     d->path, cwd, strerror(e)));
    return;
  }
  size_t cap = 0;
  struct dirent *de;
  while ((de = readdir(dir)) != NULL) {
    if (de->d_name[0] == '.') continue;
    char *sub = eng_asprintf("%s/%s", d->path, de->d_name);
    struct stat st;
    int isdir = stat(sub, &st) == 0 && S_ISDIR(st.st_mode);
    if (!isdir) {
      if (!strcmp(de->d_name, "migration_lock.toml")) {
        char *text = NULL;
        size_t len = 0;
        int e = 0;
        if (prisma_read_file(sub, &text, &len, &e) == 0) {
          d->provider = prisma_lock_provider(text);
          if (!d->provider) d->provider = eng_xstrdup("");
          free(text);
        }
      }
      free(sub);
      continue;
    }
    char *file = eng_asprintf("%s/migration.sql", sub);
    free(sub);
    char *data = NULL;
    size_t len = 0;
    int e = 0;
    if (prisma_read_file(file, &data, &len, &e) != 0) {
      if (e == ENOENT) {
        d->skipped =
            eng_xrealloc(d->skipped, (d->nskipped + 1) * sizeof *d->skipped);
        d->skipped[d->nskipped++] = eng_xstrdup(de->d_name);
        free(file);
        continue;
      }
      prisma_dir_fail(d, ENG_ERR_IO,
                      eng_asprintf("cannot read %s: %s", file, strerror(e)));
      free(file);
      break;
    }
    if (memchr(data, '\0', len)) {
      prisma_dir_fail(
          d, ENG_ERR_INVALID,
          eng_asprintf("%s contains a NUL byte: not SQL text", file));
      free(data);
      free(file);
      break;
    }
    free(file);
    if (d->n == cap) {
      cap = cap ? cap * 2 : 16;
      d->migs = eng_xrealloc(d->migs, cap * sizeof *d->migs);
    }
    prisma_mig *m = &d->migs[d->n++];
    memset(m, 0, sizeof *m);
    m->name = eng_xstrdup(de->d_name);
    m->sql = data;
    m->len = len;
    prisma_sha256(data, len, m->sha[0]);
    size_t n2;
    char *lf = prisma_eol(data, len, 0, &n2);
    prisma_sha256(lf, n2, m->sha[1]);
    free(lf);
    char *crlf = prisma_eol(data, len, 1, &n2);
    prisma_sha256(crlf, n2, m->sha[2]);
    free(crlf);
  }
  closedir(dir);
  if (d->n > 1) qsort(d->migs, d->n, sizeof *d->migs, prisma_name_cmp);
  if (d->rc == ENG_OK && d->provider && strcmp(d->provider, "postgresql") &&
      strcmp(d->provider, "postgres"))
    prisma_dir_fail(
        d, ENG_ERR_INVALID,
        eng_asprintf("%s/migration_lock.toml says provider = \"%s\": these "
                     "migrations were written for another database, not "
                     "PostgreSQL (Prisma stops here too, P3019); point "
                     "`migrations` at the PostgreSQL project's folder",
                     d->path, d->provider));
}

void prisma_dir_free(prisma_dir *d) {
  for (size_t i = 0; i < d->n; i++) {
    free(d->migs[i].name);
    free(d->migs[i].sql);
  }
  free(d->migs);
  for (size_t i = 0; i < d->nskipped; i++) free(d->skipped[i]);
  free(d->skipped);
  free(d->provider);
  free(d->err);
  free(d->path);
  memset(d, 0, sizeof *d);
}

int prisma_mig_matches(const prisma_mig *m, const char *checksum) {
  if (!checksum) return 0;
  for (int i = 0; i < 3; i++)
    if (m->sha[i][0] && !strcasecmp(m->sha[i], checksum)) return 1;
  return 0;
}

void prisma_dir_warn(eng_call *call, const prisma_dir *d) {
  for (size_t i = 0; i < d->nskipped; i++)
    pg_host->log(call, ENG_LOG_WARN,
                 "%s/%s has no migration.sql: not a migration, ignored",
                 d->path, d->skipped[i]);
  if (!d->provider)
    pg_host->log(call, ENG_LOG_DEBUG,
                 "%s has no migration_lock.toml: provider not checked",
                 d->path);
}

/* ---- URLs ---------------------------------------------------------------- */

static int prisma_hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static char *prisma_pct_decode(const char *s, size_t n) {
  char *d = eng_xmalloc(n + 1);
  size_t j = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%' && i + 2 < n && prisma_hexval(s[i + 1]) >= 0 &&
        prisma_hexval(s[i + 2]) >= 0) {
      d[j++] = (char)(prisma_hexval(s[i + 1]) * 16 + prisma_hexval(s[i + 2]));
      i += 2;
    } else if (s[i] == '+') {
      d[j++] = ' ';
    } else {
      d[j++] = s[i];
    }
  }
  d[j] = '\0';
  return d;
}

static int prisma_libpq_knows(const PQconninfoOption *defs, const char *kw,
                              size_t n) {
  for (const PQconninfoOption *o = defs; o && o->keyword; o++)
    if (strlen(o->keyword) == n && !strncmp(o->keyword, kw, n)) return 1;
  return 0;
}

int prisma_url_prepare(eng_call *call, const char *url, char **libpq_url,
                       char **schema) {
  *libpq_url = NULL;
  *schema = NULL;
  const char *q = NULL;
  if (!strncmp(url, "postgresql://", 13) || !strncmp(url, "postgres://", 11))
    q = strchr(url, '?');
  char *out;
  if (!q) {
    out = eng_xstrdup(url);
  } else {
    PQconninfoOption *defs = PQconndefaults();
    eng_strbuf b = {0};
    eng_strbuf_add(&b, url, (size_t)(q - url));
    const char *p = q + 1;
    int first = 1;
    while (*p) {
      const char *amp = strchr(p, '&');
      size_t n = amp ? (size_t)(amp - p) : strlen(p);
      const char *eq = memchr(p, '=', n);
      size_t kn = eq ? (size_t)(eq - p) : n;
      if (kn == 6 && !strncmp(p, "schema", 6)) {
        free(*schema);
        *schema = eq ? prisma_pct_decode(eq + 1, n - kn - 1) : eng_xstrdup("");
      } else if (n > 0 && prisma_libpq_knows(defs, p, kn)) {
        eng_strbuf_add(&b, first ? "?" : "&", 1);
        eng_strbuf_add(&b, p, n);
        first = 0;
      } else if (n > 0) {
        char key[64];
        snprintf(key, sizeof key, "%.*s", (int)(kn < 63 ? kn : 63), p);
        pg_host->log(call, ENG_LOG_DEBUG,
                     "URL parameter '%s' is Prisma's, not libpq's: ignored "
                     "for this connection",
                     key);
      }
      p = amp ? amp + 1 : p + n;
    }
    if (defs) PQconninfoFree(defs);
    out = b.data ? b.data : eng_xstrdup(url);
  }
  int rc = pg_ci_check(call, out, "url");
  if (rc != ENG_OK) {
    free(out);
    free(*schema);
    *schema = NULL;
    return rc;
  }
  if (!*schema || !**schema) {
    free(*schema);
    *schema = eng_xstrdup("public");
  }
  *libpq_url = out;
  return ENG_OK;
}

char *prisma_quote_ident(const char *s) {
  eng_strbuf b = {0};
  eng_strbuf_add(&b, "\"", 1);
  for (; *s; s++) {
    if (*s == '"') eng_strbuf_add(&b, "\"", 1);
    eng_strbuf_add(&b, s, 1);
  }
  eng_strbuf_add(&b, "\"", 1);
  return b.data;
}

char *prisma_table_ref(const char *schema) {
  char *qs = prisma_quote_ident(schema);
  char *r = eng_asprintf("%s.\"" PRISMA_TABLE "\"", qs);
  free(qs);
  return r;
}

void prisma_uuid4(char out[37]) {
  unsigned char u[16];
  if (RAND_bytes(u, sizeof u) != 1) {
    /* RAND_bytes does not fail on a seeded Linux system; be safe anyway */
    FILE *f = fopen("/dev/urandom", "rb");
    if (!f || fread(u, 1, sizeof u, f) != sizeof u) abort();
    fclose(f);
  }
  u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);
  u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
  static const char hx[] = "0123456789abcdef";
  size_t j = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[j++] = '-';
    out[j++] = hx[u[i] >> 4];
    out[j++] = hx[u[i] & 15];
  }
  out[j] = '\0';
}

/* ---- rows vs folder ------------------------------------------------------ */

char *prisma_rows_sql(const char *table_ref) {
  return eng_asprintf(
      "SELECT migration_name, checksum, finished_at IS NOT NULL, "
      "rolled_back_at IS NOT NULL, "
      "to_char(started_at AT TIME ZONE 'UTC', "
      "'YYYY-MM-DD HH24:MI:SS.MS \"UTC\"') "
      "FROM %s ORDER BY started_at, migration_name",
      table_ref);
}

void prisma_rows_load(prisma_rows *r, const PGresult *res) {
  int n = PQntuples(res);
  r->table_exists = 1;
  r->v = eng_xcalloc((size_t)(n > 0 ? n : 1), sizeof *r->v);
  r->n = (size_t)n;
  for (int i = 0; i < n; i++) {
    r->v[i].name = eng_xstrdup(PQgetvalue(res, i, 0));
    r->v[i].checksum = eng_xstrdup(PQgetvalue(res, i, 1));
    r->v[i].finished = PQgetvalue(res, i, 2)[0] == 't';
    r->v[i].rolled_back = PQgetvalue(res, i, 3)[0] == 't';
    r->v[i].started_at = eng_xstrdup(PQgetvalue(res, i, 4));
  }
}

void prisma_rows_free(prisma_rows *r) {
  for (size_t i = 0; i < r->n; i++) {
    free(r->v[i].name);
    free(r->v[i].checksum);
    free(r->v[i].started_at);
  }
  free(r->v);
  memset(r, 0, sizeof *r);
}

int prisma_json_has(const json_t *list, const char *name) {
  size_t i;
  json_t *v;
  json_array_foreach(list, i, v) {
    if (json_is_string(v) && !strcmp(json_string_value(v), name)) return 1;
  }
  return 0;
}

char *prisma_json_join(const json_t *list) {
  eng_strbuf b = {0};
  size_t i;
  json_t *v;
  json_array_foreach(list, i, v) {
    if (i) eng_strbuf_adds(&b, ", ");
    eng_strbuf_adds(&b, json_string_value(v));
  }
  return b.data ? b.data : eng_xstrdup("");
}

static const prisma_mig *prisma_dir_find(const prisma_dir *d,
                                         const char *name) {
  for (size_t i = 0; i < d->n; i++)
    if (!strcmp(d->migs[i].name, name)) return &d->migs[i];
  return NULL;
}

void prisma_state_build(prisma_state *st, const prisma_dir *d,
                        const prisma_rows *rows) {
  memset(st, 0, sizeof *st);
  st->applied = json_array();
  st->pending = json_array();
  st->failed = json_array();
  st->modified = json_array();
  st->missing = json_array();
  eng_strbuf det = {0};
  /* Rows in started_at order. Rolled-back rows do not count at all. */
  for (size_t i = 0; i < rows->n; i++) {
    const prisma_row *r = &rows->v[i];
    if (r->rolled_back) continue;
    if (r->finished) {
      if (!prisma_json_has(st->applied, r->name))
        json_array_append_new(st->applied, json_string(r->name));
    } else if (!prisma_json_has(st->failed, r->name)) {
      json_array_append_new(st->failed, json_string(r->name));
      eng_strbuf_addf(&det, "\nThe `%s` migration started at %s failed",
                      r->name, r->started_at);
    }
  }
  st->failed_detail = det.data;
  /* An applied migration is modified when no finished row of it matches
   * the file (a later re-apply after a rollback may carry a new sum). */
  for (size_t k = 0; k < d->n; k++) {
    const prisma_mig *m = &d->migs[k];
    if (prisma_json_has(st->applied, m->name)) {
      int match = 0;
      for (size_t i = 0; i < rows->n && !match; i++) {
        const prisma_row *r = &rows->v[i];
        if (r->finished && !r->rolled_back && !strcmp(r->name, m->name))
          match = prisma_mig_matches(m, r->checksum);
      }
      if (!match) json_array_append_new(st->modified, json_string(m->name));
    } else if (!prisma_json_has(st->failed, m->name)) {
      json_array_append_new(st->pending, json_string(m->name));
    }
  }
  size_t i;
  json_t *v;
  json_array_foreach(st->applied, i, v) {
    if (!prisma_dir_find(d, json_string_value(v)))
      json_array_append(st->missing, v);
  }
}

void prisma_state_free(prisma_state *st) {
  json_decref(st->applied);
  json_decref(st->pending);
  json_decref(st->failed);
  json_decref(st->modified);
  json_decref(st->missing);
  free(st->failed_detail);
  memset(st, 0, sizeof *st);
}

char *prisma_failed_message(const prisma_state *st) {
  eng_strbuf b = {0};
  eng_strbuf_adds(
      &b, "failed migrations in the target database, new migrations will "
          "not be applied (Prisma's P3009):");
  eng_strbuf_adds(&b, st->failed_detail ? st->failed_detail : "");
  eng_strbuf_adds(&b,
                  "\nResolve each one first, then deploy again: if you "
                  "rolled back its changes manually, run `prisma migrate "
                  "resolve --rolled-back NAME`; if you completed them "
                  "manually (hotfix), run `prisma migrate resolve --applied "
                  "NAME`; see https://pris.ly/d/migrate-resolve");
  size_t i;
  json_t *v;
  json_array_foreach(st->failed, i, v) {
    eng_strbuf_addf(&b, "\n  prisma migrate resolve --rolled-back \"%s\"",
                    json_string_value(v));
  }
  return b.data;
}
