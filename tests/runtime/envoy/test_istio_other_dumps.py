"""Every resource of Istio's other config dumps (waypoint, gateway routes, endpoints)
decodes; what translates, what warns and what is refused, resource by resource.

The dumps are istioctl's testdata, read from the shared test data at test time:

- waypoint: istioctl/pkg/proxyconfig/testdata/config_dump.json (every section:
  bootstrap, clusters static and dynamic, endpoints, listeners, scoped routes,
  routes, secrets);
- compare: istioctl/pkg/writer/compare/testdata/configdump.json (a waypoint's
  cluster, its three internal listeners and its route);
- endpoint: istioctl/pkg/writer/envoy/configdump/testdata/endpoint/configdump.json
  (5 static and 32 dynamic ClusterLoadAssignments);
- gateway-istio, gateway-k8s: the two gateway RoutesConfigDumps under
  istioctl/pkg/writer/envoy/configdump/testdata/routes/.

Each resource is decoded from its JSON text and translated with the translator's own
entry point for its type: the bootstrap with load_bootstrap_data, a Cluster with
translate_cluster (an EDS one with its ClusterLoadAssignment when the dump holds it),
a ClusterLoadAssignment with endpoints_of, a Listener with translate_listener (each
RouteConfiguration it asks RDS for is the dump's, else an empty one), a
RouteConfiguration with translate_route_config, a Secret with translate_secret, a
ScopedRouteConfiguration with translate_scope. EXPECTED is the outcome of every one:
the field paths of its X001 warnings, and the reason of a refusal (X002); anything
else (a traceback, an internal error, a resource not in the table) fails. The table
this prints is the one in docs/istio.md.
"""
from __future__ import annotations

import collections
import json
import pathlib
import re
from typing import Any, Callable

import pytest

from mosnx.runtime.diagnostics import ConfigError
from mosnx.runtime.envoy.bootstrap import load_bootstrap_data, static_listener_name
from mosnx.runtime.envoy.clusters import eds_name, endpoints_of, is_eds, translate_cluster
from mosnx.runtime.envoy.decode import parse
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink
from mosnx.runtime.envoy.listeners import translate_listener
from mosnx.runtime.envoy.protos import (CLUSTER, ENDPOINT, LISTENER, RESOURCE_TYPES, ROUTE, SCOPED_ROUTE, SECRET,
                                        HttpConnectionManager)
from mosnx.runtime.envoy.routes import translate_route_config
from mosnx.runtime.envoy.scoped_routes import translate_scope
from mosnx.runtime.envoy.secrets import SecretStore, translate_secret
from mosnx.runtime.routes import RouteTable

ROOT = pathlib.Path(__file__).resolve().parents[4] / "shared" / "testdata"
if not ROOT.exists():
    ROOT = pathlib.Path("/work/shared/testdata")
PKG = ROOT / "istio" / "istioctl" / "pkg"
DUMPS = {
    "waypoint": PKG / "proxyconfig" / "testdata" / "config_dump.json",
    "compare": PKG / "writer" / "compare" / "testdata" / "configdump.json",
    "endpoint": PKG / "writer" / "envoy" / "configdump" / "testdata" / "endpoint" / "configdump.json",
    "gateway-istio": PKG / "writer" / "envoy" / "configdump" / "testdata" / "routes" /
    "istio-gateway-http-route-prefix" / "configdump.json",
    "gateway-k8s": PKG / "writer" / "envoy" / "configdump" / "testdata" / "routes" /
    "k8s-gateway-http-route-path-prefix" / "configdump.json",
}
_missing = [str(p) for p in DUMPS.values() if not p.exists()]
pytestmark = pytest.mark.skipif(bool(_missing), reason=f"the Istio config dumps are not at {_missing}")

# the types as the table names them
BOOTSTRAP = "Bootstrap"
KIND = {CLUSTER: "Cluster", ENDPOINT: "ClusterLoadAssignment", LISTENER: "Listener", ROUTE: "RouteConfiguration",
        SECRET: "Secret", SCOPED_ROUTE: "ScopedRouteConfiguration", BOOTSTRAP: BOOTSTRAP}

OK = ("translates", "")


def refused(why: str) -> tuple[str, str]:
    return ("refused", why)


