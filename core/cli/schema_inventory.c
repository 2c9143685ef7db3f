/* schema_inventory.c - `engine schema --inventory`: the JSON Schema of a
 * fleet inventory (docs/fleet.md), keyed by the reader's own lists
 * (eng__fleet_keysets). */
#include "cli/cli.h"

#define SECRET_NAME "^[a-z0-9.-]*$"

static void add(json_t *o, const char *key, json_t *s, const char *text) {
  json_object_set_new(o, key, schema_doc(s, text));
}

/* env: NAME: VALUE or NAME: { secret: NAME, key: KEY }. */
static json_t *env_schema(const char *at) {
  char path[64];
  snprintf(path, sizeof path, "%s.env.*", at);
  json_t *ref = json_object();
  add(ref, "secret", schema_typed("string", NULL, SECRET_NAME, "the name of a Kubernetes Secret"),
      "The Secret the variable is read from.");
  add(ref, "key", schema_typed("string", NULL, "^[-._a-zA-Z0-9]+$", "a Secret's key"),
      "Its key (the variable's name when left out).");
  json_t *m = schema_mapping(eng__fleet_keysets, path, ref);
  if (m) json_object_set_new(m, "required", json_pack("[s]", "secret"));
  return json_pack("{s:s, s:{s:s}, s:{s:[o,o]}}", "type", "object", "propertyNames",
                   "pattern", "^[A-Za-z_][A-Za-z0-9_]*$", "additionalProperties", "anyOf",
                   schema_scalar(), m ? m : json_object());
}

static json_t *quantities(const char *at, const char *which) {
  char path[64];
  snprintf(path, sizeof path, "%s.resources.%s", at, which);
  json_t *q = json_object();
  add(q, "cpu", schema_typed("string", "number", "^[0-9.]+m?$", "cores, such as 500m or 2"),
      "CPU cores.");
  add(q, "memory",
      schema_typed("string", "number", "^[0-9.]+([kMGT]|[KMGT]i)?$", "bytes, such as 512Mi or 2Gi"),
      "Memory.");
  return schema_mapping(eng__fleet_keysets, path, q);
}

/* The pod's settings, in defaults or a database (at; the database's win). */
static void pod_keys(json_t *d, const char *at) {
  char path[64];
  snprintf(path, sizeof path, "%s.resources", at);
  add(d, "grace", schema_duration(false),
      "How long the engine has to cancel and run finally when the pod stops.");
  add(d, "jobs", schema_int(1, 64, false), "The run's --jobs.");
  add(d, "env", env_schema(at), "More environment variables of the pod.");
  json_t *r = json_object();
  add(r, "requests", quantities(at, "requests"), "What the pod is scheduled with.");
  add(r, "limits", quantities(at, "limits"), "What the pod may use at most.");
  add(d, "resources", schema_mapping(eng__fleet_keysets, path, r),
      "The pod's requests and limits (cpu, memory).");
  add(d, "scratch_size",
      schema_typed("string", NULL, "^[0-9.]+([kMGT]|[KMGT]i)?$", "bytes, such as 20Gi"),
      "The size limit of the pod's scratch directory (dumps).");
}

static json_t *database(void) {
  json_t *d = json_object();
  add(d, "name",
      schema_typed("string", NULL, "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$",
                   "lower-case letters, digits and '-' (not first or last), "
                   "at most 40 characters"),
      "Names the CronJob (engine-NAME), its ConfigMap and the run lock.");
  add(d, "url_secret",
      schema_typed("string", NULL, SECRET_NAME, "the name of a Kubernetes Secret"),
      "The Secret whose key DATABASE_URL the runbook connects with.");
  add(d, "schedule", schema_typed("string", NULL, NULL, NULL),
      "Five cron fields (minute hour day-of-month month day-of-week) or "
      "@hourly, @daily, @weekly, @monthly, @yearly; in defaults.time_zone.");
  add(d, "runbook", schema_typed("string", NULL, NULL, NULL),
      "A runbook file next to the inventory, or one the image ships.");
  add(d, "params",
      json_pack("{s:s, s:o}", "type", "object", "additionalProperties",
                schema_scalar()),
      "Parameters of the run: each NAME: VALUE becomes -p NAME=VALUE.");
  add(d, "approve", json_pack("{s:s, s:o}", "type", "array", "items", schema_scalar()),
      "The runbook's approve steps this database's runs are approved for.");
  add(d, "allow_destructive", schema_bool(false), "The run's --allow-destructive.");
  add(d, "lock",
      schema_typed("string", NULL, "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$", "a lock name"),
      "The run lock's name (the database's name by default).");
  pod_keys(d, "databases[]");
  json_t *m = schema_mapping(eng__fleet_keysets, "databases[]", d);
  if (m)
    json_object_set_new(m, "required",
                        json_pack("[s,s,s,s]", "name", "url_secret", "schedule", "runbook"));
  return m;
}

