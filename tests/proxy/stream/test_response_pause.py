"""A response-header step that pauses (for I/O, as a WASM filter's http_call does)
holds the response head and its body until it resumes; real sockets, in process."""
import asyncio

import pytest

from mosnx.runtime import HttpFilter, LocalReply, Pause, register_filter

from ..inproc import proxied, read_head, read_response

BODY = b"hello from upstream\n" * 200


class LateResponse(HttpFilter):
    name = "late_response"

    def __init__(self, mode: str):
        self.mode = mode

    def on_response(self, ctx):
        async def later():
            await asyncio.sleep(0.05)
            if self.mode == "deny":
                return LocalReply(403, b"denied late\n", (), "late_deny")
            ctx.response.headers.set("x-late", "1")
            return None
        return Pause(later())


register_filter("test_late_response", lambda name, cfg, ctx: LateResponse(cfg.get("mode", "pass")))


async def upstream(reader, writer):
    try:
        while True:
            await read_head(reader)
            # head and body in one write: the body arrives in the same read as the head
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


async def run(tmp_path, mode):
    async with proxied(tmp_path, upstream, f"{{test_late_response: {{mode: {mode}}}}}") as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        results = []
        for _ in range(2):          # the connection stays usable after a held response
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            results.append(await asyncio.wait_for(read_response(reader), 10))
            if mode == "deny":
                break
        writer.close()
        return results


@pytest.mark.parametrize("mode", ["pass", "deny"])
def test_paused_response_step_holds_head_and_body(tmp_path, mode):
    results = asyncio.run(run(tmp_path, mode))
    if mode == "pass":
        for status, headers, body, _ in results:
            assert status == 200 and headers["x-late"] == "1" and body == BODY
    else:
        [(status, headers, body, _)] = results
        assert status == 403 and body == b"denied late\n"
        assert headers["x-mosnx-error"] == "late_deny"
