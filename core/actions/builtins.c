/* builtins.c - the built-in actions (shell, http, lua, assert, approve,
 * sleep, and files from files.c), declared through the same descriptor as
 * plugin actions. */
#include "actions/actions.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define H eng__host()
#define STDOUT_KEEP (64u * 1024u)

/* ---- shell ------------------------------------------------------------- */

typedef struct shell_job {
  eng_call *call;
  eng__buf out;
  bool truncated;
  char **argv;
  char **env;
  int out_fd;
} shell_job;

static void free_strv(char **v) {
  for (size_t i = 0; v && v[i]; i++) free(v[i]);
  free(v);
}

static void shell_free(shell_job *j) {
  eng__buf_free(&j->out);
  free_strv(j->argv);
  free_strv(j->env);
  if (j->out_fd >= 0) close(j->out_fd);
  free(j);
}

static void shell_stdout(void *ud, const char *buf, size_t len) {
  shell_job *j = ud;
  if (j->out.len >= STDOUT_KEEP) {
    j->truncated = true;
    return;
  }
  size_t take = len;
  if (j->out.len + take > STDOUT_KEEP) {
    take = STDOUT_KEEP - j->out.len;
    j->truncated = true;
  }
  eng__buf_add(&j->out, buf, take);
}

static void shell_exit(void *ud, int64_t status, int sig);

