"""The control plane's resources as Envoy's admin shows them: `configs` of an
envoy.admin.v3.ConfigDump (ListenersConfigDump, ClustersConfigDump,
ScopedRoutesConfigDump, RoutesConfigDump, EndpointsConfigDump, SecretsConfigDump),
so tools written for Envoy's /config_dump read mosnx's. Scoped routes (SRDS) are
listed once per ScopedRoutes name a listener takes over scoped_rds, each with every
scope held (all belong to every such listener), and only when there are some; a
RouteConfiguration with VHDS shows with the virtual hosts VHDS brought, as Envoy's.
Each resource carries the version of the update that brought it and when; a
resource refused by the last update carries its error_state (the refused message,
when, and why) beside the version still serving, as Envoy's does.

A typed config whose type this process does not know (an extension kept as opaque
config, such as Istio's stats plugin) cannot be written as JSON; it is shown as an
xds.type.v3.TypedStruct naming the type, its bytes in base64 under `value.opaque`.

Secrets never leave in the clear: every field the API marks
`(udpa.annotations.sensitive)` (a private key, a password, session ticket keys) has
its strings and bytes replaced by "[redacted]", as Envoy's MessageUtil::redact does,
in the active secrets and in a refused one's error_state alike. Secrets asked for
and not yet received are listed as dynamic_warming_secrets, by name.
"""
from __future__ import annotations

from typing import Any

import base64

from google.protobuf import any_pb2, descriptor, descriptor_pool, json_format, message_factory, timestamp_pb2
from google.protobuf.message import Message
from udpa.annotations import sensitive_pb2
from xds.type.v3 import typed_struct_pb2

from envoy.admin.v3 import config_dump_pb2, config_dump_shared_pb2 as shared

from mosnx.runtime.envoy import vhds
from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, LISTENER, ROUTE, SCOPED_ROUTE, SECRET, VIRTUAL_HOST
from mosnx.runtime.envoy.scoped_routes import srds_names

REDACTED = "[redacted]"
_FD = descriptor.FieldDescriptor


def _any(msg: Message) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(_redacted(msg) if _has_sensitive(msg.DESCRIPTOR) else msg)
    return a


def _sensitive(fd: descriptor.FieldDescriptor) -> bool:
    opts = fd.GetOptions()
    return bool(opts.HasExtension(sensitive_pb2.sensitive) and opts.Extensions[sensitive_pb2.sensitive])


_scanned: dict[str, bool] = {}


def _has_sensitive(d: Any) -> bool:
    """Whether a message of this type can hold a sensitive field (remembered by type)."""
    got = _scanned.get(d.full_name)
    if got is None:
        _scanned[d.full_name] = False           # a recursive type answers for itself once
        got = any(_sensitive(fd) or (fd.message_type is not None and _has_sensitive(fd.message_type))
                  for fd in d.fields)
        _scanned[d.full_name] = got
    return got


def _redacted(msg: Message) -> Message:
    out = type(msg)()
    out.CopyFrom(msg)
    _redact(out, False)
    return out


def _redact(msg: Message, all_leaves: bool) -> None:
    """Sensitive fields (and everything under them) get "[redacted]" for every string or bytes."""
    for fd, value in msg.ListFields():
        hide = all_leaves or _sensitive(fd)
        repeated = fd.is_repeated
        if fd.type == _FD.TYPE_MESSAGE:
            if fd.message_type is None or fd.message_type.GetOptions().map_entry:
                continue
            for m in (value if repeated else [value]):
                if hide or _has_sensitive(m.DESCRIPTOR):
                    _redact(m, hide)
        elif hide and fd.type in (_FD.TYPE_STRING, _FD.TYPE_BYTES):
            leaf: Any = REDACTED if fd.type == _FD.TYPE_STRING else REDACTED.encode()
            if repeated:
                del value[:]
                value.append(leaf)
            else:
                setattr(msg, fd.name, leaf)


def _when(t: float | None) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    if t:
        ts.FromNanoseconds(int(t * 1e9))
    return ts


