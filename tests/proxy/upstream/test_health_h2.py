"""The HTTP/2 health-check exchange and the gRPC health messages, fed byte strings:
the request a check sends, and how answers are judged."""
from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import pytest

from mosnx.proxy.upstream.health_h2 import (Exchange, Response, get_request, grpc_request, grpc_serving,
                                            health_check_request, serving_status)


def frame(msg: bytes, compressed: int = 0) -> bytes:
    return bytes([compressed]) + len(msg).to_bytes(4, "big") + msg


def test_health_check_request_encodes_the_service_name():
    assert health_check_request("") == frame(b"")
    assert health_check_request("a.B") == frame(b"\x0a\x03a.B")
    long = "s" * 300                  # a length that takes two varint bytes
    assert health_check_request(long) == frame(b"\x0a\xac\x02" + long.encode())


def test_serving_status_reads_field_one_and_skips_others():
    assert serving_status(b"") == 0
    assert serving_status(b"\x08\x01") == 1
    assert serving_status(b"\x08\x02") == 2
    # unknown fields of every wire type before it: varint, 64-bit, bytes, 32-bit
    other = b"\x10\x96\x01" + b"\x19" + bytes(8) + b"\x22\x02hi" + b"\x2d" + bytes(4)
    assert serving_status(other + b"\x08\x01") == 1
    for broken in (b"\x08", b"\x08\x80", b"\x22\x05hi", b"\x0b"):
        with pytest.raises(ValueError):
            serving_status(broken)


def answer(status=200, grpc_status=b"0", body=frame(b"\x08\x01"), trailers=True) -> Response:
    r = Response()
    r.status = status
    r.headers = {b":status": str(status).encode(), b"content-type": b"application/grpc"}
    r.body += body
    meta = {b"grpc-status": grpc_status} if grpc_status is not None else {}
    if trailers:
        r.trailers = meta
    else:
        r.headers.update(meta)
    r.ended = True
    return r


@pytest.mark.parametrize("r, ok", [
    (answer(), True),
    (answer(body=frame(b"\x08\x02")), False),                       # NOT_SERVING
    (answer(body=frame(b"")), False),                               # UNKNOWN
    (answer(grpc_status=b"5", body=b""), False),                    # NOT_FOUND
    (answer(grpc_status=b"5", body=b"", trailers=False), False),    # trailers-only
    (answer(grpc_status=None), False),
    (answer(status=503), False),
    (answer(body=frame(b"\x08\x01", compressed=1)), False),
    (answer(body=frame(b"\x08\x01")[:-1]), False),
    (answer(body=frame(b"\x08")), False),
])
def test_grpc_serving_needs_status_zero_and_serving(r, ok):
    assert grpc_serving(r) is ok


def _server():
    return h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))


def test_exchange_sends_one_request_and_reads_the_answer():
    x = Exchange(grpc_request("health.svc", b"http"), health_check_request("web"))
    srv = _server()
    srv.initiate_connection()
    events = srv.receive_data(x.start())
    req = next(e for e in events if isinstance(e, h2.events.RequestReceived))
    data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert dict(req.headers)[b":path"] == b"/grpc.health.v1.Health/Check"
    assert dict(req.headers)[b":authority"] == b"health.svc"
    assert data == frame(b"\x0a\x03web")
    assert any(isinstance(e, h2.events.StreamEnded) for e in events)
    srv.send_headers(1, [(b":status", b"200"), (b"content-type", b"application/grpc")])
    srv.send_data(1, frame(b"\x08\x01"))
    assert not x.done(True) and (x.feed(srv.data_to_send()) or True) and x.done(False)
    srv.send_headers(1, [(b"grpc-status", b"0")], end_stream=True)
    x.feed(srv.data_to_send())
    assert x.done(True) and grpc_serving(x.response)
    assert x.finish(), "a GOAWAY to say goodbye"


def test_exchange_head_only_and_broken_peers():
    x = Exchange(get_request("/h", "web", b"http"))
    srv = _server()
    srv.initiate_connection()
    srv.receive_data(x.start())
    srv.send_headers(1, [(b":status", b"503")])
    x.feed(srv.data_to_send())
    assert x.done(False) and not x.done(True) and x.response.status == 503
    with pytest.raises(ConnectionError):
        z = Exchange(get_request("/h", "web", b"http"))
        z.start()
        z.feed(b"\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00")     # DATA on stream 0 before SETTINGS
    y = Exchange(get_request("/h", "web", b"http"))
    refuse = _server()
    refuse.initiate_connection()
    refuse.receive_data(y.start())
    refuse.close_connection(last_stream_id=0)
    with pytest.raises(ConnectionError):
        y.feed(refuse.data_to_send())
