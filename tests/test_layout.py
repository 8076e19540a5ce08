"""Unit tests mirror the source tree: proxy/codec/http1.py is tested in
tests/proxy/codec/test_http1.py, runtime/filters/fault.py in
tests/runtime/filters/test_fault.py. A second file for one module is named
test_<module>_<aspect>.py (tests/dsl/test_check_mutants.py is about dsl/check.py).

Every module under the source roots (dsl/, runtime/, wasm/, proxy/: setup.py maps
them to mosnx.dsl, mosnx.runtime, ...) needs a test file at its mirrored path, or
an entry in EXEMPT saying why not; a reason that names a test file (the end-to-end
test that covers the module) names one that exists. Every .py file under
tests/<root>/ is the test of an existing module, or a helper listed in HELPERS, or
one of PENDING. tests/e2e and tests/fuzz are organised by feature, not module.
"""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
ROOTS = ("dsl", "runtime", "wasm", "proxy")

# module (path from the repository root) -> why it has no test file at its mirrored path
EXEMPT: dict[str, str] = {
    # package markers: re-exports and registration, exercised by every import of the package
    "dsl/__init__.py": "package marker: re-exports the loader, used by every dsl test",
    "runtime/__init__.py": "package marker: re-exports the contract, used by every runtime test",
    "runtime/config/__init__.py": "package marker: re-exports load_config, tested in tests/runtime/config/test_loader.py",
    "runtime/filters/__init__.py": "package marker: registers the built-in filters (tests/runtime/filters/conftest.py)",
    "runtime/envoy/__init__.py": "package marker: the Envoy translators, tested module by module in tests/runtime/envoy/",
    "runtime/envoy/translate.py": "re-exports the translators, each tested at its own path: tests/runtime/envoy/test_routes.py",
    "wasm/__init__.py": "package marker: registers the wasm filter factory, used by every wasm test",
    "proxy/__init__.py": "package marker",
    "proxy/codec/__init__.py": "package marker",
    "proxy/http1/__init__.py": "package marker",
    "proxy/http2/__init__.py": "package marker",
    "proxy/tcp/__init__.py": "package marker",
    "proxy/rpc/__init__.py": "package marker: registers the shipped codecs (tests/proxy/rpc/test_codec.py)",
    "proxy/rpc/pool.py": "the multiplexed upstream, end to end against scripted peers: tests/e2e/test_rpc_upstream.py",
    "proxy/upstream/__init__.py": "package marker: re-exports the cluster manager",
    "proxy/stream/__init__.py": "package marker: HttpStream, loaded when first asked for",
    "proxy/fastpath/__init__.py": "package marker",
    "proxy/tracing/__init__.py": "package marker",
    "runtime/tracing/__init__.py": "package marker",
    "runtime/tracing/span.py": "plain span data, built in tests/runtime/tracing/test_tracer.py and read by every exporter test",
    "runtime/tracing/trace.py": "a stream's trace, made and driven through the Tracer in "
                                "tests/runtime/tracing/test_tracer.py",
    "proxy/xds/__init__.py": "package marker: re-exports the ADS client, used by tests/proxy/xds/test_ads.py",
    # tested through the module that drives them, in the named test
    "dsl/lalr_drive.py": "the LALR driver under dsl.parse, held equal to the parser it replaced on every input "
                         "in tests/dsl/test_parse_equivalence.py",
    "dsl/types.py": "expression typing: each of its codes from a broken script in tests/dsl/test_check.py",
    "runtime/config/document.py": "the shape of mosnx.yaml as a whole, loaded in tests/runtime/config/test_loader.py",
    "proxy/http2/downstream.py": "an HTTP/2 stream's downstream, with its connection in tests/proxy/http2/test_server.py "
                                 "and end to end in tests/e2e/test_http2_downstream.py",
    "wasm/batch.py": "the batched stream callbacks every wasm filter test drives: tests/wasm/test_filter.py",
    "wasm/fastcall.py": "the guest call path under every wasm test; its contract in tests/wasm/test_imports.py",
    # end to end only: real sockets and real peers
    "proxy/worker_handles.py": "end to end: every `mosnx run` test starts workers through them; a worker's death "
                                "and respawn in tests/e2e/test_lifecycle.py",
    "proxy/demo.py": "end to end: the quickstart's demo upstreams in tests/e2e/test_shop_e2e.py",
    "proxy/listeners.py": "end to end: binding and serving each protocol in tests/e2e/test_lifecycle.py",
    "proxy/tcp/proxy.py": "end to end: tests/e2e/test_tcp_proxy.py",
    "proxy/upstream/http2.py": "end to end: tests/e2e/test_http2_upstream.py and tests/e2e/test_grpc_proxy.py",
    "proxy/upstream/pool.py": "end to end: reuse in tests/e2e/test_http1_keepalive.py, limits in "
                              "tests/e2e/test_governance_breakers.py",
    # host functions: each called with chosen arguments through probe.wat
    "wasm/abi_buffers.py": "host functions, called one by one through probe.wat in tests/wasm/test_imports.py",
    "wasm/abi_calls.py": "host functions, called one by one through probe.wat in tests/wasm/test_imports.py",
    "wasm/abi_core.py": "host functions, called one by one through probe.wat in tests/wasm/test_imports.py",
    "wasm/abi_maps.py": "host functions, called one by one through probe.wat in tests/wasm/test_imports.py",
    "wasm/abi_state.py": "host functions, called one by one through probe.wat in tests/wasm/test_imports.py",
    "wasm/abi_wasi.py": "host functions, called one by one through probe.wat in tests/wasm/test_imports.py",
}