static int shell_start(eng_call *call, const json_t *p) {
  const json_t *cmd = json_object_get(p, "command");
  shell_job *j = eng__xcalloc(1, sizeof *j);
  j->call = call;
  j->out_fd = -1;
  if (json_is_string(cmd)) {
    j->argv = eng__xcalloc(4, sizeof *j->argv);
    j->argv[0] = eng__xstrdup("/bin/sh");
    j->argv[1] = eng__xstrdup("-c");
    j->argv[2] = eng__xstrdup(json_string_value(cmd));
  } else if (json_is_array(cmd) && json_array_size(cmd) > 0) {
    size_t n = json_array_size(cmd);
    j->argv = eng__xcalloc(n + 1, sizeof *j->argv);
    for (size_t i = 0; i < n; i++) {
      json_t *a = json_array_get(cmd, i);
      if (json_is_string(a)) j->argv[i] = eng__xstrdup(json_string_value(a));
      else j->argv[i] = json_dumps(a, JSON_ENCODE_ANY | JSON_COMPACT);
    }
  } else {
    H->fail(call, "'command' must be a string (run by /bin/sh -c) or a "
                  "non-empty list (argv)");
    shell_free(j);
    return ENG_ERR_INVALID;
  }
  /* Guards read the whole line (forbidden commands, and the targets of the
   * tools they know), with the step's environment and directory. */
  char *line = eng__command_line(cmd);
  char *env_text = eng__command_env(p);
  int g = H->guard_target(call, ENG_TARGET_COMMAND, line, env_text);
  free(line);
  free(env_text);
  if (g != ENG_OK) {
    shell_free(j);
    return ENG_ERR_REFUSED;
  }
  const json_t *env = json_object_get(p, "env");
  size_t ne = json_object_size(env);
  j->env = eng__xcalloc(ne + 4, sizeof *j->env);
  size_t k = 0;
  const char *key;
  json_t *val;
  json_object_foreach((json_t *)env, key, val) {
    if (json_is_string(val))
      j->env[k++] = eng__asprintf("%s=%s", key, json_string_value(val));
    else {
      char *s = json_dumps(val, JSON_ENCODE_ANY | JSON_COMPACT);
      j->env[k++] = eng__asprintf("%s=%s", key, s ? s : "");
      free(s);
    }
  }
  j->env[k++] = eng__asprintf("ENGINE_RUN_DIR=%s", H->run_dir(call));
  j->env[k++] = eng__asprintf("ENGINE_STEP=%s", H->step_id(call));
  const char *of = json_string_value(json_object_get(p, "stdout_file"));
  if (of && *of) {
    j->out_fd = open(of, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (j->out_fd < 0) {
      H->fail(call, "cannot open stdout_file '%s': %s", of, strerror(errno));
      shell_free(j);
      return ENG_ERR_IO;
    }
  }
  eng_spawn_opts o = {0};
  o.size = sizeof o;
  o.argv = (const char *const *)j->argv;
  o.env = (const char *const *)j->env;
  o.cwd = json_string_value(json_object_get(p, "cwd"));
  o.stdin_fd = ENG_STDIO_NULL;
  o.stdout_fd = j->out_fd >= 0 ? j->out_fd : ENG_STDIO_PIPE;
  o.on_stdout = shell_stdout;
  o.on_exit = shell_exit;
  o.ud = j;
  eng_proc *proc = NULL;
  int rc = H->spawn(call, &o, &proc);
  if (rc != ENG_OK) {
    shell_free(j);
    return rc;
  }
  H->set_data(call, proc);
  return ENG_OK;
}

static void shell_exit(void *ud, int64_t status, int sig) {
  shell_job *j = ud;
  eng_call *call = j->call;
  eng_proc *proc = H->get_data(call);
  const char *tail = proc ? H->proc_stderr_tail(proc) : "";
  H->output(call, "exit_code", json_integer(sig ? 128 + sig : status));
  H->output(call, "stdout",
            json_stringn(j->out.data ? j->out.data : "", j->out.len));
  H->output(call, "stderr_tail", json_string(tail ? tail : ""));
  int rc = ENG_OK;
  if (H->cancelled(call)) {
    rc = ENG_ERR_CANCELLED;
    H->fail(call, "command cancelled");
  } else if (sig) {
    rc = ENG_ERR_FAILED;
    H->fail(call, "command killed by signal %d%s%s", sig,
            tail && *tail ? ": " : "", tail ? tail : "");
  } else if (status != 0) {
    rc = ENG_ERR_FAILED;
    H->fail(call, "command exited with status %lld%s%s", (long long)status,
            tail && *tail ? ": " : "", tail ? tail : "");
  }
  shell_free(j);
  H->done(call, rc);
}

/* ---- http ---------------------------------------------------------------- */

typedef struct http_job {
  eng_call *call;
  CURL *easy;
  struct curl_slist *headers;
  eng__buf body;
  char *req_body;
  char *expect_json;
  json_t *expect_status;
  uint64_t t0;
  char errbuf[CURL_ERROR_SIZE];
} http_job;

static size_t http_write(char *p, size_t sz, size_t n, void *ud) {
  http_job *j = ud;
  if (j->body.len + sz * n > (32u << 20)) return 0;
  eng__buf_add(&j->body, p, sz * n);
  return sz * n;
}

static void http_free(http_job *j) {
  if (j->easy) curl_easy_cleanup(j->easy);
  curl_slist_free_all(j->headers);
  eng__buf_free(&j->body);
  free(j->req_body);
  free(j->expect_json);
  json_decref(j->expect_status);
  free(j);
}

static bool status_expected(const json_t *exp, long st) {
  if (!exp || json_is_null(exp)) return st >= 200 && st < 300;
  if (json_is_integer(exp)) return json_integer_value(exp) == st;
  if (json_is_string(exp)) {
    const char *s = json_string_value(exp);
    if (strlen(s) == 3 && (s[1] == 'x' || s[1] == 'X'))
      return st / 100 == s[0] - '0';
    return atol(s) == st;
  }
  if (json_is_array(exp)) {
    size_t i;
    json_t *e;
    json_array_foreach(exp, i, e) if (status_expected(e, st)) return true;
  }
  return false;
}

static void http_done(void *ud, int rc, long status, const char *error) {
  http_job *j = ud;
  eng_call *call = j->call;
  int64_t elapsed = (int64_t)((uv_hrtime() - j->t0) / 1000000);
  if (rc != ENG_OK) {
    H->fail(call, "HTTP request failed: %s", error ? error : eng_strerror(rc));
    http_free(j);
    H->done(call, rc);
    return;
  }
  json_t *parsed = j->body.len ? json_loadb(j->body.data, j->body.len,
                                            JSON_DECODE_ANY, NULL)
                               : NULL;
  H->output(call, "status", json_integer(status));
  H->output(call, "body", json_stringn(j->body.data ? j->body.data : "",
                                       j->body.len));
  H->output(call, "json", parsed ? json_incref(parsed) : json_null());
  H->output(call, "elapsed_ms", json_integer(elapsed));
  int out = ENG_OK;
  if (!status_expected(j->expect_status, status)) {
    char *snippet = eng__xstrndup(j->body.data ? j->body.data : "",
                                  j->body.len > 200 ? 200 : j->body.len);
    H->fail(call, "HTTP status %ld is not the expected one%s%s", status,
            *snippet ? "; body: " : "", snippet);
    free(snippet);
    out = ENG_ERR_FAILED;
  } else if (j->expect_json) {
    eng__lua *L = eng__call_lua(call);
    int ref;
    char err[1024];
    json_t *res = NULL;
    json_t *locals = json_pack("{s:O}", "json", parsed ? parsed : json_null());
    if (!L || eng__lua_compile(L, j->expect_json, ENG__LUA_EXPR, "expect_json",
                               1, &ref, err, sizeof err) != ENG_OK ||
        eng__lua_eval(L, ref, locals, &res, err, sizeof err) != ENG_OK) {
      H->fail(call, "expect_json: %s", L ? err : "no Lua state");
      out = ENG_ERR_FAILED;
    } else {
      json_t *v = json_array_get(res, 0);
      if (!v || json_is_false(v) || json_is_null(v)) {
        H->fail(call, "expect_json is false: %s", j->expect_json);
        out = ENG_ERR_FAILED;
      }
    }
    json_decref(res);
    json_decref(locals);
  }
  json_decref(parsed);
  http_free(j);
  H->done(call, out);
}

static int http_start(eng_call *call, const json_t *p) {
  http_job *j = eng__xcalloc(1, sizeof *j);
  j->call = call;
  j->easy = curl_easy_init();
  if (!j->easy) {
    http_free(j);
    H->fail(call, "cannot create an HTTP handle");
    return ENG_ERR_NOMEM;
  }
  const char *url = json_string_value(json_object_get(p, "url"));
  const char *method = json_string_value(json_object_get(p, "method"));
  curl_easy_setopt(j->easy, CURLOPT_URL, url);
  curl_easy_setopt(j->easy, CURLOPT_CUSTOMREQUEST, method ? method : "GET");
  if (method && !strcmp(method, "HEAD"))
    curl_easy_setopt(j->easy, CURLOPT_NOBODY, 1L);
  curl_easy_setopt(j->easy, CURLOPT_WRITEFUNCTION, http_write);
  curl_easy_setopt(j->easy, CURLOPT_WRITEDATA, j);
  curl_easy_setopt(j->easy, CURLOPT_ERRORBUFFER, j->errbuf);
  curl_easy_setopt(j->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(j->easy, CURLOPT_USERAGENT, "engine/" "0.1");
  const json_t *hdrs = json_object_get(p, "headers");
  const char *k;
  json_t *v;
  bool has_ct = false;
  json_object_foreach((json_t *)hdrs, k, v) {
    char *h = eng__asprintf("%s: %s", k,
                            json_is_string(v) ? json_string_value(v) : "");
    if (!strcasecmp(k, "content-type")) has_ct = true;
    j->headers = curl_slist_append(j->headers, h);
    free(h);
  }
  const json_t *body = json_object_get(p, "body");
  if (body && !json_is_null(body)) {
    if (json_is_string(body))
      j->req_body = eng__xstrdup(json_string_value(body));
    else {
      j->req_body = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
      if (!has_ct)
        j->headers = curl_slist_append(j->headers,
                                       "Content-Type: application/json");
    }
    curl_easy_setopt(j->easy, CURLOPT_POSTFIELDS, j->req_body);
    curl_easy_setopt(j->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(j->req_body));
  }
  if (j->headers) curl_easy_setopt(j->easy, CURLOPT_HTTPHEADER, j->headers);
  j->expect_status = json_incref(json_object_get(p, "expect_status"));
  const char *ej = json_string_value(json_object_get(p, "expect_json"));
  if (ej && *ej) j->expect_json = eng__xstrdup(ej);
  j->t0 = uv_hrtime();
  eng_http *req;
  int rc = H->http_start(call, j->easy, http_done, j, &req);
  if (rc != ENG_OK) {
    H->fail(call, "cannot start the HTTP request to %s", url);
    http_free(j);
    return rc;
  }
  return ENG_OK;
}

/* ---- lua / assert
 * ------------------------------------------------------------ */

static void lua_action_done(void *ud, int rc, json_t *results,
                            const char *err) {
  eng_call *call = ud;
  if (rc != ENG_OK) {
    H->fail(call, "%s", err ? err : "Lua error");
    json_decref(results);
    H->done(call, rc);
    return;
  }
  json_t *v = json_array_get(results, 0);
  if (json_is_object(v)) {
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) H->output(call, k, json_incref(x));
  } else if (v && !json_is_null(v)) {
    H->output(call, "result", json_incref(v));
  }
  json_decref(results);
  H->done(call, ENG_OK);
}

static int lua_start(eng_call *call, const json_t *p) {
  eng__lua *L = eng__call_lua(call);
  const char *script = json_string_value(json_object_get(p, "script"));
  const char *file = json_string_value(json_object_get(p, "file"));
  if (!L) return ENG_ERR_INVALID;
  if (!!script == !!file) {
    H->fail(call, "give exactly one of 'script' or 'file'");
    return ENG_ERR_INVALID;
  }
  char *text = NULL;
  const char *name = "script";
  if (file) {
    eng__run *r = eng__call_run(call);
    char *path = file[0] == '/' || !r
                     ? eng__xstrdup(file)
                     : eng__asprintf("%s/%s", r->rb->dir, file);
    text = eng__read_file(path, 4u << 20, NULL);
    if (!text) {
      H->fail(call, "cannot read Lua file '%s': %s", path, strerror(errno));
      free(path);
      return ENG_ERR_IO;
    }
    free(path);
    name = file;
  }
  int ref;
  char err[1024];
  int rc = eng__lua_compile(L, text ? text : script, ENG__LUA_CHUNK, name, 1,
                            &ref, err, sizeof err);
  free(text);
  if (rc != ENG_OK) {
    H->fail(call, "%s", err);
    return rc;
  }
  json_t *locals = json_pack(
      "{s:O}", "args",
      json_object_get(p, "args") ? json_object_get(p, "args") : json_null());
  rc = eng__lua_run(L, ref, locals, call, lua_action_done, call);
  json_decref(locals);
  if (rc != ENG_OK) H->fail(call, "cannot start the Lua script");
  return rc;
}

static int assert_start(eng_call *call, const json_t *p) {
  eng__lua *L = eng__call_lua(call);
  const char *that = json_string_value(json_object_get(p, "that"));
  const char *msg = json_string_value(json_object_get(p, "message"));
  json_t *tv = json_object_get(p, "that");
  bool ok;
  if (json_is_boolean(tv)) {
    ok = json_is_true(tv);
  } else {
    int ref;
    char err[1024];
    json_t *res = NULL;
    if (!that || !L ||
        eng__lua_compile(L, that, ENG__LUA_EXPR, "assert", 1, &ref, err,
                         sizeof err) != ENG_OK ||
        eng__lua_eval(L, ref, NULL, &res, err, sizeof err) != ENG_OK) {
      H->fail(call, "assert: %s",
              that ? err : "'that' must be a Lua expression");
      return ENG_ERR_FAILED;
    }
    json_t *v = json_array_get(res, 0);
    ok = v && !json_is_false(v) && !json_is_null(v);
    json_decref(res);
  }
  if (!ok) {
    if (msg && *msg) H->fail(call, "%s", msg);
    else H->fail(call, "assertion failed: %s", that ? that : "false");
    return ENG_ERR_FAILED;
  }
  H->done(call, ENG_OK);
  return ENG_OK;
}

/* ---- sleep
 * --------------------------------------------------------------------- */

static void sleep_fire(void *ud) {
  eng_call *call = ud;
  H->done(call, ENG_OK);
}

static void sleep_cancel(void *ud) {
  eng_call *call = ud;
  eng_timer *t = H->get_data(call);
  H->timer_stop(t);
  H->fail(call, "sleep cancelled");
  H->done(call, ENG_ERR_CANCELLED);
}

static int sleep_start(eng_call *call, const json_t *p) {
  json_int_t ms = json_integer_value(json_object_get(p, "for"));
  eng_timer *t = H->timer_start(call, (uint64_t)(ms < 0 ? 0 : ms), sleep_fire,
                                call);
  H->set_data(call, t);
  H->on_cancel(call, sleep_cancel, call);
  return ENG_OK;
}

/* ---- approve
 * -------------------------------------------------------------------- */

typedef struct approve_job {
  eng_call *call;
  uv_tty_t tty;
  eng_timer *timer;
  char buf[64];
  bool finished;
} approve_job;

static void approve_close(uv_handle_t *h) { free(h->data); }

static void approve_finish(approve_job *j, int rc, const char *who) {
  if (j->finished) return;
  j->finished = true;
  if (j->timer) H->timer_stop(j->timer);
  uv_read_stop((uv_stream_t *)&j->tty);
  if (rc == ENG_OK) H->output(j->call, "approved_by", json_string(who));
  H->done(j->call, rc);
  uv_close((uv_handle_t *)&j->tty, approve_close);
}

static void approve_alloc(uv_handle_t *h, size_t sz, uv_buf_t *b) {
  approve_job *j = h->data;
  (void)sz;
  b->base = j->buf;
  b->len = sizeof j->buf;
}

static const char *user_name(void) {
  struct passwd *pw = getpwuid(getuid());
  return pw ? pw->pw_name : "unknown";
}

static void approve_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  approve_job *j = s->data;
  if (n < 0) {
    H->fail(j->call, "no answer: standard input closed");
    approve_finish(j, ENG_ERR_FAILED, NULL);
    return;
  }
  if (n == 0) return;
  if (b->base[0] == 'y' || b->base[0] == 'Y') {
    char *who = eng__asprintf("%s (terminal)", user_name());
    approve_finish(j, ENG_OK, who);
    free(who);
  } else {
    H->fail(j->call, "not approved at the prompt");
    approve_finish(j, ENG_ERR_FAILED, NULL);
  }
}

