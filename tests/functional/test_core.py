"""The engine binary on built-in-only runbooks: exit codes, outputs between
steps, ordering, timeouts, retries, conditions, finally, signals, secrets,
bad input."""
import glob
import json
import os
import pathlib
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from harness import Suite, ROOT, engine_bin

suite = Suite(__file__)


def run_dir(h):
    runs = glob.glob(str(h.tmp / 'state' / 'runs' / '*'))
    assert len(runs) == 1, runs
    return pathlib.Path(runs[0])


def run(h, name, *extra, **kw):
    return h.engine('run', h.fixture('core/' + name), '--state-dir',
                    h.tmp / 'state', '--report', h.tmp / 'report.json',
                    *extra, **kw)


@suite.test
def test_outputs_between_steps(h):
    r = run(h, 'outputs.yaml')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    out = (run_dir(h) / 'out.txt').read_text()
    h.check(out == 'hello-6 4 3\n', repr(out))
    rep = h.report(h.tmp / 'report.json')
    h.check(rep['steps']['typed']['outputs']['n'] == 4)
    h.check(rep['steps']['check-types']['outputs']['doubled'] == 8, rep)
    h.check(rep['exit_code'] == 0 and rep['status'] == 'ok')


@suite.test
def test_set_and_params_file(h):
    pf = h.write('p.yaml', 'greeting: hi\n')
    r = run(h, 'outputs.yaml', '--params-file', pf, '--set', 'count=5')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check((run_dir(h) / 'out.txt').read_text() == 'hi-10 6 3\n')
    r = run(h, 'outputs.yaml', '--set', 'count=many')
    h.check(r.returncode == 2, r.stdout + r.stderr)
    h.check("parameter 'count'" in r.stderr and 'integer' in r.stderr, r.stderr)
    r = run(h, 'outputs.yaml', '--set', 'cuont=5')
    h.check(r.returncode == 2 and "did you mean 'count'" in r.stderr, r.stderr)


@suite.test
def test_ordering_and_jobs(h):
    r = run(h, 'order.yaml', '--jobs', '2')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    lines = (run_dir(h) / 'order').read_text().split()
    h.check(lines[:3] == ['a', 'a-end', 'b'], lines)
    h.check(lines[-1] == 'd', lines)
    # with --jobs 2, never more than two c-steps at once
    running = peak = 0
    for l in lines:
        if l == 'c-start':
            running += 1
            peak = max(peak, running)
        elif l == 'c-end':
            running -= 1
    h.check(peak == 2, f'peak concurrency {peak} with --jobs 2: {lines}')
    h.tmp.joinpath('state').rename(h.tmp / 'state1')
    r = run(h, 'order.yaml', '--jobs', '4')
    lines = (run_dir(h) / 'order').read_text().split()
    h.check(lines[3:6] == ['c-start'] * 3, f'--jobs 4 runs the c steps at once: {lines}')


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().split()[2] != 'Z'
    except FileNotFoundError:
        return False


@suite.test
def test_timeout_kills_process_group(h):
    t0 = time.time()
    r = run(h, 'timeout.yaml')
    took = time.time() - t0
    h.check(r.returncode == 1, r.stdout + r.stderr)
    h.check(took < 10, f'took {took:.1f}s')
    rd = run_dir(h)
    rep = h.report(h.tmp / 'report.json')
    h.check(rep['steps']['slow']['status'] == 'timed_out', rep['steps']['slow'])
    h.check(rep['steps']['never']['status'] == 'skipped')
    h.check(not (rd / 'never').exists())
    h.check((rd / 'finally-ran').exists(), 'finally ran after the failure')
    time.sleep(0.5)
    for f in ('child.pid', 'sub.pid'):
        pid = int((rd / f).read_text())
        h.check(not alive(pid), f'{f} {pid} still alive after the timeout')


@suite.test
def test_retry_backoff(h):
    r = run(h, 'retry.yaml')
    h.check(r.returncode == 1, r.stdout + r.stderr)
    rd = run_dir(h)
    stamps = [int(x) for x in (rd / 'attempts').read_text().split()]
    h.check(len(stamps) == 3, f'flaky ran {len(stamps)} times, expected 3')
    gaps = [(b - a) / 1e6 for a, b in zip(stamps, stamps[1:])]
    h.check(180 <= gaps[0] < 1500, gaps)   # delay 200ms
    h.check(380 <= gaps[1] < 1800, gaps)   # 200ms * backoff 2
    rep = h.report(h.tmp / 'report.json')
    h.check(rep['steps']['flaky']['status'] == 'ok' and rep['steps']['flaky']['attempts'] == 3)
    # timeouts count as failed attempts: two attempts, then timed_out
    h.check(len((rd / 'timeouts').read_text().split()) == 2)
    h.check(rep['steps']['always-fails']['status'] == 'timed_out')
    h.check(rep['steps']['always-fails']['attempts'] == 2)


@suite.test
def test_conditions_and_finally(h):
    r = run(h, 'conditions.yaml')
    h.check(r.returncode == 1, r.stdout + r.stderr)
    rd = run_dir(h)
    rep = h.report(h.tmp / 'report.json')
    st = {k: v['status'] for k, v in rep['steps'].items()}
    h.check(st['fails'] == 'failed' and st['after-tolerated'] == 'ok', st)
    h.check(st['hard-fail'] == 'failed', st)
    h.check(st['skipped-by-default'] == 'skipped' and st['chained-skip'] == 'skipped', st)
    h.check(not (rd / 'should-not-exist').exists() and not (rd / 'should-not-exist-2').exists())
    h.check(st['on-failure'] == 'ok' and (rd / 'on-failure').exists(), st)
    h.check(st['independent'] == 'ok', st)
    h.check((rd / 'final').read_text().split() == ['failed', 'failed'],
            (rd / 'final').read_text())
    h.check((rd / 'finally-failure').exists())


@suite.test
def test_sigint_cancels_and_runs_finally(h):
    p = h.popen('run', h.fixture('core/sigint.yaml'), '--state-dir', h.tmp / 'state')
    deadline = time.time() + 20
    while time.time() < deadline:
        runs = glob.glob(str(h.tmp / 'state/runs/*/started'))
        if runs:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    h.check(p.returncode == 5, f'exit {p.returncode}: {out} {err}')
    rd = run_dir(h)
    h.check((rd / 'finally-ran').read_text().strip() == 'cancelled')
    h.check(not (rd / 'after').exists())
    rep = json.loads((rd / 'report.json').read_text())
    h.check(rep['steps']['long']['status'] == 'cancelled', rep['steps']['long'])
    h.check(rep['steps']['after']['status'] == 'cancelled', rep['steps']['after'])


