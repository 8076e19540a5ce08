"""Envoy YAML or JSON into protobuf messages, every error positioned in the file.

The text is composed once by runtime.config's Reader (syntax errors, duplicate
keys, depth limit), walked once to record where every key and value is, and turned
into plain data. normalize() then rewrites the forms Envoy's own loader accepts but
json_format does not (a Duration as {seconds, nanos}), guided by the message
descriptors; json_format.ParseDict (ignore_unknown_fields=False) decodes. An Any
whose type the pool lacks is kept as a TypedStruct of the same type URL and fields
(opaque()), so a document with another project's extensions still decodes. A
ParseError names a field path: locate() maps it back to the key, so an unknown
field, a wrong type or a bad enum reads `file:line:col: X003 ...`. Nothing here
raises for bad input: every problem is a Diagnostic.
"""
from __future__ import annotations

import re
from typing import Any, Union

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..config.reader import Reader
from ..diagnostics import Diagnostic, Span
from .findings import INVALID
from .protos import ensure_type

Path = tuple[Union[str, int], ...]


class Positions:
    """Where each key (and each list item) of a document is: key path -> span of the
    key for a mapping entry, of the item for a list element."""

    def __init__(self, r: Reader, root: Node | None):
        self.reader = r
        self.spans: dict[Path, Span] = {}
        if root is not None:
            self.spans[()] = r.span(root)
            self._walk(root, ())

    def _walk(self, node: Node, path: Path) -> None:
        stack: list[tuple[Node, Path]] = [(node, path)]
        seen: set[int] = set()
        while stack:
            n, p = stack.pop()
            if id(n) in seen:       # an alias: walked where it was anchored
                continue
            seen.add(id(n))
            if isinstance(n, MappingNode):
                for k, v in n.value:
                    if isinstance(k, ScalarNode):
                        kp = p + (k.value,)
                        self.spans.setdefault(kp, self.reader.span(k))
                        stack.append((v, kp))
            elif isinstance(n, SequenceNode):
                for i, v in enumerate(n.value):
                    self.spans.setdefault(p + (i,), self.reader.span(v))
                    stack.append((v, p + (i,)))

    def at(self, path: Path) -> Span | None:
        while path not in self.spans and path:
            path = path[:-1]
        return self.spans.get(path)

    def locate(self, dotted: str, base: Path = ()) -> Span | None:
        return self.at(base + parse_path(dotted))


_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def parse_path(dotted: str) -> Path:
    """"a.b[0].c" -> ("a", "b", 0, "c")."""
    return tuple(int(i) if i else k for k, i in _STEP.findall(dotted))


# ---- forms Envoy's loader takes that json_format does not ----

_DURATION = "google.protobuf.Duration"


def _seconds_text(v: dict) -> str | None:
    if not set(v) <= {"seconds", "nanos"}:
        return None
    s, n = v.get("seconds", 0), v.get("nanos", 0)
    if isinstance(s, str) and s.lstrip("-").isdigit():
        s = int(s)
    if not isinstance(s, int) or not isinstance(n, int) or isinstance(s, bool) or isinstance(n, bool):
        return None
    return f"{s}.{abs(n):09d}s" if n else f"{s}s"


def normalize(data: Any, desc: Descriptor, depth: int = 0) -> Any:
    """`data` with the message `desc` describes in the form json_format reads; what
    cannot be made sense of is left for json_format to report."""
    if not isinstance(data, dict) or depth > 200:
        return data
    if desc.full_name == "google.protobuf.Any":
        t = data.get("@type")
        if isinstance(t, str) and ensure_type(t):
            from google.protobuf import descriptor_pool
            inner = descriptor_pool.Default().FindMessageTypeByName(t.rsplit("/", 1)[-1])
            return normalize(data, inner, depth + 1) if not _wkt(inner) else data
        if isinstance(t, str) and "/" in t and t.rsplit("/", 1)[-1]:
            return opaque(t, data)
        return data
    out: dict = {}
    for k, v in data.items():
        fd = desc.fields_by_name.get(k) if isinstance(k, str) else None
        if fd is None and isinstance(k, str):
            fd = next((f for f in desc.fields if f.json_name == k), None)
        if fd is None or fd.type != FieldDescriptor.TYPE_MESSAGE:
            out[k] = v
            continue
        sub: Any = fd.message_type      # set for a message field (checked above)
        if fd.is_repeated and not sub.GetOptions().map_entry:
            out[k] = [_one(x, sub, depth) for x in v] if isinstance(v, list) else v
        elif sub.GetOptions().map_entry:
            vf = sub.fields_by_name["value"]
            if isinstance(v, dict) and vf.type == FieldDescriptor.TYPE_MESSAGE:
                out[k] = {mk: _one(mv, vf.message_type, depth) for mk, mv in v.items()}
            else:
                out[k] = v
        else:
            out[k] = _one(v, sub, depth)
    return out


