/*
 * cron.c - CronJob schedules: parsing (five fields, names, ranges, steps,
 * macros), whether their days exist, the next times, shifting a schedule
 * by minutes (the spread of render), and entering a CronJob's time zone
 * for the arithmetic.
 */
#include "fleet/cron.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- cron ---------------------------------------------------------------- */

/* Kubernetes computes a CronJob's times with robfig/cron (v3), and these
 * functions follow it: five fields, `*` and `?`, ranges, steps, `N/S` as
 * N to the end of the field, names; the two day fields OR-ed when both are
 * restricted (Vixie cron), AND-ed when either is `*` or `?` (a star
 * stepped by more than 1 is restricted). */

typedef struct cron_field {
  const char *what;
  int lo, hi;
  int last; /* where '*' and N/S end: Kubernetes' weekdays end at 6 */
  const char *const *names; /* month or weekday names (3 letters), or NULL */
  int names_base;
} cron_field;

static const char *const month_names[] = {"jan", "feb", "mar", "apr",
                                          "may", "jun", "jul", "aug",
                                          "sep", "oct", "nov", "dec", NULL};
static const char *const day_names[] = {"sun", "mon", "tue", "wed",
                                        "thu", "fri", "sat", NULL};
static const cron_field cron_fields[5] = {
    {"minute", 0, 59, 59, NULL, 0},
    {"hour", 0, 23, 23, NULL, 0},
    {"day of month", 1, 31, 31, NULL, 0},
    {"month", 1, 12, 12, month_names, 1},
    {"day of week", 0, 7, 6, day_names, 0}};

/* One number or name of a field; advances *p. -1 when none. */
static long cron_value(const char **p, const cron_field *f) {
  if (f->names) {
    for (int i = 0; f->names[i]; i++)
      if (!strncasecmp(*p, f->names[i], 3)) {
        *p += 3;
        return i + f->names_base;
      }
  }
  if (**p < '0' || **p > '9') return -1;
  long v = 0;
  while (**p >= '0' && **p <= '9' && v < 1000) v = v * 10 + (*(*p)++ - '0');
  return v;
}

/* What reading one element of a cron field found. */
typedef enum cron_read {
  CRON_READ,   /* read, its values added */
  CRON_SYNTAX, /* not cron: the caller says what a field may hold */
  CRON_SAID    /* a value out of place, the reason in why */
} cron_read;

/* One element of a list (`*`, N, N-M, each with an optional /S) at *p
 * into *bits; advances *p. */
static cron_read cron_element(const char **p, const cron_field *f, const char *text,
                        uint64_t *bits, bool *star, char *why, size_t n) {
  long a = -1, b = -1, step = 1;
  bool any = **p == '*' || **p == '?', stepped = false;
  if (any) {
    (*p)++;
  } else {
    if ((a = cron_value(p, f)) < 0) return CRON_SYNTAX;
    if (**p == '-') {
      (*p)++;
      if ((b = cron_value(p, f)) < 0) return CRON_SYNTAX;
    }
    if (a < f->lo || a > f->hi || (b >= 0 && (b < f->lo || b > f->hi))) {
      snprintf(why, n, "the %s field '%s' has a value outside %d-%d", f->what,
               text, f->lo, f->hi);
      return CRON_SAID;
    }
    if (b >= 0 && b < a) {
      snprintf(why, n, "the %s field '%s' has a range that ends before it "
                       "starts",
               f->what, text);
      return CRON_SAID;
    }
  }
  if (**p == '/') {
    const char *q = ++*p;
    step = 0;
    while (**p >= '0' && **p <= '9' && step < 1000) step = step * 10 + (*(*p)++ - '0');
    if (*p == q || step < 1 || step > f->hi) return CRON_SYNTAX;
    stepped = true;
  }
  /* N/S runs from N to the end of the field (a weekday 7: just Sunday) */
  long from = any ? f->lo : a, to = any ? f->last : b >= 0 ? b : a;
  if (!any && b < 0 && stepped && a < f->last) to = f->last;
  for (long v = from; v <= to; v += step) *bits |= (uint64_t)1 << v;
  if (any && step == 1) *star = true;
  return CRON_READ;
}

/* One field's text into the values it names; false with the reason in
 * why. */
static bool cron_field_parse(const char *text, const cron_field *f,
                             uint64_t *bits, bool *star, char *why, size_t n) {
  const char *p = text;
  *bits = 0;
  *star = false;
  while (true) {
    cron_read rc = cron_element(&p, f, text, bits, star, why, n);
    if (rc == CRON_SAID) return false;
    if (rc == CRON_SYNTAX) break;
    if (*p == '\0') return true;
    if (*p != ',') break;
    p++;
  }
  snprintf(why, n, "the %s field '%s' is not a cron field (N, N-M, *, */S, "
                   "N-M/S or a comma list of those, %d-%d)",
           f->what, text, f->lo, f->hi);
  return false;
}

