/*
 * engine_int.h - declarations shared between core files (eng__ prefix).
 * Nothing here is part of the plugin SDK; plugins include only
 * <engine/plugin.h>.
 */
#ifndef ENGINE_INT_H
#define ENGINE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <uv.h>
#include <jansson.h>
#include "engine/plugin.h"

/* ---- util.c ------------------------------------------------------------ */

typedef struct eng__buf {
  char *data; /* always NUL-terminated once anything was appended */
  size_t len, cap;
} eng__buf;

void eng__buf_add(eng__buf *b, const void *p, size_t n);
void eng__buf_adds(eng__buf *b, const char *s);
void eng__buf_addf(eng__buf *b, const char *fmt, ...) ENG_PRINTF(2, 3);
void eng__buf_vaddf(eng__buf *b, const char *fmt, va_list ap);
char *eng__buf_steal(eng__buf *b); /* returns "" (malloc'd) when empty */
void eng__buf_free(eng__buf *b);

void *eng__xmalloc(size_t n);   /* aborts on OOM */
void *eng__xcalloc(size_t n, size_t m);
void *eng__xrealloc(void *p, size_t n);
char *eng__xstrdup(const char *s); /* NULL -> NULL */
char *eng__xstrndup(const char *s, size_t n);
char *eng__asprintf(const char *fmt, ...) ENG_PRINTF(1, 2);

/* The longest duration anywhere (timeouts, delays, sleeps): 100 years. */
#define ENG__DURATION_MAX_MS ((int64_t)3153600000000)

/* "500ms", "30s", "5m", "1h", "1h30m", "2d", or a plain number of seconds,
 * at most ENG__DURATION_MAX_MS. Returns 0 and milliseconds, or -1. */
int eng__parse_duration(const char *s, int64_t *ms);
/* A point in time: RFC 3339 ("2026-11-29T22:20:00Z", fraction and offset
 * optional) or "YYYY-MM-DD HH:MM[:SS][Z|+HH:MM]"; without an offset it is
 * UTC. A bare date is midnight UTC. Returns 0 and milliseconds since the
 * epoch, or -1 with the reason in why. */
int eng__parse_timestamp(const char *s, int64_t *ms, char *why, size_t n);
#define ENG__TIMESTAMP_FORMS \
  "RFC 3339 like 2026-11-29T22:20:00Z, or 2026-11-29 22:20 (UTC), " \
  "2026-11-29 22:20:00+01:00"
/* "1.2s", "340ms", "2m05s" into buf. */
const char *eng__fmt_duration(int64_t ms, char *buf, size_t n);
/* "12.3 MB" */
const char *eng__fmt_bytes(int64_t bytes, char *buf, size_t n);
/* Nearest candidate within a small edit distance, or NULL. */
const char *eng__suggest(const char *word, const char *const *cands,
                         size_t n);
size_t eng__edit_distance(const char *a, const char *b);
/* Wall clock in ms since the epoch, and RFC 3339 UTC with ms. Both go
 * through an injectable clock (tests). */
int64_t eng__now_ms(void);
void eng__set_clock(int64_t (*fn)(void));
const char *eng__fmt_time(int64_t epoch_ms, char *buf, size_t n);
/* Read a whole file (max bytes); NULL and errno on failure. */
char *eng__read_file(const char *path, size_t max, size_t *len);
int eng__mkdir_p(const char *path, int mode);
/* "$TMPDIR/NAME" (TMPDIR unset or empty: /tmp); caller frees. With
 * unique, the name gets the six-character suffix mkstemp()/mkdtemp()
 * replace. */
char *eng__tmp_path(const char *name, bool unique);
/* Shell-style glob match (fnmatch without flags). */
bool eng__glob(const char *pattern, const char *s);
/* SHA-256 hex (65 bytes incl. NUL) of a buffer. */
void eng__sha256_hex(const void *p, size_t n, char out[65]);

/* ---- cmdline.c: what a command line does to guarded targets ------------- */

typedef struct eng__cmd_finding {
  char *tool;           /* "psql", "docker volume rm" */
  eng_target kind;      /* DATABASE, VOLUME, CONTAINER, FILE (a path) */
  char *target;         /* the name or path; NULL when it is not known */
  eng_side_effect side; /* READ_ONLY, CREATES, DESTRUCTIVE, DISRUPTIVE */
  char *what;           /* what was understood ("pg_restore --clean") */
} eng__cmd_finding;

