"""Calls between Python and the guest through wasmtime's unchecked C entry points.

wasmtime-py's generic Func.__call__ and host trampoline look up the function
type, build Val objects and a Caller per call: ~15 µs per guest call and as much
again per host call, several times the work of a typical filter. Signatures
here are all known when a module is linked (i32/i64 only), so calls use raw
value arrays, made once per function, instead. Both directions go further and
generate, per function, a small Python function for its exact signature: the
arguments are stored into (or read out of) the value array by index, and the C
call gets ctypes objects built once, so ctypes converts nothing per call. A
request through a filter makes a few guest calls, each worth a few hundred
nanoseconds of Python at most this way.

This reaches into wasmtime-py's private modules (_bindings, _ffi, the handles
inside Func and Memory); it was written against wasmtime-py 50 and checks at
import what it relies on.

A Python exception raised by a host function becomes a trap (so the guest
unwinds) and is re-raised from the guest call that was running: `pending` holds
it in between. Calls are never re-entered for the same function (a host
function only calls back into the guest's allocator), so each GuestFunc reuses
its value array.
"""
from __future__ import annotations

import ctypes
import time
import weakref
from ctypes import POINTER, byref, c_void_p, cast

import wasmtime
from wasmtime import _bindings as _raw
from wasmtime import _ffi as ffi

_val_raw = ffi.wasmtime_val_raw_t
_monotonic = time.monotonic
# The ctypes functions themselves, not the bindings' Python wrappers around them.
_call_unchecked = _raw._wasmtime_func_call_unchecked
_memory_size = _raw._wasmtime_memory_data_size
# a private handle on wasmtime_memory_data returning the address as an int
_memory_data = _raw.dll["wasmtime_memory_data"]
_memory_data.restype = c_void_p
_memory_data.argtypes = _raw._wasmtime_memory_data.argtypes
_trap_p = POINTER(ffi.wasm_trap_t)
_Callback = ffi.wasmtime_func_unchecked_callback_t
_NO_FINALIZER = ctypes.cast(None, ctypes.CFUNCTYPE(None, c_void_p))  # type: ignore[arg-type]  # a null pointer

# a raw value is 16 bytes (v128 is the widest member): value i starts at int32 word 4*i
if ctypes.sizeof(_val_raw) != 16:
    raise ImportError(f"mosnx.wasm expects 16-byte wasmtime_val_raw_t, this wasmtime has "
                      f"{ctypes.sizeof(_val_raw)}")

_I32 = wasmtime.ValType.i32()
_I64 = wasmtime.ValType.i64()


class _Pending:
    exc: BaseException | None = None


pending = _Pending()


def _raise(err, trap) -> None:
    """Raise for a failed call: the host exception behind it, else the error or trap."""
    exc, pending.exc = pending.exc, None
    if err:
        if not hasattr(err, "contents"):
            err = cast(err, POINTER(ffi.wasmtime_error_t))
        e = wasmtime.WasmtimeError._from_ptr(err)
        raise (exc or e)
    if not hasattr(trap, "contents"):
        trap = cast(trap, _trap_p)
    t = wasmtime.Trap._from_ptr(trap)
    if exc is not None:
        raise exc
    raise t


def kinds_of(types) -> str | None:
    """'i'/'I' per i32/i64 type, or None if any other type appears."""
    out = []
    for t in types:
        if t == _I32:
            out.append("i")
        elif t == _I64:
            out.append("I")
        else:
            return None
    return "".join(out)


# wasmtime_store_epoch_deadline_callback's callback: (context, data, *delta, *kind) -> error
_DeadlineCallback = _raw._wasmtime_store_epoch_deadline_callback.argtypes[1]
_UPDATE_CONTINUE = 0


