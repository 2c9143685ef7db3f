/*
 * http.c - libcurl's multi interface driven by the libuv loop.
 *
 * The classic multi-socket integration: curl tells us which sockets to
 * watch (CURLMOPT_SOCKETFUNCTION -> one uv_poll_t per socket) and when to
 * call it back (CURLMOPT_TIMERFUNCTION -> one uv_timer_t); we report
 * readiness with curl_multi_socket_action() and collect finished transfers
 * with curl_multi_info_read(). Nothing here blocks the loop (name
 * resolution uses curl's threaded resolver when curl was built with it).
 *
 * Ownership: the caller configures and owns the CURL easy handle. While a
 * request runs the host sets CURLOPT_ERRORBUFFER (to give cb curl's
 * detailed message) and CURLOPT_NOSIGNAL, and clears the error buffer
 * again before cb runs. The easy handle is out of the multi when cb runs,
 * so cb may free it. An eng_http is invalid once its cb has run.
 *
 * Reentrancy: curl forbids curl_multi_remove_handle() from inside its own
 * callbacks (write/read/progress functions). eng__http_cancel() called from
 * there is deferred: the request is removed and its cb runs with
 * ENG_ERR_CANCELLED as soon as curl returns to us, still in the same loop
 * callback. eng__http_start() and eng__http_multi_destroy() must not be
 * called from inside a curl callback (start returns ENG_ERR_INVALID there);
 * from an eng_http_cb they are fine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "io/io.h"

struct eng__http_link {
  struct eng__http_link *next, *prev;
  eng__http_group *group;
};

struct eng_http {
  struct eng__http_link link; /* in its group (may be none) */
  eng_http *mnext, *mprev;     /* in the multi: every running request */
  eng__http_multi *m;
  CURL *easy;
  eng_http_cb cb;
  void *ud;
  int cancel_pending; /* cancelled from inside a curl callback */
  int doomed;         /* selected by group_cancel */
  int silent;         /* the owner is gone: finish without the callback */
  char errbuf[CURL_ERROR_SIZE];
};

typedef struct http_sock {
  uv_poll_t poll;
  curl_socket_t fd;
  eng__http_multi *m;
  struct http_sock *next, *prev;
} http_sock;

struct eng__http_multi {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  eng_http *reqs;     /* running requests */
  http_sock *socks;   /* polled sockets (not yet closing) */
  int in_curl;        /* depth of calls into curl that may call back */
  int cancels;        /* requests with cancel_pending */
  int destroyed;
  int closes;         /* uv_close calls not yet called back */
};

/* ---- lists --------------------------------------------------------------- */

static void group_link(eng__http_group *g, eng_http *r) {
  r->link.group = g;
  r->link.prev = NULL;
  r->link.next = g->head;
  if (g->head) g->head->prev = &r->link;
  g->head = &r->link;
}

static void group_unlink(eng_http *r) {
  eng__http_group *g = r->link.group;
  if (!g) return;
  if (r->link.prev)
    r->link.prev->next = r->link.next;
  else
    g->head = r->link.next;
  if (r->link.next) r->link.next->prev = r->link.prev;
  r->link.group = NULL;
}

static void multi_link(eng__http_multi *m, eng_http *r) {
  r->mprev = NULL;
  r->mnext = m->reqs;
  if (m->reqs) m->reqs->mprev = r;
  m->reqs = r;
}

static void multi_unlink(eng__http_multi *m, eng_http *r) {
  if (r->mprev)
    r->mprev->mnext = r->mnext;
  else
    m->reqs = r->mnext;
  if (r->mnext) r->mnext->mprev = r->mprev;
}

static eng_http *find_req(eng__http_multi *m, CURL *easy) {
  for (eng_http *r = m->reqs; r; r = r->mnext)
    if (r->easy == easy) return r;
  return NULL;
}

/* ---- completion ------------------------------------------------------------ */

static int map_curl_error(CURLcode c) {
  switch (c) {
  case CURLE_OK: return ENG_OK;
  case CURLE_COULDNT_CONNECT:
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY: return ENG_ERR_CONNECT;
  case CURLE_OPERATION_TIMEDOUT: return ENG_ERR_TIMEOUT;
  case CURLE_ABORTED_BY_CALLBACK: return ENG_ERR_CANCELLED;
  default: return ENG_ERR_IO;
  }
}

static void free_multi_if_done(eng__http_multi *m);

