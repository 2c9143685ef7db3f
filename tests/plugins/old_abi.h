/* The declarations of older SDKs, as plugins built with them laid them
 * out: 1.0's eng_param and eng_action, 1.1's eng_param (range, values and
 * check, until 1.5 appended items), 1.1's eng_action (1.0's fields and the
 * counts), 1.3's (and describe), 1.4's (and creates) and the plugin
 * descriptor 1.0-1.2 shared. */
#ifndef TEST_OLD_ABI_H
#define TEST_OLD_ABI_H
#include <engine/plugin.h>

typedef struct param10 {
  const char *name;
  eng_type type;
  unsigned flags;
  const char *def;
  eng_target target;
  const char *choices;
  const char *doc;
} param10;

/* 1.1 to 1.4 */
typedef struct param11 {
  const char *name;
  eng_type type;
  unsigned flags;
  const char *def;
  eng_target target;
  const char *choices;
  const char *doc;
  double min, max;
  const char *const *values;
  eng_param_check_fn check;
} param11;

#define ACTION10_FIELDS(PARAM)                                               \
  const char *name;                                                          \
  const char *doc;                                                           \
  eng_side_effect side_effect;                                               \
  unsigned flags;                                                            \
  const PARAM *params;                                                       \
  const eng_output *outputs;                                                 \
  int (*start)(eng_call *call, const json_t *params);                        \
  eng_side_effect (*classify)(const json_t *params);

typedef struct action10 {
  ACTION10_FIELDS(param10)
} action10;

typedef struct action11 {
  ACTION10_FIELDS(param11)
  size_t n_params;
  size_t n_outputs;
} action11;

/* 1.2 and 1.3: 1.1's fields, then describe (1.4 appended `creates`). */
typedef struct action13 {
  ACTION10_FIELDS(param11)
  size_t n_params;
  size_t n_outputs;
  void (*describe)(const json_t *params, char *buf, size_t n);
} action13;

/* 1.4: 1.3's fields, then creates. */
typedef struct action14 {
  ACTION10_FIELDS(param11)
  size_t n_params;
  size_t n_outputs;
  void (*describe)(const json_t *params, char *buf, size_t n);
  eng_disposition creates;
} action14;

typedef struct plugin_old {
  uint32_t size;
  uint16_t abi_major, abi_minor;
  const char *name, *version, *doc;
  const void *actions;
  size_t n_actions;
  const eng_lua_func *lua_funcs;
  size_t n_lua_funcs;
  int (*init)(const eng_host *host);
  const eng_stream_scheme *schemes;
  size_t n_schemes;
} plugin_old;

#endif
