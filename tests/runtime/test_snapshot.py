import textwrap

import pytest

from mosnx.runtime import ConfigError, Headers, RequestHead, StreamContext, build_snapshot

CONFIG = """\
listeners:
  - name: ingress
    address: 127.0.0.1:8080
    route: {cluster: web, timeout: 2s}
clusters:
  - name: web
    endpoints: ["127.0.0.1:9000"]
"""


def write(tmp_path, text: str) -> str:
    path = tmp_path / "mosnx.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def request(path: str = "/", host: str = "shop.local") -> StreamContext:
    head = RequestHead("GET", path, Headers.from_pairs([("host", host)]))
    return StreamContext(head, listener="ingress")


def test_default_route_sends_every_request_to_its_cluster(tmp_path):
    snap = build_snapshot(write(tmp_path, CONFIG))
    listener = snap.listeners["ingress"]
    assert snap.clusters["web"].endpoints[0].address == "127.0.0.1:9000"
    assert snap.sources == (str(tmp_path / "mosnx.yaml"),)
    for path, host in [("/", "shop.local"), ("/a/b?c=d", "127.0.0.1:8080"), ("/x", "")]:
        ctx = request(path, host)
        route = listener.routes.vhost_for(ctx.request.host).match(ctx)
        assert route is not None
        assert route.action.cluster == "web" and route.action.timeout == 2.0


def test_dangling_cluster_reference_fails_with_its_position(tmp_path):
    path = write(tmp_path, CONFIG.replace("cluster: web,", "cluster: wbe,"))
    with pytest.raises(ConfigError) as e:
        build_snapshot(path)
    (d,) = e.value.diagnostics
    assert (d.code, d.span.line, d.span.column) == ("C101", 4, 22)
    assert d.message == 'unknown cluster "wbe" (did you mean "web"?)'


def test_unknown_filter_kind_is_reported_at_the_filter_item(tmp_path):
    path = write(tmp_path, CONFIG.replace("    route:", "    filters: [{no-such-filter: {}}]\n    route:"))
    with pytest.raises(ConfigError) as e:
        build_snapshot(path)
    (d,) = e.value.diagnostics
    assert (d.code, d.span.line, d.span.column) == ("C201", 4, 15)


def test_a_slow_step_says_what_it_did_in_the_log(tmp_path, monkeypatch, caplog):
    """Every step over SLOW seconds logs one line; here SLOW is 0 so each one does."""
    from mosnx import plugins
    from mosnx.runtime import snapshot
    plugins.load()
    (tmp_path / "r.mdsl").write_text('vhost a domains "a" { route x when request.path == "/x" { to web } '
                                     'route y { to web } }\nroute z { to web }\n')
    monkeypatch.setattr(snapshot, "SLOW", 0.0)
    cfg = CONFIG.replace("    route: {cluster: web, timeout: 2s}", "    rules: r.mdsl")
    with caplog.at_level("INFO", logger="mosnx"):
        build_snapshot(write(tmp_path, cfg))
    lines = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"{tmp_path / 'mosnx.yaml'} loaded in ") for m in lines), lines
    assert any(m.startswith('listener "ingress": 3 routes in 2 vhosts loaded, checked and compiled in ')
               for m in lines), lines


def test_a_quick_build_logs_nothing(tmp_path, caplog):
    with caplog.at_level("INFO", logger="mosnx"):
        build_snapshot(write(tmp_path, CONFIG))
    assert not caplog.records
