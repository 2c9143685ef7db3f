/* state.c - the state directory: local, or a plugin's store mirrored into a
 * local scratch directory (state.h says how). */
#include "state/state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct eng__state {
  char *spec;                   /* as given */
  char *dir;                    /* local directory (absolute) */
  char *url;                    /* NULL: local */
  const eng_store_scheme *ops;  /* with url */
  void *h;                      /* the store handle (one thread) */
  json_t *pushed;               /* "runs/ID/FILE" -> SHA-256 last written */
};

/* The files of a run that are its state; anything else in the run
 * directory (dumps, sandboxes) stays local. */
static const char *const state_files[] = {"journal", "audit.jsonl",
                                          "report.json", "junit.xml",
                                          "evidence.md"};
#define N_STATE_FILES (sizeof state_files / sizeof *state_files)

static bool is_url(const char *s) {
  const char *p = strstr(s, "://");
  if (!p || p == s) return false;
  for (const char *q = s; q < p; q++)
    if (!((*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '+'))
      return false;
  return true;
}

static char *absolute(const char *path) {
  if (path[0] == '/') return eng__xstrdup(path);
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) return eng__xstrdup(path);
  return eng__asprintf("%s/%s", cwd, path);
}

/* The store serving URL's scheme, opened on `url`. */
static int open_store(const char *url, const eng_store_scheme **ops,
                      void **h, char *err, size_t errlen) {
  const char *sep = strstr(url, "://");
  char *scheme = eng__xstrndup(url, (size_t)(sep - url));
  *ops = eng__registry_store(scheme);
  if (!*ops) {
    snprintf(err, errlen,
             "no plugin serves state stores for '%s://' (is the %s plugin "
             "installed? 'engine plugins' lists what is loaded)",
             scheme, scheme);
    free(scheme);
    return -1;
  }
  free(scheme);
  char msg[512] = "";
  if ((*ops)->open(url, h, msg, sizeof msg) != ENG_OK) {
    snprintf(err, errlen, "cannot open the state store %s: %s", url,
             msg[0] ? msg : "failed");
    return -1;
  }
  return 0;
}

eng__state *eng__state_open(const char *spec, char *err, size_t errlen) {
  eng__state *st = eng__xcalloc(1, sizeof *st);
  st->spec = eng__xstrdup(spec);
  st->pushed = json_object();
  if (!is_url(spec)) {
    st->dir = absolute(spec);
    return st;
  }
  st->url = eng__xstrdup(spec);
  size_t ul = strlen(st->url);
  while (ul > 0 && st->url[ul - 1] == '/') st->url[--ul] = '\0';
  if (open_store(st->url, &st->ops, &st->h, err, errlen) != 0) {
    eng__state_close(st);
    return NULL;
  }
  char hash[ENG__SHA256_HEX];
  eng__sha256_hex(st->url, strlen(st->url), hash);
  hash[12] = '\0';
  const char *scratch = getenv("ENGINE_SCRATCH_DIR");
  char *base;
  if (scratch && *scratch) {
    base = absolute(scratch);
  } else {
    char own[32];
    snprintf(own, sizeof own, "engine-%u", (unsigned)getuid());
    base = eng__tmp_path(own, false);
  }
  st->dir = eng__asprintf("%s/%s", base, hash);
  if (eng__mkdir_p(st->dir, 0700) == 0) {
    /* a shared /tmp: the directory must be ours, not someone's link */
    struct stat sb;
    if (lstat(base, &sb) != 0 || !S_ISDIR(sb.st_mode) || sb.st_uid != getuid()) {
      snprintf(err, errlen,
               "the scratch directory %s is not a directory of this user "
               "(set ENGINE_SCRATCH_DIR to one that is)", base);
      free(base);
      eng__state_close(st);
      return NULL;
    }
  }
  free(base);
  if (access(st->dir, W_OK) != 0) {
    snprintf(err, errlen,
             "cannot create the scratch directory %s for %s: %s (set "
             "ENGINE_SCRATCH_DIR to a writable directory)",
             st->dir, st->url, strerror(errno));
    eng__state_close(st);
    return NULL;
  }
  return st;
}

