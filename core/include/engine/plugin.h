/*
 * engine/plugin.h - the plugin SDK of the runbook engine.
 *
 * A plugin is a shared module that exports one function,
 * ENG_PLUGIN_ENTRY_SYMBOL, returning a pointer to a constant eng_plugin
 * descriptor. The host checks the descriptor's `size`, `abi_major` and
 * `abi_minor` before it reads anything else, and refuses the plugin naming
 * the field that does not fit.
 *
 * Values (action parameters and outputs) are jansson values: the host
 * validates and converts every parameter against the action's declaration
 * before the action starts, so an action sees exactly the declared types.
 *
 * Actions never block the engine's event loop. They start work, return, and
 * complete later through host->done(). The host owns everything a call
 * starts and closes it when the call ends (docs: engine-plugin(7)). Every service the host offers reaches
 * the plugin through the eng_host table passed to init() and to each call;
 * the engine executable exports no symbols.
 *
 * Compatibility rules (as Redis modules and GStreamer do it):
 *  - a new minor version only appends fields at the end of structs and
 *    tables; a plugin built against minor N runs on a host with minor >= N;
 *  - a published error code or enum value is never renumbered.
 */
#ifndef ENGINE_PLUGIN_H
#define ENGINE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ENG_ABI_MAJOR 1
#define ENG_ABI_MINOR 7

#if defined(__GNUC__)
#define ENG_EXPORT __attribute__((visibility("default")))
#define ENG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define ENG_EXPORT
#define ENG_PRINTF(f, a)
#endif

/* ---- error codes ------------------------------------------------------ */

/* X(NAME, value, text). Codes are negative; 0 is success. Never renumber. */
#define ENG_ERRNO_MAP(X)                                                   \
  X(INVALID, -1, "invalid argument")                                       \
  X(NOMEM, -2, "out of memory")                                            \
  X(IO, -3, "input/output error")                                          \
  X(CANCELLED, -4, "cancelled")                                            \
  X(TIMEOUT, -5, "timed out")                                              \
  X(REFUSED, -6, "refused by a guard")                                     \
  X(FAILED, -7, "action failed")                                           \
  X(NOTFOUND, -8, "not found")                                             \
  X(EXISTS, -9, "already exists")                                          \
  X(ABI, -10, "plugin ABI mismatch")                                       \
  X(PROTOCOL, -11, "protocol error")                                       \
  X(AUTH, -12, "authentication failed")                                    \
  X(UNSUPPORTED, -13, "not supported")                                     \
  X(CHECKSUM, -14, "checksum mismatch")                                    \
  X(CONNECT, -15, "connection failed")

typedef enum eng_err {
  ENG_OK = 0,
#define ENG_ERR_ENUM_(n, v, t) ENG_ERR_##n = (v),
  ENG_ERRNO_MAP(ENG_ERR_ENUM_)
#undef ENG_ERR_ENUM_
} eng_err;

/* How long a process the host kills gets between SIGTERM and SIGKILL
 * (a call's processes when it is cancelled or ends). */
#define ENG_KILL_GRACE_MS 2000

/* Human text of an error code; never NULL. */
static inline const char *eng_strerror(int code) {
  switch (code) {
  case ENG_OK: return "success";
#define ENG_ERR_STR_(n, v, t) case (v): return t;
  ENG_ERRNO_MAP(ENG_ERR_STR_)
#undef ENG_ERR_STR_
  default: return "unknown error";
  }
}

/* Symbolic name of an error code ("ENG_ERR_TIMEOUT"); never NULL. */
static inline const char *eng_err_name(int code) {
  switch (code) {
  case ENG_OK: return "ENG_OK";
#define ENG_ERR_NAME_(n, v, t) case (v): return "ENG_ERR_" #n;
  ENG_ERRNO_MAP(ENG_ERR_NAME_)
#undef ENG_ERR_NAME_
  default: return "ENG_ERR_UNKNOWN";
  }
}

/* ---- declarations: parameters, outputs, actions ----------------------- */

typedef enum eng_type {
  ENG_T_STRING = 0,
  ENG_T_INT = 1,
  ENG_T_NUMBER = 2,
  ENG_T_BOOL = 3,
  ENG_T_DURATION = 4, /* given as "30s"/"1h30m" or a number of seconds;
                         the action receives integer milliseconds */
  ENG_T_LIST = 5,
  ENG_T_MAP = 6,
  ENG_T_ANY = 7,
  ENG_T_TIMESTAMP = 8 /* RFC 3339 or "YYYY-MM-DD HH:MM[:SS][offset]"; the
                         action receives RFC 3339 UTC with milliseconds */
} eng_type;

/* The type of a list's elements (eng_param.items, 1.5): ENG_T_x + 1, so
 * that zero, which every older plugin has there, means "not declared". */
typedef enum eng_items {
  ENG_ITEMS_UNDECLARED = 0, /* the elements reach the action as written */
  ENG_ITEMS_STRING = ENG_T_STRING + 1,
  ENG_ITEMS_INT = ENG_T_INT + 1,
  ENG_ITEMS_NUMBER = ENG_T_NUMBER + 1,
  ENG_ITEMS_BOOL = ENG_T_BOOL + 1,
  ENG_ITEMS_DURATION = ENG_T_DURATION + 1,
  ENG_ITEMS_LIST = ENG_T_LIST + 1,
  ENG_ITEMS_MAP = ENG_T_MAP + 1,
  ENG_ITEMS_ANY = ENG_T_ANY + 1, /* declared: any value, as written */
  ENG_ITEMS_TIMESTAMP = ENG_T_TIMESTAMP + 1
} eng_items;

