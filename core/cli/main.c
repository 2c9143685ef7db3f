/* main.c - `engine COMMAND`: the options every command shares (before or
 * after the command name), signals held for run and cleanup, dispatch. */
#include "cli/cli.h"

#include <curl/curl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef ENG_VERSION
#define ENG_VERSION "0.0.0"
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
    "  schema [--inventory]       print a JSON Schema for runbook (inventory) "
    "files\n"
    "  docs                       print the action reference (Markdown)\n"
    "  audit verify FILE|URL|ID   verify an audit log's hash chain (and HMAC)\n"
    "  audit show FILE|URL|ID     print an audit log as a readable timeline\n"
    "  cleanup RUN_ID             remove a run's leftovers (--dry-run lists)\n"
    "  runs                       list recorded runs with status\n"
    "  history                    drills over time, with changes and freshness\n"
    "  report --html OUT.html     the drills over time as one HTML page\n"
    "  version                    print the version\n"
    "  fleet render INVENTORY     Kubernetes manifests for many databases\n"
    "  lint-migrations DIR        lint migrations (locks, rewrites) for CI\n"
    "\n"
    "'engine COMMAND --help' explains a command. Exit codes: 0 ok, 1 a step\n"
    "failed, 2 usage error or invalid runbook, 3 refused by a guard, 4 SLO\n"
    "missed, 5 interrupted, 6 another run holds the lock (nothing ran).\n";

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
  OPT_YES,
  OPT_ACCEPT_DAMAGED,
  OPT_HEAD,
  OPT_OUT,
  OPT_INVENTORY,
  OPT_KEYS,
  OPT_RUNBOOK,
  OPT_SINCE,
  OPT_FORMAT,
  OPT_STALE,
  OPT_METRICS_FILE,
  OPT_PUSHGATEWAY,
  OPT_HTML
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
    {"accept-damaged", no_argument, NULL, OPT_ACCEPT_DAMAGED},
    {"head", required_argument, NULL, OPT_HEAD},
    {"out", required_argument, NULL, OPT_OUT},
    {"inventory", no_argument, NULL, OPT_INVENTORY},
    {"keys", no_argument, NULL, OPT_KEYS},
    {"runbook", required_argument, NULL, OPT_RUNBOOK},
    {"since", required_argument, NULL, OPT_SINCE},
    {"format", required_argument, NULL, OPT_FORMAT},
    {"stale", required_argument, NULL, OPT_STALE},
    {"metrics-file", required_argument, NULL, OPT_METRICS_FILE},
    {"pushgateway", required_argument, NULL, OPT_PUSHGATEWAY},
    {"html", required_argument, NULL, OPT_HTML},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0}};

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

/* The defaults the environment sets (ENGINE_*, NO_COLOR); 0 or an exit
 * code. */
static int env_defaults(cli *c) {
  c->o.jobs = 4;
  const char *grace = getenv("ENGINE_CANCEL_GRACE");
  if (grace && *grace && set_cancel_grace(grace) != 0)
    return cli_usage_error("ENGINE_CANCEL_GRACE needs a duration such as 10s "
                       "(at most 1h), got '%s'", grace);
  c->o.state_dir = getenv("ENGINE_STATE_DIR") && *getenv("ENGINE_STATE_DIR")
                       ? getenv("ENGINE_STATE_DIR") : ".engine";
  c->o.grace_ms = ENG__GRACE_DEFAULT_MS;
  c->lock_ttl_ms = 60000;
  const char *g = getenv("ENGINE_GRACE");
  if (g && *g && (eng__parse_duration(g, &c->o.grace_ms) != 0 ||
                  c->o.grace_ms < 0 || c->o.grace_ms > ENG__DAY_MS))
    return cli_usage_error("ENGINE_GRACE needs a duration such as 25s, got '%s'", g);
  c->o.color = !getenv("NO_COLOR");
  const char *fmt = getenv("ENGINE_LOG_FORMAT");
  if (fmt && *fmt && set_log_format(&c->o, fmt) != 0)
    return cli_usage_error("ENGINE_LOG_FORMAT is text or json, not '%s'", fmt);
  return 0;
}

/* --set NAME=VALUE */
static int set_param(cli *c, const char *arg) {
  const char *eq = strchr(arg, '=');
  if (!eq || eq == arg)
    return cli_usage_error("--set needs NAME=VALUE, got '%s'", arg);
  char *k = eng__xstrndup(arg, (size_t)(eq - arg));
  json_object_set_new(c->o.sets, k, json_string(eq + 1));
  free(k);
  return 0;
}

/* --params-file FILE: a YAML mapping of parameter names to values. */
static int params_file(cli *c, const char *file) {
  eng__diags d = {0};
  size_t len;
  char *text = eng__read_file(file, 8u << 20, &len);
  if (!text) return cli_usage_error("cannot read --params-file '%s'", file);
  eng__node *n = eng__yaml_parse(file, text, len, &d);
  free(text);
  eng__diags_free(&d);
  if (!n) return ENG_EXIT_USAGE;
  if (n->kind != ENG__N_MAP) {
    eng__node_free(n);
    return cli_usage_error("--params-file '%s' must hold a mapping of "
                           "parameter names to values", file);
  }
  json_decref(c->o.params_file);
  c->o.params_file = eng__node_to_json(n);
  eng__node_free(n);
  return 0;
}

