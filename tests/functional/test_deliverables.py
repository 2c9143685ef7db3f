"""What a run delivers is never destroyed: kept and temporary resources,
leftovers only from unfinished work, `engine cleanup` that shows before it
removes. Against the suite's PostgreSQL and moto (SigV4 checked)."""
import glob
import json
import os
import pathlib
import signal
import time

from harness import Suite, wait_for
from s3server import shared

suite = Suite(__file__)
BUCKET = 'drill-backups'

NIGHTLY = """version: 1
name: nightly-backup
params:
  url: { env: DATABASE_URL, secret: true, required: true }
steps:
  - id: dump
    uses: postgres.dump
    with:
      url: ${params.url}
      file: s3://drill-backups/PREFIX/app-${run.id}.dump
      checksum_file: true
"""

RECOVER = """version: 1
name: recover
lock: recover
params:
  url: { env: DATABASE_URL, secret: true, required: true }
  dump: { required: true }
steps:
  - id: restore
    uses: postgres.restore
    recovered: true
    with:
      url: ${params.url}
      file: ${params.dump}
      database: recovered_${run.id}
"""

TEMP = """version: 1
name: scratch-db
params:
  url: { env: DATABASE_URL, secret: true, required: true }
  db: { required: true }
  kept: { required: true }
steps:
  - id: scratch
    uses: postgres.create_database
    temporary: true
    with: { url: "${params.url}", database: "${params.db}" }
  - id: deliver
    uses: postgres.create_database
    with: { url: "${params.url}", database: "${params.kept}" }
"""


def srv():
    return shared(BUCKET)


def s3env(h, scratch='scratch', **extra):
    return srv().scratch_env(h.tmp / scratch, **extra)


def keys(prefix):
    return srv().keys(BUCKET, prefix)


def uploads(prefix):
    r = srv().client().list_multipart_uploads(Bucket=BUCKET)
    return [u['Key'] for u in r.get('Uploads', []) if u['Key'].startswith(prefix)]


def journal(path):
    return [json.loads(l) for l in pathlib.Path(path).read_text().splitlines() if l.strip()]


def run_ids(state):
    return sorted(os.listdir(pathlib.Path(state) / 'runs'))


def drop(h, name):
    h.pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---- a nightly backup under a lock keeps every night's backup -----------------

def three_nights(h, prefix, state, env, *args):
    rb = h.write(f'{prefix}.yaml', NIGHTLY.replace('PREFIX', prefix))
    for night in range(3):
        r = h.engine('run', rb, '--lock', 'nightly', '--state-dir', state, *args,
                     env=env, timeout=120)
        h.check(r.returncode == 0, r.stdout + r.stderr)
        h.check('leftover' not in r.stdout, f'night {night}: {r.stdout}')
    objs = keys(f'{prefix}/')
    dumps = [k for k in objs if k.endswith('.dump')]
    sums = [k for k in objs if k.endswith('.dump.sha256')]
    h.check(len(dumps) == 3 and len(sums) == 3, objs)
    return dumps


@suite.test
def test_nightly_backup_with_local_lock_keeps_every_backup(h):
    src = h.source_db('deliv_src_a')
    st = h.tmp / 'st'
    three_nights(h, 'nightly-local', st, s3env(h, DATABASE_URL=src))
    r = h.engine('runs', '--state-dir', st)
    lines = [l for l in r.stdout.splitlines() if 'nightly-backup' in l]
    h.check(len(lines) == 3, r.stdout)
    for l in lines:  # kept 2 (dump and sidecar), leftovers 0
        h.check(l.split()[-2:] == ['2', '0'], r.stdout)
    # and a plain cleanup of a night keeps its backup
    rid = run_ids(st)[0]
    r = h.engine('cleanup', rid, '--state-dir', st, env=s3env(h, DATABASE_URL=src))
    h.check(r.returncode == 0 and 'nothing to clean up' in r.stdout, r.stdout + r.stderr)
    h.check('2 kept resources stay' in r.stdout, r.stdout)
    h.check(len(keys('nightly-local/')) == 6, keys('nightly-local/'))


