/* yaml.c - YAML text -> eng__node tree, every node with its line:col; JSON
 * values -> block-style YAML text. */
#include "base/base.h"

#include <engine/mem.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* Where libyaml's marks are in the text: a mark's index counts characters
 * (code points, after a byte order mark), so the byte offset of every
 * CP_STEP-th character is kept and the few characters after it walked. */
#define CP_STEP 256

typedef struct cpoints {
  const char *text; /* after the byte order mark */
  size_t len;
  size_t *at; /* byte offset of character k * CP_STEP */
  size_t n;
} cpoints;

static void cpoints_init(cpoints *cp, const char *text, size_t len) {
  size_t bom = len >= 3 && !memcmp(text, "\xEF\xBB\xBF", 3) ? 3 : 0;
  cp->text = text + bom;
  cp->len = len - bom;
  cp->at = eng__xmalloc((cp->len / CP_STEP + 2) * sizeof *cp->at);
  cp->n = 0;
  size_t chars = 0;
  for (size_t i = 0; i < cp->len; i++) {
    if (((unsigned char)cp->text[i] & 0xC0) == 0x80) continue;
    if (chars++ % CP_STEP == 0) cp->at[cp->n++] = i;
  }
}

/* The byte offset of character `index`, or len past the end. */
static size_t cpoints_offset(const cpoints *cp, size_t index) {
  size_t k = index / CP_STEP;
  if (k >= cp->n) return cp->len;
  size_t i = cp->at[k];
  for (size_t left = index % CP_STEP; left && i < cp->len; left--) {
    i++;
    while (i < cp->len && ((unsigned char)cp->text[i] & 0xC0) == 0x80) i++;
  }
  return i;
}

typedef struct conv {
  yaml_document_t *doc;
  const char *file;
  eng__diags *d;
  size_t count;
  bool failed;
  cpoints *cp; /* NULL when the text holds no '#' */
} conv;

static eng__node *convert(conv *c, yaml_node_t *yn, int depth);

/* A scalar's text; false (said) for one holding a NUL. */
static bool convert_scalar(conv *c, yaml_node_t *yn, eng__node *n) {
  n->kind = ENG__N_SCALAR;
  if (memchr(yn->data.scalar.value, '\0', yn->data.scalar.length)) {
    /* a "\0" escape would cut the value short wherever C reads it */
    eng__diag_error(c->d, c->file, n->line, n->col,
                    "a NUL character (\\0) in a value is not allowed: "
                    "remove it");
    c->failed = true;
    return false;
  }
  n->str = eng__xstrndup((const char *)yn->data.scalar.value,
                         yn->data.scalar.length);
  n->plain = yn->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  if (n->plain && c->cp) { /* " #..." after it on its line: a comment */
    size_t i = cpoints_offset(c->cp, yn->end_mark.index);
    while (i < c->cp->len && (c->cp->text[i] == ' ' || c->cp->text[i] == '\t'))
      i++;
    n->comment_after = i < c->cp->len && c->cp->text[i] == '#';
  }
  return true;
}

static void convert_seq(conv *c, yaml_node_t *yn, eng__node *n, int depth) {
  n->kind = ENG__N_SEQ;
  size_t cnt = (size_t)(yn->data.sequence.items.top -
                        yn->data.sequence.items.start);
  n->vals = eng__xcalloc(cnt ? cnt : 1, sizeof *n->vals);
  for (size_t i = 0; i < cnt; i++) {
    yaml_node_t *item =
        yaml_document_get_node(c->doc, yn->data.sequence.items.start[i]);
    eng__node *v = item ? convert(c, item, depth + 1) : NULL;
    if (!v) break;
    n->vals[n->n++] = v;
  }
}

/* One key of a mapping, checked: a scalar, not seen before (seen: key ->
 * its line, hashed, so a map of many keys stays linear). NULL when the
 * conversion cannot go on. */
static eng__node *convert_key(conv *c, yaml_node_t *kn, json_t *seen,
                              int depth) {
  if (kn->type != YAML_SCALAR_NODE) {
    eng__diag_error(c->d, c->file, (int)kn->start_mark.line + 1,
                    (int)kn->start_mark.column + 1,
                    "a mapping key must be a plain string");
    c->failed = true;
    return NULL;
  }
  eng__node *k = convert(c, kn, depth + 1);
  if (!k) return NULL;
  json_t *first = json_object_get(seen, k->str);
  if (first) {
    eng__diag_error(c->d, c->file, k->line, k->col,
                    "duplicate key '%s' (first at line %d); remove "
                    "one of them",
                    k->str, (int)json_integer_value(first));
    c->failed = true;
  } else {
    json_object_set_new(seen, k->str, json_integer(k->line));
  }
  return k;
}

