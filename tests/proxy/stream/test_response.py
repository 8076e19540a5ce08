"""The response: hop-by-hop fields stay behind, a retried answer says how many
attempts it took, a HEAD or 204 answer ends at its head, and a reset inside the
body cuts the response short instead of ending it as if complete."""
from __future__ import annotations

from mosnx.proxy.stream.state import BODY_ENDED, ENDED, HEAD_SENT
from mosnx.runtime.headers import Headers

from .fakes import Rig, cluster_yaml


def test_hop_by_hop_fields_and_those_connection_names_stay_behind(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    s, down = rig.stream()
    s.start()
    rig.made[-1].answer(200, [("connection", "x-private, close"), ("x-private", "1"), ("keep-alive", "5"),
                              ("transfer-encoding", "chunked"), ("server", "up")], b"ok")
    assert down.head() == {b"server": b"up"}
    assert down.body() == b"ok" and ("end", None) in down.events


def test_a_head_without_a_body_ends_the_body_phase_at_once(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    s, down = rig.stream(method="HEAD")
    s.start()
    up = rig.made[-1]
    up.stream.on_upstream_head(200, Headers([(b"content-length", b"0")]), True, 0)
    assert s.resp is BODY_ENDED
    up.stream = None
    s.on_upstream_end(None)
    assert s.resp is ENDED and rig.pool().released == [(up, True)]


def test_a_reset_inside_the_body_cuts_the_response(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    s, down = rig.stream()
    s.start()
    up = rig.made[-1]
    up.stream.on_upstream_head(200, Headers([(b"content-length", b"10")]), True, 10)
    up.stream.on_upstream_data(b"01234")
    assert s.resp is HEAD_SENT
    s.on_upstream_reset("upstream_reset_after_response_started", 503)
    assert ("abort",) in down.events and ("end", None) not in down.events
    assert s.ctx.error_detail == "upstream_reset_after_response_started"
    assert rig.counter("cluster.up.upstream_rq_rx_reset") == 1


def test_a_slow_client_holds_the_upstream(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    s, down = rig.stream()
    s.start()
    up = rig.made[-1]
    up.stream.on_upstream_head(200, Headers([]), True, None)
    down.is_writable = False
    up.stream.on_upstream_data(b"x" * 10)
    assert up.paused
    down.is_writable = True
    s.on_downstream_drain()
    assert not up.paused


def test_trailers_pass_through(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    s, down = rig.stream()
    s.start()
    rig.made[-1].answer(200, [], b"body", trailers=Headers([(b"grpc-status", b"0")]))
    assert down.events[-1] == ("end", [(b"grpc-status", b"0")])
