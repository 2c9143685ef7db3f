"""Drill history: the run index (local and in S3 via moto, with the requests
counted in moto's access log), `engine history` and its deltas, `--stale`,
the regression SLOs against a real restore drill."""
import csv
import io
import json
import time

from harness import Suite, engine_bin
from s3server import shared

suite = Suite(__file__)
BUCKET = 'engine-history'

NOOP = '''version: 1
name: noop-drill
params:
  rows: { type: int, default: 100 }
steps:
  - id: count
    uses: lua
    with:
      script: return {total = ${params.rows}, table_count = 2}
'''


def srv():
    return shared(BUCKET)


def stamp(t):
    return time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(t)) + '.000Z'


def gen_records(n, t0, runbooks=('ledger', 'billing')):
    """n runs (start and end records), one an hour from t0, two runbooks,
    every seventh failed; rows, RTO and backup size change run by run."""
    lines, runs = [], []
    for i in range(n):
        rb = runbooks[i % len(runbooks)]
        rid = f'20261101-{i:06d}-gen{i % 10}'
        start = stamp(t0 + 3600 * i)
        ok = i % 7 != 3
        rec = {'run_id': rid, 'runbook': rb, 'lock': f'{rb}-db', 'host': 'ci',
               'started_at': start, 'ended_at': stamp(t0 + 3600 * i + 60),
               'outcome': 'ok' if ok else 'failed', 'exit_code': 0 if ok else 1,
               'duration_ms': 60000 + i, 'rto_ms': 40000 + 100 * i,
               'rpo_ms': 3600000, 'rows': 1000 + 7 * i, 'tables': 3,
               'backup_bytes': 50000 + 11 * i, 'checks_failed': 0 if ok else 1,
               'steps': {'restore': 30000 + i}}
        lines.append(json.dumps({'run_id': rid, 'runbook': rb, 'lock': f'{rb}-db',
                                 'started_at': start, 'outcome': 'running'}))
        lines.append(json.dumps(rec))
        runs.append(rec)
    return lines, runs


def expected_deltas(runs):
    """run id -> (previous ok run id, rows change), computed here."""
    out = {}
    for r in runs:
        prev = [p for p in runs if p['runbook'] == r['runbook'] and p['outcome'] == 'ok'
                and p['started_at'] < r['started_at']]
        p = max(prev, key=lambda x: x['started_at']) if prev else None
        out[r['run_id']] = (p['run_id'] if p else None,
                            r['rows'] - p['rows'] if p else None)
    return out


def check_history(h, r, runs):
    h.check(r.returncode == 0, r.stdout + r.stderr)
    lines = json.loads(r.stdout)
    gen = [l for l in lines if l['run_id'].startswith('20261101-')]
    h.check(len(gen) == len(runs), f'{len(gen)} generated runs listed')
    h.check([l['run_id'] for l in gen] == [x['run_id'] for x in reversed(runs)],
            'not newest first')
    want = expected_deltas(runs)
    for l in gen:
        prev, d = want[l['run_id']]
        h.check(l['previous_ok'] == prev and l['delta']['rows'] == d,
                f"{l['run_id']}: {l['previous_ok']} {l['delta']} != {prev} {d}")
    return lines


def time_limit():
    """A second, as the index promises; three for a sanitizer build, whose
    every allocation records a stack trace (10,000 records are about half a
    million allocations)."""
    with open(engine_bin(), 'rb') as f:
        return 3.0 if b'__asan_init' in f.read() else 1.0


def moto_requests(prefix):
    """Requests moto answered for keys under BUCKET/prefix (LISTs too).
    moto refuses the AWS-strict signature of a LIST whose prefix holds a
    '/' (403) and the s3 plugin sends it again in moto's form (see
    s3_lenient_retry): those refusals are not requests AWS would see."""
    from urllib.parse import quote
    forms = (f'/{BUCKET}/{prefix}', f'prefix={prefix}', f'prefix={quote(prefix, safe="")}')
    return sum(1 for l in srv().log_text_all().splitlines()
               if '"' in l and '" 403 ' not in l and any(f in l for f in forms))


