/* runbook.c - the runbook model: YAML nodes into steps, params, guards and
 * the DAG, with a compiler-style diagnostic for every problem of shape.
 * Checking against plugins and compiling Lua is plan.c's. */
#include "model/model.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct loader {
  eng__runbook *rb;
  eng__diags *d;
  const char *file;
} loader;

#define ERR(ld, node, ...)                                                 \
  eng__diag_error((ld)->d, (ld)->file, (node) ? (node)->line : 0,          \
                  (node) ? (node)->col : 0, __VA_ARGS__)

static const char *const top_keys[] = {"version", "name",   "description",
                                       "params",  "slo",    "guards",
                                       "defaults", "steps", "finally",
                                       "lock",    "drill", NULL};
static const char *const param_keys[] = {"env",     "secret", "required",
                                         "default", "type",   "choices",
                                         "description", "doc", NULL};
static const char *const step_keys[] = {
    "id",    "name",    "uses",  "with",  "needs",    "if",
    "timeout", "retry", "continue_on_error", "check", "outputs",
    "recovered", "description", "keep", "temporary", "allow_disruptive",
    "for_each", "max_parallel", "fail_fast", NULL};
static const char *const retry_keys[] = {"attempts", "delay", "backoff",
                                         "max_delay", NULL};
static const char *const slo_keys[] = {"rto", "rpo", "backup_time",
                                       "recovery_point", "recovery_target",
                                       "rto_from", "rows_drop",
                                       "backup_size_drop", "rto_growth", NULL};
static const char *const defaults_keys[] = {"timeout", "retry", NULL};
static const char *const guard_keys[] = {
    "protected_databases", "protected_volumes", "protected_buckets",
    "protected_instances", "protected_paths", "forbidden_commands",
    "unverified_commands", "require", "checks", NULL};
static const char *const require_keys[] = {"step", "before", NULL};
static const char *const checks_keys[] = {"that", "message", NULL};

/* Every mapping of a runbook with fixed keys, by its place: the parser
 * checks keys against these lists and `engine schema` describes them. */
const eng__keyset eng__runbook_keysets[] = {
    {"", top_keys},
    {"params.*", param_keys},
    {"steps[]", step_keys},
    {"steps[].retry", retry_keys},
    {"slo", slo_keys},
    {"defaults", defaults_keys},
    {"guards", guard_keys},
    {"guards.require[]", require_keys},
    {"guards.checks[]", checks_keys},
    {NULL, NULL}};

const char *const *eng__keys(const eng__keyset *sets, const char *path) {
  for (; sets->path; sets++)
    if (!strcmp(sets->path, path)) return sets->keys;
  return NULL;
}

static size_t count(const char *const *v) {
  size_t n = 0;
  while (v[n]) n++;
  return n;
}

/* Report keys of a map that are not in `allowed`. */
static int check_keys(loader *ld, const eng__node *map,
                      const char *const *allowed, const char *where) {
  int bad = 0;
  for (size_t i = 0; i < map->n; i++) {
    const eng__node *k = map->keys[i];
    bool ok = false;
    for (size_t j = 0; allowed[j]; j++)
      if (strcmp(allowed[j], k->str) == 0) ok = true;
    if (ok) continue;
    const char *hint = eng__suggest(k->str, allowed, count(allowed));
    if (hint)
      ERR(ld, k, "%sunknown key '%s' (did you mean '%s'?)", where, k->str,
          hint);
    else
      ERR(ld, k, "%sunknown key '%s'", where, k->str);
    bad++;
  }
  return bad;
}

static bool want(loader *ld, const eng__node *n, eng__node_kind kind,
                 const char *what) {
  if (n && n->kind == kind) return true;
  const char *kn = kind == ENG__N_MAP   ? "a mapping"
                   : kind == ENG__N_SEQ ? "a list"
                                        : "a scalar";
  ERR(ld, n, "%s must be %s, not %s", what, kn, eng__node_kind_name(n));
  return false;
}

static int parse_bool(loader *ld, const eng__node *n, const char *what,
                      bool *out) {
  if (!want(ld, n, ENG__N_SCALAR, what)) return -1;
  json_t *v = eng__node_to_json(n);
  int rc = 0;
  if (json_is_boolean(v)) *out = json_is_true(v);
  else {
    ERR(ld, n, "%s must be true or false, not '%s'", what, n->str);
    rc = -1;
  }
  json_decref(v);
  return rc;
}

/* `keep: true` / `temporary: true`: what the step's resources are to the
 * run, over its action's default (`keep: false` is `temporary: true`). */
static void parse_disposition(loader *ld, const eng__node *n, eng__step *s,
                              const char *where) {
  eng__node *k = eng__node_get(n, "keep"), *t = eng__node_get(n, "temporary");
  bool keep = false, temp = false;
  if (k && parse_bool(ld, k, "keep", &keep) != 0) return;
  if (t && parse_bool(ld, t, "temporary", &temp) != 0) return;
  if (k && t && keep == temp) {
    ERR(ld, t, "%s'keep: %s' and 'temporary: %s' contradict each other: "
               "give one of them (keep: true for what the run delivers, "
               "temporary: true for what only exists for the run)",
        where, keep ? "true" : "false", temp ? "true" : "false");
    return;
  }
  if (!k && !t) return;
  s->has_disposition = true;
  s->disposition = (k ? keep : !temp) ? ENG_KEPT : ENG_TEMPORARY;
}

