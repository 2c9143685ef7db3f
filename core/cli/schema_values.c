/* schema_values.c - the JSON Schema of one value for editors (`engine
 * schema`): as strict as the engine, a literal of the form it converts, or
 * a template where it renders one; each with one readable message instead
 * of a regular expression. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

#define TEMPLATE "\\$\\{"
#define DURATION_FORMS "^([0-9.]+(ms|s|m|h|d))+$|^[0-9.]+$"
#define BOOL_TEXT "^([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee])$"
#define INT_TEXT "^[+-]?[0-9]+$"
#define NUMBER_TEXT "^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$"
#define OR_TEMPLATE ", or a template such as ${params.NAME}"
#define DURATION_TEXT "a duration: 500ms, 30s, 5m, 1h30m, 2d, or seconds"

bool schema_failed;

json_t *schema_doc(json_t *s, const char *text) {
  if (!s) return NULL;
  json_object_set_new(s, "description", json_string(text));
  json_object_set_new(s, "markdownDescription", json_string(text));
  return s;
}

json_t *schema_typed(const char *t1, const char *t2, const char *pattern,
                     const char *msg) {
  json_t *s = json_object();
  json_object_set_new(s, "type", t2 ? json_pack("[s,s]", t1, t2) : json_string(t1));
  if (pattern) json_object_set_new(s, "pattern", json_string(pattern));
  if (msg) json_object_set_new(s, "errorMessage", json_string(msg));
  return s;
}

json_t *schema_duration(bool template) {
  return schema_typed("string", "number",
                      template ? DURATION_FORMS "|" TEMPLATE : DURATION_FORMS,
                      template ? DURATION_TEXT OR_TEMPLATE : DURATION_TEXT);
}

json_t *schema_bool(bool template) {
  return template ? schema_typed("boolean", "string", BOOL_TEXT "|" TEMPLATE,
                                 "true or false" OR_TEMPLATE)
                  : schema_typed("boolean", NULL, NULL, "true or false");
}

json_t *schema_scalar(void) {
  return json_pack("{s:[s,s,s]}", "type", "string", "number", "boolean");
}

json_t *schema_scalar_list(void) {
  return json_pack("{s:s, s:o}", "type", "array", "items", schema_scalar());
}

json_t *schema_int(double min, double max, bool template) {
  char msg[200];
  snprintf(msg, sizeof msg, "an integer from %.15g to %.15g%s", min, max,
           template ? OR_TEMPLATE : "");
  json_t *s = template ? schema_typed("integer", "string", INT_TEXT "|" TEMPLATE, msg)
                       : schema_typed("integer", NULL, NULL, msg);
  json_object_set_new(s, "minimum", json_real(min));
  json_object_set_new(s, "maximum", json_real(max));
  return s;
}

/* " from 1 to 64", " of at least 1", or "" (a parameter's range). */
static void range_text(const eng_param *p, char *buf, size_t n) {
  bool lo = p->flags & ENG_P_MIN, hi = p->flags & ENG_P_MAX;
  if (lo && hi) snprintf(buf, n, " from %.15g to %.15g", p->min, p->max);
  else if (lo) snprintf(buf, n, " of at least %.15g", p->min);
  else if (hi) snprintf(buf, n, " of at most %.15g", p->max);
  else *buf = '\0';
}

/* One of choices ("a|b|c"), or a template decided at run time. */
static json_t *choice_schema(const char *choices) {
  json_t *s = schema_typed("string", NULL, NULL, NULL);
  json_t *e = json_array();
  char *cp = eng__xstrdup(choices), *save = NULL;
  for (char *x = strtok_r(cp, "|", &save); x; x = strtok_r(NULL, "|", &save))
    json_array_append_new(e, json_string(x));
  free(cp);
  json_object_set(s, "examples", e);
  json_object_set_new(s, "if", json_pack("{s:s}", "pattern", TEMPLATE));
  json_object_set_new(s, "else", json_pack("{s:o}", "enum", e));
  return s;
}

/* A value of a parameter with declared forms (ABI 1.6): a string of one of
 * them, a number in its range, or a template; its help says the forms. */
