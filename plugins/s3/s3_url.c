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
  char *q = eng_asprintf("uploadId=%s", uid);
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
  *bucket = eng_xmalloc(blen + 1);
  memcpy(*bucket, b, blen);
  (*bucket)[blen] = '\0';
  *key = eng_xstrdup(k);
  return ENG_OK;
}

/* ---- request URLs -------------------------------------------------------------- */

/* moto (werkzeug) re-quotes the URL before it checks the signature, leaving
 * these characters unencoded: in paths the RFC 3986 sub-delimiters and
 * ':' '@'; in query values '/' and most sub-delimiters, but not '+', '='
 * or '&'. */
static const char PATH_RAW[] = "!$&'()*+,;=:@";
static const char QUERY_RAW[] = "/!$'()*,;:@";

/* Decode the %XX escapes of the characters in `set`. Caller frees. */
static char *unescape_set(const char *s, const char *set) {
  eng_strbuf b = {0};
  eng_strbuf_adds(&b, "");
  for (const char *p = s; *p; p++) {
    if (p[0] == '%' && p[1] && p[2]) {
      char hex[3] = {p[1], p[2], 0};
      char c = (char)strtol(hex, NULL, 16);
      if (c && strchr(set, c)) {
        eng_strbuf_add(&b, &c, 1);
        p += 2;
        continue;
      }
    }
    eng_strbuf_add(&b, p, 1);
  }
  return b.data;
}

int s3_lenient_differs(const char *key, const char *query) {
  char *k = aws_uri_encode(key ? key : "", 1);
  char *a = unescape_set(k, PATH_RAW);
  int d = strcmp(a, k) != 0;
  free(a);
  free(k);
  if (!d && query) {
    char *q = unescape_set(query, QUERY_RAW);
    d = strcmp(q, query) != 0;
    free(q);
  }
  return d;
}

/* The key for the path: strict (every byte but unreserved ones and '/'
 * %-encoded, as AWS canonicalizes), or lenient (as moto canonicalizes). */
static char *encode_key(const char *key, int lenient) {
  char *strict = aws_uri_encode(key, 1);
  if (!lenient) return strict;
  char *l = unescape_set(strict, PATH_RAW);
  free(strict);
  return l;
}

char *s3_build_url(const aws_cfg *c, const char *bucket, const char *key,
                   const char *query, int lenient) {
  char *k = encode_key(key ? key : "", lenient);
  eng_strbuf u = {0};
  int vhost = !c->custom && !strchr(bucket, '.');
  if (vhost) {
    const char *p = strstr(c->endpoint, "://");
    eng_strbuf_add(&u, c->endpoint, (size_t)(p + 3 - c->endpoint));
    eng_strbuf_addf(&u, "%s.%s/%s", bucket, p + 3, k);
  } else {
    eng_strbuf_addf(&u, "%s/%s", c->endpoint, bucket);
    if (*k) eng_strbuf_addf(&u, "/%s", k);
  }
  if (query && lenient) {
    char *q = unescape_set(query, QUERY_RAW);
    eng_strbuf_addf(&u, "?%s", q);
    free(q);
  } else if (query) {
    eng_strbuf_addf(&u, "?%s", query);
  }
  free(k);
  return u.data;
}

char *s3_list_query(const char *prefix, const char *token) {
  eng_strbuf q = {0};
  if (token) {
    char *t = aws_uri_encode(token, 0);
    eng_strbuf_addf(&q, "continuation-token=%s&", t);
    free(t);
  }
  char *pfx = aws_uri_encode(prefix, 0);
  eng_strbuf_adds(&q, "list-type=2&");
  const char *mk = getenv("ENGINE_S3_TEST_PAGE_SIZE"); /* tests: paging */
  if (mk && *mk) eng_strbuf_addf(&q, "max-keys=%d&", atoi(mk));
  eng_strbuf_addf(&q, "prefix=%s", pfx);
  free(pfx);
  return q.data;
}
