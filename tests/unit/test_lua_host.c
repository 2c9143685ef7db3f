/*
 * test_lua_host.c - the Lua sandbox (core/expr/lua_*.c).
 *
 * Built from the sandbox's files alone: the few functions it uses from call.c are
 * replaced below by test doubles that complete sub-calls synchronously or
 * from a libuv timer on a test loop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "expr/lua_int.h"

/* ======================================================================
 * TEST DOUBLES of other internal modules (call.c). Not the real thing:
 * a sub-call is a small struct whose done() hands its outputs to the
 * creator's callback and frees itself.
 * ====================================================================== */

struct eng_call {
  eng__call_done_cb cb;
  void *ud;
  json_t *outputs;
  char *error;
  uint64_t deadline; /* uv_hrtime() ns; 0 none */
};

static uv_loop_t *t_loop;     /* the loop the fake plugin functions use */
static char t_last_log[512];  /* last eng__call_logf() text */
static int t_subs_live;       /* sub-calls created and not yet done */

static void t_output(eng_call *c, const char *name, json_t *v) {
  json_object_set_new(c->outputs, name, v);
}

static void t_fail(eng_call *c, const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  free(c->error);
  c->error = strdup(buf);
}

static void t_done(eng_call *c, int rc) {
  eng__call_done_cb cb = c->cb;
  void *ud = c->ud;
  json_t *out = c->outputs;
  char *err = c->error;
  if (rc != ENG_OK && err == NULL)
    err = strdup(eng_strerror(rc));
  free(c);
  t_subs_live--;
  cb(ud, rc, out, err);
  free(err);
}

static void t_log(eng_call *c, eng_log_level lvl, const char *fmt, ...) {
  (void)c;
  (void)lvl;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t_last_log, sizeof t_last_log, fmt, ap);
  va_end(ap);
}

static int t_http_start(eng_call *c, void *easy, eng_http_cb cb, void *ud,
                        eng_http **out) {
  (void)c;
  (void)easy;
  (void)cb;
  (void)ud;
  (void)out;
  return ENG_ERR_UNSUPPORTED;
}

static const eng_host t_host = {
    .size = sizeof(eng_host),
    .abi_major = ENG_ABI_MAJOR,
    .abi_minor = ENG_ABI_MINOR,
    .log = t_log,
    .output = t_output,
    .fail = t_fail,
    .done = t_done,
    .http_start = t_http_start,
};

const eng_host *eng__host(void) { return &t_host; }

eng_call *eng__call_sub(eng_call *parent, eng__call_done_cb cb, void *ud) {
  assert_non_null(parent);
  eng_call *c = calloc(1, sizeof *c);
  c->cb = cb;
  c->ud = ud;
  c->outputs = json_object();
  t_subs_live++;
  return c;
}

int eng__call_start(eng_call *call, int (*fn)(eng_call *, const json_t *),
                    const json_t *args) {
  int rc = fn(call, args);
  if (rc != ENG_OK) {
    json_decref(call->outputs);
    free(call->error);
    free(call);
    t_subs_live--;
  }
  return rc;
}

uint64_t eng__call_deadline(const eng_call *c) { return c->deadline; }

void eng__call_logf(eng_call *call, eng_log_level lvl, const char *fmt, ...) {
  (void)call;
  (void)lvl;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t_last_log, sizeof t_last_log, fmt, ap);
  va_end(ap);
}

static char t_last_warn[512]; /* last eng__call_warn() text */

int eng__call_warn(eng_call *call, const char *msg) {
  (void)call;
  snprintf(t_last_warn, sizeof t_last_warn, "%s", msg);
  return ENG_OK;
}

/* ---- fake plugin functions ---------------------------------------------- */

typedef struct t_timer {
  uv_timer_t t;
  eng_call *call;
  json_t *result; /* NULL: fail */
} t_timer;

static void t_timer_closed(uv_handle_t *h) { free(h); }

static void t_timer_fired(uv_timer_t *t) {
  t_timer *tt = (t_timer *)t;
  eng_call *call = tt->call;
  json_t *r = tt->result;
  uv_close((uv_handle_t *)t, t_timer_closed);
  if (r == NULL) {
    (eng__host()->fail)(call, "boom"); /* cmocka defines fail() */
    eng__host()->done(call, ENG_ERR_FAILED);
    return;
  }
  eng__host()->output(call, "result", r);
  eng__host()->done(call, ENG_OK);
}

static void t_later(eng_call *call, json_t *result, uint64_t ms) {
  t_timer *tt = calloc(1, sizeof *tt);
  tt->call = call;
  tt->result = result;
  uv_timer_init(t_loop, &tt->t);
  uv_timer_start(&tt->t, t_timer_fired, ms, 0);
}

/* fake.add(a, b) -> a + b, from a timer */
static int t_add_start(eng_call *call, const json_t *args) {
  json_int_t a = json_integer_value(json_array_get(args, 0));
  json_int_t b = json_integer_value(json_array_get(args, 1));
  t_later(call, json_integer(a + b), 5);
  return ENG_OK;
}

/* fake.now(v) -> v, completes inside start */
static int t_now_start(eng_call *call, const json_t *args) {
  eng__host()->output(call, "result", json_deep_copy(json_array_get(args, 0)));
  eng__host()->done(call, ENG_OK);
  return ENG_OK;
}

/* fake.err() fails from a timer */
static int t_err_start(eng_call *call, const json_t *args) {
  (void)args;
  t_later(call, NULL, 5);
  return ENG_OK;
}

/* fake.slow() -> "late" after 250 ms */
static int t_slow_start(eng_call *call, const json_t *args) {
  (void)args;
  t_later(call, json_string("late"), 250);
  return ENG_OK;
}

/* fake.refuse() fails to start */
static int t_refuse_start(eng_call *call, const json_t *args) {
  (void)call;
  (void)args;
  return ENG_ERR_UNSUPPORTED;
}

static const eng_lua_func t_funcs[] = {
    {"fake", "add", "", t_add_start},   {"fake", "now", "", t_now_start},
    {"fake", "err", "", t_err_start},   {"fake", "slow", "", t_slow_start},
    {"fake", "refuse", "", t_refuse_start},
};

/* ---- helpers ------------------------------------------------------------ */

static eng__lua *t_new(size_t mem, uint64_t budget, const char *rbdir,
                       const char *libdir) {
  eng__lua_opts o = {mem, budget, rbdir, libdir};
  eng__lua *h = NULL;
  char err[256] = "";
  assert_int_equal(eng__lua_create(&o, &h, err, sizeof err), ENG_OK);
  assert_non_null(h);
  for (size_t i = 0; i < sizeof t_funcs / sizeof t_funcs[0]; i++)
    eng__lua_add_func(h, &t_funcs[i]);
  return h;
}

/* Compile EXPR code at runbooks/t.yaml:7 and evaluate; returns rc. */
static int t_eval(eng__lua *h, const char *code, int kind,
                  const json_t *locals, json_t **res, char *err,
                  size_t errlen) {
  int ref = -1;
  int rc = eng__lua_compile(h, code, kind, "runbooks/t.yaml", 7, &ref, err,
                            errlen);
  if (rc != ENG_OK)
    return rc;
  return eng__lua_eval(h, ref, locals, res, err, errlen);
}

/* Evaluate an expression that must succeed with one value; returns it. */
static json_t *t_value(eng__lua *h, const char *code) {
  json_t *res = NULL;
  char err[1024] = "";
  int rc = t_eval(h, code, ENG__LUA_EXPR, NULL, &res, err, sizeof err);
  if (rc != ENG_OK)
    fail_msg("%s: %s", code, err);
  assert_int_equal(json_array_size(res), 1);
  json_t *v = json_incref(json_array_get(res, 0));
  json_decref(res);
  return v;
}

static void t_true(eng__lua *h, const char *code) {
  json_t *v = t_value(h, code);
  if (!json_is_true(v))
    fail_msg("expected true: %s", code);
  json_decref(v);
}

