/* lock.c - one run at a time per lock name (state.h).
 *
 * In a store the lock is the object locks/NAME holding who took it and
 * until when it is valid:
 *   {"lock":NAME, "run":ID, "host":H, "pid":P, "started":T, "renewed":T,
 *    "expires":T, "expires_ms":MS}
 * taken with a write that succeeds only when no such object exists,
 * renewed and taken over with writes conditional on the ETag last seen,
 * released with a delete conditional on ours. Locally it is flock() on
 * STATE/locks/NAME.lock (the kernel releases it when the holder dies),
 * whose content names the holder the same way. */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

struct eng__lock {
  eng__state *st; /* own handle: the loop thread, then one worker at a time */
  char *name, *key, *id;
  char host[128];
  char started[40];
  int64_t ttl_ms, expires_ms;
  char etag[ENG_ETAG_MAX];
  int fd; /* local: the flock()ed file, else -1 */
  /* renewal on a loop */
  uv_timer_t *timer;
  uv_work_t work;
  bool working, closing;
  int work_rc;
  char work_err[256];
  void (*lost)(void *ud, const char *msg);
  void *lost_ud;
  bool lost_told;
};

const char *eng__lock_name(const eng__lock *l) { return l->name; }
int64_t eng__lock_ttl(const eng__lock *l) { return l->ttl_ms; }

static char *record(const eng__lock *l, int64_t now_ms) {
  char renewed[40], expires[40];
  eng__fmt_time(now_ms, renewed, sizeof renewed);
  eng__fmt_time(now_ms + l->ttl_ms, expires, sizeof expires);
  json_t *j = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:I}", "lock",
                        l->name, "run", l->id, "host", l->host, "pid",
                        (int)getpid(), "started", l->started, "renewed",
                        renewed, "expires", expires, "expires_ms",
                        (json_int_t)(now_ms + l->ttl_ms));
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  char *out = eng__asprintf("%s\n", s);
  free(s);
  return out;
}

/* The holder named by a lock record; its expiry in ms (0 when unknown). */
static int64_t parse_holder(const char *data, size_t len,
                            eng__lock_holder *h) {
  memset(h, 0, sizeof *h);
  json_t *j = json_loadb(data, len, 0, NULL);
  if (!json_is_object(j)) {
    snprintf(h->run, sizeof h->run, "%s", "(unreadable lock record)");
    json_decref(j);
    return 0;
  }
  const char *s;
  if ((s = json_string_value(json_object_get(j, "run"))))
    snprintf(h->run, sizeof h->run, "%s", s);
  if ((s = json_string_value(json_object_get(j, "host"))))
    snprintf(h->host, sizeof h->host, "%s", s);
  if ((s = json_string_value(json_object_get(j, "started"))))
    snprintf(h->started, sizeof h->started, "%s", s);
  if ((s = json_string_value(json_object_get(j, "expires"))))
    snprintf(h->expires, sizeof h->expires, "%s", s);
  int64_t exp = json_integer_value(json_object_get(j, "expires_ms"));
  json_decref(j);
  return exp;
}

static eng__lock *lock_new(const char *name, const char *id,
                           int64_t now_ms, int64_t ttl_ms) {
  eng__lock *l = eng__xcalloc(1, sizeof *l);
  l->name = eng__xstrdup(name);
  l->id = eng__xstrdup(id);
  l->key = eng__asprintf("locks/%s", name);
  l->ttl_ms = ttl_ms;
  l->fd = -1;
  gethostname(l->host, sizeof l->host - 1);
  eng__fmt_time(now_ms, l->started, sizeof l->started);
  return l;
}

static void lock_free(eng__lock *l) {
  if (l->fd >= 0) close(l->fd);
  eng__state_close(l->st);
  free(l->name);
  free(l->key);
  free(l->id);
  free(l);
}

static int take_local(eng__lock *l, const char *dir, int64_t now_ms,
                      eng__lock_holder *holder, char *err, size_t errlen) {
  char *locks = eng__asprintf("%s/locks", dir);
  eng__mkdir_p(locks, 0700);
  char *path = eng__asprintf("%s/%s.lock", locks, l->name);
  free(locks);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, errlen, "cannot open the lock file %s: %s", path,
             strerror(errno));
    free(path);
    return -1;
  }
  free(path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int held = errno == EWOULDBLOCK;
    if (held) {
      char buf[2048];
      ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
      parse_holder(buf, n > 0 ? (size_t)n : 0, holder);
    } else {
      snprintf(err, errlen, "cannot lock: %s", strerror(errno));
    }
    close(fd);
    return held ? 1 : -1;
  }
  char *rec = record(l, now_ms);
  if (ftruncate(fd, 0) != 0 || pwrite(fd, rec, strlen(rec), 0) < 0) {
    /* the lock holds; only who holds it could not be written */
  }
  free(rec);
  l->fd = fd;
  return 0;
}

