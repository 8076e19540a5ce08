"""The Tracer's sampling (Envoy's HCM rules) and the spans one stream records:
a server span, a client span per attempt, their parents and attributes."""
from __future__ import annotations

import random

import pytest

from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.stats import Store
from mosnx.runtime.tracing.span import A_SPAN, CLIENT, SERVER, Record, TraceRecord
from mosnx.runtime.tracing.trace import SampledWire
from mosnx.runtime.tracing.tracer import SampledPooled, StreamTrace, Tracer, UnsampledTrace
from mosnx.runtime.tracing import propagation, sw8, w3c

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
PID = "00f067aa0ba902b7"


def ctx_with(*pairs: tuple[str, str], path: str = "/a/b?q=1") -> StreamContext:
    hd = Headers.from_pairs((("host", "shop.local"), ("user-agent", "curl/8"), *pairs))
    return StreamContext(RequestHead("GET", path, hd), "ingress", source=("10.1.2.3", 5555))


def bound(**kw: float) -> tuple[Tracer, list[Record], Store]:
    t = Tracer("ingress", ("w3c", "b3", "sw8"), service="shop", instance="i-1", **kw)
    out: list[Record] = []
    store = Store()
    t.bind(out.append, store)
    return t, out, store


def test_continues_an_incoming_trace_and_records_server_and_client_spans() -> None:
    t, out, _ = bound()
    ctx = ctx_with(("traceparent", f"00-{TID}-{PID}-01"))
    t.begin(ctx)
    tr = ctx.trace
    assert tr.sampled and tr.trace_id_hex == TID and tr.parent_id == int(PID, 16)
    ctx.cluster_name = "web"
    tr.attempt_start(ctx, "web", "127.0.0.1:9000", 1)
    client_id = tr.current[A_SPAN]
    sent = ctx.request.headers.get("traceparent")
    assert sent == f"00-{TID}-{client_id:016x}-01"
    tr.attempt_status(200)
    tr.attempt_end("")
    ctx.response = ResponseHead(200, Headers())
    tr.finish(ctx)
    (rec,) = out
    server, client = rec.spans
    assert (server.kind, client.kind) == (SERVER, CLIENT)
    assert server.parent_id == int(PID, 16) and client.parent_id == server.span_id
    assert client.span_id == client_id
    assert server.attributes["http.request.method"] == "GET"
    assert server.attributes["url.path"] == "/a/b" and server.attributes["url.scheme"] == "http"
    assert server.attributes["server.address"] == "shop.local"
    assert server.attributes["network.peer.address"] == "10.1.2.3"
    assert server.attributes["user_agent.original"] == "curl/8"
    assert server.attributes["http.response.status_code"] == 200 and not server.error
    assert client.attributes["mosnx.cluster"] == "web"
    assert client.attributes["server.address"] == "127.0.0.1:9000"
    assert client.attributes["http.response.status_code"] == 200
    assert (rec.service, rec.instance) == ("shop", "i-1")


def test_retries_are_separate_client_spans_under_one_server_span() -> None:
    t, out, _ = bound()
    ctx = ctx_with()
    t.begin(ctx)
    tr = ctx.trace
    tr.attempt_start(ctx, "web", "h1:80", 1)
    tr.attempt_status(503)
    tr.attempt_end("")
    tr.attempt_start(ctx, "web", "h2:80", 2)
    tr.attempt_status(200)
    tr.attempt_end("")
    ctx.response = ResponseHead(200, Headers())
    tr.finish(ctx)
    server, c1, c2 = out[0].spans
    assert c1.parent_id == c2.parent_id == server.span_id and c1.span_id != c2.span_id
    assert c1.error and not c2.error
    assert c2.attributes["http.request.resend_count"] == 1 and c2.attributes["mosnx.attempt"] == 2
    assert server.parent_id == 0                # a new trace: the server span is its root


def test_failure_cause_is_the_span_status() -> None:
    t, out, _ = bound()
    ctx = ctx_with()
    t.begin(ctx)
    ctx.trace.attempt_start(ctx, "web", "h1:80", 1)
    ctx.trace.attempt_end("upstream_reset_before_response_started")
    ctx.error_detail = "upstream_reset_before_response_started"
    ctx.response = ResponseHead(503, Headers())
    ctx.trace.finish(ctx)
    server, client = out[0].spans
    assert server.error and server.message == "upstream_reset_before_response_started"
    assert client.error and client.message == "upstream_reset_before_response_started"


