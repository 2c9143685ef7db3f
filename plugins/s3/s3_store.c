/*
 * s3_store.c - the "s3" state store (ABI 1.3): `--state-dir
 * s3://BUCKET[/PREFIX]` keeps the journal, audit log, reports and run locks
 * as small objects PREFIX/KEY.
 *
 * Every function blocks: one request at a time on the handle's own curl
 * easy handle (curl_easy_perform), never the engine's loop, so they run on
 * worker threads or before the loop starts. No host service is used.
 * Signing, credentials, endpoints and errors are the AWS layer's and
 * s3_answer.c's, as for the loop-driven requests (s3_req.c).
 *
 * put() sends the body whole with its SHA-256 three ways: signed as
 * x-amz-content-sha256 (S3 refuses bytes that do not hash to it),
 * x-amz-checksum-sha256 (kept by S3) and x-amz-meta-sha256 (hex, read back
 * by get(), which refuses bytes that do not match), plus Content-MD5.
 * Conditions are S3's conditional writes: If-None-Match: * (create only)
 * and If-Match: ETAG (compare and swap; also on DELETE). HTTP 412 is
 * ENG_ERR_EXISTS; 409 ConditionalRequestConflict (a concurrent conditional
 * write) is retried.
 *
 * Retries: connection errors, timeouts, 5xx, throttling and 409 conflicts,
 * up to 5 attempts with jittered backoff. When an attempt's outcome is
 * unknown (no answer, 5xx) and the next one meets 412, the first may have
 * been applied: the object is read back (HEAD) and when it holds these
 * very bytes (its x-amz-meta-sha256) the put succeeded.
 */
#include "s3_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#define ST_TRIES 5
#define ST_BACKOFF_MS 200
#define ST_BACKOFF_CAP_MS 5000
#define ST_ERR_BODY_CAP ((size_t)1 << 20)

typedef struct s3_store {
  aws_cfg cfg;
  char *bucket;
  char *prefix; /* "" or "a/b" (no trailing '/') */
  CURL *easy;
  unsigned seed;
} s3_store;

/* One exchange's answer. */
typedef struct st_resp {
  s3_answer a; /* rc, status and tries; fail() fills in the rest */
  char curl_err[CURL_ERROR_SIZE];
  eng_strbuf body;
  char *etag, *meta_sha256;
  int unsure; /* an earlier attempt may have been applied */
} st_resp;

/* One request: what to send. */
typedef struct st_req {
  const char *op;     /* "put", "get", ... for messages */
  const char *method; /* "PUT", "GET", "HEAD", "DELETE" */
  const char *key;    /* the object's full key, "" for the bucket */
  const char *query;  /* canonical, or NULL */
  struct curl_slist *headers;
  const char *body;
  size_t len;
  const char *sha; /* hex SHA-256 of body */
} st_req;

int s3_curl_ok(void) {
  const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
  return v && v->version_num >= 0x074b00;
}

static void resp_clear(st_resp *r) {
  eng_strbuf_free(&r->body);
  free(r->etag);
  free(r->meta_sha256);
  r->etag = r->meta_sha256 = NULL;
  r->a.status = 0;
  r->a.rc = ENG_OK;
  r->curl_err[0] = '\0';
}

/* ---- the URL ---------------------------------------------------------------- */

static int bad_key(const s3_store *s, const char *op, const char *key,
                   int allow_empty, char *err, size_t n) {
  const char *why = NULL;
  if (!key || (!*key && !allow_empty))
    why = "the key is empty";
  else if (strstr(key, ".."))
    why = "the key contains '..'";
  else if (*key == '/')
    why = "the key begins with '/' (keys are relative to the prefix)";
  if (!why) return ENG_OK;
  snprintf(err, n, "state store %s s3://%s%s%s: key '%s': %s", op, s->bucket,
           *s->prefix ? "/" : "", s->prefix, key ? key : "", why);
  return ENG_ERR_INVALID;
}

/* PREFIX/KEY. Caller frees. */
static char *full_key(const s3_store *s, const char *key) {
  return *s->prefix ? eng_asprintf("%s/%s", s->prefix, key)
                    : eng_xstrdup(key);
}

