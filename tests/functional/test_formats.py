"""Backup formats users already have: every format and compression through
local files and moto (S3), the file name deciding when nothing else does,
third-party backups (`pg_dump | gzip` with a `sha256sum` file, an object
with only an md5), and the fast defaults. Rows are checked with psql, not
with the engine."""
import gzip
import hashlib
import json
import os
import signal
import subprocess
import time

from harness import Suite
from s3server import S3Server
from test_postgres import DEMO_COUNTS, demo_db, drop_db, out, run, step, table_counts, uniq

suite = Suite(__file__)

ROUND_TRIP = """version: 1
name: formats
params:
  src: {{ required: true }}
  file: {{ required: true }}
  db: {{ required: true }}
steps:
  - id: dump
    uses: postgres.dump
    with: {{ url: "${{params.src}}", file: "${{params.file}}"{extra} }}
  - id: restore
    uses: postgres.restore
    with: {{ url: "${{params.src}}", file: "${{steps.dump.outputs.file}}", database: "${{params.db}}" }}
"""


def round_trip(h, src, file, extra='', env=None, tag='x'):
    db = uniq(h, f'fmt_{tag}')
    drop_db(h, db)
    rb = h.write(f'rt-{tag}.yaml', ROUND_TRIP.format(extra=extra))
    r, rep = run(h, rb, '--set', f'src={h.pg.url(src)}', '--set', f'file={file}',
                 '--set', f'db={db}', env=env)
    try:
        h.check(r.returncode == 0, f'{file} {extra}: ' + out(r))
        h.check(table_counts(h.pg, db) == DEMO_COUNTS, f'{file}: rows differ')
    finally:
        drop_db(h, db)
    return step(rep, 'dump')['outputs'], step(rep, 'restore')['outputs']


@suite.test
def test_file_names_decide_format_and_compression(h):
    src = demo_db(h, uniq(h, 'fmtsrc'))
    try:
        cases = [  # name, format, compression, first bytes
            ('a.dump', 'custom', 'pg_dump:1', b'PGDMP'),
            ('b.sql', 'plain', 'none', b'--'),
            ('c.sql.gz', 'plain', 'gzip:1', b'\x1f\x8b'),
            ('d.sql.zst', 'plain', 'zstd:3', b'\x28\xb5\x2f\xfd'),
            ('e.tar', 'tar', 'none', None),
            ('f.tar.gz', 'tar', 'gzip:1', b'\x1f\x8b'),
        ]
        for name, fmt, comp, magic in cases:
            path = h.tmp / name
            d, r = round_trip(h, src, path, tag=name.split('.')[0])
            h.check((d['format'], d['compression']) == (fmt, comp), (name, d))
            want_jobs = min(os.cpu_count() or 1, 4) if fmt == 'custom' else 1
            h.check(r['jobs'] == want_jobs, (name, r))
            if magic:
                h.check(path.read_bytes()[:len(magic)] == magic, name)
            h.check(d['sha256'] == hashlib.sha256(path.read_bytes()).hexdigest(), name)
        # the engine's gzip is what gzip(1) reads
        plain = subprocess.run(['gzip', '-dc', str(h.tmp / 'c.sql.gz')], capture_output=True)
        h.check(plain.returncode == 0 and b'CREATE TABLE public."User"' in plain.stdout)
        # a directory by its trailing slash, restored with the cores
        d, r = round_trip(h, src, f'{h.tmp}/g.dir/', tag='g')
        h.check(d['format'] == 'directory' and (h.tmp / 'g.dir' / 'toc.dat').exists(), d)
        # explicit values win over the name; every compression form
        for tag, name, extra, comp in [('h', 'h.sql', ', compress: "gzip:9"', 'gzip:9'),
                                       ('i', 'i.dump', ', compress: "zstd:5"', 'zstd:5'),
                                       ('j', 'j.dump', ', compress: 0', 'none'),
                                       ('k', 'k.sql.gz', ', compress: none', 'none'),
                                       ('l', 'l.dump', ', compress: 9', 'pg_dump:9'),
                                       ('m', 'm.dump', ', format: plain, compress: gzip', 'gzip:1')]:
            d, r = round_trip(h, src, h.tmp / name, extra=extra, tag=tag)
            h.check(d['compression'] == comp or (comp == 'none' and d['compression'] in
                                                   ('none', 'pg_dump:0')), (extra, d))
    finally:
        drop_db(h, src)


