/*
 * lua_match.c - the sandbox's string.find, string.match, string.gmatch and
 * string.gsub (and so ("x"):find...): Lua 5.4's patterns (reference
 * manual §6.4.1) matched by a backtracking matcher of our own that counts
 * its work.
 *
 * Why not liblua's: its matcher runs in C, where neither the count hook
 * nor the watchdog can stop it, and backtracking makes it exponential in
 * the number of repetitions ("a?" x30 .. "a" x30 on "a" x30 runs for
 * minutes). This one counts steps (one call of the matcher, one character
 * taken by a repetition, one byte compared by a back-reference, %b or a
 * plain search, one byte of a replacement) and every LM_CHECK_STEPS steps
 * calls the `check` function it was opened with; the sandbox's check
 * (lua_limits.c) raises when the evaluation was interrupted, passed its
 * step's deadline or used its budget. Nothing here allocates C memory (the
 * state lives on the C stack or in a Lua userdata), so that longjmp leaves
 * nothing behind.
 *
 * Results are liblua's for every pattern: the same captures and positions,
 * the same replacement rules, the same error messages, and the same
 * recursion limit (LM_MAX_DEPTH: "pattern too complex"), so that a script
 * behaves the same in the sandbox and in a plain `lua`. The unit test
 * (tests/unit/test_lua_host.c) and the fuzz harness
 * (tests/fuzz/fuzz_lua_pattern.c) run both on the same inputs.
 *
 * Subjects and patterns are Lua strings, which always have a '\0' after
 * their last byte: like liblua, the matcher reads that byte as "no
 * character" (the end of the pattern, the frontier at the subject's end).
 *
 * This file calls nothing else in expr/: the check is handed in.
 */
#include "expr/lua_int.h"

#include <ctype.h>
#include <stddef.h>

#ifndef LUA_MAXCAPTURES
#define LUA_MAXCAPTURES 32 /* liblua's default (lstrlib.c) */
#endif

/* Deepest nesting of the matcher: liblua's MAXCCALLS, so the same patterns
 * fail with "pattern too complex" (and the C stack stays small). */
#define LM_MAX_DEPTH 200
/* Steps between two checks of the limits: a step costs nanoseconds and a
 * check one clock read, so this keeps the check under 1% of the work and
 * its period well under a millisecond. */
#define LM_CHECK_STEPS 4096

#define LM_ESC '%'
/* A pattern without these is searched for as plain text by find. */
#define LM_SPECIALS "^$*+?.([%-"

/* capture lengths that are not lengths */
#define LM_CAP_OPEN (-1)     /* opened, not closed yet */
#define LM_CAP_POSITION (-2) /* a position capture () */

typedef struct lm_state {
  const char *s0;    /* the subject */
  const char *s_end; /* its end (a '\0') */
  const char *p_end; /* the pattern's end (a '\0') */
  lua_State *L;
  lua_CFunction check; /* raises when the evaluation must stop */
  size_t left;         /* steps until the next check */
  int depth;           /* nesting left before "pattern too complex" */
  int level;           /* captures opened so far */
  struct {
    const char *at;
    ptrdiff_t len; /* or LM_CAP_OPEN, LM_CAP_POSITION */
  } cap[LUA_MAXCAPTURES];
} lm_state;

static const char *lm_match(lm_state *m, const char *s, const char *p);

/* ---- work ------------------------------------------------------------------ */

/* n more steps done: check the limits when a period is over (may raise). */
static void lm_work(lm_state *m, size_t n) {
  if (n < m->left) {
    m->left -= n;
    return;
  }
  m->left = LM_CHECK_STEPS;
  (void)m->check(m->L);
}

static void lm_prepare(lm_state *m, lua_State *L, lua_CFunction check,
                       const char *s, size_t ls, const char *p, size_t lp) {
  m->s0 = s;
  m->s_end = s + ls;
  m->p_end = p + lp;
  m->L = L;
  m->check = check;
  m->left = LM_CHECK_STEPS;
  m->depth = LM_MAX_DEPTH;
  m->level = 0;
}

