/* journal.c - what a run created and how its steps ended.
 *
 * One JSON record per line in RUN_DIR/journal, synced after each write:
 *   intent / confirm / removed   resources (database, object, sandbox...)
 *   step.start / step.end        step results, for --resume
 * Secret values never reach the journal: a string holding one is stored
 * with a reference instead (${env.DATABASE_URL}, ${params.source_url}),
 * resolved again from the environment on resume and cleanup. */
#include "record/record.h"

/* How much of a damaged record is shown. */
#define DAMAGED_EXCERPT 200

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int eng__journal_open(eng__journal *j, const char *dir,
                      const eng__redactor *redact) {
  char *path = eng__asprintf("%s/journal", dir);
  j->f = fopen(path, "ae");
  free(path);
  j->redact = redact;
  return j->f ? 0 : -1;
}

void eng__journal_close(eng__journal *j) {
  if (j->f) fclose(j->f);
  j->f = NULL;
  json_decref(j->refs);
  j->refs = NULL;
}

void eng__journal_add_ref(eng__journal *j, const char *value, const char *ref) {
  if (!value || strlen(value) < 3) return;
  if (!j->refs) j->refs = json_object();
  json_object_set_new(j->refs, value, json_string(ref));
}

/* Replace secret values inside strings by their references. */
static void to_refs(const eng__journal *j, json_t *v) {
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    const char *key;
    json_t *ref;
    bool any = strstr(s, "${") != NULL; /* literal ${ must stay literal */
    json_object_foreach(j->refs, key, ref) if (strstr(s, key)) any = true;
    if (!any) return;
    /* escape literal ${ first, then substitute */
    eng__buf b = {0};
    for (const char *p = s; *p; p++) {
      if (p[0] == '$' && p[1] == '{') eng__buf_adds(&b, "$");
      eng__buf_add(&b, p, 1);
    }
    char *cur = eng__buf_steal(&b);
    json_object_foreach(j->refs, key, ref) {
      const char *rs = json_string_value(ref);
      eng__buf o = {0};
      size_t kl = strlen(key);
      for (const char *p = cur; *p;) {
        const char *h = strstr(p, key);
        if (!h) {
          eng__buf_adds(&o, p);
          break;
        }
        eng__buf_add(&o, p, (size_t)(h - p));
        eng__buf_adds(&o, rs);
        p = h + kl;
      }
      free(cur);
      cur = eng__buf_steal(&o);
    }
    json_string_set(v, cur);
    free(cur);
    return;
  }
  if (json_is_array(v)) {
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) to_refs(j, e);
  } else if (json_is_object(v)) {
    const char *k;
    json_t *e;
    json_object_foreach(v, k, e) to_refs(j, e);
  }
}

json_t *eng__journal_refs(const eng__journal *j, const json_t *v) {
  json_t *copy = json_deep_copy(v);
  to_refs(j, copy);
  if (j->redact) eng__redact_json(j->redact, copy); /* anything else secret */
  return copy;
}

static int64_t write_rec(eng__journal *j, json_t *rec, bool sync) {
  if (!j->f) {
    json_decref(rec);
    return -1;
  }
  char t[40];
  json_object_set_new(rec, "seq", json_integer(++j->seq));
  json_object_set_new(rec, "time", json_string(eng__fmt_time(eng__now_ms(), t, sizeof t)));
  char *line = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(rec);
  size_t n = strlen(line);
  line[n] = '\n'; /* json_dumps' NUL becomes the newline; n + 1 bytes */
  int fd = fileno(j->f);
  off_t end = lseek(fd, 0, SEEK_END);
  ssize_t w = write(fd, line, n + 1);
  free(line);
  /* a resource intent is on disk before the resource exists */
  if (w == (ssize_t)(n + 1) && (!sync || fdatasync(fd) == 0)) return j->seq;
  int e = w < 0 ? errno : ENOSPC;
  if (w > 0 && end >= 0) {
    int t = ftruncate(fd, end); /* no half record for resume or cleanup */
    (void)t;
  }
  j->seq--;
  if (!j->err) j->err = e;
  errno = e;
  return -1;
}

