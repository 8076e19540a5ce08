"""SkyWalking sw8, from the examples of its cross-process propagation protocol v3."""
from __future__ import annotations

import base64

import pytest

from mosnx.runtime.tracing import sw8


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()

# the protocol document's sample, `1-TRACEID-SEGMENTID-3-PARENT_SERVICE-PARENT_INSTANCE-PARENT_ENDPOINT-IPPORT`,
# with its string fields base64-encoded as the protocol says
DOC_SAMPLE = "-".join(["1", b64("TRACEID"), b64("SEGMENTID"), "3", b64("PARENT_SERVICE"), b64("PARENT_INSTANCE"),
                       b64("PARENT_ENDPOINT"), b64("IPPORT")])
# a value as SkyWalking's Java agent writes it (trace and segment ids are dotted literals)
AGENT = ("1-YjdhZWIyMWNiNTVlNGZiNjg0ZDFlOTQ2MzlmZDgwNTQuMTAzLjE2MjU1NTIxMzEzNjUwMDAx-"
         "YjdhZWIyMWNiNTVlNGZiNjg0ZDFlOTQ2MzlmZDgwNTQuMTQ1LjE2MjU1NTIxMzEzNzUwMDAw-0-Y2VyZXM=-"
         "ZjI1ODM3ZDBjM2EzNDU0MzhiM2IxZGE2MTU3M2RkNmRAMTkyLjE2OC4wLjEwOQ==-L2V2ZW50L3JlY2VpdmU=-"
         "MTkyLjE2OC4wLjEwOToxMDEwMQ==")


def test_protocol_sample() -> None:
    h = sw8.parse_sw8(DOC_SAMPLE)
    assert h == sw8.Sw8(True, "TRACEID", "SEGMENTID", 3, "PARENT_SERVICE", "PARENT_INSTANCE", "PARENT_ENDPOINT",
                        "IPPORT")
    assert sw8.format_sw8(h) == DOC_SAMPLE


def test_agent_value() -> None:
    h = sw8.parse_sw8(AGENT)
    assert h is not None
    assert h.trace_id == "b7aeb21cb55e4fb684d1e94639fd8054.103.16255521313650001"
    assert h.segment_id == "b7aeb21cb55e4fb684d1e94639fd8054.145.16255521313750000"
    assert (h.span_id, h.service, h.endpoint, h.address) == (0, "ceres", "/event/receive", "192.168.0.109:10101")
    assert h.instance == "f25837d0c3a345438b3b1da61573dd6d@192.168.0.109"
    assert sw8.format_sw8(h) == AGENT


def test_round_trip() -> None:
    h = sw8.Sw8(False, "a.b.c", "seg.1", 0, "svc", "inst@host", "/x", "10.0.0.1:80")
    assert sw8.parse_sw8(sw8.format_sw8(h)) == h


@pytest.mark.parametrize("value", [
    "", "1", "1-a-b-c", DOC_SAMPLE + "-extra", "2" + DOC_SAMPLE[1:],
    DOC_SAMPLE.replace("-3-", "-x-"),
    DOC_SAMPLE.replace(b64("TRACEID"), "!!notbase64"),
    f"1-{b64('t')}-{b64('s')}-0-{b64('svc')}-{b64('i')}-{b64('/e')}-",    # an empty field
])
def test_malformed(value: str) -> None:
    assert sw8.parse_sw8(value) is None