@suite.test
def test_formats_through_s3(h):
    srv = S3Server().start()
    src = demo_db(h, uniq(h, 'fmts3'))
    try:
        srv.make_bucket('fmt')
        env = srv.env()
        for tag, key in [('a', 'a.dump'), ('b', 'b.sql.gz'), ('c', 'c.sql.zst'), ('d', 'd.tar'),
                         ('e', 'e.sql')]:
            d, r = round_trip(h, src, f's3://fmt/{key}', env=env, tag=f's3{tag}')
            obj = srv.client().get_object(Bucket='fmt', Key=key)['Body'].read()
            h.check(hashlib.sha256(obj).hexdigest() == d['sha256'], key)
            h.check(r.get('verified') is True and r['jobs'] == 1, (key, r))
        # checksum_file: a KEY.sha256 object that sha256sum -c accepts
        d, r = round_trip(h, src, 's3://fmt/nightly/db.sql.gz', extra=', checksum_file: true',
                          env=env, tag='s3side')
        h.check(d['checksum_file'] == 's3://fmt/nightly/db.sql.gz.sha256', d)
        here = h.tmp / 'dl'
        here.mkdir()
        for k in ('db.sql.gz', 'db.sql.gz.sha256'):
            (here / k).write_bytes(srv.client().get_object(Bucket='fmt', Key='nightly/' + k)['Body'].read())
        chk = subprocess.run(['sha256sum', '-c', 'db.sql.gz.sha256'], cwd=here,
                             capture_output=True, text=True)
        h.check(chk.returncode == 0, chk.stdout + chk.stderr)
    finally:
        drop_db(h, src)
        srv.stop()


@suite.test
def test_third_party_gzip_backup_with_sha256sum_file(h):
    """Reference runbooks 03/04: `pg_dump | gzip > f && sha256sum f > f.sha256`,
    restored as it is; a changed file is refused before anything is made."""
    src = demo_db(h, uniq(h, 'fmtgz'))
    try:
        bk = h.tmp / 'backups'
        bk.mkdir()
        f = bk / 'db-backup-20261129.sql.gz'
        dump = subprocess.run([f'{h.pg.bindir}/pg_dump', '-h', '127.0.0.1', '-p', str(h.pg.port),
                               '-U', 'postgres', '-d', src], capture_output=True, check=True).stdout
        f.write_bytes(gzip.compress(dump))
        subprocess.run(f'sha256sum {f.name} > {f.name}.sha256', shell=True, cwd=bk, check=True)
        db = uniq(h, 'fmtgz_r')
        drop_db(h, db)
        rb = h.write('r.yaml', 'version: 1\nname: r\nsteps:\n  - id: restore\n'
                     '    uses: postgres.restore\n'
                     f'    with: {{url: "{h.pg.url(src)}", file: "{f}", database: {db}}}\n')
        r, rep = run(h, rb)
        h.check(r.returncode == 0, out(r))
        o = step(rep, 'restore')['outputs']
        h.check(o['verified'] is True and o['verified_by'] == f'{f.name}.sha256', o)
        h.check(table_counts(h.pg, db) == DEMO_COUNTS)
        drop_db(h, db)
        # one byte changed: the sidecar no longer matches; nothing restored
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0x40
        f.write_bytes(bytes(data))
        r, rep = run(h, rb)
        h.check(r.returncode == 1 and 'sha256' in step(rep, 'restore').get('error', ''), out(r))
        h.check(db not in h.pg.databases(), 'a database was left')
    finally:
        drop_db(h, src)


