/* registry.c - plugin loader (dlopen) and the action registry. */
#include "actions/actions.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef ENG_BUILD_ROOT
#define ENG_BUILD_ROOT ""
#endif
#ifndef ENG_INSTALL_PLUGIN_DIR
#define ENG_INSTALL_PLUGIN_DIR "/usr/local/lib/engine/plugins"
#endif

/* The registry: process-wide, filled once at start-up. */
static eng__plugin_entry *plugins;
static size_t n_plugins;
static eng__action_ref **actions;
static size_t n_actions;
static const char **names;
static eng__plugin_failure *failures;
static size_t n_failures;

static bool valid_name(const char *s) {
  if (!s || !*s || !(*s >= 'a' && *s <= 'z')) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
      return false;
  return true;
}

static int check_header(const eng_plugin *p, char *err, size_t errlen) {
  if (!p) {
    snprintf(err, errlen, "entry point returned NULL");
    return ENG_ERR_ABI;
  }
  size_t min = offsetof(eng_plugin, abi_minor) + sizeof p->abi_minor;
  if (p->size < min) {
    snprintf(err, errlen, "field 'size' is %u, smaller than any descriptor",
             (unsigned)p->size);
    return ENG_ERR_ABI;
  }
  if (p->abi_major != ENG_ABI_MAJOR) {
    snprintf(err, errlen,
             "field 'abi_major' is %u but this engine speaks ABI %d.%d: "
             "rebuild the plugin against this engine's <engine/plugin.h>",
             (unsigned)p->abi_major, ENG_ABI_MAJOR, ENG_ABI_MINOR);
    return ENG_ERR_ABI;
  }
  if (p->abi_minor > ENG_ABI_MINOR) {
    snprintf(err, errlen,
             "field 'abi_minor' is %u, newer than this engine's ABI %d.%d: "
             "upgrade the engine or build the plugin against the older SDK",
             (unsigned)p->abi_minor, ENG_ABI_MAJOR, ENG_ABI_MINOR);
    return ENG_ERR_ABI;
  }
  if (p->size < offsetof(eng_plugin, init) + sizeof p->init) {
    snprintf(err, errlen, "field 'size' is %u, too small for ABI %u.%u",
             (unsigned)p->size, (unsigned)p->abi_major,
             (unsigned)p->abi_minor);
    return ENG_ERR_ABI;
  }
  if (!valid_name(p->name)) {
    snprintf(err, errlen, "field 'name' must match [a-z][a-z0-9_]*");
    return ENG_ERR_ABI;
  }
  if (p->n_actions && !p->actions) {
    snprintf(err, errlen, "field 'actions' is NULL with n_actions %zu",
             p->n_actions);
    return ENG_ERR_ABI;
  }
  for (size_t i = 0; i < p->n_lua_funcs; i++) {
    const eng_lua_func *f = &p->lua_funcs[i];
    if (!valid_name(f->table) || !valid_name(f->name) || !f->start) {
      snprintf(err, errlen, "lua function %zu: needs table, name and start",
               i);
      return ENG_ERR_ABI;
    }
  }
  return ENG_OK;
}

/* ---- declarations of every ABI minor, normalized -------------------------
 * A plugin's arrays of actions and params have the element size of the
 * SDK it was built with, which its abi_minor tells. The loader copies them
 * into the current layout (fields a plugin's minor lacks stay zero), so the
 * rest of the engine sees one shape. */

/* The 1.0 layouts. */
typedef struct param_v10 {
  const char *name;
  eng_type type;
  unsigned flags;
  const char *def;
  eng_target target;
  const char *choices;
  const char *doc;
} param_v10;

typedef struct action_v10 {
  const char *name;
  const char *doc;
  eng_side_effect side_effect;
  unsigned flags;
  const eng_param *params;
  const eng_output *outputs;
  int (*start)(eng_call *call, const json_t *params);
  eng_side_effect (*classify)(const json_t *params);
} action_v10;

/* eng_param of ABI 1.1 to 1.4: 1.0's fields, then range, values and check
 * (1.5 appended `items`). */
typedef struct param_v11 {
  param_v10 v10;
  double min, max;
  const char *const *values;
  eng_param_check_fn check;
} param_v11;

_Static_assert(offsetof(param_v11, check) == offsetof(eng_param, check),
               "eng_param 1.1 is a prefix of eng_param");
_Static_assert(sizeof(param_v11) <= offsetof(eng_param, items),
               "eng_param 1.5 appends items after 1.1's fields");

/* eng_param of ABI 1.5: 1.1's fields and items (1.6 appended `forms`). */
typedef struct param_v15 {
  param_v11 v11;
  eng_items items;
} param_v15;

