/* main.c - the command line. */
#include "audit.h"
#include "registry.h"
#include "state.h"

#include <curl/curl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef ENG_VERSION
#define ENG_VERSION "0.0.0"
#endif
#ifndef ENG_BUILD_ROOT
#define ENG_BUILD_ROOT ""
#endif
#ifndef ENG_SOURCE_LUA_DIR
#define ENG_SOURCE_LUA_DIR ""
#endif
#ifndef ENG_INSTALL_LUA_DIR
#define ENG_INSTALL_LUA_DIR "/usr/local/share/engine/lua"
#endif

static const char usage_text[] =
    "usage: engine COMMAND [ARGS]\n"
    "\n"
    "  run RUNBOOK [options]      run it\n"
    "  plan RUNBOOK [options]     resolve and print what would run; no side "
    "effects\n"
    "  validate RUNBOOK...        check syntax, schema, plugin params, "
    "references\n"
    "  plugins [PLUGIN[.ACTION]]  list plugins, actions, params and outputs\n"
    "  schema                     print a JSON Schema for runbook files\n"
    "  docs                       print the action reference (Markdown)\n"
    "  audit verify FILE|URL|ID   verify an audit log's hash chain (and HMAC)\n"
    "  audit show FILE|URL|ID     print an audit log as a readable timeline\n"
    "  cleanup RUN_ID             remove a run's leftovers (--dry-run lists)\n"
    "  runs                       list recorded runs with status\n"
    "  version                    print the version\n"
    "  fleet render INVENTORY     Kubernetes manifests for many databases\n"
    "\n"
    "'engine COMMAND --help' explains a command. Exit codes: 0 ok, 1 a step\n"
    "failed, 2 usage error or invalid runbook, 3 refused by a guard, 4 SLO\n"
    "missed, 5 interrupted, 6 another run holds the lock (nothing ran).\n";

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
static int print_help(const char *text, FILE *out, int code) {
  fputs(text, out);
  fputs(global_help, out);
  return code;
}

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

typedef struct cli {
  eng__run_opts o;
  const char **plugin_dirs;
  size_t n_plugin_dirs;
  const char **approve;
  size_t n_approve;
  char **positional;
  size_t n_positional;
  bool help;
  const char *state_spec; /* --state-dir as given (a path or a URL) */
  const char *lock;       /* --lock */
  int64_t lock_ttl_ms;
  bool no_leftovers;      /* --no-cleanup-leftovers */
  bool leftovers;         /* --cleanup-leftovers (the default with a lock) */
  bool include_kept;      /* cleanup --include-kept */
  bool yes;               /* cleanup --yes */
} cli;

enum {
  OPT_PARAMS_FILE = 256,
  OPT_DRY_RUN,
  OPT_ALLOW_DESTRUCTIVE,
  OPT_APPROVE,
  OPT_RESUME,
  OPT_ONLY,
  OPT_FROM,
  OPT_JOBS,
  OPT_STATE_DIR,
  OPT_REPORT,
  OPT_JUNIT,
  OPT_EVIDENCE,
  OPT_PLUGIN_PATH,
  OPT_LOG_FORMAT,
  OPT_NO_COLOR,
  OPT_CANCEL_GRACE,
  OPT_LOCK,
  OPT_LOCK_TTL,
  OPT_GRACE,
  OPT_NO_LEFTOVERS,
  OPT_LEFTOVERS,
  OPT_INCLUDE_KEPT,
  OPT_YES
};

static const struct option long_opts[] = {
    {"set", required_argument, NULL, 'p'},
    {"params-file", required_argument, NULL, OPT_PARAMS_FILE},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"allow-destructive", no_argument, NULL, OPT_ALLOW_DESTRUCTIVE},
    {"approve", required_argument, NULL, OPT_APPROVE},
    {"resume", required_argument, NULL, OPT_RESUME},
    {"only", required_argument, NULL, OPT_ONLY},
    {"from", required_argument, NULL, OPT_FROM},
    {"jobs", required_argument, NULL, OPT_JOBS},
    {"state-dir", required_argument, NULL, OPT_STATE_DIR},
    {"report", required_argument, NULL, OPT_REPORT},
    {"junit", required_argument, NULL, OPT_JUNIT},
    {"evidence", required_argument, NULL, OPT_EVIDENCE},
    {"plugin-path", required_argument, NULL, OPT_PLUGIN_PATH},
    {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
    {"quiet", no_argument, NULL, 'q'},
    {"verbose", no_argument, NULL, 'v'},
    {"no-color", no_argument, NULL, OPT_NO_COLOR},
    {"cancel-grace", required_argument, NULL, OPT_CANCEL_GRACE},
    {"lock", required_argument, NULL, OPT_LOCK},
    {"lock-ttl", required_argument, NULL, OPT_LOCK_TTL},
    {"grace", required_argument, NULL, OPT_GRACE},
    {"no-cleanup-leftovers", no_argument, NULL, OPT_NO_LEFTOVERS},
    {"cleanup-leftovers", no_argument, NULL, OPT_LEFTOVERS},
    {"include-kept", no_argument, NULL, OPT_INCLUDE_KEPT},
    {"yes", no_argument, NULL, OPT_YES},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "engine: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(see 'engine --help')\n");
  return ENG_EXIT_USAGE;
}

static bool running_from_build(void) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  static const char build_root[] = ENG_BUILD_ROOT;
  if (n <= 0 || build_root[0] == '\0') return false;
  exe[n] = '\0';
  size_t bl = strlen(build_root);
  return strncmp(exe, build_root, bl) == 0 && exe[bl] == '/';
}

static int set_cancel_grace(const char *text) {
  int64_t ms;
  if (eng__parse_duration(text, &ms) != 0 || ms < 0 || ms > 3600000) return -1;
  eng__host_set_cancel_grace((uint64_t)ms);
  return 0;
}

static int set_log_format(eng__run_opts *o, const char *text) {
  if (strcmp(text, "json") && strcmp(text, "text")) return -1;
  o->log_json = !strcmp(text, "json");
  return 0;
}

