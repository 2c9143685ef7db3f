"""Journal, cleanup and resume against a real PostgreSQL: a drill killed
with SIGKILL leaves nothing that `engine cleanup` cannot find, and
`--resume` completes it."""
import glob
import json
import os
import pathlib
import signal
import time

from harness import Suite, wait_for

suite = Suite(__file__)


def make_source(h, name):
    return h.source_db(name, rows=5000)


def db_exists(h, name):
    return h.db_exists(name)


def journal_events(rd):
    p = rd / 'journal'
    if not p.exists():
        return []
    return [json.loads(l) for l in p.read_text().splitlines() if l.strip()]


def start_killable(h, name, src):
    p = h.popen('run', h.fixture('recovery/drill.yaml'), '--state-dir', h.tmp / 'state',
                '--set', f'restore_db={name}', env={'DATABASE_URL': src})
    rd = None

    def restored():
        nonlocal rd
        runs = glob.glob(str(h.tmp / 'state/runs/*'))
        if not runs:
            return False
        rd = pathlib.Path(runs[0])
        return any(e.get('event') == 'step.end' and e.get('step') == 'restore'
                   for e in journal_events(rd))
    ok = wait_for(restored)
    return p, rd, ok


@suite.test
def test_kill9_then_cleanup_drops_drill_database(h):
    src = make_source(h, 'recov_src_a')
    name = 'recov_drill_a'
    p, rd, ok = start_killable(h, name, src)
    h.check(ok, 'the restore never finished')
    h.check(db_exists(h, name), 'restore did not create the database')
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    h.check(db_exists(h, name), 'SIGKILL cannot run finally: the database is still there')
    r = h.engine('runs', '--state-dir', h.tmp / 'state')
    line = next((l for l in r.stdout.splitlines() if l.startswith(rd.name)), '')
    h.check('recovery-drill' in line and 'incomplete' in line, r.stdout)
    r = h.engine('cleanup', rd.name, '--state-dir', h.tmp / 'state',
                 env={'DATABASE_URL': src})
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(not db_exists(h, name), 'cleanup left the drill database')
    h.check('app' not in r.stdout or True)
    # the journal stores references, not the password
    text = (rd / 'journal').read_text()
    h.check('${env.DATABASE_URL}' in text or 'password' not in src, text[:500])
    r = h.engine('cleanup', rd.name, '--state-dir', h.tmp / 'state', env={'DATABASE_URL': src})
    h.check(r.returncode == 0 and 'nothing to clean up' in r.stdout, r.stdout)
    h.check(db_exists(h, 'recov_src_a'), 'cleanup touched the source')


@suite.test
def test_resume_completes_interrupted_drill(h):
    src = make_source(h, 'recov_src_b')
    name = 'recov_drill_b'
    p, rd, ok = start_killable(h, name, src)
    h.check(ok, 'the restore never finished')
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    backup_mtime = (rd / 'backup.dump').stat().st_mtime_ns
    r = h.engine('run', h.fixture('recovery/drill.yaml'), '--state-dir', h.tmp / 'state',
                 '--resume', rd.name, '--set', f'restore_db={name}', '--set', 'pause=1ms',
                 '--report', h.tmp / 'r.json', env={'DATABASE_URL': src})
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check((rd / 'completed').exists(), 'the resumed run did not complete')
    rep = h.report(h.tmp / 'r.json')
    h.check(rep['run_id'] == rd.name)
    h.check((rd / 'backup.dump').stat().st_mtime_ns == backup_mtime, 'backup ran again')
    h.check('not run again' in r.stdout, r.stdout)
    h.check(rep['steps']['counts']['outputs']['total'] == 5000, rep['steps']['counts'])
    h.check(not db_exists(h, name), 'finally did not drop the drill database')
    v = h.engine('audit', 'verify', rd / 'audit.jsonl')
    # the killed run left no run.end in the middle; the chain itself holds
    h.check('prev' not in v.stdout, v.stdout)