/* What a parameter names, for guards. */
typedef enum eng_target {
  ENG_TARGET_NONE = 0,
  ENG_TARGET_DATABASE = 1, /* a connection URL or a database name */
  ENG_TARGET_VOLUME = 2,    /* a list of them: each NAME:/path[:ro|rw], a
                               mount (read-only unless :rw; a /path source
                               is a bind mount, a FILE target) */
  ENG_TARGET_CONTAINER = 3,
  ENG_TARGET_BUCKET = 4, /* s3://bucket/key */
  ENG_TARGET_INSTANCE = 5,
  ENG_TARGET_COMMAND = 6, /* a command line (string or argv list) */
  ENG_TARGET_FILE = 7,    /* a local path or stream URL */
  ENG_TARGET_SNAPSHOT = 8, /* (1.1) a snapshot of a managed instance: held to
                             protected_instances by its id, and by the
                             instance it was taken from (the evidence
                             given to guard_target) */
  ENG_TARGET_SQL = 9 /* (1.5) SQL text run on the database a connection
                        parameter names: forbidden_commands apply to it as
                        to a command line, and the databases its statements
                        name (ALTER DATABASE x RENAME) are held to what it
                        does to them before the run; the action checks the
                        rest with host->guard_sql when it connects */
} eng_target;

/* What an action does to its targets. The guards (docs/runbook-format.md,
 * "Guards"): a protected target refuses CREATES, DESTRUCTIVE and
 * DISRUPTIVE use (DISRUPTIVE unless the step says `allow_disruptive:
 * true`); DESTRUCTIVE also needs a target the run created, or
 * --allow-destructive. A host older than the value a plugin returns
 * counts it as DESTRUCTIVE. */
typedef enum eng_side_effect {
  ENG_SIDE_READ_ONLY = 0,
  ENG_SIDE_CREATES = 1,
  ENG_SIDE_DESTRUCTIVE = 2,
  ENG_SIDE_DISRUPTIVE = 3,
  ENG_SIDE_EXTERNAL = 4,
  /* (1.5) upkeep that changes no data and takes no blocking lock (VACUUM,
   * ANALYZE, REINDEX CONCURRENTLY): allowed on a protected target */
  ENG_SIDE_MAINTENANCE = 5
} eng_side_effect;

/* The highest eng_side_effect this SDK knows. */
#define ENG_SIDE_LAST ENG_SIDE_MAINTENANCE

/* eng_param.flags */
#define ENG_P_REQUIRED 0x1u
#define ENG_P_SECRET 0x2u /* value is redacted everywhere */
#define ENG_P_MIN 0x4u    /* (1.1) `min` applies */
#define ENG_P_MAX 0x8u    /* (1.1) `max` applies */

/* A value's check (1.1): return 0 when `value` (already converted to the
 * parameter's type) is accepted; otherwise non-zero with a message in err
 * that names the accepted forms ("compress is 'zstd' or 'zstd:LEVEL' with
 * LEVEL 1-19, got 'gzip'"). Pure: no I/O, no host services; it may run on
 * any thread and before the plugin's init(). */
typedef int (*eng_param_check_fn)(const json_t *value, char *err,
                                  size_t errlen);

typedef struct eng_param {
  const char *name;
  eng_type type;
  unsigned flags;       /* ENG_P_* */
  const char *def;      /* default as JSON text ("true", "2", "\"custom\""),
                           or NULL for none; checked against the type, the
                           choices, the range and the check when the plugin
                           loads (a wrong default refuses the plugin) */
  eng_target target;    /* what the value names, for guards */
  const char *choices;  /* "a|b|c" for enumerated strings, or NULL (1.0;
                           prefer `values`) */
  const char *doc;
  /* ABI 1.1: zero in a 1.0 plugin ------------------------------------------ */
  /* Range of an int, number or duration (durations in milliseconds), used
   * with ENG_P_MIN / ENG_P_MAX. */
  double min, max;
  /* Accepted strings, NULL-terminated; shown by `engine plugins` and in
   * `engine schema` as an enum. */
  const char *const *values;
  /* Accepted forms a list cannot say; called by `engine validate` on a
   * literal value, and before start() on the rendered one. */
  eng_param_check_fn check;
  /* ABI 1.5: zero in older plugins ------------------------------------------ */
  /* The type of the elements of a list value: an ENG_T_LIST parameter's,
   * and an ENG_T_ANY one's when it is given a list (a command: a string or
   * an argv list). The host converts every element to it as it converts a
   * parameter of that type (5432 and true become "5432" and "true" for
   * ENG_ITEMS_STRING; "8" becomes 8 for ENG_ITEMS_INT) before the action
   * starts, or refuses the value naming the element; the `choices` of a
   * list apply to each element. Every list parameter declares it;
   * ENG_ITEMS_UNDECLARED (zero) passes the elements as written. */
  eng_items items;
  /* ABI 1.6: zero in older plugins ------------------------------------------ */
  /* The text forms `check` accepts, as a regular expression the whole of a
   * string value must match (the common subset of ECMAScript and Python
   * `re`: no backreferences, no lookbehind), for editors: `engine schema`
   * holds a literal string to it (numbers to min/max), a template being
   * decided at run time. The check stays the authority; NULL: any text. */
  const char *forms;
} eng_param;

