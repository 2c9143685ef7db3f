/*
 * process.c - child processes on the loop (libuv).
 *
 * Lifecycle of an eng_proc:
 *   spawn -> linked into its group; stdout/stderr read on the loop
 *   exit + stdout EOF + stderr EOF (+ stdin closed) -> on_exit() once
 *   on_exit returned -> every uv handle closed -> memory freed in the last
 *   close callback, and only then unlinked from the group.
 *
 * The child runs in its own session and process group (libuv's
 * UV_PROCESS_DETACHED calls setsid), so kill(-pid) reaches the
 * grandchildren too: `sh -c 'pg_dump ... | gzip'` dies whole.
 *
 * A spawn that fails returns an error and never calls back; its handles
 * are still closed through the loop, so the caller keeps running the loop
 * as usual.
 */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "io/io.h"

extern char **environ;

#define OUT_BUFSZ (64 * 1024)
#define ERR_BUFSZ (8 * 1024)
#define LINE_MAX_LEN (8 * 1024) /* a longer stderr "line" is split */
#define TAIL_LINES 20
#define TAIL_BYTES 4096

struct eng__proc_link {
  struct eng__proc_link *next, *prev;
  eng__proc_group *group;
};

struct eng_proc {
  struct eng__proc_link link; /* first: a link is its proc */
  uv_loop_t *loop;
  uv_process_t proc;
  uv_pipe_t in, out, err;
  uv_timer_t kill_timer;
  int pid;

  unsigned in_pipe : 1;    /* stdin is a pipe (handle initialized) */
  unsigned in_closing : 1; /* uv_close or shutdown issued on stdin */
  unsigned in_closed : 1;  /* stdin's close callback ran (or no pipe) */
  unsigned out_pipe : 1;
  unsigned out_eof : 1;
  unsigned err_eof : 1;
  unsigned exited : 1;
  unsigned paused : 1;
  unsigned done : 1;         /* on_exit called (or spawn failed) */
  unsigned kill_pending : 1; /* group_kill asked; SIGKILL stragglers */
  int closes;                /* uv_close calls not yet called back */

  int64_t exit_status;
  int term_signal;

  void (*on_stdout)(void *ud, const char *buf, size_t len);
  void (*on_stderr)(void *ud, const char *buf, size_t len);
  void (*on_exit)(void *ud, int64_t exit_status, int term_signal);
  void *ud;
  eng__proc_hooks hooks;

  char *line; /* partial stderr line */
  size_t line_len;
  char *tail[TAIL_LINES]; /* ring of redacted stderr lines */
  size_t tail_first, tail_n;
  char *tail_text; /* built by eng__proc_stderr_tail */
  int tail_dirty;   /* lines were added since tail_text was built */

  char out_buf[OUT_BUFSZ];
  char err_buf[ERR_BUFSZ];
};

typedef struct proc_write_req {
  uv_write_t req;
  eng_proc *p;
  void (*cb)(void *ud, int rc);
  void *ud;
} proc_write_req;

typedef struct proc_shutdown_req {
  uv_shutdown_t req;
  eng_proc *p;
  void (*cb)(void *ud, int rc);
  void *ud;
} proc_shutdown_req;

static void *proc_xcalloc(size_t n, size_t m) {
  void *p = calloc(n, m);
  if (!p) abort();
  return p;
}

/* ---- group ----------------------------------------------------------------- */

static void group_link(eng__proc_group *g, eng_proc *p) {
  p->link.group = g;
  p->link.prev = NULL;
  p->link.next = g->head;
  if (g->head) g->head->prev = &p->link;
  g->head = &p->link;
}

static void group_unlink(eng_proc *p) {
  eng__proc_group *g = p->link.group;
  if (!g) return;
  if (p->link.prev)
    p->link.prev->next = p->link.next;
  else
    g->head = p->link.next;
  if (p->link.next) p->link.next->prev = p->link.prev;
  p->link.group = NULL;
}

int eng__proc_group_empty(const eng__proc_group *g) {
  return g == NULL || g->head == NULL;
}

void eng__proc_group_detach(eng__proc_group *g) {
  g->orphan = 1;
  for (struct eng__proc_link *l = g->head; l; l = l->next) {
    eng_proc *p = (eng_proc *)l;
    p->on_stdout = NULL;
    p->on_stderr = NULL;
    p->on_exit = NULL;
    p->hooks.log_line = NULL;
    p->hooks.ctx = NULL;
  }
}

