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

/* Chunk names. Lua cuts a chunk's name to LUA_IDSIZE (60) characters
 * when it writes a location ("...ong/path/rb.yaml:28:"), so a chunk is
 * named by a short mark instead: "@" ENG_LH_MARK "N", N indexing the
 * state's table of file names, and for runbook line L ":+(L-1)" (instead
 * of padding the source with L-1 newlines, which would cost time and
 * memory for every expression deep in a large file). Lua then writes
 * "<mark>N:+OFF:LINE:", which eng__lh_message turns back into
 * "FILE:(OFF+LINE):" with the whole file name. */
static int lh_file_index(eng__lua *h, const char *file) {
  for (size_t i = 0; i < h->n_files; i++)
    if (strcmp(h->files[i], file) == 0)
      return (int)i;
  char **n = realloc(h->files, (h->n_files + 1) * sizeof *n);
  if (n == NULL)
    abort();
  h->files = n;
  h->files[h->n_files] = eng__lh_strdup(file);
  return (int)h->n_files++;
}

void eng__lh_chunkname(eng__lua *h, const char *file, int line, char *buf,
                       size_t n) {
  int id = lh_file_index(h, file != NULL ? file : "?");
  if (line > 1)
    snprintf(buf, n, "@%c%d:+%d", ENG_LH_MARK, id, line - 1);
  else
    snprintf(buf, n, "@%c%d", ENG_LH_MARK, id);
}

/* At s (just after a mark): the file's index and what follows it. */
static const char *lh_mark_file(const eng__lua *h, const char *s,
                                const char **rest) {
  char *end;
  long id = strtol(s, &end, 10);
  *rest = end;
  if (end == s || h == NULL || id < 0 || (size_t)id >= h->n_files)
    return "?";
  return h->files[id];
}

/* A line offset after a chunk's name: ":+OFF" then, in a location,
 * ":LINE:". Writes the runbook line into *line (0: none) and returns what
 * follows the offset. */
static const char *lh_offset(const char *s, long *line) {
  *line = 0;
  if (s[0] != ':' || s[1] != '+' || !isdigit((unsigned char)s[2]))
    return s;
  char *end;
  long off = strtol(s + 2, &end, 10);
  if (off < 0 || off > 100000000)
    return s;
  if (*end == ':' && isdigit((unsigned char)end[1])) {
    char *end2;
    long n = strtol(end + 1, &end2, 10);
    if (*end2 == ':' && n < 100000000) {
      *line = off + n;
      return end2;
    }
  }
  return end; /* the chunk's name alone: the offset is dropped */
}

/* The length of raw, and the room its text as users read it may need (a
 * file name and a line per mark). */
static size_t lh_message_room(const eng__lua *h, const char *raw, size_t *len) {
  *len = strlen(raw);
  size_t cap = *len + 1;
  for (const char *p = raw; p < raw + *len; p++)
    if (*p == ENG_LH_MARK)
      cap += h != NULL && h->n_files ? 4096 : 16;
  return cap;
}

size_t eng__lh_message_room(const eng__lua *h, const char *raw) {
  size_t len;
  return lh_message_room(h, raw != NULL ? raw : "unknown error", &len);
}

void eng__lh_message_to(const eng__lua *h, const char *raw, char *out,
                        size_t cap) {
  if (raw == NULL)
    raw = "unknown error";
  size_t len;
  lh_message_room(h, raw, &len);
  size_t w = 0;
  for (const char *p = raw; p < raw + len && w + 1 < cap;) {
    if (*p != ENG_LH_MARK) {
      out[w++] = *p++;
      continue;
    }
    const char *rest;
    const char *file = lh_mark_file(h, p + 1, &rest);
    long line;
    rest = lh_offset(rest, &line);
    int k = line > 0 ? snprintf(out + w, cap - w, "%.4000s:%ld", file, line)
                     : snprintf(out + w, cap - w, "%.4000s", file);
    w += k > 0 && (size_t)k < cap - w ? (size_t)k : 0;
    p = rest;
  }
  out[w < cap ? w : cap - 1] = '\0';
}

char *eng__lh_message(const eng__lua *h, const char *raw) {
  size_t cap = eng__lh_message_room(h, raw);
  char *out = malloc(cap);
  if (out == NULL)
    abort();
  eng__lh_message_to(h, raw, out, cap);
  return out;
}

void eng__lh_copy(const eng__lua *h, char *dst, size_t n, const char *src) {
  if (dst != NULL && n > 0) {
    char *m = eng__lh_message(h, src);
    snprintf(dst, n, "%s", m);
    free(m);
  }
}

/* Whether msg starts with a location Lua wrote ("<mark>N:LINE: ..." or
 * "[string \"...\"]:LINE: ..." for a chunk of load()). */
static int lh_located(const char *msg) {
  return msg[0] == ENG_LH_MARK || strncmp(msg, "[string ", 8) == 0;
}

void eng__lh_push_error(lua_State *L, lua_State *co, int level,
                        const char *msg) {
  if (lh_located(msg)) {
    lua_pushstring(L, msg);
    return;
  }
  /* an error raised without a position (error(x, 0), an error object):
   * where the innermost Lua function of the hook was */
  lua_Debug ar;
  for (; lua_getstack(co, level, &ar); level++) {
    if (lua_getinfo(co, "Sl", &ar) && ar.currentline > 0) {
      lua_pushfstring(L, "%s:%d: %s", ar.short_src, ar.currentline, msg);
      return;
    }
  }
  lua_pushstring(L, msg);
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
    eng__lh_copy(h, err, errlen, lua_tostring(L, -1));
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