static int parse_args(cli *c, int argc, char **argv) {
  c->o.jobs = 4;
  const char *grace = getenv("ENGINE_CANCEL_GRACE");
  if (grace && *grace && set_cancel_grace(grace) != 0)
    return usage_error("ENGINE_CANCEL_GRACE needs a duration such as 10s "
                       "(at most 1h), got '%s'", grace);
  c->o.state_dir = getenv("ENGINE_STATE_DIR") && *getenv("ENGINE_STATE_DIR")
                       ? getenv("ENGINE_STATE_DIR") : ".engine";
  c->o.grace_ms = 25000;
  c->lock_ttl_ms = 60000;
  const char *g = getenv("ENGINE_GRACE");
  if (g && *g && (eng__parse_duration(g, &c->o.grace_ms) != 0 ||
                  c->o.grace_ms < 0 || c->o.grace_ms > 86400000))
    return usage_error("ENGINE_GRACE needs a duration such as 25s, got '%s'", g);
  c->o.color = !getenv("NO_COLOR");
  const char *fmt = getenv("ENGINE_LOG_FORMAT");
  if (fmt && *fmt && set_log_format(&c->o, fmt) != 0)
    return usage_error("ENGINE_LOG_FORMAT is text or json, not '%s'", fmt);
  c->o.sets = json_object();
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, ":p:qvh", long_opts, NULL)) != -1) {
    switch (ch) {
    case 'p': {
      const char *eq = strchr(optarg, '=');
      if (!eq || eq == optarg)
        return usage_error("--set needs NAME=VALUE, got '%s'", optarg);
      char *k = eng__xstrndup(optarg, (size_t)(eq - optarg));
      json_object_set_new(c->o.sets, k, json_string(eq + 1));
      free(k);
      break;
    }
    case OPT_PARAMS_FILE: {
      eng__diags d = {0};
      size_t len;
      char *text = eng__read_file(optarg, 8u << 20, &len);
      if (!text) return usage_error("cannot read --params-file '%s'", optarg);
      eng__node *n = eng__yaml_parse(optarg, text, len, &d);
      free(text);
      eng__diags_free(&d);
      if (!n) return ENG_EXIT_USAGE;
      if (n->kind != ENG__N_MAP) {
        eng__node_free(n);
        return usage_error("--params-file '%s' must hold a mapping of "
                           "parameter names to values",
                           optarg);
      }
      json_decref(c->o.params_file);
      c->o.params_file = eng__node_to_json(n);
      eng__node_free(n);
      break;
    }
    case OPT_DRY_RUN: c->o.plan_only = true; break;
    case OPT_ALLOW_DESTRUCTIVE: c->o.allow_destructive = true; break;
    case OPT_APPROVE:
      c->approve = eng__xrealloc(c->approve, (c->n_approve + 1) * sizeof *c->approve);
      c->approve[c->n_approve++] = optarg;
      break;
    case OPT_RESUME: c->o.resume = optarg; break;
    case OPT_ONLY: c->o.only = optarg; break;
    case OPT_FROM: c->o.from = optarg; break;
    case OPT_JOBS: {
      char *end;
      long j = strtol(optarg, &end, 10);
      if (*end || j < 1 || j > 256)
        return usage_error("--jobs needs a number from 1 to 256, got '%s'", optarg);
      c->o.jobs = (int)j;
      break;
    }
    case OPT_STATE_DIR: c->o.state_dir = optarg; break;
    case OPT_REPORT: c->o.report = optarg; break;
    case OPT_JUNIT: c->o.junit = optarg; break;
    case OPT_EVIDENCE: c->o.evidence = optarg; break;
    case OPT_PLUGIN_PATH:
      c->plugin_dirs = eng__xrealloc(c->plugin_dirs, (c->n_plugin_dirs + 1) * sizeof *c->plugin_dirs);
      c->plugin_dirs[c->n_plugin_dirs++] = optarg;
      break;
    case OPT_LOG_FORMAT:
      if (set_log_format(&c->o, optarg) != 0)
        return usage_error("--log-format is text or json, not '%s'", optarg);
      break;
    case 'q': c->o.verbosity = -1; break;
    case 'v': c->o.verbosity = 1; break;
    case OPT_NO_COLOR: c->o.color = false; break;
    case OPT_CANCEL_GRACE:
      if (set_cancel_grace(optarg) != 0)
        return usage_error("--cancel-grace needs a duration such as 10s or "
                           "500ms (at most 1h), got '%s'", optarg);
      break;
    case OPT_LOCK:
      if (!eng__lock_name_ok(optarg))
        return usage_error("--lock needs a name of letters, digits, '.', '_' "
                           "and '-' (1-128 characters), got '%s'", optarg);
      c->lock = optarg;
      break;
    case OPT_LOCK_TTL:
      if (eng__parse_duration(optarg, &c->lock_ttl_ms) != 0 ||
          c->lock_ttl_ms < 3000 || c->lock_ttl_ms > 86400000)
        return usage_error("--lock-ttl needs a duration from 3s to 24h, got "
                           "'%s'", optarg);
      break;
    case OPT_GRACE:
      if (eng__parse_duration(optarg, &c->o.grace_ms) != 0 ||
          c->o.grace_ms < 0 || c->o.grace_ms > 86400000)
        return usage_error("--grace needs a duration such as 25s (0: no "
                           "bound), got '%s'", optarg);
      break;
    case OPT_NO_LEFTOVERS: c->no_leftovers = true; break;
    case OPT_LEFTOVERS: c->leftovers = true; break;
    case OPT_INCLUDE_KEPT: c->include_kept = true; break;
    case OPT_YES: c->yes = true; break;
    case 'h': c->help = true; break;
    case ':': return usage_error("option '%s' needs a value", argv[optind - 1]);
    default: return usage_error("unknown option '%s'", argv[optind - 1]);
    }
  }
  c->positional = argv + optind;
  c->n_positional = (size_t)(argc - optind);
  c->state_spec = c->o.state_dir;
  c->o.approve = c->approve;
  c->o.n_approve = c->n_approve;
  c->o.lua_lib_dir = running_from_build() ? ENG_SOURCE_LUA_DIR : ENG_INSTALL_LUA_DIR;
  return 0;
}

static void load_plugins(cli *c, eng__diags *d) {
  char **dirs;
  size_t n = eng__plugin_search_path(c->plugin_dirs, c->n_plugin_dirs, &dirs);
  eng__registry_load((const char *const *)dirs, n, d);
  for (size_t i = 0; i < n; i++) free(dirs[i]);
  free(dirs);
}

