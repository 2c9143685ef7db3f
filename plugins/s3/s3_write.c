/*
 * s3_write.c - the multipart writer: the write side of the "s3" stream
 * scheme, and what s3.put uploads with.
 *
 * Bytes are copied into a part buffer of part_size; a full part is hashed
 * on a worker thread (its real SHA-256 goes out as x-amz-content-sha256,
 * and in base64 as the part's x-amz-checksum-sha256: the upload is
 * created with x-amz-checksum-algorithm SHA256) and uploaded, up to
 * `concurrency` parts at once. While that many parts are in flight, a
 * write's callback waits: that is the backpressure, and memory stays at
 * about (concurrency + 1) x part_size (uploaded parts' buffers are
 * reused).
 *
 * The writer is a state machine: w->phase (s3_wphase) changes only through
 * writer_phase(), which logs each transition at debug level.
 *   W_WRITING    writes are accepted. The multipart upload is created
 *                lazily, with the first full part (`creating` while
 *                CreateMultipartUpload is in flight: writes go on, parts
 *                wait for its upload id).
 *   W_FINISHING  finish() was called: the last part goes out; once no part
 *                is in flight,
 *   W_COMPLETING CompleteMultipartUpload (a 200 answer is checked for an
 *                <Error> body); a stream that ended before filling one
 *                part is a single PutObject carrying x-amz-meta-sha256
 *                instead, done when it succeeds;
 *   W_STORING    the object exists (`made`); its SHA-256 is stored:
 *                already in the metadata when it was known at open
 *                (s3.put), else by copying the object onto itself with
 *                REPLACEd metadata (<= 5 GiB), else (or when the copy
 *                fails) as the sidecar KEY.sha256;
 *   W_DONE       finish's callback got success.
 *   W_FAILED     a failure before finish(): writes are refused, finish()
 *                reports it; W_REPORTING: a failure after finish(), whose
 *                callback gets the error (from a timer when inside
 *                finish()). Both go on to
 *   W_ABORTING   (as does abort()): below.
 *
 * The journal: every request that makes something is preceded by its
 * intent (host->journal_intent), and nothing is sent when the intent could
 * not be written (the disk of the run directory is full): the writer then
 * fails with ENG_ERR_IO and the host's message naming the journal.
 *  - the multipart upload: kind "multipart_upload", id "URL?uploads" (its
 *    upload id is only known once it exists), undo s3.abort_upload {url}
 *    (which aborts every unfinished upload of exactly that key),
 *    "disposition": "temporary"; written before CreateMultipartUpload,
 *    confirmed when S3 returned the upload id, removed (same kind and id)
 *    when the upload was completed or aborted, or when S3 refused to
 *    create it;
 *  - the object: kind "object", id URL, undo s3.delete {url}; written
 *    before PutObject or CompleteMultipartUpload (entering W_COMPLETING),
 *    confirmed when S3 said the object exists (`made`);
 *  - the sidecar: kind "object", id URL.sha256, the same way around its
 *    PUT (in W_STORING); when it cannot be journaled the write fails and
 *    the object is deleted again, like any write that did not succeed.
 *
 * Failure and abort: each request retries transient errors (s3_req.c);
 * after that the writer fails (W_FAILED or W_REPORTING): the pending
 * write's (or finish's) callback gets the error; then W_ABORTING cancels
 * the other parts and sends AbortMultipartUpload (DeleteObject when the
 * failure came after the object was made), so no partial object ever
 * becomes visible. The writer is freed once it is W_DONE or
 * W_ABORTING and nothing is outstanding. Because the call may end (and its
 * transfers be cancelled) before that abort is answered, each created
 * upload is also registered with host->at_run_end: at the end of the run,
 * an upload that was neither completed nor aborted is aborted then. A
 * SIGKILLed engine leaves the upload pending (invisible, but billed) until
 * `s3.abort_upload` runs (its journal entry names it, also when the engine
 * died before S3 answered the upload id) or a bucket lifecycle rule
 * removes it.
 */
#include "s3_int.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

typedef struct wpart {
  struct s3_writer *w;
  int num;
  char *buf;
  size_t len;
  char sha[65];
  char sum[45]; /* the same digest in base64: x-amz-checksum-sha256 */
  s3_req *req;
  int hashing; /* on a worker thread: hash_after() comes back */
  struct wpart *next;
} wpart;

/* What the run-end hook needs to abort an upload the writer could not. */
typedef struct s3_pending {
  int refs;
  int open; /* created, neither completed nor known aborted */
  aws_cfg cfg;
  char *bucket, *key, *upload_id;
  char *jid; /* the upload's journal id: removed once aborted here */
  eng_call *end_call;
} s3_pending;

/* Where the writer is (the header above). Changed only by writer_phase(). */
typedef enum s3_wphase {
  W_WRITING,    /* writes accepted; full parts upload once the upload exists */
  W_FAILED,     /* failed before finish(): writes refused; finish() hears
                   the error, abort() cleans up */
  W_FINISHING,  /* finish() called: the last parts go out, then complete */
  W_COMPLETING, /* PutObject or CompleteMultipartUpload sent */
  W_STORING,    /* the object exists: storing its SHA-256 */
  W_REPORTING,  /* failed after finish(): its callback gets the error (from
                   a timer when inside finish()), then W_ABORTING */
  W_DONE,       /* finish's callback got success */
  W_ABORTING,   /* parts cancelled, the upload aborted or the unfinished
                   object deleted; freed once nothing is outstanding */
  W_N
} s3_wphase;

static const char *const wphase_names[W_N] = {
    [W_WRITING] = "writing",       [W_FAILED] = "failed",
    [W_FINISHING] = "finishing",   [W_COMPLETING] = "completing",
    [W_STORING] = "storing",       [W_REPORTING] = "reporting",
    [W_DONE] = "done",             [W_ABORTING] = "aborting"};

