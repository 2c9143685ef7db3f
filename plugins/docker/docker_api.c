/*
 * docker_api.c - requests to the Docker Engine API over DOCKER_HOST through
 * the host's libcurl service (CURLOPT_UNIX_SOCKET_PATH for unix sockets),
 * and the version negotiated once from /_ping. The loop never blocks.
 * What an answer says is read by docker_answer.c (the message of an error
 * answer here, everything else in the plugin's callbacks); the framed
 * stream of exec and attach is docker_demux.c's.
 */
#include "docker_api.h"

#include <engine/mem.h>

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

const eng_host *dk_host;

static char version[16]; /* negotiated, process-wide */

/* The largest answer collected (a body given to on_data is not): lists and
 * inspects are small, a container's logs for run and volume_check are
 * bounded by what they print. */
#define DK_ANSWER_MAX (64u << 20)

struct dk_req {
  eng_op *op;
  char *method, *path;
  char *body;
  dk_data_cb on_data;
  dk_cb cb;
  void *ud;
  CURL *easy;
  struct curl_slist *headers;
  eng_http *http;
  eng_strbuf resp;
  dk_req **slot; /* the caller's pointer to this request, reset when freed */
  char api_version[16];
  bool ping;       /* the negotiation request before the real one */
  bool paused;
  char where[512]; /* DOCKER_HOST as shown in messages */
};

const char *dk_api_version(void) { return version; }

static void req_free(dk_req *r) {
  if (r->slot && *r->slot == r) *r->slot = NULL;
  if (r->easy) curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->headers);
  free(r->method);
  free(r->path);
  free(r->body);
  eng_strbuf_free(&r->resp);
  free(r);
}

static size_t on_body(char *d, size_t sz, size_t n, void *ud) {
  dk_req *r = ud;
  size_t len = sz * n;
  if (r->on_data && !r->ping) {
    if (r->on_data(r->ud, d, len)) {
      r->paused = true;
      return CURL_WRITEFUNC_PAUSE;
    }
    return len;
  }
  if (r->resp.len + len > DK_ANSWER_MAX) return 0; /* curl fails the transfer */
  eng_strbuf_add(&r->resp, d, len);
  return len;
}

static size_t on_header(char *d, size_t sz, size_t n, void *ud) {
  dk_req *r = ud;
  size_t len = sz * n;
  if (len > 12 && !strncasecmp(d, "Api-Version:", 12)) {
    const char *v = d + 12;
    while (*v == ' ') v++;
    size_t k = strcspn(v, "\r\n");
    if (k < sizeof r->api_version) {
      memcpy(r->api_version, v, k);
      r->api_version[k] = '\0';
    }
  }
  return len;
}

/* A version as the API writes it: digits, a dot, digits ("1.41"). */
static bool version_ok(const char *v) {
  static const char digits[] = "0123456789";
  size_t major = strspn(v, digits);
  if (major == 0 || major > 3 || v[major] != '.') return false;
  size_t minor = strspn(v + major + 1, digits);
  return minor > 0 && minor <= 3 && v[major + 1 + minor] == '\0';
}

/* "1.41" < "1.45" */
static int vcmp(const char *a, const char *b) {
  int a1 = 0, a2 = 0, b1 = 0, b2 = 0;
  sscanf(a, "%d.%d", &a1, &a2);
  sscanf(b, "%d.%d", &b1, &b2);
  return a1 != b1 ? a1 - b1 : a2 - b2;
}

static int send_req(dk_req *r);

static void http_done(void *ud, int rc, long status, const char *error) {
  dk_req *r = ud;
  eng_op *op = r->op;
  r->http = NULL;
  if (op->finished) {
    req_free(r);
    eng_op_release(op);
    return;
  }
  if (r->ping && rc == ENG_OK) {
    if (!version_ok(r->api_version)) { /* none, or not a version */
      snprintf(version, sizeof version, "1.41");
    } else if (vcmp(r->api_version, DK_API_MAX) > 0) {
      snprintf(version, sizeof version, "%s", DK_API_MAX);
    } else {
      snprintf(version, sizeof version, "%s", r->api_version);
    }
    dk_host->log(op->call, ENG_LOG_DEBUG, "Docker API %s (the daemon serves %s)",
                 version, version_ok(r->api_version) ? r->api_version : "an unknown version");
    r->ping = false;
    eng_strbuf_free(&r->resp);
    send_req(r); /* on failure it failed the op and freed r */
    return;
  }
  dk_answer a = {0};
  char msg[1024] = "";
  if (rc != ENG_OK) {
    snprintf(msg, sizeof msg,
             "cannot reach the Docker API at %s: %s (is the daemon running? "
             "check DOCKER_HOST, the socket's path and permissions)",
             r->where, error ? error : eng_strerror(rc));
    a.error = msg;
  } else {
    a.status = status;
    a.body = r->resp.data ? r->resp.data : "";
    a.len = r->resp.len;
    a.json = a.len ? json_loadb(a.body, a.len, 0, NULL) : NULL;
    if (status >= 400)
      a.error = dk_answer_message(status, a.body, a.len, a.json, msg, sizeof msg);
  }
  dk_cb cb = r->cb;
  void *cud = r->ud;
  json_t *j = a.json;
  cb(cud, &a);
  json_decref(j);
  req_free(r);
  eng_op_release(op);
}

