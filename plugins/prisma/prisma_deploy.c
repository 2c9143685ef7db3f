/*
 * prisma_deploy.c - prisma.deploy: apply the pending migrations as
 * `prisma migrate deploy` does, natively, or run the Prisma CLI.
 *
 * Native sequence, on one connection (the advisory lock is per session):
 *   identity -> guard_target -> pg_try_advisory_lock(72707369), polled up
 *   to lock_timeout -> search_path = the URL's schema -> _prisma_migrations
 *   (created as Prisma creates it; a non-empty schema without it is P3005)
 *   -> refuse on a failed migration (P3009) -> for each pending migration:
 *   INSERT the row, run migration.sql as one simple-protocol query (not
 *   wrapped in a transaction by us, as Prisma), then set finished_at and
 *   applied_steps_count, or write the error into logs and stop
 *   -> pg_advisory_unlock.
 */
#include "prisma_int.h"

#include <stdlib.h>
#include <string.h>

#define PRISMA_LOCK_POLL_MS 200
#define PRISMA_CLI_MAX_OUT (1024 * 1024)

static void prisma_deploy_destroy(pg_op *op) {
  prisma_deploy_op *d = (prisma_deploy_op *)op;
  free(d->url);
  free(d->orig_url);
  free(d->schema);
  prisma_dir_free(&d->dir);
  prisma_load_free(&d->ld);
  if (d->have_st) prisma_state_free(&d->st);
  free(d->script_err);
  json_decref(d->applied_now);
  free(d->name);
  free(d->up_to);
  json_decref(d->rolled_back_now);
  free(d->cwd);
  pg_argv_free(&d->argv);
  pg_argv_free(&d->env);
  eng_strbuf_free(&d->out);
  if (d->ext_free) d->ext_free(d->ext);
  free(d);
}

static void prisma_deploy_outputs(prisma_deploy_op *d, int up) {
  pg_host->output(d->op.e.call, "applied_now", json_incref(d->applied_now));
  pg_host->output(d->op.e.call, "up_to_date", json_boolean(up));
}

/* ---- end ----------------------------------------------------------------- */

static void prisma_unlock_end(pg_sess *s, void *ud, int rc) {
  prisma_deploy_op *d = ud;
  if (rc != ENG_OK)
    pg_host->log(d->op.e.call, ENG_LOG_WARN,
                 "could not release the migration lock (%s); it is released "
                 "when the connection closes",
                 pg_sess_errmsg(s));
  if (d->task != PRISMA_DEPLOY && d->task != PRISMA_REHEARSE) {
    pg_host->output(d->op.e.call, "applied_now", json_incref(d->applied_now));
    pg_host->output(d->op.e.call, "rolled_back_now",
                    json_incref(d->rolled_back_now));
    pg_op_finish(&d->op, ENG_OK);
    return;
  }
  int up = json_array_size(d->st.failed) == 0 &&
           json_array_size(d->st.modified) == 0 &&
           d->next >= json_array_size(d->st.pending);
  prisma_deploy_outputs(d, up);
  pg_host->output(d->op.e.call, "modified", json_incref(d->st.modified));
  if (d->task_end) {
    d->task_end(d);
    return;
  }
  size_t n = json_array_size(d->applied_now);
  if (n == 0)
    pg_host->log(d->op.e.call, ENG_LOG_INFO, "no pending migrations to apply");
  else
    pg_host->log(d->op.e.call, ENG_LOG_INFO,
                 "%zu migration(s) applied; all migrations have been "
                 "successfully applied",
                 n);
  pg_op_finish(&d->op, ENG_OK);
}

void prisma_deploy_unlock(prisma_deploy_op *d) {
  pg_sess_add(d->s, "release the migration lock",
              "SELECT pg_advisory_unlock(" PRISMA_LOCK_KEY ")", 0, NULL, NULL,
              NULL);
  pg_sess_run(d->s, prisma_unlock_end, d);
}

/* ---- applying one migration ---------------------------------------------- */

static void prisma_apply_next(prisma_deploy_op *d);

