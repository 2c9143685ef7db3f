#!/usr/bin/env python3
"""Large inputs stay cheap (printed; exits 1 over the bound).

Every shape below is a runbook (or an inventory) of up to 2 MB built to
hit one costly path: many ${...} expressions (past the Lua memory cap),
thousands of references to thousands of names, unknown names that would
each get a "did you mean" against every step, duplicate needs, long
cycles, diamonds of needs with `require` rules, tens of thousands of
errors. Each is run through `engine validate` (and `engine plan`, or
`engine fleet render`), and its CPU time (user + system of the child, so
a loaded machine does not count) is printed as a multiple of the same
command on a small runbook. The bound is RATIO times the small one: a
path that grows with the square of the input is far past it (the 2 MB
runbook of 190,000 ${1} guards took over 60 s before it was bounded).

    python3 tests/bench/large_inputs.py [SHAPE...]

ENGINE_BIN picks the binary (default build/core/engine). The shapes are
also used by tests/functional/test_core.py."""
import os
import pathlib
import resource
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
ENGINE = os.environ.get('ENGINE_BIN', str(ROOT / 'build/core/engine'))
LIMIT = 2_000_000 - 200  # bytes: every shape stays under 2 MB
RATIO = 200              # the bound: this many times the small runbook
HEAD = 'version: 1\nname: big\n'
STEP = '    uses: shell\n    with: {command: "true"}\n'
SMALL = HEAD + 'steps:\n  - id: a\n' + STEP


def fill(head, unit, tail='', n_max=None):
    """head, then unit(0), unit(1), ... while the text stays under LIMIT
    (and n_max units), then tail."""
    out, size, i = [head], len(head) + len(tail), 0
    while n_max is None or i < n_max:
        u = unit(i)
        if size + len(u) > LIMIT:
            break
        out.append(u)
        size += len(u)
        i += 1
    out.append(tail)
    return ''.join(out)


def steps(n, prefix='s'):
    return ''.join(f'  - id: {prefix}{i}\n{STEP}' for i in range(n))


# name -> (what it is, text, the commands after 'engine', ' and '-separated)
def shapes():
    return {
        'guard_exprs': (
            '190,000 ${1} in a guards list: past the Lua memory cap',
            HEAD + 'guards:\n  protected_databases:\n' +
            '  - ${1}\n' * 190000 + 'steps:\n  - id: a\n' + STEP,
            'validate'),
        'param_refs': (
            '20,000 params, 30,000 references, a third of them unknown',
            fill(HEAD + 'params:\n' + ''.join(f'  p{i}: x\n' for i in range(20000)) +
                 'steps:\n',
                 lambda i: f'  - id: s{i}\n    uses: shell\n    with: {{command: "echo '
                           f'${{params.p{i}}} ${{params.q{i}}} ${{params.p{i * 7 % 20000}}}"}}\n',
                 n_max=10000),
            'validate'),
        'unknown_steps': (
            '6,000 references to unknown steps among 4,000',
            HEAD + 'steps:\n' + steps(4000, 'step-') +
            ''.join(f'  - id: x{i}\n    uses: shell\n    with: {{command: "${{steps.nosuch{i}.status}}"}}\n'
                    for i in range(6000)),
            'validate'),
        'unknown_needs': (
            '10,000 steps, each needing two unknown ones',
            HEAD + 'steps:\n' + ''.join(f'  - id: s{i}\n    uses: shell\n    needs: [n{i}, m{i}]\n'
                                       for i in range(10000)),
            'validate'),
        'needs_repeated': (
            'one step needing 3,000 steps 150,000 times',
            HEAD + 'steps:\n' + steps(3000) + '  - id: last\n' + STEP + '    needs: [' +
            ', '.join(f's{i % 3000}' for i in range(150000)) + ']\n',
            'validate and plan'),
        'chain_checks': (
            '10,000 steps, each with an if, a check and a template on the one before',
            fill(HEAD + 'steps:\n',
                 lambda i: f'  - id: s{i}\n    uses: assert\n    with: {{that: "${{steps.s{max(i - 1, 0)}.status}}"}}\n'
                           f'    check: return outputs\n    if: steps.s{max(i - 1, 0)}.status == "ok"\n',
                 n_max=10000),
            'validate and plan'),
        'finally_reads': (
            '5,000 finally steps reading 5,000 main steps',
            HEAD + 'steps:\n' + ''.join(f'  - id: m{i}\n    uses: lua\n    with: {{script: "return {{}}"}}\n'
                                       for i in range(5000)) +
            'finally:\n' + ''.join(f'  - id: f{i}\n    uses: shell\n    with: {{command: "${{steps.m{i}.outputs.x}}"}}\n'
                                   for i in range(5000)),
            'validate and plan'),
        'unknown_keys': (
            '90,000 unknown keys: errors past the first 20 only counted',
            fill(HEAD + 'steps:\n  - id: a\n    uses: shell\n    with:\n', lambda i: f'      k{i}: 1\n',
                 n_max=90000),
            'validate'),
        'cycle': (
            '10,000 steps in one cycle of needs',
            HEAD + 'steps:\n' + ''.join(f'  - id: s{i}\n{STEP}    needs: [s{(i + 1) % 10000}]\n'
                                       for i in range(10000)),
            'validate'),
        'require_diamonds': (
            '60 steps each needing the two before, a require rule the DAG does not hold',
            HEAD + 'guards:\n  require:\n    - {step: z, before: s59}\n' + 'steps:\n  - id: z\n' + STEP +
            '  - id: s0\n' + STEP + '    needs: []\n  - id: s1\n' + STEP +
            ''.join(f'  - id: s{i}\n{STEP}    needs: [s{i - 1}, s{i - 2}]\n' for i in range(2, 60)),
            'plan'),
        'guard_checks': (
            'guards.checks with 40,000 Lua conditions',
            fill(HEAD + 'guards:\n  checks:\n', lambda i: f'    - {{that: "params == nil or {i} > 0"}}\n',
                 'steps:\n  - id: a\n' + STEP),
            'validate and plan'),
        'one_line': (
            '9,000 steps in one flow list on one line',
            HEAD + 'steps: [' + ','.join('{id: s%d, uses: shell, with: {command: "true"}}' % i
                                        for i in range(9000)) + ']\n',
            'validate and plan'),
        'inventory': (
            '10,000 databases with a mistake in each round (keys, names, schedules)',
            'databases:\n' + ''.join(
                f'  - name: DB_{i}\n    url_secret: s{i}\n    schedule: "0 3 30 2 *"\n'
                f'    runbook: restore-drill.yaml\n    colour: red\n' for i in range(10000)) +
            'defaults:\n  state: s3://engine-state/x\n',
            'fleet render'),
    }


