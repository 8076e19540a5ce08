"""proxy-wasm ABI v0.2.1 constants and the "pairs" serialization of header maps.

Values are the wire values of the spec (status, enums) and of Envoy's filter
statuses, which SDKs emit. Pure data and codecs: no wasmtime, no I/O.
"""
from __future__ import annotations

import struct

# proxy_status_t
OK = 0
NOT_FOUND = 1
BAD_ARGUMENT = 2
SERIALIZATION_FAILURE = 3
PARSE_FAILURE = 4
INVALID_MEMORY_ACCESS = 6
EMPTY = 7
CAS_MISMATCH = 8
INTERNAL_FAILURE = 10
UNIMPLEMENTED = 12

# proxy_map_type_t
MAP_REQUEST_HEADERS = 0
MAP_REQUEST_TRAILERS = 1
MAP_RESPONSE_HEADERS = 2
MAP_RESPONSE_TRAILERS = 3
MAP_GRPC_INITIAL = 4
MAP_GRPC_TRAILING = 5
MAP_CALL_RESPONSE_HEADERS = 6
MAP_CALL_RESPONSE_TRAILERS = 7

# proxy_buffer_type_t
BUF_REQUEST_BODY = 0
BUF_RESPONSE_BODY = 1
BUF_DOWNSTREAM_DATA = 2
BUF_UPSTREAM_DATA = 3
BUF_CALL_RESPONSE_BODY = 4
BUF_GRPC_MESSAGE = 5
BUF_VM_CONFIGURATION = 6
BUF_PLUGIN_CONFIGURATION = 7
BUF_FOREIGN_ARGS = 8

# proxy_stream_type_t
STREAM_REQUEST = 0
STREAM_RESPONSE = 1
STREAM_DOWNSTREAM = 2
STREAM_UPSTREAM = 3

# proxy_metric_type_t
METRIC_COUNTER = 0
METRIC_GAUGE = 1
METRIC_HISTOGRAM = 2

# Envoy's FilterHeadersStatus / FilterDataStatus as returned by the callbacks.
HEADERS_CONTINUE = 0
HEADERS_CONTINUE_AND_END_STREAM = 2
DATA_CONTINUE = 0
DATA_STOP_AND_BUFFER = 1
DATA_STOP_AND_WATERMARK = 2
DATA_STOP_NO_BUFFER = 3

# WASI errno
WASI_SUCCESS = 0
WASI_BADF = 8
WASI_FAULT = 21
WASI_INVAL = 28
WASI_NOTSUP = 58

LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "critical")

ABI_MARKERS = ("proxy_abi_version_0_2_1", "proxy_abi_version_0_2_0", "proxy_abi_version_0_1_0")

_U32 = struct.Struct("<I")


def encode_pairs(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """Serialize header pairs as cpp-host does; an empty map is b"" (ptr 0, size 0)."""
    if not pairs:
        return b""
    n = len(pairs)
    sizes = [n]
    for k, v in pairs:
        sizes.append(len(k))
        sizes.append(len(v))
    out = [struct.pack(f"<{len(sizes)}I", *sizes)]
    for k, v in pairs:
        out.append(k)
        out.append(b"\0")
        out.append(v)
        out.append(b"\0")
    return b"".join(out)


class PairsError(ValueError):
    pass


def decode_pairs(data: bytes) -> list[tuple[bytes, bytes]]:
    """Parse serialized pairs; accepts b"", b"\\0" and N=0 as the empty map."""
    if len(data) < 4:
        if data.strip(b"\0") == b"":
            return []
        raise PairsError("pairs buffer shorter than its count")
    (n,) = _U32.unpack_from(data, 0)
    head = 4 + 8 * n
    if n > 65536 or head > len(data):
        raise PairsError(f"pairs buffer too short for {n} pairs")
    lens = struct.unpack_from(f"<{2 * n}I", data, 4)
    out = []
    pos = head
    for i in range(n):
        kl, vl = lens[2 * i], lens[2 * i + 1]
        end = pos + kl + 1 + vl + 1
        if end > len(data):
            raise PairsError("pairs buffer truncated")
        out.append((bytes(data[pos:pos + kl]), bytes(data[pos + kl + 1:pos + kl + 1 + vl])))
        pos = end
    return out
