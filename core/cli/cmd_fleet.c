/* cmd_fleet.c - `engine fleet render INVENTORY [--out DIR] [--check]`. */
#include "cli/cli.h"

#include <getopt.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef ENG_SOURCE_RUNBOOK_DIR
#define ENG_SOURCE_RUNBOOK_DIR ""
#endif
#ifndef ENG_INSTALL_RUNBOOK_DIR
#define ENG_INSTALL_RUNBOOK_DIR "/usr/local/share/engine/runbooks"
#endif

/* What `--check` gives a variable the pod takes from a Secret: render
 * never reads Secrets, and a plan connects to nothing. */
#define CHECK_PLACEHOLDER "postgresql://fleet-check.invalid/placeholder"

static const char fleet_help[] =
    "usage: engine fleet render INVENTORY [--out DIR] [--check]\n"
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
    "      --check              also run 'engine plan' of each database's\n"
    "                           runbook with its rendered arguments and\n"
    "                           environment (placeholders for Secrets; no\n"
    "                           connection): nothing is written if one fails\n"
    "      --no-color           no colours in diagnostics (env NO_COLOR too)\n"
    "\n"
    "Runbooks the image ships (name them without a file next to the\n"
    "inventory):\n";

/* The environment of a plan of the pod's run: the pod's variables (a
 * Secret's as a placeholder) and the host's few that locate and run this
 * engine. */
static char **plan_env(const json_t *env) {
  static const char *const host[] = {"PATH", "ENGINE_PLUGIN_PATH", "ASAN_OPTIONS",
                                     "UBSAN_OPTIONS", "NO_COLOR"};
  size_t n = sizeof host / sizeof *host;
  char **envp = eng__xcalloc(json_array_size(env) + n + 1, sizeof *envp);
  size_t k = 0, i;
  for (i = 0; i < n; i++)
    if (getenv(host[i])) envp[k++] = eng__asprintf("%s=%s", host[i], getenv(host[i]));
  json_t *e;
  json_array_foreach(env, i, e) {
    const char *value = json_string_value(json_object_get(e, "value"));
    envp[k++] = eng__asprintf("%s=%s", json_string_value(json_object_get(e, "name")),
                              value ? value : CHECK_PLACEHOLDER);
  }
  return envp;
}

static void strv_free(char **v) {
  for (size_t i = 0; v && v[i]; i++) free(v[i]);
  free(v);
}

/* `engine plan` of database i's run as its CronJob's container has it
 * (the runbook read from this machine's copy); its output on standard
 * error. The plan's exit code, or -1 when it could not start. */
static int plan_database(const eng__fleet *f, size_t i, const char *image_dir) {
  json_t *docs = eng__fleet_docs(f, i);
  json_t *cj = json_array_get(docs, json_array_size(docs) - 1);
  const json_t *c = json_array_get(
      json_object_get(json_object_get(json_object_get(json_object_get(json_object_get(
          json_object_get(cj, "spec"), "jobTemplate"), "spec"), "template"), "spec"),
      "containers"), 0);
  const json_t *args = json_object_get(c, "args");
  const char *pod_path = json_string_value(json_array_get(args, 1));
  const char *local = eng__fleet_runbook_file(f, i), *slash = strrchr(pod_path, '/');
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = '\0';
  char **argv = eng__xcalloc(json_array_size(args) + 2, sizeof *argv);
  argv[0] = eng__xstrdup(exe);
  argv[1] = eng__xstrdup("plan");
  argv[2] = local ? eng__xstrdup(local) : eng__asprintf("%s%s", image_dir, slash);
  for (size_t k = 2; k < json_array_size(args); k++)
    argv[k + 1] = eng__xstrdup(json_string_value(json_array_get(args, k)));
  char **envp = plan_env(json_object_get(c, "env"));
  fprintf(stderr, "check: database '%s': engine plan %s\n", eng__fleet_name(f, i), argv[2]);
  fflush(stderr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, 2, 1); /* the manifests own stdout */
  pid_t pid;
  int status = 0, code = -1;
  if (n > 0 && posix_spawn(&pid, exe, &fa, NULL, argv, envp) == 0 &&
      waitpid(pid, &status, 0) == pid)
    code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  posix_spawn_file_actions_destroy(&fa);
  strv_free(argv);
  strv_free(envp);
  json_decref(docs);
  return code;
}

/* `--check`: every database's plan; false when one fails (said). */
static bool plans_pass(const eng__fleet *f, const char *image_dir) {
  bool ok = true;
  for (size_t i = 0; i < eng__fleet_count(f); i++) {
    int code = plan_database(f, i, image_dir);
    if (code == 0) continue;
    fprintf(stderr, "engine: database '%s': 'engine plan' of its run as "
                    "rendered %s %d (above): its CronJob would fail the same "
                    "way; fix the inventory or the runbook\n",
            eng__fleet_name(f, i), code < 0 ? "could not start," : "exits",
            code);
    ok = false;
  }
  return ok;
}

/* `engine fleet render`: its own few options, parsed here. */
int cmd_fleet(int argc, char **argv) {
  static const struct option opts[] = {{"out", required_argument, NULL, 'o'},
                                       {"check", no_argument, NULL, 'c'},
                                       {"no-color", no_argument, NULL, 'n'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *out_dir = NULL;
  bool color = !getenv("NO_COLOR"), help = false, check = false;
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (ch == 'o') out_dir = optarg;
    else if (ch == 'c') check = true;
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
  eng__fleet *f = eng__fleet_load(pos[1], image_dir, &d);
  eng__diags_end(&d);
  int code = ENG_EXIT_USAGE;
  if (!f && d.errors)
    fprintf(stderr, "engine: %s is invalid (%zu error%s); nothing was written\n",
            pos[1], d.errors, d.errors == 1 ? "" : "s");
  else if (f && check && !plans_pass(f, image_dir))
    fprintf(stderr, "engine: %s: a run as rendered fails its plan; nothing "
                    "was written\n", pos[1]);
  else if (f)
    code = eng__fleet_render(f, pos[1], out_dir, stdout, &d);
  eng__fleet_free(f);
  eng__diags_free(&d);
  return code;
}
