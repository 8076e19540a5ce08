"""The `wasm` HTTP filter: mosnx pipeline hooks driving proxy-wasm stream callbacks.

Three tiers, as other filters: PluginConfig parsed once; the module compiled once
(cached on disk) and one VM per plugin per worker made by the factory; per stream
only a small Stream record kept in ctx.state().

A failing callback (trap, timeout, memory limit, proc_exit) fails only the
stream it ran for: 500 with detail "wasm_failure" (or pass-through with
fail_open); the VM is recreated for the next request.
"""
from __future__ import annotations

import asyncio
import logging
import os

from mosnx.runtime.actions import Action, LocalReply, Pause
from mosnx.runtime.context import StreamContext
from mosnx.runtime.pipeline import HttpFilter
from mosnx.runtime.registry import BuildContext

from . import abi, config as config_mod, module_cache
from .imports import check_imports
from .vm import VM, Stream, VMError

log = logging.getLogger("mosnx.wasm")

# Stats this filter keeps, each exported as wasm.<plugin>.<stat>.
STATS = ("failures", "timeouts", "vm_starts", "vm_recycles", "http_calls")

_BUF_REQ, _BUF_RESP = abi.BUF_REQUEST_BODY, abi.BUF_RESPONSE_BODY
_CONTINUE, _CONTINUE_AND_END = abi.HEADERS_CONTINUE, abi.HEADERS_CONTINUE_AND_END_STREAM
_DATA_CONTINUE = abi.DATA_CONTINUE