# Envoy's hosts on an internal listener (a waypoint's `connect_originate`, ...) are no sockets
_INTERNAL_ADDRESS = "only socket_address is supported (no pipe or internal addresses)"
_INTERNAL_UPSTREAM = ("transport socket envoy.extensions.transport_sockets.internal_upstream.v3."
                      "InternalUpstreamTransport is not supported (UpstreamTlsContext and RawBuffer are)")
_NO_ADDRESS = "a listener needs an address"          # an internal listener (internal_listener) has none
_CONNECT = "a route match needs prefix, path, safe_regex or path_separated_prefix (connect_matcher is not supported)"
# istiod's waypoint and gateway routes: retry policy, tracing decorator, gRPC timeout
_ISTIO_ROUTE = ("virtual_hosts[0].routes[0].decorator", "virtual_hosts[0].routes[0].route.max_stream_duration")
# (their max_direct_response_body_size_bytes and ignore_port_in_host_matching are served)
_GATEWAY_ROUTE = ("virtual_hosts[0].include_request_attempt_count", "virtual_hosts[0].routes[0].metadata",
                  "virtual_hosts[0].routes[0].decorator", "virtual_hosts[0].routes[0].route.max_grpc_timeout",
                  "virtual_hosts[0].routes[0].route.retry_policy.retry_host_predicate",
                  "virtual_hosts[0].routes[0].route.retry_policy.host_selection_retry_max_attempts",
                  "virtual_hosts[0].routes[0].route.retry_policy.retry_on",      # "unavailable"
                  "virtual_hosts[0].routes[0].route.retry_policy.retry_on")      # "cancelled"
_CONNECT_TERMINATE = tuple(f"filter_chains[0].filters[0].typed_config.{p}" for p in (
    "http2_protocol_options", "server_name", "forward_client_cert_details", "set_current_client_cert_details",
    "upgrade_configs", "route_config.virtual_hosts[0].routes[0].match.connect_matcher"))

# (dump, type, name) -> (outcome, why refused), X001 warnings' field paths in order
EXPECTED: dict[tuple[str, str, str], tuple[tuple[str, str], tuple[str, ...]]] = {}


def _endpoints(dump: str, names: dict[str, tuple[str, str]]) -> None:
    for n, outcome in names.items():
        EXPECTED[(dump, "ClusterLoadAssignment", n)] = (outcome, ())


EXPECTED.update({
    ("waypoint", BOOTSTRAP, "bootstrap"): (OK, ()),
    ("waypoint", "Cluster", "agent"): (OK, ()),
    ("waypoint", "Cluster", "prometheus_stats"): (OK, ()),
    ("waypoint", "Cluster", "inbound-vip|8000|http|httpbin.default.svc.cluster.local"):
        (refused(_INTERNAL_UPSTREAM), ("metadata",)),
    ("waypoint", "ClusterLoadAssignment", "prometheus_stats"): (OK, ()),
    ("waypoint", "ClusterLoadAssignment", "inbound-vip|8100|http|httpbin.default.svc.cluster.local"):
        (refused(_INTERNAL_ADDRESS), ()),
    ("waypoint", "Listener", "0.0.0.0_15021"): (OK, ()),     # unnamed in the dump
    ("waypoint", "Listener", "main_internal"): (refused(_NO_ADDRESS), ("internal_listener", "filter_chain_matcher")),
    ("waypoint", "RouteConfiguration", "inbound-vip|8000|http|httpbin.default.svc.cluster.local"):
        (OK, _ISTIO_ROUTE),
    ("waypoint", "Secret", "default"):
        (refused("the private key is not PEM (no -----BEGIN ...----- block)"), ()),   # the dump shows "[redacted]"
    ("waypoint", "Secret", "ROOTCA"): (OK, ()),
    ("compare", "Cluster", "inbound-vip|9080|http|ratings.default.svc.cluster.local"):
        (refused(_INTERNAL_UPSTREAM), ("metadata",)),
    ("compare", "Listener", "connect_terminate"): (refused(_CONNECT), _CONNECT_TERMINATE),
    ("compare", "Listener", "main_internal"): (refused(_NO_ADDRESS), ("internal_listener", "filter_chain_matcher")),
    ("compare", "Listener", "connect_originate"): (refused(_NO_ADDRESS), ("internal_listener",)),
    ("compare", "RouteConfiguration", "inbound-vip|9080|http|reviews-v3.default.svc.cluster.local"):
        (OK, _ISTIO_ROUTE),
    ("gateway-istio", "RouteConfiguration", "static[0]"): (OK, ()),
    ("gateway-istio", "RouteConfiguration", "static[1]"): (OK, ()),
    ("gateway-istio", "RouteConfiguration", "http.8080"): (OK, _GATEWAY_ROUTE),
    ("gateway-k8s", "RouteConfiguration", "static[0]"): (OK, ()),
    ("gateway-k8s", "RouteConfiguration", "static[1]"): (OK, ()),
    ("gateway-k8s", "RouteConfiguration", "http.80"):
        (OK, _GATEWAY_ROUTE[:4] + ("virtual_hosts[0].routes[0].route.cluster_not_found_response_code",)
         + _GATEWAY_ROUTE[4:]),
})
# the agent's static clusters on Unix sockets (sds-grpc, xds-grpc): a bootstrap leaves them
# out of the clusters and connects its streams there itself; as EDS they are refused
_endpoints("endpoint", {"zipkin": OK, "sds-grpc": refused(_INTERNAL_ADDRESS), "agent": OK,
                        "xds-grpc": refused(_INTERNAL_ADDRESS), "prometheus_stats": OK})
