"""The metadata exchange: a Struct round-trips through the header; a sidecar sets its
own headers toward the peer and strips the peer's before the application; a malformed
header from a peer never fails the request (it counts, the peer stays unknown)."""
from __future__ import annotations

import base64

import pytest
from google.protobuf import struct_pb2
from hypothesis import given, settings, strategies as st

from mosnx.runtime.context import ResponseHead
from mosnx.runtime.filters.peer_metadata import (DOWNSTREAM_PEER, UPSTREAM_PEER, PeerMetadataError, decode,
                                                 encode)
from mosnx.runtime.headers import Headers

from .conftest import build, req

PRODUCTPAGE = {"NAME": "productpage-v1-123", "NAMESPACE": "default", "WORKLOAD_NAME": "productpage-v1",
               "LABELS": {"app": "productpage", "version": "v1"}, "CLUSTER_ID": "Kubernetes",
               "MESH_ID": "cluster.local", "ISTIO_VERSION": "1.24.0", "OWNER": "kubernetes://apis/apps/v1/x",
               "APP_CONTAINERS": ["productpage", "sidecar"], "INTERCEPTION_MODE": "REDIRECT"}


def test_the_header_is_base64_of_a_serialized_struct_of_the_exchanged_fields():
    value = encode(PRODUCTPAGE)
    s = struct_pb2.Struct()
    s.ParseFromString(base64.b64decode(value))
    assert s["WORKLOAD_NAME"] == "productpage-v1" and s["LABELS"]["app"] == "productpage"
    assert s["APP_CONTAINERS"] == "productpage,sidecar"
    assert "INTERCEPTION_MODE" not in s.fields          # not one Istio exchanges
    back = decode(value)
    assert back == {k: v for k, v in PRODUCTPAGE.items() if k != "INTERCEPTION_MODE"} | {
        "APP_CONTAINERS": "productpage,sidecar"}
    assert decode(value.rstrip(b"=")) == back            # padding is optional, as Istio's decoder


@pytest.mark.parametrize("bad", [b"%%%not-base64", base64.b64encode(b"\xff\xff\xff\x0f"), b"A" * 20000])
def test_a_malformed_value_is_a_peer_metadata_error(bad):
    with pytest.raises(PeerMetadataError):
        decode(bad)


def test_values_of_other_kinds_are_left_out_never_converted():
    s = struct_pb2.Struct()
    s.update({"NAME": float("nan"), "NAMESPACE": "default", "WORKLOAD_NAME": {"x": 1},
              "LABELS": {"app": "a", "n": float("inf"), "l": [1]}, "CLUSTER_ID": None})
    assert decode(base64.b64encode(s.SerializeToString())) == {"NAMESPACE": "default", "LABELS": {"app": "a"}}
    deep = struct_pb2.Struct()
    cur = deep
    for _ in range(200):
        cur = cur.get_or_create_struct("LABELS")
    with pytest.raises(PeerMetadataError):
        decode(base64.b64encode(deep.SerializeToString()))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_the_own_error(raw):
    for value in (raw, base64.b64encode(raw)):
        try:
            assert isinstance(decode(value), dict)
        except PeerMetadataError:
            pass


_JSON = st.recursive(st.none() | st.booleans() | st.floats() | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                     max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["NAME", "LABELS", "WORKLOAD_NAME", "PLATFORM_METADATA", "x"]), _JSON,
                       max_size=5))
def test_any_struct_from_a_peer_decodes_to_strings_and_string_maps(fields):
    s = struct_pb2.Struct()
    s.update(fields)
    got = decode(base64.b64encode(s.SerializeToString()))
    for k, v in got.items():
        assert isinstance(v, dict) if k in ("LABELS", "PLATFORM_METADATA") else isinstance(v, str)


def outbound():
    return build("peer_metadata", {"node": {"id": "sidecar~10.0.0.1~productpage-v1-123.default~default.svc.cluster.local",
                                            "metadata": PRODUCTPAGE}, "direction": "OUTBOUND"})


def test_outbound_sets_its_own_on_the_request_and_reads_and_strips_the_upstream_peer():
    f, _ = outbound()
    ctx = req({"host": "reviews"})
    assert f.on_request(ctx) is None
    h = ctx.request.headers
    assert decode(h.getb(b"x-envoy-peer-metadata"))["WORKLOAD_NAME"] == "productpage-v1"
    assert h.get("x-envoy-peer-metadata-id").startswith("sidecar~10.0.0.1~")
    reviews = encode({"WORKLOAD_NAME": "reviews-v2", "NAMESPACE": "default"})
    ctx.response = ResponseHead(200, Headers.from_pairs([("x-envoy-peer-metadata", reviews.decode()),
                                                         ("x-envoy-peer-metadata-id", "sidecar~r")]))
    f.on_response(ctx)
    assert ctx.filter_state[UPSTREAM_PEER] == {"WORKLOAD_NAME": "reviews-v2", "NAMESPACE": "default"}
    assert not ctx.response.headers.has(b"x-envoy-peer-metadata")       # the application never sees them
    assert not ctx.response.headers.has(b"x-envoy-peer-metadata-id")


