"""A small HTTP server that receives webhook deliveries, for the tests, and the check a
receiver makes of their signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[dict, bytes]] = []  # (headers, raw body)
        self.answers: list[int] = []  # statuses to answer with, in turn; then 200
        self.url = ""

    def events(self, name: str) -> list[dict]:
        return [
            json.loads(body) for headers, body in self.received if json.loads(body)["event"] == name
        ]


def verify(secret: str, headers: dict, body: bytes, *, tolerance: int = 300) -> bool:
    """What a receiver does: recompute HMAC-SHA256 over "<t>.<body>", compare in constant
    time, refuse an old timestamp."""
    fields = dict(part.split("=", 1) for part in headers["Bulletin-Signature"].split(","))
    timestamp = int(fields["t"])
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, fields["v1"]) and abs(time.time() - timestamp) < tolerance


@contextmanager
def receiving():
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = receiver.answers.pop(0) if receiver.answers else 200
            receiver.received.append((dict(self.headers), body))
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok" if status == 200 else b"try later")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_port}/hooks/bulletin"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
