"""slack and pagerduty plugins against a local receiver that answers as
Slack and PagerDuty document (tests/functional/notify_receiver.py)."""
import glob
import json
import os
import pathlib
import time

from harness import Suite, ROOT
from notify_receiver import Receiver

suite = Suite(__file__)
RX = Receiver()

SECRET = 'T0SECRET/B0SECRET/XyzSecretWebhookPart'
TOKEN = 'xoxb-good'


def hook(kind):
    return f'{RX.url}/hooks/{kind}/{SECRET}'


def run(h, text, env=None, name='rb.yaml'):
    f = h.write(name, text)
    rep = h.tmp / (name + '.report.json')
    r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--report', rep,
                 env=env or {})
    return r, json.loads(rep.read_text()) if rep.exists() else None


def posts(prefix):
    return [dict(r, json=json.loads(r['body'])) for r in RX.bodies(prefix)]


def all_text_of_run(h, r):
    """Console, every run file and every request body: where no secret may be."""
    parts = [r.stdout, r.stderr] + [x['body'] + json.dumps(x['headers']) for x in RX.requests
                                    if 'Authorization' not in x['headers']]
    for f in glob.glob(str(h.tmp / 'state' / '**' / '*'), recursive=True):
        if os.path.isfile(f):
            parts.append(pathlib.Path(f).read_text(errors='replace'))
    for f in glob.glob(str(h.tmp / '*.json')):
        parts.append(pathlib.Path(f).read_text())
    return '\n'.join(parts)


FAILING = '''version: 1
name: nightly-drill
steps:
  - id: backup
    uses: shell
    with: {command: "echo backing up"}
  - id: restore
    uses: shell
    with: {command: "echo 'pg_restore: error: could not open input file (postgresql://app:Pw0rdXYZ@db:5432/shop)' >&2; exit 3"}
  - id: verify
    uses: shell
    with: {command: "true"}
finally:
  - id: notify
    uses: slack.post
    with: {summary: true, webhook: "%s"}
'''


@suite.test
def test_failing_drill_summary_names_the_failed_step(h):
    RX.clear()
    r, rep = run(h, FAILING % hook('ok'))
    h.check(r.returncode == 1, r.stdout + r.stderr)
    h.check(rep['steps']['notify']['status'] == 'ok', rep['steps']['notify'])
    p = posts('/hooks/ok')
    h.check(len(p) == 1, RX.requests)
    msg = p[0]['json']
    h.check('restore' in msg['text'] and 'could not open input file' in msg['text'], msg['text'])
    blocks = json.dumps(msg['blocks'])
    h.check('FAILED' in blocks and '`restore`' in blocks and 'could not open input file' in blocks,
            blocks)
    h.check('nightly-drill' in msg['blocks'][0]['text']['text'], msg['blocks'][0])
    h.check(rep['run_id'] in blocks, 'run id missing')
    h.check(p[0]['headers'].get('Content-Type', '').startswith('application/json'), p[0]['headers'])
    text = all_text_of_run(h, r)
    h.check(SECRET not in text, 'the webhook URL leaked')
    # a database URL in the summary keeps everything but its password
    h.check('Pw0rdXYZ' not in p[0]['body'] and 'postgresql://app:' in p[0]['body'] and
            '@db:5432/shop' in p[0]['body'], p[0]['body'])
    # the secret's path is not in what Slack received either
    h.check(SECRET not in p[0]['body'], 'secret in the message')


@suite.test
def test_refused_run_says_refused_and_which_rule(h):
    RX.clear()
    r, rep = run(h, '''version: 1
name: refused-drill
guards:
  protected_databases: [prod]
steps:
  - id: wipe
    uses: shell
    with: {command: "dropdb prod"}
finally:
  - id: notify
    uses: slack.post
    with: {summary: true, webhook: "%s"}
''' % hook('ok'))
    h.check(r.returncode == 3, r.stdout + r.stderr)
    msg = posts('/hooks/ok')[0]['json']
    blocks = json.dumps(msg['blocks'])
    h.check('REFUSED' in blocks and 'protected_databases' in blocks and 'prod' in blocks, blocks)
    h.check('REFUSED' in msg['text'], msg['text'])


