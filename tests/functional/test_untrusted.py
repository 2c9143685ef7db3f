"""Untrusted input, round 2: plan stays bounded, a damaged journal record
is never forgotten in silence, an unkeyed audit log's last record is
checked against the head the run printed, and a runbook file means
exactly what it says (one document, no explicit tags)."""
import json
import pathlib
import re
import time

from harness import Suite

suite = Suite(__file__)

LOOPS = 'version: 1\nname: loops\nsteps:\n' + ''.join(
    f'  - id: s{i}\n    uses: sleep\n'
    '    if: ${ (function() while true do end end)() }\n'
    '    with: {for: 1ms}\n' for i in range(10))


@suite.test
def test_plan_of_looping_conditions_is_bounded(h):
    """Ten conditions that never finish: plan finishes within its budget
    for conditions (2 s, documented) plus start-up, and shows them as
    decided when the step is reached."""
    rb = h.write('loops.yaml', LOOPS)
    t0 = time.time()
    r = h.engine('plan', rb, timeout=60)
    took = time.time() - t0
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(took < 6, f'plan took {took:.1f}s')
    h.check(r.stdout.count('runs if its condition holds then') == 10, r.stdout)


def drill_run(h, st, db):
    """A kept restore (a recovered database) recorded in st: the run id."""
    src = h.source_db('untrusted_src')
    dump = h.tmp / 'src.dump'
    r = h.engine('run', h.write('d.yaml', 'version: 1\nname: d\nparams:\n'
                                '  url: {env: DATABASE_URL, secret: true}\nsteps:\n'
                                '  - id: d\n    uses: postgres.dump\n'
                                f'    with: {{url: "${{params.url}}", file: "{dump}"}}\n'),
                 '--state-dir', h.tmp / 's0', env={'DATABASE_URL': src})
    h.check(r.returncode == 0, r.stdout + r.stderr)
    rb = h.write('r.yaml', 'version: 1\nname: recover\nparams:\n'
                 '  url: {env: DATABASE_URL, secret: true}\nsteps:\n'
                 '  - id: restore\n    uses: postgres.restore\n'
                 f'    with: {{url: "${{params.url}}", file: "{dump}", database: "{db}"}}\n'
                 '  - id: fail\n    uses: assert\n    with: {that: false, message: stop}\n')
    r = h.engine('run', rb, '--state-dir', st, env={'DATABASE_URL': src})
    h.check(r.returncode == 1, r.stdout + r.stderr)
    return next((st / 'runs').iterdir()).name, src


@suite.test
def test_damaged_journal_record_is_named_and_stops_cleanup(h):
    """One byte of the restored database's intent changed: `engine runs`
    counts it among the leftovers, `cleanup --dry-run` and `cleanup` name
    the line and what can be read of it and exit 1, and nothing is removed
    until a person passes --accept-damaged."""
    st = h.tmp / 'st'
    db = 'untrusted_damaged_db'
    h.pg.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    try:
        rid, src = drill_run(h, st, db)
        jf = st / 'runs' / rid / 'journal'
        lines = jf.read_text().splitlines(True)
        k = next(i for i, l in enumerate(lines) if '"intent"' in l and db in l)
        lines[k] = lines[k].replace('{', '[', 1)  # one byte
        jf.write_text(''.join(lines))
        r = h.engine('runs', '--state-dir', st)
        row = next(l for l in r.stdout.splitlines() if l.startswith(rid))
        h.check(row.split()[-1] == '1', r.stdout)  # a resource that may exist
        h.check(r.returncode == 1 and f'journal line {k + 1} is damaged' in r.stderr,
                r.stdout + r.stderr)
        env = {'DATABASE_URL': src}
        r = h.engine('cleanup', rid, '--state-dir', st, '--dry-run', env=env)
        h.check(r.returncode == 1, r.stdout + r.stderr)
        h.check(f'journal line {k + 1} is damaged' in r.stderr, r.stderr)
        h.check(f'database' in r.stderr and db in r.stderr
                and 'postgres.drop_database' in r.stderr, r.stderr)
        h.check('damaged' in r.stdout and 'a person' in r.stdout, r.stdout)
        r = h.engine('cleanup', rid, '--state-dir', st, env=env)
        h.check(r.returncode == 1 and '--accept-damaged' in r.stderr, r.stdout + r.stderr)
        h.check('nothing to clean up' not in r.stdout, r.stdout)
        h.check(h.db_exists(db), 'removed from a guess')
        r = h.engine('cleanup', rid, '--state-dir', st, '--accept-damaged', env=env)
        h.check(r.returncode == 0, r.stdout + r.stderr)
        h.check(h.db_exists(db), 'a damaged record is never undone')
    finally:
        h.pg.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


