/*
 * model/model.h - the runbook model (runbook.c): parameters, steps with
 * their order, conditions, timeouts, retries and dispositions, guards and
 * SLO, loaded from YAML nodes and checked for shape (keys, types, ids,
 * needs, cycles, durations). What a step's action is and what its
 * expressions mean is decided above (actions/, expr/, plan/). Above base/.
 */
#ifndef ENGINE_MODEL_H
#define ENGINE_MODEL_H

#include "base/base.h"

/* ---- runbook.c: the model ------------------------------------------------ */

typedef struct eng__retry {
  int attempts;
  int64_t delay_ms;
  double backoff;
  int64_t max_delay_ms;
} eng__retry;

/* A step's action: filled by the registry (actions/registry.c) when the
 * runbook is validated. */
typedef struct eng__action_ref {
  const eng_plugin *plugin;
  const eng_action *action;
  char *full; /* "postgres.dump", or "shell" for built-ins */
  bool builtin;
} eng__action_ref;

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
  /* allow_disruptive: true: disruptive use of a protected target (VACUUM
   * FULL, CLUSTER, REINDEX, terminating connections) is allowed for this
   * step only */
  bool allow_disruptive;
  /* keep: / temporary: given: what the resources it creates are */
  bool has_disposition;
  eng_disposition disposition;
  /* for_each: a list, a map, or a ${...} template yielding one; its items
   * run as the step's items (each.value, each.index, each.key) */
  eng__node *for_each;
  eng__node *name_node; /* `name:`; an item's may read `each` */
  int max_parallel; /* items at once (default 1), bounded by --jobs */
  bool fail_fast;   /* a failed item stops starting others (default) */
  bool if_each;     /* its `if:` reads `each`: decided per item */
} eng__step;

typedef struct eng__runbook {
  char *file, *dir, *name, *description;
  char sha256[ENG__SHA256_HEX];
  eng__node *root;
  eng__param_def *params;
  size_t n_params;
  eng__step *steps; /* main steps, then finally steps */
  size_t n_steps, n_main;
  int64_t slo_rto_ms, slo_rpo_ms; /* -1: none */
  eng__node *slo_backup_time;
  /* a point-in-time recovery: the achieved recovery point (the last
   * replayed commit) and the time it is measured against (default: when
   * the recovered step ended); the step whose start starts the RTO clock
   * (default: the run's start). NULL when not given. */
  eng__node *slo_recovery_point, *slo_recovery_target, *slo_rto_from;
  /* regressions against the previous successful run of the same runbook
   * and lock (-1: none): restored rows and backup size may drop by at most
   * these percentages, the RTO grow by at most this factor */
  double slo_rows_drop_pct, slo_backup_drop_pct, slo_rto_growth;
  eng__node *lock; /* `lock:` (a template), or NULL */
  eng__node *drill; /* `drill:` (true/false or a template), or NULL */
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
/* The keys a mapping accepts (NULL-terminated), by the mapping's place in
 * the file: "" the top, "steps[]" a step (of `finally` too), "params.*" a
 * parameter, "steps[].retry" a retry (of `defaults` too). The one list the
 * parser checks keys against and `engine schema` describes: a key added
 * here is accepted by the engine, and the schema test asks for its
 * description. */
typedef struct eng__keyset {
  const char *path;
  const char *const *keys;
} eng__keyset;
extern const eng__keyset eng__runbook_keysets[]; /* ends with {NULL, NULL} */
/* The keys at path in sets, or NULL. */
const char *const *eng__keys(const eng__keyset *sets, const char *path);
/* A valid run lock name: [A-Za-z0-9._-], 1-128 characters, not starting
 * with a dot. */
bool eng__lock_name_ok(const char *name);
/* The step named id, or the step of an item named "ID[LABEL]". */
eng__step *eng__runbook_step(eng__runbook *rb, const char *id);
/* Lua code written as a plain scalar that " #..." follows on its line:
 * YAML took the rest of the line for a comment, so `check: return
 * #outputs.items == 3` is only `return` ('#' is also Lua's length
 * operator). True when said (where + key name the place: "step 'a': ",
 * "check"). */
bool eng__code_cut(eng__diags *d, const char *file, const eng__node *n,
                   const char *where, const char *key);
/* Is step `target` among the transitive dependencies (needs) of step
 * `from`? Linear in the steps and their needs. */
bool eng__runbook_depends(const eng__runbook *rb, size_t from, size_t target);

#endif /* ENGINE_MODEL_H */
