"""One upstream attempt: counted on its host and the circuit breaker exactly once
however it ends, refused when the breaker is full (also as it takes a connection
that was waited for), and made once more when a pooled connection raced its close
or an HTTP/2 endpoint refused the stream."""
from __future__ import annotations

from mosnx.proxy.stream.state import A_ACTIVE, A_IDLE, A_WAITING

from .fakes import Rig, cluster_yaml


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
