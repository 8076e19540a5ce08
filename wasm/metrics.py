"""Plugin-defined metrics, exported in the worker's stats Store as `wasm.<plugin>.<name>`.

Owned by the plugin, not the VM instance: a VM recreated after a failure
re-defines its metrics and keeps counting where the old one stopped.
"""
from __future__ import annotations

from typing import Any

from mosnx.runtime.stats import Store

from . import abi


class Metrics:
    __slots__ = ("store", "prefix", "ids", "objs")

    def __init__(self, store: Store, plugin: str):
        self.store = store
        self.prefix = f"wasm.{plugin}."
        self.ids: dict[tuple[int, str], int] = {}
        self.objs: list[tuple[int, Any]] = []

    def define(self, kind: int, name: str) -> int:
        mid = self.ids.get((kind, name))
        if mid is None:
            full = self.prefix + name
            obj: Any
            if kind == abi.METRIC_COUNTER:
                obj = self.store.counter(full)
            elif kind == abi.METRIC_GAUGE:
                obj = self.store.gauge(full)
            else:
                obj = self.store.histogram(full)
            self.objs.append((kind, obj))
            mid = self.ids[(kind, name)] = len(self.objs)   # ids start at 1
        return mid

    def _get(self, mid: int) -> tuple[int, Any] | tuple[None, None]:
        if 1 <= mid <= len(self.objs):
            return self.objs[mid - 1]
        return None, None

    def increment(self, mid: int, delta: int) -> int:
        kind, obj = self._get(mid)
        if obj is None:
            return abi.NOT_FOUND
        if kind == abi.METRIC_COUNTER:
            if delta <= 0:
                return abi.BAD_ARGUMENT
            obj.value += delta
        elif kind == abi.METRIC_GAUGE:
            obj.value += delta
        else:
            obj.record(delta)
        return abi.OK

    def record(self, mid: int, value: int) -> int:
        kind, obj = self._get(mid)
        if obj is None:
            return abi.NOT_FOUND
        if kind == abi.METRIC_HISTOGRAM:
            obj.record(value & 0xFFFFFFFFFFFFFFFF)
        else:
            obj.value = value
        return abi.OK

    def get(self, mid: int) -> tuple[int, int]:
        kind, obj = self._get(mid)
        if obj is None:
            return abi.NOT_FOUND, 0
        if kind == abi.METRIC_HISTOGRAM:
            return abi.BAD_ARGUMENT, 0
        return abi.OK, obj.value
