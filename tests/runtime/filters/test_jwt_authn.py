"""runtime/filters/jwt_authn.py: token locations, requirements, replies, side effects,
the remote JWKS cache; through the registered factory, as a YAML listener builds it."""
from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosnx.runtime.actions import LocalReply, Pause
from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.filters import jwt_authn as J
from mosnx.runtime.filters.jwt_authn import JwtAuthnConfig, JwtAuthnFilter, request_principals
from mosnx.runtime.headers import Headers
from mosnx.runtime.stats import Store

from .conftest import build
from .jwtkit import ISS, Keys, unsigned

K = Keys()


def rq(path: str = "/api", headers: dict | None = None, method: str = "GET") -> StreamContext:
    h = {"host": "example.com"}
    h.update(headers or {})
    return StreamContext(RequestHead(method, path, Headers.from_pairs(list(h.items()))))


def bearer(tok: str) -> dict:
    return {"authorization": f"Bearer {tok}"}


def local(**over) -> dict:
    p = {"issuer": ISS, "local_jwks": {"inline_string": K.jwks("rsa_noalg", "ec", "hs")}}
    p.update(over)
    return p


def cfg(provider: dict | None = None, requires: dict | None = None, **top) -> dict:
    c = {"providers": {"p": provider or local()},
         "rules": [{"match": {"prefix": "/"}, "requires": requires or {"provider_name": "p"}}]}
    c.update(top)
    return c


def run(f, ctx):
    a = f.on_request(ctx)
    if isinstance(a, Pause):
        async def wait():
            return await a.awaitable
        return asyncio.run(wait())
    return a


# -- success, algorithms ----------------------------------------------------------

@pytest.mark.parametrize("alg,kid", [("RS256", "rsa1"), ("PS256", "rsa1"), ("ES256", "ec1"), ("HS256", "hs1")])
def test_each_algorithm_verifies(alg, kid):
    f, stats = build("jwt_authn", cfg())
    assert f.on_request(rq(headers=bearer(K.token(alg, kid)))) is None
    assert stats.counter("http.l.jwt_authn.allowed").value == 1


def test_a_key_without_alg_serves_its_family_and_no_kid_tries_every_key():
    f, _ = build("jwt_authn", cfg(local(local_jwks={"inline_string": K.jwks("rsa_noalg")})))
    assert f.on_request(rq(headers=bearer(K.token("RS256", kid=None)))) is None
    assert f.on_request(rq(headers=bearer(K.token("PS256", kid=None)))) is None


def test_a_key_with_alg_serves_only_that_alg():
    f, _ = build("jwt_authn", cfg(local(local_jwks={"inline_string": K.jwks("rsa")})))
    assert f.on_request(rq(headers=bearer(K.token("RS256")))) is None
    r = f.on_request(rq(headers=bearer(K.token("PS256"))))
    assert r.body == b"Jwks doesn't have key to match kid or alg from Jwt"


def test_a_bare_jwk_is_a_key_set():
    f, _ = build("jwt_authn", cfg(local(local_jwks={"inline_string": json.dumps(K.jwk("ec"))})))
    assert f.on_request(rq(headers=bearer(K.token("ES256", "ec1")))) is None


# -- failures and how they look ---------------------------------------------------

def failure(provider=None, headers=None, path="/api", **kw) -> LocalReply:
    f, stats = build("jwt_authn", cfg(provider, **kw))
    r = f.on_request(rq(path, headers))
    assert isinstance(r, LocalReply)
    assert stats.counter("http.l.jwt_authn.denied").value == 1
    return r


def test_missing_token_is_401_with_a_bare_bearer_challenge():
    r = failure(path="/api?x=1")
    assert (r.status, r.body) == (401, b"Jwt is missing")
    assert dict(r.headers)["www-authenticate"] == 'Bearer realm="http://example.com/api?x=1"'
    assert r.detail == "jwt_authn_access_denied{Jwt_is_missing}"


@pytest.mark.parametrize("token,body", [
    (K.token(exp=int(time.time()) - 3600), "Jwt is expired"),
    (K.token(nbf=int(time.time()) + 3600), "Jwt not yet valid"),
    (K.token(iss="https://other"), "Jwt issuer is not configured"),
    (K.token(kid="nope"), "Jwks doesn't have key to match kid or alg from Jwt"),
    (K.token(key=K.rsa_other), "Jwt verification fails"),
    ("abc.def", "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"),
    ("!!!.e30.e30", "Jwt header is an invalid Base64url encoded"),
    (unsigned({"iss": ISS, "sub": "x"}), "Jwt header [alg] is not supported"),
    (K.token(exp="soon"), "Jwt payload [exp] field is not an integer"),
])
def test_invalid_tokens_are_401_with_envoys_words(token, body):
    r = failure(headers=bearer(token))
    assert (r.status, r.body.decode()) == (401, body)
    assert dict(r.headers)["www-authenticate"] == 'Bearer realm="http://example.com/api", error="invalid_token"'


