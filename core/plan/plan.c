/* plan.c - the validated plan: every step's action resolved against the
 * registry, its parameters checked against the declarations, its Lua
 * compiled; the steps --only / --from select; and `engine plan`, which
 * prints what would run, with each target and the guards' decision. */
#include "plan/plan.h"
#include "shell/shell.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct plan_ctx {
  eng__diags *d;
  const char *file;
} plan_ctx;

#define ERR(ld, node, ...)                                                 \
  eng__diag_error((ld)->d, (ld)->file, (node) ? (node)->line : 0,          \
                  (node) ? (node)->col : 0, __VA_ARGS__)

/* ---- validation against the registry and Lua --------------------------- */

/* Compile code for validation (the reference in *ref when given); false
 * (said at node n, what naming it) when it does not compile. Once the code
 * no longer fits the Lua memory cap nothing more is compiled: that is said
 * once, not for every expression left. */
static bool compile_ref(plan_ctx *ld, eng__lua *L, const eng__node *n,
                        const char *code, int kind, int line, const char *what,
                        int *ref) {
  if (eng__lua_exhausted(L)) return false;
  char err[1024];
  int r, rc = eng__lua_compile(L, code, kind, ld->file, line, ref ? ref : &r,
                               err, sizeof err);
  if (rc == ENG_ERR_NOMEM)
    eng__tpl_say_nomem(L, ld->d, ld->file, n, what);
  else if (rc != ENG_OK)
    ERR(ld, n, "%s: Lua error: %s", what, err);
  return rc == ENG_OK;
}

static bool compile(plan_ctx *ld, eng__lua *L, const eng__node *n,
                    const char *code, int kind, int line, const char *what) {
  return compile_ref(ld, L, n, code, kind, line, what, NULL);
}

/* Built-in parameters that hold Lua code rather than values. */
static int lua_param_kind(const eng__action_ref *a, const char *param) {
  if (!a->builtin) return -1;
  const char *n = a->action->name;
  if (!strcmp(n, "assert") && !strcmp(param, "that")) return ENG__LUA_EXPR;
  if (!strcmp(n, "http") && !strcmp(param, "expect_json"))
    return ENG__LUA_EXPR;
  if (!strcmp(n, "lua") && !strcmp(param, "script")) return ENG__LUA_CHUNK;
  return -1;
}

/* A list parameter whose value is one ${...} with only blanks around it
 * (the newline a '|' block adds): the text around it makes the value a
 * string, so the list the expression returns never arrives as a list. */
static void list_not_text(plan_ctx *ld, const eng__step *s, const eng_param *p,
                          const eng__node *v) {
  size_t exprs = 0;
  bool newline = false;
  for (size_t i = 0; i < v->tpl->n; i++) {
    const char *t = v->tpl->parts[i].text;
    if (v->tpl->parts[i].expr) {
      exprs++;
      continue;
    }
    if (t[strspn(t, " \t\r\n")]) return; /* text: one string is meant */
    newline |= strchr(t, '\n') != NULL;
  }
  if (exprs != 1 || v->tpl->whole) return;
  ERR(ld, v, "step '%s': parameter '%s' of %s takes a list, but its value is "
             "a ${...} with %s, which make it one string: the list the "
             "expression returns would arrive as its text; %s",
      s->id, p->name, s->action->full,
      newline ? "the newline a '|' block adds after it" : "blanks around it",
      newline ? "write '|-' (no newline), or the ${...} on the key's line"
              : "remove the blanks");
}

