"""Access-log formats: `%attribute%` references and Envoy's command operators between
literal text, compiled once.

A format names attributes of the one table in runtime.attributes between percent
signs (`%request.path%`, `%request.headers["user-agent"]%`, `%response.code%`),
plus `%start_time%` (the request's start, ISO 8601 UTC), or Envoy's command operators
(`%REQ(:PATH)%`, `%RESPONSE_FLAGS%`, `%START_TIME(%s)%`: runtime.log_operators), told
apart by case: an operator starts with a capital letter. `%%` is a literal percent
sign; one newline at the end of a format is the line's end, which the writer adds.
parse_format finds every problem with its offsets in the format text, so the
config loader can point into the string; compile_format is what the proxy gets: a
LogFormat whose parts are literal strings and getters, so a log line is one join.
compile_json makes a JsonFormat from Envoy's json_format mapping: a value that is
one reference keeps its type (a number for RESPONSE_CODE, null when missing).
Nothing here reads config or files, and rendering never raises.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .attributes import ATTRIBUTES, DURATION, INT
from .diagnostics import did_you_mean
from .headers import TOKEN
from .log_operators import OperatorError, operator, start_time

if TYPE_CHECKING:
    from .context import StreamContext

DEFAULT_FORMAT = ('[%start_time%] "%request.method% %request.path% %request.protocol%" %response.code% '
                  '%response.flags% %request.size% %response.size% %duration_ms% "%upstream.address%" '
                  '"%request.headers["x-forwarded-for"]%" "%request.headers["user-agent"]%" '
                  '"%request.id%" "%request.host%" "%route.name%" "%cluster.name%"')

SPECIAL = ("start_time",)
# a reference: a dotted name, then optionally ["key"] or ['key']
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_HEADER_MAPS = ("request.headers", "response.headers")
# Envoy's command operator: NAME, NAME(arg) and either with :length; the argument may
# hold percent signs (START_TIME's time format), never a closing parenthesis
_OPERATOR = re.compile(r"([A-Z][A-Z0-9_]*)(?:\(([^)]*)\))?(?::(\d+))?%")
_OPERATOR_NAME = re.compile(r"[A-Z][A-Z0-9_]*")

# Envoy's default format, for an Envoy access log configured without one
ENVOY_DEFAULT_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"\n')
# Istio's proxy access-log format (meshConfig.accessLogFormat left empty)
ISTIO_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n")


@dataclass(frozen=True, slots=True)
class FormatError:
    """A problem at text[start:end] of a format."""
    start: int
    end: int
    message: str


@dataclass(frozen=True, slots=True)
class Ref:
    """One reference: its raw getter (None or "" when missing) and whether it is a number."""
    get: Callable[[Any], Any]
    numeric: bool


@dataclass(frozen=True, slots=True)
class LogFormat:
    """A compiled format. Equal when the text (and the omit_empty choice) is; `parts` are str or getter."""
    text: str
    parts: tuple[str | Callable[[Any], str], ...] = field(compare=False, repr=False)
    omit_empty: bool = False

    def render(self, ctx: StreamContext) -> str:
        # `p.__class__ is str` tells the getters apart, cheaper than isinstance
        return "".join([p if p.__class__ is str else p(ctx) for p in self.parts])  # type: ignore[operator]


@dataclass(frozen=True, slots=True)
class JsonFormat:
    """A compiled json_format: one JSON object per line. Equal when the mapping is."""
    text: str                                       # the mapping as canonical JSON
    fields: tuple[tuple[str, Any], ...] = field(compare=False, repr=False)
    omit_empty: bool = False

    def render(self, ctx: StreamContext) -> str:
        return json.dumps(_render_fields(self.fields, ctx, self.omit_empty), ensure_ascii=False,
                          separators=(",", ":"), default=str)


def _render_fields(fields: tuple[tuple[str, Any], ...], ctx: StreamContext, omit: bool) -> dict:
    out: dict[str, Any] = {}
    for k, v in fields:
        c = v.__class__
        if c is Ref:
            x = v.get(ctx)
            if x == "":
                x = None
        elif c is LogFormat:
            x = v.render(ctx)
        elif c is tuple:
            x = _render_fields(v, ctx, omit)
            if not x:
                x = None
        else:
            x = v
        if x is None and omit:
            continue
        out[k] = x
    return out


def _show(g: Callable[[StreamContext], Any], missing: str = "-") -> Callable[[StreamContext], str]:
    def get(ctx: StreamContext) -> str:
        v = g(ctx)
        return missing if v is None or v == "" else str(v)
    return get


def _reference(ref: str, at: int) -> tuple[Ref | None, FormatError | None]:
    """The getter for the text between two percent signs (at offset `at`), or its error."""
    end = at + len(ref)
    m = _NAME.match(ref)
    if m is None:
        return None, FormatError(at, end, f'"%{ref}%" is not an attribute reference; '
                                          f'write %request.path% (or %% for a percent sign)')
    name, rest = m.group(), ref[m.end():]
    if name in SPECIAL and not rest:
        return Ref(start_time(), False), None     # Envoy's default START_TIME, strftime cached per second
    attr = ATTRIBUTES.get(name)
    if attr is None:
        hint = did_you_mean(name, list(ATTRIBUTES) + list(SPECIAL))
        return None, FormatError(at, at + len(name), f'unknown attribute "{name}"{hint}')
    key = None
    if rest:
        km = re.fullmatch(r"\[\s*(\"([^\"]*)\"|'([^']*)')\s*\]", rest)
        if km is None:
            return None, FormatError(at + len(name), end, f'bad key syntax "{rest}": write {name}["key"]')
        key = km.group(2) if km.group(2) is not None else km.group(3)
    numeric = attr.type in (INT, DURATION)
    if attr.keyed is None:
        if key is not None:
            return None, FormatError(at + len(name), end, f"{name} takes no key")
        return Ref(attr.getter, numeric), None  # type: ignore[arg-type]  # an attribute without a key has a getter
    if key is None:
        return None, FormatError(at, end, f'{name} needs a key, as {name}["..."]')
    if not key:
        return None, FormatError(at + len(name), end, f"{name} needs a key, not an empty one")
    if name in _HEADER_MAPS and not TOKEN.fullmatch(key):
        return None, FormatError(at + len(name), end, f'"{key}" is not a header name')
    return Ref(attr.keyed(key), numeric), None


def _operator(text: str, j: int) -> tuple[Ref | None, FormatError | None, int]:
    """The Envoy operator whose % is at text[j]: (ref, error, the offset just past it)."""
    m = _OPERATOR.match(text, j + 1)
    if m is None:
        nm = _OPERATOR_NAME.match(text, j + 1)
        after = nm.end() if nm else j + 1
        if text.startswith("(", after) and text.find(")", after) < 0:
            return None, FormatError(after, len(text), '"(" is never closed: end the argument with ")"'), len(text)
        k = text.find("%", after)
        stop = k + 1 if k >= 0 else len(text)
        return None, FormatError(j, max(stop, j + 1), 'bad command operator: write %NAME%, %NAME(arg)% or '
                                                     '%NAME(arg):length% (or %% for a percent sign)'), stop
    name, arg, length = m.group(1), m.group(2), m.group(3)
    try:
        op = operator(name, arg, int(length) if length is not None else None)
    except OperatorError as e:
        span = {"name": m.span(1), "arg": m.span(2) if arg is not None else m.span(1),
                "length": m.span(3) if length is not None else m.span(1)}[e.where]
        return None, FormatError(span[0], max(span[1], span[0] + 1), str(e)), m.end()
    return Ref(op.get, op.numeric), None, m.end()


def _parse(text: str) -> tuple[list[str | Ref], list[FormatError]]:
    """Literal strings and references in order, and every problem found."""
    parts: list[str | Ref] = []
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
        if j + 1 < n and "A" <= text[j + 1] <= "Z":
            g, err, i = _operator(text, j)
        else:
            k = text.find("%", j + 1)
            if k < 0:
                errors.append(FormatError(j, n, '"%" is never closed: end the reference with "%", '
                                                'or write %% for a percent sign'))
                break
            g, err = _reference(text[j + 1:k], j + 1)
            i = k + 1
        if err is not None:
            errors.append(err)
        elif g is not None:
            if "".join(lit):
                parts.append("".join(lit))
            lit = []
            parts.append(g)
    if "".join(lit):
        parts.append("".join(lit))
    last = parts[-1] if parts else None
    if isinstance(last, str) and last.endswith("\n"):
        parts[-1] = last[:-1]
        if not parts[-1]:
            parts.pop()
    return parts, errors


def parse_format(text: str, omit_empty: bool = False) -> tuple[list, list[FormatError]]:
    """(parts, problems): literal strings and getters in order, and every problem found.
    A getter shows a missing value as "-", or as "" with `omit_empty` (Envoy's omit_empty_values)."""
    items, errors = _parse(text)
    missing = "" if omit_empty else "-"
    return [p if isinstance(p, str) else _show(p.get, missing) for p in items], errors


def compile_format(text: str, omit_empty: bool = False) -> LogFormat:
    """The compiled format; ValueError naming the first problem."""
    parts, errors = parse_format(text, omit_empty)
    if errors:
        raise ValueError(errors[0].message)
    return LogFormat(text, tuple(parts), omit_empty)


def parse_json(mapping: dict, omit_empty: bool = False) -> tuple[JsonFormat | None, list[tuple[str, FormatError]]]:
    """Envoy's json_format: (the format, or None) and every problem, each with the dotted key it is under."""
    errors: list[tuple[str, FormatError]] = []

    def fields(m: dict, prefix: str) -> tuple[tuple[str, Any], ...]:
        out: list[tuple[str, Any]] = []
        for k, v in m.items():
            where = f"{prefix}{k}"
            if isinstance(v, str):
                items, errs = _parse(v)
                errors.extend((where, e) for e in errs)
                if len(items) == 1 and isinstance(items[0], Ref) and v.strip("\n").startswith("%"):
                    out.append((str(k), items[0]))
                else:
                    out.append((str(k), LogFormat(v, tuple(p if isinstance(p, str) else _show(p.get) for p in items))))
            elif isinstance(v, dict):
                out.append((str(k), fields(v, where + ".")))
            elif v is None or isinstance(v, (bool, int, float)):
                out.append((str(k), v))
            else:
                errors.append((where, FormatError(0, 0, "a json_format value is a string, a number, a boolean "
                                                        "or a mapping, not a list")))
        return tuple(out)
    if not isinstance(mapping, dict) or not mapping:
        return None, [("", FormatError(0, 0, "json_format needs a mapping of at least one key"))]
    got = fields(mapping, "")
    if errors:
        return None, errors
    canon = json.dumps(mapping, sort_keys=True, default=str)
    return JsonFormat(canon, got, omit_empty), []


def compile_json(mapping: dict, omit_empty: bool = False) -> JsonFormat:
    """The compiled json_format; ValueError naming the first problem."""
    fmt, errors = parse_json(mapping, omit_empty)
    if fmt is None:
        where, e = errors[0]
        raise ValueError(f"{where}: {e.message}" if where else e.message)
    return fmt


DEFAULT = compile_format(DEFAULT_FORMAT)
