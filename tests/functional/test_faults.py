"""Faults injected against real servers: S3 (moto) through a proxy that
resets, stalls, cuts and answers 503 SlowDown; PostgreSQL stopped during
a restore and restarted during a dump; the run directory on a full file
system; a child process that ignores SIGTERM when its step times out.

Every case ends with exit 1 (never 0), a message that names what failed,
nothing left behind after `finally` (no pending multipart upload, no
restored database, no process), and an audit log that verifies and ends
with run.end."""
import glob
import json
import os
import pathlib
import subprocess
import tempfile
import time

from harness import Suite, tmpfs, umount
from faultproxy import FaultProxy
from s3server import S3Server

suite = Suite(__file__)
BUCKET = 'engine-faults'
_srv = None
_proxy = None


def srv():
    global _srv, _proxy
    if _srv is None:
        _srv = S3Server().start()
        _srv.make_bucket(BUCKET)
        _proxy = FaultProxy('127.0.0.1', _srv.port).start()
    return _srv


def proxy():
    srv()
    return _proxy


def fresh():
    """The proxy without rules, for a new test."""
    proxy().clear()
    return _proxy


def run_dir(h, state='state'):
    runs = glob.glob(str(h.tmp / state / 'runs' / '*'))
    assert len(runs) == 1, runs
    return pathlib.Path(runs[0])


def audit_whole(h, rd):
    """The audit log verifies and its last record is run.end."""
    v = h.engine('audit', 'verify', rd / 'audit.jsonl')
    h.check(v.returncode == 0, 'audit verify: ' + v.stdout + v.stderr)
    recs = [json.loads(l) for l in (rd / 'audit.jsonl').read_text().splitlines()]
    h.check(recs and recs[-1]['type'] == 'run.end', [r['type'] for r in recs][-4:])
    return recs


def pending_uploads(key):
    ups = srv().client().list_multipart_uploads(Bucket=BUCKET)
    return [u for u in ups.get('Uploads', []) if u['Key'] == key]


def exists(key):
    return srv().exists(BUCKET, key)


PUT = """version: 1
name: faults-put
params:
  file: {required: true}
  url: {required: true}
steps:
  - id: put
    uses: s3.put
    timeout: TIMEOUT
    with:
      file: ${params.file}
      url: ${params.url}
      part_size: 5242880
      concurrency: 2
"""


def s3_put(h, key, timeout='60s', size=17 * 1024 * 1024 + 5):
    f = h.tmp / 'big.bin'
    if not f.exists():
        f.write_bytes(os.urandom(size))
    rb = h.write('put.yaml', PUT.replace('TIMEOUT', timeout))
    env = srv().env(AWS_ENDPOINT_URL=proxy().endpoint)
    t0 = time.time()
    r = h.engine('run', rb, '--set', f'file={f}',
                 '--set', f'url=s3://{BUCKET}/{key}',
                 '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r.json',
                 env=env, timeout=180)
    return r, time.time() - t0


def step(h, sid):
    return h.report(h.tmp / 'r.json')['steps'][sid]


# ---- S3 -------------------------------------------------------------------------


@suite.test
def test_s3_part_reset_once_is_retried(h):
    """A part upload reset mid-body once: the plugin retries that part and
    the object arrives whole."""
    key = 'faults/reset-once.bin'
    fresh().add('reset', method='PUT', query='partNumber=2', after=1 << 20, times=1)
    r, _ = s3_put(h, key)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(proxy().count('reset') == 1, proxy().hits)
    body = srv().client().get_object(Bucket=BUCKET, Key=key)['Body'].read()
    h.check(body == (h.tmp / 'big.bin').read_bytes(), 'the object differs')
    h.check(pending_uploads(key) == [], 'upload left pending')
    audit_whole(h, run_dir(h))


@suite.test
def test_s3_part_reset_every_time_fails_and_aborts(h):
    """Every attempt at part 2 is reset mid-body: the step fails naming the
    part's request and the reset, the multipart upload is aborted, no
    object appears."""
    key = 'faults/reset.bin'
    fresh().add('reset', method='PUT', query='partNumber=2', after=1 << 20)
    r, _ = s3_put(h, key)
    h.check(r.returncode == 1, r.stdout + r.stderr)
    err = step(h, 'put')['error']
    h.check(step(h, 'put')['status'] == 'failed', step(h, 'put'))
    h.check(key in err and ('reset' in err.lower() or 'recv' in err.lower()
                            or 'send' in err.lower()), err)
    h.check(proxy().count('reset') == 3, proxy().hits)
    h.check(not exists(key), 'a partial object is visible')
    h.check(pending_uploads(key) == [], 'the multipart upload was not aborted')
    audit_whole(h, run_dir(h))


