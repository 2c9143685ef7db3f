"""Functional tests of migration safety: the static lint (`engine
lint-migrations`, prisma.lint) on a corpus of migrations, one per rule with
its safe twin, and the rehearsal (prisma.rehearse) against the suite's real
PostgreSQL on a generated table, with a writer probe proving what blocks.

The lint asserts the exact findings (file:line:col and rule) and exit
codes; the rehearsal asserts the measured locks, rewrites and verdicts and
that the production database is untouched.
"""
import json
import pathlib
import shutil
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


if __name__ == '__main__':
    suite.main()
