"""The jwt_authn filter: verify JSON Web Tokens as Envoy's envoy.filters.http.jwt_authn.

Config (Envoy's JwtAuthentication shape, as plain data) is parsed once into
providers, rules and requirement trees. Per request, on_request finds the first
rule whose path matches, then evaluates its requirement. Evaluation is pure (it
reads the request and returns a verdict and the verified tokens); only when a
provider's remote JWKS is not cached does the step return Pause, and the awaited
coroutine fetches the key set through the worker's http_call (one fetch per
provider at a time, shared by the requests that wait on it) and evaluates again.
So a request that needs no fetch never leaves the synchronous path.

A failure answers 401 (403 for `Audiences in Jwt are not allowed`) with Envoy's
message as the body and `www-authenticate: Bearer realm="<scheme>://<host><path>"`
(plus `, error="invalid_token"` unless the token is missing). On success the
verified payloads go to metadata["envoy.filters.http.jwt_authn"][payload_in_metadata]
and to forward_payload_header, and tokens not forwarded are removed.
Stats (Envoy's names): http.<listener>.jwt_authn.{allowed,denied,jwks_fetch_success,jwks_fetch_failed}.
"""
from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Union
from urllib.parse import urlsplit

from ..actions import Action, LocalReply, Pause
from ..context import StreamContext
from ..pipeline import HttpFilter
from ..registry import BuildContext, register_filter
from ..stats import Store
from . import _config as C
from . import jwt_verify as V

STATS = ("allowed", "denied", "jwks_fetch_success", "jwks_fetch_failed")
METADATA_NAMESPACE = "envoy.filters.http.jwt_authn"
DEFAULT_CACHE_DURATION = 600.0        # Envoy's: 10 minutes
DEFAULT_FETCH_TIMEOUT = 1.0
MAX_URI = 256                         # Envoy cuts the realm's path here


@dataclass(frozen=True, slots=True)
class HeaderLocation:
    name: str                         # lower case
    value_prefix: str = ""


@dataclass(frozen=True, slots=True)
class RemoteJwks:
    uri: str
    cluster: str
    timeout: float = DEFAULT_FETCH_TIMEOUT
    cache_duration: float = DEFAULT_CACHE_DURATION

    def __post_init__(self) -> None:
        u = urlsplit(self.uri)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise ValueError(f"remote_jwks.http_uri.uri must be an http(s) URL, not {self.uri!r}")
        if not self.cluster:
            raise ValueError("remote_jwks.http_uri needs a cluster")
        if self.timeout <= 0 or self.cache_duration <= 0:
            raise ValueError("remote_jwks timeout and cache_duration must be more than 0")


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    issuer: str = ""
    audiences: tuple[str, ...] = ()               # normalised
    local_jwks: V.KeySet | None = None
    remote_jwks: RemoteJwks | None = None
    from_headers: tuple[HeaderLocation, ...] = ()
    from_params: tuple[str, ...] = ()
    forward: bool = False
    forward_payload_header: str = ""
    payload_in_metadata: str = ""
    clock_skew: float = 60.0

    def __post_init__(self) -> None:
        if (self.local_jwks is None) == (self.remote_jwks is None):
            raise ValueError(f"provider {self.name!r} needs exactly one of local_jwks and remote_jwks")
        if not self.from_headers and not self.from_params:
            object.__setattr__(self, "from_headers", (HeaderLocation("authorization", "Bearer "),))
            object.__setattr__(self, "from_params", ("access_token",))


# A requirement: a provider's name, ("any"|"all", children), or "allow_missing" /
# "allow_missing_or_failed"
Requirement = Union[str, tuple[str, tuple["Requirement", ...]]]
ALLOW_MISSING, ALLOW_MISSING_OR_FAILED = "\0allow_missing", "\0allow_missing_or_failed"


@dataclass(frozen=True, slots=True)
class Rule:
    kind: str                          # "prefix" | "path" | "regex"
    value: str
    requirement: Requirement | None    # None: no verification on this path
    regex: re.Pattern[str] | None = None

    def matches(self, path: str) -> bool:
        if self.kind == "prefix":
            return path.startswith(self.value)
        if self.kind == "path":
            return path == self.value
        return self.regex is not None and self.regex.fullmatch(path) is not None


