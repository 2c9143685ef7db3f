/* tcpcheck - an example plugin, built outside the engine's tree from the
 * installed SDK only.
 *
 *   tcpcheck.probe      one non-blocking TCP connect to HOST:PORT, with its
 *                       own deadline; read-only. A refused connection fails
 *                       with a message that says what to check.
 *   tcpcheck.wait_port  retries the connect every `interval` until the port
 *                       accepts; a step `timeout:` (or Ctrl-C) cancels it.
 *
 * It shows: typed declarations (a range, values, a check), the call's life
 * cycle with <engine/op.h>, a socket watch, a timer, cancellation and its
 * reason. */
#include <engine/mem.h>
#include <engine/op.h>
#include <engine/plugin.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const eng_host *host;

typedef struct probe {
  eng_op op; /* first */
  char host_name[256];
  char port[16];
  int64_t interval_ms, deadline_ms;
  int retry;   /* wait_port: try again on failure */
  int fd;
  eng_watch *watch;
  int attempts;
  char last_error[256];
} probe;

static void probe_close(probe *p) {
  if (p->watch) host->watch_stop(p->watch);
  p->watch = NULL;
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
}

static void probe_destroy(eng_op *op) {
  probe *p = (probe *)(void *)op;
  probe_close(p);
  free(p);
}

static void probe_on_finish(eng_op *op) { probe_close((probe *)(void *)op); }

static void probe_on_cancel(eng_op *op) {
  probe *p = (probe *)(void *)op;
  int why = host->cancel_reason(op->call);
  eng_op_fail(op, why == ENG_CANCEL_TIMEOUT ? ENG_ERR_TIMEOUT : ENG_ERR_CANCELLED,
              "%s:%s did not accept a connection (%d attempt%s, last: %s); "
              "%s", p->host_name, p->port, p->attempts,
              p->attempts == 1 ? "" : "s",
              p->last_error[0] ? p->last_error : "still connecting",
              why == ENG_CANCEL_TIMEOUT ? "gave up at the step's timeout"
                                        : "cancelled");
}

static void attempt(probe *p);

static void retry_later(eng_op *op) { attempt((probe *)(void *)op); }

/* One attempt ended without a connection. */
static void attempt_failed(probe *p, const char *why) {
  probe_close(p);
  snprintf(p->last_error, sizeof p->last_error, "%s", why);
  if (p->retry) {
    if (eng_op_timer(&p->op, (uint64_t)p->interval_ms, retry_later) != ENG_OK)
      eng_op_fail(&p->op, ENG_ERR_FAILED, "cannot start a timer");
    return;
  }
  eng_op_fail(&p->op, ENG_ERR_CONNECT,
              "%s:%s: %s (is the service running and listening on that "
              "port? is a firewall in the way?)",
              p->host_name, p->port, why);
}

