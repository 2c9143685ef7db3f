/* test_process.c - child processes on the loop: output, exit, stderr
 * redaction, env, stdin, spawn errors, group kill, backpressure. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/io.h"

/* What one spawned process did. */
typedef struct run {
  char out[65536];
  size_t out_len;
  uint64_t out_total;
  char lines[16][256];
  int n_lines;
  int exits;
  int64_t status;
  int sig;
  char tail[4200];
  uint64_t t_exit;
  /* backpressure */
  uv_loop_t *loop;
  eng_proc *proc;
  int paused, pauses;
  uv_timer_t resume;
  /* group kill */
  eng__proc_group *group;
  int killed;
  uint64_t t_kill;
  int grandchild;
} run;

static void on_out(void *ud, const char *buf, size_t len) {
  run *r = ud;
  r->out_total += len;
  size_t room = sizeof r->out - 1 - r->out_len;
  if (len > room) len = room;
  memcpy(r->out + r->out_len, buf, len);
  r->out_len += len;
  r->out[r->out_len] = '\0';
}

static void on_exit_(void *ud, int64_t status, int sig) {
  run *r = ud;
  r->exits++;
  r->status = status;
  r->sig = sig;
  r->t_exit = uv_hrtime() / 1000000;
  snprintf(r->tail, sizeof r->tail, "%s", eng__proc_stderr_tail(r->proc));
}

static void log_line(void *ctx, const char *line) {
  run *r = ctx;
  if (r->n_lines < 16)
    snprintf(r->lines[r->n_lines++], sizeof r->lines[0], "%s", line);
}

static eng_spawn_opts base_opts(const char *const *argv, run *r) {
  eng_spawn_opts o;
  memset(&o, 0, sizeof o);
  o.size = sizeof o;
  o.argv = argv;
  o.stdin_fd = ENG_STDIO_NULL;
  o.stdout_fd = ENG_STDIO_PIPE;
  o.on_stdout = on_out;
  o.on_exit = on_exit_;
  o.ud = r;
  return o;
}

/* Spawn, run the loop to the end, close it. */
static void run_to_end(const eng_spawn_opts *o, const eng__proc_hooks *h,
                       run *r) {
  uv_loop_t loop;
  eng__proc_group g = {NULL};
  char err[256];
  assert_int_equal(uv_loop_init(&loop), 0);
  r->loop = &loop;
  int rc = eng__proc_spawn(&loop, &g, o, h, &r->proc, err, sizeof err);
  assert_int_equal(rc, ENG_OK);
  assert_false(eng__proc_group_empty(&g));
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_true(eng__proc_group_empty(&g));
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(r->exits, 1);
}

static void test_echo_stdout(void **state) {
  (void)state;
  run r = {0};
  const char *argv[] = {"echo", "hello", "world", NULL};
  eng_spawn_opts o = base_opts(argv, &r);
  run_to_end(&o, NULL, &r);
  assert_string_equal(r.out, "hello world\n");
  assert_int_equal(r.status, 0);
  assert_int_equal(r.sig, 0);
}

static void test_exit_status_and_signal(void **state) {
  (void)state;
  run a = {0}, b = {0};
  const char *argv1[] = {"sh", "-c", "echo out; exit 3", NULL};
  eng_spawn_opts o = base_opts(argv1, &a);
  run_to_end(&o, NULL, &a);
  assert_int_equal(a.status, 3);
  assert_int_equal(a.sig, 0);
  assert_string_equal(a.out, "out\n");

  const char *argv2[] = {"sh", "-c", "kill -KILL $$", NULL};
  o = base_opts(argv2, &b);
  o.stdout_fd = ENG_STDIO_NULL;
  o.on_stdout = NULL;
  run_to_end(&o, NULL, &b);
  assert_int_equal(b.sig, SIGKILL);
}

