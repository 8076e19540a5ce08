"""Zipkin v2 JSON from records: ids, kinds, microsecond times, tags and endpoints."""
from __future__ import annotations

import json

from mosnx.proxy.tracing.zipkin import encode

from .spans_data import TRACE, express_record, record


def test_spans_in_zipkin_v2_json() -> None:
    server, ok, = json.loads(encode([record()]))
    assert server["traceId"] == f"{TRACE:032x}" and server["id"] == f"{0xA1:016x}"
    assert server["parentId"] == f"{0xB2:016x}" and server["kind"] == "SERVER"
    assert server["timestamp"] == 1_700_000_000_000_000 and server["duration"] == 5000
    assert server["localEndpoint"] == {"serviceName": "edge"}
    assert server["remoteEndpoint"] == {"ipv4": "10.0.0.9", "port": 4000}
    assert server["tags"]["http.response.status_code"] == "200"
    assert ok["kind"] == "CLIENT" and ok["parentId"] == server["id"] and "error" not in ok["tags"]


def test_failed_attempt_has_the_error_tag() -> None:
    _, failed, ok = json.loads(encode([record(attempts=2)]))
    assert failed["tags"]["error"] == "upstream_reset" and "error" not in ok["tags"]


def test_an_express_record_reads_as_the_record_of_its_facts() -> None:
    rec, _ = express_record()
    assert encode([rec]) == encode([rec.record()])
    server, client = json.loads(encode([rec]))
    assert client["parentId"] == server["id"] and client["traceId"] == server["traceId"]
