"""A filter's bug fails one request, never the worker: traps, endless loops,
memory hogs, unknown imports, bad configuration."""
from __future__ import annotations

import time

import pytest

from mosnx.runtime import Store

from .conftest import make, run


def test_trap_answers_500_and_the_next_request_runs_on_a_fresh_vm():
    stats = Store()
    f = make("trap", "trap.wat", stats=stats)
    r = run(f, headers=[("x-crash", "1")])
    assert r.status == 500 and not r.upstream_called
    assert r.detail == "wasm_failure"
    assert stats.counters["wasm.trap.failures"].value == 1
    ok = run(f)
    assert ok.status == 200 and ok.headers.get("x-wat") == "ok"
    assert stats.counters["wasm.trap.vm_starts"].value == 2


def test_trap_with_fail_open_lets_the_request_through():
    stats = Store()
    f = make("trap", "trap.wat", stats=stats, fail_open=True)
    r = run(f, headers=[("x-crash", "1")])
    assert r.status == 200 and r.upstream_called
    assert stats.counters["wasm.trap.failures"].value == 1


def test_endless_loop_is_interrupted_within_the_timeout():
    stats = Store()
    f = make("loop", "loop.wat", stats=stats, timeout="20ms")
    t = time.monotonic()
    r = run(f, headers=[("x-loop", "1")])
    elapsed = time.monotonic() - t
    assert r.status == 500 and r.detail == "wasm_failure"
    assert 0.020 <= elapsed < 1.0       # never cut before its limit
    assert stats.counters["wasm.loop.timeouts"].value == 1
    assert run(f).headers.get("x-wat") == "ok"


def test_many_short_callbacks_outlasting_the_timeout_together_are_not_cut():
    # the limit is per call: a VM busy with quick callbacks for longer than the
    # timeout in total (many epoch ticks) never trips it
    stats = Store()
    f = make("loop", "loop.wat", stats=stats, timeout="10ms")
    end = time.monotonic() + 0.1
    n = 0
    while time.monotonic() < end and n < 100_000:
        assert run(f).status == 200
        n += 1
    assert stats.counters["wasm.loop.timeouts"].value == 0
    assert stats.counters["wasm.loop.failures"].value == 0


def test_memory_hog_hits_the_store_limit_and_fails_the_request():
    stats = Store()
    f = make("hog", "memory_hog.wat", stats=stats, max_memory="4MiB")
    r = run(f, headers=[("x-hog", "1")])
    assert r.status == 500
    assert stats.counters["wasm.hog.failures"].value == 1
    assert run(f).status == 200


def test_unknown_import_is_a_load_error_naming_it():
    with pytest.raises(ValueError, match='"env.proxy_make_coffee"'):
        make("x", "unknown_import.wat")


def test_missing_module_is_a_load_error():
    with pytest.raises(ValueError, match="nope.wasm"):
        make("x", "nope.wasm")


@pytest.mark.parametrize("options, message", [
    ({"timeout": "soon"}, "timeout"),
    ({"max_memory": "lots"}, "max_memory"),
    ({"fail_open": "yes"}, "fail_open"),
    ({"bogus": 1}, "unknown option"),
])
def test_bad_options_are_load_errors(options, message):
    with pytest.raises(ValueError, match=message):
        make("x", "trap.wat", **options)


def test_in_flight_stream_of_a_failed_vm_is_left_alone():
    f = make("trap", "trap.wat")
    from mosnx.runtime import Headers, RequestHead, ResponseHead, StreamContext
    a = StreamContext(RequestHead("GET", "/", Headers.from_pairs([("host", "h")])))
    assert f.on_request(a) is None
    assert run(f, headers=[("x-crash", "1")]).status == 500
    a.response = ResponseHead(200, Headers())
    assert f.on_response(a) is None            # skipped: its VM is gone
    assert "x-wat" not in a.response.headers
    f.on_log(a)


PROC_EXIT_WAT = """
(module
  (import "wasi_unstable" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_unstable" "proc_exit" (func $exit (param i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "bye from stdout")
  (data (i32.const 8) "\\10\\00\\00\\00\\0f\\00\\00\\00")
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.ne (call $open (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                            (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0)) (i32.const 58))
      (then unreachable))
    (drop (call $write (i32.const 1) (i32.const 8) (i32.const 1) (i32.const 64)))
    (call $exit (i32.const 3))
    (i32.const 0)))
"""


