/* unit.h - what the cmocka files that link the whole core share. */
#ifndef ENGINE_TEST_UNIT_H
#define ENGINE_TEST_UNIT_H

#include <stdio.h>
#include <stdlib.h>

#include "actions/actions.h"

/* A fresh directory for a test ($TMPDIR/NAME and a unique suffix) into
 * out (n bytes); 0, or -1 when it could not be made. */
static inline int unit_tmp_dir(const char *name, char *out, size_t n) {
  char *p = eng__tmp_path(name, true);
  int fits = snprintf(out, n, "%s", p) < (int)n;
  free(p);
  return fits && mkdtemp(out) ? 0 : -1;
}

/* A runbook of one step, for a run to check guards against; the console
 * shows errors only. NULL when it does not parse. */
static inline eng__runbook *unit_one_step_runbook(void) {
  static const char text[] = "version: 1\nname: t\nsteps:\n"
                             "  - {id: a, uses: sleep, with: {for: 1ms}}\n";
  eng__diags d = {0};
  d.quiet = true;
  eng__runbook *rb = eng__runbook_parse("t.yaml", text, sizeof text - 1, &d);
  eng__diags_free(&d);
  eng__console_setup(false, -1, false);
  return rb;
}

#ifdef TEST_PLUGIN_DIR
/* The built-in actions and the test plugins loaded, refusals not shown. */
static inline int unit_load_test_plugins(void) {
  eng__diags d = {0};
  d.quiet = true;
  const char *dirs[] = {TEST_PLUGIN_DIR};
  eng__registry_load(dirs, 1, &d);
  eng__diags_free(&d);
  return 0;
}
#endif

#endif
