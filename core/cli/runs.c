/* runs.c - a runbook run in a state directory: the lock it holds (taken,
 * renewed, released), the leftovers of earlier holders of that lock
 * removed first, its state written to a store as it goes; and the cleanup
 * runbook of a run, run under the run's id and held to protected lists
 * (engine cleanup, and the leftovers of earlier holders). */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Write the cleanup runbook of run `id` (pulled into the local state
 * directory) for `what` and run it, held to the run's own protected lists
 * and to `guards` (those of the run that asked) when given. *count:
 * resources it removes (0: nothing ran). */
/* The run's resources from its journal (pulled into the local state
 * directory); NULL when it has none. */
json_t *cli_run_resources(const char *state_dir, const char *id) {
  char *dir = eng__asprintf("%s/runs/%s", state_dir, id);
  json_t *all = eng__journal_read(dir);
  free(dir);
  json_t *res = all ? eng__journal_resources(all) : NULL;
  json_decref(all);
  return res;
}

int cli_damaged(const char *id, const json_t *res, bool accepted) {
  size_t n = 0, i;
  json_t *e;
  json_array_foreach(res, i, e) {
    if (!json_is_true(json_object_get(e, "damaged"))) continue;
    const char *k = json_string_value(json_object_get(e, "seen_kind"));
    const char *rid = json_string_value(json_object_get(e, "seen_id"));
    const char *act = json_string_value(json_object_get(e, "seen_action"));
    fprintf(stderr,
            "engine: run %s: journal line %lld is damaged and may record a "
            "resource%s%s%s%s%s%s%s: %s\n",
            id, (long long)json_integer_value(json_object_get(e, "line")),
            k || rid ? " (" : "", k ? k : "", k && rid ? " " : "",
            rid ? rid : "", act ? ", undone by " : "", act ? act : "",
            k || rid ? ")" : "", json_string_value(json_object_get(e, "text")));
    n++;
  }
  if (!n || accepted) return 0;
  fprintf(stderr, "engine: run %s: check %s by hand (remove what %s, if it "
                  "exists); then 'engine cleanup %s --accept-damaged' removes "
                  "the rest\n",
          id, n == 1 ? "that record's resource" : "those records' resources",
          n == 1 ? "it names" : "they name", id);
  return ENG_EXIT_FAILED;
}

int cli_cleanup_run(cli *c, eng__state *st, const char *id,
                       eng__clean_what what, size_t *count,
                       const json_t *guards) {
  *count = 0;
  json_t *res = cli_run_resources(c->o.state_dir, id);
  int damaged = res ? cli_damaged(id, res, c->accept_damaged) : 0;
  json_decref(res);
  if (damaged) return damaged;
  char *dir = eng__asprintf("%s/runs/%s", c->o.state_dir, id);
  size_t n = 0;
  char *text = eng__cleanup_runbook(dir, what, &n);
  if (text && guards) {
    json_t *rb = json_loads(text, 0, NULL);
    json_t *g = json_object_get(rb, "guards");
    if (!g) json_object_set_new(rb, "guards", g = json_object());
    eng__guard_lists_add(g, guards);
    free(text);
    text = json_dumps(rb, JSON_INDENT(2));
    json_decref(rb);
  }
  *count = n;
  if (!text) {
    free(dir);
    return -1;
  }
  if (n == 0) {
    free(text);
    free(dir);
    return 0;
  }
  char *path = eng__asprintf("%s/cleanup.yaml", dir);
  FILE *f = fopen(path, "w");
  int code;
  if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
    fprintf(stderr, "engine: cannot write %s\n", path);
    code = ENG_EXIT_FAILED;
  } else {
    printf("run %s: removing %zu %s\n", id, n,
           what == ENG__CLEAN_ALL ? (n == 1 ? "resource" : "resources")
                                  : (n == 1 ? "leftover" : "leftovers"));
    fflush(stdout);
    eng__run_opts saved = c->o;
    c->o.cleanup_run = id;
    c->o.resume = NULL;
    c->o.lock = NULL;
    c->o.only = c->o.from = NULL;
    c->o.report = c->o.junit = c->o.evidence = NULL;
    code = cli_run_file(c, st, path, false);
    c->o = saved;
  }
  free(text);
  free(path);
  free(dir);
  return code;
}

