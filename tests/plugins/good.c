/* A well-formed test plugin: one action that echoes its parameter. */
#include <engine/plugin.h>

static const eng_host *host;

static int echo_start(eng_call *call, const json_t *params) {
  host->output(call, "value", json_deep_copy(json_object_get(params, "value")));
  host->done(call, ENG_OK);
  return ENG_OK;
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
static const eng_action actions[] = {
    {"echo", "echo a value", ENG_SIDE_READ_ONLY, ENG_A_REPEAT_SAFE, echo_params,
     echo_outputs, echo_start, NULL}};

static const eng_plugin desc = {ENG_PLUGIN_HEADER, .name = "testgood",
                                .version = "1", .doc = "test plugin",
                                .actions = actions, .n_actions = 1,
                                .init = init};
ENG_PLUGIN_DEFINE(desc)
