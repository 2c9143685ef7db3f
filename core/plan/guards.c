/* guards.c - the runbook's guards (docs/runbook-format.md, "Guards"): the
 * protected lists and forbidden commands resolved into the run's policy
 * (policy.c applies it to each target), `require` and Lua `checks` before
 * a step starts, the static check of `require` against the DAG, what is
 * decided before the run (one function for `engine plan` and the run's
 * start), and the violations `engine validate` can tell without any
 * parameter or environment. */
#include "plan/plan.h"
#include "shell/shell.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const policy_lists[] = {
    "protected_databases", "protected_volumes", "protected_buckets",
    "protected_instances", "protected_paths", "forbidden_commands", NULL};

/* Resolve the lists (entries may use ${params...}) once the parameters are
 * known. An entry that cannot be resolved marks its list broken: every
 * check against it refuses. */
void eng__guards_compile(eng__run *r) {
  eng__policy_free(&r->policy);
  r->policy.lists = json_object();
  r->policy.broken = json_object();
  for (size_t l = 0; policy_lists[l]; l++) {
    const char *list = policy_lists[l];
    json_t *out = json_array();
    eng__node *pl = eng__node_get(r->rb->guards, list);
    for (size_t i = 0; pl && pl->kind == ENG__N_SEQ && i < pl->n; i++) {
      char err[512] = "";
      json_t *v = eng__tpl_render(r->L, pl->vals[i], err, sizeof err);
      if (!json_is_string(v) || !*json_string_value(v)) {
        char *why = eng__asprintf(
            "guards.%s[%zu] (line %d) could not be resolved%s%s", list, i,
            pl->vals[i]->line, *err ? ": " : " to a non-empty string", err);
        json_object_set_new(r->policy.broken, list, json_string(why));
        free(why);
        json_decref(v);
        break;
      }
      json_array_append_new(out, v);
    }
    json_object_set_new(r->policy.lists, list, out);
  }
  eng__node *u = eng__node_get(r->rb->guards, "unverified_commands");
  r->policy.refuse_unverified =
      u && u->kind == ENG__N_SCALAR && !strcmp(u->str, "refuse");
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
    if (!ns || !eng__status_succeeded(r->st[ns->idx].status)) {
      char *msg = eng__asprintf(
          "refused: guards.require says step '%s' must have ended ok before "
          "'%s' starts (it is %s)",
          need->str, s->id, ns ? eng__status_name(r->st[ns->idx].status) : "missing");
      int rc = eng__policy_refuse(r, s->id, "require", need->str, msg);
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
    char *code = eng__cond_code(that->str);
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
      int rc = eng__policy_refuse(r, s->id, "checks", code, msg);
      free(msg);
      free(why);
      free(code);
      return rc;
    }
    free(code);
  }
  return ENG_OK;
}

/* Is `need` an ancestor of step i (so `require` can hold)? */
static bool ancestor(eng__runbook *rb, size_t i, size_t need) {
  return eng__runbook_depends(rb, i, need);
}

/* The first `require` entry naming step i as `before` that the DAG cannot
 * guarantee (i does not depend on the required step), or NULL. */
static eng__node *require_broken(eng__runbook *rb, size_t i) {
  eng__step *s = &rb->steps[i];
  eng__node *req = eng__node_get(rb->guards, "require");
  for (size_t k = 0; req && req->kind == ENG__N_SEQ && k < req->n; k++) {
    eng__node *before = eng__node_get(req->vals[k], "before");
    eng__node *need = eng__node_get(req->vals[k], "step");
    if (!before || !need || strcmp(before->str, s->id)) continue;
    eng__step *ns = eng__runbook_step(rb, need->str);
    if (!ns || ns->is_finally || s->is_finally || !ancestor(rb, i, ns->idx))
      return req->vals[k];
  }
  return NULL;
}

