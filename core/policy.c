/* policy.c - the guard policy applied to one target: protected databases,
 * volumes, buckets and instances, ownership of destructive actions and
 * forbidden commands. The policy itself (patterns resolved from the
 * runbook) is compiled by guards.c; here it is only data. Every decision is
 * recorded (report and audit log); a refusal happens before the action has
 * any side effect. */
#include "run.h"

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
  eng__run_audit(r, !strcmp(decision, "refuse") ? "guard.refuse" : "guard.pass",
                 json_deep_copy(d));
  json_array_append_new(r->guard_log, d);
}

static int refuse(eng__run *r, const char *step, const char *rule,
                  const char *target, const char *evidence, const char *msg) {
  eng__run_log(r, step, ENG_LOG_ERROR, msg);
  free(r->last_refusal);
  r->last_refusal = eng__redact(r->redact, msg);
  record(r, step, "refuse", rule, target, evidence, msg);
  return ENG_ERR_REFUSED;
}

int eng__policy_refuse(eng__run *r, const char *step, const char *rule,
                       const char *target, const char *msg) {
  return refuse(r, step, rule, target, NULL, msg);
}

/* Patterns of a guards list. NULL, with *why set (malloc'd), when an
 * entry could not be resolved: the caller refuses, since a protection that
 * silently vanished is no protection. */
static json_t *patterns(eng__run *r, const char *list, char **why) {
  const char *broken = json_string_value(json_object_get(r->policy.broken, list));
  if (broken) {
    *why = eng__xstrdup(broken);
    return NULL;
  }
  json_t *p = json_object_get(r->policy.lists, list);
  return p ? json_incref(p) : json_array();
}