static int st_open(const char *url, void **out, char *err, size_t n) {
  *out = NULL;
  if (!s3_curl_ok()) {
    snprintf(err, n, "state store %s: libcurl is older than 7.75 (no "
                     "SigV4 signing)", url ? url : "");
    return ENG_ERR_UNSUPPORTED;
  }
  if (url && strncmp(url, "s3://", 5) == 0 && (!url[5] || url[5] == '/')) {
    snprintf(err, n, "state store '%s' names no bucket "
                     "(s3://BUCKET[/PREFIX])", url);
    return ENG_ERR_INVALID;
  }
  char *bucket, *prefix;
  int rc = s3_url_parse(url, &bucket, &prefix, 1, err, n);
  if (rc != ENG_OK) return rc;
  size_t pl = strlen(prefix);
  while (pl > 0 && prefix[pl - 1] == '/') prefix[--pl] = '\0';
  if (strstr(prefix, "..") || *prefix == '/') {
    snprintf(err, n, "state store '%s': the prefix '%s' must not contain "
                     "'..' or begin with '/'", url, prefix);
    free(bucket);
    free(prefix);
    return ENG_ERR_INVALID;
  }
  s3_store *s = eng_xcalloc(1, sizeof *s);
  s->bucket = bucket;
  s->prefix = prefix;
  char why[512];
  rc = aws_cfg_load(NULL, NULL, NULL, "s3", &s->cfg, why, sizeof why);
  if (rc != ENG_OK) {
    snprintf(err, n, "state store %s: %s", url, why);
    free(s->bucket);
    free(s->prefix);
    free(s);
    return rc;
  }
  s->easy = curl_easy_init();
  if (!s->easy) {
    snprintf(err, n, "state store %s: cannot start libcurl", url);
    aws_cfg_free(&s->cfg);
    free(s->bucket);
    free(s->prefix);
    free(s);
    return ENG_ERR_NOMEM;
  }
  s->seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)s;
  *out = s;
  return ENG_OK;
}

static void st_close(void *store) {
  s3_store *s = store;
  if (!s) return;
  curl_easy_cleanup(s->easy);
  aws_cfg_free(&s->cfg);
  free(s->bucket);
  free(s->prefix);
  free(s);
}

/* ---- one exchange ------------------------------------------------------------- */

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  st_resp *r = ud;
  size_t len = sz * n;
  int ok = r->a.status >= 200 && r->a.status < 300;
  if (ok || r->body.len < ST_ERR_BODY_CAP) /* errors: the first MiB */
    eng_strbuf_add(&r->body, p, len);
  return len;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  st_resp *r = ud;
  size_t len = sz * n, nlen, vlen;
  const char *v;
  int k = s3_header_split(p, len, &nlen, &v, &vlen);
  if (k < 0) { /* a new response (100 Continue): forget the last one */
    free(r->etag);
    free(r->meta_sha256);
    r->etag = r->meta_sha256 = NULL;
    const char *sp = memchr(p, ' ', len);
    r->a.status = sp ? strtol(sp + 1, NULL, 10) : 0;
  } else if (k > 0 && s3_header_is(p, nlen, "etag")) {
    s3_header_dup(&r->etag, v, vlen);
  } else if (k > 0 && s3_header_is(p, nlen, "x-amz-meta-sha256")) {
    s3_header_dup(&r->meta_sha256, v, vlen);
  }
  return len;
}

static int curl_rc(CURLcode c) {
  switch (c) {
  case CURLE_OK: return ENG_OK;
  case CURLE_COULDNT_CONNECT:
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY: return ENG_ERR_CONNECT;
  case CURLE_OPERATION_TIMEDOUT: return ENG_ERR_TIMEOUT;
  case CURLE_OUT_OF_MEMORY: return ENG_ERR_NOMEM;
  default: return ENG_ERR_IO;
  }
}

