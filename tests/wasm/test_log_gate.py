"""wasm/log_gate.py: the wasm-side gate drops a guest's proxy_log below the logger's
level without leaving wasm, and passes the rest to the host function."""
from __future__ import annotations

import logging

import wasmtime

from mosnx.wasm import log_gate, module_cache


def test_min_level_follows_the_logger():
    logger = logging.getLogger("mosnx.test.log_gate")
    for py, level in ((logging.DEBUG, 1), (logging.INFO, 2), (logging.WARNING, 3), (logging.ERROR, 4),
                      (logging.CRITICAL, 5), (logging.CRITICAL + 1, 6)):
        logger.setLevel(py)
        assert log_gate.min_level(logger) == level
    logger.setLevel(1)
    assert log_gate.min_level(logger) == 0                  # trace


def test_the_gate_calls_the_host_only_at_or_above_the_level():
    logger = logging.getLogger("mosnx.test.log_gate.call")
    logger.setLevel(logging.WARNING)                         # proxy-wasm level 3
    store = wasmtime.Store(module_cache.engine())
    store.set_epoch_deadline(1_000_000)          # the engine interrupts at epoch deadlines
    linker = wasmtime.Linker(store.engine)
    seen = []
    log_type = wasmtime.FuncType([wasmtime.ValType.i32()] * 3, [wasmtime.ValType.i32()])
    linker.define_func(log_gate.HOST_MODULE, "proxy_log", log_type, lambda lvl, ptr, n: seen.append(lvl) or 0)
    log_gate.install(store, linker, logger)
    guest = linker.instantiate(store, module_cache.compile_module(b"""
        (module (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
          (func (export "say") (param i32) (result i32) (call $log (local.get 0) (i32.const 0) (i32.const 0))))""",
        "guest"))
    say = guest.exports(store)["say"]
    for level in range(6):
        assert say(store, level) == 0
    assert seen == [3, 4, 5]
