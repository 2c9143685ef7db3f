/*
 * docker_plugin.c - the docker plugin: containers, inspect, volumes,
 * volume_check, exec, stop/start/restart, run and remove through the
 * Docker Engine API (any engine that speaks it, e.g. Podman's service).
 *
 * Containers are named by name, id, or compose:PROJECT/SERVICE (the
 * com.docker.compose.* labels). Command lines of exec and run go through
 * the guards like a shell step's; a read-write mount of a protected volume
 * is refused before anything is created.
 *
 * The throwaway containers of run and volume_check are named here
 * (engine-RUNID-STEP-RANDOM) before they exist, so that the journal
 * records them first: intent kind "container", id NAME, undo docker.remove
 * {container: NAME, force: true} (volume_check's also "disposition":
 * "temporary"); then POST /containers/create?name=NAME
 * (nothing is sent when the intent could not be written: ENG_ERR_IO);
 * confirmed once the engine returned its id; removed (same kind and id)
 * when the container was removed, or when the engine refused to create it.
 * docker.remove records the removal under the name when the run journaled
 * that name, else under the id (journals written before names were).
 *
 * Answers are read through docker_answer.c: a field that is missing or of
 * the wrong type fails the step with what was wrong (ENG_ERR_PROTOCOL),
 * never with a crash or a default that would pass for success.
 */
#include "docker_api.h"

#include <engine/mem.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fnmatch.h>
#include <regex.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define H dk_host

/* stdout kept for the `stdout` output (the action's documented bound). */
#define DK_STDOUT_MAX (16u << 20)
/* stdout gathered while a write to stdout_file is under way before the
 * transfer pauses (backpressure). */
#define DK_PEND_MAX (4u << 20)
/* An exec whose output ended is polled until it reports its exit code:
 * every DK_EXEC_POLL_MS, at most DK_EXEC_POLLS times (a minute). */
#define DK_EXEC_POLL_MS 100
#define DK_EXEC_POLLS 600
/* Polling while the last bytes of stdout are written to stdout_file. */
#define DK_FLUSH_POLL_MS 20
/* lifecycle wait_healthy: polled every DK_HEALTH_POLL_MS, at most
 * DK_HEALTH_POLLS times (5 min; the step's timeout bounds it sooner). */
#define DK_HEALTH_POLL_MS 250
#define DK_HEALTH_POLLS 1200

typedef struct job job;
typedef void (*job_step)(job *j);

struct job {
  eng_op op; /* first */
  json_t *p; /* params (a copy) */
  char *id;  /* the container, once resolved */
  char *name;
  char *jid;    /* the id the journal knows the container by */
  int64_t token; /* the intent of a container created here */
  dk_container info; /* inspect of the container, once resolved */
  job_step next;
  /* when the container to resolve does not exist: true when handled */
  bool (*missing)(job *j);
  /* exec / run */
  char *exec_id;
  eng_stream *out;
  dk_req *stream_req;
  dk_demux demux;
  eng_strbuf out_buf; /* stdout collected, or the bytes being written */
  eng_strbuf pend;    /* stdout not yet written to the stream */
  char err_tail[2048];
  size_t tail_len;
  bool write_pending, body_done;
  int polls;
  int64_t deadline_ms;
  int exit_code;
};

static void job_destroy(eng_op *op) {
  job *j = (job *)(void *)op;
  json_decref(j->p);
  dk_container_free(&j->info);
  free(j->id);
  free(j->name);
  free(j->jid);
  free(j->exec_id);
  eng_strbuf_free(&j->out_buf);
  eng_strbuf_free(&j->pend);
  free(j);
}

static void job_on_finish(eng_op *op) {
  job *j = (job *)(void *)op;
  if (j->out) {
    H->stream_abort(j->out);
    j->out = NULL;
  }
}

static job *job_new(eng_call *call, const json_t *p) {
  job *j = eng_xcalloc(1, sizeof *j);
  eng_op_init(&j->op, H, call, job_destroy);
  j->op.on_finish = job_on_finish;
  j->p = json_deep_copy(p);
  return j;
}

static const char *pstr(const job *j, const char *k) {
  const char *v = json_string_value(json_object_get(j->p, k));
  return v && *v ? v : NULL;
}

static bool failed(job *j, const dk_answer *a, const char *what) {
  if (!a->error) return false;
  eng_op_fail(&j->op, a->status == 404 ? ENG_ERR_NOTFOUND : ENG_ERR_FAILED,
              "%s: %s", what, a->error);
  return true;
}

/* An answer that is not what the API promises (a reader's err). */
static void unreadable(job *j, const char *what, const char *err) {
  eng_op_fail(&j->op, ENG_ERR_PROTOCOL,
              "%s: the Docker API's answer cannot be read: %s (check "
              "DOCKER_HOST and the daemon's version)", what, err);
}

/* A timer that could not start leaves nothing to call back: fail. */
static void poll_later(job *j, uint64_t ms, void (*cb)(eng_op *op)) {
  if (eng_op_timer(&j->op, ms, cb) != ENG_OK)
    eng_op_fail(&j->op, ENG_ERR_NOMEM, "cannot start a timer to poll the Docker API");
}

/* The last bytes of stderr, and stdout, as text for outputs and messages. */
static char *tail_text(const job *j) { return dk_answer_text(j->err_tail, j->tail_len); }
static char *stdout_text(const job *j) { return dk_answer_text(j->out_buf.data, j->out_buf.len); }
static json_t *stdout_json(const job *j) {
  char *t = stdout_text(j);
  json_t *v = json_string(t);
  free(t);
  return v;
}

/* ---- naming a container ------------------------------------------------------ */

/* GET /containers/json?all=1 with the API's filters (stolen). */
static void list_filtered(job *j, json_t *filters, dk_cb cb) {
  char *fs = json_dumps(filters, JSON_COMPACT);
  char *e = dk_escape(fs ? fs : "{}");
  char *path = eng_asprintf("/containers/json?all=1&filters=%s", e);
  dk_request(&j->op, "GET", path, NULL, NULL, cb, j, NULL);
  free(path);
  free(e);
  free(fs);
  json_decref(filters);
}

static void resolved(void *ud, const dk_answer *a);

/* The names a list answer holds, for a message: "a, b, c" (bounded). */
static void names_of(const dk_container_list *l, char *buf, size_t n) {
  buf[0] = '\0';
  for (size_t k = 0; k < l->n && strlen(buf) < n - 100; k++)
    snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", *buf ? ", " : "",
             l->v[k].name);
}

static void listed_for_hint(void *ud, const dk_answer *a) {
  job *j = ud;
  const char *want = pstr(j, "container");
  dk_container_list l = {0};
  char err[256];
  if (a->error || dk_answer_containers(a->json, &l, err, sizeof err) != 0) {
    eng_op_fail(&j->op, ENG_ERR_NOTFOUND, "no container '%s' (the containers there "
                "could not be listed: %s)", want, a->error ? a->error : err);
    return;
  }
  /* nearest, cheaply: a shared prefix or substring */
  const char *hint = NULL;
  for (size_t k = 0; k < l.n && !hint; k++) {
    const char *nm = l.v[k].name;
    if (*nm && (strstr(nm, want) || strstr(want, nm))) hint = nm;
  }
  char list[600];
  names_of(&l, list, sizeof list);
  eng_op_fail(&j->op, ENG_ERR_NOTFOUND, "no container '%s'%s%s%s; containers: %s", want,
              hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "",
              *list ? list : "none");
  dk_container_list_free(&l);
}

