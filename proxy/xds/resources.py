"""The resource types the client knows, and the contract with whoever applies them.

One table, `TYPES`, maps each type URL to its generated message class, the field
holding a resource's name, whether it is subscribed by wildcard (LDS and CDS, as
Envoy does; SRDS too, but only while a listener uses scoped_rds: the sink says so)
and the prefix of its stats (Envoy's names where Envoy has one stream per type:
listener_manager.lds, cluster_manager.cds; Envoy keeps RDS, EDS, SDS, SRDS, VHDS and
RTDS stats per resource or per listener, here they are one prefix each: rds, eds,
sds, scoped_rds, vhds, rtds).

`unpack` turns the resources of one response into `{name: message}` plus the
rejections it found itself: an Any of another type than the response's, one that
does not parse, one without a name, and a name given twice (neither copy is kept).
It never raises on what a control plane sends. The `Resource` wrapper
(envoy.service.discovery.v3.Resource) is accepted in state-of-the-world responses
too, which is what the "xds.config.resource-in-sotw" client feature announces.

A state-of-the-world response repeats every resource of its type on each change,
so its cost is what an unchanged resource costs. `RawDiscoveryResponse` reads the
same bytes as envoy.service.discovery.v3.DiscoveryResponse but keeps each resource
as the bytes of its Any (type URL and value, as sent), and `unpack_raw` looks those
bytes up among the last response's: a resource sent again unchanged is one dict
lookup (a hash and a memcmp, in C) and the message taken last time; only the
others are parsed. What it answers is what `unpack` answers for the same Anys.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, Any, Iterable, Protocol, Sequence

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2, scoped_route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.runtime.v3 import rtds_pb2

from mosnx.runtime.envoy.protos import CLUSTER as CDS, ENDPOINT as EDS, LISTENER as LDS, PREFIX as _PREFIX, \
    ROUTE as RDS, RUNTIME as RTDS, SCOPED_ROUTE as SRDS, VIRTUAL_HOST as VHDS

# the type URLs are the translator's (runtime.envoy.protos), under the xDS names
SDS = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"
_RESOURCE_WRAPPER = _PREFIX + "envoy.service.discovery.v3.Resource"


@dataclass(frozen=True, slots=True)
class ResourceType:
    type_url: str
    message: type[Message]
    name_field: str
    wildcard: bool
    stat_prefix: str
    # names are namespaces (VHDS, as Envoy's use_namespace_matching): a name subscribes
    # to itself and to every "<name>/<anything>"
    namespaced: bool = False

    def wants(self, name: str, names: AbstractSet[str]) -> bool:
        """Whether a resource of this type named `name` is one of those `names` ask for."""
        return name in names or (self.namespaced and "/" in name and name.rsplit("/", 1)[0] in names)


TYPES: dict[str, ResourceType] = {t.type_url: t for t in (
    ResourceType(CDS, cluster_pb2.Cluster, "name", True, "cluster_manager.cds"),
    ResourceType(EDS, endpoint_pb2.ClusterLoadAssignment, "cluster_name", False, "eds"),
    ResourceType(LDS, listener_pb2.Listener, "name", True, "listener_manager.lds"),
    ResourceType(RDS, route_pb2.RouteConfiguration, "name", False, "rds"),
    ResourceType(SDS, secret_pb2.Secret, "name", False, "sds"),
    ResourceType(SRDS, scoped_route_pb2.ScopedRouteConfiguration, "name", True, "scoped_rds"),
    ResourceType(VHDS, route_components_pb2.VirtualHost, "name", False, "vhds", namespaced=True),
    ResourceType(RTDS, rtds_pb2.Runtime, "name", False, "rtds"),
)}

# The order of first requests on a new stream: the runtime first (as Envoy loads it
# before the rest), clusters before listeners, each before what it names (ADS's
# make-before-break order: CDS, EDS, LDS, SRDS, RDS, VHDS, then SDS).
ORDER: tuple[str, ...] = (RTDS, CDS, EDS, LDS, SRDS, RDS, VHDS, SDS)


@dataclass(frozen=True, slots=True)
class Rejection:
    """One resource the sink (or the client) would not take, and why."""
    name: str
    detail: str


class XdsSink(Protocol):
    """Whoever turns resources into configuration (the supervisor's translator)."""

    def subscriptions(self, type_url: str) -> AbstractSet[str] | None:
        """The resource names wanted of `type_url` now; None means every one (wildcard).
        Called for every request and response: a frozenset is taken as it is."""
        ...

    def apply(self, type_url: str, version: str, resources: dict[str, Message],
              removed: set[str]) -> list[Rejection]:
        """Take `resources` (name -> message) and drop `removed`; the rejected ones, or []
        to accept all. The good resources of a partly bad update are the sink's to keep.
        Called in the client's loop, one response at a time; it may call the client's
        `resubscribe` (a new listener names a new route), never block."""
        ...


def unpack_one(rtype: ResourceType, any_msg: any_pb2.Any) -> tuple[str, Message | None, str]:
    """(name, message, "") or (name or "", None, why) for one Any of a response of `rtype`."""
    if any_msg.type_url == _RESOURCE_WRAPPER:
        wrapper = discovery_pb2.Resource()
        try:
            wrapper.ParseFromString(any_msg.value)
        except DecodeError as e:
            return "", None, f"Resource wrapper does not parse: {e}"
        name, msg, why = unpack_one(rtype, wrapper.resource)
        if msg is not None and wrapper.name and wrapper.name != name:
            return wrapper.name, None, f"Resource wrapper names {wrapper.name!r}, its resource {name!r}"
        return name or wrapper.name, msg, why
    if any_msg.type_url != rtype.type_url:
        return "", None, f"resource of type {any_msg.type_url!r} in a response of type {rtype.type_url!r}"
    msg = rtype.message()
    try:
        msg.ParseFromString(any_msg.value)
    except DecodeError as e:
        return "", None, f"does not parse as {rtype.message.DESCRIPTOR.full_name}: {e}"
    name = getattr(msg, rtype.name_field)
    if not name:
        return "", None, f"{rtype.message.DESCRIPTOR.full_name} without a {rtype.name_field}"
    return name, msg, ""


def unpack(rtype: ResourceType, items: Iterable[tuple[str, any_pb2.Any]],
           known: dict[bytes, tuple[str, Message]] | None = None
           ) -> tuple[dict[str, Message], list[Rejection], set[str]]:
    """Unpack (expected name or "", Any) pairs: (resources, rejections, every name seen).
    An expected name (a delta Resource's) must agree with the message's own. `known`:
    the last response's resources by their bytes; a resource sent again unchanged (a
    state-of-the-world response repeats them all) is that same message, not parsed
    again. It is replaced by this response's."""
    good, rejected, seen, _ = unpack_counted(rtype, items, known)
    return good, rejected, seen


def unpack_counted(rtype: ResourceType, items: Iterable[tuple[str, any_pb2.Any]],
                   known: dict[bytes, tuple[str, Message]] | None = None
                   ) -> tuple[dict[str, Message], list[Rejection], set[str], int]:
    """unpack(), and how many of the resources were parsed (not known)."""
    now: dict[bytes, tuple[str, Message]] = {}
    own = rtype.type_url
    parsed = 0

    def entries() -> Iterable[tuple[str, str, Message | None, str]]:
        nonlocal parsed
        for expected, any_msg in items:
            # each read of an Any's field makes a new object (the value, a copy of its
            # bytes): read once, as a response may repeat thousands of resources
            value = any_msg.value if known is not None and any_msg.type_url == own else None
            hit = known.get(value) if known is not None and value is not None else None
            msg: Message | None
            if hit is not None:
                name, msg, why = hit[0], hit[1], ""
            else:
                parsed += 1
                name, msg, why = unpack_one(rtype, any_msg)
            if msg is not None and value is not None:
                now[value] = (name, msg)
            yield expected, name, msg, why

    good, rejected, seen = _collect(entries())
    if known is not None:
        known.clear()
        known.update(now)
    return good, rejected, seen, parsed


def _collect(entries: Iterable[tuple[str, str, Message | None, str]]
             ) -> tuple[dict[str, Message], list[Rejection], set[str]]:
    """(expected name or "", name, message or None, why not) of each resource in
    order: unpack()'s answer."""
    good: dict[str, Message] = {}
    rejected: list[Rejection] = []
    seen: set[str] = set()
    dup: set[str] = set()
    for i, (expected, name, msg, why) in enumerate(entries):
        if msg is not None and expected and expected != name:
            msg, why = None, f"named {expected!r} in the response but {name!r} in the resource"
        name = expected or name         # delta bookkeeping goes by the response's names
        if not name:
            rejected.append(Rejection(f"#{i}", why))
            continue
        if name in seen:
            dup.add(name)
            continue
        seen.add(name)
        if msg is None:
            rejected.append(Rejection(name, why))
        else:
            good[name] = msg
    for name in sorted(dup):
        good.pop(name, None)
        rejected = [r for r in rejected if r.name != name]
        rejected.append(Rejection(name, "named more than once in one response"))
    return good, rejected, seen


def _raw_response_class() -> type[Message]:
    """DiscoveryResponse with `resources` (field 2, each an Any) read as bytes: the
    same wire format, so the same bytes parse as either. The fields mosnx reads are
    declared; the others (canary, control_plane) are kept as unknown fields."""
    f = descriptor_pb2.FileDescriptorProto(name="mosnx/xds/raw_discovery.proto", package="mosnx.xds",
                                           syntax="proto3")
    m = f.message_type.add(name="RawDiscoveryResponse")
    opt, rep = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL, descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    text, data = descriptor_pb2.FieldDescriptorProto.TYPE_STRING, descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    for number, name, label, kind in ((1, "version_info", opt, text), (2, "resources", rep, data),
                                      (4, "type_url", opt, text), (5, "nonce", opt, text)):
        m.field.add(name=name, number=number, label=label, type=kind)
    pool = descriptor_pool.DescriptorPool()     # its own pool: nothing else sees the type
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("mosnx.xds.RawDiscoveryResponse"))


