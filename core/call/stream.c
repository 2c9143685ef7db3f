/* stream.c - byte streams (docs/plugins.md).
 *
 * Plugins move backup bytes through host->stream_*: the host hashes the
 * stored bytes with SHA-256, compresses with zstd or gzip (zlib) when
 * asked (or decompresses either on reads), and hands the bytes to a local file (async
 * uv_fs, written as PATH.partial and renamed on finish) or to the plugin
 * that serves the URL's scheme (s3://). With an age key (opts "age_key")
 * the bytes are encrypted after compression on writes and decrypted before
 * decompression on reads (base/age.c), the SHA-256 of the age plaintext
 * kept beside the stored bytes' one. Memory stays bounded: one write is
 * outstanding at a time and compression output goes out in one buffer. */
#include "call/call.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <zlib.h>
#include <zstd.h>

#define READ_CHUNK (256u * 1024u)

typedef enum { ST_LOCAL, ST_SCHEME } st_kind;

struct eng_stream {
  st_kind kind;
  bool writing;
  eng_call *call;
  char *url, *path, *tmp;
  /* scheme */
  const eng_stream_scheme *ops;
  void *impl;
  /* local */
  uv_file fd;
  uv_fs_t req;
  int64_t offset;
  /* data path */
  EVP_MD_CTX *md;
  ZSTD_CStream *zc;
  ZSTD_DStream *zd;
  z_stream *gz;     /* gzip: deflate when writing, inflate when reading */
  bool gz_mid;      /* inside a gzip member (its end not seen yet) */
  bool zd_mid;      /* inside a zstd frame (not wholly decoded yet) */
  bool decompress, sniffed;
  eng__buf out; /* compressed / decompressed bytes in flight */
  eng__age *age;    /* encryption or decryption (age_key) */
  eng__buf ebuf;    /* encrypted / decrypted bytes of one step */
  EVP_MD_CTX *pmd;  /* SHA-256 of the age plaintext */
  int64_t pbytes;   /* bytes of the age plaintext */
  char psha[ENG__SHA256_HEX];
  bool age_ended;
  char *age_err;    /* why decrypting failed (info "error" of the end) */
  int64_t bytes;  /* stored bytes */
  int64_t plain;  /* bytes before compression / after decompression */
  char sha[ENG__SHA256_HEX];
  char *expect;
  bool verify;
  /* callbacks */
  eng_stream_write_cb wcb;
  void *wud;
  eng_stream_done_cb dcb;
  void *dud;
  eng_stream_data_cb on_data;
  bool paused, reading, eof, failed, finishing;
  /* stream_abort() was called while a uv_fs request or a scheme read was
   * still running: its callback frees the stream instead */
  bool aborted, fs_busy;
  char *rbuf;
  int err;
  /* reads with decompression: compressed input not yet turned into plain
   * bytes (the consumer paused in the middle of a chunk) */
  eng__buf pend;
  size_t pend_pos;
  bool out_full;
  bool end_pending;
  int end_rc;
  json_t *end_info;
};

/* ---- helpers -------------------------------------------------------------- */

/* Schemes of loaded plugins (process-wide, filled by the registry). */
static const eng_stream_scheme **schemes;
static size_t n_schemes;

void eng__stream_add_scheme(const eng_stream_scheme *sc) {
  for (size_t i = 0; i < n_schemes; i++)
    if (!strcmp(schemes[i]->scheme, sc->scheme)) return;
  schemes = eng__xrealloc(schemes, (n_schemes + 1) * sizeof *schemes);
  schemes[n_schemes++] = sc;
}

void eng__stream_clear_schemes(void) {
  free(schemes);
  schemes = NULL;
  n_schemes = 0;
}

static const eng_stream_scheme *find_scheme(const char *url) {
  const char *sep = strstr(url, "://");
  if (!sep) return NULL;
  size_t n = (size_t)(sep - url);
  for (size_t i = 0; i < n_schemes; i++)
    if (strlen(schemes[i]->scheme) == n && !strncmp(schemes[i]->scheme, url, n))
      return schemes[i];
  return NULL;
}

static const char *local_path(const char *url) {
  if (!strncmp(url, "file://", 7)) return url + 7;
  return url;
}

int eng__stream_is_remote(const char *url) {
  return url && strstr(url, "://") && strncmp(url, "file://", 7) != 0;
}

