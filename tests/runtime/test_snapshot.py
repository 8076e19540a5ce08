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


# ---------------------------------------------------------------------------------------
# A snapshot never changes once built: streams in flight share it. A fingerprint walks
# everything reachable from it (ids, types and values) before it serves and after.

RULES = """
vhost shop domains "shop.test", "*.shop.test" {
  on request { set request.headers["x-vhost"] = "shop" }
  route health when request.path == "/health" { respond 200 "ok" }
  route old when request.path prefix "/old/" { redirect 301 prefix "/new/" }
  route api when request.path prefix "/api/" { to api retry 2 on 5xx timeout 3s rewrite prefix "/api/" => "/" }
  route mirrored when request.path prefix "/m" { to web mirror api 50% }
  route rest { to web set response.headers["x-route"] = "rest" }
}
vhost plain domains "plain.test" {
  route fwd { to web }
}
route split when request.headers["x-split"] == "1" { split { web: 50, api: 50 } }
route last { to web timeout 5s }
"""

SERVING = """
listeners:
  - name: rules
    address: 127.0.0.1:{p0}
    rules: rules.mdsl
    filters:
      - fault: {{name: chaos, disabled: true, abort: {{http_status: 418}}}}
  - name: guarded
    address: 127.0.0.1:{p1}
    route: {{cluster: web, timeout: 5s, retry: {{num_retries: 1, retry_on: 5xx}}}}
    filters:
      - fault: {{abort: {{header_abort: {{}}}}}}
      - rate_limit: {{token_bucket: {{max_tokens: 1000, tokens_per_fill: 1000, fill_interval: 1s}}}}
  - name: bare
    address: 127.0.0.1:{p2}
    route: {{cluster: web}}
clusters:
  - {{name: web, endpoints: ["127.0.0.1:{up}"]}}
  - {{name: api, endpoints: ["127.0.0.1:{up}"], lb: least_request}}
"""


def fingerprint(root) -> list:
    """Every object reachable from `root`, in walk order: its path, type, id and, for a
    plain value, the value. Filter instances and other behaviour (functions, bound
    methods) are recorded by identity: their own state (token buckets, counters) is
    the per-snapshot shared state that serving is meant to change."""
    import dataclasses
    import re
    import types

    from mosnx.runtime.pipeline import HttpFilter
    out: list = []
    seen: set[int] = set()

    def walk(path: str, o) -> None:
        if o is None or isinstance(o, (bool, int, float, str, bytes)):
            out.append((path, type(o).__name__, o))
            return
        out.append((path, type(o).__name__, id(o)))
        if id(o) in seen:
            return
        seen.add(id(o))
        if isinstance(o, re.Pattern):
            out.append((path, "pattern", o.pattern, o.flags))
        elif isinstance(o, dict):
            out.append((path, "len", len(o)))
            for k, v in o.items():
                walk(f"{path}[{k!r}]", v)
        elif isinstance(o, (list, tuple)):
            out.append((path, "len", len(o)))
            for i, v in enumerate(o):
                walk(f"{path}[{i}]", v)
        elif isinstance(o, (set, frozenset)):
            out.append((path, "items", sorted(map(repr, o))))
        elif isinstance(o, types.MethodType):
            walk(path + ".__self__", o.__self__ if not isinstance(o.__self__, HttpFilter) else id(o.__self__))
            out.append((path, "func", id(o.__func__)))
        elif isinstance(o, types.FunctionType):
            for i, cell in enumerate(o.__closure__ or ()):
                out.append((f"{path}.<cell {i}>", id(cell.cell_contents)))
        elif isinstance(o, HttpFilter):
            pass
        elif dataclasses.is_dataclass(o):
            for f in dataclasses.fields(o):
                walk(f"{path}.{f.name}", getattr(o, f.name))
        elif hasattr(type(o), "__slots__"):
            for cls in type(o).__mro__:
                for name in getattr(cls, "__slots__", ()):
                    walk(f"{path}.{name}", getattr(o, name))
        elif hasattr(o, "__dict__"):
            for k, v in vars(o).items():
                walk(f"{path}.{k}", v)

    walk("snapshot", root)
    return out