/* Take r out of curl and our lists, free it, then run its cb. */
static void finish(eng_http *r, int rc, const char *msg) {
  eng__http_multi *m = r->m;
  long status = 0;
  char err[CURL_ERROR_SIZE];
  if (m->multi) curl_multi_remove_handle(m->multi, r->easy);
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, (char *)NULL);
  multi_unlink(m, r);
  group_unlink(r);
  if (r->cancel_pending) m->cancels--;
  snprintf(err, sizeof err, "%s", msg ? msg : "");
  eng_http_cb cb = r->cb;
  void *ud = r->ud;
  int silent = r->silent;
  free(r);
  if (!silent) cb(ud, rc, status, rc == ENG_OK ? NULL : err);
}

static void finish_done(eng_http *r, CURLcode res) {
  if (r->cancel_pending) {
    finish(r, ENG_ERR_CANCELLED, "cancelled");
    return;
  }
  int rc = map_curl_error(res);
  char msg[CURL_ERROR_SIZE];
  if (rc == ENG_OK)
    msg[0] = '\0';
  else
    snprintf(msg, sizeof msg, "%s",
             r->errbuf[0] ? r->errbuf : curl_easy_strerror(res));
  finish(r, rc, msg);
}

/* Cancellations asked from inside curl callbacks. */
static void run_pending_cancels(eng__http_multi *m) {
  while (m->cancels > 0 && m->in_curl == 0) {
    eng_http *r = m->reqs;
    while (r && !r->cancel_pending) r = r->mnext;
    if (!r) break;
    finish(r, ENG_ERR_CANCELLED, "cancelled");
  }
}

static void check_multi_info(eng__http_multi *m) {
  run_pending_cancels(m);
  CURLMsg *msg;
  int left;
  while (m->multi && (msg = curl_multi_info_read(m->multi, &left)) != NULL) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL *easy = msg->easy_handle;
    CURLcode res = msg->data.result;
    eng_http *r = find_req(m, easy);
    if (r)
      finish_done(r, res); /* cb may start, cancel, even destroy */
    else if (m->multi)
      curl_multi_remove_handle(m->multi, easy);
  }
}

/* Call into curl; its callbacks may ask for cancellations meanwhile. */
static void socket_action(eng__http_multi *m, curl_socket_t fd, int ev) {
  int running;
  if (!m->multi) return;
  m->in_curl++;
  curl_multi_socket_action(m->multi, fd, ev, &running);
  m->in_curl--;
  check_multi_info(m);
}

/* ---- sockets and timer -------------------------------------------------------- */

static void on_poll(uv_poll_t *h, int status, int events) {
  http_sock *s = h->data;
  int ev = 0;
  if (status < 0) ev = CURL_CSELECT_ERR;
  if (events & UV_READABLE) ev |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) ev |= CURL_CSELECT_OUT;
  socket_action(s->m, s->fd, ev);
}

static void on_sock_closed(uv_handle_t *h) {
  http_sock *s = h->data;
  eng__http_multi *m = s->m;
  free(s);
  m->closes--;
  free_multi_if_done(m);
}

static void sock_close(eng__http_multi *m, http_sock *s) {
  if (s->prev)
    s->prev->next = s->next;
  else
    m->socks = s->next;
  if (s->next) s->next->prev = s->prev;
  uv_poll_stop(&s->poll);
  m->closes++;
  uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                     void *sockp) {
  eng__http_multi *m = userp;
  http_sock *s = sockp;
  (void)easy;
  if (what == CURL_POLL_REMOVE) {
    if (s) sock_close(m, s); /* curl forgets s itself */
    return 0;
  }
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s) return -1;
    if (uv_poll_init_socket(m->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    s->fd = fd;
    s->m = m;
    s->poll.data = s;
    s->next = m->socks;
    if (m->socks) m->socks->prev = s;
    m->socks = s;
    curl_multi_assign(m->multi, fd, s);
  }
  int ev = 0;
  if (what & CURL_POLL_IN) ev |= UV_READABLE;
  if (what & CURL_POLL_OUT) ev |= UV_WRITABLE;
  uv_poll_start(&s->poll, ev, on_poll);
  return 0;
}

