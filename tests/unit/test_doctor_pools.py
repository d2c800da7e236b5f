"""`langscale doctor` with several worker pools: each pool's autoscaling metric and capacity
are compared with that pool's figures in the gateway's /v1/queue, not the total."""

from __future__ import annotations

from test_doctor import WORKER_ENV, by_name, deployment, facts, hpa

from langscale import doctor
from langscale.doctor import WorkerPool

QUEUE = {
    "ready": 10,
    "in_progress": 170,
    "backlog": 180,
    "pools": {
        "default": {"ready": 10, "in_progress": 150, "backlog": 160},
        "embed": {"ready": 0, "in_progress": 20, "backlog": 20},
    },
}


def embed_pool() -> WorkerPool:
    env = dict(WORKER_ENV, LANGSCALE_WORKER_POOL="embed")
    return WorkerPool("ls-langscale-worker-embed", deployment("worker", env=env), env, hpa=hpa())


def test_each_pools_metric_is_compared_with_its_own_backlog() -> None:
    default = facts(queue=QUEUE)
    embed = facts(
        queue=QUEUE,
        workers=[embed_pool()],
        metrics={("ls-langscale-worker-embed", "langscale_queue_backlog_jobs"): (20.0, "")},
    )
    assert by_name(doctor.checks(default))["external-metric"].status == "pass"
    check = by_name(doctor.checks(embed))["external-metric"]
    assert check.status == "pass", check.message
    assert "says 20" in check.message


def test_a_pool_missing_from_the_gateways_figures_has_an_empty_backlog() -> None:
    assert doctor.pool_queue(QUEUE, "nobody") == {"ready": 0, "in_progress": 0, "backlog": 0}


def test_a_gateway_without_pools_is_compared_as_one_pool() -> None:
    total = {"ready": 10, "in_progress": 150, "backlog": 160}
    assert doctor.pool_queue(total, "embed") is total
