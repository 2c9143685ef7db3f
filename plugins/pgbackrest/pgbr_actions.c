/*
 * pgbr_actions.c - info, check, backup and expire.
 *
 * Each action checks pgBackRest's version first (reported as the output
 * `version`), then runs its commands one after the other in the call.
 * info's WAL archive times come from `repo-ls`: `info` names the oldest and
 * newest archived segments but not when they were archived.
 *
 * expire is destructive: it removes backups from the repository. Before
 * pgBackRest runs, the plugin reads the stanza's backups, works out which
 * labels the request removes (a full backup takes its differential and
 * incremental backups with it), refuses when the newest full backup is
 * among them, and holds each one to the guards as the path
 * "pgbackrest:STANZA/LABEL" (protected_paths; not created by this run:
 * --allow-destructive).
 */
#include "pgbr_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static void job_destroy(eng_op *op) { pgbr_job_free((pgbr_job *)op); }

/* ---- reading info ------------------------------------------------------------ */

static void info_wal_read(eng_op *op, int rc, const char *out) {
  pgbr_job *j = (pgbr_job *)op;
  if (rc != ENG_OK) {
    j->after_info(op, rc);
    return;
  }
  int64_t tmin = -1, tmax = -1;
  char err[256];
  if (pgbr_parse_wal_times(out, pgbr_pstr(j->info, "wal_min"),
                           pgbr_pstr(j->info, "wal_max"), &tmin, &tmax, err,
                           sizeof err) != 0) {
    eng_op_fail(op, ENG_ERR_PROTOCOL, "%s", err);
    return;
  }
  const char *keys[] = {"wal_min_time", "wal_max_time"};
  int64_t t[] = {tmin, tmax};
  for (int i = 0; i < 2; i++) {
    char buf[32];
    pgbr_rfc3339(t[i], buf);
    json_object_set_new(j->info, keys[i], t[i] >= 0 ? json_string(buf) : json_null());
  }
  /* the newest point a restore can reach: the end of the newest archived
   * segment, written no later than when it was archived */
  json_object_set(j->info, "recovery_point", json_object_get(j->info, "wal_max_time"));
  j->after_info(op, ENG_OK);
}

static void info_read(eng_op *op, int rc, const char *out) {
  pgbr_job *j = (pgbr_job *)op;
  if (rc != ENG_OK) {
    j->after_info(op, rc);
    return;
  }
  char err[512];
  json_decref(j->info);
  j->info = pgbr_parse_info(out, pgbr_conf_stanza(j->conf), err, sizeof err);
  if (!j->info) {
    eng_op_fail(op, ENG_ERR_PROTOCOL, "%s", err);
    return;
  }
  const char *arch = pgbr_pstr(j->info, "archive_id");
  if (!j->with_wal || !arch || !pgbr_pstr(j->info, "wal_max")) {
    json_object_set_new(j->info, "wal_min_time", json_null());
    json_object_set_new(j->info, "wal_max_time", json_null());
    json_object_set_new(j->info, "recovery_point", json_null());
    j->after_info(op, ENG_OK);
    return;
  }
  char *path = eng_asprintf("archive/%s/%s", pgbr_conf_stanza(j->conf), arch);
  const char *args[] = {"--recurse", "--output=json", path, NULL};
  pgbr_run(op, j->conf, "repo-ls", args, info_wal_read);
  free(path);
}

void pgbr_read_info(pgbr_job *j, int with_wal, void (*next)(eng_op *op, int rc)) {
  j->after_info = next;
  j->with_wal = with_wal;
  const char *args[] = {"--output=json", NULL};
  pgbr_run(&j->op, j->conf, "info", args, info_read);
}

/* ---- info -------------------------------------------------------------------- */

