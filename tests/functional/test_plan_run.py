"""Plan = run, as a property: for every shipped runbook (runbooks/*.yaml),
every runbook fixture under tests/ and variations generated from them (the
protected lists set to include the literal targets each names, forbidden
command lines inserted, a forbidden command behind a condition), the
refusals `engine plan` shows as decided now are exactly the steps the run
refuses before its first step, with no main step run (`finally` runs, as
after any refusal); and a step plan showed
with every value known and allowed is not refused by the run for a reason
plan could have known (only ownership, `checks` and a `require` whose step
did not end ok are decided when a step is reached).

The runs are real (`engine run`), made to fail before any side effect:
servers on closed ports (PostgreSQL, AWS, Docker's socket), and stand-ins
for the tools a command could reach (psql, dropdb, pg_dump, docker, npx,
prisma, ...) that record being called. Every main step gets
`continue_on_error: true` so that the run reaches each one."""
import concurrent.futures
import copy
import hashlib
import json
import os
import pathlib
import re
import shutil
import subprocess
import time

import yaml

from harness import ROOT, Suite, engine_bin

suite = Suite(__file__)


class Loader(yaml.SafeLoader):
    """YAML as the engine reads it: only true/false are booleans, dates stay
    strings."""


Loader.yaml_implicit_resolvers = {
    k: [r for r in v if r[0] not in ('tag:yaml.org,2002:bool', 'tag:yaml.org,2002:timestamp')]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
Loader.add_implicit_resolver('tag:yaml.org,2002:bool',
                             re.compile(r'^(?:true|True|TRUE|false|False|FALSE)$'), list('tTfF'))

STAND_INS = ('psql', 'dropdb', 'createdb', 'pg_dump', 'pg_dumpall', 'pg_restore', 'pg_ctl',
             'initdb', 'postgres', 'vacuumdb', 'reindexdb', 'docker', 'docker-compose', 'podman',
             'npx', 'prisma', 'kubectl', 'aws', 'curl')
LISTS = {'database': 'protected_databases', 'volume': 'protected_volumes',
         'container': 'protected_volumes', 'bucket': 'protected_buckets',
         'instance': 'protected_instances', 'snapshot': 'protected_instances',
         'path': 'protected_paths', 'mount': None}
# what only a step being reached can decide
RUN_TIME_RULES = {'ownership', 'checks', 'require'}
CLOSED = '127.0.0.1:9'


def recorder_env(base):
    """The environment of every plan and run: no server answers, the tools a
    command could reach are stand-ins that record being called."""
    bin_dir = base / 'bin'
    if not bin_dir.exists():
        bin_dir.mkdir(parents=True)
        for t in STAND_INS:
            p = bin_dir / t
            p.write_text('#!/bin/sh\necho "${ENGINE_STEP:-?} $(basename "$0") $*" >> "$CALL_LOG"\n'
                         'exit 1\n')
            p.chmod(0o755)
        (bin_dir / 'sleep').write_text('#!/bin/sh\nexit 0\n')  # no fixture waits here
        (bin_dir / 'sleep').chmod(0o755)
        (base / 'home').mkdir()
    drop = ('DATABASE_URL', 'SLACK_WEBHOOK_URL', 'SLACK_BOT_TOKEN', 'SLACK_TOKEN',
            'PAGERDUTY_ROUTING_KEY', 'AWS_PROFILE', 'ENGINE_STATE_DIR', 'PGDATABASE',
            'PGUSER', 'PGPASSWORD', 'ENGINE_TEST_PG', 'ENGINE_AUDIT_KEY')
    e = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith('AWS_')}
    e.update({'PATH': f'{bin_dir}:{os.environ["PATH"]}', 'HOME': str(base / 'home'),
              'NO_COLOR': '1', 'DOCKER_HOST': f'unix://{base}/no-docker.sock',
              'AWS_ENDPOINT_URL': f'http://{CLOSED}', 'AWS_ACCESS_KEY_ID': 'AKIDPLANRUN',
              'AWS_SECRET_ACCESS_KEY': 'plan-run-secret', 'AWS_REGION': 'us-east-1',
              'PGHOST': '127.0.0.1', 'PGPORT': '9', 'PGCONNECT_TIMEOUT': '2',
              'SLACK_API_URL': f'http://{CLOSED}', 'PAGERDUTY_EVENTS_URL': f'http://{CLOSED}',
              'TEST_TOKEN': 'plan-run-token'})
    return e


