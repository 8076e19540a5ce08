"""The supervisor's side of xDS: the file's config is read again only when it changed,
and the resources go to a worker process by a private file, one per content, removed
when the proxy stops. No stream is opened here (start() is never called)."""
from __future__ import annotations

import os
import pickle
import stat

from mosnx.proxy.xds.control import XdsControl
from mosnx.runtime.model import XdsConfig
from mosnx.runtime.stats import Store


async def _never(why: str) -> None:
    raise AssertionError("no reload expected")


def control(tmp_path) -> XdsControl:
    cfg = tmp_path / "mosnx.yaml"
    cfg.write_text("xds: {address: 127.0.0.1:18000}\n")
    return XdsControl(str(cfg), XdsConfig("127.0.0.1", 18000), Store(), _never, lambda: 2)


def test_the_file_is_read_again_only_when_it_changed(tmp_path):
    c = control(tmp_path)
    first = c.file_config()
    assert c.file_config() is first
    (tmp_path / "mosnx.yaml").write_text("xds: {address: 127.0.0.1:18001}\n")
    assert c.file_config() is not first and c.file_config().xds.port == 18001


def test_resources_go_by_a_private_file_one_per_content(tmp_path):
    c = control(tmp_path)
    payload = {"type.googleapis.com/envoy.config.cluster.v3.Cluster": {"a": b"\x0a\x01a"}}
    path = c.spill(payload)
    assert c.spill(payload) == path                       # the same content: the same file
    assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
    with open(path, "rb") as f:
        assert pickle.load(f) == payload
    other = c.spill({})
    assert other != path and not os.path.exists(path)     # the next payload replaces it
    c.release()
    assert not os.path.exists(os.path.dirname(other))


def test_the_stream_targets_a_unix_socket_when_the_config_names_one():
    from mosnx.proxy.xds.control import target
    assert target(XdsConfig("127.0.0.1", 18000)) == "127.0.0.1:18000"
    assert target(XdsConfig("", 0, unix_path="/tmp/XDS")) == "unix:/tmp/XDS"
