/* fleet.c - `engine fleet render`: an inventory of databases read and
 * checked (its keys, names, schedules, runbooks and what each database's
 * pod gives its run); manifest.c writes its Kubernetes objects.
 * docs/fleet.md describes the inventory and every setting. */
#include "fleet/fleet_int.h"
#include "fleet/cron.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef ENG_VERSION
#define ENG_VERSION "0.0.0"
#endif

#define NAME_MAX_LEN 40 /* "engine-" + name stays within a CronJob's 52 */
#define CONFIGMAP_MAX (1000u * 1000u) /* a ConfigMap holds at most 1 MiB */
/* A finished Job and its pod (their logs) are kept this long. */
#define JOB_TTL_DEFAULT_MS (7 * ENG__DAY_MS)
/* The pod's default requests and memory limit, measured (docs/fleet.md):
 * the engine with pg_dump and pg_restore -j 4 of a restore drill. */
#define REQ_CPU_DEFAULT "500m"
#define REQ_MEM_DEFAULT "128Mi"
#define LIM_MEM_DEFAULT "512Mi"
/* The scratch emptyDir (/tmp: dumps, downloads) may hold this much. */
#define SCRATCH_DEFAULT "20Gi"


const char *const eng__fleet_image_runbooks[] = {
    "backup-verify.yaml",  "backup-with-checksum.yaml",
    "check-prod-volume.yaml",  "health-check.yaml",
    "maintenance.yaml",  "managed-restore-test.yaml",
    "migrate-deploy.yaml",  "migration-rehearsal.yaml",
    "pitr-drill.yaml",  "recover-from-volume.yaml",
    "restore-drill.yaml",  "restore-from-s3.yaml",
    NULL};

/* ---- checks of single values ------------------------------------------- */

static bool is_dns_label(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              (c == '-' && i > 0 && i + 1 < n);
    if (!ok) return false;
  }
  return true;
}

/* A Secret's or namespace's name: a DNS subdomain (labels joined by '.'). */
static bool is_dns_subdomain(const char *s) {
  if (!*s || strlen(s) > 253) return false;
  const char *p = s;
  while (true) {
    const char *dot = strchr(p, '.');
    size_t n = dot ? (size_t)(dot - p) : strlen(p);
    char label[254];
    memcpy(label, p, n);
    label[n] = '\0';
    if (!is_dns_label(label, 63)) return false;
    if (!dot) return true;
    p = dot + 1;
  }
}

static bool is_param_name(const char *s) {
  if (!*s || (*s >= '0' && *s <= '9')) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
      return false;
  return true;
}

/* s3://BUCKET/PREFIX: the bucket a valid S3 bucket name. */
static bool is_state_url(const char *s, const char **why) {
  if (strncmp(s, "s3://", 5) != 0) {
    *why = "must be an s3://bucket/prefix URL: a pod's own disk goes away "
           "with the pod, and the lock and `engine runs` need one store "
           "every run shares";
    return false;
  }
  const char *b = s + 5, *slash = strchr(b, '/');
  size_t n = slash ? (size_t)(slash - b) : strlen(b);
  if (n < 3 || n > 63) {
    *why = "names no bucket (3 to 63 characters after s3://)";
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    char c = b[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '.')) {
      *why = "has a bucket name with characters other than a-z, 0-9, '-' "
             "and '.'";
      return false;
    }
  }
  for (const char *p = s; *p; p++) {
    if ((unsigned char)*p <= ' ' || *p == '@' || *p == '?' || *p == '#') {
      *why = "may hold no spaces, credentials ('@'), query or fragment";
      return false;
    }
  }
  return true;
}

static bool is_time_zone(const char *s) {
  if (!*s || strlen(s) > 64 || *s == '/' || strstr(s, "..")) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || strchr("/_+-", *s)))
      return false;
  return true;
}

/* A ConfigMap's or Secret's key (a runbook's file name): [-._a-zA-Z0-9]+. */
static bool is_configmap_key(const char *s) {
  if (!*s || strlen(s) > 253 || !strcmp(s, ".") || !strcmp(s, "..")) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || strchr("-._", *s)))
      return false;
  return true;
}


const char *eng__fleet_base_name(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}


static bool has_url_password(const char *s) {
  const char *p = strstr(s, "://");
  if (!p) return false;
  p += 3;
  const char *at = strchr(p, '@'), *colon = strchr(p, ':'),
             *slash = strchr(p, '/');
  return at && colon && colon < at && (!slash || at < slash);
}


/* ---- reading the inventory ------------------------------------------------ */

typedef struct reader {
  const char *file;
  eng__diags *d;
  const fleet_defaults *def; /* read before the databases */
  const char *image_dir;     /* the image's runbooks here, or NULL */
} reader;

static void unknown_key(reader *r, const eng__node *k, const char *where,
                        const char *const *keys, size_t n) {
  const char *hint = eng__suggest(k->str, keys, n);
  eng__buf list = {0};
  for (size_t i = 0; i < n; i++)
    eng__buf_addf(&list, "%s%s", i ? ", " : "", keys[i]);
  if (hint)
    eng__diag_error(r->d, r->file, k->line, k->col,
                    "unknown key '%s' in %s (did you mean '%s'?)", k->str,
                    where, hint);
  else
    eng__diag_error(r->d, r->file, k->line, k->col,
                    "unknown key '%s' in %s; the keys are: %s", k->str, where,
                    list.data);
  eng__buf_free(&list);
}

/* Every key of map one of keys; false (with errors) otherwise. */
static bool known_keys(reader *r, const eng__node *map, const char *where,
                       const char *const *keys) {
  size_t n = 0;
  while (keys[n]) n++;
  bool ok = true;
  for (size_t i = 0; i < map->n; i++) {
    bool found = false;
    for (size_t k = 0; k < n && !found; k++) found = !strcmp(map->keys[i]->str, keys[k]);
    if (!found) {
      unknown_key(r, map->keys[i], where, keys, n);
      ok = false;
    }
  }
  return ok;
}

