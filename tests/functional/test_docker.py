"""The docker plugin against a real engine: Podman's Docker-compatible
service on a Unix socket (started once for this file), with a busybox
image imported from the host. What the plugin reports is cross-checked
with the podman CLI against the same engine."""
import glob
import json
import os
import signal
import socket
import subprocess
import threading
import time

from harness import Suite
from podman import Podman

suite = Suite(__file__)
PM = Podman(service=True)
PID = os.getpid()


def env(extra=None):
    e = {'DOCKER_HOST': PM.env['DOCKER_HOST'], 'CONTAINERS_CONF': PM.env['CONTAINERS_CONF']}
    e.update(extra or {})
    return e


def run(h, text, *args, name='rb.yaml', extra_env=None):
    f = h.write(name, text)
    rep = h.tmp / (name + '.json')
    r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--report', rep, *args,
                 env=env(extra_env))
    return r, (json.loads(rep.read_text()) if rep.exists() else None)


def fixture():
    """A compose-labelled container whose volume holds a cluster's files, an
    empty volume and a missing one."""
    vol, empty = f'dkdata_{PID}', f'dkempty_{PID}'
    name = f'shop-db-{PID}'
    PM.run('rm', '-f', '-t', '0', name, check=False)
    for v in (vol, empty):
        PM.run('volume', 'rm', '-f', v, check=False)
        PM.run('volume', 'create', v)
    PM.run('run', '-d', '--name', name, '--network', 'none',
           '--label', f'com.docker.compose.project=shop{PID}',
           '--label', 'com.docker.compose.service=db', '-e', 'POSTGRES_PASSWORD=s3cret-pw',
           '-v', f'{vol}:/var/lib/postgresql/data', PM.image, 'sh', '-c',
           'cd /var/lib/postgresql/data && echo 15 > PG_VERSION && mkdir -p base global pg_wal '
           '&& sleep 3600')
    time.sleep(0.3)
    return name, vol, empty


@suite.test
def test_find_inspect_and_check_volumes(h):
    name, vol, empty = fixture()
    r, rep = run(h, f'''version: 1
name: dk
steps:
  - id: list
    uses: docker.containers
    with: {{compose_project: shop{PID}, compose_service: db}}
  - id: insp
    uses: docker.inspect
    with: {{container: "compose:shop{PID}/db"}}
  - id: vols
    uses: docker.volumes
    with: {{match: "/^dk(data|empty)_{PID}$/"}}
  - id: cluster
    uses: docker.volume_check
    with: {{volume: {vol}, expect: postgres_cluster}}
  - id: empty
    uses: docker.volume_check
    with: {{volume: {empty}, image: "{PM.image}"}}
  - id: missing
    uses: docker.volume_check
    with: {{volume: nosuch_{PID}}}
''')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    s = rep['steps']
    h.check(s['list']['outputs']['count'] == 1 and
            s['list']['outputs']['containers'][0]['name'] == name, s['list'])
    o = s['insp']['outputs']
    cli = json.loads(PM.run('inspect', name).stdout)[0]
    h.check(o['id'] == cli['Id'] and o['state'] == 'running' and o['health'] == 'none', o)
    h.check(any(m['name'] == vol and m['destination'] == '/var/lib/postgresql/data' and m['rw']
                for m in o['mounts']), o['mounts'])
    h.check('POSTGRES_PASSWORD' in o['env_keys'], o['env_keys'])
    h.check('s3cret-pw' not in json.dumps(rep) + r.stdout, 'an env value leaked')
    h.check(o['api_version'] == '1.41', o)
    h.check(sorted(v['name'] for v in s['vols']['outputs']['volumes']) == sorted([vol, empty]),
            s['vols'])
    c = s['cluster']['outputs']
    h.check(c['exists'] and c['postgres_cluster'] and c['pg_version'] == '15' and c['pg_wal'], c)
    h.check(s['empty']['outputs']['exists'] and s['empty']['outputs']['empty'], s['empty'])
    h.check(not s['missing']['outputs']['exists'], s['missing'])
    # the throwaway containers are gone
    left = PM.run('ps', '-a', '--filter', 'label=engine.run', '--format', '{{.ID}}').stdout
    h.check(left.strip() == '', left)
    # expect: postgres_cluster on the empty volume fails, naming it
    r, rep = run(h, f'version: 1\nname: dk\nsteps:\n  - id: c\n    uses: docker.volume_check\n'
                    f'    with: {{volume: {empty}, image: "{PM.image}", expect: postgres_cluster}}\n',
                 name='exp.yaml')
    h.check(r.returncode == 1 and f"volume '{empty}' does not hold a PostgreSQL cluster (it is empty)"
            in rep['steps']['c']['error'], rep['steps']['c'])


