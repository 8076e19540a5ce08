"""A listener's `access_log`: where lines go, and their format, compiled at load.

The format is parsed here, once (runtime.logformat), so an unknown attribute, an
unclosed `%` or a bad header key is a config error with its place, and `run`
refuses to start on it; the model holds the compiled LogFormat the proxy uses.
A problem is pointed at inside the format string when the YAML scalar spells the
value as written on one line (plain, or quoted with no escapes); otherwise at the
scalar itself.
"""
from __future__ import annotations

from typing import Any

from yaml.nodes import Node, ScalarNode

from ..diagnostics import Span
from ..logformat import LogFormat, parse_format
from ..model import AccessLog
from .compound import Either, Mapped
from .reader import BAD_VALUE, KeyPath, Reader, dotted
from .scalars import FilePath, Str
from .schema import INVALID, Field, Obj

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


ACCESS_LOG = Either(
    Mapped(FilePath(keep=LOG_STREAMS), AccessLog),
    Obj({"path": Field(FilePath(keep=LOG_STREAMS), "stdout, stderr or a file", required=True),
         "format": Field(Format(), "line format: %attribute% references (%request.path%, "
                                   '%request.headers["user-agent"]%) and %start_time%; '
                                   "default: the built-in format")},
        build=AccessLog, label="a mapping {path, format}"),
    label="stdout, stderr, a file path or a mapping {path, format}",
)
