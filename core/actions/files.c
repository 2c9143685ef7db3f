/* files.c - the `files` built-in action: local files matching a glob,
 * listed with size, modification time and SHA-256 sidecar, and one picked
 * (the newest or the oldest, younger than max_age), as s3.list does for
 * objects; the picked file is held to the guards as a path.
 *
 * The listing runs on a worker thread (glob, stat, sidecars: blocking
 * I/O); the loop thread picks, asks the guards and sets the outputs.
 * Memory: at most FILES_MAX entries and one sidecar (SIDECAR_MAX bytes)
 * at a time; nothing is written anywhere. */
#include "actions/actions.h"

#include <ctype.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define H eng__host()
/* More matches than this is a glob that names the wrong folder. */
#define FILES_MAX 10000
/* A sidecar is one sha256sum line; a larger file is not one. */
#define SIDECAR_MAX 4096
#define SIDECAR_EXT ".sha256"

typedef struct file_entry {
  char *path;
  int64_t bytes;
  int64_t mtime_ms;
  char sha256[ENG__SHA256_HEX]; /* "" when there is no sidecar */
  bool sidecar_bad;             /* a sidecar that is not a sha256sum line */
} file_entry;

typedef struct files_job {
  eng_call *call;
  char *glob; /* absolute */
  char *pick;
  int64_t max_age_ms; /* 0: any age */
  /* worker results */
  file_entry *v;
  size_t n;
  int err; /* errno-like, 0 when listed */
  char *errmsg;
} files_job;

/* ---- the sidecar ---------------------------------------------------------- */

bool eng__sha256_sidecar(const char *text, size_t len,
                         char out[ENG__SHA256_HEX]) {
  size_t i = 0;
  while (i < len && (text[i] == ' ' || text[i] == '\t')) i++;
  static const char bsd[] = "SHA256 (";
  if (len - i >= sizeof bsd - 1 && !memcmp(text + i, bsd, sizeof bsd - 1)) {
    /* BSD form: SHA256 (NAME) = HEX, on the first line */
    size_t eol = i;
    while (eol < len && text[eol] != '\n') eol++;
    size_t eq = eol;
    while (eq > i && !(text[eq - 1] == '=' && eq >= 2 && text[eq - 2] == ' '))
      eq--;
    if (eq == i) return false;
    i = eq;
    while (i < len && text[i] == ' ') i++;
  } else if (i < len && text[i] == '\\') {
    i++; /* GNU: a name with a newline or backslash */
  }
  if (len - i < 64) return false;
  for (size_t k = 0; k < 64; k++)
    if (!isxdigit((unsigned char)text[i + k])) return false;
  size_t end = i + 64;
  if (end < len && !strchr(" \t\r\n", text[end])) return false;
  for (size_t k = 0; k < 64; k++)
    out[k] = (char)tolower((unsigned char)text[i + k]);
  out[64] = '\0';
  return true;
}

/* ---- listing (worker thread) ---------------------------------------------- */

static int entry_cmp(const void *a, const void *b) {
  return strcmp(((const file_entry *)a)->path, ((const file_entry *)b)->path);
}

static bool ends_with(const char *s, const char *suf) {
  size_t n = strlen(s), m = strlen(suf);
  return n >= m && !strcmp(s + n - m, suf);
}

/* A FILE.sha256 beside a listed FILE is its checksum, not a file of its
 * own. */
static bool is_sidecar_of_listed(const files_job *j, const char *path) {
  if (!ends_with(path, SIDECAR_EXT)) return false;
  file_entry probe = {0};
  probe.path = eng__xstrndup(path, strlen(path) - strlen(SIDECAR_EXT));
  bool has = bsearch(&probe, j->v, j->n, sizeof *j->v, entry_cmp) != NULL;
  free(probe.path);
  return has;
}

static void read_sidecar(file_entry *e) {
  char *path = eng__asprintf("%s" SIDECAR_EXT, e->path);
  size_t len = 0;
  char *text = eng__read_file(path, SIDECAR_MAX, &len);
  free(path);
  if (!text) {
    e->sidecar_bad = errno != ENOENT;
    return;
  }
  e->sidecar_bad = !eng__sha256_sidecar(text, len, e->sha256);
  if (e->sidecar_bad) e->sha256[0] = '\0';
  free(text);
}