static void approve_timeout(void *ud) {
  approve_job *j = ud;
  j->timer = NULL;
  H->fail(j->call, "no approval before the timeout");
  approve_finish(j, ENG_ERR_TIMEOUT, NULL);
}

static void approve_cancel(void *ud) {
  approve_job *j = ud;
  H->fail(j->call, "approval cancelled");
  approve_finish(j, ENG_ERR_CANCELLED, NULL);
}

static int approve_start(eng_call *call, const json_t *p) {
  eng__run *r = eng__call_run(call);
  const char *step = H->step_id(call);
  for (size_t i = 0; r && i < r->opts->n_approve; i++)
    if (!strcmp(r->opts->approve[i], step)) {
      char *who = eng__asprintf("%s (--approve %s)", user_name(), step);
      H->output(call, "approved_by", json_string(who));
      free(who);
      H->done(call, ENG_OK);
      return ENG_OK;
    }
  const char *msg = json_string_value(json_object_get(p, "message"));
  if (!isatty(0) || !isatty(2)) {
    H->fail(call,
            "step '%s' needs approval%s%s: run with --approve %s (no "
            "terminal to ask on)",
            step, msg ? ": " : "", msg ? msg : "", step);
    return ENG_ERR_FAILED;
  }
  approve_job *j = eng__xcalloc(1, sizeof *j);
  j->call = call;
  if (uv_tty_init(eng__call_loop(call), &j->tty, 0, 1) != 0) {
    free(j);
    H->fail(call, "cannot read the terminal; use --approve %s", step);
    return ENG_ERR_FAILED;
  }
  j->tty.data = j;
  fprintf(stderr, "\n  ? %s\n  Approve step '%s'? [y/N] ",
          msg ? msg : "Approval needed", step);
  fflush(stderr);
  uv_read_start((uv_stream_t *)&j->tty, approve_alloc, approve_read);
  json_int_t ms = json_integer_value(json_object_get(p, "timeout"));
  if (ms > 0) j->timer = H->timer_start(call, (uint64_t)ms, approve_timeout, j);
  H->on_cancel(call, approve_cancel, j);
  return ENG_OK;
}

