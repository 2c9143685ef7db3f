/*
 * lua_bridge.c - hooks that wait on the loop: a function a plugin offers
 * (pg.query) or http.get runs as a sub-call of the step's call, and the
 * coroutine running the hook (eng__lua_run) yields until the sub-call
 * completes; its result is returned to Lua, its error raised there.
 */
#include "expr/lua_int.h"

/* Take job j out of its state's list of running coroutines. */
void eng__lh_job_unlink(eng__lua_job *j) {
  eng__lua *h = j->h;
  if (j->prev != NULL)
    j->prev->next = j->next;
  else if (h != NULL && h->jobs == j)
    h->jobs = j->next;
  if (j->next != NULL)
    j->next->prev = j->prev;
  j->prev = j->next = NULL;
}

/* ---- plugin functions (yield to the loop) ----------------------------------- */

static void lh_job_resume(eng__lua_job *j);

/* Completion of a sub-call. Owns outputs. */
static void lh_sub_done(void *ud, int rc, json_t *outputs, const char *error) {
  eng__lua_job *j = ud;
  j->waiting = 0;
  if (error != NULL || rc != ENG_OK) {
    j->error = eng__lh_strdup(error != NULL ? error : eng_strerror(rc));
  } else {
    json_t *r = outputs != NULL ? json_object_get(outputs, "result") : NULL;
    j->result = r != NULL ? json_incref(r) : NULL;
  }
  json_decref(outputs);
  if (j->h == NULL) { /* the state was destroyed meanwhile */
    json_decref(j->result);
    free(j->error);
    free(j);
    return;
  }
  if (j->yielded) {
    j->yielded = 0;
    lh_job_resume(j);
  }
  /* else it completed inside eng__call_start: lh_func_call picks it up */
}

static int lh_func_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  eng__lua_job *j = (eng__lua_job *)ctx;
  const eng_lua_func *f = lua_touserdata(L, lua_upvalueindex(1));
  if (j->error != NULL) {
    char *e = j->error;
    j->error = NULL;
    luaL_where(L, 1);
    lua_pushfstring(L, "%s.%s: %s", f->table, f->name, e);
    free(e);
    lua_concat(L, 2);
    return lua_error(L);
  }
  json_t *r = j->result;
  j->result = NULL;
  if (r == NULL) {
    lua_pushnil(L);
    return 1;
  }
  eng__lh_push_json_steal(L, r);
  return 1;
}

static int lh_func_call(lua_State *L) {
  const eng_lua_func *f = lua_touserdata(L, lua_upvalueindex(1));
  eng__lua *h = eng__lh_get(L);
  eng__lua_job *j = h->cur != NULL ? h->cur->job : NULL;
  if (j == NULL)
    return luaL_error(L, "%s.%s needs I/O: use it in a check hook or a lua "
                         "step, not in an expression", f->table, f->name);
  if (j->co != L || !lua_isyieldable(L))
    return luaL_error(L, "%s.%s cannot be called here (inside a metamethod "
                         "or a callback of a C function)", f->table, f->name);
  if (j->call == NULL)
    return luaL_error(L, "%s.%s needs I/O but this hook has no step call",
                      f->table, f->name);
  char err[160];
  int n = lua_gettop(L);
  json_t *args = json_array();
  for (int i = 1; i <= n; i++) {
    json_t *v = eng__lh_to_json(L, i, 0, err, sizeof err);
    if (v == NULL) {
      json_decref(args);
      return luaL_error(L, "%s.%s: argument #%d: %s", f->table, f->name, i,
                        err);
    }
    json_array_append_new(args, v);
  }
  j->waiting = 1;
  eng_call *sub = eng__call_sub(j->call, lh_sub_done, j);
  int rc = eng__call_start(sub, f->start, args);
  json_decref(args);
  if (rc != ENG_OK) {
    j->waiting = 0;
    return luaL_error(L, "%s.%s: %s", f->table, f->name, eng_strerror(rc));
  }
  if (!j->waiting) /* completed synchronously */
    return lh_func_k(L, LUA_OK, (lua_KContext)j);
  return lua_yieldk(L, 0, (lua_KContext)j, lh_func_k);
}

