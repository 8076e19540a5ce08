"""grpc_stats: messages counted from their length prefixes across chunks; calls
counted under the cluster, by method when asked; the counts left for istio_stats."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from mosnx.runtime.context import ResponseHead
from mosnx.runtime.filters.grpc_stats import FILTER_STATE, Frames
from mosnx.runtime.headers import Headers

from .conftest import build, req


def frame(payload: bytes) -> bytes:
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=8), st.lists(st.integers(1, 30), min_size=1, max_size=10))
def test_messages_are_counted_however_the_body_is_cut(messages, cuts):
    body = b"".join(frame(m) for m in messages)
    f = Frames()
    i = 0
    k = 0
    while i < len(body):
        step = cuts[k % len(cuts)]
        f.feed(body[i:i + step])
        i += step
        k += 1
    assert f.count == len(messages)


def grpc_call(f, path: str, request_msgs: int, response_msgs: int, status: str = "0"):
    ctx = req({"content-type": "application/grpc"})
    ctx.set_path(path)
    ctx.cluster_name = "outbound|9080||reviews.default.svc.cluster.local"
    f.on_request(ctx)
    for _ in range(request_msgs):
        f.on_request_body(ctx, frame(b"hello"), False)
    ctx.response = ResponseHead(200, Headers())
    ctx.response.trailers = Headers.from_pairs([("grpc-status", status)])
    body = b"".join(frame(b"x" * 3) for _ in range(response_msgs))
    f.on_response_body(ctx, body[:4], False)
    f.on_response_body(ctx, body[4:], True)
    f.on_log(ctx)
    return ctx


def test_calls_and_messages_under_the_cluster_and_the_filter_state():
    f, stats = build("grpc_stats", {"emit_filter_state": True})
    ctx = grpc_call(f, "/reviews.Reviews/Get", 2, 3)
    grpc_call(f, "/reviews.Reviews/Get", 1, 1, status="14")
    p = "cluster.outbound|9080||reviews.default.svc.cluster.local.grpc."
    got = {k[len(p):]: c.value for k, c in stats.counters.items() if k.startswith(p)}
    assert got == {"total": 2, "success": 1, "failure": 1, "request_message_count": 3,
                   "response_message_count": 4}
    assert ctx.filter_state[FILTER_STATE] == (2, 3)


def test_methods_are_named_when_asked():
    f, stats = build("grpc_stats", {"individual_method_stats_allowlist": {
        "services": [{"name": "reviews.Reviews", "method_names": ["Get"]}]}})
    grpc_call(f, "/reviews.Reviews/Get", 1, 1)
    grpc_call(f, "/reviews.Reviews/List", 1, 1)
    names = {k for k in stats.counters if k.endswith(".total")}
    assert names == {"cluster.outbound|9080||reviews.default.svc.cluster.local.grpc.reviews.Reviews.Get.total",
                     "cluster.outbound|9080||reviews.default.svc.cluster.local.grpc.total"}


def test_a_plain_http_stream_is_not_counted():
    f, stats = build("grpc_stats", {"stats_for_all_methods": True})
    ctx = req({"content-type": "application/json"})
    f.on_request(ctx)
    f.on_request_body(ctx, b"\x00\x00\x00\x00\x01x", True)
    f.on_log(ctx)
    assert not [k for k in stats.counters if ".grpc." in k]


def test_istio_stats_counts_the_messages_of_a_grpc_stream():
    g, stats = build("grpc_stats", {"emit_filter_state": True})
    from mosnx.runtime.filters.istio_stats import IstioStatsFilter
    i = IstioStatsFilter({"WORKLOAD_NAME": "productpage-v1"}, "source", stats=stats)
    ctx = grpc_call(g, "/a.B/C", 4, 2)
    i.on_log(ctx)
    got = {k.rsplit(";.;", 1)[1]: c.value for k, c in stats.counters.items() if "messages_total" in k}
    assert got == {"istio_request_messages_total": 4, "istio_response_messages_total": 2}


@pytest.mark.parametrize("cfg", [{"stats_for_all_methods": "yes"}, {"individual_method_stats_allowlist": []},
                                 {"individual_method_stats_allowlist": {"services": [{"method_names": ["x"]}]}},
                                 {"replace_dots_in_grpc_service_name": True}])
def test_bad_settings_are_value_errors(cfg):
    with pytest.raises(ValueError):
        build("grpc_stats", cfg)
