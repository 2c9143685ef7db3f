"""`engine fleet render`: Kubernetes manifests from an inventory. Every
document is checked against the Kubernetes API's own schemas (v1.31, made
strict by tests/k8s/make_schemas.py: unknown fields fail), no cluster
needed."""
import json
import os
import re

import jsonschema
import yaml

from harness import Suite, ROOT

suite = Suite(__file__)

EXAMPLE = ROOT / 'deploy' / 'kubernetes' / 'inventory.yaml'
RENDERED = ROOT / 'deploy' / 'kubernetes' / 'rendered.yaml'
SCHEMAS = ROOT / 'tests' / 'k8s' / 'schemas'
KIND_SCHEMA = {('batch/v1', 'CronJob'): 'cronjob-batch-v1.json',
               ('batch/v1', 'Job'): 'job-batch-v1.json',
               ('v1', 'ConfigMap'): 'configmap-v1.json',
               ('v1', 'Secret'): 'secret-v1.json'}
_validators = {}


def validator(api_version, kind):
    key = (api_version, kind)
    if key not in _validators:
        schema = json.loads((SCHEMAS / KIND_SCHEMA[key]).read_text())
        jsonschema.Draft7Validator.check_schema(schema)
        _validators[key] = jsonschema.Draft7Validator(schema)
    return _validators[key]


def errors(doc, kind=None):
    v = validator(*(kind or (doc['apiVersion'], doc['kind'])))
    return [f'{"/".join(map(str, e.path))}: {e.message}' for e in v.iter_errors(doc)]


def load_docs(text):
    return [d for d in yaml.safe_load_all(text) if d is not None]


def render(h, inventory, *args, env=None):
    return h.engine('fleet', 'render', inventory, *args, env=env)


def cronjobs(docs):
    return {d['metadata']['name']: d for d in docs if d['kind'] == 'CronJob'}


def pod_spec(cj):
    return cj['spec']['jobTemplate']['spec']['template']['spec']


def container(cj):
    return pod_spec(cj)['containers'][0]


def arg(c, flag):
    a = c['args']
    return a[a.index(flag) + 1]


def inventory(dbs, defaults='  state: s3://engine-state/fleet\n'):
    return f'databases:\n{dbs}defaults:\n{defaults}'


DB = ('  - name: ledger\n'
      '    url_secret: ledger-db\n'
      '    schedule: "0 3 * * *"\n'
      '    runbook: restore-drill.yaml\n')


@suite.test
def test_example_renders_and_every_document_validates(h):
    r = render(h, EXAMPLE)
    h.check(r.returncode == 0, r.stderr)
    docs = load_docs(r.stdout)
    kinds = sorted((d['kind'], d['metadata']['name']) for d in docs)
    h.check(kinds == [('ConfigMap', 'engine-billing-runbook'), ('ConfigMap', 'engine-orders-runbook'),
                      ('CronJob', 'engine-billing'),
                      ('CronJob', 'engine-ledger'), ('CronJob', 'engine-orders')], kinds)
    for d in docs:
        h.check(errors(d) == [], f'{d["kind"]} {d["metadata"]["name"]}: {errors(d)}')
        h.check(d['metadata']['namespace'] == 'db-drills', d['metadata'])
        h.check(d['metadata']['labels']['app.kubernetes.io/name'] == 'engine', d['metadata'])
    # the job template is a valid Job on its own too
    for name, cj in cronjobs(docs).items():
        job = {'apiVersion': 'batch/v1', 'kind': 'Job',
               'metadata': {'name': name + '-manual'}, 'spec': cj['spec']['jobTemplate']['spec']}
        h.check(errors(job) == [], f'{name} as a Job: {errors(job)}')
    # the ConfigMap holds the runbook file byte for byte, mounted where the
    # container's `run` argument looks for it
    cm = next(d for d in docs if d['metadata']['name'] == 'engine-billing-runbook')
    text = (ROOT / 'runbooks' / 'restore-from-s3.yaml').read_text()
    h.check(cm['data'] == {'restore-from-s3.yaml': text}, list(cm['data']))
    billing = cronjobs(docs)['engine-billing']
    c = container(billing)
    h.check(c['args'][:2] == ['run', '/runbooks/restore-from-s3.yaml'], c['args'])
    mount = next(m for m in c['volumeMounts'] if m['mountPath'] == '/runbooks')
    vol = next(v for v in pod_spec(billing)['volumes'] if v['name'] == mount['name'])
    h.check(vol['configMap']['name'] == cm['metadata']['name'], vol)
    ledger = container(cronjobs(docs)['engine-ledger'])
    h.check(ledger['args'][1] == '/usr/share/engine/runbooks/restore-drill.yaml', ledger['args'])


@suite.test
def test_schemas_reject_unknown_fields_and_wrong_types(h):
    """The schemas are strict: without this a misspelt field would pass
    every check above and be dropped (or refused) by the API server."""
    docs = load_docs(render(h, EXAMPLE).stdout)
    cj = cronjobs(docs)['engine-ledger']
    cm = next(d for d in docs if d['metadata']['name'] == 'engine-billing-runbook')
    cases = []
    bad = json.loads(json.dumps(cj))
    bad['spec']['concurrencyPolicyy'] = 'Forbid'
    cases.append((bad, 'concurrencyPolicyy'))
    bad = json.loads(json.dumps(cj))
    pod_spec(bad)['restartPolicyy'] = 'Never'
    cases.append((bad, 'restartPolicyy'))
    bad = json.loads(json.dumps(cj))
    container(bad)['env'][0]['valueFrom']['secretKeyRef']['keyy'] = 'x'
    cases.append((bad, 'keyy'))
    bad = json.loads(json.dumps(cj))
    bad['spec']['jobTemplate']['spec']['backoffLimit'] = 'two'
    cases.append((bad, "'two' is not of type 'integer'"))
    bad = json.loads(json.dumps(cj))
    bad['apiVersion'] = 'batch/v1beta1'
    h.check(any("'batch/v1' was expected" in e for e in errors(bad, ('batch/v1', 'CronJob'))),
            errors(bad, ('batch/v1', 'CronJob')))
    bad = json.loads(json.dumps(cm))
    bad['dataa'] = bad.pop('data')
    cases.append((bad, 'dataa'))
    secret = {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 'x'},
              'stringData': {'DATABASE_URL': 'postgresql://x'}}
    h.check(errors(secret) == [], errors(secret))
    secret['stringDataa'] = secret.pop('stringData')
    cases.append((secret, 'stringDataa'))
    for doc, what in cases:
        errs = errors(doc)
        h.check(any(what in e for e in errs), f'{what}: {errs}')


