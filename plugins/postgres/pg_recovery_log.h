/*
 * pg_recovery_log.h - reading a server log's lines about the end of a
 * recovery (pg_recovery_log.c). Pure: plain C on jansson.
 */
#ifndef PG_RECOVERY_LOG_H
#define PG_RECOVERY_LOG_H

#include <jansson.h>
#include <stddef.h>

/* Longest line kept, and most lines kept (a log may be large and hostile). */
#define PG_RLOG_LINE_MAX 512
#define PG_RLOG_LINES_MAX 64

/* A new object: the rest of the newest line of each kind that appears
 * ("recovery_stop": "before commit of transaction 740, time ...",
 * "last_transaction", "consistent", "redo_done", "new_timeline", "paused"
 * ("" when the server paused), "fatal" (why the server stopped)), and "lines": the matching lines, in order,
 * printable ASCII only. text need not be NUL-terminated. */
json_t *pg_recovery_log_parse(const char *text, size_t len);

#endif /* PG_RECOVERY_LOG_H */
