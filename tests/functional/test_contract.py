"""Plugin contract: every action of every built plugin, driven through
validation with good and bad parameters, from its own declaration
(`engine schema`)."""
import json

from harness import Suite, ROOT

suite = Suite(__file__)

SAMPLE = {'string': '"x"', 'integer': '1', 'number': '1.5', 'boolean': 'true',
          'array': '["a"]', 'object': '{}'}


def actions(h):
    r = h.engine('schema')
    h.check(r.returncode == 0, r.stderr)
    schema = json.loads(r.stdout)
    step = schema['$defs']['step']
    h.check(schema['properties']['steps']['items'] == {'$ref': '#/$defs/step'}, 'steps')
    out = {}
    for v in step['allOf']:
        name = v['if']['properties']['uses']['const']
        out[name] = v['then']['properties']['with']
    return out


def value_for(prop):
    if 'enum' in prop.get('else', {}):
        return json.dumps(prop['else']['enum'][0])
    t = prop.get('type', 'string')
    if isinstance(t, list):
        t = t[0]
    if prop.get('format') == 'duration':
        return '"1s"'
    return SAMPLE.get(t, '"x"')


def runbook(uses, with_):
    body = ', '.join(f'{k}: {v}' for k, v in with_.items())
    return f'version: 1\nname: contract\nsteps:\n  - id: s\n    uses: {uses}\n    with: {{{body}}}\n'


@suite.test
def test_every_action_validates_good_and_bad_params(h):
    acts = actions(h)
    plugins = {a.split('.')[0] for a in acts if '.' in a}
    for p in ('postgres', 's3', 'prisma', 'slack', 'pagerduty', 'docker'):
        h.check(p in plugins, f'plugin {p} not built: {sorted(plugins)}')
    checked = 0
    for uses, w in sorted(acts.items()):
        props = w.get('properties', {})
        required = w.get('required', [])
        good = {k: value_for(props[k]) for k in required}
        f = h.write('good.yaml', runbook(uses, good))
        r = h.engine('validate', f)
        h.check(r.returncode == 0, f'{uses} with {good}: {r.stdout}{r.stderr}')
        bad = dict(good)
        bad['no_such_param_zz'] = '1'
        f = h.write('bad.yaml', runbook(uses, bad))
        r = h.engine('validate', f)
        h.check(r.returncode == 2 and "unknown parameter 'no_such_param_zz'" in r.stderr,
                f'{uses}: {r.stderr}')
        h.check(':6:' in r.stderr, f'{uses}: no position in {r.stderr}')
        for k in required:
            missing = {x: y for x, y in good.items() if x != k}
            f = h.write('missing.yaml', runbook(uses, missing))
            r = h.engine('validate', f)
            h.check(r.returncode == 2 and f"missing required parameter '{k}'" in r.stderr,
                    f'{uses} without {k}: {r.stderr}')
        typed = [k for k, v in props.items()
                 if v.get('type') in (['integer', 'string'], ['boolean', 'string'])]
        for k in typed[:1]:
            wrong = dict(good)
            wrong[k] = '"not-a-value-zz"'
            f = h.write('wrong.yaml', runbook(uses, wrong))
            r = h.engine('validate', f)
            h.check(r.returncode == 2 and f"parameter '{k}'" in r.stderr, f'{uses}.{k}: {r.stderr}')
        r = h.engine('plugins', uses)
        h.check(r.returncode == 0 and 'outputs:' in r.stdout, f'{uses}: {r.stdout}')
        # the declarations of ABI 1.1, as editors and validate see them
        h.check(w.get('description') and w.get('markdownDescription'),
                f'{uses}: no action description in the schema')
        for k, v in props.items():
            h.check(v.get('description') and v.get('markdownDescription'),
                    f'{uses}.{k}: no description in the schema')
            if 'enum' in v.get('else', {}):
                off = dict(good)
                off[k] = '"zz-not-a-choice"'
                r = h.engine('validate', h.write('enum.yaml', runbook(uses, off)))
                h.check(r.returncode == 2 and 'is not one of' in r.stderr,
                        f'{uses}.{k} enum: {r.stderr}')
            for bound, delta, word in (('minimum', -1, 'at least'),
                                       ('maximum', 1, 'at most')):
                if bound not in v:
                    continue
                off = dict(good)
                off[k] = str(int(v[bound]) + delta)
                r = h.engine('validate', h.write('range.yaml', runbook(uses, off)))
                # a parameter with its own check (its forms) says the range itself
                own = v.get('pattern', '').startswith('^(?:')
                h.check(r.returncode == 2 and f"parameter '{k}'" in r.stderr and
                        ('out of range' in r.stderr or word in r.stderr or own),
                        f'{uses}.{k} {bound}: {r.stderr}')
        checked += 1
    h.check(checked >= 36, f"only {checked} actions")


