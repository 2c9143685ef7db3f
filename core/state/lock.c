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
 * whose content names the holder the same way.
 *
 * Renewal runs on a thread of the lock's own from the moment the lock is
 * taken until it is released (also while earlier runs' leftovers are
 * removed, and while the last state is written), so a slow store never
 * holds up the loop; a watch on the run's loop turns "taken over" or "not
 * renewed in time" into a stop of the run. */
#include "state/state.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

struct eng__lock {
  eng__state *st; /* own handle: the taker, then the renewal thread */
  char *name, *key, *id;
  char host[128];
  char started[40];
  int64_t ttl_ms;
  int fd; /* local: the flock()ed file, else -1 */
  /* shared with the renewal thread, under mu */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  char etag[ENG_ETAG_MAX];
  int64_t expires_ms;
  bool stop, lost;
  char lost_msg[300];
  pthread_t thread;
  bool renewing;
  /* the watch on a run's loop */
  uv_timer_t *timer;
  void (*lost_cb)(void *ud, const char *msg);
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
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->cv, NULL);
  gethostname(l->host, sizeof l->host - 1);
  eng__fmt_time(now_ms, l->started, sizeof l->started);
  return l;
}

static void lock_free(eng__lock *l) {
  if (l->fd >= 0) close(l->fd);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->cv);
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
    if (exp > now_ms || !cur_etag[0]) break; /* held (or no safe take-over) */
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
  if (result == 0 && !l->etag[0]) {
    /* without an ETag no write can be conditional: no lock at all */
    snprintf(err, errlen, "the state store gave no ETag for %s, so the lock "
             "cannot be renewed or released safely (a store that keeps "
             "ETags and honours If-Match is needed)", l->key);
    char derr[256];
    eng__state_del(l->st, l->key, NULL, derr, sizeof derr);
    result = -1;
  }
  if (result == 0) {
    l->expires_ms = now_ms + ttl_ms;
    *out = l;
  } else {
    lock_free(l);
  }
  return result;
}

/* Is the record in the store still ours (a renewal whose answer was lost
 * but which was applied)? Then its ETag is ours too. */
static bool still_ours(eng__lock *l, char etag[ENG_ETAG_MAX]) {
  char *cur = NULL, err[256];
  size_t len = 0;
  if (eng__state_get(l->st, l->key, &cur, &len, etag, err, sizeof err) != ENG_OK)
    return false;
  json_t *j = json_loadb(cur, len, 0, NULL);
  free(cur);
  const char *run = json_string_value(json_object_get(j, "run"));
  const char *host = json_string_value(json_object_get(j, "host"));
  bool ours = run && host && !strcmp(run, l->id) && !strcmp(host, l->host) &&
              json_integer_value(json_object_get(j, "pid")) == (json_int_t)getpid() &&
              etag[0];
  json_decref(j);
  return ours;
}

int eng__lock_renew(eng__lock *l, int64_t now_ms, char *err, size_t errlen) {
  if (!l->st) return 0; /* flock() holds while the process lives */
  char *rec = record(l, now_ms);
  char cond[ENG_ETAG_MAX], etag[ENG_ETAG_MAX] = "";
  pthread_mutex_lock(&l->mu);
  memcpy(cond, l->etag, sizeof cond);
  pthread_mutex_unlock(&l->mu);
  int rc = eng__state_put(l->st, l->key, rec, strlen(rec), cond, etag, err,
                          errlen);
  if (rc == ENG_ERR_EXISTS && still_ours(l, cond))
    rc = eng__state_put(l->st, l->key, rec, strlen(rec), cond, etag, err,
                        errlen);
  free(rec);
  if (rc == ENG_OK && etag[0]) {
    pthread_mutex_lock(&l->mu);
    memcpy(l->etag, etag, sizeof etag);
    l->expires_ms = now_ms + l->ttl_ms;
    pthread_mutex_unlock(&l->mu);
    return 0;
  }
  if (rc == ENG_ERR_EXISTS) {
    snprintf(err, errlen, "another run took the lock '%s' over", l->name);
    return 1;
  }
  if (rc == ENG_OK) snprintf(err, errlen, "the store gave no ETag");
  return -1;
}

/* ---- renewal on a thread ------------------------------------------------- */

