/*
 * aws.h - the AWS layer shared by the plugins that talk to AWS services
 * (s3, provider's rds driver). An internal static library linked into each
 * of those modules; it is built from the SDK headers only and keeps no
 * state of its own: the host table is passed in. Allocation and text
 * buffers are <engine/mem.h>'s (abort when memory is exhausted).
 *
 *   aws_util.c   RFC 3986 encoding, SHA-256 hex, times;
 *   aws_cfg.c    where to talk to and as whom: endpoint (parameter,
 *                AWS_ENDPOINT_URL_<SERVICE>, AWS_ENDPOINT_URL, profile),
 *                region, credentials (AWS_* variables, AWS_PROFILE,
 *                ~/.aws/credentials and ~/.aws/config);
 *   aws_xml.c    answers as a small tree (expat), and the error an answer
 *                carries (S3's <Error>, the Query API's <ErrorResponse>);
 *   aws_sign.c   SigV4 on a curl handle (CURLOPT_AWS_SIGV4), the messages
 *                for credential errors, jittered backoff;
 *   aws_pick.c   `pick: latest | random_within:7d | none` over recovery
 *                points;
 *   aws_query.c  one Query API call (form-encoded POST, Action/Version) on
 *                the host's curl multi, retried on throttling and
 *                transient failures.
 */
#ifndef AWS_H
#define AWS_H

#include <stddef.h>
#include <stdint.h>

#include <engine/mem.h>
#include <engine/plugin.h>

/* ---- encodings, hashes, times (aws_util.c) ------------------------------ */

/* RFC 3986 encoding as SigV4 wants it: unreserved characters stay, every
 * other byte becomes %XX; '/' stays when keep_slash. Caller frees. */
char *aws_uri_encode(const char *s, int keep_slash);
/* Lowercase hex of n bytes into out[2n+1]. */
void aws_hex(const unsigned char *d, size_t n, char *out);
/* Hex SHA-256 of a buffer into out[65]. */
void aws_sha256_hex(const void *p, size_t n, char out[65]);
/* The 64 hex digits of a SHA-256 as base64 (44 characters). */
void aws_hex_to_b64(const char hex[65], char out[45]);
/* A SHA-256 in base64 (x-amz-checksum-sha256) as 64 hex digits; -1 when
 * it is not one. */
int aws_b64_to_hex(const char *b64, char hex[65]);
/* Non-zero when s is 64 hex digits (case-insensitive). */
int aws_is_sha256(const char *s);
/* RFC 3339 (fractions and a Z or +HH:MM offset allowed) or RFC 1123 date
 * -> Unix time; -1 when unparsable. */
int64_t aws_parse_time(const char *s);
/* Unix time -> "YYYY-MM-DDTHH:MM:SSZ". */
void aws_format_time(int64_t t, char out[32]);

/* ---- configuration (aws_cfg.c) ------------------------------------------ */

typedef struct aws_cfg {
  char *service;   /* signing name: "s3", "rds" */
  char *endpoint;  /* "scheme://host[:port]" without a trailing '/' */
  int custom;      /* the endpoint was given (parameter, variable, profile)
                      rather than AWS's own for the region */
  char *region;
  char *akid;
  char *secret;
  char *token;     /* may be NULL */
  char *ca_bundle; /* AWS_CA_BUNDLE, may be NULL */
} aws_cfg;

/* Fill cfg for `service` ("s3", "rds") from `params` (borrowed; keys
 * "endpoint" and "region" may be absent) and the environment, with the
 * AWS CLI's precedence: parameter, AWS_ENDPOINT_URL_<SERVICE>,
 * AWS_ENDPOINT_URL, the profile's endpoint_url; region: parameter,
 * AWS_REGION, AWS_DEFAULT_REGION, the profile, us-east-1; credentials:
 * AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), else the
 * profile (AWS_PROFILE, default "default") of AWS_SHARED_CREDENTIALS_FILE
 * or ~/.aws/credentials, then AWS_CONFIG_FILE or ~/.aws/config. With a call,
 * the secret and the token are registered with host->secret. ENG_OK, or an
 * eng_err with a message in err. */
int aws_cfg_load(const eng_host *host, eng_call *call, const json_t *params,
                 const char *service, aws_cfg *cfg, char *err, size_t errlen);
void aws_cfg_copy(aws_cfg *dst, const aws_cfg *src);
void aws_cfg_free(aws_cfg *cfg);

/* ---- XML (aws_xml.c) ----------------------------------------------------- */

typedef struct aws_xml {
  char *name; /* local name (namespace prefix dropped) */
  char *text; /* concatenated character data, never NULL */
  struct aws_xml *child, *last, *next;
} aws_xml;

/* A well-formed document as a tree, or NULL (empty, truncated, malformed).
 * Nesting deeper than 64 levels is dropped. Caller frees. */
aws_xml *aws_xml_parse(const char *buf, size_t len);
void aws_xml_free(aws_xml *x);
aws_xml *aws_xml_child(const aws_xml *x, const char *name);
/* Text of the named child, or NULL. */
const char *aws_xml_text(const aws_xml *x, const char *name);
/* Descend through children named by a '/'-separated path ("A/B/C"). */
aws_xml *aws_xml_path(const aws_xml *x, const char *path);

