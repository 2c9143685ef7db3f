/*
 * lua_sandbox.c - the Lua sandbox's state (lua_int.h says how the files
 * of the sandbox divide the work): creating it (the libraries it opens,
 * what it removes or replaces: load, require, setmetatable, pcall and
 * xpcall, the registry tables), the strict context tables, compiling,
 * the context of evaluations (params, steps, the dependencies' statuses)
 * and synchronous evaluation.
 */
#include "expr/lua_int.h"

#include <ctype.h>

/* ---- strict context tables ------------------------------------------------- */

/* For a missing output, " (step 'ID' STATUS)" when the step did not end
 * ok, which is usually why the output is not there; else "". */
static void lh_push_step_status(lua_State *L, const char *path) {
  int top = lua_gettop(L);
  size_t n = strlen(path);
  static const char suffix[] = ".outputs";
  size_t sl = sizeof suffix - 1;
  if (strncmp(path, "steps.", 6) == 0 && n > 6 + sl &&
      strcmp(path + n - sl, suffix) == 0) {
    lua_rawgetp(L, LUA_REGISTRYINDEX, &k_steps);
    const char *id = lua_pushlstring(L, path + 6, n - 6 - sl);
    lua_pushvalue(L, -1);
    const char *status = NULL;
    if (lua_rawget(L, -3) == LUA_TTABLE) {
      lua_getfield(L, -1, "status");
      status = lua_tostring(L, -1);
    }
    if (status != NULL && strcmp(status, "ok") != 0 &&
        strcmp(status, "running") != 0 && strcmp(status, "warn") != 0) {
      lua_pushfstring(L, " (step '%s' %s)", id,
                      strcmp(status, "pending") == 0 ? "has not ended" : status);
      lua_replace(L, top + 1);
      lua_settop(L, top + 1);
      return;
    }
    lua_settop(L, top);
  }
  lua_pushliteral(L, "");
}

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
    lh_push_step_status(L, path);
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

static int lh_msgh(lua_State *L) {
  if (eng__lh_push_fail_text(L, 1))
    return 1;
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      msg = lua_tostring(L, -1);
    else
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, 1));
  }
  /* one line: where and why (level 1: the function that raised) */
  eng__lh_push_error(L, L, 1, msg);
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

/* pcall and xpcall whose error messages read as users read them: a
 * chunk's location names its whole file and runbook line (the chunk names
 * Lua writes are marks, eng__lh_chunkname), also where a hook catches an
 * error and passes its text on (a check's message, an output). Like
 * Lua's own they may yield across (lua_pcallk). */
static void lh_push_readable(lua_State *L, int idx) {
  const char *m = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
  if (m == NULL || strchr(m, ENG_LH_MARK) == NULL) {
    lua_pushvalue(L, idx);
    return;
  }
  eng__lua *h = eng__lh_get(L);
  size_t cap = eng__lh_message_room(h, m);
  char *buf = lua_newuserdatauv(L, cap, 0); /* Lua's memory: freed if a push raises */
  eng__lh_message_to(h, m, buf, cap);
  lua_pushstring(L, buf);
  lua_remove(L, -2);
}

static int lh_pcall_msgh(lua_State *L) {
  lh_push_readable(L, 1);
  return 1;
}

/* xpcall's handler: the message made readable, then the caller's handler
 * (upvalue 1). */
static int lh_xpcall_msgh(lua_State *L) {
  lua_pushvalue(L, lua_upvalueindex(1));
  lh_push_readable(L, 1);
  lua_call(L, 1, 1);
  return 1;
}

static int lh_pcall_k(lua_State *L, int status, lua_KContext extra) {
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushboolean(L, 0);
    lua_pushvalue(L, -2);
    return 2;
  }
  return lua_gettop(L) - (int)extra;
}

/* pcall(f, ...): stack [handler, true, f, args...]; the results follow
 * `true` (extra: the handler below them). */
static int lh_pcall(lua_State *L) {
  luaL_checkany(L, 1);
  lua_pushcfunction(L, lh_pcall_msgh);
  lua_pushboolean(L, 1);
  lua_rotate(L, 1, 2);
  int st = lua_pcallk(L, lua_gettop(L) - 3, LUA_MULTRET, 1, 1, lh_pcall_k);
  return lh_pcall_k(L, st, 1);
}

/* xpcall(f, handler, ...): stack [ours, true, f, args...]. */
static int lh_xpcall(lua_State *L) {
  int n = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, lh_xpcall_msgh, 1);
  lua_replace(L, 2);               /* [f, ours, args...] */
  lua_pushboolean(L, 1);
  lua_pushvalue(L, 1);             /* [f, ours, args..., true, f] */
  lua_rotate(L, 3, 2);             /* [f, ours, true, f, args...] */
  lua_remove(L, 1);                /* [ours, true, f, args...] */
  int st = lua_pcallk(L, n - 2, LUA_MULTRET, 1, 1, lh_pcall_k);
  return lh_pcall_k(L, st, 1);
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

