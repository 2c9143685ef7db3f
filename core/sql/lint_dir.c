/* lint_dir.c - a migrations folder read in order and linted.
 *
 * Two layouts: Prisma's (DIR/NAME/migration.sql, NAME sorted by bytes as
 * Prisma sorts them) and plain ordered files (DIR/NNN_name.sql, sorted the
 * same way). The digest covers every migration read, name and bytes: the
 * same set of migrations, the same digest (what migrate-deploy compares
 * with a rehearsal's). Reads files; blocks. */
#include "sql/lint.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The largest migration read: far above any real one, below what would
 * make the parser's tree exhaust memory. */
#define LINT_FILE_MAX (64u * 1024 * 1024)

typedef struct mig_file {
  char *name; /* the migration's name: folder, or file without .sql */
  char *path;
  bool sql; /* a plain NNN_name.sql file */
} mig_file;

static int by_name(const void *a, const void *b) {
  return strcmp(((const mig_file *)a)->name, ((const mig_file *)b)->name);
}

static bool is_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The migrations of dir, sorted; *prisma set to the layout. NULL with a
 * message in *err when the folder cannot be read. */
static mig_file *list_dir(const char *dir, size_t *n, bool *prisma, char **err) {
  DIR *d = opendir(dir);
  if (!d) {
    *err = eng__asprintf("cannot read the migrations folder %s: %s; give the "
                         "folder holding NAME/migration.sql or NNN_name.sql "
                         "files",
                         dir, strerror(errno));
    return NULL;
  }
  mig_file *v = NULL;
  size_t nv = 0, nsql = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char *sub = eng__asprintf("%s/%s/migration.sql", dir, e->d_name);
    size_t len = strlen(e->d_name);
    bool sql = len > 4 && !strcmp(e->d_name + len - 4, ".sql");
    if (is_file(sub) || sql) {
      v = eng__xrealloc(v, (nv + 1) * sizeof *v);
      v[nv].name = sql ? eng__xstrndup(e->d_name, len - 4) : eng__xstrdup(e->d_name);
      v[nv].path = sql ? eng__asprintf("%s/%s", dir, e->d_name) : eng__xstrdup(sub);
      v[nv].sql = sql;
      nsql += sql;
      nv++;
    }
    free(sub);
  }
  closedir(d);
  /* Prisma's layout wins: stray .sql files beside its folders are not
   * migrations. */
  *prisma = nv > nsql;
  size_t k = 0;
  for (size_t i = 0; i < nv; i++) {
    if (*prisma && v[i].sql) {
      free(v[i].name);
      free(v[i].path);
      continue;
    }
    v[k++] = v[i];
  }
  if (k) qsort(v, k, sizeof *v, by_name);
  *n = k;
  return v;
}

static bool wanted(const json_t *only, const char *name) {
  if (!json_is_array(only)) return true;
  size_t i;
  const json_t *v;
  json_array_foreach(only, i, v) if (!strcmp(json_string_value(v) ? json_string_value(v) : "", name)) return true;
  return false;
}

static int opts_of(const json_t *opts, eng__lint_opts *o, char **err) {
  memset(o, 0, sizeof *o);
  const json_t *pg = json_object_get(opts, "pg_major");
  if (pg && (!json_is_integer(pg) || json_integer_value(pg) < 10 ||
             json_integer_value(pg) > 17)) {
    *err = eng__xstrdup("pg_major is the server's major version, 10 to 17");
    return -1;
  }
  o->pg_major = pg ? (int)json_integer_value(pg) : 0;
  const char *t = json_string_value(json_object_get(opts, "transaction"));
  if (!t || !strcmp(t, "auto")) o->txn = ENG__LINT_TXN_AUTO;
  else if (!strcmp(t, "always")) o->txn = ENG__LINT_TXN_ALWAYS;
  else if (!strcmp(t, "never")) o->txn = ENG__LINT_TXN_NEVER;
  else {
    *err = eng__asprintf("transaction is auto, always or never, got '%s'", t);
    return -1;
  }
  return 0;
}

/* Read and lint one migration; its entry in migs, its bytes in digest. */
static int lint_one(eng__lint *l, const mig_file *m, const eng__lint_opts *o,
                    json_t *migs, eng__buf *digest, char **err) {
  size_t len;
  char *sql = eng__read_file(m->path, LINT_FILE_MAX, &len);
  if (!sql) {
    *err = eng__asprintf("cannot read %s: %s", m->path,
                         errno == EFBIG ? "larger than 64 MiB" : strerror(errno));
    return -1;
  }
  char sha[ENG__SHA256_HEX];
  eng__sha256_hex(sql, len, sha);
  eng__buf_addf(digest, "%s\n%s\n", m->name, sha);
  if (strlen(sql) != len) { /* a NUL byte: the parser would stop there */
    free(sql);
    *err = eng__asprintf("%s holds a NUL byte: it is not SQL text", m->path);
    return -1;
  }
  eng__lint_text(l, m->path, m->name, sql, o);
  json_array_append_new(migs, json_pack("{s:s, s:s, s:s}", "name", m->name,
                                        "file", m->path, "sha256", sha));
  free(sql);
  return 0;
}

json_t *eng__lint_dir(const char *dir, const json_t *opts) {
  eng__lint_opts o;
  char *err = NULL;
  size_t n = 0;
  bool prisma = false;
  mig_file *files = NULL;
  if (opts_of(opts, &o, &err) == 0) files = list_dir(dir, &n, &prisma, &err);
  if (err) {
    json_t *r = json_pack("{s:s}", "error", err);
    free(err);
    return r;
  }
  eng__lint l = {0};
  json_t *migs = json_array();
  eng__buf digest = {0};
  for (size_t i = 0; i < n && !err; i++)
    lint_one(&l, &files[i], &o, migs, &digest, &err);
  json_t *found = json_array();
  const json_t *only = json_object_get(opts, "only");
  size_t counts[3] = {0};
  for (size_t i = 0; i < l.n; i++) {
    if (!wanted(only, l.v[i].migration)) continue;
    counts[l.v[i].suppressed ? 2 : l.v[i].rule->level == ENG__LINT_ERROR ? 0 : 1]++;
    json_array_append_new(found, eng__lint_finding_json(&l.v[i]));
  }
  char hex[ENG__SHA256_HEX];
  eng__sha256_hex(digest.data ? digest.data : "", digest.len, hex);
  json_t *r = err ? json_pack("{s:s}", "error", err)
                  : json_pack("{s:s, s:s, s:o, s:o, s:I, s:I, s:I, s:s, s:i}",
                              "dir", dir, "layout", prisma ? "prisma" : "sql",
                              "migrations", migs, "findings", found, "errors",
                              (json_int_t)counts[0], "warnings",
                              (json_int_t)counts[1], "suppressed",
                              (json_int_t)counts[2], "digest", hex, "pg_major",
                              o.pg_major ? o.pg_major : 15);
  if (err) {
    json_decref(migs);
    json_decref(found);
  }
  free(err);
  eng__buf_free(&digest);
  eng__lint_free(&l);
  for (size_t i = 0; i < n; i++) {
    free(files[i].name);
    free(files[i].path);
  }
  free(files);
  return r;
}
