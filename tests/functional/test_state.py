"""Run state in a store (moto, SigV4 checked), run locks (local flock and
conditional writes in S3) and the grace after SIGTERM, against the suite's
PostgreSQL: what a team running drills from many machines relies on."""
import glob
import hashlib
import json
import os
import pathlib
import signal
import subprocess
import time

from harness import Suite, engine_bin, wait_for
from s3server import shared

suite = Suite(__file__)
BUCKET = 'engine-state'


def srv():
    return shared(BUCKET)


def s3env(h, scratch='scratch', **extra):
    return srv().scratch_env(h.tmp / scratch, **extra)


def keys(prefix):
    return srv().keys(BUCKET, prefix)


def get(key):
    return srv().client().get_object(Bucket=BUCKET, Key=key)


def events(text):
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def restored_in(journal_text):
    return any(e.get('event') == 'step.end' and e.get('step') == 'restore'
               for e in events(journal_text))


def local_restored(h, state):
    runs = glob.glob(str(h.tmp / state / 'runs/*/journal'))
    return bool(runs) and restored_in(pathlib.Path(runs[0]).read_text())


def s3_run_ids(prefix):
    return sorted({k.split('/')[2] for k in keys(prefix + '/runs/')})


def s3_restored(prefix):
    """The first run under prefix has its restore step ended, in the store."""
    ids = s3_run_ids(prefix)
    return bool(ids) and restored_in(get(f'{prefix}/runs/{ids[0]}/journal')['Body'].read().decode())


# ---- locks, locally ---------------------------------------------------------

@suite.test
def test_local_lock_second_run_exits_6_and_touches_nothing(h):
    hold = h.fixture('state/hold.yaml')
    st = h.tmp / 'st'
    p = h.popen('run', hold, '--state-dir', st, '--set', f'marker={h.tmp}/first')
    h.check(wait_for(lambda: (h.tmp / 'first').exists()), 'the first run never started')
    r = h.engine('run', hold, '--state-dir', st, '--set', f'marker={h.tmp}/second')
    h.check(r.returncode == 6, f'exit {r.returncode}: {r.stdout}{r.stderr}')
    first_id = os.listdir(st / 'runs')[0]
    h.check(f"another run holds the lock 'hold-one': run {first_id} on host" in r.stderr, r.stderr)
    h.check('nothing ran' in r.stderr, r.stderr)
    h.check(not (h.tmp / 'second').exists(), 'the refused run ran a step')
    h.check(len(os.listdir(st / 'runs')) == 1, 'the refused run left a run directory')
    # another lock name runs meanwhile
    r = h.engine('run', hold, '--state-dir', st, '--set', f'marker={h.tmp}/other',
                 '--set', 'name=two', '--set', 'hold=1ms')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(p.wait(timeout=60) == 0, p.stderr.read())
    # released at the end: the next run takes it
    r = h.engine('run', hold, '--state-dir', st, '--set', f'marker={h.tmp}/third',
                 '--set', 'hold=1ms')
    h.check(r.returncode == 0 and (h.tmp / 'third').exists(), r.stdout + r.stderr)
    # --lock overrides the runbook's name
    r = h.engine('run', hold, '--state-dir', st, '--set', f'marker={h.tmp}/x',
                 '--lock', 'bad name')
    h.check(r.returncode == 2 and '--lock needs a name' in r.stderr, r.stderr)
    # leftovers are only known per lock
    rb = h.write('nolock.yaml', 'version: 1\nname: nolock\nsteps:\n'
                 '  - id: a\n    uses: shell\n    with: {command: "touch nolock-ran"}\n')
    r = h.engine('run', rb, '--state-dir', st, '--cleanup-leftovers')
    h.check(r.returncode == 2 and '--cleanup-leftovers needs a lock' in r.stderr, r.stderr)
    h.check(not (h.tmp / 'nolock-ran').exists())


@suite.test
def test_lock_from_steps_is_invalid(h):
    rb = h.write('bad.yaml', 'version: 1\nname: bad\nlock: "x-${steps.a.outputs.v}"\n'
                 'steps:\n  - id: a\n    uses: shell\n    with: {command: "true"}\n')
    r = h.engine('validate', rb)
    h.check(r.returncode == 2 and 'bad.yaml:3:7' in r.stderr and "may read params and env" in r.stderr,
            r.stdout + r.stderr)
    rb = h.write('bad2.yaml', 'version: 1\nname: bad\nlock: "a b"\n'
                 'steps:\n  - id: a\n    uses: shell\n    with: {command: "true"}\n')
    r = h.engine('validate', rb)
    h.check(r.returncode == 2 and "lock 'a b' is not a lock name" in r.stderr, r.stderr)


