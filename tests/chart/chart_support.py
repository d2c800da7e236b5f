"""Helpers shared by the chart tests: render deploy/helm/langscale with Helm's own engine.

Rendering goes through helm-python-sdk (``helm_python``), which binds Helm 4's Go SDK as a
shared library (libhelm_c) with ctypes: no helm binary, no cluster. ``Chart.render`` runs the
same pipeline as ``helm template`` (values coalescing, values.schema.json validation,
templates, ``fail``) and returns {template path: manifest}.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "deploy" / "helm" / "langscale"
KUSTOMIZE_DIR = REPO_ROOT / "deploy" / "k8s"
SCENARIOS = sorted(CHART_DIR.glob("ci/*-values.yaml"))
RELEASE = "rel"
NAMESPACE = "langscale"

# Kubernetes versions every rendered object is validated against.
KUBE_VERSIONS = ("1.29.0", "1.31.0", "1.33.0")
# Custom resources: kubernetes-validate ships schemas for built-in kinds only, so these kinds
# are skipped by name (and only these), each checked against its expected API group.
CRD_KINDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PodMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "ScaledObject": "keda.sh/v1alpha1",
}


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
