"""proxy/rpc/server.py without sockets: the per-method stats table (names made safe,
bounded), a call's StreamContext (rpc.* facts, attachments as request headers, what
was read when Dubbo's attachments cannot be), and a local reply's reason as the
access log's response flags."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from mosnx.proxy.rpc import bolt, codec as rc, dubbo, server
from mosnx.runtime.attributes import getter_for
from mosnx.runtime.log_operators import flags_of
from mosnx.runtime.stats import Store


def _bolt(rid: int, service: str, method: str, **extra: str) -> rc.Frame:
    f = bolt.CODEC.decode(bolt.encode_request(rid, {"service": service, "sofa_head_method_name": method, **extra},
                                              b""), 0, 1 << 20)
    assert f is not None
    return f


def test_method_table_counts_each_method_under_a_safe_name():
    store = Store()
    t = server.MethodTable(store, "bolt", "in")
    a = t.of(_bolt(1, "com.x.Greeter:1.0", "hello"))
    assert a is t.of(_bolt(2, "com.x.Greeter:1.0", "hello"))
    b = t.of(_bolt(3, "com.x.Greeter:1.0", "say hi/now"))
    assert a is not None and b is not None and a is not b
    a.request.value += 1
    assert store.counters["bolt.in.method.com.x.Greeter.hello.request"].value == 1
    assert "bolt.in.method.com.x.Greeter.say_hi_now.request" in store.counters
    assert "bolt.in.method.com.x.Greeter.hello.request_time_ms" in store.histograms


def test_method_table_is_bounded(monkeypatch):
    monkeypatch.setattr(server, "MAX_METHODS", 3)
    store = Store()
    t = server.MethodTable(store, "bolt", "in")
    got = [t.of(_bolt(i, "s:1.0", f"m{i}")) for i in range(5)]
    assert all(g is not None for g in got[:3]) and got[3] is None and got[4] is None
    assert t.of(_bolt(9, "s:1.0", "m0")) is got[0]          # a method already counted still is
    assert store.counters["bolt.in.method_stats_overflow"].value == 2


def _down(codec: rc.Codec) -> SimpleNamespace:
    return SimpleNamespace(name="rpc_in", codec=codec, peer=("127.0.0.1", 5000), local=("127.0.0.1", 12200))


def test_call_context_carries_the_call():
    f = _bolt(17, "com.x.Greeter:1.0:blue", "hello", zone="gz")
    ctx = server.call_context(_down(bolt.CODEC), f)  # type: ignore[arg-type]
    assert ctx.request.method == "hello" and ctx.request.path == "/com.x.Greeter/hello"
    assert ctx.request.headers.get("zone") == "gz" and ctx.request.headers.get(":service") is None
    assert ctx.request_id == "17" and ctx.bytes_received == len(f.raw)
    values = {a: getter_for(a)(ctx) for a in ("rpc.protocol", "rpc.service", "rpc.method", "rpc.version",
                                               "rpc.group", "rpc.request_id", "rpc.status")}
    assert values == {"rpc.protocol": "bolt", "rpc.service": "com.x.Greeter", "rpc.method": "hello",
                      "rpc.version": "1.0", "rpc.group": "blue", "rpc.request_id": 17, "rpc.status": -1}


def test_call_context_of_a_dubbo_call_with_unreadable_attachments():
    body = dubbo.request_body("com.x.S", "find", "1.0", b"\x91", "I", attachments=b"\x91")
    f = dubbo.CODEC.decode(dubbo.encode_request(3, body), 0, 1 << 20)
    ctx = server.call_context(_down(dubbo.CODEC), f)  # type: ignore[arg-type]
    assert getter_for("rpc.service")(ctx) == "com.x.S" and getter_for("rpc.method")(ctx) == "find"
    assert getter_for("rpc.version")(ctx) == "1.0" and getter_for("rpc.group")(ctx) == ""


def test_rpc_attributes_on_an_http_stream_are_empty():
    from mosnx.runtime.context import RequestHead, StreamContext
    from mosnx.runtime.headers import Headers
    ctx = StreamContext(RequestHead("GET", "/", Headers([])))
    assert getter_for("rpc.service")(ctx) == "" and getter_for("rpc.request_id")(ctx) == 0


@pytest.mark.parametrize("reason, flag", [(rc.NO_ROUTE, "NR"), (rc.TIMEOUT, "UT"), (rc.OVERFLOW, "UO"),
                                          (rc.UNAVAILABLE, "UH"), (rc.RESET, "UC"), (rc.RATE_LIMITED, "RL"),
                                          (rc.CODEC_ERROR, "DPE"), ("connect_failure", "UF"), ("gone", "DC")])
def test_each_reason_is_a_response_flag(reason, flag):
    ctx = SimpleNamespace(error_detail=server.DETAIL[reason], attempt_count=1)
    assert flags_of(ctx) == flag  # type: ignore[arg-type]