/* lua_pcall body: offer the eng_lua_func given as light userdata as
 * TABLE.NAME (the table made when missing). */
int eng__lh_add_func_body(lua_State *L) {
  const eng_lua_func *f = lua_touserdata(L, 1);
  if (lua_getglobal(L, f->table) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setglobal(L, f->table);
  }
  lua_pushlightuserdata(L, (void *)f);
  lua_pushcclosure(L, lh_func_call, 1);
  lua_setfield(L, -2, f->name);
  return 0;
}

/* f must outlive the state (plugin descriptors are never unloaded). */
void eng__lua_add_func(eng__lua *h, const eng_lua_func *f) {
  if (h == NULL || f == NULL || f->table == NULL || f->name == NULL ||
      f->start == NULL)
    return;
  eng__lh_protect(h, eng__lh_add_func_body, (void *)f, NULL, 0);
}


/* ---- run (coroutines) -------------------------------------------------------------- */

static int lh_dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  eng__buf *b = ud;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *nd = realloc(b->data, cap);
    if (nd == NULL)
      return 1;
    b->data = nd;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

struct lh_run_setup {
  eng__lua_job *job;
  int ref;
  const json_t *locals;
  int rc;
};

/* A fresh closure of the compiled function with its own _ENV: the locals,
 * then the globals. Writes stay in this env. */
static int lh_run_setup_body(lua_State *L) {
  struct lh_run_setup *s = lua_touserdata(L, 1);
  eng__lua_job *j = s->job;
  j->co = lua_newthread(L);
  j->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_newtable(L); /* 2: env */
  if (s->locals != NULL) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)s->locals, key, v) {
      lua_pushstring(L, key);
      eng__lh_push_json(L, v, -1, 0);
      lua_setfield(L, 2, key);
      lua_pop(L, 1);
    }
  }
  /* a for_each item's `each` as it is now: the hook keeps its own item
   * while others start (and set the global) before it resumes */
  if (s->locals == NULL || !json_object_get(s->locals, "each")) {
    lua_getglobal(L, "each");
    lua_setfield(L, 2, "each");
  }
  lua_rawgetp(L, LUA_REGISTRYINDEX, &k_job_mt);
  lua_setmetatable(L, 2);

  lua_rawgeti(L, LUA_REGISTRYINDEX, s->ref); /* 3 */
  eng__buf b = {NULL, 0, 0};
  int st = lua_dump(L, lh_dump_writer, &b, 0);
  if (st == 0)
    st = luaL_loadbufferx(L, b.data, b.len, "=(hook)", "b");
  free(b.data);
  if (st != 0)
    return luaL_error(L, "cannot prepare the hook: %s",
                      lua_isstring(L, -1) ? lua_tostring(L, -1) : "dump");
  lua_pushvalue(L, 2);
  if (!lua_setupvalue(L, -2, 1))
    lua_pop(L, 1);
  lua_xmove(L, j->co, 1);
  s->rc = ENG_OK;
  return 0;
}

struct lh_finish {
  eng__lua_job *job;
  int status, nres;
  json_t *results;
  char *err;
};

/* Collect results or build the error text (where and why, one line). */
static int lh_finish_body(lua_State *L) {
  struct lh_finish *f = lua_touserdata(L, 1);
  lua_State *co = f->job->co;
  if (f->status == LUA_OK) {
    char err[256];
    json_t *arr = json_array();
    int top = lua_gettop(co);
    for (int i = top - f->nres + 1; i <= top; i++) {
      json_t *v = eng__lh_to_json(co, i, 0, err, sizeof err);
      if (v == NULL) {
        json_decref(arr);
        f->err = eng__lh_strdup(err);
        return 0;
      }
      json_array_append_new(arr, v);
    }
    f->results = arr;
    return 0;
  }
  if (f->status == LUA_ERRMEM) {
    f->err = eng__lh_strdup("not enough memory");
    return 0;
  }
  if (eng__lh_push_fail_text(co, -1)) {
    f->err = eng__lh_strdup(lua_tostring(co, -1));
    return 0;
  }
  const char *msg = lua_tostring(co, -1);
  if (msg == NULL)
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(co, -1));
  /* one line: where and why (level 0: where the coroutine stopped) */
  eng__lh_push_error(L, co, 0, msg);
  f->err = eng__lh_message(f->job->h, lua_tostring(L, -1));
  return 0;
}

