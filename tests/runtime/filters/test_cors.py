"""The cors filter: preflights answered here, accepted origins marked on the response,
others passed through untouched, shares of requests enabled or shadowed, and every
bad setting a ValueError naming its key."""
from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from mosnx.runtime.actions import LocalReply
from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.filters.cors import CorsConfig, CorsFilter
from mosnx.runtime.headers import Headers
from mosnx.runtime.stats import Store

from .conftest import build

POLICY = {"allow_origin_string_match": [{"exact": "https://a.example"}, {"prefix": "https://app."},
                                        {"suffix": ".corp.example", "ignore_case": True},
                                        {"safe_regex": {"regex": r"https://dev-[0-9]+\.test"}}],
          "allow_methods": ["GET", "PUT"], "allow_headers": "x-a, x-b", "expose_headers": "x-e",
          "max_age": 600, "allow_credentials": True}


def request(method: str = "GET", **headers: str) -> StreamContext:
    pairs = [(k.replace("_", "-"), v) for k, v in headers.items()]
    return StreamContext(RequestHead(method, "/", Headers.from_pairs(pairs)))


def respond(f: CorsFilter, ctx: StreamContext) -> dict[str, str]:
    ctx.response = ResponseHead(200, Headers.from_pairs([("x-up", "1")]))
    assert f.on_response(ctx) is None
    return {k.decode(): v.decode() for k, v in ctx.response.headers.items}


def test_a_preflight_from_an_accepted_origin_is_answered_here():
    f, stats = build("cors", POLICY)
    reply = f.on_request(request("OPTIONS", origin="https://a.example", access_control_request_method="PUT"))
    assert isinstance(reply, LocalReply) and (reply.status, reply.body, reply.detail) == (200, b"", "")
    assert dict(reply.headers) == {
        "access-control-allow-origin": "https://a.example", "access-control-allow-credentials": "true",
        "access-control-allow-methods": "GET, PUT", "access-control-allow-headers": "x-a, x-b",
        "access-control-max-age": "600", "access-control-expose-headers": "x-e"}
    assert stats.counter("http.l.cors.origin_valid").value == 1


@pytest.mark.parametrize("origin,ok", [
    ("https://a.example", True), ("https://a.example.evil", False), ("https://app.shop", True),
    ("https://X.CORP.EXAMPLE", True), ("https://dev-42.test", True), ("https://dev-x.test", False),
    ("http://a.example", False)])
def test_actual_requests_get_the_origin_only_when_it_is_accepted(origin, ok):
    f, stats = build("cors", POLICY)
    ctx = request(origin=origin)
    assert f.on_request(ctx) is None                 # an actual request always goes on
    headers = respond(f, ctx)
    if ok:
        assert headers["access-control-allow-origin"] == origin
        assert headers["access-control-allow-credentials"] == "true" and headers["access-control-expose-headers"] == "x-e"
        assert "access-control-allow-methods" not in headers          # a preflight's, not a response's
    else:
        assert not any(k.startswith("access-control") for k in headers)
    assert (stats.counter("http.l.cors.origin_valid").value, stats.counter("http.l.cors.origin_invalid").value) == \
        ((1, 0) if ok else (0, 1))


def test_no_origin_is_not_counted_and_a_bad_preflight_goes_upstream():
    f, stats = build("cors", POLICY)
    assert f.on_request(request()) is None
    assert f.on_request(request("OPTIONS", origin="https://b.example", access_control_request_method="GET")) is None
    assert f.on_request(request("OPTIONS", origin="https://a.example")) is None     # no request method: not a preflight
    assert stats.counter("http.l.cors.origin_invalid").value == 1
    strict, _ = build("cors", {**POLICY, "forward_not_matching_preflights": False})
    reply = strict.on_request(request("OPTIONS", origin="https://b.example", access_control_request_method="GET"))
    assert isinstance(reply, LocalReply) and reply.status == 200 and reply.headers == ()


def test_a_wildcard_matcher_takes_every_origin():
    f, _ = build("cors", {"allow_origin_string_match": [{"exact": "*"}]})
    ctx = request(origin="https://anything.example")
    f.on_request(ctx)
    assert respond(f, ctx)["access-control-allow-origin"] == "https://anything.example"


def test_private_network_access_only_when_asked_and_allowed():
    f, _ = build("cors", {**POLICY, "allow_private_network_access": True})
    reply = f.on_request(request("OPTIONS", origin="https://a.example", access_control_request_method="GET",
                                 access_control_request_private_network="true"))
    assert ("access-control-allow-private-network", "true") in reply.headers
    reply = f.on_request(request("OPTIONS", origin="https://a.example", access_control_request_method="GET"))
    assert all(k != "access-control-allow-private-network" for k, _ in reply.headers)


def test_filter_enabled_and_shadow_enabled_are_shares_of_requests():
    stats = Store()
    off = CorsFilter(CorsConfig.from_dict({**POLICY, "filter_enabled": 0}), stats=stats)
    assert off.on_request(request("OPTIONS", origin="https://a.example", access_control_request_method="GET")) is None
    assert stats.counter("http.listener.cors.origin_valid").value == 0           # not even counted
    shadow = CorsFilter(CorsConfig.from_dict({**POLICY, "filter_enabled": 0, "shadow_enabled": 100}), stats=stats)
    ctx = request("OPTIONS", origin="https://a.example", access_control_request_method="GET")
    assert shadow.on_request(ctx) is None and not respond(shadow, ctx).get("access-control-allow-origin")
    assert stats.counter("http.listener.cors.origin_valid").value == 1          # counted, not enforced
    half = CorsFilter(CorsConfig.from_dict({**POLICY, "filter_enabled": {"numerator": 25, "denominator": "HUNDRED"}}),
                      stats=Store(), rand=random.Random(5).random)
    answered = sum(isinstance(half.on_request(request("OPTIONS", origin="https://a.example",
                                                      access_control_request_method="GET")), LocalReply)
                   for _ in range(2000))
    assert 400 <= answered <= 600        # 25% of 2,000 is 500; the bound is wide


@pytest.mark.parametrize("cfg,message", [
    ({"allow_origin_string_match": {"exact": "x"}}, "cors.allow_origin_string_match: expected a list"),
    ({"allow_origin_string_match": [{"exact": "x", "prefix": "y"}]}, "give exactly one of"),
    ({"allow_origin_string_match": [{"safe_regex": {"regex": "("}}]}, "cors.allow_origin_string_match[0].safe_regex"),
    ({"allow_origin_string_match": [{"glob": "*"}]}, "unknown option(s) glob"),
    ({"max_age": "ten"}, "cors.max_age"), ({"allow_credentials": "yes"}, "cors.allow_credentials"),
    ({"allow_methods": 7}, "cors.allow_methods"), ({"filter_enabled": 150}, "cors.filter_enabled"),
    ({"origins": []}, "unknown option(s) origins")])
def test_bad_settings_name_their_key(cfg, message):
    with pytest.raises(ValueError) as e:
        CorsConfig.from_dict(cfg)
    assert message in str(e.value)


_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-5, 1000) | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                       max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(CorsConfig.__dataclass_fields__) + ["allow_origin_string_match",
                                                                                 "bogus"]), _VALUES, max_size=4))
def test_any_settings_load_or_fail_with_a_value_error(cfg):
    try:
        CorsConfig.from_dict(cfg)
    except ValueError:
        pass
