/*
 * cli/cli.h - the command line, on top of everything (nothing in core/
 * calls into cli/): main.c parses the options shared by every command and
 * dispatches; each command lives in cli/cmd_NAME.c; common.c holds what
 * several commands do (load plugins, load and validate a runbook, open
 * the state directory, name things in help); runs.c runs a runbook in its
 * state directory under its lock, and the cleanup runbook of a run under
 * the run's id.
 */
#ifndef ENGINE_CLI_H
#define ENGINE_CLI_H

#include <stdio.h>
#include "exec/exec.h"
#include "fleet/fleet.h"

/* The parsed command line of every command but fleet. */
typedef struct cli {
  eng__run_opts o;
  const char **plugin_dirs;
  size_t n_plugin_dirs;
  const char **approve;
  size_t n_approve;
  char **positional;
  size_t n_positional;
  bool help;
  const char *state_spec; /* --state-dir as given (a path or a URL) */
  const char *lock;       /* --lock */
  int64_t lock_ttl_ms;
  bool no_leftovers;      /* --no-cleanup-leftovers */
  bool leftovers;         /* --cleanup-leftovers (the default with a lock) */
  bool include_kept;      /* cleanup --include-kept */
  bool yes;               /* cleanup --yes */
  bool accept_damaged;    /* cleanup --accept-damaged */
  const char *head;       /* audit verify --head HASH */
  const char *out;        /* schema --out FILE */
  bool inventory;         /* schema --inventory */
  bool keys;              /* schema --keys */
  const char *runbook;    /* history --runbook NAME */
  int64_t since_ms;       /* history --since (ms since the epoch; 0: all) */
  const char *format;     /* history --format table|json|csv */
  int64_t stale_ms;       /* history --stale DURATION (0: not asked) */
  const char *metrics_file; /* run --metrics-file PATH */
  const char *pushgateway;  /* run --pushgateway URL */
  const char *html;         /* report --html OUT.html */
} cli;

/* ---- common.c ---------------------------------------------------------------- */

/* A command's help, then the global options. */
int cli_print_help(const char *text, FILE *out, int code);
int cli_usage_error(const char *fmt, const char *arg);
/* Whether this executable runs from its build directory (then it uses the
 * source tree's Lua library and runbooks, not the installed ones). */
bool cli_running_from_build(void);
void cli_load_plugins(cli *c, eng__diags *d);
/* Plugins for a command that only needs them (refusals are not shown). */
void cli_load_plugins_quietly(cli *c);
/* Load + validate; NULL on error (diagnostics printed). */
eng__runbook *cli_load_valid(const char *file, eng__lua **L,
                                const char *lib_dir, eng__diags *d);
/* The state directory of a command, opened once; o.state_dir becomes the
 * local directory runs are written into. Plugins must be loaded. */
eng__state *cli_open_state(cli *c);
extern const char *const cli_side_names[];
extern const char *const cli_target_names[];
const char *cli_target_name(eng_target t);
/* What an action's created resources are, for actions that create. */
const char *cli_creates_name(const eng_action *a);

/* ---- schema_values.c: the parts of `engine schema` ---------------------------- */

/* s with text as its description and markdownDescription. */
json_t *schema_doc(json_t *s, const char *text);
/* JSON types t1 (and t2), strings held to pattern, msg shown for any
 * mistake (t2, pattern, msg may be NULL). */
json_t *schema_typed(const char *t1, const char *t2, const char *pattern,
                     const char *msg);
json_t *schema_duration(bool template);
json_t *schema_bool(bool template);
json_t *schema_int(double min, double max, bool template);
json_t *schema_scalar(void);
json_t *schema_scalar_list(void);
/* A value of an engine type (choices "a|b", p for the range, or NULL). */
json_t *schema_of_type(eng_type t, const char *choices, const eng_param *p);
/* Set when a part of the schema could not be built (said on stderr). */
extern bool schema_failed;
json_t *schema_keyed(const eng__keyset *sets, const char *path, json_t *described);
/* {type: object, properties: schema_keyed(...), additionalProperties: false} */
json_t *schema_mapping(const eng__keyset *sets, const char *path,
                       json_t *described);