def test_local_reply_has_no_client_span() -> None:
    t, out, _ = bound()
    ctx = ctx_with()
    t.begin(ctx)
    ctx.error_detail = "route_not_found"
    ctx.response = ResponseHead(404, Headers())
    ctx.trace.finish(ctx)
    assert len(out[0].spans) == 1 and out[0].spans[0].message == "route_not_found"


def test_malformed_header_counts_and_starts_a_trace() -> None:
    t, out, store = bound()
    ctx = ctx_with(("traceparent", "00-not-a-trace"), ("sw8", "1-bad"))
    t.begin(ctx)
    assert ctx.trace.parent_id == 0 and ctx.trace.trace_id != 0
    assert store.counters["tracing.w3c.invalid"].value == 1
    assert store.counters["tracing.sw8.invalid"].value == 1
    assert store.counters["tracing.b3.invalid"].value == 0


@pytest.mark.parametrize("flag, sampled", [("00", False), ("01", True)])
def test_incoming_sampled_flag_is_honoured(flag: str, sampled: bool) -> None:
    t, out, _ = bound(random_sampling=100.0 if not sampled else 0.0)
    ctx = ctx_with(("traceparent", f"00-{TID}-{PID}-{flag}"))
    t.begin(ctx)
    assert ctx.trace.sampled is sampled
    ctx.trace.attempt_start(ctx, "web", "h:80", 1)
    assert ctx.request.headers.get("traceparent").endswith("-" + flag)    # type: ignore[union-attr]
    ctx.trace.finish(ctx)
    assert len(out) == (1 if sampled else 0)


def test_random_client_and_overall_sampling() -> None:
    random.seed(7)
    t, _, _ = bound(random_sampling=0.0, client_sampling=100.0)
    assert t.decide(None, client_trace=True) is True
    assert t.decide(None, client_trace=False) is False
    t, _, _ = bound(random_sampling=100.0, overall_sampling=0.0)
    assert t.decide(None, False) is False
    t, _, _ = bound(random_sampling=25.0)
    n = sum(t.decide(None, False) for _ in range(4000))
    assert 700 < n < 1300                       # 25% of 4000, with a generous margin


def test_sw8_parent_is_kept_for_skywalking() -> None:
    t, out, _ = bound()
    parent = sw8.Sw8(True, "sw.trace.1", "sw.seg.1", 3, "caller", "c-1", "/x", "mosnx:80")
    ctx = ctx_with(("sw8", sw8.format_sw8(parent)))
    t.begin(ctx)
    ctx.trace.attempt_start(ctx, "web", "h:80", 1)
    down = sw8.parse_sw8(ctx.request.headers.get("sw8") or "")
    assert down is not None and down.trace_id == "sw.trace.1"      # SkyWalking's own trace id goes on
    assert down.segment_id == ctx.trace.segment_id and down.span_id == 1
    assert (down.service, down.instance, down.address) == ("shop", "i-1", "h:80")
    ctx.trace.finish(ctx)
    assert out[0].sw_parent == parent and out[0].sw_trace == "sw.trace.1"


def test_unbound_tracer_propagates_but_exports_nothing() -> None:
    t = Tracer("ingress", ("w3c",))
    ctx = ctx_with()
    t.begin(ctx)
    ctx.trace.attempt_start(ctx, "web", "h:80", 1)
    assert ctx.request.headers.get("traceparent") is not None
    ctx.trace.finish(ctx)
    assert t.service == "ingress"               # the listener's name by default


def test_rules_force_the_decision_and_tag_the_server_span() -> None:
    t, out, store = bound(random_sampling=0.0)
    ctx = ctx_with()
    t.begin(ctx)
    tr = ctx.trace
    assert not tr.sampled and tr.tags is None
    tr.tag("tenant", "acme")
    tr.tag("url.path", "/replaced")          # a rule's attribute replaces the proxy's
    tr.force(True)
    tr.force(True)                           # counted once
    assert tr.sampled and store.counter("tracing.sampled").value == 1
    ctx.response = ResponseHead(200, Headers())
    tr.finish(ctx)
    (rec,) = out
    assert rec.spans[0].attributes["tenant"] == "acme" and rec.spans[0].attributes["url.path"] == "/replaced"
    ctx = ctx_with(("traceparent", f"00-{TID}-{PID}-01"))
    t.begin(ctx)
    ctx.trace.force(False)
    assert store.counter("tracing.sampled").value == 1
    ctx.trace.finish(ctx)
    assert len(out) == 1


