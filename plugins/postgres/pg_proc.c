/*
 * pg_proc.c - finding PostgreSQL programs by version.
 *
 * A dump must be taken by a pg_dump at least as new as the server, and a
 * restore by a pg_restore at least as new as the archive's pg_dump. The
 * lookup collects candidates from `bin_dir` (when given, only there), else
 * `pg_config --bindir`, /usr/lib/postgresql/ * /bin (Debian/Ubuntu),
 * /usr/pgsql-* /bin (RHEL), /usr/local/pgsql/bin and PATH, asks each one for
 * `--version`, and picks the newest whose major version is >= the server's.
 *
 * Runs on a worker thread (it starts processes and waits for them).
 */
#include "pg_int.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

void pg_bin_init(pg_bin *b, const char *tool, int server_num,
                 const char *override) {
  memset(b, 0, sizeof *b);
  snprintf(b->tool, sizeof b->tool, "%s", tool);
  b->server_num = server_num;
  snprintf(b->override, sizeof b->override, "%s", override ? override : "");
}

void pg_version_major(int num, char *buf, size_t n) {
  if (num >= 100000)
    snprintf(buf, n, "%d", num / 10000);
  else
    snprintf(buf, n, "%d.%d", num / 10000, (num / 100) % 100);
}

static int pg_major_of(int num) {
  return num >= 100000 ? num / 10000 * 10000 : num / 100 * 100;
}

/* Run argv, return its stdout (first 4 KiB) or NULL. Blocking. */
static char *pg_run_capture(char *const argv[]) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return NULL;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  close(fds[1]);
  if (rc != 0) {
    close(fds[0]);
    return NULL;
  }
  char *out = eng_xmalloc(4096);
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fds[0], out + len, 4095 - len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    len += (size_t)r;
    if (len >= 4095) break;
  }
  out[len] = '\0';
  close(fds[0]);
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    free(out);
    return NULL;
  }
  return out;
}

/* "pg_dump (PostgreSQL) 15.20 (Debian ...)" -> 150020 and "15.20". */
static int pg_parse_version(const char *out, char *ver, size_t n) {
  const char *p = strstr(out, "(PostgreSQL) ");
  if (!p) return 0;
  p += strlen("(PostgreSQL) ");
  int a = 0, b = 0, c = 0;
  const char *q = p;
  while (*q >= '0' && *q <= '9') a = a * 10 + (*q++ - '0');
  if (*q == '.') {
    q++;
    while (*q >= '0' && *q <= '9') b = b * 10 + (*q++ - '0');
    if (*q == '.') {
      q++;
      while (*q >= '0' && *q <= '9') c = c * 10 + (*q++ - '0');
    }
  }
  size_t len = (size_t)(q - p);
  /* keep suffixes like "beta1"/"devel" in the text */
  while (p[len] && p[len] != ' ' && p[len] != '\n') len++;
  snprintf(ver, n, "%.*s", (int)len, p);
  if (a == 0) return 0;
  return a >= 10 ? a * 10000 + b : a * 10000 + b * 100 + c;
}

typedef struct pg_cand {
  char path[PATH_MAX];
  char real[PATH_MAX];
} pg_cand;

typedef struct pg_cands {
  pg_cand *v;
  size_t n, cap;
} pg_cands;

static void pg_cand_add(pg_cands *c, const char *dir, const char *tool) {
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/%s", dir, tool) >= (int)sizeof path)
    return;
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || access(path, X_OK))
    return;
  char real[PATH_MAX];
  if (!realpath(path, real)) return;
  for (size_t i = 0; i < c->n; i++)
    if (!strcmp(c->v[i].path, path) || !strcmp(c->v[i].real, real)) return;
  if (c->n == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 16;
    c->v = eng_xrealloc(c->v, c->cap * sizeof *c->v);
  }
  snprintf(c->v[c->n].path, PATH_MAX, "%s", path);
  snprintf(c->v[c->n].real, PATH_MAX, "%s", real);
  c->n++;
}

static void pg_cand_glob(pg_cands *c, const char *pattern, const char *tool) {
  glob_t g;
  if (glob(pattern, 0, NULL, &g) != 0) return;
  /* newest first: glob sorts by name, so "9.6" sorts after "15"; the
   * version comparison decides anyway */
  for (size_t i = 0; i < g.gl_pathc; i++) pg_cand_add(c, g.gl_pathv[i], tool);
  globfree(&g);
}

static void pg_cand_path(pg_cands *c, const char *tool) {
  const char *path = getenv("PATH");
  if (!path) return;
  char *copy = eng_xstrdup(path), *save = NULL;
  for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save))
    if (*d) pg_cand_add(c, d, tool);
  free(copy);
}

