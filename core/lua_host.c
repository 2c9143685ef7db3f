/*
 * lua_host.c - the Lua sandbox.
 *
 * One lua_State per run, on the loop thread. Only base (without dofile,
 * loadfile, warn, binary chunks and __gc finalizers, which Lua runs with
 * hooks off), string (without dump), table, math and
 * utf8 are open; require() reads only RUNBOOK_DIR/lua/ and the installed
 * library. A custom allocator enforces the memory cap and a count hook the
 * execution-time budget of one evaluation.
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
 * C functions may each run for a while (string.rep, table.sort, pattern
 * matching under its work bound), so a watchdog thread wakes when the
 * running evaluation's limit falls due, and signal handlers when they
 * raise the interrupt flag, and make the hook run at the next instruction
 * (lua_sethook may be called asynchronously). Lua itself only ever runs on
 * the loop thread.
 *
 * Lua errors longjmp: every entry point touches the state only inside a
 * protected call, C functions check their arguments before allocating C
 * memory, and JSON values handed to Lua are pushed under lua_pcall so they
 * are freed on every path.
 */
#include "engine_int.h"

#include <errno.h>
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#define ENG_LUA_MEM_DEFAULT ((size_t)64 * 1024 * 1024)
#define ENG_LUA_BUDGET_DEFAULT 10000u
#define ENG_LUA_HOOK_COUNT 1000
#define ENG_LUA_JSON_DEPTH 64
#define ENG_LUA_HTTP_MAX_BODY ((size_t)8 * 1024 * 1024)

/* Registry keys (addresses are unique; values live in each state). */
static const char k_paths = 0;    /* weak-keyed: table -> "steps.x.outputs" */
static const char k_strict = 0;   /* the shared strict metatable */
static const char k_steps = 0;    /* the steps table */
static const char k_cache = 0;    /* compile cache: key -> ref */
static const char k_loaded = 0;   /* require() results */
static const char k_fail_mt = 0;  /* metatable of engine.fail errors */
static const char k_job_mt = 0;   /* {__index = _G} for coroutine envs */
static const char k_null = 0;     /* address is the json.null sentinel */
static const char k_nilmark = 0;  /* "was nil" marker for saved globals */

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
  char budget_msg[96];
  char *runbook_dir, *lib_dir;
  char **deps;
  size_t n_deps;
  eng__lua_clock *cur; /* the evaluation running now, or NULL */
  eng__lua_job *jobs;  /* running coroutines */
  bool watched;        /* counted by the watchdog */
};

/* ---- small helpers ------------------------------------------------------ */

static eng__lua *lh_get(lua_State *L) {
  void *ud = NULL;
  lua_getallocf(L, &ud);
  return ud;
}

static char *lh_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = malloc(n);
  if (p == NULL)
    abort();
  memcpy(p, s, n);
  return p;
}

/* A chunk compiled for runbook line L is named "@FILE:+(L-1)" instead of
 * being padded with L-1 newlines (which cost time and memory for every
 * expression deep in a large file); Lua then writes "FILE:+OFF:N:". Turn
 * that into "FILE:(OFF+N):" in place (it only gets shorter). */
static void lh_fix_lines(char *msg) {
  if (msg == NULL) return;
  char *w = msg;
  for (const char *r = msg; *r;) {
    if (r[0] == ':' && r[1] == '+' && isdigit((unsigned char)r[2])) {
      char *end;
      long off = strtol(r + 2, &end, 10);
      /* line numbers only: text that merely looks like one (an error
       * quoting its input) may hold any number */
      if (*end == ':' && isdigit((unsigned char)end[1]) && off < 100000000) {
        char *end2;
        long n = strtol(end + 1, &end2, 10);
        if (*end2 == ':' && n < 100000000) {
          w += sprintf(w, ":%ld", off + n);
          r = end2;
          continue;
        }
      }
      /* "FILE:+OFF" alone (a chunk name): drop the offset */
      if (*end != ':') {
        r = end;
        continue;
      }
    }
    *w++ = *r++;
  }
  *w = '\0';
}

static void lh_copy(char *dst, size_t n, const char *src) {
  if (dst != NULL && n > 0) {
    snprintf(dst, n, "%s", src != NULL ? src : "unknown error");
    lh_fix_lines(dst);
  }
}

/* Run fn(ud) protected on the main thread; the error text goes to err. */
static int lh_protect(eng__lua *h, lua_CFunction fn, void *ud, char *err,
                      size_t errlen) {
  lua_State *L = h->L;
  int top = lua_gettop(L);
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, ud);
  int st = lua_pcall(L, 1, 0, 0);
  if (st != LUA_OK) {
    lh_copy(err, errlen, lua_tostring(L, -1));
    if (st == LUA_ERRMEM)
      lua_gc(L, LUA_GCCOLLECT);
  }
  lua_settop(L, top);
  return st;
}

/* ---- allocator and budget ------------------------------------------------- */

static void *lh_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  eng__lua *h = ud;
  if (ptr == NULL)
    osize = 0; /* osize is then the type of the new object */
  if (nsize == 0) {
    free(ptr);
    h->mem_used -= osize;
    return NULL;
  }
  if (nsize > osize && h->mem_used + (nsize - osize) > h->mem_limit)
    return NULL; /* Lua collects and retries, then raises "not enough memory" */
  void *p = realloc(ptr, nsize);
  if (p == NULL)
    return NULL;
  h->mem_used = h->mem_used - osize + nsize;
  return p;
}

/* Set from a signal handler (sched.c) while the loop may be busy in Lua:
 * the running evaluation stops at its next hook, so SIGINT and SIGTERM
 * are answered within milliseconds, not after the budget. */
volatile sig_atomic_t eng__lua_interrupt;

static void lh_hook(lua_State *L, lua_Debug *ar);

static void lh_arm(lua_State *L) {
  lua_sethook(L, lh_hook, LUA_MASKCOUNT, ENG_LUA_HOOK_COUNT);
}

/* Raise msg at the current position; from now on the hook runs at every
 * instruction, so a pcall() in the script catching the error cannot keep
 * the loop going. */
static int lh_stop(lua_State *L, const char *msg) {
  lua_sethook(L, lh_hook, LUA_MASKCOUNT, 1);
  luaL_where(L, 0);
  lua_pushstring(L, msg);
  lua_concat(L, 2);
  return lua_error(L);
}

/* The step deadline of the evaluation c (0: none). */
static uint64_t lh_deadline(const eng__lua_clock *c) {
  return c->job != NULL && c->job->call != NULL
             ? eng__call_deadline(c->job->call)
             : 0;
}

/* Stop the running evaluation if it was interrupted, passed its step's
 * deadline or used its budget; called by the hook and before work done in
 * C (pattern matching). */
static void lh_check_limits(lua_State *L) {
  eng__lua *h = lh_get(L);
  eng__lua_clock *c = h->cur;
  if (c == NULL)
    return;
  if (eng__lua_interrupt)
    lh_stop(L, "interrupted (SIGINT or SIGTERM)");
  uint64_t now = uv_hrtime();
  uint64_t deadline = lh_deadline(c);
  if (deadline != 0 && now >= deadline) {
    c->job->timed_out = 1;
    lh_stop(L, "the step's timeout ran out while Lua was running");
  }
  if (c->used + (now - c->since) > h->budget_ns)
    lh_stop(L, h->budget_msg);
}

static void lh_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lh_check_limits(L);
}

/* ---- watchdog ----------------------------------------------------------
 * One thread per process while a state exists. The loop thread tells it
 * which lua_State runs and when its limit falls due; at that time it makes
 * the state's hook run at the next instruction. It never touches Lua
 * otherwise. */
static struct {
  uv_mutex_t mu;
  uv_cond_t cv;
  uv_thread_t thread;
  int users;           /* live eng__lua states */
  bool quit;
  lua_State *L;        /* running now, or NULL */
  uint64_t due;        /* uv_hrtime() when its limit falls due; 0 fired */
} lh_wd;
static uv_once_t lh_wd_once = UV_ONCE_INIT;
/* The running state for signal handlers (the loop thread writes it). */
static lua_State *volatile lh_running;

