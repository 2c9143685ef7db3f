"""Guards that see through shell: command lines of psql, pg_restore, dropdb,
docker/podman and rm are held to the protected lists, against a real
PostgreSQL and real Podman volumes. A refused command never runs: the
protected database keeps its rows, the volume stays."""
import glob
import json
import os
import pathlib
import shutil
import subprocess
import tempfile

from harness import Suite
from podman import Podman

suite = Suite(__file__)

ROWS = 250


def protected_db(h, stem):
    name = f'{stem}_{os.getpid()}'
    h.pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    h.pg.psql(f'CREATE DATABASE "{name}"')
    h.pg.psql('CREATE TABLE "User" (id int primary key, email text); '
              f'INSERT INTO "User" SELECT g, \'u\' || g FROM generate_series(1, {ROWS}) g',
              db=name)
    return name


def rows(h, db):
    return int(h.pg.psql('SELECT count(*) FROM "User"', db=db).strip())


def pg_env(h):
    return {'PGHOST': '127.0.0.1', 'PGPORT': str(h.pg.port), 'PGUSER': 'postgres'}


def runbook(h, name, guards, command, extra=''):
    return h.write(name, 'version: 1\nname: shellguards\nguards:\n' + guards +
                   'steps:\n  - id: cmd\n    uses: shell\n    with:\n      command: ' +
                   json.dumps(command) + '\n' + extra)


def audit_of(h, state):
    runs = glob.glob(str(h.tmp / state / 'runs' / '*' / 'audit.jsonl'))
    return [json.loads(l) for l in pathlib.Path(runs[0]).read_text().splitlines()]


@suite.test
def test_refused_commands_leave_the_database_untouched(h):
    db = protected_db(h, 'skymoney')
    dump = h.tmp / 'x.dump'
    subprocess.run([f'{h.pg.bindir}/pg_dump', '-Fc', '-h', '127.0.0.1', '-p',
                    str(h.pg.port), '-U', 'postgres', '-d', db, '-f', str(dump)], check=True)
    url = h.pg.url(db)
    refused = [
        (f'pg_restore --clean --if-exists -d {db} {dump}', 'pg_restore'),
        (f'psql -d {db} -c \'TRUNCATE "User" CASCADE\'', 'psql'),
        (f'psql "{url}" -c \'DELETE FROM "User"\'', 'psql'),
        (f'dropdb {db}', 'dropdb'),
        (f'psql -d postgres -c \'DROP DATABASE "{db}"\'', 'psql'),
        (f'sh -c "psql -d {db} -c \'UPDATE \\"User\\" SET email = NULL\'"', 'psql'),
        (f'PGDATABASE={db} psql -c \'DELETE FROM "User"\'', 'psql'),
        (f'psql -d {db} -f /dev/null', 'psql'),
        (f'echo "TRUNCATE \\"User\\"" | psql -d {db}', 'psql'),
    ]
    guards = f'  protected_databases: ["{db}"]\n'
    for i, (cmd, tool) in enumerate(refused):
        rb = runbook(h, f'r{i}.yaml', guards, cmd)
        state = f's{i}'
        r = h.engine('run', rb, '--state-dir', h.tmp / state, '--allow-destructive',
                     env=pg_env(h))
        h.check(r.returncode == 3, f'{cmd}: exit {r.returncode}\n{r.stdout}{r.stderr}')
        out = r.stdout + r.stderr
        h.check(f"'{db}' is protected" in out and tool in out, f'{cmd}: {out}')
        refusal = [a for a in audit_of(h, state) if a.get('type') == 'guard.refuse']
        h.check(refusal and refusal[0].get('evidence', '').startswith(tool), f'{cmd}: {refusal}')
        # plan refuses the same, before anything runs
        r = h.engine('plan', rb, env=pg_env(h))
        h.check(r.returncode == 3 and 'REFUSED' in r.stdout and f'database {db}' in r.stdout,
                f'plan {cmd}: {r.stdout}')
        h.check(db in h.pg.databases() and rows(h, db) == ROWS, f'{cmd} touched {db}')


