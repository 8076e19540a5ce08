"""A worker answers every start and reload, whatever its build raises: the supervisor
never waits on a worker that died on an exception, and a bug reads as one line."""
from __future__ import annotations

import asyncio
import errno
import socket

from mosnx.proxy.worker import ListenError, Worker, start_failure
from mosnx.runtime.diagnostics import ConfigError, Diagnostic, Span

GOOD = """\
listeners:
  - name: ingress
    address: 127.0.0.1:PORT
    route: {cluster: web}
clusters:
  - name: web
    endpoints: ["127.0.0.1:9"]
"""


def test_start_failures_are_sorted_into_config_listen_and_bug():
    d = Diagnostic(Span("m.yaml", 3, 5), "C002", "unknown key")
    assert start_failure(ConfigError([d])) == {"op": "ready", "ok": False, "kind": "config", "errors": [str(d)]}
    e = ListenError(errno.EADDRINUSE, "cannot listen on 127.0.0.1:1 (listener x): address already in use")
    assert start_failure(e)["kind"] == "listen" and start_failure(e)["errors"] == [str(e)]
    bug = start_failure(RuntimeError("a\nb"))
    assert bug["kind"] == "bug" and bug["errors"] == ["RuntimeError: a b"]


def test_a_reload_whose_build_raises_answers_a_one_line_bug(tmp_path):
    path = tmp_path / "m.yaml"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path.write_text(GOOD.replace("PORT", str(port)))

    async def main():
        w = Worker(str(path))
        w.loop = asyncio.get_running_loop()
        await w.apply(w.build(1))

        def boom(version):
            raise RuntimeError("boom")
        w.build = boom
        reply = await w.reload(2)
        await w.drain(0)
        return reply, w.version
    reply, version = asyncio.run(main())
    assert reply == {"ok": False, "errors": ["bug: RuntimeError: boom"]}
    assert version == 1
