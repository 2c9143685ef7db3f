/* fleet.c - `engine fleet render`: an inventory of databases into
 * Kubernetes manifests (a CronJob per database, its runbook in a
 * ConfigMap). docs/fleet.md describes the inventory and every setting. */
#include "fleet/fleet.h"
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

/* Where the image keeps the runbooks it ships, and where a ConfigMap's
 * runbook is mounted. */
#define IMAGE_RUNBOOK_DIR "/usr/share/engine/runbooks"
#define CONFIGMAP_DIR "/runbooks"
#define CONTAINER "engine"
#define NAME_MAX_LEN 40 /* "engine-" + name stays within a CronJob's 52 */
#define CONFIGMAP_MAX (1000u * 1000u) /* a ConfigMap holds at most 1 MiB */

const char *const eng__fleet_image_runbooks[] = {
    "backup-verify.yaml",      "backup-with-checksum.yaml",
    "check-prod-volume.yaml",  "managed-restore-test.yaml",
    "migrate-deploy.yaml",     "recover-from-volume.yaml",
    "restore-drill.yaml",      "restore-from-s3.yaml",
    NULL};

typedef struct fleet_db {
  const eng__node *node;
  const char *name, *url_secret, *runbook;
  bool name_ok;       /* a valid name (else messages say it as written) */
  char *label;        /* "#N", the name of an entry without one */
  const eng__node *schedule_node, *params;
  char *schedule;     /* after spreading */
  char *runbook_path; /* a local file (ConfigMap), or NULL: from the image */
  char *runbook_text;
} fleet_db;

typedef struct fleet_defaults {
  const char *image, *state, *time_zone, *namespace;
  const char *aws_secret, *slack_secret, *audit_secret;
  int64_t grace_ms, active_deadline_ms, starting_deadline_ms;
  long backoff_limit, spread;
} fleet_defaults;

struct eng__fleet {
  char *file, *dir;
  eng__node *root;
  fleet_db *dbs;
  size_t n;
  fleet_defaults def;
  char *image; /* default image */
};

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

/* ---- reading the inventory ------------------------------------------------ */

typedef struct reader {
  const char *file;
  eng__diags *d;
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
                         int64_t min_ms, int64_t max_ms, int64_t *out) {
  const char *s = scalar(r, v, key, "defaults");
  if (!s) return false;
  int64_t ms;
  if (eng__parse_duration(s, &ms) != 0 || ms < min_ms || ms > max_ms) {
    char a[32], b[32];
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "defaults: '%s' needs a duration from %s to %s such as "
                    "30s, 10m or 2h, got '%s'",
                    key, eng__fmt_duration(min_ms, a, sizeof a),
                    eng__fmt_duration(max_ms, b, sizeof b), s);
    return false;
  }
  *out = ms;
  return true;
}

static bool number_key(reader *r, const eng__node *v, const char *key,
                       long lo, long hi, long *out) {
  const char *s = scalar(r, v, key, "defaults");
  if (!s) return false;
  char *end;
  errno = 0;
  long x = strtol(s, &end, 10);
  if (!*s || *end || errno || x < lo || x > hi) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "defaults: '%s' needs a whole number from %ld to %ld, "
                    "got '%s'",
                    key, lo, hi, s);
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

static const char *const top_keys[] = {"databases", "defaults", NULL};
static const char *const default_keys[] = {
    "image",         "state",         "time_zone",      "namespace",
    "aws_secret",    "slack_secret",  "audit_secret",   "grace",
    "active_deadline", "starting_deadline", "backoff_limit", "spread", NULL};
static const char *const db_keys[] = {"name", "url_secret", "schedule",
                                      "runbook", "params", NULL};

/* Every mapping of an inventory with fixed keys, by its place (as
 * eng__runbook_keysets): what the reader accepts and `engine schema
 * --inventory` describes. */
