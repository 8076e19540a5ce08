"""rbac_match's filter_state principals under Istio: istiod's AuthorizationPolicies match
`io.istio.peer_principal` (and `io.istio.local_principal`), which Istio's istio_authn
network filter sets from the mTLS handshake; mosnx reads them from the connection's
certificates when no filter set them."""
from __future__ import annotations

import os
import sys

from mosnx.proxy.tls import TlsInfo
from mosnx.runtime.filters.rbac_match import compile_principal

sys.path.insert(0, os.path.dirname(__file__))
from rbac_streams import stream  # noqa: E402

PP = "spiffe://cluster.local/ns/default/sa/bookinfo-productpage"
RV = "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"


def _peer(exact: str, key: str = "io.istio.peer_principal"):
    return compile_principal({"filter_state": {"key": key, "string_match": {"exact": exact}}})


def test_the_peer_principal_is_the_client_certificates_spiffe_id():
    ctx = stream(sans=[PP])
    assert _peer(PP)(ctx) and not _peer(RV)(ctx)
    assert not _peer(PP)(stream())                      # cleartext: no principal


def test_the_local_principal_is_this_sides_certificate():
    ctx = stream()
    ctx.tls = TlsInfo("", True, "", None, (PP,), (), (RV,))
    assert _peer(RV, "io.istio.local_principal")(ctx) and not _peer(PP, "io.istio.local_principal")(ctx)


def test_a_value_a_filter_set_wins_and_other_keys_read_only_filter_state():
    ctx = stream(sans=[PP])
    ctx.state()["io.istio.peer_principal"] = RV
    assert _peer(RV)(ctx) and not _peer(PP)(ctx)
    assert not _peer(PP, "acme.principal")(stream(sans=[PP]))
