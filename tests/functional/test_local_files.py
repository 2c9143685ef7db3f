"""The `files` built-in action: local files listed by glob, one picked
(latest, oldest, none) within max_age, SHA-256 sidecars read (written by
the real sha256sum), and the picked path held to the guards.

No server needed: the engine runs on real files whose modification times
the test sets."""
import hashlib
import json
import os
import subprocess
import time

from harness import Suite

suite = Suite(__file__)
HOUR = 3600


def backups(h, folder='backups'):
    """Three dumps 3 h, 1 h and 2 h old, a sidecar by sha256sum for the
    newest, a BSD-form one for the middle, and things the glob skips."""
    d = h.tmp / folder
    d.mkdir()
    now = time.time()
    ages = {'ledger-a.dump': 3 * HOUR, 'ledger-b.dump': 1 * HOUR,
            'ledger-c.dump': 2 * HOUR}
    for name, age in ages.items():
        (d / name).write_bytes(f'dump {name}\n'.encode() * (len(name) + int(age / HOUR)))
    subprocess.run(['sh', '-c', 'sha256sum ledger-b.dump > ledger-b.dump.sha256'],
                   cwd=d, check=True)
    c_sum = hashlib.sha256((d / 'ledger-c.dump').read_bytes()).hexdigest()
    (d / 'ledger-c.dump.sha256').write_text(
        f'SHA256 (ledger-c.dump) = {c_sum.upper()}\n')
    (d / 'notes.txt').write_text('not a dump\n')
    (d / 'old.dump.d').mkdir()  # a folder the pattern may match: not listed
    for name, age in ages.items():
        os.utime(d / name, (now - age, now - age))
    return d


def pick(h, glob, *args, state='state'):
    rep = h.tmp / f'report-{time.time_ns()}.json'
    r = h.engine('run', h.fixture('files/pick.yaml'), '--state-dir', h.tmp / state,
                 '--report', rep, '-p', f'glob={glob}', *args)
    report = json.loads(rep.read_text()) if rep.exists() else {}
    return r, report


def out(r):
    return f'exit {r.returncode}\nSTDOUT:\n{r.stdout}\nSTDERR:\n{r.stderr}'


def picked(report):
    return report['steps']['pick']['outputs']['picked']


@suite.test
def test_latest_oldest_none_and_sidecars(h):
    d = backups(h)
    r, rep = pick(h, str(d / 'ledger-*.dump*'))
    h.check(r.returncode == 0, out(r))
    o = rep['steps']['pick']['outputs']
    names = [x['name'] for x in o['objects']]
    # the sidecars of listed files are their checksums, not files
    h.check(names == ['ledger-a.dump', 'ledger-b.dump', 'ledger-c.dump'], o)
    h.check(o['count'] == 3, o)
    p = o['picked']
    h.check(p['path'] == str(d / 'ledger-b.dump'), p)
    h.check(p['bytes'] == (d / 'ledger-b.dump').stat().st_size, p)
    h.check(abs(p['age_s'] - HOUR) < 120, p)
    h.check(p['sha256'] == hashlib.sha256((d / 'ledger-b.dump').read_bytes())
            .hexdigest(), p)
    by = {x['name']: x for x in o['objects']}
    h.check(by['ledger-c.dump']['sha256'] == hashlib.sha256(
        (d / 'ledger-c.dump').read_bytes()).hexdigest(), by)  # BSD form
    h.check(by['ledger-a.dump']['sha256'] == '', by)
    h.check(p['last_modified'].endswith('Z') and p['last_modified'][:4].isdigit(), p)
    # the next step reads the picked file: a path, no newline to trim
    h.check(rep['steps']['use']['outputs']['stdout'].startswith('dump ledger-b.dump'),
            rep['steps']['use'])
    # oldest, and the oldest within max_age; relative to the working dir
    r, rep = pick(h, 'backups/*.dump', '-p', 'pick=oldest')
    h.check(r.returncode == 0 and picked(rep)['path'] == str(d / 'ledger-a.dump'),
            out(r))
    r, rep = pick(h, 'backups/*.dump', '-p', 'pick=oldest', '-p', 'max_age=150m')
    h.check(r.returncode == 0 and picked(rep)['name'] == 'ledger-c.dump', out(r))
    r, rep = pick(h, str(d / '*.dump'), '-p', 'pick=none')
    h.check(r.returncode == 0, out(r))
    o = rep['steps']['pick']['outputs']
    h.check(o['picked'] is None and o['count'] == 3, o)
    h.check(rep['steps']['use']['status'] == 'skipped', rep['steps']['use'])


@suite.test
def test_refusals_max_age_no_match_bad_sidecar(h):
    d = backups(h)
    r, rep = pick(h, str(d / '*.dump'), '-p', 'max_age=30m')
    h.check(r.returncode == 1, out(r))
    h.check('max_age' in r.stdout and 'ledger-b.dump' in r.stdout and
            'younger' in r.stdout, out(r))
    h.check(rep['steps']['use']['status'] != 'ok', rep['steps'])
    r, rep = pick(h, str(d / '*.sql'))
    h.check(r.returncode == 1 and 'no file matches' in r.stdout, out(r))
    r, rep = pick(h, str(h.tmp / 'no-such-folder' / '*.dump'))
    h.check(r.returncode == 1 and 'no file matches' in r.stdout, out(r))
    (d / 'ledger-b.dump.sha256').write_text('not a checksum\n')
    r, rep = pick(h, str(d / '*.dump'))
    h.check(r.returncode == 1 and 'not a SHA-256 sidecar' in r.stdout, out(r))
    h.check(rep['steps']['use']['status'] != 'ok', rep['steps'])


@suite.test
def test_guards_hold_the_picked_path(h):
    d = backups(h, 'protected')
    args = ('-p', f'protect={d}/*', '-p', 'remove=true')
    # plan lists the glob among the targets, as a path
    pl = h.engine('plan', h.fixture('files/pick.yaml'), '-p', f'glob={d}/*.dump', *args)
    h.check(pl.returncode == 0 and f'{d}/*.dump' in pl.stdout, out(pl))
    r, rep = pick(h, str(d / '*.dump'), *args)
    h.check(r.returncode == 3, out(r))
    h.check('protected_paths' in r.stdout and 'ledger-b.dump' in r.stdout, out(r))
    h.check((d / 'ledger-b.dump').exists(), 'the protected file was removed')
    # reading it passed, and the pass is recorded with what was picked
    h.check(rep['steps']['pick']['status'] == 'ok', rep['steps'])
    audit = '\n'.join(p.read_text() for p in (h.tmp / 'state').rglob('audit.jsonl'))
    h.check('picked (latest)' in audit, audit[-2000:])
    # the same runbook removes a file the guards do not protect
    u = backups(h, 'scratch')
    r, rep = pick(h, str(u / '*.dump'), '-p', 'remove=true', state='state2')
    h.check(r.returncode == 0 and not (u / 'ledger-b.dump').exists(), out(r))
    h.check((u / 'ledger-a.dump').exists(), 'removed more than the picked file')


if __name__ == '__main__':
    suite.main()
