/*
 * s3_xml.c - S3's XML answers as a small tree (expat does the parsing).
 *
 * Answers are small (an error, an upload id, a page of at most 1000 keys),
 * so a tree is simpler than a streaming state machine per answer type.
 */
#include "s3_int.h"

#include <stdlib.h>
#include <string.h>

#include <expat.h>

typedef struct xml_ctx {
  s3_xml *root;
  s3_xml *stack[64];
  int depth;
  int overflow; /* depth beyond the stack: ignored */
} xml_ctx;

static s3_xml *node_new(const char *name) {
  s3_xml *n = s3_xcalloc(1, sizeof *n);
  const char *colon = strrchr(name, ':');
  n->name = s3_xstrdup(colon ? colon + 1 : name);
  n->text = s3_xstrdup("");
  return n;
}

static void on_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
  xml_ctx *c = ud;
  (void)attrs;
  if (c->overflow || c->depth >= (int)(sizeof c->stack / sizeof *c->stack)) {
    c->overflow++;
    return;
  }
  s3_xml *n = node_new(name);
  if (c->depth == 0) {
    if (c->root) { /* a second root cannot happen in well-formed XML */
      s3_xml_free(n);
      c->overflow++;
      return;
    }
    c->root = n;
  } else {
    s3_xml *p = c->stack[c->depth - 1];
    if (p->last)
      p->last->next = n;
    else
      p->child = n;
    p->last = n;
  }
  c->stack[c->depth++] = n;
}

static void on_end(void *ud, const XML_Char *name) {
  xml_ctx *c = ud;
  (void)name;
  if (c->overflow) {
    c->overflow--;
    return;
  }
  if (c->depth > 0) c->depth--;
}

static void on_text(void *ud, const XML_Char *s, int len) {
  xml_ctx *c = ud;
  if (c->overflow || c->depth == 0 || len <= 0) return;
  s3_xml *n = c->stack[c->depth - 1];
  size_t old = strlen(n->text);
  char *t = realloc(n->text, old + (size_t)len + 1);
  if (!t) abort();
  memcpy(t + old, s, (size_t)len);
  t[old + (size_t)len] = '\0';
  n->text = t;
}

s3_xml *s3_xml_parse(const char *buf, size_t len) {
  if (!buf || len == 0) return NULL;
  XML_Parser p = XML_ParserCreate(NULL);
  if (!p) return NULL;
  xml_ctx c;
  memset(&c, 0, sizeof c);
  XML_SetUserData(p, &c);
  XML_SetElementHandler(p, on_start, on_end);
  XML_SetCharacterDataHandler(p, on_text);
  int ok = XML_Parse(p, buf, (int)len, 1) == XML_STATUS_OK;
  XML_ParserFree(p);
  if (!ok) {
    s3_xml_free(c.root);
    return NULL;
  }
  return c.root;
}

void s3_xml_free(s3_xml *x) {
  while (x) {
    s3_xml *next = x->next;
    s3_xml_free(x->child);
    free(x->name);
    free(x->text);
    free(x);
    x = next;
  }
}

s3_xml *s3_xml_child(const s3_xml *x, const char *name) {
  for (s3_xml *c = x ? x->child : NULL; c; c = c->next)
    if (strcmp(c->name, name) == 0) return c;
  return NULL;
}

const char *s3_xml_text(const s3_xml *x, const char *name) {
  s3_xml *c = s3_xml_child(x, name);
  return c ? c->text : NULL;
}
