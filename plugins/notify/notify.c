/*
 * notify.c - one JSON POST with retries (429 with Retry-After, 5xx and
 * connection errors with backoff), driven by the host's libcurl service
 * on the loop; text helpers for messages.
 */
#include "notify.h"

#include <engine/mem.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void nt_post_free(nt_post *p) {
  if (p->easy) curl_easy_cleanup(p->easy);
  curl_slist_free_all(p->headers);
  free(p->url);
  free(p->body);
  free(p->auth);
  free(p->resp);
  memset(p, 0, sizeof *p);
}

static size_t on_body(char *d, size_t sz, size_t n, void *ud) {
  nt_post *p = ud;
  size_t len = sz * n;
  if (p->resp_len + len > (1u << 20)) return 0; /* answers are small */
  p->resp = eng_xrealloc(p->resp, p->resp_len + len + 1);
  memcpy(p->resp + p->resp_len, d, len);
  p->resp_len += len;
  p->resp[p->resp_len] = '\0';
  return len;
}

static size_t on_header(char *d, size_t sz, size_t n, void *ud) {
  nt_post *p = ud;
  size_t len = sz * n;
  if (len > 12 && !strncasecmp(d, "Retry-After:", 12)) {
    char v[32];
    size_t k = len - 12 < sizeof v - 1 ? len - 12 : sizeof v - 1;
    memcpy(v, d + 12, k);
    v[k] = '\0';
    char *end;
    long s = strtol(v, &end, 10);
    if (end != v && s >= 0) p->retry_after = s;
  }
  return len;
}

/* The post is over (done, failed, stopped): let the op go on. */
static void post_idle(nt_post *p) {
  if (!p->active) return;
  p->active = 0;
  eng_op_release(p->op);
}

static void send_attempt(nt_post *p);

static void retry_cb(void *ud) {
  nt_post *p = ud;
  p->timer = NULL;
  if (p->op->finished) {
    post_idle(p);
    return;
  }
  send_attempt(p);
}

static void http_done(void *ud, int rc, long status, const char *error) {
  nt_post *p = ud;
  eng_op *op = p->op;
  const eng_host *h = op->host;
  p->req = NULL;
  /* stopped, or the host cancelled the call (its cancel callback follows) */
  if (op->finished || rc == ENG_ERR_CANCELLED) {
    post_idle(p);
    return;
  }
  nt_answer a = {rc, rc == ENG_OK ? status : 0, p->resp ? p->resp : "",
                 p->retry_after, error};
  int64_t delay = -1;
  char err[1024] = "";
  nt_verdict v = p->o.judge(p->o.ud, &a, &delay, err, sizeof err);
  if (v == NT_RETRY && p->attempt <= p->o.retries) {
    if (delay < 0) delay = nt_backoff_ms(p->attempt);
    h->log(op->call, ENG_LOG_WARN, "%s; attempt %d of %d, next in %lld ms",
           *err ? err : "temporary failure", p->attempt, p->o.retries + 1,
           (long long)delay);
    p->timer = h->timer_start(op->call, (uint64_t)delay, retry_cb, p);
    if (p->timer) return; /* still active */
    snprintf(err, sizeof err, "could not wait before retrying");
    v = NT_FAIL;
  }
  if (v == NT_RETRY) {
    size_t l = strlen(err);
    snprintf(err + l, sizeof err - l, "%sgave up after %d attempts",
             l ? "; " : "", p->attempt);
    v = NT_FAIL;
  }
  if (v == NT_FAIL) h->fail(op->call, "%s", err);
  if (p->o.done)
    p->o.done(p->o.ud, v == NT_OK ? ENG_OK : ENG_ERR_FAILED,
              p->resp ? p->resp : "", p->attempt);
  post_idle(p);
}

