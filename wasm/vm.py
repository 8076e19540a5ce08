"""One proxy-wasm VM: a wasmtime instance of a plugin's module, its root context
and its stream contexts.

Invariants:
- The Linker is built once per plugin; a Store and Instance are made at start and
  again only after a failure (trap, timeout, memory limit), never per request.
- Every call into the guest is bounded by the plugin timeout (fastcall.Watchdog,
  on wasmtime's epochs), so no callback can hold the worker much longer than that.
- `cur` is the effective context of the running callback (None: the root).
- A failed VM is not reused: its streams are stale (their later callbacks are
  skipped), paused ones are resolved with the failure outcome, and the next
  request starts a fresh instance.
- A VM whose memory nears its limit while streams are open hands new streams to
  a successor and is retired once its own have finished (`draining`).
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import weakref
from typing import Any, Mapping

import wasmtime

from mosnx.runtime.actions import LocalReply
from mosnx.runtime.stats import Store

from . import abi, batch, fastcall, log_gate, memory, module_cache
from .config import PluginConfig
from .abi_wasi import ProcExit
from .imports import GuestAbort, build_linker
from .metrics import Metrics

log = logging.getLogger("mosnx.wasm")

CALLBACKS = (
    "proxy_on_context_create", "proxy_on_vm_start", "proxy_on_configure",
    "proxy_on_request_headers", "proxy_on_request_body", "proxy_on_request_trailers",
    "proxy_on_response_headers", "proxy_on_response_body", "proxy_on_response_trailers",
    "proxy_on_log", "proxy_on_done", "proxy_on_delete", "proxy_on_tick",
    "proxy_on_http_call_response", "proxy_on_queue_ready",
)

DEFAULT_CALL_TIMEOUT = 10.0


class VMError(Exception):
    """The VM could not be started or configured."""


class Stream:
    """Host-side state of one HTTP stream context."""
    __slots__ = ("id", "ctx", "vm", "live", "future", "reply", "continued", "bufs", "modified",
                 "buffering", "props", "in_log", "done_pending", "headers_only",
                 "response_headers_only")

    def __init__(self, sid: int, ctx, vm: "VM"):
        self.id = sid
        self.ctx = ctx
        self.vm = vm            # the VM the context lives in
        self.live = True        # in its VM's contexts: False once removed or the VM failed
        self.future: asyncio.Future | None = None   # set while the stream is paused
        self.reply: LocalReply | None = None        # a local reply sent in the running callback
        self.continued = False                      # proxy_continue_stream before the pause began
        self.bufs: list[bytes | bytearray | None] = [None, None]    # request, response body in view
        self.modified = [False, False]
        self.buffering = [False, False]
        self.props: dict[bytes, bytes] | None = None
        self.in_log = False
        self.done_pending = False
        self.headers_only = False     # the request headers callback was told end_of_stream
        self.response_headers_only = False    # and the response headers callback

    def resume(self, outcome) -> None:
        """Continue the stream (outcome None) or end it with a LocalReply."""
        f = self.future
        if f is not None:
            self.future = None
            if not f.done():
                f.set_result(outcome)
        elif outcome is None:
            self.continued = True
        else:
            self.reply = outcome

    def reply_with(self, reply: LocalReply) -> None:
        self.resume(reply)


class VM:
    ROOT_ID = 1

    def __init__(self, plugin: PluginConfig, module: wasmtime.Module, stats: Store,
                 http_call=None, clusters: set[str] | None = None):
        self.plugin = plugin
        self.module = module
        self.engine = module_cache.engine()
        module_cache.start_ticker()
        self.period = module_cache.watch_period(plugin.timeout)
        self.watch: fastcall.Watchdog | None = None
        self.host_callbacks: list = []      # C callbacks must outlive the Linker
        self.log_gate = False
        self.linker = build_linker(self, module)
        self.stats = stats
        self.metrics = Metrics(stats, plugin.name)
        prefix = f"wasm.{plugin.name}."
        self.stat_failures = stats.counter(prefix + "failures")
        self.stat_timeouts = stats.counter(prefix + "timeouts")
        self.stat_starts = stats.counter(prefix + "vm_starts")
        self.stat_calls = stats.counter(prefix + "http_calls")
        self.stat_recycles = stats.counter(prefix + "vm_recycles")
        # Some SDK runtimes never give linear memory back (the AssemblyScript SDK
        # grows ~40-60 bytes a request); a VM above this is replaced before it
        # reaches the limit and fails a request.
        self.recycle_at = plugin.max_memory * 3 // 4
        self.memory_checks = 0
        self.draining = False       # a successor takes new streams; retired when idle
        self.http_call = http_call
        self.clusters = clusters
        self.failure_outcome = None if plugin.fail_open else LocalReply(
            500, b"wasm filter failed\n", (("content-type", "text/plain"),), "wasm_failure")
        self.gen = 0
        self.alive = False
        self.store: wasmtime.Store | None = None
        self.ctx: Any = None            # the store's raw context (fastcall)
        self.exports: Mapping[str, Any] | None = None
        self.memory: wasmtime.Memory | None = None
        self.mem_ref: Any = None
        self.mem: memoryview | None = None     # linear memory, mapped once (memory.py)
        self.mem_size = 0
        self.alloc: fastcall.GuestFunc | None = None
        self.cb: dict = {}      # callback name -> its top-level caller (GuestFunc.top)
        self.batch: tuple | None = None     # (open, close) top-level callers (batch.py)
        # the per-stream callbacks the filter calls by themselves, None when not exported
        self.on_response_headers = self.on_response_body = None
        self.cur: Stream | None = None
        self.props: dict[bytes, bytes] = {}
        self.contexts: dict[int, Stream] = {}
        self.next_id = 2
        self.calls: dict[int, int] = {}
        self.next_call = 1
        self.call_response: tuple | None = None  # (headers, body, trailers) during on_http_call_response
        self.call_status: tuple[int, bytes] | None = None
        self.tick_period = 0.0
        self.tick_handle: asyncio.TimerHandle | None = None

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        """Instantiate and run the root lifecycle; raises VMError (or a trap)."""
        self.retire()
        self.gen += 1
        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=self.plugin.max_memory)
        self.watch = watch = fastcall.Watchdog(store, self.plugin.timeout, self.period)
        self.store = store
        self.ctx = store._context()     # before instantiation: a start function may call imports
        try:
            if self.log_gate:
                log_gate.install(store, self.linker, log)
            inst = self.linker.instantiate(store, self.module)
        except wasmtime.WasmtimeError as e:
            raise VMError(f"cannot instantiate: {_first_line(e)}") from None
        ex = self.exports = inst.exports(store)
        mem = ex.get("memory")
        if not isinstance(mem, wasmtime.Memory):
            raise VMError('the module does not export its memory as "memory"')
        alloc = ex.get("malloc") or ex.get("proxy_on_memory_allocate")
        if not isinstance(alloc, wasmtime.Func):
            raise VMError('the module exports no allocator ("malloc" or "proxy_on_memory_allocate")')
        self.memory, self.mem_ref = mem, ctypes.byref(mem._memory)
        self.mem, self.mem_size = memory.map_memory(self.ctx, self.mem_ref, self.plugin.max_memory)
        try:
            self.alloc = fastcall.GuestFunc(store, alloc, watch)
            self.cb = {n: fastcall.GuestFunc(store, f, watch).top for n in CALLBACKS
                       if isinstance(f := ex.get(n), wasmtime.Func)}
        except TypeError as e:
            raise VMError(f"an exported callback has an unexpected type: {e}") from None
        cb = self.cb
        self.on_response_headers = cb.get("proxy_on_response_headers")
        self.on_response_body = cb.get("proxy_on_response_body")
        b = batch.build(store, ex, watch)
        self.batch = None if b is None else (b[0].top, b[1].top)
        self.cur = None
        self.stat_starts.inc()
        init = ex.get("_initialize")
        if isinstance(init, wasmtime.Func):
            self._enter(init)
            main = ex.get("main")
            if isinstance(main, wasmtime.Func) and len(main.type(store).params) == 2:
                self._enter(main, 0, 0)
        elif isinstance(start := ex.get("_start"), wasmtime.Func):
            self._enter(start)
        self.call("proxy_on_context_create", self.ROOT_ID, 0)
        if self.call("proxy_on_vm_start", self.ROOT_ID, len(self.plugin.vm_config)) == 0:
            raise VMError("proxy_on_vm_start returned false (VM configuration rejected)")
        if self.call("proxy_on_configure", self.ROOT_ID, len(self.plugin.config)) == 0:
            raise VMError("proxy_on_configure returned false (plugin configuration rejected)")
        self.alive = True

    def ensure(self) -> bool:
        """Start a fresh instance if the last one failed; False if that failed too."""
        if self.alive:
            return True
        try:
            self.start()
        except Exception as e:
            self.fail(e, "start")
            return False
        return True

    def memory_high(self) -> bool:
        self.mem_size = fastcall.memory_base(self.ctx, self.mem_ref)[1]
        return self.mem_size > self.recycle_at

    def recycle(self) -> bool:
        """Replace an idle instance whose memory is near its limit; False if the new one failed."""
        self.stat_recycles.inc()
        log.info('wasm filter "%s": memory above %d bytes, starting a fresh VM',
                 self.plugin.name, self.recycle_at)
        try:
            self.start()
        except Exception as e:
            self.fail(e, "start")
            return False
        return True

    def successor(self) -> "VM":
        """A fresh, started VM of the same plugin for new streams, while the streams
        open in this one finish here (it is retired after the last); raises as start()."""
        self.stat_recycles.inc()
        log.info('wasm filter "%s": memory above %d bytes with streams open, starting a fresh '
                 'VM for new streams', self.plugin.name, self.recycle_at)
        new = VM(self.plugin, self.module, self.stats, http_call=self.http_call, clusters=self.clusters)
        try:
            new.start()
        except BaseException:
            new.retire()
            raise
        self.draining = True
        self.set_tick(0)        # the successor's root context ticks now
        return new

    def fail(self, exc: BaseException, where: str) -> None:
        """Record a failure and retire the instance; paused streams get the failure outcome."""
        self.stat_failures.inc()
        timeout = (self.watch is not None and self.watch.expired
                   or isinstance(exc, wasmtime.Trap) and exc.trap_code == wasmtime.TrapCode.INTERRUPT)
        if timeout:
            self.stat_timeouts.inc()
            why = f"exceeded its {self.plugin.timeout * 1000:g} ms time limit"
        else:
            why = _first_line(exc)
        # anything but the guest's own failures is a bug on the host side: keep its traceback
        expected = isinstance(exc, (wasmtime.Trap, wasmtime.WasmtimeError, VMError, ProcExit, GuestAbort))
        log.error('wasm filter "%s": %s failed: %s', self.plugin.name, where, why,
                  exc_info=None if expected else exc)
        self.retire()

    def retire(self) -> None:
        self.alive = False
        self.cur = None
        self.call_response = None
        streams = list(self.contexts.values())
        self.contexts.clear()
        for st in streams:
            st.live = False
        self.calls.clear()
        if self.tick_handle is not None:
            self.tick_handle.cancel()
            self.tick_handle = None
        self.tick_period = 0.0
        for st in streams:
            if st.future is not None:
                st.resume(self.failure_outcome)
        self.store = self.ctx = self.exports = None
        self.memory = self.mem_ref = self.alloc = self.mem = None
        self.mem_size = 0
        self.cb = {}
        self.batch = None
        self.on_response_headers = self.on_response_body = None

    # -- calling into the guest ---------------------------------------------
    def _enter(self, func: wasmtime.Func, *args):
        # only a started VM calls in: it has its watchdog and store
        self.watch.calls += 1  # type: ignore[union-attr]
        return func(self.store, *args)  # type: ignore[arg-type]

    def call(self, name: str, *args):
        f = self.cb.get(name)
        if f is None:
            return None
        return f(*args)

    def has(self, name: str) -> bool:
        return name in self.cb

    def has_calls(self, st: Stream) -> bool:
        """True while an http_call made for the stream is out."""
        sid = st.id
        return any(s == sid for s in self.calls.values())

    # -- stream contexts -----------------------------------------------------
    def new_stream(self, ctx) -> Stream:
        sid = self.next_id
        self.next_id = sid + 1 if sid < 0xFFFFFFFF else 2
        st = Stream(sid, ctx, self)
        self.contexts[sid] = st
        if self.tick_period and self.tick_handle is None:
            self._schedule_tick()
        self.cur = st
        try:
            self.call("proxy_on_context_create", sid, self.ROOT_ID)
        finally:
            self.cur = None
        return st

    def open_stream(self, ctx, n_headers: int, end_of_stream: bool) -> tuple[Stream, int | None]:
        """A new stream context and its request headers callback: (stream, action)."""
        b = self.batch
        if b is None:
            st = self.new_stream(ctx)
            st.headers_only = end_of_stream
            return st, self.stream_call(st, "proxy_on_request_headers", st.id, n_headers, int(end_of_stream))
        sid = self.next_id
        self.next_id = sid + 1 if sid < 0xFFFFFFFF else 2
        st = Stream(sid, ctx, self)
        st.headers_only = end_of_stream
        self.contexts[sid] = st
        if self.tick_period and self.tick_handle is None:
            self._schedule_tick()
        self.cur = st
        try:
            return st, b[0](sid, self.ROOT_ID, n_headers, end_of_stream)
        finally:
            self.cur = None

    def stream_call(self, st: Stream, name: str, *args):
        self.cur = st
        try:
            return self.call(name, *args)
        finally:
            self.cur = None

    def finish(self, st: Stream) -> None:
        """proxy_on_log, proxy_on_done, proxy_on_delete (unless the plugin defers with proxy_done)."""
        st.in_log = True
        bufs = st.bufs
        bufs[0] = bufs[1] = None
        if self.calls:
            # as Envoy: the stream's pending http calls are cancelled, their answers never delivered
            for cid in [c for c, sid in self.calls.items() if sid == st.id]:
                del self.calls[cid]
        self.cur = st
        try:
            b = self.batch
            if b is not None:
                done = b[1](st.id)
            else:
                self.call("proxy_on_log", st.id)
                done = self.call("proxy_on_done", st.id) != 0
                if done:
                    self.call("proxy_on_delete", st.id)
            if not done:
                st.done_pending = True
                return
        finally:
            self.cur = None
        st.live = False
        self.contexts.pop(st.id, None)
        if self.draining and not self.contexts:
            self.retire()

    def context_done(self) -> int:
        st = self.cur
        if st is None or not st.done_pending:
            return abi.NOT_FOUND
        st.done_pending = False
        try:
            asyncio.get_running_loop().call_soon(self._delete_later, self.gen, st.id)
        except RuntimeError:
            st.live = False
            self.contexts.pop(st.id, None)
            if self.draining and not self.contexts:
                self.retire()
        return abi.OK

    def _delete_later(self, gen: int, sid: int) -> None:
        if gen != self.gen or not self.alive or sid not in self.contexts:
            return
        st = self.contexts.pop(sid)
        st.live = False
        try:
            self.stream_call(st, "proxy_on_delete", sid)
        except Exception as e:
            self.fail(e, "proxy_on_delete")
            return
        if self.draining and not self.contexts:
            self.retire()

    def set_effective(self, cid: int) -> int:
        if cid == self.ROOT_ID:
            self.cur = None
            return abi.OK
        st = self.contexts.get(cid)
        if st is None:
            return abi.BAD_ARGUMENT
        self.cur = st
        return abi.OK

    def local_reply(self, status: int, body: bytes, pairs, details: bytes) -> LocalReply:
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in pairs]
        if body and not any(k == "content-type" for k, _ in headers):
            headers.append(("content-type", "text/plain"))
        detail = details.decode("utf-8", "replace").replace(" ", "_") or "wasm_local_reply"
        return LocalReply(status, body, tuple(headers), detail)

    # -- http calls ----------------------------------------------------------
    def start_http_call(self, cluster: str, headers, body: bytes, trailers, timeout: float):
        if self.clusters is not None and cluster not in self.clusters:
            return abi.BAD_ARGUMENT, 0
        fn = self.http_call
        if fn is None:
            return abi.INTERNAL_FAILURE, 0
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return abi.INTERNAL_FAILURE, 0
        cid = self.next_call
        self.next_call = cid + 1 if cid < 0xFFFFFFFF else 1
        st = self.cur
        self.calls[cid] = st.id if st is not None else 0
        self.stat_calls.inc()
        hdrs = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in headers]
        loop.create_task(self._run_call(cid, self.gen, fn, cluster, hdrs, body,
                                        timeout or DEFAULT_CALL_TIMEOUT))
        return abi.OK, cid

    async def _run_call(self, cid, gen, fn, cluster, headers, body, timeout) -> None:
        try:
            status, rh, rb = await asyncio.wait_for(fn(cluster, headers, body, timeout), timeout)
            resp: tuple | None = ([(b":status", str(status).encode())]
                    + [(_b(k).lower(), _b(v)) for k, v in rh], bytes(rb or b""), [])
        except Exception as e:
            log.info('wasm filter "%s": http_call to %s failed: %s', self.plugin.name, cluster,
                     _first_line(e) if str(e) else type(e).__name__)
            resp = None
        self.deliver_call(cid, gen, resp)

    def deliver_call(self, cid: int, gen: int, resp) -> None:
        if gen != self.gen or not self.alive or cid not in self.calls:
            return
        del self.calls[cid]
        self.call_response = resp if resp is not None else ([], b"", [])
        self.call_status = (0, b"") if resp is not None else (14, b"unavailable")
        self.cur = None
        try:
            if resp is None:
                self.call("proxy_on_http_call_response", self.ROOT_ID, cid, 0, 0, 0)
            else:
                self.call("proxy_on_http_call_response", self.ROOT_ID, cid,
                          len(resp[0]), len(resp[1]), len(resp[2]))
        except Exception as e:
            self.fail(e, "proxy_on_http_call_response")
        finally:
            self.call_response = None
            self.call_status = None
            self.cur = None

    # -- timers and queues ---------------------------------------------------
    def set_tick(self, period_ms: int) -> None:
        self.tick_period = period_ms / 1000.0
        if self.tick_handle is not None:
            self.tick_handle.cancel()
            self.tick_handle = None
        if self.tick_period:
            self._schedule_tick()

    def _schedule_tick(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return          # no loop while the snapshot is built: the first stream starts it
        self.tick_handle = loop.call_later(self.tick_period, _tick, weakref.ref(self), self.gen)

    def notify_queue(self, root_id: int, qid: int) -> None:
        try:
            asyncio.get_running_loop().call_soon(_queue_ready, weakref.ref(self), self.gen, qid)
        except RuntimeError:
            pass


def _tick(ref, gen: int) -> None:
    vm = ref()
    if vm is None or vm.gen != gen or not vm.alive:
        return
    vm.tick_handle = None
    vm.cur = None
    try:
        vm.call("proxy_on_tick", vm.ROOT_ID)
    except Exception as e:
        vm.fail(e, "proxy_on_tick")
        return
    if vm.tick_period and vm.tick_handle is None:
        vm._schedule_tick()


def _queue_ready(ref, gen: int, qid: int) -> None:
    vm = ref()
    if vm is None or vm.gen != gen or not vm.alive:
        return
    vm.cur = None
    try:
        vm.call("proxy_on_queue_ready", vm.ROOT_ID, qid)
    except Exception as e:
        vm.fail(e, "proxy_on_queue_ready")


def _b(s) -> bytes:
    return s if isinstance(s, bytes) else str(s).encode("latin-1")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    if not text:
        return type(e).__name__
    lines = text.splitlines()
    # wasmtime puts the cause ("wasm trap: ...") last; keep it with the first line
    first = lines[0]
    cause = next((ln.strip() for ln in reversed(lines) if "trap" in ln or "exit" in ln), "")
    return f"{first} ({cause})" if cause and cause != first else first
