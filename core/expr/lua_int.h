/*
 * expr/lua_int.h - what the files of the Lua sandbox share (inside expr/
 * only; the rest of the engine sees expr/expr.h).
 *
 * One lua_State per run, on the loop thread. Only base (without dofile,
 * loadfile, warn, binary chunks and __gc finalizers, which Lua runs with
 * hooks off), string (without dump), table, math and utf8 are open;
 * require() reads only RUNBOOK_DIR/lua/ and the installed library.
 *
 *   lua_util.c      the registry keys, the state's eng__lua, error text,
 *                   protected calls (the bottom: calls nothing else here)
 *   lua_sandbox.c   the state: set-up, require, context tables, compile,
 *                   synchronous evaluation (eng__lua_eval); the top
 *   lua_match.c     string.find/match/gmatch/gsub: Lua's patterns by a
 *                   matcher that counts its work and checks the limits
 *                   (calls nothing else here: the check is handed in)
 *   lua_limits.c    the memory cap (allocator), the execution budget and
 *                   step deadline (count hook, watchdog thread, signals),
 *                   the check the pattern matcher makes
 *   lua_json.c      JSON values to Lua tables (strict context tables) and
 *                   back
 *   lua_bridge.c    coroutines (eng__lua_run): a plugin's function or
 *                   http.get runs as a sub-call and the coroutine yields
 *                   until it completes
 *   lua_lib_engine.c  print, engine.log, engine.fail, success(), failure(),
 *                   always()
 *   lua_lib_json.c  json.encode, json.decode, json.null
 *   lua_lib_http.c  http.get
 *
 * Context tables (params, steps, run, runbook, outputs and every object
 * converted from JSON for them) share one metatable whose __index raises
 * "reference to PATH.KEY does not exist": the table's PATH is found in a
 * weak-keyed registry table, so no per-table closure is needed. `env` is a
 * read-only proxy where a missing variable reads as nil.
 *
 * Two ways to evaluate:
 *  - eng__lua_eval: synchronous, on the main thread, under lua_pcall with a
 *    traceback handler; functions that need I/O raise an error.
 *  - eng__lua_run: in a coroutine with its own _ENV (locals + __index=_G).
 *    A plugin function (pg.query) or http.get creates a sub-call and yields;
 *    the sub-call's completion resumes the coroutine. The done callback runs
 *    exactly once, on the loop thread, and MAY RUN BEFORE eng__lua_run
 *    RETURNS when the code finishes without yielding. When eng__lua_run
 *    returns an error the callback never runs.
 *
 * Limits: the count hook runs every ENG_LUA_HOOK_COUNT instructions and
 * stops an evaluation that used its budget, passed its step's deadline
 * (the step's `timeout`) or was interrupted by a signal. Between two hooks
 * C functions may each run for a while (string.rep, table.sort), so a
 * watchdog thread wakes when the
 * running evaluation's limit falls due, and signal handlers when they
 * raise the interrupt flag, and make the hook run at the next instruction
 * (lua_sethook may be called asynchronously). Pattern matching, which
 * backtracks in C for as long as it likes, is the sandbox's own
 * (lua_match.c) and checks the same limits itself every few thousand
 * steps. Lua itself only ever runs on the loop thread.
 *
 * Lua errors longjmp: every entry point touches the state only inside a
 * protected call, C functions check their arguments before allocating C
 * memory, and JSON values handed to Lua are pushed under lua_pcall so they
 * are freed on every path.
 */
#ifndef ENGINE_LUA_INT_H
#define ENGINE_LUA_INT_H

#include "expr/expr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define ENG_LUA_MEM_DEFAULT ((size_t)64 * 1024 * 1024)
#define ENG_LUA_BUDGET_DEFAULT 10000u
#define ENG_LUA_HOOK_COUNT 1000
#define ENG_LUA_JSON_DEPTH 64
#define ENG_LUA_HTTP_MAX_BODY ((size_t)8 * 1024 * 1024)