_Static_assert(offsetof(param_v15, items) == offsetof(eng_param, items),
               "eng_param 1.5 is a prefix of eng_param");
_Static_assert(sizeof(param_v15) <= offsetof(eng_param, forms),
               "eng_param 1.6 appends forms after 1.5's fields");

static size_t param_size(unsigned minor) {
  return minor == 0   ? sizeof(param_v10)
         : minor <= 4 ? sizeof(param_v11)
         : minor == 5 ? sizeof(param_v15)
                      : sizeof(eng_param);
}

/* eng_action of ABI 1.1: 1.0's fields, then the counts. */
typedef struct action_v11 {
  action_v10 v10;
  size_t n_params;
  size_t n_outputs;
} action_v11;

_Static_assert(offsetof(action_v11, n_outputs) == offsetof(eng_action, n_outputs),
               "eng_action 1.1 is a prefix of eng_action");

/* eng_action of ABI 1.2 and 1.3: 1.1's, then describe. */
typedef struct action_v12 {
  action_v11 v11;
  void (*describe)(const json_t *params, char *buf, size_t n);
} action_v12;

_Static_assert(offsetof(action_v12, describe) == offsetof(eng_action, describe),
               "eng_action 1.2 is a prefix of eng_action");

static size_t action_size(unsigned minor) {
  return minor == 0   ? sizeof(action_v10)
         : minor == 1 ? sizeof(action_v11)
         : minor <= 3 ? sizeof(action_v12)
                      : sizeof(eng_action);
}

/* What the loader allocated for one plugin's normalized declarations. */
typedef struct norm {
  eng_plugin desc;
  eng_action *actions;
  char **strings; /* choices joined from `values` */
  size_t n_strings;
} norm;

static void norm_free(norm *n) {
  if (!n) return;
  for (size_t i = 0; i < n->desc.n_actions; i++) {
    free((void *)n->actions[i].params);
    free((void *)n->actions[i].outputs);
  }
  free(n->actions);
  for (size_t i = 0; i < n->n_strings; i++) free(n->strings[i]);
  free(n->strings);
  free(n);
}

static const char *norm_string(norm *n, char *s) {
  n->strings = eng__xrealloc(n->strings, (n->n_strings + 1) * sizeof *n->strings);
  n->strings[n->n_strings++] = s;
  return s;
}

/* Entries of an array of elements of `size` bytes: `count` when given,
 * else up to the first entry whose name (its first field) is NULL. */
static size_t count_of(const void *arr, size_t size, size_t count) {
  if (count || !arr) return count;
  size_t n = 0;
  while (*(const char *const *)((const char *)arr + n * size)) n++;
  return n;
}

static int check_param(const char *plugin, const eng_action *a,
                       const eng_param *p, char *err, size_t errlen) {
  if ((unsigned)p->type > ENG_T_TIMESTAMP) {
    snprintf(err, errlen, "plugin '%s' action '%s' parameter '%s': unknown "
                          "type %d", plugin, a->name, p->name, (int)p->type);
    return ENG_ERR_ABI;
  }
  if ((unsigned)p->items > ENG_ITEMS_TIMESTAMP) {
    snprintf(err, errlen, "plugin '%s' action '%s' parameter '%s': field "
                          "'items' is %d, not a known element type "
                          "(ENG_ITEMS_STRING, ENG_ITEMS_INT, ...)",
             plugin, a->name, p->name, (int)p->items);
    return ENG_ERR_ABI;
  }
  if (p->items && p->type != ENG_T_LIST && p->type != ENG_T_ANY) {
    snprintf(err, errlen, "plugin '%s' action '%s' parameter '%s': 'items' "
                          "declares the elements of a list, but the "
                          "parameter is a %s: make it ENG_T_LIST (or "
                          "ENG_T_ANY for a string or a list)",
             plugin, a->name, p->name, eng__type_name(p->type));
    return ENG_ERR_ABI;
  }
  if ((p->flags & ENG_P_MIN) && (p->flags & ENG_P_MAX) && p->min > p->max) {
    snprintf(err, errlen, "plugin '%s' action '%s' parameter '%s': min %.15g is "
                          "above max %.15g", plugin, a->name, p->name, p->min,
             p->max);
    return ENG_ERR_ABI;
  }
  if (!p->def) return ENG_OK;
  json_error_t je;
  json_t *v = json_loads(p->def, JSON_DECODE_ANY, &je);
  if (!v) {
    snprintf(err, errlen, "plugin '%s' action '%s' parameter '%s': default "
                          "'%s' is not JSON text: %s", plugin, a->name,
             p->name, p->def, je.text);
    return ENG_ERR_ABI;
  }
  char why[512];
  json_t *c = json_is_null(v) ? json_incref(v)
                              : eng__convert_param(v, p, why, sizeof why);
  json_decref(v);
  if (!c) {
    snprintf(err, errlen, "plugin '%s' action '%s' parameter '%s': default "
                          "%s does not fit the declared %s: %s", plugin,
             a->name, p->name, p->def, eng__type_name(p->type), why);
    return ENG_ERR_ABI;
  }
  json_decref(c);
  return ENG_OK;
}