static int parse_duration(loader *ld, const eng__node *n, const char *what,
                          int64_t *ms) {
  if (!want(ld, n, ENG__N_SCALAR, what)) return -1;
  if (eng__parse_duration(n->str, ms) != 0) {
    ERR(ld, n,
        "%s: bad duration '%s' (use forms like 500ms, 30s, 5m, 1h, 1h30m)",
        what, n->str);
    return -1;
  }
  return 0;
}

/* A number from min to max, optionally followed by `unit` ("10%",
 * "1.5x"); else an error that shows `example` as the fix. */
static void parse_number(loader *ld, const eng__node *n, const char *what,
                         char unit, double min, double max,
                         const char *example, double *out) {
  if (!want(ld, n, ENG__N_SCALAR, what)) return;
  char *end;
  double v = strtod(n->str, &end);
  if (*end == unit) end++;
  if (end == n->str || *end || !(v >= min && v <= max)) {
    ERR(ld, n, "%s: '%s' is not a %s: write a number from %g to %g, e.g. %s",
        what, n->str, unit == '%' ? "percentage" : "factor", min, max, example);
    return;
  }
  *out = v;
}

static int parse_retry(loader *ld, const eng__node *n, eng__retry *r,
                       const char *where) {
  char what[160];
  snprintf(what, sizeof what, "%s'retry'", where);
  if (!want(ld, n, ENG__N_MAP, what)) return -1;
  int bad = check_keys(ld, n, retry_keys, where);
  eng__node *v;
  if ((v = eng__node_get(n, "attempts"))) {
    json_t *j = eng__node_to_json(v);
    if (!json_is_integer(j) || json_integer_value(j) < 1 ||
        json_integer_value(j) > 1000) {
      ERR(ld, v, "%sretry.attempts must be an integer from 1 to 1000",
          where);
      bad++;
    } else {
      r->attempts = (int)json_integer_value(j);
    }
    json_decref(j);
  }
  if ((v = eng__node_get(n, "delay")) &&
      parse_duration(ld, v, "retry.delay", &r->delay_ms) != 0)
    bad++;
  if ((v = eng__node_get(n, "max_delay")) &&
      parse_duration(ld, v, "retry.max_delay", &r->max_delay_ms) != 0)
    bad++;
  if ((v = eng__node_get(n, "backoff"))) {
    json_t *j = eng__node_to_json(v);
    if (!json_is_number(j) || json_number_value(j) < 1.0) {
      ERR(ld, v, "%sretry.backoff must be a number >= 1", where);
      bad++;
    } else {
      r->backoff = json_number_value(j);
    }
    json_decref(j);
  }
  return bad ? -1 : 0;
}

static bool valid_id(const char *s) {
  if (!*s) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' ||
          *s == '-'))
      return false;
  return true;
}

static bool valid_rb_name(const char *s) {
  if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9'))) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
      return false;
  return true;
}

static void load_params(loader *ld, eng__node *n) {
  if (!want(ld, n, ENG__N_MAP, "'params'")) return;
  eng__runbook *rb = ld->rb;
  rb->params = eng__xcalloc(n->n ? n->n : 1, sizeof *rb->params);
  for (size_t i = 0; i < n->n; i++) {
    eng__param_def *p = &rb->params[rb->n_params++];
    p->name = eng__xstrdup(n->keys[i]->str);
    p->node = n->keys[i];
    p->type = ENG_T_STRING;
    eng__node *pn = n->vals[i];
    if (!valid_id(p->name) || strchr(p->name, '-')) {
      ERR(ld, n->keys[i],
          "parameter name '%s' must match [a-z0-9_]+ (used as params.%s)",
          p->name, p->name);
    }
    if (pn->kind == ENG__N_SCALAR) { /* shorthand: NAME: default */
      p->def = pn;
      continue;
    }
    char where[200];
    snprintf(where, sizeof where, "parameter '%s': ", p->name);
    if (!want(ld, pn, ENG__N_MAP, where)) continue;
    check_keys(ld, pn, param_keys, where);
    eng__node *v;
    if ((v = eng__node_get(pn, "env")) && want(ld, v, ENG__N_SCALAR, "env"))
      p->env = eng__xstrdup(v->str);
    if ((v = eng__node_get(pn, "secret"))) parse_bool(ld, v, "secret", &p->secret);
    if ((v = eng__node_get(pn, "required")))
      parse_bool(ld, v, "required", &p->required);
    if ((v = eng__node_get(pn, "type")) && want(ld, v, ENG__N_SCALAR, "type") &&
        eng__type_parse(v->str, &p->type) != 0) {
      const char *meant = eng__type_suggest(v->str);
      ERR(ld, v,
          "%sunknown type '%s'%s%s%s (the types: string, int, number, bool, "
          "duration, timestamp, list, map, any)",
          where, v->str, meant ? "; did you mean '" : "", meant ? meant : "",
          meant ? "'?" : "");
    }
    if ((v = eng__node_get(pn, "choices")) &&
        want(ld, v, ENG__N_SEQ, "choices"))
      p->choices = eng__node_to_json(v);
    if ((v = eng__node_get(pn, "description")) ||
        (v = eng__node_get(pn, "doc")))
      p->doc = eng__xstrdup(v->kind == ENG__N_SCALAR ? v->str : "");
    p->def = eng__node_get(pn, "default");
    if (p->def && p->def->kind == ENG__N_SCALAR && !strstr(p->def->str, "${")) {
      /* a literal default must be of the declared type */
      json_t *j = eng__node_to_json(p->def);
      char err[400];
      json_t *c = eng__convert(j, p->type, NULL, err, sizeof err);
      if (!c) ERR(ld, p->def, "%sdefault: %s", where, err);
      json_decref(c);
      json_decref(j);
    }
  }
}

