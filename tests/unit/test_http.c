/* test_http.c - libcurl multi on the loop, against a local python server:
 * body and status, concurrency, cancel, refused connection, timeout,
 * cancel from inside a curl callback, pause/unpause, destroy. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "io/io.h"

static const char SERVER_PY[] =
    "import http.server, socketserver, sys, time\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def log_message(self, *a): pass\n"
    "    def reply(self, code, body):\n"
    "        self.send_response(code)\n"
    "        self.send_header('Content-Length', str(len(body)))\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body)\n"
    "    def do_GET(self):\n"
    "        try:\n"
    "            if self.path == '/ok': self.reply(200, b'hello')\n"
    "            elif self.path == '/big': self.reply(200, b'x' * 1000000)\n"
    "            elif self.path == '/slow':\n"
    "                time.sleep(5); self.reply(200, b'late')\n"
    "            else: self.reply(404, b'nope')\n"
    "        except (BrokenPipeError, ConnectionResetError): pass\n"
    "class S(socketserver.ThreadingMixIn, http.server.HTTPServer):\n"
    "    daemon_threads = True\n"
    "    request_queue_size = 128\n"
    "s = S(('127.0.0.1', 0), H)\n"
    "print(s.server_address[1], flush=True)\n"
    "s.serve_forever()\n";

static pid_t server_pid;
static int server_port;
static char script_path[64];

static int setup(void **state) {
  (void)state;
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  snprintf(script_path, sizeof script_path, "/tmp/eng_http_srv_XXXXXX");
  int fd = mkstemp(script_path);
  if (fd < 0) return -1;
  if (write(fd, SERVER_PY, sizeof SERVER_PY - 1) != (ssize_t)(sizeof SERVER_PY - 1))
    return -1;
  close(fd);
  int p[2];
  if (pipe(p) != 0) return -1;
  server_pid = fork();
  if (server_pid == 0) {
    dup2(p[1], 1);
    close(p[0]);
    close(p[1]);
    execlp("python3", "python3", script_path, (char *)NULL);
    _exit(127);
  }
  close(p[1]);
  char buf[32] = {0};
  size_t n = 0;
  while (n < sizeof buf - 1) {
    ssize_t k = read(p[0], buf + n, 1);
    if (k <= 0 || buf[n] == '\n') break;
    n++;
  }
  close(p[0]);
  server_port = atoi(buf);
  return server_port > 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  if (server_pid > 0) {
    kill(server_pid, SIGKILL);
    waitpid(server_pid, NULL, 0);
  }
  unlink(script_path);
  curl_global_cleanup();
  return 0;
}

/* One request and what came back. */
typedef struct req {
  CURL *easy;
  char url[128];
  char body[64];
  size_t body_len, body_total;
  int calls;
  int rc;
  long status;
  char error[CURL_ERROR_SIZE];
  uint64_t t_done;
  eng_http *h;
  /* pause test */
  int pause_once;
  uv_timer_t *unpause_timer;
  /* cancel-from-callback test */
  int cancel_in_write;
  int writes_after_cancel;
} req;

static size_t on_write(char *p, size_t sz, size_t n, void *ud) {
  req *r = ud;
  size_t len = sz * n;
  if (r->cancel_in_write == 2) r->writes_after_cancel++;
  if (r->cancel_in_write == 1) {
    r->cancel_in_write = 2;
    eng__http_cancel(r->h); /* deferred: we are inside curl */
    assert_int_equal(r->calls, 0);
  }
  r->body_total += len;
  size_t room = sizeof r->body - 1 - r->body_len;
  size_t k = len < room ? len : room;
  memcpy(r->body + r->body_len, p, k);
  r->body_len += k;
  r->body[r->body_len] = '\0';
  return len;
}

static void on_done(void *ud, int rc, long status, const char *error) {
  req *r = ud;
  r->calls++;
  r->rc = rc;
  r->status = status;
  snprintf(r->error, sizeof r->error, "%s", error ? error : "");
  r->t_done = uv_hrtime() / 1000000;
}

static void req_init(req *r, const char *path) {
  memset(r, 0, sizeof *r);
  snprintf(r->url, sizeof r->url, "http://127.0.0.1:%d%s", server_port, path);
  r->easy = curl_easy_init();
  curl_easy_setopt(r->easy, CURLOPT_URL, r->url);
  curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
}

static void req_free(req *r) { curl_easy_cleanup(r->easy); }

static uint64_t now_ms(void) { return uv_hrtime() / 1000000; }

