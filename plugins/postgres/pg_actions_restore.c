/*
 * pg_actions_restore.c - restore a backup into a (new) database.
 *
 * A restore is a state machine: r->phase (pg_rphase below) changes only
 * through pg_restore_phase(), which logs each transition at debug level,
 * and each callback first checks that the restore is still in the phase
 * it belongs to (a late callback after a failure does nothing). The way
 * through, by where the backup is:
 *
 *  PH_START    the parameters are copied; then one of:
 *  PH_INSPECT  a local file (or a copy made below): a worker reads its
 *              format by magic ("PGDMP" custom, ustar header tar,
 *              directory with toc.dat, gzip 1f8b, zstd, otherwise plain
 *              SQL), size, and SHA-256 when `sha256` is expected (or a
 *              FILE.sha256 lies beside it). A mismatch, a plain pg_dump
 *              file without its end marker, or binary junk fails here:
 *              nothing was created. A zstd file goes on as a stream.
 *  PH_HEAD     a stream URL (s3://...) with jobs 1, or a local zstd file:
 *              read through host->stream_open_read (zstd undone by the
 *              host, the SHA-256 of the stored bytes compared by the host
 *              at the end with the `sha256` parameter or the store's
 *              recorded one). The first PG_HEAD bytes tell the format
 *              before anything is created: a missing object, a wrong
 *              secret or a non-backup fail here (PH_REJECT: the stream is
 *              stopped, then the restore fails). The stream then waits,
 *              paused, holding those bytes, while PH_CONNECT to PH_FIND
 *              prepare the database.
 *  PH_DOWNLOAD a stream URL with jobs > 1 (pg_restore -j needs a seekable
 *              file): the object is copied into the run directory,
 *              verified on the way; PH_STORE closes the copy, then
 *              PH_INSPECT; the copy is removed at the end.
 *  PH_MANIFEST a URL prefix ending in '/' (a directory backup):
 *              PREFIX/manifest.json (written last by the dump: without it
 *              there is no backup); PH_CHECK checks it on a worker;
 *              PH_FILES fetches every file it names, a few at a time, each
 *              checked against its SHA-256, into the run directory; then
 *              PH_INSPECT. A missing or changed file fails before any
 *              database is created.
 * then, for all of them:
 *  PH_CONNECT  an admin session reads the server's identity, the guards
 *              check the target, and whether the database exists: an
 *              existing one is refused unless clean: true (PH_DROP_OLD
 *              drops it: destructive) or create: false (restored into).
 *  PH_CREATE   CREATE DATABASE ... TEMPLATE template0, journaled: the
 *              intent before (nothing is sent when it cannot be written),
 *              confirmed after, removed when the CREATE failed. From then
 *              on `created` is set: a failure must drop it.
 *  PH_FIND     a worker finds pg_restore and psql for the server's version.
 *  PH_RESTORE  pg_restore (custom, tar, directory) or psql -v
 *              ON_ERROR_STOP=1 --single-transaction (plain SQL) runs. A
 *              gzip file is decompressed by a gzip child into the
 *              consumer's stdin, and the consumer (psql or pg_restore) is
 *              chosen from the first decompressed bytes; a stream flows
 *              into the consumer's stdin. Writes to stdin pause the
 *              producer above PG_PIPE_HIGH bytes pending and resume it
 *              below PG_PIPE_LOW. The last PG_HOLD bytes of a stream are
 *              held back until it ended with a matching checksum: the
 *              consumer cannot reach the end of its input (and commit)
 *              before that; on a mismatch, a truncated plain dump or a
 *              cancellation it is killed before it sees EOF.
 *  PH_COUNT    the user tables of the new database are counted; PH_DONE.
 * Any failure or cancellation once `created` is set goes through PH_UNDO,
 * which drops the database this attempt created (and journals its
 * removal), so nothing that looks restored remains; before that nothing
 * was made and the restore ends at once. PH_DONE is final: the op is
 * finished and only its outstanding callbacks still arrive.
 *
 * The read stream has a small machine of its own (pg_rsphase, changed
 * only through pg_restore_rs_phase()): it runs alongside the phases above
 * (it may end while the database is being created) and is stopped by
 * pausing it at once and aborting it from a timer, since a stop may come
 * from inside its data callback.
 *
 * Memory: the head (PG_HEAD bytes and what arrives while the pause takes
 * effect), the held-back tail (below 2 x PG_HOLD plus one read) and the
 * writes pending to the consumer's stdin (about PG_PIPE_HIGH plus one
 * chunk) whatever the backup's size.
 */
#include "pg_int.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Pending writes to the consumer's stdin above which the producer pauses,
 * and below which it resumes: a few MiB keep psql busy without buffering
 * the backup. */
#define PG_PIPE_HIGH (4u << 20)
#define PG_PIPE_LOW (1u << 20)
/* A stream's last bytes, held back until the checksum matched: the
 * consumer cannot finish (commit) on a corrupt backup. */
#define PG_HOLD (1u << 20)
/* Bytes that tell the format (a tar header is at 257). */
#define PG_HEAD 4096

/* Where a restore is (the header above). */
typedef enum pg_rphase {
  PH_START,
  PH_MANIFEST, /* fetching PREFIX/manifest.json */
  PH_CHECK,    /* worker: checking the manifest, making the directory */
  PH_FILES,    /* fetching the files the manifest names */
  PH_DOWNLOAD, /* the stream into a copy in the run directory */
  PH_STORE,    /* the copy is closed */
  PH_INSPECT,  /* worker: a local file's format, size and SHA-256 */
  PH_HEAD,     /* a stream's first bytes */
  PH_REJECT,   /* they are no backup: the stream stops, then the end */
  PH_CONNECT,  /* identity, guards, does the database exist */
  PH_DROP_OLD, /* clean: dropping the existing database */
  PH_CREATE,   /* CREATE DATABASE (intent journaled) */
  PH_FIND,     /* worker: pg_restore and psql for the server */
  PH_RESTORE,  /* the children run, a stream flows into the consumer */
  PH_COUNT,    /* counting the restored tables */
  PH_UNDO,     /* dropping the database this attempt created */
  PH_DONE,     /* finished: only late callbacks arrive */
  PH_N
} pg_rphase;

static const char *const pg_rphase_names[PH_N] = {
    [PH_START] = "start",       [PH_MANIFEST] = "manifest",
    [PH_CHECK] = "check",       [PH_FILES] = "files",
    [PH_DOWNLOAD] = "download", [PH_STORE] = "store",
    [PH_INSPECT] = "inspect",   [PH_HEAD] = "head",
    [PH_REJECT] = "reject",     [PH_CONNECT] = "connect",
    [PH_DROP_OLD] = "drop old", [PH_CREATE] = "create",
    [PH_FIND] = "find",         [PH_RESTORE] = "restore",
    [PH_COUNT] = "count",       [PH_UNDO] = "undo",
    [PH_DONE] = "done",
};

#define PG_BIT(p) (1u << (p))
/* The phases each one may go on to (PH_DONE: from any). */
static const unsigned pg_rphase_next[PH_N] = {
    [PH_START] = PG_BIT(PH_MANIFEST) | PG_BIT(PH_DOWNLOAD) | PG_BIT(PH_HEAD) |
                 PG_BIT(PH_INSPECT),
    [PH_MANIFEST] = PG_BIT(PH_CHECK),
    [PH_CHECK] = PG_BIT(PH_FILES),
    [PH_FILES] = PG_BIT(PH_INSPECT),
    [PH_DOWNLOAD] = PG_BIT(PH_STORE),
    [PH_STORE] = PG_BIT(PH_INSPECT),
    [PH_INSPECT] = PG_BIT(PH_HEAD) | PG_BIT(PH_CONNECT),
    [PH_HEAD] = PG_BIT(PH_REJECT) | PG_BIT(PH_CONNECT),
    [PH_CONNECT] = PG_BIT(PH_DROP_OLD) | PG_BIT(PH_CREATE) | PG_BIT(PH_FIND),
    [PH_DROP_OLD] = PG_BIT(PH_CREATE),
    [PH_CREATE] = PG_BIT(PH_FIND) | PG_BIT(PH_UNDO),
    [PH_FIND] = PG_BIT(PH_RESTORE) | PG_BIT(PH_UNDO),
    [PH_RESTORE] = PG_BIT(PH_COUNT) | PG_BIT(PH_UNDO),
    [PH_COUNT] = PG_BIT(PH_UNDO),
};

/* The read stream (r->rs), alongside the phases. */
typedef enum pg_rsphase {
  RS_NONE,     /* none feeds the restore (a file, or the download's copy) */
  RS_READ,     /* open: bytes go where the phase says (copy, head, consumer) */
  RS_STOPPING, /* paused, its bytes ignored; aborted from r->rs_timer */
  RS_ENDED,    /* it ended by itself: rs_rc */
  RS_STOPPED,  /* it ended after a stop (rs_rc CANCELLED unless it ended) */
  RS_N
} pg_rsphase;

static const char *const pg_rsphase_names[RS_N] = {
    [RS_NONE] = "none", [RS_READ] = "read", [RS_STOPPING] = "stopping",
    [RS_ENDED] = "ended", [RS_STOPPED] = "stopped"};

static const unsigned pg_rsphase_next[RS_N] = {
    [RS_NONE] = PG_BIT(RS_READ),
    [RS_READ] = PG_BIT(RS_STOPPING) | PG_BIT(RS_ENDED),
    [RS_STOPPING] = PG_BIT(RS_STOPPED),
    [RS_ENDED] = PG_BIT(RS_NONE), /* the download's copy takes over */
};

/* Writes to the consumer's stdin may complete after the op is gone: their
 * callbacks share this small refcounted block instead of the op. */
