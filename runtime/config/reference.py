"""docs/config.md, rendered from the schema that validates mosnx.yaml.

The reference is a pure function of DOCUMENT (and of the filter kinds registered
when it runs), so it says what the loader accepts and nothing else: a key, its
type, default and description come from the one Field that declares it. Every
object gets a section, in the order the document declares it; an object reached
twice is described once and linked. The committed docs/config.md must equal
render(); tests/runtime/config/test_reference.py holds them together.

    mosnx docs config > docs/config.md

(the CLI, the composition root, registers the filters before it renders; runtime
itself imports none of them.)
"""
from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any, Callable, Iterator

from .. import registry
from .access_log import Format
from .compound import Data, Either, ListOf, MapOf, Mapped
from .document import DOCUMENT
from .filters import BODY as FILTER_BODY, FilterItem
from .names import Distinct, Ref
from .scalars import Address, Bool, Duration, Enum, FilePath, Int, Number, Size, Str
from .schema import NOT_SET, Obj, Type

REGENERATE = "mosnx docs config > docs/config.md"
FILTERS_ANCHOR = "filters"

HEADER = f"""\
# mosnx.yaml reference

<!-- Generated from the config schema (runtime/config/*.py); do not edit.
     Regenerate with: {REGENERATE} -->

Every key mosnx.yaml accepts, generated from the declarations the loader validates
with, so it cannot disagree with `mosnx check`. A key not listed here is an error
(C002). Durations read `250ms`, `2s`, `1m`, `1h` (a bare number is seconds); sizes
read `512`, `64KiB`, `1MiB` (a bare number is bytes). A key left empty (`timeout:`)
keeps its default.

Key paths use `[]` for "each item of the list": `listeners[].tls.cert` is the `cert`
of the `tls` mapping of any listener. A default of "—" means the key is off or
unset when absent (its description says what that does).
"""


@dataclasses.dataclass
class _Section:
    path: str
    obj: Obj
    intro: str = ""


def _anchor(path: str) -> str:
    return "key-" + (path.replace("[]", "").replace(".", "-") or "top")


# -- types in words --

def _range(lo: Any, hi: Any) -> str:
    if lo is not None and hi is not None:
        return f" {lo}..{hi}"
    if lo is not None:
        return f" ≥ {lo}"
    if hi is not None:
        return f" ≤ {hi}"
    return ""


def type_words(t: Type, link: Callable[[Obj], str]) -> str:
    """What `t` accepts, in words; an object is a link to its section."""
    if isinstance(t, Distinct):
        return type_words(t.inner, link)
    if isinstance(t, Mapped):
        return type_words(t.inner, link)
    if isinstance(t, Enum):
        return "one of " + ", ".join(f"`{c}`" for c in t.choices)
    if isinstance(t, Ref):
        return f"{t.kind} name"
    if isinstance(t, Format):
        return "access-log format string"
    if isinstance(t, FilePath):
        keep = "".join(f" or `{k}`" for k in t.keep)
        return ("path (must exist)" if t.must_exist else "path") + keep
    if isinstance(t, Str):
        return "string" + (" (may be empty)" if t.empty else "")
    if isinstance(t, Bool):
        return "bool"
    if isinstance(t, Number):
        return "number" + _range(t.low, t.high)
    if isinstance(t, Int):
        return "int" + _range(t.low, t.high)
    if isinstance(t, Duration):
        extra = " > 0" if t.positive else " (0: none)" if t.zero_is_none else ""
        return "duration" + extra
    if isinstance(t, Size):
        return "size" + (" > 0" if t.positive else "")
    if isinstance(t, Address):
        return "host:port"
    if isinstance(t, ListOf):
        words = "list of " + type_words(t.item, link)
        if t.min_items:
            words += f" (at least {t.min_items})"
        if t.single:
            words += "; one item may be written alone"
        if t.split:
            words += f'; or one string of items separated by "{t.split}"'
        return words
    if isinstance(t, MapOf):
        return f"mapping of {type_words(t.key, link)} to {type_words(t.value, link)}"
    if isinstance(t, Either):
        return " or ".join(type_words(a, link) for a in t.alternatives)
    if isinstance(t, FilterItem):
        return f"filter, see [filters](#{FILTERS_ANCHOR})"
    if isinstance(t, Data):
        return "any value, checked by its filter"
    if isinstance(t, Obj):
        if not t.fields:
            return "empty mapping `{}`"
        return link(t)
    return t.name


# -- defaults in words --

