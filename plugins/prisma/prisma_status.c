/*
 * prisma_status.c - prisma.status: the migrations folder against the
 * database's _prisma_migrations table (what `prisma migrate status` says,
 * plus applied migrations whose file was edited afterwards).
 *
 * Also the loading of the table's state that deploy shares.
 */
#include "prisma_int.h"

#include <stdlib.h>
#include <string.h>

/* ---- loading ------------------------------------------------------------- */

static int prisma_rows_res(pg_sess *s, void *ud, PGresult *res) {
  prisma_load *ld = ud;
  (void)s;
  prisma_rows_free(&ld->rows);
  prisma_rows_load(&ld->rows, res);
  return ENG_OK;
}

static int prisma_exists_res(pg_sess *s, void *ud, PGresult *res) {
  prisma_load *ld = ud;
  if (PQntuples(res) != 1) {
    pg_sess_seterr(s, "catalog query returned no row");
    return ENG_ERR_PROTOCOL;
  }
  ld->schema_exists = PQgetvalue(res, 0, 0)[0] == 't';
  ld->rows.table_exists = PQgetvalue(res, 0, 1)[0] == 't';
  ld->objects = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
  if (ld->rows.table_exists) {
    char *sql = prisma_rows_sql(ld->table);
    pg_sess_add(s, "read " PRISMA_TABLE, sql, 0, NULL, prisma_rows_res, ld);
    free(sql);
  }
  return ENG_OK;
}

void prisma_load_add(pg_sess *s, prisma_load *ld, const char *schema) {
  ld->schema = schema;
  free(ld->table);
  ld->table = prisma_table_ref(schema);
  prisma_rows_free(&ld->rows);
  const char *params[2] = {schema, ld->table};
  /* Objects of the schema, as Prisma's "is the schema empty" (P3005):
   * relations and enum types. */
  pg_sess_add(s, "look for " PRISMA_TABLE,
              "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace "
              "WHERE nspname = $1), "
              "pg_catalog.to_regclass($2) IS NOT NULL, "
              "(SELECT count(*) FROM pg_catalog.pg_class c "
              "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
              "WHERE n.nspname = $1 AND c.relkind IN "
              "('r','p','v','m','f','S')) + "
              "(SELECT count(*) FROM pg_catalog.pg_type t "
              "JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
              "WHERE n.nspname = $1 AND t.typtype = 'e')",
              2, params, prisma_exists_res, ld);
}

void prisma_load_free(prisma_load *ld) {
  free(ld->table);
  prisma_rows_free(&ld->rows);
  memset(ld, 0, sizeof *ld);
}

void prisma_fail_sess(pg_op *op, pg_sess *s, int rc, const char *what) {
  pg_op_fail(op, rc, "%s on %s failed: %s; %s", what, pg_sess_display(s),
             pg_sess_errmsg(s), pg_conn_hint(rc));
}

/* ---- status -------------------------------------------------------------- */

typedef struct prisma_status_op {
  pg_op op;
  char *url;
  char *schema;
  int require;
  prisma_dir dir;
  prisma_load ld;
} prisma_status_op;

static void prisma_status_destroy(pg_op *op) {
  prisma_status_op *t = (prisma_status_op *)op;
  free(t->url);
  free(t->schema);
  prisma_dir_free(&t->dir);
  prisma_load_free(&t->ld);
  free(t);
}