typedef struct pg_pipe {
  int refs;
  int op_gone;
  struct pg_restore_op *r;
} pg_pipe;

typedef struct pg_wchunk {
  pg_pipe *pipe;
  size_t len;
  char data[];
} pg_wchunk;

typedef struct pg_restore_op {
  pg_op op;
  pg_rphase phase; /* pg_restore_phase() only */
  char *file;
  char *url;   /* as given: journal undo and the derived output URL */
  char *admin; /* where CREATE/DROP DATABASE run */
  char *db;
  char *expect_sha;
  char *bin_dir;
  /* parameters */
  int create, clean, jobs, no_owner, no_acl;
  int jobs_given;
  int jobs_used; /* output: pg_restore's --jobs */
  /* a directory backup under a URL prefix: its manifest, then its files */
  pg_xfer *xfer;
  char *man_path; /* set: dl_path is a directory of copies */
  json_t *manifest;
  char man_sha[65];
  int work_rc; /* PH_CHECK's result, written by the worker */
  char work_err[512];
  char verified_by[96]; /* what the checksum was compared with */
  pg_inspect insp;
  pg_sess *s;
  pg_ident id;
  int exists; /* PH_CONNECT's answer */
  char *target;
  char *drop_sql; /* DROP DATABASE of what this attempt created */
  int created;    /* this attempt created the database: failing drops it */
  int64_t token;  /* its journal intent */
  pg_bin restore_bin, psql_bin;
  /* PH_RESTORE: the children (their own `running` says whether they run;
   * child.op is set once the consumer was spawned) and its stdin */
  pg_child decomp, child;
  int killed_consumer; /* we killed it before EOF: its death is not why */
  pg_fmt inner;        /* format inside a compressed stream */
  pg_pipe *pipe;
  size_t inflight;  /* bytes written to stdin, not yet completed */
  int paused;       /* backpressure: the producer is paused (inflight) */
  int src_ended;    /* the producer is done: close stdin once drained */
  int stdin_closed; /* EOF was sent */
  int write_failed; /* a write failed: the consumer left, its exit says why */
  char head[PG_HEAD];
  size_t headlen;
  char tail[512];
  size_t taillen;
  int64_t streamed;
  int truncated; /* a plain dump without its end marker: fail, not commit */
  /* the outcome */
  int fail_rc; /* the failure's code; ENG_ERR_CANCELLED also marks a
                  cancellation that waits for the children or the stream */
  char *fail_msg;
  long long tables;
  /* the read stream */
  pg_rsphase rsp; /* pg_restore_rs_phase() only */
  json_t *sopts;  /* stream_opts */
  eng_stream *rs; /* set in RS_READ and RS_STOPPING */
  int rs_rc;      /* how it ended */
  eng_timer *rs_timer;
  char *rs_msg;
  eng_strbuf pre;  /* first bytes, before the consumer runs */
  eng_strbuf hold; /* held back until the stream ended verified */
  pg_out *dl;
  char *dl_path;
  int64_t src_bytes;
  char src_sha[65];
  int verified; /* output: the bytes matched a recorded checksum */
  char *age_key;  /* decryption: the age identity, or NULL */
  char psha[65];  /* SHA-256 of the decrypted bytes */
} pg_restore_op;

/* ---- the machines -------------------------------------------------------- */

/* The one place r->phase changes (PH_DONE may follow any phase; nothing
 * follows it). */
static void pg_restore_phase(pg_restore_op *r, pg_rphase to) {
  pg_rphase from = r->phase;
  if (from == to) return;
  assert(from != PH_DONE &&
         (to == PH_DONE || (pg_rphase_next[from] & PG_BIT(to))));
  r->phase = to;
  pg_host->log(r->op.e.call, ENG_LOG_DEBUG, "phase %s -> %s",
               pg_rphase_names[from], pg_rphase_names[to]);
}

/* The one place r->rsp changes. */
static void pg_restore_rs_phase(pg_restore_op *r, pg_rsphase to) {
  pg_rsphase from = r->rsp;
  if (from == to) return;
  assert(pg_rsphase_next[from] & PG_BIT(to));
  r->rsp = to;
  pg_host->log(r->op.e.call, ENG_LOG_DEBUG, "read stream %s -> %s",
               pg_rsphase_names[from], pg_rsphase_names[to]);
}

/* The stream is open (reading, or stopping). */
static int pg_restore_rs_live(const pg_restore_op *r) {
  return r->rsp == RS_READ || r->rsp == RS_STOPPING;
}

/* The stream ended, by itself or after a stop. */
static int pg_restore_rs_ended(const pg_restore_op *r) {
  return r->rsp == RS_ENDED || r->rsp == RS_STOPPED;
}

/* The end (PH_DONE): the op finishes, with the message when fmt is given
 * (else the host or a callee recorded why). r may be freed on return. */
static void pg_restore_end(pg_restore_op *r, int rc, const char *fmt, ...)
    ENG_PRINTF(3, 4);
static void pg_restore_end(pg_restore_op *r, int rc, const char *fmt, ...) {
  char msg[4096];
  if (fmt) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
  }
  pg_restore_phase(r, PH_DONE);
  if (fmt)
    pg_op_fail(&r->op, rc, "%s", msg);
  else
    pg_op_finish(&r->op, rc);
}

static void pg_restore_destroy(pg_op *op) {
  pg_restore_op *r = (pg_restore_op *)op;
  if (r->pipe) {
    r->pipe->op_gone = 1;
    if (--r->pipe->refs == 0) free(r->pipe);
  }
  free(r->insp.path);
  free(r->file);
  free(r->url);
  free(r->admin);
  free(r->db);
  free(r->expect_sha);
  if (r->age_key) OPENSSL_cleanse(r->age_key, strlen(r->age_key));
  free(r->age_key);
  free(r->bin_dir);
  free(r->target);
  free(r->drop_sql);
  free(r->fail_msg);
  free(r->rs_msg);
  eng_strbuf_free(&r->pre);
  eng_strbuf_free(&r->hold);
  json_decref(r->sopts);
  pg_out_free(r->dl);
  pg_xfer_free(r->xfer);
  if (r->dl_path && r->man_path) pg_rmtree(r->dl_path); /* the copies */
  else if (r->dl_path) unlink(r->dl_path); /* the downloaded copy */
  free(r->dl_path);
  if (r->man_path) unlink(r->man_path);
  free(r->man_path);
  json_decref(r->manifest);
  free(r);
}

/* ---- the read stream: pausing and stopping ------------------------------ */

static void pg_restore_both_done(pg_restore_op *r);
static void pg_restore_dl_stopped(pg_restore_op *r);

/* Paused for backpressure, and while a head waits for the database (the
 * phases between PH_HEAD and PH_RESTORE). */
static void pg_restore_rs_sync(pg_restore_op *r) {
  if (!r->rs || r->rsp != RS_READ) return;
  int held = r->phase != PH_HEAD && r->phase != PH_DOWNLOAD &&
             r->phase != PH_RESTORE;
  pg_host->stream_pause(r->rs, held || r->paused);
}

/* RS_STOPPING -> RS_STOPPED (unless its end came first); then whoever
 * reads the stream goes on: the download, or the restore's children. */
static void pg_restore_rs_abort_cb(void *ud) {
  pg_restore_op *r = ud;
  r->rs_timer = NULL;
  if (r->rs) {
    pg_host->stream_abort(r->rs); /* no callback of it runs afterwards */
    r->rs = NULL;
    if (!r->rs_rc) r->rs_rc = ENG_ERR_CANCELLED;
  }
  pg_restore_rs_phase(r, RS_STOPPED);
  if (r->phase == PH_DOWNLOAD)
    pg_restore_dl_stopped(r);
  else
    pg_restore_both_done(r);
  pg_op_release(&r->op);
}

/* Stop reading (RS_READ -> RS_STOPPING). Callers may be inside the
 * stream's data callback, where the stream must not be freed: pause now,
 * abort from a timer. */
static void pg_restore_rs_stop(pg_restore_op *r) {
  if (!r->rs || r->rsp != RS_READ) return;
  pg_restore_rs_phase(r, RS_STOPPING);
  pg_host->stream_pause(r->rs, 1);
  pg_op_hold(&r->op);
  r->rs_timer = pg_host->timer_start(r->op.e.call, 0, pg_restore_rs_abort_cb, r);
  if (!r->rs_timer) pg_op_release(&r->op); /* the call is ending */
}

/* The producer of the consumer's stdin: a decompressor child or a stream. */
static void pg_restore_src_pause(pg_restore_op *r, int on) {
  if (r->decomp.running)
    pg_host->proc_pause(r->decomp.proc, on);
  else
    pg_restore_rs_sync(r);
}

static void pg_restore_src_stop(pg_restore_op *r) {
  if (r->decomp.running) pg_host->proc_kill(r->decomp.proc, SIGTERM);
  pg_restore_rs_stop(r);
}