bool eng__code_cut(eng__diags *d, const char *file, const eng__node *n,
                   const char *where, const char *key) {
  if (!n || n->kind != ENG__N_SCALAR || !n->comment_after) return false;
  char what[160];
  if (*n->str)
    snprintf(what, sizeof what, "the ' #' after '%.80s%s' on this line starts a "
                                "YAML comment, so the code ends there",
             n->str, strlen(n->str) > 80 ? "..." : "");
  else
    snprintf(what, sizeof what, "the value is empty: YAML reads the ' #...' "
                                "after the key as a comment");
  eng__diag_error(d, file, n->line, n->col,
                  "%s'%s': %s ('#' is also Lua's length operator): put the "
                  "whole value in quotes, or write it as a block ('%s: |' and "
                  "the code on the next lines); a comment goes on a line of "
                  "its own",
                  where, key, what, key);
  return true;
}

static bool code_cut(loader *ld, const eng__node *n, const char *where,
                     const char *key) {
  return eng__code_cut(ld->d, ld->file, n, where, key);
}

/* A check that cannot pass: empty, or a bare `return` (it returns
 * nothing, so every attempt fails with "the check returned false"). */
static void check_has_code(loader *ld, const eng__node *n, const char *where) {
  const char *s = n->str;
  size_t len = strlen(s);
  while (len && strchr(" \t\r\n;", s[len - 1])) len--;
  while (len && strchr(" \t\r\n", *s)) {
    s++;
    len--;
  }
  if (len == 0)
    ERR(ld, n, "%s'check' is empty: write the condition the outputs must "
               "meet (check: return outputs.total > 0, \"no rows\"), or "
               "remove the key",
        where);
  else if (len == 6 && !strncmp(s, "return", 6))
    ERR(ld, n, "%s'check' is a bare 'return': it returns nothing, so every "
               "attempt would fail with 'the check returned false'; return "
               "the condition (return outputs.total > 0, \"no rows\")",
        where);
}

/* for_each: / max_parallel: / fail_fast: (docs/runbook-format.md,
 * "Fan-out"). */
static void parse_fan_out(loader *ld, eng__node *n, eng__step *s,
                          const char *where) {
  s->max_parallel = 1;
  s->fail_fast = true;
  eng__node *f = eng__node_get(n, "for_each");
  eng__node *mp = eng__node_get(n, "max_parallel");
  eng__node *ff = eng__node_get(n, "fail_fast");
  if (!f && (mp || ff)) {
    ERR(ld, mp ? mp : ff, "%s'%s' applies to the items of a 'for_each' "
                          "step; this step has no 'for_each'",
        where, mp ? "max_parallel" : "fail_fast");
    return;
  }
  if (!f) return;
  if (f->kind == ENG__N_SCALAR && !strstr(f->str, "${")) {
    ERR(ld, f, "%s'for_each' takes a list ([a, b]), a mapping, or a "
               "${...} template yielding one (e.g. "
               "${steps.find.outputs.volumes}), not '%s'",
        where, f->str);
    return;
  }
  if (s->is_finally) {
    ERR(ld, f, "%s'for_each' is for main steps; a 'finally' step runs once",
        where);
    return;
  }
  s->for_each = f;
  if (mp) {
    json_t *j = eng__node_to_json(mp);
    if (!json_is_integer(j) || json_integer_value(j) < 1 ||
        json_integer_value(j) > 1000)
      ERR(ld, mp, "%smax_parallel must be an integer from 1 to 1000 (items "
                  "at once; --jobs bounds it too)",
          where);
    else
      s->max_parallel = (int)json_integer_value(j);
    json_decref(j);
  }
  if (ff) parse_bool(ld, ff, "fail_fast", &s->fail_fast);
}