static void lh_wd_init(void) {
  if (uv_mutex_init(&lh_wd.mu) != 0 || uv_cond_init(&lh_wd.cv) != 0)
    abort();
}

static void lh_wd_main(void *arg) {
  (void)arg;
  uv_mutex_lock(&lh_wd.mu);
  while (!lh_wd.quit) {
    if (lh_wd.L == NULL || lh_wd.due == 0) {
      uv_cond_wait(&lh_wd.cv, &lh_wd.mu);
      continue;
    }
    uint64_t now = uv_hrtime();
    if (now >= lh_wd.due) {
      lua_sethook(lh_wd.L, lh_hook, LUA_MASKCOUNT, 1);
      lh_wd.due = 0;
      continue;
    }
    (void)uv_cond_timedwait(&lh_wd.cv, &lh_wd.mu, lh_wd.due - now);
  }
  uv_mutex_unlock(&lh_wd.mu);
}

/* Start the thread with the first state; it blocks every signal, so that
 * signals reach the loop thread. */
static int lh_wd_start(void) {
  uv_once(&lh_wd_once, lh_wd_init);
  uv_mutex_lock(&lh_wd.mu);
  int rc = 0;
  if (lh_wd.users++ == 0) {
    lh_wd.quit = false;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = uv_thread_create(&lh_wd.thread, lh_wd_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
      lh_wd.users--;
  }
  uv_mutex_unlock(&lh_wd.mu);
  return rc;
}

static void lh_wd_stop(void) {
  uv_mutex_lock(&lh_wd.mu);
  bool last = --lh_wd.users == 0;
  if (last) {
    lh_wd.quit = true;
    uv_cond_signal(&lh_wd.cv);
  }
  uv_mutex_unlock(&lh_wd.mu);
  if (last)
    uv_thread_join(&lh_wd.thread);
}

typedef struct lh_watch {
  lua_State *L;
  uint64_t due;
} lh_watch;

/* L starts running the evaluation c: watch it until lh_watch_end(). */
static lh_watch lh_watch_start(eng__lua *h, lua_State *L,
                               const eng__lua_clock *c) {
  uint64_t due = c->since + (h->budget_ns > c->used ? h->budget_ns - c->used : 0);
  uint64_t deadline = lh_deadline(c);
  if (deadline != 0 && deadline < due)
    due = deadline;
  lh_arm(L);
  uv_mutex_lock(&lh_wd.mu);
  lh_watch prev = {lh_wd.L, lh_wd.due};
  lh_wd.L = L;
  lh_wd.due = due != 0 ? due : 1;
  lh_running = L;
  uv_cond_signal(&lh_wd.cv);
  uv_mutex_unlock(&lh_wd.mu);
  return prev;
}

static void lh_watch_end(lh_watch prev) {
  uv_mutex_lock(&lh_wd.mu);
  lh_wd.L = prev.L;
  lh_wd.due = prev.due;
  lh_running = prev.L;
  uv_mutex_unlock(&lh_wd.mu);
}

void eng__lua_poke(void) {
  lua_State *L = lh_running;
  if (L != NULL)
    lua_sethook(L, lh_hook, LUA_MASKCOUNT, 1);
}

/* ---- JSON -> Lua ------------------------------------------------------------ */

/* Give table at idx the strict metatable and record its path (string at
 * path_idx). */
static void lh_set_path(lua_State *L, int idx, int path_idx) {
  idx = lua_absindex(L, idx);
  path_idx = lua_absindex(L, path_idx);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &k_paths);
  lua_pushvalue(L, idx);
  lua_pushvalue(L, path_idx);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &k_strict);
  lua_setmetatable(L, idx);
}

/* Push j. Objects become strict tables when path (a string at path_idx)
 * is given (path_idx 0: plain tables). Raises on errors. */
static void lh_push_json(lua_State *L, const json_t *j, int path_idx,
                         int depth) {
  if (depth > ENG_LUA_JSON_DEPTH)
    luaL_error(L, "JSON nesting deeper than %d levels", ENG_LUA_JSON_DEPTH);
  luaL_checkstack(L, 4, "JSON too deep");
  if (path_idx != 0)
    path_idx = lua_absindex(L, path_idx);
  switch (json_typeof(j)) {
  case JSON_OBJECT: {
    const char *key;
    json_t *v;
    lua_createtable(L, 0, (int)json_object_size(j));
    json_object_foreach((json_t *)j, key, v) {
      int sub = 0;
      if (path_idx != 0) {
        lua_pushfstring(L, "%s.%s", lua_tostring(L, path_idx), key);
        sub = lua_gettop(L);
      }
      lh_push_json(L, v, sub, depth + 1);
      lua_setfield(L, sub != 0 ? -3 : -2, key);
      if (sub != 0)
        lua_pop(L, 1);
    }
    if (path_idx != 0)
      lh_set_path(L, -1, path_idx);
    return;
  }
  case JSON_ARRAY: {
    size_t n = json_array_size(j);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
      int sub = 0;
      if (path_idx != 0) {
        lua_pushfstring(L, "%s[%d]", lua_tostring(L, path_idx), (int)i + 1);
        sub = lua_gettop(L);
      }
      lh_push_json(L, json_array_get(j, i), sub, depth + 1);
      lua_rawseti(L, sub != 0 ? -3 : -2, (lua_Integer)i + 1);
      if (sub != 0)
        lua_pop(L, 1);
    }
    return;
  }
  case JSON_STRING:
    lua_pushlstring(L, json_string_value(j), json_string_length(j));
    return;
  case JSON_INTEGER:
    lua_pushinteger(L, (lua_Integer)json_integer_value(j));
    return;
  case JSON_REAL:
    lua_pushnumber(L, (lua_Number)json_real_value(j));
    return;
  case JSON_TRUE:
    lua_pushboolean(L, 1);
    return;
  case JSON_FALSE:
    lua_pushboolean(L, 0);
    return;
  case JSON_NULL:
  default:
    lua_pushlightuserdata(L, ENG_LUA_NULL);
    return;
  }
}

/* lua_pcall body: push the json_t given as light userdata (no paths). */
static int lh_push_json_plain(lua_State *L) {
  const json_t *j = lua_touserdata(L, 1);
  lh_push_json(L, j, 0, 0);
  return 1;
}

/* Push j (stolen) onto L from inside a C function; raises after freeing
 * it when Lua runs out of memory. */
static void lh_push_json_steal(lua_State *L, json_t *j) {
  lua_pushcfunction(L, lh_push_json_plain);
  lua_pushlightuserdata(L, j);
  int st = lua_pcall(L, 1, 1, 0);
  json_decref(j);
  if (st != LUA_OK)
    lua_error(L);
}

/* ---- Lua -> JSON ------------------------------------------------------------ */

