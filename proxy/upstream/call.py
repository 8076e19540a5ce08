"""One-shot HTTP/1.1 calls to a cluster, for filters (proxy_http_call) and mirroring.

Uses the cluster's balancer and a fresh connection per call: these calls are off
the request's own path, so sharing its pool's keep-alive state buys little and
risks a call holding a connection a request needs.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..codec.http1 import ParseError, ResponseDecoder, ResponseSink, encode_request_head

if TYPE_CHECKING:
    from .cluster import ClusterManager, Host


class CallError(Exception):
    pass


class _Collect(ResponseSink):
    def __init__(self):
        self.status = 0
        self.headers = None
        self.body: list[bytes] = []
        self.done = asyncio.get_running_loop().create_future()

    def on_response(self, status, reason, version, headers, keep_alive, body):
        self.status = status
        self.headers = headers

    def on_response_body(self, data):
        self.body.append(data)

    def on_response_end(self, trailers):
        if not self.done.done():
            self.done.set_result(None)


async def http_call(clusters: ClusterManager, cluster_name: str, headers: list[tuple[str, str]], body: bytes,
                    timeout: float, observer: Any = None) -> tuple[int, list[tuple[str, str]], bytes]:
    """`observer`, when given, is told how the call goes, to count it on the cluster:
    begin(cluster, host) once a host is picked, connected(), then answered(status) or
    failed(exception); upstream.mirror's ShadowStats is one."""
    cluster = clusters.get(cluster_name)
    if cluster is None:
        raise CallError(f"unknown cluster {cluster_name!r}")
    host = cluster.pick(None)
    if host is None:
        raise CallError(f"no healthy endpoint in cluster {cluster_name!r}")
    method, path, authority = "GET", "/", host.address
    out = []
    for k, v in headers:
        lk = k.lower()
        if lk == ":method":
            method = v
        elif lk == ":path":
            path = v
        elif lk == ":authority":
            authority = v
        elif not lk.startswith(":") and lk not in ("content-length", "transfer-encoding", "connection"):
            out.append((lk.encode("latin-1"), v.encode("latin-1")))
    out.insert(0, (b"host", authority.encode("latin-1")))
    out.append((b"content-length", b"%d" % len(body)))
    out.append((b"connection", b"close"))
    if observer is None:
        return await _exchange(host, method, path, out, body, timeout, None)
    observer.begin(cluster, host)
    try:
        answer = await _exchange(host, method, path, out, body, timeout, observer)
    except BaseException as e:
        observer.failed(e)
        raise
    observer.answered(answer[0])
    return answer


async def _exchange(host: Host, method: str, path: str, out: list[tuple[bytes, bytes]], body: bytes, timeout: float,
                    observer: Any) -> tuple[int, list[tuple[str, str]], bytes]:
    sink = _Collect()
    dec = ResponseDecoder(sink)
    dec.head_only = method == "HEAD"
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host.host, host.port)
        if observer is not None:
            observer.connected()
        try:
            writer.write(encode_request_head(method, path, out) + body)
            while not sink.done.done():
                data = await reader.read(65536)
                if not data:
                    if sink.headers is not None:
                        break          # close-delimited body
                    raise CallError("upstream closed before responding")
                try:
                    dec.feed(data)
                except ParseError as e:
                    raise CallError(e.detail) from e
        finally:
            writer.close()
    # the loop ends on a whole response or a close-delimited one: both have headers
    return (sink.status, [(k.decode("latin-1"), v.decode("latin-1")) for k, v in sink.headers.items],  # type: ignore[union-attr]
            b"".join(sink.body))
