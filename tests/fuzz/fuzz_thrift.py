"""Fuzz the Thrift codec (proxy/rpc/thrift.py, thrift_wire.py's schema-less skipping).

Input: byte 0 picks the size limit (its low 2 bits: 64 bytes, 512, 4 KiB, 64 KiB) and
whether the listener pins framed binary (bit 2); byte 1 is where the rest is split
in two reads; the rest is what a peer sent. The bytes go through the decode loop of
a connection (frames taken from the front of a growing buffer, at an offset). Only
FrameError may leave decode() or a frame's header map; a frame is never above the
limit, is its own bytes, rewrites its seqid and back to the same bytes (a compact
seqid as its shortest varint), and a call's
local reply decodes as an EXCEPTION to its seqid in its own encoding.

    python tests/fuzz/fuzz_thrift.py -max_total_time=60 tests/fuzz/corpus/thrift
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzzing import fuzz, instrumented  # noqa: E402

with instrumented(__name__ == "__main__", "mosnx"):
    from mosnx.proxy.rpc import codec as rc, thrift
    from mosnx.proxy.rpc.thrift_wire import COMPACT
    from mosnx.runtime.config.rpc import ThriftOptions

LIMITS = (64, 512, 4096, 1 << 16)
PINNED = thrift.CODEC.for_listener({"thrift": ThriftOptions("framed", "binary")})


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    limit = LIMITS[data[0] & 3]
    codec = PINNED if data[0] & 4 else thrift.CODEC
    body = data[2:]
    cut = data[1] % (len(body) + 1)
    buf = bytearray()
    for part in (body[:cut], body[cut:]):
        buf += part
        pos = 0
        while True:
            try:
                f = codec.decode(buf, pos, limit)
            except rc.FrameError:
                return                     # the connection would close here
            if f is None:
                break
            assert f.raw == bytes(buf[pos:pos + len(f.raw)]) and 0 < len(f.raw) <= limit
            pos += len(f.raw)
            _check(codec, f)
        del buf[:pos]


def _check(codec: rc.Codec, f: rc.Frame) -> None:
    try:
        h = f.headers
        assert all(type(k) is str and type(v) is str for k, v in h.items()) and rc.METHOD in h
    except rc.FrameError:
        pass
    up = codec.with_id(f, 2 ** 31 - 1)
    g = thrift.CODEC.decode(up, 0, 1 << 30)
    assert g is not None and g.raw == up and g.request_id == 2 ** 31 - 1 and g.meta[:3] == f.meta[:3]
    back = codec.with_id(g, f.request_id)
    # equal bytes, but for a compact seqid written as a longer varint than it needs
    # (readers take it; the rewrite writes the shortest)
    assert back == f.raw or (f.meta[1] == COMPACT and back == codec.with_id(f, f.request_id))
    if f.kind in (rc.REQUEST, rc.ONEWAY):
        r = thrift.CODEC.decode(codec.local_reply(f, rc.TIMEOUT, "mosnx: timeout"), 0, 1 << 30)
        assert r is not None and r.kind == rc.RESPONSE and r.request_id == f.request_id
        assert r.meta[:2] == f.meta[:2] and not codec.is_success(r)


if __name__ == "__main__":
    fuzz(test_one_input)
