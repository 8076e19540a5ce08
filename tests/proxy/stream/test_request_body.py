"""The request body: kept until a connection is ready (then sent with the head),
streamed once it is, framed by the upstream handle (not here), buffered for a retry
up to the retry buffer, and the client held when too much waits."""
from __future__ import annotations

from mosnx.proxy.stream.state import COMPLETE, RECEIVING

from .fakes import Rig, cluster_yaml


def test_chunks_read_before_the_connection_go_with_the_head(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    rig.pool().held = True
    s, down = rig.stream(method="POST", body=6)
    s.start()
    s.on_request_body(b"abc")
    s.on_request_body(b"def")
    assert s.req is RECEIVING
    up = rig.pool().ready()
    assert up.sent == [("request", "POST", "/", 6, False, [b"abc", b"def"], False)]
    s.on_request_end(None)
    assert up.sent[-1] == ("end", None) and s.req is COMPLETE
    assert s.ctx.bytes_received == 6


def test_a_body_of_unknown_length_is_handed_over_as_such(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    s, down = rig.stream(method="POST", body=None)
    s.start()
    s.on_request_body(b"x")
    s.on_request_end(None)
    up = rig.made[-1]
    assert up.sent[0][3] is None       # the handle frames it chunked (HTTP/1.1)
    assert up.sent[1:] == [("body", b"x"), ("end", None)]


def test_the_client_is_held_while_too_much_waits_for_a_connection(tmp_path):
    rig = Rig(tmp_path, cluster_yaml().replace(
        "address: 127.0.0.1:18080",
        "address: 127.0.0.1:18080\n        limits: {write_high_water: 8, write_low_water: 4}"))
    rig.pool().held = True
    s, down = rig.stream(method="POST", body=20)
    s.start()
    s.on_request_body(b"0123456789")
    assert ("pause_body",) in down.events
    rig.pool().ready()
    assert ("resume_body",) in down.events


def test_after_the_response_the_rest_of_the_body_is_dropped(tmp_path):
    rig = Rig(tmp_path, cluster_yaml())
    s, down = rig.stream(method="POST", body=10)
    s.start()
    up = rig.made[-1]
    up.answer(200)
    s.on_request_body(b"late")
    assert ("body", b"late") not in up.sent
    s.on_request_end(None)
    assert down.finished == 1