# -- an unsampled request that starts its own trace (the cheap path) --

def unsampled(formats: tuple[str, ...] = ("w3c",), *pairs: tuple[str, str],
              path: str = "/a/b?q=1") -> tuple[Tracer, StreamContext]:
    t = Tracer("ingress", formats, random_sampling=0.0, service="shop", instance="i-1")
    t.bind(None, Store())
    ctx = ctx_with(*pairs, path=path)
    t.begin(ctx)
    return t, ctx


def test_an_unsampled_request_carries_a_well_formed_context_with_the_flag_off() -> None:
    t, ctx = unsampled()
    tr = ctx.trace
    assert isinstance(tr, UnsampledTrace) and not tr.sampled and tr.tags is None
    before = len(ctx.request.headers.items)
    tr.attempt_start(ctx, "web", "h:80", 1)
    (tp,) = ctx.request.headers.get_all("traceparent")
    assert w3c.parse_traceparent(tp) == (tr.trace_id, tr.span_id, 0)      # parent: the server span, as Envoy
    assert tp == f"00-{tr.trace_id_hex}-{tr.span_id:016x}-00"
    assert len(ctx.request.headers.items) == before + 1
    # what an HTTP/1.1 head appends as it is: the fields just written, encoded
    assert tr.wire == f"traceparent: {tp}\r\n".encode() and t.wire_n == 1
    tr.attempt_status(200)
    tr.attempt_end("")
    tr.finish(ctx)
    assert tr.current is None and not tr.replaced


@pytest.mark.parametrize("formats", [("w3c",), ("b3",), ("w3c", "b3"), ("b3", "w3c"), ("sw8",),
                                     ("w3c", "b3", "sw8"), ("b3", "sw8")])
def test_the_unsampled_fields_are_what_the_general_writer_writes(formats: tuple[str, ...]) -> None:
    t, ctx = unsampled(formats, path="/shop/ü?x=%41")
    tr = ctx.trace
    tr.attempt_start(ctx, "web", "h:80", 1)
    assert type(tr) is not StreamTrace and t.wire_n == len(propagation.Fresh.of(formats, t.sw_who).names) + ("sw8" in formats)
    tid, sid = f"{tr.trace_id:032x}", f"{tr.span_id:016x}"
    sw = f"0-{sw8.b64e(tid)}-{sw8.b64e(tid + '.' + sid)}-1-{t.sw_who}{sw8.b64e('/shop/ü')}-{sw8.b64e('h:80')}"
    general = Headers([])
    propagation.write(general, formats, tr.trace_id, tr.span_id, 0, False, (), sw, True)
    n = len(general.items)
    assert ctx.request.headers.items[-n:] == general.items and t.wire_n == n
    assert tr.wire == b"".join(k + b": " + v + b"\r\n" for k, v in general.items)
    if "sw8" in formats:
        down = sw8.parse_sw8(ctx.request.headers.get("sw8") or "")
        assert down is not None and not down.sampled and down.trace_id == tid and down.endpoint == "/shop/ü"


def test_sw8_not_written_last_takes_the_general_writer_unsampled() -> None:
    _, ctx = unsampled(("w3c", "sw8", "b3"))
    tr = ctx.trace
    tr.attempt_start(ctx, "web", "h:80", 1)
    assert type(tr) is StreamTrace and not tr.sampled and tr.wire is None
    down = sw8.parse_sw8(ctx.request.headers.get("sw8") or "")
    assert down is not None and not down.sampled and down.trace_id == tr.trace_id_hex
    assert ctx.request.headers.get("traceparent").endswith("-00")          # type: ignore[union-attr]


def test_an_unsampled_retry_replaces_the_context_it_wrote() -> None:
    _, ctx = unsampled(("w3c", "b3"))
    tr = ctx.trace
    tr.attempt_start(ctx, "web", "h:80", 1)
    tr.attempt_start(ctx, "web", "h:81", 2)
    assert type(tr) is StreamTrace and not tr.sampled and tr.replaced
    (tp,) = ctx.request.headers.get_all("traceparent")
    assert tp.startswith(f"00-{tr.trace_id_hex}-") and tp.endswith("-00")
    assert len(ctx.request.headers.get_all("b3")) == 1 and len(ctx.request.headers.get_all("x-b3-traceid")) == 1