/* A scalar's text, or NULL with an error naming the key. */
static const char *scalar(reader *r, const eng__node *v, const char *key,
                          const char *where) {
  if (v->kind != ENG__N_SCALAR) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "%s: '%s' must be a single value, not %s", where, key,
                    eng__node_kind_name(v));
    return NULL;
  }
  return v->str;
}

static bool duration_key(reader *r, const eng__node *v, const char *key,
                         const char *where, int64_t min_ms, int64_t max_ms,
                         int64_t *out) {
  const char *s = scalar(r, v, key, where);
  if (!s) return false;
  int64_t ms;
  if (eng__parse_duration(s, &ms) != 0 || ms < min_ms || ms > max_ms) {
    char a[32], b[32];
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "%s: '%s' needs a duration from %s to %s such as "
                    "30s, 10m or 2h, got '%s'",
                    where, key, eng__fmt_duration(min_ms, a, sizeof a),
                    eng__fmt_duration(max_ms, b, sizeof b), s);
    return false;
  }
  *out = ms;
  return true;
}

static bool number_key(reader *r, const eng__node *v, const char *key,
                       const char *where, long lo, long hi, long *out) {
  const char *s = scalar(r, v, key, where);
  if (!s) return false;
  char *end;
  errno = 0;
  long x = strtol(s, &end, 10);
  if (!*s || *end || errno || x < lo || x > hi) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "%s: '%s' needs a whole number from %ld to %ld, "
                    "got '%s'",
                    where, key, lo, hi, s);
    return false;
  }
  *out = x;
  return true;
}

static bool secret_name_key(reader *r, const eng__node *v, const char *key,
                            const char *where, bool may_be_empty,
                            const char **out) {
  const char *s = scalar(r, v, key, where);
  if (!s) return false;
  if (may_be_empty && !*s) {
    *out = s;
    return true;
  }
  if (!is_dns_subdomain(s)) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "%s: '%s' must name a Kubernetes Secret (lower-case "
                    "letters, digits, '-' and '.'), got '%s'",
                    where, key, s);
    return false;
  }
  *out = s;
  return true;
}

/* defaults.pushgateway: an http(s) URL without a password (it is written
 * into the CronJob's arguments, which are no secret). */
static bool pushgateway_key(reader *r, const eng__node *v,
                            fleet_defaults *def) {
  const char *s = scalar(r, v, "pushgateway", "defaults");
  if (!s) return false;
  const char *host = !strncmp(s, "http://", 7) ? s + 7
                     : !strncmp(s, "https://", 8) ? s + 8 : NULL;
  const char *at = host ? strchr(host, '@') : NULL;
  if (!host || !host[0] || host[0] == '/' || (at && !memchr(host, '/', (size_t)(at - host)))) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "defaults: 'pushgateway' must be the Pushgateway's "
                    "http:// or https:// URL without credentials (they "
                    "would be in the CronJob's arguments), e.g. "
                    "http://pushgateway.monitoring:9091");
    return false;
  }
  def->pushgateway = s;
  return true;
}

static const char *const top_keys[] = {"databases", "defaults", NULL};
static const char *const default_keys[] = {
    "image",           "image_pull_policy", "state",         "time_zone",
    "namespace",       "aws_secret",        "slack_secret",  "audit_secret",
    "grace",           "active_deadline",   "starting_deadline",
    "job_ttl",         "backoff_limit",     "spread",        "env",
    "jobs",            "resources",         "scratch_size",  "pushgateway",
    NULL};
static const char *const db_keys[] = {
    "name", "url_secret", "schedule",          "runbook", "params", "env",
    "approve", "allow_destructive", "lock", "grace",  "jobs",   "resources",
    "scratch_size", NULL};
static const char *const env_value_keys[] = {"secret", "key", NULL};
static const char *const resources_keys[] = {"requests", "limits", NULL};
static const char *const quantity_keys[] = {"cpu", "memory", NULL};

/* Every mapping of an inventory with fixed keys, by its place (as
 * eng__runbook_keysets): what the reader accepts and `engine schema
 * --inventory` describes. */
const eng__keyset eng__fleet_keysets[] = {{"", top_keys},
                                          {"defaults", default_keys},
                                          {"databases[]", db_keys},
                                          {"defaults.env.*", env_value_keys},
                                          {"defaults.resources", resources_keys},
                                          {"defaults.resources.requests", quantity_keys},
                                          {"defaults.resources.limits", quantity_keys},
                                          {"databases[].env.*", env_value_keys},
                                          {"databases[].resources", resources_keys},
                                          {"databases[].resources.requests", quantity_keys},
                                          {"databases[].resources.limits", quantity_keys},
                                          {NULL, NULL}};

/* ---- what a pod gets: shared by defaults and databases ------------------- */

/* Variables render sets itself: the inventory may not set them. */
static const char *const render_env[N_RENDER_ENV] = {
    "DATABASE_URL", "ENGINE_STATE_DIR", "ENGINE_LOG_FORMAT", "HOME", "TMPDIR"};

static bool is_env_name(const char *s) {
  if (!*s || (*s >= '0' && *s <= '9')) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || *s == '_'))
      return false;
  return true;
}

/* One variable of `env`: a value written here, or { secret: NAME, key: KEY }
 * (key: the variable's name when left out). */
/* A variable whose name says it holds a credential. */
static bool is_secret_name(const char *name) {
  static const char *const words[] = {"PASSWORD", "SECRET", "TOKEN", "_KEY",
                                      "WEBHOOK", "CREDENTIAL"};
  for (size_t i = 0; i < sizeof words / sizeof *words; i++)
    if (strstr(name, words[i])) return true;
  return false;
}

