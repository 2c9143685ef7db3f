/*
 * fleet/cron.h - the schedules of CronJobs (cron.c), as Kubernetes reads
 * them, and time zones for the arithmetic; used by fleet.c only.
 */
#ifndef ENGINE_CRON_H
#define ENGINE_CRON_H

#include <time.h>
#include "base/base.h"

/* The library looks this many years past the current one for a next time
 * and gives up: a schedule with no time in them never runs, and render
 * refuses it. */
#define CRON_HORIZON_YEARS 5
/* The times the render summary shows per CronJob. */
#define NEXT_RUNS 3

/* When a schedule fires: bit v of a field for value v. */
typedef struct cron_spec {
  uint64_t minutes, hours, days, months, weekdays; /* weekdays: 0 Sunday */
  bool days_star, weekdays_star; /* '*' or '?': the day fields AND-ed */
} cron_spec;

/* The process's time zone (TZ, which mktime and localtime_r follow) set
 * to a CronJob's for the cron arithmetic, and put back by zone_leave.
 * The render is single-threaded: nothing else reads the time zone
 * meanwhile. */
typedef struct zone_scope {
  char *saved; /* TZ before (malloc'd), NULL when it was unset */
  bool entered;
} zone_scope;

/* Whether some month the schedule names has a day it names (leap years
 * count: February has a 29th); false with the months, the days and the
 * fix in why. Only days restricted with weekdays '*' can miss: the
 * weekdays are OR-ed in otherwise, and every month has every weekday. */
bool eng__cron_days_exist(const cron_spec *c, char *why, size_t n);
/* The first time after `after` at which c fires in the process's time zone
 * (TZ: zone_enter), looking as far ahead as Kubernetes does; false when
 * there is none. */
bool eng__cron_next(const cron_spec *c, time_t after, time_t *next);
/* A schedule's text into when it fires; false with the reason in why. */
bool eng__cron_parse(const char *s, cron_spec *c, char *why, size_t n);
/* The schedule offset by `minutes`, or NULL when the minute field is not
 * a plain number (why says so). The minute carries into a numeric hour
 * field; past midnight only when the day fields are all '*'. Without a
 * numeric hour the minute wraps within the hour. */
char *eng__cron_shift(const char *s, long minutes, char *why, size_t n);
bool eng__zone_enter(const char *zone, zone_scope *z);
void eng__zone_leave(zone_scope *z);

#endif /* ENGINE_CRON_H */
