"""Istio's Bookinfo traffic-management tasks, served from resources shaped the way istiod
generates them for a sidecar, through the in-repo ADS server.

The shapes follow istiod's output for the outbound listener `0.0.0.0_9080` (here bound
on 127.0.0.1 to a free port: tests never listen elsewhere): an HTTP connection manager
taking RouteConfiguration `9080` over ADS; one virtual host per service named
`reviews.default.svc.cluster.local:9080` with the short and long names, with and without
the port, as domains; Istio's default retry policy and `timeout: 0s` on every route; a
`block_all` virtual host for unknown hosts (REGISTRY_ONLY); subset clusters named
`outbound|9080|v1|reviews.default.svc.cluster.local`, EDS with that same `service_name`,
LEAST_REQUEST and Istio's circuit-breaker thresholds; endpoints with locality, health
status, Istio metadata and weight. The upstreams are small HTTP servers on 127.0.0.1
answering with their service and version.

Tasks: request routing (all to v1; `end-user: jason` to v2, the rest to v1), traffic
shifting (50/50 v1/v3), fault injection for `end-user: jason` on ratings as istiod writes
it (an empty listener-level fault filter and the fault in the route's
typed_per_filter_config), and the same faults from a listener-level fault filter,
which is what mosnx serves today. And the RouteConfiguration of istioctl's
`istio-gateway-http-route-prefix` config dump, served as it is.
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("envoy.config.listener.v3.listener_pb2")

import envoy.extensions.retry.host.previous_hosts.v3.previous_hosts_pb2  # noqa: E402,F401  (for Any in the dumps)
from envoy.config.cluster.v3 import cluster_pb2  # noqa: E402
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: E402
from envoy.config.listener.v3 import listener_pb2  # noqa: E402
from envoy.config.route.v3 import route_pb2  # noqa: E402

from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, LISTENER, ROUTE  # noqa: E402

from .conftest import HOST, Client, free_port  # noqa: E402
from .xds_scenarios import HCM, ROUTER, T, Control, answer_with, parse  # noqa: E402

NS = "default"
FQDN = "{}." + NS + ".svc.cluster.local"
SERVICES = {"productpage": ("v1",), "reviews": ("v1", "v2", "v3"), "ratings": ("v1",), "details": ("v1",)}
# istioctl's config-dump test data, in the shared/ folder beside the checkout (or beside a folder above it)
_DUMPS = Path("shared/testdata/istio/istioctl/pkg/writer/envoy/configdump/testdata")
ISTIO_DUMPS = next((p.parent / _DUMPS for p in Path(__file__).resolve().parents[2:] if (p.parent / _DUMPS).is_dir()),
                   Path(__file__).resolve().parents[3] / _DUMPS)
GATEWAY_DUMP = ISTIO_DUMPS / "routes" / "istio-gateway-http-route-prefix" / "configdump.json"

# istiod's default retry policy on every HTTP route
RETRY = {
    "retry_on": "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
    "num_retries": 2,
    "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {
        "@type": T + "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
    "host_selection_retry_max_attempts": "5",
    "retriable_status_codes": [503],
}
FAULT = "envoy.filters.http.fault"
FAULT_TYPE = T + "envoy.extensions.filters.http.fault.v3.HTTPFault"


def cluster_name(service: str, subset: str = "", port: int = 9080) -> str:
    return f"outbound|{port}|{subset}|{FQDN.format(service)}"


# ------------------------------------------------------------------ resources, as istiod shapes them
def outbound_listener(port: int, route: str = "9080", fault_filter: dict[str, Any] | None = None) -> Any:
    """`0.0.0.0_<route>`: Istio's outbound HTTP listener for a service port. istiod puts an
    empty fault filter first (the faults are per route); `fault_filter` replaces it."""
    filters = [fault_filter] if fault_filter is not None else []
    return parse({
        "name": f"0.0.0.0_{route}",
        "address": {"socket_address": {"address": HOST, "port_value": port}},
        "traffic_direction": "OUTBOUND",
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM,
                "stat_prefix": f"outbound_0.0.0.0_{route}",
                "rds": {"config_source": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
                        "route_config_name": route},
                "http_filters": [*filters, ROUTER],
                "use_remote_address": False,
                "normalize_path": True,
                "path_with_escaped_slashes_action": "KEEP_UNCHANGED",
                "stream_idle_timeout": "0s",
            }}]}],
    }, listener_pb2.Listener())


def subset_cluster(service: str, subset: str, port: int = 9080) -> Any:
    name = cluster_name(service, subset, port)
    return parse({
        "name": name, "type": "EDS",
        "eds_cluster_config": {"eds_config": {"ads": {}, "initial_fetch_timeout": "0s", "resource_api_version": "V3"},
                               "service_name": name},
        "connect_timeout": "10s", "lb_policy": "LEAST_REQUEST",
        "circuit_breakers": {"thresholds": [{"max_connections": 4294967295, "max_pending_requests": 4294967295,
                                             "max_requests": 4294967295, "max_retries": 4294967295,
                                             "track_remaining": True}]},
        "common_lb_config": {"locality_weighted_lb_config": {}},
        "metadata": {"filter_metadata": {"istio": {
            "services": [{"host": FQDN.format(service), "name": service, "namespace": NS}],
            "subset": subset}}},
    }, cluster_pb2.Cluster())


def subset_endpoints(service: str, subset: str, port: int, service_port: int = 9080) -> Any:
    name = cluster_name(service, subset, service_port)
    return parse({
        "cluster_name": name,
        "endpoints": [{"locality": {}, "lb_endpoints": [{
            "endpoint": {"address": {"socket_address": {"address": HOST, "port_value": port}},
                         "health_check_config": {}},
            "health_status": "HEALTHY",
            "metadata": {"filter_metadata": {
                "envoy.transport_socket_match": {"tlsMode": "istio"},
                "istio": {"workload": f"{service}-{subset};{NS};{service};{subset};Kubernetes"}}},
            "load_balancing_weight": 1}]}],
        "policy": {"overprovisioning_factor": 140},
    }, endpoint_pb2.ClusterLoadAssignment())


def http_route(name: str, action: dict[str, Any], *, headers: list[dict[str, Any]] = (),  # type: ignore[assignment]
               per_filter: dict[str, Any] | None = None, vs: str = "") -> dict[str, Any]:
    """One route of a VirtualService as istiod writes it (match, route, metadata, decorator)."""
    match: dict[str, Any] = {"prefix": "/"}
    if headers:
        match["headers"] = list(headers)
    route: dict[str, Any] = {
        "name": name, "match": match,
        "route": {**action, "timeout": "0s", "retry_policy": RETRY, "max_grpc_timeout": "0s"},
        "decorator": {"operation": f"{name}:9080/*"},
    }
    if vs:
        route["metadata"] = {"filter_metadata": {"istio": {
            "config": f"/apis/networking.istio.io/v1/namespaces/{NS}/virtual-service/{vs}"}}}
    if per_filter:
        route["typed_per_filter_config"] = per_filter
    return route


def to(service: str, subset: str = "") -> dict[str, Any]:
    return {"cluster": cluster_name(service, subset)}


def weighted(service: str, *weights: tuple[str, int]) -> dict[str, Any]:
    return {"weighted_clusters": {"clusters": [{"name": cluster_name(service, s), "weight": w} for s, w in weights]}}


def jason() -> list[dict[str, Any]]:
    return [{"name": "end-user", "string_match": {"exact": "jason"}}]


def route_9080(routes_by_service: dict[str, list[dict[str, Any]]]) -> Any:
    """RouteConfiguration `9080`: a virtual host per service; those without a VirtualService
    get istiod's `default` route to the service's cluster; `block_all` for the rest."""
    vhosts = []
    for service in SERVICES:
        fqdn = FQDN.format(service)
        short = [service, f"{service}.{NS}", f"{service}.{NS}.svc", fqdn]
        vhosts.append({
            "name": f"{fqdn}:9080",
            "domains": [d for s in short for d in (s, f"{s}:9080")],
            "routes": routes_by_service.get(service) or [http_route("default", to(service))],
            "include_request_attempt_count": True,
        })
    vhosts.append({"name": "block_all", "domains": ["*"], "routes": [
        {"name": "block_all", "match": {"prefix": "/"}, "direct_response": {"status": 502}}]})
    return parse({"name": "9080", "virtual_hosts": vhosts, "validate_clusters": False,
                  "max_direct_response_body_size_bytes": 1048576}, route_pb2.RouteConfiguration())


# ------------------------------------------------------------------ the mesh
class Mesh:
    def __init__(self, mosnx: Any, control: Control, upstream: Any) -> None:
        self.control = control
        self.ups: dict[str, Any] = {}
        clusters, endpoints = [], []
        for service, subsets in SERVICES.items():
            # the service's own cluster (no subset), which istiod's default route names: an upstream of its own
            clusters.append(subset_cluster(service, ""))
            self.ups[service] = upstream(on_request=answer_with(f"{service}-v1"))
            endpoints.append(subset_endpoints(service, "", self.ups[service].port))
            for subset in subsets:
                up = upstream(on_request=answer_with(f"{service}-{subset}"))
                self.ups[f"{service}-{subset}"] = up
                clusters.append(subset_cluster(service, subset))
                endpoints.append(subset_endpoints(service, subset, up.port))
        self.port = free_port()
        self.version = 0
        control.push(CLUSTER, "1", clusters)
        control.push(ENDPOINT, "1", endpoints)
        self.routes({})
        control.push(LISTENER, "1", [outbound_listener(self.port)])
        static = free_port()
        self.proxy = mosnx(config={
            "listeners": [{"name": "static", "address": f"{HOST}:{static}", "route": {"cluster": "web"}}],
            "clusters": [{"name": "web", "endpoints": [self.ups["details"].address]}],
            "xds": {"address": f"{HOST}:{control.port}", "node": {"id": "sidecar~10.0.0.1~productpage-v1.default~default.svc.cluster.local"},
                    "initial_fetch_timeout": "20s"},
        })
        self.proxy.wait_until(lambda: self.get("details") == (200, "details-v1"), timeout=30,
                              what="the outbound listener serving")

    def routes(self, by_service: dict[str, list[dict[str, Any]]]) -> None:
        self.version += 1
        self.control.push(ROUTE, str(self.version), [route_9080(by_service)])

    def get(self, host: str, user: str | None = None, path: str = "/") -> tuple[int, str]:
        headers = [("host", host)] + ([("end-user", user)] if user else [])
        try:
            with Client(self.port, timeout=15) as c:
                m = c.request("GET", path, headers=headers, timeout=15)
                return m.status, m.body.decode(errors="replace")
        except OSError:
            return 0, ""

    def bodies(self, host: str, n: int, user: str | None = None) -> list[str]:
        out = []
        for _ in range(n):
            status, body = self.get(host, user)
            assert status == 200, (host, user, status, body)
            out.append(body)
        return out

    def follows(self, check: Any, what: str) -> None:
        self.proxy.wait_until(check, timeout=20, what=what)


@pytest.fixture
def mesh(mosnx: Any, upstream: Any) -> Iterator[Mesh]:
    c = Control()
    try:
        yield Mesh(mosnx, c, upstream)
    finally:
        c.stop()


def test_the_sidecar_routes_by_host_under_every_name_istio_gives_a_service(mesh: Mesh):
    for host in ("reviews", "reviews:9080", "reviews.default", "reviews.default:9080",
                 "reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080"):
        assert mesh.get(host)[0] == 200, host
    assert mesh.get("ratings.default.svc.cluster.local:9080") == (200, "ratings-v1")
    # no such service: istiod's block_all answers
    assert mesh.get("unknown.example.com")[0] == 502
    assert not mesh.control.nacks()


def test_request_routing_all_to_v1_then_jason_to_v2(mesh: Mesh):
    # virtual-service-all-v1
    mesh.routes({s: [http_route(FQDN.format(s) + ":9080", to(s, "v1"), vs=s)] for s in SERVICES})
    mesh.follows(lambda: mesh.bodies("reviews:9080", 10) == ["reviews-v1"] * 10, "all of reviews on v1")
    assert set(mesh.bodies("reviews", 10, user="jason")) == {"reviews-v1"}
    # virtual-service-reviews-test-v2: end-user jason to v2, everyone else to v1
    mesh.routes({s: [http_route(FQDN.format(s) + ":9080", to(s, "v1"), vs=s)] for s in SERVICES} | {
        "reviews": [http_route("reviews.default.svc.cluster.local:9080", to("reviews", "v2"), headers=jason(), vs="reviews"),
                    http_route("reviews.default.svc.cluster.local:9080", to("reviews", "v1"), vs="reviews")]})
    mesh.follows(lambda: mesh.get("reviews", user="jason") == (200, "reviews-v2"), "jason on reviews v2")
    assert set(mesh.bodies("reviews", 10, user="jason")) == {"reviews-v2"}
    assert set(mesh.bodies("reviews.default.svc.cluster.local:9080", 10)) == {"reviews-v1"}
    assert set(mesh.bodies("reviews", 5, user="mike")) == {"reviews-v1"}
    assert not mesh.control.nacks()


def test_traffic_shifting_50_50_between_v1_and_v3(mesh: Mesh):
    mesh.routes({"reviews": [http_route("reviews.default.svc.cluster.local:9080", to("reviews", "v1"), vs="reviews")]})
    mesh.follows(lambda: mesh.get("reviews") == (200, "reviews-v1"), "reviews on v1")
    # virtual-service-reviews-50-v3
    mesh.routes({"reviews": [http_route("reviews.default.svc.cluster.local:9080",
                                        weighted("reviews", ("v1", 50), ("v3", 50)), vs="reviews")]})
    mesh.follows(lambda: "reviews-v3" in mesh.bodies("reviews", 10), "reviews v3 in the split")
    got = mesh.bodies("reviews", 200)
    assert set(got) == {"reviews-v1", "reviews-v3"}
    assert 0.3 <= got.count("reviews-v3") / len(got) <= 0.7, got.count("reviews-v3")
    # virtual-service-reviews-v3: the shift completed
    mesh.routes({"reviews": [http_route("reviews.default.svc.cluster.local:9080", to("reviews", "v3"), vs="reviews")]})
    mesh.follows(lambda: mesh.bodies("reviews", 10) == ["reviews-v3"] * 10, "all of reviews on v3")


def _per_route_fault(abort: int | None = None, delay: str | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {"@type": FAULT_TYPE}
    if abort is not None:
        cfg["abort"] = {"http_status": abort, "percentage": {"numerator": 1000000, "denominator": "MILLION"}}
    if delay is not None:
        cfg["delay"] = {"fixed_delay": delay, "percentage": {"numerator": 1000000, "denominator": "MILLION"}}
    return {FAULT: cfg}


def _ratings_fault_routes(**fault: Any) -> dict[str, list[dict[str, Any]]]:
    """virtual-service-ratings-test-abort / -delay: jason's requests to ratings get the fault."""
    return {"ratings": [
        http_route("ratings.default.svc.cluster.local:9080", to("ratings", "v1"), headers=jason(), vs="ratings",
                   per_filter=_per_route_fault(**fault)),
        http_route("ratings.default.svc.cluster.local:9080", to("ratings", "v1"), vs="ratings")]}


