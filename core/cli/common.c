/* common.c - what several commands do: help text with the global
 * options, usage errors, loading plugins, loading and validating a
 * runbook with its Lua state, opening the state directory, and the names
 * of side effects, targets and dispositions in help and docs. */
#include "cli/cli.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef ENG_BUILD_ROOT
#define ENG_BUILD_ROOT ""
#endif

bool cli_running_from_build(void) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  static const char build_root[] = ENG_BUILD_ROOT;
  if (n <= 0 || build_root[0] == '\0') return false;
  exe[n] = '\0';
  size_t bl = strlen(build_root);
  return strncmp(exe, build_root, bl) == 0 && exe[bl] == '/';
}

/* Options every command takes, before or after the command name. */
static const char global_help[] =
    "\nglobal options (before or after the command):\n"
    "      --plugin-path DIR    extra plugin directory, searched first\n"
    "                           (repeatable; env ENGINE_PLUGIN_PATH)\n"
    "      --state-dir DIR|URL  where runs are recorded: a directory (default\n"
    "                           .engine/) or s3://BUCKET/PREFIX (env\n"
    "                           ENGINE_STATE_DIR)\n"
    "      --cancel-grace DUR   how long a cancelled action may take to stop\n"
    "                           before the engine ends its step anyway\n"
    "                           (default 10s, env ENGINE_CANCEL_GRACE)\n"
    "  -q, --quiet              only failures and the summary\n"
    "  -v, --verbose            debug lines too\n"
    "      --no-color           no colours (env NO_COLOR too)\n";

/* A command's help, then the global options. */
int cli_print_help(const char *text, FILE *out, int code) {
  fputs(text, out);
  fputs(global_help, out);
  return code;
}

int cli_usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "engine: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(see 'engine --help')\n");
  return ENG_EXIT_USAGE;
}

void cli_load_plugins(cli *c, eng__diags *d) {
  char **dirs;
  size_t n = eng__plugin_search_path(c->plugin_dirs, c->n_plugin_dirs, &dirs);
  eng__registry_load((const char *const *)dirs, n, d);
  for (size_t i = 0; i < n; i++) free(dirs[i]);
  free(dirs);
}

/* Plugins for a command that only needs them (refusals are not shown). */
void cli_load_plugins_quietly(cli *c) {
  eng__diags d = {0};
  d.quiet = true;
  cli_load_plugins(c, &d);
  eng__diags_free(&d);
}

static eng__lua *make_lua(const eng__runbook *rb, const char *lib_dir) {
  eng__lua_opts lo = {0};
  lo.runbook_dir = rb ? rb->dir : ".";
  lo.lib_dir = lib_dir;
  /* Operators (and tests) may tighten or loosen the sandbox limits. */
  const char *b = getenv("ENGINE_LUA_BUDGET_MS");
  const char *m = getenv("ENGINE_LUA_MEMORY_MB");
  if (b && atoll(b) > 0) lo.budget_ms = (uint64_t)atoll(b);
  if (m && atoll(m) > 0) lo.mem_limit = (size_t)atoll(m) << 20;
  eng__lua *L = NULL;
  char err[256];
  if (eng__lua_create(&lo, &L, err, sizeof err) != ENG_OK) {
    fprintf(stderr, "engine: cannot create the Lua state: %s\n", err);
    return NULL;
  }
  return L;
}

/* Load + validate; NULL on error (diagnostics printed). */
eng__runbook *cli_load_valid(const char *file, eng__lua **L,
                                const char *lib_dir, eng__diags *d) {
  size_t before = d->errors;
  eng__runbook *rb = eng__runbook_load(file, d);
  if (!rb) return NULL;
  *L = make_lua(rb, lib_dir);
  if (!*L || eng__plan_validate(rb, *L, d) != ENG_OK ||
      d->errors > before) {
    if (*L) eng__lua_destroy(*L);
    *L = NULL;
    eng__runbook_free(rb);
    return NULL;
  }
  return rb;
}

/* The state directory of a command, opened once; o.state_dir becomes the
 * local directory runs are written into. Plugins must be loaded. */
eng__state *cli_open_state(cli *c) {
  char err[1024] = "";
  eng__state *st = eng__state_open(c->state_spec, err, sizeof err);
  if (!st) {
    fprintf(stderr, "engine: --state-dir %s: %s\n", c->state_spec, err);
    return NULL;
  }
  c->o.state_dir = eng__state_dir(st);
  return st;
}


const char *const cli_side_names[] = {"read_only", "creates",
                                         "destructive", "disruptive",
                                         "external", "maintenance"};

const char *const cli_target_names[] = {"",         "database", "volume",
                                           "container", "bucket",   "instance",
                                           "command",  "file",     "snapshot",
                                           "sql"};

/* What an action's created resources are, for actions that create. */
const char *cli_creates_name(const eng_action *a) {
  if (a->creates == ENG_TEMPORARY) return "temporary";
  return a->side_effect == ENG_SIDE_CREATES ? "kept" : NULL;
}

const char *cli_target_name(eng_target t) {
  return (unsigned)t < sizeof cli_target_names / sizeof *cli_target_names
             ? cli_target_names[t] : "target";
}
