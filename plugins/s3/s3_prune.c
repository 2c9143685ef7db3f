/*
 * s3_prune.c - s3.prune: retention for a prefix of backups in S3
 * (docs/retention.md).
 *
 * Phases, one request at a time on the engine's loop: LIST the prefix
 * (every page), ask the host's retention rule (host->retention_plan, the
 * rule the local `prune` uses) which backups to keep, HEAD each one it
 * gives up to read its object lock (x-amz-object-lock-mode and
 * -retain-until-date) and decide again with the locks known, hold every
 * backup still given up to the guards (protected_buckets; the evidence
 * names the rule, so the audit log says why) before deleting any, then
 * DELETE each with its sidecars (KEY.sha256, KEY.verified,
 * KEY.manifest.json). A KEY.verified object is the marker a drill writes
 * (the `mark_verified` action). Memory: the listing (at most
 * PR_MAX_OBJECTS keys). A failure half-way ends the step failed; the
 * outputs list what was deleted before it.
 */
#include "s3_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define H s3_host
/* More keys than this under one prefix is a prefix that names the wrong
 * place (or a bucket of WAL files). */
#define PR_MAX_OBJECTS 100000

static const char *const pr_sidecars[] = {".sha256", ".verified",
                                          ".manifest.json", NULL};

typedef enum pr_phase { PR_LIST, PR_HEAD, PR_DELETE } pr_phase;

typedef struct pr_obj {
  char *key;
  int64_t mtime_s;
  int sidecar;  /* belongs to another listed key */
  int verified; /* KEY.verified is listed */
  int64_t locked_until_ms;
} pr_obj;

typedef struct pr_job {
  eng_call *call;
  aws_cfg cfg;
  char *bucket, *prefix, *suffix;
  json_t *policy;
  int dry_run;
  pr_obj *v;
  size_t n, cap;
  size_t *backups; /* indexes of v that are backups */
  size_t n_backups;
  json_t *plan; /* decisions, in backups' order */
  pr_phase phase;
  size_t at;         /* the backup being looked at (HEAD, DELETE) */
  int side;          /* -1: the backup itself, else its sidecar index */
  json_t *deleted;   /* {key of backup: [keys deleted]} */
} pr_job;

static int pr_ends_with(const char *s, const char *suf) {
  size_t n = strlen(s), m = strlen(suf);
  return n >= m && !strcmp(s + n - m, suf);
}

static int pr_cmp(const void *a, const void *b) {
  return strcmp(((const pr_obj *)a)->key, ((const pr_obj *)b)->key);
}

static pr_obj *pr_find(pr_job *j, const char *key) {
  pr_obj probe = {.key = (char *)key};
  return bsearch(&probe, j->v, j->n, sizeof *j->v, pr_cmp);
}

static void pr_free(pr_job *j) {
  for (size_t i = 0; i < j->n; i++) free(j->v[i].key);
  free(j->v);
  free(j->backups);
  aws_cfg_free(&j->cfg);
  free(j->bucket);
  free(j->prefix);
  free(j->suffix);
  json_decref(j->policy);
  json_decref(j->plan);
  json_decref(j->deleted);
  free(j);
}

static void pr_end(pr_job *j, int rc) {
  eng_call *c = j->call;
  pr_free(j);
  H->done(c, rc);
}

static const pr_obj *pr_backup(const pr_job *j, size_t i) {
  return &j->v[j->backups[i]];
}

/* The decision on backup i. */
static const json_t *pr_decision(const pr_job *j, size_t i) {
  return json_array_get(json_object_get(j->plan, "backups"), i);
}

/* {error} when the parameters give no policy, else {policy: in words}:
 * the host's rule on no backups. */
static json_t *pr_check_policy(const json_t *p) {
  json_t *none = json_array();
  json_t *plan = H->retention_plan(none, p, 0);
  json_decref(none);
  return plan;
}

/* ---- deciding ---------------------------------------------------------- */