@dataclass(frozen=True, slots=True)
class JwtAuthnConfig:
    providers: dict[str, Provider]
    rules: tuple[Rule, ...] = ()
    requirement_map: dict[str, Requirement] = field(default_factory=dict)
    bypass_cors_preflight: bool = False
    strip_failure_response: bool = False

    @classmethod
    def from_dict(cls, cfg: dict, base_dir: str = "") -> "JwtAuthnConfig":
        """Envoy's names: providers {<name>: {issuer, audiences, local_jwks {inline_string | filename},
        remote_jwks {http_uri {uri, cluster, timeout}, cache_duration}, from_headers [{name, value_prefix}],
        from_params, forward, forward_payload_header, payload_in_metadata, clock_skew_seconds}},
        rules [{match {prefix | path | safe_regex}, requires | requirement_name}], requirement_map; see docs/authn.md."""
        C.known_keys(cfg, {"providers", "rules", "requirement_map", "bypass_cors_preflight",
                           "strip_failure_response"}, "jwt_authn")
        raw = cfg.get("providers")
        if not isinstance(raw, dict) or not raw:
            raise ValueError("jwt_authn.providers: expected a mapping of provider names to providers")
        providers = {str(n): _provider(str(n), p, base_dir) for n, p in raw.items()}
        rmap_raw = cfg.get("requirement_map") or {}
        if not isinstance(rmap_raw, dict):
            raise ValueError("jwt_authn.requirement_map: expected a mapping of names to requirements")
        rmap = {str(n): _requirement(r, providers, f"jwt_authn.requirement_map.{n}") for n, r in rmap_raw.items()}
        rules_raw = cfg.get("rules") or []
        if not isinstance(rules_raw, list):
            raise ValueError("jwt_authn.rules: expected a list")
        rules = tuple(_rule(r, providers, rmap, f"jwt_authn.rules[{i}]") for i, r in enumerate(rules_raw))
        return cls(providers, rules, rmap, bool(cfg.get("bypass_cors_preflight", False)),
                   bool(cfg.get("strip_failure_response", False)))


