/*
 * docker_answer.c - the Docker Engine API's answers read into plain
 * structs: a container's inspect, container and volume lists, the Id of a
 * create answer, exec inspect, wait, and the message of an error answer.
 *
 * Nothing here trusts the answer: a field is used only after its type was
 * checked, a string that goes into a request path (an id) is checked to be
 * URL-safe and bounded, a missing field that decides an outcome (an Id, an
 * exit code) is an error rather than a default, and quoted text is bounded
 * and cleaned of control characters. Readers fill a local struct and copy
 * it to *out only on success.
 */
#include "docker_answer.h"

#include <engine/mem.h>

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Bytes of the API's own `message` quoted in an error. */
#define DK_MESSAGE_MAX 512

static void say(char *err, size_t errlen, const char *fmt, ...)
    ENG_MEM_PRINTF(3, 4);
static void say(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* The length of the valid UTF-8 sequence at p (n bytes left), or 0 (NUL
 * counts as invalid: it would end the text). */
static size_t utf8_len(const unsigned char *p, size_t n) {
  unsigned char c = p[0];
  size_t k;
  uint32_t cp, min;
  if (c >= 0x01 && c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    k = 2;
    cp = c & 0x1Fu;
    min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    k = 3;
    cp = c & 0x0Fu;
    min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    k = 4;
    cp = c & 0x07u;
    min = 0x10000;
  } else {
    return 0; /* NUL, a continuation byte, or a byte never valid */
  }
  if (n < k) return 0;
  for (size_t i = 1; i < k; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[i] & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return k;
}

/* At most max bytes of s (len bytes of any kind) into dst (n > 0) as
 * valid UTF-8 on one line: control characters become spaces, bytes that
 * are not UTF-8 '?', and a character that does not fit is left out. */
static void quote(char *dst, size_t n, const char *s, size_t len, size_t max) {
  const unsigned char *p = (const unsigned char *)s;
  size_t lim = max < n - 1 ? max : n - 1, o = 0, i = 0;
  while (i < len) {
    size_t k = utf8_len(p + i, len - i);
    if (o + (k ? k : 1) > lim) break;
    if (!k) {
      dst[o++] = p[i] ? '?' : ' '; /* NUL is a control character */
      i++;
      continue;
    }
    if (k == 1 && (p[i] < 0x20 || p[i] == 0x7f)) {
      dst[o++] = ' ';
    } else {
      memcpy(dst + o, s + i, k);
      o += k;
    }
    i += k;
  }
  dst[o] = '\0';
}

#define NOT_JSON "the answer is not JSON (cut short, or not the Docker API answering)"

static const char *type_name(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return "an object";
  case JSON_ARRAY: return "a list";
  case JSON_STRING: return "a string";
  case JSON_INTEGER:
  case JSON_REAL: return "a number";
  case JSON_TRUE:
  case JSON_FALSE: return "a boolean";
  case JSON_NULL: return "null";
  }
  return "something else";
}

/* The answer is an object, else say what it is. */
static bool is_object(const json_t *a, char *err, size_t errlen,
                      const char *what) {
  if (!a) {
    say(err, errlen, NOT_JSON);
    return false;
  }
  if (!json_is_object(a)) {
    say(err, errlen, "the answer is %s, not %s", type_name(a), what);
    return false;
  }
  return true;
}

static bool id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
}

/* An id we may put in a path: [A-Za-z0-9][A-Za-z0-9_.-]*, at most
 * DK_ID_MAX bytes (never "." or "..", which URLs would resolve). */
static bool valid_id(const char *s) {
  if (!s || !*s || !id_char(*s) || *s == '.' || *s == '-' || *s == '_')
    return false;
  size_t n = 0;
  for (; s[n]; n++)
    if (n >= DK_ID_MAX || !id_char(s[n])) return false;
  return true;
}

/* The Id field of object a: NULL with err set when missing or not valid. */
static const char *id_of(const json_t *a, char *err, size_t errlen) {
  const json_t *v = json_object_get(a, "Id");
  const char *id = json_string_value(v);
  if (!v || (json_is_string(v) && !*id)) {
    say(err, errlen, "the answer has no Id");
    return NULL;
  }
  if (!id) {
    say(err, errlen, "the answer's Id is %s, not a string", type_name(v));
    return NULL;
  }
  if (!valid_id(id)) {
    say(err, errlen, "the answer's Id is not an id (%zu bytes, or characters "
                     "other than letters, digits, '_', '.' and '-')",
        strlen(id));
    return NULL;
  }
  return id;
}

