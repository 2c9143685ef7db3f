/* retention.c - which backups a retention policy keeps (docs/retention.md).
 *
 * Pure: no I/O, any thread. The `prune` built-in (local folders) and
 * s3.prune (through host->retention_plan) list their backups, call
 * eng__retention_plan and delete what it gives up, so both read one rule.
 *
 * A backup's time is the first date (and time) in its name, UTC
 * (backup-2026-01-30.dump, db_20260130T020000Z.dump), else its
 * modification time: a copy or a restore from an archive changes the
 * second, never the first.
 *
 * The rules, like restic's `forget`: keep_last N keeps the N newest;
 * keep_daily D keeps the newest backup of each of the D latest days that
 * have backups, keep_weekly (ISO weeks) and keep_monthly likewise. Never
 * given up, whatever the policy: the newest backup, the newest one a drill
 * verified, one younger than min_age, and one whose object lock holds. */
#include "base/base.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct ret_item {
  size_t at; /* index in the input */
  const char *name;
  int64_t time_ms;
  bool from_name;
  bool verified;
  int64_t locked_until_ms; /* 0: not locked */
} ret_item;

/* Digits at s[0..n) as a number, or -1 when one is not a digit. */
static int digits(const char *s, int n) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (!isdigit((unsigned char)s[i])) return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

/* HH[:]MM[[:]SS] at s into seconds of the day, or -1. */
static int clock_at(const char *s) {
  int h = digits(s, 2);
  if (h < 0 || h > 23) return -1;
  s += 2;
  bool colon = *s == ':';
  if (colon) s++;
  int m = digits(s, 2);
  if (m < 0 || m > 59) return -1;
  s += 2;
  int sec = 0;
  if ((colon && *s == ':') || (!colon && isdigit((unsigned char)*s))) {
    sec = digits(s + (colon ? 1 : 0), 2);
    if (sec < 0 || sec > 59) return -1;
  }
  return h * 3600 + m * 60 + sec;
}

/* YYYY-MM-DD or YYYYMMDD at s (not inside a longer number), then an
 * optional [T_-]HH[:]MM[[:]SS]; -1 when s does not start a date. */
static int64_t date_at(const char *s) {
  int y = digits(s, 4);
  if (y < 1970 || y > 2999) return -1;
  const char *p = s + 4;
  bool dash = *p == '-';
  if (dash) p++;
  int mo = digits(p, 2);
  p += 2;
  if (mo < 1 || mo > 12 || (dash && *p != '-')) return -1;
  if (dash) p++;
  int d = digits(p, 2);
  p += 2;
  if (d < 1 || d > 31) return -1;
  int secs = 0;
  if (*p == 'T' || *p == '_' || *p == '-' || isdigit((unsigned char)*p)) {
    int c = clock_at(isdigit((unsigned char)*p) ? p : p + 1);
    if (c >= 0) secs = c;
    else if (isdigit((unsigned char)*p)) return -1; /* a longer number */
  }
  struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d};
  time_t t = timegm(&tm);
  if (tm.tm_mday != d) return -1; /* 2026-02-31 */
  return ((int64_t)t + secs) * 1000;
}

int64_t eng__retention_name_time(const char *name) {
  const char *base = strrchr(name, '/');
  base = base && base[1] ? base + 1 : name;
  for (const char *p = base; *p; p++) {
    if (p > base && isdigit((unsigned char)p[-1])) continue;
    int64_t t = date_at(p);
    if (t >= 0) return t;
  }
  return -1;
}

/* The bucket of a time for a calendar rule: "2026-01-30", "2026-W05",
 * "2026-01". */
static void period_of(int64_t ms, const char *fmt, char *out, size_t n) {
  time_t t = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, n, fmt, &tm);
}

/* Newest first; ties by name, so the order does not depend on the
 * listing's. */
static int item_cmp(const void *a, const void *b) {
  const ret_item *x = a, *y = b;
  if (x->time_ms != y->time_ms) return x->time_ms < y->time_ms ? 1 : -1;
  return strcmp(y->name, x->name);
}

static void add_reason(json_t *d, const char *fmt, const char *arg) {
  char *s = eng__asprintf(fmt, arg);
  json_array_append_new(json_object_get(d, "reasons"), json_string(s));
  free(s);
}

/* A calendar rule: the newest backup of each of the `count` latest
 * periods that have backups. */
static void keep_periods(const ret_item *v, size_t n, json_t **out,
                         int64_t count, const char *rule, const char *fmt) {
  char last[32] = "", cur[32];
  int64_t kept = 0;
  for (size_t i = 0; i < n && kept < count; i++) {
    period_of(v[i].time_ms, fmt, cur, sizeof cur);
    if (!strcmp(cur, last)) continue;
    snprintf(last, sizeof last, "%s", cur);
    char *why = eng__asprintf("%s %s", rule, cur);
    add_reason(out[i], "%s", why);
    free(why);
    kept++;
  }
}

static int64_t pol_int(const json_t *policy, const char *key) {
  json_int_t v = json_integer_value(json_object_get(policy, key));
  return v > 0 ? (int64_t)v : 0;
}

/* The policy in words: "keep_last 0, keep_daily 7, ..., min_age 1d". */
static char *policy_text(const json_t *policy) {
  char age[32];
  int64_t min_age = pol_int(policy, "min_age");
  return eng__asprintf(
      "keep_last %lld, keep_daily %lld, keep_weekly %lld, keep_monthly %lld, "
      "min_age %s",
      (long long)pol_int(policy, "keep_last"),
      (long long)pol_int(policy, "keep_daily"),
      (long long)pol_int(policy, "keep_weekly"),
      (long long)pol_int(policy, "keep_monthly"),
      min_age ? eng__fmt_duration(min_age, age, sizeof age) : "0");
}

