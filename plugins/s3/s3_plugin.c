/*
 * s3_plugin.c - the s3 plugin's descriptor: actions (s3_actions.c) and the
 * "s3" stream scheme (s3://BUCKET/KEY for any `file` parameter) and the
 * "s3" state store (--state-dir s3://BUCKET/PREFIX).
 */
#include "s3_int.h"

static int s3_init(const eng_host *host) {
  if (host->abi_major != ENG_ABI_MAJOR ||
      host->size < offsetof(eng_host, at_run_end) + sizeof host->at_run_end)
    return -1;
  if (!s3_curl_ok()) return -1;
  s3_host = host;
  return 0;
}

static const eng_plugin s3_plugin = {
    ENG_PLUGIN_HEADER,
    .name = "s3",
    .version = "0.1.0",
    .doc = "S3 and S3-compatible object stores: SigV4, multipart uploads, "
           "SHA-256 checked downloads; serves s3:// stream URLs and "
           "state stores (--state-dir s3://BUCKET/PREFIX)",
    .actions = s3_actions,
    .n_actions = S3_N_ACTIONS,
    .lua_funcs = NULL,
    .n_lua_funcs = 0,
    .init = s3_init,
    .schemes = &s3_scheme,
    .n_schemes = 1,
    .stores = &s3_store_scheme,
    .n_stores = 1,
};

ENG_PLUGIN_DEFINE(s3_plugin)
