"""Envoy v3 bootstraps as mosnx configs: recognised by their top-level keys, decoded
with the generated Bootstrap message, translated into runtime.model.Config.

is_bootstrap() decides by keys alone (Envoy's static_resources, dynamic_resources,
node, admin, ... and none of mosnx's own). load_bootstrap_text() returns the Config
and the warnings (valid Envoy that mosnx ignores), or raises ConfigError whose
diagnostics name file:line:col of the offending key: a json_format error is mapped
back through the document's positions, and a translation Rejection through its
field path. Static listeners and clusters come from static_resources (a static listener
may go unnamed, as in Envoy: static_listener_name() names it); resources in
files (lds_config / cds_config / rds / eds `path_config_source`) are read and
translated the same way, as Envoy's file-based xDS does; dynamic_resources.ads_config
becomes Config.xds. Reads only the files the bootstrap names. layered_runtime's static
layers are the runtime values translation reads; its rtds_layers come over the stream
(runtime.envoy.runtime_layers; the message is kept in XdsConfig.static_resources).

Two things Istio's agent writes into every bootstrap are taken here, before translation,
and said in a warning each: a static cluster whose endpoints are all Unix sockets
(`pipe`) is left out of the clusters routes may name, since mosnx's clusters connect
over TCP only; the ADS cluster among them becomes XdsConfig.unix_path, a socket the
gRPC client does reach, and every one of them (with the static TCP clusters) is a
gRPC target an SDS config source may name (XdsConfig.grpc_targets: Istio's `sds-grpc`,
served by proxy.xds.sds_stream). A static listener whose secrets come over a stream
(ADS, or an SDS config source naming such a target) waits for them, as one waiting for
its routes does; a bootstrap without ADS whose listeners need the SDS stream gets an
XdsConfig with `ads` False. The ADS cluster's UpstreamTlsContext becomes XdsConfig.tls
(TLS to the control plane). A response compressor HTTP filter in a static listener is
skipped as if it were is_optional: it changes only the encoding of what is sent, never
what.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from ..diagnostics import ConfigError, Diagnostic, Span
from ..config.protocols import ClientTls, Pem
from ..model import AdminConfig, Config, XdsConfig, XdsNode, XdsTls
from ..stat_tags import ENVOY, ENVOY_STATS, StatsConfig, StatTag
from .apply import apply
from .clusters import eds_name, is_eds
from .common import seconds
from .decode import Path, Positions, parse, read
from .findings import INVALID, REJECTED, UNSUPPORTED, WAITING, Findings, Rejected, Sink
from . import runtime_layers
from .protos import CLUSTER, ENDPOINT, HCM, LISTENER, RESOURCE_TYPES, ROUTE, SECRET, Bootstrap, HttpConnectionManager
from .secrets import redact_document, stream_sources
from .tls import secret_names

ENVOY_KEYS = frozenset({"static_resources", "dynamic_resources", "node", "admin", "layered_runtime",
                        "cluster_manager", "stats_sinks", "stats_config", "overload_manager", "tracing",
                        "node_context_params", "hds_config", "flags_path", "watchdogs", "bootstrap_extensions",
                        "default_regex_engine", "stats_flush_interval", "fatal_actions", "header_prefix"})
# keys only mosnx.yaml has: a document with any of them is mosnx's own
MOSNX_KEYS = frozenset({"listeners", "clusters", "workers", "demo_upstream", "fast_path", "xds"})
SUPPORTED = frozenset({"static_resources", "dynamic_resources", "node", "admin", "stats_config",
                       "layered_runtime"})
ADS_MODES = {2: "sotw", 3: "delta"}
# HTTP filters that only re-encode a response: skipped, with a warning, when mosnx lacks them
COMPRESSOR = "type.googleapis.com/envoy.extensions.filters.http.compressor.v3.Compressor"


def is_bootstrap(data: Any) -> bool:
    return (isinstance(data, dict) and bool(ENVOY_KEYS & set(data))
            and not (MOSNX_KEYS & set(data)) and (set(data) - {"admin"}) != set())


def _name_of(type_url: str, msg: Any) -> str:
    return str(msg.cluster_name if type_url == ENDPOINT else msg.name)


class _Load:
    """One bootstrap load: the resources met so far, where each came from, findings."""

    def __init__(self, path: str):
        self.path = path
        self.base_dir = os.path.dirname(os.path.abspath(path)) if not path.startswith("<") else os.getcwd()
        self.errors: list[Diagnostic] = []
        self.sink = Sink()
        self.resources: dict[str, dict[str, Any]] = {t: {} for t in RESOURCE_TYPES}
        self.where: dict[tuple[str, str], tuple[Positions | None, Path]] = {}
        self.files: set[str] = set()

    def add(self, type_url: str, msg: Any, positions: Positions | None, base: Path) -> None:
        name = _name_of(type_url, msg)
        self.resources[type_url][name] = msg
        self.where[(type_url, name)] = (positions, base)

    def locate(self, type_url: str, name: str, field_path: str) -> Span | None:
        positions, base = self.where.get((type_url, name), (None, ()))
        return positions.locate(field_path, base) if positions is not None else None

    def resource_file(self, file: str, span: Span | None) -> None:
        """A file of xDS resources ({version_info, resources: [{"@type": ...}, ...]})."""
        full = os.path.join(self.base_dir, file)
        if full in self.files:
            return
        self.files.add(full)
        try:
            with open(full, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as e:
            self.errors.append(Diagnostic(span, "C007", f'cannot read "{file}": {e}'))
            return
        data, positions, errs = read(text, full)
        self.errors.extend(errs)
        if data is None or errs:
            return
        items = data.get("resources") if isinstance(data, dict) else None
        if not isinstance(items, list):
            self.errors.append(Diagnostic(positions.at(()) if positions else None, INVALID,
                                          "an xDS resource file needs resources: [...]"))
            return
        for i, item in enumerate(items):
            t = item.get("@type") if isinstance(item, dict) else None
            cls = RESOURCE_TYPES.get(t) if isinstance(t, str) else None
            if cls is None or not isinstance(item, dict):
                self.errors.append(Diagnostic(positions.at(("resources", i)) if positions else None, INVALID,
                                              f'resources[{i}]: "@type" must be one of {", ".join(RESOURCE_TYPES)}'))
                continue
            body = {k: v for k, v in item.items() if k != "@type"}
            msg, errs = parse(body, cls, positions, ("resources", i), f"resources[{i}]")
            self.errors.extend(errs)
            if msg is not None and t is not None:
                self.add(t, msg, positions, ("resources", i))
                self.follow(t, msg, positions, ("resources", i))

    def follow(self, type_url: str, msg: Any, positions: Positions | None, base: Path) -> None:
        """The files an HCM's rds or an EDS cluster's eds_config name."""
        if type_url == CLUSTER and msg.eds_cluster_config.eds_config.HasField("path_config_source"):
            p = msg.eds_cluster_config.eds_config.path_config_source.path
            self.resource_file(p, positions.at(base + ("eds_cluster_config",)) if positions else None)
        if type_url == LISTENER:
            for fc in msg.filter_chains:
                for nf in fc.filters:
                    hcm = HttpConnectionManager()
                    if nf.typed_config.Unpack(hcm) and hcm.WhichOneof("route_specifier") == "rds":
                        cs = hcm.rds.config_source
                        if cs.HasField("path_config_source"):
                            self.resource_file(cs.path_config_source.path,
                                               positions.at(base + ("filter_chains",)) if positions else None)


def load_bootstrap_text(text: str, path: str = "<string>") -> tuple[Config, list[Diagnostic]]:
    data, positions, errs = read(text, path)
    if data is None or errs:
        raise ConfigError(errs)
    return load_bootstrap_data(data, positions, path)


def load_bootstrap_data(data: Any, positions: Positions | None, path: str) -> tuple[Config, list[Diagnostic]]:
    config, warnings, _msg, _resources = _load(data, positions, path)
    return config, warnings


def load_bootstrap_resources(text: str, path: str) -> tuple[Config, Any, dict[str, dict[str, Any]]]:
    """The Config, the decoded Bootstrap and every resource (static and from files),
    by type URL and name; ConfigError as load_bootstrap_text()."""
    data, positions, errs = read(text, path)
    if data is None or errs:
        raise ConfigError(errs)
    config, _warnings, msg, resources = _load(data, positions, path)
    return config, msg, resources


def _load(data: Any, positions: Positions | None,
          path: str) -> tuple[Config, list[Diagnostic], Any, dict[str, dict[str, Any]]]:
    msg, errs = parse(data, Bootstrap, positions, (), "bootstrap")
    if msg is None:
        raise ConfigError(errs)
    ld = _Load(path)
    ld.sink.locate = lambda p: positions.locate(p) if positions else None
    f = Findings("bootstrap", os.path.basename(path), "", ld.sink)
    f.only(msg, SUPPORTED)
    sr = msg.static_resources  # type: ignore[attr-defined]  # a Bootstrap
    f.at("static_resources").only(sr, {"listeners", "clusters", "secrets"})
    for i, s in enumerate(sr.secrets):
        ld.add(SECRET, s, positions, ("static_resources", "secrets", i))
    pipes: dict[str, str] = {}      # static clusters of Unix sockets only: name -> the first path
    for i, c in enumerate(sr.clusters):
        pipe = _pipe_only(c)
        if pipe is not None:
            pipes[c.name] = pipe
            ld.where[(CLUSTER, c.name)] = (positions, ("static_resources", "clusters", i))
            continue
        ld.add(CLUSTER, c, positions, ("static_resources", "clusters", i))
        ld.follow(CLUSTER, c, positions, ("static_resources", "clusters", i))
    taken = {lst.name for lst in sr.listeners if lst.name}
    for i, lst in enumerate(sr.listeners):
        lst = _compressors_optional(lst)
        if not lst.name:
            lst = _named(lst, static_listener_name(lst, i, taken))
        ld.add(LISTENER, lst, positions, ("static_resources", "listeners", i))
        ld.follow(LISTENER, lst, positions, ("static_resources", "listeners", i))
    dr = msg.dynamic_resources  # type: ignore[attr-defined]  # a Bootstrap
    fd = f.at("dynamic_resources")
    fd.only(dr, {"lds_config", "cds_config", "ads_config"})
    for key in ("lds_config", "cds_config"):
        if dr.HasField(key):
            cs = getattr(dr, key)
            kind = cs.WhichOneof("config_source_specifier")
            if kind == "path_config_source" or kind == "path":
                p = cs.path_config_source.path if kind == "path_config_source" else cs.path
                ld.resource_file(p, positions.at(("dynamic_resources", key)) if positions else None)
            elif kind != "ads":
                fd.at(key).warn(f"{kind} config sources are not supported (ads and path_config_source are)")
    admin = _admin(msg, f)
    try:
        stats = _stats(msg, f)
    except Rejected as e:
        ld.errors.append(Diagnostic(positions.locate(e.rejection.field_path) if positions else None, REJECTED,
                                    e.rejection.message))
        stats = ENVOY_STATS
    # what /config_dump shows of the document: private keys written inline are not shown
    base = Config(path=os.path.abspath(path) if not path.startswith("<") else path, admin=admin,
                  listeners=(), clusters=(), raw=redact_document(data) if isinstance(data, dict) else {},
                  stats=stats)
    sink = Sink()          # apply()'s warnings, placed by the resource they name (_placed)
    targets = _grpc_targets(pipes, sr.clusters)
    layers = runtime_layers.layers_of(msg.layered_runtime, f.at("layered_runtime"))  # type: ignore[attr-defined]
    sink.runtime = runtime_layers.merged(layers, {})     # the static layers; RTDS ones come later
    waiting = _waiting(ld, dr.HasField("ads_config"), targets)
    resources = {t: {n: m for n, m in rs.items() if n not in waiting.get(t, {}) or t == CLUSTER}
                 for t, rs in ld.resources.items() if t != SECRET}
    config, rejections = apply(base, resources, sink, static_secrets=ld.resources[SECRET])
    errors = list(ld.errors)
    warnings_: list[Diagnostic] = []
    for rj in rejections:
        span = ld.locate(rj.type_url, rj.name, rj.field_path)
        errors.append(Diagnostic(span, REJECTED, str(rj), source_line=_line(span)))
    # nothing will bring what a resource outside the stream waits for: an error here, but
    # for a static cluster whose certificates come from an SDS server of its own (Istio's
    # agent serves them on sds-grpc), which is left out with a warning
    for rj in sink.waiting:
        span = ld.locate(rj.type_url, rj.name, rj.field_path)
        if rj.type_url == CLUSTER and rj.message.startswith('Secret "'):
            warnings_.append(Diagnostic(span, UNSUPPORTED, f"{rj}: a static cluster does not wait for its "
                                        "secrets in mosnx, so this cluster is left out", "warning", _line(span)))
            continue
        errors.append(Diagnostic(span, REJECTED, str(rj), source_line=_line(span)))
    warnings = [_placed(d, ld) for d in ld.sink.warnings + [d for d in sink.warnings if d.code != WAITING]]
    warnings += warnings_
    ads_cluster = _ads_cluster(msg)
    for name, pipe in pipes.items():
        span = ld.locate(CLUSTER, name, "load_assignment")
        what = (f"the ADS stream connects to unix:{pipe}" if name == ads_cluster
                else f"routes cannot name it; an SDS config source can: the SDS stream connects to unix:{pipe}")
        warnings.append(Diagnostic(span, UNSUPPORTED, f'Cluster "{name}" load_assignment: its endpoints are Unix '
                                   f"sockets (pipe), which mosnx's clusters do not connect to: left out ({what})",
                                   "warning", _line(span)))
    try:
        xds = _xds(msg, f, config, pipes, targets, bool(waiting.get(LISTENER)))
    except Rejected as e:
        errors.append(Diagnostic(positions.locate(e.rejection.field_path) if positions else None, REJECTED,
                                 e.rejection.message))
        xds = None
    if errors:
        raise ConfigError(errors + warnings)
    if xds is not None:
        if layers:      # RTDS layers come over the stream, and apply() merges them with these
            waiting[runtime_layers.LAYERED_RUNTIME] = {"layered_runtime": msg.layered_runtime}  # type: ignore[attr-defined]
        xds = dataclasses.replace(xds, static_resources=waiting)
    return (dataclasses.replace(config, xds=xds, sources=tuple(sorted(ld.files))), warnings, msg,
            ld.resources)


def _grpc_targets(pipes: dict[str, str], clusters: Any) -> dict[str, str]:
    """Static clusters a gRPC config source may name, as gRPC targets."""
    out = {name: f"unix:{path}" for name, path in pipes.items()}
    for c in clusters:
        if c.name in out or c.WhichOneof("cluster_discovery_type") != "type" or c.type not in (0, 1, 2):
            continue            # STATIC, STRICT_DNS, LOGICAL_DNS: an address to dial
        for loc in c.load_assignment.endpoints:
            for lbe in loc.lb_endpoints:
                sa = lbe.endpoint.address.socket_address
                if sa.address and sa.port_value:
                    host = f"[{sa.address}]" if ":" in sa.address else sa.address
                    out.setdefault(c.name, f"{host}:{sa.port_value}")
    return out


def _stream_listeners(ld: _Load, ads: bool, targets: dict[str, str]) -> dict[str, Any]:
    """The static listeners whose TLS secrets all come over a stream: over ADS (with
    one), or the SDS stream to a known target. Said in a warning at each."""
    out: dict[str, Any] = {}
    for name, lst in ld.resources[LISTENER].items():
        chains = [*lst.filter_chains]
        if lst.HasField("default_filter_chain"):
            chains.append(lst.default_filter_chain)
        names: set[str] = set()
        for fc in chains:
            if fc.HasField("transport_socket"):
                names |= secret_names(fc.transport_socket)
        if not names:
            continue
        sources = stream_sources([lst], [])
        if all(sources.get(n) in targets or (ads and n not in sources) for n in names):
            out[name] = lst
            how = {f"the SDS stream to {sources[n]}" if n in sources else "the ADS stream" for n in names}
            ld.sink.warnings.append(Diagnostic(
                ld.locate(LISTENER, name, "name"), WAITING,
                f'listener "{name}" serves once Secret{"s" if len(names) > 1 else ""} '
                f'{", ".join(repr(n) for n in sorted(names))} come{"" if len(names) > 1 else "s"} over '
                f'{" and ".join(sorted(how))}', "warning"))
    return out


def _waiting(ld: _Load, ads: bool, targets: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The listeners whose routes and the EDS clusters whose endpoints come over the
    ADS stream: a listener waits for its RouteConfiguration (left out until apply()
    has it), a cluster starts with no endpoints; and the listeners whose secrets come
    over a stream wait for them. Said in a warning at each."""
    out: dict[str, dict[str, Any]] = {LISTENER: {}, CLUSTER: {}}
    out[LISTENER].update(_stream_listeners(ld, ads, targets))
    if not ads:
        if out[LISTENER]:
            out[SECRET] = dict(ld.resources[SECRET])
        return out
    # what the control plane's TLS contexts may name without an sds_config
    out[SECRET] = dict(ld.resources[SECRET])
    for name, lst in ld.resources[LISTENER].items():
        for fc in lst.filter_chains[:1]:
            for nf in fc.filters:
                hcm = HttpConnectionManager()
                if (nf.typed_config.Unpack(hcm) and hcm.WhichOneof("route_specifier") == "rds"
                        and hcm.rds.config_source.WhichOneof("config_source_specifier") == "ads"
                        and hcm.rds.route_config_name not in ld.resources[ROUTE] and name not in out[LISTENER]):
                    out[LISTENER][name] = lst
                    ld.sink.warnings.append(Diagnostic(
                        ld.locate(LISTENER, name, "name"), WAITING,
                        f'listener "{name}" serves once RouteConfiguration "{hcm.rds.route_config_name}" '
                        "comes over the ADS stream", "warning"))
    for name, c in ld.resources[CLUSTER].items():
        if is_eds(c) and c.eds_cluster_config.eds_config.WhichOneof("config_source_specifier") == "ads" \
                and eds_name(c) not in ld.resources[ENDPOINT]:
            out[CLUSTER][name] = c
    return out