def test_fault_injection_for_jason_as_istiod_writes_it(mesh: Mesh):
    mesh.routes(_ratings_fault_routes(abort=500))
    mesh.control.push(LISTENER, "2", [outbound_listener(mesh.port, fault_filter={
        "name": FAULT, "typed_config": {"@type": FAULT_TYPE}})])
    mesh.follows(lambda: mesh.control.nacks() or mesh.get("ratings", user="jason")[0] == 500,
                 "jason's ratings aborted (or a NACK)")
    assert not mesh.control.nacks(), mesh.control.nacks()[0].error.message
    assert mesh.get("ratings") == (200, "ratings-v1")
    mesh.routes(_ratings_fault_routes(delay="1s"))
    mesh.follows(lambda: mesh.get("ratings", user="jason") == (200, "ratings-v1"), "jason's ratings no longer aborted")
    started = time.monotonic()
    assert mesh.get("ratings", user="jason") == (200, "ratings-v1")
    assert time.monotonic() - started >= 0.9


def test_fault_injection_from_a_listener_level_fault_filter(mesh: Mesh):
    """The HTTPFault at the listener applies to every request of the listener, jason's or not."""
    def with_fault(version: str, fault: dict[str, Any]) -> None:
        mesh.control.push(LISTENER, version, [outbound_listener(
            mesh.port, fault_filter={"name": FAULT, "typed_config": {"@type": FAULT_TYPE, **fault}})])
    full = {"numerator": 100}
    with_fault("2", {"abort": {"http_status": 500, "percentage": full}})
    mesh.follows(lambda: mesh.get("ratings", user="jason")[0] == 500, "ratings aborted")
    with_fault("3", {"delay": {"fixed_delay": "1s", "percentage": full}})
    mesh.follows(lambda: mesh.get("ratings", user="jason") == (200, "ratings-v1"), "no abort any more")
    started = time.monotonic()
    assert mesh.get("ratings", user="jason") == (200, "ratings-v1")
    assert time.monotonic() - started >= 0.9
    assert not mesh.control.nacks()


