/*
 * pg_xfer.c - copy a set of files between local paths and stream URLs
 * (s3://...), a few at a time: the files of a directory-format backup.
 *
 * Each copy reads through a host stream (its SHA-256 computed on the way
 * and, when one is expected, compared by the host) and writes through a
 * pg_out (bounded buffers: the reader is paused while the writer is
 * behind), so memory stays bounded whatever the sizes. Files may be
 * added while it runs (pg_xfer_feed ... pg_xfer_close: the files of a
 * dump as pg_dump finishes them). The first failure stops the copies under
 * way and starts no other; the callback runs once: after a failure as soon
 * as nothing runs any more, else when every file was copied and no more
 * come.
 */
#include "pg_int.h"

#include <stdlib.h>
#include <string.h>

typedef struct xcopy {
  pg_xfer *x;
  size_t i;
  eng_stream *rs; /* the read side; NULL once it ended or was aborted */
  pg_out *out;    /* the write side */
  eng_timer *stop_timer;
} xcopy;

struct pg_xfer {
  pg_op *op;
  pg_xfer_item *items;
  size_t n, cap, next, active;
  size_t parallel;
  int rc;
  int ended;
  int feeding; /* more files may come: do not end when the queue is empty */
  xcopy **running; /* parallel slots */
  json_t *wopts;   /* options of the write streams (or NULL) */
  pg_xfer_cb cb;
  void *ud;
};

static void xfer_next(pg_xfer *x);

pg_xfer *pg_xfer_new(pg_op *op, size_t parallel) {
  pg_xfer *x = eng_xcalloc(1, sizeof *x);
  x->op = op;
  x->parallel = parallel ? parallel : 1;
  x->running = eng_xcalloc(x->parallel, sizeof *x->running);
  return x;
}

void pg_xfer_add(pg_xfer *x, const char *src, const char *dst,
                 const char *expect) {
  if (x->n == x->cap) {
    x->cap = x->cap ? x->cap * 2 : 16;
    x->items = eng_xrealloc(x->items, x->cap * sizeof *x->items);
  }
  pg_xfer_item *it = &x->items[x->n++];
  memset(it, 0, sizeof *it);
  it->src = eng_xstrdup(src);
  it->dst = eng_xstrdup(dst);
  if (expect) snprintf(it->expect, sizeof it->expect, "%s", expect);
  if (x->cb) xfer_next(x); /* running: start it when a slot is free */
}

void pg_xfer_feed(pg_xfer *x) { x->feeding = 1; }

void pg_xfer_close(pg_xfer *x) {
  x->feeding = 0;
  if (x->cb) xfer_next(x);
}

void pg_xfer_write_opts(pg_xfer *x, json_t *opts) {
  json_decref(x->wopts);
  x->wopts = opts;
}

size_t pg_xfer_count(const pg_xfer *x) { return x->n; }
pg_xfer_item *pg_xfer_item_at(pg_xfer *x, size_t i) { return &x->items[i]; }

static void xcopy_free(xcopy *c) {
  if (c->stop_timer) pg_host->timer_stop(c->stop_timer);
  if (c->rs) pg_host->stream_abort(c->rs); /* no callback of it runs now */
  pg_out_free(c->out);
  for (size_t k = 0; k < c->x->parallel; k++)
    if (c->x->running[k] == c) c->x->running[k] = NULL;
  free(c);
}

static void xcopy_stop(void *ud);

static void xcopy_done(xcopy *c, int rc) {
  pg_xfer *x = c->x;
  x->active--;
  xcopy_free(c);
  if (rc != ENG_OK && !x->rc) {
    x->rc = rc;
    for (size_t k = 0; k < x->parallel; k++) /* stop the others */
      if (x->running[k]) xcopy_stop(x->running[k]);
  }
  xfer_next(x);
}

/* pg_out's end callback (it touches nothing of the pg_out afterwards, so
 * the pg_out may be freed here). */
static void xcopy_written(void *ud, int rc, json_t *info) {
  xcopy *c = ud;
  json_decref(info);
  xcopy_done(c, rc);
}

