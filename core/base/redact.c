/*
 * redact.c - secrets never reach a log, a report or an error message.
 *
 * Two layers:
 *  - registered values (secret params, what plugins register): every
 *    occurrence is replaced by "***", longest value first so that a secret
 *    containing another one is masked whole;
 *  - generic shapes, masked even when nobody registered them: the password
 *    of a URL ("scheme://user:PASS@host"), "password=VALUE" in libpq
 *    key=value strings (and "PGPASSWORD=", "AWS_SECRET_ACCESS_KEY=", ...),
 *    Slack webhook paths and Slack tokens ("xoxb-...").
 *
 * Only libc here: this file is used by the process and HTTP layers and by
 * tests that do not link util.c.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/base.h"

#define MASK "***"
#define MIN_SECRET 3

struct eng__redactor {
  char **vals; /* sorted by length, longest first; unique */
  size_t *lens;
  size_t n, cap;
};

/* ---- a tiny growable string (util.c's eng__buf is not ours to use) ---- */

typedef struct rd_buf {
  char *p;
  size_t len, cap;
} rd_buf;

static void rd_add(rd_buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) abort();
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void rd_adds(rd_buf *b, const char *s) { rd_add(b, s, strlen(s)); }

static char *rd_steal(rd_buf *b) {
  if (!b->p) rd_add(b, "", 0);
  return b->p;
}

