"""Zipkin B3 propagation: the multi-header form (x-b3-traceid, x-b3-spanid,
x-b3-parentspanid, x-b3-sampled, x-b3-flags) and the single `b3` header
(https://github.com/openzipkin/b3-propagation).

Trace ids are 64 or 128 bits (16 or 32 hex digits), span ids 64 bits; a 64-bit
trace id is kept as the low half of a 128-bit one, as OpenTelemetry does, and is
written back as 32 digits. A sampling-only value ("0", "1", "d") carries no ids.
A value that breaks the format reads as INVALID, so the caller can count it.
"""
from __future__ import annotations

import re

_HEX16 = re.compile(r"[0-9a-f]{16}")
_TRACE = re.compile(r"[0-9a-f]{16}(?:[0-9a-f]{16})?")


class B3:
    """What one B3 carrier said: ids (0: absent), and the sampling decision (None: deferred)."""
    __slots__ = ("trace_id", "span_id", "parent_id", "sampled", "debug")

    def __init__(self, trace_id: int, span_id: int, parent_id: int, sampled: bool | None, debug: bool):
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.sampled = sampled
        self.debug = debug


INVALID = B3(0, 0, 0, None, False)

_SAMPLED = {"1": True, "0": False, "true": True, "false": False, "d": True}


def _trace_id(s: str) -> int:
    if _TRACE.fullmatch(s) is None:
        return 0
    return int(s, 16)


def _span_id(s: str) -> int:
    if _HEX16.fullmatch(s) is None:
        return 0
    return int(s, 16)


def parse_single(value: str) -> B3:
    v = value.strip()
    if v in ("0", "1", "d"):
        return B3(0, 0, 0, v != "0", v == "d")
    parts = v.split("-")
    if not 2 <= len(parts) <= 4:
        return INVALID
    trace_id = _trace_id(parts[0])
    span_id = _span_id(parts[1])
    if not trace_id or not span_id:
        return INVALID
    sampled: bool | None = None
    debug = False
    if len(parts) >= 3:
        s = parts[2]
        if s not in ("0", "1", "d"):
            return INVALID
        sampled = s != "0"
        debug = s == "d"
    parent = 0
    if len(parts) == 4:
        parent = _span_id(parts[3])
        if not parent:
            return INVALID
    return B3(trace_id, span_id, parent, sampled, debug)


def parse_multi(trace: str | None, span: str | None, parent: str | None, sampled: str | None,
                flags: str | None) -> B3:
    debug = flags is not None and flags.strip() == "1"
    decision: bool | None = True if debug else None
    if sampled is not None and not debug:
        decision = _SAMPLED.get(sampled.strip().lower())
        if decision is None:
            return INVALID
    if trace is None and span is None:
        return B3(0, 0, 0, decision, debug)
    if trace is None or span is None:
        return INVALID
    trace_id = _trace_id(trace.strip())
    span_id = _span_id(span.strip())
    if not trace_id or not span_id:
        return INVALID
    parent_id = 0
    if parent is not None:
        parent_id = _span_id(parent.strip())
        if not parent_id:
            return INVALID
    return B3(trace_id, span_id, parent_id, decision, debug)


def format_single(trace_id: int, span_id: int, sampled: bool, parent_id: int = 0) -> str:
    s = f"{trace_id:032x}-{span_id:016x}-{'1' if sampled else '0'}"
    return f"{s}-{parent_id:016x}" if parent_id else s