#define W_BIT(p) (1u << (p))
/* The phases each one may go on to. */
static const unsigned wphase_next[W_N] = {
    [W_WRITING] = W_BIT(W_FAILED) | W_BIT(W_FINISHING) | W_BIT(W_ABORTING),
    [W_FAILED] = W_BIT(W_REPORTING) | W_BIT(W_ABORTING),
    [W_FINISHING] =
        W_BIT(W_COMPLETING) | W_BIT(W_REPORTING) | W_BIT(W_ABORTING),
    [W_COMPLETING] = W_BIT(W_STORING) | W_BIT(W_DONE) | W_BIT(W_REPORTING) |
                     W_BIT(W_ABORTING),
    [W_STORING] = W_BIT(W_DONE) | W_BIT(W_REPORTING) | W_BIT(W_ABORTING),
    [W_REPORTING] = W_BIT(W_ABORTING),
    [W_DONE] = W_BIT(W_ABORTING),
};

struct s3_writer {
  eng_call *call;
  void (*gone_cb)(void *ud); /* s3_writer_abort_then(): told when freed */
  void *gone_ud;
  aws_cfg cfg;
  char *url, *bucket, *key, *storage_class, *meta_sha;
  s3_at_rest at_rest; /* encryption and Object Lock of what it stores */
  size_t part_size;
  int concurrency;
  int64_t size_hint;

  s3_wphase phase; /* writer_phase() only */

  char *upload_id;
  int creating; /* CreateMultipartUpload in flight: writes go on meanwhile,
                   parts wait for its upload id */
  s3_req *ctl;         /* create, put, complete, copy, sidecar */
  eng_strbuf ctl_body; /* complete's XML, the sidecar's text */
  s3_req *abort_req;   /* AbortMultipartUpload or the object's delete */

  char *cur;
  size_t cur_len;
  /* Uploaded parts' buffers, kept for the next parts: a fresh 8 MiB
   * buffer costs 2048 page faults (and zeroed pages) each time. Never
   * more buffers in all than were in use at once (concurrency + 1). */
  char **spare;
  int n_spare;
  int next_num;
  wpart *parts;  /* submitted, not yet uploaded */
  int in_flight; /* parts submitted and not yet dropped: the backpressure */
  char **etags;
  char **sums; /* per part, base64 SHA-256, for CompleteMultipartUpload */
  int n_etags;
  uint64_t bytes;    /* accepted */
  uint64_t uploaded; /* acknowledged by S3 */

  const char *wbuf;
  size_t wlen;
  eng_stream_write_cb wcb;
  void *wud;
  eng_timer *wtimer;
  int wtimer_rc;
  int in_write; /* s3_writer_write() is on the stack */

  char sha[65];
  eng_stream_done_cb fcb;
  void *fud;
  eng_timer *ftimer;
  char *final_etag, *final_version;
  const char *checksum_where;

  int rc; /* the first failure's code (0: none), err its message */
  char err[1024];
  int made;  /* the object exists but the write has not succeeded: an
                abort deletes it again */
  int async; /* worker items outstanding */
  int holds; /* entry points on the stack */
  int in_finish; /* s3_writer_finish() is on the stack */
  int64_t upload_token;  /* the upload's intent */
  int upload_journaled;  /* its intent is not yet matched by a removal */
  int64_t obj_token;
  int64_t side_token;
  s3_pending *pend;
};

static void on_ftimer(void *ud);
static void pump(s3_writer *w);
static void complete(s3_writer *w);
static void start_abort(s3_writer *w);
static void send_part(wpart *p);

/* ---- the machine ------------------------------------------------------------- */

/* The one place w->phase changes. */
static void writer_phase(s3_writer *w, s3_wphase to) {
  s3_wphase from = w->phase;
  if (from == to) return;
  assert(wphase_next[from] & W_BIT(to));
  w->phase = to;
  s3_host->log(w->call, ENG_LOG_DEBUG, "s3 writer of %s: %s -> %s", w->url,
               wphase_names[from], wphase_names[to]);
}

/* No part goes out any more: failed, or aborting. */
static int stopped(const s3_writer *w) {
  return w->phase == W_FAILED || w->phase == W_REPORTING ||
         w->phase == W_ABORTING;
}

/* ---- lifetime -------------------------------------------------------------- */

static void pend_unref(s3_pending *p) {
  if (!p || --p->refs > 0) return;
  aws_cfg_free(&p->cfg);
  free(p->bucket);
  free(p->key);
  free(p->upload_id);
  free(p->jid);
  free(p);
}

static int busy(const s3_writer *w) {
  return w->holds > 0 || w->async > 0 || w->parts || w->ctl || w->abort_req ||
         w->creating || w->wtimer || w->ftimer;
}

static void writer_free(s3_writer *w) {
  free(w->cur);
  for (int i = 0; i < w->n_spare; i++) free(w->spare[i]);
  free(w->spare);
  for (int i = 0; i < w->n_etags; i++) {
    free(w->etags[i]);
    free(w->sums[i]);
  }
  free(w->etags);
  free(w->sums);
  eng_strbuf_free(&w->ctl_body);
  aws_cfg_free(&w->cfg);
  free(w->url);
  free(w->bucket);
  free(w->key);
  free(w->storage_class);
  s3_at_rest_free(&w->at_rest);
  free(w->meta_sha);
  free(w->upload_id);
  free(w->final_etag);
  free(w->final_version);
  pend_unref(w->pend);
  void (*gone)(void *) = w->gone_cb;
  void *gone_ud = w->gone_ud;
  free(w);
  if (gone) gone(gone_ud);
}

/* Free once nothing refers to w any more (after finish's cb or abort). */
static void maybe_free(s3_writer *w) {
  if ((w->phase == W_ABORTING || w->phase == W_DONE) && !busy(w))
    writer_free(w);
}

static void hold(s3_writer *w) { w->holds++; }
static void release(s3_writer *w) {
  assert(w->holds > 0);
  w->holds--;
  maybe_free(w);
}

const char *s3_writer_error(s3_writer *w) { return w->err; }

/* ---- the pending write ----------------------------------------------------- */

static void on_wtimer(void *ud) {
  s3_writer *w = ud;
  w->wtimer = NULL;
  eng_stream_write_cb cb = w->wcb;
  w->wcb = NULL;
  hold(w);
  if (cb && w->phase != W_ABORTING) cb(w->wud, w->wtimer_rc);
  release(w);
}