static void send_attempt(nt_post *p) {
  eng_op *op = p->op;
  const eng_host *h = op->host;
  p->attempt++;
  free(p->resp);
  p->resp = NULL;
  p->resp_len = 0;
  p->retry_after = -1;
  if (p->easy) curl_easy_cleanup(p->easy);
  p->easy = curl_easy_init();
  if (!p->easy) {
    h->fail(op->call, "out of memory");
    if (p->o.done) p->o.done(p->o.ud, ENG_ERR_NOMEM, "", p->attempt);
    post_idle(p);
    return;
  }
  curl_easy_setopt(p->easy, CURLOPT_URL, p->url);
  curl_easy_setopt(p->easy, CURLOPT_POSTFIELDS, p->body);
  curl_easy_setopt(p->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(p->body));
  curl_easy_setopt(p->easy, CURLOPT_HTTPHEADER, p->headers);
  curl_easy_setopt(p->easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(p->easy, CURLOPT_WRITEDATA, p);
  curl_easy_setopt(p->easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(p->easy, CURLOPT_HEADERDATA, p);
  curl_easy_setopt(p->easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(p->easy, CURLOPT_TIMEOUT_MS, 30000L);
  curl_easy_setopt(p->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(p->easy, CURLOPT_USERAGENT, "engine-notify/1");
  int rc = h->http_start(op->call, p->easy, http_done, p, &p->req);
  if (rc != ENG_OK) {
    p->req = NULL;
    h->fail(op->call, "could not start the request: %s", eng_strerror(rc));
    if (p->o.done) p->o.done(p->o.ud, rc, "", p->attempt);
    post_idle(p);
  }
}

void nt_post_start(nt_post *p, eng_op *op, const nt_post_opts *o) {
  p->op = op;
  p->o = *o;
  p->url = eng_xstrdup(o->url);
  p->body = eng_xstrdup(o->body);
  struct curl_slist *hd =
      curl_slist_append(NULL, "Content-Type: application/json; charset=utf-8");
  hd = curl_slist_append(hd, "Expect:");
  if (o->bearer) {
    p->auth = eng_asprintf("Authorization: Bearer %s", o->bearer);
    hd = curl_slist_append(hd, p->auth);
  }
  p->headers = hd;
  p->active = 1;
  eng_op_hold(op);
  send_attempt(p);
}

void nt_post_stop(nt_post *p) {
  if (p->timer) {
    p->op->host->timer_stop(p->timer);
    p->timer = NULL;
    post_idle(p);
  } else if (p->req) {
    p->op->host->http_cancel(p->req); /* http_done sees the op finished */
  }
}

static void job_on_finish(eng_op *op) { nt_post_stop(&((nt_job *)(void *)op)->post); }

void nt_job_init(nt_job *j, const eng_host *h, eng_call *call,
                 void (*destroy)(eng_op *op)) {
  eng_op_init(&j->op, h, call, destroy);
  j->op.on_finish = job_on_finish;
}

const char *nt_pstr(const json_t *params, const char *name) {
  const char *v = json_string_value(json_object_get(params, name));
  return v && *v ? v : NULL;
}

int64_t nt_backoff_ms(int attempt) {
  int64_t d = 1000;
  for (int i = 1; i < attempt && d < 30000; i++) d *= 2;
  return d > 30000 ? 30000 : d;
}

char *nt_truncate(const char *s, size_t max) {
  static const char mark[] = " …(truncated)";
  size_t n = strlen(s);
  if (n <= max) return eng_xstrdup(s);
  size_t keep = max > sizeof mark ? max - (sizeof mark - 1) : 0;
  while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80) keep--;
  char *out = eng_xmalloc(keep + sizeof mark);
  memcpy(out, s, keep);
  memcpy(out + keep, mark, sizeof mark);
  return out;
}

char *nt_mask(const char *s, const char *secret) {
  if (!secret || strlen(secret) < 3 || !strstr(s, secret)) return eng_xstrdup(s);
  size_t sl = strlen(secret);
  char *out = eng_xmalloc(strlen(s) + 1), *w = out;
  for (const char *p = s; *p;) {
    if (!strncmp(p, secret, sl)) {
      memcpy(w, "***", 3);
      w += 3;
      p += sl;
    } else {
      *w++ = *p++;
    }
  }
  *w = '\0';
  return out;
}

const char *nt_bytes(int64_t n, char *buf, size_t len) {
  static const char *const units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = (double)n;
  int u = 0;
  while (v >= 1000.0 && u < 4) {
    v /= 1000.0;
    u++;
  }
  if (u == 0) snprintf(buf, len, "%lld B", (long long)n);
  else snprintf(buf, len, "%.1f %s", v, units[u]);
  return buf;
}

const char *nt_duration(int64_t ms, char *buf, size_t len) {
  if (ms < 1000) snprintf(buf, len, "%lldms", (long long)ms);
  else if (ms < 60000) snprintf(buf, len, "%.1fs", (double)ms / 1000.0);
  else if (ms < 3600000)
    snprintf(buf, len, "%lldm%02llds", (long long)(ms / 60000),
             (long long)(ms / 1000 % 60));
  else
    snprintf(buf, len, "%lldh%02lldm", (long long)(ms / 3600000),
             (long long)(ms / 60000 % 60));
  return buf;
}
