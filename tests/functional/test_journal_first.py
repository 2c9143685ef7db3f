"""Journal first: every plugin records a resource's intent in the run's
journal BEFORE it creates the resource, and creates nothing when the
intent cannot be written. Each test puts the run's state on a small tmpfs,
fills it with a first step (then uses up the journal's last page with
no-op steps), and runs a creating step: that step must fail naming the
journal, the run must exit 1, and the real peer (moto, Podman's Docker
API, the local file system and process table) must show that nothing was
created."""
import glob
import json
import os
import pathlib
import subprocess
import time

from harness import Suite, tmpfs, umount

suite = Suite(__file__)
PID = os.getpid()

# A step that fills the run directory's file system, then steps whose
# journal records use up the journal file's last page (as in test_faults).
FILL = ('  - id: fill\n    uses: shell\n'
        '    with: {command: "head -c 100000000 /dev/zero > $ENGINE_RUN_DIR/filler || true"}\n'
        + ''.join(f'  - {{id: n{i}, uses: sleep, with: {{for: 1ms}}}}\n' for i in range(60)))


def run_full(h, d, body, env=None, name='rb.yaml'):
    """Run `body` (the creating steps) after FILL with the state on tmpfs
    d; the completed process and the report."""
    rb = h.write(name, f'version: 1\nname: journal-first\nsteps:\n{FILL}{body}')
    rep = h.tmp / (name + '.json')
    r = h.engine('run', rb, '--state-dir', d / 'state', '--report', rep, env=env,
                 timeout=180)
    return r, (json.loads(rep.read_text()) if rep.exists() else None)


def check_failed_on_journal(h, r, rep, *steps):
    text = r.stdout + r.stderr
    h.check(r.returncode == 1, f'exit {r.returncode}: {text}')
    h.check(rep is not None, 'no report: ' + text)
    for s in steps:
        st = rep['steps'][s]
        h.check(st['status'] == 'failed', st)
        h.check('journal' in (st.get('error') or ''), st)
        h.check('No space left' in (st.get('error') or ''), st)


# ---- s3 ---------------------------------------------------------------------------

_srv = None
BUCKET = 'engine-journal-first'


def srv():
    global _srv
    if _srv is None:
        from s3server import S3Server
        _srv = S3Server().start()
        _srv.make_bucket(BUCKET)
    return _srv


@suite.test
def test_s3_full_journal_creates_no_object_and_no_upload(h):
    """s3.put of a small file (one PutObject) and of a large one (a
    multipart upload: its intent comes before CreateMultipartUpload): with
    the journal on a full file system neither object nor upload exists in
    the bucket afterwards."""
    d, why = tmpfs(h)
    if d is None:
        print('SKIP test_s3_full_journal_creates_no_object_and_no_upload:', why)
        return
    try:
        small, big = h.tmp / 'small.bin', h.tmp / 'big.bin'
        small.write_bytes(os.urandom(1000))
        big.write_bytes(os.urandom(6 * 1024 * 1024))  # > one 5 MiB part
        pfx = f'jf{PID}-'  # (no '/': moto mis-checks boto3's signature of such a Prefix)
        body = (f'  - id: small\n    uses: s3.put\n'
                f'    with: {{file: "{small}", url: "s3://{BUCKET}/{pfx}small.bin"}}\n'
                f'  - id: big\n    uses: s3.put\n    if: always()\n'
                f'    with: {{file: "{big}", url: "s3://{BUCKET}/{pfx}big.bin", '
                f'part_size: 5242880, concurrency: 1}}\n')
        r, rep = run_full(h, d, body, env=srv().env())
        c = srv().client()
        objs = c.list_objects_v2(Bucket=BUCKET, Prefix=pfx).get('Contents', [])
        h.check(objs == [], f'objects created without their journal record: {objs}')
        ups = [u for u in c.list_multipart_uploads(Bucket=BUCKET).get('Uploads', [])
               if u['Key'].startswith(pfx)]
        h.check(ups == [], f'multipart uploads created without their journal record: {ups}')
        check_failed_on_journal(h, r, rep, 'small', 'big')
    finally:
        umount(d)


# ---- docker -----------------------------------------------------------------------

_pm = None


def pm():
    global _pm
    if _pm is None:
        from podman import Podman
        _pm = Podman(service=True)
    return _pm


