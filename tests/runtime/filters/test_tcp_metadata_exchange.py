"""runtime/filters/tcp_metadata_exchange.py: Istio's TCP metadata exchange preamble,
written and read back whole, in pieces, and when it is missing or malformed."""
from __future__ import annotations

import struct
from types import SimpleNamespace

from google.protobuf import any_pb2, struct_pb2

from mosnx.runtime.filters import tcp_metadata_exchange as mx

NODE = {"WORKLOAD_NAME": "reviews-v2", "NAMESPACE": "default", "LABELS": {"app": "reviews", "version": "v2"},
        "APP_CONTAINERS": ["reviews", "sidecar"], "NOT_EXCHANGED": "x"}
ID = "sidecar~10.0.0.2~reviews-v2-1.default~default.svc.cluster.local"


def test_the_preamble_is_istios_header_and_an_any_of_a_struct():
    out = mx.encode(ID, NODE)
    magic, size = struct.unpack_from("!II", out)
    assert magic == 0x3D230467 and size == len(out) - 8
    a = any_pb2.Any.FromString(out[8:])
    assert a.type_url == "type.googleapis.com/google.protobuf.Struct"
    s = struct_pb2.Struct.FromString(a.value)
    assert s.fields["x-envoy-peer-metadata-id"].string_value == ID
    md = s.fields["x-envoy-peer-metadata"].struct_value
    assert md.fields["WORKLOAD_NAME"].string_value == "reviews-v2"
    assert md.fields["APP_CONTAINERS"].string_value == "reviews,sidecar"      # a list goes comma-joined
    assert "NOT_EXCHANGED" not in md.fields


def test_a_preamble_is_read_whole_or_byte_by_byte_and_the_rest_given_back():
    wire = mx.encode(ID, NODE) + b"application bytes"
    r = mx.Reader()
    assert r.feed(wire) == b"application bytes" and r.state == mx.DONE
    assert (r.peer or {})["LABELS"] == {"app": "reviews", "version": "v2"} and r.peer_id == ID
    r = mx.Reader()
    got = b"".join(r.feed(wire[i:i + 1]) for i in range(len(wire)))
    assert got == b"application bytes" and r.state == mx.DONE
    assert r.feed(b"later") == b"later"          # once done, bytes go straight through


def test_bytes_that_are_no_preamble_pass_untouched_and_the_peer_stays_unknown():
    for data in (b"GET / HTTP/1.1\r\n\r\n", b"\x3d\x23\x04\x00", b"\x00"):
        r = mx.Reader()
        assert r.feed(data) == data and r.state == mx.INVALID and r.peer is None
    # a payload larger than the bound is not taken
    r = mx.Reader()
    big = struct.pack("!II", mx.MAGIC, mx.MAX_PAYLOAD + 1) + b"x"
    assert r.feed(big) == big and r.state == mx.INVALID
    # a payload that is not an Any of a Struct: dropped, the peer unknown, what follows given back
    r = mx.Reader()
    junk = any_pb2.Any(type_url="type.googleapis.com/other", value=b"\x01").SerializeToString()
    assert r.feed(struct.pack("!II", mx.MAGIC, len(junk)) + junk + b"rest") == b"rest"
    assert r.state == mx.INVALID and r.peer is None
    # the stream ends inside a header: what was held goes on
    r = mx.Reader()
    assert r.feed(b"\x3d\x23") == b"" and r.eof() == b"\x3d\x23" and r.state == mx.INVALID


def test_the_local_preamble_comes_from_the_bootstrap_node_once_per_config():
    xds = SimpleNamespace(node=SimpleNamespace(id=ID, metadata=NODE))
    config = SimpleNamespace(xds=xds, raw={})
    first = mx.local_preamble(config)
    assert first is mx.local_preamble(config) and first == mx.encode(ID, NODE)
    envoy = SimpleNamespace(xds=None, raw={"node": {"id": "n1", "metadata": {"WORKLOAD_NAME": "w"}}})
    r = mx.Reader()
    r.feed(mx.local_preamble(envoy))
    assert (r.peer, r.peer_id) == ({"WORKLOAD_NAME": "w"}, "n1")