static void attempt(s3_store *s, const st_req *q, int lenient, st_resp *r) {
  CURL *e = s->easy;
  curl_easy_reset(e);
  char *url = s3_build_url(&s->cfg, s->bucket, q->key, q->query, lenient);
  struct curl_slist *hdrs = NULL;
  for (struct curl_slist *h = q->headers; h; h = h->next)
    hdrs = curl_slist_append(hdrs, h->data);
  aws_sign(e, &s->cfg, q->sha ? q->sha : S3_EMPTY_SHA, &hdrs);
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_err);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L); /* below 1 byte/s */
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 30L); /* for 30 s: give up */
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_EXPECT_100_TIMEOUT_MS, 300L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "engine-s3-store/0.1");
  if (!strcmp(q->method, "HEAD")) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (!strcmp(q->method, "GET")) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (q->body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body);
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, q->method);
  } else {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, q->method);
  }
  resp_clear(r);
  r->a.tries++;
  CURLcode c = curl_easy_perform(e);
  r->a.rc = curl_rc(c);
  if (r->a.rc != ENG_OK && !r->curl_err[0])
    snprintf(r->curl_err, sizeof r->curl_err, "%s", curl_easy_strerror(c));
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->a.status);
  curl_easy_reset(e); /* forget the pointers into this frame */
  curl_slist_free_all(hdrs);
  free(url);
}

static const char *resp_code(const st_resp *r, char code[128]) {
  char text[8];
  aws_error_parse(r->body.data ? r->body.data : "", r->body.len, code, 128,
                  text, sizeof text);
  return code;
}

static void pause_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

/* Send q, retrying what is worth it; r holds the last answer. */
static void perform(s3_store *s, const st_req *q, st_resp *r) {
  int lenient = 0;
  r->a.tries = 0;
  r->unsure = 0;
  for (;;) {
    attempt(s, q, lenient, r);
    char code[128];
    resp_code(r, code);
    if (r->a.rc == ENG_OK && !lenient &&
        s3_lenient_retry(&s->cfg, q->method, q->key, q->query, r->a.status,
                         code, r->body.len)) {
      lenient = 1;
      r->a.tries--;
      continue;
    }
    int again = s3_transient(r->a.rc, r->a.status, code) ||
                (r->a.rc == ENG_OK && r->a.status == 409 &&
                 !strcmp(code, "ConditionalRequestConflict"));
    if (!again || r->a.tries >= ST_TRIES) return;
    if (r->a.rc != ENG_OK || r->a.status >= 500) r->unsure = 1;
    pause_ms(aws_backoff_ms(r->a.tries - 1, ST_BACKOFF_MS, ST_BACKOFF_CAP_MS,
                            (uint32_t)rand_r(&s->seed)));
  }
}

/* The message and code of a failed answer: "OP s3://BUCKET/KEY: why". */
static int fail(s3_store *s, const st_req *q, const st_resp *r, char *err,
                size_t n) {
  s3_answer a = r->a;
  a.cfg = &s->cfg;
  a.method = q->method;
  a.bucket = s->bucket;
  a.key = q->key;
  a.curl_err = r->curl_err;
  a.body = r->body.data;
  a.body_len = r->body.len;
  char why[1536];
  int rc = s3_answer_check(&a, why, sizeof why);
  if (rc == ENG_OK) return ENG_OK;
  snprintf(err, n, "state store %s s3://%s/%s: %s", q->op, s->bucket, q->key,
           why);
  return rc;
}

static void copy_etag(char etag[ENG_ETAG_MAX], const char *v) {
  if (etag) snprintf(etag, ENG_ETAG_MAX, "%s", v ? v : "");
}

/* "If-Match: ETAG", quoted as HTTP wants it when the caller left them off. */
static struct curl_slist *if_match(struct curl_slist *h, const char *etag) {
  char line[ENG_ETAG_MAX + 16];
  snprintf(line, sizeof line, etag[0] == '"' ? "If-Match: %s"
                                             : "If-Match: \"%s\"", etag);
  return curl_slist_append(h, line);
}

/* 412: the condition did not hold. */
static int not_held(const s3_store *s, const st_req *q, const char *cond,
                    const char *how, char *err, size_t n) {
  snprintf(err, n,
           "state store %s s3://%s/%s: the condition did not hold (%s %s): "
           "%s",
           q->op, s->bucket, q->key,
           !strcmp(cond, "*") ? "If-None-Match" : "If-Match", cond, how);
  return ENG_ERR_EXISTS;
}

/* ---- get ------------------------------------------------------------------------ */