/* ---- declarations
 * ---------------------------------------------------------------- */

static const eng_param shell_params[] = {
    {.name = "command",
     .type = ENG_T_ANY,
     .items = ENG_ITEMS_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_COMMAND,
     .doc = "command line (run by /bin/sh -c) or argv list"},
    {.name = "env",
     .type = ENG_T_MAP,
     .target = ENG_TARGET_NONE,
     .doc = "extra environment variables"},
    {.name = "cwd",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "working directory"},
    {.name = "stdout_file",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_FILE,
     .doc = "write standard output to this file"},
    {0}};
static const eng_output shell_outputs[] = {
    {"exit_code", ENG_T_INT, "exit status (128+N when killed by signal N)"},
    {"stdout", ENG_T_STRING, "standard output (first 64 KiB)"},
    {"stderr_tail", ENG_T_STRING, "last lines of standard error"},
    {NULL, 0, NULL}};

static const eng_param http_params[] = {
    {.name = "url",
     .type = ENG_T_STRING,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_NONE,
     .doc = "URL to request"},
    {.name = "method",
     .type = ENG_T_STRING,
     .def = "\"GET\"",
     .target = ENG_TARGET_NONE,
     .choices = "GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS",
     .doc = "HTTP method"},
    {.name = "headers",
     .type = ENG_T_MAP,
     .target = ENG_TARGET_NONE,
     .doc = "request headers"},
    {.name = "body",
     .type = ENG_T_ANY,
     .target = ENG_TARGET_NONE,
     .doc = "request body (a map is sent as JSON)"},
    {.name = "expect_status",
     .type = ENG_T_ANY,
     .items = ENG_ITEMS_ANY,
     .target = ENG_TARGET_NONE,
     .doc = "expected status: 200, \"2xx\" or a list (default 2xx)"},
    {.name = "expect_json",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "Lua expression on `json` that must be true"},
    {0}};
