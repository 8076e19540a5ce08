"""Envoy transport sockets -> mosnx TLS settings (runtime.config.protocols).

- `upstream_tls(TransportSocket)` -> ClientTls or None (raw_buffer: plaintext), for a
  cluster's transport_socket and each transport_socket_matches entry.
- `downstream_tls(TransportSocket)` -> ServerTls or None, for one filter chain (a
  listener with several chains calls it per chain).
- `socket_matches(Cluster)` and `match_index(matches, LbEndpoint)`: Envoy's
  transport_socket_matches, decided once per endpoint when it is translated: the
  first entry whose `match` is a subset of the endpoint's
  `metadata.filter_metadata["envoy.transport_socket_match"]` (Istio's
  `tlsMode: istio`), else the cluster's own transport_socket.
- `secret_names(TransportSocket)`: the SDS secrets a socket names (what the client
  subscribes to), read from the bytes of its typed_config and remembered by them.

Envoy's semantics are kept where Python's defaults differ: the peer's host name is
never checked against the SNI (Envoy verifies the chain and the SAN matchers only;
Istio's SNI `outbound_.80_._.svc` is no name in any certificate), a context without
a validation context verifies nothing, SAN matchers without a trusted CA are
refused (as Envoy refuses them), and ALPN takes any protocol name
(`istio-peer-exchange`). SDS references go through secrets.SecretStore; a secret
not yet received raises Waiting.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from ..config.protocols import ClientTls, Pem, SanMatcher, ServerTls
from .findings import Findings
from .protos import DOWNSTREAM_TLS, RAW_BUFFER, UPSTREAM_TLS, DownstreamTlsContext, UpstreamTlsContext
from .secrets import (CertificateSecret, SecretStore, ValidationSecret, sds_references, tls_certificate,
                      validation_context)

MATCH_KEY = "envoy.transport_socket_match"
VERSIONS = {1: "1.0", 2: "1.1", 3: "1.2", 4: "1.3"}       # TlsParameters.TlsProtocol; 0 is TLS_AUTO
_COMMON = {"tls_params", "tls_certificates", "tls_certificate_sds_secret_configs", "validation_context",
           "validation_context_sds_secret_config", "combined_validation_context", "alpn_protocols"}
_REFUSED = ("tls_certificate_provider_instance", "tls_certificate_certificate_provider",
            "tls_certificate_certificate_provider_instance", "validation_context_certificate_provider",
            "validation_context_certificate_provider_instance", "custom_handshaker",
            "custom_tls_certificate_selector")

Matches = tuple[tuple[tuple[tuple[str, str], ...], ClientTls | None], ...]


@dataclass(frozen=True, slots=True)
class _Common:
    cert: str | Pem | None
    key: str | Pem | None
    validation: ValidationSecret | None
    alpn: tuple[str, ...]
    min_version: str | None
    max_version: str | None


def _unpack(ts: Any, f: Findings, want: str, cls: type) -> Any | None:
    """The TLS context of a TransportSocket, or None for raw_buffer (plaintext)."""
    if ts.WhichOneof("config_type") != "typed_config":
        if ts.name in ("envoy.transport_sockets.raw_buffer", "raw_buffer", ""):
            return None
        f.reject(f"transport socket {ts.name} needs a typed_config")
    url = ts.typed_config.type_url
    if url == RAW_BUFFER:
        return None
    if url != want:
        f.reject(f"transport socket {url.rsplit('/', 1)[-1] or ts.name} is not supported "
                 f"({want.rsplit('.', 1)[-1]} and RawBuffer are)", "typed_config")
    msg = cls()
    if not ts.typed_config.Unpack(msg):
        f.reject(f"typed_config does not parse as {want.rsplit('/', 1)[-1]}", "typed_config")
    return msg


def _common(c: Any, f: Findings, secrets: SecretStore, source: str) -> _Common:
    for key in _REFUSED:
        if key in c.DESCRIPTOR.fields_by_name and c.HasField(key):
            f.reject("not supported (certificates come inline, from files or by SDS)", key)
    f.only(c, _COMMON)
    cert: CertificateSecret | None = None
    if c.tls_certificates:
        cert = tls_certificate(c.tls_certificates[0], f.at("tls_certificates").at(0), source)
    elif c.tls_certificate_sds_secret_configs:
        got = secrets.get(c.tls_certificate_sds_secret_configs[0], f.at("tls_certificate_sds_secret_configs").at(0))
        if not isinstance(got, CertificateSecret):
            f.at("tls_certificate_sds_secret_configs").at(0).reject("the secret holds no tls_certificate", "name")
        cert = got
    if len(c.tls_certificates) + len(c.tls_certificate_sds_secret_configs) > 1:
        f.warn("only the first certificate is served", "tls_certificates" if c.tls_certificates
               else "tls_certificate_sds_secret_configs")
    validation = _validation(c, f, secrets, source)
    p = c.tls_params
    fp = f.at("tls_params")
    fp.only(p, {"tls_minimum_protocol_version", "tls_maximum_protocol_version", "cipher_suites", "ecdh_curves"})
    if p.cipher_suites or p.ecdh_curves:
        fp.warn("cipher suites and curves are OpenSSL's defaults; ignored",
                "cipher_suites" if p.cipher_suites else "ecdh_curves")
    low, high = VERSIONS.get(p.tls_minimum_protocol_version), VERSIONS.get(p.tls_maximum_protocol_version)
    if low is not None and low < "1.2":
        fp.warn(f"TLS {low} is not offered: mosnx starts at 1.2", "tls_minimum_protocol_version")
        low = None
    if high is not None and high < "1.2":
        fp.reject(f"TLS {high} as the highest version is not supported (1.2 and 1.3 are)",
                  "tls_maximum_protocol_version")
    return _Common(cert.cert if cert else None, cert.key if cert else None, validation,
                   tuple(str(p) for p in c.alpn_protocols), low, high)


def _validation(c: Any, f: Findings, secrets: SecretStore, source: str) -> ValidationSecret | None:
    kind = c.WhichOneof("validation_context_type")
    if kind == "validation_context":
        return validation_context(c.validation_context, f.at(kind), source)
    if kind == "validation_context_sds_secret_config":
        got = secrets.get(c.validation_context_sds_secret_config, f.at(kind))
        if not isinstance(got, ValidationSecret):
            f.at(kind).reject("the secret holds no validation_context", "name")
        return got
    if kind == "combined_validation_context":
        cv = c.combined_validation_context
        fc = f.at(kind)
        fc.only(cv, {"default_validation_context", "validation_context_sds_secret_config"})
        default = validation_context(cv.default_validation_context, fc.at("default_validation_context"), source)
        if not cv.HasField("validation_context_sds_secret_config"):
            fc.reject("a combined validation context needs validation_context_sds_secret_config")
        dyn = secrets.get(cv.validation_context_sds_secret_config, fc.at("validation_context_sds_secret_config"))
        if not isinstance(dyn, ValidationSecret):
            fc.at("validation_context_sds_secret_config").reject("the secret holds no validation_context", "name")
        # Envoy merges the secret into the default: its CA wins, the matchers add up
        return ValidationSecret(dyn.ca if dyn.ca is not None else default.ca, default.san + dyn.san,
                                dyn.system or default.system)
    if kind is not None:
        f.reject(f"{kind} is not supported", kind)
    return None


def _verification(v: ValidationSecret | None, f: Findings) -> tuple[bool, str | Pem | None, tuple[SanMatcher, ...]]:
    """(verify the chain, CA, SAN matchers) as Envoy reads a validation context."""
    if v is None:
        return False, None, ()
    if v.ca is None and not v.system:
        if v.san:
            f.reject("SAN-based verification of peer certificates without a trusted CA is insecure and not allowed")
        return False, None, ()
    return True, v.ca, v.san


def upstream_tls(ts: Any, f: Findings, secrets: SecretStore | None = None, source: str = "") -> ClientTls | None:
    """A cluster's (or a match's) TransportSocket: TLS to the endpoints, or None."""
    ctx = _unpack(ts, f, UPSTREAM_TLS, UpstreamTlsContext)
    if ctx is None:
        return None
    ft = f.at("typed_config")
    ft.only(ctx, {"common_tls_context", "sni", "max_session_keys", "allow_renegotiation"})
    if ctx.allow_renegotiation:
        ft.warn("renegotiation is never allowed", "allow_renegotiation")
    c = _common(ctx.common_tls_context, ft.at("common_tls_context"), secrets or SecretStore(), source)
    verify, ca, san = _verification(c.validation, ft.at("common_tls_context"))
    try:
        return ClientTls(ca=ca, sni=ctx.sni or None, cert=c.cert, key=c.key, verify=verify, alpn=c.alpn,
                         verify_hostname=False, san=san, min_version=c.min_version, max_version=c.max_version)
    except ValueError as e:
        ft.reject(str(e))


def downstream_tls(ts: Any, f: Findings, secrets: SecretStore | None = None, source: str = "") -> ServerTls | None:
    """A filter chain's TransportSocket: TLS termination settings, or None."""
    ctx = _unpack(ts, f, DOWNSTREAM_TLS, DownstreamTlsContext)
    if ctx is None:
        return None
    ft = f.at("typed_config")
    ft.only(ctx, {"common_tls_context", "require_client_certificate", "session_timeout",
                  "disable_stateless_session_resumption", "session_ticket_keys",
                  "session_ticket_keys_sds_secret_config"})
    if ctx.require_sni.value:
        ft.reject("require_sni is not supported", "require_sni")
    c = _common(ctx.common_tls_context, ft.at("common_tls_context"), secrets or SecretStore(), source)
    if c.cert is None or c.key is None:
        ft.at("common_tls_context").reject("a listener's TLS needs a certificate (tls_certificates or "
                                           "tls_certificate_sds_secret_configs)")
    require = bool(ctx.require_client_certificate.value)
    verify, ca, san = _verification(c.validation, ft.at("common_tls_context"))
    if require and not verify:
        ft.reject("require_client_certificate needs a validation context with a trusted CA",
                  "require_client_certificate")
    if verify and ca is None:
        ft.at("common_tls_context").reject("client certificates are verified against a trusted_ca here, "
                                           "not the system's roots")
    try:
        return ServerTls(cert=c.cert, key=c.key, alpn=c.alpn, client_ca=ca, require_client_cert=require,
                         client_san=san, min_version=c.min_version, max_version=c.max_version)
    except ValueError as e:
        ft.reject(str(e))