OPAQUE = "type.googleapis.com/xds.type.v3.TypedStruct"


def opaque(type_url: str, data: dict) -> dict:
    """An Any of a type the descriptor pool lacks (Istio's own extensions:
    stats.PluginConfig, istio.envoy.config.filter.http.alpn...) as the TypedStruct
    that says the same: its type URL and its fields as a Struct. It decodes as
    valid Envoy; what reads it (runtime.envoy.istio.opaque_config) gets the type
    URL and the fields back, and decides whether mosnx serves it."""
    return {"@type": OPAQUE, "type_url": type_url, "value": {k: v for k, v in data.items() if k != "@type"}}


def _wkt(desc: Descriptor) -> bool:
    return desc.full_name.startswith("google.protobuf.") and desc.full_name != "google.protobuf.Any"


def _one(v: Any, desc: Descriptor, depth: int) -> Any:
    if desc.full_name == _DURATION and isinstance(v, dict):
        text = _seconds_text(v)
        return text if text is not None else v
    if _wkt(desc):
        return v
    return normalize(v, desc, depth + 1)


# ---- json_format's errors, positioned ----

_AT = re.compile(r' at "?([A-Za-z_][\w.\[\]]*?)"?\.?(?:\n|$|\.\.\.)')
_NO_FIELD = re.compile(r'has no field named "([^"]+)"')
_CHAIN = re.compile(r"Failed to parse (\w+) field: ")


def _error_path(message: str, data: Any) -> tuple[Path, str]:
    """The key path json_format's message names (under the message it parsed), and
    the message cut to its point."""
    first = message.split("\n", 1)[0]
    chain = _CHAIN.findall(first)
    point = _CHAIN.sub("", first)
    point = re.sub(r"\s*\bat \"?[\w.\[\]]+\"?\.*$", "", point).rstrip(".")
    m = _AT.search(first + "\n")
    path: Path = ()
    if m:
        path = parse_path(m.group(1))[1:]          # the first step names the message type
    elif chain:
        path = _follow(data, chain)
    nf = _NO_FIELD.search(first)
    if nf:
        path = path + (nf.group(1),)
        point = f'unknown field "{nf.group(1)}"' + point[point.find(" in ") if " in " in point else len(point):]
        msg_type = re.search(r'Message type "([^"]+)"', first)
        if msg_type:
            point = f'unknown field "{nf.group(1)}" in {msg_type.group(1)}'
    return path, point


def _follow(data: Any, chain: list[str]) -> Path:
    """The path a chain of field names takes through `data`; at a list, the first
    item that holds the next name."""
    path: list[str | int] = []
    node = data
    for i, name in enumerate(chain):
        if not isinstance(node, dict) or name not in node:
            break
        path.append(name)
        node = node[name]
        if isinstance(node, list):
            nxt = chain[i + 1] if i + 1 < len(chain) else None
            for j, item in enumerate(node):
                if nxt is None or (isinstance(item, dict) and nxt in item):
                    path.append(j)
                    node = item
                    break
            else:
                break
    return tuple(path)


def parse(data: Any, cls: type[Message], positions: Positions | None, base: Path = (),
          what: str = "") -> tuple[Message | None, list[Diagnostic]]:
    """`data` (at `base` in the document) decoded as `cls`, or None and why."""
    msg = cls()
    label = what or cls.DESCRIPTOR.name
    if not isinstance(data, dict):
        span = positions.at(base) if positions else None
        return None, [Diagnostic(span, INVALID, f"{label}: expected a mapping")]
    try:
        json_format.ParseDict(normalize(data, cls.DESCRIPTOR), msg,  # type: ignore[arg-type]  # upb's Descriptor
                              ignore_unknown_fields=False)
        return msg, []
    except json_format.ParseError as e:
        path, point = _error_path(str(e), data)
        span = positions.at(base + path) if positions else None
        where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in path).replace(".[", "[")
        return None, [Diagnostic(span, INVALID, f"{label}{': ' + where if where else ''}: {point}")]
    except (ValueError, TypeError, AttributeError, KeyError, OverflowError, RecursionError) as e:
        # json_format lets a few of these through for odd values (a list where a
        # number goes, a huge number)
        span = positions.at(base) if positions else None
        return None, [Diagnostic(span, INVALID, f"{label}: cannot decode: {e}")]


def read(text: str, path: str) -> tuple[Any, Positions | None, list[Diagnostic]]:
    """The document as plain data with its positions, or None and the syntax errors."""
    r = Reader(text, path)
    root = r.compose()
    if root is None:
        return None, None, r.findings()
    errors = [d for d in r.findings() if d.severity == "error"]
    return r.data(root), Positions(r, root), errors