@suite.test
def test_exec_output_exit_codes_and_streams(h):
    name, vol, _ = fixture()
    out = h.tmp / 'seq.txt'
    r, rep = run(h, f'''version: 1
name: dkexec
steps:
  - id: cat
    uses: docker.exec
    with: {{container: {name}, command: "cat /var/lib/postgresql/data/PG_VERSION; echo warn >&2"}}
  - id: big
    uses: docker.exec
    with: {{container: {name}, command: [seq, "1", "300000"], stdout_file: "{out}"}}
  - id: missing
    needs: []
    uses: docker.exec
    continue_on_error: true
    with: {{container: {name}, command: [no-such-binary]}}
  - id: fails
    needs: []
    uses: docker.exec
    continue_on_error: true
    with: {{container: {name}, command: "echo broken >&2; exit 3"}}
''')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    s = rep['steps']
    h.check(s['cat']['outputs']['stdout'] == '15\n' and s['cat']['outputs']['stderr_tail'] == 'warn\n',
            s['cat'])
    lines = out.read_text().splitlines()
    h.check(len(lines) == 300000 and lines[-1] == '300000', len(lines))
    h.check(s['big']['outputs']['stdout_file']['bytes'] == out.stat().st_size, s['big'])
    h.check(s['missing']['status'] == 'failed' and
            s['missing']['outputs'].get('exit_code') in (126, 127) or
            'no-such-binary' in s['missing'].get('error', ''), s['missing'])
    h.check(s['fails']['outputs']['exit_code'] == 3 and 'broken' in s['fails']['error'], s['fails'])
    # a container that is not there: named, with what exists
    r, rep = run(h, f'version: 1\nname: t\nsteps:\n  - id: x\n    uses: docker.exec\n'
                    f'    with: {{container: shop-db-{PID}x, command: "true"}}\n', name='nf.yaml')
    h.check(r.returncode == 1 and f"no container 'shop-db-{PID}x'" in rep['steps']['x']['error']
            and 'did you mean' in rep['steps']['x']['error'], rep['steps']['x'])


@suite.test
def test_exec_and_run_argv_elements_reach_docker_as_strings(h):
    """An argv element written "${params.port}" (an int parameter), a
    boolean and a number: the Docker API takes only strings there (an
    int answered HTTP 500, "cannot unmarshal number into Go struct field
    ExecCreateConfig.Cmd of type string"). They are converted to the
    declared items of `command` and `volumes`, as the shell built-in's."""
    name, vol, _ = fixture()
    r, rep = run(h, f'''version: 1
name: dkargv
params:
  port: {{type: int, default: 5432}}
  mount: {{type: string, default: "{vol}:/v"}}
steps:
  - id: ex
    uses: docker.exec
    with:
      container: {name}
      command: [sh, -c, 'echo "$0|$1|$2"', "${{params.port}}", true, 1.5]
  - id: sh
    uses: shell
    with:
      command: [sh, -c, 'echo "$0|$1|$2"', "${{params.port}}", true, 1.5]
  - id: once
    uses: docker.run
    with:
      image: "{PM.image}"
      command: [sh, -c, 'echo $0; ls /v', "${{params.port}}"]
      volumes: ["${{params.mount}}"]
''')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    s = rep['steps']
    h.check(s['ex']['outputs']['stdout'] == '5432|true|1.5\n', s['ex'])
    h.check(s['ex']['outputs']['stdout'] == s['sh']['outputs']['stdout'], (s['ex'], s['sh']))
    h.check(s['once']['outputs']['stdout'].startswith('5432\n') and
            'PG_VERSION' in s['once']['outputs']['stdout'], s['once'])
    # volumes from a '|' block: its newline made the list one string of
    # JSON text (Podman answered 500); now it is said before anything runs
    r, rep = run(h, f'''version: 1
name: dkvol
steps:
  - id: once
    uses: docker.run
    with:
      image: "{PM.image}"
      command: "ls /v"
      volumes: |
        ${{(function() return {{"{vol}:/v"}} end)()}}
''', name='vol.yaml')
    h.check(r.returncode == 2 and "parameter 'volumes' of docker.run takes a list, but its "
            "value is a ${...} with the newline a '|' block adds after it" in r.stderr,
            r.stdout + r.stderr)
    r, rep = run(h, (h.tmp / 'vol.yaml').read_text().replace('volumes: |', 'volumes: |-'),
                 name='vol2.yaml')
    h.check(r.returncode == 0 and 'PG_VERSION' in rep['steps']['once']['outputs']['stdout'],
            r.stdout + r.stderr)


