/*
 * provider_plugin.c - the provider plugin's declarations: one contract for
 * managed PostgreSQL (snapshot, snapshots, restore, describe,
 * delete_instance, delete_snapshot; docs/providers.md), with `driver`
 * naming the provider. This build has the `rds` driver (AWS RDS).
 */
#include "provider_int.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

static int provider_init(const eng_host *host) {
  if (host->abi_major != ENG_ABI_MAJOR ||
      host->size < offsetof(eng_host, cancel_reason) + sizeof host->cancel_reason)
    return -1;
  /* CURLOPT_AWS_SIGV4 arrived in libcurl 7.75 */
  const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
  if (!v || v->version_num < 0x074b00) return -1;
  provider_host = host;
  return 0;
}

/* One entry per driver; the start functions of the actions. */
typedef struct driver {
  const char *name;
  int (*start[6])(eng_call *call, const json_t *p);
} driver;

enum { A_SNAPSHOT, A_SNAPSHOTS, A_RESTORE, A_DESCRIBE, A_DELETE_INSTANCE,
       A_DELETE_SNAPSHOT };

static const driver drivers[] = {
    {"rds",
     {rds_snapshot_start, rds_snapshots_start, rds_restore_start,
      rds_describe_start, rds_delete_instance_start, rds_delete_snapshot_start}},
};

static const char *const driver_names[] = {"rds", NULL};

static int dispatch(eng_call *call, const json_t *p, int action) {
  const char *d = json_string_value(json_object_get(p, "driver"));
  for (size_t i = 0; i < ENG_COUNT(drivers); i++)
    if (d && !strcmp(d, drivers[i].name)) return drivers[i].start[action](call, p);
  provider_host->fail(call, "driver '%s' is not built in this provider plugin "
                            "(drivers: rds)", d ? d : "");
  return ENG_ERR_INVALID;
}

static int snapshot_start(eng_call *c, const json_t *p) { return dispatch(c, p, A_SNAPSHOT); }
static int snapshots_start(eng_call *c, const json_t *p) { return dispatch(c, p, A_SNAPSHOTS); }
static int restore_start(eng_call *c, const json_t *p) { return dispatch(c, p, A_RESTORE); }
static int describe_start(eng_call *c, const json_t *p) { return dispatch(c, p, A_DESCRIBE); }
static int delete_instance_start(eng_call *c, const json_t *p) { return dispatch(c, p, A_DELETE_INSTANCE); }
static int delete_snapshot_start(eng_call *c, const json_t *p) { return dispatch(c, p, A_DELETE_SNAPSHOT); }

/* ---- value checks (pure) ---------------------------------------------------- */

/* RDS identifiers: 1-63 letters, digits and hyphens, a letter first, no
 * trailing hyphen and no two hyphens in a row. */
static int check_identifier(const json_t *v, char *err, size_t n) {
  const char *s = json_string_value(v);
  size_t len = s ? strlen(s) : 0;
  int bad = len == 0 || len > 63 || !isalpha((unsigned char)s[0]) ||
            s[len - 1] == '-';
  for (size_t i = 0; !bad && i < len; i++)
    bad = !(isalnum((unsigned char)s[i]) || s[i] == '-') ||
          (s[i] == '-' && s[i + 1] == '-');
  if (!bad) return 0;
  snprintf(err, n, "'%s' is not an instance identifier RDS accepts: 1-63 "
                   "letters, digits and hyphens, starting with a letter, no "
                   "'--' and no trailing '-' (e.g. drill-${run.id})",
           s ? s : "");
  return 1;
}

static int check_class(const json_t *v, char *err, size_t n) {
  const char *s = json_string_value(v);
  int dots = 0, ok = s && !strncmp(s, "db.", 3) && s[3];
  for (const char *c = s ? s + 3 : ""; ok && *c; c++) {
    if (*c == '.') {
      dots++;
      ok = c[1] && c[1] != '.';
    } else {
      ok = islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '-';
    }
  }
  if (ok && dots == 1) return 0;
  snprintf(err, n, "instance_class '%s' is not an RDS instance class "
                   "(db.FAMILY.SIZE, e.g. db.t3.micro or db.r6g.large)",
           s ? s : "");
  return 1;
}

static int check_pit(const json_t *v, char *err, size_t n) {
  const char *s = json_string_value(v);
  if (s && (!strcmp(s, "latest") ||
            (strlen(s) >= 20 && s[4] == '-' && s[10] == 'T' &&
             aws_parse_time(s) > 0 &&
             (strchr(s + 19, 'Z') || strchr(s + 19, '+') || strchr(s + 19, '-')))))
    return 0;
  snprintf(err, n, "point_in_time '%s' is not 'latest' or an RFC 3339 time "
                   "with a zone (2025-01-31T23:00:00Z)", s ? s : "");
  return 1;
}

static int check_pick(const json_t *v, char *err, size_t n) {
  int64_t within;
  return aws_pick_parse(json_string_value(v), &within, err, n) ? 1 : 0;
}

/* ---- declarations ---------------------------------------------------------------- */

