"""Host functions: buffers (request/response body, http_call body, VM and plugin config).

Body edits follow Envoy, not the wider spec: prepend, replace-all and append only;
a mid-buffer edit is BAD_ARGUMENT, so a filter behaves the same on both hosts.
"""
from __future__ import annotations

from . import abi, memory


def _buffer(vm, kind):
    """(data, status): the buffer `kind` in the current callback."""
    if kind in (abi.BUF_REQUEST_BODY, abi.BUF_RESPONSE_BODY):
        st = vm.cur
        if st is None or st.bufs[kind] is None:
            return None, abi.NOT_FOUND
        return st.bufs[kind], abi.OK
    if kind == abi.BUF_CALL_RESPONSE_BODY:
        if vm.call_response is None:
            return None, abi.NOT_FOUND
        return vm.call_response[1], abi.OK
    if kind == abi.BUF_VM_CONFIGURATION:
        return vm.plugin.vm_config, abi.OK
    if kind == abi.BUF_PLUGIN_CONFIGURATION:
        return vm.plugin.config, abi.OK
    if 0 <= kind <= abi.BUF_FOREIGN_ARGS:
        return None, abi.NOT_FOUND
    return None, abi.BAD_ARGUMENT


def proxy_get_buffer_bytes(vm, caller, kind, start, max_size, ret_ptr, ret_size):
    data, rc = _buffer(vm, kind)
    if data is None:
        return rc
    start &= 0xFFFFFFFF
    max_size &= 0xFFFFFFFF
    if start + max_size > 0xFFFFFFFF:
        return abi.BAD_ARGUMENT
    chunk = bytes(data[start:start + max_size]) if start < len(data) else b""
    return memory.return_bytes(vm, caller, chunk, ret_ptr, ret_size)


def proxy_get_buffer_status(vm, caller, kind, ret_size, ret_flags):
    data, rc = _buffer(vm, kind)
    if data is None:
        return rc
    memory.write_u32(vm, caller, ret_size, len(data))
    memory.write_u32(vm, caller, ret_flags, 0)
    return abi.OK


def proxy_set_buffer_bytes(vm, caller, kind, start, size, val_ptr, val_len):
    if kind not in (abi.BUF_REQUEST_BODY, abi.BUF_RESPONSE_BODY):
        data, rc = _buffer(vm, kind)
        return abi.BAD_ARGUMENT if data is not None else rc
    st = vm.cur
    if st is None or st.bufs[kind] is None:
        return abi.NOT_FOUND
    buf = st.bufs[kind]
    if not isinstance(buf, bytearray):
        buf = st.bufs[kind] = bytearray(buf)
    value = memory.read(vm, caller, val_ptr, val_len)
    start &= 0xFFFFFFFF
    size &= 0xFFFFFFFF
    n = len(buf)
    if start == 0 and size == 0:
        buf[0:0] = value
    elif start == 0 and size >= n:
        buf[:] = value
    elif start >= n:
        buf += value
    else:
        return abi.BAD_ARGUMENT
    st.modified[kind] = True
    return abi.OK


def proxy_get_configuration(vm, caller, ret_ptr, ret_size):
    """ABI 0.1.0: the plugin configuration (later ABIs read buffer 7)."""
    return memory.return_bytes(vm, caller, vm.plugin.config, ret_ptr, ret_size)


FUNCS = {
    "proxy_get_configuration": ("ii", "i", proxy_get_configuration),
    "proxy_get_buffer_bytes": ("iiiii", "i", proxy_get_buffer_bytes),
    "proxy_get_buffer_status": ("iii", "i", proxy_get_buffer_status),
    "proxy_set_buffer_bytes": ("iiiii", "i", proxy_set_buffer_bytes),
}
