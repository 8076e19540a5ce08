"""proxy_get_property paths and the encodings Envoy gives values."""
from __future__ import annotations

import struct

from mosnx.runtime import Headers, RequestHead, ResponseHead, StreamContext
from mosnx.wasm import properties
from mosnx.wasm.config import PluginConfig

PLUGIN = PluginConfig(name="authz", module_path="/x.wasm", root_id="root", vm_id="vm")


def ctx():
    c = StreamContext(RequestHead("POST", "/p?x=1", Headers.from_pairs([("host", "h"), ("x-a", "1")])),
                      source=("10.0.0.1", 1234), destination=("127.0.0.1", 8080))
    return c


def get(path: bytes, c=None, overrides=None):
    return properties.get(path, c, PLUGIN, overrides or {})


def test_request_facts_from_the_attribute_table():
    c = ctx()
    assert get(b"request\0path", c) == b"/p?x=1"
    assert get(b"request\0url_path", c) == b"/p"
    assert get(b"request\0method", c) == b"POST"
    assert get(b"request\0host", c) == b"h"
    assert get(b"request.path", c) == b"/p?x=1"        # a dotted single segment works too


def test_envoy_encodings():
    c = ctx()
    assert get(b"source\0address", c) == b"10.0.0.1:1234"
    assert get(b"destination\0port", c) == struct.pack("<q", 8080)
    assert get(b"response\0code", c) is None            # no response yet
    c.response = ResponseHead(404, Headers())
    assert get(b"response\0code", c) == struct.pack("<q", 404)
    assert len(get(b"request\0time", c)) == 8


def test_headers_by_key_and_whole_map():
    c = ctx()
    assert get(b"request\0headers\0x-a", c) == b"1"
    assert get(b"request\0headers\0missing", c) is None
    whole = get(b"request\0headers", c)
    assert b":path" in whole and b"x-a" in whole


def test_plugin_facts_are_known_without_a_stream():
    assert get(b"plugin_name") == b"authz"
    assert get(b"plugin_root_id") == b"root"
    assert get(b"plugin_vm_id") == b"vm"
    assert get(b"request\0path") is None


def test_unknown_paths_are_not_found():
    assert get(b"no\0such\0thing", ctx()) is None
    assert get(b"\xff\xfe", ctx()) is None


def test_set_property_values_win():
    assert get(b"my\0prop", ctx(), {b"my\0prop": b"v"}) == b"v"
