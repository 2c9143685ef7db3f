/*
 * pgbr_run.c - one pgBackRest command as a child process of the call.
 *
 * argv: `pgbackrest [--config=FILE] --log-level-console=off
 * --log-level-stderr=warn [--stanza=S] [--OPTION=VALUE...] COMMAND ARGS`.
 * Console logging goes off so that standard output is the command's answer
 * alone (JSON for info and repo-ls); warnings and errors come on standard
 * error, which the host logs to the step (redacted) and keeps the tail of
 * for the failure message. An option whose name says it holds a secret
 * (key, pass, secret, token: repo1-s3-key-secret, repo1-cipher-pass) never
 * reaches argv, where `ps` shows it: it goes through the environment as
 * PGBACKREST_OPTION, which pgBackRest reads, and its value is registered
 * with the host as a secret before anything runs.
 *
 * When the engine runs as root the command runs as `run_as` (default
 * postgres): a repository and the cluster's files belong to the cluster's
 * user, and pgBackRest refuses files it cannot own.
 */
#include "pgbr_int.h"

#include <ctype.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const eng_host *pgbr_host;

struct pgbr_conf {
  char *bin;
  char *config;
  char *stanza;
  char *run_as;
  char version[32];
  char **argv_opts; /* "--name=value", NULL-terminated */
  char **env_opts;  /* "PGBACKREST_NAME=value", NULL-terminated */
};

struct pgbr_cmd {
  eng_op *op;
  eng_proc *proc;
  char *what;
  eng_strbuf out;
  int truncated;
  pgbr_cmd_cb cb;
};

const char *pgbr_pstr(const json_t *p, const char *name) {
  return json_string_value(json_object_get(p, name));
}

int64_t pgbr_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *pgbr_conf_stanza(const pgbr_conf *c) { return c->stanza; }
const char *pgbr_conf_run_as(const pgbr_conf *c) { return c->run_as; }
const char *pgbr_conf_version(const pgbr_conf *c) { return c->version; }

static void free_list(char **l) {
  for (size_t i = 0; l && l[i]; i++) free(l[i]);
  free(l);
}

void pgbr_conf_free(pgbr_conf *c) {
  if (!c) return;
  free(c->bin);
  free(c->config);
  free(c->stanza);
  free(c->run_as);
  free_list(c->argv_opts);
  free_list(c->env_opts);
  free(c);
}

/* Option names that hold secrets (passed through the environment). */
static int secret_option(const char *name) {
  static const char *const marks[] = {"key", "pass", "secret", "token"};
  size_t n = strlen(name);
  if (n > 5 && !strcmp(name + n - 5, "-type")) return 0; /* key-type: a mode */
  for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
    if (strstr(name, marks[i])) return 1;
  return 0;
}

static int option_name_ok(const char *k) {
  if (!*k || !islower((unsigned char)k[0])) return 0;
  for (const char *p = k; *p; p++)
    if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-')
      return 0;
  return 1;
}

/* An option's value as pgBackRest reads it: y/n for booleans. */
static char *option_value(const json_t *v) {
  if (json_is_string(v)) return eng_xstrdup(json_string_value(v));
  if (json_is_boolean(v)) return eng_xstrdup(json_is_true(v) ? "y" : "n");
  if (json_is_integer(v))
    return eng_asprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
  return NULL;
}

static int conf_options(eng_call *call, pgbr_conf *c, const json_t *opts) {
  size_t n = json_object_size(opts), na = 0, ne = 0;
  c->argv_opts = eng_xcalloc(n + 1, sizeof *c->argv_opts);
  c->env_opts = eng_xcalloc(n + 1, sizeof *c->env_opts);
  const char *k;
  const json_t *v;
  json_object_foreach((json_t *)opts, k, v) {
    char *val = option_value(v);
    if (!option_name_ok(k) || !val || strchr(val, '\n')) {
      pgbr_host->fail(call, "options: '%s' %s; give pgBackRest options as "
                            "NAME: VALUE with NAME as in pgbackrest.conf "
                            "(repo1-path: /backups) and a string, number or "
                            "boolean value on one line",
                      k, !option_name_ok(k) ? "is not an option name"
                                            : "has a value pgBackRest cannot take");
      free(val);
      return ENG_ERR_INVALID;
    }
    if (!strcmp(k, "stanza") || !strcmp(k, "config")) {
      free(val);
      pgbr_host->fail(call, "options: '%s' is a parameter of its own; set it "
                            "there", k);
      return ENG_ERR_INVALID;
    }
    if (secret_option(k)) {
      if (*val) pgbr_host->secret(call, val);
      char *env = eng_asprintf("PGBACKREST_%s=%s", k, val);
      for (char *p = env + 11; *p != '='; p++)
        *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
      c->env_opts[ne++] = env;
    } else {
      c->argv_opts[na++] = eng_asprintf("--%s=%s", k, val);
    }
    free(val);
  }
  return ENG_OK;
}

