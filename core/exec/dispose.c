/* dispose.c - a run's temporary resources, removed at its end.
 *
 * After `finally` and the run-end hooks, every resource the journal says
 * the run created as temporary (a drill database, a throwaway container)
 * and still present is removed by its undo action, newest first, one at a
 * time, each whatever the others did. Nothing kept is touched, nor anything
 * partial a failed step left (that is for `engine cleanup` and the next
 * holder of the run's lock, once the run is over). A removal that fails
 * leaves the resource a leftover and the run failed. Undo actions are only
 * ever plugin actions, held to the guards like any step's. */
#include "exec/exec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct eng__dispose {
  json_t *pending; /* resources to remove, oldest first: taken from the end */
  eng_call *call; /* the removal under way */
  json_t *current;
  bool cancelled;
  void (*then)(eng__run *r);
};

static void next(eng__run *r);

static void finish(eng__run *r) {
  eng__dispose *d = r->dispose;
  void (*then)(eng__run *) = d->then;
  json_decref(d->pending);
  free(d);
  r->dispose = NULL;
  then(r);
}

static const char *str(const json_t *o, const char *k) {
  const char *s = json_string_value(json_object_get(o, k));
  return s ? s : "?";
}

static void left_behind(eng__run *r, const json_t *res, const char *why) {
  r->temporary_left++;
  char *m = eng__asprintf(
      "temporary %s %s (step '%s') could not be removed: %s; it stays a "
      "leftover for 'engine cleanup %s' or the next run holding the same lock",
      str(res, "kind"), str(res, "id"), str(res, "step"), why, r->id);
  eng__run_log(r, NULL, ENG_LOG_ERROR, m);
  free(m);
}

static void removal_done(void *ud, int rc, json_t *outputs, const char *error) {
  eng__run *r = ud;
  eng__dispose *d = r->dispose;
  json_decref(outputs);
  if (d->call) eng__call_release(d->call);
  d->call = NULL;
  if (rc != ENG_OK)
    left_behind(r, d->current, error && *error ? error : eng_strerror(rc));
  json_decref(d->current);
  d->current = NULL;
  next(r);
}

/* Start removing `res`; false when it could not start (said). */
static bool start_removal(eng__run *r, json_t *res) {
  eng__dispose *d = r->dispose;
  json_t *undo = json_object_get(res, "undo");
  const char *uses = json_string_value(json_object_get(undo, "action"));
  const eng__action_ref *ref = uses && strchr(uses, '.') && uses[0] != '.'
                                   ? eng__registry_find(uses)
                                   : NULL;
  if (!ref || ref->builtin) {
    left_behind(r, res, uses ? "its undo action is not a loaded plugin's"
                             : "the journal gives no undo action");
    return false;
  }
  json_t *with = eng__tpl_deref(r->L, json_object_get(undo, "with"));
  char err[1024] = "";
  json_t *params = eng__action_params(r, ref, with ? with : json_null(), err,
                                      sizeof err);
  json_decref(with);
  if (!params) {
    left_behind(r, res, err);
    return false;
  }
  eng__con_note(r, "removing temporary %s %s (created by step '%s')",
                str(res, "kind"), str(res, "id"), str(res, "step"));
  d->current = json_incref(res);
  d->call = eng__call_new(r, NULL, ref->action, removal_done, r);
  char *start_err = NULL;
  int rc = eng__call_start_err(d->call, ref->action->start, params, &start_err);
  json_decref(params);
  if (rc == ENG_OK) return true;
  d->call = NULL; /* freed by the failed start */
  left_behind(r, res, start_err ? start_err : eng_strerror(rc));
  free(start_err);
  json_decref(d->current);
  d->current = NULL;
  return false;
}

static void next(eng__run *r) {
  eng__dispose *d = r->dispose;
  while (!d->cancelled && json_array_size(d->pending)) {
    size_t last = json_array_size(d->pending) - 1;
    json_t *res = json_incref(json_array_get(d->pending, last));
    json_array_remove(d->pending, last);
    bool started = start_removal(r, res);
    json_decref(res);
    if (started) return; /* continues in removal_done */
  }
  size_t i;
  json_t *res;
  json_array_foreach(d->pending, i, res) left_behind(r, res, "the grace ran out");
  finish(r);
}

void eng__dispose_start(eng__run *r, bool stopped,
                        void (*then)(eng__run *r)) {
  eng__dispose *d = eng__xcalloc(1, sizeof *d);
  d->then = then;
  d->cancelled = stopped;
  d->pending = json_array();
  r->dispose = d;
  json_t *all = r->dir && !r->cleanup_mode ? eng__journal_read(r->dir) : NULL;
  json_t *res = all ? eng__journal_resources(all) : NULL;
  size_t i;
  json_t *e;
  json_array_foreach(res, i, e) {
    if (json_is_true(json_object_get(e, "present")) &&
        json_is_true(json_object_get(e, "recorded")) &&
        !strcmp(str(e, "disposition"), "temporary"))
      json_array_append(d->pending, e);
  }
  json_decref(res);
  json_decref(all);
  next(r);
}

void eng__dispose_cancel(eng__run *r) {
  eng__dispose *d = r->dispose;
  if (!d) return;
  d->cancelled = true;
  if (d->call) eng__call_cancel(d->call, ENG_CANCEL_INTERRUPT);
}
