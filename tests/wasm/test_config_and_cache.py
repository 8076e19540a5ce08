"""Filter options and the compiled-module cache."""
from __future__ import annotations

import os

import pytest

from mosnx.wasm import config, module_cache

from .conftest import WAT


def test_defaults_and_units(tmp_path):
    p = config.parse("f", {"module": "m.wasm"}, str(tmp_path))
    assert p.module_path == str(tmp_path / "m.wasm")
    assert p.timeout == 0.020 and p.max_memory == 64 * 1024 * 1024 and not p.fail_open
    q = config.parse("f", {"module": "/abs/m.wasm", "timeout": "1.5s", "max_memory": "512KiB",
                           "config": {"a": 1}, "vm_config": "raw"}, str(tmp_path))
    assert q.module_path == "/abs/m.wasm"
    assert q.timeout == 1.5 and q.max_memory == 512 * 1024
    assert q.config == b'{"a":1}' and q.vm_config == b"raw"


@pytest.mark.parametrize("raw, message", [
    ({}, "module"),
    ({"module": "m", "timeout": "0ms"}, "timeout"),
    ({"module": "m", "max_memory": "1KiB"}, "max_memory"),
    ({"module": "m", "root_id": 5}, "root_id"),
])
def test_bad_options(raw, message):
    with pytest.raises(ValueError, match=message):
        config.parse("f", raw, "/")


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