@suite.test
def test_rate_limit_retried_after_retry_after(h):
    RX.clear()
    r, rep = run(h, '''version: 1
name: ping
steps:
  - id: say
    uses: slack.post
    with: {text: "drill started", webhook: "%s"}
  - id: flaky
    uses: slack.post
    with: {text: "again", webhook: "%s"}
''' % (hook('ratelimit'), hook('flaky')))
    h.check(r.returncode == 0, r.stdout + r.stderr)
    p = posts('/hooks/ratelimit')
    h.check(len(p) == 2, p)
    h.check(p[1]['time'] - p[0]['time'] >= 0.9, 'did not wait for Retry-After')
    h.check(rep['steps']['say']['outputs']['attempts'] == 2, rep['steps']['say'])
    h.check(len(posts('/hooks/flaky')) == 2, 'a 503 is retried')
    h.check('rate limiting' in r.stdout + r.stderr, r.stdout)


@suite.test
def test_permanent_answers_fail_at_once_with_the_fix(h):
    for kind, words in (('revoked', 'create a new incoming webhook'),
                        ('archived', 'the channel is archived'),
                        ('invalid', 'not valid for Slack')):
        RX.clear()
        r, rep = run(h, 'version: 1\nname: t\nsteps:\n  - id: say\n    uses: slack.post\n'
                        '    with: {text: hi, webhook: "%s"}\n' % hook(kind))
        h.check(r.returncode == 1, r.stdout + r.stderr)
        err = rep['steps']['say']['error']
        h.check(words in err and 'not retried' in err, err)
        h.check(len(RX.requests) == 1, f'{kind}: retried {len(RX.requests)}')
        h.check(SECRET not in err and SECRET not in r.stdout + r.stderr, 'secret in the error')


@suite.test
def test_chat_post_message_thread_and_errors(h):
    RX.clear()
    env = {'SLACK_BOT_TOKEN': TOKEN, 'SLACK_API_URL': RX.url + '/api'}
    r, rep = run(h, '''version: 1
name: threads
steps:
  - id: first
    uses: slack.post
    with: {channel: C0DRILL, text: "drill started"}
  - id: reply
    uses: slack.post
    with: {channel: C0DRILL, text: "drill done", thread_ts: "${steps.first.outputs.ts}"}
  - id: limited
    uses: slack.post
    with: {channel: CRATE, text: "slow down"}
''', env=env)
    h.check(r.returncode == 0, r.stdout + r.stderr)
    p = posts('/api/chat.postMessage')
    h.check(len(p) == 4, [x['json'] for x in p])
    h.check(all(x['headers'].get('Authorization') == 'Bearer ' + TOKEN for x in p), 'auth header')
    h.check(rep['steps']['first']['outputs']['ts'] == p[1]['json']['thread_ts'], p[1]['json'])
    h.check(rep['steps']['first']['outputs']['channel'] == 'C0DRILL', rep['steps']['first'])
    h.check(p[3]['time'] - p[2]['time'] >= 0.9, 'ratelimited answer: waited Retry-After')
    h.check(TOKEN not in all_text_of_run(h, r), 'token leaked')
    r, rep = run(h, 'version: 1\nname: t\nsteps:\n  - id: say\n    uses: slack.post\n'
                    '    with: {channel: CNOPE, text: hi}\n', env=env, name='nope.yaml')
    h.check(r.returncode == 1 and 'channel_not_found' in rep['steps']['say']['error'] and
            'check `channel`' in rep['steps']['say']['error'], rep['steps']['say'])
    r, rep = run(h, 'version: 1\nname: t\nsteps:\n  - id: say\n    uses: slack.post\n'
                    '    with: {channel: C1, text: hi}\n',
                 env=dict(env, SLACK_BOT_TOKEN='xoxb-wrong'), name='auth.yaml')
    h.check(r.returncode == 1 and 'invalid_auth' in rep['steps']['say']['error'] and
            'SLACK_BOT_TOKEN' in rep['steps']['say']['error'], rep['steps']['say'])


