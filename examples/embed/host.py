#!/usr/bin/env python3
"""The smallest host back end for tally's widget: serves an article page and mints the
reader's token (HS256, standard library only).

    TALLY_JWT_SECRET=change-me TALLY_URL=http://127.0.0.1:8080 python3 host.py

then open http://127.0.0.1:8000/ . A real site would take the reader from its own
session; here every visitor is the demo reader (or ?name=… for another one).
"""
import base64
import hashlib
import hmac
import json
import os
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

SECRET = os.environ.get("TALLY_JWT_SECRET", "")
TALLY_URL = os.environ.get("TALLY_URL", "http://127.0.0.1:8080").rstrip("/")
BIND = os.environ.get("HOST_BIND", "127.0.0.1:8000")
TOKEN_TTL_SECS = 15 * 60
PAGE = (Path(__file__).parent / "article.html").read_text(encoding="utf-8")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint(sub: str, name: str, role: str = "reader") -> str:
    """A JWT tally accepts: HS256 over header.payload with the shared secret."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": sub, "name": name, "role": role, "exp": int(time.time()) + TOKEN_TTL_SECS}
    payload = b64url(json.dumps(claims).encode())
    signature = hmac.new(SECRET.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


class Host(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/":
            self.send(200, "text/html; charset=utf-8", PAGE.replace("{{TALLY_URL}}", TALLY_URL))
        elif url.path == "/tally-token":
            # Your own session check goes here: only signed-in readers get a token.
            name = parse_qs(url.query).get("name", ["Demo reader"])[0][:64] or "Demo reader"
            sub = "demo-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
            body = json.dumps({"token": mint(sub, name), "expires_in": TOKEN_TTL_SECS})
            self.send(200, "application/json", body, extra={"Cache-Control": "no-store"})
        else:
            self.send(404, "text/plain", "not found")

    def send(self, status, content_type, body, extra=None):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    if not SECRET:
        raise SystemExit("set TALLY_JWT_SECRET to the secret tally was started with")
    host, port = BIND.rsplit(":", 1)
    print(f"article page on http://{BIND}/ (tally at {TALLY_URL})")
    ThreadingHTTPServer((host, int(port)), Host).serve_forever()
