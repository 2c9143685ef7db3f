#!/usr/bin/env python3
"""backup_cycle.py - backup -> S3 -> restore, the engine against the shell.

One run, one PostgreSQL server, one moto server (SigV4 checked), one
~250 MB text-heavy database. Prints figures; nothing is asserted.

1. Whole cycle, median of RUNS alternating pairs (goal: engine <= 0.6x),
   first with the default parameters (what a user gets: no `compress`,
   so pg_dump level 1 for the custom archive), then tuned (labelled):
   compress: zstd (pg_dump -Z0 and zstd in the engine):
   * engine: one runbook, postgres.dump to s3://... (uploaded while pg_dump
     runs) then postgres.restore from s3://... with jobs: 2 (downloaded into
     the run directory, SHA-256 checked on the way, pg_restore -j2);
   * shell, as the reference runbooks do it: pg_dump -Fc to a file,
     sha256sum, curl --aws-sigv4 -T upload (x-amz-content-sha256 header),
     curl download, sha256sum -c, createdb, pg_restore -j2.
2. Streamed dump to S3 (custom, compress 0) vs bare `pg_dump -Fc -Z0 >
   /dev/null` (goal <= 1.1x), median of RUNS alternating pairs.
3. Engine peak RSS (VmHWM sampled from /proc/PID/status) during a ~1 GB
   streamed backup to S3 (goal < 64 MB).
4. A `.sql.gz` backup with its `.sha256` file: engine (file name decides:
   plain SQL, gzip level 1 by the engine, checksum_file: true) against the
   reference runbooks' `pg_dump | gzip > F && sha256sum F > F.sha256`
   (gzip's default level 6), and against the same with `gzip -1`.

moto keeps objects in memory: every object is deleted after its run.

    python3 tests/bench/backup_cycle.py [--engine build/core/engine]
        [--runs 3] [--text-mb 220] [--big-mb 1024] [--skip-rss]
"""
import argparse
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / 'tests' / 'functional'))
from pgserver import PgServer  # noqa: E402
from s3server import S3Server  # noqa: E402

BUCKET = 'bench'

CYCLE = """version: 1
name: bench-cycle
params:
  url: { required: true }
  admin: { required: true }
  file: { required: true }
  database: { required: true }
  compress: { default: "" }
steps:
  - id: dump
    uses: postgres.dump
    timeout: 1h
    with: { url: "${params.url}", file: "${params.file}", compress: "${params.compress}" }
  - id: restore
    uses: postgres.restore
    needs: [dump]
    timeout: 1h
    with:
      url: ${params.admin}
      file: ${steps.dump.outputs.file}
      database: ${params.database}
      jobs: 2
"""

GZ = """version: 1
name: bench-gz
params:
  url: { required: true }
  file: { required: true }
steps:
  - id: dump
    uses: postgres.dump
    timeout: 1h
    with: { url: "${params.url}", file: "${params.file}", checksum_file: true }
"""

DUMP = """version: 1
name: bench-dump
params:
  url: { required: true }
  file: { required: true }
  compress: { default: "" }
steps:
  - id: dump
    uses: postgres.dump
    timeout: 1h
    with: { url: "${params.url}", file: "${params.file}", compress: "${params.compress}" }
"""

SHELL = r"""set -euo pipefail
# the reference runbooks' procedure
pg_dump -Fc -h 127.0.0.1 -p "$PGPORT" -U postgres -f "$W/db.dump" bench
( cd "$W" && sha256sum db.dump > db.dump.sha256 )
H=$(cut -d' ' -f1 "$W/db.dump.sha256")
curl -sSf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$KEY:$SECRET" \
  -H "x-amz-content-sha256: $H" -T "$W/db.dump" "$EP/$BUCKET/shell/db.dump"
rm -f "$W/db.dump"
mkdir -p "$W/dl"
curl -sSf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$KEY:$SECRET" \
  -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
  -o "$W/dl/db.dump" "$EP/$BUCKET/shell/db.dump"
cp "$W/db.dump.sha256" "$W/dl/"
( cd "$W/dl" && sha256sum -c --quiet db.dump.sha256 )
createdb -h 127.0.0.1 -p "$PGPORT" -U postgres "$DB"
pg_restore -j2 -h 127.0.0.1 -p "$PGPORT" -U postgres -d "$DB" --no-owner "$W/dl/db.dump"
rm -rf "$W/dl" "$W/db.dump.sha256"
"""