static void compose_found(void *ud, const dk_answer *a) {
  job *j = ud;
  if (failed(j, a, "listing containers")) return;
  dk_container_list l = {0};
  char err[256];
  if (dk_answer_containers(a->json, &l, err, sizeof err) != 0) {
    unreadable(j, "listing containers", err);
    return;
  }
  if (!l.n) {
    eng_op_fail(&j->op, ENG_ERR_NOTFOUND,
                "no container with labels com.docker.compose.project/service "
                "= %s (is the compose project up?)", pstr(j, "container") + 8);
    dk_container_list_free(&l);
    return;
  }
  char path[64 + DK_ID_MAX];
  snprintf(path, sizeof path, "/containers/%s/json", l.v[0].id);
  dk_container_list_free(&l);
  dk_request(&j->op, "GET", path, NULL, NULL, resolved, j, NULL);
}

static void resolved(void *ud, const dk_answer *a) {
  job *j = ud;
  if (a->status == 404 && j->missing && j->missing(j)) return;
  if (a->status == 404) {
    dk_request(&j->op, "GET", "/containers/json?all=1", NULL, NULL, listed_for_hint, j, NULL);
    return;
  }
  if (failed(j, a, "inspecting the container")) return;
  dk_container c = {0};
  char err[256];
  if (dk_answer_container(a->json, &c, err, sizeof err) != 0) {
    char what[600];
    snprintf(what, sizeof what, "inspecting container '%s'", pstr(j, "container"));
    unreadable(j, what, err);
    return;
  }
  dk_container_free(&j->info);
  j->info = c;
  free(j->id);
  j->id = eng_xstrdup(c.id);
  free(j->name);
  j->name = eng_xstrdup(c.name);
  j->next(j);
}

/* Resolve params.container, then run next. */
static void resolve(job *j, job_step next) {
  j->next = next;
  const char *ref = pstr(j, "container");
  if (!strncmp(ref, "compose:", 8)) {
    const char *ps = ref + 8, *slash = strchr(ps, '/');
    if (!slash) {
      eng_op_fail(&j->op, ENG_ERR_INVALID, "compose:PROJECT/SERVICE, got '%s'", ref);
      return;
    }
    char *proj = eng_xstrndup(ps, (size_t)(slash - ps));
    json_t *labels = json_array();
    json_array_append_new(labels, json_sprintf("com.docker.compose.project=%s", proj));
    json_array_append_new(labels, json_sprintf("com.docker.compose.service=%s", slash + 1));
    json_t *filters = json_object();
    json_object_set_new(filters, "label", labels);
    list_filtered(j, filters, compose_found);
    free(proj);
    return;
  }
  char *e = dk_escape(ref);
  char *path = eng_asprintf("/containers/%s/json", e);
  dk_request(&j->op, "GET", path, NULL, NULL, resolved, j, NULL);
  free(path);
  free(e);
}

/* ---- inspect ---------------------------------------------------------------- */

static json_t *mounts_of(const dk_container *c, bool full) {
  json_t *out = json_array();
  for (size_t i = 0; i < c->n_mounts; i++) {
    const dk_mount *m = &c->mounts[i];
    json_t *o = json_pack("{s:s?, s:s?, s:s?}", "name", m->name, "source", m->source,
                          "destination", m->destination);
    if (full) {
      json_object_set_new(o, "type", m->type ? json_string(m->type) : json_null());
      json_object_set_new(o, "rw", json_boolean(m->rw));
    }
    json_array_append_new(out, o);
  }
  return out;
}

static void inspect_done(job *j) {
  const dk_container *c = &j->info;
  H->output(j->op.call, "id", json_string(j->id));
  H->output(j->op.call, "name", json_string(j->name));
  H->output(j->op.call, "state", json_string(c->state));
  H->output(j->op.call, "health", json_string(c->health));
  H->output(j->op.call, "mounts", mounts_of(c, true));
  H->output(j->op.call, "image", json_string(c->image));
  json_t *keys = json_array(); /* env keys only: values may be secrets */
  for (size_t i = 0; i < c->n_env_keys; i++)
    json_array_append_new(keys, json_string(c->env_keys[i]));
  H->output(j->op.call, "env_keys", keys);
  H->output(j->op.call, "api_version", json_string(dk_api_version()));
  eng_op_finish(&j->op, ENG_OK);
}

static int inspect_start(eng_call *call, const json_t *p) {
  resolve(job_new(call, p), inspect_done);
  return ENG_OK;
}

/* ---- containers ---------------------------------------------------------------- */

static bool label_is(const dk_container *c, const char *k, const char *want) {
  const char *v = dk_container_label(c, k);
  return v && !strcmp(v, want);
}

static void containers_listed(void *ud, const dk_answer *a) {
  job *j = ud;
  if (failed(j, a, "listing containers")) return;
  dk_container_list l = {0};
  char err[256];
  if (dk_answer_containers(a->json, &l, err, sizeof err) != 0) {
    unreadable(j, "listing containers", err);
    return;
  }
  if (l.skipped)
    H->log(j->op.call, ENG_LOG_WARN, "%zu entries of the container list have no valid Id "
           "and are left out", l.skipped);
  const char *name = pstr(j, "name"), *lab = pstr(j, "label");
  const char *proj = pstr(j, "compose_project"), *svc = pstr(j, "compose_service");
  json_t *out = json_array();
  for (size_t i = 0; i < l.n; i++) {
    const dk_container *c = &l.v[i];
    if (name && fnmatch(name, c->name, 0) != 0) continue;
    if (proj && !label_is(c, "com.docker.compose.project", proj)) continue;
    if (svc && !label_is(c, "com.docker.compose.service", svc)) continue;
    if (lab) {
      const char *eq = strchr(lab, '=');
      char *k = eng_xstrndup(lab, eq ? (size_t)(eq - lab) : strlen(lab));
      bool ok = eq ? label_is(c, k, eq + 1) : dk_container_label(c, k) != NULL;
      free(k);
      if (!ok) continue;
    }
    json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:s, s:s, s:o}", "id", c->id,
                                         "name", c->name, "image", c->image, "state",
                                         c->state, "status", c->status, "mounts",
                                         mounts_of(c, false)));
  }
  dk_container_list_free(&l);
  H->output(j->op.call, "count", json_integer((json_int_t)json_array_size(out)));
  H->output(j->op.call, "containers", out);
  eng_op_finish(&j->op, ENG_OK);
}

static int containers_start(eng_call *call, const json_t *p) {
  job *j = job_new(call, p);
  bool all = json_is_true(json_object_get(p, "all"));
  dk_request(&j->op, "GET", all ? "/containers/json?all=1" : "/containers/json",
             NULL, NULL, containers_listed, j, NULL);
  return ENG_OK;
}

/* ---- volumes ---------------------------------------------------------------------- */