static void info_done(eng_op *op, int rc) {
  pgbr_job *j = (pgbr_job *)op;
  if (rc != ENG_OK) {
    eng_op_finish(op, rc);
    return;
  }
  const char *k;
  json_t *v;
  json_object_foreach(j->info, k, v) pgbr_host->output(op->call, k, json_incref(v));
  const json_t *latest = json_object_get(j->info, "latest");
  json_int_t stop = json_integer_value(json_object_get(latest, "stop_epoch"));
  pgbr_host->output(op->call, "backup_count",
                    json_integer((json_int_t)json_array_size(
                        json_object_get(j->info, "backups"))));
  pgbr_host->output(op->call, "latest_age_s",
                    latest ? json_integer((json_int_t)time(NULL) - stop) : json_null());
  const char *status = pgbr_pstr(j->info, "status");
  pgbr_host->log(op->call, ENG_LOG_INFO,
                 "stanza %s: %s, %zu backup(s), newest %s, WAL %s .. %s",
                 pgbr_conf_stanza(j->conf), status,
                 json_array_size(json_object_get(j->info, "backups")),
                 latest ? pgbr_pstr(latest, "label") : "(none)",
                 pgbr_pstr(j->info, "wal_min") ? pgbr_pstr(j->info, "wal_min") : "-",
                 pgbr_pstr(j->info, "wal_max") ? pgbr_pstr(j->info, "wal_max") : "-");
  if (strcmp(status, "ok") != 0 && pgbr_host->size >= offsetof(eng_host, warn) +
                                                         sizeof pgbr_host->warn) {
    char *msg = eng_asprintf("stanza %s: %s", pgbr_conf_stanza(j->conf), status);
    pgbr_host->warn(op->call, msg);
    free(msg);
  }
  eng_op_finish(op, ENG_OK);
}

static void info_versioned(eng_op *op, int rc, const char *out) {
  (void)out;
  if (rc != ENG_OK) {
    eng_op_finish(op, rc);
    return;
  }
  pgbr_read_info((pgbr_job *)op, 1, info_done);
}

int pgbr_act_info(eng_call *call, const json_t *params) {
  int rc;
  pgbr_job *j = pgbr_job_new(call, params, sizeof *j, job_destroy, &rc);
  if (!j) return rc;
  pgbr_check_version(&j->op, j->conf, info_versioned);
  return ENG_OK;
}

/* ---- check ------------------------------------------------------------------- */

static void check_done(eng_op *op, int rc, const char *out) {
  (void)out;
  pgbr_job *j = (pgbr_job *)op;
  if (rc == ENG_OK) {
    pgbr_host->output(op->call, "ok", json_true());
    pgbr_host->output(op->call, "duration_ms",
                      json_integer(pgbr_now_ms() - j->started_ms));
    pgbr_host->log(op->call, ENG_LOG_INFO,
                   "stanza %s: the configuration is valid and a WAL segment "
                   "reached the repository",
                   pgbr_conf_stanza(j->conf));
  }
  eng_op_finish(op, rc);
}

static void check_versioned(eng_op *op, int rc, const char *out) {
  (void)out;
  if (rc != ENG_OK) {
    eng_op_finish(op, rc);
    return;
  }
  pgbr_run(op, ((pgbr_job *)op)->conf, "check", NULL, check_done);
}

int pgbr_act_check(eng_call *call, const json_t *params) {
  int rc;
  pgbr_job *j = pgbr_job_new(call, params, sizeof *j, job_destroy, &rc);
  if (!j) return rc;
  pgbr_check_version(&j->op, j->conf, check_versioned);
  return ENG_OK;
}

/* ---- backup ------------------------------------------------------------------ */

typedef struct backup_job {
  pgbr_job j;
  char type[8];
  int start_fast;
  int64_t token;
  char *before; /* the newest label before this backup, or NULL */
} backup_job;

static void backup_destroy(eng_op *op) {
  free(((backup_job *)op)->before);
  pgbr_job_free((pgbr_job *)op);
}