typedef struct eng__cmd_analysis {
  eng__cmd_finding *f;
  size_t n;
  char *unverified; /* why part of the line could not be understood */
} eng__cmd_analysis;

/* Analyse a shell command line; env holds the step's NAME=VALUE (NULL-
 * terminated, may be NULL; ENGINE_CWD=DIR sets the working directory).
 * Returns 1 when part of it is unverified. Free with the function below. */
int eng__cmd_analyse(const char *line, const char *const *env,
                     eng__cmd_analysis *out);
/* The same with the environment as "NAME=VALUE\n..." text. */
int eng__cmd_analyse_env_text(const char *line, const char *env_text,
                              eng__cmd_analysis *out);
void eng__cmd_analysis_free(eng__cmd_analysis *a);

/* ---- diag.c: compiler-style diagnostics ---------------------------------- */

typedef struct eng__diags {
  size_t errors, warnings;
  bool quiet;       /* collect only */
  bool color;
  eng__buf text;    /* everything reported, in order */
} eng__diags;

void eng__diag_error(eng__diags *d, const char *file, int line, int col,
                     const char *fmt, ...) ENG_PRINTF(5, 6);
void eng__diag_warn(eng__diags *d, const char *file, int line, int col,
                    const char *fmt, ...) ENG_PRINTF(5, 6);
void eng__diags_free(eng__diags *d);

/* ---- redact.c: secrets ------------------------------------------------ */

typedef struct eng__redactor eng__redactor;
eng__redactor *eng__redactor_create(void);
void eng__redactor_destroy(eng__redactor *r);
/* Register a secret value (copied). Values shorter than 3 bytes are
 * ignored (they would mask everything). Also registers the password part of
 * a URL given whole. */
void eng__redactor_add(eng__redactor *r, const char *value);
/* New malloc'd string with every secret replaced by "***" and URL
 * passwords ("scheme://user:PASS@") masked. */
char *eng__redact(const eng__redactor *r, const char *in);
/* Redact a JSON value in place (strings only). */
void eng__redact_json(const eng__redactor *r, json_t *v);

/* ---- process.c: child processes on the loop -------------------------- */

/* A set of processes owned by one call; killed together on cancel. */
typedef struct eng__proc_group {
  struct eng__proc_link *head;
  int orphan; /* detached: freed with its last process */
} eng__proc_group;

typedef struct eng__proc_hooks {
  /* stderr lines when opts->on_stderr is NULL (already redacted) */
  void (*log_line)(void *ctx, const char *line);
  void *ctx;
  const eng__redactor *redact; /* may be NULL */
} eng__proc_hooks;

int eng__proc_spawn(uv_loop_t *loop, eng__proc_group *group,
                    const eng_spawn_opts *opts, const eng__proc_hooks *hooks,
                    eng_proc **out, char *err, size_t errlen);
void eng__proc_kill(eng_proc *p, int signum);
/* SIGTERM every process of the group now, SIGKILL those left after
 * grace_ms. */
void eng__proc_group_kill(eng__proc_group *g, uint64_t grace_ms);
int eng__proc_group_empty(const eng__proc_group *g);
/* The owner goes away while processes still run (they are being killed):
 * no callback reaches the owner any more, and the group (heap-allocated)
 * is freed with its last process. */
void eng__proc_group_detach(eng__proc_group *g);
int eng__proc_write(eng_proc *p, const void *buf, size_t len,
                    void (*cb)(void *ud, int rc), void *ud);
void eng__proc_pause(eng_proc *p, int paused);
const char *eng__proc_stderr_tail(eng_proc *p);

/* ---- http.c: libcurl multi on the loop ------------------------------- */

typedef struct eng__http_multi eng__http_multi;
typedef struct eng__http_group {
  struct eng__http_link *head;
} eng__http_group;

eng__http_multi *eng__http_multi_create(uv_loop_t *loop);
/* Close handles; runs cbs of still-running requests with CANCELLED. */
void eng__http_multi_destroy(eng__http_multi *m);
int eng__http_start(eng__http_multi *m, eng__http_group *g, void *curl_easy,
                    eng_http_cb cb, void *ud, eng_http **out);
void eng__http_cancel(eng_http *req); /* cb runs with ENG_ERR_CANCELLED */
void eng__http_unpause(eng_http *req);
void eng__http_group_cancel(eng__http_group *g);
/* Stop every request of the group without running its callback (the
 * owner is gone); the easy handles stay the owner's. */
void eng__http_group_abort(eng__http_group *g);

