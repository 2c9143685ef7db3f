/*
 * docker_api.h - the Docker Engine API as the docker plugin speaks it:
 * DOCKER_HOST (unix:// socket, default /var/run/docker.sock; tcp:// with
 * DOCKER_TLS_VERIFY / DOCKER_CERT_PATH), API version negotiated from
 * /_ping, JSON requests on the host's libcurl service, and the 8-byte
 * framed stdout/stderr stream of attach and exec.
 */
#ifndef DOCKER_API_H
#define DOCKER_API_H

#include <engine/op.h>
#include <engine/plugin.h>

#include <stdbool.h>

extern const eng_host *dk_host;

/* The newest API version this plugin knows. */
#define DK_API_MAX "1.45"

/* An answer: status (0 without one), the body (NUL-terminated, parsed as
 * JSON when it is JSON), or the transfer's error. */
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

/* A request held by the op until its cb ran. path starts with '/'
 * (without the version prefix); body (stolen) may be NULL. on_data, when
 * given, receives the body instead of it being collected. */
int dk_request(eng_op *op, const char *method, const char *path,
               json_t *body, dk_data_cb on_data, dk_cb cb, void *ud,
               dk_req **out);
void dk_resume(dk_req *r);
/* The API version in use ("1.41"), once negotiated. */
const char *dk_api_version(void);
/* The API's own `message` of an error answer, or a description. */
const char *dk_message(const dk_answer *a, char *buf, size_t n);

#include "docker_demux.h"

/* URL-encode s into a new string. */
char *dk_escape(const char *s);

#endif
