"""The s3 plugin against a real moto server that checks SigV4 signatures,
cross-checked with boto3 as an independent client: round trips, multipart
both ways, awkward keys, wrong secrets, listing and picking, guards on
delete, corruption detection, interrupted uploads."""
import base64
import glob
import hashlib
import json
import os
import pathlib
import signal
import time

from harness import Suite
from s3server import S3Server

suite = Suite(__file__)
BUCKET = 'engine-test'
_srv = None


def srv():
    global _srv
    if _srv is None:
        _srv = S3Server().start()
        _srv.make_bucket(BUCKET)
        _srv.make_bucket('prod-backups')
    return _srv


def sha(data):
    return hashlib.sha256(data).hexdigest()


def run(h, name, *sets, env=None, extra=(), timeout=120):
    args = ['run', h.fixture('s3/' + name), '--state-dir', h.tmp / 'state',
            '--report', h.tmp / 'report.json']
    for s in sets:
        args += ['--set', s]
    args += list(extra)
    e = srv().env()
    e.update(env or {})
    return h.engine(*args, env=e, timeout=timeout)


def outputs(h, step):
    return h.report(h.tmp / 'report.json')['steps'][step].get('outputs', {})


def out_all(h, r):
    """Everything a person or a machine could see from the run."""
    text = r.stdout + r.stderr
    for f in glob.glob(str(h.tmp / 'state' / '**' / '*'), recursive=True):
        if os.path.isfile(f):
            text += pathlib.Path(f).read_text(errors='replace')
    return text


def pending_uploads(key):
    # (no Prefix: moto mis-checks boto3's signature when it holds a '/')
    ups = srv().client().list_multipart_uploads(Bucket=BUCKET)
    return [u for u in ups.get('Uploads', []) if u['Key'] == key]


def exists(key, bucket=BUCKET):
    try:
        srv().client().head_object(Bucket=bucket, Key=key)
        return True
    except Exception as e:  # botocore ClientError 404
        if '404' in str(e) or 'Not Found' in str(e):
            return False
        raise


@suite.test
def test_put_single_and_read_back_by_boto3(h):
    data = os.urandom(300_000)
    f = h.tmp / 'small.bin'
    f.write_bytes(data)
    r = run(h, 'put-get.yaml', f'file={f}', f'url=s3://{BUCKET}/one/small.bin',
            f'out={h.tmp}/back/small.bin')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    put = outputs(h, 'put')
    h.check(put['sha256'] == sha(data), put)
    h.check(put['bytes'] == len(data) and put['url'] == f's3://{BUCKET}/one/small.bin')
    obj = srv().client().get_object(Bucket=BUCKET, Key='one/small.bin')
    body = obj['Body'].read()
    h.check(body == data, 'boto3 reads other bytes than we put')
    h.check(obj['Metadata'].get('sha256') == sha(data), obj['Metadata'])
    h.check(obj['ETag'].strip('"') == put['etag'], (obj['ETag'], put['etag']))
    h.check((h.tmp / 'back' / 'small.bin').read_bytes() == data)
    h.check(not (h.tmp / 'back' / 'small.bin.partial').exists())
    g = outputs(h, 'get')
    h.check(g['verified'] is True and g['sha256'] == sha(data), g)


