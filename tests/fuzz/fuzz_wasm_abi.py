"""Fuzz the proxy-wasm host's header-map and buffer functions (wasm/abi_maps.py,
wasm/abi_buffers.py, wasm/header_maps.py, and the pairs codec in wasm/abi.py),
called by a real guest (abi_probe.wat) on one stream, as a filter would.

Input, read by atheris' FuzzedDataProvider: which maps and buffers exist (a
response yet, bodies, an http_call response, the log phase), then up to 24
calls with guest pointers into bytes the input wrote (serialized pairs, keys,
values) or anywhere at all.

Properties:
- every call answers one of the ABI's statuses; no Python exception (a host
  function's exception would trap the guest) and no trap;
- what proxy_get_header_map_pairs hands the guest decodes (abi.decode_pairs) to
  the map's pairs, and proxy_get_header_map_size counts their bytes;
- pairs set on a trailer map read back as set, names lower-cased (pseudo-headers
  dropped);
- proxy_get_buffer_bytes gives the slice of the buffer asked for.

    python tests/fuzz/fuzz_wasm_abi.py -max_total_time=60 tests/fuzz/corpus/wasm_abi
"""
from __future__ import annotations

import atexit
import os
import shutil
import struct
import sys
import tempfile

import atheris

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzzing import fuzz, instrumented  # noqa: E402

with instrumented(__name__ == "__main__", "mosnx.wasm"):
    from mosnx.runtime import Headers, RequestHead, ResponseHead, StreamContext, Store
    from mosnx.runtime.registry import BuildContext, Services
    from mosnx.wasm import abi, load
    from mosnx.wasm.fastcall import GuestFunc
    from mosnx.wasm.header_maps import Unavailable, resolve
    from mosnx.wasm.vm import Stream

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "abi_probe.wat")
STATUSES = frozenset({abi.OK, abi.NOT_FOUND, abi.BAD_ARGUMENT, abi.PARSE_FAILURE, abi.INVALID_MEMORY_ACCESS,
                      abi.INTERNAL_FAILURE})
RET_PTR, RET_SIZE = 64, 68      # out-parameters
DATA, DATA_END = 1024, 32768    # where the input's bytes go; the heap starts at DATA_END
NAMES = [b":path", b":method", b":authority", b":scheme", b":status", b"host", b"x-a", b"X-A", b"content-length",
         b":unknown", b""]

if "MOSNX_CACHE_DIR" not in os.environ:      # compiled modules go to a folder of our own
    os.environ["MOSNX_CACHE_DIR"] = tempfile.mkdtemp(prefix="mosnx-fuzz-wasm-")
    atexit.register(shutil.rmtree, os.environ["MOSNX_CACHE_DIR"], True)
_filter = load("abi-probe", {"module": PROBE}, BuildContext(config=None, listener=None, clusters=set(), filters={},
                                                              services=Services(stats=Store())), base_dir="/")
VM = _filter.vm
# top-level calls, each bounded by the VM's watchdog as the proxy's calls are
CALL = {name[2:]: GuestFunc(VM.store, f, VM.watch).top for name, f in VM.exports.items() if name.startswith("p_")}
RESET = GuestFunc(VM.store, VM.exports["reset_heap"], VM.watch).top


class Guest:
    def __init__(self):
        self.at = DATA

    def put(self, data: bytes) -> tuple[int, int]:
        if self.at + len(data) > DATA_END:
            self.at = DATA
        ptr = self.at
        VM.memory.write(VM.store, data, ptr)
        self.at += len(data)
        return ptr, len(data)

    @staticmethod
    def read(ptr: int, size: int) -> bytes:
        return bytes(VM.memory.read(VM.store, ptr, ptr + size)) if size else b""

    def u32(self, ptr: int) -> int:
        return struct.unpack("<I", self.read(ptr, 4))[0]

    def returned(self) -> bytes:
        return self.read(self.u32(RET_PTR), self.u32(RET_SIZE))


def _pointer(fdp, g: Guest, data: bytes) -> tuple[int, int]:
    """(ptr, len) of `data` written to the guest, or now and then any pointer and length."""
    if fdp.ConsumeIntInRange(0, 15):
        return g.put(data)
    return fdp.ConsumeIntInRange(-2 ** 31, 2 ** 31 - 1), fdp.ConsumeIntInRange(-2 ** 31, 2 ** 31 - 1)


