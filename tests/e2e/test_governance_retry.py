"""Retries and timeouts through a real mosnx: what is retried, where, how often, with
which body, and what the client sees (x-envoy-attempt-count, the final status)."""
from __future__ import annotations

import threading
import time

import pytest

WAIT = 15.0


def scripted(upstream, *statuses, name=b"up"):
    """Answers with `statuses` in turn (the last one repeats)."""
    seq = list(statuses)
    lock = threading.Lock()

    def answer(conn, req):
        with lock:
            status = seq.pop(0) if len(seq) > 1 else seq[0]
        conn.respond(status, name + b":" + req.body)
    return upstream(on_request=answer)


def route(**retry):
    return {"retry": {"num_retries": 2, **retry}}


def test_5xx_is_retried_and_the_attempt_count_shown(upstream, mosnx):
    up = scripted(upstream, 503, 200)
    proxy = mosnx([up], route=route(retry_on="5xx"))
    r = proxy.request("GET", "/x")
    assert r.status == 200 and r.header("x-envoy-attempt-count") == "2"
    assert len(up.requests) == 2
    assert proxy.stat("cluster.web.upstream_rq_retry") == 1
    assert proxy.stat("cluster.web.upstream_rq_retry_success") == 1
    assert proxy.stat("http.ingress.downstream_rq_retry_success") == 1


def test_retries_run_out_and_the_last_answer_is_returned(upstream, mosnx):
    up = scripted(upstream, 503)
    proxy = mosnx([up], route=route(retry_on=["5xx"]))
    r = proxy.request("GET", "/")
    assert r.status == 503 and r.header("x-envoy-attempt-count") == "3"
    assert len(up.requests) == 3
    assert proxy.stat("cluster.web.upstream_rq_retry_success") == 0


@pytest.mark.parametrize("retry_on, status, retried", [
    ("gateway-error", 502, True), ("gateway-error", 500, False),
    ("retriable-status-codes", 409, True), ("retriable-status-codes", 404, False),
    ("connect-failure", 503, False), ("5xx", 404, False),
])
def test_retry_on_conditions(upstream, mosnx, retry_on, status, retried):
    up = scripted(upstream, status, 200)
    proxy = mosnx([up], route=route(retry_on=retry_on, retriable_status_codes=[409]))
    r = proxy.request("GET", "/")
    assert r.status == (200 if retried else status)
    assert len(up.requests) == (2 if retried else 1)


def test_a_retry_goes_to_another_endpoint(upstream, mosnx):
    bad = scripted(upstream, 503, name=b"bad")
    good = scripted(upstream, 200, name=b"good")
    proxy = mosnx([bad, good], route=route(retry_on="5xx", num_retries=1))
    with proxy.connect() as c:
        for i in range(10):
            r = c.request("GET", f"/{i}")
            assert r.status == 200 and r.body.startswith(b"good"), r
    # one retry each, and it never went back to `bad`
    assert len(good.requests) == 10 and len(bad.requests) <= 10


def test_connect_failure_is_retried_on_another_endpoint(upstream, mosnx, free_port):
    good = scripted(upstream, 200)
    dead = f"127.0.0.1:{free_port()}"
    proxy = mosnx([dead, good], route=route(retry_on="connect-failure"))
    for _ in range(6):
        assert proxy.request("GET", "/").status == 200
    assert proxy.stat("cluster.web.upstream_cx_connect_fail") >= 3


def test_reset_is_retried(upstream, mosnx):
    n = {"i": 0}

    def answer(conn, req):
        n["i"] += 1
        if n["i"] == 1:
            conn.reset()
        else:
            conn.respond(200, b"second")
    up = upstream(on_request=answer)
    proxy = mosnx([up], route=route(retry_on="reset"))
    r = proxy.request("POST", "/", body=b"payload")        # not idempotent: only the policy retries it
    assert r.status == 200 and r.body == b"second"
    assert up.requests[-1].body == b"payload"


def test_a_reset_is_not_retried_without_the_condition(upstream, mosnx):
    up = upstream(on_request=lambda conn, req: conn.reset())
    proxy = mosnx([up], route=route(retry_on="5xx"))
    r = proxy.request("POST", "/", body=b"x")
    assert r.status == 503 and r.header("x-mosnx-error") == "upstream_reset_before_response_started"
    assert len(up.requests) == 1


def test_per_try_timeout_moves_on_to_the_next_attempt(upstream, mosnx):
    def slow(conn, req):
        time.sleep(3)
        conn.respond(200, b"slow")
    slowup = upstream(on_request=slow)
    fast = scripted(upstream, 200, name=b"fast")
    proxy = mosnx([slowup, fast], route={"timeout": "10s", "retry": {
        "retry_on": "5xx", "num_retries": 1, "per_try_timeout": "300ms"}})
    with proxy.connect() as c:
        for i in range(2):
            r = c.request("GET", f"/{i}")
            assert r.status == 200 and r.body.startswith(b"fast"), r
    # round robin starts anywhere: one or both requests tried the slow endpoint first
    assert proxy.stat("cluster.web.upstream_rq_per_try_timeout") in (1, 2)


def test_route_timeout_answers_504(upstream, mosnx):
    def slow(conn, req):
        time.sleep(3)
        conn.respond(200, b"late")
    proxy = mosnx([upstream(on_request=slow)], route={"timeout": "300ms"})
    r = proxy.request("GET", "/")
    assert r.status == 504 and r.header("x-mosnx-error") == "upstream_response_timeout"
    assert proxy.stat("cluster.web.upstream_rq_timeout") == 1


def test_request_body_is_replayed_within_the_retry_buffer(upstream, mosnx):
    up = scripted(upstream, 503, 200)
    body = b"b" * 3000
    proxy = mosnx([up], route=route(retry_on="5xx"), listener={"limits": {"retry_buffer": "4KiB"}})
    r = proxy.request("POST", "/", body=body)
    assert r.status == 200 and r.body == b"up:" + body
    assert [m.body for m in up.requests] == [body, body]


def test_a_body_over_the_retry_buffer_is_not_replayed(upstream, mosnx):
    up = scripted(upstream, 503, 200)
    body = b"b" * 8000
    proxy = mosnx([up], route=route(retry_on="5xx"), listener={"limits": {"retry_buffer": "4KiB"}})
    r = proxy.request("POST", "/", body=body)
    assert r.status == 503, "the first answer stands: the body is gone"
    assert len(up.requests) == 1 and up.requests[0].body == body


def test_backoff_spaces_attempts(upstream, mosnx):
    stamps = []

    def answer(conn, req):
        stamps.append(time.monotonic())
        conn.respond(503, b"")
    up = upstream(on_request=answer)
    proxy = mosnx([up], route={"retry": {"retry_on": "5xx", "num_retries": 3,
                                         "backoff": {"base_interval": "200ms", "max_interval": "200ms"}}})
    r = proxy.request("GET", "/")
    assert r.status == 503 and len(stamps) == 4
    # full jitter: each wait is random in [0, 200ms]; they can not all be long or all be zero-length
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert max(gaps) < 2.0 and sum(gaps) > 0.0
