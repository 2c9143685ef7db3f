"""The provider plugin (driver rds) against moto's RDS Query API with SigV4
checked, cross-checked with boto3 as an independent client: snapshot,
restore (snapshot and point in time), describe, delete; guards before any
request; SIGKILL then `engine cleanup`; wrong secret; answers cut or
turned into errors by a TCP proxy (it changes bytes of moto's answers, it
does not answer by itself); validation errors."""
import glob
import json
import os
import pathlib
import signal
import socket
import threading
import time

from harness import Suite
from s3server import S3Server

suite = Suite(__file__)
SOURCE = 'src-db'
_srv = None


def srv():
    global _srv
    if _srv is None:
        _srv = S3Server().start()
        make_instance(SOURCE)
    return _srv


def rds(secret=None):
    s = srv()
    return s._boto('rds', s.key, secret or s.secret)


def make_instance(name):
    rds().create_db_instance(
        DBInstanceIdentifier=name, DBInstanceClass='db.t3.micro',
        Engine='postgres', MasterUsername='drill', AllocatedStorage=20,
        MasterUserPassword='not-a-real-one', BackupRetentionPeriod=1)


def instances():
    return sorted(i['DBInstanceIdentifier']
                  for i in rds().describe_db_instances()['DBInstances'])


def snapshot_exists(sid):
    try:
        rds().describe_db_snapshots(DBSnapshotIdentifier=sid)
        return True
    except Exception as e:  # botocore ClientError DBSnapshotNotFound
        if 'DBSnapshotNotFound' in str(e):
            return False
        raise


def run(h, name, *sets, env=None, extra=(), timeout=120):
    args = ['run', h.fixture('provider/' + name), '--state-dir',
            h.tmp / 'state', '--report', h.tmp / 'report.json']
    for s in sets:
        args += ['--set', s]
    args += list(extra)
    e = srv().env()
    e.update(env or {})
    return h.engine(*args, env=e, timeout=timeout)


def report(h):
    return h.report(h.tmp / 'report.json')


def outputs(h, step):
    return report(h)['steps'][step].get('outputs', {})


def seen(h, r):
    """Everything a person or a machine could see from the run."""
    text = r.stdout + r.stderr
    for f in glob.glob(str(h.tmp / 'state' / '**' / '*'), recursive=True):
        if os.path.isfile(f):
            text += pathlib.Path(f).read_text(errors='replace')
    return text


def run_id(h):
    runs = sorted(os.listdir(h.tmp / 'state' / 'runs'))
    return runs[-1]


