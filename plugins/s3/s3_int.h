/*
 * s3_int.h - internals shared by the files of the s3 plugin.
 *
 * Layers, bottom up (allocation and text buffers: <engine/mem.h>):
 *   plugins/aws the AWS layer shared with the provider plugin: endpoint,
 *               region and credentials (aws_cfg), XML answers (aws_xml),
 *               SigV4 and credential errors (aws_sign), encodings
 *               (aws_util);
 *   s3_url.c    s3:// URLs; request URLs (path-style or virtual host,
 *               strict or moto's lenient encoding); ListObjectsV2 queries;
 *   s3_answer.c what S3 answered: header lines, transient failures, error
 *               texts a person can act on, ListObjectsV2 pages;
 *   s3_req.c    one signed S3 request on the engine's curl multi: payload
 *               hash, retries with backoff, response headers;
 *   s3_store.c  the "s3" state store (ABI 1.3): blocking requests on a
 *               curl easy handle of its own, any thread, no host services;
 *   s3_write.c  the multipart writer (the "s3" stream scheme's write side,
 *               also used by s3.put);
 *   s3_read.c   the reader (the scheme's read side, also used by s3.get);
 *   s3_actions.c put, get, list, head, delete, abort_upload;
 *   s3_prune.c  prune: retention of a prefix of backups;
 *   s3_plugin.c the descriptor.
 *
 * Checksum storage: the object's SHA-256 (lowercase hex) lives
 * in the user metadata `x-amz-meta-sha256`. When it is known before the
 * upload starts (s3.put hashes the file first; small streams fit in one
 * PutObject) it is sent with the object. A streamed multipart upload only
 * knows it at the end: the completed object is copied onto itself with
 * `x-amz-metadata-directive: REPLACE` (CopyObject, up to 5 GiB). Larger
 * objects, or a copy that fails, get a sidecar object `KEY.sha256` holding
 * "HEX  BASENAME\n" (sha256sum's format). Readers look at the metadata
 * first, then at the sidecar. Multipart uploads are created with
 * x-amz-checksum-algorithm SHA256 and each part sends its SHA-256 (which
 * x-amz-content-sha256 needs anyway), so the store keeps a composite
 * checksum rather than computing a full-object CRC64NVME at completion;
 * the copy onto itself asks for a full-object SHA-256 (= ours).
 *
 * Everything but the state store runs on the engine's loop thread; file
 * I/O and hashing of whole parts go to host->work.
 */
#ifndef S3_INT_H
#define S3_INT_H

#include <stddef.h>
#include <stdint.h>

#include <engine/mem.h>
#include <engine/plugin.h>
#include <engine/op.h>

#include "aws.h"

extern const eng_host *s3_host;

#define S3_MIN_PART ((size_t)5 * 1024 * 1024)
#define S3_DEF_PART ((size_t)8 * 1024 * 1024)
#define S3_MAX_PART ((size_t)5 * 1024 * 1024 * 1024)
#define S3_MAX_COPY ((uint64_t)5 * 1024 * 1024 * 1024) /* CopyObject limit */
#define S3_MAX_PARTS 10000
#define S3_EMPTY_SHA                                                         \
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* ---- s3:// URLs (s3_url.c) ------------------------------------------- */

/* "uploadId=ID" with ID encoded, the query naming a multipart upload.
 * Caller frees. */
char *s3_upload_query(const char *upload_id);

/* Split "s3://bucket/key" (key may be empty when allow_empty_key). */
int s3_url_parse(const char *url, char **bucket, char **key,
                 int allow_empty_key, char *err, size_t errlen);

/* The URL of a request on bucket/key (key "" or NULL: the bucket) with an
 * already canonical query or NULL: path-style on custom endpoints,
 * virtual-host style on AWS's own unless the bucket has a dot. lenient:
 * the encoding moto canonicalizes (see s3_lenient_retry). Caller frees. */
char *s3_build_url(const aws_cfg *cfg, const char *bucket, const char *key,
                   const char *query, int lenient);
/* Non-zero when the lenient encoding of key or query differs. */
int s3_lenient_differs(const char *key, const char *query);
/* The canonical query of a ListObjectsV2 page of keys starting with
 * prefix (token: the continuation token or NULL). Caller frees. */
char *s3_list_query(const char *prefix, const char *token);

/* ---- answers (s3_answer.c) --------------------------------------------- */