@suite.test
def test_put_multipart_read_back_by_boto3(h):
    data = os.urandom(17 * 1024 * 1024 + 123)  # 4 parts of 5 MiB
    f = h.tmp / 'big.bin'
    f.write_bytes(data)
    r = run(h, 'put-get.yaml', f'file={f}', f'url=s3://{BUCKET}/multi/big.bin',
            f'out={h.tmp}/big.out', 'part_size=5242880')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    put = outputs(h, 'put')
    h.check(put['sha256'] == sha(data) and put['bytes'] == len(data), put)
    h.check(put.get('parts') == 4, put)
    h.check(put['etag'].endswith('-4'), put['etag'])
    obj = srv().client().get_object(Bucket=BUCKET, Key='multi/big.bin')
    h.check(sha(obj['Body'].read()) == sha(data), 'boto3 reads other bytes')
    h.check(obj['Metadata'].get('sha256') == sha(data), obj['Metadata'])
    h.check(sha((h.tmp / 'big.out').read_bytes()) == sha(data))
    h.check(pending_uploads('multi/big.bin') == [], 'upload left pending')
    # parts carry their SHA-256 (x-amz-checksum-algorithm: SHA256), so the
    # store keeps a composite checksum instead of a full-object CRC64NVME
    # it would compute at completion (a second pass over every byte)
    ps = 5242880
    comp = hashlib.sha256(b''.join(hashlib.sha256(data[i:i + ps]).digest()
                                   for i in range(0, len(data), ps))).digest()
    head = srv().client().head_object(Bucket=BUCKET, Key='multi/big.bin',
                                      ChecksumMode='ENABLED')
    got = head.get('ChecksumSHA256', '').split('-')[0]
    h.check(got == base64.b64encode(comp).decode(),
            {k: v for k, v in head.items() if 'Checksum' in k})
    # the journal records the object with its undo
    jr = glob.glob(str(h.tmp / 'state' / 'runs' / '*' / 'journal'))
    text = pathlib.Path(jr[0]).read_text()
    h.check('"object"' in text and 's3.delete' in text, text[-2000:])


@suite.test
def test_stream_mode_checksum_by_copy_and_sidecar(h):
    # the scheme's write path: SHA-256 known only at finish
    data = os.urandom(11 * 1024 * 1024)
    f = h.tmp / 'stream.bin'
    f.write_bytes(data)
    r = run(h, 'put-get.yaml', f'file={f}', f'url=s3://{BUCKET}/stream/copy.bin',
            f'out={h.tmp}/copy.out', 'part_size=5242880',
            env={'ENGINE_S3_TEST_STREAM': '1'})
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(outputs(h, 'put')['checksum_stored'] == 'metadata', outputs(h, 'put'))
    meta = srv().client().head_object(Bucket=BUCKET, Key='stream/copy.bin')
    h.check(meta['Metadata'].get('sha256') == sha(data), meta['Metadata'])
    h.check(meta['ContentLength'] == len(data))
    # the copy's own checksum (x-amz-checksum-algorithm on CopyObject) is a
    # full-object SHA-256: the same as ours
    full = srv().client().head_object(Bucket=BUCKET, Key='stream/copy.bin',
                                      ChecksumMode='ENABLED')
    h.check(full.get('ChecksumSHA256') ==
            base64.b64encode(hashlib.sha256(data).digest()).decode(),
            {k: v for k, v in full.items() if 'Checksum' in k})
    h.check(outputs(h, 'get')['verified'] is True)
    # over the copy limit: a sha256sum-style sidecar
    (h.tmp / 'report.json').unlink()
    r = run(h, 'put-get.yaml', f'file={f}', f'url=s3://{BUCKET}/stream/side.bin',
            f'out={h.tmp}/side.out', 'part_size=5242880',
            env={'ENGINE_S3_TEST_STREAM': '1', 'ENGINE_S3_TEST_COPY_LIMIT': '1000'})
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(outputs(h, 'put')['checksum_stored'] == 'sidecar', outputs(h, 'put'))
    side = srv().client().get_object(Bucket=BUCKET, Key='stream/side.bin.sha256')
    h.check(side['Body'].read().decode() == f'{sha(data)}  side.bin\n')
    h.check(outputs(h, 'head')['sha256'] == sha(data), outputs(h, 'head'))
    h.check(outputs(h, 'get')['verified'] is True, outputs(h, 'get'))


