"""Grace, as the kubelet enforces it: a worker pod deleted mid-run finishes its runs in place
within terminationGracePeriodSeconds (drain < grace, the chart's rule); and when a grace
period is shorter than the work (the chart refuses to render it; here it is patched in), the
kubelet kills the worker at the grace period and the runs are taken over by another worker
through their leases — late, but not lost."""

from __future__ import annotations

import time

import httpx
from kube import Kube, poll
from kubernetes import client as k8s

NAMESPACE = "e2e-grace"
RELEASE = "grace"
WORKER = f"{RELEASE}-langscale-worker"
WORKERS = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=worker"
RUN_SECONDS = 12
SETTINGS = {
    "llm.fake.latencySeconds": str(RUN_SECONDS),
    "worker.replicaCount": "1",
    "worker.concurrency": "4",
    "worker.jobTimeoutSeconds": "20",
    "worker.drainTimeoutSeconds": "20",
    "worker.drainMarginSeconds": "10",
}


def submit(url: str, count: int) -> list[str]:
    ids = []
    for index in range(count):
        response = httpx.post(
            f"{url}/v1/runs", json={"pipeline": "chat", "input": {"question": f"grace {index}"}}
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["run_id"])
    return ids


def records(url: str, ids: list[str]) -> list[dict[str, object]]:
    return [httpx.get(f"{url}/v1/runs/{run_id}").json() for run_id in ids]


def delete_running_worker(kube: Kube, url: str, ids: list[str]) -> tuple[str, int, float]:
    poll(
        lambda: all(r["state"] == "running" for r in records(url, ids)),
        60,
        "the runs running on the worker",
    )
    (pod,) = kube.ready_pods(NAMESPACE, WORKERS)
    grace = int(pod.spec.termination_grace_period_seconds)
    deleted_at = time.time()
    kube.core.delete_namespaced_pod(pod.metadata.name, NAMESPACE)
    return pod.metadata.name, grace, deleted_at


def gone(kube: Kube, name: str) -> bool:
    try:
        kube.core.read_namespaced_pod(name, NAMESPACE)
    except k8s.ApiException as error:
        return error.status == 404
    return False


def test_a_worker_deleted_mid_run_drains_within_its_grace_period(
    kube: Kube, report: dict[str, object]
) -> None:
    kube.install(RELEASE, NAMESPACE, sets=SETTINGS)
    url = kube.service_url(NAMESPACE, f"{RELEASE}-langscale-gateway")
    ids = submit(url, 4)
    name, grace, deleted_at = delete_running_worker(kube, url, ids)
    assert grace == 30  # drain 20 + margin 10, derived by the chart
    poll(lambda: gone(kube, name), grace + 20, f"pod {name} gone")
    took = time.time() - deleted_at
    finished = records(url, ids)
    report["grace_drain"] = {
        "grace_s": grace,
        "pod_gone_after_s": round(took, 1),
        "attempts": [r["attempts"] for r in finished],
    }
    assert all(r["state"] == "succeeded" for r in finished), finished
    # Drained in place: each run finished on the worker that had it, in one attempt, and the
    # pod went away only after that, inside its grace period.
    assert all(r["attempts"] == 1 for r in finished), finished
    assert max(float(r["finished_at"]) for r in finished) <= deleted_at + took  # type: ignore[arg-type]
    assert took <= grace + 5


def test_a_grace_period_shorter_than_the_work_is_enforced_and_leases_recover_the_runs(
    kube: Kube, report: dict[str, object]
) -> None:
    # What the chart's grace >= drain rule prevents, done by hand: grace 3 s for 12 s runs.
    poll(lambda: len(kube.ready_pods(NAMESPACE, WORKERS)) == 1, 120, "a worker Ready again")
    kube.apps.patch_namespaced_deployment(
        WORKER, NAMESPACE, {"spec": {"template": {"spec": {"terminationGracePeriodSeconds": 3}}}}
    )
    poll(
        lambda: (
            [p.spec.termination_grace_period_seconds for p in kube.ready_pods(NAMESPACE, WORKERS)]
            == [3]
            and len(kube.pods(NAMESPACE, WORKERS)) == 1
        ),
        180,
        "the worker rolled to grace 3 s",
    )
    url = kube.service_url(NAMESPACE, f"{RELEASE}-langscale-gateway")
    ids = submit(url, 4)
    name, grace, deleted_at = delete_running_worker(kube, url, ids)
    assert grace == 3
    poll(lambda: gone(kube, name), 30, f"pod {name} killed")
    killed_after = time.time() - deleted_at

    def all_succeeded() -> list[dict[str, object]] | None:
        found = records(url, ids)
        return found if all(r["state"] == "succeeded" for r in found) else None

    finished = poll(all_succeeded, 120, "the killed worker's runs finished elsewhere")
    report["grace_too_short"] = {
        "grace_s": grace,
        "pod_gone_after_s": round(killed_after, 1),
        "attempts": [r["attempts"] for r in finished],
    }
    assert killed_after < RUN_SECONDS  # killed before its runs could finish
    assert all(r["attempts"] == 2 for r in finished), finished  # re-run after the lease lapsed
    kube.uninstall(RELEASE, NAMESPACE)
