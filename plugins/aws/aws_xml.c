/*
 * aws_xml.c - AWS's XML answers as a small tree (expat does the parsing),
 * and the error an answer carries.
 *
 * Answers are small (an error, an upload id, a page of at most 1000 keys or
 * 100 snapshots), so a tree is simpler than a streaming state machine per
 * answer type. Answers come from the network: anything but a complete,
 * well-formed document gives NULL.
 */
#include "aws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <expat.h>

typedef struct xml_ctx {
  aws_xml *root;
  aws_xml *stack[64];
  int depth;
  int overflow; /* depth beyond the stack: ignored */
} xml_ctx;

static aws_xml *node_new(const char *name) {
  aws_xml *n = eng_xcalloc(1, sizeof *n);
  const char *colon = strrchr(name, ':');
  n->name = eng_xstrdup(colon ? colon + 1 : name);
  n->text = eng_xstrdup("");
  return n;
}

static void on_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
  xml_ctx *c = ud;
  (void)attrs;
  if (c->overflow || c->depth >= (int)(sizeof c->stack / sizeof *c->stack)) {
    c->overflow++;
    return;
  }
  aws_xml *n = node_new(name);
  if (c->depth == 0) {
    if (c->root) { /* a second root cannot happen in well-formed XML */
      aws_xml_free(n);
      c->overflow++;
      return;
    }
    c->root = n;
  } else {
    aws_xml *p = c->stack[c->depth - 1];
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
  aws_xml *n = c->stack[c->depth - 1];
  size_t old = strlen(n->text);
  char *t = eng_xrealloc(n->text, old + (size_t)len + 1);
  memcpy(t + old, s, (size_t)len);
  t[old + (size_t)len] = '\0';
  n->text = t;
}

aws_xml *aws_xml_parse(const char *buf, size_t len) {
  if (!buf || len == 0 || len > (size_t)1 << 30) return NULL;
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
    aws_xml_free(c.root);
    return NULL;
  }
  return c.root;
}

void aws_xml_free(aws_xml *x) {
  while (x) {
    aws_xml *next = x->next;
    aws_xml_free(x->child);
    free(x->name);
    free(x->text);
    free(x);
    x = next;
  }
}

aws_xml *aws_xml_child(const aws_xml *x, const char *name) {
  for (aws_xml *c = x ? x->child : NULL; c; c = c->next)
    if (strcmp(c->name, name) == 0) return c;
  return NULL;
}

const char *aws_xml_text(const aws_xml *x, const char *name) {
  aws_xml *c = aws_xml_child(x, name);
  return c ? c->text : NULL;
}

aws_xml *aws_xml_path(const aws_xml *x, const char *path) {
  const aws_xml *cur = x;
  char part[128];
  while (cur && *path) {
    const char *slash = strchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : strlen(path);
    if (n >= sizeof part) return NULL;
    memcpy(part, path, n);
    part[n] = '\0';
    cur = aws_xml_child(cur, part);
    path += n + (slash ? 1 : 0);
  }
  return (aws_xml *)cur;
}

int aws_error_parse(const char *body, size_t len, char *code, size_t codelen,
                    char *message, size_t msglen) {
  if (codelen) code[0] = '\0';
  if (msglen) message[0] = '\0';
  size_t i = 0;
  while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\r' ||
                     body[i] == '\t'))
    i++;
  if (i >= len || body[i] != '<') return 0;
  aws_xml *x = aws_xml_parse(body + i, len - i);
  if (!x) return 0;
  const aws_xml *e = NULL;
  if (!strcmp(x->name, "Error")) {
    e = x; /* S3 */
  } else if (!strcmp(x->name, "ErrorResponse")) {
    e = aws_xml_child(x, "Error"); /* Query API */
    if (!e) e = aws_xml_path(x, "Errors/Error");
  } else if (!strcmp(x->name, "Response")) {
    e = aws_xml_path(x, "Errors/Error"); /* EC2-style */
  }
  const char *c = e ? aws_xml_text(e, "Code") : NULL;
  const char *m = e ? aws_xml_text(e, "Message") : NULL;
  if (c && codelen) snprintf(code, codelen, "%s", c);
  if (m && msglen) snprintf(message, msglen, "%s", m);
  aws_xml_free(x);
  return e != NULL;
}