/* The write's callback; never from inside write() itself. */
static void release_write(s3_writer *w, int rc) {
  if (!w->wcb) return;
  if (w->in_write) {
    w->wtimer_rc = rc;
    w->wtimer = s3_host->timer_start(w->call, 0, on_wtimer, w);
    if (w->wtimer) return;
  }
  eng_stream_write_cb cb = w->wcb;
  w->wcb = NULL;
  cb(w->wud, rc);
}

/* ---- finishing --------------------------------------------------------------- */

static void call_finish_cb(s3_writer *w, int rc, json_t *info) {
  eng_stream_done_cb cb = w->fcb;
  w->fcb = NULL;
  if (cb)
    cb(w->fud, rc, info);
  else
    json_decref(info);
}

/* W_REPORTING from inside finish(): now its callback hears the error. */
static void on_ftimer(void *ud) {
  s3_writer *w = ud;
  w->ftimer = NULL;
  hold(w);
  call_finish_cb(w, w->rc,
                 json_pack("{s:s, s:s}", "url", w->url, "error", w->err));
  start_abort(w);
  release(w);
}

/* ---- failure ---------------------------------------------------------------- */

static void drop_part(wpart *p);

/* Cancel the parts' requests; free parts that wait for nothing else. */
static void stop_parts(s3_writer *w) {
  for (wpart *p = w->parts, *next; p; p = next) {
    next = p->next;
    if (p->req)
      s3_req_cancel(p->req); /* on_part drops it */
    else if (!p->hashing)
      drop_part(p);
  }
}

/* The first failure: W_WRITING -> W_FAILED (the owner finishes or aborts);
 * after finish() -> W_REPORTING -> W_ABORTING. tell_host: set the call's
 * failure message (the stream callbacks only carry codes); not when the
 * host has set a better one itself. */
static void fail_as(s3_writer *w, int rc, const char *msg, int tell_host) {
  if (w->rc) return;
  w->rc = rc ? rc : ENG_ERR_FAILED;
  if (w->rc == ENG_ERR_CANCELLED)
    snprintf(w->err, sizeof w->err,
             "upload to %s cancelled: the multipart upload is aborted, no "
             "object was made", w->url);
  else
    snprintf(w->err, sizeof w->err, "%s", msg);
  hold(w);
  if (tell_host) s3_host->fail(w->call, "%s", w->err);
  int report = w->phase == W_FINISHING || w->phase == W_COMPLETING ||
               w->phase == W_STORING;
  if (w->phase == W_WRITING) writer_phase(w, W_FAILED);
  if (report) writer_phase(w, W_REPORTING);
  stop_parts(w);
  if (w->wcb) release_write(w, w->rc);
  if (report && w->phase == W_REPORTING) { /* (not aborted meanwhile) */
    /* finish's cb gets the error (never from inside finish() itself); the
     * writer then cleans up itself */
    if (w->in_finish && !w->ftimer)
      w->ftimer = s3_host->timer_start(w->call, 0, on_ftimer, w);
    if (!w->ftimer) {
      call_finish_cb(w, w->rc,
                     json_pack("{s:s, s:s}", "url", w->url, "error", w->err));
      start_abort(w);
    }
  }
  release(w);
}

static void fail(s3_writer *w, int rc, const char *msg) {
  fail_as(w, rc, msg, 1);
}

/* journal_intent() failed (and set the call's message, which names the
 * journal): nothing was sent for `what`. */
static void fail_journal(s3_writer *w, const char *what) {
  char msg[1200];
  snprintf(msg, sizeof msg,
           "%s: cannot record %s in the run's journal (is its disk full?): "
           "it was not created",
           w->url, what);
  fail_as(w, ENG_ERR_IO, msg, 0);
}

/* ---- parts ------------------------------------------------------------------------ */

static void drop_part(wpart *p) {
  s3_writer *w = p->w;
  wpart **pp = &w->parts;
  while (*pp && *pp != p) pp = &(*pp)->next;
  if (*pp) *pp = p->next;
  assert(w->in_flight > 0);
  w->in_flight--;
  s3_req_free(p->req);
  if (p->buf && w->n_spare <= w->concurrency && !stopped(w))
    w->spare[w->n_spare++] = p->buf;
  else
    free(p->buf);
  free(p);
}

static void hash_fn(void *ud) {
  wpart *p = ud;
  aws_sha256_hex(p->buf, p->len, p->sha);
  aws_hex_to_b64(p->sha, p->sum);
}

static void hash_after(void *ud, int status) {
  wpart *p = ud;
  s3_writer *w = p->w;
  (void)status;
  assert(w->async > 0);
  w->async--;
  p->hashing = 0;
  hold(w);
  if (stopped(w))
    drop_part(p);
  else if (w->upload_id)
    send_part(p);
  release(w);
}

static void on_part(void *ud, s3_req *r) {
  wpart *p = ud;
  s3_writer *w = p->w;
  char msg[1024];
  hold(w);
  int rc = s3_req_check(r, msg, sizeof msg);
  if (stopped(w)) {
    drop_part(p);
    release(w);
    return;
  }
  if (rc != ENG_OK) {
    char m2[1200];
    snprintf(m2, sizeof m2, "uploading part %d of %s: %s", p->num, w->url, msg);
    drop_part(p);
    fail(w, rc, m2);
    release(w);
    return;
  }
  if (p->num > w->n_etags) {
    w->etags = eng_xrealloc(w->etags, (size_t)p->num * sizeof *w->etags);
    w->sums = eng_xrealloc(w->sums, (size_t)p->num * sizeof *w->sums);
    for (int i = w->n_etags; i < p->num; i++) w->etags[i] = w->sums[i] = NULL;
    w->n_etags = p->num;
  }
  free(w->etags[p->num - 1]);
  w->etags[p->num - 1] = eng_xstrdup(r->etag ? r->etag : "");
  free(w->sums[p->num - 1]);
  w->sums[p->num - 1] = eng_xstrdup(p->sum);
  w->uploaded += p->len;
  s3_host->progress(w->call, (int64_t)w->uploaded, w->size_hint);
  drop_part(p);
  pump(w);
  if (w->phase == W_FINISHING && w->in_flight == 0) complete(w);
  release(w);
}