static void volumes_listed(void *ud, const dk_answer *a) {
  job *j = ud;
  if (failed(j, a, "listing volumes")) return;
  dk_volume_list l = {0};
  char err[256];
  if (dk_answer_volumes(a->json, &l, err, sizeof err) != 0) {
    unreadable(j, "listing volumes", err);
    return;
  }
  if (l.skipped)
    H->log(j->op.call, ENG_LOG_WARN, "%zu entries of the volume list have no name and "
           "are left out", l.skipped);
  const char *m = pstr(j, "match");
  regex_t re;
  bool rx = m && m[0] == '/' && strlen(m) > 2 && m[strlen(m) - 1] == '/';
  if (rx) {
    char *pat = eng_xstrndup(m + 1, strlen(m) - 2);
    int rc = regcomp(&re, pat, REG_EXTENDED | REG_NOSUB);
    free(pat);
    if (rc != 0) {
      dk_volume_list_free(&l);
      eng_op_fail(&j->op, ENG_ERR_INVALID, "match %s is not a valid regular expression", m);
      return;
    }
  }
  json_t *out = json_array();
  for (size_t i = 0; i < l.n; i++) {
    const dk_volume *v = &l.v[i];
    if (m && (rx ? regexec(&re, v->name, 0, NULL, 0) != 0 : fnmatch(m, v->name, 0) != 0))
      continue;
    json_array_append_new(out, json_pack("{s:s, s:s?, s:s?}", "name", v->name, "driver",
                                         v->driver, "mountpoint", v->mountpoint));
  }
  if (rx) regfree(&re);
  dk_volume_list_free(&l);
  H->output(j->op.call, "count", json_integer((json_int_t)json_array_size(out)));
  H->output(j->op.call, "volumes", out);
  eng_op_finish(&j->op, ENG_OK);
}

static int volumes_start(eng_call *call, const json_t *p) {
  job *j = job_new(call, p);
  dk_request(&j->op, "GET", "/volumes", NULL, NULL, volumes_listed, j, NULL);
  return ENG_OK;
}

/* ---- a throwaway container: create, start, wait, logs, remove --------------------- */

static void run_logs(void *ud, const dk_answer *a);

/* The last bytes of stderr (err_tail holds at most its size - 1). */
static void tail_add(job *j, const char *b, size_t n) {
  size_t keep = sizeof j->err_tail - 1;
  if (n >= keep) {
    memcpy(j->err_tail, b + n - keep, keep);
    j->tail_len = keep;
  } else {
    if (j->tail_len + n > keep) {
      size_t drop = j->tail_len + n - keep;
      memmove(j->err_tail, j->err_tail + drop, j->tail_len - drop);
      j->tail_len -= drop;
    }
    memcpy(j->err_tail + j->tail_len, b, n);
    j->tail_len += n;
  }
  j->err_tail[j->tail_len] = '\0';
}

static void emit_buf(void *ud, int stream, const char *b, size_t n) {
  job *j = ud;
  if (stream != 1) {
    tail_add(j, b, n);
    return;
  }
  if (j->out_buf.len + n > DK_STDOUT_MAX) n = DK_STDOUT_MAX - j->out_buf.len;
  eng_strbuf_add(&j->out_buf, b, n);
}

static void run_waited(void *ud, const dk_answer *a) {
  job *j = ud;
  if (failed(j, a, "waiting for the container")) return;
  char err[768];
  if (dk_answer_wait(a->json, &j->exit_code, err, sizeof err) != 0) {
    char what[64 + DK_ID_MAX];
    snprintf(what, sizeof what, "waiting for container %s", j->jid);
    unreadable(j, what, err);
    return;
  }
  char path[64 + DK_ID_MAX];
  snprintf(path, sizeof path, "/containers/%s/logs?stdout=1&stderr=1", j->id);
  dk_request(&j->op, "GET", path, NULL, NULL, run_logs, j, NULL);
}

static void run_logs(void *ud, const dk_answer *a) {
  job *j = ud;
  if (failed(j, a, "reading the container's output")) return;
  dk_demux d = {0};
  if (dk_demux_feed(&d, a->body, a->len, emit_buf, j) != 0) { /* a TTY: raw */
    eng_strbuf_free(&j->out_buf);
    j->tail_len = 0;
    j->err_tail[0] = '\0';
    emit_buf(j, 1, a->body, a->len);
  }
  j->next(j);
}

static void run_started(void *ud, const dk_answer *a) {
  job *j = ud;
  if (failed(j, a, "starting the container")) return;
  char path[64 + DK_ID_MAX];
  snprintf(path, sizeof path, "/containers/%s/wait", j->id);
  dk_request(&j->op, "POST", path, NULL, NULL, run_waited, j, NULL);
}

static void run_created(void *ud, const dk_answer *a) {
  job *j = ud;
  char id[DK_ID_MAX + 1], err[256] = "";
  bool have = !a->error && dk_answer_id(a->json, id, err, sizeof err) == 0;
  if (have)
    H->journal_confirm(j->op.call, j->token);
  else if (a->status >= 400) /* the engine refused: nothing was created */
    H->journal_removed(j->op.call, "container", j->jid);
  /* (without an answer, or without an id, it may exist: the intent stays
   * for docker.remove by name) */
  if (a->status == 404 && a->error && strstr(a->error, "image")) {
    eng_op_fail(&j->op, ENG_ERR_NOTFOUND, "%s: image not present; pull or import it first",
                a->error);
    return;
  }
  if (failed(j, a, "creating the container")) return;
  if (!have) {
    eng_op_fail(&j->op, ENG_ERR_PROTOCOL,
                "creating the container %s: the Docker API's answer cannot be read: %s; "
                "if it exists, engine cleanup removes it", j->jid, err);
    return;
  }
  free(j->id);
  j->id = eng_xstrdup(id);
  char path[64 + DK_ID_MAX];
  snprintf(path, sizeof path, "/containers/%s/start", j->id);
  dk_request(&j->op, "POST", path, NULL, NULL, run_started, j, NULL);
}

static void remove_container(job *j, dk_cb cb) {
  char path[64 + DK_ID_MAX];
  snprintf(path, sizeof path, "/containers/%s?force=1&v=0", j->id);
  dk_request(&j->op, "DELETE", path, NULL, NULL, cb, j, NULL);
}

/* The answer of remove_container(): the removal goes into the journal once
 * the container is gone; otherwise its intent stays for engine cleanup. */
static void note_removed(job *j, const dk_answer *a) {
  if (!a->error || a->status == 404) {
    H->journal_removed(j->op.call, "container", j->jid);
    return;
  }
  H->log(j->op.call, ENG_LOG_WARN,
         "could not remove container %s: %s; `engine cleanup` removes it", j->jid, a->error);
}

/* A fresh container name for the call: Docker's [a-zA-Z0-9][a-zA-Z0-9_.-]+,
 * unique per run (the run directory's name is the run id), step and
 * attempt (random). */
