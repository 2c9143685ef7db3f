/*
 * docker_answer.h - what the docker plugin reads in the Docker Engine API's
 * answers, as plain structs. Plain C on jansson and <engine/mem.h> (no
 * libcurl, no engine services), so the fuzz harness builds it on its own
 * (tests/fuzz/fuzz_docker_answer.c).
 *
 * An answer comes from a daemon, or from whatever listens on DOCKER_HOST:
 * every function takes the parsed body as it came (NULL when the body was
 * not JSON, any JSON type otherwise) and survives fields that are missing,
 * of the wrong type or absurd. A reader returns 0 and fills *out, or
 * returns -1 with what was wrong in err (always NUL-terminated when
 * errlen > 0) and leaves *out untouched. What a reader fills is a copy:
 * it outlives the answer, and is freed with the matching _free().
 * Allocation aborts when memory is exhausted (<engine/mem.h>).
 */
#ifndef DOCKER_ANSWER_H
#define DOCKER_ANSWER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The longest id accepted (Docker's and Podman's are 64 hex digits): ids
 * go into request paths, which are fixed-size buffers. */
#define DK_ID_MAX 128

/* Bytes of an answer's text quoted in a message: enough to recognise an
 * error, short enough for a console line. */
#define DK_QUOTE_MAX 200

/* A mount: each field NULL when the answer has none (or not a string). */
typedef struct dk_mount {
  char *type, *name, *source, *destination;
  bool rw;
} dk_mount;

/* A label whose value is a string (others are left out). */
typedef struct dk_label {
  char *key, *value;
} dk_label;

/* A container, from an inspect (GET /containers/ID/json) or an entry of a
 * list (GET /containers/json). */
typedef struct dk_container {
  char *id;     /* non-empty, at most DK_ID_MAX bytes of [A-Za-z0-9_.-] */
  char *name;   /* without the leading '/'; "" when the answer has none */
  char *image;  /* Config.Image, else Image; "" when absent */
  char *state;  /* State.Status (inspect) or State (list); "" when absent */
  char *status; /* Status ("Up 5 minutes", lists); "" when absent */
  char *health; /* State.Health.Status; "none" when absent or empty */
  bool running; /* State.Running is true (inspect) */
  dk_mount *mounts; /* Mounts' entries that are objects */
  size_t n_mounts;
  dk_label *labels; /* Labels, else Config.Labels */
  size_t n_labels;
  char **env_keys; /* the names of Config.Env's "NAME=value" (never values) */
  size_t n_env_keys;
} dk_container;

/* An inspect of a container: an object with an Id (see dk_container). */
int dk_answer_container(const json_t *answer, dk_container *out, char *err,
                        size_t errlen);
void dk_container_free(dk_container *c);
/* The value of label key, or NULL. */
const char *dk_container_label(const dk_container *c, const char *key);

/* A list of containers: the answer is an array; entries that are not
 * containers (not objects, no valid Id) are skipped and counted. */
typedef struct dk_container_list {
  dk_container *v;
  size_t n;
  size_t skipped;
} dk_container_list;

int dk_answer_containers(const json_t *answer, dk_container_list *out,
                         char *err, size_t errlen);
void dk_container_list_free(dk_container_list *l);

/* A volume of GET /volumes (or of GET /system/df): name non-empty;
 * driver and mountpoint NULL when absent; size the bytes it holds
 * (UsageData.Size of /system/df), -1 when not given. */
typedef struct dk_volume {
  char *name, *driver, *mountpoint;
  int64_t size;
} dk_volume;

/* The answer is an object whose Volumes is an array (or null: none);
 * entries without a name are skipped and counted. */
typedef struct dk_volume_list {
  dk_volume *v;
  size_t n;
  size_t skipped;
} dk_volume_list;

int dk_answer_volumes(const json_t *answer, dk_volume_list *out, char *err,
                      size_t errlen);
void dk_volume_list_free(dk_volume_list *l);

/* The Id of a create answer (POST /containers/create, POST
 * /containers/ID/exec), copied into id (a valid id, see dk_container). */
int dk_answer_id(const json_t *answer, char id[DK_ID_MAX + 1], char *err,
                 size_t errlen);

/* An exec inspect (GET /exec/ID/json): still running, or over with an
 * exit code. An exec that is not running must carry an integer ExitCode
 * that fits an int: without it the command's outcome is unknown. */
typedef struct dk_exec_state {
  bool running;
  int exit_code; /* meaningful when !running */
} dk_exec_state;

int dk_answer_exec(const json_t *answer, dk_exec_state *out, char *err,
                   size_t errlen);

/* A wait answer (POST /containers/ID/wait): its integer StatusCode (that
 * fits an int); an Error.Message the daemon sets is an error. */
int dk_answer_wait(const json_t *answer, int *exit_code, char *err,
                   size_t errlen);

/* The message of an error answer, written into buf and returned: the
 * API's own `message` when it is a non-empty string, a note that an HTML
 * page is not a Docker API, else at most DK_QUOTE_MAX bytes of the body.
 * body holds len bytes of any kind; json is the body parsed, or NULL.
 * buf (n > 0) gets valid UTF-8 on one line, NUL-terminated: control
 * characters become spaces, other bytes that are not UTF-8 '?', and
 * nothing is cut inside a character. */
const char *dk_answer_message(long status, const char *body, size_t len,
                              const json_t *json, char *buf, size_t n);

/* Text a container printed (stdout, the tail of stderr) as valid UTF-8
 * for an output: invalid or cut sequences and NUL bytes become U+FFFD.
 * len bytes of any kind; malloc'd, never NULL. */
char *dk_answer_text(const char *b, size_t len);

#endif
