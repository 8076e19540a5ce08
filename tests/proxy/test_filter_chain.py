"""proxy/filter_chain.py: which chain a connection gets (Envoy's order, most specific
wins, no backtracking), the HTTP inspector, and Istio's sidecar inbound listener."""
from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from google.protobuf import json_format

from mosnx.proxy.filter_chain import Facts, inspect_http, ip_of, select
from mosnx.proxy.tcp.sni import NEED_MORE
from mosnx.runtime.envoy.findings import Findings, Sink
from mosnx.runtime.envoy.listener_chains import chain_matches, listener_filters
from mosnx.runtime.envoy.protos import LISTENER, ensure_type, listener_pb2
from mosnx.runtime.model import ChainMatch


class Chain(NamedTuple):
    name: str
    match: ChainMatch


def net(*cidrs: str) -> tuple:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


def facts(port: int = 8080, dst: str = "10.0.0.5", src: str = "10.0.0.9", sport: int = 40000, sni: str = "",
          transport: str = "raw_buffer", alpn: tuple[str, ...] = ()) -> Facts:
    return Facts(ip_of(dst), port, ip_of(src), sport, sni, transport, alpn)


CHAINS = {
    "any": ChainMatch(),
    "port8080": ChainMatch(destination_port=8080),
    "port8080_sni_a": ChainMatch(destination_port=8080, server_names=("a.example.com",)),
    "net8": ChainMatch(prefix_ranges=net("10.0.0.0/8")),
    "net16": ChainMatch(prefix_ranges=net("10.0.0.0/16", "192.168.0.0/16")),
    "sni_exact": ChainMatch(server_names=("www.example.com",)),
    "sni_wild": ChainMatch(server_names=("*.example.com",)),
    "sni_com": ChainMatch(server_names=("*.com",)),
    "tls": ChainMatch(transport_protocol="tls"),
    "raw": ChainMatch(transport_protocol="raw_buffer"),
    "alpn_h2": ChainMatch(application_protocols=("h2",)),
    "alpn_h1": ChainMatch(application_protocols=("http/1.1", "h2c")),
    "local": ChainMatch(source_type="local"),
    "external": ChainMatch(source_type="external"),
    "src_net": ChainMatch(source_prefix_ranges=net("10.0.0.9/32")),
    "src_port": ChainMatch(source_ports=(40000, 40001)),
}


def pick(names: list[str], f: Facts) -> str | None:
    got = select([Chain(n, CHAINS[n]) for n in names], f)
    return got.name if got is not None else None


@pytest.mark.parametrize("names, f, want", [
    # destination port: exact before any; a port nobody names goes to the port-less chains
    (["any", "port8080"], facts(port=8080), "port8080"),
    (["any", "port8080"], facts(port=9090), "any"),
    # the most specific step wins and the rest are dropped: no going back to "any"
    (["any", "port8080_sni_a"], facts(port=8080, sni="b.example.com", transport="tls"), None),
    (["any", "port8080_sni_a"], facts(port=8080, sni="a.example.com", transport="tls"), "port8080_sni_a"),
    # destination IP: the longest prefix
    (["any", "net8", "net16"], facts(dst="10.0.3.4"), "net16"),
    (["any", "net8", "net16"], facts(dst="10.9.3.4"), "net8"),
    (["net8", "net16"], facts(dst="172.16.0.1"), None),
    (["net8"], facts(dst="::1"), None),
    # server names: exact, then the longest wildcard, then none
    (["any", "sni_exact", "sni_wild", "sni_com"], facts(sni="www.example.com"), "sni_exact"),
    (["any", "sni_exact", "sni_wild", "sni_com"], facts(sni="api.example.com"), "sni_wild"),
    (["any", "sni_exact", "sni_wild", "sni_com"], facts(sni="a.b.example.com"), "sni_wild"),
    (["any", "sni_exact", "sni_wild", "sni_com"], facts(sni="example.org.com"), "sni_com"),
    (["any", "sni_exact", "sni_wild"], facts(sni="example.org"), "any"),
    (["sni_wild"], facts(sni=""), None),
    # transport protocol, then application protocols in the client's order
    (["tls", "raw"], facts(transport="tls"), "tls"),
    (["tls", "raw"], facts(), "raw"),
    (["any", "alpn_h2", "alpn_h1"], facts(alpn=("h2", "http/1.1")), "alpn_h2"),
    (["any", "alpn_h2", "alpn_h1"], facts(alpn=("http/1.1", "h2")), "alpn_h1"),
    (["any", "alpn_h2", "alpn_h1"], facts(alpn=("h2c",)), "alpn_h1"),
    (["any", "alpn_h2", "alpn_h1"], facts(alpn=("spdy/3",)), "any"),
    # source type, source address, source port
    (["local", "external"], facts(src="127.0.0.1"), "local"),
    (["local", "external"], facts(src="10.0.0.5"), "local"),      # the address it reached
    (["local", "external"], facts(src="10.0.0.9"), "external"),
    (["any", "src_net"], facts(src="10.0.0.9"), "src_net"),
    (["any", "src_net"], facts(src="10.0.0.10"), "any"),
    (["any", "src_port"], facts(sport=40001), "src_port"),
    (["src_port"], facts(sport=40002), None),
    # an earlier criterion decides before a later one is looked at
    (["port8080", "sni_exact"], facts(port=8080, sni="www.example.com"), "port8080"),
    (["any", "any"], facts(), "any"),
])
def test_selection_order(names, f, want):
    assert pick(names, f) == want


