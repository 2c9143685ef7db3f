"""for_each: a step over a list known before the run or only at run time
(Podman volumes listed by a step), items in parallel under max_parallel,
fail_fast, guards per item (before the run for a literal list, when the
item starts for a run-time one), --resume after SIGKILL mid fan-out, and
the reports (one JUnit testcase per item)."""
import json
import os
import re
import signal
import time
import xml.etree.ElementTree as ET

from harness import Suite, wait_for
from podman import Podman

suite = Suite(__file__)
PID = os.getpid()
_pm = None


def pm():
    global _pm
    if _pm is None:
        _pm = Podman(service=True)
    return _pm


def run(h, text, *args, name='rb.yaml', docker=False):
    f = h.write(name, text)
    rep = h.tmp / (name + '.json')
    env = None
    if docker:
        env = {'DOCKER_HOST': pm().env['DOCKER_HOST'],
               'CONTAINERS_CONF': pm().env['CONTAINERS_CONF']}
    r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--report', rep, *args, env=env)
    return r, (json.loads(rep.read_text()) if rep.exists() else None)


@suite.test
def test_volumes_from_a_step_checked_in_parallel(h):
    """Three volumes found at run time: one holds a cluster, one is empty,
    one holds a file; each is checked by its own item, at once."""
    P = pm()
    cl, em, fi = f'fan_cluster_{PID}', f'fan_empty_{PID}', f'fan_file_{PID}'
    for v in (cl, em, fi):
        P.run('volume', 'rm', '-f', v, check=False)
        P.run('volume', 'create', v)
    P.run('run', '--rm', '--network', 'none', '-v', f'{cl}:/d', P.image, 'sh', '-c',
          'echo 15 > /d/PG_VERSION && mkdir /d/base /d/global /d/pg_wal')
    P.run('run', '--rm', '--network', 'none', '-v', f'{fi}:/d', P.image, 'sh', '-c',
          'echo hello > /d/notes.txt')
    junit = h.tmp / 'junit.xml'
    r, rep = run(h, f'''version: 1
name: candidates
steps:
  - id: candidates
    uses: docker.volumes
    with: {{match: "/^fan_(cluster|empty|file)_{PID}$/"}}
  - id: check-volume
    uses: docker.volume_check
    for_each: ${{steps.candidates.outputs.volumes}}
    max_parallel: 3
    with:
      volume: ${{each.value.name}}
      image: "{P.image}"
    outputs:
      name: ${{each.value.name}}
  - id: verdict
    uses: lua
    with:
      script: |
        local holding = {{}}
        for _, it in ipairs(steps["check-volume"].outputs.items) do
          if it.outputs.postgres_cluster then holding[#holding + 1] = it.outputs.name end
        end
        return {{holding = holding, n = steps["check-volume"].outputs.count}}
''', '--junit', junit, '--jobs', '4', docker=True)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    s = rep['steps']['check-volume']
    items = s['items']
    h.check(len(items) == 3 and s['status'] == 'ok', s)
    by = {it['outputs']['name']: it for it in items}
    h.check(by[cl]['outputs']['postgres_cluster'] and by[cl]['outputs']['pg_version'] == '15',
            by[cl])
    h.check(by[em]['outputs']['empty'] and not by[em]['outputs']['postgres_cluster'], by[em])
    h.check(by[fi]['outputs']['files'] == ['notes.txt'] and not by[fi]['outputs']['empty'],
            by[fi])
    h.check(rep['steps']['verdict']['outputs'] == {'holding': [cl], 'n': 3},
            rep['steps']['verdict'])
    agg = s['outputs']
    h.check(agg['count'] == 3 and agg['ok'] == 3 and agg['failed'] == 0, agg)
    h.check([it['index'] for it in agg['items']] == [0, 1, 2], agg['items'])
    # the three ran at once: each started before any ended
    starts = [it['started_at'] for it in items]
    ends = [it['ended_at'] for it in items]
    h.check(max(starts) <= min(ends), (starts, ends))
    # one testcase per item, named by the item
    cases = [c.get('name') for c in ET.parse(junit).getroot().iter('testcase')]
    for v in (cl, em, fi):
        h.check(f'check-volume[{v}]' not in cases, cases)  # labels are indexes (maps)
    h.check(sum(1 for c in cases if c.startswith('check-volume[')) == 3, cases)
    h.check(re.search(r'check-volume\[2\]\s+ok', r.stdout), r.stdout)
    # the audit log records each item's start and end
    audit = [json.loads(l) for l in open(
        h.tmp / 'state' / 'runs' / rep['run_id'] / 'audit.jsonl')]
    ends = [a for a in audit if a.get('type') == 'step.end' and
            a.get('step', '').startswith('check-volume[')]
    h.check(len(ends) == 3 and all(a['status'] == 'ok' for a in ends), ends)
    for v in (cl, em, fi):
        P.run('volume', 'rm', '-f', v, check=False)