class Listener:
    """A TCP port that counts connections and answers nothing: proof that
    no request was sent."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._serve(c)

    def _serve(self, c):
        c.close()

    def close(self):
        self.sock.close()


class FaultProxy(Listener):
    """Forwards each request to moto and, for requests whose body holds
    `match`, changes moto's answer: 'truncate' cuts the body in half (and
    says so in Content-Length), 'status200' turns an error status into
    200 OK with moto's error body, 'unavailable' answers the first `limit`
    of them with an empty 503 (moto never saw them), 'delay' holds moto's
    answer for 5 s."""

    def __init__(self, upstream_port):
        self.up = upstream_port
        self.match, self.mode, self.hits, self.limit = None, None, 0, 0
        super().__init__()

    def _serve(self, c):
        threading.Thread(target=self._forward, args=(c,), daemon=True).start()

    @staticmethod
    def _read_request(c):
        data = b''
        while b'\r\n\r\n' not in data:
            chunk = c.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b'\r\n\r\n')
        n = 0
        for line in head.split(b'\r\n'):
            if line.lower().startswith(b'content-length:'):
                n = int(line.split(b':', 1)[1])
        while len(body) < n:
            chunk = c.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b'\r\n\r\n' + body

    def _forward(self, c):
        try:
            req = self._read_request(c)
            if (self.mode == 'unavailable' and self.match.encode() in req
                    and self.hits < self.limit):
                self.hits += 1
                c.sendall(b'HTTP/1.1 503 Service Unavailable\r\n'
                          b'Content-Length: 0\r\nConnection: close\r\n\r\n')
                return
            u = socket.create_connection(('127.0.0.1', self.up))
            u.sendall(req)
            resp = b''
            while True:
                chunk = u.recv(65536)
                if not chunk:
                    break
                resp += chunk
            u.close()
            if (self.mode in ('truncate', 'status200') and self.match
                    and self.match.encode() in req):
                self.hits += 1
                resp = self._fault(resp)
            elif self.mode == 'delay' and self.match.encode() in req:
                self.hits += 1
                time.sleep(5)
            c.sendall(resp)
        finally:
            c.close()

    def _fault(self, resp):
        head, _, body = resp.partition(b'\r\n\r\n')
        lines = head.split(b'\r\n')
        if self.mode == 'truncate':
            body = body[:len(body) // 2]
        elif self.mode == 'status200':
            lines[0] = b'HTTP/1.1 200 OK'
        lines = [ln for ln in lines if not ln.lower().startswith(b'content-length:')]
        lines.append(b'Content-Length: %d' % len(body))
        return b'\r\n'.join(lines) + b'\r\n\r\n' + body

    def close(self):
        self.sock.close()


# ---- the round trip ----------------------------------------------------------

@suite.test
def test_snapshot_restore_describe_delete(h):
    before = instances()
    r = run(h, 'drill.yaml', f'source={SOURCE}')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    snap = outputs(h, 'snap')
    h.check(snap['status'] == 'available' and snap['instance'] == SOURCE, snap)
    h.check(snap['snapshot_id'].startswith(SOURCE + '-'), snap)
    rest = outputs(h, 'restore')
    h.check(rest['status'] == 'available' and rest['port'] == 5432, rest)
    h.check(rest['source'] == snap['snapshot_id'], rest)
    h.check(isinstance(rest['restore_ms'], int) and rest['restore_ms'] >= 0, rest)
    look = outputs(h, 'look')
    h.check(look['engine'] == 'postgres' and look['engine_version'], look)
    # boto3: the copy is gone, the source is there, the snapshot was kept
    h.check(instances() == before, (instances(), before))
    h.check(snapshot_exists(snap['snapshot_id']), snap['snapshot_id'])
    h.check(outputs(h, 'drop')['status'] == 'deleted', outputs(h, 'drop'))
    h.check('(gone)' in r.stdout, r.stdout)
    # the journal says what was created and removed
    j = (h.tmp / 'state' / 'runs' / run_id(h) / 'journal').read_text()
    h.check('"kind":"instance"' in j.replace(' ', '') and '"removed"' in j, j)


@suite.test
def test_point_in_time_restore(h):
    before = instances()
    for at in ('latest', time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())):
        copy = 'pitr-' + ('latest' if at == 'latest' else 'at')
        r = run(h, 'pitr.yaml', f'source={SOURCE}', f'copy={copy}', f'at={at}')
        h.check(r.returncode == 0, r.stdout + r.stderr)
        look = outputs(h, 'look')
        h.check(look['instance'] == copy and look['status'] == 'available', look)
        h.check(outputs(h, 'restore')['source'] == SOURCE, outputs(h, 'restore'))
    h.check(instances() == before, (instances(), before))


@suite.test
def test_snapshots_listed_and_picked(h):
    # (moto answers DescribeDBSnapshots in one page whatever MaxRecords
    # says; the Marker loop's parsing is in tests/unit/test_rds_wait.c)
    inst = 'pick-src'
    make_instance(inst)
    for i in range(23):
        rds().create_db_snapshot(DBInstanceIdentifier=inst,
                                 DBSnapshotIdentifier=f'pick-snap-{i:02d}')
        time.sleep(0.01)
    r = run(h, 'snapshots.yaml', f'instance={inst}',
            env={'ENGINE_RDS_TEST_PAGE_SIZE': '20'})
    h.check(r.returncode == 0, r.stdout + r.stderr)
    o = outputs(h, 'list')
    h.check(o['count'] == 23, o['count'])
    h.check(o['picked']['snapshot_id'] == 'pick-snap-22', o['picked'])
    h.check(all(s['type'] == 'manual' for s in o['snapshots']), o['snapshots'][:2])
    r = run(h, 'snapshots.yaml', f'instance={inst}', 'pick=random_within:1h')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(outputs(h, 'list')['picked']['snapshot_id'].startswith('pick-snap-'),
            outputs(h, 'list'))
    # nothing old enough to be picked, in the future's eyes
    r = run(h, 'snapshots.yaml', f'instance={inst}', 'pick=random_within:1h',
            env={'ENGINE_TEST_NOW': str(int(time.time()) + 7200)})
    h.check(r.returncode == 1 and 'nothing to pick' in r.stdout + r.stderr,
            r.stdout + r.stderr)
    rds().delete_db_instance(DBInstanceIdentifier=inst, SkipFinalSnapshot=True)


# ---- guards ---------------------------------------------------------------------

@suite.test
def test_protected_instance_refused_before_any_request(h):
    lst = Listener()
    try:
        env = {'AWS_ENDPOINT_URL': f'http://127.0.0.1:{lst.port}'}
        for name in ('yieldvault-prod', 'prod-main'):
            r = run(h, 'delete.yaml', f'instance={name}', env=env,
                    extra=['--allow-destructive'])
            h.check(r.returncode == 3, r.stdout + r.stderr)
            h.check('protected_instances' in r.stdout + r.stderr, r.stdout + r.stderr)
        # a restore onto a protected identifier: refused too
        w = h.write('restore-prot.yaml', h.fixture('provider/restore.yaml').read_text()
                    + 'guards:\n  protected_instances: [yieldvault-prod]\n')
        r = h.engine('run', w, '--state-dir', h.tmp / 'state', '--set', 'snapshot=x',
                     '--set', 'copy=yieldvault-prod', '--allow-destructive',
                     env=dict(srv().env(), **env))
        h.check(r.returncode == 3, r.stdout + r.stderr)
        h.check(lst.accepted == 0, f'{lst.accepted} connection(s) reached the endpoint')
    finally:
        lst.close()


@suite.test
def test_protected_restore_target_and_foreign_delete(h):
    make_instance('yieldvault-prod')
    w = h.write('restore-prot.yaml', (h.fixture('provider/restore.yaml')).read_text()
                + 'guards:\n  protected_instances: [yieldvault-prod]\n')
    r = h.engine('run', w, '--state-dir', h.tmp / 'state', '--set', 'snapshot=x',
                 '--set', 'copy=yieldvault-prod', env=srv().env())
    h.check(r.returncode == 3, r.stdout + r.stderr)
    # not protected, not created by this run: needs --allow-destructive
    make_instance('someone-else')
    r = run(h, 'delete.yaml', 'instance=someone-else')
    h.check(r.returncode == 3 and 'allow-destructive' in r.stdout + r.stderr,
            r.stdout + r.stderr)
    h.check('someone-else' in instances(), instances())
    r = run(h, 'delete.yaml', 'instance=someone-else', extra=['--allow-destructive'])
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check('someone-else' not in instances(), instances())
    # a protected one: whatever the flags
    r = run(h, 'delete.yaml', 'instance=yieldvault-prod', extra=['--allow-destructive'])
    h.check(r.returncode == 3, r.stdout + r.stderr)
    h.check('yieldvault-prod' in instances(), instances())
    # a restore onto an existing (unprotected) identifier: refused by the
    # plugin before anything is created, and the instance is not adopted
    snap = 'exists-snap'
    rds().create_db_snapshot(DBInstanceIdentifier=SOURCE, DBSnapshotIdentifier=snap)
    make_instance('taken-name')
    r = run(h, 'restore.yaml', f'snapshot={snap}', 'copy=taken-name')
    h.check(r.returncode == 1 and 'already exists' in r.stdout + r.stderr,
            r.stdout + r.stderr)
    c = h.engine('cleanup', run_id(h), '--state-dir', h.tmp / 'state', env=srv().env())
    h.check('taken-name' in instances(), (c.stdout, c.stderr, instances()))


@suite.test
def test_snapshot_of_protected_instance_not_deleted(h):
    if 'yieldvault-prod' not in instances():
        make_instance('yieldvault-prod')
    rds().create_db_snapshot(DBInstanceIdentifier='yieldvault-prod',
                             DBSnapshotIdentifier='vault-nightly')
    r = run(h, 'delete-snapshot.yaml', 'snapshot=vault-nightly',
            extra=['--allow-destructive'])
    h.check(r.returncode == 3, r.stdout + r.stderr)
    h.check(snapshot_exists('vault-nightly'), 'the snapshot was deleted')
    rds().create_db_snapshot(DBInstanceIdentifier=SOURCE,
                             DBSnapshotIdentifier='src-old')
    r = run(h, 'delete-snapshot.yaml', 'snapshot=src-old')
    h.check(r.returncode == 3 and 'allow-destructive' in r.stdout + r.stderr,
            r.stdout + r.stderr)
    r = run(h, 'delete-snapshot.yaml', 'snapshot=src-old', extra=['--allow-destructive'])
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(not snapshot_exists('src-old'), 'still there')


# ---- interruption ---------------------------------------------------------------

@suite.test
def test_sigkill_after_restore_then_cleanup(h):
    snap = 'kill-snap'
    rds().create_db_snapshot(DBInstanceIdentifier=SOURCE, DBSnapshotIdentifier=snap)
    # a drill's copy: temporary, so a killed run's copy is a leftover
    w = h.write('restore-sleep.yaml', (h.fixture('provider/restore.yaml')).read_text()
                .replace('uses: provider.restore\n', 'uses: provider.restore\n    temporary: true\n')
                + '  - id: hold\n    uses: sleep\n    with: {for: 60s}\n')
    p = h.popen('run', w, '--state-dir', h.tmp / 'state', '--set', f'snapshot={snap}',
                '--set', 'copy=killed-copy', env=srv().env())
    deadline = time.time() + 60
    while 'killed-copy' not in instances() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    h.check('killed-copy' in instances(), 'the restore never started')
    rid = run_id(h)
    r = h.engine('cleanup', rid, '--state-dir', h.tmp / 'state', env=srv().env())
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check('killed-copy' not in instances(), (r.stdout + r.stderr, instances()))


# ---- errors ---------------------------------------------------------------------

@suite.test
def test_wrong_secret_clear_message_without_secret(h):
    bad = 'WrongSecretXYZ0123456789abcdef'
    r = run(h, 'describe.yaml', f'instance={SOURCE}',
            env={'AWS_SECRET_ACCESS_KEY': bad})
    out = seen(h, r)
    h.check(r.returncode == 1, out)
    h.check('signature does not match' in out and 'AWS_SECRET_ACCESS_KEY' in out, out)
    h.check(bad not in out, 'the secret leaked')


@suite.test
def test_profile_credentials_and_rds_endpoint(h):
    """AWS_ENDPOINT_URL_RDS wins over AWS_ENDPOINT_URL; credentials and
    region from a profile of the shared files."""
    lst = Listener()
    try:
        creds = h.write('aws/credentials',
                        f'[default]\naws_access_key_id = AKIDNOTKNOWN\naws_secret_access_key = whatever-secret-123\n'
                        f'[drill]\naws_access_key_id = {srv().key}\n'
                        f'aws_secret_access_key = {srv().secret}\n')
        conf = h.write('aws/config', '[profile drill]\nregion = us-east-1\n')
        env = {'AWS_ACCESS_KEY_ID': '', 'AWS_SECRET_ACCESS_KEY': '', 'AWS_REGION': '',
               'AWS_PROFILE': 'drill', 'AWS_SHARED_CREDENTIALS_FILE': str(creds),
               'AWS_CONFIG_FILE': str(conf),
               'AWS_ENDPOINT_URL': f'http://127.0.0.1:{lst.port}',
               'AWS_ENDPOINT_URL_RDS': srv().endpoint}
        r = run(h, 'describe.yaml', f'instance={SOURCE}', env=env)
        h.check(r.returncode == 0, r.stdout + r.stderr)
        h.check(outputs(h, 'look')['instance'] == SOURCE, outputs(h, 'look'))
        h.check(lst.accepted == 0, 'AWS_ENDPOINT_URL was used instead of _RDS')
        # the default profile's key is not known to the server
        r = run(h, 'describe.yaml', f'instance={SOURCE}', env=dict(env, AWS_PROFILE='default'))
        out = r.stdout + r.stderr
        h.check(r.returncode == 1 and "'AKIDNOTKNOWN'" in out and 'InvalidClientTokenId' in out, out)
        h.check('whatever-secret-123' not in out, out)
    finally:
        lst.close()


@suite.test
def test_unknown_instance_did_you_mean(h):
    r = run(h, 'describe.yaml', 'instance=src-dbb')
    out = r.stdout + r.stderr
    h.check(r.returncode == 1, out)
    h.check('DBInstanceNotFound' in out and "did you mean 'src-db'" in out, out)


@suite.test
def test_unknown_driver_and_bad_class_at_validate(h):
    r = h.engine('validate', h.fixture('provider/unknown-driver.yaml'))
    out = r.stdout + r.stderr
    h.check(r.returncode == 2 and 'cloudsql' in out and 'rds' in out, out)
    r = h.engine('validate', h.fixture('provider/bad-class.yaml'))
    out = r.stdout + r.stderr
    h.check(r.returncode == 2 and 'db.t3.micro' in out, out)
    # a driver given at run time through a parameter
    r = run(h, 'describe.yaml', f'instance={SOURCE}', 'driver=neon')
    out = r.stdout + r.stderr
    h.check(r.returncode != 0 and 'neon' in out and 'rds' in out, out)


@suite.test
def test_api_rejects_parameter_nothing_left(h):
    snap = 'reject-snap'
    rds().create_db_snapshot(DBInstanceIdentifier=SOURCE, DBSnapshotIdentifier=snap)
    before = instances()
    r = run(h, 'restore.yaml', f'snapshot={snap}', 'copy=rejected-copy',
            'allocated_storage=5')
    out = r.stdout + r.stderr
    h.check(r.returncode == 1, out)
    h.check('InvalidParameterValue' in out and 'allocated_storage' in out, out)
    h.check(instances() == before, instances())
    c = h.engine('cleanup', run_id(h), '--state-dir', h.tmp / 'state', env=srv().env())
    h.check('nothing' in (c.stdout + c.stderr).lower() or c.returncode == 0,
            c.stdout + c.stderr)


@suite.test
def test_truncated_answer_and_error_in_200(h):
    proxy = FaultProxy(srv().port)
    try:
        env = {'AWS_ENDPOINT_URL': f'http://127.0.0.1:{proxy.port}'}
        before = instances()
        # the restore's answer cut in half: a clear error, and the copy
        # (which moto did create) removed by finally
        proxy.match, proxy.mode = 'Action=RestoreDBInstanceFromDBSnapshot', 'truncate'
        r = run(h, 'drill.yaml', f'source={SOURCE}', 'copy=cut-copy', env=env)
        out = r.stdout + r.stderr
        h.check(proxy.hits >= 1, 'the fault was not injected')
        h.check(r.returncode == 1 and 'not a complete XML document' in out, out)
        h.check(instances() == before, (instances(), before))
        # an error document under 200 OK
        proxy.hits = 0
        proxy.match, proxy.mode = 'Action=DescribeDBInstances', 'status200'
        r = run(h, 'describe.yaml', 'instance=no-such-db', env=env)
        out = r.stdout + r.stderr
        h.check(proxy.hits >= 1, 'the fault was not injected')
        h.check(r.returncode == 1 and 'HTTP 200 with an error' in out
                and 'DBInstanceNotFound' in out, out)
        # a read answered 503 twice: retried with backoff, then it works
        proxy.hits, proxy.limit = 0, 2
        proxy.match, proxy.mode = 'Action=DescribeDBInstances', 'unavailable'
        r = run(h, 'describe.yaml', f'instance={SOURCE}', env=dict(env, ENGINE_TEST_SEED='7'))
        out = r.stdout + r.stderr
        h.check(r.returncode == 0 and proxy.hits == 2, out)
        h.check(out.count('retrying in') == 2, out)
        proxy.match, proxy.mode = 'Action=DescribeDBInstances', 'status200'
        # a restore whose existence check gets an error under 200: nothing made
        r = run(h, 'drill.yaml', f'source={SOURCE}', 'copy=odd-copy', env=env)
        h.check(r.returncode == 1, r.stdout + r.stderr)
        h.check(instances() == before, (instances(), before))
    finally:
        proxy.close()


TIMED_OUT = """version: 1
name: provider-timeout
params:
  snapshot: {required: true}
