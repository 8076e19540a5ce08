"""TLS contexts for listeners (termination) and clusters (origination), and what a
handshake tells a stream (server name, verified client certificate, its subject).

Contexts are cached by their settings and the modification times of the files they
read, so a certificate replaced on disk is picked up on the next connection after a
reload, and a handshake otherwise costs no file I/O beyond a stat.
"""
from __future__ import annotations

import dataclasses
import os
import ssl

_ALPN = {"h2": "h2", "http/1.1": "http/1.1"}
_SUBJECT_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
                  "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST",
                  "emailAddress": "emailAddress", "domainComponent": "DC"}


class TlsInfo:
    """What one TLS connection negotiated, as the stream context wants it (runtime's
    TlsFacts): the peer certificate's URI and DNS SANs name its principal, as Envoy."""
    __slots__ = ("sni", "mtls", "subject", "alpn", "uri_sans", "dns_sans")

    def __init__(self, sni: str = "", mtls: bool = False, subject: str = "", alpn: str | None = None,
                 uri_sans: tuple[str, ...] = (), dns_sans: tuple[str, ...] = ()):
        self.sni = sni
        self.mtls = mtls
        self.subject = subject
        self.alpn = alpn
        self.uri_sans = uri_sans
        self.dns_sans = dns_sans


def _mtimes(*paths) -> tuple:
    out = []
    for p in paths:
        if p:
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


def _base_server(tls, cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols([_ALPN[p] for p in tls.alpn])
    if tls.client_ca:
        ctx.load_verify_locations(tls.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_OPTIONAL
    return ctx


def build_server_context(tls) -> ssl.SSLContext:
    """The listener's context; with `sni`, a callback swaps in the certificate the
    client's server name asks for (exact names before wildcards, as Envoy)."""
    ctx = _base_server(tls, tls.cert, tls.key)
    by_name: list[tuple[str, ssl.SSLContext]] = []
    for entry in tls.sni:
        sub = _base_server(tls, entry.cert, entry.key)
        for n in entry.server_names:
            by_name.append((n.lower(), sub))
    by_name.sort(key=lambda kv: kv[0].startswith("*."))

    def pick(sslobj, name, _ctx):
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


def build_client_context(tls) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.verify:
        if tls.ca:
            ctx.load_verify_locations(tls.ca)
        else:
            ctx.load_default_certs()
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert:
        ctx.load_cert_chain(tls.cert, tls.key)
    if tls.alpn:
        ctx.set_alpn_protocols([_ALPN[p] for p in tls.alpn])
    return ctx


# one context per settings object and kind: (build, settings) -> (file mtimes, context)
_contexts: dict = {}


def _cached(build, tls, files) -> ssl.SSLContext:
    """The context `build(tls)` made, rebuilt when a file it read changed on disk; a
    settings object keeps one entry, so replaced certificates don't pile up."""
    key = (build, tls)
    mtimes = _mtimes(*files)
    hit = _contexts.get(key)
    if hit is not None and hit[0] == mtimes:
        return hit[1]
    ctx = build(tls)
    _contexts[key] = (mtimes, ctx)
    return ctx


def server_context(tls) -> ssl.SSLContext:
    return _cached(build_server_context, tls,
                   [tls.cert, tls.key, tls.client_ca] + [p for e in tls.sni for p in (e.cert, e.key)])


def client_context(tls) -> ssl.SSLContext:
    return _cached(build_client_context, tls, (tls.ca, tls.cert, tls.key))


def client_connect_args(cluster_config, host: str) -> dict:
    """Keyword arguments for loop.create_connection to one endpoint of the cluster: its
    TLS settings, offering h2 by ALPN when an HTTP/2 cluster names no protocols (an
    endpoint must be told the connection speaks h2)."""
    tls = cluster_config.options.get("tls")
    if tls is None:
        return {}
    if cluster_config.protocol == "http2" and not tls.alpn:
        tls = dataclasses.replace(tls, alpn=("h2",))
    return {"ssl": client_context(tls), "server_hostname": tls.sni or host}


def info_from(transport, sni: str = "") -> TlsInfo:
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
                   tuple(v for k, v in sans if k == "URI"), tuple(v for k, v in sans if k == "DNS"))
