#!/usr/bin/env python3
"""Core figures (printed, not asserted):
  - engine validate / plan of a generated 1,000-step runbook (goal < 100 ms)
  - per-step engine overhead on 1,000 no-op steps (goal < 1 ms per step)
  - per-item overhead of for_each: 1,000 items of the same no-op action,
    against the 1,000 steps (ratio; default max_parallel 1 first, then
    max_parallel 8 with --jobs 8, labelled)
Baseline measured in the same run: `engine version` (process start)."""
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
ENGINE = os.environ.get('ENGINE_BIN', str(ROOT / 'build/core/engine'))


def gen(path, n, chained=True):
    with open(path, 'w') as f:
        f.write('version: 1\nname: bench\nparams:\n  x: {default: "1"}\nsteps:\n')
        for i in range(n):
            f.write(f'  - id: s{i}\n    uses: assert\n    with:\n'
                    f'      that: ${{params.x == "1"}}\n')
            if not chained and i % 10 == 0:
                f.write('    needs: []\n')


def gen_items(path, n, parallel=None):
    with open(path, 'w') as f:
        f.write('version: 1\nname: bench\nparams:\n  x: {default: "1"}\nsteps:\n'
                '  - id: s\n    uses: assert\n')
        f.write(f'    for_each: [{", ".join(f"i{k}" for k in range(n))}]\n')
        if parallel:
            f.write(f'    max_parallel: {parallel}\n')
        f.write('    with:\n      that: ${params.x == "1"}\n')


def timed(args, reps=5):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        r = subprocess.run(args, capture_output=True, text=True)
        ts.append(time.perf_counter() - t0)
        if r.returncode != 0:
            sys.exit(f'{args} failed: {r.stderr[:500]}')
    return statistics.median(ts) * 1000


def main():
    d = pathlib.Path(tempfile.mkdtemp())
    big, one = d / 'big.yaml', d / 'one.yaml'
    gen(big, 1000)
    gen(one, 1)
    base = timed([ENGINE, 'version'])
    val = timed([ENGINE, 'validate', str(big)])
    plan = timed([ENGINE, 'plan', str(big), '--state-dir', str(d / 's')])
    run1 = timed([ENGINE, 'run', '-q', str(one), '--state-dir', str(d / 's')])
    run1000 = timed([ENGINE, 'run', '-q', str(big), '--state-dir', str(d / 's')])
    per_step = (run1000 - run1) / 999
    items, items8 = d / 'items.yaml', d / 'items8.yaml'
    gen_items(items, 1000)
    gen_items(items8, 1000, parallel=8)
    run_items = timed([ENGINE, 'run', '-q', str(items), '--state-dir', str(d / 's')])
    run_items8 = timed([ENGINE, 'run', '-q', '--jobs', '8', str(items8),
                        '--state-dir', str(d / 's')])
    per_item = (run_items - run1) / 999
    print(f'baseline engine version:      {base:8.1f} ms')
    print(f'validate 1,000 steps:         {val:8.1f} ms  ({val / base:.1f}x baseline; goal < 100 ms)')
    print(f'plan 1,000 steps:             {plan:8.1f} ms  ({plan / base:.1f}x baseline; goal < 100 ms)')
    print(f'run 1 no-op step:             {run1:8.1f} ms')
    print(f'run 1,000 no-op steps:        {run1000:8.1f} ms')
    print(f'per-step engine overhead:     {per_step:8.3f} ms  (goal < 1 ms)')
    print(f'run 1,000 for_each items:     {run_items:8.1f} ms  ({run_items / run1000:.2f}x '
          f'the 1,000 steps; default max_parallel 1)')
    print(f'per-item engine overhead:     {per_item:8.3f} ms')
    print(f'tuned: max_parallel 8, --jobs 8: {run_items8:5.1f} ms  ({run_items8 / run1000:.2f}x '
          f'the 1,000 steps)')


if __name__ == '__main__':
    main()
