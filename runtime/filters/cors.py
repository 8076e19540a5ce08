"""The CORS filter: cross-origin requests as Envoy's envoy.filters.http.cors answers them.

Config (CorsConfig) is validated and compiled once: the origin matchers, the header
values the replies carry. The filter keeps no per-stream state but one entry in
ctx.state() for a request whose Origin matched, so its response gets the headers.

- A request without Origin, or whose Origin no matcher accepts, passes through
  untouched (a non-matching one counts origin_invalid); an accepted one counts
  origin_valid.
- A preflight (OPTIONS with Origin and Access-Control-Request-Method) whose origin
  is accepted is answered here, 200 with the allow-* headers, and goes no further;
  one whose origin is not accepted goes on upstream (forward_not_matching_preflights,
  Envoy's default), or is answered 200 without CORS headers when that is false.
- Any other accepted request goes on; its response gets Access-Control-Allow-Origin
  (the request's origin), -Allow-Credentials and -Expose-Headers.
- filter_enabled (default 100%) and shadow_enabled (default 0%) are shares of
  requests: shadow only counts. When both hit, filter_enabled wins, as in Envoy.

Stats are Envoy's: `http.<listener>.cors.origin_valid` and `.origin_invalid`.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any, Callable

from ..actions import Action, LocalReply
from ..context import StreamContext
from ..pipeline import HttpFilter
from ..registry import BuildContext, register_filter
from ..stats import Counter, Store
from . import _config as C

STATS = ("origin_valid", "origin_invalid")

MATCH_KINDS = ("exact", "prefix", "suffix", "contains", "safe_regex")
KEYS = {"allow_origin_string_match", "allow_methods", "allow_headers", "expose_headers", "max_age",
        "allow_credentials", "filter_enabled", "shadow_enabled", "allow_private_network_access",
        "forward_not_matching_preflights"}

Matcher = Callable[[str], bool]

H_ORIGIN = b"origin"
H_REQUEST_METHOD = b"access-control-request-method"
H_REQUEST_PRIVATE = b"access-control-request-private-network"


def _matcher(m: Any, i: int) -> Matcher:
    where = f"cors.allow_origin_string_match[{i}]"
    if not isinstance(m, dict):
        raise ValueError(f"{where}: expected one of {{{', '.join(MATCH_KINDS)}}}, e.g. {{exact: https://a.example}}")
    C.known_keys(m, set(MATCH_KINDS) | {"ignore_case"}, where)
    kinds = [k for k in MATCH_KINDS if k in m]
    if len(kinds) != 1:
        raise ValueError(f"{where}: give exactly one of {', '.join(MATCH_KINDS)}")
    kind = kinds[0]
    ic = bool(m.get("ignore_case", False))
    v = m[kind]
    if kind == "safe_regex":
        v = v.get("regex") if isinstance(v, dict) else v
        if not isinstance(v, str):
            raise ValueError(f"{where}.safe_regex: expected a regular expression")
        try:
            rx = re.compile(v, re.IGNORECASE if ic else 0)
        except re.error as e:
            raise ValueError(f"{where}.safe_regex: {e}") from None
        return lambda o: rx.fullmatch(o) is not None
    if not isinstance(v, str):
        raise ValueError(f"{where}.{kind}: expected a string")
    if ic:
        lv = v.lower()
        if kind == "exact":
            return lambda o: o.lower() == lv
        if kind == "prefix":
            return lambda o: o.lower().startswith(lv)
        if kind == "suffix":
            return lambda o: o.lower().endswith(lv)
        return lambda o: lv in o.lower()
    if kind == "exact":
        return lambda o: o == v
    if kind == "prefix":
        return lambda o: o.startswith(v)
    if kind == "suffix":
        return lambda o: o.endswith(v)
    return lambda o: v in o


def _header_list(value: Any, key: str) -> str:
    """A header value from a string ("GET, PUT") or a list of strings."""
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(x, str) for x in value):
        return ", ".join(value)
    if isinstance(value, str):
        return value
    raise ValueError(f"cors.{key}: expected a string or a list of strings")


def _flag(cfg: dict, key: str, default: bool) -> bool:
    v = cfg.get(key, default)
    if not isinstance(v, bool):
        raise ValueError(f"cors.{key}: expected true or false")
    return v


@dataclass(frozen=True, slots=True)
class CorsConfig:
    """One CORS policy, compiled: Envoy's CorsPolicy field names and meanings."""
    origins: tuple[Matcher, ...] = ()
    allow_methods: str = ""
    allow_headers: str = ""
    expose_headers: str = ""
    max_age: str = ""
    allow_credentials: bool = False
    filter_enabled: float = 100.0
    shadow_enabled: float = 0.0
    allow_private_network_access: bool = False
    forward_not_matching_preflights: bool = True

    @classmethod
    def from_dict(cls, cfg: dict) -> "CorsConfig":
        C.known_keys(cfg, KEYS, "cors")
        raw = cfg.get("allow_origin_string_match", [])
        if not isinstance(raw, list):
            raise ValueError("cors.allow_origin_string_match: expected a list of matchers")
        max_age = cfg.get("max_age", "")
        if isinstance(max_age, bool) or not isinstance(max_age, (int, str)) or (
                str(max_age) and not str(max_age).isdigit()):
            raise ValueError("cors.max_age: expected a number of seconds")
        return cls(
            origins=tuple(_matcher(m, i) for i, m in enumerate(raw)),
            allow_methods=_header_list(cfg.get("allow_methods"), "allow_methods"),
            allow_headers=_header_list(cfg.get("allow_headers"), "allow_headers"),
            expose_headers=_header_list(cfg.get("expose_headers"), "expose_headers"),
            max_age=str(max_age),
            allow_credentials=_flag(cfg, "allow_credentials", False),
            filter_enabled=C.percent(cfg.get("filter_enabled", 100), "cors.filter_enabled"),
            shadow_enabled=C.percent(cfg.get("shadow_enabled", 0), "cors.shadow_enabled"),
            allow_private_network_access=_flag(cfg, "allow_private_network_access", False),
            forward_not_matching_preflights=_flag(cfg, "forward_not_matching_preflights", True))

    def allows(self, origin: str) -> bool:
        for m in self.origins:
            if m("*") or m(origin):       # a matcher that takes "*" takes every origin, as Envoy's
                return True
        return False


