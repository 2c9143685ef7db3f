/*
 * rds_actions.c - the provider actions for driver `rds` (AWS RDS Query API,
 * version 2014-10-31).
 *
 * Every action is one job: an eng_op (<engine/op.h>) with at most one
 * Query API call or one poll timer running at a time. Order of things for
 * the actions that create: check what can be checked without side effects
 * (the guards, that a restore's new identifier is free), journal the
 * intent with its undo (synced), call, confirm; on an error that created
 * nothing the intent is marked removed, so neither `finally` nor `engine
 * cleanup` later deletes something this run does not own.
 *
 * Injectable for tests: ENGINE_TEST_NOW (Unix seconds) replaces the clock
 * for snapshot ages, ENGINE_TEST_SEED seeds `pick: random_within:...` and
 * the retry jitter, ENGINE_RDS_TEST_PAGE_SIZE sets MaxRecords (RDS accepts
 * 20-100), ENGINE_RDS_TEST_POLL_MS the first poll delay.
 */
#include "provider_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define H provider_host

const eng_host *provider_host;

typedef struct job job;
typedef void (*job_step)(job *j, aws_query *q);

struct job {
  eng_op op; /* first: the life cycle */
  aws_cfg cfg;
  json_t *p;
  const char *what;       /* "restore" ... for messages */
  char *instance;         /* the instance acted on (or created) */
  char *snapshot;         /* the snapshot acted on (or created) */
  aws_query *q;           /* the running call */
  job_step ok, err;       /* what follows the running call */
  rds_waiter w;
  int waiting;
  job_step after_wait;    /* the wait reached its state (q: the last poll) */
  int64_t t0_ms;          /* the create call was accepted */
  int64_t token;          /* journal intent */
  const char *jkind;      /* journal kind of the intent, or NULL */
  char *marker;           /* paging */
  json_t *acc;            /* collected list */
  char *pending_msg;      /* failure waiting for a suggestion list */
  int pending_rc;
};

/* ---- small things ------------------------------------------------------------ */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_s(void) {
  const char *t = getenv("ENGINE_TEST_NOW");
  if (t && *t) return strtoll(t, NULL, 10);
  return (int64_t)time(NULL);
}

static const char *pstr(const job *j, const char *name) {
  const char *v = json_string_value(json_object_get(j->p, name));
  return v && *v ? v : NULL;
}

static int pbool(const job *j, const char *name, int def) {
  json_t *v = json_object_get(j->p, name);
  return json_is_boolean(v) ? json_is_true(v) : def;
}

