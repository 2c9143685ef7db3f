/* convert.c - values into the types parameters declare: the type's forms,
 * then a declared parameter's accepted values, range and check. */
#include "runbook.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const type_names[] = {"string", "int",  "number", "bool",
                                         "duration", "list", "map",  "any"};

const char *eng__type_name(eng_type t) {
  return (unsigned)t <= ENG_T_ANY ? type_names[t] : "?";
}

int eng__type_parse(const char *s, eng_type *t) {
  for (unsigned i = 0; i <= ENG_T_ANY; i++)
    if (strcmp(s, type_names[i]) == 0) {
      *t = (eng_type)i;
      return 0;
    }
  if (!strcmp(s, "integer")) { *t = ENG_T_INT; return 0; }
  if (!strcmp(s, "boolean")) { *t = ENG_T_BOOL; return 0; }
  return -1;
}

static const char *json_kind(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "a map";
  case JSON_ARRAY: return "a list";
  case JSON_STRING: return "a string";
  case JSON_INTEGER: return "an integer";
  case JSON_REAL: return "a number";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  default: return "null";
  }
}

static bool in_choices(const char *s, const char *choices) {
  size_t n = strlen(s);
  for (const char *p = choices; p && *p;) {
    const char *e = strchr(p, '|');
    size_t l = e ? (size_t)(e - p) : strlen(p);
    if (l == n && strncmp(p, s, n) == 0) return true;
    if (!e) break;
    p = e + 1;
  }
  return false;
}

/* The choice nearest to s, or NULL (malloc'd). */
static char *suggest_choice(const char *s, const char *choices) {
  char *copy = eng__xstrdup(choices), *save = NULL;
  const char *cands[64];
  size_t n = 0;
  for (char *x = strtok_r(copy, "|", &save); x && n < 64;
       x = strtok_r(NULL, "|", &save))
    cands[n++] = x;
  const char *hit = eng__suggest(s, cands, n);
  char *out = eng__xstrdup(hit);
  free(copy);
  return out;
}

json_t *eng__convert(const json_t *v, eng_type type, const char *choices,
                     char *err, size_t errlen) {
  const char *s = json_is_string(v) ? json_string_value(v) : NULL;
  char *end;
  switch (type) {
  case ENG_T_ANY: return json_incref((json_t *)v);
  case ENG_T_STRING: {
    json_t *out = NULL;
    if (s) out = json_string(s);
    else if (json_is_integer(v))
      out = json_sprintf("%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) out = json_sprintf("%g", json_real_value(v));
    else if (json_is_boolean(v))
      out = json_string(json_is_true(v) ? "true" : "false");
    else {
      snprintf(err, errlen, "expected a string, got %s", json_kind(v));
      return NULL;
    }
    if (choices && !in_choices(json_string_value(out), choices)) {
      char *hint = suggest_choice(json_string_value(out), choices);
      snprintf(err, errlen, "'%s' is not one of %s%s%s%s",
               json_string_value(out), choices, hint ? " (did you mean '" : "",
               hint ? hint : "", hint ? "'?)" : "");
      free(hint);
      json_decref(out);
      return NULL;
    }
    return out;
  }
  case ENG_T_INT:
    if (json_is_integer(v)) return json_incref((json_t *)v);
    if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v) &&
        fabs(json_real_value(v)) < 9e15)
      return json_integer((json_int_t)json_real_value(v));
    if (s && *s) {
      errno = 0;
      long long i = strtoll(s, &end, 10);
      if (!*end && !errno) return json_integer(i);
    }
    snprintf(err, errlen, "expected an integer, got %s%s%s%s", json_kind(v),
             s ? " '" : "", s ? s : "", s ? "'" : "");
    return NULL;
  case ENG_T_NUMBER:
    if (json_is_number(v)) return json_incref((json_t *)v);
    if (s && *s) {
      errno = 0;
      double d = strtod(s, &end);
      if (!*end && !errno && isfinite(d)) return json_real(d);
    }
    snprintf(err, errlen, "expected a number, got %s", json_kind(v));
    return NULL;
  case ENG_T_BOOL:
    if (json_is_boolean(v)) return json_incref((json_t *)v);
    if (json_is_integer(v) &&
        (json_integer_value(v) == 0 || json_integer_value(v) == 1))
      return json_boolean(json_integer_value(v));
    if (s) {
      if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcmp(s, "1") ||
          !strcasecmp(s, "on"))
        return json_true();
      if (!strcasecmp(s, "false") || !strcasecmp(s, "no") ||
          !strcmp(s, "0") || !strcasecmp(s, "off") || !*s)
        return json_false();
    }
    snprintf(err, errlen, "expected true or false, got %s%s%s%s",
             json_kind(v), s ? " '" : "", s ? s : "", s ? "'" : "");
    return NULL;
  case ENG_T_DURATION: {
    int64_t ms;
    if (json_is_number(v) && json_number_value(v) >= 0 &&
        json_number_value(v) * 1000.0 <= (double)ENG__DURATION_MAX_MS)
      return json_integer((json_int_t)(json_number_value(v) * 1000.0 + 0.5));
    if (s && eng__parse_duration(s, &ms) == 0) return json_integer(ms);
    snprintf(err, errlen,
             "expected a duration like 500ms, 30s, 5m, 1h30m; got %s%s%s%s",
             json_kind(v), s ? " '" : "", s ? s : "", s ? "'" : "");
    return NULL;
  }
  case ENG_T_LIST:
    if (json_is_array(v)) return json_incref((json_t *)v);
    if (json_is_null(v)) return json_array();
    if (!json_is_object(v)) {
      json_t *a = json_array();
      json_array_append(a, (json_t *)v);
      return a;
    }
    snprintf(err, errlen, "expected a list, got %s", json_kind(v));
    return NULL;
  case ENG_T_MAP:
    if (json_is_object(v)) return json_incref((json_t *)v);
    if (json_is_null(v)) return json_object();
    snprintf(err, errlen, "expected a map, got %s", json_kind(v));
    return NULL;
  }
  snprintf(err, errlen, "unknown type");
  return NULL;
}