/* Plan-time: `require` rules the DAG cannot guarantee. */
int eng__guards_static(eng__run *r, size_t i, FILE *out) {
  eng__node *broken = require_broken(r->rb, i);
  if (!broken) return ENG_OK;
  if (out) {
    const char *need = eng__node_get(broken, "step")->str, *id = r->rb->steps[i].id;
    fprintf(out, "      guard require: '%s' must end ok before '%s', but "
                 "'%s' does not depend on it  [REFUSED]\n",
            need, id, id);
  }
  return ENG_ERR_REFUSED;
}

eng__cond_now eng__guards_cond_now(eng__run *r, size_t i) {
  eng__step *s = &r->rb->steps[i];
  if (s->if_ref < 0 || !s->if_node) return ENG__COND_RUNS;
  /* what a condition reads that only exists once steps ran */
  static const char *const later[] = {"steps", "outputs", "success",
                                      "failure", "always", "cancelled",
                                      "status", "deps", NULL};
  for (size_t k = 0; later[k]; k++)
    if (strstr(s->if_node->str, later[k])) return ENG__COND_LATER;
  /* all conditions decided before the run share one small budget: what
   * does not finish within it is decided when the step is reached */
  if (r->cond_budget_used_ms >= ENG__COND_BUDGET_MS) return ENG__COND_LATER;
  json_t *res = NULL;
  char err[512];
  eng__lua_set_deps(r->L, NULL, 0);
  uint64_t old = eng__lua_set_budget(
      r->L, (uint64_t)(ENG__COND_BUDGET_MS - r->cond_budget_used_ms));
  uint64_t t0 = uv_hrtime();
  int rc = eng__lua_eval(r->L, s->if_ref, NULL, &res, err, sizeof err);
  r->cond_budget_used_ms += (int64_t)((uv_hrtime() - t0) / 1000000u) + 1;
  eng__lua_set_budget(r->L, old);
  if (rc != ENG_OK)
    return ENG__COND_LATER; /* the step reports the error when reached */
  json_t *v = json_array_get(res, 0);
  bool run = v && !json_is_false(v) && !json_is_null(v);
  json_decref(res);
  return run ? ENG__COND_RUNS : ENG__COND_FALSE;
}

/* ---- what is decided before the run ------------------------------------ */

/* A parameter of step s known before the run: rendered without step
 * results and converted (its default when the step does not give it);
 * NULL when it is known only when the step is reached, or does not render
 * now (the step reports that itself when it is). */
static json_t *known_param(eng__run *r, const eng__step *s, const eng_param *p) {
  eng__node *vn = eng__node_get(s->with, p->name);
  char err[512];
  json_t *raw = NULL;
  if (!vn) {
    if (!p->def) return NULL;
    raw = json_loads(p->def, JSON_DECODE_ANY, NULL);
  } else {
    if (!eng__tpl_static(vn)) return NULL;
    raw = eng__tpl_render(r->L, vn, err, sizeof err);
  }
  if (!raw) return NULL;
  json_t *c = json_is_null(raw) ? NULL : eng__convert_param(raw, p, err, sizeof err);
  json_decref(raw);
  if (c && (p->flags & ENG_P_SECRET) && json_is_string(c))
    eng__redactor_add(r->redact, json_string_value(c));
  return c;
}

/* The parameters of step i known now: all of them (*all) when every one
 * renders now, else those that do. */
static json_t *known_params(eng__run *r, size_t i, bool *all) {
  eng__step *s = &r->rb->steps[i];
  *all = false;
  if (!s->with || eng__tpl_static(s->with)) {
    char err[1024];
    json_t *params = eng__step_params(r, i, err, sizeof err);
    if (params) {
      *all = true;
      return params;
    }
  }
  json_t *out = json_object();
  for (const eng_param *p = s->action->action->params; p && p->name; p++) {
    json_t *v = known_param(r, s, p);
    if (v) json_object_set_new(out, p->name, v);
  }
  return out;
}