@suite.test
def test_stop_start_restart(h):
    name, _, _ = fixture()
    r, rep = run(h, f'''version: 1
name: dklife
steps:
  - id: stop
    uses: docker.stop
    with: {{container: {name}, timeout: 1s}}
  - id: start
    uses: docker.start
    with: {{container: {name}, wait_healthy: true}}
  - id: restart
    uses: docker.restart
    with: {{container: {name}, timeout: 1s, wait_healthy: true}}
''')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    s = rep['steps']
    h.check(s['stop']['outputs']['state'] == 'exited', s['stop'])
    h.check(s['restart']['outputs']['state'] == 'running', s['restart'])
    state = json.loads(PM.run('inspect', name).stdout)[0]['State']['Status']
    h.check(state == 'running', state)
    r = h.engine('plan', h.tmp / 'rb.yaml', env=env())
    h.check('disruptive' in r.stdout, r.stdout)
    audit = glob.glob(str(h.tmp / 'state' / 'runs' / '*' / 'audit.jsonl'))[0]
    h.check('"class":"disruptive"' in open(audit).read(), 'the audit log records the class')


@suite.test
def test_run_guards_and_cleanup(h):
    _, vol, _ = fixture()
    g = f'guards:\n  protected_volumes: [{vol}]\n  protected_databases: [prod]\n'
    before = PM.run('ps', '-a', '--format', '{{.ID}}').stdout
    r, rep = run(h, f'version: 1\nname: rw\n{g}steps:\n  - id: wipe\n    uses: docker.run\n'
                    f'    with: {{image: "{PM.image}", command: "rm -rf /v/base", volumes: ["{vol}:/v:rw"]}}\n',
                 name='rw.yaml')
    h.check(r.returncode == 3 and 'protected_volumes' in r.stdout + r.stderr, r.stdout + r.stderr)
    h.check(PM.run('ps', '-a', '--format', '{{.ID}}').stdout == before, 'a container was created')
    # read-only by default: it reads and leaves the files
    r, rep = run(h, f'version: 1\nname: ro\n{g}steps:\n  - id: look\n    uses: docker.run\n'
                    f'    with: {{image: "{PM.image}", command: "ls /v", volumes: ["{vol}:/v"]}}\n',
                 name='ro.yaml')
    h.check(r.returncode == 0 and 'base' in rep['steps']['look']['outputs']['stdout'], r.stdout + r.stderr)
    # a forbidden command in exec is refused like in a shell step
    r, rep = run(h, f'version: 1\nname: fx\n{g}steps:\n  - id: x\n    uses: docker.exec\n'
                    f'    with: {{container: shop-db-{PID}, command: "dropdb prod"}}\n', name='fx.yaml')
    h.check(r.returncode == 3 and "'prod' is protected" in r.stdout + r.stderr, r.stdout + r.stderr)
    # SIGKILL while a run's container lives: engine cleanup removes it
    f = h.write('kill.yaml', f'version: 1\nname: kill\nsteps:\n  - id: long\n    uses: docker.run\n'
                             f'    with: {{image: "{PM.image}", command: "sleep 60"}}\n')
    p = h.popen('run', f, '--state-dir', h.tmp / 'kst', env=env())
    deadline = time.time() + 20
    while time.time() < deadline:
        if PM.run('ps', '--filter', 'label=engine.step=long', '--format', '{{.ID}}').stdout.strip():
            break
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    h.check(PM.run('ps', '-a', '--filter', 'label=engine.step=long', '--format', '{{.ID}}').stdout.strip(),
            'no container to clean up')
    # removing a container this run did not create needs the flag
    other = f'other-{PID}'
    PM.run('rm', '-f', '-t', '0', other, check=False)
    PM.run('create', '--name', other, PM.image, 'true')
    rm = h.write('rm.yaml', f'version: 1\nname: rm\nsteps:\n  - id: rm\n    uses: docker.remove\n'
                            f'    with: {{container: {other}}}\n')
    r = h.engine('run', rm, '--state-dir', h.tmp / 'rm1', env=env())
    h.check(r.returncode == 3 and 'which this run did not create' in r.stdout + r.stderr,
            r.stdout + r.stderr)
    h.check(PM.run('container', 'exists', other, check=False).returncode == 0, 'removed anyway')
    r = h.engine('run', rm, '--state-dir', h.tmp / 'rm2', '--allow-destructive', env=env())
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(PM.run('container', 'exists', other, check=False).returncode != 0, 'not removed')
    run_id = os.path.basename(glob.glob(str(h.tmp / 'kst' / 'runs' / '*'))[0])
    r = h.engine('cleanup', run_id, '--state-dir', h.tmp / 'kst', env=env())
    h.check(r.returncode == 0, r.stdout + r.stderr)
    left = PM.run('ps', '-a', '--filter', 'label=engine.step=long', '--format', '{{.ID}}').stdout
    h.check(left.strip() == '', f'left behind: {left}')


