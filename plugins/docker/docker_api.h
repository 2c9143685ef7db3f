/*
 * docker_api.h - requests to the Docker Engine API as the docker plugin
 * sends them (docker_api.c): DOCKER_HOST (unix:// socket, default
 * /var/run/docker.sock; tcp:// with DOCKER_TLS_VERIFY / DOCKER_CERT_PATH),
 * the API version negotiated from /_ping, JSON requests on the host's
 * libcurl service. It includes what the plugin reads answers with:
 * docker_answer.h (the JSON answers) and docker_demux.h (the framed
 * stdout/stderr stream of attach and exec).
 */
#ifndef DOCKER_API_H
#define DOCKER_API_H

#include <engine/op.h>
#include <engine/plugin.h>

#include "docker_answer.h"
#include "docker_demux.h"

#include <stdbool.h>

extern const eng_host *dk_host;

/* The newest API version this plugin knows. */
#define DK_API_MAX "1.45"

/* An answer: status (0 without one), the body (NUL-terminated, parsed as
 * JSON when it is JSON), or the transfer's error; error is also set for
 * an HTTP status >= 400 (dk_answer_message()). Valid during the callback. */
typedef struct dk_answer {
  long status;
  const char *body;
  size_t len;
  json_t *json;      /* borrowed; NULL when the body is not JSON */
  const char *error; /* a message a person can act on, or NULL */
} dk_answer;

typedef void (*dk_cb)(void *ud, const dk_answer *a);
/* Raw body bytes as they arrive (exec/attach streams); return 1 to pause
 * the transfer until dk_resume(). */
typedef int (*dk_data_cb)(void *ud, const char *buf, size_t len);

typedef struct dk_req dk_req;

/* A request held by the op until its cb ran (cb does not run once the op
 * finished). path starts with '/' (without the version prefix); body
 * (stolen) may be NULL. on_data, when given, receives the body instead of
 * it being collected. Returns ENG_OK, or an error after the op was failed
 * (cb never runs). *out (may be NULL) is written only on success; the
 * request resets it to NULL when it is freed (after cb, or when the op
 * finished), so the caller never holds a freed request. */
int dk_request(eng_op *op, const char *method, const char *path,
               json_t *body, dk_data_cb on_data, dk_cb cb, void *ud,
               dk_req **out);
void dk_resume(dk_req *r);
/* The API version in use ("1.41"), once negotiated. */
const char *dk_api_version(void);

/* s percent-encoded for a path or a query (RFC 3986: unreserved characters
 * stay), malloc'd. */
char *dk_escape(const char *s);

#endif
