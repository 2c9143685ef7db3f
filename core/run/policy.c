/* policy.c - the guard policy applied to one target: protected databases,
 * volumes, buckets and instances, ownership of destructive actions and
 * forbidden commands. The policy itself (patterns resolved from the
 * runbook) is compiled by guards.c; here it is only data. A command is read
 * through shell/: forbidden commands are matched on the lexer's words (its
 * guard reading) and on the commands the analyser read (variables
 * expanded, bodies of sh -c and eval), its targets are the analyser's
 * findings. Every decision
 * is recorded (report and audit log); a refusal happens before the action
 * has any side effect. */
#include "run/run.h"
#include "shell/shell.h"
#include "sql/sql.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Always on; a runbook can add, never remove. */
static const char *const builtin_forbidden[] = {
    "prisma migrate reset", "prisma migrate dev",
    "prisma db push --accept-data-loss", "docker compose down -v",
    "docker-compose down -v", "docker compose down --volumes",
    "docker-compose down --volumes", NULL};

static const char *const list_of[] = {
    [ENG_TARGET_FILE] = "protected_paths",
    [ENG_TARGET_DATABASE] = "protected_databases",
    [ENG_TARGET_VOLUME] = "protected_volumes",
    [ENG_TARGET_CONTAINER] = "protected_volumes",
    [ENG_TARGET_BUCKET] = "protected_buckets",
    [ENG_TARGET_INSTANCE] = "protected_instances",
    /* a snapshot is protected by its id or by its instance's (evidence) */
    [ENG_TARGET_SNAPSHOT] = "protected_instances"};

static const char *const kind_of[] = {
    [ENG_TARGET_FILE] = "path",
    [ENG_TARGET_DATABASE] = "database", [ENG_TARGET_VOLUME] = "volume",
    [ENG_TARGET_CONTAINER] = "container", [ENG_TARGET_BUCKET] = "object",
    [ENG_TARGET_INSTANCE] = "instance", [ENG_TARGET_SNAPSHOT] = "snapshot"};

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

/* The rule's words appear in this order in the command (other words,
 * such as options and their values, may stand between them). */
static bool rule_matches(const eng__cmd_words *cmd, const eng__cmd_words *rule) {
  size_t k = 0;
  if (!rule->n) return false;
  for (size_t i = 0; i < cmd->n && k < rule->n; i++) {
    const char *t = cmd->w[i].s;
    const char *want = rule->w[k].s;
    /* a program may be named by path: /usr/bin/dropdb, npx prisma */
    const char *base = strrchr(t, '/');
    if (!strcasecmp(t, want) || (k == 0 && base && !strcasecmp(base + 1, want)))
      k++;
  }
  return k == rule->n;
}

/* Does forbidden rule f hit the command, read as the guards read commands
 * (shell/shell.h's ENG_CMD_GUARD), or as the analyser read what runs
 * (variables expanded, sh -c and eval bodies)? The rule is its first
 * command; as_text: also when the rule is a fragment of the command's text
 * (a rule given as a path or fragment). */
static bool forbidden(const eng__cmd_lexed *line, const eng__cmd_analysis *a,
                      const char *f, bool as_text) {
  static const eng__cmd_words none = {0};
  eng__cmd_lexed rule;
  eng__cmd_lex(f, ENG_CMD_RULE, NULL, &rule);
  const eng__cmd_words *words = rule.n ? &rule.cmd[0] : &none;
  bool hit = false;
  for (size_t i = 0; i < line->n && !hit; i++)
    hit = rule_matches(&line->cmd[i], words);
  for (size_t i = 0; a && i < a->ncmd && !hit; i++)
    hit = rule_matches(&a->cmd[i], words);
  if (!hit && as_text) hit = *rule.text && strstr(line->text, rule.text);
  eng__cmd_lexed_free(&rule);
  return hit;
}

static bool path_protected(const char *pat, const char *path) {
  if (eng__glob(pat, path)) return true;
  size_t pl = strlen(pat), ql = strlen(path);
  while (pl > 1 && (pat[pl - 1] == '/' || pat[pl - 1] == '*')) pl--;
  /* a path under a protected directory, or a directory holding one */
  if (ql > pl && !strncmp(path, pat, pl) && path[pl] == '/') return true;
  while (ql > 1 && path[ql - 1] == '/') ql--;
  return pl > ql && !strncmp(pat, path, ql) && pat[ql] == '/';
}

static const char *const side_word[] = {"reads", "creates", "destroys",
                                        "disrupts", "calls out to",
                                        "maintains"};

