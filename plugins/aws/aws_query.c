/*
 * aws_query.c - one call of an AWS Query API (RDS, IAM, EC2...): a
 * form-encoded POST of Action, Version and the parameters to the service's
 * endpoint, signed with SigV4, on the host's curl multi.
 *
 * The answer is kept whole (capped at 8 MiB: a page of DescribeDB* answers
 * is far smaller) and parsed once it is complete: a 2xx answer must be a
 * well-formed document without an error, anything else is an error whose
 * code AWS named when it did. Throttling and transient failures are retried
 * with capped, jittered backoff; everything else is the caller's to decide.
 */
#include "aws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#define AWS_QUERY_BODY_CAP ((size_t)8 << 20)
#define AWS_QUERY_TRIES 6
#define AWS_QUERY_BASE_MS 1000
#define AWS_QUERY_CAP_MS 20000

static char *form_encode(const char *s) { return aws_uri_encode(s, 0); }

aws_query *aws_query_new(const eng_host *host, eng_call *call,
                         const aws_cfg *cfg, const char *action,
                         const char *version) {
  aws_query *q = eng_xcalloc(1, sizeof *q);
  q->host = host;
  q->call = call;
  q->cfg = cfg;
  q->action = eng_xstrdup(action);
  q->max_tries = AWS_QUERY_TRIES;
  const char *seed = getenv("ENGINE_TEST_SEED");
  q->seed = seed && *seed ? (uint32_t)strtoul(seed, NULL, 10)
                          : (uint32_t)time(NULL) ^ (uint32_t)getpid() ^
                                (uint32_t)(uintptr_t)q;
  aws_query_param(q, "Action", action);
  aws_query_param(q, "Version", version);
  return q;
}

void aws_query_param(aws_query *q, const char *name, const char *value) {
  char *n = form_encode(name), *v = form_encode(value ? value : "");
  eng_strbuf_addf(&q->form, "%s%s=%s", q->form.len ? "&" : "", n, v);
  free(n);
  free(v);
}

void aws_query_free(aws_query *q) {
  if (!q) return;
  if (q->easy) curl_easy_cleanup(q->easy);
  curl_slist_free_all(q->hdrs);
  aws_xml_free(q->doc);
  eng_strbuf_free(&q->body);
  eng_strbuf_free(&q->form);
  free(q->action);
  free(q);
}

static size_t on_write(char *p, size_t sz, size_t n, void *ud) {
  aws_query *q = ud;
  size_t len = sz * n;
  if (q->body.len + len > AWS_QUERY_BODY_CAP) return 0; /* aborts: too big */
  eng_strbuf_add(&q->body, p, len);
  return len;
}

static int try_start(aws_query *q);

static void finish(aws_query *q) {
  aws_query_cb cb = q->cb;
  q->cb = NULL;
  if (cb) cb(q->ud, q);
}

static void on_retry(void *ud) {
  aws_query *q = ud;
  q->timer = NULL;
  int rc = try_start(q);
  if (rc != ENG_OK) {
    q->rc = rc;
    snprintf(q->message, sizeof q->message, "%s %s: %s", q->cfg->service,
             q->action, eng_strerror(rc));
    finish(q);
  }
}

/* What the answer says; sets rc, code, message and doc. */
static void classify(aws_query *q, int rc, const char *curl_msg) {
  const char *svc = q->cfg->service;
  q->code[0] = '\0';
  if (rc != ENG_OK) {
    q->rc = rc;
    if (rc == ENG_ERR_CONNECT)
      snprintf(q->message, sizeof q->message,
               "cannot connect to the %s endpoint %s (%s): check the endpoint "
               "parameter or AWS_ENDPOINT_URL, and that the service is up",
               svc, q->cfg->endpoint, curl_msg);
    else
      snprintf(q->message, sizeof q->message, "%s %s at %s failed: %s", svc,
               q->action, q->cfg->endpoint, curl_msg);
    return;
  }
  char amsg[512];
  int has_err = aws_error_parse(q->body.data ? q->body.data : "", q->body.len,
                                q->code, sizeof q->code, amsg, sizeof amsg);
  if (q->status >= 200 && q->status < 300 && !has_err) {
    q->doc = aws_xml_parse(q->body.data, q->body.len);
    if (q->doc) {
      q->rc = ENG_OK;
      return;
    }
    q->rc = ENG_ERR_PROTOCOL;
    snprintf(q->message, sizeof q->message,
             "%s %s: the answer (HTTP %ld, %zu bytes) is not a complete XML "
             "document; the connection may have been cut or something "
             "between the engine and %s answers instead of it",
             svc, q->action, q->status, q->body.len, q->cfg->endpoint);
    return;
  }
  if (aws_auth_error(q->code, q->cfg, q->message, sizeof q->message) !=
      ENG_OK) {
    q->rc = ENG_ERR_AUTH;
    return;
  }
  if (has_err && q->status >= 200 && q->status < 300) {
    q->rc = ENG_ERR_PROTOCOL;
    snprintf(q->message, sizeof q->message,
             "%s %s: %s answered HTTP %ld with an error: %s: %s", svc,
             q->action, q->cfg->endpoint, q->status, q->code, amsg);
    return;
  }
  q->rc = q->status == 404 ? ENG_ERR_NOTFOUND
          : q->status == 403 ? ENG_ERR_AUTH
                             : ENG_ERR_FAILED;
  if (has_err)
    snprintf(q->message, sizeof q->message, "%s %s: %s: %s", svc, q->action,
             q->code, amsg);
  else
    snprintf(q->message, sizeof q->message,
             "%s %s: HTTP %ld from %s without an AWS error document", svc,
             q->action, q->status, q->cfg->endpoint);
}