@suite.test
def test_committed_example_is_current(h):
    r = render(h, EXAMPLE)
    h.check(r.returncode == 0, r.stderr)
    if RENDERED.read_text() != r.stdout:
        import difflib
        diff = ''.join(list(difflib.unified_diff(
            RENDERED.read_text().splitlines(True), r.stdout.splitlines(True),
            'deploy/kubernetes/rendered.yaml', 'engine fleet render'))[:40])
        h.check(False, 'deploy/kubernetes/rendered.yaml is out of date: run `engine fleet render '
                'deploy/kubernetes/inventory.yaml > deploy/kubernetes/rendered.yaml`\n' + diff)
    # every committed example Secret is valid and holds only example values
    for d in load_docs((ROOT / 'deploy' / 'kubernetes' / 'secrets.example.yaml').read_text()):
        h.check(d['kind'] == 'Secret' and errors(d) == [], errors(d))
        for v in d['stringData'].values():
            h.check('REPLACE' in v or v == 'eu-central-1', f'a real-looking value in: {d["metadata"]["name"]}')


@suite.test
def test_schedules_sharing_a_slot_are_spread(h):
    docs = load_docs(render(h, EXAMPLE).stdout)
    s = {n: cj['spec']['schedule'] for n, cj in cronjobs(docs).items()}
    h.check(s == {'engine-ledger': '0 3 * * *', 'engine-orders': '10 3 * * *',
                  'engine-billing': '30 4 * * 0'}, s)

    def schedules(text, spread=None):
        d = '  state: s3://engine-state/fleet\n' + (f'  spread: {spread}\n' if spread is not None else '')
        body = ''.join(f'  - {{name: db{i}, url_secret: s{i}, schedule: "{c}", runbook: '
                       f'restore-drill.yaml}}\n' for i, c in enumerate(text))
        r = render(h, h.write('inv.yaml', inventory(body, d)))
        h.check(r.returncode == 0, r.stderr)
        js = cronjobs(load_docs(r.stdout))
        return [js[f'engine-db{i}']['spec']['schedule'] for i in range(len(text))], r.stderr

    # carried into the hour, and past midnight when the days are '*'
    got, err = schedules(['45 23 * * *'] * 3 + ['0 3 * * *'], spread=15)
    h.check(got == ['45 23 * * *', '0 0 * * *', '15 0 * * *', '0 3 * * *'], got)
    h.check("database 'db1' shares schedule '45 23 * * *' with 'db0': it runs at '0 0 * * *'"
            in err, err)
    # default spread 10; an hourly schedule wraps within the hour
    got, _ = schedules(['55 * * * *'] * 2)
    h.check(got == ['55 * * * *', '5 * * * *'], got)
    # a minute that is not a plain number, or a carry into another weekday:
    # left as written, and said so
    got, err = schedules(['*/15 * * * *'] * 2 + ['50 23 * * 1'] * 2)
    h.check(got == ['*/15 * * * *'] * 2 + ['50 23 * * 1'] * 2, got)
    h.check(re.search(r"inv\.yaml:\d+:\d+: warning: database 'db1' shares schedule "
                      r"'\*/15 \* \* \* \*' with 'db0' and keeps it: its minute field", err), err)
    h.check("warning: database 'db3'" in err and 'past midnight' in err, err)
    got, _ = schedules(['0 3 * * *'] * 2, spread=0)
    h.check(got == ['0 3 * * *'] * 2, got)