static void prisma_logged_end(pg_sess *s, void *ud, int rc) {
  prisma_deploy_op *d = ud;
  if (rc != ENG_OK)
    pg_host->log(d->op.e.call, ENG_LOG_WARN,
                 "could not record the error in %s.logs: %s", PRISMA_TABLE,
                 pg_sess_errmsg(s));
  pg_op_fail(&d->op, ENG_ERR_FAILED,
             "migration `%s` failed to apply (Prisma's P3018): %s; it is "
             "recorded as failed in %s and blocks further deploys: fix the "
             "database, then mark it with prisma.resolve (or `prisma migrate "
             "resolve --rolled-back \"%s\"`: changes undone; `--applied "
             "\"%s\"`: completed by hand) and deploy again",
             d->cur->name, d->script_err, PRISMA_TABLE, d->cur->name,
             d->cur->name);
}

static void prisma_finished_end(pg_sess *s, void *ud, int rc) {
  prisma_deploy_op *d = ud;
  if (rc != ENG_OK) {
    prisma_fail_sess(&d->op, s, rc, "recording the applied migration");
    return;
  }
  json_array_append_new(d->applied_now, json_string(d->cur->name));
  pg_host->log(d->op.e.call, ENG_LOG_INFO, "applied %s", d->cur->name);
  d->next++;
  prisma_apply_next(d);
}

void prisma_script_end(pg_sess *s, void *ud, int rc) {
  prisma_deploy_op *d = ud;
  if (rc == ENG_OK) {
    const char *p[1] = {d->cur_id};
    char *sql = eng_asprintf("UPDATE %s SET finished_at = now(), "
                             "applied_steps_count = applied_steps_count + 1 "
                             "WHERE id = $1",
                             d->ld.table);
    pg_sess_add(s, "record the applied migration", sql, 1, p, NULL, NULL);
    free(sql);
    pg_sess_run(s, prisma_finished_end, d);
    return;
  }
  free(d->script_err);
  d->script_err = eng_xstrdup(pg_sess_errmsg(s));
  PGconn *conn = pg_sess_conn(s);
  if (!conn || PQstatus(conn) != CONNECTION_OK || d->op.e.cancelled) {
    pg_op_fail(&d->op, rc == ENG_ERR_CANCELLED ? rc : ENG_ERR_FAILED,
               "migration `%s` failed to apply: %s; it stays recorded as "
               "started and not finished (failed) in %s: check the "
               "database, then `prisma migrate resolve`",
               d->cur->name, d->script_err, PRISMA_TABLE);
    return;
  }
  /* A script with its own BEGIN may leave the session in a transaction. */
  PGTransactionStatusType ts = PQtransactionStatus(conn);
  if (ts == PQTRANS_INERROR || ts == PQTRANS_INTRANS)
    pg_sess_add(s, "roll back the failed migration's transaction",
                "ROLLBACK", 0, NULL, NULL, NULL);
  char *logs = eng_asprintf("Migration name: %s\n\nDatabase error code: %s"
                            "\n\nDatabase error:\n%s\n",
                            d->cur->name,
                            pg_sess_sqlstate(s)[0] ? pg_sess_sqlstate(s) : "?",
                            d->script_err);
  const char *p[2] = {d->cur_id, logs};
  char *sql =
      eng_asprintf("UPDATE %s SET logs = $2 WHERE id = $1", d->ld.table);
  pg_sess_add(s, "record the failure", sql, 2, p, NULL, NULL);
  free(sql);
  free(logs);
  pg_sess_run(s, prisma_logged_end, d);
}

static void prisma_started_end(pg_sess *s, void *ud, int rc) {
  prisma_deploy_op *d = ud;
  if (rc != ENG_OK) {
    prisma_fail_sess(&d->op, s, rc, "recording the migration's start");
    return;
  }
  if (d->run_script) {
    d->run_script(d);
    return;
  }
  char *label = eng_asprintf("migration %s", d->cur->name);
  pg_sess_add_script(s, label, d->cur->sql, NULL, NULL);
  free(label);
  pg_sess_run(s, prisma_script_end, d);
}

const prisma_mig *prisma_find(const prisma_dir *dir, const char *n) {
  for (size_t i = 0; i < dir->n; i++)
    if (!strcmp(dir->migs[i].name, n)) return &dir->migs[i];
  return NULL;
}

