/*
 * aws_sign.c - SigV4 on a curl handle, the messages for credential errors,
 * and the backoff AWS asks clients to use.
 *
 * libcurl's CURLOPT_AWS_SIGV4 ("aws:amz:REGION:SERVICE") signs the method,
 * the path and query exactly as given, host, x-amz-date and the headers set
 * on the handle. libcurl 7.88 does not hash request bodies itself: the
 * caller gives the payload's hex SHA-256 (or UNSIGNED-PAYLOAD), sent as
 * x-amz-content-sha256 and signed with the rest.
 */
#include "aws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

void aws_sign(void *curl_easy, const aws_cfg *c, const char *payload_sha,
              struct curl_slist **headers) {
  CURL *e = curl_easy;
  char line[128];
  snprintf(line, sizeof line, "x-amz-content-sha256: %s", payload_sha);
  *headers = curl_slist_append(*headers, line);
  if (c->token) {
    char *t = eng_asprintf("x-amz-security-token: %s", c->token);
    *headers = curl_slist_append(*headers, t);
    memset(t, 0, strlen(t));
    free(t);
  }
  char sigv4[160];
  snprintf(sigv4, sizeof sigv4, "aws:amz:%s:%s", c->region, c->service);
  curl_easy_setopt(e, CURLOPT_AWS_SIGV4, sigv4);
  curl_easy_setopt(e, CURLOPT_USERNAME, c->akid);
  curl_easy_setopt(e, CURLOPT_PASSWORD, c->secret);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  if (c->ca_bundle) curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_bundle);
}

int aws_auth_error(const char *code, const aws_cfg *c, char *msg, size_t n) {
  if (!code) return ENG_OK;
  if (!strcmp(code, "SignatureDoesNotMatch")) {
    snprintf(msg, n,
             "signature does not match: check AWS_SECRET_ACCESS_KEY (the "
             "secret of access key %s) and the region '%s'",
             c->akid, c->region);
  } else if (!strcmp(code, "InvalidAccessKeyId") ||
             !strcmp(code, "InvalidClientTokenId") ||
             !strcmp(code, "UnrecognizedClientException")) {
    snprintf(msg, n,
             "the access key ID '%s' is not known to %s (%s): check "
             "AWS_ACCESS_KEY_ID (or the profile)",
             c->akid, c->service, code);
  } else if (!strcmp(code, "ExpiredToken") || !strcmp(code, "InvalidToken") ||
             !strcmp(code, "TokenRefreshRequired") ||
             !strcmp(code, "ExpiredTokenException")) {
    snprintf(msg, n, "the session token was refused (%s): refresh "
                     "AWS_SESSION_TOKEN", code);
  } else if (!strcmp(code, "MissingAuthenticationToken") ||
             !strcmp(code, "IncompleteSignature")) {
    snprintf(msg, n, "the request was not signed as %s expects (%s): check "
                     "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
             c->service, code);
  } else {
    return ENG_OK;
  }
  return ENG_ERR_AUTH;
}

uint64_t aws_backoff_ms(int attempt, uint64_t base_ms, uint64_t cap_ms,
                        uint32_t rnd) {
  if (attempt < 0) attempt = 0;
  uint64_t top = base_ms;
  for (int i = 0; i < attempt && top < cap_ms; i++) top *= 2;
  if (top > cap_ms) top = cap_ms;
  uint64_t low = top / 2 < base_ms / 2 ? top / 2 : base_ms / 2;
  if (top <= low) return top;
  return low + (uint64_t)rnd % (top - low + 1);
}

int aws_is_throttle(const char *code) {
  static const char *const codes[] = {
      "Throttling", "ThrottlingException", "ThrottledException",
      "RequestLimitExceeded", "RequestThrottled", "RequestThrottledException",
      "TooManyRequestsException", "SlowDown", "ProvisionedThroughputExceededException",
      "BandwidthLimitExceeded", "PriorRequestNotComplete", NULL};
  for (size_t i = 0; code && codes[i]; i++)
    if (!strcmp(code, codes[i])) return 1;
  return 0;
}
