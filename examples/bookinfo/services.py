"""Bookinfo-like services for the traffic-management tasks: small HTTP/1.1 servers that
say who they are, and misbehave on request so each task has something to show.

    python examples/bookinfo/services.py            # the ports mosnx.yaml expects

Every service answers any path with JSON {"service", "version", "path", "host"}.
Query parameters make it misbehave, as httpbin does:
  ?delay=MS        answer after MS milliseconds
  ?status=CODE     answer with CODE
  ?fail_every=N    answer 503 to every Nth request (counted per service instance)
"""
from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

# name -> (version, port): the endpoints of examples/bookinfo/mosnx.yaml
SERVICES = {
    "productpage": ("v1", 9080),
    "details": ("v1", 9081),
    "reviews-v1": ("v1", 9082),
    "reviews-v2": ("v2", 9083),
    "reviews-v3": ("v3", 9084),
    "ratings": ("v1", 9085),
    "httpbin": ("v1", 9086),
}


class Service(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name: str, version: str, port: int):
        super().__init__(("127.0.0.1", port), Handler)
        self.name = name
        self.version = version
        self.count = 0
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str, dict[str, str]]] = []   # (method, path, headers)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Service

    def log_message(self, fmt, *args):       # quiet: tests and demos read the proxy's log
        pass

    def _answer(self):
        n = int(self.headers.get("content-length") or 0)
        if n:
            self.rfile.read(n)
        srv = self.server
        with srv.lock:
            srv.count += 1
            count = srv.count
            srv.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        q = {k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()}
        if "delay" in q:
            time.sleep(int(q["delay"]) / 1000.0)
        status = int(q.get("status", 200))
        every = int(q.get("fail_every", 0))
        if every and count % every == 0:
            status = 503
        body = json.dumps({"service": srv.name.split("-")[0], "version": srv.version,
                           "path": self.path, "host": self.headers.get("host", "")}).encode() + b"\n"
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer


def start(ports: dict[str, int] | None = None) -> dict[str, Service]:
    """Start every service (on `ports` where given) in background threads."""
    out = {}
    for name, (version, port) in SERVICES.items():
        srv = Service(name, version, (ports or {}).get(name, port))
        threading.Thread(target=srv.serve_forever, name=name, daemon=True).start()
        out[name] = srv
    return out


def stop(services: dict[str, Service]) -> None:
    for srv in services.values():
        srv.shutdown()
        srv.server_close()


if __name__ == "__main__":
    running = start()
    for name, srv in running.items():
        print(f"{name:12} {srv.version} on 127.0.0.1:{srv.server_address[1]}", file=sys.stderr)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stop(running)