def test_http_inspector():
    assert inspect_http(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == "http/1.1"
    assert inspect_http(b"POST /a?b HTTP/1.0\r\n") == "http/1.0"
    assert inspect_http(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") == "h2c"
    assert inspect_http(b"PRI * HTTP/2") is NEED_MORE
    assert inspect_http(b"GE") is NEED_MORE
    assert inspect_http(b"GET /long/path/without/end") is NEED_MORE
    assert inspect_http(b"\x16\x03\x01") is None
    assert inspect_http(b"SSH-2.0-OpenSSH\r\n") is None
    assert inspect_http(b"GET / HTTP/2.0\r\n") is None


# ---------------------------------------------------------------- Istio's sidecar
_REL = Path("shared/testdata/istio/istioctl/pkg/authz/testdata/configdump.yaml")
_ROOT = Path(__file__).resolve().parents[2]
DUMPS = [_ROOT.parent / _REL, _ROOT.parent.parent / _REL]
DUMP = next((p for p in DUMPS if p.is_file()), None)


@pytest.fixture(scope="module")
def virtual_inbound():
    """Istio's inbound listener (port 15006) from a real sidecar's config dump: its
    chains' names and matches and its listener filters (the chains' network filters,
    Istio's own, are not needed to choose a chain and are left out)."""
    if DUMP is None:
        pytest.skip(f"Istio's config dump is absent (looked in {', '.join(map(str, DUMPS))})")
    dump = yaml.safe_load(DUMP.read_text())
    for c in dump["configs"]:
        for entry in c.get("dynamic_listeners", ()):
            lst = entry["active_state"]["listener"]
            if lst["name"] == "virtualInbound":
                only = {"name": lst["name"], "address": lst["address"],
                        "listener_filters": lst["listener_filters"],
                        "filter_chains": [{"name": fc.get("name", ""), "filter_chain_match": fc.get("filter_chain_match", {})}
                                          for fc in lst["filter_chains"]]}
                for lf in lst["listener_filters"]:
                    ensure_type(lf["typed_config"]["@type"])
                msg = json_format.ParseDict(json.loads(json.dumps(only)), listener_pb2.Listener())
                sink = Sink()
                f = Findings(LISTENER, "virtualInbound", "", sink)
                return msg, chain_matches(msg, f), listener_filters(msg, f), sink
    pytest.fail("the config dump has no virtualInbound listener")


@pytest.mark.parametrize("port, transport, alpn, want", [
    (9080, "raw_buffer", ("http/1.1",), ("virtualInbound-catchall-http", 2)),   # plaintext HTTP/1.1
    (9080, "raw_buffer", ("h2c",), ("virtualInbound-catchall-http", 2)),        # plaintext h2c
    (9080, "raw_buffer", (), ("virtualInbound", 4)),                            # plaintext, not HTTP
    (9080, "tls", ("istio-peer-exchange", "istio"), ("virtualInbound", 3)),     # mTLS TCP between sidecars
    (9080, "tls", ("istio-http/1.1",), ("virtualInbound-catchall-http", 1)),    # mTLS HTTP between sidecars
    (9080, "tls", ("h2", "http/1.1"), ("virtualInbound", 5)),                   # TLS from a non-mesh client
    (15006, "raw_buffer", (), ("virtualInbound-blackhole", 0)),                 # straight at the inbound port
    (80, "raw_buffer", (), ("0.0.0.0_80", 7)),
    (80, "tls", ("istio-h2",), ("0.0.0.0_80", 6)),
    # port 80 has chains of its own: TLS without Istio's ALPN matches none, and
    # does not fall back to the catch-all chains
    (80, "tls", ("h2",), None),
])
def test_istio_virtual_inbound(virtual_inbound, port, transport, alpn, want):
    msg, matches, filters, _ = virtual_inbound
    assert len(matches) == len(msg.filter_chains) == 8
    # what the listener filters would learn at this port: tls_inspector is off for
    # 15006, http_inspector for 80 and 15006
    runs = {lf.kind for lf in filters if lf.runs_for(port)}
    if "tls_inspector" not in runs:
        transport = "raw_buffer"
    if "http_inspector" not in runs and transport == "raw_buffer":
        alpn = ()
    chains = [Chain(f"{name}@{i}", m) for i, (name, m) in enumerate(matches)]
    got = select(chains, facts(port=port, dst="10.244.0.7", src="10.244.0.9", transport=transport, alpn=alpn))
    if want is None:
        assert got is None
    else:
        assert got is not None and got.name == f"{want[0]}@{want[1]}"


def test_istio_listener_filters(virtual_inbound):
    msg, _, filters, sink = virtual_inbound
    assert [(lf.kind, lf.disabled_ports) for lf in filters] == [
        ("tls_inspector", ((15006, 15007),)), ("http_inspector", ((80, 81), (15006, 15007)))]
    # original_dst is applied (the listener's original_dst flag), not warned about
    from mosnx.runtime.envoy.listener_chains import has_original_dst
    assert has_original_dst(msg)
    assert not any("original_dst" in w.message for w in sink.warnings)


def test_ipv6_destination_misses_ipv4_ranges(virtual_inbound):
    _, matches, _, _ = virtual_inbound
    chains = [Chain(n, m) for n, m in matches]
    assert select(chains, facts(port=9080, dst="fd00::7", src="fd00::9")) is None


def test_http_inspector_answers_any_bytes_with_a_verdict():
    from hypothesis import given, settings, strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=64) | st.sampled_from([b"GET / HTTP/1.1\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]))
    def check(buf):
        got = inspect_http(buf)
        assert got is NEED_MORE or got in (None, "h2c", "http/1.1", "http/1.0")
    check()


CHAINS_YAML = """\
listeners:
  - name: edge
    address: 127.0.0.1:PORT
    listener_filters: http_inspector
    filter_chains:
      - name: web
        match: {application_protocols: [http/1.1]}
        route: {cluster: web}
clusters:
  - name: web
    endpoints: ["127.0.0.1:9"]
"""


def test_a_worker_binds_the_listener_once_and_dispatches_to_its_chain(tmp_path):
    """Only the listener is bound (a chain's stack bound too would take connections
    past the chain selection); an HTTP request reaches the chain's route; a reload
    that changes a chain keeps the same socket."""
    import asyncio
    import socket

    from mosnx.proxy.worker import Worker
    path = tmp_path / "m.yaml"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path.write_text(CHAINS_YAML.replace("PORT", str(port)))

    async def main():
        w = Worker(str(path))
        w.loop = asyncio.get_running_loop()
        await w.apply(w.build(1))
        bound = dict(w.servers)
        r, wr = await asyncio.open_connection("127.0.0.1", port)
        wr.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
        wr.close()
        path.write_text(CHAINS_YAML.replace("PORT", str(port)).replace("http/1.1]", "http/1.1, h2c]"))
        reply = await w.reload(2)
        same = w.servers["edge"][1] is bound["edge"][1]
        await w.drain(0)
        return set(bound), head, reply, same
    bound, head, reply, same = asyncio.run(main())
    assert bound == {"edge"}
    assert head.startswith(b"HTTP/1.1 503")            # the chain's route: a cluster nobody answers for
    assert reply["ok"] and same
