"""The WASI subset proxy-wasm modules import (module `wasi_snapshot_preview1` or
`wasi_unstable`): stdout/stderr into the log, clocks, random, empty args and
environment, and proc_exit, which ends the callback and fails the VM.
Other WASI imports get a stub returning NOTSUP (see imports.py).
"""
from __future__ import annotations

import logging
import os
import struct
import time

from . import abi, memory

log = logging.getLogger("mosnx.wasm")


class ProcExit(Exception):
    def __init__(self, code: int):
        super().__init__(f"proc_exit({code})")
        self.code = code


def fd_write(vm, caller, fd, iovs, iovs_len, ret_nwritten):
    if fd not in (1, 2):
        return abi.WASI_BADF
    raw = memory.read(vm, caller, iovs, 8 * (iovs_len & 0xFFFF))
    parts = []
    for i in range(0, len(raw), 8):
        ptr, n = struct.unpack_from("<II", raw, i)
        parts.append(memory.read(vm, caller, ptr, n))
    data = b"".join(parts)
    text = data.decode("utf-8", "replace").rstrip("\n")
    if text:
        log.log(logging.INFO if fd == 1 else logging.ERROR, "wasm log %s %s: %s",
                vm.plugin.name, vm.plugin.root_id, text)
    memory.write_u32(vm, caller, ret_nwritten, len(data))
    return abi.WASI_SUCCESS


def proc_exit(vm, caller, code):
    raise ProcExit(code)


def clock_time_get(vm, caller, clock_id, precision, ret_ptr):
    if clock_id == 0:
        memory.write_u64(vm, caller, ret_ptr, time.time_ns())
    elif clock_id == 1:
        memory.write_u64(vm, caller, ret_ptr, time.monotonic_ns())
    else:
        return abi.WASI_INVAL
    return abi.WASI_SUCCESS


def random_get(vm, caller, ptr, size):
    memory.write(vm, caller, ptr, os.urandom(size & 0xFFFFFFFF))
    return abi.WASI_SUCCESS


def _zero_sizes(vm, caller, count_ptr, size_ptr):
    memory.write_u32(vm, caller, count_ptr, 0)
    memory.write_u32(vm, caller, size_ptr, 0)
    return abi.WASI_SUCCESS


def _nothing(vm, caller, a, b):
    return abi.WASI_SUCCESS


def sched_yield(vm, caller):
    return abi.WASI_SUCCESS


FUNCS = {
    "fd_write": ("iiii", "i", fd_write),
    "proc_exit": ("i", "", proc_exit),
    "clock_time_get": ("iIi", "i", clock_time_get),
    "random_get": ("ii", "i", random_get),
    "environ_sizes_get": ("ii", "i", _zero_sizes),
    "environ_get": ("ii", "i", _nothing),
    "args_sizes_get": ("ii", "i", _zero_sizes),
    "args_get": ("ii", "i", _nothing),
    "sched_yield": ("", "i", sched_yield),
}
