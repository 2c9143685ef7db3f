"""A TLS terminator in front of a plain-HTTP server (moto), for clients
that require TLS to their object store (pgBackRest). Python's asyncio SSL
transport ends each connection with close_notify, which moto's own --ssl
mode (werkzeug) does not send. It only forwards bytes; it never imitates
the server behind it.

    p = TlsProxy(upstream_port, workdir)   # self-signed cert for
    p.port                                 # 127.0.0.1 and localhost
    p.stop()
"""
import asyncio
import os
import socket
import subprocess
import threading


def self_signed(workdir):
    cert = os.path.join(workdir, 'tls.crt')
    key = os.path.join(workdir, 'tls.key')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
                    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost',
                    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
                   check=True, capture_output=True)
    return cert, key


class TlsProxy:
    def __init__(self, upstream_port, workdir):
        import ssl
        cert, key = self_signed(workdir)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.cert = cert
        self.upstream = upstream_port
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        self.port = s.getsockname()[1]
        s.close()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(
            self._client, '127.0.0.1', self.port, ssl=self.ctx))
        ready.set()
        self.loop.run_forever()

    async def _pipe(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            try:
                writer.close()
            except (ConnectionError, OSError, RuntimeError):
                pass

    async def _client(self, creader, cwriter):
        try:
            ureader, uwriter = await asyncio.open_connection('127.0.0.1', self.upstream)
        except OSError:
            cwriter.close()
            return
        await asyncio.gather(self._pipe(creader, uwriter), self._pipe(ureader, cwriter))

    def stop(self):
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
