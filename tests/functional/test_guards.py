"""Guards that need no database (forbidden commands, require, Lua checks),
the audit log's tamper evidence, and the JUnit/evidence reports."""
import glob
import os
import pathlib
import xml.etree.ElementTree as ET

from harness import Suite

suite = Suite(__file__)


def run_dir(h, state='state'):
    runs = glob.glob(str(h.tmp / state / 'runs' / '*'))
    assert len(runs) == 1, runs
    return pathlib.Path(runs[0])


FORBIDDEN = [
    'cd app && npx prisma migrate reset --force',
    'npx prisma migrate dev --name x',
    'npx  prisma db push   --accept-data-loss',
    'cd /srv && docker compose down -v && echo done',
    'docker-compose down -v',
    'rm -rf /var/lib/postgresql/15/main',
    'dropdb -U postgres prod_main',
    'psql -c "DROP DATABASE prod_main"',
    'psql -c "drop database if exists template1"',
    'echo x; docker compose \\\n  down -v',
    'docker compose -f prod.yml down -v',
    'dropdb prod_main 2>&1',
    'dropdb prod_main > /dev/null',
    'prisma migrate re\\set',
    'npx prisma db push --skip-generate --accept-data-loss',
    '/usr/lib/postgresql/15/bin/dropdb -h db prod_main',
]


@suite.test
def test_forbidden_commands_refused(h):
    for i, cmd in enumerate(FORBIDDEN):
        state = f'state{i}'
        r = h.engine('run', h.fixture('guards/forbidden.yaml'), '--state-dir',
                     h.tmp / state, '--set', f'cmd={cmd}', '--allow-destructive')
        h.check(r.returncode == 3, f'{cmd!r}: exit {r.returncode}\n{r.stdout}{r.stderr}')
        rd = run_dir(h, state)
        # refused before anything ran: not even the step before it
        h.check(not (rd / 'before').exists() and not (rd / 'after').exists(), cmd)
        h.check((rd / 'finally').exists(), f'{cmd}: finally did not run')
        audit = (rd / 'audit.jsonl').read_text()
        h.check('"guard.refuse"' in audit and 'forbidden_commands' in audit, cmd)
    # a harmless command with similar words runs
    r = h.engine('run', h.fixture('guards/forbidden.yaml'), '--state-dir',
                 h.tmp / 'ok', '--set', 'cmd=echo prisma migrate status; dropdb --help >/dev/null || true')
    h.check(r.returncode == 0, r.stdout + r.stderr)


@suite.test
def test_forbidden_argv_and_unresolvable_guard(h):
    rb = h.write('argv.yaml', 'version: 1\nname: argv\nsteps:\n  - id: m\n    uses: shell\n'
                 '    with:\n      command: [prisma, migrate, "--schema=x", reset]\n')
    r = h.engine('run', rb, '--state-dir', h.tmp / 's1')
    h.check(r.returncode == 3, r.stdout + r.stderr)
    # a protected list entry that cannot be resolved refuses (fail safe)
    rb = h.write('unres.yaml', 'version: 1\nname: unres\nguards:\n'
                 '  protected_databases: ["${env.ENGINE_TEST_UNSET_DB}"]\n'
                 'steps:\n  - id: d\n    uses: shell\n    with: {command: "dropdb skymoney || true"}\n')
    r = h.engine('run', rb, '--state-dir', h.tmp / 's2')
    h.check(r.returncode == 3 and 'could not be resolved' in r.stdout, r.stdout + r.stderr)
    # guards.checks written as ${...} work too
    rb = h.write('chk.yaml', 'version: 1\nname: chk\nguards:\n  checks:\n'
                 '    - that: ${1 + 1 == 2}\nsteps:\n  - id: a\n    uses: shell\n    with: {command: "true"}\n')
    r = h.engine('run', rb, '--state-dir', h.tmp / 's3')
    h.check(r.returncode == 0, r.stdout + r.stderr)