def test_inbound_strips_the_peer_from_the_request_and_answers_only_a_peer():
    f, _ = build("peer_metadata", {"node": {"id": "sidecar~r", "metadata": {"WORKLOAD_NAME": "reviews-v2"}},
                                   "direction": "INBOUND"})
    ctx = req({"x-envoy-peer-metadata": encode(PRODUCTPAGE).decode(), "x-envoy-peer-metadata-id": "sidecar~p"})
    f.on_request(ctx)
    assert not ctx.request.headers.has(b"x-envoy-peer-metadata")
    assert not ctx.request.headers.has(b"x-envoy-peer-metadata-id")
    assert ctx.filter_state[DOWNSTREAM_PEER]["WORKLOAD_NAME"] == "productpage-v1"
    ctx.response = ResponseHead(200, Headers())
    f.on_response(ctx)
    assert decode(ctx.response.headers.getb(b"x-envoy-peer-metadata")) == {"WORKLOAD_NAME": "reviews-v2"}
    plain = req()
    f.on_request(plain)
    plain.response = ResponseHead(200, Headers())
    f.on_response(plain)
    assert not plain.response.headers.has(b"x-envoy-peer-metadata")     # a plain client gets nothing


def test_a_malformed_peer_header_counts_and_the_request_goes_on():
    f, stats = build("peer_metadata", {"node": {"id": "n", "metadata": {}}, "direction": "INBOUND"})
    ctx = req({"x-envoy-peer-metadata": "!!garbage!!", "x-envoy-peer-metadata-id": "x"})
    assert f.on_request(ctx) is None
    assert DOWNSTREAM_PEER not in (ctx.filter_state or {})
    assert not ctx.request.headers.has(b"x-envoy-peer-metadata")
    assert stats.counters["peer_metadata.header_decode_failed"].value == 1


def test_the_node_comes_from_the_bootstrap_when_the_filter_names_none():
    from mosnx.runtime.model import Config, ListenerConfig
    from mosnx.runtime.registry import BuildContext, filter_factory
    lc = ListenerConfig("l", "127.0.0.1", 1, options={"traffic_direction": "OUTBOUND"})
    cfg = Config("<t>", None, (lc,), (), raw={"node": {"id": "sidecar~1", "metadata": {"WORKLOAD_NAME": "w"}}})
    f = filter_factory("peer_metadata")("peer_metadata", {}, BuildContext(cfg, lc, set(), {}))
    ctx = req()
    f.on_request(ctx)
    assert decode(ctx.request.headers.getb(b"x-envoy-peer-metadata")) == {"WORKLOAD_NAME": "w"}


@pytest.mark.parametrize("cfg", [{"direction": "SIDEWAYS"}, {"node": "x"}, {"nod": {}},
                                 {"node": {"metadata": [1]}}])
def test_bad_settings_are_value_errors(cfg):
    with pytest.raises(ValueError):
        build("peer_metadata", cfg)


def test_a_peer_header_seen_again_is_taken_from_the_lent_memo():
    from mosnx.runtime.model import Config, ListenerConfig
    from mosnx.runtime.registry import BuildContext, Services, filter_factory

    class Table:
        def __init__(self):
            self.data, self.puts = {}, 0

        def get(self, key):
            return self.data.get(key)

        def put(self, key, value):
            self.puts += 1
            self.data[key] = value
            return value
    table = Table()
    lent: list = []
    services = Services(memo=lambda name, bound, doc: lent.append((name, bound)) or table)
    lc = ListenerConfig("l", "127.0.0.1", 1)
    f = filter_factory("peer_metadata")("peer_metadata", {"node": {"id": "n", "metadata": {}}, "direction": "INBOUND"},
                                        BuildContext(Config("<t>", None, (lc,), ()), lc, set(), {}, services=services))
    peer = encode({"WORKLOAD_NAME": "productpage-v1"}).decode()
    for _ in range(3):
        ctx = req({"x-envoy-peer-metadata": peer, "x-envoy-peer-metadata-id": "p"})
        f.on_request(ctx)
        assert ctx.filter_state[DOWNSTREAM_PEER] == {"WORKLOAD_NAME": "productpage-v1"}
    assert lent == [("istio.peer_metadata", 1024)] and table.puts == 1     # decoded once, then remembered
    bad = req({"x-envoy-peer-metadata": "!!garbage!!"})
    f.on_request(bad)
    assert table.puts == 1                                                   # a bad header is never remembered