static void on_timer(uv_timer_t *t) {
  socket_action(t->data, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp) {
  eng__http_multi *m = userp;
  (void)multi;
  if (timeout_ms < 0)
    uv_timer_stop(&m->timer);
  else /* 0 too: never call socket_action from inside curl */
    uv_timer_start(&m->timer, on_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

/* ---- the multi ----------------------------------------------------------------- */

eng__http_multi *eng__http_multi_create(uv_loop_t *loop) {
  if (!loop || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) return NULL;
  eng__http_multi *m = calloc(1, sizeof *m);
  if (!m) abort();
  m->loop = loop;
  m->multi = curl_multi_init();
  if (!m->multi) {
    free(m);
    curl_global_cleanup();
    return NULL;
  }
  uv_timer_init(loop, &m->timer);
  m->timer.data = m;
  curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
  curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
  curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
  return m;
}

static void free_multi_if_done(eng__http_multi *m) {
  if (!m->destroyed || m->closes > 0) return;
  free(m);
  curl_global_cleanup();
}

static void on_timer_closed(uv_handle_t *h) {
  eng__http_multi *m = h->data;
  m->closes--;
  free_multi_if_done(m);
}

/* Every running request's cb runs now with ENG_ERR_CANCELLED; the uv
 * handles are closed and the memory is freed in their close callbacks, so
 * the caller runs the loop (uv_run) afterwards until they are closed. */
void eng__http_multi_destroy(eng__http_multi *m) {
  if (!m || m->destroyed) return;
  m->destroyed = 1;
  while (m->reqs) finish(m->reqs, ENG_ERR_CANCELLED, "cancelled");
  /* Cleanup may close cached connections through on_socket. */
  curl_multi_cleanup(m->multi);
  m->multi = NULL;
  while (m->socks) sock_close(m, m->socks);
  m->closes++;
  uv_close((uv_handle_t *)&m->timer, on_timer_closed);
}

int eng__http_start(eng__http_multi *m, eng__http_group *g, void *curl_easy,
                    eng_http_cb cb, void *ud, eng_http **out) {
  if (out) *out = NULL;
  if (!m || !curl_easy || !cb) return ENG_ERR_INVALID;
  if (m->destroyed || !m->multi) return ENG_ERR_CANCELLED;
  if (find_req(m, curl_easy)) return ENG_ERR_EXISTS; /* already running */
  eng_http *r = calloc(1, sizeof *r);
  if (!r) abort();
  r->m = m;
  r->easy = curl_easy;
  r->cb = cb;
  r->ud = ud;
  curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
  CURLMcode mc = curl_multi_add_handle(m->multi, r->easy);
  if (mc != CURLM_OK) {
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, (char *)NULL);
    free(r);
    return mc == CURLM_OUT_OF_MEMORY ? ENG_ERR_NOMEM : ENG_ERR_INVALID;
  }
  multi_link(m, r);
  if (g) group_link(g, r);
  if (out) *out = r;
  return ENG_OK;
}

void eng__http_cancel(eng_http *r) {
  if (!r || r->cancel_pending) return;
  eng__http_multi *m = r->m;
  if (m->in_curl > 0) { /* inside a curl callback: see the top comment */
    r->cancel_pending = 1;
    m->cancels++;
    /* Allowed from callbacks: no more data reaches the caller meanwhile. */
    curl_easy_pause(r->easy, CURLPAUSE_ALL);
    return;
  }
  finish(r, ENG_ERR_CANCELLED, "cancelled");
}

void eng__http_unpause(eng_http *r) {
  if (!r || r->cancel_pending) return;
  eng__http_multi *m = r->m;
  /* Unpausing may deliver buffered data to the write callback at once. */
  m->in_curl++;
  curl_easy_pause(r->easy, CURLPAUSE_CONT);
  m->in_curl--;
  if (m->in_curl == 0) check_multi_info(m);
}

void eng__http_group_abort(eng__http_group *g) {
  if (!g) return;
  for (struct eng__http_link *l = g->head; l; l = l->next)
    ((eng_http *)l)->silent = 1;
  eng__http_group_cancel(g);
}

void eng__http_group_cancel(eng__http_group *g) {
  if (!g) return;
  /* Only the requests running now: a cb may start new ones in g. */
  for (struct eng__http_link *l = g->head; l; l = l->next)
    ((eng_http *)l)->doomed = 1;
  for (;;) {
    struct eng__http_link *l = g->head;
    while (l && !(((eng_http *)l)->doomed && !((eng_http *)l)->cancel_pending))
      l = l->next;
    if (!l) break;
    eng_http *r = (eng_http *)l;
    r->doomed = 0;
    eng__http_cancel(r);
  }
}