eng__state *eng__state_dup(const eng__state *st, char *err, size_t errlen) {
  eng__state *d = eng__xcalloc(1, sizeof *d);
  d->spec = eng__xstrdup(st->spec);
  d->dir = eng__xstrdup(st->dir);
  d->pushed = json_deep_copy(st->pushed);
  if (st->url) {
    d->url = eng__xstrdup(st->url);
    if (open_store(d->url, &d->ops, &d->h, err, errlen) != 0) {
      eng__state_close(d);
      return NULL;
    }
  }
  return d;
}

void eng__state_close(eng__state *st) {
  if (!st) return;
  if (st->ops && st->h) st->ops->close(st->h);
  json_decref(st->pushed);
  free(st->spec);
  free(st->dir);
  free(st->url);
  free(st);
}

const char *eng__state_dir(const eng__state *st) { return st->dir; }
const char *eng__state_url(const eng__state *st) { return st->url; }

void eng__rm_tree(const char *path) {
  DIR *d = opendir(path);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char *p = eng__asprintf("%s/%s", path, e->d_name);
      struct stat sb;
      if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) eng__rm_tree(p);
      else unlink(p);
      free(p);
    }
    closedir(d);
  }
  rmdir(path);
}

/* ---- small objects -------------------------------------------------------- */

static bool key_ok(const char *key) {
  return key[0] && key[0] != '/' && !strstr(key, "..");
}

/* Write path whole: a temporary file renamed over it, or (excl) created
 * only when absent. */