def test_serving_traffic_changes_nothing_in_the_snapshot(tmp_path):
    import asyncio

    from mosnx import plugins
    from mosnx.proxy.fastpath import memo
    from mosnx.proxy.worker import Worker
    plugins.load()
    # the traffic takes the express path and the general one: both read the snapshot
    express_before = memo.EXPRESS_RQ.value

    async def upstream(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                start = head.split(b"\r\n", 1)[0]
                body = start.split(b" ")[1]
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def free_ports(n: int) -> list[int]:
        # every probe held open until all are drawn: one closed first could be drawn again
        probes = [await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0) for _ in range(n)]
        ports = [p.sockets[0].getsockname()[1] for p in probes]
        for probe in probes:
            probe.close()
            await probe.wait_closed()
        return ports

    async def exchange(port: int, requests: list[tuple[str, str, dict]]) -> list[tuple[int, bytes]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        out = []
        for path, host, extra in requests:
            head = f"GET {path} HTTP/1.1\r\nhost: {host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in extra.items())
            writer.write(head.encode() + b"\r\n")
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = raw.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            out.append((int(lines[0].split()[1]), body))
        writer.close()
        return out

    async def run():
        up = await asyncio.start_server(upstream, "127.0.0.1", 0)
        ports = await free_ports(3)
        (tmp_path / "rules.mdsl").write_text(RULES)
        cfg = tmp_path / "mosnx.yaml"
        cfg.write_text(SERVING.format(p0=ports[0], p1=ports[1], p2=ports[2], up=up.sockets[0].getsockname()[1]))
        w = Worker(str(cfg))
        w.loop = asyncio.get_running_loop()
        snap = w.build(1)
        before = fingerprint(snap)
        await w.apply(snap)
        try:
            shop = [("/health", "shop.test", {}), ("/old/a?b=1", "www.shop.test", {}),
                    ("/api/items", "shop.test", {}), ("/m/1", "shop.test", {}), ("/x", "shop.test", {})]
            rest = [("/p", "plain.test", {}), ("/s", "other", {"x-split": "1"}), ("/l", "other", {})]
            got = await exchange(ports[0], (shop + rest) * 2)
            got += await exchange(ports[1], [("/g", "h", {}), ("/g", "h", {"x-envoy-fault-abort-request": "418"}),
                                             ("/h", "h", {})])
            got += await exchange(ports[2], [("/b", "h", {})] * 3)
        finally:
            await w.drain(1.0)
            up.close()
        return snap, before, got

    snap, before, got = asyncio.run(run())
    assert [s for s, _ in got[:8]] == [200, 301, 200, 200, 200, 200, 200, 200]
    assert got[0][1] == b"ok" and got[2][1] == b"/items"         # the rewrite went upstream
    assert [s for s, _ in got[16:]] == [200, 418, 200, 200, 200, 200]
    express = memo.EXPRESS_RQ.value - express_before
    assert 0 < express < len(got), (express, len(got))
    # what the executor reads, once more by hand: vhost, route, chains, plain, describe
    for lst in snap.listeners.values():
        t = lst.routes
        t.describe(), t.clusters()
        for vh in t.vhosts:
            for r in vh.routes:
                ctx = request("/api/x" if r.name == "api" else "/", vh.domains[0].lstrip("*."))
                assert t.vhost_of(ctx.request) is vh or vh.domains != ("*",)
                vh.match(ctx)
                r.chain.request, r.chain.response, r.plain, r.action, r.pipeline, r.name, r.span
    snap.dump()
    after = fingerprint(snap)
    assert len(before) > 500
    assert after == before


def test_finalized_routes_vhosts_and_tables_refuse_assignment(tmp_path):
    from dataclasses import FrozenInstanceError

    from mosnx.runtime.pipeline import Pipeline
    snap = build_snapshot(write(tmp_path, CONFIG))
    listener = snap.listeners["ingress"]
    table = listener.routes
    vh = table.vhosts[0]
    route = vh.routes[0]
    assert route.plain is route.action                    # bound, and plain, at construction
    for obj, name, value in [(route, "plain", None), (route, "chain", Pipeline()), (route, "name", "x"),
                             (route, "action", route.action), (route, "index", 3), (route, "new", 1),
                             (vh, "chain", Pipeline()), (vh, "routes", ()), (vh, "_exact", {}),
                             (table, "only_vhost", None), (table, "vhosts", ()),
                             (listener, "routes", table), (snap, "listeners", {})]:
        with pytest.raises(FrozenInstanceError):
            setattr(obj, name, value)
    with pytest.raises(FrozenInstanceError):
        del route.plain
    assert route.plain is route.action and table.only_vhost is vh


def test_a_dump_is_the_callers_to_change(tmp_path):
    snap = build_snapshot(write(tmp_path, CONFIG))
    dump = snap.dump()
    dump["config"]["listeners"][0]["name"] = "changed"
    dump["config"]["clusters"].clear()
    assert snap.config.raw["listeners"][0]["name"] == "ingress"
    assert snap.config.raw["clusters"][0]["name"] == "web"
    assert snap.dump()["config"] == snap.config.raw


TWO = """\
listeners:
  - name: ingress
    address: 127.0.0.1:8080
    route: {cluster: web}
  - name: other
    address: 127.0.0.1:8081
    route: {cluster: api}
clusters:
  - name: web
    endpoints: ["127.0.0.1:9000"]
  - name: api
    endpoints: ["127.0.0.1:9001"]
"""


def test_a_build_given_the_last_keeps_the_listeners_whose_config_is_the_same_object(tmp_path):
    import dataclasses
    from mosnx.runtime.config import load_config
    config = load_config(write(tmp_path, TWO))
    first = build_snapshot(config, 1)
    assert first.reusable == {"ingress", "other"}
    # one listener's config replaced, a cluster added: the other listener is kept as built
    ingress = dataclasses.replace(config.listeners[0], port=8090)
    extra = dataclasses.replace(config.clusters[0], name="more")
    changed = dataclasses.replace(config, listeners=(ingress, config.listeners[1]),
                                  clusters=(*config.clusters, extra))
    second = build_snapshot(changed, 2, previous=first)
    assert second.listeners["other"] is first.listeners["other"]
    assert second.listeners["ingress"] is not first.listeners["ingress"]
    assert second.listeners["ingress"].config.port == 8090 and second.version == 2
    # read from the file again, every object is new: all is built
    again = build_snapshot(str(tmp_path / "mosnx.yaml"), 3, previous=second)
    assert all(again.listeners[n] is not second.listeners[n] for n in again.listeners)


def test_a_kept_listener_is_checked_again_when_a_cluster_goes(tmp_path):
    import dataclasses
    from mosnx.runtime.config import load_config
    config = load_config(write(tmp_path, TWO))
    first = build_snapshot(config, 1)
    gone = dataclasses.replace(config, clusters=config.clusters[:1])
    with pytest.raises(ConfigError) as e:
        build_snapshot(gone, 2, previous=first)
    assert 'unknown cluster "api"' in str(e.value.diagnostics[0])
    # another field of the config changed (not listeners or clusters): all is built
    other = dataclasses.replace(config, fast_path=not config.fast_path)
    third = build_snapshot(other, 3, previous=first)
    assert third.listeners["ingress"] is not first.listeners["ingress"]
