/*
 * prisma_resolve.c - prisma.resolve: record a migration as applied or as
 * rolled back without running it, as `prisma migrate resolve` does, and
 * baseline a database that predates its migration history.
 *
 * It shares deploy's session (prisma_deploy.c): guard, advisory lock,
 * search_path, _prisma_migrations read (created as Prisma creates it when
 * absent, also in a non-empty schema: that is the point of a baseline).
 * Then, in one transaction:
 *   applied NAME      the folder must hold NAME (P3017) and the table must
 *                     not already record it applied (P3008); a failed
 *                     attempt of NAME gets rolled_back_at = now(); a row
 *                     (uuid, checksum of migration.sql, started_at =
 *                     finished_at, applied_steps_count 0, logs '' (empty,
 *                     not NULL, as Prisma writes it)) is inserted.
 *   rolled_back NAME  the failed rows of NAME (neither finished nor rolled
 *                     back) get rolled_back_at = now(); none recorded at
 *                     all is P3011, none failed is P3012.
 *   baseline          on a table with no rows, the applied row above for
 *                     every migration of the folder, in name order, up to
 *                     `up_to` when given.
 * A refusal changes nothing; the transaction leaves all rows or none.
 */
#include "prisma_int.h"

#include <stdlib.h>
#include <string.h>

/* The row `prisma migrate resolve --applied` writes: started_at and
 * finished_at one instant (clock_timestamp: each row of a baseline its
 * own, so their order is the folder's), no steps, logs '' (not NULL). */
static void prisma_mark_applied(prisma_deploy_op *d, const prisma_mig *m) {
  char id[37];
  prisma_uuid4(id);
  const char *p[3] = {id, m->sha[0], m->name};
  char *sql = eng_asprintf(
      "INSERT INTO %s (id, checksum, started_at, finished_at, "
      "migration_name, logs, applied_steps_count) "
      "SELECT $1, $2, t, t, $3, '', 0 FROM (SELECT clock_timestamp() AS t) n",
      d->ld.table);
  pg_sess_add(d->s, "record the migration as applied", sql, 3, p, NULL, NULL);
  free(sql);
  json_array_append_new(d->applied_now, json_string(m->name));
}

/* The failed rows of name: rolled back. */
static void prisma_mark_rolled_back(prisma_deploy_op *d, const char *name) {
  const char *p[1] = {name};
  char *sql = eng_asprintf("UPDATE %s SET rolled_back_at = now() "
                           "WHERE migration_name = $1 AND finished_at IS "
                           "NULL AND rolled_back_at IS NULL",
                           d->ld.table);
  pg_sess_add(d->s, "record the failed migration as rolled back", sql, 1, p,
              NULL, NULL);
  free(sql);
  json_array_append_new(d->rolled_back_now, json_string(name));
}

static void prisma_resolve_end(pg_sess *s, void *ud, int rc) {
  prisma_deploy_op *d = ud;
  if (rc != ENG_OK) {
    json_array_clear(d->applied_now);
    json_array_clear(d->rolled_back_now);
    prisma_fail_sess(&d->op, s, rc, "writing " PRISMA_TABLE);
    return;
  }
  size_t i;
  json_t *v;
  json_array_foreach(d->rolled_back_now, i, v)
      pg_host->log(d->op.e.call, ENG_LOG_INFO,
                   "migration %s marked as rolled back",
                   json_string_value(v));
  json_array_foreach(d->applied_now, i, v)
      pg_host->log(d->op.e.call, ENG_LOG_INFO, "migration %s marked as applied",
                   json_string_value(v));
  prisma_deploy_unlock(d);
}

/* Rows of name: how many, how many failed, whether one is applied. */
static void prisma_rows_of(const prisma_rows *r, const char *name,
                           size_t *n, size_t *failed, int *applied) {
  *n = *failed = 0;
  *applied = 0;
  for (size_t i = 0; i < r->n; i++) {
    if (strcmp(r->v[i].name, name)) continue;
    (*n)++;
    if (!r->v[i].finished && !r->v[i].rolled_back) (*failed)++;
    if (r->v[i].finished && !r->v[i].rolled_back) *applied = 1;
  }
}

static int prisma_resolve_applied(prisma_deploy_op *d, const char *where) {
  const prisma_mig *m = prisma_find(&d->dir, d->name);
  if (!m) {
    pg_op_fail(&d->op, ENG_ERR_NOTFOUND,
               "migration `%s` is not in %s (Prisma's P3017): give the whole "
               "name of its folder (20240101000000_init); nothing was changed",
               d->name, d->dir.path);
    return ENG_ERR_NOTFOUND;
  }
  size_t n, failed;
  int applied;
  prisma_rows_of(&d->ld.rows, d->name, &n, &failed, &applied);
  if (applied) {
    pg_op_fail(&d->op, ENG_ERR_EXISTS,
               "migration `%s` is already recorded as applied in %s of %s "
               "(Prisma's P3008); nothing was changed",
               d->name, PRISMA_TABLE, where);
    return ENG_ERR_EXISTS;
  }
  if (failed) prisma_mark_rolled_back(d, d->name);
  prisma_mark_applied(d, m);
  return ENG_OK;
}