int64_t eng__journal_resource(eng__journal *j, const char *event,
                              const char *step, const char *kind,
                              const char *id, const char *disposition,
                              const json_t *detail) {
  json_t *rec = json_pack("{s:s, s:s?, s:s?, s:s?, s:s?}", "event", event,
                          "step", step, "kind", kind, "id", id, "disposition",
                          disposition);
  if (detail) json_object_set_new(rec, "detail", eng__journal_refs(j, detail));
  return write_rec(j, rec, true);
}

void eng__journal_guards(eng__journal *j, const json_t *lists) {
  json_t *rec = json_pack("{s:s}", "event", "guards");
  json_object_set_new(rec, "lists", eng__journal_refs(j, lists));
  write_rec(j, rec, true);
}

void eng__journal_step(eng__journal *j, const char *event, const char *step,
                       const char *inputs, const char *status,
                       const json_t *outputs) {
  json_t *rec = json_pack("{s:s, s:s, s:s?, s:s?}", "event", event, "step",
                          step, "inputs", inputs, "status", status);
  if (outputs) json_object_set_new(rec, "outputs", eng__journal_refs(j, outputs));
  write_rec(j, rec, false);
}

/* Every record of a journal file (array); NULL when absent. */
/* A record that cannot be read, as {"event": "damaged", "line": N,
 * "text": its first bytes}. */
static json_t *damaged(size_t line, const char *text) {
  char excerpt[DAMAGED_EXCERPT + 4];
  size_t n = strlen(text);
  snprintf(excerpt, sizeof excerpt, "%.*s%s", (int)(n > DAMAGED_EXCERPT ? DAMAGED_EXCERPT : n),
           text, n > DAMAGED_EXCERPT ? "..." : "");
  json_t *t = json_string(excerpt); /* NULL when it is not UTF-8 */
  json_t *d = json_pack("{s:s, s:I}", "event", "damaged", "line", (json_int_t)line);
  json_object_set_new(d, "text", t ? t : json_string("(not text)"));
  return d;
}

json_t *eng__journal_read(const char *dir) {
  char *path = eng__asprintf("%s/journal", dir);
  size_t len;
  char *text = eng__read_file(path, 256u << 20, &len);
  free(path);
  if (!text) return NULL;
  json_t *all = json_array();
  size_t no = 0;
  for (char *line = text, *next; line < text + len; line = next) {
    char *nl = memchr(line, '\n', (size_t)(text + len - line));
    next = nl ? nl + 1 : text + len;
    if (nl) *nl = '\0';
    no++;
    if (!*line) continue;
    json_t *j = json_loads(line, 0, NULL);
    if (j && json_is_object(j)) json_array_append_new(all, j);
    /* the last record without its newline was being written when the
     * writer stopped: its resource was never created (the intent is
     * written before, and a failed write is truncated) */
    else if (nl) json_array_append_new(all, damaged(no, line));
    if (j && !json_is_object(j)) json_decref(j);
  }
  free(text);
  return all;
}

int eng__journal_owned(const char *dir, const char *kind, const char *id) {
  json_t *all = eng__journal_read(dir);
  int owned = 0;
  size_t i;
  json_t *j;
  json_array_foreach(all, i, j) {
    const char *ev = json_string_value(json_object_get(j, "event"));
    const char *k = json_string_value(json_object_get(j, "kind"));
    const char *d = json_string_value(json_object_get(j, "id"));
    if (!ev || !k || !d || strcmp(k, kind)) continue;
    /* a database id is HOST:PORT/NAME; the bare NAME matches too */
    const char *slash = strrchr(d, '/');
    bool same = !strcmp(d, id) || (slash && !strcmp(slash + 1, id)) ||
                (strrchr(id, '/') && !strcmp(strrchr(id, '/') + 1, d));
    if (!same) continue;
    /* created by this run, even if already removed: dropping it again
     * (if_exists) is this run's business */
    if (!strcmp(ev, "intent")) owned = 1;
  }
  json_decref(all);
  return owned;
}

