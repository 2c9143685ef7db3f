/* A well-formed test plugin: one action that echoes its parameter. */
#include <engine/plugin.h>

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
  json_t *wopts = json_pack("{s:s?}", "compress", json_string_value(json_object_get(p, "compress")));
  int rc = host->stream_open_write(call, json_string_value(json_object_get(p, "to")), wopts, &j->out);
  json_decref(wopts);
  if (rc != ENG_OK) {
    free(j);
    return rc;
  }
  json_t *ropts = json_pack("{s:b, s:s?}", "decompress", json_is_true(json_object_get(p, "decompress")),
                            "expect_sha256", json_string_value(json_object_get(p, "expect_sha256")));
  rc = host->stream_open_read(call, json_string_value(json_object_get(p, "from")), ropts,
                              copy_data, copy_read_end, j, &j->in);
  json_decref(ropts);
  if (rc != ENG_OK) {
    host->stream_abort(j->out);
    free(j);
  }
  return rc;
}

static int init(const eng_host *h) {
  host = h;
  return 0;
}

static const eng_param echo_params[] = {
    {"value", ENG_T_ANY, ENG_P_REQUIRED, NULL, ENG_TARGET_NONE, NULL, "value to echo"},
    {NULL, 0, 0, NULL, 0, NULL, NULL}};
static const eng_output echo_outputs[] = {{"value", ENG_T_ANY, "the value"},
                                          {NULL, 0, NULL}};
static const eng_param copy_params[] = {
    {"from", ENG_T_STRING, ENG_P_REQUIRED, NULL, ENG_TARGET_FILE, NULL, "source stream URL"},
    {"to", ENG_T_STRING, ENG_P_REQUIRED, NULL, ENG_TARGET_FILE, NULL, "target stream URL"},
    {"compress", ENG_T_STRING, 0, NULL, ENG_TARGET_NONE, NULL, "zstd[:LEVEL]"},
    {"decompress", ENG_T_BOOL, 0, "false", ENG_TARGET_NONE, NULL, "undo zstd on read"},
    {"expect_sha256", ENG_T_STRING, 0, NULL, ENG_TARGET_NONE, NULL, "checksum of the source"},
    {NULL, 0, 0, NULL, 0, NULL, NULL}};
static const eng_output copy_outputs[] = {{"written", ENG_T_MAP, "stream info"},
                                          {"read", ENG_T_MAP, "stream info"},
                                          {NULL, 0, NULL}};
static const eng_action actions[] = {
    {"echo", "echo a value", ENG_SIDE_READ_ONLY, ENG_A_REPEAT_SAFE, echo_params,
     echo_outputs, echo_start, NULL},
    {"copy", "copy a stream", ENG_SIDE_CREATES, 0, copy_params, copy_outputs,
     copy_start, NULL}};

static const eng_plugin desc = {ENG_PLUGIN_HEADER, .name = "testgood",
                                .version = "1", .doc = "test plugin",
                                .actions = actions, .n_actions = 2,
                                .init = init};
ENG_PLUGIN_DEFINE(desc)
