"""SQL held to the guards by what it does (core/sql/, issue 25), against the
real PostgreSQL server: maintenance on a protected database runs without a
flag (and really ran), VACUUM FULL needs the step's allow_disruptive,
functions with side effects (pg_terminate_backend, lo_unlink) are refused
on a protected database and nothing happened, a statement naming its own
database (ALTER DATABASE x RENAME through psql) is held to x, statements
that cannot run in a transaction block run outside one or are refused at
validate time when mixed, and unverified SQL follows
guards.unverified_commands. Each dangerous attempt has a benign twin that
runs."""
import json
import os
import subprocess
import time

from harness import Suite, wait_for

suite = Suite(__file__)


def uniq(h, stem):
    return f'{stem}_{h.name[5:22]}_{os.getpid()}'.lower()


def fresh_db(h, name):
    h.pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    h.pg.psql(f'CREATE DATABASE "{name}"')
    h.pg.psql('CREATE TABLE account (id int PRIMARY KEY, balance int); '
              'INSERT INTO account SELECT g, g * 10 FROM generate_series(1, 500) g; '
              'DELETE FROM account WHERE id % 3 = 0; '
              'CREATE TABLE note (id int, body text); '
              "INSERT INTO note SELECT g, 'n' || g FROM generate_series(1, 50) g",
              db=name)
    return name


def drop_db(h, name):
    h.pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(h, runbook, *args, timeout=120):
    rep = h.tmp / f'report-{time.time_ns()}.json'
    r = h.engine('run', str(runbook), '--state-dir', str(h.tmp / 'state'),
                 '--report', str(rep), *args, timeout=timeout)
    report = json.loads(rep.read_text()) if rep.exists() else {}
    return r, report


def out(r):
    return f'exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}'


def step(report, sid):
    return report.get('steps', {}).get(sid, {})


def query_runbook(h, db, sql, write=False, allow_disruptive=False, protect=True,
                  unverified=None, name='q.yaml'):
    guards = []
    if protect:
        guards.append(f'protected_databases: ["{db}"]')
    if unverified:
        guards.append(f'unverified_commands: {unverified}')
    g = ('guards: { ' + ', '.join(guards) + ' }\n') if guards else ''
    return h.write(name, f'''version: 1
name: sql-guards
{g}steps:
  - id: q
    uses: postgres.query
{"    allow_disruptive: true" + chr(10) if allow_disruptive else ""}    with:
      url: "{h.pg.url(db=db)}"
      write: {"true" if write else "false"}
      sql: {json.dumps(sql)}
''')


def stat(h, db, table, col):
    return h.pg.psql(f"SELECT {col} IS NOT NULL FROM pg_stat_user_tables "
                     f"WHERE relname = '{table}'", db=db).strip()


def filenode(h, db, table):
    return h.pg.psql(f"SELECT pg_relation_filenode('{table}')", db=db).strip()


@suite.test
def test_maintenance_on_protected_database_runs_without_flag(h):
    db = fresh_db(h, uniq(h, 'portal'))
    try:
        rb = h.write('maint.yaml', f'''version: 1
name: maintenance
guards: {{ protected_databases: ["{db}"] }}
steps:
  - id: vacuum-analyze
    uses: postgres.query
    with: {{ url: "{h.pg.url(db=db)}", write: true, sql: "VACUUM ANALYZE account" }}
  - id: analyze
    uses: postgres.query
    needs: [vacuum-analyze]
    with: {{ url: "{h.pg.url(db=db)}", sql: "ANALYZE note" }}
  - id: vacuum-read-only
    uses: postgres.query
    needs: [analyze]
    with: {{ url: "{h.pg.url(db=db)}", sql: "VACUUM note" }}
''')
        p = h.engine('plan', rb)
        h.check(p.returncode == 0, out(p))
        h.check('maintenance' in p.stdout and 'outside a transaction block' in p.stdout,
                out(p))
        r, rep = run(h, rb)
        h.check(r.returncode == 0, out(r))
        for sid in ('vacuum-analyze', 'analyze', 'vacuum-read-only'):
            h.check(step(rep, sid).get('status') == 'ok', rep)
        # it really ran: the server's statistics say so
        h.check(wait_for(lambda: stat(h, db, 'account', 'last_vacuum') == 't', 10),
                'account was not vacuumed')
        h.check(wait_for(lambda: stat(h, db, 'account', 'last_analyze') == 't', 10),
                'account was not analyzed')
        h.check(wait_for(lambda: stat(h, db, 'note', 'last_analyze') == 't', 10),
                'note was not analyzed')
        h.check(wait_for(lambda: stat(h, db, 'note', 'last_vacuum') == 't', 10),
                'note was not vacuumed by the read-only query')
        # the audit log says maintenance, not a refusal
        audit = ''.join(p.read_text() for p in (h.tmp / 'state').rglob('audit.jsonl'))
        h.check('maintenance' in audit and 'guard.refuse' not in audit, audit[-2000:])
    finally:
        drop_db(h, db)