/* Evaluate code that must fail; err receives the message. */
static void t_error(eng__lua *h, const char *code, int kind, char *err,
                    size_t errlen) {
  json_t *res = NULL;
  int rc = t_eval(h, code, kind, NULL, &res, err, errlen);
  if (rc == ENG_OK)
    fail_msg("expected an error: %s", code);
  assert_null(res);
}

static void t_contains(const char *hay, const char *needle) {
  if (strstr(hay, needle) == NULL)
    fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* ---- tests --------------------------------------------------------------- */

static void test_expression_types(void **state) {
  (void)state;
  eng__lua *h = t_new(0, 0, NULL, NULL);
  json_t *params = json_pack("{s:i, s:s}", "n", 3, "name", "drill");
  eng__lua_set_global(h, "params", params);
  json_decref(params);

  json_t *v = t_value(h, "1 + 2");
  assert_true(json_is_integer(v));
  assert_int_equal(json_integer_value(v), 3);
  json_decref(v);
  v = t_value(h, "params.n / 2");
  assert_true(json_is_real(v));
  assert_true(json_real_value(v) == 1.5);
  json_decref(v);
  v = t_value(h, "params.n > 1");
  assert_true(json_is_true(v));
  json_decref(v);
  v = t_value(h, "'db_' .. params.name");
  assert_string_equal(json_string_value(v), "db_drill");
  json_decref(v);
  v = t_value(h, "{a = 1, b = {2, 3}, c = {}}");
  assert_true(json_is_object(v));
  assert_int_equal(json_integer_value(json_object_get(v, "a")), 1);
  assert_true(json_is_array(json_object_get(v, "b")));
  assert_int_equal(json_array_size(json_object_get(v, "b")), 2);
  assert_true(json_is_object(json_object_get(v, "c")));
  json_decref(v);
  v = t_value(h, "json.null");
  assert_true(json_is_null(v));
  json_decref(v);

  /* a chunk returns every value */
  json_t *res = NULL;
  char err[256] = "";
  assert_int_equal(t_eval(h, "return 1, 'two', true", ENG__LUA_CHUNK, NULL,
                          &res, err, sizeof err), ENG_OK);
  assert_int_equal(json_array_size(res), 3);
  json_decref(res);

  /* results that cannot be JSON */
  t_error(h, "function() end", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "cannot convert a function to JSON");
  eng__lua_destroy(h);
}

static void test_missing_reference(void **state) {
  (void)state;
  eng__lua *h = t_new(0, 0, NULL, NULL);
  json_t *o = json_pack("{s:s, s:{s:[{s:i}]}}", "file", "a.dump", "meta",
                        "rows", "n", 1);
  eng__lua_set_step(h, "backup", "ok", o);
  json_decref(o);
  json_t *p = json_pack("{s:{s:s}, s:n}", "db", "host", "h1", "nothing");
  eng__lua_set_global(h, "params", p);
  json_decref(p);
  json_t *env = json_pack("{s:s}", "HOME", "/root");
  eng__lua_set_global(h, "env", env);
  json_decref(env);
  char err[1024];

  t_true(h, "steps.backup.outputs.file == 'a.dump'");
  t_true(h, "steps.backup.status == 'ok'");
  t_true(h, "steps.backup.outputs.meta.rows[1].n == 1");
  t_true(h, "params.nothing == json.null");

  t_error(h, "steps.backup.outputs.fiel", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "runbooks/t.yaml:7: reference to steps.backup.outputs.fiel "
                  "does not exist");
  /* one line for users: where and why, no traceback */
  assert_null(strstr(err, "stack traceback"));
  assert_null(strchr(err, '\n'));
  t_error(h, "steps.nope.status", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "reference to steps.nope does not exist (no such step, or "
                  "it has not run)");
  t_error(h, "steps.backup.outputs.meta.rows[1].x", ENG__LUA_EXPR, err,
          sizeof err);
  t_contains(err, "reference to steps.backup.outputs.meta.rows[1].x does not "
                  "exist");
  t_error(h, "params.db.hots", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "reference to params.db.hots does not exist");
  t_error(h, "run.id", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "attempt to index a nil value");

  /* env: missing reads nil; read-only */
  t_true(h, "env.HOME == '/root' and env.NOPE_NOT_SET == nil");
  t_error(h, "env.HOME = 'x'", ENG__LUA_CHUNK, err, sizeof err);
  t_contains(err, "env is read-only");
  t_true(h, "(function() local n = 0 for k in pairs(env) do n = n + 1 end "
            "return n end)() == 1");
  eng__lua_destroy(h);
}

/* Lua cuts chunk names at 60 characters ("...ng/path/rb.yaml:28:"): every
 * message names the whole runbook path and its line, in one line. */
static void test_whole_path_one_line(void **state) {
  (void)state;
  eng__lua *h = t_new(0, 0, NULL, NULL);
  const char *file = "/home/operator/projects/yieldvault/operations/"
                     "runbooks/02-yieldvault-restore.yaml";
  json_t *o = json_pack("{s:i}", "count", 0);
  eng__lua_set_step(h, "pick", "failed", o);
  json_decref(o);
  char err[1024] = "", want[512];
  int ref = -1;
  json_t *res = NULL;
  /* a missing output of a step that did not end ok says so */
  assert_int_equal(eng__lua_compile(h, "steps.pick.outputs.picked.last_modified",
                                    ENG__LUA_EXPR, file, 28, &ref, err, sizeof err),
                   ENG_OK);
  assert_int_equal(eng__lua_eval(h, ref, NULL, &res, err, sizeof err), ENG_ERR_FAILED);
  snprintf(want, sizeof want, "%s:28: reference to steps.pick.outputs.picked "
                              "does not exist (step 'pick' failed)", file);
  assert_string_equal(err, want);
  /* a syntax error */
  assert_int_equal(eng__lua_compile(h, "1 + + 2", ENG__LUA_EXPR, file, 41, &ref,
                                    err, sizeof err), ENG_ERR_INVALID);
  snprintf(want, sizeof want, "%s:41:", file);
  t_contains(err, want);
  assert_null(strstr(err, "..."));
  /* an error without a position gets the line it was raised at */
  assert_int_equal(eng__lua_compile(h, "local a = 1\nerror({})", ENG__LUA_CHUNK,
                                    file, 50, &ref, err, sizeof err), ENG_OK);
  assert_int_equal(eng__lua_eval(h, ref, NULL, &res, err, sizeof err), ENG_ERR_FAILED);
  snprintf(want, sizeof want, "%s:51: (error object is a table value)", file);
  assert_string_equal(err, want);
  assert_int_equal(eng__lua_compile(h, "error('plain', 0)", ENG__LUA_CHUNK, file, 60,
                                    &ref, err, sizeof err), ENG_OK);
  assert_int_equal(eng__lua_eval(h, ref, NULL, &res, err, sizeof err), ENG_ERR_FAILED);
  snprintf(want, sizeof want, "%s:60: plain", file);
  assert_string_equal(err, want);
  /* engine.fail keeps its text exactly */
  assert_int_equal(eng__lua_compile(h, "engine.fail('too old')", ENG__LUA_CHUNK,
                                    file, 70, &ref, err, sizeof err), ENG_OK);
  assert_int_equal(eng__lua_eval(h, ref, NULL, &res, err, sizeof err), ENG_ERR_FAILED);
  assert_string_equal(err, "too old");
  /* an error a hook catches reads the same: pcall, xpcall */
  assert_int_equal(eng__lua_compile(h, "local ok, e = pcall(function() return nil + 1 end)\n"
                                       "local _, x = xpcall(function() error('bad') end,\n"
                                       "  function(m) return 'H:' .. m end)\n"
                                       "local t = {pcall(error, {})}\n"
                                       "return ok, e, x, type(t[2]), select('#', pcall(math.abs, -1))",
                                    ENG__LUA_CHUNK, file, 80, &ref, err, sizeof err), ENG_OK);
  assert_int_equal(eng__lua_eval(h, ref, NULL, &res, err, sizeof err), ENG_OK);
  assert_true(json_is_false(json_array_get(res, 0)));
  snprintf(want, sizeof want, "%s:80: attempt to perform arithmetic on a nil value", file);
  assert_string_equal(json_string_value(json_array_get(res, 1)), want);
  snprintf(want, sizeof want, "H:%s:81: bad", file);
  assert_string_equal(json_string_value(json_array_get(res, 2)), want);
  assert_string_equal(json_string_value(json_array_get(res, 3)), "table");
  assert_int_equal(json_integer_value(json_array_get(res, 4)), 2);
  json_decref(res);
  eng__lua_destroy(h);
}

static void test_dashed_step_ids(void **state) {
  (void)state;
  eng__lua *h = t_new(0, 0, NULL, NULL);
  json_t *o = json_pack("{s:i}", "n", 42);
  eng__lua_set_step(h, "drop-drill-db", "ok", o);
  json_decref(o);
  t_true(h, "steps.drop_drill_db.outputs.n == 42");
  t_true(h, "rawequal(steps['drop-drill-db'], steps.drop_drill_db)");
  eng__lua_set_step(h, "drop-drill-db", "failed", NULL);
  t_true(h, "steps.drop_drill_db.status == 'failed'");
  char err[512];
  t_error(h, "steps.drop_drill_db.outputs.n", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "reference to steps.drop-drill-db.outputs.n does not exist");
  eng__lua_destroy(h);
}

static void test_success_failure(void **state) {
  (void)state;
  eng__lua *h = t_new(0, 0, NULL, NULL);
  t_true(h, "success() and not failure() and always()");
  const char *good[] = {"ok", "skipped", "warn"};
  eng__lua_set_deps(h, good, 3);
  t_true(h, "success() and not failure()");
  const char *bad[] = {"ok", "failed"};
  eng__lua_set_deps(h, bad, 2);
  t_true(h, "not success() and failure() and always()");
  const char *to[] = {"timed_out"};
  eng__lua_set_deps(h, to, 1);
  t_true(h, "failure()");
  const char *refused[] = {"refused", "cancelled"};
  eng__lua_set_deps(h, refused, 2);
  t_true(h, "failure() and not success()");
  eng__lua_destroy(h);
}

static void test_syntax_error(void **state) {
  (void)state;
  eng__lua *h = t_new(0, 0, NULL, NULL);
  char err[256] = "";
  int ref = -1;
  assert_int_equal(eng__lua_compile(h, "1 + + 2 )", ENG__LUA_EXPR,
                                    "runbooks/x.yaml", 12, &ref, err,
                                    sizeof err), ENG_ERR_INVALID);
  t_contains(err, "runbooks/x.yaml:12:");
  t_contains(err, "unexpected symbol near '+'");
  assert_int_equal(eng__lua_compile(h, "local a = 1\nlocal = 2\n",
                                    ENG__LUA_CHUNK, "runbooks/x.yaml", 30,
                                    &ref, err, sizeof err), ENG_ERR_INVALID);
  t_contains(err, "runbooks/x.yaml:31:");
  /* runtime errors carry the runbook line too */
  assert_int_equal(eng__lua_compile(h, "local a = 1\nerror('bad')",
                                    ENG__LUA_CHUNK, "runbooks/x.yaml", 40,
                                    &ref, err, sizeof err), ENG_OK);
  assert_int_equal(eng__lua_eval(h, ref, NULL, NULL, err, sizeof err),
                   ENG_ERR_FAILED);
  t_contains(err, "runbooks/x.yaml:41: bad");
  /* an expression ending in a comment */
  json_t *v = t_value(h, "1 -- one");
  assert_int_equal(json_integer_value(v), 1);
  json_decref(v);
  /* identical compiles are cached */
  int r1 = -1, r2 = -2;
  assert_int_equal(eng__lua_compile(h, "2 * 3", ENG__LUA_EXPR, "f", 1, &r1,
                                    err, sizeof err), ENG_OK);
  assert_int_equal(eng__lua_compile(h, "2 * 3", ENG__LUA_EXPR, "f", 1, &r2,
                                    err, sizeof err), ENG_OK);
  assert_int_equal(r1, r2);
  assert_int_equal(eng__lua_compile(h, "2 * 3", ENG__LUA_EXPR, "f", 2, &r2,
                                    err, sizeof err), ENG_OK);
  assert_int_not_equal(r1, r2);
  eng__lua_destroy(h);
}

static void test_budget(void **state) {
  (void)state;
  eng__lua *h = t_new(0, 200, NULL, NULL);
  char err[1024] = "";
  uint64_t t0 = uv_hrtime();
  t_error(h, "while true do end", ENG__LUA_CHUNK, err, sizeof err);
  t_contains(err, "instruction budget exceeded (0.2 s of execution)");
  assert_true(uv_hrtime() - t0 < 5000000000ull);
  /* a pcall in the script cannot swallow it */
  t_error(h, "while true do pcall(function() while true do end end) end",
          ENG__LUA_CHUNK, err, sizeof err);
  t_contains(err, "instruction budget exceeded");
  /* finalizers run with hooks off: refused */
  t_error(h, "setmetatable({}, {__gc = function() while true do end end})",
          ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "__gc metamethods are not allowed");
  t_true(h, "getmetatable(setmetatable({}, {__index = {a = 1}})).__index.a "
            "== 1");
  /* the budget is per evaluation */
  json_t *v = t_value(h, "1 + 1");
  assert_int_equal(json_integer_value(v), 2);
  json_decref(v);
  eng__lua_destroy(h);

  /* default budget message */
  h = t_new(0, 0, NULL, NULL);
  eng__lua_destroy(h);
}

/* Pattern matching backtracks in C, where the count hook cannot stop it
 * ("a?" x30 .. "a" x30 on "a" x30 takes minutes): the sandbox's matcher
 * (lua_match.c) checks the budget as it works, for every pattern function
 * and the methods of strings, also when a pcall in the script catches the
 * error. */
static void test_pattern_budget(void **state) {
  (void)state;
  eng__lua *h = t_new(0, 200, NULL, NULL);
  static const char *const costly[] = {
      "return ('a'):rep(30):find(('a?'):rep(30) .. ('a'):rep(30))",
      "return string.find(('a'):rep(30), ('a?'):rep(30) .. ('a'):rep(30))",
      "return string.match(('a'):rep(30), ('a?'):rep(30) .. ('a'):rep(30))",
      "for m in ('a'):rep(30):gmatch(('a?'):rep(30) .. ('a'):rep(30)) do end",
      "return string.gsub(('a'):rep(30), ('a?'):rep(30) .. ('a'):rep(30), '')",
      "return string.rep('a', 1e5):find('.-.-.-.-b')",
      "return string.gsub(string.rep('a', 1e5), 'a*b', '')",
      "return string.rep('a', 2e4):find('(a*)%1%1b')",
      "return string.rep('(', 1e5):gsub('%b()', '')",
      /* plain search: length of the subject times that of the text */
      "return string.rep('a', 2e6):find(string.rep('a', 1e6) .. 'b', 1, true)",
      "return string.rep('a', 2e6):find(string.rep('a', 1e6) .. 'b')",
      "for i = 1, 100 do pcall(string.find, ('a'):rep(30), "
      "('a?'):rep(30) .. ('a'):rep(30)) end",
  };
  char err[1024] = "";
  for (size_t i = 0; i < sizeof costly / sizeof *costly; i++) {
    uint64_t t0 = uv_hrtime();
    t_error(h, costly[i], ENG__LUA_CHUNK, err, sizeof err);
    uint64_t took = uv_hrtime() - t0;
    if (strstr(err, "instruction budget exceeded (0.2 s of execution)") == NULL)
      fail_msg("case %zu: %s", i, err);
    /* 0.2 s of budget; room for sanitizers on a busy machine */
    if (took > 2000000000ull)
      fail_msg("case %zu stopped after %.2f s", i, (double)took / 1e9);
  }
  /* a signal stops a match at once, whatever the budget */
  eng__lua_interrupt = 1;
  t_error(h, "return ('a'):rep(30):find(('a?'):rep(30) .. ('a'):rep(30))",
          ENG__LUA_CHUNK, err, sizeof err);
  eng__lua_interrupt = 0;
  t_contains(err, "interrupted (SIGINT or SIGTERM)");
  /* everyday patterns */
  t_true(h, "('v15.2'):match('^v(%d+)%.(%d+)') == '15'");
  t_true(h, "('2026-11-29T22:20:01.5Z'):match("
            "'^(%d+)-(%d+)-(%d+)T(%d+):(%d+):(%d+)') == '2026'");
  t_true(h, "select(2, string.rep('ab ', 3000):gsub('[^a-z0-9]', '_')) == 3000");
  t_true(h, "select(2, string.rep('ab ', 1000):gsub('%s+', '')) == 1000");
  t_true(h, "string.rep('a', 1e5):find('.-.-b', 1, true) == nil");
  t_true(h, "string.find(string.rep('x', 1e6) .. 'y', 'y', 1, true) == 1000001");
  t_true(h, "select(2, string.rep('a', 1e5):gsub('.-', 'x')) == 100001");
  eng__lua_destroy(h);
}

/* ---- our matcher against liblua's ------------------------------------------
 * The same calls in two plain states, one with liblua's string functions,
 * one with lua_match.c's; the serialized results (values and their types,
 * or the error message) must be identical. */

static unsigned long t_checks; /* calls of t_check */
static long t_stop_in;         /* t_check raises when this reaches 0 */

static int t_check(lua_State *L) {
  t_checks++;
  if (t_stop_in > 0 && --t_stop_in == 0)
    return luaL_error(L, "stopped by the check");
  return 0;
}

/* op, subject, pattern, a, b -> "ok v1 v2..." or "err message" */
static const char t_diff_chunk[] =
    "local op, s, p, a, b = ...\n"
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
    "local rt = {a = 'A', b = false, ab = 2, ['1'] = 'one', [1] = 'pos',\n"
    "            [''] = 'E', c = {}, ['('] = 1.5}\n"
    "local function rf(x, ...)\n"
    "  if x == 'a' then return false end\n"
    "  if x == 'c' then return {} end\n"
    "  if x == 'b' then return 7 end\n"
    "  return '<' .. tostring(x) .. select('#', ...) .. '>'\n"
    "end\n"
    "if op == 'find' then return ser(pcall(string.find, s, p, a, b)) end\n"
    "if op == 'match' then return ser(pcall(string.match, s, p, a)) end\n"
    "if op == 'gmatch' then return ser(pcall(function()\n"
    "  local out, it = {}, string.gmatch(s, p, a)\n"
    "  for i = 1, 64 do\n"
    "    local r = table.pack(it())\n"
    "    if r.n == 0 then break end\n"
    "    out[#out + 1] = ser(true, table.unpack(r, 1, r.n))\n"
    "  end\n"
    "  return table.concat(out, ';')\n"
    "end)) end\n"
    "if op == 'gsub' then return ser(pcall(string.gsub, s, p, a, b)) end\n"
    "if op == 'gsub_t' then return ser(pcall(string.gsub, s, p, rt, b)) end\n"
    "if op == 'gsub_f' then return ser(pcall(string.gsub, s, p, rf, b)) end\n"
    "if op == 'method' then return ser(pcall(function()\n"
    "  return s:find(p, a), s:match(p, a), (s:gsub(p, '[%0]')), s:gmatch(p)()\n"
    "end)) end\n"
    "error('unknown op ' .. op)\n";

/* An argument: nil, an integer, a string or a boolean. */
typedef struct t_arg {
  char kind; /* 0 nil, 'i', 's', 'b' */
  lua_Integer i;
  const char *s;
} t_arg;

static void t_push_arg(lua_State *L, t_arg a) {
  switch (a.kind) {
  case 'i': lua_pushinteger(L, a.i); break;
  case 's': lua_pushstring(L, a.s); break;
  case 'b': lua_pushboolean(L, (int)a.i); break;
  default: lua_pushnil(L); break;
  }
}

static lua_State *t_plain_state(int ours) {
  lua_State *L = luaL_newstate();
  assert_non_null(L);
  luaL_openlibs(L);
  if (ours)
    eng__lh_open_match(L, t_check);
  assert_int_equal(luaL_loadbuffer(L, t_diff_chunk, sizeof t_diff_chunk - 1,
                                   "=diff"), LUA_OK);
  return L; /* the chunk at index 1 */
}

/* The serialized result of one call, malloc'd. */
static char *t_diff_one(lua_State *L, const char *op, const char *s,
                        size_t ls, const char *p, size_t lp, t_arg a,
                        t_arg b) {
  lua_pushvalue(L, 1);
  lua_pushstring(L, op);
  lua_pushlstring(L, s, ls);
  lua_pushlstring(L, p, lp);
  t_push_arg(L, a);
  t_push_arg(L, b);
  if (lua_pcall(L, 5, 1, 0) != LUA_OK)
    fail_msg("the differential chunk failed: %s", lua_tostring(L, -1));
  size_t n;
  const char *r = lua_tolstring(L, -1, &n);
  char *out = malloc(n + 1);
  assert_non_null(out);
  memcpy(out, r, n + 1);
  lua_pop(L, 1);
  return out;
}

/* Pattern (or subject) bytes as C source, for failure messages. */
static const char *t_escape(const char *s, size_t n, char *buf, size_t len) {
  size_t o = 0;
  for (size_t i = 0; i < n && o + 5 < len; i++) {
    unsigned char c = (unsigned char)s[i];
    o += (size_t)snprintf(buf + o, len - o, c >= 32 && c < 127 && c != '\\'
                                               ? "%c" : "\\x%02x", c);
  }
  buf[o] = '\0';
  return buf;
}

typedef struct t_diff {
  lua_State *liblua, *ours;
  size_t compared, errors; /* calls compared; of them, raising errors */
} t_diff;

static void t_diff_call(t_diff *d, const char *op, const char *s, size_t ls,
                        const char *p, size_t lp, t_arg a, t_arg b) {
  char *want = t_diff_one(d->liblua, op, s, ls, p, lp, a, b);
  char *got = t_diff_one(d->ours, op, s, ls, p, lp, a, b);
  if (strcmp(want, got) != 0) {
    char bs[256], bp[256];
    fail_msg("%s(\"%s\", \"%s\"): liblua gives\n  %s\nours\n  %s", op,
             t_escape(s, ls, bs, sizeof bs), t_escape(p, lp, bp, sizeof bp),
             want, got);
  }
  d->compared++;
  d->errors += strncmp(want, "err", 3) == 0;
  free(want);
  free(got);
}

/* Every operation on one subject and pattern. */
static void t_diff_all(t_diff *d, const char *s, size_t ls, const char *p,
                       size_t lp, t_arg init, t_arg repl, t_arg max) {
  static const t_arg none = {0, 0, NULL}, yes = {'b', 1, NULL};
  t_diff_call(d, "find", s, ls, p, lp, init, none);
  t_diff_call(d, "find", s, ls, p, lp, init, yes);
  t_diff_call(d, "match", s, ls, p, lp, init, none);
  t_diff_call(d, "gmatch", s, ls, p, lp, init, none);
  t_diff_call(d, "gsub", s, ls, p, lp, repl, max);
  t_diff_call(d, "gsub_t", s, ls, p, lp, none, max);
  t_diff_call(d, "gsub_f", s, ls, p, lp, none, max);
  t_diff_call(d, "method", s, ls, p, lp, init, none);
}

/* Subjects and patterns written for each rule of the manual (§6.4.1) and
 * its errors. */
static void t_diff_written(t_diff *d) {
  static const char *const cases[][2] = {
      {"hello world from Lua", "%a+"},
      {"THE (quick) fox", "%f[%a]%a+"},
      {"THE (quick) fox", "%f[%l]%a+"},
      {"x = 1, y = 2", "(%w+)%s*=%s*(%w+)"},
      {"hello world", "()ll()"},
      {"[[x]] [==[y]==]", "%[(=*)%[(.-)%]%1%]"},
      {"abc", "^(a)(b)$"},
      {"abc", "^(a)(bc)$"},
      {"f(a(b)c) (d", "%b()"},
      {"if x then y end", "%bie"},
      {"key = value", "(%w+) = (%w+)$"},
      {"  trim me  ", "^%s*(.-)%s*$"},
      {"a,b,,c", "([^,]*)"},
      {"a.b-c+d*e?f", "[%.%-%+%*%?]"},
      {"]x]", "[]]"},
      {"]x]", "[^]]+"},
      {"a-z", "[a-]+"},
      {"a-z", "[%a-z]+"},
      {"\x01\x02 abc\x7f\xff", "%c+"},
      {"\x01\x02 abc\x7f\xff", "[\x80-\xff]"},
      {"0x1F zz", "%x+"},
      {"A1_b2", "[%u%d]+"},
      {"A1_b2", "%W"},
      {"hello", ""},
      {"", ""},
      {"", "x*"},
      {"abc", "$"},
      {"a$b", "a$b"},
      {"a^b", "a^b"},
      {"^ab", "^^a"},
      {"aaa", "a-b"},
      {"aaab", "a-b"},
      {"aaab", "a*?"},
      {"aaa", "(a*(.)%w(%s*))"},
      {"hello", "(h)(e)(l)(l)(o)%5%4"},
      {"abcabc", "(abc)%1"},
      {"abab", "((a)(b))%1%2%3"},
      {"THE END", "%f[%z]"},
      {"THE END", "%f[%Z]"},
      {"x", "%f[%w]x%f[%W]"},
      {"ab", "%f[]a"},
      /* malformed patterns and other errors */
      {"abc", "%"},
      {"abc", "a%"},
      {"abc", "[a"},
      {"abc", "[a%"},
      {"abc", "[%"},
      {"abc", "[^"},
      {"abc", "[]"},
      {"abc", "(()"},
      {"abc", "(a"},
      {"abc", "a)"},
      {"abc", ")"},
      {"abc", "%b"},
      {"abc", "%ba"},
      {"abc", "%f"},
      {"abc", "%fa"},
      {"abc", "%f[a"},
      {"abc", "%1"},
      {"abc", "%0"},
      {"abc", "(a)%2"},
      {"abc", "(a%1)"},
      {"abc", "()%1"},
      {"abc", "%g(%d)%9"},
  };
  static const t_arg none = {0, 0, NULL};
  static const t_arg repls[] = {{'s', 0, "<%0>"}, {'s', 0, "%2-%1"},
                                {'s', 0, "%%"},   {'s', 0, "%"},
                                {'s', 0, "x%y"},  {'s', 0, "%9"},
                                {'i', 42, NULL},  {'s', 0, "[%1]"},
                                {'b', 1, NULL}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const char *s = cases[i][0], *p = cases[i][1];
    for (size_t r = 0; r < sizeof repls / sizeof *repls; r++) {
      t_arg max = {r % 3 == 0 ? 0 : 'i', (lua_Integer)r - 2, NULL};
      t_diff_call(d, "gsub", s, strlen(s), p, strlen(p), repls[r], max);
    }
    t_diff_all(d, s, strlen(s), p, strlen(p), none, repls[0], none);
  }
  /* NUL bytes in subjects and patterns */
  t_diff_all(d, "a\0b\0c", 5, "%z", 2, none, repls[0], none);
  t_diff_all(d, "a\0b\0c", 5, "\0", 1, none, repls[0], none);
  t_diff_all(d, "a\0b\0c", 5, "[\0b]+", 5, none, repls[0], none);
  t_diff_all(d, "a\0b\0c", 5, "%f[%z]", 6, none, repls[0], none);
  t_diff_all(d, "a\0b\0c", 5, "b\0c$", 4, none, repls[0], none);
  /* limits shared with liblua: 32 captures, 200 nested calls */
  char p[512], s[512];
  memset(s, 'a', 300);
  for (int n = 31; n <= 33; n++) {
    for (int i = 0; i < n; i++)
      memcpy(p + 2 * i, "()", 2);
    t_diff_all(d, s, 10, p, (size_t)(2 * n), none, repls[0], none);
  }
  for (int n = 190; n <= 210; n += 5) {
    for (int i = 0; i < n; i++)
      memcpy(p + 2 * i, "a?", 2);
    t_diff_all(d, s, (size_t)n, p, (size_t)(2 * n), none, repls[0], none);
    t_diff_all(d, s, (size_t)n, p, (size_t)n, none, repls[0], none);
  }
  /* long enough to be checked (every few thousand steps) */
  t_diff_all(d, s, 100, ".-.-b", 5, none, repls[0], none);
  t_diff_all(d, s, 100, "(a*)%1$", 7, none, repls[0], none);
  /* arguments: starts, counts, replacement types */
  static const lua_Integer starts[] = {-100, -4, -1, 0, 1, 2, 3, 4, 5, 100};
  for (size_t i = 0; i < sizeof starts / sizeof *starts; i++) {
    t_arg at = {'i', starts[i], NULL};
    t_diff_all(d, "abc", 3, "", 0, at, repls[0], at);
    t_diff_all(d, "abc", 3, "b", 1, at, repls[0], at);
    t_diff_all(d, "abc", 3, "^b", 2, at, repls[0], at);
    t_diff_all(d, "abc", 3, "()", 2, at, repls[0], at);
  }
  t_arg bad = {'s', 0, "x"};
  t_diff_all(d, "abc", 3, "b", 1, bad, bad, bad);
  t_diff_call(d, "gsub", "abc", 3, "b", 1, none, none);
  t_diff_call(d, "gsub", "abc", 3, "b", 1, (t_arg){'b', 0, NULL}, none);
}

/* A random pattern of up to 8 items and a subject of up to 10 bytes. */
static uint64_t t_rand_state = 0x9e3779b97f4a7c15ull;
static unsigned t_rand(unsigned n) {
  t_rand_state = t_rand_state * 6364136223846793005ull + 1442695040888963407ull;
  return (unsigned)(t_rand_state >> 33) % n;
}

#define T_TOK(x) {x, sizeof x - 1}
static const struct {
  const char *s;
  size_t n;
} t_tokens[] = {
    T_TOK("a"),    T_TOK("b"),     T_TOK("c"),      T_TOK("."),
    T_TOK("%a"),   T_TOK("%A"),    T_TOK("%d"),     T_TOK("%s"),
    T_TOK("%S"),   T_TOK("%w"),    T_TOK("%p"),     T_TOK("%x"),
    T_TOK("%c"),   T_TOK("%g"),    T_TOK("%l"),     T_TOK("%u"),
    T_TOK("%U"),   T_TOK("%."),    T_TOK("%%"),     T_TOK("%z"),
    T_TOK("[ab]"), T_TOK("[^a]"),  T_TOK("[a-c]"),  T_TOK("[%a_]"),
    T_TOK("[]]"),  T_TOK("[^]]"),  T_TOK("[a-]"),   T_TOK("[%]]"),
    T_TOK("["),    T_TOK("]"),     T_TOK("("),      T_TOK(")"),
    T_TOK("()"),   T_TOK("%1"),    T_TOK("%2"),     T_TOK("%0"),
    T_TOK("%b()"), T_TOK("%bab"),  T_TOK("%f[%w]"), T_TOK("%f[a]"),
    T_TOK("%f[^a]"), T_TOK("%f"),  T_TOK("%b"),     T_TOK("*"),
    T_TOK("+"),    T_TOK("-"),     T_TOK("?"),      T_TOK("^"),
    T_TOK("$"),    T_TOK("%"),     T_TOK("\0"),     T_TOK("a*"),
    T_TOK(".-"),   T_TOK("a?"),    T_TOK("(a)"),    T_TOK("(.-)"),
};

static void t_diff_random(t_diff *d, size_t rounds) {
  static const char alphabet[] = "aabbc ()_.A1%]\0\n";
  static const t_arg repls[] = {{'s', 0, "<%0>"}, {'s', 0, "%1%2"},
                                {'s', 0, "%%"},   {'s', 0, "x%"},
                                {'i', 7, NULL}};
  char p[128], s[16];
  for (size_t r = 0; r < rounds; r++) {
    size_t lp = 0, ls = t_rand(11);
    for (unsigned k = 0, n = t_rand(9); k < n; k++) {
      unsigned t = t_rand(sizeof t_tokens / sizeof *t_tokens);
      memcpy(p + lp, t_tokens[t].s, t_tokens[t].n);
      lp += t_tokens[t].n;
    }
    for (size_t k = 0; k < ls; k++)
      s[k] = alphabet[t_rand(sizeof alphabet - 1)];
    t_arg init = {0, 0, NULL}, max = {0, 0, NULL};
    if (t_rand(3) == 0)
      init = (t_arg){'i', (lua_Integer)t_rand(15) - 7, NULL};
    if (t_rand(3) == 0)
      max = (t_arg){'i', (lua_Integer)t_rand(4), NULL};
    t_diff_all(d, s, ls, p, lp, init, repls[t_rand(5)], max);
  }
}

#define T_DIFF_ROUNDS 20000

static void test_pattern_differential(void **state) {
  (void)state;
  t_diff d = {t_plain_state(0), t_plain_state(1), 0, 0};
  t_checks = 0;
  t_diff_written(&d);
  t_diff_random(&d, T_DIFF_ROUNDS);
  /* the work was counted: long enough calls checked the limits */
  assert_true(t_checks > 0);
  /* the comparison is not vacuous: both values and errors were compared */
  assert_true(d.errors > 100 && d.errors < d.compared / 2);
  print_message("pattern functions: %zu calls compared with liblua's (%zu "
                "errors), %lu checks\n", d.compared, d.errors, t_checks);
  lua_close(d.liblua);
  lua_close(d.ours);
}

/* The check stops every pattern function, whatever the pattern costs. */
static void test_pattern_check(void **state) {
  (void)state;
  lua_State *L = t_plain_state(1);
  static const char *const costly[] = {
      "return ('a'):rep(30):find(('a?'):rep(30) .. ('a'):rep(30))",
      "return ('a'):rep(30):match(('a?'):rep(30) .. ('a'):rep(30))",
      "for m in ('a'):rep(30):gmatch(('a?'):rep(30) .. ('a'):rep(30)) do end",
      "return ('a'):rep(30):gsub(('a?'):rep(30) .. ('a'):rep(30), '%0')",
      "return ('a'):rep(40):gsub('a?a?a?a?a?a?a?a?a?a?a?a?a?a?a?a?a?a?a?a?b',"
      " function() end)",
      "return string.rep('(', 1e5):gsub('%b()', '')",
      "return string.rep('a', 1e5):find('(a*)%1b')",
      "return string.rep('a', 1e6):find(string.rep('a', 1e5) .. 'b', 1, true)",
  };
  for (size_t i = 0; i < sizeof costly / sizeof *costly; i++) {
    t_stop_in = 100;
    assert_int_equal(luaL_loadstring(L, costly[i]), LUA_OK);
    if (lua_pcall(L, 0, 0, 0) == LUA_OK)
      fail_msg("case %zu ran to its end", i);
    t_contains(lua_tostring(L, -1), "stopped by the check");
    assert_int_equal(t_stop_in, 0);
    lua_pop(L, 1);
  }
  lua_close(L);
}

static void test_memory_bomb(void **state) {
  (void)state;
  eng__lua *h = t_new((size_t)32 << 20, 0, NULL, NULL);
  char err[1024] = "";
  t_error(h, "local t={} for i=1,1e9 do t[i]=string.rep('x',1000) end",
          ENG__LUA_CHUNK, err, sizeof err);
  t_contains(err, "not enough memory");
  /* one huge allocation too */
  t_error(h, "string.rep('x', 1 << 30)", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "not enough memory");
  /* still usable, memory was given back */
  t_true(h, "#string.rep('y', 8 * 1024 * 1024) == 8 * 1024 * 1024");
  json_t *v = t_value(h, "1 + 1");
  assert_int_equal(json_integer_value(v), 2);
  json_decref(v);
  eng__lua_destroy(h);
}

static void test_sandbox(void **state) {
  (void)state;
  eng__lua *h = t_new(0, 0, NULL, NULL);
  t_true(h, "io == nil and os == nil and debug == nil and package == nil");
  t_true(h, "dofile == nil and loadfile == nil and coroutine == nil");
  t_true(h, "string.dump == nil and warn == nil");
  t_true(h, "type(string) == 'table' and type(table) == 'table' and "
            "type(math) == 'table' and type(utf8) == 'table'");
  t_true(h, "load('return 1 + 1')() == 2");
  t_true(h, "load('return x', 'c', 't', {x = 5})() == 5");
  json_t *v = t_value(h, "select(2, load('\\27Lua\\x54\\0junk'))");
  assert_true(json_is_string(v));
  t_contains(json_string_value(v), "binary");
  json_decref(v);
  t_true(h, "load('\\27Lua\\x54\\0junk') == nil");
  t_true(h, "(function() print('hello from the sandbox') return true end)()");
  eng__lua_destroy(h);
}

static void t_write(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_require(void **state) {
  (void)state;
  char root[] = "/tmp/test_lua_host_XXXXXX";
  assert_non_null(mkdtemp(root));
  char rb[256], lib[256], p[512];
  snprintf(rb, sizeof rb, "%s/rb", root);
  snprintf(lib, sizeof lib, "%s/lib", root);
  mkdir(rb, 0700);
  snprintf(p, sizeof p, "%s/lua", rb);
  mkdir(p, 0700);
  snprintf(p, sizeof p, "%s/lua/mymod", rb);
  mkdir(p, 0700);
  snprintf(p, sizeof p, "%s/lua/mymod/util.lua", rb);
  t_write(p, "loads = (loads or 0) + 1\nreturn {x = 42}\n");
  snprintf(p, sizeof p, "%s/lua/broken.lua", rb);
  t_write(p, "return {\n");
  mkdir(lib, 0700);
  snprintf(p, sizeof p, "%s/engine", lib);
  mkdir(p, 0700);
  snprintf(p, sizeof p, "%s/engine/checks.lua", lib);
  t_write(p, "return {name = 'lib', util = require('mymod.util')}\n");
  /* a file outside both directories */
  snprintf(p, sizeof p, "%s/x.lua", root);
  t_write(p, "return 1\n");

  eng__lua *h = t_new(0, 0, rb, lib);
  char err[1024];
  t_true(h, "require('mymod.util').x == 42");
  t_true(h, "require('engine.checks').name == 'lib'");
  t_true(h, "rawequal(require('mymod.util'), require('engine.checks').util)");
  t_true(h, "loads == 1");
  t_error(h, "require('../x')", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "invalid module name '../x'");
  t_error(h, "require('a/b')", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "invalid module name");
  t_error(h, "require('.x')", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "invalid module name");
  t_error(h, "require('nope')", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "module 'nope' not found");
  t_error(h, "require('broken')", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "broken.lua:");
  /* a module's error names its whole path, whatever its length */
  snprintf(p, sizeof p, "%s/lua/a-module-with-a-name-long-enough-to-be-cut-by-lua.lua", rb);
  t_write(p, "local M = {}\nfunction M.f()\n  return nil + 1\nend\nreturn M\n");
  t_error(h, "require('a-module-with-a-name-long-enough-to-be-cut-by-lua').f()",
          ENG__LUA_EXPR, err, sizeof err);
  char want[600];
  snprintf(want, sizeof want, "%s:3: attempt to perform arithmetic on a nil value", p);
  t_contains(err, want);
  assert_null(strstr(err, "..."));
  eng__lua_destroy(h);

  snprintf(p, sizeof p, "rm -rf '%s'", root);
  assert_int_equal(system(p), 0);
}

static void test_json(void **state) {
  (void)state;
  eng__lua *h = t_new(0, 0, NULL, NULL);
  json_t *v = t_value(h,
                      "json.encode(json.decode('{\"c\":1.5,\"a\":[1,2,{\"b\":"
                      "null}],\"s\":\"\\\\u00e9\"}'))");
  assert_string_equal(json_string_value(v),
                      "{\"a\":[1,2,{\"b\":null}],\"c\":1.5,\"s\":\"\xc3\xa9\"}");
  json_decref(v);
  t_true(h, "json.encode({}) == '{}' and json.encode({1, 2}) == '[1,2]'");
  t_true(h, "json.encode({[1] = 'a', [3] = 'c'}) == '{\"1\":\"a\",\"3\":\"c\"}'");
  t_true(h, "json.decode('null') == json.null");
  t_true(h, "json.decode('[true, 3]')[2] == 3 and "
            "math.type(json.decode('3')) == 'integer'");
  /* decoded objects are plain tables: a missing key is nil */
  t_true(h, "json.decode('{}').missing == nil");
  char err[512];
  t_error(h, "json.encode(print)", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "cannot convert a function to JSON");
  t_error(h, "json.encode({[true] = 1})", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "boolean key");
  t_error(h, "local t = {} t.t = t return json.encode(t)", ENG__LUA_CHUNK,
          err, sizeof err);
  t_contains(err, "nesting deeper than 64");
  t_error(h, "json.decode('{bad')", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "json.decode:");
  /* a cyclic result of an evaluation */
  t_error(h, "local t = {} t[1] = t return t", ENG__LUA_CHUNK, err,
          sizeof err);
  t_contains(err, "nesting deeper than 64");
  eng__lua_destroy(h);
}

static void test_locals_restored(void **state) {
  (void)state;
  eng__lua *h = t_new(0, 0, NULL, NULL);
  json_t *run = json_pack("{s:s}", "id", "20240101-000000-abcd");
  eng__lua_set_global(h, "run", run);
  json_decref(run);
  json_t *locals = json_pack("{s:{s:i}, s:{s:s}}", "outputs", "rows", 5,
                             "run", "id", "tmp");
  json_t *res = NULL;
  char err[512] = "";
  assert_int_equal(t_eval(h, "outputs.rows * 2 .. run.id", ENG__LUA_EXPR,
                          locals, &res, err, sizeof err), ENG_OK);
  assert_string_equal(json_string_value(json_array_get(res, 0)), "10tmp");
  json_decref(res);
  /* restored even after an error */
  assert_int_equal(t_eval(h, "outputs.nope", ENG__LUA_EXPR, locals, &res, err,
                          sizeof err), ENG_ERR_FAILED);
  t_contains(err, "reference to outputs.nope does not exist");
  json_decref(locals);
  t_true(h, "rawget(_G, 'outputs') == nil");
  t_true(h, "run.id == '20240101-000000-abcd'");
  eng__lua_destroy(h);
}

/* ---- eng__lua_run ----------------------------------------------------------- */

typedef struct t_result {
  int calls;
  int rc;
  json_t *results;
  char err[2048];
} t_result;

static void t_done_cb(void *ud, int rc, json_t *results, const char *err) {
  t_result *r = ud;
  r->calls++;
  r->rc = rc;
  json_decref(r->results);
  r->results = results;
  snprintf(r->err, sizeof r->err, "%s", err ? err : "");
}

static void t_loop_close(void) {
  uv_run(t_loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(t_loop), 0);
  free(t_loop);
  t_loop = NULL;
}

static void t_loop_open(void) {
  t_loop = malloc(sizeof *t_loop);
  assert_int_equal(uv_loop_init(t_loop), 0);
}

static struct eng_call t_step; /* the step's call (address and deadline) */

static int t_run(eng__lua *h, const char *code, const json_t *locals,
                 t_result *r) {
  struct eng_call *step = &t_step;
  char err[512] = "";
  int ref = -1;
  int rc = eng__lua_compile(h, code, ENG__LUA_CHUNK, "runbooks/r.yaml", 20,
                            &ref, err, sizeof err);
  if (rc != ENG_OK)
    fail_msg("%s", err);
  return eng__lua_run(h, ref, locals, step, t_done_cb, r);
}

/* The step's deadline stops a busy coroutine within moments of falling
 * due, with ENG_ERR_TIMEOUT, also when each instruction is a long call
 * into C (the count hook alone would wait for 1000 of them) and when a
 * pcall in the script catches the error; the budget is not involved. */
static void test_run_deadline(void **state) {
  (void)state;
  t_loop_open();
  eng__lua *h = t_new(0, 60000, NULL, NULL);
  static const char *const busy[] = {
      "while true do end",
      "local t = {} for i = 1, 3e5 do t[i] = (i * 7919) % 300007 end\n"
      "while true do table.sort(t) end",
      "local s = string.rep('a', 4000)\n"
      "while true do s:find('.-b') end",
      "return ('a'):rep(30):find(('a?'):rep(30) .. ('a'):rep(30))",
      "for m in ('a'):rep(30):gmatch(('a?'):rep(30) .. ('a'):rep(30)) do end",
      "while true do pcall(function() while true do end end) end",
  };
  for (size_t i = 0; i < sizeof busy / sizeof *busy; i++) {
    t_result r = {0};
    uint64_t t0 = uv_hrtime();
    t_step.deadline = t0 + 300000000ull;
    assert_int_equal(t_run(h, busy[i], NULL, &r), ENG_OK);
    uint64_t took = uv_hrtime() - t0;
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.rc, ENG_ERR_TIMEOUT);
    t_contains(r.err, "the step's timeout ran out while Lua was running");
    if (took > 2000000000ull)
      fail_msg("case %zu stopped %.2f s after its 0.3 s deadline", i,
               (double)took / 1e9);
    json_decref(r.results);
  }
  /* an error before the deadline stays an ordinary failure */
  t_step.deadline = uv_hrtime() + 60000000000ull;
  t_result r = {0};
  assert_int_equal(t_run(h, "error('plain')", NULL, &r), ENG_OK);
  assert_int_equal(r.rc, ENG_ERR_FAILED);
  t_step.deadline = 0;
  /* the state is usable afterwards */
  t_true(h, "1 + 1 == 2");
  eng__lua_destroy(h);
  t_loop_close();
}

static void test_run_yields(void **state) {
  (void)state;
  t_loop_open();
  eng__lua *h = t_new(0, 0, NULL, NULL);
  t_result r = {0};
  assert_int_equal(t_run(h,
                         "local a = fake.add(1, 2)\n"
                         "local b = fake.add(a, 10)\n"
                         "engine.log('sum ' .. b)\n"
                         "return a, b, fake.now(5)\n",
                         NULL, &r), ENG_OK);
  assert_int_equal(r.calls, 0); /* yielded: waiting for the timer */
  uv_run(t_loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.rc, ENG_OK);
  assert_int_equal(json_array_size(r.results), 3);
  assert_int_equal(json_integer_value(json_array_get(r.results, 0)), 3);
  assert_int_equal(json_integer_value(json_array_get(r.results, 1)), 13);
  assert_int_equal(json_integer_value(json_array_get(r.results, 2)), 5);
  assert_string_equal(t_last_log, "sum 13");
  json_decref(r.results);

  /* a yield across the sandbox's pcall and xpcall, and an error after it */
  memset(&r, 0, sizeof r);
  assert_int_equal(t_run(h,
                         "local ok, v = pcall(fake.add, 1, 2)\n"
                         "local ok2, e = pcall(function() fake.add(1, 1) error('late') end)\n"
                         "local ok3, w = xpcall(fake.add, function(m) return m end, 4, 5)\n"
                         "return ok, v, ok2, e, ok3, w\n",
                         NULL, &r), ENG_OK);
  uv_run(t_loop, UV_RUN_DEFAULT);
  assert_int_equal(r.rc, ENG_OK);
  assert_true(json_is_true(json_array_get(r.results, 0)));
  assert_int_equal(json_integer_value(json_array_get(r.results, 1)), 3);
  assert_true(json_is_false(json_array_get(r.results, 2)));
  assert_string_equal(json_string_value(json_array_get(r.results, 3)), "runbooks/r.yaml:21: late");
  assert_true(json_is_true(json_array_get(r.results, 4)));
  assert_int_equal(json_integer_value(json_array_get(r.results, 5)), 9);
  json_decref(r.results);

  /* two coroutines interleave, each with its own locals */
  t_result r1 = {0}, r2 = {0};
  json_t *l1 = json_pack("{s:{s:i}}", "outputs", "x", 1);
  json_t *l2 = json_pack("{s:{s:i}}", "outputs", "x", 2);
  assert_int_equal(t_run(h, "g = outputs.x local v = fake.add(outputs.x, 0)\n"
                            "return v, g, outputs.x", l1, &r1), ENG_OK);
  assert_int_equal(t_run(h, "g = outputs.x local v = fake.add(outputs.x, 0)\n"
                            "return v, g, outputs.x", l2, &r2), ENG_OK);
  json_decref(l1);
  json_decref(l2);
  uv_run(t_loop, UV_RUN_DEFAULT);
  assert_int_equal(r1.rc, ENG_OK);
  assert_int_equal(r2.rc, ENG_OK);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(json_integer_value(json_array_get(r1.results, i)), 1);
    assert_int_equal(json_integer_value(json_array_get(r2.results, i)), 2);
  }
  json_decref(r1.results);
  json_decref(r2.results);
  t_true(h, "rawget(_G, 'outputs') == nil and rawget(_G, 'g') == nil");

  /* without a yield the callback runs before eng__lua_run returns */
  t_result r3 = {0};
  assert_int_equal(t_run(h, "return fake.now({a = {1, 2}})", NULL, &r3),
                   ENG_OK);
  assert_int_equal(r3.calls, 1);
  assert_int_equal(json_integer_value(json_array_get(
                       json_object_get(json_array_get(r3.results, 0), "a"), 1)),
                   2);
  json_decref(r3.results);

  /* pcall around a yielding call works */
  t_result r4 = {0};
  assert_int_equal(t_run(h, "local ok, v = pcall(fake.add, 2, 2) return ok, v",
                         NULL, &r4), ENG_OK);
  uv_run(t_loop, UV_RUN_DEFAULT);
  assert_int_equal(r4.rc, ENG_OK);
  assert_true(json_is_true(json_array_get(r4.results, 0)));
  assert_int_equal(json_integer_value(json_array_get(r4.results, 1)), 4);
  json_decref(r4.results);

  assert_int_equal(t_subs_live, 0);
  eng__lua_destroy(h);
  t_loop_close();
}