_endpoints("endpoint", {n: OK for n in (
    "outbound|9080||reviews.default.svc.cluster.local", "outbound|443||istiod.istio-system.svc.cluster.local",
    "outbound|15014||istiod.istio-system.svc.cluster.local", "outbound|8000||httpbin.default.svc.cluster.local",
    "outbound|15012||istiod.istio-system.svc.cluster.local",
    "outbound|15021||istio-ingressgateway.istio-system.svc.cluster.local",
    "outbound|9080||ratings.default.svc.cluster.local", "outbound|9090||prometheus.istio-system.svc.cluster.local",
    "outbound|443||cert-manager-istio-csr.cert-manager.svc.cluster.local", "BlackHoleCluster",
    "outbound|4317||otel-collector.istio-system.svc.cluster.local",
    "outbound|9300||elasticsearch.skywalking.svc.cluster.local",
    "outbound|80||istio-ingressgateway.istio-system.svc.cluster.local", "inbound|9080||",
    "outbound|443||istio-ingressgateway.istio-system.svc.cluster.local", "PassthroughCluster",
    "outbound|11800||skywalking-oap.skywalking.svc.cluster.local",
    "outbound|443||cert-manager-webhook.cert-manager.svc.cluster.local",
    "outbound|53||kube-dns.kube-system.svc.cluster.local",
    "outbound|9402||cert-manager-istio-csr-metrics.cert-manager.svc.cluster.local",
    "outbound|9200||elasticsearch.skywalking.svc.cluster.local",
    "outbound|15010||istiod.istio-system.svc.cluster.local", "outbound|9080||details.default.svc.cluster.local",
    "outbound|9402||cert-manager.cert-manager.svc.cluster.local",
    "outbound|12800||skywalking-oap.skywalking.svc.cluster.local",
    "outbound|3000||grafana.istio-system.svc.cluster.local", "outbound|80||sleep.default.svc.cluster.local",
    "InboundPassthroughClusterIpv4", "outbound|9153||kube-dns.kube-system.svc.cluster.local",
    "outbound|80||skywalking-ui.skywalking.svc.cluster.local",
    "outbound|9080||productpage.default.svc.cluster.local",
    "outbound|443||kubernetes.default.svc.cluster.local")})


def _section(dump: dict, kind: str) -> dict:
    return next((c for c in dump["configs"] if c["@type"].endswith("." + kind)), {})