/* Sidecars are told apart, the backups indexed, the markers read. */
static void pr_classify(pr_job *j) {
  qsort(j->v, j->n, sizeof *j->v, pr_cmp);
  for (size_t i = 0; i < j->n; i++)
    for (const char *const *e = pr_sidecars; *e; e++) {
      if (!pr_ends_with(j->v[i].key, *e)) continue;
      char *base = eng_xstrdup(j->v[i].key);
      base[strlen(base) - strlen(*e)] = '\0';
      pr_obj *b = pr_find(j, base);
      free(base);
      if (!b) continue;
      j->v[i].sidecar = 1;
      if (!strcmp(*e, ".verified")) b->verified = 1;
    }
  j->backups = eng_xcalloc(j->n ? j->n : 1, sizeof *j->backups);
  for (size_t i = 0; i < j->n; i++) {
    const char *k = j->v[i].key;
    if (j->v[i].sidecar || pr_ends_with(k, "/")) continue;
    if (j->suffix && !pr_ends_with(k, j->suffix)) continue;
    j->backups[j->n_backups++] = i;
  }
}

static void pr_decide(pr_job *j) {
  json_t *items = json_array();
  for (size_t i = 0; i < j->n_backups; i++) {
    const pr_obj *o = pr_backup(j, i);
    json_array_append_new(
        items, json_pack("{s:s, s:I, s:b, s:I}", "name", o->key, "mtime_ms",
                         (json_int_t)o->mtime_s * 1000, "verified", o->verified,
                         "locked_until_ms", (json_int_t)o->locked_until_ms));
  }
  json_decref(j->plan);
  j->plan = H->retention_plan(items, j->policy, (int64_t)time(NULL) * 1000);
  json_decref(items);
}

static int pr_gives_up(const pr_job *j, size_t i) {
  return !json_is_true(json_object_get(pr_decision(j, i), "keep"));
}

static void pr_outputs(pr_job *j) {
  json_t *kept = json_array(), *pruned = json_array(), *locked = json_array();
  for (size_t i = 0; i < j->n_backups; i++) {
    const char *key = pr_backup(j, i)->key;
    json_t *d = json_deep_copy(pr_decision(j, i));
    char *url = eng_asprintf("s3://%s/%s", j->bucket, key);
    json_object_set_new(d, "url", json_string(url));
    free(url);
    if (pr_gives_up(j, i)) {
      json_t *files = json_object_get(j->deleted, key);
      json_object_set_new(d, "files", files ? json_incref(files) : json_array());
      json_array_append(pruned, d);
    } else {
      json_array_append(kept, d);
      if (json_is_true(json_object_get(d, "locked"))) json_array_append(locked, d);
    }
    json_decref(d);
  }
  H->output(j->call, "count_pruned", json_integer((json_int_t)json_array_size(pruned)));
  H->output(j->call, "count_kept", json_integer((json_int_t)json_array_size(kept)));
  H->output(j->call, "pruned", pruned);
  H->output(j->call, "kept", kept);
  H->output(j->call, "locked", locked);
  H->output(j->call, "dry_run", json_boolean(j->dry_run));
  H->output(j->call, "policy", json_incref(json_object_get(j->plan, "policy")));
}

/* ---- requests ---------------------------------------------------------- */

static void pr_next(pr_job *j);
static void pr_list_page(pr_job *j, const char *token);

static void pr_list_each(void *ud, const aws_xml *c) {
  pr_job *j = ud;
  if (j->n == j->cap) {
    j->cap = j->cap ? j->cap * 2 : 64;
    j->v = eng_xrealloc(j->v, j->cap * sizeof *j->v);
  }
  pr_obj *o = &j->v[j->n++];
  *o = (pr_obj){.key = eng_xstrdup(aws_xml_text(c, "Key"))};
  o->mtime_s = aws_parse_time(aws_xml_text(c, "LastModified"));
}

/* Start the request of the current phase; at the end of the listing, of
 * the lock reads and of the deletions, go on to the next phase. */
static void pr_send(pr_job *j, const char *method, const char *key,
                    const char *query, s3_req_cb cb) {
  s3_req *r = s3_req_new(j->call, &j->cfg, method, j->bucket, key, query);
  int rc = s3_req_start(r, cb, j);
  if (rc != ENG_OK) {
    s3_req_free(r);
    H->fail(j->call, "%s s3://%s/%s: %s", method, j->bucket, key, eng_strerror(rc));
    pr_end(j, rc);
  }
}

