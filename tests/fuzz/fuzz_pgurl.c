/* libFuzzer: connection strings (postgresql:// URLs and key=value) as the
 * postgres plugin reads and rebuilds them (pg_url.c over libpq's parser)
 * and as the core masks them (redact.c). Properties:
 *  - a URL the plugin rebuilds parses again to the same user, password,
 *    host, port and database (derived URLs point where the original did);
 *  - the display form never holds the password;
 *  - the core's masking leaves no password of a URL it parsed. */
#include <stdlib.h>
#include <string.h>

#include "pg_int.h"
#include "engine_int.h"

static const char *const keys[] = {"user", "password", "host", "port", "dbname"};

/* A list of empty ports (",", libpq's reading of a multi-host URL without
 * ports) means the default port, as no port does. */
static int no_port(const char *p) {
  return !p || strspn(p, ",") == strlen(p);
}

static int same(const char *key, const char *a, const char *b) {
  if (!strcmp(key, "port") && no_port(a) && no_port(b)) return 1;
  if (!a || !*a) return !b || !*b;
  return b && !strcmp(a, b);
}

/* s holds needle somewhere else than as its own password. */
static int elsewhere(const PQconninfoOption *o, const char *needle) {
  for (const PQconninfoOption *p = o; p && p->keyword; p++)
    if (strcmp(p->keyword, "password") && p->val && strstr(p->val, needle))
      return 1;
  return 0;
}

static size_t count(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  char *s = malloc(size + 1);
  memcpy(s, data, size);
  s[size] = '\0';
  PQconninfoOption *o = pg_ci_parse(s, NULL);
  if (o) {
    char *u = pg_ci_url(o, NULL);
    PQconninfoOption *o2 = pg_ci_parse(u, NULL);
    if (!o2) abort(); /* the rebuilt URL does not parse */
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
      if (!same(keys[i], pg_ci_get(o, keys[i]), pg_ci_get(o2, keys[i]))) abort();
    PQconninfoFree(o2);
    const char *pw = pg_ci_get(o, "password");
    char *d = pg_ci_display(o);
    /* (short ones may be part of the defaults shown: localhost:5432) */
    if (pw && strlen(pw) >= 3 && !elsewhere(o, pw) &&
        !strstr("localhost:5432", pw) && strstr(d, pw))
      abort();
    free(d);
    /* the core's generic masking, on the URL the plugin would log */
    char *m = eng__redact(NULL, u);
    /* (a password that is part of the URL's own words, "password=", is
     * found there after masking too) */
    if (pw && strlen(pw) >= 3 && !elsewhere(o, pw) && count(u, pw) > 0 &&
        !strstr("postgresql://?password=&", pw) && count(m, pw) >= count(u, pw))
      abort(); /* the password in the URL's user part was not masked */
    free(m);
    free(u);
    PQconninfoFree(o);
  }
  char *m = eng__redact(NULL, s);
  free(m);
  free(s);
  return 0;
}
