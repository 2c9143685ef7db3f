"""Podman as the tests' container engine (TESTING notes: runc, no ulimits,
its own containers.conf), with a busybox image imported from the host's
busybox-static (no registry is reachable here), and, on demand, its Docker
API service on a Unix socket in a temporary directory."""
import os
import pathlib
import shutil
import subprocess
import tempfile
import time

IMAGE = 'localhost/engine-test-busybox:2'


class Podman:
    def __init__(self, service=False):
        self.dir = tempfile.mkdtemp(prefix='engine-podman-')
        conf = pathlib.Path(self.dir) / 'containers.conf'
        conf.write_text('[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=str(conf))
        self.image = IMAGE
        if self.run('image', 'exists', IMAGE, check=False).returncode != 0:
            root = pathlib.Path(self.dir) / 'root'
            (root / 'bin').mkdir(parents=True)
            shutil.copy('/bin/busybox', root / 'bin' / 'busybox')
            for x in ('sh', 'ls', 'cat', 'touch', 'rm', 'sleep', 'seq', 'echo', 'sed', 'mkdir'):
                os.symlink('busybox', root / 'bin' / x)
            tar = pathlib.Path(self.dir) / 'bb.tar'
            subprocess.run(['tar', '-C', str(root), '-cf', str(tar), '.'], check=True)
            self.run('import', str(tar), IMAGE)
        self.proc = None
        self.sock = None
        if service:
            self.sock = os.path.join(self.dir, 'podman.sock')
            self.proc = subprocess.Popen(['podman', 'system', 'service', '--time=0',
                                          'unix://' + self.sock], env=self.env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(100):
                if os.path.exists(self.sock):
                    break
                time.sleep(0.05)
            self.env['DOCKER_HOST'] = 'unix://' + self.sock

    def pg_image(self):
        """A PostgreSQL 15 image assembled from the host's own binaries (its
        libraries, busybox, a postgres user); initdb on first start, then
        postgres as PID 1 on $PGPORT (host network)."""
        image = 'localhost/engine-test-postgres:15-1'
        if self.run('image', 'exists', image, check=False).returncode == 0:
            return image
        root = pathlib.Path(self.dir) / 'pgroot'
        for d in ('bin', 'etc', 'tmp', 'lib64', 'var/run/postgresql',
                  'var/lib/postgresql/data', 'usr/lib/postgresql', 'usr/share/postgresql'):
            (root / d).mkdir(parents=True, exist_ok=True)
        shutil.copytree('/usr/lib/postgresql/15', root / 'usr/lib/postgresql/15', symlinks=True)
        shutil.copytree('/usr/share/postgresql/15', root / 'usr/share/postgresql/15', symlinks=True)
        shutil.copy('/bin/busybox', root / 'bin' / 'busybox')
        for x in ('sh', 'ls', 'cat', 'mkdir', 'sleep', 'echo', 'id'):
            os.symlink('busybox', root / 'bin' / x)
        libs = set()
        for b in (root / 'usr/lib/postgresql/15/bin').iterdir():
            out = subprocess.run(['ldd', str(b)], capture_output=True, text=True).stdout
            libs.update(w for line in out.splitlines() for w in line.split() if w.startswith('/'))
        for lib in libs:
            dst = root / lib.lstrip('/')
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(os.path.realpath(lib), dst)
        (root / 'etc/passwd').write_text('root:x:0:0::/:/bin/sh\n'
                                         'postgres:x:999:999::/var/lib/postgresql:/bin/sh\n')
        (root / 'etc/group').write_text('root:x:0:\npostgres:x:999:\n')
        start = root / 'bin/pg-start'
        start.write_text('#!/bin/sh\nD=/var/lib/postgresql/data\n'
                         '[ -f $D/PG_VERSION ] || initdb -D $D -U postgres --auth=trust >/dev/null\n'
                         'exec postgres -D $D -p ${PGPORT:-5432} -c listen_addresses=127.0.0.1\n')
        start.chmod(0o755)
        for d in ('var/lib/postgresql', 'var/run/postgresql', 'tmp'):
            for dirpath, _, _ in os.walk(root / d):
                os.chown(dirpath, 999, 999)
        (root / 'tmp').chmod(0o1777)
        tar = pathlib.Path(self.dir) / 'pg.tar'
        subprocess.run(['tar', '-C', str(root), '-cf', str(tar), '.'], check=True)
        self.run('import', '--change', 'USER=postgres', '--change', 'CMD=["/bin/pg-start"]',
                 '--change', 'STOPSIGNAL=SIGINT', '--change',
                 'ENV=PATH=/usr/lib/postgresql/15/bin:/bin', str(tar), image)
        shutil.rmtree(root, ignore_errors=True)
        return image

    def run(self, *args, check=True):
        return subprocess.run(['podman', *args], env=self.env, capture_output=True,
                              text=True, check=check)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