@suite.test
def test_docker_full_journal_creates_no_container(h):
    """docker.run (remove: false: a container it made would stay) and
    docker.volume_check (a throwaway container): with the journal on a
    full file system no container is created."""
    d, why = tmpfs(h)
    if d is None:
        print('SKIP test_docker_full_journal_creates_no_container:', why)
        return
    P = pm()
    vol = f'jfvol_{PID}'
    P.run('volume', 'rm', '-f', vol, check=False)
    P.run('volume', 'create', vol)
    run_step, check_step = f'jfrun{PID}', f'jfcheck{PID}'
    try:
        before = set(P.run('ps', '-a', '--format', '{{.ID}}').stdout.split())
        body = (f'  - id: {run_step}\n    uses: docker.run\n'
                f'    with: {{image: "{P.image}", command: "true", remove: false}}\n'
                f'  - id: {check_step}\n    uses: docker.volume_check\n    if: always()\n'
                f'    with: {{volume: {vol}, image: "{P.image}"}}\n')
        env = {'DOCKER_HOST': P.env['DOCKER_HOST'], 'CONTAINERS_CONF': P.env['CONTAINERS_CONF']}
        r, rep = run_full(h, d, body, env=env)
        after = set(P.run('ps', '-a', '--format', '{{.ID}}').stdout.split())
        h.check(after - before == set(), 'containers created without their journal record: '
                + P.run('ps', '-a', '--format', '{{.Names}} {{.Labels}}').stdout)
        check_failed_on_journal(h, r, rep, run_step, check_step)
    finally:
        umount(d)
        for lab in (f'engine.step={run_step}', f'engine.run={check_step}'):
            for cid in P.run('ps', '-a', '--filter', f'label={lab}', '--format',
                             '{{.ID}}').stdout.split():
                P.run('rm', '-f', '-t', '0', cid, check=False)
        P.run('volume', 'rm', '-f', vol, check=False)


# ---- postgres.sandbox -------------------------------------------------------------

def sandbox_traces(run_dirs):
    """Sandbox directories (in the runs' directories and under /tmp) and
    processes that mention them."""
    dirs = set(glob.glob('/tmp/engine-sandbox-*'))
    for rd in run_dirs:
        dirs |= set(glob.glob(os.path.join(rd, 'sandbox-*')))
    procs = [l for l in subprocess.run(['ps', '-eo', 'pid,args'], capture_output=True,
                                       text=True).stdout.splitlines()
             if 'engine-sandbox-' in l or any(rd in l for rd in run_dirs)]
    return dirs, procs


@suite.test
def test_sandbox_full_journal_creates_no_cluster(h):
    """postgres.sandbox: with the journal on a full file system neither
    the sandbox directory nor a server is left, and the step did not make
    one (it fails on the journal: a sandbox made anyway would have let it
    succeed, and been removed at the run's end)."""
    d, why = tmpfs(h)
    if d is None:
        print('SKIP test_sandbox_full_journal_creates_no_cluster:', why)
        return
    dirs0, procs0 = sandbox_traces([])
    try:
        r, rep = run_full(h, d, '  - id: sandbox\n    uses: postgres.sandbox\n')
        runs = glob.glob(str(d / 'state' / 'runs' / '*'))
        h.check(len(runs) == 1, runs)
        dirs, procs = sandbox_traces(runs)
        procs0 = set(procs0)
        h.check(dirs - dirs0 == set(), f'sandbox made without its journal record: {dirs - dirs0}')
        h.check([p for p in procs if p not in procs0] == [], f'processes left: {procs}')
        h.check(not glob.glob(os.path.join(runs[0], 'sandbox-*')), os.listdir(runs[0]))
        check_failed_on_journal(h, r, rep, 'sandbox')
        log = rep['steps']['sandbox'].get('error', '')
        h.check('sandbox' in log, log)
    finally:
        # best effort: a server a broken build left running
        for dd in glob.glob(str(d / 'state' / 'runs' / '*' / 'sandbox-*' / 'data')) + \
                [x + '/data' for x in set(glob.glob('/tmp/engine-sandbox-*')) - dirs0]:
            if os.path.exists(os.path.join(dd, 'postmaster.pid')):
                subprocess.run(['runuser', '-u', 'postgres', '--',
                                '/usr/lib/postgresql/15/bin/pg_ctl', '-D', dd, '-m',
                                'immediate', 'stop'], capture_output=True)
        umount(d)


if __name__ == '__main__':
    try:
        suite.main()
    finally:
        if _pm is not None:
            _pm.stop()
