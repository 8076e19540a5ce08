"""The decision: a request id for every request (the client's own kept), the gRPC
deadline, routes and their actions, and the 404 and 503 a missing route or
cluster gets; all through a real route table built from .mdsl."""
from __future__ import annotations

import pytest

from mosnx.proxy.stream.decide import pick_weighted
from mosnx.runtime.tracing.trace import SampledWire

from .fakes import Rig, traced_yaml

RULES = '''
vhost all domains "*" {
  route api when request.path segment_prefix "/api" { to up }
  route old when request.path == "/old" { redirect 301 path "/new" }
  route gone when request.path == "/gone" { respond 410 "gone\\n" }
}
'''


@pytest.fixture
def rig(tmp_path):
    (tmp_path / "r.mdsl").write_text(RULES)
    return Rig(tmp_path, f"""
    listeners:
      - name: l
        address: 127.0.0.1:18080
        rules: {tmp_path / "r.mdsl"}
    clusters:
      - {{name: up, endpoints: ["127.0.0.1:10001"]}}
    """)


def test_a_request_gets_an_id_unless_it_brought_one(rig):
    s, _ = rig.stream(path="/api/x")
    s.start()
    rid = s.ctx.request_id
    assert len(rid) == 36 and (b"x-request-id", rid.encode()) in s.ctx.request.headers.items
    s, _ = rig.stream(path="/api/x", headers=[("x-request-id", "mine")])
    s.start()
    assert s.ctx.request_id == "mine"
    assert [k for k, _ in s.ctx.request.headers.items].count(b"x-request-id") == 1


def test_a_grpc_deadline_bounds_the_call(rig):
    s, _ = rig.stream(method="POST", path="/api/x", body=None,
                      headers=[("content-type", "application/grpc"), ("grpc-timeout", "250m")])
    s.start()
    assert s.ctx.timeout_override == 0.25 and not s.express


def test_routes_forward_redirect_and_answer(rig):
    s, down = rig.stream(path="/api/v1")
    s.start()
    assert s.ctx.cluster_name == "up" and rig.made[-1].sent[0][2] == "/api/v1"
    s, down = rig.stream(path="/old")
    s.start()
    assert down.status() == 301 and down.head()[b"location"] == b"http://example.com/new"
    s, down = rig.stream(path="/gone")
    s.start()
    assert down.status() == 410 and down.body() == b"gone\n"


def test_no_route_is_404(rig):
    s, down = rig.stream(path="/nothing")
    s.start()
    assert down.status() == 404 and down.head()[b"x-mosnx-error"] == b"route_not_found"


def test_a_weighted_pick_follows_the_weights():
    import random
    random.seed(7)
    picks = [pick_weighted((("a", 1), ("b", 3))) for _ in range(4000)]
    assert 0.2 < picks.count("a") / 4000 < 0.3
    assert pick_weighted((("only", 0), ("last", 0))) == "last"


def test_a_traced_express_request_takes_a_context_drawn_ahead(tmp_path):
    # the usual case inline (Tracer.begin_express): a context from the tracer's pool and
    # no trace object; a place random sampling marked holds a sampled context (its flag
    # on, its class SampledWire), kept the same way, at the listener's rate over many
    # refills of the pool
    rig = Rig(tmp_path, traced_yaml("10%"))
    wires = set()
    sampled = 0
    for _ in range(3000):
        s, _ = rig.stream(path="/x", express=True)
        s.start()
        assert s.ctx.trace is None
        name, _, value = s.trace_wire.partition(b": ")
        flag = b"-01\r\n" if type(s.trace_wire) is SampledWire else b"-00\r\n"
        assert name == b"traceparent" and value.startswith(b"00-") and value.endswith(flag)
        wires.add(s.trace_wire)
        sampled += flag == b"-01\r\n"
    assert len(wires) == 3000 and 200 < sampled < 400
    # a request that carries a context continues it; a gRPC call leaves the express path
    s, _ = rig.stream(path="/x", express=True,
                      headers=[("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")])
    s.start()
    assert s.ctx.trace.trace_id == 0x0af7651916cd43dd8448eb211c80319c and s.trace_wire is None
    s, _ = rig.stream(method="POST", path="/x", body=None, express=True,
                      headers=[("content-type", "application/grpc")])
    s.start()
    assert s.ctx.trace is not None and s.trace_wire is None
