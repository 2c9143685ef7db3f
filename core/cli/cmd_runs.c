/* cmd_runs.c - `engine runs`: the recorded runs, with their kept resources
 * and leftovers. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cmd_runs(cli *c) {
  if (c->help) {
    return cli_print_help(
        "usage: engine runs [--state-dir DIR|URL]\nLists recorded runs: "
        "their status, the kept resources they delivered and their\n"
        "leftovers. Exit 1 when a journal record cannot be read (named on\n"
        "stderr).\n", stdout, 0);
  }
  if (!strstr(c->state_spec, "://"))
    return eng__runs_list(c->o.state_dir, stdout);
  cli_load_plugins_quietly(c);
  eng__state *st = cli_open_state(c);
  if (!st) return ENG_EXIT_USAGE;
  char err[1024] = "";
  char *dir = eng__state_pull_journals(st, err, sizeof err);
  int code;
  if (!dir) {
    fprintf(stderr, "engine: cannot list the runs in %s: %s\n", c->state_spec,
            err);
    code = ENG_EXIT_FAILED;
  } else {
    code = eng__runs_list(dir, stdout);
    eng__rm_tree(dir);
    free(dir);
  }
  eng__state_close(st);
  return code;
}