/* Split a response header line: 1 with the name's length and the trimmed
 * value, -1 for a status line ("HTTP/...": a new response begins), 0 for
 * anything else. */
int s3_header_split(const char *p, size_t len, size_t *nlen, const char **v,
                    size_t *vlen);
/* Non-zero when the header name (nlen bytes) is `want`, case-insensitive. */
int s3_header_is(const char *name, size_t nlen, const char *want);
/* *dst = a copy of the value (the old one freed). */
void s3_header_dup(char **dst, const char *v, size_t n);
int64_t s3_header_int(const char *v, size_t n);
/* Worth another try: a connection error or timeout, HTTP 500/502/503/504,
 * or a throttling error code. */
int s3_transient(int rc, long status, const char *code);
/* Retry a 403 with the lenient encoding: on a custom endpoint, after a
 * signature mismatch (or a bodiless 403 to a HEAD), when it would differ. */
int s3_lenient_retry(const aws_cfg *cfg, const char *method, const char *key,
                     const char *query, long status, const char *code,
                     size_t body_len);

/* A finished request, as s3_answer_check reads it (all borrowed). */
typedef struct s3_answer {
  const aws_cfg *cfg;
  const char *method, *bucket, *key;
  int rc;               /* transport: ENG_OK or curl's error mapped */
  long status;          /* HTTP status */
  const char *curl_err; /* curl's message when rc != ENG_OK */
  const char *body;     /* the answer's body (may be NULL) */
  size_t body_len;
  int tries;
} s3_answer;
/* ENG_OK for 2xx without an <Error> body; otherwise an eng_err with a
 * message that says what to do (never the secret). */
int s3_answer_check(const s3_answer *a, char *msg, size_t msglen);
/* One ListObjectsV2 page: each(ud, contents) for every <Contents> with a
 * <Key>, in the answer's order; *next is the continuation token (caller
 * frees) when the listing goes on, else NULL. ENG_ERR_PROTOCOL when the
 * body is not a ListBucketResult. */
int s3_list_page(const char *body, size_t len,
                 void (*each)(void *ud, const aws_xml *contents), void *ud,
                 char **next);

/* ---- requests (s3_req.c) ----------------------------------------------- */

typedef struct s3_req s3_req;
typedef void (*s3_req_cb)(void *ud, s3_req *r);
/* Receives the body of a 2xx response; returns len, or
 * CURL_WRITEFUNC_PAUSE (0x10000001) to pause (the same bytes come again
 * after s3_req_pause(r, 0)). Non-2xx bodies are kept in r->body instead. */
typedef size_t (*s3_req_sink)(void *ud, const char *buf, size_t len);

struct s3_req {
  /* result, valid in the callback */
  int rc;             /* transport: ENG_OK or curl's error mapped */
  long status;        /* HTTP status (0 without an answer) */
  char curl_err[256]; /* curl's message when rc != ENG_OK */
  eng_strbuf body;    /* response body (capped) unless a sink took it */
  char *etag, *version_id, *meta_sha256, *last_modified, *content_type;
  char *meta_md5, *checksum_sha256; /* x-amz-meta-md5, x-amz-checksum-sha256 */
  char *lock_mode, *lock_until; /* x-amz-object-lock-mode, -retain-until-date */
  char *sse; /* x-amz-server-side-encryption */
  int64_t content_length; /* -1 when not given */
  uint64_t delivered;     /* bytes given to the sink */
  int tries;

  /* request, private to s3_req.c */
  eng_call *call;
  const aws_cfg *cfg; /* borrowed: must outlive the request */
  char *method, *bucket, *key, *query;
  char *url;
  struct curl_slist *extra; /* user headers */
  struct curl_slist *hdrs;  /* sent headers (rebuilt per try) */
  const char *req_body;
  size_t req_len;
  char req_sha[65];
  int max_tries;
  s3_req_sink sink;
  void *sink_ud;
  s3_req_cb cb;
  void *ud;
  void *easy;
  eng_http *http;
  eng_timer *retry_timer;
  int paused, running, cancelled, lenient;
};

/* A request for METHOD on bucket/key (key may be "" or NULL) with an
 * already canonical query (sorted, "uploads=" rather than "uploads") or
 * NULL. cfg is borrowed. */
s3_req *s3_req_new(eng_call *call, const aws_cfg *cfg, const char *method,
                   const char *bucket, const char *key, const char *query);
