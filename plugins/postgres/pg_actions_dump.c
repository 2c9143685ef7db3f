/*
 * pg_actions_dump.c - dump and dump_globals.
 *
 * 1. connect and read the server's identity (version, system_identifier);
 * 2. find a pg_dump (pg_dumpall) at least as new as the server (worker);
 * 3. run it with the connection as -h/-p/-U/-d and the password in
 *    PGPASSWORD; custom/plain/tar come out of its stdout into a host
 *    stream (pg_out): a local FILE.partial renamed at the end, or an
 *    upload to s3://... while pg_dump runs (no temporary file), with the
 *    SHA-256 of the stored bytes and, for compress: zstd[:LEVEL], zstd
 *    compression by the engine (pg_dump's own then off: -Z0). Nothing is
 *    visible unless pg_dump succeeded; the directory
 *    format is written by pg_dump itself into DIR.partial, then hashed
 *    (the SHA-256 of its files' bytes concatenated in byte-wise name order:
 *    `cd DIR && LC_ALL=C ls | xargs cat | sha256sum`) and renamed.
 */
#include "pg_int.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct pg_dump_op {
  pg_op op;
  int globals; /* dump_globals */
  char *url;
  char *file;
  char *partial; /* directory format: DIR.partial */
  char fmt;      /* c, d, p, t */
  int jobs;
  int compress;     /* pg_dump's --compress, -1: none given */
  char ecomp[16];   /* the engine's codec ("zstd:3", "gzip:6") or "" */
  int remote;   /* file is a stream URL (s3://...) */
  json_t *sopts; /* stream_opts */
  char *age_key; /* encryption: an age identity or recipient, or NULL */
  char psha[65]; /* SHA-256 of the age plaintext (encrypted dumps) */
  int schema_only, no_owner, no_acl, no_role_passwords, checksum_file;
  json_t *tables, *exclude;
  char *bin_dir;
  pg_sess *s;
  pg_ident id;
  pg_bin bin;
  pg_child child;
  pg_out *out;
  int64_t received;
  int64_t last_progress;
  char started[32], finished[32];
  eng_stream *side; /* a small object being written (sidecar, manifest) */
  char *side_text;
  void (*put_then)(struct pg_dump_op *d, int rc);
  pg_xfer *xfer;    /* directory to a URL: the files being uploaded */
  char **names;     /* their names, in the order they were queued */
  size_t n_names, cap_names;
  int upload_rc;    /* an upload failed while pg_dump ran (it was stopped) */
  int ino;          /* inotify: files pg_dump closed after writing */
  eng_watch *ino_watch;
  char **listed;    /* worker: the directory's files once pg_dump ended */
  size_t n_listed;
  /* directory hashing (worker) */
  char sha[65];
  int64_t bytes;
  int work_rc;
  char work_err[512];
} pg_dump_op;

static void pg_dump_destroy(pg_op *op) {
  pg_dump_op *d = (pg_dump_op *)op;
  pg_out_free(d->out);
  if (d->side) pg_host->stream_abort(d->side);
  free(d->side_text);
  pg_xfer_free(d->xfer);
  for (size_t i = 0; i < d->n_names; i++) free(d->names[i]);
  free(d->names);
  for (size_t i = 0; i < d->n_listed; i++) free(d->listed[i]);
  free(d->listed);
  if (d->ino_watch) pg_host->watch_stop(d->ino_watch);
  if (d->ino > 0) close(d->ino);
  json_decref(d->sopts);
  if (d->age_key) OPENSSL_cleanse(d->age_key, strlen(d->age_key));
  free(d->age_key);
  json_decref(d->tables);
  json_decref(d->exclude);
  free(d->url);
  free(d->file);
  free(d->partial);
  free(d->bin_dir);
  free(d);
}

static const char *pg_dump_tool(const pg_dump_op *d) {
  return d->globals ? "pg_dumpall" : "pg_dump";
}

static void pg_dump_end_ok(pg_dump_op *d) {
  pg_host->log(d->op.e.call, ENG_LOG_INFO, "%s of %s: %lld bytes, sha256 %s",
               pg_dump_tool(d), d->id.database, (long long)d->bytes, d->sha);
  pg_op_finish(&d->op, ENG_OK);
}

/* ---- small objects: the KEY.sha256 sidecar, a directory's manifest ---- */

