"""The runtime contract: headers, attributes, actions, pipelines, stats."""
import pytest

from mosnx.runtime import attributes
from mosnx.runtime.actions import LocalReply, redirect
from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.pipeline import HttpFilter, Pipeline
from mosnx.runtime.stats import BUCKETS, Store, merge, quantile


def make_ctx():
    h = Headers.from_pairs([("Host", "shop.example.com"), ("X-Api-Key", "k1"),
                            ("Cookie", "beta=yes; theme=dark"), ("cookie", "other=1")])
    c = StreamContext(RequestHead("POST", "/v1/items/7?debug=1&q=", h), listener="ingress",
                      source=("10.1.2.3", 4444), destination=("127.0.0.1", 8080))
    return c


def test_headers_case_insensitive_set_add_remove():
    h = Headers.from_pairs([("A", "1"), ("b", "2"), ("a", "3")])
    assert h.get("a") == "1" and h.get_all("A") == ["1", "3"]
    h.set("A", "x")
    assert h.get_all("a") == ["x"]
    h.add("C", "4")
    assert h.remove("b") == 1 and "b" not in h and "c" in h
    assert h.pairs() == [("a", "x"), ("c", "4")]


def test_attributes_resolve_through_one_table():
    c = make_ctx()
    g = attributes.getter
    assert g("request.method")(c) == "POST"
    assert g("request.url_path")(c) == "/v1/items/7"
    assert g("request.host")(c) == "shop.example.com"
    assert g("request.headers", "x-api-key")(c) == "k1"
    assert g("request.headers", "missing")(c) == ""          # a missing header reads as ""
    assert g("request.query", "debug")(c) == "1"
    assert g("request.query", "q")(c) == ""
    assert g("request.cookies", "beta")(c) == "yes"
    assert g("request.cookies", "other")(c) == "1"
    assert g("source.address")(c) == "10.1.2.3"
    assert g("response.code")(c) == 0
    c.response = ResponseHead(503, Headers.from_pairs([("Server", "x")]))
    assert g("response.code")(c) == 503
    assert attributes.getter_for('response.headers["server"]')(c) == "x"
    with pytest.raises(attributes.UnknownAttribute):
        g("request.nope")
    with pytest.raises(attributes.UnknownAttribute):
        g("request.headers")              # keyed attribute without a key


def test_property_paths_for_wasm():
    c = make_ctx()
    assert attributes.property_path(["request", "path"])(c) == "/v1/items/7?debug=1&q="
    assert attributes.property_path(["request", "headers", "x-api-key"])(c) == "k1"
    assert attributes.property_path(["request", "nope"]) is None


def test_set_path_resets_derived_facts():
    c = make_ctx()
    assert c.url_path == "/v1/items/7"
    c.set_path("/other?x=2")
    assert c.url_path == "/other" and c.query == {"x": "2"}


def test_local_reply_validates():
    with pytest.raises(ValueError):
        LocalReply(99)
    assert LocalReply(200, "text").body == b"text"
    assert dict(redirect(308, "/x").headers)["location"] == "/x"
    with pytest.raises(ValueError):
        redirect(200, "/x")


def test_pipeline_keeps_only_overridden_hooks():
    class OnlyResponse(HttpFilter):
        def on_response(self, ctx):
            return None
    p = Pipeline.of([OnlyResponse(), HttpFilter()])
    assert len(p.response) == 1 and not p.request and not p.log
    assert not Pipeline() and p


def test_stats_merge_and_quantile():
    a, b = Store(), Store()
    a.counter("x").inc(2)
    b.counter("x").inc(3)
    b.gauge("g").set(4)
    for v in (1, 2, 3, 4, 40):
        a.histogram("h").record(v)
    m = merge([a.dump(), b.dump()])
    assert m["counters"]["x"] == 5 and m["gauges"]["g"] == 4
    assert m["histograms"]["h"]["count"] == 5
    q50 = quantile(m["histograms"]["h"], 0.5)
    assert 1 <= q50 <= 5


def test_histogram_samples_kept_by_add_count_once_read_or_folded():
    now, later = Store(), Store()
    # every bound exactly (a bound's own bucket holds it), just above each, and beyond
    samples = (0.2, 3, 3, 7.5, 40, 1e9) + BUCKETS + tuple(b * 1.001 for b in BUCKETS)
    for v in samples:
        now.histogram("h").record(v)
        later.histogram("h").add(v)
    h = later.histogram("h")
    assert h.count == len(samples)              # reading buckets what add kept
    assert later.dump() == now.dump()
    h.add(2)
    later.fold()                                # what the worker's sweep does
    assert h._held == [] and h.count == len(samples) + 1
    h.add(2)                                    # add still feeds the same histogram
    assert h.counts[2] == now.histogram("h").counts[2] + 2
    assert abs(h.sum - (sum(samples) + 4)) < 1e-6 * h.sum
