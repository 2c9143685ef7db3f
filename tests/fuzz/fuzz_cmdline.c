/* libFuzzer: command lines through the shell folder: the guards' analyser,
 * the lexer's guard reading (forbidden_commands), and the input quoted as
 * one word, which the shell reading must give back unchanged. */
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
  eng__cmd_lexed lx;
  eng__cmd_lex(s, ENG_CMD_GUARD, NULL, &lx);
  eng__cmd_lexed_free(&lx);
  eng__buf q = {0};
  eng__cmd_quote(&q, s);
  eng__cmd_lex(q.data, ENG_CMD_SHELL, NULL, &lx);
  if (lx.n != 1 || lx.cmd[0].n != 1 || strcmp(lx.cmd[0].w[0].s, s) ||
      lx.unverified)
    abort(); /* quoting and the lexer disagree */
  eng__cmd_lexed_free(&lx);
  eng__buf_free(&q);
  free(s);
  return 0;
}
