"""A response-header step that pauses (for I/O, as a WASM filter's http_call does)
holds the response head and its body until it resumes; real sockets, in process."""
import asyncio

import pytest

from mosnx.runtime import HttpFilter, LocalReply, Pause, register_filter
from mosnx.proxy.worker import Worker

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
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        if not head:
            return
        # head and body in one write: the body arrives in the same read as the head
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY))
        await writer.drain()


async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(l.lower().split(": ", 1) for l in lines[1:] if l)
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def run(tmp_path, mode):
    up = await asyncio.start_server(upstream, "127.0.0.1", 0)
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
    filters: [{{test_late_response: {{mode: {mode}}}}}]
clusters:
  - {{name: up, endpoints: ["127.0.0.1:{up_port}"]}}
""")
    w = Worker(str(cfg))
    w.loop = asyncio.get_running_loop()
    await w.apply(w.build(1))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        results = []
        for _ in range(2):          # the connection stays usable after a held response
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            results.append(await asyncio.wait_for(read_response(reader), 10))
            if mode == "deny":
                break
        writer.close()
        return results
    finally:
        await w.drain(1.0)
        up.close()


@pytest.mark.parametrize("mode", ["pass", "deny"])
def test_paused_response_step_holds_head_and_body(tmp_path, mode):
    results = asyncio.run(run(tmp_path, mode))
    if mode == "pass":
        for status, headers, body in results:
            assert status == 200 and headers["x-late"] == "1" and body == BODY
    else:
        [(status, headers, body)] = results
        assert status == 403 and body == b"denied late\n"
        assert headers["x-mosnx-error"] == "late_deny"
