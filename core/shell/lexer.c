/* lexer.c - a command line split into simple commands of words, in one of
 * two syntaxes (shell.h): the shell's, for the analyser (quotes, escapes,
 * line continuations, expansions from the environment, comments,
 * redirections, here-documents, the operators that end a command), and the
 * guards' literal reading, for forbidden_commands. One lexer: a struct
 * holding the command and the word being read, and one handler per kind of
 * token, chosen by the token's first character from the syntax's table.
 * Also the inverse: a word quoted for the shell. Pure: no I/O beyond
 * reading the environment. */
#include "shell/shell.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* The longest here-document terminator looked for; with a longer one the
 * body runs to the end of the line's text (it is never read as commands). */
#define HEREDOC_TAG_MAX 63

typedef struct lexer {
  const char *p;          /* the next character */
  const char *const *env; /* for $NAME */
  eng__cmd_lexed *out;
  eng__cmd_words cur; /* the command being read */
  eng__buf b;         /* the word being read */
  bool in_word;       /* a word is being read (it may be empty: '') */
  bool unknown;       /* it holds an expansion not known here */
  bool redirect;      /* the next word is a redirection's target, not a word */
  eng__buf text;      /* ENG_CMD_GUARD: the line as one text */
  bool space;         /* ENG_CMD_GUARD: a space before the text's next one */
} lexer;

/* A handler reads the token at l->p and moves l->p past it; false when the
 * line cannot be read (quotes that do not close). */
typedef bool lex_fn(lexer *l);

/* A syntax: the handler of the token each character starts, or `other`. */
typedef struct lex_syntax {
  lex_fn *by_char[UCHAR_MAX + 1];
  lex_fn *other;
} lex_syntax;

/* ---- commands and words ---------------------------------------------- */

static void unverified(lexer *l, const char *why) {
  if (!l->out->unverified) l->out->unverified = why;
}

static void add_word(eng__cmd_words *ws, eng__buf *b, bool unknown) {
  ws->w = eng__xrealloc(ws->w, (ws->n + 1) * sizeof *ws->w);
  ws->w[ws->n].s = eng__buf_steal(b);
  ws->w[ws->n].unknown = unknown;
  ws->n++;
}

static void words_free(eng__cmd_words *ws) {
  for (size_t i = 0; i < ws->n; i++) free(ws->w[i].s);
  free(ws->w);
  memset(ws, 0, sizeof *ws);
}

static void end_word(lexer *l) {
  if (l->in_word) {
    if (l->redirect) {
      eng__buf_free(&l->b);
      l->redirect = false;
    } else {
      add_word(&l->cur, &l->b, l->unknown);
    }
  }
  l->in_word = false;
  l->unknown = false;
}

static void end_cmd(lexer *l) {
  end_word(l);
  eng__cmd_lexed *o = l->out;
  if (l->cur.n) {
    o->cmd = eng__xrealloc(o->cmd, (o->n + 1) * sizeof *o->cmd);
    o->cmd[o->n++] = l->cur;
  } else {
    words_free(&l->cur);
  }
  memset(&l->cur, 0, sizeof l->cur);
}

const char *eng__cmd_getenv(const char *const *env, const char *name,
                            size_t n) {
  for (size_t i = 0; env && env[i]; i++)
    if (!strncmp(env[i], name, n) && env[i][n] == '=') return env[i] + n + 1;
  char buf[128];
  if (n >= sizeof buf) return NULL;
  memcpy(buf, name, n);
  buf[n] = '\0';
  return getenv(buf);
}

static bool is_name_char(char ch, bool first) {
  return ch == '_' || isalpha((unsigned char)ch) ||
         (!first && isdigit((unsigned char)ch));
}

bool eng__cmd_is_assignment(const char *word) {
  if (!is_name_char(*word, true)) return false;
  const char *p = word;
  while (is_name_char(*p, p == word)) p++;
  return *p == '=';
}

/* $NAME or ${NAME} at p: append its value to the word (or mark it
 * unknown). Returns the characters consumed. */
static size_t expand(lexer *l, const char *p) {
  const char *name = p + 1;
  size_t n = 0, used;
  if (p[1] == '{') {
    name = p + 2;
    while (name[n] && name[n] != '}') n++;
    if (name[n] != '}') {
      l->unknown = true;
      return strlen(p);
    }
    used = n + 3;
    for (size_t i = 0; i < n; i++)
      if (!is_name_char(name[i], i == 0)) { /* ${X:-y} and friends */
        l->unknown = true;
        return used;
      }
  } else {
    while (is_name_char(name[n], n == 0)) n++;
    if (n == 0) { /* $1, $?, $$: not known here */
      l->unknown = true;
      return p[1] ? 2 : 1;
    }
    used = n + 1;
  }
  const char *v = eng__cmd_getenv(l->env, name, n);
  if (v) eng__buf_adds(&l->b, v);
  else l->unknown = true;
  return used;
}

/* ---- the shell's tokens ---------------------------------------------- */

/* Any other character: part of the word. */
static bool lex_char(lexer *l) {
  eng__buf_add(&l->b, l->p, 1);
  l->in_word = true;
  l->p++;
  return true;
}

