"""A fault-injecting TCP proxy for the functional tests.

It sits between the engine and a real server (moto) and, on the requests a
test chooses, drops the connection, delays, cuts a body mid-way, or answers
500/503 itself. It reads only the request line and the headers it needs to
find where a request ends (Content-Length); everything else passes through
byte for byte. It does not imitate the server: anything that is not a
chosen fault is the real server's answer.

    p = FaultProxy('127.0.0.1', moto_port).start()
    p.endpoint                         http://127.0.0.1:PORT
    p.add(method='PUT', query='partNumber=2', fault='reset', after=1 << 20)
    p.add(method='POST', query='uploadId=', fault='status', status=503)
    p.add(method='PUT', query='partNumber=1', fault='stall', seconds=30)
    p.add(method='GET', path='/bucket/key', fault='cut', after=1 << 20)
    p.hits                             [(method, target, fault or None)]
    p.clear(); p.stop()

A rule matches a request when every given field matches (method exactly,
path and query as substrings); `times` bounds how often it fires (None:
always). One request per connection: the proxy asks the server to close
after answering (Connection: close), so each request is seen on its own.
"""
import socket
import struct
import threading
import time

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b'<Message>Please reduce your request rate.</Message></Error>')
INTERNAL = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
            b'<Message>We encountered an internal error. Please try again.</Message></Error>')


def _reset(sock):
    """Close with RST (SO_LINGER 0): the peer sees 'connection reset'."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    except OSError:
        pass
    sock.close()


def _read_head(sock):
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, data
        data += chunk
        if len(data) > 1 << 20:
            return None, data
    head, rest = data.split(b'\r\n\r\n', 1)
    return head, rest


class FaultProxy:
    def __init__(self, host, port):
        self.upstream = (host, port)
        self.rules = []
        self.hits = []
        self.lock = threading.Lock()
        self.sock = None
        self.stopping = False
        self.conns = set()

    def start(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.endpoint = f'http://127.0.0.1:{self.port}'
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in list(self.conns):
            try:
                c.close()
            except OSError:
                pass

    def add(self, fault, method=None, path=None, query=None, times=None, **kw):
        with self.lock:
            self.rules.append(dict(kw, fault=fault, method=method, path=path,
                                   query=query, times=times))

    def clear(self):
        with self.lock:
            self.rules = []
            self.hits = []

    def count(self, fault=None, method=None, query=None):
        with self.lock:
            return sum(1 for m, t, f in self.hits
                       if (fault is None or f == fault) and
                       (method is None or m == method) and
                       (query is None or query in t))

    def _match(self, method, target):
        path, _, query = target.partition('?')
        with self.lock:
            for r in self.rules:
                if r['method'] and r['method'] != method:
                    continue
                if r['path'] and r['path'] not in path:
                    continue
                if r['query'] and r['query'] not in query:
                    continue
                if r['times'] is not None:
                    if r['times'] <= 0:
                        continue
                    r['times'] -= 1
                self.hits.append((method, target, r['fault']))
                return r
            self.hits.append((method, target, None))
        return None

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.add(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        up = None
        try:
            head, rest = _read_head(c)
            if head is None:
                return
            lines = head.split(b'\r\n')
            method, target = lines[0].decode('latin-1').split(' ')[:2]
            length = 0
            expect = False
            kept = [lines[0]]
            for line in lines[1:]:
                name = line.split(b':', 1)[0].strip().lower()
                if name == b'content-length':
                    length = int(line.split(b':', 1)[1])
                if name == b'expect':
                    expect = True
                    continue
                if name in (b'connection', b'keep-alive'):
                    continue
                kept.append(line)
            kept.append(b'Connection: close')
            rule = self._match(method, target)
            fault = rule['fault'] if rule else None
            if expect and length > len(rest):
                # transport only: let the client send its body now
                c.sendall(b'HTTP/1.1 100 Continue\r\n\r\n')
            # the whole request body, as it arrives
            body = rest
            if fault in ('status', 'stall', 'drop'):
                while len(body) < length:
                    chunk = c.recv(65536)
                    if not chunk:
                        return
                    body += chunk
            if fault == 'drop':
                _reset(c)
                return
            if fault == 'stall':
                t_end = time.time() + rule.get('seconds', 30)
                while time.time() < t_end and not self.stopping:
                    time.sleep(0.05)
                _reset(c)
                return
            if fault == 'status':
                status = rule.get('status', 503)
                text = b'Slow Down' if status == 503 else b'Internal Server Error'
                payload = SLOWDOWN if status == 503 else INTERNAL
                c.sendall(b'HTTP/1.1 %d %s\r\nContent-Type: application/xml\r\n'
                          b'Content-Length: %d\r\nConnection: close\r\n\r\n%s'
                          % (status, text, len(payload), payload))
                c.close()
                return
            if rule and rule.get('delay'):
                time.sleep(rule['delay'])
            up = socket.create_connection(self.upstream)
            up.sendall(b'\r\n'.join(kept) + b'\r\n\r\n')
            sent = 0
            limit = rule.get('after', 0) if fault == 'reset' else None
            while True:
                if body:
                    if limit is not None and sent + len(body) >= limit:
                        up.sendall(body[:max(0, limit - sent)])
                        time.sleep(0.1)
                        _reset(c)
                        _reset(up)
                        return
                    up.sendall(body)
                    sent += len(body)
                    body = b''
                if sent >= length:
                    break
                body = c.recv(65536)
                if not body:
                    return
            # the answer, until the server closes
            got = 0
            limit = rule.get('after', 0) if fault == 'cut' else None
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    break
                if limit is not None and got + len(chunk) >= limit:
                    c.sendall(chunk[:max(0, limit - got)])
                    time.sleep(0.1)
                    _reset(c)
                    return
                c.sendall(chunk)
                got += len(chunk)
            c.close()
        except OSError:
            try:
                c.close()
            except OSError:
                pass
        finally:
            self.conns.discard(c)
            if up is not None:
                try:
                    up.close()
                except OSError:
                    pass
