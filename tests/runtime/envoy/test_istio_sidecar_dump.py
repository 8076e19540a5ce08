"""Every listener of a real Istio sidecar's config dump decodes; what translates,
what warns and what is refused, counted per listener.

The dump (istioctl's authz testdata: 27 dynamic and 2 static listeners as istiod
generated them) is read from the shared test data at test time. Each listener is
decoded from its JSON text, then translated with an empty RouteConfiguration for
the name it asks RDS for, so what is measured is decode and per-filter translation.
A listener with several chains is served chain by chain (its stacks); one that is
refused has each chain translated alone too, to say which refuses it. The table
this prints is the one in docs/istio.md.
"""
from __future__ import annotations

import collections
import json
import pathlib
import re

import pytest

from mosnx.runtime.envoy.decode import parse
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink
from mosnx.runtime.envoy.listeners import translate_listener
from mosnx.runtime.envoy.protos import LISTENER, RESOURCE_TYPES, HttpConnectionManager
from mosnx.runtime.routes import RouteTable

DUMP = pathlib.Path(__file__).resolve().parents[4] / "shared" / "testdata" / "istio" / "istioctl" / "pkg" / \
    "authz" / "testdata" / "configdump.yaml"
if not DUMP.exists():
    DUMP = pathlib.Path("/work/shared/testdata/istio/istioctl/pkg/authz/testdata/configdump.yaml")

pytestmark = pytest.mark.skipif(not DUMP.exists(), reason=f"the Istio sidecar dump is not at {DUMP}")


def _listeners() -> list[dict]:
    dump = json.loads(DUMP.read_text())
    cfg = next(c for c in dump["configs"] if c["@type"].endswith("ListenersConfigDump"))
    out = []
    for i, s in enumerate(cfg.get("static_listeners", [])):
        lst = dict(s["listener"])
        lst.pop("@type", None)
        lst.setdefault("name", f"static[{i}]")
        out.append(lst)
    for d in cfg.get("dynamic_listeners", []):
        lst = dict(d["active_state"]["listener"])
        lst.pop("@type", None)
        out.append(lst)
    return out


def _row(data: dict) -> dict:
    msg, errs = parse(data, RESOURCE_TYPES[LISTENER], None, (), data["name"])
    assert msg is not None, [str(e) for e in errs]       # decodes: no X003
    sink = Sink()
    routes = {n: RouteTable(()) for n in _rds_names(msg)}
    outcome = "translates"
    why = ""
    lc = None
    try:
        lc = translate_listener(msg, Findings(LISTENER, data["name"], "", sink), routes)
    except Rejected as e:
        why = e.rejection.message
        outcome = "refused"
    row = {"name": data["name"], "chains": len(data.get("filter_chains", [])), "outcome": outcome, "why": why,
           "warnings": [d.message for d in sink.warnings], "config": lc, "chain_rows": []}
    if outcome == "refused" and row["chains"] > 1:
        # what refuses it: each chain on its own
        per = [_row({**data, "name": f"{data['name']}#{i}", "filter_chains": [fc]})
               for i, fc in enumerate(data["filter_chains"])]
        row["chain_rows"] = per
        row["why"] = (f"{why}; alone, {sum(r['outcome'] == 'translates' for r in per)} of {len(per)} chains translate"
                      + "".join(f"; #{i}: {r['why'][:110]}" for i, r in enumerate(per) if r["why"]))
    return row


def _rds_names(msg) -> set[str]:
    """The RouteConfigurations every chain of the listener asks RDS for."""
    names = set()
    chains = list(msg.filter_chains) + ([msg.default_filter_chain] if msg.HasField("default_filter_chain") else [])
    for fc in chains:
        for nf in fc.filters:
            if nf.typed_config.type_url.endswith(".HttpConnectionManager"):
                hcm = HttpConnectionManager()
                nf.typed_config.Unpack(hcm)
                if hcm.WhichOneof("route_specifier") == "rds":
                    names.add(hcm.rds.route_config_name)
    return names


