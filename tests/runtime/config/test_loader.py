import os
import re
import textwrap

import pytest

from mosnx.runtime import (AccessLog, AdminConfig, CircuitBreakers, ConfigError, Endpoint, Limits,
                           MirrorPolicy, RetryPolicy, Timeouts)
from mosnx.runtime.config import load_config, load_config_text
from mosnx.runtime.model import PathNormalization
from mosnx.runtime.logformat import compile_format

# appended to test documents, which are indented as the test source is
CLUSTER = """
        clusters:
          - name: web
            endpoints: ["127.0.0.1:9000"]
"""


def load(text: str, path: str = "<string>"):
    return load_config_text(textwrap.dedent(text), path)


def findings(text: str, path: str = "<string>") -> list[tuple[str, int, int, str]]:
    """(code, line, column, message) of every finding, in order."""
    with pytest.raises(ConfigError) as e:
        load(text, path)
    return [(d.code, d.span.line, d.span.column, d.message) if d.span else (d.code, 0, 0, d.message)
            for d in e.value.diagnostics]


def only(text: str, path: str = "<string>") -> tuple[str, int, int, str]:
    found = findings(text, path)
    assert len(found) == 1, found
    return found[0]


FULL = """\
admin: { address: 127.0.0.1:15000 }
workers: 2
demo_upstream: ["127.0.0.1:9000", "127.0.0.1:9001"]
listeners:
  - name: ingress
    address: 127.0.0.1:8080
    protocol: http
    route:
      cluster: web
      timeout: 15s
      idle_timeout: 0
      retry:
        retry_on: [5xx, reset, retriable-status-codes]
        num_retries: 2
        per_try_timeout: 500ms
        retriable_status_codes: [409]
        backoff: {base_interval: 25ms, max_interval: 250ms}
      prefix_rewrite: /v2/
      host_rewrite: api.internal
      mirror: {cluster: shadow, percent: 5}
      hash_key: request.headers["x-user"]
    filters:
      - wasm: { name: authz, module: filters/authz.wasm, config: {a: 1}, fail_open: false }
      - fault: { disabled: true, abort: {status: 503} }
      - cors
    access_log: logs/access.log
    timeouts: { request_headers: 10s, idle: 60s, drain: 5s }
    limits: { request_headers: 60KiB, retry_buffer: 64KiB, write_high_water: 256KiB, write_low_water: 64KiB }
  - name: shop
    address: "[::1]:8081"
    rules: [rules/shop.mdsl, rules/more]
    access_log: { path: stderr, format: "%request.path% %response.code%" }
clusters:
  - name: web
    endpoints: ["127.0.0.1:9000", {address: "127.0.0.1:9001", weight: 2}]
    connect_timeout: 1s
    lb: least_request
    protocol: http1
    idle_timeout: 30s
    max_requests_per_connection: 100
    circuit_breakers: { max_connections: 10, max_pending_requests: 20, max_requests: 30, max_retries: 4 }
  - name: shadow
    endpoints: ["127.0.0.1:9002"]
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "rules" / "more").mkdir(parents=True)
    (tmp_path / "rules" / "shop.mdsl").write_text("")
    (tmp_path / "mosnx.yaml").write_text(FULL)
    return tmp_path


def test_full_config_builds_the_model(project):
    c = load_config(str(project / "mosnx.yaml"))
    assert c.path == str(project / "mosnx.yaml")
    assert c.admin == AdminConfig("127.0.0.1", 15000)
    assert c.workers == 2
    assert c.demo_upstream == (("127.0.0.1", 9000), ("127.0.0.1", 9001))

    ingress, shop = c.listeners
    assert (ingress.name, ingress.host, ingress.port, ingress.protocol) == ("ingress", "127.0.0.1", 8080, "http")
    r = ingress.route
    assert r.cluster == "web" and r.weighted_clusters == ()
    assert r.timeout == 15.0 and r.idle_timeout is None
    assert r.retry == RetryPolicy(retry_on=frozenset({"5xx", "reset", "retriable-status-codes"}), num_retries=2,
                                  per_try_timeout=0.5, retriable_status_codes=frozenset({409}),
                                  backoff_base=0.025, backoff_max=0.25)
    assert r.prefix_rewrite == ("/", "/v2/")
    assert r.host_rewrite == "api.internal"
    assert r.mirrors == (MirrorPolicy("shadow", 5.0),)
    assert r.hash_key == 'request.headers["x-user"]'
    assert ingress.rules == ()
    assert [(f.kind, f.name, f.disabled, f.span.line, f.span.column) for f in ingress.filters] == [
        ("wasm", "authz", False, 23, 9), ("fault", "fault", True, 24, 9), ("cors", "cors", False, 25, 9)]
    assert ingress.filters[0].config == {"module": "filters/authz.wasm", "config": {"a": 1}, "fail_open": False}
    assert ingress.filters[1].config == {"abort": {"status": 503}}
    assert ingress.access_log == AccessLog(str(project / "logs" / "access.log"))
    assert ingress.timeouts == Timeouts(10.0, 60.0, 5.0)
    assert ingress.limits == Limits(60 * 1024, 64 * 1024, 256 * 1024, 64 * 1024)
    assert (ingress.span.path, ingress.span.line, ingress.span.column) == (str(project / "mosnx.yaml"), 5, 5)

    assert (shop.host, shop.port, shop.route) == ("::1", 8081, None)
    assert shop.rules == (str(project / "rules" / "shop.mdsl"), str(project / "rules" / "more"))
    assert shop.access_log == AccessLog("stderr", compile_format("%request.path% %response.code%"))

    web, shadow = c.clusters
    assert web.endpoints == (Endpoint("127.0.0.1", 9000), Endpoint("127.0.0.1", 9001, 2))
    assert (web.connect_timeout, web.lb, web.protocol, web.idle_timeout) == (1.0, "least_request", "http1", 30.0)
    assert web.max_requests_per_connection == 100
    assert web.circuit_breakers == CircuitBreakers(10, 20, 30, 4)
    assert web.options == {}
    assert (web.span.line, web.span.column) == (34, 5)
    assert shadow.endpoints == (Endpoint("127.0.0.1", 9002),)

    assert c.raw["listeners"][0]["route"]["timeout"] == "15s"
    assert c.raw["clusters"][1] == {"name": "shadow", "endpoints": ["127.0.0.1:9002"]}


def test_absent_settings_take_the_model_defaults():
    c = load("""
        listeners:
          - name: l
            address: 127.0.0.1:8080
            route: {cluster: web}
    """ + CLUSTER)
    assert c.admin is None and c.workers is None and c.demo_upstream == ()
    lc = c.listeners[0]
    assert lc.protocol == "http" and lc.filters == () and lc.access_log is None
    assert lc.timeouts == Timeouts() and lc.limits == Limits()
    assert lc.route.timeout == 15.0 and lc.route.retry is None and lc.route.mirrors == ()
    cl = c.clusters[0]
    assert (cl.connect_timeout, cl.lb, cl.protocol) == (1.0, "round_robin", "http1")
    assert cl.circuit_breakers == CircuitBreakers()


def test_empty_admin_mapping_means_the_default_admin_address():
    assert load("admin: {}\n").admin == AdminConfig("127.0.0.1", 15000)


def test_an_empty_file_is_an_empty_config():
    c = load("# nothing yet\n")
    assert (c.listeners, c.clusters, c.raw) == ((), (), {})


def test_null_means_not_set():
    c = load("""
        workers:
        listeners:
          - name: l
            address: 127.0.0.1:8080
            route: {cluster: web, timeout: }
    """ + CLUSTER)
    assert c.workers is None
    assert c.listeners[0].route.timeout == 15.0


# -- routes --

def _route(route: str):
    c = load(f"""
        listeners:
          - name: l
            address: 127.0.0.1:8080
            route: {route}
        clusters:
          - {{name: a, endpoints: ["127.0.0.1:9000"]}}
          - {{name: b, endpoints: ["127.0.0.1:9001"]}}
    """)
    return c.listeners[0].route


def test_weighted_clusters_as_a_list_or_a_mapping():
    assert _route("{weighted_clusters: [{name: a, weight: 3}, {name: b, weight: 1}]}").weighted_clusters == (
        ("a", 3), ("b", 1))
    r = _route("{weighted_clusters: {a: 1, b: 0}}")
    assert r.weighted_clusters == (("a", 1), ("b", 0)) and r.cluster is None


def test_retry_on_as_envoys_comma_separated_string():
    r = _route('{cluster: a, retry: {retry_on: "5xx,connect-failure, gateway-error"}}')
    assert r.retry.retry_on == frozenset({"5xx", "connect-failure", "gateway-error"})
    assert r.retry.num_retries == 1


def test_backoff_max_defaults_to_ten_times_the_base():
    r = _route("{cluster: a, retry: {backoff: {base_interval: 100ms}}}")
    assert (r.retry.backoff_base, r.retry.backoff_max) == (0.1, pytest.approx(1.0))


def test_zero_timeouts_disable():
    r = _route("{cluster: a, timeout: 0, retry: {per_try_timeout: 0s}}")
    assert r.timeout is None and r.retry.per_try_timeout is None


def test_mirror_list_and_regex_rewrite():
    r = _route('{cluster: a, mirror: [{cluster: b}, {cluster: a, percent: 0.5}], '
               'regex_rewrite: {pattern: "^/api/(.*)$", substitution: "/\\\\1"}}')
    assert r.mirrors == (MirrorPolicy("b", 100.0), MirrorPolicy("a", 0.5))
    pattern, sub = r.regex_rewrite
    assert pattern.sub(sub, "/api/x") == "/x"


# -- errors, each at its node --

def test_unknown_key_suggests_the_close_one():
    text = """\
        clusters:
          - name: web
            endpoints: ["127.0.0.1:9000"]
            conect_timeout: 2s
    """
    with pytest.raises(ConfigError) as e:
        load(text)
    (d,) = e.value.diagnostics
    assert (d.code, d.span.line, d.span.column) == ("C002", 4, 5)
    assert d.message == 'unknown key "conect_timeout" in clusters[0] (did you mean "connect_timeout"?)'
    assert d.fix == "connect_timeout"
    assert d.source_line == "    conect_timeout: 2s"
    assert d.render().splitlines()[-1] == "      " + "^" * len("conect_timeout")
    assert str(d) == '<string>:4:5: C002 unknown key "conect_timeout" in clusters[0] (did you mean "connect_timeout"?)'


def test_unknown_top_level_key():
    assert only("listner: []\n") == ("C002", 1, 1, 'unknown key "listner" (did you mean "listeners"?)')


def test_wrong_type():
    assert only("workers: two\n") == ("C003", 1, 10, 'workers: expected a whole number, got "two"')
    assert only("workers: true\n")[:3] == ("C003", 1, 10)
    assert only("listeners: {name: x}\n")[:3] == ("C003", 1, 12)
    code, line, col, msg = only("listeners: [7]\n")
    assert (code, line, col) == ("C003", 1, 13) and msg.startswith("listeners[0]: expected a mapping with keys name")


def test_the_document_must_be_a_mapping():
    assert only("- a\n")[:3] == ("C003", 1, 1)


def test_bad_values():
    assert only("workers: 0\n") == ("C004", 1, 10, "workers: 0 is below the minimum 1")
    assert only("admin: {address: 127.0.0.1:70000}\n") == (
        "C004", 1, 18, 'admin.address: "127.0.0.1:70000": port 70000 is outside 1..65535')
    assert only('admin: {address: "::1:80"}\n')[:3] == ("C004", 1, 18)
    code, line, col, msg = only("""\
        clusters:
          - name: web
            endpoints: ["127.0.0.1:9000"]
            lb: round_robbin
    """)
    assert (code, line, col) == ("C004", 4, 9)
    assert 'unknown value "round_robbin" (did you mean "round_robin"?)' in msg
    assert findings("""\
        clusters:
          - name: web
            endpoints: ["127.0.0.1:9000"]
            connect_timeout: -1s
            idle_timeout: 1 day
    """) == [("C004", 4, 22, 'clusters[0].connect_timeout: "-1s" is negative; durations are never negative'),
             ("C004", 5, 19, 'clusters[0].idle_timeout: "1 day" is not a duration such as 250ms, 2s, 1m or 1h')]


def test_connect_timeout_must_be_positive():
    assert only('clusters: [{name: w, endpoints: ["127.0.0.1:1"], connect_timeout: 0s}]\n')[:3] == ("C004", 1, 67)


def test_missing_required_keys():
    assert only("clusters:\n  - name: web\n") == ("C005", 2, 5, 'clusters[0]: missing required key "endpoints"')
    assert only('clusters:\n  - name:\n    endpoints: ["127.0.0.1:9000"]\n') == (
        "C005", 2, 5, "clusters[0].name needs a value")


def test_listener_needs_exactly_one_of_route_and_rules(tmp_path):
    (tmp_path / "a.mdsl").write_text("")
    path = str(tmp_path / "m.yaml")
    assert findings("""\
        listeners:
          - name: l
            address: 127.0.0.1:8080
          - name: m
            address: 127.0.0.1:8081
            route: {cluster: web}
            rules: a.mdsl
    """ + CLUSTER, path) == [
        ("C005", 2, 5, "listeners[0] needs route: or rules: (a default route, or .mdsl rules that declare the routes)"),
        ("C004", 7, 12, "listeners[1] has both route: and rules:; keep only one "
                        "(a default route, or .mdsl rules that declare the routes)"),
    ]


def test_route_needs_a_cluster_or_a_split():
    assert only("""\
        listeners:
          - name: l
            address: 127.0.0.1:8080
            route: {timeout: 1s}
    """) == ("C005", 4, 12, "listeners[0].route needs cluster: or weighted_clusters: or cluster_header:")


def test_split_weights_must_add_up():
    assert only("""\
        listeners:
          - name: l
            address: 127.0.0.1:8080
            route: {weighted_clusters: {web: 0}}
    """ + CLUSTER)[:3] == ("C004", 4, 32)


def test_unknown_cluster_is_reported_at_the_name():
    assert findings("""\
        listeners:
          - name: l
            address: 127.0.0.1:8080
            route:
              cluster: wbe
              mirror: {cluster: shadw}
          - name: m
            address: 127.0.0.1:8081
            route:
              weighted_clusters: [{name: web, weight: 1}, {name: api, weight: 1}]
          - name: n
            address: 127.0.0.1:8082
            route: {weighted_clusters: {web: 1, apx: 1}}
        clusters:
          - {name: web, endpoints: ["127.0.0.1:9000"]}
          - {name: shadow, endpoints: ["127.0.0.1:9001"]}
    """) == [
        ("C101", 5, 16, 'unknown cluster "wbe" (did you mean "web"?)'),
        ("C101", 6, 25, 'unknown cluster "shadw" (did you mean "shadow"?)'),
        ("C101", 10, 58, 'unknown cluster "api"'),
        ("C101", 13, 41, 'unknown cluster "apx"'),
    ]


def test_duplicates():
    assert findings("""\
        listeners:
          - {name: a, address: "127.0.0.1:8080", route: {cluster: web}}
          - {name: a, address: "127.0.0.1:8081", route: {cluster: web}}
          - {name: b, address: "127.0.0.1:8080", route: {cluster: web}}
          - name: c
            address: "127.0.0.1:8082"
            route: {cluster: web}
            filters: [{wasm: {name: x}}, {lua: {name: x}}, cors, cors]
        clusters:
          - {name: web, endpoints: ["127.0.0.1:9000"]}
          - {name: web, endpoints: ["127.0.0.1:9001"]}
    """) == [
        ("C006", 3, 12, 'duplicate listener name "a" (first at line 2)'),
        ("C006", 4, 24, 'duplicate listener address "127.0.0.1:8080" (first at line 2)'),
        ("C006", 8, 47, 'duplicate filter name "x" (first at line 8)'),
        ("C006", 8, 58, 'duplicate filter name "cors" (first at line 8)'),
        ("C006", 11, 12, 'duplicate cluster name "web" (first at line 10)'),
    ]


def test_duplicate_yaml_keys():
    assert findings("workers: 1\nworkers: 2\n") == [("C006", 2, 1, 'duplicate key "workers"')]


def test_filter_items_are_one_key_mappings():
    code, line, col, msg = only("""\
        listeners:
          - name: l
            address: 127.0.0.1:8080
            route: {cluster: web}
            filters:
              - name: authz
                wasm: {module: a.wasm}
    """ + CLUSTER)
    assert (code, line, col) == ("C004", 6, 9)
    assert "one-key mapping" in msg and "got keys name, wasm" in msg


def test_filter_settings_must_be_a_mapping():
    assert findings("""\
        listeners:
          - name: l
            address: 127.0.0.1:8080
            route: {cluster: web}
            filters: [{wasm: [1]}, {lua: {disabled: maybe}}]
    """ + CLUSTER) == [
        ("C003", 5, 22, "listeners[0].filters[0].wasm: expected the filter's settings as a mapping, got a list"),
        ("C003", 5, 45, 'listeners[0].filters[1].lua.disabled: expected true or false, got "maybe"'),
    ]


def test_write_low_water_must_be_below_high_water():
    assert only("""\
        listeners:
          - name: l
            address: 127.0.0.1:8080
            route: {cluster: web}
            limits: {write_high_water: 32KiB}
    """ + CLUSTER) == ("C004", 5, 32,
                       "listeners[0].limits.write_low_water (64KiB) must be below write_high_water (32KiB)")


def test_retry_errors():
    assert findings("""\
        listeners:
          - name: l
            address: 127.0.0.1:8080
            route:
              cluster: web
              retry: {retry_on: "5xx,resett", retriable_status_codes: [700], backoff: {base_interval: 1s, max_interval: 10ms}}
    """ + CLUSTER) == [
        ("C004", 6, 30, 'listeners[0].route.retry.retry_on[1]: unknown value "resett" (did you mean "reset"?); '
                        "expected one of 5xx, connect-failure, gateway-error, refused-stream, reset, "
                        "retriable-4xx, retriable-status-codes"),
        ("C004", 6, 64, "listeners[0].route.retry.retriable_status_codes[0]: 700 is above the maximum 599"),
        ("C004", 6, 95, "listeners[0].route.retry.backoff.base_interval (1.0) must be at most max_interval (0.01)"),
    ]


def test_bad_attribute_and_regex():
    assert findings("""\
        listeners:
          - name: l
            address: 127.0.0.1:8080
            route: {cluster: web, hash_key: request.header, regex_rewrite: {pattern: "(", substitution: x}}
    """ + CLUSTER) == [
        ("C004", 4, 37, 'listeners[0].route.hash_key: unknown attribute "request.header" (did you mean "request.headers"?)'),
        ("C004", 4, 78, "listeners[0].route.regex_rewrite.pattern: bad regular expression: "
                        "missing ), unterminated subpattern at position 0"),
    ]


def test_prefix_rewrite_must_be_a_path():
    assert only("""\
        listeners:
          - {name: l, address: "127.0.0.1:8080", route: {cluster: web, prefix_rewrite: v2}}
    """ + CLUSTER)[:3] == ("C004", 2, 80)


def test_every_finding_is_reported_at_once_in_document_order():
    found = findings("""\
        workers: -1
        admin: {adress: 127.0.0.1:15000}
        listeners:
          - name: l
            address: 127.0.0.1
            route: {cluster: nope}
        clusters:
          - name: web
            endpoints: [nohost]
            conect_timeout: 1s
    """)
    assert [(c, line, col) for c, line, col, _ in found] == [
        ("C004", 1, 10), ("C002", 2, 9), ("C004", 5, 14), ("C101", 6, 22), ("C004", 9, 17), ("C002", 10, 5)]


def test_a_cluster_may_have_no_endpoints_yet():
    cfg = load_config_text("""        clusters:
          - {name: web, endpoints: []}
    """)
    assert cfg.clusters[0].endpoints == ()


# -- YAML syntax --

def test_yaml_syntax_error_is_positioned():
    code, line, col, msg = only("""\
        listeners:
          - name: l
           address: 127.0.0.1:8080
    """)
    assert (code, line, col) == ("C001", 3, 4)
    assert msg == ("YAML syntax: expected <block end>, but found '<block mapping start>' "
                   "(while parsing a block collection)")


def test_yaml_tab_indentation():
    assert only("listeners:\n\t- name: x\n")[:3] == ("C001", 2, 1)


def test_yaml_python_tags_are_refused():
    assert only("workers: !!python/object/apply:os.system [echo]\n")[:3] == ("C001", 1, 10)


def test_yaml_second_document():
    assert only("workers: 1\n---\nworkers: 2\n") == (
        "C001", 2, 1, "YAML syntax: expected a single document in the stream, but found another document")


def test_anchors_and_merge_keys():
    c = load("""\
        clusters:
          - &a
            name: a
            connect_timeout: 3s
            endpoints: ["127.0.0.1:9000"]
          - <<: *a
            name: b
            connect_timeout: 5s
    """)
    assert [(cl.name, cl.connect_timeout) for cl in c.clusters] == [("a", 3.0), ("b", 5.0)]
    assert c.clusters[1].endpoints == (Endpoint("127.0.0.1", 9000),)


# -- files --

def test_relative_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    (tmp_path / "conf" / "rules").mkdir(parents=True)
    (tmp_path / "conf" / "rules" / "a.mdsl").write_text("")
    cfg = tmp_path / "conf" / "mosnx.yaml"
    cfg.write_text(textwrap.dedent("""\
        listeners:
          - name: l
            address: 127.0.0.1:8080
            rules: rules
            access_log: ../logs/a.log
          - name: m
            address: 127.0.0.1:8081
            rules: [rules/a.mdsl]
            access_log: stdout
    """))
    monkeypatch.chdir(tmp_path)
    c = load_config(os.path.join("conf", "mosnx.yaml"))
    assert c.path == str(cfg)
    assert c.listeners[0].rules == (str(tmp_path / "conf" / "rules"),)
    assert c.listeners[0].access_log.path == str(tmp_path / "logs" / "a.log")
    assert c.listeners[1].rules == (str(tmp_path / "conf" / "rules" / "a.mdsl"),)
    assert c.listeners[1].access_log.path == "stdout"


def test_text_without_a_file_resolves_against_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "r.mdsl").write_text("")
    monkeypatch.chdir(tmp_path)
    c = load("listeners: [{name: l, address: '127.0.0.1:8080', rules: r.mdsl}]\n")
    assert c.listeners[0].rules == (str(tmp_path / "r.mdsl"),)
    assert c.path == "<string>"


def test_missing_rules_file(tmp_path):
    code, line, col, msg = only("""\
        listeners:
          - name: l
            address: 127.0.0.1:8080
            rules: [rules/nope.mdsl]
    """, str(tmp_path / "m.yaml"))
    assert (code, line, col) == ("C007", 4, 13)
    assert 'no such file or folder "rules/nope.mdsl"' in msg


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(str(tmp_path / "absent.yaml"))
    (d,) = e.value.diagnostics
    assert d.code == "C007" and d.span is None and "absent.yaml" in d.message


def test_spans_name_the_file_as_given(tmp_path, monkeypatch):
    (tmp_path / "m.yaml").write_text("workers: 0\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        load_config("m.yaml")
    assert re.match(r"m\.yaml:1:10: C004 ", str(e.value))


def test_filter_settings_do_not_alias_the_raw_document():
    c = load("""\
        listeners:
          - name: l
            address: 127.0.0.1:8080
            route: {cluster: web}
            filters: [{wasm: {config: {a: 1}}}]
    """ + CLUSTER)
    c.listeners[0].filters[0].config["config"]["a"] = 2
    assert c.raw["listeners"][0]["filters"][0]["wasm"]["config"] == {"a": 1}


def test_path_normalization_and_header_count_settings():
    cfg = load("""\
        listeners:
          - name: l
            address: 127.0.0.1:8080
            route: {cluster: web}
            limits: {request_headers_count: 200}
            path_normalization: {normalize: false, merge_slashes: false, escaped_slashes: reject}
    """ + CLUSTER)
    lc = cfg.listeners[0]
    assert lc.limits.request_headers_count == 200
    assert lc.path_normalization == PathNormalization(False, False, "reject")
    default = load("""\
        listeners:
          - {name: l, address: 127.0.0.1:8080, route: {cluster: web}}
    """ + CLUSTER).listeners[0]
    assert default.path_normalization == PathNormalization(True, True, "keep")
    assert default.limits.request_headers_count == 100


def test_path_normalization_errors_are_positioned():
    assert findings("""\
        listeners:
          - name: l
            address: 127.0.0.1:8080
            route: {cluster: web}
            limits: {request_headers_count: 0}
            path_normalization: {normalize: yes please, escaped_slashes: unescape, merge: true}
    """ + CLUSTER) == [
        ("C004", 5, 37, "listeners[0].limits.request_headers_count: 0 is below the minimum 1"),
        ("C003", 6, 37, 'listeners[0].path_normalization.normalize: expected true or false, got "yes please"'),
        ("C004", 6, 66, 'listeners[0].path_normalization.escaped_slashes: unknown value "unescape"; expected '
                        'one of keep, reject, unescape_and_redirect, unescape_and_forward'),
        ("C002", 6, 76, 'unknown key "merge" in listeners[0].path_normalization'),
    ]


def test_yaml_refused_character_is_positioned():
    # PyYAML refuses control characters before it parses, with an index rather than a mark
    assert only("workers: 1\nlisteners:\n  - name: a\x0bb\n") == (
        "C001", 3, 12, "YAML syntax: unacceptable character #x000b: special characters are not allowed")
    assert only("\x00")[:3] == ("C001", 1, 1)


def test_yaml_positions_count_every_line_break_yaml_counts():
    # NEL and the Unicode line and paragraph separators end a line for YAML's marks:
    # the source line shown is the one the mark names
    with pytest.raises(ConfigError) as e:
        load_config_text("workers: 1\u2028nope: 2\n")
    d = e.value.diagnostics[0]
    assert (d.code, d.span.line, d.span.column, d.source_line) == ("C002", 2, 1, "nope: 2")


def test_a_file_that_is_not_utf8_is_positioned_at_the_first_bad_byte(tmp_path):
    p = tmp_path / "mosnx.yaml"
    p.write_bytes(b"workers: 1\nlisteners:\n  - name: caf\xe9\n")
    with pytest.raises(ConfigError) as e:
        load_config(str(p))
    (d,) = e.value.diagnostics
    assert (d.code, d.span.path, d.span.line, d.span.column) == ("C001", str(p), 3, 14)
    assert "is not UTF-8 text" in d.message and "0xe9" in d.message


def test_yaml_nested_too_deep_is_positioned():
    # PyYAML composes recursively: a deep enough document would exhaust the stack
    found = only("workers: 1\nlisteners: " + "[" * 3000 + "]" * 3000 + "\n")
    assert found == ("C001", 2, 75, "YAML syntax: nested deeper than 64 levels")     # the 65th level


@pytest.mark.parametrize("text, line, col", [
    ("listeners: &a [*a]\n", 1, 12),
    ("clusters:\n  - &c {name: c, endpoints: [], x: *c}\n", 2, 5),
    ("a: &m\n  b: 1\n  c: {<<: *m}\n", 1, 4),
])
def test_yaml_alias_inside_its_own_anchor_is_refused(text, line, col):
    code, l, c, msg = only(text)
    assert (code, l, c) == ("C001", line, col)
    assert "contain itself" in msg
