"""Drill history: the run index (local and in S3 via moto, with the requests
counted in moto's access log), `engine history` and its deltas, `--stale`,
the regression SLOs against a real restore drill."""
import atexit
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import html.parser
import pathlib

from harness import Suite, engine_bin
from s3server import free_port, shared

suite = Suite(__file__)
BUCKET = 'engine-history'
# kept after the run: the report's screenshot and page
ARTIFACTS = pathlib.Path(os.environ.get('ENGINE_TEST_ARTIFACTS',
                                        pathlib.Path(tempfile.gettempdir()) / 'engine-test-artifacts')) / 'history'
ARTIFACTS.mkdir(parents=True, exist_ok=True)

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
    # reading writes nothing where no run was recorded
    r = h.engine('history', '--state-dir', h.tmp / 'empty', '--stale', '1d')
    h.check(r.returncode == 4 and 'no run recorded' in r.stdout and not (h.tmp / 'empty').exists(),
            r.stdout + r.stderr)
    r = h.engine('history', '--state-dir', st, 'extra')
    h.check(r.returncode == 2 and "history takes no arguments, got 'extra'" in r.stderr, r.stderr)
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
    # every record of the run says it, not only report.json
    run_dir = st / 'runs' / last['run_id']
    evidence = (run_dir / 'evidence.md').read_text()
    h.check('SLO MISSED' in evidence and f"to 600 (the SLO allows" in evidence, evidence)
    junit = (run_dir / 'junit.xml').read_text()
    h.check('<failure type="slo"' in junit and 'restored rows fell from 1000' in junit, junit)
    ends = [json.loads(l) for l in (run_dir / 'audit.jsonl').read_text().splitlines()
            if '"run.end"' in l]
    h.check(ends and ends[-1].get('exit_code') == 4 and
            ends[-1]['regressions'][0]['previous_run'] == first['run_id'], ends[-1:])
    # the HTML report of these runs and fifty generated ones, in Chromium
    lines, _ = gen_records(50, int(time.time()) - 60 * 86400, runbooks=('ledger-drill',))
    lines = [l.replace('"lock": "ledger-drill-db"', '"lock": "drill-history_drill"') for l in lines]
    with open(st / 'index' / '00000001.jsonl', 'a') as f:
        f.write('\n'.join(lines) + '\n')
    check_html_report(h, st, last['run_id'])
    bad = h.write('bad.yaml', DRILL.replace('rows_drop: 30%', 'rows_drop: lots'))
    r = h.engine('validate', bad)
    h.check(r.returncode == 2 and 'bad.yaml:5:14' in r.stderr and "slo.rows_drop: 'lots' is not a percentage" in r.stderr,
            r.stderr)


@suite.test
def test_fleet_sets_the_pushgateway_of_every_cronjob(h):
    import yaml
    inv = ('databases:\n  - name: ledger\n    url_secret: ledger-db\n'
           '    schedule: "0 3 * * *"\n    runbook: restore-drill.yaml\n'
           'defaults:\n  state: s3://engine-state/fleet\n'
           '  pushgateway: http://pushgateway.monitoring:9091\n')
    r = h.engine('fleet', 'render', h.write('inv.yaml', inv))
    h.check(r.returncode == 0, r.stderr)
    cj = [d for d in yaml.safe_load_all(r.stdout) if d and d['kind'] == 'CronJob'][0]
    args = cj['spec']['jobTemplate']['spec']['template']['spec']['containers'][0]['args']
    h.check(args[args.index('--pushgateway') + 1] == 'http://pushgateway.monitoring:9091', args)
    bad = inv.replace('http://pushgateway', 'http://u:pw@pushgateway')
    r = h.engine('fleet', 'render', h.write('bad.yaml', bad))
    h.check(r.returncode == 2 and 'bad.yaml:8:16' in r.stderr and
            "'pushgateway' must be the Pushgateway's http:// or https:// URL without credentials"
            in r.stderr and 'pw@' not in r.stderr, r.stderr)


# ---- the HTML report in headless Chromium -------------------------------------

class Dom(html.parser.HTMLParser):
    """The charts' points and every attribute that could load something."""

    def __init__(self):
        super().__init__()
        self.chart = None
        self.points = {}      # metric -> [classes of each point]
        self.external = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'svg' and 'chart' in a.get('class', ''):
            self.chart = a['data-metric']
            self.points[self.chart] = []
        if tag == 'circle' and self.chart:
            self.points[self.chart].append(a.get('class', '').split())
        for k in ('src', 'href', 'data', 'action'):
            if a.get(k):
                self.external.append((tag, k, a[k]))
        if tag in ('script', 'link', 'iframe', 'object', 'embed', 'img'):
            self.external.append((tag, '', ''))

    def handle_endtag(self, tag):
        if tag == 'svg':
            self.chart = None


