"""The typed scheme of the language: value types, functions, phases and literal units.

Field types are not declared here: they are runtime.attributes' types (the one
attribute table). This module adds only what is the language's own: literal
types, set types, the function signatures and the phase order.
"""
from __future__ import annotations

import ipaddress
import re

from mosnx.runtime.attributes import ATTRIBUTES, BOOL, DURATION, INT, IP, STRING, Attribute

PERCENT = "percent"
CIDR = "cidr"
SET_STRING, SET_INT, SET_CIDR = "set<string>", "set<int>", "set<cidr>"
SET_OF = {STRING: SET_STRING, INT: SET_INT, IP: SET_CIDR, CIDR: SET_CIDR}
__all__ = ["STRING", "INT", "BOOL", "DURATION", "IP", "PERCENT", "CIDR"]

# Phases in stream order; an attribute is readable from its Attribute.phase on.
# "route" is the route body (the route is chosen); a route's guard is "request".
PHASE_ORDER = {"request": 0, "route": 1, "response": 2, "log": 3}

# name -> (argument types, result type); "field" means a field reference
FUNCTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "exists": (("field",), BOOL),
    "lower": ((STRING,), STRING),
    "upper": ((STRING,), STRING),
}

ORDERED = frozenset({INT, DURATION})
STRING_OPS = frozenset({"prefix", "suffix", "contains", "segment_prefix", "~"})

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"(\d+)/(s|m|h)")


def attribute(name: str) -> Attribute | None:
    return ATTRIBUTES.get(name)


def parse_duration(text: str) -> float | None:
    """Seconds, or None when the unit is not one of ms, s, m, h."""
    m = _DURATION.fullmatch(text)
    return float(m.group(1)) * _UNIT[m.group(2)] if m else None


def parse_percent(text: str) -> float | None:
    """0..100, or None when out of range."""
    try:
        v = float(text.rstrip("%"))
    except ValueError:
        return None
    return v if 0.0 <= v <= 100.0 else None


def parse_rate(text: str) -> tuple[int, float] | None:
    """(tokens, per seconds), or None for a bad unit or a zero rate."""
    m = _RATE.fullmatch(text)
    if not m or int(m.group(1)) <= 0:
        return None
    return int(m.group(1)), _UNIT[m.group(2)]


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """An ip_address, an ip_network (for a /len), or None when malformed."""
    try:
        if "/" in text:
            return ipaddress.ip_network(text, strict=False)
        return ipaddress.ip_address(text)
    except ValueError:
        return None
