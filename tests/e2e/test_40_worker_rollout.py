"""Workers rolled and scaled in under load: a rolling upgrade (a config change) and a
scale-in from 3 to 1 while runs arrive lose no run and fail none."""

from __future__ import annotations

from kube import Kube, poll
from load import Load, final_states

NAMESPACE = "e2e-roll"
RELEASE = "roll"
WORKER = f"{RELEASE}-langscale-worker"
WORKERS = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=worker"
SETTINGS = {"llm.fake.latencySeconds": "2", "worker.replicaCount": "3"}


def rolled_out(kube: Kube, generation_env: str) -> bool:
    deployment = kube.deployment(NAMESPACE, WORKER)
    status = deployment.status
    pods = [p for p in kube.pods(NAMESPACE, WORKERS)]
    env_ok = all(
        any(
            e.name == "ROLL" and e.value == generation_env for e in (p.spec.containers[0].env or [])
        )
        for p in pods
    )
    return bool(
        status.observed_generation == deployment.metadata.generation
        and status.updated_replicas == deployment.spec.replicas
        and status.ready_replicas == deployment.spec.replicas
        and len(pods) == deployment.spec.replicas
        and env_ok
    )


def test_a_rolling_upgrade_and_a_scale_in_under_load_lose_and_fail_no_run(
    kube: Kube, report: dict[str, object]
) -> None:
    rolled = {**SETTINGS, "worker.extraEnv[0].name": "ROLL", "worker.extraEnv[0].value": "a"}
    kube.install(RELEASE, NAMESPACE, sets=rolled)
    url = kube.service_url(NAMESPACE, f"{RELEASE}-langscale-gateway")
    load = Load(kube, NAMESPACE, WORKER, url, rate=3, seconds=100).start()
    try:
        poll(lambda: len(load.trace.run_ids) >= 20, 60, "load under way")
        # 1. A config change: every worker pod is replaced, one at a time.
        kube.install(
            RELEASE, NAMESPACE, sets={**rolled, "worker.extraEnv[0].value": "b"}, upgrade=True
        )
        poll(lambda: rolled_out(kube, "b"), 300, "the rolling upgrade finished")
        rolled_at = len(load.trace.run_ids)
        # 2. Scale-in from 3 to 1 while runs still arrive: two workers drain.
        kube.install(
            RELEASE,
            NAMESPACE,
            sets={**rolled, "worker.extraEnv[0].value": "b", "worker.replicaCount": "1"},
            upgrade=True,
        )
        poll(lambda: len(kube.pods(NAMESPACE, WORKERS)) == 1, 180, "scaled in to one worker")
        poll(load.submitted, 200, "all runs submitted")
    finally:
        load.close()
    run_ids = load.trace.run_ids
    assert load.trace.refused == 0
    assert len(run_ids) > rolled_at > 20
    states = final_states(url, run_ids)
    report["worker_roll_and_scale_in"] = {"runs": len(run_ids), "states": states}
    assert states == {"succeeded": len(run_ids)}, states
    kube.uninstall(RELEASE, NAMESPACE)
