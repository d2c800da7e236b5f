#
# langscale images: one Dockerfile, one build target per service.
#
#   docker build --target gateway -t ghcr.io/langscale/langscale-gateway:0.1.0 .
#   docker build --target worker  -t ghcr.io/langscale/langscale-worker:0.1.0 .
#
# `make images` does both (and the local base image and wheelhouse it needs where no registry
# can be reached): docs/images.md.
#
# Stage "builder" resolves the exact dependency set from uv.lock for each service's extra,
# installs it with hash checking into /opt/venv (the path its scripts' shebangs name), adds
# the project wheel with --no-deps (a later layer: a code change rebuilds in seconds), and
# sets it aside as /opt/venvs/<service>. The service
# stages copy only their venv back to /opt/venv on the base: no compiler, no uv, no source
# tree, no build cache, no CA bundle or wheelhouse.
#
# The base is any Debian-like image with Python 3.11 and `python3 -m venv` (the public
# python:3.11.x-slim image by default; `make images` uses a local debootstrap of Debian
# bookworm's own Python when no registry can be pulled from).

ARG BASE_IMAGE=python:3.11.14-slim-bookworm

########################################################################################
FROM ${BASE_IMAGE} AS builder

ARG UV_VERSION=0.13.9

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never

WORKDIR /build

# 1. Dependencies: a layer that changes only with uv.lock. `make images` fills
#    deploy/docker/wheelhouse/ (hash-locked wheels and requirements-<extra>.txt) and they
#    install offline; in a plain clone it holds only its README, and uv exports the locked set
#    and pip fetches it from PyPI.
COPY deploy/docker/wheelhouse/ /wheelhouse/
COPY pyproject.toml uv.lock README.md ./
RUN set -eu; \
    if ls /wheelhouse/requirements-*.txt >/dev/null 2>&1; then \
        echo "installing offline from the wheelhouse"; \
        find_links="--no-index --find-links /wheelhouse"; \
        cp /wheelhouse/requirements-*.txt /tmp/; \
    else \
        python3 -m venv /opt/uv && /opt/uv/bin/pip install "uv==${UV_VERSION}"; \
        find_links=""; \
        for extra in gateway worker; do \
            /opt/uv/bin/uv export --frozen --no-default-groups --no-dev --extra "$extra" \
                --no-emit-project --format requirements-txt \
                --output-file "/tmp/requirements-$extra.txt"; \
        done; \
    fi; \
    mkdir -p /opt/venvs; \
    for extra in gateway worker; do \
        python3 -m venv /opt/venv; \
        /opt/venv/bin/pip install $find_links --require-hashes --no-deps \
            -r "/tmp/requirements-$extra.txt"; \
        /opt/venv/bin/python -m compileall -q /opt/venv/lib; \
        mv /opt/venv "/opt/venvs/$extra"; \
    done

# 2. The project, as a wheel, without touching the locked set: the one `make images` built
#    (deploy/docker/project-wheel/), else built here from the sources.
COPY deploy/docker/project-wheel/ /project-wheel/
COPY src ./src
COPY services/gateway/langscale_gateway ./services/gateway/langscale_gateway
COPY services/worker/langscale_worker ./services/worker/langscale_worker
RUN set -eu; \
    if ls /project-wheel/langscale-*.whl >/dev/null 2>&1; then \
        cp /project-wheel/langscale-*.whl /tmp/; \
    else \
        /opt/uv/bin/uv build --wheel --out-dir /tmp; \
    fi; \
    for extra in gateway worker; do \
        mv "/opt/venvs/$extra" /opt/venv; \
        /opt/venv/bin/pip install --no-index --no-deps /tmp/langscale-*.whl; \
        /opt/venv/bin/pip check; \
        /opt/venv/bin/python -m compileall -q /opt/venv/lib/python3*/site-packages/langscale*; \
        mv /opt/venv "/opt/venvs/$extra"; \
    done

########################################################################################
FROM ${BASE_IMAGE} AS runtime

# Fixed numeric user, so Kubernetes can verify runAsNonRoot without a passwd lookup. Its
# HOME is a directory the chart mounts an emptyDir on (the root filesystem is read-only):
# libraries that write caches or config under HOME / XDG_CACHE_HOME (tiktoken, huggingface,
# your own) then work.
RUN groupadd --system --gid 10001 langscale \
    && useradd --system --uid 10001 --gid 10001 --create-home \
        --home-dir /home/langscale --shell /usr/sbin/nologin langscale

ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/langscale \
    XDG_CACHE_HOME=/home/langscale/.cache \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /tmp
USER 10001:10001
LABEL org.opencontainers.image.source="https://github.com/langscale/langscale" \
      org.opencontainers.image.licenses="MIT"

########################################################################################
FROM runtime AS gateway

LABEL org.opencontainers.image.title="langscale-gateway" \
      org.opencontainers.image.description="langscale HTTP gateway: auth, admission, enqueue, results"

COPY --from=builder /opt/venvs/gateway /opt/venv
EXPOSE 8000

# Exec form: the server is PID 1 and receives SIGTERM directly (no shell in between).
# The arguments are CMD so a deployment can change them: the chart passes
# `--host :: --port 8000` on IPv6-only clusters (listenAddress).
ENTRYPOINT ["langscale", "gateway"]
CMD ["--host", "0.0.0.0", "--port", "8000"]

########################################################################################
FROM runtime AS worker

LABEL org.opencontainers.image.title="langscale-worker" \
      org.opencontainers.image.description="langscale worker: runs LangChain pipelines from the Redis queue"

COPY --from=builder /opt/venvs/worker /opt/venv
# Health and Prometheus metrics (LANGSCALE_WORKER_HTTP_PORT).
EXPOSE 9101

# Exec form: the worker is PID 1 and receives SIGTERM directly, so it stops taking jobs and
# drains the ones in hand (LANGSCALE_DRAIN_TIMEOUT) before it exits.
#
# Your own pipelines: build FROM this image, `pip install` your package (PATH puts
# /opt/venv/bin first) and set LANGSCALE_PIPELINES=name=module:attr,...
# (examples/custom-worker/, docs/kubernetes.md).
ENTRYPOINT ["langscale", "worker"]
