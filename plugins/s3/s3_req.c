/*
 * s3_req.c - one signed S3 request on the engine's curl multi.
 *
 * Signing: the AWS layer's aws_sign() (libcurl's CURLOPT_AWS_SIGV4,
 * "aws:amz:REGION:s3") signs the method, the path exactly as given (CURLOPT_PATH_AS_IS; keys are encoded
 * here once, '/' kept, as S3's canonical URI wants), the query exactly as
 * given (callers pass it canonical: sorted, "uploads="), host, x-amz-date
 * and the headers set here, with x-amz-content-sha256 the real hex
 * SHA-256 of the payload, so S3 also checks the bytes it received
 * (XAmzContentSHA256Mismatch otherwise).
 *
 * Bodies go out with CURLOPT_POSTFIELDS (a borrowed buffer, so a retry
 * needs no rewinding). An "Expect:" header to suppress 100-continue would
 * be signed by libcurl 7.88 yet not sent (SignatureDoesNotMatch), so
 * curl's own Expect (bodies over 1 MiB, added after signing) stays, with a
 * short wait for servers that never answer 100.
 * Responses: a 2xx body goes to the sink when one is set (GetObject),
 * everything else is kept (capped at 1 MiB) and parsed as XML by
 * s3_req_check(). Transient failures are retried here with backoff.
 */
#include "s3_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#define S3_BODY_CAP ((size_t)1 << 20)
#define S3_RETRY_MS 400

static const char *retry_reason(s3_req *r, char *buf, size_t n);

s3_req *s3_req_new(eng_call *call, const aws_cfg *cfg, const char *method,
                   const char *bucket, const char *key, const char *query) {
  s3_req *r = aws_xcalloc(1, sizeof *r);
  r->call = call;
  r->cfg = cfg;
  r->method = aws_xstrdup(method);
  r->bucket = aws_xstrdup(bucket);
  r->key = aws_xstrdup(key ? key : "");
  r->query = query && *query ? aws_xstrdup(query) : NULL;
  r->max_tries = 3;
  r->content_length = -1;
  memcpy(r->req_sha, S3_EMPTY_SHA, 65);
  return r;
}

void s3_req_header(s3_req *r, const char *fmt, ...) {
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  r->extra = curl_slist_append(r->extra, line);
}

void s3_req_body(s3_req *r, const char *body, size_t len, const char *sha) {
  r->req_body = body ? body : "";
  r->req_len = len;
  if (sha && aws_is_sha256(sha))
    memcpy(r->req_sha, sha, 65);
  else
    aws_sha256_hex(r->req_body, len, r->req_sha);
}

void s3_req_set_sink(s3_req *r, s3_req_sink sink, void *ud) {
  r->sink = sink;
  r->sink_ud = ud;
}

/* Forgets the response headers kept so far. */
static void clear_headers(s3_req *r) {
  free(r->etag);
  free(r->version_id);
  free(r->meta_sha256);
  free(r->last_modified);
  free(r->content_type);
  free(r->meta_md5);
  free(r->checksum_sha256);
  r->etag = r->version_id = r->meta_sha256 = r->last_modified = NULL;
  r->content_type = r->meta_md5 = r->checksum_sha256 = NULL;
  r->content_length = -1;
}

static void clear_response(s3_req *r) {
  aws_buf_free(&r->body);
  clear_headers(r);
  r->status = 0;
  r->curl_err[0] = '\0';
}

void s3_req_free(s3_req *r) {
  if (!r) return;
  clear_response(r);
  if (r->easy) curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->extra);
  curl_slist_free_all(r->hdrs);
  free(r->method);
  free(r->bucket);
  free(r->key);
  free(r->query);
  free(r->url);
  free(r);
}

/* ---- the URL ------------------------------------------------------------------- */

/* moto (werkzeug) re-quotes the URL before it checks the signature, leaving
 * these characters unencoded: in paths the RFC 3986 sub-delimiters and
 * ':' '@'; in query values '/' and most sub-delimiters, but not '+', '='
 * or '&'. */
static const char PATH_RAW[] = "!$&'()*+,;=:@";
static const char QUERY_RAW[] = "/!$'()*,;:@";

/* Decode the %XX escapes of the characters in `set`. Caller frees. */
static char *unescape_set(const char *s, const char *set) {
  aws_buf b = {0};
  aws_buf_adds(&b, "");
  for (const char *p = s; *p; p++) {
    if (p[0] == '%' && p[1] && p[2]) {
      char hex[3] = {p[1], p[2], 0};
      char c = (char)strtol(hex, NULL, 16);
      if (c && strchr(set, c)) {
        aws_buf_add(&b, &c, 1);
        p += 2;
        continue;
      }
    }
    aws_buf_add(&b, p, 1);
  }
  return b.data;
}

