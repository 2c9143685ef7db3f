"""Database operations (issue 28) against the real PostgreSQL server made
unhealthy on purpose: postgres.health reports a session idle in
transaction, a long query (pg_sleep), an UPDATE blocked behind a held row
lock (with its blocker and the lock), a table with 60% dead tuples, an
unused index and an invalid index (a failed concurrent build), each at its
level; postgres.maintenance vacuums the flagged tables of a protected
database without a flag (psql reads the dead tuples gone) and refuses
VACUUM FULL there unless the step opts in; `database:` reaches another
database on every postgres action that takes a url. One fixture database."""
import json
import os
import pathlib
import subprocess
import time

from harness import Suite, wait_for
from notify_receiver import Receiver

suite = Suite(__file__)
RUNBOOKS = pathlib.Path(__file__).resolve().parents[2] / 'runbooks'
RX = Receiver()
DB = f'dbops_{os.getpid()}'


def fixture_db(h):
    """The fixture: bloat (10000 rows, 6000 deleted, autovacuum off) with an
    unused index, acct (a row to lock), dup (an invalid unique index)."""
    if h.db_exists(DB):
        return DB
    h.pg.psql(f'CREATE DATABASE "{DB}"')
    h.pg.psql(
        'CREATE TABLE bloat (id int PRIMARY KEY, v text) '
        'WITH (autovacuum_enabled = false); '
        "INSERT INTO bloat SELECT g, md5(g::text) FROM generate_series(1, 10000) g; "
        'CREATE INDEX bloat_v_unused ON bloat (v); '
        'DELETE FROM bloat WHERE id % 10 < 6; '
        'CREATE TABLE acct (id int PRIMARY KEY, n int); '
        'INSERT INTO acct SELECT g, 0 FROM generate_series(1, 10) g; '
        'CREATE TABLE dup (x int); INSERT INTO dup VALUES (1), (1)', db=DB)
    # a failed concurrent build leaves its index behind, invalid
    h.pg.psql('CREATE UNIQUE INDEX CONCURRENTLY dup_x_invalid ON dup (x)',
              db=DB, check=False)
    h.check(wait_for(lambda: dead(h, 'bloat') >= 6000, 15),
            'the statistics never showed the dead tuples')
    return DB


def dead(h, table):
    v = h.pg.psql(f"SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = '{table}'",
                  db=DB).strip()
    return int(v or 0)


def run(h, runbook, *args, timeout=120, env=None):
    rep = h.tmp / f'report-{time.time_ns()}.json'
    r = h.engine('run', str(runbook), '--state-dir', str(h.tmp / 'state'),
                 '--report', str(rep), *args, timeout=timeout, env=env)
    report = json.loads(rep.read_text()) if rep.exists() else {}
    return r, report


def out(r):
    return f'exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}'


def step(report, sid):
    return report.get('steps', {}).get(sid, {})


def psql_session(h, sql=None):
    """A psql client of the fixture: sql runs as its whole command line, or
    (None) statements are written to its standard input later."""
    argv = [f'{h.pg.bindir}/psql', '-X', '-q', '-h', '127.0.0.1', '-p', str(h.pg.port),
            '-U', 'postgres', '-d', DB]
    if sql:
        argv += ['-c', sql]
    env = dict(os.environ, PGAPPNAME='dbops-test')
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def activity(h, cond):
    return int(h.pg.psql('SELECT count(*) FROM pg_stat_activity WHERE '
                         f"datname = '{DB}' AND {cond}").strip())


def unhealthy(h):
    """Holder (idle in transaction with a row lock), waiter (blocked
    UPDATE), sleeper (pg_sleep); their pids once all three are in place."""
    holder = psql_session(h)
    holder.stdin.write('BEGIN;\nUPDATE acct SET n = n + 1 WHERE id = 1;\n')
    holder.stdin.flush()
    h.check(wait_for(lambda: activity(h, "state = 'idle in transaction'") == 1, 10),
            'the holder is not idle in transaction')
    waiter = psql_session(h, 'UPDATE acct SET n = n + 2 WHERE id = 1')
    sleeper = psql_session(h, 'SELECT pg_sleep(60)')
    h.check(wait_for(lambda: activity(h, "wait_event_type = 'Lock'") == 1, 10),
            'the UPDATE is not blocked')
    h.check(wait_for(lambda: activity(h, "query LIKE 'SELECT pg_sleep(60)%'") == 1, 10),
            'the long query did not start')
    pid = lambda cond: int(h.pg.psql(  # noqa: E731
        f"SELECT pid FROM pg_stat_activity WHERE datname = '{DB}' AND {cond}").strip())
    pids = {'holder': pid("state = 'idle in transaction'"),
            'waiter': pid("wait_event_type = 'Lock'"),
            'sleeper': pid("query LIKE 'SELECT pg_sleep(60)%'")}
    return [holder, waiter, sleeper], pids


