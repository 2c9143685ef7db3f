/* diag.c - compiler-style diagnostics: "file:line:col: error: message".
 * Like a compiler, only the first ENG__DIAG_SHOWN errors (and warnings) of
 * an input are printed; the rest are counted and said in one line at its
 * end (eng__diags_end). */
#include "base/base.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static void diag_v(eng__diags *d, const char *kind, const char *color,
                   const char *file, int line, int col, const char *fmt,
                   va_list ap) {
  eng__buf b = {0};
  if (file && line > 0)
    eng__buf_addf(&b, "%s:%d:%d: ", file, line, col > 0 ? col : 1);
  else if (file)
    eng__buf_addf(&b, "%s: ", file);
  if (d->color) eng__buf_addf(&b, "%s%s:\033[0m ", color, kind);
  else eng__buf_addf(&b, "%s: ", kind);
  eng__buf_vaddf(&b, fmt, ap);
  eng__buf_adds(&b, "\n");
  if (!d->quiet) fputs(b.data, stderr);
  eng__buf_add(&d->text, b.data, b.len);
  eng__buf_free(&b);
}

/* Past the limit: counted, with the file the note at the end names. */
static bool held_back(eng__diags *d, size_t *shown, size_t *hidden,
                      const char *file) {
  if (*shown < ENG__DIAG_SHOWN) {
    (*shown)++;
    return false;
  }
  if (!d->hidden_file && file) d->hidden_file = eng__xstrdup(file);
  (*hidden)++;
  return true;
}

void eng__diag_error(eng__diags *d, const char *file, int line, int col,
                     const char *fmt, ...) {
  d->errors++;
  if (held_back(d, &d->shown_errors, &d->hidden_errors, file)) return;
  va_list ap;
  va_start(ap, fmt);
  diag_v(d, "error", "\033[1;31m", file, line, col, fmt, ap);
  va_end(ap);
}

void eng__diag_warn(eng__diags *d, const char *file, int line, int col,
                    const char *fmt, ...) {
  d->warnings++;
  if (held_back(d, &d->shown_warnings, &d->hidden_warnings, file)) return;
  va_list ap;
  va_start(ap, fmt);
  diag_v(d, "warning", "\033[1;33m", file, line, col, fmt, ap);
  va_end(ap);
}

bool eng__diags_hidden(const eng__diags *d) {
  return d->shown_errors >= ENG__DIAG_SHOWN;
}

static void say_hidden(eng__diags *d) {
  if (!d->hidden_errors && !d->hidden_warnings) return;
  eng__buf b = {0};
  if (d->hidden_file) eng__buf_addf(&b, "%s: ", d->hidden_file);
  eng__buf_adds(&b, d->color ? "\033[1;36mnote:\033[0m " : "note: ");
  if (d->hidden_errors)
    eng__buf_addf(&b, "%zu more error%s", d->hidden_errors,
                  d->hidden_errors == 1 ? "" : "s");
  if (d->hidden_warnings)
    eng__buf_addf(&b, "%s%zu more warning%s", d->hidden_errors ? " and " : "",
                  d->hidden_warnings, d->hidden_warnings == 1 ? "" : "s");
  eng__buf_addf(&b, " not shown (only the first %d of each are): fix those "
                    "and check again\n",
                ENG__DIAG_SHOWN);
  if (!d->quiet) fputs(b.data, stderr);
  eng__buf_add(&d->text, b.data, b.len);
  eng__buf_free(&b);
}

void eng__diags_end(eng__diags *d) {
  say_hidden(d);
  d->shown_errors = d->shown_warnings = 0;
  d->hidden_errors = d->hidden_warnings = 0;
  free(d->hidden_file);
  d->hidden_file = NULL;
}

void eng__diags_free(eng__diags *d) {
  eng__diags_end(d);
  eng__buf_free(&d->text);
}