class Watchdog:
    """Bounds each top-level guest call of one store in time, without a C call per call.

    Re-arming the epoch deadline before every call costs a C call; instead the
    deadline stays armed `period` ticks ahead and wasmtime calls back here when
    the epoch passes it. A top-level call only bumps `calls`. When the callback
    finds the same call running that it saw at an earlier callback, the call has
    run at least since then; once that reaches `limit` seconds it fails (an
    `expired` error), else the deadline moves on. A call is thus stopped after
    between `limit` and `limit` plus one period.
    """
    __slots__ = ("calls", "seen", "seen_at", "limit", "period", "expired", "_cb", "__weakref__")

    def __init__(self, store: wasmtime.Store, limit: float, period: int):
        self.calls = 0
        self.seen = -1
        self.seen_at = 0.0
        self.limit = limit
        self.period = period
        self.expired = False
        ref = weakref.ref(self)

        def on_deadline(ctx, data, delta, kind):
            w = ref()
            if w is None:
                delta[0] = period
                kind[0] = _UPDATE_CONTINUE
                return 0
            now = _monotonic()
            if w.calls != w.seen:
                w.seen = w.calls
                w.seen_at = now
            elif now - w.seen_at >= w.limit:
                w.expired = True
                msg = b"wasm callback exceeded its time limit"
                return cast(ffi.wasmtime_error_new(msg), c_void_p).value or 0
            delta[0] = w.period
            kind[0] = _UPDATE_CONTINUE
            return 0

        self._cb = _DeadlineCallback(on_deadline)       # kept alive with the store's VM
        _raw._wasmtime_store_epoch_deadline_callback(store.ptr(), self._cb, None, _NO_FINALIZER)
        store.set_epoch_deadline(period)


class GuestFunc:
    """An exported guest function, called with ints and returning an int (or None).

    `top` and `nested` are the hot entry points: closures made for this function's
    arity, whose arguments go straight into the value array and whose C call
    passes ctypes objects built once (ctypes converts nothing per call). `top` is a
    top-level call, bounded by the store's Watchdog; `nested` a call made from a
    host function (the guest's allocator), already inside one.
    """
    __slots__ = ("ctx", "ref", "vals", "words", "n", "nparams", "slots", "result", "func",
                 "ctx_addr", "trap", "watch", "top", "nested")

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func, watch: Watchdog | None = None):
        self.watch = watch
        ty = func.type(store)
        pk = kinds_of(ty.params)
        rk = kinds_of(ty.results)
        if pk is None or rk is None or len(rk) > 1:
            raise TypeError("only i32/i64 parameters and at most one i32/i64 result are supported")
        self.func = func
        self.ctx = store._context()
        self.ref = byref(func._func)
        self.nparams = len(pk)
        self.n = max(len(pk), len(rk), 1)
        self.vals = (_val_raw * self.n)()
        # Each raw value is 16 bytes; an i32 is its first 4 and an i64 its first 8,
        # so plain int arrays over the same bytes set and read them without
        # building a ctypes union per value.
        self.words = (ctypes.c_int32 * (4 * self.n)).from_buffer(self.vals)
        longs = (ctypes.c_int64 * (2 * self.n)).from_buffer(self.vals)
        self.slots = [(self.words, 4 * i) if k == "i" else (longs, 2 * i) for i, k in enumerate(pk)]
        self.result = None if not rk else ((self.words, 0) if rk == "i" else (longs, 0))
        self.ctx_addr: int = cast(self.ctx, c_void_p).value  # type: ignore[assignment]  # a live store's context is not null
        self.trap = c_void_p()      # stays null but for the moment a trap is read out of it
        self.top = _specialise(self, pk, rk, counted=watch is not None)
        self.nested = _specialise(self, pk, rk, counted=False)

    def call(self, ctx, *args):
        """Call with the store context `ctx` (the store's own, or a host call's)."""
        if len(args) != self.nparams:
            raise TypeError(f"expected {self.nparams} arguments, got {len(args)}")
        for (arr, i), v in zip(self.slots, args):
            arr[i] = v
        trap = _trap_p()
        err = _call_unchecked(ctx, self.ref, self.vals, self.n, byref(trap))
        if err or trap:
            _raise(err, trap)
        r = self.result
        return None if r is None else r[0][r[1]]

    def __call__(self, *args):
        return self.call(self.ctx, *args)


# wasmtime_func_call_unchecked without argtypes: every argument is passed as a
# ready ctypes object, which ctypes hands over as is.
_call_prebuilt = ctypes.CFUNCTYPE(c_void_p)(
    ctypes.cast(_raw.dll["wasmtime_func_call_unchecked"], c_void_p).value)  # type: ignore[arg-type]  # a found symbol is not null


def _word(value: int):
    """A ready argument passing `value` as a pointer-sized word. ctypes takes a byref()
    object as it is, where a c_void_p or c_size_t argument is first wrapped in a new
    object on every call; the object at that "address" is never read."""
    return byref(ctypes.c_char.from_address(value))