def _line(span: Span | None) -> str | None:
    from ..diagnostics import source_line
    return source_line(span.path, span.line) if span is not None and not span.path.startswith("<") else None


def _placed(d: Diagnostic, ld: _Load) -> Diagnostic:
    """A warning from apply() carries its resource in the message; place it by the field path."""
    if d.span is not None or d.code != UNSUPPORTED:
        return d
    for (t, name), (positions, base) in ld.where.items():
        what = f'{t.rsplit(".", 1)[-1]} "{name}"'
        if d.message.startswith(what) and positions is not None:
            rest = d.message[len(what):].lstrip()
            field = rest.split(":", 1)[0] if not rest.startswith(":") else ""
            span = positions.locate(field, base)
            return Diagnostic(span, d.code, d.message, d.severity, _line(span))
    return d


def _stats(msg: Any, f: Findings) -> StatsConfig:
    """How /stats/prometheus names series: Envoy's names, with stats_config's tags."""
    if not msg.HasField("stats_config"):
        return ENVOY_STATS
    sc = msg.stats_config
    fs = f.at("stats_config")
    fs.only(sc, {"stats_tags", "use_all_default_tags"})
    tags = []
    for i, spec in enumerate(sc.stats_tags):
        kind = spec.WhichOneof("tag_value")
        try:
            tags.append(StatTag(spec.tag_name, spec.regex if kind == "regex" else None,
                                spec.fixed_value if kind == "fixed_value" else None))
        except ValueError as e:
            fs.at("stats_tags").at(i).reject(str(e))
    use_all = sc.use_all_default_tags.value if sc.HasField("use_all_default_tags") else True
    try:
        return StatsConfig(ENVOY, tuple(tags), use_all)
    except ValueError as e:
        fs.reject(str(e), "stats_tags")


