"""wasm/config.py: the `wasm` filter's options, validated once into a PluginConfig."""
from __future__ import annotations

import pytest

from mosnx.wasm import config


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