static eng__gtarget *add_target(eng__gstep *g, const eng_param *p, eng_target kind) {
  g->t = eng__xrealloc(g->t, (g->n + 1) * sizeof *g->t);
  eng__gtarget *t = &g->t[g->n++];
  memset(t, 0, sizeof *t);
  t->param = p->name;
  t->kind = kind;
  t->side = g->side;
  t->side_known = g->side_known;
  t->d = ENG__G_LATER;
  return t;
}

/* A mount NAME:/path[:ro|rw] (read-only unless :rw, as docker.run reads
 * it): a volume, or a path when the source is one (a bind mount). */
static void add_mount(eng__gstep *g, const eng_param *p, const char *spec,
                      const char *action) {
  const char *c1 = strchr(spec, ':');
  const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
  bool rw = c2 && !strcmp(c2 + 1, "rw");
  char *src = eng__xstrndup(spec, c1 ? (size_t)(c1 - spec) : strlen(spec));
  char *dst = c1 ? eng__xstrndup(c1 + 1, c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1))
                 : eng__xstrdup("");
  eng__gtarget *t = add_target(g, p, src[0] == '/' ? ENG_TARGET_FILE : ENG_TARGET_VOLUME);
  t->mount = true;
  t->value = src;
  t->detail = eng__asprintf("%s, mounted %s%s%s", src[0] == '/' ? "path" : "volume",
                            rw ? "read-write" : "read-only", *dst ? " at " : "", dst);
  if (rw) {
    t->evidence = eng__asprintf("mounted read-write by %s", action);
  } else { /* a read whatever the step's class */
    t->side = ENG_SIDE_READ_ONLY;
    t->side_known = true;
  }
  free(dst);
}

/* Every target of step i, with its value when known now. */
static void list_targets(eng__run *r, size_t i, bool all, eng__gstep *g) {
  eng__step *s = &r->rb->steps[i];
  for (const eng_param *p = s->action->action->params; p && p->name; p++) {
    if (p->target == ENG_TARGET_NONE) continue;
    json_t *v = json_object_get(g->known, p->name);
    eng__node *vn = eng__node_get(s->with, p->name);
    if (!v && (!vn || all)) continue; /* not given */
    if (!v) {
      eng__gtarget *t = add_target(g, p, p->target);
      t->raw = eng__xstrdup(vn->kind == ENG__N_SCALAR ? vn->str : "(at run time)");
      continue;
    }
    if (p->target == ENG_TARGET_COMMAND) {
      char *line = eng__command_line(v);
      if (!line) continue;
      eng__gtarget *t = add_target(g, p, p->target);
      /* the line is read with the step's env and cwd: known now too? */
      eng__node *env = eng__node_get(s->with, "env");
      eng__node *cwd = eng__node_get(s->with, "cwd");
      if (all || ((!env || eng__tpl_static(env)) && (!cwd || eng__tpl_static(cwd)))) {
        t->value = line;
        t->evidence = eng__command_env(g->known);
        t->side_known = true; /* a command line is read whatever the class */
      } else {
        t->raw = line;
      }
      continue;
    }
    if (json_is_array(v)) {
      size_t k;
      json_t *item;
      json_array_foreach(v, k, item) {
        if (!json_is_string(item)) continue;
        if (p->target == ENG_TARGET_VOLUME) {
          add_mount(g, p, json_string_value(item), s->action->full);
        } else {
          eng__gtarget *t = add_target(g, p, p->target);
          t->value = eng__xstrdup(json_string_value(item));
        }
      }
      continue;
    }
    if (!json_is_string(v)) continue;
    eng__gtarget *t = add_target(g, p, p->target);
    t->value = eng__xstrdup(json_string_value(v));
  }
}

/* A database given as a connection (a URL or key=value conninfo) names a
 * server: policy.c passes it, and the action checks the database it acts
 * on with the server's identity when it runs. */
