"""proxy/admin_format.py: the admin's answers as Envoy formats them, from a merged stats
dump: the stat filter, ?usedonly, the text and Prometheus forms (tag extraction into
labels), histogram summaries, health flags; JSON pieces that join into valid JSON."""
from __future__ import annotations

import json

import pytest

from mosnx.proxy import admin_format as F
from mosnx.runtime.stats import Store, merge


def dump():
    s = Store()
    s.counter("cluster.web.upstream_rq_total").inc(3)
    s.counter("cluster.api.upstream_rq_total").inc(0)
    s.gauge("listener.ingress.downstream_cx_active").set(2)
    for v in (1, 2, 3):
        s.histogram("cluster.web.upstream_rq_time").record(v)
    s.histogram("cluster.api.upstream_rq_time")
    return merge([s.dump()])


def test_numbers_print_as_envoy_prints_them():
    assert (F.num(3.0), F.num(2.5), F.num(7), F.num(2.0 ** 60)) == ("3", "2.5", "7", repr(2.0 ** 60))
    assert F.estimate(9.950000000000001) == 9.95 and F.estimate(None) is None


def test_the_filter_is_an_re2_search_with_a_readable_error():
    assert F.compile_filter(r"rq_t\w+").search("cluster.web.upstream_rq_total")
    with pytest.raises(ValueError) as e:
        F.compile_filter("(unclosed")
    assert "missing )" in str(e.value)
    with pytest.raises(ValueError, match="characters; at most"):
        F.compile_filter("a" * (F.MAX_FILTER + 1))


def test_select_by_pattern_and_used_only():
    d = dump()
    web = F.select(d, F.compile_filter(r"\.web\."))
    assert list(web["counters"]) == ["cluster.web.upstream_rq_total"] and list(web["gauges"]) == []
    used = F.select(d, used_only=True)
    assert list(used["counters"]) == ["cluster.web.upstream_rq_total"]
    assert list(used["histograms"]) == ["cluster.web.upstream_rq_time"]


def test_prometheus_names_lift_tags_into_labels():
    assert F.prometheus_name("cluster.web.upstream_rq_total") == (
        "mosnx_cluster_upstream_rq_total", (("cluster_name", "web"),))
    assert F.prometheus_name("listener.l1.http.ingress.downstream_rq_2xx") == (
        "mosnx_listener_http_downstream_rq_2xx", (("listener_name", "l1"), ("http_conn_manager_prefix", "ingress")))
    assert F.prometheus_name("server.live-ness") == ("mosnx_server_live_ness", ())


def test_prometheus_text_has_one_type_line_per_family_and_cumulative_buckets():
    text = F.prometheus(dump())
    lines = text.splitlines()
    assert lines.count("# TYPE mosnx_cluster_upstream_rq_total counter") == 1
    assert 'mosnx_cluster_upstream_rq_total{cluster_name="api"} 0' in lines
    assert 'mosnx_cluster_upstream_rq_total{cluster_name="web"} 3' in lines
    assert 'mosnx_listener_downstream_cx_active{listener_name="ingress"} 2' in lines
    assert 'mosnx_cluster_upstream_rq_time_bucket{cluster_name="web",le="+Inf"} 3' in lines
    assert 'mosnx_cluster_upstream_rq_time_count{cluster_name="web"} 3' in lines
    buckets = [int(line.rsplit(" ", 1)[1]) for line in lines
               if line.startswith('mosnx_cluster_upstream_rq_time_bucket{cluster_name="web"')]
    assert buckets == sorted(buckets)                      # cumulative
    kinds = [line.split()[-1] for line in lines if line.startswith("# TYPE")]
    assert kinds == sorted(kinds, key=("counter", "gauge", "histogram").index)


def test_histogram_summaries():
    d = dump()["histograms"]
    assert F.histogram_summary(d["cluster.api.upstream_rq_time"]) == "No recorded values"
    summary = F.histogram_summary(d["cluster.web.upstream_rq_time"])
    assert summary.startswith("P0(nan,") and summary.count("(nan,") == len(F.PERCENTS)


def test_health_words_become_envoy_flags():
    assert F.health_flags("healthy") == []
    assert F.health_flags(["unhealthy", "ejected"]) == ["failed_active_hc", "failed_outlier_check"]
    assert F.health_flags("/pending_dynamic_removal") == ["pending_dynamic_removal"]
    assert F.health_flags(None) == []


def test_json_pieces_join_into_json_even_with_a_stray_set():
    obj = {"a": [1, 2], "s": frozenset({"x"}), "n": None}
    for pretty in (True, False):
        text = "".join(F.json_pieces(obj, pretty))
        assert text.endswith("\n") and json.loads(text) == {"a": [1, 2], "s": ["x"], "n": None}