/* "checksum mismatch ..." / "reading ... failed: ..." from a stream's end */
static char *pg_restore_rs_error(pg_restore_op *r, int rc, json_t *info) {
  const char *got = json_string_value(json_object_get(info, "sha256"));
  const char *md5 = json_string_value(json_object_get(info, "md5"));
  const char *want_md5 = json_string_value(json_object_get(info, "expected_md5"));
  if (rc == ENG_ERR_CHECKSUM && md5 && want_md5 && strcasecmp(md5, want_md5))
    return eng_asprintf("md5 mismatch for %s: its bytes hash to %s but the "
                        "x-amz-meta-md5 recorded with it says %s: the backup "
                        "is corrupt or was changed after it was written; "
                        "restore another backup",
                        r->file, md5, want_md5);
  const char *want = r->expect_sha;
  const char *whose = "the sha256 parameter";
  if (!want) {
    want = json_string_value(json_object_get(info, "expected_sha256"));
    whose = "the SHA-256 recorded with the object";
  }
  if (rc == ENG_ERR_CHECKSUM && got && want)
    return eng_asprintf("checksum mismatch for %s: its bytes hash to %s but %s "
                        "says %s: the backup is corrupt or was changed after "
                        "it was written; restore another backup",
                        r->file, got, whose, want);
  const char *err = json_string_value(json_object_get(info, "error"));
  if (rc == ENG_ERR_CHECKSUM && r->age_key && err)
    return eng_asprintf("cannot decrypt %s: %s; restore another backup or "
                        "check the key", r->file, err);
  if (rc == ENG_ERR_CHECKSUM)
    return eng_asprintf("%s is corrupt (its zstd data does not decode); "
                        "restore another backup",
                        r->file);
  return eng_asprintf("reading %s failed: %s", r->file,
                      err && *err ? err : eng_strerror(rc));
}

/* The stream's end: RS_ENDED, or RS_STOPPED when a stop was under way. */
static void pg_restore_rs_info(pg_restore_op *r, int rc, json_t *info) {
  r->rs = NULL;
  pg_restore_rs_phase(r, r->rsp == RS_STOPPING ? RS_STOPPED : RS_ENDED);
  r->rs_rc = rc;
  r->src_bytes = (int64_t)json_integer_value(json_object_get(info, "bytes"));
  const char *sha = json_string_value(json_object_get(info, "sha256"));
  if (sha) snprintf(r->src_sha, sizeof r->src_sha, "%s", sha);
  const char *psha = json_string_value(json_object_get(info, "plaintext_sha256"));
  if (psha && rc == ENG_OK) snprintf(r->psha, sizeof r->psha, "%s", psha);
  const char *from = json_string_value(json_object_get(info, "expected_from"));
  int md5 = json_is_string(json_object_get(info, "expected_md5"));
  r->verified = rc == ENG_OK &&
                (r->expect_sha || md5 ||
                 json_is_string(json_object_get(info, "expected_sha256")));
  if (r->verified && !r->verified_by[0]) {
    const char *base = strrchr(r->file, '/');
    base = base ? base + 1 : r->file;
    if (r->expect_sha)
      snprintf(r->verified_by, sizeof r->verified_by, "sha256 parameter");
    else if (from && !strcmp(from, "sidecar"))
      snprintf(r->verified_by, sizeof r->verified_by, "%.80s.sha256", base);
    else if (from)
      snprintf(r->verified_by, sizeof r->verified_by, "%s", from);
    else
      snprintf(r->verified_by, sizeof r->verified_by, "x-amz-meta-md5");
  }
  if (rc != ENG_OK && rc != ENG_ERR_CANCELLED) {
    free(r->rs_msg);
    r->rs_msg = pg_restore_rs_error(r, rc, info);
  }
}

static json_t *pg_restore_rs_opts(pg_restore_op *r) {
  json_t *o = json_is_object(r->sopts) ? json_deep_copy(r->sopts)
                                       : json_object();
  json_object_set_new(o, "decompress", json_true());
  if (r->age_key) json_object_set_new(o, "age_key", json_string(r->age_key));
  if (r->expect_sha && !r->insp.want_sha)
    json_object_set_new(o, "expect_sha256", json_string(r->expect_sha));
  return o;
}

/* ---- failure with cleanup ----------------------------------------------- */

static void pg_restore_fail_now(pg_restore_op *r, const char *extra) {
  if (r->fail_rc == ENG_ERR_CANCELLED && !r->fail_msg) {
    pg_restore_end(r, ENG_ERR_CANCELLED, NULL);
    return;
  }
  pg_restore_end(r, r->fail_rc, "%s%s", r->fail_msg ? r->fail_msg : "",
                 extra ? extra : "");
}

/* PH_UNDO's DROP DATABASE answered: the end. */
static void pg_restore_dropped(pg_sess *s, void *ud, int rc) {
  pg_restore_op *r = ud;
  if (r->phase != PH_UNDO) return;
  if (rc != ENG_OK) {
    char extra[1024];
    snprintf(extra, sizeof extra,
             "; dropping the partially restored database %s also failed "
             "(%s): drop it by hand or run `engine cleanup RUN_ID`",
             r->db, pg_sess_errmsg(s));
    pg_restore_fail_now(r, extra);
    return;
  }
  r->created = 0;
  pg_host->journal_removed(r->op.e.call, "database", r->target);
  pg_restore_fail_now(r, r->fail_rc == ENG_ERR_CANCELLED
                             ? NULL
                             : "; the database created for it was dropped "
                               "again (nothing restored remains)");
}

/* Fail the attempt: the end at once when it created nothing, else first
 * PH_UNDO drops the database it created. The first failure wins. */
static void pg_restore_fail(pg_restore_op *r, int rc, const char *fmt, ...)
    ENG_PRINTF(3, 4);
static void pg_restore_fail(pg_restore_op *r, int rc, const char *fmt, ...) {
  if (r->phase == PH_UNDO || r->phase == PH_DONE) return;
  r->fail_rc = rc;
  if (fmt) {
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->fail_msg = eng_xstrdup(msg);
  }
  if (!r->created) {
    pg_restore_fail_now(r, NULL);
    return;
  }
  pg_restore_phase(r, PH_UNDO);
  /* a fresh admin session: the old one may be mid-query or broken */
  if (r->s) pg_sess_close(r->s);
  r->s = pg_sess_open(&r->op, r->admin);
  pg_sess_quiet(r->s, 1);
  pg_sess_set_connect_timeout(r->s, 10000);
  if (r->id.version_num < 130000) pg_add_terminate(r->s, r->db);
  pg_sess_add(r->s, "drop the partially restored database", r->drop_sql, 0,
              NULL, NULL, NULL);
  pg_sess_run(r->s, pg_restore_dropped, r);
}

/* Cancelled (r->op.e.cancelled is set): what runs is stopped and its end
 * fails the restore; with nothing running, fail now. */
static void pg_restore_cancel(pg_op *op) {
  pg_restore_op *r = (pg_restore_op *)op;
  if (r->decomp.running) pg_host->proc_kill(r->decomp.proc, SIGTERM);
  if (r->child.running) pg_host->proc_kill(r->child.proc, SIGTERM);
  if (r->rs && r->rsp == RS_READ) {
    r->fail_rc = ENG_ERR_CANCELLED;
    pg_restore_rs_stop(r); /* its end cleans up */
    return;
  }
  if (r->decomp.running || r->child.running) {
    r->fail_rc = ENG_ERR_CANCELLED; /* the exit handlers clean up */
    return;
  }
  if (r->phase == PH_UNDO) return; /* already dropping */
  pg_restore_fail(r, ENG_ERR_CANCELLED, NULL);
}

/* ---- success ------------------------------------------------------------ */

static int pg_restore_count_res(pg_sess *s, void *ud, PGresult *res) {
  pg_restore_op *r = ud;
  (void)s;
  r->tables = PQntuples(res) ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
  return ENG_OK;
}

static void pg_restore_counted(pg_sess *s, void *ud, int rc) {
  pg_restore_op *r = ud;
  if (r->phase != PH_COUNT) return;
  if (rc != ENG_OK) {
    pg_restore_fail(r, rc,
                    "restore into %s finished but the restored database "
                    "cannot be read (%s); check the server log",
                    r->db, pg_sess_errmsg(s));
    return;
  }
  eng_call *call = r->op.e.call;
  char *url = pg_url_with_db(r->url, r->db);
  pg_host->output(call, "database", json_string(r->db));
  pg_host->output(call, "url", json_string(url ? url : ""));
  pg_host->output(call, "bytes", json_integer(r->src_sha[0] ? r->src_bytes
                                                            : r->insp.bytes));
  pg_host->output(call, "tables", json_integer(r->tables));
  pg_host->output(call, "jobs", json_integer(r->jobs_used ? r->jobs_used : 1));
  pg_host->output(call, "format",
                  json_string(pg_fmt_name(r->inner ? r->inner : r->insp.fmt)));
  if (r->src_sha[0])
    pg_host->output(call, "sha256", json_string(r->src_sha));
  else if (r->insp.sha256[0])
    pg_host->output(call, "sha256", json_string(r->insp.sha256));
  pg_host->output(call, "verified",
                  json_boolean(r->verified || r->insp.sha256[0]));
  if (r->verified_by[0])
    pg_host->output(call, "verified_by", json_string(r->verified_by));
  if (r->psha[0]) {
    pg_host->output(call, "encryption", json_string("age"));
    pg_host->output(call, "plaintext_sha256", json_string(r->psha));
  }
  pg_host->log(call, ENG_LOG_INFO,
               "restored %s (%s, %lld bytes) into database %s on %s:%s: %lld "
               "tables",
               r->file, pg_fmt_name(r->inner ? r->inner : r->insp.fmt),
               (long long)(r->src_sha[0] ? r->src_bytes : r->insp.bytes), r->db,
               r->id.host, r->id.port,
               r->tables);
  free(url);
  pg_restore_end(r, ENG_OK, NULL);
}

static void pg_restore_success(pg_restore_op *r) {
  pg_restore_phase(r, PH_COUNT);
  char *url = pg_url_with_db(r->url, r->db);
  if (r->s) pg_sess_close(r->s);
  r->s = pg_sess_open(&r->op, url ? url : "");
  free(url);
  pg_sess_add(r->s, "count restored tables",
              "SELECT count(*) FROM pg_catalog.pg_class c "
              "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
              "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND "
              "n.nspname NOT IN ('pg_catalog', 'information_schema') AND "
              "n.nspname NOT LIKE 'pg\\_toast%'",
              0, NULL, pg_restore_count_res, r);
  pg_sess_run(r->s, pg_restore_counted, r);
}

