/*
 * pgbr_parse.c - pgBackRest's answers as the plugin reads them. Pure: no
 * I/O, no host calls; every field is checked before use (an answer from
 * another release, or a damaged one, fails with what was missing and
 * never reaches a NULL string).
 */
#include "pgbr_int.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void pgbr_rfc3339(int64_t epoch, char buf[32]) {
  time_t t = (time_t)epoch;
  struct tm tm;
  if (!gmtime_r(&t, &tm)) {
    snprintf(buf, 32, "1970-01-01T00:00:00Z");
    return;
  }
  strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int pgbr_parse_version(const char *text, char *buf, size_t n, int *major,
                       int *minor, char *err, size_t errlen) {
  static const char head[] = "pgBackRest ";
  if (!text || strncmp(text, head, sizeof head - 1) != 0) {
    snprintf(err, errlen, "'pgbackrest version' did not print 'pgBackRest "
                          "X.Y'; is this pgBackRest?");
    return -1;
  }
  const char *v = text + sizeof head - 1;
  size_t len = 0;
  while (v[len] && (isdigit((unsigned char)v[len]) || v[len] == '.' ||
                    isalpha((unsigned char)v[len])))
    len++;
  int a = 0, b = 0;
  if (len == 0 || len >= n || sscanf(v, "%d.%d", &a, &b) != 2 || a < 0 ||
      b < 0) {
    snprintf(err, errlen, "cannot read a version number in 'pgbackrest "
                          "version' output");
    return -1;
  }
  memcpy(buf, v, len);
  buf[len] = '\0';
  *major = a;
  *minor = b;
  return 0;
}

static const char *jstr(const json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static json_int_t jint(const json_t *o, const char *k, json_int_t def) {
  const json_t *v = json_object_get(o, k);
  return json_is_integer(v) ? json_integer_value(v) : def;
}

/* One backup of info's backup[] as the outputs say it; NULL when the
 * entry lacks its label, type or times. */
static json_t *backup_entry(const json_t *b) {
  const char *label = jstr(b, "label");
  const char *type = jstr(b, "type");
  const json_t *ts = json_object_get(b, "timestamp");
  json_int_t start = jint(ts, "start", -1), stop = jint(ts, "stop", -1);
  if (!label || !type || start < 0 || stop < 0) return NULL;
  char sa[32], so[32];
  pgbr_rfc3339(start, sa);
  pgbr_rfc3339(stop, so);
  const json_t *info = json_object_get(b, "info");
  const json_t *lsn = json_object_get(b, "lsn");
  const json_t *arch = json_object_get(b, "archive");
  json_t *e = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:b}",
                        "label", label, "type", type, "started_at", sa,
                        "finished_at", so, "start_epoch", (json_int_t)start,
                        "stop_epoch", (json_int_t)stop, "size",
                        jint(info, "size", 0), "repo_size",
                        jint(json_object_get(info, "repository"), "size", 0),
                        "error", json_is_true(json_object_get(b, "error")));
  const char *opt[][2] = {{"lsn_start", jstr(lsn, "start")},
                          {"lsn_stop", jstr(lsn, "stop")},
                          {"wal_start", jstr(arch, "start")},
                          {"wal_stop", jstr(arch, "stop")},
                          {"prior", jstr(b, "prior")}};
  for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++)
    json_object_set_new(e, opt[i][0],
                        opt[i][1] ? json_string(opt[i][1]) : json_null());
  return e;
}

/* The stanza's entry of info's top-level array. */
static const json_t *stanza_of(const json_t *root, const char *stanza,
                               char *err, size_t errlen) {
  if (!json_is_array(root)) {
    snprintf(err, errlen, "pgbackrest info did not answer a JSON array");
    return NULL;
  }
  size_t i;
  const json_t *s;
  json_array_foreach(root, i, s) {
    const char *name = jstr(s, "name");
    if (name && (!stanza || !strcmp(name, stanza))) return s;
  }
  snprintf(err, errlen, "pgbackrest info has no stanza '%s'; create it with "
                        "pgbackrest stanza-create",
           stanza ? stanza : "");
  return NULL;
}

static void set_backups(json_t *out, const json_t *list) {
  json_t *backups = json_array();
  json_t *latest = NULL, *latest_full = NULL;
  size_t i;
  const json_t *b;
  json_array_foreach(list, i, b) {
    json_t *e = backup_entry(b);
    if (!e) continue;
    json_array_append_new(backups, e);
    latest = e;
    if (!strcmp(jstr(e, "type"), "full")) latest_full = e;
  }
  json_object_set_new(out, "latest", latest ? json_deep_copy(latest) : json_null());
  json_object_set_new(out, "latest_full",
                      latest_full ? json_deep_copy(latest_full) : json_null());
  json_object_set_new(out, "backups", backups);
}

