/*
 * s3_read.c - the reader: the read side of the "s3" stream scheme, and
 * what s3.get downloads with.
 *
 * GetObject's body goes to on_data as it arrives. pause(1) makes the next
 * chunk answer CURL_WRITEFUNC_PAUSE (curl keeps it and stops reading the
 * socket); pause(0) unpauses through host->http_unpause, which may deliver
 * the kept bytes at once, from inside pause(0). At the end, on_end gets
 * info with url, bytes, sha256 (of the bytes delivered), etag,
 * last_modified, version_id and expected_sha256: the object's
 * x-amz-meta-sha256, else its x-amz-checksum-sha256 (a whole-object one,
 * not the checksum of a multipart upload's parts), else the content of the
 * sidecar KEY.sha256 (looked up only when the object has none);
 * expected_from names which. An object with x-amz-meta-md5 (written by
 * other tools) also gets md5 and expected_md5. The reader does not compare
 * them: the host (or s3.get) does.
 */
#include "s3_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

struct s3_reader {
  eng_call *call;
  aws_cfg cfg;
  char *url, *bucket, *key;
  int want_expected;
  eng_stream_data_cb on_data;
  eng_stream_done_cb on_end;
  void *ud;
  s3_req *req;
  EVP_MD_CTX *sha;
  EVP_MD_CTX *md5; /* only when the object carries x-amz-meta-md5 */
  char *expected_md5;
  const char *expected_from;
  uint64_t bytes;
  int64_t length;
  int paused, cancelled;
  char *expected, *etag, *version, *last_modified;
  s3_at_rest want;  /* the encryption the object must have */
  int at_rest_bad;  /* it has another: nothing reached on_data */
  char err[1024];
};

/* ---- sidecars ---------------------------------------------------------------- */

int s3_sidecar_parse(const char *body, size_t len, char hex[65]) {
  size_t i = 0;
  while (i < len && isspace((unsigned char)body[i])) i++;
  if (len - i < 64) return 0;
  for (size_t k = 0; k < 64; k++) {
    unsigned char c = (unsigned char)body[i + k];
    if (!isxdigit(c)) return 0;
    hex[k] = (char)tolower(c);
  }
  hex[64] = '\0';
  /* the hash is a whole word: "HEX", "HEX  name" or "HEX *name" */
  return i + 64 == len || isspace((unsigned char)body[i + 64]);
}

static s3_req *sidecar_req(eng_call *call, const aws_cfg *cfg,
                           const char *bucket, const char *key) {
  char *skey = eng_asprintf("%s.sha256", key);
  s3_req *r = s3_req_new(call, cfg, "GET", bucket, skey, NULL);
  free(skey);
  return r;
}

/* ENG_OK with hex[0] == '\0' when there is no sidecar. */
static int sidecar_result(s3_req *r, char hex[65], char *msg, size_t n) {
  hex[0] = '\0';
  int rc = s3_req_check(r, msg, n);
  if (rc == ENG_ERR_NOTFOUND) return ENG_OK;
  if (rc != ENG_OK) return rc;
  if (!s3_sidecar_parse(r->body.data ? r->body.data : "", r->body.len, hex)) {
    snprintf(msg, n,
             "s3://%s/%s is not a SHA-256 sidecar (expected \"HEX  NAME\")",
             r->bucket, r->key);
    hex[0] = '\0';
    return ENG_ERR_PROTOCOL;
  }
  return ENG_OK;
}

typedef struct sidecar_job {
  s3_sidecar_cb cb;
  void *ud;
} sidecar_job;

static void on_sidecar_job(void *ud, s3_req *r) {
  sidecar_job *j = ud;
  char hex[65], msg[1024];
  int rc = sidecar_result(r, hex, msg, sizeof msg);
  s3_req_free(r);
  j->cb(j->ud, rc, hex[0] ? hex : NULL, rc == ENG_OK ? NULL : msg);
  free(j);
}

int s3_sidecar_fetch(eng_call *call, const aws_cfg *cfg, const char *bucket,
                     const char *key, s3_sidecar_cb cb, void *ud) {
  sidecar_job *j = eng_xcalloc(1, sizeof *j);
  j->cb = cb;
  j->ud = ud;
  s3_req *r = sidecar_req(call, cfg, bucket, key);
  int rc = s3_req_start(r, on_sidecar_job, j);
  if (rc != ENG_OK) {
    s3_req_free(r);
    free(j);
  }
  return rc;
}