static void connected_cb(void *ud, int events, int status) {
  probe *p = ud;
  (void)events;
  int err = 0;
  socklen_t len = sizeof err;
  /* the result of a non-blocking connect is the socket's pending error */
  if (getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (status != 0 && err == 0) err = EIO;
  if (err != 0) {
    attempt_failed(p, strerror(err));
    return;
  }
  probe_close(p);
  host->output(p->op.call, "attempts", json_integer(p->attempts));
  host->output(p->op.call, "address", json_sprintf("%s:%s", p->host_name, p->port));
  eng_op_finish(&p->op, ENG_OK);
}

static void attempt(probe *p) {
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_socktype = SOCK_STREAM;
  p->attempts++;
  /* numeric addresses only: name resolution would block the loop */
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  int g = getaddrinfo(p->host_name, p->port, &hints, &ai);
  if (g != 0) {
    eng_op_fail(&p->op, ENG_ERR_INVALID, "host '%s': %s (give an IP address)",
                p->host_name, gai_strerror(g));
    return;
  }
  p->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (p->fd < 0) {
    freeaddrinfo(ai);
    attempt_failed(p, strerror(errno));
    return;
  }
  int rc = connect(p->fd, ai->ai_addr, ai->ai_addrlen);
  freeaddrinfo(ai);
  if (rc != 0 && errno != EINPROGRESS) {
    attempt_failed(p, strerror(errno));
    return;
  }
  p->watch = host->watch_start(p->op.call, p->fd, ENG_WRITABLE, connected_cb, p);
  if (!p->watch) eng_op_fail(&p->op, ENG_ERR_FAILED, "cannot watch the socket");
}

static void deadline_cb(eng_op *op) {
  probe *p = (probe *)(void *)op;
  eng_op_fail(op, ENG_ERR_TIMEOUT, "%s:%s did not answer within %lldms",
              p->host_name, p->port, (long long)p->deadline_ms);
}

static int start(eng_call *call, const json_t *params, int retry) {
  probe *p = eng_xcalloc(1, sizeof *p);
  eng_op_init(&p->op, host, call, probe_destroy);
  p->op.on_finish = probe_on_finish;
  p->op.on_cancel = probe_on_cancel;
  p->fd = -1;
  p->retry = retry;
  snprintf(p->host_name, sizeof p->host_name, "%s",
           json_string_value(json_object_get(params, "host")));
  snprintf(p->port, sizeof p->port, "%lld",
           (long long)json_integer_value(json_object_get(params, "port")));
  p->interval_ms = json_integer_value(json_object_get(params, "interval"));
  p->deadline_ms = json_integer_value(json_object_get(params, "deadline"));
  /* probe: its own deadline on the op's timer (wait_port uses the timer
   * between attempts and relies on the step's timeout) */
  if (!retry && eng_op_timer(&p->op, (uint64_t)p->deadline_ms, deadline_cb) != ENG_OK) {
    eng_op_fail(&p->op, ENG_ERR_FAILED, "cannot start a timer");
    return ENG_OK;
  }
  attempt(p);
  return ENG_OK;
}

static int probe_start(eng_call *call, const json_t *params) {
  return start(call, params, 0);
}

static int wait_start(eng_call *call, const json_t *params) {
  return start(call, params, 1);
}

/* `host` must be an IP address: name resolution would block the loop. */
static int check_address(const json_t *v, char *err, size_t errlen) {
  unsigned char buf[16];
  const char *s = json_string_value(v);
  if (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1)
    return 0;
  snprintf(err, errlen, "host '%s' is not an IP address (127.0.0.1 or ::1 "
                        "form; names are not resolved)", s);
  return 1;
}

static int init(const eng_host *h) {
  host = h;
  return 0;
}

#define P_HOST                                                             \
  {.name = "host", .type = ENG_T_STRING, .def = "\"127.0.0.1\"",           \
   .check = check_address, .doc = "IP address to connect to"}
#define P_PORT                                                             \
  {.name = "port", .type = ENG_T_INT, .flags = ENG_P_REQUIRED | ENG_P_MIN | \
   ENG_P_MAX, .min = 1, .max = 65535, .doc = "TCP port"}

static const eng_param probe_params[] = {
    P_HOST, P_PORT,
    {.name = "deadline", .type = ENG_T_DURATION, .def = "\"2s\"",
     .flags = ENG_P_MIN | ENG_P_MAX, .min = 1, .max = 60000,
     .doc = "how long one connect may take"}};
static const eng_param wait_params[] = {
    P_HOST, P_PORT,
    {.name = "interval", .type = ENG_T_DURATION, .def = "\"200ms\"",
     .flags = ENG_P_MIN, .min = 10, .doc = "pause between attempts"}};
static const eng_output outputs[] = {
    {"address", ENG_T_STRING, "HOST:PORT that accepted"},
    {"attempts", ENG_T_INT, "connects tried"}};

static const eng_action actions[] = {
    {.name = "probe", .doc = "one TCP connect with a deadline",
     .side_effect = ENG_SIDE_READ_ONLY, .flags = ENG_A_REPEAT_SAFE,
     .params = probe_params, .n_params = ENG_COUNT(probe_params),
     .outputs = outputs, .n_outputs = ENG_COUNT(outputs),
     .start = probe_start},
    {.name = "wait_port", .doc = "wait until a TCP port accepts connections",
     .side_effect = ENG_SIDE_READ_ONLY, .flags = ENG_A_REPEAT_SAFE,
     .params = wait_params, .n_params = ENG_COUNT(wait_params),
     .outputs = outputs, .n_outputs = ENG_COUNT(outputs),
     .start = wait_start}};

static const eng_plugin desc = {ENG_PLUGIN_HEADER, .name = "tcpcheck",
                                .version = "1.0",
                                .doc = "TCP reachability checks (example)",
                                .actions = actions,
                                .n_actions = ENG_COUNT(actions),
                                .init = init};
ENG_PLUGIN_DEFINE(desc)