static int64_t pint(const job *j, const char *name) {
  json_t *v = json_object_get(j->p, name);
  return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

static void job_destroy(eng_op *op) {
  job *j = (job *)(void *)op;
  aws_cfg_free(&j->cfg);
  json_decref(j->p);
  json_decref(j->acc);
  free(j->instance);
  free(j->snapshot);
  free(j->marker);
  free(j->pending_msg);
  free(j);
}

/* Finishing with a call still running: stop it; its callback releases. */
static void job_on_finish(eng_op *op) {
  job *j = (job *)(void *)op;
  if (j->q) aws_query_cancel(j->q);
}

static void job_on_cancel(eng_op *op) {
  job *j = (job *)(void *)op;
  int timeout = H->cancel_reason(op->call) == ENG_CANCEL_TIMEOUT;
  if (j->waiting && timeout) {
    eng_op_fail(op, ENG_ERR_TIMEOUT,
                "%s: %s '%s' was still '%s' after %lld s (%d polls) when the "
                "step's timeout ran out; raise the step's timeout for large "
                "databases%s",
                j->what, j->w.kind == RDS_WAIT_SNAPSHOT ? "snapshot" : "instance",
                j->w.kind == RDS_WAIT_SNAPSHOT ? j->snapshot : j->instance,
                j->w.last, (long long)((now_ms() - j->w.start_ms) / 1000),
                j->w.polls,
                j->jkind ? "; it is journaled: `finally` or `engine cleanup "
                           "RUN_ID` removes it" : "");
    return;
  }
  eng_op_fail(op, timeout ? ENG_ERR_TIMEOUT : ENG_ERR_CANCELLED,
              "%s: %s", j->what, timeout ? "the step's timeout ran out"
                                          : "cancelled");
}

static job *job_new(eng_call *call, const json_t *p, const char *what,
                    int *rc) {
  char err[512];
  job *j = eng_xcalloc(1, sizeof *j);
  j->p = json_deep_copy(p);
  j->what = what;
  *rc = aws_cfg_load(H, call, p, "rds", &j->cfg, err, sizeof err);
  if (*rc != ENG_OK) {
    H->fail(call, "%s", err);
    aws_cfg_free(&j->cfg);
    json_decref(j->p);
    free(j);
    return NULL;
  }
  eng_op_init(&j->op, H, call, job_destroy);
  j->op.on_finish = job_on_finish;
  j->op.on_cancel = job_on_cancel;
  return j;
}

static aws_query *rds_q(job *j, const char *action) {
  return aws_query_new(H, j->op.call, &j->cfg, action, RDS_API_VERSION);
}

static void fail_query(job *j, aws_query *q);

static void query_done(void *ud, aws_query *q) {
  job *j = ud;
  j->q = NULL;
  if (!j->op.finished && !H->cancelled(j->op.call)) {
    job_step next = q->rc == ENG_OK ? j->ok : j->err ? j->err : fail_query;
    next(j, q);
  }
  aws_query_free(q);
  eng_op_release(&j->op);
}

/* Start q; ok(j, q) follows a good answer, err(j, q) (NULL: fail with
 * the decoded error) any other. */
static void run(job *j, aws_query *q, job_step ok, job_step err) {
  j->ok = ok;
  j->err = err;
  j->q = q;
  eng_op_hold(&j->op);
  int rc = aws_query_start(q, query_done, j);
  if (rc != ENG_OK) {
    j->q = NULL;
    aws_query_free(q);
    eng_op_release(&j->op);
    eng_op_fail(&j->op, rc, "%s: cannot start the RDS call: %s", j->what,
                eng_strerror(rc));
  }
}

/* DescribeDBInstances of j->instance, then ok / err. */
static void describe_then(job *j, job_step ok, job_step err) {
  aws_query *q = rds_q(j, "DescribeDBInstances");
  aws_query_param(q, "DBInstanceIdentifier", j->instance);
  run(j, q, ok, err);
}

/* The resource is gone (or going): journal, output, done. */
static void removed_end(job *j, const char *kind, const char *id,
                        const char *status) {
  H->journal_removed(j->op.call, kind, id);
  H->output(j->op.call, "status", json_string(status));
  eng_op_finish(&j->op, ENG_OK);
}

/* ---- errors a person can act on ------------------------------------------------- */

static const char *advice(const job *j, const char *code) {
  if (!strcmp(code, "DBInstanceNotFound"))
    return "check the identifier and the region (AWS_REGION)";
  if (!strcmp(code, "DBSnapshotNotFound"))
    return "list the snapshots with provider.snapshots (pick: none), and "
           "check the region (AWS_REGION)";
  if (!strcmp(code, "DBInstanceAlreadyExists"))
    return "a restore creates a new instance: give it an identifier no "
           "instance has (e.g. drill-${run.id})";
  if (!strcmp(code, "DBSnapshotAlreadyExists"))
    return "choose another snapshot_id (without one the engine names it "
           "INSTANCE-RUN_ID), or delete the old snapshot with "
           "provider.delete_snapshot";
  if (!strcmp(code, "SnapshotQuotaExceeded"))
    return "the account's manual snapshot quota is reached: delete old manual "
           "snapshots (provider.snapshots with type: manual lists them) or ask "
           "AWS for a higher quota";
  if (!strcmp(code, "InvalidDBInstanceState"))
    return "the instance is busy or not available (being created, modified, "
           "backed up or deleted): wait until it is 'available' and run again";
  if (!strcmp(code, "InvalidDBSnapshotState"))
    return "the snapshot is not 'available' yet (or is being deleted): wait "
           "for it and run again";
  if (!strcmp(code, "InvalidParameterValue") ||
      !strcmp(code, "InvalidParameterCombination"))
    return j->p && json_object_get(j->p, "instance_class")
               ? "RDS refused a parameter: check instance_class (a class the "
                 "engine and region offer, e.g. db.t3.micro), "
                 "allocated_storage and point_in_time"
               : "RDS refused a parameter: check the values given to the step";
  if (!strcmp(code, "InstanceQuotaExceeded") ||
      !strcmp(code, "StorageQuotaExceeded"))
    return "the account's RDS quota is reached: delete unused instances or "
           "ask AWS for a higher quota";
  if (!strcmp(code, "InsufficientDBInstanceCapacity"))
    return "the region has no capacity for this instance class now: try "
           "another instance_class or later";
  if (!strcmp(code, "PointInTimeRestoreNotEnabled") ||
      !strcmp(code, "InvalidRestore"))
    return "point-in-time restore needs automated backups on the source "
           "instance (a backup retention period above 0) and a time inside "
           "its restorable window (describe shows latest_restorable_time)";
  if (!strcmp(code, "AccessDenied") || !strcmp(code, "AccessDeniedException") ||
      !strcmp(code, "UnauthorizedOperation"))
    return "the credentials lack the RDS permission for this call: check the "
           "IAM policy of AWS_ACCESS_KEY_ID (or the profile)";
  return NULL;
}

static int rc_of(const aws_query *q) {
  if (!strcmp(q->code, "DBInstanceNotFound") ||
      !strcmp(q->code, "DBSnapshotNotFound"))
    return ENG_ERR_NOTFOUND;
  if (!strcmp(q->code, "DBInstanceAlreadyExists") ||
      !strcmp(q->code, "DBSnapshotAlreadyExists"))
    return ENG_ERR_EXISTS;
  return q->rc;
}

/* AWS refused the call with this error code (a 4xx answer with an error
 * document): the request was not acted on. */
static int refused_with(const aws_query *q, const char *code) {
  return q->status >= 400 && q->status < 500 && !strcmp(q->code, code);
}

static void suggest_listed(job *j, aws_query *q);
static void suggest_failed(job *j, aws_query *q);

static void fail_query(job *j, aws_query *q) {
  const char *a = q->code[0] ? advice(j, q->code) : NULL;
  char msg[2048];
  snprintf(msg, sizeof msg, "%s: %s%s%s", j->what, q->message, a ? "; " : "",
           a ? a : "");
  if (refused_with(q, "DBInstanceNotFound") && j->instance) {
    /* name the instances that do exist, with the closest first */
    free(j->pending_msg);
    j->pending_msg = eng_xstrdup(msg);
    j->pending_rc = ENG_ERR_NOTFOUND;
    aws_query *l = rds_q(j, "DescribeDBInstances");
    aws_query_param(l, "MaxRecords", "100");
    run(j, l, suggest_listed, suggest_failed);
    return;
  }
  eng_op_fail(&j->op, rc_of(q), "%s", msg);
}

static size_t edit_distance(const char *a, const char *b) {
  size_t n = strlen(a), m = strlen(b);
  if (n > 64 || m > 64) return 99;
  size_t d[65][65];
  for (size_t i = 0; i <= n; i++) d[i][0] = i;
  for (size_t k = 0; k <= m; k++) d[0][k] = k;
  for (size_t i = 1; i <= n; i++)
    for (size_t k = 1; k <= m; k++) {
      size_t best = d[i - 1][k - 1] + (a[i - 1] != b[k - 1]);
      if (d[i - 1][k] + 1 < best) best = d[i - 1][k] + 1;
      if (d[i][k - 1] + 1 < best) best = d[i][k - 1] + 1;
      d[i][k] = best;
    }
  return d[n][m];
}

static void suggest_listed(job *j, aws_query *q) {
  rds_instance *v = NULL;
  size_t n = rds_parse_instances(q->doc, &v, NULL);
  eng_strbuf b = {0};
  eng_strbuf_adds(&b, j->pending_msg);
  const char *close = NULL;
  size_t best = 4;
  for (size_t i = 0; i < n; i++) {
    size_t d = edit_distance(j->instance, v[i].id);
    if (d < best) {
      best = d;
      close = v[i].id;
    }
  }
  if (close) eng_strbuf_addf(&b, " (did you mean '%s'?)", close);
  if (n) {
    eng_strbuf_adds(&b, "; instances here:");
    for (size_t i = 0; i < n && i < 20; i++)
      eng_strbuf_addf(&b, "%s %s (%s)", i ? "," : "", v[i].id, v[i].status);
    if (n > 20) eng_strbuf_addf(&b, ", and %zu more", n - 20);
  } else {
    eng_strbuf_addf(&b, "; no instance exists in region %s at %s",
                    j->cfg.region, j->cfg.endpoint);
  }
  rds_instances_free(v, n);
  eng_op_fail(&j->op, j->pending_rc, "%s", b.data);
  eng_strbuf_free(&b);
}

static void suggest_failed(job *j, aws_query *q) {
  (void)q;
  eng_op_fail(&j->op, j->pending_rc, "%s", j->pending_msg);
}

/* ---- journal --------------------------------------------------------------------- */

/* The undo's parameters: the driver and the connection the run used. */
static json_t *undo_with(const job *j) {
  json_t *w = json_pack("{s:s}", "driver", "rds");
  if (pstr(j, "endpoint")) json_object_set_new(w, "endpoint", json_string(pstr(j, "endpoint")));
  if (pstr(j, "region")) json_object_set_new(w, "region", json_string(pstr(j, "region")));
  return w;
}

static void journal_intent(job *j, const char *kind, const char *id,
                           const char *undo_action, json_t *with) {
  json_t *d = json_pack("{s:{s:s, s:o}, s:s}", "undo", "action", undo_action,
                        "with", with, "region", j->cfg.region);
  j->token = H->journal_intent(j->op.call, kind, id, d);
  j->jkind = kind;
  json_decref(d);
}

/* The create call failed. When AWS refused it (a 4xx error answer) nothing
 * was created and the run owns nothing: an existing instance of the same
 * name stays out of reach of `finally` and `engine cleanup`. Otherwise (a
 * cut connection, an answer that makes no sense) it may exist: the intent
 * stays, and the undo (if_exists) removes it if it does. */
static void journal_nothing(job *j, const char *id, const aws_query *q) {
  if (!j->jkind || q->status < 400 || q->status >= 500 || !q->code[0]) return;
  H->journal_removed(j->op.call, j->jkind, id);
  j->jkind = NULL;
}

/* ---- waiting --------------------------------------------------------------------- */

static void poll_now(eng_op *op);

static void wait_start(job *j, rds_wait_kind kind, job_step after) {
  const char *first = getenv("ENGINE_RDS_TEST_POLL_MS");
  rds_waiter_init(&j->w, kind, now_ms(), pint(j, "wait_timeout"),
                  first && *first ? (uint64_t)strtoull(first, NULL, 10) : 0);
  j->waiting = 1;
  j->after_wait = after;
  poll_now(&j->op);
}

static void poll_answer(job *j, aws_query *q);

static void poll_gone(job *j, aws_query *q) {
  if (j->w.kind == RDS_WAIT_GONE && (refused_with(q, "DBInstanceNotFound") ||
                                      refused_with(q, "DBSnapshotNotFound"))) {
    poll_answer(j, q); /* q->doc is NULL: not found */
    return;
  }
  fail_query(j, q);
}

static void poll_now(eng_op *op) {
  job *j = (job *)(void *)op;
  if (j->w.kind == RDS_WAIT_SNAPSHOT) {
    aws_query *q = rds_q(j, "DescribeDBSnapshots");
    aws_query_param(q, "DBSnapshotIdentifier", j->snapshot);
    run(j, q, poll_answer, poll_gone);
    return;
  }
  describe_then(j, poll_answer, poll_gone);
}

static void poll_answer(job *j, aws_query *q) {
  const char *status = NULL;
  rds_instance *vi = NULL;
  rds_snapshot *vs = NULL;
  size_t n = 0;
  if (q->doc && j->w.kind == RDS_WAIT_SNAPSHOT) {
    n = rds_parse_snapshots(q->doc, &vs, NULL);
    for (size_t i = 0; i < n && !status; i++)
      if (!strcmp(vs[i].id, j->snapshot)) status = vs[i].status;
  } else if (q->doc) {
    n = rds_parse_instances(q->doc, &vi, NULL);
    for (size_t i = 0; i < n && !status; i++)
      if (!strcmp(vi[i].id, j->instance)) status = vi[i].status;
  }
  uint64_t delay = 0;
  int64_t t = now_ms();
  rds_verdict v = rds_waiter_see(&j->w, status, t, &delay);
  const char *name = j->w.kind == RDS_WAIT_SNAPSHOT ? j->snapshot : j->instance;
  const char *kind = j->w.kind == RDS_WAIT_SNAPSHOT ? "snapshot" : "instance";
  long long el = (long long)((t - j->w.start_ms) / 1000);
  if (v == RDS_AGAIN)
    H->log(j->op.call, ENG_LOG_INFO, "%s %s: %s (%lld s, poll %d; next in %llu s)",
           kind, name, j->w.last, el, j->w.polls,
           (unsigned long long)((delay + 999) / 1000));
  else
    H->log(j->op.call, ENG_LOG_INFO, "%s %s: %s (%lld s, poll %d)", kind, name,
           j->w.last, el, j->w.polls);
  rds_instances_free(vi, vi ? n : 0);
  rds_snapshots_free(vs, vs ? n : 0);
  switch (v) {
  case RDS_DONE:
    j->waiting = 0;
    j->after_wait(j, q);
    return;
  case RDS_AGAIN:
    if (eng_op_timer(&j->op, delay, poll_now) != ENG_OK)
      eng_op_fail(&j->op, ENG_ERR_NOMEM, "%s: cannot start a timer", j->what);
    return;
  case RDS_FAILED:
    eng_op_fail(&j->op, ENG_ERR_FAILED,
                "%s: %s '%s' %s%s%s: RDS will not make it available by "
                "itself; look at its events in the RDS console (or `aws rds "
                "describe-events`)%s",
                j->what, kind, name, status ? "entered status '" : "disappeared",
                status ? j->w.last : "", status ? "'" : " while waiting",
                j->jkind ? "; it is journaled: `finally` or `engine cleanup "
                           "RUN_ID` removes it" : "");
    return;
  case RDS_EXPIRED:
    eng_op_fail(&j->op, ENG_ERR_TIMEOUT,
                "%s: %s '%s' still '%s' after wait_timeout (%lld s, %d polls)",
                j->what, kind, name, j->w.last, el, j->w.polls);
    return;
  }
}

/* ---- outputs --------------------------------------------------------------------- */

static void out_str(job *j, const char *name, const char *v) {
  H->output(j->op.call, name, json_string(v ? v : ""));
}

static void out_instance(job *j, const rds_instance *i) {
  out_str(j, "instance", i->id);
  out_str(j, "status", i->status);
  out_str(j, "endpoint", i->address);
  H->output(j->op.call, "port", json_integer(i->port));
  out_str(j, "engine", i->engine);
  out_str(j, "engine_version", i->engine_version);
  out_str(j, "instance_class", i->klass);
  out_str(j, "created_at", i->created_at);
  out_str(j, "latest_restorable_time", i->latest_restorable);
}

static json_t *snapshot_json(const rds_snapshot *s, int64_t now) {
  return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I}",
                   "snapshot_id", s->id, "instance", s->instance, "status",
                   s->status, "type", s->type, "engine", s->engine,
                   "engine_version", s->engine_version, "created_at",
                   s->created_at, "age_s",
                   (json_int_t)(s->created_t >= 0 ? now - s->created_t : -1),
                   "storage_gb", (json_int_t)s->storage_gb);
}