static void send_part(wpart *p) {
  s3_writer *w = p->w;
  char *uid = aws_uri_encode(w->upload_id, 0);
  char *q = eng_asprintf("partNumber=%d&uploadId=%s", p->num, uid);
  free(uid);
  p->req = s3_req_new(w->call, &w->cfg, "PUT", w->bucket, w->key, q);
  free(q);
  s3_req_header(p->req, "Content-Type: application/octet-stream");
  s3_req_header(p->req, "x-amz-checksum-sha256: %s", p->sum);
  s3_req_body(p->req, p->buf, p->len, p->sha);
  int rc = s3_req_start(p->req, on_part, p);
  if (rc != ENG_OK) {
    char msg[256];
    snprintf(msg, sizeof msg, "cannot start the upload of part %d: %s", p->num,
             eng_strerror(rc));
    drop_part(p);
    fail(w, rc, msg);
  }
}

/* ---- the upload ------------------------------------------------------------------- */

static void on_pend_abort(void *ud, s3_req *r) {
  s3_pending *p = ud;
  char msg[1024];
  int rc = s3_req_check(r, msg, sizeof msg);
  if (rc == ENG_ERR_NOTFOUND) rc = ENG_OK; /* gone already */
  if (rc != ENG_OK)
    s3_host->fail(p->end_call, "aborting the multipart upload of s3://%s/%s: %s",
                  p->bucket, p->key, msg);
  else {
    s3_host->journal_removed(p->end_call, "multipart_upload", p->jid);
    s3_host->log(p->end_call, ENG_LOG_INFO,
                 "aborted the unfinished multipart upload of s3://%s/%s",
                 p->bucket, p->key);
  }
  s3_req_free(r);
  eng_call *c = p->end_call;
  pend_unref(p);
  s3_host->done(c, rc);
}

/* Run end: abort an upload nobody completed or aborted. */
static int pend_hook(eng_call *end_call, void *ud) {
  s3_pending *p = ud;
  if (!p->open) {
    pend_unref(p);
    s3_host->done(end_call, ENG_OK);
    return ENG_OK;
  }
  p->end_call = end_call;
  char *q = s3_upload_query(p->upload_id);
  s3_req *r = s3_req_new(end_call, &p->cfg, "DELETE", p->bucket, p->key, q);
  free(q);
  int rc = s3_req_start(r, on_pend_abort, p);
  if (rc != ENG_OK) {
    s3_req_free(r);
    pend_unref(p);
    return rc;
  }
  return ENG_OK;
}

/* The journal id of the multipart upload(s) of bucket/key: the intent is
 * written before the upload exists, so without its upload id (s3_actions.c
 * records the removal by s3.abort_upload under the same id). */
char *s3_upload_journal_id(const char *bucket, const char *key) {
  return eng_asprintf("s3://%s/%s?uploads", bucket, key);
}

/* The upload's intent, before CreateMultipartUpload: 0, or -1 when it
 * could not be written (then nothing may be sent). The undo aborts every
 * unfinished upload of the key: it works without the upload id, which a
 * SIGKILL may have kept from the journal. An upload is never a
 * deliverable: temporary, whatever the action. */
static int journal_upload(s3_writer *w) {
  char *id = s3_upload_journal_id(w->bucket, w->key);
  json_t *d = json_pack("{s:s, s:{s:s, s:{s:s}}}", "disposition",
                        "temporary", "undo", "action", "s3.abort_upload",
                        "with", "url", w->url);
  w->upload_token =
      s3_host->journal_intent(w->call, "multipart_upload", id, d);
  json_decref(d);
  free(id);
  if (w->upload_token < 0) return -1;
  w->upload_journaled = 1;
  return 0;
}

/* The upload was completed or aborted (or never made): its removal, under
 * the intent's kind and id. */
static void journal_upload_gone(s3_writer *w) {
  if (w->pend) w->pend->open = 0;
  if (!w->upload_journaled) return;
  w->upload_journaled = 0;
  char *id = s3_upload_journal_id(w->bucket, w->key);
  s3_host->journal_removed(w->call, "multipart_upload", id);
  free(id);
}

static void on_created(void *ud, s3_req *r) {
  s3_writer *w = ud;
  char msg[1024];
  hold(w);
  w->creating = 0;
  w->ctl = NULL;
  int rc = s3_req_check(r, msg, sizeof msg);
  const char *uid = NULL;
  aws_xml *x = NULL;
  if (rc == ENG_OK) {
    x = aws_xml_parse(r->body.data, r->body.len);
    uid = x ? aws_xml_text(x, "UploadId") : NULL;
    if (!uid || !*uid) {
      rc = ENG_ERR_PROTOCOL;
      snprintf(msg, sizeof msg,
               "CreateMultipartUpload of %s: no UploadId in S3's answer",
               w->url);
    }
  }
  if (rc == ENG_OK) {
    w->upload_id = eng_xstrdup(uid);
    s3_host->journal_confirm(w->call, w->upload_token);
    s3_pending *p = eng_xcalloc(1, sizeof *p);
    p->refs = 1;
    p->open = 1;
    aws_cfg_copy(&p->cfg, &w->cfg);
    p->bucket = eng_xstrdup(w->bucket);
    p->key = eng_xstrdup(w->key);
    p->upload_id = eng_xstrdup(uid);
    p->jid = s3_upload_journal_id(w->bucket, w->key);
    w->pend = p;
    if (s3_host->at_run_end(w->call, pend_hook, p) == ENG_OK) p->refs++;
  } else if (r->status >= 400) {
    /* S3 refused: no upload exists. (Without an answer one may: the
     * intent stays for s3.abort_upload.) */
    journal_upload_gone(w);
  }
  aws_xml_free(x);
  s3_req_free(r);
  if (rc != ENG_OK) {
    fail(w, rc, msg);
  } else if (w->phase == W_ABORTING) {
    start_abort(w);
  } else if (!stopped(w)) {
    for (wpart *p = w->parts, *next; p; p = next) {
      next = p->next;
      if (!p->hashing && !p->req) send_part(p);
      if (stopped(w)) break;
    }
  }
  release(w);
}