static int st_get(void *store, const char *key, char **data, size_t *len,
                  char etag[ENG_ETAG_MAX], char *err, size_t n) {
  s3_store *s = store;
  *data = NULL;
  *len = 0;
  copy_etag(etag, NULL);
  int rc = bad_key(s, "get", key, 0, err, n);
  if (rc != ENG_OK) return rc;
  char *fk = full_key(s, key);
  st_req q = {.op = "get", .method = "GET", .key = fk};
  st_resp r = {0};
  perform(s, &q, &r);
  rc = fail(s, &q, &r, err, n);
  if (rc == ENG_OK && r.meta_sha256 && aws_is_sha256(r.meta_sha256)) {
    char got[65];
    aws_sha256_hex(r.body.data ? r.body.data : "", r.body.len, got);
    if (strcasecmp(got, r.meta_sha256) != 0) {
      snprintf(err, n,
               "state store get s3://%s/%s: the object's bytes do not match "
               "its SHA-256 (x-amz-meta-sha256 %s, read %s: %zu bytes)",
               s->bucket, fk, r.meta_sha256, got, r.body.len);
      rc = ENG_ERR_CHECKSUM;
    }
  }
  if (rc == ENG_OK) {
    copy_etag(etag, r.etag);
    *len = r.body.len;
    *data = r.body.data ? r.body.data : eng_xstrdup("");
    r.body.data = NULL;
  }
  resp_clear(&r);
  free(fk);
  return rc;
}

/* ---- put ------------------------------------------------------------------------ */

/* After a 412 that followed an attempt with an unknown outcome: does the
 * object hold these bytes (ours, written by that attempt)? Then its ETag. */
static int ours_after_all(s3_store *s, const char *fk, const char *sha,
                          char etag[ENG_ETAG_MAX]) {
  st_req q = {.op = "put", .method = "HEAD", .key = fk};
  st_resp r = {0};
  perform(s, &q, &r);
  int mine = r.a.rc == ENG_OK && r.a.status == 200 && r.meta_sha256 &&
             !strcasecmp(r.meta_sha256, sha);
  if (mine) copy_etag(etag, r.etag);
  resp_clear(&r);
  return mine;
}

static int st_put(void *store, const char *key, const void *data, size_t len,
                  const char *cond, char etag[ENG_ETAG_MAX], char *err,
                  size_t n) {
  s3_store *s = store;
  copy_etag(etag, NULL);
  int rc = bad_key(s, "put", key, 0, err, n);
  if (rc != ENG_OK) return rc;
  if (cond && !*cond) cond = NULL;
  const char *body = data ? data : "";
  char sha[65], sha_b64[45], line[256];
  aws_sha256_hex(body, len, sha);
  aws_hex_to_b64(sha, sha_b64);
  unsigned char md5[EVP_MAX_MD_SIZE];
  unsigned int md5len = 0;
  EVP_Digest(body, len, md5, &md5len, EVP_md5(), NULL);
  char md5_b64[32];
  EVP_EncodeBlock((unsigned char *)md5_b64, md5, (int)md5len);

  struct curl_slist *h = NULL;
  h = curl_slist_append(h, "Content-Type: application/octet-stream");
  snprintf(line, sizeof line, "Content-MD5: %s", md5_b64);
  h = curl_slist_append(h, line);
  h = curl_slist_append(h, "x-amz-sdk-checksum-algorithm: SHA256");
  snprintf(line, sizeof line, "x-amz-checksum-sha256: %s", sha_b64);
  h = curl_slist_append(h, line);
  snprintf(line, sizeof line, "x-amz-meta-sha256: %s", sha);
  h = curl_slist_append(h, line);
  if (cond && !strcmp(cond, "*"))
    h = curl_slist_append(h, "If-None-Match: *");
  else if (cond)
    h = if_match(h, cond);

  char *fk = full_key(s, key);
  st_req q = {.op = "put", .method = "PUT", .key = fk, .headers = h,
              .body = body, .len = len, .sha = sha};
  st_resp r = {0};
  perform(s, &q, &r);
  char code[128];
  resp_code(&r, code);
  if (r.a.rc == ENG_OK && cond &&
      (r.a.status == 412 ||
       (r.a.status == 404 && strcmp(code, "NoSuchBucket") != 0))) {
    if (r.unsure && ours_after_all(s, fk, sha, etag))
      rc = ENG_OK;
    else
      rc = not_held(s, &q, cond,
                    r.a.status == 404 ? "there is no such object"
                    : !strcmp(cond, "*") ? "the object exists"
                                         : "the object's ETag differs",
                    err, n);
  } else {
    rc = fail(s, &q, &r, err, n);
    if (rc == ENG_OK) copy_etag(etag, r.etag);
  }
  resp_clear(&r);
  curl_slist_free_all(h);
  free(fk);
  return rc;
}

