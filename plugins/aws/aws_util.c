/*
 * aws_util.c - encodings, hashes and times for the AWS layer (allocation
 * and text buffers are <engine/mem.h>'s).
 */
#include "aws.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

/* ---- encodings, hashes, time ------------------------------------------------ */

char *aws_uri_encode(const char *s, int keep_slash) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = strlen(s);
  char *o = eng_xmalloc(n * 3 + 1), *p = o;
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