def test_a_tampered_payload_fails_verification():
    h, p, s = K.token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=="))
    claims["sub"] = "mallory"
    p2 = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    r = failure(headers=bearer(f"{h}.{p2}.{s}"))
    assert r.body == b"Jwt verification fails"


def test_audiences_not_allowed_is_403():
    r = failure(local(audiences=["other"]), bearer(K.token()))
    assert (r.status, r.body) == (403, b"Audiences in Jwt are not allowed")


def test_audiences_compare_without_scheme_and_trailing_slash():
    f, _ = build("jwt_authn", cfg(local(audiences=["https://api.example/"])))
    assert f.on_request(rq(headers=bearer(K.token(aud=["x", "http://api.example"])))) is None


def test_clock_skew_forgives_a_just_expired_token_and_can_be_zero():
    tok = K.token(exp=int(time.time()) - 10)
    f, _ = build("jwt_authn", cfg())
    assert f.on_request(rq(headers=bearer(tok))) is None            # default skew 60 s
    f, _ = build("jwt_authn", cfg(local(clock_skew_seconds=0)))
    assert f.on_request(rq(headers=bearer(tok))).body == b"Jwt is expired"


def test_strip_failure_response_leaves_the_body_empty():
    r = failure(strip_failure_response=True)
    assert (r.status, r.body, r.headers) == (401, b"", ())


# -- where the token is -----------------------------------------------------------

def test_default_locations_are_bearer_header_and_access_token_param():
    f, _ = build("jwt_authn", cfg())
    assert f.on_request(rq("/api?access_token=" + K.token())) is None
    assert isinstance(f.on_request(rq(headers={"authorization": "Basic " + K.token()})), LocalReply)


def test_configured_locations_replace_the_defaults():
    f, _ = build("jwt_authn", cfg(local(from_headers=[{"name": "X-Jwt", "value_prefix": "Token "}],
                                        from_params=["jwt"])))
    assert f.on_request(rq(headers={"x-jwt": "Token " + K.token()})) is None
    assert f.on_request(rq("/api?jwt=" + K.token())) is None
    assert f.on_request(rq(headers=bearer(K.token()))).body == b"Jwt is missing"


# -- what a verified token leaves behind ------------------------------------------

def test_token_is_removed_unless_forward_and_payload_is_forwarded_and_in_metadata():
    tok = K.token()
    f, _ = build("jwt_authn", cfg(local(forward_payload_header="x-jwt-payload", payload_in_metadata="verified")))
    ctx = rq(headers=bearer(tok))
    assert f.on_request(ctx) is None
    assert ctx.request.headers.get("authorization") is None
    assert ctx.request.headers.get("x-jwt-payload") == tok.split(".")[1]
    payload = ctx.metadata["envoy.filters.http.jwt_authn"]["verified"]
    assert payload["sub"] == "alice" and payload["iss"] == ISS
    assert request_principals(ctx) == [f"{ISS}/alice"]
    f, _ = build("jwt_authn", cfg(local(forward=True)))
    ctx = rq(headers=bearer(tok))
    assert f.on_request(ctx) is None
    assert ctx.request.headers.get("authorization") == f"Bearer {tok}"


# -- rules and requirements -------------------------------------------------------

TWO = {"a": local(), "b": {"issuer": "https://b", "local_jwks": {"inline_string": K.jwks("ec")},
                           "from_headers": [{"name": "x-b"}]}}


def with_rules(rules: list, providers=None) -> JwtAuthnFilter:
    f, _ = build("jwt_authn", {"providers": providers or TWO, "rules": rules})
    return f


def test_first_matching_rule_wins_and_no_rule_means_no_check():
    f = with_rules([{"match": {"path": "/health"}},
                    {"match": {"prefix": "/api"}, "requires": {"provider_name": "a"}},
                    {"match": {"safe_regex": {"regex": "/re/[0-9]+"}}, "requires": {"provider_name": "b"}}])
    assert f.on_request(rq("/health")) is None
    assert f.on_request(rq("/other")) is None
    assert f.on_request(rq("/api/x")).body == b"Jwt is missing"
    assert f.on_request(rq("/re/12", {"x-b": K.token("ES256", "ec1", iss="https://b")})) is None