@suite.test
def test_failure_policy_grace_and_security(h):
    docs = load_docs(render(h, EXAMPLE).stdout)
    for name, cj in cronjobs(docs).items():
        spec = cj['spec']
        h.check(spec['concurrencyPolicy'] == 'Forbid', spec)
        h.check(spec['timeZone'] == 'Europe/Berlin' and spec['startingDeadlineSeconds'] > 0, spec)
        job = spec['jobTemplate']['spec']
        rules = job['podFailurePolicy']['rules']
        c = container(cj)
        fail = [r for r in rules if r['action'] == 'FailJob']
        h.check(len(fail) == 1 and fail[0]['onExitCodes'] == {
            'containerName': c['name'], 'operator': 'In', 'values': [1, 2, 3, 4, 6]}, rules)
        h.check({'action': 'Ignore', 'onPodConditions': [
            {'type': 'DisruptionTarget', 'status': 'True'}]} in rules, rules)
        pod = pod_spec(cj)
        h.check(pod['restartPolicy'] == 'Never', pod)
        grace = arg(c, '--grace')  # billing's own, the others' the default
        want = 40 if name == 'engine-billing' else 25
        h.check(grace == f'{want}s' and pod['terminationGracePeriodSeconds'] == want + 15, pod)
        h.check(job['activeDeadlineSeconds'] > 25, job)
        # each database's own lock, unless it names one (billing)
        lock = 'billing-restore' if name == 'engine-billing' else name[len('engine-'):]
        h.check(arg(c, '--lock') == lock, c['args'])
        h.check(arg(c, '--state-dir') == 's3://engine-state/fleet', c['args'])
        env = {e['name']: e for e in c['env']}
        h.check(env['DATABASE_URL']['valueFrom']['secretKeyRef'] == {
            'name': name[len('engine-'):] + '-db', 'key': 'DATABASE_URL'}, env)
        h.check(env['SLACK_WEBHOOK_URL']['valueFrom']['secretKeyRef']['optional'] is True, env)
        h.check(env['ENGINE_STATE_DIR']['value'] == 's3://engine-state/fleet', env)
        h.check(c['envFrom'] == [{'secretRef': {'name': 'engine-aws'}}], c)
        h.check(pod['securityContext']['runAsNonRoot'] is True and
                pod['securityContext']['runAsUser'] == 10001, pod)
        sc = c['securityContext']
        h.check(sc['readOnlyRootFilesystem'] is True and sc['allowPrivilegeEscalation'] is False, sc)
        scratch = next(v['name'] for v in pod['volumes'] if 'emptyDir' in v)
        h.check({'name': scratch, 'mountPath': '/tmp'} in c['volumeMounts'], c['volumeMounts'])
    c = container(cronjobs(docs)['engine-orders'])
    h.check(c['args'][-3:] == ['--allow-destructive', '-p', 'older_than_days=30'], c['args'])
    env = {e['name']: e for e in c['env']}
    h.check(env['ORDERS_MAINT_URL']['valueFrom'] == {'secretKeyRef': {'name': 'orders-maint', 'key': 'url'}},
            env['ORDERS_MAINT_URL'])
    # a longer grace moves the pod's termination grace with it
    f = h.write('inv.yaml', inventory(DB, '  state: s3://engine-state/x\n  grace: 90s\n'
                                          '  backoff_limit: 0\n  active_deadline: 1h\n'))
    cj = cronjobs(load_docs(render(h, f).stdout))['engine-ledger']
    h.check(arg(container(cj), '--grace') == '90s', container(cj)['args'])
    h.check(pod_spec(cj)['terminationGracePeriodSeconds'] == 105, pod_spec(cj))
    h.check(cj['spec']['jobTemplate']['spec']['backoffLimit'] == 0, cj['spec'])
    h.check(cj['spec']['jobTemplate']['spec']['activeDeadlineSeconds'] == 3600, cj['spec'])
    h.check('namespace' not in cj['metadata'], cj['metadata'])


@suite.test
def test_out_dir_writes_one_file_per_database(h):
    out = h.tmp / 'manifests'
    r = render(h, EXAMPLE, '--out', out)
    h.check(r.returncode == 0 and r.stdout == '', r.stdout + r.stderr)
    h.check(sorted(p.name for p in out.iterdir()) == ['billing.yaml', 'ledger.yaml', 'orders.yaml'],
            list(out.iterdir()))
    everything = []
    for p in sorted(out.iterdir()):
        docs = load_docs(p.read_text())
        names = {d['metadata']['labels']['app.kubernetes.io/instance'] for d in docs}
        h.check(names == {p.stem}, f'{p.name}: {names}')
        everything += docs
    whole = load_docs(render(h, EXAMPLE).stdout)
    key = lambda d: (d['kind'], d['metadata']['name'])  # noqa: E731
    h.check(sorted(everything, key=key) == sorted(whole, key=key), 'files differ from stdout')
    billing = load_docs((out / 'billing.yaml').read_text())
    h.check([d['kind'] for d in billing] == ['ConfigMap', 'CronJob'], billing)


def expect_error(h, text, line, pattern, name='inv.yaml', files=None):
    for fname, body in (files or {}).items():
        h.write(fname, body)
    f = h.write(name, text)
    r = render(h, f)
    h.check(r.returncode == 2, f'exit {r.returncode} for {pattern}: {r.stderr}')
    h.check(r.stdout == '', f'output written for an invalid inventory: {r.stdout[:200]}')
    m = re.search(rf'{re.escape(name)}:(\d+):(\d+): error: (.*)', r.stderr)
    h.check(m, f'no file:line:col error for {pattern}: {r.stderr}')
    errs = re.findall(rf'{re.escape(name)}:(\d+):\d+: error: (.*)', r.stderr)
    h.check(any(int(ln) == line and re.search(pattern, msg) for ln, msg in errs),
            f'expected line {line} /{pattern}/, got {r.stderr}')
    return r.stderr