def _specialise(g: GuestFunc, pk: str, rk: str, counted: bool):
    """A caller for `g` taking exactly its parameters (extra arguments are dropped:
    ABI 0.1.0 header callbacks take no end_of_stream), generated once per function."""
    names = [f"p{i}" for i in range(len(pk))]
    sets = [f"    words[{4 * i}] = {n}" if k == "i" else f"    longs[{2 * i}] = {n}"
            for i, (k, n) in enumerate(zip(pk, names))]
    ret = "None" if not rk else ("words[0]" if rk == "i" else "longs[0]")
    src = "\n".join([
        f"def call({', '.join(names + ['*_'])}):",
        *(["    watch.calls += 1"] if counted else []),
        *sets,
        "    err = raw(a_ctx, a_func, a_vals, a_n, a_trap)",
        "    if err or trap.value:",
        "        fail(trap, err)",
        f"    return {ret}",
    ])
    env = {
        "watch": g.watch, "words": g.words, "longs": (ctypes.c_int64 * (2 * g.n)).from_buffer(g.vals),
        "raw": _call_prebuilt, "a_ctx": _word(g.ctx_addr), "a_func": byref(g.func._func),
        "a_vals": byref(g.vals), "a_n": _word(g.n), "a_trap": byref(g.trap),
        "trap": g.trap, "fail": _fail,
        "guest": g,     # keeps the Func (whose handle a_func points into) alive with the caller
    }
    exec(src, env)
    return env["call"]


def _fail(trap: c_void_p, err) -> None:
    t = trap.value
    trap.value = None
    _raise(err, t)


def memory_base(ctx, mem_ref) -> tuple[int, int]:
    """(address, size) of a linear memory, for the store context `ctx`."""
    return _memory_data(ctx, mem_ref) or 0, _memory_size(ctx, mem_ref)


# The same C signature as wasmtime_func_unchecked_callback_t, but the values
# arrive as a plain int32 array (raw value i at word 4*i), read without unions.
_WordsCallback = ctypes.CFUNCTYPE(ctypes.c_size_t, c_void_p, c_void_p, POINTER(ctypes.c_int32), ctypes.c_size_t)


def host_callback(fn, vm, params: str, results: str, on_error):
    """A C callback running `fn(vm, ctx, *args)`, ctx being vm.ctx (a host call's caller
    context is its store's context); `on_error(exc)` maps an exception to a status, or
    None to trap. Generated for the signature, so the arguments are read straight
    out of the value array."""
    args = "".join(f", w[{4 * i}]" if k == "i" else f", (w[{4 * i}] & 0xFFFFFFFF) | (w[{4 * i + 1}] << 32)"
                   for i, k in enumerate(params))
    if results == "I":
        store = ["    r = r or 0", "    w[0] = r & 0xFFFFFFFF", "    w[1] = (r >> 32) & 0xFFFFFFFF"]
    elif results:
        store = ["    w[0] = r or 0"]
    else:
        store = []
    src = "\n".join([
        "def cb(env, caller, w, nvals):",
        "    try:",
        f"        r = fn(vm, vm.ctx{args})",
        "    except BaseException as e:",
        "        r = on_error(e)",
        "        if r is None:",
        "            pending.exc = e",
        "            return trap()",
        *store,
        "    return 0",
    ])
    env = {"fn": fn, "vm": vm, "on_error": on_error, "pending": pending, "trap": _host_trap}
    exec(src, env)
    raw = _WordsCallback(env["cb"])
    return raw, ctypes.cast(raw, _Callback)


def _host_trap() -> int:
    msg = b"host function failed"
    return cast(ffi.wasmtime_trap_new(msg, len(msg)), c_void_p).value or 0


def define(linker: wasmtime.Linker, module: str, name: str, ty: wasmtime.FuncType, callback) -> None:
    """Define `callback` (the pair host_callback returns) as module.name in `linker`."""
    callback = callback[1]
    m = module.encode()
    nm = name.encode()
    err = ffi.wasmtime_linker_define_func_unchecked(
        linker.ptr(), ctypes.create_string_buffer(m), len(m), ctypes.create_string_buffer(nm), len(nm),
        ty.ptr(), callback, None, _NO_FINALIZER)
    if err:
        raise wasmtime.WasmtimeError._from_ptr(err)
