"""A local peer for the slack and pagerduty plugins (no Slack or PagerDuty
server exists here): it records every request (path, headers, body, time)
and answers as Slack's and PagerDuty's documentation say, by path:

  /hooks/ok/...          200 "ok"                       (incoming webhook)
  /hooks/ratelimit/...   429 Retry-After: 1, then 200 "ok"
  /hooks/flaky/...       503, then 200 "ok"
  /hooks/invalid/...     400 "invalid_payload"
  /hooks/revoked/...     404 "no_service"
  /hooks/archived/...    410 "channel_is_archived"
  /api/chat.postMessage  200 {"ok": true, "ts", "channel"} for token
                         xoxb-good; channel CNOPE: channel_not_found;
                         CRATE: ratelimited (Retry-After: 1) once; another
                         token: invalid_auth
  /v2/enqueue            202 {"status": "success", "dedup_key"}; a routing
                         key "bad": 400 with errors; /v2/enqueue429: 429
                         once, then 202
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self):
        self.requests = []
        self.seen = {}
        self.lock = threading.Lock()
        rec = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(n).decode('utf-8', 'replace')
                with rec.lock:
                    rec.requests.append({'path': self.path, 'headers': dict(self.headers),
                                         'body': body, 'time': time.time()})
                    count = rec.seen.get(self.path, 0) + 1
                    rec.seen[self.path] = count
                status, headers, answer = rec.answer(self.path, self.headers, body, count)
                data = answer.encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), H)
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()

    def clear(self):
        with self.lock:
            self.requests.clear()
            self.seen.clear()

    def bodies(self, prefix=''):
        return [r for r in self.requests if r['path'].startswith(prefix)]

    def answer(self, path, headers, body, count):
        text = {'Content-Type': 'text/plain'}
        js = {'Content-Type': 'application/json'}
        if path.startswith('/hooks/ok'):
            return 200, text, 'ok'
        if path.startswith('/hooks/ratelimit'):
            return (429, dict(text, **{'Retry-After': '1'}), 'rate limited') if count == 1 else (200, text, 'ok')
        if path.startswith('/hooks/flaky'):
            return (503, text, 'service unavailable') if count == 1 else (200, text, 'ok')
        if path.startswith('/hooks/invalid'):
            return 400, text, 'invalid_payload'
        if path.startswith('/hooks/revoked'):
            return 404, text, 'no_service'
        if path.startswith('/hooks/archived'):
            return 410, text, 'channel_is_archived'
        if path.startswith('/api/chat.postMessage'):
            msg = json.loads(body)
            if headers.get('Authorization') != 'Bearer xoxb-good':
                return 200, js, json.dumps({'ok': False, 'error': 'invalid_auth'})
            ch = msg.get('channel')
            if ch == 'CNOPE':
                return 200, js, json.dumps({'ok': False, 'error': 'channel_not_found'})
            with self.lock:
                self.seen[ch] = self.seen.get(ch, 0) + 1
                per_channel = self.seen[ch]
            if ch == 'CRATE' and per_channel == 1:
                return 429, dict(js, **{'Retry-After': '1'}), json.dumps({'ok': False, 'error': 'ratelimited'})
            return 200, js, json.dumps({'ok': True, 'channel': 'C0DRILL',
                                        'ts': '1700000000.%06d' % count})
        if path.startswith('/v2/enqueue'):
            ev = json.loads(body)
            if path.startswith('/v2/enqueue429') and count == 1:
                return 429, js, json.dumps({'status': 'throttle event', 'message': 'Requests for this service are arriving too quickly.'})
            if ev.get('routing_key') == 'bad':
                return 400, js, json.dumps({'status': 'invalid event', 'message': 'Event object is invalid',
                                            'errors': ["Length of 'routing_key' is incorrect (should be 32 characters)"]})
            return 202, js, json.dumps({'status': 'success', 'message': 'Event processed',
                                        'dedup_key': ev.get('dedup_key') or 'generated-key'})
        return 404, text, 'not found'
