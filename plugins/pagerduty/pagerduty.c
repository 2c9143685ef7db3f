/*
 * pagerduty.c - the pagerduty plugin: pagerduty.event sends an Events API
 * v2 event (trigger, acknowledge, resolve). The dedup key defaults to one
 * derived from the runbook's name, so the drill that succeeds after a
 * failed one resolves the incident the failed one opened. 202 is success;
 * 400 fails with PagerDuty's reasons; 429 and 5xx are retried.
 */
#include "notify.h"

#include <engine/mem.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const eng_host *host;

typedef struct ev_job {
  nt_job job; /* first */
  char *dedup_key;
} ev_job;

static void job_destroy(eng_op *op) {
  ev_job *j = (ev_job *)(void *)op;
  nt_post_free(&j->job.post);
  free(j->dedup_key);
  free(j);
}

static nt_verdict judge(void *ud, const nt_answer *a, int64_t *delay,
                        char *err, size_t n) {
  (void)ud;
  if (a->rc != ENG_OK) {
    snprintf(err, n, "cannot reach PagerDuty: %s", a->error ? a->error : eng_strerror(a->rc));
    return NT_RETRY;
  }
  if (a->status == 202 || a->status == 200) return NT_OK;
  if (a->status == 429) {
    if (a->retry_after >= 0) *delay = (a->retry_after > 900 ? 900 : a->retry_after) * 1000;
    snprintf(err, n, "PagerDuty is rate limiting (HTTP 429)");
    return NT_RETRY;
  }
  if (a->status >= 500) {
    snprintf(err, n, "PagerDuty answered HTTP %ld", a->status);
    return NT_RETRY;
  }
  json_t *body = json_loads(a->body, 0, NULL);
  char why[600] = "";
  json_t *e;
  size_t i;
  json_array_foreach(json_object_get(body, "errors"), i, e) {
    size_t l = strlen(why);
    if (json_is_string(e) && l < sizeof why - 2)
      snprintf(why + l, sizeof why - l, "%s%s", l ? "; " : "", json_string_value(e));
  }
  const char *msg = json_string_value(json_object_get(body, "message"));
  snprintf(err, n, "PagerDuty refused the event: HTTP %ld%s%s%s%s%s (not retried)", a->status,
           msg ? " " : "", msg ? msg : "", *why ? ": " : "", why,
           a->status == 400 && strstr(why, "routing") ? " (check PAGERDUTY_ROUTING_KEY)" : "");
  json_decref(body);
  return NT_FAIL;
}

static void sent(void *ud, int rc, const char *resp, int attempts) {
  ev_job *j = ud;
  if (rc != ENG_OK) {
    eng_op_finish(&j->job.op, rc);
    return;
  }
  json_t *body = json_loads(resp, 0, NULL);
  const char *key = json_string_value(json_object_get(body, "dedup_key"));
  const char *status = json_string_value(json_object_get(body, "status"));
  host->output(j->job.op.call, "dedup_key", json_string(key ? key : j->dedup_key));
  host->output(j->job.op.call, "status", json_string(status ? status : "success"));
  host->output(j->job.op.call, "attempts", json_integer(attempts));
  json_decref(body);
  eng_op_finish(&j->job.op, ENG_OK);
}

/* "engine-" and the runbook's name: the same for every run of it. */
static char *default_key(const json_t *st) {
  const char *name = json_string_value(json_object_get(st, "name"));
  char buf[300];
  snprintf(buf, sizeof buf, "engine-%s", name && *name ? name : "runbook");
  return eng_xstrdup(buf);
}

static char *default_summary(const json_t *st) {
  char buf[1100];
  const char *name = json_string_value(json_object_get(st, "name"));
  const char *out = json_string_value(json_object_get(st, "outcome"));
  const json_t *fs = json_object_get(st, "failed_step");
  if (json_is_object(fs))
    snprintf(buf, sizeof buf, "%s %s: step %s %s: %s", name ? name : "runbook",
             out ? out : "", json_string_value(json_object_get(fs, "id")),
             json_string_value(json_object_get(fs, "status")),
             json_string_value(json_object_get(fs, "error")));
  else
    snprintf(buf, sizeof buf, "%s %s (run %s)", name ? name : "runbook", out ? out : "",
             json_string_value(json_object_get(st, "run_id")));
  return nt_truncate(buf, 1024);
}

