/*
 * fleet/fleet_int.h - what fleet.c (reading an inventory) and manifest.c
 * (its Kubernetes objects) share: a checked inventory's databases and
 * defaults. Private to fleet/.
 */
#ifndef ENGINE_FLEET_INT_H
#define ENGINE_FLEET_INT_H

#include "fleet/fleet.h"
#include "fleet/runnable.h"

/* Where the image keeps the runbooks it ships, and where a ConfigMap's
 * runbook is mounted. */
#define IMAGE_RUNBOOK_DIR "/usr/share/engine/runbooks"
#define CONFIGMAP_DIR "/runbooks"
#define CONTAINER "engine"
/* The variables render sets in every pod (the first, DATABASE_URL, from
 * the database's Secret); the inventory may not set them. */
#define N_RENDER_ENV 5

/* The pod's requests and limits, Kubernetes quantities (NULL: none). */
enum { RES_REQ_CPU, RES_REQ_MEM, RES_LIM_CPU, RES_LIM_MEM, N_RES };

/* What a database may set for its pod and run, or defaults for all. */
typedef struct fleet_pod {
  int64_t grace_ms;
  long jobs;          /* --jobs; 0: the engine's default */
  eng__pod_env *env;  /* `env` (owned array, names and nodes borrowed) */
  size_t n_env;
  const char *res[N_RES];
  const char *scratch; /* the scratch emptyDir's sizeLimit */
} fleet_pod;

typedef struct fleet_db {
  const eng__node *node;
  const char *name, *url_secret, *runbook, *lock;
  fleet_pod pod;
  const eng__node *approve; /* step ids approved in advance, or NULL */
  bool allow_destructive;
  bool name_ok;       /* a valid name (else messages say it as written) */
  char *label;        /* "#N", the name of an entry without one */
  char *where;        /* "database 'NAME'", for messages */
  const eng__node *schedule_node, *params;
  char *schedule;     /* after spreading */
  char *runbook_path; /* a local file (ConfigMap), or NULL: from the image */
  char *runbook_text;
} fleet_db;

typedef struct fleet_defaults {
  const char *image, *pull_policy, *state, *time_zone, *namespace;
  const char *aws_secret, *slack_secret, *audit_secret;
  const char *pushgateway; /* --pushgateway of every run, or NULL */
  int64_t active_deadline_ms, starting_deadline_ms, job_ttl_ms;
  long backoff_limit, spread;
  fleet_pod pod;
} fleet_defaults;

struct eng__fleet {
  char *file, *dir;
  eng__node *root;
  fleet_db *dbs;
  size_t n;
  fleet_defaults def;
  char *image; /* default image */
};

/* A path's last component (borrowed from path). */
const char *eng__fleet_base_name(const char *path);
/* Every variable db's pod gets for certain (render's, then the defaults'
 * env unless the database sets the same name, then the database's; the
 * optional Secrets' may be missing), as a new array of *n. */
eng__pod_env *eng__fleet_pod_env(const fleet_defaults *def, const fleet_db *db,
                                 size_t *n);

#endif /* ENGINE_FLEET_INT_H */
