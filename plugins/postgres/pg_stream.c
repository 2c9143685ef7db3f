/*
 * pg_stream.c - moving backup bytes without blocking the loop.
 *
 * pg_sink: a child's stdout (pg_dump writing to a pipe) goes to a file
 * through SHA-256. Chunks are copied into a queue on the loop thread; one
 * worker job at a time writes and hashes the whole queue. When more than
 * PG_SINK_HIGH bytes wait, the child's stdout is paused (the pipe fills and
 * pg_dump blocks), and resumed below PG_SINK_LOW: memory stays bounded
 * whatever the dump size. The file is written as FILE.partial and renamed
 * into place only after pg_dump succeeded and the data was fsync'ed, so a
 * failed dump never leaves a file that looks complete. This is the shape a
 * remote stream (s3://) takes later: the queue feeds an upload instead.
 *
 * Also worker-side helpers: format detection of a backup, SHA-256 of files
 * and directories, mkdir -p and rm -rf.
 */
#include "pg_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PG_SINK_HIGH (4u << 20)
#define PG_SINK_LOW (1u << 20)

typedef struct pg_chunk {
  struct pg_chunk *next;
  size_t len;
  char data[];
} pg_chunk;

struct pg_sink {
  pg_op *op;
  char *path;
  char *tmp;
  int fd;
  EVP_MD_CTX *md;
  pg_chunk *head, *tail; /* waiting */
  size_t queued;
  pg_chunk *batch; /* being written by the worker */
  int busy;
  int ending; /* pg_sink_end was called */
  int closed; /* file closed (renamed or removed) */
  int paused;
  int failed;
  int werr; /* errno of the worker */
  const char *wstage;
  int64_t bytes;
  char sha[65];
  char err[512];
  pg_child *src;
  void (*end_cb)(void *ud, int rc);
  void *end_ud;
};

static void pg_sink_kick(pg_sink *k);