class WasmFilter(HttpFilter):
    def __init__(self, plugin: config_mod.PluginConfig, vm: VM):
        self.name = plugin.name
        self.plugin = plugin
        self.vm = vm
        self.has_req_body = vm.has("proxy_on_request_body")
        self.has_resp_body = vm.has("proxy_on_response_body")

    @property
    def http_call(self):
        """The async http_call used by proxy_http_call (settable: tests inject a fake)."""
        return self.vm.http_call

    @http_call.setter
    def http_call(self, fn) -> None:
        self.vm.http_call = fn

    # -- helpers -------------------------------------------------------------
    def _failed(self, exc: BaseException, where: str, vm: VM | None = None) -> LocalReply | None:
        vm = vm or self.vm
        vm.fail(exc, where)
        return vm.failure_outcome

    def _stream(self, ctx: StreamContext) -> Stream | None:
        fs = ctx.filter_state
        st = fs.get(self) if fs is not None else None
        if st is None or not st.live:
            return None     # no context, or it belonged to a VM that has since failed
        return st

    def _headers_outcome(self, st: Stream, rc) -> Action | None:
        reply = st.reply
        if reply is not None:
            st.reply = None
            return reply
        if rc is None or rc == abi.HEADERS_CONTINUE or rc == abi.HEADERS_CONTINUE_AND_END_STREAM:
            return None
        if st.continued:
            st.continued = False
            return None
        fut = _new_future()
        st.future = fut
        return Pause(fut)

    # -- hooks ---------------------------------------------------------------
    def on_request(self, ctx: StreamContext) -> Action | None:
        vm = self.vm
        if not vm.alive:
            if not vm.ensure():
                return vm.failure_outcome
        else:
            # every 32nd request: reading the memory size is two C calls, and a
            # guest's leak grows by bytes per request, so sampling is enough
            vm.memory_checks = n = vm.memory_checks + 1
            if not n & 31 and vm.memory_high():
                if not vm.contexts:
                    if not vm.recycle():
                        return vm.failure_outcome
                else:
                    vm = self._successor(vm)
        req = ctx.request
        h = req.headers
        eos = ctx.request_bodyless
        if eos is None:     # a context the core did not make: judge by the framing headers
            eos = not (h.has(b"content-length") and h.getb(b"content-length") != b"0"
                       or h.has(b"transfer-encoding"))
        # pseudo-headers count, HTTP/1 Host is folded into :authority (clients send
        # Host first, so one look usually settles it)
        items = h.items
        n = len(items) + (3 if req.authority is None and (items and items[0][0] == b"host" or h.has(b"host"))
                          else 4)
        try:
            st, rc = vm.open_stream(ctx, n, eos)
        except Exception as e:
            return self._failed(e, "proxy_on_request_headers")
        fs = ctx.filter_state
        if fs is None:
            fs = ctx.filter_state = {}
        fs[self] = st
        if st.reply is None and (rc is None or rc == _CONTINUE or rc == _CONTINUE_AND_END):
            return None
        return self._headers_outcome(st, rc)

    def _successor(self, vm: VM) -> VM:
        """Hand new streams to a fresh VM (the busy one keeps its own); if that cannot
        start, the old one carries on."""
        try:
            self.vm = vm.successor()
        except Exception as e:
            log.error('wasm filter "%s": a fresh VM failed to start: %s', self.name, _describe(e))
            vm.stat_failures.inc()
        return self.vm

    def on_request_body(self, ctx: StreamContext, data: bytes, end_stream: bool):
        if not self.has_req_body:
            return None
        fs = ctx.filter_state
        st = fs.get(self) if fs is not None else None
        if st is None or not st.live or (st.headers_only and not data):
            return None     # as Envoy: no body callbacks for a request that has no body
        return self._body(st, _BUF_REQ, "proxy_on_request_body", data, end_stream)

    def on_response_body(self, ctx: StreamContext, data: bytes, end_stream: bool):
        if not self.has_resp_body:
            return None
        fs = ctx.filter_state
        st = fs.get(self) if fs is not None else None
        if st is None or not st.live or (st.response_headers_only and not data):
            return None     # as Envoy: no body callbacks for a response that has no body
        if not st.buffering[_BUF_RESP]:
            # the common case, a chunk the filter lets through as it is
            bufs = st.bufs
            bufs[_BUF_RESP] = data
            st.modified[_BUF_RESP] = False
            vm = st.vm
            vm.cur = st
            try:
                rc = vm.on_response_body(st.id, len(data), end_stream)
            except Exception as e:
                vm.cur = None
                return self._failed(e, "proxy_on_response_body", vm)
            vm.cur = None
            if rc == _DATA_CONTINUE and st.reply is None and not st.modified[_BUF_RESP]:
                bufs[_BUF_RESP] = None
                return None
            return self._body_outcome(st, _BUF_RESP, rc, end_stream)
        return self._body(st, _BUF_RESP, "proxy_on_response_body", data, end_stream)

    def _body(self, st: Stream, i: int, callback: str, data: bytes, end_stream: bool):
        buf = st.bufs[i]
        if st.buffering[i] and buf is not None:
            if not isinstance(buf, bytearray):
                buf = bytearray(buf)
            buf += data
            st.bufs[i] = buf
        else:
            # the chunk as it came: copied only if the filter edits it (abi_buffers)
            buf = st.bufs[i] = data
            st.modified[i] = False
        try:
            rc = st.vm.stream_call(st, callback, st.id, len(buf), int(end_stream))
        except Exception as e:
            return self._failed(e, callback, st.vm)
        return self._body_outcome(st, i, rc, end_stream)

    def _body_outcome(self, st: Stream, i: int, rc, end_stream: bool):
        reply = st.reply
        if reply is not None:
            st.reply = None
            st.bufs[i] = None
            return reply
        if rc in (abi.DATA_STOP_AND_BUFFER, abi.DATA_STOP_AND_WATERMARK) and not end_stream:
            st.buffering[i] = True
            return b""
        if rc == abi.DATA_STOP_NO_BUFFER and not end_stream:
            st.bufs[i] = None
            st.buffering[i] = False
            return b""
        if rc != abi.DATA_CONTINUE and not st.continued and st.vm.has_calls(st):
            # a stop at the end while the filter's http_call is out: the body waits for
            # its answer (proxy_continue_stream or a local reply), as in Envoy
            st.buffering[i] = True
            fut = st.future = _new_future()
            return Pause(self._released(st, i, fut))
        # Continue, or a stop at end of stream that nothing can resume: nothing more
        # will arrive, so the (possibly edited) buffer goes on rather than the stream hanging.
        return self._take(st, i)

    @staticmethod
    def _take(st: Stream, i: int) -> bytes | None:
        buf = st.bufs[i]        # an edit replaced it with a bytearray
        out = bytes(buf) if buf is not None and (st.buffering[i] or st.modified[i]) else None
        st.bufs[i] = None
        st.buffering[i] = False
        st.modified[i] = False
        return out

    async def _released(self, st: Stream, i: int, fut: asyncio.Future):
        """The body a paused end-of-stream callback held, once the filter lets it go."""
        r = await fut
        if r is not None:
            st.bufs[i] = None
            return r
        out = self._take(st, i)
        return out if out is not None else b""

    def on_request_trailers(self, ctx: StreamContext) -> Action | None:
        return self._trailers(ctx, "proxy_on_request_trailers", ctx.request)

    def on_response_trailers(self, ctx: StreamContext) -> Action | None:
        return self._trailers(ctx, "proxy_on_response_trailers", ctx.response)

    def _trailers(self, ctx: StreamContext, callback: str, head) -> Action | None:
        if not self.vm.has(callback):
            return None
        st = self._stream(ctx)
        if st is None:
            return None
        t = getattr(head, "trailers", None) if head is not None else None
        try:
            rc = st.vm.stream_call(st, callback, st.id, len(t) if t else 0)
        except Exception as e:
            return self._failed(e, callback, st.vm)
        return self._headers_outcome(st, rc)

    def on_response(self, ctx: StreamContext) -> Action | None:
        fs = ctx.filter_state
        st = fs.get(self) if fs is not None else None
        if st is None or not st.live:
            return None
        resp = ctx.response
        h = resp.headers  # type: ignore[union-attr]  # the response phase has a response
        status = resp.status  # type: ignore[union-attr]
        eos = st.response_headers_only = (
            status == 204 or status == 304 or 100 <= status < 200
            or ctx.request.method == "HEAD" or h.getb(b"content-length") == b"0")
        vm = st.vm
        f = vm.on_response_headers
        if f is None:
            return self._headers_outcome(st, None)
        vm.cur = st
        try:
            rc = f(st.id, len(h.items) + 1, eos)
        except Exception as e:
            vm.cur = None
            return self._failed(e, "proxy_on_response_headers", vm)
        vm.cur = None
        if st.reply is None and (rc == _CONTINUE or rc == _CONTINUE_AND_END):
            return None
        return self._headers_outcome(st, rc)

    def on_log(self, ctx: StreamContext) -> None:
        fs = ctx.filter_state
        st = fs.pop(self, None) if fs is not None else None
        if st is None or not st.live:
            return
        if st.future is not None:
            st.future.cancel()
            st.future = None
        try:
            st.vm.finish(st)
        except Exception as e:
            st.vm.fail(e, "proxy_on_log")


