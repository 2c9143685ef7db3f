/* libFuzzer: migration text through the lint (core/sql/lint.c):
 * PostgreSQL's parser, the statements loaded one at a time from its JSON,
 * the rules, the suppression comments before each statement. Whatever the
 * text, every finding lies inside it (line and column within the text),
 * has a rule and a message, counts add up, and the same text gives the
 * same findings twice. */
#include <stdlib.h>
#include <string.h>

#include "sql/lint.h"

static void check(const eng__lint *l, const char *s) {
  int lines = 1;
  for (const char *p = s; *p; p++) lines += *p == '\n';
  if (l->errors + l->warnings + l->suppressed != l->n) abort();
  for (size_t i = 0; i < l->n; i++) {
    const eng__lint_finding *f = &l->v[i];
    if (!f->rule || !f->message || f->line < 1 || f->line > lines || f->col < 1)
      abort(); /* a finding outside the text */
    char *t = eng__lint_finding_text(f);
    json_t *j = eng__lint_finding_json(f);
    if (!t || !j) abort();
    free(t);
    json_decref(j);
  }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size > 16384) return 0; /* the parser's cost, not ours */
  char *s = eng__xstrndup((const char *)data, size);
  eng__lint_opts o = {.pg_major = size % 2 ? 10 : 0,
                      .txn = (eng__lint_txn)(size % 3)};
  eng__lint a = {0}, b = {0};
  eng__lint_text(&a, "f.sql", "m", s, &o);
  eng__lint_text(&b, "f.sql", "m", s, &o);
  check(&a, s);
  if (a.n != b.n) abort(); /* not deterministic */
  for (size_t i = 0; i < a.n; i++)
    if (a.v[i].rule != b.v[i].rule || a.v[i].line != b.v[i].line ||
        a.v[i].col != b.v[i].col || strcmp(a.v[i].message, b.v[i].message))
      abort();
  eng__lint_free(&a);
  eng__lint_free(&b);
  free(s);
  return 0;
}