/* Before a run of rb holding lock `name`: what earlier runs holding it left
 * behind (their marker locks/NAME.runs/ID is still there) is removed
 * first, held to rb's protected targets. 0, or the exit code when it could
 * not be (said on stderr). */
static int remove_leftovers(cli *c, eng__state *st, const char *name,
                            const char *self, const eng__runbook *rb) {
  char err[1024] = "";
  char *prefix = eng__asprintf("locks/%s.runs/", name);
  json_t *keys = eng__state_list(st, prefix, err, sizeof err);
  int result = 0;
  if (!keys) {
    fprintf(stderr, "engine: cannot list the earlier runs of lock '%s': %s\n",
            name, err);
    free(prefix);
    return ENG_EXIT_FAILED;
  }
  /* the protected targets of this runbook hold for the cleanup too */
  json_t *guards = json_object();
  static const char *const lists[] = {"protected_databases", "protected_volumes",
                                      "protected_buckets", "protected_instances"};
  for (size_t k = 0; k < sizeof lists / sizeof *lists; k++) {
    eng__node *g = eng__node_get(rb->guards, lists[k]);
    if (g) json_object_set_new(guards, lists[k], eng__node_to_json(g));
  }
  size_t i;
  json_t *k;
  json_array_foreach(keys, i, k) {
    const char *key = json_string_value(k);
    if (strncmp(key, prefix, strlen(prefix))) continue;
    const char *id = key + strlen(prefix);
    if (!strcmp(id, self)) continue;
    int pr = eng__state_pull_run(st, id, err, sizeof err);
    size_t n = 0;
    if (pr < 0) {
      fprintf(stderr, "engine: cannot read run %s (it held lock '%s'): %s\n",
              id, name, err);
      result = ENG_EXIT_FAILED;
      break;
    }
    if (pr == 0) {
      int code = cli_cleanup_run(c, st, id, ENG__CLEAN_LEFTOVERS, &n,
                             json_object_size(guards) ? guards : NULL);
      if (code != 0) {
        if (code == ENG_EXIT_INTERRUPTED) {
          result = code;
          break;
        }
        fprintf(stderr,
                "engine: run %s (it held lock '%s') left resources that could "
                "not all be removed (exit %d); nothing of this run ran. Fix "
                "the cause and run 'engine cleanup %s'\n",
                id, name, code, id);
        result = ENG_EXIT_FAILED;
        break;
      }
      if (n) printf("run %s: leftovers removed\n", id);
    }
    eng__state_del(st, key, NULL, err, sizeof err);
  }
  json_decref(guards);
  json_decref(keys);
  free(prefix);
  return result;
}

/* The lock run `id` held (its run.start record says), or NULL. */
char *cli_run_lock_of(eng__state *st, const char *id) {
  char *key = eng__asprintf("runs/%s/audit.jsonl", id), *data = NULL, err[256];
  size_t len = 0;
  char *name = NULL;
  if (eng__state_get(st, key, &data, &len, NULL, err, sizeof err) == ENG_OK) {
    char *nl = memchr(data, '\n', len);
    json_t *j = json_loadb(data, nl ? (size_t)(nl - data) : len, 0, NULL);
    const char *s = json_string_value(json_object_get(j, "lock"));
    if (s && eng__lock_name_ok(s)) name = eng__xstrdup(s);
    json_decref(j);
  }
  free(data);
  free(key);
  return name;
}

/* Did run `id` leave something behind (partial or temporary resources)? */
bool cli_has_leftovers(const char *state_dir, const char *id) {
  json_t *res = cli_run_resources(state_dir, id);
  bool left = false;
  size_t i;
  json_t *e;
  json_array_foreach(res, i, e) {
    /* one without an undo action stays too: nobody could remove it */
    if (json_is_true(json_object_get(e, "leftover"))) left = true;
  }
  json_decref(res);
  return left;
}

/* Take lock `name` for run `id` and start renewing it. An exit code (6:
 * held, said with the holder). */
