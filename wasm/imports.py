"""Resolve a module's imports against the host functions and build its Linker.

Every proxy_* function of the ABI and the WASI subset is defined, but only for the
imports a module declares, with the module's own declared type: a known name
whose declared signature differs from the ABI (the AssemblyScript SDK declares
some wrongly) gets a stub returning UNIMPLEMENTED instead of failing the load.
Any other import fails the load with an error that names it.
"""
from __future__ import annotations

from typing import Any, Callable

import wasmtime

from . import abi, abi_buffers, abi_calls, abi_core, abi_maps, abi_state, abi_wasi, fastcall, log_gate
from .memory import AllocationFailed, OutOfBounds

WASI_MODULES = ("wasi_snapshot_preview1", "wasi_unstable")


class GuestAbort(Exception):
    """AssemblyScript's default `env.abort`: the guest gave up."""


def _abort(vm, caller, msg, file, line, col):
    raise GuestAbort(f"abort at line {line}:{col}")


ENV = {**abi_core.FUNCS, **abi_maps.FUNCS, **abi_buffers.FUNCS, **abi_state.FUNCS,
       **abi_calls.FUNCS, "abort": ("iiii", "", _abort)}
WASI = abi_wasi.FUNCS

def _on_error(exc: BaseException) -> int | None:
    if isinstance(exc, OutOfBounds):
        return abi.INVALID_MEMORY_ACCESS
    if isinstance(exc, AllocationFailed):
        return abi.INTERNAL_FAILURE
    return None         # trap: the callback fails


def _stub_for(status: int) -> Callable[..., int]:
    def stub(vm, ctx, *args):
        return status
    return stub


def check_imports(module: wasmtime.Module, path: str) -> None:
    """Raise ValueError naming the first import the host cannot satisfy."""
    for imp in module.imports:
        where = f'{path}: import "{imp.module}.{imp.name}"'
        if not isinstance(imp.type, wasmtime.FuncType):
            raise ValueError(f"{where} is not a function; the proxy-wasm host provides only functions")
        if imp.module == "env":
            if imp.name not in ENV:
                raise ValueError(f"{where} is unknown to the proxy-wasm ABI v0.2.1 host")
        elif imp.module not in WASI_MODULES:
            raise ValueError(f'{where}: unknown import module "{imp.module}" '
                             f'(expected "env", "wasi_snapshot_preview1" or "wasi_unstable")')


def build_linker(vm: Any, module: wasmtime.Module) -> wasmtime.Linker:
    """A Linker with the module's imports bound to `vm`; the callbacks are kept on vm."""
    linker = wasmtime.Linker(vm.engine)
    linker.allow_shadowing = True       # the log gate is redefined in each new store
    keep = vm.host_callbacks
    for imp in module.imports:
        ty = imp.type
        # check_imports refused every import but a named function
        assert isinstance(ty, wasmtime.FuncType) and imp.name is not None
        table = ENV if imp.module == "env" else WASI
        entry = table.get(imp.name)
        params, results = fastcall.kinds_of(ty.params), fastcall.kinds_of(ty.results)
        if params is None or results is None or len(results) > 1:
            raise ValueError(f'import "{imp.module}.{imp.name}" has a type no proxy-wasm host function has')
        if entry is not None and (params, results) == (entry[0], entry[1]):
            fn = entry[2]
        else:
            fn = _stub_for(abi.UNIMPLEMENTED if imp.module == "env" else abi.WASI_NOTSUP)
        cb = fastcall.host_callback(fn, vm, params, results, _on_error)
        keep.append(cb)
        module_name = imp.module
        if imp.module == "env" and imp.name == "proxy_log" and entry is not None and fn is entry[2]:
            module_name = log_gate.HOST_MODULE      # reached through the gate (log_gate.py)
            vm.log_gate = True
        fastcall.define(linker, module_name, imp.name, ty, cb)
    return linker