RawDiscoveryResponse: Any = _raw_response_class()     # a made class: its fields are not typed


# resources an earlier state-of-the-world response had and this one does not, kept
# by unpack_raw (known) until there are more than this many
MAX_STALE = 256


def unpack_raw(rtype: ResourceType, raws: Sequence[bytes], known: dict[bytes, tuple[str, Message]]
               ) -> tuple[dict[str, Message], list[Rejection], AbstractSet[str], int]:
    """unpack() of a state-of-the-world response's resources given as the bytes of
    each Any (RawDiscoveryResponse.resources), and how many of them were parsed.
    `known`: the last response's resources by those bytes, replaced by this one's
    (and up to MAX_STALE of those before, which are left out only all at once).
    The resources known are found by C loops (a lookup each: a control plane need
    not keep their order, go-control-plane does not); only the others are parsed,
    and only a response with a bad resource or a name given twice goes through
    unpack()'s loop."""
    # each read of a repeated field makes a new bytes object: read one at a time and
    # let it go (20,000 kept at once cost more in allocation than the lookups)
    hits: list[tuple[str, Message] | None] = list(map(known.get, raws))
    parsed = 0
    added: dict[bytes, tuple[str, Message]] = {}
    i = -1
    while True:
        try:
            i = hits.index(None, i + 1)
        except ValueError:
            break
        raw = raws[i]
        try:
            any_msg = any_pb2.Any.FromString(raw)
        except DecodeError:
            break                       # a bad one: unpack()'s loop says why
        name, msg, _ = unpack_one(rtype, any_msg)
        if msg is None:
            break
        hits[i] = added[raw] = (name, msg)
        parsed += 1
    if None not in hits:
        good: dict[str, Message] = dict(hits)      # type: ignore[arg-type]  # no None in it
        if len(good) == len(hits):      # no name twice
            # what the new ones replaced stays known a while (same bytes, same message):
            # dropped all at once, rather than looked for each time
            known.update(added)
            if len(known) > len(raws) + MAX_STALE:
                known.clear()
                known.update(zip(raws, hits))      # type: ignore[arg-type]
            return good, [], good.keys(), parsed
    now: dict[bytes, tuple[str, Message]] = {}

    def entries() -> Iterable[tuple[str, str, Message | None, str]]:
        nonlocal parsed
        for raw, hit in zip(raws, hits):
            msg: Message | None
            if hit is not None:
                name, msg, why = hit[0], hit[1], ""
            else:
                parsed += 1
                try:
                    any_msg = any_pb2.Any.FromString(raw)
                except DecodeError as e:
                    name, msg, why = "", None, f"does not parse as google.protobuf.Any: {e}"
                else:
                    name, msg, why = unpack_one(rtype, any_msg)
            if msg is not None:
                now[raw] = (name, msg)
            yield "", name, msg, why

    good, rejected, seen = _collect(entries())
    known.clear()
    known.update(now)
    return good, rejected, seen, parsed