@suite.test
def test_max_parallel_and_fail_fast(h):
    # six items, two at a time: timestamps from the items themselves
    r, rep = run(h, '''version: 1
name: par
params:
  tables:
    type: list
    default: [users, orders, items, carts, prices, stock]
steps:
  - id: count
    uses: shell
    for_each: ${params.tables}
    max_parallel: 2
    with:
      command: date +%s%N; sleep 0.3; date +%s%N
''', '--jobs', '8')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    items = rep['steps']['count']['items']
    h.check([it['item'] for it in items] == ['users', 'orders', 'items', 'carts', 'prices',
                                             'stock'], items)
    spans = [tuple(int(x) for x in it['outputs']['stdout'].split()) for it in items]
    most = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    h.check(most == 2, (most, spans))
    # fail_fast (the default): items after the failed one do not start
    text = '''version: 1
name: ff
steps:
  - id: each
    uses: shell
    for_each: [a, bad, c, d]
    {extra}
    with:
      command: test ${{each.value}} != bad
  - id: after
    uses: lua
    if: always()
    with:
      script: return {{failed = steps.each.outputs.failed, skipped = steps.each.outputs.skipped}}
'''
    r, rep = run(h, text.format(extra=''), name='ff.yaml')
    s = rep['steps']['each']
    h.check(r.returncode == 1 and s['status'] == 'failed', r.stdout + r.stderr)
    h.check([it['status'] for it in s['items']] == ['ok', 'failed', 'skipped', 'skipped'],
            s['items'])
    h.check('each[bad]' in s['error'] and 'fail_fast' in s['items'][2]['error'], s)
    h.check(rep['steps']['after']['outputs'] == {'failed': 1, 'skipped': 2}, rep['steps']['after'])
    r, rep = run(h, text.format(extra='fail_fast: false'), name='nff.yaml')
    s = rep['steps']['each']
    h.check(r.returncode == 1 and [it['status'] for it in s['items']] ==
            ['ok', 'failed', 'ok', 'ok'], s['items'])


@suite.test
def test_lua_items_keep_their_own_each_while_they_wait(h):
    url = h.pg.url('postgres')
    r, rep = run(h, f'''version: 1
name: lua-each
steps:
  - id: per
    uses: lua
    for_each: [a, b, c, d]
    max_parallel: 4
    with:
      script: |
        local v = each.value
        pg.query("{url}", "SELECT pg_sleep(0.3)")
        assert(each.value == v, "each changed: " .. v .. " -> " .. tostring(each.value))
        return {{v = each.value, i = each.index}}
    check: return outputs.v == each.value, "check saw another item"
''', '--jobs', '4')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    items = rep['steps']['per']['items']
    h.check([(it['outputs']['v'], it['outputs']['i']) for it in items] ==
            [('a', 0), ('b', 1), ('c', 2), ('d', 3)], items)
    h.check(max(it['started_at'] for it in items) < min(it['ended_at'] for it in items), items)


@suite.test
def test_protected_item_refused_before_the_run_and_when_reached(h):
    P = pm()
    ok, prot = f'fan_ok_{PID}', f'fan_prod_{PID}'
    for v in (ok, prot):
        P.run('volume', 'rm', '-f', v, check=False)
        P.run('volume', 'create', v)
    marker = h.tmp / 'ran'
    text = f'''version: 1
name: prot
guards:
  protected_volumes: [{prot}]
steps:
  - id: first
    uses: shell
    with: {{command: "touch {marker}"}}
  - id: names
    uses: lua
    with: {{script: 'return {{vols = {{"{ok}", "{prot}"}}}}'}}
  - id: mount
    uses: docker.run
    for_each: LIST
    with:
      image: "{P.image}"
      command: [sh, -c, "echo x > /data/written"]
      volumes: ["${{each.value}}:/data:rw"]
'''
    # a literal list: refused before anything ran
    r, rep = run(h, text.replace('LIST', f'[{ok}, {prot}]'), name='lit.yaml', docker=True)
    h.check(r.returncode == 3, r.stdout + r.stderr)
    h.check(not marker.exists(), 'a step ran before the refusal')
    h.check(f'mount[{prot}]' in rep['steps']['mount']['error'], rep['steps']['mount'])
    r2 = h.engine('plan', h.tmp / 'lit.yaml', env={'DOCKER_HOST': P.env['DOCKER_HOST']})
    h.check(r2.returncode == 3 and re.search(rf'item mount\[{prot}\]\s+\[REFUSED\]', r2.stdout),
            r2.stdout)
    # from a step: the protected item is refused when it starts, the other ran
    r, rep = run(h, text.replace('LIST', '${steps.names.outputs.vols}'), name='dyn.yaml',
                 docker=True)
    h.check(r.returncode == 3 and marker.exists(), r.stdout + r.stderr)
    items = {it['item']: it for it in rep['steps']['mount']['items']}
    h.check(items[ok]['status'] == 'ok' and items[prot]['status'] == 'refused', items)
    h.check('protected' in items[prot]['error'], items[prot])
    files = P.run('run', '--rm', '-v', f'{prot}:/d', P.image, 'ls', '/d').stdout.split()
    h.check(files == [], f'the protected volume was written: {files}')
    for v in (ok, prot):
        P.run('volume', 'rm', '-f', v, check=False)


