"""Envoy Secrets (SDS, or a bootstrap's static_resources.secrets) -> the material
mosnx's TLS settings hold, and the lookup a TLS context's SDS references go through.

- A `tls_certificate` secret becomes a CertificateSecret (certificate chain and
  private key); a `validation_context` secret a ValidationSecret (trusted CA and SAN
  matchers). Inline material (inline_bytes, inline_string) becomes a `Pem`, held in
  memory and never written to a file by mosnx; a `filename` stays a path.
- What mosnx cannot enforce is refused, not ignored: a validation context asking for
  SPKI or hash pins, CRLs or a custom validator would otherwise let through a peer
  Envoy refuses. Other secret kinds (session ticket keys, generic secrets) are
  refused too.
- `SecretStore.get(SdsSecretConfig)`: a reference without `sds_config` names a
  static secret (missing: a Rejection); one with an sds_config names a secret from
  the control plane: over ADS, or, when the config source is a GRPC api_config_source
  naming a static cluster (Istio's `sds-grpc`), over the SDS stream to that cluster
  (`stream_sources` says which names); missing, it raises Waiting (the listener or
  cluster warms, nothing is NACKed). Another config source gets a warning and is
  asked for on the ADS stream.
- Material is checked to be PEM (a certificate block, a private key block) here;
  whether key and certificate belong together is OpenSSL's to say at the first
  handshake (proxy/tls.py).
Pure: no I/O, the messages are only read.
"""
from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Any

from ..config.protocols import Pem, SanMatcher
from .common import regex_of
from .findings import Findings, Rejection, Waiting
from .protos import DOWNSTREAM_TLS, SECRET, UPSTREAM_TLS, DownstreamTlsContext, UpstreamTlsContext

SAN_TYPES = {1: "EMAIL", 2: "DNS", 3: "URI", 4: "IP"}
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*([A-Za-z0-9+/=\s]+?)-----END \1-----")
# validation fields mosnx would have to enforce to be as strict as Envoy
_UNENFORCED_LISTS = ("verify_certificate_spki", "verify_certificate_hash")
_UNENFORCED = ("crl", "custom_validator_config", "ca_certificate_provider_instance")


@dataclass(frozen=True, slots=True)
class CertificateSecret:
    cert: str | Pem
    key: str | Pem


@dataclass(frozen=True, slots=True)
class ValidationSecret:
    ca: str | Pem | None                      # None: the system's roots when `system`, else none
    san: tuple[SanMatcher, ...] = ()
    system: bool = False


Secret = CertificateSecret | ValidationSecret


def data_source(ds: Any, f: Findings, what: str, source: str) -> str | Pem:
    """An envoy.config.core.v3.DataSource: a path, or PEM material in memory."""
    kind = ds.WhichOneof("specifier")
    if kind == "filename":
        if not ds.filename:
            f.reject(f"the {what} needs a filename", "filename")
        return str(ds.filename)
    if kind == "inline_bytes":
        data = bytes(ds.inline_bytes)
    elif kind == "inline_string":
        data = ds.inline_string.encode("utf-8", "replace")
    else:
        f.reject(f"the {what} must be a filename, inline_bytes or inline_string"
                 + (f" ({kind} is not supported)" if kind else ""))
    _check_pem(data, what, f.at(kind))
    return Pem(data, source)


def _check_pem(data: bytes, what: str, f: Findings) -> None:
    blocks = _PEM_BLOCK.findall(data)
    if not blocks:
        f.reject(f"the {what} is not PEM (no -----BEGIN ...----- block)")
    for label, body in blocks:
        try:
            binascii.a2b_base64(re.sub(rb"\s", b"", body))
        except binascii.Error:
            f.reject(f"the {what} has a {label.decode()} block that is not base64")
    labels = [label.decode() for label, _ in blocks]
    if what == "private key" and not any(lb.endswith("PRIVATE KEY") for lb in labels):
        f.reject("the private key holds no PRIVATE KEY block")
    if what != "private key" and "CERTIFICATE" not in labels:
        f.reject(f"the {what} holds no CERTIFICATE block")


def tls_certificate(tc: Any, f: Findings, source: str) -> CertificateSecret:
    f.only(tc, {"certificate_chain", "private_key", "watched_directory"})
    if tc.HasField("private_key_provider") or tc.HasField("pkcs12") or tc.HasField("password"):
        f.reject("only a PEM certificate_chain and private_key are supported "
                 "(no private_key_provider, pkcs12 or password)")
    if not tc.HasField("certificate_chain") or not tc.HasField("private_key"):
        f.reject("a TLS certificate needs certificate_chain and private_key")
    return CertificateSecret(data_source(tc.certificate_chain, f.at("certificate_chain"), "certificate chain", source),
                             data_source(tc.private_key, f.at("private_key"), "private key", source))