/* Never raises and never allocates Lua memory; NULL and err on failure. */
static json_t *lh_to_json(lua_State *L, int idx, int depth, char *err,
                          size_t errlen) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
  case LUA_TNONE:
    return json_null();
  case LUA_TBOOLEAN:
    return json_boolean(lua_toboolean(L, idx));
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      return json_integer((json_int_t)lua_tointeger(L, idx));
    else {
      json_t *r = json_real((double)lua_tonumber(L, idx));
      if (r == NULL)
        snprintf(err, errlen, "cannot convert %g to JSON",
                 (double)lua_tonumber(L, idx));
      return r;
    }
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    json_t *r = json_stringn(s, n);
    if (r == NULL)
      snprintf(err, errlen,
               "cannot convert a string that is not valid UTF-8 to JSON");
    return r;
  }
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == ENG_LUA_NULL)
      return json_null();
    break;
  case LUA_TTABLE:
    break;
  default:
    break;
  }
  if (lua_type(L, idx) != LUA_TTABLE) {
    snprintf(err, errlen, "cannot convert a %s to JSON",
             luaL_typename(L, idx));
    return NULL;
  }
  if (depth >= ENG_LUA_JSON_DEPTH) {
    snprintf(err, errlen,
             "cannot convert to JSON: nesting deeper than %d levels "
             "(a cyclic table?)", ENG_LUA_JSON_DEPTH);
    return NULL;
  }
  if (!lua_checkstack(L, 4)) {
    snprintf(err, errlen, "cannot convert to JSON: Lua stack overflow");
    return NULL;
  }
  /* Pass 1: is it a sequence 1..n? */
  lua_Integer n = 0;
  int seq = 1;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    n++;
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1)
      seq = 0;
    lua_pop(L, 1);
  }
  if (seq && n > 0) {
    /* keys are n distinct integers >= 1: 1..n exactly iff all <= n */
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
      if (lua_tointeger(L, -2) > n)
        seq = 0;
      lua_pop(L, 1);
    }
  }
  if (seq && n > 0) {
    json_t *arr = json_array();
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      json_t *v = lh_to_json(L, -1, depth + 1, err, errlen);
      lua_pop(L, 1);
      if (v == NULL) {
        json_decref(arr);
        return NULL;
      }
      json_array_append_new(arr, v);
    }
    return arr;
  }
  json_t *obj = json_object();
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    char kbuf[64];
    const char *key;
    size_t klen;
    switch (lua_type(L, -2)) {
    case LUA_TSTRING:
      key = lua_tolstring(L, -2, &klen);
      break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, -2))
        snprintf(kbuf, sizeof kbuf, "%lld", (long long)lua_tointeger(L, -2));
      else
        snprintf(kbuf, sizeof kbuf, "%.14g", (double)lua_tonumber(L, -2));
      key = kbuf;
      klen = strlen(kbuf);
      break;
    default:
      snprintf(err, errlen, "cannot convert a table with a %s key to JSON",
               luaL_typename(L, -2));
      lua_pop(L, 2);
      json_decref(obj);
      return NULL;
    }
    json_t *v = lh_to_json(L, -1, depth + 1, err, errlen);
    if (v == NULL || json_object_setn_new(obj, key, klen, v) != 0) {
      if (v != NULL) /* else err is set already */
        snprintf(err, errlen, "cannot convert a key that is not valid "
                              "UTF-8 to JSON");
      lua_pop(L, 2);
      json_decref(obj);
      return NULL;
    }
    lua_pop(L, 1);
  }
  return obj;
}

/* ---- strict context tables ------------------------------------------------- */

static int lh_strict_index(lua_State *L) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &k_paths);
  lua_pushvalue(L, 1);
  lua_rawget(L, -2);
  const char *path = lua_tostring(L, -1);
  if (path == NULL)
    return 0;
  luaL_where(L, 1);
  if (lua_type(L, 2) == LUA_TSTRING)
    lua_pushfstring(L, "reference to %s.%s does not exist", path,
                    lua_tostring(L, 2));
  else if (lua_isinteger(L, 2))
    lua_pushfstring(L, "reference to %s[%I] does not exist", path,
                    (lua_Integer)lua_tointeger(L, 2));
  else
    lua_pushfstring(L, "reference to %s[(%s)] does not exist", path,
                    luaL_typename(L, 2));
  if (strcmp(path, "steps") == 0)
    lua_pushliteral(L, " (no such step, or it has not run)");
  else
    lua_pushliteral(L, "");
  lua_concat(L, 3);
  return lua_error(L);
}

static int lh_env_newindex(lua_State *L) {
  return luaL_error(L, "env is read-only");
}

static int lh_next(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 2);
  if (lua_next(L, 1))
    return 2;
  lua_pushnil(L);
  return 1;
}

static int lh_env_pairs(lua_State *L) {
  lua_getmetatable(L, 1);
  lua_pushcfunction(L, lh_next);
  lua_getfield(L, -2, "__index");
  lua_pushnil(L);
  return 3;
}

/* ---- base replacements and host API ---------------------------------------- */

static void lh_log(lua_State *L, const char *msg) {
  eng__lua *h = lh_get(L);
  if (h->cur != NULL && h->cur->job != NULL && h->cur->job->call != NULL)
    eng__call_logf(h->cur->job->call, ENG_LOG_INFO, "%s", msg);
  else
    fprintf(stderr, "lua: %s\n", msg);
}

static int lh_print(lua_State *L) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1)
      luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lh_log(L, lua_tostring(L, -1));
  return 0;
}

static int lh_engine_log(lua_State *L) {
  luaL_checkany(L, 1);
  lh_log(L, luaL_tolstring(L, 1, NULL));
  return 0;
}

/* engine.fail(msg): an error object whose text is exactly msg. */
static int lh_engine_fail(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "message");
  lua_rawgetp(L, LUA_REGISTRYINDEX, &k_fail_mt);
  lua_setmetatable(L, -2);
  return lua_error(L);
}

static int lh_fail_tostring(lua_State *L) {
  lua_getfield(L, 1, "message");
  return 1;
}

/* If the value at idx is an engine.fail error, push its text. */
static int lh_push_fail_text(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx))
    return 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &k_fail_mt);
  int is = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  if (!is)
    return 0;
  lua_getfield(L, idx, "message");
  return 1;
}

/* Message handler: engine.fail keeps its text; others get a traceback. */
static int lh_msgh(lua_State *L) {
  if (lh_push_fail_text(L, 1))
    return 1;
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* load(chunk [, chunkname [, mode [, env]]]): text chunks only. */
static int lh_load(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *name = luaL_optstring(L, 2, "=(load)");
  int has_env = !lua_isnone(L, 4);
  if (luaL_loadbufferx(L, s, len, name, "t") != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  if (has_env) {
    lua_pushvalue(L, 4);
    if (!lua_setupvalue(L, -2, 1))
      lua_pop(L, 1);
  }
  return 1;
}

/* setmetatable without finalizers: Lua runs __gc with hooks off, so a
 * looping finalizer would escape the budget. */
static int lh_setmetatable(lua_State *L) {
  int t = lua_type(L, 2);
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2, "nil or table");
  if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
    return luaL_error(L, "cannot change a protected metatable");
  if (t == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_error(L, "__gc metamethods are not allowed in the sandbox");
  }
  lua_settop(L, 2);
  lua_setmetatable(L, 1);
  return 1;
}

static int lh_success(lua_State *L) {
  eng__lua *h = lh_get(L);
  int ok = 1;
  for (size_t i = 0; i < h->n_deps; i++)
    if (strcmp(h->deps[i], "ok") != 0 && strcmp(h->deps[i], "skipped") != 0)
      ok = 0;
  lua_pushboolean(L, ok);
  return 1;
}

static int lh_failure(lua_State *L) {
  static const char *const bad[] = {"failed", "timed_out", "refused",
                                    "cancelled"};
  eng__lua *h = lh_get(L);
  int any = 0;
  for (size_t i = 0; i < h->n_deps; i++)
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
      if (strcmp(h->deps[i], bad[k]) == 0)
        any = 1;
  lua_pushboolean(L, any);
  return 1;
}

static int lh_always(lua_State *L) {
  lua_pushboolean(L, 1);
  return 1;
}

static int lh_json_encode_body(lua_State *L) {
  json_t *j = lua_touserdata(L, 1);
  size_t n = json_dumpb(j, NULL, 0,
                        JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, n);
  json_dumpb(j, p, n, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
  luaL_pushresultsize(&b, n);
  return 1;
}

static int lh_json_encode(lua_State *L) {
  char err[160];
  luaL_checkany(L, 1);
  lua_settop(L, 1);
  json_t *j = lh_to_json(L, 1, 0, err, sizeof err);
  if (j == NULL)
    return luaL_error(L, "json.encode: %s", err);
  lua_pushcfunction(L, lh_json_encode_body);
  lua_pushlightuserdata(L, j);
  int st = lua_pcall(L, 1, 1, 0);
  json_decref(j);
  if (st != LUA_OK)
    return lua_error(L);
  return 1;
}

static int lh_json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  json_error_t jerr;
  json_t *j = json_loadb(s, len, JSON_DECODE_ANY, &jerr);
  if (j == NULL)
    return luaL_error(L, "json.decode: %s (line %d, column %d)", jerr.text,
                      jerr.line, jerr.column);
  lh_push_json_steal(L, j);
  return 1;
}

/* require(name): RUNBOOK_DIR/lua/NAME.lua, then LIB_DIR/NAME.lua. */
static int lh_require_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  (void)ctx;
  /* stack: name, result */
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &k_loaded);
  lua_pushvalue(L, 1);
  lua_pushvalue(L, -3);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return 1;
}

