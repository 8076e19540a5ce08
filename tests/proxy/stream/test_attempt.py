"""One upstream attempt: counted on its host and the circuit breaker exactly once
however it ends, refused when the breaker is full (also as it takes a connection
that was waited for), and made once more when a pooled connection raced its close
or an HTTP/2 endpoint refused the stream; an express stream's sampled trace, kept
as its context alone, records its attempt, and each attempt made again."""
from __future__ import annotations

from mosnx.proxy.stream.state import A_ACTIVE, A_IDLE, A_WAITING

from .fakes import Rig, cluster_yaml, traced_yaml


def counts(rig):
    cluster = rig.worker.clusters.get("up")
    return cluster.hosts[0].rq_active, cluster.res.rq_active


def test_an_attempt_is_counted_while_it_holds_a_connection(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    rig.pool().held = True
    s, down = rig.stream()
    s.start()
    assert s.att is A_WAITING and counts(rig) == (0, 0)
    up = rig.pool().ready()
    assert s.att is A_ACTIVE and counts(rig) == (1, 1)
    up.answer(200)
    assert s.att is A_IDLE and counts(rig) == (0, 0)
    assert rig.pool().released == [(up, True)]


def test_a_full_breaker_refuses_with_503_overflow(tmp_path):
    rig = Rig(tmp_path, cluster_yaml().replace(
        '{name: up, endpoints: ["127.0.0.1:10001"]}',
        '{name: up, endpoints: ["127.0.0.1:10001"], circuit_breakers: {max_requests: 1}}'))
    rig.pool().held = True
    a, _ = rig.stream()
    b, down_b = rig.stream()
    a.start()
    b.start()
    rig.pool().ready()                  # a takes its connection: the breaker is full
    up_b = rig.pool().ready()           # b's connection came too late
    assert down_b.status() == 503 and down_b.head()[b"x-mosnx-error"] == b"upstream_rq_overflow"
    # unused: back to the pool, once (not also closed as if the stream had used it)
    assert [r for r in rig.pool().released if r[0] is up_b] == [(up_b, True)]
    assert rig.counter("cluster.up.upstream_rq_pending_overflow") == 1


def test_a_reused_connection_that_raced_its_close_is_tried_once_more(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    rig.pool().reused = True
    s, down = rig.stream()
    s.start()
    first = rig.made[-1]
    first.stream = None
    s.on_upstream_reset("upstream_reset_before_response_started", 503)
    rig.pool().reused = False           # the pool has no idle connection left: a new one
    rig.worker.loop.advance(0)
    assert len(rig.made) == 2
    rig.made[-1].stream = None
    s.on_upstream_reset("upstream_reset_before_response_started", 503)   # a new connection: no more
    assert down.status() == 503
    assert counts(rig) == (0, 0)


def test_a_refused_stream_is_made_once_more_and_is_no_attempt(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    s, down = rig.stream(method="POST")         # not idempotent: refused streams go anyway
    s.start()
    rig.made[-1].stream = None
    s.on_upstream_reset("upstream_refused_stream", 503)
    rig.worker.loop.advance(0)
    rig.made[-1].answer(200)
    assert down.status() == 200 and s.attempts == 1
    assert rig.worker.clusters.get("up").hosts[0].od_total >= 0


def test_no_healthy_host_answers_503(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    host = rig.worker.clusters.get("up").hosts[0]
    host.healthy = False
    s, down = rig.stream()
    s.start()
    assert down.status() == 503
    assert down.head()[b"x-mosnx-error"] in (b"no_healthy_upstream", b"upstream_overflow")


def traced_rig(tmp_path):
    rig = Rig(tmp_path, traced_yaml("100%"))
    records: list = []
    rig.listener.tracer.bind(records.append, rig.worker.stats)
    return rig, records


def test_an_express_stream_records_the_sampled_context_it_kept(tmp_path):
    # no trace object on the way: the context went upstream as drawn, and the stream's
    # end records a server span and the attempt's client span under it
    rig, records = traced_rig(tmp_path)
    s, down = rig.stream(express=True)
    s.start()
    assert s.ctx.trace is None
    up = rig.made[-1]
    _, tid, parent, flags = up.traceparent.decode().split("-")
    up.answer(200)
    assert down.status() == 200
    (rec,) = records
    server, client = rec.spans
    assert (f"{server.trace_id:032x}", f"{client.span_id:016x}", flags) == (tid, parent, "01")
    assert server.parent_id == 0 and client.parent_id == server.span_id
    assert client.attributes["http.response.status_code"] == 200 and client.peer == "127.0.0.1:10001"


def test_a_refused_stream_of_an_express_sampled_trace_is_a_second_client_span(tmp_path):
    # refused and made again: the kept context becomes the trace object as the first
    # attempt ends, and the second attempt writes a context of its own
    rig, records = traced_rig(tmp_path)
    s, down = rig.stream(express=True)
    s.start()
    first = rig.made[-1]
    first.stream = None
    s.on_upstream_reset("upstream_refused_stream", 503)
    assert s.ctx.trace is not None and s.trace_wire is None
    rig.worker.loop.advance(0)
    second = rig.made[-1]
    assert second is not first
    second.answer(200)
    assert down.status() == 200
    (rec,) = records
    server, one, two = rec.spans
    parents = [up.traceparent.decode().split("-")[2] for up in (first, second)]
    assert [f"{c.span_id:016x}" for c in (one, two)] == parents and parents[0] != parents[1]
    assert one.parent_id == two.parent_id == server.span_id
    assert one.error and one.message == "upstream_refused_stream" and "http.response.status_code" not in one.attributes
    assert two.attributes["http.response.status_code"] == 200 and not two.error