static const eng_output http_outputs[] = {
    {"status", ENG_T_INT, "HTTP status"},
    {"body", ENG_T_STRING, "response body"},
    {"json", ENG_T_ANY, "response body parsed as JSON (null otherwise)"},
    {"elapsed_ms", ENG_T_INT, "request time"},
    {NULL, 0, NULL}};

static const eng_param lua_params[] = {
    {.name = "script",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "Lua chunk; its returned table becomes the outputs"},
    {.name = "file",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "Lua file, relative to the runbook"},
    {.name = "args",
     .type = ENG_T_ANY,
     .target = ENG_TARGET_NONE,
     .doc = "value visible as `args`"},
    {0}};

static const eng_param assert_params[] = {
    {.name = "that",
     .type = ENG_T_ANY,
     .flags = ENG_P_REQUIRED,
     .target = ENG_TARGET_NONE,
     .doc = "Lua expression that must be true"},
    {.name = "message",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "failure message"},
    {0}};

static const eng_param approve_params[] = {
    {.name = "message",
     .type = ENG_T_STRING,
     .target = ENG_TARGET_NONE,
     .doc = "what the approver is asked"},
    {.name = "timeout",
     .type = ENG_T_DURATION,
     .target = ENG_TARGET_NONE,
     .doc = "how long to wait for an answer"},
    {0}};