@suite.test
def test_get_multipart_written_by_boto3(h):
    from boto3.s3.transfer import TransferConfig
    data = os.urandom(12 * 1024 * 1024 + 7)
    f = h.tmp / 'b3.bin'
    f.write_bytes(data)
    cfg = TransferConfig(multipart_threshold=5 * 1024 * 1024,
                         multipart_chunksize=5 * 1024 * 1024)
    srv().client().upload_file(str(f), BUCKET, 'boto/multi.bin', Config=cfg)
    etag = srv().client().head_object(Bucket=BUCKET, Key='boto/multi.bin')['ETag']
    h.check(etag.strip('"').endswith('-3'), f'boto3 did not use multipart: {etag}')
    r = run(h, 'get.yaml', f'url=s3://{BUCKET}/boto/multi.bin', f'file={h.tmp}/got.bin')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check((h.tmp / 'got.bin').read_bytes() == data)
    g = outputs(h, 'get')
    h.check(g['sha256'] == sha(data) and g['bytes'] == len(data), g)
    h.check(g['verified'] is False, 'nothing recorded, nothing verified')
    h.check('no recorded SHA-256' in r.stdout + r.stderr, r.stdout + r.stderr)
    # a sha256sum sidecar written by someone else is honoured
    srv().client().put_object(Bucket=BUCKET, Key='boto/multi.bin.sha256',
                              Body=f'{sha(data)} *multi.bin\n'.encode())
    (h.tmp / 'report.json').unlink()
    r = run(h, 'get.yaml', f'url=s3://{BUCKET}/boto/multi.bin', f'file={h.tmp}/got2.bin')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(outputs(h, 'get')['verified'] is True, outputs(h, 'get'))


@suite.test
def test_small_download_says_no_rate_it_cannot_measure(h):
    """A download too fast to time prints its size, not `0 B/s`; the step
    names the object it came from (`url`)."""
    data = os.urandom(15800)
    srv().client().put_object(Bucket=BUCKET, Key='small/fast.bin', Body=data)
    r = run(h, 'get.yaml', f'url=s3://{BUCKET}/small/fast.bin', f'file={h.tmp}/fast.bin')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    import re
    progress = [l for l in r.stdout.splitlines() if re.match(r'\s+get: [0-9.]+ [kMG]?B', l)]
    h.check(progress and all('15.8 kB' in l for l in progress), r.stdout)
    h.check(' 0 B/s' not in r.stdout, r.stdout)
    h.check(outputs(h, 'get')['url'] == f's3://{BUCKET}/small/fast.bin', outputs(h, 'get'))
    # a rate that is measured is a real one: JSON gives null, not 0
    r = run(h, 'get.yaml', f'url=s3://{BUCKET}/small/fast.bin', f'file={h.tmp}/fast2.bin',
            extra=['--log-format', 'json'])
    ev = [json.loads(l) for l in r.stdout.splitlines() if l.startswith('{')]
    rates = [e['bytes_per_s'] for e in ev if e['event'] == 'step.progress']
    h.check(rates and all(x is None or x > 0 for x in rates), rates)


@suite.test
def test_keys_with_spaces_and_plus(h):
    data = b'awkward key\n' * 1000
    f = h.tmp / 'k.txt'
    f.write_bytes(data)
    for key in ('dir with space/a+b c.dump', 'plus+only/x+y', 'odd/=!~(1).bin'):
        (h.tmp / 'report.json').unlink(missing_ok=True)
        r = run(h, 'put-get.yaml', f'file={f}', f'url=s3://{BUCKET}/{key}',
                f'out={h.tmp}/k.out')
        h.check(r.returncode == 0, key + ': ' + r.stdout + r.stderr)
        body = srv().client(lenient=True).get_object(Bucket=BUCKET, Key=key)['Body'].read()
        h.check(body == data, f'boto3 finds other bytes under {key!r}')
        h.check(outputs(h, 'get')['verified'] is True)
    # a multipart upload under such a key, listed back with its exact name
    big = h.tmp / 'kb.bin'
    big.write_bytes(os.urandom(6 * 1024 * 1024))
    r = run(h, 'put.yaml', f'file={big}', f'url=s3://{BUCKET}/sp ace/m+p.bin')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    # (no Prefix: moto mis-checks boto3's signature when it holds a '/')
    keys = [o['Key'] for o in srv().client().list_objects_v2(
        Bucket=BUCKET, MaxKeys=1000)['Contents'] if o['Key'].startswith('sp ace/')]
    h.check(keys == ['sp ace/m+p.bin'], keys)
    (h.tmp / 'report.json').unlink()
    r = run(h, 'list.yaml', f'url=s3://{BUCKET}/sp ace/m+', 'pick=latest')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(outputs(h, 'list')['picked']['key'] == 'sp ace/m+p.bin', outputs(h, 'list'))


