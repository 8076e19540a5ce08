"""A trailers step that pauses holds the end of its stream until its I/O settles, then
the stream ends with what the step left; real sockets, in process."""
import asyncio

from mosnx.runtime import HttpFilter, LocalReply, Pause, register_filter

from ..inproc import proxied, read_chunked, read_head, read_message_body


class LateTrailers(HttpFilter):
    name = "late_trailers"

    def __init__(self, mode: str):
        self.mode = mode

    def _later(self, head):
        async def later():
            await asyncio.sleep(0.05)
            if self.mode == "deny":
                return LocalReply(403, b"denied late\n", (), "late_deny")
            head.trailers.set("x-checked", "late")
            return None
        return Pause(later())

    def on_request_trailers(self, ctx):
        return self._later(ctx.request)

    def on_response_trailers(self, ctx):
        return self._later(ctx.response)


register_filter("test_late_trailers", lambda name, cfg, ctx: LateTrailers(cfg.get("mode", "pass")))


async def upstream(reader, writer, seen):
    try:
        while True:
            await read_head(reader)
            seen.append(await read_chunked(reader))
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                         b"5\r\nhello\r\n0\r\nx-up: 1\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


async def run(tmp_path, mode):
    seen = []
    filters = f"{{test_late_trailers: {{mode: {mode}}}}}"
    async with proxied(tmp_path, lambda r, w: upstream(r, w, seen), filters) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        results = []
        for _ in range(2):
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\ntransfer-encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n0\r\nx-client: 1\r\n\r\n")
            start, headers = await asyncio.wait_for(read_head(reader), 10)
            body, trailers = await asyncio.wait_for(read_message_body(reader, headers), 10)
            results.append((start, body, trailers))
            if mode == "deny":
                break
        writer.close()
        return results, seen


def test_paused_trailer_steps_hold_the_end_of_both_directions(tmp_path):
    results, seen = asyncio.run(run(tmp_path, "pass"))
    # request trailers reached the upstream after the step's I/O, with its edit
    assert seen == [(b"abc", {"x-client": "1", "x-checked": "late"})] * 2
    for status, body, trailers in results:
        assert status.startswith("HTTP/1.1 200")
        assert body == b"hello" and trailers == {"x-up": "1", "x-checked": "late"}


def test_paused_request_trailer_step_may_answer_instead(tmp_path):
    results, seen = asyncio.run(run(tmp_path, "deny"))
    [(status, body, _)] = results
    assert status.startswith("HTTP/1.1 403") and body == b"denied late\n"
    assert all("x-checked" not in t for _, t in seen)
