/*
 * s3_answer.c - what S3 answered, read the same way by the requests on the
 * engine's loop (s3_req.c) and by the blocking state store (s3_store.c):
 * response header lines, which failures are worth another try, when to
 * retry with moto's lenient encoding, the error texts a person can act on,
 * and ListObjectsV2 pages. No I/O and no host services: any thread.
 */
#include "s3_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- header lines ------------------------------------------------------------------ */

int s3_header_split(const char *p, size_t len, size_t *nlen, const char **v,
                    size_t *vlen) {
  if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) return -1;
  const char *colon = memchr(p, ':', len);
  if (!colon) return 0;
  *nlen = (size_t)(colon - p);
  const char *s = colon + 1, *e = p + len;
  while (s < e && (*s == ' ' || *s == '\t')) s++;
  while (e > s && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ')) e--;
  *v = s;
  *vlen = (size_t)(e - s);
  return 1;
}

int s3_header_is(const char *name, size_t nlen, const char *want) {
  return nlen == strlen(want) && strncasecmp(name, want, nlen) == 0;
}

void s3_header_dup(char **dst, const char *v, size_t n) {
  free(*dst);
  *dst = eng_xmalloc(n + 1);
  memcpy(*dst, v, n);
  (*dst)[n] = '\0';
}

int64_t s3_header_int(const char *v, size_t n) {
  char tmp[32];
  size_t k = n < sizeof tmp - 1 ? n : sizeof tmp - 1;
  memcpy(tmp, v, k);
  tmp[k] = '\0';
  return strtoll(tmp, NULL, 10);
}

/* ---- another try? ------------------------------------------------------------------- */

int s3_transient(int rc, long status, const char *code) {
  if (rc == ENG_ERR_TIMEOUT || rc == ENG_ERR_IO || rc == ENG_ERR_CONNECT)
    return 1;
  if (rc != ENG_OK) return 0;
  return status == 500 || status == 502 || status == 503 || status == 504 ||
         aws_is_throttle(code);
}

int s3_lenient_retry(const aws_cfg *cfg, const char *method, const char *key,
                     const char *query, long status, const char *code,
                     size_t body_len) {
  /* Some S3-compatible servers (moto) canonicalize paths and queries with
   * some reserved characters unencoded: with the right secret the lenient
   * form then matches. Only on custom endpoints, only after a signature
   * mismatch; AWS (and MinIO) accept the strict form. */
  return status == 403 && cfg->custom && s3_lenient_differs(key, query) &&
         (!strcmp(code, "SignatureDoesNotMatch") ||
          (body_len == 0 && !strcmp(method, "HEAD")));
}

/* ---- what went wrong, for people ---------------------------------------------- */

int s3_answer_check(const s3_answer *a, char *msg, size_t n) {
  const char *key = a->key ? a->key : "";
  char target[1200];
  snprintf(target, sizeof target, "s3://%s%s%s", a->bucket, *key ? "/" : "",
           key);
  if (a->rc == ENG_ERR_CANCELLED) {
    snprintf(msg, n, "%s %s: cancelled", a->method, target);
    return ENG_ERR_CANCELLED;
  }
  if (a->rc == ENG_ERR_CONNECT) {
    snprintf(msg, n,
             "cannot connect to the S3 endpoint %s (%s): check the endpoint "
             "parameter or AWS_ENDPOINT_URL, and that the service is up",
             a->cfg->endpoint, a->curl_err);
    return ENG_ERR_CONNECT;
  }
  if (a->rc == ENG_ERR_TIMEOUT) {
    snprintf(msg, n, "%s %s timed out after %d attempts (%s)", a->method,
             target, a->tries, a->curl_err);
    return ENG_ERR_TIMEOUT;
  }
  if (a->rc != ENG_OK) {
    snprintf(msg, n, "%s %s failed: %s", a->method, target, a->curl_err);
    return a->rc;
  }
  char code[128], text[512];
  int has_err = aws_error_parse(a->body ? a->body : "", a->body_len, code,
                                sizeof code, text, sizeof text);
  int rc = ENG_OK;
  if (a->status >= 200 && a->status < 300) {
    if (has_err) { /* CompleteMultipartUpload and CopyObject can do this */
      snprintf(msg, n,
               "%s %s: S3 answered HTTP %ld with an error: %s: %s", a->method,
               target, a->status, code, text);
      rc = ENG_ERR_PROTOCOL;
    }
  } else if ((rc = aws_auth_error(code, a->cfg, msg, n)) != ENG_OK) {
    /* the message names what to check */
  } else if (!strcmp(code, "AccessDenied") ||
             (a->status == 403 && !*code)) {
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
             a->bucket, a->cfg->endpoint);
    rc = ENG_ERR_NOTFOUND;
  } else if (!strcmp(code, "NoSuchKey") || (a->status == 404 && !*code)) {
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
             a->bucket, a->cfg->region, code);
    rc = ENG_ERR_INVALID;
  } else {
    snprintf(msg, n, "%s %s: HTTP %ld%s%s%s%s", a->method, target, a->status,
             *code ? " " : "", code, *text ? ": " : "", text);
    rc = a->status == 404 ? ENG_ERR_NOTFOUND : ENG_ERR_FAILED;
  }
  return rc;
}

/* ---- ListObjectsV2 -------------------------------------------------------------- */

int s3_list_page(const char *body, size_t len,
                 void (*each)(void *ud, const aws_xml *contents), void *ud,
                 char **next) {
  *next = NULL;
  aws_xml *x = aws_xml_parse(body ? body : "", len);
  if (!x || strcmp(x->name, "ListBucketResult") != 0) {
    aws_xml_free(x);
    return ENG_ERR_PROTOCOL;
  }
  for (aws_xml *c = x->child; c; c = c->next)
    if (!strcmp(c->name, "Contents") && aws_xml_text(c, "Key")) each(ud, c);
  const char *trunc = aws_xml_text(x, "IsTruncated");
  const char *tok = aws_xml_text(x, "NextContinuationToken");
  int rc = ENG_OK;
  if (trunc && !strcmp(trunc, "true")) {
    if (tok && *tok) *next = eng_xstrdup(tok);
    else rc = ENG_ERR_PROTOCOL; /* more pages, and no way to them */
  }
  aws_xml_free(x);
  return rc;
}