static void pg_dump_put_done(void *ud, int rc, json_t *info) {
  pg_dump_op *d = ud;
  json_decref(info);
  d->side = NULL;
  free(d->side_text);
  d->side_text = NULL;
  d->put_then(d, rc);
}

static void pg_dump_put_written(void *ud, int rc) {
  pg_dump_op *d = ud;
  if (rc == ENG_OK)
    rc = pg_host->stream_finish(d->side, pg_dump_put_done, d);
  if (rc != ENG_OK) {
    pg_host->stream_abort(d->side);
    d->side = NULL;
    d->put_then(d, rc);
  }
}

/* Write text as the object (or file) url; then(d, rc) afterwards. */
static void pg_dump_put(pg_dump_op *d, const char *url, char *text,
                        void (*then)(pg_dump_op *d, int rc)) {
  d->side_text = text;
  d->put_then = then;
  int rc = pg_host->stream_open_write(d->op.e.call, url, d->sopts, &d->side);
  if (rc == ENG_OK)
    rc = pg_host->stream_write(d->side, d->side_text, strlen(d->side_text),
                               pg_dump_put_written, d);
  if (rc != ENG_OK) {
    if (d->side) pg_host->stream_abort(d->side);
    d->side = NULL;
    then(d, rc);
  }
}

static void pg_dump_sidecar_then(pg_dump_op *d, int rc) {
  char *url = eng_asprintf("%s.sha256", d->file);
  if (rc != ENG_OK) {
    pg_host->log(d->op.e.call, ENG_LOG_ERROR,
                 "the dump %s was stored but its checksum object %s could not "
                 "be", d->file, url);
    free(url);
    pg_op_finish(&d->op, rc);
    return;
  }
  pg_host->output(d->op.e.call, "checksum_file", json_string(url));
  free(url);
  pg_dump_end_ok(d);
}

/* FILE.sha256 in sha256sum's form: the stored bytes; for an encrypted
 * dump also the bytes `age -d` gives, named as the file without .age (or
 * with .decrypted when it has no .age). */
static char *pg_dump_sidecar_text(const pg_dump_op *d) {
  const char *base = strrchr(d->file, '/');
  base = base ? base + 1 : d->file;
  if (!d->psha[0]) return eng_asprintf("%s  %s\n", d->sha, base);
  size_t n = strlen(base);
  int age = n > 4 && !strcmp(base + n - 4, ".age");
  return eng_asprintf("%s  %s\n%s  %.*s%s\n", d->sha, base, d->psha,
                      (int)(age ? n - 4 : n), base, age ? "" : ".decrypted");
}

/* The sidecar object KEY.sha256 beside a streamed dump (checksum_file). */
static void pg_dump_sidecar(pg_dump_op *d) {
  char *url = eng_asprintf("%s.sha256", d->file);
  pg_dump_put(d, url, pg_dump_sidecar_text(d), pg_dump_sidecar_then);
  free(url);
}

