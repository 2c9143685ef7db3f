/* cmd_run.c - `engine run` and `engine plan` (runs.c runs the runbook in
 * its state directory). */
#include "cli/cli.h"

static const char run_help[] =
    "usage: engine run RUNBOOK [options]\n"
    "       engine plan RUNBOOK [options]\n"
    "\n"
    "  -p, --set NAME=VALUE     set a runbook parameter (repeatable)\n"
    "      --params-file FILE   YAML/JSON file of parameters\n"
    "      --dry-run            same as 'plan'\n"
    "      --allow-destructive  permit destructive actions on targets this run\n"
    "                           did not create (never on protected targets)\n"
    "      --approve STEP       pre-approve an 'approve' step (repeatable)\n"
    "      --resume RUN_ID      continue a failed or interrupted run\n"
    "      --only STEP          run only STEP (with what it needs)\n"
    "      --from STEP          run STEP and every step after it\n"
    "      --jobs N             most steps running at once (default 4)\n"
    "      --report FILE        JSON report\n"
    "      --junit FILE         JUnit XML report\n"
    "      --evidence FILE      drill evidence (Markdown)\n"
    "      --metrics-file PATH  Prometheus metrics of the runbook and lock\n"
    "                           (node_exporter textfile format, written whole)\n"
    "      --pushgateway URL    PUT them to a Pushgateway, grouped by runbook\n"
    "                           and lock (docs/monitoring.md)\n"
    "      --log-format FMT     text (default) or json (env ENGINE_LOG_FORMAT)\n"
    "      --lock NAME          one run at a time per NAME (overrides the\n"
    "                           runbook's 'lock:'); exit 6 when held\n"
    "      --lock-ttl DUR       how long a lock in a store stays valid without\n"
    "                           renewal (default 60s; renewed every third)\n"
    "      --grace DUR          after SIGTERM/SIGINT, how long 'finally' may\n"
    "                           run (default 25s, env ENGINE_GRACE; 0: no bound)\n"
    "      --cleanup-leftovers  with a lock (the default), first remove what\n"
    "                           earlier runs holding it left behind\n"
    "      --no-cleanup-leftovers  do not\n";

int cmd_run(cli *c, bool plan) {
  if (c->help) return cli_print_help(run_help, stdout, 0);
  if (c->n_positional != 1)
    return cli_usage_error("%s needs exactly one RUNBOOK file", plan ? "plan" : "run");
  if (plan) return cli_run_file(c, NULL, c->positional[0], true);
  eng__diags d = {0};
  d.color = c->o.color && isatty(2);
  cli_load_plugins(c, &d); /* refusals said once, here */
  eng__diags_free(&d);
  eng__state *st = cli_open_state(c);
  if (!st) return ENG_EXIT_USAGE;
  int code = cli_run_file(c, st, c->positional[0], false);
  eng__state_close(st);
  return code;
}
