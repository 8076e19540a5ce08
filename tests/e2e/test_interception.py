"""Transparent interception as Istio does it, end to end, in a private network
namespace (`unshare -n`): Istio's own iptables rules (a golden of istio-iptables,
its nat table) redirect an application's connection to a service address to mosnx's
virtualOutbound (15001, use_original_dst), which hands it to the bind_to_port-false
listener of the service's port (its network RBAC allowing, Istio's stats filter
recognised and left out); that listener's tcp_proxy connects to the pod address,
which the rules redirect, since mosnx's uid owns the connection, to virtualInbound
(15006, original_dst): its chain for the pod port sends it to an ORIGINAL_DST
cluster bound to 127.0.0.6, which the rules let through to the workload. Another
service's listener denies by network RBAC, and the connection is closed.

The golden's owner uid/gid 1337 is rewritten to the uid mosnx runs as here (root);
the application drops to uid 65534. Without NAT (mode "plain"), a connection's
destination is the address it reached, and the hand-off goes by that.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from conftest import free_port  # noqa: E402

GOLDEN = (Path(__file__).resolve().parents[3] / "shared" / "testdata" / "istio" / "tools" / "istio-iptables"
          / "pkg" / "capture" / "testdata" / "ipnets.golden")
if not GOLDEN.exists():
    GOLDEN = Path("/work/shared/testdata/istio/tools/istio-iptables/pkg/capture/testdata/ipnets.golden")
HELPER = Path(__file__).with_name("netns_intercept.py")

TCP = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
RBAC = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
TYPED_STRUCT = "type.googleapis.com/udpa.type.v1.TypedStruct"
ORIGINAL_DST = "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"


def _why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "Linux network namespaces only"
    if os.geteuid() != 0:
        return "needs root for unshare -n and iptables"
    for tool in ("unshare", "iptables-restore", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    r = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if r.returncode != 0:
        return f"unshare -n is not allowed here: {r.stderr.decode().strip()}"
    r = subprocess.run(["unshare", "-n", "sh", "-c", "ip link add v0 type veth peer name v1"], capture_output=True)
    if r.returncode != 0:
        return f"no veth pairs here: {r.stderr.decode().strip()}"
    return None


WHY = _why_not()
in_namespace = pytest.mark.skipif(WHY is not None, reason=WHY or "")


def _tcp(name: str, cluster: str, before: list | None = None) -> dict:
    return {"name": name, "filters": [*(before or []), {"name": "envoy.filters.network.tcp_proxy", "typed_config": {
        "@type": TCP, "stat_prefix": cluster, "cluster": cluster}}]}


def _rbac(allow: bool) -> dict:
    policies = {"any": {"permissions": [{"any": True}], "principals": [{"any": True}]}} if allow else {}
    return {"name": "envoy.filters.network.rbac", "typed_config": {
        "@type": RBAC, "stat_prefix": "tcp.", "rules": {"action": "ALLOW", "policies": policies}}}


ISTIO_STATS = {"name": "istio.stats", "typed_config": {
    "@type": TYPED_STRUCT, "type_url": "type.googleapis.com/stats.PluginConfig", "value": {}}}


def _listener(name: str, host: str, port: int, chains: list, **more) -> dict:
    return {"name": name, "address": {"socket_address": {"address": host, "port_value": port}},
            "filter_chains": chains, **more}


def _static(name: str, host: str, port: int) -> dict:
    return {"name": name, "type": "STATIC", "connect_timeout": "2s", "load_assignment": {
        "cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}]}}


HCM_8080 = {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    "stat_prefix": "outbound_0.0.0.0_8080",
    "http_filters": [{"name": "envoy.filters.http.router",
                      "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    "route_config": {"name": "8080", "virtual_hosts": [{"name": "reviews", "domains": ["reviews"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "outbound|80||svc"}}]}]}}}


def bootstrap(admin: int, tproxy: bool = False) -> dict:
    inbound_socket = {"transparent": True,       # as istiod's virtualInbound in TPROXY mode
                      "socket_options": [{"level": 1, "name": 36, "int_value": 1337}]} if tproxy else {}
    listeners = [
        _listener("virtualOutbound", "0.0.0.0", 15001, [_tcp("virtualOutbound-catchall-tcp", "PassthroughCluster")],
                  use_original_dst=True, traffic_direction="OUTBOUND"),
        _listener("0.0.0.0_80", "0.0.0.0", 80, [_tcp("svc", "outbound|80||svc", [_rbac(True), ISTIO_STATS])],
                  bind_to_port=False),
        _listener("0.0.0.0_81", "0.0.0.0", 81, [_tcp("denied", "outbound|80||svc", [_rbac(False)])],
                  bind_to_port=False),
        _listener("0.0.0.0_8080", "0.0.0.0", 8080, [{"filters": [HCM_8080]}], bind_to_port=False),
        # reached without NAT: the address the connection reached is its destination
        _listener("10.1.0.5_15001", "10.1.0.5", 15001, [_tcp("pod", "outbound|80||svc")], bind_to_port=False),
        _listener("virtualInbound", "0.0.0.0", 15006, [
            {**_tcp("inbound-9080", "inbound|9080||"), "filter_chain_match": {"destination_port": 9080}},
            {**_tcp("virtualInbound-blackhole", "BlackHoleCluster"),
             "filter_chain_match": {"destination_port": 15006}}],
            listener_filters=[{"name": "envoy.filters.listener.original_dst", "typed_config": {"@type": ORIGINAL_DST}}],
            traffic_direction="INBOUND", **inbound_socket),
    ]
    clusters = [
        {"name": "PassthroughCluster", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
         "connect_timeout": "2s"},
        {"name": "BlackHoleCluster", "type": "STATIC", "connect_timeout": "2s"},
        _static("outbound|80||svc", "10.1.0.5", 9080),
        {"name": "inbound|9080||", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED", "connect_timeout": "2s",
         "cleanup_interval": "60s",
         "upstream_bind_config": {"source_address": {"address": "127.0.0.6", "port_value": 0}}},
    ]
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
            "static_resources": {"listeners": listeners, "clusters": clusters}}


def _run(tmp_path: Path, mode: str, golden: Path = GOLDEN) -> dict:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap(free_port(), tproxy=mode == "tproxy")))
    r = subprocess.run(["unshare", "-n", sys.executable, str(HELPER), mode, str(golden), str(path),
                        sys.executable, "-m", "mosnx", "run", "--workers", "1"],
                       capture_output=True, text=True, timeout=120)
    log = (tmp_path / "bootstrap.json.log")
    assert r.returncode == 0 and r.stdout.strip(), (r.stderr, log.read_text() if log.exists() else "")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "error" not in out, (out, log.read_text() if log.exists() else "")
    return out


@in_namespace
def test_istio_iptables_outbound_then_inbound(tmp_path):
    if not GOLDEN.exists():
        pytest.skip(f"Istio's iptables goldens are absent ({GOLDEN})")
    out = _run(tmp_path, "iptables")
    # the app asked for a service address; the workload answered, reached from 127.0.0.6
    assert out["outbound"] == "pod saw 127.0.0.6: hello", out
    # the second service's listener denied by network RBAC: closed (or reset, when the
    # app's bytes were on their way) before the workload saw anything
    assert out["denied"] in ("", "error: ConnectionResetError: [Errno 104] Connection reset by peer"), out
    # HTTP to a service port: handed to its HTTP listener, routed, through the inbound side too
    assert out["http"].startswith("HTTP/1.1 200"), out
    assert out["http"].endswith("pod saw 127.0.0.6: GET /reviews HTTP/1.1"), out
    assert out["peers"] == ["127.0.0.6", "127.0.0.6"], out
    st = out["stats"]
    assert st.get("cluster.outbound|80||svc.upstream_cx_total", 0) >= 1, st
    assert st.get("cluster.inbound|9080||.upstream_cx_total", 0) >= 1, st
    assert st.get("tcp.rbac.allowed", 0) >= 1 and st.get("tcp.rbac.denied", 0) >= 1, st


@in_namespace
def test_istio_tproxy_rules(tmp_path):
    """Istio's TPROXY mode: virtualInbound is transparent (IP_TRANSPARENT) with SO_MARK
    1337, the golden's mangle, nat and raw tables apply; the same traffic goes through."""
    golden = GOLDEN.with_name("tproxy.golden")
    if not golden.exists():
        pytest.skip(f"Istio's iptables goldens are absent ({golden})")
    out = _run(tmp_path, "tproxy", golden)
    assert out["outbound"] == "pod saw 127.0.0.6: hello", out
    assert out["denied"] in ("", "error: ConnectionResetError: [Errno 104] Connection reset by peer"), out
    assert out["http"].endswith("pod saw 127.0.0.6: GET /reviews HTTP/1.1"), out
    assert out["peers"] == ["127.0.0.6", "127.0.0.6"], out