/* ---- the reader -------------------------------------------------------------- */

static void reader_free(s3_reader *r) {
  EVP_MD_CTX_free(r->sha);
  EVP_MD_CTX_free(r->md5);
  free(r->expected_md5);
  aws_cfg_free(&r->cfg);
  free(r->url);
  free(r->bucket);
  free(r->key);
  free(r->expected);
  free(r->etag);
  free(r->version);
  free(r->last_modified);
  s3_at_rest_free(&r->want);
  free(r);
}

const char *s3_reader_error(s3_reader *r) { return r->err; }

static void end(s3_reader *r, int rc) {
  unsigned char md[32];
  unsigned int mdlen = 0;
  char hex[65];
  EVP_DigestFinal_ex(r->sha, md, &mdlen);
  aws_hex(md, 32, hex);
  json_t *info = json_object();
  json_object_set_new(info, "url", json_string(r->url));
  json_object_set_new(info, "bytes", json_integer((json_int_t)r->bytes));
  json_object_set_new(info, "sha256", json_string(hex));
  if (r->etag) json_object_set_new(info, "etag", json_string(r->etag));
  if (r->version)
    json_object_set_new(info, "version_id", json_string(r->version));
  if (r->last_modified)
    json_object_set_new(info, "last_modified", json_string(r->last_modified));
  if (r->expected) {
    json_object_set_new(info, "expected_sha256", json_string(r->expected));
    json_object_set_new(info, "expected_from", json_string(r->expected_from));
  }
  if (r->md5 && r->expected_md5) {
    unsigned char m[16];
    char mh[33];
    EVP_DigestFinal_ex(r->md5, m, &mdlen);
    aws_hex(m, 16, mh);
    json_object_set_new(info, "md5", json_string(mh));
    json_object_set_new(info, "expected_md5", json_string(r->expected_md5));
  }
  if (rc != ENG_OK) json_object_set_new(info, "error", json_string(r->err));
  r->req = NULL;
  r->on_end(r->ud, rc, info);
  reader_free(r);
}

static size_t sink(void *ud, const char *buf, size_t len) {
  s3_reader *r = ud;
  if (r->cancelled) return len;
  if (r->bytes == 0 && r->req &&
      s3_at_rest_check(&r->want, r->req, r->url, r->err, sizeof r->err) != ENG_OK) {
    r->at_rest_bad = 1;
    return 0; /* curl stops the transfer */
  }
  if (r->bytes == 0 && !r->md5 && r->req && r->req->meta_md5) {
    /* the headers are in before the body: an md5 to check */
    const char *m = r->req->meta_md5;
    size_t n = strlen(m), k = 0;
    while (k < n && isxdigit((unsigned char)m[k])) k++;
    if (n == 32 && k == 32) {
      r->expected_md5 = eng_xstrdup(m);
      for (char *c = r->expected_md5; *c; c++) *c = (char)tolower((unsigned char)*c);
      r->md5 = EVP_MD_CTX_new();
      if (!r->md5 || !EVP_DigestInit_ex(r->md5, EVP_md5(), NULL)) abort();
    }
  }
  if (r->md5) EVP_DigestUpdate(r->md5, buf, len);
  EVP_DigestUpdate(r->sha, buf, len);
  r->bytes += len;
  r->on_data(r->ud, buf, len);
  return len;
}

static void on_sidecar(void *ud, s3_req *q) {
  s3_reader *r = ud;
  char hex[65];
  int rc = sidecar_result(q, hex, r->err, sizeof r->err);
  if (r->cancelled) rc = ENG_ERR_CANCELLED;
  s3_req_free(q);
  if (rc == ENG_OK && hex[0]) {
    r->expected = eng_xstrdup(hex);
    r->expected_from = "sidecar";
  }
  end(r, rc);
}