def test_requires_any_and_all():
    ta = K.token()
    tb = K.token("ES256", "ec1", iss="https://b")
    anyf = with_rules([{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
        {"provider_name": "a"}, {"provider_name": "b"}]}}}])
    assert anyf.on_request(rq(headers={"x-b": tb})) is None
    assert anyf.on_request(rq()).body == b"Jwt is missing"
    # a present bad token's error beats the other provider's "missing"
    assert anyf.on_request(rq(headers={"x-b": K.token("ES256", "ec1", iss="https://b", exp=1)})).body == b"Jwt is expired"
    allf = with_rules([{"match": {"prefix": "/"}, "requires": {"requires_all": {"requirements": [
        {"provider_name": "a"}, {"provider_name": "b"}]}}}])
    assert allf.on_request(rq(headers={**bearer(ta), "x-b": tb})) is None
    assert allf.on_request(rq(headers=bearer(ta))).body == b"Jwt is missing"


def test_allow_missing_lets_no_token_through_but_not_a_bad_one():
    f = with_rules([{"match": {"prefix": "/"}, "requires": {"allow_missing": {}}}])
    assert f.on_request(rq()) is None
    assert f.on_request(rq(headers=bearer(K.token()))) is None
    assert f.on_request(rq(headers=bearer(K.token(exp=1)))).body == b"Jwt is expired"
    assert f.on_request(rq(headers=bearer(K.token(iss="https://x")))).body == b"Jwt issuer is not configured"


def test_istio_pattern_provider_or_allow_missing():
    f = with_rules([{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
        {"provider_name": "a"}, {"allow_missing": {}}]}}}])
    assert f.on_request(rq()) is None
    assert f.on_request(rq(headers=bearer(K.token()))) is None
    assert f.on_request(rq(headers=bearer(K.token(key=K.rsa_other)))).body == b"Jwt verification fails"


def test_allow_missing_or_failed_passes_everything_and_keeps_good_payloads():
    providers = {"a": local(payload_in_metadata="a")}
    f = with_rules([{"match": {"prefix": "/"}, "requires": {"allow_missing_or_failed": {}}}], providers)
    assert f.on_request(rq(headers=bearer(K.token(exp=1)))) is None
    ctx = rq(headers=bearer(K.token()))
    assert f.on_request(ctx) is None and request_principals(ctx) == [f"{ISS}/alice"]


def test_requirement_map_by_name_in_rules_and_for_a_route():
    f, _ = build("jwt_authn", {"providers": {"a": local()},
                               "requirement_map": {"need_a": {"provider_name": "a"}},
                               "rules": [{"match": {"prefix": "/"}, "requirement_name": "need_a"}]})
    assert f.on_request(rq()).body == b"Jwt is missing"
    assert f.requirement_for(rq(), "need_a") == "a"


def test_cors_preflight_bypass():
    f, _ = build("jwt_authn", cfg(bypass_cors_preflight=True))
    pre = rq(method="OPTIONS", headers={"origin": "https://x", "access-control-request-method": "GET"})
    assert f.on_request(pre) is None


# -- config errors ----------------------------------------------------------------

