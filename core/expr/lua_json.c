/*
 * lua_json.c - JSON values into Lua (objects as strict context tables
 * that name a missing key, or plain tables) and Lua values back into JSON
 * (never raising, never allocating Lua memory).
 */
#include "expr/lua_int.h"

#include <math.h>

/* ---- JSON -> Lua ------------------------------------------------------------ */

/* Give table at idx the strict metatable and record its path (string at
 * path_idx). */
void eng__lh_set_path(lua_State *L, int idx, int path_idx) {
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
void eng__lh_push_json(lua_State *L, const json_t *j, int path_idx,
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
      eng__lh_push_json(L, v, sub, depth + 1);
      lua_setfield(L, sub != 0 ? -3 : -2, key);
      if (sub != 0)
        lua_pop(L, 1);
    }
    if (path_idx != 0)
      eng__lh_set_path(L, -1, path_idx);
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
      eng__lh_push_json(L, json_array_get(j, i), sub, depth + 1);
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
  eng__lh_push_json(L, j, 0, 0);
  return 1;
}

/* Push j (stolen) onto L from inside a C function; raises after freeing
 * it when Lua runs out of memory. */
void eng__lh_push_json_steal(lua_State *L, json_t *j) {
  lua_pushcfunction(L, lh_push_json_plain);
  lua_pushlightuserdata(L, j);
  int st = lua_pcall(L, 1, 1, 0);
  json_decref(j);
  if (st != LUA_OK)
    lua_error(L);
}

/* ---- Lua -> JSON ------------------------------------------------------------ */

/* A scalar at idx into JSON (*done set), or, for a table, nothing. */
static json_t *scalar_to_json(lua_State *L, int idx, bool *done, char *err,
                              size_t errlen) {
  *done = true;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
  case LUA_TNONE:
    return json_null();
  case LUA_TBOOLEAN:
    return json_boolean(lua_toboolean(L, idx));
  case LUA_TNUMBER: {
    if (lua_isinteger(L, idx))
      return json_integer((json_int_t)lua_tointeger(L, idx));
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
    if (lua_touserdata(L, idx) == ENG_LUA_NULL) return json_null();
    break;
  case LUA_TTABLE:
    *done = false;
    return NULL;
  default:
    break;
  }
  snprintf(err, errlen, "cannot convert a %s to JSON", luaL_typename(L, idx));
  return NULL;
}

/* The length n of the table at idx when its keys are exactly 1..n, else 0. */
static lua_Integer sequence_length(lua_State *L, int idx) {
  lua_Integer n = 0;
  bool seq = true;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    n++;
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1) seq = false;
    lua_pop(L, 1);
  }
  if (!seq || n == 0) return 0;
  /* keys are n distinct integers >= 1: 1..n exactly iff all <= n */
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    if (lua_tointeger(L, -2) > n) seq = false;
    lua_pop(L, 1);
  }
  return seq ? n : 0;
}

static json_t *array_to_json(lua_State *L, int idx, lua_Integer n, int depth,
                             char *err, size_t errlen) {
  json_t *arr = json_array();
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    json_t *v = eng__lh_to_json(L, -1, depth + 1, err, errlen);
    lua_pop(L, 1);
    if (v == NULL) {
      json_decref(arr);
      return NULL;
    }
    json_array_append_new(arr, v);
  }
  return arr;
}

/* The key under the value lua_next pushed, as JSON object key text (kbuf
 * holds a number's); NULL with err for other key types. */
static const char *key_text(lua_State *L, char kbuf[64], size_t *klen,
                            char *err, size_t errlen) {
  switch (lua_type(L, -2)) {
  case LUA_TSTRING:
    return lua_tolstring(L, -2, klen);
  case LUA_TNUMBER:
    if (lua_isinteger(L, -2))
      snprintf(kbuf, 64, "%lld", (long long)lua_tointeger(L, -2));
    else
      snprintf(kbuf, 64, "%.14g", (double)lua_tonumber(L, -2));
    *klen = strlen(kbuf);
    return kbuf;
  default:
    snprintf(err, errlen, "cannot convert a table with a %s key to JSON",
             luaL_typename(L, -2));
    return NULL;
  }
}

static json_t *object_to_json(lua_State *L, int idx, int depth, char *err,
                              size_t errlen) {
  json_t *obj = json_object();
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    char kbuf[64];
    size_t klen = 0;
    const char *key = key_text(L, kbuf, &klen, err, errlen);
    json_t *v = key ? eng__lh_to_json(L, -1, depth + 1, err, errlen) : NULL;
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

/* Never raises and never allocates Lua memory; NULL and err on failure. */
json_t *eng__lh_to_json(lua_State *L, int idx, int depth, char *err,
                        size_t errlen) {
  idx = lua_absindex(L, idx);
  bool done;
  json_t *v = scalar_to_json(L, idx, &done, err, errlen);
  if (done) return v;
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
  lua_Integer n = sequence_length(L, idx);
  return n > 0 ? array_to_json(L, idx, n, depth, err, errlen)
               : object_to_json(L, idx, depth, err, errlen);
}