static void load_step(loader *ld, eng__node *n, eng__step *s, bool fin) {
  s->if_ref = s->check_ref = -1;
  s->timeout_ms = ld->rb->default_timeout_ms;
  s->retry = ld->rb->default_retry;
  s->is_finally = fin;
  s->node = n;
  if (!want(ld, n, ENG__N_MAP, fin ? "a 'finally' step" : "a step")) {
    s->id = eng__asprintf("#%zu", s->idx + 1);
    return;
  }
  eng__node *idn = eng__node_get(n, "id");
  char where[200] = "";
  if (!idn || idn->kind != ENG__N_SCALAR || !valid_id(idn->str)) {
    ERR(ld, idn ? idn : n, "a step needs an 'id' matching [a-z0-9_-]+");
    s->id = eng__asprintf("#%zu", s->idx + 1);
  } else {
    s->id = eng__xstrdup(idn->str);
  }
  snprintf(where, sizeof where, "step '%s': ", s->id);
  check_keys(ld, n, step_keys, where);
  eng__node *v;
  if ((v = eng__node_get(n, "name")) && want(ld, v, ENG__N_SCALAR, "name")) {
    s->name = eng__xstrdup(v->str);
    s->name_node = v;
  }
  if ((v = eng__node_get(n, "description")) && v->kind == ENG__N_SCALAR)
    s->description = eng__xstrdup(v->str);
  v = eng__node_get(n, "uses");
  if (!v) ERR(ld, n, "%smissing 'uses' (the action to run, e.g. shell or "
                     "postgres.dump)", where);
  else if (want(ld, v, ENG__N_SCALAR, "uses")) s->uses = eng__xstrdup(v->str);
  if ((v = eng__node_get(n, "with"))) {
    char w[220];
    snprintf(w, sizeof w, "%s'with'", where);
    if (want(ld, v, ENG__N_MAP, w)) s->with = v;
  }
  if ((v = eng__node_get(n, "needs"))) {
    s->has_needs = true;
    s->needs_node = v;
    if (fin) ERR(ld, v, "%s'finally' steps run in order; 'needs' is not "
                        "allowed there", where);
    else if (v->kind != ENG__N_SEQ && v->kind != ENG__N_SCALAR)
      ERR(ld, v, "%s'needs' must be a list of step ids", where);
  }
  if ((v = eng__node_get(n, "if"))) {
    if (want(ld, v, ENG__N_SCALAR, "if") && !code_cut(ld, v, where, "if"))
      s->if_node = v;
  }
  if ((v = eng__node_get(n, "timeout")))
    parse_duration(ld, v, "timeout", &s->timeout_ms);
  if ((v = eng__node_get(n, "retry"))) parse_retry(ld, v, &s->retry, where);
  if ((v = eng__node_get(n, "continue_on_error")))
    parse_bool(ld, v, "continue_on_error", &s->continue_on_error);
  if ((v = eng__node_get(n, "recovered")))
    parse_bool(ld, v, "recovered", &s->recovered);
  if ((v = eng__node_get(n, "allow_disruptive")))
    parse_bool(ld, v, "allow_disruptive", &s->allow_disruptive);
  parse_disposition(ld, n, s, where);
  parse_fan_out(ld, n, s, where);
  if ((v = eng__node_get(n, "check")) && want(ld, v, ENG__N_SCALAR, "check") &&
      !code_cut(ld, v, where, "check")) {
    check_has_code(ld, v, where);
    s->check_node = v;
  }
  if ((v = eng__node_get(n, "outputs")) &&
      want(ld, v, ENG__N_MAP, "outputs"))
    s->outputs = v;
}

static const char *const *step_ids(eng__runbook *rb) {
  const char **ids = eng__xcalloc(rb->n_steps + 1, sizeof *ids);
  for (size_t i = 0; i < rb->n_steps; i++) ids[i] = rb->steps[i].id;
  return ids;
}

/* Step id -> index of its first step (json), for lookups in linear time. */
static json_t *index_ids(const eng__runbook *rb) {
  json_t *ids = json_object();
  for (size_t i = 0; i < rb->n_steps; i++)
    if (rb->steps[i].id && !json_object_get(ids, rb->steps[i].id))
      json_object_set_new(ids, rb->steps[i].id, json_integer((json_int_t)i));
  return ids;
}

/* The index of step id, or -1. */
static long step_index(json_t *ids, const char *id) {
  json_t *v = json_object_get(ids, id);
  return v ? (long)json_integer_value(v) : -1;
}

/* One unknown step named in needs: said with the nearest id (when shown). */
static void unknown_need(loader *ld, const eng__step *s, const eng__node *e,
                         bool fin) {
  eng__runbook *rb = ld->rb;
  if (fin) {
    ERR(ld, e, "step '%s': needs '%s', a 'finally' step", s->id, e->str);
    return;
  }
  const char *hint = NULL;
  const char *const *ids = NULL;
  if (!eng__diags_hidden(ld->d)) {
    ids = step_ids(rb);
    hint = eng__suggest(e->str, ids, rb->n_main);
  }
  if (hint)
    ERR(ld, e, "step '%s': needs unknown step '%s' (did you mean '%s'?)",
        s->id, e->str, hint);
  else
    ERR(ld, e, "step '%s': needs unknown step '%s'", s->id, e->str);
  free((void *)ids);
}

