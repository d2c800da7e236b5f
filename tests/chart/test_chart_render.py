"""Render the chart for the defaults and every ci/*-values.yaml scenario, with both real Helm
engines: `helm lint --strict` (SDK and binary) is clean, the helm binary's `helm template`
gives the same objects as the SDK, and every object is valid for Kubernetes 1.29 to 1.35
(kubernetes-validate --strict: unknown fields fail). Custom resources: test_chart_crds.py."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import pytest
from chart_support import (
    CHART_DIR,
    CRD_KINDS,
    KUBE_VERSIONS,
    NAMESPACE,
    SCENARIOS,
    helm_binary,
    helm_template,
    load_values,
    objects_of,
)

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

SCENARIO_IDS = ["default"] + [p.name.removesuffix("-values.yaml") for p in SCENARIOS]
SCENARIO_FILES: list[Path | None] = [None, *SCENARIOS]
# Examples of this chart's values (prometheus-adapter-values.yaml is for another chart).
EXAMPLE_VALUES = [CHART_DIR / "examples" / "local-images-values.yaml"]


def test_there_are_scenarios_for_each_setup() -> None:
    names = {p.name for p in SCENARIOS}
    for expected in (
        "external-redis-values.yaml",
        "external-redis-url-secret-values.yaml",
        "sentinel-values.yaml",
        "keda-values.yaml",
        "keda-scale-to-zero-values.yaml",
        "hpa-external-values.yaml",
        "ingress-values.yaml",
        "monitoring-values.yaml",
        "auth-values.yaml",
        "platform-values.yaml",
    ):
        assert expected in names


@pytest.mark.parametrize("values_file", SCENARIO_FILES, ids=SCENARIO_IDS)
def test_helm_lint_strict_is_clean(values_file: Path | None) -> None:
    values = load_values(values_file) if values_file else None
    report = helm.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert problems == [], problems


@pytest.mark.parametrize("values_file", SCENARIO_FILES, ids=SCENARIO_IDS)
def test_the_helm_binary_lints_strict_clean(values_file: Path | None) -> None:
    args = ["lint", "--strict", str(CHART_DIR), "--namespace", NAMESPACE]
    if values_file:
        args += ["-f", str(values_file)]
    result = helm_binary(*args, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def comparable(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects without what differs between two renders: the generated Redis password."""
    out = []
    for obj in copy.deepcopy(objects):
        if obj["kind"] == "Secret" and obj["metadata"]["name"].endswith("-redis-auth"):
            obj["data"].pop("redis-password", None)
        template = obj.get("spec", {}).get("template", {})
        template.get("metadata", {}).get("annotations", {}).pop("checksum/redis-secret", None)
        out.append(obj)
    return sorted(out, key=lambda o: (o["kind"], o["metadata"]["name"]))


@pytest.mark.parametrize("values_file", SCENARIO_FILES, ids=SCENARIO_IDS)
def test_helm_template_with_the_binary_renders_what_the_sdk_renders(
    render: Any, values_file: Path | None
) -> None:
    files = [values_file] if values_file else []
    by_binary = objects_of(helm_template(files=files).stdout)
    by_sdk = render(load_values(values_file) if values_file else {}).objects
    assert comparable(by_binary) == comparable(by_sdk)


@pytest.mark.parametrize("values_file", EXAMPLE_VALUES, ids=lambda p: p.name)
def test_example_values_files_render(values_file: Path) -> None:
    result = helm_template(files=[values_file], check=False)
    assert result.returncode == 0, result.stderr


@functools.cache
def validation_error(obj_json: str, version: str) -> str | None:
    """kubernetes-validate of one object (cached: scenarios share most objects)."""
    try:
        kubernetes_validate.validate(json.loads(obj_json), version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{error.message} at {'/'.join(map(str, error.path))}"
    return None


@pytest.mark.parametrize("values_file", SCENARIO_FILES, ids=SCENARIO_IDS)
def test_every_object_is_valid_kubernetes(render: Any, values_file: Path | None) -> None:
    rendered = render(load_values(values_file) if values_file else {})
    assert rendered.objects, "nothing rendered"
    validated = 0
    for obj in rendered.objects:
        kind = obj["kind"]
        if kind in CRD_KINDS:
            continue  # validated against the real CRD in test_chart_crds.py
        for version in KUBE_VERSIONS:
            error = validation_error(json.dumps(obj, sort_keys=True), version)
            if error:
                pytest.fail(
                    f"{kind}/{obj['metadata']['name']} invalid for Kubernetes {version}: {error}"
                )
        validated += 1
    assert validated >= 8


@pytest.mark.parametrize("values_file", SCENARIO_FILES, ids=SCENARIO_IDS)
def test_objects_are_in_the_release_namespace_and_uniquely_named(
    render: Any, values_file: Path | None
) -> None:
    rendered = render(load_values(values_file) if values_file else {})
    seen = set()
    for obj in rendered.objects:
        meta = obj["metadata"]
        key = (obj["kind"], meta["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        assert meta.get("namespace") == NAMESPACE, key
        assert len(meta["name"]) <= 63, key
