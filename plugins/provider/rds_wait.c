/*
 * rds_wait.c - when to poll again while RDS works, and when to stop.
 *
 * AWS's own waiters poll every 30 s for up to 30 minutes; a large restore
 * takes longer, so here the step's timeout (or wait_timeout) decides, and
 * the first polls come sooner: 3 s, growing by half each poll up to 30 s,
 * so a small restore is seen as soon as it is ready without polling a
 * long one often. Statuses that an instance or snapshot does not leave by
 * itself end the wait at once. The clock is passed in (unit tests drive
 * it); nothing here does I/O.
 */
#include "provider_int.h"

#include <stdio.h>
#include <string.h>

/* Statuses the RDS documentation lists as needing someone to act. */
static const char *const instance_failed[] = {
    "failed", "incompatible-restore", "incompatible-parameters",
    "incompatible-network", "incompatible-option-group",
    "incompatible-credentials", "inaccessible-encryption-credentials",
    "inaccessible-encryption-credentials-recoverable", "restore-error",
    "storage-full", "deleting", "deleted", "stopped", "stopping", NULL};
static const char *const snapshot_failed[] = {"failed", "error", "deleting",
                                              "deleted", NULL};

int rds_status_failed(rds_wait_kind kind, const char *status) {
  if (!status || kind == RDS_WAIT_GONE) return 0;
  const char *const *l =
      kind == RDS_WAIT_SNAPSHOT ? snapshot_failed : instance_failed;
  for (size_t i = 0; l[i]; i++)
    if (!strcmp(l[i], status)) return 1;
  return 0;
}

void rds_waiter_init(rds_waiter *w, rds_wait_kind kind, int64_t now_ms,
                     int64_t budget_ms, uint64_t first_ms) {
  memset(w, 0, sizeof *w);
  w->kind = kind;
  w->start_ms = now_ms;
  w->deadline_ms = budget_ms > 0 ? now_ms + budget_ms : 0;
  w->first_ms = first_ms ? first_ms : RDS_POLL_FIRST_MS;
  w->max_ms = RDS_POLL_MAX_MS > w->first_ms ? RDS_POLL_MAX_MS : w->first_ms;
  w->delay_ms = w->first_ms;
}

rds_verdict rds_waiter_see(rds_waiter *w, const char *status, int64_t now_ms,
                           uint64_t *delay_ms) {
  w->polls++;
  snprintf(w->last, sizeof w->last, "%s", status ? status : "(gone)");
  if (w->kind == RDS_WAIT_GONE) {
    if (!status) return RDS_DONE;
  } else if (status && !strcmp(status, "available")) {
    return RDS_DONE;
  }
  if (rds_status_failed(w->kind, status)) return RDS_FAILED;
  if (w->kind != RDS_WAIT_GONE && !status) return RDS_FAILED; /* vanished */
  if (w->deadline_ms && now_ms >= w->deadline_ms) return RDS_EXPIRED;
  uint64_t d = w->delay_ms;
  if (w->deadline_ms && (int64_t)d > w->deadline_ms - now_ms)
    d = (uint64_t)(w->deadline_ms - now_ms);
  *delay_ms = d;
  uint64_t next = w->delay_ms + w->delay_ms / 2;
  w->delay_ms = next > w->max_ms ? w->max_ms : next;
  return RDS_AGAIN;
}