def test_wasi_stdout_is_logged_and_proc_exit_fails_the_request(tmp_path, caplog):
    import logging
    (tmp_path / "exit.wat").write_text(PROC_EXIT_WAT)
    stats = Store()
    from mosnx.runtime.registry import BuildContext, Services
    from mosnx.wasm import load
    bctx = BuildContext(config=None, listener=None, clusters=set(), filters={}, services=Services(stats=stats))
    f = load("bye", {"module": "exit.wat"}, bctx, base_dir=str(tmp_path))
    with caplog.at_level(logging.INFO, logger="mosnx.wasm"):
        r = run(f)
    assert r.status == 500
    assert stats.counters["wasm.bye.failures"].value == 1
    text = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "bye from stdout" in text and "proc_exit(3)" in text


def test_module_without_abi_marker_is_refused(tmp_path):
    from mosnx.wasm import load
    (tmp_path / "plain.wat").write_text('(module (memory (export "memory") 1))')
    with pytest.raises(ValueError, match="not a proxy-wasm module"):
        load("plain", {"module": "plain.wat"}, None, base_dir=str(tmp_path))


def test_idle_vm_near_its_memory_limit_is_replaced_before_it_fails():
    stats = Store()
    f = make("noop", "noop.wasm", stats=stats, root_id="noop", max_memory="256KiB")
    for _ in range(4000):
        assert run(f).status == 200
    assert stats.counters["wasm.noop.vm_recycles"].value >= 1
    assert stats.counters["wasm.noop.failures"].value == 0


def test_busy_vm_near_its_memory_limit_is_replaced_while_its_streams_finish():
    # streams are always open here, so the VM is never idle: a new one takes the new
    # streams while those already open finish on the old one
    from collections import deque
    from mosnx.runtime import Headers, RequestHead, ResponseHead, StreamContext
    stats = Store()
    f = make("ah", "add_header.wasm", stats=stats, root_id="add_header", max_memory="256KiB")
    first = f.vm
    live = deque()
    for i in range(10000):
        ctx = StreamContext(RequestHead("GET", "/", Headers.from_pairs([("host", "h")])))
        ctx.request_bodyless = True
        assert f.on_request(ctx) is None
        assert ctx.request.headers.get("x-wasm-request") == "mosnx"
        live.append(ctx)
        if len(live) == 8:
            old = live.popleft()
            old.response = ResponseHead(200, Headers.from_pairs([("content-length", "2")]))
            assert f.on_response(old) is None
            assert old.response.headers.get("x-wasm-response") == "mosnx"
            assert f.on_response_body(old, b"ok", True) is None
            f.on_log(old)
    while live:
        f.on_log(live.popleft())
    assert stats.counters["wasm.ah.vm_recycles"].value >= 1
    assert stats.counters["wasm.ah.failures"].value == 0
    assert f.vm is not first and not first.alive and not first.contexts


ABI_010_WAT = """
(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-old-abi")
  (data (i32.const 32) "yes")
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_1_0"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32) (result i32)
    (drop (call $add (i32.const 0) (i32.const 16) (i32.const 9) (i32.const 32) (i32.const 3)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 16) (i32.const 9) (i32.const 32) (i32.const 3)))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1)))
"""


def test_abi_0_1_0_two_argument_header_callbacks(tmp_path):
    from mosnx.wasm import load
    (tmp_path / "old.wat").write_text(ABI_010_WAT)
    f = load("old", {"module": "old.wat"}, None, base_dir=str(tmp_path))
    assert f.vm.batch is None            # an export of another shape: called one by one
    r = run(f)
    assert r.upstream_headers.get("x-old-abi") == "yes" and r.headers.get("x-old-abi") == "yes"
    assert not f.vm.contexts


BODY_TRAP_WAT = """
(module
  (memory (export "memory") 1)
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  ;; traps on a response body of 4 bytes, lets any other through
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
    (if (i32.eq (local.get 1) (i32.const 4)) (then unreachable))
    (i32.const 0)))
"""


def test_trap_in_the_response_body_callback_fails_that_response_only(tmp_path):
    from mosnx.runtime.registry import BuildContext, Services
    from mosnx.wasm import load
    (tmp_path / "body_trap.wat").write_text(BODY_TRAP_WAT)
    stats = Store()
    bctx = BuildContext(config=None, listener=None, clusters=None, filters={}, services=Services(stats=stats))
    f = load("bt", {"module": "body_trap.wat"}, bctx, base_dir=str(tmp_path))
    r = run(f, upstream=(200, (), b"boom"))
    assert r.status == 500 and r.detail == "wasm_failure"
    assert stats.counters["wasm.bt.failures"].value == 1 and not f.vm.alive
    ok = run(f, upstream=(200, (), b"fine!"))
    assert ok.status == 200 and ok.body == b"fine!"
    assert stats.counters["wasm.bt.vm_starts"].value == 2