/* Before trying a new start position. */
static void lm_restart(lm_state *m) {
  m->level = 0;
  m->depth = LM_MAX_DEPTH;
}

/* ---- single characters ------------------------------------------------------- */

/* Whether c is in the class %k (upper case: the complement); any other k
 * stands for itself (%. is a dot). %z (the '\0' byte) is no longer in the
 * manual but liblua 5.4 still matches it so. */
static int lm_class(int c, int k) {
  int in;
  switch (tolower(k)) {
  case 'a': in = isalpha(c); break;
  case 'c': in = iscntrl(c); break;
  case 'd': in = isdigit(c); break;
  case 'g': in = isgraph(c); break;
  case 'l': in = islower(c); break;
  case 'p': in = ispunct(c); break;
  case 's': in = isspace(c); break;
  case 'u': in = isupper(c); break;
  case 'w': in = isalnum(c); break;
  case 'x': in = isxdigit(c); break;
  case 'z': in = c == '\0'; break; /* deprecated in the manual; liblua has it */
  default: return k == c;
  }
  return isupper(k) ? !in : in != 0;
}

/* Whether c is in the set [...] from p (its '[') to last (its ']'). */
static int lm_set(int c, const char *p, const char *last) {
  int yes = 1;
  if (p[1] == '^') {
    yes = 0;
    p++;
  }
  while (++p < last) {
    if (*p == LM_ESC) {
      p++;
      if (lm_class(c, (unsigned char)*p))
        return yes;
    } else if (p[1] == '-' && p + 2 < last) { /* a range */
      if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2])
        return yes;
      p += 2;
    } else if ((unsigned char)*p == c) {
      return yes;
    }
  }
  return !yes;
}

/* The end of the single-character class at p (where a suffix would be). */
static const char *lm_class_end(lm_state *m, const char *p) {
  char c = *p++;
  if (c == LM_ESC) {
    if (p == m->p_end)
      luaL_error(m->L, "malformed pattern (ends with '%%')");
    return p + 1;
  }
  if (c == '[') {
    if (*p == '^')
      p++;
    do { /* the first ']' is a member, not the end */
      if (p == m->p_end)
        luaL_error(m->L, "malformed pattern (missing ']')");
      if (*p++ == LM_ESC && p < m->p_end)
        p++; /* %] is a member too */
    } while (*p != ']');
    return p + 1;
  }
  return p;
}

/* Whether the character at s matches the class from p to ep. */
static int lm_one(const lm_state *m, const char *s, const char *p,
                  const char *ep) {
  if (s >= m->s_end)
    return 0;
  int c = (unsigned char)*s;
  switch (*p) {
  case '.': return 1;
  case LM_ESC: return lm_class(c, (unsigned char)p[1]);
  case '[': return lm_set(c, p, ep - 1);
  default: return (unsigned char)*p == c;
  }
}

/* ---- items that are not single characters ------------------------------------ */

/* %bxy at s (p at x): past the balanced string, or NULL. */
static const char *lm_balance(lm_state *m, const char *s, const char *p) {
  if (p >= m->p_end - 1)
    luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
  if (s >= m->s_end || *s != *p)
    return NULL;
  const char *from = s;
  int open = 1;
  while (++s < m->s_end) {
    if (*s == p[1]) {
      if (--open == 0) {
        lm_work(m, (size_t)(s - from));
        return s + 1;
      }
    } else if (*s == p[0]) {
      open++;
    }
  }
  lm_work(m, (size_t)(s - from));
  return NULL;
}

/* %f[set] at s (p at '['): the pattern after it, or NULL. */
static const char *lm_frontier(lm_state *m, const char *s, const char *p) {
  if (*p != '[')
    luaL_error(m->L, "missing '[' after '%%f' in pattern");
  const char *ep = lm_class_end(m, p);
  int before = s == m->s0 ? '\0' : (unsigned char)s[-1];
  int here = (unsigned char)*s; /* the '\0' after the subject at its end */
  if (!lm_set(before, p, ep - 1) && lm_set(here, p, ep - 1))
    return ep;
  return NULL;
}