int eng__journal_load_resume(const char *dir, json_t **ended,
                             json_t **unfinished, int64_t *last_seq) {
  json_t *all = eng__journal_read(dir);
  if (!all) return -1;
  *ended = json_object();
  *unfinished = json_object();
  size_t i;
  json_t *j;
  json_array_foreach(all, i, j) {
    const char *ev = json_string_value(json_object_get(j, "event"));
    const char *step = json_string_value(json_object_get(j, "step"));
    int64_t seq = json_integer_value(json_object_get(j, "seq"));
    if (seq > *last_seq) *last_seq = seq;
    if (!ev || !step) continue;
    if (!strcmp(ev, "step.start")) {
      json_object_set(*unfinished, step, json_true());
      json_object_del(*ended, step); /* its old result no longer holds */
    }
    if (!strcmp(ev, "step.end")) {
      json_object_del(*unfinished, step);
      json_object_set(*ended, step, j);
    }
  }
  json_decref(all);
  return 0;
}

/* How each step last ended after record `from` of all ("ok", "failed",
 * ...), or NULL when it did not end (killed, or still running). */
static const char *step_end_after(const json_t *all, size_t from,
                                  const char *step) {
  for (size_t q = from + 1; q < json_array_size(all); q++) {
    json_t *j = json_array_get(all, q);
    const char *ev = json_string_value(json_object_get(j, "event"));
    const char *st = json_string_value(json_object_get(j, "step"));
    if (ev && st && !strcmp(ev, "step.end") && !strcmp(st, step))
      return json_string_value(json_object_get(j, "status"));
  }
  return NULL;
}

static bool same_resource(const json_t *e, const char *kind, const char *id) {
  return !strcmp(json_string_value(json_object_get(e, "kind")), kind) &&
         !strcmp(json_string_value(json_object_get(e, "id")), id);
}

/* A record that may stand for a resource: kind and id as far as they can
 * be read from its text (or "unknown"), present, a leftover nobody can
 * remove without a person deciding. */
static json_t *maybe_resource(const json_t *rec) {
  const char *text = json_string_value(json_object_get(rec, "text"));
  json_t *e = json_pack("{s:s, s:O, s:s, s:b, s:b, s:b, s:b, s:b, s:O}", "kind",
                        "unknown", "line", json_object_get(rec, "line"),
                        "disposition", "kept", "recorded", 0, "present", 1,
                        "partial", 1, "leftover", 1, "damaged", 1, "text",
                        json_object_get(rec, "text"));
  char *id = eng__asprintf("journal line %lld",
                           (long long)json_integer_value(json_object_get(rec, "line")));
  json_object_set_new(e, "id", json_string(id));
  free(id);
  static const char *const fields[] = {"kind", "id", "action", "step"};
  for (size_t f = 0; text && f < sizeof fields / sizeof *fields; f++) {
    char *key = eng__asprintf("\"%s\":\"", fields[f]);
    const char *at = strstr(text, key);
    if (at) {
      at += strlen(key);
      const char *end = strchr(at, '"');
      char *v = eng__xstrndup(at, end ? (size_t)(end - at) : strlen(at));
      json_t *s = json_string(v); /* NULL when not UTF-8 */
      char *name = eng__asprintf("seen_%s", fields[f]);
      if (s) json_object_set_new(e, name, s);
      free(name);
      free(v);
    }
    free(key);
  }
  return e;
}

