"""Access-log formats: every problem found with its offsets, and lines rendered from the compiled parts."""
from __future__ import annotations

import json
import random

import pytest

from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.logformat import (DEFAULT, DEFAULT_FORMAT, ENVOY_DEFAULT_FORMAT, ISTIO_FORMAT, LogFormat,
                                    compile_format, compile_json, parse_format, parse_json)
from mosnx.runtime.routes import Route, RouteAction


def ctx() -> StreamContext:
    c = StreamContext(RequestHead("GET", "/a?b=1", Headers.from_pairs([("host", "x.test"), ("user-agent", "ua/1")])),
                      listener="l", source=("192.0.2.1", 40000), destination=("127.0.0.1", 8080))
    c.response = ResponseHead(204, Headers.from_pairs([("content-type", "text/plain")]))
    return c


def problems(text: str) -> list[tuple[int, int, str]]:
    return [(e.start, e.end, e.message) for e in parse_format(text)[1]]


def test_attributes_literals_and_percent_signs_render():
    f = compile_format('%request.method% %request.path% %response.code% 100%% "%request.headers["user-agent"]%" '
                       '%response.headers[\'content-type\']% [%request.headers["x-none"]%]')
    assert f.render(ctx()) == 'GET /a?b=1 204 100% "ua/1" text/plain [-]'


def test_start_time_is_iso_utc():
    c = ctx()
    c.start_wall = 0.25
    assert compile_format("%start_time%").render(c) == "1970-01-01T00:00:00.250Z"


def test_the_default_format_compiles_and_renders():
    assert DEFAULT.text == DEFAULT_FORMAT
    line = DEFAULT.render(ctx())
    assert '"GET /a?b=1 ' in line and '"ua/1"' in line


def test_equal_by_text_only():
    assert compile_format("%request.path%") == compile_format("%request.path%")
    assert compile_format("%request.path%") != compile_format("%request.host%")
    assert isinstance(compile_format("plain text"), LogFormat)


@pytest.mark.parametrize("text, want", [
    ("%response.flagz%", [(1, 15, 'unknown attribute "response.flagz" (did you mean "response.flags"?)')]),
    ("%start_tim%", [(1, 10, 'unknown attribute "start_tim" (did you mean "start_time"?)')]),
    ("done 100%", [(8, 9, '"%" is never closed: end the reference with "%", or write %% for a percent sign')]),
    ("% done %", [(1, 7, '"% done %" is not an attribute reference; write %request.path% (or %% for a percent sign)')]),
    ("%request.headers%", [(1, 16, 'request.headers needs a key, as request.headers["..."]')]),
    ("%request.headers[x-a]%", [(16, 21, 'bad key syntax "[x-a]": write request.headers["key"]')]),
    ('%request.headers["x-a"%', [(16, 22, 'bad key syntax "["x-a"": write request.headers["key"]')]),
    ('%request.headers["a b"]%', [(16, 23, '"a b" is not a header name')]),
    ('%request.headers[""]%', [(16, 20, "request.headers needs a key, not an empty one")]),
    ('%request.path["x"]%', [(13, 18, "request.path takes no key")]),
    ("%RESPONSE_COD%", [(1, 13, 'unknown command operator "RESPONSE_COD" (did you mean "RESPONSE_CODE"?)')]),
    ("%REQ(a b)%", [(5, 8, '"a b" is not a header name (or two, as X?Y)')]),
    ("%REQ%", [(1, 4, "REQ needs a header name: %REQ(X-Name)% or %REQ(X-Name?Other)%")]),
    ("%DURATION:5%", [(10, 11, "DURATION is a number: it takes no :length")]),
    ("%PROTOCOL(x)%", [(10, 11, "PROTOCOL takes no argument")]),
    ("a %START_TIME(%Y", [(13, 16, '"(" is never closed: end the argument with ")"')]),
    ("%RESPONSE_CODE x", [(0, 16, "bad command operator: write %NAME%, %NAME(arg)% or %NAME(arg):length% "
                                  "(or %% for a percent sign)")]),
    ("%request.pth% %response.cod%", [(1, 12, 'unknown attribute "request.pth" (did you mean "request.path"?)'),
                                      (15, 27, 'unknown attribute "response.cod" (did you mean "response.code"?)')]),
])
def test_every_problem_with_its_place(text, want):
    assert problems(text) == want
    with pytest.raises(ValueError, match="attribute|closed|key|header|operator|argument|length|never"):
        compile_format(text)


def test_generated_formats_answer_with_problems_never_exceptions():
    """Mutated formats: parse_format returns parts or positioned problems, never raises."""
    alphabet = ['%', '%%', 'request.path', 'request.headers', '["x"]', "['y']", '[', ']', '"', "'", ' ',
                'response.code', '.', 'x', 'REQ(', ')', 'start_time', '\\', 'é', 'START_TIME', '(', ':',
                '?', 'RESPONSE_CODE', ':PATH', 'X-A', '3', 'DYNAMIC_METADATA', 'FILTER_STATE', '%Y', '%3f',
                'RESPONSE_FLAGS', 'A', '\n']
    rnd = random.Random(3)
    for _ in range(6000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 12)))
        parts, errs = parse_format(text)
        for e in errs:
            assert 0 <= e.start < e.end <= len(text) and e.message
        if not errs:
            assert isinstance(compile_format(text).render(ctx()), str)


class Timed(StreamContext):
    """A stream whose duration is fixed, so the line is known to the character."""
    __slots__ = ()
    duration_ms = 15.7  # type: ignore[assignment]


