"""The `wasm` filter's YAML options, validated once into a frozen PluginConfig.

    wasm: {name: authz, module: filters/authz.wasm, root_id: "", vm_id: "",
           config: {...} | "text", vm_config: ..., fail_open: false,
           timeout: 20ms, max_memory: 64MiB}

`config`/`vm_config` reach the plugin as bytes: strings as UTF-8, anything else as
JSON (Envoy hands plugins a string; JSON is what filters written for it parse).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

MiB = 1024 * 1024
KNOWN = {"module", "config", "vm_config", "root_id", "vm_id", "fail_open", "timeout", "max_memory"}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m)?\s*$")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB|k|K|M|G)?\s*$")
_SIZES = {None: 1, "B": 1, "KiB": 1024, "MiB": MiB, "GiB": 1024 * MiB, "KB": 1000, "MB": 10**6,
          "GB": 10**9, "k": 1024, "K": 1024, "M": MiB, "G": 1024 * MiB}


@dataclass(frozen=True, slots=True)
class PluginConfig:
    name: str
    module_path: str
    config: bytes = b""
    vm_config: bytes = b""
    root_id: str = ""
    vm_id: str = ""
    fail_open: bool = False
    timeout: float = 0.020
    max_memory: int = 64 * MiB

    def __post_init__(self) -> None:
        if not 0 < self.timeout <= 60:
            raise ValueError(f"timeout must be within (0, 60s], not {self.timeout}s")
        if self.max_memory < 64 * 1024:
            raise ValueError("max_memory must be at least 64KiB (one wasm page)")


def parse_duration(v: object, what: str) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    m = _DURATION.match(str(v))
    if not m:
        raise ValueError(f'{what}: "{v}" is not a duration (e.g. 20ms, 1s)')
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_size(v: object, what: str) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    m = _SIZE.match(str(v))
    if not m:
        raise ValueError(f'{what}: "{v}" is not a size (e.g. 64MiB)')
    return int(m.group(1)) * _SIZES[m.group(2)]


def _as_bytes(v: object) -> bytes:
    if v is None:
        return b""
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        return v.encode("utf-8")
    return json.dumps(v, separators=(",", ":"), sort_keys=False).encode("utf-8")


def parse(name: str, raw: dict, base_dir: str) -> PluginConfig:
    if not isinstance(raw, dict):
        raise ValueError("wasm filter options must be a mapping")
    unknown = set(raw) - KNOWN
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(KNOWN))})")
    module = raw.get("module")
    if not module or not isinstance(module, str):
        raise ValueError("module: the path of a .wasm or .wat file is required")
    path = module if os.path.isabs(module) else os.path.normpath(os.path.join(base_dir, module))
    for key in ("root_id", "vm_id"):
        if not isinstance(raw.get(key, ""), str):
            raise ValueError(f"{key} must be a string")
    fail_open = raw.get("fail_open", False)
    if not isinstance(fail_open, bool):
        raise ValueError("fail_open must be true or false")
    return PluginConfig(
        name=name, module_path=path,
        config=_as_bytes(raw.get("config")), vm_config=_as_bytes(raw.get("vm_config")),
        root_id=raw.get("root_id", ""), vm_id=raw.get("vm_id", ""), fail_open=fail_open,
        timeout=parse_duration(raw.get("timeout", 0.020), "timeout"),
        max_memory=parse_size(raw.get("max_memory", 64 * MiB), "max_memory"),
    )
