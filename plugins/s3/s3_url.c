/*
 * s3_url.c - s3:// URLs and the query naming a multipart upload; the host
 * table. Endpoints, regions and credentials come from the AWS layer
 * (plugins/aws/aws_cfg.c) for the service "s3": AWS_ENDPOINT_URL_S3 before
 * AWS_ENDPOINT_URL. Custom endpoints use path-style addressing
 * (http://host:port/bucket/key); AWS's own uses virtual-host style
 * (https://bucket.s3.REGION.amazonaws.com/key) unless the bucket name has a
 * dot (TLS certificates would not match).
 */
#include "s3_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The host's services, set by the plugin's init(). */
const eng_host *s3_host;

char *s3_upload_query(const char *upload_id) {
  char *uid = aws_uri_encode(upload_id, 0);
  char *q = aws_asprintf("uploadId=%s", uid);
  free(uid);
  return q;
}

/* ---- s3:// URLs ---------------------------------------------------------------- */

int s3_url_parse(const char *url, char **bucket, char **key,
                 int allow_empty_key, char *err, size_t errlen) {
  *bucket = *key = NULL;
  if (!url || strncmp(url, "s3://", 5) != 0) {
    snprintf(err, errlen, "'%s' is not an s3:// URL (s3://BUCKET/KEY)",
             url ? url : "");
    return ENG_ERR_INVALID;
  }
  const char *b = url + 5;
  const char *slash = strchr(b, '/');
  size_t blen = slash ? (size_t)(slash - b) : strlen(b);
  if (blen == 0) {
    snprintf(err, errlen, "'%s' names no bucket (s3://BUCKET/KEY)", url);
    return ENG_ERR_INVALID;
  }
  for (size_t i = 0; i < blen; i++) {
    unsigned char c = (unsigned char)b[i];
    if (!(islower(c) || isdigit(c) || c == '-' || c == '.' || c == '_' ||
          isupper(c))) {
      snprintf(err, errlen, "'%s': invalid bucket name", url);
      return ENG_ERR_INVALID;
    }
  }
  const char *k = slash ? slash + 1 : "";
  if (!*k && !allow_empty_key) {
    snprintf(err, errlen, "'%s' names no object key (s3://BUCKET/KEY)", url);
    return ENG_ERR_INVALID;
  }
  *bucket = aws_xmalloc(blen + 1);
  memcpy(*bucket, b, blen);
  (*bucket)[blen] = '\0';
  *key = aws_xstrdup(k);
  return ENG_OK;
}