def _hit(percent: float, rand: Callable[[], float]) -> bool:
    return percent >= 100.0 or (percent > 0.0 and rand() * 100.0 < percent)


class CorsFilter(HttpFilter):
    name = "cors"

    def __init__(self, config: CorsConfig, name: str = "cors", stats: Store | None = None,
                 listener: str = "listener", rand: Callable[[], float] = random.random):
        self.config = config
        self.name = name
        self.rand = rand
        stats = stats or Store()
        self._valid: Counter = stats.counter(f"http.{listener}.cors.origin_valid")
        self._invalid: Counter = stats.counter(f"http.{listener}.cors.origin_invalid")
        c = config
        # what every accepted response carries besides the origin, and a preflight's reply
        self._response: tuple[tuple[bytes, bytes], ...] = tuple(
            (k, v.encode("latin-1")) for k, v in (
                (b"access-control-allow-credentials", "true" if c.allow_credentials else ""),
                (b"access-control-expose-headers", c.expose_headers)) if v)
        self._preflight: tuple[tuple[str, str], ...] = tuple((k, v) for k, v in (
            ("access-control-allow-credentials", "true" if c.allow_credentials else ""),
            ("access-control-allow-methods", c.allow_methods),
            ("access-control-allow-headers", c.allow_headers),
            ("access-control-max-age", c.max_age),
            ("access-control-expose-headers", c.expose_headers)) if v)

    def on_request(self, ctx: StreamContext) -> Action | None:
        cfg = self.config
        enabled = _hit(cfg.filter_enabled, self.rand)
        if not enabled and not _hit(cfg.shadow_enabled, self.rand):
            return None
        h = ctx.request.headers
        raw = h.getb(H_ORIGIN)
        if not raw:
            return None
        origin = raw.decode("latin-1")
        preflight = ctx.request.method == "OPTIONS" and bool(h.getb(H_REQUEST_METHOD))
        if not cfg.allows(origin):
            self._invalid.value += 1
            if enabled and preflight and not cfg.forward_not_matching_preflights:
                return LocalReply(200)
            return None
        self._valid.value += 1
        if not enabled:
            return None                   # shadow: counted, not enforced
        if not preflight:
            ctx.state()[self] = raw
            return None
        headers = (("access-control-allow-origin", origin),) + self._preflight
        if cfg.allow_private_network_access and h.getb(H_REQUEST_PRIVATE) == b"true":
            headers += (("access-control-allow-private-network", "true"),)
        return LocalReply(200, b"", headers)

    def on_response(self, ctx: StreamContext) -> Action | None:
        st = ctx.filter_state
        origin = st.get(self) if st is not None else None
        if origin is None or ctx.response is None:
            return None
        rh = ctx.response.headers
        rh.set(b"access-control-allow-origin", origin)
        for k, v in self._response:
            rh.set(k, v)
        return None


def _factory(name: str, cfg: dict, ctx: BuildContext) -> CorsFilter:
    listener = getattr(ctx.listener, "name", "") or "listener"
    return CorsFilter(CorsConfig.from_dict(cfg or {}), name, ctx.services.stats, listener)


register_filter("cors", _factory)