@suite.test
def test_conditions_decide_when_a_command_is_refused(h):
    """A forbidden command in a step whose condition is false does not stop
    the run; one whose condition is known only later is refused when it is
    reached (exit 3), after the steps before it ran, and `finally` runs."""
    db = protected_db(h, 'skycond')
    guards = f'  protected_databases: ["{db}"]\n'
    drop = f'dropdb {db}'
    rb = h.write('cond.yaml', 'version: 1\nname: cond\nparams:\n'
                 '  wipe: {type: bool, default: false}\n'
                 'guards:\n' + guards + 'steps:\n'
                 f'  - id: before\n    uses: shell\n    with: {{command: "touch {h.tmp}/before"}}\n'
                 f'  - id: wipe\n    uses: shell\n    if: params.wipe\n    with: {{command: "{drop}"}}\n'
                 f'  - id: later\n    uses: shell\n    if: steps.before.status == "ok"\n'
                 f'    with: {{command: "{drop}"}}\n'
                 f'  - id: after\n    uses: shell\n    needs: [later]\n'
                 f'    with: {{command: "touch {h.tmp}/after"}}\n'
                 f'finally:\n  - id: tidy\n    uses: shell\n    with: {{command: "touch {h.tmp}/tidy"}}\n')
    r = h.engine('plan', rb, env=pg_env(h))
    h.check(r.returncode == 0, r.stdout + r.stderr)
    lines = r.stdout.splitlines()
    wipe = next(i for i, l in enumerate(lines) if l.strip().startswith('wipe '))
    later = next(i for i, l in enumerate(lines) if l.strip().startswith('later '))
    h.check('condition is false' in lines[wipe] and '[not run]' in lines[wipe + 1], r.stdout)
    h.check('[REFUSED if it runs]' in r.stdout[r.stdout.index(lines[later]):], r.stdout)
    h.check('refused if they run' in lines[-1], lines[-1])
    r = h.engine('run', rb, '--state-dir', h.tmp / 's1', '--report', h.tmp / 'r.json',
                 env=pg_env(h))
    h.check(r.returncode == 3, r.stdout + r.stderr)
    rep = h.report(h.tmp / 'r.json')
    st = {k: v['status'] for k, v in rep['steps'].items()}
    h.check(st == {'before': 'ok', 'wipe': 'skipped', 'later': 'refused', 'after': 'skipped',
                   'tidy': 'ok'}, st)
    h.check("'" + db + "' is protected" in rep['steps']['later']['error'], rep['steps']['later'])
    h.check((h.tmp / 'before').exists() and (h.tmp / 'tidy').exists()
            and not (h.tmp / 'after').exists(), 'steps ran out of order')
    h.check(db in h.pg.databases() and rows(h, db) == ROWS, 'the database was touched')
    # when the condition is true at the start, nothing runs at all
    r = h.engine('run', rb, '--state-dir', h.tmp / 's2', '--set', 'wipe=true', env=pg_env(h))
    h.check(r.returncode == 3, r.stdout + r.stderr)
    h.check(db in h.pg.databases() and rows(h, db) == ROWS, 'the database was touched')
    # a boolean written as on is refused with the spelling meant (1/0 and
    # yes/no are booleans on the command line)
    r = h.engine('run', rb, '--state-dir', h.tmp / 's3', '--set', 'wipe=on', env=pg_env(h))
    h.check(r.returncode == 2 and '(write true)' in r.stdout + r.stderr, r.stdout + r.stderr)


