"""The shipped runbooks end to end against real servers: PostgreSQL and
moto (S3)."""
import glob
import pathlib

from harness import Suite, ROOT
from s3server import S3Server

suite = Suite(__file__)
RUNBOOKS = ROOT / 'runbooks'


def make_db(pg, name):
    pg.psql(f'DROP DATABASE IF EXISTS "{name}"')
    pg.psql(f'CREATE DATABASE "{name}"')
    pg.psql('CREATE TABLE account(id int primary key, email text); '
            "INSERT INTO account SELECT g, 'u' || g || '@x' FROM generate_series(1, 3000) g; "
            'CREATE TABLE tx(id int primary key, account int references account, amount int); '
            'INSERT INTO tx SELECT g, 1 + g % 3000, g FROM generate_series(1, 9000) g', db=name)


@suite.test
def test_validate_all_runbooks(h):
    for f in sorted(RUNBOOKS.glob('*.yaml')):
        r = h.engine('validate', f)
        h.check(r.returncode == 0, f'{f.name}: {r.stdout}{r.stderr}')


@suite.test
def test_restore_from_s3_rehearsal(h):
    srv = S3Server().start()
    try:
        srv.make_bucket('prod-backups')
        make_db(h.pg, 'rfs_src')
        env = srv.env(DATABASE_URL=h.pg.url('rfs_src'))
        # yesterday's backup job: a dump streamed to the bucket
        backup = h.write('backup.yaml', 'version: 1\nname: nightly\nsteps:\n'
                         '  - id: dump\n    uses: postgres.dump\n'
                         '    with: {url: "${env.DATABASE_URL}", '
                         'file: "s3://prod-backups/database/nightly.dump", compress: "zstd"}\n')
        r = h.engine('run', backup, '--state-dir', h.tmp / 's0', env=env)
        h.check(r.returncode == 0, r.stdout + r.stderr)
        # without the operator's approval nothing is restored
        r = h.engine('run', RUNBOOKS / 'restore-from-s3.yaml', '--state-dir', h.tmp / 's1',
                     '--set', 'backups=s3://prod-backups/database/', '--set', 'restore_db=rfs_restored',
                     env=env)
        h.check(r.returncode == 1 and '--approve go-ahead' in r.stdout, r.stdout + r.stderr)
        h.check('rfs_restored' not in h.pg.databases())
        r = h.engine('run', RUNBOOKS / 'restore-from-s3.yaml', '--state-dir', h.tmp / 's2',
                     '--set', 'backups=s3://prod-backups/database/', '--set', 'restore_db=rfs_restored',
                     '--set', 'drill=true', '--approve', 'go-ahead',
                     '--report', h.tmp / 'r.json', '--evidence', h.tmp / 'e.md', env=env)
        h.check(r.returncode == 0, r.stdout + r.stderr)
        rep = h.report(h.tmp / 'r.json')
        h.check(rep['steps']['restored-counts']['outputs']['total'] == 12000, rep['steps']['restored-counts'])
        h.check(rep['steps']['restore']['outputs'].get('verified') is True, rep['steps']['restore'])
        h.check(rep['slo']['rpo_ms'] is not None and rep['slo']['rto_met'], rep['slo'])
        h.check('rfs_restored' not in h.pg.databases(), 'the rehearsal did not drop its database')
        ev = (h.tmp / 'e.md').read_text()
        h.check('total RTO' in ev and 'data loss (RPO)' in ev)
        h.check(srv.secret not in r.stdout + ev, 'the AWS secret leaked')
        objs = srv.client().list_objects_v2(Bucket='prod-backups').get('Contents', [])
        h.check(any(o['Key'] == 'database/nightly.dump' for o in objs), objs)
    finally:
        srv.stop()


if __name__ == '__main__':
    suite.main()