def _kinds(lc) -> list[list[str]]:
    return [[f.kind for f in st.filters] if st.protocol == "http" else ["tcp" + (
        "+istio_stats" if "istio_stats" in st.options else "")] for st in lc.stacks()]


def _reasons(warnings: list[str]) -> collections.Counter:
    """Warnings by what they are about: the Istio extension, else the field."""
    c: collections.Counter = collections.Counter()
    for w in warnings:
        m = re.search(r"(istio\.\w+|istio_authn)", w)
        if m is None:
            m = re.search(r'" ([\w.\[\]]+):', w)
        c[m.group(1) if m else w[:40]] += 1
    return c


def test_every_listener_of_the_sidecar_dump_decodes_and_is_accounted_for():
    rows = [_row(d) for d in _listeners()]
    assert len(rows) == 29
    print("\n| listener | chains | outcome | stacks | X001 warnings | why refused |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ws = ", ".join(f"{k} ×{v}" for k, v in sorted(_reasons(r["warnings"]).items()))
        stacks = _kinds(r["config"]) if r["config"] is not None else ""
        print(f"| {r['name']} | {r['chains']} | {r['outcome']} | {stacks} | {len(r['warnings'])}: {ws} "
              f"| {r['why'][:1200]} |")
    totals = collections.Counter(r["outcome"] for r in rows)
    print(dict(totals))
    # the per-service outbound TCP listeners: istio.stats + tcp_proxy, translated with a warning
    tcp = [r for r in rows if r["config"] is not None and r["config"].protocol == "tcp"]
    assert len(tcp) == 10
    assert all(r["config"].options == {"traffic_direction": "OUTBOUND", "istio_stats": {}} for r in tcp)
    # no listener (nor chain) is refused for an Istio extension
    for r in rows + [c for r in rows for c in r["chain_rows"]]:
        assert not re.search(r"istio|stats\.PluginConfig|metadataexchange|alpn|grpc_stats", r["why"]), r
    # virtualOutbound: two tcp_proxy chains (passthrough), each with Istio's TCP metrics
    out = next(r for r in rows if r["name"] == "virtualOutbound")
    assert out["outcome"] == "translates" and _kinds(out["config"]) == [["tcp+istio_stats"], ["tcp+istio_stats"]]
    # virtualInbound's chains carry the network metadata exchange (served on its tcp_proxy
    # chains) and istio_authn (recognised, warned)
    inbound = next(r for r in rows if r["name"] == "virtualInbound")
    warned = inbound["warnings"] + [w for c in inbound["chain_rows"] for w in c["warnings"]]
    assert not any("metadata_exchange" in w for w in warned)
    assert any("istio_authn is recognised" in w for w in warned)
    assert totals["translates"] >= 25


def test_the_outbound_http_listener_runs_peer_metadata_and_istio_stats():
    data = next(d for d in _listeners() if d["name"] == "0.0.0.0_9080")
    msg, _ = parse(data, RESOURCE_TYPES[LISTENER], None, (), data["name"])
    sink = Sink()
    lc = translate_listener(msg, Findings(LISTENER, data["name"], "", sink),
                            {n: RouteTable(()) for n in _rds_names(msg)})
    [stack] = [st for st in lc.stacks() if st.protocol == "http"]     # its HTTP chain (beside the default)
    kinds = [s.kind for s in stack.filters]
    assert kinds == ["peer_metadata", "grpc_stats", "fault", "cors", "istio_stats"], kinds
    grpc = next(s for s in stack.filters if s.kind == "grpc_stats")
    assert grpc.config == {"emit_filter_state": True, "stats_for_all_methods": False}
    stats = next(s for s in stack.filters if s.kind == "istio_stats")
    assert stats.config == {}          # istiod's empty PluginConfig: the standard metrics
    assert stack.options["traffic_direction"] == "OUTBOUND"
    text = "\n".join(d.message for d in sink.warnings)
    assert "istio.alpn" not in text
    # istio.alpn's overrides, for the upstream TLS to an Istio peer (proxy.tls.istio_alpn)
    assert stack.options["istio_alpn"]["HTTP11"] == ("istio-http/1.1", "istio", "http/1.1")