static void add_common_headers(s3_writer *w, s3_req *r, const char *sha) {
  s3_req_header(r, "Content-Type: application/octet-stream");
  if (sha) s3_req_header(r, "x-amz-meta-sha256: %s", sha);
  if (w->storage_class) s3_req_header(r, "x-amz-storage-class: %s",
                                      w->storage_class);
  s3_at_rest_headers(&w->at_rest, r, NULL);
}

/* Starts w->ctl; when that fails, frees it (w->ctl is NULL) and returns
 * the code: cb never runs. */
static int start_ctl(s3_writer *w, s3_req_cb cb) {
  int rc = s3_req_start(w->ctl, cb, w);
  if (rc != ENG_OK) {
    s3_req_free(w->ctl);
    w->ctl = NULL;
  }
  return rc;
}

static void ensure_upload(s3_writer *w) {
  if (w->upload_id || w->creating || stopped(w)) return;
  if (journal_upload(w) != 0) {
    fail_journal(w, "the multipart upload");
    return;
  }
  w->creating = 1;
  w->ctl = s3_req_new(w->call, &w->cfg, "POST", w->bucket, w->key,
                      "uploads=");
  add_common_headers(w, w->ctl, w->meta_sha);
  /* Each part carries its SHA-256 (which we compute anyway for
   * x-amz-content-sha256), so the object gets a composite SHA-256
   * checksum. Without an algorithm, S3 (and moto) compute a full-object
   * CRC64NVME at completion instead: a second pass over every byte that
   * made CompleteMultipartUpload of a 200 MB dump cost moto ~1 s more. */
  s3_req_header(w->ctl, "x-amz-checksum-algorithm: SHA256");
  s3_req_body(w->ctl, "", 0, S3_EMPTY_SHA);
  int rc = start_ctl(w, on_created);
  if (rc != ENG_OK) {
    w->creating = 0;
    journal_upload_gone(w); /* nothing was sent */
    fail(w, rc, "cannot start CreateMultipartUpload");
  }
}

static void submit_cur(s3_writer *w) {
  if (w->next_num >= S3_MAX_PARTS) {
    char msg[256];
    snprintf(msg, sizeof msg,
             "%s: more than %d parts of %zu bytes: raise part_size",
             w->url, S3_MAX_PARTS, w->part_size);
    fail(w, ENG_ERR_INVALID, msg);
    return;
  }
  wpart *p = eng_xcalloc(1, sizeof *p);
  p->w = w;
  p->num = ++w->next_num;
  p->buf = w->cur;
  p->len = w->cur_len;
  w->cur = NULL;
  w->cur_len = 0;
  p->next = w->parts;
  w->parts = p;
  w->in_flight++;
  ensure_upload(w);
  if (stopped(w)) return; /* fail() dropped p with the other idle parts */
  p->hashing = 1;
  w->async++;
  if (s3_host->work(w->call, hash_fn, hash_after, p) != ENG_OK) {
    hash_fn(p);
    hash_after(p, 0);
  }
}

/* Move the pending write's bytes into parts while there is room. */
static void pump(s3_writer *w) {
  while (w->wlen > 0 && !stopped(w)) {
    if (!w->cur) {
      w->cur = w->n_spare ? w->spare[--w->n_spare] : eng_xmalloc(w->part_size);
      w->cur_len = 0;
    }
    size_t space = w->part_size - w->cur_len;
    if (space == 0) {
      if (w->in_flight >= w->concurrency) return; /* backpressure */
      submit_cur(w);
      continue;
    }
    size_t k = w->wlen < space ? w->wlen : space;
    memcpy(w->cur + w->cur_len, w->wbuf, k);
    w->cur_len += k;
    w->wbuf += k;
    w->wlen -= k;
    w->bytes += k;
  }
  if (stopped(w)) return;
  if (w->cur && w->cur_len == w->part_size && w->in_flight < w->concurrency)
    submit_cur(w);
  if (w->wlen == 0 && !stopped(w)) release_write(w, ENG_OK);
}

/* ---- completion ------------------------------------------------------------------------ */

static void done_ok(s3_writer *w) {
  w->made = 0; /* delivered: an abort now leaves it */
  writer_phase(w, W_DONE);
  json_t *info = json_object();
  json_object_set_new(info, "url", json_string(w->url));
  json_object_set_new(info, "bytes", json_integer((json_int_t)w->bytes));
  json_object_set_new(info, "sha256", json_string(w->sha));
  json_object_set_new(info, "etag",
                      json_string(w->final_etag ? w->final_etag : ""));
  if (w->final_version)
    json_object_set_new(info, "version_id", json_string(w->final_version));
  json_object_set_new(info, "checksum_stored",
                      json_string(w->checksum_where ? w->checksum_where
                                                    : "none"));
  if (w->upload_id)
    json_object_set_new(info, "parts", json_integer(w->next_num));
  call_finish_cb(w, ENG_OK, info);
}

static char *strip_quotes(const char *s) {
  if (!s) return eng_xstrdup("");
  size_t n = strlen(s);
  if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
    char *d = eng_xmalloc(n - 1);
    memcpy(d, s + 1, n - 2);
    d[n - 2] = '\0';
    return d;
  }
  return eng_xstrdup(s);
}

static void set_final(s3_writer *w, const char *etag, const char *version) {
  if (etag) {
    free(w->final_etag);
    w->final_etag = strip_quotes(etag);
  }
  if (version && strcmp(version, "null") != 0) {
    free(w->final_version);
    w->final_version = eng_xstrdup(version);
  }
}

static void on_sidecar(void *ud, s3_req *r) {
  s3_writer *w = ud;
  char msg[1024];
  hold(w);
  w->ctl = NULL;
  int rc = s3_req_check(r, msg, sizeof msg);
  s3_req_free(r);
  if (rc == ENG_OK) s3_host->journal_confirm(w->call, w->side_token);
  if (w->phase == W_ABORTING) {
    release(w);
    return;
  }
  if (rc != ENG_OK) {
    s3_host->log(w->call, ENG_LOG_WARN,
                 "%s was stored, but its SHA-256 could not be (%s): s3.get "
                 "cannot verify it",
                 w->url, msg);
  } else {
    w->checksum_where = "sidecar";
  }
  done_ok(w);
  release(w);
}

