"""Functional tests of migration safety: the static lint (`engine
lint-migrations`, prisma.lint) on a corpus of migrations, one per rule with
its safe twin, and the rehearsal (prisma.rehearse) against the suite's real
PostgreSQL on a generated table, with a writer probe proving what blocks.

The lint asserts the exact findings (file:line:col and rule) and exit
codes; the rehearsal asserts the measured locks, rewrites and verdicts and
that the production database is untouched.
"""
import json
import os
import pathlib
import shutil
import subprocess
import threading
import time

from harness import Suite

suite = Suite(__file__)
HERE = pathlib.Path(__file__).resolve().parent
LINT = HERE / 'fixtures' / 'lint'

# (file, line, col, rule) of every finding of the unsafe corpus: each
# migration breaks one rule (the timeout rules and the bad suppression
# bring their neighbours along, as written there).
UNSAFE = [
    ('001_index.sql', 3, 1, 'require-concurrent-index-creation'),
    ('002_volatile_default.sql', 3, 42, 'adding-field-with-volatile-default'),
    ('003_serial.sql', 3, 31, 'adding-serial-column'),
    ('004_type.sql', 3, 33, 'changing-column-type'),
    ('005_not_null.sql', 3, 1, 'setting-not-null'),
    ('006_not_valid.sql', 3, 24, 'constraint-missing-not-valid'),
    ('007_unique.sql', 3, 24, 'disallowed-unique-constraint'),
    ('008_required.sql', 3, 31, 'adding-required-field'),
    ('009_drop_column.sql', 3, 1, 'ban-drop-column'),
    ('010_rename_column.sql', 3, 1, 'renaming-column'),
    ('011_drop_table.sql', 3, 1, 'ban-drop-table'),
    ('012_rename_table.sql', 3, 1, 'renaming-table'),
    ('013_drop_index.sql', 3, 1, 'require-concurrent-index-deletion'),
    ('014_concurrently_txn.sql', 2, 1, 'concurrently-in-transaction'),
    ('015_truncate.sql', 3, 1, 'truncate-cascade'),
    ('016_lock_timeout.sql', 1, 1, 'missing-lock-timeout'),
    ('017_statement_timeout.sql', 2, 1, 'missing-statement-timeout'),
    ('017_statement_timeout.sql', 2, 24, 'constraint-missing-not-valid'),
    ('018_vacuum_full.sql', 3, 1, 'ban-vacuum-full'),
    ('019_cluster.sql', 3, 1, 'ban-cluster'),
    ('020_parse_error.sql', 4, 7, 'parse-error'),
    ('021_suppression.sql', 3, 1, 'bad-suppression'),
    ('021_suppression.sql', 4, 1, 'ban-drop-column'),
    ('022_created_here.sql', 3, 1, 'require-concurrent-index-creation'),
]
ERROR_RULES = {'adding-required-field', 'concurrently-in-transaction',
               'truncate-cascade', 'ban-vacuum-full', 'ban-cluster',
               'parse-error', 'bad-suppression'}


def lint(h, folder, *args):
    r = h.engine('lint-migrations', str(folder), '--format', 'json', *args)
    return r, (json.loads(r.stdout) if r.stdout.strip() else {})


def found(res):
    return [(pathlib.Path(f['file']).name, f['line'], f['col'], f['rule'])
            for f in res['findings'] if not f.get('suppressed')]


# ---- lint ------------------------------------------------------------------------

@suite.test
def test_lint_corpus_unsafe_exact_findings(h):
    r, res = lint(h, LINT / 'unsafe')
    h.check(found(res) == UNSAFE, f'findings differ:\n{found(res)}\n{r.stderr}')
    h.check(r.returncode == 1, f'errors exit 1, got {r.returncode}')
    for f in res['findings']:
        h.check((f['level'] == 'error') == (f['rule'] in ERROR_RULES), f)
        h.check(f['lock'] and f['blocks'] and f['fix'], f)
    h.check(res['errors'] == 7 and res['warnings'] == 17, res)
    # the text form: file:line:col: level: [rule]
    t = h.engine('lint-migrations', str(LINT / 'unsafe'))
    first = t.stdout.splitlines()[0]
    h.check(first.startswith(f'{LINT}/unsafe/001_index.sql:3:1: warning: '
                             '[require-concurrent-index-creation] CREATE INDEX '
                             'orders_customer_idx on "orders" without CONCURRENTLY; '
                             'takes SHARE'), first)
    perr = [x for x in t.stdout.splitlines() if '[parse-error]' in x][0]
    h.check("PostgreSQL 15's grammar refuses this text" in perr, perr)


