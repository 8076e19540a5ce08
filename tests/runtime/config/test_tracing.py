"""`tracing:` at the top and in a listener: the spelling of the issue loads, and bad
values are positioned config errors."""
from __future__ import annotations

import pytest

from mosnx.runtime import ConfigError
from mosnx.runtime.config import load_config_text
from mosnx.runtime.model import ListenerTracing, TraceExporter
from mosnx.runtime.snapshot import build_snapshot

DOC = """\
tracing: {top}
listeners:
  - name: ingress
    address: 127.0.0.1:8080
    route: {{ cluster: web }}
    tracing: {listener}
clusters:
  - name: web
    endpoints: ["127.0.0.1:9000"]
"""

TOP = ('{service_name: shop, exporters: [{otlp: {endpoint: "127.0.0.1:4317"}}, '
       '{skywalking: {endpoint: "http://127.0.0.1:12800"}}, '
       '{zipkin: {endpoint: "http://127.0.0.1:9411/api/v2/spans"}}]}')
LISTENER = "{propagation: [w3c, b3, sw8], random_sampling: 100%, client_sampling: 100%, overall_sampling: 100%}"


def load(top: str = TOP, listener: str = LISTENER):
    return load_config_text(DOC.format(top=top, listener=listener))


def messages(**kw: str) -> list[tuple[str, int, str]]:
    with pytest.raises(ConfigError) as e:
        load(**kw)
    return [(d.code, d.span.line, d.message) for d in e.value.diagnostics]


def test_the_issue_spelling_loads() -> None:
    c = load()
    assert c.tracing is not None and c.tracing.service_name == "shop"
    assert c.tracing.exporters == (TraceExporter("otlp", "127.0.0.1:4317"),
                                   TraceExporter("skywalking", "http://127.0.0.1:12800"),
                                   TraceExporter("zipkin", "http://127.0.0.1:9411/api/v2/spans"))
    assert c.listeners[0].tracing == ListenerTracing(("w3c", "b3", "sw8"), 100.0, 100.0, 100.0)


def test_defaults_and_percent_spellings() -> None:
    c = load(top="", listener="{random_sampling: 1%, overall_sampling: 0.5}")
    assert c.tracing is None
    t = c.listeners[0].tracing
    assert t is not None and t.propagation == ("w3c", "b3", "sw8")
    assert (t.random_sampling, t.client_sampling, t.overall_sampling) == (1.0, 100.0, 0.5)
    assert load(top="", listener="").listeners[0].tracing is None


def test_snapshot_gives_a_traced_listener_its_tracer() -> None:
    snap = build_snapshot(load())
    tracer = snap.listeners["ingress"].tracer
    assert tracer is not None and tracer.service == "shop" and tracer.formats == ("w3c", "b3", "sw8")
    assert build_snapshot(load(top="", listener="")).listeners["ingress"].tracer is None


def test_a_tcp_listener_cannot_trace() -> None:
    doc = DOC.replace("    route:", "    protocol: tcp\n    route:")
    with pytest.raises(ConfigError) as e:
        load_config_text(doc.format(top="", listener="{propagation: w3c}"))
    assert any("tracing needs an HTTP or RPC listener" in d.message for d in e.value.diagnostics)


@pytest.mark.parametrize("kw, needle, line", [
    ({"listener": "{propagation: [w3c, jaeger]}"}, 'unknown value "jaeger"', 6),
    ({"listener": "{random_sampling: 150%}"}, "outside 0%..100%", 6),
    ({"listener": "{random_sampling: lots}"}, "is not a percentage", 6),
    ({"listener": "{propagation: []}"}, "at least 1 item", 6),
    ({"top": "{exporters: [{jaeger: {endpoint: x}}]}"}, 'unknown key "jaeger"', 1),
    ({"top": "{exporters: [{otlp: {endpoint: a:1}, zipkin: {endpoint: 'http://b'}}]}"}, "has both", 1),
    ({"top": "{exporters: [{zipkin: {endpoint: '127.0.0.1:9411'}}]}"}, "Zipkin takes an http:// URL", 1),
    ({"top": "{exporters: [{skywalking: {endpoint: oap}}]}"}, "expected host:port", 1),
    ({"top": "{exporters: [{otlp: {endpoint: collector}}]}"}, "expected host:port", 1),
    ({"top": "{exporters: [{otlp: {endpoint: 'collector:grpc'}}]}"}, 'the port "grpc" is not a number', 1),
    ({"top": "{exporters: [{otlp: {endpoint: 'collector:0'}}]}"}, "port 0 is outside 1..65535", 1),
    ({"top": "{exporters: [{otlp: {endpoint: ':4317'}}]}"}, "expected host:port", 1),
    ({"top": "{exporters: [{otlp: {}}]}"}, 'missing required key "endpoint"', 1),
])
def test_bad_values_are_positioned_errors(kw: dict, needle: str, line: int) -> None:
    found = messages(**kw)
    assert any(needle in m and ln == line for _, ln, m in found), found


def test_skywalking_grpc_endpoint_needs_the_protocol_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    top = "{exporters: [{skywalking: {endpoint: '127.0.0.1:11800'}}]}"
    monkeypatch.setattr("mosnx.runtime.model._has_module", lambda name: False)
    found = messages(top=top)
    assert any("pip install 'mosnx[skywalking]'" in m and ln == 1 for _, ln, m in found), found
    monkeypatch.setattr("mosnx.runtime.model._has_module", lambda name: True)
    assert load(top=top).tracing.exporters[0].endpoint == "127.0.0.1:11800"
