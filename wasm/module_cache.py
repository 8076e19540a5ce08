"""Compiled modules, cached on disk by content hash, and the one Engine per process.

A restart (or another worker) deserializes the native code instead of compiling it
again. The cache key covers the module bytes and the wasmtime build, so an upgrade
never loads stale code. Epoch interruption is on in the Engine; a daemon thread
ticks the epoch so running callbacks can be bounded in time (fastcall.Watchdog).
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import time

import wasmtime

log = logging.getLogger("mosnx.wasm")

# Epoch tick period: a callback deadline is rounded up to a multiple of this.
TICK = 0.005
# The engine settings compiled code depends on; part of the cache key.
_ENGINE_TAG = "epoch-interruption,opt=speed,memory-fixed"

_engine: wasmtime.Engine | None = None
_engine_pid = 0
_ticker_pid = 0
_lock = threading.Lock()
_memo: dict[str, wasmtime.Module] = {}


def engine() -> wasmtime.Engine:
    """The process's Engine (a forked worker makes its own)."""
    global _engine, _engine_pid
    pid = os.getpid()
    if _engine is None or _engine_pid != pid:
        cfg = wasmtime.Config()
        cfg.epoch_interruption = True
        cfg.cranelift_opt_level = "speed"
        # Linear memory grows in place (wasmtime reserves 4 GiB of address space
        # for a 32-bit memory), so host functions map it once per instance.
        cfg.memory_may_move = False
        _engine = wasmtime.Engine(cfg)
        _engine_pid = pid
        _memo.clear()
    return _engine


def start_ticker() -> None:
    """Tick the engine's epoch every TICK seconds from a daemon thread (once per process)."""
    global _ticker_pid
    eng = engine()
    pid = os.getpid()
    with _lock:
        if _ticker_pid == pid:
            return
        _ticker_pid = pid

    def run() -> None:
        while True:
            time.sleep(TICK)
            eng.increment_epoch()

    threading.Thread(target=run, name="mosnx-wasm-epoch", daemon=True).start()


def watch_period(timeout: float) -> int:
    """Epoch ticks between a Watchdog's looks at a running call: about a quarter of
    the timeout, so a call overruns it by at most that much."""
    return max(1, int(timeout / 4 / TICK))


def cache_dir() -> str:
    base = os.environ.get("MOSNX_CACHE_DIR")
    if not base:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mosnx")
    return os.path.join(base, "wasm")


def _version_tag() -> str:
    try:
        from importlib.metadata import version
        return version("wasmtime")
    except Exception:
        return "unknown"


def to_binary(data: bytes, path: str = "") -> bytes:
    """Module bytes in binary form; WAT text is assembled."""
    if data[:4] == b"\0asm":
        return data
    try:
        return bytes(wasmtime.wat2wasm(data.decode("utf-8")))
    except (UnicodeDecodeError, wasmtime.WasmtimeError) as e:
        raise ValueError(f"{path or 'module'} is neither a wasm binary nor valid WAT: {_first_line(e)}") from None


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def compile_module(data: bytes, path: str = "") -> wasmtime.Module:
    """A Module for `data` (binary or WAT), from memory, the disk cache, or compiled now."""
    eng = engine()
    binary = to_binary(data, path)
    key = hashlib.sha256(binary + f"\0wasmtime-{_version_tag()}-{_ENGINE_TAG}".encode()).hexdigest()
    mod = _memo.get(key)
    if mod is not None:
        return mod
    file = os.path.join(cache_dir(), key[:2], key + ".cwasm")
    if os.path.exists(file):
        try:
            mod = wasmtime.Module.deserialize_file(eng, file)
        except Exception as e:  # corrupt or from an incompatible build: compile again
            log.warning("wasm cache entry %s unusable (%s); recompiling", file, _first_line(e))
            mod = None
    if mod is None:
        try:
            mod = wasmtime.Module(eng, binary)
        except wasmtime.WasmtimeError as e:
            raise ValueError(f"{path or 'module'} does not compile: {_first_line(e)}") from None
        _store(file, mod)
    _memo[key] = mod
    return mod


def _store(file: str, mod: wasmtime.Module) -> None:
    try:
        os.makedirs(os.path.dirname(file), exist_ok=True)
        tmp = f"{file}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(mod.serialize())
        os.replace(tmp, file)   # atomic: a concurrent worker sees all or nothing
    except OSError as e:
        log.warning("cannot write wasm cache %s: %s", file, e)
