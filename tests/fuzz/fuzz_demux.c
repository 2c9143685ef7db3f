/* libFuzzer: the Docker API's framed stdout/stderr stream (docker_demux.c).
 * The first byte chooses how the input is cut into pieces; whatever the
 * cut, the payload emitted must be the same bytes, in the same order, on
 * the same streams, as when the input arrives whole, and a stream found
 * bad stays bad. */
#include <stdlib.h>
#include <string.h>

#include "docker_demux.h"

typedef struct sink {
  unsigned char *out;
  size_t len;
  unsigned long long streams; /* a running digest of the stream numbers */
} sink;

static void emit(void *ud, int stream, const char *b, size_t n) {
  sink *s = ud;
  if (stream < 0 || stream > 2 || n == 0) abort();
  memcpy(s->out + s->len, b, n);
  s->len += n;
  for (size_t i = 0; i < n; i++) s->streams = s->streams * 3 + (unsigned)stream;
}

static int feed(const unsigned char *data, size_t size, size_t piece,
                sink *s, dk_demux *d) {
  int rc = 0;
  for (size_t off = 0; off < size;) {
    size_t n = size - off < piece ? size - off : piece;
    int r = dk_demux_feed(d, (const char *)data + off, n, emit, s);
    if (rc == -1 && r != -1) abort(); /* bad stays bad */
    if (r == -1) rc = -1;
    off += n;
  }
  return rc;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (size < 1) return 0;
  size_t piece = (size_t)data[0] % 17 + 1;
  data++;
  size--;
  sink whole = {malloc(size + 1), 0, 0}, cut = {malloc(size + 1), 0, 0};
  dk_demux d1 = {0}, d2 = {0};
  int r1 = feed(data, size, size ? size : 1, &whole, &d1);
  int r2 = feed(data, size, piece, &cut, &d2);
  if (r1 != r2 || whole.len != cut.len || whole.streams != cut.streams ||
      memcmp(whole.out, cut.out, whole.len) != 0 || d1.left != d2.left ||
      d1.have != d2.have)
    abort();
  if (whole.len > size) abort();
  free(whole.out);
  free(cut.out);
  return 0;
}
