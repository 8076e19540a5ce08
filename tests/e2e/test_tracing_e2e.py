"""Distributed tracing through a real mosnx: the context an upstream receives in
each format, and the spans exported to an OTLP receiver (gRPC, built on
opentelemetry-proto), a Zipkin receiver and a SkyWalking segment receiver (HTTP),
all on 127.0.0.1 in this test. With the OpenTelemetry SDK, an instrumented client
and upstream around the proxy make one trace of four spans."""
from __future__ import annotations

import base64
import json
import re
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from mosnx.proxy.tracing.otlp import scope_spans

from .conftest import HOST, build_config, free_port, wait_until
from .h2kit import H2Client

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
PID = "00f067aa0ba902b7"
WAIT = 15.0


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.server.add_insecure_port(f"{HOST}:{self.port}")
        self.server.start()

    def Export(self, request, context):
        with self.lock:
            self.requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def spans(self) -> list[tuple[dict, object]]:
        """(resource attributes, span) for every span received."""
        out = []
        with self.lock:
            for req in self.requests:
                for rs in req.resource_spans:
                    res = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
                    for ss in scope_spans(rs):
                        out.extend((res, s) for s in ss.spans)
        return out

    def stop(self) -> None:
        self.server.stop(0)


class HttpReceiver:
    """Records the JSON bodies POSTed to it, by path."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, object]] = []
        recv = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(n)
                recv.posts.append((self.path, json.loads(body)))
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, free_port()), H)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collectors():
    otlp, zipkin, sky = OtlpReceiver(), HttpReceiver(), HttpReceiver()
    yield otlp, zipkin, sky
    otlp.stop()
    zipkin.stop()
    sky.stop()


def traced(mosnx, upstreams, collectors, route=None, listener_tracing=None, workers=1):
    otlp, zipkin, sky = collectors
    cfg = build_config(free_port(), free_port(), upstreams, route=route)
    cfg["listeners"][0]["tracing"] = listener_tracing or {"propagation": ["w3c", "b3", "sw8"],
                                                          "random_sampling": "100%"}
    cfg["tracing"] = {"service_name": "edge", "batch_delay": "50ms", "exporters": [
        {"otlp": {"endpoint": f"{HOST}:{otlp.port}"}},
        {"zipkin": {"endpoint": f"http://{HOST}:{zipkin.port}/api/v2/spans"}},
        {"skywalking": {"endpoint": f"http://{HOST}:{sky.port}"}},
    ]}
    return mosnx(config=cfg, workers=workers)


def b64d(s: str) -> str:
    return base64.b64decode(s).decode()


def test_context_leaves_in_every_format_and_spans_are_exported(upstream, mosnx, collectors):
    otlp, zipkin, sky = collectors
    up = upstream()
    proxy = traced(mosnx, [up], collectors)
    r = proxy.request("GET", "/shop/cart?x=1", headers=[("traceparent", f"00-{TID}-{PID}-01"),
                                                        ("tracestate", "vendor=abc"), ("baggage", "user=7"),
                                                        ("user-agent", "tracing-test/1")])
    assert r.status == 200
    (req,) = up.requests
    tp = req.header("traceparent")
    assert tp is not None and tp.startswith(f"00-{TID}-") and tp.endswith("-01")
    client_span = tp.split("-")[2]
    assert client_span != PID
    assert req.header("tracestate") == "vendor=abc" and req.header("baggage") == "user=7"
    b3 = req.header("b3").split("-")
    assert b3[0] == TID and b3[1] == client_span and b3[2] == "1"
    assert req.header("x-b3-traceid") == TID and req.header("x-b3-spanid") == client_span
    sw = req.header("sw8").split("-")
    assert len(sw) == 8 and sw[0] == "1" and b64d(sw[1]) == TID and sw[3] == "1"
    assert b64d(sw[4]) == "edge" and b64d(sw[6]) == "/shop/cart"

    spans = wait_until(lambda: len(otlp.spans()) >= 2 and otlp.spans(), WAIT, "two OTLP spans")
    by_kind = {s.kind: (res, s) for res, s in spans}
    res, server = by_kind[2]             # SPAN_KIND_SERVER
    _, client = by_kind[3]               # SPAN_KIND_CLIENT
    assert res["service.name"] == "edge" and res["service.instance.id"]
    assert server.trace_id.hex() == TID == client.trace_id.hex()
    assert server.parent_span_id.hex() == PID
    assert client.parent_span_id == server.span_id
    assert client.span_id.hex() == client_span
    sattrs = {kv.key: kv.value for kv in server.attributes}
    assert sattrs["http.request.method"].string_value == "GET"
    assert sattrs["url.path"].string_value == "/shop/cart"
    assert sattrs["http.response.status_code"].int_value == 200
    assert sattrs["user_agent.original"].string_value == "tracing-test/1"
    assert sattrs["network.peer.address"].string_value == "127.0.0.1"
    cattrs = {kv.key: kv.value for kv in client.attributes}
    assert cattrs["mosnx.cluster"].string_value == "web"
    assert cattrs["server.address"].string_value == f"{HOST}:{up.port}"

    zspans = wait_until(lambda: [s for _, body in zipkin.posts for s in body], WAIT, "Zipkin spans")
    assert {(s["kind"], s["traceId"]) for s in zspans} == {("SERVER", TID), ("CLIENT", TID)}
    zclient = next(s for s in zspans if s["kind"] == "CLIENT")
    assert zclient["id"] == client_span and zclient["localEndpoint"]["serviceName"] == "edge"

    segs = wait_until(lambda: [s for path, body in sky.posts if path == "/v3/segments" for s in body], WAIT,
                      "SkyWalking segments")
    (seg,) = segs
    assert seg["traceId"] == TID and seg["service"] == "edge"
    assert [s["spanType"] for s in seg["spans"]] == ["Entry", "Exit"]
    assert seg["spans"][1]["peer"] == f"{HOST}:{up.port}" and seg["spans"][1]["parentSpanId"] == 0
    assert seg["traceSegmentId"] == b64d(sw[2])
    assert proxy.wait_stat("tracing.otlp.spans_exported", 2) >= 2


def test_a_retry_yields_two_client_spans(upstream, mosnx, collectors):
    otlp, _, _ = collectors
    seq = [503, 200]

    def answer(conn, req):
        conn.respond(seq.pop(0) if len(seq) > 1 else seq[0], b"ok")
    up = upstream(on_request=answer)
    proxy = traced(mosnx, [up], collectors, route={"retry": {"num_retries": 2, "retry_on": "5xx"}})
    r = proxy.request("GET", "/r", headers=[("traceparent", f"00-{TID}-{PID}-01")])
    assert r.status == 200
    parents = [m.header("traceparent").split("-")[2] for m in up.requests]
    assert len(parents) == 2 and parents[0] != parents[1]
    spans = wait_until(lambda: len(otlp.spans()) >= 3 and otlp.spans(), WAIT, "three OTLP spans")
    server = next(s for _, s in spans if s.kind == 2)
    clients = [s for _, s in spans if s.kind == 3]
    assert len(clients) == 2
    assert all(c.parent_span_id == server.span_id for c in clients)
    assert sorted(c.span_id.hex() for c in clients) == sorted(parents)
    codes = sorted(next(kv.value.int_value for kv in c.attributes if kv.key == "http.response.status_code")
                   for c in clients)
    assert codes == [200, 503]
    failed = next(c for c in clients if c.span_id.hex() == parents[0])
    assert failed.status.code == 2          # STATUS_CODE_ERROR


def test_malformed_traceparent_starts_a_new_trace_and_counts(upstream, mosnx, collectors):
    up = upstream()
    proxy = traced(mosnx, [up], collectors)
    r = proxy.request("GET", "/", headers=[("traceparent", f"00-{TID}-{'0' * 16}-01")])
    assert r.status == 200
    tp = up.requests[0].header("traceparent")
    assert tp is not None and tp.split("-")[1] != TID
    assert proxy.wait_stat("tracing.w3c.invalid", 1) == 1


def test_sw8_enters_and_leaves_as_w3c(upstream, mosnx, collectors):
    otlp, _, sky = collectors
    up = upstream()
    proxy = traced(mosnx, [up], collectors, listener_tracing={"propagation": ["sw8", "w3c"]})
    b = lambda s: base64.b64encode(s.encode()).decode()   # noqa: E731
    incoming = "-".join(["1", b("sw.trace.42"), b("sw.seg.7"), "2", b("caller"), b("caller-1"), b("/buy"),
                         b(f"{HOST}:{proxy.port}")])
    r = proxy.request("GET", "/", headers=[("sw8", incoming), ("sw8-correlation", "a2V5:dmFsdWU=")])
    assert r.status == 200
    req = up.requests[0]
    assert req.header("sw8-correlation") == "a2V5:dmFsdWU="
    sw = req.header("sw8").split("-")
    assert b64d(sw[1]) == "sw.trace.42" and sw[0] == "1"
    tp = req.header("traceparent").split("-")
    assert len(tp[1]) == 32 and tp[3] == "01"
    segs = wait_until(lambda: [s for _, body in sky.posts for s in body], WAIT, "SkyWalking segments")
    ref = segs[0]["spans"][0]["refs"][0]
    assert (ref["traceId"], ref["parentTraceSegmentId"], ref["parentSpanId"], ref["parentService"]) == (
        "sw.trace.42", "sw.seg.7", 2, "caller")
    spans = wait_until(lambda: len(otlp.spans()) >= 2 and otlp.spans(), WAIT, "two OTLP spans")
    assert {s.trace_id.hex() for _, s in spans} == {tp[1]}


def test_an_http2_request_is_traced_too(upstream, mosnx, collectors):
    otlp = collectors[0]
    up = upstream()
    proxy = traced(mosnx, [up], collectors)
    with H2Client(proxy.port) as c:
        r = c.request("GET", "/h2", headers=[("traceparent", f"00-{TID}-{PID}-01")], authority="shop.test")
    assert r.status == 200
    assert up.requests[0].header("traceparent").split("-")[1] == TID
    spans = wait_until(lambda: len(otlp.spans()) >= 2 and otlp.spans(), WAIT, "two OTLP spans")
    server = next(s for _, s in spans if s.kind == 2)
    attrs = {kv.key: kv.value.string_value for kv in server.attributes}
    assert attrs["network.protocol.version"] == "2" and attrs["server.address"] == "shop.test"


def test_a_proxy_failure_has_a_server_span_only_with_its_cause(mosnx, collectors):
    otlp = collectors[0]
    proxy = traced(mosnx, [], collectors)           # a cluster with no endpoint
    r = proxy.request("GET", "/", headers=[("traceparent", f"00-{TID}-{PID}-01")])
    assert r.status == 503 and r.header("x-mosnx-error") == "no_healthy_upstream"
    spans = wait_until(lambda: otlp.spans(), WAIT, "the server span")
    ((_, server),) = spans
    assert server.kind == 2 and server.status.code == 2 and server.status.message == "no_healthy_upstream"


def test_every_worker_exports(upstream, mosnx, collectors):
    otlp = collectors[0]
    up = upstream()
    proxy = traced(mosnx, [up], collectors, workers=2)
    for _ in range(6):
        assert proxy.request("GET", "/w").status == 200
    spans = wait_until(lambda: len(otlp.spans()) >= 12 and otlp.spans(), WAIT, "twelve OTLP spans")
    assert len({s.trace_id for _, s in spans}) == 6
    assert proxy.wait_stat("tracing.otlp.spans_exported", 12) == 12
    assert proxy.stat("tracing.sampled") == 6


def test_unreachable_collector_costs_a_counter(upstream, mosnx):
    up = upstream()
    cfg = build_config(free_port(), free_port(), [up])
    cfg["listeners"][0]["tracing"] = {"propagation": "w3c"}
    cfg["tracing"] = {"batch_delay": "20ms", "exporters": [
        {"zipkin": {"endpoint": f"http://{HOST}:{free_port()}/api/v2/spans"}}]}
    proxy = mosnx(config=cfg)
    for _ in range(3):
        assert proxy.request("GET", "/").status == 200
    assert proxy.wait_stat("tracing.zipkin.export_failed", 1) >= 1
    assert proxy.log().count("zipkin export failed") == 1     # once a minute at most


def test_instrumented_client_and_upstream_make_one_trace(upstream, mosnx, collectors):
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    memory = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tracing-e2e")
    prop = TraceContextTextMapPropagator()

    def answer(conn, req):
        carrier = {"traceparent": req.header("traceparent") or ""}
        with tracer.start_as_current_span("upstream", context=prop.extract(carrier), kind=SpanKind.SERVER):
            conn.respond(200, b"served")
    up = upstream(on_request=answer)
    otlp = collectors[0]
    proxy = traced(mosnx, [up], collectors)
    with tracer.start_as_current_span("client", kind=SpanKind.CLIENT) as cspan:
        carrier: dict[str, str] = {}
        prop.inject(carrier, context=set_span_in_context(cspan))
        r = proxy.request("GET", "/chain", headers=list(carrier.items()))
    assert r.status == 200
    spans = wait_until(lambda: len(otlp.spans()) >= 2 and otlp.spans(), WAIT, "mosnx spans")
    m_server = next(s for _, s in spans if s.kind == 2)
    m_client = next(s for _, s in spans if s.kind == 3)
    sdk_spans = {s.name: s for s in memory.get_finished_spans()}
    client, served = sdk_spans["client"], sdk_spans["upstream"]
    trace_id = f"{client.context.trace_id:032x}"
    assert m_server.trace_id.hex() == trace_id == f"{served.context.trace_id:032x}"
    assert m_server.parent_span_id.hex() == f"{client.context.span_id:016x}"
    assert m_client.parent_span_id == m_server.span_id
    assert f"{served.parent.span_id:016x}" == m_client.span_id.hex()


def test_unsampled_requests_carry_their_context_and_log_their_trace_id(upstream, mosnx, tmp_path):
    """At 0% sampling nothing is recorded, yet every request goes upstream with a
    well-formed context, the flag off: a trace of its own (the id the access log
    shows), or the caller's trace id, kept."""
    log = tmp_path / "access.log"
    up = upstream()
    proxy = mosnx(up, listener={"tracing": {"propagation": ["w3c"], "random_sampling": "0%"},
                                "access_log": {"path": str(log), "format": "%trace.id% %trace.sampled%"}})
    assert proxy.request("GET", "/a").status == 200
    assert proxy.request("GET", "/b", headers=[("traceparent", f"00-{TID}-{PID}-00")]).status == 200
    own, continued = (m.header("traceparent") for m in up.requests)
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-00", own) and int(own.split("-")[1], 16)
    assert continued.startswith(f"00-{TID}-") and continued.endswith("-00") and continued.split("-")[2] != PID
    proxy.wait_until(lambda: log.exists() and log.read_text().count("\n") == 2, what="two access log lines")
    assert log.read_text().splitlines() == [f"{own.split('-')[1]} False", f"{TID} False"]


