"""proxy/tls.py's one cache of SSL contexts: a context is built once per settings
(listener or cluster, server or client side) and again only when a file it read
changed on disk, and a settings object never holds more than one."""
from __future__ import annotations

import os
import ssl
import sys
from pathlib import Path

import pytest

pytest.importorskip("cryptography")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))

from h2kit import CA  # noqa: E402

from mosnx.proxy import tls as T  # noqa: E402
from mosnx.runtime.config.protocols import ClientTls, ServerTls  # noqa: E402


@pytest.fixture
def ca(tmp_path):
    return CA(tmp_path)


def _touch_later(path: str) -> None:
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def _entries(tls) -> int:
    return sum(1 for key in T._contexts if key[1] == tls)


def test_server_context_is_built_once_per_settings(ca):
    cert, key = ca.issue("proxy.test", ("proxy.test",))
    tls = ServerTls(cert, key)
    ctx = T.server_context(tls)
    assert isinstance(ctx, ssl.SSLContext)
    assert T.server_context(ServerTls(cert, key)) is ctx, "equal settings share the context"


def test_a_certificate_replaced_on_disk_gives_a_new_context(ca):
    cert, key = ca.issue("proxy.test", ("proxy.test",))
    tls = ServerTls(cert, key)
    first = T.server_context(tls)
    _touch_later(cert)
    second = T.server_context(tls)
    assert second is not first
    assert T.server_context(tls) is second
    assert _entries(tls) == 1, "the outdated context is not kept"


def test_client_context_follows_its_ca_file(ca):
    tls = ClientTls(ca=str(ca.path))
    first = T.client_context(tls)
    assert first.verify_mode == ssl.CERT_REQUIRED
    assert T.client_context(tls) is first
    _touch_later(str(ca.path))
    assert T.client_context(tls) is not first
    assert _entries(tls) == 1


def test_server_and_client_contexts_never_answer_for_each_other(ca):
    cert, key = ca.issue("proxy.test", ("proxy.test",))
    server = T.server_context(ServerTls(cert, key))
    client = T.client_context(ClientTls(ca=str(ca.path), cert=cert, key=key))
    assert server is not client
    assert server.protocol == ssl.PROTOCOL_TLS_SERVER and client.protocol == ssl.PROTOCOL_TLS_CLIENT


def test_client_connect_args_offer_h2_to_an_http2_cluster(ca):
    from mosnx.runtime.model import ClusterConfig, Endpoint
    cfg = ClusterConfig(name="web", endpoints=(Endpoint("127.0.0.1", 9),), protocol="http2",
                        options={"tls": ClientTls(ca=str(ca.path))})
    kw = T.client_connect_args(cfg, "127.0.0.1")
    assert kw["server_hostname"] == "127.0.0.1"
    assert kw["ssl"] is T.client_context(ClientTls(ca=str(ca.path), alpn=("h2",)))
