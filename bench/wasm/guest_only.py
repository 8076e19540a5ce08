#!/usr/bin/env python3
"""What a filter's own guest code costs per request, with no host around it.

    python bench/wasm/guest_only.py [--requests 200000] [--inflight 32] [--filters noop,header]

The filter runs in wasmtime (the engine settings mosnx uses) with every host
function it imports answered by a wasm stub (logging and header edits return OK),
but for the property and buffer reads a filter makes while its root context
starts: those answer from Python (the root id, an empty configuration), and the
script checks that no request reaches them. A
small driver module, in the same store, makes the callbacks of one proxied GET
(`proxy_on_context_create`, `proxy_on_request_headers`,
`proxy_on_response_headers`, `proxy_on_response_body`, then `proxy_on_log`,
`proxy_on_done`, `proxy_on_delete`) in a loop, keeping `--inflight` streams
open as wrk's connections do, all in one call from Python. The time per request
is thus the guest's alone: the floor any host pays for this filter, whatever
its own overhead. Best of `--repeats` rounds.
"""
from __future__ import annotations

import argparse
import sys
import time

import wasmtime

import common

FILTERS = {"noop": ("noop.wasm", "noop"), "header": ("add_header.wasm", "add_header")}

# result per import: None for no result, else the i32 it returns
_STUB_RESULTS = {
    "proxy_log": 0,
    "proxy_set_effective_context": 0,
    "proxy_add_header_map_value": 0,
    "proxy_replace_header_map_value": 0,
    "proxy_get_header_map_value": 1,
}

DRIVER = """
(module
  (import "f" "create" (func $create (param i32 i32)))
  (import "f" "req_headers" (func $req_headers (param i32 i32 i32) (result i32)))
  (import "f" "resp_headers" (func $resp_headers (param i32 i32 i32) (result i32)))
  (import "f" "resp_body" (func $resp_body (param i32 i32 i32) (result i32)))
  (import "f" "log" (func $log (param i32)))
  (import "f" "done" (func $done (param i32) (result i32)))
  (import "f" "delete" (func $delete (param i32)))
  ;; requests from id `first` to `first + n`, `inflight` open at a time; returns the next id
  (func $close (param $id i32)
    (call $log (local.get $id))
    (if (call $done (local.get $id)) (then (call $delete (local.get $id)))))
  (func (export "run") (param $first i32) (param $n i32) (param $inflight i32) (result i32)
    (local $id i32) (local $end i32)
    (local.set $id (local.get $first))
    (local.set $end (i32.add (local.get $first) (local.get $n)))
    (block $out
      (loop $next
        (br_if $out (i32.ge_u (local.get $id) (local.get $end)))
        (if (i32.ge_u (i32.sub (local.get $id) (local.get $first)) (local.get $inflight))
          (then (call $close (i32.sub (local.get $id) (local.get $inflight)))))
        (call $create (local.get $id) (i32.const 1))
        (drop (call $req_headers (local.get $id) (i32.const 5) (i32.const 1)))
        (drop (call $resp_headers (local.get $id) (i32.const 7) (i32.const 0)))
        (drop (call $resp_body (local.get $id) (i32.const 12) (i32.const 1)))
        (local.set $id (i32.add (local.get $id) (i32.const 1)))
        (br $next)))
    ;; close the streams still open, so the next round starts with none
    (local.set $end (local.get $id))
    (local.set $id (select (i32.sub (local.get $end) (local.get $inflight)) (local.get $first)
                           (i32.gt_u (local.get $n) (local.get $inflight))))
    (block $done
      (loop $more
        (br_if $done (i32.ge_u (local.get $id) (local.get $end)))
        (call $close (local.get $id))
        (local.set $id (i32.add (local.get $id) (i32.const 1)))
        (br $more)))
    (local.get $end)))
"""


# answered from Python, with the guest's memory: (name, params) -> handler
_PY = ("proxy_get_property", "proxy_get_buffer_bytes")


