"""The chart points gateway and workers at a Redis Cluster (a managed one, or Valkey's):
the URL they get, the partitions they spread runs over, the ports they may reach, and the
values that cannot work refused with the fix."""

from __future__ import annotations

from typing import Any

import pytest
from chart_support import CHART_DIR, load_values

CLUSTER = {"redis": {"enabled": False}, "externalRedis": {"enabled": True}}


def with_cluster(**external: Any) -> dict[str, Any]:
    return {**CLUSTER, "externalRedis": {**CLUSTER["externalRedis"], **external}}


def redis_env(rendered: Any, component: str) -> dict[str, Any]:
    (container,) = rendered.get("Deployment", component)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container.get("env", [])}


def egress_ports(policy: dict[str, Any]) -> set[Any]:
    return {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}


def test_a_managed_cluster_gets_a_tls_cluster_url_with_its_partitions(render: Any) -> None:
    rendered = render(load_values(CHART_DIR / "ci" / "cluster-values.yaml"))
    for component in ("gateway", "worker"):
        env = redis_env(rendered, component)
        assert env["LANGSCALE_REDIS_URL"]["value"] == (
            "rediss+cluster://:$(REDIS_PASSWORD)@"
            "clustercfg.langscale.abc123.use1.cache.amazonaws.com:6379"
        )
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "langscale-redis",
            "key": "auth-token",
        }
    assert rendered.get("ConfigMap")["data"]["LANGSCALE_REDIS_PARTITIONS"] == "16"


def test_egress_opens_the_port_of_every_node_named(render: Any) -> None:
    rendered = render(
        with_cluster(cluster={"enabled": True, "nodes": ["r-0:7000", "r-1:7001", "r-2"]})
    )
    env = redis_env(rendered, "worker")
    assert env["LANGSCALE_REDIS_URL"]["value"] == "redis+cluster://r-0:7000,r-1:7001,r-2:6379"
    for component in ("gateway", "worker"):
        assert {7000, 7001, 6379} <= egress_ports(rendered.get("NetworkPolicy", component))


def test_a_cluster_url_given_whole_is_kept_in_a_secret_and_opens_its_ports(render: Any) -> None:
    rendered = render(
        with_cluster(url="redis+cluster://:pw@a:7100,b:7101", cluster={"enabled": True})
    )
    env = redis_env(rendered, "gateway")
    assert "secretKeyRef" in env["LANGSCALE_REDIS_URL"]["valueFrom"]
    assert {7100, 7101} <= egress_ports(rendered.get("NetworkPolicy", "gateway"))
    assert rendered.get("ConfigMap")["data"]["LANGSCALE_REDIS_PARTITIONS"] == "16"


def test_without_a_cluster_no_partitions_are_set(render: Any) -> None:
    assert "LANGSCALE_REDIS_PARTITIONS" not in render().get("ConfigMap")["data"]


@pytest.mark.parametrize(
    ("external", "message"),
    [
        ({"cluster": {"enabled": True}}, "externalRedis.cluster.enabled needs"),
        (
            {"cluster": {"enabled": True, "nodes": ["r:6379"]}, "database": 2},
            "a Redis Cluster has only database 0",
        ),
        (
            {
                "cluster": {"enabled": True, "nodes": ["r:6379"]},
                "sentinel": {"enabled": True, "hosts": ["s:26379"]},
            },
            "choose one",
        ),
        (
            {"cluster": {"enabled": True, "nodes": ["r:6379"]}, "host": "r"},
            "builds the URL from cluster.nodes",
        ),
        ({"url": "redis+cluster://r:6379"}, "set externalRedis.cluster.enabled=true"),
        (
            {"cluster": {"enabled": True}, "url": "redis://r:6379/0"},
            "needs a redis+cluster:// (or rediss+cluster://) externalRedis.url",
        ),
    ],
)
def test_cluster_values_that_cannot_work_fail_with_the_fix(
    render_error: Any, external: dict[str, Any], message: str
) -> None:
    assert message in render_error(with_cluster(**external))
