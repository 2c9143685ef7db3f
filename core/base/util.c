/* util.c - small helpers: buffers, durations, suggestions, time, files. */
#include "base/base.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <openssl/evp.h>

static void oom(void) {
  fputs("engine: out of memory\n", stderr);
  abort();
}

void *eng__xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) oom();
  return p;
}

void *eng__xcalloc(size_t n, size_t m) {
  void *p = calloc(n ? n : 1, m ? m : 1);
  if (!p) oom();
  return p;
}

void *eng__xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) oom();
  return q;
}

char *eng__xstrdup(const char *s) {
  if (!s) return NULL;
  char *d = strdup(s);
  if (!d) oom();
  return d;
}

char *eng__xstrndup(const char *s, size_t n) {
  char *d = eng__xmalloc(n + 1);
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

char *eng__asprintf(const char *fmt, ...) {
  eng__buf b = {0};
  va_list ap;
  va_start(ap, fmt);
  eng__buf_vaddf(&b, fmt, ap);
  va_end(ap);
  return eng__buf_steal(&b);
}

static void buf_grow(eng__buf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra + 1) cap *= 2;
  b->data = eng__xrealloc(b->data, cap);
  b->cap = cap;
}

void eng__buf_add(eng__buf *b, const void *p, size_t n) {
  buf_grow(b, n);
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void eng__buf_adds(eng__buf *b, const char *s) { eng__buf_add(b, s, strlen(s)); }

void eng__buf_vaddf(eng__buf *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) return;
  buf_grow(b, (size_t)n);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  b->len += (size_t)n;
}

void eng__buf_addf(eng__buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  eng__buf_vaddf(b, fmt, ap);
  va_end(ap);
}

void eng__buf_add_xml(eng__buf *b, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
    case '<': eng__buf_adds(b, "&lt;"); break;
    case '>': eng__buf_adds(b, "&gt;"); break;
    case '&': eng__buf_adds(b, "&amp;"); break;
    case '"': eng__buf_adds(b, "&quot;"); break;
    default:
      if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t') eng__buf_adds(b, "?");
      else eng__buf_add(b, s, 1);
    }
  }
}

char *eng__buf_steal(eng__buf *b) {
  char *s = b->data ? b->data : eng__xstrdup("");
  b->data = NULL;
  b->len = b->cap = 0;
  return s;
}

void eng__buf_free(eng__buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

int eng__parse_duration(const char *s, int64_t *ms) {
  if (!s || !*s) return -1;
  const char *p = s;
  int64_t total = 0;
  int parts = 0;
  while (*p) {
    if (!isdigit((unsigned char)*p) && *p != '.') return -1;
    char *end;
    errno = 0;
    double v = strtod(p, &end);
    if (end == p || errno || v < 0) return -1;
    p = end;
    double mult;
    if (!*p && parts == 0) mult = 1000; /* bare number: seconds */
    else if (strncmp(p, "ms", 2) == 0) { mult = 1; p += 2; }
    else if (*p == 's') { mult = 1000; p++; }
    else if (*p == 'm') { mult = 60000; p++; }
    else if (*p == 'h') { mult = 3600000; p++; }
    else if (*p == 'd') { mult = ENG__DAY_MS; p++; }
    else return -1;
    double add = v * mult;
    /* at most ENG__DURATION_MAX_MS in all: beyond, int64 would wrap */
    if (add > (double)ENG__DURATION_MAX_MS ||
        (double)total + add > (double)ENG__DURATION_MAX_MS)
      return -1;
    total += (int64_t)(add + 0.5);
    parts++;
  }
  *ms = total;
  return 0;
}

/* n decimal digits at *p, advancing it; -1 when they are not there. */
static int digits(const char **p, int n) {
  int v = 0;
  for (int i = 0; i < n; i++, (*p)++) {
    if (!isdigit((unsigned char)**p)) return -1;
    v = v * 10 + (**p - '0');
  }
  return v;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

int eng__parse_timestamp(const char *s, int64_t *ms, char *why, size_t n) {
  static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const char *p = s;
  int y, mo, d, h = 0, mi = 0, se = 0, frac = 0;
#define BAD(...) do { snprintf(why, n, __VA_ARGS__); return -1; } while (0)
  if (!s || !*s) BAD("it is empty");
  if ((y = digits(&p, 4)) < 0 || *p++ != '-' || (mo = digits(&p, 2)) < 0 ||
      *p++ != '-' || (d = digits(&p, 2)) < 0)
    BAD("it does not start with a date YYYY-MM-DD");
  if (mo < 1 || mo > 12) BAD("month %02d does not exist", mo);
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap))
    BAD("day %04d-%02d-%02d does not exist", y, mo, d);
  if (*p == 'T' || *p == 't' || (*p == ' ' && isdigit((unsigned char)p[1]))) {
    p++;
    if ((h = digits(&p, 2)) < 0 || *p++ != ':' || (mi = digits(&p, 2)) < 0)
      BAD("the time after the date is not HH:MM");
    if (*p == ':') {
      p++;
      if ((se = digits(&p, 2)) < 0) BAD("the seconds are not two digits");
      if (*p == '.' || *p == ',') {
        p++;
        if (!isdigit((unsigned char)*p)) BAD("a fraction of a second has no digits");
        int k = 0;
        for (; isdigit((unsigned char)*p); k++, p++)
          if (k < 3) frac = frac * 10 + (*p - '0');
        for (; k < 3; k++) frac *= 10; /* to milliseconds */
      }
    }
    if (h > 23 || mi > 59 || se > 60) BAD("%02d:%02d:%02d is not a time of day", h, mi, se);
  }
  int64_t off = 0;
  if (*p == 'Z' || *p == 'z') p++;
  else if (*p == '+' || *p == '-') {
    int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
    if ((oh = digits(&p, 2)) < 0) BAD("the offset is not +HH:MM");
    if (*p == ':') p++;
    if (isdigit((unsigned char)*p) && (om = digits(&p, 2)) < 0) BAD("the offset is not +HH:MM");
    if (oh > 23 || om > 59) BAD("offset %02d:%02d is out of range", oh, om);
    off = sign * ((int64_t)oh * 60 + om) * 60000;
  }
  if (*p) BAD("'%s' after the time is not understood", p);
#undef BAD
  *ms = (days_from_civil(y, mo, d) * 86400 + (int64_t)h * 3600 + mi * 60 + se) * 1000 + frac - off;
  return 0;
}

