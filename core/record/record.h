/*
 * record/record.h - what a run leaves on disk for later: the audit log
 * (audit.c: a hash-chained, tamper-evident JSON lines file; verify and
 * show) and the journal (journal.c: resources created, with their
 * disposition, and removed; step starts and results; what a run's
 * resources are to cleanup; `engine runs`; the cleanup runbook). Above
 * base/ only: neither knows what a run is, only what it records.
 */
#ifndef ENGINE_RECORD_H
#define ENGINE_RECORD_H

#include <stdio.h>
#include "base/base.h"

/* ---- audit.c -------------------------------------------------------------- */

typedef struct eng__audit eng__audit;

/* Open (append; continues the chain of an existing log). NULL on error. */
eng__audit *eng__audit_open(const char *path, const char *run_id);
/* Append a record of `type` with `fields` (stolen; may be NULL). Returns
 * -1 (errno set) when the record could not be written whole. */
int eng__audit_event(eng__audit *a, const char *type, json_t *fields);
void eng__audit_sync(eng__audit *a);
/* From now on, syncs are issued on the loop's thread pool. */
void eng__audit_use_loop(eng__audit *a, uv_loop_t *loop);
void eng__audit_close(eng__audit *a);
/* SHA-256 of the last line written: the chain head. */
const char *eng__audit_head(const eng__audit *a);
/* 0 intact, 1 tampered (first bad line printed to out), 2 unreadable.
 * With expected_head (the chain head the run printed and recorded), the
 * log's last record must hash to it: without ENGINE_AUDIT_KEY that is the
 * only way to tell a changed last record from the original. */
int eng__audit_verify(const char *path, const char *expected_head, FILE *out);
int eng__audit_show(const char *path, FILE *out);

/* ---- journal.c: what a run created and how its steps ended ------------ */

typedef struct eng__journal {
  FILE *f;
  int64_t seq;
  json_t *refs; /* secret value -> "${env.X}" / "${params.x}" */
  const eng__redactor *redact;
  int err;   /* errno of the first record that could not be written */
} eng__journal;

/* Open RUN_DIR/journal for appending; -1 with errno. */
int eng__journal_open(eng__journal *j, const char *dir,
                      const eng__redactor *redact);
void eng__journal_close(eng__journal *j);
/* A secret value is written as `ref` (copied) wherever it appears. */
void eng__journal_add_ref(eng__journal *j, const char *value, const char *ref);
/* A copy of v with secrets replaced by their references (and anything
 * else secret masked). */
json_t *eng__journal_refs(const eng__journal *j, const json_t *v);
/* Append a resource record (intent / confirm / removed), synced; returns
 * its sequence number, or -1 (errno set, j->err recorded) when it could
 * not be written whole: no journal open, or the disk is full. A record
 * is on disk whole or not at all. */
int64_t eng__journal_resource(eng__journal *j, const char *event,
                              const char *step, const char *kind,
                              const char *id, const char *disposition,
                              const json_t *detail);
/* The run's protected lists ({"protected_databases": [...], ...}), so
 * that `engine cleanup` of the run is held to them. */
void eng__journal_guards(eng__journal *j, const json_t *lists);
/* Append a step record (step.start / step.end), not synced. */
void eng__journal_step(eng__journal *j, const char *event, const char *step,
                       const char *inputs, const char *status,
                       const json_t *outputs);
/* Every record of RUN_DIR/journal, in order; NULL when there is none. A
 * line that cannot be read is {"event": "damaged", "line": N, "text": its
 * first bytes}, never skipped: it may record a resource. Only a last line
 * without its newline (a write the writer did not finish) is left out. */
json_t *eng__journal_read(const char *dir);
/* Every resource the journal's records (all) say the run created, oldest
 * first: [{kind, id, step, seq, disposition ("kept" | "temporary"),
 * recorded (a disposition was journaled), present (not removed since),
 * partial (its step did not end ok), leftover, undo}]. A resource journaled
 * without a disposition (by an engine before dispositions) is kept,
 * whatever else: when unsure, never delete. A leftover is present and
 * partial or temporary. A damaged record is a resource that may exist:
 * {kind "unknown", id "journal line N", damaged, line, text, and seen_kind,
 * seen_id, seen_action, seen_step as far as its text shows them}, a
 * leftover no cleanup removes by itself. */