static void test_stderr_redacted(void **state) {
  (void)state;
  run r = {0};
  eng__redactor *red = eng__redactor_create();
  eng__redactor_add(red, "topsecret99");
  eng__proc_hooks h = {log_line, &r, red};
  const char *argv[] = {
      "sh", "-c",
      "echo 'login failed: topsecret99' >&2; printf 'second\\r\\nno newline "
      "postgres://u:pw1@h' >&2",
      NULL};
  eng_spawn_opts o = base_opts(argv, &r);
  run_to_end(&o, &h, &r);
  assert_int_equal(r.n_lines, 3);
  assert_string_equal(r.lines[0], "login failed: ***");
  assert_string_equal(r.lines[1], "second");
  assert_string_equal(r.lines[2], "no newline postgres://u:***@h");
  assert_null(strstr(r.tail, "topsecret99"));
  assert_string_equal(
      r.tail, "login failed: ***\nsecond\nno newline postgres://u:***@h");
  eng__redactor_destroy(red);
}

static void on_err_raw(void *ud, const char *buf, size_t len) {
  run *r = ud;
  on_out(ud, buf, len); /* raw stderr goes to out for this test */
  (void)r;
}

static void test_stderr_raw_and_tail_limit(void **state) {
  (void)state;
  run r = {0};
  eng__proc_hooks h = {log_line, &r, NULL};
  const char *argv[] = {
      "sh", "-c", "i=0; while [ $i -lt 50 ]; do echo line$i >&2; "
                  "i=$((i+1)); done; echo password=hunter22 >&2",
      NULL};
  eng_spawn_opts o = base_opts(argv, &r);
  o.stdout_fd = ENG_STDIO_NULL;
  o.on_stdout = NULL;
  o.on_stderr = on_err_raw;
  run_to_end(&o, &h, &r);
  assert_int_equal(r.n_lines, 0); /* on_stderr set: nothing logged */
  assert_non_null(strstr(r.out, "line0\n"));
  assert_non_null(strstr(r.out, "password=hunter22")); /* raw */
  /* tail: the last 20 lines, redacted */
  assert_null(strstr(r.tail, "line30\n"));
  assert_non_null(strstr(r.tail, "line31\n"));
  assert_non_null(strstr(r.tail, "line49\npassword=***"));
}

static void test_env_and_cwd(void **state) {
  (void)state;
  run r = {0};
  setenv("ENG_TEST_INHERITED", "inh", 1);
  setenv("ENG_TEST_OVERRIDE", "old", 1);
  const char *env[] = {"ENG_TEST_OVERRIDE=new", "ENG_TEST_ADDED=a=b", NULL};
  const char *argv[] = {
      "sh", "-c",
      "echo $ENG_TEST_INHERITED:$ENG_TEST_OVERRIDE:$ENG_TEST_ADDED:$(pwd)",
      NULL};
  eng_spawn_opts o = base_opts(argv, &r);
  o.env = env;
  o.cwd = "/";
  run_to_end(&o, NULL, &r);
  assert_string_equal(r.out, "inh:new:a=b:/\n");
  unsetenv("ENG_TEST_INHERITED");
  unsetenv("ENG_TEST_OVERRIDE");
}

/* stdin round trip through cat, 1 MB in 64 writes, then close. */
static char big[1 << 20];
static int writes_done, write_errors;

static void on_written(void *ud, int rc) {
  (void)ud;
  if (rc == ENG_OK)
    writes_done++;
  else
    write_errors++;
}

static void test_stdin_pipe_cat(void **state) {
  (void)state;
  run r = {0};
  for (size_t i = 0; i < sizeof big; i++) big[i] = (char)('a' + i % 26);
  writes_done = write_errors = 0;
  uv_loop_t loop;
  eng__proc_group g = {NULL};
  char err[256];
  uv_loop_init(&loop);
  const char *argv[] = {"cat", NULL};
  eng_spawn_opts o = base_opts(argv, &r);
  o.stdin_fd = ENG_STDIO_PIPE;
  assert_int_equal(eng__proc_spawn(&loop, &g, &o, NULL, &r.proc, err,
                                   sizeof err),
                   ENG_OK);
  size_t chunk = sizeof big / 64;
  for (size_t i = 0; i < 64; i++)
    assert_int_equal(
        eng__proc_write(r.proc, big + i * chunk, chunk, on_written, NULL),
        ENG_OK);
  assert_int_equal(eng__proc_write(r.proc, NULL, 0, on_written, NULL),
                   ENG_OK);
  /* closed: further writes fail at once */
  assert_int_equal(eng__proc_write(r.proc, "x", 1, on_written, NULL),
                   ENG_ERR_IO);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(r.exits, 1);
  assert_int_equal(r.status, 0);
  assert_int_equal(writes_done, 65);
  assert_int_equal(write_errors, 0);
  assert_int_equal(r.out_total, sizeof big);
  assert_memory_equal(r.out, big, r.out_len);
}