/* %1-%9 at s: past the copy of that capture, or NULL. */
static const char *lm_backref(lm_state *m, const char *s, int digit) {
  int i = digit - '1';
  if (i < 0 || i >= m->level || m->cap[i].len == LM_CAP_OPEN)
    luaL_error(m->L, "invalid capture index %%%d", i + 1);
  size_t len = (size_t)m->cap[i].len; /* a position: too long to match */
  if ((size_t)(m->s_end - s) < len)
    return NULL;
  lm_work(m, len);
  return memcmp(m->cap[i].at, s, len) == 0 ? s + len : NULL;
}

/* A capture opens at s (what: LM_CAP_OPEN or LM_CAP_POSITION); p follows
 * it. */
static const char *lm_open(lm_state *m, const char *s, const char *p,
                           ptrdiff_t what) {
  if (m->level >= LUA_MAXCAPTURES)
    luaL_error(m->L, "too many captures");
  m->cap[m->level].at = s;
  m->cap[m->level].len = what;
  m->level++;
  const char *res = lm_match(m, s, p);
  if (res == NULL)
    m->level--;
  return res;
}

/* The innermost open capture closes at s; p follows it. */
static const char *lm_close(lm_state *m, const char *s, const char *p) {
  int i = m->level - 1;
  while (i >= 0 && m->cap[i].len != LM_CAP_OPEN)
    i--;
  if (i < 0)
    luaL_error(m->L, "invalid pattern capture");
  m->cap[i].len = s - m->cap[i].at;
  const char *res = lm_match(m, s, p);
  if (res == NULL)
    m->cap[i].len = LM_CAP_OPEN;
  return res;
}

/* ---- repetitions ------------------------------------------------------------- */

/* `*` (and `+` after its first character): as many as possible, then one
 * fewer at a time until the rest matches. */
static const char *lm_most(lm_state *m, const char *s, const char *p,
                           const char *ep) {
  ptrdiff_t n = 0;
  while (lm_one(m, s + n, p, ep))
    n++;
  lm_work(m, (size_t)n);
  for (; n >= 0; n--) {
    const char *res = lm_match(m, s + n, ep + 1);
    if (res != NULL)
      return res;
  }
  return NULL;
}

/* `-`: as few as possible, one more at a time until the rest matches. */
static const char *lm_fewest(lm_state *m, const char *s, const char *p,
                             const char *ep) {
  for (;;) {
    const char *res = lm_match(m, s, ep + 1);
    if (res != NULL)
      return res;
    if (!lm_one(m, s, p, ep))
      return NULL;
    s++;
  }
}

/* A single-character class at p (ending at ep) and its suffix, at s. Sets
 * *next to the pattern to go on with at the returned position, or NULL
 * when the returned position (or NULL) is the whole answer. */
static const char *lm_item(lm_state *m, const char *s, const char *p,
                           const char *ep, const char **next) {
  *next = NULL;
  if (!lm_one(m, s, p, ep)) {
    if (*ep == '*' || *ep == '?' || *ep == '-') { /* may match nothing */
      *next = ep + 1;
      return s;
    }
    return NULL;
  }
  switch (*ep) {
  case '?': {
    const char *res = lm_match(m, s + 1, ep + 1);
    if (res != NULL)
      return res;
    *next = ep + 1;
    return s;
  }
  case '+': return lm_most(m, s + 1, p, ep);
  case '*': return lm_most(m, s, p, ep);
  case '-': return lm_fewest(m, s, p, ep);
  default:
    *next = ep;
    return s + 1;
  }
}

/* ---- the matcher --------------------------------------------------------------- */

/* One item of the pattern at p against s: the position reached, and in
 * *next the rest of the pattern to match from there (NULL: done, the
 * position is the answer). */
