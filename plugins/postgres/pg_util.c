/*
 * pg_util.c - small utilities of the postgres plugin (also compiled into
 * the prisma plugin): the host table, clocks, strings, parameters, the
 * dump's format and compression choice. The bottom of the plugin: it calls
 * nothing else of it (allocation and text buffers are <engine/mem.h>'s).
 */
#include "pg_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <time.h>

/* The host's services, set by the plugin's init(). */
const eng_host *pg_host;

/* ---- clocks and strings ------------------------------------------------- */

void pg_now_rfc3339(char buf[32]) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, 32 - n, ".%03dZ", (int)((ts.tv_nsec / 1000000) % 1000));
}

int64_t pg_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *pg_chomp(char *s) {
  if (!s) return s;
  size_t n = strlen(s);
  while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
    s[--n] = '\0';
  return s;
}

/* ---- parameters --------------------------------------------------------- */

const char *pg_pstr(const json_t *p, const char *name) {
  json_t *v = json_object_get(p, name);
  return json_is_string(v) ? json_string_value(v) : NULL;
}

long long pg_pint(const json_t *p, const char *name, long long def) {
  json_t *v = json_object_get(p, name);
  if (json_is_integer(v)) return json_integer_value(v);
  if (json_is_real(v)) return (long long)json_real_value(v);
  return def;
}

double pg_pnum(const json_t *p, const char *name, double def) {
  json_t *v = json_object_get(p, name);
  return json_is_number(v) ? json_number_value(v) : def;
}

int pg_pbool(const json_t *p, const char *name, int def) {
  json_t *v = json_object_get(p, name);
  return json_is_boolean(v) ? json_is_true(v) : def;
}

/* The forms of `compress`: 0-9 (pg_dump's own), "none", "zstd[:1-19]" or
 * "gzip[:1-9]" (the engine compresses the stream: zstd level 3 and gzip
 * level 1 when no level is given). Pure: the parameter's check and the
 * action share it. *level is pg_dump's level (-1: not given), engine[]
 * the engine's codec ("zstd:3", "gzip:6") or "". -1 with the accepted
 * forms in err. */
int pg_compress_parse(const json_t *v, int *level, char *engine, size_t elen,
                      char *err, size_t errlen) {
  *level = -1;
  engine[0] = '\0';
  if (!v || json_is_null(v)) return 0;
  long long n = -1;
  const char *s = json_is_string(v) ? json_string_value(v) : NULL;
  if (json_is_integer(v)) {
    n = json_integer_value(v);
  } else if (s) {
    char *end = NULL;
    if (!*s) return 0;
    int z = !strncmp(s, "zstd", 4), g = !strncmp(s, "gzip", 4);
    if (!strcmp(s, "none")) {
      n = 0;
    } else if ((z || g) && (s[4] == '\0' || s[4] == ':')) {
      long lv = z ? 3 : 1, max = z ? 19 : 9; /* docs/performance.md */
      if (s[4] == ':') {
        lv = strtol(s + 5, &end, 10);
        if (end == s + 5 || *end || lv < 1 || lv > max) lv = -1;
      }
      if (lv < 1) {
        snprintf(err, errlen, "compress '%s': the %s level must be 1-%ld "
                              "(compress takes none, 0-9 for pg_dump's own, "
                              "gzip or gzip:1-9, zstd or zstd:1-19)",
                 s, z ? "zstd" : "gzip", max);
        return -1;
      }
      snprintf(engine, elen, "%s:%ld", z ? "zstd" : "gzip", lv);
      return 0;
    } else {
      n = strtoll(s, &end, 10);
      if (end == s || *end) n = -2;
    }
  } else {
    n = -2;
  }
  if (n < 0 || n > 9) {
    char got[64] = "";
    if (s) snprintf(got, sizeof got, "'%.40s'", s);
    else if (json_is_integer(v)) snprintf(got, sizeof got, "%lld", n);
    else snprintf(got, sizeof got, "a value of another type");
    snprintf(err, errlen,
             "compress must be none, 0-9 (pg_dump's own compression), "
             "gzip or gzip:1-9, zstd or zstd:1-19 (the engine compresses the "
             "stream); got %s", got);
    return -1;
  }
  *level = (int)n;
  return 0;
}

int pg_default_jobs(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : n > 4 ? 4 : (int)n;
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && !strcasecmp(s + a - b, suffix);
}

