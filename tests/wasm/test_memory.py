"""wasm/memory.py: host reads and writes of guest memory are bounds-checked against the
memory's current size (re-read when the guest has grown it), pointers are u32, and
bytes go back to the guest through its allocator. A real wasmtime memory, no VM."""
from __future__ import annotations

import ctypes
import struct
from types import SimpleNamespace

import pytest
import wasmtime

from mosnx.wasm import abi, memory, module_cache

PAGE = 65536
WAT = b"""
(module (memory (export "memory") 1 4)
  (func (export "grow") (result i32) (memory.grow (i32.const 1))))
"""


@pytest.fixture
def vm():
    store = wasmtime.Store(module_cache.engine())
    store.set_epoch_deadline(1_000_000)
    inst = wasmtime.Linker(store.engine).instantiate(store, module_cache.compile_module(WAT, "mem.wat"))
    ex = inst.exports(store)
    mem = ex["memory"]
    v = SimpleNamespace(store=store, ctx=store._context(), mem_ref=ctypes.byref(mem._memory),
                        grow=lambda: ex["grow"](store), alloc=None, wasm_memory=mem)
    v.mem, v.mem_size = memory.map_memory(v.ctx, v.mem_ref, 4 * PAGE)
    return v


def test_reads_and_writes_within_memory(vm):
    memory.write(vm, None, 100, b"hello")
    assert memory.read(vm, None, 100, 5) == b"hello"
    assert vm.wasm_memory.read(vm.store, 100, 105) == b"hello"       # the guest sees it
    memory.write_u32(vm, None, 200, 0x01020304)
    memory.write_u64(vm, None, 208, -1)
    assert memory.read(vm, None, 200, 4) == struct.pack("<I", 0x01020304)
    assert memory.read(vm, None, 208, 8) == b"\xff" * 8
    assert memory.read(vm, None, PAGE - 1, 1) == b"\0"
    assert memory.read(vm, None, 0xFFFFFFFF, 0) == b"" and memory.write(vm, None, 0xFFFFFFFF, b"") is None


@pytest.mark.parametrize("ptr,size", [(PAGE, 1), (PAGE - 4, 5), (-1, 1), (-PAGE, 16)])
def test_beyond_memory_is_out_of_bounds(vm, ptr, size):
    with pytest.raises(memory.OutOfBounds):
        memory.read(vm, None, ptr, size)
    with pytest.raises(memory.OutOfBounds):
        memory.write(vm, None, ptr, b"x" * size)
    with pytest.raises(memory.OutOfBounds):
        memory.write_u64(vm, None, ptr + size - 1, 0)


def test_a_huge_length_is_out_of_bounds(vm):
    with pytest.raises(memory.OutOfBounds):
        memory.read(vm, None, 0, 0xFFFFFFFF)
    with pytest.raises(memory.OutOfBounds):
        memory.read(vm, None, 16, -1)                                # a negative i32 length is 4 GiB - 1


def test_memory_grown_by_the_guest_is_reachable(vm):
    assert vm.mem_size == PAGE
    assert vm.grow() == 1                                            # the old size in pages
    memory.write(vm, None, PAGE + 10, b"grown")                      # past the size the host last saw
    assert vm.mem_size == 2 * PAGE
    assert memory.read(vm, None, PAGE + 10, 5) == b"grown"
    with pytest.raises(memory.OutOfBounds):                          # reserved pages stay out of reach
        memory.read(vm, None, 2 * PAGE, 1)


def test_bytes_go_back_through_the_guest_allocator(vm):
    vm.alloc = SimpleNamespace(nested=lambda n: 1024)
    assert memory.return_bytes(vm, None, b"answer", 8, 12) == abi.OK
    ptr, size = struct.unpack("<II", memory.read(vm, None, 8, 8))
    assert (ptr, size) == (1024, 6) and memory.read(vm, None, ptr, size) == b"answer"
    called = []
    vm.alloc = SimpleNamespace(nested=lambda n: called.append(n) or 1024)
    assert memory.return_bytes(vm, None, b"", 8, 12) == abi.OK          # empty: (0, 0), no allocation
    assert memory.read(vm, None, 8, 8) == b"\0" * 8 and called == []
    vm.alloc = SimpleNamespace(nested=lambda n: 0)
    with pytest.raises(memory.AllocationFailed):
        memory.return_bytes(vm, None, b"x", 8, 12)