# ---- SIGTERM and the grace ------------------------------------------------------

def sigterm_after_restore(h, src, name, *args):
    """The locked drill with state in h.tmp/st, sent SIGTERM once its restore
    ended: (exit code, seconds from the signal to the exit, output)."""
    p = h.popen('run', h.fixture('state/drill.yaml'), '--state-dir', h.tmp / 'st',
                '--set', f'restore_db={name}', *args, env={'DATABASE_URL': src})
    h.check(wait_for(lambda: local_restored(h, 'st')), 'the restore never finished')
    h.check(h.db_exists(name))
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    code = p.wait(timeout=30)
    took = time.time() - t0
    return code, took, p.stdout.read() + p.stderr.read()


@suite.test
def test_sigterm_during_drill_finally_drops_database_within_grace(h):
    src = h.source_db('state_src_a')
    name = 'state_drill_a'
    code, took, out = sigterm_after_restore(h, src, name, '--grace', '10s')
    h.check(code == 5, f'exit {code}: {out}')
    h.check(took < 10, f'took {took:.1f}s')
    h.check('SIGTERM received' in out and 'within 10.0s' in out, out)
    h.check(not h.db_exists(name), 'finally did not drop the drill database')


@suite.test
def test_grace_runs_out_then_next_run_removes_leftover(h):
    src = h.source_db('state_src_b')
    name = 'state_drill_b'
    st = h.tmp / 'st'
    code, took, out = sigterm_after_restore(h, src, name, '--set', 'finally_pause=30s',
                                            '--grace', '2s')
    h.check(code == 5, f'exit {code}: {out}')
    h.check(took < 4.5, f'the grace of 2s took {took:.1f}s')
    h.check('the grace of 2.0s ran out' in out, out)
    h.check(h.db_exists(name), 'the drop could not have run')
    old = os.listdir(st / 'runs')[0]
    r = h.engine('runs', '--state-dir', st)
    line = next(l for l in r.stdout.splitlines() if l.startswith(old))
    h.check(' 1' in line.split('locked-drill', 1)[1], line)
    # the next run holding the lock removes the leftover first
    r = h.engine('run', h.fixture('state/drill.yaml'), '--state-dir', st,
                 '--set', f'restore_db={name}', '--set', 'pause=1ms',
                 env={'DATABASE_URL': src}, timeout=120)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(f'run {old}: removing 1 leftover' in r.stdout, r.stdout)
    h.check(r.stdout.index(f'run {old}: leftovers removed') < r.stdout.index('> backup'), r.stdout)
    h.check(not h.db_exists(name))
    r = h.engine('runs', '--state-dir', st)
    line = next(l for l in r.stdout.splitlines() if l.startswith(old))
    h.check(line.rstrip().endswith('0'), r.stdout)
    h.check(not glob.glob(str(st / 'locks/drill-state_drill_b.runs/*')), 'markers left')


# ---- state in S3 -----------------------------------------------------------------

