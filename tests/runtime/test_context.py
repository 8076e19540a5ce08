"""runtime/context.py: a stream's request facts, derived lazily and reset when rewritten."""
from mosnx.runtime.context import RequestHead, StreamContext
from mosnx.runtime.headers import Headers


def test_set_path_resets_derived_facts():
    c = StreamContext(RequestHead("POST", "/v1/items/7?debug=1&q=", Headers.from_pairs([("Host", "h")])))
    assert c.query == {"debug": "1", "q": ""}
    assert c.url_path == "/v1/items/7"
    c.set_path("/other?x=2")
    assert c.url_path == "/other" and c.query == {"x": "2"}