static void validate_with(plan_ctx *ld, eng__step *s, eng__lua *L) {
  const eng__action_ref *a = s->action;
  const eng_param *decl = a->action->params;
  const char *names[128];
  size_t nn = 0;
  for (const eng_param *p = decl; p && p->name && nn < 127; p++)
    names[nn++] = p->name;
  names[nn] = NULL;
  eng__node *w = s->with;
  for (size_t i = 0; w && i < w->n; i++) {
    const char *k = w->keys[i]->str;
    const eng_param *p = NULL;
    for (const eng_param *q = decl; q && q->name; q++)
      if (!strcmp(q->name, k)) p = q;
    if (!p) {
      const char *hint = eng__suggest(k, names, nn);
      if (hint)
        ERR(ld, w->keys[i],
            "step '%s': unknown parameter '%s' for %s (did you mean '%s'?)",
            s->id, k, a->full, hint);
      else
        ERR(ld, w->keys[i], "step '%s': unknown parameter '%s' for %s",
            s->id, k, a->full);
      continue;
    }
    eng__node *v = w->vals[i];
    int lk = lua_param_kind(a, k);
    char what[200];
    snprintf(what, sizeof what, "step '%s': parameter '%s'", s->id, k);
    if (lk >= 0 && v->kind == ENG__N_SCALAR && !eng__tpl_has_expr(v->str)) {
      char where[160];
      snprintf(where, sizeof where, "step '%s': parameter ", s->id);
      if (!eng__code_cut(ld->d, ld->file, v, where, k))
        compile(ld, L, v, v->str, lk, v->line, what);
      continue;
    }
    if (eng__tpl_compile_tree(L, v, ld->file, ld->d, what)) continue;
    if (v->kind == ENG__N_SCALAR && v->tpl) { /* known at run time */
      if (p->type == ENG_T_LIST) list_not_text(ld, s, p, v);
      continue;
    }
    if (v->kind != ENG__N_SCALAR && !eng__tpl_static(v)) continue;
    if (v->kind == ENG__N_SCALAR || !v->tpl) {
      bool has_tpl = false;
      for (size_t j = 0; j < v->n; j++)
        if (v->vals[j]->tpl) has_tpl = true;
      if (has_tpl) continue;
    }
    json_t *j = eng__node_to_json(v);
    char err[512];
    json_t *c = eng__convert_param(j, p, err, sizeof err);
    if (!c)
      ERR(ld, v, "step '%s': parameter '%s' of %s: %s", s->id, k, a->full,
          err);
    json_decref(c);
    json_decref(j);
  }
  for (const eng_param *p = decl; p && p->name; p++) {
    if (!(p->flags & ENG_P_REQUIRED) || p->def) continue;
    if (!eng__node_get(w, p->name))
      ERR(ld, w ? w : s->node,
          "step '%s': missing required parameter '%s' for %s (%s)", s->id,
          p->name, a->full, p->doc ? p->doc : "see 'engine plugins'");
  }
}

static void validate_step(plan_ctx *ld, eng__step *s, eng__lua *L) {
  if (!s->uses) return;
  s->action = eng__registry_find(s->uses);
  eng__node *un = eng__node_get(s->node, "uses");
  if (!s->action) {
    const char *const *names;
    size_t n = eng__registry_names(&names);
    const char *hint = eng__suggest(s->uses, names, n);
    const eng__plugin_failure *f;
    size_t nf = eng__registry_failures(&f);
    const char *dot = strchr(s->uses, '.');
    for (size_t i = 0; dot && i < nf; i++)
      if (strlen(f[i].stem) == (size_t)(dot - s->uses) &&
          !strncmp(f[i].stem, s->uses, (size_t)(dot - s->uses))) {
        ERR(ld, un, "step '%s': plugin '%s' could not be loaded: %s", s->id,
            f[i].stem, f[i].message);
        return;
      }
    if (hint)
      ERR(ld, un, "step '%s': unknown action '%s' (did you mean '%s'?)",
          s->id, s->uses, hint);
    else if (dot)
      ERR(ld, un,
          "step '%s': unknown action '%s' (is the plugin installed? see "
          "'engine plugins', --plugin-path)",
          s->id, s->uses);
    else
      ERR(ld, un, "step '%s': unknown action '%s' (built-ins: shell, http, "
                  "lua, assert, approve, sleep)",
          s->id, s->uses);
    return;
  }
  validate_with(ld, s, L);
  char what[200];
  if (s->for_each) {
    snprintf(what, sizeof what, "step '%s': for_each", s->id);
    eng__tpl_compile_tree(L, s->for_each, ld->file, ld->d, what);
    /* an item's title may read `each` (shown when the item starts) */
    snprintf(what, sizeof what, "step '%s': name", s->id);
    if (s->name_node) eng__tpl_compile_tree(L, s->name_node, ld->file, ld->d, what);
  }
  if (s->if_node) {
    char *code = eng__cond_code(s->if_node->str);
    s->if_each = s->for_each && eng__code_reads(code, "each");
    snprintf(what, sizeof what, "step '%s': 'if'", s->id);
    compile_ref(ld, L, s->if_node, code, ENG__LUA_EXPR, s->if_node->line, what,
                &s->if_ref);
    free(code);
  }
  if (s->check_node) {
    snprintf(what, sizeof what, "step '%s': 'check'", s->id);
    compile_ref(ld, L, s->check_node, s->check_node->str, ENG__LUA_CHUNK,
                s->check_node->line + (s->check_node->plain ? 0 : 1), what,
                &s->check_ref);
  }
  if (s->outputs) {
    snprintf(what, sizeof what, "step '%s': outputs", s->id);
    eng__tpl_compile_tree(L, s->outputs, ld->file, ld->d, what);
  }
}