@suite.test
def test_secrets_never_printed(h):
    secret = 'tok-9f8e7d6c5b'
    hook = 'https://hooks.slack.com/services/T000/B000/hooksecret12345'
    ledger = 'postgresql://ops:ledger-pw-77@db.internal:5432/ledger'
    env = {'TEST_TOKEN': secret, 'SLACK_WEBHOOK_URL': hook, 'LEDGER_URL': ledger}
    plan = h.engine('plan', h.fixture('core/secrets.yaml'), env=env)
    r = run(h, 'secrets.yaml', '--junit', h.tmp / 'j.xml', '--evidence', h.tmp / 'e.md',
            env=env)
    h.check(r.returncode == 1, r.stdout + r.stderr)
    everything = plan.stdout + plan.stderr + r.stdout + r.stderr
    files = ''
    for f in glob.glob(str(h.tmp / '**' / '*'), recursive=True):
        if os.path.isfile(f):
            files += pathlib.Path(f).read_text(errors='replace')
    everything += files
    h.check(secret not in everything, 'the secret leaked')
    h.check('pw-in-url-123' not in everything, 'the URL password leaked')
    h.check('ledger-pw-77' not in everything, 'the secret URL password leaked')
    h.check('hooksecret12345' not in everything, 'the webhook leaked')
    h.check('***' in r.stdout, r.stdout)
    # a secret connection URL still says which server and database it names
    shown = 'postgresql://ops:***@db.internal:5432/ledger'
    h.check(shown in plan.stdout, plan.stdout)
    h.check(shown in files, 'the audit log and reports name the server')
    r = run(h, 'secrets.yaml')
    h.check(r.returncode == 2 and "missing required parameter 'token'" in r.stderr
            and 'TEST_TOKEN' in r.stderr, r.stderr)


@suite.test
def test_lua_limits(h):
    t0 = time.time()
    # the budget is enforced to the moment (a watchdog), so it must leave
    # the memory bomb, slow under sanitizers, the time to reach the cap
    r = run(h, 'lua-limits.yaml', env={'ENGINE_LUA_BUDGET_MS': '3000', 'ENGINE_LUA_MEMORY_MB': '32'})
    h.check(time.time() - t0 < 30, 'limits took too long')
    h.check(r.returncode == 1, r.stdout + r.stderr)
    rep = h.report(h.tmp / 'report.json')
    h.check(rep['steps']['spin']['status'] == 'failed')
    h.check('budget' in rep['steps']['spin']['error'], rep['steps']['spin'])
    h.check(rep['steps']['bomb']['status'] == 'failed')
    h.check('memory' in rep['steps']['bomb']['error'], rep['steps']['bomb'])
    h.check(rep['steps']['sandbox-ok']['status'] == 'ok', rep['steps'])


@suite.test
def test_step_timeout_stops_busy_lua(h):
    """Lua runs on the loop thread, where the timeout's timer cannot fire:
    the step's deadline still stops a bare loop, a loop of long calls into
    C, a loop of pattern searches and a check hook that catches its errors,
    each about when its 2 s timeout falls due; `finally` runs and the
    audit log is whole."""
    t0 = time.time()
    r = run(h, 'lua-timeout.yaml')
    took = time.time() - t0
    h.check(r.returncode == 1, r.stdout + r.stderr)
    rep = h.report(h.tmp / 'report.json')
    for sid in ('spin', 'sort', 'pattern', 'hook'):
        st = rep['steps'][sid]
        h.check(st['status'] == 'timed_out', (sid, st))
        # within a second of the deadline; more room for sanitizers on a
        # busy machine (without the deadline they run to the 10 s budget)
        h.check(st['duration_ms'] < 4500, (sid, st['duration_ms']))
    for sid in ('spin', 'sort', 'pattern'):
        h.check("the step's timeout ran out while Lua was running"
                in rep['steps'][sid]['error'], rep['steps'][sid])
    h.check('timed out after 2.0s' in rep['steps']['hook']['error'], rep['steps']['hook'])
    h.check(took < 20, f'took {took:.1f}s')
    rd = run_dir(h)
    h.check((rd / 'finally-ran').exists(), r.stdout)
    h.check(rep['steps']['fin']['status'] == 'ok', rep['steps']['fin'])
    v = h.engine('audit', 'verify', rd / 'audit.jsonl')
    h.check(v.returncode == 0, v.stdout + v.stderr)
    kinds = [json.loads(l)['type'] for l in (rd / 'audit.jsonl').read_text().splitlines()]
    h.check(kinds[-1] == 'run.end', kinds[-3:])


@suite.test
def test_missing_reference_names_step_and_path(h):
    # a misspelt output of an action that declares its outputs is caught
    # before anything runs, with the position and the right spelling
    r = run(h, 'missing-ref.yaml')
    h.check(r.returncode == 2, r.stdout + r.stderr)
    h.check('missing-ref.yaml:9:' in r.stderr, r.stderr)
    h.check('steps.first.outputs.stdot' in r.stderr, r.stderr)
    h.check("did you mean 'stdout'" in r.stderr, r.stderr)
    # an output nobody can know before the run (a Lua step's) is left to
    # the run, which names the step and the path
    f = h.write('dyn.yaml', """version: 1
name: dyn
steps:
  - id: first
    uses: lua
    with: { script: "return { a = 1 }" }
  - id: second
    uses: shell
    with: { command: "echo ${steps.first.outputs.b}" }
""")
    r = h.engine('run', f, '--report', h.tmp / 'report.json')
    h.check(r.returncode == 1, r.stdout + r.stderr)
    rep = h.report(h.tmp / 'report.json')
    err = rep['steps']['second']['error']
    h.check('steps.first.outputs.b' in err, err)