static bool connection(const eng__gtarget *t) {
  return t->kind == ENG_TARGET_DATABASE && !t->mount &&
         (strstr(t->value, "://") || strchr(t->value, '='));
}

static void refused_now(eng__run *r, eng__gstep *g, eng__gtarget *t) {
  const char *msg = r->last_refusal ? r->last_refusal : "refused";
  if (t) t->why = eng__xstrdup(msg);
  if (!g->why)
    g->why = t && t->item ? eng__asprintf("item %s: %s", t->item, msg)
                          : eng__xstrdup(msg);
}

/* The targets of step i with what is known now: its parameters' values
 * and the class they give (the class may depend on the values: known
 * when they all are). */
static void step_targets(eng__run *r, size_t i, eng__gstep *g) {
  eng__step *s = &r->rb->steps[i];
  bool all = false;
  json_decref(g->known);
  g->known = known_params(r, i, &all);
  g->side_known = all || !s->action->action->classify;
  g->side = eng__step_side(s, all ? g->known : NULL);
  list_targets(r, i, all, g);
}

/* A for_each list known now: rendered without step results. */
static json_t *list_now(eng__run *r, const eng__step *s) {
  if (!eng__tpl_static(s->for_each)) return NULL;
  char err[512];
  json_t *l = eng__tpl_render(r->L, s->for_each, err, sizeof err);
  if (json_is_array(l) || json_is_object(l)) return l;
  json_decref(l); /* the step says what is wrong when it starts */
  return NULL;
}

/* The targets of each item of a for_each step whose list is known now,
 * each named by its item; a list known later: the step's own, the values
 * that read `each` left to when each item starts. */
static void items_targets(eng__run *r, size_t i, eng__gstep *g) {
  eng__step *s = &r->rb->steps[i];
  g->list = list_now(r, s);
  if (!g->list) {
    step_targets(r, i, g);
    return;
  }
  eng__fan *f = eng__fan_new(s, g->list);
  bool side_known = true;
  eng_side_effect side = ENG_SIDE_READ_ONLY;
  for (size_t k = 0; k < f->n; k++) {
    eng__lua_set_global(r->L, "each", f->items[k].each);
    size_t first = g->n;
    step_targets(r, i, g);
    for (size_t t = first; t < g->n; t++) g->t[t].item = eng__xstrdup(f->items[k].id);
    side_known &= g->side_known;
    if (k == 0) side = g->side; /* shown; each target has its item's */
  }
  eng__lua_set_global(r->L, "each", NULL);
  if (f->n) {
    g->side = side;
    g->side_known = side_known;
  } else {
    step_targets(r, i, g);
  }
  eng__step_state tmp = {.fan = f};
  eng__step_state_free(&tmp);
}