static char *new_container_name(eng_call *call) {
  const char *rd = H->run_dir(call), *sid = H->step_id(call);
  const char *run = rd ? strrchr(rd, '/') : NULL;
  run = run ? run + 1 : rd ? rd : "";
  char r[48], s[64];
  const char *src[] = {run, sid ? sid : ""};
  char *dst[] = {r, s};
  size_t cap[] = {sizeof r, sizeof s};
  for (int k = 0; k < 2; k++) {
    size_t n = 0;
    for (const char *c = src[k]; *c && n + 1 < cap[k]; c++)
      dst[k][n++] = ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                     (*c >= '0' && *c <= '9') || *c == '_' || *c == '.' || *c == '-')
                        ? *c : '_';
    dst[k][n] = '\0';
  }
  unsigned char rnd[4];
  if (getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != (ssize_t)sizeof rnd) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned v = (unsigned)ts.tv_nsec ^ ((unsigned)getpid() << 16) ^ (unsigned)ts.tv_sec;
    memcpy(rnd, &v, sizeof rnd);
  }
  return eng_asprintf("engine-%s-%s-%02x%02x%02x%02x", r, s, rnd[0], rnd[1], rnd[2],
                      rnd[3]);
}

/* Create a throwaway container from body (stolen), journaled first; then
 * run_created() starts it and goes on with j->next. disposition: the
 * intent's "disposition", or NULL for the action's default. */
static void create_journaled(job *j, json_t *body, const char *disposition) {
  free(j->jid);
  j->jid = new_container_name(j->op.call);
  json_t *d = json_pack("{s:{s:s, s:{s:s, s:b}}}", "undo", "action", "docker.remove", "with",
                        "container", j->jid, "force", 1);
  if (disposition) json_object_set_new(d, "disposition", json_string(disposition));
  j->token = H->journal_intent(j->op.call, "container", j->jid, d);
  json_decref(d);
  if (j->token < 0) { /* unrecorded: nothing could clean it up (the host said why) */
    json_decref(body);
    eng_op_finish(&j->op, ENG_ERR_IO);
    return;
  }
  char path[160];
  snprintf(path, sizeof path, "/containers/create?name=%s", j->jid); /* URL-safe */
  dk_request(&j->op, "POST", path, body, NULL, run_created, j, NULL);
}

/* ---- volume_check -------------------------------------------------------------------- */

static void check_removed(void *ud, const dk_answer *a) {
  job *j = ud;
  note_removed(j, a);
  char *out = stdout_text(j);
  /* the script prints "PG=<version>" then the top-level names */
  const char *pg = strstr(out, "PG=");
  char ver[32] = "";
  if (pg) sscanf(pg + 3, "%31[^\n]", ver);
  json_t *files = json_array();
  bool base = false, global = false, wal = false;
  char *save = NULL;
  for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    if (!strncmp(l, "PG=", 3)) continue;
    json_array_append_new(files, json_string(l));
    if (!strcmp(l, "base")) base = true;
    if (!strcmp(l, "global")) global = true;
    if (!strcmp(l, "pg_wal")) wal = true;
  }
  free(out);
  bool empty = json_array_size(files) == 0;
  H->output(j->op.call, "exists", json_true());
  H->output(j->op.call, "empty", json_boolean(empty));
  H->output(j->op.call, "pg_version", json_string(ver));
  H->output(j->op.call, "files", files);
  bool cluster = *ver && base && global;
  H->output(j->op.call, "postgres_cluster", json_boolean(cluster));
  H->output(j->op.call, "pg_wal", json_boolean(wal));
  const char *expect = pstr(j, "expect");
  if (expect && !strcmp(expect, "postgres_cluster") && !cluster) {
    eng_op_fail(&j->op, ENG_ERR_FAILED,
                "volume '%s' does not hold a PostgreSQL cluster (%s%s%s)", pstr(j, "volume"),
                empty ? "it is empty" : !*ver ? "no PG_VERSION" : "",
                !empty && *ver && !base ? "no base/" : "", !empty && *ver && base && !global ? "no global/" : "");
    return;
  }
  if (expect && !strcmp(expect, "non_empty") && empty) {
    eng_op_fail(&j->op, ENG_ERR_FAILED, "volume '%s' is empty", pstr(j, "volume"));
    return;
  }
  eng_op_finish(&j->op, ENG_OK);
}

static void check_ran(job *j) { remove_container(j, check_removed); }

static void check_with_image(job *j, const char *image) {
  char bind[600];
  snprintf(bind, sizeof bind, "%s:/engine-volume:ro", pstr(j, "volume"));
  json_t *body = json_pack(
      "{s:s, s:[s,s,s], s:[s], s:{s:[s], s:s}, s:{s:s}}", "Image", image, "Cmd", "sh", "-c",
      "cat /engine-volume/PG_VERSION 2>/dev/null | sed 's/^/PG=/'; ls -A /engine-volume",
      "Entrypoint", "", "HostConfig", "Binds", bind, "NetworkMode", "none", "Labels",
      "engine.run", H->step_id(j->op.call));
  j->next = check_ran;
  create_journaled(j, body, "temporary"); /* only ever a means to look */
}

/* No container uses the volume and no `image` was given: the engine's
 * disk usage says whether it holds anything. Empty: it is no cluster (no
 * PG_VERSION), said as such; not empty: only a look inside can tell. */
static void check_usage(void *ud, const dk_answer *a) {
  job *j = ud;
  const char *vol = pstr(j, "volume");
  if (failed(j, a, "reading the volumes' disk usage (GET /system/df)")) return;
  dk_volume_list l = {0};
  char err[256];
  if (dk_answer_volumes(a->json, &l, err, sizeof err) != 0) {
    unreadable(j, "reading the volumes' disk usage", err);
    return;
  }
  int64_t size = -1;
  for (size_t i = 0; i < l.n; i++)
    if (!strcmp(l.v[i].name, vol)) size = l.v[i].size;
  dk_volume_list_free(&l);
  if (size != 0) {
    char held[96] = "exists (the engine does not say how much it holds)";
    if (size > 0) snprintf(held, sizeof held, "holds %lld bytes", (long long)size);
    eng_op_fail(&j->op, ENG_ERR_INVALID,
                "volume '%s' %s, but no container uses it, so there is no image to "
                "look inside with: give `image` (one with sh and ls) to mount it "
                "read-only", vol, held);
    return;
  }
  H->output(j->op.call, "exists", json_true());
  H->output(j->op.call, "empty", json_true());
  H->output(j->op.call, "pg_version", json_string(""));
  H->output(j->op.call, "files", json_array());
  H->output(j->op.call, "postgres_cluster", json_false());
  H->output(j->op.call, "pg_wal", json_false());
  const char *expect = pstr(j, "expect");
  if (expect) {
    eng_op_fail(&j->op, ENG_ERR_FAILED,
                "volume '%s' %s: it exists and is empty (0 bytes; no container uses it)",
                vol, !strcmp(expect, "postgres_cluster") ? "does not hold a PostgreSQL cluster"
                                                         : "is empty");
    return;
  }
  eng_op_finish(&j->op, ENG_OK);
}

static void check_users(void *ud, const dk_answer *a) {
  job *j = ud;
  if (failed(j, a, "listing containers")) return;
  dk_container_list l = {0};
  char err[256];
  if (dk_answer_containers(a->json, &l, err, sizeof err) != 0) {
    unreadable(j, "listing the containers using the volume", err);
    return;
  }
  const char *img = NULL;
  for (size_t i = 0; i < l.n && !img; i++)
    if (*l.v[i].image) img = l.v[i].image;
  if (!img) /* no image to look inside with: how much it holds, then */
    dk_request(&j->op, "GET", "/system/df?type=volume", NULL, NULL, check_usage, j, NULL);
  else
    check_with_image(j, img);
  dk_container_list_free(&l);
}