@suite.test
def test_summary_of_300_steps_stays_within_slack_limits(h):
    RX.clear()
    steps = ''.join('  - {id: s%03d, needs: [], uses: shell, continue_on_error: true, '
                    'with: {command: "exit %d"}}\n' % (i, i % 2) for i in range(300))
    r, rep = run(h, 'version: 1\nname: big\nsteps:\n' + steps +
                 'finally:\n  - id: notify\n    uses: slack.post\n'
                 '    with: {summary: true, webhook: "%s"}\n' % hook('ok'))
    h.check(rep['steps']['notify']['status'] == 'ok', rep['steps']['notify'])
    msg = posts('/hooks/ok')[0]['json']
    h.check(len(msg['blocks']) <= 50, len(msg['blocks']))
    for b in msg['blocks']:
        if b['type'] == 'section' and 'text' in b:
            h.check(len(b['text']['text']) <= 3000, len(b['text']['text']))
        if 'fields' in b:
            h.check(len(b['fields']) <= 10, len(b['fields']))
    h.check('truncated' in json.dumps(msg['blocks']), 'no truncation marker')
    h.check('150 failed' in json.dumps(msg['blocks']), 'counts by status')
    # many user blocks: capped at 50 with a marker
    RX.clear()
    blocks = json.dumps([{'type': 'section', 'text': {'type': 'mrkdwn', 'text': 'b%d' % i}}
                         for i in range(70)])
    r, rep = run(h, 'version: 1\nname: t\nsteps:\n  - id: say\n    uses: slack.post\n'
                    '    with: {text: many, webhook: "%s", blocks: %s}\n' % (hook('ok'), blocks),
                 name='blocks.yaml')
    msg = posts('/hooks/ok')[0]['json']
    h.check(r.returncode == 0 and len(msg['blocks']) == 50 and
            '21 more blocks' in json.dumps(msg['blocks'][-1]), msg['blocks'][-1])


INCIDENT = '''version: 1
name: incident-restore
slo:
  rto: 1h
  rpo: 15m
  backup_time: ${steps.pick.outputs.picked.last_modified}
steps:
  - id: pick
    uses: lua
    with: {script: "return { count = 0 }"}
  - id: restore
    uses: shell
    with: {command: "echo 'no backup under the prefix' >&2; exit 1"}
    recovered: true
finally:
  - id: notify
    uses: slack.post
    with: {summary: true, webhook: "%s"}
  - id: page
    if: failure()
    uses: pagerduty.event
    with: {action: trigger, severity: critical}
  - id: last
    uses: shell
    with: {command: "true"}
'''

PD_ENV = {'PAGERDUTY_ROUTING_KEY': 'R0123456789abcdef0123456789abcde',
          'PAGERDUTY_EVENTS_URL': RX.url + '/v2/enqueue'}


def field(msg, title):
    """The text of the summary's field titled `title` (`*RTO*\\n...`)."""
    for b in msg['blocks']:
        for f in b.get('fields', []):
            if f['text'].startswith(f'*{title}*\n'):
                return f['text'].split('\n', 1)[1]
    return None


@suite.test
def test_failed_restore_measures_no_rto(h):
    """Nothing recovered: no RTO is measured, so its target is not met;
    console, report, evidence, JUnit, Slack and PagerDuty all say so, and
    the summary counts the run as it ends, not the notifications."""
    import xml.etree.ElementTree as ET
    RX.clear()
    f = h.write('incident.yaml', INCIDENT % hook('ok'))
    r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r.json',
                 '--evidence', h.tmp / 'e.md', '--junit', h.tmp / 'j.xml', env=PD_ENV)
    h.check(r.returncode == 1, r.stdout + r.stderr)
    h.check("RTO not measured (target 1h00m): not met, because nothing was recovered: "
            "step 'restore' (recovered: true) failed" in r.stdout, r.stdout)
    h.check(': met' not in r.stdout, r.stdout)
    slo = json.loads((h.tmp / 'r.json').read_text())['slo']
    h.check(slo['rto_ms'] is None and slo['rto_met'] is None and slo['met'] is False, slo)
    h.check('nothing was recovered' in slo['rto_error'], slo)
    h.check(slo['rpo_ms'] is None and slo['rpo_met'] is None, slo)
    ev = (h.tmp / 'e.md').read_text()
    h.check('| total RTO | not measured | 1h00m | not met |' in ev, ev)
    h.check("RTO not measured because nothing was recovered: step 'restore'" in ev, ev)
    # an incident restore is no drill: detection time is not said to be 0
    h.check('scheduled drill' not in ev and '| detection time | not measured' in ev, ev)
    cases = {(c.get('classname'), c.get('name')): c
             for c in ET.parse(h.tmp / 'j.xml').getroot().iter('testcase')}
    case = cases[('incident-restore.slo', 'rto')]
    h.check(case.find('failure') is not None and
            'RTO not measured' in case.find('failure').get('message'), ET.tostring(case))
    msg = posts('/hooks/ok')[0]['json']
    rto_text = field(msg, 'RTO')
    h.check(rto_text.startswith('not measured (target 1h00m, not met)') and
            'nothing was recovered' in rto_text, rto_text)
    # the run as it ends: the notification itself and the steps after it
    # are neither `running` nor `pending`
    h.check(field(msg, 'Steps') == '1 ok, 1 failed', field(msg, 'Steps'))
    ev = [x['json'] for x in posts('/v2/enqueue')]
    h.check(len(ev) == 1, ev)
    d = ev[0]['payload']['custom_details']
    h.check(d['slo']['rto_met'] is None and 'nothing was recovered' in d['slo']['rto_error'], d)
    h.check(d['slo']['rto_ms'] is None and d['slo']['met'] is False, d)
    # notify (ok) counted, page (asking) and last (not run yet) not
    h.check(d['counts'] == {'ok': 2, 'failed': 1}, d['counts'])