@suite.test
def test_md5_only_object(h):
    """Reference 02 keeps an md5 in the object's metadata: it is checked."""
    srv = S3Server().start()
    src = demo_db(h, uniq(h, 'fmtmd5'))
    try:
        srv.make_bucket('md5')
        dump = subprocess.run([f'{h.pg.bindir}/pg_dump', '-Fc', '-h', '127.0.0.1', '-p',
                               str(h.pg.port), '-U', 'postgres', '-d', src],
                              capture_output=True, check=True).stdout
        good = hashlib.md5(dump).hexdigest()
        srv.client().put_object(Bucket='md5', Key='ok.dump', Body=dump, Metadata={'md5': good})
        srv.client().put_object(Bucket='md5', Key='bad.dump', Body=dump,
                                Metadata={'md5': hashlib.md5(b'x').hexdigest()})
        env = srv.env()
        for key, want in [('ok.dump', 0), ('bad.dump', 1)]:
            db = uniq(h, 'fmtmd5_' + key[:2])
            drop_db(h, db)
            rb = h.write(f'{key}.yaml', 'version: 1\nname: r\nsteps:\n  - id: restore\n'
                         '    uses: postgres.restore\n'
                         f'    with: {{url: "{h.pg.url(src)}", file: "s3://md5/{key}", database: {db}}}\n')
            r, rep = run(h, rb, env=env)
            h.check(r.returncode == want, out(r))
            o = step(rep, 'restore')
            if want == 0:
                h.check(o['outputs'].get('verified_by') == 'x-amz-meta-md5', o)
                h.check(table_counts(h.pg, db) == DEMO_COUNTS)
            else:
                h.check('md5' in o.get('error', ''), o)
                h.check(db not in h.pg.databases(), 'a database was left')
            drop_db(h, db)
    finally:
        drop_db(h, src)
        srv.stop()


@suite.test
def test_compress_forms_checked_by_validate(h):
    for bad in ('12', 'lz5', '"gzip:12"', '"zstd:0"'):
        rb = h.write('v.yaml', 'version: 1\nname: v\nsteps:\n  - id: d\n    uses: postgres.dump\n'
                     f'    with: {{url: "postgresql://h/d", file: /tmp/x.dump, compress: {bad}}}\n')
        r = h.engine('validate', rb)
        h.check(r.returncode == 2 and 'gzip' in r.stderr and 'zstd' in r.stderr
                and '0-9' in r.stderr, (bad, r.stderr))
    # gzip of a custom archive: refused before anything runs, saying why
    rb = h.write('g.yaml', 'version: 1\nname: v\nsteps:\n  - id: d\n    uses: postgres.dump\n'
                 f'    with: {{url: "{h.pg.url()}", file: "{h.tmp}/x.dump", compress: gzip}}\n')
    r = h.engine('run', rb, '--state-dir', h.tmp / 'st')
    h.check(r.returncode == 1 and 'custom archive compresses itself' in r.stdout, out(r))
    h.check(not (h.tmp / 'x.dump').exists())


