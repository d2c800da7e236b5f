"""The chart's custom resources (KEDA ScaledObject, Prometheus Operator ServiceMonitor,
PodMonitor, PrometheusRule) are valid against the real CRDs, vendored and pinned in
tests/chart/crds/ (KEDA v2.17.2, prometheus-operator v0.85.0; crds/README.md).

Each CRD's openAPIV3Schema is checked with jsonschema, strictly: an object schema that lists
its properties and does not preserve unknown fields refuses any other field, as the API
server does with strict field validation (kubectl's default)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from chart_support import CRD_DIR, CRD_KINDS, SCENARIOS, load_values


def strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        pattern = out.get("pattern")
        if isinstance(pattern, str) and "(?i)" in pattern:
            # Go's RE2 takes inline flags anywhere, Python's re only at the start.
            out["pattern"] = "(?i)" + pattern.replace("(?i)", "")
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


def load_crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
            # metadata is the API server's ObjectMeta (validated by kubernetes-validate's
            # rules for names and labels elsewhere): accept it as an object here.
            schema["properties"]["metadata"] = {"type": "object"}
            schemas[(f"{group}/{version['name']}", kind)] = strict(schema)
    return schemas


SCHEMAS = load_crd_schemas()


def test_every_custom_kind_the_chart_renders_has_a_vendored_crd() -> None:
    for kind, api_version in CRD_KINDS.items():
        assert (api_version, kind) in SCHEMAS, kind


def test_strict_schemas_refuse_unknown_fields() -> None:
    schema = SCHEMAS[("keda.sh/v1alpha1", "ScaledObject")]
    good = {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"name": "w"}, "triggers": [{"type": "cpu", "metadata": {}}]},
    }
    jsonschema.validate(good, schema)
    bad = copy.deepcopy(good)
    bad["spec"]["minReplicas"] = 1  # KEDA calls it minReplicaCount
    with pytest.raises(jsonschema.ValidationError, match="minReplicas"):
        jsonschema.validate(bad, schema)


@pytest.mark.parametrize(
    "values_file", [None, *SCENARIOS], ids=lambda p: p.name if p else "default"
)
def test_custom_resources_are_valid_against_their_crds(
    render: Any, values_file: Path | None
) -> None:
    rendered = render(load_values(values_file) if values_file else {})
    for obj in rendered.objects:
        if obj["kind"] not in CRD_KINDS:
            continue
        schema = SCHEMAS[(obj["apiVersion"], obj["kind"])]
        try:
            jsonschema.validate(obj, schema)
        except jsonschema.ValidationError as error:
            pytest.fail(
                f"{obj['kind']}/{obj['metadata']['name']}: {error.message} at "
                f"{'/'.join(map(str, error.absolute_path))}"
            )
