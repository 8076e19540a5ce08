"""The Tracer's sampling (Envoy's HCM rules) and the spans one stream records:
a server span, a client span per attempt, their parents and attributes."""
from __future__ import annotations

import random

import pytest

from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.stats import Store
from mosnx.runtime.tracing.span import A_SPAN, CLIENT, SERVER, Record
from mosnx.runtime.tracing.tracer import Tracer
from mosnx.runtime.tracing import sw8

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
