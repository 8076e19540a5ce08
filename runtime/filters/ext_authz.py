"""The ext_authz filter: ask an authorization service about each request, as Envoy's
envoy.filters.http.ext_authz.

Config (Envoy's ExtAuthz shape, as plain data) is parsed once: a gRPC service
(`grpc_service.envoy_grpc.cluster_name`, envoy.service.auth.v3.Authorization/Check,
see ext_authz_grpc) or an HTTP one (`http_service.server_uri` through the worker's
http_call). on_request always returns Pause: the check is I/O, awaited by the
executor like any paused step, so the worker goes on serving other streams.
The awaited coroutine gives None (OK: continue, with the headers the service
said to add) or a LocalReply (denied: the service's status, default 403,
headers and body; an error, a timeout or a 5xx from an HTTP service: status_on_error,
default 403). With
failure_mode_allow an error lets the request through, marked with
`x-envoy-auth-failure-mode-allowed: true` when failure_mode_allow_header_add.
with_request_body is not supported: the check is made on the request head.
Stats (Envoy's names): http.<listener>.ext_authz.{ok,denied,error,failure_mode_allowed}.
"""
from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from ..actions import Action, LocalReply, Pause
from ..context import StreamContext
from ..pipeline import HttpFilter
from ..registry import BuildContext, register_filter
from ..stats import Store
from . import _config as C

STATS = ("ok", "denied", "error", "failure_mode_allowed")
log = logging.getLogger("mosnx.ext_authz")
DEFAULT_TIMEOUT = 0.2                 # Envoy's: 200 ms
FAILURE_MODE_HEADER = "x-envoy-auth-failure-mode-allowed"
# the HTTP check request always carries these, whatever allowed_headers says (Envoy's rule)
ALWAYS_SENT = frozenset({"authorization", "host", "content-length"})
# a denial's headers that reach the client even when allowed_client_headers does not name them
CLIENT_ALWAYS = frozenset({"www-authenticate", "location"})
# hop-by-hop and framing headers never copied between the request, the service and the client
NEVER_COPIED = frozenset({"host", ":authority", "content-length", "transfer-encoding", "connection",
                          "keep-alive", "upgrade", "te", "trailer", "proxy-connection"})


Matcher = Callable[[str], bool]


def _string_matcher(m: Any, where: str) -> Matcher:
    """One Envoy StringMatcher ({exact|prefix|suffix|contains|safe_regex, ignore_case}), or a
    plain string meaning exact; header names compare in lower case."""
    if isinstance(m, str):
        m = {"exact": m}
    if not isinstance(m, dict):
        raise ValueError(f"{where}: expected a string matcher such as {{exact: x-user}}")
    C.known_keys(m, {"exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case"}, where)
    kinds = [k for k in m if k != "ignore_case"]
    if len(kinds) != 1:
        raise ValueError(f"{where}: needs one of exact, prefix, suffix, contains, safe_regex")
    kind = kinds[0]
    value = m[kind]
    if kind == "safe_regex":
        value = value.get("regex") if isinstance(value, dict) else value
        try:
            rx = re.compile(str(value), re.IGNORECASE)
        except re.error as e:
            raise ValueError(f"{where}.safe_regex: {e}") from None
        return lambda s: rx.fullmatch(s) is not None
    v = str(value).lower()          # header names: case never matters
    if kind == "exact":
        return lambda s: s == v
    if kind == "prefix":
        return lambda s: s.startswith(v)
    if kind == "suffix":
        return lambda s: s.endswith(v)
    return lambda s: v in s


def _matchers(sec: Any, where: str) -> tuple[Matcher, ...] | None:
    """A ListStringMatcher ({patterns: [...]}, or the list itself); None when absent."""
    if sec is None:
        return None
    items = sec.get("patterns") if isinstance(sec, dict) else sec
    if not isinstance(items, list):
        raise ValueError(f"{where}: expected {{patterns: [string matchers]}}")
    return tuple(_string_matcher(m, f"{where}.patterns[{i}]") for i, m in enumerate(items))


