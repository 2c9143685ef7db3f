"""Streams end to end: postgres.dump to s3:// uploads while
pg_dump runs, postgres.restore from s3:// verifies the SHA-256 before the
restore commits, zstd compression by the engine, interrupted uploads leave
nothing visible, and sandbox_stop through `engine cleanup`. Real
PostgreSQL (h.pg) and a real moto server that checks SigV4, cross-checked
with boto3 and pg_restore."""
import glob
import hashlib
import json
import os
import pathlib
import signal
import subprocess
import time

from harness import Suite
from s3server import S3Server

suite = Suite(__file__)
BUCKET = 'engine-streams'
_srv = None
_src = None
ROWS = 120_000  # ~25 MB of text: long enough to interrupt an upload
BIG_ROWS = 360_000


def srv():
    global _srv
    if _srv is None:
        _srv = S3Server().start()
        _srv.make_bucket(BUCKET)
    return _srv


def sha(data):
    return hashlib.sha256(data).hexdigest()


def fx(name):
    return pathlib.Path(__file__).resolve().parent / 'fixtures' / 'streams' / name


def make_source(pg, db, rows):
    if db in pg.databases():
        return
    pg.psql(f'CREATE DATABASE "{db}"')
    pg.psql(f"""
        CREATE TABLE item (id int PRIMARY KEY, name text, body text);
        INSERT INTO item
          SELECT g, 'item ' || g,
                 md5(g::text) || ' ' || repeat(md5((g * 7)::text) || ' ', 5)
            FROM generate_series(1, {rows}) g;
        CREATE TABLE note (id serial PRIMARY KEY, item int REFERENCES item,
                           txt text);
        INSERT INTO note (item, txt)
          SELECT g, 'note ' || md5(g::text) FROM generate_series(1, 5000) g;
        """, db=db)


def source(h):
    global _src
    if _src is None:
        make_source(h.pg, 'streams_src', ROWS)
        _src = 'streams_src'
    return _src


def run(h, fixture, *sets, env=None, timeout=300, state=None):
    args = ['run', fx(fixture), '--state-dir', state or h.tmp / 'state',
            '--report', h.tmp / 'report.json']
    for s in sets:
        args += ['--set', s]
    e = srv().env()
    e.update(env or {})
    return h.engine(*args, env=e, timeout=timeout)


def outputs(h, step):
    return h.report(h.tmp / 'report.json')['steps'][step].get('outputs', {})


def out(r):
    return r.stdout + r.stderr


def digest(pg, db):
    """Row counts and an order-independent content hash per table."""
    return pg.psql("""
        SELECT 'item', count(*), sum(hashtext(t::text)::numeric) FROM item t
        UNION ALL
        SELECT 'note', count(*), sum(hashtext(t::text)::numeric) FROM note t
        ORDER BY 1""", db=db)


def exists(key):
    try:
        srv().client().head_object(Bucket=BUCKET, Key=key)
        return True
    except Exception as e:
        if '404' in str(e) or 'Not Found' in str(e):
            return False
        raise


def pending_uploads(key):
    ups = srv().client().list_multipart_uploads(Bucket=BUCKET)
    return [u for u in ups.get('Uploads', []) if u['Key'] == key]


def delete(key):
    srv().client().delete_object(Bucket=BUCKET, Key=key)


def drop(pg, db):
    pg.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def pg_bin(pg, tool):
    return os.path.join(pg.bindir, tool)


@suite.test
def test_dump_to_s3_read_back_by_boto3_and_pg_restore(h):
    src = source(h)
    key = 'dumps/src.dump'
    r = run(h, 'dump.yaml', f'url={h.pg.url(db=src)}', f'file=s3://{BUCKET}/{key}')
    h.check(r.returncode == 0, out(r))
    o = outputs(h, 'dump')
    h.check(o['file'] == f's3://{BUCKET}/{key}', o)
    obj = srv().client().get_object(Bucket=BUCKET, Key=key)
    body = obj['Body'].read()
    h.check(sha(body) == o['sha256'] and len(body) == o['bytes'], (len(body), o))
    h.check(obj['Metadata'].get('sha256') == o['sha256'], obj['Metadata'])
    h.check(o['bytes'] > 5 * 1024 * 1024, 'expected a multipart object')
    h.check(o['started_at'] <= o['finished_at'] and o['server_version'], o)
    f = h.tmp / 'back.dump'
    srv().client().download_file(BUCKET, key, str(f))
    lst = subprocess.run([pg_bin(h.pg, 'pg_restore'), '--list', str(f)],
                         capture_output=True, text=True)
    h.check(lst.returncode == 0 and 'TABLE DATA public item' in lst.stdout,
            lst.stderr + lst.stdout[:2000])
    h.check(pending_uploads(key) == [], 'an upload was left pending')
    delete(key)


