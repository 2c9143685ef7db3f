/* template.c - "${expr}" interpolation in runbook strings.
 *
 * A scalar that is exactly one ${...} keeps the value's type; otherwise the
 * pieces are converted to strings and joined. "$${" is a literal "${". */
#include "expr/expr.h"

#include <engine/mem.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool eng__tpl_has_expr(const char *s) {
  for (const char *p = s; (p = strstr(p, "${")) != NULL; p += 2)
    if (p == s || p[-1] != '$') return true;
  return false;
}

/* Find the '}' closing an expression that starts at s (after "${"),
 * skipping Lua strings and nested braces. */
static const char *expr_end(const char *s) {
  int depth = 0;
  for (const char *p = s; *p; p++) {
    if (*p == '"' || *p == '\'') {
      char q = *p;
      for (p++; *p && *p != q; p++)
        if (*p == '\\' && p[1]) p++;
      if (!*p) return NULL;
    } else if (*p == '{') {
      depth++;
    } else if (*p == '}') {
      if (depth == 0) return p;
      depth--;
    }
  }
  return NULL;
}

static void add_part(eng__tpl *t, const char *s, size_t n, bool expr) {
  t->parts = eng__xrealloc(t->parts, (t->n + 1) * sizeof *t->parts);
  t->parts[t->n].text = eng__xstrndup(s, n);
  t->parts[t->n].expr = expr;
  t->parts[t->n].ref = -1;
  t->n++;
}

/* Is the code of a ${...} that did not compile shell syntax: a parameter
 * expansion such as ${BACKUP_DIR:-/tmp}, ${NAME%%.*}, ${#LIST} or ${!REF},
 * or a special parameter (${@})? */
static bool shell_expansion(const char *code) {
  if (*code == '@' || *code == '*') return true; /* ${@}, ${*} */
  bool prefix = *code == '#' || *code == '!';    /* ${#LIST}, ${!REF} */
  const char *name = code + prefix, *p = name;
  while (isalnum((unsigned char)*p) || *p == '_') p++;
  if (p == name || isdigit((unsigned char)*name)) return false;
  if (!*p) return prefix;
  return strchr(":%#/^,", *p) != NULL; /* :- := :? :+ %% ## // ^^ ,, :N */
}

/* The error of a ${...} that is shell syntax: how to write it for the
 * shell, and how the engine reads a variable. */
static void say_shell(const char *code, char *err, size_t errlen) {
  /* Lua's reason without its "FILE:LINE: " (the diagnostic has both) */
  const char *why = err;
  for (const char *c = strchr(err, ':'); c; c = strchr(c + 1, ':'))
    if (c[1] >= '0' && c[1] <= '9') {
      const char *e = c + 1 + strspn(c + 1, "0123456789");
      if (e[0] == ':' && e[1] == ' ') {
        why = e + 2;
        break;
      }
    }
  char lua[512];
  snprintf(lua, sizeof lua, "%s", why);
  const char *p = code + strspn(code, "#!");
  size_t n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                       "0123456789_");
  snprintf(err, errlen,
           "'${%s}' is shell syntax, not an engine expression (%s): a "
           "literal '${' is written '$${' ($${%s} reaches the shell as "
           "${%s}); the engine's own reading of a variable is "
           "${env.%.*s}",
           code, lua, code, code, (int)(n ? n : 4), n ? p : "NAME");
}

