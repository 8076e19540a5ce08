"""A worker process loads only what its config uses: fed by a control plane it
decodes and translates the resources, but never speaks the protocol, so grpc stays
out of it (the supervisor holds the one ADS stream); with no jwt_authn, wasm filter
or rules file, neither cryptography nor wasmtime is loaded either. Each is some
7-17 MiB of every worker process. The native libraries a process mapped are read
from /proc/<pid>/maps; the supervisor's own map is the check that grpc shows there."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("envoy.config.listener.v3.listener_pb2")

from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, LISTENER, ROUTE  # noqa: E402

from .conftest import HOST, free_port  # noqa: E402
from .test_xds_e2e import _get, assignment, control, eds_cluster, listener, routes  # noqa: E402,F401

GRPC = "cygrpc."                     # grpc's extension module
NOT_IN_A_WORKER = (GRPC, "_libwasmtime.", "cryptography/hazmat/bindings/_rust")


def _mapped(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


def test_an_xds_worker_maps_neither_grpc_nor_unused_features(mosnx, control, upstream):
    up = upstream()
    dyn = free_port()
    control.push(CLUSTER, "1", [eds_cluster("xds-up")])
    control.push(ENDPOINT, "1", [assignment("xds-up", up.port)])
    control.push(ROUTE, "1", [routes("r1")])
    control.push(LISTENER, "1", [listener("dyn", dyn, "r1")])
    proxy = mosnx(config={
        "listeners": [{"name": "static", "address": f"{HOST}:{free_port()}", "route": {"cluster": "web"}}],
        "clusters": [{"name": "web", "endpoints": [up.address]}],
        "xds": {"address": f"{HOST}:{control.port}", "node": {"id": "imports"}},
    }, workers=2)
    proxy.wait_until(lambda: _get(dyn, "/x") == 200, what="the dynamic listener serving")
    workers = proxy.worker_pids()
    assert len(workers) == 2 and proxy.proc is not None
    assert GRPC in _mapped(proxy.proc.pid)          # the supervisor's ADS stream
    for pid in workers:
        maps = _mapped(pid)
        assert [lib for lib in NOT_IN_A_WORKER if lib in maps] == [], f"worker {pid}"


def test_a_worker_imports_what_its_features_need_and_no_more():
    # what a worker process imports (mosnx.plugins.worker_entry) plus the xDS decoding
    # and translation it does; the features' own modules load when first used
    code = (
        "import sys, mosnx.plugins\n"
        "mosnx.plugins.load()\n"
        "import mosnx.proxy.worker, mosnx.proxy.xds.dynamic\n"
        "heavy = ('grpc', 'jwt', 'cryptography', 'wasmtime', 'lark')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "from mosnx.runtime import registry\n"
        "assert registry.filter_factory('wasm') is not None and registry.rules_loader('mdsl') is not None\n"
        "from mosnx.proxy.xds import Backoff\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        "from mosnx.proxy.xds import AdsClient\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd="/", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "[]", "['grpc']"]