typedef struct eng_output {
  const char *name;
  eng_type type;
  const char *doc;
} eng_output;

typedef struct eng_call eng_call; /* one running attempt of an action */
typedef struct eng_host eng_host;

/* What a resource an action creates is to the run (1.4). Every resource a
 * plugin journals (host->journal_intent) gets one:
 *  - kept: what the run delivers (a dump and its sidecar, an uploaded
 *    object, a snapshot, a restored database or instance). Never removed
 *    automatically, by anyone: only `engine cleanup RUN_ID --include-kept`
 *    removes it, when a person asks for it by name.
 *  - temporary: exists only for the run (a throwaway container, a sandbox
 *    cluster, a drill database). The engine removes it after `finally`
 *    when the run's own steps did not.
 * Whatever its disposition, a resource whose creating step did not end ok
 * is partial: a leftover that `engine cleanup` and the next holder of the
 * run's lock remove. A step overrides its action's default with `keep:
 * true` or `temporary: true`; a plugin may set one resource's default with
 * "disposition": "temporary" (or "kept") in the intent's detail. Plugins
 * built before 1.4 leave the field zero: kept, the safe side. */
typedef enum eng_disposition {
  ENG_KEPT = 0,
  ENG_TEMPORARY = 1
} eng_disposition;

/* eng_action.flags */
#define ENG_A_REPEAT_SAFE 0x1u /* running it again after an interruption
                                  cannot lose data */
#define ENG_A_LUA_IO 0x2u      /* (Lua functions) may be used by hooks */

typedef struct eng_action {
  const char *name; /* "dump": reachable as PLUGIN.dump */
  const char *doc;
  eng_side_effect side_effect;
  unsigned flags;            /* ENG_A_* */
  const eng_param *params;   /* n_params entries, or (1.0) an array ended by
                                an entry whose name is NULL */
  const eng_output *outputs; /* n_outputs entries, or (1.0) ended by a NULL
                                name; an action may also set undeclared
                                outputs */
  /* Start one attempt. `params` is an object with every declared parameter
   * that was given or has a default, converted to the declared type; it is
   * owned by the host and valid until host->done() is called. Return ENG_OK
   * and complete later with host->done(), or return an error code (after
   * host->fail() for a message) and then done() must not be called. */
  int (*start)(eng_call *call, const json_t *params);
  /* Optional: the side-effect class for these parameters when it depends on
   * them (postgres.restore with clean: true is destructive). NULL: use
   * side_effect. */
  eng_side_effect (*classify)(const json_t *params);
  /* ABI 1.1: counts of params and outputs (ENG_COUNT(array)); 0 means the
   * array ends with a NULL name, as in 1.0. */
  size_t n_params;
  size_t n_outputs;
  /* ABI 1.2, optional: one line saying what the action will do with these
   * parameters, choices it makes itself included (a format read from the
   * file name, a default compression or job count), written into buf
   * (n bytes). `engine plan` prints it. Pure: no I/O, no host calls. */
  void (*describe)(const json_t *params, char *buf, size_t n);
  /* ABI 1.4: what the resources this action creates are to the run, unless
   * the step or the intent's detail says otherwise (eng_disposition). */
  eng_disposition creates;
} eng_action;

/* Number of entries of a static array: .n_params = ENG_COUNT(my_params). */
#define ENG_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* A Lua function a plugin offers to hooks (`pg.query(url, sql, ...)`).
 * `start` receives the Lua arguments as a JSON array and completes like an
 * action: host->output(call, "result", value) then host->done(). The hook's
 * coroutine yields meanwhile, so the loop goes on with other steps. */
typedef struct eng_lua_func {
  const char *table; /* global table in the sandbox: "pg" */
  const char *name;  /* function name: "query" */
  const char *doc;
  int (*start)(eng_call *call, const json_t *args);
} eng_lua_func;

/* ---- streams ----------------------------------------------------------
 * Any `file` parameter accepts a local path, file://..., or a URL whose
 * scheme a loaded plugin serves (s3://bucket/key). Plugins move bytes
 * through host->stream_* (below); the host computes SHA-256 (and zstd when
 * asked) in the middle and dispatches to local files or to the plugin that
 * declared the scheme with an eng_stream_scheme. */

typedef struct eng_stream eng_stream;

/* A finished stream. info (owned by the callback) holds at least "url",
 * "bytes" (bytes stored) and "sha256" (hex of the bytes stored); a scheme
 * may add "etag", "version_id", "last_modified", and on reads
 * "expected_sha256" (what the store says the object's SHA-256 is). */
typedef void (*eng_stream_done_cb)(void *ud, int rc, json_t *info);
typedef void (*eng_stream_data_cb)(void *ud, const char *buf, size_t len);
typedef void (*eng_stream_write_cb)(void *ud, int rc);

/* What a plugin implements to serve a URL scheme. Calls arrive on the loop
 * thread. A writer's object must not become visible before finish()
 * succeeded; abort() (also after a failed write) leaves nothing behind and
 * frees impl; finish() frees impl after calling cb. */