def index_runs(st):
    """The index's runs merged by run id, ended ones only (read here)."""
    runs = {}
    for seg in sorted((st / 'index').glob('*.jsonl')):
        for line in seg.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            runs.setdefault(r['run_id'], {}).update(r)
    return [r for r in runs.values() if r.get('outcome') != 'running']


def check_html_report(h, st, regressed_run):
    out = h.tmp / 'drills.html'
    r = h.engine('report', '--html', out, '--state-dir', st)
    h.check(r.returncode == 0 and out.exists(), r.stdout + r.stderr)
    chrome = shutil.which('chromium')
    h.check(chrome, 'chromium is not installed (scripts/setup.sh installs it)')
    base = [chrome, '--headless', '--no-sandbox', '--disable-gpu', '--enable-logging=stderr',
            '--v=0', f'--user-data-dir={h.tmp}/chromium']
    p = subprocess.run(base + ['--dump-dom', out.as_uri()], capture_output=True, text=True,
                       timeout=60)
    console = [l for l in p.stderr.splitlines() if 'CONSOLE' in l]
    h.check(p.returncode == 0 and not console, console or p.stderr[-800:])
    dom = Dom()
    dom.feed(p.stdout)
    h.check(not dom.external, f'the page loads something: {dom.external[:5]}')
    runs = index_runs(st)
    for metric in ('rto_ms', 'backup_bytes', 'rows', 'duration_ms'):
        want = sum(1 for x in runs if isinstance(x.get(metric), int))
        got = dom.points.get(metric, [])
        h.check(len(got) == want, f'{metric}: {len(got)} points, {want} runs measured it')
    failed = sum(1 for x in runs if x.get('outcome') != 'ok' and isinstance(x.get('rows'), int))
    h.check(sum('failed' in c for c in dom.points['rows']) == failed, dom.points['rows'])
    h.check(sum('regression' in c for c in dom.points['rows']) == 1 and
            not any('regression' in c for c in dom.points['duration_ms']), dom.points)
    h.check(f'{regressed_run}' in p.stdout and 'Latest evidence' in p.stdout, 'no evidence')
    shot = ARTIFACTS / 'drills.png'
    p = subprocess.run(base + [f'--screenshot={shot}', '--window-size=1200,1600', out.as_uri()],
                       capture_output=True, text=True, timeout=60)
    h.check(p.returncode == 0 and shot.stat().st_size > 20000, p.stderr[-500:])
    shutil.copy(out, ARTIFACTS / 'drills.html')
    print(f'     screenshot: {shot}')


# ---- Prometheus: a Pushgateway scraped by a Prometheus, started once -----------

