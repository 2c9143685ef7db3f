/* audit.c - the tamper-evident audit log.
 *
 * JSON Lines; every record has seq, time, run, type and prev: the SHA-256
 * of the previous line (64 zeros for the first). With ENGINE_AUDIT_KEY set,
 * each record also carries mac: HMAC-SHA256 over the record without mac,
 * serialized compactly with sorted keys. Records are appended with O_APPEND
 * and synced at step boundaries. A record is on disk whole or not at all,
 * and room is kept allocated ahead of the end (see reserve()). */
#include "record/record.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

struct eng__audit {
  int fd;
  uv_loop_t *loop;    /* set: syncs run on the thread pool */
  uv_fs_t sync_req;
  bool syncing, sync_again, closing;
  char *run;
  int64_t seq;
  char prev[ENG__SHA256_HEX];
  char *key;
  off_t reserved;     /* the file's blocks are allocated up to here */
};

/* Room kept allocated ahead of the log's end, so that when the disk fills
 * the run can still record how it ended (its steps' ends and run.end):
 * running low on it fails the run, writing stays possible. */
#define AUDIT_RESERVE ((off_t)256 * 1024)
#define AUDIT_LOW ((off_t)64 * 1024)

/* 0, or -1 with errno when the reserve could not be extended. */
static int reserve(eng__audit *a, off_t end) {
  if (a->reserved - end >= AUDIT_LOW) return 0;
  /* blocks past the end, the size unchanged: the log reads the same */
  if (fallocate(a->fd, FALLOC_FL_KEEP_SIZE, end, AUDIT_RESERVE) == 0 ||
      errno == EOPNOTSUPP || errno == ENOSYS) {
    a->reserved = end + AUDIT_RESERVE;
    return 0;
  }
  return -1;
}

static void hex(const unsigned char *d, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static char *canonical(json_t *rec) {
  return json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII);
}

static void mac_of(const char *key, const char *text, char out[ENG__SHA256_HEX]) {
  unsigned char d[32];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)text,
       strlen(text), d, &n);
  hex(d, 32, out);
}

/* The last line of an existing log: continue its chain (resume). */
static void load_tail(eng__audit *a, const char *path) {
  size_t len = 0;
  char *text = eng__read_file(path, 256u << 20, &len);
  if (!text || !len) {
    free(text);
    return;
  }
  char *end = text + len;
  while (end > text && end[-1] == '\n') end--;
  char *start = end;
  while (start > text && start[-1] != '\n') start--;
  eng__sha256_hex(start, (size_t)(end - start), a->prev);
  char *line = eng__xstrndup(start, (size_t)(end - start));
  json_t *j = json_loads(line, 0, NULL);
  a->seq = json_integer_value(json_object_get(j, "seq"));
  json_decref(j);
  free(line);
  free(text);
}

eng__audit *eng__audit_open(const char *path, const char *run_id) {
  eng__audit *a = eng__xcalloc(1, sizeof *a);
  strcpy(a->prev, ZERO_HASH);
  load_tail(a, path);
  a->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (a->fd < 0) {
    free(a);
    return NULL;
  }
  a->run = eng__xstrdup(run_id);
  off_t end = lseek(a->fd, 0, SEEK_END);
  if (end >= 0 && reserve(a, end) != 0) {
    int e = errno;
    close(a->fd);
    free(a->run);
    free(a);
    errno = e;
    return NULL; /* not even room for the run's first records */
  }
  const char *k = getenv("ENGINE_AUDIT_KEY");
  if (k && *k) a->key = eng__xstrdup(k);
  return a;
}

const char *eng__audit_head(const eng__audit *a) { return a->prev; }