typedef struct eng_stream_scheme {
  const char *scheme; /* "s3" (without "://") */
  int (*open_write)(eng_call *call, const char *url, const json_t *opts,
                    void **impl);
  /* Accept len bytes; cb(ud, rc) once they were taken (the buffer may be
   * reused then). At most one write is outstanding at a time. */
  int (*write)(void *impl, const void *buf, size_t len,
               eng_stream_write_cb cb, void *ud);
  /* `sha256` is the hex SHA-256 of everything written (stored bytes), so
   * the store can keep it with the object. */
  int (*finish)(void *impl, const char *sha256, eng_stream_done_cb cb,
                void *ud);
  void (*abort)(void *impl);
  int (*open_read)(eng_call *call, const char *url, const json_t *opts,
                   eng_stream_data_cb on_data, eng_stream_done_cb on_end,
                   void *ud, void **impl);
  void (*pause)(void *impl, int paused);
  /* Cancel a read; on_end runs with ENG_ERR_CANCELLED. */
  void (*cancel)(void *impl);
} eng_stream_scheme;

/* ---- state stores (1.3) ------------------------------------------------
 * Where `--state-dir URL` keeps the state of runs (journal, audit log,
 * reports, evidence) and run locks, when URL is not a local directory: a
 * flat store of small objects under URL's prefix. Keys are relative to that
 * prefix ("runs/ID/journal", "locks/NAME") and contain no "..".
 *
 * Every function blocks and may be called from any thread; one handle is
 * used by one thread at a time (the host opens a handle per thread). They
 * return ENG_OK or an eng_err with a message in err (never a secret). */

#define ENG_ETAG_MAX 128 /* room for an ETag, quotes and NUL included */

typedef struct eng_store_scheme {
  const char *scheme; /* "s3" (without "://") */
  /* url is "SCHEME://..." as the user gave it (a trailing '/' optional). */
  int (*open)(const char *url, void **store, char *err, size_t errlen);
  void (*close)(void *store);
  /* Read KEY whole: *data (malloc'd, NUL-terminated beyond *len; the host
   * frees it with free()), its ETag in etag (may be NULL). ENG_ERR_NOTFOUND
   * when there is no such object; ENG_ERR_CHECKSUM when the bytes differ
   * from the SHA-256 stored at put(). */
  int (*get)(void *store, const char *key, char **data, size_t *len,
             char etag[ENG_ETAG_MAX], char *err, size_t errlen);
  /* Write KEY whole, visible all at once. cond NULL: unconditionally; "*":
   * only when no object KEY exists; otherwise an ETag: only while the
   * object's ETag is that one (compare and swap). ENG_ERR_EXISTS when the
   * condition does not hold. The bytes' SHA-256 travels with the request,
   * so the store refuses a damaged upload, and is kept with the object for
   * get(). etag (may be NULL) receives the new object's ETag. */
  int (*put)(void *store, const char *key, const void *data, size_t len,
             const char *cond, char etag[ENG_ETAG_MAX], char *err,
             size_t errlen);
  /* Delete KEY; cond NULL or an ETag as for put(). ENG_OK when KEY is
   * absent; ENG_ERR_EXISTS when the ETag no longer matches. */
  int (*del)(void *store, const char *key, const char *cond, char *err,
             size_t errlen);
  /* cb(ud, key, size) for every key that starts with prefix, in lexical
   * order (all pages). */
  int (*list)(void *store, const char *prefix,
              void (*cb)(void *ud, const char *key, int64_t size), void *ud,
              char *err, size_t errlen);
} eng_store_scheme;

typedef struct eng_plugin {
  /* Checked first, in this order. */
  uint32_t size; /* sizeof(eng_plugin) the plugin was built with */
  uint16_t abi_major;
  uint16_t abi_minor;
  /* ABI 1.0 */
  const char *name; /* [a-z][a-z0-9_]*, the PLUGIN of PLUGIN.ACTION */
  const char *version;
  const char *doc;
  const eng_action *actions; /* array of n_actions */
  size_t n_actions;
  const eng_lua_func *lua_funcs; /* may be NULL */
  size_t n_lua_funcs;
  /* Optional; called once on the loop thread before any action. A non-zero
   * return makes the host refuse the plugin. */
  int (*init)(const eng_host *host);
  /* URL schemes this plugin serves for streams; may be NULL. */
  const eng_stream_scheme *schemes;
  size_t n_schemes;
  /* ABI 1.3: state stores this plugin serves; may be NULL. */
  const eng_store_scheme *stores;
  size_t n_stores;
} eng_plugin;

typedef const eng_plugin *(*eng_plugin_entry_fn)(void);

#define ENG_PLUGIN_ENTRY_SYMBOL "eng_plugin_entry"

/* Use once in a plugin: ENG_PLUGIN_DEFINE(my_descriptor); */
#define ENG_PLUGIN_DEFINE(desc)                                            \
  ENG_EXPORT const eng_plugin *eng_plugin_entry(void);                     \
  ENG_EXPORT const eng_plugin *eng_plugin_entry(void) { return &(desc); }

#define ENG_PLUGIN_HEADER                                                  \
  .size = sizeof(eng_plugin), .abi_major = ENG_ABI_MAJOR,                  \
  .abi_minor = ENG_ABI_MINOR

/* ---- host services ---------------------------------------------------- */

