"""Secrets (runtime/envoy/secrets.py): SDS secrets hold a cluster or a listener back
until they come (warming, no Rejection), a rotated one is translated again, a bad
one is refused by name, a bootstrap's static secrets serve its static listeners,
and what /config_dump shows of a bootstrap has its private keys redacted."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("cryptography")

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "e2e"))
from tls_samples import (DOWN, SDS_ADS, SPIFFE, _b64, _base, _cluster, _downstream, _istio_upstream,  # noqa: E402
                         _listener, _secret_cert)
from envoy_samples import C, L, msg  # noqa: E402
from pemkit import PemCA  # noqa: E402

from mosnx.runtime.config.protocols import Pem, SanMatcher  # noqa: E402
from mosnx.runtime.envoy.apply import Translations, apply, needed_names  # noqa: E402
from mosnx.runtime.envoy.bootstrap import load_bootstrap_text  # noqa: E402
from mosnx.runtime.envoy.findings import Sink  # noqa: E402
from mosnx.runtime.envoy.protos import SECRET as S  # noqa: E402
from mosnx.runtime.envoy.secrets import redact_document  # noqa: E402

@pytest.fixture(scope="module")
def ca() -> PemCA:
    return PemCA()


def test_a_cluster_waits_for_its_secrets_and_serves_once_they_come(ca):
    resources = {C: {"reviews": msg(C, _cluster(transport_socket=_istio_upstream()))}}
    assert needed_names(resources)[S] == {"default", "ROOTCA"}
    sink = Sink()
    config, rejected = apply(_base(), resources, sink)
    assert not rejected and [c.name for c in config.clusters] == ["web"]
    assert [w.message for w in sink.waiting] == ['Secret "default" has not been received']
    resources[S] = {"default": msg(S, _secret_cert(ca)),
                    "ROOTCA": msg(S, {"name": "ROOTCA", "validation_context": {
                        "trusted_ca": {"inline_bytes": _b64(ca.pem)}}})}
    cache = Translations()
    base = _base()
    config, rejected = apply(base, resources, Sink(), cache)
    assert not rejected
    tls = next(c for c in config.clusters if c.name == "reviews").options["tls"]
    assert isinstance(tls.ca, Pem) and tls.ca.data == ca.pem and tls.ca.source == "ROOTCA"
    assert tls.san == (SanMatcher("URI", "exact", SPIFFE),) and tls.key.source == "default"
    # a rotated certificate: the cluster is translated again, with the new material
    first = tls
    resources[S] = dict(resources[S], default=msg(S, _secret_cert(ca, serial=77)))
    config, _ = apply(base, resources, Sink(), cache)
    again = next(c for c in config.clusters if c.name == "reviews").options["tls"]
    assert again.cert != first.cert and again.ca == first.ca
    # nothing changed: the translation is the one kept
    config2, _ = apply(base, resources, Sink(), cache)
    assert next(c for c in config2.clusters if c.name == "reviews").options["tls"] is again


def test_a_listener_waits_for_its_secret(ca):
    ts = _downstream(ca, common={"tls_certificates": [], "tls_certificate_sds_secret_configs": [
        {"name": "server-cert", "sds_config": SDS_ADS}]})
    resources = {L: {"in": msg(L, _listener(ts))}}
    assert needed_names(resources)[S] == {"server-cert"}
    sink = Sink()
    config, rejected = apply(_base(), resources, sink)
    assert not rejected and not config.listeners and sink.waiting[0].name == "in"
    resources[S] = {"server-cert": msg(S, _secret_cert(ca, "server-cert"))}
    config, rejected = apply(_base(), resources, Sink())
    assert not rejected and isinstance(config.listeners[0].options["tls"].cert, Pem)


def test_a_bad_secret_is_rejected_by_name(ca):
    bad = {"name": "default", "tls_certificate": {"certificate_chain": {"inline_string": "junk"},
                                                  "private_key": {"inline_string": "junk"}}}
    resources = {S: {"default": msg(S, bad)}, C: {"reviews": msg(C, _cluster(transport_socket=_istio_upstream()))}}
    _, rejected = apply(_base(), resources, Sink())
    names = {(r.type_url, r.name) for r in rejected}
    assert (S, "default") in names and (C, "reviews") in names
    generic = {"name": "g", "generic_secret": {"secret": {"inline_string": "x"}}}
    _, rejected = apply(_base(), {S: {"g": msg(S, generic)}}, Sink())
    assert "only tls_certificate and validation_context" in rejected[0].message


def test_a_bootstrap_static_secret_serves_a_static_listener(ca, tmp_path):
    import json
    cert, key = ca.issue("edge", dns=("edge.test",))
    boot = {
        "static_resources": {
            "secrets": [{"name": "edge-cert", "tls_certificate": {
                "certificate_chain": {"inline_string": cert.decode()},
                "private_key": {"inline_string": key.decode()}}}],
            "listeners": [_listener({"name": "envoy.transport_sockets.tls", "typed_config": {
                "@type": DOWN, "common_tls_context": {
                    "tls_certificate_sds_secret_configs": [{"name": "edge-cert"}]}}})],
        }}
    config, warnings = load_bootstrap_text(json.dumps(boot), str(tmp_path / "boot.json"))
    tls = config.listeners[0].options["tls"]
    assert isinstance(tls.cert, Pem) and tls.cert.source == "edge-cert" and not tls.client_ca
    # what /config_dump shows of the bootstrap has the key redacted, the certificate not
    shown = json.dumps(config.raw)
    assert "PRIVATE KEY" not in shown and "[redacted]" in shown and "BEGIN CERTIFICATE" in shown
    boot["static_resources"]["secrets"] = []
    from mosnx.runtime.diagnostics import ConfigError
    with pytest.raises(ConfigError) as e:
        load_bootstrap_text(json.dumps(boot), str(tmp_path / "boot.json"))
    assert 'no static secret "edge-cert"' in str(e.value)


def test_redact_document_hides_sensitive_fields_only():
    doc = {"static_resources": {"secrets": [{"name": "s", "tls_certificate": {
        "certificate_chain": {"inline_string": "CERT"}, "private_key": {"inline_string": "KEY"},
        "password": {"inline_bytes": "UFc="}}}, {"name": "g", "generic_secret": {"secret": {"inline_string": "G"}}}]}}
    out = redact_document(doc)
    cert = out["static_resources"]["secrets"][0]["tls_certificate"]
    assert cert["certificate_chain"] == {"inline_string": "CERT"}
    assert cert["private_key"] == {"inline_string": "[redacted]"} and cert["password"] == {"inline_bytes": "[redacted]"}
    assert out["static_resources"]["secrets"][1]["generic_secret"]["secret"] == {"inline_string": "[redacted]"}
    assert doc["static_resources"]["secrets"][0]["tls_certificate"]["private_key"]["inline_string"] == "KEY"


def test_a_secret_from_files_keeps_the_paths():
    s = msg(S, {"name": "files", "tls_certificate": {"certificate_chain": {"filename": "/etc/certs/cert-chain.pem"},
                                                     "private_key": {"filename": "/etc/certs/key.pem"}}})
    from mosnx.runtime.envoy.findings import Findings
    from mosnx.runtime.envoy.secrets import CertificateSecret, translate_secret
    assert translate_secret(s, Findings(S, "files")) == CertificateSecret("/etc/certs/cert-chain.pem",
                                                                          "/etc/certs/key.pem")
