"""A body step that pauses (for I/O, as a WASM filter's http_call does) holds its chunk,
and everything after it, until the I/O settles; real sockets, in process."""
import asyncio

import pytest

from mosnx.runtime import HttpFilter, LocalReply, Pause, register_filter

from ..inproc import proxied, read_head, read_message_body, read_response

UP_BODY = b"upstream body\n" * 100


class LateBody(HttpFilter):
    """Pauses on the last request (or response) body chunk; then passes, replaces the
    chunk, or answers (`mode`)."""
    name = "late_body"

    def __init__(self, side: str, mode: str):
        self.side = side
        self.mode = mode
        self.seen: list[bytes] = []

    def _step(self, data: bytes, end: bool):
        self.seen.append(data)
        if not end:
            return None

        async def later():
            await asyncio.sleep(0.05)
            if self.mode == "deny":
                return LocalReply(403, b"denied late\n", (), "late_deny")
            if self.mode == "replace":
                return b"<replaced>"
            return None
        return Pause(later())

    def on_request_body(self, ctx, data, end_stream):
        return self._step(data, end_stream) if self.side == "request" else None

    def on_response_body(self, ctx, data, end_stream):
        return self._step(data, end_stream) if self.side == "response" else None


class Tag(HttpFilter):
    """Runs after LateBody: shows the later steps run once the pause is over."""
    name = "tag"

    def on_response(self, ctx):
        # the body changes size: as Envoy asks of such filters, drop Content-Length
        ctx.response.headers.remove(b"content-length")

    def on_request_body(self, ctx, data, end_stream):
        return data + b"|tagged" if end_stream else None

    def on_response_body(self, ctx, data, end_stream):
        return data + b"|tagged" if end_stream else None


register_filter("test_late_body", lambda name, cfg, ctx: LateBody(cfg["side"], cfg.get("mode", "pass")))
register_filter("test_tag", lambda name, cfg, ctx: Tag())


async def upstream(reader, writer, received):
    try:
        while True:
            _, headers = await read_head(reader)
            body, _ = await read_message_body(reader, headers)
            received.append(body)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(UP_BODY), UP_BODY))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


async def run(tmp_path, side, mode, request_body_parts):
    received: list[bytes] = []
    filters = f"{{test_late_body: {{side: {side}, mode: {mode}}}}}, {{test_tag: {{}}}}"
    async with proxied(tmp_path, lambda r, w: upstream(r, w, received), filters) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        results = []
        for _ in range(2):          # the connection stays usable after a held body
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\ntransfer-encoding: chunked\r\n\r\n")
            for part in request_body_parts:
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await asyncio.sleep(0.01)
            writer.write(b"0\r\n\r\n")
            try:
                status, headers, body, _ = await asyncio.wait_for(read_response(reader), 10)
            except asyncio.IncompleteReadError as e:
                results.append(("cut", e.partial))
                break
            results.append((status, headers, body))
            if mode == "deny":
                break
        writer.close()
        return results, received


PARTS = [b"one,", b"two,", b"three"]


@pytest.mark.parametrize("mode, upstream_gets", [
    ("pass", b"one,two,three|tagged"),
    # chunked: the end is an empty last chunk, which the step replaces
    ("replace", b"one,two,three<replaced>|tagged"),
])
def test_paused_request_body_step_holds_the_end_then_goes_on(tmp_path, mode, upstream_gets):
    results, received = asyncio.run(run(tmp_path, "request", mode, PARTS))
    assert [r[0] for r in results] == [200, 200]
    assert all(r[2] == UP_BODY + b"|tagged" for r in results)
    assert received == [upstream_gets, upstream_gets]


def test_paused_request_body_step_may_answer_instead(tmp_path):
    results, received = asyncio.run(run(tmp_path, "request", "deny", PARTS))
    [(status, headers, body)] = results
    assert status == 403 and body == b"denied late\n"
    assert headers["x-mosnx-error"] == "late_deny"
    # what went up before the end was held is all the upstream saw: never the end
    assert all(not r.endswith(b"three|tagged") for r in received)


@pytest.mark.parametrize("mode, body", [
    # response steps run in reverse order: the tag comes before the pause
    ("pass", UP_BODY + b"|tagged"),
    ("replace", b"<replaced>"),
])
def test_paused_response_body_step_holds_the_end_then_goes_on(tmp_path, mode, body):
    results, _ = asyncio.run(run(tmp_path, "response", mode, [b"x"]))
    assert [r[0] for r in results] == [200, 200]
    for _, headers, got in results:
        assert got.endswith(body)
        assert headers.get("transfer-encoding") == "chunked"


def test_paused_response_body_step_answering_after_the_head_cuts_the_response(tmp_path):
    results, _ = asyncio.run(run(tmp_path, "response", "deny", [b"x"]))
    # the head went out before the step answered: the body is cut short, never
    # ended as if complete
    assert results[0][0] == "cut"
