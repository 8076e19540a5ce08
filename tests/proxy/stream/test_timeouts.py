"""Timeouts on a clock the test moves: the route timeout (a timer when short, the
worker's sweep when long), the per-try timeout with a retry, and the stream idle
timeout before and after the response began."""
from __future__ import annotations

from mosnx.proxy.stream.state import A_IDLE, ENDED
from mosnx.runtime.headers import Headers

from .fakes import Rig, cluster_yaml


def test_a_short_route_timeout_answers_504_and_closes_the_upstream(tmp_path):
    rig = Rig(tmp_path, cluster_yaml(route="{cluster: up, timeout: 500ms}"))
    s, down = rig.stream()
    s.start()
    up = rig.pool().conns[-1]
    rig.worker.loop.advance(0.4)
    assert down.events == []
    rig.worker.loop.advance(0.2)
    assert down.status() == 504 and down.head()[b"x-mosnx-error"] == b"upstream_response_timeout"
    assert up.closed and s.att is A_IDLE and s.resp is ENDED
    assert rig.counter("cluster.up.upstream_rq_timeout") == 1
    assert rig.worker.clusters.get("up").hosts[0].rq_active == 0


def test_a_long_route_timeout_is_the_sweeps(tmp_path):
    rig = Rig(tmp_path, cluster_yaml(route="{cluster: up, timeout: 5s}"))
    s, down = rig.stream()
    s.start()
    assert rig.worker.loop.timers == [] and s.timeout_at == rig.worker.loop.now + 5
    s.check_timeouts(rig.worker.loop.now + 4.9)
    assert down.events == []
    s.check_timeouts(rig.worker.loop.now + 5.1)
    assert down.status() == 504


def test_the_route_timeout_stops_once_the_head_arrives(tmp_path):
    rig = Rig(tmp_path, cluster_yaml(route="{cluster: up, timeout: 500ms}"))
    s, down = rig.stream()
    s.start()
    up = rig.pool().conns[-1]
    up.stream.on_upstream_head(200, Headers([(b"content-length", b"4")]), True, 4)
    rig.worker.loop.advance(1.0)
    assert down.status() == 200 and ("abort",) not in down.events
    up.stream.on_upstream_data(b"done")
    up.stream = None
    s.on_upstream_end(None)
    assert down.body() == b"done"


def test_a_per_try_timeout_tries_again_and_the_retry_answers(tmp_path):
    rig = Rig(tmp_path, cluster_yaml(
        route="{cluster: up, retry: {retry_on: [5xx], num_retries: 1, per_try_timeout: 100ms, "
              "backoff: {base_interval: 1ms, max_interval: 1ms}}}"))
    s, down = rig.stream()
    s.start()
    first = rig.made[-1]
    rig.worker.loop.advance(0.15)
    assert first.closed and rig.counter("cluster.up.upstream_rq_per_try_timeout") == 1
    rig.worker.loop.advance(0.01)
    rig.made[-1].answer(200)
    assert down.status() == 200


def test_an_idle_stream_is_timed_out_by_the_sweep(tmp_path):
    rig = Rig(tmp_path, cluster_yaml(route="{cluster: up, timeout: 0s, idle_timeout: 1s}"))
    s, down = rig.stream()
    s.start()
    now = rig.worker.loop.now
    s.check_timeouts(now)               # marks the progress seen so far
    s.check_timeouts(now + 0.5)
    assert down.events == []
    s.check_timeouts(now + 1.5)
    assert down.status() == 504 and down.head()[b"x-mosnx-error"] == b"stream_idle_timeout"
    assert rig.counter("http.l.downstream_rq_idle_timeout") == 1


def test_an_idle_stream_whose_response_began_is_cut_short(tmp_path):
    rig = Rig(tmp_path, cluster_yaml(route="{cluster: up, timeout: 0s, idle_timeout: 1s}"))
    s, down = rig.stream()
    s.start()
    rig.made[-1].stream.on_upstream_head(200, Headers([(b"content-length", b"9")]), True, 9)
    now = rig.worker.loop.now
    s.check_timeouts(now)
    s.check_timeouts(now + 2)
    assert down.status() == 200 and ("abort",) in down.events
    assert s.resp is ENDED and rig.pool().released[-1][1] is False