static void backup_read(eng_op *op, int rc) {
  backup_job *b = (backup_job *)op;
  if (rc != ENG_OK) {
    eng_op_finish(op, rc);
    return;
  }
  const json_t *latest = json_object_get(b->j.info, "latest");
  const char *label = pgbr_pstr(latest, "label");
  if (!label || (b->before && !strcmp(label, b->before))) {
    eng_op_fail(op, ENG_ERR_PROTOCOL,
                "pgbackrest backup ended but info lists no new backup in "
                "stanza %s", pgbr_conf_stanza(b->j.conf));
    return;
  }
  pgbr_host->journal_confirm(op->call, b->token);
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)latest, k, v)
    pgbr_host->output(op->call, k, json_incref(v));
  pgbr_host->output(op->call, "stanza", json_string(pgbr_conf_stanza(b->j.conf)));
  pgbr_host->output(op->call, "duration_ms",
                    json_integer(pgbr_now_ms() - b->j.started_ms));
  pgbr_host->log(op->call, ENG_LOG_INFO, "%s backup %s: %lld bytes (%lld in the "
                 "repository), WAL %s .. %s",
                 pgbr_pstr(latest, "type"), label,
                 (long long)json_integer_value(json_object_get(latest, "size")),
                 (long long)json_integer_value(json_object_get(latest, "repo_size")),
                 pgbr_pstr(latest, "wal_start") ? pgbr_pstr(latest, "wal_start") : "-",
                 pgbr_pstr(latest, "wal_stop") ? pgbr_pstr(latest, "wal_stop") : "-");
  eng_op_finish(op, ENG_OK);
}

static void backup_ran(eng_op *op, int rc, const char *out) {
  (void)out;
  if (rc != ENG_OK) {
    eng_op_finish(op, rc);
    return;
  }
  pgbr_read_info((pgbr_job *)op, 0, backup_read);
}

/* The labels before: the new one is the newest after. Then journal the
 * backup (kept) and take it. */
static void backup_before(eng_op *op, int rc) {
  backup_job *b = (backup_job *)op;
  if (rc != ENG_OK) {
    eng_op_finish(op, rc);
    return;
  }
  const char *prev = pgbr_pstr(json_object_get(b->j.info, "latest"), "label");
  b->before = prev ? eng_xstrdup(prev) : NULL;
  char now[32];
  pgbr_rfc3339((int64_t)time(NULL), now);
  char *id = eng_asprintf("%s/%s backup started %s", pgbr_conf_stanza(b->j.conf),
                          b->type, now);
  /* no undo: pgBackRest's next backup resumes or removes an interrupted
   * one, and a finished backup is what the run delivers */
  json_t *detail = json_pack("{s:s, s:s, s:s}", "stanza",
                             pgbr_conf_stanza(b->j.conf), "type", b->type,
                             "disposition", "kept");
  b->token = pgbr_host->journal_intent(op->call, "pgbackrest_backup", id, detail);
  json_decref(detail);
  free(id);
  if (b->token < 0) {
    eng_op_finish(op, ENG_ERR_IO);
    return;
  }
  char *type = eng_asprintf("--type=%s", b->type);
  const char *args[] = {type, b->start_fast ? "--start-fast" : "--no-start-fast",
                        NULL};
  pgbr_host->log(op->call, ENG_LOG_INFO, "%s backup of stanza %s", b->type,
                 pgbr_conf_stanza(b->j.conf));
  pgbr_run(op, b->j.conf, "backup", args, backup_ran);
  free(type);
}

static void backup_versioned(eng_op *op, int rc, const char *out) {
  (void)out;
  if (rc != ENG_OK) {
    eng_op_finish(op, rc);
    return;
  }
  pgbr_read_info((pgbr_job *)op, 0, backup_before);
}

int pgbr_act_backup(eng_call *call, const json_t *params) {
  int rc;
  backup_job *b = (backup_job *)pgbr_job_new(call, params, sizeof *b,
                                             backup_destroy, &rc);
  if (!b) return rc;
  const char *type = pgbr_pstr(params, "type");
  snprintf(b->type, sizeof b->type, "%s", type ? type : "full");
  b->start_fast = json_is_true(json_object_get(params, "start_fast"));
  pgbr_check_version(&b->j.op, b->j.conf, backup_versioned);
  return ENG_OK;
}

/* ---- expire ------------------------------------------------------------------ */

typedef struct expire_job {
  pgbr_job j;
  char *set;
  long long keep;
  json_t *labels; /* what the request removes */
} expire_job;

static void expire_destroy(eng_op *op) {
  expire_job *e = (expire_job *)op;
  free(e->set);
  json_decref(e->labels);
  pgbr_job_free(&e->j);
}

eng_side_effect pgbr_expire_classify(const json_t *params) {
  (void)params;
  return ENG_SIDE_DESTRUCTIVE;
}