/* Would the lenient form differ from the strict one? */
static int lenient_differs(const s3_req *r) {
  char *k = aws_uri_encode(r->key, 1);
  char *a = unescape_set(k, PATH_RAW);
  int d = strcmp(a, k) != 0;
  free(a);
  free(k);
  if (!d && r->query) {
    char *q = unescape_set(r->query, QUERY_RAW);
    d = strcmp(q, r->query) != 0;
    free(q);
  }
  return d;
}

/* The key for the path: strict (every byte but unreserved ones and '/'
 * %-encoded, as AWS canonicalizes), or lenient (as moto canonicalizes). */
static char *encode_key(const char *key, int lenient) {
  char *strict = aws_uri_encode(key, 1);
  if (!lenient) return strict;
  char *l = unescape_set(strict, PATH_RAW);
  free(strict);
  return l;
}

static char *build_url(const s3_req *r) {
  const aws_cfg *c = r->cfg;
  char *key = encode_key(r->key, r->lenient);
  aws_buf u = {0};
  int vhost = !c->custom && !strchr(r->bucket, '.');
  if (vhost) {
    const char *p = strstr(c->endpoint, "://");
    aws_buf_add(&u, c->endpoint, (size_t)(p + 3 - c->endpoint));
    aws_buf_addf(&u, "%s.%s/%s", r->bucket, p + 3, key);
  } else {
    aws_buf_addf(&u, "%s/%s", c->endpoint, r->bucket);
    if (*key) aws_buf_addf(&u, "/%s", key);
  }
  if (r->query && r->lenient) {
    char *q = unescape_set(r->query, QUERY_RAW);
    aws_buf_addf(&u, "?%s", q);
    free(q);
  } else if (r->query) {
    aws_buf_addf(&u, "?%s", r->query);
  }
  free(key);
  return u.data;
}

/* ---- curl callbacks --------------------------------------------------------------- */

static size_t on_write(char *p, size_t sz, size_t n, void *ud) {
  s3_req *r = ud;
  size_t len = sz * n;
  long st = 0;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &st);
  if (r->sink && st >= 200 && st < 300) {
    if (r->paused) return CURL_WRITEFUNC_PAUSE;
    size_t k = r->sink(r->sink_ud, p, len);
    if (k == CURL_WRITEFUNC_PAUSE) {
      r->paused = 1;
      return k;
    }
    r->delivered += len;
    return len;
  }
  if (r->body.len < S3_BODY_CAP) aws_buf_add(&r->body, p, len);
  return len;
}

static void set_hdr(char **dst, const char *v, size_t n) {
  free(*dst);
  *dst = aws_xmalloc(n + 1);
  memcpy(*dst, v, n);
  (*dst)[n] = '\0';
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  s3_req *r = ud;
  size_t len = sz * n;
  if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
    /* a new response (100 Continue, a redirect): forget the last one */
    clear_headers(r);
    return len;
  }
  const char *colon = memchr(p, ':', len);
  if (!colon) return len;
  size_t nlen = (size_t)(colon - p);
  const char *v = colon + 1, *e = p + len;
  while (v < e && (*v == ' ' || *v == '\t')) v++;
  while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ')) e--;
  size_t vlen = (size_t)(e - v);
#define IS(name) (nlen == sizeof(name) - 1 && strncasecmp(p, name, nlen) == 0)
  if (IS("etag"))
    set_hdr(&r->etag, v, vlen);
  else if (IS("x-amz-version-id"))
    set_hdr(&r->version_id, v, vlen);
  else if (IS("x-amz-meta-sha256"))
    set_hdr(&r->meta_sha256, v, vlen);
  else if (IS("x-amz-meta-md5"))
    set_hdr(&r->meta_md5, v, vlen);
  else if (IS("x-amz-checksum-sha256"))
    set_hdr(&r->checksum_sha256, v, vlen);
  else if (IS("last-modified"))
    set_hdr(&r->last_modified, v, vlen);
  else if (IS("content-type"))
    set_hdr(&r->content_type, v, vlen);
  else if (IS("content-length")) {
    char tmp[32];
    size_t k = vlen < sizeof tmp - 1 ? vlen : sizeof tmp - 1;
    memcpy(tmp, v, k);
    tmp[k] = '\0';
    r->content_length = strtoll(tmp, NULL, 10);
  }
#undef IS
  return len;
}

/* ---- running --------------------------------------------------------------------- */

