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
from mosnx.proxy.xds.resources import ORDER, TYPES, Rejection, unpack


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
