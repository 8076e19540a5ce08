"""Access-log formats: every problem found with its offsets, and lines rendered from the compiled parts."""
from __future__ import annotations

import random

import pytest

from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.logformat import DEFAULT, DEFAULT_FORMAT, LogFormat, compile_format, parse_format


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
