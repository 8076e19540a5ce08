"""mosnx.dsl: the .mdsl rule language (parse → check → compile to runtime objects).

Importing the package registers the `rules:` loader in runtime's registry, and
loads nothing else: the parser (lark) and the compiler are imported when the first
`rules:` is loaded, so a proxy with none never pays for them. The names below load
their module on first use (PEP 562).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mosnx.runtime.filters  # noqa: F401  (the compiler builds fault and rate-limit filters)
from mosnx.runtime import register_rules_loader

if TYPE_CHECKING:
    from mosnx.runtime.registry import BuildContext, RulesResult

    from .rules import analyze, load_rules


def _load_rules(paths: tuple[str, ...], ctx: "BuildContext") -> "RulesResult | None":
    from .rules import load_rules
    return load_rules(paths, ctx)


register_rules_loader("mdsl", _load_rules)


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import rules
        return getattr(rules, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["analyze", "load_rules"]