@suite.test
def test_references_checked_before_anything_runs(h):
    marker = h.tmp / 'ran'
    bad = h.write('bad.yaml', f"""version: 1
name: refs
params:
  restore_db: {{ type: string, default: drill }}
steps:
  - id: safety-backup
    uses: shell
    with: {{ command: "touch {marker}" }}
  - id: count
    uses: shell
    if: params.restore_bd ~= ""
    with: {{ command: "echo ${{steps.safety-backup.outputs.stdout}}" }}
  - id: again
    uses: shell
    with: {{ command: "echo ${{steps.cuont.outputs.stdout}} ${{steps.count.stauts}}" }}
    check: return outputs.exit_cod == 0
""")
    r = h.engine('run', bad)
    h.check(r.returncode == 2, r.stdout + r.stderr)
    h.check(not marker.exists(), 'a step ran although the runbook is wrong')
    e = r.stderr
    h.check("params.restore_bd: no such parameter (did you mean 'restore_db'?)" in e, e)
    h.check("bad.yaml:11:" in e, e)
    h.check("steps.safety: no such step" in e and "safety_backup" in e, e)
    h.check("steps.cuont: no such step (did you mean 'count'?)" in e, e)
    h.check("steps.count.stauts" in e and "did you mean 'status'" in e, e)
    h.check("outputs.exit_cod" in e and "did you mean 'exit_code'" in e, e)
    # the same runbook spelt right validates; a local named like a root is
    # the code's own, and step outputs the runbook declares are known
    good = h.write('good.yaml', f"""version: 1
name: refs
params:
  restore_db: {{ type: string, default: drill }}
steps:
  - id: safety-backup
    uses: shell
    with: {{ command: "echo 7" }}
    outputs: {{ n: "${{outputs.stdout}}" }}
  - id: count
    uses: shell
    if: params.restore_db ~= ""
    with: {{ command: "echo ${{steps.safety_backup.outputs.stdout}} ${{steps['safety-backup'].outputs.n}}" }}
  - id: again
    uses: lua
    with:
      script: |
        local steps = {{ x = 1 }}
        return {{ v = steps.nothing_here }}
    check: return outputs.v == nil and steps.count.status == "ok"
""")
    r = h.engine('validate', good)
    h.check(r.returncode == 0, r.stdout + r.stderr)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == '/health':
            body = b'{"status": "ok", "db": "up"}'
            self.send_response(200)
        else:
            body = b'not found'
            self.send_response(404)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


@suite.test
def test_http_builtin(h):
    srv = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        r = run(h, 'http.yaml', '--set', f'base=http://127.0.0.1:{srv.server_port}')
    finally:
        srv.shutdown()
    h.check(r.returncode == 0, r.stdout + r.stderr)
    rep = h.report(h.tmp / 'report.json')
    h.check(rep['steps']['missing']['outputs']['status'] == 404)
    h.check(rep['steps']['wrong']['status'] == 'failed')
    h.check('404' in rep['steps']['wrong']['error'])


@suite.test
def test_only_and_from(h):
    r = run(h, 'only-from.yaml', '--only', 'two')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    rd = run_dir(h)
    # 'two' runs with what it needs (implicitly 'one'), not 'three'
    h.check((rd / 'one').exists() and (rd / 'two').exists() and not (rd / 'three').exists())
    (h.tmp / 'state').rename(h.tmp / 'state-1')
    r = run(h, 'only-from.yaml', '--from', 'two')
    rd = run_dir(h)
    h.check(not (rd / 'one').exists() and (rd / 'two').exists() and (rd / 'three').exists())
    r = run(h, 'only-from.yaml', '--only', 'tow')
    h.check(r.returncode == 2 and "did you mean 'two'" in r.stderr, r.stderr)


@suite.test
def test_json_log_format(h):
    r = run(h, 'only-from.yaml', '--log-format', 'json')
    h.check(r.returncode == 0, r.stderr)
    events = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    kinds = [e['event'] for e in events]
    h.check(kinds[0] == 'run.start' and kinds[-1] == 'run.end', kinds)
    h.check(kinds.count('step.start') == 3 and kinds.count('step.end') == 3, kinds)


ERRORS = [
    ('unknown key', 'version: 1\nname: x\nsteps:\n  - id: a\n    uses: shell\n    wiht: {command: x}\n',
     '6:5', "unknown key 'wiht' (did you mean 'with'?)"),
    ('wrong type', 'version: 1\nname: x\nsteps:\n  - id: a\n    uses: shell\n    with: [1]\n',
     '6:11', "must be a mapping"),
    ('duplicate id', 'version: 1\nname: x\nsteps:\n  - id: a\n    uses: shell\n    with: {command: x}\n  - id: a\n    uses: shell\n    with: {command: x}\n',
     '7:9', "duplicate step id 'a'"),
    ('unknown needs', 'version: 1\nname: x\nsteps:\n  - id: abc\n    uses: shell\n    with: {command: x}\n  - id: b\n    needs: [abd]\n    uses: shell\n    with: {command: x}\n',
     '8:13', "needs unknown step 'abd' (did you mean 'abc'?)"),
    ('cycle', 'version: 1\nname: x\nsteps:\n  - id: a\n    needs: [b]\n    uses: shell\n    with: {command: x}\n  - id: b\n    needs: [a]\n    uses: shell\n    with: {command: x}\n',
     '', 'dependency cycle'),
    ('unknown action', 'version: 1\nname: x\nsteps:\n  - id: a\n    uses: postgres.dumpp\n',
     '5:11', "unknown action 'postgres.dumpp'"),
    ('unknown param', 'version: 1\nname: x\nsteps:\n  - id: a\n    uses: sleep\n    with: {fro: 1s}\n',
     '6:12', "unknown parameter 'fro' for sleep (did you mean 'for'?)"),
    ('missing param', 'version: 1\nname: x\nsteps:\n  - id: a\n    uses: sleep\n',
     '4:5', "missing required parameter 'for' for sleep"),
    ('bad duration', 'version: 1\nname: x\nsteps:\n  - id: a\n    uses: sleep\n    with: {for: 1s}\n    timeout: 10 mins\n',
     '7:14', "bad duration '10 mins'"),
    ('lua syntax in if', 'version: 1\nname: x\nsteps:\n  - id: a\n    uses: sleep\n    with: {for: 1s}\n    if: success( and\n',
     '7:9', "'if': Lua error"),
    ('lua syntax in check', 'version: 1\nname: x\nsteps:\n  - id: a\n    uses: sleep\n    with: {for: 1s}\n    check: return ==\n',
     '7:12', "'check': Lua error"),
    ('lua syntax in ${}', 'version: 1\nname: x\nsteps:\n  - id: a\n    uses: shell\n    with:\n      command: echo ${1 +}\n',
     '7:16', "parameter 'command'"),
    ('malformed yaml', 'version: 1\nname: x\nsteps: [\n', '4:1', 'invalid YAML'),
    ('not a mapping', '- a\n- b\n', '1:1', 'a runbook is a mapping'),
]


@suite.test
def test_validation_errors_have_positions(h):
    for label, text, pos, msg in ERRORS:
        f = h.write('bad.yaml', text)
        marker = h.tmp / 'ran'
        r = h.engine('run', f, '--state-dir', h.tmp / 'state')
        h.check(r.returncode == 2, f'{label}: exit {r.returncode}: {r.stderr}')
        want = f'bad.yaml:{pos}: error:' if pos else 'bad.yaml:'
        h.check(want in r.stderr, f'{label}: expected {want!r} in {r.stderr!r}')
        h.check(msg in r.stderr, f'{label}: expected {msg!r} in {r.stderr!r}')
        h.check(not (h.tmp / 'state').exists(), f'{label}: something ran')
        r = h.engine('validate', f)
        h.check(r.returncode == 2, f'validate {label}: {r.returncode}')