@suite.test
def test_wrong_secret_is_refused_clearly(h):
    wrong = 'WrongSecret/ButWellFormed+0123456789abcdefghij'
    f = h.tmp / 'w.bin'
    f.write_bytes(b'x' * 1000)
    r = run(h, 'put.yaml', f'file={f}', f'url=s3://{BUCKET}/wrong/w.bin',
            env={'AWS_SECRET_ACCESS_KEY': wrong})
    h.check(r.returncode == 1, r.stdout + r.stderr)
    h.check('signature does not match: check AWS_SECRET_ACCESS_KEY' in r.stdout + r.stderr,
            r.stdout + r.stderr)
    h.check(wrong not in out_all(h, r), 'the secret leaked')
    h.check(not exists('wrong/w.bin'))
    # the same through a read
    (h.tmp / 'report.json').unlink()
    r = run(h, 'get.yaml', f'url=s3://{BUCKET}/one/small.bin', f'file={h.tmp}/w.out',
            env={'AWS_SECRET_ACCESS_KEY': wrong})
    h.check(r.returncode == 1 and 'signature does not match' in r.stdout + r.stderr,
            r.stdout + r.stderr)
    h.check(wrong not in out_all(h, r), 'the secret leaked')
    h.check(not (h.tmp / 'w.out').exists() and not (h.tmp / 'w.out.partial').exists())


@suite.test
def test_errors_people_can_act_on(h):
    r = run(h, 'get.yaml', 'url=s3://no-such-bucket/x', f'file={h.tmp}/x')
    h.check(r.returncode == 1 and 'NoSuchBucket' in r.stdout + r.stderr, r.stdout + r.stderr)
    r = run(h, 'get.yaml', f'url=s3://{BUCKET}/missing/key', f'file={h.tmp}/x')
    h.check(r.returncode == 1 and 'NoSuchKey' in r.stdout + r.stderr, r.stdout + r.stderr)
    h.check(not (h.tmp / 'x').exists() and not (h.tmp / 'x.partial').exists())
    t0 = time.time()
    r = run(h, 'get.yaml', f'url=s3://{BUCKET}/k', f'file={h.tmp}/x',
            env={'AWS_ENDPOINT_URL': 'http://127.0.0.1:1'})
    h.check(r.returncode == 1 and 'cannot connect to the S3 endpoint' in r.stdout + r.stderr,
            r.stdout + r.stderr)
    h.check(time.time() - t0 < 15, 'connection refused took too long')
    r = run(h, 'head.yaml', f'url=s3://{BUCKET}/k',
            env={'AWS_ACCESS_KEY_ID': '', 'AWS_SECRET_ACCESS_KEY': '',
                 'HOME': str(h.tmp), 'AWS_PROFILE': 'nobody'})
    h.check(r.returncode == 1 and 'no AWS credentials' in r.stdout + r.stderr,
            r.stdout + r.stderr)


@suite.test
def test_credentials_from_profile(h):
    aws = h.tmp / 'home' / '.aws'
    aws.mkdir(parents=True)
    (aws / 'credentials').write_text(
        f'[default]\naws_access_key_id = nope\naws_secret_access_key = nope\n\n'
        f'[drill]\naws_access_key_id = {srv().key}\n'
        f'aws_secret_access_key = {srv().secret}\n')
    r = run(h, 'head.yaml', f'url=s3://{BUCKET}/one/small.bin',
            env={'AWS_ACCESS_KEY_ID': '', 'AWS_SECRET_ACCESS_KEY': '',
                 'HOME': str(h.tmp / 'home'), 'AWS_PROFILE': 'drill'})
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(outputs(h, 'head')['exists'] is True)


