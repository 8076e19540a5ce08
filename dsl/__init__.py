"""mosnx.dsl: the .mdsl rule language (parse → check → compile to runtime objects).

Importing the package registers the `rules:` loader in runtime's registry.
"""
import mosnx.runtime.filters  # noqa: F401  (the compiler builds fault and rate-limit filters)
from mosnx.runtime import register_rules_loader

from .rules import analyze, load_rules

register_rules_loader("mdsl", load_rules)

__all__ = ["analyze", "load_rules"]