/* Copy action i of p into the current layout, checking it. */
static int norm_action(norm *n, const eng_plugin *p, size_t i, char *err,
                       size_t errlen) {
  unsigned minor = p->abi_minor;
  const char *raw = (const char *)p->actions + i * action_size(minor);
  eng_action *a = &n->actions[i];
  memcpy(a, raw, action_size(minor));
  a->params = NULL; /* until copied: norm_free frees what is set */
  a->outputs = NULL;
  const action_v10 *r = (const action_v10 *)raw;
  if (!valid_name(a->name) || !a->start) {
    snprintf(err, errlen, "action %zu: needs a valid 'name' and 'start'", i);
    return ENG_ERR_ABI;
  }
  if ((unsigned)a->creates > ENG_TEMPORARY) {
    snprintf(err, errlen, "action '%s': field 'creates' is %d, not a known "
                          "disposition (ENG_KEPT or ENG_TEMPORARY)",
             a->name, (int)a->creates);
    return ENG_ERR_ABI;
  }
  if ((unsigned)a->side_effect > ENG_SIDE_LAST) {
    snprintf(err, errlen, "action '%s': field 'side_effect' is %d, not a "
                          "known class", a->name, (int)a->side_effect);
    return ENG_ERR_ABI;
  }
  size_t np = count_of(r->params, param_size(minor), a->n_params);
  eng_param *params = eng__xcalloc(np + 1, sizeof *params);
  for (size_t k = 0; k < np; k++)
    memcpy(&params[k], (const char *)r->params + k * param_size(minor),
           param_size(minor));
  size_t no = count_of(r->outputs, sizeof(eng_output), a->n_outputs);
  eng_output *outs = eng__xcalloc(no + 1, sizeof *outs);
  if (no) memcpy(outs, r->outputs, no * sizeof *outs);
  a->params = params;
  a->outputs = outs;
  a->n_params = np;
  a->n_outputs = no;
  for (size_t k = 0; k < np; k++) {
    eng_param *q = &params[k];
    if (!q->name || !valid_name(q->name)) {
      snprintf(err, errlen, "action '%s': parameter %zu needs a name "
                            "matching [a-z][a-z0-9_]*", a->name, k);
      return ENG_ERR_ABI;
    }
    if (q->values && !q->choices) { /* one form for the rest of the engine */
      eng__buf b = {0};
      for (size_t v = 0; q->values[v]; v++)
        eng__buf_addf(&b, "%s%s", v ? "|" : "", q->values[v]);
      q->choices = norm_string(n, eng__buf_steal(&b));
    }
    if (check_param(p->name, a, q, err, errlen) != ENG_OK) return ENG_ERR_ABI;
  }
  return ENG_OK;
}

/* Check a descriptor and copy its declarations into the current layout;
 * NULL with the message in err when it is refused. */
static norm *normalize(const eng_plugin *p, char *err, size_t errlen) {
  if (check_header(p, err, errlen) != ENG_OK) return NULL;
  norm *n = eng__xcalloc(1, sizeof *n);
  memcpy(&n->desc, p, p->size < sizeof n->desc ? p->size : sizeof n->desc);
  n->desc.size = sizeof n->desc;
  n->actions = eng__xcalloc(p->n_actions + 1, sizeof *n->actions);
  n->desc.actions = n->actions;
  n->desc.n_actions = 0;
  int rc = ENG_OK;
  for (size_t i = 0; i < p->n_actions && rc == ENG_OK; i++) {
    n->desc.n_actions = i + 1; /* what norm_free has to free */
    rc = norm_action(n, p, i, err, errlen);
  }
  if (rc != ENG_OK) {
    norm_free(n);
    return NULL;
  }
  return n;
}

int eng__plugin_check(const eng_plugin *p, char *err, size_t errlen) {
  norm *n = normalize(p, err, errlen);
  norm_free(n);
  return n ? ENG_OK : ENG_ERR_ABI;
}