@suite.test
def test_s3_state_drill_runs_audit_verify_from_elsewhere(h):
    src = h.source_db('state_src_c')
    url = f's3://{BUCKET}/team-a'
    r = h.engine('run', h.fixture('state/drill.yaml'), '--state-dir', url,
                 '--set', 'restore_db=state_drill_c', '--set', 'pause=1ms',
                 env=s3env(h, DATABASE_URL=src), timeout=120)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    ids = s3_run_ids('team-a')
    h.check(len(ids) == 1, keys('team-a'))
    rid = ids[0]
    objs = keys(f'team-a/runs/{rid}/')
    for f in ('journal', 'audit.jsonl', 'report.json', 'junit.xml', 'evidence.md'):
        h.check(f'team-a/runs/{rid}/{f}' in objs, objs)
    o = get(f'team-a/runs/{rid}/audit.jsonl')
    body = o['Body'].read()
    h.check(o['Metadata'].get('sha256') == hashlib.sha256(body).hexdigest(), o['Metadata'])
    recs = events(body.decode())
    h.check(recs[0]['type'] == 'run.start' and recs[-1]['type'] == 'run.end', recs[-1])
    h.check(json.loads(get(f'team-a/runs/{rid}/report.json')['Body'].read())['status'] == 'ok')
    # the scratch copy is gone; the lock and its marker too
    h.check(not glob.glob(str(h.tmp / 'scratch/*/runs/*')), 'scratch run directory left')
    h.check(not keys('team-a/locks/'), keys('team-a/locks/'))
    # from "another machine": another scratch directory, no local state
    other = s3env(h, 'elsewhere')
    r = h.engine('runs', '--state-dir', url, env=other)
    h.check(r.returncode == 0 and rid in r.stdout and 'locked-drill' in r.stdout and 'ok' in r.stdout,
            r.stdout + r.stderr)
    r = h.engine('audit', 'verify', f'{url}/runs/{rid}', env=other)
    h.check(r.returncode == 0 and 'ok' in r.stdout, r.stdout + r.stderr)
    r = h.engine('audit', 'verify', rid, '--state-dir', url, env=other)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    # one byte changed in the store is found
    srv().client().put_object(Bucket=BUCKET, Key=f'team-a/runs/{rid}/audit.jsonl',
                              Body=body.replace(b'"backup"', b'"backuq"', 1))
    r = h.engine('audit', 'verify', f'{url}/runs/{rid}/audit.jsonl', env=other)
    h.check(r.returncode == 1, r.stdout + r.stderr)
    h.check(not h.db_exists('state_drill_c'))
    # secrets stay out of the store
    pw = h.pg.password if hasattr(h.pg, 'password') else None
    for k in keys(f'team-a/runs/{rid}/'):
        text = get(k)['Body'].read().decode()
        h.check(srv().secret not in text, k)
        if pw:
            h.check(pw not in text, k)


@suite.test
def test_s3_lock_second_run_exits_6(h):
    url = f's3://{BUCKET}/team-b'
    hold = h.fixture('state/hold.yaml')
    p = h.popen('run', hold, '--state-dir', url, '--set', f'marker={h.tmp}/first',
                '--set', 'hold=6s', env=s3env(h))
    h.check(wait_for(lambda: (h.tmp / 'first').exists()), 'the first run never started')
    h.check(wait_for(lambda: 'team-b/locks/hold-one' in keys('team-b/locks/')), keys('team-b'))
    rec = json.loads(get('team-b/locks/hold-one')['Body'].read())
    r = h.engine('run', hold, '--state-dir', url, '--set', f'marker={h.tmp}/second',
                 env=s3env(h, 'scratch2'))
    h.check(r.returncode == 6, f'exit {r.returncode}: {r.stdout}{r.stderr}')
    h.check(f"run {rec['run']} on host {rec['host']}, started {rec['started']}" in r.stderr, r.stderr)
    h.check(not (h.tmp / 'second').exists(), 'the refused run ran a step')
    h.check(p.wait(timeout=60) == 0, p.stderr.read())
    h.check(s3_run_ids('team-b') == [rec['run']], keys('team-b'))
    h.check(not keys('team-b/locks/'), 'the lock was not released')


def start_s3_drill(h, team, src, name, *args):
    """The locked drill (lock TTL 3 s) with state in s3://BUCKET/team, once
    its restore ended in the store: (state URL, the process)."""
    url = f's3://{BUCKET}/{team}'
    p = h.popen('run', h.fixture('state/drill.yaml'), '--state-dir', url,
                '--set', f'restore_db={name}', '--lock-ttl', '3s', *args,
                env=s3env(h, DATABASE_URL=src))
    h.check(wait_for(lambda: s3_restored(team)), 'the restore never reached the store')
    return url, p


@suite.test
def test_s3_sigkill_then_next_run_elsewhere_removes_leftover(h):
    src = h.source_db('state_src_d')
    name = 'state_drill_d'
    url, p = start_s3_drill(h, 'team-d', src, name)
    old = s3_run_ids('team-d')[0]
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    h.check(h.db_exists(name), 'SIGKILL runs no finally')
    h.check(f'team-d/locks/drill-{name}' in keys('team-d/locks/'))
    # another machine, at once: the lock is still valid
    r = h.engine('run', h.fixture('state/drill.yaml'), '--state-dir', url,
                 '--set', f'restore_db={name}', '--set', 'pause=1ms',
                 env=s3env(h, 'm2', DATABASE_URL=src), timeout=120)
    h.check(r.returncode == 6 and old in r.stderr, r.stdout + r.stderr)
    time.sleep(3.2)  # past the dead holder's TTL
    r = h.engine('run', h.fixture('state/drill.yaml'), '--state-dir', url,
                 '--set', f'restore_db={name}', '--set', 'pause=1ms',
                 env=s3env(h, 'm2', DATABASE_URL=src), timeout=120)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(f'taken over from run {old}' in r.stdout, r.stdout)
    h.check(f'run {old}: removing 1 leftover' in r.stdout, r.stdout)
    h.check(not h.db_exists(name))
    j = get(f'team-d/runs/{old}/journal')['Body'].read().decode()
    h.check(any(e.get('event') == 'removed' for e in events(j)), j[-600:])
    r = h.engine('audit', 'verify', f'{url}/runs/{old}', env=s3env(h, 'm3'))
    h.check('prev' not in r.stdout, r.stdout)
    h.check(not keys(f'team-d/locks/drill-{name}.runs/'), keys('team-d/locks/'))