void eng__guards_decide(eng__run *r, size_t i, bool conditional, eng__gstep *g) {
  eng__step *s = &r->rb->steps[i];
  memset(g, 0, sizeof *g);
  bool selected = r->st[i].selected;
  g->cond = selected ? eng__guards_cond_now(r, i) : ENG__COND_RUNS;
  if (s->for_each) items_targets(r, i, g);
  else step_targets(r, i, g);
  if (!selected || g->cond == ENG__COND_FALSE) {
    for (size_t k = 0; k < g->n; k++)
      g->t[k].d = selected ? ENG__G_NOT_RUN : ENG__G_NOT_SELECTED;
    return;
  }
  /* `require` the DAG cannot guarantee: refused whenever the step runs */
  if (eng__guards_static(r, i, NULL) != ENG_OK) {
    g->require_refused = g->refused = true;
    char *msg = eng__asprintf(
        "refused: a guards.require rule names '%s', but '%s' does not depend "
        "on the required step: add it to 'needs'",
        s->id, s->id);
    eng__policy_refuse(r, s->id, "require", s->id, msg);
    g->why = msg;
  }
  bool held = g->cond == ENG__COND_RUNS || conditional;
  for (size_t k = 0; k < g->n; k++) {
    eng__gtarget *t = &g->t[k];
    if (!t->value || !t->side_known || !held) continue; /* ENG__G_LATER */
    if (t->kind == ENG_TARGET_FILE && !t->mount) {
      t->d = ENG__G_FILE;
      continue;
    }
    r->static_check = true; /* ownership is decided when the step runs */
    int rc = eng__policy_check(r, t->item ? t->item : s->id, t->kind, t->value,
                               t->evidence, t->side);
    r->static_check = false;
    if (rc == ENG_OK) {
      t->d = connection(t) && t->side != ENG_SIDE_READ_ONLY &&
                     t->side != ENG_SIDE_EXTERNAL
                 ? ENG__G_CONNECTION
                 : ENG__G_PASS;
    } else if (g->cond == ENG__COND_LATER) {
      t->d = ENG__G_IF_RUNS;
      g->refused_if_runs = true;
      refused_now(r, g, t);
    } else {
      t->d = ENG__G_REFUSED;
      g->refused = true;
      refused_now(r, g, t);
    }
  }
}

void eng__gstep_free(eng__gstep *g) {
  for (size_t k = 0; k < g->n; k++) {
    free(g->t[k].value);
    free(g->t[k].raw);
    free(g->t[k].detail);
    free(g->t[k].evidence);
    free(g->t[k].why);
    free(g->t[k].item);
  }
  free(g->t);
  free(g->why);
  json_decref(g->known);
  json_decref(g->list);
  memset(g, 0, sizeof *g);
}

/* Run start: every selected step decided now, as `engine plan` shows it.
 * A refusal stops the run before any main step ran: those refused are
 * marked so, the others are skipped; `finally` runs as after any refusal
 * (a notification says the run was refused), each of its steps guarded
 * again, those refused now staying refused. A step whose condition is
 * false now is not held to the guards (it will not run); one whose
 * condition or values are known only later is held to them when it is
 * reached. */
void eng__guards_run_start(eng__run *r) {
  eng__runbook *rb = r->rb;
  json_t *refused = json_array();
  eng__buf names = {0};
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step *s = &rb->steps[i];
    if (!r->st[i].selected) continue;
    eng__gstep g;
    eng__guards_decide(r, i, false, &g);
    if (g.refused) {
      eng__step_state *st = &r->st[i];
      st->started_ms = st->ended_ms = eng__now_ms();
      free(st->error);
      st->error = eng__xstrdup(g.why);
      st->status = ENG__S_REFUSED;
      eng__lua_set_step(r->L, s->id, "refused", NULL);
      eng__con_step_start(r, i);
      eng__con_step_end(r, i);
      eng__journal_step(&r->journal, "step.end", s->id, NULL, "refused", NULL);
      eng__run_check_journal(r);
      eng__run_audit(r, "step.end",
                     json_pack("{s:s, s:s, s:i, s:I, s:s}", "step", s->id, "status",
                               "refused", "attempts", 0, "duration_ms",
                               (json_int_t)0, "error", st->error));
      json_array_append_new(refused, json_string(s->id));
      eng__buf_addf(&names, "%s'%s'", names.len ? ", " : "", s->id);
    }
    eng__gstep_free(&g);
  }
  if (json_array_size(refused)) {
    r->refused = true;
    r->stopping = true;
    json_decref(r->refused_before_start);
    r->refused_before_start = json_incref(refused);
    eng__run_audit(r, "run.refused",
                   json_pack("{s:O, s:s}", "steps", refused, "message",
                             "refused before the first step: no main step ran "
                             "(finally runs, each of its steps guarded)"));
    eng__con_note(r, "refused before the first step (%s): no main step ran", names.data);
  }
  eng__buf_free(&names);
  json_decref(refused);
}

/* ---- engine validate: what every run of the file would refuse ---------- */

