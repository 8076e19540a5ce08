"""dsl/explain_rules.py: a route's condition explained operand by operand agrees,
for every request, with the verdict of the route's compiled guard."""
from __future__ import annotations

from mosnx import tooling
from mosnx.dsl.explain import Explainer, parse_request
from mosnx.runtime.snapshot import build_snapshot


def explain(ex: Explainer, line: str, headers=(), source=None, **kw):
    return ex.explain(parse_request(line, headers, source), **kw)


def test_generated_rules_corpus(tmp_path):
    """Routes whose conditions mix and, or, not and consts: for every request, every
    route tried gets the same verdict from the explanation as from its guard."""
    rules = tmp_path / "r.mdsl"
    rules.write_text('''
const mobile = request.headers["user-agent"] contains "Mobile"
const staff = source.address in {10.0.0.0/8}
vhost v {
  route a when request.path prefix "/a" and (mobile or not staff) { to c }
  route b when not (request.method == "GET" or request.query["x"] == "1") and request.path suffix ".json" { to c }
  route c when exists(request.headers["x-k"]) and lower(request.headers["x-k"]) in {"k1", "k2"} { to c }
  route d when request.url_path ~ "^/d/[0-9]+$" or request.headers["x-d"] != "" { to c }
  route z { to c }
}
''')
    cfg = tmp_path / "m.yaml"
    cfg.write_text("listeners:\n  - {name: l, address: 127.0.0.1:1, rules: r.mdsl}\n"
                   "clusters:\n  - {name: c, endpoints: ['127.0.0.1:2']}\n")
    ex = Explainer(build_snapshot(str(cfg)), tooling.core())
    n = 0
    for path in ["/a", "/a/x.json", "/b.json", "/d/1", "/d/x", "/z?x=1", "/q.json?x=1"]:
        for method in ["GET", "POST"]:
            for ua in [None, "Mobile Safari"]:
                for src in ["10.1.1.1", "1.2.3.4"]:
                    for k in [None, "K1", "k3"]:
                        hs = ([f"user-agent: {ua}"] if ua else []) + ([f"x-k: {k}"] if k else [])
                        got = ex.explain(parse_request(f"{method} http://v.example{path}", hs, src))
                        assert not got.mismatch, (path, method, ua, src, k, got.mismatch)
                        n += 1
    assert n == 7 * 2 * 2 * 2 * 3