static const char *str_of(const json_t *o, const char *k) {
  return json_string_value(json_object_get(o, k));
}

static char *dup_or(const char *s, const char *def) {
  return eng_xstrdup(s ? s : def);
}

/* ---- containers ---------------------------------------------------------- */

static void mounts_read(const json_t *arr, dk_container *c) {
  size_t n = json_array_size(arr), i;
  c->mounts = eng_xcalloc(n ? n : 1, sizeof *c->mounts);
  c->n_mounts = 0;
  for (i = 0; i < n; i++) {
    const json_t *m = json_array_get(arr, i);
    if (!json_is_object(m)) continue;
    dk_mount *d = &c->mounts[c->n_mounts++];
    d->type = eng_xstrdup(str_of(m, "Type"));
    d->name = eng_xstrdup(str_of(m, "Name"));
    d->source = eng_xstrdup(str_of(m, "Source"));
    d->destination = eng_xstrdup(str_of(m, "Destination"));
    d->rw = json_is_true(json_object_get(m, "RW"));
  }
}

static void labels_read(const json_t *obj, dk_container *c) {
  size_t n = json_object_size(obj);
  c->labels = eng_xcalloc(n ? n : 1, sizeof *c->labels);
  c->n_labels = 0;
  const char *k;
  json_t *v;
  json_object_foreach((json_t *)obj, k, v) {
    if (!json_is_string(v) || c->n_labels == n) continue;
    c->labels[c->n_labels].key = eng_xstrdup(k);
    c->labels[c->n_labels].value = eng_xstrdup(json_string_value(v));
    c->n_labels++;
  }
}

static void env_read(const json_t *arr, dk_container *c) {
  size_t n = json_array_size(arr), i;
  c->env_keys = eng_xcalloc(n ? n : 1, sizeof *c->env_keys);
  c->n_env_keys = 0;
  for (i = 0; i < n; i++) {
    const char *s = json_string_value(json_array_get(arr, i));
    size_t k = s ? strcspn(s, "=") : 0;
    if (k) c->env_keys[c->n_env_keys++] = eng_xstrndup(s, k);
  }
}

/* "/name" in an inspect, Names[0] in a list. */
static const char *name_of(const json_t *a) {
  const char *n = str_of(a, "Name");
  if (!n || !*n)
    n = json_string_value(json_array_get(json_object_get(a, "Names"), 0));
  if (!n) return "";
  return n[0] == '/' ? n + 1 : n;
}

/* A container from object a (either form); -1 without a valid Id. */
static int container_read(const json_t *a, dk_container *out, char *err,
                          size_t errlen) {
  const char *id = id_of(a, err, errlen);
  if (!id) return -1;
  dk_container c = {0};
  c.id = eng_xstrdup(id);
  c.name = eng_xstrdup(name_of(a));
  const json_t *config = json_object_get(a, "Config");
  if (!json_is_object(config)) config = NULL;
  const char *img = str_of(config, "Image");
  c.image = dup_or(img && *img ? img : str_of(a, "Image"), "");
  const json_t *st = json_object_get(a, "State");
  const char *health = NULL;
  if (json_is_object(st)) {
    c.state = dup_or(str_of(st, "Status"), "");
    c.running = json_is_true(json_object_get(st, "Running"));
    health = str_of(json_object_get(st, "Health"), "Status");
  } else {
    c.state = dup_or(json_string_value(st), "");
  }
  c.health = dup_or(health && *health ? health : NULL, "none");
  c.status = dup_or(str_of(a, "Status"), "");
  mounts_read(json_object_get(a, "Mounts"), &c);
  const json_t *labels = json_object_get(a, "Labels");
  if (!json_is_object(labels)) labels = json_object_get(config, "Labels");
  labels_read(labels, &c);
  env_read(json_object_get(config, "Env"), &c);
  *out = c;
  return 0;
}

