"""runtime/model.py: the validated configuration is frozen dataclasses whose
constructors reject what cannot be served, and secrets stay out of their reprs."""
from __future__ import annotations

import dataclasses

import pytest

from mosnx.runtime.model import (AdminConfig, AdminToken, ClusterConfig, Endpoint, Limits, ListenerConfig,
                                 PathNormalization)


def test_an_endpoint_checks_its_port_and_weight():
    assert Endpoint("10.0.0.1", 80).address == "10.0.0.1:80"
    assert Endpoint("::1", 8080, weight=3).address == "[::1]:8080"
    for port in (0, 65536, -1):
        with pytest.raises(ValueError, match="outside 1..65535"):
            Endpoint("h", port)
    with pytest.raises(ValueError, match="weight"):
        Endpoint("h", 80, weight=0)


def test_path_normalization_knows_its_escaped_slash_actions():
    assert PathNormalization().escaped_slashes == "keep"
    for action in ("keep", "reject", "unescape_and_redirect", "unescape_and_forward"):
        assert PathNormalization(escaped_slashes=action).escaped_slashes == action
    with pytest.raises(ValueError, match="escaped_slashes: expected one of keep, reject"):
        PathNormalization(escaped_slashes="drop")


def test_config_values_are_frozen():
    lc = ListenerConfig("l", "127.0.0.1", 8080)
    with pytest.raises(dataclasses.FrozenInstanceError):
        lc.port = 9090
    c = ClusterConfig("api", (Endpoint("127.0.0.1", 9000),))
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lb = "random"
    assert c.lb == "round_robin" and c.protocol == "http1" and c.circuit_breakers.max_retries == 3


def test_write_watermarks_default_low_below_high():
    limits = Limits()
    assert limits.write_low_water < limits.write_high_water
    assert limits.request_headers == 60 * 1024 and limits.request_headers_count == 100


def test_the_admin_token_never_shows_in_a_repr():
    token = AdminToken("/etc/mosnx/token", b"s3cret-value")
    admin = AdminConfig(token=token)
    assert "s3cret" not in repr(token) and "s3cret" not in repr(admin)
    assert "/etc/mosnx/token" in repr(token)
    assert admin.host == "127.0.0.1" and admin.port == 15000


def test_an_xds_stream_on_a_unix_socket_needs_no_port_but_a_path():
    from mosnx.runtime.model import XdsConfig
    assert XdsConfig("", 0, unix_path="/tmp/XDS").unix_path == "/tmp/XDS"
    with pytest.raises(ValueError, match="Unix socket path"):
        XdsConfig("", 0, unix_path="")
    with pytest.raises(ValueError, match="port 0"):
        XdsConfig("", 0)
