# Every target installs what it needs: a fresh clone needs only Python 3.11, Go and make.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
K8S_STAMP := .dev/bin/kubelet
NODE_STAMP := .dev/bin/containerd
FLUX_STAMP := .dev/bin/kustomize-controller
DEMO_DIR := .demo
# Debian packages the cluster needs: iproute2 (the node's network), iptables and conntrack
# (kube-proxy, the kubelet), gcc, pkg-config and libseccomp-dev (runc with seccomp), mmdebstrap
# and buildah (the images).
HOST_PACKAGES := iproute2 iptables conntrack gcc pkg-config libseccomp-dev mmdebstrap buildah

.PHONY: help venv k8s-bins host-tools images demo example-data test unit lint cluster cluster-down bench bench-quick clean

help:
	@echo "make demo          optimize the digits example locally (no cluster, no cloud)"
	@echo "make test          lint and run every test (builds the control plane on first use)"
	@echo "make cluster       start a local cluster with one real node; kubeconfig in .dev/kubeconfig"
	@echo "make images        build the operator, optimizer and serve images (and import them into make cluster's node)"
	@echo "make example-data  put the digits example's model and data in make cluster's object store, with its Secrets"
	@echo "make cluster-down  stop it"
	@echo "make bench         run every benchmark (about an hour), write bench/RESULTS.md, its charts and the README's figures"
	@echo "make bench-quick   a few minutes' version into .dev/bench-quick/RESULTS.md"

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip==25.3
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[optimizer,serve,operator,kubectl,devcluster,dev]'
	touch $@

venv: $(STAMP)

$(K8S_STAMP): hack/build-k8s.sh
	bash hack/build-k8s.sh

$(NODE_STAMP): hack/build-node.sh | host-tools
	bash hack/build-node.sh

# Flux's source-controller and kustomize-controller, with their CRDs (tests/cluster/test_flux_story.py).
$(FLUX_STAMP): hack/build-flux.sh
	bash hack/build-flux.sh

k8s-bins: $(K8S_STAMP) $(NODE_STAMP) $(FLUX_STAMP)

# Install the Debian packages above where a machine lacks them.
host-tools:
	@missing="$$(for p in $(HOST_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done)"; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

# Builds whatever changed (a few seconds when nothing did) and imports it into a running `make cluster`.
# Needs the node's binaries (CoreDNS and the object store are images too), not Kubernetes': a cold
# `make -j3 test` builds the images while Kubernetes compiles.
images: $(NODE_STAMP) host-tools
	bash hack/build-images.sh
	@if [ -x $(BIN)/optimodel ] && $(BIN)/optimodel cluster status --state-dir .dev >/dev/null 2>&1; then \
	  $(BIN)/optimodel cluster import-images --state-dir .dev; fi

demo: $(STAMP)
	$(BIN)/python examples/digits/make_digits.py --out $(DEMO_DIR) --models digits-wide
	$(BIN)/optimodel run examples/digits/local.yaml

# The digits example's model and data in the object store of `make cluster` (or of the cluster
# KUBECONFIG names), and the Secrets examples/digits/optimizedmodel.yaml names.
example-data: $(STAMP)
	$(BIN)/python examples/digits/make_digits.py --out $(DEMO_DIR) --models digits-wide
	$(BIN)/python examples/digits/cluster_data.py --demo-dir $(DEMO_DIR)

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench examples
	$(BIN)/lint-imports
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

test: $(STAMP) k8s-bins images lint
	$(BIN)/pytest tests -q

cluster: $(STAMP) k8s-bins images
	$(BIN)/optimodel cluster up --state-dir .dev

cluster-down: $(STAMP)
	$(BIN)/optimodel cluster down --state-dir .dev

# Each benchmark writes its figures as JSON; bench/results.py draws the page, the charts and the
# README's figures from them. bench-quick measures less, into .dev/, leaving the committed ones be.
bench: $(STAMP) k8s-bins images
	$(BIN)/python bench/engine_bench.py --json bench/results/engine.json
	$(BIN)/python bench/serve_bench.py --json bench/results/serve.json
	$(BIN)/python bench/mirror_bench.py --json bench/results/mirror.json
	$(BIN)/python bench/devcluster_bench.py --json bench/results/devcluster.json
	$(BIN)/python bench/operator_bench.py --json bench/results/operator.json
	$(BIN)/python bench/results.py --readme README.md

QUICK := .dev/bench-quick
bench-quick: $(STAMP) k8s-bins images
	$(BIN)/python bench/engine_bench.py --models digits-wide --skip-prune --skip-search --rounds 2 --json $(QUICK)/results/engine.json
	$(BIN)/python bench/serve_bench.py --models digits-wide --seconds 2 --rounds 1 --json $(QUICK)/results/serve.json
	$(BIN)/python bench/mirror_bench.py --seconds 2 --rounds 2 --json $(QUICK)/results/mirror.json
	$(BIN)/python bench/devcluster_bench.py --pods 3 --json $(QUICK)/results/devcluster.json
	$(BIN)/python bench/operator_bench.py --jobs 2 --fleet 20 --serving 5 --window 30 --cycle 0 --json $(QUICK)/results/operator.json
	$(BIN)/python bench/results.py --results $(QUICK)/results --page $(QUICK)/RESULTS.md

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