static void files_list(void *ud) {
  files_job *j = ud;
  glob_t g;
  memset(&g, 0, sizeof g);
  int rc = glob(j->glob, GLOB_NOSORT, NULL, &g);
  if (rc == GLOB_ABORTED || rc == GLOB_NOSPACE) {
    j->err = rc == GLOB_NOSPACE ? ENOMEM : EIO;
    j->errmsg = eng__asprintf("cannot read the folders of '%s'", j->glob);
  } else if (rc == 0 && g.gl_pathc > FILES_MAX) {
    j->err = E2BIG;
    j->errmsg = eng__asprintf("%zu paths match '%s' (more than %d): name "
                              "the folder and the file pattern more closely",
                              (size_t)g.gl_pathc, j->glob, FILES_MAX);
  }
  if (j->err || rc != 0) {
    globfree(&g);
    return;
  }
  j->v = eng__xcalloc(g.gl_pathc ? g.gl_pathc : 1, sizeof *j->v);
  for (size_t i = 0; i < g.gl_pathc; i++) {
    struct stat st;
    if (stat(g.gl_pathv[i], &st) != 0 || !S_ISREG(st.st_mode)) continue;
    file_entry *e = &j->v[j->n++];
    e->path = eng__xstrdup(g.gl_pathv[i]);
    e->bytes = (int64_t)st.st_size;
    e->mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 +
                  (int64_t)st.st_mtim.tv_nsec / 1000000;
  }
  globfree(&g);
  qsort(j->v, j->n, sizeof *j->v, entry_cmp);
  /* marked first, removed after: the search reads every entry */
  bool *sidecar = eng__xcalloc(j->n ? j->n : 1, sizeof *sidecar);
  for (size_t i = 0; i < j->n; i++)
    sidecar[i] = is_sidecar_of_listed(j, j->v[i].path);
  size_t k = 0;
  for (size_t i = 0; i < j->n; i++) {
    if (sidecar[i]) free(j->v[i].path);
    else j->v[k++] = j->v[i];
  }
  j->n = k;
  free(sidecar);
  for (size_t i = 0; i < j->n; i++) read_sidecar(&j->v[i]);
}

/* ---- picking (loop thread) ------------------------------------------------ */

static void files_free(files_job *j) {
  for (size_t i = 0; i < j->n; i++) free(j->v[i].path);
  free(j->v);
  free(j->glob);
  free(j->pick);
  free(j->errmsg);
  free(j);
}

static json_t *entry_json(const file_entry *e, int64_t now_ms) {
  char iso[40];
  const char *base = strrchr(e->path, '/');
  return json_pack("{s:s, s:s, s:I, s:s, s:I, s:s}", "path", e->path, "name",
                   base ? base + 1 : e->path, "bytes", (json_int_t)e->bytes,
                   "last_modified", eng__fmt_time(e->mtime_ms, iso, sizeof iso),
                   "age_s", (json_int_t)((now_ms - e->mtime_ms) / 1000),
                   "sha256", e->sha256);
}

/* The newest (or oldest) entry younger than max_age; ties by path, so the
 * choice does not depend on the order glob returned. NULL when none. */
static const file_entry *files_choose(const files_job *j, int64_t now_ms) {
  bool latest = !strcmp(j->pick, "latest");
  const file_entry *best = NULL;
  for (size_t i = 0; i < j->n; i++) {
    const file_entry *e = &j->v[i];
    if (j->max_age_ms > 0 && now_ms - e->mtime_ms > j->max_age_ms) continue;
    if (!best) {
      best = e;
      continue;
    }
    int64_t d = e->mtime_ms - best->mtime_ms;
    if (latest ? d >= 0 : d < 0) best = e;
  }
  return best;
}

static int files_refuse_pick(files_job *j, int64_t now_ms) {
  char age[32], limit[32];
  if (!j->n) {
    H->fail(j->call, "no file matches '%s': nothing to pick (pick: %s); "
                     "check the folder and the pattern",
            j->glob, j->pick);
    return ENG_ERR_NOTFOUND;
  }
  /* every match is older than max_age: name the youngest */
  const file_entry *young = &j->v[0];
  for (size_t i = 1; i < j->n; i++)
    if (j->v[i].mtime_ms > young->mtime_ms) young = &j->v[i];
  H->fail(j->call, "no file matching '%s' is younger than max_age %s: the "
                   "newest, %s, is %s old; nothing was picked",
          j->glob, eng__fmt_duration(j->max_age_ms, limit, sizeof limit),
          young->path, eng__fmt_duration(now_ms - young->mtime_ms, age,
                                         sizeof age));
  return ENG_ERR_NOTFOUND;
}

