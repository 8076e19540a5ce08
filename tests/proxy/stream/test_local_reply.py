"""Replies the proxy makes itself: the fields every local reply carries, gRPC's
trailers-only form, HEAD without a body, and a client still sending when the reply
goes out."""
from __future__ import annotations

from mosnx.runtime.actions import LocalReply

from .fakes import Rig, cluster_yaml


def test_a_failure_carries_its_detail_request_id_and_body(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    rig.pool().overflow = True
    s, down = rig.stream(headers=[("x-request-id", "rid-1")])
    s.start()
    head = down.head()
    assert down.status() == 503
    assert head[b"x-mosnx-error"] == b"upstream_overflow" and head[b"x-envoy-overloaded"] == b"true"
    assert head[b"x-request-id"] == b"rid-1" and head[b"content-type"] == b"text/plain"
    assert down.body() == b"upstream unavailable\n"
    assert rig.lstats.local_replies["upstream_overflow"].value == 1
    assert rig.counter("http.l.downstream_rq_5xx") == 1


def test_a_grpc_call_gets_its_failure_as_trailers_only(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    rig.pool().overflow = True
    s, down = rig.stream(method="POST", headers=[("content-type", "application/grpc")], body=None)
    s.start()
    head = down.head()
    assert down.status() == 200 and head[b"grpc-status"] == b"14"


def test_a_head_request_gets_the_length_without_the_body(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    rig.pool().overflow = True
    s, down = rig.stream(method="HEAD")
    s.start()
    assert down.status() == 503 and down.body() == b""
    assert down.events[0][3] == len(b"upstream unavailable\n")


def test_a_reply_before_the_body_ends_closes_the_connection_after_it(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    s, down = rig.stream(method="POST", body=100)
    s.start()
    s.local_reply(LocalReply(413, b"too big\n", (), "test_too_big"))
    assert down.status() == 413 and not s.client_keep_alive
    # a second answer to an answered stream changes nothing
    s.fail(500, "internal_error")
    assert [e[0] for e in down.events].count("head") == 1
