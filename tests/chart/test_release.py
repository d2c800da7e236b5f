"""The release workflow (.github/workflows/release.yaml, which cannot run here) publishes
exactly the names the chart and the docs use: the images the chart pulls by default, built
from the Dockerfile's targets, and the chart's OCI reference."""

from __future__ import annotations

import re

import yaml
from chart_support import CHART_DIR, REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "release.yaml"


def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def test_it_runs_on_version_tags_only() -> None:
    triggers = workflow()[True]  # YAML 1.1 reads the key `on` as True
    assert triggers == {"push": {"tags": ["v*.*.*"]}}


def test_the_images_it_pushes_are_the_ones_the_chart_pulls() -> None:
    flow = workflow()
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    prefix = flow["env"]["IMAGE_PREFIX"]
    images = flow["jobs"]["images"]
    targets = images["strategy"]["matrix"]["target"]
    published = {f"{prefix}/langscale-{target}" for target in targets}
    chart_images = {
        f"{values['imageRegistry']}/{values[c]['image']['repository']}"
        for c in ("gateway", "worker")
    }
    assert published == chart_images
    dockerfile_targets = re.findall(
        r"(?m)^FROM \S+ AS (\w+)$", (REPO_ROOT / "Dockerfile").read_text()
    )
    assert set(targets) <= set(dockerfile_targets)
    build = next(
        s for s in images["steps"] if s.get("uses", "").startswith("docker/build-push-action")
    )
    assert build["with"]["platforms"] == "linux/amd64,linux/arm64"
    assert build["with"]["target"] == "${{ matrix.target }}"
    assert any("cosign sign" in s.get("run", "") for s in images["steps"])


def test_the_chart_reference_is_the_one_the_readme_gives() -> None:
    repository = workflow()["env"]["CHART_REPOSITORY"]
    readme = (CHART_DIR / "README.md").read_text()
    assert f"helm install langscale {repository}/langscale" in readme
    docs = (REPO_ROOT / "docs" / "kubernetes.md").read_text()
    assert f"{repository}/langscale" in docs


def test_image_tags_are_the_version_the_chart_defaults_to() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    (version,) = re.findall(r'(?m)^version = "([^"]+)"$', pyproject)
    # The workflow refuses a tag that differs from these; the chart's default tag is appVersion.
    assert chart["appVersion"] == chart["version"] == version
    assert "type=semver,pattern={{version}}" in WORKFLOW.read_text()