static int lh_file_exists(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL)
    return 0;
  fclose(f);
  return 1;
}

static int lh_require(lua_State *L) {
  eng__lua *h = lh_get(L);
  const char *name = luaL_checkstring(L, 1);
  lua_settop(L, 1);
  size_t n = strlen(name);
  int ok = n > 0 && name[0] != '.' && name[n - 1] != '.' &&
           strstr(name, "..") == NULL;
  for (size_t i = 0; ok && i < n; i++) {
    unsigned char c = (unsigned char)name[i];
    ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
  }
  if (!ok)
    return luaL_error(L, "require: invalid module name '%s' (use dots, "
                         "e.g. require(\"engine.checks\"))", name);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &k_loaded);
  if (lua_getfield(L, -1, name) != LUA_TNIL)
    return 1;
  lua_pop(L, 2);
  const char *rel = luaL_gsub(L, name, ".", "/"); /* index 2 */
  const char *path = NULL;
  if (h->runbook_dir != NULL) {
    path = lua_pushfstring(L, "%s/lua/%s.lua", h->runbook_dir, rel);
    if (!lh_file_exists(path)) {
      lua_pop(L, 1);
      path = NULL;
    }
  }
  if (path == NULL && h->lib_dir != NULL) {
    path = lua_pushfstring(L, "%s/%s.lua", h->lib_dir, rel);
    if (!lh_file_exists(path)) {
      lua_pop(L, 1);
      path = NULL;
    }
  }
  if (path == NULL)
    return luaL_error(L, "module '%s' not found in %s/lua/%s.lua or %s/%s.lua",
                      name, h->runbook_dir ? h->runbook_dir : "(no runbook)",
                      rel, h->lib_dir ? h->lib_dir : "(no library)", rel);
  if (luaL_loadfilex(L, path, "t") != LUA_OK)
    return luaL_error(L, "require '%s': %s", name, lua_tostring(L, -1));
  lua_replace(L, 2);
  lua_settop(L, 2);
  lua_callk(L, 0, 1, 0, lh_require_k);
  return lh_require_k(L, LUA_OK, 0);
}

/* ---- plugin functions (yield to the loop) ----------------------------------- */

static void lh_job_resume(eng__lua_job *j);

/* Completion of a sub-call. Owns outputs. */
static void lh_sub_done(void *ud, int rc, json_t *outputs, const char *error) {
  eng__lua_job *j = ud;
  j->waiting = 0;
  if (error != NULL || rc != ENG_OK) {
    j->error = lh_strdup(error != NULL ? error : eng_strerror(rc));
  } else {
    json_t *r = outputs != NULL ? json_object_get(outputs, "result") : NULL;
    j->result = r != NULL ? json_incref(r) : NULL;
  }
  json_decref(outputs);
  if (j->h == NULL) { /* the state was destroyed meanwhile */
    json_decref(j->result);
    free(j->error);
    free(j);
    return;
  }
  if (j->yielded) {
    j->yielded = 0;
    lh_job_resume(j);
  }
  /* else it completed inside eng__call_start: lh_func_call picks it up */
}

static int lh_func_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  eng__lua_job *j = (eng__lua_job *)ctx;
  const eng_lua_func *f = lua_touserdata(L, lua_upvalueindex(1));
  if (j->error != NULL) {
    char *e = j->error;
    j->error = NULL;
    luaL_where(L, 1);
    lua_pushfstring(L, "%s.%s: %s", f->table, f->name, e);
    free(e);
    lua_concat(L, 2);
    return lua_error(L);
  }
  json_t *r = j->result;
  j->result = NULL;
  if (r == NULL) {
    lua_pushnil(L);
    return 1;
  }
  lh_push_json_steal(L, r);
  return 1;
}

static int lh_func_call(lua_State *L) {
  const eng_lua_func *f = lua_touserdata(L, lua_upvalueindex(1));
  eng__lua *h = lh_get(L);
  eng__lua_job *j = h->cur != NULL ? h->cur->job : NULL;
  if (j == NULL)
    return luaL_error(L, "%s.%s needs I/O: use it in a check hook or a lua "
                         "step, not in an expression", f->table, f->name);
  if (j->co != L || !lua_isyieldable(L))
    return luaL_error(L, "%s.%s cannot be called here (inside a metamethod "
                         "or a callback of a C function)", f->table, f->name);
  if (j->call == NULL)
    return luaL_error(L, "%s.%s needs I/O but this hook has no step call",
                      f->table, f->name);
  char err[160];
  int n = lua_gettop(L);
  json_t *args = json_array();
  for (int i = 1; i <= n; i++) {
    json_t *v = lh_to_json(L, i, 0, err, sizeof err);
    if (v == NULL) {
      json_decref(args);
      return luaL_error(L, "%s.%s: argument #%d: %s", f->table, f->name, i,
                        err);
    }
    json_array_append_new(args, v);
  }
  j->waiting = 1;
  eng_call *sub = eng__call_sub(j->call, lh_sub_done, j);
  int rc = eng__call_start(sub, f->start, args);
  json_decref(args);
  if (rc != ENG_OK) {
    j->waiting = 0;
    return luaL_error(L, "%s.%s: %s", f->table, f->name, eng_strerror(rc));
  }
  if (!j->waiting) /* completed synchronously */
    return lh_func_k(L, LUA_OK, (lua_KContext)j);
  return lua_yieldk(L, 0, (lua_KContext)j, lh_func_k);
}

struct lh_add_func {
  const eng_lua_func *f;
};

static int lh_add_func_body(lua_State *L) {
  struct lh_add_func *a = lua_touserdata(L, 1);
  if (lua_getglobal(L, a->f->table) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setglobal(L, a->f->table);
  }
  lua_pushlightuserdata(L, (void *)a->f);
  lua_pushcclosure(L, lh_func_call, 1);
  lua_setfield(L, -2, a->f->name);
  return 0;
}

/* f must outlive the state (plugin descriptors are never unloaded). */
void eng__lua_add_func(eng__lua *h, const eng_lua_func *f) {
  if (h == NULL || f == NULL || f->table == NULL || f->name == NULL ||
      f->start == NULL)
    return;
  struct lh_add_func a = {f};
  lh_protect(h, lh_add_func_body, &a, NULL, 0);
}

/* ---- http.get ----------------------------------------------------------------- */

typedef struct lh_http_req {
  CURL *easy;
  eng_call *call;
  char *body;
  size_t len, cap;
  int too_big;
} lh_http_req;

static size_t lh_http_write(char *p, size_t sz, size_t nm, void *ud) {
  lh_http_req *r = ud;
  size_t n = sz * nm;
  if (r->len + n > ENG_LUA_HTTP_MAX_BODY) {
    r->too_big = 1;
    return 0;
  }
  if (r->len + n + 1 > r->cap) {
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < r->len + n + 1)
      cap *= 2;
    char *nb = realloc(r->body, cap);
    if (nb == NULL)
      return 0;
    r->body = nb;
    r->cap = cap;
  }
  memcpy(r->body + r->len, p, n);
  r->len += n;
  return n;
}