/* ---- children ----------------------------------------------------------- */

/* The consumer was spawned (child.op stays NULL when spawning failed). */
static int pg_restore_consumer_started(const pg_restore_op *r) {
  return r->child.op != NULL;
}

/* Something of the restore ended (a child, the stream): once nothing runs
 * any more, the outcome. Also the end of a cancellation or a rejected head
 * that waited for the stream to stop (the phases before PH_RESTORE). From
 * PH_COUNT on the outcome is already being reported. */
static void pg_restore_both_done(pg_restore_op *r) {
  if (r->phase == PH_COUNT || r->phase == PH_UNDO || r->phase == PH_DONE)
    return;
  if (r->decomp.running || r->child.running || pg_restore_rs_live(r)) return;
  if (r->fail_rc == ENG_ERR_CANCELLED || r->op.e.cancelled) {
    pg_restore_fail(r, ENG_ERR_CANCELLED, NULL);
    return;
  }
  if (r->rsp == RS_ENDED && r->rs_rc != ENG_OK) {
    pg_restore_fail(r, r->rs_rc, "%s%s",
                    r->rs_msg ? r->rs_msg : eng_strerror(r->rs_rc),
                    pg_restore_consumer_started(r)
                        ? " (nothing was committed)"
                        : "");
    return;
  }
  char how[96];
  int decomp_failed = r->decomp.op && (r->decomp.status != 0 || r->decomp.sig);
  int child_failed = r->child.op && (r->child.status != 0 || r->child.sig);
  if (decomp_failed &&
      (r->killed_consumer || !pg_restore_consumer_started(r))) {
    pg_restore_fail(r, ENG_ERR_FAILED,
                    "decompressing %s failed (%s): %s; the file is truncated "
                    "or corrupted: restore another backup",
                    r->file, pg_child_how(&r->decomp, how, sizeof how),
                    r->decomp.tail[0] ? r->decomp.tail : "(no message)");
    return;
  }
  if (r->truncated) {
    pg_restore_fail(r, ENG_ERR_FAILED,
                    "%s holds a plain pg_dump without its end marker ('%s'): "
                    "the backup is truncated; restore another backup",
                    r->file, PG_PLAIN_END);
    return;
  }
  if (r->rsp != RS_NONE && !pg_restore_consumer_started(r)) {
    pg_restore_fail(r, r->rs_rc ? r->rs_rc : ENG_ERR_FAILED,
                    "restoring %s stopped before it began%s%s", r->file,
                    r->rs_msg ? ": " : "", r->rs_msg ? r->rs_msg : "");
    return;
  }
  if (r->decomp.op && !pg_restore_consumer_started(r)) {
    pg_restore_fail(r, ENG_ERR_INVALID,
                    "%s decompressed to %s: not a PostgreSQL backup; check "
                    "the file",
                    r->file, r->headlen ? "unrecognised data" : "nothing");
    return;
  }
  if (child_failed) {
    pg_restore_fail(r, ENG_ERR_FAILED,
                    "restoring %s into database %s on %s:%s failed (%s): %s; "
                    "%s",
                    r->file, r->db, r->id.host, r->id.port,
                    pg_child_how(&r->child, how, sizeof how),
                    r->child.tail[0] ? r->child.tail : "(no error output)",
                    pg_tool_hint(r->child.tail, 1));
    return;
  }
  if (decomp_failed) {
    pg_restore_fail(r, ENG_ERR_FAILED, "decompressing %s failed (%s): %s",
                    r->file, pg_child_how(&r->decomp, how, sizeof how),
                    r->decomp.tail[0] ? r->decomp.tail : "(no message)");
    return;
  }
  pg_restore_success(r);
}

static void pg_restore_child_exit(pg_child *c) {
  pg_restore_op *r = c->ud;
  /* the consumer is gone: a decompressor still writing would block */
  if (r->decomp.running) pg_host->proc_kill(r->decomp.proc, SIGTERM);
  if (r->rs) pg_restore_rs_stop(r); /* its end completes the op */
  pg_restore_both_done(r);
}

static void pg_restore_close_stdin(pg_restore_op *r) {
  if (r->stdin_closed || !r->child.running) return;
  r->stdin_closed = 1;
  pg_host->proc_write(r->child.proc, NULL, 0, NULL, NULL);
}

static void pg_restore_wrote(void *ud, int rc) {
  pg_wchunk *w = ud;
  pg_pipe *p = w->pipe;
  size_t len = w->len;
  free(w);
  if (p->op_gone) {
    if (--p->refs == 0) free(p);
    return;
  }
  p->refs--;
  pg_restore_op *r = p->r;
  pg_op_hold(&r->op); /* resuming a stream may deliver (and end) at once */
  r->inflight -= len;
  if (rc != 0 && !r->write_failed) {
    r->write_failed = 1; /* the consumer exited: its exit reports why */
    pg_restore_src_stop(r);
  }
  if (r->paused && r->inflight < PG_PIPE_LOW) {
    r->paused = 0;
    pg_restore_src_pause(r, 0);
  }
  if (r->src_ended && r->inflight == 0)
    pg_restore_close_stdin(r);
  pg_op_release(&r->op);
}

static void pg_restore_feed(pg_restore_op *r, const char *buf, size_t len) {
  if (!len || r->write_failed || !r->child.running || r->stdin_closed) return;
  pg_wchunk *w = eng_xmalloc(sizeof *w + len);
  w->pipe = r->pipe;
  w->len = len;
  memcpy(w->data, buf, len);
  r->pipe->refs++;
  r->inflight += len;
  int rc =
      pg_host->proc_write(r->child.proc, w->data, len, pg_restore_wrote, w);
  if (rc != ENG_OK) {
    r->pipe->refs--;
    r->inflight -= len;
    free(w);
    r->write_failed = 1;
    pg_restore_src_stop(r);
    return;
  }
  if (r->inflight > PG_PIPE_HIGH && !r->paused) {
    r->paused = 1;
    pg_restore_src_pause(r, 1);
  }
}

/* Remember the end of the stream for the plain-dump marker check. */
static void pg_restore_track_tail(pg_restore_op *r, const char *buf,
                                  size_t len) {
  if (len >= sizeof r->tail) {
    memcpy(r->tail, buf + len - sizeof r->tail, sizeof r->tail);
    r->taillen = sizeof r->tail;
  } else {
    size_t keep = sizeof r->tail - len;
    if (keep > r->taillen) keep = r->taillen;
    memmove(r->tail, r->tail + r->taillen - keep, keep);
    memcpy(r->tail + keep, buf, len);
    r->taillen = keep + len;
  }
}

/* Stream mode: everything but the last PG_HOLD bytes goes on at once. */
static void pg_restore_stream_bytes(pg_restore_op *r, const char *buf,
                                    size_t len) {
  r->streamed += (int64_t)len;
  pg_restore_track_tail(r, buf, len);
  eng_strbuf_add(&r->hold, buf, len);
  if (r->hold.len >= 2 * PG_HOLD) {
    size_t n = r->hold.len - PG_HOLD;
    pg_restore_feed(r, r->hold.data, n);
    memmove(r->hold.data, r->hold.data + n, PG_HOLD);
    r->hold.len = PG_HOLD;
  }
}

static int pg_restore_plain_truncated(const pg_restore_op *r) {
  return r->inner == PG_FMT_PLAIN &&
         memmem(r->head, r->headlen, PG_PLAIN_HEAD, strlen(PG_PLAIN_HEAD)) &&
         !memmem(r->tail, r->taillen, PG_PLAIN_END, strlen(PG_PLAIN_END));
}

/* Stream mode: the stream ended (r->rs_rc). Verified: hand over the held
 * back bytes and end the consumer's input. Otherwise kill the consumer
 * before it sees the end of its input: nothing commits. */
static void pg_restore_stream_eof(pg_restore_op *r) {
  int ok = r->rs_rc == ENG_OK && !r->op.e.cancelled &&
           r->fail_rc != ENG_ERR_CANCELLED;
  if (ok && pg_restore_plain_truncated(r)) {
    r->truncated = 1;
    ok = 0;
  }
  if (!ok) {
    if (r->child.running) {
      r->killed_consumer = 1;
      pg_host->proc_kill(r->child.proc, SIGTERM);
    }
  } else {
    pg_restore_feed(r, r->hold.data, r->hold.len);
    r->hold.len = 0;
    r->src_ended = 1;
    if (r->inflight == 0) pg_restore_close_stdin(r);
  }
  pg_restore_both_done(r);
}

static int pg_restore_spawn_consumer(pg_restore_op *r, int from_stdin);

/* Enough decompressed bytes to tell the format: start the consumer. */
static void pg_restore_detect_inner(pg_restore_op *r) {
  if (r->headlen >= 5 && !memcmp(r->head, "PGDMP", 5))
    r->inner = PG_FMT_CUSTOM;
  else if (r->headlen >= 262 && !memcmp(r->head + 257, "ustar", 5))
    r->inner = PG_FMT_TAR;
  else if (memchr(r->head, '\0', r->headlen))
    r->inner = PG_FMT_UNKNOWN;
  else
    r->inner = PG_FMT_PLAIN;
  if (r->inner == PG_FMT_UNKNOWN) {
    pg_restore_src_stop(r);
    return;
  }
  if (pg_restore_spawn_consumer(r, 1) != ENG_OK) {
    pg_restore_src_stop(r);
    return;
  }
  pg_restore_feed(r, r->head, r->headlen);
}

