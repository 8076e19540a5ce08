"""A trailers step that pauses holds the end of its stream until its I/O settles, then
the stream ends with what the step left; real sockets, in process."""
import asyncio

import pytest

from mosnx.runtime import HttpFilter, LocalReply, Pause, register_filter
from mosnx.proxy.worker import Worker


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


async def read_chunked(reader) -> tuple[bytes, dict]:
    body = b""
    while True:
        size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
        if size == 0:
            break
        body += (await reader.readexactly(size + 2))[:-2]
    trailers = {}
    while True:
        line = (await reader.readuntil(b"\r\n"))[:-2]
        if not line:
            return body, trailers
        k, v = line.decode("latin-1").split(":", 1)
        trailers[k.strip().lower()] = v.strip()


async def read_head(reader) -> tuple[str, dict]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return lines[0], dict(l.lower().split(": ", 1) for l in lines[1:] if l)


async def upstream(reader, writer, seen):
    try:
        while True:
            await read_head(reader)
            body, trailers = await read_chunked(reader)
            seen.append((body, trailers))
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                         b"5\r\nhello\r\n0\r\nx-up: 1\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


async def run(tmp_path, mode):
    seen = []
    up = await asyncio.start_server(lambda r, w: upstream(r, w, seen), "127.0.0.1", 0)
    up_port = up.sockets[0].getsockname()[1]
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    cfg = tmp_path / "m.yaml"
    cfg.write_text(f"""
listeners:
  - name: l
    address: 127.0.0.1:{port}
    route: {{ cluster: up }}
    filters: [{{test_late_trailers: {{mode: {mode}}}}}]
clusters:
  - {{name: up, endpoints: ["127.0.0.1:{up_port}"]}}
""")
    w = Worker(str(cfg))
    w.loop = asyncio.get_running_loop()
    await w.apply(w.build(1))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        results = []
        for _ in range(2):
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nTE: trailers\r\ntransfer-encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n0\r\nx-client: 1\r\n\r\n")
            status, headers = await asyncio.wait_for(read_head(reader), 10)
            if headers.get("transfer-encoding") == "chunked":
                body, trailers = await asyncio.wait_for(read_chunked(reader), 10)
            else:
                body, trailers = await reader.readexactly(int(headers["content-length"])), {}
            results.append((status, body, trailers))
            if mode == "deny":
                break
        writer.close()
        return results, seen
    finally:
        await w.drain(1.0)
        up.close()


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