@suite.test
def test_every_bad_inventory_exits_2_with_position_and_fix(h):
    S = '  state: s3://engine-state/fleet\n'
    cases = [
        ('- ledger\n', 1, r'an inventory is a mapping'),
        ('databases: [\n', 2, r'invalid YAML'),
        ('databases: []\ndefaults:\n' + S, 1, r"'databases' must be a list with at least one"),
        ('databses:\n' + DB + 'defaults:\n' + S, 1, r"unknown key 'databses'.*did you mean 'databases'"),
        (inventory(DB.replace('    url_secret: ledger-db\n', '')), 2, r"'url_secret' is missing"),
        (inventory(DB.replace('schedule:', 'schedul:')), 4, r"unknown key 'schedul'.*did you mean 'schedule'"),
        (inventory(DB, S + '  graec: 30s\n'), 8, r"unknown key 'graec'.*did you mean 'grace'"),
        (inventory(DB.replace('ledger\n', 'Ledger_DB\n', 1)), 2, r"database name 'Ledger_DB' must be lower-case"),
        (inventory(DB.replace('ledger\n', 'l' * 41 + '\n', 1)), 2, r'at most 40 characters'),
        (inventory(DB + DB), 6, r"database name 'ledger' is used twice \(first at line 2\)"),
        (inventory(DB.replace('0 3 * * *', '0 3 * *')), 4, r'fewer than 5 fields.*minute hour'),
        (inventory(DB.replace('0 3 * * *', '60 3 * * *')), 4, r"minute field '60' has a value outside 0-59"),
        (inventory(DB.replace('0 3 * * *', '0 24 * * *')), 4, r"hour field '24' has a value outside 0-23"),
        (inventory(DB.replace('0 3 * * *', '0 3 0 * *')), 4, r"day of month field '0'.*1-31"),
        (inventory(DB.replace('0 3 * * *', '0 3 * 13 *')), 4, r"month field '13'"),
        (inventory(DB.replace('0 3 * * *', '5-1 3 * * *')), 4, r'range that ends before it starts'),
        (inventory(DB.replace('0 3 * * *', '0 3 * * mon-frix')), 4, r"day of week field 'mon-frix' is not a cron field"),
        (inventory(DB.replace('0 3 * * *', 'TZ=UTC 0 3 * * *')), 4, r'set defaults.time_zone'),
        (inventory(DB + '    params: { restore_db: [a, b] }\n'), 6, r"parameter 'restore_db' must be a single value"),
        (inventory(DB + '    params: [restore_db]\n'), 6, r"'params' must be a mapping"),
        (inventory(DB + '    params: { source_url: "postgresql://u:pw@db/x" }\n'), 6,
         r'URL with a password: never put credentials'),
        (inventory(DB, '  state: /var/lib/engine\n'), 7, r"'state' must be an s3://bucket/prefix URL"),
        (inventory(DB, '  state: s3://Engine_State/x\n'), 7, r"bucket name with characters"),
        (inventory(DB, '  state: s3://ab/x\n'), 7, r'names no bucket'),
        (inventory(DB, '  time_zone: UTC\n'), 7, r"'state' is missing"),
        ('databases:\n' + DB, 1, r"no 'defaults.state'"),
        (inventory(DB, S + '  time_zone: "Europe/Berlin "\n'), 8, r"'time_zone' must be a tz database name"),
        (inventory(DB, S + '  namespace: DB_Drills\n'), 8, r"'namespace' must be a Kubernetes namespace"),
        (inventory(DB, S + '  grace: soon\n'), 8, r"'grace' needs a duration"),
        (inventory(DB, S + '  grace: 10m\n  active_deadline: 5m\n'), 9, r"'active_deadline' must be longer than 'grace'"),
        (inventory(DB, S + '  spread: 60\n'), 8, r"'spread' needs a whole number from 0 to 59"),
        (inventory(DB.replace('ledger-db', 'Ledger DB')), 3, r"'url_secret' must name a Kubernetes Secret"),
        (inventory(DB.replace('restore-drill.yaml', 'restore-dril.yaml')), 5,
         r"runbook 'restore-dril.yaml' is neither a file.*did you mean 'restore-drill.yaml'"),
        (inventory(DB.replace('restore-drill.yaml', './missing.yaml')), 5, r'cannot read runbook .*missing.yaml'),
        (inventory(DB.replace('restore-drill.yaml', 'sub')), 5, r'cannot read runbook .*sub'),
    ]
    (h.tmp / 'sub').mkdir()
    for text, line, pattern in cases:
        expect_error(h, text, line, pattern)
    # a runbook file next to the inventory is checked as a runbook: its
    # YAML, its shape, and the params the inventory gives it
    local = DB.replace('restore-drill.yaml', 'drill.yaml')
    err = expect_error(h, inventory(local), 5, r'runbook .*drill.yaml is invalid',
                       files={'drill.yaml': 'version: 1\nname: x\nsteps: [\n'})
    h.check(re.search(r'drill\.yaml:\d+:\d+: error: invalid YAML', err), err)
    good = (ROOT / 'runbooks' / 'restore-drill.yaml').read_text()
    expect_error(h, inventory(local + '    params: { restore_dbb: x }\n'), 6,
                 r"has no parameter 'restore_dbb' \(did you mean 'restore_db'\?\)",
                 files={'drill.yaml': good})
    expect_error(h, inventory(local + '    params: { source_url: x }\n'), 6,
                 r"parameter 'source_url' is secret: .*DATABASE_URL")
    needs = good.replace('  key_table:\n', '  key_table:\n    required: true\n')
    needs = re.sub(r'(  key_table:\n    required: true\n(?:    #.*\n)*)    default: ""\n', r'\1', needs)
    expect_error(h, inventory(local), 2, r"needs parameter 'key_table': add params",
                 files={'drill.yaml': needs})
    # the same inventory with the runbook fixed renders
    h.write('drill.yaml', good)
    r = render(h, h.tmp / 'inv.yaml')
    h.check(r.returncode == 0, r.stderr)


