"""Retention (the `prune` built-in for local folders, s3.prune for S3
prefixes) against real folders and a real moto server with Object Lock:
exactly the expected backups and sidecars are left (checked with ls and
boto3), the newest and the newest drill-verified backup survive keep_last
0, a dry run deletes nothing, a locked object is skipped, a protected
bucket is refused, and every deletion is in the audit log with its rule
and in the evidence.

A backup's time comes from the date in its name, so the thirty daily
backups are small files and objects named for 2025-12-13 .. 2026-01-11."""
import datetime
import json
import os
import pathlib

from harness import Suite
from s3server import shared

suite = Suite(__file__)
LOCKED_BUCKET = 'atrest-locked'
PROD_BUCKET = 'prod-backups'

FIRST = datetime.date(2025, 12, 13)
DAYS = [FIRST + datetime.timedelta(days=i) for i in range(30)]  # .. 2026-01-11
# keep_daily 7: Jan 5..11; keep_weekly 4 (ISO weeks): Jan 11 (W02), Jan 4
# (W01), Dec 28 (W52), Dec 21 (W51); keep_monthly 3: Jan 11, Dec 31 (no
# backup in November)
EXPECTED = sorted({datetime.date(2026, 1, d) for d in range(4, 12)} |
                  {datetime.date(2025, 12, 28), datetime.date(2025, 12, 21),
                   datetime.date(2025, 12, 31)})
SIDECAR = '0' * 64 + '  backup\n'


def srv():
    s = shared(PROD_BUCKET)
    if LOCKED_BUCKET not in s.made:
        s.client().create_bucket(Bucket=LOCKED_BUCKET, ObjectLockEnabledForBucket=True)
        s.made.add(LOCKED_BUCKET)
    return s


def name(day):
    return f'app-{day.isoformat()}.dump'


def prune_runbook(h, uses, where, policy, extra=''):
    key = 'glob' if uses == 'prune' else 'url'
    pol = ''.join(f'      {k}: {v}\n' for k, v in policy.items())
    return h.write('prune.yaml', f'''version: 1
name: retention
params:
  dry: {{type: bool, default: false}}
{extra}steps:
  - id: prune
    uses: {uses}
    with:
      {key}: {where}
{pol}      dry_run: ${{params.dry}}
''')


def run(h, rb, *args):
    return h.engine('run', rb, '--state-dir', h.tmp / 'state', '--report',
                    h.tmp / 'report.json', '--evidence', h.tmp / 'evidence.md',
                    *args, env=srv().env())


def outputs(h):
    return h.report(h.tmp / 'report.json')['steps']['prune']['outputs']


def audit_records(h):
    out = []
    for f in (h.tmp / 'state').rglob('audit.jsonl'):
        out += [json.loads(line) for line in f.read_text().splitlines() if line]
    return out


def local_backups(h, days=DAYS):
    d = h.tmp / 'backups'
    d.mkdir()
    for day in days:
        (d / name(day)).write_text('dump ' + day.isoformat())
        (d / (name(day) + '.sha256')).write_text(SIDECAR)
    (d / 'unrelated.txt').write_text('not a backup')
    return d


def expected_files(days):
    return sorted([name(d) for d in days] + [name(d) + '.sha256' for d in days] +
                  ['unrelated.txt'])


POLICY = {'keep_daily': 7, 'keep_weekly': 4, 'keep_monthly': 3}