static const eng_plugin *find_plugin(const char *name) {
  for (size_t i = 0; i < n_plugins; i++)
    if (strcmp(plugins[i].desc->name, name) == 0) return plugins[i].desc;
  return NULL;
}

static void add_failure(const char *path, const char *msg, eng__diags *d) {
  failures = eng__xrealloc(failures, (n_failures + 1) * sizeof *failures);
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  char *stem = eng__xstrdup(base);
  char *dot = strchr(stem, '.');
  if (dot) *dot = '\0';
  failures[n_failures].path = eng__xstrdup(path);
  failures[n_failures].stem = stem;
  failures[n_failures].message = eng__xstrdup(msg);
  n_failures++;
  eng__diag_warn(d, path, 0, 0, "plugin refused: %s", msg);
}

static void add_plugin(norm *n, const char *path) {
  const eng_plugin *p = &n->desc;
  plugins = eng__xrealloc(plugins, (n_plugins + 1) * sizeof *plugins);
  plugins[n_plugins].desc = p;
  plugins[n_plugins].path = eng__xstrdup(path);
  plugins[n_plugins].decls = n;
  n_plugins++;
  for (size_t i = 0; i < p->n_actions; i++) {
    eng__action_ref *r = eng__xcalloc(1, sizeof *r);
    r->plugin = p;
    r->action = &p->actions[i];
    r->builtin = path == NULL;
    r->full = r->builtin ? eng__xstrdup(p->actions[i].name)
                         : eng__asprintf("%s.%s", p->name, p->actions[i].name);
    actions = eng__xrealloc(actions, (n_actions + 1) * sizeof *actions);
    actions[n_actions++] = r;
  }
  /* streams find the plugin serving a URL scheme through this list */
  if (p->size >= offsetof(eng_plugin, n_schemes) + sizeof p->n_schemes)
    for (size_t k = 0; k < p->n_schemes; k++)
      eng__stream_add_scheme(&p->schemes[k]);
}

const eng_store_scheme *eng__registry_store(const char *scheme) {
  for (size_t i = 0; i < n_plugins; i++) {
    const eng_plugin *p = plugins[i].desc; /* normalized: the current layout */
    for (size_t k = 0; p->stores && k < p->n_stores; k++)
      if (p->stores[k].scheme && !strcmp(p->stores[k].scheme, scheme))
        return &p->stores[k];
  }
  return NULL;
}

/* Real paths of every plugin file tried: the same file reached twice
 * (a directory given again, a symlink) is loaded once, silently. */
static char **seen;
static size_t n_seen;

static bool seen_before(const char *path) {
  char *real = realpath(path, NULL);
  if (!real) return false;
  for (size_t i = 0; i < n_seen; i++)
    if (!strcmp(seen[i], real)) {
      free(real);
      return true;
    }
  seen = eng__xrealloc(seen, (n_seen + 1) * sizeof *seen);
  seen[n_seen++] = real;
  return false;
}

static void load_file(const char *path, eng__diags *d) {
  if (seen_before(path)) return;
  dlerror();
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    add_failure(path, e ? e : "dlopen failed", d);
    return;
  }
  void *sym = dlsym(h, ENG_PLUGIN_ENTRY_SYMBOL);
  if (!sym) {
    add_failure(path,
                "not an engine plugin: it does not export '" ENG_PLUGIN_ENTRY_SYMBOL
                "' (use ENG_PLUGIN_DEFINE)",
                d);
    return; /* never dlclose: simplest safe rule */
  }
  eng_plugin_entry_fn fn;
  memcpy(&fn, &sym, sizeof fn);
  const eng_plugin *raw = fn();
  char err[512];
  norm *n = normalize(raw, err, sizeof err);
  if (!n) {
    add_failure(path, err, d);
    return;
  }
  const eng_plugin *p = &n->desc;
  for (size_t i = 0; i < n_plugins; i++)
    if (!strcmp(plugins[i].desc->name, p->name)) { /* an earlier one wins */
      eng__diag_warn(d, path, 0, 0,
                     "plugin '%s' is also in %s, which comes first in the "
                     "search path: using %s, ignoring this one",
                     p->name, plugins[i].path ? plugins[i].path : "(built in)",
                     plugins[i].path ? plugins[i].path : "the built-in one");
      norm_free(n);
      return;
    }
  if (p->init && p->init(eng__host()) != 0) {
    snprintf(err, sizeof err, "plugin '%s' init() failed", p->name);
    add_failure(path, err, d);
    norm_free(n);
    return;
  }
  add_plugin(n, path);
}