static json_t *forms_schema(const eng_param *p) {
  char *pattern = eng__asprintf("^(?:%s)$|" TEMPLATE, p->forms);
  json_t *s = json_pack("{s:s, s:s}", "pattern", pattern, "errorMessage",
                        p->doc ? p->doc : "not one of the forms this parameter takes");
  free(pattern);
  if (p->flags & ENG_P_MIN) json_object_set_new(s, "minimum", json_real(p->min));
  if (p->flags & ENG_P_MAX) json_object_set_new(s, "maximum", json_real(p->max));
  return s;
}

/* A value of type t (of a parameter p declares): its literal forms as the
 * engine converts them (eng__convert), or a template. */
json_t *schema_of_type(eng_type t, const char *choices, const eng_param *p) {
  char range[120] = "", msg[300];
  if (p) range_text(p, range, sizeof range);
  switch (t) {
  case ENG_T_STRING: return choices ? choice_schema(choices) : schema_scalar();
  case ENG_T_INT:
    snprintf(msg, sizeof msg, "an integer%s%s", range, OR_TEMPLATE);
    return schema_typed("integer", "string", INT_TEXT "|" TEMPLATE, msg);
  case ENG_T_NUMBER:
    snprintf(msg, sizeof msg, "a number%s%s", range, OR_TEMPLATE);
    return schema_typed("number", "string", NUMBER_TEXT "|" TEMPLATE, msg);
  case ENG_T_BOOL: return schema_bool(true);
  case ENG_T_DURATION: {
    json_t *s = schema_duration(true);
    json_object_set_new(s, "format", json_string("duration"));
    return s;
  }
  case ENG_T_LIST: /* a single value is a list of one */
    return json_pack("{s:[s,s,s,s,s]}", "type", "array", "string", "number",
                     "boolean", "null");
  case ENG_T_MAP:
    return json_pack("{s:[s,s,s], s:s, s:s}", "type", "object", "null", "string",
                     "pattern", TEMPLATE, "errorMessage", "a mapping" OR_TEMPLATE);
  case ENG_T_ANY:
    return p && p->forms ? forms_schema(p) : json_object();
  case ENG_T_TIMESTAMP:
    return json_pack("{s:[s,s], s:s}", "type", "string", "number", "format",
                     "timestamp");
  default: return json_object();
  }
}

/* The properties of the mapping at path: each key the engine accepts there
 * (its own list, in its order) with its schema from described (consumed).
 * A key the engine accepts without a schema here is accepted as anything,
 * with no description (the schema test names it); a schema of a key the
 * engine does not accept is an internal error: NULL after saying so. */
json_t *schema_keyed(const eng__keyset *sets, const char *path, json_t *described) {
  const char *const *keys = eng__keys(sets, path);
  json_t *props = json_object();
  for (size_t i = 0; keys && keys[i]; i++) {
    json_t *s = json_object_get(described, keys[i]);
    json_object_set_new(props, keys[i], s ? json_incref(s) : json_object());
    if (s) json_object_del(described, keys[i]);
  }
  const char *k;
  json_t *v;
  bool ok = true;
  json_object_foreach(described, k, v) {
    fprintf(stderr, "engine: internal error: the schema describes '%s' in '%s', "
                    "a key the engine does not accept there\n", k, path);
    ok = false;
  }
  json_decref(described);
  if (ok) return props;
  schema_failed = true;
  json_decref(props);
  return NULL;
}

json_t *schema_mapping(const eng__keyset *sets, const char *path,
                       json_t *described) {
  json_t *props = schema_keyed(sets, path, described);
  if (!props) return NULL;
  return json_pack("{s:s, s:o, s:b}", "type", "object", "properties", props,
                   "additionalProperties", 0);
}

/* `--keys`: the keys the engine accepts in each mapping, by place. */
json_t *schema_key_lists(const eng__keyset *sets) {
  json_t *out = json_object();
  for (; sets->path; sets++) {
    json_t *a = json_array();
    for (size_t i = 0; sets->keys[i]; i++)
      json_array_append_new(a, json_string(sets->keys[i]));
    json_object_set_new(out, sets->path, a);
  }
  return out;
}