static void pg_restore_decomp_out(pg_child *c, const char *buf, size_t len) {
  pg_restore_op *r = c->ud;
  if (r->phase != PH_RESTORE) return; /* failed meanwhile: for nobody */
  r->streamed += (int64_t)len;
  pg_restore_track_tail(r, buf, len);
  if (!pg_restore_consumer_started(r)) {
    if (r->inner == PG_FMT_UNKNOWN && r->headlen >= sizeof r->head) return;
    size_t take = sizeof r->head - r->headlen;
    if (take > len) take = len;
    memcpy(r->head + r->headlen, buf, take);
    r->headlen += take;
    if (r->headlen < sizeof r->head) return; /* wait for more */
    pg_restore_detect_inner(r);
    if (pg_restore_consumer_started(r))
      pg_restore_feed(r, buf + take, len - take);
    return;
  }
  pg_restore_feed(r, buf, len);
}

static void pg_restore_decomp_exit(pg_child *c) {
  pg_restore_op *r = c->ud;
  r->src_ended = 1;
  int ok = c->status == 0 && !c->sig;
  if (ok && r->phase == PH_RESTORE && !pg_restore_consumer_started(r) &&
      r->headlen > 0 && !r->op.e.cancelled && r->fail_rc != ENG_ERR_CANCELLED)
    pg_restore_detect_inner(r); /* a stream shorter than the head buffer */
  if (ok && pg_restore_plain_truncated(r)) r->truncated = 1;
  if (!ok || r->truncated || r->op.e.cancelled) {
    /* never let psql commit a partial script: kill it before EOF */
    if (r->child.running) {
      r->killed_consumer = 1;
      pg_host->proc_kill(r->child.proc, SIGTERM);
    }
  } else if (r->inflight == 0) {
    pg_restore_close_stdin(r);
  }
  pg_restore_both_done(r);
}

static int pg_restore_spawn_consumer(pg_restore_op *r, int from_stdin) {
  pg_fmt f = from_stdin ? r->inner : r->insp.fmt;
  int plain = f == PG_FMT_PLAIN;
  pg_bin *bin = plain ? &r->psql_bin : &r->restore_bin;
  if (bin->rc != ENG_OK) {
    pg_restore_fail(r, bin->rc, "%s", bin->err);
    return bin->rc;
  }
  pg_argv argv = {0}, env = {0};
  pg_argv_add(&argv, bin->path);
  pg_argv_add(&argv, "--no-password");
  if (plain) {
    pg_argv_add(&argv, "-X");
    pg_argv_add(&argv, "-q");
    pg_argv_add(&argv, "-v");
    pg_argv_add(&argv, "ON_ERROR_STOP=1");
    pg_argv_add(&argv, "--single-transaction");
  } else {
    pg_argv_add(&argv, "--exit-on-error");
    if (r->no_owner) pg_argv_add(&argv, "--no-owner");
    if (r->no_acl) pg_argv_add(&argv, "--no-acl");
    int parallel = r->jobs > 1 && !from_stdin && f != PG_FMT_TAR;
    r->jobs_used = parallel ? r->jobs : 1;
    if (parallel)
      pg_argv_addf(&argv, "--jobs=%d", r->jobs);
    else
      pg_argv_add(&argv, "--single-transaction");
  }
  char *err = NULL;
  if (pg_ci_client_args(r->op.e.call, r->admin, r->db, "-d", &argv, &env, &err) !=
      ENG_OK) {
    pg_restore_fail(r, ENG_ERR_INVALID,
                    "bad connection string (%s); use "
                    "postgresql://USER:PASSWORD@HOST:PORT/DBNAME",
                    err ? err : "?");
    free(err);
    pg_argv_free(&argv);
    pg_argv_free(&env);
    return ENG_ERR_INVALID;
  }
  if (plain) {
    pg_argv_add(&argv, "-f");
    pg_argv_add(&argv, from_stdin ? "-" : r->insp.path);
  } else if (!from_stdin) {
    pg_argv_add(&argv, r->insp.path);
  }
  eng_spawn_opts o = {0};
  o.size = sizeof o;
  o.argv = (const char *const *)argv.v;
  o.env = (const char *const *)env.v;
  o.stdin_fd = from_stdin ? ENG_STDIO_PIPE : ENG_STDIO_NULL;
  o.stdout_fd = ENG_STDIO_NULL;
  r->child.ud = r;
  r->child.on_exit = pg_restore_child_exit;
  char e[512];
  int rc = pg_child_spawn(&r->child, &r->op, plain ? "psql" : "pg_restore", &o,
                          e, sizeof e);
  pg_argv_free(&argv);
  pg_argv_free(&env);
  if (rc != ENG_OK) {
    r->child.op = NULL;
    pg_restore_fail(r, rc, "%s; check the PostgreSQL client installation", e);
    return rc;
  }
  pg_host->log(r->op.e.call, ENG_LOG_INFO, "restoring with %s %s (%s)",
               plain ? "psql" : "pg_restore", bin->version, bin->path);
  return ENG_OK;
}

/* PH_RESTORE from a local file: the consumer reads it, or a decompressor
 * feeds the consumer's stdin. */
static void pg_restore_spawn(pg_restore_op *r) {
  pg_restore_phase(r, PH_RESTORE);
  if (r->insp.fmt != PG_FMT_GZIP && r->insp.fmt != PG_FMT_ZSTD) {
    pg_restore_spawn_consumer(r, 0);
    return;
  }
  r->pipe = eng_xcalloc(1, sizeof *r->pipe);
  r->pipe->refs = 1;
  r->pipe->r = r;
  const char *tool = r->insp.fmt == PG_FMT_GZIP ? "gzip" : "zstd";
  const char *argv[] = {tool, "-dc", "--", r->insp.path, NULL};
  if (r->insp.fmt == PG_FMT_ZSTD) argv[1] = "-dcq";
  eng_spawn_opts o = {0};
  o.size = sizeof o;
  o.argv = argv;
  o.stdin_fd = ENG_STDIO_NULL;
  o.stdout_fd = ENG_STDIO_PIPE;
  r->decomp.ud = r;
  r->decomp.on_exit = pg_restore_decomp_exit;
  r->decomp.on_stdout = pg_restore_decomp_out;
  char e[512];
  int rc = pg_child_spawn(&r->decomp, &r->op, tool, &o, e, sizeof e);
  if (rc != ENG_OK) {
    r->decomp.op = NULL;
    pg_restore_fail(r, rc, "%s; install %s to restore %s files", e, tool,
                    pg_fmt_name(r->insp.fmt));
  }
}

/* ---- binaries ----------------------------------------------------------- */

static void pg_restore_find(void *ud) {
  pg_restore_op *r = ud;
  pg_bin_find(&r->restore_bin);
  pg_bin_find(&r->psql_bin);
}

static void pg_restore_stream_go(pg_restore_op *r);

static void pg_restore_found(void *ud) {
  pg_restore_op *r = ud;
  if (r->phase != PH_FIND) return; /* failed (cancelled) meanwhile */
  if (r->op.e.cancelled) return;   /* the stream's stop reports it */
  if (r->rsp != RS_NONE) {
    pg_restore_stream_go(r);
    return;
  }
  pg_fmt f = r->insp.fmt;
  int need_psql = f == PG_FMT_PLAIN || f == PG_FMT_GZIP || f == PG_FMT_ZSTD;
  int need_restore = f != PG_FMT_PLAIN;
  if (need_restore && r->restore_bin.rc != ENG_OK && f != PG_FMT_GZIP &&
      f != PG_FMT_ZSTD) {
    pg_restore_fail(r, r->restore_bin.rc, "%s", r->restore_bin.err);
    return;
  }
  if (need_psql && r->psql_bin.rc != ENG_OK && f == PG_FMT_PLAIN) {
    pg_restore_fail(r, r->psql_bin.rc, "%s", r->psql_bin.err);
    return;
  }
  pg_restore_spawn(r);
}

/* PH_FIND: look up the client programs for the server's version. */
static void pg_restore_find_start(pg_restore_op *r, const char *what) {
  pg_restore_phase(r, PH_FIND);
  pg_bin_init(&r->restore_bin, "pg_restore", r->id.version_num, r->bin_dir);
  pg_bin_init(&r->psql_bin, "psql", r->id.version_num, r->bin_dir);
  if (pg_op_work(&r->op, pg_restore_find, pg_restore_found, r) != ENG_OK)
    pg_restore_fail(r, ENG_ERR_NOMEM, "could not queue the %s", what);
}

static void pg_restore_created(pg_sess *s, void *ud, int rc) {
  pg_restore_op *r = ud;
  if (r->phase != PH_CREATE) return;
  if (rc != ENG_OK) {
    pg_host->journal_removed(r->op.e.call, "database", r->target);
    pg_restore_fail(r, rc, "creating database %s on %s:%s failed: %s; %s",
                    r->db, r->id.host, r->id.port, pg_sess_errmsg(s),
                    "check that the user may create databases (CREATEDB)");
    return;
  }
  r->created = 1;
  pg_host->journal_confirm(r->op.e.call, r->token);
  pg_sess_close(s);
  r->s = NULL;
  if (r->op.e.cancelled) {
    pg_restore_fail(r, ENG_ERR_CANCELLED, NULL);
    return;
  }
  pg_restore_find_start(r, "pg_restore lookup");
}