/* ---- lua_host.c: the sandbox ------------------------------------------ */

typedef struct eng__lua eng__lua;

/* Non-zero (set from a signal handler): evaluations stop at their next
 * instruction-count hook with "interrupted". */
extern volatile sig_atomic_t eng__lua_interrupt;
/* Async-signal-safe: make the running evaluation's hook run at its next
 * instruction (after raising eng__lua_interrupt). */
void eng__lua_poke(void);

typedef struct eng__lua_opts {
  size_t mem_limit;        /* bytes; 0 = 64 MiB */
  uint64_t budget_ms;      /* execution time per evaluation; 0 = 10000 */
  const char *runbook_dir; /* require() looks in RUNBOOK_DIR/lua/ */
  const char *lib_dir;     /* installed library: LIB_DIR/engine/checks.lua */
} eng__lua_opts;

enum { ENG__LUA_EXPR = 0, ENG__LUA_CHUNK = 1 };

int eng__lua_create(const eng__lua_opts *o, eng__lua **out, char *err,
                    size_t errlen);
void eng__lua_destroy(eng__lua *L);
/* Compile; syntax errors come back as "FILE:LINE: message". EXPR compiles
 * "return (code)"; CHUNK compiles statements. *ref names it later. */
int eng__lua_compile(eng__lua *L, const char *code, int kind,
                     const char *file, int line, int *ref, char *err,
                     size_t errlen);
/* Replace a global context table (params, env, run, runbook). */
void eng__lua_set_global(eng__lua *L, const char *name, const json_t *v);
/* Set steps[id] = {status=..., outputs=...} (and the underscore alias). */
void eng__lua_set_step(eng__lua *L, const char *id, const char *status,
                       const json_t *outputs);
/* Names visible in helpers success()/failure() for the next evaluations:
 * statuses of the dependencies of the step being decided. */
void eng__lua_set_deps(eng__lua *L, const char *const *statuses, size_t n);
/* Evaluate synchronously. `locals` (object or NULL) become globals for
 * this evaluation only (e.g. outputs). *results: a JSON array of the
 * returned values (caller frees). Yielding I/O is an error here. */
int eng__lua_eval(eng__lua *L, int ref, const json_t *locals,
                  json_t **results, char *err, size_t errlen);
/* Evaluate in a coroutine; functions offered by plugins (pg.query) and
 * http.get yield to the loop. cb runs exactly once, on the loop thread;
 * it owns results. `call` is the step's call (for logs and sub-calls). */
typedef void (*eng__lua_done_cb)(void *ud, int rc, json_t *results,
                                 const char *err);
int eng__lua_run(eng__lua *L, int ref, const json_t *locals, eng_call *call,
                 eng__lua_done_cb cb, void *ud);
/* Offer a plugin's function to hooks. */
void eng__lua_add_func(eng__lua *L, const eng_lua_func *f);
/* Run a hook's chunk with args (the lua action's `file`, `script`). */

/* ---- call.c: call objects (eng_call) and their services -------------- */

typedef void (*eng__call_done_cb)(void *ud, int rc, json_t *outputs,
                                  const char *error);

typedef struct eng__run eng__run; /* run.h */

/* A call for a step attempt (or NULL step for run-level work: a check
 * hook's context, a run-end hook). */
eng_call *eng__call_new(eng__run *r, const char *step_id,
                        const eng_action *action, eng__call_done_cb cb,
                        void *ud);
/* A sub-call under `parent` (a Lua function a plugin offers). done() of
 * the sub-call runs cb with its outputs (owned by cb) and error text. */
eng_call *eng__call_sub(eng_call *parent, eng__call_done_cb cb, void *ud);
/* Start fn on the call with args (borrowed; kept alive by the call). On a
 * non-OK return cb has not run and never will; the call is freed. */
int eng__call_start(eng_call *call, int (*fn)(eng_call *, const json_t *),
                    const json_t *args);
/* The same; on failure *err receives the action's message (malloc'd, or
 * NULL) instead of it being logged. */
int eng__call_start_err(eng_call *call, int (*fn)(eng_call *, const json_t *),
                        const json_t *args, char **err);
/* Cancel with a reason (ENG_CANCEL_*): processes killed, transfers
 * aborted, the plugin told; a plugin that has not called done() when the
 * grace runs out is abandoned: the host ends the call itself. */
