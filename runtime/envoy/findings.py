"""What translation finds: warnings for valid Envoy that mosnx does not serve, and
a Rejection for a resource that cannot be served at all.

A field path is written as json_format writes one: proto field names joined by
dots, list items as [i] (`filter_chains[0].filters[0].typed_config.stat_prefix`),
relative to the resource, so the xDS client can NACK naming the resource and field,
and a file loader can map the path back to a line and column.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, NoReturn

from ..diagnostics import Diagnostic, Span

UNSUPPORTED = "X001"     # valid Envoy that mosnx ignores (a warning)
REJECTED = "X002"        # a resource mosnx cannot serve (an error)
INVALID = "X003"         # a document that is not valid Envoy (an error)
WAITING = "X004"         # a bootstrap resource that serves once the control plane sends more (a warning)


@dataclass(frozen=True, slots=True)
class Rejection:
    type_url: str
    name: str
    field_path: str
    message: str

    def __str__(self) -> str:
        where = f" at {self.field_path}" if self.field_path else ""
        return f'{self.type_url.rsplit(".", 1)[-1]} "{self.name}"{where}: {self.message}'


class Rejected(Exception):
    def __init__(self, rejection: Rejection):
        super().__init__(str(rejection))
        self.rejection = rejection


class Waiting(Rejected):
    """Not wrong, only early: the resource needs another that has not arrived (a
    listener its RouteConfiguration). Envoy warms such a listener; nothing is NACKed."""


Locate = Callable[[str], "Span | None"]


@dataclass
class Sink:
    """Where the warnings of one translation go; `locate` maps a field path (relative
    to the resource, with `base` before it) to a position, when the resource came
    from a file."""
    warnings: list[Diagnostic] = field(default_factory=list)
    locate: Locate | None = None
    waiting: list[Rejection] = field(default_factory=list)    # what apply() held back, and why
    # the runtime values (runtime_layers: static and RTDS layers) that runtime keys read
    runtime: dict[str, Any] = field(default_factory=dict)


class Findings:
    """The findings of one resource at one field path; at() goes deeper. The path is
    spelled only when asked for (a warning, a rejection, an unnamed route's name):
    translating a table of thousands of routes makes tens of thousands of these."""
    __slots__ = ("type_url", "name", "_path", "_parent", "_key", "sink")

    def __init__(self, type_url: str, name: str, path: str = "", sink: Sink | None = None):
        self.type_url = type_url
        self.name = name
        self._path: str | None = path
        self._parent: Findings | None = None
        self._key: str | int = ""
        self.sink = sink if sink is not None else Sink()

    @property
    def path(self) -> str:
        path = self._path
        if path is None:
            assert self._parent is not None
            base, key = self._parent.path, self._key
            if isinstance(key, int):
                path = f"{base}[{key}]"
            else:
                path = f"{base}.{key}" if base else key
            self._path = path
        return path

    def at(self, key: str | int) -> "Findings":
        sub = object.__new__(Findings)
        sub.type_url = self.type_url
        sub.name = self.name
        sub._path = None
        sub._parent = self
        sub._key = key
        sub.sink = self.sink
        return sub

    def span(self, path: str | None = None) -> Span | None:
        locate = self.sink.locate
        return locate(self.path if path is None else path) if locate is not None else None

    def warn(self, message: str, key: str | None = None) -> None:
        path = self.at(key).path if key else self.path
        what = self.type_url.rsplit(".", 1)[-1]
        where = f" {path}" if path else ""
        self.sink.warnings.append(Diagnostic(self.span(path), UNSUPPORTED,
                                             f'{what} "{self.name}"{where}: {message}', "warning"))

    def reject(self, message: str, key: str | None = None) -> NoReturn:
        path = self.at(key).path if key else self.path
        raise Rejected(Rejection(self.type_url, self.name, path, message))

    def only(self, msg: Any, supported: set[str] | frozenset[str], why: str = "not supported by mosnx; ignored") -> None:
        """Warn for every field set in `msg` that is not in `supported`."""
        for fd, _ in msg.ListFields():
            if fd.name not in supported:
                self.warn(why, fd.name)
