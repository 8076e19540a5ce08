"""proxy/hint.py: the startup curl is derived from the routes a plain GET reaches, or absent."""
from __future__ import annotations

import shlex

import yaml

from mosnx import plugins
from mosnx.proxy.hint import curl_hint
from mosnx.runtime import build_snapshot

plugins.load()


def _snap(tmp_path, rules: str | None = None, route: dict | None = None, host: str = "127.0.0.1"):
    lst = {"name": "ingress", "address": f"{host}:8080"}
    if rules is not None:
        (tmp_path / "r.mdsl").write_text(rules)
        lst["rules"] = "r.mdsl"
    else:
        lst["route"] = route or {"cluster": "web"}
    cfg = {"listeners": [lst], "clusters": [{"name": "web", "endpoints": ["127.0.0.1:9"]}]}
    p = tmp_path / "mosnx.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return build_snapshot(str(p))


def test_a_default_route_is_the_root_with_curls_own_host(tmp_path):
    assert curl_hint(_snap(tmp_path)) == "curl -i http://127.0.0.1:8080/"


def test_a_wildcard_listen_address_is_reached_on_loopback(tmp_path):
    assert curl_hint(_snap(tmp_path, host="0.0.0.0")) == "curl -i http://127.0.0.1:8080/"


def test_host_and_exact_path_of_the_first_reachable_route(tmp_path):
    hint = curl_hint(_snap(tmp_path, 'vhost shop domains "shop.example.com" {\n'
                                     '  route h when request.path == "/healthz" { to web }\n'
                                     '  route d { to web }\n}\n'))
    assert shlex.split(hint) == ["curl", "-i", "-H", "Host: shop.example.com", "http://127.0.0.1:8080/healthz"]


def test_routes_a_plain_get_cannot_reach_are_passed_over(tmp_path):
    hint = curl_hint(_snap(tmp_path, 'vhost a domains "*.api.example.com" {\n'
                                     '  route k when request.headers["x-key"] == "k" { to web }\n'
                                     '  route p when request.method == "POST" { to web }\n'
                                     '  route v when request.path prefix "/v1/" { to web }\n}\n'))
    assert shlex.split(hint) == ["curl", "-i", "-H", "Host: www.api.example.com", "http://127.0.0.1:8080/v1/"]


def test_a_local_error_reply_is_no_hint_and_nothing_else_is_reachable(tmp_path):
    assert curl_hint(_snap(tmp_path, 'vhost a domains "a" {\n'
                                     '  route gone { respond 404 "no" }\n'
                                     '  route k when request.query["k"] == "1" { to web }\n}\n')) is None


def test_a_vhost_no_plain_get_reaches_gives_way_to_the_next(tmp_path):
    hint = curl_hint(_snap(tmp_path, 'vhost a domains "a" {\n'
                                     '  route k when request.headers["x"] == "1" { to web }\n}\n'
                                     'vhost b domains "b" {\n  route all { to web }\n}\n'))
    assert shlex.split(hint) == ["curl", "-i", "-H", "Host: b", "http://127.0.0.1:8080/"]