def end_sessions(h, procs):
    h.pg.psql('SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
              f"WHERE datname = '{DB}' AND pid <> pg_backend_pid()")
    for p in procs:
        try:
            p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


HEALTH = '''version: 1
name: health
steps:
  - id: health
    uses: postgres.health
    with:
      url: "{url}"
      cache_hit: false
{extra}'''


@suite.test
def test_health_levels_on_an_unhealthy_database(h):
    fixture_db(h)
    procs, pids = unhealthy(h)
    try:
        time.sleep(2.2)  # every session is now older than 2 s
        rb = h.write('health.yaml', HEALTH.format(url=h.pg.url(db=DB), extra='''\
      long_queries: {warn: 1s, fail: 2s}
      idle_in_transaction: {warn: 1s, fail: 1h}
      blocked: {fail: 1s}
'''))
        r, rep = run(h, rb)
        s = step(rep, 'health')
        h.check(r.returncode == 1 and s.get('status') == 'failed', out(r))
        o = s.get('outputs', {})
        checks = o.get('checks', {})
        level = {k: v.get('level') for k, v in checks.items()}
        want = {'idle_in_transaction': 'warn', 'long_queries': 'fail',
                'blocked': 'fail', 'dead_tuples': 'fail', 'unused_indexes': 'warn',
                'invalid_indexes': 'fail', 'long_transactions': 'ok',
                'connections': 'ok', 'wraparound': 'ok', 'archiver': 'ok',
                'replication_lag': 'ok', 'database_size': 'ok'}
        for k, v in want.items():
            h.check(level.get(k) == v, f'{k}: {level.get(k)}, expected {v}\n{o}')
        h.check(o['level'] == 'fail' and o['database'] == DB, o)
        items = lambda k: checks[k]['items']  # noqa: E731
        h.check(pids['holder'] in [i['pid'] for i in items('idle_in_transaction')], o)
        h.check(pids['sleeper'] in [i['pid'] for i in items('long_queries')
                                    if i['level'] == 'fail'], o)
        blocked = [i for i in items('blocked') if i['pid'] == pids['waiter']]
        h.check(blocked and blocked[0]['blocked_by'] == [pids['holder']]
                and blocked[0]['lock']['locktype'] == 'transactionid'
                and blocked[0]['lock']['mode'] == 'ShareLock', items('blocked'))
        bl = [i for i in items('dead_tuples') if i['table'] == 'public.bloat']
        h.check(bl and 59 <= bl[0]['percent'] <= 61, items('dead_tuples'))
        h.check(o['flagged_tables'] == ['public.bloat'], o['flagged_tables'])
        h.check([i['index'] for i in items('unused_indexes')] == ['public.bloat_v_unused'],
                items('unused_indexes'))
        h.check([i['index'] for i in items('invalid_indexes')] == ['public.dup_x_invalid'],
                items('invalid_indexes'))
        h.check(o['connections'] >= 3 and o['max_connections'] > 0, o)
        h.check('public.bloat' in [t['table'] for t in o['largest_tables']], o)
        h.check('fail:' in o['summary'] and 'dead_tuples' in o['summary'], o['summary'])
        h.check(checks['connections']['value']['by_application'].get('dbops-test', 0) >= 3,
                checks['connections'])
        # warn-level findings only: the step ends warn and the run succeeds
        rb = h.write('warn.yaml', HEALTH.format(url=h.pg.url(db=DB), extra='''\
      idle_in_transaction: {warn: 1s}
      long_queries: false
      blocked: false
      dead_tuples: false
      invalid_indexes: false
'''))
        r, rep = run(h, rb)
        s = step(rep, 'health')
        h.check(r.returncode == 0 and s.get('status') == 'warn', out(r))
        h.check('idle_in_transaction' in s.get('warning', '') and
                'unused_indexes' in s.get('warning', ''), s)
        h.check('long_queries' not in s['outputs']['checks'], s['outputs']['checks'])
        # a role without pg_monitor: the session checks are named as not run
        h.pg.psql('DROP ROLE IF EXISTS dbops_plain; CREATE ROLE dbops_plain LOGIN')
        rb = h.write('plain.yaml', HEALTH.format(url=h.pg.url(db=DB, user='dbops_plain'),
                                                 extra='      fail_on_issues: false\n'))
        r, rep = run(h, rb)
        o = step(rep, 'health').get('outputs', {})
        skipped = {n['check'] for n in o.get('not_run', [])}
        h.check(r.returncode == 0 and skipped == {
            'long_queries', 'long_transactions', 'idle_in_transaction', 'blocked',
            'replication_lag'}, out(r))
        h.check('pg_monitor' in o['not_run'][0]['reason'] and
                o['checks']['dead_tuples']['level'] == 'fail', o)
        h.check('5 not run' in o['summary'], o['summary'])
    finally:
        end_sessions(h, procs)
        h.pg.psql('DROP ROLE IF EXISTS dbops_plain')


