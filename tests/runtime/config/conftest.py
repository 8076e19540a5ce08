"""Helpers for the config schema's tests: a small mosnx.yaml around the part under test,
and the findings (code, line, column, message) loading it reports."""
from __future__ import annotations

import pytest

from mosnx.runtime.config import load_config_text
from mosnx.runtime.diagnostics import ConfigError

# one listener `l` (the caller appends its route and settings) and one cluster `api`
LISTENER = "listeners:\n  - name: l\n    address: 127.0.0.1:1\n"
CLUSTER = "clusters:\n  - name: api\n    endpoints: [127.0.0.1:2]\n"


def load(text: str):
    return load_config_text(text, "m.yaml")


def findings(text: str) -> list[tuple[str, int, int, str]]:
    with pytest.raises(ConfigError) as e:
        load(text)
    return [(d.code, d.span.line, d.span.column, d.message) for d in e.value.diagnostics]


def listener(settings: str, clusters: str = CLUSTER) -> str:
    """The document with `settings` (lines of the listener, 4 spaces in) under listener `l`."""
    return LISTENER + settings + clusters


def convert(type_, text: str):
    """`type_` converting the YAML `text` read as the value of key `k`: (value or INVALID,
    findings as (code, line, column, message))."""
    from mosnx.runtime.config.reader import Reader
    r = Reader(text, "m.yaml")
    root = r.compose()
    assert root is not None, r.findings()
    value = type_.convert(root, r, ("k",))
    return value, [(d.code, d.span.line, d.span.column, d.message) for d in r.findings()]