# Debian's python3 with python3-jsonschema and python3-yaml (scripts/setup.sh
# installs them): the validator is a real one, not ours.
VALIDATE = r'''
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
bad = 0
for f in sys.argv[2:]:
    errs = list(cls(schema).iter_errors(yaml.safe_load(open(f))))
    for e in errs:
        print('%s: %s at %s' % (f, e.message, '/'.join(map(str, e.absolute_path))))
    bad += bool(errs)
print('checked %d files, %d invalid' % (len(sys.argv) - 2, bad))
sys.exit(1 if bad else 0)
'''


@suite.test
def test_schema_accepts_shipped_runbooks_and_rejects_typos(h):
    import pathlib
    import subprocess
    root = pathlib.Path(__file__).resolve().parents[2]
    r = h.engine('schema')
    h.check(r.returncode == 0, r.stderr)
    schema = h.write('schema.json', r.stdout)
    script = h.write('validate.py', VALIDATE)
    books = sorted(str(p) for p in (root / 'runbooks').glob('*.yaml'))
    h.check(len(books) >= 5, books)
    v = subprocess.run(['/usr/bin/python3', str(script), str(schema), *books],
                       text=True, capture_output=True)
    h.check(v.returncode == 0 and f'checked {len(books)} files, 0 invalid' in v.stdout,
            v.stdout + v.stderr)
    # a misspelled parameter and a wrong choice are rejected by the validator
    typo = h.write('typo.yaml', 'version: 1\nname: typo\nsteps:\n'
                   '  - id: d\n    uses: postgres.dump\n'
                   '    with: {file: /tmp/x.dump, fromat: custom}\n')
    v = subprocess.run(['/usr/bin/python3', str(script), str(schema), str(typo)],
                       text=True, capture_output=True)
    h.check(v.returncode == 1 and "'fromat' was unexpected" in v.stdout,
            v.stdout + v.stderr)
    choice = h.write('choice.yaml', 'version: 1\nname: choice\nsteps:\n'
                     '  - id: d\n    uses: postgres.dump\n'
                     '    with: {file: /tmp/x.dump, format: zip}\n')
    v = subprocess.run(['/usr/bin/python3', str(script), str(schema), str(choice)],
                       text=True, capture_output=True)
    h.check(v.returncode == 1 and "'zip' is not one of" in v.stdout,
            v.stdout + v.stderr)



@suite.test
def test_action_reference_is_current(h):
    """docs/actions.md is what `engine docs` prints for the built plugins:
    a declaration changed without the reference fails here."""
    r = h.engine('docs')
    h.check(r.returncode == 0 and r.stdout.startswith('# Actions'), r.stderr)
    doc = (ROOT / 'docs' / 'actions.md').read_text()
    if doc != r.stdout:
        import difflib
        diff = ''.join(list(difflib.unified_diff(doc.splitlines(True), r.stdout.splitlines(True),
                                                 'docs/actions.md', 'engine docs'))[:40])
        h.check(False, 'docs/actions.md is out of date: run `engine docs > docs/actions.md`\n'
                + diff)
    for name in ('postgres.restore', 'postgres.ping', 's3.put', 'docker.exec', 'slack.post'):
        h.check(f'\n### {name}\n' in doc, name)

if __name__ == '__main__':
    suite.main()
