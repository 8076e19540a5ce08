"""Envoy Listener -> runtime.model.ListenerConfig.

A listener serves one filter chain whose last network filter is either an
http_connection_manager or a tcp_proxy. HTTP routes come inline (route_config) or
by RDS name: `routes` maps names to the tables already translated, and a name not
in it raises Waiting (a Rejected that is not an error: the caller holds the
listener back until it arrives, as Envoy warms it). HTTP
filters mosnx has (router, fault, local_ratelimit) are kept; another filter is
skipped with a warning when is_optional, otherwise the listener is rejected.
Envoy's defaults win where they differ from mosnx's (no path normalisation).
"""
from __future__ import annotations

from typing import Any

from ..model import FilterSpec, Limits, ListenerConfig, PathNormalization, Timeouts
from ..routes import RouteAction, RouteTable
from . import authn
from .common import seconds, socket_address
from .findings import Findings, Rejection, Waiting
from .protos import HCM, TCP_PROXY, HttpConnectionManager, fault_pb2, local_rate_limit_pb2, tcp_proxy_pb2, wasm_pb2
from .routes import translate_route_config

ROUTER = "envoy.extensions.filters.http.router.v3.Router"
FAULT = "envoy.extensions.filters.http.fault.v3.HTTPFault"
RATELIMIT = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
WASM = "envoy.extensions.filters.http.wasm.v3.Wasm"
ESCAPED = {0: "keep", 1: "keep", 2: "reject", 3: "unescape_and_redirect", 4: "unescape_and_forward"}
DENOMINATOR = {0: 100, 1: 10_000, 2: 1_000_000}


def rds_name(listener: Any) -> str | None:
    """The RouteConfiguration an HTTP listener asks RDS for, if any."""
    for fc in listener.filter_chains[:1]:
        for nf in fc.filters:
            if nf.typed_config.type_url.endswith("." + "HttpConnectionManager"):
                hcm = HttpConnectionManager()
                if nf.typed_config.Unpack(hcm) and hcm.WhichOneof("route_specifier") == "rds":
                    return hcm.rds.route_config_name
    return None


def translate_listener(lst: Any, f: Findings, routes: dict[str, RouteTable] | None = None) -> ListenerConfig:
    if not lst.name:
        f.reject("a listener needs a name", "name")
    f.only(lst, {"name", "address", "filter_chains", "stat_prefix"})
    if not lst.HasField("address"):
        f.reject("a listener needs an address", "address")
    host, port = socket_address(lst.address, f.at("address"))
    if not 0 < port < 65536:
        f.at("address").reject(f"port {port} is outside 1..65535 (mosnx binds the port it is given)")
    if len(lst.filter_chains) != 1:
        f.reject("mosnx serves exactly one filter chain per listener", "filter_chains")
    fc = lst.filter_chains[0]
    ff = f.at("filter_chains").at(0)
    ff.only(fc, {"filters", "name"})
    if not fc.filters:
        ff.reject("a filter chain needs a network filter", "filters")
    for i, nf in enumerate(fc.filters[:-1]):
        ff.at("filters").at(i).reject("network filters before the last are not supported")
    last = fc.filters[-1]
    fl = ff.at("filters").at(len(fc.filters) - 1)
    if last.WhichOneof("config_type") != "typed_config":
        fl.reject("a network filter needs a typed_config")
    url = last.typed_config.type_url
    base = {"name": lst.name, "host": host, "port": port}
    if url == HCM:
        hcm = HttpConnectionManager()
        last.typed_config.Unpack(hcm)
        return _http(hcm, fl.at("typed_config"), base, routes or {})
    if url == TCP_PROXY:
        tp = tcp_proxy_pb2.TcpProxy()
        last.typed_config.Unpack(tp)
        return _tcp(tp, fl.at("typed_config"), base)
    fl.reject(f"network filter {url.rsplit('/', 1)[-1]} is not supported "
              "(http_connection_manager and tcp_proxy are)", "typed_config")


def _tcp(tp: Any, f: Findings, base: dict[str, Any]) -> ListenerConfig:
    f.only(tp, {"stat_prefix", "cluster", "weighted_clusters", "idle_timeout"})
    kind = tp.WhichOneof("cluster_specifier")
    if kind == "cluster":
        action = RouteAction(cluster=tp.cluster, timeout=None)
    elif kind == "weighted_clusters":
        pairs = tuple((c.name, c.weight) for c in tp.weighted_clusters.clusters)
        if sum(w for _, w in pairs) <= 0:
            f.reject("the weights must add up to more than 0", "weighted_clusters")
        action = RouteAction(weighted_clusters=pairs, timeout=None)
    else:
        f.reject("tcp_proxy needs cluster or weighted_clusters")
    timeouts = Timeouts(idle=seconds(tp.idle_timeout)) if tp.HasField("idle_timeout") else Timeouts(idle=3600.0)
    return ListenerConfig(protocol="tcp", route=action, timeouts=timeouts, **base)