json_t *eng__journal_resources(const json_t *all) {
  json_t *res = json_array();
  size_t i;
  json_t *j;
  json_array_foreach(all, i, j) {
    const char *ev = json_string_value(json_object_get(j, "event"));
    const char *k = json_string_value(json_object_get(j, "kind"));
    const char *d = json_string_value(json_object_get(j, "id"));
    if (ev && !strcmp(ev, "damaged")) {
      json_array_append_new(res, maybe_resource(j));
      continue;
    }
    if (!ev || !k || !d) continue;
    if (!strcmp(ev, "removed")) { /* the newest present one of that name */
      for (size_t q = json_array_size(res); q-- > 0;) {
        json_t *e = json_array_get(res, q);
        if (json_is_true(json_object_get(e, "present")) &&
            same_resource(e, k, d)) {
          json_object_set_new(e, "present", json_false());
          break;
        }
      }
      continue;
    }
    if (strcmp(ev, "intent")) continue;
    const char *step = json_string_value(json_object_get(j, "step"));
    const char *disp = json_string_value(json_object_get(j, "disposition"));
    bool recorded = disp && (!strcmp(disp, "kept") || !strcmp(disp, "temporary"));
    const char *ended = step ? step_end_after(all, i, step) : NULL;
    json_t *e = json_pack("{s:s, s:s, s:s?, s:O?, s:s, s:b, s:b, s:b}", "kind",
                          k, "id", d, "step", step, "seq",
                          json_object_get(j, "seq"), "disposition",
                          recorded ? disp : "kept", "recorded", recorded,
                          "present", 1, "partial",
                          !ended || (strcmp(ended, "ok") && strcmp(ended, "warn")));
    json_t *undo = json_object_get(json_object_get(j, "detail"), "undo");
    if (undo) json_object_set(e, "undo", undo);
    json_array_append_new(res, e);
  }
  json_array_foreach(res, i, j) {
    if (json_is_true(json_object_get(j, "damaged"))) continue;
    bool present = json_is_true(json_object_get(j, "present"));
    bool recorded = json_is_true(json_object_get(j, "recorded"));
    bool temp = !strcmp(json_string_value(json_object_get(j, "disposition")),
                        "temporary");
    bool partial = json_is_true(json_object_get(j, "partial"));
    /* an old journal's resources are all kept */
    json_object_set_new(j, "leftover",
                        json_boolean(present && recorded && (partial || temp)));
  }
  return res;
}

void eng__guard_lists_add(json_t *into, const json_t *add) {
  const char *name;
  json_t *v;
  json_object_foreach((json_t *)add, name, v) {
    json_t *have = json_object_get(into, name);
    if (!json_is_array(have)) json_object_set_new(into, name, have = json_array());
    if (json_is_array(v)) json_array_extend(have, v);
  }
}

json_t *eng__journal_guard_lists(const json_t *all) {
  json_t *lists = json_object();
  size_t i;
  json_t *j;
  json_array_foreach(all, i, j) {
    const char *ev = json_string_value(json_object_get(j, "event"));
    json_t *l = json_object_get(j, "lists");
    /* every record adds to each list (a resume writes one too) */
    if (ev && !strcmp(ev, "guards") && json_is_object(l))
      eng__guard_lists_add(lists, l);
  }
  return lists;
}

/* ---- engine runs ----------------------------------------------------------- */

/* The runbook's name from the audit log's first record (run.start), for
 * a run that ended without a report (killed). */
static json_t *started_as(const char *run_dir) {
  char *path = eng__asprintf("%s/audit.jsonl", run_dir);
  FILE *f = fopen(path, "r");
  free(path);
  if (!f) return NULL;
  char *line = NULL;
  size_t cap = 0;
  json_t *j = NULL;
  if (getline(&line, &cap, f) > 0) {
    j = json_loads(line, 0, NULL);
    const char *t = json_string_value(json_object_get(j, "type"));
    if (!t || strcmp(t, "run.start")) {
      json_decref(j);
      j = NULL;
    }
  }
  free(line);
  fclose(f);
  return j;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int eng__runs_list(const char *state_dir, FILE *out) {
  char *dir = eng__asprintf("%s/runs", state_dir);
  DIR *d = opendir(dir);
  if (!d) {
    fprintf(out, "no runs recorded in %s\n", dir);
    free(dir);
    return 0;
  }
  char **names = NULL;
  size_t n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue;
    names = eng__xrealloc(names, (n + 1) * sizeof *names);
    names[n++] = eng__xstrdup(e->d_name);
  }
  closedir(d);
  if (n) qsort(names, n, sizeof *names, cmp_name);
  size_t damaged = 0;
  fprintf(out, "%-26s %-24s %-12s %-5s %s\n", "run", "runbook", "status",
          "kept", "leftovers");
  for (size_t i = 0; i < n; i++) {
    char *rd = eng__asprintf("%s/%s", dir, names[i]);
    char *rp = eng__asprintf("%s/report.json", rd);
    json_t *rep = json_load_file(rp, 0, NULL);
    json_t *all = eng__journal_read(rd);
    json_t *res = all ? eng__journal_resources(all) : json_array();
    size_t kept = 0, left = 0, q;
    json_t *e;
    json_array_foreach(res, q, e) {
      if (json_is_true(json_object_get(e, "damaged"))) {
        fprintf(stderr, "engine: run %s: journal line %lld is damaged and may "
                        "record a resource ('engine cleanup %s --dry-run' "
                        "shows what can be read of it)\n",
                names[i], (long long)json_integer_value(json_object_get(e, "line")),
                names[i]);
        damaged++;
      }
      if (json_is_true(json_object_get(e, "leftover"))) left++;
      else if (json_is_true(json_object_get(e, "present"))) kept++;
    }
    const char *status = rep ? json_string_value(json_object_get(rep, "status"))
                             : "incomplete";
    json_t *start = rep ? NULL : started_as(rd);
    const char *name = json_string_value(json_object_get(rep ? rep : start, "name"));
    fprintf(out, "%-26s %-24s %-12s %-5zu %zu\n", names[i], name ? name : "?",
            status ? status : "?", kept, left);
    json_decref(rep);
    json_decref(start);
    json_decref(all);
    json_decref(res);
    free(rp);
    free(rd);
    free(names[i]);
  }
  free(names);
  free(dir);
  return damaged ? ENG_EXIT_FAILED : 0;
}