static int pr_failed(pr_job *j, s3_req *r, const char *what) {
  char msg[1024];
  int rc = s3_req_check(r, msg, sizeof msg);
  if (rc == ENG_OK) return 0;
  H->fail(j->call, "%s s3://%s/%s: %s", what, j->bucket, r->key ? r->key : "", msg);
  s3_req_free(r);
  pr_outputs(j);
  pr_end(j, rc);
  return 1;
}

static void pr_listed(void *ud, s3_req *r) {
  pr_job *j = ud;
  if (pr_failed(j, r, "listing")) return;
  char *tok = NULL;
  int rc = s3_list_page(r->body.data, r->body.len, pr_list_each, j, &tok);
  s3_req_free(r);
  if (rc != ENG_OK || j->n > PR_MAX_OBJECTS) {
    free(tok);
    H->fail(j->call, rc != ENG_OK ? "listing s3://%s/%s: S3's answer is not a "
                                    "usable ListBucketResult"
                                  : "more keys than the limit under s3://%s/%s: "
                                    "name the backups' prefix more closely",
            j->bucket, j->prefix);
    pr_end(j, rc != ENG_OK ? ENG_ERR_PROTOCOL : ENG_ERR_INVALID);
    return;
  }
  if (tok) {
    pr_list_page(j, tok);
    free(tok);
    return;
  }
  pr_classify(j);
  pr_decide(j);
  j->phase = PR_HEAD;
  j->at = 0;
  pr_next(j);
}

static void pr_list_page(pr_job *j, const char *token) {
  char *q = s3_list_query(j->prefix, token);
  pr_send(j, "GET", "", q, pr_listed);
  free(q);
}

static void pr_headed(void *ud, s3_req *r) {
  pr_job *j = ud;
  if (pr_failed(j, r, "reading the object lock of")) return;
  int64_t until = r->lock_until ? aws_parse_time(r->lock_until) : -1;
  if (r->lock_mode && until > 0)
    j->v[j->backups[j->at]].locked_until_ms = until * 1000;
  s3_req_free(r);
  j->at++;
  pr_next(j);
}

static void pr_deleted(void *ud, s3_req *r) {
  pr_job *j = ud;
  int nokey = r->status == 404;
  if (!nokey && pr_failed(j, r, "deleting")) return;
  const char *key = pr_backup(j, j->at)->key;
  if (!nokey) {
    json_t *files = json_object_get(j->deleted, key);
    if (!files) json_object_set_new(j->deleted, key, files = json_array());
    char *url = eng_asprintf("s3://%s/%s", j->bucket, r->key);
    json_array_append_new(files, json_string(url));
    H->journal_removed(j->call, "object", url);
    H->log(j->call, ENG_LOG_INFO, "deleted %s", url);
    free(url);
  }
  s3_req_free(r);
  j->side++;
  pr_next(j);
}

/* Every backup still given up, held to the guards before any is deleted:
 * one refusal deletes nothing. */
static int pr_guard(pr_job *j) {
  for (size_t i = 0; i < j->n_backups; i++) {
    const json_t *d = pr_decision(j, i);
    char *url = eng_asprintf("s3://%s/%s", j->bucket, pr_backup(j, i)->key);
    int rc = ENG_OK;
    if (!pr_gives_up(j, i)) {
      const char *why = json_string_value(json_array_get(json_object_get(d, "reasons"), 0));
      H->log(j->call, ENG_LOG_INFO, "%s %s: %s",
             json_is_true(json_object_get(d, "locked")) ? "skip (locked)" : "keep", url, why);
    } else {
      const char *rule = json_string_value(json_object_get(d, "rule"));
      H->log(j->call, ENG_LOG_INFO, "%s %s: %s", j->dry_run ? "would prune" : "prune", url, rule);
      char *ev = eng_asprintf("retention: %s", rule);
      if (!j->dry_run) rc = H->guard_target(j->call, ENG_TARGET_BUCKET, url, ev);
      free(ev);
    }
    free(url);
    if (rc != ENG_OK) return ENG_ERR_REFUSED;
  }
  return ENG_OK;
}

