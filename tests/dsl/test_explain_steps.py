"""dsl/explain_steps.py: statements run one at a time on a private copy of the
request (their effect is the difference they make); filters described, never run."""
from __future__ import annotations

from mosnx import tooling
from mosnx.dsl.explain import Explainer, parse_request
from mosnx.runtime.snapshot import build_snapshot


def explain(ex: Explainer, line: str, headers=(), source=None, **kw):
    return ex.explain(parse_request(line, headers, source), **kw)


def test_redirect_statement_before_routing(tmp_path):
    (tmp_path / "r.mdsl").write_text('on request { when request.path prefix "/old/" { redirect 302 prefix "/new/" } }\n'
                                     'route all { to c }\n')
    cfg = tmp_path / "m.yaml"
    cfg.write_text("listeners:\n  - {name: l, address: 127.0.0.1:1, rules: r.mdsl}\n"
                   "clusters:\n  - {name: c, endpoints: ['127.0.0.1:2']}\n")
    ex = Explainer(build_snapshot(str(cfg)), tooling.core())
    got = explain(ex, "GET http://h/old/a?q=1")
    assert (got.route, got.status, got.location) == (None, 302, "http://h/new/a?q=1")
    assert [s.effect[-1] for s in got.steps if s.phase == "request"][-1] == "local reply 302"
    got = explain(ex, "GET http://h/x")
    assert (got.route, got.cluster, got.location) == ("all", "c", None)


def test_yaml_filters_are_described_with_their_settings(tmp_path):
    cfg = tmp_path / "f.yaml"
    cfg.write_text("""listeners:
  - name: l
    address: 127.0.0.1:1
    route: {cluster: c}
    filters:
      - rate_limit: {name: rl, token_bucket: {max_tokens: 10, tokens_per_fill: 5, fill_interval: 1s},
                     key: 'request.headers["x-api-key"]'}
      - fault: {name: f, delay: {fixed_delay: 1s, percentage: 5}}
clusters:
  - {name: c, endpoints: ["127.0.0.1:2"]}
""")
    ex = Explainer(build_snapshot(str(cfg)), tooling.core())
    got = explain(ex, "GET http://any/x", ["x-api-key: k1"])
    assert got.rate_limit_keys == ["k1"] and got.cluster == "c"
    facts = {s.what: s.effect for s in got.steps}
    assert facts['filter "rl" (RateLimitFilter) would run (not run here)'] == \
        ["token_bucket 5/s, burst 10, over it 429", "key = 'k1'"]
    assert facts['filter "f" (FaultFilter) would run (not run here)'] == ["delay 1s for 5%"]
    assert all(not s.ran for s in got.steps)        # described, never run: nothing was delayed or counted