def _admin(msg: Any, f: Findings) -> AdminConfig | None:
    if not msg.HasField("admin"):
        return None
    a = msg.admin
    fa = f.at("admin")
    fa.only(a, {"address"}, "not supported for the admin API; ignored")
    if not a.HasField("address"):
        return None
    sa = a.address.socket_address
    return AdminConfig(host=sa.address or "127.0.0.1", port=sa.port_value)


def _pipe_only(c: Any) -> str | None:
    """The first Unix socket path of a STATIC cluster whose endpoints are all pipes, else None."""
    if c.WhichOneof("cluster_discovery_type") != "type" or c.type != 0:
        return None
    addrs = [lbe.endpoint.address for loc in c.load_assignment.endpoints for lbe in loc.lb_endpoints]
    if not addrs or any(a.WhichOneof("address") != "pipe" for a in addrs):
        return None
    return str(addrs[0].pipe.path)


def static_listener_name(lst: Any, index: int, taken: set[str]) -> str:
    """The name of a static listener that has none (Envoy gives it a UUID; istioctl's
    dumps show Istio's 15021 and 15090 listeners so): `<address>_<port>`, as Istio names
    its listeners, so stats and reloads keep it; `static_resources.listeners[i]` when the
    listener has no socket address or another listener has that name. Adds it to `taken`."""
    sa = lst.address.socket_address
    name = f"{sa.address}_{sa.port_value}" if lst.address.HasField("socket_address") else ""
    if not name or name in taken:
        name = f"static_resources.listeners[{index}]"
    taken.add(name)
    return name


