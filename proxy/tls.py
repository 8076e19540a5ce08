"""TLS contexts for listeners (termination) and clusters (origination), and what a
handshake tells a stream (server name, verified client certificate, its subject).

Contexts are cached by their settings and the modification times of the files they
read, so a certificate replaced on disk is picked up on the next connection after a
reload, and a handshake otherwise costs no file I/O beyond a stat. Settings that
carry their material in memory (`Pem`: an Envoy inline DataSource or an SDS
secret) are new settings when the material changes, so a rotated secret is used
from the next handshake on; connections already open keep the context they began
with. The cache is bounded (`MAX_CONTEXTS`), oldest first out.

Certificates and keys held in memory never touch a file system: OpenSSL's
`load_cert_chain` wants paths, so each is written to an anonymous memory file
(`os.memfd_create`) and read back through `/proc/self/fd/N`, which only this
process (and root) can open; the file is closed, and gone, as soon as OpenSSL has
read it. Where memfd is missing (not Linux) a file in a fresh 0700 directory, mode
0600, is used and removed at once. CA bundles go by `cadata`, no file at all.

Python's ssl verifies a chain but not Envoy's SAN matchers: a context with matchers
gets an SSLObject class that checks the peer's SANs inside the handshake and fails
it with `SanMismatch` (an ssl.SSLCertVerificationError), so nothing is sent to, or
taken from, a peer with the wrong identity; the connection fails as a connect
failure, counted as `ssl.fail_verify_san` (Envoy's name), with one log line per
cluster and endpoint at most every `LOG_EVERY` seconds.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import ssl
import tempfile
import time
from typing import Any, Callable, Iterator

from mosnx.runtime.config.protocols import ClientTls, Pem, SanMatcher, ServerTls

log = logging.getLogger("mosnx.tls")

_SUBJECT_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
                  "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST",
                  "emailAddress": "emailAddress", "domainComponent": "DC"}
_VERSIONS = {"1.0": ssl.TLSVersion.TLSv1, "1.1": ssl.TLSVersion.TLSv1_1, "1.2": ssl.TLSVersion.TLSv1_2,
             "1.3": ssl.TLSVersion.TLSv1_3}
MAX_CONTEXTS = 1024
LOG_EVERY = 10.0


class SanMismatch(ssl.SSLCertVerificationError):
    """The peer's certificate verified, but none of its SANs matches what is asked."""


class TlsInfo:
    """What one TLS connection negotiated, as the stream context wants it (runtime's
    TlsFacts): the peer certificate's URI and DNS SANs name its principal, as Envoy;
    `local_uri_sans` are those of the certificate this side presented (Istio's
    destination_principal on an inbound connection, source_principal on an outbound one)."""
    __slots__ = ("sni", "mtls", "subject", "alpn", "uri_sans", "dns_sans", "local_uri_sans")

    def __init__(self, sni: str = "", mtls: bool = False, subject: str = "", alpn: str | None = None,
                 uri_sans: tuple[str, ...] = (), dns_sans: tuple[str, ...] = (),
                 local_uri_sans: tuple[str, ...] = ()):
        self.sni = sni
        self.mtls = mtls
        self.subject = subject
        self.alpn = alpn
        self.uri_sans = uri_sans
        self.dns_sans = dns_sans
        self.local_uri_sans = local_uri_sans


def _mtimes(*paths: Any) -> tuple:
    out = []
    for p in paths:
        if isinstance(p, str):
            try:
                out.append(os.stat(p).st_mtime_ns)
            except OSError:
                out.append(0)
    return tuple(out)


def _subject(cert: dict) -> str:
    parts = []
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            parts.append(f"{_SUBJECT_NAMES.get(name, name)}={value}")
    # RFC 4514 order: most specific first
    return ",".join(reversed(parts))


def _sni_matches(pattern: str, name: str) -> bool:
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and "." not in name[: -len(pattern) + 1]
    return pattern == name


# ---- material in memory ----