@suite.test
def test_every_mistake_is_reported_in_one_pass(h):
    """Not in rounds (state and keys first, names once those are fixed,
    schedules after that): one render says everything wrong, each at its
    position, and the same inventory fixed renders."""
    text = ('databases:\n'
            '  - name: Ledger_DB\n'                 # 2: name
            '    url_secret: ledger-db\n'
            '    schedule: "0 3 30 2 *"\n'          # 4: never fires
            '    runbook: restore-drill.yaml\n'
            '    colour: red\n'                     # 6: unknown key
            '  - name: orders\n'                    # 7: url_secret missing
            '    schedule: "0 3 * 13 *"\n'          # 8: month 13
            '    runbook: restore-dril.yaml\n'      # 9: no such runbook
            '    params: { source_url: "postgresql://u:pw@db/x" }\n'  # 10
            '  - url_secret: x\n'                   # 11: name missing
            '    schedule: "0 3 * * *"\n'
            '    runbook: restore-drill.yaml\n'
            '  - name: orders\n'                    # 14: used twice
            '    url_secret: orders-db\n'
            '    schedule: "0 4 * * *"\n'
            '    runbook: restore-drill.yaml\n'
            'defaults:\n'
            '  time_zone: "Europe/Berlin "\n'       # 19: zone; state missing
            '  grace: 10m\n'
            '  active_deadline: 5m\n')              # 21: shorter than grace
    f = h.write('inv.yaml', text)
    r = render(h, f)
    h.check(r.returncode == 2 and r.stdout == '', r.stdout + r.stderr)
    errs = re.findall(r'inv\.yaml:(\d+):\d+: error: (.*)', r.stderr)
    want = [(2, r"database name 'Ledger_DB' must be lower-case"),
            (4, r"database 'Ledger_DB': schedule '0 3 30 2 \*' never fires"),
            (6, r"unknown key 'colour' in a database"),
            (7, r"database 'orders': 'url_secret' is missing"),
            (8, r"database 'orders': schedule .*month field '13'"),
            (9, r"runbook 'restore-dril.yaml' is neither a file.*did you mean 'restore-drill.yaml'"),
            (10, r'URL with a password: never put credentials'),
            (11, r"database '#3': 'name' is missing"),
            (14, r"database name 'orders' is used twice \(first at line 7\)"),
            (19, r"'state' is missing"),
            (19, r"'time_zone' must be a tz database name"),
            (21, r"'active_deadline' must be longer than 'grace'")]
    for line, pattern in want:
        h.check(any(int(ln) == line and re.search(pattern, msg) for ln, msg in errs),
                f'expected line {line} /{pattern}/ in one pass, got {r.stderr}')
    h.check(len(errs) == len(want), f'{len(errs)} errors: {r.stderr}')
    h.check(f'inv.yaml is invalid ({len(want)} errors)' in r.stderr, r.stderr)
    fixed = (text.replace('Ledger_DB', 'ledger').replace('0 3 30 2 *', '0 3 28 2 *')
             .replace('    colour: red\n', '').replace('  - name: orders\n    schedule',
                                                         '  - name: orders\n    url_secret: o\n    schedule')
             .replace('* 13 *', '* 12 *').replace('restore-dril.yaml', 'restore-drill.yaml')
             .replace('    params: { source_url: "postgresql://u:pw@db/x" }\n', '')
             .replace('  - url_secret: x\n', '  - name: third\n    url_secret: x\n')
             .replace('  - name: orders\n    url_secret: orders-db', '  - name: fourth\n    url_secret: orders-db')
             .replace('defaults:\n', 'defaults:\n  state: s3://engine-state/fleet\n')
             .replace('"Europe/Berlin "', 'Europe/Berlin').replace('active_deadline: 5m', 'active_deadline: 1h'))
    r = render(h, h.write('inv.yaml', fixed))
    h.check(r.returncode == 0, r.stderr)
    h.check(sorted(cronjobs(load_docs(r.stdout))) ==
            ['engine-fourth', 'engine-ledger', 'engine-orders', 'engine-third'], r.stdout[:300])


@suite.test
def test_schedules_that_never_fire_are_refused(h):
    """A day of month that no month named has: Kubernetes would accept the
    CronJob and the drill would never run."""
    cases = [('0 3 30 2 *', r"\(February has no 30th\); write a day from 1 to 28"),
             ('0 3 31 4,6,9,11 *',
              r"\(April, June, September and November have no 31st\); write a day from 1 to 30"),
             ('0 3 30,31 feb *', r'\(February has no 30th or 31st\)'),
             ('0 3 31 2,4 ?', r'\(February and April have no 31st\)')]
    out = h.tmp / 'out'
    for sched, why in cases:
        text = inventory(DB + DB.replace('ledger', 'orders').replace('0 3 * * *', sched))
        err = expect_error(h, text, 8, rf"database 'orders': schedule '{re.escape(sched)}' never fires {why}")
        h.check(re.search(r'inv\.yaml:8:15: error: ', err), f'column of the schedule: {err}')
        r = render(h, h.tmp / 'inv.yaml', '--out', out)
        h.check(r.returncode == 2 and not (out.exists() and any(out.iterdir())),
                f'{sched}: exit {r.returncode}, wrote {list(out.glob("*")) if out.exists() else []}')


def next_runs(zone, minutes, hours, days, months, weekdays, days_or, after, n=3):
    """The next n times after `after` (UTC) of a schedule given as its sets
    of values (weekdays 0 = Sunday), walked day by day in `zone`: the day
    fields OR-ed when days_or (both restricted), a local time the clock
    skips is no time. Each as render prints it."""
    import datetime as dt
    from zoneinfo import ZoneInfo
    z, utc = ZoneInfo(zone), dt.timezone.utc
    got, day = [], after.astimezone(z).date()
    while len(got) < n:
        wd = day.isoweekday() % 7
        fits = (day.day in days or wd in weekdays) if days_or else (day.day in days and wd in weekdays)
        for hh in sorted(hours) if day.month in months and fits else []:
            for mm in sorted(minutes):
                wall = dt.datetime(day.year, day.month, day.day, hh, mm)
                t = wall.replace(tzinfo=z).astimezone(utc)
                if t.astimezone(z).replace(tzinfo=None) == wall and t > after and len(got) < n:
                    got.append(t)
        day += dt.timedelta(days=1)
    return [t.strftime('%Y-%m-%d %H:%M UTC') +
            ('' if zone == 'UTC' else t.astimezone(z).strftime(' (%Y-%m-%d %H:%M %Z)')) for t in got]


@suite.test
def test_edge_schedules_are_accepted_and_their_next_runs_shown(h):
    """The 29th of February fires in leap years, the 31st in 31-day months,
    and a day of week is OR-ed with an impossible day of month (Kubernetes'
    cron, like Vixie cron): all accepted. The summary on standard error
    shows each CronJob's next three times, in UTC and, when the inventory
    sets one, in its time zone; the expected times are walked here day by
    day from the sets the schedules name."""
    import datetime as dt
    every = set(range(7))
    cases = {'UTC': [('0 3 29 2 *', {0}, {3}, {29}, {2}, every, False),
                     ('0 3 31 * *', {0}, {3}, {31}, set(range(1, 13)), every, False)],
             'America/New_York': [('0 3 30 2 1', {0}, {3}, {30}, {2}, {1}, True),
                                  ('45 6 1,15 * fri', {45}, {6}, {1, 15}, set(range(1, 13)), {5}, True),
                                  ('30 2 * 3 sun', {30}, {2}, set(range(1, 32)), {3}, {0}, False)]}
    for zone, scheds in cases.items():
        body = ''.join(f'  - {{name: db{i}, url_secret: s{i}, schedule: "{c[0]}", runbook: '
                       f'restore-drill.yaml}}\n' for i, c in enumerate(scheds))
        zone_line = '' if zone == 'UTC' else f'  time_zone: {zone}\n'
        f = h.write('inv.yaml', inventory(body, '  state: s3://engine-state/fleet\n' + zone_line))
        before = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
        r = render(h, f)
        after = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
        h.check(r.returncode == 0, f'{zone}: {r.stderr}')
        js = cronjobs(load_docs(r.stdout))
        for i, (sched, *sets) in enumerate(scheds):
            h.check(js[f'engine-db{i}']['spec']['schedule'] == sched, js[f'engine-db{i}']['spec'])
            line = next((ln for ln in r.stderr.splitlines() if ln.startswith(f'engine-db{i}: ')), '')
            want = {f"engine-db{i}: '{sched}' ({zone}) next runs " + ', '.join(next_runs(zone, *sets, t))
                    for t in (before, after)}
            h.check(line in want, f'{zone} {sched}:\n got  {line}\n want {want}')
            h.check(('(' in line.split('next runs', 1)[1]) == (zone != 'UTC'), line)