def _named(lst: Any, name: str) -> Any:
    out = type(lst)()
    out.CopyFrom(lst)
    out.name = name
    return out


def _compressors_optional(lst: Any) -> Any:
    """`lst`, or a copy whose HCMs mark their compressor filters is_optional (so the
    translator skips them with a warning at their own index)."""
    out = None
    for i, fc in enumerate(lst.filter_chains):
        for j, nf in enumerate(fc.filters):
            if nf.typed_config.type_url != HCM:
                continue
            hcm = HttpConnectionManager()
            nf.typed_config.Unpack(hcm)
            marked = [hf for hf in hcm.http_filters
                      if hf.typed_config.type_url == COMPRESSOR and not hf.is_optional]
            if not marked:
                continue
            for hf in marked:
                hf.is_optional = True
            if out is None:
                out = type(lst)()
                out.CopyFrom(lst)
            out.filter_chains[i].filters[j].typed_config.Pack(hcm)
    return lst if out is None else out


def _ads_cluster(msg: Any) -> str | None:
    ads = msg.dynamic_resources.ads_config
    if not ads.grpc_services or ads.grpc_services[0].WhichOneof("target_specifier") != "envoy_grpc":
        return None
    return str(ads.grpc_services[0].envoy_grpc.cluster_name)


def _node(msg: Any, f: Findings) -> XdsNode:
    try:
        metadata = _struct(msg.node.metadata)
    except ValueError:
        # YAML's .nan and .inf parse into a Struct, but have no JSON (nor control plane) form
        f.at("node").reject("numbers in metadata must be finite (NaN and infinity have no JSON form)", "metadata")
        metadata = {}
    return XdsNode(id=msg.node.id, cluster=msg.node.cluster, metadata=metadata)