static int event_start(eng_call *call, const json_t *p) {
  const char *key = nt_pstr(p, "routing_key") ? nt_pstr(p, "routing_key") : getenv("PAGERDUTY_ROUTING_KEY");
  if (!key || !*key) {
    host->fail(call, "no routing key: set PAGERDUTY_ROUTING_KEY or pass routing_key "
                     "(the integration key of an Events API v2 service)");
    return ENG_ERR_INVALID;
  }
  host->secret(call, key);
  const char *action = nt_pstr(p, "action");
  json_t *st = host->size >= offsetof(eng_host, run_state) + sizeof host->run_state
                   ? host->run_state(call) : NULL;
  ev_job *j = eng_xcalloc(1, sizeof *j);
  j->dedup_key = nt_pstr(p, "dedup_key") ? eng_xstrdup(nt_pstr(p, "dedup_key")) : default_key(st);
  json_t *ev = json_pack("{s:s, s:s, s:s}", "routing_key", key, "event_action", action,
                         "dedup_key", j->dedup_key);
  if (!strcmp(action, "trigger")) {
    char host_name[256] = "";
    gethostname(host_name, sizeof host_name - 1);
    char *summary = nt_pstr(p, "summary") ? nt_truncate(nt_pstr(p, "summary"), 1024) : default_summary(st);
    json_t *details = json_deep_copy(json_object_get(p, "custom_details"));
    if (!json_is_object(details) && st) {
      json_decref(details);
      details = json_pack("{s:O?, s:O?, s:O?, s:O?, s:O?, s:O?, s:O?}", "run_id",
                          json_object_get(st, "run_id"), "runbook", json_object_get(st, "runbook"),
                          "outcome", json_object_get(st, "outcome"), "failed_step",
                          json_object_get(st, "failed_step"), "refusal", json_object_get(st, "refusal"),
                          "slo", json_object_get(st, "slo"), "counts", json_object_get(st, "counts"));
    }
    json_t *payload = json_pack("{s:s, s:s, s:s}", "summary", summary, "source",
                                nt_pstr(p, "source") ? nt_pstr(p, "source") : host_name,
                                "severity", nt_pstr(p, "severity"));
    if (details) json_object_set_new(payload, "custom_details", details);
    json_object_set_new(ev, "payload", payload);
    free(summary);
  }
  json_decref(st);
  char *raw = json_dumps(ev, JSON_COMPACT);
  json_decref(ev);
  nt_job_init(&j->job, host, call, job_destroy);
  const char *url = nt_pstr(p, "endpoint") ? nt_pstr(p, "endpoint") : getenv("PAGERDUTY_EVENTS_URL");
  if (!url || !*url) url = "https://events.pagerduty.com/v2/enqueue";
  nt_post_opts o = {url, raw, NULL,
                    (int)json_integer_value(json_object_get(p, "retries")), judge, j, sent};
  nt_post_start(&j->job.post, &j->job.op, &o);
  free(raw);
  return ENG_OK;
}

static int init(const eng_host *h) {
  host = h;
  return 0;
}

static const char *const actions_v[] = {"trigger", "acknowledge", "resolve", NULL};
static const char *const severities[] = {"critical", "error", "warning", "info", NULL};

static const eng_param event_params[] = {
    {.name = "action", .type = ENG_T_STRING, .def = "\"trigger\"", .values = actions_v,
     .doc = "trigger opens (or updates) an incident; acknowledge; resolve "
            "closes it"},
    {.name = "routing_key", .type = ENG_T_STRING, .flags = ENG_P_SECRET,
     .doc = "integration key of an Events API v2 service; default "
            "$PAGERDUTY_ROUTING_KEY"},
    {.name = "dedup_key", .type = ENG_T_STRING,
     .doc = "the incident's key; default engine-RUNBOOK_NAME, so a later "
            "resolve pairs with the trigger of a failed drill"},
    {.name = "severity", .type = ENG_T_STRING, .def = "\"error\"", .values = severities,
     .doc = "trigger: critical, error, warning or info"},
    {.name = "summary", .type = ENG_T_STRING,
     .doc = "trigger: one line (at most 1024 characters); default the run's "
            "outcome and failed step"},
    {.name = "source", .type = ENG_T_STRING, .doc = "trigger: where it happened; default this host"},
    {.name = "custom_details", .type = ENG_T_MAP,
     .doc = "trigger: details; default the run's outcome, failed step, SLO "
            "and step counts"},
    {.name = "endpoint", .type = ENG_T_STRING,
     .doc = "Events API v2 URL; default $PAGERDUTY_EVENTS_URL, then "
            "https://events.pagerduty.com/v2/enqueue"},
    {.name = "retries", .type = ENG_T_INT, .def = "4", .flags = ENG_P_MIN | ENG_P_MAX,
     .min = 0, .max = 10, .doc = "retries after 429, 5xx or a connection error"}};
static const eng_output event_outputs[] = {
    {"dedup_key", ENG_T_STRING, "the incident's key"},
    {"status", ENG_T_STRING, "PagerDuty's status (success)"},
    {"attempts", ENG_T_INT, "requests sent"}};
static const eng_action actions[] = {
    {.name = "event", .doc = "send a PagerDuty Events API v2 event",
     .side_effect = ENG_SIDE_EXTERNAL, .flags = ENG_A_REPEAT_SAFE,
     .params = event_params, .n_params = ENG_COUNT(event_params),
     .outputs = event_outputs, .n_outputs = ENG_COUNT(event_outputs),
     .start = event_start}};

static const eng_plugin desc = {ENG_PLUGIN_HEADER, .name = "pagerduty", .version = "1",
                                .doc = "PagerDuty incidents (Events API v2)",
                                .actions = actions, .n_actions = ENG_COUNT(actions),
                                .init = init};
ENG_PLUGIN_DEFINE(desc)
