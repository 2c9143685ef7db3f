/*
 * fleet/runnable.h - whether a runbook starts in a database's pod as
 * `engine fleet render` writes it (runnable.c): its parameters given, its
 * approvals given in advance. Used by fleet.c only.
 */
#ifndef ENGINE_FLEET_RUNNABLE_H
#define ENGINE_FLEET_RUNNABLE_H

#include "model/model.h"

/* One environment variable of the pod, as the inventory gives it. */
typedef struct eng__pod_env {
  const char *name;
  const eng__node *node; /* its value in the inventory; NULL: set by render */
  bool literal;          /* a value written in the inventory, not a Secret's */
} eng__pod_env;

/* What a database's pod gives its run. */
typedef struct eng__pod_gives {
  const char *file;         /* the inventory, for positions */
  const char *db;           /* the database's name */
  const eng__node *at;      /* the database's entry */
  const eng__node *params;  /* its `params` (a mapping), or NULL */
  const eng__node *approve; /* its `approve` (a list of step ids), or NULL */
  const eng__pod_env *env;  /* every variable the pod sets */
  size_t n_env;
} eng__pod_gives;

/* Whether runbook rb (label: its name as the inventory writes it) starts
 * with what g gives: every name under `params` one of its parameters and
 * not a secret one; every parameter it requires without a default given
 * by `params` or by a variable the pod sets (a secret one from a Secret);
 * every `approve` step approved in advance, and every approval naming one.
 * false with an error per missing piece, each at the inventory's position
 * with the runbook's line and the key to add. */
bool eng__fleet_runnable(const eng__runbook *rb, const char *label,
                         const eng__pod_gives *g, eng__diags *d);

#endif /* ENGINE_FLEET_RUNNABLE_H */