/* What the analyser understood of a command, held to the policy. */
static int check_findings(eng__run *r, const char *step, const char *cmd,
                          const eng__cmd_analysis *a) {
  int rc = ENG_OK;
  for (size_t i = 0; i < a->n && rc == ENG_OK; i++) {
    eng__cmd_finding *f = &a->f[i];
    char *ev = eng__asprintf("%s: %s", f->tool, f->what);
    if (f->side == ENG_SIDE_READ_ONLY || f->side == ENG_SIDE_MAINTENANCE) {
      record(r, step, "pass", "commands", f->target ? f->target : cmd, ev,
             f->side == ENG_SIDE_READ_ONLY
                 ? "read-only use"
                 : "maintenance (changes no data): allowed on protected targets");
    } else if (f->kind == ENG_TARGET_FILE) {
      char *why = NULL;
      json_t *pats = patterns(r, "protected_paths", &why);
      if (!pats) {
        rc = unresolved(r, step, "protected_paths", f->target, why);
      } else {
        size_t k;
        json_t *pt;
        const char *hit = NULL;
        json_array_foreach(pats, k, pt) if (!hit && path_protected(json_string_value(pt), f->target))
            hit = json_string_value(pt);
        if (hit) {
          char *msg = eng__asprintf(
              "refused: %s %s path '%s', protected by guards.protected_paths "
              "pattern '%s'; nothing was run",
              f->tool, side_word[f->side], f->target, hit);
          rc = refuse(r, step, "protected_paths", f->target, ev, msg);
          free(msg);
        }
        json_decref(pats);
      }
    } else if (!f->target || !strcmp(f->target, "*")) {
      const char *list = list_of[f->kind];
      char *why = NULL;
      json_t *pats = patterns(r, list, &why);
      if (!pats) {
        rc = unresolved(r, step, list, cmd, why);
      } else if (json_array_size(pats)) {
        char *msg = eng__asprintf(
            "refused: %s %s %s, and guards.%s protects some: %s; %s",
            f->tool, side_word[f->side],
            f->target ? "every one of them" : "a target the guards cannot tell",
            list, f->what,
            f->kind == ENG_TARGET_DATABASE
                ? "name the database (-d NAME or a URL) so it can be checked"
                : "remove volumes by name (docker volume rm NAME) so they can "
                  "be checked");
        rc = refuse(r, step, list, cmd, ev, msg);
        free(msg);
        json_decref(pats);
      } else {
        json_decref(pats);
      }
    } else {
      rc = eng__policy_check(r, step, f->kind, f->target, ev, f->side);
    }
    free(ev);
  }
  if (rc == ENG_OK && a->unverified) {
    if (r->policy.refuse_unverified) {
      char *msg = eng__asprintf(
          "refused: the guards cannot see what this command does (%s) and "
          "guards.unverified_commands is 'refuse'", a->unverified);
      rc = refuse(r, step, "unverified_commands", cmd, NULL, msg);
      free(msg);
    } else {
      record(r, step, "pass", "unverified_commands", cmd, NULL, a->unverified);
    }
  }
  return rc;
}

/* The built-in and the runbook's forbidden commands in a command line (with
 * the commands the analyser read of it in a) or in the text of SQL (a
 * NULL). */
static int check_forbidden(eng__run *r, const char *step, const char *cmd,
                           const eng__cmd_analysis *a) {
  char *why = NULL;
  json_t *extra = patterns(r, "forbidden_commands", &why);
  if (!extra) return unresolved(r, step, "forbidden_commands", cmd, why);
  eng__cmd_lexed line;
  eng__cmd_lex(cmd, ENG_CMD_GUARD, NULL, &line);
  int rc = ENG_OK;
  size_t nb = 0;
  while (builtin_forbidden[nb]) nb++;
  size_t n = nb + json_array_size(extra);
  for (size_t i = 0; i < n && rc == ENG_OK; i++) {
    const char *f = i < nb ? builtin_forbidden[i]
                           : json_string_value(json_array_get(extra, i - nb));
    if (!forbidden(&line, a, f, i >= nb)) continue;
    char *msg = eng__asprintf(
        "refused: the command contains forbidden '%s' (%s); this rule "
        "cannot be switched off",
        f, i < nb ? "built-in rule" : "guards.forbidden_commands");
    rc = refuse(r, step, "forbidden_commands", cmd, NULL, msg);
    free(msg);
  }
  eng__cmd_lexed_free(&line);
  json_decref(extra);
  if (rc == ENG_OK) record(r, step, "pass", "forbidden_commands", cmd, NULL, NULL);
  return rc;
}

static int check_command(eng__run *r, const char *step, const char *cmd,
                         const char *env_text) {
  eng__cmd_analysis a;
  eng__cmd_analyse_env_text(cmd, env_text, &a);
  int rc = check_forbidden(r, step, cmd, &a);
  if (rc == ENG_OK) rc = check_findings(r, step, cmd, &a);
  eng__cmd_analysis_free(&a);
  return rc;
}

