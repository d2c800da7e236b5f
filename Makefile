# The front door: `make run` and `make test` need only Python 3.11+ and make.
# uv (from PyPI, pinned) installs the locked dependencies into .venv.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
STAMP := $(VENV)/.synced-stamp
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test lint typecheck check bench clean e2e e2e-build e2e-up e2e-down

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --python $(PYTHON)
	@touch $@

## run: the whole stack locally (embedded Redis, gateway on 127.0.0.1:8000, one worker)
run: $(STAMP)
	$(VENV)/bin/langscale dev

## test: lint, type-check and every test
test: $(STAMP) lint typecheck
	$(VENV)/bin/pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

## bench: benchmarks side by side with peers (results in bench/results/)
bench: $(STAMP)
	$(VENV)/bin/python -m bench

# ------------------------------------------------------------------------------------------
# End-to-end: the chart on a real single-node Kubernetes built here from registry packages
# (docs/e2e.md). Build outputs are cached under $(CACHE)/e2e/, outside the clone.
# ------------------------------------------------------------------------------------------

CACHE ?= $(HOME)/.cache/langscale
E2E_CACHE := $(CACHE)/e2e
E2E_CLUSTER := $(VENV)/bin/python tests/e2e/cluster/localcluster.py --cache $(E2E_CACHE)

## e2e-build: build Kubernetes, containerd config, CoreDNS, KEDA and helm for e2e (cached)
e2e-build: $(STAMP)
	$(E2E_CLUSTER) build

## e2e: start the cluster, install the chart, autoscale, roll, drain, doctor; always tear down
e2e: e2e-build images
	LANGSCALE_E2E=1 LANGSCALE_E2E_CACHE=$(E2E_CACHE) \
	LANGSCALE_E2E_IMAGES="$$($(MAKE) -s --no-print-directory image-list)" \
	$(VENV)/bin/pytest tests/e2e -p no:cacheprovider $(E2E_ARGS)

## e2e-up / e2e-down: a cluster to poke at by hand (prints its KUBECONFIG)
e2e-up: e2e-build
	$(E2E_CLUSTER) up --keda

e2e-down:
	$(E2E_CLUSTER) down

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