int eng__tpl_compile(eng__lua *L, const char *s, const char *file, int line,
                     eng__tpl **out, char *err, size_t errlen) {
  eng__tpl *t = eng__xcalloc(1, sizeof *t);
  eng__buf lit = {0};
  const char *p = s;
  while (*p) {
    if (p[0] == '$' && p[1] == '$' && p[2] == '{') {
      eng__buf_add(&lit, "${", 2);
      p += 3;
      continue;
    }
    if (p[0] == '$' && p[1] == '{') {
      const char *e = expr_end(p + 2);
      if (!e) {
        snprintf(err, errlen, "unterminated '${' in \"%s\": close it with '}'",
                 s);
        eng__buf_free(&lit);
        eng__tpl_free(t);
        return ENG_ERR_INVALID;
      }
      if (lit.len) add_part(t, lit.data, lit.len, false);
      eng__buf_free(&lit);
      add_part(t, p + 2, (size_t)(e - p - 2), true);
      p = e + 1;
      continue;
    }
    eng__buf_add(&lit, p, 1);
    p++;
  }
  if (lit.len) add_part(t, lit.data, lit.len, false);
  eng__buf_free(&lit);
  t->whole = t->n == 1 && t->parts[0].expr;
  for (size_t i = 0; i < t->n; i++) {
    if (!t->parts[i].expr) continue;
    const char *code = t->parts[i].text;
    if (strspn(code, " \t\r\n") == strlen(code)) {
      snprintf(err, errlen, "empty expression '${}'");
      eng__tpl_free(t);
      return ENG_ERR_INVALID;
    }
    if (L) {
      int rc = eng__lua_compile(L, code, ENG__LUA_EXPR, file, line,
                                &t->parts[i].ref, err, errlen);
      if (rc != ENG_OK) {
        if (rc == ENG_ERR_INVALID && shell_expansion(code))
          say_shell(code, err, errlen);
        eng__tpl_free(t);
        return rc;
      }
    }
  }
  *out = t;
  return ENG_OK;
}

void eng__tpl_say_nomem(const eng__lua *L, eng__diags *d, const char *file,
                        const eng__node *n, const char *what) {
  eng__diag_error(d, file, n ? n->line : 0, n ? n->col : 0,
                  "%s: the runbook's expressions need more memory than the "
                  "Lua sandbox allows (%zu MiB; ENGINE_LUA_MEMORY_MB sets "
                  "it): nothing after this was checked; use fewer ${...} "
                  "expressions or split the runbook",
                  what, eng__lua_mem_limit(L) >> 20);
}

int eng__tpl_compile_tree(eng__lua *L, eng__node *n, const char *file,
                          eng__diags *d, const char *what) {
  if (!n) return 0;
  int bad = 0;
  if (n->kind == ENG__N_SCALAR) {
    if (!eng__tpl_has_expr(n->str) && !strstr(n->str, "$${")) return 0;
    if (n->tpl) return 0;
    if (eng__lua_exhausted(L)) return 1; /* said once, when it ran out */
    char err[1024];
    int rc = eng__tpl_compile(L, n->str, file, n->line, &n->tpl, err, sizeof err);
    if (rc == ENG_ERR_NOMEM) {
      eng__tpl_say_nomem(L, d, file, n, what);
      return 1;
    }
    if (rc != ENG_OK) {
      eng__diag_error(d, file, n->line, n->col, "%s: %s%s", what, err,
                      n->comment_after
                          ? " (the ' #' after it on this line starts a YAML "
                            "comment, which cut the value short: put the "
                            "whole value in quotes)"
                          : "");
      return 1;
    }
    return 0;
  }
  for (size_t i = 0; i < n->n; i++)
    bad += eng__tpl_compile_tree(L, n->vals[i], file, d, what);
  return bad;
}

static json_t *render_tpl(eng__lua *L, const eng__tpl *t, char *err,
                          size_t errlen) {
  if (t->whole) {
    json_t *res = NULL;
    if (eng__lua_eval(L, t->parts[0].ref, NULL, &res, err, errlen) != ENG_OK)
      return NULL;
    json_t *v = json_array_size(res) ? json_incref(json_array_get(res, 0))
                                     : json_null();
    json_decref(res);
    return v;
  }
  eng__buf b = {0};
  for (size_t i = 0; i < t->n; i++) {
    if (!t->parts[i].expr) {
      eng__buf_adds(&b, t->parts[i].text);
      continue;
    }
    json_t *res = NULL;
    if (eng__lua_eval(L, t->parts[i].ref, NULL, &res, err, errlen) != ENG_OK) {
      eng__buf_free(&b);
      return NULL;
    }
    json_t *v = json_array_get(res, 0);
    if (json_is_string(v)) eng__buf_adds(&b, json_string_value(v));
    else if (json_is_integer(v))
      eng__buf_addf(&b, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) { /* the shortest text of the same number */
      char num[40];
      eng__buf_adds(&b, eng_fmt_real(json_real_value(v), num, sizeof num));
    }
    else if (json_is_true(v)) eng__buf_adds(&b, "true");
    else if (json_is_false(v)) eng__buf_adds(&b, "false");
    else if (!v || json_is_null(v)) eng__buf_adds(&b, "");
    else {
      char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
      if (s) eng_json_short_reals(s);
      eng__buf_adds(&b, s ? s : "");
      free(s);
    }
    json_decref(res);
  }
  json_t *out = json_string(b.data ? b.data : "");
  eng__buf_free(&b);
  return out;
}