@suite.test
def test_check_prod_volume_runbook(h):
    """runbooks/check-prod-volume.yaml: a deploy gate on the production
    volume (ok with a cluster; exit 1 naming the volume otherwise)."""
    from harness import ROOT
    _, vol, empty = fixture()
    f = ROOT / 'runbooks' / 'check-prod-volume.yaml'
    r = h.engine('run', f, '--set', f'volume={vol}', '--state-dir', h.tmp / 's1', env=env())
    h.check(r.returncode == 0, r.stdout + r.stderr)
    r = h.engine('run', f, '--set', f'volume={empty}', '--set', f'image={PM.image}',
                 '--state-dir', h.tmp / 's2', env=env())
    h.check(r.returncode == 1 and f"volume '{empty}' does not hold a PostgreSQL cluster (it is empty)"
            in r.stdout, r.stdout + r.stderr)
    r = h.engine('run', f, '--set', f'volume=gone_{PID}', '--state-dir', h.tmp / 's3', env=env())
    h.check(r.returncode == 1 and f"volume 'gone_{PID}' does not exist" in r.stdout,
            r.stdout + r.stderr)
    # as shipped (no `image`), on a volume no container uses: an empty one
    # is said to be empty, not "give `image`"
    r = h.engine('run', f, '--set', f'volume={empty}', '--state-dir', h.tmp / 's4',
                 '--report', h.tmp / 'r4.json', env=env())
    err = h.report(h.tmp / 'r4.json')['steps']['check'].get('error', '')
    h.check(r.returncode == 1 and err == f"volume '{empty}' does not hold a PostgreSQL cluster: "
            "it exists and is empty (0 bytes; no container uses it)", r.stdout + r.stderr)
    # one that holds data needs a look inside: the message says so, and why
    full = f'dkorphan_{PID}'
    PM.run('volume', 'rm', '-f', full, check=False)
    PM.run('volume', 'create', full)
    try:
        PM.run('run', '--rm', '--network', 'none', '-v', f'{full}:/v', PM.image, 'sh', '-c',
               'echo 15 > /v/PG_VERSION')
        r = h.engine('run', f, '--set', f'volume={full}', '--state-dir', h.tmp / 's5',
                     '--report', h.tmp / 'r5.json', env=env())
        err = h.report(h.tmp / 'r5.json')['steps']['check'].get('error', '')
        h.check(r.returncode == 1 and f"volume '{full}' holds 3 bytes, but no container "
                "uses it" in err and 'give `image`' in err, r.stdout + r.stderr)
        r = h.engine('run', f, '--set', f'volume={full}', '--set', f'image={PM.image}',
                     '--state-dir', h.tmp / 's6', env=env())
        h.check(r.returncode == 1 and 'does not hold a PostgreSQL cluster (no base/)' in r.stdout,
                r.stdout + r.stderr)
    finally:
        PM.run('volume', 'rm', '-f', full, check=False)