def san_matchers(vc: Any, f: Findings) -> tuple[SanMatcher, ...]:
    """match_typed_subject_alt_names (and the older match_subject_alt_names, any SAN type)."""
    out: list[SanMatcher] = []
    for i, m in enumerate(vc.match_typed_subject_alt_names):
        fm = f.at("match_typed_subject_alt_names").at(i)
        t = SAN_TYPES.get(m.san_type)
        if t is None:
            fm.reject("the SAN type must be DNS, URI, EMAIL or IP_ADDRESS", "san_type")
        out.append(_matcher(t, m.matcher, fm.at("matcher")))
    for i, sm in enumerate(vc.match_subject_alt_names):
        out.append(_matcher("", sm, f.at("match_subject_alt_names").at(i)))
    return tuple(out)


def _matcher(san_type: str, sm: Any, f: Findings) -> SanMatcher:
    kind = sm.WhichOneof("match_pattern")
    if kind == "safe_regex":
        value = regex_of(sm.safe_regex, f.at("safe_regex")).pattern
    elif kind in ("exact", "prefix", "suffix", "contains"):
        value = getattr(sm, kind)
    else:
        f.reject("a SAN matcher needs exact, prefix, suffix, contains or safe_regex")
    try:
        return SanMatcher(san_type, kind, value, bool(sm.ignore_case))
    except ValueError as e:
        f.reject(str(e))


def validation_context(vc: Any, f: Findings, source: str) -> ValidationSecret:
    unenforced = [k for k in _UNENFORCED_LISTS if len(getattr(vc, k))]
    unenforced += [k for k in _UNENFORCED if vc.HasField(k)]
    if vc.require_signed_certificate_timestamp.value:
        unenforced.append("require_signed_certificate_timestamp")
    for key in unenforced:
        f.reject("mosnx cannot enforce this check, so it refuses the context rather than skip it", key)
    if vc.trust_chain_verification != 0:
        f.reject("only VERIFY_TRUST_CHAIN is supported", "trust_chain_verification")
    f.only(vc, {"trusted_ca", "system_root_certs", "match_typed_subject_alt_names", "match_subject_alt_names",
                "watched_directory", "trust_chain_verification", "max_verify_depth", "allow_expired_certificate",
                "require_signed_certificate_timestamp"})
    if vc.allow_expired_certificate:
        f.warn("expired certificates are refused all the same", "allow_expired_certificate")
    ca = data_source(vc.trusted_ca, f.at("trusted_ca"), "trusted CA", source) if vc.HasField("trusted_ca") else None
    return ValidationSecret(ca, san_matchers(vc, f), system=vc.HasField("system_root_certs"))


def translate_secret(s: Any, f: Findings) -> Secret:
    """One envoy.extensions.transport_sockets.tls.v3.Secret."""
    kind = s.WhichOneof("type")
    if kind == "tls_certificate":
        return tls_certificate(s.tls_certificate, f.at(kind), s.name)
    if kind == "validation_context":
        return validation_context(s.validation_context, f.at(kind), s.name)
    f.reject("only tls_certificate and validation_context secrets are supported"
             + (f" ({kind} is not)" if kind else ""))


class SecretStore:
    """The translated secrets a TLS context may name: `static` (a bootstrap's
    static_resources.secrets) and `dynamic` (SDS), each name -> Secret or the
    Rejection it met. `used` collects the dynamic names looked up (what the caller
    subscribes to, and what its translation depends on)."""

    def __init__(self, static: dict[str, Secret | Rejection] | None = None,
                 dynamic: dict[str, Secret | Rejection] | None = None) -> None:
        self.static = static or {}
        self.dynamic = dynamic or {}

    def get(self, ref: Any, f: Findings) -> Secret:
        """An SdsSecretConfig's secret; Waiting when it has not come over the stream."""
        name = ref.name
        if not name:
            f.reject("an SDS secret config needs a name", "name")
        if not ref.HasField("sds_config"):
            got = self.static.get(name)
            if got is None:
                f.reject(f'no static secret "{name}" (static_resources.secrets)', "name")
        else:
            got = self.dynamic.get(name)
            if got is None:
                kind = ref.sds_config.WhichOneof("config_source_specifier")
                if kind != "ads" and stream_cluster(ref) is None:
                    f.at("sds_config").warn(f"secrets come over the ADS stream or a GRPC api_config_source's "
                                            f"SDS stream; this {kind} is not used")
                fr = f.at("name")
                raise Waiting(Rejection(fr.type_url, fr.name, fr.path, f'Secret "{name}" has not been received'))
        if isinstance(got, Rejection):
            f.reject(f'Secret "{name}" was refused: {got.message}', "name")
        return got


