"""runtime/registry.py: front ends and filters register by name and are looked up by
name; runtime itself imports none of them."""
from __future__ import annotations

import subprocess
import sys

import pytest

from mosnx.runtime import registry
from mosnx.runtime.pipeline import HttpFilter
from mosnx.runtime.routes import RouteTable


@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_filters", dict(registry._filters))
    monkeypatch.setattr(registry, "_rules_loaders", dict(registry._rules_loaders))


def test_a_registered_filter_is_found_by_kind(clean_registry):
    class Tag(HttpFilter):
        def __init__(self, name):
            self.name = name

    registry.register_filter("tag_test", lambda name, cfg, bctx: Tag(name))
    factory = registry.filter_factory("tag_test")
    bctx = registry.BuildContext(config=None, listener=None, clusters=set(), filters={})
    assert factory("t1", {}, bctx).name == "t1"
    assert "tag_test" in registry.filter_kinds() and registry.filter_kinds() == sorted(registry.filter_kinds())
    assert registry.filter_factory("no_such_kind") is None


def test_the_rules_loader_defaults_to_mdsl(clean_registry):
    def loader(paths, ctx):
        return registry.RulesResult(RouteTable(()))
    registry.register_rules_loader("mdsl", loader)
    assert registry.rules_loader() is loader and registry.rules_loader("mdsl") is loader
    assert registry.rules_loader("other") is None
    result = loader((), None)
    assert not result.pipeline                       # no listener-level steps unless the rules give some


def test_a_build_context_starts_empty_and_owns_its_lists():
    a = registry.BuildContext(config=None, listener=None, clusters=set(), filters={})
    b = registry.BuildContext(config=None, listener=None, clusters=set(), filters={})
    a.diagnostics.append("x")
    assert b.diagnostics == [] and a.services.stats is not b.services.stats
    assert a.services.http_call is None and a.services.worker_id == 0


def test_importing_runtime_registers_nothing_of_dsl_or_wasm():
    # the dependency points inward: only the composition root imports the front ends
    code = ("import sys, mosnx.runtime, mosnx.runtime.registry as r; "
            "assert r.rules_loader() is None, 'dsl loaded'; "
            "assert 'wasm' not in r.filter_kinds(); "
            "assert not [m for m in sys.modules if m.startswith(('mosnx.dsl', 'mosnx.wasm'))]")
    subprocess.run([sys.executable, "-c", code], check=True)