static int write_local(const char *path, const char *data, size_t len,
                       bool excl) {
  char *dir = eng__xstrdup(path);
  char *slash = strrchr(dir, '/');
  if (slash) {
    *slash = '\0';
    eng__mkdir_p(dir, 0700);
  }
  free(dir);
  char *tmp = excl ? eng__xstrdup(path) : eng__asprintf("%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC | (excl ? O_EXCL : O_TRUNC),
                0600);
  if (fd < 0) {
    free(tmp);
    return -1;
  }
  size_t off = 0;
  while (off < len) {
    ssize_t n = write(fd, data + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += (size_t)n;
  }
  int ok = off == len && fsync(fd) == 0;
  int saved = errno;
  close(fd);
  if (!ok || (!excl && rename(tmp, path) != 0)) {
    saved = ok ? errno : saved;
    unlink(tmp);
    free(tmp);
    errno = saved;
    return -1;
  }
  free(tmp);
  return 0;
}

int eng__state_get(eng__state *st, const char *key, char **data,
                   size_t *len, char etag[ENG_ETAG_MAX], char *err,
                   size_t errlen) {
  if (etag) etag[0] = '\0';
  if (!key_ok(key)) {
    snprintf(err, errlen, "invalid key '%s'", key);
    return ENG_ERR_INVALID;
  }
  if (st->url) return st->ops->get(st->h, key, data, len, etag, err, errlen);
  char *p = eng__asprintf("%s/%s", st->dir, key);
  *data = eng__read_file(p, 64u << 20, len);
  int rc = *data ? ENG_OK : errno == ENOENT ? ENG_ERR_NOTFOUND : ENG_ERR_IO;
  if (rc != ENG_OK) snprintf(err, errlen, "%s: %s", p, strerror(errno));
  free(p);
  return rc;
}

int eng__state_put(eng__state *st, const char *key, const char *data,
                   size_t len, const char *cond, char etag[ENG_ETAG_MAX],
                   char *err, size_t errlen) {
  if (etag) etag[0] = '\0';
  if (!key_ok(key)) {
    snprintf(err, errlen, "invalid key '%s'", key);
    return ENG_ERR_INVALID;
  }
  if (st->url)
    return st->ops->put(st->h, key, data, len, cond, etag, err, errlen);
  char *p = eng__asprintf("%s/%s", st->dir, key);
  int rc = ENG_OK;
  if (write_local(p, data, len, cond && !strcmp(cond, "*")) != 0) {
    rc = errno == EEXIST ? ENG_ERR_EXISTS : ENG_ERR_IO;
    snprintf(err, errlen, "%s: %s", p, strerror(errno));
  }
  free(p);
  return rc;
}

int eng__state_del(eng__state *st, const char *key, const char *cond,
                   char *err, size_t errlen) {
  if (!key_ok(key)) {
    snprintf(err, errlen, "invalid key '%s'", key);
    return ENG_ERR_INVALID;
  }
  if (st->url) return st->ops->del(st->h, key, cond, err, errlen);
  char *p = eng__asprintf("%s/%s", st->dir, key);
  int rc = ENG_OK;
  if (unlink(p) != 0 && errno != ENOENT) {
    rc = ENG_ERR_IO;
    snprintf(err, errlen, "%s: %s", p, strerror(errno));
  }
  free(p);
  return rc;
}

static void add_key(void *ud, const char *key, int64_t size) {
  (void)size;
  json_array_append_new(ud, json_string(key));
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Local: the entries of prefix's directory whose names start with the
 * rest of prefix (one level). */
static json_t *list_local(const eng__state *st, const char *prefix) {
  json_t *out = json_array();
  const char *slash = strrchr(prefix, '/');
  char *sub = slash ? eng__xstrndup(prefix, (size_t)(slash - prefix + 1))
                    : eng__xstrdup("");
  const char *start = slash ? slash + 1 : prefix;
  char *dir = eng__asprintf("%s/%s", st->dir, sub);
  DIR *d = opendir(dir);
  char **names = NULL;
  size_t n = 0;
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.' || strncmp(e->d_name, start, strlen(start)))
        continue;
      names = eng__xrealloc(names, (n + 1) * sizeof *names);
      names[n++] = eng__asprintf("%s%s", sub, e->d_name);
    }
    closedir(d);
  }
  if (n) qsort(names, n, sizeof *names, cmp_str);
  for (size_t i = 0; i < n; i++) {
    json_array_append_new(out, json_string(names[i]));
    free(names[i]);
  }
  free(names);
  free(dir);
  free(sub);
  return out;
}

json_t *eng__state_list(eng__state *st, const char *prefix, char *err,
                        size_t errlen) {
  if (!st->url) return list_local(st, prefix);
  json_t *out = json_array();
  if (st->ops->list(st->h, prefix, add_key, out, err, errlen) != ENG_OK) {
    json_decref(out);
    return NULL;
  }
  return out;
}

/* ---- runs ------------------------------------------------------------------ */

static bool valid_id(const char *id) {
  if (!id[0] || strlen(id) > 64) return false;
  for (const char *p = id; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
          (*p >= 'A' && *p <= 'Z') || *p == '-' || *p == '_'))
      return false;
  return true;
}

static int pull_file(eng__state *st, const char *key, const char *dest,
                     char *err, size_t errlen) {
  char *data = NULL;
  size_t len = 0;
  int rc = st->ops->get(st->h, key, &data, &len, NULL, err, errlen);
  if (rc != ENG_OK) return rc;
  int w = write_local(dest, data, len, false);
  if (w != 0) snprintf(err, errlen, "cannot write %s: %s", dest, strerror(errno));
  else {
    char sha[ENG__SHA256_HEX];
    eng__sha256_hex(data, len, sha);
    json_object_set_new(st->pushed, key, json_string(sha));
  }
  free(data);
  return w == 0 ? ENG_OK : ENG_ERR_IO;
}

