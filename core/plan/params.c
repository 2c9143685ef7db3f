/* params.c - the values of a run: the runbook's parameters, the context
 * tables expressions see (env, run, runbook) and each step's parameters
 * rendered and converted (convert.c converts). */
#include "plan/plan.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern char **environ;

/* ---- the runbook's parameters of a run ------------------------------------ */

static const char *const *param_names(eng__runbook *rb) {
  const char **v = eng__xcalloc(rb->n_params + 1, sizeof *v);
  for (size_t i = 0; i < rb->n_params; i++) v[i] = rb->params[i].name;
  return v;
}

/* Parameters given with --set or --params-file that the runbook does not
 * declare: said with the nearest name. The number of errors. */
static int unknown_given(eng__run *r, const json_t *given, eng__diags *d) {
  eng__runbook *rb = r->rb;
  const char *const *names = param_names(rb);
  const char *key;
  json_t *val;
  int bad = 0;
  json_object_foreach((json_t *)given, key, val) {
    bool known = false;
    for (size_t i = 0; i < rb->n_params; i++)
      if (!strcmp(rb->params[i].name, key)) known = true;
    /* a cleanup needs only some of the run's parameters (the secrets its
     * undo steps read); the others may be given, as they were to the run */
    if (known || r->opts->cleanup_run) continue;
    const char *hint = eng__suggest(key, names, rb->n_params);
    eng__diag_error(d, rb->file, 0, 0,
                    "unknown parameter '%s' given with --set/--params-file%s%s%s",
                    key, hint ? " (did you mean '" : "", hint ? hint : "",
                    hint ? "'?)" : "");
    bad++;
  }
  free((void *)names);
  return bad;
}

/* Parameter p's raw value: given, else from its environment variable,
 * else its default rendered, else "" or null; *source says which. NULL
 * (said) when a default does not render or a required one is missing. */
static json_t *raw_value(eng__run *r, const eng__param_def *p,
                         const json_t *given, const char **source,
                         eng__diags *d) {
  json_t *v = json_incref(json_object_get(given, p->name));
  *source = json_object_get(r->opts->sets, p->name) ? "--set" : "--params-file";
  if (!v && p->env && getenv(p->env)) {
    v = json_string(getenv(p->env));
    *source = p->env;
  }
  if (!v && p->def) {
    char err[1024];
    v = eng__tpl_render(r->L, p->def, err, sizeof err);
    *source = "default";
    if (!v) {
      eng__diag_error(d, r->rb->file, p->def->line, p->def->col,
                      "parameter '%s': default: %s", p->name, err);
      return NULL;
    }
  }
  if (!v && p->required) {
    eng__diag_error(d, r->rb->file, p->node->line, p->node->col,
                    "missing required parameter '%s': pass --set %s=VALUE%s%s",
                    p->name, p->name, p->env ? " or set " : "",
                    p->env ? p->env : "");
    return NULL;
  }
  if (!v) v = p->type == ENG_T_STRING ? json_string("") : json_null();
  return v;
}

/* A boolean written as teams write it in the environment and on the
 * command line (ALLOW_EMPTY_PROD_VOLUME=1): 1/0 and yes/no as well as
 * true/false, in any case. A runbook's own YAML stays strict (true or
 * false): there a typo is a mistake to point at, not a convention. */
static json_t *text_bool(const char *s) {
  static const char *const yes[] = {"1", "yes", "true"}, *const no[] = {"0", "no", "false"};
  for (size_t i = 0; i < 3; i++) {
    if (!strcasecmp(s, yes[i])) return json_true();
    if (!strcasecmp(s, no[i])) return json_false();
  }
  return NULL;
}

/* A list or map written on the command line or in the environment:
 * YAML flow text ([a, b], {k: v}; JSON is YAML too), read as the YAML of
 * a runbook is; NULL when the text is not one. */
static json_t *text_collection(const char *s, eng_type want) {
  while (*s == ' ') s++;
  if (*s != (want == ENG_T_LIST ? '[' : '{')) return NULL;
  eng__diags d = {0};
  d.quiet = true;
  eng__node *n = eng__yaml_parse("--set", s, strlen(s), &d);
  json_t *v = n && n->kind == (want == ENG_T_LIST ? ENG__N_SEQ : ENG__N_MAP)
                  ? eng__node_to_json(n) : NULL;
  eng__node_free(n);
  eng__diags_free(&d);
  return v;
}

