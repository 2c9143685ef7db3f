"""Point-in-time recovery drills against a real PostgreSQL archiving WAL to a
real pgBackRest repository (POSIX, in a temporary directory; then S3 on
moto behind a TLS terminator): exactly the rows before the target come
back (read with psql on the copy), the measured RPO is the gap the test
made, the copy never archives, the copy and its directory are gone at the
end, refusals happen before pgBackRest runs, and a SIGKILLed restore is
cleaned up. One server and one repository for the whole file."""
import json
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

from harness import Suite, wait_for
from pgserver import PgServer
from s3server import S3Server
from tlsproxy import TlsProxy

suite = Suite(__file__)
ROOT = pathlib.Path(__file__).resolve().parents[2]
STANZA = 'drill'
BUCKET = 'pitr-repo'


def as_postgres(argv):
    return ['runuser', '-u', 'postgres', '--'] + argv if os.geteuid() == 0 else argv


class Primary:
    """A PostgreSQL 15 with archive_command = pgbackrest archive-push into
    two repositories (repo1 POSIX, repo2 S3 on moto behind a TLS
    terminator: pgBackRest requires TLS), a stanza, and a full backup into
    repo1 taken through the engine."""

    def __init__(self):
        self.srv = self.s3 = self.tls = None
        try:
            self._setup()
        except BaseException:
            self.stop()  # nothing of a failed setup stays running
            raise

    def _setup(self):
        self.base = tempfile.mkdtemp(prefix='engine-pitr-')
        os.chmod(self.base, 0o755)
        if os.geteuid() == 0:
            pw = pwd.getpwnam('postgres')
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
        self.srv = PgServer().start(os.path.join(self.base, 'pg'))
        # pgBackRest's list requests carry a '/' in their prefix, which
        # moto's signature check re-quotes wrongly: an unchecked moto
        self.s3 = S3Server(checked=False).start()
        self.s3.make_bucket(BUCKET)
        self.tls = TlsProxy(int(self.s3.endpoint.rsplit(':', 1)[1]), self.base)
        self.repo = os.path.join(self.base, 'repo')
        self.conf = os.path.join(self.base, 'pgbackrest.conf')
        with open(self.conf, 'w') as f:
            f.write(f"""[global]
repo1-path={self.repo}
repo1-bundle=y
log-path={self.base}/log
lock-path={self.base}/lock
spool-path={self.base}/spool
log-level-file=off
compress-type=lz4
start-fast=y
archive-async=y
process-max=2
repo2-type=s3
repo2-bundle=y
repo2-path=/pitr
repo2-s3-bucket={BUCKET}
repo2-s3-endpoint=127.0.0.1
repo2-storage-port={self.tls.port}
repo2-s3-uri-style=path
repo2-storage-verify-tls=n
repo2-s3-region=us-east-1
repo2-s3-key={self.s3.key}
repo2-s3-key-secret={self.s3.secret}
[{STANZA}]
pg1-path={self.srv.data}
pg1-port={self.srv.port}
pg1-socket-path={self.srv.base}
""")
        with open(os.path.join(self.srv.data, 'postgresql.conf'), 'a') as f:
            f.write("\nwal_level = replica\narchive_mode = on\n"
                    f"archive_command = 'pgbackrest --config={self.conf} "
                    f"--stanza={STANZA} archive-push %p'\n")
        self.pgbr('version')
        subprocess.run(as_postgres([f'{self.srv.bindir}/pg_ctl', '-D', self.srv.data,
                                    '-w', '-m', 'fast', 'restart', '-l',
                                    os.path.join(self.srv.base, 'server.log')]),
                       check=True, capture_output=True)
        self.pgbr('stanza-create')
        self.sql('CREATE TABLE t(id int PRIMARY KEY, note text); '
                 "INSERT INTO t SELECT g, 'before the backup' FROM generate_series(1, 100) g")

    def pgbr(self, *args):
        return subprocess.run(as_postgres(['pgbackrest', f'--config={self.conf}',
                                           f'--stanza={STANZA}', *args]),
                              check=True, capture_output=True, text=True).stdout

    def sql(self, q):
        return self.srv.psql(q).strip()

    def archive_files(self):
        """Every file of the stanza's WAL archive, with its size."""
        out = {}
        for d, _, files in os.walk(os.path.join(self.repo, 'archive', STANZA)):
            for n in files:
                out[os.path.join(d, n)] = os.path.getsize(os.path.join(d, n))
        return out

    def switch_and_archive(self):
        """Close the current WAL segment and wait until it is archived."""
        seg = self.sql("SELECT pg_walfile_name(pg_switch_wal())")
        ok = wait_for(lambda: self.sql(
            'SELECT coalesce(last_archived_wal, \'\') FROM pg_stat_archiver') >= seg,
            timeout=30, every=0.05)
        assert ok, f'segment {seg} was not archived'

    def stop(self):
        for part in (self.srv, self.tls, self.s3):
            if part is not None:
                part.stop()
        shutil.rmtree(self.base, ignore_errors=True)