static void check_volume(void *ud, const dk_answer *a) {
  job *j = ud;
  if (a->status == 404) {
    H->output(j->op.call, "exists", json_false());
    H->output(j->op.call, "empty", json_true());
    H->output(j->op.call, "pg_version", json_string(""));
    H->output(j->op.call, "files", json_array());
    H->output(j->op.call, "postgres_cluster", json_false());
    if (pstr(j, "expect")) {
      eng_op_fail(&j->op, ENG_ERR_NOTFOUND, "volume '%s' does not exist", pstr(j, "volume"));
      return;
    }
    eng_op_finish(&j->op, ENG_OK);
    return;
  }
  if (failed(j, a, "inspecting the volume")) return;
  if (pstr(j, "image")) {
    check_with_image(j, pstr(j, "image"));
    return;
  }
  list_filtered(j, json_pack("{s:[s]}", "volume", pstr(j, "volume")), check_users);
}

static int volume_check_start(eng_call *call, const json_t *p) {
  job *j = job_new(call, p);
  char *e = dk_escape(pstr(j, "volume"));
  char *path = eng_asprintf("/volumes/%s", e);
  dk_request(&j->op, "GET", path, NULL, NULL, check_volume, j, NULL);
  free(path);
  free(e);
  return ENG_OK;
}

/* ---- exec ---------------------------------------------------------------------------- */

static void exec_inspected(void *ud, const dk_answer *a);
static void out_flush(job *j);

static void exec_poll(eng_op *op) {
  job *j = (job *)(void *)op;
  char path[256];
  snprintf(path, sizeof path, "/exec/%s/json", j->exec_id);
  dk_request(&j->op, "GET", path, NULL, NULL, exec_inspected, j, NULL);
}

static void exec_finish(job *j) {
  char *out = pstr(j, "stdout_file") ? eng_xstrdup("") : stdout_text(j);
  char *tail = tail_text(j);
  H->output(j->op.call, "exit_code", json_integer(j->exit_code));
  H->output(j->op.call, "stdout", json_string(out));
  H->output(j->op.call, "stderr_tail", json_string(tail));
  if (j->exit_code != 0)
    eng_op_fail(&j->op, ENG_ERR_FAILED, "the command exited with %d in container %s%s%s%s",
                j->exit_code, j->name,
                j->exit_code == 126 || j->exit_code == 127 ? " (not found or not executable)" : "",
                *tail ? ": " : "", tail);
  else
    eng_op_finish(&j->op, ENG_OK);
  free(out);
  free(tail);
}

static void exec_stored(void *ud, int rc, json_t *info) {
  job *j = ud;
  j->out = NULL;
  if (rc != ENG_OK) {
    json_decref(info);
    eng_op_finish(&j->op, rc);
    return;
  }
  H->output(j->op.call, "stdout_file", info);
  exec_finish(j);
}

static void exec_inspected(void *ud, const dk_answer *a) {
  job *j = ud;
  if (failed(j, a, "inspecting the exec")) return;
  dk_exec_state st;
  char err[256];
  if (dk_answer_exec(a->json, &st, err, sizeof err) != 0) {
    char what[600];
    snprintf(what, sizeof what, "reading the exit code of the command in container %s",
             j->name);
    unreadable(j, what, err);
    return;
  }
  if (st.running) {
    if (j->polls++ < DK_EXEC_POLLS) {
      poll_later(j, DK_EXEC_POLL_MS, exec_poll);
      return;
    }
    eng_op_fail(&j->op, ENG_ERR_FAILED,
                "the command in container %s still runs %d s after its output ended; "
                "its exit code is unknown", j->name, DK_EXEC_POLLS * DK_EXEC_POLL_MS / 1000);
    return;
  }
  j->exit_code = st.exit_code;
  if (j->out) {
    if (j->exit_code != 0) {
      H->stream_abort(j->out);
      j->out = NULL;
      exec_finish(j);
      return;
    }
    if (j->write_pending || j->pend.len) { /* the last bytes first */
      out_flush(j);
      poll_later(j, DK_FLUSH_POLL_MS, exec_poll);
      return;
    }
    if (H->stream_finish(j->out, exec_stored, j) != ENG_OK) {
      j->out = NULL;
      eng_op_fail(&j->op, ENG_ERR_IO, "cannot commit stdout_file");
    }
    return;
  }
  exec_finish(j);
}

/* stdout to a stream: demultiplexed bytes gather in `pend` while one write
 * (of out_buf) is under way; past DK_PEND_MAX the transfer pauses until the
 * write is taken. */
static void out_flush(job *j);

static void out_written(void *ud, int rc) {
  job *j = ud;
  j->write_pending = false;
  if (rc != ENG_OK) {
    eng_op_finish(&j->op, rc);
    return;
  }
  out_flush(j);
  dk_resume(j->stream_req);
}

static void out_flush(job *j) {
  if (j->write_pending || !j->pend.len || !j->out) return;
  eng_strbuf t = j->out_buf; /* in flight <- pending; pending reuses the memory */
  j->out_buf = j->pend;
  j->pend = t;
  j->pend.len = 0;
  if (j->pend.data) j->pend.data[0] = '\0';
  j->write_pending = true;
  if (H->stream_write(j->out, j->out_buf.data, j->out_buf.len, out_written, j) != ENG_OK) {
    j->write_pending = false;
    eng_op_fail(&j->op, ENG_ERR_IO, "cannot write stdout_file");
  }
}

static void emit_stream(void *ud, int stream, const char *b, size_t n) {
  job *j = ud;
  if (stream != 1) {
    emit_buf(ud, stream, b, n);
    return;
  }
  eng_strbuf_add(&j->pend, b, n);
}

static int exec_data(void *ud, const char *buf, size_t len) {
  job *j = ud;
  if (j->op.finished) return 0;
  if (dk_demux_feed(&j->demux, buf, len, j->out ? emit_stream : emit_buf, j) != 0) {
    eng_op_fail(&j->op, ENG_ERR_PROTOCOL, "the exec output is not a framed stream");
    return 0;
  }
  if (!j->out) return 0;
  out_flush(j);
  return j->pend.len > DK_PEND_MAX ? 1 : 0;
}

static void exec_streamed(void *ud, const dk_answer *a) {
  job *j = ud;
  j->stream_req = NULL;
  if (failed(j, a, "running the exec")) return;
  if (j->demux.have || j->demux.left) {
    eng_op_fail(&j->op, ENG_ERR_PROTOCOL,
                "the output of the command in %s was cut in the middle of a "
                "frame (%zu bytes missing): the connection to the Docker API "
                "broke; nothing was written", j->name,
                j->demux.left ? j->demux.left : 8 - j->demux.have);
    return;
  }
  exec_poll(&j->op);
}