def config_dump(resources: dict[str, dict[str, Message]], versions: dict[str, str],
                updated: dict[str, float], failed: dict[tuple[str, str], tuple[Message, float, str, str]],
                static_secrets: dict[str, Message] | None = None, warming_secrets: set[str] | None = None
                ) -> dict[str, Any]:
    """{"configs": [...]} as Envoy's /config_dump. `failed`: (type_url, name) -> (the
    refused message, when, why, the refused version); `static_secrets`: the
    bootstrap's; `warming_secrets`: the names asked for that have not come."""
    def failure(t: str, name: str) -> shared.UpdateFailureState | None:
        f = failed.get((t, name))
        if f is None:
            return None
        msg, when, why, version = f
        return shared.UpdateFailureState(failed_configuration=_any(msg), last_update_attempt=_when(when),
                                         details=why, version_info=version)

    lds = shared.ListenersConfigDump(version_info=versions.get(LISTENER, ""))
    for name, lst in sorted(resources.get(LISTENER, {}).items()):
        d = lds.dynamic_listeners.add(name=name)
        d.active_state.CopyFrom(shared.ListenersConfigDump.DynamicListenerState(
            version_info=versions.get(LISTENER, ""), listener=_any(lst), last_updated=_when(updated.get(LISTENER))))
        err = failure(LISTENER, name)
        if err is not None:
            d.error_state.CopyFrom(err)
    cds = shared.ClustersConfigDump(version_info=versions.get(CLUSTER, ""))
    for name, c in sorted(resources.get(CLUSTER, {}).items()):
        e = cds.dynamic_active_clusters.add(version_info=versions.get(CLUSTER, ""), cluster=_any(c),
                                            last_updated=_when(updated.get(CLUSTER)))
        err = failure(CLUSTER, name)
        if err is not None:
            e.error_state.CopyFrom(err)
    srds = shared.ScopedRoutesConfigDump()
    scopes = resources.get(SCOPED_ROUTE, {})
    for set_name in srds_names(resources.get(LISTENER, {}).values()) if scopes else ():
        d = srds.dynamic_scoped_route_configs.add(name=set_name, version_info=versions.get(SCOPED_ROUTE, ""),
                                                  last_updated=_when(updated.get(SCOPED_ROUTE)))
        for _, sc in sorted(scopes.items()):
            d.scoped_route_configs.add().CopyFrom(_any(sc))
    rds = shared.RoutesConfigDump()
    routes = vhds.merged(resources.get(ROUTE, {}), resources.get(VIRTUAL_HOST, {}))
    for name, rc in sorted(routes.items()):
        r = rds.dynamic_route_configs.add(version_info=versions.get(ROUTE, ""), route_config=_any(rc),
                                          last_updated=_when(updated.get(ROUTE)))
        err = failure(ROUTE, name)
        if err is not None:
            r.error_state.CopyFrom(err)
    eds = shared.EndpointsConfigDump()
    for name, cla in sorted(resources.get(ENDPOINT, {}).items()):
        d = eds.dynamic_endpoint_configs.add(version_info=versions.get(ENDPOINT, ""), endpoint_config=_any(cla),
                                             last_updated=_when(updated.get(ENDPOINT)))
        err = failure(ENDPOINT, name)
        if err is not None:
            d.error_state.CopyFrom(err)
    sds = config_dump_pb2.SecretsConfigDump()
    for name, s in sorted((static_secrets or {}).items()):
        sds.static_secrets.add(name=name, secret=_any(s))
    for name, s in sorted(resources.get(SECRET, {}).items()):
        d = sds.dynamic_active_secrets.add(name=name, version_info=versions.get(SECRET, ""), secret=_any(s),
                                           last_updated=_when(updated.get(SECRET)))
        err = failure(SECRET, name)
        if err is not None:
            d.error_state.CopyFrom(err)
    for name in sorted((warming_secrets or set()) - set(resources.get(SECRET, {}))):
        sds.dynamic_warming_secrets.add(name=name)
    # refused resources never accepted show with their error alone (Envoy lists them too)
    for (t, name), _ in sorted(failed.items()):
        if name in resources.get(t, {}):
            continue
        err = failure(t, name)
        if t == CLUSTER:
            cds.dynamic_active_clusters.add(error_state=err)
        elif t == ROUTE:
            rds.dynamic_route_configs.add(error_state=err)
        elif t == ENDPOINT:
            eds.dynamic_endpoint_configs.add(error_state=err)
        elif t == LISTENER:
            lds.dynamic_listeners.add(name=name, error_state=err)
        elif t == SECRET:
            sds.dynamic_active_secrets.add(name=name, error_state=err)
    dump = config_dump_pb2.ConfigDump()
    # Envoy's order: clusters before listeners, scoped routes before routes
    parts: list[Message] = [cds, lds, *([srds] if srds.dynamic_scoped_route_configs else []), rds, eds]
    if sds.ListFields():
        parts.append(sds)
    for part in parts:
        dump.configs.add().Pack(part)
    _opaque_as_typed_struct(dump)
    return json_format.MessageToDict(dump)


def _message_class(type_url: str) -> Any:
    """The class of an Any's type, or None when this process does not know it."""
    try:
        d = descriptor_pool.Default().FindMessageTypeByName(type_url.rsplit("/", 1)[-1])
    except KeyError:
        return None
    return message_factory.GetMessageClass(d)


def _opaque_as_typed_struct(msg: Message) -> bool:
    """Replace, in place, every Any of an unknown type within `msg` (within known Anys
    too) by a TypedStruct naming it; True when something changed."""
    changed = False
    for fd, value in msg.ListFields():
        if fd.message_type is None:
            continue
        items: Any
        if fd.message_type.GetOptions().map_entry:
            items = list(value.values()) if fd.message_type.fields_by_name["value"].message_type else ()
        else:
            items = value if fd.is_repeated else (value,)
        for m in items:
            if m.DESCRIPTOR.full_name == "google.protobuf.Any":
                changed |= _fix_any(m)
            elif _opaque_as_typed_struct(m):
                changed = True
    return changed


def _fix_any(a: Any) -> bool:
    cls = _message_class(a.type_url)
    if cls is None:
        ts = typed_struct_pb2.TypedStruct(type_url=a.type_url)
        ts.value.update({"opaque": base64.b64encode(a.value).decode("ascii")})
        a.Pack(ts)
        return True
    inner = cls()
    inner.ParseFromString(a.value)
    if _opaque_as_typed_struct(inner):
        a.Pack(inner)
        return True
    return False
