"""mosnx.wasm: a proxy-wasm ABI v0.2.1 host on wasmtime.

Importing this package registers the `wasm` filter factory with the runtime.
"""
from mosnx.runtime import register_filter

from .filter import STATS, WasmFilter, factory, load

register_filter("wasm", factory)

__all__ = ["STATS", "WasmFilter", "factory", "load"]