# ------------------------------------------------------------------ istioctl's gateway route dump
def _dumped_route_configs(path: Path) -> list[dict[str, Any]]:
    doc = json.loads(path.read_text())
    out = []
    for cfg in doc["configs"]:
        for d in cfg.get("dynamic_route_configs", []):
            rc = copy.deepcopy(d["route_config"])
            rc.pop("@type", None)
            out.append(rc)
    return out


@pytest.mark.skipif(not GATEWAY_DUMP.exists(), reason=f"istioctl's test data is not here ({GATEWAY_DUMP})")
def test_the_gateway_route_of_istioctls_config_dump_serves(mosnx, upstream):
    """The dynamic RouteConfiguration of istioctl's `istio-gateway-http-route-prefix` config
    dump (an ingress gateway's `http.8080`), served as it is over RDS, with its clusters
    on 127.0.0.1."""
    (rc,) = _dumped_route_configs(GATEWAY_DUMP)
    route = parse(rc, route_pb2.RouteConfiguration())
    clusters = sorted({r.route.cluster for vh in route.virtual_hosts for r in vh.routes if r.route.cluster})
    port = free_port()
    ups = {name: upstream(on_request=answer_with(name)) for name in clusters}
    c = Control()
    try:
        c.push(CLUSTER, "1", [subset_cluster_named(name) for name in clusters])
        c.push(ENDPOINT, "1", [endpoints_named(name, ups[name].port) for name in clusters])
        c.push(ROUTE, "1", [route])
        c.push(LISTENER, "1", [outbound_listener(port, route=route.name)])
        proxy = mosnx(config={
            "listeners": [{"name": "static", "address": f"{HOST}:{free_port()}", "route": {"cluster": "web"}}],
            "clusters": [{"name": "web", "endpoints": [next(iter(ups.values())).address]}],
            "xds": {"address": f"{HOST}:{c.port}", "node": {"id": "router~10.0.0.2~istio-ingressgateway.istio-system~istio-system.svc.cluster.local"},
                    "initial_fetch_timeout": "20s"},
        })

        def get(host: str, path: str) -> tuple[int, str]:
            try:
                with Client(port, timeout=10) as cl:
                    m = cl.request("GET", path, headers=[("host", host)])
                    return m.status, m.body.decode(errors="replace")
            except OSError:
                return 0, ""
        proxy.wait_until(lambda: get("httpbin.example.com", "/get")[0] == 200, timeout=30,
                         what="the gateway route serving")
        httpbin = "outbound|8000||httpbin.default.svc.cluster.local"
        assert get("httpbin.example.com", "/get") == (200, httpbin)
        assert get("httpbin.example.com", "/get/anything") == (200, httpbin)
        assert get("httpbin.example.com", "/status/200")[0] == 404
        assert get("other.example.com", "/get")[0] == 404
        assert not c.nacks()
    finally:
        c.stop()


def subset_cluster_named(name: str) -> Any:
    _, service_port, subset, host = name.split("|")
    return subset_cluster(host.split(".")[0], subset, int(service_port))


def endpoints_named(name: str, port: int) -> Any:
    _, service_port, subset, host = name.split("|")
    return subset_endpoints(host.split(".")[0], subset, port, int(service_port))