void s3_req_header(s3_req *r, const char *fmt, ...) ENG_PRINTF(2, 3);
/* Body (borrowed: must stay valid until cb) and its hex SHA-256 (NULL:
 * computed here). */
void s3_req_body(s3_req *r, const char *body, size_t len, const char *sha);
void s3_req_set_sink(s3_req *r, s3_req_sink sink, void *ud);
/* Start; cb runs exactly once unless this returns an error. Transient
 * failures (5xx, timeouts, connection errors, before any byte reached the
 * sink) are retried up to max_tries (3) with backoff. */
int s3_req_start(s3_req *r, s3_req_cb cb, void *ud);
/* Cancel a running request: cb runs with rc ENG_ERR_CANCELLED (at once,
 * or soon when called from inside a sink). */
void s3_req_cancel(s3_req *r);
void s3_req_pause(s3_req *r, int paused);
void s3_req_free(s3_req *r);
/* Classify the finished request: ENG_OK for 2xx without an <Error> body;
 * otherwise an eng_err with a message that says what to do. */
int s3_req_check(s3_req *r, char *msg, size_t msglen);
/* The S3 error code of the answer ("NoSuchKey"), or "" */
const char *s3_req_error_code(s3_req *r);

/* ---- at rest: encryption and Object Lock (s3_atrest.c) ---------------- */

/* The longest Object Lock retention lock_days may ask for (100 years). */
#define S3_LOCK_DAYS_MAX 36500

typedef struct s3_at_rest {
  char *sse;        /* "AES256", "aws:kms", or NULL: the bucket's default */
  char *lock_mode;  /* "GOVERNANCE", "COMPLIANCE", or NULL: no lock */
  char lock_until[32]; /* RFC 3339, with lock_mode */
} s3_at_rest;

/* sse, lock_mode and lock_days of an options or
 * parameters object (NULL: none); retain-until is now_s + lock_days.
 * Message in err. */
int s3_at_rest_parse(const json_t *opts, int64_t now_s, s3_at_rest *out,
                     char *err, size_t errlen);
void s3_at_rest_copy(s3_at_rest *dst, const s3_at_rest *src);
void s3_at_rest_free(s3_at_rest *a);
/* The headers that store an object so; sha_hex: the SHA-256 of the bytes
 * of a PutObject (a locked one carries it as its checksum), or NULL. */
void s3_at_rest_headers(const s3_at_rest *a, s3_req *r, const char *sha_hex);
/* ENG_OK when the answer's encryption is the one wanted (a NULL sse in
 * want: any); else ENG_ERR_PROTOCOL with the message in err. */
int s3_at_rest_check(const s3_at_rest *want, const s3_req *got,
                     const char *url, char *err, size_t errlen);

/* ---- writer (s3_write.c) ----------------------------------------------- */

typedef struct s3_writer s3_writer;

typedef struct s3_write_opts {
  size_t part_size;          /* 0: default */
  int concurrency;           /* 0: default */
  const char *storage_class; /* NULL: the bucket's default */
  const char *sha256;        /* known up front: stored with the object */
  const s3_at_rest *at_rest; /* encryption and lock (copied), or NULL */
} s3_write_opts;

int s3_writer_open(eng_call *call, const aws_cfg *cfg, const char *url,
                   const s3_write_opts *o, s3_writer **out, char *err,
                   size_t errlen);
int s3_writer_write(s3_writer *w, const void *buf, size_t len,
                    eng_stream_write_cb cb, void *ud);
int s3_writer_finish(s3_writer *w, const char *sha256, eng_stream_done_cb cb,
                     void *ud);
void s3_writer_abort(s3_writer *w);
/* Abort, and call gone(ud) once the writer is freed (its abort request
 * done): an owner that must not finish before that holds until then. */
void s3_writer_abort_then(s3_writer *w, void (*gone)(void *ud), void *ud);
/* The message of the first failure (valid until the writer is freed). */
const char *s3_writer_error(s3_writer *w);
/* The size the writer will be given (s3.put of a file): one PUT when it
 * fits a part. */
void s3_writer_set_size(s3_writer *w, int64_t size);
/* The journal id of the multipart uploads of BUCKET/KEY ("s3://B/K?uploads",
 * malloc'd): recorded before CreateMultipartUpload, removed once the
 * upload is completed or aborted. */
char *s3_upload_journal_id(const char *bucket, const char *key);

/* ---- reader (s3_read.c) ------------------------------------------------ */

typedef struct s3_reader s3_reader;

