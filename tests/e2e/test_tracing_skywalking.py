"""SkyWalking end to end over gRPC: a caller's sw8 → mosnx (reporting its segment on
TraceSegmentReportService) → an upstream instrumented by SkyWalking's own Python agent
(reporting its segment to the same collector). The three segments chain by their
CrossProcess refs, which is what SkyWalking's topology map draws as
caller → mosnx → reviews."""
from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import HOST, build_config, free_port, wait_until

pytest.importorskip("skywalking.protocol.language_agent.Tracing_pb2", reason="apache-skywalking 1.2.0 not installed")
from .skywalking_collector import SkyWalkingCollector  # noqa: E402

WAIT = 20.0


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


@pytest.fixture
def oap():
    c = SkyWalkingCollector(HOST, free_port())
    yield c
    c.stop()


@pytest.fixture
def reviews(oap, tmp_path):
    port = free_port()
    log = open(tmp_path / "reviews.log", "wb")
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("sw_agent_upstream.py")), str(port),
                             f"{HOST}:{oap.port}"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: (tmp_path / "reviews.log").read_bytes().count(b"serving") > 0 or proc.poll() is not None,
                   WAIT, "the agent's upstream to listen")
        assert proc.poll() is None, (tmp_path / "reviews.log").read_text()
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def traced(mosnx, reviews_port, oap):
    cfg = build_config(free_port(), free_port(), [f"{HOST}:{reviews_port}"])
    cfg["listeners"][0]["tracing"] = {"propagation": ["sw8", "w3c"], "random_sampling": "100%"}
    cfg["tracing"] = {"service_name": "mosnx-edge", "service_instance": "edge-1", "batch_delay": "50ms",
                      "exporters": [{"skywalking": {"endpoint": f"{HOST}:{oap.port}"}}]}
    return mosnx(config=cfg)


def test_caller_mosnx_and_agent_segments_chain(mosnx, oap, reviews):
    proxy = traced(mosnx, reviews, oap)
    incoming = "-".join(["1", b64("sw.trace.42"), b64("caller.seg.7"), "2", b64("caller"), b64("caller-1"),
                         b64("/buy"), b64(f"{HOST}:{proxy.port}")])
    r = proxy.request("GET", "/reviews/1", headers=[("sw8", incoming)])
    assert r.status == 200 and r.body == b"reviews"

    (edge,) = wait_until(lambda: oap.of("mosnx-edge"), WAIT, "mosnx's segment over gRPC")
    (up,) = wait_until(lambda: oap.of("reviews"), WAIT, "the agent's segment")
    assert edge.traceId == up.traceId == "sw.trace.42"
    assert edge.serviceInstance == "edge-1"
    entry, exit_ = edge.spans
    (ref,) = entry.refs
    assert (ref.parentTraceSegmentId, ref.parentSpanId, ref.parentService) == ("caller.seg.7", 2, "caller")
    assert exit_.parentSpanId == entry.spanId and exit_.peer == f"{HOST}:{reviews}"

    up_entry = next(s for s in up.spans if s.spanType == 0)        # Entry
    (up_ref,) = up_entry.refs
    assert up_ref.parentTraceSegmentId == edge.traceSegmentId
    assert up_ref.parentSpanId == exit_.spanId
    assert up_ref.parentService == "mosnx-edge" and up_ref.parentServiceInstance == "edge-1"
    # the collector holds the segment before the export call returns and is counted
    assert proxy.wait_stat("tracing.skywalking.spans_exported", 2) >= 2


def test_unreachable_oap_costs_a_counter(mosnx, reviews):
    proxy = traced(mosnx, reviews, type("Nowhere", (), {"port": free_port()})())
    assert proxy.request("GET", "/").status == 200
    assert proxy.wait_stat("tracing.skywalking.export_failed", 1) >= 1
