"""An HCM's access_log: file/stdout/stderr loggers with text, JSON and default formats,
filters, what is warned about, and bad formats rejected at their offset."""
from __future__ import annotations

import copy
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import LISTENER, L, msg, table  # noqa: E402
from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext  # noqa: E402
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink  # noqa: E402
from mosnx.runtime.envoy.listeners import translate_listener  # noqa: E402
from mosnx.runtime.headers import Headers  # noqa: E402
from mosnx.runtime.logformat import ENVOY_DEFAULT_FORMAT, JsonFormat, LogFormat  # noqa: E402

FILE = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
STDOUT = "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"
GRPC = "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig"


def listener(*logs: dict):
    d = copy.deepcopy(LISTENER)
    d["filter_chains"][0]["filters"][0]["typed_config"]["access_log"] = list(logs)
    sink = Sink()
    lc = translate_listener(msg(L, d), Findings(L, "edge", "", sink), {"main": table()})
    return lc, [w.message for w in sink.warnings]


def stream(status: int = 200, detail: str = "") -> StreamContext:
    c = StreamContext(RequestHead("GET", "/p?q=1", Headers.from_pairs([("host", "h.test"), ("user-agent", "ua")])),
                      source=("10.0.0.2", 5000), destination=("10.0.0.1", 80))
    c.response = ResponseHead(status, Headers())
    c.error_detail = detail
    return c


def test_a_file_logger_without_a_format_writes_envoys_default():
    lc, _ = listener({"name": "envoy.access_loggers.file", "typed_config": {"@type": FILE, "path": "/dev/stdout"}})
    al = lc.access_log
    assert al.path == "stdout" and isinstance(al.format, LogFormat) and al.format.text == ENVOY_DEFAULT_FORMAT


def test_text_format_source_with_omit_empty_values():
    lc, _ = listener({"name": "f", "typed_config": {"@type": FILE, "path": "/tmp/x.log", "log_format": {
        "text_format_source": {"inline_string": "%REQ(:PATH)% [%UPSTREAM_HOST%]\n"}, "omit_empty_values": True}}})
    assert lc.access_log.path == "/tmp/x.log"
    assert lc.access_log.format.render(stream()) == "/p?q=1 []"


def test_json_format_on_stdout_types_its_values():
    lc, _ = listener({"name": "s", "typed_config": {"@type": STDOUT, "log_format": {"json_format": {
        "code": "%RESPONSE_CODE%", "path": "%REQ(:PATH)%", "up": "%UPSTREAM_HOST%"}}}})
    assert isinstance(lc.access_log.format, JsonFormat)
    assert json.loads(lc.access_log.format.render(stream(404))) == {"code": 404, "path": "/p?q=1", "up": None}


def test_filters_choose_the_streams():
    lc, _ = listener({"name": "f", "typed_config": {"@type": FILE, "path": "/tmp/x.log"}, "filter": {"or_filter": {
        "filters": [{"status_code_filter": {"comparison": {"op": "GE", "value": {"default_value": 500,
                                                                                 "runtime_key": "k"}}}},
                    {"response_flag_filter": {"flags": ["NR"]}}]}}})
    test = lc.access_log.filter.test
    assert test(stream(503)) and test(stream(404, "route_not_found"))
    assert not test(stream(200)) and not test(stream(404))


def test_what_is_warned_about():
    lc, warnings = listener(
        {"name": "envoy.access_loggers.http_grpc", "typed_config": {"@type": GRPC, "common_config": {
            "log_name": "x", "transport_api_version": "V3", "grpc_service": {"envoy_grpc": {"cluster_name": "c"}}}}},
        {"name": "a", "typed_config": {"@type": FILE, "path": "/tmp/a.log"},
         "filter": {"traceable_filter": {}}},
        {"name": "b", "typed_config": {"@type": FILE, "path": "/tmp/b.log"}})
    assert lc.access_log.path == "/tmp/a.log" and lc.access_log.filter is None
    assert any("HttpGrpcAccessLogConfig" in w or "http_grpc" in w for w in warnings)
    assert any("traceable_filter is not supported: every stream is logged" in w for w in warnings)
    assert any("one access log per listener" in w and "access_log[2]" in w for w in warnings)


@pytest.mark.parametrize("fmt, path, message", [
    ({"text_format_source": {"inline_string": "%REQ(:PATH)% %NOPE%"}},
     "log_format.text_format_source.inline_string", 'unknown command operator "NOPE" (at offset 14 of the format)'),
    ({"json_format": {"a": {"b": "%DURATION:3%"}}},
     "log_format.json_format.a.b", "DURATION is a number: it takes no :length"),
])
def test_a_bad_format_rejects_the_listener_at_its_place(fmt, path, message):
    with pytest.raises(Rejected) as e:
        listener({"name": "f", "typed_config": {"@type": FILE, "path": "/tmp/x.log", "log_format": fmt}})
    r = e.value.rejection
    assert r.field_path == "filter_chains[0].filters[0].typed_config.access_log[0].typed_config." + path
    assert message in r.message
