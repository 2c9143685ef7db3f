/* A plugin as the 1.1 SDK built it: eng_action without `describe` (the
 * field 1.2 appended), abi_minor 1. The loader must step through its
 * actions with the 1.1 size and see no describe. */
#include "old_abi.h"

static const eng_host *host;

static int start(eng_call *call, const json_t *p) {
  host->output(call, "n", json_deep_copy(json_object_get(p, "n")));
  host->done(call, ENG_OK);
  return ENG_OK;
}

static int init(const eng_host *h) {
  host = h;
  return 0;
}

static const param11 params[] = {
    {.name = "n", .type = ENG_T_INT, .def = "7", .doc = "a number"}};
static const eng_output outputs[] = {{"n", ENG_T_INT, "the number"}};
static const action11 actions[] = {
    {"one", "the first", ENG_SIDE_READ_ONLY, 0, params, outputs, start, NULL,
     1, 1},
    {"two", "the second", ENG_SIDE_READ_ONLY, 0, params, outputs, start, NULL,
     1, 1}};

static const plugin_old desc = {sizeof(plugin_old), 1, 1, "testeleven", "1",
                              "a 1.1 plugin", actions, 2, NULL, 0, init,
                              NULL, 0};

ENG_EXPORT const eng_plugin *eng_plugin_entry(void);
ENG_EXPORT const eng_plugin *eng_plugin_entry(void) {
  return (const eng_plugin *)(const void *)&desc;
}