/* A process that exits without reading stdin: a pending write completes
 * (error or cancelled) before on_exit, never after. */
static void on_written_check(void *ud, int rc) {
  run *r = ud;
  assert_int_equal(r->exits, 0);
  assert_int_not_equal(rc, ENG_OK);
  write_errors++;
}

static void test_stdin_unread(void **state) {
  (void)state;
  run r = {0};
  static char huge[4 << 20];
  write_errors = 0;
  uv_loop_t loop;
  char err[256];
  uv_loop_init(&loop);
  const char *argv[] = {"true", NULL};
  eng_spawn_opts o = base_opts(argv, &r);
  o.stdin_fd = ENG_STDIO_PIPE;
  assert_int_equal(
      eng__proc_spawn(&loop, NULL, &o, NULL, &r.proc, err, sizeof err),
      ENG_OK);
  assert_int_equal(
      eng__proc_write(r.proc, huge, sizeof huge, on_written_check, &r),
      ENG_OK);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(r.exits, 1);
  assert_int_equal(write_errors, 1);
}

static void test_missing_program(void **state) {
  (void)state;
  run r = {0};
  uv_loop_t loop;
  eng__proc_group g = {NULL};
  char err[256];
  eng_proc *p = (eng_proc *)&r; /* must be reset to NULL */
  uv_loop_init(&loop);
  const char *argv[] = {"pg_dump_does_not_exist_42", "-V", NULL};
  eng_spawn_opts o = base_opts(argv, &r);
  o.stdin_fd = ENG_STDIO_PIPE;
  int rc = eng__proc_spawn(&loop, &g, &o, NULL, &p, err, sizeof err);
  assert_int_equal(rc, ENG_ERR_NOTFOUND);
  assert_null(p);
  assert_string_equal(err,
                      "cannot run 'pg_dump_does_not_exist_42': no such file "
                      "or directory (is it installed and on PATH?)");
  assert_true(eng__proc_group_empty(&g));
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(r.exits, 0);
  assert_int_equal(r.out_total, 0);

  /* a cwd that does not exist */
  uv_loop_init(&loop);
  const char *argv2[] = {"true", NULL};
  o = base_opts(argv2, &r);
  o.cwd = "/nonexistent/dir/42";
  rc = eng__proc_spawn(&loop, &g, &o, NULL, &p, err, sizeof err);
  assert_int_equal(rc, ENG_ERR_NOTFOUND);
  assert_non_null(strstr(err, "working directory"));
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(r.exits, 0);

  /* bad arguments */
  const char *argv3[] = {NULL};
  o = base_opts(argv3, &r);
  assert_int_equal(eng__proc_spawn(&loop, &g, &o, NULL, &p, err, sizeof err),
                   ENG_ERR_INVALID);
}

/* Gone, or a zombie waiting for init to reap it. */
static int pid_dead(int pid) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return 1;
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *rp = strrchr(buf, ')');
  return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

static void on_out_kill(void *ud, const char *buf, size_t len) {
  run *r = ud;
  on_out(ud, buf, len);
  if (!r->killed && strchr(r->out, '\n')) {
    r->grandchild = atoi(r->out);
    r->killed = 1;
    r->t_kill = uv_hrtime() / 1000000;
    eng__proc_group_kill(r->group, 300);
  }
}

static void test_group_kill(void **state) {
  (void)state;
  run r = {0};
  uv_loop_t loop;
  eng__proc_group g = {NULL};
  char err[256];
  uv_loop_init(&loop);
  r.group = &g;
  const char *argv[] = {"sh", "-c",
                        "trap '' TERM; sleep 30 & echo $!; wait; echo after",
                        NULL};
  eng_spawn_opts o = base_opts(argv, &r);
  o.on_stdout = on_out_kill;
  assert_int_equal(
      eng__proc_spawn(&loop, &g, &o, NULL, &r.proc, err, sizeof err), ENG_OK);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_true(eng__proc_group_empty(&g));
  assert_int_equal(r.exits, 1);
  assert_int_equal(r.sig, SIGKILL); /* TERM was ignored */
  assert_true(r.t_exit - r.t_kill >= 280);
  assert_true(r.t_exit - r.t_kill < 5000);
  assert_null(strstr(r.out, "after"));
  assert_true(r.grandchild > 1);
  int dead = 0;
  for (int i = 0; i < 200 && !(dead = pid_dead(r.grandchild)); i++)
    usleep(10000);
  assert_true(dead);
}

