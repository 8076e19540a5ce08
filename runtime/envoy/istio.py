"""Istio's own extensions in Envoy resources: recognised by type URL, translated or
reported.

istiod puts extensions in every sidecar listener whose types xds-protos does not
know (stats.PluginConfig, the metadata exchange config, istio.alpn's FilterConfig)
or wraps in a TypedStruct (io.istio.network.authn.Config). decode.opaque() keeps a
JSON one as a TypedStruct; one from a control plane arrives as an Any whose bytes
cannot be read without the type. opaque_config() gives both back as (type URL,
fields or None). The two whose settings matter here (istio.alpn's FilterConfig and
MetadataExchange) are described to the protobuf pool at import (_describe), so they
decode from a control plane's bytes too.

What each becomes, as Envoy would decide (a filter Envoy lacks fails the listener):
- istio.stats (HTTP) -> the istio_stats filter; on a TCP chain, the listener option
  `istio_stats` the TCP proxy records Istio's TCP metrics by.
- istio.metadata_exchange: the HTTP one (Envoy's Wasm filter with the null VM's
  envoy.wasm.metadata_exchange) -> the peer_metadata filter; the network one -> the
  option `istio_mx` (its ALPN protocol) of a tcp_proxy chain, and, as a cluster's
  upstream network filter (cluster_filters), of the cluster: proxy.tcp.proxy runs
  the exchange on connections that negotiate that protocol.
- istio.alpn -> the listener option `istio_alpn` (alpn_of: upstream protocol -> the
  ALPN protocols offered to an Istio mTLS peer, proxy.tls.istio_alpn).
- grpc_stats (HTTP) -> the grpc_stats filter.
- istio_authn (network): recognised, warned. It does not change what the application
  or the peer sees (it only records the mTLS peer, which mosnx's TLS layer keeps), so
  skipping it serves the traffic as Envoy would.
- Any other opaque HTTP filter: skipped with a warning naming its type URL when
  is_optional, otherwise the listener is rejected. A network filter has no
  is_optional: one mosnx lacks always rejects the listener, as in Envoy.
Translation reads no node metadata: the filters take it from the bootstrap when
built (converted_settings() copies it into what `mosnx convert` writes).
"""
from __future__ import annotations

import copy
from typing import Any

from google.protobuf import json_format

from ..model import FilterSpec
from .findings import Findings
from .protos import ensure_type

TYPED_STRUCTS = ("xds.type.v3.TypedStruct", "udpa.type.v1.TypedStruct")
STATS = "stats.PluginConfig"
MX = "envoy.tcp.metadataexchange.config.MetadataExchange"
ALPN = "istio.envoy.config.filter.http.alpn.v2alpha1.FilterConfig"
AUTHN = "io.istio.network.authn.Config"
GRPC_STATS = "envoy.extensions.filters.http.grpc_stats.v3.FilterConfig"
WASM = "envoy.extensions.filters.http.wasm.v3.Wasm"
NULL_VM = "envoy.wasm.runtime.null"
MX_PLUGIN = "envoy.wasm.metadata_exchange"
STATS_PLUGIN = "envoy.wasm.stats"
# the istio_stats settings mosnx takes from a PluginConfig; the rest are warned
STATS_KEYS = frozenset({"disable_host_header_fallback"})
UPSTREAM_PROTOCOLS = ("HTTP10", "HTTP11", "HTTP2")
# Istio's messages this module describes to the protobuf pool (_describe): they are
# not opaque, yet they are Istio's to decide
DESCRIBED = frozenset({ALPN, MX})