static bool env_value(reader *r, const char *where, const eng__node *k,
                      const eng__node *v) {
  if (v->kind == ENG__N_SCALAR && is_secret_name(k->str)) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "%s: %s names a credential: never write its value in "
                    "the inventory; write %s: { secret: NAME, key: KEY }",
                    where, k->str, k->str);
    return false;
  }
  if (v->kind == ENG__N_SCALAR) {
    if (!has_url_password(v->str)) return true;
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "%s: %s holds a URL with a password: never put "
                    "credentials in the inventory; write %s: { secret: "
                    "NAME, key: KEY }",
                    where, k->str, k->str);
    return false;
  }
  const eng__node *sec = v->kind == ENG__N_MAP ? eng__node_get(v, "secret") : NULL;
  if (!sec) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "%s: %s must be a value or { secret: NAME, key: KEY } "
                    "(a key of a Kubernetes Secret)",
                    where, k->str);
    return false;
  }
  bool ok = known_keys(r, v, "an env value", env_value_keys);
  const char *name;
  ok &= secret_name_key(r, sec, "secret", where, false, &name);
  const eng__node *key = eng__node_get(v, "key");
  const char *ks = key ? scalar(r, key, "key", where) : NULL;
  if (key && (!ks || !is_configmap_key(ks))) {
    if (ks)
      eng__diag_error(r->d, r->file, key->line, key->col,
                      "%s: '%s' is not a Secret's key (letters, digits, "
                      "'-', '_' and '.')",
                      where, ks);
    ok = false;
  }
  return ok;
}

/* `env`: a mapping of variable names to values or Secret keys. */
static bool env_key(reader *r, const eng__node *m, const char *where,
                    fleet_pod *pod) {
  if (m->kind != ENG__N_MAP) {
    eng__diag_error(r->d, r->file, m->line, m->col,
                    "%s: 'env' must be a mapping of variable names to values "
                    "or { secret: NAME, key: KEY }, not %s",
                    where, eng__node_kind_name(m));
    return false;
  }
  bool ok = true;
  pod->env = eng__xcalloc(m->n + 1, sizeof *pod->env);
  for (size_t i = 0; i < m->n; i++) {
    const eng__node *k = m->keys[i], *v = m->vals[i];
    bool reserved = false;
    for (size_t j = 0; j < N_RENDER_ENV; j++) reserved |= !strcmp(k->str, render_env[j]);
    if (!is_env_name(k->str) || reserved) {
      eng__diag_error(r->d, r->file, k->line, k->col,
                      "%s: '%s' %s", where, k->str,
                      !reserved ? "is not an environment variable name "
                                  "(letters, digits and '_', not first a digit)"
                      : !strcmp(k->str, "DATABASE_URL")
                          ? "comes from the database's url_secret: set that"
                          : "is set by render for every pod: leave it out");
      ok = false;
      continue;
    }
    if (!env_value(r, where, k, v)) {
      ok = false;
      continue;
    }
    pod->env[pod->n_env++] = (eng__pod_env){k->str, v, v->kind == ENG__N_SCALAR};
  }
  return ok;
}

/* A Kubernetes quantity as this render writes them: a number with an
 * optional suffix (cpu: m; memory: k M G T, Ki Mi Gi Ti); its value in
 * cores or bytes. */
static bool quantity(const char *s, bool cpu, double *out) {
  char *end;
  if (!(*s >= '0' && *s <= '9')) return false;
  double x = strtod(s, &end);
  static const char *const mem[] = {"", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"};
  static const double mul[] = {1, 1e3, 1e6, 1e9, 1e12, 1024.0, 1048576.0,
                               1073741824.0, 1099511627776.0};
  if (cpu) {
    if (*end && strcmp(end, "m")) return false;
    *out = *end ? x / 1000 : x;
    return x > 0;
  }
  for (size_t i = 0; i < sizeof mem / sizeof *mem; i++)
    if (!strcmp(end, mem[i])) {
      *out = x * mul[i];
      return x > 0;
    }
  return false;
}

static bool quantity_key(reader *r, const eng__node *v, const char *key,
                         const char *where, bool cpu, const char **out) {
  const char *s = scalar(r, v, key, where);
  double x;
  if (!s) return false;
  if (!quantity(s, cpu, &x)) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "%s: '%s' needs a Kubernetes quantity such as %s, got '%s'",
                    where, key, cpu ? "500m or 2 (cores)" : "512Mi or 2Gi", s);
    return false;
  }
  *out = s;
  return true;
}

/* `resources: { requests: { cpu, memory }, limits: { cpu, memory } }`:
 * each value given replaces the default's. */
static bool resources_key(reader *r, const eng__node *m, const char *where,
                          fleet_pod *pod) {
  static const char *const *const top = resources_keys, *const *const kinds = quantity_keys;
  if (m->kind != ENG__N_MAP) {
    eng__diag_error(r->d, r->file, m->line, m->col,
                    "%s: 'resources' must be a mapping: { requests: { cpu: "
                    "500m, memory: 512Mi }, limits: { memory: 2Gi } }",
                    where);
    return false;
  }
  bool ok = known_keys(r, m, "resources", resources_keys);
  for (size_t t = 0; t < 2; t++) {
    const eng__node *x = eng__node_get(m, top[t]);
    if (!x) continue;
    if (x->kind != ENG__N_MAP) {
      eng__diag_error(r->d, r->file, x->line, x->col,
                      "%s: 'resources.%s' must be a mapping (cpu, memory)",
                      where, top[t]);
      ok = false;
      continue;
    }
    ok &= known_keys(r, x, top[t], quantity_keys);
    for (size_t k = 0; k < 2; k++) {
      const eng__node *v = eng__node_get(x, kinds[k]);
      if (v) ok &= quantity_key(r, v, kinds[k], where, k == 0, &pod->res[t * 2 + k]);
    }
  }
  return ok;
}

/* A limit below its request: Kubernetes refuses the pod. */
static bool resources_fit(reader *r, const fleet_pod *pod, const char *where,
                          const eng__node *at) {
  bool ok = true;
  for (size_t k = 0; k < 2; k++) {
    double req, lim;
    const char *q = pod->res[k], *l = pod->res[2 + k];
    if (!q || !l || !quantity(q, k == 0, &req) || !quantity(l, k == 0, &lim) ||
        lim >= req)
      continue;
    eng__diag_error(r->d, r->file, at->line, at->col,
                    "%s: the %s limit %s is below its request %s: Kubernetes "
                    "refuses such a pod; raise resources.limits.%s",
                    where, k ? "memory" : "cpu", l, q, k ? "memory" : "cpu");
    ok = false;
  }
  return ok;
}