MAINT = '''version: 1
name: maintenance
guards: {{ protected_databases: ["{db}"] }}
steps:
  - id: maint
    uses: postgres.maintenance
{extra}    with:
      url: "{url}"
      operation: vacuum
      full: true
      tables: [acct]
'''


@suite.test
def test_shipped_maintenance_and_health_check_on_a_protected_database(h):
    """runbooks/maintenance.yaml and runbooks/health-check.yaml protect every
    database they touch and need no flag."""
    fixture_db(h)
    h.check(dead(h, 'bloat') >= 6000, 'the fixture lost its dead tuples')
    env = {'DATABASE_URL': h.pg.url(), 'SLACK_WEBHOOK_URL': f'{RX.url}/hooks/ok/T0/B0/dbops'}
    r, rep = run(h, RUNBOOKS / 'maintenance.yaml', '-p', f'database={DB}',
                 '--evidence', h.tmp / 'evidence.md', env=env)
    h.check(r.returncode == 0, out(r))
    h.check(step(rep, 'before')['status'] == 'warn' and
            step(rep, 'before')['outputs']['flagged_tables'] == ['public.bloat'], rep)
    v = step(rep, 'vacuum')['outputs']
    h.check(v['statements'] == ['VACUUM (ANALYZE) public.bloat'], v)
    h.check(v['dead_tuples_before'] >= 6000 and v['dead_tuples_after'] == 0, v)
    t = v['tables'][0]
    h.check(t['table'] == 'public.bloat' and t['dead_pct_before'] > 55
            and t['dead_pct_after'] < 1, t)
    h.check(step(rep, 'reindex')['outputs']['statements'] ==
            ['REINDEX TABLE CONCURRENTLY public.bloat'], step(rep, 'reindex'))
    after = step(rep, 'after')['outputs']['checks']['dead_tuples']
    h.check(after['level'] == 'ok' and after['value'] < 1, after)
    # psql reads what the server now says: the dead tuples are gone
    h.check(dead(h, 'bloat') == 0, 'psql still reads dead tuples in bloat')
    ev = (h.tmp / 'evidence.md').read_text()
    h.check(f'dead tuples {v["dead_tuples_before"]} -> 0' in ev and
            'warn: dead_tuples' in ev, ev)
    h.check(step(rep, 'notify')['status'] == 'ok', step(rep, 'notify'))
    # health-check: the invalid index fails it; Slack gets the summary
    RX.clear()
    r, rep = run(h, RUNBOOKS / 'health-check.yaml', '-p', f'database={DB}', env=env)
    s = step(rep, 'health')
    h.check(r.returncode == 1 and s['status'] == 'failed', out(r))
    h.check(s['outputs']['checks']['invalid_indexes']['level'] == 'fail' and
            s['outputs']['checks']['dead_tuples']['level'] == 'ok', s['outputs']['checks'])
    msgs = [json.loads(b['body']) for b in RX.bodies('/hooks/ok')]
    h.check(msgs and 'health-check' in json.dumps(msgs) and
            'invalid_indexes' in json.dumps(msgs), msgs)