static char *rd_strndup(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (!p) abort();
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

/* ---- the registry ------------------------------------------------------ */

eng__redactor *eng__redactor_create(void) {
  eng__redactor *r = calloc(1, sizeof *r);
  if (!r) abort();
  return r;
}

void eng__redactor_destroy(eng__redactor *r) {
  if (!r) return;
  for (size_t i = 0; i < r->n; i++) free(r->vals[i]);
  free(r->vals);
  free(r->lens);
  free(r);
}

static void add_value(eng__redactor *r, const char *v, size_t n) {
  if (n < MIN_SECRET) return;
  size_t pos = r->n;
  for (size_t i = 0; i < r->n; i++) {
    if (r->lens[i] == n && memcmp(r->vals[i], v, n) == 0) return;
    if (r->lens[i] < n && pos == r->n) pos = i;
  }
  if (r->n == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 8;
    char **vals = realloc(r->vals, cap * sizeof *vals);
    if (!vals) abort();
    r->vals = vals;
    size_t *lens = realloc(r->lens, cap * sizeof *lens);
    if (!lens) abort();
    r->lens = lens;
    r->cap = cap;
  }
  memmove(r->vals + pos + 1, r->vals + pos, (r->n - pos) * sizeof *r->vals);
  memmove(r->lens + pos + 1, r->lens + pos, (r->n - pos) * sizeof *r->lens);
  r->vals[pos] = rd_strndup(v, n);
  r->lens[pos] = n;
  r->n++;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Register s[0..n) and, when it holds %XX escapes, its decoded form. */
static void add_with_decoded(eng__redactor *r, const char *s, size_t n) {
  add_value(r, s, n);
  if (!memchr(s, '%', n)) return;
  char *d = malloc(n + 1);
  if (!d) abort();
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    int hi, lo;
    if (s[i] == '%' && i + 2 < n &&
        (hi = hexval((unsigned char)s[i + 1])) >= 0 &&
        (lo = hexval((unsigned char)s[i + 2])) >= 0) {
      d[k++] = (char)(hi * 16 + lo);
      i += 2;
    } else {
      d[k++] = s[i];
    }
  }
  add_value(r, d, k);
  free(d);
}

/* Characters that end the authority part of a URL (or the URL itself). */
static int ends_authority(int c) {
  return c == '\0' || c == '/' || c == '?' || c == '#' || c == '"' ||
         c == '\'' || c == '<' || c == '>' || c == '`' ||
         isspace((unsigned char)c);
}

static int is_ident(int c) { return isalnum((unsigned char)c) || c == '_'; }

static int is_scheme_char(int c) {
  return isalnum((unsigned char)c) || c == '+' || c == '-' || c == '.';
}

/* At s[i] == "://" preceded by a scheme: find the password of the
 * authority. Returns 1 with [*ps, *pe) the password (non-empty). */
static int url_password(const char *s, size_t i, size_t *ps, size_t *pe) {
  if (i == 0 || !is_scheme_char((unsigned char)s[i - 1])) return 0;
  size_t a = i + 3, end = a, at = 0;
  int have_at = 0;
  while (!ends_authority((unsigned char)s[end])) {
    if (s[end] == '@') {
      at = end;
      have_at = 1;
    }
    end++;
  }
  if (!have_at) return 0;
  const char *colon = memchr(s + a, ':', at - a);
  if (!colon) return 0;
  size_t c = (size_t)(colon - s);
  if (c + 1 >= at) return 0;
  *ps = c + 1;
  *pe = at;
  return 1;
}

/* A PostgreSQL connection URL: what it names (user, server, port,
 * database) is what an operator must see to know what a step touches; only
 * its password is secret (and password-like query values, which the
 * generic pass masks). */
static int is_connection_url(const char *v) {
  static const char *const schemes[] = {"postgresql://", "postgres://", NULL};
  for (size_t i = 0; schemes[i]; i++)
    if (!strncasecmp(v, schemes[i], strlen(schemes[i])) && !strpbrk(v, " \t\n"))
      return 1;
  return 0;
}

void eng__redactor_add(eng__redactor *r, const char *value) {
  if (!r || !value) return;
  size_t n = strlen(value);
  if (!is_connection_url(value)) add_value(r, value, n);
  /* The password of every URL inside the value, raw and decoded. */
  for (const char *p = strstr(value, "://"); p; p = strstr(p + 3, "://")) {
    size_t ps, pe;
    if (url_password(value, (size_t)(p - value), &ps, &pe))
      add_with_decoded(r, value + ps, pe - ps);
  }
  /* A libpq key=value string given whole: its password. */
  for (const char *p = value; (p = strstr(p, "password")) != NULL; p++) {
    if (p > value && is_ident((unsigned char)p[-1])) continue;
    const char *q = p + 8;
    while (*q == ' ' || *q == '\t') q++;
    if (*q != '=') continue;
    q++;
    while (*q == ' ' || *q == '\t') q++;
    if (*q == '\'') {
      char *v = malloc(strlen(q) + 1);
      if (!v) abort();
      size_t k = 0;
      for (q++; *q && *q != '\''; q++) {
        if (*q == '\\' && q[1]) q++;
        v[k++] = *q;
      }
      add_value(r, v, k);
      free(v);
    } else {
      size_t k = 0;
      while (q[k] && !isspace((unsigned char)q[k])) k++;
      add_value(r, q, k);
    }
  }
}

/* ---- masking ----------------------------------------------------------- */

/* Pass 1: registered values. Every byte covered by an occurrence of any
 * value is masked, and each run of covered bytes becomes one "***": longest
 * values are tried first, and overlapping occurrences ("abcdef" and
 * "defghi" in "abcdefghi") leave no fragment of either behind. */
static char *mask_registered(const eng__redactor *r, const char *in) {
  rd_buf b = {0};
  size_t n = strlen(in), i = 0, lit = 0;
  while (i < n) {
    size_t end = i; /* end of the covered run starting at i */
    for (size_t j = i; j < n && j <= end; j++) {
      for (size_t k = 0; k < r->n; k++) {
        if (r->lens[k] <= n - j && in[j] == r->vals[k][0] &&
            memcmp(in + j, r->vals[k], r->lens[k]) == 0) {
          if (j + r->lens[k] > end) end = j + r->lens[k];
          break; /* longest first: shorter ones end earlier */
        }
      }
      if (end == i) break; /* nothing starts at i */
    }
    if (end == i) {
      i++;
      continue;
    }
    rd_add(&b, in + lit, i - lit);
    rd_adds(&b, MASK);
    lit = i = end;
  }
  rd_add(&b, in + lit, n - lit);
  return rd_steal(&b);
}

static int ieq_suffix(const char *s, size_t n, const char *suf) {
  size_t m = strlen(suf);
  if (n < m) return 0;
  return strncasecmp(s + n - m, suf, m) == 0;
}

/* Keys whose value is a secret in "KEY=VALUE" text. */
static int secret_key(const char *k, size_t n) {
  return ieq_suffix(k, n, "password") || ieq_suffix(k, n, "passwd") ||
         (n == 21 && strncasecmp(k, "aws_secret_access_key", n) == 0) ||
         (n == 17 && strncasecmp(k, "aws_session_token", n) == 0);
}

/* End of a "KEY=VALUE" value starting at s[i]. In a URL query (key after
 * '?' or '&') the value stops at '&' or '#'; in libpq text at blanks. */
static size_t value_end(const char *s, size_t i, int in_query) {
  if (s[i] == '\'') { /* libpq quoting: \' and \\ escape */
    size_t j = i + 1;
    while (s[j] && s[j] != '\'') {
      if (s[j] == '\\' && s[j + 1]) j++;
      j++;
    }
    return s[j] ? j + 1 : j;
  }
  size_t j = i;
  while (s[j] && !isspace((unsigned char)s[j]) && s[j] != '"' &&
         !(in_query && (s[j] == '&' || s[j] == '#')))
    j++;
  return j;
}

static const char SLACK_HOOK[] = "hooks.slack.com/services/";

/* Slack tokens: xoxb-, xoxp-, xoxa-, xoxo-, xoxs-, xoxr-, xapp-. */
static size_t slack_token(const char *s, size_t i) {
  if (i > 0 && is_ident((unsigned char)s[i - 1])) return 0;
  if (!((strncmp(s + i, "xox", 3) == 0 && s[i + 3] &&
         strchr("abposr", s[i + 3]) && s[i + 4] == '-') ||
        strncmp(s + i, "xapp-", 5) == 0))
    return 0;
  size_t j = i + 5;
  while (isalnum((unsigned char)s[j]) || s[j] == '-') j++;
  return j - i >= 10 ? j - i : 0;
}

/* Pass 2: generic shapes. */
static char *mask_generic(const char *s) {
  rd_buf b = {0};
  size_t lit = 0, i = 0;
  while (s[i]) {
    size_t ps, pe, n;
    if (s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/' &&
        url_password(s, i, &ps, &pe)) {
      rd_add(&b, s + lit, ps - lit);
      rd_adds(&b, MASK);
      lit = i = pe;
      continue;
    }
    if ((s[i] == 'h' || s[i] == 'H') &&
        strncasecmp(s + i, SLACK_HOOK, sizeof SLACK_HOOK - 1) == 0) {
      size_t a = i + sizeof SLACK_HOOK - 1, e = a;
      while (!isspace((unsigned char)s[e]) && s[e] && s[e] != '"' &&
             s[e] != '\'' && s[e] != '>' && s[e] != '`')
        e++;
      rd_add(&b, s + lit, a - lit);
      if (e > a) rd_adds(&b, MASK);
      lit = i = e;
      continue;
    }
    if ((n = slack_token(s, i)) > 0) {
      rd_add(&b, s + lit, i - lit);
      rd_adds(&b, MASK);
      lit = i = i + n;
      continue;
    }
    if (is_ident((unsigned char)s[i]) &&
        (i == 0 || !is_ident((unsigned char)s[i - 1]))) {
      size_t k = i;
      while (is_ident((unsigned char)s[k])) k++;
      if (secret_key(s + i, k - i)) {
        int in_query = i > 0 && (s[i - 1] == '?' || s[i - 1] == '&');
        size_t v = k;
        while (s[v] == ' ' || s[v] == '\t') v++;
        if (s[v] == '=') {
          v++;
          while (s[v] == ' ' || s[v] == '\t') v++;
          size_t e = value_end(s, v, in_query);
          if (e > v) {
            rd_add(&b, s + lit, v - lit);
            rd_adds(&b, MASK);
            lit = i = e;
            continue;
          }
        }
      }
      i = k;
      continue;
    }
    i++;
  }
  rd_add(&b, s + lit, i - lit);
  return rd_steal(&b);
}

char *eng__redact(const eng__redactor *r, const char *in) {
  if (!in) in = "";
  char *a = (r && r->n) ? mask_registered(r, in) : rd_strndup(in, strlen(in));
  char *b = mask_generic(a);
  free(a);
  return b;
}

void eng__redact_json(const eng__redactor *r, json_t *v) {
  if (!v) return;
  switch (json_typeof(v)) {
  case JSON_STRING: {
    const char *s = json_string_value(v);
    char *m = eng__redact(r, s);
    if (strcmp(m, s) != 0) json_string_set(v, m);
    free(m);
    break;
  }
  case JSON_ARRAY: {
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) eng__redact_json(r, e);
    break;
  }
  case JSON_OBJECT: {
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e) eng__redact_json(r, e);
    break;
  }
  default:
    break;
  }
}
