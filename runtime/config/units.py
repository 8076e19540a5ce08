"""Units written in mosnx.yaml: durations, byte sizes and host:port addresses.

Each parser takes what YAML hands over (a str, or an int/float for a bare number)
and returns plain numbers, or raises ValueError with a message fit to show a user
as is. Values are never negative.

Durations: `250ms`, `2s`, `1.5s`, `100us`, `1m`, `1h`, Go-style compounds such as
`1m30s`, and bare numbers (seconds). Units: ns, us (or µs), ms, s, m, h.

Sizes: bare numbers are bytes. Binary units are powers of 1024 (`KiB`, `MiB`,
`GiB`, `TiB`; Kubernetes' `Ki`, `Mi`, `Gi`, `Ti` too); decimal units are powers of
1000 (`KB`/`K`, `MB`/`M`, `GB`/`G`, `TB`/`T`), as Kubernetes quantities and disk
vendors count. `B` is bytes. Units ignore case. A fraction is allowed
(`1.5KiB` = 1536) and rounds down to whole bytes.
"""
from __future__ import annotations

import ipaddress
import math
import re
from fractions import Fraction

_DURATION_UNITS = {"ns": Fraction(1, 10**9), "us": Fraction(1, 10**6), "µs": Fraction(1, 10**6),
                   "ms": Fraction(1, 1000), "s": Fraction(1), "m": Fraction(60), "h": Fraction(3600)}
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DURATION_PART = re.compile(rf"({_NUMBER})(ns|us|µs|ms|s|m|h)")
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ns|us|µs|ms|s|m|h))+")

_SIZE_UNITS = {"": 1, "b": 1}
for _i, _p in enumerate("kmgt", start=1):
    _SIZE_UNITS[_p] = _SIZE_UNITS[_p + "b"] = 1000 ** _i
    _SIZE_UNITS[_p + "i"] = _SIZE_UNITS[_p + "ib"] = 1024 ** _i
_SIZE = re.compile(rf"({_NUMBER})\s*([a-zA-Z]*)")

DURATION_HINT = "a duration such as 250ms, 2s, 1m or 1h"
SIZE_HINT = "a size such as 512, 64KiB or 1MiB"
ADDRESS_HINT = "an address host:port, such as 127.0.0.1:8080 or [::1]:8080"


def _number(value: int | float) -> Fraction:
    if isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{value!r} is not a number")
    if value < 0:
        raise ValueError(f"{value} is negative")
    return Fraction(value)


def parse_duration(value: str | int | float) -> float:
    """Seconds in `value`; see the module docstring for the accepted forms."""
    if not isinstance(value, str):
        return float(_number(value))
    s = value.strip()
    if re.fullmatch(_NUMBER, s):
        return float(Fraction(s))
    if not _DURATION.fullmatch(s):
        if s.startswith("-"):
            raise ValueError(f'"{value}" is negative; durations are never negative')
        raise ValueError(f'"{value}" is not {DURATION_HINT}')
    total = sum((Fraction(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(s)), Fraction(0))
    return float(total)


def parse_size(value: str | int | float) -> int:
    """Bytes in `value`; see the module docstring for the accepted units."""
    if not isinstance(value, str):
        return math.floor(_number(value))
    m = _SIZE.fullmatch(value.strip())
    if m is None:
        if value.strip().startswith("-"):
            raise ValueError(f'"{value}" is negative; sizes are never negative')
        raise ValueError(f'"{value}" is not {SIZE_HINT}')
    number, unit = m.groups()
    mult = _SIZE_UNITS.get(unit.lower())
    if mult is None:
        raise ValueError(f'unknown size unit "{unit}" in "{value}"; use B, KiB, MiB, GiB, KB, MB or GB')
    return math.floor(Fraction(number) * mult)


def parse_address(value: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); the host is kept as written, without brackets."""
    s = value.strip()
    if s.startswith("["):
        host, sep, port = s[1:].partition("]:")
        if not sep:
            raise ValueError(f'"{value}" is not {ADDRESS_HINT}')
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f'"{host}" in "{value}" is not an IPv6 address') from None
    else:
        host, sep, port = s.rpartition(":")
        if not sep or not host:
            raise ValueError(f'"{value}" is not {ADDRESS_HINT}')
        if ":" in host:
            raise ValueError(f'"{value}": write an IPv6 address in brackets, as [::1]:8080')
        if any(c.isspace() for c in host):
            raise ValueError(f'"{value}": the host has a space in it')
    if not re.fullmatch("[0-9]+", port):
        raise ValueError(f'"{value}": the port "{port}" is not a number')
    p = int(port)
    if not 0 < p < 65536:
        raise ValueError(f'"{value}": port {p} is outside 1..65535')
    return host, p