@suite.test
def test_recover_from_volume_runbook(h):
    """runbooks/recover-from-volume.yaml against a real PostgreSQL in a
    container: the compose container and its volume are found, the volume
    is proven to hold a cluster, pg_dump runs inside the container, and the
    dump is restored into an isolated database on the host's server with
    the same rows."""
    from harness import ROOT
    image = PM.pg_image()
    name, vol, port = f'skyrec-postgres-{PID}', f'skyrec_pgdata_{PID}', 20000 + PID % 20000
    db = f'skyrec_{PID}'
    PM.run('rm', '-f', '-t', '0', name, check=False)
    PM.run('volume', 'rm', '-f', vol, check=False)
    PM.run('run', '-d', '--name', name, '--network', 'host', '-e', f'PGPORT={port}',
           '--label', f'com.docker.compose.project=skyrec{PID}',
           '--label', 'com.docker.compose.service=postgres',
           '-v', f'{vol}:/var/lib/postgresql/data', image)
    try:
        for _ in range(100):
            if PM.run('exec', name, 'psql', '-U', 'postgres', '-c', 'select 1',
                      check=False).returncode == 0:
                break
            time.sleep(0.2)
        PM.run('exec', name, 'psql', '-U', 'postgres', '-c', f'CREATE DATABASE {db}')
        PM.run('exec', name, 'psql', '-U', 'postgres', '-d', db, '-c',
               'CREATE TABLE "User" (id int primary key, email text); '
               'INSERT INTO "User" SELECT g, \'u\' || g FROM generate_series(1, 321) g')
        # two more candidates: an old cluster's files, and an empty volume
        old, empty = f'skyrec_old_{PID}', f'skyrec_empty_{PID}'
        for v in (old, empty):
            PM.run('volume', 'rm', '-f', v, check=False)
            PM.run('volume', 'create', v)
        PM.run('run', '--rm', '--network', 'none', '-v', f'{old}:/d', PM.image, 'sh', '-c',
               'echo 14 > /d/PG_VERSION && mkdir /d/base /d/global')
        rec = f'{db}_recovery'
        h.pg.psql(f'DROP DATABASE IF EXISTS "{rec}" WITH (FORCE)')
        r = h.engine('run', ROOT / 'runbooks' / 'recover-from-volume.yaml',
                     '--set', f'compose_project=skyrec{PID}', '--set', f'database={db}',
                     '--set', f'volume_match=skyrec_*_{PID}', '--set', f'recovery_db={rec}',
                     '--set', 'recovery_url=' + h.pg.url('postgres'),
                     '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r.json', env=env(),
                     timeout=300)
        h.check(r.returncode == 0, r.stdout + r.stderr)
        rep = json.loads((h.tmp / 'r.json').read_text())
        h.check(rep['steps']['live-volume']['outputs']['pg_version'] == '15', rep['steps']['live-volume'])
        h.check(sorted(v['name'] for v in rep['steps']['candidates']['outputs']['volumes']) ==
                sorted([vol, old, empty]), rep['steps']['candidates'])
        # each candidate checked by its own item; the two clusters found
        h.check(len(rep['steps']['check-candidates']['items']) == 3,
                rep['steps']['check-candidates'])
        hold = rep['steps']['holding']['outputs']
        h.check(sorted(hold['volumes']) == sorted([vol, old]) and
                hold['pg_versions'] == {vol: '15', old: '14'}, hold)
        h.check(rep['steps']['counts']['outputs']['total'] == 321, rep['steps']['counts'])
        h.check(h.pg.psql('SELECT count(*) FROM "User"', db=rec).strip() == '321', 'restored rows')
        h.pg.psql(f'DROP DATABASE IF EXISTS "{rec}" WITH (FORCE)')
    finally:
        PM.run('rm', '-f', '-t', '0', name, check=False)
        for v in (vol, f'skyrec_old_{PID}', f'skyrec_empty_{PID}'):
            PM.run('volume', 'rm', '-f', v, check=False)


class CuttingProxy:
    """A Unix-socket proxy in front of the real engine that cuts the answer
    to an exec start after a few bytes of its body (a broken connection
    mid-frame); everything else passes through untouched."""
    def __init__(self, target, path):
        self.target, self.path = target, path
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(path)
        self.srv.listen(16)
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self.conn, args=(c,), daemon=True).start()

    def conn(self, c):
        u = socket.socket(socket.AF_UNIX)
        u.connect(self.target)
        state = {'cut': False}

        def up():
            try:
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    if b'/exec/' in d and b'/start' in d:
                        state['cut'] = True
                    u.sendall(d)
                u.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the other side was cut on purpose
        threading.Thread(target=up, daemon=True).start()
        buf = b''
        while True:
            d = u.recv(65536)
            if not d:
                break
            if state['cut']:
                buf += d
                end = buf.find(b'\r\n\r\n')
                if end >= 0 and len(buf) >= end + 4 + 12:
                    c.sendall(buf[:end + 4 + 12])
                    c.shutdown(socket.SHUT_RDWR)  # the connection breaks here
                    break
                continue
            c.sendall(d)
        c.close()
        u.shutdown(socket.SHUT_RDWR)
        u.close()

    def close(self):
        self.srv.close()


