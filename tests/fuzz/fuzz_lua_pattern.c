/* libFuzzer: Lua patterns and subjects through the sandbox's pattern
 * functions (core/expr/lua_match.c): string.find (also plain), match,
 * gmatch, gsub with a string, a table and a function, and the methods of
 * strings.
 *
 * Input: byte 0 chooses the call and the replacement, byte 1 the start
 * (0: none, else a signed byte), then the pattern up to the first '\n',
 * then the subject.
 *
 * Each input runs three ways:
 *  - in a sandbox with a 5 ms budget: whatever the pattern costs, the call
 *    ends (a backtracking pattern would otherwise hit libFuzzer's timeout);
 *  - in a plain state with our functions, whose check stops the call after
 *    FZ_CHEAP_CHECKS checks (a few hundred thousand steps);
 *  - when that finished (the pattern is cheap), in a plain state with
 *    liblua's functions: the results must be identical, and those of the
 *    sandbox too unless its budget ran out.
 * A difference aborts with both results. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expr/lua_int.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* Checks (every few thousand steps) before a call is not cheap. */
#define FZ_CHEAP_CHECKS 64
#define FZ_BUDGET_MS 5

/* op, subject, pattern, start, replacement index -> "ok v1 v2..." or
 * "err message" */
static const char fz_chunk[] =
    "local op, s, p, a, r = ...\n"
    "local function ser(ok, ...)\n"
    "  local out = {ok and 'ok' or 'err'}\n"
    "  for i = 1, select('#', ...) do\n"
    "    local v = select(i, ...)\n"
    "    out[#out + 1] = type(v) == 'string' and string.format('%q', v)\n"
    "                    or math.type(v) or tostring(v)\n"
    "    if math.type(v) then out[#out] = out[#out] .. ':' .. tostring(v) end\n"
    "  end\n"
    "  return table.concat(out, ' ')\n"
    "end\n"
    "local repls = {'<%0>', '%1%2', '%%', 'x%', 7, '[%1]', '', '%3'}\n"
    "local rt = {a = 'A', b = false, ab = 2, ['1'] = 'one', [1] = 'pos',\n"
    "            [''] = 'E', c = {}}\n"
    "local function rf(x, ...)\n"
    "  if x == 'a' then return false end\n"
    "  if x == 'c' then return {} end\n"
    "  if x == 'b' then return 7 end\n"
    "  return '<' .. tostring(x) .. select('#', ...) .. '>'\n"
    "end\n"
    "if op == 0 then return ser(pcall(string.find, s, p, a)) end\n"
    "if op == 1 then return ser(pcall(string.find, s, p, a, true)) end\n"
    "if op == 2 then return ser(pcall(string.match, s, p, a)) end\n"
    "if op == 3 then return ser(pcall(function()\n"
    "  local out, it = {}, string.gmatch(s, p, a)\n"
    "  for i = 1, 64 do\n"
    "    local v = table.pack(it())\n"
    "    if v.n == 0 then break end\n"
    "    out[#out + 1] = ser(true, table.unpack(v, 1, v.n))\n"
    "  end\n"
    "  return table.concat(out, ';')\n"
    "end)) end\n"
    "if op == 4 then return ser(pcall(string.gsub, s, p, repls[r + 1], a)) end\n"
    "if op == 5 then return ser(pcall(string.gsub, s, p, rt, a)) end\n"
    "if op == 6 then return ser(pcall(string.gsub, s, p, rf, a)) end\n"
    "return ser(pcall(function()\n"
    "  return s:find(p, a), s:match(p, a), (s:gsub(p, '[%0]')), s:gmatch(p)()\n"
    "end))\n";

typedef struct fz_input {
  int op, repl;
  int has_start;
  lua_Integer start;
  const char *p, *s;
  size_t lp, ls;
} fz_input;

static long fz_checks_left;

static int fz_check(lua_State *L) {
  if (--fz_checks_left <= 0)
    return luaL_error(L, "fuzz: not cheap");
  return 0;
}

/* Push the chunk's arguments (after the chunk itself). */
static void fz_push_args(lua_State *L, const fz_input *in) {
  lua_pushinteger(L, in->op);
  lua_pushlstring(L, in->s, in->ls);
  lua_pushlstring(L, in->p, in->lp);
  if (in->has_start)
    lua_pushinteger(L, in->start);
  else
    lua_pushnil(L);
  lua_pushinteger(L, in->repl);
}

static lua_State *fz_plain(int ours) {
  lua_State *L = luaL_newstate();
  if (L == NULL)
    abort();
  luaL_openlibs(L);
  if (ours)
    eng__lh_open_match(L, fz_check);
  if (luaL_loadbuffer(L, fz_chunk, sizeof fz_chunk - 1, "=fuzz") != LUA_OK)
    abort();
  return L; /* the chunk at index 1 */
}

/* The chunk's answer in a plain state, malloc'd. */
static char *fz_plain_run(lua_State *L, const fz_input *in) {
  lua_pushvalue(L, 1);
  fz_push_args(L, in);
  if (lua_pcall(L, 5, 1, 0) != LUA_OK) {
    fprintf(stderr, "fuzz: the chunk failed: %s\n", lua_tostring(L, -1));
    abort();
  }
  size_t n;
  const char *r = lua_tolstring(L, -1, &n);
  char *out = malloc(n + 1);
  if (out == NULL)
    abort();
  memcpy(out, r, n + 1);
  lua_pop(L, 1);
  return out;
}