@suite.test
def test_vacuum_full_refused_on_a_protected_database(h):
    fixture_db(h)
    node = lambda: h.pg.psql("SELECT pg_relation_filenode('acct')", db=DB).strip()  # noqa: E731
    before = node()
    rb = h.write('full.yaml', MAINT.format(db=DB, url=h.pg.url(db=DB), extra=''))
    p = h.engine('plan', rb)
    h.check('disruptive' in p.stdout, out(p))
    r, rep = run(h, rb, '--allow-destructive')
    h.check(r.returncode == 3 and step(rep, 'maint').get('status') == 'refused', out(r))
    h.check('VACUUM FULL' in step(rep, 'maint').get('error', '') and
            'allow_disruptive' in step(rep, 'maint').get('error', ''), step(rep, 'maint'))
    h.check(node() == before, 'VACUUM FULL ran although refused')
    # the step opts in
    rb = h.write('full2.yaml', MAINT.format(db=DB, url=h.pg.url(db=DB),
                                            extra='    allow_disruptive: true\n'))
    r, rep = run(h, rb)
    h.check(r.returncode == 0, out(r))
    h.check(node() != before, 'VACUUM FULL did not run')


# action -> (its with: besides url/database, the output that names the database)
ACTIONS = {
    'ping': ('{}', lambda o: o['database'] == DB),
    'query': ('{sql: "SELECT current_database() AS d"}',
              lambda o: o['rows'] == [{'d': DB}]),
    'row_counts': ('{}', lambda o: 'public.bloat' in o['tables']),
    'verify': ('{fail_on_issues: false}',
               lambda o: any(i.get('name') == 'dup_x_invalid' for i in o['issues'])),
    'dump': ('{file: "out/db.dump"}', lambda o: o['database'] == DB),
    'dump_globals': ('{file: "out/globals.sql"}', lambda o: o['bytes'] > 0),
    'health': ('{fail_on_issues: false, long_queries: false}',
               lambda o: o['database'] == DB),
    'maintenance': ('{operation: analyze, tables: [public.acct]}',
                    lambda o: o['statements'] == ['ANALYZE public.acct']),
}


def plan_block(text, sid):
    """The lines engine plan prints under step sid."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f'  {sid} '):
            blk = []
            for nxt in lines[i + 1:]:
                if not nxt.startswith('    '):
                    break
                blk.append(nxt)
            return '\n'.join(blk)
    return ''


@suite.test
def test_database_param_on_every_postgres_action(h):
    try:
        fixture_db(h)
        url = h.pg.url()  # the postgres database: each step names the fixture
        steps = []
        for a, (extra, _) in ACTIONS.items():
            w = extra.strip('{}')
            steps.append(f'  - id: {a}\n    uses: postgres.{a}\n'
                         f'    with: {{ url: "{url}", database: {DB}{", " + w if w else ""} }}\n')
        steps.append(f'  - id: compare\n    uses: postgres.compare\n    with: {{ source: "{url}", '
                     f'target: "{url}", source_database: {DB}, target_database: {DB} }}\n')
        rb = h.write('db.yaml', 'version: 1\nname: database-param\nsteps:\n' + ''.join(steps))
        p = h.engine('plan', rb)
        h.check(p.returncode == 0, out(p))
        r, rep = run(h, rb)
        bad = []
        for a, (_, ok) in ACTIONS.items():
            s = step(rep, a)
            try:
                good = s.get('status') in ('ok', 'warn') and ok(s['outputs'])
            except (KeyError, IndexError, TypeError):
                good = False
            if not good:
                bad.append(f'postgres.{a}: {s.get("status")} {s.get("error")} {s.get("outputs")}')
            # plan names the database among the step's targets
            blk = plan_block(p.stdout, a)
            if 'target database' not in blk or DB not in blk:
                bad.append(f'postgres.{a}: engine plan does not show database {DB}')
        c = step(rep, 'compare')
        if c.get('status') != 'ok' or c['outputs']['tables'] < 3:
            bad.append(f'postgres.compare: {c.get("status")} {c.get("error")} {c.get("outputs")}')
        h.check(not bad, '\n'.join(bad) + '\n' + out(r))
    finally:
        h.pg.psql(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')


if __name__ == '__main__':
    try:
        suite.main()
    finally:
        RX.stop()