static void on_get(void *ud, s3_req *q) {
  s3_reader *r = ud;
  char why[1024];
  int rc = r->at_rest_bad ? ENG_ERR_PROTOCOL : s3_req_check(q, r->err, sizeof r->err);
  if (rc == ENG_OK && s3_at_rest_check(&r->want, q, r->url, why, sizeof why) != ENG_OK) {
    snprintf(r->err, sizeof r->err, "%s", why); /* an empty object */
    rc = ENG_ERR_PROTOCOL;
  }
  if (r->cancelled) rc = ENG_ERR_CANCELLED;
  if (rc == ENG_OK) {
    if (q->etag) {
      size_t n = strlen(q->etag);
      r->etag = eng_xstrdup(q->etag[0] == '"' && n >= 2 ? q->etag + 1
                                                        : q->etag);
      n = strlen(r->etag);
      if (n && r->etag[n - 1] == '"') r->etag[n - 1] = '\0';
    }
    r->version = eng_xstrdup(q->version_id);
    int64_t t = aws_parse_time(q->last_modified);
    if (t >= 0) {
      char iso[32];
      aws_format_time(t, iso);
      r->last_modified = eng_xstrdup(iso);
    }
    char whole[65];
    if (q->meta_sha256 && aws_is_sha256(q->meta_sha256)) {
      r->expected = eng_xstrdup(q->meta_sha256);
      for (char *c = r->expected; *c; c++) *c = (char)tolower((unsigned char)*c);
      r->expected_from = "x-amz-meta-sha256";
    } else if (q->checksum_sha256 && !strchr(q->checksum_sha256, '-') &&
               aws_b64_to_hex(q->checksum_sha256, whole) == 0) {
      r->expected = eng_xstrdup(whole);
      r->expected_from = "x-amz-checksum-sha256";
    }
    if (q->content_length >= 0 && (uint64_t)q->content_length != r->bytes) {
      snprintf(r->err, sizeof r->err,
               "GET %s: the connection ended after %llu of %lld bytes",
               r->url, (unsigned long long)r->bytes,
               (long long)q->content_length);
      rc = ENG_ERR_IO;
    }
  }
  s3_req_free(q);
  r->req = NULL;
  if (rc == ENG_OK && !r->expected && r->want_expected) {
    r->req = sidecar_req(r->call, &r->cfg, r->bucket, r->key);
    if (s3_req_start(r->req, on_sidecar, r) == ENG_OK) return;
    s3_req_free(r->req);
    r->req = NULL;
  }
  end(r, rc);
}

int s3_reader_open(eng_call *call, const aws_cfg *cfg, const char *url,
                   int want_expected, eng_stream_data_cb on_data,
                   eng_stream_done_cb on_end, void *ud, s3_reader **out,
                   char *err, size_t errlen) {
  *out = NULL;
  char *bucket, *key;
  int rc = s3_url_parse(url, &bucket, &key, 0, err, errlen);
  if (rc != ENG_OK) return rc;
  s3_reader *r = eng_xcalloc(1, sizeof *r);
  r->call = call;
  aws_cfg_copy(&r->cfg, cfg);
  r->url = eng_asprintf("s3://%s/%s", bucket, key);
  r->bucket = bucket;
  r->key = key;
  r->want_expected = want_expected;
  r->on_data = on_data;
  r->on_end = on_end;
  r->ud = ud;
  r->length = -1;
  r->sha = EVP_MD_CTX_new();
  if (!r->sha || !EVP_DigestInit_ex(r->sha, EVP_sha256(), NULL)) abort();
  r->req = s3_req_new(call, &r->cfg, "GET", r->bucket, r->key, NULL);
  s3_req_header(r->req, "x-amz-checksum-mode: ENABLED");
  s3_req_set_sink(r->req, sink, r);
  rc = s3_req_start(r->req, on_get, r);
  if (rc != ENG_OK) {
    snprintf(err, errlen, "cannot start GET %s: %s", r->url, eng_strerror(rc));
    s3_req_free(r->req);
    reader_free(r);
    return rc;
  }
  *out = r;
  return ENG_OK;
}

void s3_reader_expect(s3_reader *r, const s3_at_rest *want) {
  s3_at_rest_free(&r->want);
  s3_at_rest_copy(&r->want, want);
}

void s3_reader_pause(s3_reader *r, int paused) {
  r->paused = paused;
  if (r->req) s3_req_pause(r->req, paused);
}

void s3_reader_cancel(s3_reader *r) {
  if (r->cancelled) return;
  r->cancelled = 1;
  snprintf(r->err, sizeof r->err, "reading %s: cancelled", r->url);
  if (r->req) s3_req_cancel(r->req); /* on_get/on_sidecar end it */
}
