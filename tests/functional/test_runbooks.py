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
        # drill=true: the runbook's `drill: ${params.drill}` makes it a rehearsal
        h.check('| detection time | 0 (scheduled drill) |' in ev, ev)
        h.check(rep['drill'] is True and rep['steps']['compare']['status'] == 'ok',
                rep['steps']['compare'])
        h.check(srv.secret not in r.stdout + ev, 'the AWS secret leaked')
        objs = srv.client().list_objects_v2(Bucket='prod-backups').get('Contents', [])
        h.check(any(o['Key'] == 'database/nightly.dump' for o in objs), objs)
    finally:
        srv.stop()


DOWNLOAD_RESTORE = '''version: 1
name: restore-downloaded
params:
  url: {required: true}
  backups: {required: true}
  db: {required: true}
steps:
  - id: pick
    uses: s3.list
    with: {url: "${params.backups}", pick: latest}
  - id: download
    uses: s3.get
    with: {url: "${steps.pick.outputs.picked.url}", file: "${run.dir}/restore.dump"}
  - id: restore
    uses: postgres.restore
    with: {url: "${params.url}", file: "${steps.download.outputs.file}", database: "${params.db}"}
    recovered: true
finally:
  - id: drop
    uses: postgres.drop_database
    with: {url: "${params.url}", database: "${params.db}", if_exists: true}
'''


@suite.test
def test_evidence_names_the_object_restored(h):
    """A backup downloaded before the restore: "Backup chosen" names the S3
    object that was picked (its origin), with the local copy under it."""
    srv = S3Server().start()
    try:
        srv.make_bucket('prod-backups')
        make_db(h.pg, 'ev_src')
        env = srv.env(DATABASE_URL=h.pg.url('ev_src'))
        backup = h.write('backup.yaml', 'version: 1\nname: nightly\nsteps:\n'
                         '  - id: dump\n    uses: postgres.dump\n'
                         '    with: {url: "${env.DATABASE_URL}", '
                         'file: "s3://prod-backups/database/nightly.dump"}\n')
        r = h.engine('run', backup, '--state-dir', h.tmp / 's0', env=env)
        h.check(r.returncode == 0, r.stdout + r.stderr)
        f = h.write('restore.yaml', DOWNLOAD_RESTORE)
        r = h.engine('run', f, '--state-dir', h.tmp / 's1', '--set', f"url={h.pg.url('ev_src')}",
                     '--set', 'backups=s3://prod-backups/database/', '--set', 'db=ev_restored',
                     '--evidence', h.tmp / 'e.md', '--report', h.tmp / 'r.json', env=env)
        h.check(r.returncode == 0, r.stdout + r.stderr)
        rep = h.report(h.tmp / 'r.json')
        local = rep['steps']['download']['outputs']['file']
        ev = (h.tmp / 'e.md').read_text()
        h.check('- name: `s3://prod-backups/database/nightly.dump` (external: not made by this '
                'run; picked by step `pick`; downloaded by step `download`)\n'
                f'  - local copy: `{local}` (step `download`)\n' in ev, ev)
        h.check('ev_restored' not in h.pg.databases())
    finally:
        srv.stop()



# Where each shipped runbook runs end to end: here with its defaults (only
# what it requires is given), or in the file named (scenarios that need
# Podman, a Prisma project or a managed instance in moto around them). A runbook missing from this
# table fails the test below.
ELSEWHERE = {
    'check-prod-volume.yaml': 'test_docker.py',
    'recover-from-volume.yaml': 'test_docker.py',
    'migrate-deploy.yaml': 'test_prisma.py',
    'migration-rehearsal.yaml': 'test_migrations.py',
    'managed-restore-test.yaml': 'test_provider.py',
    'health-check.yaml': 'test_dbops.py',
    'maintenance.yaml': 'test_dbops.py',
    'pitr-drill.yaml': 'test_pitr.py',
}


@suite.test
def test_shipped_runbooks_run_with_their_defaults(h):
    here = {'backup-with-checksum.yaml', 'backup-verify.yaml', 'restore-drill.yaml',
            'restore-from-s3.yaml'}
    shipped = {f.name for f in RUNBOOKS.glob('*.yaml')}
    h.check(shipped == here | set(ELSEWHERE), f'not run end to end: {shipped - here - set(ELSEWHERE)}')
    for f, where in ELSEWHERE.items():
        h.check(f in (ROOT / 'tests' / 'functional' / where).read_text(), f'{f} not in {where}')
    make_db(h.pg, 'dflt_src')
    env = {'DATABASE_URL': h.pg.url('dflt_src')}
    app = h.tmp / 'app'
    app.mkdir()
    # backups/ relative to where the operator runs it, with a .sha256 file
    # that sha256sum accepts from that folder
    r = h.engine('run', RUNBOOKS / 'backup-with-checksum.yaml', '--state-dir', h.tmp / 's1',
                 '--report', h.tmp / 'b.json', env=env, cwd=app)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    rep = h.report(h.tmp / 'b.json')
    h.check(rep['steps']['recheck']['status'] == 'ok', rep['steps']['recheck'])
    dumps = list((app / 'backups').glob('db-backup-*.dump'))
    h.check(len(dumps) == 1, list(app.rglob('*')))
    import subprocess
    chk = subprocess.run(['sha256sum', '-c', dumps[0].name + '.sha256'], cwd=app / 'backups',
                         capture_output=True, text=True)
    h.check(chk.returncode == 0, chk.stdout + chk.stderr)
    before = h.pg.databases()
    # the newest backup of the folder, its sidecar checked by the restore
    r = h.engine('run', RUNBOOKS / 'backup-verify.yaml', '--state-dir', h.tmp / 's2',
                 '--set', 'backups=backups/*.dump', '--report', h.tmp / 'v.json',
                 env=env, cwd=app)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    picked = h.report(h.tmp / 'v.json')['steps']['pick']['outputs']['picked']
    h.check(picked['path'] == str(dumps[0]) and len(picked['sha256']) == 64, picked)
    h.check(h.pg.databases() == before, 'the verify database was left')
    # the main job: a drill against an embedded throwaway PostgreSQL
    r = h.engine('run', RUNBOOKS / 'restore-drill.yaml', '--state-dir', h.tmp / 's3',
                 '--report', h.tmp / 'd.json', env={'DATABASE_URL': ''}, cwd=app, timeout=300)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(h.pg.databases() == before, 'the drill left a database on the suite server')

if __name__ == '__main__':
    suite.main()