@suite.test
def test_lint_corpus_safe_twins_clean(h):
    r, res = lint(h, LINT / 'safe')
    h.check(r.returncode == 0 and found(res) == [], f'{found(res)} {r.stderr}')
    allowed = [(pathlib.Path(f['file']).name, f['rule'], f['suppressed'])
               for f in res['findings']]
    h.check(allowed == [
        ('009_drop_column.sql', 'ban-drop-column', 'release 42 stopped reading it'),
        ('011_drop_table.sql', 'ban-drop-table', 'unused since release 40'),
        ('021_suppression.sql', 'ban-drop-column', 'contract phase of release 41'),
    ], allowed)
    h.check(res['layout'] == 'sql' and len(res['migrations']) == 22, res['layout'])
    # --fail-on warning turns the unsafe warnings into a failure too
    only_warn = h.tmp / 'w'
    only_warn.mkdir()
    shutil.copy(LINT / 'unsafe' / '001_index.sql', only_warn)
    h.check(lint(h, only_warn)[0].returncode == 0, 'a warning passes by default')
    h.check(lint(h, only_warn, '--fail-on', 'warning')[0].returncode == 1,
            '--fail-on warning')


@suite.test
def test_lint_prisma_layout_pg_major_and_digest(h):
    d = h.tmp / 'migrations'
    for name, sql in [('20240101000000_init', 'CREATE TABLE a (id int);\n'),
                      ('20240102000000_flag',
                       "SET lock_timeout = '2s';\nSET statement_timeout = '1min';\n"
                       'ALTER TABLE a ADD COLUMN flag boolean DEFAULT false;\n')]:
        (d / name).mkdir(parents=True)
        (d / name / 'migration.sql').write_text(sql)
    (d / 'migration_lock.toml').write_text('provider = "postgresql"\n')
    r15, res15 = lint(h, d)
    h.check(r15.returncode == 0 and found(res15) == [], found(res15))
    h.check(res15['layout'] == 'prisma' and
            [m['name'] for m in res15['migrations']] ==
            ['20240101000000_init', '20240102000000_flag'], res15)
    # PostgreSQL 10 rewrites the table for any default
    r10, res10 = lint(h, d, '--pg-major', '10')
    h.check(found(res10) == [('migration.sql', 3, 39,
                              'adding-field-with-volatile-default')], found(res10))
    h.check('PostgreSQL 10 rewrites' in res10['findings'][0]['message'], res10)
    # the digest follows the content
    (d / '20240101000000_init' / 'migration.sql').write_text('CREATE TABLE a (id bigint);\n')
    h.check(lint(h, d)[1]['digest'] != res15['digest'], 'digest follows the bytes')
    bad = h.engine('lint-migrations', str(h.tmp / 'nope'))
    h.check(bad.returncode == 2 and 'cannot read the migrations folder' in bad.stderr,
            bad.stderr)
    h.check(h.engine('lint-migrations', str(d), '--pg-major', '9').returncode == 2,
            'pg-major range')


# ---- rehearsal -------------------------------------------------------------------

ROWS = 1_000_000
PROD = f'mig_prod_{os.getpid()}'
INIT = ('CREATE TABLE t (id int PRIMARY KEY, qty int NOT NULL, ref int);\n'
        f'INSERT INTO t SELECT g, g % 100, g FROM generate_series(1, {ROWS}) g;\n')
