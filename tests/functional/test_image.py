"""The container image (scripts/image.sh, Containerfile) run with Podman:
what is inside, how it starts, and a restore drill in a container against
the suite's PostgreSQL, its audit log verified by the engine on the host.

The image is built once per run of this file by scripts/image.sh (its
cache makes a second build quick). Without a usable Podman (or not as
root, which building the image needs) these tests are skipped, loudly."""
import atexit
import json
import os
import pathlib
import subprocess
import sys
import time

from harness import Suite, ROOT

suite = Suite(__file__)
IMAGE = 'localhost/engine:latest'
PID = os.getpid()
UID = 10001


def skip(why):
    bar = '!' * 72
    print(f'{bar}\nSKIP test_image.py: {why}\n'
          f'     the container image was NOT tested\n{bar}')
    sys.exit(0)


def podman_usable(pm):
    try:
        r = pm.run('info', '--format', '{{.Host.OCIRuntime.Name}}', check=False)
    except OSError as e:
        return str(e)
    return None if r.returncode == 0 else r.stderr.strip()[-500:]


def setup():
    if os.geteuid() != 0:
        skip('building the image needs root (apt, mmdebstrap, podman)')
    t0 = time.time()
    b = subprocess.run(['bash', str(ROOT / 'scripts' / 'image.sh')], capture_output=True,
                       text=True, timeout=540)
    took = time.time() - t0
    try:
        from podman import Podman
        pm = Podman()
    except (OSError, subprocess.CalledProcessError) as e:
        skip(f'podman cannot run here: {e}')
    why = podman_usable(pm)
    if why is not None:
        skip(f'podman cannot run here: {why}')
    if b.returncode != 0:
        raise SystemExit(f'FAIL test_image.py: scripts/image.sh failed:\n{b.stdout}{b.stderr}')
    print(f'{b.stdout.strip().splitlines()[-1]} ({took:.0f} s with the build)')
    atexit.register(pm.stop)
    return pm


PM = setup()


def podman(*args, timeout=120):
    return subprocess.run(['podman', *args], env=PM.env, capture_output=True, text=True,
                          timeout=timeout)


def plugin_names(text):
    return {line.split()[0] for line in text.splitlines() if line and not line[0].isspace()}


@suite.test
def test_version_and_plugins(h):
    host = h.engine('version').stdout.split()[1]
    r = podman('run', '--rm', IMAGE, 'version')
    h.check(r.returncode == 0 and r.stdout.split()[:2] == ['engine', host], r.stdout + r.stderr)
    tagged = podman('image', 'exists', f'localhost/engine:{host}')
    h.check(tagged.returncode == 0, f'localhost/engine:{host} is not tagged')
    r = podman('run', '--rm', IMAGE, 'plugins')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    inside = plugin_names(r.stdout)
    # the same plugins as the build on the host, loaded from the image's
    # install directory (not from a build tree)
    h.check(inside == plugin_names(h.engine('plugins').stdout), inside)
    h.check({'postgres', 's3', 'docker', 'builtin'} <= inside, inside)
    h.check('/usr/lib/x86_64-linux-gnu/engine/plugins/postgres.so' in r.stdout
            or '/usr/lib/engine/plugins/postgres.so' in r.stdout, r.stdout)
    # the ready runbooks are installed and valid there
    r = podman('run', '--rm', IMAGE, 'validate', '/usr/share/engine/runbooks/restore-drill.yaml')
    h.check(r.returncode == 0, r.stdout + r.stderr)


@suite.test
def test_tini_is_pid1_and_the_engine_runs_unprivileged(h):
    h.write('rb/wait.yaml', 'version: 1\nname: wait\nsteps:\n'
            '  - id: z\n    uses: sleep\n    with: {for: 60s}\n')
    name = f'engine-img-{PID}'
    r = podman('run', '-d', '--name', name, '-v', f'{h.tmp / "rb"}:/rb:ro', IMAGE,
               'run', '/rb/wait.yaml')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    try:
        procs = {}
        for _ in range(50):
            t = podman('top', name, 'pid', 'huser', 'comm')
            procs = {int(p): (u, c) for p, u, c in
                     (line.split()[:3] for line in t.stdout.splitlines()[1:] if line.strip())}
            if any(c == 'engine' for _, c in procs.values()):
                break
            time.sleep(0.1)
        h.check(procs.get(1, ('', ''))[1] == 'tini', procs)
        eng = [u for u, c in procs.values() if c == 'engine']
        h.check(eng == [str(UID)], procs)
        cfg = json.loads(podman('inspect', '--format', '{{json .Config}}', name).stdout)
        h.check(cfg['User'] == 'engine', cfg['User'])
        # a stop reaches the engine through tini: the run ends as interrupted
        podman('stop', '-t', '20', name)
        code = podman('inspect', '--format', '{{.State.ExitCode}}', name).stdout.strip()
        h.check(code == '5', f'exit code {code}: {podman("logs", name).stdout}')
    finally:
        podman('rm', '-f', '-t', '0', name)


