"""deploy/k8s: the kustomize overlays build (`kubectl kustomize`, the pinned kubectl 1.36.3)
and every object is valid Kubernetes for 1.29 to 1.35; settings roll the pods; the worker
HPA target follows the worker concurrency."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import KUBE_VERSIONS, KUSTOMIZE_DIR, kustomize

kubernetes_validate = pytest.importorskip("kubernetes_validate")


def by_kind(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlay_builds_valid_objects(kubectl: str, overlay: str) -> None:
    objects = kustomize(kubectl, overlay)
    assert {"Deployment", "Service", "ConfigMap", "NetworkPolicy"} <= {o["kind"] for o in objects}
    for obj in objects:
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                name = f"{obj['kind']}/{obj['metadata']['name']}"
                pytest.fail(f"{overlay}: {name} invalid for {version}: {error.message}")
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "langscale"
        assert labels["app.kubernetes.io/part-of"] == "langscale"


def test_dev_overlay_bundles_redis_and_runs_one_worker(kubectl: str) -> None:
    objects = kustomize(kubectl, "dev")
    assert by_kind(objects, "Deployment", "langscale-worker")["spec"]["replicas"] == 1
    redis = by_kind(objects, "StatefulSet", "langscale-redis")
    command = redis["spec"]["template"]["spec"]["containers"][0]["command"]
    assert "noeviction" in command and "--appendonly" in command
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    worker = by_kind(objects, "Deployment", "langscale-worker")
    env = {e["name"]: e for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    # kustomize propagated the generated Secret's hashed name.
    assert (
        env["LANGSCALE_REDIS_URL"]["valueFrom"]["secretKeyRef"]["name"]
        == secret["metadata"]["name"]
    )
    assert not [
        o for o in objects if o["kind"] in ("HorizontalPodAutoscaler", "PodDisruptionBudget")
    ]


def test_prod_overlay_autoscales_workers_on_the_external_queue_metric(kubectl: str) -> None:
    objects = kustomize(kubectl, "prod")
    worker = by_kind(objects, "Deployment", "langscale-worker")
    assert "replicas" not in worker["spec"]
    assert "replicas" not in by_kind(objects, "Deployment", "langscale-gateway")["spec"]
    spec = worker["spec"]["template"]["spec"]
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["LANGSCALE_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "langscale-redis",
        "key": "redis-url",
    }
    assert (
        spec["terminationGracePeriodSeconds"] == int(env["LANGSCALE_DRAIN_TIMEOUT"]["value"]) + 30
    )
    hpa = by_kind(objects, "HorizontalPodAutoscaler", "langscale-worker")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["metric"]["name"] == "langscale_queue_backlog_jobs"
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "80"}
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "PodDisruptionBudget"} == {
        "langscale-gateway",
        "langscale-worker",
    }
    assert not [o for o in objects if o["kind"] in ("StatefulSet", "Secret")]


def settings_configmap(objects: list[dict[str, Any]]) -> str:
    (name,) = [
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "ConfigMap"
        and o["metadata"]["name"].startswith("langscale-")
        and "LANGSCALE_QUEUE_NAME" in o.get("data", {})
    ]
    return name


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_settings_configmap_is_generated_and_referenced_by_its_hashed_name(
    kubectl: str, overlay: str
) -> None:
    objects = kustomize(kubectl, overlay)
    name = settings_configmap(objects)
    assert name != "langscale"  # a hash suffix
    for component in ("gateway", "worker"):
        spec = by_kind(objects, "Deployment", f"langscale-{component}")["spec"]["template"]["spec"]
        assert spec["containers"][0]["envFrom"] == [{"configMapRef": {"name": name}}]


def test_a_changed_setting_renames_the_configmap_so_pods_roll(kubectl: str, tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{os.path.relpath(KUSTOMIZE_DIR / 'overlays' / 'dev', overlay)}]\n"
        "configMapGenerator:\n  - name: langscale\n    behavior: merge\n"
        "    literals: [LANGSCALE_RESULT_TTL=3600]\n"
    )
    out = subprocess.run(
        [kubectl, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    changed = [d for d in yaml.safe_load_all(out) if d]
    assert settings_configmap(changed) != settings_configmap(kustomize(kubectl, "dev"))


def test_the_prod_worker_hpa_target_is_the_concurrency_times_the_utilization(kubectl: str) -> None:
    objects = kustomize(kubectl, "prod")
    worker = by_kind(objects, "Deployment", "langscale-worker")
    env = {e["name"]: e for e in worker["spec"]["template"]["spec"]["containers"][0]["env"]}
    concurrency = int(env["LANGSCALE_WORKER_CONCURRENCY"]["value"])
    hpa = by_kind(objects, "HorizontalPodAutoscaler", "langscale-worker")
    target = hpa["spec"]["metrics"][0]["external"]["target"]["averageValue"]
    # The chart's default worker.autoscaling.targetUtilization.
    assert int(target) == round(concurrency * 0.8)
    sizing = by_kind(objects, "ConfigMap", "langscale-worker-sizing")["data"]
    assert (sizing["concurrency"], sizing["targetPerReplica"]) == (str(concurrency), target)