json_t *eng__journal_resources(const json_t *all);
/* The run's protected lists as its journal recorded them ({} if none). */
json_t *eng__journal_guard_lists(const json_t *all);
/* Add the entries of each list of `add` ({"protected_databases": [...]})
 * to the same list of `into`. */
void eng__guard_lists_add(json_t *into, const json_t *add);
/* Did the run in `dir` create resource kind/id (even if since removed)? */
int eng__journal_owned(const char *dir, const char *kind, const char *id);
/* --resume: step id -> {status, inputs, outputs} of steps that ended, the
 * ids of steps that started and never ended, and the last sequence number.
 * -1 when the journal cannot be read. */
int eng__journal_load_resume(const char *dir, json_t **ended,
                             json_t **unfinished, int64_t *last_seq);
/* `engine runs`: one line per run (id, runbook, status, kept, leftovers).
 * A damaged journal record is said on stderr, and the result is then
 * ENG_EXIT_FAILED (else 0). */
int eng__runs_list(const char *state_dir, FILE *out);
/* What `engine cleanup` removes: the run's leftovers, or with kept too
 * every resource still present. */
typedef enum eng__clean_what {
  ENG__CLEAN_LEFTOVERS = 0,
  ENG__CLEAN_ALL = 1
} eng__clean_what;
/* The runbook `engine cleanup` runs: one undo step per resource `what`
 * selects, newest first, held to the run's own protected lists. NULL when
 * the run has no journal; *count steps. */
char *eng__cleanup_runbook(const char *run_dir, eng__clean_what what,
                           size_t *count);

/* ---- index.c: the run index's records (state/index.c stores them) ----- */

/* The longest run id a record may name. */
#define ENG__INDEX_ID_MAX 64
bool eng__index_id_ok(const char *id);
/* A run's record from its report.json (new; NULL without a run id): run
 * id, runbook name and file, start and end, outcome and exit code,
 * duration, RTO, RPO, restore time and targets, backup and its size, rows
 * and tables restored, failed and warned checks, each step's duration and
 * the regressions found. The caller adds lock, host, kept, leftovers. */
json_t *eng__index_record(const json_t *report);
/* The records of one segment (JSON lines) merged into runs (run id ->
 * record; a later record of a run updates its fields). A line that is not
 * a record is skipped, said on warn (when not NULL) with name and line.
 * Returns the lines skipped. */
size_t eng__index_parse(const char *data, size_t len, const char *name,
                        json_t *runs, FILE *warn);
/* The records of runs, newest first (a new array of the same objects). */
json_t *eng__index_sorted(const json_t *runs);
/* Same runbook and same lock (none counts as one). */
bool eng__index_same_group(const json_t *a, const json_t *b);
bool eng__index_ok(const json_t *rec);
/* The latest successful run of rec's runbook and lock started before rec,
 * in sorted (newest first), or NULL. */
const json_t *eng__index_previous_ok(const json_t *sorted, const json_t *rec);
/* Limits of the regression SLOs; < 0: none. */
typedef struct eng__index_limits {
  double rows_drop_pct, backup_drop_pct, rto_growth;
} eng__index_limits;
/* rec against prev: [{figure, previous_run, previous, current, limit}]
 * for each limit exceeded (a new array, empty when none). */
json_t *eng__index_regressions(const json_t *rec, const json_t *prev,
                               const eng__index_limits *lim);
/* One of those in words: "restored rows fell from 1000 in run ID to 600
 * (the SLO allows a drop of at most 30%)" (malloc'd). */
char *eng__index_regression_text(const json_t *regression);

/* ---- metrics.c: the index as Prometheus metrics (docs/monitoring.md) ---- */

/* The text exposition of the runs of runbook under lock (NULL or "": none)
 * among sorted (newest first): last success, last run, its figures, runs
 * by result, step durations. group_labels: runbook and lock as labels
 * (a push names them in its URL instead). Caller frees. */
char *eng__metrics_text(const json_t *sorted, const char *runbook,
                        const char *lock, bool group_labels);

/* ---- html.c: `engine report --html` ------------------------------------ */

/* One self-contained HTML page (no script, no external asset): groups
 * maps "RUNBOOK\nLOCK" to its runs oldest first; evidence maps the same
 * keys to the latest run's evidence.md (may be absent). Caller frees. */
char *eng__report_html(const json_t *groups, const json_t *evidence,
                       const char *generated_at);

#endif /* ENGINE_RECORD_H */