def test_an_unsampled_request_keeps_an_incoming_trace_id() -> None:
    _, ctx = unsampled(("w3c",), ("traceparent", f"00-{TID}-{PID}-00"))
    tr = ctx.trace
    assert not tr.sampled and tr.trace_id_hex == TID and tr.parent_id == int(PID, 16)
    tr.attempt_start(ctx, "web", "h:80", 1)
    (tp,) = ctx.request.headers.get_all("traceparent")
    assert tp.startswith(f"00-{TID}-") and tp.endswith("-00") and tp.split("-")[2] != PID


def test_a_forced_sample_of_an_unsampled_request_records_its_spans() -> None:
    t = Tracer("ingress", ("w3c",), random_sampling=0.0)
    out: list[TraceRecord] = []
    store = Store()
    t.bind(out.append, store)
    ctx = ctx_with()
    ctx.start_wall = 1700000000.25
    t.begin(ctx)
    tr = ctx.trace
    trace_id, span_id = tr.trace_id, tr.span_id
    tr.tag("tenant", "acme")
    tr.force(True)
    assert type(tr) is StreamTrace and tr.sampled and store.counter("tracing.sampled").value == 1
    assert (tr.trace_id, tr.span_id) == (trace_id, span_id)
    assert tr is ctx.trace
    tr.attempt_start(ctx, "web", "h:80", 1)
    client = tr.current
    assert ctx.request.headers.get("traceparent") == f"00-{trace_id:032x}-{client[A_SPAN]:016x}-01"
    tr.attempt_status(200)
    ctx.response = ResponseHead(200, Headers())
    tr.finish(ctx)
    (rec,) = out
    server, client_span = rec.spans
    assert server.span_id == span_id and server.trace_id == trace_id and server.parent_id == 0
    assert server.start_ns == int(1700000000.25 * 1e9)       # as begin() takes it for a sampled one
    assert server.attributes["tenant"] == "acme" and client_span.parent_id == span_id


def test_a_request_with_x_client_trace_id_is_sampled_at_client_sampling() -> None:
    t = Tracer("ingress", ("w3c",), random_sampling=0.0, client_sampling=100.0)
    ctx = ctx_with(("x-client-trace-id", "abc"))
    t.begin(ctx)
    assert ctx.trace.sampled
    ctx = ctx_with()
    t.begin(ctx)
    assert not ctx.trace.sampled


@pytest.mark.parametrize("pct", [1.0, 30.0])
def test_a_fresh_trace_is_sampled_at_the_random_percentage(pct: float) -> None:
    random.seed(11)
    t = Tracer("ingress", ("w3c",), random_sampling=pct, overall_sampling=50.0)
    n = 20000
    sampled = 0
    for _ in range(n):
        ctx = ctx_with()
        t.begin(ctx)
        sampled += ctx.trace.sampled
    want = n * pct / 100 * 0.5
    assert 0.6 * want < sampled < 1.4 * want            # a generous margin around pct x overall


def test_the_sampling_threshold_is_exact_at_the_ends() -> None:
    t = Tracer("ingress", ("w3c",), random_sampling=100.0)
    assert t.random_below == 1 << 64
    assert all(t.decide(None, False) for _ in range(100))
    t = Tracer("ingress", ("w3c",), random_sampling=0.0, client_sampling=100.0, overall_sampling=0.0)
    assert t.random_below == 0 == t.client_below
    assert not any(t.decide(None, True) for _ in range(100))


# -- a fresh trace's sampling decision, and a sampled one's first context drawn ahead --

@pytest.mark.parametrize("formats", [("w3c",), ("w3c", "sw8")])
def test_the_countdown_samples_each_fresh_trace_independently(formats: tuple[str, ...]) -> None:
    # with W3C alone the sampled ones' places are marked in the pool of contexts drawn
    # ahead (many refills here); with sw8 nothing is drawn ahead and it counts down
    random.seed(5)
    t = Tracer("ingress", formats, random_sampling=10.0)
    t.bind(None, Store())
    assert (t.pool is not None) == (formats == ("w3c",))
    picks = []
    for i in range(30000):
        ctx = ctx_with()
        if i % 2 and t.pool is not None:
            # both ways take from one pool; an express stream keeps a sampled context
            # as it keeps any other, its class telling them apart
            w = t.begin_express(ctx)
            assert ctx.trace is None and w is not None
            picks.append(type(w) is SampledWire)
            continue
        t.begin_fresh(ctx)
        picks.append(ctx.trace.sampled)
    n = sum(picks)
    assert 2700 < n < 3300
    # gaps between sampled requests are geometric: as many gaps of 1 as a Bernoulli
    # process gives (p = 0.1 of the gaps), not a fixed stride
    at = [i for i, s in enumerate(picks) if s]
    gaps = [b - a for a, b in zip(at, at[1:])]
    assert 0.06 < gaps.count(1) / len(gaps) < 0.14 and max(gaps) > 40


