/* A well-formed test plugin: one action that echoes its parameter. */
#include <engine/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const eng_host *host;

static int echo_start(eng_call *call, const json_t *params) {
  host->output(call, "value", json_deep_copy(json_object_get(params, "value")));
  host->done(call, ENG_OK);
  return ENG_OK;
}

/* copy: read one stream and write another through the host's streams. */
typedef struct copy_job {
  eng_call *call;
  eng_stream *in, *out;
  char *pending;
  size_t pending_len;
  int in_done;
  json_t *in_info;
} copy_job;

static void copy_finished(void *ud, int rc, json_t *info) {
  copy_job *j = ud;
  if (rc == ENG_OK) {
    host->output(j->call, "written", info);
    host->output(j->call, "read", j->in_info);
  } else {
    json_decref(info);
    json_decref(j->in_info);
  }
  host->done(j->call, rc);
  free(j);
}

static void copy_wrote(void *ud, int rc) {
  copy_job *j = ud;
  free(j->pending);
  j->pending = NULL;
  if (rc != ENG_OK) return;
  if (!j->in_done) host->stream_pause(j->in, 0);
  else if (host->stream_finish(j->out, copy_finished, j) != ENG_OK) {
    host->done(j->call, ENG_ERR_IO);
  }
}

static void copy_data(void *ud, const char *buf, size_t len) {
  copy_job *j = ud;
  /* one write at a time: pause the reader until it was taken */
  j->pending = malloc(len);
  memcpy(j->pending, buf, len);
  host->stream_pause(j->in, 1);
  if (host->stream_write(j->out, j->pending, len, copy_wrote, j) != ENG_OK)
    host->stream_pause(j->in, 1);
}

static void copy_read_end(void *ud, int rc, json_t *info) {
  copy_job *j = ud;
  j->in_done = 1;
  j->in_info = info;
  if (rc != ENG_OK) {
    host->stream_abort(j->out);
    json_decref(info);
    host->done(j->call, rc);
    free(j->pending);
    free(j);
    return;
  }
  if (!j->pending && host->stream_finish(j->out, copy_finished, j) != ENG_OK)
    host->done(j->call, ENG_ERR_IO);
}

static int copy_start(eng_call *call, const json_t *p) {
  copy_job *j = calloc(1, sizeof *j);
  j->call = call;
  json_t *wopts = json_pack("{s:s?}", "compress",
                            json_string_value(json_object_get(p, "compress")));
  int rc = host->stream_open_write(
      call, json_string_value(json_object_get(p, "to")), wopts, &j->out);
  json_decref(wopts);
  if (rc != ENG_OK) {
    free(j);
    return rc;
  }
  json_t *ropts =
      json_pack("{s:b, s:s?}", "decompress",
                json_is_true(json_object_get(p, "decompress")), "expect_sha256",
                json_string_value(json_object_get(p, "expect_sha256")));
  rc = host->stream_open_read(call,
                              json_string_value(json_object_get(p, "from")),
                              ropts, copy_data, copy_read_end, j, &j->in);
  json_decref(ropts);
  if (rc != ENG_OK) {
    host->stream_abort(j->out);
    free(j);
  }
  return rc;
}

/* checked: declarations of ABI 1.1 (values, range, a check) */
static int even(const json_t *v, char *err, size_t n) {
  if (json_integer_value(v) % 2 == 0) return 0;
  snprintf(err, n, "level must be even (2, 4, ...), got %lld",
           (long long)json_integer_value(v));
  return 1;
}

static int checked_start(eng_call *call, const json_t *params) {
  host->output(call, "value", json_deep_copy(params));
  host->done(call, ENG_OK);
  return ENG_OK;
}

/* targets: a database and a list of mounts, destroyed (touch) or, with
 * a class that depends on `destroy`, read (touchif); nothing is done */
static int touch_start(eng_call *call, const json_t *params) {
  (void)params;
  host->done(call, ENG_OK);
  return ENG_OK;
}

static eng_side_effect touch_classify(const json_t *params) {
  return json_is_true(json_object_get(params, "destroy")) ? ENG_SIDE_DESTRUCTIVE
                                                           : ENG_SIDE_READ_ONLY;
}

static int init(const eng_host *h) {
  host = h;
  return 0;
}

static const eng_param echo_params[] = {{.name = "value",
                                         .type = ENG_T_ANY,
                                         .flags = ENG_P_REQUIRED,
                                         .target = ENG_TARGET_NONE,
                                         .doc = "value to echo"},
                                        {0}};
static const eng_output echo_outputs[] = {{"value", ENG_T_ANY, "the value"},
                                          {NULL, 0, NULL}};