@contextlib.contextmanager
def _path_of(material: str | Pem) -> Iterator[str]:
    """A path OpenSSL can read `material` from, for as long as the block runs."""
    if isinstance(material, str):
        yield material
        return
    memfd = getattr(os, "memfd_create", None)
    if memfd is not None and os.path.isdir("/proc/self/fd"):
        fd = memfd("mosnx-tls", getattr(os, "MFD_CLOEXEC", 0))
        try:
            os.write(fd, material.data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    folder = tempfile.mkdtemp(prefix="mosnx-tls-")       # 0700
    try:
        fd, path = tempfile.mkstemp(dir=folder)          # 0600
        with os.fdopen(fd, "wb") as fh:
            fh.write(material.data)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _load_chain(ctx: ssl.SSLContext, cert: str | Pem, key: str | Pem) -> None:
    with _path_of(cert) as c, _path_of(key) as k:
        ctx.load_cert_chain(c, k)
    # the identity this side presents, read once per context: ssl has no accessor for
    # the local certificate of a connection
    setattr(ctx, LOCAL_URIS, local_uri_sans(cert))


LOCAL_URIS = "mosnx_local_uri_sans"


def local_uri_sans(cert: str | Pem) -> tuple[str, ...]:
    """The URI SANs (a SPIFFE id) of the first certificate of a PEM chain; () when it
    has none or cannot be read (the handshake itself reports a bad certificate)."""
    try:
        if isinstance(cert, Pem):
            data = cert.data
        else:
            with open(cert, "rb") as fh:
                data = fh.read()
        from cryptography import x509
        c = x509.load_pem_x509_certificate(data)
        ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except Exception:       # no SAN extension, not PEM, unreadable: no URI to report
        return ()
    return tuple(str(u) for u in ext.value.get_values_for_type(x509.UniformResourceIdentifier))


def _load_ca(ctx: ssl.SSLContext, ca: str | Pem) -> None:
    if isinstance(ca, Pem):
        ctx.load_verify_locations(cadata=ca.data.decode("ascii", "replace"))
    else:
        ctx.load_verify_locations(ca)


def _versions(ctx: ssl.SSLContext, low: str | None, high: str | None) -> None:
    ctx.minimum_version = _VERSIONS[low] if low else ssl.TLSVersion.TLSv1_2
    if high:
        ctx.maximum_version = _VERSIONS[high]


# ---- SAN matchers ----

def san_check(matchers: tuple[SanMatcher, ...]) -> Callable[[dict], str | None]:
    """A check of a peer certificate (getpeercert()) against the matchers: None when one
    matches, else what the certificate has (for the log line)."""
    preds = tuple(m.predicate() for m in matchers)

    def check(cert: dict) -> str | None:
        sans = cert.get("subjectAltName", ())
        for t, v in sans:
            for p in preds:
                if p(t, v):
                    return None
        return ", ".join(f"{t}:{v}" for t, v in sans) or "no SANs"
    return check


def _describe(matchers: tuple[SanMatcher, ...]) -> str:
    return ", ".join(f"{m.san_type or 'any'} {m.kind} {m.value!r}" for m in matchers)


def _with_san_check(ctx: ssl.SSLContext, matchers: tuple[SanMatcher, ...], optional: bool) -> None:
    """Make every handshake of `ctx` fail unless the peer's SANs match; `optional`: a peer
    without a certificate passes (a server that does not require client certificates)."""
    check = san_check(matchers)
    wanted = _describe(matchers)

    class Checked(ssl.SSLObject):
        def do_handshake(self) -> None:
            super().do_handshake()
            cert = self.getpeercert()
            if not cert and optional:
                return
            got = check(cert or {})
            if got is not None:
                raise SanMismatch(f"certificate SANs [{got}] match none of [{wanted}]")
    ctx.sslobject_class = Checked


# ---- contexts ----

def _base_server(tls: ServerTls, cert: str | Pem, key: str | Pem) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _versions(ctx, tls.min_version, tls.max_version)
    _load_chain(ctx, cert, key)
    ctx.set_alpn_protocols(list(tls.alpn))
    if tls.client_ca:
        _load_ca(ctx, tls.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
        if tls.client_san:
            _with_san_check(ctx, tls.client_san, optional=not tls.require_client_cert)
    return ctx


def build_server_context(tls: ServerTls) -> ssl.SSLContext:
    """The listener's context; with `sni`, a callback swaps in the certificate the
    client's server name asks for (exact names before wildcards, as Envoy)."""
    ctx = _base_server(tls, tls.cert, tls.key)
    by_name: list[tuple[str, ssl.SSLContext]] = []
    for entry in tls.sni:
        sub = _base_server(tls, entry.cert, entry.key)
        for n in entry.server_names:
            by_name.append((n.lower(), sub))
    by_name.sort(key=lambda kv: kv[0].startswith("*."))

    def pick(sslobj: Any, name: str | None, _ctx: ssl.SSLContext) -> None:
        # the server side has no accessor for the name a client asked for: keep it here
        if name:
            n = name.lower()
            sslobj.mosnx_sni = n
            for pattern, sub in by_name:
                if _sni_matches(pattern, n):
                    sslobj.context = sub
                    break
        return None
    ctx.sni_callback = pick
    return ctx


def build_client_context(tls: ClientTls) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _versions(ctx, tls.min_version, tls.max_version)
    if tls.verify:
        if tls.ca:
            _load_ca(ctx, tls.ca)
        else:
            ctx.load_default_certs()
        ctx.check_hostname = tls.verify_hostname
        if tls.san:
            _with_san_check(ctx, tls.san, optional=False)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert and tls.key:
        _load_chain(ctx, tls.cert, tls.key)
    if tls.alpn:
        ctx.set_alpn_protocols(list(tls.alpn))
    return ctx


# one context per settings value and kind: (build, settings) -> (file mtimes, context)
_contexts: dict = {}


def _cached(build: Callable[[Any], ssl.SSLContext], tls: Any, files: Any) -> ssl.SSLContext:
    """The context `build(tls)` made, rebuilt when a file it read changed on disk; a
    settings value keeps one entry, so replaced files don't pile up, and settings
    no longer used (a rotated secret's) leave once MAX_CONTEXTS are held."""
    key = (build, tls)
    mtimes = _mtimes(*files)
    hit = _contexts.get(key)
    if hit is not None and hit[0] == mtimes:
        return hit[1]
    ctx = build(tls)
    if hit is None and len(_contexts) >= MAX_CONTEXTS:
        _contexts.pop(next(iter(_contexts)))
    _contexts[key] = (mtimes, ctx)
    return ctx


def server_context(tls: ServerTls) -> ssl.SSLContext:
    return _cached(build_server_context, tls,
                   [tls.cert, tls.key, tls.client_ca] + [p for e in tls.sni for p in (e.cert, e.key)])


def client_context(tls: ClientTls) -> ssl.SSLContext:
    return _cached(build_client_context, tls, (tls.ca, tls.cert, tls.key))


def endpoint_tls(cluster_config: Any, endpoint: Any = None) -> ClientTls | None:
    """The TLS settings of one endpoint: those of the transport_socket_matches entry its
    metadata chose (Endpoint.tls_match), else the cluster's own."""
    i = getattr(endpoint, "tls_match", None)
    if i is not None:
        matches = cluster_config.options.get("tls_matches", ())
        if i < len(matches):
            return matches[i][1]
    return cluster_config.options.get("tls")


def client_connect_args(cluster_config: Any, host: str, endpoint: Any = None,
                        alpn_override: tuple[str, ...] | None = None) -> dict:
    """Keyword arguments for loop.create_connection to one endpoint of the cluster: its
    TLS settings, offering h2 by ALPN when an HTTP/2 cluster names no protocols (an
    endpoint must be told the connection speaks h2). `alpn_override` (istio.alpn's,
    istio_alpn()) replaces the protocols offered to an Istio mTLS peer."""
    tls = endpoint_tls(cluster_config, endpoint)
    if tls is None:
        return {}
    if alpn_override and ISTIO_ALPN in tls.alpn:
        tls = dataclasses.replace(tls, alpn=alpn_override)
    elif cluster_config.protocol == "http2" and not tls.alpn:
        tls = dataclasses.replace(tls, alpn=("h2",))
    return {"ssl": client_context(tls), "server_hostname": tls.sni or host}


# the ALPN protocol that says "Istio mTLS" in what istiod gives an ISTIO_MUTUAL
# transport socket to offer: only such an endpoint is an Istio peer, whose
# protocols istio.alpn rewrites (istiod turns the override off for other TLS)
ISTIO_ALPN = "istio"


def istio_alpn(listener_options: dict, cluster_config: Any, downstream_protocol: str) -> tuple[str, ...] | None:
    """What istio.alpn offers upstream for a stream of a listener that has it (its
    `istio_alpn` option: upstream protocol -> protocols), by the protocol the cluster
    speaks upstream (HTTP/1.0 when the client spoke it to an HTTP/1.1 cluster, as
    Envoy's upstream protocol); None when the listener has no overrides."""
    by_protocol = listener_options.get("istio_alpn")
    if not by_protocol:
        return None
    if cluster_config.protocol == "http2":
        return by_protocol.get("HTTP2")
    return by_protocol.get("HTTP10" if downstream_protocol == "HTTP/1.0" else "HTTP11")


_logged: dict[tuple[str, str], float] = {}


def connect_failed(cluster: Any, address: str, e: BaseException) -> None:
    """Count (and log, now and then) why a TLS connection to an endpoint failed, with
    Envoy's cluster stats: ssl.fail_verify_san, ssl.fail_verify_error, ssl.connection_error."""
    if not isinstance(e, ssl.SSLError):
        return
    stats, name = cluster.stats, cluster.name
    if isinstance(e, SanMismatch):
        counter = stats.counter(f"cluster.{name}.ssl.fail_verify_san")
        why = f"ssl.fail_verify_san: {e.args[0] if e.args else e}"
    elif isinstance(e, ssl.SSLCertVerificationError):
        counter = stats.counter(f"cluster.{name}.ssl.fail_verify_error")
        why = f"ssl.fail_verify_error: certificate not verified: {e.verify_message or e}"
    else:
        counter = stats.counter(f"cluster.{name}.ssl.connection_error")
        why = f"ssl.connection_error: {e}"
    counter.value += 1
    now = time.monotonic()
    key = (name, address)
    if now - _logged.get(key, -LOG_EVERY) >= LOG_EVERY:
        if len(_logged) > 4096:
            _logged.clear()
        _logged[key] = now
        log.warning("cluster %s: TLS to %s failed (%s)", name, address, why)


def info_from(transport: Any, sni: str = "") -> TlsInfo:
    obj = transport.get_extra_info("ssl_object")
    if obj is None:
        return TlsInfo(sni)
    try:
        cert = obj.getpeercert()
    except ValueError:
        cert = None
    sans = cert.get("subjectAltName", ()) if cert else ()
    return TlsInfo(sni or getattr(obj, "mosnx_sni", "") or "", bool(cert),
                   _subject(cert) if cert else "", obj.selected_alpn_protocol(),
                   tuple(v for k, v in sans if k == "URI"), tuple(v for k, v in sans if k == "DNS"),
                   getattr(obj.context, LOCAL_URIS, ()))


def upstream_info(transport: Any) -> TlsInfo | None:
    """What an upstream connection's handshake told (the peer is the server: its
    certificate names the destination's principal); None in cleartext. Read once per
    connection, when it is made."""
    if transport is None or transport.get_extra_info("ssl_object") is None:
        return None
    return info_from(transport)
