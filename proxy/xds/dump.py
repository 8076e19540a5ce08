"""The control plane's resources as Envoy's admin shows them: `configs` of an
envoy.admin.v3.ConfigDump (ListenersConfigDump, ClustersConfigDump,
RoutesConfigDump, EndpointsConfigDump), so tools written for Envoy's /config_dump
read mosnx's. Each resource carries the version of the update that brought it and
when; a resource refused by the last update carries its error_state (the refused
message, when, and why) beside the version still serving, as Envoy's does.
"""
from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, json_format, timestamp_pb2
from google.protobuf.message import Message

from envoy.admin.v3 import config_dump_pb2, config_dump_shared_pb2 as shared

from mosnx.runtime.envoy.protos import CLUSTER, ENDPOINT, LISTENER, ROUTE


def _any(msg: Message) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def _when(t: float | None) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    if t:
        ts.FromNanoseconds(int(t * 1e9))
    return ts


def config_dump(resources: dict[str, dict[str, Message]], versions: dict[str, str],
                updated: dict[str, float], failed: dict[tuple[str, str], tuple[Message, float, str, str]]
                ) -> dict[str, Any]:
    """{"configs": [...]} as Envoy's /config_dump. `failed`: (type_url, name) -> (the
    refused message, when, why, the refused version)."""
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
    rds = shared.RoutesConfigDump()
    for name, rc in sorted(resources.get(ROUTE, {}).items()):
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
    dump = config_dump_pb2.ConfigDump()
    for part in (cds, lds, rds, eds):          # Envoy's order: clusters before listeners
        dump.configs.add().Pack(part)
    return json_format.MessageToDict(dump)
