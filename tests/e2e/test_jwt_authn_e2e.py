"""jwt_authn through a real mosnx: tokens minted here (cryptography keys, PyJWT), the
key set served by a real HTTP server on 127.0.0.1 behind a cluster, fetched once
and cached; the replies a client gets for each failure; what the upstream sees;
the same filter from an Envoy bootstrap."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

sys.path.insert(0, os.path.dirname(__file__))
from conftest import HOST, START_WAIT, free_port  # noqa: E402

ISS = "https://issuer.test"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks() -> bytes:
    r = json.loads(RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    e = json.loads(ECAlgorithm.to_jwk(EC_KEY.public_key()))
    r.update(kid="r1", alg="RS256")
    e.update(kid="e1", alg="ES256")
    return json.dumps({"keys": [r, e]}).encode()


def token(alg: str = "RS256", kid: str = "r1", key=None, **claims) -> str:
    now = int(time.time())
    payload = {"iss": ISS, "sub": "alice", "aud": "shop", "iat": now, "exp": now + 600, **claims}
    key = key or (EC_KEY if alg.startswith("ES") else RSA_KEY)
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def jwt_filter(jwks_cluster: str = "jwks") -> dict:
    return {"jwt_authn": {
        "providers": {"issuer": {
            "issuer": ISS, "audiences": ["shop"],
            "remote_jwks": {"http_uri": {"uri": "http://keys.test/.well-known/jwks.json", "cluster": jwks_cluster,
                                         "timeout": "2s"}, "cache_duration": "300s"},
            "forward_payload_header": "x-jwt-payload", "payload_in_metadata": "issuer"}},
        "rules": [{"match": {"prefix": "/public"}},
                  {"match": {"prefix": "/"}, "requires": {"provider_name": "issuer"}}]}}


@pytest.fixture
def keys_server(upstream):
    served = []

    def answer(conn, req):
        served.append(req)
        conn.respond(200, jwks(), [("Content-Type", "application/json")])
    srv = upstream()
    srv.on("/.well-known/jwks.json", answer)
    srv.served = served
    return srv


def test_tokens_verified_against_a_fetched_and_cached_jwks(mosnx, upstream, keys_server):
    app = upstream()
    m = mosnx(app, listener={"filters": [jwt_filter()]}, clusters={"jwks": keys_server})

    r = m.request("GET", "/orders", headers=[("Host", "shop.test")])
    assert r.status == 401 and r.body == b"Jwt is missing"
    assert r.header("www-authenticate") == 'Bearer realm="http://shop.test/orders"'
    assert keys_server.served == []                     # no token, nothing to fetch

    good = token()
    r = m.request("GET", "/orders", headers=[("Host", "shop.test"), ("Authorization", f"Bearer {good}")])
    assert r.status == 200
    seen = app.requests[-1]
    assert seen.header("authorization") is None          # forward is false: the token stays here
    assert seen.header("x-jwt-payload") == good.split(".")[1]

    r = m.request("GET", "/orders", headers=[("Authorization", f"Bearer {token('ES256', 'e1')}")])
    assert r.status == 200
    assert len(keys_server.served) == 1                  # fetched once, then cached
    assert keys_server.served[0].header("host") == "keys.test"

    r = m.request("GET", "/public/x")
    assert r.status == 200                               # a rule without requires: no check

    cases = [
        (token(exp=int(time.time()) - 3600), 401, b"Jwt is expired"),
        (token(key=OTHER_KEY), 401, b"Jwt verification fails"),
        (token(aud="elsewhere"), 403, b"Audiences in Jwt are not allowed"),
        (token(iss="https://evil.test"), 401, b"Jwt issuer is not configured"),
        ("not.a.jwt", 401, b"Jwt header is an invalid JSON"),
        ("a.jwt", 401, b"Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"),
    ]
    for tok, status, body in cases:
        r = m.request("GET", "/orders?x=1", headers=[("Host", "shop.test"), ("Authorization", f"Bearer {tok}")])
        assert (r.status, r.body) == (status, body), tok
        assert r.header("www-authenticate") == 'Bearer realm="http://shop.test/orders?x=1", error="invalid_token"'
    r = m.request("GET", "/orders?access_token=" + good)
    assert r.status == 200                               # the default query parameter
    stats = m.stats()
    assert stats["http.ingress.jwt_authn.allowed"] == 4
    assert stats["http.ingress.jwt_authn.denied"] == 1 + len(cases)
    assert stats["http.ingress.jwt_authn.jwks_fetch_success"] == 1
    assert len(app.requests) == 4


def test_a_failed_jwks_fetch_fails_the_request_and_is_retried(mosnx, upstream):
    state = {"ok": False}
    calls = []

    def answer(conn, req):
        calls.append(req)
        if state["ok"]:
            conn.respond(200, jwks(), [("Content-Type", "application/json")])
        else:
            conn.respond(503, b"down")
    keys = upstream()
    keys.on("/.well-known/jwks.json", answer)
    app = upstream()
    m = mosnx(app, listener={"filters": [jwt_filter()]}, clusters={"jwks": keys})
    auth = [("Authorization", f"Bearer {token()}")]
    r = m.request("GET", "/", headers=auth)
    assert (r.status, r.body) == (401, b"Jwks remote fetch is failed")
    state["ok"] = True
    assert m.request("GET", "/", headers=auth).status == 200
    assert len(calls) == 2
    stats = m.stats()
    assert (stats["http.ingress.jwt_authn.jwks_fetch_failed"], stats["http.ingress.jwt_authn.jwks_fetch_success"]) == (1, 1)


def test_unknown_jwks_cluster_is_a_config_error(tmp_path):
    import yaml
    cfg = {"listeners": [{"name": "ingress", "address": f"{HOST}:{free_port()}", "route": {"cluster": "web"},
                          "filters": [jwt_filter("nowhere")]}],
           "clusters": [{"name": "web", "endpoints": [f"{HOST}:1"]}]}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "mosnx", "check", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0
    assert 'cluster "nowhere" is not defined' in out.stdout + out.stderr


BOOTSTRAP = """\
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: {admin}}}}}
static_resources:
  listeners:
  - name: edge
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: edge
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: web}}
          http_filters:
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                issuer:
                  issuer: {iss}
                  forward: true
                  local_jwks: {{inline_string: '{jwks}'}}
              rules:
              - match: {{prefix: "/"}}
                requires:
                  requires_any:
                    requirements: [{{provider_name: issuer}}, {{allow_missing: {{}}}}]
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: web
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: web
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {web}}}}}}}
"""


def test_jwt_authn_from_an_envoy_bootstrap(tmp_path, upstream, client):
    import http.client
    app = upstream()
    listen, admin = free_port(), free_port()
    path = tmp_path / "envoy.yaml"
    path.write_text(BOOTSTRAP.format(admin=admin, listen=listen, web=app.port, iss=ISS, jwks=jwks().decode()))
    log = open(tmp_path / "mosnx.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "mosnx", "run", "-c", str(path)], stdout=log,
                            stderr=subprocess.STDOUT, cwd=str(tmp_path))
    try:
        deadline = time.monotonic() + START_WAIT
        while True:
            assert proc.poll() is None, (tmp_path / "mosnx.log").read_text()
            try:
                c = http.client.HTTPConnection(HOST, admin, timeout=2)
                c.request("GET", "/ready")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "mosnx.log").read_text()
            time.sleep(0.1)
        cl = client(listen)
        assert cl.request("GET", "/").status == 200                      # allow_missing
        tok = token()
        assert cl.request("GET", "/", headers=[("Authorization", f"Bearer {tok}")]).status == 200
        assert app.requests[-1].header("authorization") == f"Bearer {tok}"      # forward: true
        r = cl.request("GET", "/", headers=[("Authorization", f"Bearer {token(exp=1)}")])
        assert (r.status, r.body) == (401, b"Jwt is expired")
    finally:
        proc.kill()
        proc.wait(10)
        log.close()