@suite.test
def test_broken_streams_and_vanished_containers(h):
    name, _, _ = fixture()
    proxy = CuttingProxy(PM.sock, str(h.tmp / 'cut.sock'))
    try:
        r, rep = run(h, f'version: 1\nname: cut\nsteps:\n  - id: x\n    uses: docker.exec\n'
                        f'    with: {{container: {name}, command: [seq, "1", "100000"], '
                        f'stdout_file: "{h.tmp}/out.txt"}}\n',
                     extra_env={'DOCKER_HOST': f'unix://{h.tmp}/cut.sock'}, name='cut.yaml')
    finally:
        proxy.close()
    h.check(r.returncode == 1 and 'cut in the middle of a frame' in rep['steps']['x']['error'],
            r.stdout + r.stderr)
    h.check(not (h.tmp / 'out.txt').exists(), 'a partial stdout_file was committed')
    # the container stops between the inspect and the exec
    PM.run('stop', '-t', '0', name)
    r, rep = run(h, f'version: 1\nname: gone\nsteps:\n  - id: x\n    uses: docker.exec\n'
                    f'    with: {{container: {name}, command: "true"}}\n', name='gone.yaml')
    h.check(r.returncode == 1 and 'is not running' in rep['steps']['x']['error'], rep['steps']['x'])


@suite.test
def test_bad_engines_are_named(h):
    rb = 'version: 1\nname: t\nsteps:\n  - id: l\n    uses: docker.containers\n'
    r, rep = run(h, rb, extra_env={'DOCKER_HOST': f'unix://{h.tmp}/nothing.sock'})
    h.check(r.returncode == 1 and 'no Docker socket' in rep['steps']['l']['error'] and
            'does not exist' in rep['steps']['l']['error'], rep['steps']['l'])
    notsock = h.write('file.sock', 'x')
    r, rep = run(h, rb, name='b.yaml', extra_env={'DOCKER_HOST': f'unix://{notsock}'})
    h.check(r.returncode == 1 and 'not a socket' in rep['steps']['l']['error'], rep['steps']['l'])
    # something answering HTML on the socket
    path = str(h.tmp / 'html.sock')
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            # read the whole request first: closing with unread bytes
            # resets the connection before the client reads the answer
            req = b''
            while b'\r\n\r\n' not in req:
                chunk = c.recv(65536)
                if not chunk:
                    break
                req += chunk
            body = b'<html><body>hello</body></html>'
            c.sendall(b'HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: '
                      + str(len(body)).encode() + b'\r\nConnection: close\r\n\r\n' + body)
            c.shutdown(socket.SHUT_WR)
            c.settimeout(2)
            try:
                while c.recv(65536):
                    pass
            except OSError:
                pass
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    r, rep = run(h, rb, name='c.yaml', extra_env={'DOCKER_HOST': f'unix://{path}'})
    srv.close()
    h.check(r.returncode == 1 and 'not a Docker API' in rep['steps']['l']['error'], rep['steps']['l'])


def frame(stream, payload):
    """One frame of the Docker API's multiplexed stdout/stderr stream."""
    return bytes([stream, 0, 0, 0]) + len(payload).to_bytes(4, 'big') + payload


class LyingEngine:
    """Something answering the Docker API on a Unix socket with answers a
    daemon should not give: fields missing or of the wrong type, bodies
    cut short, errors without a message. routes: 'METHOD /path' (without
    /v1.41 and the query) -> (status, body bytes)."""

    def __init__(self, path, routes):
        import http.server
        import socketserver

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self):
                n = int(self.headers.get('Content-Length') or 0)
                if n:
                    self.rfile.read(n)
                p = self.path.split('?')[0]
                if p == '/_ping':
                    status, body = 200, b'OK'
                else:
                    p = p[len('/v1.41'):] if p.startswith('/v1.41') else p
                    status, body = routes.get(f'{self.command} {p}',
                                              (404, b'{"message":"no such thing"}'))
                self.send_response(status)
                self.send_header('Api-Version', '1.41')
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_DELETE = answer

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.srv = Server(path, Handler)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


