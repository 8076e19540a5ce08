"""Reading the first well-formed format in the configured order, counting the
malformed, and writing every configured format with the proxy's spans as parents."""
from __future__ import annotations

import base64

from mosnx.runtime.headers import Headers
from mosnx.runtime.tracing import propagation, sw8

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
PID = "00f067aa0ba902b7"
ALL = ("w3c", "b3", "sw8")


def h(*pairs: tuple[str, str]) -> Headers:
    return Headers.from_pairs(pairs)


def test_nothing_present() -> None:
    assert propagation.read(h(("host", "a")), ALL) == (None, [])


def test_w3c_with_tracestate() -> None:
    p, bad = propagation.read(h(("traceparent", f"00-{TID}-{PID}-01"), ("tracestate", "k=v")), ALL)
    assert bad == [] and p is not None
    assert (p.fmt, f"{p.trace_id:032x}", f"{p.span_id:016x}", p.sampled, p.tracestate) == (
        "w3c", TID, PID, True, (("k", "v"),))


def test_first_present_in_configured_order() -> None:
    b3 = f"{'1' * 32}-{'2' * 16}-0"
    both = h(("traceparent", f"00-{TID}-{PID}-01"), ("b3", b3))
    assert propagation.read(both, ALL)[0].fmt == "w3c"          # type: ignore[union-attr]
    p = propagation.read(both, ("b3", "w3c"))[0]
    assert p is not None and p.fmt == "b3" and p.trace_id == int("1" * 32, 16) and p.sampled is False


def test_malformed_is_reported_and_the_next_format_read() -> None:
    p, bad = propagation.read(h(("traceparent", "00-zz-yy-01"), ("x-b3-traceid", TID), ("x-b3-spanid", PID)), ALL)
    assert bad == ["w3c"]
    assert p is not None and p.fmt == "b3" and f"{p.trace_id:032x}" == TID


def test_duplicated_traceparent_is_malformed() -> None:
    p, bad = propagation.read(h(("traceparent", f"00-{TID}-{PID}-01"), ("traceparent", f"00-{TID}-{PID}-01")), ALL)
    assert p is None and bad == ["w3c"]


def test_formats_not_configured_are_not_read() -> None:
    assert propagation.read(h(("b3", f"{TID}-{PID}-1")), ("w3c",)) == (None, [])


def test_sw8_maps_its_ids() -> None:
    s = sw8.Sw8(True, "abc.1.2", "seg.3", 2, "svc", "inst", "/e", "10.0.0.1:80")
    p, _ = propagation.read(h(("sw8", sw8.format_sw8(s))), ALL)
    assert p is not None and p.fmt == "sw8" and p.sw == s and p.sampled is True
    assert p.trace_id == propagation.sw_trace_id("abc.1.2") != 0
    assert p.span_id == propagation.sw_span_id("seg.3", 2)
    # a SkyWalking id in the proxy's own spelling is the W3C id itself
    assert propagation.sw_trace_id(TID) == int(TID, 16)


def test_write_replaces_every_configured_format() -> None:
    hd = h(("traceparent", "old"), ("x-b3-sampled", "1"), ("sw8", "old"), ("baggage", "k=v"),
           ("sw8-correlation", "a:b"), ("host", "x"))
    sw = sw8.Sw8(True, TID, "seg", 1, "mosnx", "i", "/p", "up:80")
    propagation.write(hd, ALL, int(TID, 16), 0x1111, 0x2222, True, (("k", "v"),), sw)
    assert hd.get_all("traceparent") == [f"00-{TID}-0000000000001111-01"]
    assert hd.get("tracestate") == "k=v"
    assert hd.get("b3") == f"{TID}-0000000000001111-1-0000000000002222"
    assert hd.get("x-b3-traceid") == TID and hd.get("x-b3-spanid") == "0000000000001111"
    assert hd.get("x-b3-parentspanid") == "0000000000002222" and hd.get_all("x-b3-sampled") == ["1"]
    assert sw8.parse_sw8(hd.get("sw8") or "") == sw
    # passed through untouched
    assert hd.get("baggage") == "k=v" and hd.get("sw8-correlation") == "a:b" and hd.get("host") == "x"


def test_write_only_configured_formats() -> None:
    hd = h(("b3", "keep-me"))
    propagation.write(hd, ("w3c",), 1, 2, 3, False, (), None)
    assert hd.get("b3") == "keep-me" and hd.get("traceparent") == f"00-{1:032x}-{2:016x}-00"