static const char *const pod_keys[] = {"grace", "jobs", "env", "resources",
                                       "scratch_size", NULL};

static bool is_pod_key(const char *k) {
  for (size_t i = 0; pod_keys[i]; i++)
    if (!strcmp(k, pod_keys[i])) return true;
  return false;
}

/* One of pod_keys, in defaults or a database. */
static bool pod_key(reader *r, const char *k, const eng__node *v,
                    const char *where, fleet_pod *pod) {
  if (!strcmp(k, "grace"))
    return duration_key(r, v, k, where, 1000, 3600000, &pod->grace_ms);
  if (!strcmp(k, "jobs")) return number_key(r, v, k, where, 1, 64, &pod->jobs);
  if (!strcmp(k, "env")) return env_key(r, v, where, pod);
  if (!strcmp(k, "resources")) return resources_key(r, v, where, pod);
  return quantity_key(r, v, k, where, false, &pod->scratch);
}

static bool image_key(reader *r, const eng__node *v, fleet_defaults *def) {
  const char *s = scalar(r, v, "image", "defaults");
  if (!s) return false;
  if (!*s || strpbrk(s, " \t\n")) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "defaults: 'image' must be an image reference such as "
                    "registry.example.com/engine:%s",
                    ENG_VERSION);
    return false;
  }
  def->image = s;
  return true;
}

static bool pull_policy_key(reader *r, const eng__node *v,
                            fleet_defaults *def) {
  const char *s = scalar(r, v, "image_pull_policy", "defaults");
  if (!s) return false;
  if (strcmp(s, "IfNotPresent") && strcmp(s, "Always") && strcmp(s, "Never")) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "defaults: 'image_pull_policy' is IfNotPresent, Always "
                    "or Never, got '%s'",
                    s);
    return false;
  }
  def->pull_policy = s;
  return true;
}


static bool read_defaults(reader *r, const eng__node *m, fleet_defaults *def,
                          const eng__node *root) {
  if (!m) {
    eng__diag_error(r->d, r->file, root->line, root->col,
                    "no 'defaults.state': add defaults: { state: "
                    "s3://BUCKET/PREFIX } where every run records its "
                    "journal, audit log and lock");
    return false;
  }
  if (m->kind != ENG__N_MAP) {
    eng__diag_error(r->d, r->file, m->line, m->col,
                    "'defaults' must be a mapping (image, state, time_zone, "
                    "...), not %s",
                    eng__node_kind_name(m));
    return false;
  }
  bool ok = known_keys(r, m, "defaults", default_keys);
  bool times_ok = true; /* grace and active_deadline, to compare them */
  for (size_t i = 0; i < m->n; i++) {
    const char *k = m->keys[i]->str;
    const eng__node *v = m->vals[i];
    const char *s, *why;
    if (!strcmp(k, "image")) {
      ok &= image_key(r, v, def);
    } else if (!strcmp(k, "state")) {
      if (!(s = scalar(r, v, k, "defaults"))) ok = false;
      else if (!is_state_url(s, &why)) {
        eng__diag_error(r->d, r->file, v->line, v->col,
                        "defaults: 'state' %s (got '%s'); write "
                        "s3://BUCKET/PREFIX",
                        why, s);
        ok = false;
      } else def->state = s;
    } else if (!strcmp(k, "time_zone")) {
      if (!(s = scalar(r, v, k, "defaults"))) ok = false;
      else if (!is_time_zone(s)) {
        eng__diag_error(r->d, r->file, v->line, v->col,
                        "defaults: 'time_zone' must be a tz database name "
                        "such as UTC or Europe/Berlin, got '%s'",
                        s);
        ok = false;
      } else def->time_zone = s;
    } else if (!strcmp(k, "namespace")) {
      if (!(s = scalar(r, v, k, "defaults"))) ok = false;
      else if (!is_dns_label(s, 63)) {
        eng__diag_error(r->d, r->file, v->line, v->col,
                        "defaults: 'namespace' must be a Kubernetes "
                        "namespace name (lower-case letters, digits and "
                        "'-', at most 63), got '%s'",
                        s);
        ok = false;
      } else def->namespace = s;
    } else if (!strcmp(k, "aws_secret")) {
      ok &= secret_name_key(r, v, k, "defaults", true, &def->aws_secret);
    } else if (!strcmp(k, "slack_secret")) {
      ok &= secret_name_key(r, v, k, "defaults", true, &def->slack_secret);
    } else if (!strcmp(k, "audit_secret")) {
      ok &= secret_name_key(r, v, k, "defaults", true, &def->audit_secret);
    } else if (!strcmp(k, "grace")) {
      times_ok &= pod_key(r, k, v, "defaults", &def->pod);
    } else if (!strcmp(k, "active_deadline")) {
      times_ok &= duration_key(r, v, k, "defaults", 60000, 7 * ENG__DAY_MS,
                               &def->active_deadline_ms);
    } else if (!strcmp(k, "starting_deadline")) {
      ok &= duration_key(r, v, k, "defaults", 10000, ENG__DAY_MS,
                         &def->starting_deadline_ms);
    } else if (!strcmp(k, "job_ttl")) {
      ok &= duration_key(r, v, k, "defaults", 3600000, 30 * ENG__DAY_MS,
                         &def->job_ttl_ms);
    } else if (!strcmp(k, "backoff_limit")) {
      ok &= number_key(r, v, k, "defaults", 0, 10, &def->backoff_limit);
    } else if (!strcmp(k, "spread")) {
      ok &= number_key(r, v, k, "defaults", 0, 59, &def->spread);
    } else if (!strcmp(k, "image_pull_policy")) {
      ok &= pull_policy_key(r, v, def);
    } else if (!strcmp(k, "pushgateway")) {
      ok &= pushgateway_key(r, v, def);
    } else if (is_pod_key(k)) {
      ok &= pod_key(r, k, v, "defaults", &def->pod);
    }
  }
  ok &= times_ok;
  if (!eng__node_get(m, "state")) {
    eng__diag_error(r->d, r->file, m->line, m->col,
                    "defaults: 'state' is missing: add state: "
                    "s3://BUCKET/PREFIX where every run records its "
                    "journal, audit log and lock");
    ok = false;
  }
  if (times_ok && def->active_deadline_ms <= def->pod.grace_ms) {
    const eng__node *v = eng__node_get(m, "active_deadline");
    eng__diag_error(r->d, r->file, v ? v->line : m->line, v ? v->col : m->col,
                    "defaults: 'active_deadline' must be longer than "
                    "'grace': a run needs time before it is stopped");
    ok = false;
  }
  return ok;
}

