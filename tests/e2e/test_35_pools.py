"""Worker pools scale independently: a backlog of `chat` runs scales the default pool
1 → 4 → 1 through KEDA's metrics-api trigger on /v1/queue?pool=default, while the `embed`
pool, scaled on its own backlog, stays at one replica and still serves its runs."""

from __future__ import annotations

import threading

import httpx
from kube import Kube, poll
from load import Load, run_states

NAMESPACE = "e2e-pools"
RELEASE = "pools"


def test_a_backlog_of_one_pool_scales_that_pool_only(
    kube: Kube, keda: None, report: dict[str, object]
) -> None:
    chat_pool = f"{RELEASE}-langscale-worker"
    embed_pool = f"{RELEASE}-langscale-worker-embed"
    kube.install(
        RELEASE,
        NAMESPACE,
        "autoscale.yaml",
        "pools.yaml",
        sets={"worker.autoscaling.kind": "keda"},
    )
    assert kube.spec_replicas(NAMESPACE, chat_pool) == 1
    assert kube.spec_replicas(NAMESPACE, embed_pool) == 1
    url = kube.service_url(NAMESPACE, f"{RELEASE}-langscale-gateway")

    embed_replicas: list[int] = []
    stop = threading.Event()

    def watch_embed_pool() -> None:
        while not stop.wait(1.0):
            embed_replicas.append(kube.spec_replicas(NAMESPACE, embed_pool))

    watcher = threading.Thread(target=watch_embed_pool, daemon=True)
    watcher.start()
    load = Load(kube, NAMESPACE, chat_pool, url, rate=3.0, seconds=60).start()
    try:
        poll(lambda: load.trace.first(lambda s: s.spec >= 4), 240, "chat pool at maxReplicas 4")
        with httpx.Client(timeout=10) as client:
            queue = client.get(f"{url}/v1/queue").json()
            embed_run = client.post(
                f"{url}/v1/runs", json={"pipeline": "embed", "input": {"texts": ["a", "b"]}}
            )
        assert embed_run.status_code == 202, embed_run.text
        poll(load.submitted, 90, "all chat runs submitted")
        poll(
            lambda: run_states(url, load.trace.run_ids).get("succeeded") == len(load.trace.run_ids),
            240,
            "every chat run succeeded",
        )
        poll(
            lambda: run_states(url, [embed_run.json()["run_id"]]).get("succeeded") == 1,
            60,
            "the embed pool served its run",
        )
        poll(lambda: load.trace.samples[-1].spec == 1, 240, "chat pool back to minReplicas 1")
    finally:
        load.close()
        stop.set()
        watcher.join(10)
    pools = queue.get("pools", {})
    assert pools["default"]["backlog"] > pools.get("embed", {}).get("backlog", 0), queue
    assert embed_replicas and max(embed_replicas) == 1, f"the embed pool moved: {embed_replicas}"
    report["pools"] = {
        "chat_pool_max": max(s.spec for s in load.trace.samples),
        "embed_pool_max": max(embed_replicas),
        "queue_at_chat_max": queue,
        "chat_runs": len(load.trace.run_ids),
    }
    kube.uninstall(RELEASE, NAMESPACE)