_primary = None
_broken = None


def primary(h):
    """The file's one primary and repository, made at first use (a setup
    that failed once fails every test at once)."""
    global _primary, _broken
    if _broken:
        raise AssertionError('the primary could not be set up: ' + _broken)
    if _primary is None:
        try:
            _primary = Primary()
        except subprocess.CalledProcessError as e:
            _broken = f'{e.cmd}: {e.stdout}{e.stderr}'[-2000:]
            raise AssertionError(_broken) from None
        import atexit
        atexit.register(_primary.stop)
        r = h.engine('run', h.write('backup.yaml', BACKUP), '--state-dir', h.tmp / 'st',
                     '--report', h.tmp / 'b.json', '--set', f'conf={_primary.conf}')
        assert r.returncode == 0, r.stdout + r.stderr
        out = h.report(h.tmp / 'b.json')['steps']['backup']['outputs']
        info = json.loads(_primary.pgbr('info', '--output=json'))
        assert out['label'] == info[0]['backup'][-1]['label'], (out, info)
        assert out['type'] == 'full' and out['size'] > 0
    return _primary


# repo 2 (S3) gets its secret as an option too: it must stay redacted
OPTIONS = ('${params.repo == 2 and {repo = 2, ["repo2-s3-key-secret"] = params.secret}'
           ' or {repo = 1}}')

BACKUP = """version: 1
name: pitr-backup
params:
  conf: { required: true }
  repo: { type: int, default: 1 }
  secret: { default: "", secret: true }
steps:
  - id: check
    uses: pgbackrest.check
    with: { stanza: drill, config: "${params.conf}" }
  - id: backup
    uses: pgbackrest.backup
    with:
      stanza: drill
      config: ${params.conf}
      type: full
      options: OPTIONS
""".replace('OPTIONS', OPTIONS)

# the drill, with psql reading the copy and a write on the promoted copy
DRILL = """version: 1
name: pitr-psql
params:
  conf: { required: true }
  target: { required: true }
  out: { required: true }
  repo: { type: int, default: 1 }
  secret: { default: "", secret: true }
slo:
  rpo: 15m
  rto_from: restore
  recovery_point: ${steps.copy.outputs.replay_timestamp}
  recovery_target: ${steps.copy.outputs.target_time}
steps:
  - id: restore
    uses: pgbackrest.restore
    with:
      stanza: drill
      config: ${params.conf}
      dir: /tmp/pitr-ft-${run.id}
      type: time
      target: ${params.target}
      options: OPTIONS
  - id: copy
    uses: postgres.recover
    recovered: true
    with:
      data_dir: ${steps.restore.outputs.data_dir}
      target_time: ${params.target}
      promote: true
  - id: psql
    uses: shell
    with:
      command: ["psql", "${steps.copy.outputs.url}", "-XAt", "-o", "${params.out}",
                "-c", "SELECT count(*), max(id) FROM t"]
  - id: write
    uses: shell
    with:
      command: ["psql", "${steps.copy.outputs.url}", "-XAt", "-c",
                "CREATE TABLE written_on_copy AS SELECT generate_series(1, 50000) g",
                "-c", "SELECT pg_switch_wal()", "-c", "CHECKPOINT"]
""".replace('OPTIONS', OPTIONS)