@suite.test
def test_unreadable_answers_fail_with_what_was_wrong(h):
    """Each answer the plugin reads, wrong in one way: the step fails naming
    what was wrong (no crash, and no default passing for success)."""
    running = {'State': {'Status': 'running', 'Running': True}}
    routes = {
        'GET /containers/json': (200, b'{"Id":"not-a-list"}'),
        'GET /containers/noid/json': (200, json.dumps({'Name': '/noid', **running}).encode()),
        'GET /containers/badid/json': (200, json.dumps({'Id': '../../_ping', **running}).encode()),
        'GET /containers/cut/json': (200, b'{"Id":"c0","State":{"Sta'),
        'GET /containers/c1/json': (200, json.dumps({'Id': 'c1', 'Name': '/c1', **running}).encode()),
        'POST /containers/c1/exec': (201, b'{}'),
        'GET /containers/c2/json': (200, json.dumps({'Id': 'c2', 'Name': '/c2', **running}).encode()),
        'POST /containers/c2/exec': (201, b'{"Id":"e2"}'),
        'POST /exec/e2/start': (200, b''),
        'GET /exec/e2/json': (200, b'{"Running":false}'),
        'GET /volumes': (200, b'{"Volumes":"none"}'),
        'POST /containers/create': (201, b'{"Warnings":[]}'),
        'GET /containers/c3/json': (200, json.dumps({'Id': 'c3', 'Name': '/c3', **running}).encode()),
        'POST /containers/c3/exec': (201, b'{"Id":"e3"}'),
        'POST /exec/e3/start': (200, frame(1, b'ok \xff\n') + frame(2, b'warn \xe2\x82\n')),
        'GET /exec/e3/json': (200, b'{"Running":false,"ExitCode":0}'),
    }
    path = str(h.tmp / 'lying.sock')
    srv = LyingEngine(path, routes)
    e = {'DOCKER_HOST': f'unix://{path}'}
    cases = [
        ('containers', '{}', 'is an object, not a list of containers'),
        ('inspect', '{container: noid}', 'has no Id'),
        ('inspect', '{container: badid}', "Id is not an id"),
        ('inspect', '{container: cut}', 'is not JSON'),
        ('exec', '{container: c1, command: "true"}', 'has no Id'),
        ('exec', '{container: c2, command: "true"}', 'has no ExitCode'),
        ('volumes', '{}', "Volumes is a string, not a list"),
        ('run', '{image: img, command: "true"}', 'has no Id; if it exists, engine cleanup removes it'),
    ]
    try:
        for i, (action, args, want) in enumerate(cases):
            r, rep = run(h, f'version: 1\nname: lie\nsteps:\n  - id: x\n    uses: docker.{action}\n'
                            f'    with: {args}\n', name=f'lie{i}.yaml', extra_env=e)
            err = (rep or {}).get('steps', {}).get('x', {}).get('error', '')
            h.check(r.returncode == 1 and want in err and 'Sanitizer' not in r.stderr,
                    f'{action} {args}: {err or r.stdout + r.stderr}')
        # output that is not UTF-8 (a cut character, a stray byte) is still text
        r, rep = run(h, 'version: 1\nname: lie\nsteps:\n  - id: x\n    uses: docker.exec\n'
                        '    with: {container: c3, command: "true"}\n', name='lie-text.yaml',
                     extra_env=e)
        o = (rep or {}).get('steps', {}).get('x', {}).get('outputs', {})
        h.check(r.returncode == 0 and o.get('stdout') == 'ok \ufffd\n' and
                o.get('stderr_tail') == 'warn \ufffd\ufffd\n', r.stdout + r.stderr)
        # an error answer without a message quotes the body
        routes['GET /containers/json'] = (500, b'{"cause":"disk\\nfull"}\r\n')
        r, rep = run(h, 'version: 1\nname: lie\nsteps:\n  - id: x\n    uses: docker.containers\n',
                     name='lie-err.yaml', extra_env=e)
        h.check(r.returncode == 1 and 'HTTP 500: {"cause":"disk\\nfull"}' in rep['steps']['x']['error'],
                rep['steps']['x'])
    finally:
        srv.close()


if __name__ == '__main__':
    try:
        suite.main()
    finally:
        for n in PM.run('ps', '-a', '--format', '{{.Names}}').stdout.split():
            if n.endswith(str(PID)):
                PM.run('rm', '-f', '-t', '0', n, check=False)
        PM.stop()