def test_sw8_correlation_example_passes_through() -> None:
    # x-process-correlation-headers-v1: base64(key):base64(value) pairs
    corr = ",".join(f"{base64.b64encode(k.encode()).decode()}:{base64.b64encode(v.encode()).decode()}"
                    for k, v in (("key", "value"), ("key2", "value2")))
    hd = h(("sw8-correlation", corr))
    propagation.write(hd, ALL, 1, 2, 3, True, (), sw8.Sw8(True, "t", "s", 1, "a", "b", "c", "d"))
    assert hd.get("sw8-correlation") == corr


from hypothesis import given, settings, strategies as st  # noqa: E402

_NAMES = ["traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
          "x-b3-sampled", "x-b3-flags", "sw8"]
_PIECES = st.sampled_from(["00", "ff", "-", TID, PID, "01", "=", ",", "@", "1", "d", "==", "dGVzdA==", " ", "\t",
                           "zz", "0" * 16])
_VALUE = st.one_of(st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=80),
                   st.lists(_PIECES, max_size=12).map("".join))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_NAMES), _VALUE), max_size=6), st.permutations(ALL))
def test_any_header_values_read_without_raising(pairs: list[tuple[str, str]], order: list[str]) -> None:
    hd = Headers([(k.encode(), v.encode("latin-1")) for k, v in pairs])
    p, bad = propagation.read(hd, tuple(order))
    assert set(bad) <= set(ALL)
    if p is not None:
        assert p.fmt in ALL and p.trace_id >= 0 and p.span_id >= 0
        assert len(p.tracestate) <= 32


# -- fresh contexts drawn ahead (Fresh's pool) --

import os  # noqa: E402

import pytest  # noqa: E402


@pytest.mark.parametrize("formats, sampled", [(("w3c",), False), (("b3",), False), (("w3c", "b3"), False),
                                              (("b3", "w3c"), False), (("w3c",), True)])
def test_a_pool_of_fresh_contexts_is_what_write_writes(formats: tuple[str, ...], sampled: bool) -> None:
    fresh = propagation.Fresh.of(formats, "", sampled)
    assert fresh is not None and fresh.pool == []
    drawn = [fresh.refill(), *fresh.pool]
    assert len(drawn) == propagation.POOL == len(set(drawn))
    for wire in drawn:
        tid = int(wire[fresh.trace_at:fresh.trace_at + 32], 16)
        sid = int(wire[fresh.span_at:fresh.span_at + 16], 16)
        general = h()
        propagation.write(general, formats, tid, sid, 0, sampled, (), None, True)
        assert wire == b"".join(k + b": " + v + b"\r\n" for k, v in general.items)
        # the header values stand where the slices say, and read back as the fields
        assert [wire[s] for s in fresh.slices] == [v for _, v in general.items]
        assert propagation.fields_of(wire) == general.items
    # the ids are random digits, not a pattern: a batch uses every hex digit at each place
    assert all(len({w[fresh.trace_at + i] for w in drawn}) > 8 for i in range(32))
    assert all(len({w[fresh.span_at + i] for w in drawn}) > 8 for i in range(16))
    # and a refill draws new ones
    fresh.pool.clear()
    assert not set(drawn) & {fresh.refill(), *fresh.pool}


def test_a_sampled_pool_is_w3c_alone() -> None:
    # B3 names the parent of the span it carries (the server span), sw8 the path and peer
    for formats in (("w3c", "sw8"), ("b3",), ("w3c", "b3")):
        assert propagation.Fresh.of(formats, "c2hvcA==-aS0x-", True) is None
    unsampled = propagation.Fresh.of(("w3c", "sw8"), "c2hvcA==-aS0x-")
    assert unsampled is not None and unsampled.pool is None       # its sw8 names the path and peer


def test_a_forked_child_starts_with_empty_pools() -> None:
    fresh = propagation.Fresh.of(("w3c",))
    assert fresh is not None
    fresh.refill()
    assert fresh.pool
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, b"%d" % len(fresh.pool or ()))
        os._exit(0)
    os.close(w)
    got = os.read(r, 16)
    os.close(r)
    os.waitpid(pid, 0)
    assert got == b"0" and fresh.pool
