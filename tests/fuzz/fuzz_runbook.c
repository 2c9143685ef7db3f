/* libFuzzer: a runbook's text through the loader and validation (built-in
 * actions, Lua compiled), as `engine validate` reads it. */
#include <stdlib.h>
#include <string.h>

#include "exec/exec.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static int loaded;
  if (!loaded) {
    eng__diags d = {0};
    d.quiet = true;
    eng__registry_load(NULL, 0, &d);
    eng__diags_free(&d);
    loaded = 1;
  }
  eng__diags d = {0};
  d.quiet = true;
  eng__runbook *rb = eng__runbook_parse("fuzz.yaml", (const char *)data, size, &d);
  if (rb) {
    eng__lua_opts o = {0};
    o.budget_ms = 50;
    o.mem_limit = 16u << 20;
    eng__lua *L = NULL;
    char err[256];
    if (eng__lua_create(&o, &L, err, sizeof err) == ENG_OK) {
      eng__plan_validate(rb, L, &d);
      eng__lua_destroy(L);
    }
    eng__runbook_free(rb);
  }
  eng__diags_free(&d);
  return 0;
}
