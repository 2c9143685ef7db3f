/* lexer.c - a command line split into simple commands of words, in one of
 * two syntaxes (shell.h): the shell's, for the analyser (quotes, escapes,
 * line continuations, expansions from the line's own variables and the
 * environment, comments, redirections, here-documents, the operators that
 * end a command), and the guards' literal reading, for forbidden_commands.
 * One lexer: a struct holding the command and the word being read, and one
 * handler per kind of token, chosen by the token's first character from the
 * syntax's table. When a command ends, what it does to the line's
 * variables is tracked (track()), so that later expansions see them as sh
 * would, or as unknown. Also the inverse: a word quoted for the shell.
 * Pure: no I/O beyond reading the environment. */
#include "shell/shell.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* The longest here-document terminator looked for; with a longer one the
 * body runs to the end of the line's text (it is never read as commands). */
#define HEREDOC_TAG_MAX 63

/* How a command ends, for what follows it. */
typedef enum flow {
  FLOW_LIST,       /* ; newline, the end: the next one runs after it */
  FLOW_ANDOR,      /* && ||: the next one may not run */
  FLOW_PIPE,       /* | |&: both run in subshells, the next reads its output */
  FLOW_BACKGROUND, /* &: it runs in a subshell */
  FLOW_OPEN,       /* (: a subshell starts */
  FLOW_CLOSE       /* ): the subshell ends */
} flow;