def matches(ms: tuple[Matcher, ...] | None, name: str) -> bool:
    return ms is not None and any(m(name) for m in ms)


@dataclass(frozen=True, slots=True)
class HttpService:
    uri: str
    cluster: str
    timeout: float
    path_prefix: str = ""
    allowed_headers: tuple[Matcher, ...] | None = None
    headers_to_add: tuple[tuple[str, str], ...] = ()
    allowed_upstream_headers: tuple[Matcher, ...] | None = None
    allowed_client_headers: tuple[Matcher, ...] | None = None

    def __post_init__(self) -> None:
        u = urlsplit(self.uri)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise ValueError(f"ext_authz.http_service.server_uri.uri must be an http(s) URL, not {self.uri!r}")
        if self.path_prefix and not self.path_prefix.startswith("/"):
            raise ValueError("ext_authz.http_service.path_prefix must start with /")


@dataclass(frozen=True, slots=True)
class ExtAuthzConfig:
    grpc_cluster: str = ""
    http: HttpService | None = None
    timeout: float = DEFAULT_TIMEOUT
    failure_mode_allow: bool = False
    failure_mode_allow_header_add: bool = False
    status_on_error: int = 403
    include_peer_certificate: bool = False
    context_extensions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if bool(self.grpc_cluster) == (self.http is not None):
            raise ValueError("ext_authz needs exactly one of grpc_service and http_service")
        if self.timeout <= 0:
            raise ValueError("ext_authz timeout must be more than 0")

    @property
    def cluster(self) -> str:
        return self.http.cluster if self.http is not None else self.grpc_cluster

    @classmethod
    def from_dict(cls, cfg: dict) -> "ExtAuthzConfig":
        """Envoy's names: grpc_service {envoy_grpc {cluster_name}, timeout} or http_service {server_uri
        {uri, cluster, timeout}, path_prefix, authorization_request {allowed_headers, headers_to_add},
        authorization_response {allowed_upstream_headers, allowed_client_headers}}, failure_mode_allow,
        failure_mode_allow_header_add, status_on_error; see docs/authn.md."""
        C.known_keys(cfg, {"grpc_service", "http_service", "failure_mode_allow", "failure_mode_allow_header_add",
                           "status_on_error", "include_peer_certificate", "transport_api_version",
                           "with_request_body", "stat_prefix", "context_extensions"}, "ext_authz")
        if cfg.get("with_request_body"):
            raise ValueError("ext_authz.with_request_body is not supported: the check is made on the request head")
        if cfg.get("transport_api_version") not in (None, "V3", 2, "AUTO"):
            raise ValueError("ext_authz.transport_api_version: only V3 is supported")
        kw: dict[str, Any] = {"failure_mode_allow": bool(cfg.get("failure_mode_allow", False)),
                              "failure_mode_allow_header_add": bool(cfg.get("failure_mode_allow_header_add", False)),
                              "include_peer_certificate": bool(cfg.get("include_peer_certificate", False))}
        if "status_on_error" in cfg:
            kw["status_on_error"] = C.status(cfg["status_on_error"], "ext_authz.status_on_error")
        ext = cfg.get("context_extensions") or {}
        if not isinstance(ext, dict):
            raise ValueError("ext_authz.context_extensions: expected a mapping of strings")
        kw["context_extensions"] = {str(k): str(v) for k, v in ext.items()}
        g = C.section(cfg, "grpc_service", {"envoy_grpc", "timeout"}, "ext_authz.grpc_service")
        if g is not None:
            eg = C.section(g, "envoy_grpc", {"cluster_name", "authority"}, "ext_authz.grpc_service.envoy_grpc")
            if eg is None or not eg.get("cluster_name"):
                raise ValueError("ext_authz.grpc_service: needs envoy_grpc.cluster_name")
            kw["grpc_cluster"] = str(eg["cluster_name"])
            if "timeout" in g:
                kw["timeout"] = C.duration(g["timeout"], "ext_authz.grpc_service.timeout")
        h = C.section(cfg, "http_service", {"server_uri", "path_prefix", "authorization_request",
                                             "authorization_response"}, "ext_authz.http_service")
        if h is not None:
            su = C.section(h, "server_uri", {"uri", "cluster", "timeout"}, "ext_authz.http_service.server_uri")
            if su is None or not su.get("uri") or not su.get("cluster"):
                raise ValueError("ext_authz.http_service: needs server_uri {uri, cluster, timeout}")
            if "timeout" in su:
                kw["timeout"] = C.duration(su["timeout"], "ext_authz.http_service.server_uri.timeout")
            areq = C.section(h, "authorization_request", {"allowed_headers", "headers_to_add"},
                             "ext_authz.http_service.authorization_request") or {}
            aresp = C.section(h, "authorization_response", {"allowed_upstream_headers", "allowed_client_headers"},
                              "ext_authz.http_service.authorization_response") or {}
            add = []
            raw_add = areq.get("headers_to_add") or []
            if not isinstance(raw_add, list):
                raise ValueError("ext_authz.http_service.authorization_request.headers_to_add: expected a list "
                                 "of {key, value}")
            for i, hv in enumerate(raw_add):
                if not isinstance(hv, dict) or not isinstance(hv.get("key"), str) or not hv["key"]:
                    raise ValueError(f"ext_authz.http_service.authorization_request.headers_to_add[{i}]: "
                                     "expected {key, value}")
                add.append((hv["key"].lower(), str(hv.get("value", ""))))
            w = "ext_authz.http_service.authorization_"
            kw["http"] = HttpService(
                str(su["uri"]), str(su["cluster"]), kw.get("timeout", DEFAULT_TIMEOUT),
                str(h.get("path_prefix") or ""),
                _matchers(areq.get("allowed_headers"), w + "request.allowed_headers"), tuple(add),
                _matchers(aresp.get("allowed_upstream_headers"), w + "response.allowed_upstream_headers"),
                _matchers(aresp.get("allowed_client_headers"), w + "response.allowed_client_headers"))
        return cls(**kw)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the service answered, in either protocol's terms."""
    allowed: bool
    status: int = 403                                       # denied only
    set_headers: tuple[tuple[str, str], ...] = ()           # OK: set on the request
    append_headers: tuple[tuple[str, str], ...] = ()        # OK: appended to the request
    remove_headers: tuple[str, ...] = ()                    # OK: removed from the request
    client_headers: tuple[tuple[str, str], ...] = ()        # denied: sent to the client
    body: bytes = b""                                       # denied


