#!/usr/bin/env python3
"""The migration lint on 1 MB of SQL: printed, exits 1 over a second.

One migration of 1 MB (CREATE TABLE, ALTER TABLE of every kind the rules
read, CREATE INDEX, UPDATE with string literals, comments and suppression
comments) is linted by `engine lint-migrations` (the whole command: the
parse with libpg_query, the walk, the findings as JSON); its wall time and
CPU time (user + system of the child) are printed. With squawk installed
(`npm install squawk-cli`, SQUAWK=path/to/squawk) the same file is also
timed through it, for comparison.

    python3 tests/bench/lint_bench.py

ENGINE_BIN picks the binary (default build/core/engine)."""
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
ENGINE = os.environ.get('ENGINE_BIN', str(ROOT / 'build/core/engine'))
SIZE = 1 << 20
BOUND_S = 1.0  # the promise: a 1 MB migration lints in under 1 s

UNIT = """-- batch {i}
CREATE TABLE t{i} (id bigint PRIMARY KEY, name text NOT NULL, created timestamptz DEFAULT now());
ALTER TABLE orders ADD COLUMN c{i} int DEFAULT {i};
ALTER TABLE orders ALTER COLUMN amount{i} TYPE bigint;
-- lint: allow ban-drop-column contract phase {i}
ALTER TABLE orders DROP COLUMN legacy{i};
CREATE INDEX orders_c{i}_idx ON orders (c{i});
UPDATE orders SET note = 'a literal; with -- no comment {i}' WHERE id = {i};
"""


def build(path):
    out, size, i = [], 0, 0
    while size < SIZE:
        u = UNIT.format(i=i)
        out.append(u)
        size += len(u)
        i += 1
    path.write_text(''.join(out))
    return i


def timed(argv):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return r, wall, cpu


def main():
    d = pathlib.Path(tempfile.mkdtemp(prefix='lint-bench-'))
    units = build(d / '001_big.sql')
    r, wall, cpu = timed([ENGINE, 'lint-migrations', str(d), '--format', 'json',
                          '--fail-on', 'never'])
    if r.returncode != 0:
        print(r.stderr)
        return 1
    res = json.loads(r.stdout)
    print(f'lint 1 MB ({units} batches, {len(res["findings"])} findings): '
          f'{wall:.3f} s wall, {cpu:.3f} s CPU (bound {BOUND_S:.1f} s)')
    squawk = os.environ.get('SQUAWK')
    if squawk:
        _, sw, sc = timed([squawk, str(d / '001_big.sql')])
        print(f'squawk on the same file: {sw:.3f} s wall, {sc:.3f} s CPU')
    return 0 if cpu < BOUND_S else 1


if __name__ == '__main__':
    sys.exit(main())