static void lh_job_finish(eng__lua_job *j, int status, int nres) {
  eng__lua *h = j->h;
  struct lh_finish f = {j, status, nres, NULL, NULL};
  if (status == LUA_ERRMEM)
    lua_gc(h->L, LUA_GCCOLLECT);
  char msg[256];
  if (eng__lh_protect(h, lh_finish_body, &f, msg, sizeof msg) != LUA_OK &&
      f.err == NULL && f.results == NULL)
    f.err = eng__lh_strdup(msg);
  eng__lh_job_unlink(j);
  luaL_unref(h->L, LUA_REGISTRYINDEX, j->co_ref);
  if (status == LUA_ERRMEM)
    lua_gc(h->L, LUA_GCCOLLECT);
  eng__lua_done_cb cb = j->cb;
  void *ud = j->ud;
  bool timed_out = j->timed_out && status != LUA_OK;
  json_decref(j->result);
  free(j->error);
  free(j);
  /* Nothing touches h or j after cb: it may destroy the state. */
  if (f.err != NULL) {
    json_decref(f.results);
    cb(ud, timed_out ? ENG_ERR_TIMEOUT : ENG_ERR_FAILED, NULL, f.err);
    free(f.err);
  } else {
    cb(ud, ENG_OK, f.results, NULL);
  }
}

static void lh_job_resume(eng__lua_job *j) {
  eng__lua *h = j->h;
  eng__lua_clock *prev = h->cur;
  h->cur = &j->clock;
  j->clock.since = uv_hrtime();
  lh_watch w = eng__lh_watch_start(h, j->co, &j->clock);
  int nres = 0;
  int st = lua_resume(j->co, NULL, 0, &nres);
  eng__lh_watch_end(w);
  j->clock.used += uv_hrtime() - j->clock.since;
  h->cur = prev;
  if (st == LUA_YIELD) {
    lua_pop(j->co, nres);
    j->yielded = 1;
    return;
  }
  lh_job_finish(j, st, nres);
}

int eng__lua_run(eng__lua *h, int ref, const json_t *locals, eng_call *call,
                 eng__lua_done_cb cb, void *ud) {
  if (h == NULL || cb == NULL || (locals != NULL && !json_is_object(locals)))
    return ENG_ERR_INVALID;
  lua_State *L = h->L;
  if (lua_rawgeti(L, LUA_REGISTRYINDEX, ref) != LUA_TFUNCTION) {
    lua_pop(L, 1);
    return ENG_ERR_INVALID;
  }
  lua_pop(L, 1);
  eng__lua_job *j = calloc(1, sizeof *j);
  if (j == NULL)
    return ENG_ERR_NOMEM;
  j->h = h;
  j->co_ref = LUA_NOREF;
  j->call = call;
  j->cb = cb;
  j->ud = ud;
  j->clock.job = j;
  struct lh_run_setup s = {j, ref, locals, ENG_ERR_NOMEM};
  if (eng__lh_protect(h, lh_run_setup_body, &s, NULL, 0) != LUA_OK ||
      s.rc != ENG_OK) {
    luaL_unref(L, LUA_REGISTRYINDEX, j->co_ref);
    free(j);
    return ENG_ERR_NOMEM;
  }
  j->next = h->jobs;
  if (h->jobs != NULL)
    h->jobs->prev = j;
  h->jobs = j;
  lh_job_resume(j); /* may run cb (no yield) */
  return ENG_OK;
}
