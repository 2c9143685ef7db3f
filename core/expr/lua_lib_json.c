/*
 * lua_lib_json.c - json.encode (sorted keys, compact), json.decode and
 * json.null (JSON null, which Lua's nil cannot hold in a table).
 */
#include "expr/lua_int.h"

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
  json_t *j = eng__lh_to_json(L, 1, 0, err, sizeof err);
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
  eng__lh_push_json_steal(L, j);
  return 1;
}

/* require(name): RUNBOOK_DIR/lua/NAME.lua, then LIB_DIR/NAME.lua. */

void eng__lh_open_json(lua_State *L) {
  static const luaL_Reg json_fns[] = {
      {"encode", lh_json_encode}, {"decode", lh_json_decode}, {NULL, NULL}};
  luaL_newlib(L, json_fns);
  lua_pushlightuserdata(L, ENG_LUA_NULL);
  lua_setfield(L, -2, "null");
  lua_setglobal(L, "json");
}
