/* index.c - the run index in a state directory (docs/state.md, "The run
 * index"): records (record/index.c) appended to numbered segments
 * index/NNNNNNNN.jsonl of at most ENG__INDEX_SEGMENT_LINES lines each.
 *
 * Appending costs three requests whatever the number of runs: a LIST of
 * index/ (one page holds a thousand segments: a million records), a GET of
 * the last segment and a PUT of it with one more line, conditional on the
 * ETag the GET returned (a full segment: a PUT of the next one, created
 * only when absent). A writer that loses the race (412) reads again and
 * retries. A local directory has no ETags: there the same steps run under
 * flock() on index/.lock. Reading is the LIST and one GET per segment. */
#include "state/state.h"
#include "record/record.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* Lines per segment: a segment stays well under a megabyte (records are
 * a few hundred bytes), so an append moves little, and 5,000 runs (two
 * records each: start and end) read in ten GETs. */
#define ENG__INDEX_SEGMENT_LINES 1000
/* Attempts of an append that other writers keep winning. */
#define ENG__INDEX_APPEND_TRIES 8

static const char seg_prefix[] = "index/";
static const char backfill_key[] = "index/backfilled";

/* The number of segment key k ("index/00000012.jsonl"), or 0. */
static unsigned long seg_number(const char *k) {
  size_t n = strlen(seg_prefix);
  if (strncmp(k, seg_prefix, n)) return 0;
  const char *p = k + n;
  char *end;
  unsigned long v = strtoul(p, &end, 10);
  if (end - p != 8 || strcmp(end, ".jsonl")) return 0;
  return v;
}

static char *seg_key(unsigned long n) {
  return eng__asprintf("%s%08lu.jsonl", seg_prefix, n);
}

static unsigned long last_segment(const json_t *keys) {
  unsigned long last = 0;
  size_t i;
  json_t *k;
  json_array_foreach(keys, i, k) {
    unsigned long n = seg_number(json_string_value(k));
    if (n > last) last = n;
  }
  return last;
}

static size_t count_lines(const char *data, size_t len) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++) n += data[i] == '\n';
  return n;
}

/* One attempt: 0 appended, 1 lost a race (try again), -1 err. */
static int append_once(eng__state *st, const char *lines, char *err,
                       size_t errlen) {
  json_t *keys = eng__state_list(st, seg_prefix, err, errlen);
  if (!keys) return -1;
  unsigned long n = last_segment(keys);
  json_decref(keys);
  char etag[ENG_ETAG_MAX] = "", *data = NULL;
  size_t len = 0;
  char *key = seg_key(n ? n : 1);
  int rc = n ? eng__state_get(st, key, &data, &len, etag, err, errlen)
             : ENG_ERR_NOTFOUND;
  if (rc != ENG_OK && rc != ENG_ERR_NOTFOUND) {
    free(key);
    return -1;
  }
  eng__buf b = {0};
  const char *cond = "*";
  if (rc == ENG_OK && count_lines(data, len) < ENG__INDEX_SEGMENT_LINES) {
    eng__buf_add(&b, data, len);
    /* a torn last line (a writer killed mid-way locally) ends here */
    if (len && data[len - 1] != '\n') eng__buf_adds(&b, "\n");
    cond = etag[0] ? etag : NULL;
  } else if (rc == ENG_OK) {
    free(key);
    key = seg_key(n + 1);
  }
  eng__buf_adds(&b, lines);
  rc = eng__state_put(st, key, b.data ? b.data : "", b.len, cond, NULL, err, errlen);
  eng__buf_free(&b);
  free(data);
  free(key);
  if (rc == ENG_ERR_EXISTS) return 1;
  return rc == ENG_OK ? 0 : -1;
}

/* Local: the index's lock file, held until closed; -1 with err. */
static int local_lock(eng__state *st, char *err, size_t errlen) {
  char *dir = eng__asprintf("%s/index", eng__state_dir(st));
  eng__mkdir_p(dir, 0700);
  char *path = eng__asprintf("%s/.lock", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || flock(fd, LOCK_EX) != 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
    fd = -1;
  }
  free(path);
  free(dir);
  return fd;
}

int eng__index_append(eng__state *st, const json_t *recs, char *err,
                      size_t errlen) {
  eng__buf b = {0};
  size_t i;
  json_t *r;
  json_array_foreach(recs, i, r) {
    char *line = json_dumps(r, JSON_COMPACT | JSON_SORT_KEYS);
    eng__buf_addf(&b, "%s\n", line);
    free(line);
  }
  if (!b.len) return 0;
  char *lines = eng__buf_steal(&b);
  int fd = eng__state_url(st) ? -2 : local_lock(st, err, errlen);
  int rc = fd == -1 ? -1 : 1;
  for (int t = 0; rc == 1 && t < ENG__INDEX_APPEND_TRIES; t++)
    rc = append_once(st, lines, err, errlen);
  if (rc == 1)
    snprintf(err, errlen, "other writers kept changing the index's last "
                          "segment (%d attempts)", ENG__INDEX_APPEND_TRIES);
  if (fd >= 0) close(fd);
  free(lines);
  return rc == 0 ? 0 : -1;
}

json_t *eng__index_read(eng__state *st, bool *backfilled, FILE *warn,
                        char *err, size_t errlen) {
  json_t *keys = eng__state_list(st, seg_prefix, err, errlen);
  if (!keys) return NULL;
  json_t *runs = json_object();
  *backfilled = false;
  size_t i;
  json_t *k;
  json_array_foreach(keys, i, k) {
    const char *key = json_string_value(k);
    if (!strcmp(key, backfill_key)) *backfilled = true;
    if (!seg_number(key)) continue;
    char *data = NULL;
    size_t len = 0;
    int rc = eng__state_get(st, key, &data, &len, NULL, err, errlen);
    if (rc == ENG_ERR_NOTFOUND) continue;
    if (rc != ENG_OK) {
      json_decref(runs);
      runs = NULL;
      break;
    }
    eng__index_parse(data, len, key, runs, warn);
    free(data);
  }
  json_decref(keys);
  return runs;
}

int eng__index_mark_backfilled(eng__state *st, char *err, size_t errlen) {
  static const char text[] = "runs before the index were indexed\n";
  return eng__state_put(st, backfill_key, text, sizeof text - 1, NULL, NULL,
                        err, errlen) == ENG_OK ? 0 : -1;
}
