/* libFuzzer: an S3 answer as the s3 plugin reads it (plugins/s3/
 * s3_answer.c): header lines, the error an answer carries under every
 * kind of status, and ListObjectsV2 pages with their keys, sizes and
 * continuation token; the bytes also go through the URL encodings
 * (s3_url.c) as a key and a query. */
#include <stdlib.h>
#include <string.h>

#include "s3_int.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static void each(void *ud, const aws_xml *c) {
  size_t *n = ud;
  const char *sz = aws_xml_text(c, "Size");
  if (sz) (void)strtoll(sz, NULL, 10);
  *n += strlen(aws_xml_text(c, "Key"));
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  const char *buf = (const char *)data;
  static const long statuses[] = {200, 204, 301, 400, 403, 404, 409, 412,
                                  500, 503};
  aws_cfg cfg = {.service = "s3", .endpoint = "http://127.0.0.1:9000",
                 .custom = 1, .region = "us-east-1", .akid = "AKIDFUZZ",
                 .secret = "fuzz-secret"};
  char msg[2048];
  /* the server's own words are quoted: only a secret it did not send
   * (literally or as XML character references) must never show */
  int echoed = memchr(buf, '&', size) ||
               memmem(buf, size, cfg.secret, strlen(cfg.secret));
  for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++) {
    s3_answer a = {.cfg = &cfg, .method = "GET", .bucket = "b", .key = "k",
                   .rc = ENG_OK, .status = statuses[i], .curl_err = "",
                   .body = buf, .body_len = size, .tries = 1};
    msg[0] = '\0'; /* an answer that is fine leaves it as it is */
    s3_answer_check(&a, msg, sizeof msg);
    if (!echoed && strstr(msg, cfg.secret)) abort(); /* never the secret */
  }
  size_t keys = 0;
  char *next = NULL;
  s3_list_page(buf, size, each, &keys, &next);
  free(next);
  for (const char *p = buf, *e = buf + size; p < e;) {
    const char *nl = memchr(p, '\n', (size_t)(e - p));
    size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(e - p);
    size_t nlen, vlen;
    const char *v;
    if (s3_header_split(p, len, &nlen, &v, &vlen) > 0 &&
        s3_header_is(p, nlen, "etag")) {
      char *etag = NULL;
      s3_header_dup(&etag, v, vlen);
      free(etag);
      (void)s3_header_int(v, vlen);
    }
    p += len;
  }
  char *s = malloc(size + 1);
  if (!s) return 0;
  memcpy(s, buf, size);
  s[size] = '\0';
  if (!memchr(s, '\0', size)) {
    char *u = s3_build_url(&cfg, "b", s, s3_lenient_differs(s, s) ? s : NULL,
                           1);
    free(u);
    char *q = s3_list_query(s, s);
    free(q);
  }
  free(s);
  return 0;
}
