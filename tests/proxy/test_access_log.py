"""The access-log writer: lines from the format compiled at config load, buffered, to a file."""
from __future__ import annotations

import dataclasses
import json
import os

from mosnx.proxy.access_log import AccessLogWriter
from mosnx.runtime.config import load_config_text
from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.log_filter import status_code


def config(tmp_path, log: str):
    return load_config_text(f"""\
listeners:
  - name: ingress
    address: 127.0.0.1:8080
    route: {{ cluster: web }}
    access_log: {log}
clusters:
  - {{ name: web, endpoints: ["127.0.0.1:9000"] }}
""", str(tmp_path / "mosnx.yaml")).listeners[0].access_log


def ctx(path: str = "/a") -> StreamContext:
    c = StreamContext(RequestHead("POST", path, Headers.from_pairs([("host", "x.test"), ("x-id", "7")])),
                      listener="ingress", source=("192.0.2.1", 40000), destination=("127.0.0.1", 8080))
    c.response = ResponseHead(201, Headers.from_pairs([]))
    return c


def test_lines_follow_the_configured_format(tmp_path):
    al = config(tmp_path, '{ path: access.log, format: "%request.method% %request.path% %response.code% '
                          'id=%request.headers[\\"x-id\\"]% ua=%request.headers[\\"user-agent\\"]% 5%%" }')
    w = AccessLogWriter(al, "ingress")
    assert w.parts is al.format.parts          # compiled once, at load
    w.write(ctx("/a"))
    w.write(ctx("/b?q=1"))
    w.close()
    assert (tmp_path / "access.log").read_text() == ("POST /a 201 id=7 ua=- 5%\n"
                                                     "POST /b?q=1 201 id=7 ua=- 5%\n")


def test_the_default_format_when_none_is_given(tmp_path):
    al = config(tmp_path, "access.log")
    w = AccessLogWriter(al, "ingress")
    w.write(ctx("/a"))
    w.close()
    line = (tmp_path / "access.log").read_text()
    assert '"POST /a ' in line and " 201 " in line and '"x.test"' in line


def test_a_refused_request_is_logged_in_the_configured_format(tmp_path):
    al = config(tmp_path, '{ path: access.log, format: "%request.method% %request.path% %request.protocol% '
                          '%response.code% %response.flags% %source.address% %request.headers[\\"x-id\\"]%" }')
    w = AccessLogWriter(al, "ingress")
    w.error(("192.0.2.9", 5555), 400, "invalid_url", "HTTP/1.1")
    w.close()
    assert (tmp_path / "access.log").read_text() == "- - HTTP/1.1 400 invalid_url 192.0.2.9 -\n"


def test_a_refused_request_keeps_the_default_shape_without_a_format(tmp_path):
    w = AccessLogWriter(config(tmp_path, "access.log"), "ingress")
    w.error(None, 431, "header_too_large")
    w.close()
    line = (tmp_path / "access.log").read_text()
    assert '"- - -" 431 header_too_large 0 0 0 "-" "-"' in line


def test_json_lines_and_envoy_operators(tmp_path):
    al = config(tmp_path, '{ path: access.log, json_format: { code: "%RESPONSE_CODE%", method: "%REQ(:METHOD)%", '
                          'ua: "%REQ(USER-AGENT)%", line: "%REQ(:METHOD)% %REQ(USER-AGENT)%", n: 1 } }')
    w = AccessLogWriter(al, "ingress")
    assert w.parts is None
    w.write(ctx("/a"))
    w.close()
    assert json.loads((tmp_path / "access.log").read_text()) == {
        "code": 201, "method": "POST", "ua": None, "line": "POST -", "n": 1}


def test_a_filter_leaves_streams_out(tmp_path):
    al = dataclasses.replace(config(tmp_path, '{ path: access.log, format: "%REQ(:PATH)%" }'),
                             filter=status_code("GE", 500))
    w = AccessLogWriter(al, "ingress")
    w.write(ctx("/ok"))
    bad = ctx("/bad")
    bad.response = ResponseHead(503, Headers())
    w.write(bad)
    w.close()
    assert (tmp_path / "access.log").read_text() == "/bad\n"


def test_reopen_starts_a_new_file_at_the_path(tmp_path):
    w = AccessLogWriter(config(tmp_path, '{ path: access.log, format: "%REQ(:PATH)%" }'), "ingress")
    w.write(ctx("/before"))
    w.flush()
    os.rename(tmp_path / "access.log", tmp_path / "access.log.1")
    w.write(ctx("/buffered"))       # written before the file is reopened: to the renamed file
    w.reopen()
    w.write(ctx("/after"))
    w.close()
    assert (tmp_path / "access.log.1").read_text() == "/before\n/buffered\n"
    assert (tmp_path / "access.log").read_text() == "/after\n"