static void pg_restore_create(pg_restore_op *r) {
  pg_restore_phase(r, PH_CREATE);
  char *sql = pg_create_db_sql(pg_sess_conn(r->s), r->db, "template0", NULL);
  free(r->drop_sql);
  r->drop_sql =
      pg_drop_db_sql(pg_sess_conn(r->s), r->db, 1, 1, r->id.version_num);
  if (!sql || !r->drop_sql) {
    free(sql);
    pg_restore_fail(r, ENG_ERR_INVALID,
                    "cannot quote database name %s (not valid in the "
                    "server's encoding); choose another name",
                    r->db);
    return;
  }
  json_t *detail = pg_undo_detail(r->url, r->db);
  r->token = pg_host->journal_intent(r->op.e.call, "database", r->target, detail);
  json_decref(detail);
  if (r->token < 0) { /* unrecorded: nothing could clean it up (the host said why) */
    free(sql);
    pg_restore_end(r, ENG_ERR_IO, NULL);
    return;
  }
  pg_sess_add(r->s, "create database", sql, 0, NULL, NULL, NULL);
  free(sql);
  pg_sess_run(r->s, pg_restore_created, r);
}

static void pg_restore_dropped_old(pg_sess *s, void *ud, int rc) {
  pg_restore_op *r = ud;
  if (r->phase != PH_DROP_OLD) return;
  if (rc != ENG_OK) {
    pg_restore_fail(r, rc,
                    "clean: dropping the existing database %s on %s:%s "
                    "failed: %s; nothing was restored",
                    r->db, r->id.host, r->id.port, pg_sess_errmsg(s));
    return;
  }
  pg_host->journal_removed(r->op.e.call, "database", r->target);
  pg_host->log(r->op.e.call, ENG_LOG_WARN,
               "clean: dropped the existing database %s on %s:%s", r->db,
               r->id.host, r->id.port);
  pg_restore_create(r);
}

static void pg_restore_checked(pg_sess *s, void *ud, int rc) {
  pg_restore_op *r = ud;
  if (r->phase != PH_CONNECT) return;
  if (rc != ENG_OK) {
    pg_restore_fail(r, rc, "connecting to %s for the restore failed: %s; %s",
                    pg_sess_display(s), pg_sess_errmsg(s), pg_conn_hint(rc));
    return;
  }
  r->target = pg_ident_target(&r->id, r->db);
  if (pg_restore_rs_ended(r) && r->rs_rc != ENG_OK) {
    pg_restore_fail(r, r->rs_rc, "%s; nothing was restored",
                    r->rs_msg ? r->rs_msg : eng_strerror(r->rs_rc));
    return;
  }
  if (pg_guard_db(&r->op, &r->id, r->db) != ENG_OK) {
    pg_restore_end(r, ENG_ERR_REFUSED, NULL);
    return;
  }
  if (r->exists && r->create && !r->clean) {
    pg_restore_fail(r, ENG_ERR_EXISTS,
                    "database %s already exists on %s:%s and restore will not "
                    "touch it; choose a new name (database:), or set clean: "
                    "true to drop and recreate it (destructive)",
                    r->db, r->id.host, r->id.port);
    return;
  }
  if (!r->exists && !r->create) {
    pg_restore_fail(r, ENG_ERR_NOTFOUND,
                    "database %s does not exist on %s:%s and create is false; "
                    "set create: true or create it first",
                    r->db, r->id.host, r->id.port);
    return;
  }
  if (r->exists && r->clean) {
    char *sql = pg_drop_db_sql(pg_sess_conn(s), r->db, 0, 1, r->id.version_num);
    if (!sql) {
      pg_restore_fail(r, ENG_ERR_INVALID,
                      "cannot quote database name %s (not valid in the "
                      "server's encoding); choose another name",
                      r->db);
      return;
    }
    if (r->id.version_num < 130000) pg_add_terminate(s, r->db);
    pg_sess_add(s, "drop the existing database (clean)", sql, 0, NULL, NULL,
                NULL);
    free(sql);
    pg_restore_phase(r, PH_DROP_OLD);
    pg_sess_run(s, pg_restore_dropped_old, r);
    return;
  }
  if (r->exists) { /* create: false, restore into what is there */
    pg_sess_close(s);
    r->s = NULL;
    pg_restore_find_start(r, "lookup");
    return;
  }
  pg_restore_create(r);
}

/* PH_CONNECT: a waiting head is paused meanwhile. */
static void pg_restore_connect(pg_restore_op *r) {
  pg_restore_phase(r, PH_CONNECT);
  pg_restore_rs_sync(r);
  r->s = pg_sess_open(&r->op, r->admin);
  pg_ident_add(r->s, &r->id);
  pg_add_exists(r->s, r->db, &r->exists);
  pg_sess_run(r->s, pg_restore_checked, r);
}

/* ---- stream mode ---------------------------------------------------------- */

static pg_fmt pg_restore_sniff(const char *h, size_t n) {
  if (n >= 5 && !memcmp(h, "PGDMP", 5)) return PG_FMT_CUSTOM;
  if (n >= 262 && !memcmp(h + 257, "ustar", 5)) return PG_FMT_TAR;
  if (n >= 2 && (unsigned char)h[0] == 0x1f && (unsigned char)h[1] == 0x8b)
    return PG_FMT_GZIP;
  if (memchr(h, '\0', n) || n == 0) return PG_FMT_UNKNOWN;
  return PG_FMT_PLAIN;
}

/* PH_HEAD has enough first bytes (or the whole object): tell the format,
 * then PH_CONNECT. Nothing exists yet when this fails. */
static void pg_restore_stream_head(pg_restore_op *r) {
  if (r->phase != PH_HEAD) return;
  r->headlen = r->pre.len < sizeof r->head ? r->pre.len : sizeof r->head;
  memcpy(r->head, r->pre.data, r->headlen);
  r->inner = pg_restore_sniff(r->head, r->headlen);
  if (r->inner == PG_FMT_GZIP || r->inner == PG_FMT_UNKNOWN) {
    r->rs_rc = ENG_ERR_INVALID;
    free(r->rs_msg);
    int age = r->headlen >= strlen(PG_AGE_HEAD) &&
              !memcmp(r->head, PG_AGE_HEAD, strlen(PG_AGE_HEAD));
    r->rs_msg = eng_asprintf(
        age ? "%s " PG_AGE_HINT
        : r->inner == PG_FMT_GZIP
            ? "%s is gzip-compressed: streamed restores undo zstd only "
              "(dump with compress: zstd); set jobs: 2 to download it first"
            : "%s is neither a pg_dump archive (custom, tar) nor SQL text "
              "(binary data, no PGDMP header): the object is corrupted or not "
              "a PostgreSQL backup",
        r->file);
    if (r->rs) {
      pg_restore_phase(r, PH_REJECT);
      pg_restore_rs_stop(r); /* the abort completes the op (nothing made) */
    } else {
      pg_restore_end(r, r->rs_rc, "%s; nothing was restored", r->rs_msg);
    }
    return;
  }
  pg_host->log(r->op.e.call, ENG_LOG_INFO, "%s: %s format, streamed%s", r->file,
               pg_fmt_name(r->inner),
               r->expect_sha ? ", sha256 checked at the end" : "");
  pg_restore_connect(r);
}

/* Bytes of the stream: into the consumer in PH_RESTORE; before that into
 * the head (PH_HEAD reads PG_HEAD of them, then the stream is paused; what
 * arrives while the pause takes effect is kept too). */
static void pg_restore_rs_data(void *ud, const char *buf, size_t len) {
  pg_restore_op *r = ud;
  if (r->rsp != RS_READ) return; /* stopping: ignored */
  if (r->phase == PH_RESTORE) {
    pg_restore_stream_bytes(r, buf, len);
    return;
  }
  eng_strbuf_add(&r->pre, buf, len);
  if (r->phase == PH_HEAD && r->pre.len >= PG_HEAD)
    pg_restore_stream_head(r);
}

static void pg_restore_rs_end(void *ud, int rc, json_t *info) {
  pg_restore_op *r = ud;
  int stopping = r->rsp == RS_STOPPING;
  pg_restore_rs_info(r, rc, info);
  json_decref(info);
  pg_op_hold(&r->op);
  if (r->phase == PH_RESTORE) {
    pg_restore_stream_eof(r);
  } else if (r->phase == PH_HEAD && !stopping) {
    if (rc == ENG_OK) {
      pg_restore_stream_head(r); /* a short object */
    } else {
      /* nothing was created yet */
      if (rc == ENG_ERR_CANCELLED || r->op.e.cancelled)
        pg_restore_end(r, ENG_ERR_CANCELLED, NULL);
      else
        pg_restore_end(r, rc, "%s; nothing was restored",
                       r->rs_msg ? r->rs_msg : eng_strerror(rc));
    }
  }
  /* else: the database is being prepared (pg_restore_stream_go sees the
   * end), or a stop is under way (its abort callback goes on) */
  pg_op_release(&r->op);
}

/* Binaries found, database created: PH_RESTORE, start the consumer and let
 * the bytes flow. */
static void pg_restore_stream_go(pg_restore_op *r) {
  if (pg_restore_rs_ended(r) && r->rs_rc != ENG_OK) {
    pg_restore_fail(r, r->rs_rc, "%s",
                    r->rs_msg ? r->rs_msg : eng_strerror(r->rs_rc));
    return;
  }
  if (!r->pipe) {
    r->pipe = eng_xcalloc(1, sizeof *r->pipe);
    r->pipe->refs = 1;
    r->pipe->r = r;
  }
  pg_restore_phase(r, PH_RESTORE);
  if (pg_restore_spawn_consumer(r, 1) != ENG_OK) {
    pg_restore_rs_stop(r);
    return;
  }
  pg_op_hold(&r->op);
  pg_restore_stream_bytes(r, r->pre.data, r->pre.len);
  eng_strbuf_free(&r->pre);
  if (pg_restore_rs_ended(r))
    pg_restore_stream_eof(r);
  else
    pg_restore_rs_sync(r); /* no longer held */
  pg_op_release(&r->op);
}

