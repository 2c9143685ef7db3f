/* cmd_schema.c - `engine schema`: a JSON Schema of runbook files for
 * editors, with every loaded action's parameters. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

/* The elements of a list: a string element may be written as a number or
 * true/false too (it is converted). */
static json_t *items_schema(const eng_param *p) {
  eng_type t = (eng_type)(p->items - 1);
  return schema_of_type(t, p->type == ENG_T_LIST ? p->choices : NULL, NULL);
}

/* A parameter for editors: type, enum, range, default, and the help text
 * as plain and Markdown descriptions. */
static json_t *param_schema(const eng_param *p) {
  json_t *ps = schema_of_type(p->type, p->type == ENG_T_LIST ? NULL : p->choices, p);
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

/* One `if uses = ACTION then with = its parameters` variant per action. */
static void action_variants(json_t *variants) {
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
    bool needs_with = json_array_size(req) > 0;
    if (needs_with) json_object_set_new(with, "required", req);
    else json_decref(req);
    json_t *then = json_pack("{s:{s:o}}", "properties", "with", with);
    if (needs_with) /* with: is required with its parameters */
      json_object_set_new(then, "required", json_pack("[s]", "with"));
    json_array_append_new(
        variants, json_pack("{s:{s:{s:{s:s}}, s:[s]}, s:o}", "if", "properties", "uses",
                            "const", acts[i]->full, "required", "uses", "then", then));
  }
}


/* `uses`: the actions grouped by plugin, so that a wrong name is told the
 * actions of its plugin (or the built-ins, or the plugins); completion
 * offers every action with its help. */
static json_t *uses_schema(void) {
  const eng__plugin_entry *pl;
  size_t np = eng__registry_plugins(&pl);
  const eng__action_ref **acts;
  size_t na = eng__registry_actions(&acts);
  json_t *groups = json_array(), *snippets = json_array();
  eng__buf plugins = {0}, prefixes = {0};
  for (size_t i = 0; i < np; i++) {
    const eng_plugin *p = pl[i].desc;
    json_t *names = json_array(), *docs = json_array();
    eng__buf list = {0};
    for (size_t k = 0; k < na; k++) {
      if (acts[k]->plugin != p) continue;
      json_array_append_new(names, json_string(acts[k]->full));
      json_array_append_new(docs, action_doc(acts[k], true));
      eng__buf_addf(&list, "%s%s", list.len ? ", " : "", acts[k]->full);
      json_array_append_new(snippets, json_pack("{s:s, s:o, s:o, s:s}", "label", acts[k]->full,
                                                "description", action_doc(acts[k], false),
                                                "markdownDescription", action_doc(acts[k], true),
                                                "body", acts[k]->full));
    }
    char *pattern = pl[i].path ? eng__asprintf("^%s[.]", p->name) : eng__xstrdup("^[^.]*$");
    char *msg = pl[i].path
        ? eng__asprintf("not an action of %s; its actions: %s", p->name, list.data)
        : eng__asprintf("not an action: the built-in ones are %s; a plugin's "
                        "are PLUGIN.ACTION", list.data);
    if (pl[i].path) {
      eng__buf_addf(&plugins, "%s%s", plugins.len ? ", " : "", p->name);
      eng__buf_addf(&prefixes, "|^%s[.]", p->name);
    }
    json_array_append_new(groups, json_pack("{s:{s:s, s:s}, s:{s:o, s:o, s:s}}", "if", "type",
                                            "string", "pattern", pattern, "then", "enum", names,
                                            "markdownEnumDescriptions", docs, "errorMessage", msg));
    free(pattern);
    free(msg);
    eng__buf_free(&list);
  }
  char *known = eng__asprintf("^[^.]*$%s", prefixes.data ? prefixes.data : "");
  char *msg = eng__asprintf("not an action: PLUGIN.ACTION names a loaded plugin (%s)",
                            plugins.data ? plugins.data : "none is loaded");
  json_array_append_new(groups, json_pack("{s:s, s:s}", "pattern", known, "errorMessage", msg));
  free(known);
  free(msg);
  eng__buf_free(&plugins);
  eng__buf_free(&prefixes);
  return json_pack("{s:s, s:o, s:o}", "type", "string", "allOf", groups, "defaultSnippets",
                   snippets);
}

