/* cmd_cleanup.c - `engine cleanup RUN_ID [--dry-run] [--include-kept
 * [--yes]]`: a run's leftovers removed, or listed; kept resources only when
 * a person asks. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char cleanup_help[] =
    "usage: engine cleanup RUN_ID [--dry-run] [--include-kept [--yes]]\n"
    "                             [--accept-damaged] [--state-dir DIR|URL]\n"
    "                             [--set NAME=VALUE]\n"
    "\n"
    "The engine never removes what a run delivered unless a person asks for\n"
    "it by name. Removes the run's leftovers (newest first): resources whose\n"
    "creating step did not end ok, and temporary ones still present (the run\n"
    "was killed, or their removal failed). What the run delivered (kept:\n"
    "dumps, uploaded objects, snapshots, restored databases) stays. Secrets\n"
    "come from the same environment variables as the run's.\n"
    "\n"
    "      --dry-run        list every resource of the run (step, kind, id,\n"
    "                       disposition, state, what cleanup would do);\n"
    "                       remove nothing\n"
    "      --include-kept   remove the kept resources too; asks to type the\n"
    "                       run id on a terminal, needs --yes without one\n"
    "      --yes            confirm --include-kept without a terminal\n"
    "      --accept-damaged a record of the journal that cannot be read may\n"
    "                       stand for a resource: cleanup and --dry-run exit\n"
    "                       1 naming it until a person checks it and passes\n"
    "                       this to remove the rest\n";

/* The run's resources as `engine cleanup --dry-run` shows them. */
static void print_resources(const char *id, const json_t *res, bool kept_too) {
  size_t n = json_array_size(res), kept = 0, left = 0, gone = 0, i;
  json_t *e;
  json_array_foreach(res, i, e) {
    if (json_is_true(json_object_get(e, "leftover"))) left++;
    else if (json_is_true(json_object_get(e, "present"))) kept++;
    else gone++;
  }
  printf("run %s: %zu resource%s (%zu kept, %zu leftover%s, %zu removed)\n",
         id, n, n == 1 ? "" : "s", kept, left, left == 1 ? "" : "s", gone);
  if (!n) return;
  printf("  %-14s %-16s %-10s %-9s %-10s %s\n", "step", "kind", "disposition",
         "state", "cleanup", "id");
  json_array_foreach(res, i, e) {
    bool present = json_is_true(json_object_get(e, "present"));
    bool leftover = json_is_true(json_object_get(e, "leftover"));
    bool partial = json_is_true(json_object_get(e, "partial"));
    bool broken = json_is_true(json_object_get(e, "damaged"));
    const char *step = json_string_value(json_object_get(e, "step"));
    const char *disp = json_string_value(json_object_get(e, "disposition"));
    const char *act = broken               ? "a person"
                      : !present           ? "-"
                      : leftover           ? "removes"
                      : kept_too           ? "removes"
                                           : "keeps";
    char d[32];
    snprintf(d, sizeof d, "%s%s", broken ? "?" : disp ? disp : "?",
             broken || json_is_true(json_object_get(e, "recorded")) ? "" : "*");
    printf("  %-14s %-16s %-10s %-9s %-10s %s\n", step ? step : "-",
           json_string_value(json_object_get(e, "kind")), d,
           broken ? "damaged" : !present ? "removed" : partial ? "partial" : "present",
           act, json_string_value(json_object_get(e, "id")));
  }
  json_array_foreach(res, i, e) {
    if (!json_is_true(json_object_get(e, "recorded")) &&
        !json_is_true(json_object_get(e, "damaged"))) {
      printf("  * journaled by an engine before dispositions: kept\n");
      break;
    }
  }
  printf("  state as the journal records it; nothing was removed (dry run)\n");
}

/* --include-kept: the person confirms removing what the run delivered.
 * 0 when confirmed (or nothing kept), an exit code otherwise. */
