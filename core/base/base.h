/*
 * base/base.h - the bottom of the core: what every layer above uses and
 * that uses nothing of the engine (docs/architecture.md).
 *
 *   util.c     buffers, allocation, durations, time, files, globs, SHA-256
 *   diag.c     compiler-style diagnostics (file:line:col: error: ...)
 *   redact.c   secrets: registered values and URL passwords masked
 *   yaml.c     YAML text into nodes with line and column; JSON out as YAML
 *   convert.c  values into declared types (a parameter's type, values,
 *              range and check)
 *   retention.c which backups a retention policy keeps
 *   age.c       the age encryption format (streams of backups)
 *
 * Nothing here is part of the plugin SDK (eng__ prefix); plugins include
 * only <engine/plugin.h>.
 */
#ifndef ENGINE_BASE_H
#define ENGINE_BASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <uv.h>
#include <jansson.h>
#include "engine/plugin.h"

/* Exit codes of the engine (engine(1), EXIT STATUS). */
enum {
  ENG_EXIT_OK = 0,
  ENG_EXIT_FAILED = 1,
  ENG_EXIT_USAGE = 2,
  ENG_EXIT_REFUSED = 3,
  ENG_EXIT_SLO = 4,
  ENG_EXIT_INTERRUPTED = 5,
  ENG_EXIT_LOCKED = 6 /* another run holds the lock: nothing ran */
};

/* ---- util.c ------------------------------------------------------------ */

typedef struct eng__buf {
  char *data; /* always NUL-terminated once anything was appended */
  size_t len, cap;
} eng__buf;

void eng__buf_add(eng__buf *b, const void *p, size_t n);
void eng__buf_adds(eng__buf *b, const char *s);
void eng__buf_addf(eng__buf *b, const char *fmt, ...) ENG_PRINTF(2, 3);
void eng__buf_vaddf(eng__buf *b, const char *fmt, va_list ap);
/* Text escaped for XML and HTML (<, >, &, "; other control characters
 * than newline and tab as '?'). s may be NULL. */
void eng__buf_add_xml(eng__buf *b, const char *s);
char *eng__buf_steal(eng__buf *b); /* returns "" (malloc'd) when empty */
void eng__buf_free(eng__buf *b);

void *eng__xmalloc(size_t n);   /* aborts on OOM */
void *eng__xcalloc(size_t n, size_t m);
void *eng__xrealloc(void *p, size_t n);
char *eng__xstrdup(const char *s); /* NULL -> NULL */
char *eng__xstrndup(const char *s, size_t n);
char *eng__asprintf(const char *fmt, ...) ENG_PRINTF(1, 2);

/* Room for a SHA-256 in hex: 64 digits and the NUL. */
#define ENG__SHA256_HEX 65
/* A day in milliseconds: the longest retry delay, --grace and lock TTL. */
#define ENG__DAY_MS ((int64_t)86400000)
/* --grace when none is given: Kubernetes allows 30 s between SIGTERM and
 * SIGKILL by default; 25 s leaves room for the last state write. */
#define ENG__GRACE_DEFAULT_MS 25000

/* The longest duration anywhere (timeouts, delays, sleeps): 100 years. */
#define ENG__DURATION_MAX_MS ((int64_t)3153600000000)

/* "500ms", "30s", "5m", "1h", "1h30m", "2d", or a plain number of seconds,
 * at most ENG__DURATION_MAX_MS. Returns 0 and milliseconds, or -1. */
int eng__parse_duration(const char *s, int64_t *ms);
/* A point in time: RFC 3339 ("2026-11-29T22:20:00Z", fraction and offset
 * optional) or "YYYY-MM-DD HH:MM[:SS][Z|+HH:MM]"; without an offset it is
 * UTC. A bare date is midnight UTC. Returns 0 and milliseconds since the
 * epoch, or -1 with the reason in why. */
int eng__parse_timestamp(const char *s, int64_t *ms, char *why, size_t n);
#define ENG__TIMESTAMP_FORMS \
  "RFC 3339 like 2026-11-29T22:20:00Z, or 2026-11-29 22:20 (UTC), " \
  "2026-11-29 22:20:00+01:00"
/* "1.2s", "340ms", "2m05s" into buf. */
const char *eng__fmt_duration(int64_t ms, char *buf, size_t n);
/* "12.3 MB" */
const char *eng__fmt_bytes(int64_t bytes, char *buf, size_t n);
/* Nearest candidate within a small edit distance, or NULL. */
const char *eng__suggest(const char *word, const char *const *cands,
                         size_t n);