/* Load a module's file under a short chunk name (eng__lh_chunkname), so
 * that its errors name the whole path. lua_load catches its own errors:
 * the file is closed on every path. */
typedef struct lh_file_reader {
  FILE *f;
  char buf[4096];
} lh_file_reader;

static const char *lh_read_file(lua_State *L, void *ud, size_t *size) {
  (void)L;
  lh_file_reader *r = ud;
  *size = fread(r->buf, 1, sizeof r->buf, r->f);
  return *size > 0 ? r->buf : NULL;
}

static int lh_load_file(lua_State *L, eng__lua *h, const char *path) {
  char name[48];
  eng__lh_chunkname(h, path, 1, name, sizeof name);
  lh_file_reader *r = lua_newuserdatauv(L, sizeof *r, 0);
  r->f = fopen(path, "r");
  if (r->f == NULL) {
    lua_pop(L, 1);
    lua_pushfstring(L, "cannot open %s", path);
    return LUA_ERRFILE;
  }
  int st = lua_load(L, lh_read_file, r, name, "t");
  fclose(r->f);
  lua_remove(L, -2); /* the reader */
  return st;
}

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
  eng__lua *h = eng__lh_get(L);
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
  if (lh_load_file(L, h, path) != LUA_OK)
    return luaL_error(L, "require '%s': %s", name, lua_tostring(L, -1));
  lua_replace(L, 2);
  lua_settop(L, 2);
  lua_callk(L, 0, 1, 0, lh_require_k);
  return lh_require_k(L, LUA_OK, 0);
}

/* ---- create / destroy -------------------------------------------------------- */

static void lh_open(lua_State *L, const char *name, lua_CFunction fn) {
  luaL_requiref(L, name, fn, 1);
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
  eng__lh_guard_patterns(L);

  static const luaL_Reg globals[] = {
      {"load", lh_load}, {"require", lh_require},
      {"setmetatable", lh_setmetatable}, {"pcall", lh_pcall},
      {"xpcall", lh_xpcall}, {NULL, NULL}};
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
  eng__lh_set_path(L, -2, -1);
  lua_pop(L, 1);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &k_steps);
  lua_setglobal(L, "steps");

  eng__lh_open_engine(L);
  eng__lh_open_json(L);
  eng__lh_open_http(L);
  return 0;
}

static void set_budget(eng__lua *h, uint64_t budget_ms) {
  h->budget_ns = budget_ms * 1000000u;
  snprintf(h->budget_msg, sizeof h->budget_msg,
           "instruction budget exceeded (%g s of execution)",
           (double)budget_ms / 1000.0);
}

uint64_t eng__lua_set_budget(eng__lua *h, uint64_t ms) {
  uint64_t old = h->budget_ns / 1000000u;
  set_budget(h, ms ? ms : h->budget_default_ms);
  return old;
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
  h->budget_default_ms = budget_ms;
  set_budget(h, budget_ms);
  h->runbook_dir = o && o->runbook_dir ? eng__lh_strdup(o->runbook_dir) : NULL;
  h->lib_dir = o && o->lib_dir ? eng__lh_strdup(o->lib_dir) : NULL;
  if (eng__lh_wd_start() != 0) {
    eng__lh_copy(NULL, err, errlen, "cannot start the Lua watchdog thread");
    eng__lua_destroy(h);
    return ENG_ERR_NOMEM;
  }
  h->watched = true;
  h->L = lua_newstate(eng__lh_alloc, h);
  if (h->L == NULL) {
    eng__lh_copy(NULL, err, errlen, "cannot create the Lua state: out of memory");
    eng__lua_destroy(h);
    return ENG_ERR_NOMEM;
  }
  char msg[256];
  if (eng__lh_protect(h, lh_setup, NULL, msg, sizeof msg) != LUA_OK) {
    if (err != NULL && errlen > 0)
      snprintf(err, errlen, "cannot set up the Lua sandbox: %s", msg);
    eng__lua_destroy(h);
    return ENG_ERR_NOMEM;
  }
  eng__lh_arm(h->L);
  *out = h;
  return ENG_OK;
}


/* Pending coroutines end with ENG_ERR_CANCELLED (their cb runs here). A job
 * waiting for a sub-call stays allocated until the sub-call completes. */
