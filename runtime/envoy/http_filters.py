"""Envoy HTTP filters -> FilterSpecs, and their per-route settings -> FilterOverrides.

An http_connection_manager's http_filters become the listener's FilterSpecs, by
name (the name typed_per_filter_config keys use): router (last), fault,
local_ratelimit, cors and wasm; Istio's own (istio.stats, the metadata exchange,
istio.alpn, grpc_stats and any opaque type) are runtime.envoy.istio's. Another
filter is skipped with a warning when is_optional, otherwise the listener is rejected.

typed_per_filter_config, at route-configuration, vhost, route and weighted-cluster
level, becomes FilterOverrides (runtime.routes), translated here without knowing the
listener (RDS tables come on their own); check_route_filters() then meets a table
with its listener's filters: settings for a filter mosnx runs must be of its type
(else the listener is rejected: ignoring them would run the filter as the control
plane did not mean on that route), settings for a filter mosnx skipped or that the
chain lacks are a warning. runtime.route_filters puts them to work.
"""
from __future__ import annotations

from typing import Any

from google.protobuf import wrappers_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2

from ..model import FilterSpec
from ..routes import CORS_POLICY, FilterOverride, RouteTable
from . import authn
from .common import regex_of, seconds
from . import istio
from .findings import Findings
from .protos import fault_pb2, local_rate_limit_pb2, wasm_pb2
from .rbac import HTTP_RBAC, HTTP_RBAC_PER_ROUTE, http_rbac_pb2, http_rbac_per_route
from .rbac import http_filter as rbac_filter

ROUTER = "envoy.extensions.filters.http.router.v3.Router"
FAULT = "envoy.extensions.filters.http.fault.v3.HTTPFault"
RATELIMIT = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
WASM = "envoy.extensions.filters.http.wasm.v3.Wasm"
CORS = "envoy.extensions.filters.http.cors.v3.Cors"
CORS_POLICY_TYPE = "envoy.extensions.filters.http.cors.v3.CorsPolicy"
FILTER_CONFIG = "envoy.config.route.v3.FilterConfig"
DENOMINATOR = {0: 100, 1: 10_000, 2: 1_000_000}
DENOMINATOR_NAME = {0: "HUNDRED", 1: "TEN_THOUSAND", 2: "MILLION"}
# the mosnx filter kind each per-route settings type is for
PER_ROUTE_KIND = {FAULT: "fault", RATELIMIT: "rate_limit", CORS_POLICY_TYPE: "cors"}


def http_filters(hcm: Any, f: Findings) -> tuple[list[FilterSpec], set[str]]:
    """The listener's filters, and the names of those skipped (optional, not in mosnx)."""
    out: list[FilterSpec] = []
    skipped: set[str] = set()
    router = False
    for i, hf in enumerate(hcm.http_filters):
        fh = f.at("http_filters").at(i)
        url = hf.typed_config.type_url.rsplit("/", 1)[-1] if hf.HasField("typed_config") else ""
        handled, spec = istio.http_filter(hf, fh, skipped)
        if handled:
            if spec is not None:
                out.append(spec)
            continue
        if url == ROUTER:
            router = True
            if i != len(hcm.http_filters) - 1:
                fh.reject("the router must be the last HTTP filter")
            continue
        if url == FAULT:
            fault = fault_pb2.HTTPFault()
            hf.typed_config.Unpack(fault)
            if fault.HasField("delay") or fault.HasField("abort"):
                out.append(FilterSpec("fault", hf.name or "fault", fault_config(fault, fh.at("typed_config")),
                                      disabled=hf.disabled))
            else:
                # as Istio sends it: no fault of its own, only the routes' (typed_per_filter_config)
                fh.at("typed_config").only(fault, set())
                out.append(FilterSpec("fault", hf.name or "fault", {}, disabled=hf.disabled, own=False))
        elif url == RATELIMIT:
            rl = local_rate_limit_pb2.LocalRateLimit()
            hf.typed_config.Unpack(rl)
            cfg = ratelimit_config(rl, fh.at("typed_config"))
            # without a token bucket of its own it limits only routes that give one
            out.append(FilterSpec("rate_limit", hf.name or "rate_limit", cfg or {}, disabled=hf.disabled,
                                  own=cfg is not None))
        elif url == CORS:
            fh.at("typed_config").only(_unpacked(hf.typed_config, cors_pb2.Cors()), set())
            # Envoy's CORS filter has no policy of its own: the routes' policies are it
            out.append(FilterSpec("cors", hf.name or "cors", {}, disabled=hf.disabled, own=False))
        elif url == WASM:
            wf = wasm_pb2.Wasm()
            hf.typed_config.Unpack(wf)
            out.append(FilterSpec("wasm", hf.name or "wasm", _wasm(wf, fh.at("typed_config")), disabled=hf.disabled))
        elif url == HTTP_RBAC:
            out.append(rbac_filter(hf, fh))
        elif url in authn.FILTERS:
            kind, translate = authn.FILTERS[url]
            out.append(FilterSpec(kind, hf.name or kind, translate(hf.typed_config, fh.at("typed_config")),
                                  disabled=hf.disabled))
        elif hf.is_optional:
            skipped.add(hf.name)
            fh.warn(f"HTTP filter {url or hf.name} is not available in mosnx; skipped (is_optional)")
        else:
            fh.reject(f"HTTP filter {url or hf.name} is not available in mosnx "
                      "(mark it is_optional: true to run without it)")
    if not router:
        f.reject("the HTTP filters must end with envoy.filters.http.router", "http_filters")
    return out, skipped