@suite.test
def test_no_secret_value_reaches_the_manifests(h):
    secrets = {'DATABASE_URL': 'postgresql://app:Sup3rS3cretPw@db.internal/ledger',
               'AWS_SECRET_ACCESS_KEY': 'wJalrXUtnFEMIK7MDENGbPxRfiCYzzSECRET',
               'AWS_ACCESS_KEY_ID': 'AKIAFLEETTESTKEY0001',
               'SLACK_WEBHOOK_URL': 'https://hooks.slack.test/services/T0/B0/fleetsecretxyz',
               'ENGINE_AUDIT_KEY': 'audit-key-fleet-secret-42'}
    out = h.tmp / 'out'
    for args in ((), ('--out', out)):
        r = render(h, EXAMPLE, *args, env=secrets)
        h.check(r.returncode == 0, r.stderr)
        texts = [r.stdout, r.stderr] + [p.read_text() for p in out.glob('*')]
        for name, value in secrets.items():
            for t in texts:
                h.check(value not in t and 'Sup3rS3cretPw' not in t, f'{name} leaked')
    # the connection string is referenced, never inlined
    docs = load_docs(render(h, EXAMPLE, env=secrets).stdout)
    for cj in cronjobs(docs).values():
        db_env = next(e for e in container(cj)['env'] if e['name'] == 'DATABASE_URL')
        h.check('value' not in db_env and 'secretKeyRef' in db_env['valueFrom'], db_env)


@suite.test
def test_values_survive_yaml_quoting(h):
    """Parameter values and runbook text that YAML would read as something
    else (booleans, numbers, comments, document markers, other scripts)
    come back as the same strings."""
    values = ['yes', 'no', 'on', 'NULL', '~', '0755', '1e3', '0x1F', '.inf', '-p', '- x',
              'a: b', '#hash', 'x #y', '"q"', "'s'", '{a}', '[b]', '&anchor', '*alias', '!tag',
              '%pct', '@at', '`tick`', 'é ü ß', '日本語', 'trailing ', ' leading', 'a\\b',
              '---', '...', '|', '>', '?', '', 'true', '12:30', '2026-01-01']
    params = ''.join(f'      p{i}: {json.dumps(v)}\n' for i, v in enumerate(values))
    body = ('version: 1\nname: quoting\n# ---\n# ...\n# a: b\n'
            'params:\n' + ''.join(f'  p{i}: {{default: ""}}\n' for i in range(len(values))) +
            'steps:\n  - id: s\n    uses: shell\n    with:\n      run: |\n'
            '        echo "é 日本 \\t"\n        printf "%s\\n" \'---\' \'...\'   \n\n\n')
    h.write('q.yaml', body)
    f = h.write('inv.yaml', inventory(DB.replace('restore-drill.yaml', 'q.yaml') +
                                      '    params:\n' + params))
    r = render(h, f)
    h.check(r.returncode == 0, r.stderr)
    docs = load_docs(r.stdout)
    c = container(cronjobs(docs)['engine-ledger'])
    got = [a for i, a in enumerate(c['args']) if i and c['args'][i - 1] == '-p']
    h.check(got == [f'p{i}={v}' for i, v in enumerate(values)], got)
    cm = next(d for d in docs if d['kind'] == 'ConfigMap')
    h.check(cm['data']['q.yaml'] == body, repr(cm['data']['q.yaml'][-80:]))
    for d in docs:
        h.check(errors(d) == [], errors(d))


@suite.test
def test_image_runbooks_are_the_shipped_ones(h):
    """The runbooks an inventory may name without a file are the ones this
    repository ships (and meson installs into the image)."""
    r = h.engine('fleet', 'render', '--help')
    h.check(r.returncode == 0, r.stderr)
    listed = re.findall(r'^  (\S+\.yaml)$', r.stdout, re.M)
    shipped = sorted(p.name for p in (ROOT / 'runbooks').glob('*.yaml'))
    h.check(sorted(listed) == shipped, f'{listed} != {shipped}')
    h.check("install_subdir('runbooks'" in (ROOT / 'meson.build').read_text(), 'runbooks not installed')
    r = h.engine('fleet', 'render')
    h.check(r.returncode == 2 and 'usage: engine fleet render' in r.stderr, r.stderr)
    r = h.engine('fleet', 'render', h.tmp / 'none.yaml')
    h.check(r.returncode == 2 and re.search(r'none\.yaml: error: cannot read the inventory', r.stderr),
            r.stderr)


PORTAL = ('version: 1\nname: portal-check\n'
          'params:\n'
          '  url:\n'
          '    env: PORTAL_URL\n'
          '    secret: true\n'
          '    required: true\n'
          'steps:\n'
          '  - id: ping\n'
          '    uses: postgres.ping\n'
          '    with: { url: "${params.url}" }\n')
