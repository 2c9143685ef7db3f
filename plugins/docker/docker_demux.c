/*
 * docker_demux.c - the framed stream of attach and exec: each frame is an
 * 8-byte header (stream: 0 stdin, 1 stdout, 2 stderr; three zero bytes;
 * payload length, big-endian 32 bits) and its payload. Bytes arrive in
 * pieces of any size, so a header may be split across calls.
 */
#include "docker_demux.h"

#include <string.h>

int dk_demux_feed(dk_demux *d, const char *buf, size_t len,
                  void (*emit)(void *ud, int stream, const char *b, size_t n),
                  void *ud) {
  if (d->bad) return -1;
  while (len > 0) {
    if (d->left == 0) {
      size_t take = 8 - d->have < len ? 8 - d->have : len;
      memcpy(d->head + d->have, buf, take);
      d->have += take;
      buf += take;
      len -= take;
      if (d->have < 8) return 0;
      d->have = 0;
      if (d->head[0] > 2 || d->head[1] || d->head[2] || d->head[3]) {
        d->bad = true;
        return -1;
      }
      d->stream = d->head[0];
      d->left = ((size_t)d->head[4] << 24) | ((size_t)d->head[5] << 16) |
                ((size_t)d->head[6] << 8) | d->head[7];
      continue;
    }
    size_t take = d->left < len ? d->left : len;
    emit(ud, d->stream, buf, take);
    d->left -= take;
    buf += take;
    len -= take;
  }
  return 0;
}