def gone(path):
    return not os.path.exists(path)


def server_on(data_dir):
    """A process whose command line names data_dir (a postgres on it, or a
    pgbackrest restoring into it)."""
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\0')
        except OSError:
            continue
        if any(data_dir.encode() in a for a in cmd):
            return True
    return False


def drill_to_a_time(h, p, first, repo=1):
    """Rows first..first+49 before a target time, first+50..first+99 after
    it; the drill from repository `repo` must bring back exactly those
    before, measure the gap as its RPO, archive nothing, leave nothing."""
    p.sql(f"INSERT INTO t SELECT g, 'before the target' FROM generate_series({first}, "
          f"{first + 49}) g")
    committed = time.time()
    time.sleep(1.2)  # the gap the drill must measure as its data loss
    target = p.sql("SELECT to_char(now() AT TIME ZONE 'UTC', "
                   "'YYYY-MM-DD HH24:MI:SS.US+00')")
    gap_ms = (time.time() - committed) * 1000
    p.sql(f"INSERT INTO t SELECT g, 'after the target' FROM generate_series({first + 50}, "
          f"{first + 99}) g")
    expect = p.sql(f'SELECT count(*) FROM t WHERE id < {first + 50}')
    p.switch_and_archive()
    before = (p.archive_files(), p.s3.keys(BUCKET))
    out = h.tmp / 'rows.txt'
    r = h.engine('run', h.write('drill.yaml', DRILL), '--state-dir', h.tmp / 'st',
                 '--report', h.tmp / 'r.json', '--evidence', h.tmp / 'e.md',
                 '--set', f'conf={p.conf}', '--set', f'target={target}',
                 '--set', f'out={out}', '--set', f'repo={repo}',
                 '--set', f'secret={p.s3.secret}', '--allow-destructive', timeout=180)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(out.read_text().strip() == f'{expect}|{first + 49}', out.read_text())
    rep = h.report(h.tmp / 'r.json')
    copy = rep['steps']['copy']['outputs']
    h.check(copy['state'] == 'promoted' and copy['promoted'], copy)
    h.check(copy['recovery_stop'].startswith('before commit'), copy)
    rpo = rep['slo']['rpo_ms']
    h.check(abs(rpo - gap_ms) < 1000, f'RPO {rpo} ms, the test made a gap of {gap_ms:.0f} ms')
    h.check(abs(copy['rpo_ms'] - rpo) <= 1, (copy['rpo_ms'], rpo))
    h.check(rep['slo']['rto_ms'] > 0 and rep['slo']['rpo_met'], rep['slo'])
    ev = (h.tmp / 'e.md').read_text()
    h.check('| data loss (RPO) |' in ev and '| met |' in ev, ev)
    h.check(f"recovery point (last replayed commit) `{copy['replay_timestamp']}`" in ev, ev)
    # the promoted copy wrote and switched WAL: nothing reached a repository
    time.sleep(0.5)
    h.check((p.archive_files(), p.s3.keys(BUCKET)) == before,
            'the copy archived into a repository')
    data, sock = copy['data_dir'], copy['socket_dir']
    h.check(gone(data) and gone(sock), f'{data} or {sock} is still there')
    h.check(not server_on(data), f'a server still runs on {data}')
    audit = next((h.tmp / 'st' / 'runs').iterdir()) / 'audit.jsonl'
    for text in (r.stdout, r.stderr, json.dumps(rep), audit.read_text(), ev):
        h.check(p.s3.secret not in text, 'the S3 secret leaked')
    return rep


@suite.test
def test_drill_to_a_time_restores_exactly_the_rows_before_it(h):
    drill_to_a_time(h, primary(h), 101)