int eng__state_pull_run(eng__state *st, const char *id, char *err,
                        size_t errlen) {
  if (!valid_id(id)) {
    snprintf(err, errlen, "'%s' is not a run id", id);
    return 1;
  }
  char *dir = eng__asprintf("%s/runs/%s", st->dir, id);
  if (!st->url) {
    char *j = eng__asprintf("%s/journal", dir);
    int missing = access(j, F_OK) != 0;
    free(j);
    free(dir);
    return missing ? 1 : 0;
  }
  int result = 0;
  char *jkey = eng__asprintf("runs/%s/journal", id);
  char *probe = NULL;
  size_t plen = 0;
  int rc = st->ops->get(st->h, jkey, &probe, &plen, NULL, err, errlen);
  free(probe);
  free(jkey);
  if (rc == ENG_ERR_NOTFOUND) result = 1;
  else if (rc != ENG_OK) result = -1;
  else {
    /* the state files only: artefacts of the run here stay */
    eng__mkdir_p(dir, 0700);
    for (size_t i = 0; i < N_STATE_FILES && result == 0; i++) {
      char *key = eng__asprintf("runs/%s/%s", id, state_files[i]);
      char *dest = eng__asprintf("%s/%s", dir, state_files[i]);
      rc = pull_file(st, key, dest, err, errlen);
      if (rc == ENG_ERR_NOTFOUND) unlink(dest); /* not the store's: stale */
      else if (rc != ENG_OK) result = -1;
      free(key);
      free(dest);
    }
  }
  free(dir);
  return result;
}

char *eng__state_pull_journals(eng__state *st, char *err, size_t errlen) {
  json_t *keys = eng__state_list(st, "runs/", err, errlen);
  if (!keys) return NULL;
  char *dir = eng__tmp_path("engine-runs", true);
  if (!mkdtemp(dir)) {
    snprintf(err, errlen, "cannot create a temporary directory: %s",
             strerror(errno));
    free(dir);
    json_decref(keys);
    return NULL;
  }
  size_t i;
  json_t *k;
  json_array_foreach(keys, i, k) {
    const char *key = json_string_value(k);
    const char *file = strrchr(key, '/');
    if (!file || (strcmp(file, "/journal") && strcmp(file, "/report.json")) ||
        (size_t)(file - key) <= 5)
      continue;
    char *id = eng__xstrndup(key + 5, (size_t)(file - key) - 5);
    if (valid_id(id)) {
      char *dest = eng__asprintf("%s/runs/%s%s", dir, id, file);
      int rc = pull_file(st, key, dest, err, errlen);
      free(dest);
      if (rc != ENG_OK && rc != ENG_ERR_NOTFOUND) {
        free(id);
        json_decref(keys);
        eng__rm_tree(dir);
        free(dir);
        return NULL;
      }
    }
    free(id);
  }
  json_decref(keys);
  return dir;
}

/* Bytes of a file up to its last newline for line-oriented files (a
 * record being appended is left for the next write). */
static char *read_state_file(const char *path, const char *name,
                             size_t *len) {
  char *data = eng__read_file(path, 256u << 20, len);
  if (!data) return NULL;
  if (!strcmp(name, "journal") || !strcmp(name, "audit.jsonl"))
    while (*len > 0 && data[*len - 1] != '\n') (*len)--;
  return data;
}

int eng__state_push_run(eng__state *st, const char *id, char *err,
                        size_t errlen) {
  if (!st->url) return 0;
  int result = 0;
  for (size_t i = 0; i < N_STATE_FILES; i++) {
    char *path = eng__asprintf("%s/runs/%s/%s", st->dir, id, state_files[i]);
    char *key = eng__asprintf("runs/%s/%s", id, state_files[i]);
    size_t len = 0;
    errno = 0;
    char *data = read_state_file(path, state_files[i], &len);
    if (!data && errno != ENOENT && result == 0) {
      snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
      result = -1;
    }
    if (data) {
      char sha[ENG__SHA256_HEX];
      eng__sha256_hex(data, len, sha);
      const char *prev = json_string_value(json_object_get(st->pushed, key));
      if (!prev || strcmp(prev, sha)) {
        char msg[512] = "";
        if (st->ops->put(st->h, key, data, len, NULL, NULL, msg, sizeof msg) ==
            ENG_OK) {
          json_object_set_new(st->pushed, key, json_string(sha));
        } else if (result == 0) {
          snprintf(err, errlen, "cannot write %s/%s: %s", st->url, key, msg);
          result = -1;
        }
      }
      free(data);
    }
    free(path);
    free(key);
  }
  return result;
}