def check_route_filters(table: RouteTable, specs: list[FilterSpec], skipped: set[str], f: Findings) -> None:
    """Meet the table's per-route filter settings with the listener's filters (see the module docstring)."""
    by_name = {s.name: s for s in specs}
    kinds = {s.kind for s in specs}
    for vh in table.vhosts:
        for r in vh.routes:
            levels = [r.filters, *r.cluster_filters.values()]
            for per in levels:
                for name, ov in per.items():
                    if name == CORS_POLICY:
                        if "cors" not in kinds:
                            f.warn(f'route "{r.name}" has a CORS policy but the listener has no CORS filter; '
                                   "ignored", "http_filters")
                        continue
                    spec = by_name.get(name)
                    if spec is None:
                        why = ("is skipped (is_optional)" if name in skipped
                               else "is not among the listener's HTTP filters")
                        f.warn(f'route "{r.name}": typed_per_filter_config for "{name}", which {why}; ignored',
                               "http_filters")
                    elif ov.disabled:
                        continue            # off there: what else it says does not matter
                    elif ov.kind is None and ov.type_name:
                        msg = (f'route "{r.name}": typed_per_filter_config "{name}" of type {ov.type_name} '
                               f"cannot configure the {spec.kind} filter")
                        if ov.optional:
                            f.warn(msg + "; ignored (is_optional)", "http_filters")
                        else:
                            f.reject(msg + " (mosnx takes FilterConfig, or " +
                                     _per_route_type(spec.kind) + ")", "http_filters")
                    elif ov.kind is not None and ov.kind != spec.kind:
                        f.reject(f'route "{r.name}": typed_per_filter_config "{name}" is {ov.kind} settings, '
                                 f"but that filter is {spec.kind}", "http_filters")


def _per_route_type(kind: str) -> str:
    names = [t.rsplit(".", 1)[-1] for t, k in PER_ROUTE_KIND.items() if k == kind]
    return " or ".join(names) if names else "no settings of its own"


def per_filter_configs(tpfc: Any, f: Findings) -> dict[str, FilterOverride]:
    """A typed_per_filter_config map (filter name -> Any) as FilterOverrides by name."""
    out: dict[str, FilterOverride] = {}
    for name in sorted(tpfc):
        out[name] = _override(tpfc[name], f.at(name), False)
    return out


def _unpacked(a: Any, into: Any) -> Any:
    a.Unpack(into)
    return into


def _override(a: Any, f: Findings, optional: bool) -> FilterOverride:
    url = a.type_url.rsplit("/", 1)[-1]
    if url == FILTER_CONFIG:
        fc = _unpacked(a, route_components_pb2.FilterConfig())
        f.only(fc, {"config", "is_optional", "disabled"})
        if fc.HasField("config"):
            inner = _override(fc.config, f.at("config"), fc.is_optional)
            return FilterOverride(inner.kind, inner.config, fc.disabled if fc.disabled else None,
                                  inner.type_name, fc.is_optional)
        if not fc.disabled:
            f.reject("a FilterConfig needs config, or disabled: true (Envoy refuses it empty too)")
        return FilterOverride(disabled=True, optional=fc.is_optional)
    if url == FAULT:
        fl = _unpacked(a, fault_pb2.HTTPFault())
        if not fl.HasField("delay") and not fl.HasField("abort"):
            f.only(fl, set())
            return FilterOverride("fault", disabled=True)       # no fault to inject there
        return FilterOverride("fault", fault_config(fl, f))
    if url == RATELIMIT:
        cfg = ratelimit_config(_unpacked(a, local_rate_limit_pb2.LocalRateLimit()), f, per_route=True)
        # no token bucket on a route: nothing to limit there
        return FilterOverride("rate_limit", cfg) if cfg is not None else FilterOverride("rate_limit", disabled=True)
    if url == CORS_POLICY_TYPE:
        return FilterOverride("cors", cors_policy(_unpacked(a, cors_pb2.CorsPolicy()), f))
    if url == HTTP_RBAC_PER_ROUTE:
        cfg = http_rbac_per_route(_unpacked(a, http_rbac_pb2.RBACPerRoute()), f)
        # no rbac on a route: the filter is off there, as in Envoy
        return FilterOverride("rbac", cfg) if cfg is not None else FilterOverride("rbac", disabled=True)
    if url and istio.is_opaque(a):
        url = istio.opaque_config(a)[0]         # the type it stands for, not TypedStruct
    return FilterOverride(type_name=url or "(none)", optional=optional)