static void hex(EVP_MD_CTX *md, char out[ENG__SHA256_HEX]) {
  unsigned char d[32];
  unsigned int n = 0;
  EVP_DigestFinal_ex(md, d, &n);
  for (unsigned i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void h_abort(eng_stream *s);

/* done() of the owning call with the stream still open. */
static void release_cb(void *obj) {
  eng_stream *s = obj;
  s->call = NULL; /* already disowned */
  h_abort(s);
}

static void stream_free(eng_stream *s) {
  if (s->call) eng__call_disown(s->call, s);
  if (s->md) EVP_MD_CTX_free(s->md);
  if (s->pmd) EVP_MD_CTX_free(s->pmd);
  eng__age_free(s->age);
  free(s->age_err);
  eng__buf_free(&s->ebuf);
  if (s->zc) ZSTD_freeCStream(s->zc);
  if (s->zd) ZSTD_freeDStream(s->zd);
  if (s->gz) {
    if (s->writing) deflateEnd(s->gz);
    else inflateEnd(s->gz);
    free(s->gz);
  }
  eng__buf_free(&s->out);
  eng__buf_free(&s->pend);
  json_decref(s->end_info);
  free(s->url);
  free(s->path);
  free(s->tmp);
  free(s->expect);
  free(s->rbuf);
  free(s);
}

static json_t *info_of(eng_stream *s) {
  json_t *info = json_pack("{s:s, s:I, s:s, s:I}", "url", s->url, "bytes",
                           (json_int_t)s->bytes, "sha256", s->sha,
                           "plain_bytes", (json_int_t)s->plain);
  if (s->age) {
    json_object_set_new(info, "encryption", json_string("age"));
    json_object_set_new(info, "plaintext_sha256", json_string(s->psha));
    json_object_set_new(info, "plaintext_bytes", json_integer(s->pbytes));
  }
  return info;
}

/* opts "age_key": the text of an age identity or recipient (a key file's
 * content). 0 without one; -1 (the call failed) when it is no key, or a
 * recipient where decrypting needs the identity. */
static int age_setup(eng_stream *s, eng_call *call, const json_t *opts) {
  const char *key = json_string_value(json_object_get(opts, "age_key"));
  if (!key) return 0;
  unsigned char pub[32], priv[32];
  bool has_priv = false;
  if (eng__age_key_parse(key, pub, priv, &has_priv) != 0) {
    eng__call_fail(call, "the encryption key is neither an age identity "
                         "(AGE-SECRET-KEY-1...) nor an age recipient (age1...)");
    return -1;
  }
  if (!s->writing && !has_priv) {
    eng__call_fail(call, "decrypting needs the age identity "
                         "(AGE-SECRET-KEY-1...), not a recipient (age1...)");
    return -1;
  }
  s->age = eng__age_new(pub, s->writing ? NULL : priv);
  OPENSSL_cleanse(priv, sizeof priv);
  s->pmd = EVP_MD_CTX_new();
  EVP_DigestInit_ex(s->pmd, EVP_sha256(), NULL);
  return 0;
}

/* opts for the scheme: without the key, which stays here. */
static json_t *scheme_opts(const json_t *opts) {
  json_t *o = json_is_object(opts) ? json_copy((json_t *)opts) : json_object();
  json_object_del(o, "age_key");
  return o;
}

/* Writes: the age plaintext in s->out becomes its ciphertext (end: the
 * last of it). */
static int age_seal(eng_stream *s, bool end) {
  EVP_DigestUpdate(s->pmd, s->out.data, s->out.len);
  s->pbytes += (int64_t)s->out.len;
  char err[160];
  s->ebuf.len = 0;
  if (eng__age_update(s->age, s->out.data, s->out.len, end, &s->ebuf, err,
                      sizeof err) != 0) {
    eng__call_fail(s->call, "cannot encrypt %s: %s", s->url, err);
    return ENG_ERR_IO;
  }
  eng__buf t = s->out;
  s->out = s->ebuf;
  s->ebuf = t;
  return ENG_OK;
}

static eng_stream *stream_new(eng_call *call, const char *url) {
  eng_stream *s = eng__xcalloc(1, sizeof *s);
  s->call = call;
  eng__call_own(call, s, release_cb);
  s->url = eng__xstrdup(url);
  s->fd = -1;
  s->md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(s->md, EVP_sha256(), NULL);
  s->req.data = s;
  return s;
}

/* "zstd[:1-19]" (1) or "gzip[:1-9]" (2), none (0), or -1. */
static int parse_compress(const json_t *opts, int *level) {
  const char *c = json_string_value(json_object_get(opts, "compress"));
  if (!c || !*c || !strcmp(c, "none")) return 0;
  int kind = !strncmp(c, "zstd", 4) ? 1 : !strncmp(c, "gzip", 4) ? 2 : -1;
  if (kind < 0) return -1;
  *level = kind == 1 ? 3 : 1; /* docs/performance.md */
  if (c[4] == ':') {
    char *end;
    long l = strtol(c + 5, &end, 10);
    if (*end || end == c + 5) return -1;
    *level = (int)l;
  } else if (c[4]) {
    return -1;
  }
  if (*level < 1 || *level > (kind == 1 ? 19 : 9)) return -1;
  return kind;
}

/* ---- writing ---------------------------------------------------------------- */

static void local_write_cb(uv_fs_t *req);

/* Send s->out to the sink; s->wcb runs when it was taken. */
static int sink_out(eng_stream *s);

static void scheme_write_cb(void *ud, int rc) {
  eng_stream *s = ud;
  eng_stream_write_cb cb = s->wcb;
  s->wcb = NULL;
  s->out.len = 0;
  if (rc != ENG_OK) s->failed = true;
  if (cb) cb(s->wud, rc);
}

static int sink_out(eng_stream *s) {
  if (s->out.len == 0) {
    eng_stream_write_cb cb = s->wcb;
    s->wcb = NULL;
    if (cb) cb(s->wud, ENG_OK);
    return ENG_OK;
  }
  EVP_DigestUpdate(s->md, s->out.data, s->out.len);
  s->bytes += (int64_t)s->out.len;
  if (s->kind == ST_SCHEME)
    return s->ops->write(s->impl, s->out.data, s->out.len, scheme_write_cb, s);
  uv_buf_t b = uv_buf_init(s->out.data, (unsigned)s->out.len);
  int rc = uv_fs_write(eng__call_loop(s->call), &s->req, s->fd, &b, 1,
                       s->offset, local_write_cb);
  if (rc < 0) {
    s->err = rc;
    return ENG_ERR_IO;
  }
  s->fs_busy = true;
  s->offset += (int64_t)s->out.len;
  return ENG_OK;
}

/* Free an aborted local stream once no uv_fs request uses it. */
static void local_discard(eng_stream *s) {
  if (s->fd >= 0) {
    close(s->fd);
    s->fd = -1;
    if (s->writing && s->tmp) unlink(s->tmp);
  }
  stream_free(s);
}

/* A file operation ended: its stream, or NULL when the stream was aborted
 * meanwhile (then it is freed here). */
static eng_stream *fs_settle(uv_fs_t *req, ssize_t *res) {
  eng_stream *s = req->data;
  *res = req->result;
  uv_fs_req_cleanup(req);
  s->fs_busy = false;
  s->reading = false;
  if (s->aborted) {
    local_discard(s);
    return NULL;
  }
  return s;
}

/* Why a write of len bytes at offset came back short (res >= 0): the
 * rest, written again, names the error (ENOSPC when the disk is full). */
static const char *short_write_why(eng_stream *s, ssize_t res, size_t len,
                                   int64_t offset) {
  if (res < 0) return uv_strerror((int)res);
  ssize_t w = pwrite(s->fd, s->out.data + res, len - (size_t)res,
                     (off_t)(offset + res));
  return w < 0 ? strerror(errno) : "short write";
}

static void local_write_cb(uv_fs_t *req) {
  ssize_t res;
  eng_stream *s = fs_settle(req, &res);
  if (!s) return;
  int rc = ENG_OK;
  if (res < 0 || (size_t)res != s->out.len) {
    s->err = res < 0 ? (int)res : UV_EIO;
    s->failed = true;
    rc = ENG_ERR_IO;
    /* the writer keeps this message (the file system's own words) */
    eng__call_fail(s->call, "cannot write %s: %s; check the free space and "
                            "permissions there",
                   s->tmp, short_write_why(s, res, s->out.len,
                                           s->offset - (int64_t)s->out.len));
  }
  s->out.len = 0;
  eng_stream_write_cb cb = s->wcb;
  s->wcb = NULL;
  if (cb) cb(s->wud, rc);
}

/* Put plain bytes through deflate (gzip) into s->out. */
static int gzip_into(eng_stream *s, const void *buf, size_t len, bool end) {
  s->gz->next_in = (Bytef *)(uintptr_t)buf;
  s->gz->avail_in = (uInt)len;
  const size_t chunk = 128 * 1024;
  for (;;) {
    if (s->out.cap < s->out.len + chunk + 1) {
      s->out.data = eng__xrealloc(s->out.data, s->out.len + chunk + 1);
      s->out.cap = s->out.len + chunk + 1;
    }
    s->gz->next_out = (Bytef *)s->out.data + s->out.len;
    s->gz->avail_out = (uInt)chunk;
    int r = deflate(s->gz, end ? Z_FINISH : Z_NO_FLUSH);
    if (r == Z_STREAM_ERROR) return ENG_ERR_IO;
    s->out.len += chunk - s->gz->avail_out;
    if (end ? r == Z_STREAM_END : s->gz->avail_in == 0 && s->gz->avail_out != 0)
      break;
  }
  return ENG_OK;
}

/* Put plain bytes through the compressor into s->out. */
static int compress_into(eng_stream *s, const void *buf, size_t len,
                         ZSTD_EndDirective mode) {
  if (s->gz) return gzip_into(s, buf, len, mode == ZSTD_e_end);
  ZSTD_inBuffer in = {buf, len, 0};
  size_t chunk = ZSTD_CStreamOutSize();
  for (;;) {
    if (s->out.cap < s->out.len + chunk + 1) {
      s->out.data = eng__xrealloc(s->out.data, s->out.len + chunk + 1);
      s->out.cap = s->out.len + chunk + 1;
    }
    ZSTD_outBuffer o = {s->out.data + s->out.len, chunk, 0};
    size_t r = ZSTD_compressStream2(s->zc, &o, &in, mode);
    if (ZSTD_isError(r)) return ENG_ERR_IO;
    s->out.len += o.pos;
    if (mode == ZSTD_e_continue ? in.pos == in.size : r == 0) break;
  }
  return ENG_OK;
}

static int h_open_write(eng_call *call, const char *url, const json_t *opts,
                        eng_stream **out) {
  int level = 0;
  int comp = parse_compress(opts, &level);
  if (comp < 0) {
    eng__call_fail(call, "compress must be 'zstd', 'zstd:LEVEL' (1-19), "
                         "'gzip' or 'gzip:LEVEL' (1-9)");
    return ENG_ERR_INVALID;
  }
  eng_stream *s = stream_new(call, url);
  s->writing = true;
  if (age_setup(s, call, opts) != 0) {
    stream_free(s);
    return ENG_ERR_INVALID;
  }
  if (comp == 1) {
    s->zc = ZSTD_createCStream();
    ZSTD_CCtx_setParameter(s->zc, ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(s->zc, ZSTD_c_nbWorkers, 0);
  } else if (comp == 2) {
    s->gz = eng__xcalloc(1, sizeof *s->gz);
    /* 15 + 16: a gzip member (what gzip -d and zcat read) */
    if (deflateInit2(s->gz, level, Z_DEFLATED, 15 + 16, 8,
                     Z_DEFAULT_STRATEGY) != Z_OK) {
      free(s->gz);
      s->gz = NULL;
      stream_free(s);
      return ENG_ERR_IO;
    }
  }
  if (eng__stream_is_remote(url)) {
    s->ops = find_scheme(url);
    if (!s->ops) {
      eng__call_fail(call, "no loaded plugin serves '%.*s://' URLs (is the "
                              "plugin installed? see 'engine plugins')",
                        (int)(strstr(url, "://") - url), url);
      stream_free(s);
      return ENG_ERR_UNSUPPORTED;
    }
    s->kind = ST_SCHEME;
    json_t *so = scheme_opts(opts);
    int rc = s->ops->open_write(call, url, so, &s->impl);
    json_decref(so);
    if (rc != ENG_OK) {
      stream_free(s);
      return rc;
    }
  } else {
    s->kind = ST_LOCAL;
    s->path = eng__xstrdup(local_path(url));
    s->tmp = eng__asprintf("%s.partial", s->path);
    char *slash = strrchr(s->path, '/');
    if (slash && slash != s->path) {
      char *dir = eng__xstrndup(s->path, (size_t)(slash - s->path));
      eng__mkdir_p(dir, 0755);
      free(dir);
    }
    s->fd = open(s->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (s->fd < 0) {
      eng__call_fail(call, "cannot create %s: %s", s->tmp, strerror(errno));
      stream_free(s);
      return ENG_ERR_IO;
    }
  }
  *out = s;
  return ENG_OK;
}

static int h_write(eng_stream *s, const void *buf, size_t len,
                   eng_stream_write_cb cb, void *ud) {
  if (s->failed) return ENG_ERR_IO;
  if (s->wcb) return ENG_ERR_INVALID; /* one write at a time */
  s->wcb = cb;
  s->wud = ud;
  s->plain += (int64_t)len;
  s->out.len = 0;
  if (s->zc || s->gz) {
    if (compress_into(s, buf, len, ZSTD_e_continue) != ENG_OK) {
      s->wcb = NULL;
      return ENG_ERR_IO;
    }
  } else {
    eng__buf_add(&s->out, buf, len);
  }
  if (s->age && age_seal(s, false) != ENG_OK) {
    s->wcb = NULL;
    return ENG_ERR_IO;
  }
  int rc = sink_out(s);
  if (rc != ENG_OK) s->wcb = NULL;
  return rc;
}

/* finish: flush the compressor, then commit */
static void local_after_fsync(uv_fs_t *req);

static void finish_done(eng_stream *s, int rc) {
  eng_stream_done_cb cb = s->dcb;
  json_t *info = rc == ENG_OK ? info_of(s) : NULL;
  void *ud = s->dud;
  stream_free(s);
  if (cb) cb(ud, rc, info);
  else json_decref(info);
}

static void scheme_finish_cb(void *ud, int rc, json_t *info) {
  eng_stream *s = ud;
  s->impl = NULL; /* the scheme freed it */
  if (rc != ENG_OK) {
    json_decref(info);
    finish_done(s, rc);
    return;
  }
  json_t *mine = info_of(s);
  if (info) json_object_update_missing(info, mine);
  json_decref(mine);
  eng_stream_done_cb cb = s->dcb;
  void *dud = s->dud;
  stream_free(s);
  if (cb) cb(dud, ENG_OK, info ? info : json_object());
  else json_decref(info);
}

static void commit(eng_stream *s) {
  hex(s->md, s->sha);
  if (s->pmd) hex(s->pmd, s->psha);
  if (s->kind == ST_SCHEME) {
    int rc = s->ops->finish(s->impl, s->sha, scheme_finish_cb, s);
    if (rc != ENG_OK) {
      s->ops->abort(s->impl);
      finish_done(s, rc);
    }
    return;
  }
  if (uv_fs_fsync(eng__call_loop(s->call), &s->req, s->fd,
                  local_after_fsync) == 0)
    s->fs_busy = true;
  else {
    s->req.result = UV_EIO;
    local_after_fsync(&s->req);
  }
}

static void local_after_fsync(uv_fs_t *req) {
  ssize_t sres;
  eng_stream *s = fs_settle(req, &sres);
  if (!s) return;
  int res = (int)sres;
  close(s->fd);
  s->fd = -1;
  if (res < 0 || rename(s->tmp, s->path) != 0) {
    unlink(s->tmp);
    eng__call_fail(s->call, "cannot commit %s: %s", s->path,
                      res < 0 ? uv_strerror(res) : strerror(errno));
    finish_done(s, ENG_ERR_IO);
    return;
  }
  finish_done(s, ENG_OK);
}

static void flushed_cb(void *ud, int rc) {
  eng_stream *s = ud;
  if (rc != ENG_OK) {
    /* finish's callback still runs, with the error */
    eng_stream_done_cb cb = s->dcb;
    void *dud = s->dud;
    s->dcb = NULL;
    eng__stream_abort(s);
    if (cb) cb(dud, rc, NULL);
    return;
  }
  commit(s);
}

static void local_flush_cb(uv_fs_t *req) {
  ssize_t res;
  eng_stream *s = fs_settle(req, &res);
  if (!s) return;
  if (res < 0 || (size_t)res != s->out.len) {
    eng_stream_done_cb cb = s->dcb;
    void *ud = s->dud;
    s->dcb = NULL;
    eng__call_fail(s->call, "cannot write %s: %s; check the free space and "
                            "permissions there",
                   s->tmp, short_write_why(s, res, s->out.len, s->offset));
    eng__stream_abort(s);
    if (cb) cb(ud, ENG_ERR_IO, NULL);
    return;
  }
  s->out.len = 0;
  commit(s);
}

static void h_abort(eng_stream *s);

static int h_finish(eng_stream *s, eng_stream_done_cb cb, void *ud) {
  if (s->wcb) return ENG_ERR_INVALID;
  s->dcb = cb;
  s->dud = ud;
  s->finishing = true;
  s->out.len = 0;
  if (((s->zc || s->gz) && compress_into(s, NULL, 0, ZSTD_e_end) != ENG_OK) ||
      (s->age && age_seal(s, true) != ENG_OK)) {
    s->dcb = NULL;
    return ENG_ERR_IO;
  }
  if (s->out.len == 0) {
    commit(s);
    return ENG_OK;
  }
  EVP_DigestUpdate(s->md, s->out.data, s->out.len);
  s->bytes += (int64_t)s->out.len;
  if (s->kind == ST_SCHEME) {
    s->wcb = NULL;
    int rc = s->ops->write(s->impl, s->out.data, s->out.len, flushed_cb, s);
    return rc;
  }
  uv_buf_t b = uv_buf_init(s->out.data, (unsigned)s->out.len);
  int rc = uv_fs_write(eng__call_loop(s->call), &s->req, s->fd, &b, 1,
                       s->offset, local_flush_cb);
  if (rc < 0) return ENG_ERR_IO;
  s->fs_busy = true;
  return ENG_OK;
}

/* Writers: discard what was written. Readers: stop reading. Either way no
 * callback of the stream runs afterwards; the memory goes once nothing
 * (a uv_fs request, the scheme's read) can call back into it. */
static void h_abort(eng_stream *s) {
  if (!s || s->aborted) return;
  s->aborted = true;
  if (s->call) eng__call_disown(s->call, s);
  s->call = NULL; /* from now on only the memory remains */
  s->wcb = NULL;
  s->dcb = NULL;
  if (s->kind == ST_SCHEME) {
    if (s->writing) {
      if (s->impl) s->ops->abort(s->impl);
      s->impl = NULL;
      stream_free(s);
      return;
    }
    if (!s->impl) { /* the source ended already */
      stream_free(s);
      return;
    }
    s->failed = true; /* scheme_data drops, scheme_end frees */
    s->err = ENG_ERR_CANCELLED;
    if (s->ops->cancel) s->ops->cancel(s->impl);
    else if (s->ops->pause) s->ops->pause(s->impl, 0);
    return;
  }
  if (s->fs_busy || s->reading) return; /* the fs callback frees */
  local_discard(s);
}

/* ---- reading ----------------------------------------------------------------- */

static const unsigned char zstd_magic[4] = {0x28, 0xb5, 0x2f, 0xfd};

static void read_end(eng_stream *s, int rc, json_t *info);

static const unsigned char gzip_magic[2] = {0x1f, 0x8b};

/* One step of the decompressor: consume from in[0..in_len) into
 * out[0..out_len); *used and *made say how much. */
static int decode(eng_stream *s, const char *in, size_t in_len, size_t *used,
                  char *out, size_t out_len, size_t *made) {
  if (s->zd) {
    ZSTD_inBuffer i = {in, in_len, 0};
    ZSTD_outBuffer o = {out, out_len, 0};
    size_t r = ZSTD_decompressStream(s->zd, &o, &i);
    if (ZSTD_isError(r)) {
      eng__call_fail(s->call, "%s: corrupt zstd data: %s", s->url,
                     ZSTD_getErrorName(r));
      return ENG_ERR_CHECKSUM;
    }
    *used = i.pos;
    *made = o.pos;
    /* 0: a frame was decoded and flushed whole; more is expected otherwise */
    if (i.pos || o.pos) s->zd_mid = r != 0;
    return ENG_OK;
  }
  s->gz->next_in = (Bytef *)(uintptr_t)in;
  s->gz->avail_in = (uInt)in_len;
  s->gz->next_out = (Bytef *)out;
  s->gz->avail_out = (uInt)out_len;
  int r = inflate(s->gz, Z_NO_FLUSH);
  *used = in_len - s->gz->avail_in;
  *made = out_len - s->gz->avail_out;
  if (*used) s->gz_mid = true;
  if (r == Z_STREAM_END) {
    inflateReset(s->gz); /* gzip files may hold several members */
    s->gz_mid = false;
  } else if (r != Z_OK && r != Z_BUF_ERROR) { /* BUF: needs more input */
    eng__call_fail(s->call, "%s: corrupt gzip data: %s", s->url,
                   s->gz->msg ? s->gz->msg : "inflate failed");
    return ENG_ERR_CHECKSUM;
  }
  return ENG_OK;
}

/* Turn pending compressed input into plain bytes while the consumer is
 * not paused. */
static int pump(eng_stream *s) {
  size_t chunk = ZSTD_DStreamOutSize();
  if (s->out.cap < chunk + 1) {
    s->out.data = eng__xrealloc(s->out.data, chunk + 1);
    s->out.cap = chunk + 1;
  }
  while (!s->paused && (s->pend_pos < s->pend.len || s->out_full)) {
    size_t used = 0, made = 0;
    int rc = decode(s, s->pend.data + s->pend_pos, s->pend.len - s->pend_pos,
                    &used, s->out.data, chunk, &made);
    if (rc != ENG_OK) return rc;
    s->pend_pos += used;
    s->out_full = made == chunk;
    if (made) {
      s->plain += (int64_t)made;
      s->on_data(s->dud, s->out.data, made);
    } else if (used == 0) {
      break;
    }
  }
  if (s->pend_pos >= s->pend.len && !s->out_full) {
    s->pend.len = 0;
    s->pend_pos = 0;
  }
  return ENG_OK;
}

static bool drained(const eng_stream *s) {
  return s->pend.len == 0 && !s->out_full;
}

/* Decompress when asked; pass plain bytes on. */
static int consume_plain(eng_stream *s, const char *buf, size_t len) {
  if (!len) return ENG_OK;
  if (!s->sniffed) {
    s->sniffed = true;
    if (s->decompress && len >= 4 && !memcmp(buf, zstd_magic, 4)) {
      s->zd = ZSTD_createDStream();
    } else if (s->decompress && len >= 2 && !memcmp(buf, gzip_magic, 2)) {
      s->gz = eng__xcalloc(1, sizeof *s->gz);
      if (inflateInit2(s->gz, 15 + 32) != Z_OK) {
        free(s->gz);
        s->gz = NULL;
      }
    }
  }
  if (!s->zd && !s->gz) {
    s->plain += (int64_t)len;
    s->on_data(s->dud, buf, len);
    return ENG_OK;
  }
  eng__buf_add(&s->pend, buf, len);
  return pump(s);
}

/* Decrypt what the age stream lets out so far (end: the stored bytes
 * ended), then on to consume_plain. */
static int age_open(eng_stream *s, const char *buf, size_t len, bool end) {
  char err[200];
  s->ebuf.len = 0;
  if (eng__age_update(s->age, buf, len, end, &s->ebuf, err, sizeof err) != 0) {
    eng__call_fail(s->call, "cannot decrypt %s: %s", s->url, err);
    if (!s->age_err) s->age_err = eng__xstrdup(err);
    return ENG_ERR_CHECKSUM;
  }
  if (end) s->age_ended = true;
  EVP_DigestUpdate(s->pmd, s->ebuf.data, s->ebuf.len);
  s->pbytes += (int64_t)s->ebuf.len;
  return consume_plain(s, s->ebuf.data, s->ebuf.len);
}

/* Hash stored bytes; decrypt and decompress when asked. */
static int consume(eng_stream *s, const char *buf, size_t len) {
  EVP_DigestUpdate(s->md, buf, len);
  s->bytes += (int64_t)len;
  if (s->age) return age_open(s, buf, len, false);
  return consume_plain(s, buf, len);
}

static void finish_read(eng_stream *s, int rc, json_t *info);

/* The source ended: deliver what is pending first. */
static void read_end(eng_stream *s, int rc, json_t *info) {
  if (rc == ENG_OK && s->age && !s->age_ended) rc = age_open(s, NULL, 0, true);
  if (rc == ENG_OK && (s->zd || s->gz) && !drained(s)) {
    s->end_pending = true;
    s->end_rc = rc;
    s->end_info = info;
    return;
  }
  finish_read(s, rc, info);
}

static void finish_read(eng_stream *s, int rc, json_t *info) {
  if (s->eof) {
    json_decref(info);
    return;
  }
  s->eof = true;
  hex(s->md, s->sha);
  if (s->pmd) hex(s->pmd, s->psha);
  if (!info) info = json_object();
  json_t *mine = info_of(s);
  json_object_update(info, mine);
  json_decref(mine);
  if (s->age_err) json_object_set_new(info, "error", json_string(s->age_err));
  if (rc == ENG_OK && ((s->gz && s->gz_mid) || (s->zd && s->zd_mid))) {
    eng__call_fail(s->call, "%s: the %s data ends in the middle (the file "
                            "is truncated)", s->url, s->gz ? "gzip" : "zstd");
    rc = ENG_ERR_CHECKSUM;
  }
  if (rc == ENG_OK) {
    const char *want = s->expect;
    const char *store = json_string_value(json_object_get(info, "expected_sha256"));
    if (!want && s->verify) want = store;
    if (want && strcasecmp(want, s->sha) != 0) {
      eng__call_fail(s->call,
                        "checksum mismatch for %s: stored bytes hash to %s, "
                        "expected %s (the backup is corrupt or was changed "
                        "after it was written)",
                        s->url, s->sha, want);
      rc = ENG_ERR_CHECKSUM;
    }
    /* an md5 the store keeps with the object (written by other tools) */
    const char *md5 = json_string_value(json_object_get(info, "md5"));
    const char *want_md5 = json_string_value(json_object_get(info, "expected_md5"));
    if (rc == ENG_OK && s->verify && md5 && want_md5 && strcasecmp(md5, want_md5)) {
      eng__call_fail(s->call,
                     "md5 mismatch for %s: its bytes hash to %s but the md5 "
                     "recorded with it is %s (the backup is corrupt or was "
                     "changed after it was written)",
                     s->url, md5, want_md5);
      rc = ENG_ERR_CHECKSUM;
    }
  }
  eng_stream_done_cb cb = s->dcb;
  void *ud = s->dud;
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  stream_free(s);
  if (cb) cb(ud, rc, info);
  else json_decref(info);
}

static void local_read_cb(uv_fs_t *req);

static void local_read_next(eng_stream *s) {
  if (s->paused || s->reading || s->eof || s->end_pending || s->aborted ||
      !drained(s))
    return;
  s->reading = true;
  uv_buf_t b = uv_buf_init(s->rbuf, READ_CHUNK);
  int rc = uv_fs_read(eng__call_loop(s->call), &s->req, s->fd, &b, 1,
                      s->offset, local_read_cb);
  if (rc < 0) {
    s->reading = false;
    eng__call_fail(s->call, "cannot read %s: %s", s->path, uv_strerror(rc));
    read_end(s, ENG_ERR_IO, NULL);
  }
}

static void local_read_cb(uv_fs_t *req) {
  ssize_t n;
  eng_stream *s = fs_settle(req, &n);
  if (!s) return;
  if (n < 0) {
    eng__call_fail(s->call, "cannot read %s: %s", s->path,
                      uv_strerror((int)n));
    read_end(s, ENG_ERR_IO, NULL);
    return;
  }
  if (n == 0) {
    read_end(s, ENG_OK, NULL);
    return;
  }
  s->offset += n;
  int rc = consume(s, s->rbuf, (size_t)n);
  if (rc != ENG_OK) {
    read_end(s, rc, NULL);
    return;
  }
  local_read_next(s);
}

static void scheme_data(void *ud, const char *buf, size_t len) {
  eng_stream *s = ud;
  if (s->failed) return;
  int rc = consume(s, buf, len);
  if (rc != ENG_OK) {
    s->failed = true;
    s->err = rc;
    if (s->ops->cancel) s->ops->cancel(s->impl);
  }
}

static void scheme_end(void *ud, int rc, json_t *info) {
  eng_stream *s = ud;
  s->impl = NULL;
  if (s->aborted) {
    json_decref(info);
    stream_free(s);
    return;
  }
  read_end(s, s->failed ? s->err : rc, info);
}

static int h_open_read(eng_call *call, const char *url, const json_t *opts,
                       eng_stream_data_cb on_data, eng_stream_done_cb on_end,
                       void *ud, eng_stream **out) {
  eng_stream *s = stream_new(call, url);
  s->on_data = on_data;
  s->dcb = on_end;
  s->dud = ud;
  s->decompress = json_is_true(json_object_get(opts, "decompress"));
  const char *exp = json_string_value(json_object_get(opts, "expect_sha256"));
  if (exp && *exp) s->expect = eng__xstrdup(exp);
  s->verify = !json_is_false(json_object_get(opts, "verify"));
  if (age_setup(s, call, opts) != 0) {
    stream_free(s);
    return ENG_ERR_INVALID;
  }
  if (eng__stream_is_remote(url)) {
    s->ops = find_scheme(url);
    if (!s->ops) {
      eng__call_fail(call, "no loaded plugin serves '%.*s://' URLs",
                        (int)(strstr(url, "://") - url), url);
      stream_free(s);
      return ENG_ERR_UNSUPPORTED;
    }
    s->kind = ST_SCHEME;
    *out = s;
    json_t *so = scheme_opts(opts);
    int rc = s->ops->open_read(call, url, so, scheme_data, scheme_end, s,
                               &s->impl);
    json_decref(so);
    if (rc != ENG_OK) {
      *out = NULL;
      stream_free(s);
    }
    return rc;
  }
  s->kind = ST_LOCAL;
  s->path = eng__xstrdup(local_path(url));
  s->fd = open(s->path, O_RDONLY | O_CLOEXEC);
  if (s->fd < 0) {
    eng__call_fail(call, "cannot open %s: %s", s->path, strerror(errno));
    int rc = errno == ENOENT ? ENG_ERR_NOTFOUND : ENG_ERR_IO;
    stream_free(s);
    return rc;
  }
  s->rbuf = eng__xmalloc(READ_CHUNK);
  *out = s;
  local_read_next(s);
  return ENG_OK;
}

static void h_pause(eng_stream *s, int paused) {
  s->paused = paused != 0;
  if (s->paused) {
    if (s->kind == ST_SCHEME && s->ops->pause && s->impl)
      s->ops->pause(s->impl, 1);
    return;
  }
  if ((s->zd || s->gz) && !drained(s)) {
    int rc = pump(s);
    if (rc != ENG_OK) {
      if (s->kind == ST_SCHEME && s->impl && s->ops->cancel) {
        s->failed = true;
        s->err = rc;
        s->ops->cancel(s->impl);
      } else {
        finish_read(s, rc, NULL);
      }
      return;
    }
    if (s->paused || !drained(s)) return;
  }
  if (s->end_pending) {
    json_t *info = s->end_info;
    s->end_info = NULL;
    s->end_pending = false;
    finish_read(s, s->end_rc, info);
    return;
  }
  if (s->kind == ST_SCHEME) {
    if (s->ops->pause && s->impl) s->ops->pause(s->impl, 0);
    return;
  }
  local_read_next(s);
}

/* ---- table entries (referenced by call.c) -------------------------------- */

int eng__stream_open_write(eng_call *call, const char *url, const json_t *opts,
                           eng_stream **out) {
  return h_open_write(call, url, opts, out);
}
int eng__stream_write(eng_stream *s, const void *buf, size_t len,
                      eng_stream_write_cb cb, void *ud) {
  return h_write(s, buf, len, cb, ud);
}
int eng__stream_finish(eng_stream *s, eng_stream_done_cb cb, void *ud) {
  return h_finish(s, cb, ud);
}
void eng__stream_abort(eng_stream *s) { h_abort(s); }
int eng__stream_open_read(eng_call *call, const char *url, const json_t *opts,
                          eng_stream_data_cb on_data, eng_stream_done_cb on_end,
                          void *ud, eng_stream **out) {
  return h_open_read(call, url, opts, on_data, on_end, ud, out);
}
void eng__stream_pause(eng_stream *s, int paused) { h_pause(s, paused); }
