"""Retries: the pure decisions (which answers and failures may be tried again, how
long to back off, whether the request can be sent again) and a retry made through
fake peers: a 503 answer, a reset, a connect failure, the retry budget."""
from __future__ import annotations

import pytest

from mosnx.proxy.stream.retry import backoff, replayable, retriable_status
from mosnx.runtime.routes import RetryPolicy

from .fakes import Rig, cluster_yaml


def policy(*on, codes=(), base=0.025, cap=0.25) -> RetryPolicy:
    return RetryPolicy(retry_on=frozenset(on), num_retries=2, retriable_status_codes=frozenset(codes),
                       backoff_base=base, backoff_max=cap)


@pytest.mark.parametrize("on,status,want", [
    (("5xx",), 500, True), (("5xx",), 503, True), (("5xx",), 404, False),
    (("gateway-error",), 502, True), (("gateway-error",), 504, True), (("gateway-error",), 500, False),
    (("retriable-4xx",), 409, True), (("retriable-4xx",), 404, False),
    (("connect-failure",), 503, False),
])
def test_which_statuses_are_tried_again(on, status, want):
    assert retriable_status(status, policy(*on)) is want


def test_retriable_status_codes_need_their_condition():
    assert retriable_status(429, policy("retriable-status-codes", codes=(429,)))
    assert not retriable_status(429, policy("5xx", codes=(429,)))


def test_backoff_doubles_up_to_its_cap():
    p = policy("5xx", base=0.025, cap=0.1)
    assert [backoff(p, n) for n in (1, 2, 3, 4)] == [0.025, 0.05, 0.1, 0.1]


def test_a_request_is_replayable_without_a_body_or_with_all_of_it_kept():
    assert replayable(0, False, True)
    assert replayable(10, True, True)
    assert not replayable(10, False, True)      # still arriving, or not kept
    assert not replayable(0, False, False)      # a chunk outgrew the retry buffer


RETRY = "{cluster: up, retry: {retry_on: [5xx, reset, connect-failure], num_retries: 2, backoff: {base_interval: 1ms, max_interval: 1ms}}}"


@pytest.fixture
def rig(tmp_path):
    return Rig(tmp_path, cluster_yaml(route=RETRY, endpoints=2))


def conns(rig):
    return rig.made


def test_a_503_is_tried_again_on_another_host_and_the_second_answer_stands(rig):
    s, down = rig.stream()
    s.start()
    first = conns(rig)[-1]
    first.answer(503)
    assert down.events == []            # the 503 never reaches the client
    rig.worker.loop.advance(0.01)       # the backoff
    second = [c for c in conns(rig) if c is not first][-1]
    assert second.pool is not first.pool        # the host tried before is avoided
    second.answer(200, [("content-length", "2")], b"ok")
    assert down.status() == 200 and down.body() == b"ok"
    assert rig.counter("cluster.up.upstream_rq_retry") == 1
    assert rig.counter("cluster.up.upstream_rq_retry_success") == 1
    assert rig.counter("http.l.downstream_rq_retry_success") == 1
    assert dict(down.head())[b"x-envoy-attempt-count"] == b"2"
    cluster = rig.worker.clusters.get("up")
    assert cluster.retries_active == 0 and cluster.res.rq_active == 0


def test_retries_stop_at_num_retries_and_the_last_answer_goes_out(rig):
    s, down = rig.stream()
    s.start()
    for _ in range(3):
        conns(rig)[-1].answer(503)
        rig.worker.loop.advance(0.01)
    assert down.status() == 503 and rig.counter("cluster.up.upstream_rq_retry") == 2


def test_a_reset_before_the_response_is_tried_again(rig):
    s, down = rig.stream()
    s.start()
    conns(rig)[-1].stream = None
    s.on_upstream_reset("upstream_reset_before_response_started", 503)
    rig.worker.loop.advance(0.01)
    conns(rig)[-1].answer(200)
    assert down.status() == 200


def test_a_connect_failure_is_tried_again(rig):
    for i in (0, 1):
        rig.pool(i=i).held = True
    s, down = rig.stream()
    s.start()
    pool = next(rig.pool(i=i) for i in (0, 1) if rig.pool(i=i).waiting)
    pool.fail()
    rig.worker.loop.advance(0.01)
    other = next(rig.pool(i=i) for i in (0, 1) if rig.pool(i=i).waiting)
    other.ready().answer(200)
    assert down.status() == 200


def test_a_body_larger_than_the_retry_buffer_is_not_replayed(tmp_path):
    rig = Rig(tmp_path, cluster_yaml(route=RETRY).replace(
        "address: 127.0.0.1:18080", "address: 127.0.0.1:18080\n        limits: {retry_buffer: 4}"))
    s, down = rig.stream(method="POST", body=8)
    s.start()
    s.on_request_body(b"12345678")
    s.on_request_end(None)
    rig.pool().conns[-1].answer(503)
    assert down.status() == 503 and rig.counter("cluster.up.upstream_rq_retry") == 0