static int confirm_kept(cli *c, const char *id, const json_t *res) {
  size_t kept = 0, i;
  json_t *e;
  json_array_foreach(res, i, e)
    if (json_is_true(json_object_get(e, "present")) &&
        !json_is_true(json_object_get(e, "leftover")))
      kept++;
  if (!kept || c->yes) return 0;
  fprintf(stderr, "engine: --include-kept removes %zu kept resource%s that "
                  "run %s delivered:\n", kept, kept == 1 ? "" : "s", id);
  json_array_foreach(res, i, e)
    if (json_is_true(json_object_get(e, "present")) &&
        !json_is_true(json_object_get(e, "leftover")))
      fprintf(stderr, "  %s %s\n", json_string_value(json_object_get(e, "kind")),
              json_string_value(json_object_get(e, "id")));
  if (!isatty(0)) {
    fprintf(stderr, "engine: no terminal to confirm on: add --yes to remove "
                    "them; nothing was removed\n");
    return ENG_EXIT_USAGE;
  }
  fprintf(stderr, "type the run id (%s) to remove them: ", id);
  fflush(stderr);
  char line[128] = "";
  if (!fgets(line, sizeof line, stdin)) line[0] = '\0';
  line[strcspn(line, "\r\n")] = '\0';
  if (strcmp(line, id)) {
    fprintf(stderr, "engine: not confirmed; nothing was removed\n");
    return ENG_EXIT_USAGE;
  }
  return 0;
}

int cmd_cleanup(cli *c) {
  if (c->help || c->n_positional != 1)
    return cli_print_help(cleanup_help, c->help ? stdout : stderr,
                      c->help ? 0 : ENG_EXIT_USAGE);
  if (c->yes && !c->include_kept)
    return cli_usage_error("%s only confirms --include-kept", "--yes");
  const char *id = c->positional[0];
  bool dry = c->o.plan_only;
  c->o.plan_only = false;
  cli_load_plugins_quietly(c);
  eng__state *st = cli_open_state(c);
  if (!st) return ENG_EXIT_USAGE;
  char err[1024] = "";
  /* a run that held a lock is cleaned up holding it: never while the run
   * (or a run removing its leftovers) is still going; a dry run reads */
  char *name = dry ? NULL : cli_run_lock_of(st, id);
  eng__lock *lock = NULL;
  int code = name ? cli_take_lock(c, st, name, id, &lock) : ENG_EXIT_OK;
  if (code != ENG_EXIT_OK) {
    free(name);
    eng__state_close(st);
    return code;
  }
  int pr = eng__state_pull_run(st, id, err, sizeof err);
  json_t *res = pr == 0 ? cli_run_resources(c->o.state_dir, id) : NULL;
  size_t n = 0;
  eng__clean_what what = c->include_kept ? ENG__CLEAN_ALL : ENG__CLEAN_LEFTOVERS;
  if (pr < 0) {
    fprintf(stderr, "engine: cannot read run %s from %s: %s\n", id,
            c->state_spec, err);
    code = ENG_EXIT_FAILED;
  } else if (!res) {
    fprintf(stderr, "engine: no journal for run %s in %s (check the id and "
                    "--state-dir; 'engine runs' lists them)\n", id,
            c->state_spec);
    code = ENG_EXIT_USAGE;
  } else if (dry) {
    print_resources(id, res, c->include_kept);
    code = cli_damaged(id, res, c->accept_damaged);
  } else if (c->include_kept && (code = confirm_kept(c, id, res)) != 0) {
    /* said */
  } else if ((code = cli_cleanup_run(c, st, id, what, &n, NULL)) < 0) {
    code = ENG_EXIT_FAILED;
  } else if (code == ENG_EXIT_OK && n == 0) {
    printf("run %s: nothing to clean up (no leftover%s)\n", id,
           c->include_kept ? ", nothing kept" : "");
  }
  if (res && !dry && !c->include_kept && code == ENG_EXIT_OK) {
    size_t kept = 0, i;
    json_t *e;
    json_array_foreach(res, i, e)
      kept += json_is_true(json_object_get(e, "present")) &&
              !json_is_true(json_object_get(e, "leftover"));
    if (kept)
      printf("run %s: %zu kept resource%s stay%s (what the run delivered; "
             "--dry-run lists them, --include-kept removes them)\n",
             id, kept, kept == 1 ? "" : "s", kept == 1 ? "s" : "");
  }
  json_decref(res);
  if (lock && code == ENG_EXIT_OK && !cli_has_leftovers(c->o.state_dir, id)) {
    char *key = eng__asprintf("locks/%s.runs/%s", name, id);
    eng__state_del(st, key, NULL, err, sizeof err);
    free(key);
  }
  eng__lock_release(lock);
  free(name);
  eng__state_close(st);
  return code;
}