static void pg_dump_outputs(pg_dump_op *d, const char *sha, int64_t bytes,
                            json_t *info) {
  /* sha NULL and bytes -1: what d already holds (a directory's) */
  if (sha && sha != d->sha) snprintf(d->sha, sizeof d->sha, "%s", sha);
  if (bytes >= 0) d->bytes = bytes;
  eng_call *call = d->op.e.call;
  const char *keys[] = {"etag", "version_id", NULL};
  for (int i = 0; info && keys[i]; i++) {
    json_t *v = json_object_get(info, keys[i]);
    if (json_is_string(v)) pg_host->output(call, keys[i], json_incref(v));
  }
  if (d->ecomp[0]) {
    json_t *plain = json_object_get(info, "plain_bytes");
    pg_host->output(call, "compression", json_string(d->ecomp));
    if (json_is_integer(plain)) pg_host->output(call, "plain_bytes",
                                                json_incref(plain));
  } else if (d->compress >= 0 && !d->globals && d->fmt != 'p' && d->fmt != 't') {
    char comp[32];
    snprintf(comp, sizeof comp, "pg_dump:%d", d->compress);
    pg_host->output(call, "compression", json_string(comp));
  } else {
    pg_host->output(call, "compression", json_string("none"));
  }
  const char *psha = json_string_value(json_object_get(info, "plaintext_sha256"));
  if (psha) {
    snprintf(d->psha, sizeof d->psha, "%s", psha);
    pg_host->output(call, "encryption", json_string("age"));
    pg_host->output(call, "plaintext_sha256", json_string(psha));
    pg_host->output(call, "plaintext_bytes",
                    json_incref(json_object_get(info, "plaintext_bytes")));
  }
  pg_host->output(call, "file", json_string(d->file));
  pg_host->output(call, "bytes", json_integer(d->bytes));
  pg_host->output(call, "sha256", json_string(d->sha));
  pg_host->output(call, "started_at", json_string(d->started));
  pg_host->output(call, "finished_at", json_string(d->finished));
  pg_host->output(call, "database", json_string(d->id.database));
  pg_host->output(call, "server_version", json_string(d->id.version));
  pg_host->output(call, "system_identifier", json_string(d->id.sysid));
  pg_host->output(call, "tool_version", json_string(d->bin.version));
  if (!d->globals) {
    const char *f = d->fmt == 'c'   ? "custom"
                    : d->fmt == 'd' ? "directory"
                    : d->fmt == 'p' ? "plain"
                                    : "tar";
    pg_host->output(call, "format", json_string(f));
  }
  if (d->checksum_file && d->remote && d->fmt != 'd') {
    pg_dump_sidecar(d); /* KEY.sha256 beside the object, then the end */
    return;
  } else if (d->checksum_file) {
    char *path = eng_asprintf("%s.sha256", d->file);
    char *text = pg_dump_sidecar_text(d);
    FILE *f = fopen(path, "w");
    int ok = f && fputs(text, f) >= 0;
    free(text);
    if (f && fclose(f) != 0) ok = 0;
    if (!ok) {
      pg_op_fail(&d->op, ENG_ERR_IO,
                 "the dump %s was written but its checksum file %s could not "
                 "be: %s; check the directory's permissions and free space",
                 d->file, path, strerror(errno));
      free(path);
      return;
    }
    pg_host->output(call, "checksum_file", json_string(path));
    free(path);
  }
  pg_dump_end_ok(d);
}

/* ---- end of the child --------------------------------------------------- */

static void pg_dump_out_done(void *ud, int rc, json_t *info) {
  pg_dump_op *d = ud;
  if (rc != ENG_OK) {
    /* the stream recorded what failed (S3's answer, the file system's
     * error): keep that message */
    json_decref(info);
    pg_host->log(d->op.e.call, ENG_LOG_ERROR,
                 "%s of %s succeeded but storing it as %s failed; nothing "
                 "was left there",
                 pg_dump_tool(d), d->id.database, d->file);
    pg_op_finish(&d->op, rc);
    return;
  }
  const char *sha = json_string_value(json_object_get(info, "sha256"));
  json_int_t bytes = json_integer_value(json_object_get(info, "bytes"));
  pg_dump_outputs(d, sha ? sha : "", (int64_t)bytes, info);
  json_decref(info);
}

static void pg_dump_dir_hash(void *ud) {
  pg_dump_op *d = ud;
  d->work_rc = pg_sha256_dir(d->partial, d->sha, &d->bytes, d->work_err,
                             sizeof d->work_err);
  if (!d->work_rc && rename(d->partial, d->file) != 0) {
    d->work_rc = errno;
    snprintf(d->work_err, sizeof d->work_err, "renaming %s to %s failed: %s",
             d->partial, d->file, strerror(errno));
  }
  if (d->work_rc) pg_rmtree(d->partial);
}

static void pg_dump_dir_hashed(void *ud) {
  pg_dump_op *d = ud;
  if (d->work_rc) {
    pg_op_fail(&d->op, ENG_ERR_IO,
               "pg_dump wrote %s but %s; check the disk and run again",
               d->partial, d->work_err);
    return;
  }
  pg_dump_outputs(d, d->sha, d->bytes, NULL);
}

static void pg_dump_rm_partial(void *ud) {
  pg_dump_op *d = ud;
  pg_rmtree(d->partial);
}

/* ---- format directory to a URL prefix ------------------------------------
 * pg_dump writes the directory into the run directory; each file is
 * uploaded as soon as pg_dump has closed it (inotify), a few at a time,
 * one object each under the prefix, and PREFIX/manifest.json (every file's
 * name, size and SHA-256) is written last: a restore reads the manifest
 * first, so an upload that did not finish is never taken for a backup. */

