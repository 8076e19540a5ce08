"""An upgraded stream (101 Switching Protocols): raw bytes both ways until either
side closes."""
from __future__ import annotations

from mosnx.runtime.headers import Headers

from ..forwarding import RESP_HOP_BY_HOP
from .state import DONE, TUNNEL
from .fields import StreamFields


class TunnelMixin(StreamFields):
    __slots__ = ()

    def _start_tunnel(self, headers: Headers) -> None:
        self.resp = TUNNEL
        self.tunnel_up = self.up  # type: ignore[assignment]  # an upgrade is HTTP/1.1's: its connection takes bytes
        up = headers.getb(b"upgrade")
        headers.items = [kv for kv in headers.items if kv[0] not in RESP_HOP_BY_HOP]
        headers.items.append((b"connection", b"upgrade"))
        if up is not None:
            headers.items.append((b"upgrade", up))
        self.down.send_head(self, 101, headers, None, False)
        self.down.start_tunnel(self)

    def on_tunnel_upstream_data(self, data: bytes) -> None:
        self.ctx.bytes_sent += len(data)
        self.down.send_raw(self, data)
        if not self.down.writable() and self.up is not None:
            self.up.pause_reading()

    def on_tunnel_downstream_data(self, data: bytes) -> None:
        self.ctx.bytes_received += len(data)
        up = self.tunnel_up
        if up is not None:
            up.send(data)

    def on_tunnel_closed(self) -> None:
        if self.resp >= DONE:
            return
        self.resp = DONE
        up, self.tunnel_up = self.tunnel_up, None
        if up is not None:
            up.close()
        self._after_upstream_gone()
        self.down.abort(self)
        self._finish()