@suite.test
def test_local_folder_keeps_exactly_daily_weekly_monthly(h):
    d = local_backups(h)
    rb = prune_runbook(h, 'prune', f'{d}/app-*.dump', POLICY)
    plan = h.engine('plan', rb)
    h.check(plan.returncode == 0 and 'keep_daily 7, keep_weekly 4, keep_monthly 3'
            in plan.stdout, plan.stdout + plan.stderr)
    # a dry run deletes nothing and says why each kept one is kept
    r = run(h, rb, '--set', 'dry=true')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(sorted(p.name for p in d.iterdir()) == expected_files(DAYS), 'dry run deleted')
    o = outputs(h)
    h.check(o['dry_run'] is True and o['count_pruned'] == 30 - len(EXPECTED), o)
    why = {pathlib.Path(k['path']).name: k['reasons'] for k in o['kept']}
    h.check(why[name(datetime.date(2025, 12, 31))] == ['keep_monthly 2025-12'], why)
    h.check('keep_weekly 2025-W51' in why[name(datetime.date(2025, 12, 21))], why)
    # without --allow-destructive pruning what the run did not create is refused
    r = run(h, rb)
    h.check(r.returncode == 3, r.stdout + r.stderr)
    h.check(sorted(p.name for p in d.iterdir()) == expected_files(DAYS), 'refused run deleted')
    r = run(h, rb, '--allow-destructive')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(sorted(p.name for p in d.iterdir()) == expected_files(EXPECTED),
            sorted(p.name for p in d.iterdir()))
    # each deletion is in the audit log with the rule that chose it
    guarded = {a['target']: a.get('evidence', '') for a in audit_records(h)
               if a.get('type') == 'guard.pass' and str(a.get('target', '')).endswith('.dump')}
    gone = [str(d / name(x)) for x in DAYS if x not in EXPECTED]
    for p in gone:
        h.check(guarded.get(p, '').startswith('retention: outside the policy (keep_last 0, '
                                              'keep_daily 7'), (p, guarded.get(p)))
    ev = (h.tmp / 'evidence.md').read_text()
    h.check('## Backups pruned' in ev and all(p in ev for p in gone), ev)


@suite.test
def test_local_newest_and_verified_survive_keep_last_0(h):
    days = DAYS[:6]
    d = local_backups(h, days)
    (d / (name(days[2]) + '.verified')).write_text('{}')
    (d / (name(days[1]) + '.verified')).write_text('{}')  # older verified: goes
    rb = prune_runbook(h, 'prune', f'{d}/app-*.dump', {'keep_last': 0})
    r = run(h, rb, '--allow-destructive')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    left = sorted(p.name for p in d.iterdir())
    h.check(left == sorted([name(days[2]), name(days[2]) + '.sha256',
                            name(days[2]) + '.verified', name(days[5]),
                            name(days[5]) + '.sha256', 'unrelated.txt']), left)
    kept = {pathlib.Path(k['path']).name: k['reasons'] for k in outputs(h)['kept']}
    h.check(kept[name(days[5])] == ['the newest backup'], kept)
    h.check(kept[name(days[2])] == ['the newest backup a drill verified'], kept)


def s3_backups(bucket, prefix, days, lock_day=None):
    c = srv().client()
    for day in days:
        key = f'{prefix}{name(day)}'
        kw = {}
        if day == lock_day:
            kw = {'ObjectLockMode': 'GOVERNANCE',
                  'ObjectLockRetainUntilDate': datetime.datetime(2099, 1, 1)}
        c.put_object(Bucket=bucket, Key=key, Body=b'dump', **kw)
        c.put_object(Bucket=bucket, Key=key + '.sha256', Body=SIDECAR.encode())
    c.put_object(Bucket=bucket, Key=prefix + 'notes.txt', Body=b'x')


@suite.test
def test_s3_prefix_exact_set_locked_skipped_dry_run(h):
    prefix = 'nightly/'
    locked = datetime.date(2025, 12, 14)
    s3_backups(LOCKED_BUCKET, prefix, DAYS, lock_day=locked)
    before = srv().keys(LOCKED_BUCKET, prefix)
    rb = prune_runbook(h, 's3.prune', f's3://{LOCKED_BUCKET}/{prefix}',
                       dict(POLICY, suffix='.dump'))
    r = run(h, rb, '--set', 'dry=true')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(srv().keys(LOCKED_BUCKET, prefix) == before, 'dry run deleted')
    r = run(h, rb, '--allow-destructive')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    keep = EXPECTED + [locked]
    want = sorted([prefix + name(x) for x in keep] + [prefix + name(x) + '.sha256' for x in keep] +
                  [prefix + 'notes.txt'])
    h.check(srv().keys(LOCKED_BUCKET, prefix) == want, srv().keys(LOCKED_BUCKET, prefix))
    o = outputs(h)
    h.check([x['name'] for x in o['locked']] == [prefix + name(locked)], o['locked'])
    h.check('skip (locked) s3://' in r.stdout + r.stderr, r.stdout)
    h.check(o['count_pruned'] == 30 - len(keep), o['count_pruned'])


