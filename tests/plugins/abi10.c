/* A plugin as a 1.0 SDK built it: eng_param and eng_action without the
 * fields 1.1 appended (declared here as 1.0 had them), abi_minor 0. The
 * loader must read its arrays with the 1.0 element sizes. */
#include "old_abi.h"

static const eng_host *host;

static int first_start(eng_call *call, const json_t *p) {
  host->output(call, "mode", json_deep_copy(json_object_get(p, "mode")));
  host->output(call, "count", json_deep_copy(json_object_get(p, "count")));
  host->done(call, ENG_OK);
  return ENG_OK;
}

static int init(const eng_host *h) {
  host = h;
  return 0;
}

static const param10 first_params[] = {
    {"mode", ENG_T_STRING, 0, "\"fast\"", ENG_TARGET_NONE, "fast|slow", "mode"},
    {"count", ENG_T_INT, 0, "3", ENG_TARGET_NONE, NULL, "count"},
    {NULL, 0, 0, NULL, 0, NULL, NULL}};
static const param10 second_params[] = {
    {"name", ENG_T_STRING, ENG_P_REQUIRED, NULL, ENG_TARGET_NONE, NULL, "n"},
    {NULL, 0, 0, NULL, 0, NULL, NULL}};
static const eng_output outputs[] = {{"mode", ENG_T_STRING, "mode"},
                                     {"count", ENG_T_INT, "count"},
                                     {NULL, 0, NULL}};
static const action10 actions[] = {
    {"first", "echo mode and count", ENG_SIDE_READ_ONLY, ENG_A_REPEAT_SAFE,
     first_params, outputs, first_start, NULL},
    {"second", "the second action", ENG_SIDE_READ_ONLY, 0, second_params,
     outputs, first_start, NULL}};

static const plugin_old desc = {sizeof(plugin_old), 1, 0, "testold", "1",
                              "a 1.0 plugin", actions, 2, NULL, 0, init,
                              NULL, 0};

ENG_EXPORT const eng_plugin *eng_plugin_entry(void);
ENG_EXPORT const eng_plugin *eng_plugin_entry(void) {
  return (const eng_plugin *)(const void *)&desc;
}
