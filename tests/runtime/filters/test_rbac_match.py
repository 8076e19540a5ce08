"""runtime/filters/rbac_match.py: Envoy's RBAC permissions and principals, matcher by
matcher, as Envoy evaluates them."""
from __future__ import annotations

import os
import sys

import pytest

from mosnx.runtime.filters.rbac_match import compile_permission, compile_principal

sys.path.insert(0, os.path.dirname(__file__))
from rbac_streams import jwt, stream  # noqa: E402


def perm(p: dict, **kw) -> bool:
    return compile_permission(p)(stream(**kw))


def who(p: dict, **kw) -> bool:
    return compile_principal(p)(stream(**kw))


# ---------------------------------------------------------------- matchers

def test_string_matchers_as_envoy():
    p = lambda sm, value: perm({"header": {"name": "x", "string_match": sm}}, headers=[("x", value)])  # noqa: E731
    assert p({"exact": "a"}, "a") and not p({"exact": "a"}, "A")
    assert p({"exact": "a", "ignore_case": True}, "A")
    assert p({"prefix": "ab"}, "abc") and not p({"prefix": "ab"}, "cab")
    assert p({"suffix": "bc"}, "abc") and p({"contains": "b"}, "abc")
    assert p({"safe_regex": {"regex": "a.c"}}, "abc") and not p({"safe_regex": {"regex": "a"}}, "abc"), "full match"
    assert p({"suffix": "BC", "ignore_case": True}, "abc")


def test_header_matcher_missing_and_inverted():
    h = {"header": {"name": "x-a", "exact_match": "1"}}
    assert perm(h, headers=[("x-a", "1")]) and not perm(h)
    inv = {"header": {"name": "x-a", "exact_match": "1", "invert_match": True}}
    assert perm(inv, headers=[("x-a", "2")]) and not perm(inv), "a missing header matches no inverted value either"
    absent = {"header": {"name": "x-a", "present_match": False}}
    assert perm(absent) and not perm(absent, headers=[("x-a", "")])
    empty = {"header": {"name": "x-a", "string_match": {"exact": ""}, "treat_missing_header_as_empty": True}}
    assert perm(empty)
    both = {"header": {"name": "x-a", "string_match": {"exact": "1,2"}}}
    assert perm(both, headers=[("x-a", "1"), ("x-a", "2")]), "several values are joined with ','"
    rng = {"header": {"name": "x-n", "range_match": {"start": "10", "end": "20"}}}
    assert perm(rng, headers=[("x-n", "10")]) and not perm(rng, headers=[("x-n", "20")])


def test_pseudo_headers_read_the_request_line():
    assert perm({"header": {"name": ":method", "string_match": {"exact": "POST"}}}, method="POST")
    assert perm({"header": {"name": ":authority", "string_match": {"exact": "A.com", "ignore_case": True}}},
                host="a.com")
    assert perm({"header": {"name": ":path", "string_match": {"exact": "/a?b=1"}}}, path="/a?b=1")


def test_url_path_ignores_the_query():
    assert perm({"url_path": {"path": {"exact": "/a"}}}, path="/a?x=1")
    assert not perm({"url_path": {"path": {"exact": "/a"}}}, path="/a/")


@pytest.mark.parametrize("template,yes,no", [
    ("/path/template/*", ["/path/template/x", "/path/template/a.b~c"], ["/path/template/", "/path/template/a/b"]),
    ("/**/path/template", ["/a/b/path/template", "/x/path/template"], ["/path/template", "/a/path/templates"]),
    ("/{a}/b/{c=**}", ["/x/b/y/z", "/x/b/"], ["/x/y/b/z"]),
    ("/v1/{name=shelves/*}/books", ["/v1/shelves/s1/books"], ["/v1/shelves/books", "/v1/shelves/a/b/books"]),
    ("/api/*.json", ["/api/a.json"], ["/api/a/b.json"]),
])
def test_uri_templates(template, yes, no):
    p = {"uri_template": {"name": "t", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig",
        "path_template": template}}}
    for path in yes:
        assert perm(p, path=path + "?q=1"), path
    for path in no:
        assert not perm(p, path=path), path