/* The one instance of an answer (the first). 0 when there is none. */
static int first_instance(job *j, aws_query *q, rds_instance **v) {
  size_t n = rds_parse_instances(q->doc, v, NULL);
  if (n) return 1;
  rds_instances_free(*v, 0);
  *v = NULL;
  eng_op_fail(&j->op, ENG_ERR_PROTOCOL,
              "%s: %s answered %s without a DBInstance", j->what,
              j->cfg.endpoint, q->action);
  return 0;
}

/* ======================================================================== */
/* describe                                                                 */
/* ======================================================================== */

static void describe_ok(job *j, aws_query *q) {
  rds_instance *v;
  if (!first_instance(j, q, &v)) return;
  out_instance(j, &v[0]);
  rds_instances_free(v, 1);
  eng_op_finish(&j->op, ENG_OK);
}

int rds_describe_start(eng_call *call, const json_t *p) {
  int rc;
  job *j = job_new(call, p, "describe", &rc);
  if (!j) return rc;
  j->instance = eng_xstrdup(pstr(j, "instance"));
  describe_then(j, describe_ok, NULL);
  return ENG_OK;
}

/* ======================================================================== */
/* snapshot                                                                 */
/* ======================================================================== */

static void snapshot_outputs(job *j, const rds_snapshot *s) {
  out_str(j, "snapshot_id", s->id);
  out_str(j, "instance", s->instance);
  out_str(j, "status", s->status);
  out_str(j, "created_at", s->created_at);
  out_str(j, "snapshot_type", s->type);
  out_str(j, "engine_version", s->engine_version);
  H->output(j->op.call, "wait_ms", json_integer((json_int_t)(now_ms() - j->t0_ms)));
}

