/*
 * prisma_lint.c - prisma.lint: the host's migration lint (PostgreSQL's
 * parser, host->migrations_lint) over a migrations folder, as a step; and
 * prisma.check_rehearsal: a rehearsal's record (prisma.rehearse `record`)
 * held to the folder, so a deploy goes ahead only after a passing
 * rehearsal of the very same migrations, recent enough.
 */
#include "prisma_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The largest rehearsal record read: a few KB in practice. */
#define PRISMA_RECORD_MAX (1024 * 1024)

typedef struct prisma_lint_op {
  pg_op op;
  char *dir;
  json_t *opts;
  json_t *res;   /* host->migrations_lint's answer */
  char *record;  /* check_rehearsal: the record's path */
  json_t *rec;   /* ... its content, or NULL */
  char *rec_err; /* ... why it could not be read */
  int64_t max_age_ms;
  const char *fail_on;
} prisma_lint_op;

static void prisma_lint_destroy(pg_op *op) {
  prisma_lint_op *t = (prisma_lint_op *)op;
  free(t->dir);
  json_decref(t->opts);
  json_decref(t->res);
  free(t->record);
  json_decref(t->rec);
  free(t->rec_err);
  free(t);
}

int prisma_has_lint(eng_call *call) {
  if (pg_host->size >= offsetof(eng_host, migrations_lint) +
                           sizeof pg_host->migrations_lint &&
      pg_host->migrations_lint)
    return 1;
  pg_host->fail(call, "this engine has no migration lint (plugin ABI 1.7 "
                      "needed); upgrade the engine");
  return 0;
}

static void prisma_lint_read(void *ud) {
  prisma_lint_op *t = ud;
  t->res = pg_host->migrations_lint(t->dir, t->opts);
  if (!t->record) return;
  json_error_t e;
  t->rec = json_load_file(t->record, 0, &e);
  if (!t->rec)
    t->rec_err = eng_asprintf("%s (line %d)", e.text, e.line);
}

