/*
 * s3_req.c - one signed S3 request on the engine's curl multi.
 *
 * Signing: the AWS layer's aws_sign() (libcurl's CURLOPT_AWS_SIGV4,
 * "aws:amz:REGION:s3") signs the method, the path exactly as given
 * (CURLOPT_PATH_AS_IS; s3_build_url encodes keys once, '/' kept, as S3's
 * canonical URI wants), the query exactly as
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
 * everything else is kept (capped at 1 MiB) and read by s3_req_check()
 * (s3_answer.c). Transient failures (s3_transient: connection errors, 5xx,
 * throttling) are retried here with backoff.
 */
#include "s3_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define S3_BODY_CAP ((size_t)1 << 20)
#define S3_RETRY_MS 400

static const char *retry_reason(s3_req *r, char *buf, size_t n);

s3_req *s3_req_new(eng_call *call, const aws_cfg *cfg, const char *method,
                   const char *bucket, const char *key, const char *query) {
  s3_req *r = eng_xcalloc(1, sizeof *r);
  r->call = call;
  r->cfg = cfg;
  r->method = eng_xstrdup(method);
  r->bucket = eng_xstrdup(bucket);
  r->key = eng_xstrdup(key ? key : "");
  r->query = query && *query ? eng_xstrdup(query) : NULL;
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
  free(r->lock_mode);
  free(r->lock_until);
  free(r->sse);
  r->etag = r->version_id = r->meta_sha256 = r->last_modified = NULL;
  r->content_type = r->meta_md5 = r->checksum_sha256 = NULL;
  r->lock_mode = r->lock_until = r->sse = NULL;
  r->content_length = -1;
}

static void clear_response(s3_req *r) {
  eng_strbuf_free(&r->body);
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
  if (r->body.len < S3_BODY_CAP) eng_strbuf_add(&r->body, p, len);
  return len;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  s3_req *r = ud;
  size_t len = sz * n;
  const char *v;
  size_t nlen, vlen;
  int k = s3_header_split(p, len, &nlen, &v, &vlen);
  if (k < 0) {
    /* a new response (100 Continue, a redirect): forget the last one */
    clear_headers(r);
    return len;
  }
  if (k == 0) return len;
#define IS(name) s3_header_is(p, nlen, name)
  if (IS("etag"))
    s3_header_dup(&r->etag, v, vlen);
  else if (IS("x-amz-version-id"))
    s3_header_dup(&r->version_id, v, vlen);
  else if (IS("x-amz-meta-sha256"))
    s3_header_dup(&r->meta_sha256, v, vlen);
  else if (IS("x-amz-meta-md5"))
    s3_header_dup(&r->meta_md5, v, vlen);
  else if (IS("x-amz-checksum-sha256"))
    s3_header_dup(&r->checksum_sha256, v, vlen);
  else if (IS("x-amz-object-lock-mode"))
    s3_header_dup(&r->lock_mode, v, vlen);
  else if (IS("x-amz-object-lock-retain-until-date"))
    s3_header_dup(&r->lock_until, v, vlen);
  else if (IS("x-amz-server-side-encryption"))
    s3_header_dup(&r->sse, v, vlen);
  else if (IS("last-modified"))
    s3_header_dup(&r->last_modified, v, vlen);
  else if (IS("content-type"))
    s3_header_dup(&r->content_type, v, vlen);
  else if (IS("content-length"))
    r->content_length = s3_header_int(v, vlen);
#undef IS
  return len;
}

/* ---- running --------------------------------------------------------------------- */

static int retryable(s3_req *r) {
  if (r->cancelled || r->delivered > 0 || r->tries >= r->max_tries) return 0;
  return s3_transient(r->rc, r->status, s3_req_error_code(r));
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
  if (r->rc == ENG_OK && !r->lenient &&
      s3_lenient_retry(r->cfg, r->method, r->key, r->query, r->status,
                       s3_req_error_code(r), r->body.len)) {
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
  if (!r->url)
    r->url = s3_build_url(c, r->bucket, r->key, r->query, r->lenient);

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

const char *s3_req_error_code(s3_req *r) {
  static char code[128];
  char text[8];
  aws_error_parse(r->body.data ? r->body.data : "", r->body.len, code,
                  sizeof code, text, sizeof text);
  return code;
}

int s3_req_check(s3_req *r, char *msg, size_t n) {
  s3_answer a = {.cfg = r->cfg,
                 .method = r->method,
                 .bucket = r->bucket,
                 .key = r->key,
                 .rc = r->rc,
                 .status = r->status,
                 .curl_err = r->curl_err,
                 .body = r->body.data,
                 .body_len = r->body.len,
                 .tries = r->tries};
  return s3_answer_check(&a, msg, n);
}