static void convert_map(conv *c, yaml_node_t *yn, eng__node *n, int depth) {
  n->kind = ENG__N_MAP;
  size_t cnt = (size_t)(yn->data.mapping.pairs.top -
                        yn->data.mapping.pairs.start);
  n->keys = eng__xcalloc(cnt ? cnt : 1, sizeof *n->keys);
  n->vals = eng__xcalloc(cnt ? cnt : 1, sizeof *n->vals);
  json_t *seen = json_object();
  for (size_t i = 0; i < cnt; i++) {
    yaml_node_pair_t *p = &yn->data.mapping.pairs.start[i];
    yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
    yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
    if (!kn || !vn) break;
    eng__node *k = convert_key(c, kn, seen, depth);
    if (!k) break;
    eng__node *v = convert(c, vn, depth + 1);
    if (!v) {
      eng__node_free(k);
      break;
    }
    n->keys[n->n] = k;
    n->vals[n->n++] = v;
  }
  json_decref(seen);
}

/* Within the bounds of depth and node count; false (said) when not. */
static bool within_bounds(conv *c, yaml_node_t *yn, int depth) {
  if (depth > ENG__YAML_MAX_DEPTH) {
    eng__diag_error(c->d, c->file, (int)yn->start_mark.line + 1,
                    (int)yn->start_mark.column + 1,
                    "nesting deeper than %d levels; a runbook never needs "
                    "this: flatten the structure",
                    ENG__YAML_MAX_DEPTH);
    c->failed = true;
    return false;
  }
  if (++c->count > ENG__YAML_MAX_NODES) {
    eng__diag_error(c->d, c->file, (int)yn->start_mark.line + 1,
                    (int)yn->start_mark.column + 1,
                    "more than %d YAML nodes: the runbook is too large (or "
                    "aliases expand without bound); split it",
                    ENG__YAML_MAX_NODES);
    c->failed = true;
    return false;
  }
  return true;
}

/* A node's tag is the one its kind implies: an explicit tag (`!!binary`,
 * `!!null`, `!!python/object:...`, `!local`) would mean something the
 * engine does not do (it would read the text as a string), so it is
 * refused; `!!str`, `!!seq` and `!!map` say what is implied anyway. */
static bool tag_implied(conv *c, yaml_node_t *yn) {
  const char *tag = (const char *)yn->tag;
  const char *implied = yn->type == YAML_SEQUENCE_NODE  ? YAML_DEFAULT_SEQUENCE_TAG
                        : yn->type == YAML_MAPPING_NODE ? YAML_DEFAULT_MAPPING_TAG
                                                        : YAML_DEFAULT_SCALAR_TAG;
  if (!tag || !strcmp(tag, implied)) return true;
  const char *shown = !strncmp(tag, "tag:yaml.org,2002:", 18) ? tag + 18 : tag;
  eng__diag_error(c->d, c->file, (int)yn->start_mark.line + 1,
                  (int)yn->start_mark.column + 1,
                  "explicit YAML tag '%s%s' is not supported: remove the tag "
                  "(a runbook's values are strings, numbers, booleans, null, "
                  "lists and maps as written)",
                  shown == tag ? "" : "!!", shown);
  c->failed = true;
  return false;
}

static eng__node *convert(conv *c, yaml_node_t *yn, int depth) {
  if (c->failed || !within_bounds(c, yn, depth) || !tag_implied(c, yn))
    return NULL;
  eng__node *n = eng__xcalloc(1, sizeof *n);
  n->line = (int)yn->start_mark.line + 1;
  n->col = (int)yn->start_mark.column + 1;
  switch (yn->type) {
  case YAML_SCALAR_NODE:
    if (!convert_scalar(c, yn, n)) {
      free(n);
      return NULL;
    }
    break;
  case YAML_SEQUENCE_NODE:
    convert_seq(c, yn, n, depth);
    break;
  case YAML_MAPPING_NODE:
    convert_map(c, yn, n, depth);
    break;
  default:
    n->kind = ENG__N_SCALAR;
    n->str = eng__xstrdup("");
    n->plain = true;
    break;
  }
  return n;
}