/* Plugins for a command that only needs them (refusals are not shown). */
static void load_plugins_quietly(cli *c) {
  eng__diags d = {0};
  d.quiet = true;
  load_plugins(c, &d);
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
static eng__runbook *load_valid(const char *file, eng__lua **L,
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
static eng__state *open_state(cli *c) {
  char err[1024] = "";
  eng__state *st = eng__state_open(c->state_spec, err, sizeof err);
  if (!st) {
    fprintf(stderr, "engine: --state-dir %s: %s\n", c->state_spec, err);
    return NULL;
  }
  c->o.state_dir = eng__state_dir(st);
  return st;
}

static int run_in_state(cli *c, eng__state *st, eng__runbook *rb,
                        eng__lua *L);

/* Load, validate and run one runbook file with the options in c. */
static int run_file(cli *c, eng__state *st, const char *file, bool plan) {
  if (plan) c->o.plan_only = true;
  eng__diags d = {0};
  d.color = c->o.color && isatty(2);
  load_plugins(c, &d);
  eng__lua *L = NULL;
  eng__runbook *rb = load_valid(file, &L, c->o.lua_lib_dir, &d);
  if (!rb) {
    fprintf(stderr, "engine: %s is invalid (%zu error%s); nothing ran\n",
            file, d.errors, d.errors == 1 ? "" : "s");
    eng__diags_free(&d);
    return ENG_EXIT_USAGE;
  }
  eng__console_setup(c->o.log_json, c->o.verbosity, c->o.color);
  int code = plan ? eng__run_main(rb, L, &c->o) : run_in_state(c, st, rb, L);
  eng__lua_destroy(L);
  eng__runbook_free(rb);
  eng__diags_free(&d);
  return code;
}

static int cmd_run(cli *c, bool plan) {
  if (c->help) return print_help(run_help, stdout, 0);
  if (c->n_positional != 1)
    return usage_error("%s needs exactly one RUNBOOK file", plan ? "plan" : "run");
  if (plan) return run_file(c, NULL, c->positional[0], true);
  eng__diags d = {0};
  d.color = c->o.color && isatty(2);
  load_plugins(c, &d); /* refusals said once, here */
  eng__diags_free(&d);
  eng__state *st = open_state(c);
  if (!st) return ENG_EXIT_USAGE;
  int code = run_file(c, st, c->positional[0], false);
  eng__state_close(st);
  return code;
}

/* Write the cleanup runbook of run `id` (pulled into the local state
 * directory) for `what` and run it, held to the run's own protected lists
 * and to `guards` (those of the run that asked) when given. *count:
 * resources it removes (0: nothing ran). */
static int cleanup_run(cli *c, eng__state *st, const char *id,
                       eng__clean_what what, size_t *count,
                       const json_t *guards) {
  char *dir = eng__asprintf("%s/runs/%s", c->o.state_dir, id);
  size_t n = 0;
  char *text = eng__cleanup_runbook(dir, what, &n);
  if (text && guards) {
    json_t *rb = json_loads(text, 0, NULL);
    json_t *g = json_object_get(rb, "guards");
    if (!g) json_object_set_new(rb, "guards", g = json_object());
    eng__guard_lists_add(g, guards);
    free(text);
    text = json_dumps(rb, JSON_INDENT(2));
    json_decref(rb);
  }
  *count = n;
  if (!text) {
    free(dir);
    return -1;
  }
  if (n == 0) {
    free(text);
    free(dir);
    return 0;
  }
  char *path = eng__asprintf("%s/cleanup.yaml", dir);
  FILE *f = fopen(path, "w");
  int code;
  if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
    fprintf(stderr, "engine: cannot write %s\n", path);
    code = ENG_EXIT_FAILED;
  } else {
    printf("run %s: removing %zu %s\n", id, n,
           what == ENG__CLEAN_ALL ? (n == 1 ? "resource" : "resources")
                                  : (n == 1 ? "leftover" : "leftovers"));
    fflush(stdout);
    eng__run_opts saved = c->o;
    c->o.cleanup_run = id;
    c->o.resume = NULL;
    c->o.lock = NULL;
    c->o.only = c->o.from = NULL;
    c->o.report = c->o.junit = c->o.evidence = NULL;
    code = run_file(c, st, path, false);
    c->o = saved;
  }
  free(text);
  free(path);
  free(dir);
  return code;
}

/* Before a run of rb holding lock `name`: what earlier runs holding it left
 * behind (their marker locks/NAME.runs/ID is still there) is removed
 * first, held to rb's protected targets. 0, or the exit code when it could
 * not be (said on stderr). */
static int remove_leftovers(cli *c, eng__state *st, const char *name,
                            const char *self, const eng__runbook *rb) {
  char err[1024] = "";
  char *prefix = eng__asprintf("locks/%s.runs/", name);
  json_t *keys = eng__state_list(st, prefix, err, sizeof err);
  int result = 0;
  if (!keys) {
    fprintf(stderr, "engine: cannot list the earlier runs of lock '%s': %s\n",
            name, err);
    free(prefix);
    return ENG_EXIT_FAILED;
  }
  /* the protected targets of this runbook hold for the cleanup too */
  json_t *guards = json_object();
  static const char *const lists[] = {"protected_databases", "protected_volumes",
                                      "protected_buckets", "protected_instances"};
  for (size_t k = 0; k < sizeof lists / sizeof *lists; k++) {
    eng__node *g = eng__node_get(rb->guards, lists[k]);
    if (g) json_object_set_new(guards, lists[k], eng__node_to_json(g));
  }
  size_t i;
  json_t *k;
  json_array_foreach(keys, i, k) {
    const char *key = json_string_value(k);
    if (strncmp(key, prefix, strlen(prefix))) continue;
    const char *id = key + strlen(prefix);
    if (!strcmp(id, self)) continue;
    int pr = eng__state_pull_run(st, id, err, sizeof err);
    size_t n = 0;
    if (pr < 0) {
      fprintf(stderr, "engine: cannot read run %s (it held lock '%s'): %s\n",
              id, name, err);
      result = ENG_EXIT_FAILED;
      break;
    }
    if (pr == 0) {
      int code = cleanup_run(c, st, id, ENG__CLEAN_LEFTOVERS, &n,
                             json_object_size(guards) ? guards : NULL);
      if (code != 0) {
        if (code == ENG_EXIT_INTERRUPTED) {
          result = code;
          break;
        }
        fprintf(stderr,
                "engine: run %s (it held lock '%s') left resources that could "
                "not all be removed (exit %d); nothing of this run ran. Fix "
                "the cause and run 'engine cleanup %s'\n",
                id, name, code, id);
        result = ENG_EXIT_FAILED;
        break;
      }
      if (n) printf("run %s: leftovers removed\n", id);
    }
    eng__state_del(st, key, NULL, err, sizeof err);
  }
  json_decref(guards);
  json_decref(keys);
  free(prefix);
  return result;
}

/* The lock run `id` held (its run.start record says), or NULL. */
static char *run_lock_of(eng__state *st, const char *id) {
  char *key = eng__asprintf("runs/%s/audit.jsonl", id), *data = NULL, err[256];
  size_t len = 0;
  char *name = NULL;
  if (eng__state_get(st, key, &data, &len, NULL, err, sizeof err) == ENG_OK) {
    char *nl = memchr(data, '\n', len);
    json_t *j = json_loadb(data, nl ? (size_t)(nl - data) : len, 0, NULL);
    const char *s = json_string_value(json_object_get(j, "lock"));
    if (s && eng__lock_name_ok(s)) name = eng__xstrdup(s);
    json_decref(j);
  }
  free(data);
  free(key);
  return name;
}

/* Did run `id` leave something behind (partial or temporary resources)? */
static bool has_leftovers(const char *state_dir, const char *id) {
  char *dir = eng__asprintf("%s/runs/%s", state_dir, id);
  size_t n = 0;
  char *text = eng__cleanup_runbook(dir, ENG__CLEAN_LEFTOVERS, &n);
  free(text);
  free(dir);
  return n > 0;
}

/* The lock this run holds: --lock, else the runbook's `lock:` rendered
 * with the run's parameters (*name NULL: none). An exit code. */
static int lock_name_of(cli *c, eng__runbook *rb, eng__lua *L, char **name) {
  *name = NULL;
  if (c->o.cleanup_run) return ENG_EXIT_OK;
  if (c->lock) {
    *name = eng__xstrdup(c->lock);
  } else if (rb->lock) {
    eng__run_opts o = c->o;
    o.lock_out = name;
    int code = eng__run_main(rb, L, &o);
    if (code != ENG_EXIT_OK) return code;
  }
  if (!*name && c->leftovers) {
    fprintf(stderr, "engine: --cleanup-leftovers needs a lock (--lock NAME or "
                    "the runbook's 'lock:'): only runs holding the same lock "
                    "are known to be over; nothing ran\n");
    return ENG_EXIT_USAGE;
  }
  return ENG_EXIT_OK;
}

/* Take lock `name` for run `id` and start renewing it. An exit code (6:
 * held, said with the holder). */
static int take_lock(cli *c, eng__state *st, const char *name, const char *id,
                     eng__lock **lock) {
  eng__lock_holder h;
  char over[32], err[1024] = "";
  int rc = eng__lock_take(st, name, id, eng__now_ms(), c->lock_ttl_ms, lock, &h,
                          over, err, sizeof err);
  if (rc > 0) {
    fprintf(stderr,
            "engine: another run holds the lock '%s': run %s on host %s, "
            "started %s%s%s; nothing ran\n",
            name, h.run[0] ? h.run : "?", h.host[0] ? h.host : "?",
            h.started[0] ? h.started : "?", h.expires[0] ? ", valid until " : "",
            h.expires);
    return ENG_EXIT_LOCKED;
  }
  if (rc < 0) {
    fprintf(stderr, "engine: cannot take the lock '%s': %s; nothing ran\n",
            name, err);
    return ENG_EXIT_FAILED;
  }
  eng__lock_renewing(*lock);
  if (over[0])
    printf("lock '%s': taken over from run %s, whose lock had expired\n", name,
           over);
  return ENG_EXIT_OK;
}

/* A new run id that no run in the store has yet. */
static void new_run_id(eng__state *st, char id[40]) {
  for (int tries = 0; tries < 5; tries++) {
    eng__run_new_id(id, eng__now_ms());
    if (!eng__state_url(st)) return;
    char *key = eng__asprintf("runs/%s/journal", id), *data = NULL, err[256];
    size_t len;
    int rc = eng__state_get(st, key, &data, &len, NULL, err, sizeof err);
    free(data);
    free(key);
    if (rc != ENG_OK) return;
  }
}

static bool lock_lost(void *lock) {
  return eng__lock_lost(lock, eng__now_ms(), NULL, 0);
}

/* Before the steps of a run holding a lock: leftovers of earlier runs
 * removed, the run recorded under the lock (and, resuming from a store,
 * its state read). An exit code. */
static int prepare_locked(cli *c, eng__state *st, eng__runbook *rb,
                          const char *name, const char *id, eng__lock *lock) {
  char err[1024] = "";
  if (!c->no_leftovers) {
    int code = remove_leftovers(c, st, name, id, rb);
    if (code != 0) return code;
  }
  char *key = eng__asprintf("locks/%s.runs/%s", name, id);
  int rc = eng__state_put(st, key, id, strlen(id), NULL, NULL, err, sizeof err);
  free(key);
  if (rc != ENG_OK) {
    fprintf(stderr, "engine: cannot record the run under its lock: %s; "
                    "nothing ran\n", err);
    return ENG_EXIT_FAILED;
  }
  char msg[400];
  if (eng__lock_lost(lock, eng__now_ms(), msg, sizeof msg)) {
    fprintf(stderr, "engine: %s; nothing ran\n", msg);
    return ENG_EXIT_FAILED;
  }
  return ENG_EXIT_OK;
}

/* A run (or a cleanup) with its state in st: the run lock when one is
 * asked for, leftovers of earlier runs holding it, the state written to
 * the store as the run goes, and the lock released at the end. */
static int run_in_state(cli *c, eng__state *st, eng__runbook *rb,
                        eng__lua *L) {
  char err[1024] = "";
  char id[40];
  const char *reuse = c->o.resume ? c->o.resume : c->o.cleanup_run;
  if (reuse) snprintf(id, sizeof id, "%s", reuse);
  else new_run_id(st, id);
  char *name = NULL;
  int code = lock_name_of(c, rb, L, &name);
  if (code != ENG_EXIT_OK) return code;
  eng__lock *lock = NULL;
  if (name && (code = take_lock(c, st, name, id, &lock)) != ENG_EXIT_OK) {
    free(name);
    return code;
  }
  /* resuming from a store: its state, read once the lock is ours */
  if (eng__state_url(st) && c->o.resume) {
    int pr = eng__state_pull_run(st, id, err, sizeof err);
    if (pr != 0) {
      fprintf(stderr, "engine: --resume %s: %s\n", id,
              pr > 0 ? "no such run in the state store (see 'engine runs')"
                     : err);
      code = pr > 0 ? ENG_EXIT_USAGE : ENG_EXIT_FAILED;
    }
  }
  if (code == ENG_EXIT_OK && lock)
    code = prepare_locked(c, st, rb, name, id, lock);
  if (code != ENG_EXIT_OK) {
    eng__lock_release(lock);
    free(name);
    return code;
  }
  eng__state_sync *sync = eng__state_sync_start(st, id, lock ? lock_lost : NULL,
                                                lock);
  eng__run_opts saved = c->o;
  if (!reuse) c->o.run_id = id;
  c->o.lock = lock;
  c->o.on_boundary = eng__state_sync_kick;
  c->o.boundary_ud = sync;
  code = eng__run_main(rb, L, &c->o);
  c->o = saved;
  int synced = eng__state_sync_stop(sync, err, sizeof err);
  if (synced != 0) {
    fprintf(stderr, "engine: the run's state could not be written to %s: "
                    "%s\n", eng__state_url(st), err);
    if (code == ENG_EXIT_OK) code = ENG_EXIT_FAILED;
  }
  bool left = has_leftovers(c->o.state_dir, id);
  if (lock) {
    if (!left && !lock_lost(lock)) {
      char *key = eng__asprintf("locks/%s.runs/%s", name, id);
      eng__state_del(st, key, NULL, err, sizeof err);
      free(key);
    }
    eng__lock_release(lock);
  }
  /* the store has it all; artefacts a resume or a cleanup may need stay */
  if (eng__state_url(st) && synced == 0 && code == ENG_EXIT_OK && !left) {
    char *dir = eng__asprintf("%s/runs/%s", c->o.state_dir, id);
    eng__rm_tree(dir);
    free(dir);
  }
  free(name);
  return code;
}

static int cmd_validate(cli *c) {
  if (c->help || c->n_positional == 0) {
    return print_help("usage: engine validate RUNBOOK...\n\nChecks syntax, keys, step "
          "ids, needs, cycles, actions and their parameters, durations and "
          "Lua code. Exit 0 when every file is valid, 2 otherwise.\n", c->help ? stdout : stderr,
                      c->help ? 0 : ENG_EXIT_USAGE);
  }
  eng__diags d = {0};
  d.color = c->o.color && isatty(2);
  load_plugins(c, &d);
  int code = 0;
  for (size_t i = 0; i < c->n_positional; i++) {
    size_t before = d.errors;
    eng__lua *L = NULL;
    eng__runbook *rb = load_valid(c->positional[i], &L, c->o.lua_lib_dir, &d);
    if (rb) {
      printf("%s: ok (%zu steps, %zu in finally)\n", c->positional[i],
             rb->n_main, rb->n_steps - rb->n_main);
      eng__lua_destroy(L);
      eng__runbook_free(rb);
    } else {
      printf("%s: %zu error%s\n", c->positional[i], d.errors - before,
             d.errors - before == 1 ? "" : "s");
      code = ENG_EXIT_USAGE;
    }
  }
  eng__diags_free(&d);
  return code;
}

static const char *const side_names[] = {"read_only", "creates",
                                         "destructive", "disruptive",
                                         "external"};
static const char *const target_names[] = {"",         "database", "volume",
                                           "container", "bucket",   "instance",
                                           "command",  "file",     "snapshot"};

/* What an action's created resources are, for actions that create. */
static const char *creates_name(const eng_action *a) {
  if (a->creates == ENG_TEMPORARY) return "temporary";
  return a->side_effect == ENG_SIDE_CREATES ? "kept" : NULL;
}

static const char *target_name(eng_target t) {
  return (unsigned)t < sizeof target_names / sizeof *target_names
             ? target_names[t] : "target";
}

static void print_action(const eng__action_ref *a, bool full) {
  const eng_action *act = a->action;
  const char *cr = creates_name(act);
  printf("  %-26s %-11s %s%s%s%s", a->full, side_names[act->side_effect],
         act->doc ? act->doc : "",
         (act->flags & ENG_A_REPEAT_SAFE) ? " [repeat-safe]" : "",
         cr ? " [creates: " : "", cr ? cr : "");
  if (cr) printf("]\n");
  else printf("\n");
  if (!full) return;
  printf("    params:\n");
  for (const eng_param *p = act->params; p && p->name; p++) {
    printf("      %-18s %-8s", p->name, eng__type_name(p->type));
    if (p->flags & ENG_P_REQUIRED) printf(" required");
    if (p->flags & ENG_P_SECRET) printf(" secret");
    if (p->def) printf(" default=%s", p->def);
    if (p->target) printf(" target=%s", target_name(p->target));
    if (p->choices) printf(" choices=%s", p->choices);
    printf("  %s\n", p->doc ? p->doc : "");
  }
  printf("    outputs:\n");
  for (const eng_output *o = act->outputs; o && o->name; o++)
    printf("      %-18s %-8s  %s\n", o->name, eng__type_name(o->type),
           o->doc ? o->doc : "");
}

static int cmd_plugins(cli *c) {
  if (c->help) {
    return print_help("usage: engine plugins [PLUGIN[.ACTION]]\n\nLists loaded plugins "
          "and their actions; with a name, the parameters and outputs too.\n", stdout, 0);
  }
  eng__diags d = {0};
  load_plugins(c, &d);
  const char *want = c->n_positional ? c->positional[0] : NULL;
  const eng__plugin_entry *pl;
  size_t np = eng__registry_plugins(&pl);
  const eng__action_ref **acts;
  size_t na = eng__registry_actions(&acts);
  bool found = false;
  for (size_t i = 0; i < np; i++) {
    const eng_plugin *p = pl[i].desc;
    bool builtin = pl[i].path == NULL;
    size_t plen = strlen(p->name);
    bool whole = want && !strcmp(want, p->name);
    bool prefix = want && !strncmp(want, p->name, plen) && want[plen] == '.';
    if (want && !whole && !prefix && !(builtin && eng__registry_find(want) &&
                                       eng__registry_find(want)->builtin))
      continue;
    printf("%s %s (ABI %u.%u)%s%s\n", p->name, p->version ? p->version : "",
           (unsigned)p->abi_major, (unsigned)p->abi_minor,
           pl[i].path ? "  " : "", pl[i].path ? pl[i].path : "");
    if (p->doc) printf("  %s\n", p->doc);
    for (size_t k = 0; k < na; k++) {
      if (acts[k]->plugin != p) continue;
      if (want && !whole && strcmp(want, acts[k]->full)) continue;
      print_action(acts[k], want != NULL);
      found = true;
    }
    for (size_t k = 0; k < p->n_lua_funcs; k++)
      printf("  lua: %s.%s  %s\n", p->lua_funcs[k].table, p->lua_funcs[k].name,
             p->lua_funcs[k].doc ? p->lua_funcs[k].doc : "");
  }
  const eng__plugin_failure *f;
  size_t nf = eng__registry_failures(&f);
  eng__diags_free(&d);
  /* refused plugins were warnings; one the user asked for is an error */
  for (size_t i = 0; want && !found && i < nf; i++) {
    size_t sl = strlen(f[i].stem);
    if (!strncmp(want, f[i].stem, sl) && (want[sl] == '\0' || want[sl] == '.')) {
      fprintf(stderr, "engine: plugin '%s' (%s) was refused: %s\n",
              f[i].stem, f[i].path, f[i].message);
      return ENG_EXIT_USAGE;
    }
  }
  if (want && !found) {
    const char *const *names;
    size_t n = eng__registry_names(&names);
    const char *hint = eng__suggest(want, names, n);
    fprintf(stderr, "engine: no plugin or action '%s'%s%s%s\n", want,
            hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
    return ENG_EXIT_USAGE;
  }
  return 0;
}

static json_t *type_schema(eng_type t, const char *choices) {
  switch (t) {
  case ENG_T_STRING: {
    json_t *s = json_pack("{s:s}", "type", "string");
    if (choices) { /* one of them, or a ${...} decided at run time */
      json_t *e = json_array();
      char *cp = eng__xstrdup(choices), *save = NULL;
      for (char *x = strtok_r(cp, "|", &save); x; x = strtok_r(NULL, "|", &save))
        json_array_append_new(e, json_string(x));
      free(cp);
      json_object_set(s, "examples", e);
      json_object_set_new(s, "if", json_pack("{s:s}", "pattern", "\\$\\{"));
      json_object_set_new(s, "else", json_pack("{s:o}", "enum", e));
    }
    return s;
  }
  case ENG_T_INT: return json_pack("{s:[s,s]}", "type", "integer", "string");
  case ENG_T_NUMBER: return json_pack("{s:[s,s]}", "type", "number", "string");
  case ENG_T_BOOL: return json_pack("{s:[s,s]}", "type", "boolean", "string");
  case ENG_T_DURATION:
    return json_pack("{s:[s,s], s:s}", "type", "string", "number", "format",
                     "duration");
  case ENG_T_LIST: return json_pack("{s:[s,s]}", "type", "array", "string");
  case ENG_T_MAP: return json_pack("{s:[s,s]}", "type", "object", "string");
  case ENG_T_TIMESTAMP:
    return json_pack("{s:[s,s], s:s}", "type", "string", "number", "format",
                     "timestamp");
  default: return json_object();
  }
}

/* A parameter for editors: type, enum, range, default, and the help text
 * as plain and Markdown descriptions. */
static json_t *param_schema(const eng_param *p) {
  json_t *ps = type_schema(p->type, p->choices);
  eng__buf md = {0};
  eng__buf_addf(&md, "**%s**%s", eng__type_name(p->type),
                (p->flags & ENG_P_REQUIRED) && !p->def ? ", required" : "");
  if (p->def) {
    json_t *d = json_loads(p->def, JSON_DECODE_ANY, NULL);
    if (d) json_object_set_new(ps, "default", d);
    eng__buf_addf(&md, ", default `%s`", p->def);
  }
  bool ms = p->type == ENG_T_DURATION;
  char a[32], b[32];
  if (p->flags & ENG_P_MIN) {
    if (!ms) json_object_set_new(ps, "minimum", json_real(p->min));
    if (ms) eng__fmt_duration((int64_t)p->min, a, sizeof a);
    else snprintf(a, sizeof a, "%.15g", p->min);
    eng__buf_addf(&md, ", at least %s", a);
  }
  if (p->flags & ENG_P_MAX) {
    if (!ms) json_object_set_new(ps, "maximum", json_real(p->max));
    if (ms) eng__fmt_duration((int64_t)p->max, b, sizeof b);
    else snprintf(b, sizeof b, "%.15g", p->max);
    eng__buf_addf(&md, ", at most %s", b);
  }
  if (p->choices) eng__buf_addf(&md, ", one of `%s`", p->choices);
  if (p->flags & ENG_P_SECRET) eng__buf_adds(&md, ", secret");
  if (p->target) eng__buf_addf(&md, ", names a %s", target_name(p->target));
  if (p->doc) {
    json_object_set_new(ps, "description", json_string(p->doc));
    eng__buf_addf(&md, "\n\n%s", p->doc);
  }
  if (p->type == ENG_T_DURATION)
    eng__buf_adds(&md, "\n\nA duration: 500ms, 30s, 5m, 1h30m, or seconds.");
  json_object_set_new(ps, "markdownDescription", json_string(md.data));
  eng__buf_free(&md);
  return ps;
}

static json_t *action_doc(const eng__action_ref *r, bool markdown) {
  const eng_action *a = r->action;
  if (!markdown) return json_string(a->doc ? a->doc : r->full);
  eng__buf md = {0};
  const char *cr = creates_name(a);
  eng__buf_addf(&md, "**%s** (%s)%s%s%s\n\n%s", r->full,
                side_names[a->side_effect],
                (a->flags & ENG_A_REPEAT_SAFE) ? ", repeat-safe" : "",
                cr ? ", creates " : "", cr ? cr : "", a->doc ? a->doc : "");
  if (a->outputs && a->outputs->name) {
    eng__buf_adds(&md, "\n\nOutputs:");
    for (const eng_output *o = a->outputs; o->name; o++)
      eng__buf_addf(&md, "\n- `%s` (%s) %s", o->name, eng__type_name(o->type),
                    o->doc ? o->doc : "");
  }
  json_t *s = json_string(md.data);
  eng__buf_free(&md);
  return s;
}

/* A Markdown table cell: one line, pipes escaped. */
static void md_cell(eng__buf *b, const char *s) {
  for (; s && *s; s++) {
    if (*s == '|') eng__buf_adds(b, "\\|");
    else if (*s == '\n') eng__buf_adds(b, " ");
    else eng__buf_addf(b, "%c", *s);
  }
}

/* The action reference in Markdown, from the declarations of the loaded
 * plugins: docs/actions.md is this output (a test keeps it current). */
static int cmd_docs(cli *c) {
  if (c->help) {
    return print_help("usage: engine docs\n\nPrints the reference of every action "
          "of the loaded plugins (parameters, types, defaults, outputs) as "
          "Markdown: docs/actions.md is this output.\n", stdout, 0);
  }
  load_plugins_quietly(c);
  const eng__plugin_entry *pl;
  size_t np = eng__registry_plugins(&pl);
  const eng__action_ref **acts;
  size_t na = eng__registry_actions(&acts);
  eng__buf b = {0};
  eng__buf_adds(&b,
      "# Actions\n\n"
      "Generated by `engine docs` from the declarations of the actions (do not "
      "edit: run `engine docs > docs/actions.md`). `engine plugins ACTION` "
      "prints the same for one action, and `engine schema` gives editors a "
      "JSON Schema of it.\n\n"
      "Each action has a class: `read_only`, `creates` (what it creates is "
      "recorded in the run's journal, as *kept* (what the run delivers, "
      "never removed automatically) or *temporary* (removed when the run "
      "ends); a step's `keep: true` or `temporary: true` overrides it, see "
      "runbook-format.md, \"Kept and temporary resources\"), `disruptive`, "
      "`destructive` (held to the guards, see runbook-format.md) or "
      "`external`. Parameters are given under `with:`; their values are "
      "converted to the type shown (runbook-format.md, \"Types\") and checked "
      "by `engine validate`. Outputs are read as "
      "`${steps.ID.outputs.NAME}`.\n");
  for (size_t i = 0; i < np; i++) {
    const eng_plugin *p = pl[i].desc;
    eng__buf_addf(&b, "\n## %s\n\n%s%s", pl[i].path ? p->name : "built-in actions",
                  p->doc ? p->doc : "", p->doc ? "\n" : "");
    for (size_t k = 0; k < na; k++) {
      const eng_action *a = acts[k]->action;
      if (acts[k]->plugin != p) continue;
      const char *cr = creates_name(a);
      eng__buf_addf(&b, "\n### %s\n\n%s (%s%s%s%s)\n", acts[k]->full,
                    a->doc ? a->doc : "", side_names[a->side_effect],
                    (a->flags & ENG_A_REPEAT_SAFE) ? ", safe to repeat" : "",
                    cr ? ", what it creates is " : "", cr ? cr : "");
      if (a->params && a->params->name) {
        eng__buf_adds(&b, "\n| parameter | type | default | |\n|---|---|---|---|\n");
        for (const eng_param *q = a->params; q->name; q++) {
          eng__buf_addf(&b, "| `%s` | %s | ", q->name, eng__type_name(q->type));
          if (q->def) {
            eng__buf_adds(&b, "`");
            md_cell(&b, q->def);
            eng__buf_adds(&b, "`");
          } else {
            eng__buf_adds(&b, (q->flags & ENG_P_REQUIRED) ? "required" : "-");
          }
          eng__buf_adds(&b, " | ");
          md_cell(&b, q->doc);
          size_t dl = q->doc ? strlen(q->doc) : 0;
          if (dl && !strchr(".)", q->doc[dl - 1])) eng__buf_adds(&b, ".");
          if (q->choices) {
            eng__buf_adds(&b, " One of `");
            md_cell(&b, q->choices);
            eng__buf_adds(&b, "`.");
          }
          if (q->flags & ENG_P_SECRET) eng__buf_adds(&b, " Secret.");
          if (q->target)
            eng__buf_addf(&b, " Names a %s (guarded).", target_names[q->target]);
          eng__buf_adds(&b, " |\n");
        }
      }
      if (a->outputs && a->outputs->name) {
        eng__buf_adds(&b, "\n| output | type | |\n|---|---|---|\n");
        for (const eng_output *o = a->outputs; o->name; o++) {
          eng__buf_addf(&b, "| `%s` | %s | ", o->name, eng__type_name(o->type));
          md_cell(&b, o->doc);
          eng__buf_adds(&b, " |\n");
        }
      } else {
        eng__buf_adds(&b, "\nOutputs: any names the step sets.\n");
      }
    }
    for (size_t k = 0; k < p->n_lua_funcs; k++)
      eng__buf_addf(&b, "\nLua: `%s.%s` %s\n", p->lua_funcs[k].table,
                    p->lua_funcs[k].name, p->lua_funcs[k].doc ? p->lua_funcs[k].doc : "");
  }
  fputs(b.data, stdout);
  eng__buf_free(&b);
  return 0;
}

static int cmd_schema(cli *c) {
  if (c->help) {
    return print_help("usage: engine schema\n\nPrints a JSON Schema (draft 2020-12) for "
          "runbook files, generated from the loaded plugins.\n", stdout, 0);
  }
  load_plugins_quietly(c);
  const eng__action_ref **acts;
  size_t na = eng__registry_actions(&acts);
  json_t *variants = json_array();
  json_t *uses_enum = json_array();
  for (size_t i = 0; i < na; i++) {
    const eng_action *a = acts[i]->action;
    json_t *props = json_object();
    json_t *req = json_array();
    for (const eng_param *p = a->params; p && p->name; p++) {
      json_object_set_new(props, p->name, param_schema(p));
      if ((p->flags & ENG_P_REQUIRED) && !p->def)
        json_array_append_new(req, json_string(p->name));
    }
    json_t *with = json_pack("{s:s, s:o, s:b, s:o, s:o}", "type", "object",
                             "properties", props, "additionalProperties", 0,
                             "description", action_doc(acts[i], false),
                             "markdownDescription", action_doc(acts[i], true));
    if (json_array_size(req)) json_object_set_new(with, "required", req);
    else json_decref(req);
    json_array_append_new(
        variants,
        json_pack("{s:{s:{s:{s:s}}}, s:{s:{s:o}}}", "if", "properties", "uses",
                  "const", acts[i]->full, "then", "properties", "with", with));
    json_array_append_new(uses_enum,
                          json_pack("{s:s, s:o, s:o}", "const", acts[i]->full,
                                    "description", action_doc(acts[i], false),
                                    "markdownDescription",
                                    action_doc(acts[i], true)));
  }
  json_t *dur = json_pack("{s:[s,s], s:s}", "type", "string", "number",
                          "pattern", "^([0-9.]+(ms|s|m|h|d))+$|^[0-9.]+$");
  json_t *retry = json_pack(
      "{s:s, s:{s:{s:s, s:i}, s:O, s:{s:s, s:i}, s:O}, s:b}", "type",
      "object", "properties", "attempts", "type", "integer", "minimum", 1,
      "delay", dur, "backoff", "type", "number", "minimum", 1, "max_delay",
      dur, "additionalProperties", 0);
  json_t *step = json_pack(
      "{s:s, s:[s,s], s:{s:{s:s, s:s}, s:{s:s}, s:{s:s, s:o}, s:{s:s}, "
      "s:{s:[s,s]}, s:{s:[s,s]}, s:O, s:O, s:{s:s}, s:{s:s}, s:{s:s}, "
      "s:{s:s}, s:{s:s}, s:{s:s}, s:{s:s}}, s:b, s:o}",
      "type", "object", "required", "id", "uses", "properties", "id", "type",
      "string", "pattern", "^[a-z0-9_-]+$", "name", "type", "string", "uses",
      "type", "string", "anyOf", uses_enum, "with", "type", "object", "needs",
      "type", "array", "string", "if", "type", "string", "boolean", "timeout",
      dur, "retry", retry, "continue_on_error", "type", "boolean", "check",
      "type", "string", "outputs", "type", "object", "recovered", "type",
      "boolean", "description", "type", "string", "keep", "type", "boolean",
      "temporary", "type", "boolean", "additionalProperties", 0,
      "allOf", variants);
  json_t *param = json_pack(
      "{s:[s,s,s,s,s,s], s:{s:{s:s}, s:{s:s}, s:{s:s}, s:{}, s:{s:s, s:[s,s,s,s,s,s,s,s,s]}, "
      "s:{s:s}, s:{s:s}, s:{s:s}}}",
      "type", "object", "string", "number", "boolean", "array", "null",
      "properties", "env", "type", "string", "secret", "type", "boolean",
      "required", "type", "boolean", "default", "type", "type", "string",
      "enum", "string", "int", "number", "bool", "duration", "list", "map",
      "timestamp", "any", "choices", "type", "array", "description", "type", "string", "doc",
      "type", "string");
  json_t *strlist = json_pack("{s:s, s:{s:s}}", "type", "array", "items",
                              "type", "string");
  json_t *schema = json_pack(
      "{s:s, s:s, s:s, s:[s,s,s], s:{s:{s:i}, s:{s:s, s:s}, s:{s:s}, "
      "s:{s:s, s:o}, s:{s:s, s:{s:O, s:O, s:{s:s}}}, "
      "s:{s:s, s:{s:O, s:O, s:O, s:O, s:O, s:{s:s}, s:{s:s}}}, "
      "s:{s:s, s:{s:O, s:O}}, s:{s:s, s:O}, s:{s:s, s:O}}, s:b}",
      "$schema", "https://json-schema.org/draft/2020-12/schema", "title",
      "engine runbook (version 1)", "type", "object", "required", "version",
      "name", "steps", "properties", "version", "const", 1, "name", "type",
      "string", "pattern", "^[a-z0-9][a-z0-9-]*$", "description", "type",
      "string", "params", "type", "object", "additionalProperties", param,
      "slo", "type", "object", "properties", "rto", dur, "rpo", dur,
      "backup_time", "type", "string", "guards", "type", "object",
      "properties", "protected_databases", strlist, "protected_volumes",
      strlist, "protected_buckets", strlist, "protected_instances", strlist,
      "forbidden_commands", strlist, "require", "type", "array", "checks",
      "type", "array", "defaults", "type", "object", "properties", "timeout",
      dur, "retry", retry, "steps", "type", "array", "items", step, "finally",
      "type", "array", "items", step, "additionalProperties", 0);
  json_decref(dur);
  json_decref(retry);
  json_decref(step);
  json_decref(strlist);
  if (!schema) {
    fprintf(stderr, "engine: internal error building the schema\n");
    return 1;
  }
  char *s = json_dumps(schema, JSON_INDENT(2));
  puts(s);
  free(s);
  json_decref(schema);
  return 0;
}

/* A URL names an audit log in a store (a run's directory names its
 * audit.jsonl); a run id names the one under --state-dir. The local file
 * to verify or show, or NULL (said). *tmp: a temporary copy to remove. */
static char *audit_file(cli *c, const char *arg, char **tmp) {
  *tmp = NULL;
  char err[1024] = "";
  bool url = strstr(arg, "://") != NULL;
  char *obj = NULL;
  if (url) {
    size_t l = strlen(arg);
    obj = l > 6 && !strcmp(arg + l - 6, ".jsonl")
              ? eng__xstrdup(arg)
              : eng__asprintf("%s%saudit.jsonl", arg,
                              arg[l - 1] == '/' ? "" : "/");
  } else if (access(arg, F_OK) != 0 && !strchr(arg, '/')) {
    if (strstr(c->state_spec, "://"))
      obj = eng__asprintf("%s/runs/%s/audit.jsonl", c->state_spec, arg);
    else
      return eng__asprintf("%s/runs/%s/audit.jsonl", c->state_spec, arg);
  } else {
    return eng__xstrdup(arg);
  }
  load_plugins_quietly(c);
  size_t len = 0;
  char *data = eng__state_fetch_url(obj, &len, err, sizeof err);
  if (!data) {
    fprintf(stderr, "engine: cannot read %s: %s\n", obj, err);
    free(obj);
    return NULL;
  }
  free(obj);
  char *path = eng__tmp_path("engine-audit", true);
  int fd = mkstemp(path);
  bool ok = fd >= 0 && write(fd, data, len) == (ssize_t)len;
  if (fd >= 0) close(fd);
  free(data);
  if (!ok) {
    fprintf(stderr, "engine: cannot write a temporary copy of the audit log\n");
    if (fd >= 0) unlink(path);
    free(path);
    return NULL;
  }
  *tmp = path;
  return eng__xstrdup(path);
}

static int cmd_audit(cli *c) {
  if (c->help || c->n_positional != 2 ||
      (strcmp(c->positional[0], "verify") && strcmp(c->positional[0], "show"))) {
    return print_help("usage: engine audit verify FILE|URL|RUN_ID   exit 0 when intact, 1 naming the "
          "first bad line\n       engine audit show FILE|URL|RUN_ID     readable "
          "timeline\nA URL (s3://BUCKET/PREFIX/runs/ID[/audit.jsonl]) reads the "
          "log from a state store;\na run id reads it from --state-dir.\n"
          "With ENGINE_AUDIT_KEY set, verify checks every record's "
          "HMAC too.\n", c->help ? stdout : stderr,
                      c->help ? 0 : ENG_EXIT_USAGE);
  }
  char *tmp;
  char *file = audit_file(c, c->positional[1], &tmp);
  if (!file) return ENG_EXIT_USAGE;
  int code = !strcmp(c->positional[0], "show") ? eng__audit_show(file, stdout)
                                               : eng__audit_verify(file, stdout);
  if (tmp) unlink(tmp);
  free(tmp);
  free(file);
  return code;
}

static int cmd_runs(cli *c) {
  if (c->help) {
    return print_help("usage: engine runs [--state-dir DIR|URL]\nLists recorded runs, their "
          "status and how many created resources were not removed.\n", stdout, 0);
  }
  if (!strstr(c->state_spec, "://"))
    return eng__runs_list(c->o.state_dir, stdout);
  load_plugins_quietly(c);
  eng__state *st = open_state(c);
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

static const char cleanup_help[] =
    "usage: engine cleanup RUN_ID [--dry-run] [--include-kept [--yes]]\n"
    "                             [--state-dir DIR|URL] [--set NAME=VALUE]\n"
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
    "      --yes            confirm --include-kept without a terminal\n";

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
    const char *step = json_string_value(json_object_get(e, "step"));
    const char *disp = json_string_value(json_object_get(e, "disposition"));
    const char *act = !present             ? "-"
                      : leftover           ? "removes"
                      : kept_too           ? "removes"
                                           : "keeps";
    char d[32];
    snprintf(d, sizeof d, "%s%s", disp ? disp : "?",
             json_is_true(json_object_get(e, "recorded")) ? "" : "*");
    printf("  %-14s %-16s %-10s %-9s %-10s %s\n", step ? step : "-",
           json_string_value(json_object_get(e, "kind")), d,
           !present ? "removed" : partial ? "partial" : "present", act,
           json_string_value(json_object_get(e, "id")));
  }
  json_array_foreach(res, i, e) {
    if (!json_is_true(json_object_get(e, "recorded"))) {
      printf("  * journaled by an engine before dispositions: kept\n");
      break;
    }
  }
  printf("  state as the journal records it; nothing was removed (dry run)\n");
}

/* The run's resources from its journal (pulled); NULL when none. */
static json_t *run_resources(cli *c, const char *id) {
  char *dir = eng__asprintf("%s/runs/%s", c->o.state_dir, id);
  json_t *all = eng__journal_read(dir);
  free(dir);
  json_t *res = all ? eng__journal_resources(all) : NULL;
  json_decref(all);
  return res;
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

static int cmd_cleanup(cli *c) {
  if (c->help || c->n_positional != 1)
    return print_help(cleanup_help, c->help ? stdout : stderr,
                      c->help ? 0 : ENG_EXIT_USAGE);
  if (c->yes && !c->include_kept)
    return usage_error("%s only confirms --include-kept", "--yes");
  const char *id = c->positional[0];
  bool dry = c->o.plan_only;
  c->o.plan_only = false;
  load_plugins_quietly(c);
  eng__state *st = open_state(c);
  if (!st) return ENG_EXIT_USAGE;
  char err[1024] = "";
  /* a run that held a lock is cleaned up holding it: never while the run
   * (or a run removing its leftovers) is still going; a dry run reads */
  char *name = dry ? NULL : run_lock_of(st, id);
  eng__lock *lock = NULL;
  int code = name ? take_lock(c, st, name, id, &lock) : ENG_EXIT_OK;
  if (code != ENG_EXIT_OK) {
    free(name);
    eng__state_close(st);
    return code;
  }
  int pr = eng__state_pull_run(st, id, err, sizeof err);
  json_t *res = pr == 0 ? run_resources(c, id) : NULL;
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
  } else if (c->include_kept && (code = confirm_kept(c, id, res)) != 0) {
    /* said */
  } else if ((code = cleanup_run(c, st, id, what, &n, NULL)) < 0) {
    code = ENG_EXIT_FAILED;
  } else if (n == 0) {
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
  if (lock && code == ENG_EXIT_OK && !has_leftovers(c->o.state_dir, id)) {
    char *key = eng__asprintf("locks/%s.runs/%s", name, id);
    eng__state_del(st, key, NULL, err, sizeof err);
    free(key);
  }
  eng__lock_release(lock);
  free(name);
  eng__state_close(st);
  return code;
}

static const char fleet_help[] =
    "usage: engine fleet render INVENTORY [--out DIR]\n"
    "\n"
    "Writes Kubernetes manifests for the databases of INVENTORY (YAML): per\n"
    "database a CronJob that runs its runbook, and a ConfigMap holding the\n"
    "runbook when it is a file next to the inventory. Prints them as\n"
    "multi-document YAML, or with --out DIR writes DIR/NAME.yaml per\n"
    "database. Secrets are referenced by name, never read. Exit 0 when\n"
    "written, 2 when the inventory is invalid (nothing is written).\n"
    "\n"
    "      --out DIR            one file per database in DIR\n"
    "      --no-color           no colours in diagnostics (env NO_COLOR too)\n"
    "\n"
    "Runbooks the image ships (name them without a file next to the\n"
    "inventory):\n";

/* `engine fleet render`: its own few options, parsed here. */
static int cmd_fleet(int argc, char **argv) {
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
    else if (ch == ':') return usage_error("option '%s' needs a value", argv[optind - 1]);
    else return usage_error("unknown option '%s' for fleet render", argv[optind - 1]);
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
  int code = eng__fleet_render(pos[1], out_dir, stdout, &d);
  if (code == ENG_EXIT_USAGE && d.errors)
    fprintf(stderr, "engine: %s is invalid (%zu error%s); nothing was written\n",
            pos[1], d.errors, d.errors == 1 ? "" : "s");
  eng__diags_free(&d);
  return code;
}

static void no_work(uv_work_t *w) { (void)w; }
static void no_after(uv_work_t *w, int status) {
  (void)w;
  (void)status;
}

/* Block SIGINT and SIGTERM; a run's loop unblocks them while it handles
 * them. libuv's worker threads start now, so they keep them blocked and
 * a signal always reaches the loop's thread. */
static void hold_signals(void) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &s, NULL);
  uv_work_t w;
  uv_queue_work(uv_default_loop(), &w, no_work, no_after);
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
}