static void prisma_apply_next(prisma_deploy_op *d) {
  if (d->next >= json_array_size(d->st.pending)) {
    prisma_deploy_unlock(d);
    return;
  }
  const char *name = json_string_value(json_array_get(d->st.pending, d->next));
  d->cur = prisma_find(&d->dir, name);
  prisma_uuid4(d->cur_id);
  pg_host->log(d->op.e.call, ENG_LOG_INFO, "applying %s", name);
  const char *p[3] = {d->cur_id, d->cur->sha[0], name};
  char *sql = eng_asprintf("INSERT INTO %s (id, checksum, started_at, "
                           "migration_name, applied_steps_count) "
                           "VALUES ($1, $2, now(), $3, 0)",
                           d->ld.table);
  pg_sess_add(d->s, "record the migration's start", sql, 3, p, NULL, NULL);
  free(sql);
  pg_sess_run(d->s, prisma_started_end, d);
}

/* ---- the table ----------------------------------------------------------- */

static void prisma_deploy_check(prisma_deploy_op *d) {
  if (d->task_run) {
    d->task_run(d);
    return;
  }
  prisma_state_build(&d->st, &d->dir, &d->ld.rows);
  d->have_st = 1;
  if (json_array_size(d->st.failed)) {
    char *m = prisma_failed_message(&d->st);
    pg_op_fail(&d->op, ENG_ERR_FAILED, "%s", m);
    free(m);
    return;
  }
  if (json_array_size(d->st.modified)) {
    char *m = prisma_json_join(d->st.modified);
    pg_host->log(d->op.e.call, ENG_LOG_WARN,
                 "migration.sql edited after it was applied (not applied "
                 "again): %s",
                 m);
    free(m);
  }
  pg_host->log(d->op.e.call, ENG_LOG_INFO,
               "%zu migration(s) found in %s, %zu pending", d->dir.n,
               d->dir.path, json_array_size(d->st.pending));
  prisma_apply_next(d);
}

static void prisma_created_end(pg_sess *s, void *ud, int rc) {
  prisma_deploy_op *d = ud;
  if (rc != ENG_OK) {
    prisma_fail_sess(&d->op, s, rc, "creating " PRISMA_TABLE);
    return;
  }
  d->ld.rows.table_exists = 1;
  prisma_deploy_check(d);
}

static void prisma_loaded_end(pg_sess *s, void *ud, int rc) {
  prisma_deploy_op *d = ud;
  if (rc != ENG_OK) {
    prisma_fail_sess(&d->op, s, rc, "reading " PRISMA_TABLE);
    return;
  }
  if (d->ld.rows.table_exists) {
    prisma_deploy_check(d);
    return;
  }
  if (d->task == PRISMA_MARK_ROLLED_BACK) {
    pg_op_fail(&d->op, ENG_ERR_FAILED,
               "migration `%s` cannot be rolled back because it was never "
               "applied to %s (Prisma's P3011): schema \"%s\" has no %s "
               "table; nothing was changed",
               d->name, pg_sess_display(s), d->schema, PRISMA_TABLE);
    return;
  }
  /* resolve marks what an existing database already has: its objects are
   * expected there */
  if (d->ld.objects > 0 &&
      (d->task == PRISMA_DEPLOY || d->task == PRISMA_REHEARSE)) {
    pg_op_fail(&d->op, ENG_ERR_FAILED,
               "the schema \"%s\" of %s is not empty (%lld objects) but has "
               "no %s table (Prisma's P3005): applying every migration from "
               "the start would collide with what is there. Baseline the "
               "database first: prisma.resolve with `baseline: true` (and "
               "`up_to: NAME`, the last migration it already has), like "
               "`prisma migrate resolve --applied NAME` "
               "(https://pris.ly/d/migrate-baseline)",
               d->schema, pg_sess_display(s), d->ld.objects, PRISMA_TABLE);
    return;
  }
  pg_host->log(d->op.e.call, ENG_LOG_INFO, "creating %s in schema \"%s\"",
               PRISMA_TABLE, d->schema);
  if (!d->ld.schema_exists) {
    char *q = prisma_quote_ident(d->schema);
    char *sql = eng_asprintf("CREATE SCHEMA IF NOT EXISTS %s", q);
    pg_sess_add(s, "create the schema", sql, 0, NULL, NULL, NULL);
    free(sql);
    free(q);
  }
  /* Prisma's DDL (sql-schema-connector, postgres flavour), verbatim. */
  char *sql = eng_asprintf(
      "CREATE TABLE %s (\n"
      "    \"id\"                    VARCHAR(36) PRIMARY KEY NOT NULL,\n"
      "    \"checksum\"              VARCHAR(64) NOT NULL,\n"
      "    \"finished_at\"           TIMESTAMPTZ,\n"
      "    \"migration_name\"        VARCHAR(255) NOT NULL,\n"
      "    \"logs\"                  TEXT,\n"
      "    \"rolled_back_at\"        TIMESTAMPTZ,\n"
      "    \"started_at\"            TIMESTAMPTZ NOT NULL DEFAULT now(),\n"
      "    \"applied_steps_count\"   INTEGER NOT NULL DEFAULT 0\n"
      ");",
      d->ld.table);
  pg_sess_add(s, "create " PRISMA_TABLE, sql, 0, NULL, NULL, NULL);
  free(sql);
  pg_sess_run(s, prisma_created_end, d);
}