/* v converted to parameter p's type and choices; NULL with err. `text`:
 * v is text from the environment or --set. */
static json_t *param_value(const eng__param_def *p, json_t *v, bool text,
                           char *err, size_t errlen) {
  if (json_is_null(v)) return json_incref(v);
  json_t *b = text && p->type == ENG_T_BOOL && json_is_string(v)
                  ? text_bool(json_string_value(v)) : NULL;
  if (b) return b;
  json_t *coll = text && (p->type == ENG_T_LIST || p->type == ENG_T_MAP) &&
                         json_is_string(v)
                     ? text_collection(json_string_value(v), p->type) : NULL;
  if (coll) {
    json_t *c = param_value(p, coll, false, err, errlen);
    json_decref(coll);
    return c;
  }
  const char *t = json_is_string(v) ? json_string_value(v) : "";
  while (*t == ' ') t++;
  if (text && ((p->type == ENG_T_LIST && *t == '[') || (p->type == ENG_T_MAP && *t == '{'))) {
    snprintf(err, errlen, "cannot read '%s' as a %s: write it as YAML flow text, "
             "%s (JSON too)", json_string_value(v), p->type == ENG_T_LIST ? "list" : "map",
             p->type == ENG_T_LIST ? "[a, b]" : "{key: value}");
    return NULL;
  }
  char choices[512] = "";
  if (p->choices) {
    size_t idx;
    json_t *e;
    eng__buf b = {0};
    json_array_foreach(p->choices, idx, e) {
      if (idx) eng__buf_adds(&b, "|");
      eng__buf_adds(&b, json_is_string(e) ? json_string_value(e) : "?");
    }
    snprintf(choices, sizeof choices, "%s", b.data ? b.data : "");
    eng__buf_free(&b);
  }
  json_t *c = eng__convert(v, p->type, p->choices ? choices : NULL, err, errlen);
  /* A duration parameter keeps what it was given ("90s", or a number of
   * seconds), checked: actions convert it themselves, so it never changes
   * unit twice. */
  if (c && p->type == ENG_T_DURATION && (json_is_string(v) || json_is_number(v))) {
    json_decref(c);
    c = json_incref(v);
  }
  return c;
}

int eng__run_params(eng__run *r, eng__diags *d) {
  eng__runbook *rb = r->rb;
  const eng__run_opts *o = r->opts;
  json_t *given = json_object();
  if (o->params_file) json_object_update(given, o->params_file);
  if (o->sets) json_object_update(given, o->sets);
  int bad = unknown_given(r, given, d);
  r->params = json_object();
  eng__lua_set_global(r->L, "params", r->params);
  for (size_t i = 0; i < rb->n_params; i++) {
    eng__param_def *p = &rb->params[i];
    const char *source;
    json_t *v = raw_value(r, p, given, &source, d);
    if (!v) {
      bad++;
      continue;
    }
    char err[512];
    bool text = strcmp(source, "default") && strcmp(source, "--params-file");
    json_t *c = param_value(p, v, text, err, sizeof err);
    json_decref(v);
    if (!c) {
      eng__diag_error(d, rb->file, p->node->line, p->node->col,
                      "parameter '%s' (from %s): %s%s", p->name, source, err,
                      text && p->type == ENG_T_BOOL
                          ? "; from the environment and --set a boolean is "
                            "true/false, 1/0 or yes/no"
                          : "");
      bad++;
      continue;
    }
    if (p->secret && json_is_string(c)) {
      char *ref = !strcmp(source, "--set") || !strcmp(source, "default") ||
                          !strcmp(source, "--params-file")
                      ? eng__asprintf("${params.%s}", p->name)
                      : eng__asprintf("${env.%s}", source);
      eng__run_secret(r, json_string_value(c), ref);
      free(ref);
    }
    json_object_set_new(r->params, p->name, c);
    eng__lua_set_global(r->L, "params", r->params);
  }
  json_decref(given);
  return bad ? ENG_EXIT_USAGE : ENG_EXIT_OK;
}

/* ---- context for Lua ------------------------------------------------------ */

