"""Unpacking a response's resources: names, type mismatches, duplicates, the Resource wrapper,
and garbage that must come back as rejections, never as an exception."""
from __future__ import annotations

from google.protobuf import any_pb2
from hypothesis import given, settings, strategies as st

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import discovery_pb2
from mosnx.proxy.xds import CDS, EDS, LDS
from mosnx.proxy.xds.resources import MAX_STALE, ORDER, TYPES, RawDiscoveryResponse, Rejection, unpack, \
    unpack_raw


def packed(msg) -> any_pb2.Any:  # type: ignore[no-untyped-def]
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def test_the_table_knows_each_type_its_name_field_and_stat_prefix() -> None:
    assert set(ORDER) == set(TYPES)
    assert TYPES[LDS].wildcard and TYPES[CDS].wildcard and not TYPES[EDS].wildcard
    assert TYPES[LDS].stat_prefix == "listener_manager.lds" and TYPES[CDS].stat_prefix == "cluster_manager.cds"
    good, bad, seen = unpack(TYPES[EDS], [("", packed(endpoint_pb2.ClusterLoadAssignment(cluster_name="c1")))])
    assert list(good) == ["c1"] and not bad and seen == {"c1"}


def test_duplicates_wrong_types_and_nameless_resources_are_rejections() -> None:
    items = [("", packed(cluster_pb2.Cluster(name="a"))), ("", packed(cluster_pb2.Cluster(name="a"))),
             ("", packed(listener_pb2.Listener(name="l"))), ("", packed(cluster_pb2.Cluster())),
             ("", packed(cluster_pb2.Cluster(name="b")))]
    good, bad, seen = unpack(TYPES[CDS], items)
    assert list(good) == ["b"]
    assert Rejection("a", "named more than once in one response") in bad
    assert any(r.name == "#2" and "Listener" in r.detail for r in bad)
    assert any(r.name == "#3" and "without a name" in r.detail for r in bad)
    assert seen == {"a", "b"}


def test_delta_names_must_agree_with_the_resource() -> None:
    good, bad, _ = unpack(TYPES[CDS], [("x", packed(cluster_pb2.Cluster(name="y")))])
    assert not good and bad == [Rejection("x", "named 'x' in the response but 'y' in the resource")]


def test_the_resource_wrapper_is_unwrapped() -> None:
    w = discovery_pb2.Resource(name="c", version="1", resource=packed(cluster_pb2.Cluster(name="c")))
    good, bad, _ = unpack(TYPES[CDS], [("", packed(w))])
    assert list(good) == ["c"] and not bad
    w.name = "other"
    good, bad, _ = unpack(TYPES[CDS], [("", packed(w))])
    assert not good and bad[0].name == "other"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["", "a", "b"]), st.sampled_from([CDS, LDS, EDS, "x", ""]),
                          st.binary(max_size=40)), max_size=6))
def test_garbage_is_rejected_never_raised(items: list[tuple[str, str, bytes]]) -> None:
    anys = [(name, any_pb2.Any(type_url=t, value=v)) for name, t, v in items]
    good, bad, seen = unpack(TYPES[CDS], anys)
    assert set(good) <= seen
    assert not set(good) & {r.name for r in bad}
    assert all(isinstance(m, cluster_pb2.Cluster) for m in good.values())


def test_a_resource_sent_again_unchanged_is_the_same_message_not_parsed_again() -> None:
    def packed(name: str, timeout: int) -> any_pb2.Any:
        a = any_pb2.Any()
        c = cluster_pb2.Cluster(name=name)
        c.connect_timeout.seconds = timeout
        a.Pack(c)
        return a
    known: dict = {}
    first, _, _ = unpack(TYPES[CDS], [("", packed("a", 1)), ("", packed("b", 1))], known)
    again, _, _ = unpack(TYPES[CDS], [("", packed("a", 1)), ("", packed("b", 2))], known)
    assert again["a"] is first["a"]                       # the same bytes: the same message
    assert again["b"] is not first["b"] and again["b"].connect_timeout.seconds == 2
    assert len(known) == 2                                # only the last response's are kept


def test_the_raw_response_reads_a_discovery_response_keeping_each_resource_as_its_bytes() -> None:
    anys = [packed(endpoint_pb2.ClusterLoadAssignment(cluster_name=f"c{i}")) for i in range(3)]
    resp = discovery_pb2.DiscoveryResponse(version_info="v7", type_url=EDS, nonce="n1", resources=anys, canary=True)
    raw = RawDiscoveryResponse.FromString(resp.SerializeToString())
    assert (raw.version_info, raw.type_url, raw.nonce) == ("v7", EDS, "n1")
    assert list(raw.resources) == [a.SerializeToString() for a in anys]
    assert discovery_pb2.DiscoveryResponse.FromString(raw.SerializeToString()) == resp    # canary kept


