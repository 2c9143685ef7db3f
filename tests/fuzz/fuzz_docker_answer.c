/* libFuzzer: the Docker Engine API's answers as the docker plugin reads
 * them (plugins/docker/docker_answer.c). The bytes, parsed as JSON when
 * they are (any JSON type), go to every reader: a container's inspect,
 * container and volume lists, the Id of a create answer, exec inspect and
 * wait; as an error body under several statuses and buffer sizes; and as
 * a container's output turned into text. Each reader's promises are
 * checked: ids URL-safe and bounded, strings never NULL where promised,
 * out-parameters untouched on failure, messages and text valid UTF-8. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "docker_answer.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define CHECK(c)                                                               \
  do {                                                                         \
    if (!(c)) abort();                                                         \
  } while (0)

static void check_utf8_line(const char *s, size_t n) {
  /* a string jansson takes as UTF-8, one line, within its buffer */
  size_t len = strlen(s);
  CHECK(len < n);
  json_t *j = json_stringn(s, len);
  CHECK(j != NULL);
  json_decref(j);
  for (size_t i = 0; i < len; i++)
    CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

static void check_err(const char *err, size_t n) {
  CHECK(err[0] != '\0'); /* a failure says what was wrong */
  CHECK(strlen(err) < n);
}

static void check_id(const char *id) {
  size_t n = strlen(id);
  CHECK(n > 0 && n <= DK_ID_MAX);
  CHECK(id[0] != '.' && id[0] != '-' && id[0] != '_');
  for (size_t i = 0; i < n; i++) {
    char c = id[i];
    CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-');
  }
}

static void check_container(const dk_container *c) {
  check_id(c->id);
  CHECK(c->name && c->image && c->state && c->status && c->health);
  CHECK(c->health[0] != '\0');
  for (size_t i = 0; i < c->n_labels; i++) {
    CHECK(c->labels[i].key && c->labels[i].value);
    CHECK(dk_container_label(c, c->labels[i].key) != NULL);
  }
  for (size_t i = 0; i < c->n_env_keys; i++) {
    CHECK(c->env_keys[i][0] != '\0');
    CHECK(!strchr(c->env_keys[i], '='));
  }
  for (size_t i = 0; i < c->n_mounts; i++) { /* NULL or a string (ASan reads it) */
    const dk_mount *m = &c->mounts[i];
    const char *f[] = {m->type, m->name, m->source, m->destination};
    for (size_t k = 0; k < 4; k++) CHECK(!f[k] || strlen(f[k]) < SIZE_MAX);
  }
}

/* A failed reader leaves *out as it was. */
static int untouched(const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != 0xA5) return 0;
  return 1;
}

static void readers(const json_t *j) {
  char err[256];

  dk_container c;
  memset(&c, 0xA5, sizeof c);
  err[0] = '\0';
  if (dk_answer_container(j, &c, err, sizeof err) == 0) {
    check_container(&c);
    dk_container_free(&c);
  } else {
    check_err(err, sizeof err);
    CHECK(untouched(&c, sizeof c));
  }

  dk_container_list l;
  memset(&l, 0xA5, sizeof l);
  err[0] = '\0';
  if (dk_answer_containers(j, &l, err, sizeof err) == 0) {
    CHECK(l.n + l.skipped == json_array_size(j));
    for (size_t i = 0; i < l.n; i++) check_container(&l.v[i]);
    dk_container_list_free(&l);
  } else {
    check_err(err, sizeof err);
    CHECK(untouched(&l, sizeof l));
  }

  dk_volume_list v;
  memset(&v, 0xA5, sizeof v);
  err[0] = '\0';
  if (dk_answer_volumes(j, &v, err, sizeof err) == 0) {
    CHECK(v.n + v.skipped == json_array_size(json_object_get(j, "Volumes")));
    for (size_t i = 0; i < v.n; i++) CHECK(v.v[i].name && v.v[i].name[0]);
    dk_volume_list_free(&v);
  } else {
    check_err(err, sizeof err);
    CHECK(untouched(&v, sizeof v));
  }

  char id[DK_ID_MAX + 1];
  memset(id, 0xA5, sizeof id);
  err[0] = '\0';
  if (dk_answer_id(j, id, err, sizeof err) == 0) {
    check_id(id);
  } else {
    check_err(err, sizeof err);
    CHECK(untouched(id, sizeof id));
  }

  dk_exec_state st;
  memset(&st, 0xA5, sizeof st);
  err[0] = '\0';
  if (dk_answer_exec(j, &st, err, sizeof err) == 0) {
    /* over: only with an exit code the answer gave */
    CHECK(st.running || json_is_integer(json_object_get(j, "ExitCode")));
  } else {
    check_err(err, sizeof err);
    CHECK(untouched(&st, sizeof st));
  }

  int code;
  memset(&code, 0xA5, sizeof code);
  err[0] = '\0';
  if (dk_answer_wait(j, &code, err, sizeof err) == 0) {
    CHECK(json_integer_value(json_object_get(j, "StatusCode")) == code);
  } else {
    check_err(err, sizeof err);
    CHECK(untouched(&code, sizeof code));
  }
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  const char *buf = (const char *)data;
  json_t *j = json_loadb(buf, size, JSON_DECODE_ANY, NULL);
  readers(j);
  /* the members of a list or an object one level down, as answers */
  size_t i;
  json_t *e;
  const char *k;
  if (json_is_array(j)) json_array_foreach(j, i, e) readers(e);
  if (json_is_object(j)) json_object_foreach(j, k, e) readers(e);

  static const long statuses[] = {0, 200, 304, 400, 404, 409, 500, 503};
  static const size_t sizes[] = {1, 2, 17, 64, 1024};
  for (size_t s = 0; s < sizeof statuses / sizeof *statuses; s++)
    for (size_t z = 0; z < sizeof sizes / sizeof *sizes; z++) {
      char msg[1024];
      memset(msg, 'x', sizeof msg);
      const char *r = dk_answer_message(statuses[s], buf, size, j, msg, sizes[z]);
      CHECK(r == msg);
      check_utf8_line(msg, sizes[z]);
      CHECK(sizes[z] < 64 || msg[0] != '\0');
    }
  json_decref(j);

  char *t = dk_answer_text(buf, size);
  CHECK(t != NULL);
  json_t *ts = json_string(t); /* valid UTF-8 */
  CHECK(ts != NULL);
  json_decref(ts);
  /* every byte is kept, or one U+FFFD stands for it */
  CHECK(strlen(t) >= (size ? 1 : 0) && strlen(t) <= size * 3);
  json_t *same = size && !memchr(buf, '\0', size) ? json_stringn(buf, size) : NULL;
  if (same) CHECK(!strcmp(t, json_string_value(same))); /* valid text unchanged */
  json_decref(same);
  free(t);
  return 0;
}
