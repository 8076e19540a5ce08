"""Host functions called with chosen arguments through tests/wasm/probe.wat, which
re-exports each import as p_<name>: status codes, out-parameters, edge cases."""
from __future__ import annotations

import os
import struct
import time

import pytest

from mosnx.runtime import Headers, RequestHead, ResponseHead, StreamContext, Store
from mosnx.runtime.registry import BuildContext, Services
from mosnx.wasm import abi, load
from mosnx.wasm.fastcall import GuestFunc

PROBE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.wat")
RET_PTR, RET_SIZE, RET_CAS = 64, 68, 72


class Probe:
    def __init__(self, **options):
        self.stats = Store()
        bctx = BuildContext(config=None, listener=None, clusters=set(), filters={},
                            services=Services(stats=self.stats))
        self.filter = load("probe", {"module": PROBE, **options}, bctx, base_dir="/")
        self.vm = self.filter.vm
        self.funcs = {}
        self.at = 1024
        self.ctx = StreamContext(RequestHead("GET", "/x", Headers.from_pairs([("host", "h"), ("x-a", "1")])))
        self.st = self.vm.new_stream(self.ctx)
        self.vm.cur = self.st

    def put(self, data: bytes) -> tuple[int, int]:
        ptr = self.at
        self.vm.memory.write(self.vm.store, data, ptr)
        self.at += len(data) + 8
        return ptr, len(data)

    def read(self, ptr: int, size: int) -> bytes:
        return bytes(self.vm.memory.read(self.vm.store, ptr, ptr + size))

    def u32(self, ptr: int) -> int:
        return struct.unpack("<I", self.read(ptr, 4))[0]

    def returned(self) -> bytes:
        return self.read(self.u32(RET_PTR), self.u32(RET_SIZE))

    def heap(self) -> int:
        return self.vm.exports["malloc"](self.vm.store, 0)

    def __call__(self, name: str, *args) -> int:
        f = self.funcs.get(name)
        if f is None:
            f = self.funcs[name] = GuestFunc(self.vm.store, self.vm.exports["p_" + name])
        return f(*args)


@pytest.fixture
def p():
    return Probe()


def test_get_buffer_bytes_clamps_and_returns_empty_without_allocating(p):
    p.st.bufs[abi.BUF_RESPONSE_BODY] = bytearray(b"hello")
    assert p("get_buffer_bytes", 1, 1, 3, RET_PTR, RET_SIZE) == abi.OK
    assert p.returned() == b"ell"
    assert p("get_buffer_bytes", 1, 3, 100, RET_PTR, RET_SIZE) == abi.OK
    assert p.returned() == b"lo"
    before = p.heap()
    assert p("get_buffer_bytes", 1, 9, 5, RET_PTR, RET_SIZE) == abi.OK
    assert (p.u32(RET_PTR), p.u32(RET_SIZE)) == (0, 0)
    assert p.heap() == before
    assert p("get_buffer_bytes", abi.BUF_REQUEST_BODY, 0, 5, RET_PTR, RET_SIZE) == abi.NOT_FOUND
    assert p("get_buffer_bytes", 99, 0, 5, RET_PTR, RET_SIZE) == abi.BAD_ARGUMENT


def test_set_buffer_bytes_follows_envoy(p):
    buf = p.st.bufs[abi.BUF_REQUEST_BODY] = bytearray(b"body")
    x, n = p.put(b"<")
    assert p("set_buffer_bytes", 0, 0, 0, x, n) == abi.OK                 # prepend
    y, m = p.put(b">")
    assert p("set_buffer_bytes", 0, 0xFFFFFFFF, 0, y, m) == abi.OK        # append
    assert bytes(buf) == b"<body>"
    assert p("set_buffer_bytes", 0, 2, 1, x, n) == abi.BAD_ARGUMENT       # mid-buffer edit
    z, k = p.put(b"new")
    assert p("set_buffer_bytes", 0, 0, 100, z, k) == abi.OK               # replace all
    assert bytes(buf) == b"new" and p.st.modified[0]
    assert p("set_buffer_bytes", abi.BUF_PLUGIN_CONFIGURATION, 0, 0, z, k) == abi.BAD_ARGUMENT


def test_bad_guest_pointers_are_invalid_memory_access(p):
    key, n = p.put(b"k")
    assert p("set_property", key, n, 0x7FFFFFF0, 100) == abi.INVALID_MEMORY_ACCESS
    p.st.bufs[1] = bytearray(b"x")
    assert p("get_buffer_bytes", 1, 0, 1, 0x7FFFFFF0, RET_SIZE) == abi.INVALID_MEMORY_ACCESS