/* Convert v to what parameter p accepts (its type, its choices, its range,
 * its check); NULL with err on failure. */
json_t *eng__convert_param(const json_t *v, const eng_param *p, char *err,
                           size_t errlen) {
  json_t *c = eng__convert(v, p->type, p->choices, err, errlen);
  if (!c) return NULL;
  if (json_is_number(c) && (p->flags & (ENG_P_MIN | ENG_P_MAX))) {
    double x = json_number_value(c);
    bool ms = p->type == ENG_T_DURATION;
    char lo[32] = "", hi[32] = "";
    if (p->flags & ENG_P_MIN) {
      if (ms) eng__fmt_duration((int64_t)p->min, lo, sizeof lo);
      else snprintf(lo, sizeof lo, "%.15g", p->min);
    }
    if (p->flags & ENG_P_MAX) {
      if (ms) eng__fmt_duration((int64_t)p->max, hi, sizeof hi);
      else snprintf(hi, sizeof hi, "%.15g", p->max);
    }
    if (((p->flags & ENG_P_MIN) && x < p->min) ||
        ((p->flags & ENG_P_MAX) && x > p->max)) {
      char got[40];
      if (ms) eng__fmt_duration((int64_t)x, got, sizeof got);
      else snprintf(got, sizeof got, "%.15g", x);
      if ((p->flags & ENG_P_MIN) && (p->flags & ENG_P_MAX))
        snprintf(err, errlen, "%s is out of range: it must be from %s to %s",
                 got, lo, hi);
      else if (p->flags & ENG_P_MIN)
        snprintf(err, errlen, "%s is too small: it must be at least %s", got,
                 lo);
      else
        snprintf(err, errlen, "%s is too large: it must be at most %s", got,
                 hi);
      json_decref(c);
      return NULL;
    }
  }
  if (p->check && !json_is_null(c)) {
    char why[512] = "";
    if (p->check(c, why, sizeof why) != 0) {
      snprintf(err, errlen, "%s", *why ? why : "not an accepted value");
      json_decref(c);
      return NULL;
    }
  }
  return c;
}