static bool is_image_runbook(const char *name) {
  for (size_t i = 0; eng__fleet_image_runbooks[i]; i++)
    if (!strcmp(name, eng__fleet_image_runbooks[i])) return true;
  return false;
}

eng__pod_env *eng__fleet_pod_env(const fleet_defaults *def, const fleet_db *db,
                                 size_t *n) {
  size_t cap = N_RENDER_ENV + def->pod.n_env + db->pod.n_env;
  eng__pod_env *all = eng__xcalloc(cap, sizeof *all);
  *n = 0;
  for (size_t i = 0; i < N_RENDER_ENV; i++)
    all[(*n)++] = (eng__pod_env){render_env[i], NULL, i > 0};
  for (size_t i = 0; i < def->pod.n_env; i++) {
    bool mine = false; /* the database's own replaces a default */
    for (size_t j = 0; j < db->pod.n_env && !mine; j++)
      mine = !strcmp(db->pod.env[j].name, def->pod.env[i].name);
    if (!mine) all[(*n)++] = def->pod.env[i];
  }
  for (size_t j = 0; j < db->pod.n_env; j++) all[(*n)++] = db->pod.env[j];
  return all;
}

/* Runbook text (label names it in messages, path in the runbook's own
 * positions) checked as a runbook and against what db's pod gives it. */
static bool runbook_runs(reader *r, fleet_db *db, const char *path,
                         const char *text, size_t len, const eng__node *v,
                         bool inputs_ok) {
  size_t errors = r->d->errors;
  eng__runbook *rb = eng__runbook_parse(path, text, len, r->d);
  bool ok = rb && r->d->errors == errors;
  if (!ok)
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "database '%s': runbook %s is invalid (see above); fix "
                    "it, 'engine validate %s' checks it",
                    db->name, path, path);
  if (ok && inputs_ok) {
    eng__pod_gives g = {r->file, db->name, db->node, db->params, db->approve,
                        NULL, 0};
    eng__pod_env *env = eng__fleet_pod_env(r->def, db, &g.n_env);
    g.env = env;
    ok = eng__fleet_runnable(rb, db->runbook, &g, r->d);
    free(env);
  }
  eng__runbook_free(rb);
  return ok && inputs_ok;
}

/* A runbook the image ships (no file next to the inventory), checked
 * against the pod when this engine's copy of the image's runbooks is at
 * hand; else said with the nearest name. */
static bool image_runbook(reader *r, fleet_db *db, const char *dir,
                          const eng__node *v, bool inputs_ok) {
  const char *name = db->runbook;
  if (is_image_runbook(name)) {
    if (!r->image_dir) return inputs_ok;
    char *path = eng__asprintf("%s/%s", r->image_dir, name);
    size_t len = 0;
    char *text = eng__read_file(path, ENG__YAML_MAX_BYTES, &len);
    bool ok = false;
    if (!text)
      eng__diag_error(r->d, r->file, v->line, v->col,
                      "database '%s': cannot read %s, the image's runbook "
                      "this engine checks the database against: %s (the "
                      "engine's installation is incomplete)",
                      db->name, path, strerror(errno));
    else ok = runbook_runs(r, db, path, text, len, v, inputs_ok);
    free(text);
    free(path);
    return ok;
  }
  const char *hint = eng__suggest(name, eng__fleet_image_runbooks,
                                  sizeof eng__fleet_image_runbooks /
                                          sizeof *eng__fleet_image_runbooks -
                                      1);
  eng__diag_error(r->d, r->file, v->line, v->col,
                  "database '%s': runbook '%s' is neither a file next to "
                  "the inventory (%s/%s) nor a runbook the image ships%s%s%s",
                  db->name, name, dir ? dir : "-", name,
                  hint ? " (did you mean '" : "",
                  hint ? hint : "", hint ? "'?)" : "; 'engine fleet render "
                                                   "--help' lists them");
  return false;
}

/* The runbook file at path, read for a ConfigMap: *len bytes (malloc'd),
 * or NULL (said). */
static char *runbook_text(reader *r, fleet_db *db, const char *path,
                          const eng__node *v, size_t *len) {
  char *text = eng__read_file(path, CONFIGMAP_MAX + 1, len);
  if (!text) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "database '%s': cannot read runbook %s: %s%s", db->name,
                    path,
                    errno == EFBIG ? "larger than a ConfigMap holds (1 MB)"
                                   : strerror(errno),
                    errno == ENOENT ? " (the path is relative to the "
                                      "inventory's folder)"
                                    : "");
    return NULL;
  }
  if (!is_configmap_key(eng__fleet_base_name(path))) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "database '%s': the runbook's file name '%s' may hold "
                    "only letters, digits, '-', '_' and '.' (it becomes a "
                    "ConfigMap key): rename the file",
                    db->name, eng__fleet_base_name(path));
    free(text);
    return NULL;
  }
  return text;
}

/* The runbook a database names: a file next to the inventory (checked
 * as a runbook, then against the pod), or one the image ships. */