static int check_target(eng__run *r, const char *step, eng_target kind,
                        const char *value, const char *evidence,
                        eng_side_effect side, const char *what);

/* SQL text before it runs (ENG_TARGET_SQL): forbidden commands, and the
 * databases its statements name held to what it does to them, by name
 * (the action checks them again with the server's identity, and the
 * database it connects to, when it connects). */
static int check_sql_text(eng__run *r, const char *step, const char *sql) {
  int rc = check_forbidden(r, step, sql, NULL);
  if (rc != ENG_OK) return rc;
  eng__sql_info in;
  eng__sql_classify(sql, &in);
  for (size_t i = 0; i < in.n_dbs && rc == ENG_OK; i++) {
    char *w = eng__asprintf("%s (%s)", in.dbs[i].what,
                            eng__sql_class_name(in.dbs[i].cls));
    rc = check_target(r, step, ENG_TARGET_DATABASE, in.dbs[i].name, NULL,
                      eng__sql_side(in.dbs[i].cls), w);
    free(w);
  }
  if (rc == ENG_OK) {
    char *msg = eng__asprintf("%s%s%s%s%s", eng__sql_class_name(in.cls),
                              in.what[0] ? " (" : "", in.what, in.what[0] ? ")" : "",
                              in.unverified ? "; unverified, checked when it connects" : "");
    record(r, step, "pass", "sql", sql, NULL, msg);
    free(msg);
  }
  eng__sql_info_free(&in);
  return rc;
}

/* Does the step opt in to disruptive use of protected targets? */
static bool allows_disruptive(eng__run *r, const char *step) {
  const eng__step *s = step && r->rb ? eng__runbook_step(r->rb, step) : NULL;
  return s && s->allow_disruptive;
}

/* The decision for one target; `what` (may be NULL) names what the step
 * does to it ("VACUUM FULL (disruptive)") for the messages. */
static int check_target(eng__run *r, const char *step, eng_target kind,
                        const char *value, const char *evidence,
                        eng_side_effect side, const char *what) {
  if (!value) return ENG_OK;
  if (kind == ENG_TARGET_COMMAND)
    return check_command(r, step, value, evidence);
  if (kind == ENG_TARGET_SQL) return check_sql_text(r, step, value);
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
    /* maintenance (VACUUM, ANALYZE, ... CONCURRENTLY) changes no data and
     * takes no blocking lock: allowed on a protected target too */
    char *msg = eng__asprintf(
        "%s%s%s", side == ENG_SIDE_MAINTENANCE ? "maintenance" : "read-only use",
        what ? ": " : "", what ? what : "");
    record(r, step, "pass", list, value, evidence, msg);
    free(msg);
    return ENG_OK;
  }
  char *why = NULL;
  json_t *pats = patterns(r, list, &why);
  if (!pats) return unresolved(r, step, list, value, why);
  const char *cands[] = {value, name, evidence, NULL};
  const char *hit = match_any(pats, cands);
  if (hit && side == ENG_SIDE_DISRUPTIVE && allows_disruptive(r, step)) {
    char *msg = eng__asprintf(
        "protected by pattern '%s'; disruptive use%s%s allowed by the step's "
        "allow_disruptive: true", hit, what ? " by " : "", what ? what : "");
    record(r, step, "pass", list, value, evidence, msg);
    free(msg);
    json_decref(pats);
    return ENG_OK;
  }
  if (hit) {
    bool disrupt = side == ENG_SIDE_DISRUPTIVE;
    char *msg = eng__asprintf(
        "refused: %s '%s' is protected by guards.%s pattern '%s'%s%s%s%s%s; "
        "nothing was done (%s)",
        kind_of[kind], value, list, hit,
        !evidence ? "" : !strncmp(evidence, "sysid:", 6) ? " (server identity " : " (",
        evidence ? evidence : "", evidence ? ")" : "",
        what ? ", and the step runs " : "", what ? what : "",
        disrupt ? "a disruptive use is allowed only when the step says "
                  "allow_disruptive: true"
                : "protection cannot be overridden by flags");
    int rc = refuse(r, step, list, value, evidence, msg);
    free(msg);
    json_decref(pats);
    return rc;
  }
  json_decref(pats);
  if (side == ENG_SIDE_DESTRUCTIVE && !r->opts->allow_destructive &&
      !r->static_check &&
      /* HOST:PORT/NAME of a database is matched whole (the same name on
       * another server is not this run's); a bare name matches by name */
      !eng__run_journal_owned(r, kind_of[kind], value)) {
    char *msg = eng__asprintf(
        "refused: destructive action%s%s%s on %s '%s', which this run did not "
        "create; pass --allow-destructive if that is intended",
        what ? " (" : "", what ? what : "", what ? ")" : "", kind_of[kind], value);
    int rc = refuse(r, step, "ownership", value, evidence, msg);
    free(msg);
    return rc;
  }
  record(r, step, "pass", list, value, evidence, what);
  return ENG_OK;
}