static json_t *scalar_json(const eng__node *n) { return eng__node_to_json(n); }

json_t *eng__tpl_render(eng__lua *L, const eng__node *n, char *err,
                        size_t errlen) {
  if (!n) return json_null();
  switch (n->kind) {
  case ENG__N_SCALAR:
    if (n->tpl) {
      return render_tpl(L, n->tpl, err, errlen);
    }
    return scalar_json(n);
  case ENG__N_SEQ: {
    json_t *a = json_array();
    for (size_t i = 0; i < n->n; i++) {
      json_t *v = eng__tpl_render(L, n->vals[i], err, errlen);
      if (!v) {
        json_decref(a);
        return NULL;
      }
      json_array_append_new(a, v);
    }
    return a;
  }
  case ENG__N_MAP: {
    json_t *o = json_object();
    for (size_t i = 0; i < n->n; i++) {
      json_t *v = eng__tpl_render(L, n->vals[i], err, errlen);
      if (!v) {
        json_decref(o);
        return NULL;
      }
      json_object_set_new(o, n->keys[i]->str, v);
    }
    return o;
  }
  }
  return json_null();
}

bool eng__tpl_static(const eng__node *n) {
  if (!n) return true;
  if (n->kind == ENG__N_SCALAR) {
    if (!n->tpl) return true;
    for (size_t i = 0; i < n->tpl->n; i++)
      if (n->tpl->parts[i].expr && strstr(n->tpl->parts[i].text, "steps"))
        return false;
    return true;
  }
  for (size_t i = 0; i < n->n; i++)
    if (!eng__tpl_static(n->vals[i])) return false;
  return true;
}

/* The Lua code of a condition written bare or as one ${...}. Blank text
 * gives "" (which does not compile: the caller reports it). */
char *eng__cond_code(const char *s) {
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\n')) n--;
  while (n && *s == ' ') {
    s++;
    n--;
  }
  if (n >= 3 && s[0] == '$' && s[1] == '{' && s[n - 1] == '}' &&
      !memchr(s + 2, '$', n - 3))
    return eng__xstrndup(s + 2, n - 3);
  return eng__xstrndup(s, n);
}

/* Strings of a JSON value holding ${...} rendered (references the journal
 * wrote in place of secrets); anything that does not render stays as is. */
json_t *eng__tpl_deref(eng__lua *L, const json_t *v) {
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    if (!strstr(s, "${")) return json_incref((json_t *)v);
    eng__node n = {0};
    n.kind = ENG__N_SCALAR;
    n.str = (char *)s;
    char err[512];
    if (eng__tpl_compile(L, s, "journal", 1, &n.tpl, err, sizeof err) != ENG_OK)
      return json_incref((json_t *)v);
    json_t *out = eng__tpl_render(L, &n, err, sizeof err);
    eng__tpl_free(n.tpl);
    return out ? out : json_incref((json_t *)v);
  }
  if (json_is_array(v)) {
    json_t *a = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) json_array_append_new(a, eng__tpl_deref(L, e));
    return a;
  }
  if (json_is_object(v)) {
    json_t *o = json_object();
    const char *k;
    json_t *e;
    json_object_foreach((json_t *)v, k, e)
        json_object_set_new(o, k, eng__tpl_deref(L, e));
    return o;
  }
  return json_incref((json_t *)v);
}