/* One option getopt returned; 0 or an exit code. */
static int apply_option(cli *c, int ch, char **argv) {
  switch (ch) {
  case 'p': return set_param(c, optarg);
  case OPT_PARAMS_FILE: return params_file(c, optarg);
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
      return cli_usage_error("--jobs needs a number from 1 to 256, got '%s'", optarg);
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
      return cli_usage_error("--log-format is text or json, not '%s'", optarg);
    break;
  case 'q': c->o.verbosity = -1; break;
  case 'v': c->o.verbosity = 1; break;
  case OPT_NO_COLOR: c->o.color = false; break;
  case OPT_CANCEL_GRACE:
    if (set_cancel_grace(optarg) != 0)
      return cli_usage_error("--cancel-grace needs a duration such as 10s or "
                         "500ms (at most 1h), got '%s'", optarg);
    break;
  case OPT_LOCK:
    if (!eng__lock_name_ok(optarg))
      return cli_usage_error("--lock needs a name of letters, digits, '.', '_' "
                         "and '-' (1-128 characters), got '%s'", optarg);
    c->lock = optarg;
    break;
  case OPT_LOCK_TTL:
    if (eng__parse_duration(optarg, &c->lock_ttl_ms) != 0 ||
        c->lock_ttl_ms < 3000 || c->lock_ttl_ms > ENG__DAY_MS)
      return cli_usage_error("--lock-ttl needs a duration from 3s to 24h, got "
                         "'%s'", optarg);
    break;
  case OPT_GRACE:
    if (eng__parse_duration(optarg, &c->o.grace_ms) != 0 ||
        c->o.grace_ms < 0 || c->o.grace_ms > ENG__DAY_MS)
      return cli_usage_error("--grace needs a duration such as 25s (0: no "
                         "bound), got '%s'", optarg);
    break;
  case OPT_NO_LEFTOVERS: c->no_leftovers = true; break;
  case OPT_LEFTOVERS: c->leftovers = true; break;
  case OPT_INCLUDE_KEPT: c->include_kept = true; break;
  case OPT_YES: c->yes = true; break;
  case OPT_ACCEPT_DAMAGED: c->accept_damaged = true; break;
  case OPT_HEAD:
    if (strlen(optarg) != 64 || strspn(optarg, "0123456789abcdef") != 64)
      return cli_usage_error("--head needs the 64 hex digits of a chain head "
                             "(the run prints it; report.json's audit_head), "
                             "got '%s'", optarg);
    c->head = optarg;
    break;
  case OPT_OUT: c->out = optarg; break;
  case OPT_INVENTORY: c->inventory = true; break;
  case OPT_KEYS: c->keys = true; break;
  case OPT_RUNBOOK: c->runbook = optarg; break;
  case OPT_SINCE: return cli_history_since(c, optarg);
  case OPT_FORMAT:
    if (strcmp(optarg, "table") && strcmp(optarg, "json") && strcmp(optarg, "csv"))
      return cli_usage_error("--format is table, json or csv, not '%s'", optarg);
    c->format = optarg;
    break;
  case OPT_METRICS_FILE: c->metrics_file = optarg; break;
  case OPT_HTML: c->html = optarg; break;
  case OPT_PUSHGATEWAY:
    if (strncmp(optarg, "http://", 7) && strncmp(optarg, "https://", 8))
      return cli_usage_error("--pushgateway needs the Pushgateway's http:// or "
                             "https:// URL, e.g. http://pushgateway:9091, got "
                             "'%s'", optarg);
    c->pushgateway = optarg;
    break;
  case OPT_STALE:
    if (eng__parse_duration(optarg, &c->stale_ms) != 0 || c->stale_ms <= 0)
      return cli_usage_error("--stale needs a duration such as 35d or 12h, "
                             "got '%s'", optarg);
    break;
  case 'h': c->help = true; break;
  case ':': return cli_usage_error("option '%s' needs a value", argv[optind - 1]);
  default: return cli_usage_error("unknown option '%s'", argv[optind - 1]);
  }
  return 0;
}

static int parse_args(cli *c, int argc, char **argv) {
  int code = env_defaults(c);
  if (code) return code;
  c->o.sets = json_object();
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, ":p:qvh", long_opts, NULL)) != -1)
    if ((code = apply_option(c, ch, argv)) != 0) return code;
  c->positional = argv + optind;
  c->n_positional = (size_t)(argc - optind);
  c->state_spec = c->o.state_dir;
  c->o.approve = c->approve;
  c->o.n_approve = c->n_approve;
  c->o.lua_lib_dir = cli_running_from_build() ? ENG_SOURCE_LUA_DIR : ENG_INSTALL_LUA_DIR;
  return 0;
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
        return cli_print_help(usage_text, stdout, 0);
    if (argc >= 2 && !strcmp(argv[1], "--version")) ci = 1;
    else return cli_print_help(usage_text, stderr, ENG_EXIT_USAGE);
  }
  const char *cmd = argv[ci];
  if (!strcmp(cmd, "help")) return cli_print_help(usage_text, stdout, 0);
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
  if (!strcmp(cmd, "fleet") || !strcmp(cmd, "lint-migrations")) {
    int code = !strcmp(cmd, "fleet") ? cmd_fleet(argc - 1, args)
                                     : cmd_lint(argc - 1, args);
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
    else if (!strcmp(cmd, "history")) code = cmd_history(&c);
    else if (!strcmp(cmd, "report")) code = cmd_report(&c);
    else if (!strcmp(cmd, "cleanup")) code = cmd_cleanup(&c);
    else {
      static const char *const cmds[] = {"run", "plan", "validate", "plugins",
                                         "schema", "version", "audit", "runs", "history", "report",
                                         "cleanup", "docs", "fleet",
                                         "lint-migrations"};
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