@suite.test
def test_nightly_backup_with_s3_state_and_lock_keeps_every_backup(h):
    src = h.source_db('deliv_src_b')
    url = f's3://{BUCKET}/state-nightly'
    three_nights(h, 'nightly-s3', url, s3env(h, DATABASE_URL=src))
    r = h.engine('runs', '--state-dir', url, env=s3env(h, 'elsewhere'))
    lines = [l for l in r.stdout.splitlines() if 'nightly-backup' in l]
    h.check(len(lines) == 3 and all(l.split()[-2:] == ['2', '0'] for l in lines), r.stdout)
    h.check(not keys('state-nightly/locks/'), keys('state-nightly/locks/'))


# ---- a recovered database survives; only a person removes it -------------------

@suite.test
def test_recovered_database_survives_next_holder_and_plain_cleanup(h):
    src = h.source_db('deliv_src_c')
    st = h.tmp / 'st'
    dump = h.tmp / 'app.dump'
    rb = h.write('dump.yaml', 'version: 1\nname: d\nparams:\n  url: {env: DATABASE_URL, secret: true}\n'
                 'steps:\n  - id: d\n    uses: postgres.dump\n'
                 f'    with: {{url: "${{params.url}}", file: "{dump}"}}\n')
    r = h.engine('run', rb, '--state-dir', h.tmp / 's0', env={'DATABASE_URL': src})
    h.check(r.returncode == 0, r.stdout + r.stderr)
    rec = h.write('recover.yaml', RECOVER)
    env = {'DATABASE_URL': src}
    r = h.engine('run', rec, '--state-dir', st, '--set', f'dump={dump}', env=env)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    first = run_ids(st)[0]
    db = f'recovered_{first}'
    try:
        h.check(h.db_exists(db), 'the restore did not create the database')
        intent = [e for e in journal(st / 'runs' / first / 'journal') if e['event'] == 'intent']
        h.check(intent and intent[0]['disposition'] == 'kept', intent)
        # the next holder of the same lock
        r = h.engine('run', rec, '--state-dir', st, '--set', f'dump={dump}', env=env)
        h.check(r.returncode == 0, r.stdout + r.stderr)
        h.check('leftover' not in r.stdout, r.stdout)
        h.check(h.db_exists(db), 'the next lock holder dropped the recovered database')
        # the second run's id (ids of one second sort by their random tail)
        drop(h, f'recovered_{next(x for x in run_ids(st) if x != first)}')
        # a plain cleanup
        r = h.engine('cleanup', first, '--state-dir', st, env=env)
        h.check(r.returncode == 0 and 'nothing to clean up' in r.stdout, r.stdout + r.stderr)
        h.check('1 kept resource stays' in r.stdout, r.stdout)
        h.check(h.db_exists(db), 'engine cleanup dropped the recovered database')
        # a dry run lists it, with kept too, and removes nothing
        r = h.engine('cleanup', first, '--state-dir', st, '--dry-run', '--include-kept', env=env)
        h.check(r.returncode == 0, r.stdout + r.stderr)
        row = next((l for l in r.stdout.splitlines() if db in l), '')
        h.check(row.split()[:5] == ['restore', 'database', 'kept', 'present', 'removes'], r.stdout)
        h.check('nothing was removed' in r.stdout, r.stdout)
        h.check(h.db_exists(db), 'the dry run removed it')
        # --include-kept needs a confirmation: without a terminal, --yes
        r = h.engine('cleanup', first, '--state-dir', st, '--include-kept', env=env)
        h.check(r.returncode == 2 and '--yes' in r.stderr and db in r.stderr, r.stdout + r.stderr)
        h.check(h.db_exists(db), 'removed without confirmation')
        r = h.engine('cleanup', first, '--state-dir', st, '--include-kept', '--yes', env=env)
        h.check(r.returncode == 0 and 'removing 1 resource' in r.stdout, r.stdout + r.stderr)
        h.check(not h.db_exists(db), '--include-kept --yes did not remove it')
        r = h.engine('cleanup', first, '--state-dir', st, '--dry-run', env=env)
        row = next((l for l in r.stdout.splitlines() if db in l), '')
        h.check(' removed ' in row, r.stdout)
    finally:
        drop(h, db)