def sh(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


def build_data(srv, text_mb, big_mb):
    t0 = time.time()
    srv.psql('CREATE DATABASE bench')
    rows = text_mb * 1024
    # ~1 KB of varied text per row (words picked by hash, hex noise)
    srv.psql(f"""
CREATE TABLE docs (id int PRIMARY KEY, title text, body text, tags jsonb);
INSERT INTO docs
SELECT i, 'Document ' || i,
       (SELECT string_agg((ARRAY['backup', 'restore', 'drill', 'postgres',
               'replica', 'snapshot', 'latency', 'customer', 'invoice',
               'order', 'shipment', 'migration', 'index', 'vacuum',
               'checkpoint', 'archive'])[1 + (i * j) % 16] || ' ' ||
               substr(md5((i * 31 + j)::text), 1, 8), ' ')
        FROM generate_series(1, 60) AS j),
       jsonb_build_object('k', i % 97, 'flag', i % 2 = 0)
FROM generate_series(1, {rows}) AS i;
CREATE TABLE events (id bigint PRIMARY KEY, at timestamptz, kind text,
                     payload text);
INSERT INTO events
SELECT g, now() - g * interval '1 second', 'kind' || (g % 13),
       md5(g::text) || md5((g + 1)::text)
FROM generate_series(1, {rows * 2}) g;
CREATE INDEX ON events (at);
""", db='bench')
    srv.psql('VACUUM (FREEZE, ANALYZE)', db='bench')
    size = int(srv.psql("SELECT pg_database_size('bench')", db='bench'))
    print(f'data: bench {size / 1e6:.0f} MB', flush=True)
    if big_mb:
        srv.psql('CREATE DATABASE big')
        srv.psql(f"""
CREATE TABLE blob (id int PRIMARY KEY, body text);
ALTER TABLE blob ALTER body SET STORAGE EXTERNAL;
INSERT INTO blob SELECT g, repeat(md5(g::text), 32)
FROM generate_series(1, {big_mb * 1000}) g;""", db='big')
        srv.psql('VACUUM (FREEZE)', db='big')
        bsize = int(srv.psql("SELECT pg_database_size('big')", db='big'))
        print(f'data: big {bsize / 1e6:.0f} MB', flush=True)
    srv.psql('CHECKPOINT')
    print(f'data built in {time.time() - t0:.0f} s', flush=True)


def hwm_sampler(pid, box, stop):
    path = f'/proc/{pid}/status'
    while not stop.is_set():
        try:
            with open(path) as f:
                m = re.search(r'VmHWM:\s+(\d+) kB', f.read())
            if m:
                box[0] = max(box[0], int(m.group(1)))
        except OSError:
            return
        time.sleep(0.05)


def engine_run(engine, rb, sets, env, state):
    cmd = [engine, 'run', str(rb), '--state-dir', str(state), '-q']
    for s in sets:
        cmd += ['--set', s]
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    box, stop = [0], threading.Event()
    th = threading.Thread(target=hwm_sampler, args=(p.pid, box, stop))
    th.start()
    out, err = p.communicate()
    elapsed = time.time() - t0
    stop.set()
    th.join()
    if p.returncode != 0:
        raise RuntimeError(f'engine failed ({p.returncode}):\n{out}\n{err}')
    return elapsed, box[0] / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--engine', default=str(ROOT / 'build' / 'core' / 'engine'))
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--text-mb', type=int, default=160)
    ap.add_argument('--big-mb', type=int, default=1024)
    ap.add_argument('--skip-rss', action='store_true')
    a = ap.parse_args()
    for tool in ('curl', 'sha256sum'):
        if not shutil.which(tool):
            sys.exit(f'{tool} is needed')
    base = pathlib.Path(tempfile.mkdtemp(prefix='engine-cycle-'))
    os.chmod(base, 0o755)
    srv, s3 = PgServer(), S3Server()
    try:
        srv.start(base / 'pg')
        s3.start()
        s3.make_bucket(BUCKET)
        build_data(srv, a.text_mb, 0 if a.skip_rss else a.big_mb)
        c = s3.client()
        work = base / 'work'
        work.mkdir()
        state = work / 'state'
        (work / 'cycle.yaml').write_text(CYCLE)
        (work / 'dump.yaml').write_text(DUMP)
        (work / 'shell.sh').write_text(SHELL)
        env = dict(os.environ, NO_COLOR='1', **s3.env())
        env['PATH'] = srv.bindir + ':' + env['PATH']
        url, admin = srv.url(db='bench'), srv.url()

        def drop(db):
            srv.psql(f'DROP DATABASE IF EXISTS "{db}"')

        def rm(key):
            c.delete_object(Bucket=BUCKET, Key=key)

        comp = ''  # the default parameters first

        def engine_cycle(i):
            db = f'eng_{i}'
            t, _ = engine_run(a.engine, work / 'cycle.yaml',
                              [f'url={url}', f'admin={admin}',
                               f'file=s3://{BUCKET}/engine/db.dump',
                               f'database={db}', f'compress={comp}'],
                              env, state)
            n = srv.psql('SELECT count(*) FROM docs', db=db).strip()
            drop(db)
            rm('engine/db.dump')
            return t, n

        def shell_cycle(i):
            db = f'sh_{i}'
            e = dict(env, W=str(work), PGPORT=str(srv.port), KEY=s3.key,
                     SECRET=s3.secret, EP=s3.endpoint, BUCKET=BUCKET, DB=db)
            t0 = time.time()
            subprocess.run(['bash', str(work / 'shell.sh')], check=True, env=e,
                           capture_output=True, text=True)
            t = time.time() - t0
            n = srv.psql('SELECT count(*) FROM docs', db=db).strip()
            drop(db)
            rm('shell/db.dump')
            return t, n

        def cycle(label):
            # warm-up (not timed)
            engine_cycle('w')
            shell_cycle('w')
            et, st = [], []
            for i in range(a.runs):
                order = (engine_cycle, shell_cycle) if i % 2 == 0 else (shell_cycle, engine_cycle)
                for fn in order:
                    t, n = fn(i)
                    (et if fn is engine_cycle else st).append(t)
                    print(f'cycle run {i + 1} ({label}): '
                          f'{"engine" if fn is engine_cycle else "shell "} '
                          f'{t:6.2f} s (docs rows {n})', flush=True)
            me, ms = statistics.median(et), statistics.median(st)
            print(f'CYCLE median ({label}): engine {me:.2f} s, shell {ms:.2f} s, ratio '
                  f'{me / ms:.3f}x (goal <= 0.6x): {"met" if me / ms <= 0.6 else "MISSED"}',
                  flush=True)

        cycle('default parameters')
        comp = 'zstd'
        cycle('tuned: compress zstd')

        # 2. streamed dump vs bare pg_dump -Z0 > /dev/null, and vs the same
        #    stream uploaded by the AWS SDK (boto3 multipart from the pipe):
        #    the upload's own cost, without the engine
        dt, bt, kt = [], [], []

        def dump_argv():
            return [f'{srv.bindir}/pg_dump', '-Fc', '-Z0', '-h', '127.0.0.1', '-p',
                    str(srv.port), '-U', 'postgres', 'bench']

        def sdk_upload():
            from boto3.s3.transfer import TransferConfig
            cfg = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20,
                                 max_concurrency=4)
            t0 = time.time()
            p = subprocess.Popen(dump_argv(), stdout=subprocess.PIPE)
            c.upload_fileobj(p.stdout, BUCKET, 'sdk/db.dump', Config=cfg)
            p.wait()
            t = time.time() - t0
            rm('sdk/db.dump')
            return t

        for i in range(a.runs):
            kt.append(sdk_upload())
            print(f'dump run {i + 1}: sdk    {kt[-1]:6.2f} s', flush=True)
            for what in (('engine', 'bare') if i % 2 == 0 else ('bare', 'engine')):
                if what == 'engine':
                    t, _ = engine_run(a.engine, work / 'dump.yaml',
                                      [f'url={url}', f'file=s3://{BUCKET}/z0/db.dump',
                                       'compress=0'], env, state)
                    rm('z0/db.dump')
                    dt.append(t)
                else:
                    t0 = time.time()
                    with open(os.devnull, 'wb') as null:
                        subprocess.run(dump_argv(), stdout=null, check=True)
                    bt.append(time.time() - t0)
                print(f'dump run {i + 1}: {what:6} {(dt if what == "engine" else bt)[-1]:6.2f} s',
                      flush=True)
        md, mb = statistics.median(dt), statistics.median(bt)
        mk = statistics.median(kt)
        print(f'DUMP median: engine to S3 {md:.2f} s, pg_dump -Z0 > /dev/null {mb:.2f} s, '
              f'ratio {md / mb:.3f}x (goal <= 1.1x): {"met" if md / mb <= 1.1 else "MISSED"}',
              flush=True)
        print(f'DUMP median: engine to S3 {md:.2f} s, same stream uploaded by boto3 '
              f'{mk:.2f} s, ratio {md / mk:.3f}x (the upload itself: what the S3 '
              f'server costs whoever streams to it)', flush=True)

        # 4. a .sql.gz backup with its .sha256 file
        (work / 'gz.yaml').write_text(GZ)
        gt, st6, st1 = [], [], []
        sizes = {}

        def shell_gz(level):
            f = work / f'shell-{level}.sql.gz'
            t0 = time.time()
            subprocess.run(f'pg_dump -h 127.0.0.1 -p {srv.port} -U postgres bench | '
                           f'gzip {level} > {f} && sha256sum {f} > {f}.sha256',
                           shell=True, check=True, env=env)
            t = time.time() - t0
            sizes[f'shell gzip {level}'] = f.stat().st_size
            f.unlink()
            return t

        for i in range(a.runs):
            for what in (('engine', '-6', '-1') if i % 2 == 0 else ('-1', '-6', 'engine')):
                if what == 'engine':
                    f = work / 'engine.sql.gz'
                    t, _ = engine_run(a.engine, work / 'gz.yaml', [f'url={url}', f'file={f}'],
                                      env, state)
                    sizes['engine gzip:1'] = f.stat().st_size
                    f.unlink()
                    gt.append(t)
                else:
                    (st6 if what == '-6' else st1).append(shell_gz(what))
        mg, m6, m1 = (statistics.median(x) for x in (gt, st6, st1))
        print(f'SQL.GZ median: engine {mg:.2f} s ({sizes["engine gzip:1"] / 1e6:.0f} MB), '
              f'pg_dump | gzip && sha256sum {m6:.2f} s '
              f'({sizes["shell gzip -6"] / 1e6:.0f} MB), ratio {mg / m6:.3f}x; '
              f'with gzip -1 {m1:.2f} s ({sizes["shell gzip -1"] / 1e6:.0f} MB), '
              f'ratio {mg / m1:.3f}x', flush=True)

        # 3. peak RSS during a ~1 GB streamed backup
        if not a.skip_rss:
            t, hwm = engine_run(a.engine, work / 'dump.yaml',
                                [f'url={srv.url(db="big")}',
                                 f'file=s3://{BUCKET}/big/db.dump', 'compress=0'],
                                env, state)
            size = c.head_object(Bucket=BUCKET, Key='big/db.dump')['ContentLength']
            rm('big/db.dump')
            print(f'RSS: streamed {size / 1e6:.0f} MB to S3 in {t:.1f} s; engine peak '
                  f'RSS (VmHWM) {hwm:.1f} MB (goal < 64 MB): '
                  f'{"met" if hwm < 64 else "MISSED"}', flush=True)
        return 0
    finally:
        s3.stop()
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