#define P_DRIVER                                                               \
  {.name = "driver", .type = ENG_T_STRING, .def = "\"rds\"",                   \
   .values = driver_names,                                                     \
   .doc = "the provider: rds (AWS RDS); others implement the same contract"}
#define P_CONN                                                                 \
  {.name = "endpoint", .type = ENG_T_STRING,                                   \
   .doc = "API endpoint (default AWS_ENDPOINT_URL_RDS, AWS_ENDPOINT_URL, "     \
          "then AWS's for the region)"},                                       \
  {.name = "region", .type = ENG_T_STRING,                                     \
   .doc = "region (default AWS_REGION, AWS_DEFAULT_REGION, the profile's)"}
#define P_WAIT_TIMEOUT                                                         \
  {.name = "wait_timeout", .type = ENG_T_DURATION, .def = "0",                 \
   .flags = ENG_P_MIN | ENG_P_MAX, .min = 0, .max = 7 * 86400000.0,            \
   .doc = "stop waiting after this long (0: the step's timeout decides)"}

static const char *const snapshot_types[] = {"automated", "manual", NULL};

static const eng_param snapshot_params[] = {
    P_DRIVER,
    {.name = "instance", .type = ENG_T_STRING, .flags = ENG_P_REQUIRED,
     .doc = "the instance to snapshot (read, not changed)"},
    {.name = "snapshot_id", .type = ENG_T_STRING, .check = check_identifier,
     .doc = "the new snapshot's identifier (default INSTANCE-RUN_ID)"},
    {.name = "wait", .type = ENG_T_BOOL, .def = "true",
     .doc = "wait until the snapshot is available"},
    P_WAIT_TIMEOUT, P_CONN};
static const eng_output snapshot_outputs[] = {
    {"snapshot_id", ENG_T_STRING, "the snapshot's identifier"},
    {"instance", ENG_T_STRING, "the instance it was taken from"},
    {"created_at", ENG_T_STRING, "when it was taken (RFC 3339)"},
    {"status", ENG_T_STRING, "available (or creating with wait: false)"},
    {"snapshot_type", ENG_T_STRING, "manual"},
    {"engine_version", ENG_T_STRING, "PostgreSQL version of the instance"},
    {"wait_ms", ENG_T_INT, "from the request until the answer (or available)"}};

static const eng_param snapshots_params[] = {
    P_DRIVER,
    {.name = "instance", .type = ENG_T_STRING,
     .doc = "only this instance's snapshots (default: all)"},
    {.name = "type", .type = ENG_T_STRING, .values = snapshot_types,
     .doc = "automated or manual (default: both)"},
    {.name = "pick", .type = ENG_T_STRING, .def = "\"latest\"", .check = check_pick,
     .doc = "latest (newest available), random_within:DURATION (a random "
            "available one younger than DURATION, e.g. random_within:7d) or "
            "none; picking from nothing fails"},
    P_CONN};
static const eng_output snapshots_outputs[] = {
    {"snapshots", ENG_T_LIST,
     "each {snapshot_id, instance, status, type, engine, engine_version, "
     "created_at, age_s, storage_gb}"},
    {"count", ENG_T_INT, "how many were listed"},
    {"picked", ENG_T_MAP, "the picked snapshot (same fields) or null (pick: none)"}};

static const eng_param restore_params[] = {
    P_DRIVER,
    {.name = "instance", .type = ENG_T_STRING, .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_INSTANCE, .check = check_identifier,
     .doc = "identifier of the NEW instance (must not exist; journaled and "
            "removed by finally / engine cleanup)"},
    {.name = "snapshot_id", .type = ENG_T_STRING,
     .doc = "restore this snapshot (or point_in_time + source_instance)"},
    {.name = "point_in_time", .type = ENG_T_STRING, .check = check_pit,
     .doc = "latest, or an RFC 3339 time inside the source's restorable window"},
    {.name = "source_instance", .type = ENG_T_STRING,
     .doc = "the instance whose backups a point-in-time restore uses"},
    {.name = "instance_class", .type = ENG_T_STRING, .check = check_class,
     .doc = "e.g. db.t3.micro (default: the snapshot's / source's)"},
    {.name = "allocated_storage", .type = ENG_T_INT, .flags = ENG_P_MIN,
     .min = 0, .def = "0", .doc = "GiB (0: the snapshot's / source's)"},
    {.name = "publicly_accessible", .type = ENG_T_BOOL,
     .doc = "give the copy a public address (default: as the provider decides)"},
    {.name = "wait", .type = ENG_T_BOOL, .def = "true",
     .doc = "wait until the instance is available"},
    P_WAIT_TIMEOUT, P_CONN};
static const eng_output instance_outputs[] = {
    {"instance", ENG_T_STRING, "identifier"},
    {"status", ENG_T_STRING, "available, creating, ... (the provider's word)"},
    {"endpoint", ENG_T_STRING, "host name to connect to (empty until known)"},
    {"port", ENG_T_INT, "port (0 until known)"},
    {"engine", ENG_T_STRING, "postgres"},
    {"engine_version", ENG_T_STRING, "PostgreSQL version"},
    {"instance_class", ENG_T_STRING, "size class"},
    {"created_at", ENG_T_STRING, "when the instance was created (RFC 3339)"},
    {"latest_restorable_time", ENG_T_STRING, "newest point-in-time restore target"}};