static void lh_http_done(void *ud, int rc, long status, const char *error) {
  lh_http_req *r = ud;
  const eng_host *host = eng__host();
  eng_call *call = r->call;
  json_t *body = NULL;
  if (rc == ENG_OK) {
    body = json_stringn(r->body ? r->body : "", r->len);
    if (body == NULL) {
      host->fail(call, "http.get: the response body is not UTF-8 text");
      rc = ENG_ERR_PROTOCOL;
    }
  } else if (r->too_big) {
    host->fail(call, "http.get: the response body is larger than %zu bytes",
               ENG_LUA_HTTP_MAX_BODY);
  } else {
    host->fail(call, "http.get: %s", error ? error : eng_strerror(rc));
  }
  curl_easy_cleanup(r->easy);
  free(r->body);
  free(r);
  if (rc != ENG_OK) {
    host->done(call, rc);
    return;
  }
  json_t *obj = json_object();
  json_object_set_new(obj, "status", json_integer((json_int_t)status));
  json_object_set_new(obj, "body", body);
  host->output(call, "result", obj);
  host->done(call, ENG_OK);
}

static int lh_http_get_start(eng_call *call, const json_t *args) {
  const eng_host *host = eng__host();
  const char *url = json_string_value(json_array_get(args, 0));
  if (url == NULL) {
    host->fail(call, "http.get(url): url must be a string");
    return ENG_ERR_INVALID;
  }
  lh_http_req *r = calloc(1, sizeof *r);
  if (r == NULL)
    return ENG_ERR_NOMEM;
  r->call = call;
  r->easy = curl_easy_init();
  if (r->easy == NULL) {
    free(r);
    return ENG_ERR_NOMEM;
  }
  curl_easy_setopt(r->easy, CURLOPT_URL, url);
  curl_easy_setopt(r->easy, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, 30000L);
  curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
  curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, lh_http_write);
  curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
  eng_http *req = NULL;
  int rc = host->http_start(call, r->easy, lh_http_done, r, &req);
  if (rc != ENG_OK) {
    curl_easy_cleanup(r->easy);
    free(r);
  }
  return rc;
}

static const eng_lua_func lh_http_get_func = {
    .table = "http",
    .name = "get",
    .doc = "http.get(url) -> {status=..., body=...}",
    .start = lh_http_get_start,
};

/* ---- create / destroy -------------------------------------------------------- */

static void lh_open(lua_State *L, const char *name, lua_CFunction fn) {
  luaL_requiref(L, name, fn, 1);
  lua_pop(L, 1);
}

/* ---- pattern matching with bounded work ---------------------------------
 * Lua's pattern matcher runs in C, where neither the instruction budget
 * nor a step's timeout can stop it, and backtracking makes it polynomial
 * in the subject's length with the number of quantifiers ("a.-.-.-b" on a
 * long string runs for hours). Before a match, the worst case is
 * estimated: (subject length + 1) raised to the number of backtracking
 * items (`*`, `+`, `-`, `%b`), plus one for an unanchored search. Above
 * LH_PATTERN_WORK the call fails with a message instead of blocking the
 * engine. */
#define LH_PATTERN_WORK 1e8

/* The characters a pattern class matches, as a 256-bit set. */
typedef struct lh_cset {
  uint64_t w[4];
} lh_cset;

static void lh_cset_add(lh_cset *c, unsigned char ch) { c->w[ch >> 6] |= 1ull << (ch & 63); }

static void lh_cset_class(lh_cset *c, unsigned char k) {
  lh_cset t = {{0}};
  int (*is)(int) = NULL;
  switch (tolower(k)) {
  case 'a': is = isalpha; break;
  case 'd': is = isdigit; break;
  case 'l': is = islower; break;
  case 's': is = isspace; break;
  case 'u': is = isupper; break;
  case 'w': is = isalnum; break;
  case 'x': is = isxdigit; break;
  case 'p': is = ispunct; break;
  case 'c': is = iscntrl; break;
  case 'g': is = isgraph; break;
  default: lh_cset_add(c, k); return;
  }
  for (int ch = 0; ch < 256; ch++)
    if (is(ch)) lh_cset_add(&t, (unsigned char)ch);
  for (int i = 0; i < 4; i++) c->w[i] |= isupper(k) ? ~t.w[i] : t.w[i];
}

/* One item of the pattern at p[*i]: its set; *i moves past it. Returns 0
 * for a capture or anchor (no character), 2 for %b (always ambiguous). */
static int lh_item(const char *p, size_t n, size_t *i, lh_cset *c) {
  memset(c, 0, sizeof *c);
  char ch = p[*i];
  if (ch == '(' || ch == ')' || ch == '^' || (ch == '$' && *i + 1 == n)) {
    (*i)++;
    return 0;
  }
  if (ch == '.') {
    memset(c, 0xff, sizeof *c);
    (*i)++;
    return 1;
  }
  if (ch == '%' && *i + 1 < n) {
    char k = p[*i + 1];
    if (k == 'b') { *i += 4; memset(c, 0xff, sizeof *c); return 2; }
    if (k == 'f') { /* frontier: matches no character */
      *i += 2;
      while (*i < n && p[*i] != ']') *i += p[*i] == '%' ? 2 : 1;
      (*i)++;
      return 0;
    }
    lh_cset_class(c, (unsigned char)k);
    *i += 2;
    return 1;
  }
  if (ch == '[') {
    size_t j = *i + 1;
    bool neg = j < n && p[j] == '^';
    if (neg) j++;
    bool first = true;
    while (j < n && (first || p[j] != ']')) {
      first = false;
      if (p[j] == '%' && j + 1 < n) {
        lh_cset_class(c, (unsigned char)p[j + 1]);
        j += 2;
      } else if (j + 2 < n && p[j + 1] == '-' && p[j + 2] != ']') {
        for (int x = (unsigned char)p[j]; x <= (unsigned char)p[j + 2]; x++)
          lh_cset_add(c, (unsigned char)x);
        j += 3;
      } else {
        lh_cset_add(c, (unsigned char)p[j]);
        j++;
      }
    }
    if (neg)
      for (int w = 0; w < 4; w++) c->w[w] = ~c->w[w];
    *i = j + 1;
    return 1;
  }
  lh_cset_add(c, (unsigned char)ch);
  (*i)++;
  return 1;
}

/* How many quantified items (`*`, `+`, `-`) may backtrack against what
 * follows them; *any says whether there is a quantified item at all. */
static int lh_pattern_items(const char *p, size_t n, bool *any) {
  typedef struct { lh_cset set; int kind; char q; } item;
  item its[256];
  size_t m = 0;
  for (size_t i = 0; i < n && m < 256;) {
    item it;
    it.kind = lh_item(p, n, &i, &it.set);
    it.q = 0;
    if (it.kind && i < n && strchr("*+-?", p[i])) it.q = p[i++];
    if (it.kind) its[m++] = it;
  }
  int amb = 0;
  *any = false;
  for (size_t k = 0; k < m; k++) {
    if (its[k].kind == 2) { amb++; *any = true; continue; }
    if (!its[k].q || its[k].q == '?') continue;
    *any = true;
    lh_cset next = {{0}}; /* what may come right after: one or two items */
    for (size_t j = k + 1; j < m; j++) {
      for (int w = 0; w < 4; w++) next.w[w] |= its[j].set.w[w];
      if (its[j].q != '*' && its[j].q != '-' && its[j].q != '?') break;
    }
    for (int w = 0; w < 4; w++)
      if (its[k].set.w[w] & next.w[w]) { amb++; break; }
  }
  return amb;
}