def _w3c_alone(mosnx, ups, collectors, rate="100%", **listener):
    """A listener writing W3C alone: a fresh sampled trace's context is drawn ahead and
    an express stream keeps it as it keeps an unsampled one's."""
    otlp, _, _ = collectors
    cfg = build_config(free_port(), free_port(), ups)
    cfg["listeners"][0]["tracing"] = {"propagation": ["w3c"], "random_sampling": rate}
    cfg["listeners"][0].update(listener)
    cfg["tracing"] = {"service_name": "edge", "batch_delay": "50ms",
                      "exporters": [{"otlp": {"endpoint": f"{HOST}:{otlp.port}"}}]}
    return mosnx(config=cfg)


def _by_trace(spans) -> dict[str, dict[int, list]]:
    out: dict[str, dict[int, list]] = {}
    for _, s in spans:
        out.setdefault(s.trace_id.hex(), {}).setdefault(s.kind, []).append(s)
    return out


@pytest.mark.parametrize("logged", [False, True])
def test_a_fresh_sampled_trace_on_the_express_path(upstream, mosnx, collectors, tmp_path, logged):
    # with an access log the trace becomes its object at the stream's end (the log may
    # name its ids); without, the stream records its spans from the context it kept:
    # the same spans either way
    otlp = collectors[0]
    up = upstream()
    log = tmp_path / "access.log"
    extra = {"access_log": {"path": str(log), "format": "%trace.id% %trace.sampled%"}} if logged else {}
    proxy = _w3c_alone(mosnx, [up], collectors, **extra)
    for _ in range(3):
        assert proxy.request("GET", "/fresh?q=1", headers=[("user-agent", "fresh/1")]).status == 200
    sent = [m.header("traceparent") for m in up.requests]
    assert all(re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", tp) for tp in sent)
    spans = wait_until(lambda: len(otlp.spans()) >= 6 and otlp.spans(), WAIT, "six OTLP spans")
    traces = _by_trace(spans)
    assert sorted(traces) == sorted(tp.split("-")[1] for tp in sent)
    for tp in sent:
        t = traces[tp.split("-")[1]]
        (server,), (client,) = t[2], t[3]
        assert server.parent_span_id == b"" and client.parent_span_id == server.span_id
        assert client.span_id.hex() == tp.split("-")[2] != server.span_id.hex()
        assert server.start_time_unix_nano <= client.start_time_unix_nano <= client.end_time_unix_nano
        assert client.end_time_unix_nano <= server.end_time_unix_nano
        sa = {kv.key: kv.value for kv in server.attributes}
        ca = {kv.key: kv.value for kv in client.attributes}
        assert sa["http.response.status_code"].int_value == 200 == ca["http.response.status_code"].int_value
        assert sa["url.path"].string_value == "/fresh" == ca["url.path"].string_value
        assert sa["user_agent.original"].string_value == "fresh/1"
        assert sa["mosnx.attempts"].int_value == 1 == ca["mosnx.attempt"].int_value
        assert ca["server.address"].string_value == f"{HOST}:{up.port}" and ca["mosnx.cluster"].string_value == "web"
        assert (server.name, client.name) == ("GET default", "GET web")
        assert server.status.code == client.status.code == 0
    assert proxy.stat("tracing.sampled") == 3
    if logged:
        proxy.wait_until(lambda: log.exists() and log.read_text().count("\n") == 3, what="three log lines")
        assert log.read_text().splitlines() == [f"{tp.split('-')[1]} True" for tp in sent]


def test_a_fresh_sampled_trace_whose_upstream_refuses(mosnx, collectors):
    # the attempt fails on the express path: a client span with the failure, and the
    # server span with the proxy's reply
    otlp = collectors[0]
    proxy = _w3c_alone(mosnx, [free_port()], collectors)      # nothing listens there
    r = proxy.request("GET", "/down")
    assert r.status == 503
    detail = r.header("x-mosnx-error")
    spans = wait_until(lambda: len(otlp.spans()) >= 2 and otlp.spans(), WAIT, "two OTLP spans")
    ((server,), (client,)), = [(t[2], t[3]) for t in _by_trace(spans).values()]
    assert client.parent_span_id == server.span_id
    assert server.status.code == 2 == client.status.code
    assert server.status.message == detail == client.status.message
    sa = {kv.key: kv.value for kv in server.attributes}
    ca = {kv.key for kv in client.attributes}
    assert sa["http.response.status_code"].int_value == 503 and "http.response.status_code" not in ca


def test_sampled_and_unsampled_fresh_traces_interleave(upstream, mosnx, collectors):
    # at 50 % the places random sampling takes in the pool of contexts drawn ahead hold
    # sampled ones: exactly the traces whose context went upstream with the flag on
    # are exported, each with both its spans
    otlp = collectors[0]
    up = upstream()
    proxy = _w3c_alone(mosnx, [up], collectors, rate="50%")
    for _ in range(40):
        assert proxy.request("GET", "/half").status == 200
    sent = [m.header("traceparent").split("-") for m in up.requests]
    on = {tp[1]: tp[2] for tp in sent if tp[3] == "01"}
    assert {tp[3] for tp in sent} == {"00", "01"} and len({tp[1] for tp in sent}) == 40
    proxy.wait_stat("tracing.otlp.spans_exported", 2 * len(on))
    traces = _by_trace(otlp.spans())
    assert set(traces) == set(on)
    assert all(t[3][0].span_id.hex() == on[tid] for tid, t in traces.items())
    assert proxy.stat("tracing.sampled") == len(on)
