/*
 * lua_util.c - the bottom of the Lua sandbox's files (lua_int.h): the
 * registry keys, the state's eng__lua, error text with runbook line
 * numbers, protected calls, engine.fail's error objects.
 */
#include "expr/lua_int.h"

#include <ctype.h>

const struct eng__lh_keys eng__lh_k;

eng__lua *eng__lh_get(lua_State *L) {
  void *ud = NULL;
  lua_getallocf(L, &ud);
  return ud;
}

char *eng__lh_strdup(const char *s) {
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
void eng__lh_fix_lines(char *msg) {
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

void eng__lh_copy(char *dst, size_t n, const char *src) {
  if (dst != NULL && n > 0) {
    snprintf(dst, n, "%s", src != NULL ? src : "unknown error");
    eng__lh_fix_lines(dst);
  }
}

/* Run fn(ud) protected on the main thread; the error text goes to err. */
int eng__lh_protect(eng__lua *h, lua_CFunction fn, void *ud, char *err,
                      size_t errlen) {
  lua_State *L = h->L;
  int top = lua_gettop(L);
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, ud);
  int st = lua_pcall(L, 1, 0, 0);
  if (st != LUA_OK) {
    eng__lh_copy(err, errlen, lua_tostring(L, -1));
    if (st == LUA_ERRMEM)
      lua_gc(L, LUA_GCCOLLECT);
  }
  lua_settop(L, top);
  return st;
}

/* If the value at idx is an engine.fail error, push its text. */
int eng__lh_push_fail_text(lua_State *L, int idx) {
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