class Monitoring:
    """prometheus-pushgateway and prometheus (Debian) as plain processes on
    free ports, their data in a temporary directory; stopped at exit."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='engine-prom-')
        self.push_port, self.prom_port = free_port(), free_port()
        self.procs = []
        atexit.register(self.stop)
        self.start('prometheus-pushgateway', f'--web.listen-address=127.0.0.1:{self.push_port}')
        cfg = os.path.join(self.dir, 'prometheus.yml')
        with open(cfg, 'w') as f:
            f.write('global: {scrape_interval: 1s}\nscrape_configs:\n'
                    '  - job_name: pushgateway\n    honor_labels: true\n'
                    f"    static_configs: [{{targets: ['127.0.0.1:{self.push_port}']}}]\n")
        self.start('prometheus', f'--config.file={cfg}',
                   f'--web.listen-address=127.0.0.1:{self.prom_port}',
                   f'--storage.tsdb.path={self.dir}/tsdb')
        for port in (self.push_port, self.prom_port):
            deadline = time.time() + 20
            while True:
                try:
                    socket.create_connection(('127.0.0.1', port), 0.2).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise RuntimeError(f'nothing listens on {port}: ' + self.log())
                    time.sleep(0.05)

    def start(self, *argv):
        log = open(os.path.join(self.dir, argv[0] + '.log'), 'w')
        self.procs.append(subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True, cwd=self.dir))

    def log(self):
        out = ''
        for n in ('prometheus-pushgateway.log', 'prometheus.log'):
            with open(os.path.join(self.dir, n)) as f:
                out += f.read()[-1500:]
        return out

    @property
    def pushgateway(self):
        return f'http://127.0.0.1:{self.push_port}'

    def query(self, q):
        url = (f'http://127.0.0.1:{self.prom_port}/api/v1/query?'
               + urllib.parse.urlencode({'query': q}))
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.loads(r.read())['data']['result']

    def wait_query(self, q, pred, timeout=20):
        """Poll the query API until pred(result) (Prometheus scrapes every
        second); the last result."""
        deadline = time.time() + timeout
        while True:
            res = self.query(q)
            if pred(res) or time.time() > deadline:
                return res
            time.sleep(0.2)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        self.procs = []
        shutil.rmtree(self.dir, ignore_errors=True)


def value_of(res, **labels):
    for r in res:
        if all(r['metric'].get(k) == v for k, v in labels.items()):
            return float(r['value'][1])
    return None


@suite.test
def test_metrics_file_and_pushgateway_scraped_by_prometheus(h):
    mon = Monitoring()
    st = h.tmp / 'st'
    rb = h.write('noop.yaml', NOOP)
    prom = h.tmp / 'textfile' / 'noop.prom'
    prom.parent.mkdir()
    t0 = time.time()
    for rows in (100, 250):
        r = h.engine('run', rb, '--state-dir', st, '--lock', 'ledger-db', '--set', f'rows={rows}',
                     '--metrics-file', prom, '--pushgateway', mon.pushgateway)
        h.check(r.returncode == 0 and 'metrics' not in r.stderr, r.stdout + r.stderr)
    text = prom.read_text()
    h.check('engine_restored_rows{runbook="noop-drill",lock="ledger-db"} 250' in text, text)
    h.check('engine_runs_total{runbook="noop-drill",lock="ledger-db",result="ok"} 2' in text, text)
    h.check(not list(prom.parent.glob('*.tmp*')), 'a temporary file was left')
    chk = subprocess.run(['promtool', 'check', 'metrics'], input=text, text=True,
                         capture_output=True)
    h.check(chk.returncode == 0, chk.stdout + chk.stderr)
    # read back through Prometheus: the Pushgateway's group, scraped
    res = mon.wait_query('engine_restored_rows', lambda res: value_of(res, runbook='noop-drill') == 250)
    h.check(value_of(res, runbook='noop-drill', lock='ledger-db', job='engine') == 250, res)
    last = value_of(mon.query('engine_last_success_timestamp_seconds'), runbook='noop-drill')
    h.check(last is not None and t0 - 1 < last < time.time() + 1, f'{last} vs {t0}')
    res = mon.query('engine_runs_total{result="ok"}')
    h.check(value_of(res, runbook='noop-drill') == 2, res)
    h.check(value_of(mon.query('engine_step_duration_seconds'), step='count') is not None,
            mon.query('engine_step_duration_seconds'))
    # the alert expression of docs/monitoring.md holds nothing while fresh
    h.check(mon.query('time() - engine_last_success_timestamp_seconds > 35 * 86400') == [],
            'a fresh drill is alerted on')
    # a failed run replaces the group: last_run_success falls to 0
    bad = h.write('bad.yaml', NOOP.replace('return {', 'error("broken") return {'))
    r = h.engine('run', bad, '--state-dir', st, '--lock', 'ledger-db', '--pushgateway', mon.pushgateway)
    h.check(r.returncode == 1, r.stdout + r.stderr)
    res = mon.wait_query('engine_last_run_success', lambda res: value_of(res, runbook='noop-drill') == 0)
    h.check(value_of(res, runbook='noop-drill') == 0, res)
    # without a lock: the group's lock is empty (the Pushgateway's base64 form)
    r = h.engine('run', rb, '--state-dir', st, '--set', 'rows=7', '--pushgateway', mon.pushgateway)
    h.check(r.returncode == 0 and 'metrics' not in r.stderr, r.stderr)
    res = mon.wait_query('engine_restored_rows', lambda res: value_of(res, lock=None) == 7)
    h.check(value_of(res, runbook='noop-drill', lock=None) == 7, res)
    # a wrong Pushgateway is said, its password never
    port = free_port()
    r = h.engine('run', rb, '--state-dir', st, '--pushgateway',
                 f'http://user:hunter22@127.0.0.1:{port}')
    h.check(r.returncode == 0 and 'cannot push the metrics' in r.stderr
            and f'http://user:***@127.0.0.1:{port}/metrics/job/engine/runbook/noop-drill'
            in r.stderr and 'hunter22' not in r.stderr, r.stderr)
    mon.stop()


if __name__ == '__main__':
    suite.main()