GRPC = 2                        # ApiConfigSource.ApiType: state of the world over gRPC


def stream_cluster(ref: Any) -> str | None:
    """The static cluster an SdsSecretConfig's secret comes from over an SDS stream of
    its own (api_config_source, GRPC, envoy_grpc), or None (ADS, or unsupported)."""
    if ref.sds_config.WhichOneof("config_source_specifier") != "api_config_source":
        return None
    acs = ref.sds_config.api_config_source
    if acs.api_type != GRPC or not acs.grpc_services:
        return None
    gs = acs.grpc_services[0]
    if gs.WhichOneof("target_specifier") != "envoy_grpc" or not gs.envoy_grpc.cluster_name:
        return None
    return str(gs.envoy_grpc.cluster_name)


# a transport socket's SDS references, by its context's bytes: read once per distinct context
_refs_memo: dict[tuple[str, bytes], tuple[Any, ...]] = {}


def sds_references(ts: Any) -> tuple[Any, ...]:
    """The SdsSecretConfigs (those with a name and an sds_config) a TransportSocket's
    TLS context refers to; none for another socket, or a context that does not parse
    (its translation says why)."""
    url = ts.typed_config.type_url
    if url not in (UPSTREAM_TLS, DOWNSTREAM_TLS):
        return ()
    key = (url, ts.typed_config.value)
    got = _refs_memo.get(key)
    if got is not None:
        return got
    msg = UpstreamTlsContext() if url == UPSTREAM_TLS else DownstreamTlsContext()
    try:
        ts.typed_config.Unpack(msg)
    except Exception:
        return ()
    c = msg.common_tls_context
    refs = [*c.tls_certificate_sds_secret_configs]
    if c.HasField("validation_context_sds_secret_config"):
        refs.append(c.validation_context_sds_secret_config)
    if c.HasField("combined_validation_context"):
        refs.append(c.combined_validation_context.validation_context_sds_secret_config)
    got = tuple(r for r in refs if r.name and r.HasField("sds_config"))
    if len(_refs_memo) > 10000:
        _refs_memo.clear()
    _refs_memo[key] = got
    return got


def _socket_sources(ts: Any) -> dict[str, str]:
    """Secret name -> cluster, for the references of a TLS transport socket that come
    over an SDS stream."""
    return {r.name: cl for r in sds_references(ts) if (cl := stream_cluster(r))}


def stream_sources(listeners: Any, clusters: Any) -> dict[str, str]:
    """The secrets the listeners' filter chains and the clusters' transport sockets
    ask of an SDS stream: name -> the static cluster named as its source."""
    out: dict[str, str] = {}
    for lst in listeners:
        chains = [*lst.filter_chains]
        if lst.HasField("default_filter_chain"):
            chains.append(lst.default_filter_chain)
        for fc in chains:
            if fc.HasField("transport_socket"):
                out.update(_socket_sources(fc.transport_socket))
    for c in clusters:
        if c.HasField("transport_socket"):
            out.update(_socket_sources(c.transport_socket))
        for m in c.transport_socket_matches:
            out.update(_socket_sources(m.transport_socket))
    return out


# the fields Envoy's API marks (udpa.annotations.sensitive) where a document spells them:
# alone, or (parent, field)
_SENSITIVE = frozenset({"private_key", "pkcs12", "password"})
_SENSITIVE_UNDER = frozenset({("generic_secret", "secret"), ("session_ticket_keys", "keys")})
REDACTED = "[redacted]"


def redact_document(data: Any, parent: str = "") -> Any:
    """A copy of a decoded document (a bootstrap as /config_dump shows it) with every
    sensitive field's strings replaced by "[redacted]", as Envoy's dump does."""
    if isinstance(data, dict):
        return {k: _hidden(v) if k in _SENSITIVE or (parent, k) in _SENSITIVE_UNDER else redact_document(v, k)
                for k, v in data.items()}
    if isinstance(data, list):
        return [redact_document(v, parent) for v in data]
    return data


def _hidden(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _hidden(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_hidden(x) for x in v]
    return REDACTED if isinstance(v, (str, bytes)) else v