static void prisma_deploy_load(prisma_deploy_op *d) {
  /* Migration scripts create unqualified objects in the URL's schema, as
   * Prisma sets search_path to it. */
  char *q = prisma_quote_ident(d->schema);
  const char *p[1] = {q};
  pg_sess_add(d->s, "set search_path",
              "SELECT pg_catalog.set_config('search_path', $1, false)", 1, p,
              NULL, NULL);
  free(q);
  prisma_load_add(d->s, &d->ld, d->schema);
  pg_sess_run(d->s, prisma_loaded_end, d);
}

/* ---- the advisory lock --------------------------------------------------- */

static void prisma_lock_try(prisma_deploy_op *d);

static void prisma_lock_retry(pg_op *op) {
  prisma_lock_try((prisma_deploy_op *)op);
}

static int prisma_lock_res(pg_sess *s, void *ud, PGresult *res) {
  prisma_deploy_op *d = ud;
  (void)s;
  d->locked = PQntuples(res) == 1 && PQgetvalue(res, 0, 0)[0] == 't';
  return ENG_OK;
}

static void prisma_lock_end(pg_sess *s, void *ud, int rc) {
  prisma_deploy_op *d = ud;
  if (rc != ENG_OK) {
    prisma_fail_sess(&d->op, s, rc, "taking the migration lock");
    return;
  }
  if (d->locked) {
    if (d->lock_logged)
      pg_host->log(d->op.e.call, ENG_LOG_INFO,
                   "migration lock taken after %.1f s",
                   (double)(pg_now_ms() - d->t0) / 1000.0);
    prisma_deploy_load(d);
    return;
  }
  int64_t waited = pg_now_ms() - d->t0;
  if (waited >= d->lock_timeout_ms) {
    pg_op_fail(&d->op, ENG_ERR_TIMEOUT,
               "timed out after %.1f s waiting for the migration advisory "
               "lock pg_advisory_lock(%s) on %s: another `prisma migrate "
               "deploy` (or prisma.deploy) is running there; let it finish "
               "(see pg_locks where locktype = 'advisory' and objid = %s) "
               "or raise lock_timeout",
               (double)waited / 1000.0, PRISMA_LOCK_KEY, pg_sess_display(s),
               PRISMA_LOCK_KEY);
    return;
  }
  if (!d->lock_logged) {
    d->lock_logged = 1;
    pg_host->log(d->op.e.call, ENG_LOG_INFO,
                 "waiting for the migration lock (another deploy holds "
                 "advisory lock %s)",
                 PRISMA_LOCK_KEY);
  }
  int64_t left = d->lock_timeout_ms - waited;
  pg_op_timer(&d->op,
              (uint64_t)(left < PRISMA_LOCK_POLL_MS ? left
                                                    : PRISMA_LOCK_POLL_MS),
              prisma_lock_retry);
}