char *eng__state_fetch_url(const char *url, size_t *len, char *err,
                           size_t errlen) {
  const char *sep = strstr(url, "://");
  const char *slash = sep ? strchr(sep + 3, '/') : NULL;
  if (!sep || !slash || !slash[1]) {
    snprintf(err, errlen, "'%s' does not name an object (SCHEME://BUCKET/KEY)",
             url);
    return NULL;
  }
  char *base = eng__xstrndup(url, (size_t)(slash - url));
  const eng_store_scheme *ops;
  void *h;
  char *data = NULL;
  if (open_store(base, &ops, &h, err, errlen) == 0) {
    if (ops->get(h, slash + 1, &data, len, NULL, err, errlen) != ENG_OK)
      data = NULL;
    ops->close(h);
  }
  free(base);
  return data;
}

/* ---- writing a run's state in the background ---------------------------- */

struct eng__state_sync {
  eng__state *st; /* its own handle */
  char *id;
  bool (*frozen)(void *ud); /* true: write nothing more (the lock is lost) */
  void *frozen_ud;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool dirty, stop, started;
  char err[512];
};

static void *sync_main(void *arg) {
  eng__state_sync *s = arg;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->dirty && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
    if (s->stop) break;
    s->dirty = false;
    pthread_mutex_unlock(&s->mu);
    char msg[512] = "";
    int rc = s->frozen && s->frozen(s->frozen_ud)
                 ? 0 : eng__state_push_run(s->st, s->id, msg, sizeof msg);
    pthread_mutex_lock(&s->mu);
    if (rc != 0 && !s->err[0]) snprintf(s->err, sizeof s->err, "%s", msg);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

eng__state_sync *eng__state_sync_start(eng__state *st, const char *id,
                                       bool (*frozen)(void *ud), void *ud) {
  if (!st->url) return NULL;
  eng__state_sync *s = eng__xcalloc(1, sizeof *s);
  s->id = eng__xstrdup(id);
  s->frozen = frozen;
  s->frozen_ud = ud;
  s->st = eng__state_dup(st, s->err, sizeof s->err);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  /* signals are the loop's: the thread starts with all of them blocked */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  if (s->st && pthread_create(&s->thread, NULL, sync_main, s) == 0)
    s->started = true;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return s;
}

void eng__state_sync_kick(void *sync) {
  eng__state_sync *s = sync;
  if (!s || !s->started) return;
  pthread_mutex_lock(&s->mu);
  s->dirty = true;
  pthread_cond_signal(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

int eng__state_sync_stop(eng__state_sync *s, char *err, size_t errlen) {
  if (!s) return 0;
  if (s->started) {
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
  }
  int rc = -1;
  if (s->st && s->frozen && s->frozen(s->frozen_ud)) {
    /* another run holds the lock now and may be writing this run's state
     * (removing its leftovers): this copy must not overwrite it */
    snprintf(err, errlen, "the run lost its lock; its last records stay in "
             "the local directory %s/runs/%s", s->st->dir, s->id);
  } else if (s->st) {
    char msg[512] = "";
    rc = eng__state_push_run(s->st, s->id, msg, sizeof msg);
    /* the last write carries everything: an earlier failure is healed */
    if (rc != 0) snprintf(err, errlen, "%s", msg);
  } else {
    snprintf(err, errlen, "%s", s->err);
  }
  eng__state_close(s->st);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s->id);
  free(s);
  return rc;
}