def test_addresses_and_ports():
    ip = {"destination_ip": {"address_prefix": "192.168.10.7", "prefix_len": 24}}
    assert perm(ip, destination="192.168.10.200") and not perm(ip, destination="192.168.11.1")
    assert not perm(ip, destination="::1"), "a v4 range never holds a v6 address"
    v6 = {"destination_ip": {"address_prefix": "fd00::", "prefix_len": 8}}
    assert perm(v6, destination="fd12::1")
    assert perm({"destination_port": 80}, port=80) and not perm({"destination_port": 80}, port=81)
    rng = {"destination_port_range": {"start": 80, "end": 90}}
    assert perm(rng, port=89) and not perm(rng, port=90)
    src = {"source_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}}
    assert who(src, source="10.2.3.4") and not who(src, source="11.0.0.1")
    assert not who(src, source=""), "no address (a Unix socket peer) is in no range"


def test_remote_ip_is_the_last_forwarded_address():
    remote = {"remote_ip": {"address_prefix": "172.16.0.0", "prefix_len": 16}}
    direct = {"direct_remote_ip": {"address_prefix": "172.16.0.0", "prefix_len": 16}}
    fwd = [("x-forwarded-for", "1.1.1.1, 172.16.3.4")]
    assert who(remote, source="10.0.0.1", headers=fwd) and not who(direct, source="10.0.0.1", headers=fwd)
    assert who(remote, source="172.16.0.9") and who(direct, source="172.16.0.9")


def test_authenticated_reads_uri_sans_then_dns_then_subject():
    name = lambda sm: {"authenticated": {"principal_name": sm}}  # noqa: E731
    spiffe = "spiffe://cluster.local/ns/foo/sa/bar"
    assert who(name({"exact": spiffe}), sans=[spiffe])
    assert who(name({"exact": spiffe}), sans=["spiffe://other", spiffe]), "any URI SAN"
    assert who(name({"exact": "db.internal"}), sans=[], dns=["db.internal"])
    assert who(name({"exact": "CN=client"}), sans=[], subject="CN=client")
    assert not who(name({"exact": spiffe})), "cleartext has no principal"
    assert who({"authenticated": {}}, sans=[]) and not who({"authenticated": {}}), "any TLS peer"


def test_requested_server_name_and_metadata_and_filter_state():
    assert perm({"requested_server_name": {"exact": "a.com"}}, sni="a.com")
    md = {"metadata": {"filter": "envoy.filters.http.jwt_authn", "path": [{"key": "payload"}, {"key": "iss"}],
                       "value": {"string_match": {"exact": "issuer"}}}}
    assert who(md, metadata=jwt("issuer")) and not who(md) and not who(md, metadata=jwt("other"))
    aud = {"metadata": {"filter": "f", "path": [{"key": "aud"}],
                        "value": {"list_match": {"one_of": {"string_match": {"prefix": "a"}}}}}}
    assert who(aud, metadata={"f": {"aud": ["x", "ab"]}}) and not who(aud, metadata={"f": {"aud": "ab"}})
    present = {"metadata": {"filter": "f", "path": [{"key": "k"}], "value": {"present_match": True}, "invert": True}}
    assert who(present) and not who(present, metadata={"f": {"k": 1}})
    num = {"metadata": {"filter": "f", "path": [{"key": "n"}], "value": {"double_match": {"range": {"start": 1, "end": 2}}}}}
    assert who(num, metadata={"f": {"n": 1.5}}) and not who(num, metadata={"f": {"n": True}})
    ctx = stream()
    ctx.state()["peer.id"] = "abc"
    assert compile_principal({"filter_state": {"key": "peer.id", "string_match": {"prefix": "a"}}})(ctx)


def test_and_or_not_short_circuit_and_camel_case_names():
    p = {"andRules": {"rules": [{"orRules": {"rules": [{"destinationPort": 80}, {"destinationPort": 81}]}},
                                {"notRule": {"urlPath": {"path": {"prefix": "/admin"}}}}]}}
    assert perm(p, port=81, path="/x") and not perm(p, port=81, path="/admin/x") and not perm(p, port=82)
    ids = {"orIds": {"ids": [{"notId": {"any": True}}, {"sourceIp": {"addressPrefix": "1.2.3.4", "prefixLen": 32}}]}}
    assert who(ids, source="1.2.3.4") and not who(ids, source="1.2.3.5")


# ---------------------------------------------------------------- generated input

from hypothesis import given, settings, strategies as st  # noqa: E402

from mosnx.runtime.filters.rbac_match import PERMISSION_KINDS, PRINCIPAL_KINDS, RbacError  # noqa: E402

_KEYS = sorted(set(PERMISSION_KINDS + PRINCIPAL_KINDS) | {
    "rules", "ids", "path", "exact", "prefix", "suffix", "contains", "safe_regex", "regex", "ignore_case",
    "name", "string_match", "present_match", "invert_match", "range_match", "start", "end", "address_prefix",
    "prefix_len", "principal_name", "filter", "key", "value", "typed_config", "@type", "path_template",
    "list_match", "one_of", "or_match", "value_matchers", "double_match", "bool_match", "null_match"})
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=False), st.text(max_size=4),
                     st.sampled_from(["", "/", "/a/*", "/{**}/b", "(", ".+", "10.0.0.0", "::1", "GET", "x",
                                      "type.googleapis.com/envoy.extensions.path.match.uri_template.v3."
                                      "UriTemplateMatchConfig"]))
_DATA = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(_KEYS), inner, max_size=3)), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(_DATA, st.booleans())
def test_any_permission_or_principal_compiles_or_is_refused_with_a_path(data, network):
    for compile_ in (compile_permission, compile_principal):
        try:
            pred = compile_(data, "p", network)
        except RbacError as e:
            assert e.path.startswith("p") and e.message
            continue
        assert pred(stream(sans=["spiffe://a"], headers=[("x", "1")])) in (True, False)
