/* guards.c - fail-safe rules (SPEC section 5): protected targets, ownership
 * of destructive actions, forbidden commands, `require` and Lua checks.
 * Every decision is recorded (report and audit log); a refusal happens
 * before the action has any side effect. */
#include "registry.h"
#include "scheduler.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Always on; a runbook can add, never remove. */
static const char *const builtin_forbidden[] = {
    "prisma migrate reset", "prisma migrate dev",
    "prisma db push --accept-data-loss", "docker compose down -v",
    "docker-compose down -v", "docker compose down --volumes",
    "docker-compose down --volumes", NULL};

static const char *const list_of[] = {
    [ENG_TARGET_DATABASE] = "protected_databases",
    [ENG_TARGET_VOLUME] = "protected_volumes",
    [ENG_TARGET_CONTAINER] = "protected_volumes",
    [ENG_TARGET_BUCKET] = "protected_buckets",
    [ENG_TARGET_INSTANCE] = "protected_instances"};

static const char *const kind_of[] = {
    [ENG_TARGET_DATABASE] = "database", [ENG_TARGET_VOLUME] = "volume",
    [ENG_TARGET_CONTAINER] = "container", [ENG_TARGET_BUCKET] = "object",
    [ENG_TARGET_INSTANCE] = "instance"};

static void record(eng__run *r, const char *step, const char *decision,
                   const char *rule, const char *target, const char *evidence,
                   const char *detail) {
  json_t *d = json_pack("{s:s, s:s, s:s?, s:s?, s:s?, s:s?}", "step",
                        step ? step : "", "decision", decision, "rule", rule,
                        "target", target, "evidence", evidence, "message",
                        detail);
  eng__redact_json(r->redact, d);
  json_array_append(r->guard_log, d);
  eng__run_audit(r, !strcmp(decision, "refuse") ? "guard.refuse" : "guard.pass",
                 d);
}

static int refuse(eng__run *r, const char *step, const char *rule,
                  const char *target, const char *evidence, const char *msg) {
  eng__run_log(r, step, ENG_LOG_ERROR, msg);
  free(r->last_refusal);
  r->last_refusal = eng__redact(r->redact, msg);
  record(r, step, "refuse", rule, target, evidence, msg);
  return ENG_ERR_REFUSED;
}

/* Patterns of a guards list, rendered (they may use ${params...}). */
static json_t *patterns(eng__run *r, const char *list) {
  json_t *out = json_array();
  eng__node *pl = eng__node_get(r->rb->guards, list);
  for (size_t i = 0; pl && pl->kind == ENG__N_SEQ && i < pl->n; i++) {
    char err[512];
    json_t *v = eng__tpl_render(r->L, pl->vals[i], err, sizeof err);
    if (json_is_string(v)) json_array_append(out, v);
    json_decref(v);
  }
  return out;
}

static const char *match_any(json_t *pats, const char *const *cands) {
  size_t i;
  json_t *p;
  json_array_foreach(pats, i, p) {
    for (size_t k = 0; cands[k]; k++)
      if (eng__glob(json_string_value(p), cands[k])) return json_string_value(p);
  }
  return NULL;
}

/* A database name is protected? (for dropdb / DROP DATABASE in commands) */
static const char *db_protected(eng__run *r, const char *name) {
  json_t *pats = patterns(r, "protected_databases");
  const char *cands[] = {name, NULL};
  const char *hit = match_any(pats, cands);
  char *copy = hit ? eng__xstrdup(hit) : NULL;
  json_decref(pats);
  if (!copy) return NULL;
  /* keep the pattern alive for the caller */
  static char buf[256];
  snprintf(buf, sizeof buf, "%s", copy);
  free(copy);
  return buf;
}

/* Lowercase, whitespace collapsed, quotes removed: how commands compare. */
static char *normalize(const char *s) {
  eng__buf b = {0};
  bool space = false;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\'' || c == '`') continue;
    if (isspace(c)) {
      space = b.len > 0;
      continue;
    }
    if (space) eng__buf_add(&b, " ", 1);
    space = false;
    char lc = (char)tolower(c);
    eng__buf_add(&b, &lc, 1);
  }
  return eng__buf_steal(&b);
}