static void pg_cand_pg_config(pg_cands *c, const char *tool) {
  const char *path = getenv("PATH");
  char *copy = eng_xstrdup(path ? path : "/usr/bin:/bin"), *save = NULL;
  for (char *d = strtok_r(copy, ":", &save); d;
       d = strtok_r(NULL, ":", &save)) {
    char pc[PATH_MAX];
    if (snprintf(pc, sizeof pc, "%s/pg_config", d) >= (int)sizeof pc) continue;
    if (access(pc, X_OK) != 0) continue;
    char *argv[] = {pc, "--bindir", NULL};
    char *out = pg_run_capture(argv);
    if (out) {
      pg_cand_add(c, pg_chomp(out), tool);
      free(out);
    }
    break;
  }
  free(copy);
}

void pg_bin_find(pg_bin *b) {
  pg_cands c = {0};
  if (b->override[0]) {
    pg_cand_add(&c, b->override, b->tool);
    if (!c.n) {
      b->rc = ENG_ERR_NOTFOUND;
      snprintf(b->err, sizeof b->err,
               "%s not found (or not executable) in bin_dir %s; point "
               "bin_dir at a PostgreSQL bin directory",
               b->tool, b->override);
      return;
    }
  } else {
    pg_cand_pg_config(&c, b->tool);
    pg_cand_glob(&c, "/usr/lib/postgresql/*/bin", b->tool);
    pg_cand_glob(&c, "/usr/pgsql-*/bin", b->tool);
    pg_cand_add(&c, "/usr/local/pgsql/bin", b->tool);
    pg_cand_path(&c, b->tool);
  }
  int best = -1, best_num = 0;
  size_t flen = 0;
  b->found[0] = '\0';
  for (size_t i = 0; i < c.n; i++) {
    char *argv[] = {c.v[i].path, "--version", NULL};
    char *out = pg_run_capture(argv);
    if (!out) continue;
    char ver[64];
    int num = pg_parse_version(out, ver, sizeof ver);
    free(out);
    if (!num) continue;
    int w = snprintf(b->found + flen, sizeof b->found - flen, "%s%s (%s)",
                     flen ? ", " : "", ver, c.v[i].path);
    if (w > 0 && (size_t)w < sizeof b->found - flen) flen += (size_t)w;
    int fits = !b->server_num || pg_major_of(num) >= pg_major_of(b->server_num);
    if (fits && num > best_num) {
      best = (int)i;
      best_num = num;
      snprintf(b->version, sizeof b->version, "%s", ver);
    }
  }
  if (best >= 0) {
    snprintf(b->path, sizeof b->path, "%s", c.v[best].path);
    b->version_num = best_num;
    b->rc = ENG_OK;
  } else {
    char major[16];
    pg_version_major(b->server_num, major, sizeof major);
    b->rc = ENG_ERR_NOTFOUND;
    if (!flen)
      snprintf(b->err, sizeof b->err,
               "no %s found (looked in %s); install the PostgreSQL client "
               "programs (Debian: postgresql-client-%s) or set bin_dir",
               b->tool,
               b->override[0]
                   ? b->override
                   : "pg_config --bindir, /usr/lib/postgresql/*/bin, "
                     "/usr/pgsql-*/bin, /usr/local/pgsql/bin, PATH",
               b->server_num ? major : "N");
    else
      snprintf(b->err, sizeof b->err,
               "no %s of version %s or newer found for a PostgreSQL %s server "
               "(found: %s); install postgresql-client-%s or set bin_dir",
               b->tool, major, major, b->found, major);
  }
  free(c.v);
}

const char *pg_tool_hint(const char *tail, int restoring) {
  if (!tail) tail = "";
  if (strstr(tail, "pg_authid"))
    return "connect as a superuser, or set no_role_passwords: true (managed "
           "servers do not expose pg_authid)";
  if (strstr(tail, "must be member of role") ||
      (strstr(tail, "role \"") && strstr(tail, "does not exist")))
    return restoring ? "the backup names roles the target lacks: restore "
                       "with no_owner: true (archives), or take plain dumps "
                       "with no_owner: true and no_acl: true, or create the "
                       "roles first (dump_globals)"
                     : "create the missing role or connect as its member";
  if (strstr(tail, "permission denied"))
    return restoring ? "the user lacks a privilege on the target: use the "
                       "database owner or a superuser"
                     : "the user needs SELECT on every table dumped (e.g. "
                       "the pg_read_all_data role), or limit the dump with "
                       "tables/exclude_tables";
  if (strstr(tail, "server version mismatch") ||
      strstr(tail, "unsupported version"))
    return "use newer PostgreSQL client programs (set bin_dir)";
  if (strstr(tail, "extension") && strstr(tail, "control file"))
    return "install the extension's package on the target server first";
  if (strstr(tail, "No space left"))
    return "free disk space or choose another path";
  if (strstr(tail, "could not obtain lock") || strstr(tail, "lock timeout"))
    return "another session holds a conflicting lock: retry later";
  if (restoring &&
      (strstr(tail, "input file") || strstr(tail, "unexpected end of file") ||
       strstr(tail, "could not read") || strstr(tail, "corrupt") ||
       strstr(tail, "did not find magic") || strstr(tail, "compress")))
    return "the backup is damaged or truncated: restore another one";
  return restoring ? "fix the cause above (missing roles or extensions, a "
                     "damaged backup) and run again"
                   : "fix the cause above and run again";
}
