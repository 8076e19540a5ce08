"""One traced call through mosnx, shown as the trace it makes.

    python examples/tracing/chain.py [--mosnx PATH] [--free-ports]

It starts, all on 127.0.0.1:
  - an OTLP/gRPC collector on 4317 that prints what it receives (mosnx exports to it);
  - `reviews`, an HTTP service on 9090 traced with the OpenTelemetry SDK;
  - mosnx with examples/tracing/mosnx.yaml (listener 8080, admin 15000);
then sends one request from a client traced with the OpenTelemetry SDK and prints the
four spans as a tree: client → edge (server) → edge (client) → reviews. It exits 0 when
they form one trace with the right parents, 1 otherwise. --free-ports runs it on free
ports instead (a copy of the config in a temporary folder).

Needs the OpenTelemetry SDK beside mosnx: pip install opentelemetry-sdk.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import yaml
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

HERE = Path(__file__).resolve().parent
PROP = TraceContextTextMapPropagator()
KINDS = {1: "internal", 2: "server", 3: "client"}


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """OTLP/gRPC TraceService: keeps (service, kind, name, trace, span, parent) per span."""

    def __init__(self, port: int) -> None:
        self.spans: list[tuple[str, str, str, str, str, str]] = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()

    def Export(self, request: Any, context: Any) -> Any:
        for rs in request.resource_spans:
            attrs = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
            # opentelemetry-proto's newer and older copies name the scope level differently
            groups = rs.scope_spans if hasattr(rs, "scope_spans") else rs.instrumentation_library_spans
            for group in groups:
                for s in group.spans:
                    print(f"collector: {attrs.get('service.name', '?')} {KINDS.get(s.kind, s.kind)} span {s.name!r}",
                          flush=True)
                    with self.lock:
                        self.spans.append((attrs.get("service.name", "?"), KINDS.get(s.kind, "?"), s.name,
                                           s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex()))
        return trace_service_pb2.ExportTraceServiceResponse()


def sdk_tracer(service: str, memory: InMemorySpanExporter) -> Any:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider.get_tracer("examples.tracing")


def serve_reviews(port: int, memory: InMemorySpanExporter) -> ThreadingHTTPServer:
    tracer = sdk_tracer("reviews", memory)

    class Reviews(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            ctx = PROP.extract({"traceparent": self.headers.get("traceparent", "")})
            with tracer.start_as_current_span(f"GET {self.path}", context=ctx, kind=SpanKind.SERVER):
                body = b'{"reviews": ["a fine book"]}\n'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Reviews)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def config(free: bool, folder: Path) -> tuple[Path, dict[str, Any]]:
    path = HERE / "mosnx.yaml"
    cfg = yaml.safe_load(path.read_text())
    if not free:
        return path, cfg
    cfg["admin"]["address"] = f"127.0.0.1:{free_port()}"
    cfg["listeners"][0]["address"] = f"127.0.0.1:{free_port()}"
    cfg["clusters"][0]["endpoints"] = [f"127.0.0.1:{free_port()}"]
    cfg["tracing"]["exporters"] = [{"otlp": {"endpoint": f"127.0.0.1:{free_port()}"}}]
    path = folder / "mosnx.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, cfg


def wait_ready(admin: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mosnx exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("mosnx did not become ready")


def mosnx_binary(given: str | None) -> str:
    found = given or shutil.which("mosnx", path=os.path.dirname(sys.executable)) or shutil.which("mosnx")
    if not found:
        raise SystemExit("mosnx not found: pass --mosnx PATH")
    return found


def tree(spans: list[tuple[str, str, str, str, str, str]]) -> list[str]:
    children: dict[str, list[tuple[str, str, str, str, str, str]]] = {}
    ids = {s[4] for s in spans}
    for s in spans:
        children.setdefault(s[5] if s[5] in ids else "", []).append(s)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for s in children.get(parent, []):
            lines.append(f"{'  ' * depth}{s[0]} {s[1]} {s[2]!r} span {s[4]} trace {s[3]}")
            walk(s[4], depth + 1)
    walk("", 0)
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mosnx", help="the mosnx program (default: beside this Python, else on PATH)")
    ap.add_argument("--free-ports", action="store_true", help="use free ports instead of the config's")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path, cfg = config(args.free_ports, Path(tmp))
        listen = port_of(cfg["listeners"][0]["address"])
        collector = Collector(port_of(cfg["tracing"]["exporters"][0]["otlp"]["endpoint"]))
        memory = InMemorySpanExporter()
        reviews = serve_reviews(port_of(cfg["clusters"][0]["endpoints"][0]), memory)
        proc = subprocess.Popen([mosnx_binary(args.mosnx), "run", "-c", str(path), "--workers", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(port_of(cfg["admin"]["address"]), proc)
            tracer = sdk_tracer("client", memory)
            with tracer.start_as_current_span("GET /reviews/1", kind=SpanKind.CLIENT) as span:
                carrier: dict[str, str] = {}
                PROP.inject(carrier, context=set_span_in_context(span))
                req = urllib.request.Request(f"http://127.0.0.1:{listen}/reviews/1", headers=carrier)
                with urllib.request.urlopen(req, timeout=10) as r:
                    print(f"client: {r.status} {r.read().decode().strip()}", flush=True)
            deadline = time.monotonic() + 15
            while len(collector.spans) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(15)
            reviews.shutdown()
            collector.server.stop(0)
    sdk = [(s.resource.attributes.get("service.name", "?"), KINDS[2] if s.kind == SpanKind.SERVER else KINDS[3],
            s.name, f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}",
            f"{s.parent.span_id:016x}" if s.parent else "") for s in memory.get_finished_spans()]
    spans = sdk + collector.spans
    print("\nthe trace:")
    for line in tree(spans):
        print("  " + line)
    chain = [("client", "client"), ("edge", "server"), ("edge", "client"), ("reviews", "server")]
    by_role = {(s[0], s[1]): s for s in spans}
    linked = (all(role in by_role for role in chain) and len({s[3] for s in spans}) == 1
              and all(by_role[chain[i + 1]][5] == by_role[chain[i]][4] for i in range(len(chain) - 1)))
    print("\none trace, each span the parent of the next" if linked else "\nthe chain is broken", flush=True)
    return 0 if linked else 1


if __name__ == "__main__":
    sys.exit(main())