static int lh_pattern_guard(lua_State *L) {
  size_t ls, lp;
  luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  lua_CFunction orig = lua_tocfunction(L, lua_upvalueindex(1));
  bool plain = lua_toboolean(L, 4) && lua_tointeger(L, lua_upvalueindex(2)) == 1;
  /* a loop of costly matches runs few instructions: check here too */
  lh_check_limits(L);
  if (!plain) {
    bool any;
    int items = lh_pattern_items(p, lp, &any);
    /* each ambiguous item multiplies by the length; a plain scan costs one
     * length per start, and an unanchored search tries every start */
    int q = (items > (any ? 1 : 0) ? items : (any ? 1 : 0)) +
            (lp > 0 && p[0] == '^' ? 0 : 1);
    double work = pow((double)ls + 1.0, (double)q);
    if (work > LH_PATTERN_WORK)
      return luaL_error(L,
                        "pattern '%s' on a string of %d bytes could take too "
                        "long (%d ambiguous repetitions); use a simpler pattern, "
                        "an anchor (^), plain find, or a shorter string",
                        lp > 60 ? "(long pattern)" : p, (int)ls, items);
  }
  return orig(L);
}

/* Put the guard in front of string.find/match/gmatch/gsub. */
static void lh_guard_patterns(lua_State *L) {
  static const char *const fns[] = {"find", "match", "gmatch", "gsub"};
  lua_getglobal(L, LUA_STRLIBNAME);
  for (size_t i = 0; i < sizeof fns / sizeof *fns; i++) {
    lua_getfield(L, -1, fns[i]);
    lua_pushinteger(L, i == 0 ? 1 : 0); /* find has a `plain` argument */
    lua_pushcclosure(L, lh_pattern_guard, 2);
    lua_setfield(L, -2, fns[i]);
  }
  lua_pop(L, 1);
}

static int lh_setup(lua_State *L) {
  lh_open(L, LUA_GNAME, luaopen_base);
  lh_open(L, LUA_STRLIBNAME, luaopen_string);
  lh_open(L, LUA_TABLIBNAME, luaopen_table);
  lh_open(L, LUA_MATHLIBNAME, luaopen_math);
  lh_open(L, LUA_UTF8LIBNAME, luaopen_utf8);

  static const char *const drop[] = {"dofile", "loadfile", "warn"};
  for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++) {
    lua_pushnil(L);
    lua_setglobal(L, drop[i]);
  }
  lua_getglobal(L, LUA_STRLIBNAME);
  lua_pushnil(L);
  lua_setfield(L, -2, "dump");
  lua_pop(L, 1);
  lh_guard_patterns(L);

  static const luaL_Reg globals[] = {
      {"load", lh_load},       {"print", lh_print},     {"require", lh_require},
      {"setmetatable", lh_setmetatable},
      {"success", lh_success}, {"failure", lh_failure}, {"always", lh_always},
      {NULL, NULL}};
  lua_pushglobaltable(L);
  luaL_setfuncs(L, globals, 0);
  lua_pop(L, 1);

  lua_newtable(L); /* paths: weak keys */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &k_paths);

  lua_createtable(L, 0, 2); /* the strict metatable */
  lua_pushcfunction(L, lh_strict_index);
  lua_setfield(L, -2, "__index");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &k_strict);

  lua_createtable(L, 0, 1); /* engine.fail errors */
  lua_pushcfunction(L, lh_fail_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &k_fail_mt);

  lua_createtable(L, 0, 1); /* coroutine envs read globals */
  lua_pushglobaltable(L);
  lua_setfield(L, -2, "__index");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &k_job_mt);

  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &k_cache);
  lua_newtable(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &k_loaded);

  lua_newtable(L); /* steps */
  lua_pushliteral(L, "steps");
  lh_set_path(L, -2, -1);
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &k_steps);
  lua_setglobal(L, "steps");

  static const luaL_Reg json_fns[] = {
      {"encode", lh_json_encode}, {"decode", lh_json_decode}, {NULL, NULL}};
  luaL_newlib(L, json_fns);
  lua_pushlightuserdata(L, ENG_LUA_NULL);
  lua_setfield(L, -2, "null");
  lua_setglobal(L, "json");

  static const luaL_Reg engine_fns[] = {
      {"log", lh_engine_log}, {"fail", lh_engine_fail}, {NULL, NULL}};
  luaL_newlib(L, engine_fns);
  lua_setglobal(L, "engine");

  struct lh_add_func a = {&lh_http_get_func};
  lua_pushcfunction(L, lh_add_func_body);
  lua_pushlightuserdata(L, &a);
  lua_call(L, 1, 0);
  return 0;
}

int eng__lua_create(const eng__lua_opts *o, eng__lua **out, char *err,
                    size_t errlen) {
  if (out == NULL)
    return ENG_ERR_INVALID;
  *out = NULL;
  eng__lua *h = calloc(1, sizeof *h);
  if (h == NULL)
    return ENG_ERR_NOMEM;
  h->mem_limit = o && o->mem_limit ? o->mem_limit : ENG_LUA_MEM_DEFAULT;
  uint64_t budget_ms = o && o->budget_ms ? o->budget_ms : ENG_LUA_BUDGET_DEFAULT;
  h->budget_ns = budget_ms * 1000000u;
  snprintf(h->budget_msg, sizeof h->budget_msg,
           "instruction budget exceeded (%g s of execution)",
           (double)budget_ms / 1000.0);
  h->runbook_dir = o && o->runbook_dir ? lh_strdup(o->runbook_dir) : NULL;
  h->lib_dir = o && o->lib_dir ? lh_strdup(o->lib_dir) : NULL;
  if (lh_wd_start() != 0) {
    lh_copy(err, errlen, "cannot start the Lua watchdog thread");
    eng__lua_destroy(h);
    return ENG_ERR_NOMEM;
  }
  h->watched = true;
  h->L = lua_newstate(lh_alloc, h);
  if (h->L == NULL) {
    lh_copy(err, errlen, "cannot create the Lua state: out of memory");
    eng__lua_destroy(h);
    return ENG_ERR_NOMEM;
  }
  char msg[256];
  if (lh_protect(h, lh_setup, NULL, msg, sizeof msg) != LUA_OK) {
    if (err != NULL && errlen > 0)
      snprintf(err, errlen, "cannot set up the Lua sandbox: %s", msg);
    eng__lua_destroy(h);
    return ENG_ERR_NOMEM;
  }
  lh_arm(h->L);
  *out = h;
  return ENG_OK;
}

static void lh_job_unlink(eng__lua_job *j) {
  eng__lua *h = j->h;
  if (j->prev != NULL)
    j->prev->next = j->next;
  else if (h != NULL && h->jobs == j)
    h->jobs = j->next;
  if (j->next != NULL)
    j->next->prev = j->prev;
  j->prev = j->next = NULL;
}

/* Pending coroutines end with ENG_ERR_CANCELLED (their cb runs here). A job
 * waiting for a sub-call stays allocated until the sub-call completes. */
void eng__lua_destroy(eng__lua *h) {
  if (h == NULL)
    return;
  while (h->jobs != NULL) {
    eng__lua_job *j = h->jobs;
    lh_job_unlink(j);
    j->h = NULL;
    eng__lua_done_cb cb = j->cb;
    void *ud = j->ud;
    if (!j->waiting) {
      json_decref(j->result);
      free(j->error);
      free(j);
    }
    cb(ud, ENG_ERR_CANCELLED, NULL, "cancelled: the Lua state was destroyed");
  }
  if (h->L != NULL)
    lua_close(h->L);
  for (size_t i = 0; i < h->n_deps; i++)
    free(h->deps[i]);
  free(h->deps);
  free(h->runbook_dir);
  free(h->lib_dir);
  if (h->watched)
    lh_wd_stop();
  free(h);
}

/* ---- compile -------------------------------------------------------------------- */

struct lh_compile {
  const char *src;
  size_t src_len;
  const char *key;
  size_t key_len;
  const char *chunkname;
  int ref;
  char *err;
  size_t errlen;
  int rc;
};

