"""Editors: `engine schema` (runbooks) and `engine schema --inventory` in
the real yaml-language-server (the server behind VS Code's YAML
extension), spoken to over LSP on stdio, as docs/runbook-format.md
("Editors") associates them. yamlls.sh installs the pinned server once into
a cache directory (default /tmp/engine-yaml-language-server, env
YAMLLS_DIR); node and npm reaching the registry are needed.

Every shipped runbook, fixture and docs example the engine accepts is
clean in the editor; every mistake of the corpus is flagged by the editor
and refused by the engine; completion offers the actions and a step's
parameters. The schema's keys are the engine's own (engine schema --keys):
a key added to the engine fails test_schema_keys_are_the_engines until the
schema describes it (core/cli/cmd_schema.c, schema_inventory.c)."""
import json
import os
import pathlib
import queue
import re
import subprocess
import threading
import time

from harness import Suite, ROOT, HERE

suite = Suite(__file__)

DIR = os.environ.get('YAMLLS_DIR', '/tmp/engine-yaml-language-server')


class Lsp:
    """A language server over stdio: Content-Length framed JSON-RPC."""

    def __init__(self, root):
        server = pathlib.Path(DIR) / 'node_modules/yaml-language-server/bin/yaml-language-server'
        self.p = subprocess.Popen(['node', str(server), '--stdio'], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.replies = queue.Queue()
        self.diags = {}
        self.cond = threading.Condition()
        self.settings = {}
        self.last = 0
        threading.Thread(target=self._read, daemon=True).start()
        self.request('initialize', {
            'processId': os.getpid(), 'rootUri': pathlib.Path(root).as_uri(),
            'capabilities': {'workspace': {'configuration': True},
                             'textDocument': {'publishDiagnostics': {}, 'completion': {
                                 'completionItem': {'documentationFormat': ['markdown']}}}}})
        self.notify('initialized', {})

    def _send(self, msg):
        b = json.dumps(msg).encode()
        self.p.stdin.write(b'Content-Length: %d\r\n\r\n' % len(b) + b)
        self.p.stdin.flush()

    def _message(self):
        n = None
        while True:
            line = self.p.stdout.readline()
            if not line:
                return None
            if not line.strip():
                return json.loads(self.p.stdout.read(n))
            if line.lower().startswith(b'content-length:'):
                n = int(line.split(b':')[1])

    def _read(self):
        while (msg := self._message()) is not None:
            method = msg.get('method')
            if method == 'textDocument/publishDiagnostics':
                with self.cond:
                    self.diags[msg['params']['uri']] = msg['params']['diagnostics']
                    self.cond.notify_all()
            elif method == 'workspace/configuration':
                self._send({'jsonrpc': '2.0', 'id': msg['id'], 'result': [
                    self.settings.get(i.get('section')) for i in msg['params']['items']]})
            elif method and 'id' in msg:
                self._send({'jsonrpc': '2.0', 'id': msg['id'], 'result': None})
            elif 'id' in msg:
                self.replies.put(msg)

    def request(self, method, params, timeout=60):
        self.last += 1
        self._send({'jsonrpc': '2.0', 'id': self.last, 'method': method, 'params': params})
        while True:
            m = self.replies.get(timeout=timeout)
            if m['id'] == self.last:
                return m.get('result')

    def notify(self, method, params):
        self._send({'jsonrpc': '2.0', 'method': method, 'params': params})

    def associate(self, schemas):
        """The settings snippet of docs/runbook-format.md: yaml.schemas."""
        self.settings = {'yaml': {'validate': True, 'completion': True, 'hover': True,
                                  'schemas': schemas, 'schemaStore': {'enable': False}}}
        self.notify('workspace/didChangeConfiguration', {'settings': self.settings})

    def check(self, docs, timeout=120):
        """{path: text} opened at once -> {path: [messages of errors]}."""
        uris = {pathlib.Path(p).as_uri(): p for p in docs}
        with self.cond:
            for u in uris:
                self.diags.pop(u, None)
        for u, p in uris.items():
            self.notify('textDocument/didOpen', {'textDocument': {
                'uri': u, 'languageId': 'yaml', 'version': 1, 'text': docs[p]}})
        end = time.time() + timeout
        with self.cond:
            while not all(u in self.diags for u in uris) and time.time() < end:
                self.cond.wait(end - time.time())
        return {p: [d['message'] for d in self.diags.get(u, [None])
                    if d is None or d.get('severity', 1) == 1] for u, p in uris.items()}

    def complete(self, path, line, character):
        r = self.request('textDocument/completion', {
            'textDocument': {'uri': pathlib.Path(path).as_uri()},
            'position': {'line': line, 'character': character}})
        return r['items'] if isinstance(r, dict) else r

    def close(self):
        try:
            self.request('shutdown', None, timeout=10)
            self.notify('exit', None)
            self.p.wait(10)
        except Exception:
            self.p.kill()
            self.p.wait()


_SERVER = {}


def server_ready(h):
    """Install the pinned server once per run (yamlls.sh)."""
    if 'ok' not in _SERVER:
        t0 = time.time()
        r = subprocess.run(['sh', str(HERE / 'yamlls.sh')], capture_output=True, text=True,
                           timeout=300, env=dict(os.environ, YAMLLS_DIR=DIR))
        _SERVER['ok'] = r.returncode == 0
        _SERVER['why'] = r.stdout + r.stderr
        print(f'yaml-language-server install: {time.time() - t0:.1f}s', flush=True)
    h.check(_SERVER['ok'], 'installing yaml-language-server failed: ' + _SERVER['why'])


def schemas(h):
    rb, inv = h.tmp / 'runbook.schema.json', h.tmp / 'inventory.schema.json'
    r = h.engine('schema', '--out', str(rb))
    h.check(r.returncode == 0 and json.loads(rb.read_text())['$defs']['step'], r.stderr)
    r = h.engine('schema', '--inventory', '--out', str(inv))
    h.check(r.returncode == 0 and 'databases' in json.loads(inv.read_text())['properties'],
            r.stderr)
    return rb, inv


def at(schema, path):
    """The properties of the mapping at a --keys place."""
    node = schema
    for part in [p for p in re.split(r'\.', path) if p]:
        if part.endswith('[]'):
            node = node['properties'][part[:-2]]['items']
            if '$ref' in node:
                node = schema['$defs'][node['$ref'].split('/')[-1]]
        elif part == '*':
            node = node['additionalProperties']
            # a value or a mapping (an env variable): the mapping's keys
            node = next((a for a in node.get('anyOf', []) if 'properties' in a), node)
        else:
            node = node['properties'][part]
    h_keys = node['properties']
    return h_keys, node.get('additionalProperties')


@suite.test
def test_schema_keys_are_the_engines(h):
    """Every key the engine accepts, at every level, is described in the
    schema, and no other key is allowed there."""
    for extra in ([], ['--inventory']):
        r = h.engine('schema', '--keys', *extra)
        h.check(r.returncode == 0, r.stderr)
        keys = json.loads(r.stdout)
        schema = json.loads(h.engine('schema', *extra).stdout)
        h.check(len(keys) >= (3 if extra else 9), keys)
        for path, want in keys.items():
            props, additional = at(schema, path)
            h.check(sorted(props) == sorted(want),
                    f'{path or "top"}: the engine accepts {sorted(want)}, the schema has '
                    f'{sorted(props)}')
            h.check(additional is False, f'{path or "top"}: other keys are not refused')
            for k in want:
                h.check(props[k].get('description') and props[k].get('markdownDescription'),
                        f"the schema does not describe '{k}' in '{path or 'the top'}' "
                        f"(a key the engine accepts): add it to core/cli/cmd_schema.c "
                        f"or schema_inventory.c")
    # the runbook reference lists the same top-level keys
    doc = (ROOT / 'docs' / 'runbook-format.md').read_text()
    table = doc.split('## File layout', 1)[1].split('`defaults` keys:', 1)[0]
    documented = set(re.findall(r'^\| `([a-z_]+)` \|', table, re.M))
    top = json.loads(h.engine('schema', '--keys').stdout)['']
    h.check(documented == set(top), f'docs: {sorted(documented)}, engine: {sorted(top)}')


def runbook(steps, top=''):
    return f'version: 1\nname: editor-case\n{top}steps:\n{steps}'


DUMP = '  - id: d\n    uses: postgres.dump\n    with:\n      file: /tmp/x.dump\n'
PARAMS = 'params:\n  db: { default: app }\n  jobs: { type: int, default: 2 }\n' \
         '  drill: { type: bool, default: true }\n'

# Runbooks the engine accepts, written the ways the reference allows.
CLEAN = {
    'lock': runbook(DUMP, PARAMS + 'lock: drill-${params.db}\n'),
    'guards': runbook(DUMP, 'guards:\n  protected_paths: [/srv/data]\n'
                      '  unverified_commands: refuse\n  protected_databases: [prod]\n'),
    'templates': runbook(DUMP + '      jobs: ${params.jobs}\n      format: ${"directory"}\n'
                         '      no_owner: ${params.drill}\n      compress: ${"zstd"}\n', PARAMS + 'drill: ${params.drill}\n'),
    'literals': runbook(DUMP + '      jobs: "3"\n      format: directory\n      no_owner: True\n'
                        '      compress: zstd:19\n'
                        '  - id: e\n    uses: postgres.dump\n'
                        '    with: { file: /tmp/y.dump, compress: 5 }\n'
                        '  - id: s\n    uses: sleep\n    with: { for: 1.5s }\n'
                        '    retry: { attempts: 2, delay: 1s, backoff: 2 }\n    timeout: 90\n'
                        '    continue_on_error: false\n',
                        'defaults: { timeout: 1h, retry: { attempts: 1 } }\n'),
}

# Mistakes: (name, text, what the editor says). The engine refuses each.
MISTAKES = [
    ('step key', runbook('  - id: s\n    uses: sleep\n    wiht: { for: 1s }\n'), 'Property wiht is not allowed'),
    ('plugin action', runbook('  - id: d\n    uses: postgres.dumb\n'), 'not an action of postgres'),
    ('plugin name', runbook('  - id: d\n    uses: pg.dump\n'), 'names a loaded plugin'),
    ('built-in action', runbook('  - id: d\n    uses: shel\n'), 'the built-in ones are'),
    ('parameter', runbook(DUMP + '      databse: app\n'), 'Property databse is not allowed'),
    ('step timeout', runbook(DUMP + '    timeout: 5 minutes\n'), 'a duration'),
    ('retry attempts', runbook(DUMP + '    retry: { attempts: three }\n'), 'an integer'),
    ('int parameter', runbook(DUMP + '      jobs: many\n'), 'an integer'),
    ('bool parameter', runbook(DUMP + '      no_owner: perhaps\n'), 'true or false'),
    ('duration parameter', runbook('  - id: s\n    uses: sleep\n    with: { for: 5 minutes }\n'),
     'a duration'),
    ('missing with', runbook('  - id: r\n    uses: postgres.restore\n'), 'Missing property "with"'),
    ('missing parameter', runbook('  - id: s\n    uses: sleep\n    with: {}\n'), 'Missing property "for"'),
    ('choice', runbook(DUMP + '      format: zip\n'), 'custom'),
    ('params key', runbook(DUMP, 'params:\n  db: { defualt: app }\n'), 'defualt'),
    ('param type', runbook(DUMP, 'params:\n  db: { type: integer }\n'), 'Valid values: "string", "int"'),
    ('param name', runbook(DUMP, 'params:\n  Db-Name: x\n'), 'parameter name'),
    ('defaults key', runbook(DUMP, 'defaults: { timout: 5s }\n'), 'timout'),
    ('slo key', runbook(DUMP, 'slo: { rtoo: 5m }\n'), 'rtoo'),
    ('slo duration', runbook(DUMP, 'slo: { rpo: soon, backup_time: x }\n'), 'a duration'),
    ('guards key', runbook(DUMP, 'guards: { protected_database: [app] }\n'), 'protected_database'),
    ('guards enum', runbook(DUMP, 'guards: { unverified_commands: deny }\n'), 'allow or refuse'),
    ('guards require', runbook(DUMP, 'guards:\n  require: [{ step: d }]\n'), 'Missing property "before"'),
    ('top key', runbook(DUMP, 'param: {}\n'), 'Property param is not allowed'),
    ('bool key', runbook(DUMP + '    continue_on_error: yes\n'), 'true or false'),
    ('drill', runbook(DUMP, 'drill: perhaps\n'), 'true or false'),
    ('version', runbook(DUMP).replace('version: 1', 'version: 2'), 'version: 1'),
    ('step id', runbook(DUMP.replace('id: d', 'id: Dump It')), 'a step id'),
    ('no id', runbook(DUMP.replace('- id: d\n    uses', '- uses')), 'Missing property "id"'),
    ('runbook name', runbook(DUMP).replace('name: editor-case', 'name: My Runbook'), 'lower-case'),
    ('lock name', runbook(DUMP, 'lock: "../x"\n'), 'a lock name'),
    ('compress level', runbook(DUMP + '      compress: 12\n'), 'maximum of 9'),
    ('compress form', runbook(DUMP + '      compress: zstd:25\n'), 'gzip'),
    ('backoff', runbook(DUMP + '    retry: { attempts: 2, backoff: 0.5 }\n'), 'minimum of 1'),
]

INVENTORY = ('databases:\n  - name: ledger\n    url_secret: ledger-db\n'
             '    schedule: "0 3 * * *"\n    runbook: restore-drill.yaml\n'
             'defaults:\n  state: s3://bucket/fleet\n')
INVENTORY_MISTAKES = [
    ('database key', INVENTORY.replace('schedule:', 'schedul:'), 'Property schedul is not allowed'),
    ('defaults key', INVENTORY.replace('  state:', '  stat:'), 'Property stat is not allowed'),
    ('no state', INVENTORY.replace('  state: s3://bucket/fleet\n', '  time_zone: UTC\n'), 'Missing property "state"'),
    ('spread', INVENTORY + '  spread: 99\n', 'maximum of 59'),
    ('grace', INVENTORY + '  grace: a while\n', 'a duration'),
    ('top key', INVENTORY + 'database: []\n', 'Property database is not allowed'),
]


def shipped_runbooks():
    """Every runbook file of the project: shipped, fixtures, the plugin
    example; and the complete runbooks in the docs' YAML blocks."""
    files = sorted(ROOT.glob('runbooks/*.yaml')) + sorted(
        (ROOT / 'tests/functional/fixtures').rglob('*.yaml')) + sorted(
        (ROOT / 'examples').rglob('*.yaml'))
    out = {}
    for f in files:
        text = f.read_text()
        if re.search(r'^steps:', text, re.M) and re.search(r'^version:', text, re.M):
            out[str(f.relative_to(ROOT))] = text
    for md in sorted((ROOT / 'docs').glob('*.md')) + [ROOT / 'README.md']:
        for i, block in enumerate(re.findall(r'```yaml\n(.*?)```', md.read_text(), re.S)):
            if re.search(r'^steps:', block, re.M) and re.search(r'^version:', block, re.M):
                out[f'{md.relative_to(ROOT)}#{i}'] = block
    return out


def slug(name):
    return re.sub(r'[^A-Za-z0-9]+', '_', name)


def engine_verdicts(h, texts):
    """{name: text} of runbooks -> {name: what `engine validate` says of
    it}, in one run of the engine."""
    d = h.tmp / 'validate'
    d.mkdir(exist_ok=True)
    files = {str(d / (slug(n) + '.yaml')): n for n in texts}
    for f, n in files.items():
        pathlib.Path(f).write_text(texts[n])
    r = h.engine('validate', *files)
    said = dict(re.findall(r'^(/\S+\.yaml): (.*)$', r.stdout + r.stderr, re.M))
    h.check(set(said) >= set(files), f'validate said nothing of some files: {r.stdout}')
    return {n: said[f] for f, n in files.items()}


def fleet_refuses(h, name, text):
    r = h.engine('fleet', 'render', str(h.write(slug(name) + '.yaml', text)))
    return r.returncode == 2, r.stdout + r.stderr


@suite.test
def test_editor_agrees_with_the_engine(h):
    server_ready(h)
    t0 = time.time()
    rb, inv = schemas(h)
    ws = h.tmp / 'ws'
    lsp = Lsp(ws)
    try:
        lsp.associate({str(rb): ['runbooks/**/*.yaml'], str(inv): ['fleet/**/inventory.yaml']})
        docs, clean, wrong = {}, {}, {}
        books = shipped_runbooks()
        h.check(len(books) >= 40, f'only {len(books)} runbooks found')
        said = engine_verdicts(h, {**books, **CLEAN, **{n: t for n, t, _ in MISTAKES}})
        for name, text in list(books.items()) + list(CLEAN.items()):
            if name in CLEAN:
                h.check(said[name].startswith('ok'), f'{name}: the engine refuses it: {said[name]}')
            if 'error' in said[name]:  # a guard's refusal leaves a file valid
                continue
            path = str(ws / 'runbooks' / (slug(name) + '.yaml'))
            docs[path], clean[path] = text, name
        accepted = len(clean)
        h.check(accepted >= 40, f'only {accepted} runbooks accepted by the engine')
        # the modeline alone associates a file anywhere
        modeline = str(ws / 'elsewhere' / 'modeline.yaml')
        docs[modeline] = f'# yaml-language-server: $schema={rb}\n' + MISTAKES[0][1]
        wrong[modeline] = MISTAKES[0]
        for i, (name, text, says) in enumerate(MISTAKES):
            h.check('error' in said[name], f'mistake {name}: the engine accepts it: {said[name]}')
            path = str(ws / 'runbooks' / 'mistakes' / f'{i:02d}.yaml')
            docs[path], wrong[path] = text, (name, text, says)
        deploy = (ROOT / 'deploy/kubernetes/inventory.yaml').read_text()
        for name, text in [('deploy/kubernetes/inventory.yaml', deploy), ('inventory', INVENTORY)]:
            path = str(ws / 'fleet' / re.sub(r'[^a-z]+', '_', name) / 'inventory.yaml')
            docs[path], clean[path] = text, name
        for i, (name, text, says) in enumerate(INVENTORY_MISTAKES):
            refused, out = fleet_refuses(h, 'inventory ' + name, text)
            h.check(refused, f'inventory mistake {name}: the engine accepts it: {out}')
            path = str(ws / 'fleet' / f'm{i:02d}' / 'inventory.yaml')
            docs[path], wrong[path] = text, (name, text, says)
        got = lsp.check(docs)
        alarms = [f'{clean[p]}: {got[p]}' for p in clean if got[p]]
        h.check(not alarms, 'false alarms:\n' + '\n'.join(alarms))
        missed = [f'{n}: {got[p]} (wanted "{s}")' for p, (n, _, s) in wrong.items()
                  if not got[p] or not any(s in m for m in got[p])]
        h.check(not missed, 'mistakes the editor does not flag:\n' + '\n'.join(missed))
        if os.environ.get('EDITOR_TEST_SHOW'):
            for p, (n, _, _) in wrong.items():
                print(f'  {n}: {got[p]}')
        long = [m for p in wrong for m in got[p] if len(m) > 400]
        h.check(not long, f'unreadable messages: {long}')
        print(f'{len(clean)} files clean, {len(wrong)} mistakes flagged in '
              f'{time.time() - t0:.1f}s', flush=True)
    finally:
        lsp.close()


@suite.test
def test_editor_completes_actions_and_parameters(h):
    server_ready(h)
    rb, _ = schemas(h)
    ws = h.tmp / 'ws'
    lsp = Lsp(ws)
    try:
        lsp.associate({str(rb): ['runbooks/**/*.yaml']})
        uses = str(ws / 'runbooks' / 'uses.yaml')
        params = str(ws / 'runbooks' / 'with.yaml')
        lsp.check({uses: runbook('  - id: d\n    uses: \n'),
                   params: runbook(DUMP + '      \n')})
        items = lsp.complete(uses, 4, 10)
        labels = {i['label'] for i in items}
        for a in ('postgres.dump', 'postgres.restore', 's3.put', 'shell', 'sleep'):
            h.check(a in labels, f'{a} not offered: {sorted(labels)}')
        doc = next(i for i in items if i['label'] == 'postgres.dump').get('documentation', {})
        h.check('pg_dump' in json.dumps(doc), f'no help with postgres.dump: {doc}')
        labels = {i['label'] for i in lsp.complete(params, 7, 6)}
        for p in ('format', 'jobs', 'compress', 'no_owner'):
            h.check(p in labels, f'{p} not offered under with: {sorted(labels)}')
        h.check('retry' not in labels, f'step keys offered under with: {sorted(labels)}')
    finally:
        lsp.close()


if __name__ == '__main__':
    suite.main()