static void test_run_errors(void **state) {
  (void)state;
  t_loop_open();
  eng__lua *h = t_new(0, 200, NULL, NULL);
  t_result r = {0};

  assert_int_equal(t_run(h, "local x = 1\nfake.err()\nreturn x", NULL, &r),
                   ENG_OK);
  uv_run(t_loop, UV_RUN_DEFAULT);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.rc, ENG_ERR_FAILED);
  assert_null(r.results);
  assert_string_equal(r.err, "runbooks/r.yaml:21: fake.err: boom");

  memset(&r, 0, sizeof r);
  assert_int_equal(t_run(h, "fake.add(1, 1)\nengine.fail('the backup is too "
                            "old')", NULL, &r), ENG_OK);
  uv_run(t_loop, UV_RUN_DEFAULT);
  assert_int_equal(r.rc, ENG_ERR_FAILED);
  assert_string_equal(r.err, "the backup is too old");

  /* engine.warn: the step's call is told; the hook goes on */
  memset(&r, 0, sizeof r);
  t_last_warn[0] = '\0';
  assert_int_equal(t_run(h, "engine.warn('lag 20 s above 10 s')\nreturn 1", NULL, &r),
                   ENG_OK);
  uv_run(t_loop, UV_RUN_DEFAULT);
  assert_int_equal(r.rc, ENG_OK);
  assert_string_equal(t_last_warn, "lag 20 s above 10 s");
  json_decref(r.results);
  /* outside a step (a condition, a template) there is no step to warn */
  char err[512];
  t_error(h, "engine.warn('x')", ENG__LUA_CHUNK, err, sizeof err);
  t_contains(err, "engine.warn: only a `check:` hook or a `lua` step");

  memset(&r, 0, sizeof r);
  assert_int_equal(t_run(h, "fake.refuse()", NULL, &r), ENG_OK);
  assert_int_equal(r.calls, 1);
  t_contains(r.err, "fake.refuse: not supported");

  memset(&r, 0, sizeof r);
  assert_int_equal(t_run(h, "return fake.add(print, 1)", NULL, &r), ENG_OK);
  assert_int_equal(r.calls, 1);
  t_contains(r.err, "cannot convert a function to JSON");

  /* a yielding call where a yield is impossible */
  memset(&r, 0, sizeof r);
  assert_int_equal(t_run(h, "local t = {3, 1, 2}\n"
                            "table.sort(t, function(a, b) fake.add(1, 1) "
                            "return a < b end)", NULL, &r), ENG_OK);
  assert_int_equal(r.calls, 1);
  t_contains(r.err, "fake.add cannot be called here");

  /* budget: an infinite loop in a coroutine */
  memset(&r, 0, sizeof r);
  assert_int_equal(t_run(h, "fake.add(1, 1) while true do end", NULL, &r),
                   ENG_OK);
  uv_run(t_loop, UV_RUN_DEFAULT);
  assert_int_equal(r.rc, ENG_ERR_FAILED);
  t_contains(r.err, "instruction budget exceeded (0.2 s of execution)");

  /* waiting while yielded does not count against the budget */
  memset(&r, 0, sizeof r);
  assert_int_equal(t_run(h, "return fake.slow() .. fake.slow()", NULL, &r),
                   ENG_OK);
  uv_run(t_loop, UV_RUN_DEFAULT);
  assert_int_equal(r.rc, ENG_OK);
  assert_string_equal(json_string_value(json_array_get(r.results, 0)),
                      "latelate");
  json_decref(r.results);

  /* a bad reference: error, the callback never runs */
  memset(&r, 0, sizeof r);
  static struct eng_call step;
  assert_int_equal(eng__lua_run(h, 999999, NULL, &step, t_done_cb, &r),
                   ENG_ERR_INVALID);
  assert_int_equal(r.calls, 0);

  assert_int_equal(t_subs_live, 0);
  eng__lua_destroy(h);
  t_loop_close();
}

