"""runtime/attributes.py: one table of attribute names (Envoy/Istio vocabulary) that
rules, access logs and proxy_get_property paths all resolve through."""
import pytest

from mosnx.runtime import attributes
from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.headers import Headers


def make_ctx():
    h = Headers.from_pairs([("Host", "shop.example.com"), ("X-Api-Key", "k1"),
                            ("Cookie", "beta=yes; theme=dark"), ("cookie", "other=1")])
    c = StreamContext(RequestHead("POST", "/v1/items/7?debug=1&q=", h), listener="ingress",
                      source=("10.1.2.3", 4444), destination=("127.0.0.1", 8080))
    return c


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


def test_the_peer_principal_is_its_certificates_first_uri_san():
    from types import SimpleNamespace
    c = make_ctx()
    g = attributes.getter
    assert g("source.principal")(c) == "" and g("connection.uri_san_peer_certificate")(c) == ""
    c.tls = SimpleNamespace(sni="", mtls=True, subject="CN=a", uri_sans=("spiffe://td/ns/a/sa/b", "spiffe://x"),
                            dns_sans=("a.svc",))
    assert g("source.principal")(c) == "spiffe://td/ns/a/sa/b"
    assert g("connection.uri_san_peer_certificate")(c) == "spiffe://td/ns/a/sa/b"
    assert g("connection.dns_san_peer_certificate")(c) == "a.svc"
