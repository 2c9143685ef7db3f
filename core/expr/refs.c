/* refs.c - references in expressions, checked before anything runs: every
 * `params.X`, `steps.ID...` and `outputs.Y` (dotted or ["..."]) in `${...}`
 * templates, `if:`, `check:`, step `outputs:`, `guards.checks` and inline
 * Lua is resolved against the declared parameters, the step ids (and
 * their underscore spellings), the actions' declared outputs and the
 * step's own `outputs:`. Unknown names are errors with file:line:col and
 * "did you mean". Reading the outputs of a step that may not have run is
 * a warning: from a main step, one that is not among its (transitive)
 * `needs`; from a `finally` step, a main step its `if:` does not look at.
 * Code that declares a local named like a root is not checked (the name is
 * its own there). */
#include "expr/expr.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct refctx {
  eng__runbook *rb;
  eng__diags *d;
  const eng__step *self; /* the step whose `outputs` the code sees, or NULL */
  const eng__node *node; /* where the code is, for the position */
  const char *what;      /* "if", "check", "parameter 'x'"... */
  const eng__step *user; /* the step the code belongs to, or NULL */
  bool in_if;            /* the code is that step's condition */
  bool in_list;          /* the code is that step's for_each (no `each`) */
  /* names looked up by every reference, hashed once (a large runbook has
   * thousands of references to thousands of names): param name -> 1;
   * step id -> index; an id with '-' spelled '_' -> the first such index */
  json_t *params, *ids, *underscored;
} refctx;

static bool ident_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* The next name after a dot or in ["..."] at *p; NULL when none. */
static char *next_name(const char **p) {
  const char *s = *p;
  while (*s == ' ') s++;
  if (*s == '.' && s[1] != '.') {
    s++;
    while (*s == ' ') s++;
    const char *e = s;
    while (ident_char(*e)) e++;
    if (e == s) return NULL;
    *p = e;
    return eng__xstrndup(s, (size_t)(e - s));
  }
  if (*s == '[') {
    s++;
    while (*s == ' ') s++;
    if (*s != '"' && *s != '\'') return NULL; /* a computed key */
    char q = *s++;
    const char *e = strchr(s, q);
    if (!e) return NULL;
    const char *close = e + 1;
    while (*close == ' ') close++;
    if (*close != ']') return NULL;
    *p = close + 1;
    return eng__xstrndup(s, (size_t)(e - s));
  }
  return NULL;
}

/* id with every '-' written '_' (malloc'd). */
static char *underscored(const char *id) {
  char *u = eng__xstrdup(id);
  for (char *x = u; *x; x++)
    if (*x == '-') *x = '_';
  return u;
}

/* Does step id s answer to `id`: the same, or its underscore spelling? */
static bool answers_to(const char *s, const char *id) {
  if (strlen(s) != strlen(id)) return false;
  for (size_t k = 0; s[k]; k++)
    if (!(s[k] == id[k] || (s[k] == '-' && id[k] == '_'))) return false;
  return true;
}

/* The first step (in the runbook's order) that answers to id. */
static const eng__step *step_named(const refctx *c, const char *id) {
  eng__runbook *rb = c->rb;
  json_t *e = json_object_get(c->ids, id);
  char *u = underscored(id);
  json_t *v = json_object_get(c->underscored, u);
  free(u);
  size_t first = e ? (size_t)json_integer_value(e) : rb->n_steps;
  if (v && (size_t)json_integer_value(v) < first) {
    size_t i = (size_t)json_integer_value(v);
    if (answers_to(rb->steps[i].id, id)) return &rb->steps[i];
    /* an earlier step spells it with '_' where id has '-': look in order */
    for (i = 0; i < first; i++)
      if (rb->steps[i].id && answers_to(rb->steps[i].id, id))
        return &rb->steps[i];
  }
  return e ? &rb->steps[first] : NULL;
}

