#!/usr/bin/env python3
"""An independent webhook receiver (standard library only) for tally's tests.

Usage: verify_webhook.py SECRET
Listens on 127.0.0.1 on a free port and prints the port on the first line of stdout.
Every POST is checked as a receiver should: Tally-Signature `t=<unix>,v1=<hex>` must be
the HMAC-SHA256, keyed with the whole secret string, of "<t>.<raw body>", with `t`
within 5 minutes; the answer is 200 when it is, 401 when not. Then one line per request
goes to stdout: {"ok": bool, "id": <Tally-Event-Id>, "type": <Tally-Event-Type>}.
"""
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = sys.argv[1].encode()


def verify(header: str, body: bytes) -> bool:
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(time.time() - t) > 300:
        return False
    mac = hmac.new(SECRET, str(t).encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(mac.hexdigest(), parts.get("v1", ""))


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ok = verify(self.headers.get("Tally-Signature", ""), body)
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", "0")
        self.end_headers()
        print(json.dumps({"ok": ok, "id": self.headers.get("Tally-Event-Id"),
                          "type": self.headers.get("Tally-Event-Type")}), flush=True)

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