int eng__plan_validate(eng__runbook *rb, eng__lua *L, eng__diags *d) {
  size_t errors0 = d->errors;
  plan_ctx ld = {d, rb->file};
  for (size_t i = 0; i < rb->n_params; i++)
    if (rb->params[i].def)
      eng__tpl_compile_tree(L, rb->params[i].def, rb->file, d,
                            "parameter default");
  for (size_t i = 0; i < rb->n_steps; i++) validate_step(&ld, &rb->steps[i], L);
  if (rb->slo_backup_time)
    eng__tpl_compile_tree(L, rb->slo_backup_time, rb->file, d,
                          "slo.backup_time");
  if (rb->slo_recovery_point)
    eng__tpl_compile_tree(L, rb->slo_recovery_point, rb->file, d,
                          "slo.recovery_point");
  if (rb->slo_recovery_target)
    eng__tpl_compile_tree(L, rb->slo_recovery_target, rb->file, d,
                          "slo.recovery_target");
  if (rb->drill)
    eng__tpl_compile_tree(L, rb->drill, rb->file, d, "drill");
  if (rb->lock) {
    eng__tpl_compile_tree(L, rb->lock, rb->file, d, "lock");
    if (strstr(rb->lock->str, "steps."))
      eng__diag_error(d, rb->file, rb->lock->line, rb->lock->col,
                      "'lock' is taken before any step runs: it may read "
                      "params and env, not steps");
  }
  if (rb->guards) {
    eng__tpl_compile_tree(L, rb->guards, rb->file, d, "guards");
    eng__node *checks = eng__node_get(rb->guards, "checks");
    for (size_t i = 0; checks && checks->kind == ENG__N_SEQ && i < checks->n;
         i++) {
      eng__node *t = eng__node_get(checks->vals[i], "that");
      if (!t || t->kind != ENG__N_SCALAR || t->comment_after) continue;
      char *code = eng__cond_code(t->str);
      compile(&ld, L, t, code, ENG__LUA_EXPR, t->line, "guards.checks");
      free(code);
    }
  }
  if (d->errors == errors0) eng__refs_check(rb, d); /* once it all compiled */
  return d->errors > errors0 ? ENG_ERR_INVALID : ENG_OK;
}

/* ---- selection (--only / --from) ---------------------------------------- */

static void mark_needed(eng__run *r, size_t i) {
  if (r->st[i].selected) return;
  r->st[i].selected = true;
  for (size_t k = 0; k < r->rb->steps[i].n_deps; k++)
    mark_needed(r, r->rb->steps[i].deps[k]);
}

