/* manifest.c - the Kubernetes objects of a checked inventory (fleet.c
 * reads it): a database's ConfigMap and CronJob, written as YAML, and the
 * next times each CronJob starts. docs/fleet.md says why each field is
 * what it is. */
#include "fleet/fleet_int.h"
#include "fleet/cron.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
  json_object_set_new(data, eng__fleet_base_name(db->runbook_path),
                      json_string(db->runbook_text));
  json_t *cm = json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", "v1", "kind",
                         "ConfigMap", "metadata", metadata(f, db, name),
                         "data", data);
  free(name);
  return cm;
}

static json_t *secret_env(const char *var, const char *secret, const char *key,
                          bool optional) {
  json_t *ref = json_pack("{s:s, s:s}", "name", secret, "key", key);
  if (optional) json_object_set_new(ref, "optional", json_true());
  return json_pack("{s:s, s:{s:o}}", "name", var, "valueFrom", "secretKeyRef",
                   ref);
}

static json_t *value_env(const char *var, const char *value) {
  return json_pack("{s:s, s:s}", "name", var, "value", value);
}

static void add_arg(json_t *args, const char *flag, const char *value) {
  json_array_append_new(args, json_string(flag));
  if (value) json_array_append_new(args, json_string(value));
}

/* `engine run`'s arguments: the runbook, the state, the lock, the grace,
 * the database's run options, approvals and parameters. */
static json_t *run_args(const eng__fleet *f, const fleet_db *db) {
  char grace[32], jobs[32];
  snprintf(grace, sizeof grace, "%llds",
           (long long)((db->pod.grace_ms + 999) / 1000));
  char *path = db->runbook_path
                   ? eng__asprintf(CONFIGMAP_DIR "/%s", eng__fleet_base_name(db->runbook_path))
                   : eng__asprintf(IMAGE_RUNBOOK_DIR "/%s", db->runbook);
  json_t *args = json_pack("[s, s, s, s, s, s, s, s]", "run", path,
                           "--state-dir", f->def.state, "--lock", db->lock,
                           "--grace", grace);
  free(path);
  if (db->pod.jobs) {
    snprintf(jobs, sizeof jobs, "%ld", db->pod.jobs);
    add_arg(args, "--jobs", jobs);
  }
  if (db->allow_destructive) add_arg(args, "--allow-destructive", NULL);
  if (f->def.pushgateway) add_arg(args, "--pushgateway", f->def.pushgateway);
  for (size_t i = 0; db->approve && i < db->approve->n; i++)
    add_arg(args, "--approve", db->approve->vals[i]->str);
  for (size_t i = 0; db->params && i < db->params->n; i++) {
    char *kv = eng__asprintf("%s=%s", db->params->keys[i]->str,
                             db->params->vals[i]->str);
    add_arg(args, "-p", kv);
    free(kv);
  }
  return args;
}

/* One variable the inventory gives: its value, or its Secret's key. */
static json_t *inventory_env(const eng__pod_env *e) {
  if (e->literal) return value_env(e->name, e->node->str);
  const eng__node *key = eng__node_get(e->node, "key");
  return secret_env(e->name, eng__node_get(e->node, "secret")->str,
                    key ? key->str : e->name, false);
}