def _http(hcm: Any, f: Findings, base: dict[str, Any], routes: dict[str, RouteTable]) -> ListenerConfig:
    f.only(hcm, {"stat_prefix", "codec_type", "route_config", "rds", "http_filters", "normalize_path",
                 "merge_slashes", "path_with_escaped_slashes_action", "request_headers_timeout",
                 "stream_idle_timeout", "drain_timeout", "common_http_protocol_options",
                 "max_request_headers_kb", "use_remote_address", "generate_request_id"})
    kind = hcm.WhichOneof("route_specifier")
    if kind == "route_config":
        name = hcm.route_config.name or base["name"]
        table = translate_route_config(hcm.route_config, f.at("route_config"))
    elif kind == "rds":
        name = hcm.rds.route_config_name
        if not name:
            f.at("rds").reject("rds needs a route_config_name", "route_config_name")
        got = routes.get(name)
        if got is None:
            fr = f.at("rds").at("route_config_name")
            raise Waiting(Rejection(fr.type_url, fr.name, fr.path, f'RouteConfiguration "{name}" has not been received'))
        table = got
    else:
        f.reject("http_connection_manager needs route_config or rds" + (f" ({kind} is not supported)" if kind else ""))
    filters = _filters(hcm, f)
    pn = PathNormalization(normalize=hcm.normalize_path.value if hcm.HasField("normalize_path") else False,
                           merge_slashes=hcm.merge_slashes,
                           escaped_slashes=ESCAPED.get(hcm.path_with_escaped_slashes_action, "keep"))
    t: dict[str, float] = {}
    if hcm.HasField("request_headers_timeout") and seconds(hcm.request_headers_timeout) > 0:
        t["request_headers"] = seconds(hcm.request_headers_timeout)
    if hcm.HasField("stream_idle_timeout"):
        t["stream_idle"] = seconds(hcm.stream_idle_timeout)
    if hcm.HasField("drain_timeout"):
        t["drain"] = seconds(hcm.drain_timeout)
    limits: dict[str, int] = {}
    if hcm.HasField("common_http_protocol_options"):
        cp = hcm.common_http_protocol_options
        f.at("common_http_protocol_options").only(cp, {"idle_timeout", "max_headers_count"})
        if cp.HasField("idle_timeout"):
            t["idle"] = seconds(cp.idle_timeout)
        if cp.HasField("max_headers_count"):
            limits["request_headers_count"] = max(1, cp.max_headers_count.value)
    if hcm.HasField("max_request_headers_kb"):
        limits["request_headers"] = max(1, hcm.max_request_headers_kb.value) * 1024
    try:
        return ListenerConfig(protocol="http", filters=tuple(filters), path_normalization=pn,
                              timeouts=Timeouts(**t), limits=Limits(**limits), route_table=table,
                              route_config=name, **base)
    except ValueError as e:
        f.reject(str(e))


def _filters(hcm: Any, f: Findings) -> list[FilterSpec]:
    out: list[FilterSpec] = []
    router = False
    for i, hf in enumerate(hcm.http_filters):
        fh = f.at("http_filters").at(i)
        url = hf.typed_config.type_url.rsplit("/", 1)[-1] if hf.HasField("typed_config") else ""
        if url == ROUTER:
            router = True
            if i != len(hcm.http_filters) - 1:
                fh.reject("the router must be the last HTTP filter")
            continue
        if url == FAULT:
            fault = fault_pb2.HTTPFault()
            hf.typed_config.Unpack(fault)
            out.append(FilterSpec("fault", hf.name or "fault", _fault(fault, fh.at("typed_config")),
                                  disabled=hf.disabled))
        elif url == RATELIMIT:
            rl = local_rate_limit_pb2.LocalRateLimit()
            hf.typed_config.Unpack(rl)
            cfg = _ratelimit(rl, fh.at("typed_config"))
            if cfg is not None:
                out.append(FilterSpec("rate_limit", hf.name or "rate_limit", cfg, disabled=hf.disabled))
        elif url == WASM:
            wf = wasm_pb2.Wasm()
            hf.typed_config.Unpack(wf)
            out.append(FilterSpec("wasm", hf.name or "wasm", _wasm(wf, fh.at("typed_config")), disabled=hf.disabled))
        elif url in authn.FILTERS:
            kind, translate = authn.FILTERS[url]
            out.append(FilterSpec(kind, hf.name or kind, translate(hf.typed_config, fh.at("typed_config")),
                                  disabled=hf.disabled))
        elif hf.is_optional:
            fh.warn(f"HTTP filter {url or hf.name} is not available in mosnx; skipped (is_optional)")
        else:
            fh.reject(f"HTTP filter {url or hf.name} is not available in mosnx "
                      "(mark it is_optional: true to run without it)")
    if not router:
        f.reject("the HTTP filters must end with envoy.filters.http.router", "http_filters")
    return out


