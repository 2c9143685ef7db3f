/*
 * pg_health_thr.c - the thresholds of postgres.health: one parameter per
 * check, `false` (off), `true` (the defaults) or {warn, fail, ...}; the
 * levels they give a figure. Pure: the parameters' check and the action
 * share it.
 */
#include "pg_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const pg_level_names[] = {"ok", "warn", "fail"};

/* "90", "1.5", "30s", "5m", "1h30m", "2d" -> seconds (or the plain
 * number). 0, or -1 when it is none of these. */
static int pg_thr_text(const char *s, int dur, double *out) {
  char *end;
  double total = 0;
  if (!*s) return -1;
  while (*s) {
    double v = strtod(s, &end);
    if (end == s || !isfinite(v) || v < 0) return -1;
    double unit = 1;
    switch (*end) {
    case '\0': unit = 1; break;
    case 's': unit = 1; end++; break;
    case 'm': unit = 60; end++; break;
    case 'h': unit = 3600; end++; break;
    case 'd': unit = 86400; end++; break;
    default: return -1;
    }
    if (unit != 1 && !dur) return -1;
    total += v * unit;
    s = end;
  }
  *out = total;
  return 0;
}

/* A level's value: a number, or for durations a text such as "5m". */
static int pg_thr_value(const json_t *v, int dur, double *out) {
  if (json_is_number(v)) {
    *out = json_number_value(v);
    return isfinite(*out) && *out >= 0 ? 0 : -1;
  }
  if (json_is_string(v)) return pg_thr_text(json_string_value(v), dur, out);
  return -1;
}

int pg_thr_parse(const json_t *v, const char *extra, int dur, pg_thr *t,
                 char *err, size_t n) {
  memset(t, 0, sizeof *t);
  t->warn = t->fail = t->min = NAN;
  if (json_is_boolean(v) || json_is_null(v)) {
    t->off = !json_is_true(v);
    t->deflt = json_is_true(v);
    return 0;
  }
  if (!json_is_object(v)) {
    snprintf(err, n, "false (off), true (the defaults) or {warn: ..., "
                     "fail: ...%s%s}",
             extra ? ", " : "", extra ? extra : "");
    return -1;
  }
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)v, key, val) {
    double *slot = !strcmp(key, "warn")   ? &t->warn
                   : !strcmp(key, "fail") ? &t->fail
                   : extra && !strcmp(key, extra) ? &t->min
                                                  : NULL;
    if (!slot) {
      snprintf(err, n, "unknown key '%s' (warn, fail%s%s)", key,
               extra ? ", " : "", extra ? extra : "");
      return -1;
    }
    if (pg_thr_value(val, dur && slot != &t->min, slot)) {
      snprintf(err, n, "'%s' must be a number >= 0%s", key,
               dur && slot != &t->min ? " or a duration such as 30s, 5m, 1h"
                                      : "");
      return -1;
    }
  }
  return 0;
}

pg_level pg_thr_level(const pg_thr *t, double v, int lower_is_worse) {
  if (t->off || isnan(v)) return PG_L_OK;
  if (lower_is_worse) {
    if (!isnan(t->fail) && v <= t->fail) return PG_L_FAIL;
    if (!isnan(t->warn) && v <= t->warn) return PG_L_WARN;
    return PG_L_OK;
  }
  if (!isnan(t->fail) && v >= t->fail) return PG_L_FAIL;
  if (!isnan(t->warn) && v >= t->warn) return PG_L_WARN;
  return PG_L_OK;
}

json_t *pg_thr_json(const pg_thr *t) {
  json_t *o = json_object();
  if (!isnan(t->warn)) json_object_set_new(o, "warn", json_real(t->warn));
  if (!isnan(t->fail)) json_object_set_new(o, "fail", json_real(t->fail));
  return o;
}

int pg_check_thr_dur(const json_t *v, char *err, size_t n) {
  pg_thr t;
  return pg_thr_parse(v, NULL, 1, &t, err, n);
}
int pg_check_thr_num(const json_t *v, char *err, size_t n) {
  pg_thr t;
  return pg_thr_parse(v, NULL, 0, &t, err, n);
}
int pg_check_thr_rows(const json_t *v, char *err, size_t n) {
  pg_thr t;
  return pg_thr_parse(v, "min_rows", 0, &t, err, n);
}
int pg_check_thr_blocks(const json_t *v, char *err, size_t n) {
  pg_thr t;
  return pg_thr_parse(v, "min_blocks", 0, &t, err, n);
}
int pg_check_thr_bytes(const json_t *v, char *err, size_t n) {
  pg_thr t;
  return pg_thr_parse(v, "min_bytes", 0, &t, err, n);
}