@suite.test
def test_require_guard(h):
    r = h.engine('run', h.fixture('guards/require.yaml'), '--state-dir', h.tmp / 's1',
                 '--report', h.tmp / 'r.json')
    h.check(r.returncode == 3, r.stdout + r.stderr)
    h.check(not (run_dir(h, 's1') / 'deployed').exists())
    rep = h.report(h.tmp / 'r.json')
    h.check(rep['steps']['deploy']['status'] == 'refused', rep['steps']['deploy'])
    h.check('safety-backup' in rep['steps']['deploy']['error'])
    # a DAG that cannot guarantee the order is refused before anything runs
    r = h.engine('run', h.fixture('guards/require-static.yaml'), '--state-dir', h.tmp / 's2')
    h.check(r.returncode == 3, r.stdout + r.stderr)
    h.check(not (run_dir(h, 's2') / 'deployed').exists())
    r = h.engine('plan', h.fixture('guards/require-static.yaml'))
    h.check(r.returncode == 3 and 'REFUSED' in r.stdout, r.stdout)


@suite.test
def test_lua_guard_check(h):
    r = h.engine('run', h.fixture('guards/lua-check.yaml'), '--state-dir', h.tmp / 's1')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    r = h.engine('run', h.fixture('guards/lua-check.yaml'), '--state-dir', h.tmp / 's2',
                 '--set', 'restore_db=prod_copy')
    h.check(r.returncode == 3, r.stdout + r.stderr)
    h.check('never be a production name' in r.stdout, r.stdout)
    h.check(not (run_dir(h, 's2') / 'worked').exists())


def audited_run(h, env=None):
    r = h.engine('run', h.fixture('guards/audited.yaml'), '--state-dir', h.tmp / 'state',
                 '--junit', h.tmp / 'j.xml', '--evidence', h.tmp / 'e.md', env=env)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    return run_dir(h) / 'audit.jsonl', r


def verify(h, path, env=None):
    return h.engine('audit', 'verify', path, env=env)


@suite.test
def test_audit_chain_tamper_without_key(h):
    path, r = audited_run(h)
    lines = path.read_text().splitlines(keepends=True)
    types = [l.split('"type":"')[1].split('"')[0] for l in lines]
    for t in ('run.start', 'plan', 'step.start', 'step.attempt', 'step.end', 'run.end', 'guard.pass'):
        h.check(t in types, f'{t} missing from {types}')
    v = verify(h, path)
    h.check(v.returncode == 0, v.stdout + v.stderr)
    head = v.stdout.split('chain head ')[1].split()[0].rstrip(',')
    h.check(head in r.stdout, 'the console prints the chain head')
    bad = h.tmp / 'bad.jsonl'

    def tampered(new_lines, what, line):
        bad.write_text(''.join(new_lines))
        v = verify(h, bad)
        h.check(v.returncode == 1, f'{what}: exit {v.returncode} {v.stdout}')
        h.check(f'bad.jsonl:{line}:' in v.stdout, f'{what}: {v.stdout}')

    changed = list(lines)
    changed[2] = changed[2].replace('"time":"2', '"time":"3', 1)
    h.check(changed[2] != lines[2])
    tampered(changed, 'changed byte', 4)
    garbled = list(lines)
    garbled[2] = garbled[2].replace('"', "'", 1)
    tampered(garbled, 'broken line', 3)
    tampered(lines[:3] + lines[4:], 'deleted line', 4)
    tampered(lines[:2] + [lines[3], lines[2]] + lines[4:], 'reordered', 3)
    tampered(lines[:-1], 'removed run.end', len(lines) - 1)
    tampered(lines + [lines[-1]], 'appended after run.end', len(lines) + 1)