/* ---- del ------------------------------------------------------------------------ */

static int st_del(void *store, const char *key, const char *cond, char *err,
                  size_t n) {
  s3_store *s = store;
  int rc = bad_key(s, "del", key, 0, err, n);
  if (rc != ENG_OK) return rc;
  if (cond && !*cond) cond = NULL;
  if (cond && !strcmp(cond, "*")) {
    snprintf(err, n, "state store del s3://%s/%s: the condition is an "
                     "ETag, not '*'", s->bucket, key);
    return ENG_ERR_INVALID;
  }
  struct curl_slist *h = cond ? if_match(NULL, cond) : NULL;
  char *fk = full_key(s, key);
  st_req q = {.op = "del", .method = "DELETE", .key = fk, .headers = h};
  st_resp r = {0};
  perform(s, &q, &r);
  char code[128];
  resp_code(&r, code);
  if (r.a.rc == ENG_OK && r.a.status == 412)
    rc = not_held(s, &q, cond ? cond : "", "the object's ETag differs", err,
                  n);
  else if (r.a.rc == ENG_OK && r.a.status == 404 &&
           strcmp(code, "NoSuchBucket") != 0)
    rc = ENG_OK; /* already gone */
  else
    rc = fail(s, &q, &r, err, n);
  resp_clear(&r);
  curl_slist_free_all(h);
  free(fk);
  return rc;
}

/* ---- list ------------------------------------------------------------------------ */

typedef struct st_list {
  size_t skip; /* strlen(PREFIX/) */
  void (*cb)(void *ud, const char *key, int64_t size);
  void *ud;
} st_list;

static void list_each(void *ud, const aws_xml *c) {
  st_list *l = ud;
  const char *k = aws_xml_text(c, "Key");
  if (strlen(k) < l->skip) return;
  const char *sz = aws_xml_text(c, "Size");
  l->cb(l->ud, k + l->skip, sz ? strtoll(sz, NULL, 10) : 0);
}

static int st_list_keys(void *store, const char *prefix,
                        void (*cb)(void *ud, const char *key, int64_t size),
                        void *ud, char *err, size_t n) {
  s3_store *s = store;
  if (!prefix) prefix = "";
  int rc = bad_key(s, "list", prefix, 1, err, n);
  if (rc != ENG_OK) return rc;
  char *base = *s->prefix ? eng_asprintf("%s/", s->prefix) : eng_xstrdup("");
  char *full = eng_asprintf("%s%s", base, prefix);
  st_list l = {.skip = strlen(base), .cb = cb, .ud = ud};
  char *token = NULL;
  do {
    char *query = s3_list_query(full, token);
    st_req q = {.op = "list", .method = "GET", .key = "", .query = query};
    st_resp r = {0};
    perform(s, &q, &r);
    rc = fail(s, &q, &r, err, n);
    if (rc != ENG_OK && r.a.rc == ENG_OK)
      snprintf(err + strlen(err), n - strlen(err), " (listing '%s')", full);
    char *next = NULL;
    if (rc == ENG_OK &&
        s3_list_page(r.body.data, r.body.len, list_each, &l, &next) !=
            ENG_OK) {
      snprintf(err, n, "state store list s3://%s/%s: S3's answer is not a usable "
                       "ListBucketResult", s->bucket, full);
      rc = ENG_ERR_PROTOCOL;
    }
    if (next && token && !strcmp(next, token)) { /* a page over and over */
      snprintf(err, n, "state store list s3://%s/%s: S3 repeated the "
                       "continuation token", s->bucket, full);
      rc = ENG_ERR_PROTOCOL;
    }
    free(token);
    token = next;
    resp_clear(&r);
    free(query);
  } while (rc == ENG_OK && token);
  free(token);
  free(base);
  free(full);
  return rc;
}

const eng_store_scheme s3_store_scheme = {
    .scheme = "s3",
    .open = st_open,
    .close = st_close,
    .get = st_get,
    .put = st_put,
    .del = st_del,
    .list = st_list_keys,
};