static void snapshot_ready(job *j, aws_query *q) {
  rds_snapshot *v = NULL;
  size_t n = rds_parse_snapshots(q->doc, &v, NULL);
  for (size_t i = 0; i < n; i++)
    if (!strcmp(v[i].id, j->snapshot)) {
      snapshot_outputs(j, &v[i]);
      rds_snapshots_free(v, n);
      eng_op_finish(&j->op, ENG_OK);
      return;
    }
  rds_snapshots_free(v, n);
  eng_op_fail(&j->op, ENG_ERR_PROTOCOL, "snapshot: %s answered without "
              "snapshot '%s'", j->cfg.endpoint, j->snapshot);
}

static void snapshot_created(job *j, aws_query *q) {
  H->journal_confirm(j->op.call, j->token);
  rds_snapshot *v = NULL;
  size_t n = rds_parse_snapshots(q->doc, &v, NULL);
  H->log(j->op.call, ENG_LOG_INFO, "snapshot %s of %s: %s", j->snapshot,
         j->instance, n ? v[0].status : "requested");
  int ready = n && !strcmp(v[0].status, "available");
  if (n && (ready || !pbool(j, "wait", 1))) {
    snapshot_outputs(j, &v[0]);
    rds_snapshots_free(v, n);
    eng_op_finish(&j->op, ENG_OK);
    return;
  }
  rds_snapshots_free(v, n);
  wait_start(j, RDS_WAIT_SNAPSHOT, snapshot_ready);
}

