"""runtime/config/rpc.py: `protocol: bolt | dubbo` listeners and clusters, rpc.routes,
and the settings an RPC listener refuses (HTTP-only ones, what its protocol cannot route by)."""
from __future__ import annotations

from mosnx.runtime.config.rpc import RpcClusterOptions, RpcMatch, RpcOptions

from .conftest import findings, load

DOC = """
listeners:
  - name: rpc
    address: 127.0.0.1:12200
    protocol: %(proto)s
    route: {cluster: a, timeout: 2s, retry: {num_retries: 2, per_try_timeout: 500ms}}
    rpc:
      max_frame_size: 1MiB
      idempotent_methods: [get, list]
      routes:
        - match: {service: com.example.B, method: charge, version: "1.0"%(extra)s}
          route: {weighted_clusters: {a: 1, b: 3}}
clusters:
  - name: a
    protocol: %(proto)s
    endpoints: [127.0.0.1:2]
    rpc: {connections: 2, max_requests_per_connection: 50}
  - name: b
    protocol: %(proto)s
    endpoints: [127.0.0.1:3]
"""


def test_bolt_listener_and_cluster_load():
    cfg = load(DOC % {"proto": "bolt", "extra": ", group: g1, headers: {zone: gz}"})
    (lc,) = cfg.listeners
    assert lc.protocol == "bolt" and lc.route.timeout == 2.0 and lc.route.retry.num_retries == 2
    opts = lc.options["rpc"]
    assert isinstance(opts, RpcOptions)
    assert opts.max_frame_size == 1024 * 1024 and opts.idempotent_methods == frozenset({"get", "list"})
    (r,) = opts.routes
    assert r.match == RpcMatch("com.example.B", "charge", "1.0", "g1", (("zone", "gz"),))
    assert r.match.pairs() == ((":service", "com.example.B"), (":method", "charge"), (":version", "1.0"),
                               (":group", "g1"), ("zone", "gz"))
    assert r.route.weighted_clusters == (("a", 1), ("b", 3))
    a, b = cfg.clusters
    assert a.protocol == "bolt" and a.options["rpc"] == RpcClusterOptions(2, 50)
    assert "rpc" not in b.options


def test_dubbo_routes_on_group_and_attachments():
    cfg = load(DOC % {"proto": "dubbo", "extra": ", group: g1, headers: {zone: gz}"})
    assert cfg.listeners[0].protocol == "dubbo"
    (r,) = cfg.listeners[0].options["rpc"].routes
    assert (":group", "g1") in r.match.pairs() and ("zone", "gz") in r.match.pairs()


def test_rpc_routes_alone_are_enough():
    cfg = load("""
listeners:
  - name: rpc
    address: 127.0.0.1:12200
    protocol: bolt
    rpc: {routes: [{match: {service: s}, route: {cluster: a}}]}
clusters:
  - name: a
    protocol: bolt
    endpoints: [127.0.0.1:2]
""")
    assert cfg.listeners[0].route is None
    # an HTTP listener still needs route: or rules:
    errs = findings("""
listeners:
  - name: h
    address: 127.0.0.1:12200
    rpc: {routes: [{match: {service: s}, route: {cluster: a}}]}
clusters:
  - name: a
    endpoints: [127.0.0.1:2]
""")
    assert any(code == "C005" for code, *_ in errs)


def test_rpc_settings_refused_where_they_do_not_apply():
    errs = findings("""
listeners:
  - name: h
    address: 127.0.0.1:12200
    route: {cluster: a}
    rpc: {max_frame_size: 1MiB}
clusters:
  - name: a
    endpoints: [127.0.0.1:2]
""")
    assert len(errs) == 1 and "rpc: settings need protocol: bolt or dubbo" in errs[0][3]
    errs = findings("""
listeners:
  - name: r
    address: 127.0.0.1:12200
    protocol: bolt
    route: {cluster_header: x-cluster}
clusters:
  - name: a
    protocol: bolt
    endpoints: [127.0.0.1:2]
""")
    assert len(errs) == 1 and "cluster_header needs an HTTP listener" in errs[0][3]
    errs = findings("""
listeners:
  - name: r
    address: 127.0.0.1:12200
    protocol: bolt
    route: {cluster: a}
    rpc: {routes: [{match: {}, route: {cluster: a, rate_limit: {token_bucket: {max_tokens: 1}}}}]}
clusters:
  - name: a
    protocol: bolt
    endpoints: [127.0.0.1:2]
""")
    assert len(errs) == 1 and "not per-route policies on an RPC listener" in errs[0][3]
    errs = findings("""
listeners:
  - name: r
    address: 127.0.0.1:12200
    protocol: triple
    route: {cluster: a}
clusters:
  - name: a
    endpoints: [127.0.0.1:2]
""")
    assert [(code, msg) for code, _, _, msg in errs] == [
        ("C004", 'listeners[0].protocol: unknown value "triple"; expected one of http, tcp, bolt, dubbo, thrift')]


def test_tls_not_silently_dropped(tmp_path):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    errs = findings(f"""
listeners:
  - name: r
    address: 127.0.0.1:12200
    protocol: dubbo
    route: {{cluster: a}}
    tls: {{cert: {cert}, key: {cert}}}
clusters:
  - name: a
    protocol: dubbo
    endpoints: [127.0.0.1:2]
""")
    assert len(errs) == 1 and "tls: is not served on a protocol: dubbo listener yet" in errs[0][3]


def test_rules_route_an_rpc_listener_in_place_of_rpc_routes(tmp_path):
    rules = tmp_path / "calls.mdsl"
    rules.write_text("rpc calls { route all { to a } }\n")
    doc = f"""
listeners:
  - name: r
    address: 127.0.0.1:12200
    protocol: bolt
    rules: {rules}
%s
clusters:
  - name: a
    protocol: bolt
    endpoints: [127.0.0.1:2]
"""
    (lc,) = load(doc % "").listeners
    assert lc.rules == (str(rules),)
    errs = findings(doc % "    rpc: {routes: [{match: {}, route: {cluster: a}}]}")
    assert len(errs) == 1 and "rpc.routes and rules: both route the calls" in errs[0][3]


def test_thrift_listener_pins_its_encoding_and_routes_by_method_only():
    from mosnx.runtime.config.rpc import ThriftOptions
    doc = """
listeners:
  - name: t
    address: 127.0.0.1:12200
    protocol: thrift
    route: {cluster: a}
    thrift: {transport: framed, protocol: compact}
    rpc: {routes: [{match: {service: Greeter, method: hello%s}, route: {cluster: a}}]}
clusters:
  - name: a
    protocol: thrift
    endpoints: [127.0.0.1:2]
"""
    (lc,) = load(doc % "").listeners
    assert lc.options["thrift"] == ThriftOptions("framed", "compact")
    errs = findings(doc % ", version: '1'")
    assert len(errs) == 1 and "a thrift call is not routed by version" in errs[0][3]
    errs = findings(doc.replace("protocol: compact", "protocol: json"))
    assert len(errs) == 1 and 'unknown value "json"' in errs[0][3]
    errs = findings(doc.replace("protocol: thrift\n    route", "protocol: dubbo\n    route") % "")
    assert any("thrift: settings need protocol: thrift" in e[3] for e in errs)
