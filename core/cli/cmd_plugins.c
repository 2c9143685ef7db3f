/* cmd_plugins.c - `engine plugins [PLUGIN[.ACTION]]`: loaded plugins, their
 * actions, parameters and outputs. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void print_action(const eng__action_ref *a, bool full) {
  const eng_action *act = a->action;
  const char *cr = cli_creates_name(act);
  printf("  %-26s %-11s %s%s%s%s", a->full, cli_side_names[act->side_effect],
         act->doc ? act->doc : "",
         (act->flags & ENG_A_REPEAT_SAFE) ? " [repeat-safe]" : "",
         cr ? " [creates: " : "", cr ? cr : "");
  if (cr) printf("]\n");
  else printf("\n");
  if (!full) return;
  printf("    params:\n");
  for (const eng_param *p = act->params; p && p->name; p++) {
    char type[64];
    eng__param_type_text(p, type, sizeof type);
    printf("      %-18s %-8s", p->name, type);
    if (p->flags & ENG_P_REQUIRED) printf(" required");
    if (p->flags & ENG_P_SECRET) printf(" secret");
    if (p->def) printf(" default=%s", p->def);
    if (p->target) printf(" target=%s", cli_target_name(p->target));
    if (p->choices) printf(" choices=%s", p->choices);
    printf("  %s\n", p->doc ? p->doc : "");
  }
  printf("    outputs:\n");
  for (const eng_output *o = act->outputs; o && o->name; o++)
    printf("      %-18s %-8s  %s\n", o->name, eng__type_name(o->type),
           o->doc ? o->doc : "");
}

int cmd_plugins(cli *c) {
  if (c->help) {
    return cli_print_help("usage: engine plugins [PLUGIN[.ACTION]]\n\nLists loaded plugins "
          "and their actions; with a name, the parameters and outputs too.\n", stdout, 0);
  }
  eng__diags d = {0};
  cli_load_plugins(c, &d);
  const char *want = c->n_positional ? c->positional[0] : NULL;
  const eng__plugin_entry *pl;
  size_t np = eng__registry_plugins(&pl);
  const eng__action_ref **acts;
  size_t na = eng__registry_actions(&acts);
  bool found = false;
  for (size_t i = 0; i < np; i++) {
    const eng_plugin *p = pl[i].desc;
    bool builtin = pl[i].path == NULL;
    size_t plen = strlen(p->name);
    bool whole = want && !strcmp(want, p->name);
    bool prefix = want && !strncmp(want, p->name, plen) && want[plen] == '.';
    if (want && !whole && !prefix && !(builtin && eng__registry_find(want) &&
                                       eng__registry_find(want)->builtin))
      continue;
    printf("%s %s (ABI %u.%u)%s%s\n", p->name, p->version ? p->version : "",
           (unsigned)p->abi_major, (unsigned)p->abi_minor,
           pl[i].path ? "  " : "", pl[i].path ? pl[i].path : "");
    if (p->doc) printf("  %s\n", p->doc);
    for (size_t k = 0; k < na; k++) {
      if (acts[k]->plugin != p) continue;
      if (want && !whole && strcmp(want, acts[k]->full)) continue;
      print_action(acts[k], want != NULL);
      found = true;
    }
    for (size_t k = 0; k < p->n_lua_funcs; k++)
      printf("  lua: %s.%s  %s\n", p->lua_funcs[k].table, p->lua_funcs[k].name,
             p->lua_funcs[k].doc ? p->lua_funcs[k].doc : "");
  }
  const eng__plugin_failure *f;
  size_t nf = eng__registry_failures(&f);
  eng__diags_free(&d);
  /* refused plugins were warnings; one the user asked for is an error */
  for (size_t i = 0; want && !found && i < nf; i++) {
    size_t sl = strlen(f[i].stem);
    if (!strncmp(want, f[i].stem, sl) && (want[sl] == '\0' || want[sl] == '.')) {
      fprintf(stderr, "engine: plugin '%s' (%s) was refused: %s\n",
              f[i].stem, f[i].path, f[i].message);
      return ENG_EXIT_USAGE;
    }
  }
  if (want && !found) {
    const char *const *names;
    size_t n = eng__registry_names(&names);
    const char *hint = eng__suggest(want, names, n);
    fprintf(stderr, "engine: no plugin or action '%s'%s%s%s\n", want,
            hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
    return ENG_EXIT_USAGE;
  }
  return 0;
}