@pytest.mark.parametrize("formats", [("w3c",), ("w3c", "b3")])
def test_a_sampled_fresh_trace_writes_its_context_with_the_client_span_as_parent(formats: tuple[str, ...]) -> None:
    t = Tracer("ingress", formats, random_sampling=100.0, service="shop", instance="i-1")
    out: list[Record] = []
    t.bind(out.append, Store())
    ctx = ctx_with()
    t.begin_fresh(ctx)
    tr = ctx.trace
    # drawn ahead for W3C alone: B3 names the server span as the parent, written per attempt
    assert type(tr) is (SampledPooled if formats == ("w3c",) else StreamTrace) and tr.sampled
    assert (tr.drawn is not None) == (formats == ("w3c",))
    tr.attempt_start(ctx, "web", "h:80", 1)
    client = tr.clients[0][A_SPAN]
    tp = ctx.request.headers.get("traceparent")
    assert tp == f"00-{tr.trace_id_hex}-{client:016x}-01" and client != tr.span_id
    if "b3" in formats:
        h = ctx.request.headers
        assert h.get("x-b3-sampled") == "1" and h.get("x-b3-spanid") == f"{client:016x}"
        assert h.get("x-b3-parentspanid") == f"{tr.span_id:016x}"
        assert h.get("b3") == f"{tr.trace_id_hex}-{client:016x}-1-{tr.span_id:016x}"
    else:
        assert tr.wire == b"".join(k + b": " + v + b"\r\n" for k, v in ctx.request.headers.items[-1:])
    # a retry writes a new client span in place of the first
    tr.attempt_start(ctx, "web", "h:81", 2)
    (tp2,) = ctx.request.headers.get_all("traceparent")
    assert tp2 == f"00-{tr.trace_id_hex}-{tr.clients[1][A_SPAN]:016x}-01" and tr.wire is None
    assert type(tr) is StreamTrace
    tr.finish(ctx)
    (rec,) = out
    assert [s.parent_id for s in rec.spans] == [0, tr.span_id, tr.span_id]
    assert [s.span_id for s in rec.spans[1:]] == [client, tr.clients[1][A_SPAN]]


def _lean_and_full(moments) -> tuple[Record, Record]:
    """The record of one stream's `moments` (a function of the trace and the context)
    from a SampledPooled trace, and from the StreamTrace it stands for."""
    t = Tracer("ingress", ("w3c",), random_sampling=100.0, service="shop", instance="i-1")
    out: list[Record] = []
    t.bind(out.append, Store())
    ctx = ctx_with()
    ctx.request_id = "r-1"
    t.begin_fresh(ctx)
    lean = ctx.trace
    assert type(lean) is SampledPooled
    full_ctx = ctx_with()
    full_ctx.request_id = "r-1"
    full_ctx.trace = full = StreamTrace(t, lean.trace_id, lean.span_id, 0, True, (), None, lean.start_ns)
    full.drawn, full.clean = lean.drawn, True
    for c, tr in ((ctx, lean), (full_ctx, full)):
        moments(tr, c)
        tr.finish(c)
    return out[0], out[1]


