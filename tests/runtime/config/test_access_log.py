"""A listener's access_log at config load: the format is compiled there, and a bad one is
a positioned config error pointing into the format string."""
from __future__ import annotations

import textwrap

import pytest

from mosnx.runtime import AccessLog, ConfigError
from mosnx.runtime.config import load_config_text
from mosnx.runtime.logformat import JsonFormat, LogFormat, compile_format

DOC = """\
listeners:
  - name: ingress
    address: 127.0.0.1:8080
    route: {{ cluster: web }}
    access_log: {log}
clusters:
  - name: web
    endpoints: ["127.0.0.1:9000"]
"""


def load(log: str, path: str = "mosnx.yaml"):
    return load_config_text(DOC.format(log=log), path)


def findings(log: str) -> list[tuple[str, int, int, int, str]]:
    """(code, line, column, end column, message) of every finding."""
    with pytest.raises(ConfigError) as e:
        load(log)
    return [(d.code, d.span.line, d.span.column, d.span.end_column, d.message) for d in e.value.diagnostics]


def col(log: str, needle: str) -> int:
    """1-based column of `needle` on the access_log line."""
    return len("    access_log: ") + log.index(needle) + 1


def test_a_good_format_is_compiled_at_load():
    c = load('{ path: stdout, format: "%request.method% %request.headers[\\"user-agent\\"]%" }')
    al = c.listeners[0].access_log
    assert isinstance(al.format, LogFormat)
    assert al == AccessLog("stdout", compile_format('%request.method% %request.headers["user-agent"]%'))
    assert al.format.parts        # the compiled parts the proxy uses


def test_no_format_keeps_the_default():
    assert load("stderr").listeners[0].access_log == AccessLog("stderr")


def test_unknown_attribute_points_into_the_format_with_a_suggestion():
    log = '{ path: stdout, format: "%request.path% %response.flagz%" }'
    assert findings(log) == [
        ("C004", 5, col(log, "response.flagz"), col(log, "response.flagz") + len("response.flagz"),
         'listeners[0].access_log.format: unknown attribute "response.flagz" (did you mean "response.flags"?)')]


def test_plain_and_single_quoted_scalars_point_inside_too():
    log = "{ path: stdout, format: x %request.pth% }"
    assert findings(log)[0][1:3] == (5, col(log, "request.pth"))
    log = "{ path: stdout, format: 'x %request.pth%' }"
    assert findings(log)[0][1:3] == (5, col(log, "request.pth"))


def test_every_problem_is_reported():
    log = '{ path: stdout, format: "%request.headers[x]% %bogus% 100%" }'
    got = findings(log)
    assert [(c, line, column) for c, line, column, _, _ in got] == [
        ("C004", 5, col(log, "[x]")), ("C004", 5, col(log, "bogus")), ("C004", 5, col(log, "100%") + 3)]
    assert "bad key syntax" in got[0][4] and 'unknown attribute "bogus"' in got[1][4] and "never closed" in got[2][4]


def test_a_value_with_escapes_is_pointed_at_as_a_whole():
    log = '{ path: stdout, format: "\\t%request.pth%" }'
    assert findings(log)[0][1:3] == (5, col(log, '"'))


def test_a_block_format_is_pointed_at_as_a_whole():
    text = DOC.format(log="\n      path: stdout\n      format: >-\n        %request.path%\n        %response.flagz%")
    with pytest.raises(ConfigError) as e:
        load_config_text(text, "mosnx.yaml")
    d, = e.value.diagnostics
    # the block scalar starts at its ">-" (line 7, column 15)
    assert (d.span.line, d.span.column) == (7, 15) and "response.flags" in d.message


def test_the_error_renders_like_a_compiler():
    with pytest.raises(ConfigError) as e:
        load('{ path: stdout, format: "%response.flagz%" }')
    assert e.value.diagnostics[0].render() == textwrap.dedent("""\
        mosnx.yaml:5:43: C004 listeners[0].access_log.format: unknown attribute "response.flagz" (did you mean "response.flags"?)
              access_log: { path: stdout, format: "%response.flagz%" }
                                                    ^^^^^^^^^^^^^^""")


def test_generated_formats_load_or_fail_with_a_positioned_c004():
    """Mutated formats in a YAML string: the config loads with a compiled format, or
    fails with C004 findings on the format's line, inside it; never another error."""
    import random
    pieces = ["%", "%%", "request.path", "request.headers", '[\\"x\\"]', "['y']", "[", "]", " ",
              "response.code", ".", "x", "REQ(", ")", "start_time", "é", "response.flagz",
              "RESPONSE_CODE", "START_TIME(", "%Y", ":", "?", ":PATH", "X-A", "3", "NOPE"]
    rnd = random.Random(11)
    for _ in range(300):
        fmt = "".join(rnd.choice(pieces) for _ in range(rnd.randrange(1, 10)))
        log = f'{{ path: stdout, format: "{fmt}" }}'
        line = f"    access_log: {log}"
        try:
            c = load(log)
        except ConfigError as e:
            for d in e.diagnostics:
                assert d.code == "C004" and d.span.line == 5, (fmt, str(d))
                assert col(log, '"') <= d.span.column <= len(line), (fmt, str(d))
        else:
            assert isinstance(c.listeners[0].access_log.format, LogFormat)


def test_envoy_operators_in_a_format_point_at_their_problem():
    log = '{ path: stdout, format: "%REQ(:PATH)% %RESPONSE_FLAG%" }'
    assert findings(log) == [
        ("C004", 5, col(log, "RESPONSE_FLAG%"), col(log, "RESPONSE_FLAG%") + len("RESPONSE_FLAG"),
         'listeners[0].access_log.format: unknown command operator "RESPONSE_FLAG" (did you mean "RESPONSE_FLAGS"?)')]


def test_json_format_is_compiled_at_load():
    al = load('{ path: stdout, json_format: { code: "%RESPONSE_CODE%", at: { path: "%REQ(:PATH)%" } } }'
              ).listeners[0].access_log
    assert isinstance(al.format, JsonFormat) and not al.format.omit_empty
    omit = load('{ path: stdout, json_format: { code: "%RESPONSE_CODE%" }, omit_empty_values: true }')
    assert omit.listeners[0].access_log.format.omit_empty


def test_omit_empty_values_leaves_text_empty_not_dashed():
    al = load('{ path: stdout, format: "[%UPSTREAM_HOST%]", omit_empty_values: true }').listeners[0].access_log
    from mosnx.runtime.context import RequestHead, StreamContext
    from mosnx.runtime.headers import Headers
    assert al.format.render(StreamContext(RequestHead("GET", "/", Headers()))) == "[]"


def test_json_format_problems_point_inside_their_value():
    log = '{ path: stdout, json_format: { a: "%REQ(:PATH)%", b: "x %NOPE%" } }'
    got = findings(log)
    assert [(c, line, column) for c, line, column, _, _ in got] == [("C004", 5, col(log, "NOPE"))]
    assert got[0][4] == 'listeners[0].access_log.json_format.b: unknown command operator "NOPE"'


def test_format_and_json_format_exclude_each_other():
    got = findings('{ path: stdout, format: "%REQ(:PATH)%", json_format: { a: "%REQ(:PATH)%" } }')
    assert len(got) == 1 and "format or json_format, not both" in got[0][4]
