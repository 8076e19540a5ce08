"""SkyWalking segments from records: Entry and Exit spans, peers, and the
CrossProcess ref to the caller's segment when the request came with sw8."""
from __future__ import annotations

import json

from mosnx.proxy.tracing.skywalking import COMPONENT_ID, encode, segment
from mosnx.runtime.tracing.sw8 import Sw8

from .spans_data import TRACE, express_record, record


def test_segment_without_a_skywalking_parent() -> None:
    seg = segment(record(attempts=2))
    assert seg["traceId"] == f"{TRACE:032x}" and seg["service"] == "edge" and seg["serviceInstance"] == "1@host"
    entry, exit1, exit2 = seg["spans"]
    assert (entry["spanType"], entry["spanId"], entry["parentSpanId"]) == ("Entry", 0, -1)
    assert (exit1["spanType"], exit1["spanId"], exit1["parentSpanId"]) == ("Exit", 1, 0)
    assert exit2["spanId"] == 2 and exit1["isError"] and not exit2["isError"]
    assert exit1["peer"] == "127.0.0.1:9000" and entry["operationName"] == "/cart"
    assert entry["spanLayer"] == "Http" and entry["componentId"] == COMPONENT_ID
    assert "refs" not in entry
    assert entry["startTime"] == 1_700_000_000_000 and entry["endTime"] == 1_700_000_000_005


def test_segment_refers_to_the_sw8_parent() -> None:
    parent = Sw8(True, "sw.trace", "sw.seg", 3, "caller", "c-1", "/buy", "mosnx:80")
    (seg,) = json.loads(encode([record(sw_parent=parent)]))
    assert seg["traceId"] == "sw.trace"
    (ref,) = seg["spans"][0]["refs"]
    assert ref == {"refType": "CrossProcess", "traceId": "sw.trace", "parentTraceSegmentId": "sw.seg",
                   "parentSpanId": 3, "parentService": "caller", "parentServiceInstance": "c-1",
                   "parentEndpoint": "/buy", "networkAddressUsedAtPeer": "mosnx:80"}


def test_an_express_record_reads_as_the_record_of_its_facts() -> None:
    rec, _ = express_record()
    assert encode([rec]) == encode([rec.record()])
    assert segment(rec)["traceId"] == rec.record().sw_trace == f"{rec.facts[0]:032x}"
