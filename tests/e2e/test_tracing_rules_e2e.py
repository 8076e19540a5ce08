""".mdsl `trace` statements through a real mosnx: a listener sampling 0% of requests
at random samples the one a rule forces (`trace sample 100%`), exports it to an OTLP
receiver in this test with the rule's span attribute (`trace tag`), and propagates
the decision upstream; a request the rule leaves alone is neither exported nor
marked sampled. A rule that suppresses sampling wins over a caller's sampled flag."""
from __future__ import annotations

import time

import pytest

from .conftest import HOST, build_config, free_port, wait_until
from .test_tracing_e2e import PID, TID, WAIT, OtlpReceiver

RULES = """\
route all {
  trace tag "tenant" = request.headers["x-tenant"]
  trace tag "rule" = "forced"
  when request.headers["x-debug"] == "1" { trace sample 100% }
  when request.headers["x-quiet"] == "1" { trace sample 0% }
  to web
}
"""


@pytest.fixture
def otlp():
    r = OtlpReceiver()
    yield r
    r.stop()


def proxied(mosnx, tmp_path, up, otlp):
    rules = tmp_path / "trace.mdsl"
    rules.write_text(RULES)
    cfg = build_config(free_port(), free_port(), [up])
    lst = cfg["listeners"][0]
    del lst["route"]
    lst["rules"] = str(rules)
    lst["tracing"] = {"propagation": ["w3c"], "random_sampling": "0%"}
    cfg["tracing"] = {"service_name": "edge", "batch_delay": "50ms",
                      "exporters": [{"otlp": {"endpoint": f"{HOST}:{otlp.port}"}}]}
    return mosnx(config=cfg)


def attrs(span) -> dict:
    return {kv.key: kv.value for kv in span.attributes}


def test_forced_sampling_exports_the_tagged_span_at_random_sampling_0(upstream, mosnx, tmp_path, otlp):
    up = upstream()
    proxy = proxied(mosnx, tmp_path, up, otlp)
    plain = proxy.request("GET", "/plain", headers=[("x-tenant", "nobody")])
    forced = proxy.request("GET", "/debug", headers=[("x-tenant", "acme"), ("x-debug", "1")])
    assert plain.status == forced.status == 200
    sent = {m.target: m.header("traceparent") for m in up.requests}
    assert sent["/plain"].endswith("-00") and sent["/debug"].endswith("-01")
    # the route's steps took both off the express path: the context an unsampled one
    # drew at admission is written once, last, as a sampled one's is
    for m in up.requests:
        names = [k for k, _ in m.headers]
        assert names.count("traceparent") == 1 and names[names.index("traceparent") + 1] == "x-forwarded-for", m

    spans = wait_until(lambda: [s for _, s in otlp.spans() if s.kind == 2] or None, WAIT, "a server span")
    time.sleep(0.3)                        # one more batch: the plain request must not follow
    servers = [s for _, s in otlp.spans() if s.kind == 2]
    assert len(servers) == 1, servers
    a = attrs(servers[0])
    assert a["tenant"].string_value == "acme" and a["rule"].string_value == "forced"
    assert a["url.path"].string_value == "/debug"
    assert servers[0].trace_id.hex() == sent["/debug"].split("-")[1]
    clients = [s for _, s in otlp.spans() if s.kind == 3]
    assert len(clients) == 1 and clients[0].parent_span_id == servers[0].span_id
    assert proxy.wait_stat("tracing.sampled", 1) == 1


def test_suppressed_sampling_wins_over_the_callers_flag(upstream, mosnx, tmp_path, otlp):
    up = upstream()
    proxy = proxied(mosnx, tmp_path, up, otlp)
    quiet = proxy.request("GET", "/quiet", headers=[("traceparent", f"00-{TID}-{PID}-01"), ("x-quiet", "1")])
    loud = proxy.request("GET", "/loud", headers=[("traceparent", f"00-{TID}-{PID}-01"), ("x-tenant", "t2")])
    assert quiet.status == loud.status == 200
    sent = {m.target: m.header("traceparent") for m in up.requests}
    assert sent["/quiet"].startswith(f"00-{TID}-") and sent["/quiet"].endswith("-00")
    assert sent["/loud"].endswith("-01")
    wait_until(lambda: [s for _, s in otlp.spans() if s.kind == 2] or None, WAIT, "a server span")
    time.sleep(0.3)
    servers = [s for _, s in otlp.spans() if s.kind == 2]
    assert [attrs(s)["url.path"].string_value for s in servers] == ["/loud"]
    assert attrs(servers[0])["tenant"].string_value == "t2"
