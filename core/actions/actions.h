/*
 * actions/actions.h - what a step can use: the built-in actions
 * (builtins.c: shell, http, lua, assert, approve, sleep; files.c: files;
 * prune.c: prune, mark_verified)
 * and the registry
 * of plugins (registry.c: dlopen, ABI checks, declarations of every ABI
 * minor normalized, actions, stream schemes and state stores). Above
 * expr/ (the lua action runs hooks) and call/.
 */
#ifndef ENGINE_ACTIONS_H
#define ENGINE_ACTIONS_H

#include "expr/expr.h"

typedef struct eng__plugin_entry {
  const eng_plugin *desc; /* declarations in the current ABI's layout */
  char *path;             /* NULL for built-ins */
  struct norm *decls;     /* what the loader allocated for desc */
} eng__plugin_entry;

typedef struct eng__plugin_failure {
  char *path, *stem, *message;
} eng__plugin_failure;

/* Load built-ins and every plugin found in dirs (in order; the first plugin
 * of a name wins). Failures are kept (eng__registry_failures) and printed
 * as warnings in d. Returns the number of failures. */
size_t eng__registry_load(const char *const *dirs, size_t n, eng__diags *d);
void eng__registry_unload(void); /* frees the tables; never dlcloses */
const eng__action_ref *eng__registry_find(const char *uses);
size_t eng__registry_actions(const eng__action_ref ***out);
size_t eng__registry_plugins(const eng__plugin_entry **out);
/* The state store serving `scheme` ("s3"), or NULL (ABI 1.3). */
const eng_store_scheme *eng__registry_store(const char *scheme);
size_t eng__registry_failures(const eng__plugin_failure **out);
/* Candidate names for "did you mean" (NULL-free array, static storage). */
size_t eng__registry_names(const char *const **out);
/* Check a descriptor (header, names, declarations of its ABI minor,
 * defaults against their types); message in err. Exposed for tests. */
int eng__plugin_check(const eng_plugin *p, char *err, size_t errlen);

/* builtins.c */
const eng_plugin *eng__builtins(void);

/* files.c: the `files` action's start and declarations. */
int eng__files_start(eng_call *call, const json_t *params);
extern const eng_param eng__files_params[];
extern const eng_output eng__files_outputs[];
/* The SHA-256 of a sidecar's text (its first line: `sha256sum` output,
 * GNU or BSD form, or the bare hex), lowercase into out; false when the
 * text is not one. Pure; exposed for the fuzz harness. */
bool eng__sha256_sidecar(const char *text, size_t len,
                         char out[ENG__SHA256_HEX]);

/* prune.c: the `prune` action (retention of a local folder) and
 * `mark_verified` (the marker a drill writes beside its backup). */
int eng__prune_start(eng_call *call, const json_t *params);
eng_side_effect eng__prune_classify(const json_t *params);
void eng__prune_describe(const json_t *params, char *buf, size_t n);
/* True (after host->fail) when the parameters give no policy. */
bool eng__prune_refuse_policy(eng_call *call, const json_t *params);
extern const eng_param eng__prune_params[];
extern const eng_output eng__prune_outputs[];
int eng__mark_verified_start(eng_call *call, const json_t *params);
extern const eng_param eng__mark_verified_params[];
extern const eng_output eng__mark_verified_outputs[];

/* The plugin search path (docs/plugins.md) (malloc'd strings; free with free()). */
size_t eng__plugin_search_path(const char *const *extra, size_t n_extra,
                               char ***out);

#endif /* ENGINE_ACTIONS_H */
