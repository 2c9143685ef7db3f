/* runbook.h - YAML nodes with positions, the runbook model, validation. */
#ifndef ENGINE_RUNBOOK_H
#define ENGINE_RUNBOOK_H

#include "engine_int.h"

/* ---- yaml.c: YAML document -> node tree with file:line:col ------------- */

typedef enum eng__node_kind {
  ENG__N_SCALAR,
  ENG__N_MAP,
  ENG__N_SEQ
} eng__node_kind;

typedef struct eng__tpl eng__tpl;

typedef struct eng__node {
  eng__node_kind kind;
  int line, col;
  char *str;               /* scalar text */
  bool plain;              /* scalar written without quotes */
  size_t n;                /* map entries / seq items */
  struct eng__node **keys; /* map: key scalars */
  struct eng__node **vals; /* map values, seq items */
  eng__tpl *tpl;           /* scalar holding ${...}: compiled template */
} eng__node;

#define ENG__YAML_MAX_BYTES (8u << 20)
#define ENG__YAML_MAX_DEPTH 64
#define ENG__YAML_MAX_NODES 200000
#define ENG__MAX_STEPS 10000

/* Parse; NULL with a diagnostic on error. */
eng__node *eng__yaml_parse(const char *file, const char *text, size_t len,
                           eng__diags *d);
void eng__node_free(eng__node *n); /* and the templates it owns */
void eng__tpl_free(eng__tpl *t);
eng__node *eng__node_get(const eng__node *map, const char *key);
/* A scalar converted by the YAML core schema (null/bool/int/float/str);
 * maps/seqs recursively. Templates are left as strings. */
json_t *eng__node_to_json(const eng__node *n);
const char *eng__node_kind_name(const eng__node *n);
/* Append v as block-style YAML (one document's body, no "---"): strings
 * bare when they read back as the same string, multi-line text as a
 * literal block, anything else double-quoted; parsing the text gives v
 * again (eng__node_to_json). */
void eng__yaml_emit(eng__buf *b, const json_t *v);

/* ---- template.c: ${...} in strings ------------------------------------- */

typedef struct eng__tpl_part {
  char *text; /* literal, or the Lua expression */
  bool expr;
  int ref;    /* compiled expression */
} eng__tpl_part;

struct eng__tpl {
  size_t n;
  eng__tpl_part *parts;
  bool whole; /* exactly one ${...}: keeps the value's type */
};

/* True when s holds a "${" that is not "$${". */
bool eng__tpl_has_expr(const char *s);
/* Split and compile; error text in err. */
int eng__tpl_compile(eng__lua *L, const char *s, const char *file, int line,
                     eng__tpl **out, char *err, size_t errlen);
/* Compile every template scalar below node (stores node->tpl). */
int eng__tpl_compile_tree(eng__lua *L, eng__node *n, const char *file,
                          eng__diags *d, const char *what);
/* Render a node to JSON, evaluating templates. secret_out is set when a
 * rendered string used a secret (the redactor decides). */
json_t *eng__tpl_render(eng__lua *L, const eng__node *n, char *err,
                        size_t errlen);
/* Is every template of the tree free of references to steps (so it can be
 * resolved at plan time)? */
bool eng__tpl_static(const eng__node *n);
/* The Lua code of an `if:` or check written bare or as one ${...}
 * (malloc'd). */
char *eng__cond_code(const char *s);
/* A copy of a JSON value with the ${...} references inside its strings
 * rendered (the journal stores secrets as references). */
json_t *eng__tpl_deref(eng__lua *L, const json_t *v);

/* ---- runbook.c: the model ------------------------------------------------ */

typedef struct eng__retry {
  int attempts;
  int64_t delay_ms;
  double backoff;
  int64_t max_delay_ms;
} eng__retry;

typedef struct eng__action_ref eng__action_ref; /* registry.c */

typedef struct eng__param_def {
  char *name;
  eng__node *node;
  eng_type type;
  char *env;
  eng__node *def; /* may hold templates */
  bool secret, required;
  json_t *choices;
  char *doc;
} eng__param_def;

typedef struct eng__step {
  char *id, *name, *uses, *description;
  eng__node *node, *with, *outputs, *if_node, *check_node;
  const eng__action_ref *action;
  size_t idx;
  size_t *deps;
  size_t n_deps;
  bool has_needs;
  eng__node *needs_node;
  int if_ref;    /* -1: default condition */
  int check_ref; /* -1: none */
  int64_t timeout_ms;
  eng__retry retry;
  bool continue_on_error, recovered, is_finally;
  /* keep: / temporary: given: what the resources it creates are */
  bool has_disposition;
  eng_disposition disposition;
} eng__step;

typedef struct eng__runbook {
  char *file, *dir, *name, *description;
  char sha256[65];
  eng__node *root;
  eng__param_def *params;
  size_t n_params;
  eng__step *steps; /* main steps, then finally steps */
  size_t n_steps, n_main;
  int64_t slo_rto_ms, slo_rpo_ms; /* -1: none */
  eng__node *slo_backup_time;
  eng__node *lock; /* `lock:` (a template), or NULL */
  eng__node *guards;
  int64_t default_timeout_ms;
  eng__retry default_retry;
} eng__runbook;

/* Load and check the shape (keys, types, ids, needs, cycles, durations).
 * Plugin params and Lua are checked by eng__runbook_validate. Returns NULL
 * when the file is not a YAML mapping; otherwise the model, which is only
 * runnable when d->errors did not grow (callers compare before/after). */
eng__runbook *eng__runbook_load(const char *file, eng__diags *d);
/* The same from text in memory (file names it in diagnostics). */
eng__runbook *eng__runbook_parse(const char *file, const char *text,
                                 size_t len, eng__diags *d);
void eng__runbook_free(eng__runbook *rb);
/* A valid run lock name: [A-Za-z0-9._-], 1-128 characters, not starting
 * with a dot. */
bool eng__lock_name_ok(const char *name);
eng__step *eng__runbook_step(eng__runbook *rb, const char *id);

/* ---- convert.c: values into declared types --------------------------------- */

/* Convert v (borrowed) to type; NULL with err on failure. */
json_t *eng__convert(const json_t *v, eng_type type, const char *choices,
                     char *err, size_t errlen);
const char *eng__type_name(eng_type t);
/* v converted to what parameter p accepts: type, choices, min/max, check. */
json_t *eng__convert_param(const json_t *v, const eng_param *p, char *err,
                           size_t errlen);
int eng__type_parse(const char *s, eng_type *t);
/* The type name meant by an unknown one ("integer" -> "int"), or NULL. */
const char *eng__type_suggest(const char *s);
/* One line (at most n - 1 bytes) saying what a step produced: its
 * `summary` output when the action sets one, else the size, rows or
 * failing exit code, else its first scalar outputs in declared order
 * ("name=value"). Empty when there is nothing to say. */
void eng__outputs_summary(const json_t *outputs, const eng_output *decl,
                          char *buf, size_t n);

#endif