@suite.test
def test_reads_of_a_protected_database_still_work(h):
    db = protected_db(h, 'skyread')
    guards = f'  protected_databases: ["{db}"]\n'
    out = h.tmp / 'backup.dump'
    rb = runbook(h, 'dump.yaml', guards, f'pg_dump -Fc -d {db} -f {out}')
    r = h.engine('run', rb, '--state-dir', h.tmp / 's1', env=pg_env(h))
    h.check(r.returncode == 0 and out.stat().st_size > 0, r.stdout + r.stderr)
    rb = runbook(h, 'count.yaml', guards,
                 f'psql -X -At -d {db} -c \'SELECT count(*) FROM "User"\' > {h.tmp}/count.txt')
    r = h.engine('run', rb, '--state-dir', h.tmp / 's2', env=pg_env(h))
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check((h.tmp / 'count.txt').read_text().strip() == str(ROWS), 'the read-only query ran')
    audit = audit_of(h, 's2')
    h.check(any(a.get('type') == 'guard.pass' and a.get('message') == 'read-only use'
                for a in audit), 'the read is recorded')


@suite.test
def test_ownership_of_databases_in_shell(h):
    """A destructive command on a database the run created needs no flag; on
    any other one it needs --allow-destructive, like the postgres actions."""
    other = protected_db(h, 'skyother')
    drill = f'drill_shell_{os.getpid()}'
    h.pg.psql(f'DROP DATABASE IF EXISTS "{drill}" WITH (FORCE)')
    rb = h.write('own.yaml', f'''version: 1
name: own
steps:
  - id: create
    uses: postgres.create_database
    with: {{url: "{h.pg.url('postgres')}", database: {drill}}}
  - id: fill
    uses: shell
    with: {{command: "psql -d {drill} -c 'CREATE TABLE t (x int); INSERT INTO t VALUES (1)'"}}
finally:
  - id: drop
    uses: postgres.drop_database
    with: {{url: "{h.pg.url('postgres')}", database: {drill}, if_exists: true}}
''')
    r = h.engine('run', rb, '--state-dir', h.tmp / 'o1', env=pg_env(h))
    h.check(r.returncode == 0, r.stdout + r.stderr)
    rb = runbook(h, 'other.yaml', '  protected_databases: []\n',
                 f'psql -d {other} -c \'DELETE FROM "User" WHERE id = 1\'')
    r = h.engine('run', rb, '--state-dir', h.tmp / 'o2', env=pg_env(h))
    h.check(r.returncode == 3 and 'which this run did not create' in r.stdout + r.stderr,
            r.stdout + r.stderr)
    h.check(rows(h, other) == ROWS, 'refused, so nothing was deleted')
    r = h.engine('run', rb, '--state-dir', h.tmp / 'o3', '--allow-destructive', env=pg_env(h))
    h.check(r.returncode == 0 and rows(h, other) == ROWS - 1, r.stdout + r.stderr)


@suite.test
def test_plan_shows_what_was_understood_and_unverified(h):
    rb = runbook(h, 'p.yaml', '  protected_databases: [prod]\n',
                 'echo $(date) && pg_dump -d prod -f /tmp/x.dump')
    r = h.engine('plan', rb)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check('pg_dump -> database prod: read' in r.stdout, r.stdout)
    h.check('unverified: command substitution' in r.stdout, r.stdout)
    rb = runbook(h, 'u.yaml', '  unverified_commands: refuse\n', 'echo $(date)')
    r = h.engine('run', rb, '--state-dir', h.tmp / 'u1')
    h.check(r.returncode == 3 and 'guards.unverified_commands' in r.stdout + r.stderr,
            r.stdout + r.stderr)
    rb = runbook(h, 'bad.yaml', '  unverified_commands: sometimes\n', 'true')
    r = h.engine('validate', rb)
    h.check(r.returncode == 2 and "'allow'" in r.stderr and ':4:24:' in r.stderr, r.stderr)


@suite.test
def test_protected_paths(h):
    data = h.tmp / 'pgdata'
    (data / 'base').mkdir(parents=True)
    (data / 'PG_VERSION').write_text('15\n')
    guards = f'  protected_paths: ["{data}"]\n'
    for i, cmd in enumerate([f'rm -rf {data}', f'rm -rf {data}/base',
                             f'cd {h.tmp} && rm -rf pgdata', f'mv {data} /tmp/gone-{os.getpid()}',
                             f'chown -R nobody {data}', f'rm -rf {h.tmp}']):
        rb = runbook(h, f'p{i}.yaml', guards, cmd)
        r = h.engine('run', rb, '--state-dir', h.tmp / f'st{i}')
        h.check(r.returncode == 3 and 'guards.protected_paths' in r.stdout + r.stderr,
                f'{cmd}: {r.stdout}{r.stderr}')
        h.check((data / 'PG_VERSION').exists(), f'{cmd} ran')
    rb = runbook(h, 'ok.yaml', guards, f'rm -rf {h.tmp}/elsewhere && ls {data}')
    r = h.engine('run', rb, '--state-dir', h.tmp / 'stok')
    h.check(r.returncode == 0, r.stdout + r.stderr)


