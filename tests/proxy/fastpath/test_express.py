"""The express path: a bodiless request on a route that only forwards is decided and
answered by fastpath.express; anything else (a body, a step in any phase, gRPC) takes
the general path, with the same result on the wire. Which path a request took is
read from the fast path's own counts in /stats. Real sockets, in process."""
import asyncio

import pytest

from mosnx.proxy.codec import http1
from mosnx.proxy.fastpath import express
from mosnx.runtime import HttpFilter, register_filter
from mosnx.runtime.actions import Pause

from ..inproc import proxied, read_head, read_response


class TagResponse(HttpFilter):
    """A response step only: the request side has nothing to run."""
    name = "tag_response"

    def on_response(self, ctx):
        ctx.response.headers.set("x-tagged", "1")


register_filter("test_tag_response", lambda name, cfg, ctx: TagResponse())


async def upstream(reader, writer):
    try:
        while True:
            start, headers = await read_head(reader)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            reply = f"{start.split()[0]} {len(body)} {headers.get('x-forwarded-for')}".encode()
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: keep-alive\r\nkeep-alive: timeout=5\r\n"
                         b"content-length: %d\r\n\r\n%s" % (len(reply), reply))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass


class Delta:
    """How much a fast-path count grew over a block."""

    def __init__(self, count):
        self.count = count
        self.start = self.value = 0

    def __enter__(self):
        self.start = self.count.value
        return self

    def __exit__(self, *exc):
        self.value = self.count.value - self.start


def express_requests() -> Delta:
    return Delta(express.EXPRESS_RQ)


async def exchange(port, requests):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    out = []
    for raw in requests:
        writer.write(raw)
        out.append(await asyncio.wait_for(read_response(reader), 10))
    writer.close()
    return out


GET = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /a HTTP/1.1\r\nHost: x\r\ncontent-length: 3\r\n\r\nabc"
GRPC = b"GET /a HTTP/1.1\r\nHost: x\r\ncontent-type: application/grpc\r\n\r\n"


def test_plain_requests_take_the_short_path_and_others_the_full_one(tmp_path):
    async def run():
        async with proxied(tmp_path, upstream, "") as port:
            return [await exchange(port, [raw]) for raw in (GET, POST, GRPC, GET)]
    with express_requests() as seen:
        results = [r[0] for r in asyncio.run(run())]
    assert [r[2] for r in results] == [b"GET 0 127.0.0.1", b"POST 3 127.0.0.1",
                                       b"GET 0 127.0.0.1", b"GET 0 127.0.0.1"]
    for status, headers, _, _ in results:
        # either path strips the upstream's hop-by-hop headers and adds a request id
        assert status == 200 and "keep-alive" not in headers and "connection" not in headers
    assert seen.value == 2      # the two plain GETs; not the body, not the gRPC call


def test_the_switch_sends_every_request_the_general_way(tmp_path, monkeypatch):
    from mosnx.proxy.fastpath import memo
    monkeypatch.setenv(memo.ENV, "0")
    try:
        memo.configure(True)

        async def run():
            async with proxied(tmp_path, upstream, "") as port:
                return await exchange(port, [GET, GET])
        with express_requests() as seen:
            results = asyncio.run(run())
        assert [r[2] for r in results] == [b"GET 0 127.0.0.1"] * 2
        assert seen.value == 0 and not memo.enabled()
        assert all(k.limit == 0 and not any(k.tables) for k in memo.KINDS.values())
    finally:
        monkeypatch.delenv(memo.ENV)
        memo.configure(True)
    assert memo.enabled()


def test_a_step_in_any_phase_keeps_a_request_off_the_short_path(tmp_path):
    async def run():
        async with proxied(tmp_path, upstream, "{test_tag_response: {}}") as port:
            return await exchange(port, [GET, GET])
    with express_requests() as seen:
        results = asyncio.run(run())
    assert all(r[0] == 200 and r[1]["x-tagged"] == "1" for r in results)
    assert seen.value == 0


ANSWER = b"HTTP/1.1 200 OK\r\nServer: up\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\n"


