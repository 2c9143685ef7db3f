/*
 * expr/expr.h - expressions: the Lua sandbox hooks and conditions run in
 * (its limits, the libraries it offers, coroutines that wait on plugin
 * functions), `${...}` templates in runbook strings (template.c) and the
 * check of every reference they make (refs.c). Above call/: a hook's
 * plugin functions run as sub-calls of the step's call.
 */
#ifndef ENGINE_EXPR_H
#define ENGINE_EXPR_H

#include "call/call.h"

/* ---- lua_*.c: the sandbox (lua_int.h maps its files) ----------------- */


/* Non-zero (set from a signal handler): evaluations stop at their next
 * instruction-count hook with "interrupted". */
extern volatile sig_atomic_t eng__lua_interrupt;
/* Async-signal-safe: make the running evaluation's hook run at its next
 * instruction (after raising eng__lua_interrupt). */
void eng__lua_poke(void);

typedef struct eng__lua_opts {
  size_t mem_limit;        /* bytes; 0 = 64 MiB */
  uint64_t budget_ms;      /* execution time per evaluation; 0 = 10000 */
  const char *runbook_dir; /* require() looks in RUNBOOK_DIR/lua/ */
  const char *lib_dir;     /* installed library: LIB_DIR/engine/checks.lua */
} eng__lua_opts;

enum { ENG__LUA_EXPR = 0, ENG__LUA_CHUNK = 1 };

int eng__lua_create(const eng__lua_opts *o, eng__lua **out, char *err,
                    size_t errlen);
void eng__lua_destroy(eng__lua *L);
/* Compile; syntax errors come back as "FILE:LINE: message". EXPR compiles
 * "return (code)"; CHUNK compiles statements. *ref names it later. */
int eng__lua_compile(eng__lua *L, const char *code, int kind,
                     const char *file, int line, int *ref, char *err,
                     size_t errlen);
/* True once a compile ran out of the memory cap (it stays true): what the
 * runbook's code needs does not fit, so validation stops compiling and
 * says so once (eng__lua_nomem_said). */
bool eng__lua_exhausted(const eng__lua *L);
/* The memory cap in bytes (eng__lua_opts.mem_limit). */
size_t eng__lua_mem_limit(const eng__lua *L);
/* Replace a global context table (params, env, run, runbook). */
void eng__lua_set_global(eng__lua *L, const char *name, const json_t *v);
/* Set steps[id] = {status=..., outputs=...} (and the underscore alias). */
void eng__lua_set_step(eng__lua *L, const char *id, const char *status,
                       const json_t *outputs);
/* Names visible in helpers success()/failure() for the next evaluations:
 * statuses of the dependencies of the step being decided. */
void eng__lua_set_deps(eng__lua *L, const char *const *statuses, size_t n);
/* Evaluate synchronously. `locals` (object or NULL) become globals for
 * this evaluation only (e.g. outputs). *results: a JSON array of the
 * returned values (caller frees). Yielding I/O is an error here. */
int eng__lua_eval(eng__lua *L, int ref, const json_t *locals,
                  json_t **results, char *err, size_t errlen);
/* Evaluate in a coroutine; functions offered by plugins (pg.query) and
 * http.get yield to the loop. cb runs exactly once, on the loop thread;
 * it owns results. `call` is the step's call (for logs and sub-calls). */
typedef void (*eng__lua_done_cb)(void *ud, int rc, json_t *results,
                                 const char *err);
int eng__lua_run(eng__lua *L, int ref, const json_t *locals, eng_call *call,
                 eng__lua_done_cb cb, void *ud);
/* Set the execution budget of each evaluation from now on (ms; 0: the
 * state's default); returns the one it replaces. */
uint64_t eng__lua_set_budget(eng__lua *L, uint64_t ms);
/* Offer a plugin's function to hooks. */
void eng__lua_add_func(eng__lua *L, const eng_lua_func *f);
/* ---- template.c: ${...} in strings ------------------------------------- */

/* True when s holds a "${" that is not "$${". */
bool eng__tpl_has_expr(const char *s);
/* Split and compile; error text in err. */
int eng__tpl_compile(eng__lua *L, const char *s, const char *file, int line,
                     eng__tpl **out, char *err, size_t errlen);
/* The one error said when the runbook's code outgrew the Lua memory cap
 * (eng__lua_exhausted): at node n, `what` naming the place. */
void eng__tpl_say_nomem(const eng__lua *L, eng__diags *d, const char *file,
                        const eng__node *n, const char *what);
/* Compile every template scalar below node (stores node->tpl); the number
 * of scalars that did not compile (said), or that were not compiled since
 * the Lua memory cap ran out (said once, before). */
int eng__tpl_compile_tree(eng__lua *L, eng__node *n, const char *file,
                          eng__diags *d, const char *what);
/* Render a node to JSON, evaluating templates; NULL with err. A rendered
 * secret is masked where it is shown by the run's redactor, not here. */
json_t *eng__tpl_render(eng__lua *L, const eng__node *n, char *err,
                        size_t errlen);
/* Is every template of the tree free of references to steps (so it can be
 * resolved at plan time)? */
bool eng__tpl_static(const eng__node *n);
/* The Lua code of an `if:` or check written bare or as one ${...}
 * (malloc'd). */
char *eng__cond_code(const char *s);
/* A copy of a JSON value with the ${...} references inside its strings
 * rendered (the journal stores secrets as references). */
json_t *eng__tpl_deref(eng__lua *L, const json_t *v);

/* ---- refs.c: references in expressions ------------------------------------ */

/* Does Lua code read the global `name` (outside strings and comments)? */
bool eng__code_reads(const char *code, const char *name);
/* Errors for every params/steps/outputs reference that names nothing. */
void eng__refs_check(eng__runbook *rb, eng__diags *d);

#endif /* ENGINE_EXPR_H */
