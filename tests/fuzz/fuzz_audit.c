/* libFuzzer: an audit log as `engine audit verify` and `audit show` read
 * it (written to a scratch file: both take a path). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "record/record.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static char path[64];
  static FILE *sink;
  if (!sink) {
    snprintf(path, sizeof path, "/tmp/engine-fuzz-audit-%d.jsonl", (int)getpid());
    sink = fopen("/dev/null", "w");
  }
  FILE *f = fopen(path, "wb");
  if (!f) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  eng__audit_verify(path, NULL, sink);
  eng__audit_show(path, sink);
  return 0;
}
