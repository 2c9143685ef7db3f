/*
 * aws_util.c - buffers, allocation, encodings, hashes and times for the AWS
 * layer.
 */
#include "aws.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

/* ---- memory and buffers ------------------------------------------------- */

void *aws_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) abort();
  return p;
}

void *aws_xcalloc(size_t n, size_t m) {
  void *p = calloc(n ? n : 1, m ? m : 1);
  if (!p) abort();
  return p;
}

char *aws_xstrdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = aws_xmalloc(n);
  memcpy(d, s, n);
  return d;
}

char *aws_asprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return aws_xstrdup("");
  char *d = aws_xmalloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(d, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return d;
}

void aws_buf_add(aws_buf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) abort();
    b->data = d;
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void aws_buf_adds(aws_buf *b, const char *s) { aws_buf_add(b, s, strlen(s)); }

void aws_buf_addf(aws_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n <= 0) return;
  char *t = aws_xmalloc((size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(t, (size_t)n + 1, fmt, ap);
  va_end(ap);
  aws_buf_add(b, t, (size_t)n);
  free(t);
}

void aws_buf_free(aws_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ---- encodings, hashes, time ------------------------------------------------ */

char *aws_uri_encode(const char *s, int keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s);
  char *o = aws_xmalloc(n * 3 + 1), *p = o;
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (isalnum(*c) || *c == '-' || *c == '_' || *c == '.' || *c == '~' ||
        (keep_slash && *c == '/')) {
      *p++ = (char)*c;
    } else {
      *p++ = '%';
      *p++ = hex[*c >> 4];
      *p++ = hex[*c & 15];
    }
  }
  *p = '\0';
  return o;
}

void aws_hex(const unsigned char *d, size_t n, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = hex[d[i] >> 4];
    out[2 * i + 1] = hex[d[i] & 15];
  }
  out[2 * n] = '\0';
}

void aws_sha256_hex(const void *p, size_t n, char out[65]) {
  unsigned char md[32];
  unsigned int mdlen = 0;
  EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL);
  aws_hex(md, 32, out);
}

void aws_hex_to_b64(const char hex[65], char out[45]) {
  unsigned char md[32];
  for (int i = 0; i < 32; i++) {
    char b[3] = {hex[2 * i], hex[2 * i + 1], '\0'};
    md[i] = (unsigned char)strtoul(b, NULL, 16);
  }
  EVP_EncodeBlock((unsigned char *)out, md, 32); /* 44 characters + NUL */
}

int aws_b64_to_hex(const char *b64, char hex[65]) {
  unsigned char md[48];
  size_t n = strlen(b64);
  if (n != 44 || b64[43] != '=') return -1; /* 32 bytes: 43 chars + "=" */
  if (EVP_DecodeBlock(md, (const unsigned char *)b64, 44) != 33) return -1;
  aws_hex(md, 32, hex); /* 33: the padding's zero byte counted */
  return 0;
}

int aws_is_sha256(const char *s) {
  if (!s) return 0;
  size_t i = 0;
  for (; s[i]; i++)
    if (!isxdigit((unsigned char)s[i])) return 0;
  return i == 64;
}

int64_t aws_parse_time(const char *s) {
  if (!s || !*s) return -1;
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!e) {
    memset(&tm, 0, sizeof tm);
    e = strptime(s, "%a, %d %b %Y %H:%M:%S", &tm);
    return e ? (int64_t)timegm(&tm) : -1;
  }
  int64_t t = (int64_t)timegm(&tm);
  if (*e == '.')
    for (e++; isdigit((unsigned char)*e); e++) {
    }
  if ((*e == '+' || *e == '-') && isdigit((unsigned char)e[1]) &&
      isdigit((unsigned char)e[2]) && e[3] == ':' &&
      isdigit((unsigned char)e[4]) && isdigit((unsigned char)e[5])) {
    int off = ((e[1] - '0') * 10 + (e[2] - '0')) * 3600 +
              ((e[4] - '0') * 10 + (e[5] - '0')) * 60;
    t += *e == '+' ? -off : off;
  }
  return t;
}

void aws_format_time(int64_t t, char out[32]) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
