/*
 * pg_util.c - small utilities of the postgres plugin (also compiled into
 * the prisma plugin): the host table, allocation, strings, buffers,
 * parameters. The bottom of the plugin: it calls nothing else of it.
 */
#include "pg_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The host's services, set by the plugin's init(). */
const eng_host *pg_host;

/* ---- utilities ---------------------------------------------------------- */

void *pg_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) abort();
  return p;
}

void *pg_xcalloc(size_t n, size_t m) {
  void *p = calloc(n ? n : 1, m ? m : 1);
  if (!p) abort();
  return p;
}

char *pg_strdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = pg_xmalloc(n);
  memcpy(d, s, n);
  return d;
}

char *pg_asprintf(const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) n = 0;
  char *s = pg_xmalloc((size_t)n + 1);
  vsnprintf(s, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  return s;
}

void pg_now_rfc3339(char buf[32]) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, 32 - n, ".%03dZ", (int)((ts.tv_nsec / 1000000) % 1000));
}

int64_t pg_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *pg_chomp(char *s) {
  if (!s) return s;
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
    s[--n] = '\0';
  return s;
}

void pg_buf_add(pg_buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) abort();
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void pg_buf_adds(pg_buf *b, const char *s) { pg_buf_add(b, s, strlen(s)); }

void pg_buf_addf(pg_buf *b, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n > 0) {
    char *tmp = pg_xmalloc((size_t)n + 1);
    vsnprintf(tmp, (size_t)n + 1, fmt, ap2);
    pg_buf_add(b, tmp, (size_t)n);
    free(tmp);
  }
  va_end(ap2);
}

void pg_buf_free(pg_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ---- parameters --------------------------------------------------------- */

const char *pg_pstr(const json_t *p, const char *name) {
  json_t *v = json_object_get(p, name);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

long long pg_pint(const json_t *p, const char *name, long long def) {
  json_t *v = json_object_get(p, name);
  if (json_is_integer(v)) return json_integer_value(v);
  if (json_is_real(v)) return (long long)json_real_value(v);
  return def;
}

double pg_pnum(const json_t *p, const char *name, double def) {
  json_t *v = json_object_get(p, name);
  return json_is_number(v) ? json_number_value(v) : def;
}

int pg_pbool(const json_t *p, const char *name, int def) {
  json_t *v = json_object_get(p, name);
  return json_is_boolean(v) ? json_is_true(v) : def;
}

/* compress: an integer 0-9 (pg_dump --compress), "0".."9", "none", or
 * "zstd" / "zstd:LEVEL" (1-19: the engine compresses the stream). */
/* The forms of `compress`: 0-9 (pg_dump's own), "none", "zstd" or
 * "zstd:LEVEL" (1-19). Pure: the parameter's check and the action share
 * it. -1 with the accepted forms in err. */
int pg_compress_parse(const json_t *v, int *level, int *zstd, char *err,
                      size_t errlen) {
  *level = -1;
  *zstd = 0;
  if (!v || json_is_null(v)) return 0;
  long long n = -1;
  const char *s = json_is_string(v) ? json_string_value(v) : NULL;
  if (json_is_integer(v)) {
    n = json_integer_value(v);
  } else if (s) {
    char *end = NULL;
    if (!*s) return 0;
    if (!strcmp(s, "none")) {
      n = 0;
    } else if (!strncmp(s, "zstd", 4) && (s[4] == '\0' || s[4] == ':')) {
      long lv = 3;
      if (s[4] == ':') {
        lv = strtol(s + 5, &end, 10);
        if (end == s + 5 || *end || lv < 1 || lv > 19) lv = -1;
      }
      if (lv < 1) {
        snprintf(err, errlen, "compress '%s': the zstd level must be 1-19 "
                              "(e.g. zstd:3)", s);
        return -1;
      }
      *zstd = (int)lv;
      return 0;
    } else {
      n = strtoll(s, &end, 10);
      if (end == s || *end) n = -2;
    }
  } else {
    n = -2;
  }
  if (n < 0 || n > 9) {
    char got[64] = "";
    if (s) snprintf(got, sizeof got, "'%.40s'", s);
    else if (json_is_integer(v)) snprintf(got, sizeof got, "%lld", n);
    else snprintf(got, sizeof got, "a value of another type");
    snprintf(err, errlen,
             "compress must be 0-9 (pg_dump's own compression), none, zstd "
             "or zstd:LEVEL with LEVEL 1-19 (the engine compresses the "
             "stream); got %s%s", got,
             s && !strncmp(s, "gz", 2) ? " (gzip is not supported: use zstd)" : "");
    return -1;
  }
  *level = (int)n;
  return 0;
}

int pg_check_compress(const json_t *v, char *err, size_t errlen) {
  int level, zstd;
  return pg_compress_parse(v, &level, &zstd, err, errlen) == 0 ? 0 : 1;
}

int pg_parse_compress(eng_call *call, const json_t *v, int *level, int *zstd) {
  char err[256];
  if (pg_compress_parse(v, level, zstd, err, sizeof err) == 0) return ENG_OK;
  pg_host->fail(call, "%s", err);
  return ENG_ERR_INVALID;
}

