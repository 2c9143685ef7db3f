/* state/state.h - where runs are recorded (state.c) and the run lock
 * (lock.c). Above actions/ (a store is a plugin's).
 *
 * A state directory is a local directory, or a URL (s3://bucket/prefix)
 * served by a plugin's state store (ABI 1.3). A run always writes into a
 * local directory; with a URL that directory is a scratch mirror
 * (ENGINE_SCRATCH_DIR, default $TMPDIR/engine-UID/HASH) whose state files
 * (journal, audit log, reports, evidence) are written whole to the store
 * at every step boundary and at the end, and read back from it by
 * `runs`, `cleanup`, `audit verify` and `--resume` on any machine. */
#ifndef ENGINE_STATE_H
#define ENGINE_STATE_H

#include "actions/actions.h"

typedef struct eng__state eng__state;

/* Open the state directory `spec` (a path or a URL); plugins are loaded.
 * NULL with a message in err. */
eng__state *eng__state_open(const char *spec, char *err, size_t errlen);
void eng__state_close(eng__state *st);
/* The local directory runs are written into (the scratch for a URL). */
const char *eng__state_dir(const eng__state *st);
/* The URL, or NULL for a local state directory. */
const char *eng__state_url(const eng__state *st);

/* URL only: copy run ID's state files from the store into the local
 * directory (what was there before is replaced). 0; 1 when the store has
 * no journal for ID; -1 with err. A local state directory: 0 or 1. */
int eng__state_pull_run(eng__state *st, const char *id, char *err,
                        size_t errlen);
/* URL only: the journal and report of every run, into a new temporary
 * directory (returned, with runs/ID/journal and report.json inside; the
 * caller removes it with eng__rm_tree). NULL with err. */
char *eng__state_pull_journals(eng__state *st, char *err, size_t errlen);
/* Write run ID's state files that changed to the store (a no-op for a
 * local directory). 0 or -1 with err. */
int eng__state_push_run(eng__state *st, const char *id, char *err,
                        size_t errlen);
/* Read a file of the store named by a URL (s3://bucket/key) whole. */
char *eng__state_fetch_url(const char *url, size_t *len, char *err,
                           size_t errlen);

/* Small objects by key ("locks/NAME"), in the store or under the local
 * directory; the same contract as eng_store_scheme (cond NULL, "*" or an
 * ETag; ENG_ERR_EXISTS, ENG_ERR_NOTFOUND). Local objects have no ETag:
 * cond "*" is an exclusive create and an ETag condition always holds. */
int eng__state_get(eng__state *st, const char *key, char **data,
                   size_t *len, char etag[ENG_ETAG_MAX], char *err,
                   size_t errlen);
int eng__state_put(eng__state *st, const char *key, const char *data,
                   size_t len, const char *cond, char etag[ENG_ETAG_MAX],
                   char *err, size_t errlen);
int eng__state_del(eng__state *st, const char *key, const char *cond,
                   char *err, size_t errlen);
/* Keys under prefix, as a JSON array of strings (relative to the state
 * directory), or NULL with err. */
json_t *eng__state_list(eng__state *st, const char *prefix, char *err,
                        size_t errlen);
/* A second handle on the same store, for another thread. */
eng__state *eng__state_dup(const eng__state *st, char *err, size_t errlen);

/* A run's state written in the background: kick() at each step boundary
 * (returns at once), stop() writes what is left and reports the first
 * error (0 or -1 with err). Once frozen(ud) is true (the run lost its
 * lock) nothing more is written. */
typedef struct eng__state_sync eng__state_sync;
eng__state_sync *eng__state_sync_start(eng__state *st, const char *id,
                                       bool (*frozen)(void *ud), void *ud);
void eng__state_sync_kick(void *sync);
int eng__state_sync_stop(eng__state_sync *s, char *err, size_t errlen);

/* Remove a directory tree (for scratch copies). */
void eng__rm_tree(const char *path);

/* ---- lock.c: one run at a time per lock name --------------------------- */

typedef struct eng__lock eng__lock;

/* Who holds a lock, from its record. */
typedef struct eng__lock_holder {
  char run[32], host[128], started[40], expires[40];
} eng__lock_holder;

/* Take lock `name` for run `id` at time now_ms (ms since the epoch),
 * valid ttl_ms unless renewed. Store: a write that only succeeds when no
 * lock object exists; an expired one is taken over by a write conditional
 * on its ETag. Local: flock() on STATE/locks/NAME.lock. 0 taken (*out);
 * 1 held by another run (holder filled); -1 with err. `taken_over`
 * receives the run id of an expired holder replaced, or "". */
int eng__lock_take(eng__state *st, const char *name, const char *id,
                   int64_t now_ms, int64_t ttl_ms, eng__lock **out,
                   eng__lock_holder *holder, char taken_over[32], char *err,
                   size_t errlen);
/* Renew at now_ms (store: conditional on the ETag it last wrote).
 * 0; 1 when another run took the lock over; -1 with err. Blocking. */
int eng__lock_renew(eng__lock *l, int64_t now_ms, char *err, size_t errlen);
/* Renew every ttl/3 on a thread of the lock's own, from now until
 * eng__lock_release (a no-op locally). */
void eng__lock_renewing(eng__lock *l);
/* Whether the lock is lost at now_ms: another run took it over, or it was
 * not renewed and expires within a sixth of its TTL. msg says which. */
bool eng__lock_lost(eng__lock *l, int64_t now_ms, char *msg, size_t n);
/* Watch the lock on a run's loop: `lost(ud, message)` runs once on the
 * loop when eng__lock_lost() becomes true (also starts the renewal). */
void eng__lock_keep(eng__lock *l, uv_loop_t *loop,
                    void (*lost)(void *ud, const char *msg), void *ud);
/* Stop watching (closes the timer on the loop it runs on); the renewal
 * goes on until the release. */
void eng__lock_unkeep(eng__lock *l);
/* Stop renewing, release (a delete conditional on the lock's ETag: a lock
 * another run took over stays) and free. NULL is a no-op. */
void eng__lock_release(eng__lock *l);
const char *eng__lock_name(const eng__lock *l);
int64_t eng__lock_ttl(const eng__lock *l);

/* ---- index.c: the run index (docs/state.md) ----------------------------- */

/* Append records (a JSON array, one per line) to the index: three
 * requests to a store. 0 or -1 with err. */
int eng__index_append(eng__state *st, const json_t *recs, char *err,
                      size_t errlen);
/* Every record of the index, merged by run id (run id -> record; see
 * eng__index_parse; damaged lines said on warn). *backfilled: the runs
 * from before the index were indexed. NULL with err. */
json_t *eng__index_read(eng__state *st, bool *backfilled, FILE *warn,
                        char *err, size_t errlen);
/* Record that the runs from before the index are in it. 0 or -1. */
int eng__index_mark_backfilled(eng__state *st, char *err, size_t errlen);

#endif /* ENGINE_STATE_H */
