/*
 * io/io.h - the operating system on the loop: child processes in groups
 * killed together (process.c) and libcurl's multi interface on libuv
 * (http.c). Above base/ only.
 */
#ifndef ENGINE_IO_H
#define ENGINE_IO_H

#include "base/base.h"

/* ---- process.c: child processes on the loop -------------------------- */

/* A set of processes owned by one call; killed together on cancel. */
typedef struct eng__proc_group {
  struct eng__proc_link *head;
  int orphan; /* detached: freed with its last process */
} eng__proc_group;

typedef struct eng__proc_hooks {
  /* stderr lines when opts->on_stderr is NULL (already redacted) */
  void (*log_line)(void *ctx, const char *line);
  void *ctx;
  const eng__redactor *redact; /* may be NULL */
} eng__proc_hooks;

int eng__proc_spawn(uv_loop_t *loop, eng__proc_group *group,
                    const eng_spawn_opts *opts, const eng__proc_hooks *hooks,
                    eng_proc **out, char *err, size_t errlen);
void eng__proc_kill(eng_proc *p, int signum);
/* SIGTERM every process of the group now, SIGKILL those left after
 * grace_ms. */
void eng__proc_group_kill(eng__proc_group *g, uint64_t grace_ms);
int eng__proc_group_empty(const eng__proc_group *g);
/* The owner goes away while processes still run (they are being killed):
 * no callback reaches the owner any more, and the group (heap-allocated)
 * is freed with its last process. */
void eng__proc_group_detach(eng__proc_group *g);
int eng__proc_write(eng_proc *p, const void *buf, size_t len,
                    void (*cb)(void *ud, int rc), void *ud);
void eng__proc_pause(eng_proc *p, int paused);
const char *eng__proc_stderr_tail(eng_proc *p);

/* ---- http.c: libcurl multi on the loop ------------------------------- */

typedef struct eng__http_multi eng__http_multi;
typedef struct eng__http_group {
  struct eng__http_link *head;
} eng__http_group;

eng__http_multi *eng__http_multi_create(uv_loop_t *loop);
/* Close handles; runs cbs of still-running requests with CANCELLED. */
void eng__http_multi_destroy(eng__http_multi *m);
int eng__http_start(eng__http_multi *m, eng__http_group *g, void *curl_easy,
                    eng_http_cb cb, void *ud, eng_http **out);
void eng__http_cancel(eng_http *req); /* cb runs with ENG_ERR_CANCELLED */
void eng__http_unpause(eng_http *req);
void eng__http_group_cancel(eng__http_group *g);
/* Stop every request of the group without running its callback (the
 * owner is gone); the easy handles stay the owner's. */
void eng__http_group_abort(eng__http_group *g);

#endif /* ENGINE_IO_H */