@suite.test
def test_include_kept_is_held_to_the_runs_protected_lists(h):
    """A run records its protected lists in its journal; `engine cleanup`
    of the run is held to them, --include-kept too (here a list that gained
    the database's name after it was created, as a resume would add it)."""
    src = h.source_db('deliv_src_g')
    st = h.tmp / 'st'
    db = 'deliv_protected_copy'
    drop(h, db)
    rb = h.write('p.yaml', 'version: 1\nname: p\nparams:\n  url: {env: DATABASE_URL, secret: true}\n'
                 '  protect: {default: "deliv_never_*"}\n'
                 'guards:\n  protected_databases: ["${params.protect}"]\n'
                 'steps:\n  - id: make\n    uses: postgres.create_database\n'
                 f'    with: {{url: "${{params.url}}", database: "{db}"}}\n')
    try:
        r = h.engine('run', rb, '--state-dir', st, env={'DATABASE_URL': src})
        h.check(r.returncode == 0, r.stdout + r.stderr)
        rid = run_ids(st)[0]
        jf = st / 'runs' / rid / 'journal'
        g = [e for e in journal(jf) if e['event'] == 'guards']
        h.check(g and g[0]['lists']['protected_databases'] == ['deliv_never_*'], g)
        with open(jf, 'a') as f:
            f.write(json.dumps({'event': 'guards', 'lists': {'protected_databases': [db]},
                                'seq': 99, 'time': '2026-12-01T00:00:00.000Z'}) + '\n')
        r = h.engine('cleanup', rid, '--state-dir', st, '--include-kept', '--yes',
                     env={'DATABASE_URL': src})
        h.check(r.returncode == 3, r.stdout + r.stderr)
        h.check('protected by guards.protected_databases' in r.stdout + r.stderr, r.stdout + r.stderr)
        h.check(h.db_exists(db), 'a protected database was dropped by --include-kept')
    finally:
        drop(h, db)


# ---- temporary resources: removed at the run's end, or by the next holder ------

@suite.test
def test_temporary_removed_at_run_end_kept_stays(h):
    src = h.source_db('deliv_src_d')
    st = h.tmp / 'st'
    tmp_db, kept_db = 'deliv_scratch_d', 'deliv_kept_d'
    drop(h, tmp_db)
    drop(h, kept_db)
    try:
        r = h.engine('run', h.write('t.yaml', TEMP), '--state-dir', st, '--set', f'db={tmp_db}',
                     '--set', f'kept={kept_db}', '--report', h.tmp / 'r.json',
                     env={'DATABASE_URL': src})
        h.check(r.returncode == 0, r.stdout + r.stderr)
        text = r.stdout + r.stderr
        h.check('removing temporary database' in text and tmp_db in text, text)
        h.check(not h.db_exists(tmp_db), 'the temporary database is still there')
        h.check(h.db_exists(kept_db), 'the kept database was dropped')
        rep = h.report(h.tmp / 'r.json')
        res = {x['id'].split('/')[-1]: x['state'] for x in rep['resources']}
        h.check(res == {tmp_db: 'removed', kept_db: 'kept'}, rep['resources'])
        r = h.engine('runs', '--state-dir', st)
        line = next(l for l in r.stdout.splitlines() if 'scratch-db' in l)
        h.check(line.split()[-2:] == ['1', '0'], r.stdout)
    finally:
        drop(h, tmp_db)
        drop(h, kept_db)


