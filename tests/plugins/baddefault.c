/* A plugin whose int parameter has a string default: the loader must
 * refuse it, naming plugin, action and parameter. */
#include <engine/plugin.h>

static int nop_start(eng_call *call, const json_t *p) {
  (void)call;
  (void)p;
  return ENG_ERR_FAILED;
}

static const eng_param params[] = {
    {.name = "jobs", .type = ENG_T_INT, .def = "\"six\"", .doc = "workers"}};
static const eng_action actions[] = {
    {.name = "nop", .doc = "nothing", .side_effect = ENG_SIDE_READ_ONLY,
     .params = params, .n_params = ENG_COUNT(params), .start = nop_start}};
static const eng_plugin desc = {ENG_PLUGIN_HEADER, .name = "testbaddef",
                                .version = "1", .actions = actions,
                                .n_actions = 1};
ENG_PLUGIN_DEFINE(desc)