int eng__plan_select(eng__run *r, eng__diags *d) {
  eng__runbook *rb = r->rb;
  const char *which = r->opts->only ? r->opts->only : r->opts->from;
  for (size_t i = 0; i < rb->n_steps; i++) r->st[i].selected = !which;
  for (size_t i = rb->n_main; i < rb->n_steps; i++) r->st[i].selected = true;
  if (!which) return 0;
  eng__step *s = eng__runbook_step(rb, which);
  if (!s || s->is_finally) {
    const char **ids = eng__xcalloc(rb->n_main + 1, sizeof *ids);
    for (size_t i = 0; i < rb->n_main; i++) ids[i] = rb->steps[i].id;
    const char *hint = eng__suggest(which, ids, rb->n_main);
    eng__diag_error(d, rb->file, 0, 0, "%s: no step '%s'%s%s%s",
                    r->opts->only ? "--only" : "--from", which,
                    hint ? " (did you mean '" : "", hint ? hint : "",
                    hint ? "'?)" : "");
    free(ids);
    return -1;
  }
  if (r->opts->only) {
    mark_needed(r, s->idx);
  } else {
    for (size_t i = s->idx; i < rb->n_main; i++) r->st[i].selected = true;
  }
  return 0;
}

/* ---- plan -------------------------------------------------------------------- */

/* What the guards understood of a command line, one line per target. */
static void print_command(eng__run *r, const char *line, const char *env_text) {
  static const char *const kinds[] = {
      [ENG_TARGET_DATABASE] = "database", [ENG_TARGET_VOLUME] = "volume",
      [ENG_TARGET_CONTAINER] = "container", [ENG_TARGET_FILE] = "path"};
  eng__cmd_analysis a;
  eng__cmd_analyse_env_text(line, env_text, &a);
  for (size_t k = 0; k < a.n; k++) {
    eng__cmd_finding *f = &a.f[k];
    char *t = eng__redact(r->redact, f->target ? f->target : "(not known)");
    printf("        %s -> %s %s: %s (%s)\n", f->tool,
           (unsigned)f->kind < sizeof kinds / sizeof *kinds && kinds[f->kind]
               ? kinds[f->kind] : "target",
           t, f->side == ENG_SIDE_READ_ONLY ? "read" : eng__side_names[f->side],
           f->what);
    free(t);
  }
  if (a.unverified)
    printf("        unverified: %s (allowed unless guards.unverified_commands: "
           "refuse)\n", a.unverified);
  eng__cmd_analysis_free(&a);
}

static const char *const decision_text[] = {
    [ENG__G_PASS] = "pass",
    [ENG__G_REFUSED] = "REFUSED",
    [ENG__G_IF_RUNS] = "REFUSED if it runs",
    [ENG__G_LATER] = "resolved at run time",
    [ENG__G_CONNECTION] = "pass; the database it acts on is checked with the "
                          "server's identity when it runs",
    [ENG__G_NOT_RUN] = "not run",
    [ENG__G_NOT_SELECTED] = "not selected",
    [ENG__G_FILE] = "file"};

/* One target as the guards decided it (eng__guards_decide: the run's start
 * decides with the same function). */
static void print_target(eng__run *r, const eng__gtarget *t) {
  char *v = eng__redact(r->redact, t->value ? t->value : t->raw ? t->raw : "(at run time)");
  char *detail = t->detail ? eng__redact(r->redact, t->detail) : NULL;
  printf("      target %-10s %s%s%s%s%s%s  [%s]\n", t->param, v,
         detail ? " (" : "", detail ? detail : "", detail ? ")" : "",
         t->item ? "  item " : "", t->item ? t->item : "", decision_text[t->d]);
  if (t->kind == ENG_TARGET_COMMAND && t->value)
    print_command(r, t->value, t->evidence);
  if (t->why) {
    char *why = eng__redact(r->redact, t->why);
    printf("        %s\n", why);
    free(why);
  }
  free(detail);
  free(v);
}

/* A for_each step: its items when the list is known now, else where the
 * list comes from. */