static json_t *container_env(const eng__fleet *f, const fleet_db *db) {
  const fleet_defaults *def = &f->def;
  size_t n = 0;
  eng__pod_env *all = eng__fleet_pod_env(def, db, &n);
  bool own_slack = false, own_audit = false;
  for (size_t i = N_RENDER_ENV; i < n; i++) {
    own_slack |= !strcmp(all[i].name, "SLACK_WEBHOOK_URL");
    own_audit |= !strcmp(all[i].name, "ENGINE_AUDIT_KEY");
  }
  json_t *env = json_array();
  json_array_append_new(env, secret_env("DATABASE_URL", db->url_secret,
                                        "DATABASE_URL", false));
  if (*def->slack_secret && !own_slack)
    json_array_append_new(env, secret_env("SLACK_WEBHOOK_URL", def->slack_secret,
                                          "SLACK_WEBHOOK_URL", true));
  if (*def->audit_secret && !own_audit)
    json_array_append_new(env, secret_env("ENGINE_AUDIT_KEY", def->audit_secret,
                                          "ENGINE_AUDIT_KEY", true));
  for (size_t i = N_RENDER_ENV; i < n; i++)
    json_array_append_new(env, inventory_env(&all[i]));
  free(all);
  json_array_append_new(env, value_env("ENGINE_STATE_DIR", def->state));
  json_array_append_new(env, value_env("ENGINE_LOG_FORMAT", "json"));
  json_array_append_new(env, value_env("HOME", "/tmp"));
  json_array_append_new(env, value_env("TMPDIR", "/tmp"));
  return env;
}

/* requests and limits, each only with what is set. */
static json_t *resources(const fleet_pod *pod) {
  static const char *const part[] = {"requests", "limits"}, *const kind[] = {"cpu", "memory"};
  json_t *res = json_object();
  for (size_t t = 0; t < 2; t++) {
    json_t *x = json_object();
    for (size_t k = 0; k < 2; k++)
      if (pod->res[t * 2 + k])
        json_object_set_new(x, kind[k], json_string(pod->res[t * 2 + k]));
    if (json_object_size(x)) json_object_set_new(res, part[t], x);
    else json_decref(x);
  }
  return res;
}

static json_t *container(const eng__fleet *f, const fleet_db *db) {
  const fleet_defaults *def = &f->def;
  json_t *c = json_pack("{s:s, s:s, s:s, s:o, s:o}", "name", CONTAINER,
                        "image", def->image, "imagePullPolicy",
                        def->pull_policy, "args", run_args(f, db), "env",
                        container_env(f, db));
  if (*def->aws_secret)
    json_object_set_new(c, "envFrom",
                        json_pack("[{s:{s:s}}]", "secretRef", "name",
                                  def->aws_secret));
  json_object_set_new(c, "resources", resources(&db->pod));
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
  json_t *volumes = json_pack("[{s:s, s:{s:s}}]", "name", "scratch",
                              "emptyDir", "sizeLimit", db->pod.scratch);
  if (db->runbook_path) {
    char *cm = configmap_name(db);
    json_array_append_new(volumes, json_pack("{s:s, s:{s:s}}", "name",
                                             "runbook", "configMap", "name", cm));
    free(cm);
  }
  /* the engine's grace for `finally`, then time for it to write its
   * records and exit before the kubelet's SIGKILL */
  long long term = (db->pod.grace_ms + 999) / 1000 + 15;
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
      "{s:I, s:I, s:I, s:o, s:{s:{s:o}, s:o}}", "backoffLimit",
      (json_int_t)def->backoff_limit, "activeDeadlineSeconds",
      (json_int_t)(def->active_deadline_ms / 1000), "ttlSecondsAfterFinished",
      (json_int_t)(def->job_ttl_ms / 1000), "podFailurePolicy", pfp,
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

int eng__fleet_render(const eng__fleet *f, const char *inventory,
                      const char *out_dir, FILE *out, const eng__diags *d) {
  const char *head = "# Generated by 'engine fleet render %s': edit the "
                     "inventory and render again.\n";
  int code = ENG_EXIT_OK;
  if (out_dir && eng__mkdir_p(out_dir, 0755) != 0) {
    fprintf(stderr, "engine: cannot create %s: %s\n", out_dir, strerror(errno));
    code = ENG_EXIT_FAILED;
  }
  eng__buf all = {0};
  eng__buf_addf(&all, head, eng__fleet_base_name(inventory));
  for (size_t i = 0; code == ENG_EXIT_OK && i < f->n; i++) {
    if (!out_dir) {
      db_yaml(f, i, &all);
      continue;
    }
    eng__buf b = {0};
    eng__buf_addf(&b, head, eng__fleet_base_name(inventory));
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
  return code;
}