static void write_sidecar(s3_writer *w) {
  const char *base = strrchr(w->key, '/');
  base = base ? base + 1 : w->key;
  eng_strbuf_free(&w->ctl_body);
  eng_strbuf_addf(&w->ctl_body, "%s  %s\n", w->sha, base);
  char *skey = eng_asprintf("%s.sha256", w->key);
  char *surl = eng_asprintf("%s.sha256", w->url);
  json_t *d = json_pack("{s:{s:s, s:{s:s}}}", "undo", "action", "s3.delete",
                        "with", "url", surl);
  w->side_token = s3_host->journal_intent(w->call, "object", surl, d);
  json_decref(d);
  if (w->side_token < 0) {
    /* the object exists, its checksum cannot: the write fails and the
     * object is deleted again (start_abort) */
    free(skey);
    free(surl);
    fail_journal(w, "the checksum sidecar");
    return;
  }
  w->ctl = s3_req_new(w->call, &w->cfg, "PUT", w->bucket, skey, NULL);
  s3_req_header(w->ctl, "Content-Type: text/plain");
  char side_sha[65];
  aws_sha256_hex(w->ctl_body.data, w->ctl_body.len, side_sha);
  s3_at_rest_headers(&w->at_rest, w->ctl, side_sha);
  s3_req_body(w->ctl, w->ctl_body.data, w->ctl_body.len, side_sha);
  free(skey);
  int rc = start_ctl(w, on_sidecar);
  if (rc != ENG_OK) {
    s3_host->log(w->call, ENG_LOG_WARN, "%s: cannot write %s: %s", w->url,
                 surl, eng_strerror(rc));
    done_ok(w);
  }
  free(surl);
}

static void on_copied(void *ud, s3_req *r) {
  s3_writer *w = ud;
  char msg[1024];
  hold(w);
  w->ctl = NULL;
  int rc = s3_req_check(r, msg, sizeof msg);
  if (w->phase == W_ABORTING) {
    s3_req_free(r);
    release(w);
    return;
  }
  if (rc == ENG_OK) {
    aws_xml *x = aws_xml_parse(r->body.data, r->body.len);
    set_final(w, x ? aws_xml_text(x, "ETag") : NULL, r->version_id);
    aws_xml_free(x);
    w->checksum_where = "metadata";
    s3_req_free(r);
    done_ok(w);
  } else {
    s3_req_free(r);
    s3_host->log(w->call, ENG_LOG_WARN,
                 "storing the SHA-256 of %s as metadata failed (%s); writing "
                 "the sidecar %s.sha256",
                 w->url, msg, w->key);
    write_sidecar(w);
  }
  release(w);
}

#define S3_STREAM_COPY_LIMIT ((uint64_t)64 << 20)

static void store_checksum(s3_writer *w) {
  if (!aws_is_sha256(w->sha)) { /* nobody told us: nothing to store */
    done_ok(w);
    return;
  }
  if (w->meta_sha) {
    w->checksum_where = "metadata";
    done_ok(w);
    return;
  }
  /* Copying an object onto itself to add metadata is a full server-side
   * copy: worth it for small objects, not for a large dump, whose checksum
   * goes into the KEY.sha256 sidecar instead (readers look at both). */
  uint64_t limit = S3_STREAM_COPY_LIMIT < S3_MAX_COPY ? S3_STREAM_COPY_LIMIT : S3_MAX_COPY;
  const char *tl = getenv("ENGINE_S3_TEST_COPY_LIMIT"); /* tests: sidecar */
  if (tl && *tl) limit = strtoull(tl, NULL, 10);
  /* A locked object is not copied onto itself either: the copy would be
   * a second version, locked as long, of the same bytes. */
  if (w->bytes > limit || w->at_rest.lock_mode) {
    write_sidecar(w);
    return;
  }
  char *src = aws_uri_encode(w->key, 1);
  w->ctl = s3_req_new(w->call, &w->cfg, "PUT", w->bucket, w->key, NULL);
  s3_req_header(w->ctl, "x-amz-copy-source: /%s/%s", w->bucket, src);
  s3_req_header(w->ctl, "x-amz-metadata-directive: REPLACE");
  /* The copy gets a full-object SHA-256 computed by S3 (the parts'
   * composite one does not describe a copy): then the store's own
   * checksum is the one we keep in the metadata. */
  s3_req_header(w->ctl, "x-amz-checksum-algorithm: SHA256");
  add_common_headers(w, w->ctl, w->sha);
  s3_req_body(w->ctl, "", 0, S3_EMPTY_SHA);
  free(src);
  if (start_ctl(w, on_copied) != ENG_OK) write_sidecar(w);
}

static void on_retained(void *ud, s3_req *r) {
  s3_writer *w = ud;
  char msg[1024], m2[1200];
  hold(w);
  w->ctl = NULL;
  int rc = s3_req_check(r, msg, sizeof msg);
  s3_req_free(r);
  if (w->phase == W_ABORTING) {
    start_abort(w);
  } else if (rc != ENG_OK) {
    snprintf(m2, sizeof m2, "setting the Object Lock retention: %s", msg);
    fail(w, rc, m2);
  } else {
    store_checksum(w);
  }
  release(w);
}

/* A multipart upload's lock, set on the completed object
 * (PutObjectRetention): CreateMultipartUpload carries it too, but not
 * every S3-compatible store keeps it from there. */
static void put_retention(s3_writer *w) {
  eng_strbuf_free(&w->ctl_body);
  eng_strbuf_addf(&w->ctl_body,
                  "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                  "<Mode>%s</Mode><RetainUntilDate>%s</RetainUntilDate></Retention>",
                  w->at_rest.lock_mode, w->at_rest.lock_until);
  unsigned char md5[16];
  unsigned int n = 0;
  EVP_Digest(w->ctl_body.data, w->ctl_body.len, md5, &n, EVP_md5(), NULL);
  unsigned char b64[32];
  EVP_EncodeBlock(b64, md5, (int)n);
  w->ctl = s3_req_new(w->call, &w->cfg, "PUT", w->bucket, w->key, "retention=");
  s3_req_header(w->ctl, "Content-Type: application/xml");
  s3_req_header(w->ctl, "Content-MD5: %s", (const char *)b64);
  s3_req_body(w->ctl, w->ctl_body.data, w->ctl_body.len, NULL);
  if (start_ctl(w, on_retained) != ENG_OK)
    fail(w, ENG_ERR_IO, "cannot start PutObjectRetention");
}

