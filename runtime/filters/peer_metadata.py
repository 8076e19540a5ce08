"""Istio's peer metadata exchange over HTTP headers (istio.metadata_exchange).

Between two sidecars each side says who it is in two headers:
`x-envoy-peer-metadata-id` (the node id) and `x-envoy-peer-metadata` (base64 of a
serialized google.protobuf.Struct holding the node metadata fields Istio exchanges:
EXCHANGED). As Istio's plugin:

- on the request: a peer's headers are read and stripped; unless the listener is
  INBOUND (the next hop is the application) this node's are set;
- on the response: the upstream peer's are read and stripped; unless the listener is
  OUTBOUND (the next hop is the application) this node's are set, and only when the
  request carried the peer's (a plain client gets nothing).

What a peer said stays in the stream's filter_state under DOWNSTREAM_PEER and
UPSTREAM_PEER (a dict of the exchanged fields) for istio_stats and logs. A header
that does not decode never fails the request: it counts `<name>.header_decode_failed`
and the peer stays unknown. The node's own value is encoded once, when the filter
is built; decoded peers are kept in a bounded cache by header value.

Config: `node: {id, metadata}` (mosnx YAML), else the bootstrap's node (xds.node or
the Envoy bootstrap's `node`); `direction`: INBOUND|OUTBOUND, else the listener's
traffic_direction.
"""
from __future__ import annotations

import base64
import binascii
from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.message import DecodeError

from ..actions import Action
from ..context import StreamContext
from ..pipeline import HttpFilter
from ..registry import NO_MEMO, BuildContext, register_filter
from ..stats import Counter, Store
from . import _config as C

STATS = ("header_decode_failed",)

H_ID = b"x-envoy-peer-metadata-id"
H_METADATA = b"x-envoy-peer-metadata"
DOWNSTREAM_PEER = "istio.downstream_peer"
UPSTREAM_PEER = "istio.upstream_peer"
# the node metadata fields Istio's exchange carries (its extractNodeFlatBufferFromStruct)
EXCHANGED = ("NAME", "NAMESPACE", "OWNER", "WORKLOAD_NAME", "ISTIO_VERSION", "MESH_ID", "CLUSTER_ID",
             "LABELS", "PLATFORM_METADATA", "APP_CONTAINERS")
DIRECTIONS = ("INBOUND", "OUTBOUND", "")
MAX_HEADER = 16384          # a larger value is not decoded (counted as a failure)
CACHE = 1024                # decoded peers kept, by header value (the memo's bound)


class PeerMetadataError(ValueError):
    """A peer's x-envoy-peer-metadata that is not base64 of a Struct."""


def exchanged(metadata: dict[str, Any]) -> dict[str, Any]:
    """The node metadata fields the exchange carries, in their wire shape (strings,
    and string maps for LABELS and PLATFORM_METADATA)."""
    out: dict[str, Any] = {}
    for k in EXCHANGED:
        v = metadata.get(k)
        if v is None:
            continue
        if k in ("LABELS", "PLATFORM_METADATA"):
            if isinstance(v, dict):
                out[k] = {str(a): str(b) for a, b in v.items()}
        else:
            out[k] = ",".join(map(str, v)) if isinstance(v, list) else str(v)
    return out


def encode(metadata: dict[str, Any]) -> bytes:
    """The header value for `metadata` (the exchanged fields only)."""
    s = struct_pb2.Struct()
    s.update(exchanged(metadata))
    return base64.b64encode(s.SerializeToString(deterministic=True))


def decode(value: bytes) -> dict[str, Any]:
    """A peer's header value as its metadata fields; PeerMetadataError if it is not
    base64 (padding optional, as Istio's decodeWithoutPadding) of a Struct."""
    if len(value) > MAX_HEADER:
        raise PeerMetadataError(f"longer than {MAX_HEADER} bytes")
    try:
        raw = base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError) as e:
        raise PeerMetadataError(f"not base64: {e}") from None
    s = struct_pb2.Struct()
    try:
        s.ParseFromString(raw)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise PeerMetadataError(f"not a serialized Struct: {e}") from None
    return _fields(s)


_MAPS = ("LABELS", "PLATFORM_METADATA")


