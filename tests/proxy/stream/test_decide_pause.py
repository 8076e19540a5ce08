"""Request-header and upstream_request steps that pause (for I/O, as a WASM filter's
http_call does): the decision stops, and goes on from the next step once the I/O
settles; real sockets, in process."""
import asyncio

import pytest

from mosnx.runtime import HttpFilter, LocalReply, Pause, register_filter

from ..inproc import proxied, read_head, read_response


async def later(result=None, fail=False):
    await asyncio.sleep(0.02)
    if fail:
        raise RuntimeError("the step's I/O failed")
    return result


class PausingRequest(HttpFilter):
    """Pauses in `phase`, then tags the request with x-<tag> (or does what `mode` says)."""
    name = "pausing_request"

    def __init__(self, tag: str, phase: str, mode: str):
        self.tag = tag
        self.phase = phase
        self.mode = mode

    def _step(self, ctx):
        if self.mode == "raise":
            raise RuntimeError("a step that breaks")

        async def io():
            r = await later(fail=self.mode == "fail")
            if self.mode == "deny":
                return LocalReply(403, b"denied\n", (), "paused_deny")
            ctx.request.headers.set("x-" + self.tag, "1")
            return r
        return Pause(io())

    def on_request(self, ctx):
        return self._step(ctx) if self.phase == "request" else None

    def on_upstream_request(self, ctx):
        return self._step(ctx) if self.phase == "upstream_request" else None


# one name per tag: a listener names each filter once
for _tag in "abcd":
    register_filter(f"test_pause_{_tag}", lambda name, cfg, ctx, tag=_tag:
                    PausingRequest(tag, cfg["phase"], cfg.get("mode", "pass")))


async def upstream(reader, writer):
    try:
        while True:
            _, headers = await read_head(reader)
            body = ",".join(sorted(k for k in headers if k.startswith("x-") and k[2:] in "abcd")).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


def filters(*specs) -> str:
    return ", ".join(f"{{test_pause_{t}: {{phase: {p}, mode: {m}}}}}" for t, p, m in specs)


async def run(tmp_path, spec: str, n: int):
    async with proxied(tmp_path, upstream, spec) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        results = []
        for _ in range(n):
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            results.append(await asyncio.wait_for(read_response(reader), 10))
        writer.close()
        return results


def test_paused_steps_resume_at_the_next_step_of_each_chain(tmp_path):
    spec = filters(("a", "request", "pass"), ("b", "request", "pass"),
                   ("c", "upstream_request", "pass"), ("d", "upstream_request", "pass"))
    results = asyncio.run(run(tmp_path, spec, 2))     # the connection stays usable
    for status, _, body, _ in results:
        assert status == 200 and body == b"x-a,x-b,x-c,x-d"


@pytest.mark.parametrize("phase", ["request", "upstream_request"])
def test_a_reply_after_a_pause_answers_the_request(tmp_path, phase):
    spec = filters(("a", phase, "deny"), ("b", phase, "pass"))
    [(status, headers, body, _)] = asyncio.run(run(tmp_path, spec, 1))
    assert status == 403 and body == b"denied\n"
    assert headers["x-mosnx-error"] == "paused_deny"


def test_a_failed_pause_is_a_filter_failure(tmp_path):
    spec = filters(("a", "request", "fail"), ("b", "request", "pass"))
    [(status, headers, _, _)] = asyncio.run(run(tmp_path, spec, 1))
    assert status == 500 and headers["x-mosnx-error"] == "filter_failure"


def test_a_step_raising_after_a_pause_fails_the_stream(tmp_path):
    spec = filters(("a", "request", "pass"), ("c", "upstream_request", "raise"))
    [(status, headers, _, _)] = asyncio.run(run(tmp_path, spec, 1))
    assert status == 500 and headers["x-mosnx-error"] == "internal_error"