/* libyaml's time grows with the square of flow nesting ([[[[...): refuse
 * deep nesting before it parses. Quotes and comments are skipped; a
 * bracket inside a plain or block scalar counts too, which only matters
 * past the limit. */
static bool flow_too_deep(const char *file, const char *text, size_t len,
                          eng__diags *d) {
  int depth = 0, line = 1;
  char quote = 0;
  for (size_t i = 0; i < len; i++) {
    char ch = text[i];
    if (ch == '\n') line++;
    if (quote) {
      if (ch == '\\' && quote == '"') i++;
      else if (ch == quote) quote = 0;
      continue;
    }
    if (ch == '#' && (i == 0 || text[i - 1] == ' ' || text[i - 1] == '\n')) {
      while (i < len && text[i] != '\n') i++;
      line++;
      continue;
    }
    if ((ch == '"' || ch == '\'') && depth > 0) quote = ch;
    else if (ch == '[' || ch == '{') {
      if (++depth > ENG__YAML_MAX_DEPTH) {
        eng__diag_error(d, file, line, 0,
                        "more than %d nested [ or { (flow collections); "
                        "write the structure with indentation instead",
                        ENG__YAML_MAX_DEPTH);
        return true;
      }
    } else if ((ch == ']' || ch == '}') && depth > 0) {
      depth--;
    }
  }
  return false;
}

/* Nothing follows the first document: a second one (`---`), even one
 * that does not parse, would be silently ignored, so it is refused. */
static bool single_document(yaml_parser_t *p, const char *file,
                            eng__diags *d) {
  yaml_document_t next;
  if (!yaml_parser_load(p, &next)) {
    yaml_mark_t m = p->problem_mark;
    eng__diag_error(d, file, (int)m.line + 1, (int)m.column + 1,
                    "a second YAML document follows the runbook and does not "
                    "parse (%s): a runbook file holds one document; remove "
                    "everything from its '---'",
                    p->problem ? p->problem : "error");
    return false;
  }
  yaml_node_t *root = yaml_document_get_root_node(&next);
  int line = root ? (int)next.start_mark.line + 1 : 0;
  yaml_document_delete(&next);
  if (!root) return true;
  eng__diag_error(d, file, line, 1,
                  "a second YAML document (---) follows the runbook: a "
                  "runbook file holds one document; remove it or move it to "
                  "a file of its own");
  return false;
}

eng__node *eng__yaml_parse(const char *file, const char *text, size_t len,
                           eng__diags *d) {
  if (len > ENG__YAML_MAX_BYTES) {
    char a[32], b[32];
    eng__diag_error(d, file, 0, 0,
                    "file is %s; a runbook may be at most %s (is this the "
                    "right file?)",
                    eng__fmt_bytes((int64_t)len, a, sizeof a),
                    eng__fmt_bytes(ENG__YAML_MAX_BYTES, b, sizeof b));
    return NULL;
  }
  if (memchr(text, '\0', len)) {
    eng__diag_error(d, file, 0, 0,
                    "file contains NUL bytes: this is not a YAML text file");
    return NULL;
  }
  if (flow_too_deep(file, text, len, d)) return NULL;
  yaml_parser_t p;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&p)) {
    eng__diag_error(d, file, 0, 0, "cannot initialise the YAML parser");
    return NULL;
  }
  yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
  if (!yaml_parser_load(&p, &doc)) {
    yaml_mark_t m = p.problem_mark;
    eng__diag_error(d, file, (int)m.line + 1, (int)m.column + 1,
                    "invalid YAML: %s%s%s", p.problem ? p.problem : "error",
                    p.context ? " " : "", p.context ? p.context : "");
    yaml_parser_delete(&p);
    return NULL;
  }
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  eng__node *out = NULL;
  if (!root) {
    eng__diag_error(d, file, 1, 1, "the file is empty; a runbook starts "
                                   "with 'version: 1'");
  } else {
    cpoints cp = {0};
    if (memchr(text, '#', len)) cpoints_init(&cp, text, len);
    conv c = {&doc, file, d, 0, false, cp.at ? &cp : NULL};
    out = convert(&c, root, 0);
    free(cp.at);
    if (c.failed || !single_document(&p, file, d)) {
      eng__node_free(out);
      out = NULL;
    }
  }
  yaml_document_delete(&doc);
  yaml_parser_delete(&p);
  return out;
}