@suite.test
def test_s3_resume_and_cleanup_from_another_machine(h):
    src = h.source_db('state_src_e')
    name = 'state_drill_e'
    url, p = start_s3_drill(h, 'team-e', src, name, '--no-cleanup-leftovers')
    rid = s3_run_ids('team-e')[0]
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    r = h.engine('runs', '--state-dir', url, env=s3env(h, 'm2'))
    h.check(rid in r.stdout and 'incomplete' in r.stdout, r.stdout + r.stderr)
    # the killed run's lock is still valid: no cleanup behind its back
    r = h.engine('cleanup', rid, '--state-dir', url, env=s3env(h, 'm2', DATABASE_URL=src))
    h.check(r.returncode == 6 and f'run {rid} on host' in r.stderr, r.stdout + r.stderr)
    h.check(h.db_exists(name))
    time.sleep(3.2)  # past its TTL
    r = h.engine('cleanup', rid, '--state-dir', url, env=s3env(h, 'm2', DATABASE_URL=src))
    h.check(r.returncode == 0 and 'removing 1 leftover' in r.stdout, r.stdout + r.stderr)
    h.check(f'taken over from run {rid}' in r.stdout, r.stdout)
    h.check(not keys('team-e/locks/'), keys('team-e/locks/'))
    h.check(not h.db_exists(name))
    r = h.engine('cleanup', rid, '--state-dir', url, env=s3env(h, 'm3', DATABASE_URL=src))
    h.check(r.returncode == 0 and 'nothing to clean up' in r.stdout, r.stdout + r.stderr)
    r = h.engine('run', h.fixture('state/drill.yaml'), '--state-dir', url, '--resume', rid,
                 '--set', f'restore_db={name}', '--set', 'pause=1ms', '--lock', 'resumed',
                 env=s3env(h, 'm4', DATABASE_URL=src), timeout=120)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    rep = json.loads(get(f'team-e/runs/{rid}/report.json')['Body'].read())
    h.check(rep['run_id'] == rid and rep['status'] == 'ok', rep.get('status'))
    h.check(not h.db_exists(name))
    r = h.engine('run', h.fixture('state/drill.yaml'), '--state-dir', url, '--resume', 'nope-1',
                 '--set', f'restore_db={name}', env=s3env(h, 'm5', DATABASE_URL=src))
    h.check(r.returncode == 2 and 'no such run' in r.stderr, r.stderr)


@suite.test
def test_sigterm_while_taking_the_lock_stops_the_run_at_its_start(h):
    """SIGTERM before any run loop exists (the lock's PUT is slow): the
    engine is not killed by it; the run starts, stops at once (exit 5), no
    step runs, the lock is released and the state written."""
    from faultproxy import FaultProxy
    proxy = FaultProxy('127.0.0.1', srv().port).start()
    try:
        proxy.add(method='PUT', path='/locks/gap', fault='delay', delay=2, times=1)
        p = h.popen('run', h.fixture('state/hold.yaml'), '--state-dir', f's3://{BUCKET}/team-g',
                    '--set', f'marker={h.tmp}/ran', '--lock', 'gap',
                    env=s3env(h, AWS_ENDPOINT_URL=proxy.endpoint))
        h.check(wait_for(lambda: any('/locks/gap' in t for _, t, _ in proxy.hits), 20),
                proxy.hits)
        p.send_signal(signal.SIGTERM)
        code = p.wait(timeout=60)
        out = p.stdout.read() + p.stderr.read()
        h.check(code == 5, f'exit {code}: {out}')
        h.check('SIGTERM received' in out, out)
        h.check(not (h.tmp / 'ran').exists(), 'a step ran after SIGTERM')
        h.check(not keys('team-g/locks/'), keys('team-g/locks/'))
        rid = s3_run_ids('team-g')[0]
        rep = json.loads(get(f'team-g/runs/{rid}/report.json')['Body'].read())
        h.check(rep['exit_code'] == 5, rep['exit_code'])
    finally:
        proxy.stop()