/* Destroy the multi and run the loop until its handles closed. */
static void finish_loop(uv_loop_t *loop, eng__http_multi *m) {
  eng__http_multi_destroy(m);
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(loop), 0);
}

static void test_get_ok_and_404(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  eng__http_multi *m = eng__http_multi_create(&loop);
  assert_non_null(m);
  req a, b;
  req_init(&a, "/ok");
  req_init(&b, "/404");
  assert_int_equal(eng__http_start(m, NULL, a.easy, on_done, &a, &a.h), ENG_OK);
  assert_int_equal(eng__http_start(m, NULL, b.easy, on_done, &b, &b.h), ENG_OK);
  /* the same easy twice is refused, and the refused call never calls back */
  assert_int_equal(eng__http_start(m, NULL, a.easy, on_done, &a, NULL),
                   ENG_ERR_EXISTS);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.rc, ENG_OK);
  assert_int_equal(a.status, 200);
  assert_string_equal(a.body, "hello");
  assert_string_equal(a.error, "");
  assert_int_equal(b.calls, 1);
  assert_int_equal(b.rc, ENG_OK);
  assert_int_equal(b.status, 404);
  /* the easy is reusable after cb: run it again */
  a.body_len = 0;
  a.body[0] = '\0';
  assert_int_equal(eng__http_start(m, NULL, a.easy, on_done, &a, &a.h), ENG_OK);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(a.calls, 2);
  assert_string_equal(a.body, "hello");
  finish_loop(&loop, m);
  req_free(&a);
  req_free(&b);
}

static void test_concurrent(void **state) {
  (void)state;
  enum { N = 20 };
  uv_loop_t loop;
  uv_loop_init(&loop);
  eng__http_multi *m = eng__http_multi_create(&loop);
  eng__http_group g = {NULL};
  static req rs[N];
  for (int i = 0; i < N; i++) {
    req_init(&rs[i], i % 5 == 4 ? "/big" : "/ok");
    assert_int_equal(
        eng__http_start(m, &g, rs[i].easy, on_done, &rs[i], &rs[i].h), ENG_OK);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  for (int i = 0; i < N; i++) {
    assert_int_equal(rs[i].calls, 1);
    assert_int_equal(rs[i].rc, ENG_OK);
    assert_int_equal(rs[i].status, 200);
    if (i % 5 == 4)
      assert_int_equal(rs[i].body_total, 1000000);
    else
      assert_string_equal(rs[i].body, "hello");
  }
  assert_null(g.head); /* all unlinked */
  finish_loop(&loop, m);
  for (int i = 0; i < N; i++) req_free(&rs[i]);
}

static void on_cancel_timer(uv_timer_t *t) {
  req *r = t->data;
  eng__http_cancel(r->h);
  uv_close((uv_handle_t *)t, NULL);
}

static void test_cancel_slow(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  eng__http_multi *m = eng__http_multi_create(&loop);
  req a;
  req_init(&a, "/slow");
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  t.data = &a;
  uint64_t t0 = now_ms();
  assert_int_equal(eng__http_start(m, NULL, a.easy, on_done, &a, &a.h), ENG_OK);
  uv_timer_start(&t, on_cancel_timer, 100, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.rc, ENG_ERR_CANCELLED);
  assert_true(a.t_done - t0 < 1000);
  assert_true(now_ms() - t0 < 1000); /* the loop did not wait for /slow */
  finish_loop(&loop, m);
  req_free(&a);
}

static void test_group_cancel(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  eng__http_multi *m = eng__http_multi_create(&loop);
  eng__http_group g = {NULL}, other = {NULL};
  req a, b, c;
  req_init(&a, "/slow");
  req_init(&b, "/slow");
  req_init(&c, "/ok");
  assert_int_equal(eng__http_start(m, &g, a.easy, on_done, &a, &a.h), ENG_OK);
  assert_int_equal(eng__http_start(m, &g, b.easy, on_done, &b, &b.h), ENG_OK);
  assert_int_equal(eng__http_start(m, &other, c.easy, on_done, &c, &c.h),
                   ENG_OK);
  eng__http_group_cancel(&g);
  assert_null(g.head);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.rc, ENG_ERR_CANCELLED);
  assert_int_equal(b.calls, 1);
  assert_int_equal(b.rc, ENG_ERR_CANCELLED);
  assert_int_equal(c.calls, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(c.calls, 1);
  assert_int_equal(c.rc, ENG_OK);
  finish_loop(&loop, m);
  req_free(&a);
  req_free(&b);
  req_free(&c);
}

static void test_connection_refused(void **state) {
  (void)state;
  /* a port nobody listens on: bind, read the port, close */
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof sa), 0);
  socklen_t sl = sizeof sa;
  getsockname(s, (struct sockaddr *)&sa, &sl);
  close(s);
  uv_loop_t loop;
  uv_loop_init(&loop);
  eng__http_multi *m = eng__http_multi_create(&loop);
  req a;
  req_init(&a, "/");
  snprintf(a.url, sizeof a.url, "http://127.0.0.1:%d/", ntohs(sa.sin_port));
  curl_easy_setopt(a.easy, CURLOPT_URL, a.url);
  assert_int_equal(eng__http_start(m, NULL, a.easy, on_done, &a, NULL), ENG_OK);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.rc, ENG_ERR_CONNECT);
  assert_int_equal(a.status, 0);
  assert_true(strlen(a.error) > 0);
  finish_loop(&loop, m);
  req_free(&a);
}