@suite.test
def test_drill_from_an_s3_repository_behind_tls(h):
    p = primary(h)
    r = h.engine('run', h.write('backup.yaml', BACKUP), '--state-dir', h.tmp / 'bst',
                 '--report', h.tmp / 'b.json', '--set', f'conf={p.conf}',
                 '--set', 'repo=2', '--set', f'secret={p.s3.secret}')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(p.s3.secret not in r.stdout + r.stderr, 'the S3 secret leaked')
    label = h.report(h.tmp / 'b.json')['steps']['backup']['outputs']['label']
    h.check(any(label in k for k in p.s3.keys(BUCKET)), 'the backup is not in the bucket')
    drill_to_a_time(h, p, 2001, repo=2)


@suite.test
def test_shipped_runbook_drills_to_the_latest_point(h):
    p = primary(h)
    p.sql("INSERT INTO t VALUES (1000, 'marker')")
    p.switch_and_archive()
    r = h.engine('run', ROOT / 'runbooks' / 'pitr-drill.yaml', '--state-dir', h.tmp / 'st',
                 '--report', h.tmp / 'r.json', '--set', f'stanza={STANZA}',
                 '--set', f'config={p.conf}', '--set', 'marker_table=public.t',
                 '--set', 'min_rows=101', timeout=180)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    rep = h.report(h.tmp / 'r.json')
    info = rep['steps']['info']['outputs']
    h.check(info['wal_max_time'] and info['recovery_point'] == info['wal_max_time'], info)
    h.check(info['latest']['type'] == 'full' and info['version'].startswith('2.'), info)
    counts = rep['steps']['counts']['outputs']
    h.check(counts['tables']['public.t'] == int(p.sql('SELECT count(*) FROM t')), counts)
    h.check(rep['slo']['rpo_ms'] is not None and rep['slo']['met'], rep['slo'])
    h.check('RPO ' in r.stdout and 'RTO ' in r.stdout, r.stdout)
    h.check(gone(rep['steps']['restore']['outputs']['data_dir']), 'the copy is still there')


HEALTH = """version: 1
name: pitr-health
params:
  url: { required: true }
steps:
  - id: health
    uses: postgres.health
    with: { url: "${params.url}", archiver: { warn: 1h } }
"""


@suite.test
def test_health_exposes_archiving_of_the_live_server(h):
    p = primary(h)
    p.switch_and_archive()
    p.sql("INSERT INTO t SELECT g, repeat('x', 500) FROM generate_series(5000, 6000) g")
    written = int(p.sql("SELECT (pg_walfile_name_offset(pg_current_wal_lsn())).file_offset"))
    r = h.engine('run', h.write('health.yaml', HEALTH), '--state-dir', h.tmp / 'st',
                 '--report', h.tmp / 'r.json', '--set', f'url={p.srv.url()}')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    arch = h.report(h.tmp / 'r.json')['steps']['health']['outputs']['checks']['archiver']
    v = arch['value']
    h.check(arch['level'] == 'ok' and v['failed_count'] == 0, arch)
    h.check(v['last_archived_age_s'] < 60, arch)
    # the WAL written since the last switch, not yet archived
    h.check(abs(v['unarchived_bytes'] - written) < 65536, (v, written))
    h.check('bytes not yet archived' in arch['message'], arch)
    p.switch_and_archive()


REFUSE = """version: 1
name: pitr-refuse
params:
  conf: { required: true }
  dir: { required: true }
  mode: { default: "off" }
steps:
  - id: restore
    uses: pgbackrest.restore
    with:
      stanza: drill
      config: ${params.conf}
      dir: ${params.dir}
      archive_mode: ${params.mode}
"""

EXPIRE = """version: 1
name: pitr-expire
params:
  conf: { required: true }
  set: { required: true }
steps:
  - id: expire
    uses: pgbackrest.expire
    with: { stanza: drill, config: "${params.conf}", set: "${params.set}" }
"""


