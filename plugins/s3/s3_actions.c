/*
 * s3_actions.c - put, get, list, head, delete, abort_upload.
 *
 * put and get move bytes through the same writer and reader as the "s3"
 * stream scheme. Local file I/O runs on worker threads (host->work); the
 * loop thread only copies buffers and drives curl.
 *
 * Injectable for tests: ENGINE_TEST_NOW (Unix seconds) replaces the clock
 * for ages, ENGINE_TEST_SEED seeds `pick: random_within:...`, and
 * ENGINE_S3_TEST_PAGE_SIZE sets ListObjectsV2's max-keys, and
 * ENGINE_S3_TEST_STREAM=1 makes s3.put upload like a stream does (the
 * SHA-256 only known at finish: stored by copy or sidecar), so the tests
 * reach the scheme's write path through the engine binary.
 */
#include "s3_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>


#define H s3_host

static int64_t now_s(void) {
  const char *t = getenv("ENGINE_TEST_NOW");
  if (t && *t) return strtoll(t, NULL, 10);
  return (int64_t)time(NULL);
}

static const char *pstr(const json_t *p, const char *name) {
  const char *v = json_string_value(json_object_get(p, name));
  return v ? v : "";
}

static int64_t pint(const json_t *p, const char *name, int64_t def) {
  json_t *v = json_object_get(p, name);
  return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

/* mkdir -p of path's parent directory; 0 or an errno. */
static int mkdir_parent(const char *path) {
  char *d = eng_xstrdup(path);
  char *slash = strrchr(d, '/');
  int rc = 0;
  if (slash && slash != d) {
    *slash = '\0';
    for (char *p = d + 1; *p; p++) {
      if (*p != '/') continue;
      *p = '\0';
      if (mkdir(d, 0755) != 0 && errno != EEXIST) rc = errno;
      *p = '/';
    }
    if (mkdir(d, 0755) != 0 && errno != EEXIST) rc = errno;
  }
  free(d);
  return rc;
}

static json_t *jstr_or_empty(const char *s) { return json_string(s ? s : ""); }

/* ======================================================================== */
/* put                                                                       */
/* ======================================================================== */

typedef struct put_job {
  eng_op op; /* first: the life cycle (<engine/op.h>) */
  aws_cfg cfg;
  char *url, *file;
  int fd;
  int64_t size;
  size_t part_size;
  int concurrency;
  char *storage_class;
  s3_at_rest at_rest;
  s3_writer *w;
  char sha[65];
  EVP_MD_CTX *check;
  char *rbuf;
  size_t rlen;
  int64_t off;
  int io_err;
  int finishing;
  int stream_mode; /* ENGINE_S3_TEST_STREAM: no SHA-256 up front */
} put_job;

static void put_free(put_job *j) {
  if (j->fd >= 0) close(j->fd);
  aws_cfg_free(&j->cfg);
  EVP_MD_CTX_free(j->check);
  free(j->url);
  free(j->file);
  free(j->storage_class);
  s3_at_rest_free(&j->at_rest);
  free(j->rbuf);
  free(j);
}

static void put_destroy(eng_op *op) { put_free((put_job *)(void *)op); }

static void put_end(put_job *j, int rc) { eng_op_finish(&j->op, rc); }

static void put_writer_gone(void *ud) { eng_op_release(ud); }

/* Finished: a writer still open is aborted (no partial object, no pending
 * upload), and done() waits until its abort request is over. */
static void put_on_finish(eng_op *op) {
  put_job *j = (put_job *)(void *)op;
  if (!j->w) return;
  s3_writer *w = j->w;
  j->w = NULL;
  eng_op_hold(op);
  s3_writer_abort_then(w, put_writer_gone, op);
}

static void put_on_cancel(eng_op *op) {
  put_job *j = (put_job *)(void *)op;
  eng_op_fail(op, ENG_ERR_CANCELLED,
              "upload of %s to %s cancelled: the multipart upload was aborted",
              j->file, j->url);
}

static void put_hash_fn(void *ud) {
  put_job *j = ud;
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  unsigned char md[32];
  unsigned int mdlen = 0;
  char *buf = eng_xmalloc(1 << 20);
  EVP_DigestInit_ex(m, EVP_sha256(), NULL);
  int64_t off = 0;
  for (;;) {
    ssize_t n = pread(j->fd, buf, 1 << 20, off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      j->io_err = errno;
      break;
    }
    if (n == 0) break;
    EVP_DigestUpdate(m, buf, (size_t)n);
    off += n;
  }
  EVP_DigestFinal_ex(m, md, &mdlen);
  EVP_MD_CTX_free(m);
  free(buf);
  aws_hex(md, 32, j->sha);
}

static void put_read_fn(void *ud) {
  put_job *j = ud;
  j->rlen = 0;
  while (j->rlen < j->part_size) {
    ssize_t n = pread(j->fd, j->rbuf + j->rlen, j->part_size - j->rlen,
                      j->off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      j->io_err = errno;
      return;
    }
    if (n == 0) break;
    j->rlen += (size_t)n;
    j->off += n;
  }
  EVP_DigestUpdate(j->check, j->rbuf, j->rlen);
}

static void put_read_next(put_job *j);

static void put_finished(void *ud, int rc, json_t *info) {
  put_job *j = ud;
  j->w = NULL; /* the writer frees itself after this */
  if (rc == ENG_OK) {
    H->output(j->op.call, "url", json_string(j->url));
    H->output(j->op.call, "etag",
              jstr_or_empty(json_string_value(json_object_get(info, "etag"))));
    H->output(j->op.call, "bytes", json_integer((json_int_t)j->size));
    H->output(j->op.call, "sha256", json_string(j->sha));
    H->output(j->op.call, "version_id",
              jstr_or_empty(json_string_value(
                  json_object_get(info, "version_id"))));
    H->output(j->op.call, "parts",
              json_integer(json_integer_value(json_object_get(info, "parts"))));
    H->output(j->op.call, "checksum_stored",
              jstr_or_empty(json_string_value(
                  json_object_get(info, "checksum_stored"))));
    H->log(j->op.call, ENG_LOG_INFO, "uploaded %s to %s (%lld bytes, sha256 %s)",
           j->file, j->url, (long long)j->size, j->sha);
  }
  json_decref(info);
  put_end(j, rc);
}

static void put_written(void *ud, int rc) {
  put_job *j = ud;
  if (j->op.finished) return;
  if (rc != ENG_OK) {
    put_end(j, rc); /* the writer recorded the message */
    return;
  }
  put_read_next(j);
}

/* A worker's after(): 1 when the job failed on a read error and the
 * caller must stop. (eng_op skips after() once the op finished.) */
static int put_work_ended(put_job *j) {
  if (!j->io_err) return 0;
  eng_op_fail(&j->op, ENG_ERR_IO, "reading %s: %s", j->file,
              strerror(j->io_err));
  return 1;
}

static void put_read_after(void *ud) {
  put_job *j = ud;
  if (put_work_ended(j)) return;
  if (j->rlen == 0) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    char hex[65];
    EVP_DigestFinal_ex(j->check, md, &mdlen);
    aws_hex(md, 32, hex);
    if (j->stream_mode) memcpy(j->sha, hex, 65);
    if (strcmp(hex, j->sha) != 0 || j->off != j->size) {
      H->fail(j->op.call,
              "%s changed while it was uploaded (SHA-256 %s before, %s "
              "after): the upload was aborted",
              j->file, j->sha, hex);
      put_end(j, ENG_ERR_CHECKSUM);
      return;
    }
    j->finishing = 1;
    int rc = s3_writer_finish(j->w, j->sha, put_finished, j);
    if (rc != ENG_OK) put_end(j, rc);
    return;
  }
  int rc = s3_writer_write(j->w, j->rbuf, j->rlen, put_written, j);
  if (rc != ENG_OK) put_end(j, rc);
}