static void exec_created(void *ud, const dk_answer *a) {
  job *j = ud;
  if (a->status == 409 || (a->error && strstr(a->error, "running"))) {
    /* it stopped (or vanished) since it was inspected */
    eng_op_fail(&j->op, ENG_ERR_FAILED, "container %s is not running any more: %s", j->name,
                a->error);
    return;
  }
  if (failed(j, a, "creating the exec")) return;
  char id[DK_ID_MAX + 1], err[256];
  if (dk_answer_id(a->json, id, err, sizeof err) != 0) {
    char what[600];
    snprintf(what, sizeof what, "creating the exec in container %s", j->name);
    unreadable(j, what, err);
    return;
  }
  free(j->exec_id);
  j->exec_id = eng_xstrdup(id);
  char path[256];
  snprintf(path, sizeof path, "/exec/%s/start", j->exec_id);
  dk_request(&j->op, "POST", path, json_pack("{s:b, s:b}", "Detach", 0, "Tty", 0),
             exec_data, exec_streamed, j, &j->stream_req);
}

static json_t *argv_of(const json_t *cmd) {
  if (json_is_array(cmd)) return json_deep_copy(cmd);
  return json_pack("[s,s,s]", "sh", "-c", json_string_value(cmd) ? json_string_value(cmd) : "");
}

static json_t *env_of(const json_t *env) {
  json_t *out = json_array();
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)env, k, v) {
    char *s = json_is_string(v) ? eng_xstrdup(json_string_value(v))
                                : json_dumps(v, JSON_ENCODE_ANY);
    json_array_append_new(out, json_sprintf("%s=%s", k, s ? s : ""));
    free(s);
  }
  return out;
}

static void exec_go(job *j) {
  if (!j->info.running) {
    eng_op_fail(&j->op, ENG_ERR_FAILED, "container %s is not running (%s): start it first",
                j->name, *j->info.state ? j->info.state : "?");
    return;
  }
  if (pstr(j, "stdout_file") &&
      H->stream_open_write(j->op.call, pstr(j, "stdout_file"), NULL, &j->out) != ENG_OK) {
    eng_op_finish(&j->op, ENG_ERR_IO);
    return;
  }
  json_t *body = json_pack("{s:b, s:b, s:o, s:o}", "AttachStdout", 1, "AttachStderr", 1, "Cmd",
                           argv_of(json_object_get(j->p, "command")), "Env",
                           env_of(json_object_get(j->p, "env")));
  if (pstr(j, "user")) json_object_set_new(body, "User", json_string(pstr(j, "user")));
  char path[256];
  snprintf(path, sizeof path, "/containers/%s/exec", j->id);
  dk_request(&j->op, "POST", path, body, NULL, exec_created, j, NULL);
}

/* The command line of exec/run goes through the guards like a shell's. */
static char *command_line(const json_t *cmd) {
  if (json_is_string(cmd)) return eng_xstrdup(json_string_value(cmd));
  eng_strbuf b = {0};
  size_t i;
  json_t *a;
  json_array_foreach(cmd, i, a) { /* each word single-quoted for sh */
    const char *w = json_string_value(a) ? json_string_value(a) : "";
    eng_strbuf_adds(&b, i ? " '" : "'");
    for (const char *p = w; *p; p++) {
      if (*p == '\'') eng_strbuf_adds(&b, "'\\''");
      else eng_strbuf_add(&b, p, 1);
    }
    eng_strbuf_adds(&b, "'");
  }
  return eng_strbuf_steal(&b);
}

static int guard_command(eng_call *call, const json_t *cmd) {
  char *line = command_line(cmd);
  int g = H->guard_target(call, ENG_TARGET_COMMAND, line, NULL);
  free(line);
  return g;
}

static int exec_start(eng_call *call, const json_t *p) {
  if (guard_command(call, json_object_get(p, "command")) != ENG_OK) return ENG_ERR_REFUSED;
  resolve(job_new(call, p), exec_go);
  return ENG_OK;
}

/* ---- stop / start / restart ------------------------------------------------------------ */

static void lifecycle_check(void *ud, const dk_answer *a);

static void lifecycle_poll(eng_op *op) {
  job *j = (job *)(void *)op;
  char path[256];
  snprintf(path, sizeof path, "/containers/%s/json", j->id);
  dk_request(&j->op, "GET", path, NULL, NULL, lifecycle_check, j, NULL);
}

static void lifecycle_check(void *ud, const dk_answer *a) {
  job *j = ud;
  if (failed(j, a, "inspecting the container")) return;
  dk_container c = {0};
  char err[256];
  if (dk_answer_container(a->json, &c, err, sizeof err) != 0) {
    char what[600];
    snprintf(what, sizeof what, "inspecting container %s", j->name);
    unreadable(j, what, err);
    return;
  }
  bool want_health = json_is_true(json_object_get(j->p, "wait_healthy"));
  bool ready = !strcmp(c.state, "running") &&
               (!strcmp(c.health, "none") || !strcmp(c.health, "healthy"));
  if (want_health && !ready && strcmp(c.state, "exited") &&
      j->polls++ < DK_HEALTH_POLLS) {
    poll_later(j, DK_HEALTH_POLL_MS, lifecycle_poll);
  } else {
    H->output(j->op.call, "state", json_string(c.state));
    H->output(j->op.call, "health", json_string(c.health));
    if (want_health && !ready)
      eng_op_fail(&j->op, ENG_ERR_FAILED,
                  "container %s is %s (health %s), not running and healthy", j->name,
                  *c.state ? c.state : "?", c.health);
    else
      eng_op_finish(&j->op, ENG_OK);
  }
  dk_container_free(&c);
}

static void lifecycle_done(void *ud, const dk_answer *a) {
  job *j = ud;
  if (a->status != 304 && failed(j, a, "changing the container's state")) return;
  lifecycle_poll(&j->op);
}

static void lifecycle_go(job *j) {
  const char *what = json_string_value(json_object_get(j->p, "_action"));
  char path[256];
  if (!strcmp(what, "start"))
    snprintf(path, sizeof path, "/containers/%s/start", j->id);
  else /* always send t: Podman's restart without it kills at once */
    snprintf(path, sizeof path, "/containers/%s/%s?t=%lld", j->id, what,
             (long long)(json_integer_value(json_object_get(j->p, "timeout")) / 1000));
  dk_request(&j->op, "POST", path, NULL, NULL, lifecycle_done, j, NULL);
}

static int lifecycle(eng_call *call, const json_t *p, const char *what) {
  json_t *q = json_deep_copy(p);
  json_object_set_new(q, "_action", json_string(what));
  job *j = job_new(call, q);
  json_decref(q);
  resolve(j, lifecycle_go);
  return ENG_OK;
}

static int stop_start(eng_call *c, const json_t *p) { return lifecycle(c, p, "stop"); }
static int start_start(eng_call *c, const json_t *p) { return lifecycle(c, p, "start"); }
static int restart_start(eng_call *c, const json_t *p) { return lifecycle(c, p, "restart"); }

/* ---- run and remove --------------------------------------------------------------------- */

