"""SkyWalking cross-process propagation, protocol v3: `sw8` and `sw8-correlation`
(https://skywalking.apache.org/docs/main/next/en/api/x-process-propagation-headers-v3/).

sw8 is eight '-'-separated fields: sample (0 or 1), trace id, parent segment id,
parent span id (an integer), parent service, parent service instance, parent
endpoint, and the address the client used for the target; every field but sample
and span id is base64 (standard alphabet, padded). sw8-correlation is passed
through as it came. A value that breaks the format reads as None.
"""
from __future__ import annotations

import base64
import binascii

_b2a = binascii.b2a_base64
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sw8:
    sampled: bool
    trace_id: str
    segment_id: str
    span_id: int
    service: str
    instance: str
    endpoint: str
    address: str


def _b64d(s: str) -> str | None:
    if not s:
        return None
    try:
        return base64.b64decode(s.encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeError):
        return None


def b64e(s: str) -> str:
    return _b2a(s.encode("utf-8"), newline=False).decode("ascii")


def parse_sw8(value: str) -> Sw8 | None:
    parts = value.strip().split("-")
    if len(parts) != 8 or parts[0] not in ("0", "1"):
        return None
    span = parts[3]
    if not span.isdigit() or len(span) > 10:
        return None
    fields = [_b64d(p) for p in (parts[1], parts[2], parts[4], parts[5], parts[6], parts[7])]
    if any(f is None for f in fields):
        return None
    trace, segment, service, instance, endpoint, address = fields
    return Sw8(parts[0] == "1", trace, segment, int(span), service, instance, endpoint, address)  # type: ignore[arg-type]


def format_sw8(h: Sw8) -> str:
    return "-".join(("1" if h.sampled else "0", b64e(h.trace_id), b64e(h.segment_id), str(h.span_id),
                     b64e(h.service), b64e(h.instance), b64e(h.endpoint), b64e(h.address)))