@pytest.mark.parametrize("c,msg", [
    ({}, "providers"),
    ({"providers": {"p": {"issuer": "x"}}}, "exactly one of local_jwks and remote_jwks"),
    ({"providers": {"p": local()}, "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "q"}}]},
     "no provider named 'q'"),
    ({"providers": {"p": local()}, "rules": [{"match": {}, "requires": {"provider_name": "p"}}]}, "match"),
    ({"providers": {"p": local(local_jwks={"inline_string": "{"})}}, "Jwks is an invalid JSON"),
    ({"providers": {"p": {"remote_jwks": {"http_uri": {"uri": "ftp://x", "cluster": "c"}}}}}, "http(s) URL"),
    ({"providers": {"p": local(bogus=1)}}, "unknown option"),
    ({"providers": {"p": local(from_headers=5)}}, "from_headers: expected a list"),
    ({"providers": {"p": local(local_jwks={"filename": "/nonexistent/jwks.json"})}}, "cannot read"),
    ({"providers": {"p": local()}, "rules": [{"match": {"prefix": 5}}]}, "expected a string"),
    ({"providers": {"p": local()}, "requirement_map": {"a": {"provider_name": {}}}}, "no provider named"),
    ({"providers": {"p": local()}, "rules": [{"match": {"prefix": "/"},
                                              "requires": {"requires_any": {"requirements": [{"provider_name": "p"}]}}}]},
     "at least two"),
])
def test_bad_config_is_a_clear_error(c, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        JwtAuthnConfig.from_dict(c)


def test_remote_hmac_keys_are_not_trusted():
    from mosnx.runtime.filters import jwt_verify as V
    assert isinstance(V.load_jwks(K.jwks("hs"), allow_hmac=False), V.Failure)


# -- the remote JWKS: fetched once, cached, fetched again when stale --------------

class FakeJwks:
    def __init__(self, body: str, status: int = 200, delay: float = 0.0):
        self.body, self.status, self.delay = body, status, delay
        self.calls: list[tuple] = []

    async def __call__(self, cluster, headers, body, timeout):
        self.calls.append((cluster, dict(headers), timeout))
        await asyncio.sleep(self.delay)
        if self.status < 0:
            raise OSError("connection refused")
        return self.status, [("content-type", "application/json")], self.body.encode()


def remote_filter(server: FakeJwks, cache: str = "300s") -> tuple[JwtAuthnFilter, Store]:
    stats = Store()
    c = JwtAuthnConfig.from_dict(cfg({"issuer": ISS, "remote_jwks": {
        "http_uri": {"uri": "http://keys.example/jwks.json?v=1", "cluster": "keys", "timeout": "2s"},
        "cache_duration": cache}}))
    return JwtAuthnFilter(c, "jwt_authn", stats, server, "l"), stats


def test_remote_jwks_fetched_once_for_concurrent_requests_then_cached():
    server = FakeJwks(K.jwks("rsa"), delay=0.05)
    f, stats = remote_filter(server)

    async def go():
        acts = [f.on_request(rq(headers=bearer(K.token()))) for _ in range(3)]
        assert all(isinstance(a, Pause) for a in acts)
        results = await asyncio.gather(*(a.awaitable for a in acts))
        assert results == [None, None, None]
        assert f.on_request(rq(headers=bearer(K.token()))) is None     # cached: no pause
    asyncio.run(go())
    assert len(server.calls) == 1
    cluster, headers, timeout = server.calls[0]
    assert (cluster, headers[":path"], headers[":authority"], timeout) == ("keys", "/jwks.json?v=1", "keys.example", 2.0)
    assert stats.counter("http.l.jwt_authn.jwks_fetch_success").value == 1
    assert stats.counter("http.l.jwt_authn.allowed").value == 4


def test_missing_token_needs_no_fetch():
    server = FakeJwks(K.jwks("rsa"))
    f, _ = remote_filter(server)
    assert f.on_request(rq()).body == b"Jwt is missing"
    assert server.calls == []


def test_stale_jwks_is_fetched_again():
    server = FakeJwks(K.jwks("rsa"))
    f, stats = remote_filter(server, cache="300s")

    async def go():
        assert await f.on_request(rq(headers=bearer(K.token()))).awaitable is None
        f._cache["p"].expires = 0.0               # as if cache_duration had passed
        server.body = K.jwks("ec")                # the issuer rotated its key
        a = f.on_request(rq(headers=bearer(K.token("ES256", "ec1"))))
        assert isinstance(a, Pause) and await a.awaitable is None
    asyncio.run(go())
    assert len(server.calls) == 2
    assert stats.counter("http.l.jwt_authn.jwks_fetch_success").value == 2


@pytest.mark.parametrize("server", [FakeJwks("", status=503), FakeJwks("not json"), FakeJwks("", status=-1)])
def test_fetch_failure_fails_the_request_and_is_not_cached(server):
    f, stats = remote_filter(server)
    r = run(f, rq(headers=bearer(K.token())))
    assert (r.status, r.body) == (401, b"Jwks remote fetch is failed")
    assert stats.counter("http.l.jwt_authn.jwks_fetch_failed").value == 1
    server.status, server.body = 200, K.jwks("rsa")
    assert run(f, rq(headers=bearer(K.token()))) is None
    assert len(server.calls) == 2


def test_factory_checks_the_jwks_cluster():
    from mosnx.runtime.model import Config, ListenerConfig
    from mosnx.runtime.registry import BuildContext, filter_factory
    lc = ListenerConfig("l", "127.0.0.1", 1)
    bctx = BuildContext(Config("<t>", None, (lc,), ()), lc, {"other"}, {})
    c = cfg({"remote_jwks": {"http_uri": {"uri": "http://k/j", "cluster": "keys"}}})
    with pytest.raises(ValueError, match='cluster "keys" is not defined'):
        filter_factory("jwt_authn")("jwt_authn", c, bctx)


def test_metadata_namespace_is_envoys():
    assert J.METADATA_NAMESPACE == "envoy.filters.http.jwt_authn"


_value = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                      lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=3),
                      max_leaves=10)
_keys = st.sampled_from(["providers", "rules", "requirement_map", "p", "issuer", "audiences", "local_jwks",
                         "remote_jwks", "inline_string", "http_uri", "uri", "cluster", "from_headers", "name",
                         "match", "prefix", "requires", "provider_name", "requires_any", "requirements",
                         "clock_skew_seconds", "cache_duration", "requirement_name"])


@settings(max_examples=300, deadline=None)
@given(st.recursive(_value, lambda c: st.dictionaries(_keys, c, max_size=4), max_leaves=12).filter(
    lambda v: isinstance(v, dict)))
def test_any_config_is_accepted_or_a_value_error(cfg):
    try:
        JwtAuthnConfig.from_dict(cfg)
    except ValueError:
        pass
