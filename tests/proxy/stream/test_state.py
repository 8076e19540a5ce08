"""The stream lifecycle as data: every transition streams make, driven through the
fakes of the executor's Protocols across the usual and unusual paths, is in the
table; and every transition in the table is made by one of these paths."""
from __future__ import annotations

import pytest

from mosnx.proxy.stream import HttpStream
from mosnx.proxy.stream import state
from mosnx.proxy.stream.fields import StreamFields
from mosnx.proxy.stream.state import Attempt, Req, Resp
from mosnx.runtime import HttpFilter, register_filter
from mosnx.runtime.headers import Headers

from .fakes import Rig, cluster_yaml


class Upper(HttpFilter):
    """A response body step (it makes the executor note the body's end)."""
    name = "upper"

    def on_response_body(self, ctx, data, end_stream):
        return data.upper()


register_filter("test_state_upper", lambda name, cfg, ctx: Upper())

_SLOTS = {name: StreamFields.__dict__[name] for name in ("req", "resp", "att")}


class Traced(HttpStream):
    """An HttpStream that records each state change (the class adds no field: its
    properties store through HttpStream's own slots)."""
    __slots__ = ()
    seen: set = set()

    def _traced(name):  # noqa: N805 (a helper run while the class body is built)
        slot = _SLOTS[name]

        def get(self):
            return slot.__get__(self, HttpStream)

        def put(self, new):
            try:
                old = slot.__get__(self, HttpStream)
            except AttributeError:      # the first assignment, in __init__
                old = None
            if old is not None:
                Traced.seen.add((old, new))
            slot.__set__(self, new)
        return property(get, put)

    req = _traced("req")
    resp = _traced("resp")
    att = _traced("att")
    del _traced


def traced(rig: Rig, **kw):
    s, down = rig.stream(**kw)
    t = Traced.__new__(Traced)
    # the same construction, on the traced class
    HttpStream.__init__(t, down, rig.worker, rig.listener, rig.lstats, s.ctx, s.request_body,
                        s.client_keep_alive, s.upgrade, s.expect_continue, s.express)
    return t, down


def run_paths(tmp_path) -> set:
    Traced.seen = set()
    # a plain GET answered with a body, and one answered without
    rig = Rig(tmp_path, cluster_yaml())
    s, _ = traced(rig)
    s.start()
    rig.pool().conns[-1].answer(200, [("content-length", "2")], b"ok")
    s, _ = traced(rig, method="HEAD")
    s.start()
    rig.pool().conns[-1].answer(204)
    # a request with a body, the upstream answering before it ends
    s, _ = traced(rig, method="POST", body=4)
    s.start()
    s.on_request_body(b"ab")
    rig.pool().conns[-1].answer(200, [("content-length", "1")], b"x")
    s.on_request_body(b"cd")
    s.on_request_end(None)
    # a local reply (a step answers), and a client that goes away before and after the head
    aborting = Rig(tmp_path, cluster_yaml(route='{cluster: up, fault: {abort: {http_status: 503, percentage: 100}}}'))
    s, _ = traced(aborting)
    s.start()
    s, _ = traced(rig)
    rig.pool().held = True
    s.start()
    s.reset()
    rig.pool().held = False
    s, _ = traced(rig)
    s.start()
    up = rig.pool().conns[-1]
    up.stream.on_upstream_head(200, Headers([(b"content-length", b"9")]), True, 9)
    s.reset()
    # a response in pieces, cut by an upstream reset in the middle, and one that ends
    # after its body reached its length
    s, _ = traced(rig)
    s.start()
    up = rig.pool().conns[-1]
    up.stream.on_upstream_head(200, Headers([]), True, None)
    up.stream.on_upstream_data(b"abc")
    s.on_upstream_reset("upstream_reset_after_response_started", 503)
    # an upgrade, then both sides close; and a client gone mid-tunnel
    for gone in ("closed", "reset"):
        s, _ = traced(rig, headers=[("connection", "upgrade"), ("upgrade", "websocket")], upgrade=True)
        s.start()
        up = rig.pool().conns[-1]
        up.stream.on_upstream_head(101, Headers([(b"upgrade", b"websocket")]), True, None)
        s.on_tunnel_closed() if gone == "closed" else s.reset()
    # a pool that never connects
    s, _ = traced(rig)
    rig.pool().held = True
    s.start()
    rig.pool().fail()
    rig.pool().held = False
    # a body that ends in the read that completes its length (BODY_ENDED, then DONE),
    # with a response body step present so the end is noted
    rig_body = Rig(tmp_path, cluster_yaml(filters='{test_state_upper: {}}'))
    s, _ = traced(rig_body)
    s.start()
    up = rig_body.pool().conns[-1]
    up.stream.on_upstream_head(200, Headers([(b"content-length", b"2")]), True, 2)
    up.stream.on_upstream_data(b"ok")
    up.stream = None
    s.on_upstream_end(None)
    # a stream reset after its response was done: nothing more changes
    s, _ = traced(rig)
    s.start()
    rig.pool().conns[-1].answer(200)
    s.reset()
    return Traced.seen


def test_every_transition_made_is_in_the_table_and_every_one_in_the_table_is_made(tmp_path):
    seen = {t for t in run_paths(tmp_path) if t[0] is not t[1]}
    table = set().union(*state.TRANSITIONS.values())
    assert seen <= table, sorted(seen - table)
    # every transition of the table is exercised, but for a response that reaches
    # its body's end and is then cut short by a step (tests/proxy/stream/test_response.py)
    assert table - seen <= {(Resp.BODY_ENDED, Resp.ENDED)}, sorted(table - seen)


@pytest.mark.parametrize("enum", [Req, Resp, Attempt])
def test_states_are_ordered_as_the_executor_compares_them(enum):
    # `resp >= HEAD_SENT` means "the response has started" only if the order holds
    members = list(enum)
    assert [m.value for m in members] == sorted(m.value for m in members)
    assert state.allowed(members[0], members[0])


def test_the_response_order_reads_as_started_and_finished():
    started = [s for s in Resp if s >= Resp.HEAD_SENT]
    finished = [s for s in Resp if s >= Resp.DONE]
    assert Resp.WAITING not in started and Resp.TUNNEL in started
    assert finished == [Resp.DONE, Resp.ENDED]
    assert not state.allowed(Resp.DONE, Resp.HEAD_SENT)
    assert not state.allowed(Req.COMPLETE, Req.RECEIVING)
