"""runtime/headers.py: a header list, case-insensitive, in order, duplicates kept."""
from mosnx.runtime.headers import Headers


def test_headers_case_insensitive_set_add_remove():
    h = Headers.from_pairs([("A", "1"), ("b", "2"), ("a", "3")])
    assert h.get("a") == "1" and h.get_all("A") == ["1", "3"]
    h.set("A", "x")
    assert h.get_all("a") == ["x"]
    h.add("C", "4")
    assert h.remove("b") == 1 and "b" not in h and "c" in h
    assert h.pairs() == [("a", "x"), ("c", "4")]
