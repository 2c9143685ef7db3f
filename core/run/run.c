/* run.c - the run context: its id and directory, and the sinks every layer
 * writes events into (console, JSON log, audit log, journal). The layers
 * below the scheduler (call, policy, builtins, streams) report here; they
 * never call the scheduler. */
#include "run/run.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *const eng__side_names[ENG_SIDE_LAST + 1] = {
    "read_only", "creates", "destructive", "disruptive", "external",
    "maintenance"};

void eng__run_new_id(char out[40], int64_t now_ms) {
  time_t t = (time_t)(now_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  unsigned rnd = 0;
  FILE *f = fopen("/dev/urandom", "rb");
  if (!f || fread(&rnd, sizeof rnd, 1, f) != 1)
    rnd = (unsigned)getpid() ^ (unsigned)now_ms;
  if (f) fclose(f);
  snprintf(out, 40, "%04d%02d%02d-%02d%02d%02d-%04x",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec, rnd & 0xffff);
}

void eng__run_init(eng__run *r, eng__runbook *rb, eng__lua *L,
                   const eng__run_opts *o, const char *reuse_id) {
  memset(r, 0, sizeof *r);
  r->rb = rb;
  r->L = L;
  r->opts = o;
  r->loop = uv_default_loop();
  r->redact = eng__redactor_create();
  r->journal.redact = r->redact;
  r->started_ms = eng__now_ms();
  r->guard_log = json_array();
  r->st = eng__xcalloc(rb->n_steps + 1, sizeof *r->st);
  if (reuse_id) snprintf(r->id, sizeof r->id, "%s", reuse_id);
  else if (o->run_id) snprintf(r->id, sizeof r->id, "%s", o->run_id);
  else eng__run_new_id(r->id, r->started_ms);
}

void eng__policy_free(eng__policy *p) {
  json_decref(p->lists);
  json_decref(p->broken);
  p->lists = p->broken = NULL;
}

void eng__step_state_free(eng__step_state *st) {
  json_decref(st->outputs);
  json_decref(st->params);
  free(st->error);
  free(st->check_error);
  free(st->summary);
  free(st->warning);
  eng__fan *f = st->fan;
  for (size_t k = 0; f && k < f->n; k++) {
    free(f->items[k].id);
    free(f->items[k].label);
    free(f->items[k].title);
    json_decref(f->items[k].each);
    eng__step_state_free(&f->items[k].st);
  }
  if (f) free(f->items);
  free(f);
  memset(st, 0, sizeof *st);
}

/* An item's label: the map key, else its string value when every value is
 * a distinct short plain string, else its index. */
static bool plain_label(const char *v) {
  size_t n = strlen(v);
  if (!n || n > 64) return false;
  for (const char *p = v; *p; p++)
    if ((unsigned char)*p < 0x21 || *p == '[' || *p == ']' || *p == 0x7f)
      return false;
  return true;
}

static bool labels_from_values(const json_t *list) {
  json_t *seen = json_object();
  bool ok = true;
  size_t k;
  json_t *v;
  json_array_foreach(list, k, v) {
    if (!json_is_string(v) || !plain_label(json_string_value(v)) ||
        json_object_get(seen, json_string_value(v))) {
      ok = false;
      break;
    }
    json_object_set_new(seen, json_string_value(v), json_true());
  }
  json_decref(seen);
  return ok;
}

eng__fan *eng__fan_new(const eng__step *s, const json_t *list) {
  eng__fan *f = eng__xcalloc(1, sizeof *f);
  f->n = json_is_array(list) ? json_array_size(list) : json_object_size(list);
  f->items = eng__xcalloc(f->n + 1, sizeof *f->items);
  bool by_value = json_is_array(list) && labels_from_values(list);
  size_t k = 0;
  if (json_is_array(list)) {
    json_t *v;
    json_array_foreach(list, k, v) {
      eng__item *it = &f->items[k];
      it->label = by_value ? eng__xstrdup(json_string_value(v))
                           : eng__asprintf("%zu", k);
      it->each = json_pack("{s:O, s:I}", "value", v, "index", (json_int_t)k);
    }
  } else {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)list, key, v) {
      eng__item *it = &f->items[k];
      it->label = plain_label(key) ? eng__xstrdup(key) : eng__asprintf("%zu", k);
      it->each = json_pack("{s:O, s:I, s:s}", "value", v, "index",
                           (json_int_t)k, "key", key);
      k++;
    }
  }
  for (k = 0; k < f->n; k++)
    f->items[k].id = eng__asprintf("%s[%s]", s->id, f->items[k].label);
  return f;
}