typedef enum eng_log_level {
  ENG_LOG_DEBUG = 0,
  ENG_LOG_INFO = 1,
  ENG_LOG_WARN = 2,
  ENG_LOG_ERROR = 3
} eng_log_level;

typedef struct eng_proc eng_proc;
typedef struct eng_http eng_http;
typedef struct eng_timer eng_timer;
typedef struct eng_watch eng_watch;

/* stdin_fd / stdout_fd special values */
#define ENG_STDIO_NULL (-1) /* /dev/null */
#define ENG_STDIO_PIPE (-2) /* a pipe: callbacks / proc_write */

typedef struct eng_spawn_opts {
  size_t size;                /* sizeof(eng_spawn_opts) */
  const char *const *argv;    /* argv[0] is looked up in PATH */
  const char *const *env;     /* extra "K=V" entries, NULL-terminated; the
                                 child also inherits the engine's env */
  const char *cwd;            /* NULL: the engine's */
  int stdin_fd;               /* an fd (dup'ed), ENG_STDIO_NULL or _PIPE */
  int stdout_fd;              /* an fd (dup'ed), ENG_STDIO_NULL or _PIPE */
  const char *run_as;         /* when the engine is root: run as this user
                                 (setuid/setgid); NULL: unchanged */
  /* Called on the loop thread. on_stdout only with stdout_fd == PIPE.
   * on_stderr NULL: the host logs stderr lines to the step log, redacted,
   * and keeps the last lines for proc_stderr_tail(). */
  void (*on_stdout)(void *ud, const char *buf, size_t len);
  void (*on_stderr)(void *ud, const char *buf, size_t len);
  /* After the process exited and its output pipes are drained. */
  void (*on_exit)(void *ud, int64_t exit_status, int term_signal);
  void *ud;
} eng_spawn_opts;

typedef void (*eng_http_cb)(void *ud, int rc, long http_status,
                            const char *error);

struct eng_host {
  uint32_t size; /* sizeof(eng_host) of the host: check before using a
                    member added in a later minor */
  uint16_t abi_major;
  uint16_t abi_minor;

  /* -- call context ------------------------------------------------------ */
  void (*log)(eng_call *call, eng_log_level level, const char *fmt, ...)
      ENG_PRINTF(3, 4);
  /* Set an output; steals the reference to `value`. */
  void (*output)(eng_call *call, const char *name, json_t *value);
  /* Progress of a transfer: bytes so far, total or -1 when unknown. */
  void (*progress)(eng_call *call, int64_t done, int64_t total);
  /* Register a value that must never appear in any log or report. */
  void (*secret)(eng_call *call, const char *value);
  /* Record the failure message of the attempt (redacted by the host). */
  void (*fail)(eng_call *call, const char *fmt, ...) ENG_PRINTF(2, 3);
  /* Finish the attempt: ENG_OK or an error code. Call exactly once after
   * start() returned ENG_OK; after a cancellation too (within the grace,
   * default 10 s, or the host ends the call itself). The host then closes
   * whatever the call still owns (timers, watches, worker jobs' after(),
   * transfers, streams; processes are killed) and no callback of the call
   * runs after done() returned. A second done() is ignored. */
  void (*done)(eng_call *call, int rc);
  /* Non-zero once the attempt was cancelled (timeout, SIGINT). */
  int (*cancelled)(eng_call *call);
  /* cb(ud) runs once on the loop thread when the attempt is cancelled
   * (cancel_reason() says why), never after done(); NULL unregisters. The
   * host also kills the call's processes and aborts its HTTP transfers
   * itself. */
  void (*on_cancel)(eng_call *call, void (*cb)(void *ud), void *ud);
  /* One pointer of the plugin's, kept with the call (never freed or read
   * by the host). */
  void (*set_data)(eng_call *call, void *data);
  void *(*get_data)(eng_call *call);
  /* The run directory (absolute path) and the step id. */
  const char *(*run_dir)(eng_call *call);
  const char *(*step_id)(eng_call *call);

  /* -- processes --------------------------------------------------------- */
  /* Owned by the call: killed (TERM, then KILL after ENG_KILL_GRACE_MS) when it ends,
   * and no callback reaches the plugin after done(). ENG_ERR_CANCELLED
   * after done(). */
  int (*spawn)(eng_call *call, const eng_spawn_opts *opts, eng_proc **out);
  /* Signal the process group. */
  void (*proc_kill)(eng_proc *proc, int signum);
  /* Write to a piped stdin; `cb` runs when the bytes were written (the
   * buffer must stay valid until then). len 0 closes stdin. */
  int (*proc_write)(eng_proc *proc, const void *buf, size_t len,
                    void (*cb)(void *ud, int rc), void *ud);
  /* Stop / restart reading a piped stdout (backpressure). */
  void (*proc_pause)(eng_proc *proc, int paused);
  /* Last lines of stderr (redacted), valid until on_exit returns. */
  const char *(*proc_stderr_tail)(eng_proc *proc);

  /* -- HTTP (libcurl multi, driven by the loop) ---------------------------- */
  /* The plugin configures `easy` (owned by the plugin; free it in cb or
   * later, never before). cb runs once: rc ENG_OK with the HTTP status, or
   * an error code with curl's message. Owned by the call: aborted when it
   * ends, without cb (the easy handle stays the plugin's). */
  int (*http_start)(eng_call *call, void *curl_easy, eng_http_cb cb,
                    void *ud, eng_http **out);
  void (*http_cancel)(eng_http *req);
  void (*http_unpause)(eng_http *req);

