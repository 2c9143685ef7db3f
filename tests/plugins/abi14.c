/* A plugin as the 1.4 SDK built it: eng_param without `items` (the field
 * 1.5 appended), abi_minor 4. The loader must step through its params with
 * the 1.4 size, and the elements of its list reach it as written. */
#include "old_abi.h"

static const eng_host *host;

static int start(eng_call *call, const json_t *p) {
  host->output(call, "names", json_deep_copy(json_object_get(p, "names")));
  host->output(call, "port", json_deep_copy(json_object_get(p, "port")));
  host->done(call, ENG_OK);
  return ENG_OK;
}

static int init(const eng_host *h) {
  host = h;
  return 0;
}

static const param11 params[] = {
    {.name = "names", .type = ENG_T_LIST, .doc = "a list, its elements as written"},
    {.name = "port", .type = ENG_T_INT, .def = "5432", .flags = ENG_P_MIN,
     .min = 1, .doc = "a port"},
    {.name = "mode", .type = ENG_T_STRING, .def = "\"fast\"", .doc = "a mode"}};
static const eng_output outputs[] = {{"names", ENG_T_LIST, "the names"},
                                     {"port", ENG_T_INT, "the port"}};
static const action14 actions[] = {
    {"one", "the first", ENG_SIDE_CREATES, 0, params, outputs, start, NULL, 3,
     2, NULL, ENG_TEMPORARY},
    {"two", "the second", ENG_SIDE_READ_ONLY, 0, params, outputs, start, NULL,
     3, 2, NULL, ENG_KEPT}};

/* 1.3's and 1.4's descriptor: 1.0's fields, then the state stores */
typedef struct plugin14 {
  plugin_old base;
  const eng_store_scheme *stores;
  size_t n_stores;
} plugin14;

static const plugin14 desc = {{sizeof(plugin14), 1, 4, "testfourteen", "1",
                               "a 1.4 plugin", actions, 2, NULL, 0, init, NULL,
                               0},
                              NULL, 0};

ENG_EXPORT const eng_plugin *eng_plugin_entry(void);
ENG_EXPORT const eng_plugin *eng_plugin_entry(void) {
  return (const eng_plugin *)(const void *)&desc;
}