# test-tree files that are no module's test: shared helpers and data builders
HELPERS: dict[str, str] = {
    "tests/proxy/inproc.py": "a proxy worker in process, with real sockets",
    "tests/dsl/legacy_parse.py": "the parser dsl/parse.py replaced, the reference of test_parse_equivalence.py",
    "tests/dsl/mutants.py": "the rule-file mutator of test_check_mutants.py",
    "tests/runtime/envoy/envoy_samples.py": "the Envoy resources and request helpers the runtime/envoy tests share",
    "tests/runtime/envoy/tls_samples.py": "the Envoy TLS resources (transport sockets, secrets) of test_tls and test_secrets",
    "tests/proxy/stream/fakes.py": "fakes of the executor's Protocols (Downstream, Upstream, pool, loop) for its unit tests",
    "tests/proxy/xds/ads_server.py": "an ADS control plane (SotW and delta) on loopback, for the xDS client's tests",
    "tests/proxy/xds/sds_server.py": "an SDS server (SecretDiscoveryService) on a Unix socket or loopback, for the SDS stream's tests",
    "tests/runtime/filters/rbac_streams.py": "requests and connections with TLS peers, for the RBAC tests",
    "tests/runtime/filters/jwtkit.py": "keys, JWKS documents and tokens the jwt_authn and jwt_verify tests share",
    "tests/proxy/tracing/spans_data.py": "the trace records of one stream the exporter tests encode",
}

# test files that will move elsewhere (none now)
PENDING: dict[str, str] = {}


def source_modules() -> list[str]:
    return sorted(p.relative_to(REPO).as_posix() for root in ROOTS for p in (REPO / root).rglob("*.py"))


def module_of(test: Path) -> str | None:
    """The module a test file is about: test_<module>.py, else the longest
    test_<module>_<aspect>.py whose <module>.py exists beside the mirrored path."""
    folder = test.parent.relative_to(TESTS)
    words = test.stem[len("test_"):].split("_")
    for n in range(len(words), 0, -1):
        module = folder / ("_".join(words[:n]) + ".py")
        if (REPO / module).is_file():
            return module.as_posix()
    return None


def tree_files() -> list[Path]:
    return sorted(p for root in ROOTS for p in (TESTS / root).rglob("*.py"))


def test_every_module_has_a_test_at_its_mirrored_path_or_a_reason():
    tested = {module_of(t) for t in tree_files() if t.name.startswith("test_")}
    missing = [m for m in source_modules() if m not in tested and m not in EXEMPT]
    assert not missing, ("modules without a test at the mirrored path (add the test, or an EXEMPT reason):\n"
                         + "\n".join(f"  {m} -> tests/{Path(m).parent}/test_{Path(m).stem}.py" for m in missing))


def test_every_test_file_mirrors_a_module_or_is_a_listed_helper():
    strays = []
    for t in tree_files():
        rel = t.relative_to(REPO).as_posix()
        if t.name == "conftest.py" or rel in HELPERS or rel in PENDING:
            continue
        if not t.name.startswith("test_") or module_of(t) is None:
            strays.append(rel)
    assert not strays, ("test-tree files whose mirrored module does not exist (move them to the mirrored "
                        "path, or list a helper in HELPERS):\n" + "\n".join(f"  {s}" for s in strays))


def test_exemptions_are_current():
    modules = set(source_modules())
    tested = {module_of(t) for t in tree_files() if t.name.startswith("test_")}
    stale = [f"  {m}: no such module" for m in EXEMPT if m not in modules]
    stale += [f"  {m}: has a test now, drop the exemption" for m in EXEMPT if m in tested]
    named = [(m, p) for m, why in EXEMPT.items() for p in re.findall(r"tests/[\w/]+\.py", why)]
    stale += [f"  {m}: names {p}, which does not exist" for m, p in named if not (REPO / p).is_file()]
    stale += [f"  {h}: listed but does not exist" for h in (*HELPERS, *PENDING) if not (REPO / h).is_file()]
    assert not stale, "EXEMPT, HELPERS or PENDING out of date:\n" + "\n".join(stale)


def test_same_basenames_in_different_folders_are_collected_apart():
    # --import-mode=importlib (pyproject) names each test module by its path, so
    # tests/proxy/codec/test_http2.py and tests/proxy/upstream/test_http2.py can both exist
    # without __init__.py files
    import tomllib
    addopts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert "--import-mode=importlib" in addopts
    assert not [p for root in ROOTS for p in (TESTS / root).rglob("__init__.py")]