def _percent(p: Any) -> float:
    return 100.0 * p.numerator / DENOMINATOR.get(p.denominator, 100)


def _fault(fl: Any, f: Findings) -> dict[str, Any]:
    f.only(fl, {"delay", "abort"})
    cfg: dict[str, Any] = {}
    if fl.HasField("delay"):
        d = fl.delay
        kind = d.WhichOneof("fault_delay_secifier")
        sec: dict[str, Any] = {"percentage": _percent(d.percentage)} if d.HasField("percentage") else {}
        if kind == "fixed_delay":
            sec["fixed_delay"] = seconds(d.fixed_delay)
        elif kind == "header_delay":
            sec["header_delay"] = {}
        cfg["delay"] = sec
    if fl.HasField("abort"):
        a = fl.abort
        kind = a.WhichOneof("error_type")
        sec = {"percentage": _percent(a.percentage)} if a.HasField("percentage") else {}
        if kind == "http_status":
            sec["http_status"] = a.http_status
        elif kind == "header_abort":
            sec["header_abort"] = {}
        else:
            f.at("abort").reject(f"abort by {kind} is not supported (http_status and header_abort are)")
        cfg["abort"] = sec
    if not cfg:
        f.reject("a fault filter here needs delay or abort (per-route fault settings are not supported)")
    return cfg


def _ratelimit(rl: Any, f: Findings) -> dict[str, Any] | None:
    f.only(rl, {"stat_prefix", "token_bucket", "filter_enabled", "filter_enforced", "status"})
    if not rl.HasField("token_bucket"):
        f.warn("no token_bucket at the listener: per-route rate limits are not supported; the filter does nothing")
        return None
    tb = rl.token_bucket
    cfg: dict[str, Any] = {"token_bucket": {
        "max_tokens": tb.max_tokens,
        "tokens_per_fill": tb.tokens_per_fill.value if tb.HasField("tokens_per_fill") else 1,
        "fill_interval": seconds(tb.fill_interval)}}
    if rl.HasField("status") and rl.status.code:
        cfg["status"] = rl.status.code
    return cfg


def _any_text(a: Any) -> str | None:
    """A plugin's configuration: a StringValue's text (what Envoy hands the plugin)."""
    if not a.type_url:
        return None
    from google.protobuf import wrappers_pb2
    sv = wrappers_pb2.StringValue()
    if a.Unpack(sv):
        return str(sv.value)
    return None


def _wasm(w: Any, f: Findings) -> dict[str, Any]:
    """Envoy's Wasm filter as mosnx's wasm filter: the module from a local file."""
    f.only(w, {"config"})
    c = w.config
    fc = f.at("config")
    fc.only(c, {"name", "root_id", "vm_config", "configuration", "fail_open", "failure_policy"})
    vm = c.vm_config
    fv = fc.at("vm_config")
    fv.only(vm, {"vm_id", "runtime", "code", "configuration"})
    if vm.code.WhichOneof("specifier") != "local" or vm.code.local.WhichOneof("specifier") != "filename":
        fv.reject("the module must be a local filename (code.local.filename)", "code")
    cfg: dict[str, Any] = {"module": vm.code.local.filename, "root_id": c.root_id, "vm_id": vm.vm_id,
                           "fail_open": c.fail_open or c.failure_policy == 3}
    for key, a, at in (("config", c.configuration, fc), ("vm_config", vm.configuration, fv)):
        text = _any_text(a)
        if text is not None:
            cfg[key] = text
        elif a.type_url:
            at.warn("only a google.protobuf.StringValue configuration reaches the plugin; ignored", "configuration")
    return cfg
