/* diag.c - compiler-style diagnostics: "file:line:col: error: message". */
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

void eng__diag_error(eng__diags *d, const char *file, int line, int col,
                     const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_v(d, "error", "\033[1;31m", file, line, col, fmt, ap);
  va_end(ap);
  d->errors++;
}

void eng__diag_warn(eng__diags *d, const char *file, int line, int col,
                    const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_v(d, "warning", "\033[1;33m", file, line, col, fmt, ap);
  va_end(ap);
  d->warnings++;
}

void eng__diags_free(eng__diags *d) { eng__buf_free(&d->text); }