/* Registry keys: their addresses are unique in the process (one object,
 * lua_sandbox.c), the values live in each state. */
extern const struct eng__lh_keys {
  char paths;   /* weak-keyed: table -> "steps.x.outputs" */
  char strict;  /* the shared strict metatable */
  char steps;   /* the steps table */
  char cache;   /* compile cache: key -> ref */
  char loaded;  /* require() results */
  char fail_mt; /* metatable of engine.fail errors */
  char job_mt;  /* {__index = _G} for coroutine envs */
  char null;    /* address is the json.null sentinel */
  char nilmark; /* "was nil" marker for saved globals */
} eng__lh_k;
#define k_paths (eng__lh_k.paths)
#define k_strict (eng__lh_k.strict)
#define k_steps (eng__lh_k.steps)
#define k_cache (eng__lh_k.cache)
#define k_loaded (eng__lh_k.loaded)
#define k_fail_mt (eng__lh_k.fail_mt)
#define k_job_mt (eng__lh_k.job_mt)
#define k_null (eng__lh_k.null)
#define k_nilmark (eng__lh_k.nilmark)

#define ENG_LUA_NULL ((void *)&k_null)
#define ENG_LUA_NILMARK ((void *)&k_nilmark)

typedef struct eng__lua_job eng__lua_job;

/* Execution time of one evaluation: only time spent running counts. */
typedef struct eng__lua_clock {
  uint64_t used;  /* ns accumulated by previous slices */
  uint64_t since; /* uv_hrtime() at the start of the current slice */
  eng__lua_job *job; /* NULL: synchronous evaluation (no I/O) */
} eng__lua_clock;

struct eng__lua_job {
  eng__lua *h;          /* NULL once the state was destroyed */
  lua_State *co;
  int co_ref;           /* anchors co in the registry while running */
  eng_call *call;
  eng__lua_done_cb cb;
  void *ud;
  eng__lua_clock clock;
  int timed_out;        /* stopped by its call's deadline */
  int yielded;          /* suspended in lua_yieldk, waiting for a sub-call */
  int waiting;          /* a sub-call is outstanding */
  json_t *result;       /* the sub-call's outputs["result"] */
  char *error;          /* or its error text */
  eng__lua_job *prev, *next;
};

struct eng__lua {
  lua_State *L;
  size_t mem_limit, mem_used;
  uint64_t budget_ns;
  uint64_t budget_default_ms; /* eng__lua_opts' (eng__lua_set_budget(0)) */
  char budget_msg[96];
  char *runbook_dir, *lib_dir;
  char **deps;
  size_t n_deps;
  char **files; /* the file names of chunks (eng__lh_chunkname) */
  size_t n_files;
  eng__lua_clock *cur; /* the evaluation running now, or NULL */
  eng__lua_job *jobs;  /* running coroutines */
  bool watched;        /* counted by the watchdog */
  bool compile_nomem;  /* a compile ran out of mem_limit (eng__lua_exhausted) */
};

/* A running evaluation the watchdog watches (lua_limits.c). */
typedef struct lh_watch {
  lua_State *L;
  uint64_t due;
} lh_watch;

/* ---- lua_util.c ------------------------------------------------------------ */

/* The state's eng__lua (the allocator's user data). */
eng__lua *eng__lh_get(lua_State *L);
/* malloc'd copy; aborts when memory is exhausted. */
char *eng__lh_strdup(const char *s);
/* The mark that starts a chunk's name (see eng__lh_chunkname). */
#define ENG_LH_MARK '\x01'
/* The name of a chunk of `file` starting at its line `line` into buf:
 * short, so that Lua never cuts it; eng__lh_message turns the locations
 * Lua writes with it back into "FILE:LINE:". */
void eng__lh_chunkname(eng__lua *h, const char *file, int line, char *buf,
                       size_t n);
/* A Lua error's text as users read it (malloc'd): whole file names and
 * runbook lines in its locations (the sandbox's message handlers add no
 * traceback). h may be NULL (a static text). */
