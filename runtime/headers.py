"""Header maps as the proxy carries them: ordered (name, value) byte pairs.

Names are stored lower-cased (as HTTP/2 requires and Envoy does), values as
received. The str accessors decode latin-1 on access only, so the forwarding
hot path never decodes what nobody reads.
"""
from __future__ import annotations

import re
from typing import Iterable, Iterator

# an HTTP field name (RFC 9110 token), as a config may spell one
TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _b(s: str | bytes) -> bytes:
    return s if isinstance(s, bytes) else s.encode("latin-1")


class Headers:
    __slots__ = ("items",)

    def __init__(self, items: list[tuple[bytes, bytes]] | None = None):
        # list of (lower-case name, value) tuples; mutated in place by filters
        self.items: list[tuple[bytes, bytes]] = items if items is not None else []

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str | bytes, str | bytes]]) -> "Headers":
        return cls([(_b(k).lower(), _b(v)) for k, v in pairs])

    # -- bytes API (hot path; names must already be lower-case) --
    def getb(self, lname: bytes, default: bytes | None = None) -> bytes | None:
        for k, v in self.items:
            if k == lname:
                return v
        return default

    def has(self, lname: bytes) -> bool:
        for k, _ in self.items:
            if k == lname:
                return True
        return False

    # -- str API (filters, DSL, WASM) --
    def get(self, name: str | bytes, default: str | None = None) -> str | None:
        v = self.getb(_b(name).lower())
        return default if v is None else v.decode("latin-1")

    def get_all(self, name: str | bytes) -> list[str]:
        ln = _b(name).lower()
        return [v.decode("latin-1") for k, v in self.items if k == ln]

    def add(self, name: str | bytes, value: str | bytes) -> None:
        self.items.append((_b(name).lower(), _b(value)))

    def set(self, name: str | bytes, value: str | bytes) -> None:
        ln = _b(name).lower()
        vb = _b(value)
        items = self.items
        for i, (k, _) in enumerate(items):
            if k == ln:
                items[i] = (ln, vb)
                # drop later duplicates: set means exactly one value
                self.items = items[: i + 1] + [kv for kv in items[i + 1:] if kv[0] != ln]
                return
        items.append((ln, vb))

    def remove(self, name: str | bytes) -> int:
        ln = _b(name).lower()
        before = len(self.items)
        self.items = [kv for kv in self.items if kv[0] != ln]
        return before - len(self.items)

    def pairs(self) -> list[tuple[str, str]]:
        return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self.items]

    def copy(self) -> "Headers":
        return Headers(list(self.items))

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, name: str | bytes) -> bool:
        return self.has(_b(name).lower())

    def __repr__(self) -> str:
        return f"Headers({self.pairs()!r})"