/* Split into exactly 5 fields (malloc'd copies); false with why. */
static bool cron_split(const char *s, char *fields[5], char *why, size_t n) {
  size_t k = 0;
  const char *p = s;
  while (*p) {
    while (*p == ' ' || *p == '\t') p++;
    if (!*p) break;
    const char *e = p;
    while (*e && *e != ' ' && *e != '\t') e++;
    if (k == 5) {
      k++;
      break;
    }
    fields[k++] = eng__xstrndup(p, (size_t)(e - p));
    p = e;
  }
  if (k != 5) {
    for (size_t i = 0; i < k && i < 5; i++) free(fields[i]);
    snprintf(why, n, "'%s' has %s5 fields; write minute hour day-of-month "
                     "month day-of-week, e.g. \"0 3 * * *\"",
             s, k > 5 ? "more than " : "fewer than ");
    return false;
  }
  return true;
}

/* A macro's five fields, or NULL (why says so). */
static const char *cron_macro(const char *s, char *why, size_t n) {
  static const char *const macros[][2] = {
      {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"},
      {"@monthly", "0 0 1 * *"}, {"@weekly", "0 0 * * 0"},
      {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
      {"@hourly", "0 * * * *"}};
  for (size_t i = 0; i < sizeof macros / sizeof *macros; i++)
    if (!strcmp(s, macros[i][0])) return macros[i][1];
  snprintf(why, n, "'%s' is not one of @yearly, @monthly, @weekly, @daily, "
                   "@hourly",
           s);
  return NULL;
}

/* A schedule's text into when it fires; false with the reason in why. */
bool eng__cron_parse(const char *s, cron_spec *c, char *why, size_t n) {
  if (!strncmp(s, "TZ=", 3) || !strncmp(s, "CRON_TZ=", 8)) {
    snprintf(why, n, "a time zone in the schedule is not allowed by "
                     "Kubernetes; set defaults.time_zone instead");
    return false;
  }
  if (s[0] == '@' && !(s = cron_macro(s, why, n))) return false;
  char *f[5];
  if (!cron_split(s, f, why, n)) return false;
  uint64_t *bits[5] = {&c->minutes, &c->hours, &c->days, &c->months,
                       &c->weekdays};
  bool stars[5];
  bool ok = true;
  for (int i = 0; i < 5 && ok; i++)
    ok = cron_field_parse(f[i], &cron_fields[i], bits[i], &stars[i], why, n);
  for (int i = 0; i < 5; i++) free(f[i]);
  if (!ok) return false;
  if (c->weekdays >> 7 & 1) c->weekdays |= 1; /* 7 is Sunday too */
  c->days_star = stars[2];
  c->weekdays_star = stars[4];
  return true;
}

static const char *const month_full[] = {
    "January", "February", "March",     "April",   "May",      "June",
    "July",    "August",   "September", "October", "November", "December"};

static bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int month_days(int y, int m) {
  static const int len[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : len[m - 1];
}

static const char *ordinal(int d) {
  return d % 10 == 1 && d != 11 ? "st" : d % 10 == 2 && d != 12 ? "nd"
         : d % 10 == 3 && d != 13 ? "rd" : "th";
}

/* Whether some month the schedule names has a day it names (leap years
 * count: February has a 29th); false with the months, the days and the
 * fix in why. Only days restricted with weekdays '*' can miss: the
 * weekdays are OR-ed in otherwise, and every month has every weekday. */
bool eng__cron_days_exist(const cron_spec *c, char *why, size_t n) {
  if (c->days_star || !c->weekdays_star) return true;
  int longest = 0, k = 0, months = 0;
  for (int m = 1; m <= 12; m++)
    if (c->months >> m & 1) {
      months++;
      if (month_days(2000, m) > longest) longest = month_days(2000, m);
    }
  for (int d = 1; d <= longest; d++)
    if (c->days >> d & 1) return true;
  eng__buf b = {0};
  eng__buf_adds(&b, "(");
  for (int m = 1; m <= 12; m++) {
    if (!(c->months >> m & 1)) continue;
    k++;
    eng__buf_addf(&b, "%s%s", k == 1 ? "" : k == months ? " and " : ", ",
                  month_full[m - 1]);
  }
  eng__buf_addf(&b, " %s no ", months == 1 ? "has" : "have");
  int first = 0;
  for (int d = longest + 1; d <= 31; d++) {
    if (!(c->days >> d & 1)) continue;
    eng__buf_addf(&b, "%s%d%s", first ? " or " : "", d, ordinal(d));
    if (!first) first = d;
  }
  snprintf(why, n, "%s); write a day from 1 to %d%s, or add a month that has "
                   "a %d%s",
           b.data, longest == 29 ? 28 : longest,
           longest == 29 ? " (the 29th only fires in leap years)" : "", first,
           ordinal(first));
  eng__buf_free(&b);
  return false;
}

static bool cron_day(const cron_spec *c, int m, int d, int wday) {
  if (!(c->months >> m & 1)) return false;
  bool dom = c->days >> d & 1, dow = c->weekdays >> wday & 1;
  return c->days_star || c->weekdays_star ? dom && dow : dom || dow;
}

/* The first time on the local day y-m-d after `after` at which c fires;
 * false when none. A local time that a clock change skips is none. */
static bool cron_time_on(const cron_spec *c, int y, int m, int d, time_t after,
                         time_t *next) {
  for (int h = 0; h < 24; h++) {
    if (!(c->hours >> h & 1)) continue;
    for (int mi = 0; mi < 60; mi++) {
      if (!(c->minutes >> mi & 1)) continue;
      struct tm tm = {.tm_year = y - 1900, .tm_mon = m - 1, .tm_mday = d,
                      .tm_hour = h, .tm_min = mi, .tm_isdst = -1};
      time_t t = mktime(&tm);
      if (t == (time_t)-1 || tm.tm_mday != d || tm.tm_hour != h || tm.tm_min != mi)
        continue;
      if (t > after) {
        *next = t;
        return true;
      }
    }
  }
  return false;
}

/* The first time after `after` at which c fires in the process's time zone
 * (TZ: eng__zone_enter), looking as far ahead as Kubernetes does; false when
 * there is none. */
bool eng__cron_next(const cron_spec *c, time_t after, time_t *next) {
  struct tm now;
  if (!localtime_r(&after, &now)) return false;
  int y = now.tm_year + 1900, m = now.tm_mon + 1, d = now.tm_mday;
  int wday = now.tm_wday, end = y + CRON_HORIZON_YEARS;
  while (y <= end) {
    if (cron_day(c, m, d, wday) && cron_time_on(c, y, m, d, after, next))
      return true;
    wday = (wday + 1) % 7;
    if (++d > month_days(y, m)) {
      d = 1;
      if (++m > 12) {
        m = 1;
        y++;
      }
    }
  }
  return false;
}

/* ---- time zones -------------------------------------------------------------- */

/* Whether the tz database here has zone (glibc reads TZDIR, else
 * /usr/share/zoneinfo): a file that starts as a TZif file does. */
static bool zone_known(const char *zone) {
  if (!strcmp(zone, "UTC")) return true;
  const char *dir = getenv("TZDIR");
  char *path = eng__asprintf("%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo",
                             zone);
  char magic[4] = {0};
  FILE *fp = fopen(path, "rb");
  bool ok = fp && fread(magic, 1, 4, fp) == 4 && !memcmp(magic, "TZif", 4);
  if (fp) fclose(fp);
  free(path);
  return ok;
}

bool eng__zone_enter(const char *zone, zone_scope *z) {
  z->saved = NULL;
  z->entered = false;
  if (!zone_known(zone)) return false;
  const char *old = getenv("TZ");
  z->saved = old ? eng__xstrdup(old) : NULL;
  /* a POSIX rule for UTC: no tz database needed */
  setenv("TZ", strcmp(zone, "UTC") ? zone : "UTC0", 1);
  tzset();
  z->entered = true;
  return true;
}

void eng__zone_leave(zone_scope *z) {
  if (!z->entered) return;
  if (z->saved) setenv("TZ", z->saved, 1);
  else unsetenv("TZ");
  tzset();
  free(z->saved);
  z->entered = false;
}

static bool plain_number(const char *s, long *v) {
  if (!*s || strlen(s) > 2) return false;
  char *end;
  *v = strtol(s, &end, 10);
  return *end == '\0';
}

/* The schedule offset by `minutes`, or NULL when the minute field is not
 * a plain number (why says so). The minute carries into a numeric hour
 * field; past midnight only when the day fields are all '*'. Without a
 * numeric hour the minute wraps within the hour. */
char *eng__cron_shift(const char *s, long minutes, char *why, size_t n) {
  char *f[5];
  if (s[0] == '@' || !cron_split(s, f, why, n)) {
    snprintf(why, n, "it is a macro; write it as five fields to have it "
                     "spread");
    return NULL;
  }
  char *out = NULL;
  long m, h;
  if (!plain_number(f[0], &m)) {
    snprintf(why, n, "its minute field '%s' is not a plain number", f[0]);
  } else if (plain_number(f[1], &h)) {
    long total = h * 60 + m + minutes;
    bool days_any = !strcmp(f[2], "*") && !strcmp(f[3], "*") &&
                    (!strcmp(f[4], "*") || !strcmp(f[4], "?"));
    if (total >= 24 * 60 && !days_any)
      snprintf(why, n, "the offset would carry past midnight into another "
                       "day and its day fields are not '*'");
    else
      out = eng__asprintf("%ld %ld %s %s %s", total % 60, (total / 60) % 24,
                          f[2], f[3], f[4]);
  } else {
    out = eng__asprintf("%ld %s %s %s %s", (m + minutes) % 60, f[1], f[2],
                        f[3], f[4]);
  }
  for (int i = 0; i < 5; i++) free(f[i]);
  return out;
}