/* ---- freeing ----------------------------------------------------------------- */

static void proc_free(eng_proc *p) {
  eng__proc_group *g = p->link.group;
  group_unlink(p);
  if (g && g->orphan && g->head == NULL) free(g);
  free(p->line);
  for (size_t i = 0; i < TAIL_LINES; i++) free(p->tail[i]);
  free(p->tail_text);
  free(p);
}

static void check_done(eng_proc *p);

static void on_handle_closed(uv_handle_t *h) {
  eng_proc *p = h->data;
  p->closes--;
  if (h == (uv_handle_t *)&p->in) {
    p->in_closed = 1;
    if (!p->done) {
      check_done(p); /* may finish: on_exit, close_all, maybe free */
      return;
    }
  }
  if (p->done && p->closes == 0) proc_free(p);
}

static void close_handle(eng_proc *p, uv_handle_t *h) {
  if (uv_is_closing(h)) return;
  p->closes++;
  uv_close(h, on_handle_closed);
}

/* After on_exit (or a failed spawn): close everything left. */
static void close_all(eng_proc *p) {
  close_handle(p, (uv_handle_t *)&p->proc);
  close_handle(p, (uv_handle_t *)&p->kill_timer);
  close_handle(p, (uv_handle_t *)&p->err);
  if (p->out_pipe) close_handle(p, (uv_handle_t *)&p->out);
  if (p->in_pipe && !p->in_closed) {
    p->in_closing = 1;
    close_handle(p, (uv_handle_t *)&p->in);
  }
  if (p->closes == 0) proc_free(p);
}

/* ---- stderr lines and tail ----------------------------------------------------- */

static void tail_push(eng_proc *p, char *line) {
  size_t n = strlen(line);
  p->tail_dirty = 1;
  if (n > TAIL_BYTES) { /* keep the end of a huge line */
    memmove(line, line + n - TAIL_BYTES, TAIL_BYTES + 1);
  }
  if (p->tail_n == TAIL_LINES) {
    free(p->tail[p->tail_first]);
    p->tail[p->tail_first] = line;
    p->tail_first = (p->tail_first + 1) % TAIL_LINES;
  } else {
    p->tail[(p->tail_first + p->tail_n) % TAIL_LINES] = line;
    p->tail_n++;
  }
}

static void emit_line(eng_proc *p) {
  size_t n = p->line_len;
  if (n > 0 && p->line[n - 1] == '\r') n--;
  p->line[n] = '\0';
  p->line_len = 0;
  char *red = eng__redact(p->hooks.redact, p->line);
  if (!p->on_stderr && p->hooks.log_line)
    p->hooks.log_line(p->hooks.ctx, red);
  tail_push(p, red); /* takes red */
}

static void stderr_data(eng_proc *p, const char *buf, size_t len) {
  if (!p->line) p->line = malloc(LINE_MAX_LEN + 1);
  if (!p->line) abort();
  for (size_t i = 0; i < len; i++) {
    if (buf[i] == '\n') {
      emit_line(p);
      continue;
    }
    p->line[p->line_len++] = buf[i];
    if (p->line_len == LINE_MAX_LEN) emit_line(p);
  }
}

const char *eng__proc_stderr_tail(eng_proc *p) {
  if (!p) return "";
  if (p->tail_text && !p->tail_dirty) return p->tail_text;
  p->tail_dirty = 0;
  free(p->tail_text);
  /* The last lines that fit in TAIL_BYTES, oldest first. */
  size_t total = 0, k = 0;
  while (k < p->tail_n) {
    const char *l = p->tail[(p->tail_first + p->tail_n - 1 - k) % TAIL_LINES];
    size_t add = strlen(l) + (k ? 1 : 0);
    if (k > 0 && total + add > TAIL_BYTES) break;
    total += add;
    k++;
  }
  char *t = malloc(total + 1);
  if (!t) abort();
  size_t off = 0;
  for (size_t i = p->tail_n - k; i < p->tail_n; i++) {
    const char *l = p->tail[(p->tail_first + i) % TAIL_LINES];
    size_t n = strlen(l);
    if (off) t[off++] = '\n';
    memcpy(t + off, l, n);
    off += n;
  }
  t[off] = '\0';
  p->tail_text = t;
  return t;
}

