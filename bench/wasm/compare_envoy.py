#!/usr/bin/env python3
"""Run the example filters in mosnx and in Envoy with the same .wasm and the same
requests, and print where the answers differ.

    python bench/wasm/compare_envoy.py [--mosnx PATH] [--envoy PATH]

Each filter gets its own listener on both proxies, in front of one echo
upstream (it reflects the path, body and a few headers back as x-echo-*) and
an auth upstream for the http_call filter. Headers that only one proxy adds by
design (server, date, x-envoy-*, x-request-id, ...) are not compared.
"""
from __future__ import annotations

import argparse
import http.client
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

CASES = [
    # (listener, method, path, headers, body)
    ("add_header", "GET", "/", [], None),
    ("add_header", "GET", "/", [("x-wasm-request", "client")], None),
    ("deny", "GET", "/", [], None),
    ("deny", "GET", "/", [("authorization", "Bearer x")], None),
    ("deny", "POST", "/", [], b"payload"),
    ("rewrite", "GET", "/old/a/b?q=1", [], None),
    ("rewrite", "GET", "/other", [], None),
    ("count", "GET", "/", [], None),
    ("count", "GET", "/", [], None),
    ("append", "GET", "/", [], None),
    ("append", "POST", "/", [], b"hello"),
    ("append_req", "POST", "/", [], b"hello"),
    ("props", "POST", "/p/q?x=1", [], b"abc"),
    ("props", "GET", "/", [], None),
    ("auth", "GET", "/", [("authorization", "Bearer good")], None),
    ("auth", "GET", "/", [("authorization", "Bearer bad")], None),
    ("body_auth", "POST", "/", [], b"ok, let me in"),
    ("body_auth", "POST", "/", [], b"evil payload"),
    ("chain", "GET", "/", [], None),
    ("chain", "GET", "/", [("authorization", "Bearer x")], None),
    ("trap", "GET", "/", [], None),
    ("trap", "GET", "/", [("x-crash", "1")], None),
    ("trap", "GET", "/", [], None),
]

FILTERS = {
    "add_header": [("ah", "add_header.wasm", "add_header", {"value": "cmp"})],
    "deny": [("deny", "deny.wasm", "deny", {})],
    "rewrite": [("rw", "rewrite_path.wasm", "rewrite_path", {"from": "/old/", "to": "/new/"})],
    "count": [("counter", "count.wasm", "count", {})],
    "append": [("ap", "append_body.wasm", "append_body", {"suffix": "+wasm"})],
    "append_req": [("apreq", "append_body.wasm", "append_body", {"suffix": "", "request_suffix": "+req"})],
    "props": [("props", "props.wasm", "props", {})],
    "auth": [("authz", "auth_call.wasm", "auth_call", {"cluster": "auth"})],
    "body_auth": [("bodyz", "body_auth.wasm", "body_auth", {"cluster": "auth"})],
    "chain": [("ah2", "add_header.wasm", "add_header", {"value": "chain"}),
              ("deny2", "deny.wasm", "deny", {})],
    "trap": [("trap", "trap.wasm", "", None)],
}

IGNORED = {"server", "date", "x-request-id", "x-envoy-upstream-service-time", "connection",
           "x-forwarded-for", "x-forwarded-proto", "keep-alive", "x-mosnx-error", "transfer-encoding",
           "content-length"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"exited early:\n{log.read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"port {port} never opened:\n{log.read_text()[-3000:]}")


def ask(port: int, method: str, path: str, headers, body):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body=body, headers=dict(headers))
        r = c.getresponse()
        data = r.read()
        hdrs = {}
        for k, v in r.getheaders():
            k = k.lower()
            if k == "x-prop-source":
                v = v.rsplit(":", 1)[0] + ":<port>"     # ephemeral client ports differ
            if k not in IGNORED:
                hdrs[k] = hdrs[k] + "," + v if k in hdrs else v
        return r.status, hdrs, data
    except Exception as e:
        return f"error: {e.__class__.__name__}", {}, b""
    finally:
        c.close()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mosnx", default=shutil.which("mosnx") or str(common.REPO / ".venv" / "bin" / "mosnx"))
    ap.add_argument("--envoy", default=None, help="Envoy binary (default: bench/.envoy-venv, set up by bench/run.py)")
    args = ap.parse_args(argv)
    envoy = args.envoy or str(common.bench_run().ensure_envoy())
    # the trap case needs a compiled module for Envoy (it loads only binaries)
    work = Path(tempfile.mkdtemp(prefix="mosnx-wasm-cmp-"))
    import wasmtime
    (work / "trap.wasm").write_bytes(wasmtime.wat2wasm((common.WAT / "trap.wat").read_text()))

    up, auth = free_port(), free_port()
    servers = [common.serve(common.EchoHandler, up), common.serve(common.AuthHandler, auth)]
    clusters = {"up": up, "auth": auth}

    def listeners(make):
        out = {}
        for name, specs in FILTERS.items():
            fs = []
            for inst, module, root_id, cfg in specs:
                f = make(inst, module, root_id, cfg)
                path = work / module if module == "trap.wasm" else None
                if path is not None:
                    f = _repath(f, path)
                fs.append(f)
            out[name] = (free_port(), fs)
        return out

    m_listeners = listeners(common.mosnx_filter)
    e_listeners = listeners(common.envoy_filter)
    (work / "mosnx.yaml").write_text(common.mosnx_config(m_listeners, clusters, free_port()))
    (work / "envoy.json").write_text(common.envoy_config(e_listeners, clusters, free_port()))
    procs = []
    try:
        mlog, elog = work / "mosnx.log", work / "envoy.log"
        procs.append(subprocess.Popen([args.mosnx, "run", "-c", str(work / "mosnx.yaml"), "--workers", "1"],
                                      stdout=open(mlog, "wb"), stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen([envoy, "-c", str(work / "envoy.json"), "--concurrency", "1",
                                       "--disable-hot-restart", "--log-level", "info"],
                                      stdout=open(elog, "wb"), stderr=subprocess.STDOUT))
        for ls, proc, log in ((m_listeners, procs[0], mlog), (e_listeners, procs[1], elog)):
            for port, _ in ls.values():
                wait_port(port, proc, log)
        same = differ = 0
        for listener, method, path, headers, body in CASES:
            m = ask(m_listeners[listener][0], method, path, headers, body)
            e = ask(e_listeners[listener][0], method, path, headers, body)
            label = f"{listener:<10} {method} {path} {dict(headers) or ''}{' body' if body else ''}"
            if m == e:
                same += 1
                print(f"same     {label}: {m[0]}")
                continue
            differ += 1
            print(f"DIFFERS  {label}")
            if m[0] != e[0]:
                print(f"           status  mosnx {m[0]}  envoy {e[0]}")
            for k in sorted(set(m[1]) | set(e[1])):
                if m[1].get(k) != e[1].get(k):
                    print(f"           {k}: mosnx {m[1].get(k)!r}  envoy {e[1].get(k)!r}")
            if m[2] != e[2]:
                print(f"           body    mosnx {m[2]!r}  envoy {e[2]!r}")
        print(f"\n{same} same, {differ} different; configs and logs in {work}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for s in servers:
            s.shutdown()
    return 0


def _repath(f: dict, path: Path) -> dict:
    if "wasm" in f:
        f["wasm"]["module"] = str(path)
    else:
        f["typed_config"]["config"]["vm_config"]["code"]["local"]["filename"] = str(path)
    return f


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