@suite.test
def test_audit_hmac(h):
    env = {'ENGINE_AUDIT_KEY': 'k3y-for-audit'}
    path, _ = audited_run(h, env=env)
    v = verify(h, path, env=env)
    h.check(v.returncode == 0 and 'every mac verified' in v.stdout, v.stdout)
    v = verify(h, path, env={'ENGINE_AUDIT_KEY': 'another-key'})
    h.check(v.returncode == 1 and ':1:' in v.stdout, v.stdout)
    # a record forged without the key (no mac) is caught even when chained
    lines = path.read_text().splitlines(keepends=True)
    import hashlib, json
    forged = json.loads(lines[-1])
    forged.pop('mac')
    forged['seq'] += 1
    forged['type'] = 'run.start'
    forged['prev'] = hashlib.sha256(lines[-1].rstrip('\n').encode()).hexdigest()
    bad = h.tmp / 'forged.jsonl'
    bad.write_text(''.join(lines) + json.dumps(forged, separators=(',', ':'), sort_keys=True) + '\n')
    v = verify(h, bad, env=env)
    h.check(v.returncode == 1 and f':{len(lines) + 1}:' in v.stdout and 'mac' in v.stdout, v.stdout)
    r = h.engine('audit', 'show', path)
    h.check(r.returncode == 0 and 'run.start' in r.stdout and 'step.end' in r.stdout, r.stdout)
    # bytes after a NUL inside a line are not ignored: the line is tampered
    raw = path.read_bytes().split(b'\n')
    raw[1] = raw[1] + b'\x00{"injected":true}'
    nul = h.tmp / 'nul.jsonl'
    nul.write_bytes(b'\n'.join(raw))
    v = verify(h, nul, env=env)
    h.check(v.returncode == 1 and ':2:' in v.stdout and 'NUL byte' in v.stdout, v.stdout)
    # a record with a short or missing time is shown, not read past its end
    short = h.tmp / 'short.jsonl'
    short.write_text('{"time":""}\n{"time":"2026"}\n{"type":"x"}\n')
    r = h.engine('audit', 'show', short)
    h.check(r.returncode == 0 and r.stdout.count('\n') == 3, r.stdout + r.stderr)


@suite.test
def test_junit_and_evidence(h):
    secret = 'audit-secret-value-77'
    path, r = audited_run(h, env={'AUDIT_TEST_SECRET': secret})
    root = ET.parse(h.tmp / 'j.xml').getroot()
    cases = root.findall('.//testcase')
    names = [c.get('name') for c in cases]
    h.check(names == ['one', 'two', 'two check', 'three'], names)
    h.check(root.find('testsuite').get('failures') == '0')
    ev = (h.tmp / 'e.md').read_text()
    for section in ('# Drill evidence', '## Metrics', 'total RTO', '## Failures', 'chain head'):
        h.check(section in ev, f'{section} missing')
    rd = run_dir(h)
    for f in ('report.json', 'junit.xml', 'evidence.md', 'audit.jsonl', 'journal'):
        h.check((rd / f).exists(), f'{f} not in the run directory')
        h.check(secret not in (rd / f).read_text(), f'secret in {f}')
    h.check(secret not in r.stdout + r.stderr)


@suite.test
def test_runs_listing(h):
    audited_run(h)
    r = h.engine('runs', '--state-dir', h.tmp / 'state')
    h.check(r.returncode == 0 and 'audited' in r.stdout and 'ok' in r.stdout, r.stdout)



@suite.test
def test_junit_counts_a_failed_check_once(h):
    marker = h.tmp / 'attempted'
    f = h.write('checks.yaml', f"""version: 1
name: checks
steps:
  - id: counted
    uses: shell
    with: {{ command: "echo 3" }}
    check: return tonumber(outputs.stdout) > 5, "too few rows"
  - id: flaky
    needs: []
    uses: shell
    retry: {{ attempts: 2, delay: 10ms }}
    with: {{ command: "test -f {marker} && exit 7; touch {marker}" }}
    check: return false, "the first attempt's check"
""")
    r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--junit', h.tmp / 'j.xml')
    h.check(r.returncode == 1, r.stdout + r.stderr)
    root = ET.parse(h.tmp / 'j.xml').getroot()
    cases = {c.get('name'): c for c in root.findall('.//testcase')}
    # the action of 'counted' worked; its check failed: one failure
    h.check(cases['counted'].find('failure') is None, ET.tostring(cases['counted']))
    fail = cases['counted check'].find('failure')
    h.check(fail is not None and 'too few rows' in fail.get('message'),
            ET.tostring(cases['counted check']))
    # 'flaky' failed its check, then its action on the last attempt: the
    # step fails and its check did not run in the attempt that counted
    h.check(cases['flaky'].find('failure') is not None, ET.tostring(cases['flaky']))
    h.check(cases['flaky check'].find('skipped') is not None, ET.tostring(cases['flaky check']))
    h.check(root.find('testsuite').get('failures') == '2',
            root.find('testsuite').attrib)

if __name__ == '__main__':
    suite.main()