@suite.test
def test_restore_multipart_object_written_by_boto3(h):
    from boto3.s3.transfer import TransferConfig
    src = source(h)
    f = h.tmp / 'src.dump'
    d = subprocess.run([pg_bin(h.pg, 'pg_dump'), '-Fc', '-Z1', '-f', str(f),
                        h.pg.url(db=src)], capture_output=True, text=True)
    h.check(d.returncode == 0, d.stderr)
    key = 'boto/src.dump'
    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024,
                         multipart_chunksize=5 * 1024 * 1024)
    data = f.read_bytes()
    srv().client().upload_file(str(f), BUCKET, key, Config=cfg,
                               ExtraArgs={'Metadata': {'sha256': sha(data)}})
    etag = srv().client().head_object(Bucket=BUCKET, Key=key)['ETag']
    h.check('-' in etag, f'not a multipart object: {etag}')
    db = 'streams_from_boto'
    drop(h.pg, db)
    try:
        r = run(h, 'restore.yaml', f'url={h.pg.url()}', f'file=s3://{BUCKET}/{key}',
                f'database={db}')
        h.check(r.returncode == 0, out(r))
        o = outputs(h, 'restore')
        h.check(o['sha256'] == sha(data) and o['verified'] is True, o)
        h.check(o['bytes'] == len(data) and o['tables'] == 2, o)
        h.check(digest(h.pg, db) == digest(h.pg, src), 'rows differ')
        # without the metadata the sha256 parameter is the reference
        delete(key)
        srv().client().upload_file(str(f), BUCKET, key, Config=cfg)
        drop(h.pg, db)
        r = run(h, 'restore.yaml', f'url={h.pg.url()}', f'file=s3://{BUCKET}/{key}',
                f'database={db}', f'sha256={sha(data)}')
        h.check(r.returncode == 0, out(r))
        h.check(outputs(h, 'restore')['verified'] is True, outputs(h, 'restore'))
    finally:
        drop(h.pg, db)
        delete(key)


def start_dump(h, key, extra=()):
    src = big_source(h)
    p = h.popen('run', fx('dump.yaml'), '--state-dir', h.tmp / 'state',
                '--set', f'url={h.pg.url(db=src)}',
                '--set', f'file=s3://{BUCKET}/{key}',
                '--set', 'concurrency=1', *extra, env=srv().env())
    deadline = time.time() + 60
    while time.time() < deadline:
        if pending_uploads(key):
            return p
        if p.poll() is not None:
            break
        time.sleep(0.02)
    p.kill()
    o, e = p.communicate()
    raise AssertionError('no multipart upload seen: ' + o + e)


def big_source(h):
    make_source(h.pg, 'streams_big', BIG_ROWS)
    return 'streams_big'


def run_id(h):
    runs = glob.glob(str(h.tmp / 'state' / 'runs' / '*'))
    h.check(len(runs) == 1, runs)
    return os.path.basename(runs[0])


@suite.test
def test_sigkill_mid_upload_then_cleanup(h):
    key = 'killed/big.dump'
    p = start_dump(h, key)
    time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)
    h.check(not exists(key), 'a partial object is visible')
    rid = run_id(h)
    jr = (h.tmp / 'state' / 'runs' / rid / 'journal').read_text()
    h.check('s3.abort_upload' in jr, 'the journal does not name the upload')
    r = h.engine('cleanup', rid, '--state-dir', h.tmp / 'state', env=srv().env())
    h.check(r.returncode == 0, out(r))
    h.check(pending_uploads(key) == [], 'cleanup left the upload pending')
    h.check(not exists(key), 'an object appeared')


@suite.test
def test_sigint_mid_upload_aborts(h):
    key = 'interrupted/big.dump'
    p = start_dump(h, key)
    time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    o, e = p.communicate(timeout=60)
    h.check(p.returncode == 5, f'exit {p.returncode}: {o}{e}')
    h.check(not exists(key), 'a partial object is visible')
    h.check(pending_uploads(key) == [], 'the upload was not aborted: ' + o + e)