@suite.test
def test_pg_dump_15_and_json_log_by_default(h):
    r = podman('run', '--rm', '--entrypoint', '/usr/lib/postgresql/15/bin/pg_dump', IMAGE,
               '--version')
    h.check(r.returncode == 0 and ' 15.' in r.stdout, r.stdout + r.stderr)
    # a lua step using the installed Lua library (engine.checks)
    h.write('rb/hello.yaml', 'version: 1\nname: hello\nsteps:\n'
            '  - id: a\n    uses: lua\n    with:\n      script: |\n'
            '        local checks = require("engine.checks")\n'
            '        local ok = checks.counts_match({t = 42}, {t = 42})\n'
            '        return {x = ok and 42 or 0}\n')
    r = podman('run', '--rm', '-v', f'{h.tmp / "rb"}:/rb:ro', IMAGE, 'run', '/rb/hello.yaml')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    events = [e['event'] for e in lines]
    h.check(events[0] == 'run.start' and 'step.end' in events, events)
    start = lines[0]
    h.check(start['dir'].startswith('/var/lib/engine/state/runs/'), start)
    end = next(e for e in lines if e['event'] == 'step.end')
    h.check(end['status'] == 'ok' and end['summary'] == 'x=42', end)
    # --log-format still wins over the image's default
    r = podman('run', '--rm', '-v', f'{h.tmp / "rb"}:/rb:ro', IMAGE, 'run', '/rb/hello.yaml',
               '--log-format', 'text')
    h.check(r.returncode == 0 and not r.stdout.lstrip().startswith('{'), r.stdout)


@suite.test
def test_restore_drill_in_the_container(h):
    src = f'img_src_{PID}'
    h.pg.psql(f'DROP DATABASE IF EXISTS "{src}"')
    h.pg.psql(f'CREATE DATABASE "{src}"')
    h.pg.psql('CREATE TABLE account(id int primary key, email text); '
              "INSERT INTO account SELECT g, 'u' || g || '@x' FROM generate_series(1, 3000) g; "
              'CREATE TABLE tx(id int primary key, account int references account, amount int); '
              'INSERT INTO tx SELECT g, 1 + g % 3000, g FROM generate_series(1, 9000) g', db=src)
    before = h.pg.databases()
    state = h.tmp / 'state'
    state.mkdir()
    os.chown(state, UID, UID)
    try:
        r = podman('run', '--rm', '--network', 'host', '-v', f'{state}:/var/lib/engine/state',
                   '-e', f'DATABASE_URL={h.pg.url(src)}', IMAGE,
                   'run', '/usr/share/engine/runbooks/restore-drill.yaml',
                   '--report', '/var/lib/engine/state/drill.json', timeout=300)
        h.check(r.returncode == 0, r.stdout + r.stderr)
        rep = json.loads((state / 'drill.json').read_text())
        st = rep['steps']
        h.check(st['restored-counts']['outputs']['total'] == 12000, st['restored-counts'])
        h.check(st['restored-counts']['outputs']['tables'] == st['source-counts']['outputs']['tables'],
                st['restored-counts'])
        h.check(st['compare']['status'] == 'ok' and st['verify']['status'] == 'ok',
                (st['compare'], st['verify']))
        h.check(st['drop-drill-db']['status'] == 'ok', st['drop-drill-db'])
        h.check(h.pg.databases() == before, 'the drill left a database behind')
        runs = list((state / 'runs').iterdir())
        h.check(len(runs) == 1, runs)
        audit = runs[0] / 'audit.jsonl'
        v = h.engine('audit', 'verify', audit)
        h.check(v.returncode == 0, v.stdout + v.stderr)
        kinds = [json.loads(line)['type'] for line in audit.read_text().splitlines()]
        h.check(kinds[-1] == 'run.end', kinds[-3:])
        h.check(pathlib.Path(runs[0]).stat().st_uid == UID, 'run directory not written by engine')
    finally:
        h.pg.psql(f'DROP DATABASE IF EXISTS "{src}"')


if __name__ == '__main__':
    suite.main()
