/* libFuzzer: `${...}` templates and conditions: split, compile and render
 * in the sandbox (small memory and time budgets). */
#include <stdlib.h>
#include <string.h>

#include "expr/expr.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static eng__lua *L;
  if (!L) {
    eng__lua_opts o = {0};
    o.budget_ms = 20;
    o.mem_limit = 16u << 20;
    char err[256];
    if (eng__lua_create(&o, &L, err, sizeof err) != ENG_OK) abort();
    json_t *params = json_pack("{s:s, s:i}", "db", "shop", "n", 3);
    eng__lua_set_global(L, "params", params);
    json_decref(params);
  }
  char *s = eng__xstrndup((const char *)data, size);
  eng__node n = {0};
  n.kind = ENG__N_SCALAR;
  n.str = s;
  char err[512];
  if (eng__tpl_compile(L, s, "fuzz", 1, &n.tpl, err, sizeof err) == ENG_OK) {
    json_t *v = eng__tpl_render(L, &n, err, sizeof err);
    json_decref(v);
  }
  eng__tpl_free(n.tpl);
  char *code = eng__cond_code(s);
  int ref;
  if (eng__lua_compile(L, code, ENG__LUA_EXPR, "fuzz", 1, &ref, err, sizeof err) == ENG_OK) {
    json_t *res = NULL;
    eng__lua_eval(L, ref, NULL, &res, err, sizeof err);
    json_decref(res);
  }
  free(code);
  free(s);
  return 0;
}
