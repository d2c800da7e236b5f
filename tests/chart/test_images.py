"""Static checks of the one Dockerfile (the images are built and run for real by
`make test-images`, tests/images/): a build target per service on a shared runtime stage,
the base image a build argument defaulting to the public pinned python:3.11.x-slim, a locked
hash-checked install, non-root numeric user, exec-form entrypoints, nothing of the build in
the final stages."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from chart_support import REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
ENTRYPOINTS = {"gateway": ["langscale", "gateway"], "worker": ["langscale", "worker"]}


def stages() -> dict[str, str]:
    text = DOCKERFILE.read_text()
    out = {}
    for block in re.split(r"(?m)^FROM ", text)[1:]:
        header = block.splitlines()[0]
        out[header.split(" AS ")[1].strip()] = block
    return out


def test_one_dockerfile_with_a_target_per_service() -> None:
    assert list(stages()) == ["builder", "runtime", "gateway", "worker"]
    assert not list((REPO_ROOT / "services").glob("*/Dockerfile"))


def test_the_base_is_a_build_argument_defaulting_to_the_public_slim_image() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"(?m)^ARG BASE_IMAGE=python:3\.11\.\d+-slim-bookworm$", text)
    assert stages()["builder"].startswith("${BASE_IMAGE} AS builder")
    assert stages()["runtime"].startswith("${BASE_IMAGE} AS runtime")
    assert "# syntax=" not in text  # the classic builder (Debian's docker.io) ignores it anyway


def test_dependencies_are_the_locked_set_installed_with_hashes() -> None:
    builder = stages()["builder"]
    assert "uv export --frozen --no-default-groups --no-dev --extra" in builder
    assert "--require-hashes --no-deps" in builder
    assert "--no-index --no-deps /tmp/langscale-*.whl" in builder
    assert "/opt/venv/bin/pip check" in builder


def test_final_stages_hold_only_the_venv_and_run_as_uid_10001() -> None:
    runtime = stages()["runtime"]
    assert re.search(r"(?m)^USER 10001:10001$", runtime)
    assert "--uid 10001" in runtime and "--home-dir /home/langscale" in runtime
    assert "HOME=/home/langscale" in runtime and "XDG_CACHE_HOME=" in runtime
    for service, entrypoint in ENTRYPOINTS.items():
        stage = stages()[service]
        assert stage.startswith(f"runtime AS {service}")
        assert f"COPY --from=builder /opt/venvs/{service} /opt/venv" in stage
        assert not re.search(r"\b(apt-get|gcc|build-essential|uv |wheelhouse)", stage)
        (found,) = re.findall(r"(?m)^ENTRYPOINT (.+)$", stage)
        assert json.loads(found) == entrypoint


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    assert "**" in lines
    for needed in (
        "!pyproject.toml",
        "!uv.lock",
        "!src/",
        "!deploy/docker/wheelhouse/",
        "!deploy/docker/project-wheel/",
    ):
        assert needed in lines


def test_make_images_without_a_docker_engine_says_what_to_install(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "cat", "id", "dirname"):
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "deploy" / "docker" / "with-docker.sh"), "true"],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "apt-get install docker.io" in result.stderr
    assert "no docker client on PATH" in result.stderr
