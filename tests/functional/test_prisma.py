"""Functional tests of the prisma plugin: the real engine against the
shared PostgreSQL server, and the real Prisma CLI 6.19.3 as an oracle.

Native tests need no Node. Oracle tests install Prisma with
prisma_oracle.sh into a cache directory (default /tmp/engine-prisma-oracle,
env PRISMA_ORACLE_DIR); when that cannot work here (no npm registry, no
node), each of them prints "PRISMA ORACLE UNAVAILABLE: <reason>" and
passes without checking anything.

Every test asserts the database effect (_prisma_migrations rows, tables
created or not) and the exit code (0 ok, 1 step failed, 3 guard refusal).
"""
import json
import os
import pathlib
import re
import shutil
import subprocess
import time

from harness import Suite
from pgserver import APP_PASSWORD

suite = Suite(__file__)
HERE = pathlib.Path(__file__).resolve().parent
FIX = HERE / 'fixtures' / 'prisma'
MIGS = ['20240101000000_init', '20240102000000_posts',
        '20240103000000_post_index']
UUID4 = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-'
                   r'[0-9a-f]{12}$')


# ---- helpers -------------------------------------------------------------------

def fresh_db(h, stem='pr', owner=None):
    name = f'{stem}_{h.name[5:30]}_{os.getpid()}'.lower()
    h.pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    h.pg.psql(f'CREATE DATABASE "{name}"' + (f' OWNER {owner}' if owner else ''))
    return name


def project(h, name='proj', migrations=True):
    """A project folder: prisma/migrations copied from the fixture."""
    proj = h.tmp / name
    (proj / 'prisma').mkdir(parents=True)
    if migrations:
        shutil.copytree(FIX / 'migrations', proj / 'prisma' / 'migrations')
    return proj


def add_migration(proj, name, sql):
    d = proj / 'prisma' / 'migrations' / name
    d.mkdir(parents=True, exist_ok=True)
    (d / 'migration.sql').write_bytes(sql.encode() if isinstance(sql, str) else sql)


def run(h, runbook, proj, *args, timeout=120, env=None):
    rep = h.tmp / f'report-{time.time_ns()}.json'
    r = h.engine('run', str(runbook), '--state-dir', str(h.tmp / 'state'),
                 '--report', str(rep), *args, cwd=proj, timeout=timeout,
                 env=env)
    report = json.loads(rep.read_text()) if rep.exists() else {}
    return r, report


def status(h, proj, url, *args):
    return run(h, FIX / 'status.yaml', proj, '-p', f'url={url}', *args)


def deploy(h, proj, url, *args, env=None):
    return run(h, FIX / 'deploy.yaml', proj, '-p', f'url={url}', *args, env=env)


def resolve(h, proj, url, *args):
    return run(h, FIX / 'resolve.yaml', proj, '-p', f'url={url}', *args)


def outputs(report, step):
    return report.get('steps', {}).get(step, {}).get('outputs', {})


def out(r):
    return f'exit {r.returncode}\nSTDOUT:\n{r.stdout}\nSTDERR:\n{r.stderr}'


def rows(h, db, schema='public'):
    """_prisma_migrations rows as dicts, by started_at."""
    exists = h.pg.psql(f"SELECT to_regclass('\"{schema}\"._prisma_migrations') "
                       "IS NOT NULL", db=db).strip()
    if exists != 't':
        return None
    txt = h.pg.psql(
        "SELECT coalesce(json_agg(json_build_object("
        "'id', id, 'checksum', checksum, 'finished', finished_at IS NOT NULL, "
        "'name', migration_name, 'logs', logs, "
        "'rolled_back', rolled_back_at IS NOT NULL, "
        "'steps', applied_steps_count) ORDER BY started_at), '[]') "
        f'FROM "{schema}"._prisma_migrations', db=db)
    return json.loads(txt)


def tables(h, db, schema='public'):
    out_ = h.pg.psql("SELECT relname FROM pg_class c JOIN pg_namespace n ON "
                     f"n.oid = c.relnamespace WHERE n.nspname = '{schema}' "
                     "AND relkind = 'r' ORDER BY 1", db=db)
    return [t for t in out_.split('\n') if t]


def sha256_hex(path):
    import hashlib
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def drop(h, db):
    h.pg.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


# ---- the Prisma oracle -------------------------------------------------------------

_ORACLE = {}


def oracle(h):
    """The oracle's node_modules dir, or None after printing why not."""
    if 'dir' not in _ORACLE:
        _ORACLE['dir'], _ORACLE['why'] = _oracle_setup(h)
    if _ORACLE['dir'] is None:
        print(f"PRISMA ORACLE UNAVAILABLE: {_ORACLE['why']}", flush=True)
    return _ORACLE['dir']


