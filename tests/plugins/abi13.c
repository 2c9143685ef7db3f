/* A plugin as the 1.3 SDK built it: eng_action without `creates` (the
 * field 1.4 appended), abi_minor 3. The loader must step through its
 * actions with the 1.3 size, and what they create is kept. */
#include "old_abi.h"

#include <stdio.h>

static const eng_host *host;

static int start(eng_call *call, const json_t *p) {
  (void)p;
  host->done(call, ENG_OK);
  return ENG_OK;
}

static int init(const eng_host *h) {
  host = h;
  return 0;
}

static void describe(const json_t *params, char *buf, size_t n) {
  (void)params;
  snprintf(buf, n, "makes a thing");
}

static const param11 params[] = {
    {.name = "n", .type = ENG_T_INT, .def = "5", .doc = "a number"}};
static const action13 actions[] = {
    {"one", "the first", ENG_SIDE_CREATES, 0, params, NULL, start, NULL, 1, 0,
     describe},
    {"two", "the second", ENG_SIDE_CREATES, 0, params, NULL, start, NULL, 1, 0,
     describe}};

/* 1.3's descriptor: 1.0's fields, then the state stores */
typedef struct plugin13 {
  plugin_old base;
  const eng_store_scheme *stores;
  size_t n_stores;
} plugin13;

static const plugin13 desc = {{sizeof(plugin13), 1, 3, "testthirteen", "1",
                               "a 1.3 plugin", actions, 2, NULL, 0, init, NULL,
                               0},
                              NULL, 0};

ENG_EXPORT const eng_plugin *eng_plugin_entry(void);
ENG_EXPORT const eng_plugin *eng_plugin_entry(void) {
  return (const eng_plugin *)(const void *)&desc;
}