static int lh_compile_body(lua_State *L) {
  struct lh_compile *c = lua_touserdata(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &k_cache); /* 2 */
  lua_pushlstring(L, c->key, c->key_len);      /* 3 */
  lua_pushvalue(L, 3);
  if (lua_rawget(L, 2) == LUA_TNUMBER) {
    c->ref = (int)lua_tointeger(L, -1);
    c->rc = ENG_OK;
    return 0;
  }
  lua_pop(L, 1);
  int st = luaL_loadbufferx(L, c->src, c->src_len, c->chunkname, "t");
  if (st != LUA_OK) {
    lh_copy(c->err, c->errlen, lua_tostring(L, -1));
    c->rc = st == LUA_ERRMEM ? ENG_ERR_NOMEM : ENG_ERR_INVALID;
    return 0;
  }
  c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pushvalue(L, 3);
  lua_pushinteger(L, c->ref);
  lua_rawset(L, 2);
  c->rc = ENG_OK;
  return 0;
}

int eng__lua_compile(eng__lua *h, const char *code, int kind,
                     const char *file, int line, int *ref, char *err,
                     size_t errlen) {
  if (h == NULL || code == NULL || ref == NULL ||
      (kind != ENG__LUA_EXPR && kind != ENG__LUA_CHUNK)) {
    lh_copy(err, errlen, "invalid argument");
    return ENG_ERR_INVALID;
  }
  if (file == NULL)
    file = "?";
  if (line < 1)
    line = 1;
  size_t code_len = strlen(code), file_len = strlen(file);
  /* The chunk's name carries the line offset (lh_fix_lines). A comment in
   * an expression must not swallow the closing parenthesis. */
  int comment = kind == ENG__LUA_EXPR && strstr(code, "--") != NULL;
  size_t src_len = code_len + (kind == ENG__LUA_EXPR ? 9 + (comment ? 1 : 0) : 0);
  char *src = malloc(src_len + 1);
  char *chunkname = malloc(file_len + 32);
  char *key = malloc(code_len + file_len + 32);
  if (src == NULL || chunkname == NULL || key == NULL)
    abort();
  char *p = src;
  if (kind == ENG__LUA_EXPR) {
    memcpy(p, "return (", 8);
    p += 8;
  }
  memcpy(p, code, code_len);
  p += code_len;
  if (kind == ENG__LUA_EXPR) {
    if (comment)
      *p++ = '\n';
    *p++ = ')';
  }
  *p = '\0';
  if (line > 1)
    snprintf(chunkname, file_len + 32, "@%s:+%d", file, line - 1);
  else
    snprintf(chunkname, file_len + 32, "@%s", file);
  int klen = snprintf(key, code_len + file_len + 32, "%d:%d:%s", kind, line,
                      file);
  memcpy(key + klen + 1, code, code_len); /* key: "K:L:FILE\0CODE" */
  struct lh_compile c = {src,       (size_t)(p - src),
                         key,       (size_t)klen + 1 + code_len,
                         chunkname, LUA_NOREF,
                         err,       errlen,
                         ENG_ERR_NOMEM};
  char msg[256];
  if (lh_protect(h, lh_compile_body, &c, msg, sizeof msg) != LUA_OK) {
    lh_copy(err, errlen, msg);
    c.rc = ENG_ERR_NOMEM;
  }
  free(src);
  free(chunkname);
  free(key);
  if (c.rc == ENG_OK)
    *ref = c.ref;
  return c.rc;
}

/* ---- context ------------------------------------------------------------------- */

struct lh_set_global {
  const char *name;
  const json_t *v;
};

static int lh_set_global_body(lua_State *L) {
  struct lh_set_global *s = lua_touserdata(L, 1);
  if (strcmp(s->name, "env") == 0) {
    lua_newtable(L); /* the proxy */
    lua_createtable(L, 0, 4);
    if (s->v != NULL)
      lh_push_json(L, s->v, 0, 0);
    else
      lua_newtable(L);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, lh_env_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, lh_env_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
  } else {
    lua_pushstring(L, s->name);
    if (s->v != NULL)
      lh_push_json(L, s->v, -1, 0);
    else {
      lua_newtable(L);
      lh_set_path(L, -1, -2);
    }
    lua_remove(L, -2);
  }
  lua_setglobal(L, s->name);
  return 0;
}

void eng__lua_set_global(eng__lua *h, const char *name, const json_t *v) {
  if (h == NULL || name == NULL)
    return;
  struct lh_set_global s = {name, v};
  lh_protect(h, lh_set_global_body, &s, NULL, 0);
}

struct lh_set_step {
  const char *id, *status;
  const json_t *outputs;
};

static int lh_set_step_body(lua_State *L) {
  struct lh_set_step *s = lua_touserdata(L, 1);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &k_steps); /* 2 */
  lua_pushfstring(L, "steps.%s", s->id);       /* 3 */
  lua_createtable(L, 0, 2);                    /* 4 */
  lua_pushstring(L, s->status ? s->status : "pending");
  lua_setfield(L, 4, "status");
  lua_pushfstring(L, "steps.%s.outputs", s->id);
  if (s->outputs != NULL)
    lh_push_json(L, s->outputs, -1, 0);
  else {
    lua_newtable(L);
    lh_set_path(L, -1, -2);
  }
  lua_setfield(L, 4, "outputs");
  lua_pop(L, 1);
  lh_set_path(L, 4, 3);
  lua_pushvalue(L, 4);
  lua_setfield(L, 2, s->id);
  if (strchr(s->id, '-') != NULL) {
    luaL_gsub(L, s->id, "-", "_");
    lua_pushvalue(L, 4);
    lua_rawset(L, 2);
  }
  return 0;
}

void eng__lua_set_step(eng__lua *h, const char *id, const char *status,
                       const json_t *outputs) {
  if (h == NULL || id == NULL)
    return;
  struct lh_set_step s = {id, status, outputs};
  lh_protect(h, lh_set_step_body, &s, NULL, 0);
}

void eng__lua_set_deps(eng__lua *h, const char *const *statuses, size_t n) {
  if (h == NULL)
    return;
  for (size_t i = 0; i < h->n_deps; i++)
    free(h->deps[i]);
  free(h->deps);
  h->deps = NULL;
  h->n_deps = 0;
  if (n == 0 || statuses == NULL)
    return;
  h->deps = calloc(n, sizeof *h->deps);
  if (h->deps == NULL)
    abort();
  for (size_t i = 0; i < n; i++)
    h->deps[i] = lh_strdup(statuses[i] ? statuses[i] : "");
  h->n_deps = n;
}

/* ---- eval ------------------------------------------------------------------------ */

struct lh_eval {
  int ref;
  const json_t *locals;
  json_t *results;
  char *err;
  size_t errlen;
  int rc;
  int errmem;
};

static int lh_eval_body(lua_State *L) {
  struct lh_eval *e = lua_touserdata(L, 1);
  eng__lua *h = lh_get(L);
  lua_newtable(L); /* 2: saved globals */
  if (e->locals != NULL) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)e->locals, key, v) {
      lua_pushstring(L, key);
      if (lua_getglobal(L, key) == LUA_TNIL) {
        lua_pop(L, 1);
        lua_pushlightuserdata(L, ENG_LUA_NILMARK);
      }
      lua_rawset(L, 2);
      lua_pushstring(L, key);
      lh_push_json(L, v, -1, 0);
      lua_setglobal(L, key);
      lua_pop(L, 1);
    }
  }
  lua_pushcfunction(L, lh_msgh); /* 3 */
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->ref);
  eng__lua_clock clock = {0, uv_hrtime(), NULL};
  eng__lua_clock *prev = h->cur;
  h->cur = &clock;
  lh_watch w = lh_watch_start(h, L, &clock);
  int st = lua_pcall(L, 0, LUA_MULTRET, 3);
  lh_watch_end(w);
  lh_arm(L);
  h->cur = prev;
  int top = lua_gettop(L);
  if (st == LUA_OK) {
    e->results = json_array();
    for (int i = 4; i <= top; i++) {
      json_t *v = lh_to_json(L, i, 0, e->err, e->errlen);
      if (v == NULL) {
        json_decref(e->results);
        e->results = NULL;
        e->rc = ENG_ERR_FAILED;
        break;
      }
      json_array_append_new(e->results, v);
    }
    if (e->results != NULL)
      e->rc = ENG_OK;
  } else {
    lh_copy(e->err, e->errlen, lua_tostring(L, -1));
    e->errmem = st == LUA_ERRMEM;
    e->rc = ENG_ERR_FAILED;
  }
  lua_settop(L, 2);
  lua_pushnil(L);
  while (lua_next(L, 2) != 0) {
    if (lua_touserdata(L, -1) == ENG_LUA_NILMARK) {
      lua_pop(L, 1);
      lua_pushnil(L);
    }
    lua_setglobal(L, lua_tostring(L, -2));
  }
  return 0;
}

