/* A test plugin for the host's guarantees over a call's life cycle:
 *   leak    starts a timer and a socket watch, then calls done() at once:
 *           neither may ever call back (they would touch `mark`);
 *   deaf ignores cancellation and never calls done(): the host must
 *           abandon it after the grace;
 *   polite  waits; on cancel writes the reason to `reason_file`, then
 *           calls done(). */
#include <engine/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const eng_host *host;

static void touch(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

typedef struct leak_job {
  char mark[512];
  int fds[2];
} leak_job;

/* Reached only if the host let a callback through after done(). */
static void leak_timer_cb(void *ud) { touch(((leak_job *)ud)->mark, "timer"); }
static void leak_watch_cb(void *ud, int events, int status) {
  (void)events;
  (void)status;
  touch(((leak_job *)ud)->mark, "watch");
}

/* The job stays allocated: a callback let through would still find it. */
static leak_job *leaked;

static int leak_start(eng_call *call, const json_t *p) {
  leak_job *j = calloc(1, sizeof *j);
  snprintf(j->mark, sizeof j->mark, "%s",
           json_string_value(json_object_get(p, "mark")));
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, j->fds) != 0) {
    free(j);
    host->fail(call, "socketpair failed");
    return ENG_ERR_IO;
  }
  /* readable at once: a watch that survived done() fires on the next turn */
  if (write(j->fds[1], "x", 1) != 1) {
    free(j);
    return ENG_ERR_IO;
  }
  host->timer_start(call, 50, leak_timer_cb, j);
  host->watch_start(call, j->fds[0], ENG_READABLE, leak_watch_cb, j);
  free(leaked);
  leaked = j;
  host->done(call, ENG_OK);
  return ENG_OK;
}

static void deaf_cancel(void *ud) { (void)ud; /* and does nothing */ }

static int deaf_start(eng_call *call, const json_t *p) {
  (void)p;
  host->on_cancel(call, deaf_cancel, NULL);
  return ENG_OK; /* never calls done() */
}

typedef struct polite_job {
  eng_call *call;
  char file[512];
} polite_job;

static void polite_cancel(void *ud) {
  polite_job *j = ud;
  int r = host->size >=
                  offsetof(eng_host, cancel_reason) + sizeof host->cancel_reason
              ? host->cancel_reason(j->call)
              : -1;
  touch(j->file, r == ENG_CANCEL_TIMEOUT     ? "timeout"
                 : r == ENG_CANCEL_INTERRUPT ? "interrupt"
                 : r == ENG_CANCEL_SHUTDOWN  ? "shutdown"
                                             : "none");
  eng_call *call = j->call;
  free(j);
  host->done(call, ENG_ERR_CANCELLED);
}

static int polite_start(eng_call *call, const json_t *p) {
  polite_job *j = calloc(1, sizeof *j);
  j->call = call;
  snprintf(j->file, sizeof j->file, "%s",
           json_string_value(json_object_get(p, "reason_file")));
  host->on_cancel(call, polite_cancel, j);
  return ENG_OK;
}

static int init(const eng_host *h) {
  host = h;
  return 0;
}

static void fini(void) __attribute__((destructor));
static void fini(void) {
  if (!leaked) return;
  close(leaked->fds[0]);
  close(leaked->fds[1]);
  free(leaked);
}

static const eng_param leak_params[] = {
    {.name = "mark",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_NONE,
     .doc = "a file written only by a callback that should never run"},
    {0}};
static const eng_param polite_params[] = {
    {.name = "reason_file",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_NONE,
     .doc = "where the cancel reason goes"},
    {0}};
static const eng_param no_params[] = {{0}};
static const eng_output no_outputs[] = {{NULL, 0, NULL}};

static const eng_action actions[] = {
    {.name = "leak",
     .doc = "leave a timer and a watch running at done()",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = leak_params,
     .outputs = no_outputs,
     .start = leak_start},
    {.name = "deaf",
     .doc = "ignore cancellation",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = no_params,
     .outputs = no_outputs,
     .start = deaf_start},
    {.name = "polite",
     .doc = "wait; honour cancellation",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = polite_params,
     .outputs = no_outputs,
     .start = polite_start}};

static const eng_plugin desc = {ENG_PLUGIN_HEADER, .name = "testlife",
                                .version = "1", .doc = "life-cycle test plugin",
                                .actions = actions, .n_actions = 3,
                                .init = init};
ENG_PLUGIN_DEFINE(desc)
