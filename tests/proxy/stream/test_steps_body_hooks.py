"""Body hooks see body chunks and the end of a body, never a body that is not there:
as Envoy's decodeData/encodeData, they are not called for a request or a response
whose head ended it (no body, HEAD, 204, Content-Length: 0)."""
import asyncio

from mosnx.runtime import HttpFilter, register_filter

from ..inproc import proxied, read_head, read_response

CALLS: list = []


class RecordBodies(HttpFilter):
    name = "record_bodies"

    def on_request_body(self, ctx, data, end_stream):
        CALLS.append(("request", data, end_stream))

    def on_response_body(self, ctx, data, end_stream):
        CALLS.append(("response", data, end_stream))


register_filter("test_record_bodies", lambda name, cfg, ctx: RecordBodies())


async def upstream(reader, writer):
    """Answers with the status and body the request path names: /204, /empty, /ok."""
    try:
        while True:
            start, headers = await read_head(reader)
            await reader.readexactly(int(headers.get("content-length", "0")))
            method, path = start.split()[:2]
            if path == "/204":
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif path == "/empty":
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
                             + (b"" if method == "HEAD" else b"ok"))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


async def one(port, raw: bytes, head: bool = False):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    if head:
        r = await asyncio.wait_for(read_head(reader), 10)
    else:
        r = await asyncio.wait_for(read_response(reader), 10)
    writer.close()
    return r


def calls_for(tmp_path, raw: bytes, head: bool = False) -> list:
    CALLS.clear()

    async def run():
        async with proxied(tmp_path, upstream, "{test_record_bodies: {}}") as port:
            await one(port, raw, head)
    asyncio.run(run())
    return list(CALLS)


def test_a_bodiless_request_and_response_call_no_body_hook(tmp_path):
    assert calls_for(tmp_path, b"GET /204 HTTP/1.1\r\nHost: x\r\n\r\n") == []
    assert calls_for(tmp_path, b"GET /empty HTTP/1.1\r\nHost: x\r\ncontent-length: 0\r\n\r\n") == []


def test_a_head_answer_calls_no_response_body_hook(tmp_path):
    assert calls_for(tmp_path, b"HEAD /ok HTTP/1.1\r\nHost: x\r\n\r\n", head=True) == []


def test_bodies_are_seen_with_their_end(tmp_path):
    calls = calls_for(tmp_path, b"POST /ok HTTP/1.1\r\nHost: x\r\ncontent-length: 3\r\n\r\nabc")
    assert ("request", b"abc", False) in calls and calls.count(("request", b"", True)) == 1
    assert calls[-1] == ("response", b"ok", True)
    chunked = calls_for(tmp_path, b"POST /ok HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n")
    # a chunked request may turn out empty, but only its end says so
    assert chunked[0] == ("request", b"", True)