def _resources(dump: dict) -> list[tuple[str, str, dict]]:
    """(type URL, name, the resource as data) of every resource in the dump, section by
    section; an unnamed static one is `static[i]` as /config_dump lists it."""
    out: list[tuple[str, str, dict]] = []

    def add(type_url: str, items: list[dict], key: str, named: str = "name", prefix: str = "") -> None:
        for i, item in enumerate(items):
            data = dict(item[key] if key else item)
            data.pop("@type", None)
            out.append((type_url, data.get(named) or f"{prefix}[{i}]", data))

    clusters = _section(dump, "ClustersConfigDump")
    add(CLUSTER, clusters.get("static_clusters", []), "cluster", prefix="static")
    add(CLUSTER, clusters.get("dynamic_active_clusters", []), "cluster", prefix="dynamic")
    eps = _section(dump, "EndpointsConfigDump")
    for which in ("static_endpoint_configs", "dynamic_endpoint_configs"):
        add(ENDPOINT, eps.get(which, []), "endpoint_config", "cluster_name", which)
    listeners = _section(dump, "ListenersConfigDump")
    add(LISTENER, listeners.get("static_listeners", []), "listener", prefix="static")
    add(LISTENER, [d["active_state"] for d in listeners.get("dynamic_listeners", [])], "listener",
        prefix="dynamic")
    scoped = _section(dump, "ScopedRoutesConfigDump")
    for which in ("inline_scoped_route_configs", "dynamic_scoped_route_configs"):
        for group in scoped.get(which, []):
            add(SCOPED_ROUTE, group.get("scoped_route_configs", []), "", prefix=which)
    routes = _section(dump, "RoutesConfigDump")
    add(ROUTE, routes.get("static_route_configs", []), "route_config", prefix="static")
    add(ROUTE, routes.get("dynamic_route_configs", []), "route_config", prefix="dynamic")
    secrets = _section(dump, "SecretsConfigDump")
    add(SECRET, [s for s in secrets.get("static_secrets", [])], "secret", prefix="static")
    add(SECRET, secrets.get("dynamic_active_secrets", []), "secret", prefix="dynamic")
    return out


def _rds_names(msg: Any) -> set[str]:
    names = set()
    chains = list(msg.filter_chains) + ([msg.default_filter_chain] if msg.HasField("default_filter_chain") else [])
    for fc in chains:
        for nf in fc.filters:
            if nf.typed_config.type_url.endswith(".HttpConnectionManager"):
                hcm = HttpConnectionManager()
                nf.typed_config.Unpack(hcm)
                if hcm.WhichOneof("route_specifier") == "rds":
                    names.add(hcm.rds.route_config_name)
    return names


_PATH = re.compile(r'^\w+ "[^"]*" ([^:\s]+): ')


def _path(message: str) -> str:
    m = _PATH.match(message)
    assert m is not None, message          # every warning names its field
    return m.group(1)


class _Dump:
    """One dump: its resources decoded, and what a listener or cluster may name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.data = json.loads(DUMPS[name].read_text())
        self.resources = _resources(self.data)
        self.decoded: dict[tuple[str, str], Any] = {}
        taken = {d["name"] for t, _, d in self.resources if t == LISTENER and d.get("name")}
        for i, (type_url, rname, data) in enumerate(self.resources):
            msg, errs = parse(data, RESOURCE_TYPES[type_url], None, (), rname)
            assert msg is not None, (name, rname, [str(e) for e in errs])     # decodes: no X003
            if type_url == LISTENER and not msg.name:
                # a static (bootstrap) listener: named as a bootstrap load names it
                index = [t for t, _, _ in self.resources[:i]].count(LISTENER)
                msg.name = static_listener_name(msg, index, taken)
                self.resources[i] = (type_url, msg.name, data)
                rname = msg.name
            self.decoded[(type_url, rname)] = msg

    def of(self, type_url: str) -> dict[str, Any]:
        return {n: m for (t, n), m in self.decoded.items() if t == type_url}

    def row(self, type_url: str, rname: str) -> dict:
        msg = self.decoded[(type_url, rname)]
        sink = Sink()
        f = Findings(type_url, rname, "", sink)
        act: Callable[[], Any]
        if type_url == CLUSTER:
            cla = self.of(ENDPOINT).get(eds_name(msg)) if is_eds(msg) else None
            act = lambda: translate_cluster(msg, f, cla, self._secrets())    # noqa: E731
        elif type_url == ENDPOINT:
            act = lambda: endpoints_of(msg, f)        # noqa: E731
        elif type_url == LISTENER:
            act = lambda: translate_listener(msg, f, self._routes(msg))     # noqa: E731
        elif type_url == ROUTE:
            act = lambda: translate_route_config(msg, f)     # noqa: E731
        elif type_url == SECRET:
            act = lambda: translate_secret(msg, f)        # noqa: E731
        else:
            act = lambda: translate_scope(msg, f)         # noqa: E731
        outcome, why, result = "translates", "", None
        try:
            result = act()
        except Rejected as e:
            outcome, why = "refused", e.rejection.message
        return {"dump": self.name, "type": KIND[type_url], "name": rname, "outcome": (outcome, why),
                "warnings": tuple(_path(d.message) for d in sink.warnings),
                "messages": [d.message for d in sink.warnings], "result": result}

    def _routes(self, listener: Any) -> dict[str, RouteTable]:
        """What the listener asks RDS for: the dump's RouteConfiguration, else an empty one."""
        held = self.of(ROUTE)
        out = {}
        for n in _rds_names(listener):
            out[n] = translate_route_config(held[n], Findings(ROUTE, n)) if n in held else RouteTable(())
        return out

    def _secrets(self) -> SecretStore:
        got: dict[str, Any] = {}
        for n, m in self.of(SECRET).items():
            try:
                got[n] = translate_secret(m, Findings(SECRET, n))
            except Rejected as e:
                got[n] = e.rejection
        return SecretStore(dynamic=got)

    def bootstrap_row(self) -> dict | None:
        section = _section(self.data, "BootstrapConfigDump")
        if not section:
            return None
        try:
            config, warnings = load_bootstrap_data(section["bootstrap"], None, "<waypoint bootstrap>")
        except ConfigError as e:
            return {"dump": self.name, "type": BOOTSTRAP, "name": "bootstrap",
                    "outcome": ("refused", "; ".join(d.message for d in e.diagnostics)), "warnings": (),
                    "messages": [], "result": None}
        return {"dump": self.name, "type": BOOTSTRAP, "name": "bootstrap", "outcome": OK,
                "warnings": tuple(_path(d.message) for d in warnings), "messages": [d.message for d in warnings],
                "result": config}


