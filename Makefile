# Every target installs what it needs: a fresh clone needs only Python 3.11, Go and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
K8S_STAMP := .dev/bin/kube-apiserver
DEMO_DIR := .demo

.PHONY: help venv k8s-bins host-tools demo test unit lint cluster cluster-down bench clean

help:
	@echo "make demo          optimize the digits example locally (no cluster, no cloud)"
	@echo "make test          lint and run every test (builds the control plane on first use)"
	@echo "make cluster       start a local control plane and node agent; kubeconfig in .dev/kubeconfig"
	@echo "make cluster-down  stop it"
	@echo "make bench         run the benchmarks and print their tables"

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[optimizer,serve,operator,kubectl,devcluster,dev]'
	touch $@

venv: $(STAMP)

$(K8S_STAMP): hack/build-k8s.sh
	bash hack/build-k8s.sh

k8s-bins: $(K8S_STAMP)

# The node agent wires pod networks with `ip` (iproute2); install it where a machine lacks it.
host-tools:
	@command -v ip >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2; }

demo: $(STAMP)
	$(BIN)/python examples/digits/make_digits.py --out $(DEMO_DIR) --models digits-wide
	$(BIN)/optimodel run examples/digits/local.yaml

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench examples
	$(BIN)/lint-imports
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

test: $(STAMP) $(K8S_STAMP) host-tools lint
	$(BIN)/pytest tests -q

cluster: $(STAMP) $(K8S_STAMP) host-tools
	$(BIN)/optimodel cluster up --state-dir .dev

cluster-down: $(STAMP)
	$(BIN)/optimodel cluster down --state-dir .dev

bench: $(STAMP) $(K8S_STAMP)
	$(BIN)/python bench/engine_bench.py
	$(BIN)/python bench/serve_bench.py
	$(BIN)/python bench/devcluster_bench.py
	$(BIN)/python bench/operator_bench.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
