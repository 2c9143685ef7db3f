/* cmd_schema.c - `engine schema`: a JSON Schema of runbook files for
 * editors, with every loaded action's parameters. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static json_t *type_schema(eng_type t, const char *choices) {
  switch (t) {
  case ENG_T_STRING: {
    json_t *s = json_pack("{s:s}", "type", "string");
    if (choices) { /* one of them, or a ${...} decided at run time */
      json_t *e = json_array();
      char *cp = eng__xstrdup(choices), *save = NULL;
      for (char *x = strtok_r(cp, "|", &save); x; x = strtok_r(NULL, "|", &save))
        json_array_append_new(e, json_string(x));
      free(cp);
      json_object_set(s, "examples", e);
      json_object_set_new(s, "if", json_pack("{s:s}", "pattern", "\\$\\{"));
      json_object_set_new(s, "else", json_pack("{s:o}", "enum", e));
    }
    return s;
  }
  case ENG_T_INT: return json_pack("{s:[s,s]}", "type", "integer", "string");
  case ENG_T_NUMBER: return json_pack("{s:[s,s]}", "type", "number", "string");
  case ENG_T_BOOL: return json_pack("{s:[s,s]}", "type", "boolean", "string");
  case ENG_T_DURATION:
    return json_pack("{s:[s,s], s:s}", "type", "string", "number", "format",
                     "duration");
  case ENG_T_LIST: return json_pack("{s:[s,s]}", "type", "array", "string");
  case ENG_T_MAP: return json_pack("{s:[s,s]}", "type", "object", "string");
  case ENG_T_TIMESTAMP:
    return json_pack("{s:[s,s], s:s}", "type", "string", "number", "format",
                     "timestamp");
  default: return json_object();
  }
}

/* The elements of a list: a string element may be written as a number or
 * true/false too (it is converted). */
static json_t *items_schema(const eng_param *p) {
  eng_type t = (eng_type)(p->items - 1);
  if (t == ENG_T_STRING && !p->choices)
    return json_pack("{s:[s,s,s]}", "type", "string", "number", "boolean");
  return type_schema(t, p->type == ENG_T_LIST ? p->choices : NULL);
}

/* A parameter for editors: type, enum, range, default, and the help text
 * as plain and Markdown descriptions. */
static json_t *param_schema(const eng_param *p) {
  json_t *ps = type_schema(p->type, p->type == ENG_T_LIST ? NULL : p->choices);
  if (p->items && p->items != ENG_ITEMS_ANY)
    json_object_set_new(ps, "items", items_schema(p));
  eng__buf md = {0};
  char type[64];
  eng__param_type_text(p, type, sizeof type);
  eng__buf_addf(&md, "**%s**%s", type,
                (p->flags & ENG_P_REQUIRED) && !p->def ? ", required" : "");
  if (p->def) {
    json_t *d = json_loads(p->def, JSON_DECODE_ANY, NULL);
    if (d) json_object_set_new(ps, "default", d);
    eng__buf_addf(&md, ", default `%s`", p->def);
  }
  bool ms = p->type == ENG_T_DURATION;
  char a[32], b[32];
  if (p->flags & ENG_P_MIN) {
    if (!ms) json_object_set_new(ps, "minimum", json_real(p->min));
    if (ms) eng__fmt_duration((int64_t)p->min, a, sizeof a);
    else snprintf(a, sizeof a, "%.15g", p->min);
    eng__buf_addf(&md, ", at least %s", a);
  }
  if (p->flags & ENG_P_MAX) {
    if (!ms) json_object_set_new(ps, "maximum", json_real(p->max));
    if (ms) eng__fmt_duration((int64_t)p->max, b, sizeof b);
    else snprintf(b, sizeof b, "%.15g", p->max);
    eng__buf_addf(&md, ", at most %s", b);
  }
  if (p->choices) eng__buf_addf(&md, ", one of `%s`", p->choices);
  if (p->flags & ENG_P_SECRET) eng__buf_adds(&md, ", secret");
  if (p->target) eng__buf_addf(&md, ", names a %s", cli_target_name(p->target));
  if (p->doc) {
    json_object_set_new(ps, "description", json_string(p->doc));
    eng__buf_addf(&md, "\n\n%s", p->doc);
  }
  if (p->type == ENG_T_DURATION)
    eng__buf_adds(&md, "\n\nA duration: 500ms, 30s, 5m, 1h30m, or seconds.");
  json_object_set_new(ps, "markdownDescription", json_string(md.data));
  eng__buf_free(&md);
  return ps;
}