static bool read_runbook(reader *r, fleet_db *db, const char *dir,
                         const eng__node *v, bool inputs_ok) {
  const char *name = db->runbook;
  char *path = !dir ? NULL
               : name[0] == '/' ? eng__xstrdup(name)
                                : eng__asprintf("%s/%s", dir, name);
  struct stat st;
  bool local = dir && (strchr(name, '/') || stat(path, &st) == 0);
  if (!local) {
    free(path);
    return image_runbook(r, db, dir, v, inputs_ok);
  }
  size_t len = 0;
  char *text = runbook_text(r, db, path, v, &len);
  if (!text) {
    free(path);
    return false;
  }
  if (!runbook_runs(r, db, path, text, len, v, inputs_ok)) {
    free(text);
    free(path);
    return false;
  }
  db->runbook_path = path;
  db->runbook_text = text;
  return true;
}

static bool read_params(reader *r, fleet_db *db, const eng__node *v) {
  if (v->kind != ENG__N_MAP) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "database '%s': 'params' must be a mapping of parameter "
                    "names to values, e.g. { restore_db: ledger_drill }",
                    db->name);
    return false;
  }
  bool ok = true;
  for (size_t i = 0; i < v->n; i++) {
    const eng__node *k = v->keys[i], *x = v->vals[i];
    if (!is_param_name(k->str)) {
      eng__diag_error(r->d, r->file, k->line, k->col,
                      "database '%s': '%s' is not a parameter name (letters, "
                      "digits, '_' and '-')",
                      db->name, k->str);
      ok = false;
    } else if (x->kind != ENG__N_SCALAR) {
      eng__diag_error(r->d, r->file, x->line, x->col,
                      "database '%s': parameter '%s' must be a single value "
                      "(text, number or true/false), not %s",
                      db->name, k->str, eng__node_kind_name(x));
      ok = false;
    } else if (has_url_password(x->str)) {
      eng__diag_error(r->d, r->file, x->line, x->col,
                      "database '%s': parameter '%s' holds a URL with a "
                      "password: never put credentials in the inventory; "
                      "keep them in a Secret",
                      db->name, k->str);
      ok = false;
    }
  }
  db->params = v;
  return ok;
}

/* A database's schedule: valid cron, and a day it names exists (the
 * time zone's own gaps are checked once the defaults are known:
 * schedules_fire). */
static bool read_schedule(reader *r, fleet_db *db, const eng__node *v) {
  db->schedule_node = v;
  const char *s = scalar(r, v, "schedule", "database");
  if (!s) return false;
  char why[320];
  cron_spec c;
  if (!eng__cron_parse(s, &c, why, sizeof why)) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "database '%s': schedule %s", db->name, why);
    return false;
  }
  if (!eng__cron_days_exist(&c, why, sizeof why)) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "database '%s': schedule '%s' never fires %s", db->name,
                    s, why);
    return false;
  }
  db->schedule = eng__xstrdup(s);
  return true;
}


/* `approve`: a list of step ids (checked against the runbook later). */
static bool read_approve(reader *r, fleet_db *db, const eng__node *v) {
  bool ok = v->kind == ENG__N_SEQ;
  for (size_t i = 0; ok && i < v->n; i++) ok = v->vals[i]->kind == ENG__N_SCALAR;
  if (!ok) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "database '%s': 'approve' must be a list of the "
                    "runbook's approve steps, e.g. [go-ahead]",
                    db->name);
    return false;
  }
  db->approve = v;
  return true;
}

/* The run's options and the pod's settings of a database (the defaults'
 * unless it gives its own). */
static bool read_db_options(reader *r, const eng__node *m, fleet_db *db) {
  bool ok = true;
  db->pod = r->def->pod;
  db->pod.env = NULL;
  db->pod.n_env = 0;
  db->where = eng__asprintf("database '%s'", db->name);
  db->lock = db->name;
  for (size_t i = 0; i < m->n; i++) {
    const char *k = m->keys[i]->str;
    const eng__node *v = m->vals[i];
    if (is_pod_key(k)) {
      ok &= pod_key(r, k, v, db->where, &db->pod);
    } else if (!strcmp(k, "approve")) {
      ok &= read_approve(r, db, v);
    } else if (!strcmp(k, "allow_destructive")) {
      const char *s = scalar(r, v, k, db->where);
      if (s && (!strcmp(s, "true") || !strcmp(s, "false"))) {
        db->allow_destructive = !strcmp(s, "true");
        continue;
      }
      if (s)
        eng__diag_error(r->d, r->file, v->line, v->col,
                        "%s: 'allow_destructive' is true or false, got '%s'",
                        db->where, s);
      ok = false;
    } else if (!strcmp(k, "lock")) {
      const char *s = scalar(r, v, k, db->where);
      if (s && eng__lock_name_ok(s)) {
        db->lock = s;
        continue;
      }
      if (s)
        eng__diag_error(r->d, r->file, v->line, v->col,
                        "%s: 'lock' must be a lock name (letters, digits, "
                        "'.', '_' and '-', 1 to 128, not first a '.'), "
                        "got '%s'",
                        db->where, s);
      ok = false;
    }
  }
  const eng__node *res = eng__node_get(m, "resources");
  if (ok && res) ok = resources_fit(r, &db->pod, db->where, res);
  const eng__node *g = eng__node_get(m, "grace");
  if (ok && g && r->def->active_deadline_ms <= db->pod.grace_ms) {
    eng__diag_error(r->d, r->file, g->line, g->col,
                    "%s: 'grace' must be shorter than defaults' "
                    "'active_deadline': a run needs time before it is stopped",
                    db->where);
    ok = false;
  }
  return ok;
}

/* Database entry i: every key present is checked, also when others are
 * missing or wrong, so that one pass says everything. db->name is what the
 * messages call it (its name as written, else "#N"); false with errors. */