static void snapshot_refused(job *j, aws_query *q) {
  journal_nothing(j, j->snapshot, q);
  fail_query(j, q);
}

int rds_snapshot_start(eng_call *call, const json_t *p) {
  int rc;
  job *j = job_new(call, p, "snapshot", &rc);
  if (!j) return rc;
  j->instance = eng_xstrdup(pstr(j, "instance"));
  if (pstr(j, "snapshot_id")) {
    j->snapshot = eng_xstrdup(pstr(j, "snapshot_id"));
  } else { /* INSTANCE-RUN_ID: unique per run, traceable to it */
    const char *dir = H->run_dir(call);
    const char *rid = dir && strrchr(dir, '/') ? strrchr(dir, '/') + 1 : NULL;
    char stamp[32];
    if (!rid || !*rid) {
      time_t t = (time_t)wall_s();
      struct tm tm;
      gmtime_r(&t, &tm);
      strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
      rid = stamp;
    }
    j->snapshot = eng_asprintf("%s-%s", j->instance, rid);
    for (char *c = j->snapshot; *c; c++) *c = (char)tolower((unsigned char)*c);
  }
  json_t *w = undo_with(j);
  json_object_set_new(w, "snapshot_id", json_string(j->snapshot));
  json_object_set_new(w, "if_exists", json_true());
  journal_intent(j, "snapshot", j->snapshot, "provider.delete_snapshot", w);
  j->t0_ms = now_ms();
  aws_query *q = rds_q(j, "CreateDBSnapshot");
  aws_query_param(q, "DBInstanceIdentifier", j->instance);
  aws_query_param(q, "DBSnapshotIdentifier", j->snapshot);
  run(j, q, snapshot_created, snapshot_refused);
  return ENG_OK;
}

/* ======================================================================== */
/* snapshots                                                                */
/* ======================================================================== */

static void snapshots_page(job *j);

static int page_size(void) {
  const char *s = getenv("ENGINE_RDS_TEST_PAGE_SIZE");
  long n = s && *s ? strtol(s, NULL, 10) : 100;
  return n < 20 ? 20 : n > 100 ? 100 : (int)n;
}