static void add(json_t *o, const char *key, json_t *s, const char *text) {
  json_object_set_new(o, key, schema_doc(s, text));
}

static json_t *retry_schema(void) {
  json_t *r = json_object();
  add(r, "attempts", schema_int(1, 1000, false), "How many attempts in all (1: no retry).");
  add(r, "delay", schema_duration(false), "The wait before the second attempt.");
  add(r, "backoff",
      json_pack("{s:s, s:i, s:s}", "type", "number", "minimum", 1, "errorMessage",
                "a number of at least 1"),
      "The factor each further wait grows by.");
  add(r, "max_delay", schema_duration(false), "The longest wait between attempts.");
  return schema_mapping(eng__runbook_keysets, "steps[].retry", r);
}

static json_t *step_schema(json_t *retry) {
  json_t *d = json_object();
  add(d, "id", schema_typed("string", "integer", "^[a-z0-9_-]+$",
                            "a step id: lower-case letters, digits, '_' and '-'"),
      "The step's id, unique in the runbook (`${steps.ID.outputs.NAME}`).");
  add(d, "name", schema_scalar(), "A name shown in the run's output.");
  add(d, "uses", uses_schema(), "The action: a built-in one or PLUGIN.ACTION.");
  add(d, "with", json_pack("{s:s}", "type", "object"), "The action's parameters.");
  add(d, "needs", json_pack("{s:[s,s,s], s:o}", "type", "array", "string", "number", "items",
                            schema_scalar()),
      "The steps this one runs after (by default: the step before it).");
  add(d, "if", json_pack("{s:[s,s,s,s]}", "type", "string", "boolean", "number", "null"),
      "A Lua condition: the step runs only when it is true.");
  add(d, "timeout", schema_duration(false), "The longest one attempt may take.");
  add(d, "retry", json_incref(retry), "Attempts, delay, backoff and max_delay.");
  add(d, "continue_on_error", schema_bool(false), "A failure of this step does not fail the run.");
  add(d, "check", schema_scalar(), "Lua the outputs must pass: return outputs.rows > 0, \"why\".");
  add(d, "outputs", json_pack("{s:s}", "type", "object"), "Outputs of the step's own, in Lua.");
  add(d, "recovered", schema_bool(false), "Service is back after this step: the RTO stops.");
  add(d, "description", json_object(), "Free text.");
  add(d, "keep", schema_bool(false), "What the step creates is delivered by the run.");
  add(d, "temporary", schema_bool(false), "What the step creates is removed when the run ends.");
  add(d, "allow_disruptive", schema_bool(false),
      "Disruptive use of a protected target, for this step only.");
  add(d, "for_each",
      json_pack("{s:[s,s,s]}", "type", "array", "object", "string"),
      "Run the step once for each item of a list or map, or of a template "
      "that yields one (each.value, each.index, each.key).");
  add(d, "max_parallel", schema_int(1, 1000, false),
      "How many items of a for_each step run at once (1: one after another).");
  add(d, "fail_fast", schema_bool(false),
      "A failed item stops new items from starting (true by default).");
  json_t *step = schema_mapping(eng__runbook_keysets, "steps[]", d);
  json_t *variants = json_array();
  action_variants(variants);
  if (step) {
    json_object_set_new(step, "required", json_pack("[s,s]", "id", "uses"));
    json_object_set_new(step, "allOf", variants);
  } else {
    json_decref(variants);
  }
  return step;
}

static json_t *param_def_schema(void) {
  json_t *d = json_object();
  add(d, "env", schema_typed("string", NULL, NULL, NULL), "The environment variable it is read from.");
  add(d, "secret", schema_bool(false), "Never shown or recorded.");
  add(d, "required", schema_bool(false), "The run needs a value.");
  add(d, "default", json_object(), "The value when none is given.");
  add(d, "type", json_pack("{s:[s,s,s,s,s,s,s,s,s]}", "enum", "string", "int", "number", "bool",
                           "duration", "list", "map", "timestamp", "any"),
      "The type the value is converted to.");
  add(d, "choices", json_pack("{s:s}", "type", "array"), "The accepted values.");
  add(d, "description", json_object(), "What it is, for `engine plan` and reports.");
  add(d, "doc", json_object(), "The same as description.");
  json_t *m = schema_mapping(eng__runbook_keysets, "params.*", d);
  if (m) /* NAME: VALUE is the parameter with that default */
    json_object_set_new(m, "type", json_pack("[s,s,s,s,s]", "object", "string", "number",
                                             "boolean", "null"));
  return m;
}