int cli_take_lock(cli *c, eng__state *st, const char *name, const char *id,
                     eng__lock **lock) {
  eng__lock_holder h;
  char over[32], err[1024] = "";
  int rc = eng__lock_take(st, name, id, eng__now_ms(), c->lock_ttl_ms, lock, &h,
                          over, err, sizeof err);
  if (rc > 0) {
    fprintf(stderr,
            "engine: another run holds the lock '%s': run %s on host %s, "
            "started %s%s%s; nothing ran\n",
            name, h.run[0] ? h.run : "?", h.host[0] ? h.host : "?",
            h.started[0] ? h.started : "?", h.expires[0] ? ", valid until " : "",
            h.expires);
    return ENG_EXIT_LOCKED;
  }
  if (rc < 0) {
    fprintf(stderr, "engine: cannot take the lock '%s': %s; nothing ran\n",
            name, err);
    return ENG_EXIT_FAILED;
  }
  eng__lock_renewing(*lock);
  if (over[0])
    printf("lock '%s': taken over from run %s, whose lock had expired\n", name,
           over);
  return ENG_EXIT_OK;
}

static int run_in_state(cli *c, eng__state *st, eng__runbook *rb,
                        eng__lua *L);

/* Load, validate and run one runbook file with the options in c. */
int cli_run_file(cli *c, eng__state *st, const char *file, bool plan) {
  if (plan) c->o.plan_only = true;
  eng__diags d = {0};
  d.color = c->o.color && isatty(2);
  cli_load_plugins(c, &d);
  eng__lua *L = NULL;
  eng__diags_end(&d); /* the runbook's own errors are counted from here */
  eng__runbook *rb = cli_load_valid(file, &L, c->o.lua_lib_dir, &d);
  eng__diags_end(&d);
  if (!rb) {
    fprintf(stderr, "engine: %s is invalid (%zu error%s); nothing ran\n",
            file, d.errors, d.errors == 1 ? "" : "s");
    eng__diags_free(&d);
    return ENG_EXIT_USAGE;
  }
  eng__console_setup(c->o.log_json, c->o.verbosity, c->o.color);
  int code = plan ? eng__run_main(rb, L, &c->o) : run_in_state(c, st, rb, L);
  eng__lua_destroy(L);
  eng__runbook_free(rb);
  eng__diags_free(&d);
  return code;
}


/* The lock this run holds: --lock, else the runbook's `lock:` rendered
 * with the run's parameters (*name NULL: none). An exit code. */
static int lock_name_of(cli *c, eng__runbook *rb, eng__lua *L, char **name) {
  *name = NULL;
  if (c->o.cleanup_run) return ENG_EXIT_OK;
  if (c->lock) {
    *name = eng__xstrdup(c->lock);
  } else if (rb->lock) {
    eng__run_opts o = c->o;
    o.lock_out = name;
    int code = eng__run_main(rb, L, &o);
    if (code != ENG_EXIT_OK) return code;
  }
  if (!*name && c->leftovers) {
    fprintf(stderr, "engine: --cleanup-leftovers needs a lock (--lock NAME or "
                    "the runbook's 'lock:'): only runs holding the same lock "
                    "are known to be over; nothing ran\n");
    return ENG_EXIT_USAGE;
  }
  return ENG_EXIT_OK;
}

/* A new run id that no run in the store has yet. */
static void new_run_id(eng__state *st, char id[40]) {
  for (int tries = 0; tries < 5; tries++) {
    eng__run_new_id(id, eng__now_ms());
    if (!eng__state_url(st)) return;
    char *key = eng__asprintf("runs/%s/journal", id), *data = NULL, err[256];
    size_t len;
    int rc = eng__state_get(st, key, &data, &len, NULL, err, sizeof err);
    free(data);
    free(key);
    if (rc != ENG_OK) return;
  }
}

static bool lock_lost(void *lock) {
  return eng__lock_lost(lock, eng__now_ms(), NULL, 0);
}

/* Before the steps of a run holding a lock: leftovers of earlier runs
 * removed, the run recorded under the lock (and, resuming from a store,
 * its state read). An exit code. */