static void run_gone(void *ud, const dk_answer *a) {
  job *j = ud;
  note_removed(j, a);
  char *tail = tail_text(j);
  H->output(j->op.call, "exit_code", json_integer(j->exit_code));
  H->output(j->op.call, "stdout", stdout_json(j));
  H->output(j->op.call, "stderr_tail", json_string(tail));
  if (j->exit_code != 0)
    eng_op_fail(&j->op, ENG_ERR_FAILED, "the container exited with %d%s%s", j->exit_code,
                *tail ? ": " : "", tail);
  else
    eng_op_finish(&j->op, ENG_OK);
  free(tail);
}

static void run_done(job *j) {
  if (json_is_false(json_object_get(j->p, "remove"))) {
    H->output(j->op.call, "container", json_string(j->id));
    H->output(j->op.call, "exit_code", json_integer(j->exit_code));
    H->output(j->op.call, "stdout", stdout_json(j));
    eng_op_finish(&j->op, j->exit_code ? ENG_ERR_FAILED : ENG_OK);
    return;
  }
  remove_container(j, run_gone);
}

static int run_start(eng_call *call, const json_t *p) {
  json_t *binds = json_array();
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(p, "volumes"), i, v) {
    const char *spec = json_string_value(v);
    if (!spec) continue;
    /* NAME:/path[:ro|rw]: read-only unless asked; a source that is a path
     * is a bind mount, held to protected_paths (the engine reads the
     * declared volume list the same way for `engine plan` and the run's
     * start) */
    const char *c1 = strchr(spec, ':');
    const char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    bool rw = c2 && !strcmp(c2 + 1, "rw");
    char *name = eng_xstrndup(spec, c1 ? (size_t)(c1 - spec) : strlen(spec));
    if (rw && H->guard_target(call, name[0] == '/' ? ENG_TARGET_FILE : ENG_TARGET_VOLUME, name,
                              "mounted read-write by docker.run") != ENG_OK) {
      free(name);
      json_decref(binds);
      return ENG_ERR_REFUSED;
    }
    char *bind = eng_xstrndup(spec, c2 ? (size_t)(c2 - spec) : strlen(spec));
    json_array_append_new(binds, json_sprintf("%s:%s", bind, rw ? "rw" : "ro"));
    free(bind);
    free(name);
  }
  const json_t *cmd = json_object_get(p, "command");
  if (cmd && !json_is_null(cmd) && guard_command(call, cmd) != ENG_OK) {
    json_decref(binds);
    return ENG_ERR_REFUSED;
  }
  job *j = job_new(call, p);
  json_t *body = json_pack("{s:s, s:{s:o, s:s}, s:o, s:{s:s}}", "Image", pstr(j, "image"),
                           "HostConfig", "Binds", binds, "NetworkMode",
                           pstr(j, "network") ? pstr(j, "network") : "bridge", "Env",
                           env_of(json_object_get(p, "env")), "Labels", "engine.step",
                           H->step_id(call));
  if (cmd && !json_is_null(cmd)) json_object_set_new(body, "Cmd", argv_of(cmd));
  j->next = run_done;
  create_journaled(j, body, NULL);
  return ENG_OK;
}

static void removed(void *ud, const dk_answer *a) {
  job *j = ud;
  if (a->status != 404 && failed(j, a, "removing the container")) return;
  H->journal_removed(j->op.call, "container", j->jid);
  H->output(j->op.call, "removed", json_boolean(a->status != 404));
  eng_op_finish(&j->op, ENG_OK);
}

/* Resolved: the guards decide on what the journal knows it by (the name
 * of a container this run created, else the id), with the other as
 * evidence, before anything is removed. */
static void remove_go(job *j) {
  bool by_name = *j->name && H->journal_owned(j->op.call, "container", j->name);
  j->jid = eng_xstrdup(by_name ? j->name : j->id);
  if (H->guard_target(j->op.call, ENG_TARGET_CONTAINER, j->jid,
                      by_name ? j->id : j->name) != ENG_OK) {
    eng_op_finish(&j->op, ENG_ERR_REFUSED);
    return;
  }
  char path[256];
  snprintf(path, sizeof path, "/containers/%s?force=%d&v=%d", j->id,
           json_is_true(json_object_get(j->p, "force")),
           json_is_true(json_object_get(j->p, "volumes")));
  dk_request(&j->op, "DELETE", path, NULL, NULL, removed, j, NULL);
}

/* No such container. One this run journaled may never have been created
 * (the engine died, or its answer was lost, between the intent and the
 * create), or is gone already: nothing to remove, and the undo succeeds. */
static bool remove_missing(job *j) {
  const char *ref = pstr(j, "container");
  if (!strncmp(ref, "compose:", 8) || !H->journal_owned(j->op.call, "container", ref))
    return false;
  H->journal_removed(j->op.call, "container", ref);
  H->log(j->op.call, ENG_LOG_INFO, "container %s does not exist (any more)", ref);
  H->output(j->op.call, "removed", json_false());
  eng_op_finish(&j->op, ENG_OK);
  return true;
}

static int remove_start(eng_call *call, const json_t *p) {
  job *j = job_new(call, p);
  j->missing = remove_missing;
  resolve(j, remove_go);
  return ENG_OK;
}

/* ---- declarations ------------------------------------------------------------------------ */

static int init(const eng_host *h) {
  dk_host = h;
  return 0;
}


#define P_CONTAINER                                                            \
  {.name = "container", .type = ENG_T_STRING, .flags = ENG_P_REQUIRED,         \
   .target = ENG_TARGET_CONTAINER,                                             \
   .doc = "name, id, or compose:PROJECT/SERVICE"}

static const char *const expects[] = {"postgres_cluster", "non_empty", NULL};

static const eng_param containers_params[] = {
    {.name = "name", .type = ENG_T_STRING, .doc = "glob on the container's name"},
    {.name = "label", .type = ENG_T_STRING, .doc = "KEY or KEY=VALUE"},
    {.name = "compose_project", .type = ENG_T_STRING, .doc = "com.docker.compose.project"},
    {.name = "compose_service", .type = ENG_T_STRING, .doc = "com.docker.compose.service"},
    {.name = "all", .type = ENG_T_BOOL, .def = "false", .doc = "stopped ones too"}};
static const eng_output containers_outputs[] = {
    {"containers", ENG_T_LIST, "id, name, image, state, status, mounts"},
    {"count", ENG_T_INT, "how many"}};
static const eng_param inspect_params[] = {P_CONTAINER};
static const eng_output inspect_outputs[] = {
    {"id", ENG_T_STRING, "container id"}, {"name", ENG_T_STRING, "name"},
    {"state", ENG_T_STRING, "running, exited..."}, {"health", ENG_T_STRING, "healthy, unhealthy, starting or none"},
    {"mounts", ENG_T_LIST, "type, name (volume), source, destination, rw"},
    {"image", ENG_T_STRING, "image"}, {"env_keys", ENG_T_LIST, "environment variable names (never values)"},
    {"api_version", ENG_T_STRING, "Docker API version used"}};
static const eng_param volumes_params[] = {
    {.name = "match", .type = ENG_T_STRING, .doc = "glob, or /regex/"}};
static const eng_output volumes_outputs[] = {
    {"volumes", ENG_T_LIST, "name, driver, mountpoint"}, {"count", ENG_T_INT, "how many"}};
