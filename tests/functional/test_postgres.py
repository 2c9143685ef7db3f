"""Functional tests of the postgres plugin: the real engine, real servers.

Every test checks the effect in the database (rows restored, databases
present or absent), on files, and the exit code; not only "exit 0".
The shared server h.pg is PgServer (pgserver.py): trust for postgres, a
password (scram-sha-256) for the role `app`.
"""
import gzip
import hashlib
import json
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

from harness import Suite
from pgserver import APP_PASSWORD, PgServer, free_port

suite = Suite(__file__)
ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
DEMO_SQL = ROOT / 'plugins' / 'postgres' / 'demo.sql'
FIX = 'postgres/'

# Tables of demo.sql and the rows it inserts.
DEMO_COUNTS = {'public.User': 2000, 'public.Post': 5000, 'public.Comment': 8000,
               'public.Tag': 25, 'public._PostToTag': 5000, 'public.Order': 3000,
               'public.AuditLog': 4000, 'public._prisma_migrations': 1}


# ---- helpers ---------------------------------------------------------------------

def uniq(h, stem):
    """A database name unique to this test (the server is shared)."""
    return f'{stem}_{h.name[5:25]}_{os.getpid()}'.lower()


def demo_db(h, name, grant_app=True):
    """A database on h.pg with the demo schema and data."""
    pg = h.pg
    pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg.psql(f'CREATE DATABASE "{name}"')
    pg.psql(DEMO_SQL.read_text(), db=name)
    if grant_app:
        pg.psql('GRANT SELECT ON ALL TABLES IN SCHEMA public TO app; '
                'GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO app', db=name)
    return name