static json_t *guards_schema(void) {
  json_t *d = json_object();
  add(d, "protected_databases", schema_scalar_list(), "Databases no step may disrupt or destroy.");
  add(d, "protected_volumes", schema_scalar_list(), "Container volumes no step may disrupt or destroy.");
  add(d, "protected_buckets", schema_scalar_list(), "Buckets (s3://BUCKET/PREFIX) no step may disrupt or destroy.");
  add(d, "protected_instances", schema_scalar_list(), "Instances no step may disrupt or destroy.");
  add(d, "protected_paths", schema_scalar_list(), "Paths no step may disrupt or destroy.");
  add(d, "forbidden_commands", schema_scalar_list(), "Commands no step may run.");
  add(d, "unverified_commands",
      json_pack("{s:[s,s], s:s}", "enum", "allow", "refuse", "errorMessage", "allow or refuse"),
      "A command line the guards cannot see through: allow (the default) or refuse.");
  json_t *req = json_object();
  add(req, "step", schema_scalar(), "The step that must have run...");
  add(req, "before", schema_scalar(), "...before this one.");
  json_t *rm = schema_mapping(eng__runbook_keysets, "guards.require[]", req);
  if (rm) json_object_set_new(rm, "required", json_pack("[s,s]", "step", "before"));
  add(d, "require", json_pack("{s:s, s:o*}", "type", "array", "items", rm),
      "Orderings: step before another.");
  json_t *chk = json_object();
  add(chk, "that", schema_scalar(), "A Lua expression that must be true before the run.");
  add(chk, "message", schema_scalar(), "What is said when it is not.");
  json_t *cm = schema_mapping(eng__runbook_keysets, "guards.checks[]", chk);
  if (cm) json_object_set_new(cm, "required", json_pack("[s]", "that"));
  add(d, "checks", json_pack("{s:s, s:o*}", "type", "array", "items", cm),
      "Conditions checked before the first step.");
  return schema_mapping(eng__runbook_keysets, "guards", d);
}

