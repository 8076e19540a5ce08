"""proxy/tls.py: listener and cluster TLS contexts, driven through in-memory handshakes
(no sockets): the certificate SNI picks (exact names before wildcards), what a
handshake tells the stream (server name, client certificate, its subject and SANs, ALPN),
contexts reused until a file changes, and a cluster's connect arguments."""
from __future__ import annotations

import os
import ssl
import sys
from types import SimpleNamespace

import pytest

from mosnx.proxy import tls
from mosnx.runtime.config.protocols import ClientTls, Pem, ServerTls, SniCertificate

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "e2e"))
from h2kit import CA  # noqa: E402


@pytest.fixture
def ca(tmp_path):
    return CA(tmp_path)


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, name: str | None):
    """Both ends of one TLS handshake over memory buffers: (server, client) SSLObjects."""
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=name)
    done = {"s": False, "c": False}
    for _ in range(20):
        for key, obj in (("c", client), ("s", server)):
            if not done[key]:
                try:
                    obj.do_handshake()
                    done[key] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return server, client
    raise AssertionError("handshake did not finish")


def peer_cn(client: ssl.SSLObject) -> str:
    return dict(x[0] for x in client.getpeercert()["subject"])["commonName"]


def test_sni_picks_the_exact_certificate_before_the_wildcard(ca):
    default = ca.issue("default.test")
    wild = ca.issue("*.api.test", dns=("*.api.test",))
    exact = ca.issue("pay.api.test")
    server = tls.build_server_context(ServerTls(*default, sni=(
        SniCertificate(("*.api.test",), *wild), SniCertificate(("pay.api.test",), *exact))))
    client = ca.client_context(alpn=("http/1.1",))
    for name, cn in (("pay.api.test", "pay.api.test"), ("shop.api.test", "*.api.test"),
                     ("Shop.API.test", "*.api.test"), ("default.test", "default.test")):
        _, c = handshake(server, client, name)
        assert peer_cn(c) == cn, name
    # a wildcard covers one label only
    client.check_hostname = False
    _, c = handshake(server, client, "a.b.api.test")
    assert peer_cn(c) == "default.test"


def test_a_handshake_tells_the_stream_its_name_client_and_protocol(ca):
    cert, key = ca.issue("proxy.test")
    server = tls.build_server_context(ServerTls(cert, key, alpn=("h2", "http/1.1"), client_ca=str(ca.path),
                                                require_client_cert=True))
    client = ca.client_context(alpn=("h2",), cert=ca.issue("svc-a", client=True, org="Shop"))
    s, _ = handshake(server, client, "Proxy.Test")
    info = tls.info_from(SimpleNamespace(get_extra_info=lambda k: s if k == "ssl_object" else None))
    assert (info.sni, info.mtls, info.subject, info.alpn) == ("proxy.test", True, "CN=svc-a,O=Shop", "h2")
    plain = tls.info_from(SimpleNamespace(get_extra_info=lambda k: None), sni="from.hello")
    assert (plain.sni, plain.mtls, plain.subject, plain.alpn) == ("from.hello", False, "", None)


def test_a_required_client_certificate_is_required(ca):
    cert, key = ca.issue("proxy.test")
    server = tls.build_server_context(ServerTls(cert, key, client_ca=str(ca.path), require_client_cert=True))
    with pytest.raises(ssl.SSLError):
        s, c = handshake(server, ca.client_context(), "proxy.test")
        c.write(b"x")                       # TLS 1.3 reports the refusal on the first read or write
        s.read()


def test_contexts_are_reused_until_a_file_changes(ca):
    cert, key = ca.issue("proxy.test")
    settings = ServerTls(cert, key)
    first = tls.server_context(settings)
    assert tls.server_context(settings) is first
    st = os.stat(cert)
    os.utime(cert, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))   # the certificate is replaced
    second = tls.server_context(settings)
    assert second is not first and tls.server_context(settings) is second
    client = ClientTls(ca=str(ca.path))
    assert tls.client_context(client) is tls.client_context(client)


def test_a_clusters_connect_arguments(ca):
    plain = SimpleNamespace(options={}, protocol="http1")
    assert tls.client_connect_args(plain, "10.0.0.1") == {}
    h1 = SimpleNamespace(options={"tls": ClientTls(ca=str(ca.path))}, protocol="http1")
    args = tls.client_connect_args(h1, "api.internal")
    assert args["server_hostname"] == "api.internal" and args["ssl"].verify_mode == ssl.CERT_REQUIRED
    named = SimpleNamespace(options={"tls": ClientTls(ca=str(ca.path), sni="grpc.internal")}, protocol="http2")
    args = tls.client_connect_args(named, "10.0.0.1")
    assert args["server_hostname"] == "grpc.internal"
    # an HTTP/2 cluster that names no protocol offers h2, so the endpoint knows what is spoken
    server = tls.build_server_context(ServerTls(*ca.issue("grpc.internal"), alpn=("h2", "http/1.1")))
    _, c = handshake(server, args["ssl"], "grpc.internal")
    assert c.selected_alpn_protocol() == "h2"
    unverified = tls.build_client_context(ClientTls(verify=False))
    assert unverified.verify_mode == ssl.CERT_NONE and not unverified.check_hostname