/* PH_HEAD: open the stream (a URL, or a local zstd file). */
static void pg_restore_stream_open(pg_restore_op *r, const char *url) {
  pg_restore_phase(r, PH_HEAD);
  pg_restore_rs_phase(r, RS_READ);
  json_t *o = pg_restore_rs_opts(r);
  int rc = pg_host->stream_open_read(r->op.e.call, url, o, pg_restore_rs_data,
                                     pg_restore_rs_end, r, &r->rs);
  json_decref(o);
  if (rc != ENG_OK) {
    r->rs = NULL;
    pg_restore_end(r, rc, NULL); /* the host recorded why */
  }
}

/* ---- download mode (jobs > 1) ----------------------------------------------- */

static void pg_restore_inspect(void *ud);
static void pg_restore_inspected(void *ud);
static void pg_restore_sidecar(pg_restore_op *r);

static void pg_restore_dl_pause(void *ud, int paused) {
  pg_restore_op *r = ud;
  r->paused = paused;
  pg_restore_rs_sync(r);
}

static void pg_restore_dl_stop(void *ud) { pg_restore_rs_stop(ud); }

static void pg_restore_dl_data(void *ud, const char *buf, size_t len) {
  pg_restore_op *r = ud;
  if (r->rsp == RS_READ) pg_out_data(r->dl, buf, len);
}

/* The read was stopped (cancel, or writing the copy failed). */
static void pg_restore_dl_stopped(pg_restore_op *r) {
  int out_rc = pg_out_failed(r->dl);
  pg_out_abort(r->dl);
  if (r->op.e.cancelled || r->fail_rc == ENG_ERR_CANCELLED)
    pg_restore_end(r, ENG_ERR_CANCELLED, NULL);
  else
    pg_restore_end(r, out_rc ? out_rc : ENG_ERR_IO, NULL); /* host's message */
}

/* PH_STORE: the copy is complete; PH_INSPECT reads it like a local file. */
static void pg_restore_dl_stored(void *ud, int rc, json_t *info) {
  pg_restore_op *r = ud;
  json_decref(info);
  if (r->phase != PH_STORE) return;
  if (rc != ENG_OK) {
    pg_restore_end(r, rc, NULL); /* the host recorded why */
    return;
  }
  pg_host->log(r->op.e.call, ENG_LOG_INFO,
               "downloaded %s (%lld bytes, sha256 %s%s) to %s", r->file,
               (long long)r->src_bytes, r->src_sha,
               r->verified ? ", verified" : "", r->dl_path);
  free(r->insp.path);
  r->insp.path = eng_xstrdup(r->dl_path);
  r->insp.want_sha = 0; /* checked on the way */
  free(r->expect_sha);
  r->expect_sha = NULL;
  pg_restore_rs_phase(r, RS_NONE); /* the copy is restored, not the stream */
  pg_restore_phase(r, PH_INSPECT);
  if (pg_op_work(&r->op, pg_restore_inspect, pg_restore_inspected, r) !=
      ENG_OK)
    pg_restore_end(r, ENG_ERR_NOMEM, "could not queue the inspection of %s",
                   r->dl_path);
}

static void pg_restore_dl_end(void *ud, int rc, json_t *info) {
  pg_restore_op *r = ud;
  int stopping = r->rsp == RS_STOPPING;
  pg_restore_rs_info(r, rc, info);
  json_decref(info);
  if (stopping) return; /* pg_restore_rs_abort_cb goes on */
  if (r->phase != PH_DOWNLOAD) return;
  if (rc != ENG_OK) {
    pg_out_abort(r->dl);
    if (rc == ENG_ERR_CANCELLED || r->op.e.cancelled)
      pg_restore_end(r, ENG_ERR_CANCELLED, NULL);
    else
      pg_restore_end(r, rc, "%s; nothing was restored",
                     r->rs_msg ? r->rs_msg : eng_strerror(rc));
    return;
  }
  pg_restore_phase(r, PH_STORE);
  pg_out_end(r->dl, pg_restore_dl_stored, r);
}

/* PH_DOWNLOAD: the stream into a copy in the run directory. */
static void pg_restore_download(pg_restore_op *r) {
  pg_restore_phase(r, PH_DOWNLOAD);
  r->dl_path = eng_asprintf("%s/restore-%s.download",
                            pg_host->run_dir(r->op.e.call),
                            pg_host->step_id(r->op.e.call));
  int rc = ENG_OK;
  r->dl = pg_out_open(&r->op, r->dl_path, NULL, &rc);
  if (!r->dl) {
    free(r->dl_path);
    r->dl_path = NULL;
    pg_restore_end(r, rc, NULL);
    return;
  }
  pg_out_source(r->dl, pg_restore_dl_pause, pg_restore_dl_stop, r);
  pg_restore_rs_phase(r, RS_READ);
  json_t *o = pg_restore_rs_opts(r);
  rc = pg_host->stream_open_read(r->op.e.call, r->file, o, pg_restore_dl_data,
                                 pg_restore_dl_end, r, &r->rs);
  json_decref(o);
  if (rc != ENG_OK) {
    r->rs = NULL;
    pg_restore_end(r, rc, NULL); /* the host recorded why */
    return;
  }
  if (r->age_key)
    pg_host->log(r->op.e.call, ENG_LOG_INFO,
                 "decrypting %s into the run directory first: all of it is "
                 "authenticated before anything is created",
                 r->file);
  else
    pg_host->log(r->op.e.call, ENG_LOG_INFO,
                 "jobs: %d needs a seekable file: downloading %s into the "
                 "run directory first",
                 r->jobs, r->file);
}

/* ---- a directory backup under a URL prefix ------------------------------
 * PREFIX/manifest.json first (written last by the dump: without it there
 * is no backup), then every file it names, a few at a time, each checked
 * against its SHA-256 on the way, into the run directory; a missing or
 * changed file fails here, before any database is created. Then the usual
 * path: inspection, pg_restore -j N. */

static void pg_restore_dir_files(void *ud, int rc) {
  pg_restore_op *r = ud;
  if (r->phase != PH_FILES) return;
  if (rc != ENG_OK) {
    pg_host->log(r->op.e.call, ENG_LOG_ERROR,
                 "a file of the directory backup %s is missing or does not "
                 "match its manifest; nothing was restored", r->file);
    pg_restore_end(r, rc, NULL); /* the host recorded which and why */
    return;
  }
  int64_t total = 0;
  for (size_t i = 0; i < pg_xfer_count(r->xfer); i++)
    total += pg_xfer_item_at(r->xfer, i)->bytes;
  r->src_bytes = total;
  snprintf(r->src_sha, sizeof r->src_sha, "%s", r->man_sha);
  r->verified = 1;
  snprintf(r->verified_by, sizeof r->verified_by, "manifest.json");
  pg_host->log(r->op.e.call, ENG_LOG_INFO,
               "downloaded %zu files (%lld bytes) of %s, each checked against "
               "the manifest", pg_xfer_count(r->xfer), (long long)total,
               r->file);
  pg_xfer_free(r->xfer);
  r->xfer = NULL;
  free(r->insp.path);
  r->insp.path = eng_xstrdup(r->dl_path);
  r->insp.want_sha = 0;
  pg_restore_phase(r, PH_INSPECT);
  if (pg_op_work(&r->op, pg_restore_inspect, pg_restore_inspected, r) != ENG_OK)
    pg_restore_end(r, ENG_ERR_NOMEM, "could not queue the inspection of %s",
                   r->dl_path);
}

/* worker: read and check the manifest */
static void pg_restore_dir_read(void *ud) {
  pg_restore_op *r = ud;
  json_error_t je;
  r->manifest = json_load_file(r->man_path, 0, &je);
  const char *why = NULL;
  json_t *files = json_object_get(r->manifest, "files");
  if (!r->manifest) why = je.text;
  else if (!json_is_array(files) || !json_array_size(files))
    why = "it lists no files";
  else if (strcmp(json_string_value(json_object_get(r->manifest, "format"))
                      ? json_string_value(json_object_get(r->manifest, "format"))
                      : "", "directory"))
    why = "its format is not directory";
  size_t i;
  json_t *f;
  json_array_foreach(files, i, f) {
    const char *name = json_string_value(json_object_get(f, "name"));
    const char *sha = json_string_value(json_object_get(f, "sha256"));
    if (why) break;
    if (!name || !*name || strchr(name, '/') || name[0] == '.' || !sha ||
        strlen(sha) != 64 || strspn(sha, "0123456789abcdef") != 64)
      why = "an entry has no plain file name or no SHA-256";
  }
  if (why) {
    r->work_rc = ENG_ERR_PROTOCOL;
    snprintf(r->work_err, sizeof r->work_err, "%s", why);
    return;
  }
  pg_rmtree(r->dl_path);
  if (mkdir(r->dl_path, 0700) != 0) {
    r->work_rc = ENG_ERR_IO;
    snprintf(r->work_err, sizeof r->work_err, "cannot create %s: %s",
             r->dl_path, strerror(errno));
  }
}