@suite.test
def test_bad_input_files(h):
    garbage = h.tmp / 'garbage.yaml'
    garbage.write_bytes(os.urandom(4096))
    big = h.tmp / 'big.yaml'
    with open(big, 'w') as f:
        f.write('version: 1\nname: big\nsteps:\n')
        line = '  - {id: s%d, uses: sleep, with: {for: 1ms}}\n'
        i = 0
        while f.tell() < 50 * 1024 * 1024:
            f.write(line % i)
            i += 1
    deep = h.write('deep.yaml', 'version: 1\nname: deep\nsteps: []\nx: ' + '{a: ' * 5000 + '1' + '}' * 5000 + '\n')
    bomb = h.write('alias.yaml', 'version: 1\nname: bomb\n' + 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n' +
                   ''.join(f'a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]\n' for i in range(1, 9)) +
                   'steps: []\n')
    for f in (garbage, big, deep, bomb):
        t0 = time.time()
        r = h.engine('validate', f, timeout=60)
        h.check(r.returncode == 2, f'{f.name}: exit {r.returncode} {r.stderr[:300]}')
        h.check('error:' in r.stderr, f'{f.name}: {r.stderr[:300]}')
        h.check(time.time() - t0 < 20, f'{f.name} took too long')


@suite.test
def test_plugin_abi_and_bad_plugins(h):
    build = pathlib.Path(os.environ.get('ENGINE_BIN', ROOT / 'build/core/engine')).parent.parent
    tp = build / 'tests' / 'plugins'
    d = h.tmp / 'plugins'
    d.mkdir()
    for name in ('test_abi_major.so', 'test_abi_minor.so', 'test_not_plugin.so'):
        (d / name).symlink_to(tp / name)
    (d / 'junk.so').write_bytes(b'this is not an ELF file')
    # refused plugins are warnings: the others are listed, exit 0 ...
    r = h.engine('plugins', '--plugin-path', d)
    h.check(r.returncode == 0 and 'shell' in r.stdout, r.stdout + r.stderr)
    h.check("field 'abi_major' is 2" in r.stderr, r.stderr)
    minor = int(h.engine('version').stdout.split('ABI 1.')[1].split(')')[0])
    h.check(f"field 'abi_minor' is {minor + 1}, newer" in r.stderr, r.stderr)
    h.check("does not export 'eng_plugin_entry'" in r.stderr, r.stderr)
    h.check('junk.so' in r.stderr, r.stderr)
    # ... unless the user named the refused one; global options may come
    # before the command
    r = h.engine('--plugin-path', d, 'plugins', 'test_abi_major')
    h.check(r.returncode == 2 and "plugin 'test_abi_major'" in r.stderr
            and "was refused: field 'abi_major' is 2" in r.stderr, r.stderr)
    # a runbook using the refused plugin says why
    f = h.write('use.yaml', 'version: 1\nname: x\nsteps:\n  - id: a\n    uses: test_abi_major.nop\n')
    r = h.engine('validate', f, '--plugin-path', d)
    h.check(r.returncode == 2 and "plugin 'test_abi_major' could not be loaded" in r.stderr, r.stderr)
    # a good plugin is loaded, validated and run
    g = h.tmp / 'good'
    g.mkdir()
    (g / 'test_good.so').symlink_to(tp / 'test_good.so')
    r = h.engine('run', h.fixture('core/plugin-echo.yaml'), '--plugin-path', g,
                 '--state-dir', h.tmp / 'state')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    r = h.engine('plugins', 'testgood.echo', '--plugin-path', g)
    h.check(r.returncode == 0 and 'value' in r.stdout and 'required' in r.stdout, r.stdout)
    # the same plugin name in two directories: the first wins, with a word
    g2 = h.tmp / 'good2'
    g2.mkdir()
    import shutil
    shutil.copy(tp / 'test_good.so', g2 / 'test_good.so')
    r = h.engine('plugins', 'testgood', '--plugin-path', g, '--plugin-path', g2)
    h.check(r.returncode == 0 and str(g / 'test_good.so') in r.stdout, r.stdout)
    h.check(f"plugin 'testgood' is also in {g / 'test_good.so'}" in r.stderr and
            str(g2 / 'test_good.so') in r.stderr and 'ignoring this one' in r.stderr,
            r.stderr)


@suite.test
def test_plugin_ignoring_cancel_is_abandoned(h):
    """A plugin that never calls done() after a cancel cannot hang the
    engine: after --cancel-grace the step ends, finally runs, the run ends,
    for a timeout and for SIGINT."""
    build = pathlib.Path(os.environ.get('ENGINE_BIN', ROOT / 'build/core/engine')).parent.parent
    d = h.tmp / 'p'
    d.mkdir()
    (d / 'test_lifecycle.so').symlink_to(build / 'tests' / 'plugins' / 'test_lifecycle.so')
    f = h.write('stuck.yaml', 'version: 1\nname: stuck\nsteps:\n'
                '  - {id: stuck, uses: testlife.deaf, timeout: 200ms}\n'
                'finally:\n  - {id: fin, uses: shell, with: {command: "echo fin > fin.txt"}}\n')
    t0 = time.time()
    r = h.engine('run', f, '--plugin-path', d, '--cancel-grace', '300ms',
                 '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r.json')
    took = time.time() - t0
    h.check(r.returncode == 1, r.stdout + r.stderr)
    rep = json.loads((h.tmp / 'r.json').read_text())
    h.check(rep['steps']['stuck']['status'] == 'timed_out', rep['steps']['stuck'])
    h.check('did not honour the cancel' in rep['steps']['stuck']['error'], rep['steps']['stuck'])
    h.check(rep['steps']['fin']['status'] == 'ok' and (h.tmp / 'fin.txt').exists(), rep['steps'])
    h.check(took < 8, f'took {took:.1f}s')
    # SIGINT: the same, with the grace from the environment
    f = h.write('stuck2.yaml', 'version: 1\nname: stuck\nsteps:\n'
                '  - {id: stuck, uses: testlife.deaf}\n'
                '  - {id: busy, needs: [], uses: sleep, with: {for: 30s}}\n'
                'finally:\n  - {id: fin, uses: shell, with: {command: "echo fin > fin2.txt"}}\n')
    e = dict(os.environ, NO_COLOR='1', ENGINE_CANCEL_GRACE='300ms')
    p = subprocess.Popen([engine_bin(), 'run', str(f), '--plugin-path', str(d),
                          '--state-dir', str(h.tmp / 'state'), '--report', str(h.tmp / 'r2.json')],
                         cwd=str(h.tmp), env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=20)
    h.check(p.returncode == 5, out + err)
    rep = json.loads((h.tmp / 'r2.json').read_text())
    h.check(rep['steps']['stuck']['status'] == 'cancelled', rep['steps']['stuck'])
    h.check((h.tmp / 'fin2.txt').exists(), out + err)
    r = h.engine('run', f, '--cancel-grace', 'soon')
    h.check(r.returncode == 2 and '--cancel-grace needs a duration' in r.stderr, r.stderr)