def _oracle_setup(h):
    if not shutil.which('npx') or not shutil.which('node'):
        return None, 'node/npx not installed'
    d = os.environ.get('PRISMA_ORACLE_DIR', '/tmp/engine-prisma-oracle')
    try:
        r = subprocess.run(['sh', str(HERE / 'prisma_oracle.sh')],
                           env=dict(os.environ, PRISMA_ORACLE_DIR=d),
                           capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return None, 'npm install of prisma@6.19.3 timed out'
    if r.returncode != 0:
        return None, ('npm install of prisma@6.19.3 failed: ' +
                      (r.stderr or r.stdout).strip()[-400:])
    nm = pathlib.Path(d) / 'node_modules'
    # Probe: Prisma must be able to read a database offline.
    db = fresh_db(h, 'probe')
    proj = oracle_project(h, nm, 'probe')
    try:
        p = prisma(h, proj, h.pg.url(db), 'migrate', 'status')
    except subprocess.TimeoutExpired:
        return None, 'prisma migrate status timed out'
    finally:
        drop(h, db)
        shutil.rmtree(proj, ignore_errors=True)
    if 'migrations found' not in p.stdout:
        return None, ('prisma migrate status does not work offline here: ' +
                      (p.stdout + p.stderr).strip()[-400:])
    return nm, None


def oracle_project(h, nm, name='proj'):
    proj = project(h, name)
    shutil.copy(FIX / 'schema.prisma', proj / 'prisma' / 'schema.prisma')
    shutil.copy(FIX / 'prisma.config.ts', proj / 'prisma.config.ts')
    (proj / 'node_modules').symlink_to(nm)
    return proj


def prisma(h, proj, url, *args, timeout=180):
    env = dict(os.environ, DATABASE_URL=url, CHECKPOINT_DISABLE='1',
               PRISMA_HIDE_UPDATE_MESSAGE='1', NO_COLOR='1')
    return subprocess.run(['npx', '--no', 'prisma', *args], cwd=str(proj),
                          env=env, capture_output=True, text=True,
                          timeout=timeout)


def pout(p):
    return f'prisma exit {p.returncode}\n{p.stdout}\n{p.stderr}'


# ---- native -----------------------------------------------------------------------------

@suite.test
def test_status_no_table_everything_pending(h):
    db = fresh_db(h)
    proj = project(h)
    r, rep = status(h, proj, h.pg.url(db))
    h.check(r.returncode == 0, out(r))
    o = outputs(rep, 'status')
    h.check(o.get('pending') == MIGS, o)
    h.check(o.get('applied') == [] and o.get('failed') == [] and
            o.get('modified') == [], o)
    h.check(o.get('up_to_date') is False, o)
    # read-only: status created nothing
    h.check(rows(h, db) is None, 'status created _prisma_migrations')
    h.check(tables(h, db) == [], tables(h, db))
    drop(h, db)


@suite.test
def test_require_up_to_date_fails_listing_pending(h):
    db = fresh_db(h)
    proj = project(h)
    r, rep = status(h, proj, h.pg.url(db), '-p', 'require=true')
    h.check(r.returncode == 1, out(r))
    text = r.stdout + r.stderr
    h.check('pending' in text and all(m in text for m in MIGS), out(r))
    h.check(outputs(rep, 'status').get('pending') == MIGS, rep)
    h.check(rows(h, db) is None, 'table created')
    drop(h, db)


@suite.test
def test_deploy_native_applies_then_up_to_date(h):
    db = fresh_db(h)
    proj = project(h)
    url = h.pg.url(db)
    r, rep = deploy(h, proj, url)
    h.check(r.returncode == 0, out(r))
    o = outputs(rep, 'deploy')
    h.check(o.get('applied_now') == MIGS, o)
    h.check(o.get('up_to_date') is True, o)
    rs = rows(h, db)
    h.check([x['name'] for x in rs] == MIGS, rs)
    for x in rs:
        m = proj / 'prisma' / 'migrations' / x['name'] / 'migration.sql'
        h.check(x['checksum'] == sha256_hex(m), (x, sha256_hex(m)))
        h.check(UUID4.match(x['id']), x['id'])
        h.check(x['finished'] and not x['rolled_back'] and x['logs'] is None
                and x['steps'] == 1, x)
    h.check(tables(h, db) == ['Post', 'User', '_prisma_migrations'], tables(h, db))
    h.check(h.pg.psql('SELECT count(*) FROM "User"', db=db).strip() == '1')
    # again: nothing to do, nothing applied twice
    r, rep = deploy(h, proj, url)
    h.check(r.returncode == 0, out(r))
    h.check(outputs(rep, 'deploy').get('applied_now') == [], rep)
    h.check(len(rows(h, db)) == 3, rows(h, db))
    h.check(h.pg.psql('SELECT count(*) FROM "User"', db=db).strip() == '1')
    r, rep = status(h, proj, url, '-p', 'require=true')
    h.check(r.returncode == 0, out(r))
    o = outputs(rep, 'status')
    h.check(o.get('applied') == MIGS and o.get('pending') == [] and
            o.get('up_to_date') is True, o)
    # a new migration is pending, then applied alone
    add_migration(proj, '20240104000000_tag', 'CREATE TABLE "Tag" (id int);\n')
    r, rep = status(h, proj, url)
    h.check(outputs(rep, 'status').get('pending') == ['20240104000000_tag'], rep)
    r, rep = deploy(h, proj, url)
    h.check(r.returncode == 0, out(r))
    h.check(outputs(rep, 'deploy').get('applied_now') == ['20240104000000_tag'], rep)
    h.check('Tag' in tables(h, db), tables(h, db))
    drop(h, db)


@suite.test
def test_deploy_failure_records_logs_and_blocks(h):
    db = fresh_db(h)
    proj = project(h)
    url = h.pg.url(db)
    add_migration(proj, '20240104000000_bad',
                  'CREATE TABLE "Half" (id int);\nSELECT * FROM no_such_table;\n')
    add_migration(proj, '20240105000000_after', 'CREATE TABLE "After" (id int);\n')
    r, rep = deploy(h, proj, url)
    h.check(r.returncode == 1, out(r))
    h.check('20240104000000_bad' in r.stdout + r.stderr, out(r))
    h.check('no_such_table' in r.stdout + r.stderr, out(r))
    rs = rows(h, db)
    h.check([x['name'] for x in rs] == MIGS + ['20240104000000_bad'], rs)
    bad = rs[-1]
    h.check(not bad['finished'] and not bad['rolled_back'] and bad['steps'] == 0, bad)
    h.check(bad['logs'] and 'no_such_table' in bad['logs'] and '42P01' in bad['logs'],
            bad)
    h.check('After' not in tables(h, db), tables(h, db))
    # the failed migration blocks the next deploy (P3009), naming it
    r, rep = deploy(h, proj, url)
    h.check(r.returncode == 1, out(r))
    text = r.stdout + r.stderr
    h.check('P3009' in text and '20240104000000_bad' in text and
            'migrate resolve --rolled-back' in text and '--applied' in text, out(r))
    h.check(len(rows(h, db)) == 4 and 'After' not in tables(h, db), rows(h, db))
    r, rep = status(h, proj, url)
    h.check(r.returncode == 0, out(r))
    o = outputs(rep, 'status')
    h.check(o.get('failed') == ['20240104000000_bad'], o)
    h.check(o.get('pending') == ['20240105000000_after'], o)
    h.check(o.get('up_to_date') is False, o)
    r, _ = status(h, proj, url, '-p', 'require=true')
    h.check(r.returncode == 1 and 'failed' in r.stdout + r.stderr and
            '20240104000000_bad' in r.stdout + r.stderr, out(r))
    # resolved as rolled back and fixed: deploy applies it again, then the
    # next one
    r, rep = resolve(h, proj, url, '-p', 'rolled_back=20240104000000_bad')
    h.check(r.returncode == 0, out(r))
    h.pg.psql('DROP TABLE IF EXISTS "Half"', db=db)
    add_migration(proj, '20240104000000_bad', 'CREATE TABLE "Half" (id int);\n')
    r, rep = deploy(h, proj, url)
    h.check(r.returncode == 0, out(r))
    h.check(outputs(rep, 'deploy').get('applied_now') ==
            ['20240104000000_bad', '20240105000000_after'], rep)
    rs = rows(h, db)
    h.check(len(rs) == 6, rs)
    h.check({'Half', 'After'} <= set(tables(h, db)), tables(h, db))
    r, rep = status(h, proj, url, '-p', 'require=true')
    h.check(r.returncode == 0, out(r))
    drop(h, db)


@suite.test
def test_edited_migration_shows_as_modified(h):
    db = fresh_db(h)
    proj = project(h)
    url = h.pg.url(db)
    r, _ = deploy(h, proj, url)
    h.check(r.returncode == 0, out(r))
    f = proj / 'prisma' / 'migrations' / MIGS[1] / 'migration.sql'
    f.write_text(f.read_text() + '\n-- edited after it was applied\n')
    r, rep = status(h, proj, url)
    h.check(r.returncode == 0, out(r))
    o = outputs(rep, 'status')
    h.check(o.get('modified') == [MIGS[1]], o)
    h.check(o.get('applied') == MIGS and o.get('pending') == [], o)
    h.check(o.get('up_to_date') is False, o)
    r, rep = status(h, proj, url, '-p', 'require=true')
    h.check(r.returncode == 1 and 'modified' in r.stdout + r.stderr and
            MIGS[1] in r.stdout + r.stderr, out(r))
    # deploy does not re-apply it and leaves the rows alone
    before = rows(h, db)
    r, rep = deploy(h, proj, url)
    h.check(r.returncode == 0, out(r))
    h.check(outputs(rep, 'deploy').get('applied_now') == [], rep)
    h.check(outputs(rep, 'deploy').get('modified') == [MIGS[1]], rep)
    h.check(rows(h, db) == before, rows(h, db))
    drop(h, db)


@suite.test
def test_crlf_converted_files_still_match(h):
    db = fresh_db(h)
    proj = project(h)
    url = h.pg.url(db)
    r, _ = deploy(h, proj, url)
    h.check(r.returncode == 0, out(r))
    for m in MIGS:  # LF applied, now CRLF on disk (a Windows checkout)
        f = proj / 'prisma' / 'migrations' / m / 'migration.sql'
        f.write_bytes(f.read_bytes().replace(b'\n', b'\r\n'))
        h.check(b'\r\n' in f.read_bytes())
    r, rep = status(h, proj, url, '-p', 'require=true')
    h.check(r.returncode == 0, out(r))
    o = outputs(rep, 'status')
    h.check(o.get('modified') == [] and o.get('up_to_date') is True, o)
    # and the other way: applied from CRLF files, read back as LF
    db2 = fresh_db(h, 'pr2')
    url2 = h.pg.url(db2)
    r, _ = deploy(h, proj, url2)
    h.check(r.returncode == 0, out(r))
    crlf_sum = sha256_hex(proj / 'prisma' / 'migrations' / MIGS[0] / 'migration.sql')
    h.check(rows(h, db2)[0]['checksum'] == crlf_sum, rows(h, db2))
    for m in MIGS:
        f = proj / 'prisma' / 'migrations' / m / 'migration.sql'
        f.write_bytes(f.read_bytes().replace(b'\r\n', b'\n'))
    r, rep = status(h, proj, url2, '-p', 'require=true')
    h.check(r.returncode == 0, out(r))
    h.check(outputs(rep, 'status').get('modified') == [], rep)
    drop(h, db)
    drop(h, db2)


@suite.test
def test_two_concurrent_deploys_apply_each_migration_once(h):
    db = fresh_db(h)
    proj = project(h)
    url = h.pg.url(db)
    # slow migrations so that the two runs overlap
    add_migration(proj, '20240104000000_slow_a',
                  'SELECT pg_sleep(0.7);\nCREATE TABLE "SlowA" (id int);\n')
    add_migration(proj, '20240105000000_slow_b',
                  'SELECT pg_sleep(0.7);\nINSERT INTO "User" (email) VALUES (\'b@x\');\n')
    procs = []
    for i in range(2):
        rep = h.tmp / f'rep{i}.json'
        procs.append((rep, h.popen('run', str(FIX / 'deploy.yaml'), '-p', f'url={url}',
                                   '--state-dir', str(h.tmp / f'state{i}'),
                                   '--report', str(rep), cwd=proj)))
    results = []
    for rep, p in procs:
        so, se = p.communicate(timeout=120)
        results.append((p.returncode, so + se, json.loads(rep.read_text())))
    for code, text, _ in results:
        h.check(code == 0, text)
    applied = [outputs(rep, 'deploy').get('applied_now') for _, _, rep in results]
    allm = MIGS + ['20240104000000_slow_a', '20240105000000_slow_b']
    h.check(sorted(applied[0] + applied[1]) == allm, applied)
    h.check(not set(applied[0]) & set(applied[1]), applied)
    rs = rows(h, db)
    h.check(sorted(x['name'] for x in rs) == allm, rs)
    h.check(all(x['finished'] for x in rs), rs)
    h.check(h.pg.psql('SELECT count(*) FROM "User"', db=db).strip() == '2')
    h.check(any('waiting for the migration lock' in t for _, t, _ in results) or
            not (applied[0] and applied[1]), [t for _, t, _ in results])
    drop(h, db)


@suite.test
def test_lock_held_elsewhere_times_out(h):
    db = fresh_db(h)
    proj = project(h)
    holder = subprocess.Popen(
        [f'{h.pg.bindir}/psql', '-X', '-h', '127.0.0.1', '-p', str(h.pg.port),
         '-U', 'postgres', '-d', db, '-c', 'SELECT pg_advisory_lock(72707369)',
         '-c', 'SELECT pg_sleep(30)'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if h.pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = "
                         "'advisory' AND objid = 72707369 AND granted",
                         db=db).strip() == '1':
                break
            time.sleep(0.1)
        t0 = time.time()
        r, rep = deploy(h, proj, h.pg.url(db), '-p', 'lock_timeout=1s')
        h.check(r.returncode == 1, out(r))
        h.check(time.time() - t0 < 20, 'lock wait not bounded')
        h.check('72707369' in r.stdout + r.stderr and 'lock' in r.stdout, out(r))
        h.check(rows(h, db) is None and tables(h, db) == [], tables(h, db))
    finally:
        holder.kill()
        holder.wait()
        # the server backend sleeps on without its client: end it
        h.pg.psql("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE "
                  "locktype = 'advisory' AND objid = 72707369", db=db)
    r, rep = deploy(h, proj, h.pg.url(db), '-p', 'lock_timeout=5s')
    h.check(r.returncode == 0, out(r))
    h.check(len(rows(h, db)) == 3)
    drop(h, db)


@suite.test
def test_guard_refuses_protected_database(h):
    db = fresh_db(h)
    proj = project(h)
    r, _ = deploy(h, proj, h.pg.url(db), '-p', f'protect={db}')
    h.check(r.returncode == 3, out(r))
    h.check(rows(h, db) is None and tables(h, db) == [], tables(h, db))
    # by system identifier: the URL's name does not matter
    r, _ = deploy(h, proj, h.pg.url(db), '-p', f'protect=sysid:{h.pg.sysid()}')
    h.check(r.returncode == 3, out(r))
    h.check(rows(h, db) is None and tables(h, db) == [], tables(h, db))
    drop(h, db)


@suite.test
def test_provider_mismatch_is_refused(h):
    db = fresh_db(h)
    proj = project(h)
    (proj / 'prisma' / 'migrations' / 'migration_lock.toml').write_text(
        '# Please do not edit this file manually\nprovider = "mysql"\n')
    for rb in (FIX / 'deploy.yaml', FIX / 'status.yaml'):
        r, _ = run(h, rb, proj, '-p', f'url={h.pg.url(db)}')
        h.check(r.returncode == 1, out(r))
        h.check('mysql' in r.stdout + r.stderr and 'migration_lock.toml' in r.stdout,
                out(r))
    h.check(rows(h, db) is None and tables(h, db) == [], tables(h, db))
    drop(h, db)


@suite.test
def test_missing_folder_and_folders_without_sql(h):
    db = fresh_db(h)
    proj = project(h, migrations=False)
    r, _ = status(h, proj, h.pg.url(db))
    h.check(r.returncode == 1 and 'prisma/migrations' in r.stdout, out(r))
    shutil.copytree(FIX / 'migrations', proj / 'prisma' / 'migrations')
    (proj / 'prisma' / 'migrations' / '20240101500000_empty_dir').mkdir()
    (proj / 'prisma' / 'migrations' / 'README.md').write_text('notes\n')
    r, rep = deploy(h, proj, h.pg.url(db))
    h.check(r.returncode == 0, out(r))
    h.check(outputs(rep, 'deploy').get('applied_now') == MIGS, rep)
    h.check('20240101500000_empty_dir' in r.stdout, out(r))  # warned about
    drop(h, db)


@suite.test
def test_non_empty_schema_without_table_is_p3005(h):
    db = fresh_db(h)
    proj = project(h)
    h.pg.psql('CREATE TABLE legacy (id int)', db=db)
    r, _ = deploy(h, proj, h.pg.url(db))
    h.check(r.returncode == 1, out(r))
    h.check('P3005' in r.stdout and 'baseline' in r.stdout, out(r))
    h.check(rows(h, db) is None and tables(h, db) == ['legacy'], tables(h, db))
    drop(h, db)


@suite.test
def test_schema_parameter_and_password_redaction(h):
    db = fresh_db(h, owner='app')
    proj = project(h)
    url = h.pg.url(db, user='app', password=APP_PASSWORD) + \
        '?schema=tenant&connection_limit=5&sslmode=disable'
    r, rep = deploy(h, proj, url)
    h.check(r.returncode == 0, out(r))
    h.check(rows(h, db) is None, 'table must not be in public')
    rs = rows(h, db, 'tenant')
    h.check([x['name'] for x in rs] == MIGS, rs)
    h.check(tables(h, db, 'tenant') == ['Post', 'User', '_prisma_migrations'],
            tables(h, db, 'tenant'))
    r2, rep2 = status(h, proj, url, '-p', 'require=true')
    h.check(r2.returncode == 0, out(r2))
    # the password appears nowhere: console, report, audit log
    texts = [r.stdout, r.stderr, r2.stdout, r2.stderr, json.dumps(rep),
             json.dumps(rep2)]
    for p in (h.tmp / 'state').rglob('*'):
        if p.is_file():
            texts.append(p.read_text(errors='replace'))
    h.check(not any(APP_PASSWORD in t for t in texts), 'password leaked')
    drop(h, db)


@suite.test
def test_runbook_migrate_deploy(h):
    root = HERE.parent.parent
    rb = root / 'runbooks' / 'migrate-deploy.yaml'
    v = h.engine('validate', str(rb))
    h.check(v.returncode == 0, out(v))
    db = fresh_db(h)
    proj = project(h)
    env = {'DATABASE_URL': h.pg.url(db)}
    r, rep = run(h, rb, proj, env=env, timeout=180)
    h.check(r.returncode == 0, out(r))
    st = rep.get('steps', {})
    h.check(all(st[s]['status'] == 'ok' for s in
                ('safety-backup', 'status-before', 'deploy', 'status-after')), st)
    h.check(outputs(rep, 'status-before').get('pending') == MIGS, st)
    h.check(outputs(rep, 'deploy').get('applied_now') == MIGS, st)
    h.check(outputs(rep, 'status-after').get('up_to_date') is True, st)
    backups = list((proj / 'backups').glob('pre-migration-*.dump'))
    h.check(len(backups) == 1 and backups[0].stat().st_size > 0, backups)
    h.check([x['name'] for x in rows(h, db)] == MIGS)
    # a failed migration stops the procedure: status-after does not pass
    add_migration(proj, '20240104000000_bad', 'SELECT * FROM nope;\n')
    r, rep = run(h, rb, proj, env=env, timeout=180)
    h.check(r.returncode == 1, out(r))
    h.check(rep['steps']['deploy']['status'] == 'failed', rep['steps'])
    h.check(rep['steps']['status-after']['status'] != 'ok', rep['steps'])
    drop(h, db)


@suite.test
def test_resolve_baseline_then_deploy_applies_only_the_new(h):
    db = fresh_db(h)
    proj = project(h)
    url = h.pg.url(db)
    # an existing database: the first migrations' tables, made by hand
    for m in MIGS:
        h.pg.psql((FIX / 'migrations' / m / 'migration.sql').read_text(), db=db)
    add_migration(proj, '20240104000000_tag', 'CREATE TABLE "Tag" (id int);\n')
    r, _ = deploy(h, proj, url)
    h.check(r.returncode == 1 and 'P3005' in r.stdout and 'prisma.resolve' in
            r.stdout, out(r))
    # the guard holds a protected database as it does for deploy
    r, _ = resolve(h, proj, url, '-p', 'baseline=true', '-p', f'protect={db}')
    h.check(r.returncode == 3, out(r))
    h.check(rows(h, db) is None, rows(h, db))
    r, rep = resolve(h, proj, url, '-p', 'baseline=true', '-p', f'up_to={MIGS[-1]}')
    h.check(r.returncode == 0, out(r))
    h.check(outputs(rep, 'resolve').get('applied_now') == MIGS, rep)
    rs = rows(h, db)
    h.check([x['name'] for x in rs] == MIGS, rs)
    for x in rs:
        m = proj / 'prisma' / 'migrations' / x['name'] / 'migration.sql'
        h.check(x['checksum'] == sha256_hex(m) and UUID4.match(x['id']), x)
        h.check(x['finished'] and not x['rolled_back'] and x['logs'] == ''
                and x['steps'] == 0, x)
    # a second baseline, or an applied one again, changes nothing
    r, _ = resolve(h, proj, url, '-p', 'baseline=true')
    h.check(r.returncode == 1 and 'migration history' in r.stdout, out(r))
    r, _ = resolve(h, proj, url, '-p', f'applied={MIGS[0]}')
    h.check(r.returncode == 1 and 'P3008' in r.stdout, out(r))
    r, _ = resolve(h, proj, url, '-p', f'rolled_back={MIGS[0]}')
    h.check(r.returncode == 1 and 'P3012' in r.stdout, out(r))
    r, _ = resolve(h, proj, url, '-p', 'applied=2024_nope')
    h.check(r.returncode == 1 and 'P3017' in r.stdout, out(r))
    r, _ = resolve(h, proj, url, '-p', 'rolled_back=2024_nope')
    h.check(r.returncode == 1 and 'P3011' in r.stdout, out(r))
    h.check(len(rows(h, db)) == 3, rows(h, db))
    r, rep = deploy(h, proj, url)
    h.check(r.returncode == 0, out(r))
    h.check(outputs(rep, 'deploy').get('applied_now') == ['20240104000000_tag'], rep)
    h.check(h.pg.psql('SELECT count(*) FROM "User"', db=db).strip() == '1')
    nm = oracle(h)
    if nm is not None:
        oproj = oracle_project(h, nm, 'oproj')
        add_migration(oproj, '20240104000000_tag', 'CREATE TABLE "Tag" (id int);\n')
        p = prisma(h, oproj, url, 'migrate', 'status')
        h.check(p.returncode == 0 and '4 migrations found' in p.stdout and
                'Database schema is up to date' in p.stdout, pout(p))
    drop(h, db)


# ---- against the real Prisma CLI ------------------------------------------------------------

@suite.test
def test_oracle_prisma_applied_our_status_up_to_date(h):
    nm = oracle(h)
    if nm is None:
        return
    db = fresh_db(h)
    proj = oracle_project(h, nm)
    url = h.pg.url(db)
    p = prisma(h, proj, url, 'migrate', 'deploy')
    h.check(p.returncode == 0, pout(p))
    h.check(len(rows(h, db)) == 3, rows(h, db))
    r, rep = status(h, proj, url, '-p', 'require=true')
    h.check(r.returncode == 0, out(r))
    o = outputs(rep, 'status')
    h.check(o.get('applied') == MIGS and o.get('up_to_date') is True, o)
    # our deploy finds nothing to do on Prisma's table
    r, rep = deploy(h, proj, url)
    h.check(r.returncode == 0 and outputs(rep, 'deploy').get('applied_now') == [],
            out(r))
    h.check(len(rows(h, db)) == 3)
    # a new migration applied by us is seen as applied by Prisma
    add_migration(proj, '20240104000000_tag', 'CREATE TABLE "Tag" (id int);\n')
    r, rep = deploy(h, proj, url)
    h.check(outputs(rep, 'deploy').get('applied_now') == ['20240104000000_tag'], out(r))
    p = prisma(h, proj, url, 'migrate', 'status')
    h.check(p.returncode == 0 and 'Database schema is up to date' in p.stdout, pout(p))
    drop(h, db)


COLS_SQL = ("SELECT json_agg(json_build_array(column_name, data_type, "
            "character_maximum_length, is_nullable, column_default) "
            "ORDER BY ordinal_position) FROM information_schema.columns "
            "WHERE table_name = '_prisma_migrations'")
PK_SQL = ("SELECT json_agg(json_build_array(c.contype, pg_get_constraintdef(c.oid))) "
          "FROM pg_constraint c WHERE c.conrelid = '_prisma_migrations'::regclass")


def oracle_pair(h):
    """An oracle project and two fresh databases, ours and theirs; None
    when the oracle is unavailable."""
    nm = oracle(h)
    if nm is None:
        return None
    return oracle_project(h, nm), fresh_db(h, 'ours'), fresh_db(h, 'theirs')


@suite.test
def test_oracle_our_deploy_prisma_status_and_same_format(h):
    pair = oracle_pair(h)
    if pair is None:
        return
    proj, ours, theirs = pair
    r, _ = deploy(h, proj, h.pg.url(ours))
    h.check(r.returncode == 0, out(r))
    p = prisma(h, proj, h.pg.url(ours), 'migrate', 'status')
    h.check(p.returncode == 0 and 'Database schema is up to date' in p.stdout, pout(p))
    p = prisma(h, proj, h.pg.url(ours), 'migrate', 'deploy')
    h.check(p.returncode == 0 and 'No pending migrations' in p.stdout, pout(p))
    p = prisma(h, proj, h.pg.url(theirs), 'migrate', 'deploy')
    h.check(p.returncode == 0, pout(p))
    # the table: same columns, types, lengths, nullability, defaults, key
    for sql in (COLS_SQL, PK_SQL):
        a = h.pg.psql(sql, db=ours).strip()
        b = h.pg.psql(sql, db=theirs).strip()
        h.check(a == b, f'ours {a}\ntheirs {b}')
    # the rows, column by column
    ra, rb = rows(h, ours), rows(h, theirs)
    h.check(len(ra) == len(rb) == 3, (ra, rb))
    for x, y in zip(ra, rb):
        h.check(UUID4.match(x['id']) and UUID4.match(y['id']), (x, y))
        for k in ('checksum', 'name', 'finished', 'logs', 'rolled_back', 'steps'):
            h.check(x[k] == y[k], f'{k}: ours {x} theirs {y}')
    ts = ("SELECT bool_and(started_at <= finished_at) FROM _prisma_migrations")
    h.check(h.pg.psql(ts, db=ours).strip() == 't')
    h.check(tables(h, ours) == tables(h, theirs), (tables(h, ours), tables(h, theirs)))
    drop(h, ours)
    drop(h, theirs)


@suite.test
def test_oracle_our_failure_blocks_prisma_p3009(h):
    nm = oracle(h)
    if nm is None:
        return
    db = fresh_db(h)
    proj = oracle_project(h, nm)
    add_migration(proj, '20240104000000_bad', 'SELECT * FROM no_such_table;\n')
    r, _ = deploy(h, proj, h.pg.url(db))
    h.check(r.returncode == 1, out(r))
    p = prisma(h, proj, h.pg.url(db), 'migrate', 'deploy')
    h.check(p.returncode != 0, pout(p))
    h.check('P3009' in p.stdout + p.stderr and
            '20240104000000_bad' in p.stdout + p.stderr, pout(p))
    p = prisma(h, proj, h.pg.url(db), 'migrate', 'status')
    h.check('20240104000000_bad' in p.stdout + p.stderr and
            'failed' in p.stdout + p.stderr, pout(p))
    h.check(len(rows(h, db)) == 4, rows(h, db))
    r, _ = resolve(h, proj, h.pg.url(db), '-p', 'rolled_back=20240104000000_bad')
    h.check(r.returncode == 0, out(r))
    add_migration(proj, '20240104000000_bad', 'CREATE TABLE "Fixed" (id int);\n')
    r, rep = deploy(h, proj, h.pg.url(db))
    h.check(r.returncode == 0, out(r))
    h.check(outputs(rep, 'deploy').get('applied_now') == ['20240104000000_bad'], rep)
    p = prisma(h, proj, h.pg.url(db), 'migrate', 'status')
    h.check(p.returncode == 0 and 'Database schema is up to date' in p.stdout, pout(p))
    drop(h, db)


RESOLVED_SQL = ("SELECT json_agg(json_build_object('name', migration_name, "
                "'checksum', checksum, 'finished', finished_at IS NOT NULL, "
                "'same_instant', finished_at = started_at, "
                "'rolled_back', rolled_back_at IS NOT NULL, "
                "'after_start', rolled_back_at >= started_at, "
                "'logs', logs, 'steps', applied_steps_count) "
                "ORDER BY started_at) FROM _prisma_migrations")


@suite.test
def test_oracle_resolve_rows_as_prisma_writes_them(h):
    pair = oracle_pair(h)
    if pair is None:
        return
    proj, ours, theirs = pair
    bad = '20240104000000_bad'
    add_migration(proj, bad, 'SELECT * FROM no_such_table;\n')
    # the same failed deploy on both, resolved by us and by Prisma: rolled
    # back, then (failed again) applied by hand
    for n, param, flag in ((4, 'rolled_back', '--rolled-back'),
                           (5, 'applied', '--applied')):
        for db in (ours, theirs):
            r, _ = deploy(h, proj, h.pg.url(db))
            h.check(r.returncode == 1 and len(rows(h, db)) == n, out(r))
        r, rep = resolve(h, proj, h.pg.url(ours), '-p', f'{param}={bad}')
        h.check(r.returncode == 0, out(r))
        h.check(outputs(rep, 'resolve').get(f'{param}_now') == [bad], rep)
        p = prisma(h, proj, h.pg.url(theirs), 'migrate', 'resolve', flag, bad)
        h.check(p.returncode == 0, pout(p))
        a, b = (h.pg.psql(RESOLVED_SQL, db=d) for d in (ours, theirs))
        h.check(a == b, f'ours {a}\ntheirs {b}')
        h.check(json.loads(a)[3]['rolled_back'] and json.loads(a)[3]['after_start'], a)
    last = json.loads(a)[-1]
    h.check(last['name'] == bad and last['finished'] and last['same_instant']
            and last['steps'] == 0 and last['logs'] == '', last)
    for db in (ours, theirs):
        drop(h, db)


@suite.test
def test_oracle_prisma_failure_blocks_our_deploy(h):
    nm = oracle(h)
    if nm is None:
        return
    db = fresh_db(h)
    proj = oracle_project(h, nm)
    add_migration(proj, '20240104000000_bad', 'SELECT * FROM no_such_table;\n')
    add_migration(proj, '20240105000000_after', 'CREATE TABLE "After" (id int);\n')
    p = prisma(h, proj, h.pg.url(db), 'migrate', 'deploy')
    h.check(p.returncode != 0, pout(p))
    rs = rows(h, db)
    h.check(len(rs) == 4 and not rs[-1]['finished'] and rs[-1]['logs'], rs)
    r, rep = deploy(h, proj, h.pg.url(db))
    h.check(r.returncode == 1, out(r))
    h.check('P3009' in r.stdout and '20240104000000_bad' in r.stdout, out(r))
    h.check(len(rows(h, db)) == 4 and 'After' not in tables(h, db), rows(h, db))
    r, rep = status(h, proj, h.pg.url(db))
    h.check(outputs(rep, 'status').get('failed') == ['20240104000000_bad'], rep)
    drop(h, db)


@suite.test
def test_oracle_cli_mode(h):
    nm = oracle(h)
    if nm is None:
        return
    db = fresh_db(h, owner='app')
    proj = oracle_project(h, nm)
    url = h.pg.url(db, user='app', password=APP_PASSWORD)
    r, rep = deploy(h, h.tmp, url, '-p', 'mode=cli', '-p', f'cwd={proj}',
                    env={'CHECKPOINT_DISABLE': '1'})
    h.check(r.returncode == 0, out(r))
    o = outputs(rep, 'deploy')
    h.check(o.get('applied_now') == MIGS and o.get('up_to_date') is True, o)
    h.check([x['name'] for x in rows(h, db)] == MIGS, rows(h, db))
    r2, rep2 = status(h, proj, url, '-p', 'require=true')
    h.check(r2.returncode == 0, out(r2))
    texts = [r.stdout, r.stderr, json.dumps(rep)]
    for p in (h.tmp / 'state').rglob('*'):
        if p.is_file():
            texts.append(p.read_text(errors='replace'))
    h.check(not any(APP_PASSWORD in t for t in texts), 'password leaked')
    # a failed migration: Prisma's exit status and message reach the step
    add_migration(proj, '20240104000000_bad', 'SELECT * FROM no_such_table;\n')
    r, rep = deploy(h, h.tmp, url, '-p', 'mode=cli', '-p', f'cwd={proj}',
                    env={'CHECKPOINT_DISABLE': '1'})
    h.check(r.returncode == 1 and 'prisma migrate deploy failed' in r.stdout, out(r))
    # guard before Prisma runs: nothing applied
    db2 = fresh_db(h, 'pr2')
    r, _ = deploy(h, h.tmp, h.pg.url(db2), '-p', 'mode=cli', '-p', f'cwd={proj}',
                  '-p', f'protect={db2}')
    h.check(r.returncode == 3, out(r))
    h.check(rows(h, db2) is None, 'cli ran despite the guard')
    drop(h, db)
    drop(h, db2)


if __name__ == '__main__':
    suite.main()