/* ---- the sandbox --------------------------------------------------------- */

static const fz_input *fz_cur;

/* Protected: the arguments as globals (the sandbox's chunk reads them). */
static int fz_set_args(lua_State *L) {
  static const char *const names[] = {"FZ_OP", "FZ_S", "FZ_P", "FZ_A",
                                      "FZ_R"};
  fz_push_args(L, fz_cur);
  for (int i = 4; i >= 0; i--)
    lua_setglobal(L, names[i]);
  return 0;
}

/* Protected: the answer the sandbox's chunk left in FZ_OUT, malloc'd into
 * the char * at the light userdata. */
static int fz_get_out(lua_State *L) {
  char **out = lua_touserdata(L, 1);
  lua_getglobal(L, "FZ_OUT");
  size_t n;
  const char *r = lua_tolstring(L, -1, &n);
  if (r == NULL)
    return 0;
  *out = malloc(n + 1);
  if (*out == NULL)
    abort();
  memcpy(*out, r, n + 1);
  return 0;
}

/* The sandbox's answer, or NULL when its budget (or memory) ran out. */
static char *fz_sandbox_run(eng__lua *h, int ref, const fz_input *in) {
  char err[1024];
  fz_cur = in;
  if (eng__lh_protect(h, fz_set_args, NULL, err, sizeof err) != 0)
    return NULL;
  json_t *res = NULL;
  if (eng__lua_eval(h, ref, NULL, &res, err, sizeof err) != ENG_OK)
    return NULL; /* the budget or the memory cap: the call ended */
  json_decref(res);
  char *out = NULL;
  if (eng__lh_protect(h, fz_get_out, &out, err, sizeof err) != 0)
    return NULL;
  /* a limit caught by the chunk's pcall: raised again at its next
   * instruction, but be sure */
  if (out != NULL && (strstr(out, "instruction budget exceeded") != NULL ||
                      strstr(out, "not enough memory") != NULL)) {
    free(out);
    return NULL;
  }
  return out;
}

static eng__lua *fz_sandbox(int *ref) {
  eng__lua_opts o = {0};
  o.budget_ms = FZ_BUDGET_MS;
  o.mem_limit = 16u << 20;
  eng__lua *h = NULL;
  char err[256];
  if (eng__lua_create(&o, &h, err, sizeof err) != ENG_OK)
    abort();
  /* the chunk as a function of globals, its answer in FZ_OUT */
  static const char head[] = "FZ_OUT = (function(...) "; /* same lines */
  static const char tail[] = "\nend)(FZ_OP, FZ_S, FZ_P, FZ_A, FZ_R)\n";
  char *code = malloc(sizeof head + sizeof fz_chunk + sizeof tail);
  if (code == NULL)
    abort();
  snprintf(code, sizeof head + sizeof fz_chunk + sizeof tail, "%s%s%s", head,
           fz_chunk, tail);
  if (eng__lua_compile(h, code, ENG__LUA_CHUNK, "fuzz", 1, ref, err,
                       sizeof err) != ENG_OK) {
    fprintf(stderr, "fuzz: %s\n", err);
    abort();
  }
  free(code);
  return h;
}

static void fz_differ(const char *who, const fz_input *in, const char *want,
                      const char *got) {
  fprintf(stderr,
          "fuzz: op %d, pattern of %zu bytes, subject of %zu bytes:\n"
          "  liblua: %s\n  %s: %s\n",
          in->op, in->lp, in->ls, want, who, got);
  abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static lua_State *liblua, *ours;
  static eng__lua *sandbox;
  static int ref;
  if (sandbox == NULL) {
    liblua = fz_plain(0);
    ours = fz_plain(1);
    sandbox = fz_sandbox(&ref);
  }
  if (size < 2)
    return 0;
  fz_input in = {0};
  in.op = data[0] & 7;
  in.repl = (data[0] >> 3) & 7;
  in.has_start = data[1] != 0;
  in.start = (signed char)data[1];
  in.p = (const char *)data + 2;
  const char *nl = memchr(in.p, '\n', size - 2);
  in.lp = nl != NULL ? (size_t)(nl - in.p) : size - 2;
  in.s = nl != NULL ? nl + 1 : in.p + in.lp;
  in.ls = size - 2 - in.lp - (nl != NULL);

  fz_checks_left = FZ_CHEAP_CHECKS;
  char *got = fz_plain_run(ours, &in);
  char *boxed = fz_sandbox_run(sandbox, ref, &in);
  if (strstr(got, "fuzz: not cheap") == NULL) {
    char *want = fz_plain_run(liblua, &in);
    if (strcmp(want, got) != 0)
      fz_differ("ours", &in, want, got);
    if (boxed != NULL && strcmp(want, boxed) != 0)
      fz_differ("sandbox", &in, want, boxed);
    free(want);
  }
  free(boxed);
  free(got);
  /* free this input's garbage now: otherwise libFuzzer sees more mallocs
   * than frees and runs LeakSanitizer after most inputs */
  lua_gc(liblua, LUA_GCCOLLECT);
  lua_gc(ours, LUA_GCCOLLECT);
  lua_gc(sandbox->L, LUA_GCCOLLECT);
  return 0;
}