def _describe() -> None:
    """Describe two of Istio's messages to the protobuf pool, so that one from a
    control plane (an Any of bytes) decodes: istio.alpn's FilterConfig (its overrides
    are applied) and the TCP metadata exchange's config (its ALPN protocol is read).
    Field numbers are Istio's; a message the pool already has is left as it is."""
    from google.protobuf import descriptor_pb2, descriptor_pool
    fd = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.Default()

    def add(package: str, build: Any) -> None:
        f = descriptor_pb2.FileDescriptorProto(name=f"mosnx/istio/{package}.proto", package=package,
                                               syntax="proto3")
        build(f)
        try:
            pool.FindMessageTypeByName(f"{package}.{f.message_type[0].name}")
        except KeyError:
            pool.Add(f)

    def alpn(f: Any) -> None:
        m = f.message_type.add(name="FilterConfig")
        e = m.enum_type.add(name="Protocol")
        for i, n in enumerate(UPSTREAM_PROTOCOLS):
            e.value.add(name=n, number=i)
        o = m.nested_type.add(name="AlpnOverride")
        o.field.add(name="upstream_protocol", number=1, type=fd.TYPE_ENUM, label=fd.LABEL_OPTIONAL,
                    type_name=f".{ALPN}.Protocol", json_name="upstreamProtocol")
        o.field.add(name="alpn_override", number=2, type=fd.TYPE_STRING, label=fd.LABEL_REPEATED,
                    json_name="alpnOverride")
        m.field.add(name="alpn_override", number=1, type=fd.TYPE_MESSAGE, label=fd.LABEL_REPEATED,
                    type_name=f".{ALPN}.AlpnOverride", json_name="alpnOverride")

    def mx(f: Any) -> None:
        m = f.message_type.add(name="MetadataExchange")
        m.field.add(name="protocol", number=1, type=fd.TYPE_STRING, label=fd.LABEL_OPTIONAL, json_name="protocol")

    add(ALPN.rpartition(".")[0], alpn)
    add(MX.rpartition(".")[0], mx)


def short(type_url: str) -> str:
    return type_url.rsplit("/", 1)[-1]


def opaque_config(a: Any) -> tuple[str, dict[str, Any] | None]:
    """An Any as (the type it names, its fields): a TypedStruct's inner type and
    value; an Any of a type the pool lacks, its own type URL and None (its bytes
    cannot be read; {} when there are none); any other, its type and fields."""
    name = short(a.type_url)
    if name in TYPED_STRUCTS:
        ts = _typed_struct(name)
        a.Unpack(ts)
        value = json_format.MessageToDict(ts.value) if ts.HasField("value") else {}
        return short(ts.type_url), value if isinstance(value, dict) else {}
    if not ensure_type(a.type_url):
        return name, ({} if not a.value else None)      # empty bytes: a message with nothing set
    from google.protobuf import descriptor_pool, message_factory
    desc = descriptor_pool.Default().FindMessageTypeByName(name)
    msg = message_factory.GetMessageClass(desc)()
    a.Unpack(msg)
    d = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return name, d if isinstance(d, dict) else {}


def _typed_struct(name: str) -> Any:
    if name.startswith("xds."):
        from xds.type.v3 import typed_struct_pb2
        return typed_struct_pb2.TypedStruct()
    from udpa.type.v1 import typed_struct_pb2 as udpa_ts
    return udpa_ts.TypedStruct()


def is_opaque(a: Any) -> bool:
    """Whether the Any holds a type only its type URL names (no message class)."""
    name = short(a.type_url)
    return name in TYPED_STRUCTS or not ensure_type(a.type_url)


def _null_vm_plugin(a: Any) -> str | None:
    """The null-VM plugin an Envoy Wasm filter names (Istio's built-in ones), or None."""
    if short(a.type_url) != WASM:
        return None
    from .protos import wasm_pb2
    w = wasm_pb2.Wasm()
    a.Unpack(w)
    vm = w.config.vm_config
    if vm.runtime != NULL_VM:
        return None
    return str(vm.code.local.inline_string) or None