static bool read_db(reader *r, const eng__node *m, size_t i, fleet_db *db,
                    const char *dir) {
  db->node = m;
  if (m->kind != ENG__N_MAP) {
    eng__diag_error(r->d, r->file, m->line, m->col,
                    "each database must be a mapping (name, url_secret, "
                    "schedule, runbook, ...), not %s",
                    eng__node_kind_name(m));
    return false;
  }
  bool ok = known_keys(r, m, "a database", db_keys);
  const eng__node *v = eng__node_get(m, "name");
  db->name = v && v->kind == ENG__N_SCALAR ? v->str : NULL;
  if (!db->name) {
    db->label = eng__asprintf("#%zu", i + 1);
    db->name = db->label;
  }
  for (size_t k = 0; k < 4; k++) {
    if (eng__node_get(m, db_keys[k])) continue;
    eng__diag_error(r->d, r->file, m->line, m->col,
                    "database '%s': '%s' is missing", db->name, db_keys[k]);
    ok = false;
  }
  if (v && !scalar(r, v, "name", "database")) {
    ok = false;
  } else if (v && !is_dns_label(db->name, NAME_MAX_LEN)) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "database name '%s' must be lower-case letters, digits "
                    "and '-' (not first or last), at most %d characters: it "
                    "names the CronJob and the lock",
                    db->name, NAME_MAX_LEN);
    ok = false;
  } else if (v) {
    db->name_ok = true;
  }
  if ((v = eng__node_get(m, "url_secret")))
    ok &= secret_name_key(r, v, "url_secret", "database", false,
                          &db->url_secret);
  if ((v = eng__node_get(m, "schedule"))) ok &= read_schedule(r, db, v);
  bool inputs_ok = read_db_options(r, m, db);
  if ((v = eng__node_get(m, "params"))) inputs_ok &= read_params(r, db, v);
  ok &= inputs_ok;
  if ((v = eng__node_get(m, "runbook"))) {
    if (!(db->runbook = scalar(r, v, "runbook", "database"))) {
      ok = false;
    } else if (!*db->runbook) {
      eng__diag_error(r->d, r->file, v->line, v->col,
                      "database '%s': 'runbook' is empty: name a runbook file",
                      db->name);
      ok = false;
    } else {
      ok &= read_runbook(r, db, dir, v, inputs_ok);
    }
  }
  return ok;
}

/* Databases that share a schedule start `spread` minutes apart, in
 * inventory order: the first keeps it, the next gets +spread, ... */
static void spread_schedules(reader *r, eng__fleet *f, bool notes) {
  if (f->def.spread == 0) return;
  for (size_t i = 0; i < f->n; i++) {
    size_t rank = 0, first = i;
    if (!f->dbs[i].schedule) continue; /* none, or a wrong one (said) */
    const char *orig = f->dbs[i].schedule_node->str;
    for (size_t j = 0; j < i; j++) {
      if (!f->dbs[j].schedule || strcmp(f->dbs[j].schedule_node->str, orig))
        continue;
      if (rank++ == 0) first = j;
    }
    if (rank == 0) continue;
    char why[200];
    char *s = eng__cron_shift(orig, (long)rank * f->def.spread, why, sizeof why);
    const eng__node *v = f->dbs[i].schedule_node;
    if (!s) {
      eng__diag_warn(r->d, r->file, v->line, v->col,
                     "database '%s' shares schedule '%s' with '%s' and keeps "
                     "it: %s",
                     f->dbs[i].name, orig, f->dbs[first].name, why);
      continue;
    }
    if (notes && !r->d->quiet)
      fprintf(stderr, "%s:%d:%d: note: database '%s' shares schedule '%s' "
                    "with '%s': it runs at '%s'\n",
            r->file, v->line, v->col, f->dbs[i].name, orig,
            f->dbs[first].name, s);
    free(f->dbs[i].schedule);
    f->dbs[i].schedule = s;
  }
}

/* Every schedule has a time in the CronJobs' time zone within the years
 * Kubernetes looks ahead (read_schedule caught days no month has; what
 * is left are times a clock change skips). A zone this machine does not
 * know is warned about and its times not checked. false with errors. */
static bool schedules_fire(reader *r, const eng__fleet *f) {
  const char *zone = f->def.time_zone;
  zone_scope z;
  if (!eng__zone_enter(zone, &z)) {
    const eng__node *def = eng__node_get(f->root, "defaults");
    const eng__node *v = def && def->kind == ENG__N_MAP
                             ? eng__node_get(def, "time_zone")
                             : NULL;
    eng__diag_warn(r->d, r->file, v ? v->line : 0, v ? v->col : 0,
                   "defaults: time zone '%s' is not in this machine's tz "
                   "database: check the name (Kubernetes refuses a zone it "
                   "does not know); the next runs are not shown",
                   zone);
    return true;
  }
  time_t now = (time_t)(eng__now_ms() / 1000), next;
  struct tm tm;
  int end = (localtime_r(&now, &tm) ? tm.tm_year + 1900 : 1970) +
            CRON_HORIZON_YEARS;
  bool ok = true;
  for (size_t i = 0; i < f->n; i++) {
    const fleet_db *db = &f->dbs[i];
    const eng__node *v = db->schedule_node;
    char why[320];
    cron_spec c;
    if (!db->schedule || !eng__cron_parse(db->schedule, &c, why, sizeof why) ||
        eng__cron_next(&c, now, &next))
      continue;
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "database '%s': schedule '%s' never fires in %s before "
                    "the end of %d (a clock change skips every time it "
                    "names); pick another time of day",
                    db->name, db->schedule, zone, end);
    ok = false;
  }
  eng__zone_leave(&z);
  return ok;
}

/* The image the pods run: a warning when a cluster cannot pull it or
 * cannot tell its versions apart. */