def test_memory_grown_after_start_is_reachable_at_the_same_address(p):
    from mosnx.wasm.fastcall import memory_base
    base = memory_base(p.vm.ctx, p.vm.mem_ref)[0]
    end = p.vm.mem_size                         # 2 pages, as declared
    key, n = p.put(b"k")
    assert p("set_property", key, n, end + 16, 4) == abi.INVALID_MEMORY_ACCESS
    p.vm.memory.grow(p.vm.store, 1)             # as a guest's memory.grow would
    p.vm.memory.write(p.vm.store, b"grow", end + 16)
    assert p("set_property", key, n, end + 16, 4) == abi.OK
    assert p.vm.mem_size == end + 65536
    assert memory_base(p.vm.ctx, p.vm.mem_ref)[0] == base
    assert p("get_property", key, n, RET_PTR, RET_SIZE) == abi.OK
    assert p.returned() == b"grow"


def test_header_edits_reach_memory_grown_after_start(p):
    end = p.vm.mem_size
    p.vm.memory.grow(p.vm.store, 1)
    p.vm.memory.write(p.vm.store, b"x-grown" + b"yes", end + 16)
    assert p("add_header_map_value", 0, end + 16, 7, end + 23, 3) == abi.OK
    assert p("replace_header_map_value", 0, end + 16, 7, end + 24, 2) == abi.OK
    assert p.ctx.request.headers.get_all("x-grown") == ["es"]
    assert p("get_header_map_value", 0, end + 16, 7, RET_PTR, RET_SIZE) == abi.OK
    assert p.returned() == b"es"
    assert p("add_header_map_value", 0, end + 65536, 4, end + 16, 3) == abi.INVALID_MEMORY_ACCESS
    assert p("add_header_map_value", 0, -16, 4, end + 16, 3) == abi.INVALID_MEMORY_ACCESS


def test_header_values(p):
    k, n = p.put(b"X-A")
    assert p("get_header_map_value", 0, k, n, RET_PTR, RET_SIZE) == abi.OK
    assert p.returned() == b"1"
    k2, n2 = p.put(b"missing")
    assert p("get_header_map_value", 0, k2, n2, RET_PTR, RET_SIZE) == abi.NOT_FOUND
    assert p("get_header_map_value", abi.MAP_RESPONSE_HEADERS, k, n, RET_PTR, RET_SIZE) == abi.BAD_ARGUMENT
    assert p("get_header_map_value", 42, k, n, RET_PTR, RET_SIZE) == abi.BAD_ARGUMENT
    pairs, size = p.put(abi.encode_pairs([(b":path", b"/set"), (b"x-b", b"2")]))
    assert p("set_header_map_pairs", 0, pairs, size) == abi.OK
    assert p.ctx.request.path == "/set" and p.ctx.request.headers.get("x-b") == "2"
    assert p("get_header_map_pairs", 0, RET_PTR, RET_SIZE) == abi.OK
    assert (b"x-b", b"2") in abi.decode_pairs(p.returned())



def test_add_header_value(p):
    k, n = p.put(b"X-A")
    v, m = p.put(b"2")
    assert p("add_header_map_value", 0, k, n, v, m) == abi.OK          # a second value, key lowercased
    assert p.ctx.request.headers.items[-2:] == [(b"x-a", b"1"), (b"x-a", b"2")]
    path, pn = p.put(b":path")
    np, nn = p.put(b"/added")
    assert p("add_header_map_value", 0, path, pn, np, nn) == abi.OK    # a pseudo-header sets the head
    assert p.ctx.request.path == "/added" and not p.ctx.request.headers.has(b":path")
    assert p("add_header_map_value", abi.MAP_RESPONSE_HEADERS, k, n, v, m) == abi.BAD_ARGUMENT   # no response yet
    assert p("add_header_map_value", 0, 0x7FFFFFF0, 100, v, m) == abi.INVALID_MEMORY_ACCESS
    p.ctx.response = ResponseHead(200, Headers.from_pairs([("content-length", "0")]))
    assert p("add_header_map_value", abi.MAP_RESPONSE_HEADERS, k, n, v, m) == abi.OK
    assert p.ctx.response.headers.getb(b"x-a") == b"2"

def test_properties_round_trip_and_empty_values(p):
    k, n = p.put(b"request\0path")
    assert p("get_property", k, n, RET_PTR, RET_SIZE) == abi.OK and p.returned() == b"/x"
    mine, m = p.put(b"my\0prop")
    v, vn = p.put(b"value")
    assert p("set_property", mine, m, v, vn) == abi.OK
    assert p("get_property", mine, m, RET_PTR, RET_SIZE) == abi.OK and p.returned() == b"value"
    assert p("set_property", mine, m, v, 0) == abi.OK
    assert p("get_property", mine, m, RET_PTR, RET_SIZE) == abi.OK
    assert (p.u32(RET_PTR), p.u32(RET_SIZE)) == (0, 0)
    none, nn = p.put(b"no\0such")
    assert p("get_property", none, nn, RET_PTR, RET_SIZE) == abi.NOT_FOUND