static json_t *action_doc(const eng__action_ref *r, bool markdown) {
  const eng_action *a = r->action;
  if (!markdown) return json_string(a->doc ? a->doc : r->full);
  eng__buf md = {0};
  const char *cr = cli_creates_name(a);
  eng__buf_addf(&md, "**%s** (%s)%s%s%s\n\n%s", r->full,
                cli_side_names[a->side_effect],
                (a->flags & ENG_A_REPEAT_SAFE) ? ", repeat-safe" : "",
                cr ? ", creates " : "", cr ? cr : "", a->doc ? a->doc : "");
  if (a->outputs && a->outputs->name) {
    eng__buf_adds(&md, "\n\nOutputs:");
    for (const eng_output *o = a->outputs; o->name; o++)
      eng__buf_addf(&md, "\n- `%s` (%s) %s", o->name, eng__type_name(o->type),
                    o->doc ? o->doc : "");
  }
  json_t *s = json_string(md.data);
  eng__buf_free(&md);
  return s;
}

/* One `if uses = ACTION then with = its parameters` variant per action
 * (into variants), and the enum of `uses` with each action's help. */
static void action_variants(json_t *variants, json_t *uses_enum) {
  const eng__action_ref **acts;
  size_t na = eng__registry_actions(&acts);
  for (size_t i = 0; i < na; i++) {
    const eng_action *a = acts[i]->action;
    json_t *props = json_object();
    json_t *req = json_array();
    for (const eng_param *p = a->params; p && p->name; p++) {
      json_object_set_new(props, p->name, param_schema(p));
      if ((p->flags & ENG_P_REQUIRED) && !p->def)
        json_array_append_new(req, json_string(p->name));
    }
    json_t *with = json_pack("{s:s, s:o, s:b, s:o, s:o}", "type", "object",
                             "properties", props, "additionalProperties", 0,
                             "description", action_doc(acts[i], false),
                             "markdownDescription", action_doc(acts[i], true));
    if (json_array_size(req)) json_object_set_new(with, "required", req);
    else json_decref(req);
    json_array_append_new(
        variants,
        json_pack("{s:{s:{s:{s:s}}}, s:{s:{s:o}}}", "if", "properties", "uses",
                  "const", acts[i]->full, "then", "properties", "with", with));
    json_array_append_new(uses_enum,
                          json_pack("{s:s, s:o, s:o}", "const", acts[i]->full,
                                    "description", action_doc(acts[i], false),
                                    "markdownDescription",
                                    action_doc(acts[i], true)));
  }
}