@suite.test
def test_unkeyed_audit_log_last_record_checked_against_head(h):
    rb = h.write('ok.yaml', 'version: 1\nname: ok\nsteps:\n'
                 '  - id: a\n    uses: sleep\n    with: {for: 1ms}\n')
    r = h.engine('run', rb, '--state-dir', h.tmp / 'st', '--report', h.tmp / 'r.json')
    h.check(r.returncode == 0, r.stdout + r.stderr)
    head = re.search(r'chain head ([0-9a-f]{64})', r.stdout).group(1)
    rep = h.report(h.tmp / 'r.json')
    h.check(rep['audit_head'] == head, (rep['audit_head'], head))
    log = next((h.tmp / 'st' / 'runs').iterdir()) / 'audit.jsonl'
    r = h.engine('audit', 'verify', log, '--head', head)
    h.check(r.returncode == 0 and 'as expected' in r.stdout, r.stdout + r.stderr)
    # the last record changed (ok made failed): the chain alone cannot tell
    lines = log.read_text().splitlines(True)
    last = json.loads(lines[-1])
    last['status'], last['exit_code'] = 'failed', 1
    lines[-1] = json.dumps(last, sort_keys=True, separators=(',', ':')) + '\n'
    log.write_text(''.join(lines))
    r = h.engine('audit', 'verify', log)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    r = h.engine('audit', 'verify', log, '--head', head)
    h.check(r.returncode == 1 and f'not {head}' in r.stdout, r.stdout + r.stderr)
    r = h.engine('audit', 'verify', log, '--head', 'nothex')
    h.check(r.returncode == 2 and '64 hex digits' in r.stderr, r.stderr)


@suite.test
def test_runbook_is_one_document_without_tags(h):
    base = ('version: 1\nname: a\nsteps:\n  - id: s\n    uses: sleep\n'
            '    with: {for: 1ms}\n')
    two = h.write('two.yaml', base + '---\nthis: [is not: valid\n')
    r = h.engine('validate', two)
    h.check(r.returncode == 2 and 'two.yaml:' in r.stderr
            and 'a second YAML document' in r.stderr, r.stderr)
    two_ok = h.write('two_ok.yaml', base + '---\nversion: 1\n')
    r = h.engine('validate', two_ok)
    h.check(r.returncode == 2 and 'two_ok.yaml:7:1:' in r.stderr, r.stderr)
    for tag in ('!!binary aGk=', '!!null ~', '!!python/object:os.system ls', '!mine x'):
        f = h.write('tag.yaml', base.replace('{for: 1ms}', '{for: 1ms}\n    name: ' + tag))
        r = h.engine('validate', f)
        h.check(r.returncode == 2 and 'tag.yaml:7:11: error: explicit YAML tag' in r.stderr,
                tag + ': ' + r.stderr)
    ok = h.write('str.yaml', base.replace('{for: 1ms}', '{for: !!str 1ms}'))
    r = h.engine('validate', ok)
    h.check(r.returncode == 0, r.stdout + r.stderr)


if __name__ == '__main__':
    suite.main()