def test_plugins():
    """The test plugins built next to the engine (fixtures use testgood)."""
    d = pathlib.Path(engine_bin()).resolve().parent.parent / 'tests' / 'plugins'
    return ['--plugin-path', d] if d.is_dir() else []


def engine(args, env, cwd, timeout=120):
    args = list(args[:1]) + test_plugins() + list(args[1:])
    try:
        return subprocess.run([engine_bin(), *[str(a) for a in args]], cwd=str(cwd), env=env,
                              text=True, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, -1, e.stdout or '', 'timed out')


# ---- the corpus ---------------------------------------------------------------------------


def corpus():
    """Every runbook shipped and under tests/ (distinct contents)."""
    files = sorted(ROOT.glob('runbooks/*.yaml')) + sorted((ROOT / 'tests').rglob('*.yaml'))
    seen, out = set(), []
    for f in files:
        if 'fleet' in f.parts or 'k8s' in f.parts:
            continue
        text = f.read_text()
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in seen:
            continue
        try:
            doc = yaml.load(text, Loader=Loader)
        except yaml.YAMLError:
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get('steps'), list):
            continue
        seen.add(digest)
        out.append((f, doc))
    return out


def param_candidates(name, spec):
    """Values to try for a required parameter without a default."""
    t = (spec or {}).get('type') if isinstance(spec, dict) else None
    if t == 'int':
        return ['1']
    if t == 'bool':
        return ['false']
    if t == 'duration':
        return ['1s']
    n = name.lower()
    pg = f'postgresql://postgres@{CLOSED}/planrun'
    s3 = 's3://planrun-bucket/backups/x.dump'
    if 'url' in n:
        return [pg, s3, f'http://{CLOSED}/x']
    if n in ('backups', 'src') or 'bucket' in n:
        return [s3, '/tmp/planrun-missing/x.dump', pg]
    if n in ('file', 'backup_file', 'out'):
        return ['/tmp/planrun-missing/x.dump', s3]
    if n in ('dir', 'marker'):
        return ['/tmp/planrun-missing/d']
    if n == 'base':
        return [f'http://{CLOSED}']
    if n == 'cmd':
        return ['echo planrun']
    if 'instance' in n or n in ('source', 'copy', 'snapshot'):
        return ['planrun-db-1']
    if 'volume' in n:
        return ['planrun_vol']
    return ['planrun_x', pg, s3]


def required_params(doc):
    out = []
    for name, spec in (doc.get('params') or {}).items():
        if isinstance(spec, dict) and spec.get('required') and 'default' not in spec:
            out.append((name, param_candidates(name, spec)))
    return out


# ---- what plan says -------------------------------------------------------------------------

HEADER = re.compile(r'^  (\S+)\s+(\S+)\s+(read_only|creates|destructive|disruptive|external)\b(.*)$')
TARGET = re.compile(r'^      target (\S+)\s+(.*)  \[([^\]]*)\]$')
FOUND = re.compile(r'^        .+? -> (\w+) (.+?): \w+ \(')
REQUIRE = re.compile(r'^      guard require: .*\[REFUSED\]$')


def refused_now(decision):
    return decision == 'REFUSED' or decision.startswith('REFUSED:')


def parse_plan(out):
    steps, cur = {}, None
    for line in out.splitlines():
        m = HEADER.match(line)
        if m:
            rest = m.group(4)
            cond = ('unselected' if '(not selected)' in rest else
                    'false' if 'condition is false' in rest else
                    'later' if 'runs if its condition holds' in rest else 'now')
            cur = steps[m.group(1)] = {'uses': m.group(2), 'cond': cond, 'targets': [],
                                      'found': [], 'require': False}
            continue
        if cur is None:
            continue
        m = TARGET.match(line)
        if m:
            cur['targets'].append((m.group(1), m.group(2), m.group(3)))
            continue
        m = FOUND.match(line)
        if m:
            cur['found'].append((m.group(1), m.group(2)))
            continue
        if REQUIRE.match(line):
            cur['require'] = True
    for st in steps.values():
        st['refused_now'] = st['cond'] in ('now', 'later') and (
            st['require'] or (st['cond'] == 'now' and
                              any(refused_now(d) for _, _, d in st['targets'])))
        # every value known now and allowed
        st['known_pass'] = st['cond'] in ('now', 'later') and not st['require'] and all(
            d in ('pass', 'file') for _, _, d in st['targets'])
    return steps


# ---- variations ----------------------------------------------------------------------------

KINDS = {}