extern char **environ;

/* Written without any ${...}: the same value in every run. */
static bool literal(const eng__node *n) {
  if (!n) return true;
  if (n->kind == ENG__N_SCALAR) return !n->tpl && !strstr(n->str, "${");
  for (size_t i = 0; i < n->n; i++)
    if (!literal(n->vals[i])) return false;
  return true;
}

/* The policy of the runbook's literal list entries (the others are known
 * only with parameters or environment); forbidden commands alone when
 * !protect. */
static void literal_policy(eng__run *r, bool protect) {
  r->policy.lists = json_object();
  r->policy.broken = json_object();
  for (size_t l = 0; policy_lists[l]; l++) {
    json_t *out = json_array();
    eng__node *pl = eng__node_get(r->rb->guards, policy_lists[l]);
    bool wanted = protect || !strcmp(policy_lists[l], "forbidden_commands");
    for (size_t i = 0; wanted && pl && pl->kind == ENG__N_SEQ && i < pl->n; i++)
      if (pl->vals[i]->kind == ENG__N_SCALAR && literal(pl->vals[i]) && *pl->vals[i]->str)
        json_array_append_new(out, json_string(pl->vals[i]->str));
    json_object_set_new(r->policy.lists, policy_lists[l], out);
  }
  r->static_check = true; /* ownership is a run's own business */
}

typedef struct vctx {
  eng__runbook *rb;
  eng__diags *d;
  eng__run full;  /* the literal protected lists and forbidden commands */
  eng__run forb;  /* forbidden commands only */
  size_t errors;
} vctx;

static void violation(vctx *v, const eng__step *s, const eng__node *at, const char *msg) {
  if (!strncmp(msg, "refused: ", 9)) msg += 9;
  int line = at ? at->line : s->node ? s->node->line : 0;
  int col = at ? at->col : s->node ? s->node->col : 0;
  if (s->if_node) {
    eng__diag_warn(v->d, v->rb->file, line, col,
                   "step '%s' is refused by the guards whenever its condition "
                   "lets it run: %s", s->id, msg);
    return;
  }
  eng__diag_error(v->d, v->rb->file, line, col,
                  "step '%s' is refused by the guards in every run: %s", s->id, msg);
  v->errors++;
}

static bool refuses(eng__run *r, const eng__step *s, eng_target kind, const char *value,
                    const char *evidence, eng_side_effect side) {
  return eng__policy_check(r, s->id, kind, value, evidence, side) != ENG_OK;
}

/* A literal command line: forbidden commands whatever the environment; the
 * targets the analyser reads in it, when nothing in it or its environment
 * comes from a variable (an unknown target is not a violation here). */
static void validate_command(vctx *v, const eng__step *s, const eng__node *at,
                             const char *line, const char *env_text, eng_side_effect side) {
  if (refuses(&v->forb, s, ENG_TARGET_COMMAND, line, NULL, side)) {
    violation(v, s, at, v->forb.last_refusal);
    return;
  }
  if (!env_text || strpbrk(line, "$`") || strpbrk(env_text, "$`")) return;
  eng__cmd_analysis a;
  eng__cmd_analyse_env_text(line, env_text, &a);
  for (size_t k = 0; k < a.n; k++) {
    eng__cmd_finding *f = &a.f[k];
    if (!f->target || !strcmp(f->target, "*") || f->side == ENG_SIDE_READ_ONLY) continue;
    char *ev = eng__asprintf("%s: %s", f->tool, f->what);
    bool bad = refuses(&v->full, s, f->kind, f->target, ev, f->side);
    free(ev);
    if (bad) {
      violation(v, s, at, v->full.last_refusal);
      break;
    }
  }
  eng__cmd_analysis_free(&a);
}