typedef struct lexer {
  const char *p;          /* the next character */
  const char *const *env; /* for $NAME */
  eng__cmd_lexed *out;
  eng__cmd_words cur; /* the command being read */
  eng__buf b;         /* the word being read */
  bool in_word;       /* a word is being read (it may be empty: '') */
  bool unknown;       /* it holds an expansion not known here */
  char *var;          /* the first unknown expansion naming a variable */
  int brace;          /* unquoted: 1 after `{`, 2 after `{` then `,` or `..` */
  bool redirect;      /* the next word is a redirection's target, not a word */
  /* ENG_CMD_SHELL: the variables the line set so far, as env entries
   * (NAME=VALUE, NAME alone: unknown), NULL-terminated */
  char **vars;
  size_t nvars;
  bool opaque;        /* eval, source, a function: any variable may be set */
  bool after_andor;   /* the command being read follows && or || */
  bool piped;         /* it follows | */
  int depth;          /* subshells open: ( */
  int compound;       /* loops and branches open: if, while, for, case */
  const char *body_end; /* after a here-document's body, skipped at the
                         * newline that ends the line opening it */
  eng__buf text;      /* ENG_CMD_GUARD: the line as one text */
  bool space;         /* ENG_CMD_GUARD: a space before the text's next one */
  char quote;         /* ENG_CMD_GUARD: the quote open, or 0 */
  bool shell;         /* ENG_CMD_SHELL: variables are tracked */
  bool rule;          /* ENG_CMD_RULE: no comments */
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

static void add_word(eng__cmd_words *ws, eng__buf *b, bool unknown,
                     char *var) {
  ws->w = eng__xrealloc(ws->w, (ws->n + 1) * sizeof *ws->w);
  ws->w[ws->n].s = eng__buf_steal(b);
  ws->w[ws->n].unknown = unknown;
  ws->w[ws->n].var = var;
  ws->n++;
}

static void strv_free(char **v) {
  for (size_t i = 0; v && v[i]; i++) free(v[i]);
  free(v);
}

void eng__cmd_words_free(eng__cmd_words *ws) {
  for (size_t i = 0; i < ws->n; i++) {
    free(ws->w[i].s);
    free(ws->w[i].var);
  }
  free(ws->w);
  free(ws->heredoc);
  strv_free(ws->vars);
  memset(ws, 0, sizeof *ws);
}

void eng__cmd_words_copy(eng__cmd_words *out, const eng__cmd_words *ws) {
  *out = *ws;
  out->w = eng__xcalloc(ws->n ? ws->n : 1, sizeof *out->w);
  for (size_t i = 0; i < ws->n; i++) {
    out->w[i].s = eng__xstrdup(ws->w[i].s);
    out->w[i].unknown = ws->w[i].unknown;
    out->w[i].var = eng__xstrdup(ws->w[i].var);
  }
  out->heredoc = eng__xstrdup(ws->heredoc);
  out->vars = NULL;
  size_t nv = 0;
  while (ws->vars && ws->vars[nv]) nv++;
  if (!ws->vars) return;
  out->vars = eng__xcalloc(nv + 1, sizeof *out->vars);
  for (size_t i = 0; i < nv; i++) out->vars[i] = eng__xstrdup(ws->vars[i]);
}

static void end_word(lexer *l) {
  if (l->in_word) {
    if (l->redirect) {
      eng__buf_free(&l->b);
      l->redirect = false;
    } else {
      add_word(&l->cur, &l->b, l->unknown, l->var);
      l->var = NULL;
    }
  }
  free(l->var);
  l->var = NULL;
  l->in_word = false;
  l->unknown = false;
  l->brace = 0;
}

static void track(lexer *l, const eng__cmd_words *ws, bool uncertain);
static char **vars_copy(const lexer *l);

static void end_cmd(lexer *l, flow how) {
  end_word(l);
  eng__cmd_lexed *o = l->out;
  bool empty = !l->cur.n;
  if (l->vars || l->opaque) l->cur.vars = empty ? NULL : vars_copy(l);
  if (!empty && l->shell)
    track(l, &l->cur, l->after_andor || l->piped || how == FLOW_PIPE ||
                          how == FLOW_BACKGROUND || l->depth > 0);
  if (!empty || how == FLOW_PIPE || how == FLOW_ANDOR) {
    l->after_andor = how == FLOW_ANDOR;
    l->piped = how == FLOW_PIPE;
  }
  if (how == FLOW_OPEN) l->depth++;
  if (how == FLOW_CLOSE && l->depth > 0) l->depth--;
  if (!empty) {
    o->cmd = eng__xrealloc(o->cmd, (o->n + 1) * sizeof *o->cmd);
    o->cmd[o->n++] = l->cur;
  } else {
    eng__cmd_words_free(&l->cur);
  }
  memset(&l->cur, 0, sizeof l->cur);
  l->cur.stdin_pipe = l->piped;
}

/* Not NULL, and never equal to a value of the environment. */
const char eng__cmd_unknown[] = "(not known)";

const char *eng__cmd_var(const char *const *env, const char *name, size_t n) {
  for (size_t i = 0; env && env[i]; i++) {
    if (!strcmp(env[i], "*")) return eng__cmd_unknown;
    if (strncmp(env[i], name, n)) continue;
    if (env[i][n] == '=') return env[i] + n + 1;
    if (env[i][n] == '\0') return eng__cmd_unknown;
  }
  return NULL;
}

const char *eng__cmd_getenv(const char *const *env, const char *name,
                            size_t n) {
  const char *v = eng__cmd_var(env, name, n);
  if (v) return v;
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

bool eng__cmd_in_list(const char *list, const char *word) {
  size_t n = strlen(word);
  for (const char *p = list; *p; p += strspn(p, " ")) {
    size_t len = strcspn(p, " ");
    if (len && len == n && !strncmp(p, word, n)) return true;
    p += len;
  }
  return false;
}

/* The length of NAME when word is NAME=... or NAME+=..., else 0. */
static size_t assignment_name(const char *word) {
  size_t n = 0;
  while (is_name_char(word[n], n == 0)) n++;
  return n && (word[n] == '=' || (word[n] == '+' && word[n + 1] == '=')) ? n : 0;
}

/* ---- the line's variables -------------------------------------------- */

/* NAME (its first n characters) is set to value, or to a value not known
 * (NULL). */
static void vars_set(lexer *l, const char *name, size_t n, const char *value) {
  for (size_t i = 0; i < l->nvars; i++)
    if (!strncmp(l->vars[i], name, n) &&
        (l->vars[i][n] == '=' || !l->vars[i][n])) {
      free(l->vars[i]);
      memmove(l->vars + i, l->vars + i + 1, (l->nvars - i) * sizeof *l->vars);
      l->nvars--;
      break;
    }
  l->vars = eng__xrealloc(l->vars, (l->nvars + 2) * sizeof *l->vars);
  l->vars[l->nvars++] = value ? eng__asprintf("%.*s=%s", (int)n, name, value)
                              : eng__xstrndup(name, n);
  l->vars[l->nvars] = NULL;
}

/* The word names a variable (read X, unset X): NAME is left unknown, or
 * set to value. Other words are not names: nothing changes. */
static void name_set(lexer *l, const char *word, const char *value) {
  size_t n = 0;
  while (is_name_char(word[n], n == 0)) n++;
  if (n && !word[n]) vars_set(l, word, n, value);
}

/* Any variable may have been set: none is known from here on. */
static void vars_forget(lexer *l) {
  for (size_t i = 0; i < l->nvars; i++) {
    char *eq = strchr(l->vars[i], '=');
    if (eq) *eq = '\0';
  }
  l->opaque = true;
}

static char **vars_copy(const lexer *l) {
  char **v = eng__xcalloc(l->nvars + 2, sizeof *v);
  for (size_t i = 0; i < l->nvars; i++) v[i] = eng__xstrdup(l->vars[i]);
  if (l->opaque) v[l->nvars] = eng__xstrdup("*");
  return v;
}

/* Each word from ws->w[from] on that names a variable (or assigns one,
 * for let) leaves it unknown; options are skipped. */
static void names_unknown(lexer *l, const eng__cmd_words *ws, size_t from) {
  for (size_t j = from; j < ws->n; j++) {
    const char *w = ws->w[j].s;
    size_t n = 0;
    while (is_name_char(w[n], n == 0)) n++;
    if (n && (!w[n] || assignment_name(w))) vars_set(l, w, n, NULL);
  }
}

/* export/readonly/declare/local/typeset NAME=VALUE...: an option other
 * than -x -r -g -p (an integer, an array, a case) makes values unknown;
 * -n (a name for another variable) makes every variable unknown. */
static void declare(lexer *l, const eng__cmd_words *ws, size_t from,
                    bool uncertain) {
  bool odd = false;
  for (size_t j = from; j < ws->n; j++) {
    const char *w = ws->w[j].s;
    if (w[0] == '-' || w[0] == '+') {
      if (w[1 + strspn(w + 1, "xrgp")]) odd = true;
      if (strchr(w, 'n')) vars_forget(l);
      continue;
    }
    size_t n = assignment_name(w);
    if (n) /* NAME alone keeps its value */
      vars_set(l, w, n, !uncertain && !odd && !ws->w[j].unknown && w[n] == '='
                            ? w + n + 1 : NULL);
  }
}

/* What the program at ws->w[i] does to the variables after it. */
static void track_program(lexer *l, const eng__cmd_words *ws, size_t i,
                          bool uncertain) {
  const char *prog = ws->w[i].s;
  if (eng__cmd_in_list("export readonly declare local typeset", prog)) {
    declare(l, ws, i + 1, uncertain);
  } else if (eng__cmd_in_list("read mapfile readarray getopts let", prog)) {
    names_unknown(l, ws, i + 1);
    const char *set_too = !strcmp(prog, "read")      ? "REPLY"
                          : !strcmp(prog, "getopts") ? "OPTARG"
                          : strcmp(prog, "let")      ? "MAPFILE"
                                                     : NULL;
    if (set_too) vars_set(l, set_too, strlen(set_too), NULL);
  } else if (!strcmp(prog, "printf")) {
    if (i + 2 < ws->n && !strcmp(ws->w[i + 1].s, "-v")) /* printf -v X */
      name_set(l, ws->w[i + 2].s, NULL);
  } else if (!strcmp(prog, "unset")) {
    for (size_t j = i + 1; j < ws->n; j++) {
      if (!strcmp(ws->w[j].s, "-f")) return; /* functions, not variables */
      name_set(l, ws->w[j].s, uncertain ? NULL : "");
    }
  } else if (eng__cmd_in_list("eval source . function", prog)) {
    vars_forget(l);
  }
}

/* What a command does to the variables of the commands after it, as sh
 * would (shell.h); uncertain: it may not run, or runs in a subshell. */
static void track(lexer *l, const eng__cmd_words *ws, bool uncertain) {
  size_t i = 0;
  for (; i < ws->n; i++) { /* the reserved words that start it */
    const char *w = ws->w[i].s;
    if (eng__cmd_in_list("if while until case", w)) {
      l->compound++;
    } else if (eng__cmd_in_list("for select", w)) { /* for X in ... */
      l->compound++;
      if (i + 1 < ws->n) name_set(l, ws->w[i + 1].s, NULL);
      return;
    } else if (eng__cmd_in_list("fi done esac", w)) {
      if (l->compound > 0) l->compound--;
    } else if (!eng__cmd_in_list("then else elif do ! { } builtin command", w)) {
      break;
    }
  }
  uncertain = uncertain || l->compound > 0;
  size_t k = i;
  while (k < ws->n && assignment_name(ws->w[k].s)) k++;
  if (k < ws->n) { /* VAR=x prefixes are for that program only */
    track_program(l, ws, k, uncertain);
    return;
  }
  for (; i < k; i++) { /* only assignments: they last */
    const char *w = ws->w[i].s;
    size_t n = assignment_name(w);
    vars_set(l, w, n, !uncertain && !ws->w[i].unknown && w[n] == '='
                          ? w + n + 1 : NULL);
  }
}

/* ---- expansions ------------------------------------------------------ */

/* The expansion at p (used characters) is unknown, and names a variable
 * whose value the line does not know. */
static void unknown_var(lexer *l, const char *p, size_t used) {
  l->unknown = true;
  if (!l->var) l->var = eng__xstrndup(p, used);
}

/* A value into the word; split: unquoted, the characters of IFS (white
 * space unless the line set it) separate words. */
static void add_value(lexer *l, const char *v, bool split) {
  const char *ifs = " \t\n";
  const char *set = split ? eng__cmd_var((const char *const *)l->vars, "IFS", 3)
                          : NULL;
  if (set == eng__cmd_unknown) {
    unknown_var(l, "$IFS", 4);
    split = false;
  } else if (set) {
    ifs = set;
  }
  for (; *v; v++) {
    if (split && *ifs && strchr(ifs, *v)) {
      end_word(l);
      continue;
    }
    eng__buf_add(&l->b, v, 1);
    l->in_word = true;
  }
}

/* $NAME or ${NAME} at p: append its value to the word (or mark it
 * unknown). Returns the characters consumed. */
static size_t expand(lexer *l, const char *p, bool split) {
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
      if (!is_name_char(name[i], i == 0)) { /* ${X:-y}, ${1} and friends */
        unknown_var(l, p, used);
        if (i && (name[i] == '=' || (name[i] == ':' && name[i + 1] == '=')))
          vars_set(l, name, i, NULL); /* ${X:=y} may set X */
        return used;
      }
  } else {
    while (is_name_char(name[n], n == 0)) n++;
    if (n == 0) { /* the positional parameters; $?, $$: not known here */
      if (p[1] && strchr("123456789@*", p[1])) unknown_var(l, p, 2);
      l->unknown = true;
      return p[1] ? 2 : 1;
    }
    used = n + 1;
  }
  const char *v = eng__cmd_var((const char *const *)l->vars, name, n);
  if (!v && l->opaque) v = eng__cmd_unknown;
  if (!v) v = eng__cmd_getenv(l->env, name, n);
  if (v == eng__cmd_unknown) unknown_var(l, p, used);
  else if (v) add_value(l, v, split);
  else l->unknown = true; /* set nowhere */
  return used;
}

/* From the first `(` at or after p to after the `)` matching it. */
static const char *skip_parens(const char *p) {
  int depth = 0;
  for (; *p; p++) {
    if (*p == '(') depth++;
    else if (*p == ')' && --depth == 0) return p + 1;
  }
  return p;
}

/* ---- the shell's tokens ---------------------------------------------- */

/* Any other character: part of the word. An unquoted {a,b} or {1..3} is a
 * brace expansion (bash): the words it makes are not known here. */
static bool lex_char(lexer *l) {
  char ch = *l->p;
  if (ch == '{') l->brace = 1;
  else if (l->brace && (ch == ',' || (ch == '.' && l->p[1] == '.'))) l->brace = 2;
  else if (ch == '}' && l->brace == 2) unknown_var(l, "{...}", 5);
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
      unknown_var(l, "$(...)", 6);
      p += 2;
    } else if (*p == '`') {
      unverified(l, "command substitution `...`");
      unknown_var(l, "`...`", 5);
      p++;
    } else if (*p == '$' && p[1] && p[1] != '"') {
      p += expand(l, p, false);
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

/* $(...), <(...), >(...): not known here; skipped to the matching
 * parenthesis. */
static bool lex_command_substitution(lexer *l) {
  unverified(l, l->p[0] == '$' ? "command substitution $(...)"
                               : "process substitution <(...)");
  unknown_var(l, l->p[0] == '$' ? "$(...)" : "<(...)", 6);
  l->in_word = true;
  l->p = skip_parens(l->p);
  return true;
}

/* $NAME, ${NAME}, $(...); a `$` before white space is a character. An
 * unquoted expansion is split at white space, except in an assignment;
 * one with nothing in it makes no word. */
static bool lex_dollar(lexer *l) {
  const char *p = l->p;
  if (p[1] == '(') return lex_command_substitution(l);
  if (p[1] == '"') { /* $"...": a double-quoted string */
    l->p++;
    return lex_double_quote(l);
  }
  if (p[1] == '\'') { /* $'...': its escapes are not decoded here */
    const char *e = p + 2;
    while (*e && *e != '\'') e += e[0] == '\\' && e[1] ? 2 : 1;
    if (!*e) return false;
    unknown_var(l, "$'...'", 6);
    l->in_word = true;
    l->p = e + 1;
    return true;
  }
  if (!p[1] || isspace((unsigned char)p[1])) return lex_char(l);
  l->p += expand(l, p, !(l->b.data && assignment_name(l->b.data)));
  if (l->unknown) l->in_word = true;
  return true;
}

/* `...`: not known here. */
static bool lex_backquote(lexer *l) {
  unverified(l, "command substitution `...`");
  const char *e = strchr(l->p + 1, '`');
  unknown_var(l, "`...`", 5);
  l->in_word = true;
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

/* NAME=(...) (the word so far is NAME=): an array, its value unknown. */
static bool array_assignment(lexer *l) {
  size_t n = l->in_word && l->b.data ? assignment_name(l->b.data) : 0;
  if (!n || l->b.data[l->b.len - 1] != '=') return false;
  l->unknown = true;
  if (!l->var) l->var = eng__asprintf("$%.*s", (int)n, l->b.data);
  l->p = skip_parens(l->p);
  return true;
}

/* NAME() at `(`: a function is defined (its body may set any variable). */
static bool function_definition(const lexer *l) {
  const char *q = l->p + 1;
  while (*q == ' ' || *q == '\t') q++;
  return *q == ')' && l->cur.n + (l->in_word ? 1 : 0) == 1;
}

/* ; | & && || |& ( ) and newline end a command; &> FILE is a redirection;
 * the newline ending a line that opens here-documents skips their bodies. */
static bool lex_operator(lexer *l) {
  const char *p = l->p;
  if (p[0] == '&' && p[1] == '>') { /* &> FILE */
    end_word(l);
    l->redirect = true;
    l->p += p[2] == '>' ? 3 : 2;
    return true;
  }
  if (p[0] == '(' && array_assignment(l)) return true;
  flow how = FLOW_LIST;
  size_t len = 1;
  if (p[0] == '&' || p[0] == '|') {
    how = p[1] == p[0] ? FLOW_ANDOR : p[0] == '|' ? FLOW_PIPE : FLOW_BACKGROUND;
    len = p[1] == p[0] || (p[0] == '|' && p[1] == '&') ? 2 : 1;
  } else if (p[0] == '(') {
    how = FLOW_OPEN;
    if (function_definition(l)) vars_forget(l);
  } else if (p[0] == ')') {
    how = FLOW_CLOSE;
  }
  end_cmd(l, how);
  if (p[0] == '\n' && l->body_end) {
    l->p = l->body_end;
    l->body_end = NULL;
    return true;
  }
  l->p += len;
  return true;
}

/* Where the here-document that `<<` at p opens ends (nl: the end of the
 * line it starts after): after the line holding its terminator, or at the
 * end of text; *body_end: where its body ends. */
static const char *heredoc_end(const char *p, const char *nl,
                               const char **body_end) {
  /* the terminator is the next word; skip to a line holding it */
  char tag[HEREDOC_TAG_MAX + 1] = "";
  const char *t = p + 2;
  while (*t == ' ' || *t == '-' || *t == '\'' || *t == '"') t++;
  size_t tl = strcspn(t, " '\"\n;|&");
  if (tl && tl < sizeof tag) memcpy(tag, t, tl);
  tag[tl < sizeof tag ? tl : 0] = '\0';
  const char *q = nl + 1;
  while (*q) {
    const char *line = q;
    const char *le = strchr(q, '\n');
    size_t ll = le ? (size_t)(le - q) : strlen(q);
    while (ll && (q[0] == '\t')) {
      q++;
      ll--;
    }
    if (*tag && ll == strlen(tag) && !strncmp(q, tag, ll)) {
      *body_end = line;
      return q + ll;
    }
    q = le ? le + 1 : q + ll;
  }
  *body_end = q;
  return q;
}

/* <<TAG and <<< WORD feed stdin. The body of <<TAG (kept with the
 * command, not read as commands) follows the line, after the bodies this
 * line opened before; the rest of the line is read. */
static bool lex_heredoc(lexer *l) {
  const char *p = l->p;
  l->cur.stdin_heredoc = true;
  l->redirect = true; /* the terminator, or the word of <<< */
  l->p += p[2] == '<' || p[2] == '-' ? 3 : 2;
  const char *nl = l->body_end ? l->body_end : strchr(p, '\n');
  free(l->cur.heredoc);
  l->cur.heredoc = NULL;
  if (p[2] == '<' || !nl || !*nl) return true;
  const char *body_end;
  l->body_end = heredoc_end(p, nl, &body_end);
  l->cur.heredoc = eng__xstrndup(nl + 1, (size_t)(body_end - nl - 1));
  return true;
}

/* A redirection: `2>`, `>>`, `<`, `<<EOF`, `<<<`, `2>&1`; its target is
 * not a word of the command. */
static bool lex_redirect(lexer *l) {
  if (l->p[1] == '(') return lex_command_substitution(l); /* <(...) */
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

/* A backslash is dropped; a backslash-newline is white space; outside
 * single quotes, an escaped quote opens nothing and an escaped # starts
 * no comment. */
static bool guard_escape(lexer *l) {
  if (l->p[1] == '\n') {
    l->p++;
    return guard_blank(l);
  }
  l->p++;
  if (l->quote == '\'') return true;
  if (*l->p == '#') return guard_char(l);
  if (*l->p && strchr("'\"`", *l->p)) {
    l->in_word = true;
    l->p++;
  }
  return true;
}

/* Quotes are dropped: what they hold is read as if unquoted (only which
 * quote is open is kept, for comments). */
static bool guard_quote(lexer *l) {
  if (!l->quote) l->quote = *l->p;
  else if (l->quote == *l->p) l->quote = 0;
  l->in_word = true;
  l->p++;
  return true;
}

/* # starting a word outside quotes: a comment, to the end of the line. */
static bool guard_comment(lexer *l) {
  if (l->in_word || l->quote || l->rule) return guard_char(l);
  while (*l->p && *l->p != '\n') l->p++;
  return true;
}

/* ; | & ( ) end a command (kept in the text). */
static bool guard_operator(lexer *l) {
  end_cmd(l, FLOW_LIST);
  text_add(l, *l->p);
  l->p++;
  return true;
}

static const lex_syntax guard_syntax = {
    .by_char = {['\\'] = guard_escape, ['\''] = guard_quote,
                ['"'] = guard_quote, ['`'] = guard_quote, ['#'] = guard_comment,
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
  const lex_syntax *sx = syntax == ENG_CMD_SHELL ? &shell_syntax : &guard_syntax;
  lexer l = {.p = line, .env = env, .out = out,
             .shell = syntax == ENG_CMD_SHELL, .rule = syntax == ENG_CMD_RULE};
  for (size_t i = 0; env && env[i]; i++)
    if (!strcmp(env[i], "*")) l.opaque = true;
  while (*l.p) {
    lex_fn *h = sx->by_char[(unsigned char)*l.p];
    if ((h ? h : sx->other)(&l)) continue;
    eng__buf_free(&l.b);
    eng__buf_free(&l.text);
    eng__cmd_words_free(&l.cur);
    free(l.var);
    strv_free(l.vars);
    unverified(&l, "quotes that do not close");
    return false;
  }
  end_cmd(&l, FLOW_LIST);
  strv_free(l.vars);
  if (syntax != ENG_CMD_SHELL) out->text = eng__buf_steal(&l.text);
  return true;
}

void eng__cmd_lexed_free(eng__cmd_lexed *l) {
  for (size_t i = 0; i < l->n; i++) eng__cmd_words_free(&l->cmd[i]);
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