static void test_destroy_pending(void **state) {
  (void)state;
  t_loop_open();
  eng__lua *h = t_new(0, 0, NULL, NULL);
  t_result r = {0};
  assert_int_equal(t_run(h, "return fake.add(1, 2)", NULL, &r), ENG_OK);
  assert_int_equal(r.calls, 0);
  eng__lua_destroy(h);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.rc, ENG_ERR_CANCELLED);
  uv_run(t_loop, UV_RUN_DEFAULT); /* the sub-call completes afterwards */
  assert_int_equal(r.calls, 1);
  assert_int_equal(t_subs_live, 0);
  t_loop_close();
}

static void test_io_in_eval(void **state) {
  (void)state;
  eng__lua *h = t_new(0, 0, NULL, NULL);
  char err[512];
  t_error(h, "fake.add(1, 2)", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "fake.add needs I/O: use it in a check hook or a lua step, "
                  "not in an expression");
  t_error(h, "http.get('http://localhost/')", ENG__LUA_EXPR, err, sizeof err);
  t_contains(err, "http.get needs I/O");
  assert_int_equal(t_subs_live, 0);
  eng__lua_destroy(h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_expression_types),
      cmocka_unit_test(test_missing_reference),
      cmocka_unit_test(test_whole_path_one_line),
      cmocka_unit_test(test_dashed_step_ids),
      cmocka_unit_test(test_success_failure),
      cmocka_unit_test(test_syntax_error),
      cmocka_unit_test(test_budget),
      cmocka_unit_test(test_pattern_budget),
      cmocka_unit_test(test_pattern_differential),
      cmocka_unit_test(test_pattern_check),
      cmocka_unit_test(test_memory_bomb),
      cmocka_unit_test(test_sandbox),
      cmocka_unit_test(test_require),
      cmocka_unit_test(test_json),
      cmocka_unit_test(test_locals_restored),
      cmocka_unit_test(test_run_yields),
      cmocka_unit_test(test_run_deadline),
      cmocka_unit_test(test_run_errors),
      cmocka_unit_test(test_destroy_pending),
      cmocka_unit_test(test_io_in_eval),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
