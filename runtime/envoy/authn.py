"""Envoy's jwt_authn and ext_authz HTTP filters -> the config of mosnx's filters of those kinds.

Each function takes the unpacked message and returns the plain-data config the
filter's factory parses (runtime/filters/jwt_authn.py, ext_authz.py), so YAML
and xDS share one parser. Fields whose absence would make mosnx let through a
request Envoy refuses (subjects, require_expiration, max_lifetime, header rule
matches, a request body for the check) reject the listener; fields that only
add information are warned about and ignored.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_authn_pb2

from .common import seconds
from .findings import Findings

JWT_AUTHN = "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
EXT_AUTHZ = "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"

_STRICTER = "is not supported by mosnx; it would let through tokens Envoy refuses"


def _duration(d: Any) -> str:
    return f"{seconds(d)}s"


def jwt_authn(ja: Any, f: Findings) -> dict[str, Any]:
    f.only(ja, {"providers", "rules", "requirement_map", "bypass_cors_preflight", "strip_failure_response",
                "stat_prefix"})
    if ja.filter_state_rules.name:
        f.reject("filter_state_rules are not supported", "filter_state_rules")
    providers = {name: _provider(p, f.at("providers").at(name)) for name, p in ja.providers.items()}
    cfg: dict[str, Any] = {"providers": providers}
    if ja.requirement_map:
        cfg["requirement_map"] = {n: _requirement(r, f.at("requirement_map").at(n))
                                  for n, r in ja.requirement_map.items()}
    rules = []
    for i, rule in enumerate(ja.rules):
        fr = f.at("rules").at(i)
        fr.only(rule, {"match", "requires", "requirement_name"})
        rules.append({"match": _match(rule.match, fr.at("match"))})
        if rule.HasField("requires"):
            rules[-1]["requires"] = _requirement(rule.requires, fr.at("requires"))
        elif rule.requirement_name:
            rules[-1]["requirement_name"] = rule.requirement_name
    if rules:
        cfg["rules"] = rules
    if ja.bypass_cors_preflight:
        cfg["bypass_cors_preflight"] = True
    if ja.strip_failure_response:
        cfg["strip_failure_response"] = True
    return cfg


def _provider(p: Any, f: Findings) -> dict[str, Any]:
    for field in ("subjects", "max_lifetime"):
        if p.HasField(field):
            f.reject(f"{field} {_STRICTER}", field)
    if p.require_expiration:
        f.reject(f"require_expiration {_STRICTER}", "require_expiration")
    f.only(p, {"issuer", "audiences", "remote_jwks", "local_jwks", "forward", "from_headers", "from_params",
               "forward_payload_header", "payload_in_metadata", "clock_skew_seconds"})
    out: dict[str, Any] = {}
    if p.issuer:
        out["issuer"] = p.issuer
    if p.audiences:
        out["audiences"] = list(p.audiences)
    kind = p.WhichOneof("jwks_source_specifier")
    if kind == "local_jwks":
        src = p.local_jwks.WhichOneof("specifier")
        if src == "inline_string":
            out["local_jwks"] = {"inline_string": p.local_jwks.inline_string}
        elif src == "filename":
            out["local_jwks"] = {"filename": p.local_jwks.filename}
        elif src == "inline_bytes":
            out["local_jwks"] = {"inline_string": p.local_jwks.inline_bytes.decode("utf-8", "replace")}
        else:
            f.at("local_jwks").reject("local_jwks needs inline_string, inline_bytes or filename")
    elif kind == "remote_jwks":
        rj = p.remote_jwks
        fr = f.at("remote_jwks")
        fr.only(rj, {"http_uri", "cache_duration"})
        hu = rj.http_uri
        if not hu.uri or not hu.cluster:
            fr.reject("http_uri needs uri and cluster", "http_uri")
        r: dict[str, Any] = {"http_uri": {"uri": hu.uri, "cluster": hu.cluster}}
        if hu.HasField("timeout") and seconds(hu.timeout) > 0:
            r["http_uri"]["timeout"] = _duration(hu.timeout)
        if rj.HasField("cache_duration") and seconds(rj.cache_duration) > 0:
            r["cache_duration"] = _duration(rj.cache_duration)
        out["remote_jwks"] = r
    else:
        f.reject("a provider needs local_jwks or remote_jwks")
    if p.forward:
        out["forward"] = True
    if p.from_headers:
        out["from_headers"] = [{"name": h.name, "value_prefix": h.value_prefix} for h in p.from_headers]
    if p.from_params:
        out["from_params"] = list(p.from_params)
    if p.forward_payload_header:
        out["forward_payload_header"] = p.forward_payload_header
    if p.payload_in_metadata:
        out["payload_in_metadata"] = p.payload_in_metadata
    if p.clock_skew_seconds:
        out["clock_skew_seconds"] = p.clock_skew_seconds
    return out


def _requirement(r: Any, f: Findings) -> dict[str, Any]:
    kind = r.WhichOneof("requires_type")
    if kind == "provider_name":
        return {"provider_name": r.provider_name}
    if kind in ("requires_any", "requires_all"):
        group = getattr(r, kind)
        return {kind: {"requirements": [_requirement(x, f.at(kind).at("requirements").at(i))
                                        for i, x in enumerate(group.requirements)]}}
    if kind == "allow_missing":
        return {"allow_missing": {}}
    if kind == "allow_missing_or_failed":
        return {"allow_missing_or_failed": {}}
    if kind == "provider_and_audiences":
        f.reject("provider_and_audiences is not supported (give the provider its audiences)", kind)
    f.reject("a requirement needs provider_name, requires_any, requires_all, allow_missing or "
             "allow_missing_or_failed")


def _match(m: Any, f: Findings) -> dict[str, Any]:
    if m.headers or m.query_parameters or m.HasField("runtime_fraction") or m.HasField("grpc"):
        f.reject("only path matches (prefix, path, safe_regex) are supported in jwt_authn rules")
    if m.HasField("case_sensitive") and not m.case_sensitive.value:
        f.reject("case-insensitive rule matches are not supported", "case_sensitive")
    kind = m.WhichOneof("path_specifier")
    if kind == "prefix":
        return {"prefix": m.prefix}
    if kind == "path":
        return {"path": m.path}
    if kind == "safe_regex":
        return {"safe_regex": {"regex": m.safe_regex.regex}}
    if kind == "path_separated_prefix":
        p = m.path_separated_prefix
        return {"safe_regex": {"regex": re.escape(p) + "(/.*)?"}}
    f.reject(f"rule match {kind} is not supported (prefix, path, safe_regex, path_separated_prefix are)")


def ext_authz(ea: Any, f: Findings) -> dict[str, Any]:
    f.only(ea, {"grpc_service", "http_service", "transport_api_version", "failure_mode_allow",
                "failure_mode_allow_header_add", "status_on_error", "include_peer_certificate", "stat_prefix"})
    if ea.HasField("with_request_body"):
        f.reject("with_request_body is not supported: mosnx checks the request head", "with_request_body")
    cfg: dict[str, Any] = {}
    if ea.failure_mode_allow:
        cfg["failure_mode_allow"] = True
    if ea.failure_mode_allow_header_add:
        cfg["failure_mode_allow_header_add"] = True
    if ea.HasField("status_on_error") and ea.status_on_error.code:
        cfg["status_on_error"] = int(ea.status_on_error.code)
    if ea.include_peer_certificate:
        cfg["include_peer_certificate"] = True
    kind = ea.WhichOneof("services")
    if kind == "grpc_service":
        gs = ea.grpc_service
        fg = f.at("grpc_service")
        fg.only(gs, {"envoy_grpc", "timeout"})
        if gs.WhichOneof("target_specifier") != "envoy_grpc" or not gs.envoy_grpc.cluster_name:
            fg.reject("only envoy_grpc with a cluster_name is supported (not google_grpc)")
        g: dict[str, Any] = {"envoy_grpc": {"cluster_name": gs.envoy_grpc.cluster_name}}
        if gs.HasField("timeout") and seconds(gs.timeout) > 0:
            g["timeout"] = _duration(gs.timeout)
        cfg["grpc_service"] = g
    elif kind == "http_service":
        hs = ea.http_service
        fh = f.at("http_service")
        fh.only(hs, {"server_uri", "path_prefix", "authorization_request", "authorization_response"})
        su = hs.server_uri
        if not su.uri or not su.cluster:
            fh.reject("server_uri needs uri and cluster", "server_uri")
        h: dict[str, Any] = {"server_uri": {"uri": su.uri, "cluster": su.cluster}}
        if su.HasField("timeout") and seconds(su.timeout) > 0:
            h["server_uri"]["timeout"] = _duration(su.timeout)
        if hs.path_prefix:
            h["path_prefix"] = hs.path_prefix
        if hs.HasField("authorization_request"):
            ar = hs.authorization_request
            fa = fh.at("authorization_request")
            fa.only(ar, {"allowed_headers", "headers_to_add"})
            req: dict[str, Any] = {}
            if ar.HasField("allowed_headers"):
                req["allowed_headers"] = {"patterns": _patterns(ar.allowed_headers, fa.at("allowed_headers"))}
            if ar.headers_to_add:
                req["headers_to_add"] = [{"key": hv.key, "value": hv.value} for hv in ar.headers_to_add]
            h["authorization_request"] = req
        if hs.HasField("authorization_response"):
            rs = hs.authorization_response
            fr = fh.at("authorization_response")
            fr.only(rs, {"allowed_upstream_headers", "allowed_client_headers"})
            resp: dict[str, Any] = {}
            for key in ("allowed_upstream_headers", "allowed_client_headers"):
                if rs.HasField(key):
                    resp[key] = {"patterns": _patterns(getattr(rs, key), fr.at(key))}
            h["authorization_response"] = resp
        cfg["http_service"] = h
    else:
        f.reject("ext_authz needs grpc_service or http_service")
    return cfg


def _patterns(lm: Any, f: Findings) -> list[dict[str, Any]]:
    out = []
    for i, m in enumerate(lm.patterns):
        kind = m.WhichOneof("match_pattern")
        if kind in ("exact", "prefix", "suffix", "contains"):
            out.append({kind: getattr(m, kind)})
        elif kind == "safe_regex":
            out.append({"safe_regex": {"regex": m.safe_regex.regex}})
        else:
            f.at("patterns").at(i).reject("a string matcher needs exact, prefix, suffix, contains or safe_regex")
    return out


def _unpacked(cls: Any, fn: Callable[[Any, Findings], dict[str, Any]]) -> Callable[[Any, Findings], dict[str, Any]]:
    def translate(typed_config: Any, f: Findings) -> dict[str, Any]:
        msg = cls()
        typed_config.Unpack(msg)
        return fn(msg, f)
    return translate


# type name -> (mosnx filter kind, translate(typed_config Any, findings) -> the filter's config)
FILTERS: dict[str, tuple[str, Callable[[Any, Findings], dict[str, Any]]]] = {
    JWT_AUTHN: ("jwt_authn", _unpacked(jwt_authn_pb2.JwtAuthentication, jwt_authn)),
    EXT_AUTHZ: ("ext_authz", _unpacked(ext_authz_pb2.ExtAuthz, ext_authz)),
}