/* The next request: a lock to read, a key to delete, or the end. */
static void pr_next(pr_job *j) {
  if (j->phase == PR_HEAD) {
    while (j->at < j->n_backups && !pr_gives_up(j, j->at)) j->at++;
    if (j->at < j->n_backups) {
      pr_send(j, "HEAD", pr_backup(j, j->at)->key, NULL, pr_headed);
      return;
    }
    pr_decide(j); /* with the locks known */
    if (pr_guard(j) != ENG_OK || j->dry_run) {
      int rc = j->dry_run ? ENG_OK : ENG_ERR_REFUSED;
      if (rc == ENG_OK) pr_outputs(j);
      pr_end(j, rc);
      return;
    }
    j->phase = PR_DELETE;
    j->at = 0;
    j->side = -1;
  }
  for (; j->at < j->n_backups; j->at++, j->side = -1) {
    if (!pr_gives_up(j, j->at)) continue;
    const char *key = pr_backup(j, j->at)->key;
    if (j->side < 0) {
      pr_send(j, "DELETE", key, NULL, pr_deleted);
      return;
    }
    for (; pr_sidecars[j->side]; j->side++) {
      char *sk = eng_asprintf("%s%s", key, pr_sidecars[j->side]);
      int listed = pr_find(j, sk) != NULL;
      if (listed) pr_send(j, "DELETE", sk, NULL, pr_deleted);
      free(sk);
      if (listed) return;
    }
  }
  pr_outputs(j);
  pr_end(j, ENG_OK);
}

/* ---- the action ---------------------------------------------------------- */

int s3_prune_start(eng_call *call, const json_t *p) {
  char err[1024];
  json_t *check = pr_check_policy(p);
  const char *why = json_string_value(json_object_get(check, "error"));
  if (!check || why) {
    H->fail(call, "%s", why ? why : "the retention rule refused the parameters");
    json_decref(check);
    return ENG_ERR_INVALID;
  }
  json_decref(check);
  pr_job *j = eng_xcalloc(1, sizeof *j);
  j->call = call;
  j->policy = json_deep_copy(p);
  j->deleted = json_object();
  j->dry_run = json_is_true(json_object_get(p, "dry_run"));
  const char *suf = json_string_value(json_object_get(p, "suffix"));
  j->suffix = suf && *suf ? eng_xstrdup(suf) : NULL;
  const char *url = json_string_value(json_object_get(p, "url"));
  int rc = s3_url_parse(url ? url : "", &j->bucket, &j->prefix, 1, err, sizeof err);
  if (rc == ENG_OK) rc = aws_cfg_load(s3_host, call, p, "s3", &j->cfg, err, sizeof err);
  if (rc != ENG_OK) {
    H->fail(call, "%s", err);
    pr_free(j);
    return rc;
  }
  pr_list_page(j, NULL);
  return ENG_OK;
}

eng_side_effect s3_prune_classify(const json_t *p) {
  return json_is_true(json_object_get(p, "dry_run")) ? ENG_SIDE_READ_ONLY
                                                     : ENG_SIDE_DESTRUCTIVE;
}

void s3_prune_describe(const json_t *p, char *buf, size_t n) {
  json_t *check = pr_check_policy(p);
  const char *text = json_string_value(json_object_get(check, "policy"));
  const char *url = json_string_value(json_object_get(p, "url"));
  snprintf(buf, n, "%s %s by retention %s; never the newest, the newest "
                   "drill-verified, younger than min_age or locked",
           json_is_true(json_object_get(p, "dry_run"))
               ? "list (dry run) what would be pruned from"
               : "prune",
           url ? url : "?", text ? text : "(no policy given)");
  json_decref(check);
}

const eng_param s3_prune_params[] = {
    {.name = "url",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_BUCKET,
     .doc = "s3://BUCKET/PREFIX: the backups are the keys under it; "
            "KEY.sha256, KEY.verified and KEY.manifest.json go with their "
            "backup"},
    {.name = "suffix",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "only keys ending with this are backups (e.g. .dump)"},
    ENG_RETENTION_PARAMS,
    P_ENDPOINT,
    P_REGION,
    P_END};

const eng_output s3_prune_outputs[] = {ENG_RETENTION_OUTPUTS, O_END};
