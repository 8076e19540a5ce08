"""Names declared and referenced across the document (clusters, listener addresses).

Declarations are checked for repeats as each value is read, not per list, so a
duplicate is reported even when the object holding it has other problems.
Whether each reference resolves is checked once the whole document has been
read (Reader.check_references), so a reference may come before its declaration.
"""
from __future__ import annotations

from typing import Any, Callable

from yaml.nodes import Node

from .reader import DUPLICATE, KeyPath, Reader
from .scalars import Str
from .schema import INVALID, Type


class Distinct(Type):
    """`inner`'s value, which must not repeat anywhere in the document under `kind`."""

    def __init__(self, inner: Type, kind: str, noun: str | None = None, show: Callable[[Any], str] = str):
        self.inner, self.kind, self.noun, self.show = inner, kind, noun or kind, show
        self.kinds, self.label, self.name = inner.kinds, inner.label, inner.name

    def convert(self, node: Node, r: Reader, path: KeyPath) -> Any:
        v = self.inner.convert(node, r, path)
        if v is INVALID:
            return v
        first = r.declare(self.kind, v, path)
        if first != path:
            span = r.at(first)
            r.error(node, DUPLICATE, f'duplicate {self.noun} "{self.show(v)}"'
                    + (f" (first at line {span.line})" if span else ""))
            return INVALID
        return v


class Name(Distinct):
    """The name an object of `kind` is declared under, for references to find it."""

    def __init__(self, kind: str):
        super().__init__(Str(), kind, f"{kind} name")


class Ref(Str):
    """A reference to an object of `kind` by name."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.label = f"a {kind} name"
        self.name = f"{kind} name"

    def convert(self, node: Node, r: Reader, path: KeyPath) -> Any:
        v = super().convert(node, r, path)
        if v is not INVALID:
            r.refer(self.kind, v, node)
        return v