int eng__lock_take(eng__state *st, const char *name, const char *id,
                   int64_t now_ms, int64_t ttl_ms, eng__lock **out,
                   eng__lock_holder *holder, char taken_over[32], char *err,
                   size_t errlen) {
  *out = NULL;
  taken_over[0] = '\0';
  memset(holder, 0, sizeof *holder);
  eng__lock *l = lock_new(name, id, now_ms, ttl_ms);
  if (!eng__state_url(st)) {
    int rc = take_local(l, eng__state_dir(st), now_ms, holder, err, errlen);
    if (rc == 0) *out = l;
    else lock_free(l);
    return rc;
  }
  l->st = eng__state_dup(st, err, errlen);
  if (!l->st) {
    lock_free(l);
    return -1;
  }
  char *rec = record(l, now_ms);
  int result = 1;
  for (int attempt = 0; attempt < 4 && result == 1; attempt++) {
    int rc = eng__state_put(l->st, l->key, rec, strlen(rec), "*", l->etag,
                            err, errlen);
    if (rc == ENG_OK) {
      result = 0;
      break;
    }
    if (rc != ENG_ERR_EXISTS) {
      result = -1;
      break;
    }
    char *cur = NULL;
    size_t len = 0;
    char cur_etag[ENG_ETAG_MAX];
    rc = eng__state_get(l->st, l->key, &cur, &len, cur_etag, err, errlen);
    if (rc == ENG_ERR_NOTFOUND) continue; /* released meanwhile */
    if (rc != ENG_OK) {
      result = -1;
      break;
    }
    int64_t exp = parse_holder(cur, len, holder);
    free(cur);
    if (exp > now_ms) break; /* held */
    rc = eng__state_put(l->st, l->key, rec, strlen(rec), cur_etag, l->etag,
                        err, errlen);
    if (rc == ENG_OK) {
      snprintf(taken_over, 32, "%s", holder->run);
      result = 0;
    } else if (rc != ENG_ERR_EXISTS) {
      result = -1;
    } /* else: changed meanwhile; look again */
  }
  free(rec);
  if (result == 0) {
    l->expires_ms = now_ms + ttl_ms;
    *out = l;
  } else {
    lock_free(l);
  }
  return result;
}

int eng__lock_renew(eng__lock *l, int64_t now_ms, char *err, size_t errlen) {
  if (!l->st) return 0; /* flock() holds while the process lives */
  char *rec = record(l, now_ms);
  char etag[ENG_ETAG_MAX];
  int rc = eng__state_put(l->st, l->key, rec, strlen(rec), l->etag, etag, err,
                          errlen);
  free(rec);
  if (rc == ENG_OK) {
    memcpy(l->etag, etag, sizeof etag);
    l->expires_ms = now_ms + l->ttl_ms;
    return 0;
  }
  if (rc == ENG_ERR_EXISTS) {
    snprintf(err, errlen, "another run took the lock '%s' over", l->name);
    return 1;
  }
  return -1;
}

/* ---- renewal on the loop ------------------------------------------------ */

static void renew_work(uv_work_t *w) {
  eng__lock *l = w->data;
  l->work_err[0] = '\0';
  l->work_rc = eng__lock_renew(l, eng__now_ms(), l->work_err,
                               sizeof l->work_err);
}

static void tell_lost(eng__lock *l, const char *msg) {
  if (l->lost_told || !l->lost) return;
  l->lost_told = true;
  l->lost(l->lost_ud, msg);
}

static void renew_after(uv_work_t *w, int status) {
  eng__lock *l = w->data;
  l->working = false;
  if (status != 0 || l->closing) return;
  if (l->work_rc == 1) {
    tell_lost(l, l->work_err);
  } else if (l->work_rc < 0 && eng__now_ms() >= l->expires_ms) {
    char *m = eng__asprintf("the lock '%s' could not be renewed before it "
                            "expired: %s", l->name, l->work_err);
    tell_lost(l, m);
    free(m);
  }
}

static void renew_tick(uv_timer_t *t) {
  eng__lock *l = t->data;
  if (l->working || l->closing) return;
  l->working = true;
  l->work.data = l;
  if (uv_queue_work(t->loop, &l->work, renew_work, renew_after) != 0)
    l->working = false;
}

void eng__lock_keep(eng__lock *l, uv_loop_t *loop,
                    void (*lost)(void *ud, const char *msg), void *ud) {
  if (!l || !l->st) return;
  l->lost = lost;
  l->lost_ud = ud;
  l->timer = eng__xmalloc(sizeof *l->timer);
  uv_timer_init(loop, l->timer);
  l->timer->data = l;
  uint64_t every = (uint64_t)(l->ttl_ms / 3 > 0 ? l->ttl_ms / 3 : 1);
  uv_timer_start(l->timer, renew_tick, every, every);
  uv_unref((uv_handle_t *)l->timer); /* never keeps a finished run alive */
}

static void timer_closed(uv_handle_t *h) { free(h); }

void eng__lock_unkeep(eng__lock *l) {
  if (!l || !l->timer) return;
  l->closing = true;
  uv_timer_stop(l->timer);
  uv_close((uv_handle_t *)l->timer, timer_closed);
  l->timer = NULL;
}

void eng__lock_release(eng__lock *l) {
  if (!l) return;
  if (l->st) {
    char err[256];
    /* conditional: a lock taken over by another run stays theirs */
    eng__state_del(l->st, l->key, l->etag, err, sizeof err);
  } else if (l->fd >= 0) {
    if (ftruncate(l->fd, 0) != 0) { /* the record only; the lock goes */ }
  }
  lock_free(l);
}
