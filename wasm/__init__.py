"""mosnx.wasm: a proxy-wasm ABI v0.2.1 host on wasmtime.

Importing this package registers the `wasm` filter factory with the runtime, and
loads nothing else: wasmtime (some 8 MiB a process) is imported when the first
`wasm` filter is built, so a proxy with none never pays for it. The names below
load their module on first use (PEP 562).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mosnx.runtime import register_filter

if TYPE_CHECKING:
    from mosnx.runtime.registry import BuildContext

    from .filter import STATS, WasmFilter, factory, load


def _factory(name: str, config: dict, build_ctx: "BuildContext") -> "WasmFilter":
    from .filter import factory
    return factory(name, config, build_ctx)


# the factory it stands for, as functools.wraps would say: what documents the filter
# (its module's docstring and config parser, read by runtime.config.reference)
_factory.__module__ = "mosnx.wasm.filter"
register_filter("wasm", _factory)


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import filter as _filter
        return getattr(_filter, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["STATS", "WasmFilter", "factory", "load"]