size_t eng__edit_distance(const char *a, const char *b);
/* Wall clock in ms since the epoch, and RFC 3339 UTC with ms. Both go
 * through an injectable clock (tests). */
int64_t eng__now_ms(void);
void eng__set_clock(int64_t (*fn)(void));
const char *eng__fmt_time(int64_t epoch_ms, char *buf, size_t n);
/* Read a whole file (max bytes); NULL and errno on failure. */
char *eng__read_file(const char *path, size_t max, size_t *len);
int eng__mkdir_p(const char *path, int mode);
/* "$TMPDIR/NAME" (TMPDIR unset or empty: /tmp); caller frees. With
 * unique, the name gets the six-character suffix mkstemp()/mkdtemp()
 * replace. */
char *eng__tmp_path(const char *name, bool unique);
/* Shell-style glob match (fnmatch without flags). */
bool eng__glob(const char *pattern, const char *s);
/* SHA-256 hex (65 bytes incl. NUL) of a buffer. */
void eng__sha256_hex(const void *p, size_t n, char out[ENG__SHA256_HEX]);

/* ---- retention.c: which backups a retention policy keeps ------------------ */

/* The time the first date in a file or key name gives (YYYY-MM-DD or
 * YYYYMMDD, then optionally [T_-]HH[:]MM[[:]SS], UTC), in ms; -1 when the
 * name holds none. */
int64_t eng__retention_name_time(const char *name);
/* host->retention_plan (plugin.h, ABI 1.7): {policy, backups: the
 * decision on each, in the input's order} or {error}; NULL when the input
 * is not an array of {name}. */
json_t *eng__retention_plan(const json_t *backups, const json_t *policy,
                            int64_t now_ms);

/* ---- age.c: the age encryption format v1 ----------------------------------- */

/* The first key line of text (a key file's content: '#' lines skipped): an
 * identity AGE-SECRET-KEY-1... (priv and its pub, *has_priv true) or a
 * recipient age1... (pub). 0, or -1 when it is neither. */
int eng__age_key_parse(const char *text, unsigned char pub[32],
                       unsigned char priv[32], bool *has_priv);

#define ENG__AGE_MAX_STANZAS 16
typedef struct eng__age_header {
  int stanzas;                 /* stanzas of any type */
  int x25519;                  /* X25519 stanzas read (at most the max) */
  unsigned char share[ENG__AGE_MAX_STANZAS][32]; /* their ephemeral shares */
  unsigned char body[ENG__AGE_MAX_STANZAS][32];  /* their wrapped file keys */
  unsigned char mac[32];
  size_t mac_len;              /* bytes the MAC covers (up to "---") */
} eng__age_header;
/* Parse the header at the start of buf: its length (to the payload
 * nonce), 0 when buf does not hold all of it yet, or -1 (why in err). */
long eng__age_header_parse(const char *buf, size_t len, eng__age_header *h,
                           char *err, size_t errlen);

/* A streaming encryptor to pub (priv NULL), or a decryptor with the
 * identity priv (pub its public key). Free with eng__age_free. */
typedef struct eng__age eng__age;
eng__age *eng__age_new(const unsigned char pub[32], const unsigned char *priv);
/* Feed bytes (end: the last of them); what comes out is appended to out.
 * Keeps at most about one 64 KiB chunk. 0, or -1 with why in err (never a
 * key); after a failure every call fails. */
int eng__age_update(eng__age *a, const void *buf, size_t len, bool end,
                    eng__buf *out, char *err, size_t errlen);
void eng__age_free(eng__age *a);

/* ---- diag.c: compiler-style diagnostics ---------------------------------- */

/* Errors (and, apart, warnings) printed for one input before the rest are
 * only counted: like a compiler, the first ones explain the others, and a
 * large broken input does not bury the terminal. */
#define ENG__DIAG_SHOWN 20

typedef struct eng__diags {
  size_t errors, warnings; /* all of them, shown or not */
  bool quiet;       /* collect only */
  bool color;
  eng__buf text;    /* everything shown, in order */
  /* this input's: shown so far, and counted past ENG__DIAG_SHOWN */
  size_t shown_errors, shown_warnings, hidden_errors, hidden_warnings;
  char *hidden_file; /* the file the first hidden one was about */
} eng__diags;

void eng__diag_error(eng__diags *d, const char *file, int line, int col,
                     const char *fmt, ...) ENG_PRINTF(5, 6);
void eng__diag_warn(eng__diags *d, const char *file, int line, int col,
                    const char *fmt, ...) ENG_PRINTF(5, 6);
/* True when the next error would only be counted, not shown: a check
 * skips the work that only its message needs (a "did you mean"). */