@suite.test
def test_head_of_missing_key(h):
    r = run(h, 'head.yaml', f'url=s3://{BUCKET}/no/such/key.dump')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    o = outputs(h, 'head')
    h.check(o['exists'] is False, o)
    r = run(h, 'head.yaml', 'url=s3://no-such-bucket/key')
    h.check(r.returncode == 1 and 'NoSuchBucket' in r.stdout + r.stderr,
            r.stdout + r.stderr)


@suite.test
def test_list_picks_newest_with_pagination(h):
    c = srv().client()
    for i, name in enumerate(['b.dump', 'c.dump', 'a.dump']):
        c.put_object(Bucket=BUCKET, Key=f'daily/{name}', Body=b'x' * (i + 1))
        time.sleep(1.1)
    # a sidecar written last must not be picked as a backup
    c.put_object(Bucket=BUCKET, Key='daily/a.dump.sha256', Body=sha(b'xxx').encode())
    r = run(h, 'list.yaml', f'url=s3://{BUCKET}/daily/', 'pick=latest',
            env={'ENGINE_S3_TEST_PAGE_SIZE': '2'})
    h.check(r.returncode == 0, r.stdout + r.stderr)
    o = outputs(h, 'list')
    h.check([x['key'] for x in o['objects']] == ['daily/a.dump', 'daily/b.dump', 'daily/c.dump'],
            o['objects'])
    p = o['picked']
    h.check(p['key'] == 'daily/a.dump' and p['url'] == f's3://{BUCKET}/daily/a.dump', p)
    h.check(p['bytes'] == 3 and 0 <= p['age_s'] < 60, p)
    h.check(p['last_modified'].endswith('Z'), p)
    r = run(h, 'list.yaml', f'url=s3://{BUCKET}/daily/', 'pick=random_within:7d',
            env={'ENGINE_TEST_SEED': '1'})
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(outputs(h, 'list')['picked']['key'].startswith('daily/'))
    r = run(h, 'list.yaml', f'url=s3://{BUCKET}/daily/', 'pick=random_within:1h',
            env={'ENGINE_TEST_NOW': str(int(time.time()) + 86400)})
    h.check(r.returncode == 1 and 'no object' in r.stdout + r.stderr, r.stdout + r.stderr)
    r = run(h, 'list.yaml', f'url=s3://{BUCKET}/nothing-here/', 'pick=latest')
    h.check(r.returncode == 1 and 'no object' in r.stdout + r.stderr, r.stdout + r.stderr)
    r = run(h, 'list.yaml', f'url=s3://{BUCKET}/nothing-here/', 'pick=none')
    h.check(r.returncode == 0 and outputs(h, 'list')['objects'] == [], r.stdout + r.stderr)


@suite.test
def test_delete_protected_is_refused(h):
    c = srv().client()
    c.put_object(Bucket='prod-backups', Key='database/2026-04-29.dump', Body=b'precious')
    r = run(h, 'delete-protected.yaml')
    h.check(r.returncode == 3, r.stdout + r.stderr)
    h.check('protected_buckets' in r.stdout + r.stderr, r.stdout + r.stderr)
    h.check(exists('database/2026-04-29.dump', bucket='prod-backups'),
            'the protected object is gone')
    # even with --allow-destructive
    r = run(h, 'delete-protected.yaml', extra=['--allow-destructive'])
    h.check(r.returncode == 3, r.stdout + r.stderr)
    h.check(exists('database/2026-04-29.dump', bucket='prod-backups'))