static int pg_cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Queue one finished file (once). */
static void pg_dump_queue(pg_dump_op *d, const char *name) {
  if (name[0] == '.') return;
  for (size_t i = 0; i < d->n_names; i++)
    if (!strcmp(d->names[i], name)) return;
  if (d->n_names == d->cap_names) {
    d->cap_names = d->cap_names ? d->cap_names * 2 : 32;
    d->names = eng_xrealloc(d->names, d->cap_names * sizeof *d->names);
  }
  d->names[d->n_names++] = eng_xstrdup(name);
  char *src = eng_asprintf("%s/%s", d->partial, name);
  char *dst = eng_asprintf("%s%s", d->file, name);
  pg_xfer_add(d->xfer, src, dst, NULL);
  free(src);
  free(dst);
}

/* Files pg_dump closed after writing them: final, uploaded now. */
static void pg_dump_ino_read(pg_dump_op *d) {
  char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
  for (;;) {
    ssize_t n = read(d->ino, buf, sizeof buf);
    if (n <= 0) return;
    for (char *p = buf; p < buf + n;) {
      struct inotify_event *ev = (struct inotify_event *)(void *)p;
      if (ev->len && !(ev->mask & IN_ISDIR)) pg_dump_queue(d, ev->name);
      p += sizeof *ev + ev->len;
    }
  }
}

static void pg_dump_ino_cb(void *ud, int events, int status) {
  (void)events;
  (void)status;
  pg_dump_ino_read(ud);
}

static void pg_dump_ino_stop(pg_dump_op *d) {
  if (d->ino_watch) pg_host->watch_stop(d->ino_watch);
  d->ino_watch = NULL;
  if (d->ino > 0) {
    pg_dump_ino_read(d); /* what came in last */
    close(d->ino);
  }
  d->ino = -1;
}

static void pg_dump_uploaded(void *ud, int rc);

/* Before pg_dump starts: watch its directory and start the uploader. */
static int pg_dump_dir_watch(pg_dump_op *d) {
  size_t par = d->jobs > 1 ? (size_t)d->jobs : 2;
  if (par > 4) par = 4;
  d->xfer = pg_xfer_new(&d->op, par);
  /* memory: each upload holds (concurrency + 1) parts; with several files
   * at once, smaller parts and fewer of them per file keep the whole under
   * about 40 MB (unless stream_opts says otherwise) */
  json_t *o = json_is_object(d->sopts) ? json_deep_copy(d->sopts) : json_object();
  if (!json_object_get(o, "part_size"))
    json_object_set_new(o, "part_size", json_integer(5 << 20));
  if (!json_object_get(o, "concurrency"))
    json_object_set_new(o, "concurrency", json_integer(par >= 3 ? 1 : 2));
  pg_xfer_write_opts(d->xfer, o);
  pg_xfer_feed(d->xfer);
  pg_xfer_run(d->xfer, pg_dump_uploaded, d);
  d->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (d->ino < 0) return 0; /* uploaded once pg_dump ended */
  if (inotify_add_watch(d->ino, d->partial, IN_CLOSE_WRITE | IN_MOVED_TO) < 0 ||
      !(d->ino_watch = pg_host->watch_start(d->op.e.call, d->ino, ENG_READABLE,
                                            pg_dump_ino_cb, d))) {
    close(d->ino);
    d->ino = -1;
  }
  return 0;
}

static void pg_dump_dir_list(void *ud) {
  pg_dump_op *d = ud;
  DIR *dir = opendir(d->partial);
  if (!dir) {
    d->work_rc = errno ? errno : EIO;
    snprintf(d->work_err, sizeof d->work_err, "cannot read %s: %s",
             d->partial, strerror(d->work_rc));
    return;
  }
  struct dirent *e;
  size_t cap = 0;
  while ((e = readdir(dir))) {
    if (e->d_name[0] == '.') continue;
    if (d->n_listed == cap) {
      cap = cap ? cap * 2 : 32;
      d->listed = eng_xrealloc(d->listed, cap * sizeof *d->listed);
    }
    d->listed[d->n_listed++] = eng_xstrdup(e->d_name);
  }
  closedir(dir);
  if (d->n_listed) qsort(d->listed, d->n_listed, sizeof *d->listed, pg_cmp_str);
}