static void resolve_needs(loader *ld) {
  eng__runbook *rb = ld->rb;
  json_t *ids = index_ids(rb);
  /* added[j] == i + 1: step i depends on j already (needs may repeat) */
  size_t *added = eng__xcalloc(rb->n_main + 1, sizeof *added);
  for (size_t i = 0; i < rb->n_main; i++) {
    eng__step *s = &rb->steps[i];
    if (!s->has_needs) {
      if (i > 0) {
        s->deps = eng__xmalloc(sizeof *s->deps);
        s->deps[s->n_deps++] = i - 1;
      }
      continue;
    }
    eng__node *nn = s->needs_node;
    size_t cnt = nn->kind == ENG__N_SEQ ? nn->n : 1;
    for (size_t k = 0; k < cnt; k++) {
      eng__node *e = nn->kind == ENG__N_SEQ ? nn->vals[k] : nn;
      if (e->kind != ENG__N_SCALAR) {
        ERR(ld, e, "step '%s': 'needs' entries are step ids", s->id);
        continue;
      }
      long j = step_index(ids, e->str);
      if (j < 0 || (size_t)j >= rb->n_main) {
        unknown_need(ld, s, e, j >= 0);
        continue;
      }
      if ((size_t)j == i) {
        ERR(ld, e, "step '%s' needs itself", s->id);
        continue;
      }
      if (added[j] == i + 1) continue;
      added[j] = i + 1;
      s->deps = eng__xrealloc(s->deps, (s->n_deps + 1) * sizeof *s->deps);
      s->deps[s->n_deps++] = (size_t)j;
    }
  }
  free(added);
  json_decref(ids);
}

/* Cycle detection: iterative DFS with colours; reports one cycle. */
static void check_cycles(loader *ld) {
  eng__runbook *rb = ld->rb;
  size_t n = rb->n_main;
  unsigned char *color = eng__xcalloc(n ? n : 1, 1);
  size_t *stack = eng__xcalloc(n ? n : 1, sizeof *stack);
  size_t *pos = eng__xcalloc(n ? n : 1, sizeof *pos);
  for (size_t root = 0; root < n; root++) {
    if (color[root]) continue;
    size_t sp = 0;
    stack[sp] = root;
    pos[sp] = 0;
    color[root] = 1;
    sp++;
    while (sp) {
      size_t u = stack[sp - 1];
      eng__step *s = &rb->steps[u];
      if (pos[sp - 1] < s->n_deps) {
        size_t v = s->deps[pos[sp - 1]++];
        if (color[v] == 1) {
          eng__buf b = {0};
          size_t k = sp;
          while (k > 0 && stack[k - 1] != v) k--;
          for (size_t q = k ? k - 1 : 0; q < sp; q++)
            eng__buf_addf(&b, "%s -> ", rb->steps[stack[q]].id);
          eng__buf_adds(&b, rb->steps[v].id);
          ERR(ld, s->needs_node ? s->needs_node : s->node,
              "step '%s': dependency cycle: %s (remove one of these needs)",
              s->id, b.data);
          eng__buf_free(&b);
          goto out;
        }
        if (color[v] == 0) {
          color[v] = 1;
          stack[sp] = v;
          pos[sp] = 0;
          sp++;
        }
      } else {
        color[u] = 2;
        sp--;
      }
    }
  }
out:
  free(color);
  free(stack);
  free(pos);
}

static void load_steps(loader *ld, eng__node *steps, eng__node *fin) {
  eng__runbook *rb = ld->rb;
  size_t n1 = steps && steps->kind == ENG__N_SEQ ? steps->n : 0;
  size_t n2 = fin && fin->kind == ENG__N_SEQ ? fin->n : 0;
  if (n1 + n2 > ENG__MAX_STEPS) {
    ERR(ld, steps, "%zu steps: a runbook may have at most %d; split it into "
                   "several runbooks", n1 + n2, ENG__MAX_STEPS);
    n1 = n1 > ENG__MAX_STEPS ? ENG__MAX_STEPS : n1;
    n2 = n1 + n2 > ENG__MAX_STEPS ? ENG__MAX_STEPS - n1 : n2;
  }
  rb->steps = eng__xcalloc(n1 + n2 + 1, sizeof *rb->steps);
  json_t *ids = json_object(); /* id -> index: unique ids in linear time */
  for (size_t i = 0; i < n1 + n2; i++) {
    eng__step *s = &rb->steps[i];
    s->idx = i;
    load_step(ld, i < n1 ? steps->vals[i] : fin->vals[i - n1], s, i >= n1);
    rb->n_steps++;
    if (!s->id) continue;
    json_t *first = json_object_get(ids, s->id);
    if (first) {
      eng__step *f = &rb->steps[json_integer_value(first)];
      eng__node *idn = eng__node_get(s->node, "id");
      ERR(ld, idn ? idn : s->node,
          "duplicate step id '%s' (first at line %d); ids must be unique",
          s->id, f->node ? f->node->line : 0);
    } else {
      json_object_set_new(ids, s->id, json_integer((json_int_t)i));
    }
  }
  json_decref(ids);
  rb->n_main = n1;
  resolve_needs(ld);
  check_cycles(ld);
}

