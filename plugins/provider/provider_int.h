/*
 * provider_int.h - internals of the provider plugin (managed PostgreSQL).
 *
 * The plugin offers one action contract (docs/providers.md) whatever the
 * provider; `driver` picks the implementation. The rds driver talks to
 * the AWS RDS Query API (version 2014-10-31) through the AWS layer
 * (plugins/aws). Layers, bottom up:
 *   rds_parse.c     RDS answers (DBInstance, DBSnapshot, pages) into
 *                   structs: no I/O, fuzzed (tests/fuzz/fuzz_aws_xml.c);
 *   rds_wait.c      the waiter's decisions: next poll delay, done, failed
 *                   or out of time, with the clock passed in (unit tested
 *                   with answers recorded from moto);
 *   rds_actions.c   the actions on the loop: queries, journal, guards,
 *                   polling;
 *   provider_plugin.c  declarations and the descriptor.
 */
#ifndef PROVIDER_INT_H
#define PROVIDER_INT_H

#include <stddef.h>
#include <stdint.h>

#include <engine/mem.h>
#include <engine/op.h>
#include <engine/plugin.h>

#include "aws.h"

#define RDS_API_VERSION "2014-10-31"

/* ---- answers (rds_parse.c) ---------------------------------------------- */

typedef struct rds_instance {
  char *id, *status, *address, *engine, *engine_version, *klass;
  char *created_at, *latest_restorable;
  int port; /* 0 when not known yet */
} rds_instance;

typedef struct rds_snapshot {
  char *id, *instance, *status, *type, *engine, *engine_version;
  char *created_at;
  int64_t created_t;  /* Unix time, -1 when unknown */
  int64_t storage_gb; /* AllocatedStorage, 0 when unknown */
} rds_snapshot;

/* The DBInstance elements of an answer (DescribeDBInstances' list, or the
 * one of Create/Restore/Delete) and the page marker (NULL on the last
 * page). Returns the number found; *out is an array the caller frees with
 * rds_instances_free. Missing fields are empty strings, never NULL. */
size_t rds_parse_instances(const aws_xml *doc, rds_instance **out,
                           char **marker);
void rds_instances_free(rds_instance *v, size_t n);
/* The same for DBSnapshot elements. */
size_t rds_parse_snapshots(const aws_xml *doc, rds_snapshot **out,
                           char **marker);
void rds_snapshots_free(rds_snapshot *v, size_t n);

/* ---- waiting (rds_wait.c) ------------------------------------------------ */

typedef enum rds_wait_kind {
  RDS_WAIT_INSTANCE = 0, /* until "available" */
  RDS_WAIT_SNAPSHOT = 1, /* until "available" */
  RDS_WAIT_GONE = 2      /* until the resource is not found */
} rds_wait_kind;

typedef enum rds_verdict {
  RDS_DONE = 0,    /* the wanted state */
  RDS_AGAIN = 1,   /* poll again after *delay_ms */
  RDS_FAILED = 2,  /* a state it cannot leave by itself */
  RDS_EXPIRED = 3  /* the deadline passed */
} rds_verdict;

#define RDS_POLL_FIRST_MS 3000
#define RDS_POLL_MAX_MS 30000

typedef struct rds_waiter {
  rds_wait_kind kind;
  int64_t start_ms;
  int64_t deadline_ms; /* 0: none (the step's timeout decides) */
  uint64_t delay_ms;   /* the next delay */
  uint64_t first_ms, max_ms;
  int polls;
  char last[64]; /* last status seen */
} rds_waiter;

/* Start waiting at now_ms; budget_ms 0 means no deadline of its own. The
 * delays start at first_ms (0: RDS_POLL_FIRST_MS), grow by half each poll
 * and stay at RDS_POLL_MAX_MS. */
void rds_waiter_init(rds_waiter *w, rds_wait_kind kind, int64_t now_ms,
                     int64_t budget_ms, uint64_t first_ms);
/* One poll's answer: `status` (NULL when the resource was not found) seen
 * at now_ms. AGAIN sets *delay_ms (never past the deadline). */
rds_verdict rds_waiter_see(rds_waiter *w, const char *status, int64_t now_ms,
                           uint64_t *delay_ms);
/* Non-zero for the statuses a wait stops at as failed. */
int rds_status_failed(rds_wait_kind kind, const char *status);

/* ---- actions (rds_actions.c) ----------------------------------------------- */

extern const eng_host *provider_host;

int rds_snapshot_start(eng_call *call, const json_t *p);
int rds_snapshots_start(eng_call *call, const json_t *p);
int rds_restore_start(eng_call *call, const json_t *p);
int rds_describe_start(eng_call *call, const json_t *p);
int rds_delete_instance_start(eng_call *call, const json_t *p);
int rds_delete_snapshot_start(eng_call *call, const json_t *p);

#endif /* PROVIDER_INT_H */
