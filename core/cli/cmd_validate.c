/* cmd_validate.c - `engine validate RUNBOOK...`. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cmd_validate(cli *c) {
  if (c->help || c->n_positional == 0) {
    return cli_print_help("usage: engine validate RUNBOOK...\n\nChecks syntax, keys, step "
          "ids, needs, cycles, actions and their parameters, durations and "
          "Lua code, and the guard violations every run would meet (forbidden "
          "commands in literal command lines, literal protected targets used "
          "destructively, `require` the steps' order cannot guarantee). Exit 0 "
          "when every file is valid, 2 when one is not, 3 when one is valid but "
          "its guards refuse it.\n", c->help ? stdout : stderr,
                      c->help ? 0 : ENG_EXIT_USAGE);
  }
  eng__diags d = {0};
  d.color = c->o.color && isatty(2);
  cli_load_plugins(c, &d);
  eng__diags_end(&d); /* each runbook gets its own first errors shown */
  int code = 0;
  for (size_t i = 0; i < c->n_positional; i++) {
    size_t before = d.errors;
    eng__lua *L = NULL;
    eng__runbook *rb = cli_load_valid(c->positional[i], &L, c->o.lua_lib_dir, &d);
    eng__diags_end(&d);
    if (rb) {
      size_t refused = eng__guards_validate(rb, L, &d);
      if (refused) {
        printf("%s: refused by the guards (%zu violation%s): every run would exit 3\n",
               c->positional[i], refused, refused == 1 ? "" : "s");
        if (code == 0) code = ENG_EXIT_REFUSED;
      } else {
        printf("%s: ok (%zu steps, %zu in finally)\n", c->positional[i],
               rb->n_main, rb->n_steps - rb->n_main);
      }
      eng__lua_destroy(L);
      eng__runbook_free(rb);
    } else {
      printf("%s: %zu error%s\n", c->positional[i], d.errors - before,
             d.errors - before == 1 ? "" : "s");
      code = ENG_EXIT_USAGE; /* an invalid file outweighs a refused one */
    }
  }
  eng__diags_free(&d);
  return code;
}
