"""wasm/module_cache.py: compiled modules cached on disk, the watchdog's tick, and a clear
error for bytes that are neither wasm nor WAT."""
from __future__ import annotations

import os

import pytest

from mosnx.wasm import module_cache

from .conftest import WAT


def test_watch_period_is_a_fraction_of_the_timeout():
    assert module_cache.watch_period(0.020) * module_cache.TICK <= 0.020 / 4 + 1e-9
    assert module_cache.watch_period(0.0001) == 1
    assert module_cache.watch_period(1.0) * module_cache.TICK == pytest.approx(0.25)


def test_compiled_module_is_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("MOSNX_CACHE_DIR", str(tmp_path))
    data = open(os.path.join(WAT, "trap.wat"), "rb").read()
    module_cache._memo.clear()
    module_cache.compile_module(data, "trap.wat")
    files = [f for _, _, fs in os.walk(tmp_path) for f in fs]
    assert len(files) == 1 and files[0].endswith(".cwasm")
    module_cache._memo.clear()
    mod = module_cache.compile_module(data, "trap.wat")      # from disk this time
    assert any(e.name == "proxy_on_request_headers" for e in mod.exports)


def test_garbage_is_a_clear_error():
    with pytest.raises(ValueError, match="neither a wasm binary nor valid WAT"):
        module_cache.compile_module(b"(module (func $x (bogus)))", "bad.wat")
