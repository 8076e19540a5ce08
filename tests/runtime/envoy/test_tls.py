"""Transport sockets and secrets: an UpstreamTlsContext becomes a cluster's ClientTls
(SNI, certificates, CA, SAN matchers, ALPN, versions), transport_socket_matches pick
per endpoint by metadata, a DownstreamTlsContext becomes a listener's ServerTls, and
SDS secrets hold a listener or cluster back until they come (warming, no Rejection)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e"))
from envoy_samples import C, E, L, msg  # noqa: E402
from pemkit import PemCA  # noqa: E402
from tls_samples import (DOWN, RAW, SDS_ADS, SPIFFE, UP, _b64, _base, _cluster, _downstream,  # noqa: E402,F401
                         _ep, _istio_upstream, _listener, _secret_cert, _upstream)

from mosnx.runtime.config.protocols import ClientTls, Pem, SanMatcher, ServerTls  # noqa: E402
from mosnx.runtime.envoy.apply import apply, needed_names  # noqa: E402
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink  # noqa: E402
from mosnx.runtime.envoy.protos import SECRET as S  # noqa: E402
from mosnx.runtime.envoy.tls import upstream_tls  # noqa: E402
from mosnx.runtime.envoy.clusters import translate_cluster  # noqa: E402
from mosnx.runtime.envoy.listeners import translate_listener  # noqa: E402


@pytest.fixture(scope="module")
def ca() -> PemCA:
    return PemCA()


def _reject_message(fn) -> str:
    with pytest.raises(Rejected) as e:
        fn()
    return str(e.value)


def test_an_upstream_tls_context_becomes_the_cluster_tls(ca):
    c = translate_cluster(msg(C, _cluster(transport_socket=_upstream(ca))), Findings(C, "reviews"))
    tls = c.options["tls"]
    assert isinstance(tls, ClientTls)
    assert tls.sni == "outbound_.9080_._.reviews.default.svc.cluster.local"
    assert isinstance(tls.cert, Pem) and b"BEGIN CERTIFICATE" in tls.cert.data
    assert isinstance(tls.key, Pem) and b"PRIVATE KEY" in tls.key.data and "PRIVATE" not in repr(tls.key)
    assert isinstance(tls.ca, Pem) and tls.ca.data == ca.pem
    assert tls.alpn == ("istio-peer-exchange", "istio")
    assert (tls.min_version, tls.max_version) == ("1.2", "1.3")
    assert tls.verify and not tls.verify_hostname       # Envoy checks SANs, never the SNI as a host name
    assert tls.san == (SanMatcher("URI", "exact", SPIFFE), SanMatcher("DNS", "suffix", ".svc.cluster.local"),
                       SanMatcher("URI", "safe_regex", "spiffe://.*/sa/r.*"))


def test_without_a_validation_context_nothing_is_verified_as_in_envoy(ca):
    ts = {"name": "tls", "typed_config": {"@type": UP, "sni": "x"}}
    tls = upstream_tls(msg(C, _cluster(transport_socket=ts)).transport_socket, Findings(C, "x"))
    assert tls is not None and not tls.verify and tls.cert is None
    raw = {"name": "raw", "typed_config": {"@type": RAW}}
    assert "tls" not in translate_cluster(msg(C, _cluster(transport_socket=raw)), Findings(C, "x")).options


@pytest.mark.parametrize("common, why", [
    ({"validation_context": {"match_typed_subject_alt_names": [{"san_type": "URI", "matcher": {"exact": "x"}}]}},
     "without a trusted CA"),
    ({"validation_context": {"trusted_ca": {"filename": "/ca.pem"}, "verify_certificate_hash": ["a" * 64]}},
     "verify_certificate_hash"),
    ({"tls_certificates": [{"certificate_chain": {"inline_string": "not a certificate"},
                            "private_key": {"inline_string": "nor a key"}}]}, "not PEM"),
    ({"tls_params": {"tls_maximum_protocol_version": "TLSv1_1"}}, "highest version"),
])
def test_what_mosnx_cannot_enforce_is_refused(ca, common, why):
    c = msg(C, _cluster(transport_socket=_upstream(ca, common=common)))
    assert why in _reject_message(lambda: translate_cluster(c, Findings(C, "reviews")))


def test_another_transport_socket_is_refused():
    ts = {"name": "alts", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.alts.v3.Alts"}}
    m = _reject_message(lambda: translate_cluster(msg(C, _cluster(transport_socket=ts)), Findings(C, "x")))
    assert "transport_socket" in m and "Alts is not supported" in m


def test_transport_socket_matches_pick_per_endpoint_by_metadata(ca):
    d = _cluster(transport_socket_matches=[
        {"name": "tlsMode-istio", "match": {"tlsMode": "istio"}, "transport_socket": _upstream(ca)},
        {"name": "tlsMode-disabled", "match": {}, "transport_socket": {
            "name": "envoy.transport_sockets.raw_buffer", "typed_config": {"@type": RAW}}}])
    d["load_assignment"]["endpoints"][0]["lb_endpoints"] = [
        _ep(9080, {"tlsMode": "istio"}), _ep(9081), _ep(9082, {"tlsMode": "disabled"})]
    c = translate_cluster(msg(C, d), Findings(C, "reviews"))
    matches = c.options["tls_matches"]
    assert isinstance(matches[0][1], ClientTls) and matches[1][1] is None
    assert [e.tls_match for e in c.endpoints] == [0, 1, 1]       # {} matches every endpoint
    assert "tls" not in c.options                                 # no transport_socket of its own


def test_a_match_on_a_nan_or_infinite_number_is_refused_and_such_metadata_matches_nothing(ca):
    for bad in (float("nan"), float("inf")):
        d = _cluster(transport_socket_matches=[{"name": "m", "match": {"tlsMode": bad},
                                                "transport_socket": _upstream(ca)}])
        m = _reject_message(lambda: translate_cluster(msg(C, d), Findings(C, "reviews")))
        assert "NaN or infinite" in m
    d = _cluster(transport_socket_matches=[{"name": "m", "match": {"tlsMode": "istio"},
                                            "transport_socket": _upstream(ca)}])
    d["load_assignment"]["endpoints"][0]["lb_endpoints"] = [_ep(9080, {"tlsMode": float("nan")}),
                                                            _ep(9081, {"tlsMode": "istio"})]
    c = translate_cluster(msg(C, d), Findings(C, "reviews"))
    assert [e.tls_match for e in c.endpoints] == [None, 0]


def test_an_eds_endpoint_picks_its_socket_when_it_comes(ca):
    d = {"name": "reviews", "type": "EDS", "eds_cluster_config": {"eds_config": {"ads": {}}},
         "transport_socket_matches": [{"name": "m", "match": {"tlsMode": "istio"},
                                       "transport_socket": _upstream(ca)}]}
    cla = msg(E, {"cluster_name": "reviews", "endpoints": [{"lb_endpoints": [
        _ep(9080, {"tlsMode": "istio"}), _ep(9081)]}]})
    c = translate_cluster(msg(C, d), Findings(C, "reviews"), cla)
    assert [e.tls_match for e in c.endpoints] == [0, None]


def test_a_downstream_tls_context_becomes_the_listener_tls(ca):
    lc = translate_listener(msg(L, _listener(_downstream(ca, require_client_certificate=True))), Findings(L, "in"))
    tls = lc.options["tls"]
    assert isinstance(tls, ServerTls) and isinstance(tls.cert, Pem) and isinstance(tls.key, Pem)
    assert tls.require_client_cert and isinstance(tls.client_ca, Pem)
    assert tls.client_san == (SanMatcher("URI", "prefix", "spiffe://cluster.local/"),)
    assert tls.alpn == ("h2", "http/1.1")


def test_a_listener_tls_needs_a_certificate_and_may_front_tcp_proxy(ca):
    no_cert = _downstream(ca, common={"tls_certificates": []})
    assert "needs a certificate" in _reject_message(
        lambda: translate_listener(msg(L, _listener(no_cert)), Findings(L, "in")))
    lc = translate_listener(msg(L, _listener(_downstream(ca), "tcp")), Findings(L, "in"))
    assert lc.protocol == "tcp" and lc.options["tls"].cert      # terminated, then proxied as plaintext


# ---- generated input ----

from hypothesis import given, strategies as st  # noqa: E402
from test_decode_generated import SETTINGS, _mutate, _paths, values  # noqa: E402

from mosnx.runtime.envoy.decode import parse  # noqa: E402
from mosnx.runtime.envoy.protos import RESOURCE_TYPES  # noqa: E402

_CA = PemCA()
_TLS_DOCS = {
    C: _cluster(transport_socket=_istio_upstream(), transport_socket_matches=[
        {"name": "m", "match": {"tlsMode": "istio"}, "transport_socket": _upstream(_CA)}]),
    L: _listener(_downstream(_CA, require_client_certificate=True)),
    S: _secret_cert(_CA),
}
_TLS_PATHS = [(t, p) for t, d in _TLS_DOCS.items() for p in _paths(d)[1:]]


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(_TLS_PATHS), st.sampled_from(["replace", "drop", "add"]), values,
                          st.text(min_size=1, max_size=8)), min_size=1, max_size=3))
def test_mutated_tls_resources_are_applied_or_rejected(mutations):
    docs = dict(_TLS_DOCS)
    for (t, path), how, value, key in mutations:
        try:
            docs[t] = _mutate(docs[t], path, how, value, key)
        except (KeyError, IndexError, TypeError):
            continue
    resources: dict = {}
    for t, d in docs.items():
        m, errors = parse(d, RESOURCE_TYPES[t], None)
        if m is None:
            assert errors
            continue
        resources.setdefault(t, {})[m.name] = m
    resources.setdefault(S, {})["ROOTCA"] = msg(S, {"name": "ROOTCA", "validation_context": {
        "trusted_ca": {"inline_string": _CA.pem.decode()}}})
    needed_names(resources)
    _, rejected = apply(_base(), resources, Sink())
    for r in rejected:
        assert r.type_url in RESOURCE_TYPES and r.message