# Hooks that only matter when the module exports the callback behind them. A
# filter whose module lacks one leaves the hook out (it is HttpFilter's no-op
# again), so the pipeline has no step there: without a response_body step, for
# one, the core can forward bodies untouched.
_OPTIONAL_HOOKS = {
    "on_request_body": "proxy_on_request_body",
    "on_response_body": "proxy_on_response_body",
    "on_request_trailers": "proxy_on_request_trailers",
    "on_response_trailers": "proxy_on_response_trailers",
}
_classes: dict[frozenset, type] = {}


def _filter_class(vm: VM) -> type:
    unused = frozenset(h for h, cb in _OPTIONAL_HOOKS.items() if not vm.has(cb))
    if not unused:
        return WasmFilter
    cls = _classes.get(unused)
    if cls is None:
        cls = _classes[unused] = type("WasmFilter", (WasmFilter,),
                                      {h: getattr(HttpFilter, h) for h in unused})
    return cls


def _new_future() -> asyncio.Future:
    try:
        return asyncio.get_running_loop().create_future()
    except RuntimeError:
        return asyncio.get_event_loop_policy().get_event_loop().create_future()


def load(name: str, raw: dict, build_ctx: BuildContext | None = None,
         base_dir: str | None = None) -> WasmFilter:
    """Parse options, compile the module (cached), start the VM; ValueError on any failure."""
    if base_dir is None:
        cfg_path = getattr(getattr(build_ctx, "config", None), "path", "") or ""
        base_dir = os.path.dirname(os.path.abspath(cfg_path)) if cfg_path else os.getcwd()
    plugin = config_mod.parse(name, raw, base_dir)
    try:
        with open(plugin.module_path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"module {plugin.module_path}: {e.strerror or e}") from None
    module = module_cache.compile_module(data, plugin.module_path)
    base = os.path.basename(plugin.module_path)
    if not any(e.name in abi.ABI_MARKERS for e in module.exports):
        raise ValueError(f"{base} is not a proxy-wasm module: it exports none of "
                         f"{', '.join(abi.ABI_MARKERS)}")
    check_imports(module, base)
    services = getattr(build_ctx, "services", None)
    from mosnx.runtime.stats import Store
    stats = services.stats if services is not None else Store()
    http_call = services.http_call if services is not None else None
    clusters = getattr(build_ctx, "clusters", None)
    vm = VM(plugin, module, stats, http_call=http_call, clusters=clusters)
    # a failure here is a config error (reported with its position), not a runtime one
    try:
        vm.start()
    except VMError as e:
        vm.retire()
        raise ValueError(f"{os.path.basename(plugin.module_path)}: {e}") from None
    except Exception as e:
        vm.retire()
        raise ValueError(f"{os.path.basename(plugin.module_path)}: plugin failed to start: "
                         f"{_describe(e)}") from None
    return _filter_class(vm)(plugin, vm)


def _describe(e: BaseException) -> str:
    from .vm import _first_line
    return _first_line(e)


def factory(name: str, config: dict, build_ctx: BuildContext) -> WasmFilter:
    return load(name, config, build_ctx)