pg_sink *pg_sink_open(pg_op *op, const char *path, char *err, size_t n) {
  pg_sink *k = pg_xcalloc(1, sizeof *k);
  k->op = op;
  k->path = pg_strdup(path);
  k->tmp = pg_asprintf("%s.partial", path);
  k->fd = open(k->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (k->fd < 0) {
    snprintf(err, n, "cannot create %s: %s", k->tmp, strerror(errno));
    free(k->path);
    free(k->tmp);
    free(k);
    return NULL;
  }
  k->md = EVP_MD_CTX_new();
  if (!k->md || EVP_DigestInit_ex(k->md, EVP_sha256(), NULL) != 1) abort();
  return k;
}

void pg_sink_source(pg_sink *k, pg_child *src) { k->src = src; }
int64_t pg_sink_bytes(const pg_sink *k) { return k->bytes; }
const char *pg_sink_sha256(const pg_sink *k) { return k->sha; }
const char *pg_sink_error(const pg_sink *k) { return k->err; }
int pg_sink_failed(const pg_sink *k) { return k->failed; }

static void pg_chunks_free(pg_chunk *c) {
  while (c) {
    pg_chunk *n = c->next;
    free(c);
    c = n;
  }
}

void pg_sink_data(pg_sink *k, const char *buf, size_t len) {
  if (k->failed || k->closed || !len) return;
  pg_chunk *c = pg_xmalloc(sizeof *c + len);
  c->next = NULL;
  c->len = len;
  memcpy(c->data, buf, len);
  if (k->tail)
    k->tail->next = c;
  else
    k->head = c;
  k->tail = c;
  k->queued += len;
  if (k->queued > PG_SINK_HIGH && !k->paused && k->src && k->src->proc) {
    pg_host->proc_pause(k->src->proc, 1);
    k->paused = 1;
  }
  pg_sink_kick(k);
}

/* ---- worker side -------------------------------------------------------- */

static int pg_write_all(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void pg_sink_work(void *ud) {
  pg_sink *k = ud;
  for (pg_chunk *c = k->batch; c && !k->werr; c = c->next) {
    k->werr = pg_write_all(k->fd, c->data, c->len);
    if (k->werr) {
      k->wstage = "write";
      break;
    }
    EVP_DigestUpdate(k->md, c->data, c->len);
    k->bytes += (int64_t)c->len;
  }
  if (!k->werr && k->ending && !k->head) {
    /* final job: make it durable, then move it into place */
    if (fsync(k->fd) != 0) {
      k->werr = errno;
      k->wstage = "fsync";
    }
  }
}

static void pg_sink_finish_file(pg_sink *k);

static void pg_sink_after(void *ud) {
  pg_sink *k = ud;
  k->busy = 0;
  pg_chunks_free(k->batch);
  k->batch = NULL;
  if (k->werr && !k->failed) {
    k->failed = 1;
    snprintf(k->err, sizeof k->err, "%s to %s failed: %s", k->wstage, k->tmp,
             strerror(k->werr));
    pg_chunks_free(k->head);
    k->head = k->tail = NULL;
    k->queued = 0;
    if (k->src && k->src->proc) pg_host->proc_kill(k->src->proc, SIGTERM);
  }
  if (k->paused && k->queued < PG_SINK_LOW && k->src && k->src->proc) {
    pg_host->proc_pause(k->src->proc, 0);
    k->paused = 0;
  }
  if (k->failed) {
    if (k->ending) pg_sink_finish_file(k);
    return;
  }
  if (k->head) {
    pg_sink_kick(k);
    return;
  }
  if (k->ending) pg_sink_finish_file(k);
}

static void pg_sink_kick(pg_sink *k) {
  if (k->busy || (!k->head && !k->ending) || k->closed) return;
  k->batch = k->head;
  k->head = k->tail = NULL;
  k->queued = 0;
  k->busy = 1;
  if (pg_op_work(k->op, pg_sink_work, pg_sink_after, k) != ENG_OK) {
    k->busy = 0;
    k->failed = 1;
    snprintf(k->err, sizeof k->err, "could not queue a write to %s", k->tmp);
    pg_chunks_free(k->batch);
    k->batch = NULL;
  }
}

static void pg_sink_finish_file(pg_sink *k) {
  if (k->closed) return;
  int rc = ENG_OK;
  if (!k->failed) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(k->md, md, &mdlen);
    for (unsigned i = 0; i < mdlen && i < 32; i++)
      snprintf(k->sha + 2 * i, 3, "%02x", md[i]);
    if (close(k->fd) != 0) {
      snprintf(k->err, sizeof k->err, "closing %s failed: %s", k->tmp,
               strerror(errno));
      rc = ENG_ERR_IO;
    } else if (rename(k->tmp, k->path) != 0) {
      snprintf(k->err, sizeof k->err, "renaming %s to %s failed: %s", k->tmp,
               k->path, strerror(errno));
      rc = ENG_ERR_IO;
      unlink(k->tmp);
    }
    k->fd = -1;
  } else {
    rc = ENG_ERR_IO;
    close(k->fd);
    k->fd = -1;
    unlink(k->tmp);
  }
  k->closed = 1;
  void (*cb)(void *, int) = k->end_cb;
  k->end_cb = NULL;
  if (cb) cb(k->end_ud, rc);
}

void pg_sink_end(pg_sink *k, void (*cb)(void *ud, int rc), void *ud) {
  k->ending = 1;
  k->end_cb = cb;
  k->end_ud = ud;
  if (k->busy) return; /* pg_sink_after continues */
  if (k->failed) {
    pg_sink_finish_file(k);
    return;
  }
  /* one last job (possibly without data) does the fsync */
  {
    k->batch = k->head;
    k->head = k->tail = NULL;
    k->queued = 0;
    k->busy = 1;
    if (pg_op_work(k->op, pg_sink_work, pg_sink_after, k) != ENG_OK) {
      k->busy = 0;
      k->failed = 1;
      snprintf(k->err, sizeof k->err, "could not queue a write to %s", k->tmp);
      pg_sink_finish_file(k);
    }
  }
}

void pg_sink_abort(pg_sink *k) {
  if (!k || k->closed) return;
  /* A worker job may still hold the fd: the op waits for it before the
   * sink is freed, so only mark here; pg_sink_free closes and unlinks. */
  k->failed = 1;
  pg_chunks_free(k->head);
  k->head = k->tail = NULL;
  k->queued = 0;
  if (!k->busy) {
    close(k->fd);
    k->fd = -1;
    unlink(k->tmp);
    k->closed = 1;
  }
}

void pg_sink_free(pg_sink *k) {
  if (!k) return;
  if (!k->closed) {
    if (k->fd >= 0) close(k->fd);
    unlink(k->tmp);
  }
  pg_chunks_free(k->head);
  pg_chunks_free(k->batch);
  EVP_MD_CTX_free(k->md);
  free(k->path);
  free(k->tmp);
  free(k);
}

/* ---- files -------------------------------------------------------------- */

static void pg_hex(const unsigned char *md, unsigned n, char hex[65]) {
  for (unsigned i = 0; i < n && i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static int pg_hash_fd(EVP_MD_CTX *md, int fd, int64_t *bytes) {
  static const size_t bufsz = 1u << 18;
  char *buf = pg_xmalloc(bufsz);
  int rc = 0;
  for (;;) {
    ssize_t r = read(fd, buf, bufsz);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      rc = errno;
      break;
    }
    if (r == 0) break;
    EVP_DigestUpdate(md, buf, (size_t)r);
    *bytes += r;
  }
  free(buf);
  return rc;
}

int pg_sha256_file(const char *path, char hex[65], int64_t *bytes) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  *bytes = 0;
  int rc = pg_hash_fd(md, fd, bytes);
  close(fd);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(md, out, &n);
  EVP_MD_CTX_free(md);
  if (!rc) pg_hex(out, n, hex);
  return rc;
}

static int pg_cmp_names(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int pg_sha256_dir(const char *dir, char hex[65], int64_t *bytes, char *err,
                  size_t n) {
  DIR *d = opendir(dir);
  if (!d) {
    snprintf(err, n, "cannot open directory %s: %s", dir, strerror(errno));
    return errno ? errno : EIO;
  }
  char **names = NULL;
  size_t cnt = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    if (cnt == cap) {
      cap = cap ? cap * 2 : 64;
      char **v = realloc(names, cap * sizeof *v);
      if (!v) abort();
      names = v;
    }
    names[cnt++] = pg_strdup(e->d_name);
  }
  closedir(d);
  qsort(names, cnt, sizeof *names, pg_cmp_names);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  *bytes = 0;
  int rc = 0;
  for (size_t i = 0; i < cnt && !rc; i++) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      rc = errno;
      snprintf(err, n, "cannot read %s: %s", path, strerror(rc));
      break;
    }
    rc = pg_hash_fd(md, fd, bytes);
    if (rc) snprintf(err, n, "cannot read %s: %s", path, strerror(rc));
    close(fd);
  }
  for (size_t i = 0; i < cnt; i++) free(names[i]);
  free(names);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(md, out, &len);
  EVP_MD_CTX_free(md);
  if (!rc) pg_hex(out, len, hex);
  return rc;
}

