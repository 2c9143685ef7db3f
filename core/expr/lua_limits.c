/*
 * lua_limits.c - what keeps a hook from running away: the memory cap (the
 * state's allocator), the execution budget of one evaluation and its
 * step's deadline (a count hook, and a watchdog thread that makes the hook
 * run at once when a limit falls due or a signal arrives), and pattern
 * matching with bounded work.
 */
#include "expr/lua_int.h"

#include <ctype.h>
#include <math.h>
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
 * deadline or used its budget; called by the hook and before work done in
 * C (pattern matching). */
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
void eng__lh_guard_patterns(lua_State *L) {
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