static void validate_step(vctx *v, size_t i) {
  eng__step *s = &v->rb->steps[i];
  if (!s->action) return;
  bool all = literal(s->with);
  json_t *params = NULL;
  if (all) {
    char err[512];
    json_t *raw = s->with ? eng__node_to_json(s->with) : json_object();
    params = eng__action_params(&v->full, s->action, raw, err, sizeof err);
    json_decref(raw);
  }
  bool side_known = params || !s->action->action->classify;
  eng_side_effect side = eng__step_side(s, params);
  eng__node *envn = eng__node_get(s->with, "env"), *cwdn = eng__node_get(s->with, "cwd");
  for (const eng_param *p = s->action->action->params; p && p->name; p++) {
    eng__node *vn = eng__node_get(s->with, p->name);
    if (p->target == ENG_TARGET_NONE || !vn || !literal(vn)) continue;
    char err[512];
    json_t *raw = eng__node_to_json(vn);
    json_t *val = raw ? eng__convert_param(raw, p, err, sizeof err) : NULL;
    json_decref(raw);
    if (!val) continue; /* reported by the validation itself */
    if (p->target == ENG_TARGET_COMMAND) {
      char *line = eng__command_line(val);
      char *env_text = NULL;
      if (line && literal(envn) && literal(cwdn)) {
        json_t *ec = json_object();
        if (envn) json_object_set_new(ec, "env", eng__node_to_json(envn));
        if (cwdn) json_object_set_new(ec, "cwd", eng__node_to_json(cwdn));
        env_text = eng__command_env(ec);
        json_decref(ec);
      }
      if (line) validate_command(v, s, vn, line, env_text, side);
      free(line);
      free(env_text);
    } else if (json_is_array(val) && p->target == ENG_TARGET_VOLUME) {
      eng__gstep g = {0};
      g.side = side;
      g.side_known = side_known;
      size_t k;
      json_t *item;
      json_array_foreach(val, k, item)
        if (json_is_string(item)) add_mount(&g, p, json_string_value(item), s->action->full);
      for (k = 0; k < g.n; k++) {
        eng__gtarget *t = &g.t[k];
        if (t->side_known && t->side != ENG_SIDE_READ_ONLY &&
            refuses(&v->full, s, t->kind, t->value, t->evidence, t->side))
          violation(v, s, vn, v->full.last_refusal);
      }
      eng__gstep_free(&g);
    } else if (json_is_string(val) && side_known && p->target != ENG_TARGET_FILE &&
               refuses(&v->full, s, p->target, json_string_value(val), NULL, side)) {
      violation(v, s, vn, v->full.last_refusal);
    }
    json_decref(val);
  }
  json_decref(params);
  eng__node *broken = require_broken(v->rb, i);
  if (broken) {
    eng__node *at = eng__node_get(broken, "before");
    eng__diag_error(v->d, v->rb->file, at->line, at->col,
                    "guards.require: step '%s' must end ok before '%s' starts, but "
                    "'%s' does not depend on it (add it to 'needs'): every run is "
                    "refused",
                    eng__node_get(broken, "step")->str, s->id, s->id);
    v->errors++;
  }
}

size_t eng__guards_validate(eng__runbook *rb, eng__lua *L, eng__diags *d) {
  static eng__run_opts o; /* no flags: what every run would meet */
  vctx v = {.rb = rb, .d = d};
  eng__run_init(&v.full, rb, L, &o, "validate");
  eng__run_init(&v.forb, rb, L, &o, "validate");
  literal_policy(&v.full, true);
  literal_policy(&v.forb, false);
  /* nothing may come from this process' environment (PGDATABASE, $VAR):
   * the analyser sees none while validate looks */
  char **saved = environ;
  static char *none[] = {NULL};
  environ = none;
  eng__console_mute(true);
  for (size_t i = 0; i < rb->n_steps; i++) validate_step(&v, i);
  eng__console_mute(false);
  environ = saved;
  eng__run_free(&v.full);
  eng__run_free(&v.forb);
  return v.errors;
}