static void index_names(refctx *c) {
  c->params = json_object();
  c->ids = json_object();
  c->underscored = json_object();
  for (size_t i = 0; i < c->rb->n_params; i++)
    json_object_set_new(c->params, c->rb->params[i].name, json_true());
  for (size_t i = 0; i < c->rb->n_steps; i++) {
    const char *id = c->rb->steps[i].id;
    if (!id) continue;
    if (!json_object_get(c->ids, id))
      json_object_set_new(c->ids, id, json_integer((json_int_t)i));
    char *u = underscored(id);
    if (!json_object_get(c->underscored, u))
      json_object_set_new(c->underscored, u, json_integer((json_int_t)i));
    free(u);
  }
}

static void err(refctx *c, const char *fmt, const char *a, const char *b,
                const char *hint) {
  char msg[512];
  snprintf(msg, sizeof msg, fmt, a, b);
  eng__diag_error(c->d, c->rb->file, c->node ? c->node->line : 0,
                  c->node ? c->node->col : 0, "%s: %s%s%s%s", c->what, msg,
                  hint ? " (did you mean '" : "", hint ? hint : "",
                  hint ? "'?)" : "");
}

/* Warn when the code of c->user reads the outputs of a step that may not
 * have run by then. */
static void check_ran(refctx *c, const eng__step *st, const char *shown) {
  const eng__step *u = c->user;
  if (!u || u == st || c->in_if || st->is_finally) return;
  const char *why = NULL;
  if (!u->is_finally) {
    if (!eng__runbook_depends(c->rb, u->idx, st->idx))
      why = "is not among the steps it needs (add it to 'needs')";
  } else {
    /* fine when the condition looks at it, or at a step that needs it */
    const char *cond = u->if_node ? u->if_node->str : "";
    bool looked = false;
    for (size_t y = 0; *cond && y < c->rb->n_main && !looked; y++) {
      const eng__step *ys = &c->rb->steps[y];
      char *us = eng__xstrdup(ys->id);
      for (char *x = us; *x; x++)
        if (*x == '-') *x = '_';
      if (strstr(cond, ys->id) || strstr(cond, us)) {
        looked = y == st->idx || eng__runbook_depends(c->rb, y, st->idx);
      }
      free(us);
    }
    if (!looked)
      why = "may have been skipped or failed, and this finally step's 'if:' "
            "does not look at it (add e.g. steps.ID.status == \"ok\")";
  }
  if (why)
    eng__diag_warn(c->d, c->rb->file, c->node ? c->node->line : 0,
                   c->node ? c->node->col : 0,
                   "%s: %s: step '%s' %s; it may not have run when '%s' "
                   "starts",
                   c->what, shown, st->id, why, u->id);
}

/* Are the outputs of this step a closed set (declared by its action)? */
static bool outputs_closed(const eng__step *s) {
  if (!s->action) return false;
  const eng_action *a = s->action->action;
  if (s->action->builtin && (!strcmp(a->name, "lua") || !strcmp(a->name, "http")))
    return false; /* whatever the script or the JSON answer holds */
  return a->outputs && a->outputs->name;
}

static void check_output(refctx *c, const eng__step *s, const char *name,
                         const char *shown) {
  if (!outputs_closed(s)) return;
  const char *cands[256];
  size_t n = 0;
  for (const eng_output *o = s->action->action->outputs; o && o->name && n < 255; o++) {
    if (!strcmp(o->name, name)) return;
    cands[n++] = o->name;
  }
  for (size_t k = 0; s->outputs && k < s->outputs->n && n < 255; k++) {
    if (!strcmp(s->outputs->keys[k]->str, name)) return;
    cands[n++] = s->outputs->keys[k]->str;
  }
  const char *hint = eng__suggest(name, cands, n);
  err(c, "%s: %s has no such output", shown, s->action->full, hint);
}

/* Past a string literal, a long bracket or a comment at *p: true when one
 * was skipped. */
static bool skip_non_code(const char **pp) {
  const char *p = *pp;
  if (*p == '"' || *p == '\'') {
    char q = *p++;
    while (*p && *p != q) p += (*p == '\\' && p[1]) ? 2 : 1;
    if (*p) p++;
  } else if (p[0] == '[' && (p[1] == '[' || p[1] == '=')) {
    const char *e = strstr(p, "]]");
    p = e ? e + 2 : p + strlen(p);
  } else if (p[0] == '-' && p[1] == '-') {
    while (*p && *p != '\n') p++;
  } else {
    return false;
  }
  *pp = p;
  return true;
}

