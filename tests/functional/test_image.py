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

from harness import Suite, ROOT, wait_for
from s3server import shared

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


# ---- a fleet of containers: state and lock in S3, stop and kill ------------

BUCKET = 'engine-fleet'


def s3():
    return shared(BUCKET)


def s3_keys(prefix):
    r = s3().client().list_objects_v2(Bucket=BUCKET)
    return sorted(o['Key'] for o in r.get('Contents', []) if o['Key'].startswith(prefix))


def s3_text(key):
    return s3().client().get_object(Bucket=BUCKET, Key=key)['Body'].read().decode()


def run_ids(prefix):
    return sorted({k.split('/')[2] for k in s3_keys(prefix + '/runs/')})


def restored(prefix):
    ids = run_ids(prefix)
    if not ids:
        return False
    j = s3_text(f'{prefix}/runs/{ids[0]}/journal')
    return any(json.loads(l).get('event') == 'step.end' and json.loads(l).get('step') == 'restore'
               for l in j.splitlines() if l.strip())


def drill_container(h, name, src, prefix, *args):
    """podman run -d of the locked drill fixture, state in s3://BUCKET/prefix."""
    env = s3().env(DATABASE_URL=src)
    cmd = ['run', '-d', '--name', name, '--network', 'host',
           '-v', f'{ROOT / "tests/functional/fixtures/state"}:/rb:ro']
    for k, v in env.items():
        cmd += ['-e', f'{k}={v}']
    cmd += [IMAGE, 'run', '/rb/drill.yaml', '--state-dir', f's3://{BUCKET}/{prefix}', *args]
    r = podman(*cmd)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    return name


def exit_code(name, timeout=120):
    r = podman('wait', name, timeout=timeout)
    return int(r.stdout.strip().splitlines()[-1])


def logs(name):
    r = podman('logs', name)
    return r.stdout + r.stderr


@suite.test
def test_two_containers_one_lock_state_in_s3(h):
    src = h.source_db(f'img_lock_src_{PID}')
    db = f'img_lock_drill_{PID}'
    names = [f'engine-lock-{PID}-{i}' for i in (1, 2)]
    try:
        for n in names:
            drill_container(h, n, src, 'fleet-a', '--set', f'restore_db={db}',
                            '--set', 'pause=3s', '--lock', 'ledger')
        codes = {n: exit_code(n) for n in names}
        h.check(sorted(codes.values()) == [0, 6], {n: (c, logs(n)[-800:]) for n, c in codes.items()})
        loser = next(n for n, c in codes.items() if c == 6)
        out = logs(loser)
        h.check("another run holds the lock 'ledger'" in out and 'nothing ran' in out, out)
        ids = run_ids('fleet-a')
        h.check(len(ids) == 1, s3_keys('fleet-a'))  # the refused one wrote nothing
        h.check(ids[0] in out, out)
        h.check(not s3_keys('fleet-a/locks/'), s3_keys('fleet-a/locks/'))
        h.check(not h.db_exists(db))
        # read from the host: the run, and its audit log
        url = f's3://{BUCKET}/fleet-a'
        e = s3().env(ENGINE_SCRATCH_DIR=str(h.tmp / 'host'))
        r = h.engine('runs', '--state-dir', url, env=e)
        h.check(ids[0] in r.stdout and 'ok' in r.stdout, r.stdout + r.stderr)
        r = h.engine('audit', 'verify', f'{url}/runs/{ids[0]}', env=e)
        h.check(r.returncode == 0, r.stdout + r.stderr)
    finally:
        for n in names:
            podman('rm', '-f', '-t', '0', n)


