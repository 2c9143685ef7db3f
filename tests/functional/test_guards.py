"""Guards that need no database (forbidden commands, require, Lua checks),
the audit log's tamper evidence, and the JUnit/evidence reports."""
import glob
import json
import os
import pathlib
import xml.etree.ElementTree as ET

from harness import ROOT, Suite

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
        h.check('"guard.refuse"' in audit and '"run.refused"' in audit, cmd)
        h.check('forbidden_commands' in audit or 'protected_' in audit, cmd)
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

CLOSED_AWS = {'AWS_ENDPOINT_URL': 'http://127.0.0.1:9', 'AWS_ACCESS_KEY_ID': 'AKIDGUARDS',
              'AWS_SECRET_ACCESS_KEY': 'guards-secret', 'AWS_REGION': 'us-east-1'}


def targets(plan_out, step):
    """The target lines plan printed under one step."""
    lines, on = [], False
    for line in plan_out.splitlines():
        if line.startswith('  ') and not line.startswith('   '):
            on = line.split()[0] == step
        elif on and line.startswith('      target '):
            lines.append(line.strip())
    return lines


@suite.test
def test_every_refusal_known_before_the_run(h):
    """A restore onto the protected instance (its value known, the snapshot
    only once a step ran) and the deletion of the copy in `finally`: plan
    shows both refused, and the run refuses both before anything ran (the
    read-only step that comes first included), names them, and says so in
    the audit log and the report. `finally` runs as after any refusal (its
    refused step stays refused, the notification's condition is false)."""
    rb = ROOT / 'runbooks' / 'managed-restore-test.yaml'
    sets = ['--set', 'source_instance=ledger-prod', '--set', 'restore_instance=ledger-prod']
    p = h.engine('plan', rb, *sets, env=CLOSED_AWS)
    h.check(p.returncode == 3, p.stdout + p.stderr)
    h.check(targets(p.stdout, 'restore') == ['target instance   ledger-prod  [REFUSED]'],
            p.stdout)
    h.check(targets(p.stdout, 'delete-copy') == ['target instance   ledger-prod  [REFUSED]'],
            p.stdout)
    r = h.engine('run', rb, *sets, '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r.json',
                 env=CLOSED_AWS)
    h.check(r.returncode == 3, r.stdout + r.stderr)
    h.check("refused before the first step ('restore', 'delete-copy'): no main step ran"
            in r.stderr, r.stderr)
    h.check('REFUSED by a guard before the first step in' in r.stdout, r.stdout)
    rep = h.report(h.tmp / 'r.json')
    h.check(rep['refused_before_start'] == ['restore', 'delete-copy'],
            rep.get('refused_before_start'))
    status = {k: v['status'] for k, v in rep['steps'].items()}
    h.check(status.pop('restore') == 'refused' and status.pop('delete-copy') == 'refused', status)
    h.check(set(status.values()) == {'skipped'}, f'something ran: {status}')
    h.check("instance 'ledger-prod' is protected" in rep['steps']['restore']['error'],
            rep['steps']['restore'])
    audit = [json.loads(l) for l in (run_dir(h) / 'audit.jsonl').read_text().splitlines()]
    types = [a['type'] for a in audit]
    h.check('run.refused' in types and 'step.start' not in types, types)
    refused = [a for a in audit if a['type'] == 'run.refused'][0]
    h.check(refused['steps'] == ['restore', 'delete-copy'] and
            'no main step ran' in refused['message'], refused)
    # the copy under another name: nothing is refused before the run
    p = h.engine('plan', rb, '--set', 'source_instance=ledger-prod', env=CLOSED_AWS)
    h.check(p.returncode == 0 and '[REFUSED' not in p.stdout, p.stdout)


MOUNTS = '''version: 1
name: mounts
guards:
  protected_volumes: [shop_pgdata]
  protected_paths: ["/srv/shop/*"]
steps:
  - id: first
    uses: shell
    with: {command: "touch $ENGINE_RUN_DIR/first"}
  - id: look
    needs: [first]
    uses: docker.run
    with: {image: busybox, command: "ls /v", volumes: ["shop_pgdata:/v", "/srv/shop/conf:/c:ro"]}
  - id: wipe
    needs: [look]
    uses: docker.run
    with:
      image: busybox
      command: "rm -rf /v/base"
      volumes: ["shop_pgdata:/v:rw", "/srv/shop/data:/d:rw", "scratch:/s:rw", "/tmp/x:/x:rw"]
'''


