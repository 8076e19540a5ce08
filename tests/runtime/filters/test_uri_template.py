"""runtime/filters/uri_template.py: Envoy's path templates as regexes, and the templates
Envoy refuses."""
from __future__ import annotations

import re

import pytest

from mosnx.runtime.filters.uri_template import template_regex


@pytest.mark.parametrize("template,path", [
    ("/path/template/*", "/path/template/a.b~c"),
    ("/**/path/template", "/a/b/path/template"),
    ("/**/path/template", "//path/template"),
    ("/{a}/b/{c=**}", "/x/b/"),
    ("/v1/{name=shelves/*}/books", "/v1/shelves/s1/books"),
    ("/api/*.json", "/api/a.json"),
    ("/a/", "/a/"),
    ("/*", "/%2F:@!$"),
])
def test_a_template_matches_as_envoys(template, path):
    assert re.fullmatch(template_regex(template), path)


@pytest.mark.parametrize("template,path", [
    ("/path/template/*", "/path/template/"),
    ("/**/path/template", "/path/template"),
    ("/*", "/a/b"),
    ("/*", "/a*"),
    ("/a.b", "/aXb"),
])
def test_a_template_does_not_match_more(template, path):
    assert not re.fullmatch(template_regex(template), path)


@pytest.mark.parametrize("template", ["no-slash", "/**/a/*", "/{a}/{a}", "/{1x}", "/a b", "/{x=}"])
def test_uri_templates_envoy_refuses(template):
    with pytest.raises(ValueError):
        template_regex(template)