  /* -- loop services ------------------------------------------------------- */
  /* Run fn on a worker thread, then after(ud, status) on the loop thread;
   * status is 0, or negative when the job was cancelled before it ran.
   * The call stays valid in after(), also after a cancellation; after()
   * does not run once the call ended (done()). */
  int (*work)(eng_call *call, void (*fn)(void *ud),
              void (*after)(void *ud, int status), void *ud);
  /* One-shot timer; the handle is invalid after cb ran or timer_stop().
   * Owned by the call: closed when it ends. NULL after done(). */
  eng_timer *(*timer_start)(eng_call *call, uint64_t ms, void (*cb)(void *ud),
                            void *ud);
  void (*timer_stop)(eng_timer *t);
  /* Watch a socket: events ENG_READABLE|ENG_WRITABLE; cb(ud, events,
   * status): status is ENG_ERR_IO when polling failed (read the socket's
   * own error with getsockopt(SO_ERROR)). Owned by the call: closed when
   * it ends; the socket stays the plugin's. NULL after done(). */
  eng_watch *(*watch_start)(eng_call *call, int fd, int events,
                            void (*cb)(void *ud, int events, int status),
                            void *ud);
  void (*watch_update)(eng_watch *w, int events);
  void (*watch_stop)(eng_watch *w);

  /* -- guards and journal ------------------------------------------------- */
  /* Check a resolved target against the run's guards just before acting.
   * For ENG_TARGET_DATABASE, `value` is "HOST:PORT/DBNAME" (or a bare
   * DBNAME) and `evidence` is "sysid:N" read from the server (or NULL):
   * protected patterns match the database name, HOST:PORT/DBNAME and the
   * sysid. Other kinds: `evidence` (may be NULL) explains how the value was
   * obtained. Destructive actions on targets the run did not create are
   * refused here unless --allow-destructive was given. Returns
   * ENG_OK or ENG_ERR_REFUSED (the host records why; the action must then
   * call done(call, ENG_ERR_REFUSED) without acting). */
  int (*guard_target)(eng_call *call, eng_target kind, const char *value,
                      const char *evidence);
  /* Before creating a resource: record the intent (synced). kind is
   * "database", "container", "object", "instance", "sandbox", ...; id
   * identifies it; `detail` (borrowed) holds what cleanup needs, with
   * secrets given as references. By convention detail has "undo":
   * {"action": "PLUGIN.ACTION", "with": {...}}: what the engine (for a
   * temporary resource at the run's end) and `engine cleanup` run to
   * remove it; "disposition" ("kept" or "temporary", 1.4) sets this
   * resource's default instead of the action's `creates`. Journal the
   * intent BEFORE the request or process that creates the resource. Returns a token for
   * journal_confirm, or a negative value when the intent could not be
   * written (the disk is full): the action must then not create the
   * resource and end with done(call, ENG_ERR_IO); the host has already
   * set the message with fail(). */
  int64_t (*journal_intent)(eng_call *call, const char *kind, const char *id,
                            const json_t *detail);
  void (*journal_confirm)(eng_call *call, int64_t token);
  /* Record that the resource was removed. */
  void (*journal_removed)(eng_call *call, const char *kind, const char *id);
  /* Non-zero when this run created the resource. */
  int (*journal_owned)(eng_call *call, const char *kind, const char *id);
  /* Run cb(ud) on the loop when the run ends (after `finally`), before the
   * engine exits; cb completes by calling done(cb_call) like an action. */
  int (*at_run_end)(eng_call *call, int (*cb)(eng_call *end_call, void *ud),
                    void *ud);

  /* -- streams (section 10.0) ----------------------------------------------
   * opts (borrowed, may be NULL):
   *   writes: "compress": "zstd[:1-19]" or "gzip[:1-9]" (the host
   *           compresses; gzip writes one gzip member);
   *   reads:  "decompress": true to undo zstd or gzip when the bytes start
   *           with their magic; "expect_sha256": hex the stored bytes must
   *           hash to; "verify": false to skip the store's own checksum;
   *   both:   "age_key": an age identity (reads and writes) or recipient
   *           (writes): the bytes are stored encrypted with age (after
   *           compression) and decrypted on reads (before decompression);
   *           the info adds "encryption", "plaintext_sha256" and
   *           "plaintext_bytes" (the bytes age -d gives).
   * A reader's on_end gets ENG_ERR_CHECKSUM when the bytes do not match
   * expect_sha256, the store's recorded SHA-256 or its recorded md5 (info
   * "md5" and "expected_md5" from the scheme), when compressed data is
   * corrupt or cut short, or when age data does not decrypt (info "error"
   * says why). */
  int (*stream_open_write)(eng_call *call, const char *url,
                           const json_t *opts, eng_stream **out);
  int (*stream_write)(eng_stream *s, const void *buf, size_t len,
                      eng_stream_write_cb cb, void *ud);
  /* Commit; cb once with the info. The stream is freed after cb. */
  int (*stream_finish)(eng_stream *s, eng_stream_done_cb cb, void *ud);
  /* Discard everything written; the stream is freed. */
  void (*stream_abort)(eng_stream *s);
  int (*stream_open_read)(eng_call *call, const char *url, const json_t *opts,
                          eng_stream_data_cb on_data, eng_stream_done_cb on_end,
                          void *ud, eng_stream **out);
  void (*stream_pause)(eng_stream *s, int paused);
  /* Non-zero when url is a remote stream URL a plugin serves (not a local
   * path): actions use it to pick a pipe instead of a local file. */
  int (*stream_is_remote)(const char *url);

