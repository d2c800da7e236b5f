"""`langscale doctor` against real releases: a healthy KEDA release passes every check; the
same release broken the ways SREs break them (grace shorter than the drain, an evicting
Redis without persistence, the gateway exposed without API keys, an HPA target above the
worker concurrency) fails each of those checks with its fix, and exits 2."""

from __future__ import annotations

import subprocess
import sys

import redis
from kube import Kube, poll

from langscale.doctor import resolved_env

NAMESPACE = "e2e-doctor"
RELEASE = "doc"
WORKER = f"{RELEASE}-langscale-worker"


def doctor(kube: Kube) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "langscale.cli", "doctor", "-n", NAMESPACE, "--release", RELEASE,
         "--kubeconfig", kube.kubeconfig],
        text=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def lines(output: str, status: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        if line.startswith(status):
            name = line.split()[1].split("[")[0]
            found[name] = line
    return found


def test_doctor_passes_a_healthy_release(kube: Kube, keda: None, report: dict[str, object]) -> None:
    kube.install(RELEASE, NAMESPACE, "autoscale.yaml", sets={"worker.autoscaling.kind": "keda"})
    # KEDA's HPA must have read its metric once before the check means anything.
    poll(
        lambda: any(
            c.type == "ScalingActive" and c.status == "True"
            for h in kube.autoscaling.list_namespaced_horizontal_pod_autoscaler(NAMESPACE).items
            for c in h.status.conditions or []
        ),
        120,
        "KEDA's HPA active",
    )
    code, output = doctor(kube)
    report["doctor_healthy"] = output
    assert code == 0, output
    assert {
        "grace",
        "hpa-target",
        "hpa-active",
        "external-metric",
        "capacity",
        "redis",
        "auth",
    } <= (lines(output, "PASS").keys()), output


def test_doctor_fails_a_broken_release_with_the_fixes_and_exit_code_2(
    kube: Kube, report: dict[str, object]
) -> None:
    # Grace below the drain window, straight on the Deployment.
    kube.apps.patch_namespaced_deployment(
        WORKER, NAMESPACE, {"spec": {"template": {"spec": {"terminationGracePeriodSeconds": 5}}}}
    )
    # Redis that evicts and does not persist.
    gateway = kube.deployment(NAMESPACE, f"{RELEASE}-langscale-gateway")
    env = resolved_env(kube.core, NAMESPACE, gateway.spec.template.spec.containers[0])
    service = kube.core.read_namespaced_service(f"{RELEASE}-langscale-redis", NAMESPACE)
    client = redis.Redis(host=service.spec.cluster_ip, port=6379, password=env["REDIS_PASSWORD"])
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.config_set("appendonly", "no")
    # The gateway exposed on a NodePort, auth still off.
    kube.core.patch_namespaced_service(
        f"{RELEASE}-langscale-gateway", NAMESPACE, {"spec": {"type": "NodePort"}}
    )
    code, output = doctor(kube)
    report["doctor_broken"] = output
    failed = lines(output, "FAIL")
    assert code == 2, output
    assert {"grace", "redis", "auth"} <= failed.keys(), output
    assert "terminationGracePeriodSeconds 5 < drain timeout" in failed["grace"]
    assert "allkeys-lru" in failed["redis"]
    assert "Service type NodePort" in failed["auth"]
    assert output.count("fix:") >= 3
    client.config_set("appendonly", "yes")
    client.config_set("maxmemory-policy", "noeviction")
    kube.uninstall(RELEASE, NAMESPACE)
