"""`trace tag` and `trace sample`: parsed, checked (places, values, U303), compiled to
steps that act on the stream's trace, and seen on the server span a real Tracer records."""
from __future__ import annotations

import random

import pytest

from mosnx.dsl import ast as A
from mosnx.dsl.fmt import format_text
from mosnx.dsl.parse import parse
from mosnx.dsl.rules import analyze
from mosnx.runtime.context import ResponseHead
from mosnx.runtime.headers import Headers
from mosnx.runtime.stats import Store
from mosnx.runtime.tracing.span import SERVER
from mosnx.runtime.tracing.tracer import Tracer


def body(src: str) -> tuple:
    f = parse("route r { " + src + " to web }", "t.mdsl")
    assert isinstance(f, A.File), f.render()
    return f.items[0].body


def test_parse_tag_and_sample_with_spans():
    tag, sample, _ = body('trace tag "tenant" = request.headers["x-tenant"] trace sample 0.5%')
    assert isinstance(tag, A.TraceTag) and tag.key == "tenant"
    assert tag.value == A.Ref(tag.value.span, "request.headers", "x-tenant")
    assert (tag.span.column, tag.key_span.column) == (11, 21)
    assert isinstance(sample, A.TraceSample) and sample.percent.text == "0.5%"


def test_trace_tag_and_sample_are_names_elsewhere():
    f = parse('clusters trace, sample\nroute trace { to sample }', "t.mdsl")
    assert isinstance(f, A.File)
    assert f.items[1].name == "trace" and f.items[1].body[0].cluster == "sample"


def test_sample_needs_a_percentage():
    d = parse("route r { trace sample 100 to web }", "t.mdsl")
    assert not isinstance(d, A.File) and d.code == "E001"


def test_formatted_canonically():
    src = 'route r {\n  trace tag "tenant"=lower(request.headers["x-t"])   trace sample 100%\n  to web }\n'
    assert format_text(src) == ('route r {\n  trace tag "tenant" = lower(request.headers["x-t"])\n'
                                '  trace sample 100%\n  to web\n}\n')


def test_checked_places_values_and_percent(rules):
    assert rules.lines('on request { trace tag "a" = request.path trace sample 10% }\n'
                       'on response { trace tag "code" = response.code }\n'
                       'on log { trace tag "ms" = duration_ms }\n'
                       'route r { when request.method == "GET" { trace sample 0% } to web }') == []
    assert rules.lines('on response { trace sample 100% }\nroute r { to web }') == [
        '1:15: P501 "trace sample" is not allowed in "on response"; it belongs in "on request" or a route '
        'or a "when" inside a route']
    assert rules.lines('route r { trace sample 101% to web }') == ['1:24: T103 percentage 101% is over 100%']
    assert rules.lines('route r { trace tag "" = "x" to web }') == ['1:21: T103 a span attribute needs a name']
    assert rules.lines('const s = {"a"}\nroute r { trace tag "m" = s to web }') == [
        '2:27: T101 a span attribute takes a single value, not a set<string>']
    assert rules.lines('route r { trace tag "c" = response.code to web }') == [
        '1:27: P502 response.code is not known yet in the route phase; it is set in the response phase']


def test_U303_only_under_a_listener_known_not_to_trace(rules):
    path = rules.write('route r { trace tag "a" = "b"  trace sample 100% to web }')
    assert analyze([path])[1] == []
    assert analyze([path], tracing=True)[1] == []
    diags = analyze([path], tracing=False)[1]
    assert [(d.code, d.severity, d.span.column) for d in diags] == [("U303", "warning", 11), ("U303", "warning", 32)]
    assert diags[0].message == '"trace tag" does nothing here: the listener does not trace (give it tracing:)'


def traced(rules, src: str, random_sampling: float = 100.0, **req):
    """The rules run on a stream of a listener that traces; the record its sink got."""
    c = rules.compile(src)
    tracer = Tracer("ingress", ("w3c",), random_sampling=random_sampling)
    out: list = []
    store = Store()
    tracer.bind(out.append, store)
    ctx = rules.request(**req)
    tracer.begin(ctx)
    o = rules.run(c, ctx)
    ctx.response = ResponseHead(200, Headers())
    rules.run_response(c, ctx, o)
    rules.run_log(c, ctx, o)
    ctx.trace.finish(ctx)
    return ctx, out, store


def test_tags_land_on_the_server_span_with_their_types(rules):
    ctx, (rec,), _ = traced(rules, '''
        on request { trace tag "tenant" = request.headers["x-tenant"] }
        route r { trace tag "tier" = "gold"  trace tag "n" = 3  trace tag "lan" = 10.0.0.1  to web }
        on response { trace tag "code" = response.code }
        on log { trace tag "ok" = response.code < 500 }
    ''', headers={"x-tenant": "acme"})
    server = rec.spans[0]
    assert server.kind == SERVER
    a = server.attributes
    assert (a["tenant"], a["tier"], a["n"], a["lan"], a["code"], a["ok"]) == ("acme", "gold", 3, "10.0.0.1", 200, True)


def test_sample_100_forces_and_0_suppresses(rules):
    ctx, out, store = traced(rules, 'route r { trace sample 100% to web }', random_sampling=0.0)
    assert ctx.trace.sampled and len(out) == 1
    assert store.counter("tracing.sampled").value == 1
    ctx, out, store = traced(rules, 'route r { trace sample 0% to web }')
    assert not ctx.trace.sampled and out == []
    assert store.counter("tracing.sampled").value == 0


def test_sample_overrides_the_carried_decision_and_is_propagated(rules):
    tid = "4bf92f3577b34da6a3ce929d0e0e4736"
    c = rules.compile('when request.headers["x-debug"] == "1" { trace sample 100% }\nroute r { to web }'
                      .replace("when", "on request { when", 1).replace("}\nroute", "} }\nroute", 1))
    tracer = Tracer("ingress", ("w3c",), random_sampling=0.0)
    tracer.bind(None, None)
    ctx = rules.request(headers={"traceparent": f"00-{tid}-00f067aa0ba902b7-00", "x-debug": "1"})
    tracer.begin(ctx)
    assert not ctx.trace.sampled
    rules.run(c, ctx)
    assert ctx.trace.sampled
    ctx.trace.attempt_start(ctx, "web", "127.0.0.1:9000", 1)
    assert ctx.request.headers.get("traceparent").endswith("-01")


def test_partial_sample_draws(rules, monkeypatch):
    import mosnx.dsl.compile as comp
    c = rules.compile('route r { trace sample 25% to web }')
    tracer = Tracer("ingress", ("w3c",))
    tracer.bind(None, None)
    seen = []
    for draw in (0.1, 0.3):
        monkeypatch.setattr(comp, "_random", lambda d=draw: d)
        ctx = rules.request()
        tracer.begin(ctx)
        rules.run(c, ctx)
        seen.append(ctx.trace.sampled)
    assert seen == [True, False]


def test_a_stream_without_a_trace_is_left_alone(rules):
    c = rules.compile('route r { trace tag "a" = request.path  trace sample 100% to web }')
    ctx = rules.request()
    out = rules.run(c, ctx)
    assert out.reply is None and ctx.trace is None


@pytest.mark.parametrize("seed", range(3))
def test_tags_set_before_a_later_sample_are_kept(rules, seed):
    random.seed(seed)
    ctx, (rec,), _ = traced(rules, 'route r { trace tag "t" = "x"  trace sample 100% to web }', random_sampling=0.0)
    assert rec.spans[0].attributes["t"] == "x"
