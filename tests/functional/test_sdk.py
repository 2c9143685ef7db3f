"""The installed SDK as an outside author uses it: the engine installed into
a temporary root, the example plugin (examples/plugin) built with meson and
with make through pkg-config only, then run with --plugin-path, including a
step whose timeout cancels the plugin."""
import glob
import json
import os
import pathlib
import shutil
import socket
import subprocess
import time

from harness import Suite, ROOT

suite = Suite(__file__)


def installed(h):
    """Install the engine's build into h.tmp/root; (engine, pkg-config env)."""
    engine = pathlib.Path(os.environ.get('ENGINE_BIN', ROOT / 'build/core/engine'))
    build = engine.parent.parent
    root = h.tmp / 'root'
    r = subprocess.run(['meson', 'install', '-C', str(build), '--no-rebuild',
                        '--destdir', str(root)], capture_output=True, text=True)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    pcs = glob.glob(str(root / '**/pkgconfig/engine-plugin.pc'), recursive=True)
    h.check(len(pcs) == 1, f'engine-plugin.pc installed once: {pcs}')
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.dirname(pcs[0]),
               PKG_CONFIG_SYSROOT_DIR=str(root))
    bins = glob.glob(str(root / '**/bin/engine'), recursive=True)
    h.check(len(bins) == 1, bins)
    # what an author finds next to the SDK
    for f in ('include/engine/plugin.h', 'include/engine/op.h',
              'share/man/man7/engine-plugin.7', 'share/doc/engine/plugins.md'):
        h.check(glob.glob(str(root / '**' / f), recursive=True), f'{f} not installed')
    return bins[0], env


def listener():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    s.listen(8)
    return s


@suite.test
def test_example_plugin_built_from_the_installed_sdk(h):
    engine, env = installed(h)
    src = h.tmp / 'example'
    shutil.copytree(ROOT / 'examples' / 'plugin', src)
    out = h.tmp / 'exbuild'
    r = subprocess.run(['meson', 'setup', str(out), str(src)], env=env,
                       capture_output=True, text=True)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    r = subprocess.run(['ninja', '-C', str(out)], env=env, capture_output=True, text=True)
    h.check(r.returncode == 0 and 'warning' not in r.stdout, r.stdout + r.stderr)
    r = subprocess.run(['make', '-C', str(src)], env=env, capture_output=True, text=True)
    h.check(r.returncode == 0 and (src / 'tcpcheck.so').exists(), r.stdout + r.stderr)
    e = dict(os.environ, NO_COLOR='1')
    # declarations reach `engine plugins` and validate
    r = subprocess.run([engine, '--plugin-path', str(out), 'plugins', 'tcpcheck.probe'],
                       capture_output=True, text=True, env=e)
    h.check(r.returncode == 0 and 'deadline' in r.stdout and 'port' in r.stdout,
            r.stdout + r.stderr)
    bad = h.write('bad.yaml', 'version: 1\nname: bad\nsteps:\n  - id: p\n'
                  '    uses: tcpcheck.probe\n    with: {port: 70000, host: db.local}\n')
    r = subprocess.run([engine, 'validate', str(bad), '--plugin-path', str(out)],
                       capture_output=True, text=True, env=e)
    h.check(r.returncode == 2 and ':6:18:' in r.stderr and 'from 1 to 65535' in r.stderr
            and 'is not an IP address' in r.stderr, r.stderr)
    # the runbook: a port that accepts, one that refuses, one never opened
    lst = listener()
    closed = listener()
    closed_port = closed.getsockname()[1]
    closed.close()  # nobody listens there now: connections are refused
    t0 = time.time()
    r = subprocess.run([engine, 'run', str(src / 'example.yaml'), '--plugin-path', str(out),
                        '--set', f'port={lst.getsockname()[1]}',
                        '--set', f'closed_port={closed_port}',
                        '--state-dir', str(h.tmp / 'state'),
                        '--report', str(h.tmp / 'r.json')],
                       capture_output=True, text=True, env=e, timeout=60)
    took = time.time() - t0
    lst.close()
    h.check(r.returncode == 0, r.stdout + r.stderr)
    rep = json.loads((h.tmp / 'r.json').read_text())
    steps = rep['steps']
    h.check(steps['listening']['status'] == 'ok', steps['listening'])
    h.check(steps['listening']['outputs']['attempts'] == 1, steps['listening'])
    h.check(steps['closed']['status'] == 'failed' and
            'Connection refused' in steps['closed']['error'] and
            'is the service running' in steps['closed']['error'], steps['closed'])
    # cancelled by its timeout: the plugin saw the reason and said so
    h.check(steps['stuck']['status'] == 'timed_out', steps['stuck'])
    h.check("gave up at the step's timeout" in steps['stuck']['error'] and
            'attempts' in steps['stuck']['error'], steps['stuck'])
    h.check(took < 10, f'the run took {took:.1f}s')


if __name__ == '__main__':
    suite.main()