S3DB = ('  - name: billing\n'
        '    url_secret: billing-db\n'
        '    schedule: "30 4 * * 0"\n'
        '    runbook: restore-from-s3.yaml\n'
        '    params: { backups: s3://b/billing/ }\n')
PORTAL_DB = ('  - name: portal\n'
             '    url_secret: portal-db\n'
             '    schedule: "0 5 * * *"\n'
             '    runbook: portal-check.yaml\n')


@suite.test
def test_what_a_pod_cannot_run_is_an_error_with_the_key_to_add(h):
    """A pod has no terminal and only the environment render gives it:
    each missing piece is refused at its line with the inventory key that
    gives it, all in one pass; the inventory with them renders."""
    files = {'portal-check.yaml': PORTAL}
    err = expect_error(h, inventory(S3DB + PORTAL_DB), 2,
                       r"database 'billing': runbook restore-from-s3.yaml "
                       r"\(.*restore-from-s3.yaml:\d+:\d+\) has step 'go-ahead' that waits for an "
                       r"approval.*add approve: \[go-ahead\]", files=files)
    h.check(re.search(r"inv\.yaml:7:5: error: database 'portal': runbook portal-check.yaml "
                      r"\(.*portal-check\.yaml:4:3\) needs secret parameter 'url' from the "
                      r"environment variable PORTAL_URL.*add env: \{ PORTAL_URL: \{ secret: NAME, "
                      r"key: KEY \} \}", err), err)
    cases = [
        (S3DB + '    approve: [go-ahed]\n', 7, r"'approve' names 'go-ahed'.*did you mean 'go-ahead'"),
        (S3DB + '    approve: go-ahead\n', 7, r"'approve' must be a list"),
        (DB + '    approve: [go-ahead]\n', 6, r"not an approve step of runbook restore-drill.yaml: it has none"),
        (PORTAL_DB + '    env: { PORTAL_URL: "postgresql://u:pw@db/portal" }\n', 6,
         r'PORTAL_URL holds a URL with a password: never put credentials'),
        (PORTAL_DB + '    env: { PORTAL_URL: "host=db dbname=portal" }\n', 6,
         r"PORTAL_URL is written in the inventory, and parameter 'url'.*is secret: take it from a Secret"),
        (PORTAL_DB + '    env: { SLACK_WEBHOOK_URL: "https://hooks.example.com/T0/B0/x" }\n', 6,
         r'SLACK_WEBHOOK_URL names a credential: never write its value'),
        (PORTAL_DB + '    env: { API_TOKEN: abc }\n', 6, r'API_TOKEN names a credential'),
        (PORTAL_DB + '    env: { PORTAL_URL: { secret: portal-db, kye: url } }\n', 6,
         r"unknown key 'kye'.*did you mean 'key'"),
        (PORTAL_DB + '    env: { PORTAL_URL: { key: url } }\n', 6, r'must be a value or \{ secret: NAME'),
        (PORTAL_DB + '    env: { DATABASE_URL: x }\n', 6, r"'DATABASE_URL' comes from the database's url_secret"),
        (PORTAL_DB + '    env: { 9LIVES: x }\n', 6, r"'9LIVES' is not an environment variable name"),
        (DB + '    allow_destructive: maybe\n', 6, r"'allow_destructive' is true or false"),
        (DB + '    lock: ".hidden"\n', 6, r"'lock' must be a lock name"),
        (DB + '    jobs: 0\n', 6, r"database 'ledger': 'jobs' needs a whole number from 1 to 64"),
        (DB + '    grace: 4h\n', 6, r"database 'ledger': 'grace' needs a duration from 1.0s to 1h00m"),
        (DB + '    resources: { limits: { memory: 64Mi } }\n', 6,
         r'memory limit 64Mi is below its request 128Mi.*raise resources.limits.memory'),
        (DB + '    resources: { requests: { cpu: 2 cores } }\n', 6, r"'cpu' needs a Kubernetes quantity"),
        (DB + '    resources: { request: {} }\n', 6, r"unknown key 'request'.*did you mean 'requests'"),
        (DB + '    scratch_size: lots\n', 6, r"'scratch_size' needs a Kubernetes quantity such as 512Mi"),
    ]
    for dbs, line, pattern in cases:
        expect_error(h, inventory(dbs), line, pattern, files=files)
    S = '  state: s3://engine-state/fleet\n'
    for extra, pattern in [('  image_pull_policy: Sometimes\n', r"'image_pull_policy' is IfNotPresent"),
                           ('  job_ttl: 5m\n', r"'job_ttl' needs a duration from 1h"),
                           ('  env: [A]\n', r"'env' must be a mapping"),
                           ('  jobs: 100\n', r"defaults: 'jobs' needs a whole number")]:
        expect_error(h, inventory(DB, S + extra), 8, pattern)
    # a required parameter without a default given neither way
    needs = PORTAL.replace('    secret: true\n', '')
    expect_error(h, inventory(PORTAL_DB), 2, r"needs parameter 'url': add params: \{ url: VALUE \}, "
                 r'or env: \{ PORTAL_URL', files={'portal-check.yaml': needs})
    # the inventory with every piece given renders and validates
    good = inventory(S3DB + '    approve: [go-ahead]\n    allow_destructive: true\n    jobs: 2\n'
                     '    lock: billing-restore\n    grace: 40s\n'
                     '    resources: { requests: { memory: 512Mi }, limits: { memory: 2Gi } }\n'
                     '    scratch_size: 50Gi\n'
                     + PORTAL_DB + '    env: { PORTAL_URL: { secret: portal-db, key: url }, MODE: fast }\n',
                     S + '  env: { PGCONNECT_TIMEOUT: "10", MODE: slow }\n  job_ttl: 2d\n'
                     '  image: registry.example.com/engine:0.1.0\n  image_pull_policy: Always\n')
    h.write('portal-check.yaml', PORTAL)
    r = render(h, h.write('inv.yaml', good))
    h.check(r.returncode == 0, r.stderr)
    h.check('warning' not in r.stderr, r.stderr)
    docs = load_docs(r.stdout)
    for d in docs:
        h.check(errors(d) == [], f'{d["metadata"]["name"]}: {errors(d)}')
    cj = cronjobs(docs)
    b = container(cj['engine-billing'])
    h.check(b['args'][2:] == ['--state-dir', 's3://engine-state/fleet', '--lock', 'billing-restore',
                              '--grace', '40s', '--jobs', '2', '--allow-destructive',
                              '--approve', 'go-ahead', '-p', 'backups=s3://b/billing/'], b['args'])
    h.check(b['resources'] == {'requests': {'cpu': '500m', 'memory': '512Mi'},
                               'limits': {'memory': '2Gi'}}, b['resources'])
    h.check(b['imagePullPolicy'] == 'Always', b)
    h.check(pod_spec(cj['engine-billing'])['terminationGracePeriodSeconds'] == 55)
    scratch = next(v for v in pod_spec(cj['engine-billing'])['volumes'] if v['name'] == 'scratch')
    h.check(scratch == {'name': 'scratch', 'emptyDir': {'sizeLimit': '50Gi'}}, scratch)
    p = container(cj['engine-portal'])
    env = {e['name']: e for e in p['env']}
    h.check(env['PORTAL_URL'] == {'name': 'PORTAL_URL', 'valueFrom': {'secretKeyRef': {
        'name': 'portal-db', 'key': 'url'}}}, env['PORTAL_URL'])
    h.check(env['MODE']['value'] == 'fast' and env['PGCONNECT_TIMEOUT']['value'] == '10', env)
    h.check([e['name'] for e in p['env']].count('MODE') == 1, p['env'])
    h.check('--approve' not in p['args'] and '--allow-destructive' not in p['args'], p['args'])
    for name, c in cj.items():
        h.check(c['spec']['jobTemplate']['spec']['ttlSecondsAfterFinished'] == 2 * 86400, name)