@pytest.mark.parametrize("name", ["one", "local_reply", "retry", "tag", "forced_out", "refused_twice", "rpc"])
def test_a_lean_sampled_trace_records_what_the_full_one_does(name: str) -> None:
    def moments(tr, ctx) -> None:
        if name == "tag":
            tr.tag("tenant", "acme")
        if name == "forced_out":
            tr.force(False)
        if name == "local_reply":
            ctx.response = ResponseHead(404, Headers())
            ctx.error_detail = "route_not_found"
            return
        ctx.cluster_name = "web"
        for i in range(1, 3 if name in ("retry", "refused_twice") else 2):
            ctx.upstream_address = f"h:{80 + i}"
            ctx.attempt_count = 1 if name == "refused_twice" else i
            tr.attempt_start(ctx, "web", ctx.upstream_address, ctx.attempt_count)
            if name == "rpc":
                tr.attempt_attributes({"rpc.system": "dubbo"})
            tr.attempt_status(503 if i == 1 and name == "retry" else 200)
            tr.attempt_end("")
        ctx.response = ResponseHead(200, Headers())
    if name == "forced_out":
        t = Tracer("ingress", ("w3c",), random_sampling=100.0)
        out: list[Record] = []
        t.bind(out.append, Store())
        ctx = ctx_with()
        t.begin_fresh(ctx)
        moments(ctx.trace, ctx)
        ctx.trace.finish(ctx)
        assert not out and ctx.request.headers.get("traceparent").endswith("-00")
        return
    lean, full = _lean_and_full(moments)
    assert lean.size == full.size and lean.facts[:4] == full.facts[:4]
    for a, b in zip(lean.spans, full.spans):
        assert (a.name, a.kind, a.trace_id, a.parent_id, a.attributes, a.error, a.message) == \
            (b.name, b.kind, b.trace_id, b.parent_id, b.attributes, b.error, b.message)
    clients = [s.span_id for s in lean.spans[1:]]
    assert len(set(clients)) == len(clients)
    if name == "tag":
        assert lean.spans[0].attributes["tenant"] == "acme"


def test_a_lean_sampled_trace_answers_for_its_ids_before_and_after_it_becomes_full() -> None:
    t = Tracer("ingress", ("w3c",), random_sampling=100.0)
    t.bind(None, Store())
    ctx = ctx_with()
    t.begin_fresh(ctx)
    tr = ctx.trace
    ids = (tr.trace_id_hex, tr.span_id, tr.start_ns)
    tr.attempt_start(ctx, "web", "h:80", 1)
    assert ctx.request.headers.get("traceparent") == f"00-{ids[0]}-{tr.current[A_SPAN]:016x}-01"
    tr.tag("k", "v")
    assert type(tr) is StreamTrace and (tr.trace_id_hex, tr.span_id, tr.start_ns) == ids
    assert tr.drawn is None and not tr.clean and tr.tags == {"k": "v"}


def test_a_sampled_fresh_trace_forced_out_writes_the_flag_off() -> None:
    t = Tracer("ingress", ("w3c",), random_sampling=100.0)
    t.bind(None, Store())
    ctx = ctx_with()
    t.begin_fresh(ctx)
    tr = ctx.trace
    tr.force(False)
    tr.attempt_start(ctx, "web", "h:80", 1)
    assert ctx.request.headers.get("traceparent").endswith("-00") and not tr.clients


def test_begin_takes_the_fresh_path_only_without_a_header_it_reads() -> None:
    t = Tracer("ingress", ("w3c",), random_sampling=0.0, client_sampling=100.0)
    t.bind(None, Store())
    ctx = ctx_with(("x-client-trace-id", "abc"))
    t.begin(ctx)
    assert ctx.trace.sampled                    # client_sampling, not the countdown
    ctx = ctx_with()
    t.begin(ctx)
    assert not ctx.trace.sampled and isinstance(ctx.trace, UnsampledTrace)


# -- an express stream's unsampled trace: its context alone until more is asked --

@pytest.mark.parametrize("formats", [("w3c",), ("w3c", "b3")])
def test_begin_express_gives_the_context_and_makes_no_trace(formats: tuple[str, ...]) -> None:
    t = Tracer("ingress", formats, random_sampling=0.0)
    t.bind(None, Store())
    ctx = ctx_with()
    before = list(ctx.request.headers.items)
    wire = t.begin_express(ctx)
    assert ctx.trace is None and wire is not None
    assert ctx.request.headers.items == before               # the upstream connection writes it
    fields = propagation.fields_of(wire)
    assert len(fields) == t.wire_n and wire == b"".join(k + b": " + v + b"\r\n" for k, v in fields)
    assert w3c.parse_traceparent(dict(fields)[b"traceparent"].decode())[2] == 0     # flag off
    # the access log asks for its ids: the trace object of what went upstream, whose
    # fields the request now holds as it was written
    t.adopt(ctx, wire, True)
    tr = ctx.trace
    assert isinstance(tr, UnsampledTrace) and not tr.sampled and tr.wire == wire
    assert ctx.request.headers.items[len(before):] == fields
    assert ctx.request.headers.get("traceparent") == f"00-{tr.trace_id_hex}-{tr.span_id:016x}-00"