/* Find the database a `dropdb ...` or `drop database [if exists] X` names. */
static void dropped_dbs(const char *norm, json_t *out) {
  for (const char *p = norm; (p = strstr(p, "dropdb")) != NULL; p += 6) {
    if (p != norm && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) continue;
    const char *q = p + 6;
    char *last = NULL;
    while (*q == ' ') {
      q++;
      const char *e = q;
      while (*e && *e != ' ' && *e != ';' && *e != '&' && *e != '|') e++;
      if (e == q) break;
      bool opt = *q == '-';
      /* options that take a value */
      if (opt && (!strncmp(q, "-u", 2) || !strncmp(q, "-h", 2) ||
                  !strncmp(q, "-p", 2) || !strncmp(q, "--maintenance-db", 16)) &&
          (size_t)(e - q) == 2) {
        q = e;
        while (*q == ' ') q++;
        while (*q && *q != ' ') q++;
        continue;
      }
      if (!opt) {
        free(last);
        last = eng__xstrndup(q, (size_t)(e - q));
      }
      q = e;
      if (*q != ' ') break;
    }
    if (last) json_array_append_new(out, json_string(last));
    free(last);
  }
  for (const char *p = norm; (p = strstr(p, "drop database")) != NULL; p += 13) {
    const char *q = p + 13;
    while (*q == ' ') q++;
    if (!strncmp(q, "if exists", 9)) q += 9;
    while (*q == ' ') q++;
    const char *e = q;
    while (*e && *e != ' ' && *e != ';' && *e != ')') e++;
    if (e > q) {
      char *name = eng__xstrndup(q, (size_t)(e - q));
      json_array_append_new(out, json_string(name));
      free(name);
    }
  }
}

static int check_command(eng__run *r, const char *step, const char *cmd) {
  char *norm = normalize(cmd);
  int rc = ENG_OK;
  json_t *extra = patterns(r, "forbidden_commands");
  size_t nb = 0;
  while (builtin_forbidden[nb]) nb++;
  size_t n = nb + json_array_size(extra);
  for (size_t i = 0; i < n; i++) {
    const char *f = i < nb ? builtin_forbidden[i]
                           : json_string_value(json_array_get(extra, i - nb));
    if (!f) continue;
    char *nf = normalize(f);
    bool hit = *nf && strstr(norm, nf) != NULL;
    if (hit) {
      char *msg = eng__asprintf(
          "refused: the command contains forbidden '%s' (%s); this rule "
          "cannot be switched off",
          f, i < nb ? "built-in rule" : "guards.forbidden_commands");
      rc = refuse(r, step, "forbidden_commands", cmd, NULL, msg);
      free(msg);
    }
    free(nf);
    if (rc != ENG_OK) break;
  }
  json_decref(extra);
  if (rc == ENG_OK) {
    json_t *dbs = json_array();
    dropped_dbs(norm, dbs);
    size_t i;
    json_t *d;
    json_array_foreach(dbs, i, d) {
      const char *pat = db_protected(r, json_string_value(d));
      if (!pat) continue;
      char *msg = eng__asprintf(
          "refused: the command drops database '%s', protected by "
          "guards.protected_databases pattern '%s'",
          json_string_value(d), pat);
      rc = refuse(r, step, "forbidden_commands", cmd, json_string_value(d), msg);
      free(msg);
      break;
    }
    json_decref(dbs);
  }
  free(norm);
  if (rc == ENG_OK) record(r, step, "pass", "forbidden_commands", cmd, NULL, NULL);
  return rc;
}

int eng__run_guard_target(eng__run *r, const char *step, eng_target kind,
                          const char *value, const char *evidence,
                          eng_side_effect side) {
  if (!value) return ENG_OK;
  if (kind == ENG_TARGET_COMMAND) return check_command(r, step, value);
  const char *list = (unsigned)kind < sizeof list_of / sizeof *list_of
                         ? list_of[kind] : NULL;
  if (!list) return ENG_OK;
  const char *name = value;
  if (kind == ENG_TARGET_DATABASE && strrchr(value, '/'))
    name = strrchr(value, '/') + 1;
  /* Protection is about losing data or service: reading a protected
   * database (a backup of production) is allowed; creating is checked for a
   * named object (restore into "prod" by mistake), not for the server
   * connection it goes through. */
  bool conn = kind == ENG_TARGET_DATABASE &&
              (strstr(value, "://") || strchr(value, '='));
  if (conn) {
    /* a connection names a server, not the object acted on: the action
     * checks its real target with the server's identity at run time */
    record(r, step, "pass", list, value, evidence,
           "connection; the action checks its target with the server identity");
    return ENG_OK;
  }
  bool applies = side == ENG_SIDE_DESTRUCTIVE || side == ENG_SIDE_DISRUPTIVE ||
                 side == ENG_SIDE_CREATES;
  if (!applies) {
    record(r, step, "pass", list, value, evidence, "read-only use");
    return ENG_OK;
  }
  json_t *pats = patterns(r, list);
  const char *cands[] = {value, name, evidence, NULL};
  const char *hit = match_any(pats, cands);
  if (hit) {
    char *msg = eng__asprintf(
        "refused: %s '%s' is protected by guards.%s pattern '%s'%s%s%s; "
        "nothing was done (protection cannot be overridden by flags)",
        kind_of[kind], value, list, hit, evidence ? " (server identity " : "",
        evidence ? evidence : "", evidence ? ")" : "");
    int rc = refuse(r, step, list, value, evidence, msg);
    free(msg);
    json_decref(pats);
    return rc;
  }
  json_decref(pats);
  if (side == ENG_SIDE_DESTRUCTIVE && !r->opts->allow_destructive &&
      !r->static_check &&
      !eng__run_journal_owned(r, kind_of[kind], value) &&
      !(kind == ENG_TARGET_DATABASE && eng__run_journal_owned(r, kind_of[kind], name))) {
    char *msg = eng__asprintf(
        "refused: destructive action on %s '%s', which this run did not "
        "create; pass --allow-destructive if that is intended",
        kind_of[kind], value);
    int rc = refuse(r, step, "ownership", value, evidence, msg);
    free(msg);
    return rc;
  }
  record(r, step, "pass", list, value, evidence, NULL);
  return ENG_OK;
}

