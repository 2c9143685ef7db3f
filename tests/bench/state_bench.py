#!/usr/bin/env python3
"""What keeping the run state in a store costs (printed, not asserted).

Runs the same runbook with the default settings, first with a local state
directory (the baseline, measured in the same run), then with
--state-dir s3://... against moto (SigV4 checked), then with a lock in
that store too:
  - 200 quick steps (400 step boundaries, each a background write);
  - a restore drill against a PostgreSQL of the test suite's kind
    (skipped when no server can be started).
Medians of 5 runs (3 for the drill)."""
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / 'tests' / 'functional'))
ENGINE = os.environ.get('ENGINE_BIN', str(ROOT / 'build/core/engine'))

from s3server import shared  # noqa: E402


def timed(args, env, reps):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        r = subprocess.run(args, capture_output=True, text=True, env=env)
        ts.append(time.perf_counter() - t0)
        if r.returncode != 0:
            sys.exit(f'{args} failed: {r.stdout[-500:]}{r.stderr[-500:]}')
    return statistics.median(ts) * 1000


def compare(label, runbook, d, env, reps, extra=()):
    local = timed([ENGINE, 'run', '-q', str(runbook), '--state-dir', str(d / 'local'), *extra],
                  env, reps)
    s3 = timed([ENGINE, 'run', '-q', str(runbook), '--state-dir', 's3://engine-bench/state',
                *extra], env, reps)
    locked = timed([ENGINE, 'run', '-q', str(runbook), '--state-dir',
                    's3://engine-bench/locked', '--lock', 'bench', *extra], env, reps)
    print(f'{label}:')
    print(f'  local state directory (baseline): {local:9.1f} ms')
    print(f'  state in S3 (moto):               {s3:9.1f} ms  {s3 / local:5.2f}x')
    print(f'  state and lock in S3:             {locked:9.1f} ms  {locked / local:5.2f}x')


def main():
    d = pathlib.Path(tempfile.mkdtemp(prefix='engine-state-bench-'))
    srv = shared('engine-bench')
    env = dict(os.environ)
    env.update(srv.env(ENGINE_SCRATCH_DIR=str(d / 'scratch')))
    quick = d / 'quick.yaml'
    with open(quick, 'w') as f:
        f.write('version: 1\nname: bench\nsteps:\n')
        for i in range(200):
            f.write(f'  - id: s{i}\n    uses: assert\n    with: {{that: true}}\n')
    compare('200 quick steps (default settings)', quick, d, env, 5)
    try:
        from pgserver import PgServer
        pg = PgServer()
        pg.start(tempfile.mkdtemp(prefix='engine-bench-pg-'))
    except Exception as e:  # no server here: the first figure stands alone
        print(f'restore drill: skipped ({e})')
        return
    try:
        pg.psql('CREATE DATABASE bench_src')
        pg.psql('CREATE TABLE t(id int primary key, v text); INSERT INTO t SELECT g, '
                "repeat(md5(g::text), 4) FROM generate_series(1, 200000) g", db='bench_src')
        env['DATABASE_URL'] = pg.url('bench_src')
        compare('runbooks/restore-drill.yaml, 200,000 rows (default settings)',
                ROOT / 'runbooks/restore-drill.yaml', d, env, 3)
    finally:
        pg.stop()


if __name__ == '__main__':
    main()