@suite.test
def test_protected_volumes_against_podman(h):
    pm = Podman()
    vol = f'skymoney_pgdata_{os.getpid()}'
    pm.run('volume', 'rm', '-f', vol, check=False)
    pm.run('volume', 'create', vol)
    try:
        pm.run('run', '--rm', '--network', 'host', '-v', f'{vol}:/d', pm.image, 'sh', '-c',
               'echo data > /d/PG_VERSION')
        guards = f'  protected_volumes: ["{vol}"]\n'
        env = {'CONTAINERS_CONF': pm.env['CONTAINERS_CONF']}
        for i, cmd in enumerate([f'podman volume rm {vol}', f'podman volume rm -f {vol}',
                                 f'podman run --rm --network host -v {vol}:/d {pm.image} rm -f /d/PG_VERSION',
                                 'podman volume prune -f',
                                 f'podman run --rm --network host --mount type=volume,source={vol},target=/d {pm.image} true']):
            rb = runbook(h, f'v{i}.yaml', guards, cmd)
            r = h.engine('run', rb, '--state-dir', h.tmp / f'v{i}', env=env)
            h.check(r.returncode == 3 and 'protected_volumes' in r.stdout + r.stderr,
                    f'{cmd}: {r.stdout}{r.stderr}')
            h.check(pm.run('volume', 'exists', vol, check=False).returncode == 0, f'{cmd} removed it')
        # a read-only mount is a read: it runs, and the data is there
        rb = runbook(h, 'ro.yaml', guards,
                     f'podman run --rm --network host -v {vol}:/d:ro {pm.image} cat /d/PG_VERSION > {h.tmp}/seen.txt')
        r = h.engine('run', rb, '--state-dir', h.tmp / 'vro', env=env)
        h.check(r.returncode == 0, r.stdout + r.stderr)
        h.check((h.tmp / 'seen.txt').read_text().strip() == 'data', 'the volume kept its data')
    finally:
        pm.run('volume', 'rm', '-f', vol, check=False)
        pm.stop()


PIPED = 'echo bnB4IHByaXNtYSBtaWdyYXRlIHJlc2V0IC0tZm9yY2U= | base64 -d | sh'


def stand_in_npx(h):
    """An npx on PATH that only records being called; (env, marker)."""
    bindir = h.tmp / 'bin'
    bindir.mkdir(exist_ok=True)
    marker = h.tmp / 'npx-called'
    npx = bindir / 'npx'
    npx.write_text(f'#!/bin/sh\necho "$@" >> "{marker}"\n')
    npx.chmod(0o755)
    return {'PATH': f'{bindir}:{os.environ["PATH"]}'}, marker


