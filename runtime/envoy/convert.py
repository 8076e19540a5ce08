"""An Envoy bootstrap rewritten as mosnx's own config: a mosnx.yaml document, and
one .mdsl rule file per HTTP listener whose routes are more than one default route.

convert() works from the decoded resources (what Envoy wrote), and from the
translated Config for what the YAML holds as it is (clusters, filters, timeouts),
so the converted files serve what the bootstrap serves. A cluster or route name that
.mdsl cannot spell is rewritten to one it can (and said in a note). What the rule
language has no statement for (a hash policy, a route idle timeout) is listed in
the notes, with the warnings the bootstrap already gives.
"""
from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from typing import Any

from ..config.cluster import HealthCheck, OutlierDetection
from ..config.protocols import ALPN_PROTOCOLS, ClientTls, Pem, ServerTls
from ..logformat import JsonFormat
from ..model import ClusterConfig, Config, ListenerConfig
from .common import seconds
from .istio import converted_settings
from .protos import HttpConnectionManager, ROUTE

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


@dataclass
class Converted:
    yaml: dict[str, Any]
    rules: dict[str, str] = field(default_factory=dict)     # file name -> .mdsl text
    notes: list[str] = field(default_factory=list)


def _dur(s: float | None) -> str:
    if s is None:
        return "0s"
    ms = round(s * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t") \
        .replace("\r", "\\r") + '"'


class _Names:
    """Names .mdsl can spell, the same one for the same input."""

    def __init__(self, notes: list[str], what: str):
        self.map: dict[str, str] = {}
        self.used: set[str] = set()
        self.notes = notes
        self.what = what

    def __call__(self, name: str) -> str:
        if name in self.map:
            return self.map[name]
        new = name if _NAME.match(name) else (re.sub(r"[^A-Za-z0-9_-]", "_", name) or "_")
        if not re.match(r"[A-Za-z_]", new):
            new = "_" + new
        base, i = new, 2
        while new in self.used:
            new, i = f"{base}-{i}", i + 1
        if new != name:
            self.notes.append(f'{self.what} "{name}" is named "{new}"')
        self.map[name] = new
        self.used.add(new)
        return new


def convert(config: Config, resources: dict[str, dict[str, Any]], stem: str = "envoy") -> Converted:
    out = Converted(yaml={})
    clusters = _Names(out.notes, "cluster")
    if config.admin is not None and config.admin.port:
        out.yaml["admin"] = {"address": _addr(config.admin.host, config.admin.port)}
    elif config.admin is not None:
        out.notes.append("the admin API listens on port 0 (any free port), which mosnx.yaml cannot say; "
                         "admin: left out")
    if config.xds is not None and not config.xds.ads:
        out.notes.append("the listeners' secrets come over an SDS stream of their own, which mosnx.yaml "
                         "cannot say; xds: left out (mosnx runs the bootstrap as it is)")
    elif config.xds is not None and config.xds.unix_path is not None:
        out.notes.append(f"the ADS server is the Unix socket {config.xds.unix_path}, which mosnx.yaml's "
                         "xds.address (host:port) cannot say; xds: left out (mosnx runs the bootstrap as it is)")
    elif config.xds is not None:
        x = config.xds
        out.yaml["xds"] = {"address": _addr(x.host, x.port), "mode": x.mode,
                           "initial_fetch_timeout": _dur(x.initial_fetch_timeout),
                           "node": {"id": x.node.id, "cluster": x.node.cluster, "metadata": dict(x.node.metadata)}}
        t = x.tls
        if t is not None and any(isinstance(v, bytes) for v in (t.ca, t.cert, t.key)):
            out.notes.append("the ADS cluster's TLS material is inline, which mosnx.yaml's xds.tls (file paths) "
                             "cannot say; xds.tls: left out, so the converted stream is plaintext")
        elif t is not None:
            out.yaml["xds"]["tls"] = {k: v for k, v in (("ca", t.ca), ("cert", t.cert), ("key", t.key),
                                                         ("sni", t.sni)) if v}
    listeners: list[dict[str, Any]] = []
    for lc in config.listeners:
        if lc.protocol == "chains":
            out.notes.append(f'listener "{lc.name}" has several filter chains, which mosnx.yaml cannot say; '
                             "left out")
            continue
        d = _listener(lc, resources, out, clusters, stem)
        for item in d.get("filters", ()):           # Istio's keep their node and direction
            for kind, body in item.items():
                body.update(converted_settings(kind, lc, config))
        listeners.append(d)
    out.yaml["listeners"] = listeners
    out.yaml["clusters"] = [_cluster(c, clusters, out.notes) for c in config.clusters]
    return out


def _addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listener(lc: ListenerConfig, resources: dict[str, dict[str, Any]], out: Converted, clusters: _Names,
              stem: str) -> dict[str, Any]:
    d: dict[str, Any] = {"name": lc.name, "address": _addr(lc.host, lc.port), "protocol": lc.protocol}
    tls = lc.options.get("tls")
    if isinstance(tls, ServerTls):
        got = _server_tls(tls, f'listener "{lc.name}"', out.notes)
        if got is not None:
            d["tls"] = got
    if lc.access_log is not None:
        d["access_log"] = _access_log(lc, out.notes)
    for key, what in (("istio_alpn", "istio.alpn's ALPN overrides"), ("istio_mx", "Istio's TCP metadata exchange")):
        if lc.options.get(key):
            out.notes.append(f'listener "{lc.name}": {what} have no mosnx.yaml form; left out')
    if lc.protocol == "tcp" and lc.route is not None:
        r = lc.route
        d["route"] = ({"cluster": clusters(r.cluster)} if r.cluster else
                      {"weighted_clusters": [{"name": clusters(c), "weight": w} for c, w in r.weighted_clusters]})
        d["timeouts"] = {"idle": _dur(lc.timeouts.idle)}
        return d
    pn = lc.path_normalization
    d["path_normalization"] = {"normalize": pn.normalize, "merge_slashes": pn.merge_slashes,
                               "escaped_slashes": pn.escaped_slashes}
    t = lc.timeouts
    d["timeouts"] = {"request_headers": _dur(t.request_headers), "idle": _dur(t.idle), "drain": _dur(t.drain),
                     "stream_idle": _dur(t.stream_idle)}
    d["limits"] = {"request_headers": lc.limits.request_headers,
                   "request_headers_count": lc.limits.request_headers_count}
    if any(not f.own for f in lc.filters) or (lc.route_table is not None and lc.route_table.filter_names()):
        out.notes.append(f'listener "{lc.name}": per-route filter settings (typed_per_filter_config, cors) '
                         "have no mosnx.yaml form; left out")
    if any(f.own for f in lc.filters):
        d["filters"] = [{f.kind: {"name": f.name, **({"disabled": True} if f.disabled else {}), **f.config}}
                        for f in lc.filters if f.own]
    rc = _route_config(lc, resources)
    if rc is None:
        out.notes.append(f'listener "{lc.name}": its routes were not found; none written')
        return d
    default = _default_route(rc, clusters)
    if default is not None:
        d["route"] = default
        return d
    file = f"{stem}.{re.sub(r'[^A-Za-z0-9_-]', '_', lc.name)}.mdsl"
    out.rules[file] = _mdsl(rc, clusters, out.notes, lc.name)
    d["rules"] = [file]
    return d


def _access_log(lc: ListenerConfig, notes: list[str]) -> dict[str, Any]:
    al = lc.access_log
    assert al is not None
    d: dict[str, Any] = {"path": al.path}
    fmt = al.format
    if isinstance(fmt, JsonFormat):
        d["json_format"] = json.loads(fmt.text)
    elif fmt is not None:
        d["format"] = fmt.text[:-1] if fmt.text.endswith("\n") else fmt.text
    if fmt is not None and fmt.omit_empty:
        d["omit_empty_values"] = True
    if al.filter is not None:
        notes.append(f'listener "{lc.name}": the access-log filter ({al.filter.text}) has no mosnx.yaml form; '
                     "every stream is logged")
    return d


def _route_config(lc: ListenerConfig, resources: dict[str, dict[str, Any]]) -> Any | None:
    if lc.route_config in resources.get(ROUTE, {}):
        return resources[ROUTE][lc.route_config]
    from .protos import LISTENER
    lst = resources.get(LISTENER, {}).get(lc.name)
    if lst is None:
        return None
    for fc in lst.filter_chains[:1]:
        for nf in fc.filters:
            hcm = HttpConnectionManager()
            if nf.typed_config.Unpack(hcm) and hcm.HasField("route_config"):
                return hcm.route_config
    return None


_HEADER_EDITS = ("request_headers_to_add", "request_headers_to_remove", "response_headers_to_add",
                 "response_headers_to_remove")


def _default_route(rc: Any, clusters: _Names) -> dict[str, Any] | None:
    """The YAML route: when the whole table is one catch-all forwarding route."""
    if len(rc.virtual_hosts) != 1 or any(len(getattr(rc, k)) for k in _HEADER_EDITS):
        return None
    vh = rc.virtual_hosts[0]
    if list(vh.domains) != ["*"] or len(vh.routes) != 1 or any(len(getattr(vh, k)) for k in _HEADER_EDITS) \
            or vh.HasField("retry_policy"):
        return None
    r = vh.routes[0]
    m = r.match
    if r.WhichOneof("action") != "route" or any(len(getattr(r, k)) for k in _HEADER_EDITS) \
            or m.WhichOneof("path_specifier") != "prefix" or m.prefix not in ("", "/") or m.headers \
            or m.query_parameters or m.HasField("grpc"):
        return None
    a = r.route
    if a.hash_policy or a.HasField("idle_timeout") or a.WhichOneof("cluster_specifier") not in \
            ("cluster", "weighted_clusters", "cluster_header") or m.HasField("runtime_fraction") \
            or r.typed_per_filter_config or vh.typed_per_filter_config or vh.HasField("cors") \
            or a.HasField("cors"):
        return None
    d: dict[str, Any] = {}
    if a.cluster_header:
        d["cluster_header"] = a.cluster_header.lower()
    elif a.cluster:
        d["cluster"] = clusters(a.cluster)
    else:
        d["weighted_clusters"] = [{"name": clusters(c.name), "weight": c.weight.value}
                                  for c in a.weighted_clusters.clusters]
    d["timeout"] = _dur(seconds(a.timeout)) if a.HasField("timeout") else "15s"
    if a.prefix_rewrite:
        d["prefix_rewrite"] = a.prefix_rewrite
    if a.host_rewrite_literal:
        d["host_rewrite"] = a.host_rewrite_literal
    if a.HasField("regex_rewrite"):
        d["regex_rewrite"] = {"pattern": a.regex_rewrite.pattern.regex, "substitution": a.regex_rewrite.substitution}
    if a.HasField("retry_policy"):
        d["retry"] = _retry_yaml(a.retry_policy)
    if a.request_mirror_policies:
        d["mirror"] = [{"cluster": clusters(mp.cluster), "percent": _fraction(mp)} for mp in a.request_mirror_policies]
    return d


def _fraction(mp: Any) -> float:
    if not mp.HasField("runtime_fraction"):
        return 100.0
    dv = mp.runtime_fraction.default_value
    return 100.0 * dv.numerator / {0: 100, 1: 10_000, 2: 1_000_000}.get(dv.denominator, 100)


def _retry_on(rp: Any) -> list[str]:
    from ..routes import RETRY_ON
    return [c.strip() for c in rp.retry_on.split(",") if c.strip() in RETRY_ON] or ["connect-failure"]


def _retry_yaml(rp: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"retry_on": _retry_on(rp), "num_retries": rp.num_retries.value if rp.HasField("num_retries") else 1}
    if rp.HasField("per_try_timeout"):
        d["per_try_timeout"] = _dur(seconds(rp.per_try_timeout))
    if rp.retriable_status_codes:
        d["retriable_status_codes"] = list(rp.retriable_status_codes)
    return d


# ---- .mdsl ----

_PSEUDO = {":method": "request.method", ":authority": "request.host", "host": "request.host",
           ":path": "request.path", ":scheme": "request.scheme"}


def _string_test(field: str, sm: Any) -> str | None:
    kind = sm.WhichOneof("match_pattern")
    if kind == "safe_regex":
        pat = sm.safe_regex.regex
        return f"{field} ~ {_q(('(?i)' if sm.ignore_case else '') + pat)}"
    if kind not in ("exact", "prefix", "suffix", "contains"):
        return None
    want = getattr(sm, kind)
    if sm.ignore_case:
        field, want = f"lower({field})", want.lower()
    op = "==" if kind == "exact" else kind
    return f"{field} {op} {_q(want)}"


def _header_cond(h: Any) -> str | None:
    name = h.name.lower()
    field = _PSEUDO.get(name, f"request.headers[{_q(name)}]")
    kind = h.WhichOneof("header_match_specifier")
    if kind is None or kind == "present_match":
        present = True if kind is None else h.present_match
        cond = f"exists({field})"
        if not present:
            cond = f"not {cond}"
    elif kind == "string_match":
        cond = _string_test(field, h.string_match) or ""
    elif kind == "exact_match":
        cond = f"{field} == {_q(h.exact_match)}"
    elif kind == "prefix_match":
        cond = f"{field} prefix {_q(h.prefix_match)}"
    elif kind == "suffix_match":
        cond = f"{field} suffix {_q(h.suffix_match)}"
    elif kind == "contains_match":
        cond = f"{field} contains {_q(h.contains_match)}"
    elif kind == "safe_regex_match":
        cond = f"{field} ~ {_q(h.safe_regex_match.regex)}"
    else:
        return None
    if not cond:
        return None
    return f"not ({cond})" if h.invert_match else cond


def _conditions(m: Any, notes: list[str], where: str) -> tuple[list[str], str]:
    """The route's conditions and the path prefix it matched (for rewrites)."""
    conds: list[str] = []
    cs = m.case_sensitive.value if m.HasField("case_sensitive") else True
    path = "request.url_path" if cs else "lower(request.url_path)"
    kind = m.WhichOneof("path_specifier")
    matched = ""
    if kind == "prefix":
        matched = m.prefix
        if m.prefix not in ("", "/"):
            conds.append(f"{path} prefix {_q(m.prefix if cs else m.prefix.lower())}")
    elif kind == "path":
        matched = m.path
        conds.append(f"{path} == {_q(m.path if cs else m.path.lower())}")
    elif kind == "path_separated_prefix":
        matched = m.path_separated_prefix
        conds.append(f"{path} segment_prefix {_q(matched if cs else matched.lower())}")
    elif kind == "safe_regex":
        conds.append(f"request.url_path ~ {_q(('' if cs else '(?i)') + m.safe_regex.regex)}")
    for h in m.headers:
        c = _header_cond(h)
        if c is None:
            notes.append(f"{where}: a header match on {h.name!r} has no .mdsl form; left out")
        else:
            conds.append(c)
    for q in m.query_parameters:
        field = f"request.query[{_q(q.name)}]"
        if q.WhichOneof("query_parameter_match_specifier") == "string_match":
            conds.append(_string_test(field, q.string_match) or f"exists({field})")
        else:
            conds.append(f"exists({field})")
    if m.HasField("grpc"):
        conds.append('request.headers["content-type"] prefix "application/grpc"')
    if m.HasField("runtime_fraction"):
        notes.append(f"{where}: runtime_fraction has no .mdsl form; the route takes every request it matches")
    return conds, matched


def _edits(adds: Any, removes: Any, side: str) -> list[str]:
    out = [f"remove {side}.headers[{_q(n.lower())}]" for n in removes]
    for hv in adds:
        name, value = hv.header.key.lower(), hv.header.value
        target = f"{side}.headers[{_q(name)}]"
        action = hv.append_action
        if hv.HasField("append"):
            action = 0 if hv.append.value else 2
        if action == 0:
            out.append(f"add {target} = {_q(value)}")
        elif action == 2:
            out.append(f"set {target} = {_q(value)}")
        elif action == 1:
            out.append(f"when not exists({target}) {{ set {target} = {_q(value)} }}")
        else:
            out.append(f"when exists({target}) {{ set {target} = {_q(value)} }}")
    return out


def _mdsl(rc: Any, clusters: _Names, notes: list[str], listener: str) -> str:
    lines = [f"# routes of listener {listener!r}, converted from Envoy RouteConfiguration {rc.name!r}"]
    top_req = _edits(rc.request_headers_to_add, rc.request_headers_to_remove, "request")
    top_resp = _edits(rc.response_headers_to_add, rc.response_headers_to_remove, "response")
    vnames = _Names(notes, "virtual host")
    for vh in rc.virtual_hosts:
        name = vnames(vh.name or "vhost")
        domains = ", ".join(_q(d) for d in vh.domains)
        lines.append(f"vhost {name} domains {domains} {{")
        req = _edits(vh.request_headers_to_add, vh.request_headers_to_remove, "request")
        resp = _edits(vh.response_headers_to_add, vh.response_headers_to_remove, "response") + top_resp
        rnames = _Names(notes, f"route of {name}")
        for i, r in enumerate(vh.routes):
            where = f"{name} route {i}"
            conds, matched = _conditions(r.match, notes, where)
            rname = rnames(r.name or f"r{i}")
            head = f"  route {rname}" + (f" when {' and '.join(conds)}" if conds else "")
            body = _action(r, vh, clusters, matched, notes, where)
            # Envoy edits the upstream request after routing: config, then vhost, then route
            body += [s for s in top_req + req + _edits(r.request_headers_to_add, r.request_headers_to_remove,
                                                          "request")]
            body += _edits(r.response_headers_to_add, r.response_headers_to_remove, "response") + resp
            lines.append(head + " {")
            lines.extend("    " + s for s in body)
            lines.append("  }")
        lines.append("}")
    return "\n".join(lines) + "\n"


def _action(r: Any, vh: Any, clusters: _Names, matched: str, notes: list[str], where: str) -> list[str]:
    kind = r.WhichOneof("action")
    if kind == "direct_response":
        d = r.direct_response
        body = d.body.inline_string or d.body.inline_bytes.decode("utf-8", "replace")
        return [f"respond {d.status}" + (f" {_q(body)}" if body else "")]
    if kind == "redirect":
        rd = r.redirect
        code = {0: 301, 1: 302, 2: 303, 3: 307, 4: 308}.get(rd.response_code, 301)
        parts = [f"redirect {code}"]
        if rd.https_redirect or rd.scheme_redirect:
            parts.append(f"scheme {_q('https' if rd.https_redirect else rd.scheme_redirect)}")
        if rd.host_redirect:
            parts.append(f"host {_q(rd.host_redirect)}")
        if rd.path_redirect:
            parts.append(f"path {_q(rd.path_redirect)}")
        elif rd.prefix_rewrite:
            parts.append(f"prefix {_q(rd.prefix_rewrite)}")
        if rd.strip_query:
            parts.append("strip_query")
        return [" ".join(parts)]
    a = r.route
    out: list[str] = []
    if a.cluster_header:
        notes.append(f"{where}: cluster_header has no .mdsl form; the route answers 503")
        return ["respond 503"]
    if a.cluster:
        out.append(f"to {clusters(a.cluster)}")
    else:
        pairs = ", ".join(f"{clusters(c.name)}: {c.weight.value}" for c in a.weighted_clusters.clusters)
        out.append(f"split {{ {pairs} }}")
    out.append(f"timeout {_dur(seconds(a.timeout)) if a.HasField('timeout') else '15s'}")
    rp = a.retry_policy if a.HasField("retry_policy") else (vh.retry_policy if vh.HasField("retry_policy") else None)
    if rp is not None:
        n = rp.num_retries.value if rp.HasField("num_retries") else 1
        on = _retry_on(rp)
        if rp.retriable_status_codes:
            on.append("status {" + ", ".join(str(c) for c in rp.retriable_status_codes) + "}")
        line = f"retry {n} on {', '.join(on)}"
        if rp.HasField("per_try_timeout") and seconds(rp.per_try_timeout) > 0:
            line += f" per_try {_dur(seconds(rp.per_try_timeout))}"
        out.append(line)
    for mp in a.request_mirror_policies:
        out.append(f"mirror {clusters(mp.cluster)} {_fraction(mp):g}%")
    if a.host_rewrite_literal:
        out.append(f"host_rewrite {_q(a.host_rewrite_literal)}")
    if a.prefix_rewrite:
        out.append(f"rewrite prefix {_q(matched or '/')} => {_q(a.prefix_rewrite)}")
    elif a.HasField("regex_rewrite"):
        out.append(f"rewrite regex {_q(a.regex_rewrite.pattern.regex)} => {_q(a.regex_rewrite.substitution)}")
    if a.hash_policy:
        notes.append(f"{where}: hash_policy has no .mdsl form; left out")
    if a.HasField("idle_timeout"):
        notes.append(f"{where}: idle_timeout has no .mdsl form; left out")
    return out


# ---- clusters ----

def _tls_files(where: str, notes: list[str], *material: Any) -> bool:
    if any(isinstance(m, Pem) for m in material):
        notes.append(f"{where}: TLS certificates or keys given inline (or by a secret) have no mosnx.yaml "
                     "form, which takes file paths; tls: left out")
        return False
    return True


def _alpn(alpn: tuple[str, ...], where: str, notes: list[str]) -> list[str]:
    kept = [p for p in alpn if p in ALPN_PROTOCOLS]
    if len(kept) != len(alpn):
        notes.append(f"{where}: ALPN protocols other than h2 and http/1.1 have no mosnx.yaml form; left out")
    return kept


def _server_tls(t: ServerTls, where: str, notes: list[str]) -> dict[str, Any] | None:
    if not _tls_files(where, notes, t.cert, t.key, t.client_ca):
        return None
    d: dict[str, Any] = {"cert": t.cert, "key": t.key}
    alpn = _alpn(t.alpn, where, notes)
    if alpn:
        d["alpn"] = alpn
    if t.client_ca:
        d["client_ca"] = t.client_ca
        d["require_client_cert"] = t.require_client_cert
    if t.client_san or t.min_version or t.max_version:
        notes.append(f"{where}: client certificate SAN matchers and TLS versions have no mosnx.yaml form; left out")
    return d


def _client_tls(t: ClientTls, where: str, notes: list[str]) -> dict[str, Any] | None:
    if not _tls_files(where, notes, t.ca, t.cert, t.key):
        return None
    d: dict[str, Any] = {"verify": t.verify}
    for key in ("ca", "sni", "cert", "key"):
        if getattr(t, key):
            d[key] = getattr(t, key)
    alpn = _alpn(t.alpn, where, notes)
    if alpn:
        d["alpn"] = alpn
    if t.san or t.min_version or t.max_version or (t.verify and not t.verify_hostname):
        notes.append(f"{where}: SAN matchers and TLS versions have no mosnx.yaml form, and mosnx.yaml checks "
                     "the endpoint's host name (Envoy does not); left as mosnx.yaml does it")
    return d


def _cluster(c: ClusterConfig, names: _Names, notes: list[str]) -> dict[str, Any]:
    d: dict[str, Any] = {"name": names(c.name),
                         "endpoints": [e.address if e.weight == 1 else {"address": e.address, "weight": e.weight}
                                       for e in c.endpoints],
                         "connect_timeout": _dur(c.connect_timeout), "lb": c.lb, "protocol": c.protocol}
    if c.max_requests_per_connection:
        d["max_requests_per_connection"] = c.max_requests_per_connection
    d["circuit_breakers"] = dataclasses.asdict(c.circuit_breakers)
    for key, value in c.options.items():
        if isinstance(value, HealthCheck):
            d[key] = _health(value)
        elif isinstance(value, OutlierDetection):
            d[key] = {k: (_dur(v) if k in ("interval", "base_ejection_time", "max_ejection_time") else v)
                      for k, v in dataclasses.asdict(value).items()}
        elif isinstance(value, float) and key == "dns_refresh_rate":
            d[key] = _dur(value)
        elif isinstance(value, ClientTls):
            got = _client_tls(value, f'cluster "{c.name}"', notes)
            if got is not None:
                d[key] = got
        elif key == "tls_matches":
            notes.append(f'cluster "{c.name}": transport_socket_matches have no mosnx.yaml form; left out')
        elif key == "istio_mx":
            notes.append(f'cluster "{c.name}": Istio\'s TCP metadata exchange has no mosnx.yaml form; left out')
        else:
            d[key] = value
    return d


def _health(h: HealthCheck) -> dict[str, Any]:
    d: dict[str, Any] = {"interval": _dur(h.interval), "timeout": _dur(h.timeout),
                         "unhealthy_threshold": h.unhealthy_threshold, "healthy_threshold": h.healthy_threshold}
    if h.http is not None:
        http: dict[str, Any] = {"path": h.http.path}
        if h.http.expected:
            http["expected"] = sorted(h.http.expected)
        if h.http.host:
            http["host"] = h.http.host
        d["http"] = http
    elif h.grpc is not None:
        d["grpc"] = {"service_name": h.grpc.service_name, **({"authority": h.grpc.authority} if h.grpc.authority else {})}
    else:
        d["tcp"] = {}
    return d