def _rows() -> list[dict]:
    rows = []
    for name in DUMPS:
        d = _Dump(name)
        b = d.bootstrap_row()
        if b is not None:
            rows.append(b)
        rows += [d.row(t, n) for t, n, _ in d.resources]
    return rows


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return _rows()


def test_every_resource_of_the_other_dumps_is_accounted_for(rows: list[dict]) -> None:
    print("\n| dump | type | resource | outcome | X001 warnings (field paths) | why refused |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dump']} | {r['type']} | {r['name']} | {r['outcome'][0]} | {', '.join(r['warnings'])} "
              f"| {r['outcome'][1]} |")
    counts = collections.Counter((r["dump"], r["type"], r["outcome"][0]) for r in rows)
    for k, v in sorted(counts.items()):
        print(k, v)
    got = {(r["dump"], r["type"], r["name"]): (r["outcome"], r["warnings"]) for r in rows}
    assert len(got) == len(rows)               # no two resources of a dump share a name
    for key, want in EXPECTED.items():
        assert got.get(key) == want, (key, got.get(key), want)
    assert set(got) == set(EXPECTED), set(got) ^ set(EXPECTED)
    for r in rows:
        assert "internal error" not in r["outcome"][1] + " ".join(r["messages"]), r


def test_the_counts_per_dump_and_type(rows: list[dict]) -> None:
    counts = collections.Counter((r["dump"], r["type"], r["outcome"][0]) for r in rows)
    assert counts == {
        ("waypoint", BOOTSTRAP, "translates"): 1,
        ("waypoint", "Cluster", "translates"): 2, ("waypoint", "Cluster", "refused"): 1,
        ("waypoint", "ClusterLoadAssignment", "translates"): 1,
        ("waypoint", "ClusterLoadAssignment", "refused"): 1,
        ("waypoint", "Listener", "translates"): 1, ("waypoint", "Listener", "refused"): 1,
        ("waypoint", "RouteConfiguration", "translates"): 1,
        ("waypoint", "Secret", "translates"): 1, ("waypoint", "Secret", "refused"): 1,
        ("compare", "Cluster", "refused"): 1,
        ("compare", "Listener", "refused"): 3,
        ("compare", "RouteConfiguration", "translates"): 1,
        ("endpoint", "ClusterLoadAssignment", "translates"): 35,
        ("endpoint", "ClusterLoadAssignment", "refused"): 2,
        ("gateway-istio", "RouteConfiguration", "translates"): 3,
        ("gateway-k8s", "RouteConfiguration", "translates"): 3,
    }
    # the waypoint's ScopedRoutesConfigDump is empty: no scope to translate
    assert not any(r["type"] == "ScopedRouteConfiguration" for r in rows)