@suite.test
def test_drill_killed_before_finally_next_holder_drops_drill_db_keeps_backup(h):
    src = h.source_db('deliv_src_e')
    name = 'deliv_drill_e'
    st = h.tmp / 'st'
    drill = h.fixture('state/drill.yaml')
    p = h.popen('run', drill, '--state-dir', st, '--set', f'restore_db={name}',
                env={'DATABASE_URL': src})

    def restored():
        js = glob.glob(str(st / 'runs/*/journal'))
        return js and any(e.get('event') == 'step.end' and e.get('step') == 'restore'
                          for e in journal(js[0]))
    h.check(wait_for(restored), 'the restore never ended')
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    old = run_ids(st)[0]
    backup = st / 'runs' / old / 'backup.dump'
    h.check(h.db_exists(name) and backup.exists(), 'nothing to test')
    r = h.engine('cleanup', old, '--state-dir', st, '--dry-run', env={'DATABASE_URL': src})
    row = next((l for l in r.stdout.splitlines() if name in l), '')
    h.check(row.split()[:5] == ['restore', 'database', 'temporary', 'present', 'removes'],
            r.stdout)
    r = h.engine('run', drill, '--state-dir', st, '--set', f'restore_db={name}',
                 '--set', 'pause=1ms', env={'DATABASE_URL': src}, timeout=120)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(f'run {old}: removing 1 leftover' in r.stdout, r.stdout)
    h.check(not h.db_exists(name), 'the drill database of the killed run is still there')
    h.check(backup.exists(), "the killed run's backup was removed")


@suite.test
def test_shipped_drill_marks_its_drill_database_temporary(h):
    src = h.source_db('deliv_src_h')
    st = h.tmp / 'st'
    root = pathlib.Path(__file__).resolve().parents[2]
    r = h.engine('run', root / 'runbooks' / 'restore-drill.yaml', '--state-dir', st,
                 env={'DATABASE_URL': src}, timeout=300)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    rid = run_ids(st)[0]
    ev = journal(st / 'runs' / rid / 'journal')
    dbs = [e for e in ev if e['event'] == 'intent' and e['kind'] == 'database']
    h.check(len(dbs) == 1 and dbs[0]['disposition'] == 'temporary', dbs)
    h.check(any(e['event'] == 'removed' and e.get('id') == dbs[0]['id'] for e in ev), ev[-5:])
    h.check((st / 'runs' / rid / f'backup-{rid}.dump').exists(), 'the backup is gone')


# ---- SIGKILL during a second upload: the pending one goes, the first stays ----

TWO_DUMPS = """version: 1
name: two-dumps
lock: two-dumps
params:
  small: { required: true }
  big: { required: true }
steps:
  - id: first
    uses: postgres.dump
    with: { url: "${params.small}", file: "s3://drill-backups/two/first.dump", checksum_file: true }
  - id: second
    uses: postgres.dump
    with:
      url: ${params.big}
      file: s3://drill-backups/two/second.dump
      compress: none
      stream_opts: { concurrency: 1 }
"""


def big_source(h, name, rows=300_000):
    if name not in h.pg.databases():
        h.pg.psql(f'CREATE DATABASE "{name}"')
        h.pg.psql('CREATE TABLE item (id int PRIMARY KEY, body text); '
                  'INSERT INTO item SELECT g, repeat(md5(g::text), 6) '
                  f'FROM generate_series(1, {rows}) g', db=name)
    return h.pg.url(name)