@suite.test
def test_directory_format_through_s3(h):
    """format: directory with jobs to s3://bucket/prefix/: one object per
    file and a manifest written last; restore downloads them in parallel,
    checks each, and refuses a changed or missing one before it creates
    anything; a killed upload is removed by engine cleanup."""
    srv = S3Server().start()
    src = demo_db(h, uniq(h, 'fmtdir'))
    try:
        srv.make_bucket('dirs')
        env = srv.env()
        c = srv.client()
        d, r = round_trip(h, src, 's3://dirs/nightly/db/', extra=', format: directory, jobs: 2',
                          env=env, tag='dir')
        keys = sorted(o['Key'] for o in c.list_objects_v2(Bucket='dirs')['Contents'])
        h.check('nightly/db/toc.dat' in keys and 'nightly/db/manifest.json' in keys, keys)
        man = json.loads(c.get_object(Bucket='dirs', Key='nightly/db/manifest.json')['Body'].read())
        h.check(sorted('nightly/db/' + f['name'] for f in man['files']) ==
                [k for k in keys if not k.endswith('manifest.json')], man)
        for f in man['files']:
            body = c.get_object(Bucket='dirs', Key='nightly/db/' + f['name'])['Body'].read()
            h.check(hashlib.sha256(body).hexdigest() == f['sha256'] and len(body) == f['bytes'], f)
        h.check(d['format'] == 'directory' and d['files'] == len(man['files']), d)
        h.check(r['verified_by'] == 'manifest.json' and r['jobs'] == 2 or
                r['jobs'] == min(os.cpu_count() or 1, 4), r)
        db = uniq(h, 'fmtdir_bad')
        restore = h.write('rd.yaml', 'version: 1\nname: r\nsteps:\n  - id: restore\n'
                          '    uses: postgres.restore\n'
                          f'    with: {{url: "{h.pg.url(src)}", file: "s3://dirs/nightly/db/", '
                          f'database: {db}}}\n')
        # one file changed: refused before a database exists
        data_key = next(k for k in keys if k.endswith('.dat.gz') or k.endswith('.dat')
                        if not k.endswith('toc.dat'))
        good = c.get_object(Bucket='dirs', Key=data_key)['Body'].read()
        c.put_object(Bucket='dirs', Key=data_key, Body=good[:-1] + bytes([good[-1] ^ 1]))
        r2, rep2 = run(h, restore, env=env)
        h.check(r2.returncode == 1 and 'checksum' in out(r2), out(r2))
        h.check(db not in h.pg.databases(), 'a database was created')
        # the manifest missing: no backup
        c.put_object(Bucket='dirs', Key=data_key, Body=good)
        c.delete_object(Bucket='dirs', Key='nightly/db/manifest.json')
        r3, rep3 = run(h, restore, env=env)
        h.check(r3.returncode == 1 and 'manifest.json' in out(r3), out(r3))
        h.check(db not in h.pg.databases(), 'a database was created')
        # killed during the upload: engine cleanup removes every object
        dump = h.write('dd.yaml', 'version: 1\nname: d\nsteps:\n  - id: dump\n'
                       '    uses: postgres.dump\n'
                       f'    with: {{url: "{h.pg.url(src)}", file: "s3://dirs/killed/", '
                       'format: directory, jobs: 2}\n')
        p = h.popen('run', dump, '--state-dir', h.tmp / 'kst', env=env)
        def killed_keys():
            objs = c.list_objects_v2(Bucket='dirs').get('Contents', [])
            return [o['Key'] for o in objs if o['Key'].startswith('killed/')]

        t0 = time.time()
        while time.time() - t0 < 60 and not killed_keys():
            time.sleep(0.01)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        run_id = os.listdir(h.tmp / 'kst' / 'runs')[0]
        r4 = h.engine('cleanup', run_id, '--state-dir', h.tmp / 'kst', env=env)
        h.check(r4.returncode == 0, out(r4))
        ups = c.list_multipart_uploads(Bucket='dirs').get('Uploads', [])
        h.check(not killed_keys() and not ups, (killed_keys(), ups))
    finally:
        drop_db(h, src)
        srv.stop()


@suite.test
def test_plan_says_what_will_be_used(h):
    cores = min(os.cpu_count() or 1, 4)
    rb = h.write('p.yaml', 'version: 1\nname: p\nsteps:\n'
                 '  - id: gz\n    uses: postgres.dump\n'
                 '    with: {url: "postgresql://h/d", file: /b/db.sql.gz}\n'
                 '  - id: arch\n    uses: postgres.dump\n'
                 '    with: {url: "postgresql://h/d", file: "s3://b/db.dump"}\n'
                 '  - id: back\n    uses: postgres.restore\n'
                 '    with: {url: "postgresql://h/d", file: /b/db.dump, database: x}\n')
    r = h.engine('plan', rb)
    h.check(r.returncode == 0, out(r))
    h.check('will write the plain format (from the file\'s name), compressed with gzip:1 by '
            'the engine, to /b/db.sql.gz' in r.stdout, r.stdout)
    h.check('will write the custom format (from the file\'s name), compressed by pg_dump at '
            'level 1 (the default), to s3://b/db.dump' in r.stdout, r.stdout)
    h.check(f'will restore /b/db.dump with {cores} pg_restore jobs' in r.stdout, r.stdout)


if __name__ == '__main__':
    suite.main()