static void where_of(char *buf, size_t n, const char **sock, char *url,
                     size_t urln) {
  const char *h = getenv("DOCKER_HOST");
  if (!h || !*h) h = "unix:///var/run/docker.sock";
  snprintf(buf, n, "DOCKER_HOST=%s", h);
  *sock = NULL;
  if (!strncmp(h, "unix://", 7)) {
    *sock = h + 7;
    snprintf(url, urln, "http://docker");
  } else if (!strncmp(h, "tcp://", 6)) {
    const char *tls = getenv("DOCKER_TLS_VERIFY");
    snprintf(url, urln, "%s://%s", tls && *tls && strcmp(tls, "0") ? "https" : "http",
             h + 6);
  } else {
    snprintf(url, urln, "%s", h);
  }
}

static int send_req(dk_req *r) {
  eng_op *op = r->op;
  const char *sock;
  char base[512], url[2048];
  where_of(r->where, sizeof r->where, &sock, base, sizeof base);
  if (sock) {
    struct stat st;
    if (stat(sock, &st) != 0 || !S_ISSOCK(st.st_mode)) {
      eng_op_fail(op, ENG_ERR_CONNECT,
                  "no Docker socket at %s (%s): is the daemon (or `podman "
                  "system service`) running? check DOCKER_HOST",
                  sock, stat(sock, &st) != 0 ? "it does not exist" : "not a socket");
      req_free(r);
      eng_op_release(op);
      return ENG_ERR_CONNECT;
    }
  }
  if (r->ping) snprintf(url, sizeof url, "%s/_ping", base);
  else snprintf(url, sizeof url, "%s/v%s%s", base, version, r->path);
  if (r->easy) curl_easy_cleanup(r->easy);
  r->easy = curl_easy_init();
  curl_easy_setopt(r->easy, CURLOPT_URL, url);
  if (sock) curl_easy_setopt(r->easy, CURLOPT_UNIX_SOCKET_PATH, sock);
  const char *cert = getenv("DOCKER_CERT_PATH");
  if (!sock && cert && *cert) {
    char p[1024];
    snprintf(p, sizeof p, "%s/ca.pem", cert);
    curl_easy_setopt(r->easy, CURLOPT_CAINFO, p);
    snprintf(p, sizeof p, "%s/cert.pem", cert);
    curl_easy_setopt(r->easy, CURLOPT_SSLCERT, p);
    snprintf(p, sizeof p, "%s/key.pem", cert);
    curl_easy_setopt(r->easy, CURLOPT_SSLKEY, p);
  }
  curl_easy_setopt(r->easy, CURLOPT_CUSTOMREQUEST, r->ping ? "GET" : r->method);
  if (!r->ping && r->body) {
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
  } else if (!r->ping && !strcmp(r->method, "POST")) {
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, 0L);
  }
  curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
  curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(r->easy, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(r->easy, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
  int rc = dk_host->http_start(op->call, r->easy, http_done, r, &r->http);
  if (rc != ENG_OK) {
    eng_op_fail(op, rc, "could not start a request to the Docker API");
    req_free(r);
    eng_op_release(op);
  }
  return rc;
}

int dk_request(eng_op *op, const char *method, const char *path,
               json_t *body, dk_data_cb on_data, dk_cb cb, void *ud,
               dk_req **out) {
  dk_req *r = eng_xcalloc(1, sizeof *r);
  r->op = op;
  r->method = eng_xstrdup(method);
  r->path = eng_xstrdup(path);
  r->body = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  r->on_data = on_data;
  r->cb = cb;
  r->ud = ud;
  r->ping = !*version;
  r->headers = curl_slist_append(NULL, "Content-Type: application/json");
  r->headers = curl_slist_append(r->headers, "Expect:");
  eng_op_hold(op);
  int rc = send_req(r); /* on failure it failed the op and freed r */
  if (rc == ENG_OK && out) { /* the callback runs later, never in here */
    *out = r;
    r->slot = out;
  }
  return rc;
}

void dk_resume(dk_req *r) {
  if (r && r->paused && r->http) {
    r->paused = false;
    dk_host->http_unpause(r->http);
  }
}

char *dk_escape(const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  eng_strbuf b = {0};
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
        (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
        *p == '~') {
      eng_strbuf_add(&b, p, 1);
    } else {
      char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
      eng_strbuf_add(&b, e, 3);
    }
  }
  return eng_strbuf_steal(&b);
}
