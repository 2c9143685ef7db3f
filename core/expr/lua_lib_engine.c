/*
 * lua_lib_engine.c - the engine's own functions in the sandbox: print and
 * engine.log (into the step's log), engine.fail (an error whose text is
 * exactly the message), engine.warn (the step ends `warn`), and the conditions' success(), failure() and
 * always() over the statuses of the step's dependencies.
 */
#include "expr/lua_int.h"

static void lh_log(lua_State *L, const char *msg) {
  eng__lua *h = eng__lh_get(L);
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

/* engine.warn(msg): the step worked, and a threshold was crossed: it ends
 * `warn` with msg unless it fails. Only in a step's hooks (a `check:`, a
 * `lua` step), where there is a step to end `warn`. */
static int lh_engine_warn(lua_State *L) {
  const char *msg = luaL_checkstring(L, 1);
  eng__lua *h = eng__lh_get(L);
  eng_call *c = h->cur != NULL && h->cur->job != NULL ? h->cur->job->call : NULL;
  if (c == NULL || eng__call_warn(c, msg) != ENG_OK)
    return luaL_error(L, "engine.warn: only a `check:` hook or a `lua` step "
                         "can end its step `warn`");
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


/* Message handler: engine.fail keeps its text; others get a traceback. */
static int lh_success(lua_State *L) {
  eng__lua *h = eng__lh_get(L);
  int ok = 1;
  for (size_t i = 0; i < h->n_deps; i++)
    if (strcmp(h->deps[i], "ok") != 0 && strcmp(h->deps[i], "warn") != 0 &&
        strcmp(h->deps[i], "skipped") != 0)
      ok = 0;
  lua_pushboolean(L, ok);
  return 1;
}

static int lh_failure(lua_State *L) {
  static const char *const bad[] = {"failed", "timed_out", "refused",
                                    "cancelled"};
  eng__lua *h = eng__lh_get(L);
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

void eng__lh_open_engine(lua_State *L) {
  static const luaL_Reg globals[] = {{"print", lh_print},
                                     {"success", lh_success},
                                     {"failure", lh_failure},
                                     {"always", lh_always},
                                     {NULL, NULL}};
  lua_pushglobaltable(L);
  luaL_setfuncs(L, globals, 0);
  lua_pop(L, 1);
  lua_createtable(L, 0, 1); /* engine.fail errors */
  lua_pushcfunction(L, lh_fail_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_rawsetp(L, LUA_REGISTRYINDEX, &k_fail_mt);
  static const luaL_Reg engine_fns[] = {
      {"log", lh_engine_log}, {"fail", lh_engine_fail},
      {"warn", lh_engine_warn}, {NULL, NULL}};
  luaL_newlib(L, engine_fns);
  lua_setglobal(L, "engine");
}