int eng__audit_event(eng__audit *a, const char *type, json_t *fields) {
  if (!a) {
    json_decref(fields);
    return 0;
  }
  char t[40];
  json_t *rec = fields ? fields : json_object();
  json_object_set_new(rec, "seq", json_integer(++a->seq));
  json_object_set_new(rec, "time", json_string(eng__fmt_time(eng__now_ms(), t, sizeof t)));
  json_object_set_new(rec, "run", json_string(a->run));
  json_object_set_new(rec, "type", json_string(type));
  json_object_set_new(rec, "prev", json_string(a->prev));
  if (a->key) {
    char *c = canonical(rec);
    char mac[ENG__SHA256_HEX];
    mac_of(a->key, c, mac);
    free(c);
    json_object_set_new(rec, "mac", json_string(mac));
  }
  char *line = canonical(rec);
  json_decref(rec);
  size_t n = strlen(line);
  eng__buf b = {0};
  eng__buf_add(&b, line, n);
  eng__buf_add(&b, "\n", 1);
  /* A record is on disk whole or not at all: a short write (disk full) is
   * cut off again, and the chain goes on from the last record written, so
   * what the file holds always verifies. */
  off_t end = lseek(a->fd, 0, SEEK_END);
  ssize_t w = write(a->fd, b.data, b.len);
  int rc = 0;
  if (w == (ssize_t)b.len) {
    eng__sha256_hex(line, n, a->prev);
    /* written, but the disk is filling up: say so (the run fails) */
    if (reserve(a, end + w) != 0) rc = -1;
  } else {
    int e = w < 0 ? errno : ENOSPC;
    if (w > 0 && end >= 0) {
      int t = ftruncate(a->fd, end); /* if even that fails, verify names the line */
      (void)t;
    }
    a->seq--;
    errno = e;
    rc = -1;
  }
  free(line);
  eng__buf_free(&b);
  return rc;
}

static void sync_done(uv_fs_t *req) {
  eng__audit *a = req->data;
  uv_fs_req_cleanup(req);
  a->syncing = false;
  if (a->closing) {
    eng__audit_close(a);
    return;
  }
  if (a->sync_again) {
    a->sync_again = false;
    eng__audit_sync(a);
  }
}

/* Sync what was appended. With a loop the fdatasync runs on the thread
 * pool (the loop never waits for the disk); syncs asked for meanwhile are
 * folded into one more. */
void eng__audit_sync(eng__audit *a) {
  if (!a) return;
  if (!a->loop) {
    fdatasync(a->fd);
    return;
  }
  if (a->syncing) {
    a->sync_again = true;
    return;
  }
  a->sync_req.data = a;
  if (uv_fs_fdatasync(a->loop, &a->sync_req, a->fd, sync_done) == 0)
    a->syncing = true;
  else
    fdatasync(a->fd);
}

void eng__audit_use_loop(eng__audit *a, uv_loop_t *loop) {
  if (a) a->loop = loop;
}

void eng__audit_close(eng__audit *a) {
  if (!a) return;
  if (a->syncing) { /* freed when the sync in flight ends */
    a->closing = true;
    return;
  }
  fdatasync(a->fd);
  close(a->fd);
  free(a->run);
  free(a->key);
  free(a);
}

/* ---- verify and show ------------------------------------------------------ */

static const char *str_of(const json_t *j, const char *k) {
  const char *s = json_string_value(json_object_get(j, k));
  return s ? s : "";
}