const char *pg_fmt_name(pg_fmt f) {
  switch (f) {
  case PG_FMT_CUSTOM:
    return "custom";
  case PG_FMT_TAR:
    return "tar";
  case PG_FMT_DIRECTORY:
    return "directory";
  case PG_FMT_PLAIN:
    return "plain";
  case PG_FMT_GZIP:
    return "gzip";
  case PG_FMT_ZSTD:
    return "zstd";
  default:
    return "unknown";
  }
}

/* Does the last part of a plain dump carry pg_dump's end marker? */
static int pg_plain_truncated(int fd, const char *head, size_t hlen,
                              off_t size) {
  if (!memmem(head, hlen, PG_PLAIN_HEAD, strlen(PG_PLAIN_HEAD)))
    return 0; /* not pg_dump output: nothing to check */
  char tail[512];
  off_t off = size > (off_t)sizeof tail ? size - (off_t)sizeof tail : 0;
  ssize_t r = pread(fd, tail, sizeof tail, off);
  if (r <= 0) return 1;
  return memmem(tail, (size_t)r, PG_PLAIN_END, strlen(PG_PLAIN_END)) == NULL;
}

void pg_inspect_run(void *ud) {
  pg_inspect *in = ud;
  struct stat st;
  if (stat(in->path, &st) != 0) {
    in->err = errno;
    snprintf(in->errmsg, sizeof in->errmsg, "cannot read backup %s: %s",
             in->path, strerror(errno));
    return;
  }
  if (S_ISDIR(st.st_mode)) {
    char toc[PATH_MAX];
    snprintf(toc, sizeof toc, "%s/toc.dat", in->path);
    if (access(toc, R_OK) != 0) {
      in->err = ENOENT;
      snprintf(in->errmsg, sizeof in->errmsg,
               "%s is a directory without toc.dat: not a pg_dump directory "
               "archive",
               in->path);
      return;
    }
    in->fmt = PG_FMT_DIRECTORY;
    if (in->want_sha) {
      int rc = pg_sha256_dir(in->path, in->sha256, &in->bytes, in->errmsg,
                             sizeof in->errmsg);
      if (rc) in->err = rc;
    } else {
      /* size only: the sum of the regular files */
      DIR *d = opendir(in->path);
      struct dirent *de;
      in->bytes = 0;
      while (d && (de = readdir(d))) {
        char p[PATH_MAX];
        struct stat s2;
        snprintf(p, sizeof p, "%s/%s", in->path, de->d_name);
        if (stat(p, &s2) == 0 && S_ISREG(s2.st_mode)) in->bytes += s2.st_size;
      }
      if (d) closedir(d);
    }
    return;
  }
  int fd = open(in->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    in->err = errno;
    snprintf(in->errmsg, sizeof in->errmsg, "cannot open backup %s: %s",
             in->path, strerror(errno));
    return;
  }
  char head[4096];
  ssize_t r = pread(fd, head, sizeof head, 0);
  if (r < 0) {
    in->err = errno;
    snprintf(in->errmsg, sizeof in->errmsg, "cannot read backup %s: %s",
             in->path, strerror(errno));
    close(fd);
    return;
  }
  size_t h = (size_t)r;
  in->bytes = st.st_size;
  if (h == 0) {
    in->err = EINVAL;
    snprintf(in->errmsg, sizeof in->errmsg, "backup %s is empty", in->path);
    close(fd);
    return;
  }
  if (h >= 5 && !memcmp(head, "PGDMP", 5))
    in->fmt = PG_FMT_CUSTOM;
  else if (h >= 262 && !memcmp(head + 257, "ustar", 5))
    in->fmt = PG_FMT_TAR;
  else if (h >= 2 && (unsigned char)head[0] == 0x1f &&
           (unsigned char)head[1] == 0x8b)
    in->fmt = PG_FMT_GZIP;
  else if (h >= 4 && !memcmp(head, "\x28\xb5\x2f\xfd", 4))
    in->fmt = PG_FMT_ZSTD;
  else if (memchr(head, '\0', h)) {
    in->fmt = PG_FMT_UNKNOWN;
    in->err = EINVAL;
    snprintf(in->errmsg, sizeof in->errmsg,
             "%s is neither a pg_dump archive (custom, tar, directory) nor "
             "SQL text (binary data, no PGDMP header): the file is corrupted "
             "or not a PostgreSQL backup",
             in->path);
  } else {
    in->fmt = PG_FMT_PLAIN;
    in->plain_truncated = pg_plain_truncated(fd, head, h, st.st_size);
  }
  if (!in->err && in->want_sha) {
    lseek(fd, 0, SEEK_SET);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    int64_t bytes = 0;
    int rc = pg_hash_fd(md, fd, &bytes);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(md, out, &len);
    EVP_MD_CTX_free(md);
    if (rc) {
      in->err = rc;
      snprintf(in->errmsg, sizeof in->errmsg, "cannot read backup %s: %s",
               in->path, strerror(rc));
    } else {
      pg_hex(out, len, in->sha256);
    }
  }
  close(fd);
}

