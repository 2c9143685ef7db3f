"""Functional test harness: runs the real `engine` binary on fixture
runbooks, one subprocess per engine invocation, with a timeout.

    from harness import Suite
    suite = Suite(__file__)

    @suite.test
    def test_something(h):
        r = h.engine('run', str(h.fixture('core/ok.yaml')))
        h.check(r.returncode == 0, r.stdout + r.stderr)

    if __name__ == '__main__':
        suite.main()

h.engine(*args, env=None, cwd=None, timeout=120) -> CompletedProcess (text)
h.tmp        fresh temporary directory (pathlib.Path) for this test
h.pg         the PostgreSQL server shared by the whole suite (lazy)
h.write(name, text) -> Path in h.tmp
h.check(cond, msg)   raises AssertionError(msg) when cond is false
h.fixture(rel)       path under tests/functional/fixtures
h.report(path)       parsed JSON report
h.source_db(name, rows=3000) -> URL of a fresh database with table t(id, v)
h.db_exists(name)    whether the suite's server has that database
wait_for(pred, timeout=60) -> whether pred() became true in time
"""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def wait_for(pred, timeout=60, every=0.1):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(every)
    return False


def tmpfs(h, size='1m'):
    """A tmpfs of `size` mounted at h.tmp/small (a full disk on demand):
    (its path, None), or (None, why) when mounting is not possible here."""
    d = h.tmp / 'small'
    d.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(d)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None, 'cannot mount a tmpfs here: ' + r.stderr.strip()
    return d, None


def umount(d):
    subprocess.run(['umount', '-l', str(d)], capture_output=True)


def engine_bin():
    b = os.environ.get('ENGINE_BIN')
    if b:
        return b
    for cand in ('build/core/engine', 'build-asan/core/engine'):
        p = ROOT / cand
        if p.exists():
            return str(p)
    raise RuntimeError('engine binary not found: build it or set ENGINE_BIN')


class SharedPg:
    """The suite's PostgreSQL: started by run.py (ENGINE_TEST_PG) or here."""
    _server = None

    @classmethod
    def get(cls):
        if cls._server is None:
            from pgserver import PgServer  # noqa: E402
            info = os.environ.get('ENGINE_TEST_PG')
            if info:
                cls._server = PgServer.attach(json.loads(info))
            else:
                base = tempfile.mkdtemp(prefix='engine-pg-')
                srv = PgServer()
                srv.start(base)
                cls._server = srv
                cls._owned = True
        return cls._server

    @classmethod
    def stop(cls):
        if cls._server is not None and getattr(cls, '_owned', False):
            cls._server.stop()
        cls._server = None


class H:
    def __init__(self, name):
        self.name = name
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix='engine-ft-'))
        os.chmod(self.tmp, 0o755)

    @property
    def pg(self):
        return SharedPg.get()

    def engine(self, *args, env=None, cwd=None, timeout=120, input=None):
        e = dict(os.environ)
        e.setdefault('NO_COLOR', '1')
        if env:
            e.update(env)
        return subprocess.run([engine_bin(), *[str(a) for a in args]],
                              cwd=str(cwd or self.tmp), env=e, text=True,
                              capture_output=True, timeout=timeout,
                              input=input)

    def popen(self, *args, env=None, cwd=None):
        e = dict(os.environ)
        e.setdefault('NO_COLOR', '1')
        if env:
            e.update(env)
        return subprocess.Popen([engine_bin(), *[str(a) for a in args]],
                                cwd=str(cwd or self.tmp), env=e, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def source_db(self, name, rows=3000):
        """A fresh database `name` on the suite's server with table t(id, v)
        of `rows` rows; its URL."""
        self.pg.psql(f'DROP DATABASE IF EXISTS "{name}"')
        self.pg.psql(f'CREATE DATABASE "{name}"')
        self.pg.psql('CREATE TABLE t(id int primary key, v text); '
                     f"INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {rows}) g",
                     db=name)
        return self.pg.url(name)

    def db_exists(self, name):
        return self.pg.psql(
            f"SELECT count(*) FROM pg_database WHERE datname = '{name}'").strip() == '1'

    def write(self, name, text):
        p = self.tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p

    def fixture(self, rel):
        return HERE / 'fixtures' / rel

    def report(self, path):
        return json.loads(pathlib.Path(path).read_text())

    def check(self, cond, msg='check failed'):
        if not cond:
            raise AssertionError(msg)

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)


class Suite:
    def __init__(self, file):
        self.file = pathlib.Path(file).name
        self.tests = []

    def test(self, fn):
        self.tests.append(fn)
        return fn

    def main(self):
        only = sys.argv[1:]
        passed = failed = 0
        for fn in self.tests:
            if only and fn.__name__ not in only:
                continue
            h = H(fn.__name__)
            t0 = time.time()
            try:
                fn(h)
            except Exception:  # a failing test, whatever raised
                failed += 1
                print(f'FAIL {self.file}::{fn.__name__} ({time.time() - t0:.1f}s)')
                print('     ' + traceback.format_exc().replace('\n', '\n     '))
            else:
                passed += 1
                print(f'PASS {self.file}::{fn.__name__} ({time.time() - t0:.1f}s)')
            finally:
                h.cleanup()
            sys.stdout.flush()
        SharedPg.stop()
        print(f'{passed} passed, {failed} failed')
        sys.exit(1 if failed else 0)