static void *renew_main(void *arg) {
  eng__lock *l = arg;
  int64_t every = l->ttl_ms / 3 > 0 ? l->ttl_ms / 3 : 1;
  pthread_mutex_lock(&l->mu);
  while (!l->stop && !l->lost) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + (every % 1000) * 1000000;
    ts.tv_sec += (time_t)(every / 1000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    while (!l->stop &&
           pthread_cond_timedwait(&l->cv, &l->mu, &ts) != ETIMEDOUT) {
    }
    if (l->stop) break;
    pthread_mutex_unlock(&l->mu);
    char err[256] = "";
    int rc = eng__lock_renew(l, eng__now_ms(), err, sizeof err);
    pthread_mutex_lock(&l->mu);
    if (rc == 1) {
      l->lost = true;
      snprintf(l->lost_msg, sizeof l->lost_msg, "%s", err);
    } else if (rc < 0) { /* tried again at the next tick; the watch on the
                            loop says when the lock expired meanwhile */
      snprintf(l->lost_msg, sizeof l->lost_msg, "%s", err);
    }
  }
  pthread_mutex_unlock(&l->mu);
  return NULL;
}

void eng__lock_renewing(eng__lock *l) {
  if (!l || !l->st || l->renewing) return;
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* signals are the loop's */
  l->renewing = pthread_create(&l->thread, NULL, renew_main, l) == 0;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

bool eng__lock_lost(eng__lock *l, int64_t now_ms, char *msg, size_t n) {
  if (!l || !l->st) return false;
  pthread_mutex_lock(&l->mu);
  /* stop a little before the expiry: another run may take it over then */
  int64_t margin = l->ttl_ms / 6;
  bool lost = l->lost || now_ms + margin >= l->expires_ms;
  if (lost && msg) {
    if (l->lost) snprintf(msg, n, "%s", l->lost_msg);
    else {
      char exp[40];
      eng__fmt_time(l->expires_ms, exp, sizeof exp);
      snprintf(msg, n, "the lock '%s' could not be renewed before it expires "
               "at %s%s%s", l->name, exp, l->lost_msg[0] ? ": " : "",
               l->lost_msg);
    }
  }
  pthread_mutex_unlock(&l->mu);
  return lost;
}

/* ---- the watch on a run's loop ------------------------------------------ */

static void watch_tick(uv_timer_t *t) {
  eng__lock *l = t->data;
  char msg[400];
  if (l->lost_told || !eng__lock_lost(l, eng__now_ms(), msg, sizeof msg))
    return;
  l->lost_told = true;
  if (l->lost_cb) l->lost_cb(l->lost_ud, msg);
}

void eng__lock_keep(eng__lock *l, uv_loop_t *loop,
                    void (*lost)(void *ud, const char *msg), void *ud) {
  if (!l || !l->st) return;
  eng__lock_renewing(l);
  l->lost_cb = lost;
  l->lost_ud = ud;
  l->timer = eng__xmalloc(sizeof *l->timer);
  uv_timer_init(loop, l->timer);
  l->timer->data = l;
  uint64_t every = (uint64_t)(l->ttl_ms / 6 > 50 ? l->ttl_ms / 6 : 50);
  uv_timer_start(l->timer, watch_tick, every, every);
  uv_unref((uv_handle_t *)l->timer); /* never keeps a finished run alive */
}

static void timer_closed(uv_handle_t *h) { free(h); }

void eng__lock_unkeep(eng__lock *l) {
  if (!l || !l->timer) return;
  uv_timer_stop(l->timer);
  uv_close((uv_handle_t *)l->timer, timer_closed);
  l->timer = NULL;
}

void eng__lock_release(eng__lock *l) {
  if (!l) return;
  if (l->renewing) {
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    /* a renewal under way ends within its request's timeouts; the process
     * does not wait longer than 10 s for it (the lock then expires) */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    if (pthread_timedjoin_np(l->thread, NULL, &ts) != 0) return; /* kept */
  }
  if (l->st) {
    char err[256];
    /* conditional: a lock taken over by another run stays theirs */
    if (!l->lost) eng__state_del(l->st, l->key, l->etag, err, sizeof err);
  } else if (l->fd >= 0) {
    if (ftruncate(l->fd, 0) != 0) { /* the record only; the lock goes */ }
  }
  lock_free(l);
}