static const char *lm_advance(lm_state *m, const char *s, const char *p,
                           const char **next) {
  *next = NULL;
  switch (*p) {
  case '(':
    if (p[1] == ')')
      return lm_open(m, s, p + 2, LM_CAP_POSITION);
    return lm_open(m, s, p + 1, LM_CAP_OPEN);
  case ')':
    return lm_close(m, s, p + 1);
  case '$':
    if (p + 1 == m->p_end) /* an anchor only at the very end */
      return s == m->s_end ? s : NULL;
    break;
  case LM_ESC:
    switch (p[1]) {
    case 'b':
      s = lm_balance(m, s, p + 2);
      *next = p + 4;
      return s;
    case 'f':
      *next = lm_frontier(m, s, p + 2);
      return *next != NULL ? s : NULL;
    case '0': case '1': case '2': case '3': case '4':
    case '5': case '6': case '7': case '8': case '9':
      s = lm_backref(m, s, (unsigned char)p[1]);
      *next = p + 2;
      return s;
    default:
      break;
    }
    break;
  default:
    break;
  }
  return lm_item(m, s, p, lm_class_end(m, p), next);
}

/* Where the pattern at p matches from s to, or NULL. */
static const char *lm_match(lm_state *m, const char *s, const char *p) {
  if (m->depth-- == 0)
    luaL_error(m->L, "pattern too complex");
  lm_work(m, 1);
  const char *next = p;
  while (s != NULL && next != NULL && next != m->p_end)
    s = lm_advance(m, s, next, &next);
  m->depth++;
  return s;
}

/* ---- captures to Lua -------------------------------------------------------------- */

/* Capture i of the match s..e: its text in *at and its length, or
 * LM_CAP_POSITION after pushing the position. Without captures, capture 0
 * is the whole match. */
static ptrdiff_t lm_capture(lm_state *m, int i, const char *s, const char *e,
                            const char **at) {
  if (i >= m->level) {
    if (i != 0)
      luaL_error(m->L, "invalid capture index %%%d", i + 1);
    *at = s;
    return e - s;
  }
  *at = m->cap[i].at;
  if (m->cap[i].len == LM_CAP_OPEN)
    luaL_error(m->L, "unfinished capture");
  if (m->cap[i].len == LM_CAP_POSITION)
    lua_pushinteger(m->L, (m->cap[i].at - m->s0) + 1);
  return m->cap[i].len;
}

static void lm_push_capture(lm_state *m, int i, const char *s, const char *e) {
  const char *at;
  ptrdiff_t len = lm_capture(m, i, s, e, &at);
  if (len != LM_CAP_POSITION)
    lua_pushlstring(m->L, at, (size_t)len);
}

/* Push the captures (the whole match s..e when there are none and s is
 * given); how many. */
static int lm_push_captures(lm_state *m, const char *s, const char *e) {
  int n = m->level == 0 && s != NULL ? 1 : m->level;
  luaL_checkstack(m->L, n, "too many captures");
  for (int i = 0; i < n; i++)
    lm_push_capture(m, i, s, e);
  return n;
}

/* ---- the library functions ------------------------------------------------------- */

/* A 1-based start that may be negative, as an offset + 1 (may pass the
 * end). */
static size_t lm_start(lua_Integer pos, size_t len) {
  if (pos > 0)
    return (size_t)pos;
  if (pos == 0 || pos < -(lua_Integer)len)
    return 1;
  return len + (size_t)pos + 1;
}

static int lm_plain_text(const char *p, size_t lp) {
  for (size_t i = 0; i < lp; i++)
    if (p[i] != '\0' && strchr(LM_SPECIALS, p[i]) != NULL)
      return 0;
  return 1;
}