static void pg_dump_dir_removed(void *ud) { pg_dump_outputs(ud, NULL, -1, NULL); }

static void pg_dump_manifest_then(pg_dump_op *d, int rc) {
  if (rc != ENG_OK) {
    pg_host->log(d->op.e.call, ENG_LOG_ERROR,
                 "the files of %s were uploaded but its manifest could not "
                 "be: the backup is incomplete ('engine cleanup RUN_ID' "
                 "removes its objects)", d->file);
    pg_op_work(&d->op, pg_dump_rm_partial, NULL, d);
    pg_op_finish(&d->op, rc);
    return;
  }
  char *murl = eng_asprintf("%smanifest.json", d->file);
  pg_host->output(d->op.e.call, "manifest", json_string(murl));
  pg_host->output(d->op.e.call, "files", json_integer((json_int_t)d->n_names));
  free(murl);
  if (pg_op_work(&d->op, pg_dump_rm_partial, pg_dump_dir_removed, d) != ENG_OK)
    pg_dump_outputs(d, NULL, -1, NULL);
}

static int pg_cmp_entry(const void *a, const void *b) {
  return strcmp(json_string_value(json_object_get(*(json_t *const *)a, "name")),
                json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

static void pg_dump_uploaded(void *ud, int rc) {
  pg_dump_op *d = ud;
  if (d->child.running) { /* an upload failed while pg_dump runs: stop it */
    d->upload_rc = rc;
    pg_host->proc_kill(d->child.proc, SIGTERM);
    return;
  }
  if (rc != ENG_OK) {
    pg_host->log(d->op.e.call, ENG_LOG_ERROR,
                 "uploading the files of %s failed: no manifest was written, "
                 "so nothing takes it for a backup ('engine cleanup RUN_ID' "
                 "removes what was uploaded)", d->file);
    pg_op_work(&d->op, pg_dump_rm_partial, NULL, d);
    pg_op_finish(&d->op, rc);
    return;
  }
  json_t **entries = eng_xcalloc(d->n_names + 1, sizeof *entries);
  int64_t total = 0;
  for (size_t i = 0; i < pg_xfer_count(d->xfer); i++) {
    pg_xfer_item *it = pg_xfer_item_at(d->xfer, i);
    entries[i] = json_pack("{s:s, s:I, s:s}", "name", d->names[i], "bytes",
                           (json_int_t)it->bytes, "sha256", it->sha);
    total += it->bytes;
  }
  qsort(entries, pg_xfer_count(d->xfer), sizeof *entries, pg_cmp_entry);
  json_t *files = json_array();
  for (size_t i = 0; i < pg_xfer_count(d->xfer); i++)
    json_array_append_new(files, entries[i]);
  free(entries);
  json_t *m = json_pack("{s:s, s:i, s:s, s:s, s:s, s:o}", "format", "directory",
                        "version", 1, "database", d->id.database,
                        "finished_at", d->finished, "tool_version",
                        d->bin.version, "files", files);
  char *text = json_dumps(m, JSON_INDENT(1) | JSON_SORT_KEYS);
  json_decref(m);
  char *full = eng_asprintf("%s\n", text);
  free(text);
  /* the backup's identity: the SHA-256 of its manifest (which holds every
   * file's) */
  pg_sha256_text(full, d->sha);
  d->bytes = total;
  char *murl = eng_asprintf("%smanifest.json", d->file);
  pg_dump_put(d, murl, full, pg_dump_manifest_then);
  free(murl);
}

/* pg_dump ended ok: queue whatever the watch did not see, then let the
 * uploader finish. */
static void pg_dump_dir_listed(void *ud) {
  pg_dump_op *d = ud;
  if (d->work_rc || !d->n_listed) {
    pg_op_work(&d->op, pg_dump_rm_partial, NULL, d);
    pg_op_fail(&d->op, ENG_ERR_IO, "pg_dump wrote %s but %s", d->partial,
               d->work_rc ? d->work_err : "it holds no file");
    return;
  }
  size_t before = d->n_names;
  for (size_t i = 0; i < d->n_listed; i++) pg_dump_queue(d, d->listed[i]);
  pg_host->log(d->op.e.call, ENG_LOG_INFO,
               "pg_dump ended: %zu files of the directory dump to %s, %zu "
               "already uploading as they were finished", d->n_names, d->file,
               before);
  pg_xfer_close(d->xfer);
}

static void pg_dump_exit(pg_child *c) {
  pg_dump_op *d = c->ud;
  pg_now_rfc3339(d->finished);
  if (c->status != 0 || c->sig) {
    char how[96];
    pg_child_how(c, how, sizeof how);
    int out_rc = d->upload_rc ? d->upload_rc : pg_out_failed(d->out);
    pg_out_abort(d->out);
    pg_dump_ino_stop(d);
    if (d->partial) pg_op_work(&d->op, pg_dump_rm_partial, NULL, d);
    if (out_rc && out_rc != ENG_ERR_CANCELLED) {
      /* we stopped pg_dump because storing failed: the stream recorded
       * why (S3's answer, the file system's error) */
      pg_host->log(d->op.e.call, ENG_LOG_ERROR,
                   "dump of %s stopped: storing it as %s failed; nothing was "
                   "left there",
                   d->id.database, d->file);
      pg_op_finish(&d->op, out_rc);
    } else if (d->op.e.cancelled) {
      pg_op_finish(&d->op, ENG_ERR_CANCELLED);
    } else
      pg_op_fail(&d->op, ENG_ERR_FAILED,
                 "%s of database %s on %s:%s failed (%s): %s; %s",
                 pg_dump_tool(d), d->id.database, d->id.host, d->id.port, how,
                 c->tail[0] ? c->tail : "(no error output)",
                 pg_tool_hint(c->tail, 0));
    return;
  }
  if (d->fmt == 'd' && d->remote) {
    pg_dump_ino_stop(d);
    if (pg_op_work(&d->op, pg_dump_dir_list, pg_dump_dir_listed, d) != ENG_OK)
      pg_op_fail(&d->op, ENG_ERR_NOMEM, "could not queue the listing of %s",
                 d->partial);
    return;
  }
  if (d->fmt == 'd') {
    if (pg_op_work(&d->op, pg_dump_dir_hash, pg_dump_dir_hashed, d) != ENG_OK)
      pg_op_fail(&d->op, ENG_ERR_NOMEM, "could not queue hashing of %s",
                 d->partial);
    return;
  }
  pg_out_end(d->out, pg_dump_out_done, d);
}

static void pg_dump_src_pause(void *ud, int paused) {
  pg_dump_op *d = ud;
  if (d->child.running) pg_host->proc_pause(d->child.proc, paused);
}

static void pg_dump_src_stop(void *ud) {
  pg_dump_op *d = ud;
  if (d->child.running) pg_host->proc_kill(d->child.proc, SIGTERM);
}

static void pg_dump_stdout(pg_child *c, const char *buf, size_t len) {
  pg_dump_op *d = c->ud;
  pg_out_data(d->out, buf, len);
  d->received += (int64_t)len;
  if (d->received - d->last_progress >= (1 << 22)) {
    d->last_progress = d->received;
    pg_host->progress(d->op.e.call, d->received, -1);
  }
}

/* ---- start the child ---------------------------------------------------- */

static void pg_dump_spawn(pg_dump_op *d) {
  pg_argv argv = {0}, env = {0};
  pg_argv_add(&argv, d->bin.path);
  if (d->globals) {
    pg_argv_add(&argv, "--globals-only");
    if (d->no_role_passwords) pg_argv_add(&argv, "--no-role-passwords");
  } else {
    pg_argv_addf(&argv, "--format=%c", d->fmt);
    if (d->ecomp[0] && d->fmt == 'c')
      pg_argv_add(&argv, "--compress=0"); /* the engine compresses */
    else if (d->compress >= 0)
      pg_argv_addf(&argv, "--compress=%d", d->compress);
    if (d->jobs > 1) pg_argv_addf(&argv, "--jobs=%d", d->jobs);
    if (d->schema_only) pg_argv_add(&argv, "--schema-only");
    if (d->no_owner) pg_argv_add(&argv, "--no-owner");
    if (d->no_acl) pg_argv_add(&argv, "--no-acl");
    size_t i;
    json_t *t;
    json_array_foreach(d->tables, i, t) {
      if (json_is_string(t))
        pg_argv_addf(&argv, "--table=%s", json_string_value(t));
    }
    json_array_foreach(d->exclude, i, t) {
      if (json_is_string(t))
        pg_argv_addf(&argv, "--exclude-table=%s", json_string_value(t));
    }
    if (d->fmt == 'd') pg_argv_addf(&argv, "--file=%s", d->partial);
  }
  pg_argv_add(&argv, "--no-password");
  char *err = NULL;
  /* -d takes the connection's database as a conninfo string; connect to
   * the database the identity query saw (the URL's, or libpq's default). */
  if (pg_ci_client_args(d->op.e.call, d->url, d->id.database, "-d", &argv, &env,
                        &err) != ENG_OK) {
    pg_op_fail(&d->op, ENG_ERR_INVALID,
               "bad connection string (%s); use "
               "postgresql://USER:PASSWORD@HOST:PORT/DBNAME",
               err ? err : "?");
    free(err);
    pg_argv_free(&argv);
    pg_argv_free(&env);
    return;
  }
  if (d->fmt != 'd') {
    json_t *opts = json_is_object(d->sopts) ? json_deep_copy(d->sopts)
                                            : json_object();
    if (d->ecomp[0])
      json_object_set_new(opts, "compress", json_string(d->ecomp));
    if (d->age_key) json_object_set_new(opts, "age_key", json_string(d->age_key));
    int orc = ENG_OK;
    d->out = pg_out_open(&d->op, d->file, opts, &orc);
    json_decref(opts);
    if (!d->out) {
      /* the host recorded why (path, permissions, unknown scheme) */
      pg_op_finish(&d->op, orc);
      goto out;
    }
    pg_out_source(d->out, pg_dump_src_pause, pg_dump_src_stop, d);
  }
  eng_spawn_opts o = {0};
  o.size = sizeof o;
  o.argv = (const char *const *)argv.v;
  o.env = (const char *const *)env.v;
  o.stdin_fd = ENG_STDIO_NULL;
  o.stdout_fd = d->fmt == 'd' ? ENG_STDIO_NULL : ENG_STDIO_PIPE;
  d->child.ud = d;
  d->child.on_exit = pg_dump_exit;
  d->child.on_stdout = d->fmt == 'd' ? NULL : pg_dump_stdout;
  pg_now_rfc3339(d->started);
  if (d->fmt == 'd' && d->remote) pg_dump_dir_watch(d);
  char e[512];
  int rc = pg_child_spawn(&d->child, &d->op, pg_dump_tool(d), &o, e, sizeof e);
  if (rc != ENG_OK) {
    pg_out_abort(d->out);
    pg_op_fail(&d->op, rc, "%s; check that %s is executable", e, d->bin.path);
  }
out:
  pg_argv_free(&argv);
  pg_argv_free(&env);
}

static void pg_dump_found(void *ud) {
  pg_dump_op *d = ud;
  if (d->bin.rc != ENG_OK) {
    pg_op_fail(&d->op, d->bin.rc, "%s", d->bin.err);
    return;
  }
  pg_host->log(d->op.e.call, ENG_LOG_INFO, "using %s %s (%s) for server %s",
               pg_dump_tool(d), d->bin.version, d->bin.path, d->id.version);
  pg_host->log(d->op.e.call, ENG_LOG_DEBUG, "%s candidates: %s", pg_dump_tool(d),
               d->bin.found);
  pg_dump_spawn(d);
}

static void pg_dump_find(void *ud) {
  pg_dump_op *d = ud;
  pg_bin_find(&d->bin);
}

static void pg_dump_ident_end(pg_sess *s, void *ud, int rc) {
  pg_dump_op *d = ud;
  if (rc != ENG_OK) {
    pg_op_fail(&d->op, rc, "connecting to %s for a dump failed: %s; %s",
               pg_sess_display(s), pg_sess_errmsg(s), pg_conn_hint(rc));
    return;
  }
  pg_sess_close(s);
  d->s = NULL;
  if (d->fmt == 'd' && d->remote) {
    /* written here, then uploaded file by file */
    d->partial = eng_asprintf("%s/dump-%s.dir", pg_host->run_dir(d->op.e.call),
                              pg_host->step_id(d->op.e.call));
    pg_rmtree(d->partial);
    /* created now (pg_dump accepts an empty directory) so that its files
     * can be watched from the start */
    if (mkdir(d->partial, 0700) != 0) {
      pg_op_fail(&d->op, ENG_ERR_IO, "cannot create %s: %s", d->partial,
                 strerror(errno));
      return;
    }
  } else if (d->fmt == 'd') {
    struct stat st;
    if (stat(d->file, &st) == 0) {
      pg_op_fail(&d->op, ENG_ERR_EXISTS,
                 "%s already exists; a directory-format dump needs a new "
                 "directory: choose another path or remove it",
                 d->file);
      return;
    }
    if (pg_mkdir_parent(d->file) != 0) {
      pg_op_fail(&d->op, ENG_ERR_IO,
                 "cannot create the parent directory of %s: %s", d->file,
                 strerror(errno));
      return;
    }
    d->partial = eng_asprintf("%s.partial", d->file);
    pg_rmtree(d->partial); /* a leftover of an interrupted run */
  }
  pg_bin_init(&d->bin, pg_dump_tool(d), d->id.version_num, d->bin_dir);
  if (pg_op_work(&d->op, pg_dump_find, pg_dump_found, d) != ENG_OK)
    pg_op_fail(&d->op, ENG_ERR_NOMEM, "could not queue the %s lookup",
               pg_dump_tool(d));
}

static int pg_dump_start(eng_call *call, const json_t *params, int globals) {
  const char *file =
      pg_file_param(call, params, "give the path to write the dump to");
  if (!file) return ENG_ERR_INVALID;
  int remote = pg_host->stream_is_remote(file);
  pg_dump_choice ch;
  char why[512];
  if (pg_dump_choose(params, file, globals, remote, &ch, why, sizeof why) != 0) {
    pg_host->fail(call, "%s", why);
    return ENG_ERR_INVALID;
  }
  char fmt = ch.fmt;
  int level = ch.level;
  const char *ecomp = ch.ecomp;
  int jobs = (int)pg_pint(params, "jobs", 1);
  if (jobs > 1 && fmt != 'd') {
    pg_host->fail(call,
                  "jobs: %d needs format: directory (pg_dump can only "
                  "dump in parallel into a directory)",
                  jobs);
    return ENG_ERR_INVALID;
  }
  int rc;
  char *key = globals ? NULL : pg_age_key(call, params, &rc);
  if (!key && !globals && rc != ENG_OK) return rc;
  if (key && fmt == 'd') {
    free(key);
    pg_host->fail(call, "encryption needs a dump in one file (format custom, "
                        "plain or tar), not format: directory");
    return ENG_ERR_INVALID;
  }
  char *url = pg_url_conn(call, params, "url", "database", &rc);
  if (!url) {
    free(key);
    return rc;
  }
  pg_dump_op *d = eng_xcalloc(1, sizeof *d);
  d->age_key = key;
  pg_op_init(&d->op, call, pg_dump_destroy);
  d->globals = globals;
  d->url = url;
  d->file = eng_xstrdup(file);
  for (size_t n = strlen(d->file); fmt == 'd' && !remote && n > 1 && d->file[n - 1] == '/';)
    d->file[--n] = '\0'; /* "NAME/" asked for a directory: NAME */
  d->fmt = fmt;
  d->jobs = jobs;
  d->compress = level;
  snprintf(d->ecomp, sizeof d->ecomp, "%s", ecomp);
  d->remote = remote;
  d->sopts = json_incref(json_object_get(params, "stream_opts"));
  d->schema_only = pg_pbool(params, "schema_only", 0);
  d->no_owner = pg_pbool(params, "no_owner", 0);
  d->no_acl = pg_pbool(params, "no_acl", 0);
  d->no_role_passwords = pg_pbool(params, "no_role_passwords", 0);
  d->checksum_file = pg_pbool(params, "checksum_file", 0);
  d->tables = json_incref(json_object_get(params, "tables"));
  d->exclude = json_incref(json_object_get(params, "exclude_tables"));
  d->bin_dir = eng_xstrdup(pg_pstr(params, "bin_dir"));
  d->s = pg_sess_open(&d->op, d->url);
  pg_ident_add(d->s, &d->id);
  pg_sess_run(d->s, pg_dump_ident_end, d);
  return ENG_OK;
}

int pg_act_dump(eng_call *call, const json_t *params) {
  return pg_dump_start(call, params, 0);
}

int pg_act_dump_globals(eng_call *call, const json_t *params) {
  return pg_dump_start(call, params, 1);
}
