/*
 * slack.c - the slack plugin: slack.post through an incoming webhook or
 * chat.postMessage, with the run's summary as Block Kit.
 *
 * Delivery: a webhook answers by HTTP status ("ok" with 200);
 * chat.postMessage answers 200 with {"ok": false, "error": ...}: both are
 * checked. 429 waits for Retry-After, also `ratelimited` in a body; 5xx and
 * connection errors are retried with backoff; permanent answers fail at
 * once with what to do. The webhook URL and the token are secrets: they
 * never reach a log, a report or the message.
 */
#include "notify.h"

#include <engine/mem.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const eng_host *host;

/* Slack's limits (Block Kit). */
#define MAX_BLOCKS 50
#define MAX_SECTION 3000
#define MAX_FIELDS 10
#define MAX_FIELD 2000
#define MAX_HEADER 150
#define MAX_TEXT 40000

typedef struct post_job {
  nt_job job; /* first */
  int api; /* chat.postMessage (else a webhook) */
  char *secret;
} post_job;

static void job_destroy(eng_op *op) {
  post_job *j = (post_job *)(void *)op;
  nt_post_free(&j->job.post);
  free(j->secret);
  free(j);
}

/* ---- the summary ----------------------------------------------------------- */

static const char *outcome_word(const char *o) {
  if (!strcmp(o, "ok")) return "succeeded";
  if (!strcmp(o, "failed")) return "FAILED";
  if (!strcmp(o, "refused")) return "REFUSED by a guard";
  if (!strcmp(o, "interrupted")) return "INTERRUPTED";
  if (!strcmp(o, "slo_missed")) return "succeeded, SLO MISSED";
  return "running";
}

static const char *outcome_icon(const char *o) {
  return !strcmp(o, "ok") ? ":white_check_mark:"
         : !strcmp(o, "running") ? ":hourglass_flowing_sand:"
         : !strcmp(o, "slo_missed") ? ":warning:"
                                    : ":x:";
}

static json_t *mrkdwn(const char *text) {
  return json_pack("{s:s, s:s}", "type", "mrkdwn", "text", text);
}