/* A node owns the template compiled from its text (template.c fills it). */
void eng__tpl_free(eng__tpl *t) {
  if (!t) return;
  for (size_t i = 0; i < t->n; i++) free(t->parts[i].text);
  free(t->parts);
  free(t);
}

void eng__node_free(eng__node *n) {
  if (!n) return;
  for (size_t i = 0; i < n->n; i++) {
    if (n->keys) eng__node_free(n->keys[i]);
    eng__node_free(n->vals[i]);
  }
  free(n->keys);
  free(n->vals);
  free(n->str);
  eng__tpl_free(n->tpl);
  free(n);
}

eng__node *eng__node_get(const eng__node *map, const char *key) {
  if (!map || map->kind != ENG__N_MAP) return NULL;
  for (size_t i = 0; i < map->n; i++)
    if (strcmp(map->keys[i]->str, key) == 0) return map->vals[i];
  return NULL;
}

const char *eng__node_kind_name(const eng__node *n) {
  if (!n) return "nothing";
  switch (n->kind) {
  case ENG__N_MAP: return "a mapping";
  case ENG__N_SEQ: return "a list";
  default: return "a scalar";
  }
}

static json_t *scalar_to_json(const eng__node *n) {
  const char *s = n->str;
  if (!n->plain) return json_string(s);
  if (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
      !strcmp(s, "NULL"))
    return json_null();
  if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
    return json_true();
  if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
    return json_false();
  char *end;
  errno = 0;
  long long i = strtoll(s, &end, 10);
  if (*end == '\0' && errno == 0 && end != s) return json_integer(i);
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    errno = 0;
    i = strtoll(s + 2, &end, s[1] == 'x' ? 16 : 8);
    if (*end == '\0' && errno == 0) return json_integer(i);
  }
  errno = 0;
  double v = strtod(s, &end);
  if (*end == '\0' && errno == 0 && end != s && isfinite(v) &&
      strpbrk(s, "0123456789") && !strpbrk(s, "xXpP"))
    return json_real(v);
  return json_string(s);
}

json_t *eng__node_to_json(const eng__node *n) {
  if (!n) return json_null();
  switch (n->kind) {
  case ENG__N_SCALAR: return scalar_to_json(n);
  case ENG__N_SEQ: {
    json_t *a = json_array();
    for (size_t i = 0; i < n->n; i++)
      json_array_append_new(a, eng__node_to_json(n->vals[i]));
    return a;
  }
  case ENG__N_MAP: {
    json_t *o = json_object();
    for (size_t i = 0; i < n->n; i++)
      json_object_set_new(o, n->keys[i]->str, eng__node_to_json(n->vals[i]));
    return o;
  }
  }
  return json_null();
}

/* ---- JSON values out as YAML (block style) ------------------------------ */

/* Can s be written bare? Only text that reads back as the same string
 * under YAML 1.1 and 1.2 alike: starts with a letter, holds letters,
 * digits and . _ / -, and is not a boolean or null word. */
static bool yaml_plain_ok(const char *s) {
  static const char *const words[] = {"true", "false", "yes", "no", "on",
                                      "off",  "y",     "n",   "null"};
  if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) return false;
  for (const char *p = s; *p; p++)
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "0123456789._/-", *p))
      return false;
  for (size_t i = 0; i < sizeof words / sizeof *words; i++)
    if (!strcasecmp(s, words[i])) return false;
  return true;
}

/* A double-quoted YAML scalar: control characters, DEL, C1 controls,
 * line and paragraph separators and the byte order mark escaped; other
 * UTF-8 written as is. */
static void yaml_quote(eng__buf *b, const char *s) {
  eng__buf_adds(b, "\"");
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    unsigned char c = *p;
    if (c == '"' || c == '\\') eng__buf_addf(b, "\\%c", c);
    else if (c == '\n') eng__buf_adds(b, "\\n");
    else if (c == '\t') eng__buf_adds(b, "\\t");
    else if (c < 0x20 || c == 0x7f) eng__buf_addf(b, "\\x%02x", c);
    else if (c == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
      eng__buf_addf(b, "\\x%02x", p[1]);
      p++;
    } else if (c == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
      eng__buf_addf(b, "\\u%04x", 0x2000 + (p[2] - 0x80));
      p += 2;
    } else if (c == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
      eng__buf_adds(b, "\\ufeff");
      p += 2;
    } else eng__buf_add(b, p, 1);
  }
  eng__buf_adds(b, "\"");
}

