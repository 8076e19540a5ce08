"""Host functions: out-of-band HTTP calls; gRPC and foreign functions are UNIMPLEMENTED."""
from __future__ import annotations

from . import abi, memory

_REQUIRED = (b":method", b":path", b":authority")


def proxy_http_call(vm, caller, up_ptr, up_len, hdr_ptr, hdr_len, body_ptr, body_len,
                    trl_ptr, trl_len, timeout_ms, ret_id):
    cluster = memory.read(vm, caller, up_ptr, up_len).decode("utf-8", "replace")
    try:
        headers = abi.decode_pairs(memory.read(vm, caller, hdr_ptr, hdr_len))
        trailers = abi.decode_pairs(memory.read(vm, caller, trl_ptr, trl_len))
    except abi.PairsError:
        return abi.PARSE_FAILURE
    names = {k.lower() for k, _ in headers}
    if any(n not in names for n in _REQUIRED):
        return abi.BAD_ARGUMENT
    body = memory.read(vm, caller, body_ptr, body_len)
    rc, call_id = vm.start_http_call(cluster, headers, body, trailers, (timeout_ms & 0xFFFFFFFF) / 1000.0)
    if rc == abi.OK:
        memory.write_u32(vm, caller, ret_id, call_id)
    return rc


def _unimplemented(vm, caller, *args):
    return abi.UNIMPLEMENTED


FUNCS = {
    "proxy_http_call": ("iiiiiiiiii", "i", proxy_http_call),
    "proxy_grpc_call": ("iiiiiiiiiiii", "i", _unimplemented),
    "proxy_grpc_stream": ("iiiiiiiii", "i", _unimplemented),
    "proxy_grpc_send": ("iiii", "i", _unimplemented),
    "proxy_grpc_cancel": ("i", "i", _unimplemented),
    "proxy_grpc_close": ("i", "i", _unimplemented),
    "proxy_call_foreign_function": ("iiiiii", "i", _unimplemented),
}