@suite.test
def test_drop_of_found_database_needs_allow_destructive(h):
    h.pg.psql('DROP DATABASE IF EXISTS found_db')
    h.pg.psql('CREATE DATABASE found_db')
    rb = h.write('drop.yaml', 'version: 1\nname: drop-found\nparams:\n  url: {required: true}\n'
                 'steps:\n  - id: drop\n    uses: postgres.drop_database\n'
                 '    with: {url: "${params.url}", database: found_db}\n')
    r = h.engine('run', rb, '--state-dir', h.tmp / 's1', '--set', f'url={h.pg.url("postgres")}')
    h.check(r.returncode == 3, r.stdout + r.stderr)
    h.check(db_exists(h, 'found_db'), 'refused, yet dropped')
    r = h.engine('run', rb, '--state-dir', h.tmp / 's2', '--set', f'url={h.pg.url("postgres")}',
                 '--allow-destructive')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(not db_exists(h, 'found_db'))


@suite.test
def test_protected_database_refused_even_with_flag(h):
    h.pg.psql('DROP DATABASE IF EXISTS prod_like')
    h.pg.psql('CREATE DATABASE prod_like')
    sysid = h.pg.psql('SELECT system_identifier FROM pg_control_system()').strip()
    for guard in ('[prod_like]', '["prod_*"]', f'["sysid:{sysid}"]'):
        rb = h.write('drop.yaml', 'version: 1\nname: drop-prot\nparams:\n  url: {required: true}\n'
                     f'guards:\n  protected_databases: {guard}\n'
                     'steps:\n  - id: marker0\n    uses: shell\n    with: {command: "true"}\n'
                     '  - id: drop\n    uses: postgres.drop_database\n'
                     '    with: {url: "${params.url}", database: "${ \'prod\' .. \'_like\' }"}\n'
                     '  - id: after\n    uses: shell\n    with: {command: "touch $ENGINE_RUN_DIR/after"}\n')
        state = h.tmp / ('s' + str(abs(hash(guard))))
        r = h.engine('run', rb, '--state-dir', state, '--set', f'url={h.pg.url("postgres")}',
                     '--allow-destructive')
        h.check(r.returncode == 3, f'{guard}: {r.stdout}{r.stderr}')
        h.check(db_exists(h, 'prod_like'), f'{guard}: dropped a protected database')
        rd = pathlib.Path(glob.glob(str(state / 'runs/*'))[0])
        h.check(not (rd / 'after').exists())
        audit = (rd / 'audit.jsonl').read_text()
        h.check('"guard.refuse"' in audit, f'{guard}: no refusal record')
    # template1 through a glob, statically
    rb = h.write('t.yaml', 'version: 1\nname: drop-tpl\nparams:\n  url: {required: true}\n'
                 'guards:\n  protected_databases: ["template*"]\n'
                 'steps:\n  - id: drop\n    uses: postgres.drop_database\n'
                 '    with: {url: "${params.url}", database: template1}\n')
    r = h.engine('plan', rb, '--set', f'url={h.pg.url("postgres")}')
    h.check(r.returncode == 3, r.stdout + r.stderr)
    r = h.engine('run', rb, '--state-dir', h.tmp / 'tpl', '--set', f'url={h.pg.url("postgres")}',
                 '--allow-destructive')
    h.check(r.returncode == 3 and db_exists(h, 'template1'), r.stdout)


@suite.test
def test_timeout_covers_check_hooks(h):
    rb = h.write('c.yaml', 'version: 1\nname: chk\nparams:\n  url: {required: true}\n'
                 'steps:\n  - id: slow-check\n    uses: sleep\n    timeout: 1s\n'
                 '    with: {for: 10ms}\n'
                 '    check: |\n      local rows = pg.query(params.url, "SELECT pg_sleep(8)")\n'
                 '      return true\n')
    t0 = time.time()
    r = h.engine('run', rb, '--state-dir', h.tmp / 's', '--set', f'url={h.pg.url("postgres")}',
                 '--report', h.tmp / 'r.json')
    h.check(r.returncode == 1, r.stdout + r.stderr)
    h.check(time.time() - t0 < 6, f'the check outlived the timeout: {time.time() - t0:.1f}s')
    rep = h.report(h.tmp / 'r.json')
    h.check(rep['steps']['slow-check']['status'] == 'timed_out', rep['steps']['slow-check'])


if __name__ == '__main__':
    suite.main()