@suite.test
def test_s3_drill_marker_keeps_backup_and_protected_bucket_refused(h):
    prefix = 'drill/'
    days = DAYS[:5]
    s3_backups(LOCKED_BUCKET, prefix, days)
    mark = h.write('mark.yaml', f'''version: 1
name: drill-mark
steps:
  - id: mark
    uses: mark_verified
    with:
      backup: s3://{LOCKED_BUCKET}/{prefix}{name(days[1])}
      sha256: "{'a' * 64}"
''')
    r = run(h, mark)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    body = srv().client().get_object(Bucket=LOCKED_BUCKET,
                                     Key=f'{prefix}{name(days[1])}.verified')['Body'].read()
    h.check(json.loads(body)['sha256'] == 'a' * 64, body)
    rb = prune_runbook(h, 's3.prune', f's3://{LOCKED_BUCKET}/{prefix}',
                       {'keep_last': 0, 'suffix': '.dump'})
    r = run(h, rb, '--allow-destructive')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    left = srv().keys(LOCKED_BUCKET, prefix)
    h.check(left == sorted([prefix + name(days[1]), prefix + name(days[1]) + '.sha256',
                            prefix + name(days[1]) + '.verified', prefix + name(days[4]),
                            prefix + name(days[4]) + '.sha256', prefix + 'notes.txt']), left)
    # a protected bucket: refused before anything is listed or deleted
    s3_backups(PROD_BUCKET, 'db/', days)
    before = srv().keys(PROD_BUCKET, 'db/')
    rb = prune_runbook(h, 's3.prune', f's3://{PROD_BUCKET}/db/', {'keep_last': 1},
                       extra='guards:\n  protected_buckets: ["s3://prod-backups/*"]\n')
    r = run(h, rb, '--allow-destructive')
    h.check(r.returncode == 3 and 'protected' in r.stdout + r.stderr, r.stdout + r.stderr)
    h.check(srv().keys(PROD_BUCKET, 'db/') == before, 'a protected bucket lost objects')