# ---- transport_socket_matches ----

def _plain(v: Any) -> str | None:
    """A metadata value as comparable text; None for one JSON cannot hold (a NaN or
    infinite number), which is equal to nothing."""
    try:
        return json.dumps(json_format.MessageToDict(v), sort_keys=True)
    except ValueError:
        return None


def socket_matches(c: Any, f: Findings, secrets: SecretStore | None = None) -> Matches:
    """The cluster's transport_socket_matches: (criteria, TLS or None) in order."""
    out = []
    for i, m in enumerate(c.transport_socket_matches):
        fm = f.at("transport_socket_matches").at(i)
        fm.only(m, {"name", "match", "transport_socket"})
        criteria = []
        for k, v in m.match.fields.items():
            plain = _plain(v)
            if plain is None:
                fm.at("match").reject(f"{k!r}: a NaN or infinite number can match no endpoint", k)
            criteria.append((k, plain))
        criteria.sort()
        out.append((tuple(criteria), upstream_tls(m.transport_socket, fm.at("transport_socket"), secrets, c.name)))
    return tuple(out)


def match_index(matches: Matches, lbe: Any) -> int | None:
    """The first match whose criteria the endpoint's metadata has; None: the cluster's own."""
    if not matches:
        return None
    md = lbe.metadata.filter_metadata.get(MATCH_KEY) if lbe.HasField("metadata") else None
    have = md.fields if md is not None else {}
    for i, (criteria, _) in enumerate(matches):
        if all(k in have and _plain(have[k]) == v for k, v in criteria):
            return i
    return None