static void put_read_next(put_job *j) {
  if (eng_op_work(&j->op, put_read_fn, put_read_after, j) != ENG_OK) {
    put_read_fn(j);
    put_read_after(j);
  }
}

static void put_hash_after(void *ud) {
  put_job *j = ud;
  if (put_work_ended(j)) return;
  s3_write_opts o = {j->part_size, j->concurrency, j->storage_class,
                     j->stream_mode ? NULL : j->sha, &j->at_rest};
  char err[512];
  int rc = s3_writer_open(j->op.call, &j->cfg, j->url, &o, &j->w, err,
                          sizeof err);
  if (rc != ENG_OK) {
    H->fail(j->op.call, "%s", err);
    put_end(j, rc);
    return;
  }
  s3_writer_set_size(j->w, j->size);
  j->check = EVP_MD_CTX_new();
  EVP_DigestInit_ex(j->check, EVP_sha256(), NULL);
  j->rbuf = eng_xmalloc(j->part_size);
  put_read_next(j);
}

static int put_start(eng_call *call, const json_t *p) {
  char err[512];
  put_job *j = eng_xcalloc(1, sizeof *j);
  j->fd = -1;
  j->url = eng_xstrdup(pstr(p, "url"));
  j->file = eng_xstrdup(pstr(p, "file"));
  int64_t ps = pint(p, "part_size", (int64_t)S3_DEF_PART);
  int64_t cc = pint(p, "concurrency", 4);
  const char *sc = pstr(p, "storage_class");
  j->storage_class = *sc ? eng_xstrdup(sc) : NULL;
  char *b, *k;
  int rc = s3_url_parse(j->url, &b, &k, 0, err, sizeof err);
  if (rc == ENG_OK) {
    free(b);
    free(k);
    if (ps < (int64_t)S3_MIN_PART || ps > (int64_t)S3_MAX_PART) {
      snprintf(err, sizeof err,
               "part_size %lld is out of range: S3 parts are 5 MiB "
               "(5242880) to 5 GiB",
               (long long)ps);
      rc = ENG_ERR_INVALID;
    } else if (cc < 1 || cc > 64) {
      snprintf(err, sizeof err, "concurrency %lld is out of range (1 to 64)",
               (long long)cc);
      rc = ENG_ERR_INVALID;
    }
  }
  if (rc == ENG_OK) rc = s3_at_rest_parse(p, now_s(), &j->at_rest, err, sizeof err);
  if (rc == ENG_OK) rc = aws_cfg_load(s3_host, call, p, "s3", &j->cfg, err, sizeof err);
  if (rc == ENG_OK) {
    j->fd = open(j->file, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (j->fd < 0 || fstat(j->fd, &st) != 0) {
      snprintf(err, sizeof err, "cannot open %s: %s", j->file,
               strerror(errno));
      rc = errno == ENOENT ? ENG_ERR_NOTFOUND : ENG_ERR_IO;
    } else if (!S_ISREG(st.st_mode)) {
      snprintf(err, sizeof err, "%s is not a regular file", j->file);
      rc = ENG_ERR_INVALID;
    } else {
      j->size = (int64_t)st.st_size;
    }
  }
  if (rc != ENG_OK) {
    H->fail(call, "%s", err);
    put_free(j);
    return rc;
  }
  j->part_size = (size_t)ps;
  j->concurrency = (int)cc;
  eng_op_init(&j->op, H, call, put_destroy);
  j->op.on_finish = put_on_finish;
  j->op.on_cancel = put_on_cancel;
  const char *sm = getenv("ENGINE_S3_TEST_STREAM");
  j->stream_mode = sm && !strcmp(sm, "1");
  if (j->stream_mode) {
    put_hash_after(j);
    return ENG_OK;
  }
  if (eng_op_work(&j->op, put_hash_fn, put_hash_after, j) != ENG_OK) {
    put_hash_fn(j);
    put_hash_after(j);
  }
  return ENG_OK;
}

/* ======================================================================== */
/* get                                                                       */
/* ======================================================================== */

#define GET_FLUSH ((size_t)1 << 20)
#define GET_HIGH ((size_t)4 << 20)

typedef struct get_job {
  eng_call *call;
  aws_cfg cfg;
  char *url, *file, *partial;
  int verify;
  int fd;
  s3_reader *r;
  eng_strbuf buf, fbuf;
  int flushing, paused, ended, closing, cancelled, finished;
  int io_err;
  int64_t got;
  int end_rc;
  json_t *info;
  char err[1024];
} get_job;

static void get_free(get_job *j) {
  if (j->fd >= 0) close(j->fd);
  aws_cfg_free(&j->cfg);
  eng_strbuf_free(&j->buf);
  eng_strbuf_free(&j->fbuf);
  json_decref(j->info);
  free(j->url);
  free(j->file);
  free(j->partial);
  free(j);
}

static void get_flush_fn(void *ud) {
  get_job *j = ud;
  size_t off = 0;
  while (off < j->fbuf.len) {
    ssize_t n = write(j->fd, j->fbuf.data + off, j->fbuf.len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      j->io_err = errno;
      return;
    }
    off += (size_t)n;
  }
}

static void get_close_fn(void *ud) {
  get_job *j = ud;
  if (fsync(j->fd) != 0 && !j->io_err) j->io_err = errno;
  if (close(j->fd) != 0 && !j->io_err) j->io_err = errno;
  j->fd = -1;
}

static void get_conclude(get_job *j);

static void get_close_after(void *ud, int status) {
  get_job *j = ud;
  (void)status;
  j->closing = 0;
  get_conclude(j);
}

static void get_start_flush(get_job *j);

/* Everything is on disk or failed: close, check, rename or remove. */
static void get_finish(get_job *j) {
  if (j->flushing || j->closing || j->finished) return;
  if (j->end_rc == ENG_OK && !j->io_err && j->buf.len > 0) {
    get_start_flush(j);
    return;
  }
  if (j->fd >= 0) {
    j->closing = 1;
    if (H->work(j->call, get_close_fn, get_close_after, j) == ENG_OK) return;
    get_close_fn(j);
    j->closing = 0;
  }
  get_conclude(j);
}

static void get_conclude(get_job *j) {
  j->finished = 1;
  int rc = j->end_rc;
  const char *sha = json_string_value(json_object_get(j->info, "sha256"));
  const char *exp =
      json_string_value(json_object_get(j->info, "expected_sha256"));
  if (j->cancelled && rc == ENG_OK) rc = ENG_ERR_CANCELLED;
  if (rc == ENG_OK && j->io_err) {
    rc = ENG_ERR_IO;
    H->fail(j->call, "writing %s: %s", j->partial, strerror(j->io_err));
  }
  if (rc == ENG_OK && j->verify && exp && sha && strcmp(exp, sha) != 0) {
    rc = ENG_ERR_CHECKSUM;
    H->fail(j->call,
            "checksum mismatch: %s has SHA-256 %s, but its recorded SHA-256 "
            "is %s: the object is corrupt or was replaced; %s was not "
            "written",
            j->url, sha, exp, j->file);
  }
  if (rc == ENG_OK && rename(j->partial, j->file) != 0) {
    rc = ENG_ERR_IO;
    H->fail(j->call, "renaming %s to %s: %s", j->partial, j->file,
            strerror(errno));
  }
  if (rc != ENG_OK) {
    unlink(j->partial);
    if (rc == ENG_ERR_CANCELLED)
      H->fail(j->call, "download of %s cancelled", j->url);
    else if (j->end_rc != ENG_OK && *j->err)
      H->fail(j->call, "%s", j->err);
  } else {
    int64_t bytes = json_integer_value(json_object_get(j->info, "bytes"));
    const char *lm =
        json_string_value(json_object_get(j->info, "last_modified"));
    if (j->verify && !exp)
      H->log(j->call, ENG_LOG_WARN,
             "%s has no recorded SHA-256 (no x-amz-meta-sha256, no "
             "%s.sha256): downloaded without verification",
             j->url, j->url);
    H->output(j->call, "file", json_string(j->file));
    H->output(j->call, "url", json_string(j->url)); /* where it came from */
    H->output(j->call, "bytes", json_integer((json_int_t)bytes));
    H->output(j->call, "sha256", jstr_or_empty(sha));
    H->output(j->call, "last_modified", jstr_or_empty(lm));
    H->output(j->call, "verified", json_boolean(j->verify && exp));
    H->output(j->call, "expected_sha256", jstr_or_empty(exp));
  }
  eng_call *c = j->call;
  get_free(j);
  H->done(c, rc);
}

static void get_flush_after(void *ud, int status) {
  get_job *j = ud;
  (void)status;
  j->flushing = 0;
  j->fbuf.len = 0;
  if (j->io_err && j->r) {
    s3_reader_cancel(j->r); /* on_end follows */
    return;
  }
  if (j->ended) {
    get_finish(j);
    return;
  }
  if (j->buf.len >= GET_FLUSH) {
    get_start_flush(j);
  } else if (j->paused && j->r) {
    j->paused = 0;
    s3_reader_pause(j->r, 0); /* may deliver at once */
  }
}

static void get_start_flush(get_job *j) {
  eng_strbuf t = j->fbuf;
  j->fbuf = j->buf;
  j->buf = t;
  j->buf.len = 0;
  j->flushing = 1;
  if (H->work(j->call, get_flush_fn, get_flush_after, j) != ENG_OK) {
    get_flush_fn(j);
    get_flush_after(j, 0);
  }
}

static void get_on_data(void *ud, const char *buf, size_t len) {
  get_job *j = ud;
  eng_strbuf_add(&j->buf, buf, len);
  if (!j->flushing && j->buf.len >= GET_FLUSH) {
    get_start_flush(j);
  } else if (j->flushing && j->buf.len >= GET_HIGH && !j->paused && j->r) {
    j->paused = 1;
    s3_reader_pause(j->r, 1);
  }
  j->got += (int64_t)len;
  H->progress(j->call, j->got, -1);
}

static void get_on_end(void *ud, int rc, json_t *info) {
  get_job *j = ud;
  j->r = NULL;
  j->ended = 1;
  j->end_rc = rc;
  j->info = info;
  const char *e = json_string_value(json_object_get(info, "error"));
  if (e) snprintf(j->err, sizeof j->err, "%s", e);
  get_finish(j);
}

static void get_on_cancel(void *ud) {
  get_job *j = ud;
  j->cancelled = 1;
  if (j->r) s3_reader_cancel(j->r);
}

static int get_start(eng_call *call, const json_t *p) {
  char err[1024];
  get_job *j = eng_xcalloc(1, sizeof *j);
  j->call = call;
  j->fd = -1;
  j->url = eng_xstrdup(pstr(p, "url"));
  j->file = eng_xstrdup(pstr(p, "file"));
  j->partial = eng_asprintf("%s.partial", j->file);
  json_t *v = json_object_get(p, "verify");
  j->verify = v ? json_is_true(v) : 1;
  int rc = aws_cfg_load(s3_host, call, p, "s3", &j->cfg, err, sizeof err);
  if (rc == ENG_OK) {
    int e = mkdir_parent(j->file);
    j->fd = e ? -1 : open(j->partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                          0644);
    if (j->fd < 0) {
      snprintf(err, sizeof err, "cannot create %s: %s", j->partial,
               strerror(e ? e : errno));
      rc = ENG_ERR_IO;
    }
  }
  s3_at_rest want;
  if (rc == ENG_OK) rc = s3_at_rest_parse(p, 0, &want, err, sizeof err);
  if (rc == ENG_OK) {
    rc = s3_reader_open(call, &j->cfg, j->url, j->verify, get_on_data,
                        get_on_end, j, &j->r, err, sizeof err);
    if (rc == ENG_OK) s3_reader_expect(j->r, &want);
    s3_at_rest_free(&want);
  }
  if (rc != ENG_OK) {
    if (j->fd >= 0) unlink(j->partial);
    H->fail(call, "%s", err);
    get_free(j);
    return rc;
  }
  H->on_cancel(call, get_on_cancel, j);
  return ENG_OK;
}

/* ======================================================================== */
/* head                                                                      */
/* ======================================================================== */

typedef struct head_job {
  eng_call *call;
  aws_cfg cfg;
  char *url, *bucket, *key;
  s3_req *req;
} head_job;

static void head_free(head_job *j) {
  s3_req_free(j->req);
  aws_cfg_free(&j->cfg);
  free(j->url);
  free(j->bucket);
  free(j->key);
  free(j);
}

static void head_end(head_job *j, int rc) {
  eng_call *c = j->call;
  head_free(j);
  H->done(c, rc);
}

static void head_sidecar(void *ud, int rc, const char *hex, const char *err) {
  head_job *j = ud;
  if (rc != ENG_OK) {
    H->fail(j->call, "%s", err ? err : eng_strerror(rc));
    head_end(j, rc);
    return;
  }
  H->output(j->call, "sha256", jstr_or_empty(hex));
  H->output(j->call, "sha256_source", json_string(hex ? "sidecar" : "none"));
  head_end(j, ENG_OK);
}

/* HEAD of a missing key: is it the key or the whole bucket? */
static void head_bucket_done(void *ud, s3_req *r) {
  head_job *j = ud;
  char msg[1024];
  int rc = s3_req_check(r, msg, sizeof msg);
  if (r->status == 404) {
    H->fail(j->call,
            "bucket '%s' does not exist (NoSuchBucket) at %s: check the URL "
            "and the endpoint",
            j->bucket, j->cfg.endpoint);
    head_end(j, ENG_ERR_NOTFOUND);
    return;
  }
  (void)rc; /* 403 etc.: the key's 404 stands */
  H->output(j->call, "exists", json_false());
  head_end(j, ENG_OK);
}

static void head_done(void *ud, s3_req *r) {
  head_job *j = ud;
  char msg[1024];
  int rc = s3_req_check(r, msg, sizeof msg);
  if (rc == ENG_ERR_NOTFOUND && r->status == 404) {
    j->req = s3_req_new(j->call, &j->cfg, "HEAD", j->bucket, "", NULL);
    s3_req_free(r);
    if (s3_req_start(j->req, head_bucket_done, j) != ENG_OK) {
      H->output(j->call, "exists", json_false());
      head_end(j, ENG_OK);
    }
    return;
  }
  if (rc != ENG_OK) {
    H->fail(j->call, "%s", msg);
    head_end(j, rc);
    return;
  }
  int64_t t = aws_parse_time(r->last_modified);
  char iso[32] = "";
  if (t >= 0) aws_format_time(t, iso);
  H->output(j->call, "exists", json_true());
  H->output(j->call, "bytes", json_integer(r->content_length));
  H->output(j->call, "last_modified", json_string(iso));
  H->output(j->call, "age_s", json_integer(t >= 0 ? now_s() - t : -1));
  const char *etag = r->etag ? r->etag : "";
  char *e = eng_xstrdup(etag[0] == '"' ? etag + 1 : etag);
  size_t n = strlen(e);
  if (n && e[n - 1] == '"') e[n - 1] = '\0';
  H->output(j->call, "etag", json_string(e));
  free(e);
  H->output(j->call, "version_id", jstr_or_empty(r->version_id));
  H->output(j->call, "content_type", jstr_or_empty(r->content_type));
  H->output(j->call, "sse", jstr_or_empty(r->sse));
  int64_t until = r->lock_until ? aws_parse_time(r->lock_until) : -1;
  char until_iso[32] = "";
  if (until >= 0) aws_format_time(until, until_iso);
  H->output(j->call, "lock_mode", jstr_or_empty(r->lock_mode));
  H->output(j->call, "lock_until", json_string(until_iso));
  H->output(j->call, "locked", json_boolean(r->lock_mode && until > now_s()));
  if (r->meta_sha256 && aws_is_sha256(r->meta_sha256)) {
    H->output(j->call, "sha256", json_string(r->meta_sha256));
    H->output(j->call, "sha256_source", json_string("metadata"));
    head_end(j, ENG_OK);
    return;
  }
  j->req = NULL;
  s3_req_free(r);
  if (s3_sidecar_fetch(j->call, &j->cfg, j->bucket, j->key, head_sidecar, j) !=
      ENG_OK) {
    H->output(j->call, "sha256", json_string(""));
    head_end(j, ENG_OK);
  }
}

static int head_start(eng_call *call, const json_t *p) {
  char err[1024];
  head_job *j = eng_xcalloc(1, sizeof *j);
  j->call = call;
  j->url = eng_xstrdup(pstr(p, "url"));
  int rc = s3_url_parse(j->url, &j->bucket, &j->key, 0, err, sizeof err);
  if (rc == ENG_OK) rc = aws_cfg_load(s3_host, call, p, "s3", &j->cfg, err, sizeof err);
  if (rc == ENG_OK) {
    j->req = s3_req_new(call, &j->cfg, "HEAD", j->bucket, j->key, NULL);
    rc = s3_req_start(j->req, head_done, j);
    if (rc != ENG_OK) snprintf(err, sizeof err, "HEAD %s: %s", j->url,
                               eng_strerror(rc));
  }
  if (rc != ENG_OK) {
    H->fail(call, "%s", err);
    head_free(j);
    return rc;
  }
  return ENG_OK;
}

/* ======================================================================== */
/* delete                                                                    */
/* ======================================================================== */

typedef struct del_job {
  eng_call *call;
  aws_cfg cfg;
  char *url, *bucket, *key;
  int existed;
  int stage; /* 0 head, 1 delete, 2 sidecar */
} del_job;

static void del_free(del_job *j) {
  aws_cfg_free(&j->cfg);
  free(j->url);
  free(j->bucket);
  free(j->key);
  free(j);
}

static void del_end(del_job *j, int rc) {
  eng_call *c = j->call;
  if (rc == ENG_OK) H->output(c, "deleted", json_boolean(j->existed));
  del_free(j);
  H->done(c, rc);
}

static void del_step(void *ud, s3_req *r);

static void del_next(del_job *j, const char *method, const char *key) {
  s3_req *r = s3_req_new(j->call, &j->cfg, method, j->bucket, key, NULL);
  int rc = s3_req_start(r, del_step, j);
  if (rc != ENG_OK) {
    s3_req_free(r);
    H->fail(j->call, "%s %s: %s", method, j->url, eng_strerror(rc));
    del_end(j, rc);
  }
}

static void del_step(void *ud, s3_req *r) {
  del_job *j = ud;
  char msg[1024];
  int rc = s3_req_check(r, msg, sizeof msg);
  int nokey = rc == ENG_ERR_NOTFOUND && r->status == 404 &&
              strcmp(s3_req_error_code(r), "NoSuchBucket") != 0;
  s3_req_free(r);
  if (rc != ENG_OK && !nokey) {
    H->fail(j->call, "%s", msg);
    del_end(j, rc);
    return;
  }
  if (j->stage == 0) {
    j->existed = rc == ENG_OK;
    j->stage = 1;
    del_next(j, "DELETE", j->key);
  } else if (j->stage == 1) {
    H->journal_removed(j->call, "object", j->url);
    H->log(j->call, ENG_LOG_INFO, "%s %s", j->url,
           j->existed ? "deleted" : "did not exist");
    j->stage = 2;
    char *sk = eng_asprintf("%s.sha256", j->key);
    del_next(j, "DELETE", sk);
    free(sk);
  } else {
    /* the writer journals the sidecar as an object of its own */
    char *su = eng_asprintf("%s.sha256", j->url);
    H->journal_removed(j->call, "object", su);
    free(su);
    del_end(j, ENG_OK);
  }
}

static int del_start(eng_call *call, const json_t *p) {
  char err[1024];
  del_job *j = eng_xcalloc(1, sizeof *j);
  j->call = call;
  j->url = eng_xstrdup(pstr(p, "url"));
  int rc = s3_url_parse(j->url, &j->bucket, &j->key, 0, err, sizeof err);
  if (rc != ENG_OK) {
    H->fail(call, "%s", err);
    del_free(j);
    return rc;
  }
  /* The resolved target, just before acting. */
  char *canon = eng_asprintf("s3://%s/%s", j->bucket, j->key);
  rc = H->guard_target(call, ENG_TARGET_BUCKET, canon, NULL);
  free(canon);
  if (rc != ENG_OK) {
    del_free(j);
    H->done(call, ENG_ERR_REFUSED);
    return ENG_OK;
  }
  rc = aws_cfg_load(s3_host, call, p, "s3", &j->cfg, err, sizeof err);
  if (rc != ENG_OK) {
    H->fail(call, "%s", err);
    del_free(j);
    return rc;
  }
  del_next(j, "HEAD", j->key);
  return ENG_OK;
}

/* ======================================================================== */
/* list                                                                      */
/* ======================================================================== */

typedef struct obj {
  char *key;
  int64_t bytes;
  int64_t mtime;
  char *etag;
} obj;

typedef struct list_job {
  eng_call *call;
  aws_cfg cfg;
  char *bucket, *prefix, *suffix, *pick;
  int64_t within_s;
  obj *objs;
  size_t n, cap;
  int pages;
} list_job;

static void list_free(list_job *j) {
  for (size_t i = 0; i < j->n; i++) {
    free(j->objs[i].key);
    free(j->objs[i].etag);
  }
  free(j->objs);
  aws_cfg_free(&j->cfg);
  free(j->bucket);
  free(j->prefix);
  free(j->suffix);
  free(j->pick);
  free(j);
}

static void list_end(list_job *j, int rc) {
  eng_call *c = j->call;
  list_free(j);
  H->done(c, rc);
}

static int check_pick(const json_t *v, char *err, size_t errlen) {
  int64_t within;
  return aws_pick_parse(json_string_value(v), &within, err, errlen) ? 1 : 0;
}


static int ends_with(const char *s, const char *suf) {
  size_t n = strlen(s), m = strlen(suf);
  return n >= m && strcmp(s + n - m, suf) == 0;
}

static int obj_cmp_key(const void *a, const void *b) {
  return strcmp(((const obj *)a)->key, ((const obj *)b)->key);
}

static json_t *obj_json(const list_job *j, const obj *o, int64_t now) {
  char iso[32];
  aws_format_time(o->mtime, iso);
  char *url = eng_asprintf("s3://%s/%s", j->bucket, o->key);
  json_t *v = json_pack("{s:s, s:s, s:I, s:s, s:I, s:s}", "key", o->key,
                        "url", url, "bytes", (json_int_t)o->bytes,
                        "last_modified", iso, "age_s",
                        (json_int_t)(now - o->mtime), "etag",
                        o->etag ? o->etag : "");
  free(url);
  return v;
}

static void list_report(list_job *j) {
  int64_t now = now_s();
  if (j->n) qsort(j->objs, j->n, sizeof *j->objs, obj_cmp_key);
  /* Our sidecars (KEY.sha256 next to KEY) are not backups of their own. */
  json_t *arr = json_array();
  obj **keep = eng_xcalloc(j->n, sizeof *keep);
  size_t nk = 0;
  for (size_t i = 0; i < j->n; i++) {
    obj *o = &j->objs[i];
    if (ends_with(o->key, ".sha256")) {
      size_t bl = strlen(o->key) - 7;
      obj probe = {0};
      char *base = eng_xmalloc(bl + 1);
      memcpy(base, o->key, bl);
      base[bl] = '\0';
      probe.key = base;
      int has = bsearch(&probe, j->objs, j->n, sizeof *j->objs,
                        obj_cmp_key) != NULL;
      free(base);
      if (has) continue;
    }
    if (j->suffix && !ends_with(o->key, j->suffix)) continue;
    keep[nk++] = o;
    json_array_append_new(arr, obj_json(j, o, now));
  }
  H->output(j->call, "objects", arr);
  H->output(j->call, "count", json_integer((json_int_t)nk));
  char where[1200];
  snprintf(where, sizeof where, "s3://%s/%s%s%s", j->bucket, j->prefix,
           j->suffix ? " ending in " : "", j->suffix ? j->suffix : "");
  if (!strcmp(j->pick, "none")) {
    H->output(j->call, "picked", json_null());
    free(keep);
    list_end(j, ENG_OK);
    return;
  }
  int64_t *times = eng_xcalloc(nk, sizeof *times);
  const char **names = eng_xcalloc(nk, sizeof *names);
  for (size_t i = 0; i < nk; i++) {
    times[i] = keep[i]->mtime;
    names[i] = keep[i]->key;
  }
  long k = aws_pick(j->pick, j->within_s, times, names, nk, now);
  obj *best = k >= 0 ? keep[k] : NULL;
  free(times);
  free(names);
  free(keep);
  if (!best) {
    H->fail(j->call,
            "no object under %s%s: nothing to pick (pick: %s)", where,
            strcmp(j->pick, "latest") ? " recent enough" : "", j->pick);
    list_end(j, ENG_ERR_NOTFOUND);
    return;
  }
  H->output(j->call, "picked", obj_json(j, best, now));
  H->log(j->call, ENG_LOG_INFO, "picked s3://%s/%s (%lld bytes, %lld s old)",
         j->bucket, best->key, (long long)best->bytes,
         (long long)(now - best->mtime));
  list_end(j, ENG_OK);
}

/* One <Contents> of a ListObjectsV2 page. */
static void list_each(void *ud, const aws_xml *c) {
  list_job *j = ud;
  const char *k = aws_xml_text(c, "Key");
  if (j->n == j->cap) {
    j->cap = j->cap ? j->cap * 2 : 64;
    j->objs = eng_xrealloc(j->objs, j->cap * sizeof *j->objs);
  }
  obj *o = &j->objs[j->n++];
  o->key = eng_xstrdup(k);
  const char *sz = aws_xml_text(c, "Size");
  o->bytes = sz ? strtoll(sz, NULL, 10) : 0;
  o->mtime = aws_parse_time(aws_xml_text(c, "LastModified"));
  const char *e = aws_xml_text(c, "ETag");
  o->etag = NULL;
  if (e) {
    size_t n = strlen(e);
    if (n >= 2 && e[0] == '"' && e[n - 1] == '"') {
      o->etag = eng_xmalloc(n - 1);
      memcpy(o->etag, e + 1, n - 2);
      o->etag[n - 2] = '\0';
    } else {
      o->etag = eng_xstrdup(e);
    }
  }
}

static void list_page(list_job *j, const char *token);

static void list_done(void *ud, s3_req *r) {
  list_job *j = ud;
  char msg[1024];
  int rc = s3_req_check(r, msg, sizeof msg);
  if (rc != ENG_OK) {
    s3_req_free(r);
    H->fail(j->call, "listing s3://%s/%s: %s", j->bucket, j->prefix, msg);
    list_end(j, rc);
    return;
  }
  char *tok = NULL;
  rc = s3_list_page(r->body.data, r->body.len, list_each, j, &tok);
  s3_req_free(r);
  if (rc != ENG_OK) {
    H->fail(j->call, "listing s3://%s/%s: S3's answer is not a usable "
                     "ListBucketResult", j->bucket, j->prefix);
    list_end(j, ENG_ERR_PROTOCOL);
    return;
  }
  if (tok) {
    list_page(j, tok);
    free(tok);
    return;
  }
  list_report(j);
}

static void list_page(list_job *j, const char *token) {
  char *q = s3_list_query(j->prefix, token);
  j->pages++;
  s3_req *r = s3_req_new(j->call, &j->cfg, "GET", j->bucket, "", q);
  free(q);
  int rc = s3_req_start(r, list_done, j);
  if (rc != ENG_OK) {
    s3_req_free(r);
    H->fail(j->call, "listing s3://%s/%s: %s", j->bucket, j->prefix,
            eng_strerror(rc));
    list_end(j, rc);
  }
}

static int list_start(eng_call *call, const json_t *p) {
  char err[1024];
  list_job *j = eng_xcalloc(1, sizeof *j);
  j->call = call;
  j->pick = eng_xstrdup(*pstr(p, "pick") ? pstr(p, "pick") : "latest");
  const char *suf = pstr(p, "suffix");
  j->suffix = *suf ? eng_xstrdup(suf) : NULL;
  int rc = s3_url_parse(pstr(p, "url"), &j->bucket, &j->prefix, 1, err,
                        sizeof err);
  if (rc == ENG_OK && aws_pick_parse(j->pick, &j->within_s, err, sizeof err) != 0)
    rc = ENG_ERR_INVALID;
  if (rc == ENG_OK) rc = aws_cfg_load(s3_host, call, p, "s3", &j->cfg, err, sizeof err);
  if (rc != ENG_OK) {
    H->fail(call, "%s", err);
    list_free(j);
    return rc;
  }
  list_page(j, NULL);
  return ENG_OK;
}

/* ======================================================================== */
/* abort_upload                                                              */
/* ======================================================================== */

typedef struct ab_job {
  eng_call *call;
  aws_cfg cfg;
  char *url, *bucket, *key;
  char **ids;
  size_t n, next;
  int aborted;
  int every; /* no upload_id: every pending upload of the key */
} ab_job;

static void ab_free(ab_job *j) {
  for (size_t i = 0; i < j->n; i++) free(j->ids[i]);
  free(j->ids);
  aws_cfg_free(&j->cfg);
  free(j->url);
  free(j->bucket);
  free(j->key);
  free(j);
}

static void ab_end(ab_job *j, int rc) {
  eng_call *c = j->call;
  if (rc == ENG_OK && j->every) {
    /* the writer journals an upload before it exists, under this id (the
     * intent whose undo this is): none of the key's is pending now */
    char *id = s3_upload_journal_id(j->bucket, j->key);
    H->journal_removed(c, "multipart_upload", id);
    free(id);
  }
  if (rc == ENG_OK) H->output(c, "aborted", json_integer(j->aborted));
  ab_free(j);
  H->done(c, rc);
}

static void ab_next(ab_job *j);

static void ab_done(void *ud, s3_req *r) {
  ab_job *j = ud;
  char msg[1024];
  int rc = s3_req_check(r, msg, sizeof msg);
  s3_req_free(r);
  if (rc == ENG_OK) {
    j->aborted++;
    char *id = eng_asprintf("%s?uploadId=%s", j->url, j->ids[j->next - 1]);
    H->journal_removed(j->call, "multipart_upload", id);
    free(id);
  } else if (rc != ENG_ERR_NOTFOUND) {
    H->fail(j->call, "%s", msg);
    ab_end(j, rc);
    return;
  }
  ab_next(j);
}

static void ab_next(ab_job *j) {
  if (j->next >= j->n) {
    ab_end(j, ENG_OK);
    return;
  }
  char *q = s3_upload_query(j->ids[j->next++]);
  s3_req *r = s3_req_new(j->call, &j->cfg, "DELETE", j->bucket, j->key, q);
  free(q);
  int rc = s3_req_start(r, ab_done, j);
  if (rc != ENG_OK) {
    s3_req_free(r);
    ab_end(j, rc);
  }
}

static void ab_listed(void *ud, s3_req *r) {
  ab_job *j = ud;
  char msg[1024];
  int rc = s3_req_check(r, msg, sizeof msg);
  if (rc != ENG_OK) {
    s3_req_free(r);
    H->fail(j->call, "listing the multipart uploads of %s: %s", j->url, msg);
    ab_end(j, rc);
    return;
  }
  aws_xml *x = aws_xml_parse(r->body.data, r->body.len);
  s3_req_free(r);
  for (aws_xml *c = x ? x->child : NULL; c; c = c->next) {
    if (strcmp(c->name, "Upload") != 0) continue;
    const char *k = aws_xml_text(c, "Key");
    const char *id = aws_xml_text(c, "UploadId");
    if (!k || !id || strcmp(k, j->key) != 0) continue;
    j->ids = eng_xrealloc(j->ids, (j->n + 1) * sizeof *j->ids);
    j->ids[j->n++] = eng_xstrdup(id);
  }
  aws_xml_free(x);
  ab_next(j);
}

static int ab_start(eng_call *call, const json_t *p) {
  char err[1024];
  ab_job *j = eng_xcalloc(1, sizeof *j);
  j->call = call;
  j->url = eng_xstrdup(pstr(p, "url"));
  int rc = s3_url_parse(j->url, &j->bucket, &j->key, 0, err, sizeof err);
  if (rc == ENG_OK) rc = aws_cfg_load(s3_host, call, p, "s3", &j->cfg, err, sizeof err);
  if (rc != ENG_OK) {
    H->fail(call, "%s", err);
    ab_free(j);
    return rc;
  }
  const char *id = pstr(p, "upload_id");
  if (*id) {
    j->ids = eng_xcalloc(1, sizeof *j->ids);
    j->ids[j->n++] = eng_xstrdup(id);
    ab_next(j);
    return ENG_OK;
  }
  j->every = 1;
  char *pfx = aws_uri_encode(j->key, 0);
  char *q = eng_asprintf("prefix=%s&uploads=", pfx);
  free(pfx);
  s3_req *r = s3_req_new(call, &j->cfg, "GET", j->bucket, "", q);
  free(q);
  rc = s3_req_start(r, ab_listed, j);
  if (rc != ENG_OK) {
    s3_req_free(r);
    H->fail(call, "listing the multipart uploads of %s: %s", j->url,
            eng_strerror(rc));
    ab_free(j);
    return rc;
  }
  return ENG_OK;
}

/* ======================================================================== */
/* the stream scheme                                                         */
/* ======================================================================== */

static int sch_open_write(eng_call *call, const char *url, const json_t *opts,
                          void **impl) {
  char err[1024];
  aws_cfg cfg;
  *impl = NULL;
  int rc = aws_cfg_load(s3_host, call, opts, "s3", &cfg, err, sizeof err);
  if (rc != ENG_OK) {
    H->fail(call, "%s", err);
    return rc;
  }
  s3_write_opts o = {0};
  o.part_size = (size_t)pint(opts, "part_size", 0);
  o.concurrency = (int)pint(opts, "concurrency", 0);
  const char *sc = opts ? json_string_value(json_object_get(opts,
                                                            "storage_class"))
                        : NULL;
  o.storage_class = sc;
  s3_at_rest at_rest;
  rc = s3_at_rest_parse(opts, now_s(), &at_rest, err, sizeof err);
  o.at_rest = &at_rest;
  s3_writer *w;
  if (rc == ENG_OK) {
    rc = s3_writer_open(call, &cfg, url, &o, &w, err, sizeof err);
    s3_at_rest_free(&at_rest);
  }
  aws_cfg_free(&cfg);
  if (rc != ENG_OK) {
    H->fail(call, "%s", err);
    return rc;
  }
  *impl = w;
  return ENG_OK;
}

static int sch_write(void *impl, const void *buf, size_t len,
                     eng_stream_write_cb cb, void *ud) {
  return s3_writer_write(impl, buf, len, cb, ud);
}

static int sch_finish(void *impl, const char *sha256, eng_stream_done_cb cb,
                      void *ud) {
  return s3_writer_finish(impl, sha256, cb, ud);
}

static void sch_abort(void *impl) { s3_writer_abort(impl); }

static int sch_open_read(eng_call *call, const char *url, const json_t *opts,
                         eng_stream_data_cb on_data, eng_stream_done_cb on_end,
                         void *ud, void **impl) {
  char err[1024];
  aws_cfg cfg;
  *impl = NULL;
  int rc = aws_cfg_load(s3_host, call, opts, "s3", &cfg, err, sizeof err);
  if (rc != ENG_OK) {
    H->fail(call, "%s", err);
    return rc;
  }
  json_t *v = opts ? json_object_get(opts, "verify") : NULL;
  int want = !(v && json_is_false(v));
  s3_at_rest at_rest;
  rc = s3_at_rest_parse(opts, 0, &at_rest, err, sizeof err);
  s3_reader *r = NULL;
  if (rc == ENG_OK) {
    rc = s3_reader_open(call, &cfg, url, want, on_data, on_end, ud, &r, err,
                        sizeof err);
    if (rc == ENG_OK) s3_reader_expect(r, &at_rest);
    s3_at_rest_free(&at_rest);
  }
  aws_cfg_free(&cfg);
  if (rc != ENG_OK) {
    H->fail(call, "%s", err);
    return rc;
  }
  *impl = r;
  return ENG_OK;
}

static void sch_pause(void *impl, int paused) { s3_reader_pause(impl, paused); }
static void sch_cancel(void *impl) { s3_reader_cancel(impl); }

const eng_stream_scheme s3_scheme = {
    .scheme = "s3",
    .open_write = sch_open_write,
    .write = sch_write,
    .finish = sch_finish,
    .abort = sch_abort,
    .open_read = sch_open_read,
    .pause = sch_pause,
    .cancel = sch_cancel,
};

/* ======================================================================== */
/* declarations                                                              */
/* ======================================================================== */


static const eng_param put_params[] = {
    {.name = "file",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_FILE,
     .doc = "local file to upload"},
    {.name = "url",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_BUCKET,
     .doc = "destination s3://BUCKET/KEY (an existing object is replaced)"},
    P_ENDPOINT,
    P_REGION,
    P_SSE,
    P_LOCK,
    {.name = "storage_class",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "x-amz-storage-class (STANDARD, STANDARD_IA, GLACIER_IR, ...)"},
    {.name = "part_size",
     .type = ENG_T_INT,
     .flags = ENG_P_MIN | ENG_P_MAX,
     .min = 5242880,
     .max = 5368709120.0,
     .def = "8388608",
     .target = ENG_TARGET_NONE,
     .doc =
         "multipart part size in bytes (5 MiB to 5 GiB); files up to one part "
         "go up in a single PutObject"},
    {.name = "concurrency",
     .type = ENG_T_INT,
     .flags = ENG_P_MIN | ENG_P_MAX,
     .min = 1,
     .max = 64,
     .def = "4",
     .target = ENG_TARGET_NONE,
     .doc = "parts uploaded at once (1 to 64); memory is about concurrency x "
            "part_size"},
    P_END};
static const eng_output put_outputs[] = {
    {"url", ENG_T_STRING, "s3://BUCKET/KEY"},
    {"etag", ENG_T_STRING, "the object's ETag (without quotes)"},
    {"bytes", ENG_T_INT, "bytes uploaded"},
    {"sha256", ENG_T_STRING,
     "hex SHA-256 of the file, stored as x-amz-meta-sha256"},
    {"version_id", ENG_T_STRING, "version ID on versioned buckets, else \"\""},
    {"parts", ENG_T_INT, "multipart parts uploaded (0 for a single PUT)"},
    {"checksum_stored", ENG_T_STRING,
     "where the SHA-256 was recorded: metadata or sidecar"},
    O_END};

static const eng_param get_params[] = {
    {.name = "url",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_BUCKET,
     .doc = "object to download, s3://BUCKET/KEY"},
    {.name = "file",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_FILE,
     .doc =
         "local path to write (written as FILE.partial, renamed when complete "
         "and verified)"},
    {.name = "verify",
     .type = ENG_T_BOOL,
     .def = "true",
     .target = ENG_TARGET_NONE,
     .doc =
         "check the bytes against the object's recorded SHA-256 "
         "(x-amz-meta-sha256 or the KEY.sha256 sidecar); a mismatch fails and "
         "leaves no file"},
    P_ENDPOINT,
    P_REGION,
    P_SSE,
    P_END};
static const eng_output get_outputs[] = {
    {"file", ENG_T_STRING, "the local file"},
    {"url", ENG_T_STRING, "the object downloaded, s3://BUCKET/KEY (the local "
                          "file's origin: the evidence names it)"},
    {"bytes", ENG_T_INT, "bytes downloaded"},
    {"sha256", ENG_T_STRING, "hex SHA-256 of the bytes downloaded"},
    {"last_modified", ENG_T_STRING, "the object's Last-Modified (RFC 3339)"},
    {"verified", ENG_T_BOOL,
     "true when a recorded SHA-256 was found and matched"},
    {"expected_sha256", ENG_T_STRING, "the recorded SHA-256, or \"\""},
    O_END};

static const eng_param list_params[] = {
    {.name = "url",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_BUCKET,
     .doc = "s3://BUCKET/PREFIX to list (every key starting with PREFIX)"},
    {.name = "pick",
     .type = ENG_T_STRING,
     .def = "\"latest\"",
     .target = ENG_TARGET_NONE,
     .check = check_pick,
     .doc = "latest (newest Last-Modified), random_within:DURATION (a random "
            "object younger than DURATION, e.g. random_within:7d) or none; "
            "picking from nothing fails"},
    {.name = "suffix",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "only keys ending with this (e.g. .dump)"},
    P_ENDPOINT,
    P_REGION,
    P_END};
static const eng_output list_outputs[] = {
    {"objects", ENG_T_LIST,
     "[{key, url, bytes, last_modified, age_s, etag}] sorted by key; "
     "SHA-256 sidecars of listed objects are left out"},
    {"count", ENG_T_INT, "number of objects"},
    {"picked", ENG_T_MAP,
     "{url, key, bytes, last_modified, age_s, etag} or null (pick: none)"},
    O_END};

static const eng_param head_params[] = {{.name = "url",
                                         .type = ENG_T_STRING,
                                         .flags = ENG_P_REQUIRED,
                                         .target = ENG_TARGET_BUCKET,
                                         .doc = "s3://BUCKET/KEY"},
                                        P_ENDPOINT,
                                        P_REGION,
                                        P_END};
static const eng_output head_outputs[] = {
    {"exists", ENG_T_BOOL, "false when there is no such key (not an error)"},
    {"bytes", ENG_T_INT, "size (when it exists)"},
    {"sha256", ENG_T_STRING,
     "recorded SHA-256 (metadata, else sidecar), or \"\""},
    {"last_modified", ENG_T_STRING, "Last-Modified (RFC 3339)"},
    {"age_s", ENG_T_INT, "seconds since Last-Modified"},
    {"etag", ENG_T_STRING, "ETag without quotes"},
    {"version_id", ENG_T_STRING, "version ID on versioned buckets, else \"\""},
    {"content_type", ENG_T_STRING, "Content-Type, or \"\""},
    {"sha256_source", ENG_T_STRING,
     "where sha256 came from: metadata, sidecar or none"},
    {"sse", ENG_T_STRING,
     "server-side encryption: AES256 (SSE-S3), aws:kms (SSE-KMS) or \"\""},
    {"lock_mode", ENG_T_STRING,
     "Object Lock retention mode (GOVERNANCE, COMPLIANCE) or \"\""},
    {"lock_until", ENG_T_STRING, "Object Lock retain-until date (RFC 3339) or \"\""},
    {"locked", ENG_T_BOOL,
     "true while an Object Lock retention holds: nobody can delete this "
     "version (a drill checks its backup with it)"},
    O_END};

static const eng_param delete_params[] = {
    {.name = "url",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_BUCKET,
     .doc = "s3://BUCKET/KEY to delete (with its KEY.sha256 sidecar)"},
    P_ENDPOINT,
    P_REGION,
    P_END};
static const eng_output delete_outputs[] = {
    {"deleted", ENG_T_BOOL, "true when the object existed"}, O_END};

static const eng_param abort_params[] = {
    /* No guard target: aborting an unfinished upload cannot touch stored
     * objects, and cleanup must work in protected backup buckets too. */
    {.name = "url",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_NONE,
     .doc = "s3://BUCKET/KEY whose unfinished multipart upload(s) to abort"},
    {.name = "upload_id",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc =
         "the upload to abort; default: every pending upload of exactly KEY"},
    P_ENDPOINT,
    P_REGION,
    P_END};
static const eng_output abort_outputs[] = {
    {"aborted", ENG_T_INT, "uploads aborted"}, O_END};

const eng_action s3_actions[S3_N_ACTIONS] = {
    {.name = "put",
     .doc = "upload a local file (multipart for large files) with its "
            "SHA-256 as x-amz-meta-sha256",
     .side_effect = ENG_SIDE_CREATES,
     .flags = ENG_A_REPEAT_SAFE,
     .params = put_params,
     .outputs = put_outputs,
     .start = put_start},
    {.name = "get",
     .doc = "download an object to a local file, verifying its recorded "
            "SHA-256",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = get_params,
     .outputs = get_outputs,
     .start = get_start},
    {.name = "list",
     .doc = "list objects under a prefix and pick one (latest, random "
            "within an age)",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = list_params,
     .outputs = list_outputs,
     .start = list_start},
    {.name = "head",
     .doc = "metadata of an object; a missing key is exists: false",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = head_params,
     .outputs = head_outputs,
     .start = head_start},
    {.name = "delete",
     .doc = "delete an object (guarded: protected_buckets, ownership)",
     .side_effect = ENG_SIDE_DESTRUCTIVE,
     .flags = ENG_A_REPEAT_SAFE,
     .params = delete_params,
     .outputs = delete_outputs,
     .start = del_start},
    {.name = "abort_upload",
     .doc = "abort unfinished multipart uploads of a key (cleanup "
            "after a killed run)",
     .side_effect = ENG_SIDE_EXTERNAL,
     .flags = ENG_A_REPEAT_SAFE,
     .params = abort_params,
     .outputs = abort_outputs,
     .start = ab_start},
    {.name = "prune",
     .doc = "retention for an S3 prefix of backups: keep_last, keep_daily, "
            "keep_weekly, keep_monthly and min_age; never the newest, the "
            "newest drill-verified or a locked object (docs/retention.md)",
     .side_effect = ENG_SIDE_DESTRUCTIVE,
     .flags = ENG_A_REPEAT_SAFE,
     .params = s3_prune_params,
     .outputs = s3_prune_outputs,
     .start = s3_prune_start,
     .classify = s3_prune_classify,
     .describe = s3_prune_describe},
};
