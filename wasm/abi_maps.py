"""Host functions: HTTP header and trailer maps (get, get all, add, replace, remove, set all)."""
from __future__ import annotations

from typing import Callable

from . import abi, memory
from .header_maps import Unavailable, resolve

_REQ, _RESP = abi.MAP_REQUEST_HEADERS, abi.MAP_RESPONSE_HEADERS


def _map(vm, kind):
    if not 0 <= kind <= 7:
        return None, abi.BAD_ARGUMENT
    st = vm.cur
    try:
        return resolve(kind, st.ctx if st is not None else None, vm.call_response), abi.OK
    except Unavailable:
        return None, abi.NOT_FOUND if (st is not None and st.in_log) else abi.BAD_ARGUMENT


def proxy_get_header_map_pairs(vm, caller, kind, ret_ptr, ret_size):
    m, rc = _map(vm, kind)
    if m is None:
        return rc
    return memory.return_bytes(vm, caller, abi.encode_pairs(m.pairs()), ret_ptr, ret_size)


def proxy_set_header_map_pairs(vm, caller, kind, ptr, size):
    m, rc = _map(vm, kind)
    if m is None:
        return rc
    if m.fixed is not None:
        return abi.BAD_ARGUMENT
    try:
        pairs = abi.decode_pairs(memory.read(vm, caller, ptr, size))
    except abi.PairsError:
        return abi.PARSE_FAILURE
    try:
        m.set_all(pairs)
    except ValueError:
        return abi.BAD_ARGUMENT
    return abi.OK


def proxy_get_header_map_size(vm, caller, kind, ret_ptr):
    m, rc = _map(vm, kind)
    if m is None:
        return rc
    memory.write_u32(vm, caller, ret_ptr, m.byte_size())
    return abi.OK


def proxy_get_header_map_value(vm, caller, kind, key_ptr, key_len, ret_ptr, ret_size):
    st = vm.cur
    if st is not None and (kind == _REQ or kind == _RESP) and (key_ptr | key_len) >= 0 \
            and key_ptr + key_len <= vm.mem_size:
        # the usual read, a regular header of the stream's own request or response,
        # its name inside the memory already known (no masking or size check needed)
        head = st.ctx.request if kind == _REQ else st.ctx.response
        if head is not None:
            key = vm.mem[key_ptr:key_ptr + key_len].tobytes().lower()
            if key[:1] != b":":
                for k, v in head.headers.items:
                    if k == key:
                        return memory.return_bytes(vm, caller, v, ret_ptr, ret_size)
                return abi.NOT_FOUND
    m, rc = _map(vm, kind)
    if m is None:
        return rc
    v = m.get(memory.read(vm, caller, key_ptr, key_len).lower())
    if v is None:
        return abi.NOT_FOUND
    return memory.return_bytes(vm, caller, v, ret_ptr, ret_size)


def _edit(vm, caller, kind, key_ptr, key_len, op, value=None):
    m, rc = _map(vm, kind)
    if m is None:
        return rc
    if m.fixed is not None:
        return abi.BAD_ARGUMENT
    key = memory.read(vm, caller, key_ptr, key_len).lower()
    try:
        if op == "add":
            m.add(key, value)
        elif op == "replace":
            m.replace(key, value)
        else:
            m.remove(key)
    except ValueError:
        return abi.BAD_ARGUMENT
    return abi.OK


def _header_edit(op: str) -> Callable[..., int]:
    """proxy_add/replace_header_map_value. The usual edit, a regular header on the
    stream's own request or response, is read straight from guest memory and made
    without building a HeaderMap (inline: it runs on most requests); anything else
    takes the checked path."""
    add = op == "add"

    def edit(vm, caller, kind, key_ptr, key_len, val_ptr, val_len):
        st = vm.cur
        if st is not None and (kind == _REQ or kind == _RESP) and (key_ptr | key_len | val_ptr | val_len) >= 0 \
                and key_ptr + key_len <= vm.mem_size and val_ptr + val_len <= vm.mem_size:
            head = st.ctx.request if kind == _REQ else st.ctx.response
            if head is not None:
                mem = vm.mem
                key = mem[key_ptr:key_ptr + key_len].tobytes().lower()
                if key[:1] != b":":
                    value = mem[val_ptr:val_ptr + val_len].tobytes()
                    if add:
                        head.headers.items.append((key, value))
                    else:
                        head.headers.set(key, value)
                    return abi.OK
        value = memory.read(vm, caller, val_ptr, val_len)
        return _edit(vm, caller, kind, key_ptr, key_len, op, value)
    edit.__name__ = edit.__qualname__ = f"proxy_{op}_header_map_value"
    return edit


proxy_add_header_map_value = _header_edit("add")
proxy_replace_header_map_value = _header_edit("replace")


def proxy_remove_header_map_value(vm, caller, kind, key_ptr, key_len):
    return _edit(vm, caller, kind, key_ptr, key_len, "remove")


FUNCS = {
    "proxy_get_header_map_pairs": ("iii", "i", proxy_get_header_map_pairs),
    "proxy_set_header_map_pairs": ("iii", "i", proxy_set_header_map_pairs),
    "proxy_get_header_map_size": ("ii", "i", proxy_get_header_map_size),
    "proxy_get_header_map_value": ("iiiii", "i", proxy_get_header_map_value),
    "proxy_add_header_map_value": ("iiiii", "i", proxy_add_header_map_value),
    "proxy_replace_header_map_value": ("iiiii", "i", proxy_replace_header_map_value),
    "proxy_remove_header_map_value": ("iii", "i", proxy_remove_header_map_value),
}