def target_kinds(uses, env, cwd):
    """(param -> target kind) of an action, as `engine plugins` declares it;
    docker.run's volumes are mounts whatever the engine under test says."""
    if uses not in KINDS:
        r = engine(['plugins', uses], env, cwd, timeout=60)
        kinds = {}
        for line in r.stdout.splitlines():
            m = re.match(r'^\s+(\S+)\s+\S+\s+.*\btarget=(\w+)', line)
            if m:
                kinds[m.group(1)] = m.group(2)
        if uses == 'docker.run':
            kinds['volumes'] = 'mount'
        KINDS[uses] = kinds
    return KINDS[uses]


def plain(v):
    return bool(v) and not any(c in v for c in '*?[]{}$\n') and v != '(at run time)'


def mount_target(spec):
    src = spec.split(':', 1)[0]
    return ('path' if src.startswith('/') else 'volume'), src


def literal_targets(doc, plan, env, cwd):
    """(kind, value) of every target known at plan time: literal values in
    the runbook, what plan resolved, what it read in command lines."""
    found = []
    steps = (doc.get('steps') or []) + (doc.get('finally') or [])
    for s in steps:
        if not isinstance(s, dict) or not isinstance(s.get('uses'), str):
            continue
        kinds = target_kinds(s['uses'], env, cwd)
        w = s.get('with') if isinstance(s.get('with'), dict) else {}
        for p, kind in kinds.items():
            v = w.get(p)
            if kind == 'mount' and isinstance(v, list):
                found += [mount_target(x) for x in v if isinstance(x, str) and plain(x)]
            elif isinstance(v, str) and plain(v) and kind in LISTS:
                found.append((kind, v))
    for st in plan.values():
        kinds = target_kinds(st['uses'], env, cwd)
        for p, value, d in st['targets']:
            kind = kinds.get(p)
            value = value.split(' (')[0] if kind == 'mount' else value
            if kind == 'mount':
                kind = 'path' if value.startswith('/') else 'volume'
            if kind in LISTS and d not in ('resolved at run time',) and plain(value):
                found.append((kind, value))
        for kind, value in st['found']:
            if kind in LISTS and plain(value):
                found.append((kind, value))
    out = []
    for t in found:
        if t not in out and LISTS.get(t[0]):
            out.append(t)
    return out


def reach_every_step(doc):
    """Every main step reached whatever the one before did, and none waits:
    no retries, a short timeout (neither changes what the guards decide)."""
    d = copy.deepcopy(doc)
    if isinstance(d.get('defaults'), dict):
        d['defaults'] = {k: v for k, v in d['defaults'].items() if k != 'retry'}
        d['defaults']['timeout'] = '1s'
    for i, s in enumerate((d.get('steps') or []) + (d.get('finally') or [])):
        if isinstance(s, dict):
            s.pop('retry', None)
            s['timeout'] = '1s'
            if i < len(d.get('steps') or []):
                s['continue_on_error'] = True
    return d


def with_guard(doc, lst, values):
    d = copy.deepcopy(doc)
    g = d.setdefault('guards', {}) or {}
    d['guards'] = g
    g[lst] = list(g.get(lst) or []) + list(values)
    return d


def step_ids(doc):
    return [s.get('id') for s in (doc.get('steps') or []) if isinstance(s, dict)]


def with_step(doc, step, where='after-first', finally_step=None):
    d = copy.deepcopy(doc)
    ids = step_ids(d)
    st = dict(step)
    if where == 'after-first' and ids:
        st['needs'] = [ids[0]]
        d['steps'].insert(1, st)
    else:
        if ids:
            st['needs'] = [ids[-1]]
        d['steps'].append(st)
    if finally_step:
        d['finally'] = list(d.get('finally') or []) + [finally_step]
    return d


