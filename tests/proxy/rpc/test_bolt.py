"""proxy/rpc/bolt.py: Bolt v1 frames as SOFARPC writes them: the header map, the service's
unique name split into service/version/group, the method from the header or from the
SofaRequest's first field, Bolt's statuses for local replies."""
from __future__ import annotations

import pytest

from mosnx.proxy.rpc import bolt, codec as rc
from mosnx.proxy.rpc.hessian import write_string

C = bolt.CODEC
# a request as sofa-bolt-node 2.0.1 writes it (captured once): the method is not in the
# header map, only the SofaRequest's first field
NODE_REQUEST = bytes.fromhex(
    "0101000101000000010100007530002c0020000000c2636f6d2e616c697061792e736f66612e7270632e636f72652e72657175"
    "6573742e536f666152657175657374000000077365727669636500000011636f6d2e6578616d706c652e413a312e304fbc636f"
    "6d2e616c697061792e736f66612e7270632e636f72652e726571756573742e536f666152657175657374950a6d6574686f644e"
    "616d650d6d6574686f64417267536967731774617267657453657276696365556e697175654e616d650d7461726765744170704e"
    "616d650c7265717565737450726f70736f900568656c6c6f567400115b6a6176612e6c616e672e537472696e676e01106a6176"
    "612e6c616e672e537472696e677a11636f6d2e6578616d706c652e413a312e304e4e0178")


def test_node_request_routed_by_service_version_and_method():
    f = C.decode(NODE_REQUEST, 0, 1 << 20)
    assert f.kind == rc.REQUEST and f.request_id == 1 and len(f.raw) == len(NODE_REQUEST)
    assert f.headers == {"service": "com.example.A:1.0", ":service": "com.example.A", ":version": "1.0",
                         ":method": "hello"}


def test_header_map_unique_id_and_null_values():
    raw = bolt.encode_request(3, {"service": "a.B:2.0:blue", "zone": None, "k": "v"}, b"")
    h = C.decode(raw, 0, 1 << 20).headers
    assert h == {"service": "a.B:2.0:blue", "zone": "", "k": "v", ":service": "a.B", ":version": "2.0",
                 ":group": "blue"}


def test_bad_header_map_is_a_frame_error():
    hb = b"\x00\x00\x00\x09ab"                 # a key longer than the map
    raw = bolt._REQ.pack(1, 1, 1, 1, 5, 1, 0, 0, len(hb), 0) + hb
    f = C.decode(raw, 0, 1 << 20)
    with pytest.raises(rc.FrameError):
        f.headers


def test_oneway_and_responses():
    f = C.decode(bolt.encode_request(4, {}, b"x", oneway=True), 0, 1 << 20)
    assert f.kind == rc.ONEWAY
    r = C.decode(bolt.encode_response(4, bolt.SUCCESS, write_string("ok")), 0, 1 << 20)
    assert r.kind == rc.RESPONSE and C.is_success(r) and C.http_status(r) == 200
    r = C.decode(bolt.encode_response(4, bolt.SERVER_EXCEPTION, b""), 0, 1 << 20)
    assert not C.is_success(r) and C.http_status(r) == 500


@pytest.mark.parametrize("reason,status", [(rc.NO_ROUTE, bolt.NO_PROCESSOR), (rc.TIMEOUT, bolt.STATUS_TIMEOUT),
                                           (rc.OVERFLOW, bolt.SERVER_THREADPOOL_BUSY),
                                           (rc.RESET, bolt.CONNECTION_CLOSED),
                                           (rc.CODEC_ERROR, bolt.CODEC_EXCEPTION)])
def test_local_reply_statuses(reason, status):
    req = C.decode(NODE_REQUEST, 0, 1 << 20)
    r = C.decode(C.local_reply(req, reason, "m"), 0, 1 << 20)
    assert r.status == status and r.request_id == 1 and r.raw[9] == NODE_REQUEST[9]


def test_not_bolt_v1():
    for bad in (b"\x02", b"\x01\x07" + bytes(20), b"\x01\x01\x00\x09" + bytes(18)):
        with pytest.raises(rc.FrameError):
            C.decode(bad, 0, 1 << 20)


def test_with_headers_sets_entries_and_keeps_class_and_content():
    c = bolt.CODEC
    raw = bolt.encode_request(3, {"service": "com.x.S:1.0", "traceparent": "old"}, b"\x01content")
    f = c.decode(raw, 0, 1 << 20)
    g = c.with_headers(f, {"traceparent": "00-aa-bb-01", "sw8": "1-x"})
    again = c.decode(g.raw, 0, 1 << 20)
    assert again.request_id == 3 and again.kind == rc.REQUEST and len(again.raw) == len(g.raw)
    assert again.headers["traceparent"] == "00-aa-bb-01" and again.headers["sw8"] == "1-x"
    assert again.headers[":service"] == "com.x.S" and g.headers == again.headers
    assert again.raw.endswith(b"\x01content") and b"SofaRequest" in again.raw
    resp = c.decode(bolt.encode_response(3, bolt.SUCCESS, b""), 0, 1 << 20)
    with pytest.raises(rc.FrameError):
        c.with_headers(resp, {"a": "b"})
