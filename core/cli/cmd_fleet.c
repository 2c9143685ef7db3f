/* cmd_fleet.c - `engine fleet render INVENTORY [--out DIR]`. */
#include "cli/cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef ENG_SOURCE_RUNBOOK_DIR
#define ENG_SOURCE_RUNBOOK_DIR ""
#endif
#ifndef ENG_INSTALL_RUNBOOK_DIR
#define ENG_INSTALL_RUNBOOK_DIR "/usr/local/share/engine/runbooks"
#endif

static const char fleet_help[] =
    "usage: engine fleet render INVENTORY [--out DIR]\n"
    "\n"
    "Writes Kubernetes manifests for the databases of INVENTORY (YAML): per\n"
    "database a CronJob that runs its runbook, and a ConfigMap holding the\n"
    "runbook when it is a file next to the inventory. Prints them as\n"
    "multi-document YAML, or with --out DIR writes DIR/NAME.yaml per\n"
    "database. Secrets are referenced by name, never read. Every database's\n"
    "runbook is checked to start in its pod as rendered (parameters given,\n"
    "approvals given in advance). Exit 0 when written, 2 when the inventory\n"
    "is invalid (nothing is written).\n"
    "\n"
    "      --out DIR            one file per database in DIR\n"
    "      --no-color           no colours in diagnostics (env NO_COLOR too)\n"
    "\n"
    "Runbooks the image ships (name them without a file next to the\n"
    "inventory):\n";

/* `engine fleet render`: its own few options, parsed here. */
int cmd_fleet(int argc, char **argv) {
  static const struct option opts[] = {{"out", required_argument, NULL, 'o'},
                                       {"no-color", no_argument, NULL, 'n'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *out_dir = NULL;
  bool color = !getenv("NO_COLOR"), help = false;
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (ch == 'o') out_dir = optarg;
    else if (ch == 'n') color = false;
    else if (ch == 'h') help = true;
    else if (ch == ':') return cli_usage_error("option '%s' needs a value", argv[optind - 1]);
    else return cli_usage_error("unknown option '%s' for fleet render", argv[optind - 1]);
  }
  char **pos = argv + optind;
  int n = argc - optind;
  if (help || n != 2 || strcmp(pos[0], "render")) {
    FILE *out = help ? stdout : stderr;
    fputs(fleet_help, out);
    for (size_t i = 0; eng__fleet_image_runbooks[i]; i++)
      fprintf(out, "  %s\n", eng__fleet_image_runbooks[i]);
    return help ? 0 : ENG_EXIT_USAGE;
  }
  eng__diags d = {0};
  d.color = color && isatty(2);
  /* the image's runbooks are this engine's own: the ones it installs, or
   * the source tree's when it runs from its build directory */
  const char *image_dir = cli_running_from_build() ? ENG_SOURCE_RUNBOOK_DIR
                                                   : ENG_INSTALL_RUNBOOK_DIR;
  int code = eng__fleet_render(pos[1], image_dir, out_dir, stdout, &d);
  eng__diags_end(&d);
  if (code == ENG_EXIT_USAGE && d.errors)
    fprintf(stderr, "engine: %s is invalid (%zu error%s); nothing was written\n",
            pos[1], d.errors, d.errors == 1 ? "" : "s");
  eng__diags_free(&d);
  return code;
}