class CheckError(Exception):
    """The service could not be asked or did not answer in time."""


class ExtAuthzFilter(HttpFilter):
    name = "ext_authz"

    def __init__(self, config: ExtAuthzConfig, name: str = "ext_authz", stats: Store | None = None,
                 http_call: Callable[..., Awaitable[Any]] | None = None,
                 endpoint: Callable[[str], tuple[str, int] | None] | None = None,
                 listener: str = "listener"):
        self.config = config
        self.name = name
        stats = stats or Store()
        self._ok = stats.counter(f"http.{listener}.ext_authz.ok")
        self._denied = stats.counter(f"http.{listener}.ext_authz.denied")
        self._error = stats.counter(f"http.{listener}.ext_authz.error")
        self._failure_allowed = stats.counter(f"http.{listener}.ext_authz.failure_mode_allowed")
        self._http_call = http_call
        self._grpc: Any = None
        if config.grpc_cluster:
            from .ext_authz_grpc import GrpcCheck       # grpc loads only where a gRPC service is used
            self._grpc = GrpcCheck(config, endpoint)
        self._error_reply = LocalReply(config.status_on_error, b"", (), "ext_authz_error")

    def on_request(self, ctx: StreamContext) -> Action | None:
        return Pause(self._authorize(ctx))

    async def _authorize(self, ctx: StreamContext) -> Action | None:
        try:
            async with asyncio.timeout(self.config.timeout):
                verdict = await (self._grpc.check(ctx) if self._grpc is not None else self._http_check(ctx))
        except Exception as e:          # CheckError, TimeoutError, a refused connection, ...
            log.debug("ext_authz check of %s %s failed: %r", ctx.request.method, ctx.request.path, e)
            return self._on_error(ctx)
        if verdict.allowed:
            self._ok.value += 1
            h = ctx.request.headers
            for k in verdict.remove_headers:
                h.remove(k)
            for k, v in verdict.set_headers:
                h.set(k, v)
            for k, v in verdict.append_headers:
                h.add(k, v)
            return None
        self._denied.value += 1
        return LocalReply(verdict.status, verdict.body, verdict.client_headers, "ext_authz_denied")

    def _on_error(self, ctx: StreamContext) -> Action | None:
        self._error.value += 1
        if self.config.failure_mode_allow:
            self._failure_allowed.value += 1
            if self.config.failure_mode_allow_header_add:
                ctx.request.headers.set(FAILURE_MODE_HEADER, "true")
            return None
        return self._error_reply

    # -- the HTTP service ------------------------------------------------------
    def check_request_headers(self, ctx: StreamContext) -> list[tuple[str, str]]:
        """The HTTP check request's head: the request's method and path (after
        path_prefix), its host, the headers allowed_headers lets through and
        headers_to_add."""
        hs = self.config.http
        assert hs is not None
        r = ctx.request
        out = [(":method", r.method), (":path", hs.path_prefix + r.path), (":authority", r.host)]
        for k, v in r.headers.pairs():
            lk = k.lower()
            if lk in NEVER_COPIED:
                continue
            if lk in ALWAYS_SENT or matches(hs.allowed_headers, lk):
                out.append((lk, v))
        out.extend(hs.headers_to_add)
        return out

    async def _http_check(self, ctx: StreamContext) -> Verdict:
        hs = self.config.http
        assert hs is not None
        if self._http_call is None:
            raise CheckError("no http_call service in this process")
        try:
            status, headers, body = await self._http_call(hs.cluster, self.check_request_headers(ctx), b"",
                                                          self.config.timeout)
        except (TimeoutError, asyncio.CancelledError):
            raise
        except Exception as e:
            raise CheckError(str(e)) from e
        if 500 <= status <= 599:           # Envoy: a 5xx from the service is an error, not a denial
            raise CheckError(f"authorization service answered {status}")
        pairs = [(k.lower(), v) for k, v in headers]
        if status == 200:
            up = tuple((k, v) for k, v in pairs
                       if k not in NEVER_COPIED and matches(hs.allowed_upstream_headers, k))
            return Verdict(True, set_headers=up)
        if hs.allowed_client_headers is None:       # Envoy: all of them when no list is given
            client = tuple((k, v) for k, v in pairs if k not in NEVER_COPIED)
        else:
            client = tuple((k, v) for k, v in pairs if k not in NEVER_COPIED
                           and (k in CLIENT_ALWAYS or matches(hs.allowed_client_headers, k)))
        return Verdict(False, status if 100 <= status <= 599 else 403, client_headers=client, body=body)


def _factory(name: str, cfg: dict, ctx: BuildContext) -> ExtAuthzFilter:
    config = ExtAuthzConfig.from_dict(cfg or {})
    if ctx.clusters and config.cluster not in ctx.clusters:
        raise ValueError(f'cluster "{config.cluster}" is not defined')
    listener = getattr(ctx.listener, "name", "") or "listener"
    return ExtAuthzFilter(config, name, ctx.services.stats, ctx.services.http_call, ctx.services.endpoint,
                          listener=listener)


register_filter("ext_authz", _factory)