static void prisma_lock_try(prisma_deploy_op *d) {
  pg_sess_add(d->s, "take the migration lock",
              "SELECT pg_try_advisory_lock(" PRISMA_LOCK_KEY ")", 0, NULL,
              prisma_lock_res, d);
  pg_sess_run(d->s, prisma_lock_end, d);
}

/* ---- cli mode ------------------------------------------------------------ */

static void prisma_cli_lines(prisma_deploy_op *d, int all) {
  while (d->out_logged < d->out.len) {
    char *start = d->out.data + d->out_logged;
    char *nl = memchr(start, '\n', d->out.len - d->out_logged);
    if (!nl && !all) return;
    size_t n = nl ? (size_t)(nl - start) : d->out.len - d->out_logged;
    if (n > 0)
      pg_host->log(d->op.e.call, ENG_LOG_INFO, "prisma: %.*s", (int)n, start);
    d->out_logged += n + (nl ? 1 : 0);
  }
}

static void prisma_cli_stdout(pg_child *c, const char *buf, size_t len) {
  prisma_deploy_op *d = c->ud;
  if (d->out.len + len > PRISMA_CLI_MAX_OUT) return;
  eng_strbuf_add(&d->out, buf, len);
  prisma_cli_lines(d, 0);
}

/* Prisma lists what it applied as a tree:
 *   migrations/
 *     └─ 20240101000000_init/
 *       └─ migration.sql */
static void prisma_cli_parse(prisma_deploy_op *d) {
  static const char branch[] = "\xe2\x94\x94\xe2\x94\x80 "; /* "└─ " */
  const char *p = d->out.data;
  while (p && *p) {
    const char *eol = strchr(p, '\n');
    size_t n = eol ? (size_t)(eol - p) : strlen(p);
    const char *b = NULL;
    for (size_t i = 0; i + sizeof branch - 1 <= n; i++)
      if (!memcmp(p + i, branch, sizeof branch - 1)) {
        b = p + i + sizeof branch - 1;
        break;
      }
    if (b) {
      const char *e = p + n;
      while (e > b && (e[-1] == ' ' || e[-1] == '\r')) e--;
      if (e > b && e[-1] == '/') {
        char *name = eng_xmalloc((size_t)(e - b));
        memcpy(name, b, (size_t)(e - b - 1));
        name[e - b - 1] = '\0';
        json_array_append_new(d->applied_now, json_string(name));
        free(name);
      }
    }
    p = eol ? eol + 1 : NULL;
  }
}

static void prisma_cli_exit(pg_child *c) {
  prisma_deploy_op *d = c->ud;
  prisma_cli_lines(d, 1);
  if (c->sig || c->status != 0) {
    char how[128];
    pg_op_fail(&d->op, ENG_ERR_FAILED,
               "prisma migrate deploy failed: %s: %s",
               pg_child_how(c, how, sizeof how),
               c->tail[0] ? c->tail : "(no error output)");
    return;
  }
  if (d->out.data) prisma_cli_parse(d);
  prisma_deploy_outputs(d, 1);
  pg_op_finish(&d->op, ENG_OK);
}

static void prisma_cli_spawn(prisma_deploy_op *d) {
  pg_argv_add(&d->argv, "migrate");
  pg_argv_add(&d->argv, "deploy");
  /* The URL reaches Prisma through its environment, never argv. */
  pg_argv_addf(&d->env, "DATABASE_URL=%s", d->orig_url);
  pg_argv_add(&d->env, "PRISMA_HIDE_UPDATE_MESSAGE=1");
  eng_spawn_opts o;
  memset(&o, 0, sizeof o);
  o.size = sizeof o;
  o.argv = (const char *const *)d->argv.v;
  o.env = (const char *const *)d->env.v;
  o.cwd = d->cwd;
  o.stdin_fd = ENG_STDIO_NULL;
  o.stdout_fd = ENG_STDIO_PIPE;
  d->child.on_stdout = prisma_cli_stdout;
  d->child.on_exit = prisma_cli_exit;
  d->child.ud = d;
  char err[512];
  int rc = pg_child_spawn(&d->child, &d->op, "prisma", &o, err, sizeof err);
  if (rc != ENG_OK)
    pg_op_fail(&d->op, rc, "%s%s", err,
               d->cwd ? "" : "; set `cwd` to the project's directory");
}

