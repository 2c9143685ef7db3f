"""A real S3 peer for the functional tests: moto_server, with SigV4 checked.

    srv = S3Server().start()
    srv.endpoint, srv.key, srv.secret, srv.region
    srv.env()          variables for the engine (AWS_*)
    srv.client()       a boto3 S3 client with the same credentials
    srv.make_bucket(name)
    srv.stop()         also at interpreter exit

moto checks signatures only after IAM was bootstrapped: with
INITIAL_NO_AUTH_ACTION_COUNT=4 the first four actions are unchecked; we
spend three of them creating a user, its access key and an allow-all
policy, and the fourth creating the first bucket. From then on a wrong
secret gets 403 SignatureDoesNotMatch and an unsigned request 403.
Readiness is probed with a plain TCP connect, which moto does not count as
an action.
"""
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

REGION = 'us-east-1'


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def moto_command():
    exe = shutil.which('moto_server')
    if exe:
        return [exe]
    return [sys.executable, '-m', 'moto.server']


def _moto_path(request, **kwargs):
    from urllib.parse import urlsplit, urlunsplit
    import re
    u = urlsplit(request.url)

    def raw(m):
        ch = chr(int(m.group(1), 16))
        return ch if ch in "!$&'()*+,;=:@" else m.group(0)
    path = re.sub(r'%([0-9A-Fa-f]{2})', raw, u.path)
    request.url = urlunsplit((u.scheme, u.netloc, path, u.query, u.fragment))


class S3Server:
    def __init__(self, checked=True):
        """checked=False: moto without signature checks (for clients whose
        signatures moto's re-quoting of paths and queries mis-checks, such
        as pgBackRest listing with a '/' in its prefix); any key works."""
        self.checked = checked
        self.proc = None
        self.port = None
        self.endpoint = None
        self.key = None
        self.secret = None
        self.region = REGION
        self.dir = None
        self.log = None

    def start(self, timeout=30):
        import boto3  # noqa: F401  (fail early when missing)
        self.dir = tempfile.mkdtemp(prefix='engine-moto-')
        self.port = free_port()
        self.endpoint = f'http://127.0.0.1:{self.port}'
        env = dict(os.environ)
        if self.checked:
            env['INITIAL_NO_AUTH_ACTION_COUNT'] = '4'
        for k in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY',
                  'AWS_SESSION_TOKEN', 'AWS_PROFILE', 'AWS_ENDPOINT_URL'):
            env.pop(k, None)
        self.log = open(os.path.join(self.dir, 'moto.log'), 'w')
        self.proc = subprocess.Popen(
            moto_command() + ['-H', '127.0.0.1', '-p', str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)
        atexit.register(self.stop)
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError('moto_server exited: ' + self.log_text())
            try:
                socket.create_connection(('127.0.0.1', self.port), 0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    self.stop()
                    raise RuntimeError('moto_server did not start')
                time.sleep(0.1)
        if self.checked:
            self._bootstrap()
        else:
            self.key, self.secret = 'pitr-key-id', 'pitr-secret-' + os.urandom(8).hex()
        return self

    def _boto(self, service, key='boot', secret='boot'):
        import boto3
        from botocore.config import Config
        return boto3.client(
            service, endpoint_url=self.endpoint, region_name=self.region,
            aws_access_key_id=key, aws_secret_access_key=secret,
            config=Config(s3={'addressing_style': 'path'},
                          retries={'max_attempts': 1}))

    def _bootstrap(self):
        iam = self._boto('iam')
        iam.create_user(UserName='engine-test')
        k = iam.create_access_key(UserName='engine-test')['AccessKey']
        self.key, self.secret = k['AccessKeyId'], k['SecretAccessKey']
        iam.put_user_policy(
            UserName='engine-test', PolicyName='all',
            PolicyDocument=json.dumps({
                'Version': '2012-10-17',
                'Statement': [{'Effect': 'Allow', 'Action': '*',
                               'Resource': '*'}]}))
        # the fourth unchecked action; signed with the real key anyway
        self.client().create_bucket(Bucket='engine-bootstrap')

    def client(self, secret=None, lenient=False):
        """boto3 S3 client. lenient=True rewrites the path before signing
        so that keys with '+', '=', '!' ... pass moto's signature check:
        moto canonicalizes the path werkzeug re-quoted (those characters
        unencoded), while boto3, like AWS, encodes them (%2B): plain boto3
        gets SignatureDoesNotMatch on such keys from moto."""
        c = self._boto('s3', self.key, secret or self.secret)
        if lenient:
            c.meta.events.register('before-sign.s3', _moto_path)
        return c

    def make_bucket(self, name):
        self.client().create_bucket(Bucket=name)

    def keys(self, bucket, prefix=''):
        """Every key of the bucket that starts with prefix, sorted (listed
        whole and filtered here: moto mis-checks boto3's signature when
        Prefix holds a '/')."""
        c = self.client()
        out, token = [], None
        while True:
            kw = {'Bucket': bucket}
            if token:
                kw['ContinuationToken'] = token
            r = c.list_objects_v2(**kw)
            out += [o['Key'] for o in r.get('Contents', [])]
            if not r.get('IsTruncated'):
                break
            token = r['NextContinuationToken']
        return sorted(k for k in out if k.startswith(prefix))

    def exists(self, bucket, key):
        """True when HEAD finds the object, False on 404."""
        try:
            self.client().head_object(Bucket=bucket, Key=key)
            return True
        except Exception as e:  # botocore ClientError 404
            if '404' in str(e) or 'Not Found' in str(e):
                return False
            raise

    def env(self, **extra):
        e = {'AWS_ACCESS_KEY_ID': self.key,
             'AWS_SECRET_ACCESS_KEY': self.secret,
             'AWS_ENDPOINT_URL': self.endpoint,
             'AWS_REGION': self.region}
        e.update(extra)
        return e

    def scratch_env(self, scratch, **extra):
        """env() for an engine whose state is in this store: its scratch
        directory (ENGINE_SCRATCH_DIR) is `scratch`, one per machine."""
        return self.env(ENGINE_SCRATCH_DIR=str(scratch), **extra)

    def log_text(self):
        try:
            with open(os.path.join(self.dir, 'moto.log')) as f:
                return f.read()[-4000:]
        except OSError:
            return ''

    def log_text_all(self):
        """moto's whole access log: one line per request (counted by tests)."""
        self.log.flush()
        with open(os.path.join(self.dir, 'moto.log')) as f:
            return f.read()

    def stop(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            self.proc = None
        if self.log:
            self.log.close()
            self.log = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None


if __name__ == '__main__':
    srv = S3Server().start()
    print(json.dumps({'endpoint': srv.endpoint, 'key': srv.key,
                      'secret': srv.secret, 'region': srv.region}))
    try:
        # a wrong secret must be refused: signatures are checked
        try:
            srv.client(secret='wrong').list_objects_v2(Bucket='engine-bootstrap')
            print('UNCHECKED: wrong secret accepted')
        except Exception as e:  # botocore ClientError
            print('wrong secret refused:', str(e)[:120])
    finally:
        srv.stop()


_shared = None


def shared(*buckets):
    """The moto server of this test process (started on first use), with
    these buckets made."""
    global _shared
    if _shared is None:
        _shared = S3Server().start()
        _shared.made = set()
    for b in buckets:
        if b not in _shared.made:
            _shared.make_bucket(b)
            _shared.made.add(b)
    return _shared