@suite.test
def test_streams_zstd_and_checksum(h):
    import hashlib
    build = pathlib.Path(os.environ.get('ENGINE_BIN', ROOT / 'build/core/engine')).parent.parent
    src = h.tmp / 'src.bin'
    data = b''.join(b'row %d some text that compresses\n' % i for i in range(300000))
    src.write_bytes(data)
    r = h.engine('run', h.fixture('core/stream-copy.yaml'), '--plugin-path',
                 build / 'tests' / 'plugins', '--state-dir', h.tmp / 'state',
                 '--report', h.tmp / 'r.json', '--set', f'src={src}')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    rd = run_dir(h)
    packed = (rd / 'packed.zst')
    rep = h.report(h.tmp / 'r.json')
    w = rep['steps']['pack']['outputs']['written']
    h.check(w['plain_bytes'] == len(data), w)
    h.check(w['bytes'] < len(data) / 5, f'zstd did not compress: {w}')
    h.check((rd / 'unpacked').read_bytes() == data, 'round trip changed the bytes')
    un = rep['steps']['unpack']['outputs']['read']
    h.check(un['sha256'] == w['sha256'], (un, w))
    v = rep['steps']['verify-fails']
    h.check(v['status'] == 'failed' and 'checksum mismatch' in v['error'], v)
    h.check(not (rd / 'never').exists() and not (rd / 'never.partial').exists(),
            'a failed stream left a file')
    h.check(hashlib.sha256(packed.read_bytes()).hexdigest() != w['sha256'])


@suite.test
def test_slo_measured_and_exit_4(h):
    r = run(h, 'slo.yaml', '--evidence', h.tmp / 'e.md')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    rep = h.report(h.tmp / 'report.json')
    h.check(300 <= rep['slo']['rto_ms'] < 5000, rep['slo'])
    h.check(10000 <= rep['slo']['rpo_ms'] < 15000, rep['slo'])
    h.check(rep['slo']['rto_met'] and rep['slo']['rpo_met'])
    h.check('| total RTO |' in (h.tmp / 'e.md').read_text())
    (h.tmp / 'state').rename(h.tmp / 'state0')
    r = run(h, 'slo.yaml', '--set', 'pause=2500ms')
    h.check(r.returncode == 4, r.stdout + r.stderr)
    h.check('RTO' in r.stdout and 'MISSED' in r.stdout, r.stdout)
    (h.tmp / 'state').rename(h.tmp / 'state1')
    r = run(h, 'slo.yaml', '--set', 'backup_age_s=120')
    h.check(r.returncode == 4, r.stdout + r.stderr)
    rep = h.report(h.tmp / 'report.json')
    h.check(not rep['slo']['rpo_met'] and rep['slo']['rto_met'], rep['slo'])


@suite.test
def test_many_steps_and_edge_cases(h):
    # thousands of steps skipped after a failure: no deep recursion
    lines = ['version: 1', 'name: many', 'steps:', '  - {id: first, uses: shell, with: {command: "exit 1"}}']
    lines += [f'  - {{id: s{i}, uses: sleep, with: {{for: 1ms}}}}' for i in range(6000)]
    lines += ['finally:', '  - id: fin', '    uses: shell', '    if: run.status == "failed"',
              '    with: {command: "touch $ENGINE_RUN_DIR/fin"}']
    rb = h.write('many.yaml', '\n'.join(lines) + '\n')
    r = h.engine('run', rb, '--state-dir', h.tmp / 'state', '-q', timeout=120)
    h.check(r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:])
    h.check((run_dir(h) / 'fin').exists(), 'finally with if: run.status')
    # a scalar where a step belongs is an error, not a crash
    bad = h.write('scalar.yaml', 'version: 1\nname: s\nsteps:\n  - just-a-string\n')
    r = h.engine('validate', bad)
    h.check(r.returncode == 2 and 'must be a mapping' in r.stderr, r.stderr)


@suite.test
def test_sigint_during_retry_delay(h):
    rb = h.write('r.yaml', 'version: 1\nname: r\nsteps:\n  - id: a\n    uses: shell\n'
                 '    retry: {attempts: 3, delay: 60s}\n    with: {command: "touch $ENGINE_RUN_DIR/tried; exit 1"}\n')
    p = h.popen('run', rb, '--state-dir', h.tmp / 'state')
    deadline = time.time() + 20
    while time.time() < deadline and not glob.glob(str(h.tmp / 'state/runs/*/tried')):
        time.sleep(0.05)
    time.sleep(0.3)
    t0 = time.time()
    p.send_signal(signal.SIGINT)
    p.communicate(timeout=30)
    h.check(p.returncode == 5, p.returncode)
    h.check(time.time() - t0 < 5, 'SIGINT waited for the retry delay')


@suite.test
def test_plan_schema_version(h):
    r = h.engine('plan', h.fixture('core/order.yaml'), '--state-dir', h.tmp / 'state')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check('nothing was run' in r.stdout and 'c1' in r.stdout, r.stdout)
    h.check(not (h.tmp / 'state').exists(), 'plan created state')
    r = h.engine('schema')
    h.check(r.returncode == 0, r.stderr)
    schema = json.loads(r.stdout)
    uses = schema['$defs']['step']['properties']['uses']['defaultSnippets']
    shell = [u for u in uses if u['label'] == 'shell']
    h.check(shell and shell[0]['description'] and 'markdownDescription' in shell[0], uses[:2])
    r = h.engine('version')
    h.check(r.returncode == 0 and r.stdout.startswith('engine '), r.stdout)
    r = h.engine('frobnicate')
    h.check(r.returncode == 2 and 'unknown command' in r.stderr)
    r = h.engine('run', '--help')
    h.check(r.returncode == 0 and '--allow-destructive' in r.stdout)
    # global options are listed by every command's --help
    for cmd in ('run', 'plan', 'validate', 'plugins', 'schema', 'audit', 'runs', 'cleanup'):
        r = h.engine(cmd, '--help')
        h.check(r.returncode == 0 and '--plugin-path' in r.stdout and
                '--cancel-grace' in r.stdout and '--state-dir' in r.stdout, cmd + r.stdout)


@suite.test
def test_lua_library_require(h):
    r = run(h, 'lua-lib.yaml')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    rep = h.report(h.tmp / 'report.json')
    h.check('public.Order: missing' in rep['steps']['same']['outputs']['why'], rep['steps']['same'])



