"""convert(): what the YAML and the .mdsl say for a bootstrap, and the names and
constructs .mdsl cannot spell."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from envoy_samples import ROUTES, STATIC, R, msg  # noqa: E402
from mosnx.runtime.envoy.bootstrap import load_bootstrap_resources  # noqa: E402
from mosnx.runtime.envoy.convert import convert  # noqa: E402


def test_a_catch_all_route_stays_in_yaml():
    config, _, resources = load_bootstrap_resources(STATIC, "<envoy>")
    out = convert(config, resources)
    assert out.rules == {}
    [web] = out.yaml["listeners"]
    assert web["route"] == {"cluster": "app", "timeout": "2s"} and web["address"] == "127.0.0.1:18000"
    assert out.yaml["admin"] == {"address": "127.0.0.1:19000"}
    assert out.yaml["xds"]["mode"] == "delta" and out.yaml["xds"]["address"] == "127.0.0.1:18002"
    assert [c["name"] for c in out.yaml["clusters"]] == ["app", "xds"]
    assert out.yaml["clusters"][1]["protocol"] == "http2"


def test_routes_become_mdsl():
    text = STATIC.replace("name: local", "name: main")
    config, _, resources = load_bootstrap_resources(text, "<envoy>")
    resources[R]["main"] = msg(R, ROUTES)
    config = config.__class__(**{**{f: getattr(config, f) for f in config.__dataclass_fields__},
                                 "listeners": tuple(lc.__class__(**{**{f: getattr(lc, f) for f in lc.__dataclass_fields__},
                                                                    "route_config": "main"})
                                                    for lc in config.listeners)})
    out = convert(config, resources, "edge")
    [(name, rules)] = out.rules.items()
    assert name == "edge.web.mdsl" and out.yaml["listeners"][0]["rules"] == [name]
    assert 'vhost api domains "api.example.com", "*.api.test" {' in rules
    assert 'route r0 when request.url_path prefix "/v1" and request.headers["x-canary"] == "yes" {' in rules
    assert 'split { a: 3, b: 1 }' in rules and 'rewrite prefix "/v1" => "/api"' in rules
    assert "retry 2 on 5xx, connect-failure per_try 500ms" in rules and "mirror shadow 25%" in rules
    assert 'not (request.method == "POST")' in rules and 'redirect 308 prefix "/new"' in rules
    assert 'lower(request.url_path) prefix "/old"' in rules
    assert 'set request.headers["x-vhost"] = "api"' in rules and 'add response.headers["x-config"] = "1"' in rules
    assert any("hash_policy" in n for n in out.notes)


def test_cluster_header_stays_in_yaml_and_per_route_settings_are_noted():
    text = STATIC.replace("route: {cluster: app, timeout: 2s}", "route: {cluster_header: X-To}")
    config, _, resources = load_bootstrap_resources(text, "<envoy>")
    out = convert(config, resources)
    assert out.yaml["listeners"][0]["route"] == {"cluster_header": "x-to", "timeout": "15s"} and out.notes == []
    text = STATIC.replace("route: {cluster: app, timeout: 2s}", (
        "route: {cluster: app}\n"
        "                typed_per_filter_config:\n"
        "                  cors: {'@type': type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy,"
        " allow_origin_string_match: [{exact: 'https://a.example'}]}")).replace(
        "          http_filters:\n", "          http_filters:\n          - name: cors\n"
        "            typed_config: {'@type': type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}\n")
    config, _, resources = load_bootstrap_resources(text, "<envoy>")
    out = convert(config, resources)
    assert "filters" not in out.yaml["listeners"][0]
    assert any("per-route filter settings" in n for n in out.notes)


def test_a_listener_with_filter_chains_is_left_out_with_a_note():
    import dataclasses

    from mosnx.runtime.model import ChainMatch, FilterChain
    config, _, resources = load_bootstrap_resources(STATIC, "<envoy>")
    [web] = config.listeners
    stack = dataclasses.replace(web, name="web/0", chain_of="web")
    chains = dataclasses.replace(web, protocol="chains", filter_chains=(FilterChain("0", ChainMatch(), stack),))
    out = convert(dataclasses.replace(config, listeners=(chains,)), resources)
    assert out.yaml["listeners"] == []
    assert any("several filter chains" in n for n in out.notes)


def test_tls_from_files_is_written_and_inline_tls_is_a_note(tmp_path):
    import json
    up = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    ep = {"cluster_name": "x", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
        "socket_address": {"address": "127.0.0.1", "port_value": 9000}}}}]}]}
    files = {"name": "files", "type": "STATIC", "load_assignment": dict(ep, cluster_name="files"),
             "transport_socket": {"name": "tls", "typed_config": {"@type": up, "sni": "up.test",
                                  "common_tls_context": {"alpn_protocols": ["h2", "istio"], "validation_context": {
                                      "trusted_ca": {"filename": "/etc/ca.pem"}}}}}}
    inline = {"name": "inline", "type": "STATIC", "load_assignment": dict(ep, cluster_name="inline"),
              "transport_socket": {"name": "tls", "typed_config": {"@type": up, "common_tls_context": {
                  "validation_context": {"trusted_ca": {"inline_string":
                                                        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}}}}}}
    text = json.dumps({"static_resources": {"clusters": [files, inline]}})
    config, _, resources = load_bootstrap_resources(text, str(tmp_path / "b.json"))
    out = convert(config, resources)
    by_name = {c["name"]: c for c in out.yaml["clusters"]}
    assert by_name["files"]["tls"] == {"verify": True, "ca": "/etc/ca.pem", "sni": "up.test", "alpn": ["h2"]}
    assert "tls" not in by_name["inline"]
    assert any('cluster "inline": TLS certificates or keys given inline' in n for n in out.notes)
    assert any('cluster "files": ALPN protocols other than h2' in n for n in out.notes)


def test_an_access_log_is_kept_and_loads_back():
    import dataclasses

    from mosnx.runtime.config import load_config_text
    from mosnx.runtime.log_filter import status_code
    from mosnx.runtime.logformat import ENVOY_DEFAULT_FORMAT, compile_format, compile_json
    from mosnx.runtime.model import AccessLog
    import yaml

    config, _, resources = load_bootstrap_resources(STATIC, "<envoy>")
    for al, want in [
        (AccessLog("stdout", compile_format(ENVOY_DEFAULT_FORMAT)), {"path": "stdout", "format": ENVOY_DEFAULT_FORMAT[:-1]}),
        (AccessLog("/tmp/a.json", compile_json({"c": "%RESPONSE_CODE%"}, omit_empty=True), status_code("GE", 500)),
         {"path": "/tmp/a.json", "json_format": {"c": "%RESPONSE_CODE%"}, "omit_empty_values": True}),
    ]:
        lc = dataclasses.replace(config.listeners[0], access_log=al)
        out = convert(dataclasses.replace(config, listeners=(lc,)), resources)
        assert out.yaml["listeners"][0]["access_log"] == want
        assert any("access-log filter" in n for n in out.notes) == (al.filter is not None)
        back = load_config_text(yaml.safe_dump(out.yaml), "/tmp/x/mosnx.yaml").listeners[0].access_log
        assert back.format.text.rstrip("\n") == al.format.text.rstrip("\n")
        assert (type(back.format), back.format.omit_empty) == (type(al.format), al.format.omit_empty)