static void xcopy_read_end(void *ud, int rc, json_t *info) {
  xcopy *c = ud;
  c->rs = NULL; /* the host frees the stream after this callback */
  pg_xfer_item *it = &c->x->items[c->i];
  if (rc == ENG_OK) {
    const char *sha = json_string_value(json_object_get(info, "sha256"));
    if (sha) snprintf(it->sha, sizeof it->sha, "%s", sha);
    it->bytes = (int64_t)json_integer_value(json_object_get(info, "bytes"));
  }
  json_decref(info);
  if (rc != ENG_OK || c->x->rc) {
    pg_out_abort(c->out);
    xcopy_done(c, rc != ENG_OK ? rc : ENG_ERR_CANCELLED);
    return;
  }
  pg_out_end(c->out, xcopy_written, c);
}

static void xcopy_data(void *ud, const char *buf, size_t len) {
  xcopy *c = ud;
  pg_out_data(c->out, buf, len);
}

static void xcopy_pause(void *ud, int paused) {
  xcopy *c = ud;
  if (c->rs) pg_host->stream_pause(c->rs, paused);
}

/* The write side failed: stop reading. This may run inside the reader's
 * data callback, where the stream must not be freed: pause now, abort
 * from a timer. */
static void xcopy_stop_cb(void *ud) {
  xcopy *c = ud;
  c->stop_timer = NULL;
  if (c->rs) {
    pg_host->stream_abort(c->rs);
    c->rs = NULL;
  }
  int rc = pg_out_failed(c->out);
  pg_out_abort(c->out);
  xcopy_done(c, rc ? rc : ENG_ERR_IO);
}

static void xcopy_stop(void *ud) {
  xcopy *c = ud;
  if (!c->rs || c->stop_timer) return;
  pg_host->stream_pause(c->rs, 1);
  c->stop_timer = pg_host->timer_start(c->x->op->e.call, 0, xcopy_stop_cb, c);
}

static int xcopy_start(pg_xfer *x, size_t i, size_t slot) {
  pg_xfer_item *it = &x->items[i];
  xcopy *c = eng_xcalloc(1, sizeof *c);
  c->x = x;
  c->i = i;
  int rc = ENG_OK;
  c->out = pg_out_open(x->op, it->dst, x->wopts, &rc);
  if (!c->out) {
    free(c);
    return rc;
  }
  pg_out_source(c->out, xcopy_pause, xcopy_stop, c);
  json_t *o = json_pack("{s:b}", "verify", 1);
  if (it->expect[0])
    json_object_set_new(o, "expect_sha256", json_string(it->expect));
  rc = pg_host->stream_open_read(x->op->e.call, it->src, o, xcopy_data,
                                 xcopy_read_end, c, &c->rs);
  json_decref(o);
  if (rc != ENG_OK) {
    c->rs = NULL;
    pg_out_free(c->out);
    free(c);
    return rc;
  }
  x->running[slot] = c;
  x->active++;
  return ENG_OK;
}

static void xfer_next(pg_xfer *x) {
  if (x->ended) return;
  for (size_t k = 0; k < x->parallel && !x->rc && x->next < x->n; k++) {
    if (x->running[k]) continue;
    int rc = xcopy_start(x, x->next, k);
    x->next++;
    if (rc != ENG_OK) x->rc = rc;
  }
  if (x->active == 0 && (x->rc || (!x->feeding && x->next >= x->n))) {
    x->ended = 1;
    x->cb(x->ud, x->rc);
  }
}

void pg_xfer_run(pg_xfer *x, pg_xfer_cb cb, void *ud) {
  x->cb = cb;
  x->ud = ud;
  xfer_next(x);
}

void pg_xfer_free(pg_xfer *x) {
  if (!x) return;
  x->ended = 1; /* no callback from here on */
  for (size_t k = 0; k < x->parallel; k++)
    if (x->running[k]) xcopy_free(x->running[k]);
  for (size_t i = 0; i < x->n; i++) {
    free(x->items[i].src);
    free(x->items[i].dst);
  }
  free(x->items);
  free(x->running);
  json_decref(x->wopts);
  free(x);
}
