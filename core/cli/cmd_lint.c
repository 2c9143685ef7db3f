/* cmd_lint.c - `engine lint-migrations DIR`: the migration lint
 * (sql/lint.h) for CI, with no database and no runbook. */
#include "cli/cli.h"
#include "sql/lint.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char lint_help[] =
    "usage: engine lint-migrations DIR [options]\n"
    "\n"
    "Lint a migrations folder with PostgreSQL's parser: Prisma's\n"
    "DIR/NAME/migration.sql, or plain DIR/NNN_name.sql files, in name order.\n"
    "Each finding names the lock the statement takes, what it blocks and the\n"
    "safe recipe; `-- lint: allow RULE REASON` before a statement allows it.\n"
    "\n"
    "  --pg-major N          the server's major version, 10-17 (default 15)\n"
    "  --transaction MODE    auto (several statements run as one\n"
    "                        transaction, as Prisma runs them), always, never\n"
    "  --format text|json    text: FILE:LINE:COL: LEVEL: [rule] ... lines\n"
    "  --fail-on LEVEL       error (default), warning or never\n"
    "\n"
    "Exit codes: 0 nothing at or above --fail-on, 1 findings at or above it,\n"
    "2 usage error or a folder that cannot be read.\n";

typedef struct lint_args {
  const char *dir, *format, *fail_on;
  json_t *opts;
} lint_args;

static int lint_parse(int argc, char **argv, lint_args *a) {
  static const struct option opts[] = {
      {"pg-major", required_argument, NULL, 'p'},
      {"transaction", required_argument, NULL, 't'},
      {"format", required_argument, NULL, 'f'},
      {"fail-on", required_argument, NULL, 'F'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  optind = 1;
  opterr = 0;
  int ch;
  while ((ch = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    char *end = NULL;
    long v;
    if (ch == 'p') {
      v = strtol(optarg, &end, 10);
      if (!*optarg || *end || v < 10 || v > 17)
        return cli_usage_error("--pg-major is 10 to 17, got '%s'", optarg);
      json_object_set_new(a->opts, "pg_major", json_integer(v));
    } else if (ch == 't')
      json_object_set_new(a->opts, "transaction", json_string(optarg));
    else if (ch == 'f') a->format = optarg;
    else if (ch == 'F') a->fail_on = optarg;
    else if (ch == 'h') {
      fputs(lint_help, stdout);
      return -1;
    }
    else if (ch == ':') return cli_usage_error("option '%s' needs a value", argv[optind - 1]);
    else return cli_usage_error("unknown option '%s' for lint-migrations", argv[optind - 1]);
  }
  if (strcmp(a->format, "text") && strcmp(a->format, "json"))
    return cli_usage_error("--format is text or json, got '%s'", a->format);
  if (strcmp(a->fail_on, "error") && strcmp(a->fail_on, "warning") &&
      strcmp(a->fail_on, "never"))
    return cli_usage_error("--fail-on is error, warning or never, got '%s'", a->fail_on);
  if (argc - optind != 1) {
    fputs(lint_help, stderr);
    return ENG_EXIT_USAGE;
  }
  a->dir = argv[optind];
  return 0;
}

int cmd_lint(int argc, char **argv) {
  lint_args a = {.format = "text", .fail_on = "error", .opts = json_object()};
  int code = lint_parse(argc, argv, &a);
  if (code) {
    json_decref(a.opts);
    return code < 0 ? 0 : code;
  }
  json_t *r = eng__lint_dir(a.dir, a.opts);
  json_decref(a.opts);
  const char *err = json_string_value(json_object_get(r, "error"));
  if (err) {
    fprintf(stderr, "engine: %s\n", err);
    json_decref(r);
    return ENG_EXIT_USAGE;
  }
  json_int_t errors = json_integer_value(json_object_get(r, "errors"));
  json_int_t warnings = json_integer_value(json_object_get(r, "warnings"));
  if (!strcmp(a.format, "json")) {
    char *s = json_dumps(r, JSON_INDENT(2) | JSON_SORT_KEYS);
    puts(s);
    free(s);
  } else {
    size_t i;
    const json_t *f;
    json_array_foreach(json_object_get(r, "findings"), i, f)
        puts(json_string_value(json_object_get(f, "text")));
    printf("%zu migration(s) linted: %lld error(s), %lld warning(s), %lld "
           "allowed\n",
           json_array_size(json_object_get(r, "migrations")), (long long)errors,
           (long long)warnings,
           (long long)json_integer_value(json_object_get(r, "suppressed")));
  }
  json_decref(r);
  bool fail = (!strcmp(a.fail_on, "error") && errors) ||
              (!strcmp(a.fail_on, "warning") && (errors || warnings));
  return fail ? ENG_EXIT_FAILED : ENG_EXIT_OK;
}