def variations(doc, plan, env, cwd):
    base = reach_every_step(doc)
    yield 'as written', base
    targets = literal_targets(doc, plan, env, cwd)
    if targets:
        by_list = {}
        for kind, value in targets:
            by_list.setdefault(LISTS[kind], []).append(value)
        d = base
        for lst, values in by_list.items():
            d = with_guard(d, lst, values)
        yield 'every literal target protected', d
        for kind, value in targets[:2]:
            yield f'{LISTS[kind]} += {value}', with_guard(base, LISTS[kind], [value])
    # one refused now after the first step; the same behind a condition
    # false now (not held to the guards) and one known only then ("REFUSED
    # if it runs": not a refusal before the run)
    d = with_step(base, {'id': 'planrun-down', 'uses': 'shell',
                         'with': {'command': 'cd /srv/app && docker compose down -v'}})
    d = with_step(d, {'id': 'planrun-off', 'if': '${false}', 'uses': 'shell',
                      'with': {'command': 'docker compose down -v'}}, where='last')
    yield 'forbidden commands after the first step and behind conditions', with_step(
        d, {'id': 'planrun-onfail', 'if': 'failure()', 'uses': 'shell',
            'with': {'command': 'prisma migrate dev'}}, where='last')
    yield 'forbidden commands last and in finally', with_step(
        base, {'id': 'planrun-reset', 'uses': 'shell',
               'with': {'command': 'npx prisma migrate reset --force'}}, where='last',
        finally_step={'id': 'planrun-fin-down', 'uses': 'shell',
                      'with': {'command': ['docker-compose', 'down', '--volumes']}})
    commands = [v for st in plan.values() for p, v, d in st['targets']
                if p == 'command' and d in ('pass',) and plain(v) and len(v) < 200]
    if commands:
        yield 'a command it runs made forbidden', with_guard(base, 'forbidden_commands',
                                                             [commands[0]])


# ---- one variation: plan, then run, then compare ---------------------------------------------


def check_variation(name, doc, where, sets, env, n):
    d = where / f'v{n}'
    d.mkdir()
    rb = where / f'planrun-{n}.yaml'
    rb.write_text(yaml.safe_dump(doc, sort_keys=False, width=1 << 20, allow_unicode=True))
    e = dict(env, CALL_LOG=str(d / 'calls.log'))
    args = [a for k, v in sets for a in ('--set', f'{k}={v}')]
    p = engine(['plan', rb, *args, '--state-dir', d / 'plan-state'], e, where)
    if p.returncode not in (0, 3):
        return [f'{name}: plan exited {p.returncode}: {p.stderr.strip()[:300]}']
    plan = parse_plan(p.stdout)
    t0 = time.time()
    r = engine(['run', rb, *args, '--state-dir', d / 'state', '--report', d / 'r.json'], e, where)
    if time.time() - t0 > 4:
        print(f'     slow: {name}: {time.time() - t0:.0f}s', flush=True)
    problems = []
    planned = {sid for sid, st in plan.items() if st['refused_now']}
    if (p.returncode == 3) != bool(planned):
        problems.append(f'plan exited {p.returncode} with refusals {sorted(planned)}')
    if not (d / 'r.json').exists():
        return [f'{name}: the run wrote no report (exit {r.returncode}): {r.stderr[-300:]}']
    rep = json.loads((d / 'r.json').read_text())
    steps = rep['steps']
    refused = {sid for sid, s in steps.items() if s['status'] == 'refused'}
    main = {sid for sid, s in steps.items() if not s.get('finally')}
    ran = {sid for sid in main if steps[sid]['status'] not in ('refused', 'skipped', 'pending')}
    log = (d / 'calls.log').read_text() if (d / 'calls.log').exists() else ''
    recorded = [line for line in log.splitlines() if line.split(' ', 1)[0] in main]
    if planned:
        if r.returncode != 3:
            problems.append(f'plan refused {sorted(planned)}, the run exited {r.returncode}')
        if refused != planned:
            problems.append(f'plan refused {sorted(planned)} before the run, the run '
                            f'refused {sorted(refused)}')
        if ran:
            problems.append(f'plan refused {sorted(planned)}, yet the run ran {sorted(ran)}')
        if recorded:
            problems.append(f'plan refused {sorted(planned)}, yet the run called {recorded!r}')
    for sid in sorted(refused - planned):
        st = plan.get(sid)
        if not st or not st['known_pass']:
            continue  # decided when reached: its values were not all known
        rules = {g.get('rule') for g in rep.get('guards', [])
                 if g.get('step') == sid and g.get('decision') == 'refuse'}
        if rules - RUN_TIME_RULES:
            problems.append(f"plan showed step '{sid}' [pass] with every value known, the "
                            f"run refused it ({', '.join(sorted(rules))}): "
                            f"{steps[sid].get('error', '')[:200]}")
    return [f'{name}: {x}' for x in problems]


def resolve_params(f, doc, where, env):
    """--set values for the required parameters: the first that plans."""
    sets = []
    rb = where / 'params-probe.yaml'
    rb.write_text(yaml.safe_dump(doc, sort_keys=False, width=1 << 20))
    for name, cands in required_params(doc):
        for c in cands:
            args = [a for k, v in sets + [(name, c)] for a in ('--set', f'{k}={v}')]
            p = engine(['plan', rb, *args], env, where, timeout=60)
            if p.returncode != 2 or f"'{name}'" not in p.stderr + p.stdout:
                sets.append((name, c))
                break
        else:
            sets.append((name, cands[0]))
    return sets