def known_request() -> StreamContext:
    """A request Istio's sidecar would log: proxied to an endpoint, with a service time."""
    c = Timed(RequestHead("GET", "/productpage?u=normal", Headers.from_pairs([
        ("host", "bookinfo.test:9080"), ("user-agent", "curl/8.4.0"), ("x-forwarded-for", "203.0.113.9"),
        ("x-request-id", "7c8e8a1e-2b0b-4f4e-9d43-6b1b5c1f0e11")])),
        listener="l", source=("10.244.0.7", 51234), destination=("10.244.0.12", 9080))
    c.response = ResponseHead(200, Headers.from_pairs([("x-envoy-upstream-service-time", "14")]))
    c.start_wall = 1733480061.5
    c.bytes_received, c.bytes_sent = 0, 5293
    c.upstream_address, c.cluster_name = "10.244.0.15:9080", "inbound|9080||"
    c.connection_sni = "outbound_.9080_._.productpage.default.svc.cluster.local"
    c.route = Route(name="default", action=RouteAction(cluster="inbound|9080||"))
    return c


def test_istios_default_format_renders_as_istio_logs():
    assert ISTIO_FORMAT.endswith("%ROUTE_NAME%\n")
    line = compile_format(ISTIO_FORMAT).render(known_request())
    assert line == (
        '[2024-12-06T10:14:21.500Z] "GET /productpage?u=normal HTTP/1.1" 200 - via_upstream - "-" 0 5293 15 14 '
        '"203.0.113.9" "curl/8.4.0" "7c8e8a1e-2b0b-4f4e-9d43-6b1b5c1f0e11" "bookinfo.test:9080" '
        '"10.244.0.15:9080" inbound|9080|| - 10.244.0.12:9080 10.244.0.7:51234 '
        "outbound_.9080_._.productpage.default.svc.cluster.local default")


def test_envoys_default_format_renders_a_no_route_reply():
    c = known_request()
    c.response = ResponseHead(404, Headers())
    c.error_detail, c.upstream_address, c.route, c.cluster_name = "route_not_found", "", None, ""
    c.bytes_sent = 16
    assert compile_format(ENVOY_DEFAULT_FORMAT).render(c) == (
        '[2024-12-06T10:14:21.500Z] "GET /productpage?u=normal HTTP/1.1" 404 NR 0 16 15 - "203.0.113.9" '
        '"curl/8.4.0" "7c8e8a1e-2b0b-4f4e-9d43-6b1b5c1f0e11" "bookinfo.test:9080" "-"')


def test_json_values_keep_envoys_types():
    fmt = compile_json({"code": "%RESPONSE_CODE%", "dur": "%DURATION%", "rx": "%BYTES_RECEIVED%",
                        "tx": "%BYTES_SENT%", "flags": "%RESPONSE_FLAGS%", "path": "%REQ(:PATH)%",
                        "mosnx": "%response.code%", "upstream": {"host": "%UPSTREAM_HOST%", "n": 2},
                        "mixed": "%RESPONSE_CODE% %RESPONSE_FLAGS%", "on": True})
    got = json.loads(fmt.render(known_request()))
    assert got == {"code": 200, "dur": 15, "rx": 0, "tx": 5293, "flags": None, "path": "/productpage?u=normal",
                   "mosnx": 200, "upstream": {"host": "10.244.0.15:9080", "n": 2}, "mixed": "200 -", "on": True}
    omit = compile_json({"flags": "%RESPONSE_FLAGS%", "code": "%RESPONSE_CODE%", "in": {"x": "%REQ(X-NONE)%"}},
                        omit_empty=True)
    assert json.loads(omit.render(known_request())) == {"code": 200}
    assert compile_json({"a": "%REQ(:PATH)%"}) == compile_json({"a": "%REQ(:PATH)%"})


@pytest.mark.parametrize("mapping, message", [
    ({}, "json_format needs a mapping of at least one key"),
    ({"a": ["%REQ(:PATH)%"]}, "a: a json_format value is a string, a number, a boolean or a mapping, not a list"),
    ({"a": {"b": "%NOPE%"}}, 'a.b: unknown command operator "NOPE"'),
])
def test_bad_json_formats(mapping, message):
    with pytest.raises(ValueError) as e:
        compile_json(mapping)
    assert str(e.value) == message


def test_a_trailing_newline_is_the_line_end():
    assert compile_format("%REQ(:METHOD)%\n").render(known_request()) == "GET"
    assert compile_format("a\nb").render(known_request()) == "a\nb"


def test_generated_operator_formats_answer_with_problems_never_exceptions():
    """Formats made of operator pieces: compiled or positioned problems, in text and JSON."""
    alphabet = ['%', 'REQ', 'RESP', '(', ')', ':', '?', ':PATH', 'USER-AGENT', 'START_TIME', '%Y', '%3f', '%s',
                'DYNAMIC_METADATA', 'FILTER_STATE', 'RESPONSE_CODE', 'DURATION', '12', 'x', ' ', '%%', 'PLAIN',
                'ENVIRONMENT', 'TRAILER', 'NOPE', '\n', 'request.path', '"']
    rnd = random.Random(5)
    for _ in range(4000):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 10)))
        parts, errs = parse_format(text)
        for e in errs:
            assert 0 <= e.start < e.end <= len(text) and e.message, (text, e)
        if not errs:
            assert isinstance(compile_format(text).render(known_request()), str)
        fmt, jerrs = parse_json({"k": text})
        assert (fmt is None) == bool(jerrs) == bool(errs)
        if fmt is not None:
            json.loads(fmt.render(known_request()))