char pg_format_by_name(const char *file, char *comp, size_t n) {
  comp[0] = '\0';
  size_t len = strlen(file);
  if (len && file[len - 1] == '/') return 'd';
  const char *codec = ends_with(file, ".gz")    ? "gzip:1"
                      : ends_with(file, ".zst") ? "zstd:3"
                                                : "";
  snprintf(comp, n, "%s", codec);
  size_t cut = *codec ? (ends_with(file, ".gz") ? 3 : 4) : 0;
  char *base = eng_xstrdup(file);
  base[len - cut] = '\0';
  char fmt = ends_with(base, ".sql") ? 'p' : ends_with(base, ".tar") ? 't' : 'c';
  free(base);
  if (fmt == 'c') comp[0] = '\0'; /* a custom archive compresses itself */
  return fmt;
}

int pg_dump_choose(const json_t *params, const char *file, int globals,
                   int remote, pg_dump_choice *ch, char *err, size_t n) {
  memset(ch, 0, sizeof *ch);
  const json_t *cv = json_object_get(params, "compress");
  if (pg_compress_parse(cv, &ch->level, ch->ecomp, sizeof ch->ecomp, err, n))
    return -1;
  int given = cv && !json_is_null(cv) &&
              !(json_is_string(cv) && !*json_string_value(cv));
  const char *format = pg_pstr(params, "format");
  char by_name[16] = "";
  char fmt = file ? pg_format_by_name(file, by_name, sizeof by_name) : 'c';
  if (globals) {
    fmt = 'p';
  } else if (format && *format) {
    static const char *const names[] = {"custom", "directory", "plain", "tar"};
    static const char codes[] = {'c', 'd', 'p', 't'};
    fmt = 0;
    for (size_t i = 0; i < 4; i++)
      if (!strcmp(format, names[i])) fmt = codes[i];
    if (!fmt) {
      snprintf(err, n, "unknown format '%s'; use custom, directory, plain or "
                       "tar", format);
      return -1;
    }
  } else {
    ch->from_name = file != NULL;
  }
  /* the name's compression (.gz, .zst) unless compress says otherwise */
  if (!given && (ch->from_name || globals || fmt == 'p' || fmt == 't'))
    snprintf(ch->ecomp, sizeof ch->ecomp, "%s", by_name);
  if (globals && ch->level >= 0) {
    snprintf(err, n, "compress: pg_dumpall writes plain SQL; use compress: "
                     "gzip or zstd to have the engine compress it");
    return -1;
  }
  if (!strncmp(ch->ecomp, "gzip", 4) && (fmt == 'c' || fmt == 'd')) {
    snprintf(err, n,
             "compress: %s compresses a stream of plain SQL or tar; a %s "
             "archive compresses itself: use compress: 0-9 (pg_dump's own, "
             "read by pg_restore) or zstd",
             ch->ecomp, fmt == 'c' ? "custom" : "directory");
    return -1;
  }
  if (fmt == 'd' && ch->ecomp[0]) {
    snprintf(err, n,
             "format: directory is written by pg_dump as a directory of "
             "files: it cannot be compressed by the engine; use compress: "
             "0-9 for pg_dump's own");
    return -1;
  }
  if (fmt == 'd' && remote && (!file || file[strlen(file) - 1] != '/')) {
    snprintf(err, n,
             "format: directory to a URL is stored as one object per file "
             "under a prefix: end file with '/' (s3://bucket/backups/db/)");
    return -1;
  }
  /* pg_dump's own default for archives is zlib level 6, which costs about
   * three times the time of level 1 for 8% of size (docs/performance.md):
   * level 1 unless told otherwise */
  if (!given && !ch->ecomp[0] && (fmt == 'c' || fmt == 'd')) {
    ch->level = PG_DEFAULT_ARCHIVE_LEVEL;
    ch->default_comp = 1;
  }
  ch->fmt = fmt;
  return 0;
}

void pg_describe_dump(const json_t *params, char *buf, size_t n) {
  const char *file = pg_pstr(params, "file");
  pg_dump_choice ch;
  char err[512];
  int remote = file && strstr(file, "://") != NULL;
  if (pg_dump_choose(params, file, 0, remote, &ch, err, sizeof err) != 0) {
    snprintf(buf, n, "fail: %s", err);
    return;
  }
  static const char *const names[] = {"custom", "directory", "plain", "tar"};
  const char *fname = names[ch.fmt == 'c' ? 0 : ch.fmt == 'd' ? 1 : ch.fmt == 'p' ? 2 : 3];
  char comp[96];
  if (ch.ecomp[0])
    snprintf(comp, sizeof comp, "compressed with %s by the engine", ch.ecomp);
  else if (ch.level > 0)
    snprintf(comp, sizeof comp, "compressed by pg_dump at level %d%s", ch.level,
             ch.default_comp ? " (the default)" : "");
  else
    snprintf(comp, sizeof comp, "not compressed");
  if (ch.fmt == 'd' && remote)
    snprintf(buf, n, "write the directory format, %s, then upload its files "
             "(one object each) and a manifest.json under %s", comp, file);
  else
    snprintf(buf, n, "write the %s format%s, %s, to %s", fname,
             ch.from_name ? " (from the file's name)" : "", comp,
             file ? file : "the file an earlier step names");
}