/* ---- completion ------------------------------------------------------------------ */

static void check_done(eng_proc *p) {
  if (p->done || !p->exited || !p->out_eof || !p->err_eof) return;
  /* A stdin still open is closed first: pending writes complete with
   * ENG_ERR_CANCELLED before on_exit, never after. */
  if (p->in_pipe && !p->in_closed) {
    if (!p->in_closing) {
      p->in_closing = 1;
      close_handle(p, (uv_handle_t *)&p->in);
    }
    return; /* on_handle_closed comes back here */
  }
  if (p->line_len) emit_line(p);
  p->done = 1;
  if (p->kill_pending) /* stragglers of a cancelled group */
    kill(-p->pid, SIGKILL);
  if (p->on_exit) p->on_exit(p->ud, p->exit_status, p->term_signal);
  close_all(p);
}

static void on_exit_cb(uv_process_t *h, int64_t status, int sig) {
  eng_proc *p = h->data;
  p->exited = 1;
  p->exit_status = status;
  p->term_signal = sig;
  check_done(p);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  eng_proc *p = h->data;
  (void)hint;
  if (h == (uv_handle_t *)&p->out)
    *buf = uv_buf_init(p->out_buf, sizeof p->out_buf);
  else
    *buf = uv_buf_init(p->err_buf, sizeof p->err_buf);
}

static void on_out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  eng_proc *p = s->data;
  if (n > 0) {
    if (p->on_stdout) p->on_stdout(p->ud, buf->base, (size_t)n);
    return;
  }
  if (n == 0) return;
  uv_read_stop(s); /* EOF or error: either way the output ended */
  p->out_eof = 1;
  check_done(p);
}

static void on_err_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  eng_proc *p = s->data;
  if (n > 0) {
    stderr_data(p, buf->base, (size_t)n);
    if (p->on_stderr) p->on_stderr(p->ud, buf->base, (size_t)n);
    return;
  }
  if (n == 0) return;
  uv_read_stop(s);
  p->err_eof = 1;
  check_done(p);
}

/* ---- spawn ---------------------------------------------------------------------------- */

/* environ, minus the keys opts_env overrides, plus opts_env. The strings
 * are borrowed; free only the array. */
static char **build_env(const char *const *opts_env) {
  size_t ne = 0, no = 0;
  while (environ && environ[ne]) ne++;
  while (opts_env && opts_env[no]) no++;
  char **env = proc_xcalloc(ne + no + 1, sizeof *env);
  size_t k = 0;
  for (size_t i = 0; i < ne; i++) {
    const char *eq = strchr(environ[i], '=');
    size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
    int overridden = 0;
    for (size_t j = 0; j < no && !overridden; j++) {
      const char *oeq = strchr(opts_env[j], '=');
      size_t olen = oeq ? (size_t)(oeq - opts_env[j]) : strlen(opts_env[j]);
      overridden = olen == klen && memcmp(opts_env[j], environ[i], klen) == 0;
    }
    if (!overridden) env[k++] = environ[i];
  }
  for (size_t j = 0; j < no; j++) env[k++] = (char *)opts_env[j];
  env[k] = NULL;
  return env;
}

/* A child that closes its stdin early must give EPIPE to proc_write, not
 * kill the engine. libuv resets signal dispositions in the child. */
static void ignore_sigpipe(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
  }
}

static int spawn_error(eng_proc *p, const eng_spawn_opts *opts, int uverr,
                       char *err, size_t errlen) {
  const char *prog = opts->argv[0];
  int rc = ENG_ERR_IO;
  struct stat st;
  if (uverr == UV_ENOENT && opts->cwd && stat(opts->cwd, &st) != 0) {
    snprintf(err, errlen,
             "cannot run '%s': working directory '%s' does not exist", prog,
             opts->cwd);
    rc = ENG_ERR_NOTFOUND;
  } else if (uverr == UV_ENOENT) {
    snprintf(err, errlen,
             "cannot run '%s': no such file or directory (is it installed "
             "and on PATH?)",
             prog);
    rc = ENG_ERR_NOTFOUND;
  } else if (uverr == UV_EACCES) {
    snprintf(err, errlen,
             "cannot run '%s': permission denied (check that it is "
             "executable%s%s)",
             prog, opts->run_as ? " by user " : "",
             opts->run_as ? opts->run_as : "");
  } else {
    snprintf(err, errlen, "cannot run '%s': %s", prog, uv_strerror(uverr));
  }
  if (p) {
    p->done = 1; /* no callback ever */
    close_all(p);
  }
  return rc;
}