const eng__keyset eng__fleet_keysets[] = {{"", top_keys},
                                          {"defaults", default_keys},
                                          {"databases[]", db_keys},
                                          {NULL, NULL}};

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
      if (!(s = scalar(r, v, k, "defaults"))) ok = false;
      else if (!*s || strpbrk(s, " \t\n")) {
        eng__diag_error(r->d, r->file, v->line, v->col,
                        "defaults: 'image' must be an image reference such "
                        "as localhost/engine:%s",
                        ENG_VERSION);
        ok = false;
      } else def->image = s;
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
      times_ok &= duration_key(r, v, k, 1000, 3600000, &def->grace_ms);
    } else if (!strcmp(k, "active_deadline")) {
      times_ok &= duration_key(r, v, k, 60000, 7 * ENG__DAY_MS,
                               &def->active_deadline_ms);
    } else if (!strcmp(k, "starting_deadline")) {
      ok &= duration_key(r, v, k, 10000, ENG__DAY_MS, &def->starting_deadline_ms);
    } else if (!strcmp(k, "backoff_limit")) {
      ok &= number_key(r, v, k, 0, 10, &def->backoff_limit);
    } else if (!strcmp(k, "spread")) {
      ok &= number_key(r, v, k, 0, 59, &def->spread);
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
  if (times_ok && def->active_deadline_ms <= def->grace_ms) {
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

/* A ConfigMap key (the runbook's file name): [-._a-zA-Z0-9]+. */
static bool is_configmap_key(const char *s) {
  if (!*s || strlen(s) > 253 || !strcmp(s, ".") || !strcmp(s, "..")) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
          (*s >= '0' && *s <= '9') || strchr("-._", *s)))
      return false;
  return true;
}

static const char *base_name(const char *path) {
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

/* The runbook a database names: a file next to the inventory (checked
 * as a runbook, its parameters against `params`), or one the image ships. */
/* The database's params against the runbook's: each one declared and not
 * secret, each required one without a default or variable given. */
static bool params_fit(reader *r, fleet_db *db, const eng__runbook *rb) {
  const char *name = db->runbook;
  bool ok = true;
  for (size_t i = 0; db->params && i < db->params->n; i++) {
    const eng__node *k = db->params->keys[i];
    const eng__param_def *p = NULL;
    for (size_t j = 0; j < rb->n_params && !p; j++)
      if (!strcmp(rb->params[j].name, k->str)) p = &rb->params[j];
    if (!p) {
      const char **names = eng__xcalloc(rb->n_params + 1, sizeof *names);
      for (size_t j = 0; j < rb->n_params; j++) names[j] = rb->params[j].name;
      const char *hint = eng__suggest(k->str, names, rb->n_params);
      eng__diag_error(r->d, r->file, k->line, k->col,
                      "database '%s': runbook %s has no parameter '%s'%s%s%s",
                      db->name, name, k->str, hint ? " (did you mean '" : "",
                      hint ? hint : "", hint ? "'?)" : "");
      free(names);
      return false;
    }
    if (p->secret) {
      eng__diag_error(r->d, r->file, k->line, k->col,
                      "database '%s': parameter '%s' is secret: never put "
                      "it in the inventory; the runbook reads it from %s%s, "
                      "give it through a Secret",
                      db->name, k->str, p->env ? "the environment variable "
                                               : "the environment",
                      p->env ? p->env : "");
      return false;
    }
  }
  for (size_t j = 0; ok && j < rb->n_params; j++) {
    const eng__param_def *p = &rb->params[j];
    if (!p->required || p->def || p->env) continue;
    if (db->params && eng__node_get(db->params, p->name)) continue;
    eng__diag_error(r->d, r->file, db->node->line, db->node->col,
                    "database '%s': runbook %s needs parameter '%s': add "
                    "params: { %s: VALUE }",
                    db->name, name, p->name, p->name);
    ok = false;
  }
  return ok;
}

/* A runbook the image ships (no file next to the inventory): true; else
 * said with the nearest name. */
static bool image_runbook(reader *r, fleet_db *db, const char *dir,
                          const eng__node *v) {
  const char *name = db->runbook;
  if (is_image_runbook(name)) return true;
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
  if (!is_configmap_key(base_name(path))) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "database '%s': the runbook's file name '%s' may hold "
                    "only letters, digits, '-', '_' and '.' (it becomes a "
                    "ConfigMap key): rename the file",
                    db->name, base_name(path));
    free(text);
    return NULL;
  }
  return text;
}