@suite.test
def test_corrupted_object_fails_before_restore(h):
    src = source(h)
    key = 'corrupt/src.dump'
    r = run(h, 'dump.yaml', f'url={h.pg.url(db=src)}', f'file=s3://{BUCKET}/{key}',
            'format=plain')
    h.check(r.returncode == 0, out(r))
    good = outputs(h, 'dump')['sha256']
    c = srv().client()
    body = bytearray(c.get_object(Bucket=BUCKET, Key=key)['Body'].read())
    # change one row's text near the end: still valid SQL, wrong data
    i = body.rfind(b'item 1')
    h.check(i > 0, 'row not found')
    body[i + 5] = ord('9') if body[i + 5] != ord('9') else ord('8')
    c.put_object(Bucket=BUCKET, Key=key, Body=bytes(body), Metadata={'sha256': good})
    before = h.pg.databases()
    for fmt_key, data in ((key, body),):
        r = run(h, 'restore.yaml', f'url={h.pg.url()}', f'file=s3://{BUCKET}/{fmt_key}',
                'database=streams_corrupt')
        h.check(r.returncode == 1, out(r))
        h.check('checksum mismatch' in out(r), out(r))
        h.check(h.pg.databases() == before, 'a database was left')
        st = h.report(h.tmp / 'report.json')['steps']['restore']
        h.check(st['status'] == 'failed' and 'tables' not in st.get('outputs', {}), st)
    # the same for a custom archive (pg_restore), corrupted in its data
    key2 = 'corrupt/src2.dump'
    r = run(h, 'dump.yaml', f'url={h.pg.url(db=src)}', f'file=s3://{BUCKET}/{key2}',
            'compress=0')
    h.check(r.returncode == 0, out(r))
    good2 = outputs(h, 'dump')['sha256']
    body2 = bytearray(c.get_object(Bucket=BUCKET, Key=key2)['Body'].read())
    j = body2.rfind(b'item 1')
    body2[j + 5] = ord('9') if body2[j + 5] != ord('9') else ord('8')
    c.put_object(Bucket=BUCKET, Key=key2, Body=bytes(body2), Metadata={'sha256': good2})
    r = run(h, 'restore.yaml', f'url={h.pg.url()}', f'file=s3://{BUCKET}/{key2}',
            'database=streams_corrupt')
    h.check(r.returncode == 1 and 'checksum mismatch' in out(r), out(r))
    h.check(h.pg.databases() == before, 'a database was left')
    delete(key)
    delete(key2)


@suite.test
def test_zstd_round_trip_s3_and_local(h):
    src = source(h)
    key = 'zstd/src.dump.zst'
    local = h.tmp / 'out' / 'src.dump.zst'
    plain = h.tmp / 'plain.dump'
    r = run(h, 'dump.yaml', f'url={h.pg.url(db=src)}', f'file=s3://{BUCKET}/{key}',
            'compress=zstd:3')
    h.check(r.returncode == 0, out(r))
    so = outputs(h, 'dump')
    r = run(h, 'dump.yaml', f'url={h.pg.url(db=src)}', f'file={local}',
            'compress=zstd')
    h.check(r.returncode == 0, out(r))
    lo = outputs(h, 'dump')
    h.check(lo['sha256'] == sha(local.read_bytes()), lo)
    h.check(local.read_bytes()[:4] == b'\x28\xb5\x2f\xfd', 'not zstd')
    h.check(not pathlib.Path(str(local) + '.partial').exists())
    r = run(h, 'dump.yaml', f'url={h.pg.url(db=src)}', f'file={plain}', 'compress=0')
    h.check(r.returncode == 0, out(r))
    body = srv().client().get_object(Bucket=BUCKET, Key=key)['Body'].read()
    h.check(sha(body) == so['sha256'], so)
    h.check(so['bytes'] < plain.stat().st_size * 0.8,
            f"zstd object {so['bytes']} vs plain {plain.stat().st_size}")
    h.check(so['compression'] == 'zstd:3' and so['plain_bytes'] > so['bytes'], so)
    want = digest(h.pg, src)
    for name, f in (('streams_zs3', f's3://{BUCKET}/{key}'), ('streams_zlocal', str(local))):
        drop(h.pg, name)
        try:
            r = run(h, 'restore.yaml', f'url={h.pg.url()}', f'file={f}',
                    f'database={name}')
            h.check(r.returncode == 0, out(r))
            o = outputs(h, 'restore')
            h.check(o['format'] == 'custom', o)
            h.check(digest(h.pg, name) == want, f'{name}: rows differ')
        finally:
            drop(h.pg, name)
    delete(key)


@suite.test
def test_restore_from_s3_with_jobs_leaves_no_temp_file(h):
    src = source(h)
    key = 'jobs/src.dump'
    db = 'streams_jobs'
    drop(h.pg, db)
    try:
        r = run(h, 'cycle.yaml', f'url={h.pg.url(db=src)}', f'file=s3://{BUCKET}/{key}',
                f'database={db}', 'jobs=2', 'compress=zstd')
        h.check(r.returncode == 0, out(r))
        h.check(digest(h.pg, db) == digest(h.pg, src), 'rows differ')
        o = outputs(h, 'restore')
        h.check(o['verified'] is True and o['sha256'] == outputs(h, 'dump')['sha256'], o)
        left = [f for f in glob.glob(str(h.tmp / 'state' / 'runs' / '*' / '*'))
                if 'download' in f or f.endswith('.partial')]
        h.check(left == [], f'temporary files left: {left}')
        h.check('downloading' in out(r), out(r))
    finally:
        drop(h.pg, db)
        delete(key)