/* params.NAME at *q: a declared parameter. */
static void check_param_ref(refctx *c, const char **q) {
  char *name = next_name(q);
  if (!name) return;
  if (!json_object_get(c->params, name)) {
    /* the nearest name only for an error that is shown */
    const char **pn = NULL;
    const char *hint = NULL;
    if (!eng__diags_hidden(c->d)) {
      pn = eng__xcalloc(c->rb->n_params + 1, sizeof *pn);
      for (size_t i = 0; i < c->rb->n_params; i++) pn[i] = c->rb->params[i].name;
      hint = eng__suggest(name, pn, c->rb->n_params);
    }
    err(c, "params.%s: no such parameter%s", name,
        c->rb->n_params ? "" : " (the runbook declares none)", hint);
    free(pn);
  }
  free(name);
}

/* steps.ID that names no step: said with the nearest id, and, for
 * steps.safety-backup (Lua reads steps.safety - backup), the spelling
 * that works. q is just past ID. */
static void unknown_step(refctx *c, const char *id, const char *q) {
  const char *ids[4096];
  size_t k = 0;
  if (!eng__diags_hidden(c->d)) /* the nearest id only for an error shown */
    for (size_t i = 0; i < c->rb->n_steps && k < 4096; i++)
      if (c->rb->steps[i].id) ids[k++] = c->rb->steps[i].id;
  const char *hint = eng__suggest(id, ids, k);
  char *dashed = NULL;
  if (*q == '-' && ident_char(q[1])) {
    const char *e = q + 1;
    while (ident_char(*e) || (*e == '-' && ident_char(e[1]))) e++;
    dashed = eng__asprintf("%s%.*s", id, (int)(e - q), q);
    if (step_named(c, dashed)) {
      for (char *x = dashed; *x; x++)
        if (*x == '-') *x = '_';
      hint = dashed;
    }
  }
  err(c, "steps.%s: no such step%s", id,
      dashed && hint == dashed ? " (Lua reads a dash as a minus: use "
                                 "the underscore spelling or steps[\"...\"])" : "",
      hint);
  free(dashed);
}

/* The outputs of a for_each step: its items and their counts. */
static const char *const fan_outputs[] = {"items", "count", "ok", "warn",
                                          "failed", "skipped"};

/* steps.ID.outputs.NAME of a for_each step (q just past NAME): one of
 * fan_outputs, and in items[...].outputs.X, X an output of its action. */
static void check_fan_output(refctx *c, const eng__step *st, const char *id,
                             const char *out, const char **q) {
  size_t n = sizeof fan_outputs / sizeof *fan_outputs;
  bool known = false;
  for (size_t k = 0; k < n; k++)
    if (!strcmp(out, fan_outputs[k])) known = true;
  if (!known) {
    char *shown = eng__asprintf("steps.%s.outputs.%s", id, out);
    err(c, "%s: step '%s' runs for_each: its outputs are items (each with "
           "value, index, key, status, outputs, error), count, ok, warn, "
           "failed and skipped", shown, st->id, eng__suggest(out, fan_outputs, n));
    free(shown);
    return;
  }
  const char *p = *q;
  if (strcmp(out, "items") || *p != '[') return;
  int depth = 0; /* past [...] (any index) */
  do {
    if (*p == '[') depth++;
    else if (*p == ']') depth--;
    p++;
  } while (*p && depth > 0);
  char *f = next_name(&p);
  char *name = f && !strcmp(f, "outputs") ? next_name(&p) : NULL;
  if (name) {
    char *shown = eng__asprintf("steps.%s.outputs.items[...].outputs.%s", id, name);
    check_output(c, st, name, shown);
    free(shown);
  }
  free(name);
  free(f);
  *q = p;
}