@suite.test
def test_podman_stop_during_restore_finally_within_grace(h):
    src = h.source_db(f'img_stop_src_{PID}')
    db = f'img_stop_drill_{PID}'
    name = f'engine-stop-{PID}'
    try:
        drill_container(h, name, src, 'fleet-b', '--set', f'restore_db={db}',
                        '--set', 'pause=120s', '--lock', 'stop')
        h.check(wait_for(lambda: restored('fleet-b'), 120), logs(name))
        h.check(h.db_exists(db))
        t0 = time.time()
        podman('stop', '-t', '30', name, timeout=60)
        took = time.time() - t0
        code = exit_code(name)
        out = logs(name)
        h.check(code == 5, f'exit {code}: {out[-1500:]}')
        h.check(took < 25, f'stop took {took:.1f}s')
        h.check(not h.db_exists(db), 'finally did not drop the drill database')
        rid = run_ids('fleet-b')[0]
        rep = json.loads(s3_text(f'fleet-b/runs/{rid}/report.json'))
        h.check(rep['exit_code'] == 5 and rep['steps']['drop']['status'] == 'ok', rep['steps']['drop'])
    finally:
        podman('rm', '-f', '-t', '0', name)


@suite.test
def test_podman_kill_then_next_container_removes_leftover(h):
    src = h.source_db(f'img_kill_src_{PID}')
    db = f'img_kill_drill_{PID}'
    names = [f'engine-kill-{PID}-{i}' for i in (1, 2)]
    try:
        drill_container(h, names[0], src, 'fleet-c', '--set', f'restore_db={db}',
                        '--set', 'pause=120s', '--lock', 'kill', '--lock-ttl', '3s')
        h.check(wait_for(lambda: restored('fleet-c'), 120), logs(names[0]))
        old = run_ids('fleet-c')[0]
        podman('kill', '-s', 'KILL', names[0])
        exit_code(names[0])
        h.check(h.db_exists(db), 'SIGKILL runs no finally')
        time.sleep(3.5)  # past the dead holder's lock TTL
        drill_container(h, names[1], src, 'fleet-c', '--set', f'restore_db={db}',
                        '--set', 'pause=1ms', '--lock', 'kill', '--lock-ttl', '3s')
        code = exit_code(names[1])
        out = logs(names[1])
        h.check(code == 0, out[-2000:])
        h.check(f'taken over from run {old}' in out, out[-2000:])
        h.check(f'run {old}: removing 1 leftover' in out, out[-2000:])
        h.check(not h.db_exists(db))
        j = s3_text(f'fleet-c/runs/{old}/journal')
        h.check('"removed"' in j, j[-500:])
    finally:
        for n in names:
            podman('rm', '-f', '-t', '0', n)


# ---- the example fleet: every rendered CronJob run as its pod would -------

FLEET_DIR = ROOT / 'deploy' / 'kubernetes'


def pod_command(cj, secrets, configmaps, tmp):
    """`podman run` of a CronJob's container as its pod runs it: the image,
    args and environment exactly as rendered (Secret keys from `secrets`,
    a missing optional one left out), its user, read-only root, /tmp as
    scratch and a ConfigMap volume as a read-only directory."""
    spec = cj['spec']['jobTemplate']['spec']['template']['spec']
    c = spec['containers'][0]
    sc = spec['securityContext']
    cmd = ['run', '--rm', '--network', 'host', '--user', f'{sc["runAsUser"]}:{sc["runAsGroup"]}',
           '--read-only', '--tmpfs', '/tmp:rw,mode=1777', '-w', c['workingDir']]
    for src in c.get('envFrom', []):
        for k, v in secrets[src['secretRef']['name']].items():
            cmd += ['-e', f'{k}={v}']
    for e in c['env']:
        if 'value' in e:
            cmd += ['-e', f'{e["name"]}={e["value"]}']
            continue
        ref = e['valueFrom']['secretKeyRef']
        value = secrets.get(ref['name'], {}).get(ref['key'])
        if value is None:
            assert ref.get('optional'), f'{e["name"]}: Secret {ref["name"]} is missing'
            continue
        cmd += ['-e', f'{e["name"]}={value}']
    vols = {v['name']: v for v in spec['volumes']}
    for m in c['volumeMounts']:
        cm = vols[m['name']].get('configMap')
        if cm:
            d = tmp / cm['name']
            d.mkdir(exist_ok=True)
            for name, text in configmaps[cm['name']]['data'].items():
                (d / name).write_text(text)
            cmd += ['-v', f'{d}:{m["mountPath"]}:ro']
    return cmd + [c['image'], *c['args']]


