"""Client-side encryption of dumps with age, against a real PostgreSQL, a
real moto server and the real `age` tool (Debian's age 1.1): an encrypted
dump to S3 and one to a local file restore through the engine, and `age
-d` turns the object into exactly the bytes of an unencrypted dump; the
checksums of both the ciphertext and the plaintext are in the outputs,
the sidecar and the evidence; a wrong key and a changed byte fail before
any database is created (pg_database); the key is in no log, report,
audit record, evidence or file of the run, and in no process's argument
list while the run goes on."""
import hashlib
import pathlib
import re
import subprocess
import threading

from harness import Suite
from s3server import shared

suite = Suite(__file__)
BUCKET = 'crypt-backups'

RUNBOOK = """version: 1
name: encrypted-backups
params:
  src: {required: true}
  url: {required: true}
  localfile: {required: true}
  plain: {required: true}
  key: {env: BACKUP_AGE_KEY, secret: true, required: true}
  keyfile: {required: true}
steps:
  - id: s3-dump
    uses: postgres.dump
    with:
      url: ${params.src}
      file: ${params.url}
      format: plain
      checksum_file: true
      encryption_key: ${params.key}
  - id: local-dump
    uses: postgres.dump
    with:
      url: ${params.src}
      file: ${params.localfile}
      format: custom
      compress: zstd
      checksum_file: true
      encryption_key_file: ${params.keyfile}
  - id: plain-dump
    uses: postgres.dump
    with: {url: "${params.src}", file: "${params.plain}", format: plain}
  - id: s3-restore
    needs: [s3-dump]
    uses: postgres.restore
    with:
      url: ${params.src}
      file: ${params.url}
      database: crypt_from_s3
      encryption_key: ${params.key}
  - id: local-restore
    needs: [local-dump]
    uses: postgres.restore
    with:
      url: ${params.src}
      file: ${params.localfile}
      database: crypt_from_file
      encryption_key_env: BACKUP_AGE_KEY
"""

RESTORE = """version: 1
name: encrypted-restore
params:
  src: {required: true}
  file: {required: true}
  key: {env: BACKUP_AGE_KEY, secret: true, required: true}
steps:
  - id: restore
    uses: postgres.restore
    with:
      url: ${params.src}
      file: ${params.file}
      database: crypt_bad
      encryption_key: ${params.key}
"""


def srv():
    return shared(BUCKET)


def keygen(h, name):
    path = h.tmp / name
    subprocess.run(['age-keygen', '-o', str(path)], check=True, capture_output=True)
    key = [ln for ln in path.read_text().splitlines() if ln.startswith('AGE-SECRET-KEY-1')][0]
    return path, key


class CmdlineWatch:
    """Reads every process's argument list while a run goes on."""

    def __init__(self, needle):
        self.needle = needle.encode()
        self.seen = []
        self.polls = 0
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.loop)
        self.t.start()

    def loop(self):
        while not self.stop.is_set():
            for p in pathlib.Path('/proc').glob('[0-9]*/cmdline'):
                try:
                    if self.needle in p.read_bytes():
                        self.seen.append(str(p))
                except OSError:
                    pass
            self.polls += 1
            self.stop.wait(0.02)

    def done(self):
        self.stop.set()
        self.t.join()


def run_watched(h, rb, key, *args):
    env = dict(srv().env(), BACKUP_AGE_KEY=key)
    watch = CmdlineWatch(key)
    p = h.popen('run', rb, '--state-dir', h.tmp / 'state', '--report', h.tmp / 'report.json',
                '--evidence', h.tmp / 'evidence.md', *args, env=env)
    out, err = p.communicate(timeout=120)
    watch.done()
    h.check(watch.polls >= 2, 'the process list was not read during the run')
    h.check(not watch.seen, f'the key is in the argument list of {watch.seen}')
    return p.returncode, out + err


def key_nowhere(h, key, text, keyfiles):
    h.check(key not in text, 'the key is in the console output')
    for f in h.tmp.rglob('*'):
        if f.is_file() and f not in keyfiles:
            h.check(key.encode() not in f.read_bytes(), f'the key is in {f}')


def unrestricted(sql):
    """A plain dump without the random key of pg_dump's \\restrict lines
    (PostgreSQL 15.14 and later): otherwise two dumps are the same bytes."""
    return re.sub(rb'(?m)^\\(un)?restrict \S+$', b'', sql)


def sha(data):
    return hashlib.sha256(data).hexdigest()


