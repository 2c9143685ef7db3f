#!/usr/bin/env python3
"""pg_dump_bench.py - does the engine add anything to the data path?

Builds a ~360 MB database on a throwaway server (pgbench -i -s 20, whose
rows are mostly blanks, plus a text-heavy table so compression is
realistic), then times, alternating, RUNS times each:

  * `engine run` of a one-step runbook: postgres.dump, format custom
    (pg_dump writes into a pipe; the plugin hashes with SHA-256 and writes
    the file on a worker thread);
  * bare `pg_dump -Fc -f FILE` (same format, same server).

Prints the median times, their ratio (goal <= 1.1x) and the engine's peak
RSS: VmHWM of the engine process itself, sampled from /proc (goal < 64 MB),
and GNU time's "Maximum resident set size" (the largest of the engine and
its pg_dump child).

    python3 tests/bench/pg_dump_bench.py [--scale 20] [--text-mb 60]
        [--runs 3] [--engine build/core/engine] [--keep]

Needs: a built engine with the postgres plugin, PostgreSQL server and
client programs (pgbench), /usr/bin/time. Run as root or as a normal user
(pgserver.py runs the server as `postgres` when root).
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

RUNBOOK = """version: 1
name: dump-bench
params:
  url: { required: true }
  file: { required: true }
steps:
  - id: dump
    uses: postgres.dump
    timeout: 1h
    with:
      url: ${params.url}
      file: ${params.file}
      format: custom
"""


def sh(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


def build_data(srv, scale, text_mb):
    b = srv.bindir
    srv.psql('CREATE DATABASE bench')
    t0 = time.time()
    sh([f'{b}/pgbench', '-i', '-q', '-s', str(scale), '-h', '127.0.0.1', '-p',
        str(srv.port), '-U', 'postgres', 'bench'])
    # ~1 KB of varied text per row: words picked by hash, plus hex noise
    rows = text_mb * 1024
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
ANALYZE;""", db='bench')
    # settle the freshly loaded data (hint bits, visibility map, dirty
    # buffers) so the first timed dump does not pay for it
    srv.psql('VACUUM (FREEZE, ANALYZE)', db='bench')
    srv.psql('CHECKPOINT')
    size = int(srv.psql("SELECT pg_database_size('bench')", db='bench'))
    print(f'data: pgbench scale {scale} + docs ({rows} rows): '
          f'{size / 1e6:.0f} MB in {time.time() - t0:.1f} s', flush=True)
    return size


def hwm_sampler(pid, box):
    """Sample VmHWM (peak RSS) of pid until it exits."""
    path = f'/proc/{pid}/status'
    while True:
        try:
            with open(path) as f:
                m = re.search(r'VmHWM:\s+(\d+) kB', f.read())
            if m:
                box[0] = max(box[0], int(m.group(1)))
        except OSError:
            return
        time.sleep(0.05)


def run_engine(engine, rb, url, out, state):
    cmd = ['/usr/bin/time', '-v', engine, 'run', str(rb), '--state-dir',
           str(state), '-q', '--set', f'url={url}', '--set', f'file={out}']
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=dict(os.environ, NO_COLOR='1'))
    # the engine is /usr/bin/time's child
    box = [0]
    engine_pid = None
    for _ in range(100):
        try:
            kids = open(f'/proc/{p.pid}/task/{p.pid}/children').read().split()
        except OSError:
            kids = []
        if kids:
            engine_pid = int(kids[0])
            break
        time.sleep(0.01)
    th = None
    if engine_pid:
        th = threading.Thread(target=hwm_sampler, args=(engine_pid, box))
        th.start()
    stdout, stderr = p.communicate()
    elapsed = time.time() - t0
    if th:
        th.join()
    if p.returncode != 0:
        raise RuntimeError(f'engine run failed ({p.returncode}):\n{stdout}\n{stderr}')
    m = re.search(r'Maximum resident set size \(kbytes\): (\d+)', stderr)
    return elapsed, box[0], int(m.group(1)) if m else 0


def run_bare(bindir, srv, out):
    t0 = time.time()
    sh([f'{bindir}/pg_dump', '-Fc', '-h', '127.0.0.1', '-p', str(srv.port),
        '-U', 'postgres', '-f', str(out), 'bench'])
    return time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--scale', type=int, default=20)
    ap.add_argument('--text-mb', type=int, default=60)
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--engine', default=str(ROOT / 'build' / 'core' / 'engine'))
    ap.add_argument('--keep', action='store_true')
    a = ap.parse_args()
    if not os.path.exists(a.engine):
        sys.exit(f'engine not found at {a.engine}: build it (meson compile -C build) '
                 'or pass --engine')
    base = pathlib.Path(tempfile.mkdtemp(prefix='engine-bench-'))
    os.chmod(base, 0o755)
    srv = PgServer()
    try:
        srv.start(base / 'pg')
        build_data(srv, a.scale, a.text_mb)
        work = base / 'work'
        work.mkdir()
        rb = work / 'dump.yaml'
        rb.write_text(RUNBOOK)
        url = srv.url(db='bench')
        # warm-up (not timed): page cache, binaries, plugin lookup
        run_bare(srv.bindir, srv, work / 'warm.dump')
        (work / 'warm.dump').unlink()
        eng_t, bare_t, hwm, trss = [], [], [], []
        for i in range(a.runs):
            order = ('engine', 'bare') if i % 2 == 0 else ('bare', 'engine')
            for what in order:
                if what == 'engine':
                    f = work / f'engine-{i}.dump'
                    t, h, r = run_engine(a.engine, rb, url, f, work / 'state')
                    eng_t.append(t)
                    hwm.append(h)
                    trss.append(r)
                    print(f'run {i + 1}: engine {t:6.2f} s  {f.stat().st_size / 1e6:.0f} MB  '
                          f'engine peak RSS {h / 1024:.1f} MB (time -v: {r / 1024:.1f} MB)',
                          flush=True)
                    f.unlink()
                else:
                    f = work / f'bare-{i}.dump'
                    t = run_bare(srv.bindir, srv, f)
                    bare_t.append(t)
                    print(f'run {i + 1}: pg_dump {t:6.2f} s  {f.stat().st_size / 1e6:.0f} MB',
                          flush=True)
                    f.unlink()
        me, mb = statistics.median(eng_t), statistics.median(bare_t)
        ratio = me / mb
        peak = max(hwm) / 1024
        print(f'median: engine {me:.2f} s, bare pg_dump {mb:.2f} s, ratio {ratio:.3f}x '
              f'(goal <= 1.1x): {"met" if ratio <= 1.1 else "MISSED"}')
        print(f'engine peak RSS {peak:.1f} MB (goal < 64 MB): '
              f'{"met" if peak < 64 else "MISSED"}; /usr/bin/time -v max RSS '
              f'(engine or its pg_dump child) {max(trss) / 1024:.1f} MB')
        return 0 if ratio <= 1.1 and peak < 64 else 1
    finally:
        srv.stop()
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