/* each.value / each.index / each.key at *q: only in a for_each step. */
static void check_each_ref(refctx *c, const char **q) {
  const char *p = *q;
  char *field = next_name(&p);
  static const char *const fields[] = {"value", "index", "key"};
  if (!c->user || !c->user->for_each || c->in_list) {
    err(c, "each%s%s: 'each' is set only in the items of a step with "
           "'for_each' (add for_each: to this step, or read the items "
           "through steps.ID.outputs.items)",
        field ? "." : "", field ? field : "", NULL);
  } else if (field && strcmp(field, "value") && strcmp(field, "index") &&
             strcmp(field, "key")) {
    err(c, "each.%s: an item has value, index and key (a map's)%s", field,
        "", eng__suggest(field, fields, 3));
  }
  free(field);
  *q = p;
}

/* steps.ID[.status | .outputs.NAME] at *q. */
static void check_step_ref(refctx *c, const char **q) {
  char *id = next_name(q);
  if (!id) return;
  const eng__step *st = step_named(c, id);
  if (!st) {
    unknown_step(c, id, *q);
    free(id);
    return;
  }
  char *field = next_name(q);
  if (field && strcmp(field, "status") && strcmp(field, "outputs")) {
    static const char *const fields[] = {"status", "outputs"};
    err(c, "steps.%s.%s: a step has 'status' and 'outputs'", id, field,
        eng__suggest(field, fields, 2));
  } else if (field && !strcmp(field, "outputs")) {
    char *out = next_name(q);
    if (out && st->for_each) {
      check_fan_output(c, st, id, out, q);
      char *shown = eng__asprintf("steps.%s.outputs.%s", id, out);
      check_ran(c, st, shown);
      free(shown);
    } else if (out) {
      char *shown = eng__asprintf("steps.%s.outputs.%s", id, out);
      check_output(c, st, out, shown);
      check_ran(c, st, shown);
      free(shown);
    }
    free(out);
  }
  free(field);
  free(id);
}

/* outputs.NAME at *q, in a step's own check or outputs. */
static void check_own_output_ref(refctx *c, const char **q) {
  char *out = next_name(q);
  if (!out) return;
  char *shown = eng__asprintf("outputs.%s", out);
  check_output(c, c->self, out, shown);
  free(shown);
  free(out);
}

/* The next name in Lua code from *p that is not a field (after '.' or
 * ':'), outside strings and comments: its start, its length in *n, *p
 * after it; NULL at the end. */
static const char *next_code_name(const char *code, const char **p, size_t *n) {
  while (**p) {
    if (skip_non_code(p)) continue;
    const char *c = *p;
    if (!ident_char(*c) || (c > code && (ident_char(c[-1]) || c[-1] == '.' || c[-1] == ':'))) {
      (*p)++;
      continue;
    }
    while (ident_char(**p)) (*p)++;
    *n = (size_t)(*p - c);
    return c;
  }
  return NULL;
}

static void check_code(refctx *c, const char *code) {
  if (!code) return;
  /* a local named like a root: the code means its own */
  static const char *const roots[] = {"params", "steps", "outputs", "each"};
  for (size_t r = 0; r < 4; r++) {
    char pat[32];
    snprintf(pat, sizeof pat, "local %s", roots[r]);
    if (strstr(code, pat)) return;
  }
  size_t n;
  for (const char *p = code, *s; (s = next_code_name(code, &p, &n));) {
    const char *q = p;
    if (n == 6 && !strncmp(s, "params", 6)) check_param_ref(c, &q);
    else if (n == 5 && !strncmp(s, "steps", 5)) check_step_ref(c, &q);
    else if (n == 7 && !strncmp(s, "outputs", 7) && c->self) check_own_output_ref(c, &q);
    else if (n == 4 && !strncmp(s, "each", 4)) check_each_ref(c, &q);
    p = q;
  }
}

bool eng__code_reads(const char *code, const char *name) {
  size_t len = strlen(name), n;
  if (!code) return false;
  for (const char *p = code, *s; (s = next_code_name(code, &p, &n));)
    if (n == len && !strncmp(s, name, len)) return true;
  return false;
}

