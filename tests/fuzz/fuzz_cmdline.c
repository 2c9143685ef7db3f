/* libFuzzer: command lines through the guards' analyser. */
#include <stdlib.h>
#include <string.h>

#include "shell/shell.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  char *s = eng__xstrndup((const char *)data, size);
  static const char *const env[] = {"PGDATABASE=shop", "ENGINE_CWD=/srv", NULL};
  eng__cmd_analysis a;
  eng__cmd_analyse(s, env, &a);
  eng__cmd_analysis_free(&a);
  free(s);
  return 0;
}
