"""A throwaway PostgreSQL server for functional tests.

    srv = PgServer()
    srv.start(base_dir)          # initdb + pg_ctl start, 1-3 s
    srv.url(db='postgres', user='postgres', password=None)
    srv.psql("SELECT 1", db='postgres')  -> stdout text (psql -X -At)
    srv.stop()

PostgreSQL refuses to run as root: when the tests run as root the server
programs run as the `postgres` OS user (runuser). Authentication: trust for
everyone over the Unix socket and over 127.0.0.1, except the role `app`
(password 'app-secret-pw', CREATEDB), which must log in over TCP with
scram-sha-256, so wrong-password cases are real. fsync is off.

info() / PgServer.attach(info) let several test processes share one
server (tests/functional/run.py starts it once for the whole suite).
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import time

APP_USER = 'app'
APP_PASSWORD = 'app-secret-pw'


def pg_bindir():
    """Newest /usr/lib/postgresql/N/bin (Debian), else pg_config --bindir."""
    env = os.environ.get('ENGINE_TEST_PG_BINDIR')
    if env:
        return env
    dirs = glob.glob('/usr/lib/postgresql/*/bin')
    if dirs:
        def major(d):
            try:
                return float(d.split('/')[-2])
            except ValueError:
                return 0.0
        return max(dirs, key=major)
    out = subprocess.run(['pg_config', '--bindir'], capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PgServer:
    def __init__(self):
        self.base = None
        self.data = None
        self.port = None
        self.bindir = pg_bindir()
        self.owned = False
        self.user = None  # OS user running the server (root: postgres)

    # ---- sharing between processes ------------------------------------------
    def info(self):
        return {'base': self.base, 'data': self.data, 'port': self.port,
                'bindir': self.bindir, 'user': self.user}

    @classmethod
    def attach(cls, info):
        srv = cls()
        srv.base = info['base']
        srv.data = info['data']
        srv.port = info['port']
        srv.bindir = info['bindir']
        srv.user = info.get('user')
        srv.owned = False
        return srv

    # ---- life cycle ---------------------------------------------------------------
    def _as_user(self, argv):
        if self.user:
            return ['runuser', '-u', self.user, '--'] + argv
        return argv

    def start(self, base_dir, port=None):
        self.base = str(base_dir)
        os.makedirs(self.base, exist_ok=True)
        self.data = os.path.join(self.base, 'data')
        self.port = port or free_port()
        if os.geteuid() == 0:
            self.user = 'postgres'
            pw = pwd.getpwnam(self.user)
            os.chown(self.base, pw.pw_uid, pw.pw_gid)
            os.chmod(self.base, 0o755)
        b = self.bindir
        subprocess.run(self._as_user([
            f'{b}/initdb', '-D', self.data, '-U', 'postgres', '-A', 'trust',
            '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync']),
            check=True, capture_output=True, text=True)
        with open(os.path.join(self.data, 'pg_hba.conf'), 'w') as f:
            f.write('local all all trust\n'
                    f'host all {APP_USER} 127.0.0.1/32 scram-sha-256\n'
                    'host all all 127.0.0.1/32 trust\n'
                    f'host all {APP_USER} ::1/128 scram-sha-256\n'
                    'host all all ::1/128 trust\n')
        with open(os.path.join(self.data, 'postgresql.conf'), 'a') as f:
            f.write('\nlisten_addresses = \'127.0.0.1\'\n'
                    f'port = {self.port}\n'
                    f'unix_socket_directories = \'{self.base}\'\n'
                    'fsync = off\nsynchronous_commit = off\n'
                    'full_page_writes = off\nmax_connections = 100\n')
        self.owned = True
        r = subprocess.run(self._as_user([
            f'{b}/pg_ctl', '-D', self.data, '-l',
            os.path.join(self.base, 'server.log'), '-w', '-t', '60', 'start']),
            capture_output=True, text=True)
        if r.returncode != 0:
            log = ''
            try:
                log = open(os.path.join(self.base, 'server.log')).read()[-2000:]
            except OSError:
                pass
            raise RuntimeError(f'pg_ctl start failed: {r.stderr}\n{log}')
        self.psql(f"CREATE ROLE {APP_USER} LOGIN CREATEDB PASSWORD "
                  f"'{APP_PASSWORD}'")
        return self

    def stop(self):
        if not self.owned or not self.data:
            return
        subprocess.run(self._as_user([
            f'{self.bindir}/pg_ctl', '-D', self.data, '-m', 'fast', '-w',
            'stop']), capture_output=True, text=True)
        shutil.rmtree(self.base, ignore_errors=True)
        self.owned = False

    # ---- access --------------------------------------------------------------------
    def url(self, db='postgres', user='postgres', password=None):
        from urllib.parse import quote
        auth = quote(user, safe='')
        if password is not None:
            auth += ':' + quote(password, safe='')
        return (f'postgresql://{auth}@127.0.0.1:{self.port}/'
                f'{quote(db, safe="")}')

    def psql(self, sql, db='postgres', check=True):
        """Run SQL as postgres over TCP; returns stdout (-At format)."""
        r = subprocess.run(
            [f'{self.bindir}/psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1',
             '-h', '127.0.0.1', '-p', str(self.port), '-U', 'postgres',
             '-d', f"dbname='{db}'" if not any(c in db for c in "'\\")
             else 'dbname=' + "'" + db.replace('\\', '\\\\').replace("'", "\\'") + "'",
             '-c', sql],
            capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f'psql failed on {db}: {r.stderr.strip()}\nSQL: {sql}')
        return r.stdout

    def databases(self):
        return set(self.psql('SELECT datname FROM pg_database').split('\n')) - {''}

    def sysid(self):
        return self.psql('SELECT system_identifier FROM pg_control_system()').strip()

    def wait_ready(self, timeout=30):
        t0 = time.time()
        while time.time() - t0 < timeout:
            r = subprocess.run([f'{self.bindir}/pg_isready', '-h', '127.0.0.1',
                                '-p', str(self.port)], capture_output=True)
            if r.returncode == 0:
                return True
            time.sleep(0.2)
        return False