/* The items of the input, newest first; NULL with err when one is not
 * {name, mtime_ms, ...}. */
static ret_item *read_items(const json_t *backups, size_t *n, char *err,
                            size_t errlen) {
  *n = json_array_size(backups);
  ret_item *v = eng__xcalloc(*n ? *n : 1, sizeof *v);
  for (size_t i = 0; i < *n; i++) {
    const json_t *b = json_array_get(backups, i);
    const char *name = json_string_value(json_object_get(b, "name"));
    if (!name) {
      snprintf(err, errlen, "backup %zu has no name", i);
      free(v);
      return NULL;
    }
    int64_t t = eng__retention_name_time(name);
    v[i] = (ret_item){
        .at = i,
        .name = name,
        .time_ms = t >= 0 ? t : json_integer_value(json_object_get(b, "mtime_ms")),
        .from_name = t >= 0,
        .verified = json_is_true(json_object_get(b, "verified")),
        .locked_until_ms = json_integer_value(json_object_get(b, "locked_until_ms"))};
  }
  qsort(v, *n, sizeof *v, item_cmp);
  return v;
}

/* What the policy alone keeps, as reasons on each decision. */
static void apply_rules(const ret_item *v, size_t n, json_t **d,
                        const json_t *policy) {
  int64_t last = pol_int(policy, "keep_last");
  for (size_t i = 0; i < n && (int64_t)i < last; i++) {
    char nth[24];
    snprintf(nth, sizeof nth, "%zu", i + 1);
    add_reason(d[i], "keep_last (newest %s)", nth);
  }
  keep_periods(v, n, d, pol_int(policy, "keep_daily"), "keep_daily", "%Y-%m-%d");
  keep_periods(v, n, d, pol_int(policy, "keep_weekly"), "keep_weekly", "%G-W%V");
  keep_periods(v, n, d, pol_int(policy, "keep_monthly"), "keep_monthly", "%Y-%m");
}

/* What no policy gives up: the newest, the newest verified, the young and
 * the locked; *pruned is true when none of the policy's rules kept it. */
static void apply_floors(const ret_item *v, size_t n, json_t **d,
                         int64_t min_age_ms, int64_t now_ms) {
  bool seen_verified = false;
  for (size_t i = 0; i < n; i++) {
    if (i == 0) add_reason(d[i], "%s", "the newest backup");
    if (v[i].verified && !seen_verified) {
      add_reason(d[i], "%s", "the newest backup a drill verified");
      seen_verified = true;
    }
    if (min_age_ms > 0 && now_ms - v[i].time_ms < min_age_ms) {
      char age[32];
      add_reason(d[i], "younger than min_age (%s old)",
                 eng__fmt_duration(now_ms - v[i].time_ms, age, sizeof age));
    }
    if (v[i].locked_until_ms > now_ms) {
      char until[40];
      bool policy_kept = json_array_size(json_object_get(d[i], "reasons")) > 0;
      add_reason(d[i], "object lock until %s",
                 eng__fmt_time(v[i].locked_until_ms, until, sizeof until));
      /* a backup the policy gives up but cannot be deleted: said apart */
      if (!policy_kept) json_object_set_new(d[i], "locked", json_true());
    }
  }
}

/* True when the policy says anything: a policy that keeps nothing must be
 * written as keep_last: 0, never meant by leaving every keep_* out. */
static bool policy_given(const json_t *policy) {
  static const char *const keys[] = {"keep_last", "keep_daily", "keep_weekly",
                                     "keep_monthly"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
    if (json_is_integer(json_object_get(policy, keys[i]))) return true;
  return false;
}

json_t *eng__retention_plan(const json_t *backups, const json_t *policy,
                            int64_t now_ms) {
  size_t n = 0;
  char err[128];
  if (!json_is_array(backups) || !json_is_object(policy)) return NULL;
  if (!policy_given(policy))
    return json_pack("{s:s}", "error",
                     "give the policy: at least one of keep_last, keep_daily, "
                     "keep_weekly, keep_monthly (keep_last: 0 keeps only what "
                     "is never pruned)");
  ret_item *v = read_items(backups, &n, err, sizeof err);
  if (!v) return NULL;
  json_t **d = eng__xcalloc(n ? n : 1, sizeof *d);
  for (size_t i = 0; i < n; i++) {
    char t[40];
    d[i] = json_pack("{s:s, s:s, s:I, s:s, s:b, s:[]}", "name", v[i].name,
                     "time", eng__fmt_time(v[i].time_ms, t, sizeof t),
                     "time_ms", (json_int_t)v[i].time_ms, "time_from",
                     v[i].from_name ? "name" : "modified", "verified",
                     v[i].verified, "reasons");
  }
  apply_rules(v, n, d, policy);
  apply_floors(v, n, d, pol_int(policy, "min_age"), now_ms);
  char *rule = policy_text(policy);
  json_t *out = json_array();
  for (size_t i = 0; i < n; i++) json_array_append_new(out, json_null());
  for (size_t i = 0; i < n; i++) {
    bool keep = json_array_size(json_object_get(d[i], "reasons")) > 0;
    json_object_set_new(d[i], "keep", json_boolean(keep));
    if (!keep) {
      char *why = eng__asprintf("outside the policy (%s)", rule);
      json_object_set_new(d[i], "rule", json_string(why));
      free(why);
    }
    json_array_set_new(out, v[i].at, d[i]);
  }
  json_t *plan = json_pack("{s:s, s:o}", "policy", rule, "backups", out);
  free(rule);
  free(d);
  free(v);
  return plan;
}
