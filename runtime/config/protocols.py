"""Protocol settings: listener TLS and HTTP/2 and TCP options, cluster TLS and HTTP/2 caps.

Neither ListenerConfig nor ClusterConfig has an attribute for these: they land in
the model's `options` under their YAML key, as the frozen values built here, so a
reload compares them by value. Certificate files are checked to exist here; they
are read (and so reloaded) when a worker applies a snapshot.

The TLS settings also carry what Envoy's TLS contexts say and mosnx's YAML does not
(runtime/envoy/tls.py fills them): certificates and keys held in memory (`Pem`, from
an inline DataSource or an SDS secret; a new secret is a new value, so a rotation is
a changed setting), SAN matchers (`SanMatcher`), TLS versions, and for clusters
whether the host name is checked (Envoy never checks it against the SNI).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from .compound import ListOf
from .names import Ref
from .scalars import Bool, Duration, Enum, FilePath, Int, Size, Str
from .schema import Field, Obj, ordered

ALPN_PROTOCOLS = ("h2", "http/1.1")
TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")
SAN_TYPES = ("", "DNS", "URI", "EMAIL", "IP")     # "": any type (Envoy's match_subject_alt_names)
SAN_MATCHES = ("exact", "prefix", "suffix", "contains", "safe_regex")


@dataclass(frozen=True, slots=True)
class Pem:
    """Certificate or key material held in memory (an Envoy inline DataSource, or a
    secret from SDS) instead of a file path. Its bytes never show in a repr; `source`
    says where it came from (a secret's name), for logs."""
    data: bytes = field(repr=False)
    source: str = ""

    def __repr__(self) -> str:
        return f"Pem({self.source!r}, {len(self.data)} bytes)"


@dataclass(frozen=True, slots=True)
class SanMatcher:
    """One of Envoy's SubjectAltNameMatchers: a SAN of `san_type` ("" for any) whose
    value matches (`kind` is a StringMatcher's: exact, prefix, suffix, contains,
    safe_regex). A certificate passes a list of them when any one matches."""
    san_type: str
    kind: str
    value: str
    ignore_case: bool = False

    def __post_init__(self) -> None:
        if self.san_type not in SAN_TYPES:
            raise ValueError(f"SAN type must be one of {', '.join(t for t in SAN_TYPES if t)}, not {self.san_type!r}")
        if self.kind not in SAN_MATCHES:
            raise ValueError(f"a SAN matcher is one of {', '.join(SAN_MATCHES)}, not {self.kind!r}")
        if self.kind == "safe_regex":
            try:
                re.compile(self.value)
            except re.error as e:
                raise ValueError(f"bad regex {self.value!r}: {e}") from None

    def predicate(self) -> Callable[[str, str], bool]:
        """(type, value) of one SAN, as ssl's getpeercert() names them -> whether it matches."""
        want_type = _PEER_SAN_TYPES.get(self.san_type)
        kind, ic = self.kind, self.ignore_case
        want = self.value.lower() if ic else self.value
        if kind == "safe_regex":
            rx = re.compile(self.value, re.IGNORECASE if ic else 0)
            test: Callable[[str], bool] = lambda v: rx.fullmatch(v) is not None
        elif kind == "exact":
            test = lambda v: v == want
        elif kind == "prefix":
            test = lambda v: v.startswith(want)
        elif kind == "suffix":
            test = lambda v: v.endswith(want)
        else:
            test = lambda v: want in v
        dns_wildcard = kind == "exact" and self.san_type in ("DNS", "")

        def match(san_type: str, value: str) -> bool:
            if want_type is not None and san_type != want_type:
                return False
            v = value.lower() if ic and kind != "safe_regex" else value
            if test(v):
                return True
            # a certificate's "*.example.com" covers one label, as Envoy's DNS SAN match
            if dns_wildcard and san_type == "DNS" and v.startswith("*.") and "." in want:
                head, _, rest = want.partition(".")
                return bool(head) and rest == v[2:]
            return False
        return match


# SanMatcher.san_type -> the name ssl.SSLSocket.getpeercert() gives that SAN type
_PEER_SAN_TYPES = {"DNS": "DNS", "URI": "URI", "EMAIL": "email", "IP": "IP Address"}


@dataclass(frozen=True, slots=True)
class SniCertificate:
    server_names: tuple[str, ...]             # exact names or "*.suffix"
    cert: str
    key: str


@dataclass(frozen=True, slots=True)
class ServerTls:
    cert: str | Pem
    key: str | Pem
    alpn: tuple[str, ...] = ALPN_PROTOCOLS
    client_ca: str | Pem | None = None
    require_client_cert: bool = False
    sni: tuple[SniCertificate, ...] = ()
    # from Envoy's DownstreamTlsContext: a client certificate's SANs must match one
    # (checked after the handshake), and the TLS versions allowed (None: 1.2 up)
    client_san: tuple[SanMatcher, ...] = ()
    min_version: str | None = None
    max_version: str | None = None

    def __post_init__(self) -> None:
        if self.require_client_cert and not self.client_ca:
            raise ValueError("require_client_cert needs client_ca: the CA that signs client certificates")
        if self.client_san and not self.client_ca:
            raise ValueError("matching client certificate SANs needs client_ca: the CA that signs them")
        _versions(self.min_version, self.max_version)


@dataclass(frozen=True, slots=True)
class ClientTls:
    ca: str | Pem | None = None               # None: the system's trust store
    sni: str | None = None                    # None: the endpoint's host name
    cert: str | Pem | None = None
    key: str | Pem | None = None
    verify: bool = True
    alpn: tuple[str, ...] = ()
    # from Envoy's UpstreamTlsContext: Envoy verifies the chain and the SAN matchers,
    # never the host name against the SNI (Istio's SNI is not a name in the certificate)
    verify_hostname: bool = True
    san: tuple[SanMatcher, ...] = ()
    min_version: str | None = None
    max_version: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs both cert: and key:")
        if self.san and not self.verify:
            raise ValueError("matching the endpoint's SANs needs its certificate verified")
        _versions(self.min_version, self.max_version)


def _versions(low: str | None, high: str | None) -> None:
    for v in (low, high):
        if v is not None and v not in TLS_VERSIONS:
            raise ValueError(f"TLS version must be one of {', '.join(TLS_VERSIONS)}, not {v!r}")
    if low is not None and high is not None and TLS_VERSIONS.index(low) > TLS_VERSIONS.index(high):
        raise ValueError(f"the lowest TLS version ({low}) is above the highest ({high})")


@dataclass(frozen=True, slots=True)
class Http2Options:
    """A client connection's windows and the limits a hostile client meets (the names
    and defaults are Envoy's; docs/security.md, HTTP/2)."""
    max_concurrent_streams: int = 100
    initial_stream_window_size: int = 65535
    initial_connection_window_size: int = 4 * 1024 * 1024
    # fields in one header block, pseudo-headers included; None: the listener's
    # limits.request_headers_count, the one limit both protocols share
    max_headers_count: int | None = None
    # a stream the client resets within this long of its start is a premature reset
    premature_reset_min_stream_lifetime: float = 1.0
    # from this many streams on, more premature resets than good streams close the connection
    premature_reset_total_stream_count: int = 500
    max_outbound_frames: int = 10000          # frames queued and not yet written
    max_outbound_control_frames: int = 1000   # of which SETTINGS/PING ACKs and RST_STREAMs
    max_consecutive_inbound_frames_with_empty_payload: int = 1
    max_inbound_priority_frames_per_stream: int = 100
    max_inbound_window_update_frames_per_data_frame_sent: int = 10


@dataclass(frozen=True, slots=True)
class SniRoute:
    server_names: tuple[str, ...]
    cluster: str


@dataclass(frozen=True, slots=True)
class TcpOptions:
    idle_timeout: float | None = 3600.0       # None: never
    sni_routes: tuple[SniRoute, ...] = ()     # TLS passthrough: ClientHello SNI picks the cluster
    original_dst: bool = False                # SO_ORIGINAL_DST: connect where the client was going
    client_hello_timeout: float = 5.0
    buffer: int = 256 * 1024                  # per direction, before reading pauses


def _server_name(name: str) -> None:
    if "*" in name and not (name.startswith("*.") and "*" not in name[2:]):
        raise ValueError(f'"{name}": a wildcard is only allowed as a leading "*."')


_NAMES = ListOf(Str(_server_name), min_items=1, single=True)

SNI_CERT = Obj({
    "server_names": Field(_NAMES, 'names served with this certificate; "*.example.com" for a wildcard',
                          required=True),
    "cert": Field(FilePath(must_exist=True), "PEM certificate chain", required=True),
    "key": Field(FilePath(must_exist=True), "PEM private key", required=True),
}, build=SniCertificate)

SERVER_TLS = Obj({
    "cert": Field(FilePath(must_exist=True), "PEM certificate chain", required=True),
    "key": Field(FilePath(must_exist=True), "PEM private key", required=True),
    "alpn": Field(ListOf(Enum(*ALPN_PROTOCOLS), min_items=1, single=True),
                  "protocols offered by ALPN, preferred first"),
    "client_ca": Field(FilePath(must_exist=True), "CA bundle that verifies client certificates (mTLS)"),
    "require_client_cert": Field(Bool(), "refuse clients without a verified certificate"),
    "sni": Field(ListOf(SNI_CERT), "certificates chosen by the server name the client asks for"),
}, build=ServerTls)

CLIENT_TLS = Obj({
    "ca": Field(FilePath(must_exist=True), "CA bundle that verifies the endpoints; default: the system's"),
    "sni": Field(Str(), "server name sent and verified; default: the endpoint's host"),
    "cert": Field(FilePath(must_exist=True), "client certificate (for upstream mTLS)"),
    "key": Field(FilePath(must_exist=True), "PEM private key of cert"),
    "verify": Field(Bool(), "verify the endpoint's certificate (false only for tests)"),
    "alpn": Field(ListOf(Enum(*ALPN_PROTOCOLS), min_items=1, single=True), "protocols offered by ALPN"),
}, build=ClientTls)

HTTP2 = Obj({
    "max_concurrent_streams": Field(Int(1, 2 ** 31 - 1), "streams a client may have open at once"),
    "initial_stream_window_size": Field(Size(positive=True), "receive window of each stream (SETTINGS_INITIAL_WINDOW_SIZE)"),
    "initial_connection_window_size": Field(Size(positive=True), "receive window of the whole connection; at least initial_stream_window_size"),
    "max_headers_count": Field(Int(1, 10000), "fields in one request header block (stream refused "
                               "with 431 above); default: the listener's limits.request_headers_count"),
    "premature_reset_min_stream_lifetime": Field(Duration(), "a stream reset by the client sooner "
                                                 "than this after it began counts as premature"),
    "premature_reset_total_stream_count": Field(Int(1), "once this many streams were seen (or half as "
                                                "many premature resets), more premature resets than "
                                                "other streams close the connection"),
    "max_outbound_frames": Field(Int(1), "frames queued for a client that does not read, before "
                                 "the connection is closed"),
    "max_outbound_control_frames": Field(Int(1), "SETTINGS/PING ACKs and RST_STREAMs queued for a "
                                         "client that does not read, before the connection is closed"),
    "max_consecutive_inbound_frames_with_empty_payload": Field(
        Int(0), "empty DATA/HEADERS/CONTINUATION frames in a row (without END_STREAM) allowed"),
    "max_inbound_priority_frames_per_stream": Field(Int(0), "PRIORITY frames allowed per stream opened"),
    "max_inbound_window_update_frames_per_data_frame_sent": Field(
        Int(1), "WINDOW_UPDATE frames allowed per DATA frame sent"),
}, build=Http2Options, checks=[ordered("initial_stream_window_size", "initial_connection_window_size",
                                       strict=False)])

SNI_ROUTE = Obj({
    "server_names": Field(_NAMES, "names from the TLS ClientHello", required=True),
    "cluster": Field(Ref("cluster"), "where those connections go", required=True),
}, build=SniRoute)

TCP = Obj({
    "idle_timeout": Field(Duration(zero_is_none=True), "close a connection quiet this long; 0: never"),
    "sni_routes": Field(ListOf(SNI_ROUTE), "TLS passthrough: the ClientHello's server name picks the "
                        "cluster; others take the listener's route"),
    "original_dst": Field(Bool(), "connect to the original destination (SO_ORIGINAL_DST) of "
                          "connections redirected by iptables"),
    "client_hello_timeout": Field(Duration(positive=True), "time allowed for the ClientHello when "
                                  "sni_routes is set"),
    "buffer": Field(Size(positive=True), "bytes buffered per direction before reading pauses"),
}, build=TcpOptions)

# Merged into document.LISTENER's fields.
LISTENER_FIELDS = {
    "tls": Field(SERVER_TLS, "terminate TLS: {cert, key, alpn, client_ca, require_client_cert, sni}"),
    "http2": Field(HTTP2, "HTTP/2 limits and flow-control windows offered to clients"),
    "tcp": Field(TCP, "settings of a protocol: tcp listener: idle timeout, SNI routing, original_dst, buffer"),
}

# Merged into document.CLUSTER's fields.
CLUSTER_FIELDS = {
    "tls": Field(CLIENT_TLS, "originate TLS to the endpoints: {ca, sni, cert, key, verify, alpn}"),
    "max_concurrent_streams": Field(Int(1, 2 ** 31 - 1), "protocol: http2: streams per connection, "
                                    "at most what the endpoint allows (default 100)"),
}
