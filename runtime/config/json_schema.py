"""`mosnx schema`: a JSON Schema (draft 2020-12) of mosnx.yaml, generated from DOCUMENT.

Like docs/config.md (reference.py), the schema is a pure function of the
declarations the loader validates with, so editors with a YAML language server
check and complete exactly what `mosnx check` accepts. Each schema type maps to
JSON Schema in to_schema(); a type it does not know is an error here, never a
silent "anything", so a new type cannot slip past the export. Every object with
keys is a $defs entry named by its key path (as docs/config.md's sections).

What JSON Schema cannot say, and so only `mosnx check` reports: references
between parts of the document (a route's cluster must be a declared cluster;
names unique across the document), checks that compare two keys (`ordered`:
a low-water mark below the high one), values checked by code (a regex that
compiles, a format string's operators, an attribute reference, a file that
exists, an IPv6 host), and the settings of each filter kind (checked by the
filter's factory). YAML null means "not set" to the loader, so every key that
is not required also accepts null.
"""
from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from typing import Any, Callable, TextIO

from .access_log import Format, JsonFormatType
from .chains import CHAIN_KEYS
from .compound import Data, Either, ListOf, MapOf, Mapped
from .document import DOCUMENT
from .filters import FilterItem
from .names import Distinct, Ref
from .reference import sections
from .rpc import RPC_PROTOCOLS
from .scalars import Address, Bool, Duration, Enum, FilePath, Int, Number, Size, Str
from .schema import Obj, Type
from .tracing import Percent
from .units import _NUMBER, _SIZE_UNITS

DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID = "https://mosnx.dev/schema/mosnx.yaml.json"
_DURATION = rf"^\s*{_NUMBER}\s*$|^\s*(?:{_NUMBER}(?:ns|us|µs|ms|s|m|h))+\s*$"
_SIZE = (rf"^\s*{_NUMBER}\s*(?i:" + "|".join(sorted((u for u in _SIZE_UNITS if u), key=len, reverse=True))
         + r")?\s*$")
# what Str accepts: any scalar (`name: 8080` is the string "8080")
_SCALAR = ["string", "number", "boolean"]


class NotExported(Exception):
    """A schema type with no JSON Schema counterpart declared here."""


def _def_name(path: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "", path.replace("[]", "")) or "document"