static void add_field(json_t *fields, const char *fmt, ...) ENG_PRINTF(2, 3);
static void add_field(json_t *fields, const char *fmt, ...) {
  if (json_array_size(fields) >= MAX_FIELDS) return;
  char buf[MAX_FIELD + 64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  char *t = nt_truncate(buf, MAX_FIELD);
  json_array_append_new(fields, mrkdwn(t));
  free(t);
}

static json_t *section(const char *text) {
  char *t = nt_truncate(text, MAX_SECTION);
  json_t *s = json_pack("{s:s, s:o}", "type", "section", "text", mrkdwn(t));
  free(t);
  return s;
}

/* "707ms (target 30m00s, met)"; not measured: "not measured (target 1h00m,
 * not met)" and why on the next line. */
static const char *slo_text(const json_t *slo, const char *what, char *buf,
                            size_t n) {
  char k_ms[16], k_met[16], k_target[24], k_err[24], a[32], b[32];
  snprintf(k_ms, sizeof k_ms, "%s_ms", what);
  snprintf(k_met, sizeof k_met, "%s_met", what);
  snprintf(k_target, sizeof k_target, "%s_target_ms", what);
  snprintf(k_err, sizeof k_err, "%s_error", what);
  json_t *v = json_object_get(slo, k_ms), *t = json_object_get(slo, k_target);
  if (!json_is_integer(v) && !json_is_integer(t)) return NULL;
  const char *why = json_string_value(json_object_get(slo, k_err));
  snprintf(buf, n, "%s%s%s%s%s%s",
           json_is_integer(v) ? nt_duration(json_integer_value(v), a, sizeof a)
           : !strcmp(what, "rto") ? "not measured" : "unknown",
           json_is_integer(t) ? " (target " : "",
           json_is_integer(t) ? nt_duration(json_integer_value(t), b, sizeof b) : "",
           !json_is_integer(t) ? ""
           : !json_is_integer(v) ? ", not met)"
           : json_is_true(json_object_get(slo, k_met)) ? ", met)" : ", MISSED)",
           !json_is_integer(v) && why ? "\n_" : "",
           !json_is_integer(v) && why ? why : "");
  if (!json_is_integer(v) && why && strlen(buf) + 1 < n) strcat(buf, "_");
  return buf;
}

/* Steps by how they ended, as "8 ok, 1 warn, 1 failed (continued)": from
 * the run's steps (a failure continue_on_error let pass is not a failure
 * of the run). */
static void step_counts(const json_t *st, char *out, size_t n) {
  static const char *const order[] = {"ok", "warn", "failed", "timed_out", "refused",
                                      "cancelled", "skipped", "running", "pending"};
  out[0] = '\0';
  for (size_t o = 0; o < sizeof order / sizeof *order; o++) {
    for (int cont = 0; cont < 2; cont++) {
      long long c = 0;
      size_t i;
      json_t *s;
      json_array_foreach(json_object_get(st, "steps"), i, s) {
        const char *status = json_string_value(json_object_get(s, "status"));
        if (status && !strcmp(status, order[o]) &&
            json_is_true(json_object_get(s, "continued")) == (cont == 1))
          c++;
      }
      size_t l = strlen(out);
      if (c && l < n)
        snprintf(out + l, n - l, "%s%lld %s%s", l ? ", " : "", c, order[o],
                 cont ? " (continued)" : "");
    }
  }
}

/* The run's summary as blocks, and the fallback text. */
static json_t *summary_blocks(const json_t *st, char **fallback) {
  const char *name = json_string_value(json_object_get(st, "name"));
  const char *out = json_string_value(json_object_get(st, "outcome"));
  if (!out) out = "running";
  json_t *blocks = json_array();
  char buf[MAX_SECTION + 256], a[32];
  snprintf(buf, sizeof buf, "%s %s", name ? name : "runbook", outcome_word(out));
  char *h = nt_truncate(buf, MAX_HEADER);
  json_array_append_new(blocks, json_pack("{s:s, s:{s:s, s:s, s:b}}", "type", "header",
                                          "text", "type", "plain_text", "text", h, "emoji", 1));
  free(h);
  json_t *fields = json_array();
  add_field(fields, "*Outcome*\n%s %s", outcome_icon(out), outcome_word(out));
  add_field(fields, "*Duration*\n%s",
            nt_duration(json_integer_value(json_object_get(st, "duration_ms")), a, sizeof a));
  const json_t *slo = json_object_get(st, "slo");
  char sb[1024];
  if (slo_text(slo, "rto", sb, sizeof sb)) add_field(fields, "*RTO*\n%s", sb);
  if (slo_text(slo, "rpo", sb, sizeof sb)) add_field(fields, "*RPO*\n%s", sb);
  /* steps by how they ended */
  char counts[512];
  step_counts(st, counts, sizeof counts);
  add_field(fields, "*Steps*\n%s", *counts ? counts : "none");
  add_field(fields, "*Run*\n`%s`", json_string_value(json_object_get(st, "run_id")));
  const json_t *bk = json_object_get(st, "backup");
  if (json_is_object(bk)) {
    char age[32] = "";
    if (json_is_integer(json_object_get(bk, "age_ms")))
      snprintf(age, sizeof age, ", %s old",
               nt_duration(json_integer_value(json_object_get(bk, "age_ms")), a, sizeof a));
    char sz[32];
    const char *copy = json_string_value(json_object_get(bk, "local_copy"));
    add_field(fields, "*Backup*\n`%s` (%s%s)%s%s%s", json_string_value(json_object_get(bk, "name")),
              nt_bytes(json_integer_value(json_object_get(bk, "bytes")), sz, sizeof sz), age,
              copy ? "\nlocal copy `" : "", copy ? copy : "", copy ? "`" : "");
  }
  json_array_append_new(blocks, json_pack("{s:s, s:o}", "type", "section", "fields", fields));
  const json_t *fs = json_object_get(st, "failed_step");
  const json_t *ref = json_object_get(st, "refusal");
  char *fb;
  if (!strcmp(out, "refused") && json_is_object(ref)) {
    snprintf(buf, sizeof buf, "*Refused* step `%s` by rule `%s`:\n%s",
             json_string_value(json_object_get(ref, "step")) ? json_string_value(json_object_get(ref, "step")) : "-",
             json_string_value(json_object_get(ref, "rule")) ? json_string_value(json_object_get(ref, "rule")) : "-",
             json_string_value(json_object_get(ref, "message")) ? json_string_value(json_object_get(ref, "message")) : "");
    json_array_append_new(blocks, section(buf));
    fb = NULL;
  } else if (json_is_object(fs)) {
    snprintf(buf, sizeof buf, "*Failed step* `%s` (%s):\n```%s```",
             json_string_value(json_object_get(fs, "id")),
             json_string_value(json_object_get(fs, "status")),
             json_string_value(json_object_get(fs, "error")));
    json_array_append_new(blocks, section(buf));
  }
  /* every step that did not end ok (warnings too), as long as it fits */
  char list[MAX_SECTION + 1] = "";
  size_t n_bad = 0;
  json_t *s;
  size_t i;
  json_array_foreach(json_object_get(st, "steps"), i, s) {
    const char *status = json_string_value(json_object_get(s, "status"));
    if (!status || !strcmp(status, "ok") || !strcmp(status, "pending") ||
        !strcmp(status, "running"))
      continue;
    n_bad++;
    size_t l = strlen(list);
    const char *err = json_string_value(json_object_get(s, "error"));
    if (!strcmp(status, "warn")) err = json_string_value(json_object_get(s, "warning"));
    int elen = err ? (int)strcspn(err, "\n") : 0;
    if (elen > 80) elen = 80;
    if (l < MAX_SECTION)
      snprintf(list + l, sizeof list - l, "• `%s` %s%s%s%.*s\n",
               json_string_value(json_object_get(s, "id")), status,
               json_is_true(json_object_get(s, "continued")) ? " (continued)" : "",
               err ? ": " : "", elen, err ? err : "");
  }
  if (n_bad) {
    snprintf(buf, sizeof buf, "*Steps not ok (%zu)*\n%s", n_bad, list);
    json_array_append_new(blocks, section(buf));
  }
  snprintf(buf, sizeof buf, "run directory `%s` · audit log `%s`%s%s%s",
           json_string_value(json_object_get(st, "run_dir")) ? json_string_value(json_object_get(st, "run_dir")) : "-",
           json_string_value(json_object_get(st, "audit_log")) ? json_string_value(json_object_get(st, "audit_log")) : "-",
           nt_pstr(st, "evidence") ? " · evidence `" : "", nt_pstr(st, "evidence") ? nt_pstr(st, "evidence") : "",
           nt_pstr(st, "evidence") ? "`" : "");
  char *ctx = nt_truncate(buf, MAX_SECTION);
  json_array_append_new(blocks, json_pack("{s:s, s:[o]}", "type", "context", "elements", mrkdwn(ctx)));
  free(ctx);
  /* the fallback text: notifications and clients without blocks */
  if (json_is_object(fs))
    snprintf(buf, sizeof buf, "%s %s: step %s %s: %s", name ? name : "runbook",
             outcome_word(out), json_string_value(json_object_get(fs, "id")),
             json_string_value(json_object_get(fs, "status")),
             json_string_value(json_object_get(fs, "error")));
  else if (!strcmp(out, "refused") && json_is_object(ref))
    snprintf(buf, sizeof buf, "%s %s: %s", name ? name : "runbook", outcome_word(out),
             json_string_value(json_object_get(ref, "message")) ? json_string_value(json_object_get(ref, "message")) : "");
  else
    snprintf(buf, sizeof buf, "%s %s in %s (run %s)", name ? name : "runbook",
             outcome_word(out),
             nt_duration(json_integer_value(json_object_get(st, "duration_ms")), a, sizeof a),
             json_string_value(json_object_get(st, "run_id")));
  fb = nt_truncate(buf, MAX_SECTION);
  *fallback = fb;
  return blocks;
}

/* At most MAX_BLOCKS, the last one saying what was left out. */
static void cap_blocks(json_t *blocks) {
  size_t n = json_array_size(blocks);
  if (n <= MAX_BLOCKS) return;
  char buf[128];
  snprintf(buf, sizeof buf, "…(truncated: %zu more blocks not shown)", n - (MAX_BLOCKS - 1));
  while (json_array_size(blocks) > MAX_BLOCKS - 1)
    json_array_remove(blocks, json_array_size(blocks) - 1);
  json_array_append_new(blocks, json_pack("{s:s, s:[o]}", "type", "context", "elements", mrkdwn(buf)));
}

/* ---- answers ----------------------------------------------------------------- */

static const char *explain(const char *code) {
  static const char *const table[][2] = {
      {"invalid_payload", "the message is not valid for Slack (check `blocks`)"},
      {"no_service", "the webhook does not exist or was revoked: create a new incoming webhook and update SLACK_WEBHOOK_URL"},
      {"no_team", "the webhook's workspace is gone: create a new incoming webhook"},
      {"channel_is_archived", "the channel is archived: unarchive it or create a webhook for another channel"},
      {"channel_not_found", "no such channel, or the app cannot see it: check `channel` (an id like C0123 is safest)"},
      {"not_in_channel", "the app is not a member of the channel: invite it (/invite @app)"},
      {"invalid_auth", "the token is not valid: check SLACK_BOT_TOKEN"},
      {"invalid_token", "the token is not valid: check SLACK_BOT_TOKEN"},
      {"not_authed", "no token was sent: set SLACK_BOT_TOKEN or pass token"},
      {"token_revoked", "the token was revoked: issue a new one"},
      {"account_inactive", "the token's user or app was deactivated"},
      {"missing_scope", "the token lacks the chat:write scope: add it and reinstall the app"},
      {"action_prohibited", "a workspace admin restricts posting there"},
      {"msg_too_long", "the message text is too long"},
      {"invalid_blocks", "the blocks are not valid Block Kit"},
      {"invalid_blocks_format", "`blocks` must be a list of Block Kit blocks"},
      {"too_many_attachments", "too many attachments"},
      {"user_not_found", "the user of the webhook no longer exists: create a new webhook"},
      {"posting_to_general_channel_denied", "only admins may post to #general"},
  };
  for (size_t i = 0; i < sizeof table / sizeof *table; i++)
    if (!strcmp(table[i][0], code)) return table[i][1];
  return NULL;
}

static nt_verdict judge(void *ud, const nt_answer *a, int64_t *delay,
                        char *err, size_t n) {
  post_job *j = ud;
  if (a->rc != ENG_OK) {
    snprintf(err, n, "cannot reach Slack: %s", a->error ? a->error : eng_strerror(a->rc));
    return NT_RETRY;
  }
  json_t *body = j->api ? json_loads(a->body, 0, NULL) : NULL;
  const char *code = j->api ? json_string_value(json_object_get(body, "error")) : NULL;
  char first[200];
  if (!code) { /* webhook: the body is the code ("ok", "invalid_payload") */
    snprintf(first, sizeof first, "%.*s", (int)strcspn(a->body, "\r\n"), a->body);
    code = *first ? first : NULL;
  }
  nt_verdict v;
  if (a->status == 429 || (code && (!strcmp(code, "ratelimited") || !strcmp(code, "rate_limited")))) {
    if (a->retry_after >= 0) *delay = (a->retry_after > 900 ? 900 : a->retry_after) * 1000;
    snprintf(err, n, "Slack is rate limiting (HTTP %ld%s%s)", a->status,
             a->retry_after >= 0 ? ", Retry-After " : "", a->retry_after >= 0 ? "given" : "");
    v = NT_RETRY;
  } else if (a->status >= 500) {
    snprintf(err, n, "Slack answered HTTP %ld", a->status);
    v = NT_RETRY;
  } else if (a->status == 200 && (!j->api || json_is_true(json_object_get(body, "ok")))) {
    v = NT_OK;
  } else {
    const char *why = code ? explain(code) : NULL;
    snprintf(err, n, "Slack refused the message: HTTP %ld%s%s%s%s (not retried)", a->status,
             code ? " " : "", code ? code : "", why ? ": " : "", why ? why : "");
    v = NT_FAIL;
  }
  json_decref(body);
  return v;
}

static void posted(void *ud, int rc, const char *resp, int attempts) {
  post_job *j = ud;
  if (rc != ENG_OK) {
    eng_op_finish(&j->job.op, rc);
    return;
  }
  json_t *body = j->api ? json_loads(resp, 0, NULL) : NULL;
  host->output(j->job.op.call, "ok", json_true());
  host->output(j->job.op.call, "ts", json_string(j->api && json_string_value(json_object_get(body, "ts"))
                                                 ? json_string_value(json_object_get(body, "ts")) : ""));
  host->output(j->job.op.call, "channel",
               json_string(j->api && json_string_value(json_object_get(body, "channel"))
                               ? json_string_value(json_object_get(body, "channel")) : ""));
  host->output(j->job.op.call, "attempts", json_integer(attempts));
  json_decref(body);
  eng_op_finish(&j->job.op, ENG_OK);
}

/* ---- slack.post ------------------------------------------------------------- */

static int post_start(eng_call *call, const json_t *p) {
  const char *token = nt_pstr(p, "token") ? nt_pstr(p, "token") : getenv("SLACK_BOT_TOKEN");
  const char *channel = nt_pstr(p, "channel");
  const char *webhook = nt_pstr(p, "webhook") ? nt_pstr(p, "webhook") : getenv("SLACK_WEBHOOK_URL");
  if (token && !*token) token = NULL;
  if (webhook && !*webhook) webhook = NULL;
  int api = token && channel;
  if (!api && !webhook) {
    host->fail(call, "nowhere to post: set SLACK_WEBHOOK_URL (or pass webhook), or "
                     "pass token (or set SLACK_BOT_TOKEN) with channel");
    return ENG_ERR_INVALID;
  }
  if (token && !channel && !webhook) {
    host->fail(call, "a token needs a channel: pass channel (e.g. C0123ABCD or #ops)");
    return ENG_ERR_INVALID;
  }
  const char *secret = api ? token : webhook;
  host->secret(call, secret);
  json_t *msg = json_object();
  char *fallback = NULL;
  json_t *blocks = json_array();
  const json_t *given = json_object_get(p, "blocks");
  if (json_is_array(given)) json_array_extend(blocks, (json_t *)given);
  if (json_is_true(json_object_get(p, "summary"))) {
    json_t *st = host->size >= offsetof(eng_host, run_state) + sizeof host->run_state
                     ? host->run_state(call) : NULL;
    if (st) {
      json_t *sb = summary_blocks(st, &fallback);
      json_array_extend(blocks, sb);
      json_decref(sb);
      json_decref(st);
    }
  }
  cap_blocks(blocks);
  const char *text = nt_pstr(p, "text");
  if (!text && !fallback && !json_array_size(blocks)) {
    host->fail(call, "nothing to post: give text, blocks or summary: true");
    json_decref(msg);
    json_decref(blocks);
    return ENG_ERR_INVALID;
  }
  char *t = nt_truncate(text ? text : fallback ? fallback : "(see the blocks)", MAX_TEXT);
  json_object_set_new(msg, "text", json_string(t));
  free(t);
  free(fallback);
  if (json_array_size(blocks)) json_object_set_new(msg, "blocks", blocks);
  else json_decref(blocks);
  if (api) json_object_set_new(msg, "channel", json_string(channel));
  if (nt_pstr(p, "thread_ts")) json_object_set_new(msg, "thread_ts", json_string(nt_pstr(p, "thread_ts")));
  char *raw = json_dumps(msg, JSON_COMPACT);
  json_decref(msg);
  char *body = nt_mask(raw, secret); /* the secret is never in the message */
  free(raw);
  post_job *j = eng_xcalloc(1, sizeof *j);
  j->api = api;
  j->secret = eng_xstrdup(secret);
  nt_job_init(&j->job, host, call, job_destroy);
  char url[1024];
  if (api) {
    const char *base = nt_pstr(p, "api_url") ? nt_pstr(p, "api_url") : getenv("SLACK_API_URL");
    if (!base || !*base) base = "https://slack.com/api";
    snprintf(url, sizeof url, "%s/chat.postMessage", base);
  }
  nt_post_opts o = {api ? url : webhook, body, api ? token : NULL,
                    (int)json_integer_value(json_object_get(p, "retries")), judge, j, posted};
  nt_post_start(&j->job.post, &j->job.op, &o);
  free(body);
  return ENG_OK;
}

static int init(const eng_host *h) {
  host = h;
  return 0;
}

static const eng_param post_params[] = {
    {.name = "webhook", .type = ENG_T_STRING, .flags = ENG_P_SECRET,
     .doc = "incoming webhook URL; default $SLACK_WEBHOOK_URL"},
    {.name = "token", .type = ENG_T_STRING, .flags = ENG_P_SECRET,
     .doc = "bot token (xoxb-...) for chat.postMessage, with channel; default "
            "$SLACK_BOT_TOKEN"},
    {.name = "channel", .type = ENG_T_STRING,
     .doc = "channel for chat.postMessage (an id such as C0123ABCD, or #name)"},
    {.name = "text", .type = ENG_T_STRING,
     .doc = "message text (mrkdwn); with blocks or summary it is the "
            "notification's fallback text"},
    {.name = "blocks", .type = ENG_T_LIST, .items = ENG_ITEMS_MAP,
     .doc = "Block Kit blocks (YAML or JSON); at most 50 are sent, longer "
            "content is truncated with a marker"},
    {.name = "summary", .type = ENG_T_BOOL, .def = "false",
     .doc = "add the run's summary: outcome, failed or refused step, "
            "duration, RTO/RPO, backup, steps by status, run id and where "
            "the evidence is (in `finally`: the real outcome)"},
    {.name = "thread_ts", .type = ENG_T_STRING,
     .doc = "reply in this thread: the `ts` output of an earlier post"},
    {.name = "api_url", .type = ENG_T_STRING,
     .doc = "Slack Web API base URL for chat.postMessage; default "
            "$SLACK_API_URL, then https://slack.com/api"},
    {.name = "retries", .type = ENG_T_INT, .def = "4",
     .flags = ENG_P_MIN | ENG_P_MAX, .min = 0, .max = 10,
     .doc = "retries after 429 (waiting Retry-After), 5xx or a connection "
            "error; other errors are not retried"}};
static const eng_output post_outputs[] = {
    {"ok", ENG_T_BOOL, "the message was accepted"},
    {"ts", ENG_T_STRING, "the message's ts (chat.postMessage): thread_ts of a reply"},
    {"channel", ENG_T_STRING, "the channel id (chat.postMessage)"},
    {"attempts", ENG_T_INT, "requests sent"}};
static const eng_action actions[] = {
    {.name = "post", .doc = "post a message (text, blocks, the run's summary) "
                            "to Slack",
     .side_effect = ENG_SIDE_EXTERNAL, .params = post_params,
     .n_params = ENG_COUNT(post_params), .outputs = post_outputs,
     .n_outputs = ENG_COUNT(post_outputs), .start = post_start}};

static const eng_plugin desc = {ENG_PLUGIN_HEADER, .name = "slack", .version = "1",
                                .doc = "Slack messages: webhooks and chat.postMessage",
                                .actions = actions, .n_actions = ENG_COUNT(actions),
                                .init = init};
ENG_PLUGIN_DEFINE(desc)
