/* guards.c - the runbook's guards (docs/guards.md): the protected lists and
 * forbidden commands resolved into the run's policy (policy.c applies it
 * to each target), `require` and Lua `checks` before a step starts, and the
 * static check of `require` against the DAG at plan time and run start. */
#include "plan/plan.h"

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
        !ancestor(r->rb, i, ns->idx)) {
      if (out)
        fprintf(out, "      guard require: '%s' must end ok before '%s', but "
                     "'%s' does not depend on it  [REFUSED]\n",
                need->str, s->id, s->id);
      return ENG_ERR_REFUSED;
    }
  }
  return ENG_OK;
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

/* Static guards at run start: a refusal found now stops everything before
 * any side effect (finally steps still run, each guarded again). A step
 * whose condition is false now is not held to them (it will not run); one
 * whose condition is known only later is checked when it is reached. */
void eng__guards_run_start(eng__run *r) {
  eng__runbook *rb = r->rb;
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step *s = &rb->steps[i];
    if (!r->st[i].selected) continue;
    eng__cond_now cond = eng__guards_cond_now(r, i);
    if (cond == ENG__COND_FALSE) continue;
    int refused = eng__guards_static(r, i, NULL);
    if (refused != ENG_OK && !r->last_refusal) {
      r->last_refusal = eng__asprintf(
          "refused: a guards.require rule names '%s', but '%s' does not depend "
          "on the required step: add it to 'needs'",
          s->id, s->id);
      json_array_append_new(r->guard_log,
                            json_pack("{s:s, s:s, s:s}", "step", s->id,
                                      "decision", "refuse", "rule", "require"));
      eng__run_audit(r, "guard.refuse",
                     json_pack("{s:s, s:s, s:s}", "step", s->id, "rule",
                               "require", "message", r->last_refusal));
    }
    if (refused == ENG_OK && cond == ENG__COND_RUNS && s->with &&
        eng__tpl_static(s->with)) {
      char err[1024];
      json_t *params = eng__step_params(r, i, err, sizeof err);
      for (const eng_param *p = s->action->action->params;
           params && p && p->name && refused == ENG_OK; p++) {
        if (p->target == ENG_TARGET_NONE || p->target == ENG_TARGET_FILE)
          continue;
        json_t *v = json_object_get(params, p->name);
        char *line = p->target == ENG_TARGET_COMMAND ? eng__command_line(v)
                     : json_is_string(v) ? eng__xstrdup(json_string_value(v))
                                         : NULL;
        if (!line) continue;
        char *env_text = p->target == ENG_TARGET_COMMAND ? eng__command_env(params) : NULL;
        r->static_check = true;
        refused = eng__policy_check(r, s->id, p->target, line, env_text,
                                    eng__step_side(s, params));
        r->static_check = false;
        free(line);
        free(env_text);
      }
      json_decref(params);
    }
    if (refused == ENG_OK) continue;
    eng__step_state *st = &r->st[i];
    st->started_ms = st->ended_ms = eng__now_ms();
    free(st->error);
    st->error = eng__xstrdup(r->last_refusal ? r->last_refusal : "refused");
    st->status = ENG__S_REFUSED;
    eng__lua_set_step(r->L, s->id, "refused", NULL);
    eng__con_step_start(r, i);
    eng__con_step_end(r, i);
    r->refused = true;
    r->stopping = true;
    return;
  }
}