static const eng_param copy_params[] = {{.name = "from",
                                         .type = ENG_T_STRING,
                                         .flags = ENG_P_REQUIRED,
                                         .target = ENG_TARGET_FILE,
                                         .doc = "source stream URL"},
                                        {.name = "to",
                                         .type = ENG_T_STRING,
                                         .flags = ENG_P_REQUIRED,
                                         .target = ENG_TARGET_FILE,
                                         .doc = "target stream URL"},
                                        {.name = "compress",
                                         .type = ENG_T_STRING,
                                         .target = ENG_TARGET_NONE,
                                         .doc = "zstd[:LEVEL]"},
                                        {.name = "decompress",
                                         .type = ENG_T_BOOL,
                                         .def = "false",
                                         .target = ENG_TARGET_NONE,
                                         .doc = "undo zstd on read"},
                                        {.name = "expect_sha256",
                                         .type = ENG_T_STRING,
                                         .target = ENG_TARGET_NONE,
                                         .doc = "checksum of the source"},
                                        {0}};
static const eng_output copy_outputs[] = {{"written", ENG_T_MAP, "stream info"},
                                          {"read", ENG_T_MAP, "stream info"},
                                          {NULL, 0, NULL}};
static const char *const modes[] = {"fast", "safe", NULL};
static const eng_param checked_params[] = {
    {.name = "level", .type = ENG_T_INT, .def = "2", .check = even,
     .doc = "an even level"},
    {.name = "mode", .type = ENG_T_STRING, .def = "\"safe\"", .values = modes,
     .doc = "fast or safe"},
    {.name = "port", .type = ENG_T_INT, .flags = ENG_P_MIN | ENG_P_MAX,
     .min = 1, .max = 65535, .doc = "a TCP port"},
    {.name = "wait", .type = ENG_T_DURATION, .flags = ENG_P_MAX,
     .max = 60000, .doc = "at most a minute"},
    /* 1.5: lists whose elements are typed */
    {.name = "ports", .type = ENG_T_LIST, .items = ENG_ITEMS_INT,
     .flags = ENG_P_MIN | ENG_P_MAX, .min = 1, .max = 65535,
     .doc = "TCP ports"},
    {.name = "modes", .type = ENG_T_LIST, .items = ENG_ITEMS_STRING,
     .values = modes, .doc = "fast or safe, each"},
    {.name = "argv", .type = ENG_T_ANY, .items = ENG_ITEMS_STRING,
     .doc = "a string, or a list of strings"}};
static const eng_output checked_outputs[] = {
    {"value", ENG_T_MAP, "the parameters as the action saw them"}};
static const eng_param touch_params[] = {
    {.name = "database", .type = ENG_T_STRING, .target = ENG_TARGET_DATABASE,
     .doc = "a database"},
    {.name = "mounts", .type = ENG_T_LIST, .target = ENG_TARGET_VOLUME,
     .doc = "NAME:/path[:rw] mounts"},
    {.name = "note", .type = ENG_T_STRING, .doc = "anything"},
    {.name = "destroy", .type = ENG_T_BOOL, .def = "false", .doc = "touchif: destructive when true"}};
static const eng_action actions[] = {{.name = "echo",
                                      .doc = "echo a value",
                                      .side_effect = ENG_SIDE_READ_ONLY,
                                      .flags = ENG_A_REPEAT_SAFE,
                                      .params = echo_params,
                                      .outputs = echo_outputs,
                                      .start = echo_start},
                                     {.name = "copy",
                                      .doc = "copy a stream",
                                      .side_effect = ENG_SIDE_CREATES,
                                      .params = copy_params,
                                      .outputs = copy_outputs,
                                      .start = copy_start},
    {.name = "checked",
     .doc = "parameters with values, a range and a check",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = checked_params,
     .n_params = ENG_COUNT(checked_params),
     .outputs = checked_outputs,
     .n_outputs = ENG_COUNT(checked_outputs),
     .start = checked_start},
    {.name = "touch",
     .doc = "destroys its targets (known before the run or not)",
     .side_effect = ENG_SIDE_DESTRUCTIVE,
     .params = touch_params,
     .n_params = ENG_COUNT(touch_params),
     .start = touch_start},
    {.name = "touchif",
     .doc = "reads its targets, destroys them with destroy: true",
     .side_effect = ENG_SIDE_READ_ONLY,
     .params = touch_params,
     .n_params = ENG_COUNT(touch_params),
     .start = touch_start,
     .classify = touch_classify}};

static const eng_plugin desc = {ENG_PLUGIN_HEADER, .name = "testgood",
                                .version = "1", .doc = "test plugin",
                                .actions = actions, .n_actions = ENG_COUNT(actions),
                                .init = init};
ENG_PLUGIN_DEFINE(desc)