static void print_fan_out(eng__run *r, const eng__step *s, const json_t *list) {
  int par = s->max_parallel < r->opts->jobs ? s->max_parallel : r->opts->jobs;
  if (!list) {
    char *raw = eng__redact(r->redact, s->for_each->kind == ENG__N_SCALAR
                                           ? s->for_each->str : "(a list)");
    printf("      for each of %s (known at run time: each item is held to "
           "the guards when it starts), at most %d at once\n", raw, par);
    free(raw);
    return;
  }
  eng__buf b = {0};
  size_t n = json_is_array(list) ? json_array_size(list) : json_object_size(list);
  eng__fan *f = eng__fan_new(s, list);
  for (size_t k = 0; k < f->n && k < 20; k++)
    eng__buf_addf(&b, "%s%s", k ? ", " : "", f->items[k].label);
  char *shown = eng__redact(r->redact, b.data ? b.data : "");
  printf("      for each of %zu item%s: %s%s, at most %d at once%s\n", n,
         n == 1 ? "" : "s", shown, n > 20 ? ", ..." : "", par,
         s->fail_fast ? "" : " (fail_fast: false)");
  free(shown);
  eng__buf_free(&b);
  eng__step_state tmp = {.fan = f};
  eng__step_state_free(&tmp);
}

int eng__plan_print(eng__run *r) {
  eng__runbook *rb = r->rb;
  int code = ENG_EXIT_OK;
  bool later_refusals = false;
  printf("plan: %s (%s), %zu steps, %zu in finally\n", rb->name, rb->file,
         rb->n_main, rb->n_steps - rb->n_main);
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step *s = &rb->steps[i];
    if (i == rb->n_main) printf("finally:\n");
    eng__gstep g;
    eng__console_mute(true); /* each refusal is shown under its target */
    eng__guards_decide(r, i, true, &g);
    eng__console_mute(false);
    eng__buf deps = {0};
    for (size_t k = 0; k < s->n_deps; k++)
      eng__buf_addf(&deps, "%s%s", k ? "," : "", rb->steps[s->deps[k]].id);
    printf("  %-24s %-24s %-11s%s%s%s%s\n", s->id, s->action->full,
           eng__side_names[g.side], deps.len ? " needs " : "",
           deps.len ? deps.data : "", r->st[i].selected ? "" : " (not selected)",
           !r->st[i].selected               ? ""
           : g.cond == ENG__COND_FALSE ? " (its condition is false: not run)"
           : g.cond == ENG__COND_LATER ? " (runs if its condition holds then)"
                                       : "");
    eng__buf_free(&deps);
    if (s->for_each) print_fan_out(r, s, g.list);
    if (s->action->action->describe && g.cond != ENG__COND_FALSE && !g.list) {
      char what[512] = "";
      s->action->action->describe(g.known, what, sizeof what);
      if (what[0]) {
        char *shown = eng__redact(r->redact, what);
        printf("      will %s\n", shown);
        free(shown);
      }
    }
    for (size_t k = 0; k < g.n; k++) print_target(r, &g.t[k]);
    if (g.require_refused) eng__guards_static(r, i, stdout);
    if (g.refused) code = ENG_EXIT_REFUSED;
    if (g.refused_if_runs) later_refusals = true;
    eng__gstep_free(&g);
  }
  if (rb->slo_rto_ms >= 0 || rb->slo_rpo_ms >= 0) {
    char a[32], b[32];
    printf("slo: rto %s, rpo %s\n",
           rb->slo_rto_ms >= 0 ? eng__fmt_duration(rb->slo_rto_ms, a, sizeof a)
                               : "-",
           rb->slo_rpo_ms >= 0 ? eng__fmt_duration(rb->slo_rpo_ms, b, sizeof b)
                               : "-");
  }
  printf("plan: nothing was run%s%s\n",
         code == ENG_EXIT_REFUSED ? "; some steps would be refused" : "",
         later_refusals ? "; some steps would be refused if they run (their "
                          "conditions are known only then)"
                        : "");
  return code;
}
