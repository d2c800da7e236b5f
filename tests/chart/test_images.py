"""Static checks of the Dockerfiles (no Docker engine here): pinned slim base, locked install,
non-root numeric user, exec-form entrypoint, no build tools in the final stage."""

from __future__ import annotations

import json
import re

import pytest
from chart_support import REPO_ROOT

IMAGES = {
    "gateway": ["langscale", "gateway", "--host", "0.0.0.0", "--port", "8000"],
    "worker": ["langscale", "worker"],
}


def stages(text: str) -> list[str]:
    return re.split(r"(?m)^FROM ", text)[1:]


@pytest.mark.parametrize("service", sorted(IMAGES))
def test_dockerfile(service: str) -> None:
    text = (REPO_ROOT / "services" / service / "Dockerfile").read_text()
    assert re.search(r"(?m)^ARG PYTHON_VERSION=3\.11\.\d+$", text)
    assert re.search(r"(?m)^ARG DEBIAN_RELEASE=bookworm$", text)
    builder, runtime = stages(text)
    assert builder.startswith("python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS builder")
    assert runtime.startswith("python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime")
    # Locked dependency set for this service's extra, then the project wheel without deps.
    assert f"ARG EXTRA={service}" in builder
    assert (
        'uv export --frozen --no-default-groups --no-dev --extra "${EXTRA}" --no-emit-project'
        in builder
    )
    assert "--require-hashes" in builder
    assert re.search(r"pip install --no-deps /tmp/dist/\*\.whl", builder)
    # Final stage: only the venv, a numeric non-root user, exec-form entrypoint.
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    assert not re.search(r"\b(apt-get|gcc|build-essential|uv )", runtime)
    assert re.search(r"(?m)^USER 10001:10001$", runtime)
    assert "--uid 10001" in runtime
    (entrypoint,) = re.findall(r"(?m)^ENTRYPOINT (.+)$", runtime)
    assert json.loads(entrypoint) == IMAGES[service]


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert "**" in lines
    for needed in ("!pyproject.toml", "!uv.lock", "!src/"):
        assert needed in lines