def _fields(s: struct_pb2.Struct) -> dict[str, Any]:
    """The exchanged fields of a peer's Struct, read as Istio reads them: strings, and
    maps of strings; a value of another kind is left out (never converted: a number
    may be NaN, a nested Struct deep)."""
    out: dict[str, Any] = {}
    fields = s.fields
    for k in EXCHANGED:
        if k not in fields:
            continue
        v = fields[k]
        kind = v.WhichOneof("kind")
        if k in _MAPS:
            if kind == "struct_value":
                out[k] = {a: b.string_value for a, b in v.struct_value.fields.items()
                          if b.WhichOneof("kind") == "string_value"}
        elif kind == "string_value":
            out[k] = v.string_value
    return out


def node_of(cfg: dict, ctx: BuildContext) -> tuple[str, dict[str, Any]]:
    """(id, metadata) of this proxy: the filter's `node`, else the bootstrap's."""
    node = cfg.get("node")
    if node is None:
        xds = getattr(ctx.config, "xds", None)
        if xds is not None and (xds.node.id or xds.node.metadata):
            return xds.node.id, dict(xds.node.metadata)
        raw = getattr(ctx.config, "raw", None) or {}
        node = raw.get("node") if isinstance(raw, dict) else None
    if node is None:
        return "", {}
    if not isinstance(node, dict):
        raise ValueError("node: expected {id, metadata}")
    C.known_keys(node, {"id", "cluster", "metadata", "locality"}, "node")
    md = node.get("metadata", {}) or {}
    if not isinstance(md, dict):
        raise ValueError("node.metadata: expected a mapping")
    return str(node.get("id", "")), md


def direction_of(cfg: dict, ctx: BuildContext) -> str:
    d = cfg.get("direction")
    if d is None:
        d = (getattr(ctx.listener, "options", None) or {}).get("traffic_direction", "")
    if d not in DIRECTIONS:
        raise ValueError(f"direction: expected INBOUND or OUTBOUND, not {d!r}")
    return str(d)


class PeerMetadataFilter(HttpFilter):
    name = "peer_metadata"

    def __init__(self, node_id: str, metadata: dict[str, Any], direction: str = "",
                 name: str = "peer_metadata", stats: Store | None = None, memo: Any = NO_MEMO):
        self.name = name
        self.node_id = node_id.encode("latin-1", "replace")
        self.value = encode(metadata) if metadata else b""
        self.direction = direction
        self._failed: Counter = (stats or Store()).counter(f"{name}.header_decode_failed")
        # peers are few: their headers decoded, by value (the proxy's memo registry)
        self._memo = memo

    def _peer(self, raw: bytes) -> dict[str, Any] | None:
        got = self._memo.get(raw)
        if got is not None:
            return got
        try:
            return self._memo.put(raw, decode(raw))
        except PeerMetadataError:
            self._failed.value += 1
            return None

    def _take(self, headers: Any, ctx: StreamContext, key: str) -> bool:
        """Read and strip a peer's headers; whether it sent metadata."""
        pid = headers.getb(H_ID)
        raw = headers.getb(H_METADATA)
        if pid is not None:
            headers.remove(H_ID)
        if raw is None:
            return False
        headers.remove(H_METADATA)
        if not raw:
            return False
        peer = self._peer(raw)
        if peer is not None:
            st = ctx.state()
            st[key] = peer
            if pid:
                st[key + "_id"] = pid.decode("latin-1")
        return True

    def on_request(self, ctx: StreamContext) -> Action | None:
        h = ctx.request.headers
        if self._take(h, ctx, DOWNSTREAM_PEER):
            ctx.state()[self] = True        # the response may carry ours back
        if self.direction != "INBOUND":
            if self.value:
                h.set(H_METADATA, self.value)
            if self.node_id:
                h.set(H_ID, self.node_id)
        return None

    def on_response(self, ctx: StreamContext) -> Action | None:
        resp = ctx.response
        if resp is None:
            return None
        h = resp.headers
        self._take(h, ctx, UPSTREAM_PEER)
        if self.direction != "OUTBOUND":
            st = ctx.filter_state
            if st is not None and st.get(self):
                if self.value:
                    h.set(H_METADATA, self.value)
                if self.node_id:
                    h.set(H_ID, self.node_id)
        return None


def _factory(name: str, cfg: dict, ctx: BuildContext) -> PeerMetadataFilter:
    cfg = cfg or {}
    C.known_keys(cfg, {"node", "direction"}, "peer_metadata")
    node_id, md = node_of(cfg, ctx)
    return PeerMetadataFilter(node_id, md, direction_of(cfg, ctx), name, ctx.services.stats,
                              ctx.services.memo_table("istio.peer_metadata", CACHE,
                                                      "peers' x-envoy-peer-metadata headers, decoded, by value"))


register_filter("peer_metadata", _factory)