static void warn_image(reader *r, const eng__fleet *f) {
  const char *img = f->def.image, *slash = strrchr(img, '/');
  const char *colon = strchr(slash ? slash : img, ':');
  bool local = !strncmp(img, "localhost/", 10);
  bool latest = !strchr(img, '@') && (!colon || !strcmp(colon, ":latest"));
  if (!local && !latest) return;
  const eng__node *def = eng__node_get(f->root, "defaults");
  const eng__node *v = def && def->kind == ENG__N_MAP ? eng__node_get(def, "image") : NULL;
  if (!v) v = def ? def : f->root;
  eng__diag_warn(r->d, r->file, v->line, v->col,
                 "defaults: image '%s' %s: push the image to a registry the "
                 "cluster pulls from and set defaults.image to it, with a "
                 "version tag",
                 img, local ? "is a local name that no node of a real cluster "
                              "can pull (only one that has it already)"
                            : "has no version: nodes may run different builds "
                              "under one name");
}

static void defaults_init(eng__fleet *f) {
  fleet_defaults *def = &f->def;
  def->image = f->image;
  def->pull_policy = "IfNotPresent";
  def->time_zone = "UTC";
  def->aws_secret = "engine-aws";
  def->slack_secret = "engine-slack";
  def->audit_secret = "engine-audit";
  def->active_deadline_ms = 3 * 3600000;
  def->starting_deadline_ms = 3600000;
  def->job_ttl_ms = JOB_TTL_DEFAULT_MS;
  def->backoff_limit = 1;
  def->spread = 10;
  def->pod.grace_ms = ENG__GRACE_DEFAULT_MS;
  def->pod.res[RES_REQ_CPU] = REQ_CPU_DEFAULT;
  def->pod.res[RES_REQ_MEM] = REQ_MEM_DEFAULT;
  def->pod.res[RES_LIM_MEM] = LIM_MEM_DEFAULT;
  def->pod.scratch = SCRATCH_DEFAULT;
}

eng__fleet *eng__fleet_parse(const char *file, const char *dir,
                             const char *image_dir, const char *text,
                             size_t len, eng__diags *d) {
  reader r = {file, d, NULL, image_dir};
  size_t errors = d->errors;
  eng__node *root = eng__yaml_parse(file, text, len, d);
  if (!root) return NULL;
  eng__fleet *f = eng__xcalloc(1, sizeof *f);
  f->root = root;
  f->file = eng__xstrdup(file);
  f->dir = eng__xstrdup(dir);
  f->image = eng__xstrdup("localhost/engine:" ENG_VERSION);
  fleet_defaults *def = &f->def;
  defaults_init(f);
  r.def = def;
  if (root->kind != ENG__N_MAP) {
    eng__diag_error(d, file, root->line, root->col,
                    "an inventory is a mapping with 'databases' (a list) "
                    "and optional 'defaults', not %s",
                    eng__node_kind_name(root));
    goto fail;
  }
  bool ok = known_keys(&r, root, "the inventory", top_keys);
  ok &= read_defaults(&r, eng__node_get(root, "defaults"), def, root);
  warn_image(&r, f);
  const eng__node *list = eng__node_get(root, "databases");
  if (!list || list->kind != ENG__N_SEQ || list->n == 0) {
    const eng__node *at = list ? list : root;
    eng__diag_error(d, file, at->line, at->col,
                    "'databases' must be a list with at least one database "
                    "(- name: ..., url_secret: ..., schedule: ..., runbook: "
                    "...)");
    goto fail;
  }
  f->dbs = eng__xcalloc(list->n, sizeof *f->dbs);
  f->n = list->n;
  for (size_t i = 0; i < list->n; i++) {
    fleet_db *db = &f->dbs[i];
    ok &= read_db(&r, list->vals[i], i, db, dir);
    for (size_t j = 0; db->name_ok && j < i; j++) {
      if (!f->dbs[j].name_ok || strcmp(f->dbs[j].name, db->name)) continue;
      const eng__node *v = eng__node_get(list->vals[i], "name");
      eng__diag_error(d, file, v->line, v->col,
                      "database name '%s' is used twice (first at line %d): "
                      "each database needs its own name (it names the "
                      "CronJob and the lock)",
                      db->name, f->dbs[j].node->line);
      ok = false;
      break;
    }
  }
  /* the schedules that are right so far are spread and checked in the
   * time zone, also when something else is wrong: one pass says it all */
  ok &= d->errors == errors;
  spread_schedules(&r, f, ok);
  if (!schedules_fire(&r, f) || !ok) goto fail;
  return f;
fail:
  eng__fleet_free(f);
  return NULL;
}

void eng__fleet_free(eng__fleet *f) {
  if (!f) return;
  for (size_t i = 0; i < f->n; i++) {
    free(f->dbs[i].label);
    free(f->dbs[i].where);
    free(f->dbs[i].pod.env);
    free(f->dbs[i].schedule);
    free(f->dbs[i].runbook_path);
    free(f->dbs[i].runbook_text);
  }
  free(f->dbs);
  free(f->def.pod.env);
  eng__node_free(f->root);
  free(f->file);
  free(f->dir);
  free(f->image);
  free(f);
}

size_t eng__fleet_count(const eng__fleet *f) { return f->n; }
const char *eng__fleet_name(const eng__fleet *f, size_t i) {
  return f->dbs[i].name;
}

eng__fleet *eng__fleet_load(const char *inventory, const char *image_dir,
                            eng__diags *d) {
  size_t len = 0;
  char *text = eng__read_file(inventory, ENG__YAML_MAX_BYTES, &len);
  if (!text) {
    eng__diag_error(d, inventory, 0, 0, "cannot read the inventory: %s",
                    errno == EFBIG ? "larger than 8 MB" : strerror(errno));
    return NULL;
  }
  const char *slash = strrchr(inventory, '/');
  char *dir = slash ? eng__xstrndup(inventory, (size_t)(slash - inventory + 1))
                    : eng__xstrdup(".");
  if (slash && strlen(dir) > 1) dir[strlen(dir) - 1] = '\0';
  eng__fleet *f = eng__fleet_parse(inventory, dir, image_dir, text, len, d);
  free(text);
  free(dir);
  return f;
}

const char *eng__fleet_runbook_file(const eng__fleet *f, size_t i) {
  return f->dbs[i].runbook_path;
}