def test_metrics(p):
    name, n = p.put(b"hits")
    assert p("define_metric", abi.METRIC_COUNTER, name, n, RET_PTR) == abi.OK
    cid = p.u32(RET_PTR)
    assert p("increment_metric", cid, 0) == abi.BAD_ARGUMENT
    assert p("increment_metric", cid, 5) == abi.OK
    assert p("get_metric", cid, RET_PTR) == abi.OK and p.u32(RET_PTR) == 5
    assert p.stats.counters["wasm.probe.hits"].value == 5
    g, gn = p.put(b"level")
    assert p("define_metric", abi.METRIC_GAUGE, g, gn, RET_PTR) == abi.OK
    gid = p.u32(RET_PTR)
    assert p("record_metric", gid, 10) == abi.OK and p("increment_metric", gid, -3) == abi.OK
    assert p.stats.gauges["wasm.probe.level"].value == 7
    h, hn = p.put(b"sizes")
    assert p("define_metric", abi.METRIC_HISTOGRAM, h, hn, RET_PTR) == abi.OK
    hid = p.u32(RET_PTR)
    assert p("record_metric", hid, 42) == abi.OK
    assert p("get_metric", hid, RET_PTR) == abi.BAD_ARGUMENT
    assert p.stats.histograms["wasm.probe.sizes"].count == 1
    assert p("increment_metric", 999, 1) == abi.NOT_FOUND
    assert p("define_metric", 7, name, n, RET_PTR) == abi.BAD_ARGUMENT


def test_shared_data_cas(p):
    k, n = p.put(b"key")
    assert p("get_shared_data", k, n, RET_PTR, RET_SIZE, RET_CAS) == abi.NOT_FOUND
    v1, l1 = p.put(b"one")
    assert p("set_shared_data", k, n, v1, l1, 0) == abi.OK
    assert p("get_shared_data", k, n, RET_PTR, RET_SIZE, RET_CAS) == abi.OK
    assert p.returned() == b"one"
    cas = p.u32(RET_CAS)
    v2, l2 = p.put(b"two")
    assert p("set_shared_data", k, n, v2, l2, cas) == abi.OK
    assert p("set_shared_data", k, n, v1, l1, cas) == abi.CAS_MISMATCH     # stale
    assert p("get_shared_data", k, n, RET_PTR, RET_SIZE, RET_CAS) == abi.OK and p.returned() == b"two"


def test_shared_queues(p):
    q, n = p.put(b"jobs")
    assert p("register_shared_queue", q, n, RET_PTR) == abi.OK
    qid = p.u32(RET_PTR)
    vm_id, vn = p.put(b"")
    assert p("resolve_shared_queue", vm_id, 0, q, n, RET_PTR) == abi.OK and p.u32(RET_PTR) == qid
    assert p("dequeue_shared_queue", qid, RET_PTR, RET_SIZE) == abi.EMPTY
    v, vl = p.put(b"job-1")
    assert p("enqueue_shared_queue", qid, v, vl) == abi.OK
    assert p("dequeue_shared_queue", qid, RET_PTR, RET_SIZE) == abi.OK and p.returned() == b"job-1"
    assert p("enqueue_shared_queue", 999, v, vl) == abi.NOT_FOUND


def test_local_response(p):
    d, dn = p.put(b"not allowed")
    b, bn = p.put(b"nope")
    hs, hn = p.put(abi.encode_pairs([(b"X-Why", b"policy")]))
    assert p("send_local_response", 42, d, dn, b, bn, hs, hn, -1) == abi.BAD_ARGUMENT
    assert p("send_local_response", 403, d, dn, b, bn, hs, hn, 7) == abi.OK
    r = p.st.reply
    assert (r.status, r.body, r.detail) == (403, b"nope", "not_allowed")
    assert ("x-why", "policy") in r.headers and ("grpc-status", "7") in r.headers
    assert ("content-type", "text/plain") in r.headers


def test_misc(p):
    assert p("grpc_call", *([0] * 12)) == abi.UNIMPLEMENTED
    assert p("set_effective_context", 12345) == abi.BAD_ARGUMENT
    assert p("set_effective_context", 1) == abi.OK and p.vm.cur is None
    p.vm.cur = p.st
    assert p("continue_stream", 7) == abi.BAD_ARGUMENT
    assert p("continue_stream", abi.STREAM_UPSTREAM) == abi.UNIMPLEMENTED
    assert p("continue_stream", abi.STREAM_REQUEST) == abi.OK and p.st.continued
    assert p("get_current_time_nanoseconds", RET_PTR) == abi.OK
    now = struct.unpack("<Q", p.read(RET_PTR, 8))[0]
    assert abs(now / 1e9 - time.time()) < 5
    assert p("get_log_level", RET_PTR) == abi.OK and 0 <= p.u32(RET_PTR) <= 5
    msg, mn = p.put(b"hello")
    assert p("log", 9, msg, mn) == abi.BAD_ARGUMENT
    assert p("log", 2, msg, mn) == abi.OK
