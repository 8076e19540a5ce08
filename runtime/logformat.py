"""Access-log formats: `%attribute%` references between literal text, compiled once.

A format names attributes of the one table in runtime.attributes between percent
signs (`%request.path%`, `%request.headers["user-agent"]%`, `%response.code%`),
plus `%start_time%` (the request's start, ISO 8601 UTC); `%%` is a literal percent
sign. parse_format finds every problem with its offsets in the format text, so the
config loader can point into the string; compile_format is what the proxy gets: a
LogFormat whose parts are literal strings and getters, so a log line is one join.
Nothing here reads config or files, and rendering never raises.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .attributes import ATTRIBUTES
from .diagnostics import did_you_mean

if TYPE_CHECKING:
    from .context import StreamContext

DEFAULT_FORMAT = ('[%start_time%] "%request.method% %request.path% %request.protocol%" %response.code% '
                  '%response.flags% %request.size% %response.size% %duration_ms% "%upstream.address%" '
                  '"%request.headers["x-forwarded-for"]%" "%request.headers["user-agent"]%" '
                  '"%request.id%" "%request.host%" "%route.name%" "%cluster.name%"')

SPECIAL = ("start_time",)
# a reference: a dotted name, then optionally ["key"] or ['key']
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
# an HTTP header name (RFC 9110 token)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_MAPS = ("request.headers", "response.headers")
# Envoy's command operators, for a hint when one is written where an attribute goes
_ENVOY = re.compile(r"([A-Z][A-Z_]*)(?:\(([^)]*)\))?(?::\d+)?")
_ENVOY_NAMES = {
    "START_TIME": "start_time", "RESPONSE_CODE": "response.code", "RESPONSE_FLAGS": "response.flags",
    "DURATION": "duration_ms", "BYTES_RECEIVED": "request.size", "BYTES_SENT": "response.size",
    "PROTOCOL": "request.protocol", "UPSTREAM_HOST": "upstream.address", "ROUTE_NAME": "route.name",
    "UPSTREAM_CLUSTER": "cluster.name", "DOWNSTREAM_REMOTE_ADDRESS": "source.address",
    "DOWNSTREAM_LOCAL_ADDRESS": "destination.address", "REQUESTED_SERVER_NAME": "connection.sni",
}
_PSEUDO = {":path": "request.path", ":method": "request.method", ":authority": "request.host",
           ":scheme": "request.scheme", "host": "request.host"}


def _envoy_hint(ref: str) -> str:
    """ (write %request.path% here) for an Envoy operator mosnx has an attribute for."""
    m = _ENVOY.fullmatch(ref)
    if m is None:
        return ""
    op, arg = m.group(1), (m.group(2) or "").strip()
    name = _ENVOY_NAMES.get(op)
    if op in ("REQ", "RESP") and arg:
        arg = arg.split("?")[0].lower()
        name = _PSEUDO.get(arg) if op == "REQ" else None
        if name is None:
            name = f'{"request" if op == "REQ" else "response"}.headers["{arg}"]'
    return f" (an Envoy operator; here write %{name}%)" if name else ""


@dataclass(frozen=True, slots=True)
class FormatError:
    """A problem at text[start:end] of a format."""
    start: int
    end: int
    message: str


@dataclass(frozen=True, slots=True)
class LogFormat:
    """A compiled format. Equal when the text is; `parts` are str or getter."""
    text: str
    parts: tuple[str | Callable[[Any], str], ...] = field(compare=False, repr=False)

    def render(self, ctx: StreamContext) -> str:
        # `p.__class__ is str` tells the getters apart, cheaper than isinstance
        return "".join([p if p.__class__ is str else p(ctx) for p in self.parts])  # type: ignore[operator]


def _start_time(ctx: StreamContext) -> str:
    w = ctx.start_wall
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(w)) + ".%03dZ" % int((w % 1) * 1000)


def _show(g: Callable[[StreamContext], Any]) -> Callable[[StreamContext], str]:
    def get(ctx: StreamContext) -> str:
        v = g(ctx)
        return "-" if v is None or v == "" else str(v)
    return get


def _reference(ref: str, at: int) -> tuple[Callable | None, FormatError | None]:
    """The getter for the text between two percent signs (at offset `at`), or its error."""
    end = at + len(ref)
    m = _NAME.match(ref)
    if m is None:
        return None, FormatError(at, end, f'"%{ref}%" is not an attribute reference; '
                                          f'write %request.path% (or %% for a percent sign)')
    name, rest = m.group(), ref[m.end():]
    if name in SPECIAL and not rest:
        return _start_time, None
    attr = ATTRIBUTES.get(name)
    if attr is None:
        envoy = _envoy_hint(ref)
        if envoy:
            return None, FormatError(at, end, f'unknown attribute "{ref}"{envoy}')
        hint = did_you_mean(name, list(ATTRIBUTES) + list(SPECIAL))
        return None, FormatError(at, at + len(name), f'unknown attribute "{name}"{hint}')
    key = None
    if rest:
        km = re.fullmatch(r"\[\s*(\"([^\"]*)\"|'([^']*)')\s*\]", rest)
        if km is None:
            return None, FormatError(at + len(name), end, f'bad key syntax "{rest}": write {name}["key"]')
        key = km.group(2) if km.group(2) is not None else km.group(3)
    if attr.keyed is None:
        if key is not None:
            return None, FormatError(at + len(name), end, f"{name} takes no key")
        return _show(attr.getter), None  # type: ignore[arg-type]  # an attribute without a key has a getter
    if key is None:
        return None, FormatError(at, end, f'{name} needs a key, as {name}["..."]')
    if not key:
        return None, FormatError(at + len(name), end, f"{name} needs a key, not an empty one")
    if name in _HEADER_MAPS and not _TOKEN.fullmatch(key):
        return None, FormatError(at + len(name), end, f'"{key}" is not a header name')
    return _show(attr.keyed(key)), None


def parse_format(text: str) -> tuple[list, list[FormatError]]:
    """(parts, problems): literal strings and getters in order, and every problem found."""
    parts: list = []
    errors: list[FormatError] = []
    lit: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find("%", i)
        if j < 0:
            lit.append(text[i:])
            break
        lit.append(text[i:j])
        if text.startswith("%%", j):
            lit.append("%")
            i = j + 2
            continue
        k = text.find("%", j + 1)
        if k < 0:
            errors.append(FormatError(j, n, '"%" is never closed: end the reference with "%", '
                                            'or write %% for a percent sign'))
            break
        g, err = _reference(text[j + 1:k], j + 1)
        if err is not None:
            errors.append(err)
        else:
            if "".join(lit):
                parts.append("".join(lit))
            lit = []
            parts.append(g)
        i = k + 1
    if "".join(lit):
        parts.append("".join(lit))
    return parts, errors


def compile_format(text: str) -> LogFormat:
    """The compiled format; ValueError naming the first problem."""
    parts, errors = parse_format(text)
    if errors:
        raise ValueError(errors[0].message)
    return LogFormat(text, tuple(parts))


DEFAULT = compile_format(DEFAULT_FORMAT)