/* Throttling, and failures where the request cannot have been acted on, are
 * retried for every action; a cut connection or a 5xx only for reads
 * (Describe*, List*): a create that may have happened is the caller's to
 * look at. */
static int retryable(const aws_query *q) {
  if (q->tries >= q->max_tries) return 0;
  if (q->rc == ENG_ERR_CONNECT || aws_is_throttle(q->code)) return 1;
  if (strncmp(q->action, "Describe", 8) && strncmp(q->action, "List", 4))
    return 0;
  if (q->rc == ENG_ERR_TIMEOUT || q->rc == ENG_ERR_IO) return 1;
  if (q->rc != ENG_OK && !q->code[0] &&
      (q->status == 500 || q->status == 502 || q->status == 503 ||
       q->status == 504))
    return 1;
  if (!strcmp(q->code, "InternalFailure") ||
      !strcmp(q->code, "ServiceUnavailable") ||
      !strcmp(q->code, "InternalError"))
    return 1;
  return 0;
}

static void on_http(void *ud, int rc, long status, const char *error) {
  aws_query *q = ud;
  q->http = NULL;
  q->status = status;
  snprintf(q->curl_err, sizeof q->curl_err, "%s",
           error ? error : eng_strerror(rc));
  classify(q, rc, q->curl_err);
  if (q->rc != ENG_OK && retryable(q)) {
    q->seed = q->seed * 1103515245u + 12345u;
    uint64_t ms = aws_backoff_ms(q->tries - 1, AWS_QUERY_BASE_MS,
                                 AWS_QUERY_CAP_MS, q->seed >> 8);
    q->host->log(q->call, ENG_LOG_WARN, "%s; retrying in %llu ms (try %d of %d)",
                 q->message, (unsigned long long)ms, q->tries + 1, q->max_tries);
    q->timer = q->host->timer_start(q->call, ms, on_retry, q);
    if (q->timer) return;
  }
  finish(q);
}

static int try_start(aws_query *q) {
  eng_strbuf_free(&q->body);
  aws_xml_free(q->doc);
  q->doc = NULL;
  q->status = 0;
  q->tries++;
  if (!q->easy) q->easy = curl_easy_init();
  CURL *e = q->easy;
  if (!e) return ENG_ERR_NOMEM;
  curl_easy_reset(e);
  curl_slist_free_all(q->hdrs);
  q->hdrs = curl_slist_append(
      NULL, "Content-Type: application/x-www-form-urlencoded; charset=utf-8");
  char sha[65];
  aws_sha256_hex(q->form.data, q->form.len, sha);
  aws_sign(e, q->cfg, sha, &q->hdrs);
  char *url = eng_asprintf("%s/", q->cfg->endpoint);
  curl_easy_setopt(e, CURLOPT_URL, url);
  free(url); /* curl copies it */
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, q->hdrs);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->form.len);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->form.data);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, q);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 15000L);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, "engine-aws/0.1");
  return q->host->http_start(q->call, e, on_http, q, &q->http);
}

int aws_query_start(aws_query *q, aws_query_cb cb, void *ud) {
  q->cb = cb;
  q->ud = ud;
  q->tries = 0;
  int rc = try_start(q);
  if (rc != ENG_OK) q->cb = NULL;
  return rc;
}

void aws_query_cancel(aws_query *q) {
  if (!q || !q->cb) return;
  if (q->http) {
    q->host->http_cancel(q->http); /* on_http runs, now or soon */
  } else if (q->timer) {
    q->host->timer_stop(q->timer);
    q->timer = NULL;
    q->rc = ENG_ERR_CANCELLED;
    snprintf(q->message, sizeof q->message, "%s %s: cancelled",
             q->cfg->service, q->action);
    finish(q);
  }
}
