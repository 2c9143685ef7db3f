/* libFuzzer: text through the SQL classifier (core/sql/): PostgreSQL's
 * parser (libpg_query), the walk of its JSON tree, the function tables.
 * Whatever the text, the classification holds together: inside a READ
 * ONLY transaction it never does more than without one, the database it
 * runs on never gets more than the whole text does, statements lie inside
 * the text, and the same text classifies the same way twice. */
#include <stdlib.h>
#include <string.h>

#include "sql/sql.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size > 16384) return 0; /* the parser's cost, not ours */
  char *s = eng__xstrndup((const char *)data, size);
  size_t len = strlen(s);
  eng__sql_info a, b;
  eng__sql_classify(s, &a);
  eng__sql_classify(s, &b);
  if (a.cls_ro > a.cls || a.here > a.cls || a.here_ro > a.cls_ro ||
      a.n_no_txn > a.n_stmts || !a.what || !a.what_ro || !a.here_what ||
      (a.n_stmts && !a.unverified && a.cls > ENG__SQL_READ && !a.what[0]))
    abort(); /* the classes contradict each other */
  for (size_t i = 0; i < a.n_stmts; i++)
    if (a.stmts[i].off > len || a.stmts[i].len > len - a.stmts[i].off ||
        a.stmts[i].cls > a.cls)
      abort(); /* a statement outside the text */
  for (size_t i = 0; i < a.n_dbs; i++)
    if (!a.dbs[i].name[0] || a.dbs[i].cls > a.cls || a.dbs[i].cls_ro > a.cls_ro)
      abort();
  if (a.cls != b.cls || a.cls_ro != b.cls_ro || a.n_stmts != b.n_stmts ||
      a.n_dbs != b.n_dbs || !a.unverified != !b.unverified)
    abort(); /* not deterministic */
  json_t *j = eng__sql_info_json(&a);
  if (!j) abort();
  json_decref(j);
  eng__sql_info_free(&a);
  eng__sql_info_free(&b);
  free(s);
  return 0;
}
