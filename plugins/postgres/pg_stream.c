/*
 * pg_stream.c - moving backup bytes without blocking the loop.
 *
 * pg_out: a source (pg_dump's stdout, a download) goes into a host stream
 *: a local file (written as FILE.partial,
 * fsync'ed and renamed by the host on finish), or any URL a plugin serves
 * (s3://, uploaded while pg_dump runs). The host hashes the stored bytes
 * and compresses with zstd when asked. Bytes gather in one buffer while
 * the previous write is outstanding (double buffering); above PG_OUT_HIGH
 * the source is paused (the pipe fills and pg_dump blocks) and resumed
 * below PG_OUT_LOW: memory stays bounded whatever the dump size. Nothing
 * becomes visible unless pg_out_end succeeded; pg_out_abort discards.
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

#define PG_OUT_HIGH (1u << 20)
#define PG_OUT_LOW (256u << 10)

/* ---- pg_out: bytes -> a host stream (local file, s3://, ...) ------------ */

struct pg_out {
  pg_op *op;
  eng_stream *st; /* NULL once finished or aborted */
  eng_strbuf fill;   /* bytes waiting for the next write */
  eng_strbuf flight; /* the bytes of the outstanding write */
  int busy;       /* a stream_write is outstanding */
  int paused;     /* the source is paused */
  int ending, finishing, done;
  int rc;         /* first failure */
  int64_t in;     /* bytes received */
  void (*src_pause)(void *ud, int paused);
  void (*src_stop)(void *ud);
  void *src_ud;
  void (*end_cb)(void *ud, int rc, json_t *info);
  void *end_ud;
};

pg_out *pg_out_open(pg_op *op, const char *url, const json_t *opts, int *rc) {
  pg_out *o = eng_xcalloc(1, sizeof *o);
  o->op = op;
  *rc = pg_host->stream_open_write(op->e.call, url, opts, &o->st);
  if (*rc != ENG_OK) {
    free(o);
    return NULL;
  }
  return o;
}

void pg_out_source(pg_out *o, void (*pause)(void *ud, int paused),
                   void (*stop)(void *ud), void *ud) {
  o->src_pause = pause;
  o->src_stop = stop;
  o->src_ud = ud;
}

int pg_out_failed(const pg_out *o) { return o ? o->rc : 0; }
int64_t pg_out_received(const pg_out *o) { return o->in; }

static void pg_out_kick(pg_out *o);

static void pg_out_finished(void *ud, int rc, json_t *info) {
  pg_out *o = ud;
  o->st = NULL; /* the host freed it */
  o->done = 1;
  if (rc != ENG_OK && !o->rc) o->rc = rc;
  void (*cb)(void *, int, json_t *) = o->end_cb;
  o->end_cb = NULL;
  pg_op *op = o->op;
  if (cb)
    cb(o->end_ud, o->rc, info);
  else
    json_decref(info);
  pg_op_release(op);
}

static void pg_out_wrote(void *ud, int rc) {
  pg_out *o = ud;
  o->busy = 0;
  o->flight.len = 0;
  if (rc != ENG_OK && !o->rc) {
    o->rc = rc;
    o->fill.len = 0;
    if (o->src_stop) o->src_stop(o->src_ud);
  }
  if (o->paused && o->fill.len < PG_OUT_LOW && !o->rc) {
    o->paused = 0;
    if (o->src_pause) o->src_pause(o->src_ud, 0);
  }
  pg_out_kick(o);
}

