"""runtime/envoy/authn.py: Envoy's jwt_authn and ext_authz filters in a listener become
mosnx's filters of those kinds, with configs their factories accept; what mosnx
cannot honour without letting more through is refused."""
from __future__ import annotations

import copy
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import LISTENER, L, msg, table  # noqa: E402
from mosnx.runtime.envoy.findings import Findings, Rejected, Sink  # noqa: E402
from mosnx.runtime.envoy.listeners import translate_listener  # noqa: E402
from mosnx.runtime.filters.ext_authz import ExtAuthzConfig  # noqa: E402
from mosnx.runtime.filters.jwt_authn import JwtAuthnConfig  # noqa: E402

JWT = "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication"
AUTHZ = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz"
JWKS = '{"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "alg": "HS256", "kid": "a"}]}'


def listener(*filters: dict, sink: Sink | None = None):
    d = copy.deepcopy(LISTENER)
    hcm = d["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = list(filters) + [hcm["http_filters"][-1]]
    return translate_listener(msg(L, d), Findings(L, "edge", "", sink or Sink()), {"main": table()})


JWT_FILTER = {"name": "envoy.filters.http.jwt_authn", "typed_config": {
    "@type": JWT,
    "providers": {
        "local": {"issuer": "https://a", "audiences": ["api"], "local_jwks": {"inline_string": JWKS},
                  "forward": True, "payload_in_metadata": "a", "clock_skew_seconds": 5},
        "remote": {"issuer": "https://b", "remote_jwks": {
            "http_uri": {"uri": "http://keys/jwks", "cluster": "keys", "timeout": "2s"}, "cache_duration": "300s"},
            "from_headers": [{"name": "x-jwt", "value_prefix": "Bearer "}], "from_params": ["t"],
            "forward_payload_header": "x-payload"}},
    "rules": [{"match": {"prefix": "/health"}},
              {"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
                  {"provider_name": "local"}, {"provider_name": "remote"}, {"allow_missing": {}}]}}}]}}


def test_jwt_authn_translates_to_the_mosnx_filter():
    [f] = listener(JWT_FILTER).filters
    assert (f.kind, f.name) == ("jwt_authn", "envoy.filters.http.jwt_authn")
    c = f.config
    assert c["providers"]["local"] == {"issuer": "https://a", "audiences": ["api"],
                                       "local_jwks": {"inline_string": JWKS}, "forward": True,
                                       "payload_in_metadata": "a", "clock_skew_seconds": 5}
    assert c["providers"]["remote"]["remote_jwks"] == {
        "http_uri": {"uri": "http://keys/jwks", "cluster": "keys", "timeout": "2.0s"}, "cache_duration": "300.0s"}
    assert c["rules"][0] == {"match": {"prefix": "/health"}}
    parsed = JwtAuthnConfig.from_dict(c)            # the factory's parser accepts it
    assert parsed.rules[1].requirement == ("any", ("local", "remote", "\0allow_missing"))
    assert parsed.providers["remote"].remote_jwks.cache_duration == 300.0


@pytest.mark.parametrize("provider_extra,field", [
    ({"subjects": {"exact": "x"}}, "subjects"),
    ({"require_expiration": True}, "require_expiration"),
    ({"max_lifetime": "60s"}, "max_lifetime"),
])
def test_jwt_fields_that_would_let_more_through_are_refused(provider_extra, field):
    d = copy.deepcopy(JWT_FILTER)
    d["typed_config"]["providers"]["local"].update(provider_extra)
    with pytest.raises(Rejected) as e:
        listener(d)
    assert e.value.rejection.field_path.endswith(f"providers.local.{field}")


def test_jwt_rule_with_header_match_is_refused():
    d = copy.deepcopy(JWT_FILTER)
    d["typed_config"]["rules"][0]["match"]["headers"] = [{"name": "x", "present_match": True}]
    with pytest.raises(Rejected, match="only path matches"):
        listener(d)


GRPC_AUTHZ = {"name": "envoy.filters.http.ext_authz", "typed_config": {
    "@type": AUTHZ, "transport_api_version": "V3", "failure_mode_allow": True, "failure_mode_allow_header_add": True,
    "status_on_error": {"code": 503}, "include_peer_certificate": True,
    "grpc_service": {"envoy_grpc": {"cluster_name": "authz"}, "timeout": "0.5s"}}}
HTTP_AUTHZ = {"name": "authz-http", "typed_config": {
    "@type": AUTHZ,
    "http_service": {"server_uri": {"uri": "http://authz", "cluster": "authz", "timeout": "1s"},
                     "path_prefix": "/check",
                     "authorization_request": {"allowed_headers": {"patterns": [{"exact": "x-user"}, {"prefix": "x-b3-"}]},
                                               "headers_to_add": [{"key": "x-from", "value": "edge"}]},
                     "authorization_response": {"allowed_upstream_headers": {"patterns": [{"exact": "x-auth-user"}]},
                                                "allowed_client_headers": {"patterns": [{"safe_regex": {"regex": "x-.*"}}]}}}}}


def test_ext_authz_grpc_translates():
    [f] = listener(GRPC_AUTHZ).filters
    assert f.kind == "ext_authz"
    assert f.config == {"failure_mode_allow": True, "failure_mode_allow_header_add": True, "status_on_error": 503,
                        "include_peer_certificate": True,
                        "grpc_service": {"envoy_grpc": {"cluster_name": "authz"}, "timeout": "0.5s"}}
    c = ExtAuthzConfig.from_dict(f.config)
    assert (c.grpc_cluster, c.timeout, c.status_on_error) == ("authz", 0.5, 503)


def test_ext_authz_http_translates():
    [f] = listener(HTTP_AUTHZ).filters
    h = f.config["http_service"]
    assert h["server_uri"] == {"uri": "http://authz", "cluster": "authz", "timeout": "1.0s"}
    assert h["authorization_request"]["allowed_headers"] == {"patterns": [{"exact": "x-user"}, {"prefix": "x-b3-"}]}
    assert h["authorization_response"]["allowed_client_headers"] == {"patterns": [{"safe_regex": {"regex": "x-.*"}}]}
    c = ExtAuthzConfig.from_dict(f.config)
    assert c.http is not None and c.http.path_prefix == "/check" and c.timeout == 1.0


def test_ext_authz_with_request_body_is_refused():
    d = copy.deepcopy(GRPC_AUTHZ)
    d["typed_config"]["with_request_body"] = {"max_request_bytes": 1024}
    with pytest.raises(Rejected) as e:
        listener(d)
    assert e.value.rejection.field_path.endswith("typed_config.with_request_body")


def test_ext_authz_unsupported_extras_are_warned():
    d = copy.deepcopy(GRPC_AUTHZ)
    d["typed_config"]["metadata_context_namespaces"] = ["x"]
    sink = Sink()
    listener(d, sink=sink)
    assert any("metadata_context_namespaces" in w.message for w in sink.warnings)