@suite.test
def test_refusals_happen_before_pgbackrest_runs(h):
    p = primary(h)
    full = h.tmp / 'full'
    full.mkdir()
    (full / 'keep.txt').write_text('mine')
    r = h.engine('run', h.write('refuse.yaml', REFUSE), '--state-dir', h.tmp / 'st',
                 '--set', f'conf={p.conf}', '--set', f'dir={full}')
    h.check(r.returncode in (1, 3), r.stdout + r.stderr)
    h.check('is not empty' in r.stdout and 'pgbackrest restore of' not in r.stdout, r.stdout)
    h.check(sorted(os.listdir(full)) == ['keep.txt'], os.listdir(full))
    new = h.tmp / 'new'
    r = h.engine('run', h.write('refuse.yaml', REFUSE), '--state-dir', h.tmp / 'st',
                 '--set', f'conf={p.conf}', '--set', f'dir={new}', '--set', 'mode=on')
    h.check(r.returncode in (1, 3) and "archive-mode 'on'" in r.stdout, r.stdout + r.stderr)
    h.check(not new.exists(), 'the directory was made')
    labels = [b['label'] for b in json.loads(p.pgbr('info', '--output=json'))[0]['backup']]
    r = h.engine('run', h.write('expire.yaml', EXPIRE), '--state-dir', h.tmp / 'st',
                 '--set', f'conf={p.conf}', '--set', f'set={labels[-1]}',
                 '--allow-destructive')
    h.check(r.returncode in (1, 3) and 'newest full' in r.stdout, r.stdout + r.stderr)
    after = [b['label'] for b in json.loads(p.pgbr('info', '--output=json'))[0]['backup']]
    h.check(after == labels, after)


COPY = """version: 1
name: pitr-copy
params:
  conf: { required: true }
  dir: { default: "/tmp/pitr-ft-${run.id}" }
  fail: { type: bool, default: false }
steps:
  - id: restore
    uses: pgbackrest.restore
    with: { stanza: drill, config: "${params.conf}", dir: "${params.dir}" }
  - id: copy
    uses: postgres.recover
    with: { data_dir: "${steps.restore.outputs.data_dir}" }
    check: return not params.fail, "the copy is not what the drill expects"
"""


@suite.test
def test_a_failed_copy_is_stopped_and_removed_when_the_run_ends(h):
    p = primary(h)
    r = h.engine('run', h.write('failed.yaml', COPY), '--state-dir', h.tmp / 'st',
                 '--report', h.tmp / 'r.json', '--set', f'conf={p.conf}', '--set', 'fail=true',
                 timeout=180)
    h.check(r.returncode == 1 and 'the copy is not what the drill expects' in r.stdout,
            r.stdout + r.stderr)
    out = h.report(h.tmp / 'r.json')['steps']['copy']['outputs']
    data, sock = out['data_dir'], out['socket_dir']
    h.check(not server_on(data), f'the failed copy still runs on {data}')
    h.check(gone(data) and gone(sock), f'{data} or {sock} is still there')


@suite.test
def test_sigkill_during_restore_then_cleanup_leaves_nothing(h):
    p = primary(h)
    st = h.tmp / 'st'
    target = f'/tmp/pitr-ft-killed-{os.getpid()}'
    proc = h.popen('run', h.write('killed.yaml', COPY), '--state-dir', st,
                   '--set', f'conf={p.conf}', '--set', f'dir={target}')
    writing = wait_for(lambda: os.path.isdir(target) and len(os.listdir(target)) > 0
                       or proc.poll() is not None, timeout=60, every=0.02)
    h.check(writing and proc.poll() is None, 'the restore never started writing')
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    rid = sorted(os.listdir(st / 'runs'))[0]
    r = h.engine('cleanup', rid, '--state-dir', st)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(gone(target), f'{target} is still there: {r.stdout}')
    h.check(not server_on(target), 'a server or pgbackrest still runs on the copy')


if __name__ == '__main__':
    suite.main()
