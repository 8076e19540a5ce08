"""Guest memory access for host functions: bounds-checked reads and writes, and
returning bytes to the guest through its allocator.

The Engine is configured so that linear memory never moves (module_cache:
`memory_may_move` off, inside wasmtime's 4 GiB reservation for a 32-bit memory),
so a VM maps its memory once, at start, as a memoryview (`vm.mem`) and keeps the
size it last saw (`vm.mem_size`). Memory only grows, so an access within that
size is in bounds without asking wasmtime; one beyond it re-reads the size
first. Nothing past the current size is ever touched: those pages are reserved,
not accessible. Reads copy out; no view escapes a host call.

All pointers come from the guest as signed i32 and are masked to u32 here.
"""
from __future__ import annotations

import ctypes
import struct

from . import abi
from .fastcall import memory_base

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


class OutOfBounds(Exception):
    """A guest pointer or length outside linear memory: INVALID_MEMORY_ACCESS."""


class AllocationFailed(Exception):
    """The guest allocator returned 0 or is missing."""


def map_memory(ctx, mem_ref, limit: int) -> tuple[memoryview, int]:
    """(view, current size) of a linear memory that never moves; the view spans
    `limit` bytes (the store's memory limit), of which only the current size may be
    touched."""
    base, size = memory_base(ctx, mem_ref)
    if not base:
        raise OutOfBounds
    view = memoryview((ctypes.c_ubyte * max(limit, size, 1)).from_address(base)).cast("B")
    return view, size


def _check(vm, end: int) -> None:
    """Make sure [.., end) is inside linear memory, re-reading its size if needed."""
    if end > vm.mem_size:
        vm.mem_size = memory_base(vm.ctx, vm.mem_ref)[1]
        if end > vm.mem_size:
            raise OutOfBounds


def read(vm, caller, ptr: int, size: int) -> bytes:
    ptr &= 0xFFFFFFFF
    size &= 0xFFFFFFFF
    if size == 0:
        return b""
    end = ptr + size
    if end > vm.mem_size:
        _check(vm, end)
    return vm.mem[ptr:end].tobytes()


def write(vm, caller, ptr: int, data: bytes) -> None:
    ptr &= 0xFFFFFFFF
    n = len(data)
    if not n:
        return
    end = ptr + n
    if end > vm.mem_size:
        _check(vm, end)
    vm.mem[ptr:end] = data


def write_u32(vm, caller, ptr: int, value: int) -> None:
    ptr &= 0xFFFFFFFF
    if ptr + 4 > vm.mem_size:
        _check(vm, ptr + 4)
    _U32.pack_into(vm.mem, ptr, value & 0xFFFFFFFF)


def write_u64(vm, caller, ptr: int, value: int) -> None:
    ptr &= 0xFFFFFFFF
    if ptr + 8 > vm.mem_size:
        _check(vm, ptr + 8)
    _U64.pack_into(vm.mem, ptr, value & 0xFFFFFFFFFFFFFFFF)


def return_bytes(vm, caller, data: bytes, ptr_ptr: int, size_ptr: int) -> int:
    """Copy `data` into a guest allocation and write its (ptr, size); empty: (0, 0), no allocation."""
    if not data:
        write_u32(vm, caller, ptr_ptr, 0)
        write_u32(vm, caller, size_ptr, 0)
        return abi.OK
    n = len(data)
    p = vm.alloc.nested(n) & 0xFFFFFFFF     # caller is the store's own context
    if p == 0:
        raise AllocationFailed
    write(vm, caller, p, data)      # the allocation may have grown the memory: write re-checks
    write_u32(vm, caller, ptr_ptr, p)
    write_u32(vm, caller, size_ptr, n)
    return abi.OK