void eng__call_cancel(eng_call *c, int reason);
int eng__call_cancel_reason(eng_call *c);
json_t *eng__call_run_state(eng_call *c);
void eng__host_set_cancel_grace(uint64_t ms);
/* Lower it to ms when longer (the run's --grace is running out). */
void eng__host_limit_cancel_grace(uint64_t ms);
/* Objects a call started (streams) that done() releases when the plugin
 * left them open; release() must not call back into the plugin. */
void eng__call_own(eng_call *c, void *obj, void (*release)(void *obj));
void eng__call_disown(eng_call *c, void *obj);
void eng__call_release(eng_call *c);
uv_loop_t *eng__call_loop(eng_call *call);
/* The step's deadline (uv_hrtime() ns) for work the loop cannot preempt
 * (Lua): the earliest of the call's and its parents'; 0 = none. */
void eng__call_set_deadline(eng_call *c, uint64_t at_ns);
uint64_t eng__call_deadline(const eng_call *c);
eng__run *eng__call_run(eng_call *call);
eng__lua *eng__call_lua(eng_call *c);
/* The process-wide loop, HTTP multi handle and redactor of call services. */
void eng__host_init(uv_loop_t *loop, eng__redactor *redact);
void eng__host_shutdown(void);
eng__redactor *eng__host_redactor(void);

/* The services of eng_host (include/engine/plugin.h documents each). */
void eng__call_logf(eng_call *c, eng_log_level lvl, const char *fmt, ...)
    ENG_PRINTF(3, 4);
void eng__call_output(eng_call *c, const char *name, json_t *value);
void eng__call_progress(eng_call *c, int64_t done, int64_t total);
void eng__call_secret(eng_call *c, const char *value);
void eng__call_fail(eng_call *c, const char *fmt, ...) ENG_PRINTF(2, 3);
void eng__call_done(eng_call *c, int rc);
int eng__call_cancelled(eng_call *c);
void eng__call_on_cancel(eng_call *c, void (*cb)(void *), void *ud);
void eng__call_set_data(eng_call *c, void *d);
void *eng__call_get_data(eng_call *c);
const char *eng__call_run_dir(eng_call *c);
const char *eng__call_step_id(eng_call *c);
int eng__call_spawn(eng_call *c, const eng_spawn_opts *o, eng_proc **out);
int eng__call_http_start(eng_call *c, void *easy, eng_http_cb cb, void *ud,
                         eng_http **out);
int eng__call_work(eng_call *c, void (*fn)(void *),
                   void (*after)(void *, int), void *ud);
eng_timer *eng__call_timer_start(eng_call *c, uint64_t ms,
                                 void (*cb)(void *), void *ud);
void eng__call_timer_stop(eng_timer *t);
eng_watch *eng__call_watch_start(eng_call *c, int fd, int events,
                                 void (*cb)(void *, int, int), void *ud);
void eng__call_watch_update(eng_watch *w, int events);
void eng__call_watch_stop(eng_watch *w);
int eng__call_guard_target(eng_call *c, eng_target kind, const char *value,
                           const char *evidence);
int64_t eng__call_journal_intent(eng_call *c, const char *kind,
                                 const char *id, const json_t *detail);
void eng__call_journal_confirm(eng_call *c, int64_t token);
void eng__call_journal_removed(eng_call *c, const char *kind, const char *id);
int eng__call_journal_owned(eng_call *c, const char *kind, const char *id);
int eng__call_at_run_end(eng_call *c, int (*cb)(eng_call *, void *),
                         void *ud);

/* ---- host.c: the table handed to plugins -------------------------------- */

const eng_host *eng__host(void);

/* ---- stream.c: byte streams (docs/plugins.md) -------------------------- */

/* Plugins' URL schemes (s3://...), offered by the registry as it loads
 * them; the first of a scheme wins. */
void eng__stream_add_scheme(const eng_stream_scheme *s);
void eng__stream_clear_schemes(void);

int eng__stream_is_remote(const char *url);
int eng__stream_open_write(eng_call *call, const char *url, const json_t *opts,
                           eng_stream **out);
int eng__stream_write(eng_stream *s, const void *buf, size_t len,
                      eng_stream_write_cb cb, void *ud);
int eng__stream_finish(eng_stream *s, eng_stream_done_cb cb, void *ud);
void eng__stream_abort(eng_stream *s);
int eng__stream_open_read(eng_call *call, const char *url, const json_t *opts,
                          eng_stream_data_cb on_data, eng_stream_done_cb on_end,
                          void *ud, eng_stream **out);
void eng__stream_pause(eng_stream *s, int paused);

#endif /* ENGINE_INT_H */
