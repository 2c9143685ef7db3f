#!/usr/bin/env python3
"""Run every tests/functional/test_*.py (one process each, with a timeout),
sharing one PostgreSQL server; print 'N passed, N failed'."""
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FILE_TIMEOUT = int(os.environ.get('ENGINE_TEST_FILE_TIMEOUT', '600'))


def main():
    files = sorted(HERE.glob('test_*.py'))
    if len(sys.argv) > 1:
        files = [f for f in files if any(a in f.name for a in sys.argv[1:])]
    pg = None
    env = dict(os.environ)
    try:
        from pgserver import PgServer
        pg = PgServer()
        pg.start(tempfile.mkdtemp(prefix='engine-pg-'))
        env['ENGINE_TEST_PG'] = json.dumps(pg.info())
    except ImportError:
        pg = None
    passed = failed = 0
    try:
        for f in files:
            t0 = time.time()
            try:
                r = subprocess.run([sys.executable, str(f)], env=env, text=True,
                                   capture_output=True, timeout=FILE_TIMEOUT,
                                   cwd=str(HERE))
                out = r.stdout + r.stderr
                code = r.returncode
            except subprocess.TimeoutExpired as e:
                out = (e.stdout or b'').decode() if isinstance(e.stdout, bytes) else (e.stdout or '')
                out += f'\nFAIL {f.name}: timed out after {FILE_TIMEOUT}s\n'
                code = 1
            p = len(re.findall(r'^PASS ', out, re.M))
            fl = len(re.findall(r'^FAIL ', out, re.M))
            if code != 0 and fl == 0:
                fl = 1
                out += f'\nFAIL {f.name}: exited with {code}\n'
            passed += p
            failed += fl
            for line in out.splitlines():
                if not re.match(r'^\d+ passed, \d+ failed', line):
                    print(line)
            print(f'-- {f.name}: {p} passed, {fl} failed ({time.time() - t0:.1f}s)')
            sys.stdout.flush()
    finally:
        if pg is not None:
            pg.stop()
    print(f'functional: {passed} passed, {failed} failed')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