class _Export:
    def __init__(self, root: Obj) -> None:
        self.names = {id(s.obj): _def_name(s.path) for s in sections(root) if s.path}
        self.defs: dict[str, Any] = {}
        self.root = root

    def schema(self, t: Type) -> dict[str, Any]:
        if isinstance(t, (Distinct, Mapped)):
            return self.schema(t.inner)
        if isinstance(t, Enum):
            return {"enum": list(t.choices)}
        if isinstance(t, Ref):
            return {"type": "string", "minLength": 1, "description": f"the name of a declared {t.kind}"}
        if isinstance(t, (Format, FilePath)):
            return {"type": "string", "minLength": 0 if t.empty else 1}
        if isinstance(t, Str):
            return {"type": _SCALAR} if t.empty else {"type": _SCALAR, "minLength": 1}
        if isinstance(t, Bool):
            return {"type": "boolean"}
        if isinstance(t, (Number, Int)):
            out: dict[str, Any] = {"type": "number" if isinstance(t, Number) else "integer"}
            if t.low is not None:
                out["minimum"] = t.low
            if t.high is not None:
                out["maximum"] = t.high
            return out
        if isinstance(t, Duration):
            return {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": _DURATION}],
                    "description": t.label}
        if isinstance(t, Size):
            return {"anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": _SIZE}],
                    "description": t.label}
        if isinstance(t, Address):
            return {"type": "string", "pattern": r"^\s*(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+):[0-9]+\s*$",
                    "description": t.label}
        if isinstance(t, ListOf):
            arr: dict[str, Any] = {"type": "array", "items": self.schema(t.item)}
            if t.min_items:
                arr["minItems"] = t.min_items
            alts = [arr]
            if t.single:
                alts.append(self.schema(t.item))
            if t.split:
                alts.append({"type": "string"})
            return arr if len(alts) == 1 else {"anyOf": alts}
        if isinstance(t, MapOf):
            return {"type": "object", "additionalProperties": self.schema(t.value)}
        if isinstance(t, Either):
            return {"anyOf": [self.schema(a) for a in t.alternatives]}
        if isinstance(t, FilterItem):
            return {"anyOf": [{"type": "string", "minLength": 1},
                              {"type": "object", "minProperties": 1, "maxProperties": 1,
                               "additionalProperties": {"anyOf": [self.schema(t.body), {"type": "null"}]}}],
                    "description": t.label}
        if isinstance(t, Percent):
            return {"anyOf": [{"type": "number", "minimum": 0, "maximum": 100},
                              {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*%?\s*$"}],
                    "description": t.label}
        if isinstance(t, JsonFormatType):
            return {"type": "object"}
        if isinstance(t, Data):
            return {}
        if isinstance(t, Obj):
            return self.obj(t)
        raise NotExported(f"no JSON Schema for {type(t).__name__}")

    def obj(self, o: Obj) -> dict[str, Any]:
        name = self.names.get(id(o))
        if name is not None and name in self.defs:
            return {"$ref": f"#/$defs/{name}"}
        if name is not None:
            self.defs[name] = {}             # taken before its fields, for an object inside itself
        out: dict[str, Any] = {"type": "object"}
        props: dict[str, Any] = {}
        for key, f in o.fields.items():
            p = self.schema(f.type)
            if f.doc:
                p = {**p, "description": f.doc} if "$ref" not in p else {"allOf": [p], "description": f.doc}
            default = o.default_of(key)
            if isinstance(default, (str, int, float, bool)) and not f.required:
                p["default"] = default
            props[key] = p if f.required else {"anyOf": [p, {"type": "null"}]} | (
                {"description": p["description"]} if "description" in p else {})
        out["properties"] = props
        required = [k for k, f in o.fields.items() if f.required]
        if required:
            out["required"] = required
        if not o.rest:
            out["additionalProperties"] = False
        rules = [r for r in (_check_schema(c) for c in o.checks) if r is not None]
        if rules:
            out["allOf"] = rules
        if name is None:
            return out
        self.defs[name] = out
        return {"$ref": f"#/$defs/{name}"}


def _one_of(keys: tuple[str, ...]) -> dict[str, Any]:
    return {"oneOf": [{"required": [k]} for k in keys]}


def _check_schema(check: Callable[..., Any]) -> dict[str, Any] | None:
    """The JSON Schema of an object check, where JSON Schema can say it."""
    kind = check.__qualname__.split(".")[0]
    free = inspect.getclosurevars(check).nonlocals
    if kind == "exactly_one":
        return _one_of(free["keys"])
    if kind == "stack_or_chains":
        inner = _check_schema(free["one"])
        chained = {"anyOf": [{"required": [k]} for k in sorted(CHAIN_KEYS)]}
        return {"if": {"not": chained}, "then": inner or {},
                "else": {"not": {"anyOf": [{"required": [k]} for k in sorted(free["stack_keys"])]}}}
    if kind == "routes_or":
        # an RPC listener's rpc.routes stand for route: or rules:
        inner = _check_schema(free["check"])
        if inner is None:
            return None
        rpc = {"properties": {"protocol": {"enum": list(RPC_PROTOCOLS)},
                              "rpc": {"required": ["routes"]}}, "required": ["protocol", "rpc"]}
        return {"if": rpc, "then": {}, "else": inner}
    return None     # `ordered` and the like compare values: mosnx check says it


def json_schema(root: Obj = DOCUMENT) -> dict[str, Any]:
    """The JSON Schema of mosnx.yaml."""
    ex = _Export(root)
    body = ex.obj(root)
    return {"$schema": DIALECT, "$id": SCHEMA_ID, "title": "mosnx.yaml",
            "description": "mosnx's configuration. Generated from the schema the loader validates with "
                           "(mosnx schema); cross-references are checked by `mosnx check` only.",
            **body, "$defs": ex.defs}


def main(argv: list[str], out: TextIO | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mosnx schema", description="Print the JSON Schema of mosnx.yaml "
                                 "(draft 2020-12), for editors with a YAML language server.")
    ap.add_argument("-o", "--output", help="write it to this file instead of standard output")
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return 0 if e.code in (0, None) else 2
    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if a.output:
        try:
            with open(a.output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as e:
            print(f"mosnx schema: {a.output}: {e.strerror}", file=sys.stderr)
            return 2
    else:
        (out or sys.stdout).write(text)
    return 0