static int retryable(const s3_req *r) {
  if (r->cancelled || r->delivered > 0 || r->tries >= r->max_tries) return 0;
  if (r->rc == ENG_ERR_TIMEOUT || r->rc == ENG_ERR_IO ||
      r->rc == ENG_ERR_CONNECT)
    return 1;
  if (r->rc == ENG_OK &&
      (r->status == 500 || r->status == 502 || r->status == 503 ||
       r->status == 504))
    return 1;
  return 0;
}

static int try_start(s3_req *r);

static void finish(s3_req *r) {
  s3_req_cb cb = r->cb;
  r->cb = NULL;
  if (cb) cb(r->ud, r);
}

static void on_retry(void *ud) {
  s3_req *r = ud;
  r->retry_timer = NULL;
  if (r->cancelled) {
    r->rc = ENG_ERR_CANCELLED;
    finish(r);
    return;
  }
  int rc = try_start(r);
  if (rc != ENG_OK) {
    r->rc = rc;
    snprintf(r->curl_err, sizeof r->curl_err, "%s", eng_strerror(rc));
    finish(r);
  }
}

static void on_http(void *ud, int rc, long status, const char *error) {
  s3_req *r = ud;
  r->http = NULL;
  r->running = 0;
  r->rc = rc;
  r->status = status;
  if (rc != ENG_OK) snprintf(r->curl_err, sizeof r->curl_err, "%s",
                             error ? error : eng_strerror(rc));
  if (r->cancelled) r->rc = ENG_ERR_CANCELLED;
  if (r->rc == ENG_OK && r->status == 403 && !r->lenient &&
      r->cfg->custom && lenient_differs(r) &&
      (!strcmp(s3_req_error_code(r), "SignatureDoesNotMatch") ||
       (r->body.len == 0 && !strcmp(r->method, "HEAD")))) {
    /* Some S3-compatible servers (moto) canonicalize paths and queries
     * with some reserved characters unencoded: with the right secret the
     * lenient form then matches. Only on custom endpoints, only after a
     * signature mismatch, once; AWS (and MinIO) accept the strict form. */
    r->lenient = 1;
    free(r->url);
    r->url = NULL;
    r->tries--;
    int rc2 = try_start(r);
    if (rc2 == ENG_OK) return;
    r->rc = rc2;
  }
  if (retryable(r)) {
    char why[400];
    unsigned ms = (unsigned)S3_RETRY_MS << (r->tries - 1);
    s3_host->log(r->call, ENG_LOG_WARN,
                 "S3 %s s3://%s/%s: %s; retrying in %u ms (attempt %d of %d)",
                 r->method, r->bucket, r->key, retry_reason(r, why, sizeof why),
                 ms, r->tries + 1, r->max_tries);
    r->retry_timer = s3_host->timer_start(r->call, ms, on_retry, r);
    if (r->retry_timer) return;
  }
  finish(r);
}

static int try_start(s3_req *r) {
  const aws_cfg *c = r->cfg;
  clear_response(r);
  r->delivered = 0;
  r->paused = 0;
  r->tries++;
  if (!r->easy) r->easy = curl_easy_init();
  CURL *e = r->easy;
  if (!e) return ENG_ERR_NOMEM;
  curl_easy_reset(e);
  if (!r->url) r->url = build_url(r);

  curl_slist_free_all(r->hdrs);
  r->hdrs = NULL;
  for (struct curl_slist *s = r->extra; s; s = s->next)
    r->hdrs = curl_slist_append(r->hdrs, s->data);
  aws_sign(e, c, r->req_sha, &r->hdrs);
  curl_easy_setopt(e, CURLOPT_URL, r->url);
  curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdrs);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 15000L);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_EXPECT_100_TIMEOUT_MS, 300L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "engine-s3/" "0.1");
  if (!r->sink) { /* a stalled answer: 60 s below 1 byte/s */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 60L);
  }
  if (strcmp(r->method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (strcmp(r->method, "GET") == 0) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (r->req_body) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->req_len);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->req_body);
    if (strcmp(r->method, "POST") != 0)
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
  } else {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
  }
  r->running = 1;
  int rc = s3_host->http_start(r->call, e, on_http, r, &r->http);
  if (rc != ENG_OK) r->running = 0;
  return rc;
}

int s3_req_start(s3_req *r, s3_req_cb cb, void *ud) {
  r->cb = cb;
  r->ud = ud;
  r->tries = 0;
  int rc = try_start(r);
  if (rc != ENG_OK) r->cb = NULL;
  return rc;
}

void s3_req_cancel(s3_req *r) {
  if (!r || r->cancelled) return;
  r->cancelled = 1;
  if (r->http) {
    s3_host->http_cancel(r->http); /* on_http runs, now or soon */
  } else if (r->retry_timer) {
    s3_host->timer_stop(r->retry_timer);
    r->retry_timer = NULL;
    r->rc = ENG_ERR_CANCELLED;
    finish(r);
  }
}