/* A signal that came when no run could handle it any more (the last state
 * write, the lock's release): the run's outcome stands. */
static void settle_signals(void) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, SIGINT);
  sigaddset(&s, SIGTERM);
  struct timespec zero = {0, 0};
  while (sigtimedwait(&s, NULL, &zero) > 0) {
  }
}

/* Does option `a` take the next argument as its value? */
static bool takes_value(const char *a) {
  if (!strcmp(a, "-p")) return true;
  if (strncmp(a, "--", 2) != 0 || strchr(a, '=')) return false;
  for (const struct option *o = long_opts; o->name; o++)
    if (!strcmp(a + 2, o->name)) return o->has_arg == required_argument;
  return false;
}

/* The command: the first argument that is neither an option nor an
 * option's value (global options may come before it). -1 when none. */
static int find_command(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--")) return i + 1 < argc ? i + 1 : -1;
    if (a[0] != '-' || !a[1]) return i;
    if (takes_value(a)) i++;
  }
  return -1;
}

int main(int argc, char **argv) {
  int ci = find_command(argc, argv);
  if (ci < 0) {
    for (int i = 1; i < argc; i++)
      if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
        return print_help(usage_text, stdout, 0);
    if (argc >= 2 && !strcmp(argv[1], "--version")) ci = 1;
    else return print_help(usage_text, stderr, ENG_EXIT_USAGE);
  }
  const char *cmd = argv[ci];
  if (!strcmp(cmd, "help")) return print_help(usage_text, stdout, 0);
  /* argv for getopt: the command first, then every other argument */
  char **args = eng__xcalloc((size_t)argc + 1, sizeof *args);
  args[0] = argv[ci];
  for (int i = 1, k = 1; i < argc; i++)
    if (i != ci) args[k++] = argv[i];
  if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
    printf("engine %s (plugin ABI %d.%d)\n", ENG_VERSION, ENG_ABI_MAJOR,
           ENG_ABI_MINOR);
    return 0;
  }
  if (!strcmp(cmd, "fleet")) {
    int code = cmd_fleet(argc - 1, args);
    free(args);
    return code;
  }
  /* run and cleanup: signals wait for a run's loop (sched.c) */
  bool held = !strcmp(cmd, "run") || !strcmp(cmd, "cleanup");
  if (held) hold_signals();
  curl_global_init(CURL_GLOBAL_DEFAULT);
  cli c;
  memset(&c, 0, sizeof c);
  int code = parse_args(&c, argc - 1, args);
  if (code == 0) {
    if (!strcmp(cmd, "run")) code = cmd_run(&c, false);
    else if (!strcmp(cmd, "plan")) code = cmd_run(&c, true);
    else if (!strcmp(cmd, "validate")) code = cmd_validate(&c);
    else if (!strcmp(cmd, "plugins")) code = cmd_plugins(&c);
    else if (!strcmp(cmd, "schema")) code = cmd_schema(&c);
    else if (!strcmp(cmd, "docs")) code = cmd_docs(&c);
    else if (!strcmp(cmd, "audit")) code = cmd_audit(&c);
    else if (!strcmp(cmd, "runs")) code = cmd_runs(&c);
    else if (!strcmp(cmd, "cleanup")) code = cmd_cleanup(&c);
    else {
      static const char *const cmds[] = {"run", "plan", "validate", "plugins",
                                         "schema", "version", "audit", "runs",
                                         "cleanup", "docs", "fleet"};
      const char *hint = eng__suggest(cmd, cmds, sizeof cmds / sizeof *cmds);
      fprintf(stderr, "engine: unknown command '%s'%s%s%s\n(see 'engine --help')\n",
              cmd, hint ? " (did you mean '" : "", hint ? hint : "",
              hint ? "'?)" : "");
      code = ENG_EXIT_USAGE;
    }
  }
  json_decref(c.o.sets);
  json_decref(c.o.params_file);
  free(c.plugin_dirs);
  free(c.approve);
  free(args);
  eng__registry_unload();
  curl_global_cleanup();
  if (held) settle_signals();
  return code;
}
