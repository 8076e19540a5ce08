"""Fuzz the HTTP/1.1 request and response decoders (proxy/codec/http1.py).

Input: byte 0 picks the decoder and its options (bit 0: response decoder; bits
1-2: the request head limit; bit 3: the response answers a HEAD), byte 1 how
many of the next bytes are cut points, then the bytes a peer sends.

Properties:
- only ParseError leaves a decoder;
- the events a sink sees (and where an upgrade hands over, and the error that
  ends the parse) are the same for the bytes fed whole, fed whole again (the
  head memos now answer what they remembered), and fed in pieces;
- a body chunk or message end never comes outside a message.

Open findings (crashes/README.md) are kinds of input (OPEN below) passed over
while fuzzing, so a run goes on to find other failures.

    python tests/fuzz/fuzz_http1.py -max_total_time=60 tests/fuzz/corpus/http1
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _fuzzing import fuzz, instrumented, split  # noqa: E402

with instrumented(__name__ == "__main__", "mosnx"):
    from mosnx.proxy.codec import http1
    from mosnx.proxy.codec.http1 import ParseError, RequestDecoder, RequestSink, ResponseDecoder, ResponseSink

MAX_HEADS = (60 * 1024, 64, 256, 4096)


class OpenFinding(AssertionError):
    """A failure on an input of a kind with an open finding (crashes/README.md);
    its message starts with the finding's name."""


# kinds of input with an open finding, each (name, test on flags and payload);
# none open now (a HEAD answer followed by more bytes in its read, and a 1xx with a
# body, were)
OPEN: tuple = ()
KNOWN = tuple(("OpenFinding", "test_one_input", name) for name, _ in OPEN)


class Requests(RequestSink):
    def __init__(self):
        self.events: list[tuple] = []

    def on_request(self, method, target, version, headers, keep_alive, body, upgrade):
        self.events.append(("head", method, target, version, list(headers.items), keep_alive, body, upgrade))

    def on_request_body(self, data):
        self.events.append(("body", bytes(data)))

    def on_request_end(self, trailers):
        self.events.append(("end", list(trailers.items) if trailers else None))


class Responses(ResponseSink):
    def __init__(self):
        self.events: list[tuple] = []

    def on_response(self, status, reason, version, headers, keep_alive, body):
        self.events.append(("head", status, reason, version, list(headers.items), keep_alive, body))

    def on_response_body(self, data):
        self.events.append(("body", bytes(data)))

    def on_response_end(self, trailers):
        self.events.append(("end", list(trailers.items) if trailers else None))


def _normalise(events: list[tuple]) -> list[tuple]:
    """Consecutive body chunks as one: how a body is chunked follows the reads."""
    out: list[tuple] = []
    for e in events:
        if e[0] == "body" and out and out[-1][0] == "body":
            out[-1] = ("body", out[-1][1] + e[1])
        elif e != ("body", b""):
            out.append(e)
    return out


def _check_order(events: list[tuple]) -> None:
    inside = False
    for e in events:
        if e[0] == "head":
            assert not inside, f"a head inside a message: {events}"
            inside = True
        elif e[0] in ("body", "end"):
            assert inside, f"{e[0]} outside a message: {events}"
            inside = e[0] != "end"


def run(pieces: list[bytes], flags: int) -> list[tuple]:
    """Feed `pieces` to a fresh decoder as one connection's reads; the normalised events."""
    if flags & 1:
        sink = Responses()
        dec = ResponseDecoder(sink)
        dec.head_only = bool(flags & 8)
    else:
        sink = Requests()
        dec = RequestDecoder(sink, max_head=MAX_HEADS[(flags >> 1) & 3])
    fed = 0
    for piece in pieces:
        if flags & 9 == 9 and any(e[0] == "end" for e in sink.events):
            # the answer to a HEAD has ended: nothing more comes on an upstream connection
            # until the next request (what followed it in the same read was dropped)
            break
        try:
            dec.feed(piece)
        except ParseError as e:
            sink.events.append(("error", e.status, e.detail))
            break
        if dec.upgraded_offset >= 0:
            # the rest belongs to a tunnel: where it starts, counted from the first byte
            sink.events.append(("upgrade", fed + dec.upgraded_offset))
            break
        fed += len(piece)
    events = _normalise(sink.events)
    _check_order(events)
    return events


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    flags = data[0]
    ncuts = data[1] & 31
    cuts, payload = data[2:2 + ncuts], data[2 + ncuts:]
    # each input starts from empty memos, so it replays the same way on its own
    http1._REQUESTS.clear()
    http1._RESPONSES.clear()
    try:
        whole = run([payload], flags)
        again = run([payload], flags)
        assert again == whole, f"fed again (head memo):\n{again}\n!=\n{whole}"
        pieces = run(split(payload, cuts), flags)
        assert pieces == whole, f"fed in pieces {split(payload, cuts)!r}:\n{pieces}\n!=\n{whole}"
    except AssertionError as e:
        for name, applies in OPEN:
            if applies(flags, payload):
                raise OpenFinding(f"{name}: {e}") from None
        raise


if __name__ == "__main__":
    fuzz(test_one_input, KNOWN)