@suite.test
def test_errors_people_can_act_on(h):
    src = source(h)
    # a missing object: nothing is created
    before = h.pg.databases()
    r = run(h, 'restore.yaml', f'url={h.pg.url()}', f'file=s3://{BUCKET}/no/such.dump',
            'database=streams_missing')
    h.check(r.returncode == 1, out(r))
    h.check('no/such.dump' in out(r), out(r))
    h.check(h.pg.databases() == before, 'a database was created')
    # a wrong secret on dump: no object, the secret never shown
    bad = 'wrong-secret-value-123'
    r = run(h, 'dump.yaml', f'url={h.pg.url(db=src)}', f'file=s3://{BUCKET}/x/denied.dump',
            env={'AWS_SECRET_ACCESS_KEY': bad})
    h.check(r.returncode == 1, out(r))
    h.check('403' in out(r) or 'ignature' in out(r), out(r))
    h.check(bad not in out(r), 'the secret leaked')
    h.check(not exists('x/denied.dump'), 'an object was made')
    # a missing bucket
    r = run(h, 'dump.yaml', f'url={h.pg.url(db=src)}', 'file=s3://no-such-bucket-x/a.dump')
    h.check(r.returncode == 1 and 'no-such-bucket-x' in out(r), out(r))
    # a directory dump to a URL needs a prefix (one object per file)
    r = run(h, 'dump.yaml', f'url={h.pg.url(db=src)}', f'file=s3://{BUCKET}/d',
            'format=directory')
    h.check(r.returncode != 0 and "end file with '/'" in out(r), out(r))
    h.check(not exists('d'), 'an object was made')
    # a refused connection to the store
    r = run(h, 'dump.yaml', f'url={h.pg.url(db=src)}', f'file=s3://{BUCKET}/x/y.dump',
            env={'AWS_ENDPOINT_URL': 'http://127.0.0.1:9'})
    h.check(r.returncode == 1, out(r))
    h.check('127.0.0.1:9' in out(r) or 'refused' in out(r).lower(), out(r))


def pg_running(data_dir):
    pidf = pathlib.Path(data_dir) / 'postmaster.pid'
    if not pidf.exists():
        return False
    pid = int(pidf.read_text().split('\n')[0])
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


@suite.test
def test_sandbox_stop_via_cleanup_after_sigkill(h):
    p = h.popen('run', fx('sandbox-wait.yaml'), '--state-dir', h.tmp / 'state')
    data = None
    deadline = time.time() + 90
    while time.time() < deadline and data is None:
        for jf in glob.glob(str(h.tmp / 'state' / 'runs' / '*' / 'journal')):
            for line in pathlib.Path(jf).read_text().splitlines():
                j = json.loads(line)
                if j.get('kind') == 'sandbox' and j.get('event') == 'intent':
                    data = j['detail']['data_dir']
        time.sleep(0.1)
    h.check(data is not None, 'no sandbox in the journal')
    # wait until the server runs
    while time.time() < deadline and not pg_running(data):
        if p.poll() is not None:
            raise AssertionError('the engine ended early: ' + ''.join(p.communicate()))
        time.sleep(0.1)
    time.sleep(1.0)  # the sandbox step ends, the sleep step starts
    h.check(pg_running(data), 'the sandbox server does not run')
    pid = int((pathlib.Path(data) / 'postmaster.pid').read_text().split('\n')[0])
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)
    h.check(pg_running(data), 'the server should survive a SIGKILLed engine')
    rid = run_id(h)
    r = h.engine('cleanup', rid, '--state-dir', h.tmp / 'state', timeout=120)
    h.check(r.returncode == 0, out(r))
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f'postgres {pid} still runs after cleanup')
    h.check(not pathlib.Path(data).exists(), 'the data directory was not removed')
    h.check(not pathlib.Path(data).parent.exists(), 'the sandbox directory remains')
    r = h.engine('cleanup', rid, '--state-dir', h.tmp / 'state')
    h.check(r.returncode == 0 and 'nothing to clean up' in r.stdout, out(r))


@suite.test
def test_sandbox_stop_refuses_foreign_directories(h):
    d = h.tmp / 'notasandbox'
    (d / 'data').mkdir(parents=True)
    h.write('stop.yaml', f"""version: 1
name: stop-foreign
steps:
  - id: stop
    uses: postgres.sandbox_stop
    with: {{dir: "{d}", data_dir: "{d}/data"}}
""")
    r = h.engine('run', h.tmp / 'stop.yaml', '--state-dir', h.tmp / 'state')
    h.check(r.returncode != 0 and 'refused' in out(r), out(r))
    h.check((d / 'data').exists(), 'a foreign directory was removed')


if __name__ == '__main__':
    try:
        suite.main()
    finally:
        if _srv is not None:
            _srv.stop()
