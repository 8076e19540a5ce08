"""W3C Trace Context: `traceparent` and `tracestate` (https://www.w3.org/TR/trace-context/).

Parsing follows the spec's rules as its test suite checks them: surrounding
spaces and tabs are ignored; version ff and upper-case hex are invalid; version
00 is exactly 55 characters, a later version may carry more after a '-'; an
all-zero trace id or parent id is invalid. A tracestate is all or nothing: one bad
member, a repeated key, or more than 32 members and the whole header is dropped.
Nothing here raises on input: a bad value reads as None (traceparent) or ()
(tracestate).
"""
from __future__ import annotations

import re

# lower-case hex only, as the spec says
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_OWS = " \t"
_SIMPLE_KEY = r"[a-z][a-z0-9_\-*/]{0,255}"
_TENANT_KEY = r"[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13}"
_KEY = re.compile(rf"(?:{_SIMPLE_KEY}|{_TENANT_KEY})")
# printable ASCII but ',' and '=', the last one not a space
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")

MAX_MEMBERS = 32
MAX_TRACESTATE = 512        # characters a proxy forwards, at most
_LONG_MEMBER = 128          # entries over this go first when the header must shrink


def parse_traceparent(value: str) -> tuple[int, int, int] | None:
    """(trace id, parent span id, flags) of a traceparent value, or None when invalid."""
    v = value.strip(_OWS)
    if len(v) < 55:
        return None
    m = _TRACEPARENT.match(v)
    if m is None:
        return None
    version = m.group(1)
    if version == "ff":
        return None
    if version == "00":
        if len(v) != 55:
            return None
    elif len(v) > 55 and v[55] != "-":
        return None
    trace_id = int(m.group(2), 16)
    span_id = int(m.group(3), 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(m.group(4), 16)


def format_traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


def parse_tracestate(values: list[str]) -> tuple[tuple[str, str], ...]:
    """The members of the tracestate header lines, in order, or () when any is invalid."""
    members: list[tuple[str, str]] = []
    seen: set[str] = set()
    for line in values:
        for raw in line.split(","):
            member = raw.strip(_OWS)
            if not member:
                continue
            k, eq, val = member.partition("=")
            if not eq or _KEY.fullmatch(k) is None or _VALUE.fullmatch(val) is None or k in seen:
                return ()
            seen.add(k)
            members.append((k, val))
            if len(members) > MAX_MEMBERS:
                return ()
    return tuple(members)


def format_tracestate(members: tuple[tuple[str, str], ...]) -> str:
    """The header value, within 512 characters: long entries go first, then the last ones."""
    entries = [f"{k}={v}" for k, v in members]
    text = ",".join(entries)
    if len(text) <= MAX_TRACESTATE:
        return text
    entries = [e for e in entries if len(e) <= _LONG_MEMBER]
    while entries and len(",".join(entries)) > MAX_TRACESTATE:
        entries.pop()
    return ",".join(entries)
