"""Render the chart for the defaults and every ci/*-values.yaml scenario: `helm lint --strict`
is clean and every object is valid for Kubernetes 1.29, 1.31 and 1.33 (kubernetes-validate
--strict: unknown fields fail)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chart_support import CHART_DIR, CRD_KINDS, KUBE_VERSIONS, NAMESPACE, SCENARIOS, load_values

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

SCENARIO_IDS = ["default"] + [p.name.removesuffix("-values.yaml") for p in SCENARIOS]
SCENARIO_FILES: list[Path | None] = [None, *SCENARIOS]


def test_there_are_scenarios_for_each_setup() -> None:
    names = {p.name for p in SCENARIOS}
    for expected in (
        "external-redis-values.yaml",
        "keda-values.yaml",
        "hpa-external-values.yaml",
        "ingress-values.yaml",
        "monitoring-values.yaml",
        "auth-values.yaml",
    ):
        assert expected in names


@pytest.mark.parametrize("values_file", SCENARIO_FILES, ids=SCENARIO_IDS)
def test_helm_lint_strict_is_clean(values_file: Path | None) -> None:
    values = load_values(values_file) if values_file else None
    report = helm.lint(CHART_DIR, values, strict=True, namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert problems == [], problems


@pytest.mark.parametrize("values_file", SCENARIO_FILES, ids=SCENARIO_IDS)
def test_every_object_is_valid_kubernetes(render: Any, values_file: Path | None) -> None:
    rendered = render(load_values(values_file) if values_file else {})
    assert rendered.objects, "nothing rendered"
    validated = 0
    for obj in rendered.objects:
        kind = obj["kind"]
        if kind in CRD_KINDS:
            # Custom resource: no schema in kubernetes-validate; skipped explicitly by kind.
            assert obj["apiVersion"] == CRD_KINDS[kind]
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(
                    f"{kind}/{obj['metadata']['name']} invalid for Kubernetes {version}: "
                    f"{error.message} at {'/'.join(map(str, error.path))}"
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