/* The first n (length ln) in h (length lh), or NULL. */
static const char *lm_search(lm_state *m, const char *h, size_t lh,
                             const char *n, size_t ln) {
  if (ln == 0)
    return h;
  if (ln > lh)
    return NULL;
  const char *from = h, *last = h + (lh - ln);
  while (from <= last) {
    const char *at = memchr(from, n[0], (size_t)(last - from) + 1);
    if (at == NULL)
      return NULL;
    lm_work(m, (size_t)(at - from) + ln);
    if (memcmp(at + 1, n + 1, ln - 1) == 0)
      return at;
    from = at + 1;
  }
  return NULL;
}

static lua_CFunction lm_check_of(lua_State *L) {
  return lua_tocfunction(L, lua_upvalueindex(1));
}

static int lm_find_or_match(lua_State *L, int find) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = lm_start(luaL_optinteger(L, 3, 1), ls) - 1;
  lm_state m;
  if (init > ls) { /* starts after the end: nothing there */
    luaL_pushfail(L);
    return 1;
  }
  if (find && (lua_toboolean(L, 4) || lm_plain_text(p, lp))) {
    lm_prepare(&m, L, lm_check_of(L), s, ls, p, lp);
    const char *at = lm_search(&m, s + init, ls - init, p, lp);
    if (at != NULL) {
      lua_pushinteger(L, (at - s) + 1);
      lua_pushinteger(L, (lua_Integer)((size_t)(at - s) + lp));
      return 2;
    }
    luaL_pushfail(L);
    return 1;
  }
  int anchor = *p == '^';
  if (anchor) {
    p++;
    lp--;
  }
  lm_prepare(&m, L, lm_check_of(L), s, ls, p, lp);
  const char *from = s + init;
  do {
    lm_restart(&m);
    const char *e = lm_match(&m, from, p);
    if (e != NULL) {
      if (!find)
        return lm_push_captures(&m, from, e);
      lua_pushinteger(L, (from - s) + 1);
      lua_pushinteger(L, e - s);
      return lm_push_captures(&m, NULL, NULL) + 2;
    }
  } while (from++ < m.s_end && !anchor);
  luaL_pushfail(L);
  return 1;
}

static int lm_find(lua_State *L) { return lm_find_or_match(L, 1); }

static int lm_match_fn(lua_State *L) { return lm_find_or_match(L, 0); }

/* gmatch's iterator state (a userdata upvalue of the iterator, with the
 * subject and the pattern that keep its pointers valid). */
typedef struct lm_iter {
  const char *from; /* where the next search starts */
  const char *p;
  const char *last; /* the end of the last match: no empty match there */
  lm_state m;
} lm_iter;

static int lm_gmatch_next(lua_State *L) {
  lm_iter *it = lua_touserdata(L, lua_upvalueindex(3));
  it->m.L = L;
  for (const char *from = it->from; from <= it->m.s_end; from++) {
    lm_restart(&it->m);
    const char *e = lm_match(&it->m, from, it->p);
    if (e != NULL && e != it->last) {
      it->from = it->last = e;
      return lm_push_captures(&it->m, from, e);
    }
  }
  return 0;
}

static int lm_gmatch(lua_State *L) {
  size_t ls, lp;
  const char *s = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  size_t init = lm_start(luaL_optinteger(L, 3, 1), ls) - 1;
  lua_CFunction check = lm_check_of(L);
  lua_settop(L, 2); /* the strings stay with the iterator */
  lm_iter *it = lua_newuserdatauv(L, sizeof *it, 0);
  if (init > ls)
    init = ls + 1; /* past the end, and no further */
  lm_prepare(&it->m, L, check, s, ls, p, lp);
  it->from = s + init;
  it->p = p;
  it->last = NULL;
  lua_pushcclosure(L, lm_gmatch_next, 3);
  return 1;
}

/* Append the replacement string (argument 3) for the match s..e: %0 the
 * match, %1-%9 a capture, %% a '%'. */