int eng__policy_check(eng__run *r, const char *step, eng_target kind,
                      const char *value, const char *evidence,
                      eng_side_effect side) {
  return check_target(r, step, kind, value, evidence, side, NULL);
}

/* ---- SQL about to run on a database ------------------------------------ */

/* The pattern of `list` that protects value (or its name after the last
 * '/', or the evidence), or NULL; *why set when the list is broken. */
static char *protected_by(eng__run *r, const char *list, const char *value,
                          const char *evidence, char **why) {
  json_t *pats = patterns(r, list, why);
  if (!pats) return NULL;
  const char *name = strrchr(value, '/') ? strrchr(value, '/') + 1 : value;
  const char *cands[] = {value, name, evidence, NULL};
  const char *hit = match_any(pats, cands);
  char *out = eng__xstrdup(hit);
  json_decref(pats);
  return out;
}

int eng__policy_sql(eng__run *r, const char *step, const char *database,
                    const char *evidence, const char *sql, bool read_only) {
  if (!database) return ENG_OK;
  eng__sql_info in;
  eng__sql_classify(sql, &in);
  eng__sql_class here = read_only ? in.here_ro : in.here;
  const char *here_what = read_only ? in.here_ro_what : in.here_what;
  char *what = here > ENG__SQL_READ
                   ? eng__asprintf("%s (%s)", here_what, eng__sql_class_name(here))
                   : NULL;
  int rc = check_target(r, step, ENG_TARGET_DATABASE, database, evidence,
                        eng__sql_side(here), what);
  free(what);
  /* the databases statements name: on the same server */
  const char *slash = strrchr(database, '/');
  for (size_t i = 0; i < in.n_dbs && rc == ENG_OK; i++) {
    eng__sql_db *d = &in.dbs[i];
    eng__sql_class cls = read_only ? d->cls_ro : d->cls;
    char *value = slash ? eng__asprintf("%.*s/%s", (int)(slash - database),
                                        database, d->name)
                        : eng__xstrdup(d->name);
    char *w = eng__asprintf("%s (%s)", d->what, eng__sql_class_name(cls));
    rc = check_target(r, step, ENG_TARGET_DATABASE, value, evidence,
                      eng__sql_side(cls), w);
    free(w);
    free(value);
  }
  /* what cannot be verified is held to guards.unverified_commands when it
   * runs on a protected database */
  if (rc == ENG_OK && in.unverified) {
    char *why = NULL;
    char *hit = protected_by(r, "protected_databases", database, evidence, &why);
    if (why) {
      rc = unresolved(r, step, "protected_databases", database, why);
    } else if (hit && r->policy.refuse_unverified) {
      char *msg = eng__asprintf(
          "refused: the guards cannot verify what this SQL does to protected "
          "database '%s' (pattern '%s'): %s; guards.unverified_commands is "
          "'refuse'; nothing was done", database, hit, in.unverified);
      rc = refuse(r, step, "unverified_commands", database, evidence, msg);
      free(msg);
    } else {
      char *msg = eng__asprintf("unverified%s: %s", hit ? " on a protected database" : "",
                                in.unverified);
      record(r, step, "pass", "unverified_commands", database, evidence, msg);
      free(msg);
    }
    free(hit);
  }
  eng__sql_info_free(&in);
  return rc;
}


/* ---- command lines as the guards read them ---------------------------- */

char *eng__command_line(const json_t *cmd) {
  if (json_is_string(cmd)) return eng__xstrdup(json_string_value(cmd));
  if (!json_is_array(cmd)) return NULL;
  eng__buf b = {0};
  size_t i;
  json_t *a;
  json_array_foreach(cmd, i, a) {
    char *s = json_is_string(a) ? eng__xstrdup(json_string_value(a))
                                : json_dumps(a, JSON_ENCODE_ANY | JSON_COMPACT);
    if (i) eng__buf_adds(&b, " ");
    eng__cmd_quote(&b, s ? s : ""); /* argv word, quoted */
    free(s);
  }
  return eng__buf_steal(&b);
}

char *eng__command_env(const json_t *params) {
  eng__buf b = {0};
  const char *k;
  json_t *v;
  json_object_foreach(json_object_get(params, "env"), k, v) {
    char *s = json_is_string(v) ? eng__xstrdup(json_string_value(v))
                                : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    eng__buf_addf(&b, "%s=%s\n", k, s ? s : "");
    free(s);
  }
  const char *cwd = json_string_value(json_object_get(params, "cwd"));
  if (cwd && *cwd) eng__buf_addf(&b, "ENGINE_CWD=%s\n", cwd);
  return eng__buf_steal(&b);
}