def _clas(n: int, changed: dict[int, int] | None = None) -> list[bytes]:
    out = []
    for i in range(n):
        c = endpoint_pb2.ClusterLoadAssignment(cluster_name=f"c{i}")
        c.endpoints.add().lb_endpoints.add().endpoint.address.socket_address.port_value = (changed or {}).get(i, 9000)
        out.append(packed(c).SerializeToString())
    return out


def test_a_resource_resent_unchanged_is_the_message_taken_before_and_only_a_changed_one_is_parsed() -> None:
    known: dict = {}
    first, bad, seen, parsed = unpack_raw(TYPES[EDS], _clas(50), known)
    assert (len(first), bad, parsed) == (50, [], 50) and set(seen) == set(first)
    again, bad, seen, parsed = unpack_raw(TYPES[EDS], _clas(50, {7: 9107}), known)
    assert bad == [] and parsed == 1 and set(seen) == set(again)
    assert all(again[n] is first[n] for n in again if n != "c7")
    assert again["c7"] is not first["c7"] and again["c7"].endpoints[0].lb_endpoints[0].endpoint.address \
        .socket_address.port_value == 9107
    same, _, _, parsed = unpack_raw(TYPES[EDS], _clas(50, {7: 9107}), known)
    assert parsed == 0 and all(same[n] is again[n] for n in same)
    # going back to the bytes of before: the message of before, still known
    back, _, _, parsed = unpack_raw(TYPES[EDS], _clas(50), known)
    assert parsed == 0 and back["c7"] is first["c7"]


def test_what_is_known_is_this_response_and_a_bounded_number_of_those_before() -> None:
    known: dict = {}
    unpack_raw(TYPES[EDS], _clas(4), known)
    for k in range(MAX_STALE + 3):
        unpack_raw(TYPES[EDS], _clas(4, {0: 10000 + k}), known)
        assert len(known) <= 4 + MAX_STALE
    unpack_raw(TYPES[EDS], _clas(MAX_STALE + 10), known)
    unpack_raw(TYPES[EDS], _clas(2), known)         # far fewer resources: only theirs are kept
    assert len(known) == 2


def test_duplicates_wrong_types_and_garbage_in_a_raw_response_are_rejections_as_unpack_gives() -> None:
    items = [packed(cluster_pb2.Cluster(name="a")), packed(cluster_pb2.Cluster(name="a")),
             packed(listener_pb2.Listener(name="l")), packed(cluster_pb2.Cluster()),
             packed(cluster_pb2.Cluster(name="b"))]
    raws = [a.SerializeToString() for a in items] + [b"\xff\xff"]
    known: dict = {}
    good, bad, seen, parsed = unpack_raw(TYPES[CDS], raws, known)
    assert list(good) == ["b"] and set(seen) == {"a", "b"} and parsed == 6
    assert Rejection("a", "named more than once in one response") in bad
    assert any(r.name == "#2" and "Listener" in r.detail for r in bad)
    assert any(r.name == "#5" and "does not parse as google.protobuf.Any" in r.detail for r in bad)
    # sent again: the duplicate is still refused, nothing good is parsed again
    good, bad, _, parsed = unpack_raw(TYPES[CDS], raws, known)
    assert list(good) == ["b"] and Rejection("a", "named more than once in one response") in bad
    assert parsed == 3                  # the three that did not unpack, tried again


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([CDS, LDS, "x", ""]), st.sampled_from(["", "a", "b"]),
                          st.binary(max_size=12)), max_size=6),
       st.lists(st.binary(max_size=12), max_size=2))
def test_a_raw_response_answers_as_unpack_does(items: list[tuple[str, str, bytes]], junk: list[bytes]) -> None:
    anys = []
    for t, name, v in items:
        a = packed(cluster_pb2.Cluster(name=name)) if t == CDS else any_pb2.Any(type_url=t, value=v)
        anys.append(a)
    raws = [a.SerializeToString() for a in anys]
    known: dict = {}
    for _ in range(2):                  # cold, then everything good known
        good, bad, seen, _ = unpack_raw(TYPES[CDS], raws, known)
        want_good, want_bad, want_seen = unpack(TYPES[CDS], [("", a) for a in anys])
        assert good == want_good and sorted(map(str, bad)) == sorted(map(str, want_bad))
        assert set(seen) == want_seen
    for j in junk:                      # bytes that may not be an Any at all: an answer, never an exception
        unpack_raw(TYPES[CDS], raws + [j], known)
