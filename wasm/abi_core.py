"""Host functions: logging, time, timers, contexts, stream control, local replies.

Each function takes (vm, caller, *wasm args) and returns a proxy_status_t; the
table FUNCS gives its wasm signature ("i" i32, "I" i64 params; result "i" or "").
"""
from __future__ import annotations

import logging
import time

from . import abi, memory
from .log_gate import _PY_LEVELS, min_level

log = logging.getLogger("mosnx.wasm")


def proxy_log(vm, caller, level, ptr, size):
    if not 0 <= level <= 5:
        return abi.BAD_ARGUMENT
    py = _PY_LEVELS[level]
    if log.isEnabledFor(py):
        msg = memory.read(vm, caller, ptr, size).decode("utf-8", "replace")
        log.log(py, "wasm log %s %s: %s", vm.plugin.name, vm.plugin.root_id, msg)
    return abi.OK


def proxy_get_log_level(vm, caller, ret_ptr):
    memory.write_u32(vm, caller, ret_ptr, min(min_level(log), 5))
    return abi.OK


def proxy_get_current_time_nanoseconds(vm, caller, ret_ptr):
    memory.write_u64(vm, caller, ret_ptr, time.time_ns())
    return abi.OK


def proxy_set_tick_period_milliseconds(vm, caller, period):
    vm.set_tick(period & 0xFFFFFFFF)
    return abi.OK


def proxy_set_effective_context(vm, caller, context_id):
    return vm.set_effective(context_id & 0xFFFFFFFF)


def proxy_done(vm, caller):
    return vm.context_done()


def proxy_continue_stream(vm, caller, stream_type):
    if stream_type in (abi.STREAM_REQUEST, abi.STREAM_RESPONSE):
        st = vm.cur
        if st is None:
            return abi.NOT_FOUND
        st.resume(None)
        return abi.OK
    if stream_type in (abi.STREAM_DOWNSTREAM, abi.STREAM_UPSTREAM):
        return abi.UNIMPLEMENTED
    return abi.BAD_ARGUMENT


def proxy_continue_request(vm, caller):
    return proxy_continue_stream(vm, caller, abi.STREAM_REQUEST)


def proxy_continue_response(vm, caller):
    return proxy_continue_stream(vm, caller, abi.STREAM_RESPONSE)


def proxy_close_stream(vm, caller, stream_type):
    if stream_type not in (abi.STREAM_REQUEST, abi.STREAM_RESPONSE, abi.STREAM_DOWNSTREAM,
                           abi.STREAM_UPSTREAM):
        return abi.BAD_ARGUMENT
    st = vm.cur
    if st is None:
        return abi.NOT_FOUND
    # mosnx cannot reset a stream from a filter; the closest is ending it here
    st.reply_with(vm.local_reply(503, b"", [], b"wasm_close_stream"))
    return abi.OK


def proxy_send_local_response(vm, caller, status, det_ptr, det_len, body_ptr, body_len,
                              hdr_ptr, hdr_len, grpc_status):
    st = vm.cur
    if st is None:
        return abi.NOT_FOUND
    details = memory.read(vm, caller, det_ptr, det_len)
    body = memory.read(vm, caller, body_ptr, body_len)
    try:
        pairs = abi.decode_pairs(memory.read(vm, caller, hdr_ptr, hdr_len))
    except abi.PairsError:
        pairs = []
    if not 100 <= (status & 0xFFFFFFFF) <= 599:
        return abi.BAD_ARGUMENT
    if 0 <= grpc_status <= 16:
        pairs.append((b"grpc-status", str(grpc_status).encode()))
    st.reply_with(vm.local_reply(status, body, pairs, details))
    return abi.OK


def proxy_clear_route_cache(vm, caller):
    return abi.OK       # mosnx routes after the request phase, so edits are always seen


def proxy_get_status(vm, caller, code_ptr, msg_ptr_ptr, msg_size_ptr):
    status = vm.call_status
    if status is None:
        return abi.NOT_FOUND
    memory.write_u32(vm, caller, code_ptr, status[0])
    return memory.return_bytes(vm, caller, status[1], msg_ptr_ptr, msg_size_ptr)


FUNCS = {
    "proxy_log": ("iii", "i", proxy_log),
    "proxy_get_log_level": ("i", "i", proxy_get_log_level),
    "proxy_get_current_time_nanoseconds": ("i", "i", proxy_get_current_time_nanoseconds),
    "proxy_set_tick_period_milliseconds": ("i", "i", proxy_set_tick_period_milliseconds),
    "proxy_set_effective_context": ("i", "i", proxy_set_effective_context),
    "proxy_done": ("", "i", proxy_done),
    "proxy_continue_stream": ("i", "i", proxy_continue_stream),
    "proxy_continue_request": ("", "i", proxy_continue_request),
    "proxy_continue_response": ("", "i", proxy_continue_response),
    "proxy_close_stream": ("i", "i", proxy_close_stream),
    "proxy_send_local_response": ("iiiiiiii", "i", proxy_send_local_response),
    "proxy_clear_route_cache": ("", "i", proxy_clear_route_cache),
    "proxy_get_status": ("iii", "i", proxy_get_status),
}
