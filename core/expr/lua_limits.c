/*
 * lua_limits.c - what keeps a hook from running away: the memory cap (the
 * state's allocator), the execution budget of one evaluation and its
 * step's deadline (a count hook, and a watchdog thread that makes the hook
 * run at once when a limit falls due or a signal arrives); the check the
 * sandbox's pattern matcher (lua_match.c) makes as it works.
 */
#include "expr/lua_int.h"

#include <pthread.h>
#include <signal.h>

/* ---- allocator and budget ------------------------------------------------- */

void *eng__lh_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
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

void eng__lh_arm(lua_State *L) {
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
 * deadline or used its budget; called by the hook and, every few thousand
 * steps, by the pattern matcher (lua_match.c). */
static void lh_check_limits(lua_State *L) {
  eng__lua *h = eng__lh_get(L);
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
int eng__lh_wd_start(void) {
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

void eng__lh_wd_stop(void) {
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

/* L starts running the evaluation c: watch it until eng__lh_watch_end(). */
lh_watch eng__lh_watch_start(eng__lua *h, lua_State *L,
                               const eng__lua_clock *c) {
  uint64_t due = c->since + (h->budget_ns > c->used ? h->budget_ns - c->used : 0);
  uint64_t deadline = lh_deadline(c);
  if (deadline != 0 && deadline < due)
    due = deadline;
  eng__lh_arm(L);
  uv_mutex_lock(&lh_wd.mu);
  lh_watch prev = {lh_wd.L, lh_wd.due};
  lh_wd.L = L;
  lh_wd.due = due != 0 ? due : 1;
  lh_running = L;
  uv_cond_signal(&lh_wd.cv);
  uv_mutex_unlock(&lh_wd.mu);
  return prev;
}

void eng__lh_watch_end(lh_watch prev) {
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

/* ---- pattern matching ------------------------------------------------------
 * liblua's matcher runs in C, out of the hook's reach, and backtracks
 * exponentially: the sandbox's string.find/match/gmatch/gsub are
 * lua_match.c's, which calls this check every few thousand steps. */
static int lh_match_check(lua_State *L) {
  lh_check_limits(L);
  return 0;
}

void eng__lh_guard_patterns(lua_State *L) {
  eng__lh_open_match(L, lh_match_check);
}
