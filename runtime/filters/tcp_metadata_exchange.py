"""Istio's TCP metadata exchange (istio.metadata_exchange as a network filter): the
wire format, and a reader of what a peer sent.

When a TLS connection between two sidecars negotiated the ALPN protocol the filter
names (`istio-peer-exchange`), each side first writes, before any byte of the
application, a preamble saying who it is, and reads (and strips) the peer's:

    magic      4 bytes, 0x3D230467, network order
    length     4 bytes, network order: the size of what follows
    payload    a serialized google.protobuf.Any whose type is google.protobuf.Struct,
               holding "x-envoy-peer-metadata" (a Struct of the node metadata fields
               Istio exchanges: peer_metadata.EXCHANGED) and
               "x-envoy-peer-metadata-id" (the node id, a string)

Invariants:
- A preamble is built once per config (local_preamble), never per connection.
- The reader never holds more than 8 + MAX_PAYLOAD bytes. Bytes that do not start
  with the magic are not a preamble: the reader gives them all back, untouched, and
  the peer stays unknown (as Istio, which then lets the data through).
- A payload that is not an Any of a Struct leaves the peer unknown; the bytes after
  it are the application's and are given back.
"""
from __future__ import annotations

import struct
from typing import Any

from google.protobuf import any_pb2, struct_pb2
from google.protobuf.message import DecodeError

from .peer_metadata import _fields, exchanged

MAGIC = 0x3D230467
HEADER = struct.Struct("!II")
KEY_METADATA = "x-envoy-peer-metadata"
KEY_ID = "x-envoy-peer-metadata-id"
STRUCT_TYPE = "type.googleapis.com/google.protobuf.Struct"
PROTOCOL = "istio-peer-exchange"
MAX_PAYLOAD = 64 * 1024         # a larger preamble is not taken (the peer stays unknown)

# reader states
NEED_MORE, DONE, INVALID = "need_more", "done", "invalid"

_preambles: dict[int, tuple[Any, bytes]] = {}


def encode(node_id: str, metadata: dict[str, Any]) -> bytes:
    """This node's preamble: the header and the Any of its exchanged metadata."""
    s = struct_pb2.Struct()
    s.fields[KEY_METADATA].struct_value.update(exchanged(metadata))
    if node_id:
        s.fields[KEY_ID].string_value = node_id
    a = any_pb2.Any(type_url=STRUCT_TYPE, value=s.SerializeToString(deterministic=True))
    payload = a.SerializeToString()
    return HEADER.pack(MAGIC, len(payload)) + payload


def local_preamble(config: Any) -> bytes:
    """This proxy's preamble, from its bootstrap node (xds.node, else the Envoy
    bootstrap's `node`); made once per config."""
    hit = _preambles.get(id(config))
    if hit is not None and hit[0] is config:
        return hit[1]
    if len(_preambles) > 64:           # configs of snapshots long gone
        _preambles.clear()
    node_id, md = "", {}
    xds = getattr(config, "xds", None)
    if xds is not None and (xds.node.id or xds.node.metadata):
        node_id, md = xds.node.id, dict(xds.node.metadata)
    else:
        raw = getattr(config, "raw", None) or {}
        node = raw.get("node") if isinstance(raw, dict) else None
        if isinstance(node, dict):
            node_id = str(node.get("id", ""))
            got = node.get("metadata")
            md = got if isinstance(got, dict) else {}
    out = encode(node_id, md)
    _preambles[id(config)] = (config, out)
    return out


def decode(payload: bytes) -> tuple[dict[str, Any], str] | None:
    """(the peer's exchanged metadata fields, its node id) from a preamble's payload;
    None when it is not an Any of a Struct."""
    a = any_pb2.Any()
    s = struct_pb2.Struct()
    try:
        a.ParseFromString(payload)
        if a.type_url != STRUCT_TYPE:
            return None
        s.ParseFromString(a.value)
    except (DecodeError, RuntimeError, ValueError):
        return None
    fields = s.fields
    md = fields[KEY_METADATA].struct_value if KEY_METADATA in fields else struct_pb2.Struct()
    pid = fields[KEY_ID].string_value if KEY_ID in fields else ""
    return _fields(md), pid


class Reader:
    """Reads a peer's preamble off the front of a byte stream, fed as it arrives."""
    __slots__ = ("buf", "state", "peer", "peer_id")

    def __init__(self) -> None:
        self.buf = b""
        self.state = NEED_MORE
        self.peer: dict[str, Any] | None = None
        self.peer_id = ""

    def feed(self, data: bytes) -> bytes:
        """Take `data`; what follows the preamble (the application's bytes) is given
        back once the preamble is read or found missing (state DONE or INVALID),
        b"" while more is needed."""
        if self.state != NEED_MORE:
            return data
        buf = self.buf + data
        if len(buf) < HEADER.size:
            if not HEADER.pack(MAGIC, 0).startswith(buf[:4]):
                return self._invalid(buf)
            self.buf = buf
            return b""
        magic, size = HEADER.unpack_from(buf)
        if magic != MAGIC or size > MAX_PAYLOAD:
            return self._invalid(buf)
        end = HEADER.size + size
        if len(buf) < end:
            self.buf = buf
            return b""
        self.buf = b""
        got = decode(buf[HEADER.size:end])
        if got is None:
            self.state = INVALID
        else:
            self.state = DONE
            self.peer, self.peer_id = got
        return buf[end:]

    def eof(self) -> bytes:
        """The stream ended before a whole preamble: what was held goes on."""
        if self.state != NEED_MORE:
            return b""
        return self._invalid(self.buf)

    def _invalid(self, buf: bytes) -> bytes:
        self.state = INVALID
        self.buf = b""
        return buf