@suite.test
def test_hidden_commands_are_refused_before_they_run(h):
    """A command hidden behind a variable set earlier on the line, or a
    program piped into a shell, is refused (exit 3) with
    unverified_commands: refuse, and the stand-in npx is never called; plan
    refuses the same. Without refuse, plan lists the piped program as
    unverified; the variable's value is known, so its forbidden command is
    refused either way. The benign twin runs."""
    env, marker = stand_in_npx(h)
    refuse = '  unverified_commands: refuse\n'
    for i, (cmd, says) in enumerate([
            ('X=reset; npx prisma migrate $X --force', "forbidden 'prisma migrate reset'"),
            (PIPED, 'a shell reads its program from standard input')]):
        rb = runbook(h, f'hidden{i}.yaml', refuse, cmd)
        r = h.engine('run', rb, '--state-dir', h.tmp / f'hidden{i}', env=env)
        out = r.stdout + r.stderr
        h.check(r.returncode == 3 and says in out, f'{cmd}: exit {r.returncode}\n{out}')
        h.check(not marker.exists(), f'{cmd}: npx ran: {marker.read_text() if marker.exists() else ""}')
        r = h.engine('plan', rb, env=env)
        h.check(r.returncode == 3 and 'REFUSED' in r.stdout, f'plan {cmd}: {r.stdout}{r.stderr}')
    rb = runbook(h, 'listed.yaml', '  protected_databases: []\n', PIPED)
    r = h.engine('plan', rb, env=env)
    h.check(r.returncode == 0 and 'unverified: a shell reads its program from standard input'
            in r.stdout, r.stdout + r.stderr)
    rb = runbook(h, 'known.yaml', '  protected_databases: []\n',
                 'X=reset; npx prisma migrate $X --force')
    r = h.engine('plan', rb, env=env)
    h.check(r.returncode == 3 and "forbidden 'prisma migrate reset'" in r.stdout + r.stderr,
            r.stdout + r.stderr)
    rb = runbook(h, 'twin.yaml', refuse, 'X=status; npx prisma migrate $X')
    r = h.engine('run', rb, '--state-dir', h.tmp / 'twin', env=env)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(marker.read_text() == 'prisma migrate status\n', marker.read_text())


@suite.test
def test_a_comment_is_not_a_command(h):
    """Words in a shell comment do not trip the forbidden rules: the script
    runs by default (unverified, listed by plan), and is refused only as
    unverified when the guards ask for that."""
    script = h.tmp / 'scripts' / 'reset.sh'
    script.parent.mkdir()
    ran = h.tmp / 'script-ran'
    script.write_text(f'touch "{ran}"\n')
    cmd = f'sh {script}   # runs prisma migrate reset'
    rb = runbook(h, 'comment.yaml', '  protected_databases: []\n', cmd)
    r = h.engine('plan', rb)
    h.check(r.returncode == 0 and 'unverified: a shell script runs' in r.stdout,
            r.stdout + r.stderr)
    r = h.engine('run', rb, '--state-dir', h.tmp / 'c1')
    h.check(r.returncode == 0 and ran.exists(), r.stdout + r.stderr)
    ran.unlink()
    rb = runbook(h, 'comment2.yaml', '  unverified_commands: refuse\n', cmd)
    r = h.engine('run', rb, '--state-dir', h.tmp / 'c2')
    out = r.stdout + r.stderr
    h.check(r.returncode == 3 and 'guards.unverified_commands' in out and 'forbidden' not in out,
            out)
    h.check(not ran.exists(), 'the refused script ran')


@suite.test
def test_plugin_command_from_step_outputs_is_guarded_before_it_starts(h):
    """prisma.deploy's `cli` built from a step's outputs is known only when
    the step starts: it is held to the forbidden commands then, before the
    action connects or spawns anything."""
    ran = h.tmp / 'cli-ran'
    rb = h.write('cli.yaml', f'''version: 1
name: cli
guards:
  forbidden_commands: ["prisma migrate reset"]
steps:
  - id: pick
    uses: lua
    with:
      script: 'return {{argv = {{"sh", "-c", "touch {ran}; prisma migrate reset --force"}}}}'
  - id: deploy
    uses: prisma.deploy
    with:
      url: {h.pg.url('postgres')}
      mode: cli
      cli: ${{steps.pick.outputs.argv}}
''')
    rep = h.tmp / 'cli.json'
    r = h.engine('run', rb, '--state-dir', h.tmp / 'st', '--report', rep)
    out = r.stdout + r.stderr
    h.check(r.returncode == 3 and 'prisma migrate reset' in out, out)
    d = h.report(rep)['steps']['deploy']
    h.check(d['status'] == 'refused' and 'forbidden' in d['error'], d)
    h.check(not ran.exists(), 'the refused command ran')


if __name__ == '__main__':
    suite.main()