static void set_err(char *err, size_t errlen, const char *msg,
                    const char *arg) {
  if (err && errlen) snprintf(err, errlen, msg, arg);
}

/* The options a process can be started with; false with err. */
static bool spawn_opts_ok(uv_loop_t *loop, const eng_spawn_opts *opts,
                          char *err, size_t errlen) {
  if (!loop || !opts || opts->size < sizeof(eng_spawn_opts) || !opts->argv ||
      !opts->argv[0] || !opts->argv[0][0]) {
    set_err(err, errlen, "%s", "cannot run a process: no program given");
    return false;
  }
  if (opts->stdout_fd == ENG_STDIO_PIPE && !opts->on_stdout) {
    set_err(err, errlen, "cannot run '%s': stdout is a pipe but nobody reads "
                         "it (on_stdout is NULL)", opts->argv[0]);
    return false;
  }
  return true;
}

/* Run as opts->run_as (when the engine is root): uid and gid into po.
 * ENG_OK, or ENG_ERR_NOTFOUND with err. */
static int run_as(const eng_spawn_opts *opts, uv_process_options_t *po,
                  char *err, size_t errlen) {
  if (!opts->run_as || geteuid() != 0) return ENG_OK;
  struct passwd *pw = getpwnam(opts->run_as);
  if (!pw) {
    set_err(err, errlen, "cannot run as user '%s': no such user on this machine",
            opts->run_as);
    return ENG_ERR_NOTFOUND;
  }
  po->flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
  po->uid = pw->pw_uid;
  po->gid = pw->pw_gid;
  return ENG_OK;
}

/* stdin and stdout as asked (a pipe, an inherited fd, or nothing); stderr
 * always a pipe, read for log lines and the error tail. */
static void set_stdio(eng_proc *p, const eng_spawn_opts *opts,
                      uv_stdio_container_t stdio[3]) {
  memset(stdio, 0, 3 * sizeof *stdio);
  if (opts->stdin_fd == ENG_STDIO_PIPE) {
    uv_pipe_init(p->loop, &p->in, 0);
    p->in_pipe = 1;
    p->in_closed = 0;
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&p->in;
    ignore_sigpipe();
  } else if (opts->stdin_fd >= 0) {
    stdio[0].flags = UV_INHERIT_FD;
    stdio[0].data.fd = opts->stdin_fd;
  } else {
    stdio[0].flags = UV_IGNORE; /* libuv opens /dev/null for fds 0-2 */
  }
  if (opts->stdout_fd == ENG_STDIO_PIPE) {
    uv_pipe_init(p->loop, &p->out, 0);
    p->out_pipe = 1;
    p->out_eof = 0;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&p->out;
  } else if (opts->stdout_fd >= 0) {
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = opts->stdout_fd;
  } else {
    stdio[1].flags = UV_IGNORE;
  }
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&p->err;
}

int eng__proc_spawn(uv_loop_t *loop, eng__proc_group *group,
                    const eng_spawn_opts *opts, const eng__proc_hooks *hooks,
                    eng_proc **out, char *err, size_t errlen) {
  char dummy[1];
  if (!err || !errlen) {
    err = dummy;
    errlen = sizeof dummy;
  }
  err[0] = '\0';
  if (out) *out = NULL;
  if (!spawn_opts_ok(loop, opts, err, errlen)) return ENG_ERR_INVALID;
  uv_process_options_t po;
  memset(&po, 0, sizeof po);
  po.flags = UV_PROCESS_DETACHED;
  int rc = run_as(opts, &po, err, errlen);
  if (rc != ENG_OK) return rc;

  eng_proc *p = proc_xcalloc(1, sizeof *p);
  p->loop = loop;
  p->on_stdout = opts->on_stdout;
  p->on_stderr = opts->on_stderr;
  p->on_exit = opts->on_exit;
  p->ud = opts->ud;
  if (hooks) p->hooks = *hooks;
  p->in_closed = 1;
  p->out_eof = 1;
  p->proc.data = p->in.data = p->out.data = p->err.data = p;
  p->kill_timer.data = p;
  uv_timer_init(loop, &p->kill_timer);
  uv_pipe_init(loop, &p->err, 0);
  uv_stdio_container_t stdio[3];
  set_stdio(p, opts, stdio);

  char **env = build_env(opts->env);
  po.file = opts->argv[0];
  po.args = (char **)opts->argv;
  po.env = env;
  po.cwd = opts->cwd;
  po.stdio = stdio;
  po.stdio_count = 3;
  po.exit_cb = on_exit_cb;
  int r = uv_spawn(loop, &p->proc, &po);
  free(env);
  if (r < 0) return spawn_error(p, opts, r, err, errlen);

  p->pid = p->proc.pid;
  if (group) group_link(group, p);
  if (p->out_pipe) uv_read_start((uv_stream_t *)&p->out, on_alloc, on_out_read);
  r = uv_read_start((uv_stream_t *)&p->err, on_alloc, on_err_read);
  if (r < 0) p->err_eof = 1; /* cannot happen for a fresh pipe */
  if (out) *out = p;
  return ENG_OK;
}