static json_t *defaults(void) {
  json_t *d = json_object();
  add(d, "state", schema_typed("string", NULL, "^s3://[^/]+", "s3://BUCKET/PREFIX"),
      "Where every run keeps its journal, audit log, reports and lock.");
  add(d, "image", schema_typed("string", NULL, "^[^ \t\n]+$", "an image reference"),
      "The engine's container image.");
  add(d, "image_pull_policy",
      json_pack("{s:[s,s,s]}", "enum", "IfNotPresent", "Always", "Never"),
      "When the cluster pulls the image.");
  add(d, "job_ttl", schema_duration(false),
      "How long a finished Job and its pod's logs are kept.");
  pod_keys(d, "defaults");
  add(d, "pushgateway", schema_typed("string", NULL, "^https?://[^@/]+(/.*)?$",
                                     "an http:// or https:// URL without credentials"),
      "The Pushgateway every run pushes its metrics to (--pushgateway).");
  add(d, "time_zone", schema_typed("string", NULL, NULL, NULL),
      "The CronJob's time zone: a tz database name such as Europe/Berlin.");
  add(d, "namespace",
      schema_typed("string", NULL, "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$",
                   "a Kubernetes namespace name"),
      "Every object's namespace.");
  add(d, "aws_secret", schema_typed("string", NULL, SECRET_NAME, "the name of a Secret, or \"\""),
      "A Secret whose every key becomes an environment variable (\"\": none).");
  add(d, "slack_secret", schema_typed("string", NULL, SECRET_NAME, "the name of a Secret, or \"\""),
      "The Secret with SLACK_WEBHOOK_URL (\"\": none).");
  add(d, "audit_secret", schema_typed("string", NULL, SECRET_NAME, "the name of a Secret, or \"\""),
      "The Secret with ENGINE_AUDIT_KEY (\"\": none).");
  add(d, "grace", schema_duration(false),
      "How long the engine has to cancel and run finally when the pod stops.");
  add(d, "active_deadline", schema_duration(false), "The longest a run may take.");
  add(d, "starting_deadline", schema_duration(false),
      "A run that could not start within this of its time is skipped.");
  add(d, "backoff_limit", schema_int(0, 10, false),
      "How many more pods a run may get after a failure a retry can fix.");
  add(d, "spread", schema_int(0, 59, false),
      "Minutes between databases that share a schedule (0: no spreading).");
  json_t *m = schema_mapping(eng__fleet_keysets, "defaults", d);
  if (m) json_object_set_new(m, "required", json_pack("[s]", "state"));
  return m;
}

json_t *schema_inventory(void) {
  json_t *top = json_object();
  add(top, "databases",
      json_pack("{s:s, s:i, s:o*}", "type", "array", "minItems", 1, "items", database()),
      "The databases, each with its runbook and schedule.");
  add(top, "defaults", defaults(), "Settings of every database's CronJob.");
  json_t *m = schema_mapping(eng__fleet_keysets, "", top);
  if (!m || !json_object_get(json_object_get(m, "properties"), "defaults") ||
      !json_object_get(json_object_get(json_object_get(m, "properties"), "databases"), "items")) {
    json_decref(m);
    return NULL;
  }
  json_object_set_new(m, "$schema", json_string("https://json-schema.org/draft/2020-12/schema"));
  json_object_set_new(m, "title", json_string("engine fleet inventory"));
  json_object_set_new(m, "required", json_pack("[s,s]", "databases", "defaults"));
  return m;
}
