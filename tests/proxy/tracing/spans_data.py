"""Records of one traced stream for the exporter tests: built from Span objects (record), as
the Tracer leaves them at a stream's end (stream_record), and as an express stream leaves
a sampled trace that was only its context (express_record)."""
from __future__ import annotations

from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.routes import Route, RouteAction
from mosnx.runtime.tracing.span import CLIENT, SERVER, ExpressRecord, Span, StreamRecord, TraceRecord
from mosnx.runtime.tracing.sw8 import Sw8
from mosnx.runtime.tracing.trace import SampledWire
from mosnx.runtime.tracing.tracer import Tracer

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


def stream_record(*, attempts: tuple[tuple[int, str], ...] = ((200, ""),), status: int | None = 200,
                  detail: str = "", parent: bool = True, path: str = "/cart?x=1", ua: str | None = "curl/8",
                  route: str = "shop", tags: dict | None = None, rpc: dict | None = None) -> StreamRecord:
    """A record as a real stream leaves it: the Tracer's moments on a StreamContext.
    `attempts`: (status or 0 for none, failure detail) of each upstream attempt."""
    pairs = [("host", "shop.local")] + ([("user-agent", ua)] if ua is not None else [])
    if parent:
        pairs.append(("traceparent", f"00-{TRACE:032x}-{0xB2:016x}-01"))
    ctx = StreamContext(RequestHead("GET", path, Headers.from_pairs(pairs)), "ingress", source=("10.0.0.9", 4000))
    t = Tracer("ingress", ("w3c",), service="edge", instance="1@host")
    out: list = []
    t.bind(out.append, None)
    t.begin(ctx)
    tr = ctx.trace
    ctx.route = Route(route, RouteAction(cluster="web")) if route else None
    for i, (st, why) in enumerate(attempts, 1):
        ctx.cluster_name, ctx.upstream_address = "web", f"127.0.0.1:{9000 + i}"
        ctx.attempt_count = i
        tr.attempt_start(ctx, "web", ctx.upstream_address, i)
        if rpc is not None:
            tr.attempt_attributes(rpc)
        if st:
            tr.attempt_status(st)
        if i < len(attempts) or why:
            tr.attempt_end(why)
    for k, v in (tags or {}).items():
        tr.tag(k, v)
    ctx.request_id = "6f1c0a52-6a3f-4b6a-9d0e-5b1f8e0c2a11"
    ctx.error_detail = detail
    if status is not None:
        ctx.response = ResponseHead(status, Headers())
    tr.finish(ctx)
    (rec,) = out
    assert isinstance(rec, StreamRecord)
    return rec


def express_record(status: int = 200, detail: str = "") -> tuple[ExpressRecord, bytes]:
    """A record as an express stream leaves it when its sampled trace was only the
    context it sent (a fresh trace of a W3C listener, Tracer.finish_express), and
    that context."""
    ctx = StreamContext(RequestHead("GET", "/cart?x=1", Headers.from_pairs([("host", "shop.local"),
                                                                           ("user-agent", "curl/8")])),
                        "ingress", source=("10.0.0.9", 4000))
    t = Tracer("ingress", ("w3c",), service="edge", instance="1@host")
    out: list = []
    t.bind(out.append, None)
    w = t.begin_express(ctx)
    assert type(w) is SampledWire and ctx.trace is None
    ctx.route = Route("shop", RouteAction(cluster="web"))
    ctx.cluster_name, ctx.upstream_address, ctx.attempt_count = "web", "127.0.0.1:9001", 1
    ctx.request_id = "6f1c0a52-6a3f-4b6a-9d0e-5b1f8e0c2a11"
    ctx.error_detail = detail
    ctx.response = ResponseHead(status, Headers())
    t.finish_express(ctx, w)
    (rec,) = out
    assert isinstance(rec, ExpressRecord)
    return rec, w
