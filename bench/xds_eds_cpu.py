#!/usr/bin/env python3
"""What one EDS change costs the supervisor, in CPU time, at N clusters (no sockets, no peers).

The supervisor's xDS path as it runs, in one process: an AdsClient (not connected) over the
supervisor's DynamicConfig holding N EDS clusters, one listener and its route table; the
first response carries every ClusterLoadAssignment (10 endpoints each), then each of
--changes responses moves the first endpoint of one of them. State of the world sends all
N assignments each time (the bytes a control plane sends, parsed as the ADS stream parses
them); delta sends the changed one. Per change it times, in this thread's CPU time
(time.thread_time, so other jobs on the machine count little), the response's parse (the
gRPC deserializer's work), its handling (client and sink, up to the in-place change handed
on) and the ACK (built and serialized). Medians and maxima in ms.

  bench/xds_eds_cpu.py [--sizes 500,5000,20000] [--changes 10] [--delta]
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from typing import Any

from google.protobuf import any_pb2, json_format

from envoy.service.discovery.v3 import discovery_pb2
from mosnx.proxy.xds.ads import AdsClient, make_node
from mosnx.proxy.xds.dynamic import DynamicConfig
from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, LISTENER, RESOURCE_TYPES, ROUTE
from mosnx.runtime.model import Config
from mosnx.runtime.stats import Store

try:
    from mosnx.proxy.xds.resources import RawDiscoveryResponse
except ImportError:         # a tree from before it: responses parse as DiscoveryResponse
    RawDiscoveryResponse = None

BASE = Config(path="/nonexistent/mosnx.yaml", admin=None, listeners=(), clusters=())
ENDPOINTS = 10


def msg(type_url: str, d: dict[str, Any]) -> Any:
    return json_format.ParseDict(d, RESOURCE_TYPES[type_url]())


def cla(name: str, first: int) -> Any:
    eps = [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": first + j}}},
            "load_balancing_weight": 50 if j == 0 else 1} for j in range(ENDPOINTS)]
    return msg(ENDPOINT, {"cluster_name": name, "endpoints": [{"lb_endpoints": eps}]})


def serving(d: DynamicConfig, n: int) -> None:
    d.apply(CLUSTER, "1", {f"c{i}": msg(CLUSTER, {"name": f"c{i}", "type": "EDS", "connect_timeout": "1s",
                                                   "eds_cluster_config": {"eds_config": {"ads": {}}}})
                           for i in range(n)}, set())
    d.apply(ROUTE, "1", {"r": msg(ROUTE, {"name": "r", "virtual_hosts": [{"name": "v", "domains": ["*"], "routes": [
        {"match": {"prefix": "/"}, "route": {"cluster": "c0"}}]}]})}, set())
    d.apply(LISTENER, "1", {"l": msg(LISTENER, {
        "name": "l", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 18001}},
        "filter_chains": [{"filters": [{"name": "hcm", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
                     "HttpConnectionManager",
            "stat_prefix": "l", "rds": {"route_config_name": "r", "config_source": {"ads": {}}},
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]})}, set())


def sotw(version: str, clas: list[Any]) -> bytes:
    r = discovery_pb2.DiscoveryResponse(version_info=version, type_url=ENDPOINT, nonce=version)
    r.resources.extend(any_pb2.Any(type_url=ENDPOINT, value=c.SerializeToString()) for c in clas)
    return r.SerializeToString()


def delta(version: str, clas: list[Any]) -> bytes:
    r = discovery_pb2.DeltaDiscoveryResponse(system_version_info=version, type_url=ENDPOINT, nonce=version)
    for c in clas:
        r.resources.add(name=c.cluster_name, version=version,
                        resource=any_pb2.Any(type_url=ENDPOINT, value=c.SerializeToString()))
    return r.SerializeToString()


async def one_size(n: int, changes: int, mode: str) -> dict[str, Any]:
    handed: list[dict[str, Any]] = []
    d = DynamicConfig(lambda: BASE, lambda c: None, lambda: None)
    d.resubscribe = lambda t: None
    d.reassigned = handed.append
    ads = AdsClient("127.0.0.1:1", make_node("bench"), d, Store(), mode=mode)   # type: ignore[arg-type]
    serving(d, n)
    st = ads.types[ENDPOINT]
    if mode == "sotw":
        parse = (RawDiscoveryResponse or discovery_pb2.DiscoveryResponse).FromString
        handle, answer, make = ads._on_sotw, ads._sotw_request, sotw
    else:
        parse = discovery_pb2.DeltaDiscoveryResponse.FromString
        handle, answer, make = ads._on_delta, ads._delta_request, delta
    clas = [cla(f"c{i}", 40000 + i % 2000) for i in range(n)]
    handle(parse(make("v0", clas)))
    while st.queue:
        answer(st, st.queue.popleft())
    size = len(sotw("v0", clas))
    times: dict[str, list[float]] = {"parse": [], "handle": [], "ack": [], "total": []}
    for k in range(changes):
        i = (k * 7919) % n
        clas[i] = cla(f"c{i}", 30000 + k)
        data = make(f"v{k + 1}", clas if mode == "sotw" else [clas[i]])
        handed.clear()
        gc.collect()
        t0 = time.thread_time()
        resp = parse(data)
        t1 = time.thread_time()
        handle(resp)
        t2 = time.thread_time()
        while st.queue:
            req = answer(st, st.queue.popleft())
            if req is not None:
                req.SerializeToString()
        t3 = time.thread_time()
        if [list(h) for h in handed] != [[f"c{i}"]]:
            raise AssertionError(f"change {k}: expected c{i} changed in place, got {[list(h) for h in handed]}")
        for key, v in (("parse", t1 - t0), ("handle", t2 - t1), ("ack", t3 - t2), ("total", t3 - t0)):
            times[key].append(v * 1000)
    row: dict[str, Any] = {"mode": mode, "clusters": n, "sotw_response_mb": round(size / 1e6, 1), "changes": changes}
    for key, v in times.items():
        row[f"{key}_p50_ms"] = round(statistics.median(v), 2)
        row[f"{key}_max_ms"] = round(max(v), 2)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="500,5000,20000", help="cluster counts, comma-separated")
    ap.add_argument("--changes", type=int, default=10)
    ap.add_argument("--delta", action="store_true", help="delta responses instead of state of the world")
    args = ap.parse_args()
    if args.changes < 1:
        ap.error("--changes must be at least 1")
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        ap.error(f"--sizes must be whole numbers separated by commas, not {args.sizes!r}")
    if any(s < 1 for s in sizes):
        ap.error("each size must be at least 1")
    rows = [asyncio.run(one_size(n, args.changes, "delta" if args.delta else "sotw")) for n in sizes]
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