void eng__lua_destroy(eng__lua *h) {
  if (h == NULL)
    return;
  while (h->jobs != NULL) {
    eng__lua_job *j = h->jobs;
    eng__lh_job_unlink(j);
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
  for (size_t i = 0; i < h->n_files; i++)
    free(h->files[i]);
  free(h->files);
  free(h->runbook_dir);
  free(h->lib_dir);
  if (h->watched)
    eng__lh_wd_stop();
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
    eng__lh_copy(eng__lh_get(L), c->err, c->errlen, lua_tostring(L, -1));
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
    eng__lh_copy(NULL, err, errlen, "invalid argument");
    return ENG_ERR_INVALID;
  }
  if (file == NULL)
    file = "?";
  if (line < 1)
    line = 1;
  size_t code_len = strlen(code), file_len = strlen(file);
  /* The chunk's name carries the file and the line offset
   * (eng__lh_chunkname). A comment in an expression must not swallow the
   * closing parenthesis. */
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
  eng__lh_chunkname(h, file, line, chunkname, file_len + 32);
  int klen = snprintf(key, code_len + file_len + 32, "%d:%d:%s", kind, line,
                      file);
  memcpy(key + klen + 1, code, code_len); /* key: "K:L:FILE\0CODE" */
  struct lh_compile c = {src,       (size_t)(p - src),
                         key,       (size_t)klen + 1 + code_len,
                         chunkname, LUA_NOREF,
                         err,       errlen,
                         ENG_ERR_NOMEM};
  char msg[256];
  if (eng__lh_protect(h, lh_compile_body, &c, msg, sizeof msg) != LUA_OK) {
    eng__lh_copy(NULL, err, errlen, msg);
    c.rc = ENG_ERR_NOMEM;
  }
  free(src);
  free(chunkname);
  free(key);
  if (c.rc == ENG_ERR_NOMEM)
    h->compile_nomem = true;
  if (c.rc == ENG_OK)
    *ref = c.ref;
  return c.rc;
}

bool eng__lua_exhausted(const eng__lua *h) {
  return h != NULL && h->compile_nomem;
}

size_t eng__lua_mem_limit(const eng__lua *h) {
  return h != NULL ? h->mem_limit : 0;
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
      eng__lh_push_json(L, s->v, 0, 0);
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
      eng__lh_push_json(L, s->v, -1, 0);
    else {
      lua_newtable(L);
      eng__lh_set_path(L, -1, -2);
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
  eng__lh_protect(h, lh_set_global_body, &s, NULL, 0);
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
    eng__lh_push_json(L, s->outputs, -1, 0);
  else {
    lua_newtable(L);
    eng__lh_set_path(L, -1, -2);
  }
  lua_setfield(L, 4, "outputs");
  lua_pop(L, 1);
  eng__lh_set_path(L, 4, 3);
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
  eng__lh_protect(h, lh_set_step_body, &s, NULL, 0);
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
    h->deps[i] = eng__lh_strdup(statuses[i] ? statuses[i] : "");
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
  eng__lua *h = eng__lh_get(L);
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
      eng__lh_push_json(L, v, -1, 0);
      lua_setglobal(L, key);
      lua_pop(L, 1);
    }
  }
  lua_pushcfunction(L, lh_msgh); /* 3 */
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->ref);
  eng__lua_clock clock = {0, uv_hrtime(), NULL};
  eng__lua_clock *prev = h->cur;
  h->cur = &clock;
  lh_watch w = eng__lh_watch_start(h, L, &clock);
  int st = lua_pcall(L, 0, LUA_MULTRET, 3);
  eng__lh_watch_end(w);
  eng__lh_arm(L);
  h->cur = prev;
  int top = lua_gettop(L);
  if (st == LUA_OK) {
    e->results = json_array();
    for (int i = 4; i <= top; i++) {
      json_t *v = eng__lh_to_json(L, i, 0, e->err, e->errlen);
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
    eng__lh_copy(h, e->err, e->errlen, lua_tostring(L, -1));
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
    eng__lh_copy(NULL, err, errlen, "invalid argument");
    return ENG_ERR_INVALID;
  }
  lua_State *L = h->L;
  if (lua_rawgeti(L, LUA_REGISTRYINDEX, ref) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    eng__lh_copy(NULL, err, errlen, "invalid Lua reference");
    return ENG_ERR_INVALID;
  }
  lua_pop(L, 1);
  struct lh_eval e = {ref, locals, NULL, err, errlen, ENG_ERR_FAILED, 0};
  char msg[256];
  if (eng__lh_protect(h, lh_eval_body, &e, msg, sizeof msg) != LUA_OK) {
    json_decref(e.results);
    eng__lh_copy(NULL, err, errlen, msg);
    return ENG_ERR_NOMEM;
  }
  if (e.errmem)
    lua_gc(L, LUA_GCCOLLECT);
  if (e.rc == ENG_OK && results != NULL)
    *results = e.results;
  else
    json_decref(e.results);
  return e.rc;
}