static void on_completed(void *ud, s3_req *r) {
  s3_writer *w = ud;
  char msg[1024];
  hold(w);
  w->ctl = NULL;
  int rc = s3_req_check(r, msg, sizeof msg);
  aws_xml *x = rc == ENG_OK ? aws_xml_parse(r->body.data, r->body.len) : NULL;
  if (rc == ENG_OK) {
    w->made = 1;
    journal_upload_gone(w);
    s3_host->journal_confirm(w->call, w->obj_token);
    set_final(w, x ? aws_xml_text(x, "ETag") : r->etag, r->version_id);
  }
  aws_xml_free(x);
  s3_req_free(r);
  if (w->phase == W_ABORTING) {
    start_abort(w); /* completed meanwhile: remove the object again */
  } else if (rc != ENG_OK) {
    char m2[1200];
    snprintf(m2, sizeof m2, "completing the multipart upload: %s", msg);
    fail(w, rc, m2);
  } else {
    writer_phase(w, W_STORING);
    if (w->at_rest.lock_mode) put_retention(w);
    else store_checksum(w);
  }
  release(w);
}

/* The object's intent, before the request that makes it visible: 0, or -1
 * when it could not be written (then that request must not be sent). */
static int journal_object(s3_writer *w) {
  json_t *d = json_pack("{s:{s:s, s:{s:s}}}", "undo", "action", "s3.delete",
                        "with", "url", w->url);
  w->obj_token = s3_host->journal_intent(w->call, "object", w->url, d);
  json_decref(d);
  return w->obj_token < 0 ? -1 : 0;
}

