#!/usr/bin/env python3
"""directory_cycle.py - a large database through object storage in the
directory format, the engine against the shell. Prints figures; nothing is
asserted.

One PostgreSQL server, one moto server (SigV4 checked), one text-heavy
database of --gb gigabytes (default 2.2). Median of RUNS alternating pairs:

  * engine: one runbook, postgres.dump format directory, jobs 2, to
    s3://bench/engine/db/ (pg_dump -j2 into the run directory, one object
    per file uploaded a few at a time, manifest last), then
    postgres.restore from that prefix (files downloaded in parallel and
    checked, pg_restore -j2); the engine's peak RSS (VmHWM) is sampled
    during the run (goal < 64 MB);
  * shell: pg_dump -Fd -j2 -f DIR, every file uploaded with boto3 (4
    threads), downloaded with boto3 (4 threads), createdb, pg_restore -j2.

    python3 tests/bench/directory_cycle.py [--gb 2.2] [--runs 3]
        [--engine build/core/engine]
"""
import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / 'tests' / 'functional'))
sys.path.insert(0, str(ROOT / 'tests' / 'bench'))
from pgserver import PgServer  # noqa: E402
from s3server import S3Server  # noqa: E402
from backup_cycle import build_data, engine_run  # noqa: E402

BUCKET = 'bench'

CYCLE = """version: 1
name: bench-directory
params:
  url: { required: true }
  admin: { required: true }
  prefix: { required: true }
  database: { required: true }
steps:
  - id: dump
    uses: postgres.dump
    timeout: 2h
    with: { url: "${params.url}", file: "${params.prefix}", format: directory, jobs: 2 }
  - id: restore
    uses: postgres.restore
    timeout: 2h
    with: { url: "${params.admin}", file: "${params.prefix}", database: "${params.database}",
            jobs: 2 }
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--engine', default=str(ROOT / 'build' / 'core' / 'engine'))
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--gb', type=float, default=2.2)
    a = ap.parse_args()
    base = pathlib.Path(tempfile.mkdtemp(prefix='engine-dir-'))
    os.chmod(base, 0o755)
    srv, s3 = PgServer(), S3Server()
    try:
        srv.start(base / 'pg')
        s3.start()
        s3.make_bucket(BUCKET)
        build_data(srv, int(a.gb * 620), 0)  # about 1.6 MB of database per text MB
        size = int(srv.psql("SELECT pg_database_size('bench')").strip())
        print(f'database: {size / 1e9:.2f} GB', flush=True)
        c = s3.client()
        work = base / 'work'
        work.mkdir()
        (work / 'cycle.yaml').write_text(CYCLE)
        env = dict(os.environ, NO_COLOR='1', **s3.env())
        env['PATH'] = srv.bindir + ':' + env['PATH']
        url, admin = srv.url(db='bench'), srv.url()

        def drop(db):
            srv.psql(f'DROP DATABASE IF EXISTS "{db}"')

        def rm_prefix(prefix):
            objs = c.list_objects_v2(Bucket=BUCKET).get('Contents', [])
            for o in objs:
                if o['Key'].startswith(prefix):
                    c.delete_object(Bucket=BUCKET, Key=o['Key'])

        def rows(db):
            return srv.psql('SELECT count(*) FROM docs', db=db).strip()

        def engine_cycle(i):
            db = f'eng_{i}'
            t, hwm = engine_run(a.engine, work / 'cycle.yaml',
                                [f'url={url}', f'admin={admin}',
                                 f'prefix=s3://{BUCKET}/engine/{i}/', f'database={db}'],
                                env, work / 'state')
            n = rows(db)
            drop(db)
            rm_prefix(f'engine/{i}/')
            shutil.rmtree(work / 'state', ignore_errors=True)
            return t, n, hwm

        def shell_cycle(i):
            db = f'sh_{i}'
            d, back = work / f'sh{i}.dir', work / f'sh{i}.back'
            t0 = time.time()
            subprocess.run([f'{srv.bindir}/pg_dump', '-Fd', '-j2', '-h', '127.0.0.1', '-p',
                            str(srv.port), '-U', 'postgres', '-f', str(d), 'bench'],
                           check=True, env=env)
            names = sorted(os.listdir(d))
            with ThreadPoolExecutor(4) as ex:
                list(ex.map(lambda n: c.upload_file(str(d / n), BUCKET, f'shell/{i}/{n}'),
                            names))
            back.mkdir()
            with ThreadPoolExecutor(4) as ex:
                list(ex.map(lambda n: c.download_file(BUCKET, f'shell/{i}/{n}', str(back / n)),
                            names))
            subprocess.run([f'{srv.bindir}/createdb', '-h', '127.0.0.1', '-p', str(srv.port),
                            '-U', 'postgres', db], check=True, env=env)
            subprocess.run([f'{srv.bindir}/pg_restore', '-j2', '-h', '127.0.0.1', '-p',
                            str(srv.port), '-U', 'postgres', '-d', db, str(back)],
                           check=True, env=env)
            t = time.time() - t0
            n = rows(db)
            drop(db)
            rm_prefix(f'shell/{i}/')
            shutil.rmtree(d)
            shutil.rmtree(back)
            return t, n, 0

        et, st, hw = [], [], []
        for i in range(a.runs):
            order = (engine_cycle, shell_cycle) if i % 2 == 0 else (shell_cycle, engine_cycle)
            for fn in order:
                t, n, hwm = fn(i)
                (et if fn is engine_cycle else st).append(t)
                if fn is engine_cycle:
                    hw.append(hwm)
                print(f'run {i + 1}: {"engine" if fn is engine_cycle else "shell "} {t:7.1f} s '
                      f'(docs rows {n}){f", peak RSS {hwm:.1f} MB" if hwm else ""}', flush=True)
        me, ms = statistics.median(et), statistics.median(st)
        print(f'DIRECTORY median (format directory, jobs 2, {size / 1e9:.2f} GB): engine '
              f'{me:.1f} s, shell (pg_dump -Fd -j2 + boto3 up/down + pg_restore -j2) {ms:.1f} s, '
              f'ratio {me / ms:.3f}x', flush=True)
        print(f'RSS: engine peak (VmHWM) {max(hw):.1f} MB (goal < 64 MB): '
              f'{"met" if max(hw) < 64 else "MISSED"}', flush=True)
        return 0
    finally:
        s3.stop()
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