PENDING = [
    ('0002_type', 'ALTER TABLE t ALTER COLUMN ref TYPE bigint;\n'),
    ('0003_default', 'ALTER TABLE t ADD COLUMN flag int DEFAULT 0;\n'),
    ('0004_index', 'CREATE INDEX t_qty_idx ON t (qty);\n'),
    ('0005_concurrently', 'CREATE INDEX CONCURRENTLY t_ref_idx ON t (ref);\n'),
    ('0006_not_valid', 'ALTER TABLE t ADD CONSTRAINT t_qty_pos CHECK (qty >= 0) NOT VALID;\n'),
    ('0007_validate', 'ALTER TABLE t VALIDATE CONSTRAINT t_qty_pos;\n'),
]
DEPLOY = """version: 1
name: deploy
params:
  url: { required: true, secret: true }
  migrations: { required: true }
steps:
  - id: deploy
    uses: prisma.deploy
    with: { url: "${params.url}", migrations: "${params.migrations}" }
"""
REHEARSE = """version: 1
name: rehearse
params:
  server: { required: true, secret: true }
  prod: { required: true }
  copy: { required: true }
  migrations: { required: true }
  on_exceed: { default: warn }
  max_write_block: { default: 1h }
  record: { default: "" }
steps:
  - id: copy
    uses: postgres.create_database
    temporary: true
    with: { url: "${params.server}", database: "${params.copy}", template: "${params.prod}" }
  - id: rehearse
    uses: prisma.rehearse
    with:
      url: ${steps.copy.outputs.url}
      migrations: ${params.migrations}
      max_write_block: ${params.max_write_block}
      on_exceed: ${params.on_exceed}
      record: ${params.record}
      production_rows: 4000000
"""
_prod = {}


def folder(h, name, migs):
    d = h.tmp / name
    for n, sql in [('0001_init', INIT)] + migs:
        (d / n).mkdir(parents=True)
        (d / n / 'migration.sql').write_text(sql)
    return d