def _duration(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    ms = seconds * 1000
    return f"{ms:g}ms"


def _size(n: int) -> str:
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def _scalar_type(t: Type) -> Type:
    while isinstance(t, (Distinct, Mapped)):
        t = t.inner
    if isinstance(t, Either):
        return _scalar_type(t.alternatives[0])
    return t


def default_words(t: Type, value: Any) -> str:
    if dataclasses.is_dataclass(value):
        return "see its keys"
    if value is NOT_SET or value is None:
        return "—"
    if value == "":
        return '`""`'
    st = _scalar_type(t)
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(st, Duration) and isinstance(value, (int, float)):
        return f"`{_duration(value)}`"
    if isinstance(st, Size) and isinstance(value, int):
        return f"`{_size(value)}`"
    if isinstance(st, ListOf) and isinstance(value, (tuple, list, frozenset)):
        items = sorted(value) if isinstance(value, frozenset) else value
        return "`[" + ", ".join(str(i) for i in items) + "]`"
    if isinstance(st, Address) and isinstance(value, tuple):
        return f"`{value[0]}:{value[1]}`"
    if isinstance(value, (tuple, frozenset)) and not value:
        return "`[]`"
    return f"`{value}`"


# -- walking the schema --

def _objects_in(t: Type) -> Iterator[tuple[Obj, str]]:
    """The objects directly inside `t` (through lists, alternatives, maps), with the
    key-path suffix each adds."""
    if isinstance(t, Obj):
        yield t, ""
    elif isinstance(t, (Distinct, Mapped)):
        yield from _objects_in(t.inner)
    elif isinstance(t, ListOf):
        for o, s in _objects_in(t.item):
            yield o, "[]" + s
    elif isinstance(t, MapOf):
        for o, s in _objects_in(t.value):
            yield o, ".<key>" + s
    elif isinstance(t, Either):
        for a in t.alternatives:
            yield from _objects_in(a)


def sections(root: Obj = DOCUMENT) -> list[_Section]:
    """Every object with keys, depth first in declaration order, each once."""
    out: list[_Section] = []
    seen: set[int] = set()

    def visit(obj: Obj, path: str) -> None:
        if id(obj) in seen or not obj.fields:
            return
        seen.add(id(obj))
        out.append(_Section(path, obj))
        for key, f in obj.fields.items():
            for child, suffix in _objects_in(f.type):
                visit(child, f"{path}.{key}{suffix}" if path else f"{key}{suffix}")

    visit(root, "")
    return out


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_section(s: _Section, link: Callable[[Obj], str]) -> list[str]:
    title = f"`{s.path}`" if s.path else "Top level"
    lines = [f'<a id="{_anchor(s.path)}"></a>', "", f"## {title}", ""]
    if s.intro:
        lines += [s.intro, ""]
    lines += ["| key | type | default | description |", "|---|---|---|---|"]
    for key, f in s.obj.fields.items():
        default = "**required**" if f.required else default_words(f.type, s.obj.default_of(key))
        lines.append(f"| `{key}` | {_cell(type_words(f.type, link))} | {_cell(default)} | {_cell(f.doc)} |")
    return lines + [""]


def _doc_paragraph(doc: str | None) -> str:
    """The first paragraph of a docstring, on one line."""
    if not doc:
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split())


_PROBE = "zz_reference_probe"
_KNOWN = re.compile(r"known: ([\w, ]+)")


def filter_settings(kind: str) -> list[str]:
    """The settings `kind` accepts, as its factory says when given one it does not know
    (every shipped filter refuses unknown settings and names the known ones)."""
    factory = registry.filter_factory(kind)
    if factory is None:
        return []
    ctx = registry.BuildContext(config=None, listener=None, clusters=set(), filters={})
    try:
        factory("reference", {_PROBE: None}, ctx)
    except Exception as e:        # the refusal is the answer; anything else says nothing
        m = _KNOWN.search(str(e))
        if m and _PROBE in str(e):
            return [k.strip() for k in m.group(1).split(",") if k.strip()]
    return []


def _shape(module: Any) -> str:
    """The docstring of the module's config parser (a `from_dict`), which spells the shape."""
    for value in vars(module).values() if module else ():
        parse = getattr(value, "from_dict", None)
        if isinstance(value, type) and value.__module__ == module.__name__ and parse and parse.__doc__:
            return " ".join(parse.__doc__.split())
    return ""


def render_filters(kinds: list[str]) -> list[str]:
    lines = [f'<a id="{FILTERS_ANCHOR}"></a>', "", "## Filters", "",
             "A listener's `filters:` is a list; each item is a one-key mapping from the filter's",
             "kind to its settings, `- <kind>: {name, disabled, ...settings}`, or just `- <kind>`",
             "for a filter that needs no settings. Two settings are common to every kind:", "",
             "| key | type | default | description |", "|---|---|---|---|"]
    for key, f in FILTER_BODY.fields.items():
        default = default_words(f.type, FILTER_BODY.default_of(key))
        lines.append(f"| `{key}` | {_cell(type_words(f.type, lambda o: ''))} | {_cell(default)} | {_cell(f.doc)} |")
    lines += ["", "The other settings belong to the kind and are checked by its factory when the",
              "snapshot is built (C202 names the filter and the setting); the lists below are what",
              "each factory accepts. The kinds registered:", ""]
    for kind in kinds:
        factory = registry.filter_factory(kind)
        # imported here if not yet: a filter may load its module when first built
        name = getattr(factory, "__module__", "")
        module = importlib.import_module(name) if name else None
        lines += [f"### `{kind}`", "", _doc_paragraph(getattr(module, "__doc__", None)), ""]
        settings = filter_settings(kind)
        if settings:
            lines += ["Settings: " + ", ".join(f"`{k}`" for k in settings) + ".", ""]
        shape = _shape(module)
        if shape:
            lines += [shape, ""]
    return lines + [""]


def shipped_filter_kinds() -> list[str]:
    """The registered kinds that mosnx itself provides (not a test's or a script's own)."""
    return [k for k in registry.filter_kinds()
            if getattr(registry.filter_factory(k), "__module__", "").startswith("mosnx.")]


def render(kinds: list[str] | None = None) -> str:
    """docs/config.md. `kinds`: the filter kinds to list (default: those registered now)."""
    secs = sections()
    where = {id(s.obj): s.path for s in secs}

    def link(o: Obj) -> str:
        path = where.get(id(o))
        return f"mapping, see [`{path}`](#{_anchor(path)})" if path is not None else "mapping"

    lines = [HEADER, "Sections: " + ", ".join(
        f"[`{s.path}`](#{_anchor(s.path)})" for s in secs if s.path) + f", [filters](#{FILTERS_ANCHOR}).", ""]
    for s in secs:
        lines += render_section(s, link)
    lines += render_filters(shipped_filter_kinds() if kinds is None else kinds)
    return "\n".join(lines).rstrip("\n") + "\n"