# ---- SDS names ----

def secret_names(ts: Any) -> frozenset[str]:
    """The names of the SDS secrets (those with an sds_config) a TransportSocket asks for."""
    return frozenset(r.name for r in sds_references(ts))


def _cluster_names(c: Any) -> frozenset[str]:
    names = secret_names(c.transport_socket) if c.HasField("transport_socket") else frozenset()
    for m in c.transport_socket_matches:
        names |= secret_names(m.transport_socket)
    return names


def _listener_names(lst: Any) -> frozenset[str]:
    names: frozenset[str] = frozenset()
    for fc in lst.filter_chains:
        if fc.HasField("transport_socket"):
            names |= secret_names(fc.transport_socket)
    if lst.HasField("default_filter_chain") and lst.default_filter_chain.HasField("transport_socket"):
        names |= secret_names(lst.default_filter_chain.transport_socket)
    return names


# the names of the last needed_secrets() call, by resource message: the xDS client hands
# back the same message objects while their bytes do not change, and the subscriptions
# are asked for at every request. Only that call's messages are held (so their ids are
# not reused meanwhile), so it never outgrows the configuration.
_last: dict[int, tuple[Any, frozenset[str]]] = {}


def needed_secrets(listeners: Any, clusters: Any) -> set[str]:
    """The SDS secrets the listeners' filter chains and the clusters' transport sockets name."""
    global _last
    old: dict[int, tuple[Any, frozenset[str]]] = _last
    new: dict[int, tuple[Any, frozenset[str]]] = {}
    out: set[str] = set()
    for msgs, find in ((listeners, _listener_names), (clusters, _cluster_names)):
        for m in msgs:
            hit = old.get(id(m))
            names = hit[1] if hit is not None and hit[0] is m else find(m)
            new[id(m)] = (m, names)
            out |= names
    _last = new
    return out


def listener_secret_names(lst: Any) -> frozenset[str]:
    """The SDS secrets a Listener's filter chains name."""
    return _listener_names(lst)


def cluster_secret_names(c: Any) -> frozenset[str]:
    """The SDS secrets a Cluster's transport sockets name."""
    hit = _last.get(id(c))
    return hit[1] if hit is not None and hit[0] is c else _cluster_names(c)