SSE_RUNBOOK = """version: 1
name: at-rest
params:
  src: {required: true, secret: true}
  url: {required: true}
  db: {required: true}
  dump_opts: {type: map, default: {}}
  restore_opts: {type: map, default: {}}
steps:
  - id: dump
    uses: postgres.dump
    with:
      url: ${params.src}
      file: ${params.url}
      format: custom
      stream_opts: ${params.dump_opts}
  - id: head
    name: The drill checks its backup is encrypted and locked
    uses: s3.head
    with:
      url: ${params.url}
    check: |
      if not outputs.locked then return false, "the backup is not under Object Lock" end
      return outputs.sse == "aws:kms", "encrypted with " .. outputs.sse
  - id: restore
    uses: postgres.restore
    with:
      url: ${params.src}
      file: ${params.url}
      database: ${params.db}
      stream_opts: ${params.restore_opts}
"""
@suite.test
def test_s3_dump_encrypted_and_locked_restore_checks_encryption(h):
    src = h.source_db('atrest_src', rows=500)
    url = f's3://{LOCKED_BUCKET}/enc/app-2026-01-30.dump'
    rb = h.write('sse.yaml', SSE_RUNBOOK)
    opts = json.dumps({'sse': 'aws:kms', 'lock_mode': 'GOVERNANCE', 'lock_days': 30})
    h.pg.psql('DROP DATABASE IF EXISTS atrest_ok')
    r = run(h, rb, '--set', f'src={src}', '--set', f'url={url}', '--set', 'db=atrest_ok',
            '--set', f'dump_opts={opts}', '--set', 'restore_opts={"sse": "aws:kms"}')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    head = srv().client().head_object(Bucket=LOCKED_BUCKET, Key='enc/app-2026-01-30.dump')
    h.check(head['ServerSideEncryption'] == 'aws:kms', head)
    h.check(head['ObjectLockMode'] == 'GOVERNANCE', head)
    days = (head['ObjectLockRetainUntilDate'] - datetime.datetime.now(datetime.timezone.utc)).days
    h.check(29 <= days <= 30, head['ObjectLockRetainUntilDate'])
    h.check(h.pg.psql('SELECT count(*) FROM t', db='atrest_ok').strip() == '500', 'rows')
    # a restore that requires SSE-S3 refuses the KMS-encrypted object
    # before any database is created
    steps = h.write('restore.yaml', SSE_RUNBOOK.split('  - id: restore')[0].split('steps:')[0] +
                    'steps:\n  - id: restore' + SSE_RUNBOOK.split('  - id: restore')[1])
    h.pg.psql('DROP DATABASE IF EXISTS atrest_bad')
    r = run(h, steps, '--set', f'src={src}', '--set', f'url={url}', '--set', 'db=atrest_bad',
            '--set', 'restore_opts={"sse": "AES256"}')
    h.check(r.returncode == 1 and "server-side encryption 'aws:kms', not the expected 'AES256'"
            in r.stdout + r.stderr, r.stdout + r.stderr)
    h.check(not h.db_exists('atrest_bad'), 'a database was created from a refused object')
    # the locked dump is skipped by retention, and says so
    prune = prune_runbook(h, 's3.prune', f's3://{LOCKED_BUCKET}/enc/', {'keep_last': 0})
    srv().client().put_object(Bucket=LOCKED_BUCKET, Key='enc/app-2026-02-01.dump', Body=b'x')
    r = run(h, prune, '--allow-destructive')
    h.check(r.returncode == 0 and [x['name'] for x in outputs(h)['locked']] ==
            ['enc/app-2026-01-30.dump'], r.stdout + r.stderr)
    h.check(srv().exists(LOCKED_BUCKET, 'enc/app-2026-01-30.dump'), 'the locked dump is gone')


@suite.test
def test_s3_put_multipart_locked_and_encrypted(h):
    big = h.tmp / 'big.bin'
    big.write_bytes(os.urandom(6 * 1024 * 1024))
    rb = h.write('put.yaml', f'''version: 1
name: put-locked
steps:
  - id: put
    uses: s3.put
    with: {{file: {big}, url: "s3://{LOCKED_BUCKET}/mp/big.bin", part_size: 5242880,
           sse: AES256, lock_mode: COMPLIANCE, lock_days: 2}}
''')
    r = run(h, rb)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    head = srv().client().head_object(Bucket=LOCKED_BUCKET, Key='mp/big.bin')
    h.check(head['ServerSideEncryption'] == 'AES256' and head['ObjectLockMode'] == 'COMPLIANCE', head)
    body = srv().client().get_object(Bucket=LOCKED_BUCKET, Key='mp/big.bin')['Body'].read()
    h.check(body == big.read_bytes(), 'the bytes differ')


@suite.test
def test_shipped_backup_runbook_prunes_by_its_policy(h):
    src = h.source_db('atrest_nightly', rows=100)
    d = h.tmp / 'nightly'
    d.mkdir()
    old = [f'db-backup-2026010{i}-020000-abcd.dump' for i in range(1, 5)]
    for n in old:
        (d / n).write_text('old')
        (d / (n + '.sha256')).write_text(SIDECAR)
    root = pathlib.Path(__file__).resolve().parents[2]
    r = run(h, root / 'runbooks' / 'backup-with-checksum.yaml', '--set', f'source_url={src}',
            '--set', f'backup_dir={d}',
            '--set', 'keep_last=2', '--allow-destructive', )
    h.check(r.returncode == 0, r.stdout + r.stderr)
    left = sorted(p.name for p in d.iterdir())
    fresh = [n for n in left if n not in old and n.endswith('.dump')]
    # the fresh backup and the newest old one (keep_last 2); the rest pruned
    h.check(len(fresh) == 1 and left == sorted(fresh + [fresh[0] + '.sha256', old[3],
                                                        old[3] + '.sha256']), left)


if __name__ == '__main__':
    suite.main()