static void lm_add_string(lm_state *m, luaL_Buffer *b, const char *s,
                          const char *e) {
  lua_State *L = m->L;
  size_t l;
  const char *r = lua_tolstring(L, 3, &l);
  lm_work(m, l);
  const char *esc;
  while ((esc = memchr(r, LM_ESC, l)) != NULL) {
    luaL_addlstring(b, r, (size_t)(esc - r));
    esc++; /* the '\0' after the string when it ends with '%' */
    if (*esc == LM_ESC) {
      luaL_addchar(b, LM_ESC);
    } else if (*esc == '0') {
      luaL_addlstring(b, s, (size_t)(e - s));
    } else if (isdigit((unsigned char)*esc)) {
      const char *at;
      ptrdiff_t len = lm_capture(m, *esc - '1', s, e, &at);
      if (len == LM_CAP_POSITION)
        luaL_addvalue(b); /* the position lm_capture pushed */
      else
        luaL_addlstring(b, at, (size_t)len);
    } else {
      luaL_error(L, "invalid use of '%c' in replacement string", LM_ESC);
    }
    l -= (size_t)(esc + 1 - r);
    r = esc + 1;
  }
  luaL_addlstring(b, r, l);
}

/* Append the replacement for the match s..e (tr: the type of argument 3);
 * whether it changed anything (false or nil from a table or a function
 * keeps the match). */
static int lm_add_value(lm_state *m, luaL_Buffer *b, const char *s,
                        const char *e, int tr) {
  lua_State *L = m->L;
  if (tr == LUA_TFUNCTION) {
    lua_pushvalue(L, 3);
    int n = lm_push_captures(m, s, e);
    lua_call(L, n, 1);
  } else if (tr == LUA_TTABLE) {
    lm_push_capture(m, 0, s, e);
    lua_gettable(L, 3);
  } else { /* a string or a number */
    lm_add_string(m, b, s, e);
    return 1;
  }
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    luaL_addlstring(b, s, (size_t)(e - s));
    return 0;
  }
  if (!lua_isstring(L, -1))
    return luaL_error(L, "invalid replacement value (a %s)",
                      luaL_typename(L, -1));
  luaL_addvalue(b);
  return 1;
}

static int lm_gsub(lua_State *L) {
  size_t ls, lp;
  const char *src = luaL_checklstring(L, 1, &ls);
  const char *p = luaL_checklstring(L, 2, &lp);
  int tr = lua_type(L, 3);
  lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
  luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING ||
                          tr == LUA_TFUNCTION || tr == LUA_TTABLE,
                   3, "string/function/table");
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int anchor = *p == '^';
  if (anchor) {
    p++;
    lp--;
  }
  lm_state m;
  lm_prepare(&m, L, lm_check_of(L), src, ls, p, lp);
  const char *last = NULL; /* the end of the last match */
  lua_Integer n = 0;
  int changed = 0;
  while (n < max) {
    lm_restart(&m);
    const char *e = lm_match(&m, src, p);
    if (e != NULL && e != last) {
      n++;
      changed = lm_add_value(&m, &b, src, e, tr) | changed;
      src = last = e;
    } else if (src < m.s_end) {
      luaL_addchar(&b, *src++);
    } else {
      break;
    }
    if (anchor)
      break;
  }
  if (!changed) {
    lua_pushvalue(L, 1);
  } else {
    luaL_addlstring(&b, src, (size_t)(m.s_end - src));
    luaL_pushresult(&b);
  }
  lua_pushinteger(L, n);
  return 2;
}

/* Replace string.find/match/gmatch/gsub (the string table, so the methods
 * of strings too) by ours; check (called every LM_CHECK_STEPS steps) must
 * return normally or raise. */
void eng__lh_open_match(lua_State *L, lua_CFunction check) {
  static const luaL_Reg fns[] = {{"find", lm_find},
                                 {"match", lm_match_fn},
                                 {"gmatch", lm_gmatch},
                                 {"gsub", lm_gsub},
                                 {NULL, NULL}};
  lua_getglobal(L, LUA_STRLIBNAME);
  lua_pushcfunction(L, check);
  luaL_setfuncs(L, fns, 1);
  lua_pop(L, 1);
}
