#!/usr/bin/env python3
"""encrypted_cycle.py - backup -> S3 -> restore, encrypted with age or not.

One run, one PostgreSQL server, one moto server, the bench database of
backup_cycle.py (~250 MB, text-heavy). Each cycle is one engine run:
postgres.dump to s3://... then postgres.restore from it into a new
database; the encrypted one gives both steps `encryption_key_file` (an
age identity made by age-keygen). Medians of RUNS alternating pairs
after a warm-up pair, goal: encrypted <= 1.15x unencrypted.

1. the default parameters (what a user gets): no `compress` (pg_dump's
   level 1 in the custom archive), jobs 1 (the default for an S3 URL: an
   unencrypted backup is restored while it downloads; an encrypted one is decrypted and
   authenticated into the run directory first, then restored);
2. tuned (labelled): compress: zstd and jobs: 2 (both download first and
   run pg_restore -j2).

Prints figures and the ratio; asserts only that every restore has all
the rows. moto keeps objects in memory: every object is deleted after
its run.

    python3 tests/bench/encrypted_cycle.py [--engine build/core/engine]
        [--runs 3] [--text-mb 160]
"""
import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / 'tests' / 'functional'))
sys.path.insert(0, str(HERE))
from backup_cycle import build_data, engine_run  # noqa: E402
from pgserver import PgServer  # noqa: E402
from s3server import S3Server  # noqa: E402

BUCKET = 'bench'

CYCLE = """version: 1
name: bench-encrypted-cycle
params:
  url: { required: true }
  admin: { required: true }
  file: { required: true }
  database: { required: true }
  compress: { default: "" }
  jobs: { type: int, default: 1 }
  keyfile: { default: "" }
steps:
  - id: dump
    uses: postgres.dump
    timeout: 1h
    with:
      url: ${params.url}
      file: ${params.file}
      compress: ${params.compress}
      encryption_key_file: ${params.keyfile}
  - id: restore
    uses: postgres.restore
    needs: [dump]
    timeout: 1h
    with:
      url: ${params.admin}
      file: ${steps.dump.outputs.file}
      database: ${params.database}
      jobs: ${params.jobs}
      encryption_key_file: ${params.keyfile}
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--engine', default=str(ROOT / 'build' / 'core' / 'engine'))
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--text-mb', type=int, default=160)
    a = ap.parse_args()
    if not shutil.which('age-keygen'):
        sys.exit('age-keygen is needed (apt-get install age)')
    base = pathlib.Path(tempfile.mkdtemp(prefix='engine-enc-cycle-'))
    os.chmod(base, 0o755)
    srv, s3 = PgServer(), S3Server()
    try:
        srv.start(base / 'pg')
        s3.start()
        s3.make_bucket(BUCKET)
        build_data(srv, a.text_mb, 0)
        c = s3.client()
        work = base / 'work'
        work.mkdir()
        state = work / 'state'
        rb = work / 'cycle.yaml'
        rb.write_text(CYCLE)
        keyfile = work / 'backup.key'
        subprocess.run(['age-keygen', '-o', str(keyfile)], check=True, capture_output=True)
        env = dict(os.environ, NO_COLOR='1', **s3.env())
        env['PATH'] = srv.bindir + ':' + env['PATH']
        url, admin = srv.url(db='bench'), srv.url()
        want = srv.psql('SELECT count(*) FROM docs', db='bench').strip()
        sizes = {}

        def one(encrypted, i, comp, jobs):
            db = f'{"enc" if encrypted else "plain"}_{i}'
            key = f'{"enc" if encrypted else "plain"}/db.dump' + ('.age' if encrypted else '')
            t, _ = engine_run(a.engine, rb,
                              [f'url={url}', f'admin={admin}', f'file=s3://{BUCKET}/{key}',
                               f'database={db}', f'compress={comp}', f'jobs={jobs}',
                               f'keyfile={keyfile if encrypted else ""}'], env, state)
            n = srv.psql('SELECT count(*) FROM docs', db=db).strip()
            if n != want:
                raise RuntimeError(f'{db}: {n} rows restored, {want} expected')
            sizes[encrypted] = c.head_object(Bucket=BUCKET, Key=key)['ContentLength']
            srv.psql(f'DROP DATABASE "{db}"')
            c.delete_object(Bucket=BUCKET, Key=key)
            return t

        def cycle(label, comp, jobs):
            one(False, 'w', comp, jobs)  # warm-up (not timed)
            one(True, 'w', comp, jobs)
            times = {False: [], True: []}
            for i in range(a.runs):
                for enc in ((False, True) if i % 2 == 0 else (True, False)):
                    times[enc].append(one(enc, i, comp, jobs))
                    print(f'cycle run {i + 1} ({label}): '
                          f'{"encrypted  " if enc else "unencrypted"} {times[enc][-1]:6.2f} s',
                          flush=True)
            mu, me = statistics.median(times[False]), statistics.median(times[True])
            print(f'CYCLE median ({label}): unencrypted {mu:.2f} s '
                  f'({sizes[False] / 1e6:.0f} MB), encrypted {me:.2f} s '
                  f'({sizes[True] / 1e6:.0f} MB), ratio {me / mu:.3f}x (goal <= 1.15x): '
                  f'{"met" if me / mu <= 1.15 else "MISSED"}', flush=True)

        cycle('default parameters', '', 1)  # jobs 1: what an S3 URL gets
        cycle('tuned: compress zstd, jobs 2', 'zstd', 2)
        return 0
    finally:
        s3.stop()
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