/* set and the backups that depend on it (their prior chain reaches it). */
static json_t *set_and_dependents(const json_t *backups, const char *set) {
  json_t *out = json_pack("[s]", set);
  size_t i;
  const json_t *b;
  json_array_foreach(backups, i, b) {
    const char *prior = pgbr_pstr(b, "prior");
    size_t k;
    const json_t *l;
    json_array_foreach(out, k, l) {
      if (prior && !strcmp(prior, json_string_value(l))) {
        json_array_append_new(out, json_string(pgbr_pstr(b, "label")));
        break;
      }
    }
  }
  return out;
}

static void expire_done(eng_op *op, int rc, const char *out) {
  (void)out;
  expire_job *e = (expire_job *)op;
  if (rc == ENG_OK) {
    pgbr_host->output(op->call, "expired", json_incref(e->labels));
    pgbr_host->log(op->call, ENG_LOG_INFO, "expired %zu backup(s) of stanza %s",
                   json_array_size(e->labels), pgbr_conf_stanza(e->j.conf));
  }
  eng_op_finish(op, rc);
}

/* Refusals, then the guards for each label, then pgBackRest. */
static void expire_planned(eng_op *op, int rc) {
  expire_job *e = (expire_job *)op;
  if (rc != ENG_OK) {
    eng_op_finish(op, rc);
    return;
  }
  const json_t *backups = json_object_get(e->j.info, "backups");
  const char *newest_full = pgbr_pstr(json_object_get(e->j.info, "latest_full"), "label");
  const char *stanza = pgbr_pstr(e->j.info, "stanza");
  int found = !e->set;
  size_t i;
  const json_t *b;
  json_array_foreach(backups, i, b) found |= e->set && !strcmp(pgbr_pstr(b, "label"), e->set);
  if (!found) {
    eng_op_fail(op, ENG_ERR_NOTFOUND, "stanza %s has no backup '%s'; pgbackrest "
                "info lists the labels; nothing was expired", stanza, e->set);
    return;
  }
  e->labels = e->set ? set_and_dependents(backups, e->set)
                     : pgbr_expire_plan(e->j.info, e->keep);
  json_array_foreach(e->labels, i, b) {
    if (newest_full && !strcmp(json_string_value(b), newest_full)) {
      eng_op_fail(op, ENG_ERR_REFUSED,
                  "refused: expiring %s would remove %s, the newest full "
                  "backup of stanza %s, and every restore would depend on "
                  "older ones; nothing was expired",
                  e->set, newest_full, stanza);
      return;
    }
    char *target = eng_asprintf("pgbackrest:%s/%s", stanza, json_string_value(b));
    int g = pgbr_host->guard_target(op->call, ENG_TARGET_FILE, target,
                                    "a backup in the pgBackRest repository");
    free(target);
    if (g != ENG_OK) {
      eng_op_finish(op, ENG_ERR_REFUSED);
      return;
    }
  }
  char *arg = e->set ? eng_asprintf("--set=%s", e->set)
                     : eng_asprintf("--repo1-retention-full=%lld", e->keep);
  const char *args[] = {arg, NULL};
  pgbr_run(op, e->j.conf, "expire", args, expire_done);
  free(arg);
}

static void expire_versioned(eng_op *op, int rc, const char *out) {
  (void)out;
  if (rc != ENG_OK) {
    eng_op_finish(op, rc);
    return;
  }
  pgbr_read_info((pgbr_job *)op, 0, expire_planned);
}

int pgbr_act_expire(eng_call *call, const json_t *params) {
  const char *set = pgbr_pstr(params, "set");
  json_t *keep = json_object_get(params, "retention_full");
  if ((set && *set) == (keep != NULL)) {
    pgbr_host->fail(call, "give exactly one of set (a backup label to expire) "
                          "and retention_full (full backups to keep)");
    return ENG_ERR_INVALID;
  }
  int rc;
  expire_job *e = (expire_job *)pgbr_job_new(call, params, sizeof *e,
                                             expire_destroy, &rc);
  if (!e) return rc;
  e->set = set && *set ? eng_xstrdup(set) : NULL;
  e->keep = keep ? (long long)json_integer_value(keep) : 0;
  pgbr_check_version(&e->j.op, e->j.conf, expire_versioned);
  return ENG_OK;
}