def test_a_client_certificate_names_its_principal_by_uri_san(ca):
    cert, key = ca.issue("proxy.test")
    server = tls.build_server_context(ServerTls(cert, key, client_ca=str(ca.path), require_client_cert=True))
    spiffe = "spiffe://cluster.local/ns/foo/sa/sleep"
    client = ca.client_context(alpn=("http/1.1",), cert=ca.issue("sleep", client=True, uris=(spiffe,),
                                                                 dns=("sleep.foo",)))
    s, _ = handshake(server, client, "proxy.test")
    info = tls.info_from(SimpleNamespace(get_extra_info=lambda k: s if k == "ssl_object" else None))
    assert (info.uri_sans, info.dns_sans, info.subject) == ((spiffe,), ("sleep.foo",), "CN=sleep")
    anonymous = tls.info_from(SimpleNamespace(get_extra_info=lambda k: None))
    assert (anonymous.uri_sans, anonymous.dns_sans) == ((), ())


def test_both_ends_know_the_spiffe_id_each_presented(ca):
    """Istio's principals: the server side reads the client's URI SAN and its own; the
    client side (upstream_info) the server's and its own. Material in memory, as from SDS."""
    from pemkit import PemCA
    mesh = PemCA()
    pp, rv = "spiffe://cluster.local/ns/default/sa/productpage", "spiffe://cluster.local/ns/default/sa/reviews"
    root = Pem(mesh.pem, "ROOTCA")
    server = tls.build_server_context(ServerTls(*(Pem(b, "default") for b in mesh.issue("reviews", uris=(rv,))),
                                                client_ca=root, require_client_cert=True))
    cert, key = (Pem(b, "default") for b in mesh.issue("productpage", uris=(pp,)))
    client = tls.build_client_context(ClientTls(ca=root, verify_hostname=False, cert=cert, key=key))
    s, c = handshake(server, client, "reviews")
    down = tls.info_from(SimpleNamespace(get_extra_info=lambda k: s if k == "ssl_object" else None))
    assert (down.uri_sans, down.local_uri_sans) == ((pp,), (rv,))
    up = tls.upstream_info(SimpleNamespace(get_extra_info=lambda k: c if k == "ssl_object" else None))
    assert up is not None and (up.uri_sans, up.local_uri_sans) == ((rv,), (pp,))
    assert tls.upstream_info(SimpleNamespace(get_extra_info=lambda k: None)) is None       # cleartext
    assert tls.local_uri_sans(str(ca.path)) == ()              # the CA names no workload
    assert tls.local_uri_sans(Pem(b"not PEM")) == ()


def test_istio_alpn_rewrites_what_an_istio_peer_is_offered(ca):
    overrides = {"HTTP10": ("istio-http/1.0", "istio", "http/1.0"), "HTTP11": ("istio-http/1.1", "istio", "http/1.1"),
                 "HTTP2": ("istio-h2", "istio", "h2")}
    h1 = SimpleNamespace(protocol="http1", options={})
    h2 = SimpleNamespace(protocol="http2", options={})
    assert tls.istio_alpn({"istio_alpn": overrides}, h1, "HTTP/1.1") == overrides["HTTP11"]
    assert tls.istio_alpn({"istio_alpn": overrides}, h1, "HTTP/1.0") == overrides["HTTP10"]
    assert tls.istio_alpn({"istio_alpn": overrides}, h2, "HTTP/1.1") == overrides["HTTP2"]
    assert tls.istio_alpn({}, h1, "HTTP/1.1") is None
    server = tls.build_server_context(ServerTls(*ca.issue("reviews"), alpn=("h2", "http/1.1")))
    mesh = SimpleNamespace(protocol="http1", options={"tls": ClientTls(
        ca=str(ca.path), verify_hostname=False, alpn=("istio-peer-exchange", "istio"))})
    # an Istio mTLS peer (its transport socket offers "istio") is offered the override ...
    args = tls.client_connect_args(mesh, "reviews", None, overrides["HTTP11"])
    _, c = handshake(server, args["ssl"], "reviews")
    assert c.selected_alpn_protocol() == "http/1.1"
    # ... and without one, what the cluster names (no protocol in common here)
    _, c = handshake(server, tls.client_connect_args(mesh, "reviews")["ssl"], "reviews")
    assert c.selected_alpn_protocol() is None
    # TLS that is not Istio's keeps its own protocols
    other = SimpleNamespace(protocol="http1", options={"tls": ClientTls(ca=str(ca.path), verify_hostname=False,
                                                                         alpn=("http/1.1",))})
    args = tls.client_connect_args(other, "reviews", None, ("istio-http/1.1",))
    _, c = handshake(server, args["ssl"], "reviews")
    assert c.selected_alpn_protocol() == "http/1.1"