static void test_timeout(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  eng__http_multi *m = eng__http_multi_create(&loop);
  req a;
  req_init(&a, "/slow");
  curl_easy_setopt(a.easy, CURLOPT_TIMEOUT_MS, 200L);
  uint64_t t0 = now_ms();
  assert_int_equal(eng__http_start(m, NULL, a.easy, on_done, &a, NULL), ENG_OK);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.rc, ENG_ERR_TIMEOUT);
  assert_non_null(strstr(a.error, "imed out"));
  assert_true(a.t_done - t0 >= 150);
  assert_true(a.t_done - t0 < 2000);
  finish_loop(&loop, m);
  req_free(&a);
}

static void test_cancel_inside_write_callback(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  eng__http_multi *m = eng__http_multi_create(&loop);
  req a;
  req_init(&a, "/big");
  a.cancel_in_write = 1;
  assert_int_equal(eng__http_start(m, NULL, a.easy, on_done, &a, &a.h), ENG_OK);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.rc, ENG_ERR_CANCELLED);
  assert_int_equal(a.writes_after_cancel, 0);
  assert_true(a.body_total < 1000000);
  finish_loop(&loop, m);
  req_free(&a);
}

/* Pause in the write callback, unpause from a timer. */
static req *pause_req;
static void on_unpause(uv_timer_t *t) {
  (void)t;
  eng__http_unpause(pause_req->h);
}

static size_t on_write_pause(char *p, size_t sz, size_t n, void *ud) {
  req *r = ud;
  if (r->pause_once == 1) {
    r->pause_once = 2;
    uv_timer_start(r->unpause_timer, on_unpause, 50, 0);
    return CURL_WRITEFUNC_PAUSE;
  }
  r->pause_once = r->pause_once == 2 ? 3 : r->pause_once;
  r->body_total += sz * n;
  (void)p;
  return sz * n;
}

static void test_pause_unpause(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  eng__http_multi *m = eng__http_multi_create(&loop);
  req a;
  req_init(&a, "/big");
  uv_timer_t t;
  uv_timer_init(&loop, &t);
  a.unpause_timer = &t;
  a.pause_once = 1;
  pause_req = &a;
  curl_easy_setopt(a.easy, CURLOPT_WRITEFUNCTION, on_write_pause);
  assert_int_equal(eng__http_start(m, NULL, a.easy, on_done, &a, &a.h), ENG_OK);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.rc, ENG_OK);
  assert_int_equal(a.pause_once, 3);
  assert_int_equal(a.body_total, 1000000);
  uv_close((uv_handle_t *)&t, NULL);
  finish_loop(&loop, m);
  req_free(&a);
}

static void test_destroy_cancels(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  eng__http_multi *m = eng__http_multi_create(&loop);
  req a;
  req_init(&a, "/slow");
  assert_int_equal(eng__http_start(m, NULL, a.easy, on_done, &a, NULL), ENG_OK);
  /* let it connect and send the request */
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_run(&loop, UV_RUN_NOWAIT);
  uint64_t t0 = now_ms();
  eng__http_multi_destroy(m);
  assert_int_equal(a.calls, 1);
  assert_int_equal(a.rc, ENG_ERR_CANCELLED);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_true(now_ms() - t0 < 1000);
  assert_int_equal(uv_loop_close(&loop), 0);
  req_free(&a);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_ok_and_404),
      cmocka_unit_test(test_concurrent),
      cmocka_unit_test(test_cancel_slow),
      cmocka_unit_test(test_group_cancel),
      cmocka_unit_test(test_connection_refused),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_cancel_inside_write_callback),
      cmocka_unit_test(test_pause_unpause),
      cmocka_unit_test(test_destroy_cancels),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