/* \X: X itself; a backslash-newline continues the line. */
static bool lex_escape(lexer *l) {
  const char *p = l->p;
  if (p[1] == '\n') { /* line continuation */
    l->p += 2;
    return true;
  }
  if (p[1]) eng__buf_add(&l->b, p + 1, 1);
  l->in_word = true;
  l->p += p[1] ? 2 : 1;
  return true;
}

/* 'text': all of it as it is. */
static bool lex_single_quote(lexer *l) {
  const char *e = strchr(l->p + 1, '\'');
  if (!e) return false;
  eng__buf_add(&l->b, l->p + 1, (size_t)(e - l->p - 1));
  if (!l->b.data) eng__buf_adds(&l->b, "");
  l->in_word = true;
  l->p = e + 1;
  return true;
}

/* "text": expansions inside, and the escapes of \$ \` \" \\ \newline. */
static bool lex_double_quote(lexer *l) {
  const char *p = l->p + 1;
  if (!l->b.data) eng__buf_adds(&l->b, "");
  while (*p && *p != '"') {
    if (*p == '\\' && p[1] && strchr("$`\"\\\n", p[1])) {
      if (p[1] != '\n') eng__buf_add(&l->b, p + 1, 1);
      p += 2;
    } else if (*p == '$' && p[1] == '(') {
      unverified(l, "command substitution $(...)");
      l->unknown = true;
      p += 2;
    } else if (*p == '`') {
      unverified(l, "command substitution `...`");
      l->unknown = true;
      p++;
    } else if (*p == '$' && p[1] && p[1] != '"') {
      p += expand(l, p);
    } else {
      eng__buf_add(&l->b, p, 1);
      p++;
    }
  }
  if (*p != '"') return false;
  l->in_word = true;
  l->p = p + 1;
  return true;
}

/* $(...): not known here; skipped to the matching parenthesis. */
static bool lex_command_substitution(lexer *l) {
  unverified(l, "command substitution $(...)");
  l->unknown = l->in_word = true;
  int depth = 0;
  const char *p = l->p;
  for (; *p; p++) {
    if (*p == '(') depth++;
    else if (*p == ')' && --depth == 0) {
      p++;
      break;
    }
  }
  l->p = p;
  return true;
}

/* $NAME, ${NAME}, $(...); a `$` before white space is a character. */
static bool lex_dollar(lexer *l) {
  const char *p = l->p;
  if (p[1] == '(') return lex_command_substitution(l);
  if (!p[1] || isspace((unsigned char)p[1])) return lex_char(l);
  l->p += expand(l, p);
  l->in_word = true;
  return true;
}

/* `...`: not known here. */
static bool lex_backquote(lexer *l) {
  unverified(l, "command substitution `...`");
  const char *e = strchr(l->p + 1, '`');
  l->unknown = l->in_word = true;
  l->p = e ? e + 1 : l->p + strlen(l->p);
  return true;
}

/* # at the start of a word: a comment to the end of the line. */
static bool lex_comment(lexer *l) {
  if (l->in_word) return lex_char(l);
  while (*l->p && *l->p != '\n') l->p++;
  return true;
}

static bool lex_blank(lexer *l) {
  end_word(l);
  l->p++;
  return true;
}

/* ; | & ( ) and newline end a command; &> FILE is a redirection. */
static bool lex_operator(lexer *l) {
  const char *p = l->p;
  if (p[0] == '&' && p[1] == '>') { /* &> FILE */
    end_word(l);
    l->redirect = true;
    l->p += p[2] == '>' ? 3 : 2;
    return true;
  }
  end_cmd(l);
  l->p++;
  return true;
}

/* Where the here-document that `<<` at p opens ends (nl: the end of p's
 * line): after the line holding its terminator, or at the end of text. */
static const char *heredoc_end(const char *p, const char *nl) {
  /* the terminator is the next word; skip to a line holding it */
  char tag[HEREDOC_TAG_MAX + 1] = "";
  const char *t = p + 2;
  while (*t == ' ' || *t == '-' || *t == '\'' || *t == '"') t++;
  size_t tl = strcspn(t, " '\"\n;|&");
  if (tl && tl < sizeof tag) memcpy(tag, t, tl);
  tag[tl < sizeof tag ? tl : 0] = '\0';
  const char *q = nl + 1;
  while (*q) {
    const char *le = strchr(q, '\n');
    size_t ll = le ? (size_t)(le - q) : strlen(q);
    while (ll && (q[0] == '\t')) {
      q++;
      ll--;
    }
    if (*tag && ll == strlen(tag) && !strncmp(q, tag, ll)) {
      q += ll;
      break;
    }
    q = le ? le + 1 : q + ll;
  }
  return q;
}

/* <<TAG (its body is not a command) and <<< WORD feed stdin. */
static bool lex_heredoc(lexer *l) {
  const char *p = l->p;
  l->cur.stdin_heredoc = true;
  const char *nl = p[2] != '<' ? strchr(p, '\n') : NULL;
  if (nl) {
    l->p = heredoc_end(p, nl);
    end_cmd(l); /* what follows `<<TAG` on its line is not read */
    return true;
  }
  l->p += p[2] == '<' ? 3 : 2;
  l->redirect = true;
  return true;
}