static void load_guards(loader *ld, eng__node *g) {
  if (!want(ld, g, ENG__N_MAP, "'guards'")) return;
  check_keys(ld, g, guard_keys, "guards: ");
  json_t *ids = index_ids(ld->rb);
  for (size_t i = 0; i < g->n; i++) {
    const char *k = g->keys[i]->str;
    eng__node *v = g->vals[i];
    if (!strncmp(k, "protected_", 10) || !strcmp(k, "forbidden_commands")) {
      if (!want(ld, v, ENG__N_SEQ, k)) continue;
      for (size_t j = 0; j < v->n; j++)
        want(ld, v->vals[j], ENG__N_SCALAR, k);
    } else if (!strcmp(k, "require")) {
      if (!want(ld, v, ENG__N_SEQ, "guards.require")) continue;
      const char *const *rk = require_keys;
      for (size_t j = 0; j < v->n; j++) {
        eng__node *e = v->vals[j];
        if (!want(ld, e, ENG__N_MAP, "a guards.require entry")) continue;
        check_keys(ld, e, rk, "guards.require: ");
        for (int q = 0; rk[q]; q++) {
          eng__node *x = eng__node_get(e, rk[q]);
          if (!x) {
            ERR(ld, e, "guards.require: missing '%s'", rk[q]);
            continue;
          }
          if (want(ld, x, ENG__N_SCALAR, rk[q]) &&
              step_index(ids, x->str) < 0) {
            const char *const *cands =
                eng__diags_hidden(ld->d) ? NULL : step_ids(ld->rb);
            const char *hint =
                eng__suggest(x->str, cands, cands ? ld->rb->n_steps : 0);
            ERR(ld, x, "guards.require: unknown step '%s'%s%s%s", x->str,
                hint ? " (did you mean '" : "", hint ? hint : "",
                hint ? "'?)" : "");
            free((void *)cands);
          }
        }
      }
    } else if (!strcmp(k, "unverified_commands")) {
      if (want(ld, v, ENG__N_SCALAR, "guards.unverified_commands") &&
          strcmp(v->str, "allow") && strcmp(v->str, "refuse"))
        ERR(ld, v, "guards.unverified_commands is 'allow' (the default: a "
                   "command line the guards cannot see through runs) or "
                   "'refuse', not '%s'", v->str);
    } else if (!strcmp(k, "checks")) {
      if (!want(ld, v, ENG__N_SEQ, "guards.checks")) continue;
      for (size_t j = 0; j < v->n; j++) {
        eng__node *e = v->vals[j];
        if (!want(ld, e, ENG__N_MAP, "a guards.checks entry")) continue;
        check_keys(ld, e, checks_keys, "guards.checks: ");
        eng__node *t = eng__node_get(e, "that");
        if (!t) ERR(ld, e, "guards.checks: missing 'that' (a Lua expression)");
        else if (want(ld, t, ENG__N_SCALAR, "that"))
          code_cut(ld, t, "guards.checks: ", "that");
      }
    }
  }
  json_decref(ids);
  ld->rb->guards = g;
}

eng__runbook *eng__runbook_load(const char *file, eng__diags *d) {
  size_t len = 0;
  char *text = eng__read_file(file, ENG__YAML_MAX_BYTES + 1, &len);
  if (!text) {
    if (errno == EFBIG)
      eng__diag_error(d, file, 0, 0,
                      "file is larger than %u MB; a runbook may be at most "
                      "8 MB (is this the right file?)",
                      ENG__YAML_MAX_BYTES >> 20);
    else
      eng__diag_error(d, file, 0, 0, "cannot read: %s", strerror(errno));
    return NULL;
  }
  eng__runbook *rb = eng__runbook_parse(file, text, len, d);
  free(text);
  return rb;
}

/* Targets that could never be measured: an RTO without a step marked
 * `recovered` (nothing would ever stop its clock), an RPO without the
 * time of the backup. */
static void check_slo(loader *ld, const eng__node *slo) {
  eng__runbook *rb = ld->rb;
  if (!slo || slo->kind != ENG__N_MAP) return;
  bool marked = false;
  for (size_t i = 0; i < rb->n_main; i++)
    if (rb->steps[i].recovered) marked = true;
  eng__node *x = eng__node_get(slo, "rto");
  if (x && rb->slo_rto_ms >= 0 && !marked)
    ERR(ld, x,
        "slo.rto: no step is marked `recovered: true`, so the RTO could "
        "never be measured; mark the step after which service is back "
        "(the restore)");
  x = eng__node_get(slo, "rpo");
  if (x && rb->slo_rpo_ms >= 0 && !rb->slo_backup_time && !rb->slo_recovery_point)
    ERR(ld, x,
        "slo.rpo: neither slo.backup_time nor slo.recovery_point is set, so "
        "the RPO could never be measured; give the time the restored backup "
        "was taken (backup_time: ${steps.backup.outputs.finished_at}) or the "
        "recovery point a point-in-time recovery reached (recovery_point: "
        "${steps.copy.outputs.replay_timestamp})");
  if (rb->slo_backup_time && rb->slo_recovery_point)
    ERR(ld, rb->slo_recovery_point,
        "slo.recovery_point and slo.backup_time both measure the RPO; keep "
        "one (recovery_point for a point-in-time recovery)");
  if (rb->slo_recovery_target && !rb->slo_recovery_point)
    ERR(ld, rb->slo_recovery_target,
        "slo.recovery_target needs slo.recovery_point (the data loss is the "
        "target minus the recovery point)");
  const eng__node *from = rb->slo_rto_from;
  bool known = false;
  for (size_t i = 0; from && i < rb->n_main; i++)
    known |= !strcmp(rb->steps[i].id, from->str);
  if (from && !known)
    ERR(ld, from,
        "slo.rto_from: '%s' is not a step of this runbook (outside finally); "
        "name the step whose start starts the RTO clock (the restore)",
        from->str);
}

