"""A wasm-side gate in front of proxy_log.

SDKs log at debug level on every context they create and delete (the
AssemblyScript SDK: about ten proxy_log calls per request), and a call from the
guest into Python costs far more than the check itself. The gate is a tiny
module instantiated next to the plugin in the same store: it answers OK to
levels below the host's threshold without leaving wasm, and forwards the rest
(and invalid levels, which get BAD_ARGUMENT) to the Python implementation.
The threshold is read from the `mosnx.wasm` logger when the VM starts.
"""
from __future__ import annotations

import logging

import wasmtime

from . import module_cache

HOST_MODULE = "mosnx_host"

GATE_WAT = """
(module
  (import "mosnx_host" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (global $min (export "min_level") (mut i32) (i32.const 0))
  (func (export "proxy_log") (param $level i32) (param $ptr i32) (param $len i32) (result i32)
    (if (i32.and (i32.lt_u (local.get $level) (i32.const 6))
                 (i32.lt_u (local.get $level) (global.get $min)))
      (then (return (i32.const 0))))
    (call $log (local.get $level) (local.get $ptr) (local.get $len))))
"""

# proxy-wasm levels 0..5 (trace..critical) as Python logging levels; proxy_log maps with it too
_PY_LEVELS = (5, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)


def min_level(logger: logging.Logger) -> int:
    """The lowest proxy-wasm log level the logger lets through (6: none)."""
    for level, py in enumerate(_PY_LEVELS):
        if logger.isEnabledFor(py):
            return level
    return 6


def install(store: wasmtime.Store, linker: wasmtime.Linker, logger: logging.Logger) -> None:
    """Instantiate the gate in `store` and make it the linker's env.proxy_log."""
    gate = linker.instantiate(store, module_cache.compile_module(GATE_WAT.encode(), "log gate"))
    ex = gate.exports(store)
    ex["min_level"].set_value(store, wasmtime.Val.i32(min_level(logger)))  # type: ignore[union-attr]  # GATE_WAT's global
    linker.define(store, "env", "proxy_log", ex["proxy_log"])