def http_filter(hf: Any, f: Findings, skipped: set[str]) -> tuple[bool, FilterSpec | None]:
    """(handled, spec): whether this module decided the HTTP filter, and the
    FilterSpec it runs as (None: recognised or skipped, nothing runs). Rejects
    (raises) a required filter mosnx lacks."""
    if not hf.HasField("typed_config"):
        return False, None
    a = hf.typed_config
    ft = f.at("typed_config")
    plugin = _null_vm_plugin(a)
    if plugin == MX_PLUGIN:
        return True, FilterSpec("peer_metadata", hf.name or "istio.metadata_exchange", {}, disabled=hf.disabled)
    if plugin == STATS_PLUGIN:
        return True, FilterSpec("istio_stats", hf.name or "istio.stats", {}, disabled=hf.disabled)
    if plugin is not None:
        return _lacking(hf, f, skipped, f"null-VM Wasm plugin {plugin}")
    if short(a.type_url) == GRPC_STATS:
        _, value = opaque_config(a)
        return True, FilterSpec("grpc_stats", hf.name or "grpc_stats", grpc_stats_config(value or {}, ft),
                                disabled=hf.disabled)
    if not is_opaque(a) and short(a.type_url) not in DESCRIBED:
        return False, None
    kind, value = opaque_config(a)
    if kind == STATS:
        cfg: dict[str, Any] = {}
        for k, v in (value or {}).items():
            if k in STATS_KEYS:
                cfg[k] = bool(v)
            else:
                ft.warn(f"stats.PluginConfig {k} is not served (Istio's standard metrics are); ignored")
        if value is None:
            ft.warn("stats.PluginConfig from the control plane is kept opaque: its settings cannot be read; "
                    "Istio's standard metrics are served")
        return True, FilterSpec("istio_stats", hf.name or "istio.stats", cfg, disabled=hf.disabled)
    if kind == ALPN:
        # applied by the listener (alpn_of: its `istio_alpn` option), not as a filter
        if value is None:
            ft.warn("istio.alpn's config could not be read; the upstream ALPN protocols are not rewritten")
        return True, None
    return _lacking(hf, f, skipped, f"type {kind}", value is not None or short(a.type_url) in TYPED_STRUCTS)


def grpc_stats_config(value: dict[str, Any], f: Findings) -> dict[str, Any]:
    """Envoy's grpc_stats FilterConfig (as json_format writes it) as mosnx's grpc_stats settings."""
    cfg: dict[str, Any] = {}
    for k, v in value.items():
        if k in ("stats_for_all_methods", "emit_filter_state"):
            cfg[k] = bool(v)
        elif k == "individual_method_stats_allowlist":
            cfg[k] = {"services": [{"name": s.get("name", ""), "method_names": list(s.get("method_names", []))}
                                   for s in v.get("services", []) if isinstance(s, dict)]}
        else:
            f.warn(f"grpc_stats {k} is not served; ignored")
    return cfg


def _lacking(hf: Any, f: Findings, skipped: set[str], what: str, kept: bool = True) -> tuple[bool, None]:
    if hf.is_optional:
        skipped.add(hf.name)
        f.warn(f"HTTP filter {hf.name} ({what}) is not available in mosnx; "
               f"{'its config is kept opaque and ' if kept else ''}it is skipped (is_optional)")
        return True, None
    f.reject(f"HTTP filter {hf.name} ({what}) is not available in mosnx "
             "(mark it is_optional: true to run without it)")


def alpn_overrides(value: dict[str, Any] | None) -> dict[str, tuple[str, ...]]:
    """istio.alpn's alpn_override list as upstream protocol -> ALPN protocols to offer."""
    out: dict[str, tuple[str, ...]] = {}
    for item in (value or {}).get("alpn_override", []) or []:
        if not isinstance(item, dict):
            continue
        proto = str(item.get("upstream_protocol", "HTTP10"))
        names = item.get("alpn_override", [])
        if proto in UPSTREAM_PROTOCOLS and isinstance(names, list):
            out[proto] = tuple(str(n) for n in names)
    return out


def alpn_of(hcm: Any) -> dict[str, tuple[str, ...]]:
    """istio.alpn's overrides on an http_connection_manager (upstream protocol ->
    the ALPN protocols offered to an Istio mTLS peer), {} without the filter. A
    disabled filter overrides nothing."""
    for hf in hcm.http_filters:
        if hf.disabled or not hf.HasField("typed_config") or short(hf.typed_config.type_url) != ALPN:
            continue
        return alpn_overrides(opaque_config(hf.typed_config)[1])
    return {}