bool eng__lock_name_ok(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 128 || name[0] == '.' || strstr(name, "..")) return false;
  for (const char *p = name; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
          (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
      return false;
  return true;
}

eng__runbook *eng__runbook_parse(const char *file, const char *text,
                                 size_t len, eng__diags *d) {
  size_t errors0 = d->errors;
  eng__node *root = eng__yaml_parse(file, text, len, d);
  eng__runbook *rb = NULL;
  if (!root) goto out;
  rb = eng__xcalloc(1, sizeof *rb);
  rb->file = eng__xstrdup(file);
  eng__sha256_hex(text, len, rb->sha256);
  char *slash = strrchr(rb->file, '/');
  rb->dir = slash ? eng__xstrndup(rb->file, (size_t)(slash - rb->file))
                  : eng__xstrdup(".");
  rb->root = root;
  rb->slo_rto_ms = rb->slo_rpo_ms = -1;
  rb->slo_rows_drop_pct = rb->slo_backup_drop_pct = rb->slo_rto_growth = -1;
  rb->default_timeout_ms = 0;
  rb->default_retry = (eng__retry){1, 0, 1.0, 0};
  loader ld = {rb, d, file};
  if (root->kind != ENG__N_MAP) {
    ERR(&ld, root, "a runbook is a mapping with 'version', 'name' and "
                   "'steps'");
    goto out;
  }
  check_keys(&ld, root, top_keys, "");
  eng__node *v = eng__node_get(root, "version");
  if (!v) ERR(&ld, root, "missing 'version: 1' (the format version)");
  else if (v->kind != ENG__N_SCALAR || strcmp(v->str, "1") != 0)
    ERR(&ld, v, "unsupported version '%s'; this engine reads version 1",
        v->kind == ENG__N_SCALAR ? v->str : "?");
  v = eng__node_get(root, "name");
  if (!v) ERR(&ld, root, "missing 'name' (lowercase letters, digits, '-')");
  else if (want(&ld, v, ENG__N_SCALAR, "name")) {
    rb->name = eng__xstrdup(v->str);
    if (!valid_rb_name(v->str))
      ERR(&ld, v, "name '%s' must match [a-z0-9][a-z0-9-]*", v->str);
  }
  if ((v = eng__node_get(root, "description")) && v->kind == ENG__N_SCALAR)
    rb->description = eng__xstrdup(v->str);
  if ((v = eng__node_get(root, "defaults")) &&
      want(&ld, v, ENG__N_MAP, "'defaults'")) {
    check_keys(&ld, v, defaults_keys, "defaults: ");
    eng__node *x;
    if ((x = eng__node_get(v, "timeout")))
      parse_duration(&ld, x, "defaults.timeout", &rb->default_timeout_ms);
    if ((x = eng__node_get(v, "retry")))
      parse_retry(&ld, x, &rb->default_retry, "defaults: ");
  }
  if ((v = eng__node_get(root, "slo")) && want(&ld, v, ENG__N_MAP, "'slo'")) {
    check_keys(&ld, v, slo_keys, "slo: ");
    eng__node *x;
    if ((x = eng__node_get(v, "rto")))
      parse_duration(&ld, x, "slo.rto", &rb->slo_rto_ms);
    if ((x = eng__node_get(v, "rpo")))
      parse_duration(&ld, x, "slo.rpo", &rb->slo_rpo_ms);
    if ((x = eng__node_get(v, "rows_drop")))
      parse_number(&ld, x, "slo.rows_drop", '%', 0, 100, "10%", &rb->slo_rows_drop_pct);
    if ((x = eng__node_get(v, "backup_size_drop")))
      parse_number(&ld, x, "slo.backup_size_drop", '%', 0, 100, "20%",
                   &rb->slo_backup_drop_pct);
    if ((x = eng__node_get(v, "rto_growth")))
      parse_number(&ld, x, "slo.rto_growth", 'x', 1, 1000,
                   "1.5 (the RTO may grow to 1.5 times the previous one)",
                   &rb->slo_rto_growth);
    if ((x = eng__node_get(v, "backup_time")) &&
        want(&ld, x, ENG__N_SCALAR, "slo.backup_time")) {
      rb->slo_backup_time = x;
      int64_t ms;
      char why[160];
      if (!strstr(x->str, "${") &&
          eng__parse_timestamp(x->str, &ms, why, sizeof why) != 0)
        ERR(&ld, x,
            "slo.backup_time '%s' is not a timestamp (%s); write "
            ENG__TIMESTAMP_FORMS,
            x->str, why);
    }
  }
  if ((v = eng__node_get(root, "slo")) && v->kind == ENG__N_MAP) {
    eng__node *x;
    if ((x = eng__node_get(v, "recovery_point")) &&
        want(&ld, x, ENG__N_SCALAR, "slo.recovery_point"))
      rb->slo_recovery_point = x;
    if ((x = eng__node_get(v, "recovery_target")) &&
        want(&ld, x, ENG__N_SCALAR, "slo.recovery_target"))
      rb->slo_recovery_target = x;
    if ((x = eng__node_get(v, "rto_from")) &&
        want(&ld, x, ENG__N_SCALAR, "slo.rto_from"))
      rb->slo_rto_from = x;
  }
  if ((v = eng__node_get(root, "lock")) && want(&ld, v, ENG__N_SCALAR, "'lock'")) {
    rb->lock = v;
    if (!strstr(v->str, "${") && !eng__lock_name_ok(v->str))
      ERR(&ld, v,
          "lock '%s' is not a lock name: use letters, digits, '.', '_' and "
          "'-' (1-128 characters, not starting with '.', no '..'), e.g. "
          "drill-${params.restore_db}",
          v->str);
  }
  if ((v = eng__node_get(root, "drill")) && want(&ld, v, ENG__N_SCALAR, "'drill'")) {
    /* true/false, or a template such as ${params.drill} */
    json_t *b = eng__node_to_json(v);
    if (!strstr(v->str, "${") && !json_is_boolean(b))
      ERR(&ld, v,
          "drill must be true (a rehearsal: the evidence counts detection "
          "and decision time as 0) or false (an incident), or a template "
          "such as ${params.drill}, not '%s'",
          v->str);
    else
      rb->drill = v;
    json_decref(b);
  }
  if ((v = eng__node_get(root, "params"))) load_params(&ld, v);
  eng__node *steps = eng__node_get(root, "steps");
  eng__node *fin = eng__node_get(root, "finally");
  if (!steps) ERR(&ld, root, "missing 'steps' (the list of steps to run)");
  else want(&ld, steps, ENG__N_SEQ, "'steps'");
  if (fin) want(&ld, fin, ENG__N_SEQ, "'finally'");
  load_steps(&ld, steps, fin);
  check_slo(&ld, eng__node_get(root, "slo"));
  if ((v = eng__node_get(root, "guards"))) load_guards(&ld, v);
out:
  if (d->errors > errors0 && (!rb || !rb->root || rb->root->kind != ENG__N_MAP)) {
    /* nothing more can be checked: give up now */
    if (rb) eng__runbook_free(rb);
    else eng__node_free(root);
    return NULL;
  }
  /* With shape errors the caller still validates (to report every problem
   * at once) and then refuses to run: see eng__runbook_load's contract. */
  return rb;
}

void eng__runbook_free(eng__runbook *rb) {
  if (!rb) return;
  for (size_t i = 0; i < rb->n_params; i++) {
    free(rb->params[i].name);
    free(rb->params[i].env);
    free(rb->params[i].doc);
    json_decref(rb->params[i].choices);
  }
  free(rb->params);
  for (size_t i = 0; i < rb->n_steps; i++) {
    eng__step *s = &rb->steps[i];
    free(s->id);
    free(s->name);
    free(s->uses);
    free(s->description);
    free(s->deps);
  }
  free(rb->steps);
  eng__node_free(rb->root);
  free(rb->file);
  free(rb->dir);
  free(rb->name);
  free(rb->description);
  free(rb);
}

bool eng__runbook_depends(const eng__runbook *rb, size_t from, size_t target) {
  if (from >= rb->n_steps || target >= rb->n_steps) return false;
  /* iterative, each step visited once: a DAG of diamonds has more paths
   * than atoms in the universe, but few steps */
  unsigned char *seen = eng__xcalloc(rb->n_steps, 1);
  size_t *stack = eng__xmalloc(rb->n_steps * sizeof *stack), n = 0;
  bool found = false;
  stack[n++] = from;
  seen[from] = 1;
  while (n && !found) {
    const eng__step *s = &rb->steps[stack[--n]];
    for (size_t k = 0; k < s->n_deps && !found; k++) {
      size_t d = s->deps[k];
      found = d == target;
      if (!seen[d]) {
        seen[d] = 1;
        stack[n++] = d;
      }
    }
  }
  free(stack);
  free(seen);
  return found;
}

eng__step *eng__runbook_step(eng__runbook *rb, const char *id) {
  /* an item "ID[LABEL]": '[' is never part of a step id */
  const char *br = strchr(id, '[');
  size_t n = br ? (size_t)(br - id) : strlen(id);
  for (size_t i = 0; i < rb->n_steps; i++)
    if (rb->steps[i].id && strlen(rb->steps[i].id) == n &&
        !strncmp(rb->steps[i].id, id, n))
      return &rb->steps[i];
  return NULL;
}