def fixed_answer(apart: bool):
    """An upstream giving one fixed response: written at once, so the codec reads it
    whole from the second on, or with its body written `apart`, so it never does."""
    async def answer(reader, writer):
        try:
            while True:
                await read_head(reader)
                if apart:
                    writer.write(ANSWER)
                    await writer.drain()
                    await asyncio.sleep(0.02)
                    writer.write(b"hello")
                else:
                    writer.write(ANSWER + b"hello")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
    return answer


same_answer = fixed_answer(apart=False)
split_answer = fixed_answer(apart=True)


def test_a_response_read_whole_is_taken_in_one_call_with_the_same_result(tmp_path):
    http1._RESPONSES.clear()            # so the first answer is parsed whatever ran before
    kind = express.BY_RESPONSE
    taken = kind.hits + kind.misses     # each whole response the express path took counts once
    workers = []

    closing = b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    async def run():
        async with proxied(tmp_path, same_answer, "", workers) as port:
            return await exchange(port, [GET, GET, GET, closing])
    results = asyncio.run(run())
    assert kind.hits + kind.misses - taken == 3     # the first response was parsed, not remembered
    for status, headers, body, _ in results:
        assert (status, body) == (200, b"hello")
        assert headers["content-length"] == "5" and headers["server"] == "up"
    # the second made the client's head, the third reused it: the same as parsed
    assert [r[1] for r in results[1:3]] == [results[0][1]] * 2
    # a client that closes gets its own head, not the remembered keep-alive one
    assert "connection" not in results[0][1] and results[3][1]["connection"] == "close"
    dump = workers[0].stats.dump()
    counters = dump["counters"]
    assert counters["http.l.downstream_rq_2xx"] == 4
    assert counters["cluster.up.upstream_rq_2xx"] == 4
    assert dump["gauges"]["http.l.downstream_rq_active"] == 0
    assert dump["gauges"]["cluster.up.upstream_rq_active"] == 0
    assert dump["histograms"]["cluster.up.upstream_rq_time"]["count"] == 4


class Record(HttpFilter):
    """Response steps that change the head and the body (at once, or after a pause),
    and write down what each step was given."""
    name = "record"

    def __init__(self, pause: bool):
        self.pause = pause
        self.seen = []

    def on_response(self, ctx):
        self.seen.append(("head", ctx.response.status))
        ctx.response.headers.set("x-stepped", "1")

    def on_response_body(self, ctx, data, end_stream):
        self.seen.append(("body", data, end_stream))
        if self.pause:
            async def later():
                await asyncio.sleep(0.01)
                return data.upper()
            return Pause(later())
        return data.upper()

    def on_log(self, ctx):
        self.seen.append(("log", ctx.response.status))


@pytest.mark.parametrize("pause", [False, True])
def test_a_response_read_whole_meets_the_steps_as_one_read_in_parts_does(tmp_path, pause):
    """The general path takes a whole response in one call too: its steps must see the
    same calls, and the client get the same answer, as when head and body come apart."""
    outcomes = []
    whole = []
    for handle in (split_answer, same_answer):
        http1._RESPONSES.clear()
        before = http1.RESPONSE_HEADS.hits
        f = Record(pause)
        register_filter("test_record", lambda name, cfg, ctx, f=f: f)
        workers = []

        async def run():
            async with proxied(tmp_path, handle, "{test_record: {}}", workers) as port:
                return await exchange(port, [GET, GET, GET])
        results = asyncio.run(run())
        whole.append(http1.RESPONSE_HEADS.hits - before)
        answers = [(s, {k: v for k, v in h.items() if k not in ("date", "x-request-id")}, b)
                   for s, h, b, _ in results]
        gauges = workers[0].stats.dump()["gauges"]
        outcomes.append((answers, f.seen, gauges["http.l.downstream_rq_active"],
                         gauges["cluster.up.upstream_rq_active"]))
    # apart, no answer is read whole; at once, the first is parsed and the next two are
    # read whole (from the decoder's memo)
    assert whole == [0, 2]
    assert outcomes[0] == outcomes[1]
    answers, seen, active, up_active = outcomes[1]
    assert answers == [(200, {"server": "up", "x-stepped": "1", "content-length": "5"}, b"HELLO")] * 3
    assert seen == [("head", 200), ("body", b"hello", True), ("log", 200)] * 3
    assert (active, up_active) == (0, 0)
