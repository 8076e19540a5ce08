"""A small declarative schema: YAML nodes in, model values out, every problem reported.

The core is here (Type, Field, Obj and object checks); scalars.py, compound.py
and names.py hold the other types.

A schema type converts one node (recording its position under its key path) and
returns the value, or INVALID after reporting why to the Reader. A parent whose
child is INVALID builds nothing but still checks its other children, so one pass
finds every problem. A field is declared once, with its type, default and doc;
the same declarations drive validation, building and describe().

YAML null counts as "not set" for an object field, so `timeout:` with no value
keeps the default; a required field left null is reported as missing.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from yaml.nodes import MappingNode, Node, SequenceNode

from ..diagnostics import did_you_mean
from .reader import BAD_VALUE, MISSING, UNKNOWN_KEY, WRONG_TYPE, KeyPath, Reader, closest, dotted, is_null, kind_of


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


INVALID: Any = _Marker("INVALID")      # a value that was reported and cannot be used
NOT_SET: Any = _Marker("NOT_SET")      # no default: the key stays absent

def node_kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "mapping"
    if isinstance(node, SequenceNode):
        return "list"
    return "scalar"


class Type:
    kinds: frozenset[str] = frozenset({"scalar"})
    label = "a value"                       # what an error says was expected
    name = "value"                          # what describe() says the type is

    def convert(self, node: Node, r: Reader, path: KeyPath) -> Any:
        raise NotImplementedError

    def parts(self) -> Iterator[tuple["Type", str]]:
        """The types inside this one, with the key-path suffix each adds, for describe()."""
        return iter(())

    def wrong_type(self, node: Node, r: Reader, path: KeyPath) -> Any:
        r.error(node, WRONG_TYPE, f"{dotted(path)}: expected {self.label}, got {kind_of(node)}")
        return INVALID


@dataclass(frozen=True)
class Field:
    type: Type
    doc: str = ""
    required: bool = False
    default: Any = NOT_SET                  # NOT_SET: the model's own default, if any
    attr: str | None = None                 # model attribute, when it differs from the key


# (values with defaults, keys the document sets, reader, path) -> usable?
Check = Callable[[dict, set, Reader, KeyPath], bool]
Build = Callable[[dict, Any], Any]          # (values by attribute, span) -> model value


class Obj(Type):
    """A mapping with declared keys, built into `build` (a dataclass or a function).

    With a dataclass, keys map to its attributes (after `adapt`, which reshapes
    the values when a key is not one attribute); its `span` attribute gets the
    mapping's span, and declared keys it lacks go into the `extras` attribute as a
    dict, so an extension adds a key here and nowhere else. Without `build` the
    values come back as a dict. Undeclared keys are errors, unless `rest` names
    where they go as plain data (a filter's own settings). `checks` see every value
    (INVALID for a present but bad one), report what they find, and return False
    when the object is unusable.
    """
    kinds = frozenset({"mapping"})
    name = "mapping"

    def __init__(self, fields: dict[str, Field], build: type | Build | None = None,
                 checks: Sequence[Check] = (), adapt: Callable[[dict], dict] | None = None,
                 extras: str | None = None, rest: str | None = None, label: str | None = None):
        self.fields = fields
        self.build: Callable[..., Any] | None = build      # a dataclass or a Build
        self.checks = checks
        self.adapt = adapt
        self.extras = extras
        self.rest = rest
        self.label = label or "a mapping with keys " + ", ".join(fields)
        self.model_fields = ({f.name: f for f in dataclasses.fields(build)}
                             if dataclasses.is_dataclass(build) else {})

    def default_of(self, key: str) -> Any:
        f = self.fields[key]
        if f.default is not NOT_SET or f.required:
            return f.default
        mf = self.model_fields.get(f.attr or key)
        return NOT_SET if mf is None or mf.default is dataclasses.MISSING else mf.default

    def convert(self, node: Node, r: Reader, path: KeyPath) -> Any:
        if not isinstance(node, MappingNode):
            return self.wrong_type(node, r, path)
        values: dict[str, Any] = {}
        present: set[str] = set()
        rest: dict[str, Any] = {}
        ok = True
        for key, knode, vnode in r.entries(node):
            present.add(key)
            f = self.fields.get(key)
            kpath = path + (key,)
            if f is None and self.rest:
                rest[key] = r.data(vnode)
                continue
            if f is None:
                where = f" in {dotted(path)}" if path else ""
                r.error(knode, UNKNOWN_KEY, f'unknown key "{key}"{where}' + did_you_mean(key, self.fields),
                        fix=closest(key, self.fields))
                continue
            if is_null(vnode):
                values.pop(key, None)
                if f.required:
                    r.error(knode, MISSING, f"{dotted(kpath)} needs a value")
                    ok = False
                continue
            r.positions[kpath] = r.span(vnode)
            values[key] = f.type.convert(vnode, r, kpath)
        given = set(values)
        for key, f in self.fields.items():
            if key in values:
                ok = ok and values[key] is not INVALID
            elif f.required:
                if key not in present:      # present but null was reported at the key
                    r.error(node, MISSING, f'{dotted(path)}: missing required key "{key}"')
                ok = False
            elif (default := self.default_of(key)) is not NOT_SET:
                values[key] = default
        for check in self.checks:
            ok = check(values, given, r, path) and ok
        if not ok:
            return INVALID
        if self.rest:
            values[self.rest] = rest
        try:
            return self.make(values, r.span(node))
        except ValueError as e:
            r.error(node, BAD_VALUE, f"{dotted(path)}: {e}")
            return INVALID

    def make(self, values: dict[str, Any], span: Any) -> Any:
        kwargs = {(self.fields[k].attr or k) if k in self.fields else k: v for k, v in values.items()}
        if self.adapt is not None:
            kwargs = self.adapt(kwargs)
        if self.build is None:
            return kwargs
        if not self.model_fields:
            return self.build(kwargs, span)
        if "span" in self.model_fields:
            kwargs["span"] = span
        if self.extras:
            extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in self.model_fields}
            kwargs[self.extras] = extra
        return self.build(**kwargs)


# -- object checks --

def exactly_one(*keys: str, what: str = "") -> Check:
    """Exactly one of `keys` is set; `what` explains the choice in the message."""
    def check(values: dict, present: set, r: Reader, path: KeyPath) -> bool:
        given = [k for k in keys if k in present]
        if len(given) == 1:
            return True
        where = dotted(path)
        names = " or ".join(f"{k}:" for k in keys)
        if not given:
            r.error(r.at(path), MISSING, f"{where} needs {names}" + (f" ({what})" if what else ""))
        else:
            r.error(r.at(path + (given[1],)), BAD_VALUE,
                    f"{where} has both {given[0]}: and {given[1]}:; keep only one" + (f" ({what})" if what else ""))
        return False
    return check


def ordered(low: str, high: str, strict: bool = True, show: Callable[[Any], str] = str) -> Check:
    """values[low] < values[high] (or <=), counting defaults; shown at whichever key was written."""
    def check(values: dict, present: set, r: Reader, path: KeyPath) -> bool:
        lo, hi = values.get(low, NOT_SET), values.get(high, NOT_SET)
        if INVALID in (lo, hi) or NOT_SET in (lo, hi) or (lo < hi if strict else lo <= hi):
            return True
        at = low if low in present else high
        rel = "below" if strict else "at most"
        r.error(r.at(path + (at,)), BAD_VALUE,
                f"{dotted(path + (low,))} ({show(lo)}) must be {rel} {high} ({show(hi)})")
        return False
    return check


# -- documentation --

def describe(t: Type, prefix: str = "", seen: set[int] | None = None) -> list[dict[str, Any]]:
    """Every key under `t` as rows: key path, type, required, default, doc. An object
    met at two places (a listener's route and a filter chain's) is described at the
    first, depth first, as the reference has its section there."""
    rows: list[dict[str, Any]] = []
    seen = set() if seen is None else seen
    for obj, p in _objects(t, prefix):
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        for key, f in obj.fields.items():
            d = obj.default_of(key)
            if d is NOT_SET or dataclasses.is_dataclass(d):     # a nested object: see its keys
                d = None
            rows.append({"key": f"{p}{key}", "type": f.type.name, "required": f.required,
                         "default": d, "doc": f.doc})
            rows.extend(describe(f.type, f"{p}{key}.", seen))
    return rows


def _objects(t: Type, prefix: str) -> Iterable[tuple[Obj, str]]:
    if isinstance(t, Obj):
        yield t, prefix
        return
    seen: set[int] = set()
    for part, suffix in t.parts():
        for o, p in _objects(part, prefix.rstrip(".") + suffix + "." if suffix else prefix):
            if id(o) not in seen:         # alternatives may share one object
                seen.add(id(o))
                yield o, p
