/*
 * lua_lib_http.c - http.get(url) for hooks: a GET through the call's HTTP
 * service (the loop's libcurl multi handle), answered as {status=...,
 * body=...}; the body is bounded (ENG_LUA_HTTP_MAX_BODY).
 */
#include "expr/lua_int.h"

#include <curl/curl.h>


typedef struct lh_http_req {
  CURL *easy;
  eng_call *call;
  char *body;
  size_t len, cap;
  int too_big;
} lh_http_req;

static size_t lh_http_write(char *p, size_t sz, size_t nm, void *ud) {
  lh_http_req *r = ud;
  size_t n = sz * nm;
  if (r->len + n > ENG_LUA_HTTP_MAX_BODY) {
    r->too_big = 1;
    return 0;
  }
  if (r->len + n + 1 > r->cap) {
    size_t cap = r->cap ? r->cap : 4096;
    while (cap < r->len + n + 1)
      cap *= 2;
    char *nb = realloc(r->body, cap);
    if (nb == NULL)
      return 0;
    r->body = nb;
    r->cap = cap;
  }
  memcpy(r->body + r->len, p, n);
  r->len += n;
  return n;
}

static void lh_http_done(void *ud, int rc, long status, const char *error) {
  lh_http_req *r = ud;
  const eng_host *host = eng__host();
  eng_call *call = r->call;
  json_t *body = NULL;
  if (rc == ENG_OK) {
    body = json_stringn(r->body ? r->body : "", r->len);
    if (body == NULL) {
      host->fail(call, "http.get: the response body is not UTF-8 text");
      rc = ENG_ERR_PROTOCOL;
    }
  } else if (r->too_big) {
    host->fail(call, "http.get: the response body is larger than %zu bytes",
               ENG_LUA_HTTP_MAX_BODY);
  } else {
    host->fail(call, "http.get: %s", error ? error : eng_strerror(rc));
  }
  curl_easy_cleanup(r->easy);
  free(r->body);
  free(r);
  if (rc != ENG_OK) {
    host->done(call, rc);
    return;
  }
  json_t *obj = json_object();
  json_object_set_new(obj, "status", json_integer((json_int_t)status));
  json_object_set_new(obj, "body", body);
  host->output(call, "result", obj);
  host->done(call, ENG_OK);
}

static int lh_http_get_start(eng_call *call, const json_t *args) {
  const eng_host *host = eng__host();
  const char *url = json_string_value(json_array_get(args, 0));
  if (url == NULL) {
    host->fail(call, "http.get(url): url must be a string");
    return ENG_ERR_INVALID;
  }
  lh_http_req *r = calloc(1, sizeof *r);
  if (r == NULL)
    return ENG_ERR_NOMEM;
  r->call = call;
  r->easy = curl_easy_init();
  if (r->easy == NULL) {
    free(r);
    return ENG_ERR_NOMEM;
  }
  curl_easy_setopt(r->easy, CURLOPT_URL, url);
  curl_easy_setopt(r->easy, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(r->easy, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, 30000L);
  curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
  curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, lh_http_write);
  curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
  eng_http *req = NULL;
  int rc = host->http_start(call, r->easy, lh_http_done, r, &req);
  if (rc != ENG_OK) {
    curl_easy_cleanup(r->easy);
    free(r);
  }
  return rc;
}

static const eng_lua_func lh_http_get_func = {
    .table = "http",
    .name = "get",
    .doc = "http.get(url) -> {status=..., body=...}",
    .start = lh_http_get_start,
};

void eng__lh_open_http(lua_State *L) {
  lua_pushcfunction(L, eng__lh_add_func_body);
  lua_pushlightuserdata(L, (void *)&lh_http_get_func);
  lua_call(L, 1, 0);
}