eng__step_state *eng__run_find_state(eng__run *r, const char *id) {
  eng__step *s = eng__runbook_step(r->rb, id);
  if (!s) return NULL;
  eng__step_state *st = &r->st[s->idx];
  if (!strchr(id, '[')) return st;
  for (size_t k = 0; st->fan && k < st->fan->n; k++)
    if (!strcmp(st->fan->items[k].id, id)) return &st->fan->items[k].st;
  return NULL;
}

void eng__run_free(eng__run *r) {
  for (size_t i = 0; i < r->rb->n_steps; i++) eng__step_state_free(&r->st[i]);
  free(r->st);
  free(r->end_hooks);
  json_decref(r->params);
  json_decref(r->guard_log);
  json_decref(r->prev_steps);
  json_decref(r->unfinished);
  json_decref(r->refused_before_start);
  eng__policy_free(&r->policy);
  free(r->last_refusal);
  free(r->rto_why);
  json_decref(r->regressions);
  free(r->rpo_why);
  eng__audit_close(r->audit);
  eng__journal_close(&r->journal);
  free(r->dir);
  free(r->stop_reason);
  eng__redactor_destroy(r->redact);
}

int eng__run_open_dir(eng__run *r, eng__diags *d) {
  const char *state = r->opts->state_dir;
  char *abs = NULL;
  if (state[0] == '/') abs = eng__xstrdup(state);
  else {
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
      eng__diag_error(d, NULL, 0, 0, "cannot read the current directory");
      return -1;
    }
    abs = eng__asprintf("%s/%s", cwd, state);
  }
  r->dir = eng__asprintf("%s/runs/%s", abs, r->id);
  free(abs);
  if (r->opts->resume) { /* never a new run under a mistyped id */
    char *j = eng__asprintf("%s/journal", r->dir);
    struct stat sb;
    int missing = stat(j, &sb) != 0;
    free(j);
    if (missing) {
      eng__diag_error(d, NULL, 0, 0,
                      "--resume %s: no such run in %s (see 'engine runs'; "
                      "wrong run id or --state-dir?)",
                      r->id, r->opts->state_dir);
      return -1;
    }
  }
  if (eng__mkdir_p(r->dir, 0700) != 0) {
    eng__diag_error(d, NULL, 0, 0,
                    "cannot create the run directory %s: %s (check "
                    "--state-dir / ENGINE_STATE_DIR)",
                    r->dir, strerror(errno));
    return -1;
  }
  if (eng__journal_open(&r->journal, r->dir, r->redact) != 0) {
    eng__diag_error(d, NULL, 0, 0, "cannot open the journal %s/journal: %s",
                    r->dir, strerror(errno));
    return -1;
  }
  return 0;
}

int eng__run_open_audit(eng__run *r) {
  char *ap = eng__asprintf("%s/audit.jsonl", r->dir);
  r->audit = eng__audit_open(ap, r->id);
  free(ap);
  return r->audit ? 0 : -1;
}

void eng__run_audit(eng__run *r, const char *type, json_t *fields) {
  /* once the disk is full, the room left is kept for the records that say
   * how the run went (steps, resources, run.end), not for log lines */
  if (!r->audit || (r->audit_broken && !strcmp(type, "step.log"))) {
    json_decref(fields);
    return;
  }
  if (eng__audit_event(r->audit, type, fields) != 0 && !r->audit_broken) {
    r->audit_broken = true;
    fprintf(stderr, "engine: cannot write the audit log: %s; the run will "
                    "end as failed (log lines are no longer recorded)\n",
            strerror(errno));
  }
}