int eng__audit_verify(const char *path, const char *expected_head, FILE *out) {
  size_t len = 0;
  char *text = eng__read_file(path, 1u << 30, &len);
  if (!text) {
    fprintf(out, "%s: cannot read: %s\n", path, strerror(errno));
    return 2;
  }
  const char *key = getenv("ENGINE_AUDIT_KEY");
  if (key && !*key) key = NULL;
  char prev[ENG__SHA256_HEX] = ZERO_HASH;
  int64_t seq = 0;
  int lineno = 0;
  int bad = 0;
  bool ended = false;
  const char *last_type = NULL;
  char *p = text;
  json_t *j = NULL;
  while (p < text + len) {
    char *nl = memchr(p, '\n', (size_t)(text + len - p));
    if (!nl) {
      fprintf(out, "%s:%d: line is not terminated (truncated or appended "
                   "to)\n", path, lineno + 1);
      bad = 1;
      break;
    }
    *nl = '\0';
    lineno++;
    json_decref(j);
    j = json_loads(p, 0, NULL);
    const char *why = NULL;
    char whybuf[160];
    if (strlen(p) != (size_t)(nl - p))
      why = "it holds a NUL byte: bytes were inserted into the log";
    else if (!j) why = "not valid JSON";
    else if (strcmp(str_of(j, "prev"), prev)) {
      snprintf(whybuf, sizeof whybuf,
               "its 'prev' does not match the SHA-256 of line %d: line %d "
               "was changed, or lines were removed or reordered here",
               lineno - 1, lineno - 1);
      why = lineno > 1 ? whybuf : "the first record's 'prev' is not 64 zeros";
    }
    else if (json_integer_value(json_object_get(j, "seq")) != seq + 1)
      why = "its 'seq' is out of order";
    else if (ended && strcmp(str_of(j, "type"), "run.start"))
      why = "a record after run.end (appended later)";
    else if (key) {
      const char *mac = json_string_value(json_object_get(j, "mac"));
      if (!mac) why = "no 'mac' although ENGINE_AUDIT_KEY is set (appended without the key?)";
      else {
        json_t *copy = json_deep_copy(j);
        json_object_del(copy, "mac");
        char *c = canonical(copy);
        char want[ENG__SHA256_HEX];
        mac_of(key, c, want);
        free(c);
        json_decref(copy);
        if (strcmp(want, mac)) {
          snprintf(whybuf, sizeof whybuf, "its 'mac' does not match (changed, "
                                          "or written with another key)");
          why = whybuf;
        }
      }
    }
    if (why) {
      fprintf(out, "%s:%d: bad record: %s\n", path, lineno, why);
      bad = 1;
      break;
    }
    eng__sha256_hex(p, strlen(p), prev);
    seq = json_integer_value(json_object_get(j, "seq"));
    last_type = json_string_value(json_object_get(j, "type"));
    ended = last_type && !strcmp(last_type, "run.end");
    p = nl + 1;
  }
  if (!bad && lineno == 0) {
    fprintf(out, "%s: empty log\n", path);
    bad = 1;
  }
  if (!bad && !ended) {
    fprintf(out, "%s:%d: the log ends without run.end: lines were removed "
                 "at the end, or the run is still going or crashed\n",
            path, lineno);
    bad = 1;
  }
  if (!bad && expected_head && strcmp(expected_head, prev)) {
    fprintf(out, "%s:%d: the chain head is %s, not %s: the last records were "
                 "changed, removed or added after the run\n",
            path, lineno, prev, expected_head);
    bad = 1;
  }
  if (!bad)
    fprintf(out, "%s: ok, %d records, chain head %s%s%s\n", path, lineno, prev,
            expected_head ? " (as expected)" : "",
            key ? ", every mac verified" : "");
  json_decref(j);
  free(text);
  return bad;
}

int eng__audit_show(const char *path, FILE *out) {
  size_t len = 0;
  char *text = eng__read_file(path, 1u << 30, &len);
  if (!text) {
    fprintf(stderr, "engine: cannot read %s: %s\n", path, strerror(errno));
    return 2;
  }
  for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
       line = strtok_r(NULL, "\n", &save)) {
    json_t *j = json_loads(line, 0, NULL);
    if (!j) {
      fprintf(out, "?? unreadable line\n");
      continue;
    }
    const char *time = json_string_value(json_object_get(j, "time"));
    const char *type = json_string_value(json_object_get(j, "type"));
    const char *step = json_string_value(json_object_get(j, "step"));
    /* the clock part of an RFC 3339 time, when it has one */
    const char *clock = time && strlen(time) > 11 && time[10] == 'T' ? time + 11
                        : time ? time : "";
    fprintf(out, "%s  %-15s %-20s", clock, type ? type : "?",
            step ? step : "");
    static const char *const keys[] = {"status", "uses", "message", "rule",
                                       "target", "error", "duration_ms",
                                       "kind", "id", "head", "runbook",
                                       "attempt", "decision"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
      json_t *v = json_object_get(j, keys[k]);
      if (json_is_string(v)) fprintf(out, " %s=%s", keys[k], json_string_value(v));
      else if (json_is_integer(v))
        fprintf(out, " %s=%lld", keys[k], (long long)json_integer_value(v));
    }
    fputc('\n', out);
    json_decref(j);
  }
  free(text);
  return 0;
}
