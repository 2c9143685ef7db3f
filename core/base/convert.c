/* convert.c - values into the types parameters declare: the type's forms,
 * then a declared parameter's accepted values, range and check. */
#include "base/base.h"

#include <engine/mem.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const type_names[] = {
    "string", "int", "number", "bool", "duration", "list", "map", "any",
    "timestamp"};
#define N_TYPES (sizeof type_names / sizeof *type_names)

const char *eng__type_name(eng_type t) {
  return (unsigned)t < N_TYPES ? type_names[t] : "?";
}

/* Only the names above: "integer" or "boolean" would be read by a user as
 * a different type, so they get a suggestion instead. */
int eng__type_parse(const char *s, eng_type *t) {
  for (unsigned i = 0; i < N_TYPES; i++)
    if (strcmp(s, type_names[i]) == 0) {
      *t = (eng_type)i;
      return 0;
    }
  return -1;
}

const char *eng__type_suggest(const char *s) {
  static const char *const long_names[][2] = {
      {"integer", "int"}, {"boolean", "bool"}, {"float", "number"},
      {"str", "string"},  {"array", "list"},   {"object", "map"},
      {"dict", "map"},    {"datetime", "timestamp"}, {"time", "timestamp"},
      {"date", "timestamp"}};
  for (size_t i = 0; i < sizeof long_names / sizeof *long_names; i++)
    if (!strcasecmp(s, long_names[i][0])) return long_names[i][1];
  return eng__suggest(s, type_names, N_TYPES);
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

/* One converter per type: v (borrowed) into the type, or NULL with err.
 * s is v's text when v is a string. */
typedef json_t *(*to_type_fn)(const json_t *v, const char *s,
                              const char *choices, char *err, size_t errlen);

static json_t *to_any(const json_t *v, const char *s, const char *choices,
                      char *err, size_t errlen) {
  (void)s, (void)choices, (void)err, (void)errlen;
  return json_incref((json_t *)v);
}

/* The shortest text that reads back as x (0.1 is "0.1", not
 * "0.10000000000000001"; 5432.0 is "5432"). */
static void real_text(double x, char *buf, size_t n) {
  for (int digits = 15; digits <= 17; digits++) {
    snprintf(buf, n, "%.*g", digits, x);
    if (strtod(buf, NULL) == x) return;
  }
}

static json_t *to_string(const json_t *v, const char *s, const char *choices,
                         char *err, size_t errlen) {
  json_t *out = NULL;
  char num[40];
  if (s) out = json_string(s);
  else if (json_is_integer(v))
    out = json_sprintf("%lld", (long long)json_integer_value(v));
  else if (json_is_real(v)) {
    real_text(json_real_value(v), num, sizeof num);
    out = json_string(num);
  }
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

static json_t *to_int(const json_t *v, const char *s, const char *choices,
                      char *err, size_t errlen) {
  (void)choices;
  if (json_is_integer(v)) return json_incref((json_t *)v);
  if (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v) &&
      fabs(json_real_value(v)) < 9e15)
    return json_integer((json_int_t)json_real_value(v));
  if (s && *s) {
    char *end;
    errno = 0;
    long long i = strtoll(s, &end, 10);
    if (!*end && !errno) return json_integer(i);
  }
  snprintf(err, errlen, "expected an integer, got %s%s%s%s", json_kind(v),
           s ? " '" : "", s ? s : "", s ? "'" : "");
  return NULL;
}

static json_t *to_number(const json_t *v, const char *s, const char *choices,
                         char *err, size_t errlen) {
  (void)choices;
  if (json_is_number(v)) return json_incref((json_t *)v);
  if (s && *s) {
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (!*end && !errno && isfinite(d)) return json_real(d);
  }
  snprintf(err, errlen, "expected a number, got %s", json_kind(v));
  return NULL;
}

/* Strict: only true and false (as text too: --set and environment values
 * are text). 1, yes or on are refused with the spelling meant, so a typo
 * never flips a safety switch silently. */
static json_t *to_bool(const json_t *v, const char *s, const char *choices,
                       char *err, size_t errlen) {
  (void)choices;
  if (json_is_boolean(v)) return json_incref((json_t *)v);
  if (s && !strcasecmp(s, "true")) return json_true();
  if (s && !strcasecmp(s, "false")) return json_false();
  const char *meant = NULL;
  if (json_is_integer(v))
    meant = json_integer_value(v) == 0 ? "false"
            : json_integer_value(v) == 1 ? "true" : NULL;
  else if (s && (!strcmp(s, "1") || !strcasecmp(s, "yes") ||
                 !strcasecmp(s, "on") || !strcasecmp(s, "y")))
    meant = "true";
  else if (s && (!strcmp(s, "0") || !strcasecmp(s, "no") ||
                 !strcasecmp(s, "off") || !strcasecmp(s, "n")))
    meant = "false";
  char got[64];
  if (json_is_integer(v))
    snprintf(got, sizeof got, "%lld", (long long)json_integer_value(v));
  else snprintf(got, sizeof got, "%s%s%s", s ? "'" : "", s ? s : json_kind(v),
                s ? "'" : "");
  snprintf(err, errlen, "expected true or false, got %s%s%s%s", got,
           meant ? " (write " : "", meant ? meant : "", meant ? ")" : "");
  return NULL;
}

static json_t *to_timestamp(const json_t *v, const char *s,
                            const char *choices, char *err, size_t errlen) {
  (void)choices;
  int64_t ms;
  char why[160], buf[40];
  if (json_is_number(v) && json_number_value(v) >= 0 &&
      json_number_value(v) < 1e15) { /* seconds since the epoch */
    double x = json_number_value(v);
    ms = (int64_t)(x > 1e11 ? x : x * 1000.0);
    return json_string(eng__fmt_time(ms, buf, sizeof buf));
  }
  if (s && eng__parse_timestamp(s, &ms, why, sizeof why) == 0)
    return json_string(eng__fmt_time(ms, buf, sizeof buf));
  if (!s) snprintf(why, sizeof why, "it is %s", json_kind(v));
  snprintf(err, errlen, "%s%s%s is not a timestamp (%s); write "
           ENG__TIMESTAMP_FORMS, s ? "'" : "", s ? s : "the value",
           s ? "'" : "", why);
  return NULL;
}

static json_t *to_duration(const json_t *v, const char *s,
                           const char *choices, char *err, size_t errlen) {
  (void)choices;
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

/* At most 60 bytes of s, quoted, newlines and tabs escaped, into buf. */
static void excerpt(const char *s, char *buf, size_t n) {
  size_t o = 0;
  buf[o++] = '\'';
  for (size_t i = 0; s[i] && o + 8 < n && i < 60; i++) {
    if (s[i] == '\n' || s[i] == '\t') {
      buf[o++] = '\\';
      buf[o++] = s[i] == '\n' ? 'n' : 't';
    } else {
      buf[o++] = s[i];
    }
  }
  if (strlen(s) > 60 && o + 5 < n) {
    memcpy(buf + o, "...", 3);
    o += 3;
  }
  buf[o++] = '\'';
  buf[o] = '\0';
}

/* s without the blanks around it: *len bytes from the result. */
static const char *trimmed(const char *s, size_t *len) {
  while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
  size_t n = strlen(s);
  while (n && strchr(" \t\n\r", s[n - 1])) n--;
  *len = n;
  return s;
}

/* Text that is a list written as text: JSON or YAML flow ("[a, b]"), or
 * YAML block lines ("- a\n- b"). */
static bool list_text(const char *s) {
  size_t n;
  const char *t = trimmed(s, &n);
  if (n >= 2 && t[0] == '[' && t[n - 1] == ']') return true;
  return n > 2 && t[0] == '-' && (t[1] == ' ' || t[1] == '\n') &&
         memchr(t, '\n', n) != NULL;
}

/* Text that is a JSON array ('["pg_dump", "-Fc"]': a Lua table rendered
 * into a longer string). "[ -f x ]" is a shell test, not this. */
static bool json_list_text(const char *s) {
  size_t n;
  const char *t = trimmed(s, &n);
  if (n < 2 || t[0] != '[' || t[n - 1] != ']') return false;
  json_t *j = json_loadb(t, n, JSON_DECODE_ANY, NULL);
  bool list = json_is_array(j);
  json_decref(j);
  return list;
}

/* One string given where a list is wanted would become a list of one,
 * silently: refused when the text is a list written as text (a ${...}
 * returning a list that was not the whole value), or ends with the newline
 * a '|' block adds. false with err then. */
static bool one_string_ok(const char *s, char *err, size_t errlen) {
  size_t len = strlen(s);
  bool nl = len && s[len - 1] == '\n';
  if (!list_text(s) && !nl) return true;
  char ex[96];
  excerpt(s, ex, sizeof ex);
  if (list_text(s))
    snprintf(err, errlen,
             "expected a list, got the text %s, which looks like a list but "
             "is one string%s: write the list in YAML (- a on each line, or "
             "[a, b] unquoted); a ${...} that returns a list must be the "
             "whole value, with nothing around it%s",
             ex, nl ? " (ending in the newline a '|' block adds)" : "",
             nl ? " (write '|-', which drops the newline, or put the ${...} "
                  "on the key's line)" : "");
  else
    snprintf(err, errlen,
             "expected a list, got the text %s, which ends in the newline a "
             "'|' block adds: one string would become a list of one, newline "
             "and all; write the list in YAML, or '|-' (which drops the "
             "newline) for one element",
             ex);
  return false;
}

/* A single value becomes a list of one; null an empty list. */
static json_t *to_list(const json_t *v, const char *s, const char *choices,
                       char *err, size_t errlen) {
  (void)choices;
  if (json_is_array(v)) return json_incref((json_t *)v);
  if (json_is_null(v)) return json_array();
  if (s && !one_string_ok(s, err, errlen)) return NULL;
  if (!json_is_object(v)) {
    json_t *a = json_array();
    json_array_append(a, (json_t *)v);
    return a;
  }
  snprintf(err, errlen, "expected a list, got %s", json_kind(v));
  return NULL;
}

static json_t *to_map(const json_t *v, const char *s, const char *choices,
                      char *err, size_t errlen) {
  (void)s, (void)choices;
  if (json_is_object(v)) return json_incref((json_t *)v);
  if (json_is_null(v)) return json_object();
  snprintf(err, errlen, "expected a map, got %s", json_kind(v));
  return NULL;
}

/* Indexed by eng_type (plugin.h numbers them; never renumbered). */
static const to_type_fn converters[] = {
    [ENG_T_STRING] = to_string,     [ENG_T_INT] = to_int,
    [ENG_T_NUMBER] = to_number,     [ENG_T_BOOL] = to_bool,
    [ENG_T_DURATION] = to_duration, [ENG_T_LIST] = to_list,
    [ENG_T_MAP] = to_map,           [ENG_T_ANY] = to_any,
    [ENG_T_TIMESTAMP] = to_timestamp};

json_t *eng__convert(const json_t *v, eng_type type, const char *choices,
                     char *err, size_t errlen) {
  if ((unsigned)type >= sizeof converters / sizeof *converters ||
      !converters[type]) {
    snprintf(err, errlen, "unknown type");
    return NULL;
  }
  const char *s = json_is_string(v) ? json_string_value(v) : NULL;
  return converters[type](v, s, choices, err, errlen);
}

static void add_scalar(char *buf, size_t n, const char *name, const json_t *v) {
  char val[64];
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    size_t l = strlen(s);
    while (l && (s[l - 1] == '\n' || s[l - 1] == ' ' || s[l - 1] == '\r')) l--;
    if (!l) return;
    snprintf(val, sizeof val, "%.*s%s", (int)(l > 40 ? 40 : l), s,
             l > 40 ? "..." : "");
  } else if (json_is_integer(v)) {
    snprintf(val, sizeof val, "%lld", (long long)json_integer_value(v));
  } else if (json_is_real(v)) {
    eng_fmt_real(json_real_value(v), val, sizeof val);
  } else if (json_is_boolean(v)) {
    snprintf(val, sizeof val, "%s", json_is_true(v) ? "true" : "false");
  } else {
    return;
  }
  size_t len = strlen(buf);
  if (len + 2 < n) snprintf(buf + len, n - len, "%s%s=%s", len ? " " : "", name, val);
}

void eng__outputs_summary(const json_t *o, const eng_output *decl, char *buf,
                          size_t n) {
  buf[0] = '\0';
  const char *s = json_string_value(json_object_get(o, "summary"));
  json_t *b = json_object_get(o, "bytes"), *tot = json_object_get(o, "total"),
         *ec = json_object_get(o, "exit_code");
  char t[32];
  if (s) snprintf(buf, n, "%s", s);
  else if (json_is_integer(b))
    snprintf(buf, n, "%s", eng__fmt_bytes(json_integer_value(b), t, sizeof t));
  else if (json_is_integer(tot))
    snprintf(buf, n, "%lld rows", (long long)json_integer_value(tot));
  else if (json_is_integer(ec) && json_integer_value(ec) != 0)
    snprintf(buf, n, "exit %lld", (long long)json_integer_value(ec));
  else {
    int k = 0; /* exit_code 0 says nothing: the step is ok */
    if (decl && decl->name)
      for (const eng_output *d = decl; d->name && k < 3; d++) {
        size_t before = strlen(buf);
        if (strcmp(d->name, "exit_code"))
          add_scalar(buf, n, d->name, json_object_get(o, d->name));
        k += strlen(buf) > before;
      }
    else {
      const char *key;
      json_t *v;
      json_object_foreach((json_t *)o, key, v) {
        if (k >= 3) break;
        size_t before = strlen(buf);
        if (strcmp(key, "exit_code")) add_scalar(buf, n, key, v);
        k += strlen(buf) > before;
      }
    }
  }
  /* one line */
  for (char *p = buf; *p; p++)
    if (*p == '\n' || *p == '\r' || *p == '\t') *p = ' ';
}

const char *eng__items_name(eng_items items) {
  return items == ENG_ITEMS_UNDECLARED ? NULL
                                       : eng__type_name((eng_type)(items - 1));
}

void eng__param_type_text(const eng_param *p, char *buf, size_t n) {
  const char *items = eng__items_name(p->items);
  if (!items) snprintf(buf, n, "%s", eng__type_name(p->type));
  else if (p->type == ENG_T_LIST) snprintf(buf, n, "list of %s", items);
  else snprintf(buf, n, "%s or list of %s", eng__type_name(p->type), items);
}

/* A number c outside p's range: true with err. */
static bool out_of_range(const json_t *c, const eng_param *p, eng_type type,
                         char *err, size_t errlen) {
  if (!json_is_number(c) || !(p->flags & (ENG_P_MIN | ENG_P_MAX))) return false;
  double x = json_number_value(c);
  if (!((p->flags & ENG_P_MIN) && x < p->min) &&
      !((p->flags & ENG_P_MAX) && x > p->max))
    return false;
  bool ms = type == ENG_T_DURATION;
  char lo[32] = "", hi[32] = "", got[40];
  if (p->flags & ENG_P_MIN) {
    if (ms) eng__fmt_duration((int64_t)p->min, lo, sizeof lo);
    else snprintf(lo, sizeof lo, "%.15g", p->min);
  }
  if (p->flags & ENG_P_MAX) {
    if (ms) eng__fmt_duration((int64_t)p->max, hi, sizeof hi);
    else snprintf(hi, sizeof hi, "%.15g", p->max);
  }
  if (ms) eng__fmt_duration((int64_t)x, got, sizeof got);
  else snprintf(got, sizeof got, "%.15g", x);
  if ((p->flags & ENG_P_MIN) && (p->flags & ENG_P_MAX))
    snprintf(err, errlen, "%s is out of range: it must be from %s to %s", got,
             lo, hi);
  else if (p->flags & ENG_P_MIN)
    snprintf(err, errlen, "%s is too small: it must be at least %s", got, lo);
  else
    snprintf(err, errlen, "%s is too large: it must be at most %s", got, hi);
  return true;
}


/* The elements of list c converted to p's items (choices and range of a
 * list apply to each); NULL with err naming the element. */
static json_t *convert_items(json_t *c, const eng_param *p, char *err,
                             size_t errlen) {
  if (p->items == ENG_ITEMS_UNDECLARED || p->items == ENG_ITEMS_ANY)
    return json_incref(c);
  eng_type t = (eng_type)(p->items - 1);
  const char *choices = p->type == ENG_T_LIST ? p->choices : NULL;
  json_t *out = json_array();
  size_t i;
  json_t *e;
  json_array_foreach(c, i, e) {
    char why[400];
    json_t *x = eng__convert(e, t, choices, why, sizeof why);
    if (x && p->type == ENG_T_LIST && out_of_range(x, p, t, why, sizeof why)) {
      json_decref(x);
      x = NULL;
    }
    if (!x) {
      snprintf(err, errlen, "item %zu of %zu: %s", i + 1, json_array_size(c),
               why);
      json_decref(out);
      return NULL;
    }
    json_array_append_new(out, x);
  }
  return out;
}

/* Convert v to what parameter p accepts (its type, the type of its items,
 * its choices, its range, its check); NULL with err on failure. */
json_t *eng__convert_param(const json_t *v, const eng_param *p, char *err,
                           size_t errlen) {
  /* a string or a list (a command) given an argv list rendered as text */
  if (p->type == ENG_T_ANY && p->items && json_is_string(v) &&
      json_list_text(json_string_value(v))) {
    one_string_ok(json_string_value(v), err, errlen);
    return NULL;
  }
  json_t *c = eng__convert(v, p->type, p->choices, err, errlen);
  if (!c) return NULL;
  if (json_is_array(c) && p->items) {
    json_t *typed = convert_items(c, p, err, errlen);
    json_decref(c);
    if (!typed) return NULL;
    c = typed;
  }
  /* the parameter's own check first: it says every form, the range too */
  if (p->check && !json_is_null(c)) {
    char why[512] = "";
    if (p->check(c, why, sizeof why) != 0) {
      snprintf(err, errlen, "%s", *why ? why : "not an accepted value");
      json_decref(c);
      return NULL;
    }
  }
  if (out_of_range(c, p, p->type, err, errlen)) {
    json_decref(c);
    return NULL;
  }
  return c;
}