static int stanza_ok(const char *s) {
  if (!s || !*s || strlen(s) > 64) return 0;
  for (const char *p = s; *p; p++)
    if (!isalnum((unsigned char)*p) && !strchr("_.-", *p)) return 0;
  return 1;
}

pgbr_conf *pgbr_conf_new(eng_call *call, const json_t *params, int *rc) {
  const char *stanza = pgbr_pstr(params, "stanza");
  if (!stanza_ok(stanza)) {
    pgbr_host->fail(call, "stanza '%s' is not a stanza name (letters, digits, "
                          "'_', '.', '-'); give the stanza the repository was "
                          "created with (pgbackrest info lists them)",
                    stanza ? stanza : "");
    *rc = ENG_ERR_INVALID;
    return NULL;
  }
  pgbr_conf *c = eng_xcalloc(1, sizeof *c);
  const char *bin = pgbr_pstr(params, "pgbackrest");
  const char *config = pgbr_pstr(params, "config");
  const char *run_as = pgbr_pstr(params, "run_as");
  c->bin = eng_xstrdup(bin && *bin ? bin : "pgbackrest");
  c->config = config && *config ? eng_xstrdup(config) : NULL;
  c->stanza = eng_xstrdup(stanza);
  if (geteuid() == 0 && run_as && *run_as) {
    if (!getpwnam(run_as)) {
      pgbr_host->fail(call, "run_as: no user '%s' on this machine; give the "
                            "user the cluster and the repository belong to",
                      run_as);
      pgbr_conf_free(c);
      *rc = ENG_ERR_INVALID;
      return NULL;
    }
    c->run_as = eng_xstrdup(run_as);
  }
  *rc = conf_options(call, c, json_object_get(params, "options"));
  if (*rc != ENG_OK) {
    pgbr_conf_free(c);
    return NULL;
  }
  return c;
}

/* ---- the child ------------------------------------------------------------ */

static void cmd_free(pgbr_cmd *cmd) {
  eng_strbuf_free(&cmd->out);
  free(cmd->what);
  free(cmd);
}

static void cmd_stdout(void *ud, const char *buf, size_t len) {
  pgbr_cmd *cmd = ud;
  if (cmd->out.len + len > PGBR_OUT_MAX) {
    cmd->truncated = 1;
    return;
  }
  eng_strbuf_add(&cmd->out, buf, len);
}

/* pgBackRest's own words, then what to do about the common causes. */
static const char *hint_of(const char *tail) {
  if (strstr(tail, "[055]") || strstr(tail, "unable to load info file"))
    return "; the repository or stanza is missing: check repo1-path (or the "
           "config) and run pgbackrest stanza-create";
  if (strstr(tail, "[087]") || strstr(tail, "archive_mode"))
    return "; archiving is not configured: set archive_mode = on and "
           "archive_command = 'pgbackrest --stanza=STANZA archive-push %p' "
           "on the server and restart it";
  if (strstr(tail, "[082]") || strstr(tail, "archive-push"))
    return "; WAL segments do not reach the repository: read the server log "
           "for archive_command failures";
  if (strstr(tail, "Permission denied") || strstr(tail, "[041]"))
    return "; a file is not readable or writable by the command's user: run "
           "as the user the cluster and repository belong to (run_as)";
  return "";
}

static void cmd_exit(void *ud, int64_t status, int sig) {
  pgbr_cmd *cmd = ud;
  eng_op *op = cmd->op;
  pgbr_job *j = (pgbr_job *)op;
  j->cmd = NULL;
  int rc = ENG_OK;
  if (sig || status != 0) {
    const char *tail = pgbr_host->proc_stderr_tail(cmd->proc);
    char how[64];
    if (sig)
      snprintf(how, sizeof how, "killed by signal %d", sig);
    else
      snprintf(how, sizeof how, "exit status %lld", (long long)status);
    pgbr_host->fail(op->call, "pgbackrest %s failed (%s): %s%s", cmd->what, how,
                    tail && *tail ? tail : "(no error output)",
                    hint_of(tail ? tail : ""));
    rc = op->cancelled ? ENG_ERR_CANCELLED : ENG_ERR_FAILED;
  } else if (cmd->truncated) {
    pgbr_host->fail(op->call, "pgbackrest %s printed more than %u MiB; "
                              "nothing was read", cmd->what, PGBR_OUT_MAX >> 20);
    rc = ENG_ERR_PROTOCOL;
  }
  pgbr_cmd_cb cb = cmd->cb;
  eng_strbuf_add(&cmd->out, "", 0); /* NUL-terminated even when empty */
  if (!op->finished) cb(op, rc, cmd->out.data);
  cmd_free(cmd);
  eng_op_release(op);
}