def network_kind(nf: Any) -> str | None:
    """The Istio extension a network filter entry is (istio.stats, metadata exchange,
    istio_authn), or None for any other."""
    a = nf.typed_config
    if not a.type_url:
        return None
    kind = opaque_config(a)[0] if is_opaque(a) else short(a.type_url)
    return kind if kind in (STATS, MX, AUTHN) else None


def network_filter(nf: Any, f: Findings) -> dict[str, Any] | None:
    """A network filter before the chain's last (which is http_connection_manager
    or tcp_proxy): the listener options it asks for (istio.stats: Istio's TCP
    metrics), or None; recognised Istio ones that do nothing are warned; any other
    (network_kind() None) rejects the listener."""
    a = nf.typed_config
    ft = f.at("typed_config")
    kind, value = (opaque_config(a) if a.type_url and (is_opaque(a) or short(a.type_url) in DESCRIBED)
                   else (short(a.type_url), None))
    if kind == STATS:
        for k in value or {}:
            ft.warn(f"stats.PluginConfig {k} is not served (Istio's standard TCP metrics are); ignored")
        return {"istio_stats": {}}
    if kind == MX:
        # served on the connections of a tcp_proxy chain that negotiate its protocol
        # (proxy.tcp.proxy); on an HTTP chain the HTTP exchange's headers say it
        return {"istio_mx": mx_protocol(value)}
    if kind == AUTHN:
        ft.warn("istio_authn is recognised: the mTLS peer is what mosnx's TLS layer records; nothing else to do")
        return None
    f.reject(f"network filter {nf.name or kind} ({kind}) is not available in mosnx "
             "(Envoy has no optional network filters: a listener with one it lacks is refused)")


def mx_protocol(value: dict[str, Any] | None) -> str:
    """The ALPN protocol a MetadataExchange config names (istio-peer-exchange when unset
    or unreadable)."""
    got = (value or {}).get("protocol")
    return str(got) if got else "istio-peer-exchange"


def cluster_filters(filters: Any, f: Findings) -> dict[str, Any]:
    """A cluster's upstream network filters (Envoy's Cluster.filters) as its options:
    istiod gives an outbound cluster Istio's metadata exchange (`istio_mx`: the ALPN
    protocol it runs on); any other filter rejects the cluster, as Envoy would a
    filter it lacks."""
    out: dict[str, Any] = {}
    for i, nf in enumerate(filters):
        fi = f.at("filters").at(i)
        a = nf.typed_config
        kind, value = (opaque_config(a) if a.type_url and (is_opaque(a) or short(a.type_url) in DESCRIBED)
                       else (short(a.type_url), None))
        if kind == MX:
            out["istio_mx"] = mx_protocol(value)
        else:
            fi.reject(f"upstream network filter {nf.name or kind} ({kind}) is not available in mosnx "
                      "(it takes Istio's metadata exchange only)")
    return out


def converted_settings(kind: str, listener: Any, config: Any) -> dict[str, Any]:
    """What `mosnx convert` adds to an Istio filter's YAML so it keeps what the
    bootstrap gave it: the node (when no xds: section will carry it) and the
    listener's direction, which mosnx.yaml has no listener field for."""
    if kind not in ("peer_metadata", "istio_stats"):
        return {}
    out: dict[str, Any] = {}
    raw = getattr(config, "raw", None) or {}
    node = raw.get("node") if isinstance(raw, dict) else None
    if getattr(config, "xds", None) is None and isinstance(node, dict) and (node.get("id") or node.get("metadata")):
        out["node"] = copy.deepcopy({k: node[k] for k in ("id", "metadata") if k in node})
    direction = listener.options.get("traffic_direction")
    if direction:
        if kind == "peer_metadata":
            out["direction"] = direction
        else:
            out["reporter"] = "destination" if direction == "INBOUND" else "source"
    return out


_describe()