static int unresolved(eng__run *r, const char *step, const char *list,
                      const char *target, char *why) {
  char *msg = eng__asprintf("refused: %s; fix the guard (a protection that "
                            "cannot be evaluated fails safe)", why);
  int rc = refuse(r, step, list, target, NULL, msg);
  free(msg);
  free(why);
  return rc;
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
  char *why = NULL;
  json_t *pats = patterns(r, "protected_databases", &why);
  if (!pats) {
    free(why);
    return "(an entry that could not be resolved)";
  }
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

/* How commands compare: lower-case, quotes and backslashes removed
 * (a backslash-newline is a space), white space collapsed. */
static char *normalize(const char *s) {
  eng__buf b = {0};
  bool space = false;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '\\') {
      if (s[1] == '\n') {
        space = b.len > 0;
        s++;
      }
      continue;
    }
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

/* Split a normalized command line into segments (; && || | & newline and
 * parentheses end a command) of space-separated tokens. */
static json_t *segments(const char *norm) {
  json_t *segs = json_array();
  json_t *cur = json_array();
  eng__buf tok = {0};
#define FLUSH_TOK()                                                        \
  do {                                                                     \
    if (tok.len) json_array_append_new(cur, json_string(tok.data));        \
    eng__buf_free(&tok);                                                   \
  } while (0)
#define FLUSH_SEG()                                                        \
  do {                                                                     \
    FLUSH_TOK();                                                           \
    if (json_array_size(cur)) json_array_append(segs, cur);                \
    json_decref(cur);                                                      \
    cur = json_array();                                                    \
  } while (0)
  for (const char *p = norm; *p; p++) {
    if (*p == ';' || *p == '|' || *p == '&' || *p == '(' || *p == ')' ||
        *p == '\n')
      FLUSH_SEG();
    else if (*p == ' ')
      FLUSH_TOK();
    else
      eng__buf_add(&tok, p, 1);
  }
  FLUSH_SEG();
  json_decref(cur);
#undef FLUSH_TOK
#undef FLUSH_SEG
  return segs;
}

/* The rule's tokens appear in this order in the segment (other tokens,
 * such as options and their values, may stand between them). */
static bool rule_matches(json_t *seg, json_t *rule) {
  size_t k = 0, n = json_array_size(rule);
  if (!n) return false;
  for (size_t i = 0; i < json_array_size(seg) && k < n; i++) {
    const char *t = json_string_value(json_array_get(seg, i));
    const char *want = json_string_value(json_array_get(rule, k));
    /* a program may be named by path: /usr/bin/dropdb, npx prisma */
    const char *base = strrchr(t, '/');
    if (!strcmp(t, want) || (k == 0 && base && !strcmp(base + 1, want))) k++;
  }
  return k == n;
}

static bool is_redirect(const char *t) {
  return strchr(t, '>') != NULL || t[0] == '<';
}

/* Databases named by `dropdb ...` and `drop database [if exists] X`. */
static void dropped_dbs(const char *norm, json_t *segs, json_t *out) {
  static const char *const with_value[] = {"-u", "-h", "-p", "--username",
                                           "--host", "--port",
                                           "--maintenance-db", NULL};
  size_t si;
  json_t *seg;
  json_array_foreach(segs, si, seg) {
    size_t n = json_array_size(seg);
    for (size_t i = 0; i < n; i++) {
      const char *t = json_string_value(json_array_get(seg, i));
      const char *base = strrchr(t, '/');
      if (strcmp(base ? base + 1 : t, "dropdb")) continue;
      for (size_t k = i + 1; k < n; k++) {
        const char *a = json_string_value(json_array_get(seg, k));
        if (is_redirect(a)) {
          if (!strcmp(a, ">") || !strcmp(a, ">>") || !strcmp(a, "<") ||
              (strlen(a) == 2 && a[1] == '>'))
            k++; /* its target */
          continue;
        }
        if (a[0] == '-') {
          for (size_t w = 0; with_value[w]; w++)
            if (!strcmp(a, with_value[w])) k++;
          continue;
        }
        json_array_append_new(out, json_string(a));
      }
    }
  }
  for (const char *p = norm; (p = strstr(p, "drop database")) != NULL; p += 13) {
    const char *q = p + 13;
    while (*q == ' ') q++;
    if (!strncmp(q, "if exists", 9)) q += 9;
    while (*q == ' ') q++;
    const char *e = q;
    while (*e && *e != ' ' && *e != ';' && *e != ')' && *e != '(') e++;
    if (e > q) {
      char *name = eng__xstrndup(q, (size_t)(e - q));
      json_array_append_new(out, json_string(name));
      free(name);
    }
  }
}

static json_t *tokens(const char *rule) {
  char *nr = normalize(rule);
  json_t *segs = segments(nr);
  free(nr);
  json_t *t = json_incref(json_array_get(segs, 0));
  json_decref(segs);
  return t ? t : json_array();
}

static int check_command(eng__run *r, const char *step, const char *cmd) {
  char *norm = normalize(cmd);
  json_t *segs = segments(norm);
  int rc = ENG_OK;
  char *why = NULL;
  json_t *extra = patterns(r, "forbidden_commands", &why);
  if (!extra) {
    free(norm);
    json_decref(segs);
    return unresolved(r, step, "forbidden_commands", cmd, why);
  }
  size_t nb = 0;
  while (builtin_forbidden[nb]) nb++;
  size_t n = nb + json_array_size(extra);
  for (size_t i = 0; i < n && rc == ENG_OK; i++) {
    const char *f = i < nb ? builtin_forbidden[i]
                           : json_string_value(json_array_get(extra, i - nb));
    json_t *rule = tokens(f);
    size_t si;
    json_t *seg;
    bool hit = false;
    json_array_foreach(segs, si, seg) if (rule_matches(seg, rule)) hit = true;
    /* a rule given as a path or fragment also matches as plain text */
    if (!hit && i >= nb) {
      char *nf = normalize(f);
      hit = *nf && strstr(norm, nf) != NULL;
      free(nf);
    }
    json_decref(rule);
    if (hit) {
      char *msg = eng__asprintf(
          "refused: the command contains forbidden '%s' (%s); this rule "
          "cannot be switched off",
          f, i < nb ? "built-in rule" : "guards.forbidden_commands");
      rc = refuse(r, step, "forbidden_commands", cmd, NULL, msg);
      free(msg);
    }
  }
  json_decref(extra);
  if (rc == ENG_OK) {
    json_t *dbs = json_array();
    dropped_dbs(norm, segs, dbs);
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
  json_decref(segs);
  free(norm);
  if (rc == ENG_OK) record(r, step, "pass", "forbidden_commands", cmd, NULL, NULL);
  return rc;
}

int eng__policy_check(eng__run *r, const char *step, eng_target kind,
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
  char *why = NULL;
  json_t *pats = patterns(r, list, &why);
  if (!pats) return unresolved(r, step, list, value, why);
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

