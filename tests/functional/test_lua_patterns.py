"""Lua's pattern functions under the sandbox's limits: a pattern that
backtracks for minutes in liblua's matcher ("a?" x30 .. "a" x30 on "a" x30)
stops at the step's timeout, at SIGTERM and at the evaluation's budget
(the sandbox's own matcher checks them as it works; core/expr/lua_match.c).
Before, the step ran 73 s past its 5 s timeout, SIGTERM took 43 s and
`engine plan` hung on the pattern in an `if:`."""
import glob
import json
import signal
import time

from harness import Suite

suite = Suite(__file__)

# ~2^30 backtracking steps in liblua: minutes
COSTLY = '("a"):rep(30):find(("a?"):rep(30) .. ("a"):rep(30))'

STEP = f"""version: 1
name: pattern-timeout
steps:
  - id: match
    uses: lua
    timeout: 5s
    with:
      script: |
        local s = ("a"):rep(30)
        return {{ found = {COSTLY},
                  n = select(2, s:gsub(("a?"):rep(30) .. ("a"):rep(30), "")) }}
finally:
  - id: fin
    uses: shell
    with:
      command: echo done > "$ENGINE_RUN_DIR/finally-ran"
"""


def run_dir(h):
    runs = glob.glob(str(h.tmp / 'state' / 'runs' / '*'))
    assert len(runs) == 1, runs
    return runs[0]


@suite.test
def test_pattern_stops_at_step_timeout(h):
    rb = h.write('rb.yaml', STEP)
    t0 = time.time()
    r = h.engine('run', rb, '--state-dir', h.tmp / 'state', '--report',
                 h.tmp / 'report.json', timeout=60)
    took = time.time() - t0
    h.check(r.returncode == 1, r.stdout + r.stderr)
    st = h.report(h.tmp / 'report.json')['steps']
    h.check(st['match']['status'] == 'timed_out', st['match'])
    h.check("the step's timeout ran out while Lua was running"
            in st['match']['error'], st['match'])
    # the timeout is 5 s: within a second of it
    h.check(st['match']['duration_ms'] < 6000, st['match']['duration_ms'])
    h.check(st['fin']['status'] == 'ok', st['fin'])
    h.check(took < 15, f'the run took {took:.1f}s')
    print(f"     timed_out after {st['match']['duration_ms']} ms (run {took:.2f}s)")


@suite.test
def test_sigterm_stops_pattern(h):
    rb = h.write('rb.yaml', STEP)
    p = h.popen('run', rb, '--state-dir', h.tmp / 'state', '--grace', '3s')
    # the step starts with the run (its console line may sit in a pipe's
    # buffer): its audit event says when
    started = None
    deadline = time.time() + 30
    while time.time() < deadline and started is None:
        for f in glob.glob(str(h.tmp / 'state/runs/*/audit.jsonl')):
            for line in open(f).read().splitlines():
                try:
                    ev = json.loads(line)
                except ValueError:  # a line being written
                    continue
                if ev.get('type') == 'step.attempt' and ev.get('step') == 'match':
                    started = time.time()
        time.sleep(0.02)
    h.check(started is not None, 'the step never started')
    time.sleep(max(0, 1 - (time.time() - started)))
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    try:
        out, err = p.communicate(timeout=30)
    except Exception:
        p.kill()
        raise
    took = time.time() - t0
    h.check(p.returncode == 5, f'exit {p.returncode}: {out} {err}')
    # --grace 3s: the process is gone within the grace, and more than a
    # second before the step's own 5 s timeout would have stopped it
    h.check(took < 4, f'exited {took:.1f}s after SIGTERM')
    print(f'     exited {took:.2f}s after SIGTERM')
    h.check(glob.glob(run_dir(h) + '/finally-ran'), out)


@suite.test
def test_plan_stops_pattern_in_condition(h):
    rb = h.write('plan.yaml', f"""version: 1
name: pattern-plan
steps:
  - id: maybe
    uses: shell
    if: {COSTLY} ~= nil
    with:
      command: "true"
""")
    v = h.engine('validate', rb)
    h.check(v.returncode == 0, v.stdout + v.stderr)
    t0 = time.time()
    r = h.engine('plan', rb, env={'ENGINE_LUA_BUDGET_MS': '1000'}, timeout=60)
    took = time.time() - t0
    h.check(r.returncode == 0, r.stdout + r.stderr)
    # the condition could not be decided now: shown as decided later
    h.check('runs if its condition holds then' in r.stdout, r.stdout)
    # the budget (1 s) stops the evaluation
    h.check(took < 4, f'plan took {took:.1f}s')
    print(f'     plan took {took:.2f}s with a 1 s budget')


if __name__ == '__main__':
    suite.main()