void eng__run_boundary(eng__run *r) {
  eng__audit_sync(r->audit);
  if (r->opts->on_boundary) r->opts->on_boundary(r->opts->boundary_ud);
}

void eng__run_log(eng__run *r, const char *step, eng_log_level lvl,
                  const char *msg) {
  static const char *const lv[] = {"debug", "info", "warn", "error"};
  if ((unsigned)lvl > ENG_LOG_ERROR) lvl = ENG_LOG_ERROR;
  char *red = eng__redact(r->redact, msg);
  eng__con_log(r, step, lvl, red);
  eng__run_audit(r, "step.log", json_pack("{s:s?, s:s, s:s}", "step", step,
                                          "level", lv[lvl], "message", red));
  free(red);
}

/* A warning longer than this is cut: it is one line on the console. */
#define ENG__WARNING_MAX 2000

void eng__step_warn(eng__run *r, eng__step_state *st, const char *msg) {
  char *red = eng__redact(r->redact, msg && *msg ? msg : "warning");
  char *w = st->warning ? eng__asprintf("%s; %s", st->warning, red) : red;
  if (w != red) free(red);
  if (strlen(w) > ENG__WARNING_MAX) { /* cut between UTF-8 characters */
    size_t k = ENG__WARNING_MAX - 3;
    while (k > 0 && ((unsigned char)w[k] & 0xC0) == 0x80) k--;
    strcpy(w + k, "...");
  }
  free(st->warning);
  st->warning = w;
}

void eng__run_progress(eng__run *r, const char *step, int64_t done,
                       int64_t total) {
  eng__con_progress(r, step, done, total);
}

void eng__run_secret(eng__run *r, const char *value, const char *ref) {
  if (!value) return;
  eng__redactor_add(r->redact, value);
  if (ref) eng__journal_add_ref(&r->journal, value, ref);
}

void eng__run_check_journal(eng__run *r) {
  if (!r->journal.err || r->journal_broken) return;
  r->journal_broken = true;
  fprintf(stderr, "engine: cannot write the journal in %s: %s; what the run "
                  "creates cannot be recorded for cleanup or resume, so "
                  "nothing more is created and the run will end as failed\n",
          r->dir, strerror(r->journal.err));
}

int64_t eng__run_journal(eng__run *r, const char *event, const char *step,
                         const char *kind, const char *id,
                         const char *disposition, const json_t *detail) {
  int64_t seq = eng__journal_resource(&r->journal, event, step, kind, id,
                                      disposition, detail);
  eng__run_check_journal(r);
  if (!strcmp(event, "intent") || !strcmp(event, "removed")) {
    json_t *a = json_pack("{s:s?, s:s?, s:s?, s:s?}", "step", step, "kind",
                          kind, "id", id, "disposition", disposition);
    eng__redact_json(r->redact, a);
    eng__run_audit(r, !strcmp(event, "intent") ? "resource.create"
                                               : "resource.delete", a);
    /* the state store learns of the resource at once */
    if (r->opts->on_boundary) r->opts->on_boundary(r->opts->boundary_ud);
  }
  return seq;
}

int eng__run_journal_owned(eng__run *r, const char *kind, const char *id) {
  return r->dir ? eng__journal_owned(r->dir, kind, id) : 0;
}

int eng__run_add_end_hook(eng__run *r, int (*cb)(eng_call *, void *),
                          void *ud) {
  r->end_hooks = eng__xrealloc(r->end_hooks,
                               (r->n_end_hooks + 1) * sizeof *r->end_hooks);
  r->end_hooks[r->n_end_hooks].cb = cb;
  r->end_hooks[r->n_end_hooks].ud = ud;
  r->n_end_hooks++;
  return ENG_OK;
}
