#!/usr/bin/env python3
"""chaos-web: the tiny replicated HTTP service used by chaos-agent's tests and demos.

GET /        200, "hello from <replica>" (the replica is $REPLICA_NAME or the hostname)
GET /health  200, "ok"
Anything else 404. Listens on 0.0.0.0:$PORT (default 8080); threaded; exits promptly
on SIGTERM/SIGINT (it usually runs as PID 1, where the default SIGTERM action is ignored).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

REPLICA = os.environ.get("REPLICA_NAME") or socket.gethostname()


class Handler(BaseHTTPRequestHandler):
    server_version = "chaos-web/1"
    protocol_version = "HTTP/1.1"

    def _reply(self, status: int, text: str, *, body: bool = True) -> None:
        data = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Replica", REPLICA)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _route(self, *, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._reply(200, f"hello from {REPLICA}\n", body=body)
        elif path == "/health":
            self._reply(200, "ok\n", body=body)
        else:
            self._reply(404, "not found\n", body=body)

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        self._route(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._route(body=False)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        if os.environ.get("ACCESS_LOG", "") == "1":
            sys.stderr.write(f"{REPLICA} {self.address_string()} {format % args}\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main() -> int:
    port = int(os.environ.get("PORT", "8080"))
    server = Server(("0.0.0.0", port), Handler)  # noqa: S104 - a server in a container

    def stop(signum: int, _frame: FrameType | None) -> None:
        # shutdown() blocks until serve_forever() returns: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"chaos-web {REPLICA} listening on 0.0.0.0:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