@suite.test
def test_unknown_rpo_is_one_line_with_the_whole_path(h):
    """An RPO that cannot be measured (the backup time reads an output the
    picking step never produced) is said in one line, with the runbook's
    whole path and line, no Lua traceback: on the console, in the report,
    in Slack and in PagerDuty's details."""
    RX.clear()
    book = (INCIDENT % hook('ok')).replace(
        '    with: {script: "return { count = 0 }"}',
        "    continue_on_error: true\n"
        "    with: {script: \"engine.fail('no backup under the prefix')\"}").replace(
        "    with: {command: \"echo 'no backup under the prefix' >&2; exit 1\"}",
        "    with: {command: \"echo restored from the copy of yesterday\"}").replace(
        'if: failure()', 'if: always()')
    deep = h.tmp / ('operations-' * 4) / ('yieldvault-' * 4) / 'runbooks'
    deep.mkdir(parents=True)
    f = deep / '02-yieldvault-restore.yaml'
    f.write_text(book)
    h.check(len(str(f)) > 80, str(f))
    r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r.json',
                 env=PD_ENV)
    h.check(r.returncode == 4, r.stdout + r.stderr)
    want = (f"slo.backup_time: {f}:6: reference to steps.pick.outputs.picked does not "
            "exist (step 'pick' failed)")
    h.check(f'RPO unknown (target 15m00s): not met, because {want}\n' in r.stdout, r.stdout)
    out = r.stdout + r.stderr
    h.check('stack traceback' not in out and '...' not in out, out)
    slo = json.loads((h.tmp / 'r.json').read_text())['slo']
    h.check(slo['rpo_error'] == want, slo)
    h.check(slo['rto_met'] is True and slo['rpo_met'] is None and slo['met'] is False, slo)
    d = posts('/v2/enqueue')[0]['json']['payload']['custom_details']
    h.check(d['slo']['rpo_error'] == want, d['slo'])
    rpo_text = field(posts('/hooks/ok')[0]['json'], 'RPO')
    h.check(want in rpo_text and 'traceback' not in rpo_text, rpo_text)


@suite.test
def test_summary_counts_the_run_as_it_ends(h):
    """The summary describes the run as it ends: the notification step and
    the `finally` steps after it are not counted as running or pending; a
    warning and a continued failure are counted and listed as such."""
    RX.clear()
    r, rep = run(h, '''version: 1
name: warned
steps:
  - id: work
    uses: shell
    with: {command: "true"}
  - id: lag
    uses: shell
    with: {command: "echo 20"}
    check: return "warn", "replication lag 20 s above 10 s"
  - id: soft
    uses: shell
    continue_on_error: true
    with: {command: "exit 2"}
finally:
  - id: first
    uses: shell
    with: {command: "true"}
  - id: notify
    uses: slack.post
    with: {summary: true, webhook: "%s"}
  - id: cleanup
    uses: shell
    with: {command: "true"}
''' % hook('ok'))
    h.check(r.returncode == 0, r.stdout + r.stderr)
    msg = posts('/hooks/ok')[0]['json']
    h.check(field(msg, 'Steps') == '2 ok, 1 warn, 1 failed (continued)', field(msg, 'Steps'))
    blocks = json.dumps(msg['blocks'])
    h.check('running' not in blocks and 'pending' not in blocks, blocks)
    h.check('`lag` warn: replication lag 20 s above 10 s' in blocks, blocks)
    h.check('`soft` failed (continued)' in blocks, blocks)
    h.check('warned succeeded' in msg['text'], msg['text'])


PD = '''version: 1
name: pd-drill
steps:
  - id: work
    uses: shell
    with: {command: "%s"}
finally:
  - id: page
    if: failure()
    uses: pagerduty.event
    with: {action: trigger, severity: critical}
  - id: resolve
    if: success()
    uses: pagerduty.event
    with: {action: resolve}
'''