static void snapshots_report(job *j) {
  int64_t now = wall_s();
  const char *pick = pstr(j, "pick") ? pstr(j, "pick") : "latest";
  int64_t within = 0;
  char err[256];
  aws_pick_parse(pick, &within, err, sizeof err);
  size_t n = json_array_size(j->acc), m = 0;
  int64_t *times = eng_xcalloc(n, sizeof *times);
  const char **names = eng_xcalloc(n, sizeof *names);
  size_t *idx = eng_xcalloc(n, sizeof *idx);
  for (size_t i = 0; i < n; i++) { /* only what a restore can use */
    json_t *s = json_array_get(j->acc, i);
    if (strcmp(json_string_value(json_object_get(s, "status")), "available") ||
        json_integer_value(json_object_get(s, "age_s")) < 0)
      continue; /* not restorable now, or of unknown age */
    times[m] = now - json_integer_value(json_object_get(s, "age_s"));
    names[m] = json_string_value(json_object_get(s, "snapshot_id"));
    idx[m++] = i;
  }
  long k = aws_pick(pick, within, times, names, m, now);
  H->output(j->op.call, "snapshots", json_incref(j->acc));
  H->output(j->op.call, "count", json_integer((json_int_t)n));
  json_t *picked = k >= 0 ? json_deep_copy(json_array_get(j->acc, idx[k])) : NULL;
  free(times);
  free(names);
  free(idx);
  if (!strcmp(pick, "none")) {
    H->output(j->op.call, "picked", json_null());
    eng_op_finish(&j->op, ENG_OK);
    return;
  }
  if (!picked) {
    eng_op_fail(&j->op, ENG_ERR_NOTFOUND,
                "snapshots: no available %ssnapshot%s%s%s: nothing to pick "
                "(pick: %s; %zu snapshot(s) listed); take one with "
                "provider.snapshot",
                pstr(j, "type") ? pstr(j, "type") : "",
                pstr(j, "type") ? " " : "",
                pstr(j, "instance") ? " of instance " : "",
                pstr(j, "instance") ? pstr(j, "instance") : "", pick, n);
    return;
  }
  H->log(j->op.call, ENG_LOG_INFO, "picked snapshot %s of %s (%s, %lld s old)",
         json_string_value(json_object_get(picked, "snapshot_id")),
         json_string_value(json_object_get(picked, "instance")),
         json_string_value(json_object_get(picked, "type")),
         (long long)json_integer_value(json_object_get(picked, "age_s")));
  H->output(j->op.call, "picked", picked);
  eng_op_finish(&j->op, ENG_OK);
}

static void snapshots_got(job *j, aws_query *q) {
  rds_snapshot *v = NULL;
  free(j->marker);
  j->marker = NULL;
  size_t n = rds_parse_snapshots(q->doc, &v, &j->marker);
  int64_t now = wall_s();
  for (size_t i = 0; i < n; i++)
    json_array_append_new(j->acc, snapshot_json(&v[i], now));
  rds_snapshots_free(v, n);
  if (j->marker && json_array_size(j->acc) < 100000) {
    snapshots_page(j);
    return;
  }
  snapshots_report(j);
}

static void snapshots_page(job *j) {
  aws_query *q = rds_q(j, "DescribeDBSnapshots");
  if (pstr(j, "instance")) aws_query_param(q, "DBInstanceIdentifier", pstr(j, "instance"));
  if (pstr(j, "type")) aws_query_param(q, "SnapshotType", pstr(j, "type"));
  char n[16];
  snprintf(n, sizeof n, "%d", page_size());
  aws_query_param(q, "MaxRecords", n);
  if (j->marker) aws_query_param(q, "Marker", j->marker);
  run(j, q, snapshots_got, NULL);
}

int rds_snapshots_start(eng_call *call, const json_t *p) {
  int rc;
  job *j = job_new(call, p, "snapshots", &rc);
  if (!j) return rc;
  j->instance = eng_xstrdup(pstr(j, "instance"));
  j->acc = json_array();
  snapshots_page(j);
  return ENG_OK;
}

/* ======================================================================== */
/* restore                                                                  */
/* ======================================================================== */

static void restore_ready(job *j, aws_query *q) {
  rds_instance *v;
  if (!first_instance(j, q, &v)) return;
  out_instance(j, &v[0]);
  rds_instances_free(v, 1);
  H->output(j->op.call, "restore_ms", json_integer((json_int_t)(now_ms() - j->t0_ms)));
  out_str(j, "source", pstr(j, "snapshot_id") ? pstr(j, "snapshot_id")
                                              : pstr(j, "source_instance"));
  eng_op_finish(&j->op, ENG_OK);
}

static void restore_accepted(job *j, aws_query *q) {
  H->journal_confirm(j->op.call, j->token);
  rds_instance *v;
  if (!first_instance(j, q, &v)) return;
  H->log(j->op.call, ENG_LOG_INFO, "restore of %s into %s accepted: %s",
         pstr(j, "snapshot_id") ? pstr(j, "snapshot_id") : pstr(j, "source_instance"),
         j->instance, v[0].status);
  if (!pbool(j, "wait", 1) || !strcmp(v[0].status, "available")) {
    rds_instances_free(v, 1);
    restore_ready(j, q);
    return;
  }
  rds_instances_free(v, 1);
  wait_start(j, RDS_WAIT_INSTANCE, restore_ready);
}