static const eng_output restore_outputs[] = {
    {"instance", ENG_T_STRING, "identifier of the new instance"},
    {"status", ENG_T_STRING, "available (or creating with wait: false)"},
    {"endpoint", ENG_T_STRING, "host name to connect to"},
    {"port", ENG_T_INT, "port"},
    {"engine", ENG_T_STRING, "postgres"},
    {"engine_version", ENG_T_STRING, "PostgreSQL version"},
    {"instance_class", ENG_T_STRING, "size class"},
    {"created_at", ENG_T_STRING, "when the instance was created (RFC 3339)"},
    {"latest_restorable_time", ENG_T_STRING, "newest point-in-time restore target"},
    {"restore_ms", ENG_T_INT, "from the restore request until available"},
    {"source", ENG_T_STRING, "the snapshot or source instance restored"}};

static const eng_param describe_params[] = {
    P_DRIVER,
    {.name = "instance", .type = ENG_T_STRING, .flags = ENG_P_REQUIRED,
     .doc = "the instance"},
    P_CONN};

static const eng_param delete_instance_params[] = {
    P_DRIVER,
    {.name = "instance", .type = ENG_T_STRING, .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_INSTANCE,
     .doc = "the instance (protected ones are refused; one this run did not "
            "create needs --allow-destructive)"},
    {.name = "skip_final_snapshot", .type = ENG_T_BOOL, .def = "false",
     .doc = "delete without a final snapshot (undo of restore does)"},
    {.name = "final_snapshot_id", .type = ENG_T_STRING, .check = check_identifier,
     .doc = "the final snapshot's identifier (default INSTANCE-final-TIME)"},
    {.name = "if_exists", .type = ENG_T_BOOL, .def = "false",
     .doc = "succeed when the instance does not exist"},
    {.name = "wait", .type = ENG_T_BOOL, .def = "false",
     .doc = "wait until the instance is gone"},
    P_WAIT_TIMEOUT, P_CONN};
static const eng_output delete_instance_outputs[] = {
    {"status", ENG_T_STRING, "deleting, deleted (wait: true) or absent"},
    {"final_snapshot_id", ENG_T_STRING, "the final snapshot, or empty"}};

static const eng_param delete_snapshot_params[] = {
    P_DRIVER,
    {.name = "snapshot_id", .type = ENG_T_STRING, .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_SNAPSHOT,
     .doc = "the snapshot (refused when it or its instance is protected; one "
            "this run did not create needs --allow-destructive)"},
    {.name = "if_exists", .type = ENG_T_BOOL, .def = "false",
     .doc = "succeed when the snapshot does not exist"},
    P_CONN};
static const eng_output delete_snapshot_outputs[] = {
    {"status", ENG_T_STRING, "deleted or absent"}};

#define ACTION(n, d, side, fl, prm, out, fn)                                   \
  {.name = n, .doc = d, .side_effect = side, .flags = fl, .params = prm,       \
   .n_params = ENG_COUNT(prm), .outputs = out, .n_outputs = ENG_COUNT(out),    \
   .start = fn}

static const eng_action actions[] = {
    ACTION("snapshot", "take a snapshot of an instance (journaled; undo: "
           "delete_snapshot)", ENG_SIDE_CREATES, 0, snapshot_params,
           snapshot_outputs, snapshot_start),
    ACTION("snapshots", "list snapshots (paged) and pick one: latest, "
           "random_within:7d or none", ENG_SIDE_READ_ONLY, ENG_A_REPEAT_SAFE,
           snapshots_params, snapshots_outputs, snapshots_start),
    ACTION("restore", "restore a snapshot or a point in time as a NEW instance "
           "and wait until available (journaled; undo: delete_instance)",
           ENG_SIDE_CREATES, 0, restore_params, restore_outputs, restore_start),
    ACTION("describe", "an instance's status, endpoint, port and engine "
           "version", ENG_SIDE_READ_ONLY, ENG_A_REPEAT_SAFE, describe_params,
           instance_outputs, describe_start),
    ACTION("delete_instance", "delete an instance (protected ones never; one "
           "this run did not create needs --allow-destructive)",
           ENG_SIDE_DESTRUCTIVE, ENG_A_REPEAT_SAFE, delete_instance_params,
           delete_instance_outputs, delete_instance_start),
    ACTION("delete_snapshot", "delete a snapshot (the undo of snapshot)",
           ENG_SIDE_DESTRUCTIVE, ENG_A_REPEAT_SAFE, delete_snapshot_params,
           delete_snapshot_outputs, delete_snapshot_start),
};

static const eng_plugin provider_plugin = {
    ENG_PLUGIN_HEADER,
    .name = "provider",
    .version = "0.1.0",
    .doc = "managed PostgreSQL: snapshots, restores as new instances, "
           "describe and delete (driver rds: AWS RDS)",
    .actions = actions,
    .n_actions = ENG_COUNT(actions),
    .init = provider_init,
};

ENG_PLUGIN_DEFINE(provider_plugin)
