#!/usr/bin/env python3
"""The layering check (scripts/layers.sh) passes on the tree as built and
fails, naming the files and the symbol, when a low core file calls back
into the scheduler. Usage: test_layers.py SOURCE_ROOT BUILD_ROOT"""
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
check('core listed bottom up', 'util.c' in r.stdout and
      r.stdout.index('  util.c') < r.stdout.index('  sched.c'), r.stdout)

# 2. a deliberate back-call: policy.c (below the scheduler) calling
# eng__sched_start, compiled exactly as the build compiles policy.c
cmds = json.load(open(os.path.join(build, 'compile_commands.json')))
entry = next(c for c in cmds if c['file'].endswith('core/policy.c'))
tmp = tempfile.mkdtemp(prefix='layers-')
bad_src = os.path.join(tmp, 'policy_backcall.c')
with open(bad_src, 'w') as f:
    f.write('#include "%s"\n#include "%s"\n'
            'void eng__policy_backcall(eng__run *r) { eng__sched_start(r, 0); }\n'
            % (os.path.join(src, 'core', 'policy.c'),
               os.path.join(src, 'core', 'plan.h')))
bad_obj = os.path.join(tmp, 'policy.c.o')
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
check('back-call compiles', r.returncode == 0, r.stderr)
objs = [o for o in glob.glob(os.path.join(build, 'core', 'libengine_core.a.p', '*.o'))
        if not o.endswith('/policy.c.o')] + [bad_obj]
r = subprocess.run(['bash', script, '--objects', 'core'] + objs, text=True,
                   capture_output=True)
check('back-call fails the check', r.returncode == 1 and 'CYCLE' in r.stdout,
      r.stdout + r.stderr)
check('names the cycle', 'CYCLE between' in r.stdout and 'policy.c' in r.stdout
      and 'sched.c' in r.stdout, r.stdout)
check('names the symbol', 'policy.c -> sched.c: eng__sched_start' in r.stdout,
      r.stdout)
sys.exit(1 if failures else 0)