static void pg_out_kick(pg_out *o) {
  if (o->busy || !o->st || o->finishing) return;
  if (o->rc) {
    if (o->ending) { /* report the failure through the end callback */
      pg_host->stream_abort(o->st);
      o->st = NULL;
      o->finishing = 1;
      pg_op_hold(o->op);
      pg_out_finished(o, o->rc, NULL);
    }
    return;
  }
  if (o->fill.len) {
    eng_strbuf t = o->flight;
    o->flight = o->fill;
    o->fill = t;
    o->fill.len = 0;
    o->busy = 1;
    int rc = pg_host->stream_write(o->st, o->flight.data, o->flight.len,
                                   pg_out_wrote, o);
    if (rc != ENG_OK) {
      o->busy = 0;
      o->flight.len = 0;
      o->rc = rc;
      if (o->src_stop) o->src_stop(o->src_ud);
      pg_out_kick(o);
    }
    return;
  }
  if (o->ending) {
    o->finishing = 1;
    pg_op_hold(o->op);
    int rc = pg_host->stream_finish(o->st, pg_out_finished, o);
    if (rc != ENG_OK) {
      pg_host->stream_abort(o->st);
      o->st = NULL;
      if (!o->rc) o->rc = rc;
      pg_out_finished(o, rc, NULL);
    }
  }
}

void pg_out_data(pg_out *o, const char *buf, size_t len) {
  if (!len || o->rc || o->ending || !o->st) return;
  o->in += (int64_t)len;
  eng_strbuf_add(&o->fill, buf, len);
  if (o->fill.len > PG_OUT_HIGH && !o->paused && o->src_pause) {
    o->paused = 1;
    o->src_pause(o->src_ud, 1);
  }
  pg_out_kick(o);
}

void pg_out_end(pg_out *o, void (*cb)(void *ud, int rc, json_t *info),
                void *ud) {
  o->ending = 1;
  o->end_cb = cb;
  o->end_ud = ud;
  pg_out_kick(o);
}

void pg_out_abort(pg_out *o) {
  if (!o || !o->st) return;
  pg_host->stream_abort(o->st); /* no callback of it runs afterwards */
  o->st = NULL;
  o->busy = 0;
  if (!o->rc) o->rc = ENG_ERR_CANCELLED;
}

void pg_out_free(pg_out *o) {
  if (!o) return;
  pg_out_abort(o);
  eng_strbuf_free(&o->fill);
  eng_strbuf_free(&o->flight);
  free(o);
}

/* ---- files -------------------------------------------------------------- */

static void pg_hex(const unsigned char *md, unsigned n, char hex[65]) {
  for (unsigned i = 0; i < n && i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static int pg_hash_fd(EVP_MD_CTX *md, int fd, int64_t *bytes) {
  static const size_t bufsz = 1u << 18;
  char *buf = eng_xmalloc(bufsz);
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

/* Frees md; the digest goes to hex only when rc (an errno) is 0. */
static int pg_sha256_end(EVP_MD_CTX *md, int rc, char hex[65]) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(md, out, &n);
  EVP_MD_CTX_free(md);
  if (!rc) pg_hex(out, n, hex);
  return rc;
}

const char *pg_file_param(eng_call *call, const json_t *params,
                          const char *hint) {
  const char *file = pg_pstr(params, "file");
  if (!file || !*file) {
    pg_host->fail(call, "parameter 'file' is empty; %s", hint);
    return NULL;
  }
  if (!strncmp(file, "file://", 7)) file += 7;
  return file;
}

int pg_sha256_file(const char *path, char hex[65], int64_t *bytes) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(md, EVP_sha256(), NULL);
  *bytes = 0;
  int rc = pg_hash_fd(md, fd, bytes);
  close(fd);
  return pg_sha256_end(md, rc, hex);
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
      names = eng_xrealloc(names, cap * sizeof *names);
    }
    names[cnt++] = eng_xstrdup(e->d_name);
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
  return pg_sha256_end(md, rc, hex);
}

void pg_sha256_text(const char *s, char hex[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(s, strlen(s), md, &len, EVP_sha256(), NULL);
  pg_hex(md, len, hex);
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
  if (h >= strlen(PG_AGE_HEAD) && !memcmp(head, PG_AGE_HEAD, strlen(PG_AGE_HEAD))) {
    in->fmt = PG_FMT_UNKNOWN;
    in->err = EINVAL;
    snprintf(in->errmsg, sizeof in->errmsg, "%s " PG_AGE_HINT, in->path);
  } else if (h >= 5 && !memcmp(head, "PGDMP", 5))
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