/* A redirection: `2>`, `>>`, `<`, `<<EOF`, `<<<`, `2>&1`; its target is
 * not a word of the command. */
static bool lex_redirect(lexer *l) {
  bool fd_digits = l->in_word && l->b.data &&
                   strspn(l->b.data, "0123456789") == l->b.len;
  if (l->in_word && !fd_digits) end_word(l);
  else if (fd_digits) {
    eng__buf_free(&l->b);
    l->in_word = false;
  }
  const char *p = l->p;
  if (p[0] == '<' && p[1] == '<') return lex_heredoc(l);
  if (p[0] == '<') l->cur.stdin_file = true;
  p += (p[1] == '>' || p[1] == '&' || p[1] == '|') ? 2 : 1;
  if (p[-1] == '&') { /* 2>&1: the target is a descriptor */
    while (isdigit((unsigned char)*p) || *p == '-') p++;
    l->p = p;
    return true;
  }
  l->redirect = true;
  l->p = p;
  return true;
}

static const lex_syntax shell_syntax = {
    .by_char = {['\\'] = lex_escape, ['\''] = lex_single_quote,
                ['"'] = lex_double_quote, ['$'] = lex_dollar,
                ['`'] = lex_backquote, ['#'] = lex_comment,
                [' '] = lex_blank, ['\t'] = lex_blank,
                ['\n'] = lex_operator, [';'] = lex_operator,
                ['|'] = lex_operator, ['&'] = lex_operator,
                ['('] = lex_operator, [')'] = lex_operator,
                ['<'] = lex_redirect, ['>'] = lex_redirect},
    .other = lex_char};

/* ---- the guards' tokens ---------------------------------------------- */

static void text_add(lexer *l, char ch) {
  if (l->space) eng__buf_add(&l->text, " ", 1);
  l->space = false;
  eng__buf_add(&l->text, &ch, 1);
}

/* Any other character: part of the word, lower-case. */
static bool guard_char(lexer *l) {
  char lc = (char)tolower((unsigned char)*l->p);
  eng__buf_add(&l->b, &lc, 1);
  l->in_word = true;
  text_add(l, lc);
  l->p++;
  return true;
}

/* White space (isspace in the C locale). */
static bool guard_blank(lexer *l) {
  end_word(l);
  l->space = l->text.len > 0;
  l->p++;
  return true;
}

/* A backslash is dropped; a backslash-newline is white space. */
static bool guard_escape(lexer *l) {
  if (l->p[1] == '\n') {
    l->p++;
    return guard_blank(l);
  }
  l->p++;
  return true;
}

/* Quotes are dropped: what they hold is read as if unquoted. */
static bool guard_quote(lexer *l) {
  l->p++;
  return true;
}

/* ; | & ( ) end a command (kept in the text). */
static bool guard_operator(lexer *l) {
  end_cmd(l);
  text_add(l, *l->p);
  l->p++;
  return true;
}

static const lex_syntax guard_syntax = {
    .by_char = {['\\'] = guard_escape, ['\''] = guard_quote,
                ['"'] = guard_quote, ['`'] = guard_quote,
                [' '] = guard_blank, ['\t'] = guard_blank,
                ['\n'] = guard_blank, ['\v'] = guard_blank,
                ['\f'] = guard_blank, ['\r'] = guard_blank,
                [';'] = guard_operator, ['|'] = guard_operator,
                ['&'] = guard_operator, ['('] = guard_operator,
                [')'] = guard_operator},
    .other = guard_char};

/* ---- the lexer ------------------------------------------------------- */

bool eng__cmd_lex(const char *line, eng__cmd_syntax syntax,
                  const char *const *env, eng__cmd_lexed *out) {
  memset(out, 0, sizeof *out);
  const lex_syntax *sx = syntax == ENG_CMD_GUARD ? &guard_syntax : &shell_syntax;
  lexer l = {.p = line, .env = env, .out = out};
  while (*l.p) {
    lex_fn *h = sx->by_char[(unsigned char)*l.p];
    if ((h ? h : sx->other)(&l)) continue;
    eng__buf_free(&l.b);
    eng__buf_free(&l.text);
    words_free(&l.cur);
    unverified(&l, "quotes that do not close");
    return false;
  }
  end_cmd(&l);
  if (syntax == ENG_CMD_GUARD) out->text = eng__buf_steal(&l.text);
  return true;
}

void eng__cmd_lexed_free(eng__cmd_lexed *l) {
  for (size_t i = 0; i < l->n; i++) words_free(&l->cmd[i]);
  free(l->cmd);
  free(l->text);
  memset(l, 0, sizeof *l);
}

void eng__cmd_quote(eng__buf *b, const char *word) {
  eng__buf_adds(b, "'");
  for (const char *p = word; *p; p++) {
    if (*p == '\'') eng__buf_adds(b, "'\\''"); /* end, \', start again */
    else eng__buf_add(b, p, 1);
  }
  eng__buf_adds(b, "'");
}