json_t *schema_key_lists(const eng__keyset *sets);
/* schema_inventory.c: the schema of a fleet inventory. */
json_t *schema_inventory(void);

/* ---- runs.c ------------------------------------------------------------------ */

/* Load, validate and run one runbook file with the options in c. */
int cli_run_file(cli *c, eng__state *st, const char *file, bool plan);
/* Write the cleanup runbook of run `id` (pulled into the local state
 * directory) for `what` and run it, held to the run's own protected lists
 * and to `guards` (those of the run that asked) when given. *count:
 * resources it removes (0: nothing ran). */
int cli_cleanup_run(cli *c, eng__state *st, const char *id,
                       eng__clean_what what, size_t *count,
                       const json_t *guards);
/* The run's resources from its journal in state_dir (eng__journal_resources),
 * or NULL when it has none. */
json_t *cli_run_resources(const char *state_dir, const char *id);
/* The damaged records among res, said on stderr with what can be read of
 * them; unless accepted (--accept-damaged), ENG_EXIT_FAILED when there is
 * any: a person decides first. 0 otherwise. */
int cli_damaged(const char *id, const json_t *res, bool accepted);
/* Did run `id` leave something behind (partial or temporary resources,
 * or records that may stand for one)? */
bool cli_has_leftovers(const char *state_dir, const char *id);
/* The lock run `id` held (its run.start record says), or NULL. */
char *cli_run_lock_of(eng__state *st, const char *id);
/* Take lock `name` for run `id` and start renewing it. An exit code (6:
 * held, said with the holder). */
int cli_take_lock(cli *c, eng__state *st, const char *name, const char *id,
                     eng__lock **lock);

/* ---- history.c: the run index at the end of a run ----------------------- */

/* A run starting (id, runbook rb, lock name or NULL): its first record. */
void cli_index_start(cli *c, eng__state *st, const eng__runbook *rb,
                     const char *id, const char *lock);
/* The index record of the previous successful run of rb under lock, when
 * rb has regression SLOs (the run checks its figures against it before
 * its reports are written: a violation is exit 4), else NULL. */
json_t *cli_index_previous_ok(cli *c, eng__state *st, const eng__runbook *rb,
                              const char *id, const char *lock);
/* A run that ended with exit `code`: its record from its report.json; a
 * cleanup's record updates its run's counts. Returns the exit code. */
int cli_index_end(cli *c, eng__state *st, const char *id, const char *lock,
                  int code);
/* --since: a duration back from now (30d) or a timestamp. */
int cli_history_since(cli *c, const char *text);
/* Every record of the state directory's index (runs recorded before it
 * are indexed on the first reading), NULL when said on stderr. */
json_t *cli_index_records(cli *c, eng__state *st);

/* ---- metrics.c: Prometheus metrics after a run ------------------------- */

/* --metrics-file and --pushgateway: the metrics of rb's runs under lock
 * (NULL: none) from the run index; a failure is said on stderr. */
void cli_metrics_publish(cli *c, eng__state *st, const eng__runbook *rb,
                         const char *lock);

/* ---- the commands: cmd_NAME.c, each returns the exit code ------------------- */

int cmd_run(cli *c, bool plan);
int cmd_validate(cli *c);
int cmd_plugins(cli *c);
int cmd_schema(cli *c);
/* The action reference in Markdown, from the declarations of the loaded
 * plugins: docs/actions.md is this output (a test keeps it current). */
int cmd_docs(cli *c);
int cmd_audit(cli *c);
int cmd_runs(cli *c);
int cmd_history(cli *c);
/* Whether rec is one of the runs --runbook, --lock and --since select. */
bool cli_history_wanted(const cli *c, const json_t *rec);
int cmd_report(cli *c);
int cmd_cleanup(cli *c);
/* `engine fleet render`: its own few options, parsed here. */
int cmd_fleet(int argc, char **argv);
/* `engine lint-migrations DIR`: the migration lint, no database. */
int cmd_lint(int argc, char **argv);

#endif /* ENGINE_CLI_H */
