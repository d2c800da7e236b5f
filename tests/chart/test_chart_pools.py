"""Worker pools: several worker Deployments, each serving its pipelines and scaled on its own
backlog (the docs' example: a CPU-light chat pool at concurrency 200, an embed pool at 20)."""

from __future__ import annotations

from typing import Any

import pytest
from chart_support import CHART_DIR

from langscale.autoscale.values import ValuesError, load_values

POOLS = {
    "worker": {"pipelines": "summarize=langscale_worker.pipelines:summarize"},
    "workerPools": [
        {
            "name": "chat",
            "pipelines": "chat=langscale_worker.pipelines:chat",
            "concurrency": 200,
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
            "autoscaling": {"maxReplicas": 10},
        },
        {
            "name": "embed",
            "pipelines": "embed=langscale_worker.pipelines:embed",
            "concurrency": 20,
            "autoscaling": {"kind": "keda"},
        },
    ],
}


def env(deployment: dict[str, Any]) -> dict[str, str]:
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"]]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_each_pool_is_a_deployment_with_its_pipelines_and_concurrency(render: Any) -> None:
    rendered = render(POOLS)
    default, chat, embed = (
        rendered.get("Deployment", c) for c in ("worker", "worker-chat", "worker-embed")
    )
    assert (
        default["metadata"]["name"] == "rel-langscale-worker"
    )  # unchanged: selectors are immutable
    assert chat["metadata"]["name"] == "rel-langscale-worker-chat"
    assert env(default)["LANGSCALE_WORKER_POOL"] == "default"
    assert env(default)["LANGSCALE_PIPELINES"] == "summarize=langscale_worker.pipelines:summarize"
    assert env(chat)["LANGSCALE_WORKER_POOL"] == "chat"
    assert env(chat)["LANGSCALE_WORKER_CONCURRENCY"] == "200"
    assert env(chat)["LANGSCALE_PIPELINES"] == "chat=langscale_worker.pipelines:chat"
    assert env(embed)["LANGSCALE_WORKER_CONCURRENCY"] == "20"
    (container,) = chat["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["requests"] == {"cpu": "250m", "memory": "256Mi"}
    assert container["resources"]["limits"]["cpu"] == "2", "the rest comes from `worker`"
    # Selectors never overlap: each Deployment owns only its pool's pods.
    selectors = [d["spec"]["selector"]["matchLabels"] for d in (default, chat, embed)]
    assert len({tuple(sorted(s.items())) for s in selectors}) == 3


def test_each_pool_scales_on_its_own_backlog(render: Any) -> None:
    rendered = render(POOLS)
    chat = rendered.get("HorizontalPodAutoscaler", "worker-chat")
    metric = chat["spec"]["metrics"][0]["external"]
    assert metric["metric"]["selector"]["matchLabels"] == {"queue": "langscale", "pool": "chat"}
    assert metric["target"]["averageValue"] == "160"  # 200 x 0.8
    assert chat["spec"]["maxReplicas"] == 10
    assert (
        rendered.get("HorizontalPodAutoscaler", "worker")["spec"]["metrics"][0]["external"][
            "metric"
        ]["selector"]["matchLabels"]["pool"]
        == "default"
    )
    (trigger,) = rendered.get("ScaledObject", "worker-embed")["spec"]["triggers"]
    assert trigger["metadata"]["url"].endswith("/v1/queue?pool=embed")
    assert trigger["metadata"]["targetValue"] == "16"  # 20 x 0.8
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        assert {o["metadata"]["name"] for o in rendered.of_kind(kind)} >= {
            "rel-langscale-worker",
            "rel-langscale-worker-chat",
            "rel-langscale-worker-embed",
        }


def test_redis_lets_every_pool_in(render: Any) -> None:
    policy = next(
        p for p in render(POOLS).of_kind("NetworkPolicy") if p["metadata"]["name"].endswith("redis")
    )
    components = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in policy["spec"]["ingress"][0]["from"]
    }
    assert components == {"gateway", "worker", "worker-chat", "worker-embed"}


def test_the_default_pool_can_be_left_out(render: Any) -> None:
    rendered = render({**POOLS, "worker": {"enabled": False}})
    names = {d["metadata"]["name"] for d in rendered.of_kind("Deployment")}
    assert "rel-langscale-worker" not in names and "rel-langscale-worker-chat" in names


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {
                "workerPools": [
                    {"name": "x", "pipelines": "x=a:b"},
                    {"name": "x", "pipelines": "y=a:b"},
                ]
            },
            "two pools named",
        ),
        (
            {
                "workerPools": [
                    {"name": "more", "pipelines": "chat=langscale_worker.pipelines:chat"}
                ]
            },
            'pipeline "chat" is served by pools "default" and "more"',
        ),
        ({"worker": {"enabled": False}}, "no worker pool"),
        ({"workerPools": [{"name": "default", "pipelines": "x=a:b"}]}, "default"),
        ({"workerPools": [{"name": "Chat!", "pipelines": "x=a:b"}]}, "name"),
        ({"workerPools": [{"name": "nopipes"}]}, "pipelines"),
    ],
)
def test_bad_pools_fail_the_render(render_error: Any, values: dict, message: str) -> None:
    assert message in render_error(values)


def test_the_simulator_takes_a_pool(tmp_path: Any) -> None:
    import yaml

    values = tmp_path / "pools.yaml"
    values.write_text(yaml.safe_dump(POOLS))
    chart = CHART_DIR / "values.yaml"
    chat = load_values([values], chart_values=chart, pool="chat")
    assert (chat.concurrency, chat.max_replicas, chat.kind) == (200, 10, "hpa")
    assert chat.target_per_replica == 160
    embed = load_values([values], chart_values=chart, pool="embed")
    assert (embed.concurrency, embed.kind) == (20, "keda")
    assert load_values([values], chart_values=chart).concurrency == 100
    with pytest.raises(ValuesError, match="no worker pool named 'nope'"):
        load_values([values], chart_values=chart, pool="nope")