static void spawn(eng_op *op, pgbr_conf *c, char **argv, const char *what,
                  pgbr_cmd_cb cb) {
  pgbr_cmd *cmd = eng_xcalloc(1, sizeof *cmd);
  cmd->op = op;
  cmd->what = eng_xstrdup(what);
  cmd->cb = cb;
  eng_spawn_opts o = {0};
  o.size = sizeof o;
  o.argv = (const char *const *)argv;
  o.env = (const char *const *)c->env_opts;
  o.stdin_fd = ENG_STDIO_NULL;
  o.stdout_fd = ENG_STDIO_PIPE;
  o.run_as = c->run_as;
  o.cwd = "/";
  o.on_stdout = cmd_stdout;
  o.on_exit = cmd_exit;
  o.ud = cmd;
  eng_op_hold(op);
  int rc = pgbr_host->spawn(op->call, &o, &cmd->proc);
  if (rc != ENG_OK) {
    cmd_free(cmd);
    eng_op_release(op);
    eng_op_fail(op, rc, "cannot start %s: %s; install pgBackRest (Debian: "
                        "apt-get install pgbackrest) or give its path in the "
                        "pgbackrest parameter",
                c->bin, eng_strerror(rc));
    return;
  }
  ((pgbr_job *)op)->cmd = cmd;
}

void pgbr_run(eng_op *op, pgbr_conf *c, const char *command,
              const char *const *args, pgbr_cmd_cb cb) {
  size_t n = 0, extra = 0;
  while (c->argv_opts[n]) n++;
  while (args && args[extra]) extra++;
  char **argv = eng_xcalloc(n + extra + 8, sizeof *argv);
  size_t i = 0;
  argv[i++] = eng_xstrdup(c->bin);
  if (c->config) argv[i++] = eng_asprintf("--config=%s", c->config);
  argv[i++] = eng_xstrdup("--log-level-console=off");
  argv[i++] = eng_xstrdup("--log-level-stderr=warn");
  argv[i++] = eng_asprintf("--stanza=%s", c->stanza);
  for (size_t k = 0; k < n; k++) argv[i++] = eng_xstrdup(c->argv_opts[k]);
  argv[i++] = eng_xstrdup(command);
  for (size_t k = 0; k < extra; k++) argv[i++] = eng_xstrdup(args[k]);
  pgbr_host->log(op->call, ENG_LOG_DEBUG, "pgbackrest %s --stanza=%s%s%s",
                 command, c->stanza, c->config ? " --config=" : "",
                 c->config ? c->config : "");
  spawn(op, c, argv, command, cb);
  free_list(argv);
}

static void version_read(eng_op *op, int rc, const char *out) {
  pgbr_job *j = (pgbr_job *)op;
  pgbr_cmd_cb next = j->after_version;
  if (rc != ENG_OK) {
    next(op, rc, out);
    return;
  }
  char err[256];
  int major = 0, minor = 0;
  if (pgbr_parse_version(out, j->conf->version, sizeof j->conf->version,
                         &major, &minor, err, sizeof err) != 0) {
    eng_op_fail(op, ENG_ERR_PROTOCOL, "%s (%s)", err, j->conf->bin);
    return;
  }
  if (major != PGBR_MIN_MAJOR || minor < PGBR_MIN_MINOR) {
    eng_op_fail(op, ENG_ERR_UNSUPPORTED,
                "%s is pgBackRest %s; this plugin drives %d.%d or a later "
                "%d.x: upgrade pgBackRest",
                j->conf->bin, j->conf->version, PGBR_MIN_MAJOR, PGBR_MIN_MINOR,
                PGBR_MIN_MAJOR);
    return;
  }
  pgbr_host->output(op->call, "version", json_string(j->conf->version));
  next(op, ENG_OK, out);
}

void pgbr_check_version(eng_op *op, pgbr_conf *c, pgbr_cmd_cb cb) {
  ((pgbr_job *)op)->after_version = cb;
  char *argv[] = {c->bin, "version", NULL};
  spawn(op, c, argv, "version", version_read);
}

pgbr_cmd *pgbr_cmd_of(eng_op *op) { return ((pgbr_job *)op)->cmd; }

/* ---- jobs ------------------------------------------------------------------- */

pgbr_job *pgbr_job_new(eng_call *call, const json_t *params, size_t size,
                       void (*destroy)(eng_op *op), int *rc) {
  pgbr_conf *c = pgbr_conf_new(call, params, rc);
  if (!c) return NULL;
  pgbr_job *j = eng_xcalloc(1, size);
  j->conf = c;
  j->started_ms = pgbr_now_ms();
  eng_op_init(&j->op, pgbr_host, call, destroy);
  return j;
}

void pgbr_job_free(pgbr_job *j) {
  pgbr_conf_free(j->conf);
  json_decref(j->info);
  free(j);
}