@suite.test
def test_local_history_deltas_formats_and_noop_runs(h):
    st = h.tmp / 'st'
    t0 = int(time.time()) - 60 * 86400
    lines, runs = gen_records(50, t0)
    (st / 'index').mkdir(parents=True)
    (st / 'index' / '00000001.jsonl').write_text('\n'.join(lines) + '\n')
    rb = h.write('noop.yaml', NOOP)
    for rows in (100, 130):
        r = h.engine('run', rb, '--state-dir', st, '--lock', 'noop', '--set', f'rows={rows}')
        h.check(r.returncode == 0, r.stdout + r.stderr)
    r = h.engine('history', '--state-dir', st, '--format', 'json')
    out = check_history(h, r, runs)
    noop = [l for l in out if l['runbook'] == 'noop-drill']
    h.check(len(noop) == 2 and noop[0]['rows'] == 130 and noop[0]['delta']['rows'] == 30
            and noop[0]['lock'] == 'noop' and noop[0]['steps'].get('count') is not None,
            noop)
    # filters and the other formats
    r = h.engine('history', '--state-dir', st, '--runbook', 'ledger', '--format', 'csv')
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    h.check(len(rows) == 25 and all(x['runbook'] == 'ledger' for x in rows), r.stdout[:400])
    h.check(rows[0]['rows_change'] == '+14', rows[0])
    since = stamp(t0 + 3600 * 40)[:19] + 'Z'
    r = h.engine('history', '--state-dir', st, '--since', since, '--format', 'json')
    n = len([l for l in json.loads(r.stdout) if l['run_id'].startswith('20261101-')])
    h.check(n == 10, f'{n} runs since {since}')
    r = h.engine('history', '--state-dir', st, '--lock', 'noop')
    h.check(r.returncode == 0 and r.stdout.count('noop-drill') == 2 and '+30' in r.stdout,
            r.stdout)
    r = h.engine('history', '--state-dir', st, '--format', 'yaml')
    h.check(r.returncode == 2 and '--format is table, json or csv' in r.stderr, r.stderr)
    # a damaged line is named and skipped
    with open(st / 'index' / '00000001.jsonl', 'a') as f:
        f.write('{"run_id": "x1", "rows": "many"}\n')
    r = h.engine('history', '--state-dir', st, '--format', 'json')
    h.check(r.returncode == 0 and "index/00000001.jsonl line 105: 'rows' is not of its type"
            in r.stderr, r.stderr)


@suite.test
def test_stale_exit_codes(h):
    st = h.tmp / 'st'
    now = time.time()
    recs = [
        {'run_id': 'old-ok', 'runbook': 'ledger', 'lock': 'l', 'started_at': stamp(now - 40 * 86400), 'outcome': 'ok'},
        {'run_id': 'new-fail', 'runbook': 'ledger', 'lock': 'l', 'started_at': stamp(now - 86400), 'outcome': 'failed'},
        {'run_id': 'fresh-ok', 'runbook': 'billing', 'lock': 'b', 'started_at': stamp(now - 2 * 86400), 'outcome': 'ok'},
        {'run_id': 'never', 'runbook': 'orders', 'lock': 'o', 'started_at': stamp(now - 86400), 'outcome': 'failed'},
    ]
    (st / 'index').mkdir(parents=True)
    (st / 'index' / '00000001.jsonl').write_text(''.join(json.dumps(r) + '\n' for r in recs))
    r = h.engine('history', '--state-dir', st, '--stale', '35d')
    h.check(r.returncode == 4, r.stdout + r.stderr)
    h.check('STALE ledger l: last success' in r.stdout and 'old-ok' in r.stdout, r.stdout)
    h.check('STALE orders o: never succeeded' in r.stdout, r.stdout)
    h.check('fresh billing b' in r.stdout, r.stdout)
    r = h.engine('history', '--state-dir', st, '--stale', '35d', '--runbook', 'billing')
    h.check(r.returncode == 0 and 'fresh billing b' in r.stdout, r.stdout + r.stderr)
    r = h.engine('history', '--state-dir', st, '--stale', '45d', '--runbook', 'ledger')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    r = h.engine('history', '--state-dir', st, '--stale', 'soon')
    h.check(r.returncode == 2 and '--stale needs a duration' in r.stderr, r.stderr)


@suite.test
def test_s3_index_fifty_runs_and_five_thousand_in_few_requests(h):
    s = srv()
    c = s.client()
    env = s.scratch_env(h.tmp / 'scratch')
    lines, runs = gen_records(50, time.time() - 60 * 86400)
    c.put_object(Bucket=BUCKET, Key='fifty/index/00000001.jsonl',
                 Body=('\n'.join(lines) + '\n').encode())
    c.put_object(Bucket=BUCKET, Key='fifty/index/backfilled', Body=b'x')
    url = f's3://{BUCKET}/fifty'
    rb = h.write('noop.yaml', NOOP)
    before = moto_requests('fifty/index/')
    r = h.engine('run', rb, '--state-dir', url, '--lock', 'noop', '--set', 'rows=77', env=env)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    # a run appends two records: LIST, GET, PUT each
    h.check(moto_requests('fifty/index/') - before == 6,
            f'{moto_requests("fifty/index/") - before} index requests for one run')
    r = h.engine('history', '--state-dir', url, '--format', 'json', env=env)
    out = check_history(h, r, runs)
    h.check(any(l['runbook'] == 'noop-drill' and l['rows'] == 77 for l in out), out[:2])
    # read back through boto3: the engine's record is there
    seg = c.get_object(Bucket=BUCKET, Key='fifty/index/00000001.jsonl')['Body'].read().decode()
    h.check(seg.count('"noop-drill"') == 2 and '"rows":77' in seg, seg[-600:])
    # 5,000 runs: ten segments of a thousand records
    big, _ = gen_records(5000, time.time() - 300 * 86400)
    for k in range(0, len(big), 1000):
        c.put_object(Bucket=BUCKET, Key=f'big/index/{k // 1000 + 1:08d}.jsonl',
                     Body=('\n'.join(big[k:k + 1000]) + '\n').encode())
    c.put_object(Bucket=BUCKET, Key='big/index/backfilled', Body=b'x')
    for cmd in (('runs',), ('history', '--format', 'csv')):
        before = moto_requests('big/')
        t0 = time.time()
        r = h.engine(*cmd, '--state-dir', f's3://{BUCKET}/big', env=env)
        took = time.time() - t0
        n = moto_requests('big/') - before
        h.check(r.returncode == 0 and len(r.stdout.splitlines()) == 5001,
                f'{len(r.stdout.splitlines())} lines: {r.stderr}')
        h.check(n <= 11, f'{cmd[0]}: {n} requests')
        h.check(took < time_limit(), f'{cmd[0]} over 5,000 runs took {took:.2f}s')
        print(f'     {cmd[0]} over 5,000 runs: {n} requests, {took:.2f}s')


