/*
 * docker_demux.h - the 8-byte framed stdout/stderr stream of the Docker
 * API's attach and exec, demultiplexed. Plain C (no libcurl, no engine
 * services), so the fuzz harness builds it on its own.
 */
#ifndef DOCKER_DEMUX_H
#define DOCKER_DEMUX_H

#include <stdbool.h>
#include <stddef.h>

/* Demultiplexer of the 8-byte framed stream (stream 1 stdout, 2 stderr). */
typedef struct dk_demux {
  unsigned char head[8];
  size_t have;     /* header bytes held */
  size_t left;     /* payload bytes left in the current frame */
  int stream;
  bool bad;        /* not a framed stream */
} dk_demux;

/* Feed bytes; emit(ud, stream, buf, len) for each payload piece. Returns
 * -1 when the bytes are not a framed stream; from then on every call
 * returns -1 and emits nothing. */
int dk_demux_feed(dk_demux *d, const char *buf, size_t len,
                  void (*emit)(void *ud, int stream, const char *b, size_t n),
                  void *ud);

#endif