static const eng_param volume_check_params[] = {
    {.name = "volume", .type = ENG_T_STRING, .flags = ENG_P_REQUIRED, .target = ENG_TARGET_VOLUME,
     .doc = "the volume (mounted read-only in a throwaway container)"},
    {.name = "expect", .type = ENG_T_STRING, .values = expects,
     .doc = "fail unless it holds a PostgreSQL cluster / is not empty"},
    {.name = "image", .type = ENG_T_STRING,
     .doc = "image with sh and ls; default: that of a container using the volume "
            "(when none does, an empty volume is reported from the engine's disk "
            "usage, and one that holds data needs `image`)"}};
static const eng_output volume_check_outputs[] = {
    {"exists", ENG_T_BOOL, "the volume exists"}, {"empty", ENG_T_BOOL, "it holds nothing"},
    {"pg_version", ENG_T_STRING, "PG_VERSION's content"}, {"files", ENG_T_LIST, "top-level names"},
    {"postgres_cluster", ENG_T_BOOL, "PG_VERSION, base/ and global/ are there"},
    {"pg_wal", ENG_T_BOOL, "pg_wal/ is there"}};
static const eng_param exec_params[] = {
    P_CONTAINER,
    {.name = "command", .type = ENG_T_ANY, .items = ENG_ITEMS_STRING, .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_COMMAND,
     .doc = "a string (run by sh -c) or an argv list; guarded like a shell step"},
    {.name = "user", .type = ENG_T_STRING, .doc = "user inside the container"},
    {.name = "env", .type = ENG_T_MAP, .doc = "extra environment"},
    {.name = "stdout_file", .type = ENG_T_STRING, .target = ENG_TARGET_FILE,
     .doc = "where stdout goes: a local path or a stream URL (s3://...)"}};
static const eng_output exec_outputs[] = {
    {"exit_code", ENG_T_INT, "the command's exit code"},
    {"stdout", ENG_T_STRING, "stdout (without stdout_file; first 16 MB)"},
    {"stderr_tail", ENG_T_STRING, "the end of stderr"},
    {"stdout_file", ENG_T_MAP, "stream info (url, bytes, sha256)"}};
static const eng_param lifecycle_params[] = {
    P_CONTAINER,
    {.name = "timeout", .type = ENG_T_DURATION, .def = "\"10s\"", .flags = ENG_P_MIN | ENG_P_MAX,
     .min = 0, .max = 3600000, .doc = "grace before the kill (always sent)"},
    {.name = "wait_healthy", .type = ENG_T_BOOL, .def = "false",
     .doc = "wait until healthy (or running, without a healthcheck)"}};
static const eng_output lifecycle_outputs[] = {
    {"state", ENG_T_STRING, "state afterwards"}, {"health", ENG_T_STRING, "health afterwards"}};
static const eng_param run_params[] = {
    {.name = "image", .type = ENG_T_STRING, .flags = ENG_P_REQUIRED, .doc = "image (present locally)"},
    {.name = "command", .type = ENG_T_ANY, .items = ENG_ITEMS_STRING, .target = ENG_TARGET_COMMAND,
     .doc = "a string (sh -c) or argv; default the image's; guarded like a shell step"},
    {.name = "volumes", .type = ENG_T_LIST, .items = ENG_ITEMS_STRING, .target = ENG_TARGET_VOLUME,
     .doc = "NAME:/path (read-only) or NAME:/path:rw; a /host/path source is a bind mount; "
            "rw of a protected volume (or protected_paths path) is refused"},
    {.name = "env", .type = ENG_T_MAP, .doc = "environment"},
    {.name = "network", .type = ENG_T_STRING, .doc = "network mode (default bridge)"},
    {.name = "remove", .type = ENG_T_BOOL, .def = "true", .doc = "remove the container when it ended"}};
static const eng_output run_outputs[] = {
    {"exit_code", ENG_T_INT, "exit code"}, {"stdout", ENG_T_STRING, "output (first 16 MB)"},
    {"stderr_tail", ENG_T_STRING, "end of stderr"}, {"container", ENG_T_STRING, "id (remove: false)"}};
static const eng_param remove_params[] = {
    P_CONTAINER,
    {.name = "force", .type = ENG_T_BOOL, .def = "false", .doc = "remove a running container"},
    {.name = "volumes", .type = ENG_T_BOOL, .def = "false", .doc = "its anonymous volumes too"}};
static const eng_output remove_outputs[] = {{"removed", ENG_T_BOOL, "it existed and was removed"}};

#define ACTION(n, d, side, fl, prm, out, fn)                                   \
  {.name = n, .doc = d, .side_effect = side, .flags = fl, .params = prm,       \
   .n_params = ENG_COUNT(prm), .outputs = out, .n_outputs = ENG_COUNT(out),    \
   .start = fn}

static const eng_action actions[] = {
    ACTION("containers", "list containers (by name, label, compose project/service)",
           ENG_SIDE_READ_ONLY, ENG_A_REPEAT_SAFE, containers_params, containers_outputs, containers_start),
    ACTION("inspect", "a container's state, health, mounts, image and env keys",
           ENG_SIDE_READ_ONLY, ENG_A_REPEAT_SAFE, inspect_params, inspect_outputs, inspect_start),
    ACTION("volumes", "list volumes (glob or /regex/)", ENG_SIDE_READ_ONLY, ENG_A_REPEAT_SAFE,
           volumes_params, volumes_outputs, volumes_start),
    ACTION("volume_check", "what a volume holds (mounted read-only in a throwaway container)",
           ENG_SIDE_READ_ONLY, ENG_A_REPEAT_SAFE, volume_check_params, volume_check_outputs,
           volume_check_start),
    ACTION("exec", "run a command in a running container", ENG_SIDE_EXTERNAL, 0, exec_params,
           exec_outputs, exec_start),
    ACTION("stop", "stop a container", ENG_SIDE_DISRUPTIVE, ENG_A_REPEAT_SAFE, lifecycle_params,
           lifecycle_outputs, stop_start),
    ACTION("start", "start a container", ENG_SIDE_DISRUPTIVE, ENG_A_REPEAT_SAFE, lifecycle_params,
           lifecycle_outputs, start_start),
    ACTION("restart", "restart a container", ENG_SIDE_DISRUPTIVE, ENG_A_REPEAT_SAFE,
           lifecycle_params, lifecycle_outputs, restart_start),
    {.name = "run",
     .doc = "run a throwaway container (journaled, temporary: removed when the run ends "
            "unless the step says keep: true)",
     .side_effect = ENG_SIDE_CREATES, .params = run_params, .n_params = ENG_COUNT(run_params),
     .outputs = run_outputs, .n_outputs = ENG_COUNT(run_outputs), .start = run_start,
     .creates = ENG_TEMPORARY},
    ACTION("remove", "remove a container (one this run created needs no flag; any other "
           "--allow-destructive)", ENG_SIDE_DESTRUCTIVE, ENG_A_REPEAT_SAFE, remove_params,
           remove_outputs, remove_start),
};

static const eng_plugin desc = {ENG_PLUGIN_HEADER, .name = "docker", .version = "1",
                                .doc = "containers, volumes and exec through the Docker Engine API",
                                .actions = actions, .n_actions = ENG_COUNT(actions),
                                .init = init};
ENG_PLUGIN_DEFINE(desc)