int s3_reader_open(eng_call *call, const aws_cfg *cfg, const char *url,
                   int want_expected, eng_stream_data_cb on_data,
                   eng_stream_done_cb on_end, void *ud, s3_reader **out,
                   char *err, size_t errlen);
/* Refuse the object unless it is stored with this encryption (copied;
 * call right after open): checked on the answer's headers, before any
 * byte reaches on_data. */
void s3_reader_expect(s3_reader *r, const s3_at_rest *want);
void s3_reader_pause(s3_reader *r, int paused);
void s3_reader_cancel(s3_reader *r);
/* The message of the failure given to on_end (valid inside on_end). */
const char *s3_reader_error(s3_reader *r);

/* Look for "KEY.sha256" (sidecar); cb(ud, rc, hex or NULL). rc ENG_OK with
 * hex NULL: there is none. */
typedef void (*s3_sidecar_cb)(void *ud, int rc, const char *hex,
                              const char *err);
int s3_sidecar_fetch(eng_call *call, const aws_cfg *cfg, const char *bucket,
                     const char *key, s3_sidecar_cb cb, void *ud);
/* Parse a sidecar body ("HEX  name" or "HEX"); returns 1 and fills hex. */
int s3_sidecar_parse(const char *body, size_t len, char hex[65]);

/* ---- the scheme and actions -------------------------------------------- */

extern const eng_stream_scheme s3_scheme;
/* The "s3" state store (s3_store.c). */
extern const eng_store_scheme s3_store_scheme;
/* Non-zero when libcurl signs SigV4 itself (CURLOPT_AWS_SIGV4, 7.75). */
int s3_curl_ok(void);
#define S3_N_ACTIONS 7
extern const eng_action s3_actions[S3_N_ACTIONS];

/* Parameters every action that reaches S3 takes. */
#define P_ENDPOINT                                                             \
  {                                                                            \
    .name = "endpoint", .type = ENG_T_STRING, .target = ENG_TARGET_NONE,       \
    .doc = "S3 endpoint URL for S3-compatible stores (path-style); default "   \
           "$AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, the profile's "           \
           "endpoint_url, "                                                    \
           "else AWS (virtual-host style)"                                     \
  }
#define P_REGION                                                               \
  {                                                                            \
    .name = "region", .type = ENG_T_STRING, .target = ENG_TARGET_NONE,         \
    .doc = "signing region; default $AWS_REGION, $AWS_DEFAULT_REGION, the "    \
           "profile's region, else us-east-1"                                  \
  }
/* Server-side encryption: on uploads, what to store with; on reads, what
 * the object must have. */
#define P_SSE                                                                  \
  {.name = "sse", .type = ENG_T_STRING, .target = ENG_TARGET_NONE,             \
   .values = s3_sse_values,                                                    \
   .doc = "server-side encryption: AES256 (SSE-S3) or aws:kms (SSE-KMS); "     \
          "default: the bucket's. On reads: the encryption the object must "   \
          "have, or nothing is read. aws:kms uses the bucket's default KMS "   \
          "key"}
/* Object Lock retention on uploads (the bucket must have Object Lock). */
#define P_LOCK                                                                 \
  {.name = "lock_mode", .type = ENG_T_STRING, .target = ENG_TARGET_NONE,       \
   .values = s3_lock_values,                                                   \
   .doc = "Object Lock retention: GOVERNANCE or COMPLIANCE (with "             \
          "lock_days); the bucket must have Object Lock enabled"},             \
  {.name = "lock_days", .type = ENG_T_INT, .flags = ENG_P_MIN | ENG_P_MAX,     \
   .min = 1, .max = S3_LOCK_DAYS_MAX, .target = ENG_TARGET_NONE,               \
   .doc = "days the object cannot be deleted or overwritten (retain-until "    \
          "= upload time + lock_days); match the retention policy's longest " \
          "keep"}
extern const char *const s3_sse_values[];
extern const char *const s3_lock_values[];
#define P_END {0}
#define O_END {NULL, 0, NULL}

/* ---- retention (s3_prune.c) ---------------------------------------------- */

int s3_prune_start(eng_call *call, const json_t *params);
eng_side_effect s3_prune_classify(const json_t *params);
void s3_prune_describe(const json_t *params, char *buf, size_t n);
extern const eng_param s3_prune_params[];
extern const eng_output s3_prune_outputs[];

#endif /* S3_INT_H */