def drop_db(h, name):
    h.pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def table_counts(pg, db):
    out = pg.psql("SELECT n.nspname || '.' || c.relname FROM pg_class c "
                  "JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "WHERE c.relkind = 'r' AND n.nspname = 'public'", db=db)
    res = {}
    for t in filter(None, out.split('\n')):
        rel = t.split('.', 1)[1]
        res[t] = int(pg.psql(f'SELECT count(*) FROM public."{rel}"', db=db))
    return res


def content_md5(pg, db, table):
    """Independent of the plugin: md5 of the ordered row texts."""
    return pg.psql(f"SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) "
                   f'FROM public."{table}" t', db=db).strip()


def run(h, runbook, *args, env=None, timeout=180):
    rep = h.tmp / f'report-{time.time_ns()}.json'
    r = h.engine('run', str(runbook), '--state-dir', str(h.tmp / 'state'),
                 '--report', str(rep), *args, env=env, timeout=timeout)
    report = json.loads(rep.read_text()) if rep.exists() else {}
    return r, report


def out(r):
    return f'exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}'


def step(report, sid):
    return report.get('steps', {}).get(sid, {})


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def state_text(h):
    """Everything the engine wrote under the state dir (audit, journal...)."""
    text = ''
    for p in (h.tmp / 'state').rglob('*'):
        if p.is_file():
            text += p.read_text(errors='replace')
    return text


# ---- sandbox ---------------------------------------------------------------------

@suite.test
def test_sandbox_demo_data_and_cleanup(h):
    rb = h.write('sb.yaml', '''
version: 1
name: sb
steps:
  - id: sandbox
    uses: postgres.sandbox
    with: { sample_data: demo, database: shop }
  - id: counts
    uses: postgres.row_counts
    with: { url: "${steps.sandbox.outputs.url}" }
  - id: enum-json
    uses: postgres.query
    with:
      url: ${steps.sandbox.outputs.url}
      sql: SELECT role, profile FROM "User" WHERE id = 50
  - id: probe
    uses: shell
    with:
      command: ["sh", "-c", "echo ${steps.sandbox.outputs.port} > port; echo ${steps.sandbox.outputs.data_dir} > datadir"]
''')
    r, rep = run(h, rb)
    h.check(r.returncode == 0, out(r))
    outs = step(rep, 'counts')['outputs']
    h.check(outs['tables'] == DEMO_COUNTS, outs)
    h.check(outs['total'] == sum(DEMO_COUNTS.values()), outs)
    row = step(rep, 'enum-json')['outputs']['rows'][0]
    h.check(row['role'] == 'ADMIN' and row['profile']['locale'] == 'fr', row)
    sb = step(rep, 'sandbox')['outputs']
    h.check(sb['version'].startswith('15') or sb['version'][0].isdigit(), sb)
    h.check(':***@' in sb['url'], f'password of the sandbox URL not redacted: {sb}')
    # at run end the server was stopped and its directory removed
    port = int((h.tmp / 'port').read_text())
    s = socket.socket()
    h.check(s.connect_ex(('127.0.0.1', port)) != 0, 'sandbox still listening')
    s.close()
    data_dir = (h.tmp / 'datadir').read_text().strip()
    h.check(not os.path.exists(data_dir), f'{data_dir} left behind')


# ---- ping and connection errors ----------------------------------------------------

@suite.test
def test_ping_reports_identity(h):
    r, rep = run(h, h.fixture(FIX + 'ping.yaml'), '--set',
                 f'url={h.pg.url(user="app", password=APP_PASSWORD)}')
    h.check(r.returncode == 0, out(r))
    o = step(rep, 'ping')['outputs']
    h.check(o['system_identifier'] == h.pg.sysid(), o)
    h.check(o['database'] == 'postgres' and o['in_recovery'] is False, o)
    h.check(o['server_version_num'] >= 100000, o)


@suite.test
def test_ping_server_down_clear_error(h):
    port = free_port()
    t0 = time.time()
    r, rep = run(h, h.fixture(FIX + 'ping.yaml'), '--set',
                 f'url=postgresql://postgres@127.0.0.1:{port}/postgres',
                 '--set', 'wait=2s')
    h.check(r.returncode == 1, out(r))
    err = step(rep, 'ping').get('error', '')
    h.check(f'127.0.0.1:{port}' in err and 'not ready after' in err, err)
    h.check('Connection refused' in err and 'server is running' in err, err)
    h.check(2 <= time.time() - t0 < 30, 'wait was not honoured')


@suite.test
def test_ping_wait_until_server_starts(h):
    port = free_port()
    rep_path = h.tmp / 'wait.json'
    p = h.popen('run', str(h.fixture(FIX + 'ping.yaml')), '--state-dir',
                str(h.tmp / 'state'), '--report', str(rep_path), '--set',
                f'url=postgresql://postgres@127.0.0.1:{port}/postgres',
                '--set', 'wait=40s')
    time.sleep(1)
    srv = PgServer()
    try:
        srv.start(tempfile.mkdtemp(prefix='engine-pg-late-'), port=port)
        stdout, stderr = p.communicate(timeout=60)
        h.check(p.returncode == 0, f'{p.returncode}\n{stdout}\n{stderr}')
        o = json.loads(rep_path.read_text())['steps']['ping']['outputs']
        h.check(o['attempts'] > 1, o)
        h.check(o['system_identifier'] == srv.sysid(), o)
    finally:
        if p.poll() is None:
            p.kill()
        srv.stop()


@suite.test
def test_connect_timeout_honoured(h):
    # a socket that accepts TCP connections but never answers
    bh = socket.socket()
    bh.bind(('127.0.0.1', 0))
    bh.listen(8)
    port = bh.getsockname()[1]
    try:
        t0 = time.time()
        r, rep = run(h, h.fixture(FIX + 'ping.yaml'), '--set',
                     f'url=postgresql://postgres@127.0.0.1:{port}/postgres?connect_timeout=2')
        took = time.time() - t0
        h.check(r.returncode == 1, out(r))
        err = step(rep, 'ping').get('error', '')
        h.check('timeout expired after 2 s' in err and 'connect_timeout' in err, err)
        h.check(1.8 < took < 15, f'took {took:.1f} s')
    finally:
        bh.close()


@suite.test
def test_wrong_password_never_leaks(h):
    bad = 'Wr0ng-pass-Word-77'
    db = demo_db(h, uniq(h, 'pw'))
    try:
        r, rep = run(h, h.fixture(FIX + 'dump.yaml'), '--set',
                     f'url={h.pg.url(db=db, user="app", password=bad)}',
                     '--set', f'file={h.tmp}/x.dump')
        h.check(r.returncode == 1, out(r))
        err = step(rep, 'dump').get('error', '')
        h.check('password authentication failed' in err, err)
        h.check('check the user and password' in err, err)
        everything = r.stdout + r.stderr + json.dumps(rep) + state_text(h)
        h.check(bad not in everything, 'the password leaked')
        h.check(not (h.tmp / 'x.dump').exists() and
                not (h.tmp / 'x.dump.partial').exists(), 'a file was left')
    finally:
        drop_db(h, db)


@suite.test
def test_missing_database(h):
    r, rep = run(h, h.fixture(FIX + 'ping.yaml'), '--set',
                 f'url={h.pg.url(db="no_such_db_here")}')
    h.check(r.returncode == 1, out(r))
    err = step(rep, 'ping').get('error', '')
    h.check('does not exist' in err and 'no_such_db_here' in err, err)
    h.check('check the database name' in err, err)


# ---- dump / restore round trips ------------------------------------------------------------

@suite.test
def test_roundtrip_all_formats(h):
    src = demo_db(h, uniq(h, 'rtsrc'))
    prefix = uniq(h, 'rt')
    dbs = [f'{prefix}_{f}' for f in ('custom', 'plain', 'tar', 'directory')]
    try:
        r, rep = run(h, h.fixture(FIX + 'roundtrip.yaml'),
                     '--set', f'url={h.pg.url(db=src, user="app", password=APP_PASSWORD)}',
                     '--set', f'dir={h.tmp}/backups', '--set', f'prefix={prefix}')
        h.check(r.returncode == 0, out(r))
        src_counts = table_counts(h.pg, src)
        h.check(src_counts == DEMO_COUNTS, src_counts)
        sums = {t: content_md5(h.pg, src, t) for t in ('User', 'Post', 'Order')}
        for db in dbs:
            h.check(db in h.pg.databases(), f'{db} missing')
            h.check(table_counts(h.pg, db) == src_counts, f'{db} counts differ')
            for t, s in sums.items():
                h.check(content_md5(h.pg, db, t) == s, f'{db}.{t} content differs')
            # foreign keys and the enum came back too
            fks = h.pg.psql("SELECT count(*) FROM pg_constraint WHERE contype = 'f'", db=db)
            h.check(int(fks) == 7, f'{db}: {fks} foreign keys')
        for fmt, f in (('custom', 'custom.dump'), ('plain', 'plain.sql'),
                       ('tar', 'archive.tar')):
            o = step(rep, 'd-' + fmt)['outputs']
            path = h.tmp / 'backups' / f
            h.check(o['sha256'] == sha256_file(path), f'{fmt}: sha256 differs')
            h.check(o['bytes'] == path.stat().st_size, f'{fmt}: bytes differ')
            h.check(o['database'] == src and o['format'] == fmt, o)
            h.check(o['started_at'] <= o['finished_at'], o)
            h.check(not (h.tmp / 'backups' / (f + '.partial')).exists(), 'partial left')
        # directory format: sha256 over the files in name order
        d = h.tmp / 'backups' / 'dirfmt'
        hh = hashlib.sha256()
        for name in sorted(os.listdir(d)):
            hh.update((d / name).read_bytes())
        h.check(step(rep, 'd-directory')['outputs']['sha256'] == hh.hexdigest(),
                'directory sha256')
        for fmt in ('custom', 'plain', 'tar', 'directory'):
            c = step(rep, 'c-' + fmt)['outputs']
            h.check(c['match'] is True and c['differences'] == [], c)
            h.check(c['source_total'] == sum(DEMO_COUNTS.values()), c)
            rr = step(rep, 'r-' + fmt)['outputs']
            h.check(rr['tables'] == 8 and rr['format'] == fmt, rr)
            h.check(f'/{prefix}_{fmt}' in rr['url'], rr)
    finally:
        for db in dbs + [src]:
            drop_db(h, db)


@suite.test
def test_gzip_plain_restore_and_truncated_gzip(h):
    src = demo_db(h, uniq(h, 'gzsrc'))
    good, bad = uniq(h, 'gz_ok'), uniq(h, 'gz_bad')
    try:
        plain = h.tmp / 'db.sql'
        subprocess.run([f'{h.pg.bindir}/pg_dump', '-h', '127.0.0.1', '-p',
                        str(h.pg.port), '-U', 'postgres', '-f', str(plain), src],
                       check=True)
        data = plain.read_bytes()
        (h.tmp / 'db.sql.gz').write_bytes(gzip.compress(data))
        r, rep = run(h, h.fixture(FIX + 'restore.yaml'), '--set', f'url={h.pg.url()}',
                     '--set', f'file={h.tmp}/db.sql.gz', '--set', f'database={good}')
        h.check(r.returncode == 0, out(r))
        h.check(table_counts(h.pg, good) == DEMO_COUNTS, 'gzip restore counts')
        h.check(step(rep, 'restore')['outputs']['format'] == 'plain', rep)
        # a gzip file cut in half: gzip fails, psql is killed before it can
        # commit, the new database is dropped again
        gz = gzip.compress(data)
        (h.tmp / 'cut.sql.gz').write_bytes(gz[:len(gz) // 2])
        r, rep = run(h, h.fixture(FIX + 'restore.yaml'), '--set', f'url={h.pg.url()}',
                     '--set', f'file={h.tmp}/cut.sql.gz', '--set', f'database={bad}')
        h.check(r.returncode == 1, out(r))
        h.check(bad not in h.pg.databases(), 'a truncated gzip left a database')
        err = step(rep, 'restore').get('error', '')
        h.check('dropped again' in err, err)
        # complete gzip stream of a truncated plain dump
        (h.tmp / 'short.sql.gz').write_bytes(gzip.compress(data[:len(data) * 2 // 3]))
        r, rep = run(h, h.fixture(FIX + 'restore.yaml'), '--set', f'url={h.pg.url()}',
                     '--set', f'file={h.tmp}/short.sql.gz', '--set', f'database={bad}')
        h.check(r.returncode == 1, out(r))
        h.check(bad not in h.pg.databases(), 'a truncated dump left a database')
        h.check('truncated' in step(rep, 'restore').get('error', ''), rep)
    finally:
        for db in (src, good, bad):
            drop_db(h, db)


def make_custom_dump(h, db):
    path = h.tmp / 'src.dump'
    subprocess.run([f'{h.pg.bindir}/pg_dump', '-Fc', '-h', '127.0.0.1', '-p',
                    str(h.pg.port), '-U', 'postgres', '-f', str(path), db],
                   check=True)
    return path


@suite.test
def test_restore_refuses_existing_target(h):
    src = demo_db(h, uniq(h, 'exsrc'))
    target = uniq(h, 'taken')
    try:
        dump = make_custom_dump(h, src)
        h.pg.psql(f'CREATE DATABASE "{target}"')
        h.pg.psql('CREATE TABLE marker (v text); INSERT INTO marker VALUES (\'original\')',
                  db=target)
        r, rep = run(h, h.fixture(FIX + 'restore.yaml'), '--set', f'url={h.pg.url()}',
                     '--set', f'file={dump}', '--set', f'database={target}')
        h.check(r.returncode == 1, out(r))
        err = step(rep, 'restore').get('error', '')
        h.check('already exists' in err and 'clean: true' in err, err)
        h.check(h.pg.psql('SELECT v FROM marker', db=target).strip() == 'original',
                'the existing database was touched')
        h.check(h.pg.psql("SELECT to_regclass('public.\"User\"') IS NULL",
                          db=target).strip() == 't', 'data restored into it')
        # clean: true on a database this run did not create: refused (3)
        r, rep = run(h, h.fixture(FIX + 'restore.yaml'), '--set', f'url={h.pg.url()}',
                     '--set', f'file={dump}', '--set', f'database={target}',
                     '--set', 'clean=true')
        h.check(r.returncode == 3, out(r))
        h.check(h.pg.psql('SELECT v FROM marker', db=target).strip() == 'original',
                'a refused clean restore touched the database')
        # ... and allowed with --allow-destructive: dropped and recreated
        r, rep = run(h, h.fixture(FIX + 'restore.yaml'), '--set', f'url={h.pg.url()}',
                     '--set', f'file={dump}', '--set', f'database={target}',
                     '--set', 'clean=true', '--allow-destructive')
        h.check(r.returncode == 0, out(r))
        h.check(table_counts(h.pg, target) == DEMO_COUNTS, 'clean restore counts')
        h.check(h.pg.psql("SELECT to_regclass('public.marker') IS NULL",
                          db=target).strip() == 't', 'old content survived')
    finally:
        drop_db(h, src)
        drop_db(h, target)


@suite.test
def test_corrupted_dump_leaves_nothing(h):
    src = demo_db(h, uniq(h, 'cosrc'))
    target = uniq(h, 'corrupt')
    try:
        data = make_custom_dump(h, src).read_bytes()
        cases = {
            'flipped.dump': data[:len(data) // 2] + bytes(4096) + data[len(data) // 2 + 4096:],
            'truncated.dump': data[:len(data) * 3 // 5],
            'junk.dump': bytes(range(256)) * 64,
            'header-only.dump': data[:200],
        }
        for name, content in cases.items():
            (h.tmp / name).write_bytes(content)
            r, rep = run(h, h.fixture(FIX + 'restore.yaml'), '--set', f'url={h.pg.url()}',
                         '--set', f'file={h.tmp / name}', '--set', f'database={target}')
            h.check(r.returncode == 1, f'{name}: ' + out(r))
            h.check(target not in h.pg.databases(), f'{name}: left a database')
            h.check(step(rep, 'restore').get('error'), f'{name}: no error message')
    finally:
        drop_db(h, src)
        drop_db(h, target)


@suite.test
def test_checksum_mismatch_creates_nothing(h):
    src = demo_db(h, uniq(h, 'cksrc'))
    target = uniq(h, 'cksum')
    try:
        dump = make_custom_dump(h, src)
        wrong = hashlib.sha256(b'something else').hexdigest()
        r, rep = run(h, h.fixture(FIX + 'restore.yaml'), '--set', f'url={h.pg.url()}',
                     '--set', f'file={dump}', '--set', f'database={target}',
                     '--set', f'sha256={wrong}')
        h.check(r.returncode == 1, out(r))
        err = step(rep, 'restore').get('error', '')
        h.check(wrong in err and sha256_file(dump) in err and 'nothing was restored' in err, err)
        h.check(target not in h.pg.databases(), 'a database was created')
        h.check('"intent"' not in state_text(h), 'journal has an intent')
        r, rep = run(h, h.fixture(FIX + 'restore.yaml'), '--set', f'url={h.pg.url()}',
                     '--set', f'file={dump}', '--set', f'database={target}',
                     '--set', f'sha256={sha256_file(dump)}')
        h.check(r.returncode == 0, out(r))
        h.check(table_counts(h.pg, target)['public.User'] == 2000, 'restore with sha')
    finally:
        drop_db(h, src)
        drop_db(h, target)


@suite.test
def test_truncated_plain_sql(h):
    src = demo_db(h, uniq(h, 'trsrc'))
    target = uniq(h, 'trunc')
    try:
        plain = h.tmp / 'full.sql'
        subprocess.run([f'{h.pg.bindir}/pg_dump', '-h', '127.0.0.1', '-p',
                        str(h.pg.port), '-U', 'postgres', '-f', str(plain), src],
                       check=True)
        data = plain.read_bytes()
        for cut in (len(data) // 3, len(data) - 200):
            (h.tmp / 'cut.sql').write_bytes(data[:cut])
            r, rep = run(h, h.fixture(FIX + 'restore.yaml'), '--set', f'url={h.pg.url()}',
                         '--set', f'file={h.tmp}/cut.sql', '--set', f'database={target}')
            h.check(r.returncode == 1, out(r))
            h.check(target not in h.pg.databases(), 'left a database')
            h.check('truncated' in step(rep, 'restore').get('error', ''), rep)
        # a hand-written SQL file with an error: psql stops, nothing remains
        (h.tmp / 'bad.sql').write_text('CREATE TABLE a (i int);\nINSERT INTO a VALUES (1);\n'
                                       'INSERT INTO nope VALUES (1);\n')
        r, rep = run(h, h.fixture(FIX + 'restore.yaml'), '--set', f'url={h.pg.url()}',
                     '--set', f'file={h.tmp}/bad.sql', '--set', f'database={target}')
        h.check(r.returncode == 1, out(r))
        h.check(target not in h.pg.databases(), 'left a database')
        err = step(rep, 'restore').get('error', '')
        h.check('"nope" does not exist' in err and 'psql exited with status 3' in err, err)
    finally:
        drop_db(h, src)
        drop_db(h, target)


@suite.test
def test_restore_timeout_drops_database(h):
    target = uniq(h, 'slow')
    (h.tmp / 'slow.sql').write_text('CREATE TABLE t (i int);\nSELECT pg_sleep(60);\n')
    try:
        t0 = time.time()
        rb = h.write('slow.yaml', (h.fixture(FIX + 'restore.yaml')).read_text().replace(
            '    uses: postgres.restore\n', '    uses: postgres.restore\n    timeout: 2s\n'))
        r, rep = run(h, rb, '--set', f'url={h.pg.url()}',
                     '--set', f'file={h.tmp}/slow.sql', '--set', f'database={target}')
        h.check(r.returncode == 1, out(r))
        h.check(time.time() - t0 < 30, 'the timeout did not stop the restore')
        h.check(step(rep, 'restore')['status'] == 'timed_out', rep)
        h.check(target not in h.pg.databases(), 'the timed-out restore left its database')
        busy = h.pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' "
                         "AND pid <> pg_backend_pid()").strip()
        h.check(busy == '0', 'psql still running on the server')
    finally:
        drop_db(h, target)


@suite.test
def test_restore_missing_file(h):
    target = uniq(h, 'nofile')
    r, rep = run(h, h.fixture(FIX + 'restore.yaml'), '--set', f'url={h.pg.url()}',
                 '--set', f'file={h.tmp}/nope.dump', '--set', f'database={target}')
    h.check(r.returncode == 1, out(r))
    err = step(rep, 'restore').get('error', '')
    h.check('nope.dump' in err and 'No such file' in err, err)
    h.check(target not in h.pg.databases(), 'created a database')


@suite.test
def test_strange_identifiers(h):
    pg = h.pg
    src = 'a"; DROP DATABASE victim_' + str(os.getpid()) + '; --'
    victim = 'victim_' + str(os.getpid())
    target = f'drill "quoted" name {os.getpid()}'
    qsrc = '"' + src.replace('"', '""') + '"'
    qtarget = '"' + target.replace('"', '""') + '"'
    try:
        pg.psql(f'CREATE DATABASE {victim}')
        pg.psql(f'CREATE DATABASE {qsrc}')
        pg.psql('CREATE SCHEMA "odd schema"; '
                'CREATE TABLE "odd schema"."we ird ""table""" ("col umn" int PRIMARY KEY, "Val" text); '
                'INSERT INTO "odd schema"."we ird ""table""" VALUES (1, \'x\'), (2, \'y\'), (3, NULL); '
                'CREATE TABLE "child table" (id int REFERENCES "odd schema"."we ird ""table"""); '
                'INSERT INTO "child table" VALUES (1), (2)', db=src)
        r, rep = run(h, h.fixture(FIX + 'drill-weird.yaml'), '--set', f'url={pg.url(db=src)}',
                     '--set', f'file={h.tmp}/w.dump', '--set', f'target={target}')
        h.check(r.returncode == 0, out(r))
        h.check(victim in pg.databases(), 'an identifier was injected')
        h.check(src in pg.databases(), 'the source is gone')
        h.check(target not in pg.databases(), 'the drill database was not dropped')
        counts = step(rep, 'counts')['outputs']['tables']
        h.check(counts == {'odd schema.we ird "table"': 3, 'public.child table': 2}, counts)
        h.check(step(rep, 'compare')['outputs']['match'] is True, rep)
        h.check(step(rep, 'verify')['outputs']['foreign_keys_checked'] == 1, rep)
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS {qsrc} WITH (FORCE)')
        pg.psql(f'DROP DATABASE IF EXISTS {qtarget} WITH (FORCE)')
        pg.psql(f'DROP DATABASE IF EXISTS {victim}')


# ---- query, databases, guards ------------------------------------------------------------

@suite.test
def test_query_types_readonly_and_lua(h):
    db = demo_db(h, uniq(h, 'q'))
    try:
        r, rep = run(h, h.fixture(FIX + 'query.yaml'), '--set', f'url={h.pg.url(db=db)}')
        h.check(r.returncode == 0, out(r))
        h.check(step(rep, 'lua-query')['outputs']['n'] == 10, rep)
        err = step(rep, 'read-only').get('error', '')
        h.check('read-only transaction' in err, err)
        h.check(h.pg.psql("SELECT count(*) FROM \"User\" WHERE email = 'ro@example.com'",
                          db=db).strip() == '0', 'the read-only query wrote')
    finally:
        drop_db(h, db)


@suite.test
def test_query_summary_floats_are_shortest(h):
    """Numbers in a query's summary (and its float arguments) print as the
    shortest text that reads back as the same number: 16.8, not
    16.800000000000001."""
    rb = h.write('floats.yaml', '''version: 1
name: pg-floats
params:
  url: { required: true }
steps:
  - id: q
    uses: postgres.query
    with:
      url: ${params.url}
      sql: SELECT 16.8::numeric AS lag, 0.1::float8 + 0.2::float8 AS ratio, $1::text AS arg
      args: [16.8]
''')
    r, rep = run(h, rb, '--set', f'url={h.pg.url()}')
    h.check(r.returncode == 0, out(r))
    q = step(rep, 'q')
    h.check(q['summary'] == '1 row: [{"lag":16.8,"ratio":0.30000000000000004,"arg":"16.8"}]', q)
    h.check('16.800000000000001' not in r.stdout, r.stdout)


@suite.test
def test_query_timeout_cancels_on_server(h):
    marker = f'slowq-{os.getpid()}-{time.time_ns()}'
    rb = h.write('slowq.yaml', f'''
version: 1
name: slowq
steps:
  - id: slow
    uses: postgres.query
    timeout: 1s
    with: {{ url: "{h.pg.url()}", sql: "SELECT pg_sleep(45), '{marker}'" }}
''')
    t0 = time.time()
    r, rep = run(h, rb)
    h.check(r.returncode == 1, out(r))
    h.check(step(rep, 'slow')['status'] == 'timed_out', rep)
    h.check(time.time() - t0 < 20, 'the timeout did not end the step')
    # the server stopped running it too (pg_cancel_backend), not only us
    busy = h.pg.psql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                     f"AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()").strip()
    h.check(busy == '0', 'the query still runs on the server')


@suite.test
def test_query_write_needs_flag(h):
    db = demo_db(h, uniq(h, 'qw'))
    rb = h.write('w.yaml', '''
version: 1
name: write
params: { url: { required: true } }
steps:
  - id: write
    uses: postgres.query
    with:
      url: ${params.url}
      write: true
      sql: INSERT INTO "Tag" ("name") VALUES ($1)
      args: ["from-engine"]
''')
    try:
        r, rep = run(h, rb, '--set', f'url={h.pg.url(db=db)}')
        h.check(r.returncode == 3, out(r))
        h.check(step(rep, 'write')['status'] == 'refused', rep)
        h.check(h.pg.psql("SELECT count(*) FROM \"Tag\" WHERE name = 'from-engine'",
                          db=db).strip() == '0', 'a refused write happened')
        r, rep = run(h, rb, '--set', f'url={h.pg.url(db=db)}', '--allow-destructive')
        h.check(r.returncode == 0, out(r))
        h.check(step(rep, 'write')['outputs']['row_count'] == 1, rep)
        h.check(h.pg.psql("SELECT count(*) FROM \"Tag\" WHERE name = 'from-engine'",
                          db=db).strip() == '1', 'the write did not happen')
    finally:
        drop_db(h, db)


@suite.test
def test_create_and_drop_database(h):
    name = uniq(h, 'made')
    rb = h.write('cd.yaml', '''
version: 1
name: create-drop
params: { url: { required: true }, db: { required: true } }
steps:
  - id: create
    uses: postgres.create_database
    with: { url: "${params.url}", database: "${params.db}", owner: app }
  - id: probe
    uses: postgres.query
    with: { url: "${steps.create.outputs.url}", sql: "SELECT current_database() AS db, pg_catalog.pg_get_userbyid(datdba) AS owner FROM pg_database WHERE datname = current_database()" }
  - id: again
    uses: postgres.create_database
    continue_on_error: true
    with: { url: "${params.url}", database: "${params.db}" }
  - id: drop
    uses: postgres.drop_database
    with: { url: "${params.url}", database: "${params.db}" }
''')
    try:
        r, rep = run(h, rb, '--set', f'url={h.pg.url()}', '--set', f'db={name}')
        h.check(r.returncode == 0, out(r))
        h.check(step(rep, 'probe')['outputs']['rows'] == [{'db': name, 'owner': 'app'}], rep)
        h.check('already exists' in step(rep, 'again').get('error', ''), rep)
        h.check(step(rep, 'drop')['outputs']['dropped'] is True, rep)
        h.check(name not in h.pg.databases(), 'not dropped')
        # if_exists on a database that is not there: nothing to do, no error
        rb2 = h.write('gone.yaml', f'''
version: 1
name: gone
steps:
  - id: drop
    uses: postgres.drop_database
    with: {{ url: "{h.pg.url()}", database: "{name}", if_exists: true }}
''')
        r, rep = run(h, rb2, '--allow-destructive')
        h.check(r.returncode == 0, out(r))
        h.check(step(rep, 'drop')['outputs']['dropped'] is False, rep)
        journal = state_text(h)
        h.check('"intent"' in journal and '"removed"' in journal and
                'postgres.drop_database' in journal, 'journal records missing')
    finally:
        drop_db(h, name)


@suite.test
def test_drop_guards(h):
    keep = uniq(h, 'keepme')
    h.pg.psql(f'CREATE DATABASE "{keep}"')
    try:
        # not created by this run: refused without --allow-destructive
        rb = h.write('d1.yaml', f'''
version: 1
name: drop
steps:
  - id: drop
    uses: postgres.drop_database
    with: {{ url: "{h.pg.url()}", database: "{keep}" }}
''')
        r, rep = run(h, rb)
        h.check(r.returncode == 3, out(r))
        h.check(keep in h.pg.databases(), 'dropped without the flag')
        # protected by name: refused even with the flag
        rb = h.write('d2.yaml', f'''
version: 1
name: drop
guards: {{ protected_databases: ["keep*"] }}
steps:
  - id: drop
    uses: postgres.drop_database
    with: {{ url: "{h.pg.url()}", database: "{keep}" }}
''')
        r, rep = run(h, rb, '--allow-destructive')
        h.check(r.returncode == 3, out(r))
        h.check(keep in h.pg.databases(), 'a protected database was dropped')
        # protected by the cluster's system identifier: the URL names the
        # server as "localhost" and the database has an innocent name
        rb = h.write('d3.yaml', f'''
version: 1
name: drop
guards: {{ protected_databases: ["sysid:{h.pg.sysid()}"] }}
steps:
  - id: drop
    uses: postgres.drop_database
    with: {{ url: "postgresql://postgres@localhost:{h.pg.port}/postgres", database: "{keep}" }}
''')
        r, rep = run(h, rb, '--allow-destructive')
        h.check(r.returncode == 3, out(r))
        h.check(keep in h.pg.databases(), 'a sysid-protected database was dropped')
        # with the flag and no protection it goes
        r, rep = run(h, h.write('d4.yaml', (h.tmp / 'd1.yaml').read_text()),
                     '--allow-destructive')
        h.check(r.returncode == 0, out(r))
        h.check(keep not in h.pg.databases(), 'not dropped with the flag')
    finally:
        drop_db(h, keep)


@suite.test
def test_connections_terminate(h):
    db = uniq(h, 'conns')
    h.pg.psql(f'CREATE DATABASE "{db}"')
    sleeper = subprocess.Popen([f'{h.pg.bindir}/psql', '-X', '-h', '127.0.0.1', '-p',
                                str(h.pg.port), '-U', 'postgres', '-d', db, '-c',
                                'SELECT pg_sleep(120)'],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(50):
            n = h.pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}'")
            if n.strip() == '1':
                break
            time.sleep(0.1)
        rb = h.write('c.yaml', f'''
version: 1
name: conns
steps:
  - id: list
    uses: postgres.connections
    with: {{ url: "{h.pg.url(db=db)}" }}
  - id: kill
    uses: postgres.connections
    with: {{ url: "{h.pg.url()}", database: "{db}", terminate: true }}
''')
        r, rep = run(h, rb)
        h.check(r.returncode == 0, out(r))
        lst = step(rep, 'list')['outputs']
        h.check(lst['count'] == 1 and 'pg_sleep' in lst['connections'][0]['query'], lst)
        h.check(step(rep, 'kill')['outputs']['terminated'] == 1, rep)
        sleeper.wait(timeout=10)
        h.check(sleeper.returncode != 0, 'the session was not terminated')
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        drop_db(h, db)


@suite.test
def test_verify_finds_issues(h):
    db = uniq(h, 'verify')
    h.pg.psql(f'CREATE DATABASE "{db}"')
    h.pg.psql('CREATE TABLE parent (id int PRIMARY KEY); '
              'CREATE TABLE child (id int, pid int); '
              'INSERT INTO parent VALUES (1), (2); '
              'INSERT INTO child VALUES (1, 1), (2, 3), (3, 4), (4, NULL); '
              'ALTER TABLE child ADD CONSTRAINT child_pid_fkey FOREIGN KEY (pid) '
              'REFERENCES parent (id) NOT VALID; '
              'CREATE INDEX child_id_idx ON child (id); '
              "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'child_id_idx'::regclass",
              db=db)
    rb = h.write('v.yaml', f'''
version: 1
name: verify
steps:
  - id: strict
    uses: postgres.verify
    continue_on_error: true
    with: {{ url: "{h.pg.url(db=db)}" }}
  - id: report
    uses: postgres.verify
    with: {{ url: "{h.pg.url(db=db)}", fail_on_issues: false }}
''')
    try:
        r, rep = run(h, rb)
        h.check(r.returncode == 0, out(r))
        h.check(step(rep, 'strict')['status'] == 'failed', rep)
        o = step(rep, 'report')['outputs']
        h.check(o['ok'] is False, o)
        kinds = {(i['kind'], i['name']) for i in o['issues']}
        h.check(kinds == {('invalid_index', 'child_id_idx'),
                          ('not_validated_constraint', 'child_pid_fkey'),
                          ('fk_violation', 'child_pid_fkey')}, kinds)
        fk = [i for i in o['issues'] if i['kind'] == 'fk_violation'][0]
        h.check(fk['rows'] == 2 and fk['references'] == 'public.parent', fk)
    finally:
        drop_db(h, db)


@suite.test
def test_compare_detects_differences(h):
    a, b = uniq(h, 'cmpa'), uniq(h, 'cmpb')
    for db in (a, b):
        h.pg.psql(f'CREATE DATABASE "{db}"')
        h.pg.psql('CREATE TABLE t (id int, v text); INSERT INTO t SELECT i, md5(i::text) '
                  'FROM generate_series(1, 100) i; CREATE TABLE same (x int); '
                  'INSERT INTO same VALUES (1)', db=db)
    h.pg.psql("UPDATE t SET v = 'changed' WHERE id = 50", db=b)
    h.pg.psql('CREATE TABLE extra (x int)', db=b)
    rb = h.write('cmp.yaml', f'''
version: 1
name: cmp
steps:
  - id: counts-only
    uses: postgres.compare
    continue_on_error: true
    with: {{ source: "{h.pg.url(db=a)}", target: "{h.pg.url(db=b)}" }}
  - id: content
    uses: postgres.compare
    with: {{ source: "{h.pg.url(db=a)}", target: "{h.pg.url(db=b)}", checksums: true, fail_on_mismatch: false }}
''')
    try:
        r, rep = run(h, rb)
        h.check(r.returncode == 0, out(r))
        h.check(step(rep, 'counts-only')['status'] == 'failed', rep)
        diffs = step(rep, 'content')['outputs']['differences']
        kinds = {(d['table'], d['kind']) for d in diffs}
        h.check(kinds == {('public.t', 'checksum'), ('public.extra', 'extra_in_target')}, diffs)
        h.check(step(rep, 'content')['outputs']['match'] is False, rep)
    finally:
        drop_db(h, a)
        drop_db(h, b)


# ---- client programs ----------------------------------------------------------------------------

@suite.test
def test_client_binaries_by_version_and_no_password_on_argv(h):
    db = demo_db(h, uniq(h, 'bins'))
    old = h.tmp / 'old'
    old.mkdir()
    (old / 'pg_dump').write_text('#!/bin/sh\n[ "$1" = --version ] && '
                                 'echo "pg_dump (PostgreSQL) 9.6.24" && exit 0\nexit 1\n')
    (old / 'pg_dump').chmod(0o755)
    spy = h.tmp / 'spy'
    spy.mkdir()
    (spy / 'pg_dump').write_text(
        '#!/bin/sh\n[ "$1" = --version ] && echo "pg_dump (PostgreSQL) 99.1" && exit 0\n'
        f'echo "$@" > {h.tmp}/argv.txt\n'
        f'[ -n "$PGPASSWORD" ] && echo set > {h.tmp}/pgpassword.txt\n'
        f'exec {h.pg.bindir}/pg_dump "$@"\n')
    (spy / 'pg_dump').chmod(0o755)
    url = h.pg.url(db=db, user='app', password=APP_PASSWORD)
    try:
        r, rep = run(h, h.fixture(FIX + 'dump.yaml'), '--set', f'url={url}',
                     '--set', f'file={h.tmp}/a.dump', '--set', f'bin_dir={old}')
        h.check(r.returncode == 1, out(r))
        err = step(rep, 'dump').get('error', '')
        h.check('9.6.24' in err and 'PostgreSQL 15 server' in err, err)
        r, rep = run(h, h.fixture(FIX + 'dump.yaml'), '--set', f'url={url}',
                     '--set', f'file={h.tmp}/b.dump', '--set', f'bin_dir={spy}')
        h.check(r.returncode == 0, out(r))
        argv = (h.tmp / 'argv.txt').read_text()
        h.check(APP_PASSWORD not in argv, f'password on argv: {argv}')
        h.check('-h 127.0.0.1' in argv and '-U app' in argv and f"dbname='{db}'" in argv, argv)
        h.check((h.tmp / 'pgpassword.txt').exists(), 'PGPASSWORD not passed')
        h.check(step(rep, 'dump')['outputs']['tool_version'] == '99.1', rep)
    finally:
        drop_db(h, db)


@suite.test
def test_dump_globals(h):
    rb = h.write('g.yaml', f'''
version: 1
name: globals
steps:
  - id: g
    uses: postgres.dump_globals
    with: {{ url: "{h.pg.url()}", file: "out/globals.sql" }}
''')
    r, rep = run(h, rb)
    h.check(r.returncode == 0, out(r))
    text = (h.tmp / 'out' / 'globals.sql').read_text()
    h.check('CREATE ROLE app' in text, text[:500])
    o = step(rep, 'g')['outputs']
    h.check(o['sha256'] == sha256_file(h.tmp / 'out' / 'globals.sql'), o)


@suite.test
def test_invalid_params_rejected_before_running(h):
    rb = h.write('bad.yaml', '''
version: 1
name: bad
steps:
  - id: d
    uses: postgres.dump
    with: { url: "postgresql://x@127.0.0.1:1/x", fiel: "x.dump" }
''')
    r = h.engine('validate', str(rb))
    h.check(r.returncode == 2, out(r))
    h.check("'fiel'" in r.stdout + r.stderr, out(r))
    rb = h.write('badfmt.yaml', '''
version: 1
name: bad
steps:
  - id: d
    uses: postgres.dump
    with: { url: "postgresql://x@127.0.0.1:1/x", file: "x.dump", format: zip }
''')
    r = h.engine('validate', str(rb))
    h.check(r.returncode == 2, out(r))


# ---- the shipped runbooks -----------------------------------------------------------------------

@suite.test
def test_restore_drill_runbook_on_sandbox(h):
    env = {'DATABASE_URL': ''}
    r, rep = run(h, ROOT / 'runbooks' / 'restore-drill.yaml', env=env, timeout=300)
    h.check(r.returncode == 0, out(r))
    h.check(step(rep, 'sandbox')['status'] == 'ok', rep)
    h.check(step(rep, 'compare')['outputs']['match'] is True, rep)
    h.check(step(rep, 'restored-counts')['outputs']['tables'] == DEMO_COUNTS, rep)
    h.check(step(rep, 'drop-drill-db')['outputs']['dropped'] is True, rep)
    # the backup file is in the run directory and matches its checksum
    b = step(rep, 'backup')['outputs']
    h.check(sha256_file(b['file']) == b['sha256'], b)


@suite.test
def test_restore_drill_runbook_on_server(h):
    src = demo_db(h, uniq(h, 'drillsrc'))
    url = h.pg.url(db=src, user='app', password=APP_PASSWORD)
    before = h.pg.databases()
    try:
        r, rep = run(h, ROOT / 'runbooks' / 'restore-drill.yaml',
                     '--set', 'key_table=public.Order',
                     '--set', 'critical_tables=["public.User", "public.Order"]',
                     env={'DATABASE_URL': url}, timeout=300)
        h.check(r.returncode == 0, out(r))
        h.check(step(rep, 'sandbox')['status'] == 'skipped', rep)
        crit = {it['item']: it['outputs'] for it in step(rep, 'critical-rows')['items']}
        h.check(crit == {t: {'table': t, 'source': DEMO_COUNTS[t], 'restored': DEMO_COUNTS[t]}
                         for t in ('public.User', 'public.Order')}, crit)
        restored = step(rep, 'restore')['outputs']['database']
        h.check(restored.startswith('drill_'), restored)
        h.check(h.pg.databases() == before, 'the drill left a database behind')
        h.check(table_counts(h.pg, src) == DEMO_COUNTS, 'the source changed')
        h.check(APP_PASSWORD not in r.stdout + r.stderr + json.dumps(rep) + state_text(h),
                'the password leaked')
    finally:
        drop_db(h, src)


@suite.test
def test_evidence_names_the_backup_that_was_restored(h):
    # a safety backup is taken first; the evidence and the report must
    # name the backup the restore read, with its own checksum and size
    src = demo_db(h, uniq(h, 'evsrc'))
    drill = uniq(h, 'evdrill')
    url = h.pg.url(db=src, user='app', password=APP_PASSWORD)
    rb = h.write('ev.yaml', f"""version: 1
name: evidence
steps:
  - id: safety
    uses: postgres.dump
    with: {{ url: "${{env.DATABASE_URL}}", file: "{h.tmp}/safety.sql", format: plain }}
  - id: chosen
    uses: postgres.dump
    with: {{ url: "${{env.DATABASE_URL}}", file: "{h.tmp}/chosen.dump" }}
  - id: restore
    uses: postgres.restore
    recovered: true
    with:
      url: ${{env.DATABASE_URL}}
      file: ${{steps.chosen.outputs.file}}
      database: {drill}
  - id: ping
    uses: postgres.ping
    needs: [restore]
    with: {{ url: "${{steps.restore.outputs.url}}" }}
  - id: counts
    uses: postgres.row_counts
    needs: [restore]
    with: {{ url: "${{steps.restore.outputs.url}}" }}
  - id: newest
    uses: postgres.query
    needs: [restore]
    with: {{ url: "${{steps.restore.outputs.url}}", sql: 'SELECT id FROM "User" ORDER BY id LIMIT 2' }}
finally:
  - id: drop
    if: steps.restore.status == "ok"
    uses: postgres.drop_database
    with: {{ url: "${{env.DATABASE_URL}}", database: {drill} }}
""")
    try:
        r, rep = run(h, rb, '--evidence', h.tmp / 'ev.md', env={'DATABASE_URL': url})
        h.check(r.returncode == 0, out(r))
        chosen = h.tmp / 'chosen.dump'
        ev = (h.tmp / 'ev.md').read_text()
        section = ev.split('## Backup chosen', 1)[1].split('\n## ', 1)[0]
        h.check(f'`{chosen}` (step `chosen`)' in section, section)
        h.check(sha256_file(chosen) in section, section)
        h.check('safety' not in section, section)
        # each step says what it produced: on its end line, in the report
        # and in the evidence, from values read back with psql
        version = h.pg.psql("SHOW server_version").strip().split()[0]
        total = sum(DEMO_COUNTS.values())
        lines = {l.split()[1]: l for l in r.stdout.splitlines() if l.startswith('ok ')}
        h.check(f'PostgreSQL {version}, {drill} ' in lines['ping'] and ' MB' in lines['ping'],
                lines['ping'])
        h.check(f'{total} rows in {len(DEMO_COUNTS)} tables' in lines['counts'], lines['counts'])
        h.check('2 rows: [{"id":1},{"id":2}]' in lines['newest'], lines['newest'])
        h.check(step(rep, 'counts')['summary'] == f'{total} rows in {len(DEMO_COUNTS)} tables', rep)
        h.check(f'| counts | postgres.row_counts | ok | - | {total} rows in' in ev, ev)
        # the phases add up: preparation + restore = RTO; verification after
        slo = rep['slo']
        h.check(slo['preparation_ms'] + slo['restore_ms'] == slo['rto_ms'], slo)
        rs, ps = step(rep, 'restore'), step(rep, 'ping')
        h.check(slo['restore_ms'] == rs['duration_ms'], (slo, rs))
        h.check(0 < slo['verification_ms'] and slo['verification_ms'] >= ps['duration_ms'], slo)
        h.check('not part of the RTO' in ev and '| preparation time |' in ev, ev)
        # a backup no step of the run made is named as external
        rb2 = h.write('ev2.yaml', f"""version: 1
name: evidence-external
steps:
  - id: restore
    uses: postgres.restore
    recovered: true
    with: {{ url: "${{env.DATABASE_URL}}", file: "{chosen}", database: {drill}_x,
             sha256: {sha256_file(chosen)} }}
finally:
  - id: drop
    uses: postgres.drop_database
    with: {{ url: "${{env.DATABASE_URL}}", database: {drill}_x, if_exists: true }}
""")
        r, rep = run(h, rb2, '--evidence', h.tmp / 'ev2.md', env={'DATABASE_URL': url})
        h.check(r.returncode == 0, out(r))
        ev2 = (h.tmp / 'ev2.md').read_text()
        section = ev2.split('## Backup chosen', 1)[1].split('\n## ', 1)[0]
        h.check(f'`{chosen}` (external: not made by this run; restored by step `restore`)' in section
                and sha256_file(chosen) in section, section)
    finally:
        drop_db(h, drill)
        drop_db(h, src)


@suite.test
def test_restore_drill_runbook_fails_cleanly(h):
    # the app role may not read this database: the backup fails, the drill
    # stops with exit 1 (not a guard refusal) and leaves nothing behind
    src = demo_db(h, uniq(h, 'nogrant'), grant_app=False)
    url = h.pg.url(db=src, user='app', password=APP_PASSWORD)
    before = h.pg.databases()
    try:
        r, rep = run(h, ROOT / 'runbooks' / 'restore-drill.yaml',
                     env={'DATABASE_URL': url}, timeout=300)
        h.check(r.returncode == 1, out(r))
        err = step(rep, 'backup').get('error', '')
        h.check('permission denied' in err and 'pg_read_all_data' in err, err)
        h.check(step(rep, 'restore')['status'] == 'skipped', rep)
        h.check(h.pg.databases() == before, 'the failed drill left a database')
        h.check(not list((h.tmp / 'state').rglob('*.dump*')), 'a partial backup was left')
    finally:
        drop_db(h, src)


@suite.test
def test_backup_runbooks(h):
    src = demo_db(h, uniq(h, 'bksrc'))
    url = h.pg.url(db=src, user='app', password=APP_PASSWORD)
    before = h.pg.databases()
    try:
        r, rep = run(h, ROOT / 'runbooks' / 'backup-with-checksum.yaml',
                     '--set', f'backup_dir={h.tmp}/backups', env={'DATABASE_URL': url})
        h.check(r.returncode == 0, out(r))
        b = step(rep, 'backup')['outputs']
        h.check(rep['run_id'] in b['file'], b)
        side = pathlib.Path(b['checksum_file']).read_text()
        h.check(side == f"{b['sha256']}  {os.path.basename(b['file'])}\n", side)
        r2, rep2 = run(h, ROOT / 'runbooks' / 'backup-verify.yaml',
                       '--set', f"backup_file={b['file']}", '--set', f"sha256={b['sha256']}",
                       '--set', 'orphan_query=SELECT c.id FROM "Comment" c LEFT JOIN "Post" p '
                       'ON p.id = c."postId" WHERE p.id IS NULL',
                       env={'DATABASE_URL': url})
        h.check(r2.returncode == 0, out(r2))
        h.check(step(rep2, 'counts')['outputs']['tables'] == DEMO_COUNTS, rep2)
        h.check(step(rep2, 'orphans')['outputs']['row_count'] == 0, rep2)
        h.check(h.pg.databases() == before, 'the verify database was left')
        # orphans found: a warning to investigate, not a failed verification
        r2, rep2 = run(h, ROOT / 'runbooks' / 'backup-verify.yaml',
                       '--set', f"backup_file={b['file']}", '--set', f"sha256={b['sha256']}",
                       '--set', 'orphan_query=SELECT c.id FROM "Comment" c LIMIT 2',
                       env={'DATABASE_URL': url})
        h.check(r2.returncode == 0, out(r2))
        o = step(rep2, 'orphans')
        h.check(o['status'] == 'warn' and o['warning'].startswith('2 orphan row(s) found'), o)
        h.check('   warning: 2 orphan row(s) found' in r2.stdout, out(r2))
        h.check(h.pg.databases() == before, 'the verify database was left')
        # a damaged backup fails verification and leaves nothing
        with open(b['file'], 'r+b') as f:
            f.seek(os.path.getsize(b['file']) // 2)
            f.write(bytes(2048))
        r3, rep3 = run(h, ROOT / 'runbooks' / 'backup-verify.yaml',
                       '--set', f"backup_file={b['file']}", '--set', f"sha256={b['sha256']}",
                       env={'DATABASE_URL': url})
        h.check(r3.returncode == 1, out(r3))
        h.check('sha256' in step(rep3, 'restore').get('error', ''), rep3)
        h.check(h.pg.databases() == before, 'a database was left')
    finally:
        drop_db(h, src)


if __name__ == '__main__':
    suite.main()