static void prisma_status_end(pg_sess *s, void *ud, int rc) {
  prisma_status_op *t = ud;
  if (rc != ENG_OK) {
    prisma_fail_sess(&t->op, s, rc, "reading " PRISMA_TABLE);
    return;
  }
  eng_call *call = t->op.e.call;
  if (!t->ld.rows.table_exists)
    pg_host->log(call, ENG_LOG_INFO,
                 "no %s table in schema \"%s\": every migration is pending",
                 PRISMA_TABLE, t->schema);
  prisma_state st;
  prisma_state_build(&st, &t->dir, &t->ld.rows);
  int up = json_array_size(st.pending) == 0 &&
           json_array_size(st.failed) == 0 &&
           json_array_size(st.modified) == 0;
  pg_host->output(call, "applied", json_incref(st.applied));
  pg_host->output(call, "pending", json_incref(st.pending));
  pg_host->output(call, "failed", json_incref(st.failed));
  pg_host->output(call, "modified", json_incref(st.modified));
  pg_host->output(call, "missing_locally", json_incref(st.missing));
  pg_host->output(call, "up_to_date", json_boolean(up));
  if (json_array_size(st.missing)) {
    char *m = prisma_json_join(st.missing);
    pg_host->log(call, ENG_LOG_WARN,
                 "applied to the database but missing from %s: %s",
                 t->dir.path, m);
    free(m);
  }
  if (json_array_size(st.modified)) {
    char *m = prisma_json_join(st.modified);
    pg_host->log(call, ENG_LOG_WARN,
                 "migration.sql edited after it was applied (checksum "
                 "differs from %s): %s",
                 PRISMA_TABLE, m);
    free(m);
  }
  pg_host->log(call, ENG_LOG_INFO,
               "%zu migration(s) in %s: %zu applied, %zu pending, %zu failed, "
               "%zu modified",
               t->dir.n, t->dir.path, json_array_size(st.applied),
               json_array_size(st.pending), json_array_size(st.failed),
               json_array_size(st.modified));
  if (t->require && !up) {
    eng_strbuf b = {0};
    eng_strbuf_addf(&b, "the database %s is not up to date with %s:",
                    pg_sess_display(s), t->dir.path);
    const char *kinds[3] = {"pending", "failed", "modified"};
    json_t *lists[3] = {st.pending, st.failed, st.modified};
    for (int i = 0; i < 3; i++) {
      if (!json_array_size(lists[i])) continue;
      char *m = prisma_json_join(lists[i]);
      eng_strbuf_addf(&b, " %s: %s;", kinds[i], m);
      free(m);
    }
    if (json_array_size(st.failed))
      eng_strbuf_adds(&b, " resolve failed migrations with `prisma migrate "
                          "resolve --rolled-back NAME` or `--applied NAME`;");
    if (json_array_size(st.pending))
      eng_strbuf_adds(&b, " apply pending ones with prisma.deploy;");
    if (json_array_size(st.modified))
      eng_strbuf_adds(&b, " an edited migration.sql must be restored to what "
                          "was applied (or shipped as a new migration);");
    b.data[b.len - 1] = '\0';
    pg_op_fail(&t->op, ENG_ERR_FAILED, "%s", b.data);
    eng_strbuf_free(&b);
    prisma_state_free(&st);
    return;
  }
  prisma_state_free(&st);
  pg_op_finish(&t->op, ENG_OK);
}

static void prisma_status_read(void *ud) {
  prisma_status_op *t = ud;
  prisma_dir_read(&t->dir);
}

static void prisma_status_dir(void *ud) {
  prisma_status_op *t = ud;
  if (t->dir.rc != ENG_OK) {
    pg_op_fail(&t->op, t->dir.rc, "%s", t->dir.err);
    return;
  }
  prisma_dir_warn(t->op.e.call, &t->dir);
  pg_sess *s = pg_sess_open(&t->op, t->url);
  prisma_load_add(s, &t->ld, t->schema);
  pg_sess_run(s, prisma_status_end, t);
}

int prisma_act_status(eng_call *call, const json_t *params) {
  char *url = NULL, *schema = NULL;
  int rc = prisma_url_prepare(call, pg_url_param(params, "url"), &url,
                              &schema);
  if (rc != ENG_OK) return rc;
  prisma_status_op *t = eng_xcalloc(1, sizeof *t);
  pg_op_init(&t->op, call, prisma_status_destroy);
  t->url = url;
  t->schema = schema;
  t->require = pg_pbool(params, "require_up_to_date", 0);
  const char *dir = pg_pstr(params, "migrations");
  t->dir.path = eng_xstrdup(dir && *dir ? dir : "prisma/migrations");
  rc = pg_op_work(&t->op, prisma_status_read, prisma_status_dir, t);
  if (rc != ENG_OK) {
    /* nothing is outstanding: finish reports the failure */
    pg_op_fail(&t->op, rc, "cannot start reading %s", t->dir.path);
  }
  return ENG_OK;
}
