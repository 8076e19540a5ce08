"""The `rules:` front end as build_snapshot uses it: load_rules with a BuildContext,
and a YAML listener with `rules:` built end to end."""
from __future__ import annotations

import os

import pytest

from mosnx.dsl import load_rules
from mosnx.runtime import build_snapshot
from mosnx.runtime.diagnostics import ConfigError
from mosnx.runtime.model import Config, ListenerConfig
from mosnx.runtime.pipeline import HttpFilter
from mosnx.runtime.registry import BuildContext, rules_loader


def ctx(clusters=("web", "api"), filters=None) -> BuildContext:
    lc = ListenerConfig("l", "127.0.0.1", 18080)
    return BuildContext(config=Config("<t>", None, (lc,), ()), listener=lc, clusters=set(clusters),
                        filters=dict(filters or {}))


def test_loader_is_registered(rules):
    # the registered loader is load_rules, imported when first called (the parser and
    # compiler are not loaded by a proxy without rules)
    loader = rules_loader("mdsl")
    assert loader is not None
    main = rules.write('route b { to web }', "main.mdsl")
    c = ctx()
    result = loader((main,), c)
    assert result is not None and c.diagnostics == [] and c.sources == [main]
    assert [r.name for r in result.routes.vhosts[0].routes] == ["b"]


def test_load_rules_compiles_and_records_sources(rules):
    rules.write("const api = request.path prefix \"/api\"", "lib.mdsl")
    main = rules.write('import "lib.mdsl"\nroute a when api { to api }\nroute b { to web }', "main.mdsl")
    c = ctx()
    result = load_rules((main,), c)
    assert result is not None and c.diagnostics == []
    assert [r.name for r in result.routes.vhosts[0].routes] == ["a", "b"]
    assert c.sources == [main, os.path.join(rules.tmp, "lib.mdsl")]


def test_folder_loads_every_mdsl_sorted(rules):
    rules.write('vhost b domains "b.com" { route r { to web } }', "rules/b.mdsl")
    rules.write('vhost a domains "a.com" { route r { to web } }', "rules/a.mdsl")
    c = ctx()
    result = load_rules((os.path.join(rules.tmp, "rules"),), c)
    assert [vh.name for vh in result.routes.vhosts] == ["a", "b"]
    # the files read, then the folder itself (its mtime changes when a file is added)
    assert [os.path.basename(p) for p in c.sources] == ["a.mdsl", "b.mdsl", "rules"]


def test_unknown_cluster_and_filter_fail_the_build(rules):
    path = rules.write('route a { to wbe wasm "authx" }')
    c = ctx(filters={"authz": HttpFilter()})
    assert load_rules((path,), c) is None
    assert [(d.code, d.span.line, d.span.column) for d in c.diagnostics] == [("U301", 1, 11), ("U302", 1, 18)]
    assert all(d.source_line == 'route a { to wbe wasm "authx" }' for d in c.diagnostics)
    assert c.sources == [path]       # watched even when broken, so a fix reloads


def test_warnings_do_not_fail_the_build(rules):
    path = rules.write("route a { split { web: 50, api: 40 } }")
    c = ctx()
    assert load_rules((path,), c) is not None
    assert [d.code for d in c.diagnostics] == ["R204"]


def test_each_call_reads_the_files_again(rules):
    path = rules.write("route a { respond 200 \"one\" }")
    assert load_rules((path,), ctx()).routes.vhosts[0].routes[0].action.body == b"one"
    rules.write("route a { respond 200 \"two\" }")
    assert load_rules((path,), ctx()).routes.vhosts[0].routes[0].action.body == b"two"
    rules.write("route a { respond 200 \"three\" ")
    c = ctx()
    assert load_rules((path,), c) is None and c.diagnostics[0].code == "E001"


def test_missing_rules_path(rules):
    c = ctx()
    assert load_rules((os.path.join(rules.tmp, "nope.mdsl"),), c) is None
    assert c.diagnostics[0].code == "E003"


YAML = """
listeners:
  - name: shop
    address: 127.0.0.1:18080
    rules: {rules}
    filters:
      - fault: {{name: chaos, disabled: true, abort: {{http_status: 418}}}}
clusters:
  - {{name: web, endpoints: ["127.0.0.1:9000"]}}
  - {{name: api, endpoints: ["127.0.0.1:9001"]}}
"""


def test_build_snapshot_with_rules_end_to_end(rules):
    rules.write('vhost shop domains "shop.example.com" {\n'
                '  on request { set request.headers["x-seen"] = "1" }\n'
                '  route teapot when request.path == "/tea" { to api wasm "chaos" }\n'
                '  route rest { to web }\n}', "rules/shop.mdsl")
    cfg = rules.write(YAML.format(rules="rules"), "mosnx.yaml")
    snap = build_snapshot(cfg)
    listener = snap.listeners["shop"]
    vh = listener.routes.vhost_for("shop.example.com")
    ctx_ = rules.request(path="/tea")
    for step in vh.chain.request:
        assert step(ctx_) is None
    r = vh.match(ctx_)
    assert r.name == "teapot" and ctx_.request.headers.get("x-seen") == "1"
    replies = [a for a in (s(ctx_) for s in r.chain.request) if a is not None]
    assert replies[0].status == 418
    assert os.path.join(rules.tmp, "rules", "shop.mdsl") in snap.sources
    assert listener.routes.clusters() == {"api", "web"}


def test_build_snapshot_reports_rule_errors_with_positions(rules):
    rules.write('route a { to wbe }', "rules/x.mdsl")
    cfg = rules.write(YAML.format(rules="rules/x.mdsl"), "mosnx.yaml")
    with pytest.raises(ConfigError) as e:
        build_snapshot(cfg)
    (d,) = e.value.diagnostics
    assert str(d) == f'{rules.tmp}/rules/x.mdsl:1:11: U301 unknown cluster "wbe" (did you mean "web"?)'


def test_shop_example_builds(rules):
    here = os.path.dirname(__file__)
    cfg = os.path.normpath(os.path.join(here, "..", "..", "examples", "shop", "mosnx.yaml"))
    snap = build_snapshot(cfg)
    vh = snap.listeners["shop"].routes.vhost_for("www.shop.example.com")
    assert [r.name for r in vh.routes] == ["health", "old-docs", "items", "beta", "api", "default"]
    ctx_ = rules.request(path="/admin/users", host="shop.example.com")
    replies = [a for a in (s(ctx_) for s in vh.chain.request) if a is not None]
    assert replies and replies[0].status == 403