def fleet_databases(h):
    """The example's three databases on the suite's server, the backup its
    restore-from-s3 drill restores in moto, and the Secrets of its pods."""
    urls = {}
    for name in ('ledger', 'orders', 'billing'):
        urls[name] = h.source_db(f'fleet_{name}_{PID}')
    h.pg.psql('CREATE TABLE entries(id int primary key, amount int); '
              'INSERT INTO entries SELECT g, g FROM generate_series(1, 500) g', db=f'fleet_ledger_{PID}')
    h.pg.psql('CREATE TABLE orders(id int primary key, archived bool, placed timestamptz); '
              "INSERT INTO orders SELECT g, g % 2 = 0, now() - make_interval(days => g) "
              'FROM generate_series(1, 100) g', db=f'fleet_orders_{PID}')
    dump = h.tmp / 'billing.dump'
    subprocess.run([str(pathlib.Path(h.pg.bindir) / 'pg_dump'), '-Fc', '-f', str(dump),
                    '-d', urls['billing']], check=True)
    store = shared('engine-state', 'prod-backups')
    store.client().upload_file(str(dump), 'prod-backups', 'billing/2026-12-07.dump')
    secrets = {'engine-aws': store.env(),
               'ledger-db': {'DATABASE_URL': urls['ledger']},
               'orders-db': {'DATABASE_URL': urls['orders']},
               'orders-maint': {'url': urls['orders']},
               'billing-db': {'DATABASE_URL': urls['billing']}}
    return secrets


@suite.test
def test_every_rendered_cronjob_of_the_example_runs(h):
    """deploy/kubernetes/inventory.yaml (the one docs/fleet.md shows):
    each CronJob's container, its args and environment as rendered, in
    this image against PostgreSQL and S3 (moto); every run exits 0."""
    docs_md = (ROOT / 'docs' / 'fleet.md').read_text()
    inv = (FLEET_DIR / 'inventory.yaml').read_text()
    body = inv[inv.index('databases:'):]
    h.check(body in docs_md, 'docs/fleet.md does not show deploy/kubernetes/inventory.yaml')
    r = h.engine('fleet', 'render', FLEET_DIR / 'inventory.yaml')
    h.check(r.returncode == 0, r.stderr)
    import yaml
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    cms = {d['metadata']['name']: d for d in docs if d['kind'] == 'ConfigMap'}
    cjs = [d for d in docs if d['kind'] == 'CronJob']
    h.check(len(cjs) == 3, [d['metadata']['name'] for d in cjs])
    secrets = fleet_databases(h)
    try:
        for cj in cjs:
            t0 = time.time()
            r = podman(*pod_command(cj, secrets, cms, h.tmp), timeout=300)
            name = cj['metadata']['name']
            print(f'  {name}: exit {r.returncode} in {time.time() - t0:.1f} s')
            h.check(r.returncode == 0, f'{name}: exit {r.returncode}\n{r.stdout[-3000:]}{r.stderr[-1500:]}')
        # what the runs did: the archived old orders are gone, the other rows kept
        left = h.pg.psql("SELECT count(*) FILTER (WHERE archived AND placed < now() - interval '30 days'), "
                         'count(*) FILTER (WHERE NOT archived), count(*) FROM orders',
                         db=f'fleet_orders_{PID}').strip()
        h.check(left.split('|')[:2] == ['0', '50'] and int(left.split('|')[2]) > 50, left)
        h.check(not [d for d in h.pg.databases() if d.startswith(('ledger_drill', 'restored_'))],
                h.pg.databases())
        runs = {k.split('/')[2] for k in shared().keys('engine-state', 'fleet/runs/')}
        h.check(len(runs) == 3, runs)
    finally:
        for name in ('ledger', 'orders', 'billing'):
            h.pg.psql(f'DROP DATABASE IF EXISTS "fleet_{name}_{PID}"')


if __name__ == '__main__':
    suite.main()