static void restore_refused(job *j, aws_query *q) {
  journal_nothing(j, j->instance, q);
  fail_query(j, q);
}

static void restore_call(job *j) {
  json_t *w = undo_with(j);
  json_object_set_new(w, "instance", json_string(j->instance));
  json_object_set_new(w, "skip_final_snapshot", json_true());
  json_object_set_new(w, "if_exists", json_true());
  journal_intent(j, "instance", j->instance, "provider.delete_instance", w);
  const char *snap = pstr(j, "snapshot_id");
  aws_query *q;
  if (snap) {
    q = rds_q(j, "RestoreDBInstanceFromDBSnapshot");
    aws_query_param(q, "DBInstanceIdentifier", j->instance);
    aws_query_param(q, "DBSnapshotIdentifier", snap);
  } else {
    const char *pit = pstr(j, "point_in_time");
    q = rds_q(j, "RestoreDBInstanceToPointInTime");
    aws_query_param(q, "SourceDBInstanceIdentifier", pstr(j, "source_instance"));
    aws_query_param(q, "TargetDBInstanceIdentifier", j->instance);
    if (!strcmp(pit, "latest")) {
      aws_query_param(q, "UseLatestRestorableTime", "true");
    } else {
      char iso[32];
      aws_format_time(aws_parse_time(pit), iso);
      aws_query_param(q, "RestoreTime", iso);
    }
  }
  if (pstr(j, "instance_class")) aws_query_param(q, "DBInstanceClass", pstr(j, "instance_class"));
  if (pint(j, "allocated_storage") > 0) {
    char n[32];
    snprintf(n, sizeof n, "%lld", (long long)pint(j, "allocated_storage"));
    aws_query_param(q, "AllocatedStorage", n);
  }
  if (json_is_boolean(json_object_get(j->p, "publicly_accessible")))
    aws_query_param(q, "PubliclyAccessible", pbool(j, "publicly_accessible", 0) ? "true" : "false");
  j->t0_ms = now_ms();
  run(j, q, restore_accepted, restore_refused);
}

/* The new identifier must be free: a restore never lands on an instance
 * that exists (whoever owns it). */
static void restore_exists(job *j, aws_query *q) {
  rds_instance *v = NULL;
  size_t n = rds_parse_instances(q->doc, &v, NULL);
  eng_op_fail(&j->op, ENG_ERR_EXISTS,
              "restore: instance '%s' already exists (status %s): a restore "
              "creates a new instance and never replaces one; give it an "
              "identifier no instance has (e.g. drill-${run.id}); nothing "
              "was done",
              j->instance, n ? v[0].status : "unknown");
  rds_instances_free(v, n);
}

static void restore_free_id(job *j, aws_query *q) {
  if (refused_with(q, "DBInstanceNotFound")) {
    restore_call(j);
    return;
  }
  fail_query(j, q);
}

int rds_restore_start(eng_call *call, const json_t *p) {
  const char *snap = json_string_value(json_object_get(p, "snapshot_id"));
  const char *pit = json_string_value(json_object_get(p, "point_in_time"));
  const char *src = json_string_value(json_object_get(p, "source_instance"));
  if ((snap && *snap) == (pit && *pit)) {
    H->fail(call, "restore: give either snapshot_id (restore a snapshot) or "
                  "point_in_time with source_instance (restore to a point in "
                  "time), not %s", snap && *snap ? "both" : "neither");
    return ENG_ERR_INVALID;
  }
  if (pit && *pit && !(src && *src)) {
    H->fail(call, "restore: point_in_time needs source_instance (the instance "
                  "whose backups are restored)");
    return ENG_ERR_INVALID;
  }
  int rc;
  job *j = job_new(call, p, "restore", &rc);
  if (!j) return rc;
  j->instance = eng_xstrdup(pstr(j, "instance"));
  describe_then(j, restore_exists, restore_free_id);
  return ENG_OK;
}

/* ======================================================================== */
/* delete_instance                                                          */
/* ======================================================================== */

static void deleted_gone(job *j, aws_query *q) {
  (void)q;
  removed_end(j, "instance", j->instance, "deleted");
}

static void delete_accepted(job *j, aws_query *q) {
  rds_instance *v = NULL;
  size_t n = rds_parse_instances(q->doc, &v, NULL);
  H->log(j->op.call, ENG_LOG_INFO, "instance %s: %s%s%s", j->instance,
         n ? v[0].status : "deleting",
         pstr(j, "final_snapshot_id") ? "; final snapshot " : "",
         pstr(j, "final_snapshot_id") ? pstr(j, "final_snapshot_id") : "");
  rds_instances_free(v, n);
  out_str(j, "final_snapshot_id", pbool(j, "skip_final_snapshot", 0) ? "" : j->snapshot);
  if (pbool(j, "wait", 0)) {
    wait_start(j, RDS_WAIT_GONE, deleted_gone);
    return;
  }
  /* the deletion is accepted: RDS finishes it; nothing is left to undo */
  removed_end(j, "instance", j->instance, "deleting");
}