def _pem_of(v: str | Pem | None) -> str | bytes | None:
    return v.data if isinstance(v, Pem) else v


def _xds_tls(cluster: Any, f: Findings) -> XdsTls | None:
    """The ADS cluster's UpstreamTlsContext as TLS to the control plane."""
    t = cluster.options.get("tls") if cluster is not None else None
    if not isinstance(t, ClientTls):
        return None
    for what in ("ca", "cert", "key"):
        v = getattr(t, what)
        if isinstance(v, str) and not os.path.isfile(v):
            f.reject(f'the ADS cluster "{cluster.name}" names a TLS {what} file "{v}" that is not there',
                     "grpc_services")
    return XdsTls(ca=_pem_of(t.ca), cert=_pem_of(t.cert), key=_pem_of(t.key), sni=t.sni or "")


def _xds(msg: Any, f: Findings, config: Config, pipes: dict[str, str], targets: dict[str, str],
         streamed: bool) -> XdsConfig | None:
    dr = msg.dynamic_resources
    if not dr.HasField("ads_config"):
        if not streamed:
            return None
        # no ADS: the SDS stream alone brings what the static listeners wait for
        return XdsConfig(host="", port=0, ads=False, node=_node(msg, f), lds=False, cds=False,
                         initial_fetch_timeout=0.0, grpc_targets=targets)
    ads = dr.ads_config
    fa = f.at("dynamic_resources").at("ads_config")
    fa.only(ads, {"api_type", "transport_api_version", "grpc_services", "set_node_on_first_message_only"})
    mode = ADS_MODES.get(ads.api_type)
    if mode is None:
        fa.reject("api_type must be GRPC or DELTA_GRPC", "api_type")
    if not ads.grpc_services:
        fa.reject("ads_config needs grpc_services", "grpc_services")
    gs = ads.grpc_services[0]
    fg = fa.at("grpc_services").at(0)
    if gs.WhichOneof("target_specifier") != "envoy_grpc":
        fg.reject("only envoy_grpc (a static cluster) is supported", "google_grpc")
    name = gs.envoy_grpc.cluster_name
    cluster = next((c for c in config.clusters if c.name == name), None)
    if name not in pipes and (cluster is None or not cluster.endpoints):
        fg.at("envoy_grpc").reject(f'cluster_name "{name}" names no static cluster with an endpoint',
                                   "cluster_name")
    host, port = (cluster.endpoints[0].host, cluster.endpoints[0].port) if cluster is not None else ("", 0)
    node = _node(msg, f)
    timeout = 15.0
    for key in ("lds_config", "cds_config"):
        cs = getattr(dr, key)
        if dr.HasField(key) and cs.HasField("initial_fetch_timeout"):
            timeout = seconds(cs.initial_fetch_timeout)
    return XdsConfig(host=host, port=port, unix_path=pipes.get(name), mode=mode, node=node,
                     initial_fetch_timeout=timeout,
                     set_node_on_first_message_only=ads.set_node_on_first_message_only,
                     lds=dr.lds_config.WhichOneof("config_source_specifier") == "ads",
                     cds=dr.cds_config.WhichOneof("config_source_specifier") == "ads", cluster=name,
                     tls=_xds_tls(cluster, fa) if name not in pipes else None, grpc_targets=targets)


def _struct(s: Any) -> dict[str, Any]:
    from google.protobuf import json_format
    d = json_format.MessageToDict(s)
    return d if isinstance(d, dict) else {}
