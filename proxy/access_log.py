"""Access logs: one line per stream, formatted from the attribute table and Envoy's operators.

The format (`%request.path%`, `%REQ(USER-AGENT)%`, `%RESPONSE_CODE%`, or a json_format)
was parsed and compiled when the config loaded (runtime.logformat, checked by
runtime.config.access_log or runtime.envoy.access_log), so nothing here can meet an
unknown attribute: a text line is one join over literal strings and getters. A
filter (Envoy's access-log filters) decides first whether the stream is logged.
Lines are buffered and flushed every 100 ms or at 64 KiB, so a request costs a
string build, not a syscall. reopen() (on SIGUSR1, for logrotate) flushes and opens
the path again, so the next line goes to a new file where the old one was renamed.
`emit access {...}` records from rules are written as JSON lines to the same target.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time

from mosnx.runtime.context import RequestHead, ResponseHead, StreamContext
from mosnx.runtime.headers import Headers
from mosnx.runtime.logformat import DEFAULT, LogFormat
from mosnx.runtime.model import AccessLog



class AccessLogWriter:
    def __init__(self, cfg: AccessLog, listener: str):
        self.cfg = cfg
        self.listener = listener
        fmt = cfg.format or DEFAULT
        self.parts = fmt.parts if isinstance(fmt, LogFormat) else None
        self.render = fmt.render
        self.test = cfg.filter.test if cfg.filter is not None else None
        self.f = self._open()
        self.buf: list[str] = []
        self.size = 0
        self.handle: asyncio.TimerHandle | None = None

    def _open(self):
        if self.cfg.path == "stdout":
            return sys.stdout
        if self.cfg.path == "stderr":
            return sys.stderr
        return open(self.cfg.path, "a", encoding="utf-8")

    def write(self, ctx: StreamContext) -> None:
        if self.test is not None and not self.test(ctx):
            return
        parts = self.parts
        if parts is not None:
            # `p.__class__ is str` tells the getters apart, cheaper than isinstance
            line = "".join([p if p.__class__ is str else p(ctx) for p in parts])  # type: ignore[operator]
        else:
            line = self.render(ctx)
        self._add(line)

    def reopen(self) -> None:
        """Flush, then open the path again (a file log: logrotate renamed the old one)."""
        self.flush()
        if self.f in (sys.stdout, sys.stderr):
            return
        try:
            f = self._open()
        except OSError:
            return          # keep writing where we were rather than lose lines
        old, self.f = self.f, f
        old.close()

    def emit(self, record: dict) -> None:
        self._add(json.dumps(record, default=str, separators=(",", ":")))

    def error(self, peer: tuple | None, status: int, detail: str, protocol: str = "-") -> None:
        """A request refused before it was one (malformed, too large, too slow): with a
        configured format, that format over what is known (no method, path or headers;
        the status, the detail as response.flags, the peer); else the default's shape."""
        if self.cfg.format is None:
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            self._add(f'[{ts}] "- - -" {status} {detail} 0 0 0 "-" "{peer[0] if peer else "-"}" "-" "-" "-" "-" "-"')
            return
        ctx = StreamContext(RequestHead("-", "-", Headers()), self.listener, protocol,
                            (peer[0], peer[1]) if peer else None)
        ctx.response = ResponseHead(status, Headers())
        ctx.error_detail = detail
        self.write(ctx)

    def _add(self, line: str) -> None:
        self.buf.append(line)
        self.size += len(line)
        if self.size > 65536:
            self.flush()
        elif self.handle is None:
            try:
                self.handle = asyncio.get_running_loop().call_later(0.1, self.flush)
            except RuntimeError:
                self.flush()

    def flush(self) -> None:
        self.handle = None
        if not self.buf:
            return
        data = "\n".join(self.buf) + "\n"
        self.buf.clear()
        self.size = 0
        try:
            self.f.write(data)
            self.f.flush()
        except (OSError, ValueError):
            pass

    def close(self) -> None:
        self.flush()
        if self.f not in (sys.stdout, sys.stderr):
            self.f.close()
