/* runnable.c - whether a database's runbook starts in its pod as
 * rendered: a pod has no terminal to ask for a parameter or an approval,
 * so render refuses what would fail every night (docs/fleet.md). */
#include "fleet/runnable.h"

#include <stdlib.h>
#include <string.h>

#define APPROVE_ACTION "approve"

static const eng__pod_env *pod_env(const eng__pod_gives *g, const char *name) {
  for (size_t i = 0; i < g->n_env; i++)
    if (!strcmp(g->env[i].name, name)) return &g->env[i];
  return NULL;
}

static const eng__param_def *param_def(const eng__runbook *rb,
                                       const char *name) {
  for (size_t j = 0; j < rb->n_params; j++)
    if (!strcmp(rb->params[j].name, name)) return &rb->params[j];
  return NULL;
}

/* Each name under `params` one of the runbook's parameters, none secret. */
static bool params_declared(const eng__runbook *rb, const char *label,
                            const eng__pod_gives *g, eng__diags *d) {
  bool ok = true;
  for (size_t i = 0; g->params && i < g->params->n; i++) {
    const eng__node *k = g->params->keys[i];
    const eng__param_def *p = param_def(rb, k->str);
    if (!p) {
      const char **names = eng__xcalloc(rb->n_params + 1, sizeof *names);
      for (size_t j = 0; j < rb->n_params; j++) names[j] = rb->params[j].name;
      const char *hint = eng__suggest(k->str, names, rb->n_params);
      eng__diag_error(d, g->file, k->line, k->col,
                      "database '%s': runbook %s has no parameter '%s'%s%s%s",
                      g->db, label, k->str, hint ? " (did you mean '" : "",
                      hint ? hint : "", hint ? "'?)" : "");
      free(names);
      ok = false;
    } else if (p->secret) {
      eng__diag_error(d, g->file, k->line, k->col,
                      "database '%s': parameter '%s' is secret: never put "
                      "it in the inventory; the runbook reads it from %s%s, "
                      "give it through a Secret (env: { %s: { secret: "
                      "NAME, key: KEY } })",
                      g->db, k->str, p->env ? "the environment variable "
                                            : "the environment",
                      p->env ? p->env : "", p->env ? p->env : "VARIABLE");
      ok = false;
    }
  }
  return ok;
}

/* Parameter p, required without a default: given by `params` or by the
 * variable it reads, a secret one from a Secret. */
static bool param_given(const eng__runbook *rb, const char *label,
                        const eng__param_def *p, const eng__pod_gives *g,
                        eng__diags *d) {
  if (g->params && eng__node_get(g->params, p->name)) return true;
  const eng__pod_env *e = p->env ? pod_env(g, p->env) : NULL;
  int line = p->node ? p->node->line : 0, col = p->node ? p->node->col : 0;
  if (e && !(p->secret && e->literal)) return true;
  if (e) {
    eng__diag_error(d, g->file, e->node->line, e->node->col,
                    "database '%s': %s is written in the inventory, and "
                    "parameter '%s' of runbook %s (%s:%d:%d) that reads it "
                    "is secret: take it from a Secret, %s: { secret: NAME, "
                    "key: KEY }",
                    g->db, p->env, p->name, label, rb->file, line, col, p->env);
  } else if (p->env && p->secret) {
    eng__diag_error(d, g->file, g->at->line, g->at->col,
                    "database '%s': runbook %s (%s:%d:%d) needs secret "
                    "parameter '%s' from the environment variable %s, which "
                    "the pod does not get: add env: { %s: { secret: NAME, "
                    "key: KEY } } to the database or to defaults",
                    g->db, label, rb->file, line, col, p->name, p->env, p->env);
  } else if (p->env) {
    eng__diag_error(d, g->file, g->at->line, g->at->col,
                    "database '%s': runbook %s (%s:%d:%d) needs parameter "
                    "'%s': add params: { %s: VALUE }, or env: { %s: ... } "
                    "(the variable it reads)",
                    g->db, label, rb->file, line, col, p->name, p->name, p->env);
  } else {
    eng__diag_error(d, g->file, g->at->line, g->at->col,
                    "database '%s': runbook %s (%s:%d:%d) needs parameter "
                    "'%s': add params: { %s: VALUE }",
                    g->db, label, rb->file, line, col, p->name, p->name);
  }
  return false;
}

static bool approved(const eng__pod_gives *g, const char *id) {
  for (size_t i = 0; g->approve && i < g->approve->n; i++)
    if (!strcmp(g->approve->vals[i]->str, id)) return true;
  return false;
}

static bool is_approve_step(const eng__step *s) {
  return s->uses && !strcmp(s->uses, APPROVE_ACTION);
}

/* Every `approve` step approved in advance (a pod has no terminal to ask
 * on), every approval naming one. */
static bool approvals_given(const eng__runbook *rb, const char *label,
                            const eng__pod_gives *g, eng__diags *d) {
  bool ok = true;
  const char **ids = eng__xcalloc(rb->n_steps + 1, sizeof *ids);
  size_t n = 0;
  for (size_t i = 0; i < rb->n_steps; i++) {
    const eng__step *s = &rb->steps[i];
    if (!is_approve_step(s)) continue;
    ids[n++] = s->id;
    if (approved(g, s->id)) continue;
    eng__diag_error(d, g->file, g->at->line, g->at->col,
                    "database '%s': runbook %s (%s:%d:%d) has step '%s' that "
                    "waits for an approval, and a pod has no terminal to "
                    "give it: add approve: [%s] to the database (the run "
                    "gets --approve %s)",
                    g->db, label, rb->file, s->node ? s->node->line : 0,
                    s->node ? s->node->col : 0, s->id, s->id, s->id);
    ok = false;
  }
  for (size_t i = 0; g->approve && i < g->approve->n; i++) {
    const eng__node *v = g->approve->vals[i];
    const eng__step *s = eng__runbook_step((eng__runbook *)rb, v->str);
    if (s && is_approve_step(s)) continue;
    const char *hint = eng__suggest(v->str, ids, n);
    eng__diag_error(d, g->file, v->line, v->col,
                    "database '%s': 'approve' names '%s', which is not an "
                    "approve step of runbook %s%s%s%s",
                    g->db, v->str, label, hint ? " (did you mean '" : "",
                    hint ? hint : "",
                    hint ? "'?)" : n ? "" : ": it has none; remove the key");
    ok = false;
  }
  free(ids);
  return ok;
}

bool eng__fleet_runnable(const eng__runbook *rb, const char *label,
                         const eng__pod_gives *g, eng__diags *d) {
  bool ok = params_declared(rb, label, g, d);
  for (size_t j = 0; j < rb->n_params; j++) {
    const eng__param_def *p = &rb->params[j];
    if (p->required && !p->def) ok &= param_given(rb, label, p, g, d);
  }
  ok &= approvals_given(rb, label, g, d);
  return ok;
}