  /* ABI 1.1 ----------------------------------------------------------------
   * Check host->size (offsetof) before using these on an older host. */
  /* Why the call was cancelled: ENG_CANCEL_NONE while it was not. */
  int (*cancel_reason)(eng_call *call);
  /* The run so far, for notifications; the caller owns the result (NULL
   * outside a run). Secrets are masked. Fields: run_id, runbook, name,
   * outcome ("running", "ok", "failed", "refused", "interrupted",
   * "slo_missed"), started_at, duration_ms, steps [{id, uses, status,
   * finally, duration_ms, error, warning (status "warn"), continued (a
   * failure continue_on_error let pass)}], counts {status: n},
   * failed_step {id, status, error} or null, refusal {step, rule, message}
   * or null, slo {rto_ms, rto_met, rto_error, rpo_ms, rpo_met, rpo_error,
   * met, rto_target_ms, rpo_target_ms} (a figure not measured is null,
   * and so is its *_met, the reason in *_error), backup {step, name,
   * local_copy, picked_by, bytes, sha256, external, age_ms} or null,
   * drill, run_dir, audit_log, evidence. The run as it ends: steps and
   * counts leave out the calling step and the `finally` steps that did
   * not end yet. In `finally` the outcome and SLO are those of the main
   * steps. */
  json_t *(*run_state)(eng_call *call);

  /* ABI 1.5 ----------------------------------------------------------------
   * Check host->size (offsetof) before using these on an older host. */
  /* What a text of SQL does, read with PostgreSQL's own parser (libpg_query,
   * PostgreSQL 15's grammar). Pure: no I/O, any thread, also from an
   * action's classify() and describe() and a parameter's check() (once
   * init() ran). Returns a new object (the caller owns it):
   *   "class"            "read", "maintenance", "disruptive", "creates",
   *                      "write" or "destructive": everything it does,
   *                      the databases it names included;
   *   "class_read_only"  the same when it runs inside a READ ONLY
   *                      transaction (what PostgreSQL refuses there does
   *                      nothing);
   *   "here", "here_read_only"  what it does to the database it runs on;
   *   "side", "side_read_only", "side_here", "side_here_read_only"  the
   *                      same as eng_side_effect values (a write counts as
   *                      ENG_SIDE_DESTRUCTIVE);
   *   "what", "what_read_only"  the statement or function behind "class"
   *                      and "class_read_only" ("VACUUM FULL",
   *                      "pg_terminate_backend()");
   *   "unverified"       why part of it cannot be verified (text that does
   *                      not parse, DO, CALL, a function the guards do not
   *                      know, dblink), or absent;
   *   "databases"        [{name, class, class_read_only, side,
   *                      side_read_only, what}]: databases statements name
   *                      (ALTER/DROP/CREATE DATABASE x, REINDEX DATABASE x);
   *   "statements"       [{offset, length, class, no_transaction, what}]:
   *                      each statement's bytes in sql, and whether it
   *                      cannot run inside a transaction block (VACUUM,
   *                      CREATE INDEX CONCURRENTLY, DROP DATABASE, ...);
   *   "no_transaction"   how many of them cannot ("no_transaction_what":
   *                      the first);
   *   "writes_what"      the first statement that writes data, objects or
   *                      settings (refused in a READ ONLY transaction), or
   *                      absent. */
  json_t *(*sql_classify)(const char *sql);
  /* guard_target for SQL about to run on `database` ("HOST:PORT/DBNAME",
   * evidence "sysid:N" or NULL): each database it touches is held to what
   * the SQL does to it (a database a statement names, on the same server,
   * to what that statement does), and what cannot be verified to
   * guards.unverified_commands when the database is protected. flags:
   * ENG_SQL_READ_ONLY when it runs inside a READ ONLY transaction. Returns
   * ENG_OK or ENG_ERR_REFUSED as guard_target does. */
  int (*guard_sql)(eng_call *call, const char *database, const char *evidence,
                   const char *sql, unsigned flags);

  /* ABI 1.6 ----------------------------------------------------------------
   * Check host->size (offsetof) before using these on an older host. */
  /* The action worked and a threshold was crossed: the step ends `warn`
   * with msg unless it fails (several warnings are joined with "; ", as
   * engine.warn() does in a check). ENG_OK, or ENG_ERR_INVALID when the
   * call belongs to no step. */
  int (*warn)(eng_call *call, const char *msg);