@suite.test
def test_vacuum_full_needs_allow_disruptive(h):
    db = fresh_db(h, uniq(h, 'portal'))
    try:
        before = filenode(h, db, 'account')
        rb = query_runbook(h, db, 'VACUUM FULL account', write=True)
        r, rep = run(h, rb, '--allow-destructive')  # no flag helps
        h.check(r.returncode == 3, out(r))
        h.check(step(rep, 'q').get('status') == 'refused', rep)
        msg = step(rep, 'q').get('error', '')
        h.check('VACUUM FULL' in msg and 'allow_disruptive' in msg, msg)
        h.check(filenode(h, db, 'account') == before, 'VACUUM FULL ran (the table was rewritten)')
        p = h.engine('plan', rb)
        h.check('disruptive' in p.stdout, out(p))
        # the step opts in: it runs, and the table was rewritten
        rb = query_runbook(h, db, 'VACUUM FULL account', write=True,
                           allow_disruptive=True, name='q2.yaml')
        r, rep = run(h, rb)
        h.check(r.returncode == 0, out(r))
        h.check(filenode(h, db, 'account') != before, 'VACUUM FULL did not run')
    finally:
        drop_db(h, db)


@suite.test
def test_terminate_backend_refused_and_victim_survives(h):
    db = fresh_db(h, uniq(h, 'portal'))
    victim = subprocess.Popen(
        [f'{h.pg.bindir}/psql', '-X', '-h', '127.0.0.1', '-p', str(h.pg.port), '-U',
         'postgres', '-d', db, '-c', 'SELECT pg_sleep(60)'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        alive = lambda: h.pg.psql(  # noqa: E731
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' "
            "AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()").strip() == '1'
        h.check(wait_for(alive, 10), 'the victim did not connect')
        sql = (f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
               f"WHERE datname = '{db}' AND pid <> pg_backend_pid()")
        for write in (False, True):
            r, rep = run(h, query_runbook(h, db, sql, write=write), '--allow-destructive')
            h.check(r.returncode == 3, out(r))
            msg = step(rep, 'q').get('error', '')
            h.check('pg_terminate_backend' in msg and db in msg, msg)
            time.sleep(0.3)
            h.check(victim.poll() is None and alive(), 'the victim connection was ended')
        # the benign twin: reading pg_stat_activity of the protected database
        r, rep = run(h, query_runbook(
            h, db, f"SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{db}'",
            name='twin.yaml'))
        h.check(r.returncode == 0, out(r))
        h.check(step(rep, 'q')['outputs']['rows'][0]['n'] >= 1, rep)
        h.check(victim.poll() is None, 'the victim connection was ended')
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait()
        drop_db(h, db)


@suite.test
def test_lo_unlink_refused_and_object_kept(h):
    db = fresh_db(h, uniq(h, 'portal'))
    try:
        oid = h.pg.psql("SELECT lo_from_bytea(0, 'keep me')", db=db).strip()
        exists = lambda: h.pg.psql(  # noqa: E731
            f'SELECT count(*) FROM pg_largeobject_metadata WHERE oid = {oid}',
            db=db).strip() == '1'
        for write in (False, True):
            r, rep = run(h, query_runbook(h, db, f'SELECT lo_unlink({oid})', write=write),
                         '--allow-destructive')
            h.check(r.returncode == 3, out(r))
            h.check('lo_unlink' in step(rep, 'q').get('error', ''), rep)
            h.check(exists(), 'the large object is gone')
        # the benign twin: reading it
        r, rep = run(h, query_runbook(h, db, f'SELECT lo_get({oid}) IS NOT NULL AS ok',
                                      name='twin.yaml'))
        h.check(r.returncode == 0, out(r))
        h.check(exists(), 'the large object is gone')
    finally:
        drop_db(h, db)


@suite.test
def test_psql_alter_database_names_its_own_target(h):
    sky = fresh_db(h, uniq(h, 'skymoney'))
    gone = sky + '_x'
    psql = f'{h.pg.bindir}/psql -X -h 127.0.0.1 -p {h.pg.port} -U postgres'
    try:
        rb = h.write('rename.yaml', f'''version: 1
name: rename
guards: {{ protected_databases: ["{sky}"] }}
steps:
  - id: rename
    uses: shell
    with:
      command: {psql} -d postgres -c "ALTER DATABASE {sky} RENAME TO {gone}"
''')
        p = h.engine('plan', rb)
        h.check(p.returncode == 3, out(p))
        h.check(f'database {sky}: destructive' in p.stdout, out(p))
        r, rep = run(h, rb, '--allow-destructive')
        h.check(r.returncode == 3, out(r))
        msg = step(rep, 'rename').get('error', '')
        h.check(f"'{sky}'" in msg and "'postgres'" not in msg, msg)
        dbs = h.pg.databases()
        h.check(sky in dbs and gone not in dbs, 'the protected database was renamed')
        # the benign twin: a setting of another database through the same
        # connection to postgres runs (postgres is not what it changes)
        other = fresh_db(h, uniq(h, 'other'))
        try:
            rb = h.write('twin.yaml', f'''version: 1
name: rename
guards: {{ protected_databases: ["{sky}", "postgres"] }}
steps:
  - id: set
    uses: shell
    with:
      command: {psql} -d postgres -c "ALTER DATABASE {other} SET work_mem = '8MB'"
''')
            r, rep = run(h, rb, '--allow-destructive')
            h.check(r.returncode == 0, out(r))
        finally:
            drop_db(h, other)
    finally:
        drop_db(h, sky)
        drop_db(h, gone)


@suite.test
def test_query_alter_database_of_another_name_is_checked_against_it(h):
    sky = fresh_db(h, uniq(h, 'skymoney'))
    gone = sky + '_x'
    try:
        def rb(pattern, name):
            return h.write(name, f'''version: 1
name: rename
guards: {{ protected_databases: ["{pattern}"] }}
steps:
  - id: first
    uses: postgres.query
    with: {{ url: "{h.pg.url()}", sql: "SELECT 1" }}
  - id: q
    uses: postgres.query
    needs: [first]
    with: {{ url: "{h.pg.url()}", write: true, sql: "ALTER DATABASE {sky} RENAME TO {gone}" }}
''')
        # by name: known before the run (plan exits 3; nothing runs)
        p = h.engine('plan', rb(sky, 'q1.yaml'))
        h.check(p.returncode == 3 and 'REFUSED' in p.stdout, out(p))
        r, rep = run(h, rb(sky, 'q1.yaml'), '--allow-destructive')
        h.check(r.returncode == 3, out(r))
        h.check(step(rep, 'first').get('status') != 'ok', rep)
        msg = step(rep, 'q').get('error', '')
        h.check(f"'{sky}'" in msg and 'RENAME' in msg, msg)
        # by HOST:PORT/NAME or the server's identity: when the action
        # connects, against the database the statement names, not the one
        # it connects to (postgres)
        for pattern in (f'127.0.0.1:{h.pg.port}/{sky}', f'sysid:{h.pg.sysid()}'):
            r, rep = run(h, rb(pattern, 'q2.yaml'), '--allow-destructive')
            h.check(r.returncode == 3, out(r))
            msg = step(rep, 'q').get('error', '')
            h.check(f':{h.pg.port}/{sky}' in msg and 'RENAME' in msg, msg)
            h.check(sky in h.pg.databases(), 'renamed')
    finally:
        drop_db(h, sky)
        drop_db(h, gone)


@suite.test
def test_transaction_block_statements(h):
    db = fresh_db(h, uniq(h, 'txn'))
    try:
        # mixed with others: refused at validate time, saying why
        rb = query_runbook(h, db, 'VACUUM account; SELECT 1', write=True, protect=False)
        v = h.engine('validate', rb)
        h.check(v.returncode == 2, out(v))
        h.check('cannot run inside a transaction block' in v.stdout + v.stderr, out(v))
        # several of them: each runs on its own
        rb = query_runbook(h, db, 'VACUUM account; VACUUM note', protect=False,
                           name='two.yaml')
        r, rep = run(h, rb)
        h.check(r.returncode == 0, out(r))
        # write: false never runs what writes outside its transaction
        rb = query_runbook(h, db, f'DROP DATABASE "{db}"', protect=False, name='drop.yaml')
        r, rep = run(h, rb, '--allow-destructive')
        h.check(r.returncode != 0, out(r))
        h.check('set write: true' in step(rep, 'q').get('error', ''), rep)
        h.check(db in h.pg.databases(), 'a read-only query dropped a database')
    finally:
        drop_db(h, db)


@suite.test
def test_unverified_sql_on_protected_database(h):
    db = fresh_db(h, uniq(h, 'portal'))
    try:
        h.pg.psql('CREATE FUNCTION wipe_notes() RETURNS int LANGUAGE sql AS '
                  '$$ DELETE FROM note RETURNING 1 $$', db=db)
        h.pg.psql('CREATE FUNCTION note_count() RETURNS bigint LANGUAGE sql AS '
                  '$$ SELECT count(*) FROM note $$', db=db)
        notes = lambda: h.pg.psql('SELECT count(*) FROM note', db=db).strip()  # noqa: E731
        # refuse: a function the guards do not know, on a protected database
        for sql in ('SELECT note_count()', 'DO $$ BEGIN PERFORM 1; END $$'):
            r, rep = run(h, query_runbook(h, db, sql, unverified='refuse'))
            h.check(r.returncode == 3, out(r))
            h.check('cannot verify' in step(rep, 'q').get('error', ''), rep)
        # with writes allowed, unknown code counts as a write: refused on a
        # protected database whatever unverified_commands says
        r, rep = run(h, query_runbook(h, db, 'SELECT wipe_notes()', write=True),
                     '--allow-destructive')
        h.check(r.returncode == 3, out(r))
        h.check(notes() == '50', 'the notes were wiped')
        # the twins: allowed by default (the READ ONLY transaction still
        # stands), and on a database nobody protects
        r, rep = run(h, query_runbook(h, db, 'SELECT note_count() AS n', name='t1.yaml'))
        h.check(r.returncode == 0, out(r))
        h.check(step(rep, 'q')['outputs']['rows'] == [{'n': 50}], rep)
        r, rep = run(h, query_runbook(h, db, 'SELECT note_count() AS n', protect=False,
                                      unverified='refuse', name='t2.yaml'))
        h.check(r.returncode == 0, out(r))
        audit = ''.join(p.read_text() for p in (h.tmp / 'state').rglob('audit.jsonl'))
        h.check('note_count()' in audit, 'the unverified decision was not recorded')
    finally:
        drop_db(h, db)


if __name__ == '__main__':
    suite.main()
