/* cmd_audit.c - `engine audit verify|show FILE|URL|RUN_ID`. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
  cli_load_plugins_quietly(c);
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

int cmd_audit(cli *c) {
  if (c->help || c->n_positional != 2 ||
      (strcmp(c->positional[0], "verify") && strcmp(c->positional[0], "show"))) {
    return cli_print_help(
        "usage: engine audit verify FILE|URL|RUN_ID [--head HASH]\n"
        "                                   exit 0 when intact, 1 naming the "
        "first bad line\n"
        "       engine audit show FILE|URL|RUN_ID     readable timeline\n"
        "A URL (s3://BUCKET/PREFIX/runs/ID[/audit.jsonl]) reads the log from a "
        "state store;\na run id reads it from --state-dir.\n"
        "With ENGINE_AUDIT_KEY set, verify checks every record's HMAC too.\n"
        "Without it the chain proves the records are in order and unchanged\n"
        "up to the last one, not that the last one is the run's own: --head\n"
        "HASH (the chain head the run printed, in report.json's audit_head)\n"
        "checks that too.\n", c->help ? stdout : stderr,
        c->help ? 0 : ENG_EXIT_USAGE);
  }
  char *tmp;
  char *file = audit_file(c, c->positional[1], &tmp);
  if (!file) return ENG_EXIT_USAGE;
  int code = !strcmp(c->positional[0], "show")
                 ? eng__audit_show(file, stdout)
                 : eng__audit_verify(file, c->head, stdout);
  if (tmp) unlink(tmp);
  free(tmp);
  free(file);
  return code;
}