@suite.test
def test_delete_ownership(h):
    c = srv().client()
    c.put_object(Bucket=BUCKET, Key='theirs/obj', Body=b'not ours')
    r = run(h, 'delete.yaml', f'url=s3://{BUCKET}/theirs/obj')
    h.check(r.returncode == 3, 'deleting what the run did not create needs a flag: '
            + r.stdout + r.stderr)
    h.check(exists('theirs/obj'))
    r = run(h, 'delete.yaml', f'url=s3://{BUCKET}/theirs/obj', extra=['--allow-destructive'])
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(outputs(h, 'delete')['deleted'] is True)
    h.check(not exists('theirs/obj'))
    # what the run itself put may go without flags
    f = h.tmp / 'own.bin'
    f.write_bytes(b'mine')
    r = run(h, 'put-delete.yaml', f'file={f}', f'url=s3://{BUCKET}/own/obj')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(not exists('own/obj'))


@suite.test
def test_corrupted_object_fails_get(h):
    data = os.urandom(200_000)
    f = h.tmp / 'orig.bin'
    f.write_bytes(data)
    r = run(h, 'put.yaml', f'file={f}', f'url=s3://{BUCKET}/corrupt/db.dump')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    bad = bytearray(data)
    bad[1000] ^= 0xFF
    srv().client().put_object(Bucket=BUCKET, Key='corrupt/db.dump', Body=bytes(bad),
                              Metadata={'sha256': sha(data)})
    out = h.tmp / 'restore' / 'db.dump'
    r = run(h, 'get.yaml', f'url=s3://{BUCKET}/corrupt/db.dump', f'file={out}')
    h.check(r.returncode == 1, r.stdout + r.stderr)
    h.check('checksum mismatch' in r.stdout + r.stderr, r.stdout + r.stderr)
    h.check(not out.exists(), 'a corrupt file was left')
    h.check(not pathlib.Path(str(out) + '.partial').exists(), 'a partial file was left')
    # verify: false takes the bytes as they are
    r = run(h, 'get.yaml', f'url=s3://{BUCKET}/corrupt/db.dump', f'file={out}',
            'verify=false')
    h.check(r.returncode == 0 and out.read_bytes() == bytes(bad), r.stdout + r.stderr)


def start_upload(h, key, size_mb=400):
    f = h.tmp / 'huge.bin'
    with open(f, 'wb') as fh:
        chunk = os.urandom(1024 * 1024)
        for i in range(size_mb):
            fh.write(chunk[:-8] + i.to_bytes(8, 'big'))
    e = srv().env()
    p = h.popen('run', h.fixture('s3/put.yaml'), '--state-dir', h.tmp / 'state',
                '--set', f'file={f}', '--set', f'url=s3://{BUCKET}/{key}',
                '--set', 'concurrency=1', env=e)
    deadline = time.time() + 30
    while time.time() < deadline:
        if pending_uploads(key):
            return p
        if p.poll() is not None:
            break
        time.sleep(0.02)
    p.kill()
    out, err = p.communicate()
    raise AssertionError('no multipart upload seen: ' + out + err)


@suite.test
def test_sigint_mid_upload_aborts(h):
    p = start_upload(h, 'interrupted/int.bin')
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    h.check(p.returncode == 5, f'exit {p.returncode}: {out}{err}')
    h.check(not exists('interrupted/int.bin'), 'a partial object is visible')
    h.check(pending_uploads('interrupted/int.bin') == [],
            'the multipart upload was not aborted: ' + out + err)


@suite.test
def test_sigkill_mid_upload_leaves_no_object(h):
    p = start_upload(h, 'killed/k.bin')
    time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=30)
    h.check(not exists('killed/k.bin'), 'a partial object is visible')
    # documented: the upload stays pending (invisible) until aborted
    h.check(len(pending_uploads('killed/k.bin')) == 1, 'expected one pending upload')
    jr = glob.glob(str(h.tmp / 'state' / 'runs' / '*' / 'journal'))
    h.check(jr and 's3.abort_upload' in pathlib.Path(jr[0]).read_text(),
            'the journal does not name the pending upload')
    r = run(h, 'abort.yaml', f'url=s3://{BUCKET}/killed/k.bin')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(outputs(h, 'abort')['aborted'] == 1, outputs(h, 'abort'))
    h.check(pending_uploads('killed/k.bin') == [])


if __name__ == '__main__':
    try:
        suite.main()
    finally:
        if _srv is not None:
            _srv.stop()
