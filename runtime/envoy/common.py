"""Small translations shared by listeners, routes and clusters: durations,
socket addresses, string matchers and header mutations.

Matchers and header edits are compiled here, once per resource: what a request
meets is a closure with its constants captured (regexes compiled, names lowered).
"""
from __future__ import annotations

import re
from typing import Any, Callable


from ..actions import Action
from ..context import StreamContext
from ..headers import TOKEN, Headers
from ..pipeline import Pipeline
from .findings import Findings


def seconds(d: Any) -> float:
    """A google.protobuf.Duration in seconds."""
    return float(d.seconds) + d.nanos / 1e9 


def socket_address(addr: Any, f: Findings) -> tuple[str, int]:
    """An envoy.config.core.v3.Address as (host, port); only TCP socket addresses."""
    if addr.WhichOneof("address") != "socket_address":
        f.reject("only socket_address is supported (no pipe or internal addresses)")
    sa = addr.socket_address 
    fs = f.at("socket_address")
    if sa.protocol != 0:
        fs.reject("only TCP is supported", "protocol")
    if sa.WhichOneof("port_specifier") != "port_value":
        fs.reject("a port_value is needed (named ports are not supported)")
    if not sa.address:
        fs.reject("an address is needed", "address")
    fs.only(sa, {"address", "port_value", "protocol"})
    return sa.address, sa.port_value


def regex_of(m: Any, f: Findings) -> re.Pattern:
    """An envoy.type.matcher.v3.RegexMatcher, compiled (RE2 syntax is mostly Python's)."""
    try:
        return re.compile(m.regex) 
    except re.error as e:
        f.reject(f"bad regex {m.regex!r}: {e}", "regex") 


StrPred = Callable[[str], bool]


def string_matcher(m: Any, f: Findings) -> StrPred:
    """An envoy.type.matcher.v3.StringMatcher as a predicate on a string."""
    kind = m.WhichOneof("match_pattern") 
    ic = bool(m.ignore_case)
    if kind == "safe_regex":
        rx = regex_of(m.safe_regex, f.at("safe_regex")) 
        if ic:
            rx = re.compile(rx.pattern, re.IGNORECASE)
        return lambda s: rx.fullmatch(s) is not None
    if kind is None or kind == "custom":
        f.reject("a string matcher needs exact, prefix, suffix, contains or safe_regex")
    want = getattr(m, kind)
    if ic:
        want = want.lower()
    if kind == "exact":
        return (lambda s: s.lower() == want) if ic else (lambda s: s == want)
    if kind == "prefix":
        return (lambda s: s.lower().startswith(want)) if ic else (lambda s: s.startswith(want))
    if kind == "suffix":
        return (lambda s: s.lower().endswith(want)) if ic else (lambda s: s.endswith(want))
    return (lambda s: want in s.lower()) if ic else (lambda s: want in s)


# ---- header mutations ----

_APPEND, _ADD_IF_ABSENT, _OVERWRITE_OR_ADD, _OVERWRITE_IF_EXISTS = 0, 1, 2, 3


def header_edits(adds: list, removes: list, f: Findings, add_key: str) -> list[tuple[str, str, int]]:
    """HeaderValueOptions as (lowered name, value, append_action); removals as action -1.
    A value is kept as the bytes it goes out as (its UTF-8, or raw_value as given),
    each byte one character, as Headers encodes str (latin-1)."""
    for n in removes:
        if not TOKEN.fullmatch(n):
            f.reject(f"{n!r} is not a header name")
    out: list[tuple[str, str, int]] = [(n.lower(), "", -1) for n in removes]
    for i, hv in enumerate(adds):
        fi = f.at(add_key).at(i)
        name = hv.header.key
        value = hv.header.value.encode("utf-8").decode("latin-1") if hv.header.value \
            else hv.header.raw_value.decode("latin-1")
        if not name:
            fi.reject("a header needs a key", "header")
        if not TOKEN.fullmatch(name):
            fi.reject(f"{name!r} is not a header name", "header")
        if "\r" in value or "\n" in value or "\0" in value:
            fi.reject("a header value may not hold CR, LF or NUL", "header")
        if "%" in value and re.search(r"%[A-Z_]+(\(.*?\))?%", value):
            fi.warn("command operators (%...%) in header values are not expanded; sent as written", "header")
        action = hv.append_action
        if hv.HasField("append"):
            action = _APPEND if hv.append.value else _OVERWRITE_OR_ADD
        fi.only(hv, {"header", "append", "append_action", "keep_empty_value"})
        out.append((name.lower(), value, action))
    return out


def _apply(headers: Headers, edits: tuple[tuple[str, str, int], ...]) -> None:
    for name, value, action in edits:
        if action < 0:
            headers.remove(name)
        elif action == _APPEND:
            headers.add(name, value)
        elif action == _ADD_IF_ABSENT:
            if not headers.has(name.encode("latin-1")):
                headers.add(name, value)
        elif action == _OVERWRITE_OR_ADD:
            headers.set(name, value)
        elif headers.has(name.encode("latin-1")):
            headers.set(name, value)


def header_pipeline(request: list[tuple[str, str, int]], response: list[tuple[str, str, int]]) -> Pipeline:
    """Steps that edit the upstream request's and the response's headers."""
    req, resp = tuple(request), tuple(response)

    def on_upstream_request(ctx: StreamContext) -> Action | None:
        _apply(ctx.request.headers, req)
        return None

    def on_response(ctx: StreamContext) -> Action | None:
        if ctx.response is not None:
            _apply(ctx.response.headers, resp)
        return None

    return Pipeline(upstream_request=(on_upstream_request,) if req else (),
                    response=(on_response,) if resp else ())