@in_namespace
def test_original_destination_without_nat_is_the_local_address(tmp_path):
    out = _run(tmp_path, "plain")
    # 10.1.0.5:15001 reached the wildcard capture listener; its destination (no NAT:
    # the local address) names the bind_to_port-false listener of that exact address
    assert out["plain_pod"] == "pod saw 10.1.0.5: hello", out
    assert out["outbound"].startswith("error") or out["outbound"] == "", out   # nothing redirects services


HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def test_http_to_an_original_dst_cluster_by_header(tmp_path, upstream):
    """No namespace needed: the ORIGINAL_DST cluster's host is the request's
    x-envoy-original-dst-host; one that is not an ip:port gets 503."""
    from test_envoy_bootstrap import serving

    def get(path: str, dst: str) -> int:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            c.request("GET", path, headers={"Host": "svc", "x-envoy-original-dst-host": dst})
            r = c.getresponse()
            r.read()
            return r.status
        finally:
            c.close()
    up = upstream()
    admin, port = free_port(), free_port()
    hcm = {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": HCM, "stat_prefix": "p", "http_filters": [{"name": "envoy.filters.http.router",
                                                             "typed_config": {"@type": ROUTER}}],
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster"}}]}]}}}
    doc = {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
           "static_resources": {
               "listeners": [_listener("http", "127.0.0.1", port, [{"filters": [hcm]}])],
               "clusters": [{"name": "PassthroughCluster", "type": "ORIGINAL_DST", "lb_policy": "CLUSTER_PROVIDED",
                             "connect_timeout": "2s", "original_dst_lb_config": {"use_http_header": True}}]}}
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(doc))
    with serving(path, admin):
        assert get("/x", up.address) == 200
        assert up.requests_for("/x")
        assert get("/y", "reviews:9080") == 503
