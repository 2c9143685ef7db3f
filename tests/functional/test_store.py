"""The s3 plugin's state store (ABI 1.3: what `--state-dir s3://...` uses)
against a real moto server that checks SigV4 signatures, cross-checked with
boto3: conditional writes (create-only, compare and swap), conditional
deletes, the SHA-256 kept with each object, listing over several pages,
awkward keys, credential and bucket errors, retries after a lost answer.

The store is driven by build/tests/plugins/store_probe, which dlopens the
built s3.so and runs one store operation per invocation."""
import base64
import concurrent.futures
import hashlib
import os
import pathlib
import subprocess

from faultproxy import FaultProxy
from harness import ROOT, Suite
from s3server import shared

suite = Suite(__file__)
BUCKET = 'engine-store'

# exit status of store_probe: -rc of the eng_err
OK, INVALID, EXISTS, NOTFOUND, AUTH, CHECKSUM = 0, 1, 9, 8, 12, 14


def srv():
    return shared(BUCKET)


def build_dir():
    engine = os.environ.get('ENGINE_BIN')
    if engine:
        return pathlib.Path(engine).resolve().parent.parent
    for cand in ('build', 'build-asan'):
        if (ROOT / cand / 'tests/plugins/store_probe').exists():
            return ROOT / cand
    raise RuntimeError('store_probe not built: build the tree first')


def probe(h, url, op, key, *args, env=None, data=None):
    """Run one store operation; returns CompletedProcess (bytes)."""
    b = build_dir()
    argv = [str(b / 'tests/plugins/store_probe'), str(b / 'plugins/s3/s3.so'),
            url, op, key]
    if data is not None:
        f = h.tmp / 'body.bin'
        f.write_bytes(data)
        argv.append(str(f))
    argv += list(args)
    e = dict(os.environ)
    e.update(srv().env())
    e.update(env or {})
    return subprocess.run(argv, env=e, capture_output=True, timeout=120)


def url(prefix='state'):
    return f's3://{BUCKET}/{prefix}'


def text(r):
    return r.stderr.decode(errors='replace')


def put(h, key, data, cond=None, prefix='state', **kw):
    r = probe(h, url(prefix), 'put', key, *([cond] if cond else []),
              data=data, **kw)
    return r, r.stdout.decode().strip()


def boto_get(key):
    o = srv().client(lenient=True).get_object(Bucket=BUCKET, Key=key)
    return o['Body'].read(), o


def exists(key):
    try:
        srv().client(lenient=True).head_object(Bucket=BUCKET, Key=key)
        return True
    except Exception as e:  # botocore ClientError 404
        if '404' in str(e) or 'Not Found' in str(e):
            return False
        raise


def sha(data):
    return hashlib.sha256(data).hexdigest()


@suite.test
def test_put_is_what_boto3_reads_with_its_sha256(h):
    data = os.urandom(70_000)
    r, etag = put(h, 'runs/r1/journal', data)
    h.check(r.returncode == OK, text(r))
    body, o = boto_get('state/runs/r1/journal')
    h.check(body == data, 'boto3 reads other bytes')
    h.check(o['Metadata'].get('sha256') == sha(data), o['Metadata'])
    h.check(o['ETag'] == etag, (o['ETag'], etag))
    head = srv().client().head_object(Bucket=BUCKET, Key='state/runs/r1/journal',
                                      ChecksumMode='ENABLED')
    want = base64.b64encode(hashlib.sha256(data).digest()).decode()
    h.check(head.get('ChecksumSHA256') == want, head)
    # and back through the store, with the same ETag
    g = probe(h, url(), 'get', 'runs/r1/journal')
    h.check(g.returncode == OK, text(g))
    h.check(g.stdout == data, 'get returned other bytes')
    h.check(f'etag: {etag}' in text(g), text(g))
    # an empty object too
    r, _ = put(h, 'runs/r1/empty', b'')
    h.check(r.returncode == OK, text(r))
    g = probe(h, url(), 'get', 'runs/r1/empty')
    h.check(g.returncode == OK and g.stdout == b'', text(g))


@suite.test
def test_create_only_refuses_an_existing_object(h):
    first = b'lock held by run A\n'
    r, etag = put(h, 'locks/nightly', first, '*')
    h.check(r.returncode == OK, text(r))
    r, _ = put(h, 'locks/nightly', b'lock held by run B\n', '*')
    h.check(r.returncode == EXISTS, (r.returncode, text(r)))
    h.check('ENG_ERR_EXISTS' in text(r), text(r))
    h.check('condition did not hold' in text(r), text(r))
    h.check('locks/nightly' in text(r) and BUCKET in text(r), text(r))
    body, o = boto_get('state/locks/nightly')
    h.check(body == first, body)
    h.check(o['ETag'] == etag, 'the object changed')


