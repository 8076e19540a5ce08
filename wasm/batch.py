"""Per-request callbacks that always come in a row, made in one call into wasm.

A stream opens with proxy_on_context_create then proxy_on_request_headers, and
ends with proxy_on_log, proxy_on_done and (if done) proxy_on_delete. A small
module generated for each plugin, instantiated in the plugin's store and
importing the plugin's own exports, makes each row one Python→wasm crossing
instead of two or three; the crossing, not the calls, is what costs. The order
and arguments are exactly those of separate calls; the row shares one deadline.
"""
from __future__ import annotations

from typing import Any, Mapping

import wasmtime

from . import fastcall, module_cache

# export name -> (param kinds, result kinds) the row needs
_SIGS = {
    "proxy_on_context_create": ("ii", ""),
    "proxy_on_request_headers": ("iii", "i"),
    "proxy_on_log": ("i", ""),
    "proxy_on_done": ("i", "i"),
    "proxy_on_delete": ("i", ""),
}
_TYPES = {"ii": "(param i32 i32)", "iii": "(param i32 i32 i32)", "i": "(param i32)"}


def _wat(present: list[str]) -> str:
    has = set(present)
    lines = ["(module"]
    for name in present:
        params, results = _SIGS[name]
        res = " (result i32)" if results else ""
        lines.append(f'  (import "plugin" "{name}" (func ${name} {_TYPES[params]}{res}))')
    opened = []
    if "proxy_on_context_create" in has:
        opened.append("    (call $proxy_on_context_create (local.get 0) (local.get 1))")
    if "proxy_on_request_headers" in has:
        opened.append("    (call $proxy_on_request_headers (local.get 0) (local.get 2) (local.get 3))")
    else:
        opened.append("    (i32.const 0)")
    lines.append('  (func (export "open") (param i32 i32 i32 i32) (result i32)')
    lines += opened
    lines.append("  )")
    delete = "(call $proxy_on_delete (local.get 0))" if "proxy_on_delete" in has else ""
    lines.append('  (func (export "close") (param i32) (result i32)')
    if "proxy_on_log" in has:
        lines.append("    (call $proxy_on_log (local.get 0))")
    if "proxy_on_done" in has:
        lines.append(f"    (if (result i32) (call $proxy_on_done (local.get 0))"
                     f" (then {delete} (i32.const 1)) (else (i32.const 0)))")
    else:
        lines.append(f"    {delete} (i32.const 1)")
    lines.append("  ))")
    return "\n".join(lines)


def build(store: wasmtime.Store, exports: Mapping[str, Any], watch: fastcall.Watchdog) -> tuple[fastcall.GuestFunc, fastcall.GuestFunc] | None:
    """(open(id, root, n_headers, eos) -> action, close(id) -> done) for this instance, or
    None when an export has a type of its own (an ABI 0.1.0 module): then calls go one by one."""
    present = []
    for name, (params, results) in _SIGS.items():
        f = exports.get(name)
        if f is None:
            continue
        if not isinstance(f, wasmtime.Func):
            return None
        ty = f.type(store)
        if (fastcall.kinds_of(ty.params), fastcall.kinds_of(ty.results)) != (params, results):
            return None
        present.append(name)
    module = module_cache.compile_module(_wat(present).encode(), "callback batch")
    inst = wasmtime.Instance(store, module, [exports[n] for n in present])
    ex = inst.exports(store)
    # _wat(present) exports the two as functions
    return (fastcall.GuestFunc(store, ex["open"], watch),  # type: ignore[arg-type]
            fastcall.GuestFunc(store, ex["close"], watch))  # type: ignore[arg-type]
