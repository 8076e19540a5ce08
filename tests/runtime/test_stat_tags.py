"""runtime.stat_tags: stat names as Prometheus families and labels, by Envoy's default
tag specifiers, a config's own tags, or mosnx's earlier naming."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from mosnx.runtime.stat_tags import (ENVOY, ENVOY_STATS, MOSNX_STATS, StatNaming, StatsConfig, StatTag, TokenTag,
                                     sanitize)

ENVOY_NAMING = StatNaming(ENVOY_STATS)


@pytest.mark.parametrize("stat, family, labels", [
    ("cluster.web.upstream_rq_total", "envoy_cluster_upstream_rq_total", {"envoy_cluster_name": "web"}),
    ("cluster.web.upstream_rq_2xx", "envoy_cluster_upstream_rq_xx",
     {"envoy_cluster_name": "web", "envoy_response_code_class": "2"}),
    ("cluster.web.upstream_rq_503", "envoy_cluster_upstream_rq",
     {"envoy_cluster_name": "web", "envoy_response_code": "503"}),
    ("cluster.web.upstream_rq_time", "envoy_cluster_upstream_rq_time", {"envoy_cluster_name": "web"}),
    ("http.ingress.downstream_rq_5xx", "envoy_http_downstream_rq_xx",
     {"envoy_http_conn_manager_prefix": "ingress", "envoy_response_code_class": "5"}),
    ("listener.127.0.0.1_8080.downstream_cx_total", "envoy_listener_downstream_cx_total",
     {"envoy_listener_address": "127.0.0.1_8080"}),
    ("listener.[__1]_8080.downstream_cx_total", "envoy_listener_downstream_cx_total",
     {"envoy_listener_address": "[__1]_8080"}),
    ("listener.127.0.0.1_8080.http.ingress.downstream_rq_2xx", "envoy_listener_http_downstream_rq_xx",
     {"envoy_listener_address": "127.0.0.1_8080", "envoy_http_conn_manager_prefix": "ingress",
      "envoy_response_code_class": "2"}),
    # the admin's own listener is not an address (Envoy's negative match)
    ("listener.admin.downstream_cx_total", "envoy_listener_admin_downstream_cx_total", {}),
    ("vhost.shop.route.checkout.upstream_rq_time", "envoy_vhost_route_upstream_rq_time",
     {"envoy_virtual_host": "shop", "envoy_route": "checkout"}),
    ("vhost.shop.vcluster.slow.upstream_rq_4xx", "envoy_vhost_vcluster_upstream_rq_xx",
     {"envoy_virtual_host": "shop", "envoy_virtual_cluster": "slow", "envoy_response_code_class": "4"}),
    ("tcp.db.downstream_cx_total", "envoy_tcp_downstream_cx_total", {"envoy_tcp_prefix": "db"}),
    ("cluster.api.grpc.Cart.GetCart.success", "envoy_cluster_grpc_success",
     {"envoy_cluster_name": "api", "envoy_grpc_bridge_service": "Cart", "envoy_grpc_bridge_method": "GetCart"}),
    # rules_stat_prefix is a tag only when a dot ends it, as in Envoy
    ("http.ingress.rbac.istio_dry_run_allow_shadow_allowed", "envoy_http_rbac_istio_dry_run_allow_shadow_allowed",
     {"envoy_http_conn_manager_prefix": "ingress"}),
    ("http.ingress.rbac.pfx.allowed", "envoy_http_rbac_allowed",
     {"envoy_http_conn_manager_prefix": "ingress", "envoy_rbac_http_prefix": "pfx"}),
    ("server.live", "envoy_server_live", {}),
    ("listener_manager.workers_started", "envoy_listener_manager_workers_started", {}),
    # mosnx's per-endpoint series: the endpoint as upstream_host
    ("cluster.web.host.10.0.0.7_9000.upstream_rq_time", "envoy_cluster_host_upstream_rq_time",
     {"envoy_cluster_name": "web", "upstream_host": "10.0.0.7_9000"}),
])
def test_envoy_default_tags(stat, family, labels):
    name, got = ENVOY_NAMING.series(stat)
    assert name == family
    assert dict(got) == labels
    assert len(got) == len(labels)          # no tag twice


def test_a_tag_is_extracted_once_though_two_patterns_could_find_it():
    # listener.<address>.http.<prefix>. and http.<prefix>. are both the conn manager prefix
    _, labels = ENVOY_NAMING.series("listener.127.0.0.1_80.http.in.downstream_rq_total")
    assert [k for k, _ in labels].count("envoy_http_conn_manager_prefix") == 1


def test_istio_series_keep_their_name_and_labels_in_either_naming():
    stat = "reporter=.=source;.;response_code=.=200;.;istio_requests_total"
    for naming in (ENVOY_NAMING, StatNaming(MOSNX_STATS)):
        assert naming.series(stat) == ("istio_requests_total", (("reporter", "source"), ("response_code", "200")))


def test_mosnx_naming_is_unchanged():
    m = StatNaming(MOSNX_STATS)
    assert m.series("cluster.web.upstream_rq_total") == ("mosnx_cluster_upstream_rq_total", (("cluster_name", "web"),))
    assert m.series("listener.l1.http.ingress.downstream_rq_2xx") == (
        "mosnx_listener_http_downstream_rq_2xx", (("listener_name", "l1"), ("http_conn_manager_prefix", "ingress")))
    assert m.series("wasm.authz.denied") == ("mosnx_wasm_denied", (("plugin_name", "authz"),))
    assert m.series("server.live-ness") == ("mosnx_server_live_ness", ())
    assert m.series("vhost.shop.route.r1.upstream_rq_time") == (
        "mosnx_vhost_route_upstream_rq_time", (("virtual_host", "shop"), ("route", "r1")))


def test_config_tags_regex_and_fixed_value():
    naming = StatNaming(StatsConfig(ENVOY, (StatTag("zone", fixed_value="z1"),
                                            StatTag("team", regex=r"^custom\.(([^.]+)\.)"))))
    assert naming.series("custom.payments.errors") == ("envoy_custom_errors", (("zone", "z1"), ("team", "payments")))
    # the defaults still apply beside them
    assert naming.series("cluster.web.upstream_rq_total") == (
        "envoy_cluster_upstream_rq_total", (("zone", "z1"), ("envoy_cluster_name", "web")))


def test_without_the_defaults_only_the_given_tags_apply():
    naming = StatNaming(StatsConfig(ENVOY, (StatTag("envoy.cluster_name"),), use_all_default_tags=False))
    # a default tag named without a regex takes its default pattern
    assert naming.series("cluster.web.upstream_rq_2xx") == (
        "envoy_cluster_upstream_rq_2xx", (("envoy_cluster_name", "web"),))
    assert StatNaming(StatsConfig(ENVOY, use_all_default_tags=False)).series("cluster.web.upstream_rq_2xx") == (
        "envoy_cluster_web_upstream_rq_2xx", ())


def test_istio_bootstrap_regexes():
    """The stats_tags Istio writes into every sidecar's bootstrap (POSIX classes, an
    alternation whose second half is the one that matches)."""
    tags = (
        StatTag("cluster_name", regex=r"^cluster\.((.+?(\..+?\.svc\.cluster\.local)?)\.)"),
        StatTag("response_code", regex=r"(response_code=\.=(.+?);\.;)|_rq(_(\d{3}))$"),
        StatTag("response_code_class", regex=r"_rq(_(\dxx))$"),
        StatTag("http_conn_manager_prefix", regex=r"^http\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"),
        StatTag("listener_address", regex=r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"),
    )
    naming = StatNaming(StatsConfig(ENVOY, tags, use_all_default_tags=False))
    cluster = "outbound|9080||reviews.default.svc.cluster.local"
    assert naming.series(f"cluster.{cluster}.upstream_rq_200") == (
        "envoy_cluster_upstream_rq", (("cluster_name", cluster), ("response_code", "200")))
    assert naming.series("listener.10.0.0.1_15006.downstream_cx_total") == (
        "envoy_listener_downstream_cx_total", (("listener_address", "10.0.0.1_15006"),))


@pytest.mark.parametrize("make, message", [
    (lambda: StatTag(""), "needs a tag_name"),
    (lambda: StatTag("x", regex="(", fixed_value="y"), "both regex and fixed_value"),
    (lambda: StatTag("x", regex="(unclosed"), "does not compile"),
    (lambda: StatTag("x", regex="no_group"), "has no group"),
    (lambda: StatTag("not_a_default"), "not a default tag name"),
    (lambda: StatsConfig(ENVOY, (StatTag("envoy.cluster_name", regex=r"^c\.((.*?)\.)"),)), "given twice"),
    (lambda: StatsConfig(ENVOY, (StatTag("a", fixed_value="1"), StatTag("a", fixed_value="2"))), "given twice"),
    (lambda: StatsConfig("prometheus"), "one of envoy, mosnx"),
])
def test_bad_tags_are_value_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_token_patterns():
    t = TokenTag("x", "a.*.b.$.**")
    assert t.find("a.1.b.2.c.d") == ("2", 6, 8)
    assert t.find("a.1.b.2") == ("2", 5, 7)         # last token: the dot before it goes
    assert t.find("a.1.c.2.c") is None
    with pytest.raises(ValueError):
        TokenTag("x", "a.b")


def test_names_are_worked_out_once():
    naming = StatNaming(ENVOY_STATS)
    first = naming.series("cluster.web.upstream_rq_total")
    assert naming.series("cluster.web.upstream_rq_total") is first


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="abc._0123456789xrq", max_size=40))
def test_any_name_gets_a_valid_family(stat):
    name, labels = ENVOY_NAMING.series(stat)
    assert name == sanitize(name) and name.startswith("envoy_")
    assert all(k == sanitize(k) for k, _ in labels)


def test_stats_a_config_names_alike_make_one_series():
    from mosnx.proxy.admin_format import prometheus
    from mosnx.runtime.stats import Store

    store = Store()
    store.inc("custom.a.hits", 2)
    store.inc("custom.b.hits", 3)
    store.histogram("custom.a.time").record(1.0)
    store.histogram("custom.b.time").record(700.0)
    # the tag takes `a.` or `b.` out of the name and gives both the same (empty) value
    naming = StatNaming(StatsConfig(ENVOY, (StatTag("kind", regex=r"^custom\.([ab]\.)()"),),
                                    use_all_default_tags=False))
    assert naming.series("custom.a.hits") == naming.series("custom.b.hits") == ("envoy_custom_hits", (("kind", ""),))
    lines = prometheus(store.dump(), naming).splitlines()
    assert [ln for ln in lines if ln.startswith("envoy_custom_hits")] == ['envoy_custom_hits{kind=""} 5']
    assert 'envoy_custom_time_count{kind=""} 2' in lines
    assert 'envoy_custom_time_bucket{kind="",le="1"} 1' in lines
    assert 'envoy_custom_time_bucket{kind="",le="1000"} 2' in lines
