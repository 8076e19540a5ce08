"""The request-target normaliser, sans I/O: every traversal a prefix rule must not
miss, RFC 3986's dot-segment examples, each escaped-slash action, each refusal, and
generated targets that may only come back canonical or as a PathError."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings, strategies as st

from mosnx.proxy.codec.path import ESCAPED_SLASHES, PathError, PathNormalizer, PathRedirect
from mosnx.runtime.model import PathNormalization

DEFAULT = PathNormalizer()


def norm(target: str, method: str = "GET", n: PathNormalizer = DEFAULT) -> str:
    out, authority = n.target(method, target)
    assert authority is None
    return out


# every one of these reaches /private/x at an upstream that resolves it
BYPASSES = [
    "//private/x",
    "/./private/x",
    "/x/../private/x",
    "/x/%2e%2e/private/x",
    "/x/%2E%2E/private/x",
    "/x/.%2e/private/x",
    "/%70rivate/x",
    "/%2fprivate/x".replace("%2f", "/"),     # (a plain double slash, spelled another way)
    "/x/y/../../private/x",
    "/../private/x",
    "/./././/private//x",
    "/x\\..\\private\\x",
    "/%2e/private/x",
    "/private/./x",
]


@pytest.mark.parametrize("target", BYPASSES)
def test_every_traversal_lands_on_the_path_the_upstream_would_resolve(target):
    assert norm(target) == "/private/x"


@pytest.mark.parametrize("target", ["/x/..;/private/x", "/x/..;jsessionid=1/private/x", "/.;/private/x",
                                    "/x/%2e%2e;/private/x", "/x/..;"])
def test_a_dot_segment_with_parameters_is_refused(target):
    # Tomcat strips ;parameters and then resolves `..`: /x/..;/private is /private there
    with pytest.raises(PathError) as e:
        norm(target)
    assert (e.value.status, e.value.detail) == (400, "dot_segment_with_parameters")


def test_parameters_on_ordinary_segments_stay():
    assert norm("/a;v=1/b;jsessionid=x?q=1") == "/a;v=1/b;jsessionid=x?q=1"
    assert norm("/a/..x;y/./b") == "/a/..x;y/b"


# RFC 3986 §5.4.1 and §5.4.2 against the base http://a/b/c/d;p?q: each relative-path
# reference appended to the base's directory /b/c/ normalises to the RFC's answer
RFC_EXAMPLES = [
    ("g", "/b/c/g"), ("./g", "/b/c/g"), ("g/", "/b/c/g/"), ("g;x", "/b/c/g;x"),
    (".", "/b/c/"), ("./", "/b/c/"), ("..", "/b/"), ("../", "/b/"), ("../g", "/b/g"),
    ("../..", "/"), ("../../", "/"), ("../../g", "/g"),
    ("../../../g", "/g"), ("../../../../g", "/g"),                   # abnormal: clamped at the root
    ("g.", "/b/c/g."), (".g", "/b/c/.g"), ("g..", "/b/c/g.."), ("..g", "/b/c/..g"),
    ("./../g", "/b/g"), ("./g/.", "/b/c/g/"), ("g/./h", "/b/c/g/h"), ("g/../h", "/b/c/h"),
    ("g;x=1/./y", "/b/c/g;x=1/y"), ("g;x=1/../y", "/b/c/y"),
]


@pytest.mark.parametrize("ref,expected", RFC_EXAMPLES)
def test_rfc3986_dot_segment_examples(ref, expected):
    assert norm("/b/c/" + ref) == expected


@pytest.mark.parametrize("target,expected", [
    ("/a/b/c/./../../g", "/a/g"),                 # §5.2.4's own walk-through
    ("/mid/content=5/../6", "/mid/6"),            # §5.2.4's second, as an absolute path
    ("/..", "/"), ("/.", "/"), ("/../a", "/a"), ("/a/..", "/"), ("/a/.", "/a/"),
    ("/a/%7e%41%2d", "/a/~A-"),                   # unreserved: decoded
    ("/a/%3a%2c%c3%a9", "/a/%3A%2C%C3%A9"),       # reserved and non-ASCII: kept, upper-case hex
    ("/a%252e%252e/b", "/a%252e%252e/b"),         # an escaped '%' is not decoded twice
    ("/a//b///c", "/a/b/c"), ("//", "/"),
])
def test_normal_forms(target, expected):
    assert norm(target) == expected


def test_the_query_is_never_touched():
    assert norm("/a/../b?x=/../%2e//y&z=%41") == "/b?x=/../%2e//y&z=%41"
    assert norm("/a?") == "/a?"
    assert norm("/plain?next=//evil/../x") == "/plain?next=//evil/../x"


def test_canonical_targets_come_back_as_the_same_object():
    for t in ["/", "/api/v1/items?x=1", "/static/app.min.js", "/a;b=c"]:
        assert DEFAULT.target("GET", t)[0] is t


# ---------------------------------------------------------------- escaped slashes
@pytest.mark.parametrize("action,target,expected", [
    ("keep", "/a%2fb%5cc", "/a%2Fb%5Cc"),
    ("unescape_and_forward", "/a%2fb%5cc", "/a/b/c"),
    ("unescape_and_forward", "/x%2F..%2Fprivate", "/private"),
    ("unescape_and_forward", "/a%2F%2Fb", "/a/b"),
    ("reject", "/a/b", "/a/b"),
    ("unescape_and_redirect", "/a/b/../c", "/a/c"),
])
def test_escaped_slash_actions(action, target, expected):
    assert norm(target, n=PathNormalizer(escaped_slashes=action)) == expected


def test_reject_refuses_escaped_slashes_and_backslashes():
    n = PathNormalizer(escaped_slashes="reject")
    for t in ["/a%2Fb", "/a%2fb", "/a%5Cb", "/a%5cb"]:
        with pytest.raises(PathError) as e:
            norm(t, n=n)
        assert (e.value.status, e.value.detail) == (400, "escaped_slash_in_path")
    with pytest.raises(PathError) as e:
        norm("/a\\b", n=n)
    assert e.value.detail == "backslash_in_path"


def test_unescape_and_redirect_sends_the_client_to_the_unescaped_path():
    n = PathNormalizer(escaped_slashes="unescape_and_redirect")
    with pytest.raises(PathRedirect) as e:
        norm("/a%2Fb/./c?q=%2F", n=n)
    assert (e.value.status, e.value.detail, e.value.location) == (307, "path_redirect", "/a/b/c?q=%2F")
    assert norm(e.value.location, n=n) == e.value.location      # the redirect is final


def test_keep_refuses_a_dot_segment_hidden_behind_an_escaped_slash():
    # an upstream that decodes %2F before resolving dots would see /x/../private
    for t in ["/x/..%2Fprivate", "/x%2F..%2Fprivate", "/x%2F../private", "/x/.%5Cprivate", "/x%2f..",
              "/x/%2e%2e%2fprivate"]:
        with pytest.raises(PathError) as e:
            norm(t)
        assert (e.value.status, e.value.detail) == (400, "escaped_slash_dot_segment"), t
    assert norm("/a%2F.hidden/b") == "/a%2F.hidden/b"


# ---------------------------------------------------------------- refusals
@pytest.mark.parametrize("target,detail", [
    ("/a%", "invalid_percent_encoding"), ("/a%2", "invalid_percent_encoding"),
    ("/a%zz", "invalid_percent_encoding"), ("/a%g0/b", "invalid_percent_encoding"),
    ("/a%00b", "encoded_nul_in_path"),
    ("/a\x00b", "invalid_path_character"), ("/a\tb", "invalid_path_character"),
    ("/a\x7fb", "invalid_path_character"), ("/a b", "invalid_path_character"),
    ("/caf\u00e9", "invalid_path_character"), ("/a?q=\x01", "invalid_path_character"),
    ("/a#frag", "path_with_fragment"), ("/a?q#f", "path_with_fragment"),
    ("a/b", "invalid_request_target"), ("", "invalid_request_target"),
    ("ftp://h/a", "invalid_request_target"), ("http:/h/a", "invalid_request_target"),
    ("http:///a", "invalid_request_target"), ("http://h\\h/a", "invalid_request_target"),
    ("http://user:pw@h/a", "userinfo_in_authority"), ("http://@h/a", "userinfo_in_authority"),
])
def test_targets_that_cannot_be_normalised_are_refused(target, detail):
    with pytest.raises(PathError) as e:
        DEFAULT.target("GET", target)
    assert (e.value.status, e.value.detail) == (400, detail)


def test_asterisk_only_for_options_and_authority_only_for_connect():
    assert DEFAULT.target("OPTIONS", "*") == ("*", None)
    assert DEFAULT.target("CONNECT", "example.com:443") == ("example.com:443", None)
    assert DEFAULT.target("CONNECT", "[::1]:8443") == ("[::1]:8443", None)
    for method, target in [("GET", "*"), ("GET", "example.com:443"), ("CONNECT", "example.com"),
                           ("CONNECT", "a@b:443"), ("CONNECT", ":"), ("CONNECT", "h:"), ("CONNECT", ":80"),
                           ("CONNECT", "h:80/x")]:
        with pytest.raises(PathError) as e:
            DEFAULT.target(method, target)
        assert e.value.detail == "invalid_request_target"
    # what a method-dependent form gave is not remembered for another method
    with pytest.raises(PathError):
        DEFAULT.target("GET", "example.com:443")


# ---------------------------------------------------------------- absolute-form
@pytest.mark.parametrize("target,expected", [
    ("http://example.com/private/x", ("/private/x", "example.com")),
    ("HTTP://Example.com:8080/a/../b?q=/../", ("/b?q=/../", "Example.com:8080")),
    ("https://h", ("/", "h")),
    ("http://h?x=1", ("/?x=1", "h")),
    ("http://[::1]:80//private/./x", ("/private/x", "[::1]:80")),
])
def test_absolute_form_becomes_origin_form_with_its_authority(target, expected):
    assert DEFAULT.target("GET", target) == expected


def test_http2_paths_may_not_be_absolute():
    assert DEFAULT.path("GET", "/a/./b") == "/a/b"
    with pytest.raises(PathError) as e:
        DEFAULT.path("GET", "http://h/a")
    assert e.value.detail == "invalid_request_target"


# ---------------------------------------------------------------- settings
def test_normalize_off_leaves_dots_and_escapes_but_still_merges():
    n = PathNormalizer(normalize=False)
    assert norm("/a/./b/../%70//c", n=n) == "/a/./b/../%70/c"
    assert norm("/a\\b", n=n) == "/a\\b"
    n = PathNormalizer(normalize=False, merge_slashes=False)
    assert norm("/a//./b", n=n) == "/a//./b"


def test_merge_slashes_off_keeps_empty_segments():
    n = PathNormalizer(merge_slashes=False)
    assert norm("/a//b/./c", n=n) == "/a//b/c"
    assert norm("/a//../b", n=n) == "/a/b"          # RFC: `..` removes the empty segment


def test_equal_settings_share_one_normaliser():
    a = PathNormalizer.of(PathNormalization())
    assert a is PathNormalizer.of(None) is PathNormalizer.of(PathNormalization(True, True, "keep"))
    b = PathNormalizer.of(PathNormalization(escaped_slashes="reject"))
    assert b is not a and b.escaped_slashes == "reject"


def test_an_unknown_action_is_refused_where_it_is_made():
    with pytest.raises(ValueError):
        PathNormalizer(escaped_slashes="drop")
    with pytest.raises(ValueError):
        PathNormalization(escaped_slashes="drop")


# ---------------------------------------------------------------- generated targets
ALL_SETTINGS = [PathNormalizer(n, m, a) for n, m, a in itertools.product((True, False), (True, False),
                                                                         ESCAPED_SLASHES)]
# the characters that matter to a normaliser, and a few that must be refused
PIECES = st.sampled_from(["/", "/", ".", "..", "%", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "%25",
                          "%70", "%41", "%00", "%zz", "%", "2", "f", ";", "\\", "?", "#", "a", "b",
                          "~", "-", " ", "\t", "\x00", "\u00e9", "@", ":", "http://h", "*"])
TARGETS = st.lists(PIECES, max_size=24).map("".join)


def _canonical_path(out: str, n: PathNormalizer) -> None:
    path = out.split("?", 1)[0]
    assert path.startswith("/")
    if n.normalize:
        segs = path.split("/")[1:]
        assert "." not in segs and ".." not in segs, out
        assert "\\" not in path
    if n.merge_slashes:
        assert "//" not in path, out


@settings(max_examples=400, deadline=None)
@given(target=TARGETS, which=st.integers(0, len(ALL_SETTINGS) - 1),
       method=st.sampled_from(["GET", "OPTIONS", "CONNECT"]))
def test_generated_targets_come_back_canonical_or_refused(target, which, method):
    n = ALL_SETTINGS[which]
    try:
        out, _ = n.target(method, target)
    except PathRedirect as e:
        # the redirect's target is itself final
        assert n.target(method, e.location) == (e.location, None)
        return
    except PathError as e:
        assert e.status == 400 and e.detail
        return
    if out == "*":
        assert method == "OPTIONS"
        return
    if method == "CONNECT" and not target.startswith("/") and "://" not in target:
        host, _, port = out.rpartition(":")         # authority-form, as sent
        assert out == target and host and port.isdigit()
        return
    _canonical_path(out, n)
    assert n.target(method, out) == (out, None)           # idempotent
    if target.startswith("/"):
        assert out.partition("?")[1:] == target.partition("?")[1:]     # the query, untouched


@settings(max_examples=300, deadline=None)
@given(path=st.text(max_size=40))
def test_any_text_gives_a_target_or_a_path_error(path):
    for t in (path, "/" + path):
        try:
            out, _ = DEFAULT.target("GET", t)
        except PathError:
            continue
        assert DEFAULT.target("GET", out) == (out, None)