@suite.test
def test_s3_old_runs_indexed_once(h):
    s = srv()
    env = s.scratch_env(h.tmp / 'scratch')
    url = f's3://{BUCKET}/old'
    rb = h.write('noop.yaml', NOOP)
    for rows in (5, 6):
        r = h.engine('run', rb, '--state-dir', url, '--set', f'rows={rows}', env=env)
        h.check(r.returncode == 0, r.stdout + r.stderr)
    # as if run by an engine before the index
    c = s.client()
    for k in s.keys(BUCKET, 'old/index/'):
        c.delete_object(Bucket=BUCKET, Key=k)
    r = h.engine('runs', '--state-dir', url, env=env)
    h.check(r.returncode == 0 and r.stdout.count('noop-drill') == 2 and ' ok ' in r.stdout,
            r.stdout + r.stderr)
    h.check(s.exists(BUCKET, 'old/index/backfilled'), s.keys(BUCKET, 'old/'))
    before = moto_requests('old/runs/')
    r = h.engine('history', '--state-dir', url, '--format', 'json', env=env)
    h.check(moto_requests('old/runs/') == before, 'the old runs were read twice')
    got = sorted(l['rows'] for l in json.loads(r.stdout))
    h.check(got == [5, 6], r.stdout)


DRILL = '''version: 1
name: ledger-drill
lock: drill-${params.restore_db}
slo:
  rows_drop: 30%
params:
  source_url: { env: DATABASE_URL, secret: true, required: true }
  restore_db: { required: true }
steps:
  - id: backup
    uses: postgres.dump
    with:
      url: ${params.source_url}
      file: ${run.dir}/backup.dump
  - id: restore
    uses: postgres.restore
    temporary: true
    recovered: true
    with:
      url: ${params.source_url}
      file: ${steps.backup.outputs.file}
      sha256: ${steps.backup.outputs.sha256}
      database: ${params.restore_db}
  - id: counts
    uses: postgres.row_counts
    with: { url: "${steps.restore.outputs.url}" }
finally:
  - id: drop
    uses: postgres.drop_database
    with:
      url: ${params.source_url}
      database: ${params.restore_db}
      if_exists: true
      force: true
'''


@suite.test
def test_rows_dropping_40_percent_exits_4_naming_the_previous_run(h):
    src = h.source_db('history_src', rows=1000)
    rb = h.write('drill.yaml', DRILL)
    st = h.tmp / 'st'
    args = ('run', rb, '--state-dir', st, '--set', 'restore_db=history_drill')
    r = h.engine(*args, env={'DATABASE_URL': src})
    h.check(r.returncode == 0, r.stdout + r.stderr)
    first = json.loads(h.engine('history', '--state-dir', st, '--format', 'json').stdout)[0]
    h.check(first['rows'] == 1000 and first['backup_bytes'] > 0 and first['tables'] == 1, first)
    h.pg.psql('DELETE FROM t WHERE id <= 400', db='history_src')
    r = h.engine(*args, env={'DATABASE_URL': src})
    h.check(r.returncode == 4, f'exit {r.returncode}: {r.stdout}{r.stderr}')
    h.check(f"restored rows fell from 1000 in run {first['run_id']} to 600" in r.stderr
            and 'at most 30%' in r.stderr, r.stderr)
    h.check(src not in r.stdout + r.stderr, 'the source URL was shown')
    last = json.loads(h.engine('history', '--state-dir', st, '--format', 'json').stdout)[0]
    h.check(last['outcome'] == 'slo_missed' and last['delta']['rows'] == -400 and
            last['regressions'][0]['previous_run'] == first['run_id'], last)
    rep = h.report(st / 'runs' / last['run_id'] / 'report.json')
    h.check(rep['status'] == 'slo_missed' and rep['exit_code'] == 4 and rep['regressions'], rep.get('status'))
    bad = h.write('bad.yaml', DRILL.replace('rows_drop: 30%', 'rows_drop: lots'))
    r = h.engine('validate', bad)
    h.check(r.returncode == 2 and 'bad.yaml:5:14' in r.stderr and "slo.rows_drop: 'lots' is not a percentage" in r.stderr,
            r.stderr)


if __name__ == '__main__':
    suite.main()