@suite.test
def test_pagerduty_trigger_then_resolve_pair_up(h):
    RX.clear()
    env = {'PAGERDUTY_ROUTING_KEY': 'R0123456789abcdef0123456789abcde',
           'PAGERDUTY_EVENTS_URL': RX.url + '/v2/enqueue'}
    r, rep = run(h, PD % 'echo broken >&2; exit 1', env=env)
    h.check(r.returncode == 1 and rep['steps']['page']['status'] == 'ok', r.stdout + r.stderr)
    r2, rep2 = run(h, PD % 'true', env=env, name='ok.yaml')
    h.check(r2.returncode == 0 and rep2['steps']['resolve']['status'] == 'ok', r2.stdout + r2.stderr)
    ev = [x['json'] for x in posts('/v2/enqueue')]
    h.check(len(ev) == 2, ev)
    h.check(ev[0]['event_action'] == 'trigger' and ev[1]['event_action'] == 'resolve', ev)
    h.check(ev[0]['dedup_key'] == ev[1]['dedup_key'] == 'engine-pd-drill', ev)
    h.check(ev[0]['payload']['severity'] == 'critical' and 'work' in ev[0]['payload']['summary'],
            ev[0]['payload'])
    h.check(ev[0]['payload']['custom_details']['failed_step']['id'] == 'work', ev[0]['payload'])
    h.check(rep['steps']['page']['outputs']['dedup_key'] == 'engine-pd-drill', rep['steps']['page'])
    key = env['PAGERDUTY_ROUTING_KEY']
    h.check(key not in r.stdout + r.stderr + json.dumps(rep), 'routing key leaked')
    # 400 explained, 429 retried
    RX.clear()
    r, rep = run(h, PD % 'exit 1', env=dict(env, PAGERDUTY_ROUTING_KEY='bad'), name='bad.yaml')
    h.check(rep['steps']['page']['status'] == 'failed' and
            "routing_key' is incorrect" in rep['steps']['page']['error'], rep['steps']['page'])
    h.check(len(RX.requests) == 1, 'a 400 is not retried')
    RX.clear()
    r, rep = run(h, PD % 'exit 1', env=dict(env, PAGERDUTY_EVENTS_URL=RX.url + '/v2/enqueue429'),
                 name='429.yaml')
    h.check(rep['steps']['page']['status'] == 'ok' and
            rep['steps']['page']['outputs']['attempts'] == 2, rep['steps']['page'])


@suite.test
def test_shipped_runbooks_notify_only_when_configured(h):
    """Every shipped runbook ends with a Slack summary in `finally`, skipped
    (not failed) when SLACK_WEBHOOK_URL is not set."""
    books = sorted((ROOT / 'runbooks').glob('*.yaml'))
    for b in books:
        text = b.read_text()
        h.check('uses: slack.post' in text and
                '(env.SLACK_WEBHOOK_URL or "") ~= ""' in text, b.name)
    # the main job on its embedded sandbox, without and with the receivers
    f = ROOT / 'runbooks' / 'restore-drill.yaml'
    env_off = {'DATABASE_URL': '', 'SLACK_WEBHOOK_URL': '', 'PAGERDUTY_ROUTING_KEY': ''}
    r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r.json',
                 env=env_off, timeout=300)
    rep = json.loads((h.tmp / 'r.json').read_text())
    h.check(r.returncode == 0, r.stdout + r.stderr)
    h.check(rep['steps']['notify']['status'] == 'skipped' and
            rep['steps']['page']['status'] == 'skipped', rep['steps']['notify'])
    RX.clear()
    r = h.engine('run', f, '--state-dir', h.tmp / 'state', '--report', h.tmp / 'r2.json',
                 timeout=300,
                 env={'DATABASE_URL': '', 'SLACK_WEBHOOK_URL': hook('ok'),
                      'PAGERDUTY_ROUTING_KEY': 'R0123456789abcdef0123456789abcde',
                      'PAGERDUTY_EVENTS_URL': RX.url + '/v2/enqueue'})
    rep = json.loads((h.tmp / 'r2.json').read_text())
    h.check(r.returncode == 0 and rep['steps']['notify']['status'] == 'ok', r.stdout + r.stderr)
    h.check(rep['steps']['resolve-page']['status'] == 'ok', rep['steps']['resolve-page'])
    msg = posts('/hooks/ok')[0]['json']
    h.check('restore-drill' in msg['text'] and 'succeeded' in msg['text'], msg['text'])
    h.check(SECRET not in all_text_of_run(h, r), 'webhook leaked')


if __name__ == '__main__':
    try:
        suite.main()
    finally:
        RX.stop()