static void delete_missing(job *j, aws_query *q) {
  if (refused_with(q, "DBInstanceNotFound") && pbool(j, "if_exists", 0)) {
    H->log(j->op.call, ENG_LOG_INFO, "instance %s does not exist (if_exists)",
           j->instance);
    out_str(j, "final_snapshot_id", "");
    removed_end(j, "instance", j->instance, "absent");
    return;
  }
  if (refused_with(q, "InvalidDBInstanceState") && pbool(j, "if_exists", 0) &&
      strstr(q->message, "deleting")) { /* already on its way out */
    out_str(j, "final_snapshot_id", "");
    removed_end(j, "instance", j->instance, "deleting");
    return;
  }
  fail_query(j, q);
}

static void delete_call(job *j, int guarded) {
  /* guards: a protected instance is refused whatever the flags, one this
   * run did not create needs --allow-destructive; nothing is deleted */
  if (!guarded &&
      H->guard_target(j->op.call, ENG_TARGET_INSTANCE, j->instance, NULL) != ENG_OK) {
    eng_op_finish(&j->op, ENG_ERR_REFUSED);
    return;
  }
  aws_query *q = rds_q(j, "DeleteDBInstance");
  aws_query_param(q, "DBInstanceIdentifier", j->instance);
  if (pbool(j, "skip_final_snapshot", 0)) {
    aws_query_param(q, "SkipFinalSnapshot", "true");
  } else {
    j->snapshot =
        pstr(j, "final_snapshot_id")
            ? eng_xstrdup(pstr(j, "final_snapshot_id"))
            : eng_asprintf("%s-final-%lld", j->instance, (long long)wall_s());
    aws_query_param(q, "SkipFinalSnapshot", "false");
    aws_query_param(q, "FinalDBSnapshotIdentifier", j->snapshot);
  }
  aws_query_param(q, "DeleteAutomatedBackups", "true");
  run(j, q, delete_accepted, delete_missing);
}

static void delete_exists(job *j, aws_query *q) {
  (void)q;
  delete_call(j, 0);
}

int rds_delete_instance_start(eng_call *call, const json_t *p) {
  const char *id = json_string_value(json_object_get(p, "instance"));
  int if_exists = json_is_true(json_object_get(p, "if_exists"));
  /* without if_exists the guards decide before any request; with it, an
   * instance that is not there is no destructive act: look first (a read),
   * then the guards decide on the one that exists. Protected patterns were
   * checked by the engine before the step started either way. */
  if (!if_exists && H->guard_target(call, ENG_TARGET_INSTANCE, id, NULL) != ENG_OK)
    return ENG_ERR_REFUSED;
  int rc;
  job *j = job_new(call, p, "delete_instance", &rc);
  if (!j) return rc;
  j->instance = eng_xstrdup(id);
  if (!if_exists) {
    delete_call(j, 1);
    return ENG_OK;
  }
  describe_then(j, delete_exists, delete_missing);
  return ENG_OK;
}

/* ======================================================================== */
/* delete_snapshot                                                          */
/* ======================================================================== */

static void snapshot_deleted(job *j, aws_query *q) {
  (void)q;
  removed_end(j, "snapshot", j->snapshot, "deleted");
}

/* Known: which instance the snapshot belongs to, the guards' evidence. */
static void delete_snapshot_found(job *j, aws_query *q) {
  rds_snapshot *v = NULL;
  size_t n = rds_parse_snapshots(q->doc, &v, NULL);
  char *inst = NULL;
  for (size_t i = 0; i < n; i++)
    if (!strcmp(v[i].id, j->snapshot)) inst = eng_xstrdup(v[i].instance);
  rds_snapshots_free(v, n);
  int g = H->guard_target(j->op.call, ENG_TARGET_SNAPSHOT, j->snapshot,
                          inst && *inst ? inst : NULL);
  free(inst);
  if (g != ENG_OK) {
    eng_op_finish(&j->op, ENG_ERR_REFUSED);
    return;
  }
  aws_query *d = rds_q(j, "DeleteDBSnapshot");
  aws_query_param(d, "DBSnapshotIdentifier", j->snapshot);
  run(j, d, snapshot_deleted, NULL);
}

static void delete_snapshot_missing(job *j, aws_query *q) {
  if (refused_with(q, "DBSnapshotNotFound") && pbool(j, "if_exists", 0)) {
    removed_end(j, "snapshot", j->snapshot, "absent");
    return;
  }
  fail_query(j, q);
}

int rds_delete_snapshot_start(eng_call *call, const json_t *p) {
  int rc;
  job *j = job_new(call, p, "delete_snapshot", &rc);
  if (!j) return rc;
  j->snapshot = eng_xstrdup(pstr(j, "snapshot_id"));
  aws_query *q = rds_q(j, "DescribeDBSnapshots");
  aws_query_param(q, "DBSnapshotIdentifier", j->snapshot);
  run(j, q, delete_snapshot_found, delete_snapshot_missing);
  return ENG_OK;
}