def cpu(args, cwd, timeout=None):
    """CPU seconds of one engine run, and its result (None when it ran
    past timeout seconds and was killed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        r = subprocess.run([ENGINE, *args], cwd=cwd, capture_output=True, text=True,
                           env=dict(os.environ, NO_COLOR='1'), timeout=timeout)
    except subprocess.TimeoutExpired:
        r = None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), r


def command(cmd, path, state):
    args = cmd.split() + [str(path)]
    return args + ['--state-dir', str(state)] if cmd == 'plan' else args


def measure(name, text, cmd, d, timeout=None):
    """(CPU of the shape, CPU of the small runbook, the shape's result or
    None when it ran past timeout seconds)."""
    big, small = d / f'{name}.yaml', d / 'small.yaml'
    big.write_text(text)
    small.write_text(SMALL if cmd != 'fleet render' else
                     'databases:\n  - name: a\n    url_secret: a\n    schedule: "0 3 * * *"\n'
                     '    runbook: restore-drill.yaml\ndefaults:\n  state: s3://engine-state/x\n')
    base = min(cpu(command(cmd, small, d / 'state'), d)[0] for _ in range(3))
    t, r = cpu(command(cmd, big, d / 'state'), d, timeout)
    return t, base, r


def main():
    want = sys.argv[1:]
    d = pathlib.Path(tempfile.mkdtemp(prefix='engine-large-'))
    worst = 0.0
    for name, (what, text, cmds) in shapes().items():
        if want and name not in want:
            continue
        for cmd in cmds.split(' and '):
            t, base, r = measure(name, text, cmd, d, timeout=600)
            ratio = t / max(base, 1e-3) if r else float('inf')
            worst = max(worst, ratio)
            said = (f'exit {r.returncode}, {len(r.stderr.splitlines())} lines on stderr'
                    if r else 'killed after 600 s')
            print(f'{name:17} {len(text) / 1e6:4.2f} MB  engine {cmd:12} {t:6.2f} s CPU '
                  f'({ratio:5.1f}x a small one, bound {RATIO}x)  {said}  -- {what}')
    print(f'worst: {worst:.1f}x the small runbook (bound {RATIO}x)')
    return 1 if worst > RATIO else 0


if __name__ == '__main__':
    sys.exit(main())