static const eng_output approve_outputs[] = {
    {"approved_by", ENG_T_STRING, "who approved, and how"}, {NULL, 0, NULL}};

static const eng_param sleep_params[] = {{.name = "for",
                                          .type = ENG_T_DURATION,
                                          .flags = ENG_P_REQUIRED,
                                          .target = ENG_TARGET_NONE,
                                          .doc = "how long"},
                                         {0}};

static const eng_output no_outputs[] = {{NULL, 0, NULL}};

static const eng_action builtin_actions[] = {
    {.name = "shell",
     .doc = "run a command",
     .side_effect = ENG_SIDE_EXTERNAL,
     .params = shell_params,
     .outputs = shell_outputs,
     .start = shell_start},
    {.name = "http",
     .doc = "HTTP request; health checks",
     .side_effect = ENG_SIDE_EXTERNAL,
     .params = http_params,
     .outputs = http_outputs,
     .start = http_start},
    {.name = "lua",
     .doc = "run a Lua script; its returned table becomes outputs",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = lua_params,
     .outputs = no_outputs,
     .start = lua_start},
    {.name = "assert",
     .doc = "fail unless a Lua expression is true",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = assert_params,
     .outputs = no_outputs,
     .start = assert_start},
    {.name = "approve",
     .doc = "manual gate: prompt on a TTY, else needs --approve ID",
     .side_effect = ENG_SIDE_READ_ONLY,
     .params = approve_params,
     .outputs = approve_outputs,
     .start = approve_start},
    {.name = "sleep",
     .doc = "wait",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = sleep_params,
     .outputs = no_outputs,
     .start = sleep_start},
    {.name = "files",
     .doc = "list local files by glob and pick one (latest, oldest), with "
            "size, age and SHA-256 sidecar",
     .side_effect = ENG_SIDE_READ_ONLY,
     .flags = ENG_A_REPEAT_SAFE,
     .params = eng__files_params,
     .outputs = eng__files_outputs,
     .start = eng__files_start},
    {.name = "prune",
     .doc = "retention for a local folder of backups: keep_last, "
            "keep_daily, keep_weekly, keep_monthly and min_age; never the "
            "newest or the newest drill-verified backup (docs/retention.md)",
     .side_effect = ENG_SIDE_DESTRUCTIVE,
     .flags = ENG_A_REPEAT_SAFE,
     .params = eng__prune_params,
     .outputs = eng__prune_outputs,
     .start = eng__prune_start,
     .classify = eng__prune_classify,
     .describe = eng__prune_describe},
    {.name = "mark_verified",
     .doc = "write BACKUP.verified, the marker a drill leaves beside the "
            "backup it restored and checked (retention never prunes the "
            "newest verified backup)",
     .side_effect = ENG_SIDE_CREATES,
     .flags = ENG_A_REPEAT_SAFE,
     .params = eng__mark_verified_params,
     .outputs = eng__mark_verified_outputs,
     .start = eng__mark_verified_start},
};

static const eng_plugin builtin_plugin = {
    ENG_PLUGIN_HEADER,
    .name = "builtin",
    .version = "1",
    .doc = "actions built into the engine",
    .actions = builtin_actions,
    .n_actions = sizeof builtin_actions / sizeof *builtin_actions,
};

const eng_plugin *eng__builtins(void) { return &builtin_plugin; }
