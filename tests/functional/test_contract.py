"""Plugin contract: every action of every built plugin, driven through
validation with good and bad parameters, from its own declaration
(`engine schema`)."""
import json

from harness import Suite

suite = Suite(__file__)

SAMPLE = {'string': '"x"', 'integer': '1', 'number': '1.5', 'boolean': 'true',
          'array': '["a"]', 'object': '{}'}


def actions(h):
    r = h.engine('schema')
    h.check(r.returncode == 0, r.stderr)
    schema = json.loads(r.stdout)
    step = schema['properties']['steps']['items']
    out = {}
    for v in step['allOf']:
        name = v['if']['properties']['uses']['const']
        out[name] = v['then']['properties']['with']
    return out


def value_for(prop):
    if 'enum' in prop:
        return json.dumps(prop['enum'][0])
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
    for p in ('postgres', 's3', 'prisma'):
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
        checked += 1
    h.check(checked >= 26, f"only {checked} actions")


if __name__ == '__main__':
    suite.main()