void pg_describe_restore(const json_t *params, char *buf, size_t n) {
  const char *file = pg_pstr(params, "file");
  const char *sha = pg_pstr(params, "sha256");
  int remote = file && strstr(file, "://") != NULL;
  const json_t *j = json_object_get(params, "jobs");
  char jobs[96];
  if (json_is_integer(j))
    snprintf(jobs, sizeof jobs, "%lld pg_restore jobs", (long long)json_integer_value(j));
  else if (!file)
    snprintf(jobs, sizeof jobs, "%d pg_restore jobs for a local archive (the "
             "cores, at most 4), 1 while streaming from a URL", pg_default_jobs());
  else if (remote && file[strlen(file) - 1] == '/')
    snprintf(jobs, sizeof jobs, "%d pg_restore jobs (the cores, at most 4) "
             "once every file of the directory backup was downloaded",
             pg_default_jobs());
  else if (remote)
    snprintf(jobs, sizeof jobs, "1 pg_restore job, restoring while it downloads");
  else
    snprintf(jobs, sizeof jobs, "%d pg_restore jobs (the cores, at most 4) for "
             "a custom or directory archive", pg_default_jobs());
  snprintf(buf, n, "restore %s with %s, checked against %s",
           file ? file : "the file an earlier step names", jobs,
           sha && *sha ? "the sha256 parameter"
           : remote && file[strlen(file) - 1] == '/'
               ? "the SHA-256 of each file in its manifest.json"
           : remote    ? "the checksum stored with the object (x-amz-meta-sha256, "
                         "x-amz-checksum-sha256, KEY.sha256 or x-amz-meta-md5)"
                       : "FILE.sha256 beside it when there is one");
}

int pg_check_compress(const json_t *v, char *err, size_t errlen) {
  int level;
  char engine[16];
  return pg_compress_parse(v, &level, engine, sizeof engine, err, errlen) == 0
             ? 0 : 1;
}

int pg_parse_compress(eng_call *call, const json_t *v, int *level,
                      char *engine, size_t elen) {
  char err[256];
  if (pg_compress_parse(v, level, engine, elen, err, sizeof err) == 0)
    return ENG_OK;
  pg_host->fail(call, "%s", err);
  return ENG_ERR_INVALID;
}


/* ---- the age key of a dump or a restore --------------------------------- */

/* A key file's text (at most 16 KiB: an age key file is a few lines). */
static char *pg_read_key_file(const char *path, int *err) {
  FILE *f = fopen(path, "r");
  if (!f) {
    *err = errno;
    return NULL;
  }
  char *buf = eng_xmalloc(16385);
  size_t n = fread(buf, 1, 16384, f);
  *err = ferror(f) ? EIO : 0;
  fclose(f);
  buf[n] = '\0';
  if (*err) {
    free(buf);
    return NULL;
  }
  return buf;
}

char *pg_age_key(eng_call *call, const json_t *params, int *rc) {
  const char *val = pg_pstr(params, "encryption_key");
  const char *file = pg_pstr(params, "encryption_key_file");
  const char *env = pg_pstr(params, "encryption_key_env");
  *rc = ENG_OK;
  if (val && !*val) val = NULL; /* a runbook's empty parameter: no key */
  if (file && !*file) file = NULL;
  if (env && !*env) env = NULL;
  if (!val && !file && !env) return NULL;
  *rc = ENG_ERR_INVALID;
  if ((val != NULL) + (file != NULL) + (env != NULL) > 1) {
    pg_host->fail(call, "give one of encryption_key, encryption_key_file "
                        "and encryption_key_env");
    return NULL;
  }
  char *key = NULL;
  if (val) {
    key = eng_xstrdup(val);
  } else if (file) {
    int err = 0;
    key = pg_read_key_file(file, &err);
    if (!key) {
      pg_host->fail(call, "cannot read the encryption key file %s: %s", file,
                    strerror(err));
      return NULL;
    }
  } else {
    const char *v = getenv(env);
    if (!v || !*v) {
      pg_host->fail(call, "the environment variable %s (encryption_key_env) "
                          "is not set or empty", env);
      return NULL;
    }
    key = eng_xstrdup(v);
  }
  /* every line that may be the key is masked wherever text goes */
  char *copy = eng_xstrdup(key), *save = NULL;
  for (char *line = strtok_r(copy, "\r\n", &save); line;
       line = strtok_r(NULL, "\r\n", &save)) {
    while (*line == ' ' || *line == '\t') line++;
    if (*line && *line != '#') pg_host->secret(call, pg_chomp(line));
  }
  free(copy);
  *rc = ENG_OK;
  return key;
}