/* A process that dies on SIGTERM: no SIGKILL needed, the timer is closed
 * with the process. */
static void on_out_term(void *ud, const char *buf, size_t len) {
  run *r = ud;
  on_out(ud, buf, len);
  if (!r->killed) {
    r->killed = 1;
    r->t_kill = uv_hrtime() / 1000000;
    eng__proc_group_kill(r->group, 10000);
  }
}

static void test_group_kill_term(void **state) {
  (void)state;
  run r = {0};
  uv_loop_t loop;
  eng__proc_group g = {NULL};
  char err[256];
  uv_loop_init(&loop);
  r.group = &g;
  const char *argv[] = {"sh", "-c", "echo up; exec sleep 30", NULL};
  eng_spawn_opts o = base_opts(argv, &r);
  o.on_stdout = on_out_term;
  assert_int_equal(
      eng__proc_spawn(&loop, &g, &o, NULL, &r.proc, err, sizeof err), ENG_OK);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(r.sig, SIGTERM);
  assert_true(r.t_exit - r.t_kill < 2000);
}

/* Backpressure: pause after every 256 KiB, resume 1 ms later. */
static void on_resume(uv_timer_t *t) {
  run *r = t->data;
  r->paused = 0;
  eng__proc_pause(r->proc, 0);
}

static void on_out_bp(void *ud, const char *buf, size_t len) {
  run *r = ud;
  (void)buf;
  assert_false(r->paused); /* nothing arrives while paused */
  uint64_t before = r->out_total;
  r->out_total += len;
  if (before / (256 * 1024) != r->out_total / (256 * 1024)) {
    r->paused = 1;
    r->pauses++;
    eng__proc_pause(r->proc, 1);
    uv_timer_start(&r->resume, on_resume, 1, 0);
  }
}

static void test_pause_resume(void **state) {
  (void)state;
  run r = {0};
  uv_loop_t loop;
  char err[256];
  uv_loop_init(&loop);
  uv_timer_init(&loop, &r.resume);
  r.resume.data = &r;
  const char *argv[] = {"head", "-c", "10000000", "/dev/zero", NULL};
  eng_spawn_opts o = base_opts(argv, &r);
  o.on_stdout = on_out_bp;
  assert_int_equal(
      eng__proc_spawn(&loop, NULL, &o, NULL, &r.proc, err, sizeof err),
      ENG_OK);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&r.resume, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  assert_int_equal(r.exits, 1);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.out_total, 10000000);
  assert_true(r.pauses >= 30);
}

/* stdout to an fd: the child writes the file directly. */
static void test_stdout_fd(void **state) {
  (void)state;
  run r = {0};
  char path[] = "/tmp/eng_test_proc_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  const char *argv[] = {"echo", "to-file", NULL};
  eng_spawn_opts o = base_opts(argv, &r);
  o.stdout_fd = fd;
  o.on_stdout = NULL;
  run_to_end(&o, NULL, &r);
  char buf[64] = {0};
  assert_int_equal(pread(fd, buf, sizeof buf - 1, 0), 8);
  assert_string_equal(buf, "to-file\n");
  close(fd);
  unlink(path);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_echo_stdout),
      cmocka_unit_test(test_exit_status_and_signal),
      cmocka_unit_test(test_stderr_redacted),
      cmocka_unit_test(test_stderr_raw_and_tail_limit),
      cmocka_unit_test(test_env_and_cwd),
      cmocka_unit_test(test_stdin_pipe_cat),
      cmocka_unit_test(test_stdin_unread),
      cmocka_unit_test(test_missing_program),
      cmocka_unit_test(test_group_kill),
      cmocka_unit_test(test_group_kill_term),
      cmocka_unit_test(test_pause_resume),
      cmocka_unit_test(test_stdout_fd),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
