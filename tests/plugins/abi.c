/* A test plugin built against an ABI this engine must refuse. */
#include <engine/plugin.h>

static int nop_start(eng_call *call, const json_t *params) {
  (void)call;
  (void)params;
  return ENG_ERR_FAILED;
}

static const eng_action actions[] = {{.name = "nop",
                                      .doc = "nothing",
                                      .side_effect = ENG_SIDE_READ_ONLY,
                                      .start = nop_start}};

static const eng_plugin desc = {.size = sizeof(eng_plugin),
#ifdef TEST_PLUGIN_ABI_MAJOR
                                .abi_major = ENG_ABI_MAJOR + 1,
                                .abi_minor = 0,
#else
                                 .abi_major = ENG_ABI_MAJOR,
                                 .abi_minor = ENG_ABI_MINOR + 1,
#endif
                                .name = TEST_PLUGIN_NAME,
                                .version = "1",
                                .actions = actions,
                                .n_actions = 1};
ENG_PLUGIN_DEFINE(desc)