int dk_answer_container(const json_t *answer, dk_container *out, char *err,
                        size_t errlen) {
  if (!is_object(answer, err, errlen, "a container")) return -1;
  return container_read(answer, out, err, errlen);
}

void dk_container_free(dk_container *c) {
  if (!c) return;
  free(c->id);
  free(c->name);
  free(c->image);
  free(c->state);
  free(c->status);
  free(c->health);
  for (size_t i = 0; i < c->n_mounts; i++) {
    free(c->mounts[i].type);
    free(c->mounts[i].name);
    free(c->mounts[i].source);
    free(c->mounts[i].destination);
  }
  free(c->mounts);
  for (size_t i = 0; i < c->n_labels; i++) {
    free(c->labels[i].key);
    free(c->labels[i].value);
  }
  free(c->labels);
  for (size_t i = 0; i < c->n_env_keys; i++) free(c->env_keys[i]);
  free(c->env_keys);
  memset(c, 0, sizeof *c);
}

const char *dk_container_label(const dk_container *c, const char *key) {
  for (size_t i = 0; c && key && i < c->n_labels; i++)
    if (!strcmp(c->labels[i].key, key)) return c->labels[i].value;
  return NULL;
}

int dk_answer_containers(const json_t *answer, dk_container_list *out,
                         char *err, size_t errlen) {
  if (!answer) {
    say(err, errlen, NOT_JSON);
    return -1;
  }
  if (!json_is_array(answer)) {
    say(err, errlen, "the answer is %s, not a list of containers",
        type_name(answer));
    return -1;
  }
  size_t n = json_array_size(answer);
  dk_container_list l = {eng_xcalloc(n ? n : 1, sizeof *l.v), 0, 0};
  for (size_t i = 0; i < n; i++) {
    const json_t *e = json_array_get(answer, i);
    if (!json_is_object(e) || container_read(e, &l.v[l.n], NULL, 0) != 0) {
      l.skipped++;
      continue;
    }
    l.n++;
  }
  *out = l;
  return 0;
}

void dk_container_list_free(dk_container_list *l) {
  if (!l) return;
  for (size_t i = 0; i < l->n; i++) dk_container_free(&l->v[i]);
  free(l->v);
  memset(l, 0, sizeof *l);
}

/* ---- volumes ------------------------------------------------------------- */

int dk_answer_volumes(const json_t *answer, dk_volume_list *out, char *err,
                      size_t errlen) {
  if (!is_object(answer, err, errlen, "a list of volumes")) return -1;
  const json_t *vs = json_object_get(answer, "Volumes");
  if (!vs) {
    say(err, errlen, "the answer has no Volumes");
    return -1;
  }
  if (!json_is_array(vs) && !json_is_null(vs)) {
    say(err, errlen, "the answer's Volumes is %s, not a list", type_name(vs));
    return -1;
  }
  size_t n = json_array_size(vs);
  dk_volume_list l = {eng_xcalloc(n ? n : 1, sizeof *l.v), 0, 0};
  for (size_t i = 0; i < n; i++) {
    const json_t *v = json_array_get(vs, i);
    const char *name = str_of(v, "Name");
    if (!name || !*name) {
      l.skipped++;
      continue;
    }
    dk_volume *d = &l.v[l.n++];
    d->name = eng_xstrdup(name);
    d->driver = eng_xstrdup(str_of(v, "Driver"));
    d->mountpoint = eng_xstrdup(str_of(v, "Mountpoint"));
    const json_t *u = json_object_get(v, "UsageData");
    const json_t *sz = json_is_object(u) ? json_object_get(u, "Size") : NULL;
    d->size = json_is_integer(sz) && json_integer_value(sz) >= 0
                  ? (int64_t)json_integer_value(sz) : -1;
  }
  *out = l;
  return 0;
}

void dk_volume_list_free(dk_volume_list *l) {
  if (!l) return;
  for (size_t i = 0; i < l->n; i++) {
    free(l->v[i].name);
    free(l->v[i].driver);
    free(l->v[i].mountpoint);
  }
  free(l->v);
  memset(l, 0, sizeof *l);
}

/* ---- create, exec, wait -------------------------------------------------- */