/* The top of a runbook; NULL on an internal error (said). */
static json_t *runbook_schema(void) {
  json_t *retry = retry_schema(), *step = retry ? step_schema(retry) : NULL;
  json_t *d = json_object(), *v;
  add(d, "version", json_pack("{s:[i,s], s:s}", "enum", 1, "1", "errorMessage",
                              "version: 1 (the format version)"), "The format version: 1.");
  add(d, "name", schema_typed("string", "integer", "^[a-z0-9][a-z0-9-]*$",
                              "lower-case letters, digits and '-', not starting with '-'"),
      "The runbook's name, shown in reports and `engine runs`.");
  add(d, "description", json_object(), "Free text.");
  v = json_pack("{s:s, s:{s:s, s:s}, s:o*}", "type", "object", "propertyNames", "pattern",
                "^[a-z0-9_]+$", "errorMessage", "a parameter name: [a-z0-9_]+",
                "additionalProperties", param_def_schema());
  add(d, "params", v, "The runbook's inputs, by name.");
  json_t *slo = json_object();
  add(slo, "rto", schema_duration(false), "Recovery time objective.");
  add(slo, "rpo", schema_duration(false), "Recovery point objective.");
  add(slo, "rows_drop", json_pack("{s:[s,s], s:s}", "type", "string", "number", "pattern",
                                   "^[0-9]+(\\.[0-9]+)?%?$"),
      "Restored rows may drop by at most this percentage since the previous successful run.");
  add(slo, "backup_size_drop", json_pack("{s:[s,s], s:s}", "type", "string", "number", "pattern",
                                          "^[0-9]+(\\.[0-9]+)?%?$"),
      "The backup may shrink by at most this percentage since the previous successful run.");
  add(slo, "rto_growth", json_pack("{s:[s,s], s:s}", "type", "string", "number", "pattern",
                                    "^[0-9]+(\\.[0-9]+)?x?$"),
      "The RTO may grow to at most this factor of the previous successful run's.");
  add(slo, "backup_time", json_pack("{s:[s,s]}", "type", "string", "number"),
      "When the restored backup was taken (a timestamp or a template).");
  add(slo, "recovery_point", json_pack("{s:[s,s]}", "type", "string", "number"),
      "A point-in-time recovery: the last commit the copy replayed (a timestamp or a "
      "template, ${steps.copy.outputs.replay_timestamp}); instead of backup_time.");
  add(slo, "recovery_target", json_pack("{s:[s,s]}", "type", "string", "number"),
      "What recovery_point is measured against: the recovery target time (default: "
      "the end of the recovered step).");
  add(slo, "rto_from", json_pack("{s:s}", "type", "string"),
      "The step whose start starts the RTO clock (default: the run's start).");
  add(d, "slo", schema_mapping(eng__runbook_keysets, "slo", slo), "Recovery targets.");
  add(d, "guards", guards_schema(), "What the run may never touch.");
  json_t *def = json_object();
  add(def, "timeout", schema_duration(false), "The longest one attempt of a step may take.");
  add(def, "retry", json_incref(retry), "Every step's retry, unless it has its own.");
  add(d, "defaults", schema_mapping(eng__runbook_keysets, "defaults", def),
      "timeout and retry of every step that does not set its own.");
  add(d, "steps", json_pack("{s:s, s:{s:s}}", "type", "array", "items", "$ref", "#/$defs/step"),
      "The main steps.");
  add(d, "finally", json_pack("{s:s, s:{s:s}}", "type", "array", "items", "$ref", "#/$defs/step"),
      "Steps that run after the main steps, whatever happened.");
  add(d, "lock", schema_typed("string", NULL,
                              "^(?![.])(?!.*[.][.])[A-Za-z0-9._-]{1,128}$|\\$\\{",
                              "a lock name: letters, digits, '.', '_' and '-', or a template"),
      "A run lock: one run at a time per rendered name.");
  add(d, "drill", schema_bool(true), "true: the run is a rehearsal (a drill).");
  json_decref(retry);
  json_t *m = schema_mapping(eng__runbook_keysets, "", d);
  if (!m || !step) {
    json_decref(m);
    json_decref(step);
    return NULL;
  }
  json_object_set_new(m, "$defs", json_pack("{s:o}", "step", step));
  json_object_set_new(m, "$schema", json_string("https://json-schema.org/draft/2020-12/schema"));
  json_object_set_new(m, "title", json_string("engine runbook (version 1)"));
  json_object_set_new(m, "required", json_pack("[s,s,s]", "version", "name", "steps"));
  return m;
}

int cmd_schema(cli *c) {
  if (c->help) {
    return cli_print_help(
        "usage: engine schema [--inventory] [--out FILE] [--keys]\n\nPrints a JSON "
        "Schema (draft 2020-12) for runbook files, generated from the loaded "
        "plugins; with --inventory, for fleet inventories (engine fleet "
        "render). --out FILE writes it to FILE. --keys prints the keys the "
        "engine accepts in each mapping instead, as JSON.\n", stdout, 0);
  }
  const eng__keyset *sets = c->inventory ? eng__fleet_keysets : eng__runbook_keysets;
  json_t *schema;
  if (c->keys) {
    schema = schema_key_lists(sets);
  } else {
    if (!c->inventory) cli_load_plugins_quietly(c);
    schema = c->inventory ? schema_inventory() : runbook_schema();
    if (schema_failed) {
      json_decref(schema);
      schema = NULL;
    }
  }
  if (!schema) {
    fprintf(stderr, "engine: internal error building the schema\n");
    return 1;
  }
  FILE *out = c->out ? fopen(c->out, "w") : stdout;
  if (!out) {
    fprintf(stderr, "engine: cannot write %s: %s\n", c->out, strerror(errno));
    json_decref(schema);
    return ENG_EXIT_FAILED;
  }
  int rc = json_dumpf(schema, out, JSON_INDENT(2));
  fputc('\n', out);
  if (c->out && fclose(out) != 0) rc = -1;
  json_decref(schema);
  if (rc != 0) {
    fprintf(stderr, "engine: cannot write %s\n", c->out ? c->out : "the schema");
    return ENG_EXIT_FAILED;
  }
  return 0;
}