static bool is_so(const char *name) {
  size_t n = strlen(name);
  return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void scan_dir(const char *dir, int depth, eng__diags *d) {
  DIR *dp = opendir(dir);
  if (!dp) return;
  char **ents = NULL;
  size_t n = 0;
  struct dirent *de;
  while ((de = readdir(dp)) != NULL) {
    if (de->d_name[0] == '.') continue;
    ents = eng__xrealloc(ents, (n + 1) * sizeof *ents);
    ents[n++] = eng__asprintf("%s/%s", dir, de->d_name);
  }
  closedir(dp);
  if (n) qsort(ents, n, sizeof *ents, cmp_str);
  for (size_t i = 0; i < n; i++) {
    struct stat st;
    if (stat(ents[i], &st) == 0) {
      if (S_ISREG(st.st_mode) && is_so(ents[i])) load_file(ents[i], d);
      else if (S_ISDIR(st.st_mode) && depth == 0) scan_dir(ents[i], 1, d);
    }
    free(ents[i]);
  }
  free(ents);
}

size_t eng__plugin_search_path(const char *const *extra, size_t n_extra,
                               char ***out) {
  char **v = NULL;
  size_t n = 0;
#define PUSH(s)                                                            \
  do {                                                                     \
    v = eng__xrealloc(v, (n + 1) * sizeof *v);                             \
    v[n++] = (s);                                                          \
  } while (0)
  for (size_t i = 0; i < n_extra; i++) PUSH(eng__xstrdup(extra[i]));
  const char *envp = getenv("ENGINE_PLUGIN_PATH");
  if (envp && *envp) {
    char *copy = eng__xstrdup(envp), *save = NULL;
    for (char *t = strtok_r(copy, ":", &save); t; t = strtok_r(NULL, ":", &save))
      if (*t) PUSH(eng__xstrdup(t));
    free(copy);
  }
  /* Running from the build directory: use the plugins built next to us. */
  char exe[PATH_MAX];
  static const char build_root[] = ENG_BUILD_ROOT;
  ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (len > 0 && build_root[0] != '\0') {
    exe[len] = '\0';
    size_t bl = strlen(build_root);
    if (strncmp(exe, build_root, bl) == 0 && exe[bl] == '/')
      PUSH(eng__asprintf("%s/plugins", build_root));
  }
  PUSH(eng__xstrdup(ENG_INSTALL_PLUGIN_DIR));
#undef PUSH
  *out = v;
  return n;
}

size_t eng__registry_load(const char *const *dirs, size_t n, eng__diags *d) {
  if (!find_plugin("builtin")) {
    char err[512];
    norm *b = normalize(eng__builtins(), err, sizeof err);
    if (!b) { /* a bug in builtins.c's declarations: say so loudly */
      fprintf(stderr, "engine: internal error in the built-in actions: %s\n", err);
      abort();
    }
    add_plugin(b, NULL);
  }
  for (size_t i = 0; i < n; i++) scan_dir(dirs[i], 0, d);
  free(names);
  names = eng__xcalloc(n_actions + 1, sizeof *names);
  for (size_t i = 0; i < n_actions; i++) names[i] = actions[i]->full;
  return n_failures;
}

void eng__registry_unload(void) {
  for (size_t i = 0; i < n_actions; i++) {
    free(actions[i]->full);
    free(actions[i]);
  }
  for (size_t i = 0; i < n_plugins; i++) {
    free(plugins[i].path);
    norm_free(plugins[i].decls);
  }
  for (size_t i = 0; i < n_failures; i++) {
    free(failures[i].path);
    free(failures[i].stem);
    free(failures[i].message);
  }
  for (size_t i = 0; i < n_seen; i++) free(seen[i]);
  free(seen);
  seen = NULL;
  n_seen = 0;
  free(actions);
  free(plugins);
  free(failures);
  free(names);
  actions = NULL;
  plugins = NULL;
  failures = NULL;
  names = NULL;
  n_actions = n_plugins = n_failures = 0;
  eng__stream_clear_schemes();
}

const eng__action_ref *eng__registry_find(const char *uses) {
  for (size_t i = 0; i < n_actions; i++)
    if (strcmp(actions[i]->full, uses) == 0) return actions[i];
  return NULL;
}

size_t eng__registry_actions(const eng__action_ref ***out) {
  *out = (const eng__action_ref **)actions;
  return n_actions;
}

size_t eng__registry_plugins(const eng__plugin_entry **out) {
  *out = plugins;
  return n_plugins;
}

size_t eng__registry_failures(const eng__plugin_failure **out) {
  *out = failures;
  return n_failures;
}

size_t eng__registry_names(const char *const **out) {
  *out = names;
  return n_actions;
}
