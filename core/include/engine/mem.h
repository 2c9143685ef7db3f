/*
 * engine/mem.h - memory and text buffers for plugin authors (header only,
 * no dependency beyond the C library).
 *
 * A plugin runs inside the engine's process: when memory runs out there is
 * no sensible way on (the loop, the journal and the audit log all need
 * memory too), so these allocators abort instead of returning NULL, and a
 * call site never needs a check it could forget. Every plugin shipped with
 * the engine allocates through them.
 *
 *   eng_xmalloc(n), eng_xcalloc(n, m), eng_xrealloc(p, n)
 *                      never NULL (n == 0 allocates one byte)
 *   eng_xstrdup(s)     a copy; NULL stays NULL
 *   eng_xstrndup(s, n) at most n bytes of s, NUL-terminated
 *   eng_asprintf(fmt, ...), eng_vasprintf(fmt, ap)
 *                      a formatted string, never NULL
 *   eng_strbuf         a growing NUL-terminated buffer: eng_strbuf_add(b,
 *                      p, n), _adds(b, s), _addf(b, fmt, ...), _steal(b)
 *                      (the text, malloc'd; the buffer is empty again),
 *                      _free(b). Zero-initialize it: eng_strbuf b = {0};
 *   eng_fmt_real(v, buf, n)
 *                      a double as the shortest text that reads back as
 *                      the same double (16.8, not 16.800000000000001)
 *   eng_json_short_reals(text)
 *                      the same for every number with a fraction or an
 *                      exponent in a JSON text (json_dumps writes 17
 *                      digits), in place: it only gets shorter
 * Everything returned is freed with free().
 */
#ifndef ENGINE_MEM_H
#define ENGINE_MEM_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define ENG_MEM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define ENG_MEM_PRINTF(f, a)
#endif

static inline void *eng_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) abort();
  return p;
}

static inline void *eng_xcalloc(size_t n, size_t m) {
  void *p = calloc(n ? n : 1, m ? m : 1);
  if (!p) abort();
  return p;
}

static inline void *eng_xrealloc(void *old, size_t n) {
  void *p = realloc(old, n ? n : 1);
  if (!p) abort();
  return p;
}

static inline char *eng_xstrndup(const char *s, size_t n) {
  size_t len = 0;
  while (len < n && s[len]) len++;
  char *d = (char *)eng_xmalloc(len + 1);
  memcpy(d, s, len);
  d[len] = '\0';
  return d;
}

static inline char *eng_xstrdup(const char *s) {
  return s ? eng_xstrndup(s, strlen(s)) : NULL;
}

static inline char *eng_vasprintf(const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap2);
  va_end(ap2);
  if (n < 0) n = 0;
  char *s = (char *)eng_xmalloc((size_t)n + 1);
  if (n) vsnprintf(s, (size_t)n + 1, fmt, ap);
  else s[0] = '\0';
  return s;
}

static inline char *eng_asprintf(const char *fmt, ...) ENG_MEM_PRINTF(1, 2);
static inline char *eng_asprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = eng_vasprintf(fmt, ap);
  va_end(ap);
  return s;
}

typedef struct eng_strbuf {
  char *data; /* NUL-terminated once anything was added; NULL before */
  size_t len, cap;
} eng_strbuf;

static inline void eng_strbuf_add(eng_strbuf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    b->data = (char *)eng_xrealloc(b->data, cap);
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static inline void eng_strbuf_adds(eng_strbuf *b, const char *s) {
  eng_strbuf_add(b, s, strlen(s));
}

static inline void eng_strbuf_addf(eng_strbuf *b, const char *fmt, ...)
    ENG_MEM_PRINTF(2, 3);
static inline void eng_strbuf_addf(eng_strbuf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = eng_vasprintf(fmt, ap);
  va_end(ap);
  eng_strbuf_adds(b, s);
  free(s);
}

static inline char *eng_strbuf_steal(eng_strbuf *b) {
  char *s = b->data ? b->data : eng_xstrdup("");
  b->data = NULL;
  b->len = b->cap = 0;
  return s;
}

static inline void eng_strbuf_free(eng_strbuf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* The shortest "%.Ng" (N from 1 to 17) that strtod reads back as v; 17
 * digits always do. Returns buf. */
static inline char *eng_fmt_real(double v, char *buf, size_t n) {
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, n, "%.*g", prec, v);
    if (prec == 17 || strtod(buf, NULL) == v) break;
  }
  return buf;
}

static inline void eng_json_short_reals(char *text) {
  char *w = text;
  const char *r = text;
  while (*r) {
    if (*r == '"') { /* a string: copied as it is */
      *w++ = *r++;
      while (*r && *r != '"') {
        if (*r == '\\' && r[1]) *w++ = *r++;
        *w++ = *r++;
      }
      if (*r) *w++ = *r++;
      continue;
    }
    if (*r == '-' || (*r >= '0' && *r <= '9')) { /* a number */
      size_t len = strspn(r, "0123456789+-.eE");
      char tok[64], best[40];
      if (len < sizeof tok) {
        memcpy(tok, r, len);
        tok[len] = '\0';
      }
      if (len < sizeof tok && strpbrk(tok, ".eE")) {
        eng_fmt_real(strtod(tok, NULL), best, sizeof best);
        /* still a real for a JSON reader: 3.0 stays 3.0 */
        if (!strpbrk(best, ".eEni")) strcat(best, ".0");
        if (strlen(best) < len) {
          memmove(w, best, strlen(best));
          w += strlen(best);
          r += len;
          continue;
        }
      }
      memmove(w, r, len);
      w += len;
      r += len;
      continue;
    }
    *w++ = *r++;
  }
  *w = '\0';
}

#endif