int eng__lua_eval(eng__lua *h, int ref, const json_t *locals,
                  json_t **results, char *err, size_t errlen) {
  if (results != NULL)
    *results = NULL;
  if (h == NULL || (locals != NULL && !json_is_object(locals))) {
    lh_copy(err, errlen, "invalid argument");
    return ENG_ERR_INVALID;
  }
  lua_State *L = h->L;
  if (lua_rawgeti(L, LUA_REGISTRYINDEX, ref) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    lh_copy(err, errlen, "invalid Lua reference");
    return ENG_ERR_INVALID;
  }
  lua_pop(L, 1);
  struct lh_eval e = {ref, locals, NULL, err, errlen, ENG_ERR_FAILED, 0};
  char msg[256];
  if (lh_protect(h, lh_eval_body, &e, msg, sizeof msg) != LUA_OK) {
    json_decref(e.results);
    lh_copy(err, errlen, msg);
    return ENG_ERR_NOMEM;
  }
  if (e.errmem)
    lua_gc(L, LUA_GCCOLLECT);
  if (e.rc != ENG_OK && err != NULL)
    lh_fix_lines(err);
  if (e.rc == ENG_OK && results != NULL)
    *results = e.results;
  else
    json_decref(e.results);
  return e.rc;
}

/* ---- run (coroutines) -------------------------------------------------------------- */

static int lh_dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  eng__buf *b = ud;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *nd = realloc(b->data, cap);
    if (nd == NULL)
      return 1;
    b->data = nd;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

struct lh_run_setup {
  eng__lua_job *job;
  int ref;
  const json_t *locals;
  int rc;
};

/* A fresh closure of the compiled function with its own _ENV: the locals,
 * then the globals. Writes stay in this env. */
static int lh_run_setup_body(lua_State *L) {
  struct lh_run_setup *s = lua_touserdata(L, 1);
  eng__lua_job *j = s->job;
  j->co = lua_newthread(L);
  j->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_newtable(L); /* 2: env */
  if (s->locals != NULL) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)s->locals, key, v) {
      lua_pushstring(L, key);
      lh_push_json(L, v, -1, 0);
      lua_setfield(L, 2, key);
      lua_pop(L, 1);
    }
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &k_job_mt);
  lua_setmetatable(L, 2);

  lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref); /* 3 */
  eng__buf b = {NULL, 0, 0};
  int st = lua_dump(L, lh_dump_writer, &b, 0);
  if (st == 0)
    st = luaL_loadbufferx(L, b.data, b.len, "=(hook)", "b");
  free(b.data);
  if (st != 0)
    return luaL_error(L, "cannot prepare the hook: %s",
                      lua_isstring(L, -1) ? lua_tostring(L, -1) : "dump");
  lua_pushvalue(L, 2);
  if (!lua_setupvalue(L, -2, 1))
    lua_pop(L, 1);
  lua_xmove(L, j->co, 1);
  s->rc = ENG_OK;
  return 0;
}

struct lh_finish {
  eng__lua_job *job;
  int status, nres;
  json_t *results;
  char *err;
};

/* Collect results or build the error text with the coroutine's traceback. */
static int lh_finish_body(lua_State *L) {
  struct lh_finish *f = lua_touserdata(L, 1);
  lua_State *co = f->job->co;
  if (f->status == LUA_OK) {
    char err[256];
    json_t *arr = json_array();
    int top = lua_gettop(co);
    for (int i = top - f->nres + 1; i <= top; i++) {
      json_t *v = lh_to_json(co, i, 0, err, sizeof err);
      if (v == NULL) {
        json_decref(arr);
        f->err = lh_strdup(err);
        return 0;
      }
      json_array_append_new(arr, v);
    }
    f->results = arr;
    return 0;
  }
  if (f->status == LUA_ERRMEM) {
    f->err = lh_strdup("not enough memory");
    return 0;
  }
  if (lh_push_fail_text(co, -1)) {
    f->err = lh_strdup(lua_tostring(co, -1));
    return 0;
  }
  const char *msg = lua_tostring(co, -1);
  if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(co, -1));
  luaL_traceback(L, co, msg, 0);
  f->err = lh_strdup(lua_tostring(L, -1));
  return 0;
}

static void lh_job_finish(eng__lua_job *j, int status, int nres) {
  eng__lua *h = j->h;
  struct lh_finish f = {j, status, nres, NULL, NULL};
  if (status == LUA_ERRMEM)
    lua_gc(h->L, LUA_GCCOLLECT);
  char msg[256];
  if (lh_protect(h, lh_finish_body, &f, msg, sizeof msg) != LUA_OK &&
      f.err == NULL && f.results == NULL)
    f.err = lh_strdup(msg);
  lh_job_unlink(j);
  luaL_unref(h->L, LUA_REGISTRYINDEX, j->co_ref);
  if (status == LUA_ERRMEM)
    lua_gc(h->L, LUA_GCCOLLECT);
  eng__lua_done_cb cb = j->cb;
  void *ud = j->ud;
  bool timed_out = j->timed_out && status != LUA_OK;
  json_decref(j->result);
  free(j->error);
  free(j);
  /* Nothing touches h or j after cb: it may destroy the state. */
  if (f.err != NULL) {
    json_decref(f.results);
    lh_fix_lines(f.err);
    cb(ud, timed_out ? ENG_ERR_TIMEOUT : ENG_ERR_FAILED, NULL, f.err);
    free(f.err);
  } else {
    cb(ud, ENG_OK, f.results, NULL);
  }
}

static void lh_job_resume(eng__lua_job *j) {
  eng__lua *h = j->h;
  eng__lua_clock *prev = h->cur;
  h->cur = &j->clock;
  j->clock.since = uv_hrtime();
  lh_watch w = lh_watch_start(h, j->co, &j->clock);
  int nres = 0;
  int st = lua_resume(j->co, NULL, 0, &nres);
  lh_watch_end(w);
  j->clock.used += uv_hrtime() - j->clock.since;
  h->cur = prev;
  if (st == LUA_YIELD) {
    lua_pop(j->co, nres);
    j->yielded = 1;
    return;
  }
  lh_job_finish(j, st, nres);
}

int eng__lua_run(eng__lua *h, int ref, const json_t *locals, eng_call *call,
                 eng__lua_done_cb cb, void *ud) {
  if (h == NULL || cb == NULL || (locals != NULL && !json_is_object(locals)))
    return ENG_ERR_INVALID;
  lua_State *L = h->L;
  if (lua_rawgeti(L, LUA_REGISTRYINDEX, ref) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    return ENG_ERR_INVALID;
  }
  lua_pop(L, 1);
  eng__lua_job *j = calloc(1, sizeof *j);
  if (j == NULL)
    return ENG_ERR_NOMEM;
  j->h = h;
  j->co_ref = LUA_NOREF;
  j->call = call;
  j->cb = cb;
  j->ud = ud;
  j->clock.job = j;
  struct lh_run_setup s = {j, ref, locals, ENG_ERR_NOMEM};
  if (lh_protect(h, lh_run_setup_body, &s, NULL, 0) != LUA_OK ||
      s.rc != ENG_OK) {
    luaL_unref(L, LUA_REGISTRYINDEX, j->co_ref);
    free(j);
    return ENG_ERR_NOMEM;
  }
  j->next = h->jobs;
  if (h->jobs != NULL)
    h->jobs->prev = j;
  h->jobs = j;
  lh_job_resume(j); /* may run cb (no yield) */
  return ENG_OK;
}