void eng__run_set_status(eng__run *r, const char *status) {
  char t[40];
  json_t *run = json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", r->id, "name",
                          r->rb->name ? r->rb->name : "", "started_at",
                          eng__fmt_time(r->started_ms, t, sizeof t), "dir",
                          r->dir ? r->dir : "", "status", status);
  eng__lua_set_global(r->L, "run", run);
  json_decref(run);
}

static void set_env_global(eng__run *r) {
  json_t *env = json_object();
  for (char **e = environ; e && *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq) continue;
    char *k = eng__xstrndup(*e, (size_t)(eq - *e));
    json_object_set_new(env, k, json_string(eq + 1));
    free(k);
  }
  eng__lua_set_global(r->L, "env", env);
  json_decref(env);
  static const char *const secret_env[] = {"AWS_SECRET_ACCESS_KEY",
                                           "AWS_SESSION_TOKEN",
                                           "SLACK_WEBHOOK_URL", "SLACK_TOKEN",
                                           "SLACK_BOT_TOKEN", "PAGERDUTY_ROUTING_KEY",
                                           "PGPASSWORD", "ENGINE_AUDIT_KEY"};
  for (size_t i = 0; i < sizeof secret_env / sizeof *secret_env; i++)
    if (getenv(secret_env[i])) {
      char *ref = eng__asprintf("${env.%s}", secret_env[i]);
      eng__run_secret(r, getenv(secret_env[i]), ref);
      free(ref);
    }
  if (getenv("DATABASE_URL"))
    eng__run_secret(r, getenv("DATABASE_URL"), "${env.DATABASE_URL}");
}

static void set_runbook_global(eng__run *r) {
  json_t *rb = json_pack("{s:s, s:s, s:s}", "name",
                         r->rb->name ? r->rb->name : "", "file", r->rb->file,
                         "dir", r->rb->dir);
  eng__lua_set_global(r->L, "runbook", rb);
  json_decref(rb);
}

/* The tables every expression sees: env (and its secrets registered),
 * runbook, run, and each step as pending. */
void eng__run_set_globals(eng__run *r) {
  set_env_global(r);
  set_runbook_global(r);
}

/* ---- a step's parameters ---------------------------------------------------- */

json_t *eng__action_params(eng__run *r, const eng__action_ref *ref,
                           const json_t *raw, char *err, size_t errlen) {
  json_t *out = json_object();
  for (const eng_param *p = ref->action->params; p && p->name; p++) {
    json_t *v = json_object_get(raw, p->name);
    json_t *def = NULL;
    if (!v || json_is_null(v)) {
      if (p->def) def = v = json_loads(p->def, JSON_DECODE_ANY, NULL);
      else if (p->flags & ENG_P_REQUIRED) {
        snprintf(err, errlen, "parameter '%s' of %s is required but empty",
                 p->name, ref->full);
        json_decref(out);
        return NULL;
      } else continue;
    }
    char cerr[512];
    json_t *c = eng__convert_param(v, p, cerr, sizeof cerr);
    json_decref(def);
    if (!c) {
      snprintf(err, errlen, "parameter '%s' of %s: %s", p->name, ref->full,
               cerr);
      json_decref(out);
      return NULL;
    }
    if ((p->flags & ENG_P_SECRET) && json_is_string(c))
      eng__redactor_add(r->redact, json_string_value(c));
    json_object_set_new(out, p->name, c);
  }
  return out;
}

/* Render `with`, convert every declared parameter, apply defaults. */
json_t *eng__step_params(eng__run *r, size_t i, char *err, size_t errlen) {
  eng__step *s = &r->rb->steps[i];
  json_t *raw = s->with ? eng__tpl_render(r->L, s->with, err, errlen)
                        : json_object();
  if (!raw) return NULL;
  json_t *out = eng__action_params(r, s->action, raw, err, errlen);
  json_decref(raw);
  return out;
}

eng_side_effect eng__step_side(const eng__step *s, const json_t *params) {
  const eng_action *a = s->action->action;
  eng_side_effect e = a->classify ? a->classify(params) : a->side_effect;
  return (unsigned)e > ENG_SIDE_LAST ? ENG_SIDE_DESTRUCTIVE : e;
}