int dk_answer_id(const json_t *answer, char id[DK_ID_MAX + 1], char *err,
                 size_t errlen) {
  if (!is_object(answer, err, errlen, "an object with an Id")) return -1;
  const char *v = id_of(answer, err, errlen);
  if (!v) return -1;
  memcpy(id, v, strlen(v) + 1); /* valid_id: at most DK_ID_MAX bytes */
  return 0;
}

/* An integer that fits an int, from field k of o. */
static int int_of(const json_t *o, const char *k, int *out, char *err,
                  size_t errlen) {
  const json_t *v = json_object_get(o, k);
  if (!v) {
    say(err, errlen, "the answer has no %s", k);
    return -1;
  }
  if (!json_is_integer(v)) {
    say(err, errlen, "the answer's %s is %s, not an integer", k, type_name(v));
    return -1;
  }
  json_int_t x = json_integer_value(v);
  if (x < INT_MIN || x > INT_MAX) {
    say(err, errlen, "the answer's %s (%lld) is out of range", k, (long long)x);
    return -1;
  }
  *out = (int)x;
  return 0;
}

int dk_answer_exec(const json_t *answer, dk_exec_state *out, char *err,
                   size_t errlen) {
  if (!is_object(answer, err, errlen, "an exec's state")) return -1;
  const json_t *r = json_object_get(answer, "Running");
  if (r && !json_is_boolean(r)) {
    say(err, errlen, "the answer's Running is %s, not true or false",
        type_name(r));
    return -1;
  }
  dk_exec_state s = {json_is_true(r), 0};
  if (!s.running && int_of(answer, "ExitCode", &s.exit_code, err, errlen) != 0)
    return -1;
  *out = s;
  return 0;
}

int dk_answer_wait(const json_t *answer, int *exit_code, char *err,
                   size_t errlen) {
  if (!is_object(answer, err, errlen, "a wait's result")) return -1;
  const char *m = str_of(json_object_get(answer, "Error"), "Message");
  if (m && *m) {
    char q[DK_MESSAGE_MAX + 1];
    quote(q, sizeof q, m, strlen(m), DK_MESSAGE_MAX);
    say(err, errlen, "the daemon could not wait for it: %s", q);
    return -1;
  }
  int code;
  if (int_of(answer, "StatusCode", &code, err, errlen) != 0) return -1;
  *exit_code = code;
  return 0;
}

/* ---- error answers ------------------------------------------------------- */

const char *dk_answer_message(long status, const char *body, size_t len,
                              const json_t *json, char *buf, size_t n) {
  if (!buf || !n) return buf;
  if (!body) len = 0;
  char text[DK_MESSAGE_MAX + 1], msg[DK_MESSAGE_MAX + 64];
  const char *m = str_of(json, "message");
  size_t sp = 0;
  while (sp < len && (body[sp] == ' ' || body[sp] == '\t' ||
                      body[sp] == '\r' || body[sp] == '\n'))
    sp++;
  if (m && *m) {
    quote(text, sizeof text, m, strlen(m), DK_MESSAGE_MAX);
    snprintf(msg, sizeof msg, "%s (HTTP %ld)", text, status);
  } else if (sp < len && body[sp] == '<') {
    snprintf(msg, sizeof msg, "HTTP %ld with an HTML page: this is not a "
                              "Docker API (check DOCKER_HOST)", status);
  } else if (sp == len) {
    snprintf(msg, sizeof msg, "HTTP %ld with an empty answer", status);
  } else {
    quote(text, sizeof text, body + sp, len - sp, DK_QUOTE_MAX);
    snprintf(msg, sizeof msg, "HTTP %ld: %s", status, text);
  }
  quote(buf, n, msg, strlen(msg), n - 1);
  return buf;
}

/* ---- text ---------------------------------------------------------------- */

char *dk_answer_text(const char *b, size_t len) {
  eng_strbuf t = {0};
  const unsigned char *p = (const unsigned char *)b;
  size_t i = 0;
  while (b && i < len) {
    size_t run = i; /* a run of valid text at once */
    size_t k;
    while (run < len && (k = utf8_len(p + run, len - run)) > 0) run += k;
    if (run > i) eng_strbuf_add(&t, b + i, run - i);
    i = run;
    if (i < len) {
      eng_strbuf_add(&t, "\xEF\xBF\xBD", 3); /* U+FFFD */
      i++;
    }
  }
  return eng_strbuf_steal(&t);
}