@suite.test
def test_sigkill_during_second_upload_aborts_it_and_keeps_the_first(h):
    small = h.source_db('deliv_src_f')
    big = big_source(h, 'deliv_big_f')
    st = h.tmp / 'st'
    rb = h.write('two.yaml', TWO_DUMPS)
    env = s3env(h)
    p = h.popen('run', rb, '--state-dir', st, '--set', f'small={small}', '--set', f'big={big}',
                env=env)
    seen = wait_for(lambda: uploads('two/second.dump') or p.poll() is not None, timeout=90,
                    every=0.02)
    if p.poll() is not None:
        raise AssertionError('the run ended before the second upload: ' + ''.join(p.communicate()))
    h.check(seen, 'no multipart upload seen')
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    h.check(uploads('two/second.dump'), 'no pending upload left to test with')
    h.check(keys('two/') == ['two/first.dump', 'two/first.dump.sha256'], keys('two/'))
    # the next holder of the lock removes what the killed step left
    r = h.engine('run', h.write('noop.yaml', 'version: 1\nname: noop\nlock: two-dumps\nsteps:\n'
                                '  - id: n\n    uses: sleep\n    with: {for: 1ms}\n'),
                 '--state-dir', st, env=env)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check('leftover' in r.stdout, r.stdout)
    h.check(uploads('two/') == [], uploads('two/'))
    h.check(keys('two/') == ['two/first.dump', 'two/first.dump.sha256'], keys('two/'))


@suite.test
def test_keep_and_temporary_contradicting_is_named(h):
    rb = h.write('kt.yaml', 'version: 1\nname: kt\nsteps:\n  - id: a\n    uses: sleep\n'
                 '    with: {for: 1ms}\n    keep: true\n    temporary: true\n'
                 '  - id: b\n    uses: sleep\n    with: {for: 1ms}\n    keep: maybe\n')
    r = h.engine('validate', rb)
    h.check(r.returncode == 2, r.stdout + r.stderr)
    h.check("kt.yaml:8:16: error: step 'a': 'keep: true' and 'temporary: true' contradict"
            in r.stderr, r.stderr)
    h.check("kt.yaml:12:11: error: keep must be true or false, not 'maybe'" in r.stderr, r.stderr)


# ---- a journal from before dispositions: all kept ------------------------------

@suite.test
def test_journal_before_dispositions_is_cleaned_as_all_kept(h):
    src = h.source_db('deliv_src_legacy')
    db = 'deliv_legacy_db'
    drop(h, db)
    h.pg.psql(f'CREATE DATABASE "{db}"')
    srv().client().put_object(Bucket=BUCKET, Key='legacy/app.dump', Body=b'x')
    st = h.tmp / 'st'
    rid = '20261101-020000-a1b2'
    rd = st / 'runs' / rid
    rd.mkdir(parents=True)
    text = h.fixture('state/legacy-journal').read_text()
    (rd / 'journal').write_text(text.replace('DBNAME', db).replace('BUCKET', BUCKET))
    (st / 'locks' / 'legacy.runs').mkdir(parents=True)
    (st / 'locks' / 'legacy.runs' / rid).write_text(rid)
    env = s3env(h, DATABASE_URL=src)
    try:
        r = h.engine('cleanup', rid, '--state-dir', st, '--dry-run', env=env)
        h.check(r.returncode == 0 and 'kept*' in r.stdout and 'before dispositions' in r.stdout,
                r.stdout + r.stderr)
        h.check('removes' not in r.stdout, r.stdout)
        r = h.engine('run', h.write('noop.yaml', 'version: 1\nname: noop\nlock: legacy\nsteps:\n'
                                    '  - id: n\n    uses: sleep\n    with: {for: 1ms}\n'),
                     '--state-dir', st, env=env)
        h.check(r.returncode == 0, r.stdout + r.stderr)
        r = h.engine('cleanup', rid, '--state-dir', st, env=env)
        h.check(r.returncode == 0 and 'nothing to clean up' in r.stdout, r.stdout + r.stderr)
        h.check(h.db_exists(db), 'an old journal\'s database was dropped')
        h.check(keys('legacy/') == ['legacy/app.dump'], keys('legacy/'))
    finally:
        drop(h, db)


if __name__ == '__main__':
    suite.main()