/* The archive of the stanza's current database (the last db[] entry). */
static void set_archive(json_t *out, const json_t *s) {
  const json_t *dbs = json_object_get(s, "db");
  const json_t *db = json_array_get(dbs, json_array_size(dbs) - 1);
  json_int_t db_id = jint(db, "id", -1);
  const json_t *arch = NULL;
  size_t i;
  const json_t *a;
  json_array_foreach(json_object_get(s, "archive"), i, a) {
    if (jint(json_object_get(a, "database"), "id", -2) == db_id || !arch)
      arch = a;
  }
  const char *keys[][2] = {{"archive_id", "id"}, {"wal_min", "min"},
                           {"wal_max", "max"}};
  for (size_t k = 0; k < 3; k++) {
    const char *v = arch ? jstr(arch, keys[k][1]) : NULL;
    json_object_set_new(out, keys[k][0], v ? json_string(v) : json_null());
  }
  const char *ver = jstr(db, "version");
  json_object_set_new(out, "pg_version", ver ? json_string(ver) : json_null());
  const json_t *sys = json_object_get(db, "system-id");
  char sid[32] = "";
  if (json_is_integer(sys))
    snprintf(sid, sizeof sid, "%" JSON_INTEGER_FORMAT, json_integer_value(sys));
  json_object_set_new(out, "system_id", json_string(sid));
}

json_t *pgbr_parse_info(const char *text, const char *stanza, char *err,
                        size_t errlen) {
  json_error_t je;
  json_t *root = json_loads(text ? text : "", JSON_REJECT_DUPLICATES, &je);
  if (!root) {
    snprintf(err, errlen, "pgbackrest info did not answer JSON (line %d: %s)",
             je.line, je.text);
    return NULL;
  }
  const json_t *s = stanza_of(root, stanza, err, errlen);
  if (!s) {
    json_decref(root);
    return NULL;
  }
  const json_t *st = json_object_get(s, "status");
  const char *msg = jstr(st, "message");
  json_t *out = json_pack("{s:s, s:s, s:I}", "stanza", jstr(s, "name"),
                          "status", msg ? msg : "unknown", "status_code",
                          jint(st, "code", -1));
  set_backups(out, json_object_get(s, "backup"));
  set_archive(out, s);
  json_decref(root);
  return out;
}

/* Does the listing's key (PATH/NAME-HASH.ext) hold segment `wal`? */
static int is_segment(const char *key, const char *wal) {
  const char *base = strrchr(key, '/');
  base = base ? base + 1 : key;
  size_t n = strlen(wal);
  return n == 24 && !strncmp(base, wal, n) &&
         (base[n] == '-' || base[n] == '\0');
}

int pgbr_parse_wal_times(const char *text, const char *wal_min,
                         const char *wal_max, int64_t *tmin, int64_t *tmax,
                         char *err, size_t errlen) {
  json_error_t je;
  json_t *root = json_loads(text ? text : "", 0, &je);
  if (!json_is_object(root)) {
    snprintf(err, errlen, "pgbackrest repo-ls did not answer a JSON object");
    json_decref(root);
    return -1;
  }
  int64_t lo = -1, hi = -1;
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    if (!json_is_object(v)) continue;
    const char *type = jstr(v, "type");
    json_int_t t = jint(v, "time", -1);
    if (!type || strcmp(type, "file") || t < 0) continue;
    if (wal_min && is_segment(key, wal_min)) lo = t;
    if (wal_max && is_segment(key, wal_max)) hi = t;
  }
  json_decref(root);
  *tmin = lo;
  *tmax = hi;
  return 0;
}

json_t *pgbr_expire_plan(const json_t *info, long long keep) {
  json_t *out = json_array();
  const json_t *backups = json_object_get(info, "backups");
  size_t n = json_array_size(backups), fulls = 0, cut = 0;
  /* the index of the keep-th newest full backup: everything older goes */
  for (size_t i = n; i-- > 0;) {
    const char *type = jstr(json_array_get(backups, i), "type");
    if (type && !strcmp(type, "full") && ++fulls == (size_t)keep) {
      cut = i;
      break;
    }
  }
  if (keep < 1 || fulls < (size_t)keep) return out;
  for (size_t i = 0; i < cut; i++) {
    const char *label = jstr(json_array_get(backups, i), "label");
    if (label) json_array_append_new(out, json_string(label));
  }
  return out;
}