  /* ABI 1.7 ----------------------------------------------------------------
   * Check host->size (offsetof) before using these on an older host. */
  /* Read the migrations folder `dir` (Prisma's NAME/migration.sql, or plain
   * NNN_name.sql files), in name order, and lint each with PostgreSQL's
   * parser: the statements that take locks blocking reads or writes, the
   * lock, what it blocks and the safe recipe (docs/migrations.md lists the
   * rules). opts (borrowed, may be NULL): "pg_major" (10-17, default 15),
   * "transaction" ("auto": several statements run as one transaction, as
   * Prisma runs them; "always"; "never"), "only" (names of the migrations
   * whose findings are reported). Returns a new object: "layout" ("prisma"
   * or "sql"), "migrations" [{name, file, sha256}], "findings" [{file,
   * migration, line, col, level ("error" or "warning"), rule, message,
   * lock, blocks, fix, suppressed (the reason of a `-- lint: allow`
   * comment, or absent), text ("FILE:LINE:COL: warning: [rule] ...")}],
   * "errors", "warnings", "suppressed" (counts), "digest" (SHA-256 over
   * every migration's name and bytes: the same set, the same digest),
   * "pg_major"; or {"error": message} when the folder cannot be read.
   * Reads files: call it from a worker thread (host->work). */
  json_t *(*migrations_lint)(const char *dir, const json_t *opts);
  /* Which backups a retention policy keeps (docs/retention.md), so every
   * store prunes by one rule. Pure: no I/O, any thread. backups (borrowed):
   * [{name, mtime_ms, verified (a drill's marker is there),
   * locked_until_ms (object lock; 0 or absent: none)}]; policy (borrowed):
   * the step's parameters of ENG_RETENTION_PARAMS as the host converted
   * them (keep_last, keep_daily, keep_weekly, keep_monthly, min_age in ms).
   * A backup's time is the first date in its name, else mtime_ms. Returns
   * a new object (the caller owns it): {"error": why} when no keep_* is
   * given, else {"policy": the policy in words, "backups": [...]} in the
   * input's order, each {name, time (RFC 3339), time_ms, time_from
   * ("name" or "modified"), verified, keep, reasons [why it is kept], rule
   * (why it goes; absent when kept), locked (true when only its object
   * lock keeps it)}; NULL when backups is not an array of objects with a
   * name. Never given up: the newest backup, the newest verified one, one
   * younger than min_age, one whose lock holds. An empty array checks the
   * policy and words it (for describe()). */
  json_t *(*retention_plan)(const json_t *backups, const json_t *policy,
                            int64_t now_ms);
};

/* The parameters and outputs of a retention policy (1.7), as every action
 * that prunes backups takes them (the `prune` built-in, s3.prune), so they
 * read alike: ENG_RETENTION_PARAMS in a parameter array, and
 * ENG_RETENTION_OUTPUTS in an output array. */
#define ENG_RETENTION_PARAMS                                                  \
  {.name = "keep_last", .type = ENG_T_INT, .flags = ENG_P_MIN, .min = 0,      \
   .doc = "keep the N newest backups (at least one keep_* must be given; "   \
          "keep_last: 0 keeps only what is never pruned)"},                  \
  {.name = "keep_daily", .type = ENG_T_INT, .flags = ENG_P_MIN, .min = 0,     \
   .doc = "keep the newest backup of each of the N latest days that have "   \
          "backups (UTC)"},                                                  \
  {.name = "keep_weekly", .type = ENG_T_INT, .flags = ENG_P_MIN, .min = 0,    \
   .doc = "keep the newest backup of each of the N latest ISO weeks that "   \
          "have backups"},                                                   \
  {.name = "keep_monthly", .type = ENG_T_INT, .flags = ENG_P_MIN, .min = 0,   \
   .doc = "keep the newest backup of each of the N latest months that have " \
          "backups"},                                                        \
  {.name = "min_age", .type = ENG_T_DURATION,                                 \
   .doc = "never prune a backup younger than this (e.g. 7d)"},               \
  {.name = "dry_run", .type = ENG_T_BOOL, .def = "false",                     \
   .doc = "list what would be pruned and why each kept backup is kept; "     \
          "deletes nothing (read-only for the guards)"}
#define ENG_RETENTION_OUTPUTS                                                 \
  {"pruned", ENG_T_LIST,                                                      \
   "[{name, path or url, time, time_from, rule, files}]: the backups given " \
   "up, the rule that chose each, and what was deleted (empty on a dry "     \
   "run)"},                                                                   \
  {"kept", ENG_T_LIST,                                                        \
   "[{name, path or url, time, time_from, verified, reasons}]: why each "    \
   "kept backup is kept"},                                                    \
  {"locked", ENG_T_LIST,                                                      \
   "the backups the policy gives up that an object lock keeps (skipped)"},   \
  {"count_pruned", ENG_T_INT, "backups pruned (dry run: that would be)"},     \
  {"count_kept", ENG_T_INT, "backups kept"},                                  \
  {"dry_run", ENG_T_BOOL, "true when nothing was deleted on purpose"},        \
  {"policy", ENG_T_STRING, "the policy applied, in words"}

/* host->guard_sql() flags (1.5) */
#define ENG_SQL_READ_ONLY 0x1u

#define ENG_READABLE 1
#define ENG_WRITABLE 2

/* host->cancel_reason() */
#define ENG_CANCEL_NONE 0
#define ENG_CANCEL_TIMEOUT 1   /* the step's timeout ran out */
#define ENG_CANCEL_INTERRUPT 2 /* SIGINT / SIGTERM: the run is stopping */
#define ENG_CANCEL_SHUTDOWN 3  /* the engine is ending the run */

#ifdef __cplusplus
}
#endif
#endif /* ENGINE_PLUGIN_H */
