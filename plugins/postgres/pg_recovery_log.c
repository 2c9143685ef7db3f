/*
 * pg_recovery_log.c - what a server log says about the end of a recovery.
 *
 * pg_last_xact_replay_timestamp() is lost when the server restarts; the
 * log's lines are the durable record of where recovery stopped:
 *   LOG:  recovery stopping before commit of transaction 740, time 2026-...
 *   LOG:  recovery has paused / pausing at the end of recovery
 *   LOG:  last completed transaction was at log time 2026-12-07 11:49:50+00
 *   LOG:  consistent recovery state reached at 0/3000100
 *   LOG:  redo done at 0/5016A88 ...
 *   LOG:  selected new timeline ID: 2
 *   FATAL:  recovery ended before configured recovery target was reached
 * Pure: no I/O, no host calls; the fuzz harness links it alone.
 */
#include "pg_recovery_log.h"

#include <engine/mem.h>
#include <string.h>

/* The keys and the text each one's line carries. */
static const struct {
  const char *key;
  const char *mark;
} pg_rlog_marks[] = {
    {"recovery_stop", "recovery stopping "},
    {"last_transaction", "last completed transaction was at log time "},
    {"consistent", "consistent recovery state reached at "},
    {"redo_done", "redo done at "},
    {"new_timeline", "selected new timeline ID: "},
    {"paused", "recovery has paused"},
    {"paused", "pausing at the end of recovery"},
    {"fatal", "FATAL:  "},
};

/* The rest of the line after mark, without control characters, at most
 * PG_RLOG_LINE_MAX bytes (a log is untrusted text). */
static json_t *pg_rlog_rest(const char *from, const char *end) {
  size_t n = 0;
  while (from + n < end && from[n] != '\n' && n < PG_RLOG_LINE_MAX) n++;
  char *s = eng_xstrndup(from, n);
  for (char *p = s; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f || (unsigned char)*p >= 0x80)
      *p = '?';
  json_t *v = json_string(s);
  free(s);
  return v;
}

json_t *pg_recovery_log_parse(const char *text, size_t len) {
  json_t *out = json_object();
  json_t *lines = json_array();
  const char *end = text + len;
  for (const char *line = text; line && line < end;) {
    const char *nl = memchr(line, '\n', (size_t)(end - line));
    const char *stop = nl ? nl : end;
    for (size_t i = 0; i < sizeof pg_rlog_marks / sizeof pg_rlog_marks[0]; i++) {
      size_t mlen = strlen(pg_rlog_marks[i].mark);
      const char *hit = NULL;
      for (const char *p = line; p + mlen <= stop && !hit; p++)
        if (!memcmp(p, pg_rlog_marks[i].mark, mlen)) hit = p;
      if (!hit) continue;
      /* the newest occurrence wins: a later recovery overrides */
      json_object_set_new(out, pg_rlog_marks[i].key,
                          pg_rlog_rest(hit + mlen, stop));
      if (json_array_size(lines) < PG_RLOG_LINES_MAX)
        json_array_append_new(lines, pg_rlog_rest(line, stop));
      break;
    }
    line = nl ? nl + 1 : NULL;
  }
  json_object_set_new(out, "lines", lines);
  return out;
}
