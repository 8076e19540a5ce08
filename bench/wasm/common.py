"""Shared by bench/wasm scripts: the example filters, configs for mosnx and Envoy
that run the same .wasm, and small upstreams.

Envoy runs the filters with `envoy.filters.http.wasm` (V8); mosnx with its
`wasm` filter. Both get the same root_id and the same configuration string.
"""
from __future__ import annotations

import http.server
import importlib.util
import json
import socketserver
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FILTERS = REPO / "examples" / "wasm" / "filters"
WAT = REPO / "examples" / "wasm" / "wat"


def bench_run():
    """bench/run.py as a module (its Server, wrk runner, Envoy setup...)."""
    spec = importlib.util.spec_from_file_location("mosnx_bench_run", REPO / "bench" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod        # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def module_path(module: str) -> Path:
    return (WAT if module.endswith(".wat") else FILTERS) / module


# ------------------------------------------------------------------ mosnx
def mosnx_filter(name: str, module: str, root_id: str = "", config: dict | None = None, **extra) -> dict:
    body = {"name": name, "module": str(module_path(module)), "root_id": root_id, **extra}
    if config is not None:
        body["config"] = json.dumps(config)
    return {"wasm": body}


def mosnx_config(listeners: dict[str, tuple[int, list[dict]]], clusters: dict[str, int],
                 admin_port: int | None = None) -> str:
    doc: dict = {}
    if admin_port:
        doc["admin"] = {"address": f"127.0.0.1:{admin_port}"}
    doc["listeners"] = [{"name": n, "address": f"127.0.0.1:{port}", "route": {"cluster": "up", "timeout": "15s"},
                         **({"filters": fs} if fs else {})} for n, (port, fs) in listeners.items()]
    doc["clusters"] = [{"name": n, "endpoints": [f"127.0.0.1:{p}"], "connect_timeout": "1s"}
                       for n, p in clusters.items()]
    return json.dumps(doc, indent=2)     # JSON is YAML


# ------------------------------------------------------------------ Envoy
def _addr(p: int) -> dict:
    return {"socket_address": {"address": "127.0.0.1", "port_value": p}}


def envoy_filter(name: str, module: str, root_id: str = "", config: dict | None = None, **_) -> dict:
    cfg = {
        "name": name, "root_id": root_id,
        "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                      "code": {"local": {"filename": str(module_path(module))}}},
    }
    if config is not None:
        cfg["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                "value": json.dumps(config)}
    return {"name": "envoy.filters.http.wasm",
            "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                             "config": cfg}}


def envoy_config(listeners: dict[str, tuple[int, list[dict]]], clusters: dict[str, int],
                 admin_port: int) -> str:
    lst = []
    for name, (port, filters) in listeners.items():
        hcm = {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "codec_type": "AUTO",
            "route_config": {"name": name, "virtual_hosts": [{
                "name": "all", "domains": ["*"],
                "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "up", "timeout": "15s"}}]}]},
            "http_filters": filters + [{
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
        }
        lst.append({"name": name, "address": _addr(port), "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}]})
    cls = [{"name": n, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": n, "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": _addr(p)}}]}]}} for n, p in clusters.items()]
    return json.dumps({"admin": {"address": _addr(admin_port)},
                       "static_resources": {"listeners": lst, "clusters": cls}}, indent=2)


# ------------------------------------------------------------------ upstreams
class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(handler_cls, port: int) -> _Server:
    srv = _Server(("127.0.0.1", port), handler_cls)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


class EchoHandler(http.server.BaseHTTPRequestHandler):
    """200 "hello\\n"; request facts echoed as x-echo-path and x-echo-<header>."""
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        if "chunked" in (self.headers.get("transfer-encoding") or ""):
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            body_in = b"".join(parts)
        else:
            n = int(self.headers.get("content-length") or 0)
            body_in = self.rfile.read(n) if n else b""
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("x-echo-path", self.path)
        self.send_header("x-echo-body", body_in.decode("latin-1"))
        for k in ("x-wasm-request", "x-auth-user", "x-original-path"):
            vals = self.headers.get_all(k) or []
            if vals:
                self.send_header("x-echo-" + k, ",".join(vals))
        body = b"hello\n"
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *a) -> None:
        pass


class AuthHandler(http.server.BaseHTTPRequestHandler):
    """200 with x-user: alice for `authorization: Bearer good`, else 401; a POSTed body
    starting with "ok" gets 200, any other 403."""
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.headers.get("authorization") == "Bearer good":
            self.send_response(200)
            self.send_header("x-user", "alice")
        else:
            self.send_response(401)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        # the body check of body_auth.wasm: a body starting with "ok" passes
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200 if body.startswith(b"ok") else 403)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *a) -> None:
        pass
