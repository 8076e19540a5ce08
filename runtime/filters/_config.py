"""Small readers for Envoy-style filter config values (durations, percentages).

Shared by the built-in filters; each raises ValueError with the offending key so
build_snapshot reports it against the filter that declared it.
"""
from __future__ import annotations

import re
from typing import Any

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DENOMINATOR = {"HUNDRED": 100, "TEN_THOUSAND": 10_000, "MILLION": 1_000_000}


def duration(value: Any, key: str) -> float:
    """Seconds from a number (seconds) or a string such as "2s", "500ms"."""
    if isinstance(value, bool):
        raise ValueError(f"{key}: expected a duration such as 2s or 500ms")
    if isinstance(value, (int, float)):
        v = float(value)
    else:
        m = _DURATION.fullmatch(str(value).strip())
        if not m:
            raise ValueError(f"{key}: expected a duration such as 2s or 500ms, not {value!r}")
        v = float(m.group(1)) * _UNIT[m.group(2)]
    if v < 0:
        raise ValueError(f"{key}: a duration cannot be negative")
    return v


def percent(value: Any, key: str) -> float:
    """0..100 from a number, "5%", or Envoy's {numerator, denominator}."""
    if isinstance(value, dict):
        num = value.get("numerator", 0)
        den = _DENOMINATOR.get(str(value.get("denominator", "HUNDRED")))
        if den is None or not isinstance(num, (int, float)):
            raise ValueError(f"{key}: expected {{numerator: N, denominator: HUNDRED|TEN_THOUSAND|MILLION}}")
        v = 100.0 * num / den
    else:
        try:
            v = float(str(value).rstrip("%")) if not isinstance(value, bool) else -1.0
        except ValueError:
            raise ValueError(f"{key}: expected a percentage, not {value!r}") from None
    if not 0.0 <= v <= 100.0:
        raise ValueError(f"{key}: a percentage must be within 0..100")
    return v


def status(value: Any, key: str, lo: int = 200, hi: int = 599) -> int:
    if isinstance(value, dict):       # Envoy's {code: 429}
        value = value.get("code")
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{key}: expected an HTTP status in {lo}..{hi}, not {value!r}")
    return value


def section(cfg: dict, key: str, allowed: set[str], where: str) -> dict | None:
    """The mapping `cfg[key]` with only `allowed` keys, or None when it is absent."""
    value = cfg.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a mapping")
    known_keys(value, allowed, where)
    return value


def known_keys(cfg: dict, allowed: set[str], where: str) -> None:
    extra = set(cfg) - allowed
    if extra:
        raise ValueError(f"{where}: unknown option(s) {', '.join(sorted(extra))}; "
                         f"known: {', '.join(sorted(allowed))}")
