#!/usr/bin/env python3
"""The layering check (scripts/layers.sh) passes on the tree as built,
prints core's folders bottom up, and fails naming the files and the
symbol when a low core file calls back into the scheduler (a cycle) or a
folder calls into a folder above it (no cycle, still upward).
Usage: test_layers.py SOURCE_ROOT BUILD_ROOT"""
import glob
import json
import os
import shlex
import subprocess
import sys
import tempfile

src, build = sys.argv[1], sys.argv[2]
script = os.path.join(src, 'scripts', 'layers.sh')
failures = 0


def check(name, cond, detail=''):
    global failures
    print(('ok   ' if cond else 'FAIL ') + name)
    if not cond:
        failures += 1
        print(detail)


# 1. the tree as built: no cycle anywhere
r = subprocess.run(['bash', script, '--no-build', build], text=True,
                   capture_output=True)
check('tree has no cycle', r.returncode == 0 and 'CYCLE' not in r.stdout,
      r.stdout + r.stderr)
check('core listed bottom up', 'base/util.c' in r.stdout and
      r.stdout.index('  base/util.c') < r.stdout.index('  exec/sched.c'), r.stdout)
check('folders listed bottom up', 'every call goes down the folders' in r.stdout and
      r.stdout.index('  base/ ') < r.stdout.index('  run/ ') < r.stdout.index('  exec/ ')
      < r.stdout.index('  cli/ '), r.stdout)

cmds = json.load(open(os.path.join(build, 'compile_commands.json')))
tmp = tempfile.mkdtemp(prefix='layers-')


def compile_like(src_rel, body, name):
    """body compiled exactly as the build compiles core/SRC_REL; its object."""
    entry = next(c for c in cmds if c['file'].endswith('core/' + src_rel))
    bad_src = os.path.join(tmp, name + '.c')
    with open(bad_src, 'w') as f:
        f.write(body)
    bad_obj = os.path.join(tmp, name + '.o')
    argv = shlex.split(entry['command'])
    out = []
    skip = False
    for a in argv:  # drop -o X, -c X, -MF X, -MQ X, -MD
        if skip:
            skip = False
            continue
        if a in ('-o', '-c', '-MF', '-MQ'):
            skip = True
            continue
        if a == '-MD':
            continue
        out.append(a)
    r = subprocess.run(out + ['-c', bad_src, '-o', bad_obj], cwd=entry['directory'],
                       text=True, capture_output=True)
    check(name + ' compiles', r.returncode == 0, r.stderr)
    return bad_obj


def core_objects(replace, bad_obj, stem):
    """core's objects with `replace` (an object name) swapped for bad_obj,
    which gets the same name so the check sees the same file."""
    d = os.path.join(tmp, stem)
    os.makedirs(d, exist_ok=True)
    renamed = os.path.join(d, replace)
    os.replace(bad_obj, renamed)
    return [o for o in glob.glob(os.path.join(build, 'core', 'libengine_core.a.p', '*.o'))
            + glob.glob(os.path.join(build, 'core', 'engine.p', '*.o'))
            if not o.endswith('/' + replace)] + [renamed]


core_src = os.path.join(src, 'core')

# 2. a deliberate back-call: run/policy.c (below the scheduler) calling
# eng__sched_start
obj = compile_like('run/policy.c',
                   '#include "%s"\n#include "%s"\n'
                   'void eng__policy_backcall(eng__run *r) { eng__sched_start(r, 0); }\n'
                   % (os.path.join(core_src, 'run', 'policy.c'),
                      os.path.join(core_src, 'exec', 'exec.h')), 'policy_backcall')
r = subprocess.run(['bash', script, '--objects', 'core']
                   + core_objects('run_policy.c.o', obj, 'cycle'),
                   text=True, capture_output=True)
check('back-call fails the check', r.returncode == 1 and 'CYCLE' in r.stdout,
      r.stdout + r.stderr)
check('names the cycle', 'CYCLE between' in r.stdout and 'run/policy.c' in r.stdout
      and 'exec/sched.c' in r.stdout, r.stdout)
check('names the symbol', 'run/policy.c -> exec/sched.c: eng__sched_start' in r.stdout,
      r.stdout)

# 3. a deliberate upward call that makes no cycle: io/http.c calling the
# shell analyser (shell/ sits above io/)
obj = compile_like('io/http.c',
                   '#include "%s"\n#include "%s"\n'
                   'void eng__http_upcall(eng__cmd_analysis *a) { eng__cmd_analysis_free(a); }\n'
                   % (os.path.join(core_src, 'io', 'http.c'),
                      os.path.join(core_src, 'shell', 'shell.h')), 'http_upcall')
r = subprocess.run(['bash', script, '--objects', 'core']
                   + core_objects('io_http.c.o', obj, 'upward'),
                   text=True, capture_output=True)
check('upward call fails the check', r.returncode == 1 and 'CYCLE' not in r.stdout,
      r.stdout + r.stderr)
check('names the folders and the symbol',
      'UPWARD call from io/ into shell/: io/http.c -> shell/analyser.c: '
      'eng__cmd_analysis_free' in r.stdout, r.stdout)
sys.exit(1 if failures else 0)
