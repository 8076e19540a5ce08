"""proxy/rpc/dubbo.py: Dubbo 2 frames: flags to kinds, the body's leading strings read
for routing (and nothing after them), Dubbo's statuses and error body for local replies."""
from __future__ import annotations

import pytest

from mosnx.proxy.rpc import codec as rc, dubbo
from mosnx.proxy.rpc.hessian import read_string

C = dubbo.CODEC


def test_request_header_map():
    f = C.decode(dubbo.encode_request(1, dubbo.request_body("com.x.S", "find", "2.1", b"\x91")), 0, 1 << 20)
    assert f.headers == {"dubbo": "2.0.2", ":service": "com.x.S", "path": "com.x.S", ":version": "2.1",
                         ":method": "find"}
    # version 0.0.0 is Dubbo's "no version"
    f = C.decode(dubbo.encode_request(1, dubbo.request_body("com.x.S", "find")), 0, 1 << 20)
    assert ":version" not in f.headers


def test_kinds_from_flags():
    assert C.decode(dubbo.encode_request(1, b"N", oneway=True), 0, 99).kind == rc.ONEWAY
    assert C.decode(dubbo.encode(1, 0x02, dubbo.OK, b"\x91"), 0, 99).kind == rc.RESPONSE
    assert C.decode(dubbo.encode(1, 0x22, dubbo.OK, b"N"), 0, 99).kind == rc.HEARTBEAT_ACK


def test_unreadable_body_or_serialization():
    f = C.decode(dubbo.encode_request(1, b"\x91\x92"), 0, 99)
    with pytest.raises(rc.FrameError, match="request body"):
        f.headers
    f = C.decode(dubbo.encode(1, 0xC0 | 6, 0, dubbo.request_body("a", "b")), 0, 99)   # serialization 6
    with pytest.raises(rc.FrameError, match="not Hessian 2"):
        f.headers


def test_local_reply_carries_status_and_message():
    req = C.decode(dubbo.encode_request(77, dubbo.request_body("a", "b")), 0, 1 << 20)
    r = C.decode(C.local_reply(req, rc.TIMEOUT, "mosnx: slow"), 0, 1 << 20)
    assert r.kind == rc.RESPONSE and r.request_id == 77 and r.status == dubbo.SERVER_TIMEOUT
    assert read_string(r.raw, 16) == ("mosnx: slow", len(r.raw))
    assert C.http_status(r) == 504


def test_bad_magic_and_negative_id():
    with pytest.raises(rc.FrameError):
        C.decode(b"\xda\xbc" + bytes(14), 0, 99)
    with pytest.raises(rc.FrameError):
        C.decode(dubbo._HEAD.pack(b"\xda\xbb", 0xC2, 0, -1, 0), 0, 99)
