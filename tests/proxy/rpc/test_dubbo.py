"""proxy/rpc/dubbo.py: Dubbo 2 frames: flags to kinds, the body's leading strings read
for routing, the attachments read only when asked for, attachments added for the
upstream, Dubbo's statuses and error body for local replies."""
from __future__ import annotations

import pytest

from mosnx.proxy.rpc import codec as rc, dubbo
from mosnx.proxy.rpc.hessian import read_string

C = dubbo.CODEC


def test_request_header_map():
    f = C.decode(dubbo.encode_request(1, dubbo.request_body("com.x.S", "find", "2.1", b"\x91", "I")), 0, 1 << 20)
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


def _consumer_frame(group: str = "", context: dict | None = None, args: list | None = None) -> bytes:
    """A request as dubbo-ssl-python's consumer encodes it: arguments, then its attachments."""
    enc = pytest.importorskip("dubbo_ssl.codec.encoder")
    user = enc.Object("com.example.User", {"name": "u1", "tags": ["a", "b"]})
    req = enc.Request({"dubbo_version": "2.7.23", "path": "com.example.Users", "version": "1.0.0",
                       "method": "save", "arguments": args if args is not None else [user, 7, "x", [1.5, 2.5]],
                       "group": group, "context": context})
    return bytes(req.encode())


def test_attachments_read_only_when_asked_for():
    f = C.decode(_consumer_frame("blue", {"zone": "gz", "traceparent": "00-ab-cd-01"}), 0, 1 << 20)
    h = f.headers
    assert h.get(rc.SERVICE) == "com.example.Users" and h.get(rc.METHOD) == "save"
    assert not h.loaded                          # the leading strings answered: the arguments untouched
    assert h.get(rc.GROUP) == "blue" and h.loaded
    assert h["zone"] == "gz" and h.get("traceparent") == "00-ab-cd-01" and h.get("interface") == "com.example.Users"
    assert dict(h.items())[rc.VERSION] == "1.0.0"


def test_an_empty_group_is_no_group_and_a_missing_key_reads_none():
    h = C.decode(_consumer_frame(args=[]), 0, 1 << 20).headers
    assert h.get(rc.GROUP) is None and h.get("nope") is None and "nope" not in h


def test_unreadable_attachments_are_a_frame_error():
    body = dubbo.request_body("com.x.S", "find", "1.0", b"\x91", "I", attachments=b"\x05hello")
    f = C.decode(dubbo.encode_request(1, body), 0, 1 << 20)
    assert f.headers.get(rc.SERVICE) == "com.x.S"
    with pytest.raises(rc.FrameError, match="attachments"):
        f.headers.get("zone")


@pytest.mark.parametrize("attachments", [b"H\x01a\x01bZ", b"N", b"M\x03map\x01a\x01bZ"])
def test_with_headers_adds_attachments_and_keeps_the_rest(attachments):
    body = dubbo.request_body("com.x.S", "find", "1.0", b"\x91", "I", attachments=attachments)
    f = C.decode(dubbo.encode_request(5, body), 0, 1 << 20)
    g = C.with_headers(f, {"traceparent": "00-1-2-01", "a": "z"})
    again = C.decode(g.raw, 0, 1 << 20)
    assert again.request_id == 5 and again.kind == rc.REQUEST and len(again.raw) == len(g.raw)
    assert again.headers.get("traceparent") == "00-1-2-01" and again.headers.get("a") == "z"
    assert g.headers.get("a") == "z"
    assert again.raw[16:16 + len(body) - len(attachments)] == body[:len(body) - len(attachments)]


def test_with_headers_on_a_consumer_request_is_read_by_python_hessian():
    parser = pytest.importorskip("pyhessian.parser")
    import io
    f = C.decode(_consumer_frame("g", args=["u1"]), 0, 1 << 20)
    g = C.with_headers(f, {"sw8": "1-abc", "group": "g2"})
    p = parser.Parser()
    p.version = 2
    p._stream = io.BytesIO(g.raw[16:])
    values = [p.read_object() for _ in range(7)]
    assert values[:6] == ["2.7.23", "com.example.Users", "1.0.0", "save", "Ljava/lang/String;", "u1"]
    assert values[6]["sw8"] == "1-abc" and values[6]["group"] == "g2"


def test_unreadable_attachments_fail_every_look_not_only_the_first():
    body = dubbo.request_body("com.x.S", "find", "1.0", b"\x91", "I", attachments=b"\x91")
    h = C.decode(dubbo.encode_request(1, body), 0, 1 << 20).headers
    for _ in range(2):
        with pytest.raises(rc.FrameError):
            h.get(rc.GROUP)
    assert h.get(rc.SERVICE) == "com.x.S"      # what was read still answers
