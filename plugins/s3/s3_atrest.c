/*
 * s3_atrest.c - what an object is at rest: server-side encryption
 * (x-amz-server-side-encryption: AES256 for SSE-S3, aws:kms for SSE-KMS
 * with the bucket's default KMS key; absent: the bucket's default) and
 * Object Lock retention
 * (x-amz-object-lock-mode GOVERNANCE or COMPLIANCE until a date computed
 * from lock_days). Sent on every request that stores bytes (PutObject,
 * CreateMultipartUpload, the copy onto itself, the sidecar) and checked on
 * reads against what the caller expects, before any byte reaches it.
 *
 * No per-upload KMS key id: libcurl 7.88 signs headers sorted as whole
 * "name:value" lines, so x-amz-server-side-encryption-aws-kms-key-id goes
 * before x-amz-server-side-encryption where SigV4 wants it after, and S3
 * refuses the signature. A customer-managed key is the bucket's default
 * encryption key instead (docs/retention.md).
 */
#include "s3_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const s3_sse_values[] = {"AES256", "aws:kms", NULL};
const char *const s3_lock_values[] = {"GOVERNANCE", "COMPLIANCE", NULL};

static const char *opt(const json_t *o, const char *name) {
  const char *v = o ? json_string_value(json_object_get(o, name)) : NULL;
  return v && *v ? v : NULL;
}

int s3_at_rest_parse(const json_t *o, int64_t now_s, s3_at_rest *out,
                     char *err, size_t n) {
  memset(out, 0, sizeof *out);
  const char *sse = opt(o, "sse");
  const char *mode = opt(o, "lock_mode");
  json_int_t days = o ? json_integer_value(json_object_get(o, "lock_days")) : 0;
  if (sse && strcmp(sse, "AES256") && strcmp(sse, "aws:kms")) {
    snprintf(err, n, "sse is 'AES256' (SSE-S3) or 'aws:kms' (SSE-KMS), got '%s'", sse);
    return ENG_ERR_INVALID;
  }
  if (mode && strcmp(mode, "GOVERNANCE") && strcmp(mode, "COMPLIANCE")) {
    snprintf(err, n, "lock_mode is 'GOVERNANCE' or 'COMPLIANCE', got '%s'", mode);
    return ENG_ERR_INVALID;
  }
  if (!mode != !(days > 0) || days < 0 || days > S3_LOCK_DAYS_MAX) {
    snprintf(err, n, "Object Lock needs both lock_mode (GOVERNANCE or "
                     "COMPLIANCE) and lock_days (1 to %d)", S3_LOCK_DAYS_MAX);
    return ENG_ERR_INVALID;
  }
  out->sse = eng_xstrdup(sse);
  out->lock_mode = eng_xstrdup(mode);
  if (mode) aws_format_time(now_s + (int64_t)days * 86400, out->lock_until);
  return ENG_OK;
}

void s3_at_rest_copy(s3_at_rest *dst, const s3_at_rest *src) {
  memset(dst, 0, sizeof *dst);
  if (!src) return;
  dst->sse = eng_xstrdup(src->sse);
  dst->lock_mode = eng_xstrdup(src->lock_mode);
  memcpy(dst->lock_until, src->lock_until, sizeof dst->lock_until);
}

void s3_at_rest_free(s3_at_rest *a) {
  free(a->sse);
  free(a->lock_mode);
  memset(a, 0, sizeof *a);
}

void s3_at_rest_headers(const s3_at_rest *a, s3_req *r, const char *sha_hex) {
  if (a->sse) s3_req_header(r, "x-amz-server-side-encryption: %s", a->sse);
  if (a->lock_mode) {
    s3_req_header(r, "x-amz-object-lock-mode: %s", a->lock_mode);
    s3_req_header(r, "x-amz-object-lock-retain-until-date: %s", a->lock_until);
    /* S3 wants a checksum of a locked object's bytes sent with them */
    char b64[45];
    if (sha_hex && aws_is_sha256(sha_hex)) {
      aws_hex_to_b64(sha_hex, b64);
      s3_req_header(r, "x-amz-sdk-checksum-algorithm: SHA256");
      s3_req_header(r, "x-amz-checksum-sha256: %s", b64);
    }
  }
}

int s3_at_rest_check(const s3_at_rest *want, const s3_req *got,
                     const char *url, char *err, size_t n) {
  if (want->sse && (!got->sse || strcmp(got->sse, want->sse))) {
    snprintf(err, n, "%s is stored with server-side encryption '%s', not the "
                     "expected '%s': nothing was read; check the bucket's "
                     "encryption and the sse the backup was written with",
             url, got->sse ? got->sse : "none", want->sse);
    return ENG_ERR_PROTOCOL;
  }
  return ENG_OK;
}
