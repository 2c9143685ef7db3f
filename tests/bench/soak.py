#!/usr/bin/env python3
"""soak.py - the engine over many drills: no growth of open files or memory.

Against a sandbox PostgreSQL server of its own:

1. DRILLS consecutive restore drills (tests/functional/fixtures/recovery/
   drill.yaml: dump, restore, row counts, drop), one engine process each,
   every run must succeed; the engine's open file descriptors and RSS are
   sampled from /proc while it runs. Each run's peak is kept.
2. One long run: a runbook of ITERATIONS x (dump, restore, check, drop)
   as steps, in one engine process, sampled the same way over its life.

Prints first / last / max of the figures and exits 1 when they grow: the
peak fd count of the last tenth above the first tenth's, or RSS of the
last tenth more than 25 % (+ 4 MiB) above the first tenth's.

    python3 tests/bench/soak.py [--engine build/core/engine]
        [--drills 200] [--iterations 200]
"""
import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / 'tests' / 'functional'))
from pgserver import PgServer  # noqa: E402

DRILL = ROOT / 'tests' / 'functional' / 'fixtures' / 'recovery' / 'drill.yaml'

ITERATION = """  - id: dump{i}
    uses: postgres.dump
    with: {{url: "${{params.url}}", file: "${{run.dir}}/b{i}.dump"}}
  - id: restore{i}
    uses: postgres.restore
    with: {{url: "${{params.url}}", file: "${{steps.dump{i}.outputs.file}}",
           sha256: "${{steps.dump{i}.outputs.sha256}}", database: soak_long_{i}}}
  - id: check{i}
    uses: postgres.row_counts
    with: {{url: "${{steps.restore{i}.outputs.url}}"}}
    check: return outputs.total == 5000, "rows missing"
  - id: drop{i}
    uses: postgres.drop_database
    with: {{url: "${{params.url}}", database: soak_long_{i}, force: true}}
  - id: rm{i}
    uses: shell
    with: {{command: "rm -f $ENGINE_RUN_DIR/b{i}.dump"}}
"""


class Sampler(threading.Thread):
    """Samples /proc/PID: open fds and VmRSS (KiB), every `every` s."""

    def __init__(self, pid, every=0.02):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples = []  # (t, fds, rss_kib)
        self.stop = False

    def run(self):
        t0 = time.time()
        while not self.stop:
            try:
                fds = len(os.listdir(f'/proc/{self.pid}/fd'))
                rss = 0
                with open(f'/proc/{self.pid}/status') as f:
                    for line in f:
                        if line.startswith('VmRSS:'):
                            rss = int(line.split()[1])
                self.samples.append((time.time() - t0, fds, rss))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                break
            time.sleep(self.every)


def run_sampled(argv, env):
    p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    s = Sampler(p.pid)
    s.start()
    out, _ = p.communicate()
    s.stop = True
    s.join()
    return p.returncode, out, s.samples


def tenth(xs, last=False):
    k = max(1, len(xs) // 10)
    return xs[-k:] if last else xs[:k]


def judge(name, fds, rss):
    """fds, rss: one figure per drill (or per sample); False on growth."""
    f0, f1 = max(tenth(fds)), max(tenth(fds, True))
    r0, r1 = statistics.median(tenth(rss)), statistics.median(tenth(rss, True))
    print(f'{name}: fds first {fds[0]} last {fds[-1]} max {max(fds)} '
          f'(first tenth max {f0}, last tenth max {f1}); '
          f'RSS KiB first {rss[0]} last {rss[-1]} max {max(rss)} '
          f'(first tenth median {r0:.0f}, last tenth median {r1:.0f})')
    ok = f1 <= f0 and r1 <= r0 * 1.25 + 4096
    if not ok:
        print(f'{name}: GROWTH')
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--engine', default=str(ROOT / 'build' / 'core' / 'engine'))
    ap.add_argument('--drills', type=int, default=200)
    ap.add_argument('--iterations', type=int, default=200)
    a = ap.parse_args()
    engine = str(pathlib.Path(a.engine).resolve())
    base = tempfile.mkdtemp(prefix='engine-soak-')
    os.chmod(base, 0o755)  # the server runs as postgres when we are root
    pg = PgServer().start(os.path.join(base, 'pg'))
    ok = True
    try:
        pg.psql('CREATE DATABASE soak_src')
        pg.psql('CREATE TABLE t(id int primary key, v text); '
                "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g",
                db='soak_src')
        env = dict(os.environ, NO_COLOR='1', DATABASE_URL=pg.url('soak_src'))
        state = os.path.join(base, 'state')

        # 1. consecutive drills, one process each
        fds, rss = [], []
        t0 = time.time()
        for i in range(a.drills):
            rc, out, samples = run_sampled(
                [engine, 'run', str(DRILL), '--state-dir', state, '-q',
                 '--set', 'restore_db=soak_drill', '--set', 'pause=1ms'], env)
            if rc != 0 or not samples:
                print(f'drill {i + 1} failed (exit {rc}):\n{out[-3000:]}')
                return 1
            fds.append(max(s[1] for s in samples))
            rss.append(max(s[2] for s in samples))
        print(f'{a.drills} drills in {time.time() - t0:.0f} s, all ok')
        ok &= judge('drills (peak per run)', fds, rss)

        # 2. one long run of many steps
        text = ('version: 1\nname: soak-long\nparams:\n'
                '  url: {env: DATABASE_URL, secret: true, required: true}\nsteps:\n' +
                ''.join(ITERATION.format(i=i) for i in range(a.iterations)))
        rb = os.path.join(base, 'long.yaml')
        with open(rb, 'w') as f:
            f.write(text)
        t0 = time.time()
        rc, out, samples = run_sampled([engine, 'run', rb, '--state-dir', state, '-q'], env)
        if rc != 0:
            print(f'the long run failed (exit {rc}):\n{out[-3000:]}')
            return 1
        print(f'one run of {a.iterations * 5} steps in {time.time() - t0:.0f} s, '
              f'{len(samples)} samples')
        # the first second is start-up (plan, Lua compile): judge after it
        steady = [s for s in samples if s[0] >= 1.0] or samples
        ok &= judge('long run (samples)', [s[1] for s in steady], [s[2] for s in steady])
    finally:
        pg.stop()
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
