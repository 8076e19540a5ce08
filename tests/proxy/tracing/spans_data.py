"""Records of one traced stream, as runtime.tracing leaves them, for the exporter tests."""
from __future__ import annotations

from mosnx.runtime.tracing.span import CLIENT, SERVER, Span, TraceRecord
from mosnx.runtime.tracing.sw8 import Sw8

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736


def record(sw_parent: Sw8 | None = None, attempts: int = 1, service: str = "edge") -> TraceRecord:
    server = Span("GET shop", SERVER, TRACE, 0xA1, 0xB2, 1_700_000_000_000_000_000)
    server.end_ns = server.start_ns + 5_000_000
    server.peer = "10.0.0.9:4000"
    server.attributes.update({"http.request.method": "GET", "url.path": "/cart", "http.response.status_code": 200})
    spans = [server]
    for i in range(1, attempts + 1):
        c = Span("GET web", CLIENT, TRACE, 0xC0 + i, 0xA1, server.start_ns + 1000 * i)
        c.end_ns = c.start_ns + 2_000_000
        c.peer = "127.0.0.1:9000"
        c.attributes.update({"mosnx.attempt": i, "url.path": "/cart", "mosnx.cluster": "web"})
        if i < attempts:
            c.error, c.message = True, "upstream_reset"
        spans.append(c)
    return TraceRecord(service, "1@host", spans, sw_parent, sw_parent.trace_id if sw_parent else f"{TRACE:032x}",
                       f"{TRACE:032x}.{0xA1:016x}")
