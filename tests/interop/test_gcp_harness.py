"""go-control-plane's own integration harness against the proxy under test.

gcp-test-server generates listeners (HTTP with RDS, scoped RDS, TCP; VHDS only in its
plain `delta` mode, not in `delta-ads`),
routes and EDS clusters for node `test-id`, pushes -u versions whose names all change
(so every update also removes resources) and after each one sends -r request batches
through every listener to gcp-upstream. It exits 0 only when every round passed; that
exit status is the whole verdict. Flags as the xDS kit's README gives them: lower-case
`-xds` mode, static `xds_cluster` and `als_cluster` over HTTP/2, LDS and CDS over ADS,
and the RTDS layer `runtime-0`.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from xdsharness import (Procs, bootstrap, free_port, free_port_block, http_get, port_open, proxy_argv,
                        wait_until, write_json, xds_bin)

LISTENERS = 8      # -http 2, -scopedhttp 2, -tcp 2 and (delta only) -vhdshttp 2, from -base upward

# The harness's resource mix: "full" is its default (scoped-route listeners whose
# ScopedRouteConfigurations come over SRDS and name RDS routes, keyed by Host, besides
# the rest); "rds-tcp" leaves out the scoped and VHDS listeners: HTTP listeners with
# RDS, TCP listeners, EDS clusters, over several rounds whose names all change.
PROFILES = {"full": [], "rds-tcp": ["-scopedhttp", "0", "-vhdshttp", "0"]}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize("mode", ["ads", "delta-ads"])
def test_gcp_test_server_rounds_pass(procs: Procs, proxy_kind: str, mode: str, profile: str,
                                     tmp_path: Path) -> None:
    xds, gateway, als, upstream, admin = (free_port() for _ in range(5))
    base = free_port_block(LISTENERS)
    up = procs.start("gcp-upstream", [str(xds_bin("gcp-upstream")), "-upstream", str(upstream),
                                      "-message", "Default message"])
    wait_until("gcp-upstream listening", lambda: port_open(upstream), timeout=20, alive=(up,))
    server = procs.start("gcp-test-server", [
        str(xds_bin("gcp-test-server")), "-xds", mode, "-port", str(xds), "-gateway", str(gateway),
        "-upstream", str(upstream), "-als", str(als), "-base", str(base), "-u", "3", "-r", "5",
        *PROFILES[profile]])
    wait_until("gcp-test-server listening", lambda: port_open(xds), timeout=20, alive=(server,))

    boot = write_json(tmp_path / "bootstrap.yaml", bootstrap(
        node_id="test-id", xds_port=xds, admin_port=admin, delta=mode == "delta-ads", als_port=als,
        rtds_layer="runtime-0"))
    proxy = procs.start(proxy_kind, proxy_argv(proxy_kind, boot))

    # 3 rounds of 5 batches 0.5 s apart take about 10 s; the server gives up after 1 min without a request
    wait_until("gcp-test-server to finish its rounds", lambda: server.popen.poll() is not None,
                    timeout=180, interval=0.2, alive=(proxy,))
    assert server.popen.returncode == 0, f"gcp-test-server exited {server.popen.returncode}:\n{server.output()[-3000:]}"
    assert f"Test for {mode} passed" in server.output()
    if proxy_kind == "mosnx":
        # the RTDS layer came and was taken, and in the full mix the scopes too
        status, body = http_get(admin, "/stats?format=json", timeout=20)
        stats = {s["name"]: s["value"] for s in json.loads(body)["stats"] if "name" in s} if status == 200 else {}
        assert stats.get("rtds.update_success", 0) >= 1, body[:500]
        if profile == "full":
            assert stats.get("scoped_rds.update_success", 0) >= 1 and not stats.get("scoped_rds.update_rejected")