@suite.test
def test_resume_of_an_unknown_run_and_duration_numbers(h):
    rb = h.write('d.yaml', 'version: 1\nname: d\nparams:\n'
                 '  pause: {type: duration, default: 1}\nsteps:\n'
                 '  - id: wait\n    uses: sleep\n    with: {for: "${params.pause}"}\n')
    # a mistyped run id never starts a new run under that id
    r = h.engine('run', rb, '--state-dir', h.tmp / 'st', '--resume', '20991231-000000-dead')
    h.check(r.returncode == 2 and 'no such run' in r.stderr, r.stdout + r.stderr)
    h.check(not (h.tmp / 'st' / 'runs' / '20991231-000000-dead').exists(), 'a run was created')
    # a duration given as a number is seconds, converted once
    t0 = time.time()
    r = h.engine('run', rb, '--state-dir', h.tmp / 'st', timeout=60)
    h.check(r.returncode == 0 and 0.9 < time.time() - t0 < 20, (time.time() - t0, r.stdout))

WARN = '''version: 1
name: warns
steps:
  - id: lag
    uses: shell
    with: {command: "echo 20"}
    check: |
      local lag = tonumber(outputs.stdout)
      if lag > 10 then return "warn", "replication lag " .. lag .. " s above 10 s" end
      return true
  - id: script
    uses: lua
    with:
      script: |
        engine.warn("first")
        engine.warn("second")
        return { n = 1 }
  - id: flaky
    uses: shell
    continue_on_error: true
    with: {command: "echo boom >&2; exit 2"}
  - id: after
    if: success() and steps.lag.status == "warn"
    uses: shell
    with: {command: "true"}
'''


@suite.test
def test_warn_outcome_everywhere(h):
    """A check's "warn" and engine.warn end the step `warn`: yellow on the
    console, the exit status unchanged, counted in the summary and in
    report.json, a passing JUnit testcase with the message, the evidence,
    the audit log; a continue_on_error failure is "failed (continued)"."""
    import xml.etree.ElementTree as ET
    f = h.write('warn.yaml', WARN)
    r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r.json',
                 '--junit', h.tmp / 'j.xml', '--evidence', h.tmp / 'e.md')
    out = r.stdout
    h.check(r.returncode == 0 and 'succeeded in' in out, out + r.stderr)
    lines = out.splitlines()
    lag = next(l for l in lines if l.startswith('ok lag '))
    h.check(lag.split()[2] == 'warn', lag)
    h.check('   warning: replication lag 20 s above 10 s' in lines, out)
    h.check('   warning: first; second' in lines, out)
    flaky = next(l for l in lines if ' flaky ' in l and 'failed' in l)
    h.check(flaky.startswith('~~ flaky') and 'failed (continued)' in flaky, flaky)
    h.check(not any(l.startswith('!!') for l in lines), out)
    h.check('1 ok, 2 warn, 1 failed (continued)' in lines, out)
    rep = h.report(h.tmp / 'r.json')
    s = rep['steps']
    h.check((s['lag']['status'], s['lag']['warning'], s['lag']['check']) ==
            ('warn', 'replication lag 20 s above 10 s', 'warn'), s['lag'])
    h.check(s['script']['status'] == 'warn' and s['script']['warning'] == 'first; second',
            s['script'])
    h.check(s['flaky']['status'] == 'failed' and s['flaky']['continued'] is True, s['flaky'])
    h.check(s['after']['status'] == 'ok', s['after'])
    h.check(rep['counts'] == {'ok': 1, 'warn': 2, 'failed': 1} and rep['status'] == 'ok',
            rep['counts'])
    suite_el = ET.parse(h.tmp / 'j.xml').getroot().find('testsuite')
    h.check(suite_el.get('failures') == '0', ET.tostring(suite_el))
    cases = {(c.get('classname'), c.get('name')): c for c in suite_el.iter('testcase')}
    for key, text in ((('warns.steps', 'lag'), 'warning: replication lag 20 s above 10 s'),
                      (('warns.checks', 'lag check'), 'warning: replication lag 20 s above 10 s'),
                      (('warns.steps', 'script'), 'warning: first; second'),
                      (('warns.steps', 'flaky'), 'failed (continued): command exited with status 2')):
        c = cases[key]
        h.check(c.find('failure') is None and c.find('skipped') is None, ET.tostring(c))
        h.check(text in (c.findtext('system-out') or ''), ET.tostring(c))
    ev = (h.tmp / 'e.md').read_text()
    h.check('| lag | shell | warn | warn |' in ev, ev)
    h.check('## Warnings\n\n- `lag` warn: replication lag 20 s above 10 s\n'
            '- `script` warn: first; second\n' in ev, ev)
    h.check('- `flaky` failed (continued): command exited with status 2' in ev, ev)
    audit = [json.loads(l) for l in (run_dir(h) / 'audit.jsonl').read_text().splitlines()]
    ends = {a['step']: a for a in audit if a['type'] == 'step.end'}
    h.check(ends['lag']['status'] == 'warn' and
            ends['lag']['warning'] == 'replication lag 20 s above 10 s', ends['lag'])
    # the JSON log carries it too
    r = h.engine('run', f, '--state-dir', h.tmp / 'state3', '--log-format', 'json')
    events = [json.loads(l) for l in r.stdout.splitlines() if l.startswith('{')]
    end = next(e for e in events if e['event'] == 'step.end' and e['step'] == 'script')
    h.check(end['status'] == 'warn' and end['warning'] == 'first; second', end)
    # outside a step's hooks there is no step to end `warn`
    g = h.write('bad-warn.yaml', 'version: 1\nname: t\nsteps:\n  - id: a\n'
                '    if: engine.warn("x") == nil\n    uses: shell\n    with: {command: "true"}\n')
    r = h.engine('run', g, '--state-dir', h.tmp / 'state4', '--report', h.tmp / 'b.json')
    h.check(r.returncode == 1, r.stdout + r.stderr)
    err = h.report(h.tmp / 'b.json')['steps']['a']['error']
    h.check('engine.warn: only a `check:` hook or a `lua` step' in err, err)