def _percent(p: Any) -> float:
    return 100.0 * p.numerator / DENOMINATOR.get(p.denominator, 100)


def _fraction(p: Any) -> dict[str, Any]:
    return {"numerator": p.numerator, "denominator": DENOMINATOR_NAME.get(p.denominator, "HUNDRED")}


def fault_config(fl: Any, f: Findings) -> dict[str, Any]:
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
        f.reject("a fault filter needs delay or abort")
    return cfg


def ratelimit_config(rl: Any, f: Findings, per_route: bool = False) -> dict[str, Any] | None:
    """mosnx rate_limit settings, or None when there is nothing to limit: no token
    bucket, or filter_enabled at 0%."""
    f.only(rl, {"stat_prefix", "token_bucket", "filter_enabled", "filter_enforced", "status"})
    if rl.HasField("filter_enabled") and rl.filter_enabled.default_value.numerator == 0:
        return None
    if not rl.HasField("token_bucket"):
        if not per_route:
            f.warn("no token_bucket: the filter limits only the routes whose typed_per_filter_config gives one")
        return None
    if rl.HasField("filter_enforced") and _percent(rl.filter_enforced.default_value) < 100.0:
        f.warn("filter_enforced below 100% is not served: every request over the limit is refused",
               "filter_enforced")
    tb = rl.token_bucket
    cfg: dict[str, Any] = {"token_bucket": {
        "max_tokens": tb.max_tokens,
        "tokens_per_fill": tb.tokens_per_fill.value if tb.HasField("tokens_per_fill") else 1,
        "fill_interval": seconds(tb.fill_interval)}}
    if rl.HasField("status") and rl.status.code:
        cfg["status"] = rl.status.code
    return cfg


def _origin(m: Any, f: Findings) -> dict[str, Any]:
    kind = m.WhichOneof("match_pattern")
    if kind is None or kind == "custom":
        f.reject("a string matcher needs exact, prefix, suffix, contains or safe_regex")
    if kind == "safe_regex":
        regex_of(m.safe_regex, f.at("safe_regex"))      # a bad pattern is rejected here, at its field
        out: dict[str, Any] = {"safe_regex": m.safe_regex.regex}
    else:
        out = {kind: getattr(m, kind)}
    if m.ignore_case:
        out["ignore_case"] = True
    return out


def cors_policy(p: Any, f: Findings) -> dict[str, Any]:
    """An Envoy CorsPolicy (the filter's per-route one, or the route's and vhost's
    `cors` field) as the mosnx cors filter's settings."""
    f.only(p, {"allow_origin_string_match", "allow_methods", "allow_headers", "expose_headers", "max_age",
               "allow_credentials", "filter_enabled", "shadow_enabled", "allow_private_network_access",
               "forward_not_matching_preflights"})
    cfg: dict[str, Any] = {}
    if p.allow_origin_string_match:
        cfg["allow_origin_string_match"] = [_origin(m, f.at("allow_origin_string_match").at(i))
                                            for i, m in enumerate(p.allow_origin_string_match)]
    for key in ("allow_methods", "allow_headers", "expose_headers"):
        if getattr(p, key):
            cfg[key] = getattr(p, key)
    if p.max_age:
        if not p.max_age.isdigit():
            f.reject("max_age must be a number of seconds", "max_age")
        cfg["max_age"] = p.max_age
    for key in ("allow_credentials", "allow_private_network_access", "forward_not_matching_preflights"):
        if p.HasField(key):
            cfg[key] = bool(getattr(p, key).value)
    for key in ("filter_enabled", "shadow_enabled"):
        if p.HasField(key):
            rf = getattr(p, key)
            if rf.runtime_key:
                f.at(key).warn("runtime_key is not served (no runtime): default_value applies", "runtime_key")
            cfg[key] = _fraction(rf.default_value)
    return cfg


def _any_text(a: Any) -> str | None:
    """A plugin's configuration: a StringValue's text (what Envoy hands the plugin)."""
    if not a.type_url:
        return None
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