@suite.test
def test_compare_and_swap_with_etags(h):
    r, e1 = put(h, 'locks/cas', b'owner A, lease 1\n', '*')
    h.check(r.returncode == OK, text(r))
    r, e2 = put(h, 'locks/cas', b'owner A, lease 2\n', e1)
    h.check(r.returncode == OK, text(r))
    h.check(e2 and e2 != e1, (e1, e2))
    _, o = boto_get('state/locks/cas')
    h.check(o['ETag'] == e2, (o['ETag'], e2))
    # the stale ETag no longer matches: nothing is written
    r, _ = put(h, 'locks/cas', b'owner B, took over\n', e1)
    h.check(r.returncode == EXISTS, (r.returncode, text(r)))
    h.check('condition did not hold' in text(r), text(r))
    body, _ = boto_get('state/locks/cas')
    h.check(body == b'owner A, lease 2\n', body)
    # an ETag on an object that is gone does not hold either
    r, _ = put(h, 'locks/never-taken', b'x', e2)
    h.check(r.returncode == EXISTS, (r.returncode, text(r)))
    h.check(not exists('state/locks/never-taken'), 'created')


@suite.test
def test_conditional_delete(h):
    r, e1 = put(h, 'locks/del', b'lease 1\n')
    h.check(r.returncode == OK, text(r))
    r, e2 = put(h, 'locks/del', b'lease 2\n')
    h.check(r.returncode == OK and e2 != e1, text(r))
    d = probe(h, url(), 'del', 'locks/del', e1)
    h.check(d.returncode == EXISTS, (d.returncode, text(d)))
    h.check('condition did not hold' in text(d), text(d))
    h.check(exists('state/locks/del'), 'a stale ETag deleted it')
    d = probe(h, url(), 'del', 'locks/del', e2)
    h.check(d.returncode == OK, text(d))
    h.check(not exists('state/locks/del'), 'still there')
    # deleting what is not there is fine
    d = probe(h, url(), 'del', 'locks/del')
    h.check(d.returncode == OK, text(d))


@suite.test
def test_get_refuses_bytes_that_do_not_match_their_sha256(h):
    c = srv().client()
    data = b'{"run": "r2", "steps": []}\n'
    c.put_object(Bucket=BUCKET, Key='state/runs/r2/report.json', Body=data,
                 Metadata={'sha256': sha(b'something else')})
    g = probe(h, url(), 'get', 'runs/r2/report.json')
    h.check(g.returncode == CHECKSUM, (g.returncode, text(g)))
    h.check('ENG_ERR_CHECKSUM' in text(g) and 'runs/r2/report.json' in text(g),
            text(g))
    h.check(g.stdout == b'', 'damaged bytes were handed out')
    # the same bytes with their right SHA-256 are read
    c.put_object(Bucket=BUCKET, Key='state/runs/r2/report.json', Body=data,
                 Metadata={'sha256': sha(data)})
    g = probe(h, url(), 'get', 'runs/r2/report.json')
    h.check(g.returncode == OK and g.stdout == data, text(g))


@suite.test
def test_missing_key_and_missing_bucket(h):
    g = probe(h, url(), 'get', 'runs/none/journal')
    h.check(g.returncode == NOTFOUND, (g.returncode, text(g)))
    h.check('runs/none/journal' in text(g), text(g))
    g = probe(h, 's3://engine-no-such-bucket/state', 'get', 'runs/x/journal')
    h.check(g.returncode == NOTFOUND, (g.returncode, text(g)))
    h.check("bucket 'engine-no-such-bucket' does not exist" in text(g), text(g))
    p = probe(h, 's3://engine-no-such-bucket/state', 'put', 'locks/a', '*',
              data=b'x')
    h.check(p.returncode == NOTFOUND, (p.returncode, text(p)))
    h.check('engine-no-such-bucket' in text(p), text(p))


def make_keys(keys):
    c = srv().client()
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda k: c.put_object(Bucket=BUCKET, Key=k,
                                           Body=k.encode()), keys))


@suite.test
def test_list_every_page_in_order_relative_to_the_prefix(h):
    names = [f'runs/r{i:05d}/journal' for i in range(1003)]
    make_keys([f'big/{n}' for n in names] +
              ['big/other/x', 'bigger/runs/r00001/journal', 'big-runs'])
    # listed in reverse creation order would still come back sorted
    r = probe(h, url('big/'), 'list', 'runs/')
    h.check(r.returncode == OK, text(r))
    lines = r.stdout.decode().splitlines()
    got = [ln.rsplit(' ', 1) for ln in lines]
    h.check([k for k, _ in got] == sorted(names), (len(got), lines[:3]))
    h.check(all(int(s) == len(f'big/{k}') for k, s in got), lines[:3])
    # the whole store: the extra key, nothing of the neighbours
    r = probe(h, url('big'), 'list', '')
    keys = [ln.rsplit(' ', 1)[0] for ln in r.stdout.decode().splitlines()]
    h.check(r.returncode == OK and len(keys) == 1004, (len(keys), text(r)))
    h.check(keys == sorted(keys) and keys[-1] == 'runs/r01002/journal'
            and 'other/x' in keys, keys[-3:])