@suite.test
def test_warn_is_yellow(h):
    """Colours: a warning and a continued failure are yellow, a failure red."""
    f = h.write('warn.yaml', WARN)
    import pty
    import subprocess
    # the console colours only a terminal
    m, s = pty.openpty()
    p = subprocess.Popen([engine_bin(), 'run', str(f), '--state-dir', str(h.tmp / 'state')],
                         stdout=s, stderr=s, cwd=str(h.tmp),
                         env={k: v for k, v in os.environ.items() if k != 'NO_COLOR'})
    os.close(s)
    data = b''
    while True:
        try:
            chunk = os.read(m, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    p.wait(timeout=60)
    os.close(m)
    text = data.decode(errors='replace')
    yellow, red = '\x1b[33m', '\x1b[31m'
    h.check(f'{yellow}ok\x1b[0m lag' in text and f'{yellow}warn' in text, repr(text))
    h.check(f'{yellow}~~\x1b[0m flaky' in text, repr(text))
    for l in text.splitlines():
        if 'lag' in l or 'failed (continued)' in l or 'warning:' in l:
            h.check(red not in l, repr(l))


@suite.test
def test_drill_only_when_the_runbook_says_so(h):
    """Detection and decision time are 0 only for a runbook that says it is
    a drill; `drill:` is true, false or a template, checked at validate."""
    base = ('version: 1\nname: d\n%sparams:\n  rehearsal: {type: bool, default: false}\n'
            'steps:\n  - id: restore\n    uses: shell\n    with: {command: "true"}\n'
            '    recovered: true\n')
    for i, (key, drill) in enumerate((('', False), ('drill: true\n', True),
                                      ('drill: false\n', False),
                                      ('drill: ${params.rehearsal}\n', False))):
        f = h.write(f'd{i}.yaml', base % key)
        r = h.engine('run', f, '--state-dir', h.tmp / f's{i}', '--evidence', h.tmp / f'e{i}.md',
                     '--report', h.tmp / f'r{i}.json')
        h.check(r.returncode == 0, r.stdout + r.stderr)
        ev = (h.tmp / f'e{i}.md').read_text()
        h.check(('| detection time | 0 (scheduled drill) |' in ev) == drill, (key, ev))
        h.check(('| detection time | not measured (before the run) |' in ev) == (not drill), ev)
        h.check(h.report(h.tmp / f'r{i}.json')['drill'] is drill, key)
    r = h.engine('run', h.tmp / 'd3.yaml', '--state-dir', h.tmp / 's9', '--set', 'rehearsal=true',
                 '--evidence', h.tmp / 'e9.md')
    h.check('| detection time | 0 (scheduled drill) |' in (h.tmp / 'e9.md').read_text(), r.stdout)
    f = h.write('bad.yaml', base % 'drill: sometimes\n')
    r = h.engine('validate', f)
    h.check(r.returncode == 2 and 'bad.yaml:3:8: error: drill must be true' in r.stderr,
            r.stdout + r.stderr)


@suite.test
def test_refusal_said_once(h):
    f = h.write('refuse.yaml', 'version: 1\nname: refused\nguards:\n  protected_databases: [prod]\n'
                'steps:\n  - id: wipe\n    uses: shell\n    with: {command: "dropdb prod"}\n')
    r = h.engine('run', f, '--state-dir', h.tmp / 'state')
    h.check(r.returncode == 3, r.stdout + r.stderr)
    said = "database 'prod' is protected by guards.protected_databases"
    h.check(r.stdout.count(said) == 1, r.stdout)
    lines = r.stdout.splitlines()
    at = next(i for i, l in enumerate(lines) if l.startswith('!! wipe'))
    h.check(said in lines[at + 1], r.stdout)  # under the step's line


@suite.test
def test_floats_print_shortest(h):
    """A float prints as the shortest text that reads back as the same
    number: 16.8, not 16.800000000000001."""
    f = h.write('floats.yaml', '''version: 1
name: floats
steps:
  - id: measure
    uses: lua
    with: {script: "return { lag = 16.8, ratio = 0.1 + 0.2, t = { x = 2.5 } }"}
  - id: say
    uses: shell
    with: {command: "echo ${steps.measure.outputs.lag} ${steps.measure.outputs.ratio} '${steps.measure.outputs.t}'"}
''')
    r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r.json')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    rep = h.report(h.tmp / 'r.json')
    h.check(rep['steps']['say']['outputs']['stdout'] == '16.8 0.30000000000000004 {"x":2.5}\n',
            rep['steps']['say']['outputs'])
    h.check('lag=16.8' in r.stdout and '16.800000000000001' not in r.stdout, r.stdout)


def test_plugins(h):
    """A directory holding the test plugin testgood (lists of typed items)."""
    build = pathlib.Path(os.environ.get('ENGINE_BIN', ROOT / 'build/core/engine')).parent.parent
    g = h.tmp / 'good'
    g.mkdir(exist_ok=True)
    if not (g / 'test_good.so').exists():
        (g / 'test_good.so').symlink_to(build / 'tests' / 'plugins' / 'test_good.so')
    return g


@suite.test
def test_yaml_traps_are_caught_before_anything_runs(h):
    """Valid YAML that means something else than what was written: a ' #'
    comment inside one-line Lua, a check that cannot pass, shell ${...:-}
    in a command. Each is an error with file:line:col; nothing runs."""
    f = h.write('traps.yaml', 'version: 1\nname: traps\nsteps:\n'
                '  - id: count\n    uses: lua\n    with: {script: "return {items = {1, 2, 3}}"}\n'
                '    check: return #outputs.items == 3, "three items"\n'
                '  - id: later\n    uses: shell\n    with: {command: "true"}\n'
                '    if: steps.count.status == "ok" # only then\n'
                '    check:\n'
                '  - id: back\n    uses: shell\n'
                '    with: {command: "tar -C ${BACKUP_DIR:-/tmp} -cf x.tar ."}\n'
                '    check: return\n')
    r = h.engine('validate', f)
    h.check(r.returncode == 2 and 'traps.yaml: 5 errors' in r.stdout, r.stdout + r.stderr)
    for want in ("traps.yaml:7:12: error: step 'count': 'check': the ' #' after 'return' on "
                 "this line starts a YAML comment, so the code ends there",
                 "traps.yaml:11:9: error: step 'later': 'if': the ' #' after "
                 "'steps.count.status == \"ok\"'",
                 "traps.yaml:12:11: error: step 'later': 'check' is empty",
                 "traps.yaml:15:21: error: step 'back': parameter 'command': "
                 "'${BACKUP_DIR:-/tmp}' is shell syntax, not an engine expression (<name> "
                 "expected near '-')",
                 "a literal '${' is written '$${' ($${BACKUP_DIR:-/tmp} reaches the shell as "
                 "${BACKUP_DIR:-/tmp})",
                 "traps.yaml:16:12: error: step 'back': 'check' is a bare 'return'"):
        h.check(want in r.stderr, f'expected {want!r} in {r.stderr}')
    r = h.engine('run', f, '--state-dir', h.tmp / 'state')
    h.check(r.returncode == 2 and not (h.tmp / 'state').exists(), r.stdout + r.stderr)
    # written as the message says, the same runbook runs
    fixed = (f.read_text()
             .replace('check: return #outputs.items == 3, "three items"',
                      'check: \'return #outputs.items == 3, "three items"\'')
             .replace(' # only then', '').replace('    check:\n', '')
             .replace('${BACKUP_DIR:-/tmp}', '$${BACKUP_DIR:-/tmp}')
             .replace('    check: return\n', '    check: return outputs.exit_code == 0\n')
             .replace('-cf x.tar .', '-cf /dev/null .'))
    f = h.write('fixed.yaml', fixed)
    r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r.json',
                 env={'BACKUP_DIR': str(h.tmp)})
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(all(s['status'] == 'ok' for s in h.report(h.tmp / 'r.json')['steps'].values()),
            h.report(h.tmp / 'r.json'))