static void pg_restore_dir_read_done(void *ud) {
  pg_restore_op *r = ud;
  if (r->phase != PH_CHECK) return;
  if (r->work_rc) {
    pg_restore_end(r, r->work_rc,
                   "%smanifest.json is not the manifest of a directory "
                   "backup (%s); nothing was restored", r->file, r->work_err);
    return;
  }
  pg_restore_phase(r, PH_FILES);
  size_t par = r->jobs > 4 ? 4 : (size_t)(r->jobs > 1 ? r->jobs : 2);
  r->xfer = pg_xfer_new(&r->op, par);
  size_t i;
  json_t *f;
  json_array_foreach(json_object_get(r->manifest, "files"), i, f) {
    const char *name = json_string_value(json_object_get(f, "name"));
    char *src = eng_asprintf("%s%s", r->file, name);
    char *dst = eng_asprintf("%s/%s", r->dl_path, name);
    pg_xfer_add(r->xfer, src, dst,
                json_string_value(json_object_get(f, "sha256")));
    free(src);
    free(dst);
  }
  pg_xfer_run(r->xfer, pg_restore_dir_files, r);
}

static void pg_restore_dir_manifest(void *ud, int rc) {
  pg_restore_op *r = ud;
  if (r->phase != PH_MANIFEST) return;
  if (rc != ENG_OK) {
    pg_host->log(r->op.e.call, ENG_LOG_ERROR,
                 "%smanifest.json could not be read: a directory backup is "
                 "complete only with its manifest; nothing was restored",
                 r->file);
    pg_restore_end(r, rc, NULL);
    return;
  }
  snprintf(r->man_sha, sizeof r->man_sha, "%s",
           pg_xfer_item_at(r->xfer, 0)->sha);
  pg_xfer_free(r->xfer);
  r->xfer = NULL;
  pg_restore_phase(r, PH_CHECK);
  if (pg_op_work(&r->op, pg_restore_dir_read, pg_restore_dir_read_done, r) !=
      ENG_OK)
    pg_restore_end(r, ENG_ERR_NOMEM, "could not queue reading the manifest");
}

/* PH_MANIFEST: fetch PREFIX/manifest.json. */
static void pg_restore_dir_fetch(pg_restore_op *r) {
  pg_restore_phase(r, PH_MANIFEST);
  r->dl_path = eng_asprintf("%s/restore-%s.dir", pg_host->run_dir(r->op.e.call),
                            pg_host->step_id(r->op.e.call));
  r->man_path = eng_asprintf("%s.manifest.json", r->dl_path);
  r->xfer = pg_xfer_new(&r->op, 1);
  char *src = eng_asprintf("%smanifest.json", r->file);
  pg_xfer_add(r->xfer, src, r->man_path, NULL);
  free(src);
  pg_xfer_run(r->xfer, pg_restore_dir_manifest, r);
}

/* ---- inspection --------------------------------------------------------- */

/* Without a sha256 parameter, a FILE.sha256 beside a local file (the
 * form sha256sum writes) is what the backup is checked against. */
static void pg_restore_sidecar(pg_restore_op *r) {
  char *path = eng_asprintf("%s.sha256", r->file);
  FILE *f = fopen(path, "r");
  free(path);
  if (!f) return;
  char line[512];
  if (fgets(line, sizeof line, f)) {
    size_t k = 0;
    while (k < 64 && isxdigit((unsigned char)line[k])) k++;
    if (k == 64 && (line[64] == ' ' || line[64] == '\n' || line[64] == '\0')) {
      line[64] = '\0';
      r->expect_sha = eng_xstrdup(line);
      r->insp.want_sha = 1;
      const char *base = strrchr(r->file, '/');
      snprintf(r->verified_by, sizeof r->verified_by, "%.80s.sha256",
               base ? base + 1 : r->file);
    }
  }
  fclose(f);
}

static void pg_restore_inspect(void *ud) {
  pg_restore_op *r = ud;
  if (!r->expect_sha && !r->dl_path) pg_restore_sidecar(r);
  pg_inspect_run(&r->insp);
}

static void pg_restore_inspected(void *ud) {
  pg_restore_op *r = ud;
  pg_inspect *in = &r->insp;
  if (r->phase != PH_INSPECT) return;
  if (in->err) {
    pg_restore_end(r, in->err == ENOENT ? ENG_ERR_NOTFOUND : ENG_ERR_INVALID,
                   "%s; nothing was restored", in->errmsg);
    return;
  }
  if (r->expect_sha && in->sha256[0] && strcasecmp(r->expect_sha, in->sha256) != 0) {
    pg_restore_end(r, ENG_ERR_CHECKSUM,
                   "sha256 of %s is %s but %s says %s: the backup is "
                   "corrupted or not the one meant; nothing was restored",
                   r->file, in->sha256,
                   r->verified_by[0] ? r->verified_by : "the sha256 parameter",
                   r->expect_sha);
    return;
  }
  if (r->expect_sha && in->sha256[0] && !r->verified_by[0])
    snprintf(r->verified_by, sizeof r->verified_by, "sha256 parameter");
  if (in->fmt == PG_FMT_PLAIN && in->plain_truncated) {
    pg_restore_end(r, ENG_ERR_INVALID,
                   "%s is a plain pg_dump file without its end marker ('%s'): "
                   "the backup is truncated; nothing was restored",
                   r->file, PG_PLAIN_END);
    return;
  }
  if (in->fmt == PG_FMT_PLAIN && r->jobs > 1 && r->jobs_given)
    pg_host->log(r->op.e.call, ENG_LOG_INFO,
                 "plain SQL restores run in one psql session: jobs ignored");
  pg_host->log(r->op.e.call, ENG_LOG_INFO, "%s: %s format, %lld bytes%s%s",
               r->file, pg_fmt_name(in->fmt), (long long)in->bytes,
               in->sha256[0] ? ", sha256 " : "", in->sha256);
  if (in->fmt == PG_FMT_ZSTD) { /* the host undoes zstd on the way */
    pg_restore_stream_open(r, in->path);
    return;
  }
  pg_restore_connect(r);
}

int pg_act_restore(eng_call *call, const json_t *params) {
  const char *url = pg_url_param(params, "url");
  const char *db = pg_pstr(params, "database");
  const char *sha = pg_pstr(params, "sha256");
  int rc = pg_ci_check(call, url, "url");
  if (rc != ENG_OK) return rc;
  const char *file = pg_file_param(call, params, "give the backup to restore");
  if (!file) return ENG_ERR_INVALID;
  int remote = pg_host->stream_is_remote(file);
  if (sha && *sha && strlen(sha) != 64) {
    pg_host->fail(call,
                  "parameter 'sha256' must be 64 hex digits (got %zu "
                  "characters)",
                  strlen(sha));
    return ENG_ERR_INVALID;
  }
  char *key = pg_age_key(call, params, &rc);
  if (!key && rc != ENG_OK) return rc;
  char *urldb = pg_url_dbname(url);
  if ((!db || !*db) && !urldb) {
    free(key);
    free(urldb);
    pg_host->fail(call, "no target database: set 'database' (a new name, "
                        "e.g. drill_restore) or put it in the URL");
    return ENG_ERR_INVALID;
  }
  pg_restore_op *r = eng_xcalloc(1, sizeof *r);
  pg_op_init(&r->op, call, pg_restore_destroy);
  r->op.cancel = pg_restore_cancel;
  r->file = eng_xstrdup(file);
  r->url = eng_xstrdup(url);
  r->db = eng_xstrdup(db && *db ? db : urldb);
  /* CREATE/DROP DATABASE run from another database than the target. */
  if (urldb && !strcmp(urldb, r->db))
    r->admin = pg_url_with_db(url, strcmp(r->db, "postgres") ? "postgres"
                                                             : "template1");
  else
    r->admin = eng_xstrdup(url);
  free(urldb);
  r->expect_sha = sha && *sha ? eng_xstrdup(sha) : NULL;
  r->bin_dir = eng_xstrdup(pg_pstr(params, "bin_dir"));
  r->create = pg_pbool(params, "create", 1);
  r->clean = pg_pbool(params, "clean", 0);
  /* pg_restore -j needs a seekable file: a local archive gets the cores
   * (at most 4: more rarely helps a server on the same machine); a
   * stream is restored while it downloads, unless jobs asks otherwise */
  r->jobs = (int)pg_pint(params, "jobs", remote ? 1 : pg_default_jobs());
  r->jobs_given = json_is_integer(json_object_get(params, "jobs"));
  r->no_owner = pg_pbool(params, "no_owner", 1);
  r->no_acl = pg_pbool(params, "no_acl", 1);
  r->insp.path = eng_xstrdup(file);
  r->insp.want_sha = r->expect_sha != NULL;
  r->sopts = json_incref(json_object_get(params, "stream_opts"));
  r->age_key = key;
  if (key && remote && file[strlen(file) - 1] == '/') {
    pg_restore_end(r, ENG_ERR_INVALID,
                   "%s is a directory backup: those are not encrypted "
                   "(encryption_key is for a dump in one file)", file);
    return ENG_OK;
  }
  if (key) { /* decrypted (and authenticated) whole before anything else */
    if (!remote && !r->expect_sha) pg_restore_sidecar(r); /* the ciphertext's */
    r->insp.want_sha = 0;
    pg_restore_download(r);
    return ENG_OK;
  }
  if (remote && file[strlen(file) - 1] == '/') { /* a directory backup */
    r->insp.want_sha = 0;
    if (!r->jobs_given) r->jobs = pg_default_jobs();
    pg_restore_dir_fetch(r);
    return ENG_OK;
  }
  if (remote) {
    r->insp.want_sha = 0;
    if (r->jobs > 1)
      pg_restore_download(r);
    else
      pg_restore_stream_open(r, file);
    return ENG_OK;
  }
  pg_restore_phase(r, PH_INSPECT);
  if (pg_op_work(&r->op, pg_restore_inspect, pg_restore_inspected, r) !=
      ENG_OK) {
    pg_restore_end(r, ENG_ERR_NOMEM, "could not queue the inspection of %s",
                   file);
  }
  return ENG_OK;
}
