/* metrics.c - after a run: the metrics of its runbook and lock, from the
 * run index, into --metrics-file (written whole: a temporary file renamed
 * over it, so a collector never reads half a file) and to --pushgateway
 * (PUT: the group runbook/lock is replaced whole). A failure is said and
 * leaves the run's exit code as it was: the run itself happened. */
#include "cli/cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The longest a push may take: a Pushgateway answers in milliseconds, and
 * a CronJob must not hang on one that does not. */
#define CLI_PUSH_TIMEOUT_MS 10000

static int write_atomic(const char *path, const char *text, char *err,
                        size_t errlen) {
  char *tmp = eng__asprintf("%s.tmp.%d", path, (int)getpid());
  FILE *f = fopen(tmp, "w");
  int rc = 0;
  if (!f || fputs(text, f) < 0 || fflush(f) != 0 || fsync(fileno(f)) != 0) rc = -1;
  if (f && fclose(f) != 0) rc = -1;
  if (rc == 0 && rename(tmp, path) != 0) rc = -1;
  if (rc != 0) {
    snprintf(err, errlen, "%s: %s", path, strerror(errno));
    unlink(tmp);
  }
  free(tmp);
  return rc;
}

typedef struct push {
  int rc;
  long status;
  char error[256];
} push;

static void pushed(void *ud, int rc, long status, const char *error) {
  push *p = ud;
  p->rc = rc;
  p->status = status;
  snprintf(p->error, sizeof p->error, "%s", error ? error : "");
}

/* The group's URL: BASE/metrics/job/engine/runbook/NAME/lock/LOCK (an
 * empty lock in the Pushgateway's base64 form). Names and locks are
 * letters, digits, '.', '_' and '-': nothing to escape. */
static char *group_url(const char *base, const char *runbook, const char *lock) {
  size_t n = strlen(base);
  while (n && base[n - 1] == '/') n--;
  return eng__asprintf("%.*s/metrics/job/engine/runbook/%s/lock%s%s", (int)n,
                       base, runbook, lock && lock[0] ? "/" : "@base64/=",
                       lock && lock[0] ? lock : "");
}

/* PUT text to the group on a loop of its own (the run's loop is gone).
 * 0 or -1 with err (the URL's password masked). */
static int push_text(const char *url, const char *text, char *err,
                     size_t errlen) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  eng__http_multi *m = eng__http_multi_create(&loop);
  CURL *easy = curl_easy_init();
  struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: text/plain; version=0.0.4");
  curl_easy_setopt(easy, CURLOPT_URL, url);
  curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, "PUT");
  curl_easy_setopt(easy, CURLOPT_POSTFIELDS, text);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, hdr);
  curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)CLI_PUSH_TIMEOUT_MS);
  push p = {ENG_ERR_IO, 0, ""};
  eng_http *req = NULL;
  if (eng__http_start(m, NULL, easy, pushed, &p, &req) == ENG_OK)
    uv_run(&loop, UV_RUN_DEFAULT);
  eng__http_multi_destroy(m);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  curl_easy_cleanup(easy);
  curl_slist_free_all(hdr);
  if (p.rc == ENG_OK && p.status >= 200 && p.status < 300) return 0;
  eng__redactor *r = eng__redactor_create(); /* masks the URL's password */
  char *shown = eng__redact(r, url);
  if (p.rc == ENG_OK)
    snprintf(err, errlen, "PUT %s answered HTTP %ld", shown, p.status);
  else
    snprintf(err, errlen, "PUT %s: %s", shown, p.error[0] ? p.error : "no answer");
  free(shown);
  eng__redactor_destroy(r);
  return -1;
}

void cli_metrics_publish(cli *c, eng__state *st, const eng__runbook *rb,
                         const char *lock) {
  if ((!c->metrics_file && !c->pushgateway) || c->o.plan_only || c->o.cleanup_run)
    return;
  json_t *runs = cli_index_records(c, st);
  if (!runs) return;
  json_t *sorted = eng__index_sorted(runs);
  const char *name = rb->name ? rb->name : "";
  char err[1024] = "";
  if (c->metrics_file) {
    char *text = eng__metrics_text(sorted, name, lock, true);
    if (write_atomic(c->metrics_file, text, err, sizeof err) != 0)
      fprintf(stderr, "engine: cannot write the metrics: %s\n", err);
    free(text);
  }
  if (c->pushgateway) {
    char *text = eng__metrics_text(sorted, name, lock, false);
    char *url = group_url(c->pushgateway, name, lock);
    if (push_text(url, text, err, sizeof err) != 0)
      fprintf(stderr, "engine: cannot push the metrics to the Pushgateway: "
                      "%s; check --pushgateway\n", err);
    free(url);
    free(text);
  }
  json_decref(sorted);
  json_decref(runs);
}