static void prisma_lint_outputs(prisma_lint_op *t) {
  eng_call *call = t->op.e.call;
  const char *keys[] = {"findings", "errors", "warnings", "suppressed",
                        "digest", "migrations"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
    pg_host->output(call, keys[i], json_incref(json_object_get(t->res, keys[i])));
}

static void prisma_lint_end(void *ud) {
  prisma_lint_op *t = ud;
  eng_call *call = t->op.e.call;
  const char *err = json_string_value(json_object_get(t->res, "error"));
  if (err) {
    pg_op_fail(&t->op, ENG_ERR_INVALID, "%s", err);
    return;
  }
  size_t i;
  const json_t *f;
  json_array_foreach(json_object_get(t->res, "findings"), i, f)
      pg_host->log(call, json_object_get(f, "suppressed") ? ENG_LOG_INFO : ENG_LOG_WARN,
                   "%s", json_string_value(json_object_get(f, "text")));
  prisma_lint_outputs(t);
  json_int_t errors = json_integer_value(json_object_get(t->res, "errors"));
  json_int_t warnings = json_integer_value(json_object_get(t->res, "warnings"));
  char *sum = eng_asprintf("%lld error(s), %lld warning(s) in %zu migration(s) "
                           "of %s",
                           (long long)errors, (long long)warnings,
                           json_array_size(json_object_get(t->res, "migrations")),
                           t->dir);
  int fail = (!strcmp(t->fail_on, "error") && errors) ||
             (!strcmp(t->fail_on, "warning") && (errors || warnings));
  if (fail) {
    pg_op_fail(&t->op, ENG_ERR_FAILED,
               "migration lint: %s; fix them, or allow one with a reason "
               "(`-- lint: allow RULE REASON` on the line before it)",
               sum);
  } else {
    if (errors || warnings) pg_host->warn(call, sum);
    pg_host->log(call, ENG_LOG_INFO, "migration lint: %s", sum);
    pg_op_finish(&t->op, ENG_OK);
  }
  free(sum);
}

static prisma_lint_op *prisma_lint_new(eng_call *call, const json_t *params) {
  prisma_lint_op *t = eng_xcalloc(1, sizeof *t);
  pg_op_init(&t->op, call, prisma_lint_destroy);
  const char *dir = pg_pstr(params, "migrations");
  t->dir = eng_xstrdup(dir && *dir ? dir : "prisma/migrations");
  t->opts = json_object();
  long long pg = pg_pint(params, "pg_major", 0);
  if (pg) json_object_set_new(t->opts, "pg_major", json_integer(pg));
  const char *txn = pg_pstr(params, "transaction");
  if (txn) json_object_set_new(t->opts, "transaction", json_string(txn));
  const json_t *only = json_object_get(params, "only");
  if (json_is_array(only)) json_object_set(t->opts, "only", (json_t *)only);
  t->fail_on = pg_pstr(params, "fail_on");
  if (!t->fail_on) t->fail_on = "error";
  return t;
}

int prisma_act_lint(eng_call *call, const json_t *params) {
  if (!prisma_has_lint(call)) return ENG_ERR_INVALID;
  prisma_lint_op *t = prisma_lint_new(call, params);
  int rc = pg_op_work(&t->op, prisma_lint_read, prisma_lint_end, t);
  if (rc != ENG_OK) pg_op_fail(&t->op, rc, "cannot start reading %s", t->dir);
  return ENG_OK;
}

/* ---- check_rehearsal ------------------------------------------------------ */

static const char *prisma_rec_problem(prisma_lint_op *t, char *buf, size_t n) {
  const char *digest = json_string_value(json_object_get(t->res, "digest"));
  const char *rd = json_string_value(json_object_get(t->rec, "digest"));
  const char *verdict = json_string_value(json_object_get(t->rec, "verdict"));
  json_int_t at = json_integer_value(json_object_get(t->rec, "finished_at_ms"));
  int64_t age = (int64_t)time(NULL) * 1000 - at;
  if (!rd || !digest || strcmp(rd, digest))
    snprintf(buf, n,
             "the rehearsal recorded in %s covered another set of migrations "
             "(digest %.12s, the folder %s now has %.12s): rehearse these "
             "migrations (runbooks/migration-rehearsal.yaml) before deploying",
             t->record, rd ? rd : "none", t->dir, digest ? digest : "none");
  else if (!verdict || !strcmp(verdict, "fail"))
    snprintf(buf, n,
             "the rehearsal recorded in %s failed (%s): fix the migrations "
             "and rehearse again before deploying",
             t->record,
             json_string_value(json_object_get(t->rec, "summary"))
                 ? json_string_value(json_object_get(t->rec, "summary"))
                 : "no verdict");
  else if (at <= 0 || age > t->max_age_ms || age < -60000)
    snprintf(buf, n,
             "the rehearsal recorded in %s is %lld min old, older than "
             "max_age (%lld min): rehearse again on a fresh copy",
             t->record, (long long)(age / 60000),
             (long long)(t->max_age_ms / 60000));
  else
    return NULL;
  return buf;
}

static void prisma_check_end(void *ud) {
  prisma_lint_op *t = ud;
  const char *err = json_string_value(json_object_get(t->res, "error"));
  if (err) {
    pg_op_fail(&t->op, ENG_ERR_INVALID, "%s", err);
    return;
  }
  if (!t->rec) {
    pg_op_fail(&t->op, ENG_ERR_FAILED,
               "no passing rehearsal recorded: %s cannot be read (%s); run "
               "runbooks/migration-rehearsal.yaml with record: %s first",
               t->record, t->rec_err ? t->rec_err : "?", t->record);
    return;
  }
  char buf[1024];
  const char *problem = prisma_rec_problem(t, buf, sizeof buf);
  pg_host->output(t->op.e.call, "digest",
                  json_incref(json_object_get(t->res, "digest")));
  pg_host->output(t->op.e.call, "rehearsal", json_incref(t->rec));
  if (problem) {
    pg_op_fail(&t->op, ENG_ERR_FAILED, "%s", problem);
    return;
  }
  pg_host->log(t->op.e.call, ENG_LOG_INFO,
               "a passing rehearsal of these migrations is recorded in %s "
               "(verdict %s)",
               t->record, json_string_value(json_object_get(t->rec, "verdict")));
  pg_op_finish(&t->op, ENG_OK);
}

int prisma_act_check_rehearsal(eng_call *call, const json_t *params) {
  if (!prisma_has_lint(call)) return ENG_ERR_INVALID;
  const char *record = pg_pstr(params, "record");
  if (!record || !*record) {
    pg_host->fail(call, "parameter 'record' is empty: name the file "
                        "prisma.rehearse wrote (its `record` parameter)");
    return ENG_ERR_INVALID;
  }
  prisma_lint_op *t = prisma_lint_new(call, params);
  t->record = eng_xstrdup(record);
  t->max_age_ms = pg_pint(params, "max_age", 86400000LL);
  int rc = pg_op_work(&t->op, prisma_lint_read, prisma_check_end, t);
  if (rc != ENG_OK) pg_op_fail(&t->op, rc, "cannot start reading %s", t->dir);
  return ENG_OK;
}