@suite.test
def test_list_elements_typed_and_list_text_refused(h):
    """A list's elements are converted to the type its action declares; a
    list parameter given text that is a list written as text is refused:
    at validate time when the value is literal, when the step starts when
    it comes from a template."""
    g = test_plugins(h)
    f = h.write('typed.yaml', 'version: 1\nname: typed\nparams:\n'
                '  port: {type: int, default: 5432}\n  https: "443"\nsteps:\n'
                '  - id: c\n    uses: testgood.checked\n    with:\n'
                '      ports: ["80", "${params.https}"]\n'
                '      argv: [psql, -p, "${params.port}", true, 1.5]\n')
    r = h.engine('run', f, '--plugin-path', g, '--state-dir', h.tmp / 'state',
                 '--report', h.tmp / 'r.json')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    v = h.report(h.tmp / 'r.json')['steps']['c']['outputs']['value']
    h.check(v['ports'] == [80, 443] and v['argv'] == ['psql', '-p', '5432', 'true', '1.5'], v)
    r = h.engine('plugins', 'testgood.checked', '--plugin-path', g)
    h.check('list of int' in r.stdout and 'any or list of string' in r.stdout, r.stdout)
    # literal: validate says it
    f = h.write('lit.yaml', 'version: 1\nname: lit\nsteps:\n'
                '  - id: c\n    uses: testgood.checked\n    with:\n'
                '      ports: |\n        [80, 443]\n')
    r = h.engine('validate', f, '--plugin-path', g)
    h.check(r.returncode == 2 and "lit.yaml:7:14: error: step 'c': parameter 'ports' of "
            "testgood.checked: expected a list, got the text '[80, 443]\\n', which looks "
            "like a list but is one string" in r.stderr, r.stderr)
    # from a step's output: the step fails when it starts, before acting
    f = h.write('late.yaml', 'version: 1\nname: late\nsteps:\n'
                '  - id: a\n    uses: lua\n    with: {script: "return {text = \'[80, 443]\'}"}\n'
                '  - id: c\n    uses: testgood.checked\n    with:\n'
                '      ports: ${steps.a.outputs.text}\n')
    r = h.engine('run', f, '--plugin-path', g, '--state-dir', h.tmp / 'state',
                 '--report', h.tmp / 'late.json')
    h.check(r.returncode == 1, r.stdout + r.stderr)
    c = h.report(h.tmp / 'late.json')['steps']['c']
    h.check(c['status'] == 'failed' and "parameter 'ports' of testgood.checked: expected a "
            "list, got the text '[80, 443]', which looks like a list but is one string"
            in c['error'] and not c.get('outputs'), c)


@suite.test
def test_booleans_from_the_environment_and_set(h):
    """ALLOW_EMPTY_PROD_VOLUME=1: 1/0 and yes/no from the environment and
    --set; the runbook's own YAML and a params file stay true/false."""
    f = h.write('b.yaml', 'version: 1\nname: b\nparams:\n'
                '  allow: {type: bool, env: ALLOW_EMPTY_PROD_VOLUME, default: false}\n'
                'steps:\n  - id: s\n    uses: lua\n    with: {script: "return {allow = params.allow}"}\n')

    def allow(*args, env=None):
        r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r.json',
                     *args, env=env)
        if r.returncode != 0:
            return r
        return h.report(h.tmp / 'r.json')['steps']['s']['outputs']['allow']

    for text, want in (('1', True), ('0', False), ('yes', True), ('No', False),
                       ('TRUE', True), ('false', False)):
        h.check(allow(env={'ALLOW_EMPTY_PROD_VOLUME': text}) is want, text)
        h.check(allow('--set', f'allow={text}') is want, text)
    for text in ('on', 'y', '2', ''):
        r = allow('--set', f'allow={text}')
        h.check(r.returncode == 2 and "parameter 'allow' (from --set): expected true or false"
                in r.stderr and 'true/false, 1/0 or yes/no' in r.stderr, r.stderr)
    r = allow(env={'ALLOW_EMPTY_PROD_VOLUME': 'off'})
    h.check(r.returncode == 2 and "(from ALLOW_EMPTY_PROD_VOLUME)" in r.stderr, r.stderr)
    pf = h.write('p.yaml', 'allow: "yes"\n')
    r = allow('--params-file', pf)
    h.check(r.returncode == 2 and "(from --params-file): expected true or false, got 'yes'"
            in r.stderr, r.stderr)
    lit = h.write('lit.yaml', f.read_text().replace('default: false', 'default: 1'))
    r = h.engine('validate', lit)
    h.check(r.returncode == 2 and "default: expected true or false, got 1 (write true)"
            in r.stderr, r.stderr)


@suite.test
def test_errors_stop_and_large_runbooks_stay_cheap(h):
    """Like a compiler: 20 errors shown, the rest counted; running out of
    Lua memory said once; 2 MB runbooks cost CPU time within a bound
    relative to a small runbook (tests/bench/large_inputs.py has every
    shape and prints the figures)."""
    import sys
    sys.path.insert(0, str(ROOT / 'tests' / 'bench'))
    import large_inputs
    large_inputs.ENGINE = engine_bin()
    shapes = large_inputs.shapes()
    for name in ('guard_exprs', 'param_refs', 'unknown_needs'):
        what, text, _ = shapes[name]
        t, base, r = large_inputs.measure(name, text, 'validate', h.tmp, timeout=300)
        print(f'{name}: {t:.2f} s CPU, {t / base:.1f}x a small runbook ({base:.3f} s)')
        h.check(r, f'{name} ({what}): still running after 300 s')
        h.check(r.returncode == 2, f'{name}: {r.returncode} {r.stderr[:500]}')
        h.check(t <= large_inputs.RATIO * base,
                f'{name} ({what}): {t:.2f} s CPU, more than {large_inputs.RATIO}x '
                f'the small runbook ({base:.3f} s)')
        lines = r.stderr.splitlines()
        h.check(len(lines) <= 21, f'{name}: {len(lines)} lines: {lines[:3]} ... {lines[-3:]}')
        if name == 'guard_exprs':
            h.check(len(lines) == 1 and 'need more memory than the Lua sandbox allows'
                    in lines[0] and 'not enough memory' not in r.stderr, lines)
        else:
            errors = int(r.stdout.split(': ')[1].split()[0])
            h.check(lines[-1].endswith(f'{name}.yaml: note: {errors - 20} more errors not '
                                       'shown (only the first 20 of each are): fix those '
                                       'and check again'), lines[-1])


if __name__ == '__main__':
    suite.main()