@suite.test
def test_one_database_found_by_its_label_and_image_warnings(h):
    """`kubectl get ... -l app.kubernetes.io/instance=NAME` finds exactly
    one database's objects; an image no cluster can pull is warned about."""
    docs = load_docs(render(h, EXAMPLE).stdout)
    for name in ('ledger', 'orders', 'billing'):
        found = sorted(d['metadata']['name'] for d in docs
                       if d['metadata']['labels'].get('app.kubernetes.io/instance') == name)
        want = sorted(n for n in (f'engine-{name}', f'engine-{name}-runbook')
                      if any(d['metadata']['name'] == n for d in docs))
        h.check(found == want, (name, found))
        cj = cronjobs(docs)[f'engine-{name}']
        pod_labels = cj['spec']['jobTemplate']['spec']['template']['metadata']['labels']
        h.check(pod_labels['app.kubernetes.io/instance'] == name, pod_labels)
    # the defaults: measured requests and limit, a bounded scratch space
    c = container(cronjobs(docs)['engine-ledger'])
    h.check(c['resources'] == {'requests': {'cpu': '500m', 'memory': '128Mi'},
                               'limits': {'memory': '512Mi'}}, c['resources'])
    for image, warned in [('localhost/engine:0.1.0', 'a local name'), ('registry.example.com/engine', 'no version'),
                          ('registry.example.com/engine:latest', 'no version'),
                          ('registry.example.com:5000/engine:0.1.0', None)]:
        f = h.write('inv.yaml', inventory(DB, f'  state: s3://engine-state/fleet\n  image: {image}\n'))
        r = render(h, f)
        h.check(r.returncode == 0, r.stderr)
        got = re.search(r'inv\.yaml:8:10: warning: defaults: image .*(a local name|no version)', r.stderr)
        h.check((got.group(1) if got else None) == warned, (image, r.stderr))


@suite.test
def test_check_plans_every_run_as_rendered(h):
    """--check runs `engine plan` of each database's run with its rendered
    arguments and environment: what the plan refuses fails the render,
    before anything is written."""
    r = render(h, EXAMPLE, '--check')
    h.check(r.returncode == 0, r.stderr)
    h.check(r.stdout == RENDERED.read_text(), 'the checked render differs from rendered.yaml')
    for name in ('ledger', 'orders', 'billing'):
        h.check(f"check: database '{name}': engine plan" in r.stderr, r.stderr)
    h.check(r.stderr.count('plan: nothing was run') == 3, r.stderr)
    # the secrets the pod would get are placeholders, never read
    h.check('fleet-check.invalid' in r.stderr, r.stderr)
    h.write('drop.yaml', 'version: 1\nname: drop-scratch\nparams:\n  db: { required: true }\n'
            'guards:\n  protected_databases: ["prod*"]\nsteps:\n  - id: drop\n'
            '    uses: postgres.drop_database\n    with: { database: "${params.db}", if_exists: true }\n')
    drop = DB.replace('restore-drill.yaml', 'drop.yaml') + '    allow_destructive: true\n'
    for dbs, code, why in [
            (drop + '    params: { db: prod_main }\n', 3,
             r"database 'prod_main' is protected by guards.protected_databases"),
            (DB + '    params: { jobs: many }\n', 2, r"parameter 'jobs' \(from --set\): expected an integer")]:
        f = h.write('inv.yaml', inventory(dbs))
        r = render(h, f)
        h.check(r.returncode == 0, f'{why}: the static check alone passes: {r.stderr}')
        r = render(h, f, '--check', '--out', h.tmp / 'out')
        h.check(r.returncode == 2 and r.stdout == '', (why, r.returncode, r.stderr))
        h.check(re.search(why, r.stderr), (why, r.stderr))
        h.check(f"database 'ledger': 'engine plan' of its run as rendered exits {code}" in r.stderr,
                r.stderr)
        h.check(not (h.tmp / 'out').exists(), 'written although the check failed')


if __name__ == '__main__':
    os.environ.setdefault('NO_COLOR', '1')
    suite.main()
