"""Guest memory access for host functions: bounds-checked reads and writes, and
returning bytes to the guest through its allocator.

`caller` is the raw store context of the running host call (fastcall.py).
All pointers come from the guest as signed i32 and are masked to u32 here. The
memory base address is fetched per access because a guest allocation may grow
(and move) the linear memory. Reads copy out once; nothing keeps a view alive
across a call into the guest.
"""
from __future__ import annotations

import ctypes
import struct

from . import abi
from .fastcall import memory_base

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_string_at = ctypes.string_at
_memmove = ctypes.memmove


class OutOfBounds(Exception):
    """A guest pointer or length outside linear memory: INVALID_MEMORY_ACCESS."""


class AllocationFailed(Exception):
    """The guest allocator returned 0 or is missing."""


def _base(vm, ctx) -> tuple[int, int]:
    return memory_base(ctx, vm.mem_ref)


def read(vm, caller, ptr: int, size: int) -> bytes:
    ptr &= 0xFFFFFFFF
    size &= 0xFFFFFFFF
    if size == 0:
        return b""
    base, n = _base(vm, caller)
    if ptr + size > n:
        raise OutOfBounds
    return _string_at(base + ptr, size)


def write(vm, caller, ptr: int, data: bytes) -> None:
    ptr &= 0xFFFFFFFF
    if not data:
        return
    base, n = _base(vm, caller)
    if ptr + len(data) > n:
        raise OutOfBounds
    _memmove(base + ptr, data, len(data))


def write_u32(vm, caller, ptr: int, value: int) -> None:
    write(vm, caller, ptr, _U32.pack(value & 0xFFFFFFFF))


def write_u64(vm, caller, ptr: int, value: int) -> None:
    write(vm, caller, ptr, _U64.pack(value & 0xFFFFFFFFFFFFFFFF))


def return_bytes(vm, caller, data: bytes, ptr_ptr: int, size_ptr: int) -> int:
    """Copy `data` into a guest allocation and write its (ptr, size); empty: (0, 0), no allocation."""
    if not data:
        write(vm, caller, ptr_ptr, b"\0\0\0\0")
        write(vm, caller, size_ptr, b"\0\0\0\0")
        return abi.OK
    n = len(data)
    p = vm.alloc.call(caller, n) & 0xFFFFFFFF
    if p == 0:
        raise AllocationFailed
    base, size = _base(vm, caller)
    if p + n > size:
        raise OutOfBounds
    _memmove(base + p, data, n)
    write(vm, caller, ptr_ptr, _U32.pack(p))
    write(vm, caller, size_ptr, _U32.pack(n))
    return abi.OK
