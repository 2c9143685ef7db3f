/*
 * call/call.h - calls and the services they own (docs/plugins.md):
 *
 *   call.c    a call is one attempt of an action (or a Lua function a
 *             plugin offers, or a run-end hook); it owns the processes,
 *             HTTP transfers, timers, watches and streams started for it
 *             and ends them when it is cancelled or done
 *   stream.c  byte streams: local files, or URLs a plugin serves (s3://),
 *             with SHA-256, zstd and gzip in the middle
 *   host.c    the eng_host table handed to plugins
 *
 * Above run/ (a call reports into its run) and io/.
 */
#ifndef ENGINE_CALL_H
#define ENGINE_CALL_H

#include "run/run.h"
#include "io/io.h"

/* ---- call.c: call objects (eng_call) and their services -------------- */

typedef void (*eng__call_done_cb)(void *ud, int rc, json_t *outputs,
                                  const char *error);

/* A call for a step attempt (or NULL step for run-level work: a check
 * hook's context, a run-end hook). */
eng_call *eng__call_new(eng__run *r, const char *step_id,
                        const eng_action *action, eng__call_done_cb cb,
                        void *ud);
/* A sub-call under `parent` (a Lua function a plugin offers). done() of
 * the sub-call runs cb with its outputs (owned by cb) and error text. */
eng_call *eng__call_sub(eng_call *parent, eng__call_done_cb cb, void *ud);
/* Start fn on the call with args (borrowed; kept alive by the call). On a
 * non-OK return cb has not run and never will; the call is freed. */
int eng__call_start(eng_call *call, int (*fn)(eng_call *, const json_t *),
                    const json_t *args);
/* The same; on failure *err receives the action's message (malloc'd, or
 * NULL) instead of it being logged. */
int eng__call_start_err(eng_call *call, int (*fn)(eng_call *, const json_t *),
                        const json_t *args, char **err);
/* Cancel with a reason (ENG_CANCEL_*): processes killed, transfers
 * aborted, the plugin told; a plugin that has not called done() when the
 * grace runs out is abandoned: the host ends the call itself. */
void eng__call_cancel(eng_call *c, int reason);
int eng__call_cancel_reason(eng_call *c);
json_t *eng__call_run_state(eng_call *c);
void eng__host_set_cancel_grace(uint64_t ms);
/* Lower it to ms when longer (the run's --grace is running out). */
void eng__host_limit_cancel_grace(uint64_t ms);
/* Objects a call started (streams) that done() releases when the plugin
 * left them open; release() must not call back into the plugin. */
void eng__call_own(eng_call *c, void *obj, void (*release)(void *obj));
void eng__call_disown(eng_call *c, void *obj);
void eng__call_release(eng_call *c);
uv_loop_t *eng__call_loop(eng_call *call);
/* The step's deadline (uv_hrtime() ns) for work the loop cannot preempt
 * (Lua): the earliest of the call's and its parents'; 0 = none. */
void eng__call_set_deadline(eng_call *c, uint64_t at_ns);
uint64_t eng__call_deadline(const eng_call *c);
eng__run *eng__call_run(eng_call *call);
eng__lua *eng__call_lua(eng_call *c);
/* The process-wide loop, HTTP multi handle and redactor of call services. */
void eng__host_init(uv_loop_t *loop, eng__redactor *redact);
void eng__host_shutdown(void);
eng__redactor *eng__host_redactor(void);

/* The services of eng_host (include/engine/plugin.h documents each). */
void eng__call_logf(eng_call *c, eng_log_level lvl, const char *fmt, ...)
    ENG_PRINTF(3, 4);
void eng__call_output(eng_call *c, const char *name, json_t *value);
/* A warning for the step the call works for (engine.warn): the step ends
 * `warn` if it succeeds. ENG_ERR_INVALID when the call works for no step. */
int eng__call_warn(eng_call *c, const char *msg);
void eng__call_progress(eng_call *c, int64_t done, int64_t total);
void eng__call_secret(eng_call *c, const char *value);
void eng__call_fail(eng_call *c, const char *fmt, ...) ENG_PRINTF(2, 3);
void eng__call_done(eng_call *c, int rc);
int eng__call_cancelled(eng_call *c);
void eng__call_on_cancel(eng_call *c, void (*cb)(void *), void *ud);
void eng__call_set_data(eng_call *c, void *d);
void *eng__call_get_data(eng_call *c);
const char *eng__call_run_dir(eng_call *c);
const char *eng__call_step_id(eng_call *c);
int eng__call_spawn(eng_call *c, const eng_spawn_opts *o, eng_proc **out);
int eng__call_http_start(eng_call *c, void *easy, eng_http_cb cb, void *ud,
                         eng_http **out);
int eng__call_work(eng_call *c, void (*fn)(void *),
                   void (*after)(void *, int), void *ud);
eng_timer *eng__call_timer_start(eng_call *c, uint64_t ms,
                                 void (*cb)(void *), void *ud);
void eng__call_timer_stop(eng_timer *t);
eng_watch *eng__call_watch_start(eng_call *c, int fd, int events,
                                 void (*cb)(void *, int, int), void *ud);
void eng__call_watch_update(eng_watch *w, int events);
void eng__call_watch_stop(eng_watch *w);
int eng__call_guard_target(eng_call *c, eng_target kind, const char *value,
                           const char *evidence);
int eng__call_guard_sql(eng_call *c, const char *database,
                        const char *evidence, const char *sql, unsigned flags);
int64_t eng__call_journal_intent(eng_call *c, const char *kind,
                                 const char *id, const json_t *detail);
void eng__call_journal_confirm(eng_call *c, int64_t token);
void eng__call_journal_removed(eng_call *c, const char *kind, const char *id);
int eng__call_journal_owned(eng_call *c, const char *kind, const char *id);
int eng__call_at_run_end(eng_call *c, int (*cb)(eng_call *, void *),
                         void *ud);

/* ---- host.c: the table handed to plugins -------------------------------- */

const eng_host *eng__host(void);

/* ---- stream.c: byte streams (docs/plugins.md) -------------------------- */

/* Plugins' URL schemes (s3://...), offered by the registry as it loads
 * them; the first of a scheme wins. */
void eng__stream_add_scheme(const eng_stream_scheme *s);
void eng__stream_clear_schemes(void);

int eng__stream_is_remote(const char *url);
int eng__stream_open_write(eng_call *call, const char *url, const json_t *opts,
                           eng_stream **out);
int eng__stream_write(eng_stream *s, const void *buf, size_t len,
                      eng_stream_write_cb cb, void *ud);
int eng__stream_finish(eng_stream *s, eng_stream_done_cb cb, void *ud);
void eng__stream_abort(eng_stream *s);
int eng__stream_open_read(eng_call *call, const char *url, const json_t *opts,
                          eng_stream_data_cb on_data, eng_stream_done_cb on_end,
                          void *ud, eng_stream **out);
void eng__stream_pause(eng_stream *s, int paused);

#endif /* ENGINE_CALL_H */
