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
