/*
 * aws_pick.c - choosing one recovery point among many (objects in a bucket,
 * snapshots of an instance): `pick: latest | random_within:DURATION | none`.
 * Restore testing wants either the newest point or, to cover older ones
 * over time, a random one inside a window.
 */
#include "aws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* "7d", "36h", "1h30m", "90s", "2w" or seconds; -1 when invalid. */
int64_t aws_parse_duration(const char *s) {
  int64_t total = 0;
  if (!*s) return -1;
  while (*s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return -1;
    int64_t mult = 1;
    if (!*end) {
      total += (int64_t)v;
      break;
    }
    if (*end == 'm' && end[1] == 's') {
      mult = 0; /* milliseconds round down */
      end += 2;
    } else {
      switch (*end) {
      case 's': mult = 1; break;
      case 'm': mult = 60; break;
      case 'h': mult = 3600; break;
      case 'd': mult = 86400; break;
      case 'w': mult = 7 * 86400; break;
      default: return -1;
      }
      end++;
    }
    total += (int64_t)(v * (double)mult);
    s = end;
  }
  return total;
}

/* The forms of `pick` (shared by its check and list_start). */
int aws_pick_parse(const char *s, int64_t *within_s, char *err,
                      size_t errlen) {
  if (!strcmp(s, "latest") || !strcmp(s, "none")) return 0;
  if (!strncmp(s, "random_within:", 14) &&
      (*within_s = aws_parse_duration(s + 14)) >= 0)
    return 0;
  snprintf(err, errlen,
           "pick '%s' is not latest, none or random_within:DURATION (e.g. "
           "random_within:7d)%s",
           s, !strncmp(s, "random", 6) && !strchr(s, ':')
                  ? " (did you mean 'random_within:7d'?)" : "");
  return -1;
}

long aws_pick(const char *pick, int64_t within_s, const int64_t *times,
              const char *const *names, size_t n, int64_t now) {
  long best = -1;
  if (!strcmp(pick, "none")) return -1;
  if (!strcmp(pick, "latest")) {
    for (size_t i = 0; i < n; i++)
      if (best < 0 || times[i] > times[best] ||
          (times[i] == times[best] && strcmp(names[i], names[best]) > 0))
        best = (long)i;
    return best;
  }
  size_t m = 0;
  long *in = eng_xcalloc(n, sizeof *in);
  for (size_t i = 0; i < n; i++)
    if (now - times[i] <= within_s) in[m++] = (long)i;
  if (m) {
    const char *seed = getenv("ENGINE_TEST_SEED");
    unsigned s = seed && *seed ? (unsigned)strtoul(seed, NULL, 10)
                               : (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(s);
    best = in[(size_t)rand() % m];
  }
  free(in);
  return best;
}