/* ---- engine cleanup: a runbook of the undo actions -------------------------- */

/* Names X of every ${params.X} in the text. */
static void param_refs(const char *text, json_t *params) {
  for (const char *p = text; (p = strstr(p, "${params.")) != NULL;) {
    p += 9;
    const char *e = p;
    while ((*e >= 'a' && *e <= 'z') || (*e >= '0' && *e <= '9') || *e == '_') e++;
    if (e > p) {
      char *name = eng__xstrndup(p, (size_t)(e - p));
      json_object_set_new(params, name,
                          json_pack("{s:b, s:b}", "secret", 1, "required", 1));
      free(name);
    }
  }
}

/* The runbook `engine cleanup` runs: one undo step per selected resource,
 * newest first, each whatever the others did, held to the run's own
 * protected lists. Written as JSON (which YAML reads), so no journal text
 * can change its structure. */
char *eng__cleanup_runbook(const char *run_dir, eng__clean_what what,
                           size_t *count) {
  json_t *all = eng__journal_read(run_dir);
  if (!all) return NULL;
  json_t *res = eng__journal_resources(all);
  json_t *steps = json_array();
  json_t *params = json_object();
  size_t n = 0;
  for (size_t i = json_array_size(res); i-- > 0;) {
    json_t *e = json_array_get(res, i);
    bool take = what == ENG__CLEAN_ALL
                    ? json_is_true(json_object_get(e, "present"))
                    : json_is_true(json_object_get(e, "leftover"));
    if (!take) continue;
    json_t *undo = json_object_get(e, "undo");
    const char *action = json_string_value(json_object_get(undo, "action"));
    /* only a plugin's action undoes a resource (the journal may come from
     * a store: a built-in such as shell never runs from it) */
    if (!action || !strchr(action, '.') || action[0] == '.') continue;
    json_t *w = json_object_get(undo, "with");
    char *wtext = w ? json_dumps(w, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    if (wtext) param_refs(wtext, params);
    free(wtext);
    char *id = eng__asprintf("undo-%zu", ++n);
    char *name = eng__asprintf("remove %s %s (%s)",
                               json_string_value(json_object_get(e, "kind")),
                               json_string_value(json_object_get(e, "id")),
                               json_is_true(json_object_get(e, "leftover"))
                                   ? "leftover"
                                   : "kept");
    json_array_append_new(steps, json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", id,
                                           "name", name, "if", "always()",
                                           "uses", action, "with",
                                           w ? json_incref(w) : json_object()));
    free(id);
    free(name);
  }
  json_t *guards = eng__journal_guard_lists(all);
  json_decref(res);
  json_decref(all);
  *count = n;
  json_t *rb = json_pack("{s:i, s:s, s:o, s:o}", "version", 1, "name", "cleanup",
                         "params", params, "steps", steps);
  if (json_object_size(guards)) json_object_set(rb, "guards", guards);
  json_decref(guards);
  char *text = json_dumps(rb, JSON_INDENT(2));
  json_decref(rb);
  return text;
}