static void complete(s3_writer *w) {
  if (journal_object(w) != 0) { /* the upload is aborted (fail) */
    fail_journal(w, "the object");
    return;
  }
  writer_phase(w, W_COMPLETING);
  eng_strbuf *b = &w->ctl_body;
  eng_strbuf_free(b);
  eng_strbuf_adds(b, "<CompleteMultipartUpload "
                 "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
  for (int i = 0; i < w->next_num; i++) {
    const char *e = i < w->n_etags && w->etags[i] ? w->etags[i] : "";
    eng_strbuf_addf(b, "<Part><PartNumber>%d</PartNumber><ETag>", i + 1);
    for (const char *c = e; *c; c++) { /* ETags are quoted: escape */
      if (*c == '"')
        eng_strbuf_adds(b, "&quot;");
      else if (*c == '&')
        eng_strbuf_adds(b, "&amp;");
      else if (*c == '<')
        eng_strbuf_adds(b, "&lt;");
      else
        eng_strbuf_add(b, c, 1);
    }
    eng_strbuf_adds(b, "</ETag>");
    if (i < w->n_etags && w->sums[i])
      eng_strbuf_addf(b, "<ChecksumSHA256>%s</ChecksumSHA256>", w->sums[i]);
    eng_strbuf_adds(b, "</Part>");
  }
  eng_strbuf_adds(b, "</CompleteMultipartUpload>");
  char *q = s3_upload_query(w->upload_id);
  w->ctl = s3_req_new(w->call, &w->cfg, "POST", w->bucket, w->key, q);
  free(q);
  s3_req_header(w->ctl, "Content-Type: application/xml");
  s3_req_body(w->ctl, b->data, b->len, NULL);
  int rc = start_ctl(w, on_completed);
  if (rc != ENG_OK) fail(w, rc, "cannot start CompleteMultipartUpload");
}

static void on_put(void *ud, s3_req *r) {
  s3_writer *w = ud;
  char msg[1024];
  hold(w);
  w->ctl = NULL;
  int rc = s3_req_check(r, msg, sizeof msg);
  if (rc == ENG_OK) {
    w->made = 1;
    s3_host->journal_confirm(w->call, w->obj_token);
    set_final(w, r->etag, r->version_id);
  } else if (!strcmp(s3_req_error_code(r), "XAmzContentSHA256Mismatch")) {
    rc = ENG_ERR_CHECKSUM;
    snprintf(msg, sizeof msg,
             "PUT %s: S3 computed another SHA-256 than the one given for "
             "the bytes (XAmzContentSHA256Mismatch)",
             w->url);
  }
  s3_req_free(r);
  if (w->phase == W_ABORTING) {
    if (rc == ENG_OK) start_abort(w);
  } else if (rc != ENG_OK) {
    fail(w, rc, msg);
  } else {
    w->checksum_where = "metadata";
    done_ok(w);
  }
  release(w);
}

static void put_single(s3_writer *w) {
  if (journal_object(w) != 0) {
    fail_journal(w, "the object");
    return;
  }
  writer_phase(w, W_COMPLETING);
  w->ctl = s3_req_new(w->call, &w->cfg, "PUT", w->bucket, w->key, NULL);
  add_common_headers(w, w->ctl, w->meta_sha ? w->meta_sha : w->sha);
  if (w->at_rest.lock_mode) {
    s3_req_header(w->ctl, "x-amz-sdk-checksum-algorithm: SHA256");
    char b64[45];
    aws_hex_to_b64(w->sha, b64);
    s3_req_header(w->ctl, "x-amz-checksum-sha256: %s", b64);
  }
  /* The SHA-256 of the stored bytes is the payload hash: S3 checks it. */
  s3_req_body(w->ctl, w->cur ? w->cur : "", w->cur_len, w->sha);
  int rc = start_ctl(w, on_put);
  if (rc != ENG_OK) fail(w, rc, "cannot start PutObject");
}

/* ---- abort ---------------------------------------------------------------------------- */

static void on_aborted(void *ud, s3_req *r) {
  s3_writer *w = ud;
  char msg[1024];
  hold(w);
  w->abort_req = NULL;
  int rc = s3_req_check(r, msg, sizeof msg);
  int was_delete = r->query == NULL;
  s3_req_free(r);
  if (rc == ENG_OK || rc == ENG_ERR_NOTFOUND) {
    if (was_delete) {
      s3_host->journal_removed(w->call, "object", w->url);
    } else {
      journal_upload_gone(w);
      s3_host->log(w->call, ENG_LOG_INFO,
                   "aborted the multipart upload of %s: no object was made",
                   w->url);
    }
  } else if (rc != ENG_ERR_CANCELLED) {
    s3_host->log(w->call, ENG_LOG_WARN,
                 "could not abort the multipart upload of %s (%s): it is "
                 "retried at the end of the run",
                 w->url, msg);
  }
  release(w);
}

/* W_ABORTING (again when what it waited for answered). */
static void start_abort(s3_writer *w) {
  writer_phase(w, W_ABORTING);
  if (w->wtimer) {
    s3_host->timer_stop(w->wtimer);
    w->wtimer = NULL;
  }
  w->wcb = NULL;
  stop_parts(w);
  if (w->creating || w->abort_req) return; /* on_created calls us again */
  if (w->ctl) {
    s3_req_cancel(w->ctl); /* its cb calls us again when it matters */
    return;
  }
  if (w->made) {
    /* The object became visible but the write did not succeed. */
    w->abort_req = s3_req_new(w->call, &w->cfg, "DELETE", w->bucket, w->key,
                              NULL);
  } else if (w->upload_id && (!w->pend || w->pend->open)) {
    char *q = s3_upload_query(w->upload_id);
    w->abort_req = s3_req_new(w->call, &w->cfg, "DELETE", w->bucket, w->key,
                              q);
    free(q);
  } else {
    return;
  }
  if (s3_req_start(w->abort_req, on_aborted, w) != ENG_OK) {
    s3_req_free(w->abort_req);
    w->abort_req = NULL;
  }
}

/* ---- API -------------------------------------------------------------------------------- */

int s3_writer_open(eng_call *call, const aws_cfg *cfg, const char *url,
                   const s3_write_opts *o, s3_writer **out, char *err,
                   size_t errlen) {
  *out = NULL;
  char *bucket, *key;
  int rc = s3_url_parse(url, &bucket, &key, 0, err, errlen);
  if (rc != ENG_OK) return rc;
  size_t ps = o && o->part_size ? o->part_size : S3_DEF_PART;
  if (ps < S3_MIN_PART || ps > S3_MAX_PART) {
    snprintf(err, errlen,
             "part_size %zu is out of range: S3 parts are 5 MiB to 5 GiB", ps);
    free(bucket);
    free(key);
    return ENG_ERR_INVALID;
  }
  int conc = o && o->concurrency ? o->concurrency : 4;
  if (conc < 1 || conc > 64) {
    snprintf(err, errlen, "concurrency %d is out of range (1 to 64)", conc);
    free(bucket);
    free(key);
    return ENG_ERR_INVALID;
  }
  s3_writer *w = eng_xcalloc(1, sizeof *w);
  w->call = call;
  aws_cfg_copy(&w->cfg, cfg);
  w->url = eng_asprintf("s3://%s/%s", bucket, key);
  w->bucket = bucket;
  w->key = key;
  w->part_size = ps;
  w->concurrency = conc;
  w->spare = eng_xcalloc((size_t)conc + 1, sizeof *w->spare);
  w->size_hint = -1;
  if (o && o->storage_class && *o->storage_class)
    w->storage_class = eng_xstrdup(o->storage_class);
  if (o && o->sha256 && aws_is_sha256(o->sha256))
    w->meta_sha = eng_xstrdup(o->sha256);
  s3_at_rest_copy(&w->at_rest, o ? o->at_rest : NULL);
  w->upload_token = w->obj_token = w->side_token = -1;
  *out = w;
  return ENG_OK;
}

void s3_writer_set_size(s3_writer *w, int64_t size) { w->size_hint = size; }

int s3_writer_write(s3_writer *w, const void *buf, size_t len,
                    eng_stream_write_cb cb, void *ud) {
  if (w->rc) return w->rc;
  if (w->phase != W_WRITING || w->wcb) return ENG_ERR_INVALID;
  hold(w);
  w->wbuf = buf;
  w->wlen = len;
  w->wcb = cb;
  w->wud = ud;
  w->in_write = 1;
  pump(w);
  w->in_write = 0;
  release(w);
  return ENG_OK;
}

int s3_writer_finish(s3_writer *w, const char *sha256, eng_stream_done_cb cb,
                     void *ud) {
  if (w->phase != W_WRITING && w->phase != W_FAILED) return ENG_ERR_INVALID;
  hold(w);
  w->in_finish = 1;
  w->fcb = cb;
  w->fud = ud;
  if (sha256 && aws_is_sha256(sha256)) {
    for (int i = 0; i < 64; i++)
      w->sha[i] = (char)(sha256[i] | 0x20); /* lowercase hex */
    w->sha[64] = '\0';
  } else if (w->meta_sha) {
    memcpy(w->sha, w->meta_sha, 65);
  } else if (!w->upload_id && !w->creating && w->next_num == 0) {
    aws_sha256_hex(w->cur ? w->cur : "", w->cur_len, w->sha);
  }
  if (w->phase == W_FAILED) {
    writer_phase(w, W_REPORTING);
    w->ftimer = s3_host->timer_start(w->call, 0, on_ftimer, w);
  } else if (!w->upload_id && !w->creating && w->next_num == 0) {
    writer_phase(w, W_FINISHING);
    put_single(w);
  } else {
    writer_phase(w, W_FINISHING);
    if (w->cur_len > 0) submit_cur(w);
    if (w->phase == W_FINISHING && w->in_flight == 0 && w->upload_id)
      complete(w);
  }
  w->in_finish = 0;
  release(w);
  return ENG_OK;
}

void s3_writer_abort_then(s3_writer *w, void (*gone)(void *ud), void *ud) {
  w->gone_cb = gone;
  w->gone_ud = ud;
  s3_writer_abort(w);
}

void s3_writer_abort(s3_writer *w) {
  if (!w || w->phase == W_ABORTING) return;
  hold(w);
  w->fcb = NULL;
  if (w->ftimer) {
    s3_host->timer_stop(w->ftimer);
    w->ftimer = NULL;
  }
  start_abort(w);
  release(w);
}