@suite.test
def test_keys_with_spaces_and_plus(h):
    for key in ('runs/a b/journal', 'runs/c+d/audit log', 'locks/x+y z'):
        data = ('bytes of ' + key).encode()
        r, etag = put(h, key, data, '*')
        h.check(r.returncode == OK, (key, text(r)))
        body, o = boto_get('state/' + key)
        h.check(body == data and o['ETag'] == etag, key)
        g = probe(h, url(), 'get', key)
        h.check(g.returncode == OK and g.stdout == data, (key, text(g)))
    r = probe(h, url(), 'list', 'runs/c+d/')
    h.check(r.returncode == OK, text(r))
    h.check(r.stdout.decode().splitlines() ==
            [f'runs/c+d/audit log {len(b"bytes of runs/c+d/audit log")}'],
            r.stdout)
    d = probe(h, url(), 'del', 'locks/x+y z')
    h.check(d.returncode == OK, text(d))
    h.check(not exists('state/locks/x+y z'), 'still there')


@suite.test
def test_wrong_secret_is_an_auth_error_without_the_secret(h):
    secret = 'Wr0ngSecretValue/DoNotLeak+123'
    for op, args, data in (('get', (), None), ('put', ('*',), b'x'),
                           ('list', (), None)):
        r = probe(h, url(), op, 'runs/' if op == 'list' else 'locks/auth',
                  *args, data=data, env={'AWS_SECRET_ACCESS_KEY': secret})
        h.check(r.returncode == AUTH, (op, r.returncode, text(r)))
        h.check('ENG_ERR_AUTH' in text(r) and 'AWS_SECRET_ACCESS_KEY' in text(r),
                text(r))
        h.check(secret not in text(r) and secret not in r.stdout.decode(),
                'the secret leaked')
    h.check(not exists('state/locks/auth'), 'written anyway')


@suite.test
def test_bad_urls_and_keys_are_refused(h):
    r = probe(h, 's3://', 'get', 'k')
    h.check(r.returncode == INVALID and 'names no bucket' in text(r), text(r))
    r = probe(h, 's3:///prefix', 'get', 'k')
    h.check(r.returncode == INVALID and 'names no bucket' in text(r), text(r))
    for key in ('', '../other/journal', 'runs/../../x', '/abs'):
        r = probe(h, url(), 'put', key, data=b'x')
        h.check(r.returncode == INVALID, (key, r.returncode, text(r)))
        h.check(BUCKET in text(r), text(r))
    r = probe(h, f's3://{BUCKET}/a/../b', 'get', 'k')
    h.check(r.returncode == INVALID and "'..'" in text(r), text(r))


@suite.test
def test_retries_after_a_lost_answer_and_a_503(h):
    s = srv()
    p = FaultProxy('127.0.0.1', s.port).start()
    try:
        env = {'AWS_ENDPOINT_URL': p.endpoint}
        # the PUT reaches S3 but its answer is lost: the retry meets 412,
        # finds its own bytes there and succeeds
        p.add('cut', method='PUT', path='/locks/lost', times=1, after=0)
        data = b'lock of run C\n'
        r, etag = put(h, 'locks/lost', data, '*', env=env)
        h.check(r.returncode == OK, text(r))
        body, o = boto_get('state/locks/lost')
        h.check(body == data and o['ETag'] == etag, (body, etag))
        h.check(p.count(method='PUT') == 2 and p.count(method='HEAD') == 1,
                p.hits)
        # someone else's object is still refused after such a retry
        p.clear()
        p.add('cut', method='PUT', path='/locks/lost', times=1, after=0)
        r, _ = put(h, 'locks/lost', b'lock of run D\n', '*', env=env)
        h.check(r.returncode == EXISTS, (r.returncode, text(r)))
        h.check(boto_get('state/locks/lost')[0] == data, 'overwritten')
        # a 503 SlowDown on GET is retried
        p.clear()
        p.add('status', method='GET', path='/locks/lost', times=2, status=503)
        g = probe(h, url(), 'get', 'locks/lost', env=env)
        h.check(g.returncode == OK and g.stdout == data, text(g))
        h.check(p.count(fault='status') == 2, p.hits)
    finally:
        p.stop()


if __name__ == '__main__':
    suite.main()
