"""proxy/rpc/codec.py: the contract every registered codec keeps, checked for each one:
a frame decodes whole or asks for more (on every prefix), ids are rewritten and nothing
else, local replies and heartbeat answers are responses to the same id, an oversized
frame is refused, and any bytes at all are a frame, "need more" or a FrameError."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from mosnx.proxy.rpc import bolt, codec as rc, dubbo

REQUESTS = {
    "bolt": bolt.encode_request(7, {"service": "com.example.A:1.0", "sofa_head_method_name": "get"}, b"\x01body"),
    "dubbo": dubbo.encode_request(7, dubbo.request_body("com.example.A", "get", "1.0", b"\x05hello",
                                                        "Ljava/lang/String;", b"H\x04zone\x02gzZ")),
}
HEARTBEATS = {"bolt": bolt.encode_heartbeat(9), "dubbo": dubbo.encode_heartbeat(9)}
CODECS = sorted(REQUESTS)


def test_shipped_codecs_are_registered():
    assert set(rc.CODECS) >= {"bolt", "dubbo"}
    assert rc.get("bolt") is bolt.CODEC and rc.get("dubbo") is dubbo.CODEC and rc.get("nope") is None
    with pytest.raises(ValueError):
        rc.register(rc.Codec())


@pytest.mark.parametrize("name", CODECS)
def test_request_decodes_whole_and_every_prefix_needs_more(name):
    c = rc.CODECS[name]
    raw = REQUESTS[name]
    for i in range(len(raw)):
        assert c.decode(raw[:i], 0, 1 << 20) is None, i
    f = c.decode(raw + b"\x01next", 0, 1 << 20)
    assert f is not None and f.raw == raw and f.kind == rc.REQUEST and f.request_id == 7
    assert f.headers[rc.SERVICE] == "com.example.A" and f.headers[rc.METHOD] == "get"
    assert f.headers[rc.VERSION] == "1.0"
    # from an offset: the frame that starts there
    g = c.decode(b"junk" + raw, 4, 1 << 20)
    assert g is not None and g.raw == raw


@pytest.mark.parametrize("name", CODECS)
def test_id_rewrite_changes_only_the_id(name):
    c = rc.CODECS[name]
    f = c.decode(REQUESTS[name], 0, 1 << 20)
    up = c.with_id(f, 123456)
    g = c.decode(up, 0, 1 << 20)
    assert g.request_id == 123456 and len(up) == len(f.raw) and g.headers == f.headers
    assert c.with_id(g, 7) == f.raw


@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize("reason", rc.ERRORS)
def test_local_reply_is_an_error_response_to_the_request(name, reason):
    c = rc.CODECS[name]
    f = c.decode(REQUESTS[name], 0, 1 << 20)
    r = c.decode(c.local_reply(f, reason, "mosnx: why"), 0, 1 << 20)
    assert r.kind == rc.RESPONSE and r.request_id == 7 and not c.is_success(r)
    assert c.http_status(r) >= 400


@pytest.mark.parametrize("name", CODECS)
def test_with_headers_adds_what_the_header_view_then_shows(name):
    c = rc.CODECS[name]
    f = c.decode(REQUESTS[name], 0, 1 << 20)
    g = c.with_headers(f, {"traceparent": "00-ab-cd-01", "zone": "sh"})
    assert g is not None and g.request_id == f.request_id and g.kind == f.kind
    h = c.decode(g.raw, 0, 1 << 20).headers
    assert h["traceparent"] == "00-ab-cd-01" and h["zone"] == "sh"
    assert {k: v for k, v in h.items() if k not in ("traceparent", "zone")} == \
        {k: v for k, v in f.headers.items() if k != "zone"}


@pytest.mark.parametrize("name", CODECS)
def test_heartbeat_answered_with_its_id(name):
    c = rc.CODECS[name]
    hb = c.decode(HEARTBEATS[name], 0, 1 << 20)
    assert hb.kind == rc.HEARTBEAT and hb.request_id == 9
    ack = c.decode(c.heartbeat_reply(hb), 0, 1 << 20)
    assert ack.kind == rc.HEARTBEAT_ACK and ack.request_id == 9


@pytest.mark.parametrize("name", CODECS)
def test_oversized_frame_refused_before_it_is_read(name):
    c = rc.CODECS[name]
    raw = REQUESTS[name]
    with pytest.raises(rc.FrameError, match="above the limit"):
        c.decode(raw[:24], 0, len(raw) - 1)


@pytest.mark.parametrize("name", CODECS)
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_any_bytes_are_a_frame_need_more_or_a_frame_error(name, data):
    c = rc.CODECS[name]
    for buf in (data, REQUESTS[name][:24] + data, REQUESTS[name][:2] + data):
        try:
            f = c.decode(buf, 0, 4096)
        except rc.FrameError:
            continue
        if f is None:
            continue
        assert f.raw == bytes(buf[:len(f.raw)])
        try:
            assert isinstance(f.headers, dict)
            dict(f.headers.items())                # every attachment, read
        except rc.FrameError:
            pass
        try:
            g = c.with_headers(f, {"traceparent": "00-1-2-01"})
            assert g is None or c.decode(g.raw, 0, 1 << 20).request_id == f.request_id
        except rc.FrameError:
            pass
        c.with_id(f, 1)
        if f.kind in (rc.REQUEST, rc.ONEWAY):
            c.local_reply(f, rc.TIMEOUT, "x")
        if f.kind == rc.HEARTBEAT:
            c.heartbeat_reply(f)