static bool read_runbook(reader *r, fleet_db *db, const char *dir,
                         const eng__node *v, bool params_ok) {
  const char *name = db->runbook;
  char *path = !dir ? NULL
               : name[0] == '/' ? eng__xstrdup(name)
                                : eng__asprintf("%s/%s", dir, name);
  struct stat st;
  bool local = dir && (strchr(name, '/') || stat(path, &st) == 0);
  if (!local) {
    free(path);
    return image_runbook(r, db, dir, v);
  }
  size_t len = 0;
  char *text = runbook_text(r, db, path, v, &len);
  if (!text) {
    free(path);
    return false;
  }
  size_t errors = r->d->errors;
  eng__runbook *rb = eng__runbook_parse(path, text, len, r->d);
  bool ok = rb && r->d->errors == errors;
  if (!ok) {
    eng__diag_error(r->d, r->file, v->line, v->col,
                    "database '%s': runbook %s is invalid (see above); fix "
                    "it, 'engine validate %s' checks it",
                    db->name, path, path);
  }
  ok = ok && params_ok && params_fit(r, db, rb);
  eng__runbook_free(rb);
  if (!ok) {
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


/* Database entry i: every key present is checked, also when others are
 * missing or wrong, so that one pass says everything. db->name is what the
 * messages call it (its name as written, else "#N"); false with errors. */
static bool read_db(reader *r, const eng__node *m, size_t i, fleet_db *db,
                    const char *dir) {
  db->node = m;
  if (m->kind != ENG__N_MAP) {
    eng__diag_error(r->d, r->file, m->line, m->col,
                    "each database must be a mapping (name, url_secret, "
                    "schedule, runbook, params), not %s",
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
  bool params_ok = true;
  if ((v = eng__node_get(m, "params"))) params_ok = read_params(r, db, v);
  ok &= params_ok;
  if ((v = eng__node_get(m, "runbook"))) {
    if (!(db->runbook = scalar(r, v, "runbook", "database"))) {
      ok = false;
    } else if (!*db->runbook) {
      eng__diag_error(r->d, r->file, v->line, v->col,
                      "database '%s': 'runbook' is empty: name a runbook file",
                      db->name);
      ok = false;
    } else {
      ok &= read_runbook(r, db, dir, v, params_ok);
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

eng__fleet *eng__fleet_parse(const char *file, const char *dir,
                             const char *text, size_t len, eng__diags *d) {
  reader r = {file, d};
  size_t errors = d->errors;
  eng__node *root = eng__yaml_parse(file, text, len, d);
  if (!root) return NULL;
  eng__fleet *f = eng__xcalloc(1, sizeof *f);
  f->root = root;
  f->file = eng__xstrdup(file);
  f->dir = eng__xstrdup(dir);
  f->image = eng__xstrdup("localhost/engine:" ENG_VERSION);
  fleet_defaults *def = &f->def;
  def->image = f->image;
  def->time_zone = "UTC";
  def->aws_secret = "engine-aws";
  def->slack_secret = "engine-slack";
  def->audit_secret = "engine-audit";
  def->grace_ms = ENG__GRACE_DEFAULT_MS;
  def->active_deadline_ms = 3 * 3600000;
  def->starting_deadline_ms = 3600000;
  def->backoff_limit = 1;
  def->spread = 10;
  if (root->kind != ENG__N_MAP) {
    eng__diag_error(d, file, root->line, root->col,
                    "an inventory is a mapping with 'databases' (a list) "
                    "and optional 'defaults', not %s",
                    eng__node_kind_name(root));
    goto fail;
  }
  bool ok = known_keys(&r, root, "the inventory", top_keys);
  ok &= read_defaults(&r, eng__node_get(root, "defaults"), def, root);
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
    free(f->dbs[i].schedule);
    free(f->dbs[i].runbook_path);
    free(f->dbs[i].runbook_text);
  }
  free(f->dbs);
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

/* ---- the manifests --------------------------------------------------------- */

static json_t *labels(const fleet_db *db) {
  return json_pack("{s:s, s:s, s:s, s:s}", "app.kubernetes.io/name", "engine",
                   "app.kubernetes.io/instance", db->name,
                   "app.kubernetes.io/component", "runbook",
                   "app.kubernetes.io/managed-by", "engine-fleet");
}

static json_t *metadata(const eng__fleet *f, const fleet_db *db,
                        const char *name) {
  json_t *m = json_pack("{s:s}", "name", name);
  if (f->def.namespace) json_object_set_new(m, "namespace", json_string(f->def.namespace));
  json_object_set_new(m, "labels", labels(db));
  return m;
}

static char *configmap_name(const fleet_db *db) {
  return eng__asprintf("engine-%s-runbook", db->name);
}

static json_t *configmap(const eng__fleet *f, const fleet_db *db) {
  char *name = configmap_name(db);
  json_t *data = json_object();
  json_object_set_new(data, base_name(db->runbook_path),
                      json_string(db->runbook_text));
  json_t *cm = json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", "v1", "kind",
                         "ConfigMap", "metadata", metadata(f, db, name),
                         "data", data);
  free(name);
  return cm;
}

static json_t *secret_env(const char *var, const char *secret, bool optional) {
  json_t *ref = json_pack("{s:s, s:s}", "name", secret, "key", var);
  if (optional) json_object_set_new(ref, "optional", json_true());
  return json_pack("{s:s, s:{s:o}}", "name", var, "valueFrom", "secretKeyRef",
                   ref);
}

static json_t *value_env(const char *var, const char *value) {
  return json_pack("{s:s, s:s}", "name", var, "value", value);
}

static json_t *container(const eng__fleet *f, const fleet_db *db) {
  const fleet_defaults *def = &f->def;
  char grace[32];
  snprintf(grace, sizeof grace, "%llds",
           (long long)((def->grace_ms + 999) / 1000));
  char *path = db->runbook_path
                   ? eng__asprintf(CONFIGMAP_DIR "/%s", base_name(db->runbook_path))
                   : eng__asprintf(IMAGE_RUNBOOK_DIR "/%s", db->runbook);
  json_t *args = json_pack("[s, s, s, s, s, s, s, s]", "run", path,
                           "--state-dir", def->state, "--lock", db->name,
                           "--grace", grace);
  free(path);
  for (size_t i = 0; db->params && i < db->params->n; i++) {
    char *kv = eng__asprintf("%s=%s", db->params->keys[i]->str,
                             db->params->vals[i]->str);
    json_array_append_new(args, json_string("-p"));
    json_array_append_new(args, json_string(kv));
    free(kv);
  }
  json_t *env = json_array();
  json_array_append_new(env, secret_env("DATABASE_URL", db->url_secret, false));
  if (*def->slack_secret)
    json_array_append_new(env, secret_env("SLACK_WEBHOOK_URL", def->slack_secret, true));
  if (*def->audit_secret)
    json_array_append_new(env, secret_env("ENGINE_AUDIT_KEY", def->audit_secret, true));
  json_array_append_new(env, value_env("ENGINE_STATE_DIR", def->state));
  json_array_append_new(env, value_env("ENGINE_LOG_FORMAT", "json"));
  json_array_append_new(env, value_env("HOME", "/tmp"));
  json_array_append_new(env, value_env("TMPDIR", "/tmp"));
  json_t *c = json_pack("{s:s, s:s, s:s, s:o, s:o}", "name", CONTAINER,
                        "image", def->image, "imagePullPolicy", "IfNotPresent",
                        "args", args, "env", env);
  if (*def->aws_secret)
    json_object_set_new(c, "envFrom",
                        json_pack("[{s:{s:s}}]", "secretRef", "name",
                                  def->aws_secret));
  json_object_set_new(c, "workingDir", json_string("/tmp"));
  json_t *mounts = json_pack("[{s:s, s:s}]", "name", "scratch", "mountPath", "/tmp");
  if (db->runbook_path)
    json_array_append_new(mounts,
                          json_pack("{s:s, s:s, s:b}", "name", "runbook",
                                    "mountPath", CONFIGMAP_DIR, "readOnly", 1));
  json_object_set_new(c, "volumeMounts", mounts);
  json_object_set_new(
      c, "securityContext",
      json_pack("{s:b, s:b, s:b, s:{s:[s]}}", "allowPrivilegeEscalation", 0,
                "readOnlyRootFilesystem", 1, "runAsNonRoot", 1, "capabilities",
                "drop", "ALL"));
  return c;
}

static json_t *pod_spec(const eng__fleet *f, const fleet_db *db) {
  json_t *volumes = json_pack("[{s:s, s:{}}]", "name", "scratch", "emptyDir");
  if (db->runbook_path) {
    char *cm = configmap_name(db);
    json_array_append_new(volumes, json_pack("{s:s, s:{s:s}}", "name",
                                             "runbook", "configMap", "name", cm));
    free(cm);
  }
  /* the engine's grace for `finally`, then time for it to write its
   * records and exit before the kubelet's SIGKILL */
  long long term = (f->def.grace_ms + 999) / 1000 + 15;
  return json_pack(
      "{s:s, s:I, s:b, s:b, s:{s:b, s:i, s:i, s:i, s:{s:s}}, s:[o], s:o}",
      "restartPolicy", "Never", "terminationGracePeriodSeconds",
      (json_int_t)term, "automountServiceAccountToken", 0,
      "enableServiceLinks", 0, "securityContext", "runAsNonRoot", 1,
      "runAsUser", 10001, "runAsGroup", 10001, "fsGroup", 10001,
      "seccompProfile", "type", "RuntimeDefault", "containers",
      container(f, db), "volumes", volumes);
}

static json_t *cronjob(const eng__fleet *f, const fleet_db *db) {
  const fleet_defaults *def = &f->def;
  char *name = eng__asprintf("engine-%s", db->name);
  /* exit codes that a retry cannot change: failed (1), invalid (2),
   * refused by a guard (3), SLO missed (4), lock held (6); 5
   * (interrupted) and pod failures outside the engine are retried */
  json_t *pfp = json_pack(
      "{s:[{s:s, s:{s:s, s:s, s:[i,i,i,i,i]}}, {s:s, s:[{s:s, s:s}]}]}",
      "rules", "action", "FailJob", "onExitCodes", "containerName", CONTAINER,
      "operator", "In", "values", ENG_EXIT_FAILED, ENG_EXIT_USAGE,
      ENG_EXIT_REFUSED, ENG_EXIT_SLO, ENG_EXIT_LOCKED, "action", "Ignore",
      "onPodConditions", "type", "DisruptionTarget", "status", "True");
  json_t *job = json_pack(
      "{s:I, s:I, s:o, s:{s:{s:o}, s:o}}", "backoffLimit",
      (json_int_t)def->backoff_limit, "activeDeadlineSeconds",
      (json_int_t)(def->active_deadline_ms / 1000), "podFailurePolicy", pfp,
      "template", "metadata", "labels", labels(db), "spec", pod_spec(f, db));
  json_t *cj = json_pack(
      "{s:s, s:s, s:o, s:{s:s, s:s, s:s, s:I, s:i, s:i, s:{s:{s:o}, s:o}}}",
      "apiVersion", "batch/v1", "kind", "CronJob", "metadata",
      metadata(f, db, name), "spec", "schedule", db->schedule, "timeZone",
      def->time_zone, "concurrencyPolicy", "Forbid",
      "startingDeadlineSeconds",
      (json_int_t)(def->starting_deadline_ms / 1000),
      "successfulJobsHistoryLimit", 3, "failedJobsHistoryLimit", 3,
      "jobTemplate", "metadata", "labels", labels(db), "spec", job);
  free(name);
  return cj;
}

json_t *eng__fleet_docs(const eng__fleet *f, size_t i) {
  const fleet_db *db = &f->dbs[i];
  json_t *docs = json_array();
  if (db->runbook_path) json_array_append_new(docs, configmap(f, db));
  json_array_append_new(docs, cronjob(f, db));
  return docs;
}

/* Database i's documents, each after "---". */
static void db_yaml(const eng__fleet *f, size_t i, eng__buf *b) {
  json_t *docs = eng__fleet_docs(f, i);
  size_t k;
  json_t *doc;
  json_array_foreach(docs, k, doc) {
    eng__buf_adds(b, "---\n");
    eng__yaml_emit(b, doc);
  }
  json_decref(docs);
}

static int write_file(const char *path, const eng__buf *b) {
  char *tmp = eng__asprintf("%s.tmp", path);
  FILE *fp = fopen(tmp, "w");
  int rc = 0;
  if (!fp || fwrite(b->data, 1, b->len, fp) != b->len) rc = -1;
  if (fp && fclose(fp) != 0) rc = -1;
  if (rc == 0 && rename(tmp, path) != 0) rc = -1;
  if (rc != 0) {
    fprintf(stderr, "engine: cannot write %s: %s\n", path, strerror(errno));
    unlink(tmp);
  }
  free(tmp);
  return rc;
}

/* One firing time, in UTC and, with local, in the process's time zone. */
static void add_time(eng__buf *b, time_t t, bool local) {
  struct tm tm;
  char s[64];
  if (!gmtime_r(&t, &tm) || !strftime(s, sizeof s, "%Y-%m-%d %H:%M UTC", &tm))
    return;
  eng__buf_adds(b, s);
  if (local && localtime_r(&t, &tm) &&
      strftime(s, sizeof s, "%Y-%m-%d %H:%M %Z", &tm))
    eng__buf_addf(b, " (%s)", s);
}

/* The summary: every CronJob's next NEXT_RUNS times on standard error, in
 * UTC and in its time zone when that is not UTC. */
static void print_next_runs(const eng__fleet *f) {
  const char *zone = f->def.time_zone;
  zone_scope z;
  bool known = eng__zone_enter(zone, &z), local = strcmp(zone, "UTC") != 0;
  time_t now = (time_t)(eng__now_ms() / 1000);
  for (size_t i = 0; i < f->n; i++) {
    const fleet_db *db = &f->dbs[i];
    eng__buf b = {0};
    eng__buf_addf(&b, "engine-%s: '%s' (%s) ", db->name, db->schedule, zone);
    char why[320];
    cron_spec c;
    if (!known) {
      eng__buf_adds(&b, "next runs not known: the time zone is not in this "
                        "machine's tz database");
    } else if (eng__cron_parse(db->schedule, &c, why, sizeof why)) {
      eng__buf_adds(&b, "next runs");
      time_t t = now;
      for (int k = 0; k < NEXT_RUNS && eng__cron_next(&c, t, &t); k++) {
        eng__buf_adds(&b, k ? ", " : " ");
        add_time(&b, t, local);
      }
    }
    fprintf(stderr, "%s\n", b.data);
    eng__buf_free(&b);
  }
  eng__zone_leave(&z);
}

int eng__fleet_render(const char *inventory, const char *out_dir, FILE *out,
                      eng__diags *d) {
  size_t len = 0;
  char *text = eng__read_file(inventory, ENG__YAML_MAX_BYTES, &len);
  if (!text) {
    eng__diag_error(d, inventory, 0, 0, "cannot read the inventory: %s",
                    errno == EFBIG ? "larger than 8 MB" : strerror(errno));
    return ENG_EXIT_USAGE;
  }
  const char *slash = strrchr(inventory, '/');
  char *dir = slash ? eng__xstrndup(inventory, (size_t)(slash - inventory + 1))
                    : eng__xstrdup(".");
  if (slash && strlen(dir) > 1) dir[strlen(dir) - 1] = '\0';
  eng__fleet *f = eng__fleet_parse(inventory, dir, text, len, d);
  free(text);
  free(dir);
  if (!f) return ENG_EXIT_USAGE;
  const char *head = "# Generated by 'engine fleet render %s': edit the "
                     "inventory and render again.\n";
  int code = ENG_EXIT_OK;
  if (out_dir && eng__mkdir_p(out_dir, 0755) != 0) {
    fprintf(stderr, "engine: cannot create %s: %s\n", out_dir, strerror(errno));
    code = ENG_EXIT_FAILED;
  }
  eng__buf all = {0};
  eng__buf_addf(&all, head, base_name(inventory));
  for (size_t i = 0; code == ENG_EXIT_OK && i < f->n; i++) {
    if (!out_dir) {
      db_yaml(f, i, &all);
      continue;
    }
    eng__buf b = {0};
    eng__buf_addf(&b, head, base_name(inventory));
    db_yaml(f, i, &b);
    char *path = eng__asprintf("%s/%s.yaml", out_dir, f->dbs[i].name);
    if (write_file(path, &b) != 0) code = ENG_EXIT_FAILED;
    else fprintf(stderr, "wrote %s\n", path);
    free(path);
    eng__buf_free(&b);
  }
  if (!out_dir && code == ENG_EXIT_OK &&
      (fwrite(all.data, 1, all.len, out) != all.len || fflush(out) != 0)) {
    fprintf(stderr, "engine: cannot write the manifests: %s\n", strerror(errno));
    code = ENG_EXIT_FAILED;
  }
  if (code == ENG_EXIT_OK && !d->quiet) print_next_runs(f);
  eng__buf_free(&all);
  eng__fleet_free(f);
  return code;
}
