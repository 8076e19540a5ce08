"""A listener's `filters:` items: one-key mappings `{<kind>: {name, disabled, ...settings}}`,
or just `<kind>` for a filter that needs no settings.

The kind is not checked here: build_snapshot() looks it up in the registry, where
filters register. Settings other than `name` and `disabled` go to the filter as
plain data, unvalidated; relative paths inside them are relative to the folder
of Config.path, which the filter's factory resolves.
"""
from __future__ import annotations

from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode

from ..model import FilterSpec
from .reader import BAD_VALUE, KeyPath, Reader, dotted, is_null
from .scalars import Bool, Str
from .schema import INVALID, Field, Obj, Type

BODY = Obj({
    "name": Field(Str(), "instance name, used in stats and by .mdsl rules; default: the kind"),
    "disabled": Field(Bool(), "runs only where a route names it", default=False),
}, rest="config", label="the filter's settings as a mapping")

SHAPE = "a one-key mapping such as `- wasm: {name: authz, module: authz.wasm}`"


class FilterItem(Type):
    kinds = frozenset({"mapping", "scalar"})
    label = f"a filter: {SHAPE}"
    name = "filter"
    body = BODY

    def convert(self, node: Node, r: Reader, path: KeyPath) -> Any:
        kind: str
        kind_node: Node
        body: Node | None
        if isinstance(node, ScalarNode) and node.tag.endswith(":str") and node.value:
            kind, kind_node, body = node.value, node, None
        elif isinstance(node, MappingNode) and len(node.value) == 1:
            entry = next(r.entries(node), None)
            if entry is None:
                return INVALID
            kind, kind_node, body = entry
        elif isinstance(node, MappingNode):
            keys = ", ".join(str(k.value) for k, _ in node.value) or "none"
            r.error(node, BAD_VALUE, f"{dotted(path)}: a filter is {SHAPE}; got keys {keys}")
            return INVALID
        else:
            return self.wrong_type(node, r, path)
        settings: dict[str, Any] = {"config": {}, "disabled": False}
        r.positions[path + ("name",)] = r.span(kind_node)
        if body is not None and not is_null(body):
            r.positions[path + (kind,)] = r.span(body)
            settings = self.body.convert(body, r, path + (kind,))
            if settings is INVALID:
                return INVALID
            if (path + (kind, "name")) in r.positions:
                r.positions[path + ("name",)] = r.positions[path + (kind, "name")]
        return FilterSpec(kind=kind, name=settings.get("name", kind), config=settings["config"],
                          disabled=settings["disabled"], span=r.span(node))