/* Multi-line text fit for a literal block scalar: printable (tabs and
 * newlines allowed), no carriage return, no line that starts or is only
 * whitespace in a way a reader would take as indentation of the first
 * line, and no "---"/"..." that is harmless inside a block anyway. */
static bool yaml_block_ok(const char *s) {
  if (!strchr(s, '\n') || s[0] == ' ' || s[0] == '\t' || s[0] == '\n')
    return false;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if ((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f) return false;
    if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) return false;
    if (*p == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9))
      return false;
    if (*p == 0xef && p[1] == 0xbb && p[2] == 0xbf) return false;
    /* a line of only blanks before a tab-indented line confuses some
     * readers; trailing blanks on a line are fine */
    if (*p == '\n' && p[1] == '\t') return false;
  }
  return true;
}

static void yaml_indent(eng__buf *b, int n) {
  for (int i = 0; i < n; i++) eng__buf_adds(b, " ");
}

static void yaml_block(eng__buf *b, const char *s, int indent) {
  size_t len = strlen(s), nl = 0;
  while (nl < len && s[len - 1 - nl] == '\n') nl++;
  eng__buf_adds(b, nl == 0 ? "|-\n" : nl == 1 ? "|\n" : "|+\n");
  const char *p = s;
  while (*p) {
    const char *e = strchr(p, '\n');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n) yaml_indent(b, indent);
    eng__buf_add(b, p, n);
    eng__buf_adds(b, "\n");
    if (!e) break;
    p = e + 1;
  }
}

static void yaml_scalar(eng__buf *b, const json_t *v, int indent) {
  switch (json_typeof(v)) {
  case JSON_STRING: {
    const char *s = json_string_value(v);
    if (yaml_plain_ok(s)) eng__buf_addf(b, "%s\n", s);
    else if (yaml_block_ok(s)) yaml_block(b, s, indent);
    else {
      yaml_quote(b, s);
      eng__buf_adds(b, "\n");
    }
    break;
  }
  case JSON_INTEGER:
    eng__buf_addf(b, "%" JSON_INTEGER_FORMAT "\n", json_integer_value(v));
    break;
  case JSON_REAL: {
    char num[40];
    eng__buf_addf(b, "%s\n", eng_fmt_real(json_real_value(v), num, sizeof num));
    break;
  }
  case JSON_TRUE: eng__buf_adds(b, "true\n"); break;
  case JSON_FALSE: eng__buf_adds(b, "false\n"); break;
  case JSON_OBJECT: eng__buf_adds(b, "{}\n"); break;
  case JSON_ARRAY: eng__buf_adds(b, "[]\n"); break;
  default: eng__buf_adds(b, "null\n"); break;
  }
}

static bool yaml_nested(const json_t *v) {
  return (json_is_object(v) && json_object_size(v)) ||
         (json_is_array(v) && json_array_size(v));
}

static void yaml_value(eng__buf *b, const json_t *v, int indent, bool first_inline);

/* A key and its value; the key's line starts at `indent` (or right here
 * when it is the first key after a sequence's "- "). */
static void yaml_entry(eng__buf *b, const char *key, const json_t *v,
                       int indent, bool here) {
  if (!here) yaml_indent(b, indent);
  if (yaml_plain_ok(key)) eng__buf_adds(b, key);
  else yaml_quote(b, key);
  eng__buf_adds(b, ":");
  if (yaml_nested(v)) {
    eng__buf_adds(b, "\n");
    yaml_value(b, v, indent + 2, false);
  } else {
    eng__buf_adds(b, " ");
    yaml_scalar(b, v, indent + 2);
  }
}

static void yaml_value(eng__buf *b, const json_t *v, int indent, bool here) {
  if (json_is_object(v)) {
    const char *k;
    json_t *x;
    bool first = true;
    json_object_foreach((json_t *)v, k, x) {
      yaml_entry(b, k, x, indent, here && first);
      first = false;
    }
  } else if (json_is_array(v)) {
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
      if (!(here && i == 0)) yaml_indent(b, indent);
      eng__buf_adds(b, "- ");
      if (yaml_nested(x)) yaml_value(b, x, indent + 2, true);
      else yaml_scalar(b, x, indent + 2);
    }
  } else {
    yaml_scalar(b, v, indent);
  }
}

void eng__yaml_emit(eng__buf *b, const json_t *v) { yaml_value(b, v, 0, false); }
