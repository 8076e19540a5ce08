"""A listener's `access_log`: where lines go, and their format, compiled at load.

The format is parsed here, once (runtime.logformat), so an unknown attribute, an
unclosed `%` or a bad header key is a config error with its place, and `run`
refuses to start on it; the model holds the compiled LogFormat the proxy uses.
A problem is pointed at inside the format string when the YAML scalar spells the
value as written on one line (plain, or quoted with no escapes); otherwise at the
scalar itself. `json_format` maps keys to such strings (or nested mappings, or
constants): each is checked the same way, and the line is one JSON object.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode

from ..diagnostics import Span
from ..logformat import JsonFormat, LogFormat, parse_format, parse_json
from ..model import AccessLog
from .compound import Either, Mapped
from .reader import BAD_VALUE, KeyPath, Reader, dotted
from .scalars import Bool, FilePath, Str
from .schema import INVALID, Field, Obj, Type

LOG_STREAMS = ("stdout", "stderr")


class Format(Str):
    """An access-log format string, compiled to a LogFormat."""
    label = "an access-log format string"
    name = "format"

    def convert(self, node: Node, r: Reader, path: KeyPath) -> Any:
        text = super().convert(node, r, path)
        if text is INVALID:
            return INVALID
        parts, errors = parse_format(text)
        for e in errors:
            # Str took the node: it is a scalar
            r.error(_inside(node, r, text, e.start, e.end), BAD_VALUE,  # type: ignore[arg-type]
                    f"{dotted(path)}: {e.message}")
        return INVALID if errors else LogFormat(text, tuple(parts))


def _inside(node: ScalarNode, r: Reader, value: str, start: int, end: int) -> Span:
    """The span of value[start:end] in the file, where the scalar writes the value as is."""
    s, e = node.start_mark, node.end_mark
    whole = r.span(node)
    if s.line != e.line:
        return whole
    raw = r.text[s.index:e.index]
    if node.style in ("'", '"'):
        raw = raw[1:-1]
        first = s.column + 2
    else:
        first = s.column + 1
    if raw != value:        # escapes or folding: offsets in the value are not columns
        return whole
    return Span(whole.path, whole.line, first + start, whole.line, first + max(end, start + 1))


class JsonFormatType(Type):
    """Envoy's json_format: keys to format strings, nested mappings or constants."""
    kinds = frozenset({"mapping"})
    label = "a mapping of keys to format strings"
    name = "json format"

    def convert(self, node: Node, r: Reader, path: KeyPath) -> Any:
        if not isinstance(node, MappingNode):
            return self.wrong_type(node, r, path)
        ok = self._check(node, r, path)
        if not ok:
            return INVALID
        fmt, errors = parse_json(r.data(node))
        if fmt is None:
            for where, e in errors:
                r.error(node, BAD_VALUE, f"{dotted(path)}: {where + ': ' if where else ''}{e.message}")
            return INVALID
        return fmt

    def _check(self, node: MappingNode, r: Reader, path: KeyPath) -> bool:
        """Every format string's problems, pointed at inside it; False if any."""
        ok = True
        for key, _knode, vnode in r.entries(node):
            kpath = path + (key,)
            if isinstance(vnode, MappingNode):
                ok = self._check(vnode, r, kpath) and ok
            elif isinstance(vnode, ScalarNode) and vnode.tag.endswith(":str"):
                text = vnode.value
                for e in parse_format(text)[1]:
                    r.error(_inside(vnode, r, text, e.start, e.end), BAD_VALUE, f"{dotted(kpath)}: {e.message}")
                    ok = False
            elif not isinstance(vnode, ScalarNode):
                r.error(vnode, BAD_VALUE, f"{dotted(kpath)}: expected a format string, a number, a boolean "
                                          "or a mapping")
                ok = False
        return ok


def _build(values: dict[str, Any], span: Any) -> AccessLog:
    text, js, omit = values.get("format"), values.get("json_format"), values.get("omit_empty_values", False)
    if text is not None and js is not None:
        raise ValueError("give format or json_format, not both")
    fmt: LogFormat | JsonFormat | None = js if js is not None else text
    if omit and isinstance(fmt, LogFormat):
        fmt = LogFormat(fmt.text, tuple(parse_format(fmt.text, True)[0]), True)
    elif omit and isinstance(fmt, JsonFormat):
        fmt = dataclasses.replace(fmt, omit_empty=True)
    return AccessLog(values["path"], fmt)


ACCESS_LOG = Either(
    Mapped(FilePath(keep=LOG_STREAMS), AccessLog),
    Obj({"path": Field(FilePath(keep=LOG_STREAMS), "stdout, stderr or a file", required=True),
         "format": Field(Format(), "line format: %attribute% references (%request.path%, "
                                   '%request.headers["user-agent"]%), %start_time%, and Envoy\'s command '
                                   "operators (%REQ(:PATH)%, %RESPONSE_FLAGS%, ...; docs/access-log.md); "
                                   "default: the built-in format"),
         "json_format": Field(JsonFormatType(), "one JSON object per line: keys to format strings "
                                                "(a value that is one reference keeps its type: a number "
                                                "for %RESPONSE_CODE%, null when missing); instead of format"),
         "omit_empty_values": Field(Bool(), "missing values: left out of JSON lines, empty in text lines "
                                            "(not \"-\")", default=False)},
        build=_build, label="a mapping {path, format | json_format}"),
    label="stdout, stderr, a file path or a mapping {path, format | json_format}",
)
