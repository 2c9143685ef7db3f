/*
 * notify.h - what the slack and pagerduty plugins share (compiled into
 * each; nothing is shared at run time): one JSON POST with retries on the
 * host's HTTP service, and small text helpers.
 *
 * A post belongs to an action's eng_op: it holds the op while a request or
 * a retry delay is under way, so done() waits for it, and a cancellation
 * (the step's timeout, an interrupt) aborts it.
 */
#ifndef NOTIFY_H
#define NOTIFY_H

#include <engine/op.h>
#include <engine/plugin.h>

#include <stdbool.h>

/* What an answer means; the judge decides, the post acts. */
typedef enum nt_verdict { NT_OK = 0, NT_RETRY, NT_FAIL } nt_verdict;

typedef struct nt_answer {
  int rc;            /* ENG_OK, or the transfer's error (no HTTP answer) */
  long status;       /* HTTP status, 0 without an answer */
  const char *body;  /* NUL-terminated, may be empty */
  long retry_after;  /* seconds from Retry-After, -1 when absent */
  const char *error; /* curl's message when rc != ENG_OK */
} nt_answer;

/* Decide on an answer. NT_RETRY may set *delay_ms (else backoff applies);
 * NT_FAIL writes the explanation into err. */
typedef nt_verdict (*nt_judge_fn)(void *ud, const nt_answer *a,
                                  int64_t *delay_ms, char *err, size_t errlen);

typedef struct nt_post_opts {
  const char *url;
  const char *body;          /* JSON text (copied) */
  const char *bearer;        /* Authorization: Bearer ... (a secret) or NULL */
  int retries;               /* retries after the first attempt */
  nt_judge_fn judge;
  void *ud;
  /* The post ended: rc ENG_OK with the last answer's body, or an error
   * after host->fail(). Not called once the op finished. */
  void (*done)(void *ud, int rc, const char *body, int attempts);
} nt_post_opts;

/* A post, embedded in the action's state (zeroed before the start). */
typedef struct nt_post {
  eng_op *op;
  nt_post_opts o;
  char *url, *body, *auth;
  void *easy; /* CURL * */
  void *headers; /* struct curl_slist * */
  char *resp;
  size_t resp_len;
  long retry_after;
  int attempt;
  eng_timer *timer; /* waiting to retry */
  eng_http *req;    /* a request under way */
  int active;       /* holds the op */
} nt_post;

/* Start the first attempt (the outcome arrives through o->done). */
void nt_post_start(nt_post *p, eng_op *op, const nt_post_opts *o);
/* The op finished (its on_finish): stop a pending retry or request. */
void nt_post_stop(nt_post *p);
/* Free the post's buffers (the op's destroy). */
void nt_post_free(nt_post *p);

/* An action that posts: its op and its post (embed first in the state). */
typedef struct nt_job {
  eng_op op;
  nt_post post;
} nt_job;

/* eng_op_init, with on_finish stopping the post. */
void nt_job_init(nt_job *j, const eng_host *h, eng_call *call,
                 void (*destroy)(eng_op *op));
/* A string parameter, NULL when absent or empty. */
const char *nt_pstr(const json_t *params, const char *name);

/* Backoff after a retryable answer without Retry-After: 1 s, 2 s, 4 s ...
 * at most 30 s. */
int64_t nt_backoff_ms(int attempt);

/* Text at most max bytes (on a UTF-8 boundary), with a marker when cut. */
char *nt_truncate(const char *s, size_t max);
/* Every occurrence of secret in s replaced by "***" (in place copy). */
char *nt_mask(const char *s, const char *secret);
/* "1.2 MB", "3m05s" */
const char *nt_bytes(int64_t n, char *buf, size_t len);
const char *nt_duration(int64_t ms, char *buf, size_t len);

#endif
