"""Compound types: lists, free-key mappings, alternatives, converted values, raw data.

Each records the position of every item it reads under its key path, so checks
made later (duplicates, references) can point at the item.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .reader import BAD_VALUE, DUPLICATE, KeyPath, Reader, dotted, is_null
from .scalars import Str
from .schema import INVALID, Type, node_kind


class ListOf(Type):
    """A list, made a tuple. `single`: one item may be written without the list.
    `split`: a string may list items separated by `split` (as Envoy's retry_on)."""

    def __init__(self, item: Type, min_items: int = 0, single: bool = False, split: str | None = None,
                 unique: Sequence["Unique"] = ()):
        self.item = item
        self.min_items = min_items
        self.single = single
        self.split = split
        self.unique = unique
        self.label = f"a list of {_strip_article(item.label)}"
        self.name = f"list of {item.name}"
        self.kinds = frozenset({"list"} | ({"scalar", "mapping"} if single else set())
                               | ({"scalar"} if split else set()))

    def parts(self) -> Iterator[tuple[Type, str]]:
        yield self.item, "[]"

    def convert(self, node: Node, r: Reader, path: KeyPath) -> Any:
        if isinstance(node, SequenceNode):
            items = node.value
        elif self.split and isinstance(node, ScalarNode) and node.tag.endswith(":str"):
            items = _split_scalar(node, self.split)
        elif self.single and not is_null(node):
            items = [node]
        else:
            return self.wrong_type(node, r, path)
        out = []
        for i, item in enumerate(items):
            ipath = path + (i,)
            r.positions[ipath] = r.span(item)
            out.append(self.item.convert(item, r, ipath))
        ok = INVALID not in out
        if len(items) < self.min_items:
            r.error(node, BAD_VALUE, f"{dotted(path)}: needs at least {self.min_items} item"
                    + ("s" if self.min_items > 1 else ""))
            ok = False
        for u in self.unique:
            ok = u.check(out, r, path) and ok
        return tuple(out) if ok else INVALID


@dataclass(frozen=True)
class Unique:
    """Items of a list whose `key` is equal are an error, shown at the item's `at` key."""
    what: str
    key: Callable[[Any], Any]
    at: str | None = None

    def check(self, items: list, r: Reader, path: KeyPath) -> bool:
        first: dict[Any, int] = {}
        ok = True
        for i, item in enumerate(items):
            if item is INVALID:
                continue
            k = self.key(item)
            if k not in first:
                first[k] = i
                continue
            where = path + (i, self.at) if self.at else path + (i,)
            then = r.at(path + (first[k], self.at) if self.at else path + (first[k],))
            r.error(r.at(where), DUPLICATE, f'duplicate {self.what} "{k}"'
                    + (f" (first at line {then.line})" if then else ""))
            ok = False
        return ok


class MapOf(Type):
    """A mapping of free keys to values of one type, kept in order as a dict."""
    kinds = frozenset({"mapping"})

    def __init__(self, value: Type, key: Type | None = None):
        self.key = key or Str()
        self.value = value
        self.label = f"a mapping of {_strip_article(self.key.label)} to {_strip_article(value.label)}"
        self.name = f"map of {self.key.name} to {value.name}"

    def convert(self, node: Node, r: Reader, path: KeyPath) -> Any:
        if not isinstance(node, MappingNode):
            return self.wrong_type(node, r, path)
        out: dict[Any, Any] = {}
        ok = True
        for key, knode, vnode in r.entries(node):
            kpath = path + (key,)
            r.positions[kpath] = r.span(vnode)
            k = self.key.convert(knode, r, kpath)
            v = self.value.convert(vnode, r, kpath)
            if k is INVALID or v is INVALID:
                ok = False
            else:
                out[k] = v
        return out if ok else INVALID


class Either(Type):
    """Alternatives told apart by the node's kind (scalar, mapping or list): first fit wins."""

    def __init__(self, *alternatives: Type, label: str | None = None):
        self.alternatives = alternatives
        self.kinds = frozenset().union(*(a.kinds for a in alternatives))
        self.label = label or " or ".join(a.label for a in alternatives)
        self.name = " | ".join(a.name for a in alternatives)

    def parts(self) -> Iterator[tuple[Type, str]]:
        return ((a, "") for a in self.alternatives)

    def convert(self, node: Node, r: Reader, path: KeyPath) -> Any:
        kind = node_kind(node)
        for a in self.alternatives:
            if kind in a.kinds:
                return a.convert(node, r, path)
        return self.wrong_type(node, r, path)


class Data(Type):
    """Anything, as plain data: configuration that a filter validates itself."""
    kinds = frozenset({"scalar", "mapping", "list"})
    label = "any value"
    name = "any"

    def convert(self, node: Node, r: Reader, path: KeyPath) -> Any:
        return r.data(node)


class Mapped(Type):
    """`inner`'s value passed through `fn`; a ValueError from `fn` is a bad value."""

    def __init__(self, inner: Type, fn: Callable[[Any], Any]):
        self.inner, self.fn = inner, fn
        self.kinds, self.label, self.name = inner.kinds, inner.label, inner.name

    def parts(self) -> Iterator[tuple[Type, str]]:
        yield self.inner, ""

    def convert(self, node: Node, r: Reader, path: KeyPath) -> Any:
        v = self.inner.convert(node, r, path)
        if v is INVALID:
            return v
        try:
            return self.fn(v)
        except ValueError as e:
            r.error(node, BAD_VALUE, f"{dotted(path)}: {e}")
            return INVALID


def _strip_article(label: str) -> str:
    for a in ("a ", "an "):
        if label.startswith(a):
            return label[len(a):]
    return label


def _split_scalar(node: ScalarNode, sep: str) -> list[ScalarNode]:
    """`node`'s text split at `sep`, each piece positioned where it is written when the
    scalar sits on one line; otherwise every piece points at the whole scalar."""
    out = []
    one_line = node.start_mark.line == node.end_mark.line
    start = node.start_mark.column + (1 if node.style in ("'", '"') else 0)
    offset = 0
    for piece in node.value.split(sep):
        lead = len(piece) - len(piece.lstrip())
        text = piece.strip()
        if text:
            s, e = node.start_mark, node.end_mark
            if one_line:
                col = start + offset + lead
                s = yaml.Mark(s.name, s.index, s.line, col, None, 0)
                e = yaml.Mark(s.name, s.index, s.line, col + len(text), None, 0)
            out.append(ScalarNode(node.tag, text, s, e))
        offset += len(piece) + len(sep)
    return out