@suite.test
def test_encrypted_dumps_restore_and_age_decrypts_them(h):
    src = h.source_db('crypt_src', rows=2000)
    for db in ('crypt_from_s3', 'crypt_from_file'):
        h.pg.psql(f'DROP DATABASE IF EXISTS {db}')
    keyfile, key = keygen(h, 'backup.key')
    rb = h.write('enc.yaml', RUNBOOK)
    url = f's3://{BUCKET}/ledger/ledger-2026-01-30.sql.age'
    local = h.tmp / 'out' / 'ledger.dump.age'
    plain = h.tmp / 'out' / 'ledger.sql'
    rc, text = run_watched(h, rb, key, '--set', f'src={src}', '--set', f'url={url}',
                           '--set', f'localfile={local}', '--set', f'plain={plain}',
                           '--set', f'keyfile={keyfile}')
    h.check(rc == 0, text)
    for db in ('crypt_from_s3', 'crypt_from_file'):
        h.check(h.pg.psql('SELECT count(*) FROM t', db=db).strip() == '2000', db)
    # the object decrypts with the age tool to the unencrypted dump's bytes
    obj = srv().client().get_object(Bucket=BUCKET, Key='ledger/ledger-2026-01-30.sql.age')
    blob = obj['Body'].read()
    h.check(blob.startswith(b'age-encryption.org/v1\n') and b'CREATE TABLE' not in blob, 'not age')
    (h.tmp / 'obj.age').write_bytes(blob)
    dec = subprocess.run(['age', '-d', '-i', str(keyfile), str(h.tmp / 'obj.age')],
                         capture_output=True, check=True).stdout
    h.check(unrestricted(dec) == unrestricted(plain.read_bytes()),
            'age -d does not give the unencrypted dump')
    # local: age -d gives a zstd custom archive
    dec2 = subprocess.run(['age', '-d', '-i', str(keyfile), str(local)],
                          capture_output=True, check=True).stdout
    h.check(dec2.startswith(b'\x28\xb5\x2f\xfd'), 'the local dump is not zstd inside')
    # checksums of both: outputs, sidecars, evidence
    steps = h.report(h.tmp / 'report.json')['steps']
    o = steps['s3-dump']['outputs']
    h.check(o['encryption'] == 'age' and o['sha256'] == sha(blob) and
            o['plaintext_sha256'] == sha(dec) and o['plaintext_bytes'] == len(dec), o)
    side = srv().client().get_object(Bucket=BUCKET, Key='ledger/ledger-2026-01-30.sql.age.sha256')
    h.check(side['Body'].read().decode() == f'{sha(blob)}  ledger-2026-01-30.sql.age\n'
            f'{sha(dec)}  ledger-2026-01-30.sql\n', 'the S3 sidecar')
    (local.parent / 'ledger.dump').write_bytes(dec2)
    chk = subprocess.run(['sha256sum', '-c', 'ledger.dump.age.sha256'], cwd=local.parent,
                         capture_output=True, text=True)
    h.check(chk.returncode == 0 and chk.stdout.count(': OK') == 2, chk.stdout + chk.stderr)
    r = steps['s3-restore']['outputs']
    h.check(r['plaintext_sha256'] == sha(dec) and r['sha256'] == sha(blob), r)
    ev = (h.tmp / 'evidence.md').read_text()
    h.check(sha(dec) in ev and 'encrypted with age' in ev, ev)
    key_nowhere(h, key, text, {keyfile})


@suite.test
def test_wrong_key_and_changed_byte_fail_before_any_database(h):
    src = h.source_db('crypt_src2', rows=300)
    keyfile, key = keygen(h, 'right.key')
    _, wrong = keygen(h, 'wrong.key')
    good = h.tmp / 'good.dump.age'
    rb = h.write('dump.yaml', f"""version: 1
name: dump
params:
  key: {{env: BACKUP_AGE_KEY, secret: true}}
steps:
  - id: dump
    uses: postgres.dump
    with: {{url: "{src}", file: "{good}", encryption_key: "${{params.key}}"}}
""")
    rc, text = run_watched(h, rb, key)
    h.check(rc == 0, text)
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0x01
    changed = h.tmp / 'changed.dump.age'
    changed.write_bytes(bytes(data))
    srv().client().put_object(Bucket=BUCKET, Key='bad/changed.dump.age', Body=bytes(data))
    restore = h.write('restore.yaml', RESTORE)
    cases = [(str(good), wrong, 'the key does not decrypt'),
             (str(changed), key, 'does not authenticate'),
             (f's3://{BUCKET}/bad/changed.dump.age', key, 'does not authenticate')]
    for file, k, why in cases:
        h.pg.psql('DROP DATABASE IF EXISTS crypt_bad')
        rc, text = run_watched(h, restore, k, '--set', f'src={src}', '--set', f'file={file}')
        h.check(rc == 1 and why in text and 'nothing was restored' in text, text)
        h.check(not h.db_exists('crypt_bad'), f'a database was created from {file}')
        key_nowhere(h, k, text, {keyfile, h.tmp / 'wrong.key'})



@suite.test
def test_shipped_backup_runbook_encrypts_to_a_recipient(h):
    src = h.source_db('crypt_nightly', rows=200)
    keyfile, _ = keygen(h, 'nightly.key')
    recipient = subprocess.run(['age-keygen', '-y', str(keyfile)], capture_output=True,
                               text=True, check=True).stdout.strip()
    d = h.tmp / 'nightly'
    root = pathlib.Path(__file__).resolve().parents[2]
    # the backup host holds only the recipient: it writes what it cannot read
    rc, text = run_watched(h, root / 'runbooks' / 'backup-with-checksum.yaml', recipient,
                           '--set', f'source_url={src}', '--set', f'backup_dir={d}')
    h.check(rc == 0, text)
    dumps = sorted(p.name for p in d.iterdir())
    h.check(len(dumps) == 2 and dumps[0].endswith('.dump.age') and
            dumps[1] == dumps[0] + '.sha256', dumps)
    steps = h.report(h.tmp / 'report.json')['steps']
    h.check(steps['recheck']['status'] == 'ok', steps['recheck'])
    dec = subprocess.run(['age', '-d', '-i', str(keyfile), str(d / dumps[0])],
                         capture_output=True, check=True).stdout
    h.check(dec.startswith(b'PGDMP') and
            steps['backup']['outputs']['plaintext_sha256'] == sha(dec), 'not the dump')


if __name__ == '__main__':
    suite.main()