@suite.test
def test_resume_after_sigkill_reruns_only_unfinished_items(h):
    log, mark = h.tmp / 'log', h.tmp / 'mark'
    f = h.write('res.yaml', f'''version: 1
name: res
steps:
  - id: per
    uses: shell
    for_each: [a, b, c]
    with:
      command: >-
        echo ${{each.value}} >> {log};
        if [ ${{each.value}} = b ] && [ ! -e {mark} ]; then touch {mark}; sleep 60; fi
''')
    p = h.popen('run', f, '--state-dir', h.tmp / 'state')
    wait_for(lambda: mark.exists(), timeout=30)
    p.send_signal(signal.SIGKILL)
    p.wait()
    rid = os.listdir(h.tmp / 'state' / 'runs')[0]
    h.check(log.read_text().split() == ['a', 'b'], log.read_text())
    # b started and never ended: a shell is not safe to repeat unasked
    r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--resume', rid)
    h.check(r.returncode == 3 and 'per[b]' in r.stdout + r.stderr, r.stdout + r.stderr)
    h.check(log.read_text().split() == ['a', 'b'], log.read_text())
    rep = h.tmp / 'rep.json'
    r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--resume', rid, '--approve', 'per',
                 '--report', rep)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(log.read_text().split() == ['a', 'b', 'b', 'c'], log.read_text())
    items = h.report(rep)['steps']['per']['items']
    h.check([it['status'] for it in items] == ['ok', 'ok', 'ok'], items)
    h.check('not run again' in r.stdout, r.stdout)


@suite.test
def test_list_parameter_from_set_and_environment(h):
    text = '''version: 1
name: lists
params:
  tables: {type: list, env: TABLES, default: [a]}
steps:
  - id: per
    uses: lua
    for_each: ${params.tables}
    with: {script: "return {t = each.value}"}
'''
    r, rep = run(h, text, '--set', 'tables=[public.User, "public.Order"]')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check([it['item'] for it in rep['steps']['per']['items']] == ['public.User', 'public.Order'],
            rep['steps']['per'])
    f = h.tmp / 'rb.yaml'
    r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--report', h.tmp / 'e.json',
                 env={'TABLES': '["x", "y", "z"]'})
    h.check(r.returncode == 0 and h.report(h.tmp / 'e.json')['steps']['per']['outputs']['count']
            == 3, r.stdout + r.stderr)
    # text that is not a list stays an error naming the parameter
    r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--set', 'tables=[a, b')
    h.check(r.returncode == 2 and "parameter 'tables' (from --set)" in r.stderr, r.stderr)


@suite.test
def test_validate_names_fan_out_mistakes(h):
    f = h.write('bad.yaml', '''version: 1
name: bad
steps:
  - id: plain
    uses: shell
    with: {command: "echo ${each.value}"}
  - id: fan
    uses: shell
    for_each: [a, b]
    with: {command: "echo ${each.vaule}"}
  - id: use
    uses: lua
    needs: [fan]
    with:
      script: return {x = steps.fan.outputs.stdout, y = steps.fan.outputs.items[1].outputs.nosuch}
  - id: scalar
    uses: shell
    for_each: just-a-name
    with: {command: "true"}
  - id: lone
    uses: shell
    max_parallel: 2
    with: {command: "true"}
''')
    r = h.engine('validate', f)
    out = r.stdout + r.stderr
    h.check(r.returncode == 2, out)
    for pat in (r"bad\.yaml:6:\d+: error: .*each\.value: 'each' is set only in the items",
                r"bad\.yaml:10:\d+: error: .*each\.vaule: an item has value, index and key "
                r".*did you mean 'value'",
                r"bad\.yaml:15:\d+: error: .*steps\.fan\.outputs\.stdout: step 'fan' runs "
                r"for_each",
                r"bad\.yaml:15:\d+: error: .*outputs\.items\[\.\.\.\]\.outputs\.nosuch: shell "
                r"has no such output",
                r"bad\.yaml:18:\d+: error: .*'for_each' takes a list",
                r"bad\.yaml:22:\d+: error: .*'max_parallel' applies to the items"):
        h.check(re.search(pat, out), f'{pat} not in:\n{out}')


if __name__ == '__main__':
    try:
        suite.main()
    finally:
        if _pm is not None:
            _pm.stop()