def prod(h):
    """The production database, once per file: 0001_init deployed (a
    million rows, in one statement), analyzed."""
    if not _prod:
        h.pg.psql(f'DROP DATABASE IF EXISTS {PROD}')
        h.pg.psql(f'CREATE DATABASE {PROD}')
        d = folder(h, 'init', [])
        rb = h.write('deploy.yaml', DEPLOY)
        r = h.engine('run', rb, '--state-dir', h.tmp / 'st', '-p', f'url={h.pg.url(PROD)}',
                     '-p', f'migrations={d}', timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        h.pg.psql('ANALYZE t', db=PROD)
        _prod['state'] = prod_state(h)
    return PROD


def prod_state(h):
    return h.pg.psql("SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                     "WHERE attrelid = 't'::regclass AND attname = 'ref';"
                     "SELECT count(*) FROM pg_indexes WHERE tablename = 't';"
                     "SELECT count(*) FROM _prisma_migrations;"
                     "SELECT pg_relation_filenode('t')", db=PROD)


class Probe(threading.Thread):
    """A writer on the copy every few ms: UPDATE under lock_timeout 200ms;
    each attempt (start, end, ok) in epoch ms."""
    def __init__(self, h, db):
        super().__init__(daemon=True)
        self.h, self.db, self.stop, self.tries = h, db, False, []

    def run(self):
        while not self.stop:
            t0 = time.time() * 1000
            r = subprocess.run(
                [f'{self.h.pg.bindir}/psql', '-X', '-At', '-h', '127.0.0.1', '-p',
                 str(self.h.pg.port), '-U', 'postgres', '-d', self.db, '-c',
                 "SET lock_timeout = '200ms'; UPDATE t SET qty = qty WHERE id = 1"],
                capture_output=True, text=True)
            t1 = time.time() * 1000
            if 'does not exist' in r.stderr or 'is being accessed' in r.stderr:
                time.sleep(0.02)
                continue
            self.tries.append((t0, t1, r.returncode == 0, r.stderr))


def rehearse(h, migs, copy, *args, probe=False):
    d = folder(h, 'migs-' + copy, migs)
    rb = h.write('rehearse.yaml', REHEARSE)
    rep = h.tmp / f'rep-{copy}.json'
    p = Probe(h, copy) if probe else None
    if p:
        p.start()
    r = h.engine('run', rb, '--state-dir', h.tmp / 'st', '--report', rep,
                 '-p', f'server={h.pg.url("postgres")}', '-p', f'prod={prod(h)}',
                 '-p', f'copy={copy}', '-p', f'migrations={d}', *args, timeout=300)
    if p:
        p.stop = True
        p.join()
    report = json.loads(rep.read_text()) if rep.exists() else {}
    return r, report, d, p


def blocked_during(probe, ev):
    """Writer attempts that overlapped the statement: (blocked, ok)."""
    s = ev['started_at_ms']
    e = s + ev['duration_ms']
    over = [t for t in probe.tries if t[0] < e and t[1] > s]
    return ([t for t in over if not t[2] and 'lock timeout' in t[3]],
            [t for t in over if t[2]])


@suite.test
def test_rehearse_measures_locks_rewrites_and_writer_probe(h):
    prod(h)
    copy = f'mig_copy_{os.getpid()}'
    t0 = time.time()
    r, rep, d, probe = rehearse(h, PENDING, copy, '-p', 'max_write_block=300ms',
                                probe=True)
    print(f'     rehearsal of 6 migrations on {ROWS} rows: {time.time() - t0:.1f}s')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    out = rep['steps']['rehearse']['outputs']
    ev = {e['migration']: e for e in out['statements']}
    h.check(len(out['statements']) == 6 and out['applied_now'] == [m for m, _ in PENDING],
            out['applied_now'])
    for m, e in ev.items():
        print(f"     {m}: {e['duration_ms']} ms, {e['lock'] or 'no lock'} "
              f"({e['blocks']}), blocked {e['blocked_ms']} ms, rewrites {e['rewrites']}")
    ty = ev['0002_type']
    h.check(ty['lock'] == 'ACCESS EXCLUSIVE' and ty['blocks'] == 'reads and writes'
            and ty['rewrites'] == ['public.t'] and ty['duration_ms'] > 0, ty)
    df = ev['0003_default']
    h.check(df['rewrites'] == [] and df['full_scans'] == [], df)
    ix = ev['0004_index']
    h.check(ix['lock'] == 'SHARE' and ix['blocks'] == 'writes' and ix['transaction'], ix)
    cc = ev['0005_concurrently']
    h.check(cc['lock'] == 'SHARE UPDATE EXCLUSIVE' and cc['blocks'] == 'nothing'
            and not cc['transaction'] and cc['phases'], cc)
    nv, va = ev['0006_not_valid'], ev['0007_validate']
    h.check(nv['full_scans'] == [] and nv['rewrites'] == [], nv)
    h.check(va['lock'] == 'SHARE UPDATE EXCLUSIVE' and va['blocks'] == 'nothing'
            and va['full_scans'] == ['public.t'], va)
    # the writer probe: blocked during CREATE INDEX, never during CONCURRENTLY
    blocked, _ = blocked_during(probe, ix)
    h.check(blocked, f'no writer was blocked by CREATE INDEX ({ix}, {len(probe.tries)} tries)')
    blocked, ok = blocked_during(probe, cc)
    h.check(not blocked and ok, f'CONCURRENTLY: blocked {blocked}, ok {len(ok)}')
    # thresholds: max_write_block 300ms at warn level
    h.check(out['verdict'] == 'warn' and rep['steps']['rehearse']['status'] == 'warn',
            out['verdict'])
    h.check(any(x.startswith('0002_type #1') and 'max_write_block' in x
                for x in out['exceeded']), out['exceeded'])
    h.check(not any(x.startswith('0005_') or x.startswith('0007_') for x in out['exceeded']),
            out['exceeded'])
    h.check(f'public.t has {ROWS} rows' in out['scale'] and 'production has 4000000' in out['scale'],
            out['scale'])
    # production untouched; the copy dropped at the run's end
    h.check(prod_state(h) == _prod['state'], prod_state(h))
    h.check(not h.db_exists(copy), 'the temporary copy was dropped')


@suite.test
def test_rehearse_threshold_fails_and_refuses_production(h):
    copy = f'mig_copy2_{os.getpid()}'
    r, rep, d, _ = rehearse(h, [PENDING[2]], copy, '-p', 'max_write_block=1ms',
                            '-p', 'on_exceed=fail')
    h.check(r.returncode == 1, r.stdout + r.stderr)
    err = rep['steps']['rehearse'].get('error', '')
    h.check('crossed its thresholds' in err and '0004_index #1' in err, err)
    # pointed at production (not created by this run): refused, untouched
    rb = h.write('direct.yaml', """version: 1
name: direct
params: { url: { required: true, secret: true }, migrations: { required: true } }
steps:
  - id: rehearse
    uses: prisma.rehearse
    with: { url: "${params.url}", migrations: "${params.migrations}" }
""")
    r = h.engine('run', rb, '--state-dir', h.tmp / 'st2', '-p', f'url={h.pg.url(PROD)}',
                 '-p', f'migrations={d}')
    h.check(r.returncode != 0 and 'only to a temporary copy this run created' in r.stdout + r.stderr,
            r.stdout + r.stderr)
    h.check(prod_state(h) == _prod['state'], prod_state(h))


@suite.test
def test_runbooks_rehearsal_then_deploy_requires_it(h):
    prod(h)
    root = HERE.parent.parent / 'runbooks'
    bk = h.tmp / 'backups'
    bk.mkdir()
    subprocess.run([f'{h.pg.bindir}/pg_dump', '-Fc', '-Z1', '-h', '127.0.0.1', '-p',
                    str(h.pg.port), '-U', 'postgres', '-d', PROD, '-f',
                    str(bk / 'prod.dump')], check=True)
    d = folder(h, 'migs', [PENDING[1]])
    record = h.tmp / 'rehearsal.json'
    env = {'DATABASE_URL': h.pg.url(PROD)}
    rep_path = h.tmp / 'rehearsal-report.json'
    r = h.engine('run', root / 'migration-rehearsal.yaml', '--state-dir', h.tmp / 'st',
                 '--report', rep_path, '-p', f'backups={bk}/*.dump', '-p', f'migrations={d}',
                 '-p', f'record={record}', env=env, timeout=300)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    rep = json.loads(rep_path.read_text())
    st = rep['steps']
    # the lint reads the pending migration only: no lock_timeout there
    h.check(st['lint']['status'] == 'warn' and st['rehearse']['status'] == 'ok', st)
    h.check([(f['migration'], f['rule']) for f in st['lint']['outputs']['findings']] ==
            [('0003_default', 'missing-lock-timeout')], st['lint'])
    h.check(st['status']['outputs']['pending'] == ['0003_default'], st['status'])
    table = st['report']['outputs']['table']
    h.check('| 0003_default | 1 |' in table and 'ACCESS EXCLUSIVE' in table, table)
    h.check(json.loads(record.read_text())['verdict'] == 'pass', record.read_text())
    h.check(not [x for x in h.pg.databases() if x.startswith('rehearsal_')], 'copy dropped')
    h.check(prod_state(h) == _prod['state'], 'production untouched')
    deploy = root / 'migrate-deploy.yaml'
    dargs = ['--state-dir', h.tmp / 'st', '-p', f'migrations={d}', '-p',
             f'rehearsal_record={record}', '-p', f'backup_file={h.tmp}/pre.dump']
    # another set of migrations than the one rehearsed: refused, nothing done
    (d / '0004_index').mkdir()
    (d / '0004_index' / 'migration.sql').write_text(PENDING[2][1])
    r = h.engine('run', deploy, *dargs, env=env, timeout=300)
    h.check(r.returncode == 1 and 'covered another set of migrations' in r.stdout + r.stderr,
            r.stdout + r.stderr)
    h.check(prod_state(h) == _prod['state'] and not (h.tmp / 'pre.dump').exists(),
            'nothing ran before the check')
    # the rehearsed set: deployed
    shutil.rmtree(d / '0004_index')
    r = h.engine('run', deploy, *dargs, env=env, timeout=300)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(h.pg.psql("SELECT count(*) FROM information_schema.columns WHERE "
                      "table_name = 't' AND column_name = 'flag'", db=PROD).strip() == '1',
            'deployed')
    _prod.clear()  # production changed: the next test (if any) starts again


if __name__ == '__main__':
    suite.main()