/* ---- start --------------------------------------------------------------- */

static void prisma_ident_end(pg_sess *s, void *ud, int rc) {
  prisma_deploy_op *d = ud;
  if (rc != ENG_OK) {
    prisma_fail_sess(&d->op, s, rc, "connecting");
    return;
  }
  if (pg_guard_db(&d->op, &d->id, d->id.database) != ENG_OK) {
    pg_op_finish(&d->op, ENG_ERR_REFUSED);
    return;
  }
  if (d->admit && d->admit(d) != ENG_OK) return;
  if (d->cli) {
    pg_sess_close(s);
    d->s = NULL;
    prisma_cli_spawn(d);
    return;
  }
  d->t0 = pg_now_ms();
  prisma_lock_try(d);
}

static void prisma_deploy_connect(prisma_deploy_op *d) {
  d->s = pg_sess_open(&d->op, d->url);
  pg_ident_add(d->s, &d->id);
  pg_sess_run(d->s, prisma_ident_end, d);
}

static void prisma_deploy_read(void *ud) {
  prisma_deploy_op *d = ud;
  prisma_dir_read(&d->dir);
}

static void prisma_deploy_dir(void *ud) {
  prisma_deploy_op *d = ud;
  if (d->dir.rc != ENG_OK) {
    pg_op_fail(&d->op, d->dir.rc, "%s", d->dir.err);
    return;
  }
  prisma_dir_warn(d->op.e.call, &d->dir);
  prisma_deploy_connect(d);
}

prisma_deploy_op *prisma_deploy_new(eng_call *call, const json_t *params,
                                    prisma_task task, int *rc) {
  const char *orig = pg_url_param(params, "url");
  char *url = NULL, *schema = NULL;
  *rc = prisma_url_prepare(call, orig, &url, &schema);
  if (*rc != ENG_OK) return NULL;
  prisma_deploy_op *d = eng_xcalloc(1, sizeof *d);
  pg_op_init(&d->op, call, prisma_deploy_destroy);
  d->task = task;
  d->url = url;
  d->schema = schema;
  d->orig_url = eng_xstrdup(orig);
  d->lock_timeout_ms = pg_pint(params, "lock_timeout", 10000);
  d->applied_now = json_array();
  d->rolled_back_now = json_array();
  const char *dir = pg_pstr(params, "migrations");
  d->dir.path = eng_xstrdup(dir && *dir ? dir : "prisma/migrations");
  return d;
}

void prisma_deploy_begin(prisma_deploy_op *d) {
  /* rolling back a failed row needs no folder, as with Prisma */
  if (d->cli || d->task == PRISMA_MARK_ROLLED_BACK) {
    prisma_deploy_connect(d);
    return;
  }
  int rc = pg_op_work(&d->op, prisma_deploy_read, prisma_deploy_dir, d);
  if (rc != ENG_OK)
    pg_op_fail(&d->op, rc, "cannot start reading %s", d->dir.path);
}

int prisma_act_deploy(eng_call *call, const json_t *params) {
  const char *mode = pg_pstr(params, "mode");
  int cli = mode && !strcmp(mode, "cli");
  const json_t *argv = json_object_get(params, "cli");
  if (cli && (!json_is_array(argv) || json_array_size(argv) == 0)) {
    pg_host->fail(call, "parameter 'cli' must be a non-empty list such as "
                        "[npx, --no, prisma]");
    return ENG_ERR_INVALID;
  }
  int rc;
  prisma_deploy_op *d = prisma_deploy_new(call, params, PRISMA_DEPLOY, &rc);
  if (!d) return rc;
  d->cli = cli;
  if (cli) {
    const char *cwd = pg_pstr(params, "cwd");
    d->cwd = cwd && *cwd ? eng_xstrdup(cwd) : NULL;
    size_t i;
    json_t *v;
    json_array_foreach(argv, i, v) {
      if (json_is_string(v))
        pg_argv_add(&d->argv, json_string_value(v));
      else
        pg_argv_add(&d->argv, "");
    }
  }
  prisma_deploy_begin(d);
  return ENG_OK;
}