const char *eng__fmt_duration(int64_t ms, char *buf, size_t n) {
  if (ms < 0) ms = 0;
  if (ms < 1000) snprintf(buf, n, "%dms", (int)ms);
  else if (ms < 60000) snprintf(buf, n, "%.1fs", (double)ms / 1000.0);
  else if (ms < 3600000)
    snprintf(buf, n, "%dm%02ds", (int)(ms / 60000), (int)(ms / 1000 % 60));
  else
    snprintf(buf, n, "%dh%02dm", (int)(ms / 3600000), (int)(ms / 60000 % 60));
  return buf;
}

const char *eng__fmt_bytes(int64_t bytes, char *buf, size_t n) {
  static const char *units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = (double)bytes;
  int u = 0;
  while (v >= 1000.0 && u < 4) { v /= 1000.0; u++; }
  if (u == 0) snprintf(buf, n, "%lld B", (long long)bytes);
  else snprintf(buf, n, "%.1f %s", v, units[u]);
  return buf;
}

/* Words longer than this are not compared (the table is on the stack). */
#define EDIT_MAX 64

size_t eng__edit_distance(const char *a, const char *b) {
  /* Damerau-Levenshtein (optimal string alignment), case-insensitive. */
  size_t la = strlen(a), lb = strlen(b);
  if (la > EDIT_MAX || lb > EDIT_MAX) return (size_t)-1;
  size_t d[EDIT_MAX + 1][EDIT_MAX + 1];
  for (size_t i = 0; i <= la; i++) d[i][0] = i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = j;
  for (size_t i = 1; i <= la; i++) {
    for (size_t j = 1; j <= lb; j++) {
      int ca = tolower((unsigned char)a[i - 1]);
      int cb = tolower((unsigned char)b[j - 1]);
      size_t v = d[i - 1][j - 1] + (ca == cb ? 0 : 1);
      if (d[i - 1][j] + 1 < v) v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
      if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
          tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < v)
        v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
    }
  }
  return d[la][lb];
}

const char *eng__suggest(const char *word, const char *const *cands,
                         size_t n) {
  const char *best = NULL;
  size_t bestd = (size_t)-1;
  size_t len = strlen(word);
  size_t limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
  for (size_t i = 0; i < n; i++) {
    if (!cands[i]) continue;
    size_t d = eng__edit_distance(word, cands[i]);
    if (d < bestd) { bestd = d; best = cands[i]; }
  }
  return bestd <= limit ? best : NULL;
}

static int64_t real_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t (*clock_fn)(void) = real_clock;

int64_t eng__now_ms(void) { return clock_fn(); }

void eng__set_clock(int64_t (*fn)(void)) { clock_fn = fn ? fn : real_clock; }

const char *eng__fmt_time(int64_t epoch_ms, char *buf, size_t n) {
  time_t t = (time_t)(epoch_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           (int)(epoch_ms % 1000));
  return buf;
}

char *eng__read_file(const char *path, size_t max, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  eng__buf b = {0};
  char tmp[65536];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
    if (b.len + n > max) {
      fclose(f);
      eng__buf_free(&b);
      errno = EFBIG;
      return NULL;
    }
    eng__buf_add(&b, tmp, n);
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    eng__buf_free(&b);
    errno = EIO;
    return NULL;
  }
  if (len) *len = b.len;
  return eng__buf_steal(&b);
}

char *eng__tmp_path(const char *name, bool unique) {
  const char *tmp = getenv("TMPDIR");
  return eng__asprintf("%s/%s%s", tmp && *tmp ? tmp : "/tmp", name,
                       unique ? "-XXXXXX" : "");
}

int eng__mkdir_p(const char *path, int mode) {
  char *p = eng__xstrdup(path);
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(p, (mode_t)mode) != 0 && errno != EEXIST) { free(p); return -1; }
    *s = '/';
  }
  int rc = mkdir(p, (mode_t)mode);
  free(p);
  return rc != 0 && errno != EEXIST ? -1 : 0;
}

bool eng__glob(const char *pattern, const char *s) {
  return fnmatch(pattern, s, 0) == 0;
}

void eng__sha256_hex(const void *p, size_t n, char out[ENG__SHA256_HEX]) {
  unsigned char md[32];
  unsigned int mdlen = 0;
  EVP_Digest(p, n, md, &mdlen, EVP_sha256(), NULL);
  for (unsigned i = 0; i < 32; i++) sprintf(out + 2 * i, "%02x", md[i]);
  out[64] = '\0';
}