@suite.test
def test_plan_lists_what_docker_run_mounts(h):
    """docker.run's volumes among its targets: a read-only mount is a read,
    a read-write one of a protected volume or path is refused, and the run
    refuses it before its first step (no container engine is asked)."""
    rb = h.write('mounts.yaml', MOUNTS)
    env = {'DOCKER_HOST': f'unix://{h.tmp}/no-docker.sock'}
    p = h.engine('plan', rb, env=env)
    h.check(p.returncode == 3, p.stdout + p.stderr)
    h.check(targets(p.stdout, 'look') == [
        'target command    ls /v  [pass]',
        'target volumes    shop_pgdata (volume, mounted read-only at /v)  [pass]',
        'target volumes    /srv/shop/conf (path, mounted read-only at /c)  [pass]'], p.stdout)
    h.check(targets(p.stdout, 'wipe')[1:] == [
        'target volumes    shop_pgdata (volume, mounted read-write at /v)  [REFUSED]',
        'target volumes    /srv/shop/data (path, mounted read-write at /d)  [REFUSED]',
        'target volumes    scratch (volume, mounted read-write at /s)  [pass]',
        'target volumes    /tmp/x (path, mounted read-write at /x)  [pass]'], p.stdout)
    h.check("volume 'shop_pgdata' is protected by guards.protected_volumes" in p.stdout, p.stdout)
    r = h.engine('run', rb, '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r.json', env=env)
    h.check(r.returncode == 3, r.stdout + r.stderr)
    h.check(not (run_dir(h) / 'first').exists(), 'the first step ran')
    rep = h.report(h.tmp / 'r.json')
    h.check(rep['refused_before_start'] == ['wipe'], rep.get('refused_before_start'))
    # validate: the literal mounts every run would refuse, at their place
    v = h.engine('validate', rb)
    h.check(v.returncode == 3, v.stdout + v.stderr)
    h.check(v.stderr.count("mounts.yaml:20:16: error: step 'wipe'") == 2, v.stderr)


DOWN = '''version: 1
name: down
steps:
  - id: down
    uses: shell
    with:
      command: docker compose down -v
'''

OWN = '''version: 1
name: own
params:
  db: {default: shop}
guards:
  protected_databases: [shop, "${params.db}_eu"]
  forbidden_commands: ["make reset-db"]
steps:
  - id: a
    uses: shell
    with: {command: "cd app && make reset-db"}
  - id: b
    uses: postgres.drop_database
    with: {url: "postgresql://127.0.0.1:9/postgres", database: shop}
  - id: c
    uses: shell
    with: {command: "dropdb -h db shop"}
  - id: later
    if: params.db == "x"
    uses: shell
    with: {command: "dropdb shop"}
  - id: params
    uses: shell
    with: {command: "dropdb ${params.db}_eu; dropdb $DB; pg_dump -d shop -f x.sql"}
'''


@suite.test
def test_validate_reports_static_guard_violations(h):
    """Decidable without parameters or environment: built-in and the
    runbook's own forbidden commands in literal command lines, literal
    protected targets used destructively, a `require` the order cannot
    guarantee; each at FILE:LINE:COL, exit 3. What depends on parameters or
    the environment is left to plan and run."""
    v = h.engine('validate', h.write('down.yaml', DOWN))
    h.check(v.returncode == 3, v.stdout + v.stderr)
    h.check("down.yaml:7:16: error: step 'down' is refused by the guards in every run: "
            "the command contains forbidden 'docker compose down -v' (built-in rule)" in v.stderr,
            v.stderr)
    h.check('down.yaml: refused by the guards (1 violation): every run would exit 3' in v.stdout,
            v.stdout)
    rb = h.write('own.yaml', OWN)
    v = h.engine('validate', rb, env={'DB': 'shop', 'PGDATABASE': 'shop'})
    h.check(v.returncode == 3, v.stdout + v.stderr)
    for pos, what in (('11:21', "forbidden 'make reset-db' (guards.forbidden_commands)"),
                      ('14:64', "database 'shop' is protected"),
                      ('17:21', "database 'shop' is protected")):
        h.check(f'own.yaml:{pos}: error: step' in v.stderr and what in v.stderr, pos + v.stderr)
    h.check("own.yaml:21:21: warning: step 'later' is refused by the guards whenever its "
            "condition lets it run" in v.stderr, v.stderr)
    h.check("step 'params'" not in v.stderr, v.stderr)
    h.check('3 violations' in v.stdout, v.stdout)
    # a `require` the order of the steps cannot guarantee
    v = h.engine('validate', h.fixture('guards/require-static.yaml'))
    h.check(v.returncode == 3 and 'guards.require' in v.stderr, v.stderr)
    # an invalid file outweighs a refused one; the shipped runbooks are fine
    bad = h.write('bad.yaml', 'version: 1\nname: bad\nsteps:\n  - {id: x, uses: nope}\n')
    v = h.engine('validate', rb, bad)
    h.check(v.returncode == 2, v.stdout + v.stderr)
    v = h.engine('validate', *sorted((ROOT / 'runbooks').glob('*.yaml')))
    h.check(v.returncode == 0, v.stdout + v.stderr)


if __name__ == '__main__':
    suite.main()
