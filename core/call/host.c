/* host.c - the table of host services handed to plugins (the SDK's
 * eng_host): call services (call.c), processes (process.c), HTTP (http.c)
 * streams (stream.c) and the SQL classifier (sql/), gathered in one place
 * above them all. */
#include "call/call.h"
#include "sql/lint.h"
#include "sql/sql.h"

static const eng_host host_table = {
    .size = sizeof(eng_host),
    .abi_major = ENG_ABI_MAJOR,
    .abi_minor = ENG_ABI_MINOR,
    .log = eng__call_logf,
    .output = eng__call_output,
    .progress = eng__call_progress,
    .secret = eng__call_secret,
    .fail = eng__call_fail,
    .done = eng__call_done,
    .cancelled = eng__call_cancelled,
    .on_cancel = eng__call_on_cancel,
    .set_data = eng__call_set_data,
    .get_data = eng__call_get_data,
    .run_dir = eng__call_run_dir,
    .step_id = eng__call_step_id,
    .spawn = eng__call_spawn,
    .proc_kill = eng__proc_kill,
    .proc_write = eng__proc_write,
    .proc_pause = eng__proc_pause,
    .proc_stderr_tail = eng__proc_stderr_tail,
    .http_start = eng__call_http_start,
    .http_cancel = eng__http_cancel,
    .http_unpause = eng__http_unpause,
    .work = eng__call_work,
    .timer_start = eng__call_timer_start,
    .timer_stop = eng__call_timer_stop,
    .watch_start = eng__call_watch_start,
    .watch_update = eng__call_watch_update,
    .watch_stop = eng__call_watch_stop,
    .guard_target = eng__call_guard_target,
    .journal_intent = eng__call_journal_intent,
    .journal_confirm = eng__call_journal_confirm,
    .journal_removed = eng__call_journal_removed,
    .journal_owned = eng__call_journal_owned,
    .at_run_end = eng__call_at_run_end,
    .stream_open_write = eng__stream_open_write,
    .stream_write = eng__stream_write,
    .stream_finish = eng__stream_finish,
    .stream_abort = eng__stream_abort,
    .stream_open_read = eng__stream_open_read,
    .stream_pause = eng__stream_pause,
    .stream_is_remote = eng__stream_is_remote,
    .cancel_reason = eng__call_cancel_reason,
    .run_state = eng__call_run_state,
    .sql_classify = eng__sql_classify_json,
    .guard_sql = eng__call_guard_sql,
    .warn = eng__call_warn,
    .migrations_lint = eng__lint_dir,
    .retention_plan = eng__retention_plan,
};


const eng_host *eng__host(void) { return &host_table; }