@suite.test
def test_s3_stall_longer_than_timeout(h):
    """A part upload stalls (the connection stays open, nothing answers)
    longer than the step's timeout: the step ends timed_out at its
    timeout, the upload is aborted."""
    key = 'faults/stall.bin'
    fresh().add('stall', method='PUT', query='partNumber=1', seconds=60)
    r, took = s3_put(h, key, timeout='3s')
    h.check(r.returncode == 1, r.stdout + r.stderr)
    st = step(h, 'put')
    h.check(st['status'] == 'timed_out', st)
    h.check('timed out after 3.0s' in st['error'] and 'aborted' in st['error'], st)
    h.check(took < 30, f'took {took:.1f}s')
    h.check(not exists(key), 'a partial object is visible')
    h.check(pending_uploads(key) == [], 'the multipart upload was not aborted')
    audit_whole(h, run_dir(h))


@suite.test
def test_s3_complete_503_slowdown(h):
    """CompleteMultipartUpload answers 503 SlowDown every time: retried,
    then the step fails naming SlowDown, and the upload is aborted."""
    key = 'faults/slowdown.bin'
    fresh().add('status', method='POST', query='uploadId=', status=503)
    r, _ = s3_put(h, key)
    h.check(r.returncode == 1, r.stdout + r.stderr)
    st = step(h, 'put')
    h.check(st['status'] == 'failed', st)
    h.check('SlowDown' in st['error'] and '503' in st['error'], st)
    h.check(proxy().count('status') == 3, proxy().hits)
    h.check(not exists(key), 'the object appeared')
    h.check(pending_uploads(key) == [], 'the multipart upload was not aborted')
    # a single 503 is retried and the upload completes
    proxy().clear()
    proxy().add('status', method='POST', query='uploadId=', status=503, times=1)
    h.tmp.joinpath('state').rename(h.tmp / 'state-1')
    r, _ = s3_put(h, key)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(exists(key) and pending_uploads(key) == [], 'not completed')
    audit_whole(h, run_dir(h))


DUMP = """version: 1
name: faults-dump
params:
  url: {secret: true, required: true}
  file: {required: true}
steps:
  - id: dump
    uses: postgres.dump
    with: {url: "${params.url}", file: "${params.file}"}
"""

RESTORE = """version: 1
name: faults-restore
params:
  url: {secret: true, required: true}
  src: {required: true}
  db: {required: true}
steps:
  - id: restore
    uses: postgres.restore
    with: {url: "${params.url}", file: "${params.src}", database: "${params.db}"}
  - id: counts
    uses: postgres.row_counts
    with: {url: "${steps.restore.outputs.url}"}
finally:
  - id: drop
    uses: postgres.drop_database
    with: {url: "${params.url}", database: "${params.db}", if_exists: true, force: true}
"""


def make_source(pg, name, rows):
    pg.psql(f'DROP DATABASE IF EXISTS "{name}"')
    pg.psql(f'CREATE DATABASE "{name}"')
    pg.psql('CREATE TABLE t(id int primary key, v text, w text); '
            f"INSERT INTO t SELECT g, md5(g::text), md5((g * 7)::text) "
            f"FROM generate_series(1, {rows}) g", db=name)
    return pg.url(name)


def db_exists(pg, name):
    return pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'").strip() == '1'