def check_runbook(f, doc, base, env, index):
    """Every variation of one runbook, in a copy of its directory (relative
    files resolve as they would)."""
    where = base / f'rb{index}'
    shutil.copytree(f.parent, where, ignore=shutil.ignore_patterns('*.so', 'state*', 'build*'),
                    symlinks=True)
    sets = resolve_params(f, doc, where, env)
    p = engine(['plan', where / f.name, *[a for k, v in sets for a in ('--set', f'{k}={v}')]],
               env, where, timeout=60)
    if p.returncode not in (0, 3):
        return f, 0, []  # an invalid fixture (on purpose): nothing to compare
    plan = parse_plan(p.stdout)
    problems, n = [], 0
    for name, d in variations(doc, plan, env, where):
        shown = f.relative_to(ROOT) if f.is_relative_to(ROOT) else f.name
        problems += check_variation(f'{shown} [{name}]', d, where, sets, env, n)
        n += 1
    return f, n, problems


# Cases plan and run once disagreed on (issue 25), among the corpus.
SEEDS = {
    # plan did not list the volumes docker.run mounts: [pass], the run refused
    'seed-docker-rw-mount.yaml': '''version: 1
name: seed-docker-rw-mount
guards:
  protected_volumes: [planrun_pgdata]
steps:
  - id: look
    uses: shell
    with: {command: "echo looking"}
  - id: wipe
    needs: [look]
    uses: docker.run
    with: {image: busybox, command: "rm -rf /v/base", volumes: ["planrun_pgdata:/v:rw"]}
''',
    # only the first of several refusals known before the run was made then
    'seed-two-refusals.yaml': '''version: 1
name: seed-two-refusals
params:
  db: {default: planrun_prod}
guards:
  protected_databases: ["${params.db}"]
steps:
  - id: first
    uses: shell
    with: {command: "echo first"}
  - id: drop
    needs: [first]
    uses: shell
    with: {command: "dropdb ${params.db}"}
  - id: down
    needs: [drop]
    uses: shell
    with: {command: "docker compose down -v"}
''',
    # a protected instance known before the run, refused after a read ran
    'seed-rds-restore.yaml': '''version: 1
name: seed-rds-restore
params:
  source: {default: planrun-ledger}
  copy: {default: planrun-ledger}
guards:
  protected_instances: ["${params.source}"]
steps:
  - id: pick
    uses: provider.snapshots
    with: {driver: rds, instance: "${params.source}"}
  - id: restore
    uses: provider.restore
    with:
      driver: rds
      instance: ${params.copy}
      snapshot_id: ${steps.pick.outputs.picked.snapshot_id}
''',
}


@suite.test
def test_plan_refusals_equal_run_refusals(h):
    base = h.tmp
    env = recorder_env(base / 'env')
    seeds = base / 'seeds'
    seeds.mkdir()
    cases = corpus()
    for name, text in SEEDS.items():
        (seeds / name).write_text(text)
        cases.append((seeds / name, yaml.load(text, Loader=Loader)))
    h.check(len(cases) >= 40, f'only {len(cases)} runbooks found')
    problems, checked, variants = [], [], 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        futs = [pool.submit(check_runbook, f, doc, base, env, i)
                for i, (f, doc) in enumerate(cases)]
        for fut in futs:
            f, n, p = fut.result()
            problems += p
            variants += n
            if n:
                checked.append(f)
    shipped = [f for f in checked if f.parent == ROOT / 'runbooks']
    print(f'     {len(checked)} runbooks ({len(shipped)} shipped), {variants} variations')
    h.check(len(shipped) == len(list((ROOT / 'runbooks').glob('*.yaml'))),
            f'a shipped runbook was not checked: {shipped}')
    h.check(all(any(f.name == s for f in checked) for s in SEEDS), 'a seed was not checked')
    if os.environ.get('PLAN_RUN_PROBLEMS'):  # all of them, for a person to read
        pathlib.Path(os.environ['PLAN_RUN_PROBLEMS']).write_text('\n'.join(problems) + '\n')
    h.check(not problems, f'{len(problems)} disagreements:\n' + '\n'.join(problems[:40]))


if __name__ == '__main__':
    suite.main()
