#!/usr/bin/env python3
"""pitr_drill.py - the point-in-time recovery drill, the engine against the
same pgBackRest commands typed by hand in a shell script.

One run, one PostgreSQL server archiving to one pgBackRest POSIX
repository (the functional tests' setup, tests/functional/test_pitr.py),
a database of at least 300 MB (generated text, not blanks), a full
backup, then ~WAL_MB of WAL written after it, a target time, and rows
after the target. Prints figures; nothing is asserted.

1. End to end, median of RUNS alternating pairs:
   * engine: runbooks/pitr-drill.yaml to the target (info, restore into a
     scratch directory, the copy started and waited for at the target,
     row counts, the copy stopped and removed);
   * shell: pgbackrest restore --type=time --target-action=pause
     --archive-mode=off, the same settings appended, pg_ctl start -w, a
     psql loop until pg_get_wal_replay_pause_state() = 'paused', a count,
     pg_ctl stop, rm -rf.
2. Replay rate: WAL bytes from the backup's stop LSN to the target, over
   the time the copy took from its start to the target (consistent_ms).
3. RPO accuracy: the measured data loss against the gap the bench made.

    python3 tests/bench/pitr_drill.py [--engine build/core/engine]
        [--runs 3] [--db-mb 320] [--wal-mb 200]
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / 'tests' / 'functional'))
import test_pitr  # noqa: E402

SHELL = r"""set -eu
DIR=$1; SOCK=$2; T=$3; CONF=$4
B=/usr/lib/postgresql/15/bin
mkdir -m 700 "$DIR" "$SOCK"; chown postgres: "$DIR" "$SOCK"
runuser -u postgres -- pgbackrest --config="$CONF" --stanza=drill restore \
  --pg1-path="$DIR" --type=time "--target=$T" --target-action=pause --archive-mode=off
cat >> "$DIR/postgresql.auto.conf" <<EOF
archive_mode = 'off'
listen_addresses = ''
port = 5432
unix_socket_directories = '$SOCK'
hot_standby = 'on'
EOF
echo 'local all all trust' > "$DIR/pg_hba.conf"
runuser -u postgres -- $B/pg_ctl start -D "$DIR" -l "$SOCK/server.log" -w -t 3600 >/dev/null
until [ "$(psql -h "$SOCK" -U postgres -XAtc "SELECT pg_get_wal_replay_pause_state()")" = paused ]; do
  sleep 0.1
done
psql -h "$SOCK" -U postgres -XAtc "SELECT count(*) FROM big" >/dev/null
runuser -u postgres -- $B/pg_ctl stop -D "$DIR" -m fast -w >/dev/null
rm -rf "$DIR" "$SOCK"
"""


def load(p, db_mb, wal_mb):
    rows = db_mb * 1024 * 1024 // 230
    p.sql("CREATE TABLE big(id bigint PRIMARY KEY, v text); "
          f"INSERT INTO big SELECT g, md5(g::text) || repeat(md5((g * 7)::text), 5) "
          f"FROM generate_series(1, {rows}) g")
    size = int(p.sql("SELECT pg_database_size(current_database())"))
    t0 = time.time()
    p.pgbr('--type=full', 'backup')
    backup_s = time.time() - t0
    info = json.loads(p.pgbr('info', '--output=json'))[0]['backup'][-1]
    more = wal_mb * 1024 * 1024 // 230
    p.sql(f"INSERT INTO big SELECT g, md5(g::text) || repeat(md5((g * 3)::text), 5) "
          f"FROM generate_series({rows + 1}, {rows + more}) g")
    committed = time.time()
    time.sleep(1.0)
    target = p.sql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US+00')")
    gap_ms = (time.time() - committed) * 1000
    wal = int(p.sql(f"SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '{info['lsn']['stop']}')"))
    p.sql("INSERT INTO big VALUES (-1, 'after the target')")
    p.switch_and_archive()
    return size, backup_s, target, gap_ms, wal


def engine_run(args, p, target, work, i):
    st = work / f'st{i}'
    rep = work / f'r{i}.json'
    env = dict(os.environ, ENGINE_PLUGIN_PATH=str(pathlib.Path(args.engine).parent.parent
                                                 / 'plugins'))
    t0 = time.time()
    r = subprocess.run([args.engine, 'run', str(ROOT / 'runbooks' / 'pitr-drill.yaml'),
                        '--state-dir', str(st), '--report', str(rep),
                        '--set', 'stanza=drill', '--set', f'config={p.conf}',
                        '--set', f'target={target}', '--set', 'promote=false',
                        '--set', 'scratch_dir=/tmp/pitr-bench-engine'],
                       capture_output=True, text=True, env=env)
    took = time.time() - t0
    if r.returncode != 0:
        raise SystemExit('engine drill failed:\n' + r.stdout + r.stderr)
    return took, json.loads(rep.read_text())


def shell_run(p, target):
    t0 = time.time()
    subprocess.run(['bash', '-c', SHELL, 'drill', '/tmp/pitr-bench-shell',
                    '/tmp/pitr-bench-sock', target, p.conf], check=True)
    return time.time() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--engine', default=str(ROOT / 'build' / 'core' / 'engine'))
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--db-mb', type=int, default=320)
    ap.add_argument('--wal-mb', type=int, default=200)
    args = ap.parse_args()
    p = test_pitr.Primary()
    try:
        size, backup_s, target, gap_ms, wal = load(p, args.db_mb, args.wal_mb)
        print(f'database {size / 1e6:.0f} MB, full backup {backup_s:.1f} s, '
              f'{wal / 1e6:.0f} MB of WAL from the backup to the target')
        work = pathlib.Path(tempfile.mkdtemp(prefix='pitr-bench-'))
        eng, sh, rates, rpos = [], [], [], []
        for i in range(args.runs):
            took, rep = engine_run(args, p, target, work, i)
            eng.append(took)
            copy = rep['steps']['copy']['outputs']
            rates.append(wal / 1e6 / (copy['consistent_ms'] / 1000))
            rpos.append(rep['slo']['rpo_ms'])
            sh.append(shell_run(p, target))
            print(f'  run {i + 1}: engine {took:.1f} s (restore '
                  f"{rep['steps']['restore']['duration_ms'] / 1000:.1f} s, copy at "
                  f"target {copy['consistent_ms'] / 1000:.1f} s), shell {sh[-1]:.1f} s")
        me, ms = statistics.median(eng), statistics.median(sh)
        print(f'PITR drill end to end: engine {me:.1f} s, shell {ms:.1f} s, '
              f'ratio {me / ms:.2f} (median of {args.runs})')
        print(f'replay: {statistics.median(rates):.0f} MB/s of WAL (start of the copy '
              f'to its target, median)')
        print(f'RPO measured {statistics.median(rpos):.0f} ms for a gap of '
              f'{gap_ms:.0f} ms (difference {statistics.median(rpos) - gap_ms:.0f} ms)')
    finally:
        p.stop()


if __name__ == '__main__':
    main()
