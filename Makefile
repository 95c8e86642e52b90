# The two entry points are `make run` (the main job) and `make test` (the tests).
# Each installs what it needs and is fast the second time.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

export AGC_CACHE_DIR ?= $(CURDIR)/.cache
VENV ?= $(CURDIR)/.venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: help deps venv testenv helm node istiod run test lint typecheck check bench conformance conformance-in-cluster

help:
	@echo "make run    start the embedded default (local control plane + controller)"
	@echo "make test   lint, type-check and run the test suite against a real kube-apiserver"
	@echo "make testenv  build the test control plane (kube-apiserver, kube-controller-manager, CRDs)"
	@echo "make helm   build helm (for the chart in deploy/chart) into the cache"
	@echo "make node   build the tests' real node (kubelet, kube-proxy, containerd, runc) and both images"
	@echo "make istiod build istiod, the mesh CA of the mesh tests (docs/mesh.md)"
	@echo "make bench  translation, controller, data plane and azure benchmarks (numbers, no assertions)"
	@echo "make conformance  the Gateway API conformance suite against the local data plane (root; make test runs it too)"
	@echo "make conformance-in-cluster  the same against the Helm chart on a real node (root; make test runs it too)"

deps:
	@hack/install-deps.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@echo "[setup] installing Python dependencies into $(VENV)"
	@python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >$(VENV)/install.log 2>&1 && \
	  $(PY) -m pip install -e '.[dev]' >>$(VENV)/install.log 2>&1 || \
	  { tail -30 $(VENV)/install.log; echo "[setup] ERROR: pip install failed (log: $(VENV)/install.log); check that PyPI is reachable" >&2; exit 1; }
	@touch $@

testenv: deps
	@hack/testenv.sh >/dev/null

# the chart tests render deploy/chart with it
helm: deps
	@hack/helm.sh >/dev/null

# tests/cluster installs the chart onto a real node, from images built from this tree
node: deps
	@hack/node.sh >/dev/null && hack/images.sh >/dev/null

# tests/e2e/test_mesh.py runs a real istiod as the mesh's CA
istiod: deps
	@hack/istiod.sh >/dev/null

# The dev cluster (devcluster/) is not installed: the repository root is its path.
run: deps venv
	@AGC_TESTENV="$$(hack/testenv.sh)" && export AGC_TESTENV && \
	  PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" exec $(PY) -m devcluster

lint: venv
	@$(VENV)/bin/ruff check agc_controller devcluster tests hack
	@$(VENV)/bin/ruff format --check agc_controller devcluster tests hack

typecheck: venv
	@$(VENV)/bin/mypy

check: lint typecheck

# Two passes, one control plane each: the standard CRDs, then the experimental ones
# for the tests marked experimental_channel (AGC_GATEWAY_API_CHANNEL=standard or
# =experimental runs one). pytest exits 5 when it collected no test: that is a
# failure here, for each pass of the whole suite; with PYTEST_ARGS (say `-k NAME`)
# one pass may select nothing, as long as another ran tests.
TEST_CHANNELS := $(or $(AGC_GATEWAY_API_CHANNEL),standard experimental)
test: deps venv check helm node istiod
	@AGC_TESTENV="$$(hack/testenv.sh)" && export AGC_TESTENV && ran=0 && \
	  for channel in $(TEST_CHANNELS); do \
	    echo "[test] Gateway API $$channel channel"; \
	    rc=0 && AGC_GATEWAY_API_CHANNEL=$$channel $(PY) -m pytest $(PYTEST_ARGS) || rc=$$?; \
	    if [ $$rc -eq 5 ] && [ -z "$(PYTEST_ARGS)" ]; then \
	      echo "[test] ERROR: no test ran ($$channel channel)" >&2; exit 1; fi; \
	    if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then exit $$rc; fi; \
	    if [ $$rc -eq 0 ]; then ran=1; fi; \
	  done && \
	  if [ $$ran -eq 0 ]; then echo "[test] ERROR: PYTEST_ARGS selected no test" >&2; exit 1; fi
	@$(MAKE) --no-print-directory conformance
	@$(MAKE) --no-print-directory conformance-in-cluster

# The official Gateway API conformance suite (conformance/README.md): passes when the
# failing tests are exactly conformance/known-failures.txt and nothing else failed.
# A passing full run writes the report to conformance/reports/. CONFORMANCE_ARGS go to
# hack/conformance.py (e.g. --run-test NAME, a focused run).
CONFORMANCE_ARGS ?=
conformance: deps venv
	@$(PY) hack/conformance.py $(CONFORMANCE_ARGS)

# The same suite against the Helm chart installed onto a real node (kubelet,
# containerd) from the images hack/images.sh builds: a data-plane Deployment per
# Gateway, the suite's backends from images of their own (conformance/README.md).
conformance-in-cluster: deps venv node
	@$(PY) hack/conformance.py --in-cluster $(CONFORMANCE_ARGS)

# Benchmarks print numbers; they assert nothing about speed.
bench: deps venv
	@AGC_TESTENV="$$(hack/testenv.sh)" && export AGC_TESTENV && \
	  $(PY) -m tests.bench.bench_translate && $(PY) -m tests.bench.bench_controller && \
	  $(PY) -m tests.bench.bench_dataplane && $(PY) -m tests.bench.bench_delivery && \
	  $(PY) -m tests.bench.bench_azure && \
	  $(PY) -m tests.bench.bench_scale