static int prisma_resolve_rolled_back(prisma_deploy_op *d, const char *where) {
  size_t n, failed;
  int applied;
  prisma_rows_of(&d->ld.rows, d->name, &n, &failed, &applied);
  if (!n || !failed) {
    pg_op_fail(&d->op, ENG_ERR_FAILED,
               n ? "migration `%s` cannot be rolled back because it is not in "
                   "a failed state in %s of %s (Prisma's P3012); nothing was "
                   "changed"
                 : "migration `%s` cannot be rolled back because it was never "
                   "applied: %s of %s has no row for it (Prisma's P3011); "
                   "give the whole name of its folder; nothing was changed",
               d->name, PRISMA_TABLE, where);
    return ENG_ERR_FAILED;
  }
  prisma_mark_rolled_back(d, d->name);
  return ENG_OK;
}

static int prisma_resolve_baseline(prisma_deploy_op *d, const char *where) {
  if (d->ld.rows.n) {
    pg_op_fail(&d->op, ENG_ERR_EXISTS,
               "%s of %s already holds %zu migration record(s): a baseline is "
               "for a database without migration history; mark single "
               "migrations with `applied: NAME`; nothing was changed",
               PRISMA_TABLE, where, d->ld.rows.n);
    return ENG_ERR_EXISTS;
  }
  if (d->dir.n == 0) {
    pg_op_fail(&d->op, ENG_ERR_NOTFOUND,
               "no migration in %s to baseline; nothing was changed",
               d->dir.path);
    return ENG_ERR_NOTFOUND;
  }
  if (d->up_to && !prisma_find(&d->dir, d->up_to)) {
    pg_op_fail(&d->op, ENG_ERR_NOTFOUND,
               "up_to: migration `%s` is not in %s; give the whole name of "
               "the last migration the database already has; nothing was "
               "changed",
               d->up_to, d->dir.path);
    return ENG_ERR_NOTFOUND;
  }
  for (size_t i = 0; i < d->dir.n; i++) {
    prisma_mark_applied(d, &d->dir.migs[i]);
    if (d->up_to && !strcmp(d->dir.migs[i].name, d->up_to)) break;
  }
  return ENG_OK;
}

static void prisma_resolve_run(prisma_deploy_op *d) {
  const char *where = pg_sess_display(d->s);
  pg_sess_add(d->s, "begin", "BEGIN", 0, NULL, NULL, NULL);
  int rc = d->task == PRISMA_MARK_APPLIED ? prisma_resolve_applied(d, where)
           : d->task == PRISMA_MARK_ROLLED_BACK
               ? prisma_resolve_rolled_back(d, where)
               : prisma_resolve_baseline(d, where);
  if (rc != ENG_OK) return;
  pg_sess_add(d->s, "commit", "COMMIT", 0, NULL, NULL, NULL);
  pg_sess_run(d->s, prisma_resolve_end, d);
}

int prisma_act_resolve(eng_call *call, const json_t *params) {
  const char *applied = pg_pstr(params, "applied");
  const char *rolled = pg_pstr(params, "rolled_back");
  const char *up_to = pg_pstr(params, "up_to");
  int baseline = pg_pbool(params, "baseline", 0);
  int given = (applied && *applied) + (rolled && *rolled) + baseline;
  if (given != 1) {
    pg_host->fail(call, "give exactly one of `applied: NAME`, `rolled_back: "
                        "NAME` or `baseline: true`");
    return ENG_ERR_INVALID;
  }
  if (up_to && *up_to && !baseline) {
    pg_host->fail(call, "`up_to` goes with `baseline: true`");
    return ENG_ERR_INVALID;
  }
  prisma_task task = baseline ? PRISMA_BASELINE
                     : applied && *applied ? PRISMA_MARK_APPLIED
                                           : PRISMA_MARK_ROLLED_BACK;
  int rc;
  prisma_deploy_op *d = prisma_deploy_new(call, params, task, &rc);
  if (!d) return rc;
  d->task_run = prisma_resolve_run;
  if (task != PRISMA_BASELINE)
    d->name = eng_xstrdup(task == PRISMA_MARK_APPLIED ? applied : rolled);
  if (up_to && *up_to) d->up_to = eng_xstrdup(up_to);
  prisma_deploy_begin(d);
  return ENG_OK;
}