/* Before a step starts: `require` and Lua `checks`. */
int eng__guards_before_step(eng__run *r, size_t i) {
  eng__step *s = &r->rb->steps[i];
  eng__node *req = eng__node_get(r->rb->guards, "require");
  for (size_t k = 0; req && req->kind == ENG__N_SEQ && k < req->n; k++) {
    eng__node *before = eng__node_get(req->vals[k], "before");
    eng__node *need = eng__node_get(req->vals[k], "step");
    if (!before || !need || strcmp(before->str, s->id)) continue;
    eng__step *ns = eng__runbook_step(r->rb, need->str);
    if (!ns || r->st[ns->idx].status != ENG__S_OK) {
      char *msg = eng__asprintf(
          "refused: guards.require says step '%s' must have ended ok before "
          "'%s' starts (it is %s)",
          need->str, s->id, ns ? eng__status_name(r->st[ns->idx].status) : "missing");
      int rc = refuse(r, s->id, "require", need->str, NULL, msg);
      free(msg);
      return rc;
    }
  }
  eng__node *checks = eng__node_get(r->rb->guards, "checks");
  for (size_t k = 0; checks && checks->kind == ENG__N_SEQ && k < checks->n; k++) {
    eng__node *that = eng__node_get(checks->vals[k], "that");
    eng__node *m = eng__node_get(checks->vals[k], "message");
    if (!that || that->kind != ENG__N_SCALAR) continue;
    int ref;
    char err[1024];
    json_t *res = NULL;
    const char *code = that->str;
    bool ok = false;
    char *why = NULL;
    if (eng__lua_compile(r->L, code, ENG__LUA_EXPR, r->rb->file, that->line,
                         &ref, err, sizeof err) != ENG_OK ||
        eng__lua_eval(r->L, ref, NULL, &res, err, sizeof err) != ENG_OK) {
      why = eng__asprintf("raised an error: %s", err);
    } else {
      json_t *v = json_array_get(res, 0);
      ok = v && !json_is_false(v) && !json_is_null(v);
    }
    json_decref(res);
    if (!ok) {
      char *msg = eng__asprintf(
          "refused: guards.checks[%zu] (%s) %s%s%s", k, code,
          why ? why : "is false", m && m->kind == ENG__N_SCALAR ? ": " : "",
          m && m->kind == ENG__N_SCALAR ? m->str : "");
      int rc = refuse(r, s->id, "checks", code, NULL, msg);
      free(msg);
      free(why);
      return rc;
    }
  }
  return ENG_OK;
}

/* Is `need` an ancestor of step i (so `require` can hold)? */
static bool ancestor(eng__runbook *rb, size_t i, size_t need, int depth) {
  if (depth > 10000) return false;
  for (size_t k = 0; k < rb->steps[i].n_deps; k++) {
    size_t d = rb->steps[i].deps[k];
    if (d == need || ancestor(rb, d, need, depth + 1)) return true;
  }
  return false;
}

/* Plan-time: `require` rules the DAG cannot guarantee. */
int eng__guards_static(eng__run *r, size_t i, FILE *out) {
  eng__step *s = &r->rb->steps[i];
  eng__node *req = eng__node_get(r->rb->guards, "require");
  for (size_t k = 0; req && req->kind == ENG__N_SEQ && k < req->n; k++) {
    eng__node *before = eng__node_get(req->vals[k], "before");
    eng__node *need = eng__node_get(req->vals[k], "step");
    if (!before || !need || strcmp(before->str, s->id)) continue;
    eng__step *ns = eng__runbook_step(r->rb, need->str);
    if (!ns || ns->is_finally || s->is_finally ||
        !ancestor(r->rb, i, ns->idx, 0)) {
      if (out)
        fprintf(out, "      guard require: '%s' must end ok before '%s', but "
                     "'%s' does not depend on it  [REFUSED]\n",
                need->str, s->id, s->id);
      return ENG_ERR_REFUSED;
    }
  }
  return ENG_OK;
}