@suite.test
def test_journal_from_store_never_runs_builtins(h):
    """A journal written into the store by someone else: only plugin
    actions undo resources, so a shell 'undo' never runs."""
    pwned = h.tmp / 'pwned'
    rid = '20260101-000000-dead'
    rec = {'event': 'intent', 'seq': 1, 'time': '2026-01-01T00:00:00.000Z', 'step': 'x',
           'kind': 'database', 'id': 'evil',
           'detail': {'undo': {'action': 'shell', 'with': {'command': f'touch {pwned}'}}}}
    c = srv().client()
    c.put_object(Bucket=BUCKET, Key=f'team-f/runs/{rid}/journal', Body=json.dumps(rec) + '\n')
    c.put_object(Bucket=BUCKET, Key=f'team-f/locks/hold-one.runs/{rid}', Body=rid)
    r = h.engine('run', h.fixture('state/hold.yaml'), '--state-dir', f's3://{BUCKET}/team-f',
                 '--set', f'marker={h.tmp}/ran', '--set', 'hold=1ms', env=s3env(h))
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check((h.tmp / 'ran').exists() and not pwned.exists(), r.stdout)
    h.check(f'team-f/locks/hold-one.runs/{rid}' not in keys('team-f/locks/'))


@suite.test
def test_s3_state_errors_are_named(h):
    r = h.engine('runs', '--state-dir', f's3://{BUCKET}/x',
                 env=s3env(h, AWS_SECRET_ACCESS_KEY='wrong-secret-value'))
    h.check(r.returncode != 0 and 'wrong-secret-value' not in r.stdout + r.stderr, r.stderr)
    h.check('s3://' in r.stderr, r.stderr)
    r = h.engine('runs', '--state-dir', 'gopher://x/y', env=s3env(h))
    h.check(r.returncode == 2 and "no plugin serves state stores for 'gopher://'" in r.stderr, r.stderr)


@suite.test
def test_lock_unit_tests_against_moto(h):
    binary = pathlib.Path(engine_bin()).resolve().parent.parent / 'tests' / 'test_lock'
    e = dict(os.environ)
    e.update(s3env(h))
    e['ENGINE_TEST_STATE_URL'] = f's3://{BUCKET}/unit'
    r = subprocess.run([str(binary)], env=e, text=True, capture_output=True, timeout=120)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check('store lock tests run: 3' in r.stdout, r.stdout)


@suite.test
def test_state_unit_tests_against_moto(h):
    """tests/unit/test_state.c's store half: objects, conditional writes,
    a run pushed and pulled, the background sync, and an object whose bytes
    do not match the SHA-256 recorded with it (written here, behind the
    engine's back)."""
    binary = pathlib.Path(engine_bin()).resolve().parent.parent / 'tests' / 'test_state'
    written, changed = b'the bytes the engine wrote\n', b'the bytes someone changed\n'
    srv().client().put_object(Bucket=BUCKET, Key='unit-state/tampered', Body=changed,
                              Metadata={'sha256': hashlib.sha256(written).hexdigest()})
    e = dict(os.environ)
    e.update(s3env(h))
    e['ENGINE_TEST_STATE_URL'] = f's3://{BUCKET}/unit-state'
    e['ENGINE_TEST_TAMPERED_KEY'] = 'tampered'
    r = subprocess.run([str(binary)], env=e, text=True, capture_output=True, timeout=120)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check('store state tests run: 5' in r.stdout, r.stdout)
    # what the unit test pushed reads back through another client, with
    # the SHA-256 the engine recorded
    journals = [k for k in keys('unit-state/runs-')
                if k.endswith('/runs/20260102-030405-beef/journal')]
    h.check(len(journals) == 1, journals)
    obj = get(journals[0])
    body = obj['Body'].read()
    h.check(body == b'{"event":"step.start","step":"a"}\n{"event":"step.end","step":"a"}\n', body)
    h.check(obj['Metadata'].get('sha256') == hashlib.sha256(body).hexdigest(), obj['Metadata'])


if __name__ == '__main__':
    suite.main()
