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
#include "base/base.h"

static const char *const keys[] = {"user", "password", "host", "port", "dbname"};

/* A list of empty ports (",", libpq's reading of a multi-host URL without
 * ports) means the default port, as no port does. */
static int no_port(const char *p) {
  return !p || strspn(p, ",") == strlen(p);
}

/* One port for several hosts is that port for each ("5432" is
 * "5432,5432" for two hosts). */
static int one_port_each(const char *one, const char *list) {
  if (!one || !list || strchr(one, ',') || !*one) return 0;
  size_t n = strlen(one);
  for (const char *p = list;; p += n + 1) {
    if (strncmp(p, one, n) || (p[n] != ',' && p[n] != '\0')) return 0;
    if (p[n] == '\0') return 1;
  }
}

static int same(const char *key, const char *a, const char *b) {
  if (!strcmp(key, "port") && no_port(a) && no_port(b)) return 1;
  if (!strcmp(key, "port") && one_port_each(a, b)) return 1;
  if (!a || !*a) return !b || !*b;
  return b && !strcmp(a, b);
}



int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  char *s = malloc(size + 1);
  memcpy(s, data, size);
  s[size] = '\0';
  PQconninfoOption *o = pg_ci_parse(s, NULL);
  if (o && !pg_ci_ports_ok(o)) { /* refused by every action (pg_ci_check) */
    PQconninfoFree(o);
    o = NULL;
  }
  if (o) {
    char *u = pg_ci_url(o, NULL);
    PQconninfoOption *o2 = pg_ci_parse(u, NULL);
    if (!o2) abort(); /* the rebuilt URL does not parse */
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
      if (!same(keys[i], pg_ci_get(o, keys[i]), pg_ci_get(o2, keys[i]))) abort();
    PQconninfoFree(o2);
    const char *pw = pg_ci_get(o, "password");
    /* the display form does not depend on the password: it is the same
     * with the password taken out */
    char *d = pg_ci_display(o);
    for (PQconninfoOption *p = o; p->keyword; p++)
      if (!strcmp(p->keyword, "password") && p->val) {
        char *saved = p->val;
        p->val = NULL;
        char *d2 = pg_ci_display(o);
        p->val = saved;
        if (strcmp(d, d2)) abort(); /* the password shows */
        free(d2);
      }
    free(d);
    /* the core's generic masking, on the URL the plugin would log */
    char *m = eng__redact(NULL, u);
    /* the password where the rebuilt URL holds it (":PASSWORD@" after the
     * user) must be gone after masking */
    const char *at = strchr(u + strlen("postgresql://"), '@');
    const char *colon = at ? memchr(u + strlen("postgresql://"), ':',
                                    (size_t)(at - u) - strlen("postgresql://"))
                           : NULL;
    if (pw && *pw && colon && colon + 1 < at) {
      size_t n = (size_t)(at - colon + 1); /* ":PASSWORD@" */
      char *held = malloc(n + 1);
      memcpy(held, colon, n);
      held[n] = '\0';
      if (strstr(m, held)) abort(); /* the password was not masked */
      free(held);
    }
    free(m);
    free(u);
    PQconninfoFree(o);
  }
  char *m = eng__redact(NULL, s);
  free(m);
  free(s);
  return 0;
}