def test_an_express_trace_taken_off_the_express_path_is_written_after_the_steps() -> None:
    t = Tracer("ingress", ("w3c", "b3"), random_sampling=0.0)
    t.bind(None, Store())
    ctx = ctx_with()
    before = list(ctx.request.headers.items)
    wire = t.begin_express(ctx)
    assert wire is not None
    t.adopt(ctx, wire, False)
    assert ctx.request.headers.items == before
    ctx.request.headers.add("x-step", "1")                           # what a route step adds
    tr = ctx.trace
    tr.attempt_start(ctx, "web", "h:80", 1)
    names = [k for k, _ in ctx.request.headers.items]
    assert names[len(before)] == b"x-step" and names.count(b"traceparent") == 1
    assert tr.wire == wire and ctx.request.headers.get("x-b3-traceid") == tr.trace_id_hex


def test_begin_express_samples_at_the_same_rate() -> None:
    t = Tracer("ingress", ("w3c",), random_sampling=100.0)
    t.bind(None, Store())
    ctx = ctx_with()
    # every fresh trace sampled: only sampled contexts are drawn
    w = t.begin_express(ctx)
    assert type(w) is SampledWire and ctx.trace is None
    assert t.pool and all(type(p) is SampledWire for p in t.pool)


# -- a sampled context an express stream kept (SampledWire), recorded at its end --

def _express_ends(case: str) -> list[StreamContext]:
    """Three contexts of one stream's end, in `case`: answered, failed by the proxy
    after its attempt, or failed before any attempt."""
    out = []
    for _ in range(3):
        ctx = ctx_with()
        ctx.request_id = "r-1"
        if case != "no_attempt":
            ctx.cluster_name, ctx.upstream_address, ctx.attempt_count = "web", "127.0.0.1:9001", 1
        if case == "answered":
            ctx.response = ResponseHead(200, Headers())
        else:
            ctx.response = ResponseHead(503, Headers())
            ctx.error_detail = "upstream_connect_failure" if case == "failed" else "cluster_not_found"
        out.append(ctx)
    return out


def _shape(rec: Record) -> list[tuple]:
    """What a record's spans say, their ids as relations."""
    spans = rec.spans
    server = spans[0]
    return [(s.name, s.kind, s.trace_id, s.span_id if s.kind == CLIENT else None,
             "root" if s.parent_id == 0 else ("server" if s.parent_id == server.span_id else s.parent_id),
             s.start_ns if s.kind == SERVER else None, sorted(s.attributes.items()), s.error, s.message, s.peer)
            for s in spans]


@pytest.mark.parametrize("case", ["answered", "failed", "no_attempt"])
def test_an_express_sampled_context_records_what_its_trace_object_does(case: str) -> None:
    # finish_express (no access log), the trace object made at the end (an access log
    # asked for its ids), and the one made at the start as a stream off the express
    # path has it: the same spans
    t = Tracer("ingress", ("w3c",), random_sampling=100.0, service="shop", instance="i-1")
    out: list[Record] = []
    t.bind(out.append, Store())
    fast, late, early = _express_ends(case)
    w = t.begin_express(fast)
    assert type(w) is SampledWire and fast.trace is None
    for c in (late, early):
        c.start_wall = fast.start_wall
    t.finish_express(fast, w)
    t.adopt(late, w, True)
    assert type(late.trace) is SampledPooled
    late.trace.finish(late)
    t.adopt(early, w, False)
    tr = early.trace
    if case != "no_attempt":
        tr.attempt_start(early, "web", "127.0.0.1:9001", 1)
        tr.clients[0][1] = tr.start_ns        # the kept context's attempt begins with the stream
        if case == "answered":
            tr.attempt_status(200)
    tr.finish(early)
    a, b, c = map(_shape, out)
    assert a == b == c
    assert len(a) == (1 if case == "no_attempt" else 2)
    tp = w[len(b"traceparent: "):-2].decode().split("-")
    assert f"{out[0].spans[0].trace_id:032x}" == tp[1]
    if case != "no_attempt":
        assert f"{out[0].spans[1].span_id:016x}" == tp[2] and tp[3] == "01"
    assert t.sampled_total.value == 3
