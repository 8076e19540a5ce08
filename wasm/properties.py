"""proxy_get_property: NUL-separated paths resolved through runtime's attribute table.

Only what the attribute table cannot say lives here: the plugin's own facts
(`plugin_name`, `plugin_root_id`, `plugin_vm_id`), whole header maps, Envoy's
flat aliases (`cluster_name`, `route_name`), and the encodings Envoy gives
values (ints as 8-byte little-endian, `source.address` as ip:port, times in ns),
so a filter written for Envoy reads the same bytes here.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from mosnx.runtime.attributes import property_path
from mosnx.runtime.context import StreamContext

from . import abi

if TYPE_CHECKING:
    from .config import PluginConfig

_I64 = struct.Struct("<q")
_D = struct.Struct("<d")

_ALIASES = {
    "cluster_name": ["cluster", "name"],
    "route_name": ["route", "name"],
    "listener_name": ["listener", "name"],
    "request.total_size": ["request", "size"],
}


def encode(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        return _I64.pack(value)
    if isinstance(value, float):
        return _D.pack(value)
    if isinstance(value, dict):
        return abi.encode_pairs([(str(k).encode(), encode(v) or b"") for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return abi.encode_pairs([(encode(v) or b"", b"") for v in value])
    return str(value).encode("utf-8")


def _addr(host: str, port: int) -> str:
    if not host:
        return ""
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def _stream_value(ctx: StreamContext, segs: list[str]) -> tuple[bool, object]:
    """(handled, value) for stream facts with Envoy-specific encodings; value None: NOT_FOUND."""
    name = ".".join(segs)
    if name == "source.address":
        return True, _addr(ctx.source_address, ctx.source_port)
    if name == "destination.address":
        return True, _addr(ctx.destination_address, ctx.destination_port)
    if name == "request.time":
        return True, int(ctx.start_wall * 1e9)
    if name == "request.duration":
        return True, int(ctx.duration_ms * 1e6)
    if name == "response.code_details":
        return True, ctx.error_detail
    if name == "request.headers":
        return True, abi.encode_pairs(_req_pairs(ctx))
    if name == "response.headers":
        r = ctx.response
        return (r is not None), (abi.encode_pairs(r.headers.items) if r is not None else None)
    if len(segs) == 3 and segs[1] == "headers" and segs[0] in ("request", "response"):
        head = ctx.request if segs[0] == "request" else ctx.response
        if head is None:
            return True, None
        return True, head.headers.getb(segs[2].lower().encode("latin-1"))
    if segs[0] == "response" and ctx.response is None:
        return False, None
    return False, None


def _req_pairs(ctx: StreamContext) -> list[tuple[bytes, bytes]]:
    from .header_maps import HeaderMap
    return HeaderMap(abi.MAP_REQUEST_HEADERS, ctx, ctx.request.headers).pairs()


def get(path: bytes, ctx: StreamContext | None, plugin: PluginConfig, overrides: dict[bytes, bytes]) -> bytes | None:
    """The encoded property at `path`, or None (NOT_FOUND)."""
    v = overrides.get(path)
    if v is not None:
        return v
    try:
        text = path.decode("utf-8")
    except UnicodeDecodeError:
        return None
    segs = [s for s in text.split("\0") if s != ""]
    if len(segs) == 1 and "." in segs[0] and segs[0] not in _ALIASES:
        segs = segs[0].split(".")
    if not segs:
        return None
    name = ".".join(segs)
    if name == "plugin_name":
        return plugin.name.encode()
    if name == "plugin_root_id":
        return plugin.root_id.encode()
    if name == "plugin_vm_id":
        return plugin.vm_id.encode()
    if ctx is None:
        return None
    alias = _ALIASES.get(name)
    if alias is not None:
        segs = alias
    found, value = _stream_value(ctx, segs)
    if found:
        return encode(value)
    if segs[0] == "response" and ctx.response is None:
        return None
    g = property_path(segs)
    if g is None:
        return None
    return encode(g(ctx))