static int files_report(files_job *j) {
  int64_t now_ms = eng__now_ms();
  json_t *arr = json_array();
  for (size_t i = 0; i < j->n; i++)
    json_array_append_new(arr, entry_json(&j->v[i], now_ms));
  H->output(j->call, "objects", arr);
  H->output(j->call, "count", json_integer((json_int_t)j->n));
  if (!strcmp(j->pick, "none")) {
    H->output(j->call, "picked", json_null());
    return ENG_OK;
  }
  const file_entry *e = files_choose(j, now_ms);
  if (!e) return files_refuse_pick(j, now_ms);
  if (e->sidecar_bad) {
    H->fail(j->call, "%s" SIDECAR_EXT " is not a SHA-256 sidecar (a "
                     "sha256sum line: 64 hex digits, then the name); fix or "
                     "remove it",
            e->path);
    return ENG_ERR_CHECKSUM;
  }
  char *why = eng__asprintf("picked (%s) from '%s'", j->pick, j->glob);
  int rc = H->guard_target(j->call, ENG_TARGET_FILE, e->path, why);
  free(why);
  if (rc != ENG_OK) return ENG_ERR_REFUSED;
  H->output(j->call, "picked", entry_json(e, now_ms));
  char size[32], age[32];
  H->log(j->call, ENG_LOG_INFO, "picked %s (%s, %s old%s)", e->path,
         eng__fmt_bytes(e->bytes, size, sizeof size),
         eng__fmt_duration(now_ms - e->mtime_ms, age, sizeof age),
         e->sha256[0] ? ", with its sha256 sidecar" : "");
  return ENG_OK;
}

static void files_after(void *ud, int status) {
  files_job *j = ud;
  eng_call *call = j->call;
  int rc;
  if (status < 0) {
    H->fail(call, "listing cancelled");
    rc = ENG_ERR_CANCELLED;
  } else if (j->err) {
    H->fail(call, "%s: %s", j->errmsg, strerror(j->err));
    rc = j->err == E2BIG ? ENG_ERR_INVALID : ENG_ERR_IO;
  } else {
    rc = files_report(j);
  }
  files_free(j);
  H->done(call, rc);
}

int eng__files_start(eng_call *call, const json_t *p) {
  const char *pattern = json_string_value(json_object_get(p, "glob"));
  const char *pick = json_string_value(json_object_get(p, "pick"));
  if (!pattern || !*pattern) {
    H->fail(call, "'glob' must name files, such as /backups/*.dump");
    return ENG_ERR_INVALID;
  }
  files_job *j = eng__xcalloc(1, sizeof *j);
  j->call = call;
  if (pattern[0] == '/') {
    j->glob = eng__xstrdup(pattern);
  } else {
    /* relative to the working directory, and absolute in the outputs so
     * that later steps and the guards read one path */
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) {
      H->fail(call, "cannot read the working directory: %s", strerror(errno));
      files_free(j);
      return ENG_ERR_IO;
    }
    j->glob = eng__asprintf("%s/%s", cwd, pattern);
  }
  j->pick = eng__xstrdup(pick ? pick : "latest");
  j->max_age_ms = json_integer_value(json_object_get(p, "max_age"));
  int rc = H->work(call, files_list, files_after, j);
  if (rc != ENG_OK) {
    H->fail(call, "cannot start listing '%s'", j->glob);
    files_free(j);
  }
  return rc;
}

/* ---- declarations --------------------------------------------------------- */

static const char *const pick_values[] = {"latest", "oldest", "none", NULL};

const eng_param eng__files_params[] = {
    {.name = "glob",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_FILE,
     .doc = "the files to list: a path with *, ? and [...] (glob(7)), such "
            "as /backups/ledger-*.dump; relative to the working directory"},
    {.name = "pick",
     .type = ENG_T_STRING,
     .def = "\"latest\"",
     .target = ENG_TARGET_NONE,
     .values = pick_values,
     .doc = "latest (newest modification time), oldest, or none; picking "
            "from nothing fails"},
    {.name = "max_age",
     .type = ENG_T_DURATION,
     .target = ENG_TARGET_NONE,
     .doc = "pick only among files modified within this long (e.g. 26h); "
            "when every match is older the step fails, naming the newest"},
    {0}};

const eng_output eng__files_outputs[] = {
    {"objects", ENG_T_LIST,
     "[{path, name, bytes, last_modified, age_s, sha256}] sorted by path; "
     "FILE.sha256 sidecars of listed files are left out, their checksum is "
     "the file's sha256 (\"\" without one)"},
    {"count", ENG_T_INT, "number of files"},
    {"picked", ENG_T_MAP,
     "{path, name, bytes, last_modified, age_s, sha256} or null (pick: "
     "none); held to guards.protected_paths"},
    {NULL, 0, NULL}};
