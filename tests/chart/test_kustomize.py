"""deploy/k8s: the kustomize overlays build (`kubectl kustomize`) and every object is valid
Kubernetes for 1.29, 1.31 and 1.33."""

from __future__ import annotations

from typing import Any

import pytest
from chart_support import KUBE_VERSIONS, kustomize

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