char *eng__lh_message(const eng__lua *h, const char *raw);
/* The same into out (cap bytes: at least eng__lh_message_room(h, raw)),
 * for callers that must not hold C memory while Lua may raise. */
size_t eng__lh_message_room(const eng__lua *h, const char *raw);
void eng__lh_message_to(const eng__lua *h, const char *raw, char *out,
                        size_t cap);
/* Push msg onto L, prefixed with the location of the innermost Lua
 * function of co's stack from `level` up when msg has none. */
void eng__lh_push_error(lua_State *L, lua_State *co, int level,
                        const char *msg);
/* Run fn(ud) protected on the main thread; the error text goes to err. */
int eng__lh_protect(eng__lua *h, lua_CFunction fn, void *ud, char *err,
                    size_t errlen);
/* src (or "unknown error") into dst as eng__lh_message writes it. */
void eng__lh_copy(const eng__lua *h, char *dst, size_t n, const char *src);
/* If the value at idx is an engine.fail error, push its text (1), else 0. */
int eng__lh_push_fail_text(lua_State *L, int idx);

/* ---- lua_limits.c --------------------------------------------------------- */

/* The allocator: enforces the state's memory cap. */
void *eng__lh_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
/* Install the count hook (every ENG_LUA_HOOK_COUNT instructions). */
void eng__lh_arm(lua_State *L);
/* The watchdog thread: started with the first state, stopped with the
 * last. */
int eng__lh_wd_start(void);
void eng__lh_wd_stop(void);
/* L starts running the evaluation c: watch it until eng__lh_watch_end(),
 * which restores the watch it returned. */
lh_watch eng__lh_watch_start(eng__lua *h, lua_State *L,
                             const eng__lua_clock *c);
void eng__lh_watch_end(lh_watch prev);
/* Replace string.find/match/gmatch/gsub by lua_match.c's, checking this
 * state's limits as they work. */
void eng__lh_guard_patterns(lua_State *L);

/* ---- lua_match.c ------------------------------------------------------------ */

/* Replace string.find/match/gmatch/gsub (so the methods of strings too) in
 * L's string table by a matcher of Lua 5.4's patterns with liblua's
 * results that calls check(L) every few thousand steps of work; check
 * (never NULL) returns normally or raises a Lua error, which stops the
 * call. */
void eng__lh_open_match(lua_State *L, lua_CFunction check);

/* ---- lua_json.c ------------------------------------------------------------ */

/* Push j. Objects become strict tables when path (a string at path_idx)
 * is given (path_idx 0: plain tables). Raises on errors. */
void eng__lh_push_json(lua_State *L, const json_t *j, int path_idx, int depth);
/* Push j (stolen) onto L from inside a C function; raises after freeing
 * it when Lua runs out of memory. */
void eng__lh_push_json_steal(lua_State *L, json_t *j);
/* Give table at idx the strict metatable and record its path (string at
 * path_idx). */
void eng__lh_set_path(lua_State *L, int idx, int path_idx);
/* Never raises and never allocates Lua memory; NULL and err on failure. */
json_t *eng__lh_to_json(lua_State *L, int idx, int depth, char *err,
                        size_t errlen);

/* ---- lua_bridge.c ---------------------------------------------------------- */

/* Offer function f as f->table.f->name (lua_pcall body; light userdata:
 * the eng_lua_func, which must outlive the state). */
int eng__lh_add_func_body(lua_State *L);
/* Take job j out of its state's list of running coroutines. */
void eng__lh_job_unlink(eng__lua_job *j);

/* ---- the libraries ----------------------------------------------------------- */

/* lua_lib_engine.c: print, engine.log/fail, success/failure/always. */
void eng__lh_open_engine(lua_State *L);
/* lua_lib_json.c: json.encode/decode/null. */
void eng__lh_open_json(lua_State *L);
/* lua_lib_http.c: http.get. */
void eng__lh_open_http(lua_State *L);

#endif /* ENGINE_LUA_INT_H */