/* The error an answer carries: S3's <Error><Code>, the Query API's
 * <ErrorResponse><Error><Code> (or <Errors><Error>). Returns 1 and fills
 * code and message (truncated to fit) when the body is such a document,
 * else 0 with both empty. */
int aws_error_parse(const char *body, size_t len, char *code, size_t codelen,
                    char *message, size_t msglen);

/* ---- signing, credential errors, backoff (aws_sign.c) --------------------- */

struct curl_slist;
/* Sign the request on `curl_easy` with SigV4 for cfg's service and region
 * (libcurl's CURLOPT_AWS_SIGV4): sets the credentials, TLS verification
 * (AWS_CA_BUNDLE), and appends x-amz-content-sha256 (payload_sha) and, with
 * a session token, x-amz-security-token to *headers (which the caller sets
 * as CURLOPT_HTTPHEADER and frees). */
void aws_sign(void *curl_easy, const aws_cfg *cfg, const char *payload_sha,
              struct curl_slist **headers);
/* The message for an error code about credentials (SignatureDoesNotMatch,
 * InvalidAccessKeyId, InvalidClientTokenId, ExpiredToken, ...): returns
 * ENG_ERR_AUTH with a message naming what to check (never the secret), or
 * ENG_OK when the code is not about credentials. */
int aws_auth_error(const char *code, const aws_cfg *cfg, char *msg,
                   size_t msglen);
/* Capped exponential backoff with full jitter: a delay in [base/2,
 * min(cap, base * 2^attempt)], `rnd` a random 32-bit number. */
uint64_t aws_backoff_ms(int attempt, uint64_t base_ms, uint64_t cap_ms,
                        uint32_t rnd);
/* Error codes AWS uses for throttling (Throttling, RequestLimitExceeded,
 * ThrottlingException, SlowDown, ...). */
int aws_is_throttle(const char *code);

/* ---- picking a recovery point (aws_pick.c) ------------------------------- */

/* "7d", "36h", "1h30m", "90s", "2w" or seconds; -1 when invalid. */
int64_t aws_parse_duration(const char *s);
/* Check a `pick` value: latest, none or random_within:DURATION; 0 with
 * *within_s set, or -1 with a message naming the accepted forms. */
int aws_pick_parse(const char *s, int64_t *within_s, char *err, size_t errlen);
/* The index of the item `pick` chooses among n items with Unix times
 * `times` (names break ties of latest), or -1 (none, nothing recent
 * enough). random_within draws among the items at most within_s old
 * (ENGINE_TEST_SEED seeds the draw). */
long aws_pick(const char *pick, int64_t within_s, const int64_t *times,
              const char *const *names, size_t n, int64_t now);

/* ---- Query API calls (aws_query.c) ---------------------------------------- */

typedef struct aws_query aws_query;
/* The call ended: rc ENG_OK with a 2xx answer whose body is a well-formed
 * document without an error (q->doc), else an eng_err with q->message
 * (and q->code when AWS named an error). */
typedef void (*aws_query_cb)(void *ud, aws_query *q);

struct aws_query {
  /* result, valid in the callback */
  int rc;
  long status;        /* HTTP status, 0 without an answer */
  char code[128];     /* AWS error code ("DBInstanceNotFound") or "" */
  char message[1024]; /* what went wrong, for people (no secrets) */
  aws_xml *doc;       /* the parsed answer (rc ENG_OK) */
  int tries;
  /* private to aws_query.c */
  const eng_host *host;
  eng_call *call;
  const aws_cfg *cfg; /* borrowed: outlives the call */
  char *action;
  eng_strbuf form;
  eng_strbuf body;
  char curl_err[256];
  struct curl_slist *hdrs;
  void *easy;
  eng_http *http;
  eng_timer *timer;
  int max_tries;
  uint32_t seed;
  aws_query_cb cb;
  void *ud;
};

/* A call of `action` (with Version=version) on cfg's endpoint. cfg is
 * borrowed. */
aws_query *aws_query_new(const eng_host *host, eng_call *call,
                         const aws_cfg *cfg, const char *action,
                         const char *version);
/* Add a parameter (name and value are form-encoded here). */
void aws_query_param(aws_query *q, const char *name, const char *value);
/* Start; cb runs exactly once unless this returns an error. Throttling
 * (HTTP 400/503 with a throttling code), 5xx and connection errors are
 * retried up to 6 tries with capped jittered backoff (base 1 s, cap 20 s);
 * each retry is logged. The host ends transfers and timers with the call,
 * without cb. */
int aws_query_start(aws_query *q, aws_query_cb cb, void *ud);
/* Stop a started call: cb runs with ENG_ERR_CANCELLED (at once when it was
 * waiting to retry, soon when a transfer runs). */
void aws_query_cancel(aws_query *q);
void aws_query_free(aws_query *q);

#endif /* AWS_H */