def _strs(v: Any, key: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise ValueError(f"{key}: expected a list of strings")
    return tuple(v)


def _provider(name: str, p: Any, base_dir: str) -> Provider:
    where = f"jwt_authn.providers.{name}"
    if not isinstance(p, dict):
        raise ValueError(f"{where}: expected a mapping")
    C.known_keys(p, {"issuer", "audiences", "local_jwks", "remote_jwks", "from_headers", "from_params",
                     "forward", "forward_payload_header", "payload_in_metadata", "clock_skew_seconds"}, where)
    kw: dict[str, Any] = {"name": name, "issuer": str(p.get("issuer") or ""),
                          "audiences": tuple(V.normalize_audience(a) for a in _strs(p.get("audiences"), where + ".audiences")),
                          "from_params": _strs(p.get("from_params"), where + ".from_params"),
                          "forward": bool(p.get("forward", False)),
                          "forward_payload_header": str(p.get("forward_payload_header") or "").lower(),
                          "payload_in_metadata": str(p.get("payload_in_metadata") or "")}
    if "clock_skew_seconds" in p:
        skew = p["clock_skew_seconds"]
        if isinstance(skew, bool) or not isinstance(skew, int) or skew < 0:
            raise ValueError(f"{where}.clock_skew_seconds: expected a whole number of seconds >= 0")
        kw["clock_skew"] = float(skew)
    hdrs = []
    raw_headers = p.get("from_headers") or []
    if not isinstance(raw_headers, list):
        raise ValueError(f"{where}.from_headers: expected a list of {{name, value_prefix}}")
    for i, h in enumerate(raw_headers):
        if not isinstance(h, dict) or not isinstance(h.get("name"), str) or not h["name"]:
            raise ValueError(f"{where}.from_headers[{i}]: expected {{name, value_prefix}}")
        C.known_keys(h, {"name", "value_prefix"}, f"{where}.from_headers[{i}]")
        hdrs.append(HeaderLocation(h["name"].lower(), str(h.get("value_prefix") or "")))
    kw["from_headers"] = tuple(hdrs)
    local = C.section(p, "local_jwks", {"inline_string", "filename"}, where + ".local_jwks")
    if local is not None:
        if "inline_string" in local:
            text = str(local["inline_string"])
        elif "filename" in local:
            path = str(local["filename"])
            try:
                with open(os.path.join(base_dir, path) if base_dir else path, "rb") as fh:
                    text = fh.read().decode("utf-8", "replace")
            except OSError as e:
                raise ValueError(f"{where}.local_jwks.filename: cannot read {path}: {e.strerror}") from None
        else:
            raise ValueError(f"{where}.local_jwks: needs inline_string or filename")
        keys = V.load_jwks(text, allow_hmac=True)
        if isinstance(keys, V.Failure):
            raise ValueError(f"{where}.local_jwks: {keys.message}")
        kw["local_jwks"] = keys
    remote = C.section(p, "remote_jwks", {"http_uri", "cache_duration"}, where + ".remote_jwks")
    if remote is not None:
        hu = C.section(remote, "http_uri", {"uri", "cluster", "timeout"}, where + ".remote_jwks.http_uri")
        if hu is None:
            raise ValueError(f"{where}.remote_jwks: needs http_uri {{uri, cluster, timeout}}")
        r: dict[str, Any] = {"uri": str(hu.get("uri") or ""), "cluster": str(hu.get("cluster") or "")}
        if "timeout" in hu:
            r["timeout"] = C.duration(hu["timeout"], where + ".remote_jwks.http_uri.timeout")
        if "cache_duration" in remote:
            r["cache_duration"] = C.duration(remote["cache_duration"], where + ".remote_jwks.cache_duration")
        try:
            kw["remote_jwks"] = RemoteJwks(**r)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
    return Provider(**kw)


def _requirement(r: Any, providers: dict[str, Provider], where: str) -> Requirement:
    if not isinstance(r, dict) or len(r) != 1:
        raise ValueError(f"{where}: a requirement is one of provider_name, requires_any, requires_all, "
                         "allow_missing, allow_missing_or_failed")
    (kind, v), = r.items()
    if kind == "provider_name":
        if not isinstance(v, str) or v not in providers:
            raise ValueError(f"{where}.provider_name: no provider named {v!r} (known: {', '.join(sorted(providers))})")
        return str(v)
    if kind in ("requires_any", "requires_all"):
        items = v.get("requirements") if isinstance(v, dict) else v
        if not isinstance(items, list) or len(items) < 2:
            raise ValueError(f"{where}.{kind}: needs requirements, a list of at least two")
        return (kind[9:], tuple(_requirement(x, providers, f"{where}.{kind}[{i}]") for i, x in enumerate(items)))
    if kind == "allow_missing":
        return ALLOW_MISSING
    if kind == "allow_missing_or_failed":
        return ALLOW_MISSING_OR_FAILED
    raise ValueError(f"{where}: unknown requirement {kind!r}")


def _rule(r: Any, providers: dict[str, Provider], rmap: dict[str, Requirement], where: str) -> Rule:
    if not isinstance(r, dict):
        raise ValueError(f"{where}: expected {{match, requires | requirement_name}}")
    C.known_keys(r, {"match", "requires", "requirement_name"}, where)
    m = C.section(r, "match", {"prefix", "path", "safe_regex"}, where + ".match")
    if m is None or len(m) != 1:
        raise ValueError(f"{where}.match: needs one of prefix, path, safe_regex")
    (kind, value), = m.items()
    if kind != "safe_regex" and not isinstance(value, str):
        raise ValueError(f"{where}.match.{kind}: expected a string")
    regex = None
    if kind == "safe_regex":
        value = value.get("regex") if isinstance(value, dict) else value
        try:
            regex = re.compile(str(value))
        except re.error as e:
            raise ValueError(f"{where}.match.safe_regex: {e}") from None
        kind = "regex"
    req: Requirement | None = None
    if r.get("requires") is not None:
        req = _requirement(r["requires"], providers, where + ".requires")
    elif r.get("requirement_name"):
        name = str(r["requirement_name"])
        if name not in rmap:
            raise ValueError(f"{where}.requirement_name: {name!r} is not in requirement_map")
        req = rmap[name]
    return Rule(kind, str(value), req, regex)


# -- per request ------------------------------------------------------------------

@dataclass(slots=True)
class Found:
    """One token found in the request: where, and what verifying it gave."""
    raw: str
    header: str | None                # the header it came from (None: a query parameter)
    provider: Provider | None = None
    token: V.Token | None = None


class NeedKeys(Exception):
    """Evaluation reached a provider whose remote key set is not cached."""
    def __init__(self, provider: Provider):
        self.provider = provider


# (verdict, tokens verified): a verdict of None means the requirement is met
Outcome = tuple["V.Failure | None", list[Found]]
KeyLookup = Callable[[Provider], "V.KeySet | V.Failure | None"]


def _extract(ctx: StreamContext, p: Provider) -> list[Found]:
    out: list[Found] = []
    h = ctx.request.headers
    for loc in p.from_headers:
        for value in h.get_all(loc.name):
            if loc.value_prefix:
                i = value.find(loc.value_prefix)
                if i < 0:
                    continue
                value = value[i + len(loc.value_prefix):]
            value = value.strip()
            if value:
                out.append(Found(value, loc.name))
    if p.from_params and "?" in ctx.request.path:
        q = ctx.query
        for name in p.from_params:
            v = q.get(name)
            if v:
                out.append(Found(v, None))
    return out


class Evaluation:
    """One request's evaluation against cached keys; raises NeedKeys to ask for a fetch."""
    __slots__ = ("ctx", "cfg", "keys", "now", "_all")

    def __init__(self, ctx: StreamContext, cfg: JwtAuthnConfig, keys: KeyLookup, now: float):
        self.ctx, self.cfg, self.keys, self.now = ctx, cfg, keys, now
        self._all: list[Found] | None = None

    def run(self, req: Requirement) -> Outcome:
        if isinstance(req, str):
            if req == ALLOW_MISSING:
                return self._allow(missing_ok=True)
            if req == ALLOW_MISSING_OR_FAILED:
                return self._allow(missing_ok=True, failed_ok=True)
            return self._provider(self.cfg.providers[req])
        mode, children = req
        verified: list[Found] = []
        first: V.Failure | None = None
        for child in children:
            fail, got = self.run(child)
            if mode == "any":
                if fail is None:
                    return None, got
                if first is None or (first.message == V.MISSING and fail.message != V.MISSING):
                    first = fail
            else:
                if fail is not None:
                    return fail, []
                verified.extend(got)
        return (first, []) if mode == "any" else (None, verified)

    def _provider(self, p: Provider) -> Outcome:
        found = _extract(self.ctx, p)
        if not found:
            return V.Failure(V.MISSING), []
        for f in found:
            fail = self._verify(f, p)
            if fail is not None:
                return fail, []
        return None, found

    def _allow(self, missing_ok: bool, failed_ok: bool = False) -> Outcome:
        if self._all is None:
            seen: dict[str, Found] = {}
            for p in self.cfg.providers.values():
                for f in _extract(self.ctx, p):
                    seen.setdefault(f.raw, f)
            self._all = list(seen.values())
        ok: list[Found] = []
        for f in self._all:
            tok = V.parse(f.raw)
            fail: V.Failure | None
            if isinstance(tok, V.Failure):
                fail = tok
            else:
                owner = next((p for p in self.cfg.providers.values() if p.issuer == tok.issuer), None)
                fail = V.Failure(V.UNKNOWN_ISSUER) if owner is None else self._verify(f, owner)
            if fail is None:
                ok.append(f)
            elif not failed_ok:
                return fail, []
        return None, ok

    def _verify(self, f: Found, p: Provider) -> V.Failure | None:
        tok = V.parse(f.raw)
        if isinstance(tok, V.Failure):
            return tok
        if p.issuer and tok.issuer != p.issuer:
            return V.Failure(V.UNKNOWN_ISSUER)
        fail = V.check_time(tok, self.now, p.clock_skew)
        if fail is not None:
            return fail
        if p.audiences and not any(V.normalize_audience(a) in p.audiences for a in V.audiences(tok)):
            return V.Failure(V.AUDIENCE_NOT_ALLOWED)
        keys = self.keys(p)
        if keys is None:
            raise NeedKeys(p)
        if isinstance(keys, V.Failure):
            return keys
        fail = V.verify_signature(tok, keys)
        if fail is None:
            f.provider, f.token = p, tok
        return fail


class _Cached:
    __slots__ = ("keys", "expires", "inflight", "task")

    def __init__(self) -> None:
        self.keys: V.KeySet | None = None
        self.expires = 0.0
        self.inflight: asyncio.Future[V.KeySet | V.Failure] | None = None
        self.task: asyncio.Task[None] | None = None     # held so the loop does not drop it


class JwtAuthnFilter(HttpFilter):
    name = "jwt_authn"

    def __init__(self, config: JwtAuthnConfig, name: str = "jwt_authn", stats: Store | None = None,
                 http_call: Callable[..., Awaitable[Any]] | None = None, listener: str = "listener"):
        self.config = config
        self.name = name
        stats = stats or Store()
        self._allowed = stats.counter(f"http.{listener}.jwt_authn.allowed")
        self._denied = stats.counter(f"http.{listener}.jwt_authn.denied")
        self._fetch_ok = stats.counter(f"http.{listener}.jwt_authn.jwks_fetch_success")
        self._fetch_failed = stats.counter(f"http.{listener}.jwt_authn.jwks_fetch_failed")
        self._http_call = http_call
        self._cache: dict[str, _Cached] = {p.name: _Cached() for p in config.providers.values() if p.remote_jwks}
        self._rules = config.rules

    # -- the step --------------------------------------------------------------
    def on_request(self, ctx: StreamContext) -> Action | None:
        cfg = self.config
        if cfg.bypass_cors_preflight and ctx.request.method == "OPTIONS" and \
                ctx.request.headers.has(b"origin") and ctx.request.headers.has(b"access-control-request-method"):
            self._allowed.value += 1
            return None
        req = self.requirement_for(ctx)
        if req is None:
            self._allowed.value += 1
            return None
        return self._decide(ctx, req, {})

    def requirement_for(self, ctx: StreamContext, requirement_name: str | None = None) -> Requirement | None:
        """The requirement the request must meet: a route's PerRouteConfig.requirement_name
        (passed by whoever holds per-route config) wins; otherwise the first rule whose
        path matches (None: no rule, nothing to verify)."""
        if requirement_name is not None:
            return self.config.requirement_map.get(requirement_name)
        path = ctx.url_path
        for rule in self._rules:
            if rule.matches(path):
                return rule.requirement
        return None

    def _decide(self, ctx: StreamContext, req: Requirement, fetched: dict[str, V.KeySet | V.Failure]) -> Action | None:
        now = time.time()

        def lookup(p: Provider) -> V.KeySet | V.Failure | None:
            if p.local_jwks is not None:
                return p.local_jwks
            got = fetched.get(p.name)
            if got is not None:
                return got
            c = self._cache[p.name]
            return c.keys if c.keys is not None and time.monotonic() < c.expires else None

        try:
            fail, verified = Evaluation(ctx, self.config, lookup, now).run(req)
        except NeedKeys as need:
            return Pause(self._fetch_then_decide(ctx, req, need.provider, fetched))
        if fail is not None:
            self._denied.value += 1
            return self._reply(ctx, fail)
        self._allowed.value += 1
        self._apply(ctx, verified)
        return None

    async def _fetch_then_decide(self, ctx: StreamContext, req: Requirement, p: Provider,
                                 fetched: dict[str, V.KeySet | V.Failure]) -> Action | None:
        fetched = {**fetched, p.name: await self._keys(p)}
        action = self._decide(ctx, req, fetched)
        if isinstance(action, Pause):          # another provider's keys are needed too
            return await action.awaitable
        return action

    async def _keys(self, p: Provider) -> V.KeySet | V.Failure:
        """The provider's remote key set, fetched once for every request that waits on it."""
        c = self._cache[p.name]
        if c.keys is not None and time.monotonic() < c.expires:
            return c.keys
        if c.inflight is None:
            c.inflight = asyncio.get_running_loop().create_future()
            c.task = asyncio.ensure_future(self._fetch(p, c))
        return await asyncio.shield(c.inflight)

    async def _fetch(self, p: Provider, c: _Cached) -> None:
        rj = p.remote_jwks
        assert rj is not None and c.inflight is not None
        fut = c.inflight
        result: V.KeySet | V.Failure
        try:
            if self._http_call is None:
                raise RuntimeError("no http_call service in this process")
            u = urlsplit(rj.uri)
            path = (u.path or "/") + (f"?{u.query}" if u.query else "")
            status, _headers, body = await self._http_call(
                rj.cluster, [(":method", "GET"), (":path", path), (":authority", u.netloc),
                             ("accept", "application/json")], b"", rj.timeout)
            loaded = V.load_jwks(body, allow_hmac=False) if status == 200 else V.Failure(V.JWKS_FETCH_FAIL)
            result = loaded if isinstance(loaded, V.KeySet) else V.Failure(V.JWKS_FETCH_FAIL)
        except Exception:
            result = V.Failure(V.JWKS_FETCH_FAIL)
        if isinstance(result, V.KeySet):
            self._fetch_ok.value += 1
            c.keys, c.expires = result, time.monotonic() + rj.cache_duration
        else:
            self._fetch_failed.value += 1      # not cached: the next request that needs it fetches again
        c.inflight = None
        if not fut.done():
            fut.set_result(result)

    # -- outcomes ----------------------------------------------------------------
    def _reply(self, ctx: StreamContext, fail: V.Failure) -> LocalReply:
        detail = "jwt_authn_access_denied{" + fail.message.replace(" ", "_") + "}"
        if self.config.strip_failure_response:
            return LocalReply(fail.status, b"", (), detail)
        r = ctx.request
        value = f'Bearer realm="{r.scheme}://{r.host}{r.path[:MAX_URI]}"'
        if fail.message != V.MISSING:
            value += ', error="invalid_token"'
        return LocalReply(fail.status, fail.message.encode(), (("www-authenticate", value),), detail)

    def _apply(self, ctx: StreamContext, verified: list[Found]) -> None:
        h = ctx.request.headers
        for f in verified:
            p, tok = f.provider, f.token
            if p is None or tok is None:
                continue
            if p.payload_in_metadata:
                ns = ctx.meta().setdefault(METADATA_NAMESPACE, {})
                ns[p.payload_in_metadata] = tok.payload
            if p.forward_payload_header:
                h.set(p.forward_payload_header, tok.payload_segment)
            if not p.forward and f.header is not None:
                h.remove(f.header)


def request_principals(ctx: StreamContext) -> list[str]:
    """Istio's request principals (`iss/sub`) of the payloads jwt_authn put in metadata."""
    ns = (ctx.metadata or {}).get(METADATA_NAMESPACE)
    if not isinstance(ns, dict):
        return []
    return [f"{p.get('iss', '')}/{p.get('sub', '')}" for p in ns.values()
            if isinstance(p, dict) and "iss" in p and "sub" in p]


def _factory(name: str, cfg: dict, ctx: BuildContext) -> JwtAuthnFilter:
    path = getattr(ctx.config, "path", "") or ""
    base_dir = os.path.dirname(path) if path and not path.startswith("<") else ""
    config = JwtAuthnConfig.from_dict(cfg or {}, base_dir)
    for p in config.providers.values():
        if p.remote_jwks is not None and ctx.clusters and p.remote_jwks.cluster not in ctx.clusters:
            raise ValueError(f'provider {p.name!r}: remote_jwks cluster "{p.remote_jwks.cluster}" is not defined')
    listener = getattr(ctx.listener, "name", "") or "listener"
    return JwtAuthnFilter(config, name, ctx.services.stats, ctx.services.http_call,
                          listener=listener)


register_filter("jwt_authn", _factory)