static int prepare_locked(cli *c, eng__state *st, eng__runbook *rb,
                          const char *name, const char *id, eng__lock *lock) {
  char err[1024] = "";
  if (!c->no_leftovers) {
    int code = remove_leftovers(c, st, name, id, rb);
    if (code != 0) return code;
  }
  char *key = eng__asprintf("locks/%s.runs/%s", name, id);
  int rc = eng__state_put(st, key, id, strlen(id), NULL, NULL, err, sizeof err);
  free(key);
  if (rc != ENG_OK) {
    fprintf(stderr, "engine: cannot record the run under its lock: %s; "
                    "nothing ran\n", err);
    return ENG_EXIT_FAILED;
  }
  char msg[400];
  if (eng__lock_lost(lock, eng__now_ms(), msg, sizeof msg)) {
    fprintf(stderr, "engine: %s; nothing ran\n", msg);
    return ENG_EXIT_FAILED;
  }
  return ENG_EXIT_OK;
}

/* A run (or a cleanup) with its state in st: the run lock when one is
 * asked for, leftovers of earlier runs holding it, the state written to
 * the store as the run goes, and the lock released at the end. */
static int run_in_state(cli *c, eng__state *st, eng__runbook *rb,
                        eng__lua *L) {
  char err[1024] = "";
  char id[40];
  const char *reuse = c->o.resume ? c->o.resume : c->o.cleanup_run;
  if (reuse) snprintf(id, sizeof id, "%s", reuse);
  else new_run_id(st, id);
  char *name = NULL;
  int code = lock_name_of(c, rb, L, &name);
  if (code != ENG_EXIT_OK) return code;
  eng__lock *lock = NULL;
  if (name && (code = cli_take_lock(c, st, name, id, &lock)) != ENG_EXIT_OK) {
    free(name);
    return code;
  }
  /* resuming from a store: its state, read once the lock is ours */
  if (eng__state_url(st) && c->o.resume) {
    int pr = eng__state_pull_run(st, id, err, sizeof err);
    if (pr != 0) {
      fprintf(stderr, "engine: --resume %s: %s\n", id,
              pr > 0 ? "no such run in the state store (see 'engine runs')"
                     : err);
      code = pr > 0 ? ENG_EXIT_USAGE : ENG_EXIT_FAILED;
    }
  }
  if (code == ENG_EXIT_OK && lock)
    code = prepare_locked(c, st, rb, name, id, lock);
  if (code != ENG_EXIT_OK) {
    eng__lock_release(lock);
    free(name);
    return code;
  }
  eng__state_sync *sync = eng__state_sync_start(st, id, lock ? lock_lost : NULL,
                                                lock);
  eng__run_opts saved = c->o;
  if (!reuse) c->o.run_id = id;
  c->o.lock = lock;
  c->o.on_boundary = eng__state_sync_kick;
  c->o.boundary_ud = sync;
  if (!reuse) cli_index_start(c, st, rb, id, name);
  json_t *prev = cli_index_previous_ok(c, st, rb, id, name);
  c->o.previous_ok = prev;
  code = eng__run_main(rb, L, &c->o);
  c->o = saved;
  json_decref(prev);
  code = cli_index_end(c, st, id, name, code);
  cli_metrics_publish(c, st, rb, name);
  int synced = eng__state_sync_stop(sync, err, sizeof err);
  if (synced != 0) {
    fprintf(stderr, "engine: the run's state could not be written to %s: "
                    "%s\n", eng__state_url(st), err);
    if (code == ENG_EXIT_OK) code = ENG_EXIT_FAILED;
  }
  bool left = cli_has_leftovers(c->o.state_dir, id);
  if (lock) {
    if (!left && !lock_lost(lock)) {
      char *key = eng__asprintf("locks/%s.runs/%s", name, id);
      eng__state_del(st, key, NULL, err, sizeof err);
      free(key);
    }
    eng__lock_release(lock);
  }
  /* the store has it all; artefacts a resume or a cleanup may need stay */
  if (eng__state_url(st) && synced == 0 && code == ENG_EXIT_OK && !left) {
    char *dir = eng__asprintf("%s/runs/%s", c->o.state_dir, id);
    eng__rm_tree(dir);
    free(dir);
  }
  free(name);
  return code;
}