def _key(fdp) -> bytes:
    return fdp.PickValueInList(NAMES) if fdp.ConsumeBool() else fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 20))


def _pairs_bytes(fdp) -> bytes:
    if fdp.ConsumeBool():
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))      # anything at all
    pairs = [(_key(fdp), fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 20))) for _ in range(fdp.ConsumeIntInRange(0, 6))]
    return abi.encode_pairs(pairs)


def _pairs_now(kind: int, st: Stream):
    try:
        return resolve(kind, st.ctx, VM.call_response).pairs()
    except Unavailable:
        return None


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    RESET()
    ctx = StreamContext(RequestHead("GET", "/x", Headers.from_pairs([("host", "h"), ("x-a", "1")]),
                                    authority="a" if fdp.ConsumeBool() else None))
    if fdp.ConsumeBool():
        ctx.response = ResponseHead(200, Headers.from_pairs([("content-length", "2")]))
    st = Stream(1, ctx, VM)
    st.bufs = [bytearray(b"request body") if fdp.ConsumeBool() else None,
               b"response body" if fdp.ConsumeBool() else None]
    st.in_log = fdp.ConsumeBool()
    VM.call_response = ([(b":status", b"200"), (b"x", b"y")], b"call body", [(b"t", b"1")]) \
        if fdp.ConsumeBool() else None
    VM.cur = st
    g = Guest()
    try:
        for _ in range(fdp.ConsumeIntInRange(1, 24)):
            op = fdp.ConsumeIntInRange(0, 9)
            kind = fdp.ConsumeIntInRange(-1, 8)
            if op == 0:
                raw = _pairs_bytes(fdp)
                ptr, n = _pointer(fdp, g, raw)
                rc = CALL["set_header_map_pairs"](kind, ptr, n)
                if rc == abi.OK and kind in (abi.MAP_REQUEST_TRAILERS, abi.MAP_RESPONSE_TRAILERS):
                    # (a pseudo-header has no place in trailers: set_all drops it)
                    want = [(k.lower(), v) for k, v in abi.decode_pairs(raw) if k[:1] != b":"]
                    assert _pairs_now(kind, st) == want, "trailers set are not the trailers read"
            elif op == 1:
                rc = CALL["get_header_map_pairs"](kind, RET_PTR, RET_SIZE)
                if rc == abi.OK:
                    assert abi.decode_pairs(g.returned()) == list(_pairs_now(kind, st)), "pairs round trip"
            elif op == 2:
                rc = CALL["get_header_map_size"](kind, RET_PTR)
                if rc == abi.OK:
                    assert g.u32(RET_PTR) == sum(len(k) + len(v) for k, v in _pairs_now(kind, st))
            elif op in (3, 4, 5, 6):
                kp, kn = _pointer(fdp, g, _key(fdp))
                if op == 3:
                    rc = CALL["get_header_map_value"](kind, kp, kn, RET_PTR, RET_SIZE)
                elif op == 6:
                    rc = CALL["remove_header_map_value"](kind, kp, kn)
                else:
                    vp, vn = _pointer(fdp, g, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 30)))
                    rc = CALL["add_header_map_value" if op == 4 else "replace_header_map_value"](kind, kp, kn, vp, vn)
            elif op == 7:
                start, size = fdp.ConsumeIntInRange(-2 ** 31, 2 ** 31 - 1), fdp.ConsumeIntInRange(0, 64)
                if fdp.ConsumeBool():
                    start = fdp.ConsumeIntInRange(0, 20)
                before = bytes(st.bufs[kind]) if kind in (0, 1) and st.bufs[kind] is not None else None
                rc = CALL["get_buffer_bytes"](kind, start, size, RET_PTR, RET_SIZE)
                if rc == abi.OK and before is not None:
                    assert g.returned() == before[start:start + size], "buffer slice"
            elif op == 8:
                vp, vn = _pointer(fdp, g, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 30)))
                rc = CALL["set_buffer_bytes"](kind, fdp.ConsumeIntInRange(0, 20), fdp.ConsumeIntInRange(0, 20), vp, vn)
            else:
                rc = CALL["get_buffer_status"](kind, RET_PTR, RET_SIZE)
            assert rc in STATUSES, f"op {op} on map/buffer {kind}: status {rc}"
    finally:
        VM.cur = None
        VM.call_response = None


if __name__ == "__main__":
    fuzz(test_one_input)