def _stub_module(imports) -> str:
    """A module exporting a stub for each import of the filter (those in _PY aside),
    under the import's own name."""
    lines = ["(module"]
    for imp in imports:
        if imp.name in _PY:
            continue
        ft = imp.type
        params = " ".join(_wat_type(t) for t in ft.params)
        results = " ".join(_wat_type(t) for t in ft.results)
        sig = (f" (param {params})" if params else "") + (f" (result {results})" if results else "")
        if imp.name == "proc_exit":
            body = "unreachable"
        elif not ft.results:
            body = ""
        else:
            body = f"(i32.const {_STUB_RESULTS.get(imp.name, 12)})"     # 12: Unimplemented
        lines.append(f'  (func (export "{imp.module}.{imp.name}"){sig} {body})')
    lines.append(")")
    return "\n".join(lines)


def _wat_type(t) -> str:
    for name in ("i32", "i64", "f32", "f64"):
        if t == getattr(wasmtime.ValType, name)():
            return name
    raise SystemExit(f"unsupported import type {t}")


def setup(path: str, root_id: str):
    from mosnx.wasm import module_cache
    engine = module_cache.engine()
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 40)
    module = wasmtime.Module.from_file(engine, path)
    stubs = wasmtime.Instance(store, wasmtime.Module(engine, _stub_module(module.imports)), [])
    sx = stubs.exports(store)
    calls = {"n": 0}
    ex = {}

    def give(data: bytes, ptr_ptr: int, size_ptr: int) -> int:
        mem = ex["memory"]
        addr = ex["malloc"](store, len(data)) if data else 0
        if data:
            mem.write(store, data, addr)
        mem.write(store, addr.to_bytes(4, "little"), ptr_ptr)
        mem.write(store, len(data).to_bytes(4, "little"), size_ptr)
        return 0

    def get_property(path_ptr, path_len, ptr_ptr, size_ptr):
        calls["n"] += 1
        path = ex["memory"].read(store, path_ptr, path_ptr + path_len)
        if path.rstrip(b"\0") == b"plugin_root_id":
            return give(root_id.encode(), ptr_ptr, size_ptr)
        return 1        # NotFound

    def get_buffer_bytes(kind, start, size, ptr_ptr, size_ptr):
        calls["n"] += 1
        return give(b"", ptr_ptr, size_ptr)

    py = {"proxy_get_property": get_property, "proxy_get_buffer_bytes": get_buffer_bytes}
    externs = []
    for i in module.imports:
        if i.name in _PY:
            externs.append(wasmtime.Func(store, i.type, py[i.name]))
        else:
            externs.append(sx[f"{i.module}.{i.name}"])
    inst = wasmtime.Instance(store, module, externs)
    ex.update(inst.exports(store))
    if "_start" in ex:
        ex["_start"](store)
    ex["proxy_on_context_create"](store, 1, 0)
    ex["proxy_on_vm_start"](store, 1, 0)
    ex["proxy_on_configure"](store, 1, 0)
    names = ["proxy_on_context_create", "proxy_on_request_headers", "proxy_on_response_headers",
             "proxy_on_response_body", "proxy_on_log", "proxy_on_done", "proxy_on_delete"]
    driver = wasmtime.Instance(store, wasmtime.Module(engine, DRIVER), [ex[n] for n in names])
    return store, driver.exports(store)["run"], calls


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--inflight", type=int, default=32)
    ap.add_argument("--filters", default=",".join(FILTERS))
    args = ap.parse_args(argv)
    print(f"{args.inflight} stream(s) open at a time; host functions are wasm stubs")
    for name in args.filters.split(","):
        module, root_id = FILTERS[name]
        store, run, calls = setup(str(common.module_path(module)), root_id)
        first = run(store, 2, 1000, args.inflight)      # warm up
        started = calls["n"]
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            first = run(store, first, args.requests, args.inflight)
            best = min(best, time.perf_counter() - t)
        if calls["n"] != started:
            raise SystemExit(f"{name}: requests called into Python ({calls['n'] - started} calls)")
        print(f"{name:<8} {best / args.requests * 1e6:6.2f} µs per request in the guest", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