void s3_req_pause(s3_req *r, int paused) {
  if (!r) return;
  if (paused) {
    r->paused = 1;
    return;
  }
  if (!r->paused) return;
  r->paused = 0;
  if (r->http) s3_host->http_unpause(r->http);
}

/* ---- what went wrong, for people ---------------------------------------------- */

static const char *retry_reason(s3_req *r, char *buf, size_t n) {
  if (r->rc != ENG_OK)
    snprintf(buf, n, "%s", r->curl_err);
  else
    snprintf(buf, n, "HTTP %ld %s", r->status, s3_req_error_code(r));
  return buf;
}

/* S3's <Error> document of the answer: 1 with code and text, else 0. */
static int error_of(s3_req *r, char *code, size_t cn, char *text, size_t tn) {
  return aws_error_parse(r->body.data ? r->body.data : "", r->body.len, code,
                         cn, text, tn);
}

const char *s3_req_error_code(s3_req *r) {
  static char code[128];
  char text[8];
  error_of(r, code, sizeof code, text, sizeof text);
  return code;
}

int s3_req_check(s3_req *r, char *msg, size_t n) {
  char target[1200];
  snprintf(target, sizeof target, "s3://%s%s%s", r->bucket, *r->key ? "/" : "",
           r->key);
  if (r->rc == ENG_ERR_CANCELLED) {
    snprintf(msg, n, "%s %s: cancelled", r->method, target);
    return ENG_ERR_CANCELLED;
  }
  if (r->rc == ENG_ERR_CONNECT) {
    snprintf(msg, n,
             "cannot connect to the S3 endpoint %s (%s): check the endpoint "
             "parameter or AWS_ENDPOINT_URL, and that the service is up",
             r->cfg->endpoint, r->curl_err);
    return ENG_ERR_CONNECT;
  }
  if (r->rc == ENG_ERR_TIMEOUT) {
    snprintf(msg, n, "%s %s timed out after %d attempts (%s)", r->method,
             target, r->tries, r->curl_err);
    return ENG_ERR_TIMEOUT;
  }
  if (r->rc != ENG_OK) {
    snprintf(msg, n, "%s %s failed: %s", r->method, target, r->curl_err);
    return r->rc;
  }
  char code[128], text[512];
  int has_err = error_of(r, code, sizeof code, text, sizeof text);
  int rc = ENG_OK;
  if (r->status >= 200 && r->status < 300) {
    if (has_err) { /* CompleteMultipartUpload and CopyObject can do this */
      snprintf(msg, n,
               "%s %s: S3 answered HTTP %ld with an error: %s: %s", r->method,
               target, r->status, code, text);
      rc = ENG_ERR_PROTOCOL;
    }
  } else if ((rc = aws_auth_error(code, r->cfg, msg, n)) != ENG_OK) {
    /* the message names what to check */
  } else if (!strcmp(code, "AccessDenied") ||
             (r->status == 403 && !*code)) {
    snprintf(msg, n,
             "access denied to %s (HTTP 403%s%s): check the credentials "
             "(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and the "
             "bucket's policy",
             target, *text ? ": " : "", text);
    rc = ENG_ERR_AUTH;
  } else if (!strcmp(code, "NoSuchBucket")) {
    snprintf(msg, n,
             "bucket '%s' does not exist (NoSuchBucket) at %s: check the "
             "URL and the endpoint",
             r->bucket, r->cfg->endpoint);
    rc = ENG_ERR_NOTFOUND;
  } else if (!strcmp(code, "NoSuchKey") || (r->status == 404 && !*code)) {
    snprintf(msg, n, "object %s does not exist (NoSuchKey)", target);
    rc = ENG_ERR_NOTFOUND;
  } else if (!strcmp(code, "NoSuchUpload")) {
    snprintf(msg, n,
             "the multipart upload of %s no longer exists (NoSuchUpload): it "
             "was aborted or completed elsewhere",
             target);
    rc = ENG_ERR_NOTFOUND;
  } else if (!strcmp(code, "PermanentRedirect") ||
             !strcmp(code, "AuthorizationHeaderMalformed")) {
    snprintf(msg, n,
             "bucket '%s' is in another region than '%s' (%s): set the "
             "region parameter or AWS_REGION",
             r->bucket, r->cfg->region, code);
    rc = ENG_ERR_INVALID;
  } else {
    snprintf(msg, n, "%s %s: HTTP %ld%s%s%s%s", r->method, target, r->status,
             *code ? " " : "", code, *text ? ": " : "", text);
    rc = r->status == 404 ? ENG_ERR_NOTFOUND : ENG_ERR_FAILED;
  }
  return rc;
}