int cmd_schema(cli *c) {
  if (c->help) {
    return cli_print_help("usage: engine schema\n\nPrints a JSON Schema (draft 2020-12) for "
          "runbook files, generated from the loaded plugins.\n", stdout, 0);
  }
  cli_load_plugins_quietly(c);
  json_t *variants = json_array();
  json_t *uses_enum = json_array();
  action_variants(variants, uses_enum);
  json_t *dur = json_pack("{s:[s,s], s:s}", "type", "string", "number",
                          "pattern", "^([0-9.]+(ms|s|m|h|d))+$|^[0-9.]+$");
  json_t *retry = json_pack(
      "{s:s, s:{s:{s:s, s:i}, s:O, s:{s:s, s:i}, s:O}, s:b}", "type",
      "object", "properties", "attempts", "type", "integer", "minimum", 1,
      "delay", dur, "backoff", "type", "number", "minimum", 1, "max_delay",
      dur, "additionalProperties", 0);
  json_t *step = json_pack(
      "{s:s, s:[s,s], s:{s:{s:s, s:s}, s:{s:s}, s:{s:s, s:o}, s:{s:s}, "
      "s:{s:[s,s]}, s:{s:[s,s]}, s:O, s:O, s:{s:s}, s:{s:s}, s:{s:s}, "
      "s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}, s:b, s:o}",
      "type", "object", "required", "id", "uses", "properties", "id", "type",
      "string", "pattern", "^[a-z0-9_-]+$", "name", "type", "string", "uses",
      "type", "string", "anyOf", uses_enum, "with", "type", "object", "needs",
      "type", "array", "string", "if", "type", "string", "boolean", "timeout",
      dur, "retry", retry, "continue_on_error", "type", "boolean", "check",
      "type", "string", "outputs", "type", "object", "recovered", "type",
      "boolean", "description", "type", "string", "keep", "type", "boolean",
      "temporary", "type", "boolean", "additionalProperties", 0,
      "allOf", variants);
  /* allow_disruptive: disruptive use of a protected target, this step only */
  json_object_set_new(json_object_get(step, "properties"), "allow_disruptive",
                      json_pack("{s:s}", "type", "boolean"));
  /* for_each: a list, a map or a template; its items under max_parallel */
  json_object_set_new(json_object_get(step, "properties"), "for_each",
                      json_pack("{s:[s,s,s]}", "type", "array", "object", "string"));
  json_object_set_new(json_object_get(step, "properties"), "max_parallel",
                      json_pack("{s:s, s:i, s:i}", "type", "integer", "minimum", 1,
                                "maximum", 1000));
  json_object_set_new(json_object_get(step, "properties"), "fail_fast",
                      json_pack("{s:s}", "type", "boolean"));
  json_t *param = json_pack(
      "{s:[s,s,s,s,s,s], s:{s:{s:s}, s:{s:s}, s:{s:s}, s:{}, s:{s:s, s:[s,s,s,s,s,s,s,s,s]}, "
      "s:{s:s}, s:{s:s}, s:{s:s}}}",
      "type", "object", "string", "number", "boolean", "array", "null",
      "properties", "env", "type", "string", "secret", "type", "boolean",
      "required", "type", "boolean", "default", "type", "type", "string",
      "enum", "string", "int", "number", "bool", "duration", "list", "map",
      "timestamp", "any", "choices", "type", "array", "description", "type", "string", "doc",
      "type", "string");
  json_t *strlist = json_pack("{s:s, s:{s:s}}", "type", "array", "items",
                              "type", "string");
  json_t *schema = json_pack(
      "{s:s, s:s, s:s, s:[s,s,s], s:{s:{s:i}, s:{s:s, s:s}, s:{s:s}, "
      "s:{s:s, s:o}, s:{s:s, s:{s:O, s:O, s:{s:s}}}, "
      "s:{s:s, s:{s:O, s:O, s:O, s:O, s:O, s:{s:s}, s:{s:s}}}, "
      "s:{s:s, s:{s:O, s:O}}, s:{s:s, s:O}, s:{s:s, s:O}}, s:b}",
      "$schema", "https://json-schema.org/draft/2020-12/schema", "title",
      "engine runbook (version 1)", "type", "object", "required", "version",
      "name", "steps", "properties", "version", "const", 1, "name", "type",
      "string", "pattern", "^[a-z0-9][a-z0-9-]*$", "description", "type",
      "string", "params", "type", "object", "additionalProperties", param,
      "slo", "type", "object", "properties", "rto", dur, "rpo", dur,
      "backup_time", "type", "string", "guards", "type", "object",
      "properties", "protected_databases", strlist, "protected_volumes",
      strlist, "protected_buckets", strlist, "protected_instances", strlist,
      "forbidden_commands", strlist, "require", "type", "array", "checks",
      "type", "array", "defaults", "type", "object", "properties", "timeout",
      dur, "retry", retry, "steps", "type", "array", "items", step, "finally",
      "type", "array", "items", step, "additionalProperties", 0);
  json_decref(dur);
  json_decref(retry);
  json_decref(step);
  json_decref(strlist);
  if (!schema) {
    fprintf(stderr, "engine: internal error building the schema\n");
    return 1;
  }
  json_t *props = json_object_get(schema, "properties");
  /* drill: true/false, or a template such as ${params.drill} */
  json_object_set_new(props, "drill", json_pack("{s:[s,s]}", "type", "boolean", "string"));
  json_object_set_new(props, "lock", json_pack("{s:s}", "type", "string"));
  char *s = json_dumps(schema, JSON_INDENT(2));
  puts(s);
  free(s);
  json_decref(schema);
  return 0;
}
