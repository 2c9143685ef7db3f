/* audit.h - the audit log (audit.c). */
#ifndef ENGINE_AUDIT_H
#define ENGINE_AUDIT_H

#include <stdio.h>
#include "engine_int.h"

typedef struct eng__audit eng__audit;

/* Open (append; continues the chain of an existing log). NULL on error. */
eng__audit *eng__audit_open(const char *path, const char *run_id);
/* Append a record of `type` with `fields` (stolen; may be NULL). Returns
 * -1 (errno set) when the record could not be written whole. */
int eng__audit_event(eng__audit *a, const char *type, json_t *fields);
void eng__audit_sync(eng__audit *a);
/* From now on, syncs are issued on the loop's thread pool. */
void eng__audit_use_loop(eng__audit *a, uv_loop_t *loop);
void eng__audit_close(eng__audit *a);
/* SHA-256 of the last line written: the chain head. */
const char *eng__audit_head(const eng__audit *a);
/* 0 intact, 1 tampered (first bad line printed to out), 2 unreadable. */
int eng__audit_verify(const char *path, FILE *out);
int eng__audit_show(const char *path, FILE *out);

#endif