/* ---- directories -------------------------------------------------------- */

int pg_mkdir_p(const char *dir, int mode) {
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
    return ENAMETOOLONG;
  size_t n = strlen(path);
  while (n > 1 && path[n - 1] == '/') path[--n] = '\0';
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(path, (mode_t)mode) != 0 && errno != EEXIST) return errno;
    *p = '/';
  }
  if (mkdir(path, (mode_t)mode) != 0 && errno != EEXIST) return errno;
  return 0;
}

int pg_mkdir_parent(const char *path) {
  char dir[PATH_MAX];
  if (snprintf(dir, sizeof dir, "%s", path) >= (int)sizeof dir)
    return ENAMETOOLONG;
  char *slash = strrchr(dir, '/');
  if (!slash) return 0; /* relative name in cwd */
  if (slash == dir) return 0;
  *slash = '\0';
  return pg_mkdir_p(dir, 0755);
}

static int pg_rm_one(const char *path, const struct stat *st, int flag,
                     struct FTW *ftw) {
  (void)st;
  (void)ftw;
  if (flag == FTW_DP || flag == FTW_D)
    return rmdir(path) == 0 || errno == ENOENT ? 0 : -1;
  return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
}

int pg_rmtree(const char *dir) {
  if (access(dir, F_OK) != 0) return 0;
  return nftw(dir, pg_rm_one, 32, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : errno;
}