steps:
  - id: restore
    uses: provider.restore
    timeout: 1500ms
    with: {snapshot_id: "${params.snapshot}", instance: slow-copy}
finally:
  - id: drop
    uses: provider.delete_instance
    with: {instance: slow-copy, skip_final_snapshot: true, if_exists: true}
"""


@suite.test
def test_step_timeout_during_restore_leaves_nothing(h):
    """The answer to the restore never arrives in time: the step times out,
    and the copy moto did create is removed by finally (it was journaled
    before the request went out)."""
    snap = 'slow-snap'
    rds().create_db_snapshot(DBInstanceIdentifier=SOURCE, DBSnapshotIdentifier=snap)
    before = instances()
    proxy = FaultProxy(srv().port)
    try:
        proxy.match, proxy.mode = 'Action=RestoreDBInstanceFromDBSnapshot', 'delay'
        w = h.write('timeout.yaml', TIMED_OUT)
        r = h.engine('run', w, '--state-dir', h.tmp / 'state', '--report',
                     h.tmp / 'report.json', '--set', f'snapshot={snap}',
                     env=dict(srv().env(), AWS_ENDPOINT_URL=f'http://127.0.0.1:{proxy.port}'))
        out = r.stdout + r.stderr
        h.check(proxy.hits == 1, out)
        h.check(r.returncode == 1, out)
        h.check(report(h)['steps']['restore']['status'] == 'timed_out', out)
        h.check(report(h)['steps']['drop']['status'] == 'ok', out)
        h.check(instances() == before, (instances(), before, out))
    finally:
        proxy.close()


# ---- the shipped runbook ---------------------------------------------------------

RUNBOOK = pathlib.Path(__file__).resolve().parents[2] / 'runbooks' / 'managed-restore-test.yaml'


def restore_test(h, *sets, env=None):
    args = ['run', RUNBOOK, '--state-dir', h.tmp / 'state', '--report',
            h.tmp / 'report.json', '--evidence', h.tmp / 'evidence.md']
    for s in sets:
        args += ['--set', s]
    e = srv().env()
    e.update(env or {})
    return h.engine(*args, env=e, timeout=180)


@suite.test
def test_managed_restore_test_runbook(h):
    r = h.engine('validate', RUNBOOK)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    before = instances()
    # the newest automated snapshot (moto takes one when an instance is made)
    r = restore_test(h, f'source_instance={SOURCE}')
    out = r.stdout + r.stderr
    h.check(r.returncode == 0, out)
    rep = report(h)
    picked = rep['steps']['pick']['outputs']['picked']
    h.check(picked['type'] == 'automated' and picked['instance'] == SOURCE, picked)
    rest = rep['steps']['restore']['outputs']
    h.check(rest['instance'] == 'drill-' + rep['run_id'].lower(), rest)
    h.check(rest['source'] == picked['snapshot_id'], (rest, picked))
    slo = rep['slo']
    h.check(slo['rto_met'] and slo['rto_ms'] >= rest['restore_ms'], slo)
    h.check(slo['rpo_ms'] is not None and slo['rpo_met'], slo)
    ev = (h.tmp / 'evidence.md').read_text()
    h.check('total RTO' in ev and 'met' in ev, ev)
    h.check(f"name: `{picked['snapshot_id']}` (step `pick`)" in ev, ev)
    h.check(rep['steps']['evidence']['outputs']['recovery_point'] == picked['snapshot_id'],
            rep['steps']['evidence'])
    h.check(rep['steps']['delete-copy']['status'] == 'ok', rep['steps']['delete-copy'])
    h.check(instances() == before, (instances(), before))
    # a fresh snapshot, and the data checks asked for: the copy's endpoint
    # does not answer here, which is reported, and the restore still counts
    r = restore_test(h, f'source_instance={SOURCE}', 'fresh_snapshot=true',
                     'validate_data=true', 'reach_timeout=1s')
    out = r.stdout + r.stderr
    h.check(r.returncode == 0, out)
    rep = report(h)
    fresh = rep['steps']['fresh']['outputs']['snapshot_id']
    h.check(snapshot_exists(fresh), fresh)
    h.check(rep['steps']['reach']['status'] == 'failed', rep['steps']['reach'])
    h.check(rep['steps']['counts']['status'] == 'skipped', rep['steps']['counts'])
    h.check(rep['steps']['evidence']['outputs']['data_checked'] is False,
            rep['steps']['evidence'])
    h.check(instances() == before, (instances(), before))
    # the source is protected: a restore onto it is refused before anything
    r = restore_test(h, f'source_instance={SOURCE}', f'restore_instance={SOURCE}')
    h.check(r.returncode == 3, r.stdout + r.stderr)
    h.check(instances() == before, (instances(), before))


if __name__ == '__main__':
    suite.main()