@suite.test
def test_s3_download_cut_during_restore(h):
    """The object a restore streams from S3 is cut in the middle: the
    restore fails naming the transfer, the half-restored database is
    dropped, nothing is left."""
    fresh()
    src = make_source(h.pg, 'faults_src_cut', 120000)
    env = srv().env(AWS_ENDPOINT_URL=proxy().endpoint)
    key = 'faults/src.dump'
    r = h.engine('run', h.write('dump.yaml', DUMP), '--set', f'url={src}',
                 '--set', f'file=s3://{BUCKET}/{key}', '--state-dir', h.tmp / 's0',
                 env=env)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    size = srv().client().head_object(Bucket=BUCKET, Key=key)['ContentLength']
    h.check(size > 2 << 20, f'dump too small to cut: {size}')
    proxy().add('cut', method='GET', path=key, after=size // 2)
    name = 'faults_cut_target'
    r = h.engine('run', h.write('restore.yaml', RESTORE), '--set', f'url={h.pg.url()}',
                 '--set', f'src=s3://{BUCKET}/{key}', '--set', f'db={name}',
                 '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r.json', env=env)
    h.check(r.returncode == 1, r.stdout + r.stderr)
    h.check(proxy().count('cut') >= 1, proxy().hits)
    st = step(h, 'restore')
    h.check(st['status'] == 'failed', st)
    h.check(key in st['error'], st['error'])
    h.check(not db_exists(h.pg, name), 'the half-restored database is still there')
    h.check(step(h, 'drop')['status'] == 'ok', step(h, 'drop'))
    audit_whole(h, run_dir(h))


# ---- PostgreSQL stopped and restarted ------------------------------------------

_own_pg = None


def own_pg():
    """A server of its own: these tests stop and restart it."""
    global _own_pg
    if _own_pg is None:
        import atexit
        from pgserver import PgServer
        _own_pg = PgServer().start(tempfile.mkdtemp(prefix='engine-pg-faults-'))
        atexit.register(_own_pg.stop)
        make_source(_own_pg, 'big', 600000)
    return _own_pg


def pg_ctl(pg, *args):
    r = subprocess.run(pg._as_user([f'{pg.bindir}/pg_ctl', '-D', pg.data, '-w',
                                    '-t', '60', '-l', os.path.join(pg.base, 'server.log'),
                                    *args]), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def wait_for(pred, timeout=60):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return False


@suite.test
def test_pg_stopped_during_restore(h):
    """The server stops (immediate shutdown) while a restore runs: the
    step fails naming the lost connection; `finally` cannot reach the
    server either and says so; once the server is back `engine cleanup`
    drops what the run created."""
    pg = own_pg()
    dump = h.tmp / 'big.dump'
    r = h.engine('run', h.write('dump.yaml', DUMP), '--set', f'url={pg.url("big")}',
                 '--set', f'file={dump}', '--state-dir', h.tmp / 's0')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    name = 'faults_stopped_target'
    p = h.popen('run', h.write('restore.yaml', RESTORE), '--set', f'url={pg.url()}',
                '--set', f'src={dump}', '--set', f'db={name}',
                '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r.json')
    try:
        h.check(wait_for(lambda: db_exists(pg, name)), 'the restore never started')
        time.sleep(0.3)
        pg_ctl(pg, '-m', 'immediate', 'stop')
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
        pg_ctl(pg, 'start')
    h.check(p.returncode == 1, out + err)
    st = step(h, 'restore')
    h.check(st['status'] == 'failed', st)
    e = st['error'].lower()
    h.check('connection' in e or 'server' in e or 'terminat' in e, st['error'])
    rd = run_dir(h)
    audit_whole(h, rd)
    if db_exists(pg, name):
        c = h.engine('cleanup', rd.name, '--state-dir', h.tmp / 'state',
                     '--set', f'url={pg.url()}')
        h.check(c.returncode == 0, c.stdout + c.stderr)
    h.check(not db_exists(pg, name), 'the half-restored database was left behind')


@suite.test
def test_pg_restarted_during_dump(h):
    """The server restarts (immediate) while pg_dump reads: the dump fails
    naming pg_dump and the connection, and no dump file is left that a
    later restore could take for a whole one."""
    pg = own_pg()
    out_file = h.tmp / 'out' / 'big.dump'
    p = h.popen('run', h.write('dump.yaml', DUMP), '--set', f'url={pg.url("big")}',
                '--set', f'file={out_file}', '--state-dir', h.tmp / 'state',
                '--report', h.tmp / 'r.json')
    try:
        h.check(wait_for(lambda: out_file.parent.exists() and any(
            f.stat().st_size > 0 for f in out_file.parent.iterdir())), 'the dump never started')
        pg_ctl(pg, '-m', 'immediate', 'restart')
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    h.check(p.returncode == 1, out + err)
    st = step(h, 'dump')
    h.check(st['status'] == 'failed', st)
    h.check('pg_dump' in st['error'], st['error'])
    h.check(not out_file.exists(), 'a partial dump is left under the final name')
    audit_whole(h, run_dir(h))


# ---- a full file system ------------------------------------------------------------


FILL = """version: 1
name: faults-full
params:
  url: {secret: true, required: true}
  db: {required: true}
steps:
  - id: fill
    uses: shell
    with:
      command: "head -c 100000000 /dev/zero > $ENGINE_RUN_DIR/filler || true"
NOOPS  - id: restore
    uses: postgres.restore
    with: {url: "${params.url}", file: "DUMPFILE", database: "${params.db}"}
  - id: chatty
    needs: [restore]
    if: always()
    uses: lua
    with:
      script: |
        for i = 1, 3000 do engine.log(string.rep("x", 100) .. i) end
finally:
  - id: drop
    uses: postgres.drop_database
    with: {url: "${params.url}", database: "${params.db}", if_exists: true, force: true}
"""


@suite.test
def test_full_disk_for_the_dump_file(h):
    """The dump's target fills up: the step fails with 'No space left',
    the run fails, no partial dump is left under the final name."""
    d, why = tmpfs(h, '2m')
    if d is None:
        print('SKIP test_full_disk_for_the_dump_file:', why)
        return
    try:
        src = make_source(h.pg, 'faults_src_full', 120000)
        out_file = d / 'big.dump'
        r = h.engine('run', h.write('dump.yaml', DUMP), '--set', f'url={src}',
                     '--set', f'file={out_file}', '--state-dir', h.tmp / 'state',
                     '--report', h.tmp / 'r.json')
        h.check(r.returncode == 1, r.stdout + r.stderr)
        st = step(h, 'dump')
        h.check(st['status'] == 'failed', st)
        h.check('No space left' in st['error'] or 'space' in st['error'], st['error'])
        h.check(not out_file.exists(), 'a partial dump is left under the final name')
        audit_whole(h, run_dir(h))
    finally:
        umount(d)


@suite.test
def test_full_disk_for_journal_and_audit_log(h):
    """The run directory itself fills up (a step fills it): the journal
    cannot record the restore's intent, so the restore does not create
    the database; the audit log runs into its reserve and stops taking
    log lines; the run fails and says both, never reports ok, and the
    audit log still verifies and ends with run.end."""
    d, why = tmpfs(h, '1m')
    if d is None:
        print('SKIP test_full_disk_for_journal_and_audit_log:', why)
        return
    try:
        src = make_source(h.pg, 'faults_src_full2', 2000)
        dump = h.tmp / 'small.dump'
        r = h.engine('run', h.write('dump.yaml', DUMP), '--set', f'url={src}',
                     '--set', f'file={dump}', '--state-dir', h.tmp / 's0')
        h.check(r.returncode == 0, r.stdout + r.stderr)
        name = 'faults_full_target'
        # steps whose journal records use up the journal's last page
        noops = ''.join(f'  - {{id: n{i}, uses: sleep, with: {{for: 1ms}}}}\n' for i in range(60))
        rb = h.write('fill.yaml', FILL.replace('DUMPFILE', str(dump)).replace('NOOPS', noops))
        r = h.engine('run', rb, '--set', f'url={h.pg.url()}', '--set', f'db={name}',
                     '--state-dir', d / 'state', '--report', h.tmp / 'r.json')
        text = r.stdout + r.stderr
        h.check(r.returncode == 1, text)
        h.check('succeeded' not in text, text)
        h.check('cannot write the journal' in r.stderr and 'No space left' in r.stderr, text)
        h.check('cannot write the audit log: No space left' in r.stderr, r.stderr)
        h.check(not db_exists(h.pg, name), 'the restore ran without its journal record')
        rep = h.report(h.tmp / 'r.json')
        h.check(rep['steps']['restore']['status'] == 'failed', rep['steps']['restore'])
        h.check('journal' in rep['steps']['restore']['error'], rep['steps']['restore'])
        h.check(rep['status'] != 'ok', rep['status'])
        rd = pathlib.Path(glob.glob(str(d / 'state' / 'runs' / '*'))[0])
        recs = audit_whole(h, rd)
        h.check(recs[-1]['status'] == 'failed', recs[-1])
    finally:
        umount(d)


# ---- a child that ignores SIGTERM -------------------------------------------------


@suite.test
def test_child_ignoring_sigterm_is_killed_after_grace(h):
    """A step's process (and its child) ignore SIGTERM when the step times
    out: after the grace they are killed, the step ends timed_out,
    `finally` runs, and no process is left."""
    marker = f'faults-deaf-{os.getpid()}-{int(time.time())}'
    cmd = (f"trap '' TERM; sh -c 'sleep 3171; : {marker}' & "
           f"sh -c 'sleep 3172; : {marker}'; wait")
    rb = h.write('deaf.yaml', 'version: 1\nname: faults-deaf\nsteps:\n'
                 '  - id: deaf\n    uses: shell\n    timeout: 1s\n'
                 f'    with: {{command: {json.dumps(cmd)}}}\n'
                 'finally:\n  - id: fin\n    uses: shell\n'
                 '    with: {command: "touch $ENGINE_RUN_DIR/finally-ran"}\n')
    t0 = time.time()
    r = h.engine('run', rb, '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r.json',
                 '--cancel-grace', '2s', timeout=60)
    took = time.time() - t0
    h.check(r.returncode == 1, r.stdout + r.stderr)
    st = step(h, 'deaf')
    h.check(st['status'] == 'timed_out', st)
    h.check(took < 20, f'took {took:.1f}s')
    time.sleep(0.2)
    for pat in (marker, 'sleep 317[12]'):
        ps = subprocess.run(['pgrep', '-af', pat], capture_output=True, text=True)
        h.check(ps.stdout.strip() == '', 'processes left: ' + ps.stdout)
    rd = run_dir(h)
    h.check((rd / 'finally-ran').exists(), r.stdout)
    audit_whole(h, rd)


if __name__ == '__main__':
    suite.main()