bool eng__diags_hidden(const eng__diags *d);
/* The end of one input (a runbook, an inventory): say in one note how many
 * errors and warnings were not shown, and count the next input's anew. */
void eng__diags_end(eng__diags *d);
/* eng__diags_end, then the text freed. */
void eng__diags_free(eng__diags *d);

/* ---- redact.c: secrets ------------------------------------------------ */

typedef struct eng__redactor eng__redactor;
eng__redactor *eng__redactor_create(void);
void eng__redactor_destroy(eng__redactor *r);
/* Register a secret value (copied). Values shorter than 3 bytes are
 * ignored (they would mask everything). Also registers the password part of
 * a URL given whole. */
void eng__redactor_add(eng__redactor *r, const char *value);
/* New malloc'd string with every secret replaced by "***" and URL
 * passwords ("scheme://user:PASS@") masked. */
char *eng__redact(const eng__redactor *r, const char *in);
/* Redact a JSON value in place (strings only). */
void eng__redact_json(const eng__redactor *r, json_t *v);

/* ---- yaml.c: YAML document -> node tree with file:line:col ------------- */

typedef enum eng__node_kind {
  ENG__N_SCALAR,
  ENG__N_MAP,
  ENG__N_SEQ
} eng__node_kind;

/* A compiled template: a scalar holding ${...} (expr/template.c compiles
 * and renders it; a node owns it). */
typedef struct eng__tpl eng__tpl;

typedef struct eng__tpl_part {
  char *text; /* literal, or the Lua expression */
  bool expr;
  int ref;    /* compiled expression */
} eng__tpl_part;

struct eng__tpl {
  size_t n;
  eng__tpl_part *parts;
  bool whole; /* exactly one ${...}: keeps the value's type */
};


typedef struct eng__node {
  eng__node_kind kind;
  int line, col;
  char *str;               /* scalar text */
  bool plain;              /* scalar written without quotes */
  bool comment_after;      /* plain, and " #..." follows it on its line: a
                              YAML comment, which may have cut it short */
  size_t n;                /* map entries / seq items */
  struct eng__node **keys; /* map: key scalars */
  struct eng__node **vals; /* map values, seq items */
  eng__tpl *tpl;           /* scalar holding ${...}: compiled template */
} eng__node;

#define ENG__YAML_MAX_BYTES (8u << 20)
#define ENG__YAML_MAX_DEPTH 64
#define ENG__YAML_MAX_NODES 200000
#define ENG__MAX_STEPS 10000

/* Parse; NULL with a diagnostic on error. */
eng__node *eng__yaml_parse(const char *file, const char *text, size_t len,
                           eng__diags *d);
void eng__node_free(eng__node *n); /* and the templates it owns */
void eng__tpl_free(eng__tpl *t);
eng__node *eng__node_get(const eng__node *map, const char *key);
/* A scalar converted by the YAML core schema (null/bool/int/float/str);
 * maps/seqs recursively. Templates are left as strings. */
json_t *eng__node_to_json(const eng__node *n);
const char *eng__node_kind_name(const eng__node *n);
/* Append v as block-style YAML (one document's body, no "---"): strings
 * bare when they read back as the same string, multi-line text as a
 * literal block, anything else double-quoted; parsing the text gives v
 * again (eng__node_to_json). */
void eng__yaml_emit(eng__buf *b, const json_t *v);

/* ---- convert.c: values into declared types --------------------------------- */

/* Convert v (borrowed) to type; NULL with err on failure. */
json_t *eng__convert(const json_t *v, eng_type type, const char *choices,
                     char *err, size_t errlen);
const char *eng__type_name(eng_type t);
/* v converted to what parameter p accepts: type, choices, min/max, check. */
json_t *eng__convert_param(const json_t *v, const eng_param *p, char *err,
                           size_t errlen);
int eng__type_parse(const char *s, eng_type *t);
/* The type name of a list's declared items, or NULL when undeclared. */
const char *eng__items_name(eng_items items);
/* A parameter's type as people read it: "int", "list of string", "any (a
 * list: of string)". */
void eng__param_type_text(const eng_param *p, char *buf, size_t n);
/* The type name meant by an unknown one ("integer" -> "int"), or NULL. */
const char *eng__type_suggest(const char *s);
/* One line (at most n - 1 bytes) saying what a step produced: its
 * `summary` output when the action sets one, else the size, rows or
 * failing exit code, else its first scalar outputs in declared order
 * ("name=value"). Empty when there is nothing to say. */
void eng__outputs_summary(const json_t *outputs, const eng_output *decl,
                          char *buf, size_t n);

#endif /* ENGINE_BASE_H */