/* ---- control ---------------------------------------------------------------------------- */

void eng__proc_kill(eng_proc *p, int signum) {
  if (!p || p->done || p->pid <= 0) return;
  /* The whole group: the child is its leader (setsid). The leader may be
   * gone already while grandchildren still hold its pipes. */
  if (kill(-p->pid, signum) != 0 && errno == ESRCH && !p->exited)
    kill(p->pid, signum);
}

static void on_kill_timer(uv_timer_t *t) {
  eng_proc *p = t->data;
  eng__proc_kill(p, SIGKILL);
}

void eng__proc_group_kill(eng__proc_group *g, uint64_t grace_ms) {
  if (!g) return;
  for (struct eng__proc_link *l = g->head; l; l = l->next) {
    eng_proc *p = (eng_proc *)l;
    if (p->done) continue;
    p->kill_pending = 1;
    if (grace_ms == 0) {
      eng__proc_kill(p, SIGKILL);
      continue;
    }
    eng__proc_kill(p, SIGTERM);
    if (!uv_is_active((uv_handle_t *)&p->kill_timer))
      uv_timer_start(&p->kill_timer, on_kill_timer, grace_ms, 0);
  }
}

static int err_from_uv(int status) {
  if (status == 0) return ENG_OK;
  if (status == UV_ECANCELED) return ENG_ERR_CANCELLED;
  return ENG_ERR_IO;
}

static void on_write(uv_write_t *req, int status) {
  proc_write_req *w = (proc_write_req *)req;
  if (w->cb) w->cb(w->ud, err_from_uv(status));
  free(w);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  proc_shutdown_req *s = (proc_shutdown_req *)req;
  eng_proc *p = s->p;
  close_handle(p, (uv_handle_t *)&p->in);
  if (s->cb) s->cb(s->ud, err_from_uv(status));
  free(s);
}

int eng__proc_write(eng_proc *p, const void *buf, size_t len,
                    void (*cb)(void *ud, int rc), void *ud) {
  if (!p || !p->in_pipe || len > UINT32_MAX) return ENG_ERR_INVALID;
  if (p->in_closing || p->in_closed || p->done) return ENG_ERR_IO;
  if (len == 0) {
    proc_shutdown_req *s = proc_xcalloc(1, sizeof *s);
    s->p = p;
    s->cb = cb;
    s->ud = ud;
    int r = uv_shutdown(&s->req, (uv_stream_t *)&p->in, on_shutdown);
    if (r < 0) {
      free(s);
      return ENG_ERR_IO;
    }
    p->in_closing = 1;
    return ENG_OK;
  }
  proc_write_req *w = proc_xcalloc(1, sizeof *w);
  w->p = p;
  w->cb = cb;
  w->ud = ud;
  uv_buf_t b = uv_buf_init((char *)buf, (unsigned)len);
  int r = uv_write(&w->req, (uv_stream_t *)&p->in, &b, 1, on_write);
  if (r < 0) {
    free(w);
    return ENG_ERR_IO;
  }
  return ENG_OK;
}

void eng__proc_pause(eng_proc *p, int paused) {
  if (!p || !p->out_pipe || p->out_eof) return;
  if (paused && !p->paused) {
    uv_read_stop((uv_stream_t *)&p->out);
    p->paused = 1;
  } else if (!paused && p->paused) {
    p->paused = 0;
    uv_read_start((uv_stream_t *)&p->out, on_alloc, on_out_read);
  }
}
