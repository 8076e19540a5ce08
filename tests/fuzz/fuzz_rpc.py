"""Fuzz the RPC codecs (proxy/rpc: bolt.py, dubbo.py, hessian.py through them).

Input: byte 0 picks the codec (even: bolt, odd: dubbo); byte 1 is where the rest is
split in two reads; the rest is what a peer sent. The bytes go through the decode
loop of a connection (frames taken from the front of a growing buffer, at an
offset). Only FrameError may leave decode() or a frame's header map; every frame
is its own bytes, rewrites its id and back to the same bytes, and a request's local
reply decodes as a response to its id.

    python tests/fuzz/fuzz_rpc.py -max_total_time=60 tests/fuzz/corpus/rpc
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzzing import fuzz, instrumented  # noqa: E402

with instrumented(__name__ == "__main__", "mosnx"):
    from mosnx.proxy.rpc import codec as rc

NAMES = ("bolt", "dubbo")
LIMIT = 1 << 16


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    codec = rc.CODECS[NAMES[data[0] & 1]]
    body = data[2:]
    cut = data[1] % (len(body) + 1)
    buf = bytearray()
    for part in (body[:cut], body[cut:]):
        buf += part
        pos = 0
        while True:
            try:
                f = codec.decode(buf, pos, LIMIT)
            except rc.FrameError:
                return                     # the connection would close here
            if f is None:
                break
            assert f.raw == bytes(buf[pos:pos + len(f.raw)]) and len(f.raw) > 0
            pos += len(f.raw)
            _check(codec, f)
        del buf[:pos]


def _check(codec: rc.Codec, f: rc.Frame) -> None:
    try:
        h = f.headers
        assert all(type(k) is str and type(v) is str for k, v in h.items())
    except rc.FrameError:
        pass
    up = codec.with_id(f, 12345)
    g = codec.decode(up, 0, LIMIT)
    assert g is not None and g.request_id == 12345 and codec.with_id(g, f.request_id) == f.raw
    if f.kind in (rc.REQUEST, rc.ONEWAY):
        r = codec.decode(codec.local_reply(f, rc.TIMEOUT, "mosnx: timeout"), 0, LIMIT)
        assert r is not None and r.kind == rc.RESPONSE and r.request_id == f.request_id
    elif f.kind == rc.HEARTBEAT:
        r = codec.decode(codec.heartbeat_reply(f), 0, LIMIT)
        assert r is not None and r.kind == rc.HEARTBEAT_ACK and r.request_id == f.request_id


if __name__ == "__main__":
    fuzz(test_one_input)