/* Every ${...} of a node tree (the code inside), or the node's text when
 * it is Lua code as a whole. */
static void check_tree(refctx *c, const eng__node *n, bool code) {
  if (!n) return;
  if (n->kind == ENG__N_SCALAR) {
    const eng__node *saved = c->node;
    c->node = n;
    if (code) {
      check_code(c, n->str);
    } else if (n->tpl) {
      for (size_t i = 0; i < n->tpl->n; i++)
        if (n->tpl->parts[i].expr) check_code(c, n->tpl->parts[i].text);
    }
    c->node = saved;
    return;
  }
  for (size_t i = 0; i < n->n; i++) check_tree(c, n->vals[i], code);
}

/* Lua code parameters of built-ins (their text is code, not a template). */
static bool is_code_param(const eng__step *s, const char *k) {
  if (!s->action || !s->action->builtin) return false;
  const char *a = s->action->action->name;
  return (!strcmp(a, "lua") && !strcmp(k, "script")) ||
         (!strcmp(a, "assert") && !strcmp(k, "that")) ||
         (!strcmp(a, "http") && !strcmp(k, "expect_json"));
}

void eng__refs_check(eng__runbook *rb, eng__diags *d) {
  refctx c = {rb, d, NULL, NULL, NULL, NULL, false, false, NULL, NULL, NULL};
  index_names(&c);
  for (size_t i = 0; i < rb->n_params; i++) {
    c.what = "parameter default";
    check_tree(&c, rb->params[i].def, false);
  }
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step *s = &rb->steps[i];
    char what[160];
    c.self = NULL;
    c.user = s;
    for (size_t k = 0; s->with && k < s->with->n; k++) {
      const char *key = s->with->keys[k]->str;
      snprintf(what, sizeof what, "step '%s': parameter '%s'", s->id, key);
      c.what = what;
      bool code = is_code_param(s, key) && s->with->vals[k]->kind == ENG__N_SCALAR &&
                  !eng__tpl_has_expr(s->with->vals[k]->str);
      check_tree(&c, s->with->vals[k], code);
    }
    if (s->for_each) {
      snprintf(what, sizeof what, "step '%s': for_each", s->id);
      c.what = what;
      c.in_list = true; /* the list is known before its items: no `each` */
      check_tree(&c, s->for_each, false);
      c.in_list = false;
      snprintf(what, sizeof what, "step '%s': name", s->id);
      check_tree(&c, s->name_node, false);
    }
    snprintf(what, sizeof what, "step '%s': 'if'", s->id);
    c.what = what;
    if (s->if_node) {
      char *code = eng__cond_code(s->if_node->str);
      c.node = s->if_node;
      c.in_if = true;
      check_code(&c, code);
      c.in_if = false;
      c.node = NULL;
      free(code);
    }
    c.self = s;
    snprintf(what, sizeof what, "step '%s': 'check'", s->id);
    check_tree(&c, s->check_node, true);
    snprintf(what, sizeof what, "step '%s': outputs", s->id);
    check_tree(&c, s->outputs, false);
  }
  c.self = NULL;
  c.user = NULL;
  c.what = "slo.backup_time";
  check_tree(&c, rb->slo_backup_time, false);
  c.what = "slo.recovery_point";
  check_tree(&c, rb->slo_recovery_point, false);
  c.what = "slo.recovery_target";
  check_tree(&c, rb->slo_recovery_target, false);
  c.what = "drill";
  check_tree(&c, rb->drill, false);
  eng__node *checks = eng__node_get(rb->guards, "checks");
  c.what = "guards.checks";
  for (size_t i = 0; checks && checks->kind == ENG__N_SEQ && i < checks->n; i++) {
    eng__node *t = eng__node_get(checks->vals[i], "that");
    if (!t || t->kind != ENG__N_SCALAR) continue;
    char *code = eng__cond_code(t->str);
    c.node = t;
    check_code(&c, code);
    free(code);
  }
  json_decref(c.params);
  json_decref(c.ids);
  json_decref(c.underscored);
}
